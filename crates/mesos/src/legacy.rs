//! The older JSON endpoints of the Mesos master, which tools such as Mesos-DNS, Marathon-LB
//! and dashboards still read:
//!
//! | endpoint | type |
//! | --- | --- |
//! | `/master/state` (alias `/state`, `/state.json`) | [`State`] |
//! | `/master/state-summary` | [`StateSummary`] |
//! | `/master/tasks` | [`Tasks`] |
//! | `/master/frameworks` | [`Frameworks`] |
//! | `/master/slaves` | [`Slaves`] |
//! | `/master/roles` | [`Roles`] |
//!
//! These are not v1 shapes: agents are `slaves` with a `slave_id`, IDs are bare strings,
//! times are seconds as floats, resources are a flat map (`{"cpus": 2, "mem": 1024,
//! "ports": "[31000-32000]"}`), attributes are a flat map, labels are a bare array, and
//! capabilities are bare strings. The `from_v1` helpers build them from v1 messages the way
//! Mesos does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::v1::{
    self, AgentCapabilityType, AllocationInfo, Attribute, ContainerId, ContainerInfo, DiscoveryInfo, DomainInfo,
    Environment, ExecutorType, FrameworkCapabilityType, HealthCheck, IpAddress, Label, MasterCapabilityType,
    PortMapping, Resource, ResourceTotals, TaskState, ValueType,
};

/// A value in a flat resource or attribute map: a number for scalars, Mesos' text form for
/// ranges (`"[31000-32000]"`), sets (`"{a, b}"`) and text attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlatValue {
    Number(f64),
    Text(String),
}

impl FlatValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FlatValue::Number(n) => Some(*n),
            FlatValue::Text(_) => None,
        }
    }
}

/// Resources as a flat map by name. `cpus`, `gpus`, `mem` and `disk` are always present (0
/// when absent); revocable resources appear as `<name>_revocable`.
pub type FlatResources = BTreeMap<String, FlatValue>;

/// Builds the flat map from v1 resources, as Mesos' legacy endpoints do.
pub fn flat_resources<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> FlatResources {
    let totals = ResourceTotals::of(resources);
    let mut out = FlatResources::new();
    for name in ["cpus", "gpus", "mem", "disk"] {
        out.insert(name.to_owned(), FlatValue::Number(0.0));
    }
    for (name, v) in totals.scalars {
        out.insert(name, FlatValue::Number(v));
    }
    for (name, ranges) in totals.ranges {
        out.insert(name, FlatValue::Text(ranges.to_string()));
    }
    for (name, items) in totals.sets {
        let set = v1::Set {
            item: items.into_iter().collect(),
        };
        out.insert(name, FlatValue::Text(set.to_string()));
    }
    out
}

/// Attributes as a flat map by name.
pub fn flat_attributes<'a>(attributes: impl IntoIterator<Item = &'a Attribute>) -> BTreeMap<String, FlatValue> {
    let mut out = BTreeMap::new();
    for a in attributes {
        let value = match &a.kind {
            ValueType::Scalar => a.scalar.map(|s| FlatValue::Number(s.value)),
            ValueType::Ranges => a.ranges.as_ref().map(|r| FlatValue::Text(r.to_string())),
            ValueType::Set => a.set.as_ref().map(|s| FlatValue::Text(s.to_string())),
            ValueType::Text => a.text.as_ref().map(|t| FlatValue::Text(t.value.clone())),
            ValueType::Unknown(_) => None,
        };
        if let Some(value) = value {
            out.insert(a.name.clone(), value);
        }
    }
    out
}

/// The role Mesos reports for a task or executor: its first resource's allocation role
/// (empty when unset), or nothing when it has no resources.
fn allocation_role(resources: &[Resource]) -> Option<String> {
    resources.first().map(|r| {
        r.allocation_info
            .as_ref()
            .and_then(|a| a.role.clone())
            .unwrap_or_default()
    })
}

