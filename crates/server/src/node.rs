//! Bringing a server up: identity (bootstrap, join or restart), Raft, listeners, loops.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use tepui_marathon::{Services, ServicesConfig};
use tepui_master::{Master, MasterConfig};
use tepui_node::{now_ms, BoxFuture, Consensus, Leadership, Node, NodeInfo, WriteError};
use tepui_pki::token::JoinToken;
use tepui_pki::{NodeIdentity, Role};
use tepui_state::{ApplyError, ClusterInfo, Command, NodeRecord, NodeStatus, Response, TokenRecord};
use tepui_store::{Raft, StateReader};
use tepui_transport::{Identity, NetFilter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::{FirstStart, ServerConfig, ServerError};

/// The audit log's file in a server's data dir.
pub const AUDIT_LOG: &str = "audit.log";

type PendingWrite = (Vec<Command>, oneshot::Sender<Result<Vec<Response>, WriteError>>);

/// The node's replicated log: this server's Raft, with concurrent writes grouped into one log
/// entry (group commit), so the log is fsynced once per group, not once per write.
struct RaftConsensus {
    id: u64,
    raft: Raft,
    writes: mpsc::Sender<PendingWrite>,
    versions: crate::versions::PeerVersions,
}

impl RaftConsensus {
    /// The upgrade gate: while this server leads, a command newer than the lowest protocol
    /// among the members is refused before it reaches the log. (A follower's writes go to
    /// the leader, which checks them.)
    fn gate(&self, cmds: &[Command]) -> Result<(), WriteError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return Ok(());
        }
        let members = metrics.membership_config.membership().nodes().map(|(id, _)| *id);
        let cluster = self.versions.cluster_protocol(self.id, members);
        tepui_state::gate(cmds, cluster).map_err(WriteError::Gated)
    }
}

impl Consensus for RaftConsensus {
    fn write(&self, cmds: Vec<Command>) -> BoxFuture<'_, Result<Vec<Response>, WriteError>> {
        Box::pin(async move {
            self.gate(&cmds)?;
            let mut answers = Vec::with_capacity(cmds.len());
            let mut cmds = cmds.into_iter().peekable();
            // A group holds at most MAX_BATCH commands: a longer list takes several.
            while cmds.peek().is_some() {
                let chunk: Vec<Command> = cmds.by_ref().take(tepui_state::MAX_BATCH).collect();
                let (done, answer) = oneshot::channel();
                if self.writes.send((chunk, done)).await.is_err() {
                    return Err(WriteError::Raft("the server is shutting down".into()));
                }
                let chunk_answers = answer
                    .await
                    .unwrap_or_else(|_| Err(WriteError::Raft("the server is shutting down".into())))?;
                answers.extend(chunk_answers);
            }
            Ok(answers)
        })
    }

    fn linearize(&self) -> BoxFuture<'_, Result<(), WriteError>> {
        Box::pin(async move {
            match self.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(openraft::error::RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(WriteError::NotLeader { leader: f.leader_id })
                }
                Err(e) => Err(WriteError::Raft(e.to_string())),
            }
        })
    }
}

async fn client_write(raft: &Raft, metrics: &Metrics, cmd: Command) -> Result<Response, WriteError> {
    let started = Instant::now();
    let res = raft.client_write(cmd).await;
    if res.is_ok() {
        metrics.raft_commit.observe(started.elapsed());
    }
    match res {
        Ok(r) => Ok(r.data),
        Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader { leader: f.leader_id })
        }
        Err(e) => Err(WriteError::Raft(e.to_string())),
    }
}

