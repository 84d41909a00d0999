//! The HTTP API (`/v1`, `/metrics`). Handlers run on the leader; a follower forwards every call
//! it cannot answer locally over the cluster port, so any server answers any call.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tepui_api::{
    DriverView, Health, LeaderView, MemberView, NodeView, ResourcesView, RestoreResult, StatusView, TokenCreateRequest,
    TokenCreated, TokenView, VarPutRequest, VarView,
};
use tepui_auth::{Cap, Policy, RouteTable, Routes};
use tepui_node::http::{JsonBody, JSON_LIMIT};
use tepui_node::{now_ms, Error, ErrorKind};
use tepui_pki::token::JoinToken;
use tepui_pki::Role;
use tepui_proto::{HttpChunk, HttpRequest};
use tepui_state::{ApplyError, Command, NodeRecord, NodeStatus, Response as Applied, State as Replicated};

use crate::node::{token_record, Inner};
use crate::VERSION;

/// A snapshot upload may be large.
const SNAPSHOT_LIMIT: usize = 512 << 20;
pub(crate) const FORWARDED: &str = "x-tepui-forwarded";
/// A join token without an explicit `ttl` expires after this long: a token lost in a shell
/// history or a ticket must not admit nodes forever.
pub(crate) const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

type Shared = State<Arc<Inner>>;

/// The features' routes: those that run on the leader (a follower forwards them), and those
/// every server answers itself.
pub(crate) struct Features {
    pub leader: Routes,
    pub local: Routes,
    /// Where the gate records writes, logs and exec calls.
    pub audit: Option<Arc<tepui_auth::AuditLog>>,
    /// The names callers may address the API by, besides IPs, localhost and node names.
    pub hostnames: tepui_auth::HostNames,
}

/// Every route of the API, and the table of their policies.
pub(crate) fn router(inner: Arc<Inner>, features: Features) -> (Router, Arc<RouteTable>) {
    let own = Routes::new()
        .route("/v1/status", Policy::new().get(Cap::Read), get(status))
        .route("/v1/members", Policy::new().get(Cap::Read), get(members))
        .route("/v1/nodes", Policy::new().get(Cap::Read), get(nodes))
        .route(
            "/v1/nodes/{id}",
            Policy::new().get(Cap::Read).delete(Cap::Operator),
            get(node).delete(remove_node),
        )
        .route(
            "/v1/tokens",
            Policy::new().get(Cap::Operator).post(Cap::Operator),
            get(tokens).post(create_token),
        )
        .route(
            "/v1/tokens/{id}",
            Policy::new().get(Cap::Operator).delete(Cap::Operator),
            get(token).delete(revoke_token),
        )
        .route("/v1/vars", Policy::new().get(Cap::Read), get(vars))
        .route(
            "/v1/vars/{*key}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(get_var).put(put_var).delete(delete_var),
        )
        .route("/v1/operator/ca", Policy::new().get(Cap::Operator), get(ca_status))
        .route(
            "/v1/operator/ca/rotate",
            Policy::new().post(Cap::Operator),
            axum::routing::post(ca_rotate),
        )
        .route(
            "/v1/operator/ca/finish",
            Policy::new().post(Cap::Operator),
            axum::routing::post(ca_finish),
        )
        .route(
            "/v1/operator/raft/peers",
            Policy::new().get(Cap::Operator),
            get(members),
        )
        .route(
            "/v1/operator/raft/peers/{peer}",
            Policy::new().delete(Cap::Operator),
            axum::routing::delete(remove_peer),
        )
        .route(
            "/v1/operator/upgrade-check",
            Policy::new().get(Cap::Operator),
            get(upgrade_check),
        )
        .route(
            "/v1/operator/snapshot",
            Policy::new().get(Cap::Operator).post(Cap::Operator),
            get(snapshot_save)
                .post(snapshot_restore)
                .layer(DefaultBodyLimit::max(SNAPSHOT_LIMIT)),
        )
        .with_state(inner.clone());
    let api = own.merge(features.leader).map_router(|r| {
        r.layer(DefaultBodyLimit::max(JSON_LIMIT))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), forward_to_leader))
    });
    let (router, table) = Routes::new()
        .route("/v1/health", Policy::public_get(), get(health))
        .route("/metrics", Policy::new().get(Cap::Read), get(metrics))
        .with_state(inner.clone())
        .merge(features.local)
        .merge(api)
        .into_parts();
    let table = Arc::new(table);
    inner.metrics.routes(&table);
    // Every matched route passes the gate first, on a follower before it forwards, and again
    // on the leader (the caller's Authorization header goes along).
    let gate = tepui_auth::Gate {
        table: table.clone(),
        node: inner.node.clone(),
        audit: features.audit,
        hostnames: Arc::new(features.hostnames),
    };
    let router = router
        .layer(axum::middleware::from_fn_with_state(gate, tepui_auth::enforce))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(inner, observe));
    (router, table)
}

