//! tepui's own HTTP API (`/v1/...`): the JSON shapes and a client for them.
//!
//! The server's HTTP layer and the CLI both use these types, so the two cannot drift apart.
//! This crate knows nothing of Raft or of the internal state model: servers convert at the edge.

pub mod marathon;

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
    /// `active`, `draining`, `drained` or `deactivated` (agents only).
    #[serde(default)]
    pub maintenance: String,
    pub cluster_addr: String,
    pub http_addr: String,
    pub resources: Option<ResourcesView>,
    pub attributes: BTreeMap<String, String>,
    /// The release it runs: an agent's as it registered, a server's as the leader heard it.
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

/// `GET /v1/operator/upgrade-check`: whether the cluster can take a binary that speaks the
/// given protocols, node by node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpgradeCheckView {
    /// The binary asked about: `release`, `protocol`, `min_protocol`.
    pub binary: SpeaksView,
    /// The lowest protocol among the servers: what the leader writes.
    pub cluster_protocol: u32,
    /// Whether every node can be replaced by the binary (one at a time).
    pub ok: bool,
    /// Servers first, then agents.
    pub nodes: Vec<UpgradeNodeView>,
    /// How to upgrade, in order.
    pub procedure: Vec<String>,
}

impl UpgradeCheckView {
    /// The verdict of `tepui_common::version::check` for `binary` over `members` (servers
    /// first), as the API tells it.
    pub fn build(
        binary: &tepui_common::version::Speaks,
        members: &[tepui_common::version::Member],
        leader: Option<u64>,
    ) -> UpgradeCheckView {
        use tepui_common::version;
        let verdicts = version::check(binary, members);
        let nodes: Vec<UpgradeNodeView> = members
            .iter()
            .zip(verdicts)
            .map(|(m, v)| UpgradeNodeView {
                id: m.id,
                name: m.name.clone(),
                role: if m.server { "server" } else { "agent" }.into(),
                leader: leader == Some(m.id),
                release: m.speaks.release.clone(),
                protocol: m.speaks.protocol,
                min_protocol: m.speaks.min_protocol,
                heard: m.heard,
                ok: v.ok,
                reason: v.reason,
            })
            .collect();
        UpgradeCheckView {
            ok: nodes.iter().all(|n| n.ok),
            binary: SpeaksView {
                release: binary.release.clone(),
                protocol: binary.protocol,
                min_protocol: binary.min_protocol,
            },
            cluster_protocol: version::cluster_protocol(members.iter().filter(|m| m.server).map(|m| &m.speaks)),
            nodes,
            procedure: version::PROCEDURE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeaksView {
    pub release: String,
    pub protocol: u32,
    pub min_protocol: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpgradeNodeView {
    pub id: u64,
    pub name: String,
    /// `server` or `agent`.
    pub role: String,
    pub leader: bool,
    /// What the node runs, as the leader heard it (`heard` false: not heard since this leader
    /// started, counted as 0.1.0 for a server, as its registration said for an agent).
    pub release: String,
    pub protocol: u32,
    pub min_protocol: u32,
    pub heard: bool,
    /// Whether the binary can take this node's place, and why (not).
    pub ok: bool,
    pub reason: String,
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
    /// The leader's background drivers and how each last ran.
    #[serde(default)]
    pub drivers: Vec<DriverView>,
}

/// One of the leader's background drivers: what woke it last, how long that took, and its
/// last error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriverView {
    pub name: String,
    pub leading: bool,
    pub activations: u64,
    pub errors: u64,
    /// `leading`, `woken`, `state_changed` or `timeout`.
    pub last_activation: Option<String>,
    pub last_started_at_ms: Option<u64>,
    pub last_duration_us: u64,
    pub last_error: Option<String>,
    /// The timeout the driver keeps, from its last activation.
    pub next_timeout_ms: Option<u64>,
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

/// `PUT /v1/secrets/PATH`: the value, which no API ever returns.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPutRequest {
    pub value: String,
}

impl std::fmt::Debug for SecretPutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPutRequest { .. }")
    }
}

/// A secret as the API shows it: its path and version, never its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretView {
    pub path: String,
    /// The log index that last wrote it.
    pub version: u64,
    pub modified_at_ms: u64,
}

