//! Tasks on agents: the operator's `POST /v1/tasks`, status updates from agents (committed, then
//! acknowledged), reconciliation when an agent registers, and the calls an agent answers for an
//! API caller (logs, exec, images).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use tepui_api::{
    AgentImage, ErrorBody, ExecRequest, ExecResult, ImagePullRequest, PortView, PullLine, TaskRunRequest, TaskView,
};
use tepui_proto::agent::{
    HealthCheck, PortAssignment, Reply, Request, ServerToAgent, StatusUpdate, TaskLaunch, TaskReport, VolumeMount,
};
use tepui_state::{
    ApplyError, Command, Maintenance, NodeStatus, PortDef, State as Replicated, TaskDef, TaskRecord, TaskState,
    TaskUpdate, VolumeDef,
};

use crate::http::{ApiError, JsonBody};
use crate::node::{Inner, WriteError};
use crate::now_ms;

type Shared = State<Arc<Inner>>;
type ApiResult<T> = Result<axum::Json<T>, ApiError>;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/v1/tasks", get(list_tasks).post(run_task))
        .route("/v1/tasks/{id}", get(get_task).delete(kill_task))
        .route("/v1/tasks/{id}/kill", post(kill_task))
        .route("/v1/tasks/{id}/logs", get(task_logs))
        .route("/v1/tasks/{id}/exec", post(task_exec))
        .route("/v1/tasks/{id}/exec/ws", get(task_exec_ws))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .route("/v1/nodes/{id}/deactivate", post(deactivate_node))
        .route("/v1/nodes/{id}/reactivate", post(reactivate_node))
        .route("/v1/images", get(list_images))
        .route("/v1/images/pull", post(pull_image))
        .route(
            "/v1/images/import",
            post(import_image).layer(axum::extract::DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/v1/images/{*reference}", axum::routing::delete(remove_image))
}

const IMPORT_LIMIT: usize = 512 << 20;
/// Upload chunks on the agent stream; small enough not to hold up heartbeats behind them.
const UPLOAD_CHUNK: usize = 256 << 10;

pub(crate) fn launch_of(t: &TaskRecord) -> TaskLaunch {
    TaskLaunch {
        task_id: t.id.clone(),
        name: t.name.clone(),
        image: t.def.image.clone(),
        args: t.def.args.clone(),
        env: t.def.env.clone(),
        user: t.def.user.clone(),
        cwd: t.def.cwd.clone(),
        cpus_milli: t.def.cpus_milli,
        mem_mb: t.def.mem_mb,
        disk_mb: t.def.disk_mb,
        pids: t.def.pids,
        network: t.def.network.clone(),
        ports: t
            .def
            .ports
            .iter()
            .map(|p| PortAssignment {
                name: p.name.clone(),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        volumes: t
            .def
            .volumes
            .iter()
            .map(|v| VolumeMount {
                source: v.source.clone(),
                target: v.target.clone(),
                read_only: v.read_only,
            })
            .collect(),
        read_only_rootfs: t.def.read_only_rootfs,
        kill_grace_ms: t.def.kill_grace_ms,
        health_checks: t
            .def
            .health_checks
            .iter()
            .map(|h| HealthCheck {
                protocol: h.protocol.clone(),
                path: h.path.clone(),
                port: h.port,
                command: h.command.clone(),
                grace_period_ms: h.grace_period_ms,
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                max_consecutive_failures: h.max_consecutive_failures,
                delay_ms: h.delay_ms,
            })
            .collect(),
    }
}

/// Commits an agent's status update, then acknowledges it so the agent can forget it. An
/// update the leader cannot commit is not acknowledged: the agent sends it again.
pub(crate) async fn handle_status(inner: &Arc<Inner>, agent: u64, update: StatusUpdate) {
    let Some(state) = TaskState::parse(&update.state) else {
        tracing::warn!(agent, task = %update.task_id, state = %update.state, "unknown task state; acknowledging and ignoring it");
        ack(inner, agent, &update).await;
        return;
    };
    let owner = inner.state.read(|s| s.tasks.get(&update.task_id).map(|t| t.agent_id));
    if owner.is_some_and(|o| o != agent) {
        tracing::warn!(agent, task = %update.task_id, "update for a task of another agent; ignoring it");
        ack(inner, agent, &update).await;
        return;
    }
    let cmd = Command::TaskStatus {
        task_id: update.task_id.clone(),
        update: TaskUpdate {
            uuid: update.uuid.clone(),
            state,
            reason: update.reason.clone(),
            message: update.message.clone(),
            exit_code: update.exit_code,
            signal: update.signal,
            at: update.timestamp_ms,
            healthy: update.healthy,
        },
    };
    match inner.write(cmd).await {
        Ok(_) => {
            tracing::info!(agent, task = %update.task_id, state = %update.state, "task status");
            ack(inner, agent, &update).await;
            inner.master.task_changed(inner, &update.task_id);
        }
        Err(WriteError::Rejected(ApplyError::UnknownTask { .. })) => {
            ack(inner, agent, &update).await;
            inner
                .hub
                .send(
                    agent,
                    &ServerToAgent::Forget {
                        task_id: update.task_id.clone(),
                    },
                )
                .await;
        }
        Err(e) => {
            tracing::debug!(agent, task = %update.task_id, error = %e, "status update not committed; the agent will resend it")
        }
    }
}

async fn ack(inner: &Arc<Inner>, agent: u64, update: &StatusUpdate) {
    let msg = ServerToAgent::Ack {
        task_id: update.task_id.clone(),
        uuid: update.uuid.clone(),
    };
    inner.hub.send(agent, &msg).await;
}

/// A status the leader sets itself (not an agent's report), committed like any other update.
async fn leader_status(inner: &Arc<Inner>, task_id: &str, kind: &str, state: TaskState, reason: &str, message: String) {
    let now = now_ms();
    let cmd = Command::TaskStatus {
        task_id: task_id.to_string(),
        update: TaskUpdate {
            uuid: format!("{kind}-{task_id}-{now}"),
            state,
            reason: Some(reason.into()),
            message,
            exit_code: None,
            signal: None,
            at: now,
            healthy: None,
        },
    };
    match inner.write(cmd).await {
        Ok(_) => inner.master.task_changed(inner, task_id),
        Err(e) => tracing::debug!(task = %task_id, state = state.as_str(), error = %e, "could not set a task's status"),
    }
}

/// The agent's tasks can no longer be vouched for: they become `TASK_UNREACHABLE` until the
/// agent registers again and reports them.
pub(crate) async fn mark_unreachable(inner: &Arc<Inner>, agent: u64) {
    let (name, tasks): (String, Vec<String>) = inner.state.read(|s| {
        let name = s.nodes.get(&agent).map(|n| n.name.clone()).unwrap_or_default();
        let tasks = s
            .tasks
            .values()
            .filter(|t| t.agent_id == agent && !t.state.is_terminal() && t.state != TaskState::TaskUnreachable)
            .map(|t| t.id.clone())
            .collect();
        (name, tasks)
    });
    for id in tasks {
        let message = format!("agent {name} is unreachable: no heartbeat within the timeout");
        leader_status(
            inner,
            &id,
            "unreachable",
            TaskState::TaskUnreachable,
            "REASON_SLAVE_REMOVED",
            message,
        )
        .await;
    }
}

/// Settles the truth after an agent (re)registers: launches it missed go again, kills it
/// missed go again, tasks it lost are marked lost, and tasks it has that the cluster does not
/// want are forgotten.
pub(crate) async fn reconcile(inner: &Arc<Inner>, agent: u64, reported: Vec<TaskReport>) {
    let reported: HashMap<String, String> = reported.into_iter().map(|r| (r.task_id, r.state)).collect();
    let ours: Vec<TaskRecord> = inner
        .state
        .read(|s| s.tasks.values().filter(|t| t.agent_id == agent).cloned().collect());
    let known: HashMap<&str, &TaskRecord> = ours.iter().map(|t| (t.id.as_str(), t)).collect();
    for t in ours.iter().filter(|t| !t.state.is_terminal()) {
        match reported.get(&t.id) {
            Some(_) if t.kill_requested => {
                inner
                    .hub
                    .send(
                        agent,
                        &ServerToAgent::Kill {
                            task_id: t.id.clone(),
                            grace_ms: None,
                        },
                    )
                    .await;
            }
            Some(reported) if t.state == TaskState::TaskUnreachable => {
                // Back from a partition: the agent's word is the truth again.
                let Some(state) = TaskState::parse(reported) else {
                    continue;
                };
                let message = "the agent registered again and reported the task".to_string();
                leader_status(inner, &t.id, "reregistered", state, "REASON_RECONCILIATION", message).await;
            }
            Some(_) => {}
            None if t.state == TaskState::TaskStaging && !t.kill_requested => {
                inner
                    .hub
                    .send(agent, &ServerToAgent::Launch { task: launch_of(t) })
                    .await;
            }
            None => {
                let state = if t.kill_requested {
                    TaskState::TaskKilled
                } else {
                    TaskState::TaskLost
                };
                let message = "the agent re-registered without this task".to_string();
                leader_status(inner, &t.id, "reconcile", state, "REASON_RECONCILIATION", message).await;
            }
        }
    }
    for (id, state) in reported {
        let agent_running = TaskState::parse(&state).is_some_and(|s| !s.is_terminal());
        let wanted = known.get(id.as_str()).is_some_and(|t| !t.state.is_terminal());
        if agent_running && !wanted {
            tracing::info!(agent, task = %id, "agent runs a task the cluster does not want; forgetting it");
            inner.hub.send(agent, &ServerToAgent::Forget { task_id: id }).await;
        }
    }
}

fn task_view(s: &Replicated, t: &TaskRecord) -> TaskView {
    TaskView {
        id: t.id.clone(),
        name: t.name.clone(),
        agent_id: t.agent_id,
        agent_name: s.nodes.get(&t.agent_id).map(|n| n.name.clone()).unwrap_or_default(),
        state: t.state.as_str().into(),
        reason: t.reason.clone(),
        message: t.message.clone(),
        exit_code: t.exit_code,
        signal: t.signal,
        image: t.def.image.clone(),
        cmd: t.def.args.clone(),
        cpus: t.def.cpus_milli as f64 / 1000.0,
        mem_mb: t.def.mem_mb,
        disk_mb: t.def.disk_mb,
        network: t.def.network.clone(),
        ports: t
            .def
            .ports
            .iter()
            .map(|p| PortView {
                name: p.name.clone(),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        created_at_ms: t.created_at,
        updated_at_ms: t.updated_at,
        started_at_ms: t.started_at,
        finished_at_ms: t.finished_at,
        framework: if t.framework_id.is_empty() {
            "tepui".into()
        } else {
            t.framework_id.clone()
        },
        healthy: t.healthy,
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Checks a run request and turns it into a task definition; ports still to assign come back
/// as a count.
fn task_def(req: &TaskRunRequest) -> Result<(TaskDef, usize), ApiError> {
    if req.image.is_none() && req.cmd.is_empty() {
        return Err(invalid("cmd", "a task without an image needs a command"));
    }
    if let Some(image) = &req.image {
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(invalid("image", format!("{image:?} is not an image reference")));
        }
    }
    if !(req.cpus > 0.0 && req.cpus <= 1024.0) {
        return Err(invalid("cpus", "cpus must be more than 0 (for example 0.1)"));
    }
    if req.mem == 0 {
        return Err(invalid("mem", "mem must be at least 1 (MB)"));
    }
    if req.pids == Some(0) {
        return Err(invalid("pids", "pids must be at least 1 when set"));
    }
    if req.network != "host" && req.network != "bridge" {
        return Err(invalid(
            "network",
            format!("network must be host or bridge, not {:?}", req.network),
        ));
    }
    if !(req.kill_grace_period_secs >= 0.0 && req.kill_grace_period_secs <= 3600.0) {
        return Err(invalid(
            "kill_grace_period_secs",
            "the grace period must be between 0 and 3600 seconds",
        ));
    }
    for (i, p) in req.ports.iter().enumerate() {
        if p.protocol != "tcp" && p.protocol != "udp" {
            return Err(invalid(&format!("ports[{i}].protocol"), "protocol must be tcp or udp"));
        }
        if req.network == "bridge" && p.container_port == 0 {
            return Err(invalid(
                &format!("ports[{i}].container_port"),
                "bridge mode needs the port inside the container",
            ));
        }
        if let Some(name) = &p.name {
            if !valid_name(name) {
                return Err(invalid(
                    &format!("ports[{i}].name"),
                    "port names are letters, digits, - _ and .",
                ));
            }
        }
    }
    for (i, v) in req.volumes.iter().enumerate() {
        if !v.target.starts_with('/') {
            return Err(invalid(
                &format!("volumes[{i}].target"),
                "the target must be an absolute path in the container",
            ));
        }
    }
    for key in req.env.keys() {
        if key.is_empty() || key.contains('=') {
            return Err(invalid(
                &format!("env.{key}"),
                "environment names cannot be empty or contain =",
            ));
        }
    }
    let fixed: Vec<PortDef> = req
        .ports
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| PortDef {
            name: p.name.clone(),
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        })
        .collect();
    let unassigned = req.ports.iter().filter(|p| p.host_port == 0).count();
    let def = TaskDef {
        image: req.image.clone(),
        args: req.cmd.clone(),
        env: req.env.clone(),
        user: req.user.clone(),
        cwd: req.cwd.clone(),
        cpus_milli: (req.cpus * 1000.0).round() as u64,
        mem_mb: req.mem,
        disk_mb: req.disk,
        pids: req.pids,
        network: req.network.clone(),
        ports: fixed,
        volumes: req
            .volumes
            .iter()
            .map(|v| VolumeDef {
                source: v.source.clone(),
                target: v.target.clone(),
                read_only: v.read_only,
            })
            .collect(),
        read_only_rootfs: req.read_only_rootfs,
        kill_grace_ms: (req.kill_grace_period_secs * 1000.0) as u64,
        health_checks: vec![],
    };
    Ok((def, unassigned))
}

fn find_agent(s: &Replicated, key: &str) -> Option<u64> {
    key.parse::<u64>()
        .ok()
        .filter(|id| s.nodes.contains_key(id))
        .or_else(|| s.node_by_name(key).map(|n| n.id))
}

fn agent_arg(inner: &Inner, key: Option<&str>) -> Result<Option<u64>, ApiError> {
    match key {
        None => Ok(None),
        Some(k) => inner.state.read(|s| find_agent(s, k)).map(Some).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_node",
                format!("no agent with id or name {k:?}"),
            )
        }),
    }
}

async fn run_task(
    State(inner): Shared,
    JsonBody(req): JsonBody<TaskRunRequest>,
) -> Result<(StatusCode, axum::Json<TaskView>), ApiError> {
    let (mut def, unassigned) = task_def(&req)?;
    let name = req.name.clone().unwrap_or_else(|| "task".into());
    if !valid_name(&name) {
        return Err(invalid("name", "task names are 1-64 letters, digits, - _ and ."));
    }
    let only = agent_arg(&inner, req.agent.as_deref())?;
    inner.linearize().await?;
    let (agent, ports) = inner
        .state
        .read(|s| s.place(&def, unassigned, only))
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "no_room", e.to_string()))?;
    let mut free = ports.into_iter();
    for p in req.ports.iter().filter(|p| p.host_port == 0) {
        let host_port = free.next().unwrap_or_default();
        def.ports.push(PortDef {
            name: p.name.clone(),
            host_port,
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        });
    }
    let now = now_ms();
    let id = format!("{name}.{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut record = TaskRecord {
        id: id.clone(),
        name,
        agent_id: agent,
        def,
        state: TaskState::TaskStaging,
        reason: None,
        message: String::new(),
        exit_code: None,
        signal: None,
        last_update_uuid: None,
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
        labels: Default::default(),
    };
    let resources = crate::master::convert::task_resources(&record);
    record.resources = crate::master::convert::text(&resources);
    if !inner.master.take_for_operator(&id, agent, &resources) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_room",
            format!("the resources on agent {agent} are held by frameworks' tasks; retry or pick another agent"),
        ));
    }
    let created = inner
        .write(Command::CreateTask {
            task: Box::new(record.clone()),
        })
        .await;
    inner.master.operator_launch(&id, created.is_ok());
    created?;
    let sent = inner
        .hub
        .send(
            agent,
            &ServerToAgent::Launch {
                task: launch_of(&record),
            },
        )
        .await;
    tracing::info!(task = %id, agent, delivered = sent, "task created");
    let view = inner.state.read(|s| task_view(s, &record));
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list_tasks(State(inner): Shared) -> ApiResult<Vec<TaskView>> {
    inner.linearize().await?;
    Ok(axum::Json(
        inner
            .state
            .read(|s| s.tasks.values().map(|t| task_view(s, t)).collect()),
    ))
}

