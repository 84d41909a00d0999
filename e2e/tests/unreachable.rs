//! Agents in trouble and in maintenance.
//!
//! An agent that goes silent (its process stopped, its connection still open) is marked lost
//! and its tasks TASK_UNREACHABLE; the task itself keeps running under its shim. When the agent
//! comes back, the leader has closed its old stream, the agent registers again with its tasks,
//! and they are TASK_RUNNING again. Runs on 127.0.15.x; needs root for containers.

use std::time::Duration;

use tepui_api::{NodeView, TaskView};
use tepui_e2e::{cluster_addr, http_addr, read_token, tepui, wait_for, Sandbox};

const SERVER_IP: &str = "127.0.15.1";
const AGENT_IP: &str = "127.0.15.2";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(20);

fn task(addr: &str, id: &str) -> Result<TaskView, String> {
    tepui(&["task", "show", id, "--addr", addr, "-o", "json"]).try_json()
}

fn node_status(addr: &str, name: &str) -> Result<String, String> {
    let nodes: Vec<NodeView> = tepui(&["node", "ls", "--addr", addr, "-o", "json"]).try_json()?;
    nodes
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.status)
        .ok_or_else(|| format!("no node {name}"))
}

fn wait_task_state(addr: &str, id: &str, want: &str) -> TaskView {
    wait_for(&format!("task {id} to be {want}"), SETTLE, || {
        let t = task(addr, id)?;
        if t.state == want {
            Ok(t)
        } else {
            Err(format!("{} ({})", t.state, t.message))
        }
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this test started and a plain signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

#[test]
fn silent_agents_and_agents_in_maintenance() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs containers and needs root");
    }
    let sb = Sandbox::new("unreachable");
    let addr = http_addr(SERVER_IP);
    let s1_dir = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &s1_dir,
            "--bind",
            SERVER_IP,
            "--name",
            "s1",
            "--agent-timeout-secs",
            "2",
        ],
    );
    server.wait_ready(START);
    let token = read_token(&sb.join("s1"), "agent");
    let a1_dir = sb.join("a1").display().to_string();
    let mut agent = sb.spawn(
        "a1",
        &[
            "join",
            &cluster_addr(SERVER_IP),
            "--token",
            &token,
            "--data-dir",
            &a1_dir,
            "--bind",
            AGENT_IP,
            "--name",
            "a1",
            "--ports",
            "32000-32010",
            "--heartbeat-secs",
            "0.3",
            "--bridge",
            "tpe2e-unr",
            "--bridge-subnet",
            "10.214.15.0/24",
        ],
    );
    agent.wait_ready(START);

    let t: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "--addr",
        &addr,
        "-o",
        "json",
        "--",
        "/bin/sleep",
        "1000",
    ])
    .ok()
    .json();
    wait_task_state(&addr, &t.id, "TASK_RUNNING");

    // Stopped, the agent neither heartbeats nor closes its connection: a silent partition.
    let pid = agent.pid().expect("the agent runs");
    signal(pid, libc::SIGSTOP);
    let unreachable = wait_task_state(&addr, &t.id, "TASK_UNREACHABLE");
    assert_eq!(
        unreachable.reason.as_deref(),
        Some("REASON_SLAVE_REMOVED"),
        "{unreachable:?}"
    );
    assert_eq!(node_status(&addr, "a1").as_deref(), Ok("lost"));

    signal(pid, libc::SIGCONT);
    let back = wait_task_state(&addr, &t.id, "TASK_RUNNING");
    assert_eq!(back.reason.as_deref(), Some("REASON_RECONCILIATION"), "{back:?}");
    wait_for("the agent to be ready again", SETTLE, || {
        match node_status(&addr, "a1") {
            Ok(s) if s == "ready" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // The container never stopped: exec still reaches the same sleep.
    let out = tepui(&[
        "task",
        "exec",
        &t.id,
        "--addr",
        &addr,
        "--",
        "/bin/sh",
        "-c",
        "echo alive",
    ])
    .ok();
    assert_eq!(out.stdout, "alive\n");

    tepui(&["task", "kill", &t.id, "--addr", &addr]).ok();
    wait_task_state(&addr, &t.id, "TASK_KILLED");

    // Maintenance. Deactivated: running tasks stay, no new ones.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "task",
            "run",
            "--host",
            "--kill-grace",
            "1",
            "--addr",
            &addr,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/bin/sleep", "1000"]);
        tepui(&args)
    };
    let keeps: TaskView = run(&[]).ok().json();
    wait_task_state(&addr, &keeps.id, "TASK_RUNNING");
    tepui(&["node", "deactivate", "a1", "--addr", &addr]).ok();
    let refused = run(&["--agent", "a1"]);
    assert!(!refused.success(), "a deactivated agent takes no task: {refused}");
    assert!(refused.stderr.contains("maintenance"), "{refused}");
    assert_eq!(task(&addr, &keeps.id).map(|t| t.state).as_deref(), Ok("TASK_RUNNING"));
    tepui(&["node", "reactivate", "a1", "--addr", &addr]).ok();
    let second: TaskView = run(&["--agent", "a1"]).ok().json();
    wait_task_state(&addr, &second.id, "TASK_RUNNING");

    // A task that ignores SIGTERM and has ten minutes to stop: the drain's deadline cuts that.
    let stubborn: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "--kill-grace",
        "600",
        "--addr",
        &addr,
        "-o",
        "json",
        "--",
        "/bin/sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
    ])
    .ok()
    .json();
    wait_task_state(&addr, &stubborn.id, "TASK_RUNNING");

    // Drained: every task killed, then the agent is drained and takes nothing new.
    let drained = tepui(&["node", "drain", "a1", "--deadline", "1s", "--addr", &addr, "-o", "json"]).ok();
    assert!(
        drained.stdout.contains("draining") || drained.stdout.contains("drained"),
        "{drained}"
    );
    wait_task_state(&addr, &keeps.id, "TASK_KILLED");
    wait_task_state(&addr, &second.id, "TASK_KILLED");
    wait_task_state(&addr, &stubborn.id, "TASK_KILLED");
    wait_for("the agent to be drained", SETTLE, || {
        let nodes: Vec<NodeView> = tepui(&["node", "ls", "--addr", &addr, "-o", "json"]).try_json()?;
        match nodes.iter().find(|n| n.name == "a1").map(|n| n.maintenance.as_str()) {
            Some("drained") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(!run(&[]).success(), "no agent is left to take a task");
    tepui(&["node", "reactivate", "a1", "--addr", &addr]).ok();
    let after: TaskView = run(&[]).ok().json();
    wait_task_state(&addr, &after.id, "TASK_RUNNING");
    tepui(&["task", "kill", &after.id, "--addr", &addr]).ok();
    wait_task_state(&addr, &after.id, "TASK_KILLED");
}
