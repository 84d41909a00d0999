//! A run whose agent is lost is retried per its policy: two runs start on agent a1 (one of a
//! job that retries on failure, one of a job that never does), a second agent joins, and a1
//! stops answering (SIGSTOP: its tasks go on, as in a partition). Once a1 is marked lost,
//! the retrying run's next attempt runs on a2 and succeeds, and the other run fails, saying
//! why. When a1 comes back (SIGCONT), the attempts it still runs are killed: no run ends
//! with two attempts running. Checked from the history, the tasks, what the tasks wrote and
//! the processes that are left.
//!
//! Runs a server on 127.0.53.1 and agents on 127.0.53.2-3 (ports 35300-35339, bridges
//! `tpe2e-jla1` and `tpe2e-jla2`); needs root.

use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{
    http_addr, need_root, process_env, spawn_agent, spawn_servers, tepui, wait_for, MarkedProcesses, Sandbox,
    MARKER_VAR,
};

const SERVER_IP: &str = "127.0.53.1";
const A1_IP: &str = "127.0.53.2";
const A2_IP: &str = "127.0.53.3";
const START: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(60);

fn json_of(addr: &str, args: &[&str]) -> Result<Value, String> {
    let mut full = args.to_vec();
    full.extend(["-o", "json", "--addr", addr]);
    tepui(&full).try_json()
}

fn task(addr: &str, id: &str) -> Result<Value, String> {
    json_of(addr, &["task", "show", id])
}

fn node_status(addr: &str, name: &str) -> Result<String, String> {
    let nodes = json_of(addr, &["node", "ls"])?;
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == name)
        .and_then(|n| n["status"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no node {name}: {nodes}"))
}

/// `GET path` on the API at `addr`, as JSON.
fn get_json(addr: &str, path: &str) -> Result<Value, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = tepui_e2e::http_client()
            .build()
            .map_err(|e| e.to_string())?
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.json::<Value>().await.map_err(|e| e.to_string())
    })
}

/// The ids of the tasks `framework` has in Mesos' `/master/state`.
fn master_state_tasks(addr: &str, framework: &str) -> Result<Vec<String>, String> {
    let state = get_json(addr, "/master/state")?;
    let fw = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["id"] == framework)
        .ok_or_else(|| format!("{framework} is not in /master/state: {state}"))?;
    let mut ids: Vec<String> = fw["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let done = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(done.success(), "kill {signal} {pid}");
}

