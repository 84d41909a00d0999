//! Metronome's job API (`/v1/jobs`): jobs and their schedules, in Metronome's JSON and with its
//! answers (201 on create, 409 on a duplicate id, 404 `{"id", "message": "Job not found"}`,
//! 422 `{"message": "Object is not valid", "details"}`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use serde_json::{json, Value};
use tepui_auth::{Cap, Denied, Identity, Policy, Routes};
use tepui_master::Master;
use tepui_node::{now_ms, Node};
use tepui_state::{Command, JobRunRecord, JobRunStatus, State as Replicated};

use crate::graph;
use crate::metronome::{parse_job, parse_schedule, validate_job, Invalid, JobSpec, ScheduleSpec};

type Answer = Result<Response, Response>;

/// The job routes; they write, so they run on the leader.
pub fn routes(master: Master) -> Routes {
    let master_for_chronos = master.clone();
    let runs = Routes::new()
        .route(
            "/v1/jobs/{id}/runs",
            Policy::new().get(Cap::Read).post(Cap::Write),
            get(list_runs).post(start_run),
        )
        .route("/v1/jobs/{id}/runs/{run}", Policy::new().get(Cap::Read), get(show_run))
        .route(
            "/v1/jobs/{id}/runs/{run}/watch",
            Policy::new().get(Cap::Read),
            get(watch_run),
        )
        .route(
            "/v1/jobs/{id}/runs/{run}/actions/stop",
            Policy::new().post(Cap::Write),
            axum::routing::post(stop_run),
        )
        .with_state(master.clone());
    Routes::new()
        .route(
            "/v1/jobs",
            Policy::new().get(Cap::Read).post(Cap::Write),
            get(list_jobs).post(create_job),
        )
        .route(
            "/v1/jobs/{id}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(show_job).put(update_job).delete(delete_job),
        )
        .route(
            "/v1/jobs/{id}/schedules",
            Policy::new().get(Cap::Read).post(Cap::Write),
            get(list_schedules).post(create_schedule),
        )
        .route(
            "/v1/jobs/{id}/schedules/{schedule}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(show_schedule).put(update_schedule).delete(delete_schedule),
        )
        .with_state(master)
        .merge(runs)
        .merge(crate::chronos_api::routes(master_for_chronos))
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    answer(status, json!({ "message": text.into() }))
}

fn unknown_job(id: &str) -> Response {
    answer(StatusCode::NOT_FOUND, json!({ "id": id, "message": "Job not found" }))
}

fn unknown_schedule(id: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({ "id": id, "message": "Schedule not found" }),
    )
}

fn invalid(e: Invalid) -> Response {
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        serde_json::to_value(e).unwrap_or(Value::Null),
    )
}

pub(crate) fn failed(e: impl Into<tepui_node::Error>) -> Response {
    let e: tepui_node::Error = e.into();
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    message(status, e.message)
}

fn denied(d: Denied) -> Response {
    message(
        StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN),
        d.message,
    )
}

/// The jobs in the state, read back into their definitions (a record that no longer reads is
/// left out, never an error for the whole list).
pub(crate) fn jobs_of(s: &Replicated) -> Vec<JobSpec> {
    s.jobs
        .values()
        .filter_map(|j| serde_json::from_value(j.spec.clone()).ok())
        .collect()
}

pub(crate) fn job_of(s: &Replicated, id: &str) -> Option<JobSpec> {
    s.jobs.get(id).and_then(|j| serde_json::from_value(j.spec.clone()).ok())
}

/// A job runs a command on the host's filesystem when it names no image, or mounts host
/// paths: that needs the `host` capability, as for tasks and apps.
pub(crate) fn may_run(caller: &Option<Extension<Identity>>, job: &JobSpec) -> Result<(), Response> {
    let Some(Extension(me)) = caller else {
        return Err(denied(Denied::no_caller()));
    };
    // The very task its runs launch is what is checked.
    let def = crate::runs::task_def(job);
    me.may_run(&def).map_err(denied)
}

