//! The master's v1 operator API (`POST /api/v1`): calls, synchronous responses, and the
//! events of the SUBSCRIBE stream (RecordIO-framed).
//!
//! Like the scheduler API, messages are a `type` plus the body that type names. The calls and
//! responses tepui serves are typed; maintenance schedules and the v0 quota request are kept
//! as opaque JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::v1::{
    AgentCapability, AgentId, AgentInfo, DrainInfo, DurationInfo, ExecutorInfo, FileInfo, Flag, FrameworkId,
    FrameworkInfo, InverseOffer, MasterInfo, Metric, Offer, Operation, Resource, Role, Scalar, Task, TaskState,
    TaskStatus, TimeInfo, VersionInfo, WeightInfo,
};
use crate::Bytes;

open_enum! {
    /// `master.Call.Type`.
    pub enum CallType {
        GetHealth = "GET_HEALTH",
        GetFlags = "GET_FLAGS",
        GetVersion = "GET_VERSION",
        GetMetrics = "GET_METRICS",
        GetLoggingLevel = "GET_LOGGING_LEVEL",
        SetLoggingLevel = "SET_LOGGING_LEVEL",
        ListFiles = "LIST_FILES",
        ReadFile = "READ_FILE",
        GetState = "GET_STATE",
        GetAgents = "GET_AGENTS",
        GetFrameworks = "GET_FRAMEWORKS",
        GetExecutors = "GET_EXECUTORS",
        GetOperations = "GET_OPERATIONS",
        GetTasks = "GET_TASKS",
        GetRoles = "GET_ROLES",
        GetWeights = "GET_WEIGHTS",
        UpdateWeights = "UPDATE_WEIGHTS",
        GetMaster = "GET_MASTER",
        Subscribe = "SUBSCRIBE",
        ReserveResources = "RESERVE_RESOURCES",
        UnreserveResources = "UNRESERVE_RESOURCES",
        CreateVolumes = "CREATE_VOLUMES",
        DestroyVolumes = "DESTROY_VOLUMES",
        GrowVolume = "GROW_VOLUME",
        ShrinkVolume = "SHRINK_VOLUME",
        GetMaintenanceStatus = "GET_MAINTENANCE_STATUS",
        GetMaintenanceSchedule = "GET_MAINTENANCE_SCHEDULE",
        UpdateMaintenanceSchedule = "UPDATE_MAINTENANCE_SCHEDULE",
        StartMaintenance = "START_MAINTENANCE",
        StopMaintenance = "STOP_MAINTENANCE",
        GetQuota = "GET_QUOTA",
        UpdateQuota = "UPDATE_QUOTA",
        /// Deprecated in favour of UPDATE_QUOTA.
        SetQuota = "SET_QUOTA",
        /// Deprecated in favour of UPDATE_QUOTA.
        RemoveQuota = "REMOVE_QUOTA",
        Teardown = "TEARDOWN",
        MarkAgentGone = "MARK_AGENT_GONE",
        DrainAgent = "DRAIN_AGENT",
        DeactivateAgent = "DEACTIVATE_AGENT",
        ReactivateAgent = "REACTIVATE_AGENT",
    }
}

/// A call to the operator API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_metrics: Option<GetMetricsCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_logging_level: Option<SetLoggingLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_files: Option<ListFilesCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_file: Option<ReadFileCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_weights: Option<UpdateWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_resources: Option<ReserveResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserve_resources: Option<UnreserveResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_volumes: Option<Volumes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_volumes: Option<Volumes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_volume: Option<GrowVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_volume: Option<ShrinkVolume>,
    /// Opaque: `{"schedule": maintenance.Schedule}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_maintenance_schedule: Option<serde_json::Value>,
    /// Opaque: `{"machines": [MachineID]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_maintenance: Option<serde_json::Value>,
    /// Opaque: `{"machines": [MachineID]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_maintenance: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_quota: Option<UpdateQuota>,
    /// Opaque: `{"quota_request": quota.QuotaRequest}` (deprecated call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_quota: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_quota: Option<RemoveQuota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<Teardown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_agent_gone: Option<AgentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_agent: Option<DrainAgent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivate_agent: Option<AgentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactivate_agent: Option<AgentRef>,
}

impl Call {
    /// A call without a body (GET_STATE, GET_HEALTH, SUBSCRIBE, ...).
    pub fn new(kind: CallType) -> Self {
        Call {
            kind,
            get_metrics: None,
            set_logging_level: None,
            list_files: None,
            read_file: None,
            update_weights: None,
            reserve_resources: None,
            unreserve_resources: None,
            create_volumes: None,
            destroy_volumes: None,
            grow_volume: None,
            shrink_volume: None,
            update_maintenance_schedule: None,
            start_maintenance: None,
            stop_maintenance: None,
            update_quota: None,
            set_quota: None,
            remove_quota: None,
            teardown: None,
            mark_agent_gone: None,
            drain_agent: None,
            deactivate_agent: None,
            reactivate_agent: None,
        }
    }

