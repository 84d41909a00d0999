//! Frameworks' own executors (Mesos' custom executors) on the leader: what a launch tells the
//! agent about a task's executor, the scheduler's SHUTDOWN and MESSAGE calls, and what agents
//! report about executors (their ends, their framework messages).
//!
//! An executor is recorded in the replicated state with its first task
//! (`Command::LaunchOnExecutor`) and holds its own resources there and in the allocator until
//! its agent reports its end. Its tasks go through the lifecycle every task does: their status
//! updates come from the agent's durable queue, whoever wrote them.

use base64::Engine;
use tepui_allocator::Resources;
use tepui_node::{now_ms, Error, ErrorKind};
use tepui_proto::agent::{ExecutorEvent, ExecutorLaunch, ServerToAgent};
use tepui_state::{Command, ExecutorRecord, TaskDef, TaskRecord};

use crate::{Master, SchedulerEvent};

/// The largest framework message, either way (the data, before base64): a message travels
/// through the leader and the agent's stream, which are not made for bulk data.
pub const MAX_MESSAGE_BYTES: usize = tepui_common::MAX_FRAMEWORK_MESSAGE;

/// A task's executor, as the Mesos API translated it: the first task that names an executor
/// on an agent starts it there.
#[derive(Clone, Debug)]
pub struct ExecutorSpec {
    pub executor_id: String,
    pub name: String,
    /// Its container: command or image, resources, and its shutdown grace period as
    /// `kill_grace_ms`.
    pub def: TaskDef,
    /// What it takes from the offer, exactly (besides the task's own resources).
    pub resources: Resources,
    /// Opaque Mesos JSON: the `ExecutorInfo` (two tasks naming one executor must carry the
    /// same), the `FrameworkInfo` it is told, and this task's `TaskInfo`.
    pub info: serde_json::Value,
    pub framework_info: serde_json::Value,
    pub task_info: serde_json::Value,
    /// Mesos' default executor: no program of the framework's; the agent runs the group's
    /// tasks itself (`def` gives the executor's resources, network and ports; its command is
    /// not used).
    pub default_executor: bool,
}

impl ExecutorSpec {
    /// Mesos' default executor for a task group of `framework_id`, as a built-in framework
    /// launches one in process (`Operation::LaunchGroup`): `resources` is what it takes from
    /// the offer besides its tasks (Mesos gives it cpus:0.1;mem:32), `network` (`host` or
    /// `bridge`) and `ports` (host ports, within `resources`) are the group's: its tasks share
    /// them.
    pub fn default_executor(
        framework_id: &str,
        executor_id: &str,
        resources: Resources,
        network: &str,
        ports: Vec<tepui_state::PortDef>,
    ) -> ExecutorSpec {
        let mut def = crate::empty_def();
        def.cpus_milli = resources.scalar_sum(&tepui_allocator::ResourceName::CPUS).milli();
        def.mem_mb = crate::convert::units(&resources, &tepui_allocator::ResourceName::MEM);
        def.disk_mb = crate::convert::units(&resources, &tepui_allocator::ResourceName::DISK);
        def.network = network.to_string();
        def.ports = ports;
        let info = serde_json::json!({
            "type": "DEFAULT",
            "executor_id": {"value": executor_id},
            "framework_id": {"value": framework_id},
            "name": executor_id,
        });
        ExecutorSpec {
            executor_id: executor_id.to_string(),
            name: executor_id.to_string(),
            def,
            resources,
            info,
            framework_info: serde_json::Value::Null,
            task_info: serde_json::Value::Null,
            default_executor: true,
        }
    }
}