/// `/master/state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_user: Option<String>,
    /// Seconds since the epoch.
    pub start_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elected_time: Option<f64>,
    pub id: String,
    pub pid: String,
    pub hostname: String,
    #[serde(default)]
    pub capabilities: Vec<MasterCapabilityType>,
    #[serde(default)]
    pub activated_slaves: f64,
    #[serde(default)]
    pub deactivated_slaves: f64,
    #[serde(default)]
    pub unreachable_slaves: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    /// Deprecated: the leader's libprocess pid (`master@10.0.0.1:5050`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_info: Option<LeaderInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_log_file: Option<String>,
    /// The master's flags, every value a string.
    #[serde(default)]
    pub flags: BTreeMap<String, String>,
    #[serde(default)]
    pub slaves: Vec<Slave>,
    #[serde(default)]
    pub recovered_slaves: Vec<SlaveInfo>,
    #[serde(default)]
    pub frameworks: Vec<Framework>,
    #[serde(default)]
    pub completed_frameworks: Vec<Framework>,
    /// Always empty; kept for old readers.
    #[serde(default)]
    pub orphan_tasks: Vec<Task>,
    /// Always empty; kept for old readers.
    #[serde(default)]
    pub unregistered_frameworks: Vec<String>,
}

/// The leading master in `/master/state` (`leader_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: String,
    pub pid: String,
    pub port: u32,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
}

/// An agent's identity (`recovered_slaves` entries, and the first fields of [`Slave`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaveInfo {
    pub id: String,
    pub hostname: String,
    pub port: i32,
    #[serde(default)]
    pub attributes: BTreeMap<String, FlatValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
}

impl SlaveInfo {
    pub fn from_v1(info: &v1::AgentInfo) -> Self {
        SlaveInfo {
            id: info.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
            hostname: info.hostname.clone(),
            port: info.port.unwrap_or(5051),
            attributes: flat_attributes(&info.attributes),
            domain: info.domain.clone(),
        }
    }
}

/// A registered agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slave {
    #[serde(flatten)]
    pub info: SlaveInfo,
    pub pid: String,
    pub registered_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// Total resources.
    pub resources: FlatResources,
    pub used_resources: FlatResources,
    pub offered_resources: FlatResources,
    /// Reserved resources by role.
    #[serde(default)]
    pub reserved_resources: BTreeMap<String, FlatResources>,
    pub unreserved_resources: FlatResources,
    pub active: bool,
    pub version: String,
    #[serde(default)]
    pub capabilities: Vec<AgentCapabilityType>,
    /// `/master/slaves` only: full v1-style resources, reserved ones by role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_resources_full: Option<BTreeMap<String, Vec<Resource>>>,
    /// `/master/slaves` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserved_resources_full: Option<Vec<Resource>>,
    /// `/master/slaves` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_resources_full: Option<Vec<Resource>>,
    /// `/master/slaves` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_resources_full: Option<Vec<Resource>>,
}

/// The fields `/master/state-summary` shows for a framework, and the first fields of
/// [`Framework`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkSummary {
    pub id: String,
    pub name: String,
    /// Only for frameworks using the old driver (not HTTP frameworks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    pub used_resources: FlatResources,
    pub offered_resources: FlatResources,
    #[serde(default)]
    pub capabilities: Vec<FrameworkCapabilityType>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub webui_url: String,
    pub active: bool,
    pub connected: bool,
    #[serde(default)]
    pub recovered: bool,
}

/// A framework in `/master/state` and `/master/frameworks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    #[serde(flatten)]
    pub summary: FrameworkSummary,
    pub user: String,
    pub failover_timeout: f64,
    pub checkpoint: bool,
    pub registered_time: f64,
    pub unregistered_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Used plus offered.
    pub resources: FlatResources,
    /// Only when it differs from `registered_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// MULTI_ROLE frameworks report `roles`, others `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub unreachable_tasks: Vec<Task>,
    #[serde(default)]
    pub completed_tasks: Vec<Task>,
    #[serde(default)]
    pub offers: Vec<Offer>,
    #[serde(default)]
    pub executors: Vec<Executor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
}

/// A task in the legacy endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    /// Empty for command tasks.
    #[serde(default)]
    pub executor_id: String,
    pub slave_id: String,
    pub state: TaskState,
    pub resources: FlatResources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, f64>>,
    /// The role the task's resources are allocated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub statuses: Vec<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    /// v1 JSON (Mesos-DNS reads the ports from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryInfo>,
    /// v1 JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// v1 JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