/// Takes every write that queued while the previous group was committing and commits them as
/// one entry. One group is in flight at a time, so groups grow with the load. A write is
/// never split across groups.
async fn group_commit(raft: Raft, metrics: Arc<Metrics>, mut queue: mpsc::Receiver<PendingWrite>) {
    let mut carried: Option<PendingWrite> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match queue.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let mut size = first.0.len();
        let mut group = vec![first];
        while size < tepui_state::MAX_BATCH {
            match queue.try_recv() {
                Ok(w) if size + w.0.len() <= tepui_state::MAX_BATCH => {
                    size += w.0.len();
                    group.push(w);
                }
                Ok(w) => {
                    carried = Some(w);
                    break;
                }
                Err(_) => break,
            }
        }
        if size == 1 {
            let (mut cmds, done) = group.pop().expect("one write");
            let cmd = cmds.pop().expect("one command");
            let _ = done.send(client_write(&raft, &metrics, cmd).await.map(|r| vec![r]));
            continue;
        }
        let counts: Vec<usize> = group.iter().map(|(cmds, _)| cmds.len()).collect();
        let (cmds, waiters): (Vec<Vec<Command>>, Vec<_>) = group.into_iter().unzip();
        let cmds: Vec<Command> = cmds.into_iter().flatten().collect();
        match client_write(&raft, &metrics, Command::Batch { cmds }).await {
            Ok(Response::Batch(answers)) if answers.len() == size => {
                let mut answers = answers.into_iter();
                for (done, n) in waiters.into_iter().zip(counts) {
                    let _ = done.send(Ok(answers.by_ref().take(n).collect()));
                }
            }
            Ok(other) => {
                for done in waiters {
                    let _ = done.send(Err(WriteError::Raft(format!(
                        "unexpected answer to a batch: {other:?}"
                    ))));
                }
            }
            Err(e) => {
                for done in waiters {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Follows Raft's metrics into the node's leadership watch, which changes only when the leader
/// or the term does.
async fn follow_leadership(raft: Raft, counters: Arc<Metrics>, tx: watch::Sender<Leadership>) {
    let mut metrics = raft.metrics();
    let mut seen: Option<(u64, u64)> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            Leadership {
                leader: m.current_leader,
                term: m.current_term,
            }
        };
        if let Some(leader) = now.leader {
            if seen != Some((leader, now.term)) {
                seen = Some((leader, now.term));
                counters.leader_changes.inc();
            }
        }
        tx.send_if_modified(|l| {
            let changed = *l != now;
            *l = now;
            changed
        });
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The server's own parts, which the cluster port and the server's own API share. Features
/// get `node` (and what they build on it), never this.
pub(crate) struct Inner {
    pub id: u64,
    pub name: String,
    pub raft: Raft,
    pub state: StateReader,
    pub identity: Identity,
    pub peers: Peers,
    pub filter: NetFilter,
    pub cluster_addr: String,
    pub http_addr: String,
    /// How long a server may stay silent before `node ls` calls it unreachable.
    pub agent_timeout: Duration,
    /// When this node's Raft client last got an answer from each peer.
    pub peer_seen: Arc<Mutex<HashMap<u64, Instant>>>,
    /// What each peer server said it speaks in its last answer (the upgrade gate's input).
    pub versions: crate::versions::PeerVersions,
    /// Membership changes go one at a time.
    pub membership_lock: tokio::sync::Mutex<()>,
    pub metrics: Arc<Metrics>,
    /// The records this server's DNS answers from, when it serves DNS (for `/metrics`).
    pub dns: Option<tepui_dns::RecordsHandle>,
    /// The handle the features run on.
    pub node: Node,
    /// The HTTP router, to execute requests forwarded by followers.
    pub router: std::sync::OnceLock<axum::Router>,
    /// The cluster's secrets key (`identity/secrets.key`), given to joining servers.
    pub secrets: Option<Arc<tepui_secrets::Keyring>>,
    /// Every route's access policy (enforced by `tepui_auth::enforce` once wired in).
    pub route_table: std::sync::OnceLock<Arc<tepui_auth::RouteTable>>,
    /// This server's TLS on the cluster port, both ways; the renewal loop swaps it.
    pub tls: tepui_pki::tls::LiveTls,
    /// The CAs the cluster trusts, as the applied state says (agents hear of changes).
    pub trust: watch::Receiver<Option<tepui_transport::Trust>>,
    /// The ids of the cluster's nodes, as the applied state says: a stream of a node that
    /// leaves it ends.
    pub members: watch::Receiver<std::collections::BTreeSet<u64>>,
    /// How long the certificates this server signs last.
    pub cert_lifetime: Duration,
    /// Where this server's DNS answers, told to the agents that register with it (their
    /// tasks' resolver forwards there); set once the DNS listens.
    pub cluster_dns: std::sync::OnceLock<tepui_proto::agent::ClusterDns>,
    /// What the gateways serve, built while this server leads (none before the first build);
    /// agents' streams send it on.
    pub gateway: watch::Receiver<Option<Arc<tepui_gateway::GatewayTable>>>,
}

impl Inner {
    pub fn leader_id(&self) -> Option<u64> {
        self.node.leader_id()
    }

    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.id)
    }

    /// The cluster address of a Raft member.
    pub fn member_addr(&self, id: u64) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// The cluster addresses of all voters and learners.
    pub fn server_addrs(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().nodes().map(|(_, n)| n.addr.clone()).collect()
    }

    /// Commits a command and returns its answer.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        self.node.write(cmd).await
    }

    /// See [`Node::linearize`].
    pub async fn linearize(&self) -> Result<(), WriteError> {
        self.node.linearize().await
    }

    /// Adds a joined server as a learner, lets it catch up, then makes it a voter.
    pub async fn add_server(&self, id: u64, addr: String) -> Result<(), WriteError> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        // A voter that rejoins (a restart cut short its join) needs nothing more.
        if membership.membership().voter_ids().any(|v| v == id) {
            return Ok(());
        }
        let raft_err = |e: String| WriteError::Raft(e);
        self.raft
            .add_learner(id, BasicNode::new(addr.clone()), true)
            .await
            .map_err(|e| raft_err(e.to_string()))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([id].into_iter().collect()), false)
            .await
            .map_err(|e| raft_err(e.to_string()))?;
        let http_addr = self
            .state
            .read(|s| s.nodes.get(&id).map(|n| n.http_addr.clone()))
            .unwrap_or_default();
        self.write(Command::UpdateNodeAddrs {
            id,
            cluster_addr: addr,
            http_addr,
        })
        .await?;
        self.write(Command::SetNodeStatus {
            id,
            status: NodeStatus::Ready,
            now: now_ms(),
        })
        .await?;
        tracing::info!(node = id, "server is now a voter");
        Ok(())
    }

    pub async fn remove_server(&self, id: u64) -> Result<(), WriteError> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let m = membership.membership();
        if m.voter_ids().any(|v| v == id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters([id].into_iter().collect()), false)
                .await
                .map_err(|e| WriteError::Raft(e.to_string()))?;
        } else if m.learner_ids().any(|v| v == id) {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes([id].into_iter().collect()), false)
                .await
                .map_err(|e| WriteError::Raft(e.to_string()))?;
        }
        match self.write(Command::RemoveNode { id }).await {
            Ok(_) | Err(WriteError::Rejected(ApplyError::UnknownNode { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// How this start went, for the operator's first screen.
#[derive(Clone, Debug)]
pub enum StartedAs {
    /// A new cluster: the two join tokens and the management API token, also written under
    /// the data dir.
    Bootstrapped {
        server_token: String,
        agent_token: String,
        api_token: String,
    },
    Joined,
    Restarted,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub(crate) inner: Arc<Inner>,
    tasks: JoinSet<()>,
    shutdown: tokio_util::sync::CancellationToken,
    pub started_as: StartedAs,
    pub cluster_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub identity: Identity,
    /// The cluster's DNS, when this server serves it.
    dns: Option<tepui_dns::Dns>,
    /// Where Mesos-DNS's HTTP API listens, when it does.
    dns_http: Option<SocketAddr>,
    /// The Raft log's store, to write the committed id durably when the server stops.
    raft_log: tepui_store::LogStore,
}

impl Server {
    /// Every route of the HTTP API with its access policy.
    pub fn route_table(&self) -> Option<Arc<tepui_auth::RouteTable>> {
        self.inner.route_table.get().cloned()
    }

    pub async fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        tepui_transport::create_private_dir(&cfg.data_dir)
            .map_err(|e| ServerError::Config(format!("cannot create data dir {}: {e}", cfg.data_dir.display())))?;
        // Bind first: port 0 must be resolved before the address goes into a certificate or a token.
        let cluster_listener = TcpListener::bind(cfg.cluster_listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: cfg.cluster_listen,
                source,
            })?;
        let http_listener = TcpListener::bind(cfg.http_listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: cfg.http_listen,
                source,
            })?;
        let cluster_local = cluster_listener.local_addr().map_err(|source| ServerError::Listen {
            addr: cfg.cluster_listen,
            source,
        })?;
        let http_local = http_listener.local_addr().map_err(|source| ServerError::Listen {
            addr: cfg.http_listen,
            source,
        })?;
        let advertise_ip = cfg.advertise.unwrap_or_else(|| {
            if cluster_local.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                cluster_local.ip()
            }
        });
        let cluster_addr = SocketAddr::new(advertise_ip, cluster_local.port()).to_string();
        let http_addr = SocketAddr::new(advertise_ip, http_local.port()).to_string();

        let existing = Identity::load(&cfg.data_dir)?;
        let raft_dir = cfg.data_dir.join("raft");
        let (identity, mut pending) = match existing {
            Some(id) => {
                if id.role != Role::Server {
                    return Err(ServerError::Config(format!(
                        "{} holds the identity of an agent ({}); start it with `tepui agent`",
                        cfg.data_dir.display(),
                        id.name
                    )));
                }
                (id, Pending::Restart)
            }
            None => {
                if raft_dir.join("raft.redb").exists() {
                    return Err(ServerError::Config(format!(
                        "{} has Raft data but no identity: an earlier bootstrap or join was interrupted; move the directory away and start again",
                        cfg.data_dir.display()
                    )));
                }
                match &cfg.first_start {
                    FirstStart::Refuse => {
                        return Err(ServerError::Config(format!(
                            "{} holds no cluster yet: pass --bootstrap to start a new cluster, or --join ADDR --token TOKEN to join one",
                            cfg.data_dir.display()
                        )))
                    }
                    FirstStart::Bootstrap => {
                        let (identity, ca) = new_cluster_identity(&cfg.name, advertise_ip, cfg.cert_lifetime)?;
                        (identity, Pending::Bootstrap { ca })
                    }
                    FirstStart::Join { addr, token } => {
                        let token: JoinToken = token.parse()?;
                        if token.role != Role::Server {
                            return Err(ServerError::Config(format!(
                                "this is an {} token; a server needs a server token (`tepui token create --role server`)",
                                token.role
                            )));
                        }
                        let (identity, secrets_key) = tepui_transport::join_with_key(&tepui_transport::JoinParams {
                            addr: addr.clone(),
                            token,
                            name: cfg.name.clone(),
                            cluster_addr: cluster_addr.clone(),
                            http_addr: http_addr.clone(),
                            ips: vec![advertise_ip],
                        })
                        .await?;
                        identity.save(&cfg.data_dir)?;
                        match tepui_secrets::Keyring::from_bytes(&secrets_key) {
                            Some(k) => k.save(&cfg.data_dir).map_err(|e| ServerError::Config(e.to_string()))?,
                            None => tracing::warn!("the server that admitted this one gave no secrets key: secrets cannot be opened while this server leads"),
                        }
                        tracing::info!(node = identity.node_id, cluster = %identity.cluster_id, "joined the cluster");
                        (identity, Pending::Join)
                    }
                }
            }
        };

        let secrets = match &pending {
            Pending::Bootstrap { .. } => {
                let k = tepui_secrets::Keyring::generate();
                k.save(&cfg.data_dir).map_err(|e| ServerError::Config(e.to_string()))?;
                Some(k)
            }
            _ => tepui_secrets::Keyring::load(&cfg.data_dir).map_err(|e| ServerError::Config(e.to_string()))?,
        }
        .map(Arc::new);
        if secrets.is_none() {
            tracing::warn!(
                file = tepui_secrets::KEY_FILE,
                "this server has no secrets key: while it leads, secrets can be neither written nor given to tasks; copy the file from another server"
            );
        }
        let (log_store, sm_store) = open_store(&raft_dir).await?;
        let log_store = log_store.of_node(identity.node_id);
        let metrics = Arc::new(Metrics::new(log_store.stats()));
        let reader = sm_store.reader();
        let raft_config = openraft::Config {
            cluster_name: identity.cluster_id.clone(),
            heartbeat_interval: cfg.raft.heartbeat.as_millis() as u64,
            election_timeout_min: cfg.raft.election_min.as_millis() as u64,
            election_timeout_max: cfg.raft.election_max.as_millis() as u64,
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.raft.keep_behind_snapshot,
            purge_batch_size: 256,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ServerError::Raft(e.to_string()))?;
        let tls = identity.live_tls()?;
        let peer_seen = Arc::new(Mutex::new(HashMap::new()));
        let peers = Peers::new(identity.node_id, tls.client_config()?, cfg.filter.clone());
        let versions = crate::versions::PeerVersions::default();
        let commit_held = crate::raft_net::CommitHeld::default();
        let network = crate::raft_net::Network::new(
            peers.clone(),
            peer_seen.clone(),
            versions.clone(),
            log_store.clone(),
            commit_held.clone(),
        );
        let raft_log = log_store.clone();
        let raft = Raft::new(identity.node_id, Arc::new(raft_config), network, log_store, sm_store)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;

        let mut tasks = JoinSet::new();
        tasks.spawn(crate::raft_net::send_held_commits(
            raft.clone(),
            raft_log.durable(),
            commit_held,
        ));
        let (writes, write_queue) = mpsc::channel(4096);
        tasks.spawn(group_commit(raft.clone(), metrics.clone(), write_queue));
        let (leadership_tx, leadership) = watch::channel(Leadership::default());
        tasks.spawn(follow_leadership(raft.clone(), metrics.clone(), leadership_tx));
        let node = Node::new(
            NodeInfo {
                id: identity.node_id,
                name: identity.name.clone(),
                cluster_addr: cluster_addr.clone(),
                http_addr: http_addr.clone(),
                started_at: now_ms(),
            },
            RaftConsensus {
                id: identity.node_id,
                raft: raft.clone(),
                writes,
                versions: versions.clone(),
            },
            reader.clone(),
            leadership,
        );
        // DNS before the API: its `/v1/dns` routes and `/metrics` read its records.
        let dns = match &cfg.dns {
            Some(settings) => Some(start_dns(&node, settings, advertise_ip).await?),
            None => None,
        };
        let dns_http = match (&dns, &cfg.dns) {
            (Some(d), Some(settings)) => bind_dns_http(d, settings).await?,
            _ => None,
        };
        let (trust_tx, trust) = watch::channel(None);
        let (members_tx, members) = watch::channel(std::collections::BTreeSet::new());
        let (gateway_tx, gateway) = watch::channel(None);
        let inner = Arc::new(Inner {
            gateway,
            tls: tls.clone(),
            trust,
            members,
            cert_lifetime: cfg.cert_lifetime,
            id: identity.node_id,
            name: identity.name.clone(),
            raft,
            state: reader,
            identity: identity.clone(),
            peers,
            filter: cfg.filter.clone(),
            cluster_addr: cluster_addr.clone(),
            http_addr: http_addr.clone(),
            agent_timeout: cfg.agent_timeout,
            peer_seen,
            versions,
            membership_lock: tokio::sync::Mutex::new(()),
            metrics,
            dns: dns.as_ref().map(|d| d.records.clone()),
            node: node.clone(),
            router: std::sync::OnceLock::new(),
            secrets: secrets.clone(),
            route_table: std::sync::OnceLock::new(),
            cluster_dns: std::sync::OnceLock::new(),
        });

        // The last hour of a few numbers, sampled by this server for the web UI's plots.
        let history = crate::history::Shared::default();
        // The features, each on the node handle; the router takes their routes.
        let master = Master::new(
            node.clone(),
            MasterConfig {
                agent_timeout: cfg.agent_timeout,
                secrets: secrets.clone(),
                retention: Default::default(),
            },
        );
        master.start();
        let services = Services::new(
            master.clone(),
            ServicesConfig {
                deployment_timeout: cfg.deployment_timeout,
            },
        );
        services.start();
        tepui_jobs::runs::start(master.clone());
        let features = crate::http::Features {
            leader: tepui_master::http::routes(master.clone())
                .merge(tepui_mesos_api::leader_routes(master.clone()))
                .merge(services.routes())
                .merge(tepui_auth::api::routes(inner.node.clone()))
                .merge(tepui_secrets::api::routes(inner.node.clone(), secrets.clone()))
                .merge(tepui_jobs::api::routes(master.clone()))
                // Packages deploy through this server's own router, as their caller.
                .merge(tepui_packages::api::routes(inner.node.clone(), {
                    let weak = Arc::downgrade(&inner);
                    tepui_packages::Backend::new(move || weak.upgrade()?.router.get().cloned())
                }))
                .merge(tepui_gateway::control::routes(inner.node.clone(), secrets.clone())),
            // The web UI is static files: every server answers it itself, never forwarding.
            local: tepui_mesos_api::local_routes(master.clone())
                .merge(tepui_dns::http::routes(dns.as_ref().map(|d| d.records.clone())))
                .merge(crate::history::routes(history.clone()))
                .merge(tepui_master::events::Events::start(node.clone()).routes())
                .merge(tepui_ui::routes()),
            audit: Some(Arc::new(
                tepui_auth::AuditLog::open(cfg.data_dir.join(AUDIT_LOG)).map_err(|e| {
                    ServerError::Config(format!("cannot open the audit log in {}: {e}", cfg.data_dir.display()))
                })?,
            )),
            hostnames: tepui_auth::HostNames::new(&cfg.api_hostnames),
        };
        let (router, route_table) = crate::http::router(inner.clone(), features);
        let _ = inner.route_table.set(route_table);
        let _ = inner.router.set(router.clone());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let sampled = inner.clone();
        tasks.spawn(crate::history::run(
            history,
            move || {
                let requests = sampled.metrics.requests_total();
                sampled.state.read(|s| crate::history::Reading::of(s, requests))
            },
            crate::history::INTERVAL,
            shutdown.clone(),
        ));
        tasks.spawn(crate::certs::follow_state(inner.clone(), trust_tx, members_tx));
        tasks.spawn(tepui_gateway::control::follow(
            node.clone(),
            secrets.clone(),
            gateway_tx,
        ));
        tasks.spawn(crate::cluster::serve(
            inner.clone(),
            master,
            cluster_listener,
            tls.server_config()?,
            shutdown.clone(),
        ));
        let shutdown_http = shutdown.clone();
        let api_tls = match &cfg.api_cert {
            Some(c) => tepui_pki::tls::operator_api_server_config(&c.chain_pem, &c.key_pem)
                .map_err(|e| ServerError::Config(format!("--api-cert/--api-key: {e}")))?,
            None => tls.api_server_config()?,
        };
        tasks.spawn(async move {
            let http_listener = tepui_transport::KillableListener::new(http_listener, shutdown_http);
            tepui_transport::serve_http(
                http_listener,
                router,
                tepui_transport::HttpLimits::default(),
                Some(api_tls),
            )
            .await;
        });
        tasks.spawn(crate::failover::run(inner.clone()));
        if let Some(backups) = &cfg.backups {
            crate::backups::prepare(&backups.dir)
                .map_err(|e| ServerError::Config(format!("the backup directory {}: {e}", backups.dir.display())))?;
            crate::backups::start(inner.clone(), backups.clone());
        }
        let dns_http_addr = dns_http.as_ref().and_then(|(l, _)| l.local_addr().ok());
        if let Some((listener, router)) = dns_http {
            // Plain HTTP from anywhere, as Mesos-DNS (see tepui_dns::http on why it is public).
            let listener = tepui_transport::KillableListener::new(listener, shutdown.clone());
            tasks.spawn(tepui_transport::serve_http(
                listener,
                router,
                tepui_transport::HttpLimits::default(),
                None,
            ));
        }

        let started_as = match std::mem::replace(&mut pending, Pending::Restart) {
            Pending::Bootstrap { ca } => {
                let (server_token, agent_token, api_token) = bootstrap(&inner, &cfg, ca).await?;
                StartedAs::Bootstrapped {
                    server_token,
                    agent_token,
                    api_token,
                }
            }
            Pending::Join => {
                tasks.spawn(become_voter(inner.clone()));
                StartedAs::Joined
            }
            Pending::Restart => {
                let member = {
                    let m = inner.raft.metrics().borrow().membership_config.clone();
                    let found = m.membership().get_node(&inner.id).is_some();
                    found
                };
                if !member {
                    tasks.spawn(become_voter(inner.clone()));
                }
                StartedAs::Restarted
            }
        };
        // This server's own certificate, renewed through the leader (itself, when it leads).
        let leader_of = inner.clone();
        let renewer = tepui_transport::Renewer {
            identity: identity.clone(),
            data_dir: cfg.data_dir.clone(),
            tls: tls.clone(),
            trust: inner.trust.clone(),
            leader: Box::new(move || leader_of.leader_id().and_then(|id| leader_of.member_addr(id))),
        };
        tasks.spawn(renewer.run(shutdown.clone()));
        if let (Some(d), Some(settings)) = (&dns, &cfg.dns) {
            let _ = inner
                .cluster_dns
                .set(settings.for_agents(d.server.local_addr(), advertise_ip));
        }
        tracing::info!(node = inner.id, name = %inner.name, cluster = %cluster_addr, http = %http_addr, "server started");
        Ok(Server {
            inner,
            tasks,
            shutdown,
            started_as,
            cluster_addr: cluster_local,
            http_addr: http_local,
            identity,
            dns,
            dns_http: dns_http_addr,
            raft_log,
        })
    }

    /// Where this server answers DNS (UDP and TCP), when it does.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|d| d.server.local_addr())
    }

    /// Where Mesos-DNS's HTTP API answers, when this server serves it.
    pub fn dns_http_addr(&self) -> Option<SocketAddr> {
        self.dns_http
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn state(&self) -> &StateReader {
        &self.inner.state
    }

    pub fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.inner.leader_id()
    }

    /// The cluster address other nodes should dial.
    pub fn advertised_cluster_addr(&self) -> &str {
        &self.inner.cluster_addr
    }

    pub fn advertised_http_addr(&self) -> &str {
        &self.inner.http_addr
    }

    /// Stops Raft and every listener and loop. The data dir can be reopened afterwards.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.inner.node.shut_down();
        self.inner.peers.close();
        let _ = self.inner.raft.shutdown().await;
        if let Err(e) = self.raft_log.flush_committed().await {
            tracing::warn!(error = %e, "cannot record the committed log id");
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(dns) = self.dns.take() {
            // Its UDP threads are joined: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(dns)).await;
        }
    }

    /// The TLS this server presents and trusts on the cluster port, as renewals and CA
    /// rotations leave it; an agent in the same process (`tepui dev`) shares it.
    pub fn tls(&self) -> tepui_pki::tls::LiveTls {
        self.inner.tls.clone()
    }

    /// Waits until the Raft core has stopped (it stops on a fatal storage error).
    pub async fn wait_stopped(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The cluster's DNS on `settings.listen`, following this server's applied state. `ns1.<domain>`
/// is the listen address, or the advertised one when listening on every address.
async fn start_dns(
    node: &tepui_node::Node,
    settings: &crate::DnsSettings,
    advertise_ip: std::net::IpAddr,
) -> Result<tepui_dns::Dns, ServerError> {
    let ns = if settings.listen.ip().is_unspecified() {
        advertise_ip
    } else {
        settings.listen.ip()
    };
    let mut upstreams = if settings.upstreams.is_empty() {
        tepui_dns::forward::system_upstreams()
    } else {
        settings.upstreams.clone()
    };
    // Never itself: a name nobody has would go round for ever.
    upstreams.retain(|u| *u != settings.listen && *u != SocketAddr::new(ns, settings.listen.port()));
    if upstreams.is_empty() {
        tracing::warn!(
            "dns: no upstream resolver (none given, none in /etc/resolv.conf): names outside the domain get SERVFAIL"
        );
    }
    let records = tepui_dns::Config::new(&settings.domain, settings.ttl, vec![ns]);
    let server = tepui_dns::ServerConfig::new(settings.listen, upstreams);
    tepui_dns::Dns::start(node.clone(), records, server)
        .await
        .map_err(|source| ServerError::Listen {
            addr: settings.listen,
            source,
        })
}

/// The listener of Mesos-DNS's HTTP API (on the DNS's IP) and its router, when asked for.
async fn bind_dns_http(
    dns: &tepui_dns::Dns,
    settings: &crate::DnsSettings,
) -> Result<Option<(TcpListener, axum::Router)>, ServerError> {
    let Some(port) = settings.http_port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(settings.listen.ip(), port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr, source })?;
    tracing::info!(%bound, "mesos-dns http api serving");
    Ok(Some((listener, dns.mesos_dns_router(bound.port()))))
}

