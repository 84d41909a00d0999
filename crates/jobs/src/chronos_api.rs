//! Chronos' API, under `/v1/scheduler` (Chronos 3) and `/scheduler` (Chronos 2), over the same
//! jobs as Metronome's `/v1/jobs`. Writes answer 204 with no body; an error is a JSON object
//! `{"status", "message"}`, 400 for what the caller can fix, as Chronos answers.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tepui_auth::{Cap, Identity, Policy, Routes};
use tepui_master::Master;
use tepui_node::{now_ms, Node};
use tepui_state::{Command, JobRunRecord, JobRunStatus, State as Replicated};

use crate::api::{failed, job_of, jobs_of, may_run};
use crate::calendar::Schedule;
use crate::chronos::{self, chronos_time, Counts};
use crate::metronome::JobSpec;

type Answer = Result<Response, Response>;

/// The Chronos routes, under both of Chronos' prefixes.
pub fn routes(master: Master) -> Routes {
    let mut r: Routes<Master> = Routes::new();
    for p in ["/v1/scheduler", "/scheduler"] {
        let write = || Policy::new().post(Cap::Write).put(Cap::Write);
        r = r
            .route(&format!("{p}/iso8601"), write(), post(put_scheduled).put(put_scheduled))
            .route(
                &format!("{p}/dependency"),
                write(),
                post(put_dependent).put(put_dependent),
            )
            .route(&format!("{p}/jobs"), Policy::new().get(Cap::Read), get(list))
            .route(&format!("{p}/jobs/search"), Policy::new().get(Cap::Read), get(search))
            .route(&format!("{p}/jobs/summary"), Policy::new().get(Cap::Read), get(summary))
            .route(
                &format!("{p}/job/{{name}}"),
                Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
                get(show).put(run_now).delete(delete),
            )
            .route(
                &format!("{p}/job/success/{{name}}"),
                Policy::new().put(Cap::Write),
                put(mark_success),
            )
            .route(
                &format!("{p}/job/stat/{{name}}"),
                Policy::new().get(Cap::Read),
                get(stat),
            )
            .route(
                &format!("{p}/task/kill/{{name}}"),
                Policy::new().delete(Cap::Write),
                axum::routing::delete(kill_tasks),
            )
            .route(&format!("{p}/graph/dot"), Policy::new().get(Cap::Read), get(graph_dot))
            .route(&format!("{p}/graph/csv"), Policy::new().get(Cap::Read), get(graph_csv))
            .route(
                &format!("{p}/stats/{{percentile}}"),
                Policy::new().get(Cap::Read),
                get(stats),
            )
            .route(&format!("{p}/leader"), Policy::new().get(Cap::Read), get(leader));
    }
    r.with_state(master)
}

/// Chronos' error answer.
fn bad(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "status": status.canonical_reason().unwrap_or("Bad Request"),
        "message": message.into(),
    });
    (status, axum::Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    bad(StatusCode::BAD_REQUEST, message)
}

fn not_found(name: &str) -> Response {
    bad_request(format!("Job '{name}' not found"))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A job's counts, from its history.
fn counts(s: &Replicated, id: &str) -> Counts {
    let Some(h) = s.job_history.get(id) else {
        return Counts::default();
    };
    let errors_since = h
        .finished
        .iter()
        .take_while(|r| r.status != JobRunStatus::Success)
        .count() as u64;
    Counts {
        success_count: h.success_count,
        error_count: h.failure_count,
        last_success: h.last_success_at.map(chronos_time).unwrap_or_default(),
        last_error: h.last_failure_at.map(chronos_time).unwrap_or_default(),
        errors_since_last_success: errors_since,
    }
}

/// Whether a job's schedule has no run left (an `R0` or `Rn` interval that is over).
fn exhausted(s: &Replicated, job: &JobSpec) -> bool {
    let Some(spec) = job.schedules.first() else {
        return false;
    };
    let Some(record) = s.jobs.get(&job.id) else {
        return false;
    };
    let key = format!("{}/{}", job.id, spec.id);
    let handled = s.job_schedules_handled.get(&key).copied().unwrap_or(record.updated_at);
    Schedule::parse(&spec.cron, &spec.timezone, record.updated_at as i64)
        .is_ok_and(|c| c.next_after(handled as i64).is_none())
}

fn view_of(s: &Replicated, job: &JobSpec) -> Value {
    let stored = s.jobs.get(&job.id).map(|j| &j.spec).cloned().unwrap_or(Value::Null);
    chronos::view(&stored, job, &counts(s, &job.id), exhausted(s, job))
}

fn views(s: &Replicated) -> Vec<Value> {
    jobs_of(s).iter().map(|j| view_of(s, j)).collect()
}

/// Chronos' state of a job: `idle`, `queued` (a run waits for its task), or `N running`.
fn current_state(s: &Replicated, id: &str) -> String {
    let runs: Vec<&JobRunRecord> = s.job_runs.values().filter(|r| r.job_id == id).collect();
    let running = runs.iter().filter(|r| r.status == JobRunStatus::Active).count();
    if running > 0 {
        format!("{running} running")
    } else if !runs.is_empty() {
        "queued".into()
    } else {
        "idle".into()
    }
}

/// Chronos' last state of a job: `success`, `failure` or `fresh`.
fn last_state(s: &Replicated, id: &str) -> &'static str {
    let Some(h) = s.job_history.get(id) else {
        return "fresh";
    };
    match (h.last_success_at, h.last_failure_at) {
        (None, None) => "fresh",
        (Some(_), None) => "success",
        (None, Some(_)) => "failure",
        (Some(ok), Some(err)) => {
            if ok > err {
                "success"
            } else {
                "failure"
            }
        }
    }
}

