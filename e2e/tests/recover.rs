//! Recovery from a lost quorum by one command, with real processes on 127.0.91.x: three
//! servers and an agent running an app; two servers are killed with -9 and their data dirs
//! deleted; the survivor cannot write. Stopped, `tepui operator recover` makes it the only
//! voter; started again it leads a cluster of one with everything it had, the agent comes back
//! by itself with the app's processes never restarted, and two new servers `tepui join` it.
//!
//! Needs root (the app's instances run as tasks).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tepui_api::{MemberView, NodeView, StatusView, TokenCreated, VarView};
use tepui_e2e::{
    cluster_addr, http_addr, need_root, spawn_agent, spawn_servers, tepui, tepui_with_timeout, wait_for, Daemon,
    MarkedProcesses, Sandbox, MARKER_VAR,
};

const IPS: [&str; 3] = ["127.0.91.1", "127.0.91.2", "127.0.91.3"];
const AGENT_IP: &str = "127.0.91.4";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
const APP: &str = "/recover/sleepy";

fn server_flags(sb: &Sandbox, name: &str, ip: &str) -> Vec<String> {
    vec![
        "--data-dir".into(),
        sb.join(name).display().to_string(),
        "--bind".into(),
        ip.into(),
        "--name".into(),
        name.into(),
    ]
}

fn members(addr: &str) -> Result<Vec<MemberView>, String> {
    tepui(&["server", "members", "-o", "json", "--addr", addr]).try_json()
}

fn nodes(addr: &str) -> Result<Vec<NodeView>, String> {
    tepui(&["node", "ls", "-o", "json", "--addr", addr]).try_json()
}

/// The app's instances: task id -> (state, startedAt).
fn instances(addr: &str) -> Result<Vec<(String, String, String)>, String> {
    let app: Value = tepui(&["app", "show", APP, "-o", "json", "--addr", addr]).try_json()?;
    let mut out: Vec<(String, String, String)> = app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("state"), s("startedAt"))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn running_instances(addr: &str, n: usize) -> Result<Vec<(String, String, String)>, String> {
    let i = instances(addr)?;
    if i.len() == n
        && i.iter()
            .all(|(_, state, started)| state == "TASK_RUNNING" && !started.is_empty())
    {
        Ok(i)
    } else {
        Err(format!("{i:?}"))
    }
}

