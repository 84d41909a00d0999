//! The cluster port's gRPC service: Raft RPCs, joins, forwarded API calls, agent streams.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tepui_pki::{NodeIdentity, Role};
use tepui_proto::agent::{AgentToServer, ServerToAgent};
use tepui_proto::cluster_server::{Cluster, ClusterServer};
use tepui_proto::{
    AddServerRequest, AddServerResponse, Envelope, HttpRequest, JoinRequest, JoinResponse, RaftPayload, RenewRequest,
    RenewResponse,
};
use tepui_state::{AgentInfo, ApplyError, Command, Resources, Response};
use tepui_transport::PeerInfo;
use tokio::net::TcpListener;
use tonic::{Request, Status, Streaming};

use tepui_master::Master;
use tepui_node::{now_ms, WriteError};

use crate::node::Inner;

pub(crate) async fn serve(
    inner: Arc<Inner>,
    master: Master,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let incoming = tepui_transport::incoming_limited(
        listener,
        tls,
        shutdown,
        inner.peers.closed_conns(),
        tepui_transport::ConnLimits::default(),
    );
    let service = Arc::new(ClusterService { inner, master });
    // Nodes of the cluster send snapshots and forwarded uploads: large messages.
    let trusted = ClusterServer::from_arc(service.clone())
        .max_decoding_message_size(TRUSTED_MESSAGE_LIMIT)
        .max_encoding_message_size(TRUSTED_MESSAGE_LIMIT);
    // `Join` is the one call open to callers without a certificate: small messages only.
    let open = ClusterServer::from_arc(service)
        .max_decoding_message_size(OPEN_MESSAGE_LIMIT)
        .max_encoding_message_size(OPEN_MESSAGE_LIMIT);
    if let Err(e) = tonic::transport::Server::builder()
        // Peers that stop answering pings are dropped, as are half-open connections.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .http2_max_header_list_size(Some(64 << 10))
        .max_concurrent_streams(Some(1024))
        .layer(tower::layer::layer_fn(move |routes| Gate {
            routes,
            open: open.clone(),
        }))
        .add_service(trusted)
        .serve_with_incoming(incoming)
        .await
    {
        tracing::error!(error = %e, "cluster port stopped");
    }
}

/// The largest message a node of the cluster may send (a snapshot, a forwarded upload).
const TRUSTED_MESSAGE_LIMIT: usize = 512 << 20;
/// The largest message of a call without a certificate: a join request is a few KiB.
pub(crate) const OPEN_MESSAGE_LIMIT: usize = 64 << 10;
const JOIN_PATH: &str = "/tepui.cluster.v1.Cluster/Join";

/// Sends `Join` to the service with small message limits, refuses every other call of a
/// caller without a certificate before its body is read, and lets the rest through.
#[derive(Clone)]
struct Gate<S> {
    routes: S,
    open: ClusterServer<ClusterService>,
}

type GateFuture =
    Pin<Box<dyn std::future::Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for Gate<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = GateFuture;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.routes.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> GateFuture {
        if req.uri().path() == JOIN_PATH {
            let mut open = self.open.clone();
            return Box::pin(async move { open.call(req).await });
        }
        let certified = req.extensions().get::<PeerInfo>().is_some_and(|p| p.identity.is_some());
        if !certified {
            let refused = Status::unauthenticated(
                "a node certificate of this cluster is required; only Join is open without one",
            );
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        }
        Box::pin(self.routes.call(req))
    }
}

struct ClusterService {
    inner: Arc<Inner>,
    /// Where the agent streams' messages go: registrations, heartbeats and status updates.
    master: Master,
}

fn peer<T>(req: &Request<T>) -> Option<NodeIdentity> {
    req.extensions().get::<PeerInfo>().and_then(|p| p.identity.clone())
}

/// The caller's certificate identity, on every call: a certificate of the cluster's CA is not
/// enough, its node must still belong to the cluster (a removed node is refused at once).
fn require_member<T>(inner: &Inner, req: &Request<T>) -> Result<NodeIdentity, Status> {
    let who = peer(req).ok_or_else(|| Status::unauthenticated("a node certificate is required"))?;
    let listed = inner.state.read(|s| match &s.cluster {
        // A joining server has no state yet: its leader's certificate is all it can go by.
        None => true,
        Some(_) => s.nodes.get(&who.id).is_some_and(|n| n.role == who.role),
    });
    // A server the Raft membership holds is one too, even before this node applied its
    // admission (a lagging follower).
    if listed || (who.role == Role::Server && inner.member_addr(who.id).is_some()) {
        Ok(who)
    } else {
        Err(Status::permission_denied(format!(
            "node {} ({}) is not part of this cluster (removed?)",
            who.id, who.name
        )))
    }
}