async fn put_scheduled(State(master): State<Master>, caller: Option<Extension<Identity>>, body: Bytes) -> Answer {
    store(&master, &caller, &body, false).await
}

async fn put_dependent(State(master): State<Master>, caller: Option<Extension<Identity>>, body: Bytes) -> Answer {
    store(&master, &caller, &body, true).await
}

/// Creates or replaces a job (Chronos has one verb for both).
async fn store(master: &Master, caller: &Option<Extension<Identity>>, body: &[u8], dependent: bool) -> Answer {
    let job = chronos::parse(body, dependent).map_err(|e| bad_request(e.0))?;
    let now = now_ms();
    let (spec, stored) = job.into_stored(now as i64);
    may_run(caller, &spec)?;
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let exists = node.read(|s| s.jobs.contains_key(&spec.id));
    node.read(|s| check_graph(s, &spec))?;
    node.write(Command::PutJob {
        id: spec.id.clone(),
        spec: stored,
        create: !exists,
        now,
    })
    .await
    .map_err(failed)?;
    tracing::info!(job = %spec.id, replaced = exists, "job stored through Chronos' API");
    Ok(no_content())
}

/// Every parent known, no cycle.
fn check_graph(s: &Replicated, job: &JobSpec) -> Result<(), Response> {
    let mut parents: BTreeMap<String, Vec<String>> = jobs_of(s).into_iter().map(|j| (j.id, j.dependencies)).collect();
    parents.insert(job.id.clone(), job.dependencies.clone());
    match crate::graph::check(&parents) {
        Ok(()) => Ok(()),
        Err(crate::graph::GraphError::UnknownParent { parent, .. }) => {
            Err(bad_request(format!("Error, parent does not exist: {parent}")))
        }
        Err(e) => Err(bad_request(e.to_string())),
    }
}

async fn list(State(master): State<Master>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    Ok(axum::Json(Value::Array(node.read(views))).into_response())
}

#[derive(Deserialize)]
struct SearchQuery {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Chronos' search: case-insensitive substrings of the name and the command; `any` matches
/// either; 10 results from `offset` unless `limit` says otherwise.
async fn search(State(master): State<Master>, Query(q): Query<SearchQuery>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let lower = |o: &Option<String>| o.as_deref().filter(|t| !t.is_empty()).map(str::to_lowercase);
    let (name, command, any) = (lower(&q.name), lower(&q.command), lower(&q.any));
    let found: Vec<Value> = node
        .read(views)
        .into_iter()
        .filter(|v| {
            let n = v["name"].as_str().unwrap_or("").to_lowercase();
            let c = v["command"].as_str().unwrap_or("").to_lowercase();
            let mut valid =
                name.as_ref().is_none_or(|t| n.contains(t)) && command.as_ref().is_none_or(|t| c.contains(t));
            if !valid {
                valid = any.as_ref().is_some_and(|t| n.contains(t) || c.contains(t));
            }
            valid
        })
        .skip(q.offset.unwrap_or(0))
        .take(q.limit.unwrap_or(10))
        .collect();
    Ok(axum::Json(Value::Array(found)).into_response())
}

async fn summary(State(master): State<Master>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let jobs = node.read(|s| {
        jobs_of(s)
            .iter()
            .map(|j| {
                let v = view_of(s, j);
                json!({
                    "name": j.id,
                    "status": last_state(s, &j.id),
                    "state": current_state(s, &j.id),
                    "schedule": v.get("schedule").cloned().unwrap_or(json!("")),
                    "parents": j.dependencies,
                    "disabled": v["disabled"],
                })
            })
            .collect::<Vec<_>>()
    });
    Ok(axum::Json(json!({ "jobs": jobs })).into_response())
}

async fn show(State(master): State<Master>, Path(name): Path<String>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    node.read(|s| job_of(s, &name).map(|j| view_of(s, &j)))
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| not_found(&name))
}