async fn not_found(req: Request) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "not_found",
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Counts and traces every request.
async fn observe(State(inner): Shared, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    inner.metrics.http_request(
        route.as_ref().map(MatchedPath::as_str),
        &method,
        status,
        started.elapsed(),
    );
    tracing::debug!(%method, %path, status, elapsed_ms = started.elapsed().as_millis() as u64, "http request");
    resp
}

/// How much of a body a follower reads before it forwards the request: the route's own limit
/// (the leader enforces it again), not the largest upload's, so that no call makes a follower
/// hold half a gigabyte unless the route takes that much.
fn forward_limit(route: Option<&str>) -> usize {
    match route {
        Some("/v1/operator/snapshot" | "/v1/images/import") => SNAPSHOT_LIMIT,
        Some("/api/v1/scheduler") => 16 << 20,
        _ => JSON_LIMIT,
    }
}

/// On a follower, sends the request to the leader over the cluster port and relays its answer.
async fn forward_to_leader(State(inner): Shared, req: Request, next: Next) -> Response {
    if inner.is_leader() {
        return next.run(req).await;
    }
    if req.headers().contains_key(FORWARDED) {
        return Error::new(
            ErrorKind::Unavailable,
            "no_leader",
            "leadership is changing; retry in a moment",
        )
        .into_response();
    }
    if crate::tunnel::is_upgrade(req.headers()) {
        return crate::tunnel::relay(&inner, req).await;
    }
    let limit = forward_limit(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let mut headers: std::collections::HashMap<String, String> = req
        .headers()
        .iter()
        .filter(|(k, _)| {
            *k == http::header::CONTENT_TYPE || *k == http::header::ACCEPT || *k == http::header::AUTHORIZATION
        })
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    // A browser's websocket carries its token as a subprotocol, which is not forwarded (nor is
    // the upgrade): the leader gets it as the caller's Authorization, so it answers as it
    // would that caller, not 401.
    if !req.headers().contains_key(http::header::AUTHORIZATION) {
        if let Ok(Some(token)) = tepui_auth::websocket_credential(req.headers()) {
            headers.insert(http::header::AUTHORIZATION.to_string(), format!("Bearer {token}"));
        }
    }
    let method = req.method().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let body = match tepui_node::http::read_body(req, limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let forwarded = HttpRequest {
        method,
        path_and_query,
        headers,
        body: body.to_vec(),
    };
    let (head, chunks) = match crate::forward::to_leader(&inner, forwarded).await {
        Ok(answer) => answer,
        Err(e) => return e.into_response(),
    };
    // The rest of the body streams through as the leader produces it.
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(head.body))]);
    let rest = futures::StreamExt::map(chunks, |c| match c {
        Ok(c) => Ok(Bytes::from(c.body)),
        Err(status) => Err(std::io::Error::other(status.message().to_string())),
    });
    let mut resp = Response::new(Body::from_stream(futures::StreamExt::chain(first, rest)));
    *resp.status_mut() = StatusCode::from_u16(head.status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in head.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

pub(crate) type ChunkStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<HttpChunk, tonic::Status>> + Send>>;

/// Runs a request a follower forwarded through this server's own router and streams the
/// answer back: status and headers first, then the body as it comes.
pub(crate) async fn execute_forwarded(router: Router, req: HttpRequest) -> ChunkStream {
    use futures::StreamExt;
    use tower::ServiceExt;
    let mut builder = http::Request::builder()
        .method(Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET))
        .uri(&req.path_and_query)
        .header(FORWARDED, "1");
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let resp = match builder.body(Body::from(req.body)) {
        Ok(mut request) => match {
            // The server it arrived at checked its Host (names it knows, this one may not).
            request.extensions_mut().insert(tepui_auth::Forwarded);
            router.oneshot(request).await
        } {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Err(e) => Error::new(ErrorKind::BadRequest, "bad_request", e.to_string()).into_response(),
    };
    let head = HttpChunk {
        status: resp.status().as_u16() as u32,
        headers: resp
            .headers()
            .iter()
            .filter(|(k, _)| *k == http::header::CONTENT_TYPE || *k == http::header::LOCATION)
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: vec![],
    };
    let body = resp.into_body().into_data_stream().map(|frame| match frame {
        Ok(bytes) => Ok(HttpChunk {
            status: 0,
            headers: Default::default(),
            body: bytes.to_vec(),
        }),
        Err(e) => Err(tonic::Status::internal(e.to_string())),
    });
    Box::pin(futures::stream::iter([Ok(head)]).chain(body))
}

type Json<T> = axum::Json<T>;
type ApiResult<T> = Result<Json<T>, Error>;

async fn health(State(inner): Shared) -> Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        node: inner.name.clone(),
        role: if inner.is_leader() {
            "leader".into()
        } else {
            "server".into()
        },
        version: VERSION.into(),
    })
}