/// The dependency graph with `job` in it: every parent known, no cycle (Metronome's messages).
fn check_dependencies(s: &Replicated, job: &JobSpec) -> Result<(), Response> {
    let mut parents: std::collections::BTreeMap<String, Vec<String>> =
        jobs_of(s).into_iter().map(|j| (j.id, j.dependencies)).collect();
    parents.insert(job.id.clone(), job.dependencies.clone());
    match graph::check(&parents) {
        Ok(()) => Ok(()),
        Err(graph::GraphError::UnknownParent { .. }) => {
            let unknown: Vec<&str> = job
                .dependencies
                .iter()
                .filter(|d| !parents.contains_key(*d))
                .map(String::as_str)
                .collect();
            Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Dependencies contain unknown jobs. unknown=[{}]", unknown.join(", ")),
            ))
        }
        Err(graph::GraphError::Cycle { .. }) => {
            Err(message(StatusCode::UNPROCESSABLE_ENTITY, "Dependencies have a cycle."))
        }
    }
}

async fn write(node: &Node, cmd: Command) -> Result<(), Response> {
    match node.write(cmd).await {
        Ok(_) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// The `embed=` values of a query (repeatable, or comma-separated).
fn embeds_of(q: Option<&str>) -> Vec<String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("embed="))
        .flat_map(|v| v.split(','))
        .map(str::to_string)
        .collect()
}

/// A job as Metronome shows it, with what `embeds` asks for (`activeRuns`, `schedules`,
/// `history`, `historySummary`).
fn job_json(s: &Replicated, job: &JobSpec, embeds: &[String]) -> Value {
    let id = &job.id;
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        if embeds.iter().any(|e| e == "activeRuns") {
            let active: Vec<Value> = s
                .job_runs
                .values()
                .filter(|r| &r.job_id == id)
                .map(|r| run_json(s, r))
                .collect();
            o.insert("activeRuns".into(), Value::Array(active));
        }
        if embeds.iter().any(|e| e == "schedules") {
            o.insert("schedules".into(), schedules_json(s, job));
        }
        if embeds.iter().any(|e| e == "history") {
            o.insert("history".into(), history_json(s, id, true));
        }
        if embeds.iter().any(|e| e == "historySummary") {
            o.insert("historySummary".into(), history_json(s, id, false));
        }
    }
    v
}

/// The next time a schedule starts a run: after the due times it has accounted for; none
/// while it or its job is disabled, or when it has no run left.
pub(crate) fn next_run_at(s: &Replicated, job: &JobSpec, schedule: &ScheduleSpec) -> Option<u64> {
    if job.disabled || !schedule.enabled {
        return None;
    }
    let record = s.jobs.get(&job.id)?;
    let key = format!("{}/{}", job.id, schedule.id);
    let handled = s.job_schedules_handled.get(&key).copied().unwrap_or(record.updated_at);
    let calendar =
        crate::calendar::Schedule::parse(&schedule.cron, &schedule.timezone, record.updated_at as i64).ok()?;
    calendar.next_after(handled as i64).map(|t| t.max(0) as u64)
}

fn schedule_json(s: &Replicated, job: &JobSpec, schedule: &ScheduleSpec) -> Value {
    let mut v = serde_json::to_value(schedule).unwrap_or(Value::Null);
    if let Some(next) = next_run_at(s, job, schedule) {
        v["nextRunAt"] = timestamp(next);
    }
    v
}

fn schedules_json(s: &Replicated, job: &JobSpec) -> Value {
    Value::Array(job.schedules.iter().map(|sc| schedule_json(s, job, sc)).collect())
}

async fn list_jobs(State(master): State<Master>, RawQuery(q): RawQuery) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let embeds = embeds_of(q.as_deref());
    let jobs = node.read(|s| jobs_of(s).iter().map(|j| job_json(s, j, &embeds)).collect::<Vec<_>>());
    Ok(answer(StatusCode::OK, Value::Array(jobs)))
}