#[derive(Deserialize)]
struct RunQuery {
    arguments: Option<String>,
}

/// `PUT /job/{name}`: a run now, with `?arguments=` for this run: words as a shell splits them
/// (quotes keep an argument with blanks whole), after the job's `args` or, quoted, at the end
/// of its shell command (Chronos appends the text to the command).
async fn run_now(
    State(master): State<Master>,
    caller: Option<Extension<Identity>>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let job = node.read(|s| job_of(s, &name)).ok_or_else(|| not_found(&name))?;
    may_run(&caller, &job)?;
    let now = now_ms();
    let mut run = crate::runs::new_run(&name, crate::runs::new_run_id(now), now, None);
    run.arguments = crate::arguments::split(q.arguments.as_deref().unwrap_or(""));
    node.write(Command::StartJobRun { run: run.clone() })
        .await
        .map_err(failed)?;
    tracing::info!(job = %name, run = %run.id, arguments = run.arguments.len(), "job run started through Chronos' API");
    // Chronos answers 204 and no more; the run's Metronome address is tepui's addition, for
    // a client that follows the run (`tepui job run --arg`).
    let location = format!("/v1/jobs/{name}/runs/{}", run.id);
    Ok((StatusCode::NO_CONTENT, [(header::LOCATION, location)]).into_response())
}

/// `DELETE /job/{name}`: as in Chronos, the job's children get its parents, or, when it was
/// scheduled, its schedule. They are rewritten first, so that no child is ever left naming
/// a job that is gone.
async fn delete(State(master): State<Master>, Path(name): Path<String>) -> Answer {
    delete_handing_off(&master, &name).await.map(|()| no_content())
}

/// Deletes a job, its children taking over its parents or schedule.
pub(crate) async fn delete_handing_off(master: &Master, name: &str) -> Result<(), Response> {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let (job, children) = node.read(|s| {
        let job = job_of(s, name);
        let children: Vec<(JobSpec, Value)> = jobs_of(s)
            .into_iter()
            .filter(|j| j.dependencies.iter().any(|d| d == name))
            .map(|j| {
                let stored = s.jobs[&j.id].spec.clone();
                (j, stored)
            })
            .collect();
        (job, children)
    });
    let job = job.ok_or_else(|| not_found(name))?;
    // Its runs end with it: no task is left running for a job that is gone.
    crate::api::stop_runs(master, name).await?;
    for (mut child, mut stored) in children {
        let mut parents: Vec<String> = child.dependencies.iter().filter(|d| *d != name).cloned().collect();
        for p in &job.dependencies {
            if !parents.contains(p) {
                parents.push(p.clone());
            }
        }
        if parents.is_empty() {
            // Left without a parent: the deleted job's schedule becomes the child's.
            child.schedules = job.schedules.clone();
        }
        child.dependencies = parents;
        let extras = stored.get(chronos::STORED_KEY).cloned();
        stored = serde_json::to_value(&child).unwrap_or(Value::Null);
        if let Some(extras) = extras {
            stored[chronos::STORED_KEY] = extras;
        }
        node.write(Command::PutJob {
            id: child.id.clone(),
            spec: stored,
            create: false,
            now: now_ms(),
        })
        .await
        .map_err(failed)?;
        tracing::info!(job = %child.id, parent = %name, "child job took over its deleted parent's place");
    }
    node.write(Command::DeleteJob { id: name.to_string() })
        .await
        .map_err(failed)?;
    tracing::info!(job = %name, "job deleted");
    Ok(())
}

