//! Executors in the scheduling core: an executor holds its own resources in the allocator,
//! under its framework, beside its tasks'. Its holding is keyed by its key in the state
//! ([`ExecutorRecord::key_of`], a JSON array: never a task id), so the task holdings' code
//! (pending launches, lost commits, views) covers it too; only ends are found here.

use serde_json::Value;
use tepui_state::{Command, ExecutorRecord};

use super::*;
use crate::executors::ExecutorSpec;

/// Whether a holding is an executor's (a task id never starts with `[`).
pub(super) fn is_executor_key(key: &str) -> bool {
    key.starts_with('[')
}

impl AcceptPlan {
    /// The command that records `t`: with its executor when one runs it.
    pub(crate) fn command_for(&self, t: &TaskRecord) -> Command {
        match self.executors.get(&t.id) {
            Some((executor, task_info)) => Command::LaunchOnExecutor {
                executor: Box::new(executor.clone()),
                task: Box::new(t.clone()),
                task_info: task_info.clone(),
            },
            None => Command::CreateTask {
                task: Box::new(t.clone()),
            },
        }
    }
}

/// What a launch needs for its executor.
pub(super) enum ExecutorNeed {
    /// It runs already (or starts in this same accept): nothing more.
    Running,
    /// It is new: its resources too.
    New(String),
}

impl Core {
    /// Sends `event` to the framework's subscription, if it has one; whether it went.
    pub(crate) fn send_event(&mut self, framework: &str, event: SchedulerEvent) -> bool {
        self.subscribers
            .get(framework)
            .is_some_and(|sub| sub.tx.try_send(event).is_ok())
    }

    /// Whether a launch on agent `agent` may use `x`, and what it needs for it: the executor
    /// that runs there under the same id (or was planned a moment ago) must be the same one.
    pub(super) fn executor_need(
        &self,
        s: &State,
        planned: &HashMap<String, Value>,
        framework: &str,
        agent: u64,
        x: &ExecutorSpec,
    ) -> Result<ExecutorNeed, String> {
        let key = ExecutorRecord::key_of(agent, framework, &x.executor_id);
        let running = s
            .executors
            .get(&key)
            .filter(|e| e.live())
            .map(|e| &e.info)
            .or_else(|| planned.get(&key));
        match running {
            Some(info) if *info != x.info => Err(format!(
                "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID {:?}",
                x.executor_id
            )),
            Some(_) => Ok(ExecutorNeed::Running),
            None => Ok(ExecutorNeed::New(key)),
        }
    }

    /// Holds a new executor's resources (taken from an offer) until its launch is committed.
    pub(super) fn hold_executor(
        &mut self,
        key: String,
        framework: FrameworkId,
        agent: u64,
        role: Role,
        resources: Resources,
        now: Millis,
    ) {
        self.held.insert(
            key,
            Held {
                framework,
                agent,
                role,
                resources,
                pending: Some(now),
            },
        );
    }

    /// After an accept's write: the executors it planned that the state does not show were
    /// not recorded (every launch naming them was refused), and free their resources.
    pub(crate) fn executors_committed(&mut self, s: &State, plan: &AcceptPlan) {
        for (executor, _) in plan.executors.values() {
            let key = executor.key();
            let pending = self.held.get(&key).is_some_and(|h| h.pending.is_some());
            if !pending {
                continue;
            }
            if s.executors.get(&key).is_some_and(|e| e.live()) {
                self.launched(&key);
            } else {
                self.launch_failed(&key);
            }
        }
    }

