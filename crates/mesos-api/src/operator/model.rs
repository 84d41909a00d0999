//! The cluster as the operator endpoints show it, gathered once per request: registered agents
//! with what they hold, frameworks with their tasks, roles with their weight and quota. Built
//! from the replicated state; the leader's allocator view adds outstanding offers only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tepui_allocator::{Quantities, Resources};
use tepui_state::{
    AgentInfo, ExecutorRecord, FrameworkRecord, Maintenance, NodeRecord, NodeStatus, State, TaskRecord, TaskState,
};

use tepui_master::convert;
use tepui_master::{AllocationView, OfferView};

/// The framework that tasks run with `tepui task run` belong to (their `framework_id` is empty).
pub(crate) const OPERATOR_FRAMEWORK_ID: &str = "tepui";
pub(crate) const OPERATOR_FRAMEWORK_NAME: &str = "tepui-tasks";

/// The framework id a task is shown under.
pub(crate) fn framework_id_of(t: &TaskRecord) -> &str {
    if t.framework_id.is_empty() {
        OPERATOR_FRAMEWORK_ID
    } else {
        &t.framework_id
    }
}

/// The role a task's resources are allocated in.
pub(crate) fn role_of(t: &TaskRecord) -> &str {
    if t.role.is_empty() {
        "*"
    } else {
        &t.role
    }
}

/// Where Mesos lists a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// `tasks`: staging, starting, running, killing.
    Active,
    /// `unreachable_tasks`: on an agent that went silent.
    Unreachable,
    /// `completed_tasks`: ended.
    Completed,
}

pub(crate) fn bucket(t: &TaskRecord) -> Bucket {
    if t.state == TaskState::TaskUnreachable {
        Bucket::Unreachable
    } else if t.state.is_terminal() {
        Bucket::Completed
    } else {
        Bucket::Active
    }
}

/// A task holds resources until it ends (an unreachable task still holds them).
pub(crate) fn holds_resources(t: &TaskRecord) -> bool {
    !t.state.is_terminal()
}

pub(crate) fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A registered agent.
pub(crate) struct Agent<'a> {
    pub node: &'a NodeRecord,
    pub info: &'a AgentInfo,
    /// Everything it brings, dynamic reservations carved out of the unreserved part.
    pub total: Resources,
    /// Held by its live tasks.
    pub used: Resources,
    /// In outstanding offers.
    pub offered: Resources,
}

impl Agent<'_> {
    pub fn id(&self) -> String {
        self.node.id.to_string()
    }

    /// Offers go to it: ready and not in maintenance.
    pub fn active(&self) -> bool {
        self.node.status == NodeStatus::Ready && self.node.maintenance == Maintenance::Active
    }

    /// The agent's HTTP port (Mesos' default 5051 when unknown).
    pub fn port(&self) -> u16 {
        self.info
            .http_addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(5051)
    }

    /// The agent's HTTP address, `ip:port`, or its name when it announced none.
    pub fn addr(&self) -> String {
        if self.info.http_addr.is_empty() {
            format!("{}:{}", self.node.name, self.port())
        } else {
            self.info.http_addr.clone()
        }
    }
}

/// What a framework entry stands for.
#[derive(Clone, Copy)]
pub(crate) enum Kind<'a> {
    Record(&'a FrameworkRecord),
    /// The built-in framework of `tepui task run`.
    Operator,
    /// Removed (torn down or timed out); only its id is still known, from its tasks.
    Removed,
}

pub(crate) struct Framework<'a> {
    pub id: String,
    pub kind: Kind<'a>,
    pub tasks: Vec<&'a TaskRecord>,
    /// Held by its live tasks.
    pub used: Resources,
    pub offered: Resources,
    pub offers: Vec<OfferView>,
}

