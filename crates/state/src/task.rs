//! Tasks: what runs on an agent, where, with which resources, and in which state.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Millis, NodeId, NodeStatus, State};

/// Task states as Mesos has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    TaskStaging,
    TaskStarting,
    TaskRunning,
    TaskKilling,
    TaskFinished,
    TaskFailed,
    TaskKilled,
    TaskError,
    TaskLost,
    TaskDropped,
    TaskUnreachable,
    TaskGone,
    TaskGoneByOperator,
    TaskUnknown,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskError,
        TaskState::TaskLost,
        TaskState::TaskDropped,
        TaskState::TaskUnreachable,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::TaskStaging => "TASK_STAGING",
            TaskState::TaskStarting => "TASK_STARTING",
            TaskState::TaskRunning => "TASK_RUNNING",
            TaskState::TaskKilling => "TASK_KILLING",
            TaskState::TaskFinished => "TASK_FINISHED",
            TaskState::TaskFailed => "TASK_FAILED",
            TaskState::TaskKilled => "TASK_KILLED",
            TaskState::TaskError => "TASK_ERROR",
            TaskState::TaskLost => "TASK_LOST",
            TaskState::TaskDropped => "TASK_DROPPED",
            TaskState::TaskUnreachable => "TASK_UNREACHABLE",
            TaskState::TaskGone => "TASK_GONE",
            TaskState::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::TaskUnknown => "TASK_UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A terminal state never changes again; its resources are free.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::TaskFinished
                | TaskState::TaskFailed
                | TaskState::TaskKilled
                | TaskState::TaskError
                | TaskState::TaskLost
                | TaskState::TaskDropped
                | TaskState::TaskGone
                | TaskState::TaskGoneByOperator
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDef {
    pub name: Option<String>,
    pub host_port: u16,
    /// Bridge mode: the port inside the container (0: same as host_port).
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDef {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// What to run: kept in the state, and sent to the agent as it is (tepui-proto's `TaskLaunch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDef {
    pub image: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    pub cpus_milli: u64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    pub pids: Option<u64>,
    /// `host` or `bridge`.
    pub network: String,
    pub ports: Vec<PortDef>,
    pub volumes: Vec<VolumeDef>,
    pub read_only_rootfs: bool,
    pub kill_grace_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckDef>,
    /// Secrets the task gets, by reference: the leader resolves them at each launch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
}

/// A secret a task gets: as an environment variable, as a file (on a tmpfs, read-only), or
/// both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The secret's path (normalized).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// An absolute path inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Default for TaskDef {
    /// Nothing to run yet: no image, no command, no resources, host networking.
    fn default() -> TaskDef {
        TaskDef {
            image: None,
            args: vec![],
            env: BTreeMap::new(),
            user: None,
            cwd: None,
            cpus_milli: 0,
            mem_mb: 0,
            disk_mb: 0,
            pids: None,
            network: "host".into(),
            ports: vec![],
            volumes: vec![],
            read_only_rootfs: false,
            kill_grace_ms: 0,
            health_checks: vec![],
            secrets: vec![],
        }
    }
}

/// A health check the agent runs next to the task; all of a task's checks must pass for it to
/// be healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckDef {
    /// `HTTP`, `HTTPS`, `TCP` or `COMMAND`.
    pub protocol: String,
    #[serde(default)]
    pub path: Option<String>,
    /// The host port to reach (HTTP, HTTPS, TCP), on 127.0.0.1.
    #[serde(default)]
    pub port: Option<u16>,
    /// A shell command run in the task's container (COMMAND); exit 0 is healthy.
    #[serde(default)]
    pub command: Option<String>,
    /// Failures in this long after the start do not count, until the first success.
    pub grace_period_ms: u64,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// This many failures in a row make the task unhealthy, and it is killed.
    pub max_consecutive_failures: u32,
    /// Wait before the first check.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub name: String,
    pub agent_id: NodeId,
    pub def: TaskDef,
    pub state: TaskState,
    pub reason: Option<String>,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Updates already applied, so a resent one changes nothing.
    pub last_update_uuid: Option<String>,
    /// The newest of the agent's updates applied: one resent from before it (its first send
    /// was committed while the resend was on its way) must not take the task back.
    #[serde(default)]
    pub last_agent_seq: Option<u64>,
    pub kill_requested: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The framework that launched it; empty for tasks run through `/v1/tasks`.
    #[serde(default)]
    pub framework_id: String,
    /// The role its resources are allocated in (`*` when empty).
    #[serde(default)]
    pub role: String,
    /// Exactly the resources it holds, in the allocator's text form (reservations included);
    /// empty: derived from `def`.
    #[serde(default)]
    pub resources: String,
    /// The latest status update its framework acknowledged.
    #[serde(default)]
    pub acknowledged_uuid: Option<String>,
    /// What its health checks last said (none: it has none, or no result yet).
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Free-form labels (a framework's TaskInfo labels; the services scheduler's app and version).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container's own address (bridge networking), as its agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip: Option<IpAddr>,
}

