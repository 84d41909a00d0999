//! tepui's own HTTP API (`/v1/...`): the JSON shapes and a client for them.
//!
//! The server's HTTP layer and the CLI both use these types, so the two cannot drift apart.
//! This crate knows nothing of Raft or of the internal state model: servers convert at the edge.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Every error answer of the API has this shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_json`, `unknown_field`, `no_leader`, `token_revoked`...
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The JSON path of the offending field, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub node: String,
    pub role: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourcesView {
    pub cpus: f64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    /// Inclusive ranges, `"31000-32000"`.
    pub ports: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub name: String,
    /// `server`, `agent`, or `server+agent` for a server that also runs tasks.
    pub roles: String,
    /// `pending`, `ready`, `lost`.
    pub status: String,
    pub cluster_addr: String,
    pub http_addr: String,
    pub resources: Option<ResourcesView>,
    pub attributes: BTreeMap<String, String>,
    pub version: Option<String>,
    pub joined_at_ms: u64,
    pub status_changed_at_ms: u64,
    /// Milliseconds since the leader last heard from the agent; absent for nodes that run no
    /// agent or that the current leader has not heard from.
    pub last_heartbeat_ms_ago: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    pub cluster_addr: String,
    pub http_addr: String,
    /// `leader`, `follower` (a voter) or `learner`.
    pub raft_role: String,
    pub voter: bool,
    /// The last log index the leader knows the member has; absent on non-leaders' view.
    pub matched_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderView {
    pub id: u64,
    pub name: String,
    pub cluster_addr: String,
    pub http_addr: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub cluster_id: String,
    pub leader: Option<LeaderView>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub servers: usize,
    pub agents: usize,
    pub agents_ready: usize,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// `server` or `agent`.
    pub role: String,
    /// A duration like `24h` or `30m`; absent means the token never expires.
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub description: String,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked: bool,
    pub uses: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The whole token, shown once: the secret is not stored.
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarPutRequest {
    pub value: String,
    /// Check-and-set: the write only succeeds if the current modify index equals this (0: absent).
    #[serde(default)]
    pub cas: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VarView {
    pub key: String,
    pub value: String,
    pub modify_index: u64,
    pub modified_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub restored_index: u64,
    pub vars: usize,
    pub tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {addr}: {detail}; is a tepui server running there? (set --addr or TEPUI_ADDR)")]
    Connect { addr: String, detail: String },
    #[error("unexpected answer from {addr}: {detail}")]
    Decode { addr: String, detail: String },
}

/// The innermost error says what happened ("connection refused"); the outer ones only add the URL.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// `no_leader` is answered before anything ran; `leader_unreachable` may follow a write the old
/// leader committed, so only idempotent requests go again.
fn retryable(code: &str, req: &reqwest::RequestBuilder) -> bool {
    let idempotent = req
        .try_clone()
        .and_then(|r| r.build().ok())
        .map(|r| r.method() != reqwest::Method::POST)
        .unwrap_or(false);
    code == "no_leader" || (code == "leader_unreachable" && idempotent)
}

/// A client of one server's HTTP API. Any server answers every call.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// `addr` is `host:port` or a URL; `http://` is assumed.
    pub fn new(addr: &str) -> Client {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", addr.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client always builds");
        Client { base, http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let bytes = self.send_raw(req).await?;
        let body = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            addr: self.base.clone(),
            detail: e.to_string(),
        })
    }

    /// Sends a request; while the cluster elects a leader (503 `no_leader`), tries again for a
    /// while. A request the old leader may have executed is retried only when it is idempotent.
    async fn send_raw(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut pause = Duration::from_millis(100);
        loop {
            // A streamed body cannot be sent twice; it gets one try.
            let Some(this_try) = req.try_clone() else {
                return self.send_once(req).await;
            };
            let result = self.send_once(this_try).await;
            match &result {
                Err(ClientError::Api { status: 503, code, .. })
                    if tokio::time::Instant::now() < deadline && retryable(code, &req) =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                _ => return result,
            }
        }
    }

    async fn send_once(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Connect {
            addr: self.base.clone(),
            detail: root_cause(&e),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode {
            addr: self.base.clone(),
            detail: e.to_string(),
        })?;
        if status >= 400 {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status,
                    code: e.code,
                    message: e.message,
                },
                Err(_) => ClientError::Api {
                    status,
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes).trim().to_string(),
                },
            });
        }
        Ok(bytes.to_vec())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health").await
    }

    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status").await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get("/v1/nodes").await
    }

    pub async fn members(&self) -> Result<Vec<MemberView>, ClientError> {
        self.get("/v1/members").await
    }

    pub async fn create_token(&self, req: &TokenCreateRequest) -> Result<TokenCreated, ClientError> {
        self.post("/v1/tokens", req).await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get("/v1/tokens").await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenView, ClientError> {
        self.delete(&format!("/v1/tokens/{id}")).await
    }

    pub async fn put_var(&self, key: &str, req: &VarPutRequest) -> Result<VarView, ClientError> {
        self.put(&format!("/v1/vars/{key}"), req).await
    }

    pub async fn get_var(&self, key: &str) -> Result<VarView, ClientError> {
        self.get(&format!("/v1/vars/{key}")).await
    }

    pub async fn vars(&self) -> Result<Vec<VarView>, ClientError> {
        self.get("/v1/vars").await
    }

    pub async fn snapshot_save(&self) -> Result<Vec<u8>, ClientError> {
        self.send_raw(self.http.get(self.url("/v1/operator/snapshot"))).await
    }

    pub async fn snapshot_restore(&self, snapshot: Vec<u8>) -> Result<RestoreResult, ClientError> {
        self.send(
            self.http
                .post(self.url("/v1/operator/snapshot"))
                .header("content-type", "application/octet-stream")
                .body(snapshot),
        )
        .await
    }

    pub async fn remove_peer(&self, id_or_name: &str) -> Result<Vec<MemberView>, ClientError> {
        self.delete(&format!("/v1/operator/raft/peers/{id_or_name}")).await
    }
}
