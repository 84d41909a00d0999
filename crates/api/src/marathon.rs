//! A client of Marathon's `/v2` API, as tepui serves it: calls with Marathon's error bodies read
//! into one line, and the `/v2/events` stream as parsed events.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

/// Why a Marathon call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    /// The server answered with an error: its message, details and locking deployments.
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach {addr}: {detail}; is a tepui server running there? (set --addr or TEPUI_ADDR)")]
    Connect { addr: String, detail: String },
    #[error("cannot verify {addr}: {detail}; trust the cluster CA with --ca-pin SHA256 (tepui dev prints it; tepui operator ca status shows it) or --ca-file PEM")]
    Tls { addr: String, detail: String },
    #[error("unexpected answer from {addr}: {detail}")]
    Decode { addr: String, detail: String },
}

/// A client of Marathon's `/v2` API on one server (any server answers).
#[derive(Clone, Debug)]
pub struct Marathon {
    base: String,
    http: reqwest::Client,
}

/// The error a Marathon answer carries: `message`, with `details` (422) and the deployments
/// that hold an app (409) when there are.
pub fn marathon_error(status: u16, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_string();
        return format!(
            "{} (HTTP {status})",
            if text.is_empty() { "no answer".into() } else { text }
        );
    };
    let mut out = v["message"]
        .as_str()
        .unwrap_or("the server refused the request")
        .to_string();
    for d in v["details"].as_array().into_iter().flatten() {
        let errors: Vec<&str> = d["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "; {}: {}",
            d["path"].as_str().unwrap_or("/"),
            errors.join(", ")
        ));
    }
    let held: Vec<&str> = v["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    if !held.is_empty() {
        out.push_str(&format!(" (deployments: {})", held.join(", ")));
    }
    format!("{out} (HTTP {status})")
}

impl Marathon {
    pub fn new(addr: &str) -> Marathon {
        crate::install_crypto_provider();
        let base = crate::base_url(addr);
        let http = crate::http_client(&base, crate::auth_headers())
            .build()
            .expect("an HTTP client always builds");
        Marathon { base, http }
    }

    /// A request that got no answer: the server's certificate, or no server at all.
    fn unanswered(&self, e: &reqwest::Error) -> MarathonError {
        let (tls, detail) = crate::connect_failure(e);
        let addr = self.base.clone();
        if tls {
            MarathonError::Tls { addr, detail }
        } else {
            MarathonError::Connect { addr, detail }
        }
    }

    /// One call; a 503 while leadership changes is tried again for a while, except for a POST,
    /// which the old leader may have carried out.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), MarathonError> {
        let (status, _, v) = self.call_with_headers(method, path, body).await?;
        Ok((status, v))
    }

    /// [`Marathon::call`], with the answer's headers (`/v2/pods` tells its deployment in
    /// `Marathon-Deployment-Id`).
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Value), MarathonError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .timeout(Duration::from_secs(60));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| self.unanswered(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(|e| MarathonError::Decode {
                addr: self.base.clone(),
                detail: format!("the answer broke off: {}", crate::root_cause(&e)),
            })?;
            if status == 503 && method != Method::POST && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if status >= 400 {
                return Err(MarathonError::Refused {
                    status,
                    message: marathon_error(status, &bytes),
                });
            }
            let v = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| MarathonError::Decode {
                    addr: self.base.clone(),
                    detail: e.to_string(),
                })?
            };
            return Ok((status, headers, v));
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, MarathonError> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    /// The app, or `None` when it does not exist.
    pub async fn app(&self, id: &str) -> Result<Option<Value>, MarathonError> {
        match self.call(Method::GET, &format!("/v2/apps{id}"), None).await {
            Ok((_, v)) => Ok(Some(v["app"].clone())),
            Err(MarathonError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `/v2/events` filtered to `types`, as a channel of parsed events.
    pub async fn events(&self, types: &[&str]) -> Result<tokio::sync::mpsc::Receiver<Value>, MarathonError> {
        let query: Vec<String> = types.iter().map(|t| format!("event_type={t}")).collect();
        let resp = self
            .http
            .get(format!("{}/v2/events?{}", self.base, query.join("&")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unanswered(&e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap_or_default();
            return Err(MarathonError::Refused {
                status,
                message: marathon_error(status, &body),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut resp = resp;
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                for event in take_sse_events(&mut buf) {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Takes the whole server-sent events off `buf` and returns their `data` as JSON.
pub fn take_sse_events(buf: &mut String) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let message: String = buf.drain(..end + 2).collect();
        let data: Vec<&str> = message
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_errors_read_as_one_line() {
        let e = marathon_error(
            422,
            br#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["got -1, expected 0.001 or more"]}]}"#,
        );
        assert_eq!(
            e,
            "Object is not valid; /cpus: got -1, expected 0.001 or more (HTTP 422)"
        );
        let e = marathon_error(409, br#"{"message":"App is locked","deployments":[{"id":"d1"}]}"#);
        assert_eq!(e, "App is locked (deployments: d1) (HTTP 409)");
        assert_eq!(marathon_error(502, b"bad gateway"), "bad gateway (HTTP 502)");
    }
}
