//! The replicated state machine of a tepui cluster.
//!
//! Every server holds one [`State`] and changes it only by applying [`Command`]s in log order.
//! `apply` is pure and deterministic: no clock, no randomness, no I/O. Anything that depends on
//! time (token expiry, heartbeats) carries the leader's `now` inside the command, so every
//! replica reaches the same answer.
//!
//! This crate does not know about Raft, the network or the HTTP API; later capabilities (apps,
//! jobs, frameworks) extend [`Command`] and [`State`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub mod acl;
mod executor;
mod framework;
mod job;
mod package;
mod service;
mod task;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use acl::{AclPolicy, AclToken, Capability, FrameworkGrant};
pub use executor::ExecutorRecord;
pub use framework::{FrameworkRecord, RoleConfig};
pub use job::{job_dependencies, JobHistory, JobRunRecord, JobRunStatus, JOB_HISTORY_LIMIT};
pub use package::{PackageInstall, PackageRepo};
pub use service::{AppRecord, DeploymentRecord, ServiceChange, MAX_APP_VERSIONS};
pub use task::{
    Free, HealthCheckDef, PlacementError, PortDef, SecretRef, TaskDef, TaskRecord, TaskState, TaskUpdate, VolumeDef,
};

pub type NodeId = u64;

/// Unix time in milliseconds.
pub type Millis = u64;

/// The cluster's identity: created once by the bootstrap server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    pub ca_cert_pem: String,
    /// The CA's private key lives in the replicated state so that whichever server leads can
    /// sign the certificates of joining nodes.
    pub ca_key_pem: String,
    pub created_at: Millis,
}

pub use tepui_common::{normalize_secret_path, Role};

/// Certificates beyond the CA of [`ClusterInfo`] (which is the CA that signs now): the CAs a
/// rotation retires, and which CA signed each node's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiState {
    /// 1 for the CA the cluster was created with, one more per rotation.
    pub generation: u64,
    /// SHA-256 of the signing CA; empty until the first rotation.
    pub ca_sha256: String,
    /// CAs still trusted while a rotation runs: empty when none does.
    pub retiring_ca_pems: Vec<String>,
    /// Every earlier CA with the cross-certificate its successor got from it, oldest first:
    /// servers send them after their own chain, so a join token that pins an older CA still
    /// verifies the cluster.
    pub history: Vec<CaLink>,
    /// Which CA signed each node's current certificate, as it last renewed or joined.
    pub certs: BTreeMap<NodeId, CertRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaLink {
    pub ca_cert_pem: String,
    /// The next CA's certificate, signed by this one.
    pub cross_cert_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub ca_sha256: String,
    pub not_after: Millis,
    pub issued_at: Millis,
}

impl PkiState {
    pub fn rotating(&self) -> bool {
        !self.retiring_ca_pems.is_empty()
    }

    /// The nodes whose certificate the signing CA has not signed yet (what a rotation waits for).
    pub fn pending<'a>(&'a self, nodes: impl Iterator<Item = &'a NodeId> + 'a) -> impl Iterator<Item = NodeId> + 'a {
        nodes
            .filter(|id| self.certs.get(id).is_none_or(|c| c.ca_sha256 != self.ca_sha256))
            .copied()
    }
}

/// Resources an agent offers, in exact units (no floating point drift).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU.
    pub cpus_milli: u64,
    pub mem_mb: u64,
    pub disk_mb: u64,
    /// Inclusive port ranges.
    pub ports: Vec<(u16, u16)>,
    /// Static reservations from the agent's flags (`cpus(eng):2;mem(eng):1024`), part of the
    /// totals above.
    #[serde(default)]
    pub reserved: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Admitted, but not heard from yet.
    Pending,
    Ready,
    /// An agent whose heartbeats stopped.
    Lost,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Ready => "ready",
            NodeStatus::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
    /// Where the agent's own HTTP endpoint listens.
    pub http_addr: String,
    pub version: String,
    pub registered_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    /// The role the node joined with; a server may also run an agent (`tepui dev`).
    pub role: Role,
    /// The cluster (gRPC) address a server listens on; empty for agents.
    pub cluster_addr: String,
    /// The node's HTTP API address, when it serves one.
    pub http_addr: String,
    pub agent: Option<AgentInfo>,
    pub status: NodeStatus,
    pub joined_at: Millis,
    pub status_changed_at: Millis,
    /// The token the node joined with (none for the bootstrap server).
    pub token_id: Option<String>,
    /// Operator maintenance: an agent that is not `Active` gets no new tasks.
    #[serde(default)]
    pub maintenance: Maintenance,
}

/// Maintenance of an agent, as Mesos has it: draining kills its tasks and ends drained;
/// deactivated only stops new work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Maintenance {
    #[default]
    Active,
    Draining,
    Drained,
    Deactivated,
}

impl Maintenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Maintenance::Active => "active",
            Maintenance::Draining => "draining",
            Maintenance::Drained => "drained",
            Maintenance::Deactivated => "deactivated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub role: Role,
    /// SHA-256 (hex) of the secret; the secret itself is never stored.
    pub secret_sha256: String,
    pub description: String,
    pub created_at: Millis,
    /// None: never expires.
    pub expires_at: Option<Millis>,
    pub revoked: bool,
    pub uses: u64,
}

impl TokenRecord {
    /// Why this token cannot admit a node at `now`, if it cannot.
    pub fn refusal(&self, now: Millis) -> Option<ApplyError> {
        if self.revoked {
            return Some(ApplyError::TokenRevoked { id: self.id.clone() });
        }
        if let Some(exp) = self.expires_at {
            if now >= exp {
                return Some(ApplyError::TokenExpired {
                    id: self.id.clone(),
                    expired_at: exp,
                });
            }
        }
        None
    }
}

/// A secret, sealed by the leader with the cluster's secrets key before it is written: the
/// state never holds its value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub sealed: String,
    /// The log index that last wrote it: the secret's version.
    pub modify_index: u64,
    pub modified_at: Millis,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("modify_index", &self.modify_index)
            .field("modified_at", &self.modified_at)
            .finish_non_exhaustive()
    }
}

/// A small replicated key/value entry (Nomad calls these variables).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Var {
    pub value: String,
    /// The log index that last wrote it; used for check-and-set.
    pub modify_index: u64,
    pub modified_at: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub cluster: Option<ClusterInfo>,
    pub next_node_id: NodeId,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub vars: BTreeMap<String, Var>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskRecord>,
    #[serde(default)]
    pub frameworks: BTreeMap<String, FrameworkRecord>,
    /// Roles with an operator's weight or quota.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Dynamic reservations per agent, in the allocator's text form.
    #[serde(default)]
    pub reservations: BTreeMap<NodeId, String>,
    /// Long-running services (Marathon apps) by path id.
    #[serde(default)]
    pub apps: BTreeMap<String, AppRecord>,
    /// Marathon pods by path id, kept like apps (a definition with its past versions).
    #[serde(default)]
    pub pods: BTreeMap<String, AppRecord>,
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentRecord>,
    #[serde(default)]
    pub pki: PkiState,
    /// API access: policies by name, tokens by accessor.
    #[serde(default)]
    pub acl_policies: BTreeMap<String, AclPolicy>,
    #[serde(default)]
    pub acl_tokens: BTreeMap<String, AclToken>,
    /// Calls without a token may read (an operator's explicit choice; off by default).
    #[serde(default)]
    pub acl_anonymous_read: bool,
    /// Secrets by path, sealed.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRecord>,
    /// Batch jobs by id: their definitions, in Metronome's JSON.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRecord>,
    /// Runs not finished yet, by run id.
    #[serde(default)]
    pub job_runs: BTreeMap<String, JobRunRecord>,
    /// Finished runs and counts, by job id.
    #[serde(default)]
    pub job_history: BTreeMap<String, JobHistory>,
    /// Per schedule (`JOB/SCHEDULE`), the time up to which its due runs are accounted for
    /// (started or skipped): what makes a scheduled run happen once, whoever leads.
    #[serde(default)]
    pub job_schedules_handled: BTreeMap<String, Millis>,
    /// Per job with dependencies, the parents that succeeded since it last ran.
    #[serde(default)]
    pub job_parents_succeeded: BTreeMap<String, BTreeSet<String>>,
    /// Package repositories, in the order they are searched.
    #[serde(default)]
    pub package_repos: Vec<PackageRepo>,
    /// Installed packages by app id.
    #[serde(default)]
    pub package_installs: BTreeMap<String, PackageInstall>,
    /// Frameworks' executors on agents, by [`ExecutorRecord::key_of`].
    #[serde(default)]
    pub executors: BTreeMap<String, ExecutorRecord>,
    /// Which jobs depend on each job: derived from `jobs`, never stored.
    #[serde(skip)]
    pub job_dependents: DependentsIndex,
}