/// Why a framework message is refused.
pub fn message_too_large(len: usize) -> Option<String> {
    (len > MAX_MESSAGE_BYTES)
        .then(|| format!("the message's data is {len} bytes; a framework message carries at most {MAX_MESSAGE_BYTES}"))
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::Invalid, "invalid_request", message)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Master {
    /// The executor part of a task's launch, when an executor runs the task.
    pub(crate) fn executor_launch(&self, t: &TaskRecord) -> Option<Box<ExecutorLaunch>> {
        self.node().read(|s| {
            let e = s.executor_of_task(&t.id)?;
            Some(Box::new(ExecutorLaunch {
                framework_id: e.framework_id.clone(),
                executor_id: e.executor_id.clone(),
                name: e.name.clone(),
                def: e.def.clone(),
                executor_info: e.info.clone(),
                framework_info: e.framework_info.clone(),
                task_info: e.tasks.get(&t.id).cloned().unwrap_or_default(),
                default_executor: e.default_executor,
            }))
        })
    }

    /// The framework's live executor on `agent`, or why there is none.
    fn live_executor(&self, framework: &str, agent: u64, executor_id: &str) -> Result<(), Error> {
        let live = self.node().read(|s| {
            s.executor(agent, framework, executor_id)
                .is_some_and(ExecutorRecord::live)
        });
        if live {
            Ok(())
        } else {
            Err(invalid(format!(
                "framework {framework} has no executor {executor_id:?} running on agent {agent}"
            )))
        }
    }

    /// SHUTDOWN: the agent sends the executor SHUTDOWN and kills it after its grace period;
    /// its tasks end with it.
    pub async fn shutdown_executor(&self, framework: &str, agent: u64, executor_id: &str) -> Result<(), Error> {
        self.live_executor(framework, agent, executor_id)?;
        let msg = ServerToAgent::ShutdownExecutor {
            framework_id: framework.to_string(),
            executor_id: executor_id.to_string(),
        };
        let delivered = self.node().agents().send(agent, &msg).await;
        tracing::info!(
            framework,
            agent,
            executor = executor_id,
            delivered,
            "executor shutdown asked"
        );
        Ok(())
    }

    /// MESSAGE from a scheduler to its executor: passed on to the executor's agent, without a
    /// delivery guarantee (as in Mesos).
    pub async fn message_executor(
        &self,
        framework: &str,
        agent: u64,
        executor_id: &str,
        data: &[u8],
    ) -> Result<(), Error> {
        if let Some(why) = message_too_large(data.len()) {
            return Err(invalid(why));
        }
        self.live_executor(framework, agent, executor_id)?;
        let msg = ServerToAgent::FrameworkMessage {
            framework_id: framework.to_string(),
            executor_id: executor_id.to_string(),
            b64: b64().encode(data),
        };
        let delivered = self.node().agents().send(agent, &msg).await;
        tracing::debug!(
            framework,
            agent,
            executor = executor_id,
            bytes = data.len(),
            delivered,
            "framework message to an executor"
        );
        Ok(())
    }

    /// What an agent says about one of its executors.
    pub async fn on_executor_event(&self, agent: u64, event: ExecutorEvent) {
        match event {
            ExecutorEvent::Exited {
                framework_id,
                executor_id,
                exit_status,
                message,
            } => {
                self.executor_exited(agent, framework_id, executor_id, exit_status, message)
                    .await
            }
            ExecutorEvent::Message {
                framework_id,
                executor_id,
                b64: data,
            } => {
                let data = match b64().decode(data.as_bytes()) {
                    Ok(d) if message_too_large(d.len()).is_none() => d,
                    _ => {
                        tracing::warn!(agent, framework = %framework_id, executor = %executor_id, "an executor's message is not base64 or too large; dropped");
                        return;
                    }
                };
                if self.live_executor(&framework_id, agent, &executor_id).is_err() {
                    tracing::debug!(agent, framework = %framework_id, executor = %executor_id, "message of an executor the cluster does not know; dropped");
                    return;
                }
                let event = SchedulerEvent::Message {
                    agent_id: agent,
                    executor_id: executor_id.clone(),
                    data,
                };
                let sent = self.with_core(|c| c.send_event(&framework_id, event)).unwrap_or(false);
                tracing::debug!(agent, framework = %framework_id, executor = %executor_id, sent, "framework message from an executor");
            }
        }
    }

    /// The executor ended: recorded (its resources are free), acknowledged to its agent, and
    /// its framework hears FAILURE (once, however often the agent repeats the report).
    async fn executor_exited(
        &self,
        agent: u64,
        framework_id: String,
        executor_id: String,
        exit_status: Option<i32>,
        message: String,
    ) {
        let node = self.node();
        let was_live = node.read(|s| {
            s.executor(agent, &framework_id, &executor_id)
                .is_some_and(ExecutorRecord::live)
        });
        let cmd = Command::EndExecutor {
            agent_id: agent,
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            exit_status,
            message: message.clone(),
            now: now_ms(),
        };
        if let Err(e) = node.write(cmd).await {
            tracing::debug!(agent, framework = %framework_id, executor = %executor_id, error = %e, "could not record an executor's end; the agent reports it again");
            return;
        }
        let ack = ServerToAgent::ExecutorExitAck {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        };
        node.agents().send(agent, &ack).await;
        if was_live {
            tracing::info!(agent, framework = %framework_id, executor = %executor_id, ?exit_status, %message, "executor ended");
            let event = SchedulerEvent::ExecutorFailure {
                agent_id: agent,
                executor_id,
                status: exit_status,
            };
            let _ = self.with_core(|c| c.send_event(&framework_id, event));
        }
        self.kick();
    }

    /// A framework removed: each of its live executors is shut down (their agents report
    /// their ends, which frees their resources).
    pub(crate) async fn shutdown_executors_of(&self, framework: &str) {
        let live: Vec<(u64, String)> = self.node().read(|s| {
            s.executors
                .values()
                .filter(|e| e.framework_id == framework && e.live())
                .map(|e| (e.agent_id, e.executor_id.clone()))
                .collect()
        });
        for (agent, executor_id) in live {
            let msg = ServerToAgent::ShutdownExecutor {
                framework_id: framework.to_string(),
                executor_id,
            };
            self.node().agents().send(agent, &msg).await;
        }
    }
}