/// `GET /v1/jobs/{id}`, with `embed=activeRuns`, `schedules`, `history` or `historySummary`
/// as Metronome adds them.
async fn show_job(State(master): State<Master>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let embeds = embeds_of(q.as_deref());
    match node.read(|s| job_of(s, &id).map(|j| job_json(s, &j, &embeds))) {
        Some(v) => Ok(answer(StatusCode::OK, v)),
        None => Err(unknown_job(&id)),
    }
}

/// Metronome's time format: `2026-12-06T23:10:00.000+0000`.
fn timestamp(ms: u64) -> Value {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()))
        .unwrap_or(Value::Null)
}

fn run_json(s: &Replicated, r: &JobRunRecord) -> Value {
    let tasks: Vec<Value> = r
        .tasks
        .iter()
        .map(|t| {
            let task = s.tasks.get(t);
            json!({
                "id": t,
                "status": task.map(|t| t.state.as_str()).unwrap_or("TASK_STAGING"),
                "startedAt": task.and_then(|t| t.started_at).map(timestamp),
                "completedAt": task.and_then(|t| t.finished_at).map(timestamp),
            })
        })
        .collect();
    let mut v = json!({
        "id": r.id,
        "jobId": r.job_id,
        "status": r.status,
        "createdAt": timestamp(r.created_at),
        "completedAt": r.completed_at.map(timestamp),
        "tasks": tasks,
    });
    // tepui's own: the due time a scheduled run stands for.
    if let Some(due) = r.due_at {
        v["dueAt"] = timestamp(due);
    }
    v
}

fn history_json(s: &Replicated, id: &str, with_runs: bool) -> Value {
    let h = s.job_history.get(id).cloned().unwrap_or_default();
    let mut v = json!({
        "successCount": h.success_count,
        "failureCount": h.failure_count,
        "lastSuccessAt": h.last_success_at.map(timestamp),
        "lastFailureAt": h.last_failure_at.map(timestamp),
    });
    if with_runs {
        let finished = |want: JobRunStatus| -> Vec<Value> {
            h.finished
                .iter()
                .filter(|r| r.status == want)
                .map(|r| {
                    let mut v = json!({
                        "id": r.id,
                        "createdAt": timestamp(r.created_at),
                        "finishedAt": r.completed_at.map(timestamp),
                        "tasks": r.tasks,
                    });
                    if let Some(due) = r.due_at {
                        v["dueAt"] = timestamp(due);
                    }
                    // tepui's own: how its last task ended.
                    if let Some(code) = r.exit_code {
                        v["exitCode"] = json!(code);
                    }
                    if let Some(m) = &r.message {
                        v["message"] = json!(m);
                    }
                    v
                })
                .collect()
        };
        v["successfulFinishedRuns"] = Value::Array(finished(JobRunStatus::Success));
        v["failedFinishedRuns"] = Value::Array(finished(JobRunStatus::Failed));
    }
    v
}

/// `POST /v1/jobs/{id}/runs`: a run now, recorded first; the `jobs` driver launches its task.
async fn start_run(
    State(master): State<Master>,
    caller: Option<Extension<Identity>>,
    Path(id): Path<String>,
) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let job = node.read(|s| job_of(s, &id)).ok_or_else(|| unknown_job(&id))?;
    may_run(&caller, &job)?;
    let now = now_ms();
    let run = crate::runs::new_run(&id, crate::runs::new_run_id(now), now, None);
    write(&node, Command::StartJobRun { run: run.clone() }).await?;
    tracing::info!(job = %id, run = %run.id, "job run started by hand");
    Ok(answer(StatusCode::CREATED, node.read(|s| run_json(s, &run))))
}