/// `PUT /job/success/{name}`: recorded as a successful run; its children move on as after
/// a real one.
async fn mark_success(State(master): State<Master>, Path(name): Path<String>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    if node.read(|s| job_of(s, &name)).is_none() {
        return Err(not_found(&name));
    }
    let now = now_ms();
    let mut run = crate::runs::new_run(&name, crate::runs::new_run_id(now), now, None);
    run.status = JobRunStatus::Success;
    run.completed_at = Some(now);
    let done = node.write(Command::StartJobRun { run }).await.is_ok();
    Ok(text(format!("marked job {name} as successful: {done}")))
}

/// The run times (ms) of a job's finished runs, oldest first.
fn durations(s: &Replicated, id: &str) -> Vec<u64> {
    let mut d: Vec<u64> = s
        .job_history
        .get(id)
        .map(|h| {
            h.finished
                .iter()
                .filter(|r| !r.tasks.is_empty())
                .filter_map(|r| Some(r.completed_at?.saturating_sub(r.created_at)))
                .collect()
        })
        .unwrap_or_default();
    d.reverse();
    d
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() as f64 + 1.0)).clamp(1.0, sorted.len() as f64);
    let (lo, frac) = (rank.floor() as usize, rank.fract());
    let a = sorted[lo - 1] as f64;
    let b = sorted[lo.min(sorted.len() - 1)] as f64;
    a + frac * (b - a)
}

/// Chronos' histogram of run times in milliseconds.
fn histogram(durations: &[u64]) -> Value {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let mean = if sorted.is_empty() {
        0.0
    } else {
        sorted.iter().sum::<u64>() as f64 / sorted.len() as f64
    };
    json!({
        "75thPercentile": percentile(&sorted, 0.75),
        "95thPercentile": percentile(&sorted, 0.95),
        "98thPercentile": percentile(&sorted, 0.98),
        "99thPercentile": percentile(&sorted, 0.99),
        "median": percentile(&sorted, 0.5),
        "mean": mean,
        "count": sorted.len(),
    })
}

fn stat_time(ms: Option<u64>) -> String {
    ms.and_then(|m| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(m as i64))
        .map(|t| t.format("%m/%d/%y %H:%M:%S").to_string())
        .unwrap_or_else(|| "N/A".into())
}

fn duration_text(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if d > 0 || h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if d > 0 || h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{sec}s"));
    out
}

/// `GET /job/stat/{name}`: the run-time histogram and each recent run.
async fn stat(State(master): State<Master>, Path(name): Path<String>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let v = node.read(|s| {
        job_of(s, &name)?;
        let mut history: Vec<Value> = Vec::new();
        for r in s.job_runs.values().filter(|r| r.job_id == name) {
            history.push(task_stat(s, r, "Running"));
        }
        if let Some(h) = s.job_history.get(&name) {
            for r in &h.finished {
                let status = if r.status == JobRunStatus::Success {
                    "Success"
                } else {
                    "Fail"
                };
                history.push(task_stat(s, r, status));
            }
        }
        Some(json!({ "histogram": histogram(&durations(s, &name)), "taskStatHistory": history }))
    });
    v.map(|v| axum::Json(v).into_response()).ok_or_else(|| not_found(&name))
}

fn task_stat(s: &Replicated, r: &JobRunRecord, status: &str) -> Value {
    let task = r.tasks.last();
    let record = task.and_then(|t| s.tasks.get(t));
    let mut v = json!({
        "taskId": task.cloned().unwrap_or_default(),
        "jobName": r.job_id,
        "slaveId": record.map(|t| t.agent_id.to_string()).unwrap_or_default(),
        "startTime": stat_time(record.and_then(|t| t.started_at).or(Some(r.created_at))),
        "endTime": stat_time(r.completed_at),
        "status": status,
    });
    if let Some(done) = r.completed_at {
        v["duration"] = json!(duration_text(done.saturating_sub(r.created_at)));
    }
    v
}

/// `DELETE /task/kill/{name}`: every running task of the job is killed; its runs fail.
async fn kill_tasks(State(master): State<Master>, Path(name): Path<String>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    if node.read(|s| job_of(s, &name)).is_none() {
        return Err(not_found(&name));
    }
    crate::api::stop_runs(&master, &name).await?;
    Ok(no_content())
}

