//! A small blocking client of Marathon's `/v2` REST API, written from Marathon's documentation
//! (plain reqwest and serde_json, nothing from tepui's crates), for tests that check what the
//! servers do rather than how the CLI shows it.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::wait_for;

/// One answer: the status and the body, as JSON when it parses (else `Null`) and as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Panics with the body unless the status is `status`.
    pub fn expect(self, status: u16, what: &str) -> Reply {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self
    }
}

/// A client of one server's `/v2` API.
pub struct Marathon {
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Marathon {
    /// `addr` is `HOST:PORT` of a server's HTTP API.
    pub fn new(addr: &str) -> Marathon {
        // reqwest's rustls (linked in for registry pulls) needs a provider, even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Marathon {
            base: format!("http://{addr}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime builds"),
            http: crate::http_client()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// A client that sends `authorization` as its Authorization header, or none at all, instead
    /// of the tests' management token.
    pub fn with_authorization(addr: &str, authorization: Option<&str>) -> Marathon {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(a).expect("a valid header"),
            );
        }
        // `new` first: it installs the TLS provider the builder needs.
        let mut m = Marathon::new(addr);
        m.http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a plain HTTP client builds");
        m
    }

    /// One request; an error only when no answer came.
    pub fn try_call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Reply { status, body, text })
        })
    }

    /// One request; panics when no answer came.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.try_call(method.clone(), path, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// A GET that must answer 200; an error (for [`wait_for`]) otherwise.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let r = self.try_call(Method::GET, path, None)?;
        if r.status != 200 {
            return Err(format!("GET {path}: {} {}", r.status, r.text));
        }
        Ok(r.body)
    }

    /// `GET /v2/apps{id}`: the app with its tasks, counts and deployments.
    pub fn app(&self, id: &str) -> Result<Value, String> {
        Ok(self.get(&format!("/v2/apps{id}"))?["app"].clone())
    }

    /// The ids of the deployments under way.
    pub fn deployment_ids(&self) -> Result<Vec<String>, String> {
        let list = self.get("/v2/deployments")?;
        let list = list
            .as_array()
            .ok_or_else(|| format!("/v2/deployments is not a list: {list}"))?;
        Ok(list
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_string))
            .collect())
    }

    /// Waits until deployment `id` is no longer under way.
    pub fn wait_deployment_gone(&self, id: &str, timeout: Duration) {
        wait_for(&format!("deployment {id} to end"), timeout, || {
            let ids = self.deployment_ids()?;
            if ids.iter().any(|d| d == id) {
                Err(format!("still under way: {ids:?}"))
            } else {
                Ok(())
            }
        });
    }

    /// Waits until app `id` runs exactly `n` tasks, all `TASK_RUNNING` and of configuration
    /// version `version` when given, with no deployment of it left; returns the app.
    pub fn wait_settled(&self, id: &str, n: usize, version: Option<&str>, timeout: Duration) -> Value {
        wait_for(
            &format!("{id} to run {n} tasks of version {version:?} and no deployment"),
            timeout,
            || {
                let app = self.app(id)?;
                let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
                let running = tasks.iter().filter(|t| t["state"] == "TASK_RUNNING").count();
                let deployments = app["deployments"].as_array().map(Vec::len).unwrap_or(usize::MAX);
                let versions = task_versions(&app);
                let right_version = version.is_none_or(|v| versions.iter().all(|t| t == v));
                if running == n && tasks.len() == n && deployments == 0 && right_version {
                    Ok(app)
                } else {
                    Err(format!(
                        "{running} running of {} tasks, {deployments} deployments, versions {versions:?}",
                        tasks.len()
                    ))
                }
            },
        )
    }
}

/// The ids of an app's embedded tasks.
pub fn task_ids(app: &Value) -> BTreeSet<String> {
    app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// The configuration versions of an app's embedded tasks.
pub fn task_versions(app: &Value) -> BTreeSet<String> {
    app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["version"].as_str().map(str::to_string))
        .collect()
}
