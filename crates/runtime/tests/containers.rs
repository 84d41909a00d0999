//! Real containers: a busybox rootfs built from Debian's busybox-static, the shim started as
//! a separate process, real cgroups, namespaces, veths and iptables rules. Run as root.
//! Networking stays on loopback and on bridges and namespaces these tests create.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tepui_runtime::{
    BridgeConfig, Error, ExecSpec, HostPort, LogStream, Network, PortMapping, Protocol, Reason, Rootfs, Runtime,
    RuntimeConfig, TaskSpec, TaskState,
};

const SHIM_BUILT: &str = env!("CARGO_BIN_EXE_tepui-shim-test");

/// The shim program: the one cargo built, or a copy of it named by `TEPUI_TEST_SHIM` (a
/// target dir shared between checkouts may hold another checkout's build by the time the
/// tests run).
fn shim() -> PathBuf {
    std::env::var_os("TEPUI_TEST_SHIM").map_or_else(|| PathBuf::from(SHIM_BUILT), PathBuf::from)
}
const DEADLINE: Duration = Duration::from_secs(60);

/// A busybox rootfs: the static binary, a symlink per applet, a passwd and a web page.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "dev", "sys", "tmp", "www", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "Debian's busybox-static is needed (e2e/setup.sh installs it)"
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.contains('/') {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(root.join("www/index.html"), "hello from tepui\n").unwrap();
    // As in every image: anyone may write /tmp (tasks run as nobody unless they ask).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    root
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rootfs: PathBuf,
    rt: Runtime,
}

fn config(bridge: Option<BridgeConfig>) -> RuntimeConfig {
    RuntimeConfig {
        shim_program: shim(),
        shim_args: vec!["shim".into()],
        bridge: bridge.unwrap_or_default(),
        ..RuntimeConfig::default()
    }
}

fn fixture(bridge: Option<BridgeConfig>) -> Fixture {
    fixture_with(bridge, |_, _| {})
}

/// A fixture whose runtime config `change` adjusts (it gets the fixture's temp dir).
fn fixture_with(bridge: Option<BridgeConfig>, change: impl FnOnce(&Path, &mut RuntimeConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let root = dir.path().join("agent");
    let mut cfg = config(bridge);
    change(dir.path(), &mut cfg);
    let rt = Runtime::new(&root, cfg).unwrap();
    Fixture {
        _dir: dir,
        root,
        rootfs,
        rt,
    }
}

/// Unique on the host across concurrent tests and repeated runs (cgroups are global).
fn task_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn spec(f: &Fixture, id: &str, args: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        rootfs: Rootfs::Path(f.rootfs.clone()),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
        user: None,
        cwd: None,
        cpus: Some(0.5),
        mem_mb: Some(64),
        pids: Some(64),
        network: Network::Host { ports: vec![] },
        volumes: vec![],
        read_only_rootfs: false,
        kill_grace_period: Duration::from_secs(1),
        secrets: Default::default(),
        resolver: None,
    }
}

async fn wait(rt: &Runtime, id: &str) -> tepui_runtime::TaskStatus {
    tokio::time::timeout(DEADLINE, rt.wait(id))
        .await
        .expect("task did not end in time")
        .expect("wait")
}

/// Waits (10 s at most) until `done` holds; `what` names it in the failure.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (10 s at most) until the task's stdout is `want`.
async fn wait_for_stdout(rt: &Runtime, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log(rt, id, LogStream::Stdout, None).await != want {
        assert!(Instant::now() < deadline, "stdout never became {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn log(rt: &Runtime, id: &str, stream: LogStream, tail: Option<usize>) -> String {
    let mut chunks = rt.logs(id, stream, tail, false).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = chunks.next().await {
        out.extend(c.unwrap());
    }
    String::from_utf8(out).unwrap()
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for p in [e.path().join("tepui").join(id), e.path().join(id)] {
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: only a state other than Z counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next());
            state.flatten() != Some('Z')
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn prints_and_finishes_with_its_output_in_the_log() {
    let f = fixture(None);
    let id = task_id("hello");
    let h =
        f.rt.launch(&spec(&f, &id, &["sh", "-c", "echo hello; echo two; echo oops >&2"]))
            .await
            .unwrap();
    assert!(h.pid > 0);
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Finished, "{st:?}");
    assert_eq!(st.exit_code, Some(0));
    assert!(st.started_at.is_some() && st.finished_at.is_some());
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, None).await, "hello\ntwo\n");
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, Some(1)).await, "two\n");
    assert_eq!(log(&f.rt, &id, LogStream::Stderr, None).await, "oops\n");
    assert!(cgroup_dirs(&id).is_empty(), "cgroup left: {:?}", cgroup_dirs(&id));
    assert!(!alive(h.pid));
}

#[tokio::test]
async fn false_fails_with_exit_code_1() {
    let f = fixture(None);
    let id = task_id("false");
    f.rt.launch(&spec(&f, &id, &["false"])).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.exit_code, Some(1));
    assert_eq!(st.reason, Some(Reason::CommandFailed));
    assert!(!st.oom_killed);
}