fn unknown_task(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_task",
        format!("no task {id:?}; see `tepui task ls`"),
    )
}

async fn get_task(State(inner): Shared, Path(id): Path<String>) -> ApiResult<TaskView> {
    inner.linearize().await?;
    inner
        .state
        .read(|s| s.tasks.get(&id).map(|t| task_view(s, t)))
        .map(axum::Json)
        .ok_or_else(|| unknown_task(&id))
}

/// Asks for a task to be killed: committed first (so a new leader still kills it), then sent
/// to its agent. An unreachable agent gets the kill when it registers again.
pub(crate) async fn kill(inner: &Arc<Inner>, id: &str) -> Result<(), WriteError> {
    kill_within(inner, id, None).await
}

/// [`kill`] with a grace period other than the task's own (never longer than the task's).
pub(crate) async fn kill_within(inner: &Arc<Inner>, id: &str, grace_ms: Option<u64>) -> Result<(), WriteError> {
    inner
        .write(Command::KillTask {
            task_id: id.to_string(),
            now: now_ms(),
        })
        .await?;
    let live = inner.state.read(|s| {
        s.tasks
            .get(id)
            .filter(|t| !t.state.is_terminal())
            .map(|t| (t.agent_id, t.def.kill_grace_ms))
    });
    if let Some((agent, own)) = live {
        let kill = ServerToAgent::Kill {
            task_id: id.to_string(),
            grace_ms: grace_ms.map(|g| g.min(own)),
        };
        inner.hub.send(agent, &kill).await;
    }
    Ok(())
}

