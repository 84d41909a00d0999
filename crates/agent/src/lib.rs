//! A tepui agent: a worker node that joins with a token, reports its resources and attributes,
//! keeps one stream open to the leader (dialing out, so agents behind NAT work), and runs the
//! leader's tasks in containers.
//!
//! The agent finds the leader by itself (`session.rs`): it dials the servers it knows, follows a
//! follower's hint to the leader, and reconnects after a failover. Tasks ([`TaskManager`]) run
//! in the container runtime (tepui-runtime) from images in the image store (tepui-image); their
//! status updates are kept on disk until the leader acknowledges them ([`UpdateQueue`]), and
//! containers outlive the agent, which adopts them when it starts again. The leader relays
//! what API callers ask of a task (logs, exec, its sandbox's files) as requests on the stream.
//!
//! It knows nothing of Raft, the allocator or frameworks: the leader decides what runs where,
//! the agent runs it and says how it went.

mod executor_api;
pub mod files;
pub mod format;
pub mod gateway;
mod health;
mod http;
pub mod launch;
mod requests;
pub mod resolver;
mod resources;
mod session;
mod stats;
mod tasks;
mod updates;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use requests::{progress_json, ImageSummary, Requests};
pub use resources::{detect, ResourceOverrides};
pub use tasks::{AgentSelf, CleanupReport, Phase, TaskConfig, TaskError, TaskManager, MAX_LOG_FOLLOWERS};
use tepui_pki::token::JoinToken;
use tepui_pki::Role;
pub use tepui_runtime::{BridgeConfig, RuntimeConfig};
use tepui_transport::{Identity, NetFilter};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
pub use updates::{task_dir_name, UpdateQueue, FIRST_RETRY, MAX_RETRY};

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
    /// The TLS of the server whose identity this agent borrows (`tepui dev`): the server renews
    /// it, the agent uses it as it is at each connection.
    pub shared_tls: Option<tepui_pki::tls::LiveTls>,
    pub name: String,
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub start: AgentStart,
    pub resources: ResourceOverrides,
    pub attributes: BTreeMap<String, String>,
    pub heartbeat: Duration,
    pub filter: NetFilter,
    /// How containers run: the shim program (default: this executable with `shim`), the
    /// bridge network, host paths volumes may mount (`allowed_host_volumes`, empty refuses
    /// all), the cgroup parent, log rotation. Sandboxes live under `<data_dir>/runtime`.
    pub runtime: RuntimeConfig,
    /// Registries (`host:port` as references write them) that may be pulled from over plain
    /// HTTP. Images live under `<data_dir>/images`.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry host, for pulls; other registries are pulled anonymously.
    pub registry_auth: std::collections::HashMap<String, tepui_image::RegistryAuth>,
    /// Ended tasks whose updates are all acknowledged, and their sandboxes, are removed this
    /// long after they ended.
    pub task_retention: Duration,
    /// How often that cleanup (and image garbage collection) runs.
    pub cleanup_interval: Duration,
    /// The DNS of a server in this same process (`tepui dev`): the tasks' resolver forwards
    /// there. Without it, to the DNS of the server the agent registers with.
    pub cluster_dns: Option<tepui_proto::agent::ClusterDns>,
    /// The L7 gateway (HTTP and HTTPS listeners, routes from the leader's table); none: off.
    pub gateway: Option<tepui_gateway::proxy::Settings>,
}