    /// Whether the call carries the body its type needs (bodiless types always do).
    pub fn has_required_body(&self) -> bool {
        use CallType as T;
        match &self.kind {
            T::SetLoggingLevel => self.set_logging_level.is_some(),
            T::ListFiles => self.list_files.is_some(),
            T::ReadFile => self.read_file.is_some(),
            T::UpdateWeights => self.update_weights.is_some(),
            T::ReserveResources => self.reserve_resources.is_some(),
            T::UnreserveResources => self.unreserve_resources.is_some(),
            T::CreateVolumes => self.create_volumes.is_some(),
            T::DestroyVolumes => self.destroy_volumes.is_some(),
            T::GrowVolume => self.grow_volume.is_some(),
            T::ShrinkVolume => self.shrink_volume.is_some(),
            T::UpdateMaintenanceSchedule => self.update_maintenance_schedule.is_some(),
            T::StartMaintenance => self.start_maintenance.is_some(),
            T::StopMaintenance => self.stop_maintenance.is_some(),
            T::UpdateQuota => self.update_quota.is_some(),
            T::SetQuota => self.set_quota.is_some(),
            T::RemoveQuota => self.remove_quota.is_some(),
            T::Teardown => self.teardown.is_some(),
            T::MarkAgentGone => self.mark_agent_gone.is_some(),
            T::DrainAgent => self.drain_agent.is_some(),
            T::DeactivateAgent => self.deactivate_agent.is_some(),
            T::ReactivateAgent => self.reactivate_agent.is_some(),
            T::Unknown(_) => false,
            _ => true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMetricsCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLoggingLevel {
    pub level: u32,
    pub duration: DurationInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilesCall {
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFileCall {
    pub path: String,
    #[serde(deserialize_with = "crate::lenient::u64")]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateWeights {
    #[serde(default)]
    pub weight_infos: Vec<WeightInfo>,
}

/// RESERVE_RESOURCES: make `source` on the agent carry the reservations of `resources`.
/// Without `source`, a single reservation is added to unreserved resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReserveResources {
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Resource>,
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnreserveResources {
    pub agent_id: AgentId,
    #[serde(default)]
    pub resources: Vec<Resource>,
}

/// CREATE_VOLUMES and DESTROY_VOLUMES share this body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volumes {
    pub agent_id: AgentId,
    #[serde(default)]
    pub volumes: Vec<Resource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    pub volume: Resource,
    pub addition: Resource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShrinkVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    pub volume: Resource,
    pub subtract: Scalar,
}

/// UPDATE_QUOTA: set guarantees and limits for roles, all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateQuota {
    /// Skip the capacity check (Mesos' default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    #[serde(default)]
    pub quota_configs: Vec<QuotaConfig>,
}

/// A role's quota; empty maps reset it to the default (no guarantee, no limit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaConfig {
    pub role: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guarantees: BTreeMap<String, Scalar>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Scalar>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveQuota {
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    pub framework_id: FrameworkId,
}

/// MARK_AGENT_GONE, DEACTIVATE_AGENT and REACTIVATE_AGENT name just an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    pub agent_id: AgentId,
}

/// DRAIN_AGENT: kill the agent's tasks (bounded by `max_grace_period`) and keep it
/// deactivated; with `mark_gone`, remove it for good once drained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainAgent {
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period: Option<DurationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_gone: Option<bool>,
}

open_enum! {
    /// `master.Response.Type`.
    pub enum ResponseType {
        GetHealth = "GET_HEALTH",
        GetFlags = "GET_FLAGS",
        GetVersion = "GET_VERSION",
        GetMetrics = "GET_METRICS",
        GetLoggingLevel = "GET_LOGGING_LEVEL",
        ListFiles = "LIST_FILES",
        ReadFile = "READ_FILE",
        GetState = "GET_STATE",
        GetAgents = "GET_AGENTS",
        GetFrameworks = "GET_FRAMEWORKS",
        GetExecutors = "GET_EXECUTORS",
        GetOperations = "GET_OPERATIONS",
        GetTasks = "GET_TASKS",
        GetRoles = "GET_ROLES",
        GetWeights = "GET_WEIGHTS",
        GetMaster = "GET_MASTER",
        GetMaintenanceStatus = "GET_MAINTENANCE_STATUS",
        GetMaintenanceSchedule = "GET_MAINTENANCE_SCHEDULE",
        GetQuota = "GET_QUOTA",
    }
}

/// A synchronous (200 OK) answer from the operator API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_health: Option<GetHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_flags: Option<GetFlags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_version: Option<GetVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_metrics: Option<GetMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_logging_level: Option<GetLoggingLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_files: Option<ListFiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_file: Option<ReadFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_state: Option<GetState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_agents: Option<GetAgents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_frameworks: Option<GetFrameworks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_executors: Option<GetExecutors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_operations: Option<GetOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_tasks: Option<GetTasks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_roles: Option<GetRoles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_weights: Option<GetWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_master: Option<GetMaster>,
    /// Opaque: `{"status": maintenance.ClusterStatus}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_maintenance_status: Option<serde_json::Value>,
    /// Opaque: `{"schedule": maintenance.Schedule}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_maintenance_schedule: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_quota: Option<GetQuota>,
}