async fn kill_task(State(inner): Shared, Path(id): Path<String>) -> ApiResult<TaskView> {
    kill(&inner, &id).await.map_err(|e| match e {
        WriteError::Rejected(ApplyError::UnknownTask { .. }) => unknown_task(&id),
        other => other.into(),
    })?;
    tracing::info!(task = %id, "task kill requested");
    inner
        .state
        .read(|s| s.tasks.get(&id).map(|t| task_view(s, t)))
        .map(axum::Json)
        .ok_or_else(|| unknown_task(&id))
}

fn agent_error(code: &str, message: String) -> ApiError {
    let status = match code {
        "unknown_task" | "not_found" => StatusCode::NOT_FOUND,
        "agent_disconnected" | "not_connected" => StatusCode::SERVICE_UNAVAILABLE,
        "refused" | "in_use" | "task_not_running" => StatusCode::CONFLICT,
        "bad_archive" | "bad_reference" | "insecure_registry" | "bad_image" | "digest_mismatch"
        | "upload_incomplete" => StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request" => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, code, message)
}

fn not_connected(agent: u64, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "agent_not_connected",
        format!("agent {name} ({agent}) is not connected to the leader; try again when it is"),
    )
}

/// Waits for the answer that ends an agent request, skipping progress and data.
async fn final_reply(
    replies: &mut tokio::sync::mpsc::Receiver<Reply>,
    agent: u64,
    name: &str,
) -> Result<serde_json::Value, ApiError> {
    loop {
        match replies.recv().await {
            Some(Reply::Done { result }) => return Ok(result),
            Some(Reply::Error { message, code }) => return Err(agent_error(&code, message)),
            Some(_) => {}
            None => return Err(not_connected(agent, name)),
        }
    }
}

