//! Real containers through the real binary (issue 3): one server on 127.0.14.1 and one agent
//! joined as its own process on 127.0.14.2, images imported from a `docker save` archive and
//! pulled from a real registry on 127.0.0.1, exit codes and the memory, pids and kill-grace
//! limits, a bridge-mode port answering on loopback, exec and followed logs through the API,
//! containers that outlive a kill -9 of the agent, and bad input that fails a task (or one
//! command) and leaves the agent up.
//!
//! Needs root and what e2e/setup.sh installs: busybox-static (the test image), docker-registry
//! and skopeo (the registry), iproute2 and iptables (bridge mode).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tepui_api::{AgentImage, NodeView, TaskView};
use tepui_e2e::{
    bootstrap_server, cluster_addr, exec_interactive, http_addr, read_token, tepui, tepui_bin, wait_for, Daemon,
    Output, Sandbox,
};
use tepui_image::testimage::{build_busybox_layout, build_docker_archive, require_busybox, require_program, Registry};

const SERVER_IP: &str = "127.0.14.1";
const AGENT_IP: &str = "127.0.14.2";
const PORTS: &str = "31000-31200";
/// A bridge of this test's own, so it meets neither `tepui0` nor other tests' bridges.
const BRIDGE: &str = "tpe2e-tasks";
const BRIDGE_SUBNET: &str = "10.214.14.0/24";
const START: Duration = Duration::from_secs(20);
/// How long a task may take to reach a state (a pull, a rootfs, a container start).
const SETTLE: Duration = Duration::from_secs(30);
/// The docker-save archive's image, as it is imported.
const IMPORTED: &str = "tepui-e2e/busybox:import";