impl Task {
    pub fn from_v1(task: &v1::Task) -> Self {
        Task {
            id: task.task_id.value.clone(),
            name: task.name.clone(),
            framework_id: task.framework_id.value.clone(),
            executor_id: task.executor_id.as_ref().map(|e| e.value.clone()).unwrap_or_default(),
            slave_id: task.agent_id.value.clone(),
            state: task.state.clone(),
            resources: flat_resources(&task.resources),
            limits: if task.limits.is_empty() {
                None
            } else {
                Some(task.limits.iter().map(|(k, v)| (k.clone(), v.value)).collect())
            },
            role: allocation_role(&task.resources),
            statuses: task.statuses.iter().map(TaskStatus::from_v1).collect(),
            user: task.user.clone(),
            labels: task.labels.as_ref().map(|l| l.labels.clone()),
            discovery: task.discovery.clone(),
            container: task.container.clone(),
            health_check: task.health_check.clone(),
        }
    }
}

/// A status in a legacy task's `statuses`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// Seconds since the epoch.
    pub timestamp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

impl TaskStatus {
    pub fn from_v1(status: &v1::TaskStatus) -> Self {
        TaskStatus {
            state: status.state.clone(),
            timestamp: status.timestamp.unwrap_or(0.0),
            labels: status.labels.as_ref().map(|l| l.labels.clone()),
            container_status: status.container_status.as_ref().map(ContainerStatus::from_v1),
            healthy: status.healthy,
        }
    }
}

/// Container status in the legacy endpoints (its network labels are a bare array).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_info: Option<serde_json::Value>,
}

impl ContainerStatus {
    pub fn from_v1(status: &v1::ContainerStatus) -> Self {
        ContainerStatus {
            container_id: status.container_id.clone(),
            network_infos: status.network_infos.iter().map(NetworkInfo::from_v1).collect(),
            cgroup_info: status.cgroup_info.clone(),
        }
    }
}

/// A container network in the legacy endpoints (Mesos-DNS reads task IPs from here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

impl NetworkInfo {
    pub fn from_v1(info: &v1::NetworkInfo) -> Self {
        NetworkInfo {
            groups: info.groups.clone(),
            labels: info.labels.as_ref().map(|l| l.labels.clone()),
            ip_addresses: info.ip_addresses.clone(),
            name: info.name.clone(),
            port_mappings: info.port_mappings.clone(),
        }
    }
}

/// An outstanding offer in a legacy framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    pub framework_id: String,
    #[serde(default)]
    pub allocation_info: AllocationInfo,
    pub slave_id: String,
    pub resources: FlatResources,
}

impl Offer {
    pub fn from_v1(offer: &v1::Offer) -> Self {
        Offer {
            id: offer.id.value.clone(),
            framework_id: offer.framework_id.value.clone(),
            allocation_info: offer.allocation_info.clone().unwrap_or_default(),
            slave_id: offer.agent_id.value.clone(),
            resources: flat_resources(&offer.resources),
        }
    }
}

/// An executor in a legacy framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    pub executor_id: String,
    #[serde(default)]
    pub name: String,
    pub framework_id: String,
    pub command: Command,
    pub resources: FlatResources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExecutorType>,
    pub slave_id: String,
}

impl Executor {
    pub fn from_v1(info: &v1::ExecutorInfo, agent_id: &v1::AgentId) -> Self {
        Executor {
            executor_id: info.executor_id.value.clone(),
            name: info.name.clone().unwrap_or_default(),
            framework_id: info.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default(),
            command: info.command.as_ref().map(Command::from_v1).unwrap_or_default(),
            resources: flat_resources(&info.resources),
            role: allocation_role(&info.resources),
            labels: info.labels.as_ref().map(|l| l.labels.clone()),
            kind: info.kind.clone(),
            slave_id: agent_id.value.clone(),
        }
    }
}

/// A command in the legacy endpoints: arguments are `argv`, URIs are always listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub uris: Vec<CommandUri>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUri {
    pub value: String,
    #[serde(default)]
    pub executable: bool,
}