/// Asks an agent and waits for its single answer.
async fn ask(inner: &Arc<Inner>, agent: u64, request: Request) -> Result<serde_json::Value, ApiError> {
    let name = inner
        .state
        .read(|s| s.nodes.get(&agent).map(|n| n.name.clone()))
        .unwrap_or_default();
    let (_, mut replies) = inner
        .hub
        .request(agent, request)
        .await
        .map_err(|_| not_connected(agent, &name))?;
    final_reply(&mut replies, agent, &name).await
}

/// Cancels an agent request when the HTTP response streaming its answer goes away.
struct CancelOnDrop {
    inner: Arc<Inner>,
    req_id: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.inner.hub.cancel(self.req_id);
    }
}

fn task_agent(inner: &Inner, id: &str) -> Result<(u64, String), ApiError> {
    inner
        .state
        .read(|s| {
            s.tasks.get(id).map(|t| {
                (
                    t.agent_id,
                    s.nodes.get(&t.agent_id).map(|n| n.name.clone()).unwrap_or_default(),
                )
            })
        })
        .ok_or_else(|| unknown_task(id))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    stderr: bool,
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn task_logs(
    State(inner): Shared,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let (agent, name) = task_agent(&inner, &id)?;
    let request = Request::Logs {
        task_id: id.clone(),
        stderr: q.stderr,
        tail: q.tail,
        follow: q.follow,
    };
    let (req_id, replies) = inner
        .hub
        .request(agent, request)
        .await
        .map_err(|_| not_connected(agent, &name))?;
    let guard = CancelOnDrop {
        inner: inner.clone(),
        req_id,
    };
    // The agent's first answer decides the status: an error before any data is a 4xx/5xx.
    let mut replies = replies;
    let first = replies.recv().await;
    let first = match first {
        Some(Reply::Error { message, code }) => return Err(agent_error(&code, message)),
        None => return Err(not_connected(agent, &name)),
        Some(r) => r,
    };
    let stream = futures::stream::unfold(
        (Some(first), replies, guard),
        |(pending, mut replies, guard)| async move {
            let reply = match pending {
                Some(r) => r,
                None => replies.recv().await?,
            };
            match reply {
                Reply::Data { b64 } => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default();
                    Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), (None, replies, guard)))
                }
                Reply::Progress { .. } | Reply::Stderr { .. } => Some((Ok(Bytes::new()), (None, replies, guard))),
                Reply::Done { .. } => None,
                Reply::Error { message, .. } => Some((Err(std::io::Error::other(message)), (None, replies, guard))),
            }
        },
    );
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn task_exec(
    State(inner): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> ApiResult<ExecResult> {
    if req.cmd.is_empty() {
        return Err(invalid("cmd", "give the command to run, for example [\"ls\", \"/\"]"));
    }
    let (agent, _) = task_agent(&inner, &id)?;
    let result = ask(
        &inner,
        agent,
        Request::Exec {
            task_id: id,
            cmd: req.cmd,
        },
    )
    .await?;
    serde_json::from_value(result)
        .map(axum::Json)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "bad_agent_answer", e.to_string()))
}