/// The longest a join token may live: as long as the cluster CA is valid.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A join token's time to live (`24h`, `30m`, `7days`): more than nothing and at most
/// [`MAX_TOKEN_TTL`], so the expiry computed from it cannot overflow. The CLI checks it before
/// sending, the server again.
pub fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("ttl {text:?} is not a duration like 24h or 30m: {e}"))?;
    if d.is_zero() {
        return Err(format!("ttl {text:?} is zero: the token would be expired at once"));
    }
    if d > MAX_TOKEN_TTL {
        return Err(format!(
            "ttl {text:?} is longer than {} days, the longest a token may live; leave it out for a token that never expires",
            MAX_TOKEN_TTL.as_secs() / 86_400
        ));
    }
    Ok(d)
}

/// When a token made at `now` (Unix ms) with `ttl` expires; `None` past what a `u64` holds.
pub fn token_expiry(now: u64, ttl: Duration) -> Option<u64> {
    u64::try_from(ttl.as_millis()).ok().and_then(|ms| now.checked_add(ms))
}

/// An ACL policy as the API takes and shows it (its name is in the path).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AclPolicyBody {
    #[serde(default)]
    pub description: String,
    /// Of `read`, `write`, `logs`, `exec`, `host`, `operator`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Frameworks that may subscribe: `{"principal": "spark", "roles": ["analytics"]}`.
    #[serde(default)]
    pub frameworks: Vec<AclFrameworkGrant>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AclFrameworkGrant {
    pub principal: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AclPolicyView {
    pub name: String,
    #[serde(flatten)]
    pub body: AclPolicyBody,
    pub modified_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AclTokenCreateRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub policies: Vec<String>,
    /// A duration like `24h`; absent: it never expires.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// `POST /v1/acl/token/self/derive`: a short-lived token with the caller's own policies (a
/// login link for the web UI). Answered with [`AclTokenCreated`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AclTokenDeriveRequest {
    /// A duration like `15m`, at most [`MAX_DERIVED_TTL`]; absent: [`DEFAULT_DERIVED_TTL`].
    #[serde(default)]
    pub ttl: Option<String>,
    /// Absent or empty: `derived`.
    #[serde(default)]
    pub name: Option<String>,
}

/// How long a derived token lives unless asked otherwise.
pub const DEFAULT_DERIVED_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest a derived token may live.
pub const MAX_DERIVED_TTL: Duration = Duration::from_secs(24 * 3600);

/// An API token as lists show it: never its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AclTokenView {
    pub accessor: String,
    pub name: String,
    pub management: bool,
    pub policies: Vec<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

/// A token just made: the secret (`ACCESSOR.SECRET`) is shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AclTokenCreated {
    #[serde(flatten)]
    pub token: AclTokenView,
    pub secret: String,
}