/// Only servers may speak Raft or forward requests.
fn require_server<T>(inner: &Inner, req: &Request<T>) -> Result<NodeIdentity, Status> {
    match peer(req) {
        Some(id) if id.role == Role::Server => require_member(inner, req),
        Some(id) => Err(Status::permission_denied(format!(
            "node {} is an {}, not a server",
            id.id, id.role
        ))),
        None => Err(Status::unauthenticated("a server certificate is required")),
    }
}

/// `unavailable`, naming the leader's cluster address in `x-tepui-leader` when known.
fn not_leader(inner: &Inner) -> Status {
    let leader = inner.leader_id().and_then(|l| inner.member_addr(l)).unwrap_or_default();
    let mut status = Status::unavailable(format!("not the leader; the leader is at {leader:?}"));
    if let Ok(v) = leader.parse() {
        status.metadata_mut().insert("x-tepui-leader", v);
    }
    status
}

fn parse_ips(ips: &[String]) -> Result<Vec<std::net::IpAddr>, Status> {
    ips.iter()
        .map(|ip| {
            ip.parse()
                .map_err(|_| Status::invalid_argument(format!("bad IP address {ip:?}")))
        })
        .collect()
}

fn api_status(e: tepui_node::Error) -> Status {
    Status::failed_precondition(e.to_string())
}

fn decode<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.json).map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

/// A Raft answer, which tells what this server speaks (the leader's upgrade gate hears it).
fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<RaftPayload>, Status> {
    let mut answer = serde_json::to_vec(v)
        .map(|json| tonic::Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(e.to_string()))?;
    crate::versions::tell(answer.metadata_mut());
    Ok(answer)
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::NotLeader { .. } => Status::unavailable("not the leader; retry"),
        WriteError::Rejected(e) => Status::permission_denied(e.to_string()),
        WriteError::Raft(e) => Status::unavailable(e),
        WriteError::Gated(e) => Status::failed_precondition(e.to_string()),
    }
}

impl ClusterService {
    async fn leader_addr(&self) -> Result<(u64, String), Status> {
        let leader = self
            .inner
            .leader_id()
            .ok_or_else(|| Status::unavailable("no leader elected yet; retry"))?;
        let addr = self
            .inner
            .member_addr(leader)
            .ok_or_else(|| Status::unavailable("the leader's address is unknown; retry"))?;
        Ok((leader, addr))
    }