async fn metrics(State(inner): Shared) -> Response {
    let text = crate::metrics::render(&inner);
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn millis_ago(at: Option<Instant>) -> Option<u64> {
    at.map(|t| t.elapsed().as_millis() as u64)
}

async fn status(State(inner): Shared) -> ApiResult<StatusView> {
    inner.linearize().await?;
    let m = inner.raft.metrics().borrow().clone();
    let leader = m.current_leader.and_then(|id| {
        inner.state.read(|s| {
            s.nodes.get(&id).map(|n| LeaderView {
                id,
                name: n.name.clone(),
                cluster_addr: n.cluster_addr.clone(),
                http_addr: n.http_addr.clone(),
            })
        })
    });
    let servers = m.membership_config.membership().voter_ids().count();
    let view = inner.state.read(|s| {
        let agents: Vec<&NodeRecord> = s.nodes.values().filter(|n| n.agent.is_some()).collect();
        StatusView {
            cluster_id: s.cluster.as_ref().map(|c| c.cluster_id.clone()).unwrap_or_default(),
            leader,
            term: m.current_term,
            commit_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            applied_index: inner.state.applied_index(),
            servers,
            agents: agents.len(),
            agents_ready: agents.iter().filter(|n| n.status == NodeStatus::Ready).count(),
            version: VERSION.into(),
            drivers: inner
                .node
                .drivers()
                .statuses()
                .into_iter()
                .map(|d| DriverView {
                    name: d.name,
                    leading: d.leading,
                    activations: d.activations,
                    errors: d.errors,
                    last_activation: d.last_activation.map(str::to_string),
                    last_started_at_ms: d.last_started_at,
                    last_duration_us: d.last_duration_us,
                    last_error: d.last_error,
                    next_timeout_ms: d.next_timeout_ms,
                })
                .collect(),
        }
    });
    Ok(axum::Json(view))
}

pub(crate) fn member_views(inner: &Inner) -> Vec<MemberView> {
    let m = inner.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let replication = m.replication.clone().unwrap_or_default();
    membership
        .nodes()
        .map(|(id, node)| {
            let (name, http_addr) = inner
                .state
                .read(|s| s.nodes.get(id).map(|n| (n.name.clone(), n.http_addr.clone())))
                .unwrap_or_default();
            let voter = voters.contains(id);
            let raft_role = if m.current_leader == Some(*id) {
                "leader"
            } else if voter {
                "follower"
            } else {
                "learner"
            };
            MemberView {
                id: *id,
                name,
                cluster_addr: node.addr.clone(),
                http_addr,
                raft_role: raft_role.into(),
                voter,
                matched_index: replication.get(id).and_then(|l| l.map(|l| l.index)),
            }
        })
        .collect()
}

async fn members(State(inner): Shared) -> ApiResult<Vec<MemberView>> {
    inner.linearize().await?;
    Ok(axum::Json(member_views(&inner)))
}

fn node_view(inner: &Inner, n: &NodeRecord) -> NodeView {
    let agent_seen = inner.node.agents().last_heard(n.id);
    let peer_seen = inner
        .peer_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&n.id)
        .copied();
    let is_server = n.role == Role::Server;
    let roles = match (is_server, n.agent.is_some()) {
        (true, true) => "server+agent",
        (true, false) => "server",
        (false, _) => "agent",
    };
    let mut status = n.status.as_str().to_string();
    let last_heartbeat_ms_ago = if n.agent.is_some() {
        millis_ago(agent_seen)
    } else if is_server && n.id == inner.id {
        Some(0)
    } else if is_server {
        millis_ago(peer_seen)
    } else {
        None
    };
    // Servers do not heartbeat through the state: the leader knows them from Raft traffic.
    if is_server && n.agent.is_none() && n.id != inner.id && n.status == NodeStatus::Ready {
        let silent = last_heartbeat_ms_ago.is_none_or(|ms| ms > inner.agent_timeout.as_millis() as u64);
        if silent {
            status = "unreachable".into();
        }
    }
    NodeView {
        id: n.id,
        name: n.name.clone(),
        roles: roles.into(),
        status,
        maintenance: n.maintenance.as_str().into(),
        cluster_addr: n.cluster_addr.clone(),
        http_addr: n
            .agent
            .as_ref()
            .map(|a| a.http_addr.clone())
            .unwrap_or_else(|| n.http_addr.clone()),
        resources: n.agent.as_ref().map(|a| ResourcesView {
            cpus: a.resources.cpus_milli as f64 / 1000.0,
            mem_mb: a.resources.mem_mb,
            disk_mb: a.resources.disk_mb,
            ports: a.resources.ports.iter().map(|(lo, hi)| format!("{lo}-{hi}")).collect(),
        }),
        attributes: n.agent.as_ref().map(|a| a.attributes.clone()).unwrap_or_default(),
        version: n.agent.as_ref().map(|a| a.version.clone()).or_else(|| {
            if !is_server {
                None
            } else if n.id == inner.id {
                Some(tepui_common::version::RELEASE.to_string())
            } else {
                inner.versions.get(n.id).map(|s| s.release)
            }
        }),
        joined_at_ms: n.joined_at,
        status_changed_at_ms: n.status_changed_at,
        last_heartbeat_ms_ago,
    }
}

