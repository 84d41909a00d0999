//! Frameworks' own executors on agents (Mesos' custom executors): a program of the framework's
//! that runs in a container of its own on an agent and runs the tasks that name it there.
//!
//! An executor is known by its framework, its agent and the id its framework gave it. It is
//! recorded with its first task, in one command that checks that both fit on the agent, and it
//! holds its own resources until its agent reports that it ended. What the executor is told
//! (its `ExecutorInfo`, the `FrameworkInfo`, each task's `TaskInfo`) is kept as the Mesos API
//! wrote it: opaque JSON here, read again only by the Mesos API and the agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ApplyError, Millis, NodeId, Response, State, TaskDef, TaskRecord};

/// A framework's executor on one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRecord {
    pub framework_id: String,
    pub executor_id: String,
    pub agent_id: NodeId,
    pub name: String,
    /// Its container: the command (or image) it runs and its own resources.
    pub def: TaskDef,
    /// The role its resources are allocated in (`*` when empty).
    #[serde(default)]
    pub role: String,
    /// Exactly the resources it holds, in the allocator's text form.
    #[serde(default)]
    pub resources: String,
    /// The `ExecutorInfo` its framework gave (with its `framework_id`), as Mesos JSON: a later
    /// task naming the executor must give the same.
    pub info: serde_json::Value,
    /// The `FrameworkInfo` the executor is told when it subscribes, as Mesos JSON.
    #[serde(default)]
    pub framework_info: serde_json::Value,
    /// Its tasks (until they are forgotten), each with the `TaskInfo` it is given.
    #[serde(default)]
    pub tasks: BTreeMap<String, serde_json::Value>,
    pub launched_at: Millis,
    /// Mesos' default executor (task groups): no program of the framework's; the agent runs
    /// each task as a container of its own, all in the executor's network namespace and
    /// sandbox, and kills the group when one fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_executor: bool,
    /// When its agent reported its end; from then on its resources are free.
    #[serde(default)]
    pub ended_at: Option<Millis>,
    /// How it ended (its agent's words).
    #[serde(default)]
    pub message: String,
    /// Its exit code, or 128 plus the signal that ended it, when known.
    #[serde(default)]
    pub exit_status: Option<i32>,
}

impl ExecutorRecord {
    /// The key of an executor in [`State::executors`].
    pub fn key_of(agent: NodeId, framework_id: &str, executor_id: &str) -> String {
        // JSON keeps any two ids apart, whatever characters they hold.
        serde_json::json!([agent, framework_id, executor_id]).to_string()
    }

    pub fn key(&self) -> String {
        ExecutorRecord::key_of(self.agent_id, &self.framework_id, &self.executor_id)
    }