impl Framework<'_> {
    pub fn record(&self) -> Option<&FrameworkRecord> {
        match self.kind {
            Kind::Record(r) => Some(r),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self.kind {
            Kind::Record(r) => &r.name,
            Kind::Operator => OPERATOR_FRAMEWORK_NAME,
            Kind::Removed => "",
        }
    }

    pub fn user(&self) -> &str {
        match self.kind {
            Kind::Record(r) => &r.user,
            Kind::Operator => "root",
            Kind::Removed => "",
        }
    }

    pub fn roles(&self) -> Vec<String> {
        match self.kind {
            Kind::Record(r) => r.roles.clone(),
            Kind::Operator => vec!["*".into()],
            Kind::Removed => vec![],
        }
    }

    pub fn capabilities(&self) -> Vec<String> {
        self.record().map(|r| r.capabilities.clone()).unwrap_or_default()
    }

    /// Subscribed to the leader (the built-in framework always is).
    pub fn connected(&self) -> bool {
        match self.kind {
            Kind::Record(r) => r.connected,
            Kind::Operator => true,
            Kind::Removed => false,
        }
    }

    pub fn live_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| holds_resources(t)).count()
    }

    pub fn registered_at(&self, cluster_created_at: u64) -> u64 {
        match self.kind {
            Kind::Record(r) => r.registered_at,
            _ => self
                .tasks
                .iter()
                .map(|t| t.created_at)
                .min()
                .unwrap_or(cluster_created_at),
        }
    }

    /// When a removed framework's last task ended (0 while it is registered).
    pub fn unregistered_at(&self) -> u64 {
        match self.kind {
            Kind::Removed => self
                .tasks
                .iter()
                .map(|t| t.finished_at.unwrap_or(t.updated_at))
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }
}

/// A role with its settings and what it holds.
pub(crate) struct RoleRow {
    pub name: String,
    pub weight: f64,
    pub guarantees: Quantities,
    pub limits: Quantities,
    /// Ids of the frameworks subscribed to it.
    pub frameworks: Vec<String>,
    /// Held by live tasks allocated in it.
    pub allocated: Resources,
    /// In outstanding offers to it.
    pub offered: Resources,
    /// Its dominant share (DRF), as the leader's allocator computes it.
    pub share: Option<f64>,
    /// What counts against its quota limits (allocations and reservations), per the allocator.
    pub consumed: Option<Quantities>,
    /// Allocated (offered or used) per the allocator.
    pub allocator_allocated: Option<Quantities>,
}

impl RoleRow {
    pub fn has_quota(&self) -> bool {
        !self.guarantees.is_empty() || !self.limits.is_empty()
    }

    /// Allocated plus offered.
    pub fn resources(&self) -> Resources {
        let mut r = self.allocated.clone();
        r.add(&self.offered);
        r
    }
}

pub(crate) struct Model<'a> {
    pub s: &'a State,
    pub view: Option<&'a AllocationView>,
    tasks_by_framework: BTreeMap<&'a str, Vec<&'a TaskRecord>>,
    used_by_agent: BTreeMap<u64, Resources>,
    /// The executor of each task an executor runs.
    executor_of_task: HashMap<&'a str, &'a ExecutorRecord>,
}