async fn nodes(State(inner): Shared) -> ApiResult<Vec<NodeView>> {
    inner.linearize().await?;
    let records: Vec<NodeRecord> = inner.state.read(|s| s.nodes.values().cloned().collect());
    Ok(axum::Json(records.iter().map(|n| node_view(&inner, n)).collect()))
}

fn find_node(s: &Replicated, key: &str) -> Option<NodeRecord> {
    key.parse::<u64>()
        .ok()
        .and_then(|id| s.nodes.get(&id).cloned())
        .or_else(|| s.node_by_name(key).cloned())
}

/// The node `key` names (an id or a name), or a 404 that says so.
fn known_node(inner: &Inner, key: &str) -> Result<NodeRecord, Error> {
    inner.state.read(|s| find_node(s, key)).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "unknown_node",
            format!("no node with id or name {key:?}"),
        )
    })
}

async fn node(State(inner): Shared, Path(key): Path<String>) -> ApiResult<NodeView> {
    inner.linearize().await?;
    let n = known_node(&inner, &key)?;
    Ok(axum::Json(node_view(&inner, &n)))
}

/// Removes an agent: it gets no more work and its certificate is refused on every call from
/// now on. Servers leave through the Raft peers route.
async fn remove_node(State(inner): Shared, Path(key): Path<String>) -> ApiResult<NodeView> {
    inner.linearize().await?;
    let n = known_node(&inner, &key)?;
    if n.role == Role::Server {
        return Err(Error::new(
            ErrorKind::Conflict,
            "is_a_server",
            format!(
                "node {} is a server; remove it with `tepui operator raft remove-peer {}`",
                n.id, n.name
            ),
        ));
    }
    let live = inner.state.read(|s| {
        s.tasks
            .values()
            .filter(|t| t.agent_id == n.id && !t.state.is_terminal())
            .count()
    });
    if live > 0 {
        return Err(Error::new(
            ErrorKind::Conflict,
            "agent_busy",
            format!(
                "agent {} still has {live} live tasks; drain it first (`tepui node drain {}`)",
                n.name, n.name
            ),
        ));
    }
    let view = node_view(&inner, &n);
    inner.write(Command::RemoveNode { id: n.id }).await?;
    tracing::warn!(node = n.id, name = %n.name, "agent removed from the cluster");
    Ok(axum::Json(view))
}