#[tokio::test]
async fn going_past_the_memory_limit_fails_with_the_oom_reason() {
    let f = fixture(None);
    let id = task_id("oom");
    let mut s = spec(&f, &id, &["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"]);
    s.mem_mb = Some(16);
    f.rt.launch(&s).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Failed, "{st:?}");
    assert_eq!(st.reason, Some(Reason::MemoryLimit), "{st:?}");
    assert!(st.oom_killed);
    assert!(st.message.unwrap().contains("memory"));
}

#[tokio::test]
async fn ignoring_sigterm_gets_sigkill_after_the_grace_period() {
    let f = fixture(None);
    let id = task_id("stubborn");
    let mut s = spec(
        &f,
        &id,
        &["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"],
    );
    s.kill_grace_period = Duration::from_millis(700);
    f.rt.launch(&s).await.unwrap();
    // Until the shell ignores SIGTERM, a kill ends it at once: wait for it to say so.
    wait_for_stdout(&f.rt, &id, "up\n").await;
    let asked = Instant::now();
    f.rt.kill(&id).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Killed, "{st:?}");
    assert_eq!(st.signal, Some(9));
    assert!(asked.elapsed() >= Duration::from_millis(700));
    // Killing again is fine.
    f.rt.kill(&id).await.unwrap();
}

/// A task's init (pid 1 of its namespace) that leaves SIGTERM to its default would never see
/// it: the kernel drops it. Alone, it is killed at once; with other processes, they get the
/// SIGTERM (here the shell's child, after which the shell goes on to its end).
#[tokio::test]
async fn sigterm_reaches_a_task_whose_init_does_not_handle_it() {
    let f = fixture(None);
    let id = task_id("plain-init");
    let mut s = spec(&f, &id, &["sleep", "1000"]);
    s.kill_grace_period = Duration::from_secs(60);
    f.rt.launch(&s).await.unwrap();
    let asked = Instant::now();
    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    assert!(asked.elapsed() < Duration::from_secs(30), "{:?}", asked.elapsed());

    let id = task_id("shell-init");
    let mut s = spec(&f, &id, &["sh", "-c", "echo up; sleep 1000; echo after"]);
    s.kill_grace_period = Duration::from_secs(60);
    f.rt.launch(&s).await.unwrap();
    // The shell's child must exist before the kill, or the shell is alone and killed.
    wait_until("the shell never started its child", || {
        pids_file(&id, "cgroup.procs")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|t| t.lines().count() >= 2)
    })
    .await;
    let asked = Instant::now();
    f.rt.kill(&id).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Killed, "{st:?}");
    assert!(asked.elapsed() < Duration::from_secs(30), "{:?}", asked.elapsed());
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, None).await, "up\nafter\n");
}

#[tokio::test]
async fn a_task_that_handles_sigterm_ends_before_the_grace_period() {
    let f = fixture(None);
    let id = task_id("polite");
    let mut s = spec(
        &f,
        &id,
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 1; done",
        ],
    );
    s.kill_grace_period = Duration::from_secs(30);
    f.rt.launch(&s).await.unwrap();
    // pid 1 ignores SIGTERM until its handler is installed: wait for the shell to say so.
    wait_for_stdout(&f.rt, &id, "ready\n").await;
    let asked = Instant::now();
    f.rt.kill(&id).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Killed);
    assert_eq!(st.exit_code, Some(0));
    assert!(asked.elapsed() < Duration::from_secs(20));
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, None).await, "ready\nbye\n");
}

#[tokio::test]
async fn the_pids_limit_holds() {
    let f = fixture(None);
    let id = task_id("forks");
    let mut s = spec(
        &f,
        &id,
        &["sh", "-c", "for i in $(seq 20); do sleep 30 & done; echo spawned all"],
    );
    s.pids = Some(8);
    f.rt.launch(&s).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Failed, "{st:?}");
    assert!(!log(&f.rt, &id, LogStream::Stdout, None).await.contains("spawned all"));
    let err = log(&f.rt, &id, LogStream::Stderr, None).await;
    assert!(err.contains("fork"), "stderr: {err}");
}

#[tokio::test]
async fn host_networking_announces_ports() {
    let f = fixture(None);
    let id = task_id("ports");
    let mut s = spec(&f, &id, &["sh", "-c", "echo $PORT0 $PORT_HTTP $PORT1"]);
    s.network = Network::Host {
        ports: vec![
            HostPort {
                name: Some("http".into()),
                port: 31234,
            },
            HostPort {
                name: None,
                port: 31235,
            },
        ],
    };
    f.rt.launch(&s).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Finished);
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, None).await, "31234 31234 31235\n");
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "10", "-t", "nat", "-S", "TEPUI-DNAT"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn links_on(bridge: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes a test bridge and the rules tepui added for it.
fn remove_bridge(name: &str) {
    let _ = Command::new("ip").args(["link", "del", name]).status();
    for (table, chain) in [
        ("nat", "TEPUI-POSTROUTING"),
        ("filter", "TEPUI-FORWARD"),
        ("filter", "TEPUI-INPUT"),
    ] {
        let out = Command::new("iptables")
            .args(["-w", "10", "-t", table, "-S", chain])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"-A") && words.contains(&name) {
                let mut args = vec!["-w", "10", "-t", table, "-D"];
                args.extend(&words[1..]);
                let _ = Command::new("iptables").args(&args).status();
            }
        }
    }
}