impl TaskRecord {
    /// Whether the task may be found and sent traffic (DNS, the gateway): running, not being
    /// killed (it leaves the answers and routes before it stops answering) and, when it has
    /// health checks, healthy (a task whose checks have not answered yet is not).
    pub fn discoverable(&self) -> bool {
        self.state == TaskState::TaskRunning
            && !self.kill_requested
            && if self.def.health_checks.is_empty() {
                self.healthy != Some(false)
            } else {
                self.healthy == Some(true)
            }
    }

    /// A task just created on `agent_id`: staging, with no status from the agent yet. The
    /// caller sets the framework's fields (`framework_id`, `role`, `resources`, `labels`).
    pub fn staging(
        id: impl Into<String>,
        name: impl Into<String>,
        agent_id: NodeId,
        def: TaskDef,
        now: Millis,
    ) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            name: name.into(),
            agent_id,
            def,
            state: TaskState::TaskStaging,
            reason: None,
            message: String::new(),
            exit_code: None,
            signal: None,
            last_update_uuid: None,
            last_agent_seq: None,
            kill_requested: false,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            framework_id: String::new(),
            role: String::new(),
            resources: String::new(),
            acknowledged_uuid: None,
            healthy: None,
            labels: BTreeMap::new(),
            container_ip: None,
        }
    }
}

/// One status change reported by an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUpdate {
    pub uuid: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub at: Millis,
    #[serde(default)]
    pub healthy: Option<bool>,
    /// The agent's sequence number of the update (none for statuses the leader sets).
    #[serde(default)]
    pub seq: Option<u64>,
    /// The container's own address (bridge networking), when the update says it; an update
    /// without one leaves the task's as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip: Option<IpAddr>,
}

/// What an agent has left after the tasks that are not terminal took their share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Free {
    pub cpus_milli: u64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    pub ports_in_use: Vec<u16>,
}

/// Why a task cannot go where it was asked to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PlacementError {
    #[error("no agent is ready to run tasks")]
    NoAgents,
    #[error("agent {0} is not a ready agent, or is in maintenance")]
    AgentNotReady(String),
    #[error("no agent has {need}: the most free is {best}")]
    NotEnough { need: String, best: String },
    #[error("port {0} is not free on agent {1}")]
    PortTaken(u16, NodeId),
    #[error("agent {agent} has no free port left for {wanted} more")]
    NoPorts { agent: NodeId, wanted: usize },
}

impl State {
    /// Free resources of an agent.
    pub fn free_on(&self, agent: NodeId) -> Option<Free> {
        let node = self.nodes.get(&agent)?;
        let info = node.agent.as_ref()?;
        let mut free = Free {
            cpus_milli: info.resources.cpus_milli,
            mem_mb: info.resources.mem_mb,
            disk_mb: info.resources.disk_mb,
            ports_in_use: vec![],
        };
        for t in self
            .tasks
            .values()
            .filter(|t| t.agent_id == agent && !t.state.is_terminal())
        {
            free.cpus_milli = free.cpus_milli.saturating_sub(t.def.cpus_milli);
            free.mem_mb = free.mem_mb.saturating_sub(t.def.mem_mb);
            free.disk_mb = free.disk_mb.saturating_sub(t.def.disk_mb);
            free.ports_in_use.extend(t.def.ports.iter().map(|p| p.host_port));
        }
        // Executors hold their own resources besides their tasks'.
        for e in self.executors.values().filter(|e| e.agent_id == agent && e.live()) {
            free.cpus_milli = free.cpus_milli.saturating_sub(e.def.cpus_milli);
            free.mem_mb = free.mem_mb.saturating_sub(e.def.mem_mb);
            free.disk_mb = free.disk_mb.saturating_sub(e.def.disk_mb);
            free.ports_in_use.extend(e.def.ports.iter().map(|p| p.host_port));
        }
        Some(free)
    }