/// The jobs that depend on each job, built from the jobs' definitions on first use after
/// a job changed (every replica builds the same from the same jobs), so that a run's end
/// does not read every job.
#[derive(Clone, Debug, Default)]
pub struct DependentsIndex(std::sync::Arc<std::sync::OnceLock<HashMap<String, Vec<String>>>>);

impl DependentsIndex {
    fn children<'a>(&'a self, jobs: &BTreeMap<String, JobRecord>, parent: &str) -> &'a [String] {
        let index = self.0.get_or_init(|| {
            let mut index: HashMap<String, Vec<String>> = HashMap::new();
            for (child, rec) in jobs {
                for parent in job_dependencies(&rec.spec) {
                    index.entry(parent).or_default().push(child.clone());
                }
            }
            index
        });
        index.get(parent).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Derived, so never a difference between two states.
impl PartialEq for DependentsIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DependentsIndex {}

/// A batch job's definition (Metronome's job JSON, schedules included; tepui-jobs reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: serde_json::Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster identity and records the bootstrap server. Only valid once.
    InitCluster {
        cluster: ClusterInfo,
        bootstrap: NodeRecord,
    },
    /// The first management token, made once when the cluster starts. Refused when any API
    /// token exists.
    AclBootstrap {
        token: AclToken,
    },
    AclUpsertPolicy {
        policy: AclPolicy,
    },
    AclDeletePolicy {
        name: String,
    },
    AclCreateToken {
        token: AclToken,
    },
    AclRevokeToken {
        accessor: String,
    },
    AclSetAnonymousRead {
        enabled: bool,
    },
    CreateToken {
        token: TokenRecord,
    },
    RevokeToken {
        id: String,
    },
    /// Admits a joining node with a token; the id is assigned here.
    AdmitNode {
        token_id: String,
        secret_sha256: String,
        name: String,
        role: Role,
        cluster_addr: String,
        http_addr: String,
        now: Millis,
    },
    /// An agent (or a server that also runs tasks) reports its resources.
    RegisterAgent {
        id: NodeId,
        agent: AgentInfo,
        now: Millis,
    },
    SetNodeStatus {
        id: NodeId,
        status: NodeStatus,
        now: Millis,
    },
    /// Updates where a server listens, for example after a restart with new flags.
    UpdateNodeAddrs {
        id: NodeId,
        cluster_addr: String,
        http_addr: String,
    },
    RemoveNode {
        id: NodeId,
    },
    PutVar {
        key: String,
        value: String,
        cas: Option<u64>,
        now: Millis,
    },
    DeleteVar {
        key: String,
        cas: Option<u64>,
    },
    /// Creates a job (refused if its id exists) or replaces one (refused if it does not).
    PutJob {
        id: String,
        spec: serde_json::Value,
        create: bool,
        now: Millis,
    },
    DeleteJob {
        id: String,
    },
    /// Records a run of a job (refused for an unknown job or a run id in use); a run recorded
    /// as ended goes straight to its job's history.
    StartJobRun {
        run: JobRunRecord,
    },
    /// A schedule's due runs up to `handled` are accounted for, with `run` the one started
    /// for them (if any). Refused when they were accounted for already (an older leader's
    /// decision arriving late): a due run is started once.
    ScheduleJobRun {
        schedule: String,
        handled: Millis,
        run: Option<JobRunRecord>,
    },
    /// A dependent job's run, once every parent succeeded since its last one: records the run
    /// and starts the wait for its parents again. Refused unless every parent has.
    StartDependentRun {
        run: JobRunRecord,
    },
    /// A run's next task (an attempt): the run is starting.
    JobRunTask {
        run_id: String,
        task_id: String,
    },
    /// A run's new status; a finished run moves to its job's history.
    SetJobRunStatus {
        run_id: String,
        status: JobRunStatus,
        now: Millis,
        /// Why a finished run ended when its task cannot say (its agent was lost); none: its
        /// last task's message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A secret sealed by the leader (the path normalized, see [`normalize_secret_path`]).
    PutSecret {
        path: String,
        sealed: String,
        now: Millis,
    },
    DeleteSecret {
        path: String,
    },
    /// Replaces the state with a backup, keeping this cluster's identity and nodes.
    Restore {
        state: Box<State>,
    },
    /// Puts an agent into (or out of) maintenance.
    SetMaintenance {
        id: NodeId,
        maintenance: Maintenance,
    },
    /// A task run by a framework's executor, recorded with the executor unless it runs on the
    /// agent already; refused if what is new does not fit there, or the executor running
    /// under that id is another.
    LaunchOnExecutor {
        executor: Box<ExecutorRecord>,
        task: Box<TaskRecord>,
        /// The `TaskInfo` the executor is given (Mesos JSON).
        task_info: serde_json::Value,
    },
    /// A task group (Mesos' LAUNCH_GROUP): its tasks, run together by one executor, are
    /// recorded with it (unless it runs on the agent already) all or none: refused if they
    /// do not all fit there together.
    LaunchGroup {
        executor: Box<ExecutorRecord>,
        /// Each task with the `TaskInfo` its executor is given (Mesos JSON).
        tasks: Vec<(TaskRecord, serde_json::Value)>,
    },
    /// An executor's agent reports that it ended.
    EndExecutor {
        agent_id: NodeId,
        framework_id: String,
        executor_id: String,
        exit_status: Option<i32>,
        message: String,
        now: Millis,
    },
    /// Records a task placed on an agent; refused if it no longer fits there.
    CreateTask {
        task: Box<TaskRecord>,
    },
    /// A status update from the task's agent.
    TaskStatus {
        task_id: String,
        update: TaskUpdate,
    },
    /// An operator or framework asks for the task to be killed.
    KillTask {
        task_id: String,
        now: Millis,
    },
    /// Ended tasks past their retention, as the leader decided: their records are dropped.
    /// A task that is not terminal (or is gone already) is left alone.
    ForgetTasks {
        task_ids: Vec<String>,
    },
    /// A framework subscribes or re-subscribes (with its id).
    SubscribeFramework {
        framework: FrameworkRecord,
    },
    /// The framework's connection ended; its failover timeout runs from `now`.
    DisconnectFramework {
        id: String,
        now: Millis,
    },
    /// Teardown or failover timeout: the framework is removed and its live tasks are to be killed.
    RemoveFramework {
        id: String,
        now: Millis,
    },
    /// The framework acknowledged the task's latest status update.
    AcknowledgeTask {
        task_id: String,
        uuid: String,
    },
    /// Role weights in thousandths.
    UpdateWeights {
        weights: Vec<(String, u64)>,
    },
    /// A role's quota (empty strings: none). The leader checks it against the allocator first.
    SetQuota {
        role: String,
        guarantees: String,
        limits: String,
    },
    /// The dynamic reservations on an agent, as a whole (empty: none).
    SetReservations {
        agent: NodeId,
        resources: String,
    },
    /// Apps (and pods) put and removed, with the deployment that carries the change out.
    ChangeServices {
        change: ServiceChange,
    },
    /// A deployment's progress (`plan`), or its end (`None`).
    UpdateDeployment {
        id: String,
        plan: Option<serde_json::Value>,
    },
    /// Makes another CA the signing one; the current one stays trusted until every node holds a
    /// certificate of the new one (or [`Command::FinishCaRotation`]).
    RotateCa {
        ca_cert_pem: String,
        ca_key_pem: String,
        ca_sha256: String,
        /// The new CA signed by the current one.
        cross_cert_pem: String,
    },
    /// A node got a certificate (joined or renewed); `ca_sha256` names the CA that signed it.
    RecordCertificate {
        id: NodeId,
        ca_sha256: String,
        not_after: Millis,
        now: Millis,
    },
    /// Stops trusting the CAs a rotation retires, whether or not every node renewed.
    FinishCaRotation,
    /// Adds a package repository at `index` (the end when none); refused when its name or URI
    /// is listed.
    AddPackageRepo {
        repo: PackageRepo,
        index: Option<u32>,
    },
    /// Removes the package repository with this name and/or URI.
    RemovePackageRepo {
        name: Option<String>,
        uri: Option<String>,
    },
    /// Records an installed package (`create`: refused when its app id is taken) or replaces
    /// the record after an upgrade (refused when there is none).
    PutPackageInstall {
        install: PackageInstall,
        create: bool,
    },
    /// Forgets an installed package once what it deployed is removed.
    RemovePackageInstall {
        app_id: String,
    },
    /// Several commands committed as one log entry (the leader groups concurrent writes);
    /// each is applied in order and answered on its own.
    Batch {
        cmds: Vec<Command>,
    },
    /// Does nothing; used to commit a barrier.
    Noop,
}

