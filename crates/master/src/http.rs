//! tepui's own `/v1` API of tasks, images and agent maintenance: `POST /v1/tasks` (the
//! operator's direct launch), task listing, kills, logs, exec and sandbox files (Mesos'
//! `/files` shapes) relayed to the task's agent,
//! image pulls and imports on agents, and drain/deactivate/reactivate. Handlers are thin: they
//! read the request, call one operation of [`Master`] or the node, and answer in `/v1`'s shape.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use tepui_api::{
    AgentImage, ErrorBody, ExecRequest, ExecResult, ImageImportResult, ImagePullRequest, PortView, PullLine,
    TaskRunRequest, TaskView,
};
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::agents::{final_reply, not_connected, CancelOnDrop};
use tepui_node::http::JsonBody;
use tepui_node::{Error, ErrorKind};
use tepui_proto::agent::{Reply, Request};
use tepui_state::{Command, Maintenance, NodeStatus, PortDef, State as Replicated, TaskDef, TaskRecord, VolumeDef};

use crate::Master;

type Shared = State<Master>;
type ApiResult<T> = Result<axum::Json<T>, Error>;

/// The routes, over `master`.
pub fn routes(master: Master) -> Routes {
    Routes::new()
        .route(
            "/v1/tasks",
            Policy::new().get(Cap::Read).post(Cap::Write),
            get(list_tasks).post(run_task),
        )
        .route(
            "/v1/tasks/{id}",
            Policy::new().get(Cap::Read).delete(Cap::Write),
            get(get_task).delete(kill_task),
        )
        .route("/v1/tasks/{id}/watch", Policy::new().get(Cap::Read), get(watch_task))
        .route("/v1/tasks/{id}/kill", Policy::new().post(Cap::Write), post(kill_task))
        .route("/v1/tasks/{id}/logs", Policy::new().get(Cap::Logs), get(task_logs))
        .route("/v1/tasks/{id}/exec", Policy::new().post(Cap::Exec), post(task_exec))
        .route(
            "/v1/tasks/{id}/exec/ws",
            Policy::new().get(Cap::Exec),
            get(task_exec_ws),
        )
        .route(
            "/v1/tasks/{id}/files/browse",
            Policy::new().get(Cap::Logs),
            get(browse_files),
        )
        .route(
            "/v1/tasks/{id}/files/read",
            Policy::new().get(Cap::Logs),
            get(read_file),
        )
        .route(
            "/v1/nodes/{id}/drain",
            Policy::new().post(Cap::Operator),
            post(drain_node),
        )
        .route(
            "/v1/nodes/{id}/deactivate",
            Policy::new().post(Cap::Operator),
            post(deactivate_node),
        )
        .route(
            "/v1/nodes/{id}/reactivate",
            Policy::new().post(Cap::Operator),
            post(reactivate_node),
        )
        .route("/v1/images", Policy::new().get(Cap::Read), get(list_images))
        .route("/v1/images/pull", Policy::new().post(Cap::Write), post(pull_image))
        .route(
            "/v1/images/import",
            Policy::new().post(Cap::Write),
            post(import_image).layer(axum::extract::DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route(
            "/v1/images/{*reference}",
            Policy::new().delete(Cap::Write),
            axum::routing::delete(remove_image),
        )
        .with_state(master)
}

const IMPORT_LIMIT: usize = 512 << 20;
/// Upload chunks on the agent stream; small enough not to hold up heartbeats behind them.
const UPLOAD_CHUNK: usize = 256 << 10;

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
        secrets: t
            .def
            .secrets
            .iter()
            .map(|r| tepui_api::SecretRequest {
                source: r.source.clone(),
                env: r.env.clone(),
                file: r.file.clone(),
            })
            .collect(),
        container_ip: t.container_ip.map(|ip| ip.to_string()),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, "invalid_field", message).field(field)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Checks a run request and turns it into a task definition, and the ports still to assign.
fn task_def(req: &TaskRunRequest) -> Result<(TaskDef, Vec<PortDef>), Error> {
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
    let mut secrets = Vec::with_capacity(req.secrets.len());
    for (i, r) in req.secrets.iter().enumerate() {
        let source =
            tepui_state::normalize_secret_path(&r.source).map_err(|m| invalid(&format!("secrets[{i}].source"), m))?;
        if r.env.is_none() && r.file.is_none() {
            return Err(invalid(
                &format!("secrets[{i}]"),
                "a secret goes somewhere: give env (a variable name), file (a path in the container) or both",
            ));
        }
        if r.env
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(invalid(
                &format!("secrets[{i}].env"),
                "environment names cannot be empty or contain = or NUL",
            ));
        }
        if let Some(m) = r.file.as_deref().and_then(tepui_common::secret_file_error) {
            return Err(invalid(&format!("secrets[{i}].file"), m));
        }
        secrets.push(tepui_state::SecretRef {
            source,
            env: r.env.clone(),
            file: r.file.clone(),
        });
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
    // Ports without a host port get a free one of the agent's where the task is placed.
    let wanted = req
        .ports
        .iter()
        .filter(|p| p.host_port == 0)
        .map(|p| PortDef {
            name: p.name.clone(),
            host_port: 0,
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        })
        .collect();
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
        secrets,
    };
    Ok((def, wanted))
}