/// Opens the Raft store. A server restarted in the same process may find the previous Raft's
/// state-machine worker still holding the file for a moment after shutdown; wait for it.
async fn open_store(
    dir: &std::path::Path,
) -> Result<(tepui_store::LogStore, tepui_store::StateMachineStore), ServerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tepui_store::open(dir) {
            Err(e) if e.is_already_open() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return Ok(other?),
        }
    }
}

enum Pending {
    Bootstrap { ca: tepui_pki::CertifiedKey },
    Join,
    Restart,
}

fn new_cluster_identity(
    name: &str,
    ip: std::net::IpAddr,
    lifetime: Duration,
) -> Result<(Identity, tepui_pki::CertifiedKey), ServerError> {
    let cluster_id = hex::encode(rand::random::<[u8; 8]>());
    let ca = tepui_pki::generate_ca(&cluster_id)?;
    let node = NodeIdentity {
        id: 1,
        role: Role::Server,
        name: name.to_string(),
    };
    let cert = tepui_pki::issue_node_cert_for(&ca, &node, &[ip], lifetime)?;
    let identity = Identity {
        node_id: 1,
        name: name.to_string(),
        role: Role::Server,
        cluster_id,
        servers: vec![],
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
    };
    Ok((identity, ca))
}

/// Makes a single-voter cluster, records its identity and makes the first two join tokens.
/// The identity goes to disk last: a data dir with an identity is a bootstrapped one.
async fn bootstrap(
    inner: &Arc<Inner>,
    cfg: &ServerConfig,
    ca: tepui_pki::CertifiedKey,
) -> Result<(String, String, String), ServerError> {
    let boot = |e: String| ServerError::Bootstrap(e);
    let mut members = BTreeMap::new();
    members.insert(inner.id, BasicNode::new(inner.cluster_addr.clone()));
    inner.raft.initialize(members).await.map_err(|e| boot(e.to_string()))?;
    inner
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(inner.id, "bootstrap leader")
        .await
        .map_err(|e| boot(e.to_string()))?;
    let now = now_ms();
    let cluster = ClusterInfo {
        cluster_id: inner.identity.cluster_id.clone(),
        ca_cert_pem: ca.cert_pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        created_at: now,
    };
    let record = NodeRecord {
        id: inner.id,
        name: inner.name.clone(),
        role: Role::Server,
        cluster_addr: inner.cluster_addr.clone(),
        http_addr: inner.http_addr.clone(),
        agent: None,
        status: NodeStatus::Ready,
        joined_at: now,
        status_changed_at: now,
        token_id: None,
        maintenance: tepui_state::Maintenance::Active,
    };
    inner
        .write(Command::InitCluster {
            cluster,
            bootstrap: record,
        })
        .await
        .map_err(|e| boot(e.to_string()))?;
    let fingerprint = tepui_pki::ca_fingerprint(&ca.cert_pem)?;
    let mut tokens = vec![];
    for role in [Role::Server, Role::Agent] {
        let token = JoinToken::generate(role, &fingerprint);
        inner
            .write(Command::CreateToken {
                token: token_record(
                    &token,
                    "created at bootstrap",
                    now,
                    Some(now + crate::http::DEFAULT_TOKEN_TTL.as_millis() as u64),
                ),
            })
            .await
            .map_err(|e| boot(e.to_string()))?;
        let path = cfg.data_dir.join(format!("{role}-token"));
        tepui_transport::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
        tokens.push(token.to_string());
    }
    // The first API token: it can do everything, and is how the operator makes the others.
    let (api_token, record) = match &cfg.bootstrap_api_token {
        Some(given) => tepui_auth::token_from_secret(given, "bootstrap", now)
            .ok_or_else(|| ServerError::Config("the bootstrap API token must be ACCESSOR.SECRET".into()))?,
        None => tepui_auth::new_token("bootstrap", vec![], true, now, None),
    };
    inner
        .write(Command::AclBootstrap { token: record })
        .await
        .map_err(|e| boot(e.to_string()))?;
    let path = cfg.data_dir.join(tepui_auth::TOKEN_FILE);
    tepui_transport::write_atomic(&path, format!("{api_token}\n").as_bytes(), 0o600)?;
    inner.identity.save(&cfg.data_dir)?;
    Ok((tokens[0].clone(), tokens[1].clone(), api_token))
}

pub(crate) fn token_record(token: &JoinToken, description: &str, now: u64, expires_at: Option<u64>) -> TokenRecord {
    TokenRecord {
        id: token.id.clone(),
        role: token.role,
        secret_sha256: token.secret_sha256(),
        description: description.to_string(),
        created_at: now,
        expires_at,
        revoked: false,
        uses: 0,
    }
}

/// Asks the servers this node knows until one makes it a voter. Runs after a join, and after a
/// restart that finds this node outside the membership (a join cut short).
async fn become_voter(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        for addr in inner.identity.servers.iter().chain(inner.server_addrs().iter()) {
            if addr == &inner.cluster_addr {
                continue;
            }
            match inner.peers.add_server(addr, inner.id, &inner.cluster_addr).await {
                Ok(()) => {
                    tracing::info!(via = %addr, "joined the raft membership");
                    return;
                }
                Err(e) => tracing::debug!(via = %addr, error = %e, "asking to become a voter failed"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