/// Who a token is, and what it may do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AclWhoAmI {
    pub accessor: Option<String>,
    pub name: String,
    pub management: bool,
    pub capabilities: Vec<String>,
    pub frameworks: Vec<AclFrameworkGrant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AclAnonymous {
    pub read: bool,
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

/// The cluster's CAs: the one that signs, those a rotation still trusts, and which CA signed
/// each node's certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaStatusView {
    /// 1 for the CA the cluster was created with, one more per rotation.
    pub generation: u64,
    /// SHA-256 of the signing CA, as join tokens pin it.
    pub ca_sha256: String,
    /// Whether a rotation waits for nodes to renew (the old CA is still trusted).
    pub rotating: bool,
    pub retiring_ca_sha256: Vec<String>,
    /// Names of the nodes whose certificate the signing CA has not signed yet.
    pub pending: Vec<String>,
    pub certificates: Vec<NodeCertView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeCertView {
    pub id: u64,
    pub name: String,
    /// The CA that signed the node's latest certificate (empty: not recorded since bootstrap).
    pub ca_sha256: String,
    pub not_after_ms: Option<u64>,
    pub issued_at_ms: Option<u64>,
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
    #[error("cannot verify {addr}: {detail}; trust the cluster CA with --ca-pin SHA256 (tepui dev prints it; tepui operator ca status shows it) or --ca-file PEM")]
    Tls { addr: String, detail: String },
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

/// Why a request got no answer, and whether it was the server's certificate (so the message
/// can say how to trust the cluster instead of asking whether a server runs there).
pub(crate) fn connect_failure(e: &reqwest::Error) -> (bool, String) {
    let detail = root_cause(e);
    let lower = detail.to_ascii_lowercase();
    let tls = ["certificate", "unknownissuer", "hash mismatch", "notvalidforname"]
        .iter()
        .any(|w| lower.contains(w));
    (tls, detail)
}

/// An error in the Marathon and Metronome dialects (`{"message", "details": [{"path",
/// "errors"}]}`) as one line: the message, then each field and what is wrong with it.
fn dialect_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = v.get("message")?.as_str()?.to_string();
    for d in v.get("details").and_then(|d| d.as_array()).into_iter().flatten() {
        let path = d.get("path").and_then(|p| p.as_str()).unwrap_or("/");
        let errors: Vec<&str> = d
            .get("errors")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        out.push_str(&format!("; {path}: {}", errors.join(", ")));
    }
    Some(out)
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

/// The API token the CLI sends: `--api-token` (see [`set_api_token`]), else `TEPUI_API_TOKEN`,
/// else the bootstrap token a server wrote in its data dir (`TEPUI_DATA_DIR`, or the default
/// one: `$XDG_DATA_HOME/tepui`, `~/.local/share/tepui`, `/var/lib/tepui`), so that the user who
/// started `tepui dev` needs nothing more.
pub fn api_token() -> Option<String> {
    if let Some(t) = API_TOKEN.get() {
        return Some(t.clone());
    }
    if let Some(t) = std::env::var("TEPUI_API_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_string());
    }
    data_dirs()
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("api-token")).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Where a local server's data dir may be, in the order the CLI looks.
fn data_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("TEPUI_DATA_DIR") {
        dirs.push(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        dirs.push(std::path::PathBuf::from(d).join("tepui"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(h).join(".local/share/tepui"));
    }
    dirs.push("/var/lib/tepui".into());
    dirs
}

static API_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The token given on the command line, ahead of every other place.
pub fn set_api_token(token: String) {
    let _ = API_TOKEN.set(token);
}

/// Default headers that carry the API token [`api_token`] finds, if there is one.
pub(crate) fn auth_headers() -> reqwest::header::HeaderMap {
    bearer_headers(api_token().as_deref())
}

fn bearer_headers(token: Option<&str>) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")) {
            v.set_sensitive(true);
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    h
}

/// Whom the CLI trusts when it speaks HTTPS to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTrust {
    /// The cluster CA by its SHA-256 (`--ca-pin`, the hash join tokens carry).
    Pin(String),
    /// CA certificates in a PEM file (`--ca-file`): the cluster's, or an operator's for a server
    /// started with `--api-cert`.
    CaFile(std::path::PathBuf),
}

static API_TRUST: std::sync::OnceLock<rustls::ClientConfig> = std::sync::OnceLock::new();

/// Sets whom HTTPS calls trust, ahead of the cluster CA a local server keeps in its data dir.
/// Checked here, so that a bad pin or file is one clear error before any call.
pub fn set_api_trust(trust: ApiTrust) -> Result<(), String> {
    let config = match trust {
        ApiTrust::Pin(pin) => tepui_pki::tls::api_client_config(&tepui_pki::tls::ClusterTrust::Pin(pin))
            .map_err(|e| format!("--ca-pin: {e}"))?,
        ApiTrust::CaFile(path) => {
            let pem = std::fs::read_to_string(&path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            // The cluster's own CA names its servers server.tepui whatever address is dialled;
            // any other CA is checked the usual way, against the address.
            if tepui_pki::is_cluster_ca(&pem) {
                tepui_pki::tls::api_client_config(&tepui_pki::tls::ClusterTrust::Bundle(pem))
            } else {
                tepui_pki::tls::roots_client_config(&pem)
            }
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
        }
    };
    let _ = API_TRUST.set(config);
    Ok(())
}

/// The TLS config HTTPS calls use: the one [`set_api_trust`] set, else the cluster CA of a
/// server in a local data dir (`identity/ca.pem`; see [`api_token`]), else none (the platform's roots).
pub fn api_tls_config() -> Option<rustls::ClientConfig> {
    if let Some(c) = API_TRUST.get() {
        return Some(c.clone());
    }
    let pem = data_dirs()
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("identity").join("ca.pem")).ok())?;
    tepui_pki::tls::api_client_config(&tepui_pki::tls::ClusterTrust::Bundle(pem)).ok()
}

