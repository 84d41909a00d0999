//! An in-process tepui cluster for integration tests: N servers and M agents in one process,
//! every port bound to 0 on 127.0.0.1, each node on its own data dir under one temporary
//! directory, and one shared [`NetFilter`] through which the test partitions, isolates, drops
//! and delays cluster messages.
//!
//! Nodes are the real thing (`tepui_server::Server`, `tepui_agent::Agent`, real TLS, real Raft
//! storage); the harness only starts, stops and restarts them on their own storage and ports, and
//! watches their Raft metrics so that tests can check invariants after every step
//! ([`Cluster::check_invariants`]). Tests wait on conditions with [`wait_for`], never on sleeps.
//!
//! The harness deliberately knows nothing of what the API means beyond a few conveniences (join
//! tokens, variables as a generic replicated write, membership and node listings): tests say what
//! they expect through the public HTTP client and the servers' own accessors.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use tepui_harness::{wait_for, Cluster};
//!
//! let mut c = Cluster::builder().servers(3).agents(1).start().await;
//! let leader = c.wait_for_leader().await;
//! c.kill_server(leader).await;
//! let new = c.wait_for_leader().await;
//! c.put_var("k", "v").await;
//! wait_for("every server to have k", Duration::from_secs(5), async || {
//!     c.live_server_ids().iter().all(|id| c.local_var(*id, "k").is_some())
//! })
//! .await;
//! c.restart_server(leader).await;
//! c.check_invariants();
//! # let _ = new;
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{LogId, RaftMetrics, ServerState};
pub use tepui_agent::{Agent, AgentStart, ResourceOverrides};
use tepui_agent::{AgentConfig, AgentError};
pub use tepui_api::Client;

/// The management API token the harness's clusters start with, and its clients send.
pub const API_TOKEN: &str = "harness-accessor.harness-secret-not-for-production";
use tepui_api::{ClientError, VarPutRequest, VarView};
pub use tepui_server::{FirstStart, NetFilter, RaftTimings, Server, StartedAs};
use tepui_server::{ServerConfig, ServerError};
use tepui_state::NodeStatus;

type Metrics = RaftMetrics<u64, openraft::BasicNode>;

/// How often [`wait_for`] polls its condition.
const POLL: Duration = Duration::from_millis(25);
/// How long a restart keeps retrying to bind the node's old ports.
const REBIND_FOR: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Waiting on conditions
// ---------------------------------------------------------------------------------------------

/// What a condition polled by [`wait_for`] returns: met (with a value) or not yet (with why).
pub trait Outcome {
    type Value;
    fn into_outcome(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn into_outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("the condition is still false".into())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "the condition returned None".into())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `check` until it is met and returns its value; panics with `description` and the last
/// reason the condition gave once `timeout` has passed. Level-triggered: a condition that is
/// already true returns at once. A check that hangs counts against the same deadline.
pub async fn wait_for<O: Outcome>(description: &str, timeout: Duration, mut check: impl AsyncFnMut() -> O) -> O::Value {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let why = match tokio::time::timeout(left.max(POLL), check()).await {
            Ok(outcome) => match outcome.into_outcome() {
                Ok(v) => return v,
                Err(why) => why,
            },
            Err(_) => "the check itself did not finish before the deadline".to_string(),
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:?} ({attempts} checks) waiting for {description}; last: {why}",
                started.elapsed()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `fut` for at most `timeout`; a timeout becomes an error message.
pub async fn within<T>(timeout: Duration, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))
}

pub use tepui_common::error_chain;

/// Logs to the test output when `RUST_LOG` is set.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------------

/// What the harness saw of every server's Raft metrics, to check invariants over the whole run
/// (servers that were killed since included).
#[derive(Default)]
struct History {
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Term -> servers that reported themselves leader in it (for the failure report).
    claims: BTreeMap<u64, BTreeSet<u64>>,
    /// Term -> (the leader whose entries were applied in it, on which server, at which index).
    term_leader: BTreeMap<u64, (u64, u64, u64)>,
    /// Index -> (the applied log id there, on which server).
    applied_at: BTreeMap<u64, (LogId<u64>, u64)>,
    /// Server -> last applied index seen in its current incarnation.
    last_applied: BTreeMap<u64, u64>,
    single_leader_violations: Vec<String>,
    log_violations: Vec<String>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A server (re)started: its applied index may start lower than before.
    fn restarted(&self, server: u64) {
        self.lock().last_applied.remove(&server);
    }

