//! Task groups in the scheduling core (Mesos' LAUNCH_GROUP): a group's tasks and its executor
//! (when it is new on the agent) are checked and taken from the offers together, all or none,
//! and committed as one command (`Command::LaunchGroup`).

use serde_json::Value;
use tepui_state::Command;

use super::*;
use crate::executors::ExecutorSpec;

/// Where a group is being placed.
pub(super) struct Placing<'a> {
    pub state: &'a State,
    pub framework: &'a str,
    pub fid: FrameworkId,
    pub agent: u64,
    pub now: Millis,
}

/// What the ACCEPT has planned so far, which a group adds to.
pub(super) struct Planning<'a> {
    pub pools: &'a mut Vec<Pool>,
    pub planned: &'a mut HashSet<String>,
    pub planned_executors: &'a mut HashMap<String, Value>,
    pub plan: &'a mut AcceptPlan,
}

/// Why a group is refused: the task at fault (none: the group as a whole) and Mesos' words.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub task: Option<String>,
    pub message: String,
}

fn refusal(task: Option<&str>, message: impl Into<String>) -> Refusal {
    Refusal {
        task: task.map(str::to_string),
        message: message.into(),
    }
}

impl AcceptPlan {
    /// The commands that record the launches, and for each launch the index of its command:
    /// a task group's tasks share one.
    pub(crate) fn commands(&self) -> (Vec<Command>, Vec<usize>) {
        let mut commands = Vec::new();
        let mut index = Vec::with_capacity(self.launches.len());
        let mut group_command: HashMap<usize, usize> = HashMap::new();
        for t in &self.launches {
            let group = self.groups.iter().position(|g| g.contains(&t.id));
            match group {
                None => {
                    index.push(commands.len());
                    commands.push(self.command_for(t));
                }
                Some(g) => {
                    if let Some(&at) = group_command.get(&g) {
                        index.push(at);
                        continue;
                    }
                    let ids = &self.groups[g];
                    let tasks: Vec<(TaskRecord, Value)> = self
                        .launches
                        .iter()
                        .filter(|l| ids.contains(&l.id))
                        .map(|l| {
                            let info = self.executors.get(&l.id).map(|(_, i)| i.clone()).unwrap_or_default();
                            (l.clone(), info)
                        })
                        .collect();
                    let executor = self
                        .executors
                        .get(&t.id)
                        .map(|(e, _)| e.clone())
                        .expect("a group's tasks have their executor");
                    group_command.insert(g, commands.len());
                    index.push(commands.len());
                    commands.push(Command::LaunchGroup {
                        executor: Box::new(executor),
                        tasks,
                    });
                }
            }
        }
        (commands, index)
    }
}

impl Core {
    /// Plans a task group: every task is launched, or every one gets TASK_ERROR
    /// (REASON_TASK_GROUP_INVALID) and nothing is taken from the offers.
    pub(super) fn plan_group(
        &mut self,
        at: &Placing<'_>,
        x: &ExecutorSpec,
        tasks: Vec<LaunchSpec>,
        p: &mut Planning<'_>,
    ) {
        let checked = self.check_group(at, x, &tasks, p);
        let (role, new_executor) = match checked {
            Ok(ok) => ok,
            Err(r) => {
                tracing::info!(framework = at.framework, executor = %x.executor_id, reason = %r.message, "task group refused");
                for l in &tasks {
                    let message = match &r.task {
                        Some(id) if *id != l.task_id => format!("Task group is invalid: task {id}: {}", r.message),
                        _ => r.message.clone(),
                    };
                    let status = refused(
                        &l.task_id,
                        l.agent_id,
                        TaskState::TaskError,
                        "REASON_TASK_GROUP_INVALID",
                        message,
                    );
                    self.send_status(at.framework, status);
                }
                return;
            }
        };
        let record = executors::executor_record(x, at.agent, at.framework, &role, at.now);
        if let Some(key) = new_executor {
            self.hold_executor(key.clone(), at.fid, at.agent, role.clone(), x.resources.clone(), at.now);
            p.planned_executors.insert(key, x.info.clone());
        }
        let mut ids = Vec::with_capacity(tasks.len());
        for l in &tasks {
            let info = l.executor.as_ref().map(|e| e.task_info.clone()).unwrap_or(Value::Null);
            p.plan.executors.insert(l.task_id.clone(), (record.clone(), info));
            p.planned.insert(l.task_id.clone());
            self.held.insert(
                l.task_id.clone(),
                Held {
                    framework: at.fid,
                    agent: at.agent,
                    role: role.clone(),
                    resources: l.resources.clone(),
                    pending: Some(at.now),
                },
            );
            p.plan
                .launches
                .push(task_record(l, at.agent, at.framework, &role, at.now));
            ids.push(l.task_id.clone());
        }
        p.plan.groups.push(ids);
    }

