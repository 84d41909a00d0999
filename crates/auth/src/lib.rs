//! Who may call which route of the HTTP APIs.
//!
//! - [`credential`] reads the token a request carries, in each form real clients send it:
//!   `Authorization: Bearer T`, HTTP Basic with the token as the password (Marathon's
//!   `--http_credentials`, a Mesos framework's principal and secret) and DC/OS's
//!   `Authorization: token=T`.
//! - [`authenticate`] finds the token in the replicated state and gathers what its policies
//!   grant into an [`Identity`]; it is pure (state and time passed in).
//! - [`Routes`] is how every API registers a route: with the [`Policy`] that says which
//!   capability each method needs. The [`RouteTable`] it builds is what the gate enforces and
//!   what the tests walk, so a route cannot exist without a policy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};
use tepui_node::Node;
use tepui_state::{AclToken, Capability, FrameworkGrant, State as Replicated};

pub use tepui_state::Capability as Cap;

pub mod api;
pub use api::capped_by_caller;
pub mod audit;

pub use audit::{AuditLog, AuditRecord};

/// Where the bootstrap token is written, under a server's data dir.
pub const TOKEN_FILE: &str = "api-token";

/// What a method of a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Answers anyone: only the health probes.
    Public,
    /// Any valid token; the handler decides the rest from the [`Identity`] (a framework's
    /// principal and roles, an operator call inside a generic endpoint).
    Token,
    Cap(Capability),
}

/// The needs of a route, per method.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy(Vec<(Method, Need)>);

impl Policy {
    pub fn new() -> Policy {
        Policy(Vec::new())
    }

    pub fn method(mut self, method: Method, need: Need) -> Policy {
        self.0.retain(|(m, _)| *m != method);
        self.0.push((method, need));
        self
    }

    pub fn get(self, cap: Capability) -> Policy {
        self.method(Method::GET, Need::Cap(cap))
    }
    pub fn post(self, cap: Capability) -> Policy {
        self.method(Method::POST, Need::Cap(cap))
    }
    pub fn put(self, cap: Capability) -> Policy {
        self.method(Method::PUT, Need::Cap(cap))
    }
    pub fn patch(self, cap: Capability) -> Policy {
        self.method(Method::PATCH, Need::Cap(cap))
    }
    pub fn delete(self, cap: Capability) -> Policy {
        self.method(Method::DELETE, Need::Cap(cap))
    }

    /// `method` for any valid token (see [`Need::Token`]).
    pub fn token(self, method: Method) -> Policy {
        self.method(method, Need::Token)
    }

    /// `GET` for anyone: the health probes.
    pub fn public_get() -> Policy {
        Policy::new().method(Method::GET, Need::Public)
    }

    /// The need of `method` (`HEAD` is `GET`'s).
    pub fn need(&self, method: &Method) -> Option<Need> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.0.iter().find(|(m, _)| m == method).map(|(_, n)| *n)
    }

    pub fn methods(&self) -> impl Iterator<Item = (&Method, Need)> {
        self.0.iter().map(|(m, n)| (m, *n))
    }
}

/// Every route's policy, by its path pattern as the router matches it (`/v2/apps/{*id}`).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Policy>,
}

impl RouteTable {
    pub fn need(&self, path: &str, method: &Method) -> Option<Need> {
        self.routes.get(path)?.need(method)
    }

    /// Every route with its policy, sorted by path.
    pub fn routes(&self) -> Vec<(&str, &Policy)> {
        let mut v: Vec<(&str, &Policy)> = self.routes.iter().map(|(p, pol)| (p.as_str(), pol)).collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    fn insert(&mut self, path: &str, policy: Policy) {
        let entry = self.routes.entry(path.to_string()).or_default();
        for (m, n) in policy.0 {
            *entry = std::mem::take(entry).method(m, n);
        }
    }

    fn merge(&mut self, other: RouteTable) {
        for (path, policy) in other.routes {
            self.insert(&path, policy);
        }
    }
}

/// A router whose every route was registered with its policy.
pub struct Routes<S = ()> {
    router: Router<S>,
    table: RouteTable,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Routes<S> {
        Routes {
            router: Router::new(),
            table: RouteTable::default(),
        }
    }

    /// Adds a route. `policy` must name every method `handlers` serves: a method without a
    /// need is refused by the gate.
    pub fn route(mut self, path: &str, policy: Policy, handlers: MethodRouter<S>) -> Routes<S> {
        self.router = self.router.route(path, handlers);
        self.table.insert(path, policy);
        self
    }

    pub fn merge(mut self, other: Routes<S>) -> Routes<S> {
        self.router = self.router.merge(other.router);
        self.table.merge(other.table);
        self
    }