    fn record(&self, server: u64, m: &Metrics) {
        let mut seen = self.lock();
        if m.state == ServerState::Leader {
            seen.claims.entry(m.current_term).or_default().insert(server);
        }
        let Some(applied) = m.last_applied else {
            return;
        };
        let (term, leader, index) = (applied.leader_id.term, applied.leader_id.node_id, applied.index);
        match seen.term_leader.get(&term).copied() {
            None => {
                seen.term_leader.insert(term, (leader, server, index));
            }
            Some((other, on, at)) if other != leader => {
                let claims = seen.claims.get(&term).cloned().unwrap_or_default();
                seen.single_leader_violations.push(format!(
                    "term {term} had two leaders whose entries were applied: {other} (index {at}, seen on server {on}) \
                     and {leader} (index {index}, seen on server {server}); servers claiming leadership in that term: {claims:?}"
                ));
            }
            Some(_) => {}
        }
        match seen.applied_at.get(&index).copied() {
            None => {
                seen.applied_at.insert(index, (applied, server));
            }
            Some((other, on)) if other != applied => seen.log_violations.push(format!(
                "index {index} was applied as {other} on server {on} but as {applied} on server {server}"
            )),
            Some(_) => {}
        }
        let before = seen.last_applied.insert(server, index);
        if let Some(before) = before.filter(|b| *b > index) {
            seen.log_violations.push(format!(
                "server {server}'s applied index went back from {before} to {index} without a restart"
            ));
        }
    }
}