/// A client for `base`. Plain HTTP needs no trust roots: reading and parsing the system's
/// (about 150 PEM files) was a third of a short CLI call.
pub(crate) fn http_client(base: &str, headers: reqwest::header::HeaderMap) -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .default_headers(headers);
    if base.starts_with("http://") {
        return b.tls_certs_only([]);
    }
    match api_tls_config() {
        Some(config) => b.tls_backend_preconfigured(config),
        None => b,
    }
}

/// `host:port` or a URL, as a base URL without a trailing slash; `http://` is assumed.
pub(crate) fn base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", addr.trim_end_matches('/'))
    }
}

/// reqwest's rustls needs a process-wide crypto provider when more than one could be linked
/// in; ring is the only one this project uses.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        install_crypto_provider();
        let base = base_url(addr);
        Client {
            http: Client::http(&base, auth_headers()),
            base,
        }
    }

    fn http(base: &str, headers: reqwest::header::HeaderMap) -> reqwest::Client {
        http_client(base, headers)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client always builds")
    }

    /// The same client, sending `token` instead of the one [`api_token`] finds.
    pub fn with_token(mut self, token: &str) -> Client {
        self.http = Client::http(&self.base, bearer_headers(Some(token)));
        self
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

    /// A request that got no answer: the server's certificate, or no server at all.
    fn unanswered(&self, e: &reqwest::Error) -> ClientError {
        let (tls, detail) = connect_failure(e);
        let addr = self.base.clone();
        if tls {
            ClientError::Tls { addr, detail }
        } else {
            ClientError::Connect { addr, detail }
        }
    }

    async fn send_once(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let resp = req.send().await.map_err(|e| self.unanswered(&e))?;
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
                    message: dialect_message(&bytes)
                        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string()),
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

    /// A PUT without a body whose answer says where what it made is, in `Location` (Chronos'
    /// run now answers 204; tepui adds the run's address).
    pub async fn put_located(&self, path: &str) -> Result<Option<String>, ClientError> {
        let resp = self
            .http
            .put(self.url(path))
            .send()
            .await
            .map_err(|e| self.unanswered(&e))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.unwrap_or_default();
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
                    message: dialect_message(&bytes)
                        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string()),
                },
            });
        }
        Ok(location)
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

    /// Removes an agent from the cluster: its certificate is refused from then on.
    pub async fn remove_node(&self, id_or_name: &str) -> Result<NodeView, ClientError> {
        self.delete(&format!("/v1/nodes/{id_or_name}")).await
    }

    /// Whether the cluster can take a binary of `release` speaking `protocol` down to
    /// `min_protocol`.
    pub async fn upgrade_check(
        &self,
        release: &str,
        protocol: u32,
        min_protocol: u32,
    ) -> Result<UpgradeCheckView, ClientError> {
        // A release is [A-Za-z0-9.+-]; `+` is the one of those a query must escape.
        let release = release.replace('+', "%2B");
        self.get(&format!(
            "/v1/operator/upgrade-check?release={release}&protocol={protocol}&min_protocol={min_protocol}"
        ))
        .await
    }

    pub async fn ca_status(&self) -> Result<CaStatusView, ClientError> {
        self.get("/v1/operator/ca").await
    }

    pub async fn ca_rotate(&self) -> Result<CaStatusView, ClientError> {
        self.post("/v1/operator/ca/rotate", &serde_json::json!({})).await
    }

    /// Drops the CAs a rotation retires without waiting for every node to renew.
    pub async fn ca_finish(&self) -> Result<CaStatusView, ClientError> {
        self.post("/v1/operator/ca/finish", &serde_json::json!({})).await
    }
}

