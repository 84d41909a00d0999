//! `tepui dev`, the README's first command: server and agent in one process. It prints what the
//! README says (data dir, API address, join tokens), answers its health check, shows itself as
//! one `server+agent` node in `tepui status` and `tepui node ls`, runs a task on the host's
//! filesystem and one from an imported image to their end, stops cleanly on SIGTERM, and comes
//! back on the same data dir as the same cluster, with a task that outlived it.
//!
//! Runs on 127.0.40.1 with ports 33000-33019 and the bridge `tpe2e-dev`; needs root and
//! busybox-static (e2e/setup.sh).

use std::time::Duration;

use serde_json::Value;
use tepui_api::{NodeView, StatusView, TaskView};
use tepui_e2e::marathon::Marathon;
use tepui_e2e::{http_addr, need_root, read_token, tepui, wait_for, MarkedProcesses, Sandbox, MARKER_VAR};
use tepui_image::testimage::{build_docker_archive, require_busybox};

const IP: &str = "127.0.40.1";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
const IMAGE: &str = "tepui-e2e/busybox:dev";

fn show(addr: &str, id: &str) -> Result<TaskView, String> {
    tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()
}

/// Waits until task `id` is in `state`, failing at once if it ends in another.
fn wait_state(addr: &str, id: &str, state: &str) -> TaskView {
    wait_for(&format!("task {id} to be {state}"), SETTLE, || {
        let t = show(addr, id)?;
        if t.state == state {
            return Ok(t);
        }
        let ended = ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST"];
        assert!(!ended.contains(&t.state.as_str()), "task {id} ended otherwise: {t:?}");
        Err(format!("{} ({})", t.state, t.message))
    })
}

fn logs(addr: &str, id: &str) -> String {
    tepui(&["task", "logs", id, "--addr", addr]).ok().stdout
}