/// The ids of the tasks whose processes run now (the marked ones).
fn running_attempts(marked: &MarkedProcesses) -> Vec<String> {
    let mut ids: Vec<String> = marked
        .pids()
        .into_iter()
        .filter_map(|pid| process_env(pid, "TEPUI_TASK_ID"))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn a_run_whose_agent_is_lost_is_retried_elsewhere_or_fails_per_its_policy() {
    need_root();
    let marked = MarkedProcesses::new("job-lost-agent");
    let sb = Sandbox::new("job-lost-agent");
    let _servers = spawn_servers(&sb, &[SERVER_IP], &["--agent-timeout-secs", "3"], START);
    let out = sb.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Host tasks run as an unprivileged user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_arg = out.display().to_string();
    let agent = |name: &str, ip: &str, ports: &str, bridge: &str, subnet: &str| {
        spawn_agent(
            &sb,
            SERVER_IP,
            name,
            ip,
            &[
                "--ports",
                ports,
                "--bridge",
                bridge,
                "--bridge-subnet",
                subnet,
                "--allow-host-volume",
                &out_arg,
            ],
            START,
        )
    };
    let mut a1 = agent("a1", A1_IP, "35300-35319", "tpe2e-jla1", "10.214.53.0/24");
    let addr = http_addr(SERVER_IP);

    // The first attempt of each run waits (as long as the test); a later one succeeds.
    let log = out.join("attempts");
    let job = |id: &str, policy: &str| {
        json!({"id": id, "run": {
            "cmd": format!("echo $TEPUI_TASK_ID >> {}; case $TEPUI_TASK_ID in *.1) exec sleep 600;; esac", log.display()),
            "cpus": 0.1, "mem": 32,
            "env": {MARKER_VAR: marked.value()},
            "restart": {"policy": policy},
            "volumes": [{"containerPath": out_arg, "hostPath": out_arg, "mode": "RW"}]}})
    };
    let mut runs = Vec::new();
    for (id, policy) in [("retrying", "ON_FAILURE"), ("once", "NEVER")] {
        let file = sb.join(format!("{id}.json"));
        std::fs::write(&file, job(id, policy).to_string()).unwrap();
        tepui(&["job", "add", &file.display().to_string(), "--addr", &addr]).ok();
        let run = json_of(&addr, &["job", "run", id]).unwrap();
        runs.push((id, run["id"].as_str().unwrap().to_string()));
    }
    let first = |job: &str, run: &str| format!("{job}.{run}.1");
    for (job, run) in &runs {
        wait_for(&format!("{job}'s first attempt to run on a1"), CONVERGE, || {
            let t = task(&addr, &first(job, run))?;
            match (t["state"].as_str(), t["agent_name"].as_str()) {
                (Some("TASK_RUNNING"), Some("a1")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    // The runs' tasks are the jobs framework's, in role `*`: listed under it, in tepui's
    // views and in Mesos', and held in the role.
    let fws = json_of(&addr, &["framework", "ls"]).unwrap();
    let jobs_fw = fws
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["id"] == "tepui-jobs")
        .cloned()
        .unwrap_or_else(|| panic!("no jobs framework: {fws}"));
    assert_eq!(
        (
            jobs_fw["tasks"].as_u64(),
            jobs_fw["connected"].as_bool(),
            jobs_fw["mem_mb"].as_u64()
        ),
        (Some(2), Some(true), Some(64)),
        "{jobs_fw}"
    );
    let roles = json_of(&addr, &["role", "ls"]).unwrap();
    let star = roles
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "*")
        .cloned()
        .unwrap_or_else(|| panic!("no role *: {roles}"));
    assert!(
        star["frameworks"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("tepui-jobs")))
            && star["mem_mb"].as_u64() >= Some(64),
        "{star}"
    );
    let mut firsts: Vec<String> = runs.iter().map(|(job, run)| first(job, run)).collect();
    firsts.sort();
    assert_eq!(master_state_tasks(&addr, "tepui-jobs"), Ok(firsts));
    let listed = get_json(&addr, "/master/frameworks?framework_id=tepui-jobs").unwrap();
    assert_eq!(
        listed["frameworks"][0]["tasks"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    let _a2 = agent("a2", A2_IP, "35320-35339", "tpe2e-jla2", "10.214.63.0/24");

    // a1 stops answering; its tasks go on.
    let a1_pid = a1.pid().expect("a1 runs");
    signal(a1_pid, "-STOP");
    wait_for("a1 to be marked lost", CONVERGE, || match node_status(&addr, "a1")? {
        s if s == "lost" => Ok(()),
        s => Err(s),
    });

    // The retrying run's next attempt runs on a2 and succeeds.
    let (retrying, retry_run) = &runs[0];
    let history = wait_for("the retrying run to succeed", CONVERGE, || {
        let h = json_of(&addr, &["job", "history", retrying])?;
        match h["successCount"].as_u64() {
            Some(1) => Ok(h),
            _ => Err(h.to_string()),
        }
    });
    let done = &history["successfulFinishedRuns"][0];
    assert_eq!(done["id"], retry_run.as_str(), "{history}");
    let second = format!("{retrying}.{retry_run}.2");
    assert_eq!(done["tasks"], json!([first(retrying, retry_run), second]), "{history}");
    let t = task(&addr, &second).unwrap();
    assert_eq!(
        (t["agent_name"].as_str(), t["state"].as_str()),
        (Some("a2"), Some("TASK_FINISHED")),
        "{t}"
    );
    // The lost attempt is to be killed.
    let lost = task(&addr, &first(retrying, retry_run)).unwrap();
    assert_eq!(lost["state"], "TASK_KILLING", "{lost}");

    // The run that never retries failed, and its history says why.
    let (once, once_run) = &runs[1];
    let history = wait_for("the other run to fail", CONVERGE, || {
        let h = json_of(&addr, &["job", "history", once])?;
        match h["failureCount"].as_u64() {
            Some(1) => Ok(h),
            _ => Err(h.to_string()),
        }
    });
    let failed = &history["failedFinishedRuns"][0];
    assert_eq!(failed["id"], once_run.as_str(), "{history}");
    assert_eq!(
        failed["tasks"],
        json!([first(once, once_run)]),
        "one attempt only: {history}"
    );
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("agent a1 was lost")),
        "{history}"
    );
    assert_eq!(history["successCount"], 0, "{history}");

    // a1 comes back: the attempts it still runs are killed, nothing is started again.
    signal(a1_pid, "-CONT");
    wait_for("a1 to be ready again", CONVERGE, || match node_status(&addr, "a1")? {
        s if s == "ready" => Ok(()),
        s => Err(s),
    });
    for (job, run) in &runs {
        wait_for(&format!("{job}'s lost attempt to be killed"), CONVERGE, || {
            let t = task(&addr, &first(job, run))?;
            match t["state"].as_str() {
                Some("TASK_KILLED") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    wait_for("no attempt's process to be left", CONVERGE, || {
        match running_attempts(&marked) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("{left:?}")),
        }
    });
    for job in ["retrying", "once"] {
        let active = json_of(&addr, &["job", "history", job]).unwrap();
        assert_eq!(
            active["successCount"].as_u64().unwrap() + active["failureCount"].as_u64().unwrap(),
            1
        );
    }
    // What the tasks wrote: each attempt once, the retried run's two, the other's one.
    let written = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = written.lines().collect();
    lines.sort_unstable();
    let mut want = vec![first(retrying, retry_run), second.clone(), first(once, once_run)];
    want.sort();
    assert_eq!(lines, want, "{written}");
    a1.kill();
}