impl AgentConfig {
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            shared_tls: None,
            name: name.into(),
            data_dir: data_dir.into(),
            http_listen: ([127, 0, 0, 1], 5051).into(),
            advertise: None,
            start: AgentStart::Refuse,
            resources: ResourceOverrides::default(),
            attributes: BTreeMap::new(),
            heartbeat: Duration::from_secs(2),
            filter: NetFilter::default(),
            runtime: RuntimeConfig::default(),
            insecure_registries: Vec::new(),
            registry_auth: Default::default(),
            task_retention: Duration::from_secs(3600),
            cleanup_interval: Duration::from_secs(60),
            cluster_dns: None,
            gateway: None,
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
    #[error("cannot start the task manager")]
    Tasks(#[from] TaskError),
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
    task_manager: TaskManager,
    gateway: Arc<gateway::AgentGateway>,
    loops: JoinSet<()>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Agent {
    /// Where the gateway takes plain HTTP, when it runs.
    pub fn gateway_http_addr(&self) -> Option<SocketAddr> {
        self.gateway.proxy.as_ref()?.http_addr()
    }

    /// Where the gateway takes HTTPS, when it runs.
    pub fn gateway_https_addr(&self) -> Option<SocketAddr> {
        self.gateway.proxy.as_ref()?.https_addr()
    }

    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        // Linking the image store compiles rustls into reqwest (feature unification), and a
        // reqwest client then needs a process-wide crypto provider: ring, the only one here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        tepui_transport::create_private_dir(&cfg.data_dir)
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

        // Host tasks see the host's /etc, /opt...: never this node's keys, state and sandboxes.
        let mut runtime = cfg.runtime.clone();
        let data_dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
        runtime.host_masks.push(data_dir);
        let task_manager = TaskManager::open(TaskConfig {
            data_dir: cfg.data_dir.clone(),
            runtime,
            insecure_registries: cfg.insecure_registries.clone(),
            registry_auth: cfg.registry_auth.clone(),
            task_retention: cfg.task_retention,
            cluster_dns: cfg.cluster_dns.clone(),
        })
        .await?;

        task_manager.set_agent_self(tasks::AgentSelf {
            id: identity.node_id,
            hostname: identity.name.clone(),
            endpoint: http_addr,
        });
        let resources = resources::detect(&cfg.data_dir, &cfg.resources);
        let (conn_tx, conn_rx) = watch::channel(Connection::default());
        let mut loops = JoinSet::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (trust_tx, trust_rx) = watch::channel(None);
        let tls = match &cfg.shared_tls {
            Some(tls) => tls.clone(),
            None => {
                let tls = identity.live_tls()?;
                // The agent's own certificate: renewed here, from what the leader says.
                let leader = conn_rx.clone();
                let renewer = tepui_transport::Renewer {
                    identity: identity.clone(),
                    data_dir: cfg.data_dir.clone(),
                    tls: tls.clone(),
                    trust: trust_rx,
                    leader: Box::new(move || leader.borrow().leader.clone()),
                };
                loops.spawn(renewer.run(shutdown.clone()));
                tls
            }
        };
        // The gateway's table outlives streams: what the last leader sent is served meanwhile.
        let (gateway_tx, gateway_rx) = watch::channel(None);
        task_manager.follow_routes(gateway_rx.clone());
        let proxy = match &cfg.gateway {
            Some(settings) => {
                let (feed, forward) = gateway::proxy_feed(gateway_rx.clone());
                loops.spawn(forward);
                let proxy = tepui_gateway::proxy::Gateway::start(settings.clone(), feed)
                    .await
                    .map_err(|e| AgentError::Config(format!("the gateway cannot start: {e}")))?;
                tracing::info!(http = ?proxy.http_addr(), https = ?proxy.https_addr(), "gateway listening");
                Some(proxy)
            }
            None => None,
        };
        loops.spawn(gateway::follow_vips(
            gateway_rx,
            identity.cluster_id.clone(),
            identity.node_id,
        ));
        let gateway = Arc::new(gateway::AgentGateway {
            table: gateway_tx,
            proxy,
        });
        // The agent's port takes HTTPS with the node's certificate, plain HTTP from loopback.
        let http_tls = tls.api_server_config()?;
        let session = session::Session {
            tls,
            trust: trust_tx,
            identity: identity.clone(),
            persist: !matches!(cfg.start, AgentStart::WithIdentity(_)),
            data_dir: cfg.data_dir.clone(),
            resources: resources.clone(),
            attributes: cfg.attributes.clone(),
            http_addr: http_addr.to_string(),
            heartbeat: cfg.heartbeat,
            filter: cfg.filter.clone(),
            extra_servers: join_addr.into_iter().collect(),
            connection: conn_tx,
            tasks: task_manager.clone(),
            gateway: gateway.clone(),
        };
        loops.spawn(session.run());
        let cleaner = task_manager.clone();
        let interval = cfg.cleanup_interval.max(Duration::from_millis(100));
        loops.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let r = cleaner.cleanup().await;
                if !r.tasks.is_empty() || !r.sandboxes.is_empty() {
                    tracing::info!(tasks = r.tasks.len(), sandboxes = r.sandboxes.len(), "cleanup");
                }
            }
        });
        let app = http::router(Arc::new(http::HttpState {
            name: identity.name.clone(),
            resources,
            gateway: gateway.clone(),
            tasks: task_manager.clone(),
        }));
        let shutdown_http = shutdown.clone();
        loops.spawn(async move {
            let listener = tepui_transport::KillableListener::new(listener, shutdown_http);
            tepui_transport::serve_http(listener, app, tepui_transport::HttpLimits::default(), Some(http_tls)).await;
        });
        tracing::info!(node = identity.node_id, name = %identity.name, http = %http_addr, "agent started");
        Ok(Agent {
            gateway,
            identity,
            http_addr,
            connection: conn_rx,
            task_manager,
            loops,
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

    /// The agent's tasks.
    pub fn tasks(&self) -> &TaskManager {
        &self.task_manager
    }

    /// Stops the agent. Its containers keep running; the next start adopts them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.loops.abort_all();
        while self.loops.join_next().await.is_some() {}
        self.task_manager.shutdown().await;
    }
}

impl Drop for Agent {
    /// An agent dropped without [`Agent::shutdown`] stops too: nothing of it goes on writing
    /// to its data dir, which a restarted agent may already use.
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.loops.abort_all();
        self.task_manager.stop();
    }
}