fn find_agent(s: &Replicated, key: &str) -> Option<u64> {
    key.parse::<u64>()
        .ok()
        .filter(|id| s.nodes.contains_key(id))
        .or_else(|| s.node_by_name(key).map(|n| n.id))
}

fn agent_arg(m: &Master, key: Option<&str>) -> Result<Option<u64>, Error> {
    match key {
        None => Ok(None),
        Some(k) => m.node().read(|s| find_agent(s, k)).map(Some).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "unknown_node",
                format!("no agent with id or name {k:?}"),
            )
        }),
    }
}

async fn run_task(
    State(m): Shared,
    caller: Option<axum::Extension<tepui_auth::Identity>>,
    JsonBody(req): JsonBody<TaskRunRequest>,
) -> Result<(StatusCode, axum::Json<TaskView>), Error> {
    let (def, wanted) = task_def(&req)?;
    // The gate puts the caller in every request it lets through; none means no gate stood
    // in front, and the call is refused rather than assumed allowed.
    let Some(axum::Extension(me)) = &caller else {
        return Err(tepui_auth::Denied::no_caller().into());
    };
    me.may_run(&def)?;
    if let Some((i, r)) = m.node().read(|s| {
        def.secrets
            .iter()
            .enumerate()
            .find(|(_, r)| !s.secrets.contains_key(&r.source))
            .map(|(i, r)| (i, r.clone()))
    }) {
        return Err(invalid(
            &format!("secrets[{i}].source"),
            format!(
                "no secret {:?}; write it first with `tepui secret put {}`",
                r.source, r.source
            ),
        ));
    }
    let name = req.name.clone().unwrap_or_else(|| "task".into());
    if !valid_name(&name) {
        return Err(invalid("name", "task names are 1-64 letters, digits, - _ and ."));
    }
    let only = agent_arg(&m, req.agent.as_deref())?;
    let record = m.launch_direct(&name, def, wanted, only).await?;
    let view = m.node().read(|s| task_view(s, &record));
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list_tasks(State(m): Shared) -> ApiResult<Vec<TaskView>> {
    m.node().linearize().await?;
    Ok(axum::Json(
        m.node().read(|s| s.tasks.values().map(|t| task_view(s, t)).collect()),
    ))
}

fn unknown_task(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "unknown_task",
        format!("no task {id:?}; see `tepui task ls`"),
    )
}

async fn get_task(State(m): Shared, Path(id): Path<String>) -> ApiResult<TaskView> {
    m.node().linearize().await?;
    m.node()
        .read(|s| s.tasks.get(&id).map(|t| task_view(s, t)))
        .map(axum::Json)
        .ok_or_else(|| unknown_task(&id))
}

