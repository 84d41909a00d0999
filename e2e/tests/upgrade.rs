//! A rolling upgrade from the previous release (named by e2e/previous-release, built once
//! from its tag) to this one, with a workload running, as separate processes on 127.0.97.x:
//! three servers and two agents of the old binary run an app of three instances while a
//! writer puts a variable in a loop; `operator upgrade-check` says the new binary can be
//! taken; the servers are replaced one at a time (the leader last), each started by the new
//! binary on its old data dir and addresses, then the agents. No instance restarts (same task
//! ids, start times and processes, no task launched), writes are refused for less than about
//! one election at a time, and what the old cluster wrote is read by the new one.
//!
//! Needs root (the instances run as tasks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tepui_api::{MemberView, NodeView, StatusView, TaskView, UpgradeCheckView, VarView};
use tepui_e2e::marathon::Marathon;
use tepui_e2e::previous::{previous_release, previous_tepui};
use tepui_e2e::{
    http_addr, need_root, spawn_agent_bin, spawn_servers_bin, tepui, tepui_bin, wait_for, Daemon, MarkedProcesses,
    Sandbox, MARKER_VAR,
};

const SERVERS: [(&str, &str); 3] = [("s1", "127.0.97.1"), ("s2", "127.0.97.2"), ("s3", "127.0.97.3")];
const AGENTS: [(&str, &str); 2] = [("a1", "127.0.97.4"), ("a2", "127.0.97.5")];
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
const APP: &str = "/upgrade/sleepy";
/// About one election (1.2 to 1.6 s) with room for a loaded machine.
const MAX_REFUSAL: Duration = Duration::from_secs(5);

fn server_args(sb: &Sandbox, name: &str, ip: &str) -> Vec<String> {
    let dir = sb.join(name).display().to_string();
    ["server", "--data-dir", &dir, "--bind", ip, "--name", name]
        .map(String::from)
        .to_vec()
}

/// The agent's own flags: its ports and a bridge of this test's.
fn agent_extra(i: usize) -> Vec<String> {
    vec![
        "--ports".into(),
        format!("339{}0-339{}9", 7 + i, 7 + i),
        "--heartbeat-secs".into(),
        "0.5".into(),
        "--bridge".into(),
        format!("tpe2e-upg{i}"),
        "--bridge-subnet".into(),
        format!("10.214.{}.0/24", 97 + i),
    ]
}

fn agent_args(sb: &Sandbox, i: usize) -> Vec<String> {
    let (name, ip) = AGENTS[i];
    let dir = sb.join(name).display().to_string();
    let mut args: Vec<String> = ["agent", "--data-dir", &dir, "--bind", ip, "--name", name]
        .map(String::from)
        .to_vec();
    args.extend(agent_extra(i));
    args
}

fn members(addr: &str) -> Result<Vec<MemberView>, String> {
    tepui(&["server", "members", "-o", "json", "--addr", addr]).try_json()
}

fn nodes(addr: &str) -> Result<BTreeMap<String, NodeView>, String> {
    let list: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", addr]).try_json()?;
    Ok(list.into_iter().map(|n| (n.name.clone(), n)).collect())
}

fn status(addr: &str) -> Result<StatusView, String> {
    tepui(&["status", "-o", "json", "--addr", addr]).try_json()
}

/// What the server on `addr` says it runs (`/v1/health`, answered by itself).
fn release_of(addr: &str) -> Result<String, String> {
    let h = Marathon::new(addr).get("/v1/health")?;
    h["version"].as_str().map(str::to_string).ok_or_else(|| format!("{h}"))
}

fn upgrade_check(addr: &str, binary: &Path) -> UpgradeCheckView {
    let bin = binary.display().to_string();
    tepui(&[
        "operator",
        "upgrade-check",
        "--binary",
        &bin,
        "-o",
        "json",
        "--addr",
        addr,
    ])
    .ok()
    .json()
}

/// The app's instances: task id -> (state, startedAt).
fn instances(m: &Marathon) -> Result<BTreeMap<String, (String, String)>, String> {
    let app = m.app(APP)?;
    Ok(app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("id"), (s("state"), s("startedAt")))
        })
        .collect())
}