    /// Not ended: it holds its resources.
    pub fn live(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// What a task and its executor take together: the sum of their resources and both port lists.
fn together(task: &TaskDef, executor: &TaskDef) -> TaskDef {
    let mut def = task.clone();
    def.cpus_milli = def.cpus_milli.saturating_add(executor.cpus_milli);
    def.mem_mb = def.mem_mb.saturating_add(executor.mem_mb);
    def.disk_mb = def.disk_mb.saturating_add(executor.disk_mb);
    def.ports.extend(executor.ports.iter().cloned());
    def
}

impl State {
    /// A task run by a framework's executor: the executor is recorded too unless it runs there
    /// already (then it must be the same executor), and whatever is new must fit on the agent.
    pub(crate) fn launch_on_executor(
        &mut self,
        executor: &ExecutorRecord,
        task: &TaskRecord,
        task_info: &serde_json::Value,
    ) -> Result<Response, ApplyError> {
        self.launch_tasks_on_executor(executor, &[(task, task_info)])
    }

    /// Tasks run together by one executor (a task group, or a single task): all of them and
    /// the executor (unless it runs there already) must fit on the agent together, or none
    /// is recorded.
    pub(crate) fn launch_tasks_on_executor(
        &mut self,
        executor: &ExecutorRecord,
        tasks: &[(&TaskRecord, &serde_json::Value)],
    ) -> Result<Response, ApplyError> {
        let Some((first, _)) = tasks.first() else {
            return Err(ApplyError::EmptyTaskGroup);
        };
        for (i, (task, _)) in tasks.iter().enumerate() {
            if self.tasks.contains_key(&task.id) || tasks[..i].iter().any(|(t, _)| t.id == task.id) {
                return Err(ApplyError::TaskExists { id: task.id.clone() });
            }
            if executor.agent_id != task.agent_id || executor.framework_id != task.framework_id {
                return Err(ApplyError::ExecutorMismatch {
                    executor_id: executor.executor_id.clone(),
                    task_id: task.id.clone(),
                });
            }
        }
        let key = executor.key();
        let running = self.executors.get(&key).filter(|e| e.live());
        let mut need = match running {
            Some(e) if e.info != executor.info || e.default_executor != executor.default_executor => {
                return Err(ApplyError::ExecutorIncompatible {
                    executor_id: executor.executor_id.clone(),
                })
            }
            Some(_) => first.def.clone(),
            None => together(&first.def, &executor.def),
        };
        for (task, _) in &tasks[1..] {
            need = together(&need, &task.def);
        }
        // Two of the group on one host port would not both get it.
        let mut ports: Vec<u16> = need.ports.iter().map(|p| p.host_port).collect();
        ports.sort_unstable();
        if let Some(w) = ports.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApplyError::Placement(crate::PlacementError::PortTaken(
                w[0],
                first.agent_id,
            )));
        }
        self.check_fits(first.agent_id, &need).map_err(ApplyError::Placement)?;
        let entry = self.executors.entry(key).or_insert_with(|| executor.clone());
        if !entry.live() {
            // The same id again after its end: a new run, which keeps the old run's tasks
            // until they are forgotten.
            let old = std::mem::take(&mut entry.tasks);
            *entry = executor.clone();
            entry.tasks = old;
        }
        for (task, info) in tasks {
            entry.tasks.insert(task.id.clone(), (*info).clone());
        }
        for (task, _) in tasks {
            self.tasks.insert(task.id.clone(), (*task).clone());
        }
        Ok(Response::Ok)
    }

    /// The executor's agent reports its end: its resources are free. An executor unknown (or
    /// ended already) changes nothing, as agents repeat the report until it is acknowledged.
    pub(crate) fn end_executor(
        &mut self,
        agent: NodeId,
        framework_id: &str,
        executor_id: &str,
        exit_status: Option<i32>,
        message: &str,
        now: Millis,
    ) -> Result<Response, ApplyError> {
        let key = ExecutorRecord::key_of(agent, framework_id, executor_id);
        let Some(e) = self.executors.get_mut(&key).filter(|e| e.live()) else {
            return Ok(Response::Ok);
        };
        e.ended_at = Some(now);
        e.exit_status = exit_status;
        e.message = message.to_string();
        if e.tasks.is_empty() {
            self.executors.remove(&key);
        }
        Ok(Response::Ok)
    }

    /// Forgotten tasks leave their executors; an ended executor goes with its last task.
    pub(crate) fn forget_executor_tasks(&mut self, forgotten: &[String]) {
        if self.executors.is_empty() {
            return;
        }
        self.executors.retain(|_, e| {
            for id in forgotten {
                e.tasks.remove(id);
            }
            e.live() || !e.tasks.is_empty()
        });
    }

    /// The executor that runs task `task_id`, if an executor does.
    pub fn executor_of_task(&self, task_id: &str) -> Option<&ExecutorRecord> {
        self.executors.values().find(|e| e.tasks.contains_key(task_id))
    }

