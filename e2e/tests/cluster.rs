//! Three servers and two agents as separate processes on 127.0.11.1-5: joining with tokens,
//! losing the leader to kill -9, a restart on the same data dir, and an agent lost and back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tepui_api::{MemberView, NodeView, StatusView, TaskView, VarView};
use tepui_e2e::{cluster_addr, exec_interactive, http_addr, read_token, tepui, wait_for, Daemon, Sandbox};

const SERVERS: [(&str, &str); 3] = [("s1", "127.0.11.1"), ("s2", "127.0.11.2"), ("s3", "127.0.11.3")];
const AGENTS: [(&str, &str, &str); 2] = [("a1", "127.0.11.4", "r1"), ("a2", "127.0.11.5", "r2")];
const START: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(20);

/// `tepui server` on the node's own data dir, as on a restart: no token, no --bootstrap.
fn server_cmd(sb: &Sandbox, name: &str, ip: &str) -> Vec<String> {
    let mut args = vec!["server".to_string()];
    args.extend(daemon_flags(sb, name, ip));
    args.extend(["--agent-timeout-secs".into(), "3".into()]);
    args
}

fn daemon_flags(sb: &Sandbox, name: &str, ip: &str) -> Vec<String> {
    vec![
        "--data-dir".into(),
        data_dir(sb, name).display().to_string(),
        "--bind".into(),
        ip.into(),
        "--name".into(),
        name.into(),
    ]
}

fn data_dir(sb: &Sandbox, name: &str) -> PathBuf {
    sb.join(name)
}

/// The agent's flags after the data-dir ones; a1 offers fixed resources, a2 what it detects.
fn agent_flags(name: &str, rack: &str) -> Vec<String> {
    let mut args = vec![
        "--attr".to_string(),
        format!("rack={rack}"),
        "--heartbeat-secs".into(),
        "0.5".into(),
    ];
    if name == "a1" {
        args.extend(
            [
                "--cpus",
                "1.5",
                "--mem",
                "2048",
                "--disk",
                "4096",
                "--ports",
                "31000-31999",
            ]
            .map(String::from),
        );
    }
    args
}

fn members(addr: &str) -> Result<Vec<MemberView>, String> {
    tepui(&["server", "members", "-o", "json", "--addr", addr]).try_json()
}

fn nodes(addr: &str) -> Result<BTreeMap<String, NodeView>, String> {
    let list: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", addr]).try_json()?;
    Ok(list.into_iter().map(|n| (n.name.clone(), n)).collect())
}

/// Ok when the membership seen through `addr` is exactly s1-s3, all voters, one of them leader.
fn three_voters(addr: &str) -> Result<Vec<MemberView>, String> {
    let m = members(addr)?;
    let mut names: Vec<&str> = m.iter().filter(|m| m.voter).map(|m| m.name.as_str()).collect();
    names.sort();
    let leaders = m.iter().filter(|m| m.raft_role == "leader").count();
    if names == ["s1", "s2", "s3"] && m.len() == 3 && leaders == 1 {
        Ok(m)
    } else {
        Err(format!("members through {addr}: {m:?}"))
    }
}

fn status_of(nodes: &BTreeMap<String, NodeView>, name: &str) -> String {
    nodes
        .get(name)
        .map(|n| n.status.clone())
        .unwrap_or_else(|| "absent".into())
}