    /// Checks a group as Mesos' master does and takes what it needs from the offers: the role
    /// it was taken in, and the key of its executor when that is new.
    fn check_group(
        &self,
        at: &Placing<'_>,
        x: &ExecutorSpec,
        tasks: &[LaunchSpec],
        p: &mut Planning<'_>,
    ) -> Result<(Role, Option<String>), Refusal> {
        if tasks.is_empty() {
            return Err(refusal(None, "Task group is empty"));
        }
        if !x.default_executor {
            return Err(refusal(
                None,
                "a task group runs on the default executor ('ExecutorInfo.type' must be 'DEFAULT')",
            ));
        }
        // Every task refused for one reason: the group's (its executor's).
        if let Some(why) = tasks[0]
            .invalid
            .clone()
            .filter(|w| tasks.iter().all(|t| t.invalid.as_ref() == Some(w)))
        {
            return Err(refusal(None, why));
        }
        let mut ids: HashSet<&str> = HashSet::new();
        let mut need = Resources::new();
        for l in tasks {
            let id = Some(l.task_id.as_str());
            if let Some(why) = l.invalid.clone().or_else(|| launch_error(l)) {
                return Err(refusal(id, why));
            }
            if l.agent_id != Some(at.agent) {
                let named = l.agent_id.map(|a| a.to_string()).unwrap_or_default();
                return Err(refusal(
                    id,
                    format!("the task names agent {named:?}, the offer is on agent {}", at.agent),
                ));
            }
            if at.state.tasks.contains_key(&l.task_id) || p.planned.contains(&l.task_id) || !ids.insert(&l.task_id) {
                return Err(refusal(id, format!("task id {:?} is already in use", l.task_id)));
            }
            if l.resources.is_empty() {
                return Err(refusal(id, "the task uses no resources; it needs cpus or mem"));
            }
            need.add(&l.resources);
        }
        let executor = self
            .executor_need(at.state, p.planned_executors, at.framework, at.agent, x)
            .map_err(|why| refusal(None, why))?;
        let new_executor = match executor {
            executors::ExecutorNeed::New(key) => {
                need.add(&x.resources);
                Some(key)
            }
            executors::ExecutorNeed::Running => None,
        };
        let Some(role) = Pool::take(p.pools, &need) else {
            let left = Pool::left(p.pools);
            // Mesos' words.
            return Err(refusal(
                None,
                format!(
                    "Total resources {need} required by task group and its executor are more than available {left}"
                ),
            ));
        };
        Ok((role, new_executor))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn setup() -> (Core, State, mpsc::Receiver<SchedulerEvent>) {
        let mut s = tepui_state::testing::state_with_agents(1, 2048);
        let f = FrameworkRecord {
            id: "f1".into(),
            name: "f1".into(),
            user: "root".into(),
            principal: None,
            hostname: None,
            webui_url: None,
            roles: vec!["*".into()],
            capabilities: vec![],
            failover_timeout_ms: 10_000,
            registered_at: 0,
            reregistered_at: None,
            connected: true,
            disconnected_at: None,
        };
        s.frameworks.insert("f1".into(), f.clone());
        let mut c = Core::new(0, &s);
        c.sync(&s);
        let (tx, rx) = mpsc::channel(64);
        c.subscribe(&f, &[], "stream".into(), tx).unwrap();
        (c, s, rx)
    }

    fn offer(c: &mut Core, s: &State, rx: &mut mpsc::Receiver<SchedulerEvent>) -> String {
        let sec = Duration::from_secs(1);
        c.tick(s, 1_000, 15 * sec, 10 * sec, 60 * sec);
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Offers(o) = e {
                return o[0].id.clone();
            }
        }
        panic!("no offer");
    }

