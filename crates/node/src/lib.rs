//! The narrow handle through which a server's features reach their node.
//!
//! A feature (two-level scheduling, the Mesos APIs, services, and the ones to come) gets a
//! [`Node`] and nothing else of the server: it writes commands to the replicated state (one or a
//! batch, committed by Raft), reads the applied state (linearizably when it must), watches the
//! applied index and the leadership, talks to agents over their streams ([`agents::AgentHub`]),
//! and runs its leader work as registered [`drivers`]. Its errors are the one domain
//! [`Error`], which each API dialect renders in its own shape.
//!
//! This crate does not know Raft, the cluster port or any feature: the server implements
//! [`Consensus`] and builds the node; `testing` (feature `test-support`) builds one over a
//! state with no Raft at all, so handlers and loops are tested without a cluster.

pub mod agents;
pub mod drivers;
mod error;
pub mod http;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use error::{Error, ErrorKind};
pub use tepui_common::{now_ms, Millis};
use tepui_state::{ApplyError, Command, Response, State};
pub use tepui_store::StateReader;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentHub;
use crate::drivers::Drivers;

/// What a write to the replicated state can end in, short of an answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this server is not the leader")]
    NotLeader { leader: Option<u64> },
    #[error("{0}")]
    Rejected(ApplyError),
    #[error("raft: {0}")]
    Raft(String),
    /// The command needs a newer cluster protocol than a server speaks (an upgrade is under
    /// way): it was not written.
    #[error("{0}")]
    Gated(tepui_state::Gated),
}

/// Who leads, in which term, as this server sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<u64>,
    pub term: u64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The replicated log under a node: the server's Raft, or a state applied in place in tests.
pub trait Consensus: Send + Sync + 'static {
    /// Commits the commands in order and answers each (refusals are answers:
    /// `Response::Rejected`). A long list may take several log entries; each command is
    /// applied once.
    fn write(&self, cmds: Vec<Command>) -> BoxFuture<'_, Result<Vec<Response>, WriteError>>;

    /// Resolves once this leader has confirmed it still leads and applied everything committed
    /// before the call: a read after it sees every acknowledged write.
    fn linearize(&self) -> BoxFuture<'_, Result<(), WriteError>>;
}

/// Where this server is and what it is called.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
    /// The advertised cluster port address (`host:port`).
    pub cluster_addr: String,
    /// The advertised HTTP API address (`host:port`).
    pub http_addr: String,
    /// When this server process started (Unix ms).
    pub started_at: Millis,
}

struct Parts {
    info: NodeInfo,
    consensus: Box<dyn Consensus>,
    state: StateReader,
    leadership: watch::Receiver<Leadership>,
    agents: AgentHub,
    drivers: Drivers,
    metrics: tepui_metrics::Registry,
    shutdown: CancellationToken,
}

/// A server node as its features see it. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    parts: Arc<Parts>,
}

