//! A tepui agent: a worker node that joins with a token, reports its resources and attributes,
//! and keeps one stream open to the leader, dialing out so that agents behind NAT work.
//!
//! The agent finds the leader by itself: it dials the servers it knows, follows a follower's
//! hint to the leader, and reconnects after a failover. It knows nothing of Raft.

mod resources;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use resources::{detect, ResourceOverrides};
use tepui_pki::token::JoinToken;
use tepui_pki::Role;
use tepui_proto::agent::{AgentToServer, ServerToAgent};
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::Envelope;
use tepui_transport::{Identity, NetFilter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How an agent without an identity on disk gets one.
#[derive(Clone, Debug)]
pub enum AgentStart {
    Join {
        addr: String,
        token: String,
    },
    /// Run with this identity (a `tepui dev` server that also runs tasks).
    WithIdentity(Box<Identity>),
    Refuse,
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub start: AgentStart,
    pub resources: ResourceOverrides,
    pub attributes: BTreeMap<String, String>,
    pub heartbeat: Duration,
    pub filter: NetFilter,
}

impl AgentConfig {
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            name: name.into(),
            data_dir: data_dir.into(),
            http_listen: ([127, 0, 0, 1], 5051).into(),
            advertise: None,
            start: AgentStart::Refuse,
            resources: ResourceOverrides::default(),
            attributes: BTreeMap::new(),
            heartbeat: Duration::from_secs(2),
            filter: NetFilter::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("identity")]
    Identity(#[from] tepui_transport::IdentityError),
    #[error("join failed")]
    Join(#[from] tepui_transport::JoinError),
    #[error("bad token")]
    Token(#[from] tepui_pki::PkiError),
}

/// What the agent's connection to the cluster looks like right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// The server the stream is open to, when registered.
    pub leader: Option<String>,
    pub registrations: u64,
}

pub struct Agent {
    pub identity: Identity,
    pub http_addr: SocketAddr,
    pub connection: watch::Receiver<Connection>,
    tasks: JoinSet<()>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Agent {
    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| AgentError::Config(format!("cannot create data dir {}: {e}", cfg.data_dir.display())))?;
        let listener = TcpListener::bind(cfg.http_listen)
            .await
            .map_err(|source| AgentError::Listen {
                addr: cfg.http_listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| AgentError::Listen {
            addr: cfg.http_listen,
            source,
        })?;
        let ip = cfg.advertise.unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                local.ip()
            }
        });
        let http_addr = SocketAddr::new(ip, local.port());

        let mut join_addr = None;
        let identity = match &cfg.start {
            AgentStart::WithIdentity(id) => (**id).clone(),
            start => match Identity::load(&cfg.data_dir)? {
                Some(id) if id.role == Role::Agent => id,
                Some(id) => {
                    return Err(AgentError::Config(format!(
                        "{} holds the identity of a server ({}); start it with `tepui server`",
                        cfg.data_dir.display(),
                        id.name
                    )))
                }
                None => match start {
                    AgentStart::Join { addr, token } => {
                        let token: JoinToken = token.parse()?;
                        if token.role != Role::Agent {
                            return Err(AgentError::Config(format!(
                                "this is a {} token; an agent needs an agent token (`tepui token create --role agent`)",
                                token.role
                            )));
                        }
                        let id = tepui_transport::join(&tepui_transport::JoinParams {
                            addr: addr.clone(),
                            token,
                            name: cfg.name.clone(),
                            cluster_addr: String::new(),
                            http_addr: http_addr.to_string(),
                            ips: vec![ip],
                        })
                        .await?;
                        id.save(&cfg.data_dir)?;
                        tracing::info!(node = id.node_id, cluster = %id.cluster_id, "agent joined the cluster");
                        join_addr = Some(addr.clone());
                        id
                    }
                    _ => {
                        return Err(AgentError::Config(format!(
                            "{} holds no identity yet: pass --join ADDR --token TOKEN",
                            cfg.data_dir.display()
                        )))
                    }
                },
            },
        };
        if let AgentStart::Join { addr, .. } = &cfg.start {
            join_addr.get_or_insert(addr.clone());
        }

        let resources = resources::detect(&cfg.data_dir, &cfg.resources);
        let (conn_tx, conn_rx) = watch::channel(Connection::default());
        let mut tasks = JoinSet::new();
        let session = Session {
            identity: identity.clone(),
            persist: !matches!(cfg.start, AgentStart::WithIdentity(_)),
            data_dir: cfg.data_dir.clone(),
            register: AgentToServer::Register {
                resources: resources.clone(),
                attributes: cfg.attributes.clone(),
                http_addr: http_addr.to_string(),
                version: VERSION.into(),
                tasks: vec![],
            },
            heartbeat: cfg.heartbeat,
            filter: cfg.filter.clone(),
            extra_servers: join_addr.into_iter().collect(),
            connection: conn_tx,
        };
        tasks.spawn(session.run());
        let app = http_router(Arc::new(HttpState {
            name: identity.name.clone(),
            resources,
        }));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let shutdown_http = shutdown.clone();
        tasks.spawn(async move {
            let listener = tepui_transport::KillableListener::new(listener, shutdown_http);
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "agent http server stopped");
            }
        });
        tracing::info!(node = identity.node_id, name = %identity.name, http = %http_addr, "agent started");
        Ok(Agent {
            identity,
            http_addr,
            connection: conn_rx,
            tasks,
            shutdown,
        })
    }

    pub fn id(&self) -> u64 {
        self.identity.node_id
    }

    /// Waits until the agent is registered with a leader.
    pub async fn wait_registered(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.connection.wait_for(|c| c.leader.is_some()))
            .await
            .is_ok()
    }

    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