async fn list_runs(State(master): State<Master>, Path(id): Path<String>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let runs = node.read(|s| {
        job_of(s, &id)?;
        Some(
            s.job_runs
                .values()
                .filter(|r| r.job_id == id)
                .map(|r| run_json(s, r))
                .collect::<Vec<_>>(),
        )
    });
    runs.map(|r| answer(StatusCode::OK, Value::Array(r)))
        .ok_or_else(|| unknown_job(&id))
}

fn unknown_run(job: &str, run: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({ "jobSpec": job, "id": run, "message": "Job Run not found" }),
    )
}

/// A run as Metronome shows it: an active one, or a finished one from the history.
fn run_view(s: &Replicated, job: &str, run: &str) -> Option<Value> {
    let r = s.job_runs.get(run).filter(|r| r.job_id == job).or_else(|| {
        s.job_history
            .get(job)
            .and_then(|h| h.finished.iter().find(|r| r.id == run))
    })?;
    Some(run_json(s, r))
}

/// An active run, or a finished one from the history.
async fn show_run(State(master): State<Master>, Path((id, run)): Path<(String, String)>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let found = node.read(|s| run_view(s, &id, &run));
    found
        .map(|v| answer(StatusCode::OK, v))
        .ok_or_else(|| unknown_run(&id, &run))
}

/// `GET /v1/jobs/{id}/runs/{run}/watch`: the run now, then again at each change (its status,
/// its tasks'), one JSON object per line, until it has ended. Woken by the state, not by a
/// timer.
async fn watch_run(State(master): State<Master>, Path((id, run)): Path<(String, String)>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let first = node
        .read(|s| run_view(s, &id, &run))
        .ok_or_else(|| unknown_run(&id, &run))?;
    let applied = node.watch_applied();
    let lines = futures::stream::unfold(
        (Some(first), None::<Value>, applied),
        move |(mut next, mut last, mut applied)| {
            let (node, id, run) = (node.clone(), id.clone(), run.clone());
            async move {
                loop {
                    if let Some(view) = next.take() {
                        if last.as_ref() != Some(&view) {
                            let finished = matches!(view["status"].as_str(), Some("SUCCESS" | "FAILED"));
                            let mut line = serde_json::to_vec(&view).unwrap_or_default();
                            line.push(b'\n');
                            let state = if finished {
                                (None, None, applied)
                            } else {
                                (None, Some(view), applied)
                            };
                            return Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(line)), state));
                        }
                    }
                    // Nothing more after the end (or once the run is forgotten).
                    last.as_ref()?;
                    applied.changed().await.ok()?;
                    next = node.read(|s| run_view(s, &id, &run));
                    if next.is_none() {
                        last = None;
                    }
                }
            }
        },
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// Stops one active run: its task killed, the run ended failed.
async fn stop_one(master: &Master, run: &JobRunRecord) -> Result<(), Response> {
    crate::runs::stop_run(master, run)
        .await
        .map_err(|e| message(StatusCode::SERVICE_UNAVAILABLE, e))
}

/// Stops every active run of a job.
pub(crate) async fn stop_runs(master: &Master, job_id: &str) -> Result<usize, Response> {
    let active: Vec<JobRunRecord> = master
        .node()
        .read(|s| s.job_runs.values().filter(|r| r.job_id == job_id).cloned().collect());
    for run in &active {
        stop_one(master, run).await?;
    }
    Ok(active.len())
}

/// `POST .../actions/stop`: the run's task is killed and the run ends failed; the answer is
/// the stopped run, as Metronome answers (its `killJobRun` replies with the run once it is
/// over).
async fn stop_run(State(master): State<Master>, Path((id, run)): Path<(String, String)>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let active = node.read(|s| s.job_runs.get(&run).filter(|r| r.job_id == id).cloned());
    let active = active.ok_or_else(|| unknown_run(&id, &run))?;
    stop_one(&master, &active).await?;
    let stopped = node.read(|s| run_view(s, &id, &run)).unwrap_or_else(|| {
        // Gone from the history already (deleted with its job meanwhile): as it was.
        let mut gone = active.clone();
        gone.status = JobRunStatus::Failed;
        node.read(|s| run_json(s, &gone))
    });
    Ok(answer(StatusCode::OK, stopped))
}