#[test]
fn three_servers_two_agents_survive_kill_and_restart() {
    let sb = Sandbox::new("cluster");
    let s1_addr = http_addr(SERVERS[0].1);

    // The first server makes the cluster and writes both join tokens to its data dir.
    let mut s1_args = server_cmd(&sb, "s1", SERVERS[0].1);
    s1_args.insert(1, "--bootstrap".into());
    let mut s1 = sb.spawn("s1", &s1_args);
    s1.wait_ready(START);
    let server_token = read_token(&data_dir(&sb, "s1"), "server");
    let agent_token = read_token(&data_dir(&sb, "s1"), "agent");
    let banner = s1.stdout();
    assert!(
        banner.contains(&server_token) && banner.contains(&agent_token),
        "{banner}"
    );
    assert!(server_token.starts_with("tepui1.server.") && agent_token.starts_with("tepui1.agent."));

    // Everyone else joins through s1 with `tepui join`; the token's kind says server or agent.
    let join = |name: &str, ip: &str, token: &str, extra: Vec<String>| -> Daemon {
        let mut args = vec![
            "join".to_string(),
            cluster_addr(SERVERS[0].1),
            "--token".into(),
            token.into(),
        ];
        args.extend(daemon_flags(&sb, name, ip));
        args.extend(extra);
        sb.spawn(name, &args)
    };
    let timeout = || vec!["--agent-timeout-secs".to_string(), "3".into()];
    let mut daemons: BTreeMap<&str, Daemon> = BTreeMap::new();
    daemons.insert("s1", s1);
    for (name, ip) in &SERVERS[1..] {
        daemons.insert(name, join(name, ip, &server_token, timeout()));
    }
    for (name, ip, rack) in AGENTS {
        daemons.insert(name, join(name, ip, &agent_token, agent_flags(name, rack)));
    }
    for d in daemons.values_mut() {
        d.wait_ready(START);
    }

    let m = wait_for("3 voters", CONVERGE, || three_voters(&s1_addr));
    assert!(m.iter().all(|m| m.cluster_addr.starts_with("127.0.11.")), "{m:?}");
    // A server turns ready once it is a voter; an agent once it registered its resources.
    let all = wait_for("all five nodes ready, agents with resources", CONVERGE, || {
        let n = nodes(&s1_addr)?;
        let ready = |name: &str, roles: &str| {
            n.get(name)
                .is_some_and(|x| x.status == "ready" && x.roles == roles && x.resources.is_some() == (roles == "agent"))
        };
        if n.len() == 5
            && SERVERS.iter().all(|(s, _)| ready(s, "server"))
            && AGENTS.iter().all(|(a, _, _)| ready(a, "agent"))
        {
            Ok(n)
        } else {
            Err(format!("{n:?}"))
        }
    });
    let a1 = all["a1"].resources.clone().expect("a1 has resources");
    assert_eq!((a1.cpus, a1.mem_mb, a1.disk_mb), (1.5, 2048, 4096), "{a1:?}");
    assert_eq!(a1.ports, vec!["31000-31999".to_string()]);
    let a2 = all["a2"].resources.clone().expect("a2 has resources");
    assert!(a2.cpus > 0.0 && a2.mem_mb > 0 && !a2.ports.is_empty(), "{a2:?}");
    assert_eq!(all["a1"].attributes.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(all["a2"].attributes.get("rack").map(String::as_str), Some("r2"));

    // An interactive exec (a websocket) through a follower: it tunnels the upgrade to the
    // leader over the cluster port.
    let status: StatusView = tepui(&["status", "-o", "json", "--addr", &s1_addr]).ok().json();
    let leader = status.leader.expect("a leader after the joins").name;
    let follower_addr = http_addr(SERVERS.iter().find(|(n, _)| *n != leader).unwrap().1);
    let task: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "-o",
        "json",
        "--addr",
        &follower_addr,
        "--",
        "sleep",
        "600",
    ])
    .ok()
    .json();
    wait_for("the task to run", START, || {
        let t: TaskView = tepui(&["task", "show", &task.id, "-o", "json", "--addr", &s1_addr]).try_json()?;
        if t.state == "TASK_RUNNING" {
            Ok(())
        } else {
            Err(format!("{} ({})", t.state, t.message))
        }
    });
    let (code, stdout, stderr) = exec_interactive(&follower_addr, &task.id, "echo via follower $((40+2)); exit 3\n");
    assert_eq!((code, stdout.as_str()), (3, "via follower 42\n"), "stderr: {stderr}");
    tepui(&["task", "kill", &task.id, "--addr", &follower_addr]).ok();

    // Kill -9 the leader.
    assert_eq!(status.servers, 3);
    assert_eq!((status.agents, status.agents_ready), (2, 2));
    let (leader_name, leader_ip) = *SERVERS
        .iter()
        .find(|(n, _)| *n == leader)
        .expect("the leader is one of ours");
    daemons.get_mut(leader_name).unwrap().kill();
    let killed_at = std::time::Instant::now();
    let survivor = SERVERS.iter().find(|(n, _)| *n != leader_name).unwrap();
    let survivor_addr = http_addr(survivor.1);

    // The survivors elect a new leader and take writes within seconds.
    let put: VarView = wait_for("a write after the leader died", Duration::from_secs(10), || {
        tepui(&["var", "put", "k", "v", "-o", "json", "--addr", &survivor_addr]).try_json()
    });
    assert_eq!((put.key.as_str(), put.value.as_str()), ("k", "v"));
    eprintln!(
        "writes went through {:?} after the leader was killed",
        killed_at.elapsed()
    );
    let n = nodes(&survivor_addr).expect("node ls through a survivor");
    assert_eq!(n.len(), 5, "{n:?}");
    for (name, _, _) in AGENTS {
        assert_eq!(status_of(&n, name), "ready", "{n:?}");
    }
    let status: StatusView = tepui(&["status", "-o", "json", "--addr", &survivor_addr]).ok().json();
    let new_leader = status.leader.expect("a new leader").name;
    assert_ne!(new_leader, leader_name);

    // The killed server comes back on its data dir, without a token, and rejoins as a voter.
    daemons
        .get_mut(leader_name)
        .unwrap()
        .restart(&server_cmd(&sb, leader_name, leader_ip));
    daemons.get_mut(leader_name).unwrap().wait_ready(START);
    let restarted_addr = http_addr(leader_ip);
    wait_for("the restarted server to be a voter again", CONVERGE, || {
        let m = three_voters(&restarted_addr)?;
        let me = m.iter().find(|m| m.name == leader_name).unwrap();
        if me.voter && (me.raft_role == "follower" || me.raft_role == "leader") {
            Ok(())
        } else {
            Err(format!("{me:?}"))
        }
    });
    let got: VarView = wait_for("k through the restarted server", CONVERGE, || {
        tepui(&["var", "get", "k", "-o", "json", "--addr", &restarted_addr]).try_json()
    });
    assert_eq!(got.value, "v");
    let plain = tepui(&["var", "get", "k", "--addr", &restarted_addr]).ok();
    assert_eq!(plain.stdout.trim(), "v");
    wait_for("the restarted server to be ready", CONVERGE, || {
        let n = nodes(&survivor_addr)?;
        match status_of(&n, leader_name).as_str() {
            "ready" => Ok(()),
            other => Err(other.to_string()),
        }
    });

    // An agent killed with -9 is marked lost after the 3 s agent timeout...
    daemons.get_mut("a1").unwrap().kill();
    wait_for("a1 to be lost", CONVERGE, || {
        let n = nodes(&survivor_addr)?;
        match status_of(&n, "a1").as_str() {
            "lost" => Ok(n),
            other => Err(format!("a1 is {other}")),
        }
    });
    let n = nodes(&restarted_addr).expect("node ls");
    assert_eq!(
        status_of(&n, "a2"),
        "ready",
        "a2 kept heartbeating through the failover: {n:?}"
    );

    // ...and ready again after a restart on its data dir.
    let mut a1_args = vec!["agent".to_string()];
    a1_args.extend(daemon_flags(&sb, "a1", AGENTS[0].1));
    a1_args.extend(agent_flags("a1", AGENTS[0].2));
    let a1 = daemons.get_mut("a1").unwrap();
    a1.restart(&a1_args);
    a1.wait_ready(START);
    wait_for("a1 to be ready again", CONVERGE, || {
        let n = nodes(&survivor_addr)?;
        match status_of(&n, "a1").as_str() {
            "ready" => Ok(()),
            other => Err(format!("a1 is {other}")),
        }
    });
    let n = nodes(&survivor_addr).expect("node ls");
    assert_eq!(n.len(), 5, "{n:?}");
    assert_eq!(n["a1"].id, all["a1"].id, "a restart keeps the node id");
    for (name, _, _) in AGENTS {
        assert_eq!(status_of(&n, name), "ready", "{n:?}");
    }
    for (name, d) in daemons.iter_mut() {
        assert!(d.is_running(), "{name} is still up");
    }
}