async fn ca_status(State(inner): Shared) -> ApiResult<tepui_api::CaStatusView> {
    inner.linearize().await?;
    Ok(axum::Json(inner.state.read(crate::certs::status)))
}

/// The binary `upgrade-check` asks about, from its query.
fn binary_of(q: &std::collections::HashMap<String, String>) -> Result<tepui_common::version::Speaks, Error> {
    let release = q
        .get("release")
        .map(|r| r.trim().to_string())
        .ok_or_else(|| Error::invalid("release", "the binary's release is required (release=0.2.0)"))?;
    let valid = !release.is_empty()
        && release.len() <= 64
        && release
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'));
    if !valid {
        return Err(Error::invalid("release", "a release is 1 to 64 of [A-Za-z0-9.+-]"));
    }
    let number = |field: &str| -> Result<Option<u32>, Error> {
        q.get(field)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::invalid(field, format!("{v:?} is not a protocol number (1, 2, ...)")))
            })
            .transpose()
    };
    let protocol = number("protocol")?;
    let min_protocol = number("min_protocol")?;
    if let (Some(p), Some(m)) = (protocol, min_protocol) {
        if m > p {
            return Err(Error::invalid("min_protocol", format!("{m} is above protocol {p}")));
        }
    }
    // Without protocols, a release this server knows says its own.
    match (protocol, tepui_common::version::known_release(&release)) {
        (None, Some(known)) => Ok(known),
        _ => Ok(tepui_common::version::Speaks::told(
            Some(&release),
            protocol,
            min_protocol,
        )),
    }
}