/// Fails at once, saying what to install, when the machine cannot run containers.
fn require_environment() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(euid, "0", "tests/tasks.rs runs containers: run it as root");
    let mut missing = vec![];
    if let Err(e) = require_busybox() {
        missing.push(e.to_string());
    }
    for (program, package) in [
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("ip", "iproute2"),
        ("iptables", "iptables"),
    ] {
        if let Err(e) = require_program(program, package) {
            missing.push(e.to_string());
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let help = tepui(&["agent", "--help"]).ok().stdout;
    for flag in ["--insecure-registry", "--bridge", "--bridge-subnet"] {
        assert!(
            help.contains(flag),
            "`tepui agent` has no {flag} flag, which this test needs; rebuild: cargo build -p tepui"
        );
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED" | "TASK_ERROR" | "TASK_LOST" | "TASK_DROPPED" | "TASK_GONE"
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// `tepui join` for a1 the first time; `tepui agent` on its data dir after that.
fn agent_args(sb: &Sandbox, join_token: Option<&str>, insecure: &str) -> Vec<String> {
    let mut args: Vec<String> = match join_token {
        Some(token) => vec!["join".into(), cluster_addr(SERVER_IP), "--token".into(), token.into()],
        None => vec!["agent".into()],
    };
    args.extend(
        [
            "--data-dir",
            &sb.join("a1").display().to_string(),
            "--bind",
            AGENT_IP,
            "--name",
            "a1",
            "--ports",
            PORTS,
            "--cpus",
            "8",
            "--mem",
            "8192",
            "--heartbeat-secs",
            "0.5",
            "--insecure-registry",
            insecure,
            "--bridge",
            BRIDGE,
            "--bridge-subnet",
            BRIDGE_SUBNET,
        ]
        .map(String::from),
    );
    args
}

/// Waits until a1 is ready (registered, with resources) as the server sees it.
fn wait_agent_ready(addr: &str) -> NodeView {
    wait_for("a1 to be ready", START, || {
        let nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", addr]).try_json()?;
        match nodes.into_iter().find(|n| n.name == "a1") {
            Some(n) if n.status == "ready" && n.resources.is_some() => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
}

/// `tepui task run` on a1: `opts` (flags, then the image), `--`, `cmd`. Returns the new task.
fn run_task(addr: &str, opts: &[&str], cmd: &[&str]) -> TaskView {
    let mut args = vec!["task", "run", "-o", "json", "--addr", addr, "--agent", "a1"];
    args.extend(opts);
    args.push("--");
    args.extend(cmd);
    let t: TaskView = tepui(&args).ok().json();
    assert_eq!(t.agent_name, "a1", "{t:?}");
    t
}

fn show(addr: &str, id: &str) -> Result<TaskView, String> {
    tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()
}

/// The task's stdout (or stderr) so far, through the API.
fn logs(addr: &str, id: &str, stderr: bool) -> String {
    let mut args = vec!["task", "logs", id, "--addr", addr];
    if stderr {
        args.push("--stderr");
        // The CLI copies the task's stderr to its own.
        tepui(&args).ok().stderr
    } else {
        tepui(&args).ok().stdout
    }
}

/// Waits until the task is in state `want`; panics at once, with its logs, if it ends in
/// another state.
fn wait_state(addr: &str, id: &str, want: &str) -> TaskView {
    wait_for(&format!("task {id} to be {want}"), SETTLE, || {
        let t = show(addr, id)?;
        if t.state == want {
            return Ok(t);
        }
        if is_terminal(&t.state) {
            panic!(
                "task {id} ended {} instead of {want}: {t:?}\n--- stdout\n{}\n--- stderr\n{}",
                t.state,
                logs(addr, id, false),
                logs(addr, id, true)
            );
        }
        Err(format!("{} ({})", t.state, t.message))
    })
}

/// Waits until the task ended, whichever way.
fn wait_ended(addr: &str, id: &str) -> TaskView {
    wait_for(&format!("task {id} to end"), SETTLE, || {
        let t = show(addr, id)?;
        if is_terminal(&t.state) {
            Ok(t)
        } else {
            Err(format!("{} ({})", t.state, t.message))
        }
    })
}

fn exec(addr: &str, id: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["task", "exec", id, "--addr", addr, "--"];
    args.extend(cmd);
    tepui(&args)
}

/// `GET path` over plain HTTP/1.0 at 127.0.0.1:port; the whole answer.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

/// `tepui task logs -f` as a child process, its stdout lines arriving on a channel as they are
/// printed. Killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(addr: &str, id: &str) -> Follower {
        let mut cmd = Command::new(tepui_bin());
        cmd.args(["task", "logs", "-f", id, "--addr", addr])
            .env("TEPUI_API_TOKEN", tepui_e2e::API_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for var in ["TEPUI_ADDR", "TEPUI_TOKEN", "TEPUI_DATA_DIR"] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("tepui task logs -f starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// Waits for the line `want`, returning every line up to it.
    fn wait_line(&self, want: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == want;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line {want:?} from `tepui task logs -f` ({e}); got {seen:?}"),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On a failed test, kills the tasks still running through the API while the agent is up, so
/// no container outlives the test. Declare it after the daemons: it drops before them.
struct KillTasksOnPanic<'a> {
    addr: &'a str,
}

impl Drop for KillTasksOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(tasks) = tepui(&["task", "ls", "-o", "json", "--addr", self.addr]).try_json::<Vec<TaskView>>() else {
            return;
        };
        let live: Vec<&TaskView> = tasks.iter().filter(|t| !is_terminal(&t.state)).collect();
        for t in &live {
            let _ = tepui(&["task", "kill", &t.id, "--addr", self.addr]);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for t in live {
            while Instant::now() < deadline && show(self.addr, &t.id).is_ok_and(|v| !is_terminal(&v.state)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Files `tepui image import` must refuse: text, binary noise, a real archive cut short.
fn broken_archives(sb: &Sandbox, good: &Path) -> Vec<(String, std::path::PathBuf)> {
    let text = sb.join("text.tar");
    std::fs::write(&text, b"this is not an image archive\n".repeat(100)).unwrap();
    // xorshift, so the noise is the same in every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let binary = sb.join("noise.tar");
    std::fs::write(&binary, noise).unwrap();
    let whole = std::fs::read(good).unwrap();
    let cut = sb.join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    vec![
        ("a text file".to_string(), text),
        ("8 KB of binary noise".to_string(), binary),
        ("a docker archive cut in half".to_string(), cut),
    ]
}

fn spawn_server(sb: &Sandbox) -> Daemon {
    bootstrap_server(sb, SERVER_IP, &[])
}

/// The import path: a `docker save` archive onto a1, listed by `image ls`, a task run from it.
fn import_archive(addr: &str, archive: &Path) -> String {
    let path = archive.display().to_string();
    let imported: Value = tepui(&["image", "import", &path, "--agent", "a1", "-o", "json", "--addr", addr])
        .ok()
        .json();
    // One entry per agent, with the images it imported.
    let reference = imported
        .as_array()
        .and_then(|a| a.first())
        .and_then(|i| i["images"][0]["reference"].as_str())
        .unwrap_or_else(|| panic!("`image import` names no image: {imported}"))
        .to_string();
    assert!(reference.ends_with(IMPORTED), "{reference}");
    let images: Vec<AgentImage> = tepui(&["image", "ls", "-o", "json", "--addr", addr]).ok().json();
    assert!(
        images
            .iter()
            .any(|i| i.agent == "a1" && i.image["reference"].as_str() == Some(reference.as_str())),
        "{images:?}"
    );
    reference
}

/// The pull path: `image pull` onto a1 from the registry it trusts over plain HTTP.
fn pull_image(addr: &str, image: &str) {
    let out = tepui(&["image", "pull", image, "--agent", "a1", "-o", "json", "--addr", addr]).ok();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect();
    assert!(
        lines.iter().all(|l| l["agent"] == "a1" && l.get("error").is_none()),
        "{out}"
    );
    let done = lines
        .iter()
        .find_map(|l| l.get("done"))
        .unwrap_or_else(|| panic!("no done line\n{out}"));
    assert_eq!(done["reference"].as_str(), Some(image), "{out}");
    let images: Vec<AgentImage> = tepui(&["image", "ls", "--agent", "a1", "-o", "json", "--addr", addr])
        .ok()
        .json();
    assert!(
        images.iter().any(|i| i.image["reference"].as_str() == Some(image)),
        "{images:?}"
    );
}

#[test]
fn tasks_run_in_real_containers() {
    require_environment();
    let started = Instant::now();
    let sb = Sandbox::new("tasks");

    // Images: a docker-save archive to import, busybox:1 in a registry the agent trusts over
    // plain HTTP, and a second registry it does not trust.
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMPORTED).expect("the docker archive builds");
    let broken = broken_archives(&sb, &archive);
    let registry = Registry::start(&sb.join("registry")).expect("docker-registry starts");
    build_busybox_layout(&sb.join("layout"), "1").expect("the OCI layout builds");
    registry
        .push_layout(&sb.join("layout"), "1", "busybox")
        .expect("skopeo pushes busybox:1");
    let untrusted = Registry::start(&sb.join("untrusted")).expect("a second docker-registry starts");
    let image = format!("{}/busybox:1", registry.host());

    let _server = spawn_server(&sb);
    let addr = http_addr(SERVER_IP);
    let token = read_token(&sb.join("s1"), "agent");
    let mut agent = sb.spawn("a1", &agent_args(&sb, Some(&token), &registry.host()));
    agent.wait_ready(START);
    let _kill_tasks = KillTasksOnPanic { addr: &addr };
    let a1 = wait_agent_ready(&addr);
    assert_eq!(a1.resources.expect("resources").ports, vec![PORTS.to_string()]);
    eprintln!("cluster and registries up after {:?}", started.elapsed());

    let imported = import_archive(&addr, &archive);
    pull_image(&addr, &image);
    eprintln!("images in after {:?}", started.elapsed());

    // Everything that does not wait on anything else starts at once and runs side by side.
    // The test image links only sh, ls, cat and echo to busybox; other applets go through it.
    let img = image.as_str();
    let from_archive = run_task(&addr, &[IMPORTED], &["cat", "/etc/variant"]);
    assert_eq!(from_archive.image.as_deref(), Some(IMPORTED));
    let hello = run_task(&addr, &[img], &["echo", "hello"]);
    let fails = run_task(&addr, &[img], &["busybox", "false"]);
    // tail keeps the last lines, and /dev/zero has no line ends: it grows until the OOM killer.
    let oom = run_task(&addr, &["--mem", "16", img], &["busybox", "tail", "/dev/zero"]);
    // Each child says it is up once forked; sh gives up (exit 2) at the first fork refused.
    let pids = run_task(
        &addr,
        &["--pids", "8", img],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do i=$((i+1)); (echo up $i; exec busybox sleep 1000) & done; echo all 20 forked",
        ],
    );
    let stubborn = run_task(
        &addr,
        &["--kill-grace", "1", img],
        &["sh", "-c", "trap '' TERM; echo trapped; busybox sleep 1000"],
    );
    let httpd = run_task(
        &addr,
        &["--network", "bridge", "-p", "8080", "--kill-grace", "1", img],
        &[
            "sh",
            "-c",
            "echo hello-bridge > /tmp/index.html && exec busybox httpd -f -p 8080 -h /tmp",
        ],
    );
    let ticker = run_task(
        &addr,
        &[img],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo tick $i; i=$((i+1)); busybox usleep 100000; done",
        ],
    );
    let mut follower = Follower::start(&addr, &ticker.id);
    let keep: Vec<TaskView> = (0..2)
        .map(|_| {
            run_task(
                &addr,
                &["--kill-grace", "1", img],
                &[
                    "sh",
                    "-c",
                    "cat /proc/sys/kernel/random/uuid > /tmp/started; exec busybox sleep 1000",
                ],
            )
        })
        .collect();
    // Bad input: each fails its task, with a message that says why.
    let missing_image = format!("{}/no-such-image:1", registry.host());
    let missing = run_task(&addr, &[&missing_image], &["echo", "never"]);
    let untrusted_image = format!("{}/busybox:1", untrusted.host());
    let insecure = run_task(&addr, &[&untrusted_image], &["echo", "never"]);
    let no_command = run_task(&addr, &[img], &["no-such-command-e2e", "--flag"]);

    // Logs follow while the task runs, and the command ends when the task does.
    let first = follower.wait_line("tick 3", SETTLE);
    assert_eq!(first[0], "tick 0", "{first:?}");
    let during = show(&addr, &ticker.id).expect("task show");
    assert!(
        !is_terminal(&during.state),
        "`logs -f` printed lines before the task ended: {during:?}"
    );
    let rest = follower.wait_line("tick 39", SETTLE);
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    let want: Vec<String> = (0..40).map(|i| format!("tick {i}")).collect();
    assert_eq!(all, want);
    let status = wait_for("`tepui task logs -f` to end with the task", SETTLE, || {
        match follower.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(status.success(), "tepui task logs -f: {status}");
    let t = wait_state(&addr, &ticker.id, "TASK_FINISHED");
    assert_eq!(t.exit_code, Some(0));
    assert!(follower.lines.try_recv().is_err(), "nothing after the last line");

    // The import and pull paths: tasks from both images ran.
    let t = wait_state(&addr, &from_archive.id, "TASK_FINISHED");
    assert_eq!(t.exit_code, Some(0), "{t:?}");
    assert_eq!(logs(&addr, &t.id, false), "docker\n", "{imported}: /etc/variant");
    let t = wait_state(&addr, &hello.id, "TASK_FINISHED");
    assert_eq!(t.exit_code, Some(0), "{t:?}");
    assert!(logs(&addr, &hello.id, false).contains("hello"));
    let plain = tepui(&["task", "logs", &hello.id, "--tail", "1", "--addr", &addr]).ok();
    assert_eq!(plain.stdout, "hello\n");

    // Exit codes and limits.
    let t = wait_state(&addr, &fails.id, "TASK_FAILED");
    assert_eq!(t.exit_code, Some(1), "{t:?}");
    assert_eq!(t.reason.as_deref(), Some("REASON_COMMAND_EXECUTOR_FAILED"), "{t:?}");

    let t = wait_state(&addr, &oom.id, "TASK_FAILED");
    assert_eq!(t.reason.as_deref(), Some("REASON_CONTAINER_LIMITATION_MEMORY"), "{t:?}");
    assert_eq!(t.mem_mb, 16);

    let t = wait_ended(&addr, &pids.id);
    let out = logs(&addr, &pids.id, false);
    let err = logs(&addr, &pids.id, true);
    let up = out.lines().filter(|l| l.starts_with("up ")).count();
    assert!(
        up < 8 && !out.contains("all 20 forked"),
        "at most 7 processes besides sh under --pids 8; {t:?}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        t.state == "TASK_FAILED" && t.exit_code.is_some_and(|c| c != 0),
        "a fork refused under --pids 8 fails the script: {t:?}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(err.contains("fork"), "{err}");

    // A task that ignores SIGTERM is killed with SIGKILL once its grace period is over.
    wait_state(&addr, &stubborn.id, "TASK_RUNNING");
    wait_for("the trap to be set", SETTLE, || {
        let out = logs(&addr, &stubborn.id, false);
        if out.contains("trapped") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let asked = now_ms();
    let killing: TaskView = tepui(&["task", "kill", &stubborn.id, "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert!(!is_terminal(&killing.state), "{killing:?}");
    let t = wait_state(&addr, &stubborn.id, "TASK_KILLED");
    let ended = t.finished_at_ms.expect("a killed task has an end");
    assert!(
        ended >= asked + 900,
        "killed {} ms after the kill, before its 1 s grace period: {t:?}",
        ended.saturating_sub(asked)
    );
    assert_eq!(t.signal, Some(9), "SIGKILL after the grace period: {t:?}");

    // Bridge mode: the container's port 8080 answers on its host port on 127.0.0.1.
    let t = wait_state(&addr, &httpd.id, "TASK_RUNNING");
    assert_eq!(t.network, "bridge");
    assert_eq!(t.ports.len(), 1, "{t:?}");
    let port = &t.ports[0];
    assert_eq!(port.container_port, 8080);
    assert!((31000..=31200).contains(&port.host_port), "{port:?}");
    let answer = wait_for("httpd to answer on its host port", SETTLE, || {
        let a = http_get(port.host_port, "/index.html")?;
        if a.contains("hello-bridge") {
            Ok(a)
        } else {
            Err(a)
        }
    });
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );

    // Exec runs in the task's container.
    let out = exec(&addr, &httpd.id, &["echo", "hi"]).ok();
    assert_eq!(out.stdout, "hi\n");
    let out = exec(&addr, &httpd.id, &["cat", "/tmp/index.html"]).ok();
    assert_eq!(out.stdout, "hello-bridge\n");
    let out = exec(&addr, &httpd.id, &["sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "exec passes the exit code on: {out}");
    // An interactive exec: stdin goes in, stdout and stderr come back apart, the exit code too.
    let (code, stdout, stderr) =
        exec_interactive(&addr, &httpd.id, "echo interactive $((1+2)); echo oops >&2; exit 4\n");
    assert_eq!((code, stdout.as_str()), (4, "interactive 3\n"), "stderr: {stderr}");
    assert!(stderr.contains("oops"), "{stderr}");
    tepui(&["task", "kill", &httpd.id, "--addr", &addr]).ok();
    wait_state(&addr, &httpd.id, "TASK_KILLED");

    // Bad input fails the task, saying why.
    let t = wait_state(&addr, &missing.id, "TASK_FAILED");
    assert!(t.message.contains("no-such-image"), "names the image: {t:?}");
    let t = wait_state(&addr, &insecure.id, "TASK_FAILED");
    assert!(
        t.message.contains(&untrusted.host()) && t.message.contains("insecure"),
        "says the registry is not trusted over plain HTTP: {t:?}"
    );
    let t = wait_state(&addr, &no_command.id, "TASK_FAILED");
    assert!(t.message.contains("no-such-command-e2e"), "names the command: {t:?}");
    assert_eq!(t.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"), "{t:?}");
    // A broken archive is refused, with one `error:` line (checked at the end, so that what
    // follows runs whatever this says).
    let bad_imports: Vec<(String, Output)> = broken
        .iter()
        .map(|(what, path)| {
            let path = path.display().to_string();
            let out = tepui(&["image", "import", &path, "--agent", "a1", "--addr", &addr]);
            (what.clone(), out)
        })
        .collect();

    // ...and the agent is still up and runs the next task.
    assert!(agent.is_running(), "{}", agent.stderr_tail(20));
    wait_agent_ready(&addr);
    let after = run_task(&addr, &[img], &["echo", "still", "here"]);
    wait_state(&addr, &after.id, "TASK_FINISHED");
    assert_eq!(logs(&addr, &after.id, false), "still here\n");
    eprintln!("single tasks done after {:?}", started.elapsed());

    // kill -9 of the agent: its two containers keep running, and the restarted agent adopts
    // them (the same processes: the marker each wrote when it started is unchanged).
    let mut markers = vec![];
    for t in &keep {
        wait_state(&addr, &t.id, "TASK_RUNNING");
        let marker = wait_for("the start marker", SETTLE, || {
            let out = exec(&addr, &t.id, &["cat", "/tmp/started"]);
            if out.success() && out.stdout.trim().len() == 36 {
                Ok(out.stdout)
            } else {
                Err(out.to_string())
            }
        });
        markers.push(marker);
    }
    assert_ne!(markers[0], markers[1]);
    let tasks_before: Vec<TaskView> = keep.iter().map(|t| show(&addr, &t.id).unwrap()).collect();
    agent.kill();
    agent.restart(&agent_args(&sb, None, &registry.host()));
    agent.wait_ready(START);
    wait_agent_ready(&addr);
    for (t, (marker, before)) in keep.iter().zip(markers.iter().zip(&tasks_before)) {
        let now = show(&addr, &t.id).expect("task show");
        assert_eq!(now.state, "TASK_RUNNING", "{now:?}");
        assert_eq!(now.message, before.message, "the same process: {now:?}");
        let out = wait_for("exec in an adopted task", SETTLE, || {
            let out = exec(&addr, &t.id, &["cat", "/tmp/started"]);
            if out.success() {
                Ok(out)
            } else {
                Err(out.to_string())
            }
        });
        assert_eq!(&out.stdout, marker, "the container was not started again");
    }
    for t in &keep {
        tepui(&["task", "kill", &t.id, "--addr", &addr]).ok();
    }
    for t in &keep {
        wait_state(&addr, &t.id, "TASK_KILLED");
    }
    let last = run_task(&addr, &[img], &["echo", "after", "the", "restart"]);
    wait_state(&addr, &last.id, "TASK_FINISHED");
    assert_eq!(logs(&addr, &last.id, false), "after the restart\n");

    let tasks: Vec<TaskView> = tepui(&["task", "ls", "-o", "json", "--addr", &addr]).ok().json();
    let live: Vec<&TaskView> = tasks.iter().filter(|t| !is_terminal(&t.state)).collect();
    assert!(live.is_empty(), "every task ended: {live:?}");
    let wrong: Vec<String> = bad_imports
        .iter()
        .filter(|(_, out)| {
            let lines = out.stderr_lines();
            out.success() || lines.len() != 1 || !lines[0].starts_with("error: ")
        })
        .map(|(what, out)| format!("importing {what}: {} stderr lines, {out}", out.stderr_lines().len()))
        .collect();
    assert!(
        wrong.is_empty(),
        "a broken archive must fail with one `error:` line:\n{}",
        wrong.join("\n")
    );
    eprintln!("done after {:?}", started.elapsed());
}