fn test_bridge(name: &str, third_octet: u8) -> BridgeConfig {
    BridgeConfig {
        name: name.into(),
        subnet: Ipv4Addr::new(10, 213, third_octet, 0),
        prefix: 24,
        enable_ip_forward: false,
    }
}

#[tokio::test]
async fn bridge_mode_serves_on_the_mapped_host_port() {
    let bridge = test_bridge("tpt-http", 201);
    let f = fixture(Some(bridge.clone()));
    let id = task_id("httpd");
    let host_port = free_port();
    let mut s = spec(&f, &id, &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    s.network = Network::Bridge {
        ports: vec![PortMapping {
            name: Some("http".into()),
            host_port,
            container_port: 8080,
            protocol: Protocol::Tcp,
        }],
    };
    let h = f.rt.launch(&s).await.unwrap();
    let ip = h.ip.expect("bridge task has an address");
    assert_eq!(ip.octets()[..3], [10, 213, 201]);
    assert!(nat_rules().contains(&format!("tepui:{id}")));

    let start = Instant::now();
    let page = loop {
        match http_get(host_port) {
            Ok(p) if p.contains("hello from tepui") => break p,
            other => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "no answer on 127.0.0.1:{host_port}: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(page.starts_with("HTTP/1.") && page.contains("200"), "{page}");

    // The container sees its own address and the mapping's environment.
    let out =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo $PORT_HTTP $HOST_PORT0; ip -4 -o addr show dev eth0".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("8080 {host_port}\n")), "{text}");
    assert!(text.contains(&ip.to_string()), "{text}");

    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    assert!(!nat_rules().contains(&format!("tepui:{id}")));
    assert_eq!(links_on(&bridge.name), "");
    assert!(http_get(host_port).is_err() || !http_get(host_port).unwrap().contains("tepui"));
    remove_bridge(&bridge.name);
}

#[tokio::test]
async fn exec_runs_in_the_running_container() {
    let f = fixture(None);
    let id = task_id("exec");
    f.rt.launch(&spec(
        &f,
        &id,
        &["sh", "-c", "echo marker > /tmp/inside; exec sleep 1000"],
    ))
    .await
    .unwrap();
    let out =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec!["echo".into(), "hi".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // An exec'd process gets the task's seccomp filter too, and cannot gain privileges.
    let out =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec![
                    "grep".into(),
                    "-E".into(),
                    "^(NoNewPrivs|Seccomp):".into(),
                    "/proc/self/status".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "NoNewPrivs:\t1\nSeccomp:\t2\n");

    // Same filesystem and pid namespace as the task; its exit code comes back.
    let out =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat /tmp/inside; ps -o pid,comm | grep -c sleep; exit 3".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marker\n1\n");

    let err =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec!["no-such-command".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exec { .. }), "{err}");
    assert!(err.to_string().contains("no-such-command"), "{err}");

    // On a terminal.
    let session =
        f.rt.exec_stream(
            &id,
            &ExecSpec {
                args: vec!["sh".into(), "-c".into(), "tty; echo done".into()],
                tty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut pty = std::fs::File::from(session.pty.as_ref().unwrap().try_clone().unwrap());
    let read = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        // EIO once the other side is closed.
        while let Ok(n) = pty.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains("done") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let text = tokio::time::timeout(DEADLINE, read).await.unwrap().unwrap();
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert_eq!(
        tokio::time::timeout(DEADLINE, session.wait()).await.unwrap().unwrap(),
        0
    );

    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    let err =
        f.rt.exec(
            &id,
            &ExecSpec {
                args: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotRunning(_)), "{err}");
}

#[tokio::test]
async fn a_missing_command_fails_clearly() {
    let f = fixture(None);
    let id = task_id("missing");
    let started = Instant::now();
    let err =
        f.rt.launch(&spec(&f, &id, &["/bin/no-such-thing", "arg"]))
            .await
            .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    match &err {
        Error::StartFailed { message, .. } => {
            assert!(message.contains("no-such-thing"), "{message}")
        }
        other => panic!("expected StartFailed, got {other}"),
    }
    let st = f.rt.status(&id).await.unwrap();
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.reason, Some(Reason::StartFailed));
    assert!(cgroup_dirs(&id).is_empty());
}

#[tokio::test]
async fn host_rootfs_runs_host_programs_isolated() {
    let f = fixture(None);
    let id = task_id("hostfs");
    let mut s = spec(
        &f,
        &id,
        &[
            "/bin/sh",
            "-c",
            "echo pid=$$; touch /tmp/ok && echo tmp=ok; touch /usr/x 2>/dev/null || echo usr=ro; pwd",
        ],
    );
    s.rootfs = Rootfs::Host;
    f.rt.launch(&s).await.unwrap();
    let st = wait(&f.rt, &id).await;
    assert_eq!(st.state, TaskState::Finished, "{st:?}");
    assert_eq!(
        log(&f.rt, &id, LogStream::Stdout, None).await,
        format!("pid=1\ntmp=ok\nusr=ro\n{}\n", tepui_runtime::SANDBOX_MOUNT)
    );
}

#[tokio::test]
async fn adopt_finds_tasks_after_the_agent_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let root = dir.path().join("agent");
    let f = Fixture {
        rt: Runtime::new(&root, config(None)).unwrap(),
        _dir: tempfile::tempdir().unwrap(),
        root: root.clone(),
        rootfs,
    };
    let ids = [task_id("adopt-a"), task_id("adopt-b")];
    let mut files = Vec::new();
    for i in &ids {
        let mut s = spec(&f, i, &["sleep", "1000"]);
        s.kill_grace_period = Duration::from_millis(200);
        let p = dir.path().join(format!("{i}.json"));
        std::fs::write(&p, serde_json::to_vec(&s).unwrap()).unwrap();
        files.push(p);
    }
    // Another process plays the agent: it launches both, then is SIGKILLed.
    let mut agent = Command::new(shim())
        .arg("launch")
        .arg(&root)
        .args(&files)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    let lines = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || {
            let mut launched = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if line == "ready" {
                    break;
                }
                let w: Vec<&str> = line.split_whitespace().collect();
                launched.push((w[1].to_string(), w[2].parse::<i32>().unwrap()));
            }
            launched
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(lines.len(), 2);
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();

    let rt = Runtime::new(&f.root, config(None)).unwrap();
    let adopted = rt.adopt().await.unwrap();
    assert_eq!(adopted.len(), 2, "{adopted:?}");
    for (id, pid) in &lines {
        let (_, st) = adopted.iter().find(|(i, _)| i == id).unwrap();
        assert_eq!(st.state, TaskState::Running);
        assert_eq!(st.pid, Some(*pid));
        assert!(alive(*pid));
    }
    for (id, pid) in &lines {
        rt.kill(id).await.unwrap();
        let st = wait(&rt, id).await;
        assert_eq!(st.state, TaskState::Killed);
        assert!(!alive(*pid));
    }
    assert_eq!(rt.cleanup(Duration::ZERO).await.unwrap().len(), 2);
    assert!(rt.adopt().await.unwrap().is_empty());
}

#[tokio::test]
async fn cleanup_leaves_nothing_behind() {
    let bridge = test_bridge("tpt-clean", 202);
    let f = fixture(Some(bridge.clone()));
    let id = task_id("clean");
    let mut s = spec(&f, &id, &["sh", "-c", "echo data > /mnt/sandbox/out; sleep 1000"]);
    s.network = Network::Bridge {
        ports: vec![PortMapping {
            name: None,
            host_port: free_port(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }],
    };
    let h = f.rt.launch(&s).await.unwrap();
    assert_eq!(links_on(&bridge.name).lines().count(), 1);
    assert!(!cgroup_dirs(&id).is_empty());
    // What lives only as long as the task's processes is on a tmpfs, not in the sandbox.
    let run = f.rt.run_dir(&id);
    for name in [
        "shim.sock",
        "shim.lock",
        "state.json",
        "plan.json",
        "bundle/config.json",
        "lc",
    ] {
        assert!(run.join(name).exists(), "{name} in {}", run.display());
        assert!(!h.sandbox.join(name).exists(), "{name} in the sandbox");
    }
    let fs = nix::sys::statfs::statfs(&run).unwrap();
    assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
    // Nothing finished yet: nothing to clean.
    assert!(f.rt.cleanup(Duration::ZERO).await.unwrap().is_empty());
    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    assert_eq!(std::fs::read_to_string(h.sandbox.join("data/out")).unwrap(), "data\n");
    // A long retention keeps it.
    assert!(f.rt.cleanup(Duration::from_secs(3600)).await.unwrap().is_empty());
    assert_eq!(f.rt.cleanup(Duration::ZERO).await.unwrap(), vec![id.clone()]);

    assert!(!h.sandbox.exists());
    assert!(!run.exists(), "{} left", run.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(h.sandbox.to_str().unwrap()) && !mounts.contains(&id),
        "mounts left"
    );
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    assert_eq!(links_on(&bridge.name), "");
    assert!(!nat_rules().contains(&format!("tepui:{id}")));
    assert!(!alive(h.pid));
    let lease_dir = f.root.join("net").join(&bridge.name);
    assert_eq!(std::fs::read_dir(lease_dir).unwrap().count(), 0);
    // No process of ours refers to the sandbox any more (shim included).
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).contains(h.sandbox.to_str().unwrap()),
                "process {:?} still refers to the sandbox",
                e.file_name()
            );
        }
    }
    assert!(matches!(f.rt.status(&id).await, Err(Error::NotFound(_))));
    remove_bridge(&bridge.name);
}

