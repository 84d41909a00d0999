//! How a package's apps and jobs are deployed: as calls of the server's own `/v2/apps` and
//! `/v1/jobs` routes, carrying the caller's credential, through the whole router (the gate
//! authenticates the caller again, checks the route's capability, records the call in the
//! audit log; the handlers check what the body asks, such as the `host` capability). So a
//! package can do what its installer's token may, and nothing more, as Cosmos calls Marathon
//! with the user's token.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// Answers of the deploying routes are small; a larger one is cut here.
const ANSWER_LIMIT: usize = 4 << 20;

/// The router the deploying calls go through. Given as a function because the server's router
/// is built after the routes it holds (this one among them).
#[derive(Clone)]
pub struct Backend {
    router: Arc<dyn Fn() -> Option<Router> + Send + Sync>,
}

impl Backend {
    /// The router `router()` gives when called (none yet: calls are refused as unavailable).
    pub fn new(router: impl Fn() -> Option<Router> + Send + Sync + 'static) -> Backend {
        Backend {
            router: Arc::new(router),
        }
    }

    /// A fixed router (tests: the feature routes with the caller already in place).
    pub fn of(router: Router) -> Backend {
        Backend::new(move || Some(router.clone()))
    }

    /// One call as `caller`: its status and JSON answer (`null` when empty; a string when not
    /// JSON).
    pub(crate) async fn call(
        &self,
        caller: &Caller,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let router = (self.router)().ok_or_else(|| "the server's API is not up yet".to_string())?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(auth) = &caller.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let mut req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .map_err(|e| format!("cannot make the request {method} {uri}: {e}"))?;
        // The caller's Host was checked when their own request came in.
        req.extensions_mut().insert(tepui_auth::Forwarded);
        let resp = match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), ANSWER_LIMIT)
            .await
            .map_err(|e| format!("{method} {uri}: the answer cannot be read: {e}"))?;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, json))
    }
}

/// Who asked: the credential their request carried, handed on as it came.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    authorization: Option<HeaderValue>,
}

impl Caller {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Caller {
        let authorization = headers.get(header::AUTHORIZATION).cloned().or_else(|| {
            // A browser's websocket token is never a package call's, but a follower hands
            // the caller's token on as `Authorization` anyway.
            tepui_auth::websocket_credential(headers)
                .ok()
                .flatten()
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        });
        Caller { authorization }
    }
}

/// What a refusal of the deploying routes says: Marathon's and Metronome's `message` with
/// their `details` (`path: errors`), or tepui's `{code, message}`.
pub(crate) fn refusal_text(body: &Value) -> String {
    let Some(message) = body.get("message").and_then(Value::as_str) else {
        return match body {
            Value::String(s) => s.trim().to_string(),
            Value::Null => "no answer".into(),
            other => other.to_string(),
        };
    };
    let mut out = message.to_string();
    for d in body.get("details").and_then(Value::as_array).into_iter().flatten() {
        let path = d.get("path").and_then(Value::as_str).unwrap_or("/");
        let errors: Vec<&str> = d
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!("; {path}: {}", errors.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refusals_read_in_each_dialect() {
        assert_eq!(
            refusal_text(
                &json!({"message": "Object is not valid", "details": [{"path": "/mem", "errors": ["too small"]}]})
            ),
            "Object is not valid; /mem: too small"
        );
        assert_eq!(refusal_text(&json!({"code": "forbidden", "message": "no"})), "no");
        assert_eq!(refusal_text(&json!("plain text\n")), "plain text");
        assert_eq!(refusal_text(&Value::Null), "no answer");
    }
}