fn default_cpus() -> f64 {
    0.1
}

fn default_mem() -> u64 {
    64
}

fn default_network() -> String {
    "host".into()
}

fn default_grace() -> f64 {
    10.0
}

fn default_protocol() -> String {
    "tcp".into()
}

/// `POST /v1/tasks`: run one task on an agent (the operator's way in; frameworks come later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// An OCI image reference; absent runs `cmd` on the host's filesystem, still isolated.
    #[serde(default)]
    pub image: Option<String>,
    /// The command and its arguments; empty uses the image's entrypoint and command.
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// MB.
    #[serde(default = "default_mem")]
    pub mem: u64,
    /// MB.
    #[serde(default)]
    pub disk: u64,
    #[serde(default)]
    pub pids: Option<u64>,
    /// `host` or `bridge`.
    #[serde(default = "default_network")]
    pub network: String,
    #[serde(default)]
    pub ports: Vec<PortRequest>,
    #[serde(default)]
    pub volumes: Vec<VolumeRequest>,
    #[serde(default)]
    pub read_only_rootfs: bool,
    #[serde(default = "default_grace")]
    pub kill_grace_period_secs: f64,
    /// An agent's id or name; absent lets the cluster choose.
    #[serde(default)]
    pub agent: Option<String>,
    /// Secrets the task gets, by path (`tepui secret put`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRequest>,
}

/// A secret a task gets: as the environment variable `env`, as the read-only file `file` (an
/// absolute path in the container), or both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// The port inside the container (bridge mode); 0 in host mode.
    #[serde(default)]
    pub container_port: u16,
    /// A fixed agent port; 0 picks a free one from the agent's range.
    #[serde(default)]
    pub host_port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub name: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub agent_id: u64,
    pub agent_name: String,
    /// Mesos task state, e.g. `TASK_RUNNING`.
    pub state: String,
    pub reason: Option<String>,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub image: Option<String>,
    pub cmd: Vec<String>,
    pub cpus: f64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    pub network: String,
    pub ports: Vec<PortView>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The framework that launched it: `tepui` for `tepui task run`, `tepui-services` for app
    /// instances, or a Mesos framework's id.
    #[serde(default)]
    pub framework: String,
    /// What its health checks last said, if it has any.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// The secrets it gets, by reference (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRequest>,
    /// The container's own address on its agent's bridge (bridge networking), once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// An entry of a task's sandbox, as Mesos' `/files/browse` lists it
/// (`GET /v1/tasks/{id}/files/browse?path=REL`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Relative to the sandbox, without a leading `/` (`logs/app.log`); give it back as `path`
    /// to descend or read.
    pub path: String,
    pub nlink: u64,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// As `ls -l` shows it: `drwxr-xr-x`, `-rw-r--r--`, `lrwxrwxrwx`.
    pub mode: String,
    /// The owner's name on the agent (its number when the agent has no such user).
    pub uid: String,
    pub gid: String,
}

/// A piece of a file of a task's sandbox, as Mesos' `/files/read` answers
/// (`GET /v1/tasks/{id}/files/read?path=REL&offset=N&length=N`): the text at `offset`; with
/// `offset=-1`, no data and the file's size as `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    pub data: String,
    pub offset: u64,
}

/// The most a files read returns at once; a longer `length` is cut to it.
pub const MAX_FILE_READ: u64 = 1 << 20;

