//! `tepui app ...` and `tepui deployment ...` as a user runs them, against a real server and
//! agent: what each verb prints (tables and `-o json`) and what it does to the running
//! processes.
//!
//! - `app run`, `show`, `scale`, `update`, `restart`, `rollback` (to a named version and to the
//!   one before) on an app of `sleep`s that carry its environment, so the processes themselves
//!   say which definition runs;
//! - `deployment ls`, `watch` and `rm` on a deployment that cannot finish (its instances ask for
//!   more cpus than the agent has): `rm` rolls it back and the watch exits 1, `rm --force` just
//!   stops it;
//! - `deployment watch` of a deployment that ends well exits 0: its app has a TCP health check
//!   on a port this test opens when it wants the check to pass; closing it again gets the
//!   instance killed and replaced;
//! - `deployment watch` of a deployment that runs into its deadline (`--deployment-timeout`)
//!   exits 1 with the reason.
//!
//! Runs on 127.0.42.x with ports 33060-33089; needs root.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{
    bootstrap_server, http_addr, need_root, process_env, spawn_agent, wait_for, Daemon, MarkedProcesses, Output,
    Sandbox, MARKER_VAR,
};

const SERVER_IP: &str = "127.0.42.1";
const AGENT_IP: &str = "127.0.42.2";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
/// Long enough for a deployment of `sleep`s; `--wait` follows it to the end.
const WAIT: Duration = Duration::from_secs(90);

/// `tepui ARGS... --addr ADDR`.
fn cli(addr: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--addr", addr]);
    tepui_e2e::tepui_with_timeout(&all, WAIT)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_string()
}

fn show(addr: &str, id: &str) -> Value {
    cli(addr, &["app", "show", id, "-o", "json"]).ok().json()
}

fn task_ids(app: &Value) -> BTreeSet<String> {
    app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| s(&t["id"]))
        .collect()
}

