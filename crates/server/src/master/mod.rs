//! Two-level scheduling on the leader: the allocator, resource offers and frameworks.
//!
//! The allocator and the offers live in the leader's memory only, as in Mesos; they are rebuilt
//! from the replicated state (agents, frameworks, tasks, roles, reservations) when a server
//! becomes leader, so offers of an old leader simply stop existing (their ids carry the leader's
//! epoch). Frameworks talk to [`Master`] through the in-process scheduler interface
//! ([`Master::subscribe`], [`Master::accept`], ...), which the Mesos HTTP API
//! (`scheduler_api`) and the built-in frameworks share.
//!
//! Locking: one `std::sync::Mutex` around [`Core`], never held across an await. The core decides;
//! the async functions here commit commands and talk to agents afterwards.

pub(crate) mod convert;
mod core;
pub(crate) mod operator;
pub(crate) mod scheduler_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_allocator::{Filters, Resources, Role};
use tepui_proto::agent::ServerToAgent;
use tepui_state::{ApplyError, Command, FrameworkRecord, TaskDef, TaskRecord, TaskState};
use tokio::sync::{mpsc, Notify};

pub(crate) use self::core::{AllocationView, Core};
use crate::node::{Inner, WriteError};
use crate::now_ms;

/// How often offers are made when nothing asks for an allocation sooner (Mesos:
/// `--allocation_interval`, 1 s).
const ALLOCATION_INTERVAL: Duration = Duration::from_secs(1);
/// The leader's loop tick: disconnects, offer timeouts, failover timeouts.
const TICK: Duration = Duration::from_millis(200);
/// Heartbeat events on every subscription (Mesos: 15 s).
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// An unacknowledged status update is sent again this often (Mesos' agents start at 10 s).
const STATUS_RETRY: Duration = Duration::from_secs(10);
/// After a leader change every framework gets at least this long to re-subscribe, whatever its
/// failover timeout: it has to find the new leader first.
const LEADER_CHANGE_GRACE: Duration = Duration::from_secs(60);
/// How long a SUBSCRIBE waits for a newly elected leader's allocator.
const CORE_WAIT: Duration = Duration::from_secs(5);
/// Events a subscriber may have unread before it is disconnected as too slow.
const EVENT_BUFFER: usize = 4096;

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
}

#[derive(Clone, Debug)]
pub enum Operation {
    Launch(Vec<LaunchSpec>),
    /// Dynamically reserve these (reserved-form) resources from the offer.
    Reserve(Resources),
    /// Give these reserved resources back to the unreserved pool.
    Unreserve(Resources),
}