    /// Whether `def` fits on `agent` now; the check `CreateTask` makes, so no agent is ever
    /// over-committed whatever raced to it.
    pub fn check_fits(&self, agent: NodeId, def: &TaskDef) -> Result<(), PlacementError> {
        let node = self
            .nodes
            .get(&agent)
            .ok_or_else(|| PlacementError::AgentNotReady(agent.to_string()))?;
        let info = node
            .agent
            .as_ref()
            .ok_or_else(|| PlacementError::AgentNotReady(agent.to_string()))?;
        if node.status != NodeStatus::Ready || node.maintenance != crate::Maintenance::Active {
            return Err(PlacementError::AgentNotReady(node.name.clone()));
        }
        let free = self.free_on(agent).unwrap_or_default();
        if def.cpus_milli > free.cpus_milli || def.mem_mb > free.mem_mb || def.disk_mb > free.disk_mb {
            return Err(PlacementError::NotEnough {
                need: describe(def),
                best: describe_free(&free),
            });
        }
        for p in &def.ports {
            let in_range = info
                .resources
                .ports
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&p.host_port));
            if !in_range || free.ports_in_use.contains(&p.host_port) {
                return Err(PlacementError::PortTaken(p.host_port, agent));
            }
        }
        Ok(())
    }

    /// Picks an agent for a task that needs `def` (ports still unassigned: `want_ports` of
    /// them), the one with the most free CPU, and assigns ports from its range. Pure: the
    /// same state gives the same answer.
    pub fn place(
        &self,
        def: &TaskDef,
        want_ports: usize,
        only: Option<NodeId>,
    ) -> Result<(NodeId, Vec<u16>), PlacementError> {
        let candidates: Vec<NodeId> = match only {
            Some(id) => {
                let ok = self.nodes.get(&id).is_some_and(|n| {
                    n.agent.is_some() && n.status == NodeStatus::Ready && n.maintenance == crate::Maintenance::Active
                });
                if !ok {
                    let name = self
                        .nodes
                        .get(&id)
                        .map(|n| n.name.clone())
                        .unwrap_or_else(|| id.to_string());
                    return Err(PlacementError::AgentNotReady(name));
                }
                vec![id]
            }
            None => self
                .nodes
                .values()
                .filter(|n| {
                    n.agent.is_some() && n.status == NodeStatus::Ready && n.maintenance == crate::Maintenance::Active
                })
                .map(|n| n.id)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(PlacementError::NoAgents);
        }
        let mut best: Option<(NodeId, Free)> = None;
        let mut most_free = Free::default();
        for id in candidates {
            let free = self.free_on(id).unwrap_or_default();
            if free.cpus_milli >= most_free.cpus_milli {
                most_free = free.clone();
            }
            let fits = def.cpus_milli <= free.cpus_milli && def.mem_mb <= free.mem_mb && def.disk_mb <= free.disk_mb;
            if fits && best.as_ref().is_none_or(|(_, b)| free.cpus_milli > b.cpus_milli) {
                best = Some((id, free));
            }
        }
        let (agent, free) = best.ok_or_else(|| PlacementError::NotEnough {
            need: describe(def),
            best: describe_free(&most_free),
        })?;
        let ranges = self.nodes[&agent]
            .agent
            .as_ref()
            .map(|a| a.resources.ports.clone())
            .unwrap_or_default();
        let mut ports = vec![];
        'ranges: for (lo, hi) in ranges {
            for p in lo..=hi {
                if ports.len() == want_ports {
                    break 'ranges;
                }
                let taken = free.ports_in_use.contains(&p) || def.ports.iter().any(|d| d.host_port == p);
                if !taken {
                    ports.push(p);
                }
            }
        }
        if ports.len() < want_ports {
            return Err(PlacementError::NoPorts {
                agent,
                wanted: want_ports,
            });
        }
        Ok((agent, ports))
    }
}