fn all_task_ids(addr: &str) -> Result<BTreeSet<String>, String> {
    let tasks: Vec<TaskView> = tepui(&["task", "ls", "-o", "json", "--addr", addr]).try_json()?;
    Ok(tasks.into_iter().map(|t| t.id).collect())
}

/// Writes in a loop through any server that answers, as a client that knows them all does:
/// a server that is down (connection refused) is skipped; a round in which no server took
/// the write is a refusal, and the longest run of refusals is what the test bounds.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default, Debug)]
struct WriteLog {
    written: u64,
    refused_rounds: u64,
    longest: Duration,
    /// Since when no write got through, while none does.
    refusing_since: Option<Instant>,
    last_refusal: String,
}

impl Writer {
    fn start(addrs: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rustls::crypto::ring::default_provider().install_default();
            // reqwest's client needs the runtime's reactor when it is built.
            let _in_runtime = rt.enter();
            let http = tepui_e2e::http_client()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                n += 1;
                let mut why = String::new();
                let mut ok = false;
                for addr in &addrs {
                    let url = format!("http://{addr}/v1/vars/upgrade/writer");
                    let sent = rt.block_on(http.put(&url).json(&json!({"value": n.to_string()})).send());
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            ok = true;
                            break;
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = rt.block_on(r.text()).unwrap_or_default();
                            why = format!("{addr}: {status} {body}");
                        }
                        // Down: a client goes to the next server.
                        Err(e) if e.is_connect() => continue,
                        Err(e) => why = format!("{addr}: {e}"),
                    }
                }
                let mut log = log2.lock().unwrap();
                let now = Instant::now();
                if ok {
                    log.written += 1;
                    if let Some(since) = log.refusing_since.take() {
                        log.longest = log.longest.max(now - since);
                    }
                } else {
                    log.refused_rounds += 1;
                    let since = *log.refusing_since.get_or_insert(now);
                    log.longest = log.longest.max(now - since);
                    log.last_refusal = why;
                }
                drop(log);
                // The workload's pace, not a wait for anything.
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn written(&self) -> u64 {
        let ended = self.thread.as_ref().is_none_or(|t| t.is_finished());
        assert!(!ended, "the writer ended early (it panicked)");
        self.log.lock().unwrap().written
    }

    fn finish(mut self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the writer ends");
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits until the server on `addr` runs `release` and is a voter the leader has replicated
/// to at least `index`.
fn wait_member(addr: &str, name: &str, release: &str, index: u64) {
    wait_for(&format!("{name} to run {release}"), START, || {
        let r = release_of(addr)?;
        (r == release).then_some(()).ok_or(r)
    });
    wait_for(&format!("{name} to be a voter caught up to {index}"), SETTLE, || {
        let m = members(addr)?;
        let me = m.iter().find(|m| m.name == name).ok_or("not a member")?;
        let leaders = m.iter().filter(|m| m.raft_role == "leader").count();
        let caught_up = me.raft_role == "leader" || me.matched_index.is_some_and(|i| i >= index);
        if me.voter && caught_up && leaders == 1 && m.len() == 3 {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });
}

#[test]
fn a_rolling_upgrade_from_the_previous_release_keeps_tasks_and_writes() {
    need_root();
    let old: PathBuf = previous_tepui();
    let new = tepui_bin();
    let (tag, _) = previous_release();
    let old_release = tag.trim_start_matches('v').to_string();
    let new_release = {
        let v: Value = tepui(&["version", "-o", "json"]).ok().json();
        v["version"].as_str().unwrap().to_string()
    };
    assert_ne!(old_release, new_release);
    let started = Instant::now();

    let marked = MarkedProcesses::new("upgrade");
    let sb = Sandbox::new("upgrade");
    let ips: Vec<&str> = SERVERS.iter().map(|s| s.1).collect();
    let mut servers: Vec<Daemon> = spawn_servers_bin(&sb, &old, &ips, &[], START);
    let mut agents: Vec<Daemon> = (0..2)
        .map(|i| {
            let extra = agent_extra(i);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            spawn_agent_bin(&sb, &old, SERVERS[0].1, AGENTS[i].0, AGENTS[i].1, &extra, START)
        })
        .collect();
    let s1 = http_addr(SERVERS[0].1);
    let addrs: Vec<String> = SERVERS.iter().map(|s| http_addr(s.1)).collect();
    wait_for("3 voters and 2 ready agents of the old release", SETTLE, || {
        let m = members(&s1)?;
        let n = nodes(&s1)?;
        let ready = AGENTS
            .iter()
            .all(|(a, _)| n.get(*a).is_some_and(|n| n.status == "ready"));
        if m.iter().filter(|m| m.voter).count() == 3 && ready {
            Ok(())
        } else {
            Err(format!("{m:?} {n:?}"))
        }
    });
    for addr in &addrs {
        assert_eq!(release_of(addr).unwrap(), old_release);
    }

    // What the old cluster holds before the upgrade.
    tepui(&[
        "var",
        "put",
        "upgrade/before",
        "written-by-the-old-release",
        "--addr",
        &s1,
    ])
    .ok();
    let m = Marathon::new(&s1);
    m.call(
        Method::POST,
        "/v2/apps",
        Some(&json!({
            "id": APP, "instances": 3, "cpus": 0.05, "mem": 16, "cmd": "exec sleep 1000",
            "env": {MARKER_VAR: marked.value()},
        })),
    )
    .expect(201, "create the app");
    m.wait_settled(APP, 3, None, SETTLE);
    let before = wait_for("three running instances with start times", SETTLE, || {
        let i = instances(&m)?;
        let all_started = i.values().all(|(s, at)| s == "TASK_RUNNING" && !at.is_empty());
        if i.len() == 3 && all_started {
            Ok(i)
        } else {
            Err(format!("{i:?}"))
        }
    });
    let tasks_before = all_task_ids(&s1).unwrap();
    let pids_before: BTreeSet<i32> = wait_for("the instances' processes", SETTLE, || {
        let p: BTreeSet<i32> = marked.pids().into_iter().collect();
        if p.len() == 3 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });

    // The new binary's check against the old cluster: every node can take it.
    let check = upgrade_check(&s1, &new);
    eprintln!("upgrade-check before: {check:?}");
    assert!(check.ok, "{check:?}");
    assert_eq!(check.binary.release, new_release);
    assert_eq!(check.cluster_protocol, 1, "0.1.0 servers speak protocol 1");
    assert_eq!(check.nodes.len(), 5, "{check:?}");
    assert!(
        check.nodes.iter().all(|n| n.release == old_release && n.ok),
        "{check:?}"
    );
    assert_eq!(check.nodes.iter().filter(|n| n.role == "server").count(), 3);
    let table = tepui(&["operator", "upgrade-check", "--addr", &s1]).ok();
    assert!(
        table.stdout.contains("servers first") && table.stdout.contains("can be taken"),
        "{table}"
    );
    let unknown = tepui(&["operator", "upgrade-check", "--version", "9.9.9", "--addr", &s1]);
    assert!(
        !unknown.success() && unknown.stderr.contains("unknown release"),
        "{unknown}"
    );

    let writer = Writer::start(addrs.clone());
    wait_for("the writer to write", SETTLE, || {
        (writer.written() >= 10).then_some(()).ok_or(writer.written())
    });

    // Servers first, one at a time, the leader last.
    let leader = status(&s1).unwrap().leader.expect("a leader").name;
    let mut order: Vec<usize> = (0..3).filter(|i| SERVERS[*i].0 != leader).collect();
    order.extend((0..3).filter(|i| SERVERS[*i].0 == leader));
    for i in order {
        let (name, ip) = SERVERS[i];
        let addr = http_addr(ip);
        servers[i].terminate(Duration::from_secs(20));
        servers[i].start_bin(&new, &server_args(&sb, name, ip));
        servers[i].wait_ready(START);
        let index = wait_for("a commit index through a server", SETTLE, || {
            addrs
                .iter()
                .find_map(|a| status(a).ok())
                .map(|s| s.commit_index)
                .ok_or("no server answered")
        });
        wait_member(&addr, name, &new_release, index);
        eprintln!("{name} upgraded after {:?}", started.elapsed());
    }
    // Every server speaks the new protocol: the cluster does, and says so.
    let check = wait_for("the new leader to hear every server", SETTLE, || {
        let c = upgrade_check(&s1, &new);
        let servers_new = c
            .nodes
            .iter()
            .filter(|n| n.role == "server")
            .all(|n| n.heard && n.release == new_release);
        if servers_new && c.cluster_protocol == 2 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    });
    assert!(check.ok, "{check:?}");
    let n = nodes(&s1).unwrap();
    for (name, _) in SERVERS {
        assert_eq!(n[name].version.as_deref(), Some(new_release.as_str()), "{n:?}");
    }
    assert!(
        check
            .nodes
            .iter()
            .filter(|n| n.role == "agent")
            .all(|n| n.release == old_release && n.protocol == 1),
        "the agents still run the old release: {check:?}"
    );

    // Then the agents, one at a time: their tasks run on and are adopted again.
    for i in 0..2 {
        let (name, _) = AGENTS[i];
        agents[i].terminate(Duration::from_secs(20));
        agents[i].start_bin(&new, &agent_args(&sb, i));
        agents[i].wait_ready(START);
        wait_for(&format!("{name} to register with {new_release}"), SETTLE, || {
            let n = nodes(&s1)?;
            let a = n.get(name).ok_or("gone")?;
            if a.status == "ready" && a.version.as_deref() == Some(new_release.as_str()) {
                Ok(())
            } else {
                Err(format!("{a:?}"))
            }
        });
        let format = std::fs::read_to_string(sb.join(name).join("format")).unwrap();
        assert!(format.contains("\"format\":2"), "{format}");
        eprintln!("{name} upgraded after {:?}", started.elapsed());
    }

    // Writes go on after the last agent too.
    let so_far = writer.written();
    wait_for("writes after the upgrade", SETTLE, || {
        let w = writer.written();
        (w >= so_far + 10).then_some(()).ok_or(w)
    });
    let log = writer.finish();
    eprintln!("writes: {log:?}");
    assert!(log.written >= 20, "{log:?}");
    assert!(
        log.longest < MAX_REFUSAL,
        "writes were refused for {:?} at a time (more than one election); last: {}",
        log.longest,
        log.last_refusal
    );

    // No instance restarted, and nothing new was launched. (A new client: the old one's
    // connections went with the servers.)
    let m = Marathon::new(&s1);
    let after = wait_for("the app's instances", SETTLE, || instances(&m));
    assert_eq!(after, before, "the same instances, running since the same time");
    assert_eq!(all_task_ids(&s1).unwrap(), tasks_before, "no task was launched");
    let pids_after: BTreeSet<i32> = marked.pids().into_iter().collect();
    assert_eq!(pids_after, pids_before, "the same processes");

    // The new servers read the old data dirs: what the old cluster wrote is there.
    for addr in &addrs {
        let v: VarView = tepui(&["var", "get", "upgrade/before", "-o", "json", "--addr", addr])
            .ok()
            .json();
        assert_eq!(v.value, "written-by-the-old-release");
    }
    let check = upgrade_check(&s1, &new);
    assert!(
        check
            .nodes
            .iter()
            .all(|n| n.release == new_release && n.protocol == 2 && n.heard && n.ok),
        "{check:?}"
    );
    // The previous release cannot join back any more: every server writes protocol 2.
    let back = tepui(&[
        "operator",
        "upgrade-check",
        "--binary",
        &old.display().to_string(),
        "--addr",
        &s1,
    ]);
    assert!(!back.success() && back.stdout.contains("writes protocol 2"), "{back}");
    eprintln!("upgrade test took {:?}", started.elapsed());
    drop(agents);
    drop(servers);
}