    /// Applies a layer to every route (the table is unchanged).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Routes<S> {
        self.router = f(self.router);
        self
    }

    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            table: self.table,
        }
    }

    pub fn into_parts(self) -> (Router<S>, RouteTable) {
        (self.router, self.table)
    }
}

/// A refusal: 401 (no or a bad credential) or 403 (the credential lacks what the call needs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Denied {
    fn unauthenticated(message: impl Into<String>) -> Denied {
        Denied {
            status: 401,
            code: "unauthenticated",
            message: message.into(),
        }
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Denied {
        Denied {
            status: 403,
            code,
            message: message.into(),
        }
    }

    /// A handler that checks its caller found none: the call did not come through the gate.
    /// Handlers refuse then (fail closed) instead of assuming the caller may.
    pub fn no_caller() -> Denied {
        Denied::forbidden(
            "no_caller",
            "this call carries no caller identity (it did not pass the API's gate), so it is refused",
        )
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        // `message` is what Marathon's and tepui's clients print; `code` is for scripts.
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut resp = (status, axum::Json(body)).into_response();
        if self.status == 401 {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"tepui\""),
            );
        }
        resp
    }
}

/// What a request's credential may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's accessor; none for anonymous calls.
    pub accessor: Option<String>,
    pub name: String,
    pub management: bool,
    pub capabilities: BTreeSet<Capability>,
    pub frameworks: Vec<FrameworkGrant>,
}

impl Identity {
    pub fn can(&self, cap: Capability) -> bool {
        self.management || self.capabilities.contains(&cap)
    }

    pub fn require(&self, cap: Capability) -> Result<(), Denied> {
        if self.can(cap) {
            return Ok(());
        }
        Err(Denied::forbidden(
            "forbidden",
            format!(
                "{} lacks the {:?} capability this call needs; an operator can grant it with `tepui acl policy apply`",
                self.describe(),
                cap.as_str()
            ),
        ))
    }

    /// Whether the token lets a framework subscribe as `principal` into `role`.
    pub fn may_subscribe(&self, principal: &str, role: &str) -> bool {
        self.management || self.frameworks.iter().any(|g| g.admits(principal, role))
    }

    /// How messages name the caller.
    pub fn describe(&self) -> String {
        match &self.accessor {
            None => "an anonymous call".into(),
            Some(a) if self.name.is_empty() => format!("token {a}"),
            Some(a) => format!("token {a} ({})", self.name),
        }
    }

    /// A management identity, for callers inside a server (and handler tests, which stand
    /// where the gate would).
    pub fn management(name: &str) -> Identity {
        Identity {
            accessor: None,
            name: name.to_string(),
            management: true,
            capabilities: BTreeSet::new(),
            frameworks: Vec::new(),
        }
    }

    fn anonymous_reader() -> Identity {
        Identity {
            accessor: None,
            name: String::new(),
            management: false,
            capabilities: [Capability::Read].into(),
            frameworks: Vec::new(),
        }
    }
}

/// Why running `def` touches the host (and so needs [`Capability::Host`]), if it does: no
/// image (the host's filesystem), a host path mounted, or root asked for.
pub fn host_access(def: &tepui_state::TaskDef) -> Option<&'static str> {
    if def.image.is_none() {
        return Some("a task without an image runs on the host's filesystem");
    }
    if def.volumes.iter().any(|v| v.source.starts_with('/')) {
        return Some("a task that mounts a host path");
    }
    if def
        .user
        .as_deref()
        .is_some_and(|u| matches!(u.split(':').next(), Some("root" | "0")))
    {
        return Some("a task that runs as root");
    }
    None
}