/// `GET /v1/metrics/history`: what one server sampled over the last hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsHistoryView {
    /// Seconds between two samples.
    pub interval_seconds: u64,
    pub series: Vec<MetricSeriesView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSeriesView {
    /// `tasks_running`, `cpus_used`, ...
    pub name: String,
    pub help: String,
    /// What the values count: `tasks`, `cpus`, `bytes`, `requests/s`, ...
    pub unit: String,
    /// `[unix_ms, value]`, oldest first.
    pub points: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePullRequest {
    pub reference: String,
    /// An agent's id or name; absent pulls on every ready agent.
    #[serde(default)]
    pub agent: Option<String>,
}

/// One line of the NDJSON stream `POST /v1/images/pull` answers with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullLine {
    pub agent: String,
    /// A progress event from the agent's image store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    /// The pulled image, on the last line for this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One agent's part of the answer to `POST /v1/images/import` (the archive as the body;
/// `?agent=ID` for one agent, else every ready one; `?reference=REF` to name the image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageImportResult {
    pub agent: String,
    /// The images the agent stored, as its image store describes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// An image on an agent, as its image store describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentImage {
    pub agent: String,
    pub image: serde_json::Value,
}

impl Client {
    pub async fn run_task(&self, req: &TaskRunRequest) -> Result<TaskView, ClientError> {
        self.post("/v1/tasks", req).await
    }

    pub async fn tasks(&self) -> Result<Vec<TaskView>, ClientError> {
        self.get("/v1/tasks").await
    }

    pub async fn task(&self, id: &str) -> Result<TaskView, ClientError> {
        self.get(&format!("/v1/tasks/{id}")).await
    }

    pub async fn kill_task(&self, id: &str) -> Result<TaskView, ClientError> {
        self.post(&format!("/v1/tasks/{id}/kill"), &serde_json::json!({})).await
    }

    pub async fn exec(&self, id: &str, cmd: Vec<String>) -> Result<ExecResult, ClientError> {
        self.post(&format!("/v1/tasks/{id}/exec"), &ExecRequest { cmd }).await
    }

    /// A streaming GET: the response, for the caller to read chunk by chunk.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        self.stream_request(self.http.get(self.url(path))).await
    }

    pub async fn stream_post<B: Serialize>(&self, path: &str, body: &B) -> Result<reqwest::Response, ClientError> {
        self.stream_request(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn upload(&self, path: &str, body: Vec<u8>) -> Result<reqwest::Response, ClientError> {
        self.stream_request(
            self.http
                .post(self.url(path))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
        .await
    }

    async fn stream_request(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        // Streams have no overall deadline: a followed log runs as long as the task does.
        let resp = req
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| self.unanswered(&e))?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let bytes = resp.bytes().await.unwrap_or_default();
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
        Ok(resp)
    }
}

/// A framework as `GET /v1/frameworks` lists it. Tasks run with `tepui task run` belong to the
/// built-in framework `tepui` (`tepui-tasks`), listed while it has tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub principal: Option<String>,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    /// Subscribed to the current leader.
    pub connected: bool,
    /// Tasks that have not ended.
    pub tasks: usize,
    /// What its live tasks hold.
    pub cpus: f64,
    pub mem_mb: u64,
    pub registered_at_ms: u64,
    pub reregistered_at_ms: Option<u64>,
    pub disconnected_at_ms: Option<u64>,
    /// How long it may stay disconnected before it is torn down.
    pub failover_timeout_secs: f64,
}

/// A role as `GET /v1/roles` lists it: its weight, its quota, who uses it and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleView {
    pub name: String,
    pub weight: f64,
    /// Ids of the frameworks subscribed to it.
    pub frameworks: Vec<String>,
    /// Held by its tasks and outstanding offers.
    pub cpus: f64,
    pub mem_mb: u64,
    /// Quota, by resource name (`cpus`, `mem` in MB, ...); empty: none.
    pub guarantees: BTreeMap<String, f64>,
    pub limits: BTreeMap<String, f64>,
}

/// `PUT /v1/roles/{role}/quota`: the role's whole quota (both maps empty: no quota).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    /// What the role is guaranteed, by resource name.
    #[serde(default)]
    pub guarantees: BTreeMap<String, f64>,
    /// The most the role may hold, by resource name.
    #[serde(default)]
    pub limits: BTreeMap<String, f64>,
    /// Apply even if the role already holds more than the new limits.
    #[serde(default)]
    pub force: bool,
}