    /// Holds the resources of every live executor of the state, and gives back those of the
    /// ones that ended. Returns how many settled holdings are executors' (all live).
    pub(super) fn sync_executors(&mut self, s: &State) -> usize {
        let ended: Vec<String> = self
            .held
            .iter()
            .filter(|(key, h)| {
                is_executor_key(key) && h.pending.is_none() && s.executors.get(*key).is_none_or(|e| !e.live())
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            let h = self.held.remove(&key).expect("listed above");
            if let Err(e) = self.alloc.recover(h.framework, AgentId(h.agent), &h.role, &h.resources) {
                tracing::debug!(executor = %key, error = %e, "nothing to recover for an ended executor");
            }
        }
        for (key, e) in s.executors.iter().filter(|(_, e)| e.live()) {
            if self.held.contains_key(key) || !self.agents.contains_key(&e.agent_id) {
                continue;
            }
            // A removed framework's executors (being shut down) are held by the operator.
            let (framework, role) = match self.ids.get(&e.framework_id) {
                Some(&f) => (f, role_of(&e.role)),
                None => (OPERATOR, Role::default_role()),
            };
            let resources = convert::parse(&e.resources);
            let agent = AgentId(e.agent_id);
            if self.alloc.add_used(framework, agent, &role, &resources).is_err() {
                self.rescind_on(e.agent_id);
                if let Err(err) = self.alloc.add_used(framework, agent, &role, &resources) {
                    tracing::warn!(executor = %key, agent = e.agent_id, error = %err, "an executor's resources are not free in the allocator");
                    continue;
                }
            }
            self.held.insert(
                key.clone(),
                Held {
                    framework,
                    agent: e.agent_id,
                    role,
                    resources,
                    pending: None,
                },
            );
        }
        self.held
            .iter()
            .filter(|(key, h)| is_executor_key(key) && h.pending.is_none())
            .count()
    }
}

/// The executor of a launch, as the state records it.
pub(super) fn executor_record(
    x: &ExecutorSpec,
    agent: u64,
    framework: &str,
    role: &Role,
    now: Millis,
) -> ExecutorRecord {
    ExecutorRecord {
        framework_id: framework.to_string(),
        executor_id: x.executor_id.clone(),
        agent_id: agent,
        name: x.name.clone(),
        def: x.def.clone(),
        role: if role.is_default() {
            String::new()
        } else {
            role.as_str().to_string()
        },
        resources: convert::text(&x.resources),
        info: x.info.clone(),
        framework_info: x.framework_info.clone(),
        tasks: Default::default(),
        launched_at: now,
        default_executor: x.default_executor,
        ended_at: None,
        message: String::new(),
        exit_status: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::LaunchSpec;

    const SEC: Duration = Duration::from_secs(1);

    fn framework(id: &str) -> FrameworkRecord {
        FrameworkRecord {
            id: id.into(),
            name: id.into(),
            user: "root".into(),
            principal: None,
            hostname: None,
            webui_url: None,
            roles: vec!["*".into()],
            capabilities: vec!["PARTITION_AWARE".into()],
            failover_timeout_ms: 10_000,
            registered_at: 0,
            reregistered_at: None,
            connected: true,
            disconnected_at: None,
        }
    }

    fn setup() -> (Core, State, mpsc::Receiver<SchedulerEvent>) {
        let mut s = tepui_state::testing::state_with_agents(1, 2048);
        let f = framework("f1");
        s.frameworks.insert("f1".into(), f.clone());
        let mut c = Core::new(0, &s);
        let (tx, rx) = mpsc::channel(64);
        c.subscribe(&f, &[], "stream".into(), tx).unwrap();
        (c, s, rx)
    }

    fn offers(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<OfferView> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Offers(o) = e {
                out.extend(o);
            }
        }
        out
    }

    fn errors(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<String> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Update(u) = e {
                out.push(format!("{}: {}", u.task_id, u.message));
            }
        }
        out
    }

    fn on_executor(task: &str, executor: &str, command: &str, task_cpus: &str, executor_cpus: &str) -> LaunchSpec {
        let resources: Resources = task_cpus.parse().unwrap();
        let executor_resources: Resources = executor_cpus.parse().unwrap();
        let mut def = crate::empty_def();
        def.cpus_milli = resources.scalar_sum(&tepui_allocator::ResourceName::CPUS).milli();
        let mut xdef = crate::empty_def();
        xdef.args = vec![command.into()];
        xdef.cpus_milli = executor_resources
            .scalar_sum(&tepui_allocator::ResourceName::CPUS)
            .milli();
        LaunchSpec {
            task_id: task.into(),
            name: task.into(),
            agent_id: Some(1),
            def,
            resources,
            invalid: None,
            labels: Default::default(),
            executor: Some(ExecutorSpec {
                executor_id: executor.into(),
                name: executor.into(),
                def: xdef,
                resources: executor_resources,
                info: serde_json::json!({"executor_id": {"value": executor}, "command": {"value": command}}),
                framework_info: serde_json::json!({"name": "f1"}),
                task_info: serde_json::json!({"task_id": {"value": task}}),
                default_executor: false,
            }),
        }
    }

