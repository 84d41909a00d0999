//! Two-level scheduling on the leader, and the lifecycle of every task: the allocator and its
//! offers, frameworks, and what happens to a task from its launch to its end.
//!
//! The allocator and the offers live in the leader's memory only, as in Mesos; they are rebuilt
//! from the replicated state (agents, frameworks, tasks, roles, reservations) when a server
//! becomes leader, so offers of an old leader simply stop existing (their ids carry the leader's
//! epoch). Frameworks talk to [`Master`] through the in-process scheduler interface
//! ([`Master::subscribe`], [`Master::accept`], ...), which the Mesos HTTP API and the built-in
//! frameworks share. The task lifecycle (status updates from agents, reconciliation when an
//! agent registers, agents lost and back, kills and drains) lives here too, for every scheduler.
//!
//! The leader's work runs as drivers on the node: `allocator` (offers, timeouts, failovers;
//! woken by calls and state changes), `liveness` (agents that stop heartbeating) and `drains`.
//!
//! Locking: one `std::sync::Mutex` around [`Core`], never held across an await. The core decides;
//! the async functions here commit commands and talk to agents afterwards.
//!
//! Not here: the Mesos wire shapes (tepui-mesos-api), any built-in framework's own decisions
//! (tepui-marathon), Raft (the node's).

pub mod convert;
mod core;
pub mod events;
mod executors;
pub use executors::{message_too_large, ExecutorSpec, MAX_MESSAGE_BYTES};
pub mod http;
mod lifecycle;
pub use lifecycle::DirectLaunch;
mod liveness;
pub mod retention;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_allocator::{Filters, Resources, Role};
use tepui_node::drivers::{Activation, Driver, Outcome, Waker, Wakes};
use tepui_node::{now_ms, Error, ErrorKind, Node, WriteError};
use tepui_proto::agent::ServerToAgent;
use tepui_state::{ApplyError, Command, FrameworkRecord, TaskDef, TaskRecord, TaskState};
use tokio::sync::{mpsc, Notify};

use self::core::Core;
pub use self::core::{AgentAllocation, AllocationView, FrameworkAllocation, RoleAllocation};

/// Heartbeat events on every subscription (Mesos: 15 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// An unacknowledged status update is sent again this often (Mesos' agents start at 10 s).
const STATUS_RETRY: Duration = Duration::from_secs(10);
/// After a leader change every framework gets at least this long to re-subscribe, whatever its
/// failover timeout: it has to find the new leader first.
const LEADER_CHANGE_GRACE: Duration = Duration::from_secs(60);
/// How long a SUBSCRIBE waits for a newly elected leader's allocator.
const CORE_WAIT: Duration = Duration::from_secs(5);
/// Events a subscriber may have unread before it is disconnected as too slow.
const EVENT_BUFFER: usize = 4096;

/// How the master is set up.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// An agent not heard from for this long is marked lost.
    pub agent_timeout: Duration,
    /// How long ended tasks stay in the replicated state.
    pub retention: retention::Retention,
    /// The cluster's secrets key, to open a task's secrets when it launches.
    pub secrets: Option<Arc<tepui_secrets::Keyring>>,
}

/// What a framework says about itself when it subscribes.
#[derive(Clone, Debug, Default)]
pub struct FrameworkSpec {
    /// Set when re-subscribing.
    pub id: Option<String>,
    pub name: String,
    pub user: String,
    pub principal: Option<String>,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub failover_timeout_ms: u64,
    /// Roles to subscribe to with offers suppressed.
    pub suppressed_roles: Vec<String>,
    /// A framework built into tepui: it registers under its fixed `id` the first time.
    pub builtin: bool,
}