fn edges(jobs: &[JobSpec]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for j in jobs {
        for p in &j.dependencies {
            out.push((p.clone(), j.id.clone()));
        }
    }
    out
}

/// `GET /graph/dot`: the dependency graph in Graphviz' language.
async fn graph_dot(State(master): State<Master>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let jobs = node.read(jobs_of);
    Ok(text(dot(&jobs)))
}

/// The graph in DOT: one numbered vertex per job, labelled with its name.
pub fn dot(jobs: &[JobSpec]) -> String {
    let index: BTreeMap<&str, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id.as_str(), i + 1)).collect();
    let mut out = String::from("digraph G {\n");
    for j in jobs {
        out.push_str(&format!(
            "  {} [ label = \"{}\" ];\n",
            index[j.id.as_str()],
            j.id.replace('"', "\\\"")
        ));
    }
    for (parent, child) in edges(jobs) {
        if let (Some(p), Some(c)) = (index.get(parent.as_str()), index.get(child.as_str())) {
            out.push_str(&format!("  {p} -> {c};\n"));
        }
    }
    out.push_str("}\n");
    out
}

/// `GET /graph/csv`: `node,NAME,LAST_STATE,STATE` lines, then `link,PARENT,CHILD`.
async fn graph_csv(State(master): State<Master>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let body = node.read(|s| {
        let jobs = jobs_of(s);
        let mut out = String::new();
        for j in &jobs {
            out.push_str(&format!(
                "node,{},{},{}\n",
                j.id,
                last_state(s, &j.id),
                current_state(s, &j.id)
            ));
        }
        for (p, c) in edges(&jobs) {
            out.push_str(&format!("link,{p},{c}\n"));
        }
        out
    });
    Ok(text(body))
}

/// `GET /stats/{percentile}`: each job's run time (seconds) at that percentile, longest first.
/// As in Chronos, `percentile` names a field of a job's run-time histogram (`median`, `mean`,
/// `75thPercentile`, `95thPercentile`, `98thPercentile`, `99thPercentile`, `count`), every
/// job is listed (one that never ran at 0), and any other name lists nothing: 200 `[]`.
async fn stats(State(master): State<Master>, Path(which): Path<String>) -> Answer {
    let node = master.node();
    node.linearize().await.map_err(failed)?;
    let mut rows: Vec<(String, f64)> = node.read(|s| {
        jobs_of(s)
            .iter()
            .filter_map(|j| {
                let h = histogram(&durations(s, &j.id));
                let value = h.get(which.as_str())?.as_f64().unwrap_or(0.0);
                Some((j.id.clone(), value))
            })
            .collect()
    });
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let out: Vec<Value> = rows
        .into_iter()
        .map(|(name, ms)| json!({ "jobNameLabel": name, "time": ms / 1000.0 }))
        .collect();
    Ok(axum::Json(Value::Array(out)).into_response())
}

async fn leader(State(master): State<Master>) -> Answer {
    let node: &Node = master.node();
    node.linearize().await.map_err(failed)?;
    Ok(axum::Json(json!({ "leader": node.info().http_addr })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_numbers_the_jobs_and_draws_the_edges() {
        let job = |id: &str, deps: &[&str]| -> JobSpec {
            let deps: Vec<Value> = deps.iter().map(|d| json!({"id": d})).collect();
            serde_json::from_value(json!({"id": id, "dependencies": deps, "run": {"cmd": "true"}})).unwrap()
        };
        let g = dot(&[job("a", &[]), job("b", &["a"]), job("c", &["a", "b"])]);
        assert_eq!(
            g,
            "digraph G {\n  1 [ label = \"a\" ];\n  2 [ label = \"b\" ];\n  3 [ label = \"c\" ];\n  1 -> 2;\n  1 -> 3;\n  2 -> 3;\n}\n"
        );
    }

    #[test]
    fn histograms_and_durations() {
        let h = histogram(&[1000, 2000, 3000, 4000]);
        assert_eq!(h["count"], 4);
        assert_eq!(h["median"], 2500.0);
        assert_eq!(h["mean"], 2500.0);
        assert_eq!(histogram(&[])["count"], 0);
        assert_eq!(duration_text(5_000), "5s");
        assert_eq!(duration_text(3_725_000), "1h2m5s");
        assert_eq!(duration_text(90_061_000), "1d1h1m1s");
    }
}