/// Whether the cluster can take a binary: what each server and agent speaks, as this leader
/// heard it, and the verdict for each (`tepui_common::version::check`).
async fn upgrade_check(
    State(inner): Shared,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> ApiResult<tepui_api::UpgradeCheckView> {
    use tepui_common::version::{self, Member, Speaks};
    let binary = binary_of(&q)?;
    inner.linearize().await?;
    let membership = inner.raft.metrics().borrow().membership_config.clone();
    let leader = inner.leader_id();
    let hub = inner.node.agents();
    let members: Vec<Member> = inner.state.read(|s| {
        let name = |id: u64| s.nodes.get(&id).map(|n| n.name.clone()).unwrap_or_default();
        let servers = membership.membership().nodes().map(|(id, _)| {
            let (speaks, heard) = if *id == inner.id {
                (Speaks::this(), true)
            } else {
                match inner.versions.get(*id) {
                    Some(sp) => (sp, true),
                    None => (Speaks::legacy(), false),
                }
            };
            Member {
                id: *id,
                name: name(*id),
                server: true,
                speaks,
                heard,
            }
        });
        let agents = s
            .nodes
            .values()
            .filter(|n| n.role == Role::Agent)
            .filter_map(|n| n.agent.as_ref().map(|a| (n, a)))
            .map(|(n, a)| {
                let (speaks, heard) = match hub.speaks(n.id) {
                    Some(sp) => (sp, true),
                    None => (
                        version::known_release(&a.version)
                            .unwrap_or_else(|| Speaks::told(Some(&a.version), None, None)),
                        false,
                    ),
                };
                Member {
                    id: n.id,
                    name: n.name.clone(),
                    server: false,
                    speaks,
                    heard,
                }
            });
        servers.chain(agents).collect()
    });
    Ok(axum::Json(tepui_api::UpgradeCheckView::build(
        &binary, &members, leader,
    )))
}

async fn ca_rotate(State(inner): Shared) -> ApiResult<tepui_api::CaStatusView> {
    Ok(axum::Json(crate::certs::rotate(&inner).await?))
}

async fn ca_finish(State(inner): Shared) -> ApiResult<tepui_api::CaStatusView> {
    Ok(axum::Json(crate::certs::finish(&inner).await?))
}

fn token_view(t: &tepui_state::TokenRecord) -> TokenView {
    TokenView {
        id: t.id.clone(),
        role: t.role.to_string(),
        description: t.description.clone(),
        created_at_ms: t.created_at,
        expires_at_ms: t.expires_at,
        revoked: t.revoked,
        uses: t.uses,
    }
}

async fn tokens(State(inner): Shared) -> ApiResult<Vec<TokenView>> {
    inner.linearize().await?;
    Ok(axum::Json(
        inner.state.read(|s| s.tokens.values().map(token_view).collect()),
    ))
}

async fn token(State(inner): Shared, Path(id): Path<String>) -> ApiResult<TokenView> {
    inner.linearize().await?;
    inner
        .state
        .read(|s| s.tokens.get(&id).map(token_view))
        .map(axum::Json)
        .ok_or_else(|| Error::from(ApplyError::UnknownToken { id }))
}

async fn create_token(
    State(inner): Shared,
    me: Option<axum::Extension<tepui_auth::Identity>>,
    JsonBody(req): JsonBody<TokenCreateRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), Error> {
    let role = Role::parse(&req.role).ok_or_else(|| {
        Error::new(
            ErrorKind::Invalid,
            "invalid_field",
            format!("role must be server or agent, not {:?}", req.role),
        )
        .field("role")
    })?;
    let now = now_ms();
    let expires_at = match &req.ttl {
        None => Some(now + DEFAULT_TOKEN_TTL.as_millis() as u64),
        Some(ttl) => {
            let bad = |message: String| Error::new(ErrorKind::Invalid, "invalid_field", message).field("ttl");
            let d = tepui_api::parse_token_ttl(ttl).map_err(bad)?;
            Some(tepui_api::token_expiry(now, d).ok_or_else(|| bad(format!("ttl {ttl:?} is too long")))?)
        }
    };
    // A short-lived API token (one a browser holds) leaves no longer-lived way in behind.
    let expires_at = inner
        .state
        .read(|s| tepui_auth::capped_by_caller(s, me.as_deref(), expires_at));
    let ca = inner.state.read(|s| s.cluster.as_ref().map(|c| c.ca_cert_pem.clone()));
    let ca = ca.ok_or_else(|| Error::from(ApplyError::NotInitialized))?;
    let fingerprint =
        tepui_pki::ca_fingerprint(&ca).map_err(|e| Error::new(ErrorKind::Internal, "internal", e.to_string()))?;
    let token = JoinToken::generate(role, &fingerprint);
    let record = token_record(&token, &req.description, now, expires_at);
    inner.write(Command::CreateToken { token: record.clone() }).await?;
    tracing::info!(token = %token.id, %role, "token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenCreated {
            token: token.to_string(),
            view: token_view(&record),
        }),
    ))
}