#[tokio::test]
async fn logs_rotate_and_follow_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let rt = Runtime::new(
        dir.path().join("agent"),
        RuntimeConfig {
            log_max_bytes: 1000,
            log_max_files: 3,
            ..config(None)
        },
    )
    .unwrap();
    let f = Fixture {
        _dir: dir,
        root: PathBuf::new(),
        rootfs,
        rt,
    };
    // About 2.3 kB: three files of at most 1000 bytes hold all of it.
    let id = task_id("rotate");
    f.rt.launch(&spec(
        &f,
        &id,
        &["sh", "-c", "for i in $(seq 1 300); do echo line $i; done"],
    ))
    .await
    .unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Finished);
    let sandbox = f.rt.sandbox_dir(&id);
    assert!(sandbox.join("stdout.2").exists() && !sandbox.join("stdout.3").exists());
    let all = log(&f.rt, &id, LogStream::Stdout, None).await;
    let want: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    assert_eq!(all, want);
    assert_eq!(
        log(&f.rt, &id, LogStream::Stdout, Some(3)).await,
        "line 298\nline 299\nline 300\n"
    );

    // Following a running task gets what it writes later, and ends when it does.
    let id = task_id("follow");
    f.rt.launch(&spec(
        &f,
        &id,
        &[
            "sh",
            "-c",
            "echo first; sleep 1; for i in $(seq 1 200); do echo later $i; done",
        ],
    ))
    .await
    .unwrap();
    let mut chunks = f.rt.logs(&id, LogStream::Stdout, None, true).await.unwrap();
    let collected = tokio::time::timeout(DEADLINE, async {
        let mut out = Vec::new();
        while let Some(c) = chunks.next().await {
            out.extend(c.unwrap());
        }
        String::from_utf8(out).unwrap()
    })
    .await
    .expect("following ends with the task");
    let want: String = std::iter::once("first\n".to_string())
        .chain((1..=200).map(|i| format!("later {i}\n")))
        .collect();
    assert_eq!(collected, want);
}