/// Why a scheduler call is refused outright.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("this server is not the leader")]
    NotLeader,
    #[error("framework {0} is not subscribed; SUBSCRIBE first")]
    NotSubscribed(String),
    #[error("the stream id {given:?} is not framework {framework}'s current subscription")]
    WrongStream { framework: String, given: String },
    #[error("framework {0} was removed (torn down or failed over past its timeout)")]
    Removed(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A live subscription: its id (Mesos-Stream-Id) and its events.
pub struct Subscription {
    pub framework_id: String,
    pub stream_id: String,
    pub events: mpsc::Receiver<SchedulerEvent>,
}

/// The leader's half of two-level scheduling. Every server has one; only the leader's holds a
/// core.
#[derive(Default)]
pub struct Master {
    core: Mutex<Option<Core>>,
    kick: Notify,
}

impl Master {
    fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> Result<T, CallError> {
        let mut guard = self.core.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map(f).ok_or(CallError::NotLeader)
    }

    /// Asks for an allocation now rather than at the next interval.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// What the allocator holds now, for the operator endpoints; `None` off the leader.
    pub(crate) fn view(&self) -> Option<AllocationView> {
        self.with_core(|c| c.view()).ok()
    }

    /// SUBSCRIBE: registers (or re-registers) the framework, replacing any previous
    /// subscription of it, and returns the stream its events arrive on.
    pub(crate) async fn subscribe(&self, inner: &Arc<Inner>, spec: FrameworkSpec) -> Result<Subscription, CallError> {
        if spec.roles.is_empty() {
            return Err(CallError::Invalid("a framework needs at least one role".into()));
        }
        if !spec.builtin && spec.id.as_deref() == Some(crate::services::FRAMEWORK_ID) {
            return Err(CallError::Invalid(format!(
                "framework id {} belongs to tepui's own services scheduler",
                crate::services::FRAMEWORK_ID
            )));
        }
        for r in spec.roles.iter().chain(&spec.suppressed_roles) {
            Role::new(r).map_err(|e| CallError::Invalid(e.to_string()))?;
        }
        if let Some(bad) = spec.suppressed_roles.iter().find(|r| !spec.roles.contains(r)) {
            return Err(CallError::Invalid(format!(
                "suppressed role {bad:?} is not one of the framework's roles"
            )));
        }
        inner.linearize().await?;
        self.wait_core(inner).await?;
        let now = now_ms();
        let record = inner.state.read(|s| -> Result<FrameworkRecord, CallError> {
            let existing = match &spec.id {
                Some(id) if spec.builtin => s.frameworks.get(id),
                Some(id) => Some(s.frameworks.get(id).ok_or_else(|| CallError::Removed(id.clone()))?),
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
        inner
            .write(Command::SubscribeFramework {
                framework: record.clone(),
            })
            .await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let stream_id = hex::encode(rand::random::<[u8; 16]>());
        // SUBSCRIBED comes first: the core may send on the channel as soon as it has it.
        let _ = tx.try_send(SchedulerEvent::Subscribed {
            framework_id: record.id.clone(),
        });
        let previous = inner.state.read(|s| {
            self.with_core(|c| {
                c.sync(s);
                let previous = c.subscribe(&record, &spec.suppressed_roles, stream_id.clone(), tx.clone())?;
                // Updates it never acknowledged go again (after its own restart or a leader change).
                for t in s.unacknowledged(&record.id) {
                    c.send_status(&record.id, status_of(t, &record));
                }
                Ok::<_, CallError>(previous)
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
            events: rx,
        })
    }

    /// A leader elected a moment ago builds its core first: wait for it (briefly).
    async fn wait_core(&self, inner: &Inner) -> Result<(), CallError> {
        let deadline = tokio::time::Instant::now() + CORE_WAIT;
        while self.with_core(|_| ()).is_err() {
            if !inner.is_leader() || tokio::time::Instant::now() >= deadline {
                return Err(CallError::NotLeader);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Checks that a call comes from the framework's current subscription.
    pub(crate) fn check_stream(&self, framework: &str, stream_id: &str) -> Result<(), CallError> {
        self.with_core(|c| c.check_stream(framework, stream_id))?
    }

    /// ACCEPT: performs the operations on the offers; tasks that cannot be launched get a
    /// TASK_ERROR or TASK_DROPPED/TASK_LOST update instead, as Mesos does.
    pub(crate) async fn accept(
        &self,
        inner: &Arc<Inner>,
        framework: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        filters: Filters,
    ) -> Result<(), CallError> {
        let now = now_ms();
        let plan = inner
            .state
            .read(|s| self.with_core(|c| c.accept(s, framework, offer_ids, operations, filters, now)))??;
        for (agent, resources) in &plan.reservations {
            let cmd = Command::SetReservations {
                agent: *agent,
                resources: resources.clone(),
            };
            if let Err(e) = inner.write(cmd).await {
                tracing::warn!(agent, error = %e, "could not record reservations");
            }
        }
        for record in plan.launches {
            let id = record.id.clone();
            match inner
                .write(Command::CreateTask {
                    task: Box::new(record.clone()),
                })
                .await
            {
                Ok(_) => {
                    self.with_core(|c| c.launched(&id)).ok();
                    let sent = inner
                        .hub
                        .send(
                            record.agent_id,
                            &ServerToAgent::Launch {
                                task: crate::tasks::launch_of(&record),
                            },
                        )
                        .await;
                    tracing::info!(task = %id, framework, agent = record.agent_id, delivered = sent, "task launched");
                }
                Err(e) => {
                    let (state, reason) = match &e {
                        WriteError::Rejected(ApplyError::TaskExists { .. }) => {
                            (TaskState::TaskError, "REASON_TASK_INVALID")
                        }
                        _ => (TaskState::TaskDropped, "REASON_INVALID_OFFERS"),
                    };
                    let message = format!("the task was not launched: {e}");
                    self.with_core(|c| {
                        c.launch_failed(&id);
                        c.send_status(framework, refused(&id, Some(record.agent_id), state, reason, message));
                    })
                    .ok();
                }
            }
        }
        self.kick();
        Ok(())
    }

    pub(crate) fn decline(&self, framework: &str, offer_ids: &[String], filters: Filters) -> Result<(), CallError> {
        self.with_core(|c| c.decline(framework, offer_ids, filters, now_ms()))?
    }

    pub(crate) fn revive(&self, framework: &str, roles: &[String]) -> Result<(), CallError> {
        self.with_core(|c| c.revive(framework, roles))??;
        self.kick();
        Ok(())
    }

    pub(crate) fn suppress(&self, framework: &str, roles: &[String]) -> Result<(), CallError> {
        self.with_core(|c| c.suppress(framework, roles))?
    }

    /// KILL: the task is killed with its grace period; an unknown task gets a reconciliation
    /// answer instead.
    pub(crate) async fn kill(
        &self,
        inner: &Arc<Inner>,
        framework: &str,
        task_id: &str,
        grace_ms: Option<u64>,
    ) -> Result<(), CallError> {
        let owned = inner.state.read(|s| {
            s.tasks
                .get(task_id)
                .filter(|t| t.framework_id == framework)
                .map(|t| t.state.is_terminal())
        });
        match owned {
            Some(false) => {
                crate::tasks::kill_within(inner, task_id, grace_ms).await?;
                Ok(())
            }
            _ => self.reconcile(inner, framework, &[task_id.to_string()]),
        }
    }

    /// ACKNOWLEDGE: the framework has the update; it is not sent again.
    pub(crate) async fn acknowledge(
        &self,
        inner: &Arc<Inner>,
        framework: &str,
        task_id: &str,
        uuid: &str,
    ) -> Result<(), CallError> {
        let belongs = inner
            .state
            .read(|s| s.tasks.get(task_id).map(|t| t.framework_id == framework));
        match belongs {
            Some(true) => {}
            Some(false) | None => {
                return Err(CallError::Invalid(format!(
                    "framework {framework} has no task {task_id:?} to acknowledge"
                )))
            }
        }
        match inner
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

    /// RECONCILE: the latest state of the named tasks (all live ones when `task_ids` is empty),
    /// as updates with reason REASON_RECONCILIATION that need no acknowledgement.
    pub(crate) fn reconcile(&self, inner: &Arc<Inner>, framework: &str, task_ids: &[String]) -> Result<(), CallError> {
        inner
            .state
            .read(|s| self.with_core(|c| c.reconcile(s, framework, task_ids)))?
    }

    /// TEARDOWN: the framework is removed and its tasks killed.
    pub(crate) async fn teardown(&self, inner: &Arc<Inner>, framework: &str) -> Result<(), CallError> {
        if framework == crate::services::FRAMEWORK_ID {
            return Err(CallError::Invalid(
                "tepui's services scheduler cannot be torn down; remove its apps with `tepui app rm`".into(),
            ));
        }
        remove_framework(inner, framework, "teardown").await
    }

    /// `/v1/tasks` takes resources directly (never those of an offer, which are rescinded
    /// first). `false`: they are not free. Before this leader's core exists the state's own
    /// fit check is the only guard, and the next sync accounts the task.
    pub(crate) fn take_for_operator(&self, task_id: &str, agent: u64, resources: &Resources) -> bool {
        self.with_core(|c| c.take_for_operator(task_id, agent, resources, now_ms()))
            .unwrap_or(true)
    }

    /// The outcome of committing a task the operator took resources for.
    pub(crate) fn operator_launch(&self, task_id: &str, committed: bool) {
        let _ = self.with_core(|c| {
            if committed {
                c.launched(task_id)
            } else {
                c.launch_failed(task_id)
            }
        });
    }

    /// UPDATE_WEIGHTS: weights (> 0) by role, committed.
    pub(crate) async fn update_weights(&self, inner: &Arc<Inner>, weights: &[(String, f64)]) -> Result<(), CallError> {
        let mut milli = Vec::new();
        for (role, w) in weights {
            Role::new(role).map_err(|e| CallError::Invalid(e.to_string()))?;
            let w = tepui_allocator::Scalar::from_f64(*w)
                .filter(|s| !s.is_zero())
                .ok_or_else(|| CallError::Invalid(format!("the weight of role {role} must be a positive number")))?;
            milli.push((role.clone(), w.milli()));
        }
        inner.write(Command::UpdateWeights { weights: milli }).await?;
        self.kick();
        Ok(())
    }

    /// UPDATE_QUOTA: a role's guarantees and limits (`cpus:4;mem:1024`). Without `force`, a
    /// limit below what the role already consumes is refused.
    pub(crate) async fn update_quota(
        &self,
        inner: &Arc<Inner>,
        role: &str,
        guarantees: &tepui_allocator::Quantities,
        limits: &tepui_allocator::Quantities,
        force: bool,
    ) -> Result<(), CallError> {
        let r = Role::new(role).map_err(|e| CallError::Invalid(e.to_string()))?;
        self.with_core(|c| c.check_quota(&r, guarantees, limits, force))??;
        let text = |q: &tepui_allocator::Quantities| {
            if q.iter().next().is_none() {
                String::new()
            } else {
                q.to_string()
            }
        };
        inner
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
    pub(crate) async fn operator_reservation(
        &self,
        inner: &Arc<Inner>,
        agent: u64,
        resources: &Resources,
        reserve: bool,
    ) -> Result<(), CallError> {
        let total = self.with_core(|c| c.operator_reservation(agent, resources, reserve))??;
        inner
            .write(Command::SetReservations {
                agent,
                resources: convert::text(&convert::dynamic_part(&total)),
            })
            .await?;
        self.kick();
        Ok(())
    }

    /// A task's status changed in the state: its framework hears of it.
    pub(crate) fn task_changed(&self, inner: &Inner, task_id: &str) {
        let _ = inner.state.read(|s| {
            let t = s.tasks.get(task_id)?;
            let f = s.frameworks.get(&t.framework_id)?;
            let status = status_of(t, f);
            self.with_core(|c| c.send_status(&f.id, status)).ok()
        });
        self.kick();
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
pub(crate) fn status_of(t: &TaskRecord, f: &FrameworkRecord) -> StatusView {
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

/// Removes a framework (teardown or failover timeout) and kills its tasks.
async fn remove_framework(inner: &Arc<Inner>, framework: &str, why: &str) -> Result<(), CallError> {
    let live: Vec<(String, u64)> = inner.state.read(|s| {
        s.tasks
            .values()
            .filter(|t| t.framework_id == framework && !t.state.is_terminal())
            .map(|t| (t.id.clone(), t.agent_id))
            .collect()
    });
    match inner
        .write(Command::RemoveFramework {
            id: framework.to_string(),
            now: now_ms(),
        })
        .await
    {
        Ok(_) => {}
        Err(WriteError::Rejected(ApplyError::UnknownFramework { .. })) => {
            return Err(CallError::Removed(framework.to_string()))
        }
        Err(e) => return Err(e.into()),
    }
    for (task_id, agent) in live {
        let kill = ServerToAgent::Kill {
            task_id,
            grace_ms: None,
        };
        inner.hub.send(agent, &kill).await;
    }
    inner.master.with_core(|c| c.forget_framework(framework)).ok();
    tracing::info!(framework, why, "framework removed; its tasks are being killed");
    inner.master.kick();
    Ok(())
}

/// The leader's scheduling loop: rebuilds the core when this server starts leading, makes
/// offers, ends stale ones, notices disconnected frameworks, tears down those past their
/// failover timeout, heartbeats, and resends unacknowledged updates.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut last_allocation = tokio::time::Instant::now();
    loop {
        let kicked = tokio::select! {
            _ = inner.master.kick.notified() => true,
            _ = tokio::time::sleep(TICK) => false,
        };
        if !inner.is_leader() {
            let dropped = inner.master.core.lock().unwrap_or_else(|e| e.into_inner()).take();
            if dropped.is_some() {
                tracing::info!("no longer leading: offers and subscriptions end");
            }
            continue;
        }
        let term = inner.raft.metrics().borrow().current_term;
        let fresh = inner
            .master
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|c| c.term() != term);
        if fresh {
            // Everything committed before this term must be applied before the core is built.
            if inner.linearize().await.is_err() {
                continue;
            }
            let core = inner.state.read(|s| Core::new(term, now_ms(), s));
            *inner.master.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
            tracing::info!(term, "leading: allocator rebuilt from the replicated state");
        }
        let now = now_ms();
        let allocate = kicked || last_allocation.elapsed() >= ALLOCATION_INTERVAL || fresh;
        if allocate {
            last_allocation = tokio::time::Instant::now();
        }
        let out = inner.state.read(|s| {
            inner
                .master
                .with_core(|c| c.tick(s, now, allocate, HEARTBEAT_INTERVAL, STATUS_RETRY, LEADER_CHANGE_GRACE))
        });
        let Ok(out) = out else { continue };
        for (framework, at) in out.disconnected {
            tracing::info!(framework = %framework, "framework disconnected; its failover timeout runs");
            let _ = inner
                .write(Command::DisconnectFramework {
                    id: framework.clone(),
                    now: at,
                })
                .await;
        }
        for framework in out.timed_out {
            if let Err(e) = remove_framework(&inner, &framework, "failover timeout").await {
                tracing::debug!(framework = %framework, error = %e, "could not remove a framework");
            }
        }
    }
}
