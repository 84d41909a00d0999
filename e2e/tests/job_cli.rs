//! The batch-job verbs past defining a job, as a user meets them: `job graph` draws the
//! dependency graph, `job disable` and `job enable` mark a job (and `job ls` and `job show`
//! say so), `job run --wait` follows a run on the cluster's task events to its end, `job logs`
//! prints a run's output, `job stop` stops a run that waits for nothing and a `--wait` that
//! follows one ends with it, `job run --arg` gives a run arguments of its own that reach its
//! task one by one, and a job that is unknown or has nothing to stop is one line and exit 1.
//!
//! Runs `tepui dev` on 127.0.49.1 with ports 34900-34919 and the bridge `tpe2e-jobcli`; needs
//! root.

use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, wait_for, Output, Sandbox};

const IP: &str = "127.0.49.1";
const START: Duration = Duration::from_secs(30);

/// Waits until task `id` has ended (its shim recorded the end and is done with its sandbox);
/// its last state.
fn wait_ended(addr: &str, id: &str) -> String {
    wait_for(&format!("task {id} to end"), START, || {
        let t: Value = tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()?;
        match t["state"].as_str() {
            Some(s @ ("TASK_KILLED" | "TASK_FINISHED" | "TASK_FAILED")) => Ok(s.to_string()),
            other => Err(format!("{other:?}")),
        }
    })
}