    async fn join_as_leader(
        &self,
        req: JoinRequest,
        joiner: &tepui_common::version::Speaks,
    ) -> Result<JoinResponse, Status> {
        let inner = &self.inner;
        let role =
            Role::parse(&req.role).ok_or_else(|| Status::invalid_argument(format!("unknown role {:?}", req.role)))?;
        // Before anything is admitted: a release that cannot work beside the servers (or, for
        // a server, read what the cluster writes) is refused with why.
        let servers: Vec<tepui_common::version::Speaks> = {
            let m = inner.raft.metrics().borrow().membership_config.clone();
            m.membership()
                .nodes()
                .map(|(id, _)| {
                    if *id == inner.id {
                        tepui_common::version::Speaks::this()
                    } else {
                        inner
                            .versions
                            .get(*id)
                            .unwrap_or_else(tepui_common::version::Speaks::legacy)
                    }
                })
                .collect()
        };
        tepui_common::version::can_join(joiner, role == Role::Server, &servers)
            .map_err(|why| Status::failed_precondition(format!("cannot join this cluster: {why}")))?;
        let now = now_ms();
        let secret_sha256 = tepui_pki::sha256_hex(req.secret.as_bytes());
        let (token_role, ca) = inner.state.read(|s| {
            let token = s.check_token(&req.token_id, &secret_sha256, now).map(|t| t.role);
            (token, s.cluster.clone())
        });
        let token_role = token_role.map_err(|e| Status::permission_denied(e.to_string()))?;
        if token_role != role {
            let article = if token_role == Role::Agent { "an" } else { "a" };
            return Err(Status::permission_denied(format!(
                "token {} is {article} {token_role} token, but the node asked to join as {role}",
                req.token_id
            )));
        }
        let cluster = ca.ok_or_else(|| Status::unavailable("the cluster is not initialized yet; retry"))?;
        let ca = tepui_pki::CertifiedKey {
            cert_pem: cluster.ca_cert_pem.clone(),
            key_pem: cluster.ca_key_pem.clone(),
        };
        let ips = parse_ips(&req.ips)?;
        // Check the request before it is admitted, so a bad CSR leaves no node record behind.
        let probe = NodeIdentity {
            id: 0,
            role,
            name: req.name.clone(),
        };
        tepui_pki::sign_node_csr(&ca, &req.csr_pem, &probe, &ips)
            .map_err(|e| Status::invalid_argument(format!("bad certificate request: {e}")))?;
        let admitted = inner
            .write(Command::AdmitNode {
                token_id: req.token_id.clone(),
                secret_sha256,
                name: req.name.clone(),
                role,
                cluster_addr: req.cluster_addr.clone(),
                http_addr: req.http_addr.clone(),
                now,
            })
            .await
            .map_err(write_status)?;
        let Response::NodeAdmitted { id } = admitted else {
            return Err(Status::internal("unexpected answer to admit"));
        };
        let identity = NodeIdentity {
            id,
            role,
            name: req.name.clone(),
        };
        let cert_pem = tepui_pki::sign_node_csr_for(&ca, &req.csr_pem, &identity, &ips, inner.cert_lifetime)
            .map_err(|e| Status::internal(format!("signing failed: {e}")))?;
        let ca_sha256 = tepui_pki::ca_fingerprint(&ca.cert_pem).map_err(|e| Status::internal(e.to_string()))?;
        // Only a rotation's progress needs this; the node is admitted either way, and failing
        // the join now would leave its name taken.
        if let Err(e) = crate::certs::record(inner, id, &cert_pem, ca_sha256).await {
            tracing::warn!(node = id, error = %e, "cannot record the new node's certificate");
        }
        tracing::info!(node = id, name = %req.name, %role, token = %req.token_id, "node admitted");
        Ok(JoinResponse {
            node_id: id,
            cert_pem,
            // The CAs trusted now: during a rotation the old one too.
            ca_pem: inner.state.read(|s| s.trusted_cas_pem()),
            cluster_id: cluster.cluster_id,
            servers: inner.server_addrs(),
            // A server may lead, and the leader opens secrets; agents never get the key.
            secrets_key: match (role, &inner.secrets) {
                (Role::Server, Some(k)) => k.bytes().to_vec(),
                _ => Vec::new(),
            },
        })
    }
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<tonic::Response<RaftPayload>, Status> {
        let from = require_server(&self.inner, &req)?;
        if !self.inner.filter.admit(from.id, self.inner.id).await {
            return Err(Status::unavailable("dropped by the network filter"));
        }
        let rpc = decode(req.get_ref())?;
        encode(&self.inner.raft.append_entries(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<tonic::Response<RaftPayload>, Status> {
        let from = require_server(&self.inner, &req)?;
        if !self.inner.filter.admit(from.id, self.inner.id).await {
            return Err(Status::unavailable("dropped by the network filter"));
        }
        let rpc = decode(req.get_ref())?;
        encode(&self.inner.raft.install_snapshot(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<tonic::Response<RaftPayload>, Status> {
        let from = require_server(&self.inner, &req)?;
        if !self.inner.filter.admit(from.id, self.inner.id).await {
            return Err(Status::unavailable("dropped by the network filter"));
        }
        let rpc = decode(req.get_ref())?;
        encode(&self.inner.raft.vote(rpc).await)
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<tonic::Response<JoinResponse>, Status> {
        let joiner = crate::versions::told(req.metadata());
        let req = req.into_inner();
        if self.inner.is_leader() {
            return self.join_as_leader(req, &joiner).await.map(tonic::Response::new);
        }
        // The joining node only knows the address it was given; a follower relays for it.
        let (leader, addr) = self.leader_addr().await?;
        self.inner
            .peers
            .join(leader, &addr, req, &joiner)
            .await
            .map(tonic::Response::new)
    }

    async fn add_server(&self, req: Request<AddServerRequest>) -> Result<tonic::Response<AddServerResponse>, Status> {
        let from = require_server(&self.inner, &req)?;
        let req = req.into_inner();
        if from.id != req.node_id {
            return Err(Status::permission_denied(format!(
                "node {} cannot add node {}",
                from.id, req.node_id
            )));
        }
        if !self.inner.is_leader() {
            let (_, addr) = self.leader_addr().await?;
            self.inner
                .peers
                .add_server(&addr, req.node_id, &req.cluster_addr)
                .await
                .map_err(Status::unavailable)?;
        } else {
            let known = self.inner.state.read(|s| s.nodes.contains_key(&req.node_id));
            if !known {
                return Err(Status::permission_denied(format!(
                    "node {} was never admitted or was removed",
                    req.node_id
                )));
            }
            self.inner
                .add_server(req.node_id, req.cluster_addr)
                .await
                .map_err(write_status)?;
        }
        Ok(tonic::Response::new(AddServerResponse {
            servers: self.inner.server_addrs(),
        }))
    }

    type ForwardHttpStream = crate::http::ChunkStream;

    async fn forward_http(
        &self,
        req: Request<HttpRequest>,
    ) -> Result<tonic::Response<Self::ForwardHttpStream>, Status> {
        require_server(&self.inner, &req)?;
        let req = req.into_inner();
        let router = self
            .inner
            .router
            .get()
            .ok_or_else(|| Status::unavailable("starting up"))?
            .clone();
        Ok(tonic::Response::new(crate::http::execute_forwarded(router, req).await))
    }

    type TunnelStream = crate::tunnel::TunnelStream;

    async fn tunnel(
        &self,
        req: Request<tonic::Streaming<tepui_proto::TunnelData>>,
    ) -> Result<tonic::Response<Self::TunnelStream>, Status> {
        require_server(&self.inner, &req)?;
        let router = self
            .inner
            .router
            .get()
            .ok_or_else(|| Status::unavailable("starting up"))?
            .clone();
        Ok(tonic::Response::new(crate::tunnel::serve(router, req.into_inner())))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<tonic::Response<RenewResponse>, Status> {
        let who = require_member(&self.inner, &req)?;
        if !self.inner.is_leader() {
            return Err(not_leader(&self.inner));
        }
        let req = req.into_inner();
        let ips = parse_ips(&req.ips)?;
        let (cert_pem, ca_pem) = crate::certs::renew(&self.inner, &who, &req.csr_pem, &ips)
            .await
            .map_err(api_status)?;
        Ok(tonic::Response::new(RenewResponse { cert_pem, ca_pem }))
    }

    type AgentStreamStream = EnvelopeStream;

    async fn agent_stream(
        &self,
        req: Request<Streaming<Envelope>>,
    ) -> Result<tonic::Response<Self::AgentStreamStream>, Status> {
        if peer(&req).is_none() {
            return Err(Status::unauthenticated("an agent certificate is required"));
        }
        let who = require_member(&self.inner, &req)?;
        let inner = self.inner.clone();
        if !inner.is_leader() {
            return Err(not_leader(&inner));
        }
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before registering"))?;
        let AgentToServer::Register {
            resources,
            attributes,
            http_addr,
            version,
            tasks,
            protocol,
            min_protocol,
        } = parse_envelope(&first)?
        else {
            return Err(Status::invalid_argument("the first message must be register"));
        };
        let speaks = tepui_common::version::Speaks::told(Some(&version), protocol, min_protocol);
        let this = tepui_common::version::Speaks::this();
        if !this.works_with(&speaks) {
            return Err(Status::failed_precondition(format!(
                "this agent ({}, protocols {}..={}) and this server ({}, protocols {}..={}) do not understand each other; upgrade the servers first, then the agents",
                speaks.release, speaks.min_protocol, speaks.protocol, this.release, this.min_protocol, this.protocol
            )));
        }
        let agent = AgentInfo {
            resources: Resources {
                cpus_milli: resources.cpus_milli,
                mem_mb: resources.mem_mb,
                disk_mb: resources.disk_mb,
                ports: resources.ports,
                reserved: resources.reserved,
            },
            attributes,
            http_addr,
            version,
            registered_at: now_ms(),
        };
        match inner
            .write(Command::RegisterAgent {
                id: who.id,
                agent,
                now: now_ms(),
            })
            .await
        {
            Ok(_) => {}
            Err(WriteError::Rejected(ApplyError::UnknownNode { id })) => {
                return Err(Status::permission_denied(format!(
                    "node {id} is not part of this cluster (removed?); join it again"
                )))
            }
            Err(e) => return Err(write_status(e)),
        }
        let hub = inner.node.agents();
        hub.heard(who.id);
        hub.set_speaks(who.id, speaks);
        tracing::info!(node = who.id, name = %who.name, "agent registered");

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Envelope, Status>>(256);
        let _ = tx
            .send(Ok(envelope(&ServerToAgent::Registered {
                node_id: who.id,
                servers: inner.server_addrs(),
                dns: inner.cluster_dns.get().cloned(),
            })))
            .await;
        let mut trust = inner.trust.clone();
        let mut members = inner.members.clone();
        let mut gateway = inner.gateway.clone();
        let table = gateway.borrow_and_update().clone();
        if let Some(t) = table {
            let _ = tx.send(Ok(gateway_envelope(&t))).await;
        }
        let current = trust.borrow_and_update().clone();
        if let Some(t) = current {
            let _ = tx.send(Ok(trust_envelope(&t))).await;
        }
        let conn = hub.attach(who.id, tx.clone());
        {
            let master = self.master.clone();
            tokio::spawn(async move { master.on_register(who.id, tasks).await });
        }
        let master = self.master.clone();
        tokio::spawn(async move {
            let mut metrics = inner.raft.metrics();
            loop {
                tokio::select! {
                    msg = inbound.message() => {
                        let msg = match msg {
                            Ok(Some(m)) => m,
                            Ok(None) | Err(_) => break,
                        };
                        if !inner.filter.admit(who.id, inner.id).await {
                            continue;
                        }
                        // A stream the leader closed (the agent was marked lost) is dead even
                        // if messages still arrive on it: the agent must register again.
                        if !inner.node.agents().is_current(who.id, conn) {
                            break;
                        }
                        match parse_envelope(&msg) {
                            Ok(AgentToServer::Heartbeat { seq, load }) => {
                                if let Some(load) = load {
                                    inner.node.agents().report_load(who.id, load);
                                }
                                master.on_heartbeat(who.id).await;
                                if tx.send(Ok(envelope(&ServerToAgent::HeartbeatAck { seq }))).await.is_err() {
                                    break;
                                }
                            }
                            Ok(AgentToServer::Register { .. }) => {
                                let _ = tx.send(Err(Status::invalid_argument("already registered"))).await;
                                break;
                            }
                            Ok(AgentToServer::Status { update }) => {
                                inner.node.agents().heard(who.id);
                                // Each task has one update in flight at most (the agent waits
                                // for its acknowledgement), so updates of different tasks are
                                // committed side by side, in one group.
                                let master = master.clone();
                                tokio::spawn(async move { master.on_status(who.id, update).await });
                            }
                            Ok(AgentToServer::Reply { req_id, reply }) => inner.node.agents().deliver(who.id, req_id, reply),
                            Ok(AgentToServer::Executor { event }) => {
                                let master = master.clone();
                                tokio::spawn(async move { master.on_executor_event(who.id, event).await });
                            }
                            Err(status) => {
                                let _ = tx.send(Err(status)).await;
                                break;
                            }
                        }
                    }
                    changed = trust.changed() => {
                        let current = trust.borrow_and_update().clone();
                        if let (Ok(()), Some(t)) = (changed, current) {
                            if tx.send(Ok(trust_envelope(&t))).await.is_err() {
                                break;
                            }
                        }
                    }
                    changed = gateway.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let table = gateway.borrow_and_update().clone();
                        if let Some(t) = table {
                            if tx.send(Ok(gateway_envelope(&t))).await.is_err() {
                                break;
                            }
                        }
                    }
                    changed = members.changed() => {
                        // A removed node's stream ends at once.
                        if changed.is_err() || !members.borrow_and_update().contains(&who.id) {
                            let _ = tx.send(Err(Status::permission_denied("this node was removed from the cluster"))).await;
                            break;
                        }
                    }
                    changed = metrics.changed() => {
                        // A deposed leader ends its streams, so agents find the new one.
                        if changed.is_err() || metrics.borrow().current_leader != Some(inner.id) {
                            let _ = tx.send(Err(Status::unavailable("leadership changed; reconnect"))).await;
                            break;
                        }
                    }
                }
            }
            inner.node.agents().detach(who.id, conn);
            tracing::debug!(node = who.id, "agent stream ended");
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn parse_envelope(e: &Envelope) -> Result<AgentToServer, Status> {
    serde_json::from_slice(&e.json).map_err(|err| Status::invalid_argument(format!("bad agent message: {err}")))
}

fn trust_envelope(t: &tepui_transport::Trust) -> Envelope {
    envelope(&ServerToAgent::Trust {
        ca_bundle_pem: t.ca_bundle_pem.clone(),
        signing_ca_pem: t.signing_ca_pem.clone(),
    })
}

fn gateway_envelope(table: &tepui_gateway::GatewayTable) -> Envelope {
    envelope(&ServerToAgent::Gateway { table: table.clone() })
}

fn envelope(m: &ServerToAgent) -> Envelope {
    Envelope {
        json: serde_json::to_vec(m).expect("agent messages always serialize"),
    }
}
