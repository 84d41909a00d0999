//! The batch-job verbs beyond one call each: following a run to its end on the server's
//! stream of its changes, stopping runs, a run's logs, enabling and disabling, and the dependency graph
//! drawn for a terminal (the layout is pure: jobs in, lines out).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tepui_api::{Client, ClientError};

use crate::output::emit;
use crate::Format;

/// The longest `job run --wait` waits: a timeout, not a pace.
const WAIT_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// A job's schedules as people read them: `0 2 * * * Europe/Berlin`, `(off)` after a disabled
/// one, `; ` between several; `None` without any.
pub fn schedule_text(job: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let all: Vec<String> = job["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let off = if s["enabled"].as_bool() == Some(false) {
                " (off)"
            } else {
                ""
            };
            format!("{} {}{off}", text(&s["cron"]), text(&s["timezone"]))
        })
        .collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// tepui's extension of Metronome's job: `"disabled": true` (absent is false).
pub fn is_disabled(job: &Value) -> bool {
    job["disabled"].as_bool() == Some(true)
}

/// The ids of a job's parents (`"dependencies": [{"id": ...}]`).
pub fn parents(job: &Value) -> Vec<String> {
    job["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect()
}

/// One job as the graph draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphJob {
    pub id: String,
    pub parents: Vec<String>,
    pub schedule: Option<String>,
    pub disabled: bool,
}

impl GraphJob {
    pub fn of(job: &Value) -> GraphJob {
        GraphJob {
            id: job["id"].as_str().unwrap_or("").to_string(),
            parents: parents(job),
            schedule: schedule_text(job),
            disabled: is_disabled(job),
        }
    }

    /// Its schedule, else the parents it runs after, else `manual`; then `[disabled]`.
    fn describe(&self) -> String {
        let mut s = match (&self.schedule, self.parents.is_empty()) {
            (Some(s), _) => s.clone(),
            (None, false) => format!("after {}", self.parents.join(", ")),
            (None, true) => "manual".into(),
        };
        if self.disabled {
            s.push_str("  [disabled]");
        }
        s
    }
}

/// What a line of the graph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// The job, with its children under it.
    Job,
    /// A job with several parents, under one that is not the last of them: it is drawn in
    /// full under the last, further down.
    SeeBelow,
    /// The same, under a parent that comes after the one it is drawn under.
    SeeAbove,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphLine {
    /// The connectors before the id (`│   ├── `); empty for a root.
    pub tree: String,
    pub id: String,
    pub kind: LineKind,
}

struct Walk<'a> {
    parents: BTreeMap<&'a str, BTreeSet<&'a str>>,
    children: BTreeMap<&'a str, BTreeSet<&'a str>>,
    drawn: BTreeSet<&'a str>,
    lines: Vec<GraphLine>,
}

impl<'a> Walk<'a> {
    fn draw(&mut self, id: &'a str, tree: String) {
        self.lines.push(GraphLine {
            tree,
            id: id.to_string(),
            kind: LineKind::Job,
        });
        self.drawn.insert(id);
    }

    /// `id`'s children under it; `indent` continues the connectors of the lines above.
    fn walk(&mut self, id: &'a str, indent: &str) {
        let kids: Vec<&'a str> = self.children[id].iter().copied().collect();
        for (i, kid) in kids.iter().copied().enumerate() {
            let last = i + 1 == kids.len();
            let tree = format!("{indent}{}", if last { "└── " } else { "├── " });
            let below = format!("{indent}{}", if last { "    " } else { "│   " });
            if self.drawn.contains(kid) {
                self.lines.push(GraphLine {
                    tree,
                    id: kid.to_string(),
                    kind: LineKind::SeeAbove,
                });
            } else if self.parents[kid].iter().all(|p| self.drawn.contains(p)) {
                self.draw(kid, tree);
                self.walk(kid, &below);
            } else {
                self.lines.push(GraphLine {
                    tree,
                    id: kid.to_string(),
                    kind: LineKind::SeeBelow,
                });
            }
        }
    }
}