    #[test]
    fn an_executor_takes_its_resources_once_with_its_first_task() {
        let (mut c, mut s, mut rx) = setup();
        c.tick(&s, 1, 15 * SEC, 10 * SEC, 60 * SEC);
        let offer = offers(&mut rx).remove(0);
        let ops = vec![Operation::Launch(vec![
            on_executor("a", "ex", "/bin/exec", "cpus:0.5", "cpus:0.25"),
            on_executor("b", "ex", "/bin/exec", "cpus:0.5", "cpus:0.25"),
            on_executor("c", "ex", "/bin/other", "cpus:0.1", "cpus:0.25"),
            on_executor("d", "big", "/bin/exec", "cpus:0.5", "cpus:1"),
        ])];
        let plan = c
            .accept(&s, "f1", std::slice::from_ref(&offer.id), ops, Filters::NONE, 2)
            .unwrap();
        let launched: Vec<&str> = plan.launches.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(launched, ["a", "b"]);
        let refused = errors(&mut rx);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with("c: ExecutorInfo is not compatible with existing ExecutorInfo"),
            "{refused:?}"
        );
        assert!(
            refused[1]
                .starts_with("d: Total resources cpus:1.5 required by task and its executor is more than available"),
            "{refused:?}"
        );
        // Committed as the leader commits them: the executor with each of its tasks.
        for (i, t) in plan.launches.iter().enumerate() {
            assert!(matches!(plan.command_for(t), Command::LaunchOnExecutor { .. }));
            assert_eq!(s.apply(i as u64 + 1, &plan.command_for(t)), tepui_state::Response::Ok);
            c.launched(&t.id);
        }
        c.executors_committed(&s, &plan);
        c.tick(&s, 3, 15 * SEC, 10 * SEC, 60 * SEC);
        let next = offers(&mut rx);
        assert_eq!(next[0].resources.to_string(), "cpus:0.75;mem:2048;ports:[31000-31009]");
        c.alloc.check_invariants().unwrap();

        // The executor ends: its resources come back, its tasks' stay until they end.
        let key = ExecutorRecord::key_of(1, "f1", "ex");
        s.executors.get_mut(&key).unwrap().ended_at = Some(4);
        c.tick(&s, 4, 15 * SEC, 10 * SEC, 60 * SEC);
        assert!(!c.held.contains_key(&key));
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn a_new_executor_no_launch_recorded_gives_its_resources_back() {
        let (mut c, s, mut rx) = setup();
        c.tick(&s, 1, 15 * SEC, 10 * SEC, 60 * SEC);
        let offer = offers(&mut rx).remove(0);
        let ops = vec![Operation::Launch(vec![on_executor(
            "a",
            "ex",
            "/bin/exec",
            "cpus:0.5",
            "cpus:0.25",
        )])];
        let plan = c
            .accept(&s, "f1", std::slice::from_ref(&offer.id), ops, Filters::NONE, 2)
            .unwrap();
        let key = ExecutorRecord::key_of(1, "f1", "ex");
        assert!(c.held[&key].pending.is_some());
        // The write failed: nothing is in the state.
        c.launch_failed("a");
        c.executors_committed(&s, &plan);
        assert!(!c.held.contains_key(&key));
        assert!(c.alloc.allocations_of(c.ids["f1"]).is_empty());
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn a_rebuilt_core_holds_live_executors() {
        let (_, mut s, _) = setup();
        let mut e = executor_record(
            on_executor("a", "ex", "/bin/exec", "cpus:0.5", "cpus:0.25")
                .executor
                .as_ref()
                .unwrap(),
            1,
            "f1",
            &Role::default_role(),
            1,
        );
        e.tasks.insert("a".into(), Value::Null);
        s.executors.insert(e.key(), e);
        let mut c = Core::new(5, &s);
        let (tx, mut rx) = mpsc::channel(64);
        c.subscribe(&s.frameworks["f1"].clone(), &[], "x".into(), tx).unwrap();
        c.tick(&s, 6, 15 * SEC, 10 * SEC, 60 * SEC);
        assert_eq!(
            offers(&mut rx)[0].resources.to_string(),
            "cpus:1.75;mem:2048;ports:[31000-31009]"
        );
        c.alloc.check_invariants().unwrap();
    }
}