/// Waits until exactly the processes `want` (their `COLOR`s, sorted) run.
fn wait_colors(marked: &MarkedProcesses, want: &[&str]) {
    wait_for(&format!("processes of colors {want:?}"), SETTLE, || {
        let mut now: Vec<String> = marked
            .pids()
            .into_iter()
            .map(|pid| process_env(pid, "COLOR").unwrap_or_default())
            .collect();
        now.sort();
        if now == want {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
}

/// The deployments `tepui deployment ls -o json` lists, by id.
fn deployment_ids(addr: &str) -> Vec<String> {
    let list: Vec<Value> = cli(addr, &["deployment", "ls", "-o", "json"]).ok().json();
    list.iter().map(|d| s(&d["id"])).collect()
}

/// Starts `tepui deployment watch ID` in the background and waits until it printed a step.
fn spawn_watch(sb: &Sandbox, addr: &str, name: &str, id: &str, json: bool) -> Daemon {
    let mut args = vec!["deployment", "watch", id, "--addr", addr];
    if json {
        args.extend(["-o", "json"]);
    }
    let mut watch = sb.spawn(name, &args);
    wait_for(&format!("{name} to follow {id}"), SETTLE, || {
        if let Some(status) = watch.exited() {
            panic!("{name} exited ({status}) at once: {}", watch.stderr());
        }
        if watch.stderr().contains(&format!("deployment {id}: step ")) {
            Ok(())
        } else {
            Err(watch.stderr())
        }
    });
    watch
}

/// Waits for a background watch to exit; returns its code.
fn watch_exit(watch: &mut Daemon) -> i32 {
    let status = wait_for("the watch to exit", SETTLE, || watch.exited().ok_or("still running"));
    status.code().unwrap_or(-1)
}

#[test]
fn app_and_deployment_verbs_do_what_they_say() {
    need_root();
    let marked = MarkedProcesses::new("app-cli");
    let marker = format!("{MARKER_VAR}={}", marked.value());
    let sb = Sandbox::new("app-cli");
    let dir = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &dir,
            "--bind",
            SERVER_IP,
            "--name",
            "s1",
        ],
    );
    server.wait_ready(START);
    let _agent = spawn_agent(
        &sb,
        SERVER_IP,
        "a1",
        AGENT_IP,
        &[
            "--cpus",
            "2",
            "--mem",
            "1024",
            "--ports",
            "33060-33079",
            "--heartbeat-secs",
            "0.5",
        ],
        START,
    );
    let addr = http_addr(SERVER_IP);

    // run --wait: the deployment's start and end, in words.
    let run = cli(
        &addr,
        &[
            "app",
            "run",
            "--name",
            "/cli/web",
            "--cmd",
            "exec sleep 1000",
            "--cpus",
            "0.1",
            "--mem",
            "16",
            "-e",
            &marker,
            "-e",
            "COLOR=blue",
            "--wait",
        ],
    )
    .ok();
    let first = run.stdout.lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("deployment ") && first.contains(" started for /cli/web (version "),
        "{run}"
    );
    let deployment = first.split_whitespace().nth(1).unwrap().to_string();
    assert!(run.stdout.contains(&format!("deployment {deployment} done")), "{run}");
    wait_colors(&marked, &["blue"]);

    // show: the app's row and its instance's, and the same as JSON.
    let app = show(&addr, "/cli/web");
    assert_eq!(
        (app["id"].as_str(), app["instances"].as_u64()),
        (Some("/cli/web"), Some(1))
    );
    assert_eq!(app["env"]["COLOR"], "blue", "{app}");
    assert_eq!(app["tasks"].as_array().map(Vec::len), Some(1), "{app}");
    let task = &app["tasks"][0];
    assert_eq!(
        (task["state"].as_str(), task["host"].as_str()),
        (Some("TASK_RUNNING"), Some("a1"))
    );
    let v1 = s(&app["version"]);
    let table = cli(&addr, &["app", "show", "cli/web"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("RUNNING"), "{table}");
    assert!(
        lines[1].starts_with("/cli/web") && lines[1].contains("1/1") && lines[1].contains(&v1),
        "{table}"
    );
    assert!(lines[2].starts_with("TASK") && lines[2].contains("STATE"), "{table}");
    assert!(
        lines[3].starts_with(&s(&task["id"])) && lines[3].contains("RUNNING") && lines[3].contains("a1"),
        "{table}"
    );
    let missing = cli(&addr, &["app", "show", "/cli/nothing"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert_eq!(missing.stderr_lines().len(), 1, "one error line: {missing}");
    assert!(missing.stderr.contains("does not exist"), "{missing}");

    // scale: more instances of the same version; the running one stays.
    let scaled: Value = cli(&addr, &["app", "scale", "/cli/web", "3", "--wait", "-o", "json"])
        .ok()
        .json();
    assert_eq!(scaled["result"], "success", "{scaled}");
    assert_eq!(scaled["apps"], json!(["/cli/web"]), "{scaled}");
    let app = show(&addr, "/cli/web");
    assert_eq!(app["tasksRunning"], 3, "{app}");
    assert!(
        task_ids(&app).contains(&s(&task["id"])),
        "scaling keeps the instance: {app}"
    );
    wait_colors(&marked, &["blue", "blue", "blue"]);

    // update: a new environment replaces every instance.
    let before = task_ids(&app);
    let updated = cli(&addr, &["app", "update", "/cli/web", "-e", "COLOR=green", "--wait"]).ok();
    assert!(updated.stdout.contains(" started for /cli/web"), "{updated}");
    assert!(updated.stdout.trim_end().ends_with(" done"), "{updated}");
    let app = show(&addr, "/cli/web");
    assert_eq!(app["env"]["COLOR"], "green", "{app}");
    assert_eq!(
        app["env"][MARKER_VAR],
        marked.value(),
        "update keeps the other variables"
    );
    assert!(task_ids(&app).is_disjoint(&before), "{app}");
    wait_colors(&marked, &["green", "green", "green"]);

    // restart: the same definition, every instance replaced.
    let before = task_ids(&app);
    let restarted: Value = cli(&addr, &["app", "restart", "/cli/web", "--wait", "-o", "json"])
        .ok()
        .json();
    assert_eq!(restarted["result"], "success", "{restarted}");
    let app = show(&addr, "/cli/web");
    assert_eq!(app["tasksRunning"], 3, "{app}");
    assert!(task_ids(&app).is_disjoint(&before), "{app}");
    wait_colors(&marked, &["green", "green", "green"]);

    // rollback --to the first version: one blue instance again, under a new version.
    let before = task_ids(&app);
    let rolled = cli(&addr, &["app", "rollback", "/cli/web", "--to", &v1, "--wait"]).ok();
    assert!(rolled.stdout.trim_end().ends_with(" done"), "{rolled}");
    let app = show(&addr, "/cli/web");
    assert_eq!(
        (app["instances"].as_u64(), app["env"]["COLOR"].as_str()),
        (Some(1), Some("blue"))
    );
    assert_ne!(s(&app["version"]), v1, "a rollback is a new version");
    assert_eq!(app["tasks"][0]["version"], app["versionInfo"]["lastConfigChangeAt"]);
    assert!(task_ids(&app).is_disjoint(&before), "{app}");
    wait_colors(&marked, &["blue"]);
    // rollback without --to: the version before the current one (the restarted green three).
    let versions = wait_for("the versions", SETTLE, || {
        let v = tepui_e2e::marathon::Marathon::new(&addr).get("/v2/apps/cli/web/versions")?;
        Ok::<_, String>(v["versions"].as_array().cloned().unwrap_or_default())
    });
    let before_last = s(&versions[1]);
    let rolled = cli(&addr, &["app", "rollback", "/cli/web"]).ok();
    assert_eq!(
        rolled.stderr.trim(),
        format!("app /cli/web goes back to version {before_last}"),
        "{rolled}"
    );
    assert!(rolled.stdout.starts_with("deployment "), "{rolled}");
    wait_colors(&marked, &["green", "green", "green"]);
    wait_for("the rollback to end", SETTLE, || {
        match deployment_ids(&addr).as_slice() {
            [] => Ok(()),
            ids => Err(format!("{ids:?}")),
        }
    });
    let bogus = cli(
        &addr,
        &["app", "rollback", "/cli/web", "--to", "2001-01-01T00:00:00.000Z"],
    );
    assert_eq!(bogus.code, 1, "{bogus}");
    assert!(bogus.stderr.contains("has no version"), "{bogus}");
    let app = show(&addr, "/cli/web");
    let green_tasks = task_ids(&app);

    // A deployment that cannot finish: 100 cpus per instance on an agent of 2.
    let stuck: Value = cli(&addr, &["app", "update", "/cli/web", "--cpus", "100", "-o", "json"])
        .ok()
        .json();
    let stuck = s(&stuck["deploymentId"]);
    assert_eq!(deployment_ids(&addr), std::slice::from_ref(&stuck));
    let table = cli(&addr, &["deployment", "ls"]).ok().stdout;
    let row = table
        .lines()
        .find(|l| l.starts_with(&stuck))
        .unwrap_or_else(|| panic!("{stuck} is not listed: {table}"));
    assert!(row.contains("/cli/web"), "{table}");
    let listed: Vec<Value> = cli(&addr, &["deployment", "ls", "-o", "json"]).ok().json();
    assert_eq!(listed[0]["affectedApps"], json!(["/cli/web"]), "{listed:?}");

    // rm: rolled back by a new deployment; its watch exits 1.
    let mut watch = spawn_watch(&sb, &addr, "watch-stuck", &stuck, false);
    let cancelled = cli(&addr, &["deployment", "rm", &stuck]).ok();
    let said = cancelled.stdout.trim();
    assert!(
        said.starts_with(&format!("deployment {stuck} cancelled; deployment ")) && said.ends_with(" rolls it back"),
        "{cancelled}"
    );
    assert_eq!(
        watch_exit(&mut watch),
        1,
        "a rolled back deployment: {}",
        watch.stderr()
    );
    let err = watch.stderr();
    assert!(err.contains("error:") && err.contains(&stuck), "{err}");
    wait_for("the rollback to end", SETTLE, || {
        match deployment_ids(&addr).as_slice() {
            [] => Ok(()),
            ids => Err(format!("{ids:?}")),
        }
    });
    let app = show(&addr, "/cli/web");
    assert_eq!(app["cpus"], 0.1, "back to the definition before: {app}");
    assert_eq!(task_ids(&app), green_tasks, "the instances never changed");

    // rm --force: the deployment stops, the app keeps what it was given.
    let stuck: Value = cli(&addr, &["app", "update", "/cli/web", "--cpus", "100", "-o", "json"])
        .ok()
        .json();
    let stuck = s(&stuck["deploymentId"]);
    let stopped: Value = cli(&addr, &["deployment", "rm", &stuck, "--force", "-o", "json"])
        .ok()
        .json();
    assert_eq!(stopped, json!({"deploymentId": stuck, "stopped": true}));
    assert_eq!(deployment_ids(&addr), Vec::<String>::new(), "nothing rolls back");
    assert_eq!(show(&addr, "/cli/web")["cpus"], 100.0);
    // The table form of a forced cancel, on one more stuck deployment.
    let stuck = cli(&addr, &["app", "update", "/cli/web", "--cpus", "99"]).ok();
    let stuck = stuck.stdout.split_whitespace().nth(1).unwrap_or_default().to_string();
    let stopped = cli(&addr, &["deployment", "rm", &stuck, "--force"]).ok();
    assert_eq!(
        stopped.stdout.trim(),
        format!("deployment {stuck} stopped; its apps stay as they are now")
    );
    let gone = cli(&addr, &["deployment", "watch", &stuck]);
    assert_eq!(gone.code, 1, "no such deployment: {gone}");
    cli(&addr, &["app", "rm", "/cli/web", "--force", "--wait"]).ok();
    wait_colors(&marked, &[]);

    // A deployment that ends well: watch exits 0 once the instance passes its TCP check.
    let definition = sb.join("gated.json");
    let gated = json!({
        "id": "/cli/gated", "instances": 1, "cpus": 0.1, "mem": 16, "cmd": "exec sleep 1000",
        "env": {MARKER_VAR: marked.value(), "COLOR": "gated"},
        "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 600,
            "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 2, "delaySeconds": 0}],
    });
    std::fs::write(&definition, gated.to_string()).unwrap();
    let created: Value = cli(&addr, &["app", "run", &definition.display().to_string(), "-o", "json"])
        .ok()
        .json();
    let pending = s(&created["deploymentId"]);
    let mut table_watch = spawn_watch(&sb, &addr, "watch-table", &pending, false);
    let mut json_watch = spawn_watch(&sb, &addr, "watch-json", &pending, true);
    let port = wait_for("the gated instance's port", SETTLE, || {
        let app = show(&addr, "/cli/gated");
        match app["tasks"][0]["ports"][0].as_u64() {
            Some(p) if app["tasks"][0]["state"] == "TASK_RUNNING" => Ok(p as u16),
            _ => Err(app.to_string()),
        }
    });
    assert!(
        table_watch.is_running() && json_watch.is_running(),
        "the check has not passed yet"
    );
    let gate = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the instance's port is free");
    assert_eq!(watch_exit(&mut table_watch), 0, "{}", table_watch.stderr());
    assert_eq!(table_watch.stdout().trim(), format!("deployment {pending} done"));
    assert_eq!(watch_exit(&mut json_watch), 0, "{}", json_watch.stderr());
    let done: Value = serde_json::from_str(&json_watch.stdout()).expect("watch -o json prints JSON");
    assert_eq!(done, json!({"deploymentId": pending, "result": "success"}));
    let app = show(&addr, "/cli/gated");
    assert_eq!(app["tasksHealthy"], 1, "{app}");
    let healthy_task = s(&app["tasks"][0]["id"]);

    // The port closes: two failed checks in a row kill the instance, and another replaces it.
    drop(gate);
    wait_for("the instance to be replaced", SETTLE, || {
        let app = show(&addr, "/cli/gated");
        let ids = task_ids(&app);
        if !ids.contains(&healthy_task) && !ids.is_empty() {
            Ok(())
        } else {
            Err(app["tasks"].to_string())
        }
    });
    cli(&addr, &["app", "rm", "/cli/gated", "--force", "--wait"]).ok();
    wait_colors(&marked, &[]);
}

#[test]
fn deployment_watch_exits_1_when_the_deadline_rolls_a_deployment_back() {
    need_root();
    let marked = MarkedProcesses::new("app-cli-deadline");
    let sb = Sandbox::new("app-cli-deadline");
    let server_ip = "127.0.42.11";
    let _server = bootstrap_server(&sb, server_ip, &["--deployment-timeout", "6s"]);
    let _agent = spawn_agent(
        &sb,
        server_ip,
        "a1",
        "127.0.42.12",
        &[
            "--cpus",
            "2",
            "--mem",
            "1024",
            "--ports",
            "33080-33089",
            "--heartbeat-secs",
            "0.5",
        ],
        START,
    );
    let addr = http_addr(server_ip);

    // An app that asks for more cpus than there are: its deployment runs into its deadline.
    let marker = format!("{MARKER_VAR}={}", marked.value());
    let run: Value = cli(
        &addr,
        &[
            "app",
            "run",
            "--name",
            "/late",
            "--cmd",
            "exec sleep 1000",
            "--cpus",
            "100",
            "--mem",
            "16",
            "-e",
            &marker,
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    let late = s(&run["deploymentId"]);
    let mut watch = spawn_watch(&sb, &addr, "watch-late", &late, false);
    assert_eq!(watch_exit(&mut watch), 1, "{}", watch.stderr());
    let err = watch.stderr();
    assert!(
        err.contains(&format!("error: deployment {late} failed: ")) && err.contains("deadline"),
        "{err}"
    );
    // While it waited it said why the instance did not fit, and when it would give up.
    assert!(
        err.contains("1 instance(s) of /late waiting: ") && err.contains("cpus"),
        "{err}"
    );
    assert!(err.contains("rolls back at "), "{err}");
    assert!(watch.stdout().is_empty(), "no success line: {}", watch.stdout());
    // Rolling back a creation removes the app.
    wait_for("the app to be gone", SETTLE, || {
        let out = cli(&addr, &["app", "show", "/late"]);
        if out.code == 1 && out.stderr.contains("does not exist") {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    assert!(marked.pids().is_empty());
}