/// The parents of each job among the jobs given (unknown parents and self-references left out).
fn known_parents(jobs: &[GraphJob]) -> BTreeMap<&str, BTreeSet<&str>> {
    let known: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    jobs.iter()
        .map(|j| {
            let ps = j
                .parents
                .iter()
                .map(String::as_str)
                .filter(|p| known.contains(p) && *p != j.id)
                .collect();
            (j.id.as_str(), ps)
        })
        .collect()
}

/// The graph as lines, roots first (by id), each job's children under it (by id). A job is
/// drawn in full once, under the last of its parents to be drawn, so it always comes below
/// every parent; under its other parents a line points to it.
pub fn layout(jobs: &[GraphJob]) -> Vec<GraphLine> {
    let parents = known_parents(jobs);
    let mut children: BTreeMap<&str, BTreeSet<&str>> = parents.keys().map(|id| (*id, BTreeSet::new())).collect();
    for (child, ps) in &parents {
        for p in ps {
            if let Some(c) = children.get_mut(p) {
                c.insert(child);
            }
        }
    }
    let roots: Vec<&str> = parents
        .iter()
        .filter(|(_, ps)| ps.is_empty())
        .map(|(id, _)| *id)
        .collect();
    let mut w = Walk {
        parents,
        children,
        drawn: BTreeSet::new(),
        lines: Vec::new(),
    };
    for root in roots {
        w.draw(root, String::new());
        w.walk(root, "");
    }
    // Only a cycle (which the server refuses) leaves jobs out: draw them as roots.
    while let Some(id) = w.parents.keys().copied().find(|id| !w.drawn.contains(id)) {
        w.draw(id, String::new());
        w.walk(id, "");
    }
    w.lines
}