/// Follows one running server's Raft metrics into the history.
fn watch_metrics(server: &Server, history: Arc<History>) -> tokio::task::JoinHandle<()> {
    let id = server.id();
    let mut rx = server.raft().metrics();
    tokio::spawn(async move {
        loop {
            let m = rx.borrow_and_update().clone();
            history.record(id, &m);
            if rx.changed().await.is_err() {
                break;
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Building a cluster
// ---------------------------------------------------------------------------------------------

type AttributesFn = Arc<dyn Fn(usize) -> BTreeMap<String, String> + Send + Sync>;

/// Settings of a test cluster; [`Cluster::builder`] starts from fast timings.
pub struct ClusterBuilder {
    servers: usize,
    agents: usize,
    raft: RaftTimings,
    agent_timeout: Duration,
    agent_heartbeat: Duration,
    agent_resources: ResourceOverrides,
    agent_attributes: AttributesFn,
    ready_timeout: Duration,
    cert_lifetime: Option<Duration>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            servers: 3,
            agents: 0,
            raft: RaftTimings::fast(),
            agent_timeout: Duration::from_secs(2),
            agent_heartbeat: Duration::from_millis(200),
            agent_resources: ResourceOverrides {
                cpus: Some(4.0),
                mem_mb: Some(8192),
                disk_mb: Some(100_000),
                ports: Some((31000, 32000)),
                reserved: None,
            },
            agent_attributes: Arc::new(|n| BTreeMap::from([("agent".to_string(), n.to_string())])),
            ready_timeout: Duration::from_secs(30),
            cert_lifetime: None,
        }
    }
}

impl ClusterBuilder {
    pub fn servers(mut self, n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one server");
        self.servers = n;
        self
    }

    pub fn agents(mut self, n: usize) -> Self {
        self.agents = n;
        self
    }

    /// Raft timings and snapshot policy for every server.
    pub fn raft(mut self, raft: RaftTimings) -> Self {
        self.raft = raft;
        self
    }

    /// Build a snapshot every `every` entries and keep `keep` entries behind it.
    pub fn snapshots(mut self, every: u64, keep: u64) -> Self {
        self.raft.snapshot_every = every;
        self.raft.keep_behind_snapshot = keep;
        self
    }

    /// How long the leader waits for an agent's heartbeat before it marks the agent lost.
    pub fn agent_timeout(mut self, d: Duration) -> Self {
        self.agent_timeout = d;
        self
    }

    pub fn agent_heartbeat(mut self, d: Duration) -> Self {
        self.agent_heartbeat = d;
        self
    }

    /// The resources every agent reports.
    pub fn agent_resources(mut self, r: ResourceOverrides) -> Self {
        self.agent_resources = r;
        self
    }

    /// The attributes of the n-th agent started (1-based).
    pub fn agent_attributes(mut self, f: impl Fn(usize) -> BTreeMap<String, String> + Send + Sync + 'static) -> Self {
        self.agent_attributes = Arc::new(f);
        self
    }

    /// How long the node certificates the servers sign last (a year unless set).
    pub fn cert_lifetime(mut self, d: Duration) -> Self {
        self.cert_lifetime = Some(d);
        self
    }

    /// How long [`ClusterBuilder::start`] and the other "until ready" waits may take.
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }

    /// Bootstraps the first server, joins the others and the agents, and waits until every
    /// server is a voter and every agent is registered and ready.
    pub async fn start(self) -> Cluster {
        init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("tepui-harness-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let (servers, agents) = (self.servers, self.agents);
        let mut cluster = Cluster {
            dir,
            filter: NetFilter::default(),
            settings: self,
            servers: BTreeMap::new(),
            agents: BTreeMap::new(),
            server_token: String::new(),
            agent_token: String::new(),
            history: Arc::default(),
            names: 0,
            agents_started: 0,
            isolated: BTreeSet::new(),
        };
        let first = cluster
            .try_start_server(FirstStart::Bootstrap)
            .await
            .unwrap_or_else(|e| panic!("bootstrapping the first server failed: {e}"));
        match cluster.server(first).started_as.clone() {
            StartedAs::Bootstrapped {
                server_token,
                agent_token,
                ..
            } => {
                cluster.server_token = server_token;
                cluster.agent_token = agent_token;
            }
            other => panic!("the first server did not bootstrap: {other:?}"),
        }
        for _ in 1..servers {
            let token = cluster.server_token.clone();
            cluster
                .try_join_server(&token)
                .await
                .unwrap_or_else(|e| panic!("a server could not join: {e}"));
        }
        cluster.wait_for_voters().await;
        for _ in 0..agents {
            let token = cluster.agent_token.clone();
            cluster
                .try_join_agent(&token)
                .await
                .unwrap_or_else(|e| panic!("an agent could not join: {e}"));
        }
        cluster.wait_for_agents_ready().await;
        cluster.check_invariants();
        cluster
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

struct ServerSlot {
    name: String,
    data_dir: PathBuf,
    /// The ports it bound first; a restart binds them again, since the Raft membership and the
    /// agents hold these addresses.
    cluster_listen: SocketAddr,
    http_listen: SocketAddr,
    http_addr: String,
    cluster_addr: String,
    running: Option<Server>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

struct AgentSlot {
    name: String,
    data_dir: PathBuf,
    http_listen: SocketAddr,
    attributes: BTreeMap<String, String>,
    running: Option<Agent>,
}

/// A running test cluster. Node ids are the ones the cluster assigned (the bootstrap server is 1).
pub struct Cluster {
    dir: tempfile::TempDir,
    filter: NetFilter,
    settings: ClusterBuilder,
    servers: BTreeMap<u64, ServerSlot>,
    agents: BTreeMap<u64, AgentSlot>,
    server_token: String,
    agent_token: String,
    history: Arc<History>,
    /// Counter for unique node names and data dirs.
    names: usize,
    agents_started: usize,
    isolated: BTreeSet<u64>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    // --- accessors ---------------------------------------------------------------------------

    /// The directory holding every node's data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn filter(&self) -> &NetFilter {
        &self.filter
    }

    /// The server join token made at bootstrap.
    pub fn server_token(&self) -> &str {
        &self.server_token
    }

    /// The agent join token made at bootstrap.
    pub fn agent_token(&self) -> &str {
        &self.agent_token
    }

    /// Every server the harness started and has not removed, running or killed.
    pub fn server_ids(&self) -> Vec<u64> {
        self.servers.keys().copied().collect()
    }

    /// The servers that are running.
    pub fn live_server_ids(&self) -> Vec<u64> {
        self.servers
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The running servers that no isolation cuts off.
    pub fn connected_server_ids(&self) -> Vec<u64> {
        self.live_server_ids()
            .into_iter()
            .filter(|id| !self.isolated.contains(id))
            .collect()
    }

    pub fn agent_ids(&self) -> Vec<u64> {
        self.agents.keys().copied().collect()
    }

    /// A running server; panics if it is unknown or killed.
    pub fn server(&self, id: u64) -> &Server {
        self.try_server(id)
            .unwrap_or_else(|| panic!("server {id} is not running (known: {:?})", self.server_ids()))
    }

    pub fn try_server(&self, id: u64) -> Option<&Server> {
        self.servers.get(&id).and_then(|s| s.running.as_ref())
    }

    /// A running agent; panics if it is unknown or killed.
    pub fn agent(&self, id: u64) -> &Agent {
        self.agents
            .get(&id)
            .and_then(|a| a.running.as_ref())
            .unwrap_or_else(|| panic!("agent {id} is not running (known: {:?})", self.agent_ids()))
    }

    pub fn server_name(&self, id: u64) -> &str {
        &self.slot(id).name
    }

    pub fn agent_name(&self, id: u64) -> &str {
        &self
            .agents
            .get(&id)
            .unwrap_or_else(|| panic!("unknown agent {id}"))
            .name
    }

    pub fn server_data_dir(&self, id: u64) -> &Path {
        &self.slot(id).data_dir
    }

    pub fn agent_data_dir(&self, id: u64) -> &Path {
        &self
            .agents
            .get(&id)
            .unwrap_or_else(|| panic!("unknown agent {id}"))
            .data_dir
    }

    /// The advertised cluster address of a server, also while it is killed.
    pub fn server_cluster_addr(&self, id: u64) -> &str {
        &self.slot(id).cluster_addr
    }

    /// An HTTP client of a server's API; it keeps pointing at the server's port while it is killed.
    pub fn client(&self, id: u64) -> Client {
        Client::new(&self.slot(id).http_addr).with_token(API_TOKEN)
    }

    fn slot(&self, id: u64) -> &ServerSlot {
        self.servers
            .get(&id)
            .unwrap_or_else(|| panic!("unknown server {id} (known: {:?})", self.server_ids()))
    }

    /// The current Raft metrics of a running server.
    pub fn metrics(&self, id: u64) -> Metrics {
        self.server(id).raft().metrics().borrow().clone()
    }

    /// The running server that claims leadership in the highest term, if any.
    pub fn leader_id(&self) -> Option<u64> {
        self.live_server_ids()
            .into_iter()
            .map(|id| self.metrics(id))
            .filter(|m| m.state == ServerState::Leader)
            .max_by_key(|m| (m.current_term, m.id))
            .map(|m| m.id)
    }

    /// The leader all `ids` agree on, if they agree and it is one of them and leads.
    pub fn agreed_leader(&self, ids: &[u64]) -> Result<u64, String> {
        let mut agreed: Option<(u64, u64)> = None;
        for &id in ids {
            let s = self
                .try_server(id)
                .ok_or_else(|| format!("server {id} is not running"))?;
            let m = s.raft().metrics().borrow().clone();
            let leader = m
                .current_leader
                .ok_or_else(|| format!("server {id} knows no leader (term {})", m.current_term))?;
            match agreed {
                None => agreed = Some((leader, id)),
                Some((l, by)) if l != leader => {
                    return Err(format!("server {by} follows {l} but server {id} follows {leader}"))
                }
                Some(_) => {}
            }
        }
        let (leader, _) = agreed.ok_or("no servers to ask")?;
        if !ids.contains(&leader) {
            return Err(format!("they follow {leader}, which is not among {ids:?}"));
        }
        let state = self.metrics(leader).state;
        if state != ServerState::Leader {
            return Err(format!("they follow {leader}, but it is {state:?}"));
        }
        Ok(leader)
    }

    /// Waits until the running, non-isolated servers agree on a leader among them.
    pub async fn wait_for_leader(&self) -> u64 {
        let ids = self.connected_server_ids();
        self.wait_for_leader_among(&ids).await
    }

    /// Waits until `ids` agree on a leader among them.
    pub async fn wait_for_leader_among(&self, ids: &[u64]) -> u64 {
        let description = format!("servers {ids:?} to agree on a leader among them");
        wait_for(&description, self.settings.ready_timeout, async || {
            self.agreed_leader(ids)
        })
        .await
    }

    /// The voters in a running server's view of the membership, joint configurations merged.
    pub fn voters(&self, id: u64) -> BTreeSet<u64> {
        self.metrics(id).membership_config.membership().voter_ids().collect()
    }

    /// Waits until the leader has every known server as a voter in a settled (non-joint)
    /// membership, every running server knows that leader, and the leader's state lists every
    /// server as ready.
    pub async fn wait_for_voters(&self) -> u64 {
        let expected: BTreeSet<u64> = self.server_ids().into_iter().collect();
        let description = format!("servers {expected:?} to be the voters");
        wait_for(&description, self.settings.ready_timeout, async || {
            let leader = self.agreed_leader(&self.connected_server_ids())?;
            let m = self.metrics(leader);
            let membership = m.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            if voters != expected || membership.get_joint_config().len() != 1 {
                return Err(format!("the leader {leader} has voters {voters:?}"));
            }
            let not_ready: Vec<u64> = self.server(leader).state().read(|s| {
                expected
                    .iter()
                    .filter(|id| s.nodes.get(id).is_none_or(|n| n.status != NodeStatus::Ready))
                    .copied()
                    .collect()
            });
            if !not_ready.is_empty() {
                return Err(format!("servers {not_ready:?} are not ready in the leader's state"));
            }
            Ok(leader)
        })
        .await
    }

    /// Waits until every running agent is registered with a leader and ready in its state.
    pub async fn wait_for_agents_ready(&self) {
        let running: Vec<u64> = self
            .agents
            .iter()
            .filter(|(_, a)| a.running.is_some())
            .map(|(id, _)| *id)
            .collect();
        if running.is_empty() {
            return;
        }
        let description = format!("agents {running:?} to be registered and ready");
        wait_for(&description, self.settings.ready_timeout, async || {
            let leader = self.agreed_leader(&self.connected_server_ids())?;
            for &id in &running {
                if self.agent(id).connection.borrow().leader.is_none() {
                    return Err(format!("agent {id} is not registered"));
                }
                let ready = self.server(leader).state().read(|s| {
                    s.nodes
                        .get(&id)
                        .is_some_and(|n| n.agent.is_some() && n.status == NodeStatus::Ready)
                });
                if !ready {
                    return Err(format!("agent {id} is not ready in the leader's ({leader}) state"));
                }
            }
            Ok(())
        })
        .await
    }

    /// Waits until every running, non-isolated server has applied what the leader had applied
    /// when this was called.
    pub async fn wait_converged(&self) {
        let ids = self.connected_server_ids();
        let leader = self.wait_for_leader_among(&ids).await;
        let target = self.server(leader).state().applied_index();
        let description = format!("servers {ids:?} to apply up to index {target}");
        wait_for(&description, self.settings.ready_timeout, async || {
            for &id in &ids {
                let applied = self.server(id).state().applied_index();
                if applied < target {
                    return Err(format!("server {id} applied {applied}"));
                }
            }
            Ok(())
        })
        .await
    }

    // --- starting, killing, restarting --------------------------------------------------------

    fn next_name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn server_config(&self, slot: (&str, &Path, SocketAddr, SocketAddr), first_start: FirstStart) -> ServerConfig {
        let (name, data_dir, cluster_listen, http_listen) = slot;
        let mut cfg = ServerConfig::new(name, data_dir);
        cfg.bootstrap_api_token = Some(API_TOKEN.to_string());
        cfg.cluster_listen = cluster_listen;
        cfg.http_listen = http_listen;
        cfg.first_start = first_start;
        cfg.raft = self.settings.raft.clone();
        cfg.agent_timeout = self.settings.agent_timeout;
        cfg.filter = self.filter.clone();
        if let Some(lifetime) = self.settings.cert_lifetime {
            cfg.cert_lifetime = lifetime;
        }
        cfg
    }

    /// The cluster address new nodes join through: the leader's, else any running server's.
    pub fn join_addr(&self) -> String {
        let id = self
            .leader_id()
            .or_else(|| self.connected_server_ids().first().copied())
            .expect("no server is running to join through");
        self.server(id).advertised_cluster_addr().to_string()
    }

    fn adopt_server(&mut self, name: String, data_dir: PathBuf, server: Server) -> u64 {
        let id = server.id();
        self.history.restarted(id);
        let watcher = watch_metrics(&server, self.history.clone());
        let slot = ServerSlot {
            name,
            data_dir,
            cluster_listen: server.cluster_addr,
            http_listen: server.http_addr,
            http_addr: server.advertised_http_addr().to_string(),
            cluster_addr: server.advertised_cluster_addr().to_string(),
            running: Some(server),
            watcher: Some(watcher),
        };
        let replaced = self.servers.insert(id, slot);
        assert!(replaced.is_none(), "the cluster gave out server id {id} twice");
        id
    }

    /// Starts a new server on a fresh data dir and ports; on success it becomes part of the
    /// harness (a joined one becomes a voter in the background). The error is the whole chain.
    pub async fn try_start_server(&mut self, first_start: FirstStart) -> Result<u64, String> {
        let name = self.next_name("s");
        let data_dir = self.dir.path().join(&name);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let cfg = self.server_config((&name, &data_dir, any, any), first_start);
        match Server::start(cfg).await {
            Ok(server) => Ok(self.adopt_server(name, data_dir, server)),
            Err(e) => Err(error_chain(&e)),
        }
    }

    /// Starts a new server that joins through [`Cluster::join_addr`] with `token`.
    pub async fn try_join_server(&mut self, token: &str) -> Result<u64, String> {
        let addr = self.join_addr();
        self.try_start_server(FirstStart::Join {
            addr,
            token: token.to_string(),
        })
        .await
    }

    /// Joins a new server with the server token and waits until it is a voter and has applied
    /// what the leader had: before that, its state may not hold the API tokens, and it refuses
    /// calls with them (401), as any server that lags would.
    pub async fn add_server(&mut self) -> u64 {
        let token = self.server_token.clone();
        let id = self
            .try_join_server(&token)
            .await
            .unwrap_or_else(|e| panic!("a new server could not join: {e}"));
        self.wait_for_voters().await;
        self.wait_converged().await;
        id
    }

    /// Stops a server (Raft, listeners, loops); its data dir and ports stay for a restart.
    pub async fn kill_server(&mut self, id: u64) {
        let slot = self
            .servers
            .get_mut(&id)
            .unwrap_or_else(|| panic!("unknown server {id}"));
        let server = slot
            .running
            .take()
            .unwrap_or_else(|| panic!("server {id} is already killed"));
        if let Some(w) = slot.watcher.take() {
            w.abort();
        }
        self.history.record(id, &server.raft().metrics().borrow());
        server.shutdown().await;
        tracing::info!(node = id, "harness: server killed");
    }

    /// Starts a killed server again on its data dir and ports, without a token.
    pub async fn restart_server(&mut self, id: u64) -> &Server {
        let slot = self.slot(id);
        assert!(slot.running.is_none(), "server {id} is running; kill it first");
        let cfg = self.server_config(
            (&slot.name, &slot.data_dir, slot.cluster_listen, slot.http_listen),
            FirstStart::Refuse,
        );
        let deadline = Instant::now() + REBIND_FOR;
        let server = loop {
            match Server::start(cfg.clone()).await {
                Ok(s) => break s,
                Err(ServerError::Listen { ref source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restarting server {id} failed: {}", error_chain(&e)),
            }
        };
        assert_eq!(server.id(), id, "server {id} came back with another identity");
        self.history.restarted(id);
        let watcher = watch_metrics(&server, self.history.clone());
        let slot = self.servers.get_mut(&id).expect("checked above");
        slot.running = Some(server);
        slot.watcher = Some(watcher);
        tracing::info!(node = id, "harness: server restarted");
        slot.running.as_ref().expect("just set")
    }

    /// Removes a server from the Raft membership through another server's
    /// `DELETE /v1/operator/raft/peers/{id}`, then stops it and forgets it.
    pub async fn remove_server(&mut self, id: u64) {
        let via: Vec<u64> = self.connected_server_ids().into_iter().filter(|s| *s != id).collect();
        assert!(!via.is_empty(), "no other server to remove {id} through");
        let description = format!("server {id} to be removed from the membership");
        let clients: Vec<Client> = via.iter().map(|s| self.client(*s)).collect();
        let mut turn = 0usize;
        wait_for(&description, self.settings.ready_timeout, async || {
            turn += 1;
            let client = &clients[turn % clients.len()];
            match within(Duration::from_secs(5), client.remove_peer(&id.to_string())).await? {
                Ok(members) if members.iter().any(|m| m.id == id) => {
                    Err(format!("{id} is still a member: {members:?}"))
                }
                Ok(_) => Ok(()),
                // An earlier attempt went through but its answer was lost.
                Err(ClientError::Api { code, .. }) if code == "not_a_peer" => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        if self.try_server(id).is_some() {
            self.kill_server(id).await;
        }
        self.servers.remove(&id);
        self.isolated.remove(&id);
        self.wait_for_voters().await;
    }

    fn agent_config(&self, slot: &AgentSlot, start: AgentStart) -> AgentConfig {
        let mut cfg = AgentConfig::new(&slot.name, &slot.data_dir);
        cfg.http_listen = slot.http_listen;
        cfg.start = start;
        cfg.resources = self.settings.agent_resources.clone();
        cfg.attributes = slot.attributes.clone();
        cfg.heartbeat = self.settings.agent_heartbeat;
        cfg.filter = self.filter.clone();
        cfg
    }

    /// Starts a new agent on a fresh data dir; on success it becomes part of the harness.
    pub async fn try_start_agent(&mut self, start: AgentStart) -> Result<u64, String> {
        let name = self.next_name("a");
        self.agents_started += 1;
        let mut slot = AgentSlot {
            data_dir: self.dir.path().join(&name),
            name,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            attributes: (self.settings.agent_attributes)(self.agents_started),
            running: None,
        };
        match Agent::start(self.agent_config(&slot, start)).await {
            Ok(agent) => {
                let id = agent.id();
                slot.http_listen = agent.http_addr;
                slot.running = Some(agent);
                let replaced = self.agents.insert(id, slot);
                assert!(replaced.is_none(), "the cluster gave out agent id {id} twice");
                Ok(id)
            }
            Err(e) => Err(error_chain(&e)),
        }
    }

    /// Starts a new agent that joins through [`Cluster::join_addr`] with `token`.
    pub async fn try_join_agent(&mut self, token: &str) -> Result<u64, String> {
        let addr = self.join_addr();
        self.try_start_agent(AgentStart::Join {
            addr,
            token: token.to_string(),
        })
        .await
    }

    /// Joins a new agent with the agent token and waits until it is registered and ready.
    pub async fn add_agent(&mut self) -> u64 {
        let token = self.agent_token.clone();
        let id = self
            .try_join_agent(&token)
            .await
            .unwrap_or_else(|e| panic!("a new agent could not join: {e}"));
        self.wait_for_agents_ready().await;
        id
    }

    pub async fn kill_agent(&mut self, id: u64) {
        let slot = self.agents.get_mut(&id).unwrap_or_else(|| panic!("unknown agent {id}"));
        let agent = slot
            .running
            .take()
            .unwrap_or_else(|| panic!("agent {id} is already killed"));
        agent.shutdown().await;
        tracing::info!(node = id, "harness: agent killed");
    }

    /// Starts a killed agent again on its data dir and port, without a token.
    pub async fn restart_agent(&mut self, id: u64) -> &Agent {
        let slot = self.agents.get(&id).unwrap_or_else(|| panic!("unknown agent {id}"));
        assert!(slot.running.is_none(), "agent {id} is running; kill it first");
        let cfg = self.agent_config(slot, AgentStart::Refuse);
        let deadline = Instant::now() + REBIND_FOR;
        let agent = loop {
            match Agent::start(cfg.clone()).await {
                Ok(a) => break a,
                Err(AgentError::Listen { ref source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restarting agent {id} failed: {}", error_chain(&e)),
            }
        };
        assert_eq!(agent.id(), id, "agent {id} came back with another identity");
        let slot = self.agents.get_mut(&id).expect("checked above");
        slot.running = Some(agent);
        tracing::info!(node = id, "harness: agent restarted");
        slot.running.as_ref().expect("just set")
    }

    /// Stops every node. Dropping the cluster without this is fine too: the test's runtime
    /// stops the tasks and the temporary directory goes away.
    pub async fn shutdown(mut self) {
        for id in self.agent_ids() {
            if let Some(agent) = self.agents.get_mut(&id).and_then(|a| a.running.take()) {
                agent.shutdown().await;
            }
        }
        for id in self.live_server_ids() {
            self.kill_server(id).await;
        }
    }

    // --- the network ---------------------------------------------------------------------------

    /// Drops every cluster message between the two groups, both ways.
    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        tracing::info!(?a, ?b, "harness: partition");
        self.filter.partition(a, b);
    }

    /// Drops every cluster message from and to `id`.
    pub fn isolate(&mut self, id: u64) {
        tracing::info!(node = id, "harness: isolate");
        self.isolated.insert(id);
        self.filter.isolate(id);
    }

    /// Drops messages from `from` to `to` only.
    pub fn block(&mut self, from: u64, to: u64) {
        self.filter.block(from, to);
    }

    /// Delays messages from `from` to `to`.
    pub fn delay(&mut self, from: u64, to: u64, by: Duration) {
        self.filter.delay(from, to, by);
    }

    /// Removes every network rule.
    pub fn heal(&mut self) {
        tracing::info!("harness: heal");
        self.isolated.clear();
        self.filter.heal();
    }

    // --- writes and reads ----------------------------------------------------------------------

    /// Writes a variable through the API of the running, connected servers in turn until one
    /// acknowledges it (a follower forwards to the leader).
    pub async fn put_var(&self, key: &str, value: &str) -> VarView {
        let ids = self.connected_server_ids();
        let clients: Vec<Client> = ids.iter().map(|id| self.client(*id)).collect();
        let req = VarPutRequest {
            value: value.to_string(),
            cas: None,
        };
        let mut turn = 0usize;
        let description = format!("a server of {ids:?} to acknowledge the write of {key}");
        wait_for(&description, self.settings.ready_timeout, async || {
            turn += 1;
            let client = &clients[turn % clients.len()];
            within(Duration::from_secs(3), client.put_var(key, &req))
                .await?
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// A variable as a server's own applied state holds it (no forwarding, no read barrier).
    pub fn local_var(&self, id: u64, key: &str) -> Option<String> {
        self.server(id)
            .state()
            .read(|s| s.vars.get(key).map(|v| v.value.clone()))
    }

    // --- invariants ----------------------------------------------------------------------------

    fn sample(&self) {
        for id in self.live_server_ids() {
            self.history.record(id, &self.metrics(id));
        }
    }

    /// No term has two leaders. Checked over every metrics update of every server since the
    /// cluster started (killed servers included) plus a fresh look at every running server.
    ///
    /// openraft (in its default mode) names a leader by (term, node id) and may briefly grant two
    /// candidates in one term; at most one of them can commit anything in it. So the check is on
    /// what matters: the applied log ids of a term all name one leader.
    pub fn check_single_leader_per_term(&self) {
        self.sample();
        let seen = self.history.lock();
        if !seen.single_leader_violations.is_empty() {
            panic!(
                "invariant violated: single leader per term\n{}\nleadership claims by term: {:?}",
                seen.single_leader_violations.join("\n"),
                seen.claims
            );
        }
    }

    /// Every server applied the same log id at the same index (state machine safety), and no
    /// server's applied index went backwards within one run of it.
    pub fn check_logs_agree(&self) {
        self.sample();
        let seen = self.history.lock();
        if !seen.log_violations.is_empty() {
            panic!(
                "invariant violated: applied logs agree\n{}",
                seen.log_violations.join("\n")
            );
        }
    }

    /// Every invariant the harness knows.
    pub fn check_invariants(&self) {
        self.check_single_leader_per_term();
        self.check_logs_agree();
    }
}