macro_rules! response_ctor {
    ($($fn_name:ident($body:ty) => $kind:ident, $field:ident;)*) => {
        impl Response {
            fn of(kind: ResponseType) -> Self {
                Response {
                    kind,
                    get_health: None,
                    get_flags: None,
                    get_version: None,
                    get_metrics: None,
                    get_logging_level: None,
                    list_files: None,
                    read_file: None,
                    get_state: None,
                    get_agents: None,
                    get_frameworks: None,
                    get_executors: None,
                    get_operations: None,
                    get_tasks: None,
                    get_roles: None,
                    get_weights: None,
                    get_master: None,
                    get_maintenance_status: None,
                    get_maintenance_schedule: None,
                    get_quota: None,
                }
            }

            $(
                pub fn $fn_name(body: $body) -> Self {
                    Response { $field: Some(body), ..Response::of(ResponseType::$kind) }
                }
            )*
        }
    };
}

response_ctor! {
    get_health(GetHealth) => GetHealth, get_health;
    get_flags(GetFlags) => GetFlags, get_flags;
    get_version(GetVersion) => GetVersion, get_version;
    get_metrics(GetMetrics) => GetMetrics, get_metrics;
    get_logging_level(GetLoggingLevel) => GetLoggingLevel, get_logging_level;
    list_files(ListFiles) => ListFiles, list_files;
    read_file(ReadFile) => ReadFile, read_file;
    get_state(GetState) => GetState, get_state;
    get_agents(GetAgents) => GetAgents, get_agents;
    get_frameworks(GetFrameworks) => GetFrameworks, get_frameworks;
    get_executors(GetExecutors) => GetExecutors, get_executors;
    get_operations(GetOperations) => GetOperations, get_operations;
    get_tasks(GetTasks) => GetTasks, get_tasks;
    get_roles(GetRoles) => GetRoles, get_roles;
    get_weights(GetWeights) => GetWeights, get_weights;
    get_master(GetMaster) => GetMaster, get_master;
    get_quota(GetQuota) => GetQuota, get_quota;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetHealth {
    pub healthy: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetFlags {
    #[serde(default)]
    pub flags: Vec<Flag>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetVersion {
    pub version_info: VersionInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetMetrics {
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLoggingLevel {
    pub level: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFiles {
    #[serde(default)]
    pub file_infos: Vec<FileInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFile {
    #[serde(deserialize_with = "crate::lenient::u64")]
    pub size: u64,
    pub data: Bytes,
}

/// GET_STATE: the whole cluster at once; also the body of the SUBSCRIBED event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_tasks: Option<GetTasks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_executors: Option<GetExecutors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_frameworks: Option<GetFrameworks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_agents: Option<GetAgents>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetAgents {
    /// Registered agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<Agent>,
    /// Agents known from before a master failover that have not reregistered yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered_agents: Vec<AgentInfo>,
}

/// An agent as the operator API reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub agent_info: AgentInfo,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated: Option<bool>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<TimeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<TimeInfo>,
    /// Everything the agent provides, including oversubscribed resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub total_resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocated_resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered_resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<AgentCapability>,
    /// Opaque: `{"resource_provider_info": ..., "total_resources": [...]}` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_providers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_info: Option<DrainInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_drain_start_time: Option<TimeInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetFrameworks {
    /// Subscribed frameworks, including disconnected ones that may still come back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frameworks: Vec<Framework>,
    /// Frameworks that were torn down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_frameworks: Vec<Framework>,
    /// Deprecated, always empty since Mesos 1.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered_frameworks: Vec<FrameworkInfo>,
}

/// A framework as the operator API reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    pub framework_info: FrameworkInfo,
    pub active: bool,
    pub connected: bool,
    /// Known from agents after a master failover but not resubscribed yet. Required in the
    /// proto; defaulted on input because Mesos' own examples predate it.
    #[serde(default)]
    pub recovered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<TimeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<TimeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unregistered_time: Option<TimeInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<Offer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inverse_offers: Vec<InverseOffer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocated_resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered_resources: Vec<Resource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetExecutors {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<Executor>,
    /// Deprecated, always empty since Mesos 1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphan_executors: Vec<Executor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    pub executor_info: ExecutorInfo,
    pub agent_id: AgentId,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetOperations {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetTasks {
    /// Accepted by the master but not yet sent to an agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_tasks: Vec<Task>,
    /// Sent to agents, including terminal ones whose last update is unacknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// On partitioned agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable_tasks: Vec<Task>,
    /// Terminal and acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_tasks: Vec<Task>,
    /// Deprecated, always empty since Mesos 1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphan_tasks: Vec<Task>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetRoles {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetWeights {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_infos: Vec<WeightInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetMaster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<MasterInfo>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elected_time: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetQuota {
    pub status: QuotaStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// Deprecated v0 form (`{"role", "principal", "guarantee": [Resource]}`), kept opaque.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infos: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<QuotaConfig>,
}

open_enum! {
    /// `master.Event.Type`.
    pub enum EventType {
        Subscribed = "SUBSCRIBED",
        TaskAdded = "TASK_ADDED",
        TaskUpdated = "TASK_UPDATED",
        AgentAdded = "AGENT_ADDED",
        AgentRemoved = "AGENT_REMOVED",
        FrameworkAdded = "FRAMEWORK_ADDED",
        FrameworkUpdated = "FRAMEWORK_UPDATED",
        FrameworkRemoved = "FRAMEWORK_REMOVED",
        Heartbeat = "HEARTBEAT",
    }
}

/// An event of the operator SUBSCRIBE stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_added: Option<TaskAdded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_updated: Option<TaskUpdated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_added: Option<AgentAdded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_removed: Option<AgentRemoved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_added: Option<FrameworkEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_updated: Option<FrameworkEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_removed: Option<FrameworkRemoved>,
}

/// SUBSCRIBED: a snapshot of the cluster; later changes arrive as separate events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_state: Option<GetState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAdded {
    pub task: Task,
}

/// TASK_UPDATED: `status` is the latest update the framework acknowledged; `state` is the
/// agent's latest, which may be newer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub framework_id: FrameworkId,
    pub status: TaskStatus,
    pub state: TaskState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentAdded {
    pub agent: Agent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRemoved {
    pub agent_id: AgentId,
}

/// FRAMEWORK_ADDED and FRAMEWORK_UPDATED share this body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkEvent {
    pub framework: Framework,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRemoved {
    pub framework_info: FrameworkInfo,
}

impl Event {
    fn of(kind: EventType) -> Self {
        Event {
            kind,
            subscribed: None,
            task_added: None,
            task_updated: None,
            agent_added: None,
            agent_removed: None,
            framework_added: None,
            framework_updated: None,
            framework_removed: None,
        }
    }

    pub fn subscribed(get_state: GetState, heartbeat_interval_seconds: Option<f64>) -> Self {
        Event {
            subscribed: Some(Subscribed {
                get_state: Some(get_state),
                heartbeat_interval_seconds,
            }),
            ..Event::of(EventType::Subscribed)
        }
    }

    pub fn task_added(task: Task) -> Self {
        Event {
            task_added: Some(TaskAdded { task }),
            ..Event::of(EventType::TaskAdded)
        }
    }

    pub fn task_updated(framework_id: FrameworkId, status: TaskStatus, state: TaskState) -> Self {
        Event {
            task_updated: Some(TaskUpdated {
                framework_id,
                status,
                state,
            }),
            ..Event::of(EventType::TaskUpdated)
        }
    }

    pub fn agent_added(agent: Agent) -> Self {
        Event {
            agent_added: Some(AgentAdded { agent }),
            ..Event::of(EventType::AgentAdded)
        }
    }

    pub fn agent_removed(agent_id: AgentId) -> Self {
        Event {
            agent_removed: Some(AgentRemoved { agent_id }),
            ..Event::of(EventType::AgentRemoved)
        }
    }

    pub fn framework_added(framework: Framework) -> Self {
        Event {
            framework_added: Some(FrameworkEvent { framework }),
            ..Event::of(EventType::FrameworkAdded)
        }
    }

    pub fn framework_updated(framework: Framework) -> Self {
        Event {
            framework_updated: Some(FrameworkEvent { framework }),
            ..Event::of(EventType::FrameworkUpdated)
        }
    }

    pub fn framework_removed(framework_info: FrameworkInfo) -> Self {
        Event {
            framework_removed: Some(FrameworkRemoved { framework_info }),
            ..Event::of(EventType::FrameworkRemoved)
        }
    }

    pub fn heartbeat() -> Self {
        Event::of(EventType::Heartbeat)
    }
}