    fn task(id: &str, res: &str) -> LaunchSpec {
        let resources = convert::parse(res);
        let mut def = crate::empty_def();
        def.cpus_milli = resources.scalar_sum(&tepui_allocator::ResourceName::CPUS).milli();
        def.args = vec!["true".into()];
        LaunchSpec {
            task_id: id.into(),
            name: id.into(),
            agent_id: Some(1),
            def,
            resources,
            invalid: None,
            labels: Default::default(),
            executor: None,
        }
    }

    fn executor(id: &str) -> ExecutorSpec {
        ExecutorSpec {
            executor_id: id.into(),
            name: id.into(),
            def: crate::empty_def(),
            resources: convert::parse("cpus:0.1;mem:32"),
            info: serde_json::json!({"executor_id": {"value": id}, "type": "DEFAULT"}),
            framework_info: Value::Null,
            task_info: Value::Null,
            default_executor: true,
        }
    }

    fn statuses(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<(String, String, String)> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Update(u) = e {
                out.push((u.task_id, u.reason.unwrap_or_default(), u.message));
            }
        }
        out
    }

    #[test]
    fn a_group_is_launched_whole_with_its_executor_in_one_command() {
        let (mut c, s, mut rx) = setup();
        let o = offer(&mut c, &s, &mut rx);
        let ops = vec![Operation::LaunchGroup {
            executor: executor("g"),
            tasks: vec![task("a", "cpus:0.5;mem:64"), task("b", "cpus:0.5;mem:64")],
        }];
        let plan = c.accept(&s, "f1", &[o], ops, Filters::default(), 1_000).unwrap();
        assert!(statuses(&mut rx).is_empty());
        let (commands, index) = plan.commands();
        assert_eq!(commands.len(), 1, "one command for the whole group");
        assert_eq!(index, [0, 0]);
        let Command::LaunchGroup { executor, tasks } = &commands[0] else {
            panic!("not a group: {:?}", commands[0]);
        };
        assert!(executor.default_executor);
        assert_eq!(tasks.iter().map(|(t, _)| t.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // The tasks' and the executor's resources are held.
        let held: Vec<&String> = c.held.keys().collect();
        assert_eq!(held.len(), 3, "{held:?}");
    }

    #[test]
    fn a_group_that_does_not_fit_is_refused_whole_and_takes_nothing() {
        let (mut c, s, mut rx) = setup();
        let o = offer(&mut c, &s, &mut rx);
        // The agent has 2 cpus: the group asks for 2 and its executor for 0.1 more.
        let ops = vec![Operation::LaunchGroup {
            executor: executor("g"),
            tasks: vec![task("a", "cpus:1;mem:64"), task("b", "cpus:1;mem:64")],
        }];
        let plan = c.accept(&s, "f1", &[o], ops, Filters::default(), 1_000).unwrap();
        assert!(plan.launches.is_empty() && plan.groups.is_empty());
        assert!(c.held.is_empty());
        let refused = statuses(&mut rx);
        assert_eq!(refused.len(), 2);
        for (_, reason, message) in &refused {
            assert_eq!(reason, "REASON_TASK_GROUP_INVALID");
            assert!(
                message.contains("required by task group and its executor are more than available"),
                "{message}"
            );
        }
        // Nothing of the offer stays allocated.
        assert!(c.alloc.allocations_of(c.ids["f1"]).is_empty());
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn one_bad_task_refuses_its_whole_group() {
        let (mut c, s, mut rx) = setup();
        let o = offer(&mut c, &s, &mut rx);
        let ops = vec![Operation::LaunchGroup {
            executor: executor("g"),
            tasks: vec![
                task("a", "cpus:0.1;mem:32"),
                task("a", "cpus:0.1;mem:32"),
                task("c", "cpus:0.1;mem:32"),
            ],
        }];
        let plan = c.accept(&s, "f1", &[o], ops, Filters::default(), 1_000).unwrap();
        assert!(plan.launches.is_empty());
        let refused = statuses(&mut rx);
        assert_eq!(refused.len(), 3);
        assert!(
            refused[2].2.starts_with("Task group is invalid: task a: task id"),
            "{:?}",
            refused[2]
        );
    }
}