fn ready_agents(s: &Replicated) -> Vec<(u64, String)> {
    s.nodes
        .values()
        .filter(|n| n.agent.is_some() && n.status == NodeStatus::Ready)
        .map(|n| (n.id, n.name.clone()))
        .collect()
}

fn target_agents(inner: &Inner, key: Option<&str>) -> Result<Vec<(u64, String)>, ApiError> {
    let agents = match agent_arg(inner, key)? {
        Some(id) => inner
            .state
            .read(|s| vec![(id, s.nodes.get(&id).map(|n| n.name.clone()).unwrap_or_default())]),
        None => inner.state.read(ready_agents),
    };
    if agents.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_agents", "no agent is ready"));
    }
    Ok(agents)
}

async fn pull_image(State(inner): Shared, JsonBody(req): JsonBody<ImagePullRequest>) -> Result<Response, ApiError> {
    if req.reference.trim().is_empty() {
        return Err(invalid(
            "reference",
            "give an image reference, for example busybox:latest",
        ));
    }
    let agents = target_agents(&inner, req.agent.as_deref())?;
    let (lines_tx, lines_rx) = tokio::sync::mpsc::channel::<PullLine>(256);
    for (agent, name) in agents {
        let inner = inner.clone();
        let lines = lines_tx.clone();
        let reference = req.reference.clone();
        tokio::spawn(async move {
            let line = |progress, done, error| PullLine {
                agent: name.clone(),
                progress,
                done,
                error,
            };
            let (req_id, mut replies) = match inner.hub.request(agent, Request::PullImage { reference }).await {
                Ok(r) => r,
                Err(e) => {
                    let err = ErrorBody {
                        code: "agent_not_connected".into(),
                        message: e.to_string(),
                        field: None,
                    };
                    let _ = lines.send(line(None, None, Some(err))).await;
                    return;
                }
            };
            let _guard = CancelOnDrop {
                inner: inner.clone(),
                req_id,
            };
            while let Some(reply) = replies.recv().await {
                let (out, last) = match reply {
                    Reply::Progress { event } => (line(Some(event), None, None), false),
                    Reply::Done { result } => (line(None, Some(result), None), true),
                    Reply::Error { message, code } => (
                        line(
                            None,
                            None,
                            Some(ErrorBody {
                                code,
                                message,
                                field: None,
                            }),
                        ),
                        true,
                    ),
                    Reply::Data { .. } | Reply::Stderr { .. } => continue,
                };
                if lines.send(out).await.is_err() || last {
                    break;
                }
            }
        });
    }
    drop(lines_tx);
    let stream = futures::stream::unfold(lines_rx, |mut rx| async move {
        let line = rx.recv().await?;
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), rx))
    });
    Ok((
        [(http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
struct AgentQuery {
    agent: Option<String>,
}

async fn list_images(State(inner): Shared, Query(q): Query<AgentQuery>) -> ApiResult<Vec<AgentImage>> {
    let agents = target_agents(&inner, q.agent.as_deref())?;
    let mut out = vec![];
    for (agent, name) in agents {
        let result = ask(&inner, agent, Request::ListImages).await?;
        let images: Vec<serde_json::Value> = serde_json::from_value(result).unwrap_or_default();
        out.extend(images.into_iter().map(|image| AgentImage {
            agent: name.clone(),
            image,
        }));
    }
    Ok(axum::Json(out))
}

async fn remove_image(
    State(inner): Shared,
    Path(reference): Path<String>,
    Query(q): Query<AgentQuery>,
) -> ApiResult<BTreeMap<String, serde_json::Value>> {
    let agents = target_agents(&inner, q.agent.as_deref())?;
    let mut out = BTreeMap::new();
    for (agent, name) in agents {
        let result = ask(
            &inner,
            agent,
            Request::RemoveImage {
                reference: reference.clone(),
            },
        )
        .await?;
        out.insert(name, result);
    }
    Ok(axum::Json(out))
}

async fn import_image(State(inner): Shared, Query(q): Query<AgentQuery>, body: Bytes) -> ApiResult<serde_json::Value> {
    let key = q
        .agent
        .as_deref()
        .ok_or_else(|| invalid("agent", "say which agent imports the archive: ?agent=ID"))?;
    let agent = agent_arg(&inner, Some(key))?.unwrap_or_default();
    let name = inner
        .state
        .read(|s| s.nodes.get(&agent).map(|n| n.name.clone()))
        .unwrap_or_default();
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_archive",
            "the archive is empty",
        ));
    }
    let (req_id, mut replies) = inner
        .hub
        .request(agent, Request::ImportImage)
        .await
        .map_err(|_| not_connected(agent, &name))?;
    let _guard = CancelOnDrop {
        inner: inner.clone(),
        req_id,
    };
    let chunks: Vec<&[u8]> = body.chunks(UPLOAD_CHUNK).collect();
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(chunk);
        inner
            .hub
            .upload(agent, req_id, b64, i + 1 == count)
            .await
            .map_err(|_| not_connected(agent, &name))?;
    }
    final_reply(&mut replies, agent, &name).await.map(axum::Json)
}