/// `PUT /v1/roles/{role}/weight`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRequest {
    /// Positive; 1.0 is the default.
    pub weight: f64,
}

/// A role name as one path segment (hierarchical roles hold `/`).
fn role_path(role: &str) -> String {
    role.replace('%', "%25").replace('/', "%2F")
}

impl Client {
    pub async fn frameworks(&self) -> Result<Vec<FrameworkView>, ClientError> {
        self.get("/v1/frameworks").await
    }

    /// Removes a framework; its tasks are killed. Answers with the framework as it was.
    pub async fn teardown_framework(&self, id: &str) -> Result<FrameworkView, ClientError> {
        self.delete(&format!("/v1/frameworks/{id}")).await
    }

    pub async fn roles(&self) -> Result<Vec<RoleView>, ClientError> {
        self.get("/v1/roles").await
    }

    pub async fn set_quota(&self, role: &str, req: &QuotaRequest) -> Result<RoleView, ClientError> {
        self.put(&format!("/v1/roles/{}/quota", role_path(role)), req).await
    }

    pub async fn set_weight(&self, role: &str, weight: f64) -> Result<RoleView, ClientError> {
        self.put(
            &format!("/v1/roles/{}/weight", role_path(role)),
            &WeightRequest { weight },
        )
        .await
    }
}

/// A DNS record as a server's DNS would answer it (`GET /v1/dns/records`, `/v1/dns/lookup`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordView {
    /// Fully qualified, with the trailing dot: `web.marathon.mesos.`.
    pub name: String,
    /// `A`, `AAAA`, `SRV`, `SOA`, `NS`.
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// In zone-file form: an address; `PRIORITY WEIGHT PORT TARGET` for SRV.
    pub data: String,
}

/// `GET /v1/dns/records`: every record of the cluster domain this server answers with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordsView {
    /// The cluster domain, fully qualified (`mesos.`).
    pub domain: String,
    /// The SOA's serial: the applied index the records were built at.
    pub serial: u32,
    /// Sorted by name, then type.
    pub records: Vec<DnsRecordView>,
}

/// `GET /v1/dns/lookup?name=NAME&type=TYPE`: the answer this server's DNS gives to that question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsLookupView {
    /// The name asked, fully qualified.
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    /// `NOERROR` (with no answers: the name exists without records of the type) or `NXDOMAIN`.
    pub rcode: String,
    pub authoritative: bool,
    pub answers: Vec<DnsRecordView>,
    /// The SOA, for a negative answer.
    pub authority: Vec<DnsRecordView>,
    /// The addresses of SRV targets.
    pub additional: Vec<DnsRecordView>,
}

impl Client {
    pub async fn dns_records(&self) -> Result<DnsRecordsView, ClientError> {
        self.get("/v1/dns/records").await
    }

    /// What this server's DNS answers for `name` and `qtype` (`A`, `SRV`...).
    pub async fn dns_lookup(&self, name: &str, qtype: &str) -> Result<DnsLookupView, ClientError> {
        let query = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        self.get(&format!("/v1/dns/lookup?name={}&type={}", query(name), query(qtype)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ttls_are_bounded() {
        assert_eq!(parse_token_ttl("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_token_ttl(" 30m "), Ok(Duration::from_secs(1800)));
        // Durations humantime reads, but whose milliseconds do not fit a u64 once added to now.
        for long in ["600000000years", "18446744073709551615s", "11years"] {
            let e = parse_token_ttl(long).unwrap_err();
            assert!(e.contains("longest a token may live"), "{long}: {e}");
        }
        assert!(parse_token_ttl("0s").unwrap_err().contains("zero"));
        assert!(parse_token_ttl("soon").unwrap_err().contains("not a duration"));
        assert_eq!(token_expiry(1_000, Duration::from_secs(1)), Some(2_000));
        assert_eq!(token_expiry(u64::MAX - 10, Duration::from_secs(1)), None);
        assert_eq!(token_expiry(0, Duration::from_secs(u64::MAX)), None);
    }
}