/// Fills an empty ISO 8601 START of the job's schedules with now, so every server reads the
/// same due times.
fn fix_starts(job: &mut JobSpec, now: u64) {
    for s in &mut job.schedules {
        s.cron = crate::calendar::fix_iso8601_start(&s.cron, now as i64);
    }
}

async fn create_job(State(master): State<Master>, caller: Option<Extension<Identity>>, body: Bytes) -> Answer {
    let node = master.node().clone();
    let mut job = parse_job(&body).map_err(invalid)?;
    fix_starts(&mut job, now_ms());
    may_run(&caller, &job)?;
    node.linearize().await.map_err(failed)?;
    node.read(|s| check_dependencies(s, &job))?;
    let spec = serde_json::to_value(&job).unwrap_or(Value::Null);
    let cmd = Command::PutJob {
        id: job.id.clone(),
        spec: spec.clone(),
        create: true,
        now: now_ms(),
    };
    match node.write(cmd).await.map_err(tepui_node::Error::from) {
        Ok(_) => {
            tracing::info!(job = %job.id, "job created");
            Ok(answer(StatusCode::CREATED, spec))
        }
        Err(e) if e.code == "job_exists" => Err(message(StatusCode::CONFLICT, "Job with this id already exists")),
        Err(e) => Err(failed(e)),
    }
}

