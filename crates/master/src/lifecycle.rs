//! The task lifecycle every scheduler shares: status updates from agents (committed, then
//! acknowledged), reconciliation when an agent registers, agents whose tasks become
//! unreachable, kills and drains.

use std::collections::{BTreeMap, HashMap};

use tepui_node::{now_ms, Error, WriteError};
use tepui_proto::agent::{ServerToAgent, StatusUpdate, TaskLaunch, TaskReport};
use tepui_state::{ApplyError, Command, Maintenance, NodeStatus, PortDef, TaskDef, TaskRecord, TaskState, TaskUpdate};

use crate::Master;

/// One task of [`Master::launch_direct_many`].
#[derive(Clone, Debug)]
pub struct DirectLaunch {
    pub id: String,
    pub name: String,
    pub def: TaskDef,
    /// The agents it may go to (constraints decided by the caller); none: any.
    pub agents: Option<Vec<u64>>,
    /// The role its resources are allocated in (`*` when empty); the operator's tasks are
    /// always in `*`.
    pub role: String,
}

/// What the agent is sent to run a task.
impl Master {
    /// What the agent gets to launch `t`: its definition and, opened from the state, the
    /// values of its secrets (or why they could not be, which the agent reports as the task's
    /// failure).
    pub fn launch_of(&self, t: &TaskRecord) -> TaskLaunch {
        let mut launch = TaskLaunch::new(t.id.clone(), t.name.clone(), t.def.clone());
        launch.executor = self.executor_launch(t);
        if !t.def.secrets.is_empty() {
            let keyring = self.config().secrets.as_deref();
            match self.node().read(|s| tepui_secrets::resolve(s, keyring, &t.def.secrets)) {
                Ok(values) => launch.secret_values = values,
                Err(e) => {
                    tracing::warn!(task = %t.id, error = %e, "the task's secrets cannot be given");
                    launch.secret_error = Some(e);
                }
            }
        }
        launch
    }

    /// Commits an agent's status update, then acknowledges it so the agent can forget it. An
    /// update the leader cannot commit is not acknowledged: the agent sends it again.
    pub async fn on_status(&self, agent: u64, update: StatusUpdate) {
        let node = self.node();
        let Some(state) = TaskState::parse(&update.state) else {
            tracing::warn!(agent, task = %update.task_id, state = %update.state, "unknown task state; acknowledging and ignoring it");
            self.ack(agent, &update).await;
            return;
        };
        let owner = node.read(|s| s.tasks.get(&update.task_id).map(|t| t.agent_id));
        if owner.is_some_and(|o| o != agent) {
            tracing::warn!(agent, task = %update.task_id, "update for a task of another agent; ignoring it");
            self.ack(agent, &update).await;
            return;
        }
        let cmd = Command::TaskStatus {
            task_id: update.task_id.clone(),
            update: TaskUpdate {
                uuid: update.uuid.clone(),
                state,
                reason: update.reason.clone(),
                message: update.message.clone(),
                exit_code: update.exit_code,
                signal: update.signal,
                at: update.timestamp_ms,
                healthy: update.healthy,
                seq: update.seq,
                container_ip: update.container_ip,
            },
        };
        match node.write(cmd).await {
            Ok(_) => {
                tracing::debug!(agent, task = %update.task_id, state = %update.state, "task status");
                self.ack(agent, &update).await;
                self.task_changed(&update.task_id);
            }
            Err(WriteError::Rejected(ApplyError::UnknownTask { .. })) => {
                self.ack(agent, &update).await;
                let forget = ServerToAgent::Forget {
                    task_id: update.task_id.clone(),
                };
                node.agents().send(agent, &forget).await;
            }
            Err(e) => {
                tracing::debug!(agent, task = %update.task_id, error = %e, "status update not committed; the agent will resend it")
            }
        }
    }

    async fn ack(&self, agent: u64, update: &StatusUpdate) {
        let msg = ServerToAgent::Ack {
            task_id: update.task_id.clone(),
            uuid: update.uuid.clone(),
        };
        self.node().agents().send(agent, &msg).await;
    }