async fn revoke_token(State(inner): Shared, Path(id): Path<String>) -> ApiResult<TokenView> {
    inner.write(Command::RevokeToken { id: id.clone() }).await?;
    tracing::info!(token = %id, "token revoked");
    inner
        .state
        .read(|s| s.tokens.get(&id).map(token_view))
        .map(axum::Json)
        .ok_or_else(|| Error::from(ApplyError::UnknownToken { id }))
}

fn var_view(key: &str, v: &tepui_state::Var) -> VarView {
    VarView {
        key: key.to_string(),
        value: v.value.clone(),
        modify_index: v.modify_index,
        modified_at_ms: v.modified_at,
    }
}

fn check_var_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key.split('/').all(|part| !part.is_empty())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Invalid,
            "invalid_key",
            format!(
                "variable key {key:?} must be 1-256 characters of letters, digits, - _ . and / between non-empty parts"
            ),
        ))
    }
}

async fn vars(State(inner): Shared) -> ApiResult<Vec<VarView>> {
    inner.linearize().await?;
    Ok(axum::Json(
        inner
            .state
            .read(|s| s.vars.iter().map(|(k, v)| var_view(k, v)).collect()),
    ))
}

async fn get_var(State(inner): Shared, Path(key): Path<String>) -> ApiResult<VarView> {
    inner.linearize().await?;
    inner
        .state
        .read(|s| s.vars.get(&key).map(|v| var_view(&key, v)))
        .map(axum::Json)
        .ok_or_else(|| Error::from(ApplyError::UnknownVar { key }))
}

const VALUE_LIMIT: usize = 64 << 10;

async fn put_var(
    State(inner): Shared,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<VarPutRequest>,
) -> ApiResult<VarView> {
    check_var_key(&key)?;
    if req.value.len() > VALUE_LIMIT {
        return Err(Error::new(
            ErrorKind::TooLarge,
            "value_too_large",
            format!(
                "a variable holds at most {VALUE_LIMIT} bytes; this one has {}",
                req.value.len()
            ),
        )
        .field("value"));
    }
    let now = now_ms();
    let answer = inner
        .write(Command::PutVar {
            key: key.clone(),
            value: req.value.clone(),
            cas: req.cas,
            now,
        })
        .await?;
    let modify_index = match answer {
        Applied::Var { modify_index, .. } => modify_index,
        _ => 0,
    };
    Ok(axum::Json(VarView {
        key,
        value: req.value,
        modify_index,
        modified_at_ms: now,
    }))
}

#[derive(Deserialize)]
struct CasQuery {
    cas: Option<u64>,
}

async fn delete_var(
    State(inner): Shared,
    Path(key): Path<String>,
    axum::extract::Query(q): axum::extract::Query<CasQuery>,
) -> ApiResult<serde_json::Value> {
    inner
        .write(Command::DeleteVar {
            key: key.clone(),
            cas: q.cas,
        })
        .await?;
    Ok(axum::Json(serde_json::json!({ "deleted": key })))
}