impl<'a> Model<'a> {
    pub fn new(s: &'a State, view: Option<&'a AllocationView>) -> Model<'a> {
        let mut tasks_by_framework: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
        let mut used_by_agent: BTreeMap<u64, Resources> = BTreeMap::new();
        for t in s.tasks.values() {
            tasks_by_framework.entry(framework_id_of(t)).or_default().push(t);
            if holds_resources(t) {
                used_by_agent
                    .entry(t.agent_id)
                    .or_default()
                    .add(&convert::task_resources(t));
            }
        }
        let mut executor_of_task = HashMap::new();
        for e in s.executors.values() {
            executor_of_task.extend(e.tasks.keys().map(|t| (t.as_str(), e)));
            // A live executor holds its own resources beside its tasks'.
            if e.live() {
                used_by_agent
                    .entry(e.agent_id)
                    .or_default()
                    .add(&convert::parse(&e.resources));
            }
        }
        Model {
            s,
            view,
            tasks_by_framework,
            used_by_agent,
            executor_of_task,
        }
    }

    pub fn cluster_id(&self) -> &str {
        self.s.cluster.as_ref().map(|c| c.cluster_id.as_str()).unwrap_or("")
    }

    pub fn cluster_created_at(&self) -> u64 {
        self.s.cluster.as_ref().map(|c| c.created_at).unwrap_or(0)
    }

    fn agent_of(&self, n: &'a NodeRecord) -> Option<Agent<'a>> {
        let info = n.agent.as_ref()?;
        if n.status == NodeStatus::Lost {
            return None;
        }
        let offered = self
            .view
            .and_then(|v| v.agents.get(&n.id))
            .map(|a| a.offered.clone())
            .unwrap_or_default();
        Some(Agent {
            node: n,
            info,
            total: convert::agent_total(info, self.s.reservations.get(&n.id).map(String::as_str)),
            used: self.used_by_agent.get(&n.id).cloned().unwrap_or_default(),
            offered,
        })
    }

    /// Registered agents: those that run an agent and are not lost.
    pub fn agents(&self) -> Vec<Agent<'a>> {
        self.s.nodes.values().filter_map(|n| self.agent_of(n)).collect()
    }

    pub fn agent(&self, id: u64) -> Option<Agent<'a>> {
        self.s.nodes.get(&id).and_then(|n| self.agent_of(n))
    }

    /// Agents that went silent (their tasks are unreachable).
    pub fn unreachable_agents(&self) -> usize {
        self.s
            .nodes
            .values()
            .filter(|n| n.agent.is_some() && n.status == NodeStatus::Lost)
            .count()
    }

    fn framework_of(&self, id: &str, kind: Kind<'a>) -> Framework<'a> {
        let tasks = self.tasks_by_framework.get(id).cloned().unwrap_or_default();
        let mut used = Resources::new();
        for t in tasks.iter().filter(|t| holds_resources(t)) {
            used.add(&convert::task_resources(t));
        }
        for e in self.executors(None).filter(|e| e.framework_id == id) {
            used.add(&convert::parse(&e.resources));
        }
        // The allocator knows the built-in framework by the empty id.
        let key = if matches!(kind, Kind::Operator) { "" } else { id };
        let alloc = self.view.and_then(|v| v.frameworks.get(key));
        Framework {
            id: id.to_string(),
            kind,
            tasks,
            used,
            offered: alloc.map(|a| a.offered.clone()).unwrap_or_default(),
            offers: alloc.map(|a| a.offers.clone()).unwrap_or_default(),
        }
    }

    /// Registered frameworks, and the built-in one while it has tasks.
    pub fn frameworks(&self) -> Vec<Framework<'a>> {
        let mut out: Vec<Framework<'a>> = self
            .s
            .frameworks
            .values()
            .map(|f| self.framework_of(&f.id, Kind::Record(f)))
            .collect();
        if self.tasks_by_framework.contains_key(OPERATOR_FRAMEWORK_ID) {
            out.push(self.framework_of(OPERATOR_FRAMEWORK_ID, Kind::Operator));
        }
        out
    }

    /// Removed frameworks whose tasks the state still holds.
    pub fn completed_frameworks(&self) -> Vec<Framework<'a>> {
        self.tasks_by_framework
            .keys()
            .filter(|id| **id != OPERATOR_FRAMEWORK_ID && !self.s.frameworks.contains_key(**id))
            .map(|id| self.framework_of(id, Kind::Removed))
            .collect()
    }

    /// One framework by id: registered, built-in or removed.
    pub fn framework(&self, id: &str) -> Option<Framework<'a>> {
        if let Some(f) = self.s.frameworks.get(id) {
            return Some(self.framework_of(id, Kind::Record(f)));
        }
        if !self.tasks_by_framework.contains_key(id) {
            return None;
        }
        let kind = if id == OPERATOR_FRAMEWORK_ID {
            Kind::Operator
        } else {
            Kind::Removed
        };
        Some(self.framework_of(id, kind))
    }

    /// Every task, of every framework.
    pub fn tasks(&self) -> impl Iterator<Item = &'a TaskRecord> {
        self.s.tasks.values()
    }

    /// The executor that runs a task, when one does.
    pub fn executor_of(&self, task_id: &str) -> Option<&'a ExecutorRecord> {
        self.executor_of_task.get(task_id).copied()
    }

    /// Every live executor (of `framework` only, when given).
    pub fn executors(&self, framework: Option<&'a str>) -> impl Iterator<Item = &'a ExecutorRecord> + 'a {
        self.s
            .executors
            .values()
            .filter(move |e| e.live() && framework.is_none_or(|f| e.framework_id == f))
    }

    /// The default role, roles with settings, roles of frameworks and of live tasks.
    pub fn roles(&self) -> Vec<RoleRow> {
        let mut names: BTreeSet<String> = BTreeSet::from(["*".to_string()]);
        names.extend(self.s.roles.keys().cloned());
        for f in self.s.frameworks.values() {
            names.extend(f.roles.iter().cloned());
        }
        let mut allocated: BTreeMap<&str, Resources> = BTreeMap::new();
        for t in self.s.tasks.values().filter(|t| holds_resources(t)) {
            allocated
                .entry(role_of(t))
                .or_default()
                .add(&convert::task_resources(t));
        }
        names.extend(allocated.keys().map(|r| r.to_string()));
        let mut offered: BTreeMap<String, Resources> = BTreeMap::new();
        for f in self.view.iter().flat_map(|v| v.frameworks.values()) {
            for o in &f.offers {
                offered
                    .entry(o.role.as_str().to_string())
                    .or_default()
                    .add(&o.resources);
            }
        }
        names.extend(offered.keys().cloned());
        if let Some(v) = self.view {
            names.extend(v.roles.keys().cloned());
        }
        names
            .into_iter()
            .map(|name| {
                let config = self.s.roles.get(&name).cloned().unwrap_or_default();
                let mut frameworks: Vec<String> = self
                    .s
                    .frameworks
                    .values()
                    .filter(|f| f.roles.contains(&name))
                    .map(|f| f.id.clone())
                    .collect();
                let mut row = RoleRow {
                    weight: config.weight_milli as f64 / 1000.0,
                    guarantees: Quantities::parse(&config.quota_guarantees).unwrap_or_default(),
                    limits: Quantities::parse(&config.quota_limits).unwrap_or_default(),
                    frameworks: vec![],
                    allocated: allocated.get(name.as_str()).cloned().unwrap_or_default(),
                    offered: offered.get(&name).cloned().unwrap_or_default(),
                    share: None,
                    consumed: None,
                    allocator_allocated: None,
                    name,
                };
                // On the leader, what the allocator enforces (the same settings, once synced).
                if let Some(a) = self.view.and_then(|v| v.roles.get(&row.name)) {
                    row.weight = a.weight;
                    row.guarantees = a.guarantees.clone();
                    row.limits = a.limits.clone();
                    row.share = Some(a.share);
                    row.consumed = Some(a.consumed.clone());
                    row.allocator_allocated = Some(a.allocated.clone());
                    frameworks.extend(a.frameworks.iter().cloned());
                }
                frameworks.sort();
                frameworks.dedup();
                row.frameworks = frameworks;
                row
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! A small replicated state to build models from.

    use std::collections::BTreeMap;

    use tepui_state::{
        AgentInfo, ClusterInfo, FrameworkRecord, Maintenance, NodeRecord, NodeStatus, Resources, Role, State, TaskDef,
        TaskRecord, TaskState,
    };

    pub fn state() -> State {
        let mut s = State {
            cluster: Some(ClusterInfo {
                cluster_id: "c0ffee".into(),
                ca_cert_pem: String::new(),
                ca_key_pem: String::new(),
                created_at: 1_000,
            }),
            ..State::default()
        };
        for (id, status) in [(1, NodeStatus::Ready), (2, NodeStatus::Ready), (3, NodeStatus::Lost)] {
            s.nodes.insert(id, agent(id, status));
        }
        s
    }

    pub fn agent(id: u64, status: NodeStatus) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("a{id}"),
            role: Role::Agent,
            cluster_addr: String::new(),
            http_addr: String::new(),
            agent: Some(AgentInfo {
                resources: Resources {
                    cpus_milli: 4000,
                    mem_mb: 4096,
                    disk_mb: 1000,
                    reserved: String::new(),
                    ports: vec![(31000, 31009)],
                },
                attributes: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
                http_addr: format!("10.0.0.{id}:5051"),
                version: "0.1.0".into(),
                registered_at: 2_000,
            }),
            status,
            joined_at: 1_500,
            status_changed_at: 2_000,
            token_id: None,
            maintenance: Maintenance::Active,
        }
    }

    pub fn task(id: &str, agent: u64, framework: &str, state: TaskState, created_at: u64) -> TaskRecord {
        let def = TaskDef {
            args: vec!["/bin/sleep".into(), "1000".into()],
            cpus_milli: 500,
            mem_mb: 128,
            kill_grace_ms: 1000,
            ..TaskDef::default()
        };
        TaskRecord {
            state,
            framework_id: framework.into(),
            ..TaskRecord::staging(id, id, agent, def, created_at)
        }
    }

    pub fn framework(id: &str, connected: bool) -> FrameworkRecord {
        FrameworkRecord {
            id: id.into(),
            name: format!("fw-{id}"),
            user: "root".into(),
            principal: None,
            hostname: None,
            webui_url: None,
            roles: vec!["eng".into()],
            capabilities: vec!["MULTI_ROLE".into()],
            failover_timeout_ms: 60_000,
            registered_at: 3_000,
            reregistered_at: None,
            connected,
            disconnected_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use tepui_allocator::ResourceName;
    use tepui_state::TaskState;

    use super::tests_support::*;
    use super::*;

    #[test]
    fn agents_frameworks_and_roles_come_from_the_state() {
        let mut s = state();
        s.frameworks.insert("f1".into(), framework("f1", true));
        s.tasks
            .insert("t1".into(), task("t1", 1, "", TaskState::TaskRunning, 10));
        let mut eng = task("t2", 1, "f1", TaskState::TaskRunning, 20);
        eng.role = "eng".into();
        s.tasks.insert("t2".into(), eng);
        s.tasks
            .insert("t3".into(), task("t3", 2, "gone", TaskState::TaskFinished, 30));
        s.reservations.insert(2, "cpus(eng,dynamic):1".into());
        let m = Model::new(&s, None);

        let agents = m.agents();
        assert_eq!(
            agents.iter().map(|a| a.node.id).collect::<Vec<_>>(),
            vec![1, 2],
            "the lost one is not registered"
        );
        assert_eq!(m.unreachable_agents(), 1);
        assert_eq!(agents[0].used.scalar_sum(&ResourceName::CPUS).milli(), 1000);
        assert!(agents[1].used.is_empty(), "a finished task holds nothing");
        assert_eq!(agents[1].total.reserved().scalar_sum(&ResourceName::CPUS).milli(), 1000);
        assert_eq!(agents[0].port(), 5051);

        let ids: Vec<String> = m.frameworks().iter().map(|f| f.id.clone()).collect();
        assert_eq!(ids, vec!["f1".to_string(), OPERATOR_FRAMEWORK_ID.to_string()]);
        let done: Vec<String> = m.completed_frameworks().iter().map(|f| f.id.clone()).collect();
        assert_eq!(done, vec!["gone".to_string()]);
        assert_eq!(
            m.framework("tepui").map(|f| f.name().to_string()).as_deref(),
            Some("tepui-tasks")
        );
        assert!(m.framework("nobody").is_none());

        let roles = m.roles();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["*", "eng"]);
        assert_eq!(roles[1].frameworks, vec!["f1".to_string()]);
        assert_eq!(roles[1].allocated.scalar_sum(&ResourceName::MEM).milli(), 128_000);
        assert_eq!(roles[0].weight, 1.0);
    }

    #[test]
    fn the_builtin_framework_is_listed_only_with_tasks() {
        let s = state();
        let m = Model::new(&s, None);
        assert!(m.frameworks().is_empty());
        assert_eq!(m.roles().len(), 1);
    }
}