    /// Statuses the leader sets itself (not an agent's report), committed in one write like
    /// any other update: `(task, kind, state, reason, message)`.
    async fn leader_statuses(&self, statuses: Vec<(String, &str, TaskState, &str, String)>) {
        if statuses.is_empty() {
            return;
        }
        let now = now_ms();
        let cmds = statuses
            .iter()
            .map(|(task_id, kind, state, reason, message)| Command::TaskStatus {
                task_id: task_id.clone(),
                update: TaskUpdate {
                    uuid: format!("{kind}-{task_id}-{now}"),
                    state: *state,
                    reason: Some(reason.to_string()),
                    message: message.clone(),
                    exit_code: None,
                    signal: None,
                    at: now,
                    healthy: None,
                    seq: None,
                    container_ip: None,
                },
            })
            .collect();
        match self.node().write_batch(cmds).await {
            Ok(answers) => {
                for ((task_id, _, state, ..), answer) in statuses.iter().zip(answers) {
                    match answer {
                        Ok(_) => self.task_changed(task_id),
                        Err(e) => {
                            tracing::debug!(task = %task_id, state = state.as_str(), error = %e, "could not set a task's status")
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(tasks = statuses.len(), error = %e, "could not set tasks' statuses"),
        }
    }

    /// The agent's tasks can no longer be vouched for: they become `TASK_UNREACHABLE` until the
    /// agent registers again and reports them.
    pub(crate) async fn mark_unreachable(&self, agent: u64) {
        let (name, tasks): (String, Vec<String>) = self.node().read(|s| {
            let name = s.nodes.get(&agent).map(|n| n.name.clone()).unwrap_or_default();
            let tasks = s
                .tasks
                .values()
                .filter(|t| t.agent_id == agent && !t.state.is_terminal() && t.state != TaskState::TaskUnreachable)
                .map(|t| t.id.clone())
                .collect();
            (name, tasks)
        });
        let message = format!("agent {name} is unreachable: no heartbeat within the timeout");
        let statuses = tasks
            .into_iter()
            .map(|id| {
                (
                    id,
                    "unreachable",
                    TaskState::TaskUnreachable,
                    "REASON_SLAVE_REMOVED",
                    message.clone(),
                )
            })
            .collect();
        self.leader_statuses(statuses).await;
    }

    /// Settles the truth after an agent (re)registers: launches it missed go again, kills it
    /// missed go again, tasks it lost are marked lost, and tasks it has that the cluster does
    /// not want are forgotten.
    pub async fn on_register(&self, agent: u64, reported: Vec<TaskReport>) {
        let node = self.node();
        let reported: HashMap<String, String> = reported.into_iter().map(|r| (r.task_id, r.state)).collect();
        let ours: Vec<TaskRecord> = node.read(|s| s.tasks.values().filter(|t| t.agent_id == agent).cloned().collect());
        let known: HashMap<&str, &TaskRecord> = ours.iter().map(|t| (t.id.as_str(), t)).collect();
        let mut statuses = vec![];
        for t in ours.iter().filter(|t| !t.state.is_terminal()) {
            match reported.get(&t.id) {
                Some(_) if t.kill_requested => {
                    let kill = ServerToAgent::Kill {
                        task_id: t.id.clone(),
                        grace_ms: None,
                    };
                    node.agents().send(agent, &kill).await;
                }
                Some(reported) if t.state == TaskState::TaskUnreachable => {
                    // Back from a partition: the agent's word is the truth again.
                    let Some(state) = TaskState::parse(reported) else {
                        continue;
                    };
                    let message = "the agent registered again and reported the task".to_string();
                    statuses.push((t.id.clone(), "reregistered", state, "REASON_RECONCILIATION", message));
                }
                Some(_) => {}
                None if t.state == TaskState::TaskStaging && !t.kill_requested => {
                    node.agents()
                        .send(
                            agent,
                            &ServerToAgent::Launch {
                                task: self.launch_of(t),
                            },
                        )
                        .await;
                }
                None => {
                    let state = if t.kill_requested {
                        TaskState::TaskKilled
                    } else {
                        TaskState::TaskLost
                    };
                    let message = "the agent re-registered without this task".to_string();
                    statuses.push((t.id.clone(), "reconcile", state, "REASON_RECONCILIATION", message));
                }
            }
        }
        self.leader_statuses(statuses).await;
        for (id, state) in reported {
            let agent_running = TaskState::parse(&state).is_some_and(|s| !s.is_terminal());
            let wanted = known.get(id.as_str()).is_some_and(|t| !t.state.is_terminal());
            if agent_running && !wanted {
                tracing::info!(agent, task = %id, "agent runs a task the cluster does not want; forgetting it");
                node.agents().send(agent, &ServerToAgent::Forget { task_id: id }).await;
            }
        }
    }

    /// The operator's direct launch (`POST /v1/tasks`): places the task on the most free agent
    /// that fits (or `only`), gives each of `wanted` a free host port there, and takes the
    /// resources straight from the allocator (never an offer's), then commits and launches it.
    pub async fn launch_direct(
        &self,
        name: &str,
        def: TaskDef,
        wanted: Vec<PortDef>,
        only: Option<u64>,
    ) -> Result<TaskRecord, Error> {
        let id = format!("{name}.{}", hex::encode(rand::random::<[u8; 6]>()));
        self.launch_direct_as(id, name, def, wanted, only).await
    }

    /// [`Master::launch_direct`] with the task id chosen by the caller, so that a launch the
    /// caller recorded first can be repeated without a second task: a task with that id
    /// already committed is refused (`task_exists`).
    pub async fn launch_direct_as(
        &self,
        id: String,
        name: &str,
        mut def: TaskDef,
        wanted: Vec<PortDef>,
        only: Option<u64>,
    ) -> Result<TaskRecord, Error> {
        let node = self.node();
        node.linearize().await?;
        let (agent, ports) = node
            .read(|s| s.place(&def, wanted.len(), only))
            .map_err(|e| Error::conflict("no_room", e.to_string()))?;
        for (mut p, host_port) in wanted.into_iter().zip(ports) {
            p.host_port = host_port;
            def.ports.push(p);
        }
        let mut record = TaskRecord::staging(id.clone(), name, agent, def, now_ms());
        let resources = crate::convert::task_resources(&record);
        record.resources = crate::convert::text(&resources);
        if !self.take_for_operator(&id, agent, &resources) {
            return Err(Error::conflict(
                "no_room",
                format!("the resources on agent {agent} are held by frameworks' tasks; retry or pick another agent"),
            ));
        }
        let created = node
            .write(Command::CreateTask {
                task: Box::new(record.clone()),
            })
            .await;
        self.operator_launch(&id, created.is_ok());
        created?;
        let delivered = node
            .agents()
            .send(
                agent,
                &ServerToAgent::Launch {
                    task: self.launch_of(&record),
                },
            )
            .await;
        tracing::info!(task = %id, agent, delivered, "task created");
        Ok(record)
    }

    /// Many [`Master::launch_direct_as`] at once (no ports): each placed on the freest ready
    /// agent among its `agents` (any when none are given) against one tally of what the
    /// batch has taken so far, all committed in as few writes as the store allows, then each
    /// sent to its agent. One answer per launch, in order; a task id already committed is
    /// refused (`task_exists`) as for one launch. A thousand runs due at one minute cost a
    /// few writes instead of a thousand.
    ///
    /// `framework` is the operator's (`""`) or a built-in framework's that places its own
    /// tasks (it must be subscribed, in each launch's role): its tasks are recorded as its
    /// own and their resources held under it in the allocator, as if it had taken them from
    /// an offer.
    pub async fn launch_direct_many(&self, framework: &str, launches: Vec<DirectLaunch>) -> Vec<Result<(), Error>> {
        let node = self.node();
        if let Err(e) = node.linearize().await {
            let e: Error = e.into();
            return launches.iter().map(|_| Err(e.clone())).collect();
        }
        let mut free: BTreeMap<u64, tepui_state::Free> = node.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.agent.is_some() && n.status == NodeStatus::Ready && n.maintenance == Maintenance::Active)
                .map(|n| (n.id, s.free_on(n.id).unwrap_or_default()))
                .collect()
        });
        let now = now_ms();
        let mut answers: Vec<Option<Result<(), Error>>> = Vec::with_capacity(launches.len());
        let mut placed: Vec<(usize, TaskRecord)> = Vec::new();
        for (i, l) in launches.into_iter().enumerate() {
            let def = &l.def;
            let best = free
                .iter_mut()
                .filter(|(id, _)| l.agents.as_ref().is_none_or(|only| only.contains(id)))
                .filter(|(_, f)| def.cpus_milli <= f.cpus_milli && def.mem_mb <= f.mem_mb && def.disk_mb <= f.disk_mb)
                .max_by_key(|(id, f)| (f.cpus_milli, std::cmp::Reverse(**id)));
            let Some((&agent, room)) = best else {
                answers.push(Some(Err(Error::conflict(
                    "no_room",
                    format!("no ready agent has room for task {}", l.id),
                ))));
                continue;
            };
            let mut record = TaskRecord::staging(l.id.clone(), &l.name, agent, l.def, now);
            if !framework.is_empty() {
                record.framework_id = framework.to_string();
                record.role = if l.role.is_empty() { "*".into() } else { l.role.clone() };
            }
            let resources = crate::convert::task_resources(&record);
            record.resources = crate::convert::text(&resources);
            match self.take_direct(framework, &record.role, &l.id, agent, &resources) {
                Ok(true) => {}
                Ok(false) => {
                    answers.push(Some(Err(Error::conflict(
                        "no_room",
                        format!("the resources on agent {agent} are held by frameworks' tasks"),
                    ))));
                    continue;
                }
                Err(e) => {
                    answers.push(Some(Err(e)));
                    continue;
                }
            }
            room.cpus_milli -= record.def.cpus_milli;
            room.mem_mb -= record.def.mem_mb;
            room.disk_mb -= record.def.disk_mb;
            answers.push(None);
            placed.push((i, record));
        }
        let cmds = placed
            .iter()
            .map(|(_, r)| Command::CreateTask {
                task: Box::new(r.clone()),
            })
            .collect();
        match node.write_batch(cmds).await {
            Ok(results) => {
                let mut sends = Vec::new();
                for ((i, record), result) in placed.into_iter().zip(results) {
                    self.operator_launch(&record.id, result.is_ok());
                    answers[i] = Some(match result {
                        Ok(_) => {
                            sends.push(record);
                            Ok(())
                        }
                        Err(e) => Err(WriteError::Rejected(e).into()),
                    });
                }
                for record in sends {
                    let launch = ServerToAgent::Launch {
                        task: self.launch_of(&record),
                    };
                    let delivered = node.agents().send(record.agent_id, &launch).await;
                    tracing::info!(task = %record.id, agent = record.agent_id, delivered, "task created");
                }
            }
            Err(e) => {
                let e: Error = e.into();
                for (i, record) in placed {
                    self.operator_launch(&record.id, false);
                    answers[i] = Some(Err(e.clone()));
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Error::internal("no answer to a launch"))))
            .collect()
    }

    /// Asks for a task to be killed: committed first (so a new leader still kills it), then
    /// sent to its agent. An unreachable agent gets the kill when it registers again.
    pub async fn kill(&self, id: &str) -> Result<(), Error> {
        self.kill_within(id, None).await
    }

    /// [`Master::kill`] with a grace period other than the task's own (never longer than the
    /// task's).
    pub async fn kill_within(&self, id: &str, grace_ms: Option<u64>) -> Result<(), Error> {
        self.kill_all(&[id.to_string()], grace_ms)
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::internal("no answer to a kill")))
    }

    /// Kills every task of `ids`, committed in one write; answers each.
    pub async fn kill_all(&self, ids: &[String], grace_ms: Option<u64>) -> Vec<Result<(), Error>> {
        let node = self.node();
        let now = now_ms();
        let cmds = ids
            .iter()
            .map(|id| Command::KillTask {
                task_id: id.clone(),
                now,
            })
            .collect();
        let answers = match node.write_batch(cmds).await {
            Ok(a) => a,
            Err(e) => return ids.iter().map(|_| Err(Error::from(e.clone()))).collect(),
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, answer) in ids.iter().zip(answers) {
            if let Err(e) = answer {
                out.push(Err(e.into()));
                continue;
            }
            let live = node.read(|s| {
                s.tasks
                    .get(id)
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| (t.agent_id, t.def.kill_grace_ms))
            });
            if let Some((agent, own)) = live {
                let kill = ServerToAgent::Kill {
                    task_id: id.clone(),
                    grace_ms: grace_ms.map(|g| g.min(own)),
                };
                node.agents().send(agent, &kill).await;
            }
            out.push(Ok(()));
        }
        out
    }

    /// Drains agent `id`: no new tasks, its tasks killed (within `grace_ms` when given),
    /// drained once none is left. `/v1` and the operator API's DRAIN_AGENT share it.
    pub async fn drain_agent(&self, id: u64, grace_ms: Option<u64>) -> Result<(), Error> {
        let node = self.node();
        node.write(Command::SetMaintenance {
            id,
            maintenance: Maintenance::Draining,
        })
        .await?;
        tracing::info!(node = id, "agent draining");
        let running: Vec<String> = node.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.agent_id == id && !t.state.is_terminal())
                .map(|t| t.id.clone())
                .collect()
        });
        for answer in self.kill_all(&running, grace_ms).await {
            answer?;
        }
        self.finish_drains().await;
        Ok(())
    }

    /// Marks draining agents whose tasks have all ended as drained.
    pub(crate) async fn finish_drains(&self) {
        let node = self.node();
        let done: Vec<u64> = node.read(|s| {
            let draining: Vec<u64> = s
                .nodes
                .values()
                .filter(|n| n.maintenance == Maintenance::Draining)
                .map(|n| n.id)
                .collect();
            if draining.is_empty() {
                return draining;
            }
            let busy: std::collections::HashSet<u64> = s
                .tasks
                .values()
                .filter(|t| !t.state.is_terminal())
                .map(|t| t.agent_id)
                .collect();
            draining.into_iter().filter(|id| !busy.contains(id)).collect()
        });
        for id in done {
            if let Err(e) = node
                .write(Command::SetMaintenance {
                    id,
                    maintenance: Maintenance::Drained,
                })
                .await
            {
                tracing::debug!(node = id, error = %e, "could not mark an agent drained");
            } else {
                tracing::info!(node = id, "agent drained");
            }
        }
    }
}