#[tokio::test]
async fn users_volumes_read_only_rootfs_and_no_network() {
    let f = fixture(None);
    let id = task_id("confined");
    let mut s = spec(
        &f,
        &id,
        &[
            "sh",
            "-c",
            "id -u; id -g; echo v > /mnt/work/f && echo vol=ok; touch /x 2>/dev/null || echo root=ro; \
             echo t > /tmp/t && echo tmp=ok; ls /sys/class/net",
        ],
    );
    s.user = Some("nobody".into());
    s.read_only_rootfs = true;
    s.network = Network::None;
    s.volumes = vec![tepui_runtime::Volume {
        source: tepui_runtime::VolumeSource::Sandbox("work".into()),
        target: "/mnt/work".into(),
        read_only: false,
    }];
    // The sandbox directory is created by root; let nobody write to it.
    let h = f.rt.launch(&s).await;
    let h = h.unwrap();
    let st = wait(&f.rt, &id).await;
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    let err = log(&f.rt, &id, LogStream::Stderr, None).await;
    assert_eq!(st.state, TaskState::Finished, "{st:?} {out} {err}");
    assert_eq!(out, "65534\n65534\nvol=ok\nroot=ro\ntmp=ok\nlo\n", "{err}");
    assert_eq!(std::fs::read_to_string(h.sandbox.join("data/work/f")).unwrap(), "v\n");

    // Host paths only where the config allows them.
    let mut s = spec(&f, &task_id("hostvol"), &["true"]);
    s.volumes = vec![tepui_runtime::Volume {
        source: tepui_runtime::VolumeSource::Host("/etc".into()),
        target: "/host-etc".into(),
        read_only: true,
    }];
    assert!(matches!(f.rt.launch(&s).await, Err(Error::InvalidSpec(_))));
    // An id that is taken is refused.
    assert!(matches!(
        f.rt.launch(&spec(&f, &id, &["true"])).await,
        Err(Error::Exists(_))
    ));
}