fn wait_running(addr: &str, id: &str) {
    wait_for(&format!("task {id} to run"), START, || {
        let t: Value = tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()?;
        match t["state"].as_str() {
            Some("TASK_RUNNING") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// The line of `job ls` for `id`.
fn ls_row(addr: &str, id: &str) -> String {
    let table = tepui(&["job", "ls", "--addr", addr]).ok().stdout;
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no row for {id} in\n{table}"))
        .to_string()
}

/// A failure of one line on stderr that says `what`, with exit 1.
fn assert_refused(out: &Output, what: &str) {
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains(what), "{out}");
}

/// Successful runs in a job's history.
fn successes(addr: &str, job: &str) -> Result<u64, String> {
    let h: Value = tepui(&["job", "history", job, "-o", "json", "--addr", addr]).try_json()?;
    Ok(h["successCount"].as_u64().unwrap_or(0))
}

#[test]
fn jobs_are_drawn_disabled_run_followed_and_stopped_with_the_cli() {
    need_root();
    let sb = Sandbox::new("job-cli");
    let (_dev, _data) = spawn_dev(
        &sb,
        "jobcli1",
        IP,
        "34900-34919",
        ("tpe2e-jobcli", "10.214.49.0/24"),
        START,
    );
    let addr = http_addr(IP);
    let file = sb.join("job.json");
    let add = |json: &str| {
        std::fs::write(&file, json).unwrap();
        tepui(&["job", "add", &file.display().to_string(), "--addr", &addr])
    };
    let said = add(r#"{"id": "a", "run": {"cmd": "echo hello-from-a", "cpus": 0.1, "mem": 32}}"#)
        .ok()
        .stdout;
    assert!(said.contains("job a created"), "{said}");
    let said = add(r#"{"id": "b", "dependencies": [{"id": "a"}], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}"#)
        .ok()
        .stdout;
    assert!(said.contains("job b created"), "{said}");

    // The graph: a, then b under it.
    let graph = tepui(&["job", "graph", "--addr", &addr]).ok().stdout;
    let lines: Vec<&str> = graph.lines().collect();
    let a_at = lines.iter().position(|l| l.starts_with("a ")).expect(&graph);
    let b_at = lines.iter().position(|l| l.starts_with("└── b ")).expect(&graph);
    assert!(a_at < b_at, "{graph}");
    assert!(lines[a_at].ends_with("manual"), "{graph}");
    assert!(lines[b_at].ends_with("after a"), "{graph}");
    let g: Value = tepui(&["job", "graph", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(g["edges"], json!([["a", "b"]]), "{g}");
    assert_eq!(g["nodes"][0]["id"], "a", "{g}");
    assert_eq!(g["nodes"][1]["layer"], 1, "{g}");
    assert_eq!(g["nodes"][0]["disabled"], false, "{g}");

    // Disabled, shown so, and enabled again.
    let said = tepui(&["job", "disable", "a", "--addr", &addr]).ok().stdout;
    assert_eq!(said.trim(), "job a disabled");
    let row = ls_row(&addr, "a");
    assert!(row.contains("disabled"), "{row}");
    assert!(ls_row(&addr, "b").contains("enabled"));
    let shown: Value = tepui(&["job", "show", "a", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(shown["disabled"], true, "{shown}");
    assert_eq!(
        shown["run"]["cmd"], "echo hello-from-a",
        "the rest of the job is kept: {shown}"
    );
    let graph = tepui(&["job", "graph", "--addr", &addr]).ok().stdout;
    assert!(
        graph.lines().any(|l| l.starts_with("a ") && l.ends_with("[disabled]")),
        "{graph}"
    );
    let listed: Value = tepui(&["job", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(listed[0]["disabled"], true, "{listed}");
    let said = tepui(&["job", "enable", "a", "--addr", &addr]).ok().stdout;
    assert_eq!(said.trim(), "job a enabled");
    assert!(ls_row(&addr, "a").contains("enabled"));
    let shown: Value = tepui(&["job", "show", "a", "-o", "json", "--addr", &addr]).ok().json();
    assert_ne!(shown["disabled"], true, "{shown}");
    let unknown = tepui(&["job", "disable", "nope", "--addr", &addr]);
    assert_refused(&unknown, "Job not found");

    // No run yet: no logs.
    assert_refused(&tepui(&["job", "logs", "a", "--addr", &addr]), "job a has no run yet");

    // Run to the end, followed on the task events; then b, after a.
    let ran = tepui(&["job", "run", "a", "--wait", "--addr", &addr]).ok();
    assert!(ran.stdout.contains(": SUCCESS"), "{ran}");
    assert!(
        ran.stderr.contains("started") && ran.stderr.contains("SUCCESS"),
        "{ran}"
    );
    let run_a = ran
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("run RUN of a: SUCCESS")
        .to_string();
    wait_for("b to run after a", START, || match successes(&addr, "b")? {
        1 => Ok(()),
        n => Err(format!("b succeeded {n} times")),
    });
    let ran_json: Value = tepui(&["job", "run", "a", "--wait", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(ran_json["status"], "SUCCESS", "{ran_json}");
    wait_for("b to run after a again", START, || match successes(&addr, "b")? {
        2 => Ok(()),
        n => Err(format!("b succeeded {n} times")),
    });

    // The newest run's output, and a given run's.
    let logs = tepui(&["job", "logs", "a", "--addr", &addr]).ok().stdout;
    assert_eq!(logs.trim(), "hello-from-a", "{logs}");
    let logs = tepui(&["job", "logs", "a", &run_a, "--addr", &addr]).ok().stdout;
    assert_eq!(logs.trim(), "hello-from-a", "{logs}");
    let logs = tepui(&["job", "logs", "a", "--follow", "--addr", &addr]).ok().stdout;
    assert_eq!(logs.trim(), "hello-from-a", "a followed task that ended: {logs}");

    // A long run, started without waiting, then stopped.
    add(r#"{"id": "long", "run": {"cmd": "sleep 600", "cpus": 0.1, "mem": 32}}"#).ok();
    assert_refused(
        &tepui(&["job", "stop", "long", "--addr", &addr]),
        "job long has no active run",
    );
    assert_refused(&tepui(&["job", "stop", "nope", "--addr", &addr]), "Job not found");
    let started = tepui(&["job", "run", "long", "--addr", &addr]).ok().stdout;
    assert!(
        started.starts_with("run ") && started.trim().ends_with(" of long started"),
        "{started}"
    );
    let run_long = started.split_whitespace().nth(1).unwrap().to_string();
    let task = format!("long.{run_long}.1");
    wait_running(&addr, &task);
    let stopped = tepui(&["job", "stop", "long", "--addr", &addr]).ok().stdout;
    assert_eq!(stopped.trim(), format!("run {run_long} of long stopped"));
    assert_eq!(wait_ended(&addr, &task), "TASK_KILLED");
    let h: Value = tepui(&["job", "history", "long", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(h["failureCount"], 1, "{h}");
    assert_eq!(h["failedFinishedRuns"][0]["id"], run_long.as_str(), "{h}");
    assert_refused(
        &tepui(&["job", "stop", "long", "--addr", &addr]),
        "job long has no active run",
    );

    // A run followed with --wait ends when it is stopped: FAILED, exit 1.
    let waiting = {
        let addr = addr.clone();
        std::thread::spawn(move || tepui(&["job", "run", "long", "--wait", "--addr", &addr]))
    };
    let second = wait_for("the second run of long to run", START, || {
        let tasks: Vec<Value> = tepui(&["task", "ls", "-o", "json", "--addr", &addr]).try_json()?;
        tasks
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["id"].as_str())
            .find(|id| id.starts_with("long.") && *id != task)
            .map(str::to_string)
            .ok_or_else(|| "not running yet".to_string())
    });
    let run_second = second
        .strip_prefix("long.")
        .and_then(|r| r.strip_suffix(".1"))
        .expect("JOB.RUN.1")
        .to_string();
    let stopped = tepui(&["job", "stop", "long", &run_second, "-o", "json", "--addr", &addr])
        .ok()
        .json::<Value>();
    assert_eq!(stopped, json!([{"jobId": "long", "id": run_second}]));
    let waited = waiting.join().expect("the waiting command ran");
    assert_eq!(waited.code, 1, "{waited}");
    assert!(
        waited.stdout.trim() == format!("run {run_second} of long: FAILED"),
        "{waited}"
    );
    assert_eq!(wait_ended(&addr, &second), "TASK_KILLED");

    // A run with arguments of its own: each reaches the task as one argument (at the end of
    // its shell command, quoted: nothing in them is read as shell syntax), and the next run
    // has none.
    add(r#"{"id": "say", "run": {"cmd": "printf '[%s]' job", "cpus": 0.1, "mem": 32}}"#).ok();
    let ran = tepui(&[
        "job", "run", "say", "--arg", "a", "--arg", "b c", "--arg", "-x", "--arg", "it's", "--arg", "$HOME", "--wait",
        "--addr", &addr,
    ])
    .ok();
    assert!(ran.stdout.contains(": SUCCESS"), "{ran}");
    let logs = tepui(&["job", "logs", "say", "--addr", &addr]).ok().stdout;
    assert_eq!(logs.trim(), "[job][a][b c][-x][it's][$HOME]", "{logs}");
    let plain: Value = tepui(&["job", "run", "say", "--wait", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(plain["status"], "SUCCESS", "{plain}");
    let logs = tepui(&["job", "logs", "say", "--addr", &addr]).ok().stdout;
    assert_eq!(logs.trim(), "[job]", "{logs}");
    assert_refused(
        &tepui(&["job", "run", "nope", "--arg", "a", "--addr", &addr]),
        "Job 'nope' not found",
    );

    for id in ["b", "a", "long", "say"] {
        let said = tepui(&["job", "rm", id, "--addr", &addr]).ok().stdout;
        assert!(said.contains(&format!("job {id} removed")), "{said}");
    }
    let listed: Value = tepui(&["job", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(listed, json!([]));
    assert_refused(
        &tepui(&["job", "graph", "-o", "json", "--addr", "127.0.49.1:1"]),
        "cannot reach",
    );
}