fn describe(def: &TaskDef) -> String {
    format!(
        "{} cpus, {} MB mem, {} MB disk",
        def.cpus_milli as f64 / 1000.0,
        def.mem_mb,
        def.disk_mb
    )
}

fn describe_free(f: &Free) -> String {
    format!(
        "{} cpus, {} MB mem, {} MB disk",
        f.cpus_milli as f64 / 1000.0,
        f.mem_mb,
        f.disk_mb
    )
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{def, record, state_with_agents};
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AgentInfo, ClusterInfo, Command, NodeRecord, Resources, Response, Role};

    fn agent(id: NodeId, cpus_milli: u64, mem_mb: u64) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("a{id}"),
            role: Role::Agent,
            cluster_addr: String::new(),
            http_addr: String::new(),
            agent: Some(AgentInfo {
                resources: Resources {
                    cpus_milli,
                    mem_mb,
                    disk_mb: 1000,
                    reserved: String::new(),
                    ports: vec![(31000, 31002)],
                },
                attributes: BTreeMap::new(),
                http_addr: String::new(),
                version: String::new(),
                registered_at: 0,
            }),
            status: NodeStatus::Ready,
            joined_at: 0,
            status_changed_at: 0,
            token_id: None,
            maintenance: crate::Maintenance::Active,
        }
    }

    pub(crate) fn state_with_agents(n: u64) -> State {
        let mut s = State {
            cluster: Some(ClusterInfo {
                cluster_id: "c".into(),
                ca_cert_pem: String::new(),
                ca_key_pem: String::new(),
                created_at: 0,
            }),
            ..State::default()
        };
        for id in 1..=n {
            s.nodes.insert(id, agent(id, 2000, 1024));
        }
        s
    }

    pub(crate) fn def(cpus_milli: u64, mem_mb: u64) -> TaskDef {
        TaskDef {
            image: None,
            args: vec!["true".into()],
            env: BTreeMap::new(),
            user: None,
            cwd: None,
            cpus_milli,
            mem_mb,
            disk_mb: 0,
            pids: None,
            network: "host".into(),
            ports: vec![],
            volumes: vec![],
            read_only_rootfs: false,
            kill_grace_ms: 1000,
            health_checks: vec![],
            secrets: vec![],
        }
    }

    pub(crate) fn record(id: &str, agent_id: NodeId, def: TaskDef) -> Box<TaskRecord> {
        Box::new(TaskRecord {
            id: id.into(),
            name: id.into(),
            agent_id,
            def,
            state: TaskState::TaskStaging,
            reason: None,
            message: String::new(),
            exit_code: None,
            signal: None,
            last_update_uuid: None,
            last_agent_seq: None,
            kill_requested: false,
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
            framework_id: String::new(),
            role: String::new(),
            resources: String::new(),
            acknowledged_uuid: None,
            healthy: None,
            labels: Default::default(),
            container_ip: None,
        })
    }

    fn update(uuid: &str, state: TaskState) -> TaskUpdate {
        TaskUpdate {
            uuid: uuid.into(),
            state,
            reason: None,
            message: String::new(),
            exit_code: None,
            signal: None,
            at: 5,
            healthy: None,
            seq: None,
            container_ip: None,
        }
    }

    #[test]
    fn states_round_trip_their_mesos_names() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        assert!(TaskState::TaskKilled.is_terminal());
        assert!(!TaskState::TaskUnreachable.is_terminal());
    }

    #[test]
    fn updates_are_idempotent_and_terminal_is_final() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::CreateTask {
                task: record("t", 1, def(100, 10)),
            },
        );
        let status = |u| Command::TaskStatus {
            task_id: "t".into(),
            update: u,
        };
        s.apply(2, &status(update("u1", TaskState::TaskRunning)));
        assert_eq!(s.tasks["t"].started_at, Some(5));
        s.apply(3, &status(update("u2", TaskState::TaskFinished)));
        s.apply(4, &status(update("u3", TaskState::TaskRunning)));
        assert_eq!(s.tasks["t"].state, TaskState::TaskFinished);
        assert_eq!(
            s.free_on(1).unwrap().cpus_milli,
            2000,
            "a finished task frees its resources"
        );
    }

    /// The agent resends an update it has no acknowledgement for yet; when the first send is
    /// committed and acknowledged, the next update goes out and can be committed before the
    /// resend. The resend must not take the task back to the older state.
    #[test]
    fn an_older_update_resent_after_a_newer_one_changes_nothing() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::CreateTask {
                task: record("t", 1, def(100, 10)),
            },
        );
        let status = |uuid, state, seq| Command::TaskStatus {
            task_id: "t".into(),
            update: TaskUpdate {
                seq: Some(seq),
                ..update(uuid, state)
            },
        };
        s.apply(2, &status("starting", TaskState::TaskStarting, 0));
        s.apply(3, &status("running", TaskState::TaskRunning, 1));
        s.apply(4, &status("starting", TaskState::TaskStarting, 0));
        assert_eq!(s.tasks["t"].state, TaskState::TaskRunning);
        assert_eq!(s.tasks["t"].last_update_uuid.as_deref(), Some("running"));
        // Statuses the leader sets carry no sequence and always apply.
        s.apply(5, &status_from_leader("unreachable", TaskState::TaskUnreachable));
        assert_eq!(s.tasks["t"].state, TaskState::TaskUnreachable);
        s.apply(6, &status("running-again", TaskState::TaskRunning, 2));
        assert_eq!(s.tasks["t"].state, TaskState::TaskRunning);
    }

    #[test]
    fn the_container_address_stays_until_an_update_says_another() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::CreateTask {
                task: record("t", 1, def(100, 10)),
            },
        );
        let ip: IpAddr = "10.213.0.7".parse().unwrap();
        let status = |u: TaskUpdate| Command::TaskStatus {
            task_id: "t".into(),
            update: u,
        };
        s.apply(
            2,
            &status(TaskUpdate {
                container_ip: Some(ip),
                ..update("running", TaskState::TaskRunning)
            }),
        );
        assert_eq!(s.tasks["t"].container_ip, Some(ip));
        // A health update, then the leader's own status, say nothing of it.
        s.apply(
            3,
            &status(TaskUpdate {
                healthy: Some(true),
                ..update("healthy", TaskState::TaskRunning)
            }),
        );
        s.apply(4, &status_from_leader("unreachable", TaskState::TaskUnreachable));
        assert_eq!(s.tasks["t"].container_ip, Some(ip));
        // Older records and logs without the field still load.
        let mut json = serde_json::to_value(&s.tasks["t"]).unwrap();
        json.as_object_mut().unwrap().remove("container_ip");
        let old: TaskRecord = serde_json::from_value(json).unwrap();
        assert_eq!(old.container_ip, None);
        let u: TaskUpdate = serde_json::from_str(
            r#"{"uuid":"u","state":"TASK_RUNNING","reason":null,"message":"","exit_code":null,"signal":null,"at":1}"#,
        )
        .unwrap();
        assert_eq!(u.container_ip, None);
    }

    fn status_from_leader(uuid: &str, state: TaskState) -> Command {
        Command::TaskStatus {
            task_id: "t".into(),
            update: update(uuid, state),
        }
    }

    #[test]
    fn forgetting_drops_ended_tasks_only() {
        let mut s = state_with_agents(1);
        for id in ["ended", "live"] {
            s.apply(
                1,
                &Command::CreateTask {
                    task: record(id, 1, def(100, 10)),
                },
            );
        }
        s.apply(
            2,
            &Command::TaskStatus {
                task_id: "ended".into(),
                update: update("u1", TaskState::TaskFinished),
            },
        );
        let r = s.apply(
            3,
            &Command::ForgetTasks {
                task_ids: vec!["ended".into(), "live".into(), "never".into()],
            },
        );
        assert_eq!(r, crate::Response::Ok);
        assert_eq!(s.tasks.keys().collect::<Vec<_>>(), ["live"]);
    }

    #[test]
    fn a_killed_task_stays_killing_until_it_ends() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::CreateTask {
                task: record("t", 1, def(100, 10)),
            },
        );
        s.apply(
            2,
            &Command::KillTask {
                task_id: "t".into(),
                now: 3,
            },
        );
        s.apply(
            3,
            &Command::TaskStatus {
                task_id: "t".into(),
                update: update("u1", TaskState::TaskRunning),
            },
        );
        assert_eq!(s.tasks["t"].state, TaskState::TaskKilling);
        s.apply(
            4,
            &Command::TaskStatus {
                task_id: "t".into(),
                update: update("u2", TaskState::TaskKilled),
            },
        );
        assert_eq!(s.tasks["t"].state, TaskState::TaskKilled);
    }

    #[test]
    fn placement_prefers_the_freest_agent_and_assigns_ports() {
        let mut s = state_with_agents(2);
        s.apply(
            1,
            &Command::CreateTask {
                task: record("t1", 1, def(1500, 10)),
            },
        );
        let (agent, ports) = s.place(&def(500, 10), 2, None).unwrap();
        assert_eq!(agent, 2);
        assert_eq!(ports, vec![31000, 31001]);
        assert!(matches!(
            s.place(&def(4000, 10), 0, None),
            Err(PlacementError::NotEnough { .. })
        ));
        assert_eq!(
            s.place(&def(1, 1), 4, Some(2)),
            Err(PlacementError::NoPorts { agent: 2, wanted: 4 })
        );
    }

    #[test]
    fn lost_agents_get_no_tasks() {
        let mut s = state_with_agents(1);
        s.nodes.get_mut(&1).unwrap().status = NodeStatus::Lost;
        assert_eq!(s.place(&def(1, 1), 0, None), Err(PlacementError::NoAgents));
        let refused = s.apply(
            1,
            &Command::CreateTask {
                task: record("t", 1, def(1, 1)),
            },
        );
        assert!(matches!(refused, Response::Rejected(_)));
    }

    proptest! {
        /// Whatever order creates, kills and ends arrive in, no agent is ever over-committed.
        #[test]
        fn no_agent_is_ever_over_committed(ops in proptest::collection::vec((0u8..3, 1u64..4, 0u64..1500, 0u64..600, 0usize..40), 1..80)) {
            let mut s = state_with_agents(3);
            for (i, (op, agent, cpus, mem, pick)) in ops.into_iter().enumerate() {
                let index = i as u64 + 1;
                match op {
                    0 => { s.apply(index, &Command::CreateTask { task: record(&format!("t{i}"), agent, def(cpus, mem)) }); }
                    1 => {
                        if let Some(id) = s.tasks.keys().nth(pick).cloned() {
                            s.apply(index, &Command::TaskStatus { task_id: id, update: update(&format!("u{i}"), TaskState::TaskFinished) });
                        }
                    }
                    _ => {
                        if let Some(id) = s.tasks.keys().nth(pick).cloned() {
                            s.apply(index, &Command::KillTask { task_id: id, now: 1 });
                        }
                    }
                }
                for a in 1..=3u64 {
                    let used: (u64, u64) = s.tasks.values()
                        .filter(|t| t.agent_id == a && !t.state.is_terminal())
                        .fold((0, 0), |acc, t| (acc.0 + t.def.cpus_milli, acc.1 + t.def.mem_mb));
                    prop_assert!(used.0 <= 2000 && used.1 <= 1024, "agent {} over-committed: {:?}", a, used);
                }
            }
        }
    }
}

#[cfg(test)]
mod maintenance_tests {
    use super::tests_support::*;
    use crate::{Command, Maintenance, Response};

    #[test]
    fn agents_in_maintenance_get_no_tasks() {
        let mut s = state_with_agents(1);
        for m in [Maintenance::Draining, Maintenance::Drained, Maintenance::Deactivated] {
            assert_eq!(
                s.apply(1, &Command::SetMaintenance { id: 1, maintenance: m }),
                Response::Ok
            );
            assert!(s.place(&def(1, 1), 0, None).is_err(), "{m:?}");
            assert!(s.place(&def(1, 1), 0, Some(1)).is_err(), "{m:?}");
            assert!(matches!(
                s.apply(
                    2,
                    &Command::CreateTask {
                        task: record("t", 1, def(1, 1))
                    }
                ),
                Response::Rejected(_)
            ));
        }
        s.apply(
            3,
            &Command::SetMaintenance {
                id: 1,
                maintenance: Maintenance::Active,
            },
        );
        assert!(s.place(&def(1, 1), 0, None).is_ok());
    }
}