/// Events to a subscribed framework, in tepui's terms; the Mesos API translates them.
#[derive(Clone, Debug)]
pub enum SchedulerEvent {
    Subscribed {
        framework_id: String,
    },
    Offers(Vec<OfferView>),
    Rescind {
        offer_id: String,
    },
    Update(StatusView),
    /// An agent was removed (Mesos' FAILURE with an agent id).
    AgentFailure {
        agent_id: u64,
    },
    /// The subscription is over (for example another connection took it over).
    Error {
        message: String,
    },
    Heartbeat,
    /// A framework message from one of its executors.
    Message {
        agent_id: u64,
        executor_id: String,
        data: Vec<u8>,
    },
    /// One of its executors ended (Mesos' FAILURE with an executor id).
    ExecutorFailure {
        agent_id: u64,
        executor_id: String,
        /// Its exit code, or 128 plus the signal, when known.
        status: Option<i32>,
    },
}

#[derive(Clone, Debug)]
pub struct OfferView {
    pub id: String,
    pub framework_id: String,
    pub agent_id: u64,
    pub hostname: String,
    pub role: Role,
    pub resources: Resources,
    pub attributes: tepui_allocator::Attributes,
}

/// One status update as a framework sees it.
#[derive(Clone, Debug)]
pub struct StatusView {
    pub task_id: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub message: String,
    pub agent_id: Option<u64>,
    /// Set when the framework must acknowledge the update.
    pub uuid: Option<String>,
    pub timestamp_ms: u64,
    /// The leader made it (not the agent).
    pub from_master: bool,
    /// What the task's health checks last said.
    pub healthy: Option<bool>,
}

/// One task of a LAUNCH, already checked and translated by the caller, or refused with `invalid`.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub task_id: String,
    pub name: String,
    pub agent_id: Option<u64>,
    pub def: TaskDef,
    /// What it takes from the offer, exactly.
    pub resources: Resources,
    /// Why the task is refused before it reaches the offer (TASK_ERROR, REASON_TASK_INVALID).
    pub invalid: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The framework's executor that runs the task (none: it runs in a container of its own).
    pub executor: Option<ExecutorSpec>,
}

#[derive(Clone, Debug)]
pub enum Operation {
    Launch(Vec<LaunchSpec>),
    /// A task group (Mesos' LAUNCH_GROUP): its tasks launch together on one executor, all or
    /// none. With a default executor (`ExecutorSpec::default_executor`) the agent runs each
    /// task in a container of its own, all in one network namespace and sandbox, and kills
    /// the group when one of them fails. The tasks' own `executor` is not used, except for
    /// the `task_info` a task's executor is given (`Null` when none).
    LaunchGroup {
        executor: ExecutorSpec,
        tasks: Vec<LaunchSpec>,
    },
    /// Dynamically reserve these (reserved-form) resources from the offer.
    Reserve(Resources),
    /// Give these reserved resources back to the unreserved pool.
    Unreserve(Resources),
}

/// A live subscription: its id (Mesos-Stream-Id) and its events.
pub struct Subscription {
    pub framework_id: String,
    pub stream_id: String,
    pub events: Events,
}

/// The events of a subscription. Dropping it ends the subscription: the allocator is woken, so
/// that the framework is marked disconnected at once.
pub struct Events {
    rx: mpsc::Receiver<SchedulerEvent>,
    _gone: WakeOnDrop,
}

impl Events {
    /// The next event; `None` once the subscription is over (replaced, or the leader gone).
    pub async fn recv(&mut self) -> Option<SchedulerEvent> {
        self.rx.recv().await
    }

    /// An event already queued, if there is one.
    pub fn try_recv(&mut self) -> Option<SchedulerEvent> {
        self.rx.try_recv().ok()
    }
}

/// Wakes the allocator when dropped.
struct WakeOnDrop(Waker);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake();
    }
}

/// A refused call's error: the request is wrong.
fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, "invalid_request", message)
}

fn not_subscribed(framework: &str) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "not_subscribed",
        format!("framework {framework} is not subscribed; SUBSCRIBE first"),
    )
}