/// Each job's layer: 0 for a root, else one more than its deepest parent.
pub fn layers(jobs: &[GraphJob]) -> BTreeMap<String, usize> {
    let parents = known_parents(jobs);
    let mut layer: BTreeMap<&str, usize> = parents.keys().map(|id| (*id, 0)).collect();
    // As many rounds as jobs settle any acyclic graph; a cycle stays bounded.
    for _ in 0..parents.len() {
        let mut changed = false;
        for (child, ps) in &parents {
            let want = ps.iter().map(|p| layer[p] + 1).max().unwrap_or(0);
            if want > layer[child] {
                layer.insert(child, want);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `[parent, child]` pairs, sorted.
pub fn edges(jobs: &[GraphJob]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = known_parents(jobs)
        .into_iter()
        .flat_map(|(child, ps)| ps.into_iter().map(move |p| (p.to_string(), child.to_string())))
        .collect();
    out.sort();
    out
}

/// The graph for a terminal: a job per line, its schedule (or what it runs after, or
/// `manual`) in a column, `[disabled]` for a disabled job.
pub fn draw(jobs: &[GraphJob]) -> String {
    if jobs.is_empty() {
        return "no jobs".into();
    }
    let by_id: BTreeMap<&str, &GraphJob> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let lines = layout(jobs);
    let width = lines
        .iter()
        .map(|l| l.tree.chars().count() + l.id.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            let head = format!("{}{}", l.tree, l.id);
            let label = match l.kind {
                LineKind::Job => by_id.get(l.id.as_str()).map(|j| j.describe()).unwrap_or_default(),
                LineKind::SeeBelow => "(see below)".into(),
                LineKind::SeeAbove => "(see above)".into(),
            };
            let pad = " ".repeat(width - head.chars().count() + 3);
            format!("{head}{pad}{label}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `{"nodes": [{"id", "schedule", "disabled", "layer"}], "edges": [[parent, child]]}`.
pub fn graph_json(jobs: &[GraphJob]) -> Value {
    let layer = layers(jobs);
    let mut sorted: Vec<&GraphJob> = jobs.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let nodes: Vec<Value> = sorted
        .iter()
        .map(|j| {
            json!({
                "id": j.id,
                "schedule": j.schedule,
                "disabled": j.disabled,
                "layer": layer.get(&j.id).copied().unwrap_or(0),
            })
        })
        .collect();
    let edges: Vec<Value> = edges(jobs).into_iter().map(|(p, c)| json!([p, c])).collect();
    json!({ "nodes": nodes, "edges": edges })
}

/// The ids of a run's tasks, oldest attempt first: a run lists them as objects, the history
/// as ids.
pub fn task_ids(run: &Value) -> Vec<String> {
    run["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().or_else(|| t["id"].as_str()).map(str::to_string))
        .collect()
}

/// A run [`newest_run`] picked: its id and its tasks' ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub id: String,
    pub tasks: Vec<String>,
    pub active: bool,
}

/// The newest run of a job shown with `embed=activeRuns&embed=history`: an active one if there
/// is one, else the newest finished one.
pub fn newest_run(job: &Value) -> Option<RunRef> {
    let newest = |runs: Vec<&Value>| -> Option<(String, Vec<String>)> {
        runs.into_iter()
            .max_by(|a, b| {
                let key = |r: &Value| {
                    (
                        r["createdAt"].as_str().unwrap_or("").to_string(),
                        r["id"].as_str().unwrap_or("").to_string(),
                    )
                };
                key(a).cmp(&key(b))
            })
            .map(|r| (r["id"].as_str().unwrap_or("").to_string(), task_ids(r)))
    };
    let active: Vec<&Value> = job["activeRuns"].as_array().into_iter().flatten().collect();
    if let Some((id, tasks)) = newest(active) {
        return Some(RunRef {
            id,
            tasks,
            active: true,
        });
    }
    let finished: Vec<&Value> = ["successfulFinishedRuns", "failedFinishedRuns"]
        .iter()
        .flat_map(|k| job["history"][*k].as_array().into_iter().flatten())
        .collect();
    newest(finished).map(|(id, tasks)| RunRef {
        id,
        tasks,
        active: false,
    })
}

fn run_status(run: &Value) -> &str {
    run["status"].as_str().unwrap_or("")
}

fn run_finished(run: &Value) -> bool {
    matches!(run_status(run), "SUCCESS" | "FAILED")
}

async fn fetch_run(c: &Client, job: &str, run: &str) -> anyhow::Result<Value> {
    Ok(c.get(&format!("/v1/jobs/{job}/runs/{run}")).await?)
}

/// Starts a run of `job` now; the run as Metronome shows it. With `args`, through Chronos'
/// run now (Metronome's has no arguments): `?arguments=` holds them as shell words, each
/// quoted, so an argument with blanks stays one; the answer says where the run is.
pub async fn start_run(c: &Client, job: &str, args: &[String]) -> anyhow::Result<Value> {
    if args.is_empty() {
        return Ok(c.post(&format!("/v1/jobs/{job}/runs"), &json!({})).await?);
    }
    let words: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    let path = format!("/v1/scheduler/job/{job}?arguments={}", query_escape(&words.join(" ")));
    let location = c
        .put_located(&path)
        .await?
        .context("the server did not say where the run is (is it older than this client?)")?;
    Ok(c.get(&location).await?)
}

/// `arg` as one word of a POSIX shell: as it is when nothing in it is special, else in
/// single quotes (the server reads the words back as a shell does).
pub fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `text` for a URL's query: every byte but the unreserved ones percent-encoded.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Follows a run to its end on the server's stream of its changes, printing each change of
/// its status on stderr; the finished run.
pub async fn follow_run(c: &Client, job: &str, run: &str) -> anyhow::Result<Value> {
    match tokio::time::timeout(WAIT_LIMIT, follow(c, job, run)).await {
        Ok(done) => done,
        Err(_) => anyhow::bail!(
            "run {run} of {job} did not end within {}; it goes on (tepui job stop {job} {run})",
            humantime::format_duration(WAIT_LIMIT)
        ),
    }
}

async fn follow(c: &Client, job: &str, run: &str) -> anyhow::Result<Value> {
    let mut shown = String::new();
    let mut changes = c.stream(&format!("/v1/jobs/{job}/runs/{run}/watch")).await?;
    let mut buf = Vec::new();
    let mut last: Option<Value> = None;
    while let Some(chunk) = changes.chunk().await.context("the run's stream broke off")? {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let r: Value = serde_json::from_slice(&line).context("a run that does not parse")?;
            let status = run_status(&r).to_string();
            if status != shown {
                eprintln!("  {status}");
                shown = status;
            }
            last = Some(r);
        }
    }
    match last {
        Some(r) if run_finished(&r) => Ok(r),
        // The stream ended early (a new leader): where the run is now.
        _ => {
            let r = fetch_run(c, job, run).await?;
            if run_finished(&r) {
                Ok(r)
            } else {
                Box::pin(follow(c, job, run)).await
            }
        }
    }
}

/// `tepui job stop ID [RUN]`: the run, or every active run of the job.
pub async fn stop(c: &Client, job: &str, run: Option<String>, format: Format) -> anyhow::Result<()> {
    let given = run.is_some();
    let runs: Vec<String> = match run {
        Some(r) => vec![r],
        None => {
            let active: Vec<Value> = c.get(&format!("/v1/jobs/{job}/runs")).await?;
            active
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        }
    };
    let mut stopped = Vec::new();
    for r in &runs {
        let path = format!("/v1/jobs/{job}/runs/{r}/actions/stop");
        match c.post::<_, Value>(&path, &json!({})).await {
            Ok(_) => {}
            // Listed as active a moment ago, ended by itself since.
            Err(ClientError::Api { status: 404, .. }) if !given => continue,
            Err(e) => return Err(e.into()),
        }
        if matches!(format, Format::Table) {
            println!("run {r} of {job} stopped");
        }
        stopped.push(json!({ "jobId": job, "id": r }));
    }
    if stopped.is_empty() {
        anyhow::bail!("job {job} has no active run");
    }
    if matches!(format, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&stopped)?);
    }
    Ok(())
}

/// `tepui job logs ID [RUN]`: the output of the run's latest task (the newest run's without
/// RUN). With `follow`, a run that has no task yet is waited for.
pub async fn logs(c: &Client, job: &str, run: Option<String>, how: crate::LogFlags) -> anyhow::Result<()> {
    let follow = how.follow;
    let (run_id, tasks) = match run {
        Some(r) => {
            let v = fetch_run(c, job, &r).await?;
            (r, task_ids(&v))
        }
        None => {
            let v: Value = c.get(&format!("/v1/jobs/{job}?embed=activeRuns&embed=history")).await?;
            let newest = newest_run(&v).ok_or_else(|| anyhow::anyhow!("job {job} has no run yet"))?;
            (newest.id, newest.tasks)
        }
    };
    let task = match tasks.last() {
        Some(t) => t.clone(),
        None if follow => first_task(c, job, &run_id).await?,
        None => anyhow::bail!("run {run_id} of {job} has no task yet; --follow waits for it"),
    };
    crate::client::task_logs(c, &task, how).await
}

/// The run's first task, once the leader launched it (read off the run's stream of changes).
async fn first_task(c: &Client, job: &str, run: &str) -> anyhow::Result<String> {
    let mut changes = c.stream(&format!("/v1/jobs/{job}/runs/{run}/watch")).await?;
    let mut buf = Vec::new();
    while let Some(chunk) = changes.chunk().await.context("the run's stream broke off")? {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let r: Value = serde_json::from_slice(&line).context("a run that does not parse")?;
            if let Some(t) = task_ids(&r).into_iter().next() {
                return Ok(t);
            }
            if run_finished(&r) {
                anyhow::bail!("run {run} of {job} ended {} without a task", run_status(&r));
            }
        }
    }
    anyhow::bail!("the run's stream ended before run {run} of {job} got a task")
}

/// `tepui job enable|disable ID`: the job as it is, with `disabled` set, put back.
pub async fn set_disabled(c: &Client, job: &str, disabled: bool, format: Format) -> anyhow::Result<()> {
    let mut spec: Value = c.get(&format!("/v1/jobs/{job}")).await?;
    let Some(o) = spec.as_object_mut() else {
        anyhow::bail!("job {job} is not a JSON object: {spec}");
    };
    for embedded in ["activeRuns", "history", "historySummary"] {
        o.remove(embedded);
    }
    o.insert("disabled".into(), Value::Bool(disabled));
    let saved: Value = c.put(&format!("/v1/jobs/{job}"), &spec).await?;
    let word = if disabled { "disabled" } else { "enabled" };
    if is_disabled(&saved) != disabled {
        anyhow::bail!(
            "the server did not keep job {job} {word}: it does not know tepui's \"disabled\" field (an older server?)"
        );
    }
    emit(format, &saved, |_| format!("job {job} {word}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, parents: &[&str]) -> GraphJob {
        GraphJob {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            schedule: None,
            disabled: false,
        }
    }

    /// Every job is drawn in full exactly once, below all its parents.
    fn check_order(jobs: &[GraphJob]) {
        let lines = layout(jobs);
        let at: BTreeMap<&str, usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.kind == LineKind::Job)
            .map(|(i, l)| (l.id.as_str(), i))
            .collect();
        let drawn = lines.iter().filter(|l| l.kind == LineKind::Job).count();
        assert_eq!(drawn, jobs.len(), "{lines:?}");
        for j in jobs {
            for p in &j.parents {
                assert!(at[p.as_str()] < at[j.id.as_str()], "{} above {}: {lines:?}", p, j.id);
            }
        }
    }

    #[test]
    fn a_chain_is_one_branch() {
        let jobs = vec![job("c", &["b"]), job("a", &[]), job("b", &["a"])];
        assert_eq!(
            draw(&jobs),
            ["a           manual", "└── b       after a", "    └── c   after b"].join("\n")
        );
        check_order(&jobs);
        assert_eq!(
            layers(&jobs).into_iter().collect::<Vec<_>>(),
            vec![("a".to_string(), 0), ("b".to_string(), 1), ("c".to_string(), 2)]
        );
    }

    #[test]
    fn a_diamond_draws_the_join_once_under_its_last_parent() {
        let jobs = vec![job("a", &[]), job("b", &["a"]), job("c", &["a"]), job("d", &["b", "c"])];
        assert_eq!(
            draw(&jobs),
            [
                "a           manual",
                "├── b       after a",
                "│   └── d   (see below)",
                "└── c       after a",
                "    └── d   after b, c",
            ]
            .join("\n")
        );
        check_order(&jobs);
        assert_eq!(layers(&jobs)["d"], 2);
        assert_eq!(
            graph_json(&jobs)["edges"],
            json!([["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]])
        );
    }

    #[test]
    fn several_roots_come_in_order_with_schedules_and_disabled_jobs() {
        let mut nightly = job("nightly", &[]);
        nightly.schedule = Some("0 2 * * * UTC".into());
        let mut adhoc = job("adhoc", &[]);
        adhoc.disabled = true;
        let jobs = vec![nightly, job("report", &["nightly"]), adhoc];
        assert_eq!(
            draw(&jobs),
            [
                "adhoc        manual  [disabled]",
                "nightly      0 2 * * * UTC",
                "└── report   after nightly",
            ]
            .join("\n")
        );
        check_order(&jobs);
        let g = graph_json(&jobs);
        assert_eq!(
            g["nodes"][0],
            json!({"id": "adhoc", "schedule": null, "disabled": true, "layer": 0})
        );
        assert_eq!(g["nodes"][1]["schedule"], "0 2 * * * UTC");
        assert_eq!(g["edges"], json!([["nightly", "report"]]));
    }

    #[test]
    fn a_child_shared_by_two_roots_comes_after_both() {
        let jobs = vec![job("r2", &[]), job("shared", &["r1", "r2"]), job("r1", &[])];
        assert_eq!(
            draw(&jobs),
            [
                "r1           manual",
                "└── shared   (see below)",
                "r2           manual",
                "└── shared   after r1, r2",
            ]
            .join("\n")
        );
        check_order(&jobs);
    }

    #[test]
    fn a_child_drawn_deeper_is_pointed_to_from_above() {
        // c runs after a and after b, which runs after a: c is drawn under b.
        let jobs = vec![job("a", &[]), job("b", &["a"]), job("c", &["a", "b"])];
        let lines = layout(&jobs);
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.tree.as_str(), l.id.as_str(), l.kind))
                .collect::<Vec<_>>(),
            vec![
                ("", "a", LineKind::Job),
                ("├── ", "b", LineKind::Job),
                ("│   └── ", "c", LineKind::Job),
                ("└── ", "c", LineKind::SeeAbove),
            ]
        );
        check_order(&jobs);
    }

    #[test]
    fn unknown_parents_and_cycles_still_draw_every_job() {
        let jobs = vec![job("orphan", &["gone"]), job("x", &["y"]), job("y", &["x"])];
        let lines = layout(&jobs);
        let drawn: Vec<&str> = lines
            .iter()
            .filter(|l| l.kind == LineKind::Job)
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(drawn, vec!["orphan", "x", "y"]);
        assert_eq!(draw(&[]), "no jobs");
        assert!(edges(&jobs).iter().all(|(p, _)| p != "gone"));
    }

    #[test]
    fn graph_jobs_read_metronome_json() {
        let j = GraphJob::of(&json!({
            "id": "b", "disabled": true, "dependencies": [{"id": "a"}],
            "schedules": [{"id": "s", "cron": "*/5 * * * *", "timezone": "UTC", "enabled": false}]
        }));
        assert_eq!(j.parents, vec!["a"]);
        assert_eq!(j.schedule.as_deref(), Some("*/5 * * * * UTC (off)"));
        assert!(j.disabled);
        assert!(!is_disabled(&json!({"id": "a"})));
    }

    #[test]
    fn the_newest_run_is_an_active_one_else_the_latest_finished() {
        let job = json!({
            "activeRuns": [],
            "history": {
                "successfulFinishedRuns": [
                    {"id": "20260101000000aaaaa", "createdAt": "2026-01-01T00:00:00.000+0000", "tasks": ["j.20260101000000aaaaa.1"]}
                ],
                "failedFinishedRuns": [
                    {"id": "20260102000000bbbbb", "createdAt": "2026-01-02T00:00:00.000+0000",
                     "tasks": ["j.20260102000000bbbbb.1", "j.20260102000000bbbbb.2"]}
                ]
            }
        });
        assert_eq!(
            newest_run(&job),
            Some(RunRef {
                id: "20260102000000bbbbb".into(),
                tasks: vec!["j.20260102000000bbbbb.1".into(), "j.20260102000000bbbbb.2".into()],
                active: false,
            })
        );
        let mut with_active = job.clone();
        with_active["activeRuns"] = json!([
            {"id": "20250101000000ccccc", "createdAt": "2025-01-01T00:00:00.000+0000", "status": "ACTIVE",
             "tasks": [{"id": "j.20250101000000ccccc.1", "status": "TASK_RUNNING"}]}
        ]);
        let r = newest_run(&with_active).unwrap();
        assert!(r.active);
        assert_eq!(r.tasks, vec!["j.20250101000000ccccc.1"]);
        assert_eq!(newest_run(&json!({"id": "j"})), None);
    }

    #[test]
    fn a_run_is_over_when_it_has_its_result() {
        let r = json!({"status": "ACTIVE", "tasks": [{"id": "j.r.1", "status": "TASK_FINISHED"}]});
        assert!(!run_finished(&r));
        assert!(run_finished(&json!({"status": "FAILED"})));
    }

    #[test]
    fn run_arguments_travel_as_quoted_words_in_the_query() {
        let words: Vec<String> = ["-v", "b c", "it's", ""].iter().map(|a| shell_word(a)).collect();
        assert_eq!(words, vec!["-v", "'b c'", r"'it'\''s'", "''"]);
        assert_eq!(query_escape("-v 'b c' ü&x=1"), "-v%20%27b%20c%27%20%C3%BC%26x%3D1");
    }
}