#[derive(Deserialize)]
struct ExecWsQuery {
    /// The command as a JSON array of strings.
    cmd: String,
    #[serde(default)]
    tty: bool,
}

/// Frames of an interactive exec. Client to server: binary frames are stdin, the text frame
/// `eof` closes it. Server to client: binary frames start with 1 (stdout) or 2 (stderr); a
/// text frame `{"exit_code": N}` or `{"error": ..., "code": ...}` ends the session.
async fn task_exec_ws(
    State(inner): Shared,
    Path(id): Path<String>,
    Query(q): Query<ExecWsQuery>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let cmd: Vec<String> = serde_json::from_str(&q.cmd)
        .map_err(|_| invalid("cmd", "cmd must be a JSON array of strings, for example [\"sh\"]"))?;
    if cmd.is_empty() {
        return Err(invalid("cmd", "give the command to run"));
    }
    let (agent, name) = task_agent(&inner, &id)?;
    let (req_id, replies) = inner
        .hub
        .request(
            agent,
            Request::ExecStream {
                task_id: id,
                cmd,
                tty: q.tty,
            },
        )
        .await
        .map_err(|_| not_connected(agent, &name))?;
    Ok(ws.on_upgrade(move |socket| exec_session(inner, agent, req_id, replies, socket)))
}