/// Commands in one batch at most; each gets its own version number (see [`State::apply`]).
pub const MAX_BATCH: usize = 999;

impl Command {
    /// A short stable name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "init_cluster",
            Command::AclBootstrap { .. } => "acl_bootstrap",
            Command::AclUpsertPolicy { .. } => "acl_upsert_policy",
            Command::AclDeletePolicy { .. } => "acl_delete_policy",
            Command::AclCreateToken { .. } => "acl_create_token",
            Command::AclRevokeToken { .. } => "acl_revoke_token",
            Command::AclSetAnonymousRead { .. } => "acl_set_anonymous_read",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::AdmitNode { .. } => "admit_node",
            Command::RegisterAgent { .. } => "register_agent",
            Command::SetNodeStatus { .. } => "set_node_status",
            Command::UpdateNodeAddrs { .. } => "update_node_addrs",
            Command::RemoveNode { .. } => "remove_node",
            Command::PutVar { .. } => "put_var",
            Command::DeleteVar { .. } => "delete_var",
            Command::PutJob { .. } => "put_job",
            Command::DeleteJob { .. } => "delete_job",
            Command::StartJobRun { .. } => "start_job_run",
            Command::ScheduleJobRun { .. } => "schedule_job_run",
            Command::StartDependentRun { .. } => "start_dependent_run",
            Command::JobRunTask { .. } => "job_run_task",
            Command::SetJobRunStatus { .. } => "set_job_run_status",
            Command::PutSecret { .. } => "put_secret",
            Command::DeleteSecret { .. } => "delete_secret",
            Command::Restore { .. } => "restore",
            Command::SetMaintenance { .. } => "set_maintenance",
            Command::CreateTask { .. } => "create_task",
            Command::TaskStatus { .. } => "task_status",
            Command::KillTask { .. } => "kill_task",
            Command::ForgetTasks { .. } => "forget_tasks",
            Command::SubscribeFramework { .. } => "subscribe_framework",
            Command::DisconnectFramework { .. } => "disconnect_framework",
            Command::RemoveFramework { .. } => "remove_framework",
            Command::AcknowledgeTask { .. } => "acknowledge_task",
            Command::UpdateWeights { .. } => "update_weights",
            Command::SetQuota { .. } => "set_quota",
            Command::SetReservations { .. } => "set_reservations",
            Command::ChangeServices { .. } => "change_services",
            Command::UpdateDeployment { .. } => "update_deployment",
            Command::RotateCa { .. } => "rotate_ca",
            Command::RecordCertificate { .. } => "record_certificate",
            Command::FinishCaRotation => "finish_ca_rotation",
            Command::AddPackageRepo { .. } => "add_package_repo",
            Command::RemovePackageRepo { .. } => "remove_package_repo",
            Command::PutPackageInstall { .. } => "put_package_install",
            Command::RemovePackageInstall { .. } => "remove_package_install",
            Command::LaunchOnExecutor { .. } => "launch_on_executor",
            Command::LaunchGroup { .. } => "launch_group",
            Command::EndExecutor { .. } => "end_executor",
            Command::Batch { .. } => "batch",
            Command::Noop => "noop",
        }
    }

    /// The cluster protocol a server needs to decode this command (see
    /// `tepui_common::version`). The leader writes a command only once every server speaks
    /// it, so that no follower meets an entry it cannot read. A new variant, or a new enum
    /// value inside one that an older server would not parse, says the protocol it came with
    /// here; the match has no catch-all so that every new variant must decide.
    pub fn protocol(&self) -> u32 {
        match self {
            Command::Batch { cmds } => cmds.iter().map(Command::protocol).max().unwrap_or(1),
            Command::InitCluster { .. } => 1,
            Command::AclBootstrap { .. } => 1,
            Command::AclUpsertPolicy { .. } => 1,
            Command::AclDeletePolicy { .. } => 1,
            Command::AclCreateToken { .. } => 1,
            Command::AclRevokeToken { .. } => 1,
            Command::AclSetAnonymousRead { .. } => 1,
            Command::CreateToken { .. } => 1,
            Command::RevokeToken { .. } => 1,
            Command::AdmitNode { .. } => 1,
            Command::RegisterAgent { .. } => 1,
            Command::SetNodeStatus { .. } => 1,
            Command::UpdateNodeAddrs { .. } => 1,
            Command::RemoveNode { .. } => 1,
            Command::PutVar { .. } => 1,
            Command::DeleteVar { .. } => 1,
            Command::PutJob { .. } => 1,
            Command::DeleteJob { .. } => 1,
            Command::StartJobRun { .. } => 1,
            Command::ScheduleJobRun { .. } => 1,
            Command::StartDependentRun { .. } => 1,
            Command::JobRunTask { .. } => 1,
            Command::SetJobRunStatus { .. } => 1,
            Command::PutSecret { .. } => 1,
            Command::DeleteSecret { .. } => 1,
            Command::Restore { .. } => 1,
            Command::SetMaintenance { .. } => 1,
            Command::CreateTask { .. } => 1,
            Command::TaskStatus { .. } => 1,
            Command::KillTask { .. } => 1,
            Command::ForgetTasks { .. } => 1,
            Command::SubscribeFramework { .. } => 1,
            Command::DisconnectFramework { .. } => 1,
            Command::RemoveFramework { .. } => 1,
            Command::AcknowledgeTask { .. } => 1,
            Command::UpdateWeights { .. } => 1,
            Command::SetQuota { .. } => 1,
            Command::SetReservations { .. } => 1,
            // Pods came with 0.2.0; an older server would drop them from the change unseen.
            Command::ChangeServices { change } => {
                if change.put_pods.is_empty() && change.remove_pods.is_empty() {
                    1
                } else {
                    2
                }
            }
            Command::UpdateDeployment { .. } => 1,
            Command::RotateCa { .. } => 1,
            Command::RecordCertificate { .. } => 1,
            Command::FinishCaRotation => 1,
            Command::AddPackageRepo { .. } => 1,
            Command::RemovePackageRepo { .. } => 1,
            Command::PutPackageInstall { .. } => 1,
            Command::RemovePackageInstall { .. } => 1,
            Command::LaunchOnExecutor { .. } => 1,
            // Task groups came with 0.2.0.
            Command::LaunchGroup { .. } => 2,
            Command::EndExecutor { .. } => 1,
            Command::Noop => 1,
        }
    }
}

/// A command the cluster cannot take yet: some server speaks an older protocol than it needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} needs cluster protocol {needs} and a server still speaks {cluster}; finish the upgrade first (`tepui operator upgrade-check`)")]
pub struct Gated {
    pub kind: &'static str,
    pub needs: u32,
    pub cluster: u32,
}