#[test]
fn a_survivor_recovers_the_cluster_with_its_apps_running() {
    need_root();
    let marked = MarkedProcesses::new("recover");
    let sb = Sandbox::new("recover");
    let mut servers = spawn_servers(&sb, &IPS, &[], START);
    let mut agent = spawn_agent(
        &sb,
        IPS[0],
        "a1",
        AGENT_IP,
        &[
            "--ports",
            "33910-33919",
            "--heartbeat-secs",
            "0.5",
            "--bridge",
            "tpe2e-rcv",
            "--bridge-subnet",
            "10.214.91.0/24",
        ],
        START,
    );
    let s1 = http_addr(IPS[0]);
    wait_for("3 voters with a leader", SETTLE, || {
        let m = members(&s1)?;
        let leaders = m.iter().filter(|m| m.raft_role == "leader").count();
        if m.iter().filter(|m| m.voter).count() == 3 && leaders == 1 {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });

    // An app of two sleeps, and a variable: what the cluster holds before the disaster.
    let marker = format!("{MARKER_VAR}={}", marked.value());
    let created = tepui_with_timeout(
        &[
            "app",
            "run",
            "--name",
            APP,
            "--cmd",
            "exec sleep 1000",
            "--cpus",
            "0.1",
            "--mem",
            "16",
            "--instances",
            "2",
            "-e",
            &marker,
            "--wait",
            "--addr",
            &s1,
        ],
        SETTLE,
    );
    created.ok();
    let before = wait_for("two running instances", SETTLE, || running_instances(&s1, 2));
    let pids_before: BTreeSet<i32> = wait_for("the instances' processes", SETTLE, || {
        let p: BTreeSet<i32> = marked.pids().into_iter().collect();
        if p.len() == 2 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    tepui(&["var", "put", "before", "disaster", "--addr", &s1]).ok();

    // The leader and the other follower die at once, their disks with them.
    let status: StatusView = tepui(&["status", "-o", "json", "--addr", &s1]).ok().json();
    let leader = status.leader.expect("a leader").name;
    let survivor = ["s1", "s2", "s3"]
        .into_iter()
        .position(|n| n != leader)
        .expect("a follower");
    let lost: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for i in &lost {
        servers[*i].kill();
    }
    for i in &lost {
        std::fs::remove_dir_all(sb.join(format!("s{}", i + 1))).unwrap();
    }
    let (sname, sip) = (format!("s{}", survivor + 1), IPS[survivor]);
    let saddr = http_addr(sip);

    // Alone, it cannot write: no quorum, no leader.
    let refused = tepui(&["var", "put", "during", "outage", "--addr", &saddr]);
    assert!(!refused.success(), "a write without a quorum: {refused}");
    eprintln!("refused: {}", refused.stderr.trim());

    // Recovery refuses a running server, then runs on the stopped one.
    let dir = sb.join(&sname).display().to_string();
    let busy = tepui(&["operator", "recover", "--data-dir", &dir]);
    assert!(
        !busy.success() && busy.stderr.contains("stop the server first"),
        "{busy}"
    );
    servers[survivor].terminate(Duration::from_secs(20));
    let recovered = tepui(&["operator", "recover", "--data-dir", &dir]).ok();
    let said = &recovered.stdout;
    eprintln!("{said}");
    assert!(
        said.contains(&format!("{sname} (node ")) && said.contains("is now the only voter"),
        "{said}"
    );
    assert!(
        said.contains("last entry:") && said.contains("what may be lost"),
        "{said}"
    );
    for i in &lost {
        let gone = format!("  s{} (node ", i + 1);
        assert!(said.contains(&gone), "{gone} is among the removed: {said}");
    }

    // Started again, it leads a cluster of one with what it had.
    servers[survivor].restart(&{
        let mut args = vec!["server".to_string()];
        args.extend(server_flags(&sb, &sname, sip));
        args
    });
    servers[survivor].wait_ready(START);
    let m = wait_for("the survivor to lead alone", SETTLE, || {
        let m = members(&saddr)?;
        if m.len() == 1 && m[0].name == sname && m[0].raft_role == "leader" && m[0].voter {
            Ok(m)
        } else {
            Err(format!("{m:?}"))
        }
    });
    assert_eq!(m.len(), 1);
    let got: VarView = tepui(&["var", "get", "before", "-o", "json", "--addr", &saddr])
        .ok()
        .json();
    assert_eq!(got.value, "disaster");
    tepui(&["var", "put", "after", "recovery", "--addr", &saddr]).ok();
    // The removed servers are out of the node list too; the agent found the leader by itself.
    let n = wait_for("the agent heard by the new leader", SETTLE, || {
        let n = nodes(&saddr)?;
        let a1 = n.iter().find(|n| n.name == "a1");
        if a1.is_some_and(|a| a.status == "ready" && a.last_heartbeat_ms_ago.is_some()) {
            Ok(n)
        } else {
            Err(format!("{n:?}"))
        }
    });
    let names: BTreeSet<&str> = n.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from([sname.as_str(), "a1"]), "{n:?}");

    // The app's instances were never restarted: same tasks, same start times, same processes.
    let after = running_instances(&saddr, 2).expect("the instances run");
    assert_eq!(after, before, "the same instances");
    assert_eq!(
        marked.pids().into_iter().collect::<BTreeSet<i32>>(),
        pids_before,
        "the same processes"
    );
    let alive = tepui(&[
        "task",
        "exec",
        &after[0].0,
        "--addr",
        &saddr,
        "--",
        "/bin/sh",
        "-c",
        "echo alive",
    ])
    .ok();
    assert_eq!(alive.stdout, "alive\n");

    // Two new servers join with a new token, on the lost ones' addresses and empty data dirs.
    let token: TokenCreated = tepui(&["token", "create", "--role", "server", "-o", "json", "--addr", &saddr])
        .ok()
        .json();
    let mut joined: Vec<Daemon> = Vec::new();
    for i in &lost {
        let name = format!("n{}", i + 1);
        let mut args = vec![
            "join".to_string(),
            cluster_addr(sip),
            "--token".into(),
            token.token.clone(),
        ];
        args.extend(server_flags(&sb, &name, IPS[*i]));
        let mut d = sb.spawn(&name, &args);
        d.wait_ready(START);
        joined.push(d);
    }
    let m = wait_for("three voters again", SETTLE, || {
        let m = members(&saddr)?;
        let voters: BTreeSet<&str> = m.iter().filter(|m| m.voter).map(|m| m.name.as_str()).collect();
        let want: BTreeSet<String> = lost
            .iter()
            .map(|i| format!("n{}", i + 1))
            .chain([sname.clone()])
            .collect();
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        if voters == want && m.iter().filter(|m| m.raft_role == "leader").count() == 1 {
            Ok(m)
        } else {
            Err(format!("{m:?}"))
        }
    });
    assert_eq!(m.len(), 3);
    // A new server answers with the recovered state, and writes go through it.
    let via = http_addr(IPS[lost[0]]);
    let got: VarView = wait_for("the state through a new server", SETTLE, || {
        tepui(&["var", "get", "after", "-o", "json", "--addr", &via]).try_json()
    });
    assert_eq!(got.value, "recovery");
    tepui(&["var", "put", "rejoined", "yes", "--addr", &via]).ok();
    assert_eq!(running_instances(&via, 2).expect("the instances"), before);
    assert!(agent.is_running());
    drop(joined);
}