async fn exec_session(
    inner: Arc<Inner>,
    agent: u64,
    req_id: u64,
    mut replies: tokio::sync::mpsc::Receiver<Reply>,
    socket: axum::extract::ws::WebSocket,
) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    let _guard = CancelOnDrop {
        inner: inner.clone(),
        req_id,
    };
    let (mut to_client, mut from_client) = socket.split();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut input_open = true;
    loop {
        tokio::select! {
            msg = from_client.next(), if input_open => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if inner.hub.upload(agent, req_id, b64(&bytes), false).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) if t.as_str() == "eof" => {
                    let _ = inner.hub.upload(agent, req_id, String::new(), true).await;
                    input_open = false;
                }
                Some(Ok(_)) => {}
                // The client went away: the guard cancels the exec on the agent.
                None | Some(Err(_)) => return,
            },
            reply = replies.recv() => {
                let (frame, last) = match reply {
                    Some(Reply::Data { b64 }) => (out_frame(1, &b64), false),
                    Some(Reply::Stderr { b64 }) => (out_frame(2, &b64), false),
                    Some(Reply::Done { result }) => (Message::Text(result.to_string().into()), true),
                    Some(Reply::Error { message, code }) => {
                        (Message::Text(serde_json::json!({ "error": message, "code": code }).to_string().into()), true)
                    }
                    Some(Reply::Progress { .. }) => continue,
                    None => (Message::Text(serde_json::json!({ "error": "the agent went away", "code": "agent_disconnected" }).to_string().into()), true),
                };
                if to_client.send(frame).await.is_err() {
                    return;
                }
                if last {
                    let _ = to_client.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    }
}

fn out_frame(stream: u8, b64: &str) -> axum::extract::ws::Message {
    let mut bytes = vec![stream];
    bytes.extend(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
    );
    axum::extract::ws::Message::Binary(bytes.into())
}