impl Node {
    /// A node over `consensus`, whose applied state `state` reads and whose leadership
    /// `leadership` follows.
    pub fn new(
        info: NodeInfo,
        consensus: impl Consensus,
        state: StateReader,
        leadership: watch::Receiver<Leadership>,
    ) -> Node {
        Node {
            parts: Arc::new(Parts {
                info,
                consensus: Box::new(consensus),
                state,
                leadership,
                agents: AgentHub::default(),
                drivers: Drivers::default(),
                metrics: tepui_metrics::Registry::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn id(&self) -> u64 {
        self.parts.info.id
    }

    pub fn info(&self) -> &NodeInfo {
        &self.parts.info
    }

    /// Commits one command and returns its answer; a refusal is `WriteError::Rejected`.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        let mut answers = self.parts.consensus.write(vec![cmd]).await?;
        match answers.pop() {
            Some(Response::Rejected(e)) => Err(WriteError::Rejected(e)),
            Some(r) => Ok(r),
            None => Err(WriteError::Raft("no answer to a write".into())),
        }
    }

    /// Commits the commands in order, as few log entries as possible (one up to
    /// `tepui_state::MAX_BATCH` commands), and answers each: a refusal of one does not stop the
    /// others.
    pub async fn write_batch(&self, cmds: Vec<Command>) -> Result<Vec<Result<Response, ApplyError>>, WriteError> {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        let count = cmds.len();
        let answers = self.parts.consensus.write(cmds).await?;
        if answers.len() != count {
            return Err(WriteError::Raft(format!(
                "{} answers to a batch of {count} commands",
                answers.len()
            )));
        }
        Ok(answers
            .into_iter()
            .map(|r| match r {
                Response::Rejected(e) => Err(e),
                other => Ok(other),
            })
            .collect())
    }

    /// See [`Consensus::linearize`].
    pub async fn linearize(&self) -> Result<(), WriteError> {
        self.parts.consensus.linearize().await
    }

    /// Runs `f` on the applied state; keep it short, applies wait for it.
    /// A reader of the applied state that does not hold the node (for `/metrics` collectors,
    /// which the node holds).
    pub fn reader(&self) -> StateReader {
        self.parts.state.clone()
    }

    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.parts.state.read(f)
    }

    /// [`Node::linearize`], then [`Node::read`].
    pub async fn read_linearized<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, WriteError> {
        self.linearize().await?;
        Ok(self.read(f))
    }

    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.parts.state.applied_index()
    }

    /// A watch of the applied index: it changes with every applied entry.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.parts.state.subscribe()
    }

    /// Resolves once the state machine has applied `index` or more.
    pub async fn wait_applied(&self, index: u64) {
        self.parts.state.wait_applied(index).await
    }

    pub fn leadership(&self) -> Leadership {
        *self.parts.leadership.borrow()
    }

    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.parts.leadership.clone()
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.leadership().leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.id())
    }

    /// The streams of the agents connected to this server (when it leads).
    /// The collectors of this server's `/metrics`: each feature registers its own families.
    pub fn metrics(&self) -> &tepui_metrics::Registry {
        &self.parts.metrics
    }

    pub fn agents(&self) -> &AgentHub {
        &self.parts.agents
    }

    /// The registry of this server's background drivers.
    pub fn drivers(&self) -> &Drivers {
        &self.parts.drivers
    }

    /// A follower of this node's applied state and leadership: for loops that rebuild
    /// something from the state (DNS records, the gateway's table) after every change, at
    /// most once per interval.
    pub fn changes(&self) -> StateChanges {
        StateChanges {
            applied: self.watch_applied(),
            leadership: self.watch_leadership(),
            shutdown: self.shutdown_token().clone(),
        }
    }

    /// Cancelled when the server shuts down; loops of features end with it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.parts.shutdown
    }

    /// Ends every driver and loop that watches [`Node::shutdown_token`].
    pub fn shut_down(&self) {
        self.parts.shutdown.cancel();
    }
}

/// See [`Node::changes`].
pub struct StateChanges {
    applied: watch::Receiver<u64>,
    leadership: watch::Receiver<Leadership>,
    shutdown: CancellationToken,
}

impl StateChanges {
    /// Marks what is there now as seen: call before reading the state for a build.
    pub fn mark_seen(&mut self) {
        self.applied.borrow_and_update();
        self.leadership.borrow_and_update();
    }

    /// Waits for the next change of the applied state or the leadership, then until at least
    /// `min_interval` after `last_build` began (a burst of changes costs one build per
    /// interval), and, for a build that took longer than a tenth of that, until
    /// [`drivers::REST`] times its length after it ended (as for drivers: a tenth of a core at
    /// most while changes keep coming). Call it right after the build; false once the node
    /// shuts down.
    pub async fn next(&mut self, last_build: std::time::Instant, min_interval: std::time::Duration) -> bool {
        let took = last_build.elapsed();
        let until = (last_build + min_interval).max(last_build + took + (took * drivers::REST).min(drivers::MAX_REST));
        tokio::select! {
            _ = self.shutdown.cancelled() => return false,
            r = self.applied.changed() => if r.is_err() { return false },
            r = self.leadership.changed() => if r.is_err() { return false },
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(until.into()) => true,
        }
    }
}