impl Command {
    pub fn from_v1(cmd: &v1::CommandInfo) -> Self {
        Command {
            shell: cmd.shell,
            value: cmd.value.clone(),
            argv: cmd.arguments.clone(),
            environment: cmd.environment.clone(),
            uris: cmd
                .uris
                .iter()
                .map(|u| CommandUri {
                    value: u.value.clone(),
                    executable: u.executable.unwrap_or(false),
                })
                .collect(),
        }
    }
}

/// `/master/state-summary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSummary {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default)]
    pub slaves: Vec<SummarySlave>,
    #[serde(default)]
    pub frameworks: Vec<SummaryFramework>,
}

/// How many of an agent's or framework's tasks are in each state. Mesos reports these ten
/// (not TASK_DROPPED, TASK_GONE, TASK_GONE_BY_OPERATOR, TASK_UNKNOWN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStateCounts {
    #[serde(rename = "TASK_STAGING", default)]
    pub staging: u64,
    #[serde(rename = "TASK_STARTING", default)]
    pub starting: u64,
    #[serde(rename = "TASK_RUNNING", default)]
    pub running: u64,
    #[serde(rename = "TASK_KILLING", default)]
    pub killing: u64,
    #[serde(rename = "TASK_FINISHED", default)]
    pub finished: u64,
    #[serde(rename = "TASK_KILLED", default)]
    pub killed: u64,
    #[serde(rename = "TASK_FAILED", default)]
    pub failed: u64,
    #[serde(rename = "TASK_LOST", default)]
    pub lost: u64,
    #[serde(rename = "TASK_ERROR", default)]
    pub error: u64,
    #[serde(rename = "TASK_UNREACHABLE", default)]
    pub unreachable: u64,
}

impl TaskStateCounts {
    /// Counts one task in `state`; states without a column are ignored.
    pub fn count(&mut self, state: &TaskState) {
        let slot = match state {
            TaskState::Staging => &mut self.staging,
            TaskState::Starting => &mut self.starting,
            TaskState::Running => &mut self.running,
            TaskState::Killing => &mut self.killing,
            TaskState::Finished => &mut self.finished,
            TaskState::Killed => &mut self.killed,
            TaskState::Failed => &mut self.failed,
            TaskState::Lost => &mut self.lost,
            TaskState::Error => &mut self.error,
            TaskState::Unreachable => &mut self.unreachable,
            _ => return,
        };
        *slot += 1;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummarySlave {
    #[serde(flatten)]
    pub slave: Slave,
    #[serde(flatten)]
    pub task_counts: TaskStateCounts,
    #[serde(default)]
    pub framework_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryFramework {
    #[serde(flatten)]
    pub summary: FrameworkSummary,
    #[serde(flatten)]
    pub task_counts: TaskStateCounts,
    #[serde(default)]
    pub slave_ids: Vec<String>,
}

/// `/master/tasks` (query: `limit` (default 100), `offset`, `order` (`asc`/`des`),
/// `framework_id`, `task_id`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// `/master/frameworks` (query: `framework_id`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frameworks {
    #[serde(default)]
    pub frameworks: Vec<Framework>,
    #[serde(default)]
    pub completed_frameworks: Vec<Framework>,
    /// Always empty; kept for old readers.
    #[serde(default)]
    pub unregistered_frameworks: Vec<String>,
}

/// `/master/slaves` (query: `slave_id`). Its slaves carry the `*_full` fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slaves {
    #[serde(default)]
    pub slaves: Vec<Slave>,
    #[serde(default)]
    pub recovered_slaves: Vec<SlaveInfo>,
}

/// `/master/roles`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default)]
    pub roles: Vec<Role>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// 1.0 unless set.
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<RoleQuota>,
    /// Allocated plus offered.
    pub resources: FlatResources,
    /// Framework IDs.
    #[serde(default)]
    pub frameworks: Vec<String>,
}

/// A role's quota in `/master/roles`; note the singular `guarantee`/`limit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleQuota {
    pub role: String,
    #[serde(default)]
    pub guarantee: BTreeMap<String, f64>,
    #[serde(default)]
    pub limit: BTreeMap<String, f64>,
}