impl Identity {
    /// Refuses `def` unless the caller may touch the host (see [`host_access`]).
    pub fn may_run(&self, def: &tepui_state::TaskDef) -> Result<(), Denied> {
        match host_access(def) {
            Some(why) if !self.can(Capability::Host) => Err(Denied::forbidden(
                "forbidden",
                format!(
                    "{why}: that needs the \"host\" capability, which {} lacks",
                    self.describe()
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl From<Denied> for tepui_node::Error {
    fn from(d: Denied) -> tepui_node::Error {
        let kind = if d.status == 401 {
            tepui_node::ErrorKind::Unauthenticated
        } else {
            tepui_node::ErrorKind::Forbidden
        };
        tepui_node::Error::new(kind, d.code, d.message)
    }
}

/// The token a request carries, if any. An `Authorization` header of a form no client sends
/// is refused rather than ignored. A websocket upgrade without one may carry the token as a
/// subprotocol (see [`websocket_credential`]): browsers cannot set headers on a websocket.
pub fn credential(headers: &HeaderMap) -> Result<Option<String>, Denied> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return websocket_credential(headers);
    };
    let bad = || {
        Denied::unauthenticated(
            "the Authorization header must be `Bearer TOKEN`, `Basic` with the token as the password, or `token=TOKEN`",
        )
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (_user, password) = decoded.split_once(':').ok_or_else(bad)?;
        password.to_string()
    } else if let Some(t) = value.strip_prefix("token=") {
        t.trim().to_string()
    } else {
        return Err(bad());
    };
    if token.is_empty() {
        return Err(bad());
    }
    Ok(Some(token))
}

/// The prefix of the `Sec-WebSocket-Protocol` entry that carries a token.
pub const WEBSOCKET_TOKEN_PREFIX: &str = "bearer.";

/// The subprotocol a websocket handler answers with when the client offered it (a browser
/// fails the handshake unless the server picks one of the protocols it offered, and the
/// `bearer.` entry must never be echoed back).
pub const WEBSOCKET_PROTOCOL: &str = "tepui";

/// The token of a websocket upgrade from a browser: a `Sec-WebSocket-Protocol` entry
/// `bearer.<base64url of the token, no padding>`. Only on `Upgrade: websocket` requests, so
/// the header cannot stand in for `Authorization` elsewhere. An entry that does not decode is
/// refused, never ignored.
pub fn websocket_credential(headers: &HeaderMap) -> Result<Option<String>, Denied> {
    let websocket = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Ok(None);
    }
    let offered = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(WEBSOCKET_TOKEN_PREFIX));
    let Some(encoded) = offered else {
        return Ok(None);
    };
    let bad = || {
        Denied::unauthenticated(
            "the websocket subprotocol bearer.TOKEN must carry the token in base64url without padding",
        )
    };
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| bad())?;
    let token = String::from_utf8(decoded).map_err(|_| bad())?;
    let token = token.trim();
    if token.is_empty() {
        return Err(bad());
    }
    Ok(Some(token.to_string()))
}

/// A new token's secret string (`ACCESSOR.SECRET`) and its record (which keeps only the
/// secret's hash).
pub fn new_token(
    name: &str,
    policies: Vec<String>,
    management: bool,
    now: u64,
    expires_at: Option<u64>,
) -> (String, AclToken) {
    let accessor = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let record = AclToken {
        accessor: accessor.clone(),
        secret_sha256: sha256_hex(&secret),
        name: name.to_string(),
        management,
        policies,
        created_at: now,
        expires_at,
        parent: None,
    };
    (format!("{accessor}.{secret}"), record)
}

/// The management token record for a secret the operator chose (`ACCESSOR.SECRET`, each part
/// 8 to 128 of `[A-Za-z0-9_-]`); none if it is not of that form.
pub fn token_from_secret(token: &str, name: &str, now: u64) -> Option<(String, AclToken)> {
    let (accessor, secret) = token.trim().split_once('.')?;
    let part_ok = |p: &str| {
        (8..=128).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    };
    if !part_ok(accessor) || !part_ok(secret) {
        return None;
    }
    let record = AclToken {
        accessor: accessor.to_string(),
        secret_sha256: sha256_hex(secret),
        name: name.to_string(),
        management: true,
        policies: Vec::new(),
        created_at: now,
        expires_at: None,
        parent: None,
    };
    Some((format!("{accessor}.{secret}"), record))
}

/// How many derivations deep a token's parentage is checked (derived tokens are rarely derived
/// again; a deeper chain is cut short, never loops).
const MAX_DERIVATION_DEPTH: usize = 8;

/// Who `token` is (none: an anonymous call), at `now`.
pub fn authenticate(state: &Replicated, token: Option<&str>, now: u64) -> Result<Identity, Denied> {
    let Some(token) = token else {
        if state.acl_anonymous_read {
            return Ok(Identity::anonymous_reader());
        }
        return Err(Denied::unauthenticated(
            "this API needs a token: send `Authorization: Bearer TOKEN` (the bootstrap token is in the first server's data dir, file api-token; the CLI reads it there or from TEPUI_API_TOKEN)",
        ));
    };
    let unknown = || Denied::unauthenticated("unknown or revoked API token");
    let (accessor, secret) = token.split_once('.').ok_or_else(unknown)?;
    let record = state.acl_tokens.get(accessor).ok_or_else(unknown)?;
    if !constant_time_eq(record.secret_sha256.as_bytes(), sha256_hex(secret).as_bytes()) {
        return Err(unknown());
    }
    if record.expired(now) {
        return Err(Denied::unauthenticated(format!(
            "API token {accessor} expired; ask an operator for a new one (`tepui acl token create`)"
        )));
    }
    // A derived token is good while the tokens it comes from are (revoking one removes its
    // descendants too; this holds also before that is applied everywhere).
    let mut ancestor = record.parent.as_deref();
    for _ in 0..MAX_DERIVATION_DEPTH {
        let Some(parent) = ancestor else { break };
        match state.acl_tokens.get(parent) {
            Some(p) if !p.expired(now) => ancestor = p.parent.as_deref(),
            _ => {
                return Err(Denied::unauthenticated(format!(
                    "API token {accessor} was derived from token {parent}, which is revoked or expired; log in again"
                )))
            }
        }
    }
    let mut capabilities = BTreeSet::new();
    let mut frameworks = Vec::new();
    for name in &record.policies {
        // A policy deleted since is simply no longer granted.
        if let Some(p) = state.acl_policies.get(name) {
            capabilities.extend(p.capabilities.iter().copied());
            frameworks.extend(p.frameworks.iter().cloned());
        }
    }
    Ok(Identity {
        accessor: Some(record.accessor.clone()),
        name: record.name.clone(),
        management: record.management,
        capabilities,
        frameworks,
    })
}

/// Checks a request against the table: its route's need for its method, then its credential.
/// A matched route without a need for this method is refused: a policy is never implied.
pub fn check(
    table: &RouteTable,
    state: &Replicated,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    now: u64,
) -> Result<Option<Identity>, Denied> {
    let need = table.need(path, method).ok_or_else(|| {
        tracing::error!(%path, %method, "a route without a policy; refusing it");
        Denied::forbidden("no_policy", format!("{method} {path} has no access policy"))
    })?;
    if need == Need::Public {
        return Ok(None);
    }
    let token = credential(headers)?;
    let identity = authenticate(state, token.as_deref(), now)?;
    if let Need::Cap(cap) = need {
        identity.require(cap)?;
    }
    Ok(Some(identity))
}

/// What the gate needs: the route table, the node whose state holds the tokens, and where
/// audited calls are recorded (none: not recorded).
#[derive(Clone)]
pub struct Gate {
    pub table: Arc<RouteTable>,
    pub node: Node,
    pub audit: Option<Arc<AuditLog>>,
    /// The names callers may put in `Host` besides IPs, localhost and node names.
    pub hostnames: Arc<HostNames>,
}

/// Refuses what a web page could make a browser send to the API: a state-changing request
/// with one of the Content-Types a page may send anywhere without asking (a form's or plain
/// text), and any state-changing request or websocket whose `Origin` is not this server. The
/// CLI and API clients send neither.
pub fn browser_check(method: &Method, headers: &HeaderMap) -> Result<(), Denied> {
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let websocket = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if changes {
        let essence = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if let Some(ct) = essence.filter(|ct| {
            matches!(
                ct.as_str(),
                "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
            )
        }) {
            return Err(Denied {
                status: 415,
                code: "unsupported_media_type",
                message: format!(
                    "Content-Type {ct} is refused on calls that change things (a web page could send it); send application/json, or the dialect's own type"
                ),
            });
        }
    }
    if changes || websocket {
        if let Some(origin) = headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let host = headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
            if !origin_host.eq_ignore_ascii_case(host) {
                return Err(Denied::forbidden(
                    "foreign_origin",
                    format!(
                        "a call from the web page at {origin} is refused: only this server's own pages may call it"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Marks a request that a server forwarded to the leader: its `Host` was checked by the server
/// it arrived at. An extension, which no client can send.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded;

/// The names, besides IP addresses, `localhost` and the cluster's node names, by which callers
/// address the API (`--api-hostname`), lower case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostNames(BTreeSet<String>);

impl HostNames {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> HostNames {
        HostNames(names.into_iter().map(|n| normalize_host(n.as_ref())).collect())
    }
}

fn normalize_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a `Host` header (`name:port`, `1.2.3.4`, `[::1]:5050`).
fn host_part(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => value,
    }
}

/// Refuses a `Host` that names neither an IP address, `localhost`, a node of this cluster nor
/// a configured API hostname: what a web page sends after pointing its own DNS name at this
/// address (DNS rebinding), to read the API with the browser's help. A request without a
/// `Host` (HTTP/1.0 tools) passes: browsers always send one.
pub fn host_check<'a>(
    host: Option<&str>,
    configured: &HostNames,
    mut node_names: impl Iterator<Item = &'a str>,
) -> Result<(), Denied> {
    let Some(value) = host else {
        return Ok(());
    };
    let host = normalize_host(host_part(value));
    let known = host.parse::<std::net::IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || configured.0.contains(&host)
        || node_names.any(|n| normalize_host(n) == host);
    if known {
        return Ok(());
    }
    Err(Denied::forbidden(
        "unknown_host",
        format!(
            "Host {value} does not name this cluster (a web page may have pointed its DNS name here); call the API by IP address, localhost or a node's name, or give this name to the servers with --api-hostname"
        ),
    ))
}

/// The middleware every API request passes. Requests that matched no route go on (to a 404 or
/// 405 that reveals nothing); the others need what their route's policy says, and carry the
/// caller's [`Identity`] to their handler. Calls that change something, read a task's output
/// or exec into it are recorded in the audit log, refused ones too.
pub async fn enforce(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let now = tepui_node::now_ms();
    let method = req.method().clone();
    let audit = gate
        .audit
        .clone()
        .filter(|_| audit::audited(&method, gate.table.need(&route, &method)));
    let mut record = audit.as_ref().map(|_| AuditRecord {
        time_ms: now,
        accessor: None,
        who: None,
        method: method.to_string(),
        path: req.uri().path().to_string(),
        route: route.clone(),
        status: 0,
        refused: None,
        duration_ms: 0,
    });
    let public = gate.table.need(&route, &method) == Some(Need::Public);
    let host = (!public && req.extensions().get::<Forwarded>().is_none()).then(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .map(str::to_string)
    });
    // The request itself (its body is not Sync) must not be held across the catch-up's await.
    let headers = req.headers().clone();
    let headers = &headers;
    let check_now = |record: &mut Option<AuditRecord>| {
        browser_check(&method, headers).and_then(|()| {
            gate.node.read(|s| {
                let checked = match &host {
                    Some(h) => host_check(h.as_deref(), &gate.hostnames, s.nodes.values().map(|n| n.name.as_str())),
                    None => Ok(()),
                }
                .and_then(|()| check(&gate.table, s, &route, &method, headers, now));
                if let (Err(_), Some(r)) = (&checked, record.as_mut()) {
                    // A refused caller's token, if it is one: its accessor, never its secret.
                    r.accessor = credential(headers)
                        .ok()
                        .flatten()
                        .and_then(|t| t.split_once('.').map(|(a, _)| a.to_string()))
                        .filter(|a| s.acl_tokens.contains_key(a));
                }
                checked
            })
        })
    };
    let mut checked = check_now(&mut record);
    // A token this server has not applied yet (it lags the leader, or was just added): catch up
    // with the leader once, then decide, instead of refusing a token the cluster knows.
    if token_unknown_here(&checked, &gate.node, headers) {
        // A follower cannot ask for the leader's commit index; the leader's next append (a
        // heartbeat at most away) brings what it missed. Judge again after each apply.
        let mut applied = gate.node.watch_applied();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while token_unknown_here(&checked, &gate.node, headers) {
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => checked = check_now(&mut record),
                _ => break,
            }
        }
    }
    let response = match checked {
        Ok(identity) => {
            if let (Some(i), Some(r)) = (&identity, record.as_mut()) {
                r.accessor = i.accessor.clone();
                r.who = Some(if i.accessor.is_none() {
                    "anonymous".into()
                } else {
                    i.name.clone()
                });
            }
            if let Some(identity) = identity {
                req.extensions_mut().insert(identity);
            }
            next.run(req).await
        }
        Err(denied) => {
            tracing::debug!(%route, %method, status = denied.status, reason = %denied.message, "refused");
            if let Some(r) = record.as_mut() {
                r.refused = Some(denied.message.clone());
            }
            denied.into_response()
        }
    };
    if let (Some(log), Some(mut r)) = (audit, record) {
        r.status = response.status().as_u16();
        r.duration_ms = started.elapsed().as_millis() as u64;
        log.record(&r);
    }
    response
}

/// The longest a follower waits to catch up before it refuses a token it does not know (an
/// unknown token is refused that much later on a follower; never on the leader).
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `checked` refused a token whose accessor this node's state lacks, while another
/// server leads (the leader's state is the newest there is: it refuses at once).
fn token_unknown_here(
    checked: &Result<Option<Identity>, Denied>,
    node: &tepui_node::Node,
    headers: &HeaderMap,
) -> bool {
    let Err(denied) = checked else { return false };
    if denied.status != 401 || node.is_leader() {
        return false;
    }
    let Ok(Some(token)) = credential(headers) else {
        return false;
    };
    let Some((accessor, _)) = token.split_once('.') else {
        return false;
    };
    !node.read(|s| s.acl_tokens.contains_key(accessor))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