/// A framework torn down or failed over past its timeout.
fn removed(framework: &str) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "framework_removed",
        format!("framework {framework} was removed (torn down or failed over past its timeout)"),
    )
}

struct Shared {
    node: Node,
    config: MasterConfig,
    core: Mutex<Option<Core>>,
    /// Notified whenever a core is built.
    core_built: Notify,
    /// Wakes the allocator driver.
    allocate: Waker,
    /// Frameworks built into tepui, by id, with how their work is removed instead.
    builtin: Mutex<BTreeMap<String, String>>,
}

/// The leader's half of two-level scheduling and the task lifecycle. Every server has one; only
/// the leader's holds a core. Cheap to clone.
#[derive(Clone)]
pub struct Master {
    shared: Arc<Shared>,
}

impl Master {
    pub fn new(node: Node, config: MasterConfig) -> Master {
        Master {
            shared: Arc::new(Shared {
                node,
                config,
                core: Mutex::new(None),
                core_built: Notify::new(),
                allocate: Waker::default(),
                builtin: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Starts the master's drivers on its node.
    pub fn start(&self) {
        let node = self.node();
        node.spawn_driver(
            "allocator",
            AllocatorDriver { master: self.clone() },
            Wakes {
                waker: self.shared.allocate.clone(),
                state_changes: true,
            },
        );
        node.spawn_driver("liveness", liveness::Liveness::new(self.clone()), Wakes::default());
        node.spawn_driver(
            "drains",
            liveness::Drains { master: self.clone() },
            Wakes {
                state_changes: true,
                ..Wakes::default()
            },
        );
        node.spawn_driver(
            "task_gc",
            retention::TaskGc {
                master: self.clone(),
                last: None,
            },
            Wakes {
                state_changes: true,
                ..Wakes::default()
            },
        );
    }

    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    pub fn config(&self) -> &MasterConfig {
        &self.shared.config
    }

    /// Reserves `id` for a framework built into tepui: nobody else may subscribe with it or tear
    /// it down; `removal` says how its work is removed instead.
    pub fn register_builtin(&self, id: &str, removal: &str) {
        self.shared
            .builtin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), removal.to_string());
    }

    fn builtin_removal(&self, id: &str) -> Option<String> {
        self.shared
            .builtin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> Result<T, Error> {
        let mut guard = self.shared.core.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map(f).ok_or_else(Error::not_leader)
    }

    /// Asks for an allocation now.
    pub fn kick(&self) {
        self.shared.allocate.wake();
    }

    /// What the allocator holds now, for the operator endpoints; `None` off the leader.
    pub fn view(&self) -> Option<AllocationView> {
        self.with_core(|c| c.view()).ok()
    }

    /// SUBSCRIBE: registers (or re-registers) the framework, replacing any previous
    /// subscription of it, and returns the stream its events arrive on.
    pub async fn subscribe(&self, spec: FrameworkSpec) -> Result<Subscription, Error> {
        if spec.roles.is_empty() {
            return Err(invalid("a framework needs at least one role"));
        }
        if !spec.builtin {
            if let Some(id) = spec.id.as_deref().filter(|id| self.builtin_removal(id).is_some()) {
                return Err(invalid(format!(
                    "framework id {id} belongs to a scheduler built into tepui"
                )));
            }
        }
        for r in spec.roles.iter().chain(&spec.suppressed_roles) {
            Role::new(r).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(bad) = spec.suppressed_roles.iter().find(|r| !spec.roles.contains(r)) {
            return Err(invalid(format!(
                "suppressed role {bad:?} is not one of the framework's roles"
            )));
        }
        let node = self.node();
        node.linearize().await?;
        self.wait_core().await?;
        let now = now_ms();
        let record = node.read(|s| -> Result<FrameworkRecord, Error> {
            let existing = match &spec.id {
                Some(id) if spec.builtin => s.frameworks.get(id),
                Some(id) => Some(s.frameworks.get(id).ok_or_else(|| removed(id))?),
                None => None,
            };
            Ok(FrameworkRecord {
                id: spec
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", cluster_prefix(s), hex::encode(rand::random::<[u8; 6]>()))),
                name: spec.name.clone(),
                user: spec.user.clone(),
                principal: spec.principal.clone(),
                hostname: spec.hostname.clone(),
                webui_url: spec.webui_url.clone(),
                roles: spec.roles.clone(),
                capabilities: spec.capabilities.clone(),
                failover_timeout_ms: spec.failover_timeout_ms,
                registered_at: existing.map(|e| e.registered_at).unwrap_or(now),
                reregistered_at: existing.map(|_| now),
                connected: true,
                disconnected_at: None,
            })
        })?;
        node.write(Command::SubscribeFramework {
            framework: record.clone(),
        })
        .await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let stream_id = hex::encode(rand::random::<[u8; 16]>());
        // SUBSCRIBED comes first: the core may send on the channel as soon as it has it.
        let _ = tx.try_send(SchedulerEvent::Subscribed {
            framework_id: record.id.clone(),
        });
        let previous = node.read(|s| {
            self.with_core(|c| {
                c.sync(s);
                let previous = c.subscribe(&record, &spec.suppressed_roles, stream_id.clone(), tx.clone())?;
                // Updates it never acknowledged go again (after its own restart or a leader change).
                for t in s.unacknowledged(&record.id) {
                    c.send_status(&record.id, status_of(t, &record));
                }
                Ok::<_, Error>(previous)
            })
        })??;
        if let Some(old) = previous {
            let _ = old.try_send(SchedulerEvent::Error {
                message: "Framework failed over: another connection subscribed with its id".into(),
            });
        }
        tracing::info!(framework = %record.id, name = %record.name, roles = ?record.roles, "framework subscribed");
        self.kick();
        Ok(Subscription {
            framework_id: record.id,
            stream_id,
            events: Events {
                rx,
                _gone: WakeOnDrop(self.shared.allocate.clone()),
            },
        })
    }

    /// A leader elected a moment ago builds its core first: wait for it (briefly).
    async fn wait_core(&self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + CORE_WAIT;
        loop {
            let built = self.shared.core_built.notified();
            tokio::pin!(built);
            built.as_mut().enable();
            if self.with_core(|_| ()).is_ok() {
                return Ok(());
            }
            if !self.node().is_leader() {
                return Err(Error::not_leader());
            }
            if tokio::time::timeout_at(deadline, built).await.is_err() {
                return Err(Error::not_leader());
            }
        }
    }

    /// Checks that a call comes from the framework's current subscription.
    pub fn check_stream(&self, framework: &str, stream_id: &str) -> Result<(), Error> {
        self.with_core(|c| c.check_stream(framework, stream_id))?
    }

    /// ACCEPT: performs the operations on the offers; tasks that cannot be launched get a
    /// TASK_ERROR or TASK_DROPPED/TASK_LOST update instead, as Mesos does. Every task and
    /// reservation of the call is committed in one write.
    pub async fn accept(
        &self,
        framework: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        filters: Filters,
    ) -> Result<(), Error> {
        let node = self.node();
        let now = now_ms();
        let plan = node.read(|s| self.with_core(|c| c.accept(s, framework, offer_ids, operations, filters, now)))??;
        let reservations = plan.reservations.len();
        // A task group's tasks share one command (and its answer).
        let (launch_cmds, launch_index) = plan.commands();
        let cmds: Vec<Command> = plan
            .reservations
            .iter()
            .map(|(agent, resources)| Command::SetReservations {
                agent: *agent,
                resources: resources.clone(),
            })
            .chain(launch_cmds)
            .collect();
        let answers = node.write_batch(cmds).await;
        // New executors that no launch recorded give their resources back.
        let _ = node.read(|s| self.with_core(|c| c.executors_committed(s, &plan)));
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                // Nothing is known to be committed: the launches are dropped, their resources
                // free again once the core sees no task (or at once, for a refusal).
                for t in &plan.launches {
                    let message = format!("the task was not launched: {e}");
                    self.with_core(|c| {
                        c.launch_failed(&t.id);
                        c.send_status(
                            framework,
                            refused(
                                &t.id,
                                Some(t.agent_id),
                                TaskState::TaskDropped,
                                "REASON_INVALID_OFFERS",
                                message,
                            ),
                        );
                    })
                    .ok();
                }
                self.kick();
                return Ok(());
            }
        };
        let (reserved, launch_answers) = answers.split_at(reservations);
        let launched: Vec<&Result<_, ApplyError>> = launch_index.iter().map(|&i| &launch_answers[i]).collect();
        for ((agent, _), answer) in plan.reservations.iter().zip(reserved) {
            if let Err(e) = answer {
                tracing::warn!(agent, error = %e, "could not record reservations");
            }
        }
        let mut sent = 0;
        for (record, answer) in plan.launches.iter().zip(launched) {
            match answer {
                Ok(_) => {
                    self.with_core(|c| c.launched(&record.id)).ok();
                    let delivered = node
                        .agents()
                        .send(
                            record.agent_id,
                            &ServerToAgent::Launch {
                                task: self.launch_of(record),
                            },
                        )
                        .await;
                    sent += usize::from(delivered);
                    tracing::debug!(task = %record.id, framework, agent = record.agent_id, delivered, "task launched");
                }
                Err(e) => {
                    let (state, reason) = match e {
                        ApplyError::TaskExists { .. } => (TaskState::TaskError, "REASON_TASK_INVALID"),
                        _ => (TaskState::TaskDropped, "REASON_INVALID_OFFERS"),
                    };
                    let message = format!("the task was not launched: {e}");
                    self.with_core(|c| {
                        c.launch_failed(&record.id);
                        c.send_status(
                            framework,
                            refused(&record.id, Some(record.agent_id), state, reason, message),
                        );
                    })
                    .ok();
                }
            }
        }
        if !plan.launches.is_empty() {
            tracing::info!(
                framework,
                tasks = plan.launches.len(),
                delivered = sent,
                "tasks launched"
            );
        }
        self.kick();
        Ok(())
    }

    pub fn decline(&self, framework: &str, offer_ids: &[String], filters: Filters) -> Result<(), Error> {
        self.with_core(|c| c.decline(framework, offer_ids, filters, now_ms()))?
    }

    pub fn revive(&self, framework: &str, roles: &[String]) -> Result<(), Error> {
        self.with_core(|c| c.revive(framework, roles))??;
        self.kick();
        Ok(())
    }

    pub fn suppress(&self, framework: &str, roles: &[String]) -> Result<(), Error> {
        self.with_core(|c| c.suppress(framework, roles))?
    }

    /// KILL: the task is killed with its grace period; an unknown task gets a reconciliation
    /// answer instead.
    pub async fn kill_for(&self, framework: &str, task_id: &str, grace_ms: Option<u64>) -> Result<(), Error> {
        let owned = self.node().read(|s| {
            s.tasks
                .get(task_id)
                .filter(|t| t.framework_id == framework)
                .map(|t| t.state.is_terminal())
        });
        match owned {
            Some(false) => {
                self.kill_within(task_id, grace_ms).await?;
                Ok(())
            }
            _ => self.reconcile(framework, &[task_id.to_string()]),
        }
    }

    /// ACKNOWLEDGE: the framework has the update; it is not sent again.
    pub async fn acknowledge(&self, framework: &str, task_id: &str, uuid: &str) -> Result<(), Error> {
        let node = self.node();
        let belongs = node.read(|s| s.tasks.get(task_id).map(|t| t.framework_id == framework));
        if belongs != Some(true) {
            return Err(invalid(format!(
                "framework {framework} has no task {task_id:?} to acknowledge"
            )));
        }
        match node
            .write(Command::AcknowledgeTask {
                task_id: task_id.to_string(),
                uuid: uuid.to_string(),
            })
            .await
        {
            Ok(_) => Ok(()),
            // An acknowledgement of an older update: harmless, the newer one is still pending.
            Err(WriteError::Rejected(ApplyError::StaleAcknowledgement { .. })) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// ACKNOWLEDGE of many updates, committed in one write; returns those not recorded, with
    /// why.
    pub async fn acknowledge_all(&self, framework: &str, acks: &[(String, String)]) -> Vec<(String, Error)> {
        let node = self.node();
        let (mine, mut refused): (Vec<_>, Vec<_>) = node.read(|s| {
            acks.iter()
                .cloned()
                .partition(|(task, _)| s.tasks.get(task).is_some_and(|t| t.framework_id == framework))
        });
        let mut failed: Vec<(String, Error)> = refused
            .drain(..)
            .map(|(task, _)| {
                let e = invalid(format!("framework {framework} has no task {task:?} to acknowledge"));
                (task, e)
            })
            .collect();
        let cmds = mine
            .iter()
            .map(|(task_id, uuid)| Command::AcknowledgeTask {
                task_id: task_id.clone(),
                uuid: uuid.clone(),
            })
            .collect();
        match node.write_batch(cmds).await {
            Ok(answers) => {
                for ((task, _), answer) in mine.into_iter().zip(answers) {
                    match answer {
                        Ok(_) | Err(ApplyError::StaleAcknowledgement { .. }) => {}
                        Err(e) => failed.push((task, e.into())),
                    }
                }
            }
            Err(e) => failed.extend(mine.into_iter().map(|(task, _)| (task, Error::from(e.clone())))),
        }
        failed
    }

    /// RECONCILE: the latest state of the named tasks (all live ones when `task_ids` is empty),
    /// as updates with reason REASON_RECONCILIATION that need no acknowledgement.
    pub fn reconcile(&self, framework: &str, task_ids: &[String]) -> Result<(), Error> {
        self.node()
            .read(|s| self.with_core(|c| c.reconcile(s, framework, task_ids)))?
    }

    /// TEARDOWN: the framework is removed and its tasks killed.
    pub async fn teardown(&self, framework: &str) -> Result<(), Error> {
        if let Some(removal) = self.builtin_removal(framework) {
            return Err(invalid(format!(
                "{framework} is built into tepui and cannot be torn down; {removal}"
            )));
        }
        self.remove_framework(framework, "teardown").await
    }

    /// `/v1/tasks` takes resources directly (never those of an offer, which are rescinded
    /// first). `false`: they are not free. Before this leader's core exists the state's own
    /// fit check is the only guard, and the next sync accounts the task.
    fn take_for_operator(&self, task_id: &str, agent: u64, resources: &Resources) -> bool {
        self.with_core(|c| c.take_for_operator(task_id, agent, resources, now_ms()))
            .unwrap_or(true)
    }

    /// [`Master::take_for_operator`] for a built-in framework's own placement (`""`: the
    /// operator's), under its id and `role`.
    fn take_direct(
        &self,
        framework: &str,
        role: &str,
        task_id: &str,
        agent: u64,
        resources: &Resources,
    ) -> Result<bool, Error> {
        if framework.is_empty() {
            return Ok(self.take_for_operator(task_id, agent, resources));
        }
        match self.with_core(|c| c.take_for_framework(framework, role, task_id, agent, resources, now_ms())) {
            Ok(taken) => taken,
            // No core yet: as for the operator, the state's fit check guards alone, and the
            // core accounts the task when it is built.
            Err(_) if self.node().read(|s| s.frameworks.contains_key(framework)) => Ok(true),
            Err(_) => Err(not_subscribed(framework)),
        }
    }

    /// The outcome of committing a task the operator took resources for.
    fn operator_launch(&self, task_id: &str, committed: bool) {
        let _ = self.with_core(|c| {
            if committed {
                c.launched(task_id)
            } else {
                c.launch_failed(task_id)
            }
        });
    }

    /// UPDATE_WEIGHTS: weights (> 0) by role, committed.
    pub async fn update_weights(&self, weights: &[(String, f64)]) -> Result<(), Error> {
        let mut milli = Vec::new();
        for (role, w) in weights {
            Role::new(role).map_err(|e| invalid(e.to_string()))?;
            let w = tepui_allocator::Scalar::from_f64(*w)
                .filter(|s| !s.is_zero())
                .ok_or_else(|| invalid(format!("the weight of role {role} must be a positive number")))?;
            milli.push((role.clone(), w.milli()));
        }
        self.node().write(Command::UpdateWeights { weights: milli }).await?;
        self.kick();
        Ok(())
    }

    /// UPDATE_QUOTA: a role's guarantees and limits (`cpus:4;mem:1024`). Without `force`, a
    /// limit below what the role already consumes is refused.
    pub async fn update_quota(
        &self,
        role: &str,
        guarantees: &tepui_allocator::Quantities,
        limits: &tepui_allocator::Quantities,
        force: bool,
    ) -> Result<(), Error> {
        let r = Role::new(role).map_err(|e| invalid(e.to_string()))?;
        self.with_core(|c| c.check_quota(&r, guarantees, limits, force))??;
        let text = |q: &tepui_allocator::Quantities| {
            if q.iter().next().is_none() {
                String::new()
            } else {
                q.to_string()
            }
        };
        self.node()
            .write(Command::SetQuota {
                role: role.to_string(),
                guarantees: text(guarantees),
                limits: text(limits),
            })
            .await?;
        self.kick();
        Ok(())
    }

    /// RESERVE_RESOURCES / UNRESERVE_RESOURCES by an operator: the resources must be
    /// unallocated on the agent (outstanding offers of them are rescinded first).
    pub async fn operator_reservation(&self, agent: u64, resources: &Resources, reserve: bool) -> Result<(), Error> {
        let total = self.with_core(|c| c.operator_reservation(agent, resources, reserve))??;
        self.node()
            .write(Command::SetReservations {
                agent,
                resources: convert::text(&convert::dynamic_part(&total)),
            })
            .await?;
        self.kick();
        Ok(())
    }

    /// A task's status changed in the state: its framework hears of it.
    fn task_changed(&self, task_id: &str) {
        let _ = self.node().read(|s| {
            let t = s.tasks.get(task_id)?;
            let f = s.frameworks.get(&t.framework_id)?;
            let status = status_of(t, f);
            self.with_core(|c| c.send_status(&f.id, status)).ok()
        });
    }

    /// Removes a framework (teardown or failover timeout) and kills its tasks.
    async fn remove_framework(&self, framework: &str, why: &str) -> Result<(), Error> {
        let node = self.node();
        let live: Vec<(String, u64)> = node.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.framework_id == framework && !t.state.is_terminal())
                .map(|t| (t.id.clone(), t.agent_id))
                .collect()
        });
        match node
            .write(Command::RemoveFramework {
                id: framework.to_string(),
                now: now_ms(),
            })
            .await
        {
            Ok(_) => {}
            Err(WriteError::Rejected(ApplyError::UnknownFramework { .. })) => return Err(removed(framework)),
            Err(e) => return Err(e.into()),
        }
        for (task_id, agent) in live {
            let kill = ServerToAgent::Kill {
                task_id,
                grace_ms: None,
            };
            node.agents().send(agent, &kill).await;
        }
        self.shutdown_executors_of(framework).await;
        self.with_core(|c| c.forget_framework(framework)).ok();
        tracing::info!(framework, why, "framework removed; its tasks are being killed");
        self.kick();
        Ok(())
    }
}

fn cluster_prefix(s: &tepui_state::State) -> String {
    s.cluster
        .as_ref()
        .map(|c| c.cluster_id.chars().take(8).collect())
        .unwrap_or_else(|| "tepui".into())
}

/// A status update of a task never created.
fn refused(task_id: &str, agent: Option<u64>, state: TaskState, reason: &str, message: String) -> StatusView {
    StatusView {
        task_id: task_id.to_string(),
        state,
        reason: Some(reason.to_string()),
        message,
        agent_id: agent,
        uuid: None,
        timestamp_ms: now_ms(),
        from_master: true,
        healthy: None,
    }
}

/// The task's latest status as its framework should see it: partition-unaware frameworks get
/// TASK_LOST where the others get TASK_UNREACHABLE.
pub fn status_of(t: &TaskRecord, f: &FrameworkRecord) -> StatusView {
    let state = if f.partition_aware() {
        t.state
    } else {
        match t.state {
            TaskState::TaskUnreachable
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
            | TaskState::TaskUnknown => TaskState::TaskLost,
            s => s,
        }
    };
    let from_master = matches!(
        t.reason.as_deref(),
        Some("REASON_SLAVE_REMOVED" | "REASON_RECONCILIATION" | "REASON_FRAMEWORK_REMOVED" | "REASON_INVALID_OFFERS")
    );
    StatusView {
        task_id: t.id.clone(),
        state,
        reason: t.reason.clone(),
        message: t.message.clone(),
        agent_id: Some(t.agent_id),
        uuid: t.last_update_uuid.clone(),
        timestamp_ms: t.updated_at,
        from_master,
        healthy: t.healthy,
    }
}

/// The definition of a task that a framework has not filled in yet: nothing to run, Mesos'
/// default grace period.
pub fn empty_def() -> TaskDef {
    TaskDef {
        kill_grace_ms: 3_000,
        ..TaskDef::default()
    }
}

/// The leader's scheduling work: builds the core when this server starts leading, makes
/// offers, ends stale ones, notices disconnected frameworks, tears down those past their
/// failover timeout, heartbeats, and resends unacknowledged updates. It runs when woken (a
/// call, a subscription gone) or when the state changes, and otherwise only at the next
/// deadline the core keeps.
struct AllocatorDriver {
    master: Master,
}

impl Driver for AllocatorDriver {
    async fn activate(&mut self, why: Activation) -> Outcome {
        let master = &self.master;
        let node = master.node();
        if why == Activation::Leading {
            let term = node.leadership().term;
            let core = node.read(|s| Core::new(now_ms(), s));
            *master.shared.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
            master.shared.core_built.notify_waiters();
            tracing::info!(term, "leading: allocator rebuilt from the replicated state");
        }
        let now = now_ms();
        let out = node
            .read(|s| {
                master.with_core(|c| {
                    let out = c.tick(s, now, HEARTBEAT_INTERVAL, STATUS_RETRY, LEADER_CHANGE_GRACE);
                    let next = c.next_deadline(s, now, HEARTBEAT_INTERVAL, STATUS_RETRY, LEADER_CHANGE_GRACE);
                    (out, next)
                })
            })
            .map_err(|e| e.to_string())?;
        let (out, next) = out;
        for (framework, at) in out.disconnected {
            tracing::info!(framework = %framework, "framework disconnected; its failover timeout runs");
            let _ = node
                .write(Command::DisconnectFramework {
                    id: framework.clone(),
                    now: at,
                })
                .await;
        }
        for framework in out.timed_out {
            if let Err(e) = master.remove_framework(&framework, "failover timeout").await {
                tracing::debug!(framework = %framework, error = %e, "could not remove a framework");
            }
        }
        Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1))))
    }

    fn step_down(&mut self) {
        let dropped = self.master.shared.core.lock().unwrap_or_else(|e| e.into_inner()).take();
        if dropped.is_some() {
            tracing::info!("no longer leading: offers and subscriptions end");
        }
    }
}