fn agent_node(inner: &Inner, key: &str) -> Result<u64, ApiError> {
    let id = agent_arg(inner, Some(key))?.unwrap_or_default();
    let is_agent = inner
        .state
        .read(|s| s.nodes.get(&id).is_some_and(|n| n.agent.is_some()));
    if !is_agent {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_an_agent",
            format!("node {key} runs no agent"),
        ));
    }
    Ok(id)
}

async fn set_maintenance(inner: &Arc<Inner>, id: u64, maintenance: Maintenance) -> Result<(), ApiError> {
    inner.write(Command::SetMaintenance { id, maintenance }).await?;
    tracing::info!(node = id, maintenance = maintenance.as_str(), "agent maintenance");
    Ok(())
}

fn node_answer(inner: &Inner, id: u64) -> axum::Json<serde_json::Value> {
    let (name, maintenance) = inner
        .state
        .read(|s| s.nodes.get(&id).map(|n| (n.name.clone(), n.maintenance.as_str())))
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "id": id, "name": name, "maintenance": maintenance }))
}

/// Drains an agent: no new tasks, its tasks killed with their grace periods; the leader marks
/// it drained once none is left.
#[derive(Deserialize)]
struct DrainQuery {
    /// Mesos' `max_grace_period`: no task gets longer than this to stop.
    #[serde(default)]
    deadline_secs: Option<f64>,
}

async fn drain_node(
    State(inner): Shared,
    Path(key): Path<String>,
    Query(q): Query<DrainQuery>,
) -> ApiResult<serde_json::Value> {
    let grace_ms = match q.deadline_secs {
        None => None,
        Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Some((s * 1000.0) as u64),
        Some(_) => {
            return Err(invalid(
                "deadline_secs",
                "the deadline must be between 0 and 86400 seconds",
            ))
        }
    };
    drain(&inner, &key, grace_ms).await.map(axum::Json)
}

/// Drains an agent (see `drain_node`); the operator API's DRAIN_AGENT does the same.
async fn drain(inner: &Arc<Inner>, key: &str, grace_ms: Option<u64>) -> Result<serde_json::Value, ApiError> {
    let id = agent_node(inner, key)?;
    drain_agent(inner, id, grace_ms).await?;
    Ok(node_answer(inner, id).0)
}

/// Drains agent `id`: no new tasks, its tasks killed (within `grace_ms` when given), drained
/// once none is left. The operator API's DRAIN_AGENT does the same.
pub(crate) async fn drain_agent(inner: &Arc<Inner>, id: u64, grace_ms: Option<u64>) -> Result<(), WriteError> {
    inner
        .write(Command::SetMaintenance {
            id,
            maintenance: Maintenance::Draining,
        })
        .await?;
    tracing::info!(node = id, "agent draining");
    let running: Vec<String> = inner.state.read(|s| {
        s.tasks
            .values()
            .filter(|t| t.agent_id == id && !t.state.is_terminal())
            .map(|t| t.id.clone())
            .collect()
    });
    for task_id in running {
        kill_within(inner, &task_id, grace_ms).await?;
    }
    finish_drains(inner).await;
    Ok(())
}

async fn deactivate_node(State(inner): Shared, Path(key): Path<String>) -> ApiResult<serde_json::Value> {
    let id = agent_node(&inner, &key)?;
    set_maintenance(&inner, id, Maintenance::Deactivated).await?;
    Ok(node_answer(&inner, id))
}

async fn reactivate_node(State(inner): Shared, Path(key): Path<String>) -> ApiResult<serde_json::Value> {
    let id = agent_node(&inner, &key)?;
    set_maintenance(&inner, id, Maintenance::Active).await?;
    Ok(node_answer(&inner, id))
}

/// Marks draining agents whose tasks have all ended as drained. The leader's loop calls it.
pub(crate) async fn finish_drains(inner: &Arc<Inner>) {
    let done: Vec<u64> = inner.state.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.maintenance == Maintenance::Draining)
            .filter(|n| !s.tasks.values().any(|t| t.agent_id == n.id && !t.state.is_terminal()))
            .map(|n| n.id)
            .collect()
    });
    for id in done {
        if let Err(e) = inner
            .write(Command::SetMaintenance {
                id,
                maintenance: Maintenance::Drained,
            })
            .await
        {
            tracing::debug!(node = id, error = %e, "could not mark an agent drained");
        } else {
            tracing::info!(node = id, "agent drained");
        }
    }
}