async fn remove_peer(State(inner): Shared, Path(peer): Path<String>) -> ApiResult<Vec<MemberView>> {
    inner.linearize().await?;
    let id = inner
        .state
        .read(|s| find_node(s, &peer))
        .map(|n| n.id)
        .or_else(|| peer.parse().ok());
    let id = id.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "unknown_node",
            format!("no server with id or name {peer:?}"),
        )
    })?;
    let is_member = member_views(&inner).iter().any(|m| m.id == id);
    if !is_member {
        return Err(Error::new(
            ErrorKind::NotFound,
            "not_a_peer",
            format!("node {id} is not a raft peer; see `tepui server members`"),
        ));
    }
    let voters = member_views(&inner).iter().filter(|m| m.voter).count();
    if voters <= 1 {
        return Err(Error::new(
            ErrorKind::Conflict,
            "last_voter",
            "cannot remove the last voter of the cluster",
        ));
    }
    inner.remove_server(id).await?;
    tracing::info!(node = id, "raft peer removed");
    Ok(axum::Json(member_views(&inner)))
}

/// A backup file: the whole replicated state with a checksum, so a damaged file is refused.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: String,
    cluster_id: String,
    index: u64,
    created_at_ms: u64,
    sha256: String,
    state: Box<serde_json::value::RawValue>,
}

const SNAPSHOT_FORMAT: &str = "tepui-snapshot/1";

async fn snapshot_save(State(inner): Shared) -> Result<Response, Error> {
    inner.linearize().await?;
    let (body, _) = snapshot_file(&inner.state, now_ms())?;
    Ok(([(http::header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// The applied state as a backup file (what `snapshot save` writes and `restore` reads), and
/// the index it was taken at. Scheduled backups (`crate::backups`) write the same files.
pub(crate) fn snapshot_file(state: &tepui_store::StateReader, now: u64) -> Result<(Vec<u8>, u64), Error> {
    let (state_json, cluster_id, index) = state.read(|s| {
        (
            serde_json::to_string(s),
            s.cluster.as_ref().map(|c| c.cluster_id.clone()).unwrap_or_default(),
            state.applied_index(),
        )
    });
    let state_json = state_json.map_err(|e| Error::new(ErrorKind::Internal, "internal", e.to_string()))?;
    let file = SnapshotFile {
        format: SNAPSHOT_FORMAT.into(),
        cluster_id,
        index,
        created_at_ms: now,
        sha256: tepui_pki::sha256_hex(state_json.as_bytes()),
        state: serde_json::value::RawValue::from_string(state_json)
            .map_err(|e| Error::new(ErrorKind::Internal, "internal", e.to_string()))?,
    };
    let body = serde_json::to_vec(&file).map_err(|e| Error::new(ErrorKind::Internal, "internal", e.to_string()))?;
    Ok((body, index))
}

async fn snapshot_restore(State(inner): Shared, body: Bytes) -> ApiResult<RestoreResult> {
    let bad = |msg: String| Error::new(ErrorKind::Invalid, "bad_snapshot", msg);
    let file: SnapshotFile =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a tepui snapshot file: {e}")))?;
    if file.format != SNAPSHOT_FORMAT {
        return Err(bad(format!(
            "snapshot format {:?} is not {SNAPSHOT_FORMAT:?}",
            file.format
        )));
    }
    if tepui_pki::sha256_hex(file.state.get().as_bytes()) != file.sha256 {
        return Err(bad(
            "the snapshot's checksum does not match its content: the file is damaged".into(),
        ));
    }
    let state: Replicated =
        serde_json::from_str(file.state.get()).map_err(|e| bad(format!("the snapshot's state does not parse: {e}")))?;
    let (vars, tokens) = (state.vars.len(), state.tokens.len());
    inner.write(Command::Restore { state: Box::new(state) }).await?;
    tracing::warn!(from_cluster = %file.cluster_id, index = file.index, "state restored from a snapshot");
    Ok(axum::Json(RestoreResult {
        restored_index: inner.state.applied_index(),
        vars,
        tokens,
    }))
}