#[tokio::test]
async fn a_dead_shim_is_reported_and_its_task_cleaned_up() {
    let f = fixture(None);
    let id = task_id("orphan");
    let h = f.rt.launch(&spec(&f, &id, &["sleep", "1000"])).await.unwrap();
    let shim_pid: i32 = std::fs::read_to_string(f.rt.run_dir(&id).join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(shim_pid));
    // SAFETY: kill(2) on the shim this test started.
    assert_eq!(unsafe { libc::kill(shim_pid, libc::SIGKILL) }, 0);
    let start = Instant::now();
    while alive(shim_pid) {
        assert!(start.elapsed() < DEADLINE, "shim survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let adopted = f.rt.adopt().await.unwrap();
    let (_, st) = adopted.iter().find(|(i, _)| *i == id).unwrap();
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.reason, Some(Reason::ShimLost));
    assert!(!alive(h.pid), "the task outlived its shim's cleanup");
    assert!(cgroup_dirs(&id).is_empty());
    // The recorded status stays.
    assert_eq!(f.rt.status(&id).await.unwrap().reason, Some(Reason::ShimLost));
}

#[tokio::test]
async fn one_spawner_forks_the_shims_and_a_new_one_replaces_it_when_killed() {
    let f = fixture(None);
    let first = task_id("spawned");
    let h = f.rt.launch(&spec(&f, &first, &["sleep", "1000"])).await.unwrap();
    let spawner = f.rt.spawner_pid().expect("the first launch started a spawner") as i32;
    let shim_pid = |run_dir: &Path| -> i32 {
        std::fs::read_to_string(run_dir.join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let shim = shim_pid(&f.rt.run_dir(&first));
    // After the command name: state, parent, process group, session.
    let stat_fields = |pid: i32| -> Vec<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1.to_string();
        rest.split_whitespace()
            .skip(1)
            .take(3)
            .map(|f| f.parse().unwrap())
            .collect()
    };
    // The spawner's child (one fork), in a session of its own, showing its sandbox in ps as an
    // executed shim would.
    let [ppid, _, session] = stat_fields(shim)[..] else {
        unreachable!()
    };
    assert_eq!(ppid, spawner);
    assert_eq!(session, shim);
    let cmdline = std::fs::read(format!("/proc/{shim}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains(&format!("shim --sandbox {}", h.sandbox.display())),
        "{cmdline:?}"
    );

    // SAFETY: kill(2) on the spawner this test's runtime started.
    assert_eq!(unsafe { libc::kill(spawner, libc::SIGKILL) }, 0);
    let second = task_id("respawned");
    f.rt.launch(&spec(&f, &second, &["sh", "-c", "echo again"]))
        .await
        .unwrap();
    assert_eq!(wait(&f.rt, &second).await.state, TaskState::Finished);
    assert_eq!(log(&f.rt, &second, LogStream::Stdout, None).await, "again\n");
    let respawned = f.rt.spawner_pid().expect("a new spawner") as i32;
    assert_ne!(respawned, spawner);
    assert!(!alive(spawner), "the killed spawner was reaped");
    let second_shim = shim_pid(&f.rt.run_dir(&second));
    assert_ne!(second_shim, shim);
    // A shim that ended was reaped (the spawner ignores SIGCHLD): no zombie is left.
    wait_until(&format!("shim {second_shim} is still in /proc"), || {
        !Path::new(&format!("/proc/{second_shim}")).exists()
    })
    .await;

    // The first task never noticed: its shim went on, a child of init (or a subreaper) now.
    assert!(alive(h.pid) && alive(shim));
    assert_ne!(stat_fields(shim)[0], spawner);
    f.rt.kill(&first).await.unwrap();
    assert_eq!(wait(&f.rt, &first).await.state, TaskState::Killed);
}

#[tokio::test]
async fn without_a_spawner_the_shim_is_executed() {
    let f = fixture_with(None, |_, c| c.shim_args = vec!["shim-without-spawner".into()]);
    let id = task_id("executed");
    let h =
        f.rt.launch(&spec(&f, &id, &["sh", "-c", "echo executed"]))
            .await
            .unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Finished);
    assert_eq!(log(&f.rt, &id, LogStream::Stdout, None).await, "executed\n");
    assert!(!alive(h.pid));
}

#[tokio::test]
async fn signal_dispositions_are_default_in_the_task() {
    let f = fixture(None);
    let id = task_id("signals");
    f.rt.launch(&spec(&f, &id, &["grep", "-E", "SigIgn|SigBlk", "/proc/self/status"]))
        .await
        .unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Finished);
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    assert_eq!(
        out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        "the task inherited ignored or blocked signals"
    );
}

// Hardening: what a task cannot do. Each of these asks for root where the point is that even
// root inside the container is stopped (by seccomp, capabilities, device rules, masked and
// read-only paths), so that they fail if that protection goes.

/// Runs `script` with `sh -c` as `user` to its end: state, stdout, stderr.
async fn run_script(f: &Fixture, name: &str, user: Option<&str>, script: &str) -> (TaskState, String, String) {
    let id = task_id(name);
    let mut s = spec(f, &id, &["sh", "-c", script]);
    s.user = user.map(String::from);
    f.rt.launch(&s).await.unwrap();
    let st = wait(&f.rt, &id).await;
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    let err = log(&f.rt, &id, LogStream::Stderr, None).await;
    (st.state, out, err)
}

#[tokio::test]
async fn the_default_user_is_nobody_and_root_must_be_asked_for() {
    let f = fixture(None);
    let script = "id -u; id -g; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status";
    let (state, out, err) = run_script(&f, "user-default", None, script).await;
    assert_eq!(state, TaskState::Finished, "{err}");
    assert_eq!(
        out,
        "65534\n65534\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    // Root when asked: Docker's capabilities without NET_RAW (bit 13), still filtered.
    let (state, out, err) = run_script(&f, "user-root", Some("root"), script).await;
    assert_eq!(state, TaskState::Finished, "{err}");
    assert_eq!(out, "0\n0\nCapEff:\t00000000a80405fb\nNoNewPrivs:\t1\nSeccomp:\t2\n");
}

#[tokio::test]
async fn the_root_filesystem_has_no_setuid_programs_or_devices() {
    let f = fixture(None);
    // Field 5 of mountinfo is the mount point, field 6 its options.
    let (state, out, err) = run_script(
        &f,
        "root-flags",
        None,
        "awk '$5 == \"/\" { print $6 }' /proc/self/mountinfo",
    )
    .await;
    assert_eq!(state, TaskState::Finished, "{err}");
    let opts = out.lines().last().unwrap_or_default();
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "root mounted {opts:?}"
    );
}

#[tokio::test]
async fn even_root_cannot_make_a_block_device() {
    let f = fixture(None);
    let script = "mknod /dev/fifo p && echo fifo=ok; mknod /dev/disk b 8 0 && echo disk=made";
    let (_, out, err) = run_script(&f, "mknod", Some("root"), script).await;
    assert_eq!(out, "fifo=ok\n", "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[tokio::test]
async fn device_rules_allow_only_the_usual_devices() {
    let f = fixture(None);
    // A character device can be made (mknod c is allowed), but not opened: /dev/mem is
    // not on the allow-list; /dev/zero is.
    let script =
        "head -c 3 /dev/zero | wc -c; mknod /dev/mem2 c 1 1 && echo made; head -c 1 /dev/mem2 && echo read=mem";
    let (_, out, err) = run_script(&f, "devices", Some("root"), script).await;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["3", "made"], "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[tokio::test]
async fn even_root_cannot_mount() {
    let f = fixture(None);
    let (_, out, err) = run_script(&f, "mount", Some("root"), "mount -t tmpfs none /tmp && echo mounted").await;
    assert_eq!(out, "", "{err}");
    // busybox says EPERM its own way.
    assert!(err.contains("permission denied"), "{err}");
}

#[tokio::test]
async fn even_root_cannot_load_a_module() {
    let f = fixture(None);
    // Not a module at all: without the filter and capabilities, the kernel would say so
    // (ENOEXEC); refused before it looks, it says EPERM.
    let script = "echo nothing > /tmp/m.ko; insmod /tmp/m.ko && echo loaded";
    let (_, out, err) = run_script(&f, "insmod", Some("root"), script).await;
    assert_eq!(out, "", "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[tokio::test]
async fn no_user_namespaces_inside() {
    let f = fixture(None);
    for (name, user) in [("unshare", None), ("unshare-root", Some("root"))] {
        let (_, out, err) = run_script(&f, name, user, "unshare -U id -u && echo unshared").await;
        assert_eq!(out, "", "as {user:?}: {err}");
        assert!(err.contains("Operation not permitted"), "as {user:?}: {err}");
    }
}

#[tokio::test]
async fn proc_sys_is_read_only() {
    let f = fixture(None);
    // domainname is per UTS namespace: were this to pass, it would touch no other task.
    let script = "echo tepui > /proc/sys/kernel/domainname && echo written; cat /proc/sys/kernel/ostype";
    let (_, out, err) = run_script(&f, "sysctl", Some("root"), script).await;
    assert_eq!(out, "Linux\n", "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
}

/// The cgroup file of the pids controller for a task (v1 or v2).
fn pids_file(id: &str, name: &str) -> Option<PathBuf> {
    ["/sys/fs/cgroup/pids/tepui", "/sys/fs/cgroup/tepui"]
        .iter()
        .map(|d| Path::new(d).join(id).join(name))
        .find(|p| p.exists())
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_default_pids_limit() {
    let f = fixture_with(None, |_, c| c.default_pids = 100);
    let id = task_id("forkbomb");
    let mut s = spec(&f, &id, &["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 1000"]);
    s.pids = None;
    s.mem_mb = Some(512);
    s.kill_grace_period = Duration::ZERO;
    f.rt.launch(&s).await.unwrap();
    // The kernel refuses forks past the limit and counts them.
    let start = Instant::now();
    loop {
        let max_hits = pids_file(&id, "pids.events")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        if max_hits > 0 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "the bomb never reached a pids limit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let limit = std::fs::read_to_string(pids_file(&id, "pids.max").unwrap()).unwrap();
    assert_eq!(limit.trim(), "100");
    let current: u64 = std::fs::read_to_string(pids_file(&id, "pids.current").unwrap())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 100, "{current} processes");
    // The node carries on: another task runs, and the bomb is killed whole.
    let (state, out, _) = run_script(&f, "after-bomb", None, "echo alive").await;
    assert_eq!((state, out.as_str()), (TaskState::Finished, "alive\n"));
    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    assert!(cgroup_dirs(&id).is_empty());
}

/// A plain shell command runs without the shell: the task's process is the program itself.
/// What the shell interprets still goes through it.
#[tokio::test]
async fn a_plain_shell_command_runs_without_the_shell() {
    let f = fixture(None);
    let id = task_id("noshell");
    let h =
        f.rt.launch(&spec(&f, &id, &["/bin/sh", "-c", "sleep 1000"]))
            .await
            .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", h.pid)).unwrap();
    assert_eq!(comm.trim(), "sleep");
    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);

    let id = task_id("withshell");
    f.rt.launch(&spec(&f, &id, &["/bin/sh", "-c", "exit 3"])).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.exit_code, Some(3));
    let id = task_id("notfound");
    f.rt.launch(&spec(&f, &id, &["/bin/sh", "-c", "nosuch-program"]))
        .await
        .unwrap();
    assert_eq!(wait(&f.rt, &id).await.exit_code, Some(127), "the shell's own answer");
}

/// On cgroup v1 the kernel fills a new task's cpuset from the parent's when it makes the
/// cgroup (`cgroup.clone_children`), so starting a task writes no cpuset: each such write
/// walked every sibling and rebuilt the scheduler domains.
#[tokio::test]
async fn the_kernel_fills_each_task_cpuset_from_the_parent() {
    let cpuset = Path::new("/sys/fs/cgroup/cpuset");
    if !cpuset.join("cpuset.cpus").is_file() {
        eprintln!("no v1 cpuset hierarchy here: nothing to check");
        return;
    }
    // A parent of its own: the flag is set once per parent and would outlive the test.
    let parent_name = format!("tepui-cpuset-{}", std::process::id());
    let parent = cpuset.join(&parent_name);
    let f = fixture_with(None, |_, c| c.cgroup_parent = format!("/{parent_name}"));
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(read(parent.join("cgroup.clone_children")).trim(), "1");
    assert_eq!(read(parent.join("cpuset.cpus")), read(cpuset.join("cpuset.cpus")));
    let id = task_id("cpuset");
    f.rt.launch(&spec(&f, &id, &["sleep", "1000"])).await.unwrap();
    let task = parent.join(&id);
    assert_eq!(read(task.join("cpuset.cpus")), read(parent.join("cpuset.cpus")));
    assert_eq!(read(task.join("cpuset.mems")), read(parent.join("cpuset.mems")));
    f.rt.kill(&id).await.unwrap();
    assert_eq!(wait(&f.rt, &id).await.state, TaskState::Killed);
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(e.path().join(&parent_name));
    }
}

#[tokio::test]
async fn host_tasks_do_not_see_password_hashes_keys_or_agent_data() {
    // A host directory tasks see, with the agent's secrets in it; not under /tmp, which host
    // tasks get empty.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let shared = host.path().join("hostdata");
    let f = fixture_with(None, |_, c| {
        std::fs::create_dir_all(shared.join("agent")).unwrap();
        std::fs::write(shared.join("agent/key.pem"), "SECRET").unwrap();
        std::fs::write(shared.join("public"), "PUBLIC").unwrap();
        c.host_binds.push(shared.clone());
        c.host_masks.push(shared.join("agent"));
    });
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    assert!(shadow.contains("root:"), "the host has an /etc/shadow to hide");
    let id = task_id("hostmask");
    let script = format!(
        "grep -c root: /etc/shadow; grep -c root: /etc/gshadow; cat {0}/public; echo; ls {0}/agent | wc -l; cat /etc/passwd | grep -c ^root:",
        shared.display()
    );
    let mut s = spec(&f, &id, &["sh", "-c", &script]);
    s.rootfs = Rootfs::Host;
    s.user = Some("root".into());
    f.rt.launch(&s).await.unwrap();
    let st = wait(&f.rt, &id).await;
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    let err = log(&f.rt, &id, LogStream::Stderr, None).await;
    // Even root reads nothing from the hashes; the agent's dir is empty; the rest is there.
    assert_eq!(out, "0\n0\nPUBLIC\n0\n1\n", "{st:?} {err}");
}

#[tokio::test]
async fn a_host_volume_swapped_for_a_symlink_does_not_escape() {
    // The shim is started through a wrapper that swaps the volume for a link to a secret
    // directory: after the agent checked the path, before the container mounts it.
    let f = fixture_with(None, |dir, c| {
        let allowed = dir.join("allowed");
        std::fs::create_dir_all(allowed.join("vol")).unwrap();
        std::fs::create_dir_all(dir.join("secret")).unwrap();
        std::fs::write(dir.join("secret/data"), "SECRET").unwrap();
        c.allowed_host_volumes = vec![allowed.clone()];
        let swap = format!(
            "mv {a}/vol {a}/vol.old && ln -s {s} {a}/vol && exec \"$0\" \"$@\"",
            a = allowed.display(),
            s = dir.join("secret").display()
        );
        c.shim_args = vec!["-c".into(), swap, shim().display().to_string(), "shim".into()];
        c.shim_program = "/bin/sh".into();
    });
    let dir = f.root.parent().unwrap().to_path_buf();
    let id = task_id("swap");
    let mut s = spec(&f, &id, &["cat", "/data/data"]);
    s.volumes = vec![tepui_runtime::Volume {
        source: tepui_runtime::VolumeSource::Host(dir.join("allowed/vol")),
        target: "/data".into(),
        read_only: true,
    }];
    let launched = f.rt.launch(&s).await;
    assert!(dir.join("allowed/vol").is_symlink(), "the wrapper swapped the volume");
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    assert!(!out.contains("SECRET"), "the task read the secret through the link");
    match launched {
        Err(Error::StartFailed { message, .. }) => assert!(message.contains("host volume"), "{message}"),
        other => panic!("the launch went on: {other:?}"),
    }
}

#[tokio::test]
async fn with_user_namespaces_root_inside_is_an_unprivileged_id_outside() {
    let f = fixture_with(None, |_, c| c.userns_base = Some(300_000));
    let id = task_id("userns");
    let mut s = spec(&f, &id, &["sh", "-c", "id -u; cat /proc/self/uid_map; exec sleep 1000"]);
    s.user = Some("root".into());
    s.kill_grace_period = Duration::ZERO;
    let h = match f.rt.launch(&s).await {
        Ok(h) => h,
        Err(e) => panic!(
            "{e}: {}",
            std::fs::read_to_string(f.rt.sandbox_dir(&id).join("shim.log")).unwrap_or_default()
        ),
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    // Both lines printed before the kill.
    let start = Instant::now();
    while log(&f.rt, &id, LogStream::Stdout, None).await.lines().count() < 2 {
        assert!(start.elapsed() < DEADLINE, "the task printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.rt.kill(&id).await.unwrap();
    let st = wait(&f.rt, &id).await;
    let out = log(&f.rt, &id, LogStream::Stdout, None).await;
    let err = log(&f.rt, &id, LogStream::Stderr, None).await;
    assert_eq!(st.state, TaskState::Killed, "{st:?} {err}");
    assert_eq!(uid_line.split_whitespace().nth(1), Some("300000"), "{uid_line}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out} {err}");
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "300000", "65536"])
    );
}