    /// A framework's executor on an agent.
    pub fn executor(&self, agent: NodeId, framework_id: &str, executor_id: &str) -> Option<&ExecutorRecord> {
        self.executors
            .get(&ExecutorRecord::key_of(agent, framework_id, executor_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tests_support::{def, record, state_with_agents};
    use crate::{Command, PlacementError, TaskState, TaskUpdate};

    fn executor(id: &str, cpus_milli: u64, info: &str) -> ExecutorRecord {
        ExecutorRecord {
            framework_id: "f".into(),
            executor_id: id.into(),
            agent_id: 1,
            name: id.into(),
            def: def(cpus_milli, 32),
            role: String::new(),
            resources: String::new(),
            info: serde_json::json!({"executor_id": {"value": id}, "command": {"value": info}}),
            framework_info: serde_json::json!({"name": "f"}),
            tasks: BTreeMap::new(),
            launched_at: 1,
            default_executor: false,
            ended_at: None,
            message: String::new(),
            exit_status: None,
        }
    }

    fn task(id: &str, cpus_milli: u64) -> Box<TaskRecord> {
        let mut t = record(id, 1, def(cpus_milli, 32));
        t.framework_id = "f".into();
        t.def.args.clear();
        t
    }

    fn launch(e: ExecutorRecord, t: Box<TaskRecord>) -> Command {
        Command::LaunchOnExecutor {
            executor: Box::new(e),
            task: t,
            task_info: serde_json::json!({"name": "t"}),
        }
    }

    #[test]
    fn an_executor_is_recorded_with_its_first_task_and_holds_its_resources() {
        let mut s = state_with_agents(1);
        assert_eq!(
            s.apply(1, &launch(executor("e", 500, "run"), task("t1", 500))),
            Response::Ok
        );
        assert_eq!(s.free_on(1).unwrap().cpus_milli, 1000, "the task's and the executor's");
        // A second task on the same executor takes only its own resources.
        assert_eq!(
            s.apply(2, &launch(executor("e", 500, "run"), task("t2", 500))),
            Response::Ok
        );
        assert_eq!(s.free_on(1).unwrap().cpus_milli, 500);
        let e = s.executor(1, "f", "e").unwrap();
        assert_eq!(e.tasks.keys().collect::<Vec<_>>(), ["t1", "t2"]);
        assert_eq!(s.executor_of_task("t2").map(|e| e.executor_id.as_str()), Some("e"));
        // Another executor does not fit beside them: a new one counts its own resources too.
        assert!(matches!(
            s.apply(3, &launch(executor("e2", 400, "run"), task("t3", 200))),
            Response::Rejected(ApplyError::Placement(_))
        ));
        assert!(s.executor(1, "f", "e2").is_none() && !s.tasks.contains_key("t3"));
    }

    #[test]
    fn a_different_executor_info_under_the_same_id_is_refused() {
        let mut s = state_with_agents(1);
        s.apply(1, &launch(executor("e", 100, "run"), task("t1", 100)));
        assert_eq!(
            s.apply(2, &launch(executor("e", 100, "other"), task("t2", 100))),
            Response::Rejected(ApplyError::ExecutorIncompatible {
                executor_id: "e".into()
            })
        );
        assert!(matches!(
            s.apply(3, &launch(executor("e", 100, "run"), task("t1", 100))),
            Response::Rejected(ApplyError::TaskExists { .. })
        ));
    }

    #[test]
    fn an_ended_executor_frees_its_resources_and_leaves_with_its_last_task() {
        let mut s = state_with_agents(1);
        s.apply(1, &launch(executor("e", 500, "run"), task("t1", 500)));
        let end = Command::EndExecutor {
            agent_id: 1,
            framework_id: "f".into(),
            executor_id: "e".into(),
            exit_status: Some(0),
            message: "exited".into(),
            now: 9,
        };
        s.apply(2, &end);
        assert_eq!(s.apply(3, &end), Response::Ok, "a repeated report changes nothing");
        assert_eq!(s.executor(1, "f", "e").unwrap().ended_at, Some(9));
        s.apply(
            4,
            &Command::TaskStatus {
                task_id: "t1".into(),
                update: TaskUpdate {
                    uuid: "u".into(),
                    state: TaskState::TaskFailed,
                    reason: Some("REASON_EXECUTOR_TERMINATED".into()),
                    message: String::new(),
                    exit_code: None,
                    signal: None,
                    at: 9,
                    healthy: None,
                    seq: None,
                    container_ip: None,
                },
            },
        );
        assert_eq!(s.free_on(1).unwrap().cpus_milli, 2000);
        // The same id runs again, as a new executor.
        assert_eq!(
            s.apply(5, &launch(executor("e", 500, "run"), task("t2", 500))),
            Response::Ok
        );
        let e = s.executor(1, "f", "e").unwrap();
        assert!(e.live());
        assert_eq!(e.tasks.keys().collect::<Vec<_>>(), ["t1", "t2"]);
        s.apply(6, &end);
        s.apply(
            7,
            &Command::ForgetTasks {
                task_ids: vec!["t1".into()],
            },
        );
        assert!(s.executor(1, "f", "e").is_some(), "t2 is still there");
        s.tasks.get_mut("t2").unwrap().state = TaskState::TaskKilled;
        s.apply(
            8,
            &Command::ForgetTasks {
                task_ids: vec!["t2".into()],
            },
        );
        assert!(s.executors.is_empty());
    }

    fn group(e: ExecutorRecord, tasks: Vec<Box<TaskRecord>>) -> Command {
        Command::LaunchGroup {
            executor: Box::new(e),
            tasks: tasks
                .into_iter()
                .map(|t| {
                    let info = serde_json::json!({"task_id": {"value": t.id}});
                    (*t, info)
                })
                .collect(),
        }
    }

    fn default_executor(id: &str, cpus_milli: u64) -> ExecutorRecord {
        ExecutorRecord {
            default_executor: true,
            ..executor(id, cpus_milli, "")
        }
    }

    #[test]
    fn a_task_group_is_recorded_all_or_nothing() {
        let mut s = state_with_agents(1);
        // 2000 millicpus on the agent: 100 for the executor, 1900 asked by the group.
        let too_big = group(default_executor("g", 100), vec![task("a", 1000), task("b", 1000)]);
        assert!(matches!(
            s.apply(1, &too_big),
            Response::Rejected(ApplyError::Placement(PlacementError::NotEnough { .. }))
        ));
        assert!(
            s.tasks.is_empty() && s.executors.is_empty(),
            "nothing of it is recorded"
        );
        assert_eq!(
            s.apply(
                2,
                &group(default_executor("g", 100), vec![task("a", 900), task("b", 900)])
            ),
            Response::Ok
        );
        assert_eq!(s.free_on(1).unwrap().cpus_milli, 100);
        let e = s.executor(1, "f", "g").unwrap();
        assert!(e.default_executor);
        assert_eq!(e.tasks.keys().collect::<Vec<_>>(), ["a", "b"]);
        // Another group on the running executor needs only its tasks' resources.
        assert_eq!(
            s.apply(3, &group(default_executor("g", 100), vec![task("c", 100)])),
            Response::Ok
        );
        assert_eq!(s.free_on(1).unwrap().cpus_milli, 0);
        // A custom executor under the default one's id is another executor.
        assert_eq!(
            s.apply(4, &launch(executor("g", 100, ""), task("d", 0))),
            Response::Rejected(ApplyError::ExecutorIncompatible {
                executor_id: "g".into()
            })
        );
    }

    #[test]
    fn a_task_group_with_a_repeated_id_or_port_is_refused() {
        let mut s = state_with_agents(1);
        assert_eq!(
            s.apply(
                1,
                &group(default_executor("g", 100), vec![task("a", 100), task("a", 100)])
            ),
            Response::Rejected(ApplyError::TaskExists { id: "a".into() })
        );
        let with_port = |id: &str| {
            let mut t = task(id, 100);
            t.def.ports.push(crate::PortDef {
                name: None,
                host_port: 31000,
                container_port: 0,
                protocol: "tcp".into(),
            });
            t
        };
        assert!(matches!(
            s.apply(
                2,
                &group(default_executor("g", 100), vec![with_port("a"), with_port("b")])
            ),
            Response::Rejected(ApplyError::Placement(PlacementError::PortTaken(31000, 1)))
        ));
        assert_eq!(
            s.apply(
                3,
                &Command::LaunchGroup {
                    executor: Box::new(default_executor("g", 100)),
                    tasks: vec![],
                }
            ),
            Response::Rejected(ApplyError::EmptyTaskGroup)
        );
        assert!(s.tasks.is_empty() && s.executors.is_empty());
    }

    #[test]
    fn keys_keep_ids_apart() {
        assert_ne!(
            ExecutorRecord::key_of(1, "a/b", "c"),
            ExecutorRecord::key_of(1, "a", "b/c")
        );
        assert_ne!(
            ExecutorRecord::key_of(1, "a\"", "b"),
            ExecutorRecord::key_of(1, "a", "\"b")
        );
    }
}