struct Session {
    identity: Identity,
    /// Whether to keep the server list on disk (not for an identity borrowed from a server).
    persist: bool,
    data_dir: PathBuf,
    register: AgentToServer,
    heartbeat: Duration,
    filter: NetFilter,
    extra_servers: Vec<String>,
    connection: watch::Sender<Connection>,
}

enum Ended {
    /// The server pointed at the leader.
    Redirect(String),
    Failed(String),
}

impl Session {
    async fn run(mut self) {
        let mut hint: Option<String> = None;
        let mut backoff = Duration::from_millis(100);
        let mut next = 0usize;
        loop {
            let mut servers = self.identity.servers.clone();
            for s in &self.extra_servers {
                if !servers.contains(s) {
                    servers.push(s.clone());
                }
            }
            let addr = match hint.take() {
                Some(h) => h,
                None if servers.is_empty() => {
                    tracing::error!("this agent knows no server address; start it with --join ADDR");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                None => {
                    next = (next + 1) % servers.len();
                    servers[next].clone()
                }
            };
            let registrations = self.connection.borrow().registrations;
            match self.connect(&addr).await {
                Ended::Redirect(leader) => {
                    tracing::debug!(from = %addr, to = %leader, "following the leader hint");
                    hint = Some(leader);
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ended::Failed(why) => {
                    self.connection.send_modify(|c| c.leader = None);
                    tracing::debug!(server = %addr, reason = %why, "agent stream ended");
                    // A stream that registered worked: reconnect with short pauses again instead
                    // of the longest pause an earlier outage left behind.
                    if self.connection.borrow().registrations > registrations {
                        backoff = Duration::from_millis(100);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
    }

    async fn connect(&mut self, addr: &str) -> Ended {
        let me = self.identity.node_id;
        if self.filter.is_isolated(me) {
            return Ended::Failed("isolated by the network filter".into());
        }
        let tls = match self.identity.client_tls() {
            Ok(t) => t,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut client = ClusterClient::new(tepui_transport::channel(addr, tls));
        let (tx, rx) = mpsc::channel::<Envelope>(16);
        let _ = tx.send(envelope(&self.register)).await;
        let resp = match client
            .agent_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r,
            Err(status) => {
                if let Some(leader) = status.metadata().get("x-tepui-leader").and_then(|v| v.to_str().ok()) {
                    if !leader.is_empty() && leader != addr {
                        return Ended::Redirect(leader.to_string());
                    }
                }
                return Ended::Failed(tepui_transport::status_message(&status));
            }
        };
        let mut inbound = resp.into_inner();
        let mut ticker = tokio::time::interval(self.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return Ended::Failed("the server closed the stream".into()),
                        Err(s) => return Ended::Failed(tepui_transport::status_message(&s)),
                    };
                    match serde_json::from_slice::<ServerToAgent>(&msg.json) {
                        Ok(ServerToAgent::Registered { node_id, servers }) => {
                            tracing::info!(node = node_id, leader = %addr, "registered with the leader");
                            self.remember_servers(servers);
                            self.connection.send_modify(|c| {
                                c.leader = Some(addr.to_string());
                                c.registrations += 1;
                            });
                        }
                        Ok(ServerToAgent::HeartbeatAck { .. }) => {}
                        Ok(other) => tracing::debug!(message = ?other, "not handled by this agent yet"),
                        Err(e) => tracing::warn!(error = %e, "unreadable message from the server"),
                    }
                }
                _ = ticker.tick() => {
                    if self.filter.is_isolated(me) {
                        return Ended::Failed("isolated by the network filter".into());
                    }
                    seq += 1;
                    if tx.send(envelope(&AgentToServer::Heartbeat { seq })).await.is_err() {
                        return Ended::Failed("the stream closed".into());
                    }
                }
            }
        }
    }

    fn remember_servers(&mut self, servers: Vec<String>) {
        if servers.is_empty() || servers == self.identity.servers {
            return;
        }
        self.identity.servers = servers;
        if self.persist {
            if let Err(e) = self.identity.save(&self.data_dir) {
                tracing::warn!(error = %e, "could not save the server list");
            }
        }
    }
}

fn envelope(m: &AgentToServer) -> Envelope {
    Envelope {
        json: serde_json::to_vec(m).expect("agent messages always serialize"),
    }
}

struct HttpState {
    name: String,
    resources: tepui_proto::agent::Resources,
}

fn http_router(state: Arc<HttpState>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/v1/health",
            get(|State(s): State<Arc<HttpState>>| async move {
                axum::Json(tepui_api::Health {
                    status: "ok".into(),
                    node: s.name.clone(),
                    role: "agent".into(),
                    version: VERSION.into(),
                })
            }),
        )
        .route(
            "/v1/agent/resources",
            get(|State(s): State<Arc<HttpState>>| async move { axum::Json(s.resources.clone()) }),
        )
        .with_state(state)
}