/// The task as it is, then again each time it changes, one JSON object a line, until it
/// ends (the last line is its end). Nothing is polled: each applied change of the state is
/// looked at once.
async fn watch_task(State(m): Shared, Path(id): Path<String>) -> Result<Response, Error> {
    m.node().linearize().await?;
    let first = m
        .node()
        .read(|s| s.tasks.get(&id).map(|t| task_view(s, t)))
        .ok_or_else(|| unknown_task(&id))?;
    let node = m.node().clone();
    let applied = node.watch_applied();
    let lines = futures::stream::unfold(
        (Some(first), None::<TaskView>, applied),
        move |(mut next, last, mut applied)| {
            let node = node.clone();
            let id = id.clone();
            async move {
                loop {
                    if let Some(view) = next.take() {
                        let ended = !matches!(
                            view.state.as_str(),
                            "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING" | "TASK_UNREACHABLE"
                        );
                        if last.as_ref() != Some(&view) {
                            let mut line = serde_json::to_vec(&view).unwrap_or_default();
                            line.push(b'\n');
                            // After the end nothing more comes: the stream closes.
                            let after = if ended { None } else { Some(view) };
                            return Some((Ok::<_, std::io::Error>(Bytes::from(line)), (None, after, applied)));
                        }
                        if ended {
                            return None;
                        }
                    }
                    if last.is_none() && next.is_none() {
                        // The end was sent.
                        return None;
                    }
                    applied.changed().await.ok()?;
                    next = node.read(|s| s.tasks.get(&id).map(|t| task_view(s, t)));
                    // A task forgotten by the state has ended as far as anyone can know.
                    next.as_ref()?;
                }
            }
        },
    );
    Ok((
        [(http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn kill_task(State(m): Shared, Path(id): Path<String>) -> ApiResult<TaskView> {
    m.kill(&id).await.map_err(|e| match e.code.as_str() {
        "unknown_task" => unknown_task(&id),
        _ => e,
    })?;
    tracing::info!(task = %id, "task kill requested");
    m.node()
        .read(|s| s.tasks.get(&id).map(|t| task_view(s, t)))
        .map(axum::Json)
        .ok_or_else(|| unknown_task(&id))
}

/// Asks an agent and waits for its single answer.
async fn ask(m: &Master, agent: u64, request: Request) -> Result<serde_json::Value, Error> {
    let name = m
        .node()
        .read(|s| s.nodes.get(&agent).map(|n| n.name.clone()))
        .unwrap_or_default();
    m.node().agents().ask(agent, &name, request).await
}

fn task_agent(m: &Master, id: &str) -> Result<(u64, String), Error> {
    m.node()
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

async fn task_logs(State(m): Shared, Path(id): Path<String>, Query(q): Query<LogsQuery>) -> Result<Response, Error> {
    let (agent, name) = task_agent(&m, &id)?;
    let request = Request::Logs {
        task_id: id.clone(),
        stderr: q.stderr,
        tail: q.tail,
        follow: q.follow,
    };
    let (req_id, replies) = m
        .node()
        .agents()
        .request(agent, request)
        .await
        .map_err(|_| not_connected(agent, &name))?;
    let guard = CancelOnDrop {
        node: m.node().clone(),
        req_id,
    };
    // The agent's first answer decides the status: an error before any data is a 4xx/5xx.
    let mut replies = replies;
    let first = replies.recv().await;
    let first = match first {
        Some(Reply::Error { message, code }) => return Err(tepui_node::agents::agent_error(&code, message)),
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

/// How long a files request waits for its agent (one that does not know the request never
/// answers it).
const FILES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
struct BrowseQuery {
    #[serde(default)]
    path: String,
}

fn sandbox_path(raw: &str) -> Result<String, Error> {
    tepui_common::sandbox_path(raw).map_err(|e| Error::new(ErrorKind::BadRequest, "bad_path", e).field("path"))
}

fn agent_silent(name: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "agent_timeout",
        format!("agent {name} did not answer within {}s", FILES_TIMEOUT.as_secs()),
    )
}

/// `GET /v1/tasks/{id}/files/browse?path=REL`: the entries of a directory of the task's
/// sandbox (Mesos' `/files/browse`), from the agent that holds it.
async fn browse_files(
    State(m): Shared,
    Path(id): Path<String>,
    Query(q): Query<BrowseQuery>,
) -> ApiResult<Vec<tepui_api::FileInfo>> {
    let path = sandbox_path(&q.path)?;
    let (agent, name) = task_agent(&m, &id)?;
    let asked = ask(&m, agent, Request::BrowseFiles { task_id: id, path });
    let result = tokio::time::timeout(FILES_TIMEOUT, asked)
        .await
        .map_err(|_| agent_silent(&name))??;
    serde_json::from_value(result)
        .map(axum::Json)
        .map_err(|e| Error::new(ErrorKind::BadGateway, "bad_agent_answer", e.to_string()))
}

#[derive(Deserialize)]
struct ReadQuery {
    path: Option<String>,
    offset: Option<String>,
    length: Option<String>,
}

/// A read as asked: the path, and where and how much (`None`: only the size, `offset=-1`).
fn read_args(q: &ReadQuery) -> Result<(String, Option<(u64, u64)>), Error> {
    let Some(raw) = q.path.as_deref() else {
        return Err(invalid_query(
            "path",
            "give the file's path in the sandbox, for example path=stdout",
        ));
    };
    let path = sandbox_path(raw)?;
    let number = |field: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| invalid_query(field, &format!("{field} must be a whole number, not {v:?}")))
    };
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(v) => number("offset", v)?,
    };
    if offset == -1 {
        return Ok((path, None));
    }
    if offset < 0 {
        return Err(invalid_query(
            "offset",
            "offset is -1 (the size) or a byte offset from 0",
        ));
    }
    let length = match q.length.as_deref() {
        None => tepui_api::MAX_FILE_READ as i64,
        Some(v) => number("length", v)?,
    };
    if length < 0 {
        return Err(invalid_query("length", "length is a number of bytes from 0"));
    }
    Ok((
        path,
        Some((offset as u64, (length as u64).min(tepui_api::MAX_FILE_READ))),
    ))
}

fn invalid_query(field: &str, message: &str) -> Error {
    Error::new(ErrorKind::BadRequest, "bad_request", message).field(field)
}

/// Bytes of a file as text: valid UTF-8 as it is, anything else replaced; a character cut at
/// the end of a piece that is not the file's end is left for the next read (so a reader that
/// moves on by the text's length in UTF-8 reads every character whole).
fn file_text(bytes: &[u8], at_end: bool) -> String {
    let whole = match std::str::from_utf8(bytes) {
        Err(e) if !at_end && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(whole).into_owned()
}

/// `GET /v1/tasks/{id}/files/read?path=REL&offset=N&length=N`: a piece of a file of the
/// task's sandbox (Mesos' `/files/read`), at most 1 MiB; `offset=-1` gives the size.
async fn read_file(
    State(m): Shared,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<tepui_api::FileData> {
    let (path, range) = read_args(&q)?;
    let (agent, name) = task_agent(&m, &id)?;
    let (offset, length) = range.unwrap_or((0, 0));
    let request = Request::ReadFile {
        task_id: id,
        path,
        offset,
        length,
    };
    let (req_id, mut replies) = m
        .node()
        .agents()
        .request(agent, request)
        .await
        .map_err(|_| not_connected(agent, &name))?;
    let _guard = CancelOnDrop {
        node: m.node().clone(),
        req_id,
    };
    let collect = async {
        let mut data = Vec::new();
        loop {
            match replies.recv().await {
                Some(Reply::Data { b64 }) => data.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| Error::new(ErrorKind::BadGateway, "bad_agent_answer", e.to_string()))?,
                ),
                Some(Reply::Done { result }) => return Ok((data, result["size"].as_u64().unwrap_or(0))),
                Some(Reply::Error { message, code }) => return Err(tepui_node::agents::agent_error(&code, message)),
                Some(_) => {}
                None => return Err(not_connected(agent, &name)),
            }
        }
    };
    let (data, size) = tokio::time::timeout(FILES_TIMEOUT, collect)
        .await
        .map_err(|_| agent_silent(&name))??;
    Ok(axum::Json(match range {
        None => tepui_api::FileData {
            data: String::new(),
            offset: size,
        },
        Some(_) => tepui_api::FileData {
            data: file_text(&data, offset + data.len() as u64 >= size),
            offset,
        },
    }))
}

async fn task_exec(
    State(m): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> ApiResult<ExecResult> {
    if req.cmd.is_empty() {
        return Err(invalid("cmd", "give the command to run, for example [\"ls\", \"/\"]"));
    }
    let (agent, _) = task_agent(&m, &id)?;
    let result = ask(
        &m,
        agent,
        Request::Exec {
            task_id: id,
            cmd: req.cmd,
        },
    )
    .await?;
    serde_json::from_value(result)
        .map(axum::Json)
        .map_err(|e| Error::new(ErrorKind::BadGateway, "bad_agent_answer", e.to_string()))
}

fn ready_agents(s: &Replicated) -> Vec<(u64, String)> {
    s.nodes
        .values()
        .filter(|n| n.agent.is_some() && n.status == NodeStatus::Ready)
        .map(|n| (n.id, n.name.clone()))
        .collect()
}

fn target_agents(m: &Master, key: Option<&str>) -> Result<Vec<(u64, String)>, Error> {
    let agents = match agent_arg(m, key)? {
        Some(id) => m
            .node()
            .read(|s| vec![(id, s.nodes.get(&id).map(|n| n.name.clone()).unwrap_or_default())]),
        None => m.node().read(ready_agents),
    };
    if agents.is_empty() {
        return Err(Error::new(ErrorKind::Conflict, "no_agents", "no agent is ready"));
    }
    Ok(agents)
}

async fn pull_image(State(m): Shared, JsonBody(req): JsonBody<ImagePullRequest>) -> Result<Response, Error> {
    if req.reference.trim().is_empty() {
        return Err(invalid(
            "reference",
            "give an image reference, for example busybox:latest",
        ));
    }
    let agents = target_agents(&m, req.agent.as_deref())?;
    let (lines_tx, lines_rx) = tokio::sync::mpsc::channel::<PullLine>(256);
    for (agent, name) in agents {
        let m = m.clone();
        let lines = lines_tx.clone();
        let reference = req.reference.clone();
        tokio::spawn(async move {
            let line = |progress, done, error| PullLine {
                agent: name.clone(),
                progress,
                done,
                error,
            };
            let (req_id, mut replies) = match m.node().agents().request(agent, Request::PullImage { reference }).await {
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
                node: m.node().clone(),
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

async fn list_images(State(m): Shared, Query(q): Query<AgentQuery>) -> ApiResult<Vec<AgentImage>> {
    let agents = target_agents(&m, q.agent.as_deref())?;
    let mut out = vec![];
    for (agent, name) in agents {
        let result = ask(&m, agent, Request::ListImages).await?;
        let images: Vec<serde_json::Value> = serde_json::from_value(result).unwrap_or_default();
        out.extend(images.into_iter().map(|image| AgentImage {
            agent: name.clone(),
            image,
        }));
    }
    Ok(axum::Json(out))
}

async fn remove_image(
    State(m): Shared,
    Path(reference): Path<String>,
    Query(q): Query<AgentQuery>,
) -> ApiResult<BTreeMap<String, serde_json::Value>> {
    let agents = target_agents(&m, q.agent.as_deref())?;
    let mut out = BTreeMap::new();
    for (agent, name) in agents {
        let result = ask(
            &m,
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

#[derive(Deserialize)]
struct ImportQuery {
    agent: Option<String>,
    /// The reference to store the image under, for an archive that names no repository.
    reference: Option<String>,
}

/// Imports the archive onto one agent (`?agent=`; its refusal is the answer's) or every ready
/// one, side by side (each agent's outcome in the answer; an error only when all failed).
async fn import_image(
    State(m): Shared,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Vec<ImageImportResult>> {
    let reference = match q.reference.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) if r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(invalid("reference", format!("{r:?} is not an image reference")));
        }
        Some(r) => Some(r.to_string()),
    };
    let agents = target_agents(&m, q.agent.as_deref())?;
    if body.is_empty() {
        return Err(Error::new(ErrorKind::Invalid, "bad_archive", "the archive is empty"));
    }
    let one = q.agent.is_some();
    let imports = agents.into_iter().map(|(agent, name)| {
        let m = m.clone();
        let body = body.clone();
        let reference = reference.clone();
        async move {
            let outcome = import_on(&m, agent, &name, body, reference).await;
            (name, outcome)
        }
    });
    let outcomes = futures::future::join_all(imports).await;
    if one || outcomes.iter().all(|(_, o)| o.is_err()) {
        if let Some((_, Err(e))) = outcomes.iter().find(|(_, o)| o.is_err()) {
            return Err(e.clone());
        }
    }
    let results = outcomes
        .into_iter()
        .map(|(agent, outcome)| match outcome {
            Ok(images) => ImageImportResult {
                agent,
                images,
                error: None,
            },
            Err(e) => ImageImportResult {
                agent,
                images: vec![],
                error: Some(ErrorBody {
                    code: e.code,
                    message: e.message,
                    field: e.field,
                }),
            },
        })
        .collect();
    Ok(axum::Json(results))
}

/// Sends the archive to one agent in chunks and waits for the images it stored.
async fn import_on(
    m: &Master,
    agent: u64,
    name: &str,
    body: Bytes,
    reference: Option<String>,
) -> Result<Vec<serde_json::Value>, Error> {
    let (req_id, mut replies) = m
        .node()
        .agents()
        .request(agent, Request::ImportImage { reference })
        .await
        .map_err(|_| not_connected(agent, name))?;
    let _guard = CancelOnDrop {
        node: m.node().clone(),
        req_id,
    };
    let chunks: Vec<&[u8]> = body.chunks(UPLOAD_CHUNK).collect();
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(chunk);
        m.node()
            .agents()
            .upload(agent, req_id, b64, i + 1 == count)
            .await
            .map_err(|_| not_connected(agent, name))?;
    }
    let result = final_reply(&mut replies, agent, name).await?;
    Ok(serde_json::from_value(result).unwrap_or_default())
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
    State(m): Shared,
    Path(id): Path<String>,
    Query(q): Query<ExecWsQuery>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, Error> {
    let cmd: Vec<String> = serde_json::from_str(&q.cmd)
        .map_err(|_| invalid("cmd", "cmd must be a JSON array of strings, for example [\"sh\"]"))?;
    if cmd.is_empty() {
        return Err(invalid("cmd", "give the command to run"));
    }
    let (agent, name) = task_agent(&m, &id)?;
    let (req_id, replies) = m
        .node()
        .agents()
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
    // A browser offers `tepui` beside its `bearer.` token entry and needs one of its offers
    // back; the token entry is never chosen.
    let ws = ws.protocols([tepui_auth::WEBSOCKET_PROTOCOL]);
    Ok(ws.on_upgrade(move |socket| exec_session(m, agent, req_id, replies, socket)))
}

async fn exec_session(
    m: Master,
    agent: u64,
    req_id: u64,
    mut replies: tokio::sync::mpsc::Receiver<Reply>,
    socket: axum::extract::ws::WebSocket,
) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    let _guard = CancelOnDrop {
        node: m.node().clone(),
        req_id,
    };
    let (mut to_client, mut from_client) = socket.split();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut input_open = true;
    loop {
        tokio::select! {
            msg = from_client.next(), if input_open => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if m.node().agents().upload(agent, req_id, b64(&bytes), false).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) if t.as_str() == "eof" => {
                    let _ = m.node().agents().upload(agent, req_id, String::new(), true).await;
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

fn agent_node(m: &Master, key: &str) -> Result<u64, Error> {
    let id = agent_arg(m, Some(key))?.unwrap_or_default();
    let is_agent = m.node().read(|s| s.nodes.get(&id).is_some_and(|n| n.agent.is_some()));
    if !is_agent {
        return Err(Error::new(
            ErrorKind::Conflict,
            "not_an_agent",
            format!("node {key} runs no agent"),
        ));
    }
    Ok(id)
}

async fn set_maintenance(m: &Master, id: u64, maintenance: Maintenance) -> Result<(), Error> {
    m.node().write(Command::SetMaintenance { id, maintenance }).await?;
    tracing::info!(node = id, maintenance = maintenance.as_str(), "agent maintenance");
    Ok(())
}

fn node_answer(m: &Master, id: u64) -> axum::Json<serde_json::Value> {
    let (name, maintenance) = m
        .node()
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
    State(m): Shared,
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
    drain(&m, &key, grace_ms).await.map(axum::Json)
}

/// Drains an agent (see `drain_node`); the operator API's DRAIN_AGENT does the same.
async fn drain(m: &Master, key: &str, grace_ms: Option<u64>) -> Result<serde_json::Value, Error> {
    let id = agent_node(m, key)?;
    m.drain_agent(id, grace_ms).await?;
    Ok(node_answer(m, id).0)
}

async fn deactivate_node(State(m): Shared, Path(key): Path<String>) -> ApiResult<serde_json::Value> {
    let id = agent_node(&m, &key)?;
    set_maintenance(&m, id, Maintenance::Deactivated).await?;
    Ok(node_answer(&m, id))
}

async fn reactivate_node(State(m): Shared, Path(key): Path<String>) -> ApiResult<serde_json::Value> {
    let id = agent_node(&m, &key)?;
    set_maintenance(&m, id, Maintenance::Active).await?;
    Ok(node_answer(&m, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_text_leaves_a_cut_character_for_the_next_read() {
        let text = "añb€";
        let bytes = text.as_bytes();
        // Cut inside ñ (2 bytes) and inside € (3 bytes): the cut character waits.
        assert_eq!(file_text(&bytes[..2], false), "a");
        assert_eq!(file_text(&bytes[..5], false), "añb");
        assert_eq!(file_text(bytes, true), text);
        // At the file's end a cut character is what the file holds: replaced.
        assert_eq!(file_text(&bytes[..2], true), "a\u{fffd}");
        // Bytes that are no UTF-8 at all are replaced wherever they are.
        assert_eq!(file_text(b"a\xffb", false), "a\u{fffd}b");
    }

    #[test]
    fn read_arguments_name_the_field_at_fault() {
        let q = |path: Option<&str>, offset: Option<&str>, length: Option<&str>| ReadQuery {
            path: path.map(str::to_string),
            offset: offset.map(str::to_string),
            length: length.map(str::to_string),
        };
        assert_eq!(
            read_args(&q(Some("/logs/a"), None, None)).unwrap(),
            ("logs/a".to_string(), Some((0, tepui_api::MAX_FILE_READ)))
        );
        assert_eq!(
            read_args(&q(Some("x"), Some("-1"), None)).unwrap(),
            ("x".to_string(), None)
        );
        assert_eq!(
            read_args(&q(Some("x"), Some("10"), Some("99999999"))).unwrap().1,
            Some((10, tepui_api::MAX_FILE_READ))
        );
        for (bad, field) in [
            (q(None, None, None), "path"),
            (q(Some("../x"), None, None), "path"),
            (q(Some("x"), Some("-2"), None), "offset"),
            (q(Some("x"), Some("ten"), None), "offset"),
            (q(Some("x"), Some("0"), Some("-5")), "length"),
        ] {
            let e = read_args(&bad).unwrap_err();
            assert_eq!((e.kind.status(), e.field.as_deref()), (400, Some(field)), "{e:?}");
        }
    }
}