#[test]
fn tepui_dev_is_a_one_node_cluster_that_runs_tasks_and_restarts() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let marked = MarkedProcesses::new("dev");
    let sb = Sandbox::new("dev");
    let data = sb.join("data");
    let data_arg = data.display().to_string();
    let args = [
        "dev",
        "--data-dir",
        &data_arg,
        "--bind",
        IP,
        "--name",
        "dev1",
        "--cpus",
        "2",
        "--mem",
        "1024",
        "--ports",
        "33000-33019",
        "--bridge",
        "tpe2e-dev",
        "--bridge-subnet",
        "10.214.40.0/24",
        "--heartbeat-secs",
        "0.5",
    ];
    // A descriptor the daemon inherits (its launcher's lock, say) must not reach the shims,
    // which outlive it: the write end of a pipe, open across exec, stands in for one.
    let (inherited_read, inherited_write) = inheritable_pipe();
    let mut dev = sb.spawn("dev", &args);
    dev.wait_ready(START);
    let addr = http_addr(IP);

    // What the README says it prints, and the tokens it leaves in the data dir.
    let out = dev.stdout();
    assert!(out.contains(&format!("data dir:     {data_arg}")), "{out}");
    assert!(out.contains(&format!("http api:     http://{addr}")), "{out}");
    for role in ["server", "agent"] {
        let token = read_token(&data, role);
        assert!(token.starts_with(&format!("tepui1.{role}.")), "{token}");
        assert!(out.contains(&token), "the {role} token is printed: {out}");
    }
    assert!(out.contains("agent registered with the leader"), "{out}");

    let health = Marathon::new(&addr).get("/v1/health").expect("/v1/health answers");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["node"], "dev1", "{health}");
    assert_eq!(health["role"], "leader", "{health}");

    // One node that is both server and agent, with the resources it was given.
    let status: StatusView = tepui(&["status", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(
        status.leader.as_ref().map(|l| l.name.as_str()),
        Some("dev1"),
        "{status:?}"
    );
    assert_eq!(
        (status.servers, status.agents, status.agents_ready),
        (1, 1, 1),
        "{status:?}"
    );
    let table = tepui(&["status", "--addr", &addr]).ok().stdout;
    assert!(table.contains(&format!("cluster:  {}", status.cluster_id)), "{table}");
    assert!(table.contains("agents:   1 (1 ready)"), "{table}");
    let nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert_eq!(
        (node.name.as_str(), node.roles.as_str(), node.status.as_str()),
        ("dev1", "server+agent", "ready"),
        "{node:?}"
    );
    let resources = node.resources.as_ref().expect("the agent's resources");
    assert_eq!((resources.cpus, resources.mem_mb), (2.0, 1024), "{resources:?}");
    assert!(node.last_heartbeat_ms_ago.is_some(), "{node:?}");
    let table = tepui(&["node", "ls", "--addr", &addr]).ok().stdout;
    let row = table
        .lines()
        .find(|l| l.contains("dev1"))
        .unwrap_or_else(|| panic!("no dev1 row: {table}"));
    assert!(row.contains("server+agent") && row.contains("ready"), "{row}");

    // A task on the host's filesystem, and one from an image, each to its end.
    let host: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "--mem",
        "32",
        "-o",
        "json",
        "--addr",
        &addr,
        "--",
        "/bin/sh",
        "-c",
        "echo hello from the host filesystem",
    ])
    .ok()
    .json();
    assert_eq!(host.agent_name, "dev1", "{host:?}");
    let done = wait_state(&addr, &host.id, "TASK_FINISHED");
    assert_eq!(done.exit_code, Some(0), "{done:?}");
    assert_eq!(logs(&addr, &host.id), "hello from the host filesystem\n");
    // `task watch` streams its states; an ended task gives its end at once and exit 0.
    let watched = tepui(&["task", "watch", &host.id, "--addr", &addr]).ok().stdout;
    assert!(
        watched
            .trim_end()
            .ends_with("TASK_FINISHED: the command exited with code 0"),
        "{watched}"
    );
    // The leader's drivers have run, and say so.
    let with_drivers: Value = tepui(&["status", "-o", "json", "--addr", &addr]).ok().json();
    let drivers: Vec<&str> = with_drivers["drivers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["leading"] == true && d["activations"].as_u64() > Some(0))
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in ["allocator", "drains", "liveness", "services"] {
        assert!(drivers.contains(&name), "{name} runs: {with_drivers}");
    }
    let table = tepui(&["status", "--addr", &addr]).ok().stdout;
    assert!(table.contains("DRIVER") && table.contains("allocator"), "{table}");

    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let archive = archive.display().to_string();
    tepui(&["image", "import", &archive, "--agent", "dev1", "--addr", &addr]).ok();
    let boxed: TaskView = tepui(&[
        "task",
        "run",
        IMAGE,
        "-o",
        "json",
        "--addr",
        &addr,
        "--",
        "busybox",
        "echo",
        "hello from busybox",
    ])
    .ok()
    .json();
    let done = wait_state(&addr, &boxed.id, "TASK_FINISHED");
    assert_eq!(
        (done.exit_code, done.image.as_deref()),
        (Some(0), Some(IMAGE)),
        "{done:?}"
    );
    assert_eq!(logs(&addr, &boxed.id), "hello from busybox\n");

    // A long task outlives the process: SIGTERM stops `tepui dev` cleanly, and the same
    // command on the same data dir is the same cluster, which still knows the task.
    let marker = format!("{MARKER_VAR}={}", marked.value());
    let sleeper: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "--mem",
        "16",
        "-e",
        &marker,
        "-o",
        "json",
        "--addr",
        &addr,
        "--",
        "/bin/sleep",
        "1000",
    ])
    .ok()
    .json();
    wait_state(&addr, &sleeper.id, "TASK_RUNNING");
    let status_code = dev.terminate(Duration::from_secs(30));
    assert!(status_code.success(), "tepui dev exits 0 on SIGTERM: {status_code}");
    assert!(
        tepui(&["status", "--addr", &addr]).code != 0,
        "nothing answers once it stopped"
    );
    assert_eq!(marked.pids().len(), 1, "the task runs on without the agent");
    // Our copy closed, the daemon gone: only a leaked copy in a shim keeps the pipe open.
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(inherited_write) };
    wait_for("the inherited pipe to close (no shim holds it)", SETTLE, || {
        let mut byte = [0u8; 1];
        // SAFETY: reads into a live one-byte buffer from our own non-blocking descriptor.
        match unsafe { libc::read(inherited_read, byte.as_mut_ptr().cast(), 1) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    });

    dev.restart(&args);
    dev.wait_ready(START);
    let out = dev.stdout();
    assert!(
        !out.contains("a new cluster"),
        "a restart does not bootstrap again: {out}"
    );
    let again: StatusView = tepui(&["status", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(again.cluster_id, status.cluster_id);
    wait_for("the agent to be ready again", SETTLE, || {
        let s: StatusView = tepui(&["status", "-o", "json", "--addr", &addr]).try_json()?;
        if s.agents_ready == 1 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    assert_eq!(wait_state(&addr, &sleeper.id, "TASK_RUNNING").id, sleeper.id);
    let tasks: Vec<TaskView> = tepui(&["task", "ls", "-o", "json", "--addr", &addr]).ok().json();
    for id in [&host.id, &boxed.id, &sleeper.id] {
        assert!(tasks.iter().any(|t| &t.id == id), "{id} is listed: {tasks:?}");
    }
    tepui(&["task", "kill", &sleeper.id, "--addr", &addr]).ok();
    wait_for("the task's process to end", SETTLE, || match marked.pids().len() {
        0 => Ok(()),
        n => Err(format!("{n} left")),
    });
    assert_eq!(show(&addr, &sleeper.id).unwrap().state, "TASK_KILLED");
}

/// A pipe whose write end stays open across exec (the read end does not, and never blocks).
fn inheritable_pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
        0
    );
    // SAFETY: dup of our own descriptor; the copy has no close-on-exec flag.
    let write = unsafe { libc::dup(fds[1]) };
    assert!(write >= 0);
    // SAFETY: closing the original, which we own.
    unsafe { libc::close(fds[1]) };
    (fds[0], write)
}
