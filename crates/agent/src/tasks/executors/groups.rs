//! Mesos' default executor (task groups): the agent is the executor. Its run's container only
//! holds the group's network namespace and sandbox (a `sleep` on the host's programs, with the
//! executor's resources, network and ports); each task of the group runs in a container of
//! its own, as any task does (its launch recorded, its updates durable), that joins the
//! holder's network namespace (`localhost` is the group's) and mounts the task's relative
//! volumes from the holder's sandbox (Mesos' `SANDBOX_PATH` of type `PARENT`), so every task
//! of the group sees the same files.
//!
//! What ends a group is Mesos' default executor's rule ([`after_task_end`]): a task that ends
//! other than TASK_FINISHED (failed, killed, lost) has the others killed; the executor ends
//! with its last task, and its end is reported as any executor's.

use std::net::Ipv4Addr;

use super::*;

/// The holder's program: it only has to stay until it is killed (pid 1 of its pid namespace
/// ignores SIGTERM; it is killed with SIGKILL). Every host has `sleep`.
const HOLDER_ARGS: [&str; 2] = ["sleep", "2147483647"];

/// What the end of one task of a group leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GroupStep {
    /// The other tasks to kill.
    pub kill: Vec<String>,
    /// The group is over: the executor ends.
    pub end_executor: bool,
}

/// Mesos' default executor's rule: a task that ends other than TASK_FINISHED takes its group
/// down (the others still running are killed, once); the executor ends with its last task.
/// `remaining`: the group's tasks not ended, without this one.
pub(crate) fn after_task_end(state: &str, already_killing: bool, remaining: &[String]) -> GroupStep {
    let fails_group = state != launch::TASK_FINISHED && !already_killing;
    GroupStep {
        kill: if fails_group { remaining.to_vec() } else { Vec::new() },
        end_executor: remaining.is_empty(),
    }
}

/// Where a task of a group runs.
pub(crate) struct GroupPlace {
    /// The holder's network namespace.
    pub netns: PathBuf,
    /// The group's shared sandbox (the holder's).
    pub shared: PathBuf,
    /// The holder's address on the bridge.
    pub ip: Option<Ipv4Addr>,
}

/// The default executor's container: the holder, with the executor's own resources, network
/// and ports.
pub(super) fn holder_def(x: &ExecutorLaunch) -> tepui_proto::agent::TaskDef {
    tepui_proto::agent::TaskDef {
        image: None,
        args: HOLDER_ARGS.iter().map(|a| a.to_string()).collect(),
        env: Default::default(),
        user: None,
        cwd: None,
        health_checks: Vec::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        // Killed at once: nothing in it needs a grace period.
        kill_grace_ms: 1,
        ..x.def.clone()
    }
}

impl TaskManager {
    /// Where a task of a default executor runs: `None` for any other task, an error when its
    /// executor's container does not run.
    pub(in crate::tasks) fn group_place(&self, id: &str) -> Option<Result<GroupPlace, String>> {
        let launch = self.launch_of(id)?;
        let x = launch.executor.as_deref().filter(|x| x.default_executor)?;
        let ex = lock(&self.inner.executors);
        let holder = ex
            .runs
            .get(&Key::of(x))
            .filter(|r| r.state == RunState::Running)
            .and_then(|r| Some((r.rec.container_id.clone(), r.holder?)));
        Some(match holder {
            Some((container, (pid, ip))) => Ok(GroupPlace {
                netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
                shared: self.inner.runtime.sandbox_dir(&container).join("data"),
                ip,
            }),
            None => Err("the task group's executor is not running".into()),
        })
    }

    /// Starts the containers of the group's tasks not started yet (called with the
    /// executors' lock held: each starts on its own future).
    pub(super) fn start_group_tasks(&self, run: &mut Run) {
        for (id, t) in run.tasks.iter_mut().filter(|(_, t)| !t.delivered) {
            t.delivered = true;
            let dir = self.inner.tasks_dir.join(updates::task_dir_name(id));
            if let Err(e) = updates::write_atomic(&dir.join(DELIVERED_FILE), b"") {
                tracing::warn!(task = %id, error = %e, "cannot record that the task's container was started");
            }
            tracing::info!(task = %id, executor = %run.rec.launch.executor_id, "starting a task of a group");
            let me = self.clone();
            let id = id.clone();
            self.spawn(async move { me.run(id).await });
        }
    }

    /// Kills one task of a group (its container, or its launch).
    pub(super) fn kill_group_task(&self, id: &str, grace: Option<Duration>) {
        self.kill(id, grace);
    }