/// The gate of upgrades: refuses the first command (inside batches too) that needs a newer
/// protocol than `cluster`, the lowest one its servers speak.
pub fn gate(cmds: &[Command], cluster: u32) -> Result<(), Gated> {
    for cmd in cmds {
        if let Command::Batch { cmds } = cmd {
            gate(cmds, cluster)?;
        } else if cmd.protocol() > cluster {
            return Err(Gated {
                kind: cmd.kind(),
                needs: cmd.protocol(),
                cluster,
            });
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Ok,
    NodeAdmitted { id: NodeId },
    Var { key: String, modify_index: u64 },
    Secret { path: String, modify_index: u64 },
    Rejected(ApplyError),
    Batch(Vec<Response>),
}

/// Deterministic refusals of a command. They are answers, not failures of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    #[error("the cluster is not initialized")]
    NotInitialized,
    #[error("token {id} already exists")]
    TokenExists { id: String },
    #[error("the API already has tokens; bootstrap happens once")]
    AclBootstrapped,
    #[error("API token {accessor} already exists")]
    AclTokenExists { accessor: String },
    #[error("unknown API token {accessor}")]
    UnknownAclToken { accessor: String },
    #[error("unknown policy {name:?}; see `tepui acl policy ls`")]
    UnknownPolicy { name: String },
    #[error("policy name {name:?} must be 1 to 128 of [A-Za-z0-9_.-]")]
    BadPolicyName { name: String },
    #[error("policy {name:?} is used by token {accessor}; revoke it first")]
    PolicyInUse { name: String, accessor: String },
    #[error("unknown token {id}")]
    UnknownToken { id: String },
    #[error("wrong secret for token {id}")]
    WrongSecret { id: String },
    #[error("token {id} was revoked; create a new one with `tepui token create`")]
    TokenRevoked { id: String },
    #[error("token {id} expired at {expired_at} (unix ms); create a new one with `tepui token create`")]
    TokenExpired { id: String, expired_at: Millis },
    #[error("node name {name:?} is already used by node {id} ({role}); pick another --name or remove that node")]
    NameInUse { name: String, id: NodeId, role: Role },
    #[error("unknown node {id}")]
    UnknownNode { id: NodeId },
    #[error("node {id} is a server; an agent cannot register with its id")]
    NotAnAgent { id: NodeId },
    #[error("check-and-set failed for {key}: expected index {expected}, found {found}")]
    CasFailed { key: String, expected: u64, found: u64 },
    #[error("unknown variable {key}")]
    UnknownVar { key: String },
    #[error("no secret {path:?}")]
    UnknownSecret { path: String },
    #[error("a job with id {id:?} exists")]
    JobExists { id: String },
    #[error("no job {id:?}")]
    UnknownJob { id: String },
    #[error("run {id:?} exists")]
    JobRunExists { id: String },
    #[error("job {id:?} still waits for a parent to succeed")]
    JobNotReady { id: String },
    #[error("schedule {schedule} is accounted for up to {handled}")]
    ScheduleHandled { schedule: String, handled: Millis },
    #[error("no active run {id:?}")]
    UnknownJobRun { id: String },
    #[error("task {id} already exists")]
    TaskExists { id: String },
    #[error("unknown task {id}")]
    UnknownTask { id: String },
    #[error("{0}")]
    Placement(PlacementError),
    #[error("unknown framework {id}")]
    UnknownFramework { id: String },
    #[error("acknowledgement {uuid} of task {task_id} is not for its latest status update")]
    StaleAcknowledgement { task_id: String, uuid: String },
    #[error("invalid role name {role:?}")]
    InvalidRole { role: String },
    #[error("app id {id:?} must be an absolute path such as /prod/web")]
    InvalidApp { id: String },
    #[error("unknown deployment {id}")]
    UnknownDeployment { id: String },
    #[error("a CA rotation is already under way; wait for every node to renew, or finish it")]
    RotationInProgress,
    #[error("no CA rotation is under way")]
    NoRotation,
    #[error("{}", package_repo_words("is already present in the list", name, uri))]
    PackageRepoExists { name: Option<String>, uri: Option<String> },
    #[error("{}", package_repo_words("is not present in the list", name, uri))]
    UnknownPackageRepo { name: Option<String>, uri: Option<String> },
    #[error("a package is already installed with app id {app_id}")]
    PackageInstalled { app_id: String },
    #[error("no package is installed with app id {app_id}")]
    UnknownPackageInstall { app_id: String },
    #[error("ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID {executor_id:?}")]
    ExecutorIncompatible { executor_id: String },
    #[error("a task group needs at least one task")]
    EmptyTaskGroup,
    #[error("task {task_id} and executor {executor_id} are not of the same framework and agent")]
    ExecutorMismatch { executor_id: String, task_id: String },
}

/// Cosmos's words for a repository refused by name, URI or both.
fn package_repo_words(what: &str, name: &Option<String>, uri: &Option<String>) -> String {
    match (name, uri) {
        (Some(n), Some(u)) => format!("repository name [{n}] and URI [{u}]: {what}"),
        (Some(n), None) => format!("repository name [{n}] {what}"),
        (None, Some(u)) => format!("repository URI [{u}] {what}"),
        (None, None) => format!("no repository named: {what}"),
    }
}

impl State {
    /// A run that ended: into its job's history, and, if it succeeded, one parent nearer to
    /// running for each of the job's dependents. Its last task says how it ended, unless
    /// `why` does.
    fn finish_job_run(&mut self, mut run: JobRunRecord, why: Option<&str>) {
        if let Some(task) = run.tasks.last().and_then(|t| self.tasks.get(t)) {
            run.exit_code = task.exit_code;
            run.message = Some(task.message.clone()).filter(|m| !m.is_empty());
        }
        if let Some(why) = why {
            run.message = Some(why.to_string());
        }
        if run.status == JobRunStatus::Success {
            let children = self.job_dependents.children(&self.jobs, &run.job_id).to_vec();
            for child in children {
                self.job_parents_succeeded
                    .entry(child)
                    .or_default()
                    .insert(run.job_id.clone());
            }
        }
        self.job_history.entry(run.job_id.clone()).or_default().record(run);
    }

    /// Applies one committed command at log index `index`. What a command writes is versioned
    /// `index * 1000 + position in its batch`, so versions only grow and never repeat.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Response {
        match cmd {
            Command::Batch { cmds } => Response::Batch(
                cmds.iter()
                    .take(MAX_BATCH)
                    .enumerate()
                    .map(|(pos, c)| self.apply_one(index * 1000 + pos as u64 + 1, c))
                    .collect(),
            ),
            other => self.apply_one(index * 1000, other),
        }
    }

    fn apply_one(&mut self, version: u64, cmd: &Command) -> Response {
        match self.try_apply(version, cmd) {
            Ok(r) => r,
            Err(e) => Response::Rejected(e),
        }
    }

    fn try_apply(&mut self, index: u64, cmd: &Command) -> Result<Response, ApplyError> {
        match cmd {
            // Batches do not nest.
            Command::Batch { .. } => Ok(Response::Batch(vec![])),
            Command::Noop => Ok(Response::Ok),
            Command::InitCluster { cluster, bootstrap } => {
                if self.cluster.is_some() {
                    return Err(ApplyError::AlreadyInitialized);
                }
                self.cluster = Some(cluster.clone());
                self.next_node_id = self.next_node_id.max(bootstrap.id + 1);
                self.nodes.insert(bootstrap.id, bootstrap.clone());
                Ok(Response::Ok)
            }
            Command::AclBootstrap { token } => {
                if !self.acl_tokens.is_empty() {
                    return Err(ApplyError::AclBootstrapped);
                }
                self.acl_tokens.insert(token.accessor.clone(), token.clone());
                Ok(Response::Ok)
            }
            Command::AclUpsertPolicy { policy } => {
                if !acl::valid_policy_name(&policy.name) {
                    return Err(ApplyError::BadPolicyName {
                        name: policy.name.clone(),
                    });
                }
                self.acl_policies.insert(policy.name.clone(), policy.clone());
                Ok(Response::Ok)
            }
            Command::AclDeletePolicy { name } => {
                if !self.acl_policies.contains_key(name) {
                    return Err(ApplyError::UnknownPolicy { name: name.clone() });
                }
                if let Some(t) = self.acl_tokens.values().find(|t| t.policies.contains(name)) {
                    return Err(ApplyError::PolicyInUse {
                        name: name.clone(),
                        accessor: t.accessor.clone(),
                    });
                }
                self.acl_policies.remove(name);
                Ok(Response::Ok)
            }
            Command::AclCreateToken { token } => {
                if self.acl_tokens.contains_key(&token.accessor) {
                    return Err(ApplyError::AclTokenExists {
                        accessor: token.accessor.clone(),
                    });
                }
                if let Some(missing) = token.policies.iter().find(|p| !self.acl_policies.contains_key(*p)) {
                    return Err(ApplyError::UnknownPolicy { name: missing.clone() });
                }
                self.acl_tokens.insert(token.accessor.clone(), token.clone());
                Ok(Response::Ok)
            }
            Command::AclRevokeToken { accessor } => {
                self.acl_tokens
                    .remove(accessor)
                    .ok_or_else(|| ApplyError::UnknownAclToken {
                        accessor: accessor.clone(),
                    })?;
                // The tokens derived from it, and theirs, go with it.
                let mut gone = vec![accessor.clone()];
                while let Some(parent) = gone.pop() {
                    let children: Vec<String> = self
                        .acl_tokens
                        .values()
                        .filter(|t| t.parent.as_deref() == Some(parent.as_str()))
                        .map(|t| t.accessor.clone())
                        .collect();
                    for child in children {
                        self.acl_tokens.remove(&child);
                        gone.push(child);
                    }
                }
                Ok(Response::Ok)
            }
            Command::AclSetAnonymousRead { enabled } => {
                self.acl_anonymous_read = *enabled;
                Ok(Response::Ok)
            }
            Command::CreateToken { token } => {
                self.require_cluster()?;
                if self.tokens.contains_key(&token.id) {
                    return Err(ApplyError::TokenExists { id: token.id.clone() });
                }
                self.tokens.insert(token.id.clone(), token.clone());
                Ok(Response::Ok)
            }
            Command::RevokeToken { id } => {
                let t = self
                    .tokens
                    .get_mut(id)
                    .ok_or_else(|| ApplyError::UnknownToken { id: id.clone() })?;
                t.revoked = true;
                Ok(Response::Ok)
            }
            Command::AdmitNode {
                token_id,
                secret_sha256,
                name,
                role,
                cluster_addr,
                http_addr,
                now,
            } => {
                self.require_cluster()?;
                self.check_token(token_id, secret_sha256, *now)?;
                if let Some(existing) = self.nodes.values().find(|n| &n.name == name) {
                    return Err(ApplyError::NameInUse {
                        name: name.clone(),
                        id: existing.id,
                        role: existing.role,
                    });
                }
                let id = self.next_node_id.max(1);
                self.next_node_id = id + 1;
                self.nodes.insert(
                    id,
                    NodeRecord {
                        id,
                        name: name.clone(),
                        role: *role,
                        cluster_addr: cluster_addr.clone(),
                        http_addr: http_addr.clone(),
                        agent: None,
                        status: NodeStatus::Pending,
                        joined_at: *now,
                        status_changed_at: *now,
                        token_id: Some(token_id.clone()),
                        maintenance: Maintenance::Active,
                    },
                );
                if let Some(t) = self.tokens.get_mut(token_id) {
                    t.uses += 1;
                }
                Ok(Response::NodeAdmitted { id })
            }
            Command::RegisterAgent { id, agent, now } => {
                let node = self.nodes.get_mut(id).ok_or(ApplyError::UnknownNode { id: *id })?;
                node.agent = Some(agent.clone());
                if node.status != NodeStatus::Ready {
                    node.status = NodeStatus::Ready;
                    node.status_changed_at = *now;
                }
                Ok(Response::Ok)
            }
            Command::SetNodeStatus { id, status, now } => {
                let node = self.nodes.get_mut(id).ok_or(ApplyError::UnknownNode { id: *id })?;
                if node.status != *status {
                    node.status = *status;
                    node.status_changed_at = *now;
                }
                Ok(Response::Ok)
            }
            Command::UpdateNodeAddrs {
                id,
                cluster_addr,
                http_addr,
            } => {
                let node = self.nodes.get_mut(id).ok_or(ApplyError::UnknownNode { id: *id })?;
                node.cluster_addr = cluster_addr.clone();
                node.http_addr = http_addr.clone();
                Ok(Response::Ok)
            }
            Command::RemoveNode { id } => {
                self.nodes.remove(id).ok_or(ApplyError::UnknownNode { id: *id })?;
                self.pki.certs.remove(id);
                // The rotation may have been waiting for this node alone.
                self.finish_rotation_when_done();
                Ok(Response::Ok)
            }
            Command::RotateCa {
                ca_cert_pem,
                ca_key_pem,
                ca_sha256,
                cross_cert_pem,
            } => {
                if self.pki.rotating() {
                    return Err(ApplyError::RotationInProgress);
                }
                let cluster = self.cluster.as_mut().ok_or(ApplyError::NotInitialized)?;
                let old = std::mem::replace(&mut cluster.ca_cert_pem, ca_cert_pem.clone());
                cluster.ca_key_pem = ca_key_pem.clone();
                self.pki.generation = self.pki.generation.max(1) + 1;
                self.pki.ca_sha256 = ca_sha256.clone();
                self.pki.retiring_ca_pems = vec![old.clone()];
                self.pki.history.push(CaLink {
                    ca_cert_pem: old,
                    cross_cert_pem: cross_cert_pem.clone(),
                });
                Ok(Response::Ok)
            }
            Command::RecordCertificate {
                id,
                ca_sha256,
                not_after,
                now,
            } => {
                if !self.nodes.contains_key(id) {
                    return Err(ApplyError::UnknownNode { id: *id });
                }
                self.pki.certs.insert(
                    *id,
                    CertRecord {
                        ca_sha256: ca_sha256.clone(),
                        not_after: *not_after,
                        issued_at: *now,
                    },
                );
                self.finish_rotation_when_done();
                Ok(Response::Ok)
            }
            Command::FinishCaRotation => {
                if !self.pki.rotating() {
                    return Err(ApplyError::NoRotation);
                }
                self.pki.retiring_ca_pems.clear();
                Ok(Response::Ok)
            }
            Command::PutVar { key, value, cas, now } => {
                let found = self.vars.get(key).map(|v| v.modify_index).unwrap_or(0);
                if let Some(expected) = cas {
                    if *expected != found {
                        return Err(ApplyError::CasFailed {
                            key: key.clone(),
                            expected: *expected,
                            found,
                        });
                    }
                }
                self.vars.insert(
                    key.clone(),
                    Var {
                        value: value.clone(),
                        modify_index: index,
                        modified_at: *now,
                    },
                );
                Ok(Response::Var {
                    key: key.clone(),
                    modify_index: index,
                })
            }
            Command::DeleteVar { key, cas } => {
                let found = self
                    .vars
                    .get(key)
                    .map(|v| v.modify_index)
                    .ok_or_else(|| ApplyError::UnknownVar { key: key.clone() })?;
                if let Some(expected) = cas {
                    if *expected != found {
                        return Err(ApplyError::CasFailed {
                            key: key.clone(),
                            expected: *expected,
                            found,
                        });
                    }
                }
                self.vars.remove(key);
                Ok(Response::Ok)
            }
            Command::SetMaintenance { id, maintenance } => {
                let node = self.nodes.get_mut(id).ok_or(ApplyError::UnknownNode { id: *id })?;
                if node.agent.is_none() {
                    return Err(ApplyError::NotAnAgent { id: *id });
                }
                node.maintenance = *maintenance;
                Ok(Response::Ok)
            }
            Command::CreateTask { task } => {
                if self.tasks.contains_key(&task.id) {
                    return Err(ApplyError::TaskExists { id: task.id.clone() });
                }
                self.check_fits(task.agent_id, &task.def)
                    .map_err(ApplyError::Placement)?;
                self.tasks.insert(task.id.clone(), (**task).clone());
                Ok(Response::Ok)
            }
            Command::TaskStatus { task_id, update } => {
                let t = self
                    .tasks
                    .get_mut(task_id)
                    .ok_or_else(|| ApplyError::UnknownTask { id: task_id.clone() })?;
                // At-least-once delivery: a resent or late update changes nothing.
                if t.state.is_terminal() || t.last_update_uuid.as_deref() == Some(update.uuid.as_str()) {
                    return Ok(Response::Ok);
                }
                if update.seq.is_some() && update.seq <= t.last_agent_seq {
                    return Ok(Response::Ok);
                }
                t.last_agent_seq = t.last_agent_seq.max(update.seq);
                // A kill was asked for: the task stays KILLING until it ends.
                t.state = if t.kill_requested && !update.state.is_terminal() {
                    TaskState::TaskKilling
                } else {
                    update.state
                };
                t.reason = update.reason.clone();
                t.message = update.message.clone();
                t.exit_code = update.exit_code;
                t.signal = update.signal;
                t.updated_at = update.at;
                t.last_update_uuid = Some(update.uuid.clone());
                if update.healthy.is_some() {
                    t.healthy = update.healthy;
                }
                if update.container_ip.is_some() {
                    t.container_ip = update.container_ip;
                }
                if update.state == TaskState::TaskRunning && t.started_at.is_none() {
                    t.started_at = Some(update.at);
                }
                if update.state.is_terminal() {
                    t.finished_at = Some(update.at);
                }
                Ok(Response::Ok)
            }
            Command::ForgetTasks { task_ids } => {
                let mut forgotten = Vec::new();
                for id in task_ids {
                    if self.tasks.get(id).is_some_and(|t| t.state.is_terminal()) {
                        self.tasks.remove(id);
                        forgotten.push(id.clone());
                    }
                }
                self.forget_executor_tasks(&forgotten);
                Ok(Response::Ok)
            }
            Command::KillTask { task_id, now } => {
                let t = self
                    .tasks
                    .get_mut(task_id)
                    .ok_or_else(|| ApplyError::UnknownTask { id: task_id.clone() })?;
                if !t.state.is_terminal() {
                    t.kill_requested = true;
                    t.state = TaskState::TaskKilling;
                    t.updated_at = *now;
                }
                Ok(Response::Ok)
            }
            Command::SubscribeFramework { framework } => self.subscribe_framework(framework),
            Command::DisconnectFramework { id, now } => self.disconnect_framework(id, *now),
            Command::RemoveFramework { id, now } => self.remove_framework(id, *now),
            Command::AcknowledgeTask { task_id, uuid } => self.acknowledge(task_id, uuid),
            Command::UpdateWeights { weights } => {
                for (role, _) in weights {
                    if role.is_empty() {
                        return Err(ApplyError::InvalidRole { role: role.clone() });
                    }
                }
                for (role, w) in weights {
                    self.update_role(role, |c| c.weight_milli = *w)?;
                }
                Ok(Response::Ok)
            }
            Command::SetQuota {
                role,
                guarantees,
                limits,
            } => self.update_role(role, |c| {
                c.quota_guarantees = guarantees.clone();
                c.quota_limits = limits.clone();
            }),
            Command::SetReservations { agent, resources } => {
                if !self.nodes.contains_key(agent) {
                    return Err(ApplyError::UnknownNode { id: *agent });
                }
                if resources.is_empty() {
                    self.reservations.remove(agent);
                } else {
                    self.reservations.insert(*agent, resources.clone());
                }
                Ok(Response::Ok)
            }
            Command::ChangeServices { change } => self.change_services(change),
            Command::AddPackageRepo { repo, index } => self.add_package_repo(repo, *index),
            Command::RemovePackageRepo { name, uri } => self.remove_package_repo(name.as_deref(), uri.as_deref()),
            Command::PutPackageInstall { install, create } => self.put_package_install(install, *create),
            Command::RemovePackageInstall { app_id } => self.remove_package_install(app_id),
            Command::LaunchOnExecutor {
                executor,
                task,
                task_info,
            } => self.launch_on_executor(executor, task, task_info),
            Command::LaunchGroup { executor, tasks } => {
                let tasks: Vec<(&TaskRecord, &serde_json::Value)> = tasks.iter().map(|(t, i)| (t, i)).collect();
                self.launch_tasks_on_executor(executor, &tasks)
            }
            Command::EndExecutor {
                agent_id,
                framework_id,
                executor_id,
                exit_status,
                message,
                now,
            } => self.end_executor(*agent_id, framework_id, executor_id, *exit_status, message, *now),
            Command::UpdateDeployment { id, plan } => self.update_deployment(id, plan.as_ref()),
            Command::PutJob { id, spec, create, now } => {
                let created_at = match (self.jobs.get(id), create) {
                    (Some(_), true) => return Err(ApplyError::JobExists { id: id.clone() }),
                    (None, false) => return Err(ApplyError::UnknownJob { id: id.clone() }),
                    (Some(j), false) => j.created_at,
                    (None, true) => *now,
                };
                self.jobs.insert(
                    id.clone(),
                    JobRecord {
                        spec: spec.clone(),
                        created_at,
                        updated_at: *now,
                    },
                );
                self.job_dependents = DependentsIndex::default();
                Ok(Response::Ok)
            }
            Command::DeleteJob { id } => {
                self.jobs
                    .remove(id)
                    .ok_or_else(|| ApplyError::UnknownJob { id: id.clone() })?;
                self.job_dependents = DependentsIndex::default();
                self.job_history.remove(id);
                self.job_runs.retain(|_, r| &r.job_id != id);
                let prefix = format!("{id}/");
                self.job_schedules_handled.retain(|k, _| !k.starts_with(&prefix));
                self.job_parents_succeeded.remove(id);
                Ok(Response::Ok)
            }
            Command::StartJobRun { run } => {
                if !self.jobs.contains_key(&run.job_id) {
                    return Err(ApplyError::UnknownJob { id: run.job_id.clone() });
                }
                if self.job_runs.contains_key(&run.id) {
                    return Err(ApplyError::JobRunExists { id: run.id.clone() });
                }
                if run.status.is_finished() {
                    // Recorded as ended (Chronos' "mark job successful"): straight to history.
                    self.finish_job_run(run.clone(), None);
                } else {
                    self.job_runs.insert(run.id.clone(), run.clone());
                }
                Ok(Response::Ok)
            }
            Command::ScheduleJobRun { schedule, handled, run } => {
                let before = self.job_schedules_handled.get(schedule).copied().unwrap_or(0);
                if *handled <= before {
                    return Err(ApplyError::ScheduleHandled {
                        schedule: schedule.clone(),
                        handled: before,
                    });
                }
                if let Some(run) = run {
                    if !self.jobs.contains_key(&run.job_id) {
                        return Err(ApplyError::UnknownJob { id: run.job_id.clone() });
                    }
                    if self.job_runs.contains_key(&run.id) {
                        return Err(ApplyError::JobRunExists { id: run.id.clone() });
                    }
                    self.job_runs.insert(run.id.clone(), run.clone());
                }
                self.job_schedules_handled.insert(schedule.clone(), *handled);
                Ok(Response::Ok)
            }
            Command::StartDependentRun { run } => {
                let parents = self
                    .jobs
                    .get(&run.job_id)
                    .map(|j| job_dependencies(&j.spec))
                    .ok_or_else(|| ApplyError::UnknownJob { id: run.job_id.clone() })?;
                let succeeded = self.job_parents_succeeded.get(&run.job_id);
                let ready = !parents.is_empty() && parents.iter().all(|p| succeeded.is_some_and(|s| s.contains(p)));
                if !ready {
                    return Err(ApplyError::JobNotReady { id: run.job_id.clone() });
                }
                if self.job_runs.contains_key(&run.id) {
                    return Err(ApplyError::JobRunExists { id: run.id.clone() });
                }
                self.job_runs.insert(run.id.clone(), run.clone());
                self.job_parents_succeeded.remove(&run.job_id);
                Ok(Response::Ok)
            }
            Command::JobRunTask { run_id, task_id } => {
                let run = self
                    .job_runs
                    .get_mut(run_id)
                    .ok_or_else(|| ApplyError::UnknownJobRun { id: run_id.clone() })?;
                if !run.tasks.contains(task_id) {
                    run.tasks.push(task_id.clone());
                }
                run.status = JobRunStatus::Starting;
                Ok(Response::Ok)
            }
            Command::SetJobRunStatus {
                run_id,
                status,
                now,
                message,
            } => {
                let run = self
                    .job_runs
                    .get_mut(run_id)
                    .ok_or_else(|| ApplyError::UnknownJobRun { id: run_id.clone() })?;
                run.status = *status;
                if status.is_finished() {
                    run.completed_at = Some(*now);
                    let run = self.job_runs.remove(run_id).expect("just found");
                    self.finish_job_run(run, message.as_deref());
                }
                Ok(Response::Ok)
            }
            Command::PutSecret { path, sealed, now } => {
                self.secrets.insert(
                    path.clone(),
                    SecretRecord {
                        sealed: sealed.clone(),
                        modify_index: index,
                        modified_at: *now,
                    },
                );
                Ok(Response::Secret {
                    path: path.clone(),
                    modify_index: index,
                })
            }
            Command::DeleteSecret { path } => self
                .secrets
                .remove(path)
                .map(|_| Response::Ok)
                .ok_or_else(|| ApplyError::UnknownSecret { path: path.clone() }),
            Command::Restore { state } => {
                self.require_cluster()?;
                let mut restored = (**state).clone();
                // A backup may come from another cluster: this cluster's CA and its nodes stay,
                // since the running nodes hold certificates of this CA.
                restored.cluster = self.cluster.clone();
                restored.nodes = std::mem::take(&mut self.nodes);
                restored.pki = std::mem::take(&mut self.pki);
                restored.next_node_id = self.next_node_id.max(restored.next_node_id);
                *self = restored;
                Ok(Response::Ok)
            }
        }
    }

    /// Drops the retired CAs once every node holds a certificate of the signing one.
    fn finish_rotation_when_done(&mut self) {
        if self.pki.rotating() && self.pki.pending(self.nodes.keys()).next().is_none() {
            self.pki.retiring_ca_pems.clear();
        }
    }

    /// The CAs nodes trust now, PEM: the signing CA first, then those a rotation retires.
    pub fn trusted_cas_pem(&self) -> String {
        let mut out = self.cluster.as_ref().map(|c| c.ca_cert_pem.clone()).unwrap_or_default();
        for pem in &self.pki.retiring_ca_pems {
            out.push_str(pem);
        }
        out
    }

    /// What servers send after their own certificate and the trusted CAs: older CAs and their
    /// successors' cross-certificates.
    pub fn ca_chain_extra_pem(&self) -> String {
        let mut out = String::new();
        for link in &self.pki.history {
            out.push_str(&link.cross_cert_pem);
            out.push_str(&link.ca_cert_pem);
        }
        out
    }

    fn require_cluster(&self) -> Result<&ClusterInfo, ApplyError> {
        self.cluster.as_ref().ok_or(ApplyError::NotInitialized)
    }

    /// Checks a join token without changing anything; used by the leader before it signs a
    /// certificate, and again inside `AdmitNode` so that a revocation racing a join wins.
    pub fn check_token(&self, id: &str, secret_sha256: &str, now: Millis) -> Result<&TokenRecord, ApplyError> {
        let t = self
            .tokens
            .get(id)
            .ok_or_else(|| ApplyError::UnknownToken { id: id.to_string() })?;
        if !constant_time_eq(t.secret_sha256.as_bytes(), secret_sha256.as_bytes()) {
            return Err(ApplyError::WrongSecret { id: id.to_string() });
        }
        if let Some(refusal) = t.refusal(now) {
            return Err(refusal);
        }
        Ok(t)
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.values().find(|n| n.name == name)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_holds_back_commands_newer_than_the_cluster() {
        let put = Command::PutVar {
            key: "k".into(),
            value: "v".into(),
            cas: None,
            now: 1,
        };
        let batch = Command::Batch {
            cmds: vec![put.clone(), Command::Noop],
        };
        // Every command 0.1.0 knows passes a cluster of 0.1.0 servers.
        let legacy = tepui_common::version::LEGACY_PROTOCOL;
        assert_eq!(gate(&[put.clone(), batch.clone()], legacy), Ok(()));
        assert_eq!(batch.protocol(), legacy);
        // A command newer than the cluster's lowest protocol is refused, named even inside a
        // batch, with what it needs.
        let e = gate(&[batch, Command::Noop], 0).unwrap_err();
        assert_eq!((e.kind, e.needs, e.cluster), ("put_var", 1, 0));
        assert!(e.to_string().contains("upgrade-check"), "{e}");
    }

    #[test]
    fn pods_and_task_groups_wait_for_a_cluster_of_0_2_0() {
        let legacy = tepui_common::version::LEGACY_PROTOCOL;
        let apps_only = Command::ChangeServices {
            change: ServiceChange::default(),
        };
        assert_eq!(gate(std::slice::from_ref(&apps_only), legacy), Ok(()));
        let pods = Command::ChangeServices {
            change: ServiceChange {
                remove_pods: vec!["/web".into()],
                ..ServiceChange::default()
            },
        };
        let e = gate(
            &[Command::Batch {
                cmds: vec![apps_only, pods.clone()],
            }],
            legacy,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.needs), ("change_services", 2));
        assert_eq!(gate(&[pods], 2), Ok(()));
    }

    fn acl_token(accessor: &str, policies: &[&str]) -> AclToken {
        AclToken {
            accessor: accessor.into(),
            secret_sha256: "h".into(),
            name: String::new(),
            management: false,
            policies: policies.iter().map(|p| p.to_string()).collect(),
            created_at: 1,
            expires_at: None,
            parent: None,
        }
    }

    #[test]
    fn acl_bootstrap_happens_once_and_tokens_name_existing_policies() {
        let mut s = State::default();
        let boot = AclToken {
            management: true,
            ..acl_token("boot", &[])
        };
        assert_eq!(s.apply(1, &Command::AclBootstrap { token: boot.clone() }), Response::Ok);
        assert_eq!(
            s.apply(2, &Command::AclBootstrap { token: boot }),
            Response::Rejected(ApplyError::AclBootstrapped)
        );
        assert_eq!(
            s.apply(
                3,
                &Command::AclCreateToken {
                    token: acl_token("t1", &["dev"])
                }
            ),
            Response::Rejected(ApplyError::UnknownPolicy { name: "dev".into() })
        );
        let dev = AclPolicy {
            name: "dev".into(),
            description: String::new(),
            capabilities: [Capability::Read, Capability::Write].into(),
            frameworks: vec![],
            modified_at: 1,
        };
        assert_eq!(
            s.apply(4, &Command::AclUpsertPolicy { policy: dev.clone() }),
            Response::Ok
        );
        assert_eq!(
            s.apply(
                5,
                &Command::AclUpsertPolicy {
                    policy: AclPolicy {
                        name: "a/b".into(),
                        ..dev
                    }
                }
            ),
            Response::Rejected(ApplyError::BadPolicyName { name: "a/b".into() })
        );
        assert_eq!(
            s.apply(
                6,
                &Command::AclCreateToken {
                    token: acl_token("t1", &["dev"])
                }
            ),
            Response::Ok
        );
        assert_eq!(
            s.apply(7, &Command::AclDeletePolicy { name: "dev".into() }),
            Response::Rejected(ApplyError::PolicyInUse {
                name: "dev".into(),
                accessor: "t1".into()
            })
        );
        assert_eq!(
            s.apply(8, &Command::AclRevokeToken { accessor: "t1".into() }),
            Response::Ok
        );
        assert_eq!(
            s.apply(9, &Command::AclDeletePolicy { name: "dev".into() }),
            Response::Ok
        );
        assert!(!s.acl_anonymous_read);
        s.apply(10, &Command::AclSetAnonymousRead { enabled: true });
        assert!(s.acl_anonymous_read);
    }

    fn cluster() -> ClusterInfo {
        ClusterInfo {
            cluster_id: "c1".into(),
            ca_cert_pem: "cert".into(),
            ca_key_pem: "key".into(),
            created_at: 1,
        }
    }

    fn bootstrap() -> NodeRecord {
        NodeRecord {
            id: 1,
            name: "s1".into(),
            role: Role::Server,
            cluster_addr: "127.0.0.1:5052".into(),
            http_addr: "127.0.0.1:5050".into(),
            agent: None,
            status: NodeStatus::Ready,
            joined_at: 1,
            status_changed_at: 1,
            token_id: None,
            maintenance: Maintenance::Active,
        }
    }

    fn token(id: &str, expires_at: Option<Millis>) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            role: Role::Agent,
            secret_sha256: "abc".into(),
            description: String::new(),
            created_at: 1,
            expires_at,
            revoked: false,
            uses: 0,
        }
    }

    fn admit(token_id: &str, secret: &str, name: &str, now: Millis) -> Command {
        Command::AdmitNode {
            token_id: token_id.into(),
            secret_sha256: secret.into(),
            name: name.into(),
            role: Role::Agent,
            cluster_addr: String::new(),
            http_addr: String::new(),
            now,
        }
    }

    fn initialized() -> State {
        let mut s = State::default();
        assert_eq!(
            s.apply(
                1,
                &Command::InitCluster {
                    cluster: cluster(),
                    bootstrap: bootstrap()
                }
            ),
            Response::Ok
        );
        s
    }

    #[test]
    fn init_only_once() {
        let mut s = initialized();
        let again = s.apply(
            2,
            &Command::InitCluster {
                cluster: cluster(),
                bootstrap: bootstrap(),
            },
        );
        assert_eq!(again, Response::Rejected(ApplyError::AlreadyInitialized));
    }

    #[test]
    fn admit_assigns_fresh_ids_and_counts_uses() {
        let mut s = initialized();
        s.apply(
            2,
            &Command::CreateToken {
                token: token("t1", None),
            },
        );
        assert_eq!(
            s.apply(3, &admit("t1", "abc", "a1", 5)),
            Response::NodeAdmitted { id: 2 }
        );
        assert_eq!(
            s.apply(4, &admit("t1", "abc", "a2", 5)),
            Response::NodeAdmitted { id: 3 }
        );
        assert_eq!(s.tokens["t1"].uses, 2);
        assert_eq!(s.nodes[&3].status, NodeStatus::Pending);
    }

    #[test]
    fn admit_refusals_each_have_their_reason() {
        let mut s = initialized();
        s.apply(
            2,
            &Command::CreateToken {
                token: token("t1", Some(100)),
            },
        );
        assert_eq!(
            s.apply(3, &admit("nope", "abc", "a1", 5)),
            Response::Rejected(ApplyError::UnknownToken { id: "nope".into() })
        );
        assert_eq!(
            s.apply(3, &admit("t1", "xyz", "a1", 5)),
            Response::Rejected(ApplyError::WrongSecret { id: "t1".into() })
        );
        assert_eq!(
            s.apply(3, &admit("t1", "abc", "a1", 100)),
            Response::Rejected(ApplyError::TokenExpired {
                id: "t1".into(),
                expired_at: 100
            })
        );
        s.apply(4, &Command::RevokeToken { id: "t1".into() });
        assert_eq!(
            s.apply(5, &admit("t1", "abc", "a1", 5)),
            Response::Rejected(ApplyError::TokenRevoked { id: "t1".into() })
        );
        assert!(s.apply(6, &admit("t1", "abc", "s1", 5)) != Response::NodeAdmitted { id: 2 });
        assert_eq!(s.nodes.len(), 1, "nothing joined");
    }

    #[test]
    fn duplicate_name_is_refused() {
        let mut s = initialized();
        s.apply(
            2,
            &Command::CreateToken {
                token: token("t1", None),
            },
        );
        assert_eq!(
            s.apply(3, &admit("t1", "abc", "s1", 5)),
            Response::Rejected(ApplyError::NameInUse {
                name: "s1".into(),
                id: 1,
                role: Role::Server
            })
        );
    }

    #[test]
    fn vars_check_and_set() {
        let mut s = initialized();
        let put = |cas| Command::PutVar {
            key: "k".into(),
            value: "v".into(),
            cas,
            now: 1,
        };
        let var = |modify_index| Response::Var {
            key: "k".into(),
            modify_index,
        };
        assert_eq!(s.apply(7, &put(Some(0))), var(7000));
        assert_eq!(
            s.apply(8, &put(Some(0))),
            Response::Rejected(ApplyError::CasFailed {
                key: "k".into(),
                expected: 0,
                found: 7000
            })
        );
        assert_eq!(s.apply(9, &put(Some(7000))), var(9000));
        assert_eq!(
            s.apply(
                10,
                &Command::DeleteVar {
                    key: "k".into(),
                    cas: None
                }
            ),
            Response::Ok
        );
        assert!(s.vars.is_empty());
    }

    #[test]
    fn a_batch_answers_each_command_and_versions_never_repeat() {
        let mut s = initialized();
        let put = |value: &str, cas| Command::PutVar {
            key: "k".into(),
            value: value.into(),
            cas,
            now: 1,
        };
        let answer = s.apply(
            5,
            &Command::Batch {
                cmds: vec![put("a", None), put("b", Some(5001)), put("c", Some(5001))],
            },
        );
        let Response::Batch(answers) = answer else {
            panic!("a batch answers with a batch")
        };
        assert_eq!(
            answers[0],
            Response::Var {
                key: "k".into(),
                modify_index: 5001
            }
        );
        assert_eq!(
            answers[1],
            Response::Var {
                key: "k".into(),
                modify_index: 5002
            }
        );
        assert!(
            matches!(answers[2], Response::Rejected(ApplyError::CasFailed { .. })),
            "the second write moved it on"
        );
        assert_eq!(s.vars["k"].value, "b");
        assert_eq!(
            s.apply(6, &put("d", Some(5002))),
            Response::Var {
                key: "k".into(),
                modify_index: 6000
            }
        );
    }

    #[test]
    fn restore_keeps_identity_and_nodes() {
        let mut s = initialized();
        let mut backup = State {
            cluster: Some(ClusterInfo {
                cluster_id: "other".into(),
                ..cluster()
            }),
            ..State::default()
        };
        backup.vars.insert(
            "k".into(),
            Var {
                value: "v".into(),
                modify_index: 3,
                modified_at: 1,
            },
        );
        backup.tokens.insert("t9".into(), token("t9", None));
        assert_eq!(
            s.apply(
                2,
                &Command::Restore {
                    state: Box::new(backup)
                }
            ),
            Response::Ok
        );
        assert_eq!(s.cluster.as_ref().unwrap().cluster_id, "c1");
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.vars["k"].value, "v");
        assert!(s.tokens.contains_key("t9"));
    }

    #[test]
    fn a_rotation_trusts_both_cas_until_every_node_renewed() {
        let mut s = initialized();
        s.apply(
            2,
            &Command::CreateToken {
                token: token("t1", None),
            },
        );
        assert_eq!(
            s.apply(3, &admit("t1", "abc", "a1", 5)),
            Response::NodeAdmitted { id: 2 }
        );
        let rotate = Command::RotateCa {
            ca_cert_pem: "new".into(),
            ca_key_pem: "newkey".into(),
            ca_sha256: "n".into(),
            cross_cert_pem: "cross".into(),
        };
        assert_eq!(s.apply(4, &rotate), Response::Ok);
        assert_eq!(s.apply(5, &rotate), Response::Rejected(ApplyError::RotationInProgress));
        assert_eq!(s.cluster.as_ref().unwrap().ca_cert_pem, "new");
        assert_eq!(s.trusted_cas_pem(), "newcert");
        assert_eq!(s.ca_chain_extra_pem(), "crosscert");
        assert_eq!(s.pki.generation, 2);
        let record = |id, ca: &str| Command::RecordCertificate {
            id,
            ca_sha256: ca.into(),
            not_after: 100,
            now: 6,
        };
        // A certificate of the old CA changes nothing; one node of two renewed is not enough.
        assert_eq!(s.apply(6, &record(1, "old")), Response::Ok);
        assert_eq!(s.apply(7, &record(2, "n")), Response::Ok);
        assert!(s.pki.rotating());
        assert_eq!(s.pki.pending(s.nodes.keys()).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            s.apply(8, &record(9, "n")),
            Response::Rejected(ApplyError::UnknownNode { id: 9 })
        );
        assert_eq!(s.apply(9, &record(1, "n")), Response::Ok);
        assert!(!s.pki.rotating(), "every node renewed: the old CA is dropped");
        assert_eq!(s.trusted_cas_pem(), "new");
        assert_eq!(
            s.apply(10, &Command::FinishCaRotation),
            Response::Rejected(ApplyError::NoRotation)
        );

        // Removing the last node that had not renewed ends a rotation too.
        assert_eq!(
            s.apply(
                11,
                &Command::RotateCa {
                    ca_cert_pem: "third".into(),
                    ca_key_pem: "k3".into(),
                    ca_sha256: "t".into(),
                    cross_cert_pem: "x3".into(),
                }
            ),
            Response::Ok
        );
        assert_eq!(s.pki.generation, 3);
        assert_eq!(s.apply(12, &record(1, "t")), Response::Ok);
        assert!(s.pki.rotating());
        assert_eq!(s.apply(13, &Command::RemoveNode { id: 2 }), Response::Ok);
        assert!(!s.pki.rotating());
        assert!(!s.pki.certs.contains_key(&2));
        assert_eq!(s.ca_chain_extra_pem(), "crosscertx3new");
    }

    #[test]
    fn apply_is_deterministic() {
        let cmds = [
            Command::InitCluster {
                cluster: cluster(),
                bootstrap: bootstrap(),
            },
            Command::CreateToken {
                token: token("t1", None),
            },
            admit("t1", "abc", "a1", 3),
            Command::PutVar {
                key: "x".into(),
                value: "1".into(),
                cas: None,
                now: 4,
            },
            Command::SetNodeStatus {
                id: 2,
                status: NodeStatus::Lost,
                now: 5,
            },
        ];
        let run = || {
            let mut s = State::default();
            let rs: Vec<_> = cmds.iter().enumerate().map(|(i, c)| s.apply(i as u64 + 1, c)).collect();
            (s, rs)
        };
        assert_eq!(run(), run());
    }
}