/// `PUT /v1/jobs/{id}`: the id in the path wins; the job keeps its schedules, as in Metronome.
async fn update_job(
    State(master): State<Master>,
    caller: Option<Extension<Identity>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let node = master.node().clone();
    let mut value: Value = serde_json::from_slice(&body).map_err(|e| {
        invalid(Invalid {
            message: "Object is not valid".into(),
            details: vec![crate::metronome::InvalidDetail {
                path: "/".into(),
                errors: vec![e.to_string()],
            }],
        })
    })?;
    if let Some(o) = value.as_object_mut() {
        o.insert("id".into(), Value::String(id.clone()));
    }
    let mut job = parse_job(value.to_string().as_bytes()).map_err(invalid)?;
    may_run(&caller, &job)?;
    node.linearize().await.map_err(failed)?;
    let Some(current) = node.read(|s| job_of(s, &id)) else {
        return Err(unknown_job(&id));
    };
    job.schedules = current.schedules;
    validate_job(&job).map_err(invalid)?;
    node.read(|s| check_dependencies(s, &job))?;
    let spec = serde_json::to_value(&job).unwrap_or(Value::Null);
    write(
        &node,
        Command::PutJob {
            id: id.clone(),
            spec: spec.clone(),
            create: false,
            now: now_ms(),
        },
    )
    .await?;
    Ok(answer(StatusCode::OK, spec))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQuery {
    #[serde(default)]
    stop_current_job_runs: bool,
    /// tepui's own: the job's children take over its parents or schedule (as Chronos
    /// deletes), instead of the delete being refused.
    #[serde(default)]
    hand_off: bool,
}

/// `DELETE /v1/jobs/{id}`: refused while runs are active unless `stopCurrentJobRuns=true`,
/// and while other jobs depend on it unless `handOff=true`.
async fn delete_job(
    State(master): State<Master>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let Some(job) = node.read(|s| job_of(s, &id)) else {
        return Err(unknown_job(&id));
    };
    let children: Vec<String> = node.read(|s| {
        jobs_of(s)
            .into_iter()
            .filter(|j| j.dependencies.contains(&id))
            .map(|j| j.id)
            .collect()
    });
    if !children.is_empty() && !q.hand_off {
        return Err(message(
            StatusCode::CONFLICT,
            format!(
                "There are jobs with a dependency on {id}. children=[{}]",
                children.join(", ")
            ),
        ));
    }
    let active = node.read(|s| s.job_runs.values().any(|r| r.job_id == id));
    if active {
        if !q.stop_current_job_runs {
            return Err(message(
                StatusCode::CONFLICT,
                "There are active job runs. Override with stopCurrentJobRuns=true",
            ));
        }
        stop_runs(&master, &id).await?;
    }
    crate::chronos_api::delete_handing_off(&master, &id).await?;
    Ok(answer(StatusCode::OK, serde_json::to_value(job).unwrap_or(Value::Null)))
}

async fn list_schedules(State(master): State<Master>, Path(id): Path<String>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let v = node.read(|s| job_of(s, &id).map(|j| schedules_json(s, &j)));
    Ok(answer(StatusCode::OK, v.ok_or_else(|| unknown_job(&id))?))
}

async fn show_schedule(State(master): State<Master>, Path((id, schedule)): Path<(String, String)>) -> Answer {
    let node = master.node().clone();
    node.linearize().await.map_err(failed)?;
    let job = node.read(|s| job_of(s, &id)).ok_or_else(|| unknown_job(&id))?;
    let found = job.schedules.iter().find(|s| s.id == schedule);
    let sc = found.ok_or_else(|| unknown_schedule(&schedule))?;
    Ok(answer(StatusCode::OK, node.read(|s| schedule_json(s, &job, sc))))
}

/// Replaces the job's schedules with `change` applied, checked as a whole job.
async fn change_schedules(
    node: &Node,
    id: &str,
    change: impl FnOnce(&mut Vec<ScheduleSpec>) -> Result<(), Response>,
) -> Result<(), Response> {
    node.linearize().await.map_err(failed)?;
    let mut job = node.read(|s| job_of(s, id)).ok_or_else(|| unknown_job(id))?;
    change(&mut job.schedules)?;
    validate_job(&job).map_err(invalid)?;
    write(
        node,
        Command::PutJob {
            id: id.to_string(),
            spec: serde_json::to_value(&job).unwrap_or(Value::Null),
            create: false,
            now: now_ms(),
        },
    )
    .await
}

async fn create_schedule(State(master): State<Master>, Path(id): Path<String>, body: Bytes) -> Answer {
    let node = master.node().clone();
    let mut schedule = parse_schedule(&body).map_err(invalid)?;
    schedule.cron = crate::calendar::fix_iso8601_start(&schedule.cron, now_ms() as i64);
    let added = schedule.clone();
    change_schedules(&node, &id, move |all| {
        if all.iter().any(|s| s.id == added.id) {
            return Err(message(
                StatusCode::CONFLICT,
                format!("Schedule with id {} already exists", added.id),
            ));
        }
        all.push(added);
        Ok(())
    })
    .await?;
    Ok(answer(
        StatusCode::CREATED,
        serde_json::to_value(schedule).unwrap_or(Value::Null),
    ))
}

async fn update_schedule(
    State(master): State<Master>,
    Path((id, schedule_id)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let node = master.node().clone();
    let mut schedule = parse_schedule(&body).map_err(invalid)?;
    schedule.id = schedule_id.clone();
    schedule.cron = crate::calendar::fix_iso8601_start(&schedule.cron, now_ms() as i64);
    let replaced = schedule.clone();
    change_schedules(&node, &id, move |all| {
        let slot = all
            .iter_mut()
            .find(|s| s.id == replaced.id)
            .ok_or_else(|| unknown_schedule(&replaced.id))?;
        *slot = replaced;
        Ok(())
    })
    .await?;
    Ok(answer(
        StatusCode::OK,
        serde_json::to_value(schedule).unwrap_or(Value::Null),
    ))
}

async fn delete_schedule(State(master): State<Master>, Path((id, schedule_id)): Path<(String, String)>) -> Answer {
    let node = master.node().clone();
    let gone = schedule_id.clone();
    change_schedules(&node, &id, move |all| {
        let before = all.len();
        all.retain(|s| s.id != gone);
        if all.len() == before {
            return Err(unknown_schedule(&gone));
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}