    /// A task ended (its final update is queued, or it was forgotten): if it belongs to a
    /// default executor, the group follows Mesos' rule ([`after_task_end`]).
    pub(in crate::tasks) fn group_task_ended(&self, id: &str, state: &str) {
        let Some(key) = self
            .launch_of(id)
            .and_then(|l| l.executor.as_deref().filter(|x| x.default_executor).map(Key::of))
        else {
            return;
        };
        let step = {
            let mut ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get_mut(&key) else { return };
            if run.tasks.remove(id).is_none() {
                return;
            }
            let remaining: Vec<String> = run.tasks.keys().cloned().collect();
            let step = after_task_end(state, run.killing_group, &remaining);
            if !step.kill.is_empty() {
                run.killing_group = true;
            }
            step
        };
        if !step.kill.is_empty() {
            tracing::info!(task = %id, state, executor = %key.executor_id, others = step.kill.len(), "a task of a group ended; killing the rest of the group");
            for other in &step.kill {
                self.kill_group_task(other, None);
            }
        }
        if step.end_executor {
            self.end_group_if_done(&key);
        }
    }

    /// A default executor whose tasks have all ended is shut down: its container is killed,
    /// and its end reported when it is gone.
    pub(super) fn end_group_if_done(&self, key: &Key) {
        let container = {
            let mut ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get_mut(key) else { return };
            if !run.rec.launch.default_executor
                || !run.tasks.is_empty()
                || !matches!(run.state, RunState::Running | RunState::Terminating)
                || run.holder.is_none()
            {
                return;
            }
            run.state = RunState::Terminating;
            run.rec.container_id.clone()
        };
        tracing::info!(framework = %key.framework_id, executor = %key.executor_id, "the group's tasks have ended; the default executor shuts down");
        let me = self.clone();
        self.spawn(async move {
            if let Err(e) = me.inner.runtime.kill_within(&container, Some(Duration::ZERO)).await {
                tracing::warn!(container = %container, error = %tepui_common::error_chain(&e), "kill failed");
            }
        });
    }

    /// After a restart: a default executor's live container is the group's again. Whether
    /// the run is a default executor's.
    pub(super) fn adopt_holder(&self, key: &Key, st: &TaskStatus) -> bool {
        let mut ex = lock(&self.inner.executors);
        let Some(run) = ex.runs.get_mut(key).filter(|r| r.rec.launch.default_executor) else {
            return false;
        };
        run.state = RunState::Running;
        run.holder = st.pid.map(|pid| (pid, st.ip));
        tracing::info!(framework = %key.framework_id, executor = %key.executor_id, tasks = run.tasks.len(), "adopted a running default executor");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failed_task_takes_its_group_down_once() {
        let step = after_task_end(launch::TASK_FAILED, false, &ids(&["b", "c"]));
        assert_eq!(step.kill, ids(&["b", "c"]));
        assert!(!step.end_executor);
        // The others' ends (killed) kill nothing more; the last one ends the executor.
        let step = after_task_end(launch::TASK_KILLED, true, &ids(&["c"]));
        assert!(step.kill.is_empty() && !step.end_executor);
        let step = after_task_end(launch::TASK_KILLED, true, &[]);
        assert!(step.kill.is_empty() && step.end_executor);
    }

    #[test]
    fn a_killed_or_lost_task_takes_its_group_down_too() {
        for state in [launch::TASK_KILLED, launch::TASK_LOST, launch::TASK_ERROR] {
            assert_eq!(after_task_end(state, false, &ids(&["b"])).kill, ids(&["b"]), "{state}");
        }
    }

    #[test]
    fn a_finished_task_leaves_the_others_running() {
        let step = after_task_end(launch::TASK_FINISHED, false, &ids(&["b"]));
        assert!(step.kill.is_empty() && !step.end_executor);
        let step = after_task_end(launch::TASK_FINISHED, false, &[]);
        assert!(step.kill.is_empty() && step.end_executor);
    }

    #[test]
    fn the_holder_has_the_executors_resources_and_network_and_nothing_of_its_command() {
        let mut def = tepui_proto::agent::TaskDef {
            cpus_milli: 100,
            mem_mb: 32,
            network: "bridge".into(),
            args: vec!["/bin/executor".into()],
            ..Default::default()
        };
        def.env.insert("A".into(), "b".into());
        let x = ExecutorLaunch {
            framework_id: "f".into(),
            executor_id: "e".into(),
            name: "e".into(),
            def,
            executor_info: serde_json::Value::Null,
            framework_info: serde_json::Value::Null,
            task_info: serde_json::Value::Null,
            default_executor: true,
        };
        let h = holder_def(&x);
        assert_eq!((h.cpus_milli, h.mem_mb, h.network.as_str()), (100, 32, "bridge"));
        assert_eq!(h.args, HOLDER_ARGS);
        assert!(h.env.is_empty() && h.image.is_none());
    }
}
