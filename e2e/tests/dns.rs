//! Service discovery from inside the containers, as a user meets it on `tepui dev`: two
//! Marathon apps in bridge networking from a busybox image, an HTTP server (`/web`, with a health
//! check) and a client (`/client`). From inside the client's container, `web.marathon.mesos`
//! and the bare `web` (the search list) resolve to the web container's own address and its page
//! is fetched by name, and a name outside the cluster is forwarded to the upstream (a resolver
//! this test runs on loopback, so no query leaves the machine). A host task resolves the same
//! name through the same resolver. `dig` against the server's DNS gives the container's address
//! for `web.marathon.mesos` and the agent's for `web.marathon.slave.mesos`; two more servers
//! join, and a follower answers the same. Removing the app removes its name.
//!
//! Runs `tepui dev` on 127.0.54.1 with ports 35400-35419 and the bridge `tpe2e-dns`
//! (10.214.54.0/24), servers on 127.0.54.2 and .3, the upstream on 127.0.54.9; needs root,
//! busybox-static and dig (dnsutils; e2e/setup.sh).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_api::TaskView;
use tepui_e2e::{
    cluster_addr, http_addr, need_root, read_token, wait_for, MarkedProcesses, Output, Sandbox, MARKER_VAR,
};
use tepui_image::testimage::{build_docker_archive, require_busybox, require_program};

const IP: &str = "127.0.54.1";
const FOLLOWERS: [&str; 2] = ["127.0.54.2", "127.0.54.3"];
const UPSTREAM_IP: &str = "127.0.54.9";
const PORTS: &str = "35400-35419";
const BRIDGE: &str = "tpe2e-dns";
const SUBNET: &str = "10.214.54.0/24";
/// The bridge's gateway: the tasks' resolver.
const RESOLVER: &str = "10.214.54.1";
const DNS_PORT: &str = "5053";
const IMAGE: &str = "tepui-e2e/busybox:dns";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
/// `app run --wait` and `app rm --wait` follow a deployment to its end.
const WAIT: Duration = Duration::from_secs(90);
/// What the upstream says `outside.example` is.
const OUTSIDE: &str = "192.0.2.80";

/// `tepui ARGS... --addr ADDR`, with time for deployments.
fn cli(addr: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--addr", addr]);
    tepui_e2e::tepui_with_timeout(&all, WAIT)
}

/// `dig @SERVER -p 5053 NAME TYPE`: the answer's records and the status line's code
/// (`NOERROR`, `NXDOMAIN`).
fn dig(server: &str, name: &str, kind: &str) -> (Vec<String>, String) {
    dig_at(server, DNS_PORT, "+notcp", name, kind)
}

/// `dig @SERVER -p PORT TRANSPORT NAME TYPE` (`+notcp` or `+tcp`).
fn dig_at(server: &str, port: &str, transport: &str, name: &str, kind: &str) -> (Vec<String>, String) {
    let out = std::process::Command::new("dig")
        .args([
            &format!("@{server}"),
            "-p",
            port,
            transport,
            "+tries=1",
            "+time=2",
            "+noall",
            "+comments",
            "+answer",
            name,
            kind,
        ])
        .output()
        .expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let records = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (records, status)
}

/// Waits until `name` has exactly the addresses `want` at `server`.
fn wait_records(server: &str, name: &str, want: &[&str]) {
    wait_for(&format!("{name} at {server} to be {want:?}"), SETTLE, || {
        let (records, status) = dig(server, name, "A");
        if records == want {
            Ok(())
        } else {
            Err(format!("{status} {records:?}"))
        }
    });
}

/// A resolver outside the cluster, on loopback: `outside.example.` is [`OUTSIDE`], every other
/// name NXDOMAIN. Just enough of the wire format for one question (the product uses hickory's).
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(ip: &str) -> Upstream {
        let socket = UdpSocket::bind((ip, 0)).expect("the upstream binds");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = Upstream::answer(&buf[..n]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(q: &[u8]) -> Option<Vec<u8>> {
        let mut i = 12;
        let mut labels = Vec::new();
        loop {
            let n = *q.get(i)? as usize;
            i += 1;
            if n == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(q.get(i..i + n)?).to_ascii_lowercase());
            i += n;
        }
        let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
        let end = i + 4;
        let found = labels == ["outside", "example"];
        let a = found && qtype == 1;
        let mut r = q.get(..end)?.to_vec();
        r[2] = 0x84 | (q[2] & 0x01);
        r[3] = if found { 0x80 } else { 0x83 };
        r[4..12].copy_from_slice(&[0, 1, 0, a as u8, 0, 0, 0, 0]);
        if a {
            let ip: std::net::Ipv4Addr = OUTSIDE.parse().unwrap();
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ip.octets());
        }
        Some(r)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED" | "TASK_ERROR" | "TASK_LOST" | "TASK_DROPPED" | "TASK_GONE"
    )
}

fn task(addr: &str, id: &str) -> TaskView {
    cli(addr, &["task", "show", id, "-o", "json"]).ok().json()
}

/// The one instance of app `app`, running.
fn instance(addr: &str, app: &str) -> TaskView {
    let shown: Value = cli(addr, &["app", "show", app, "-o", "json"]).ok().json();
    let ids: Vec<String> = shown["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 1, "{app} has one instance: {shown}");
    task(addr, &ids[0])
}

/// `sh -c SCRIPT` inside the task's container.
fn exec(addr: &str, id: &str, script: &str) -> Output {
    tepui_e2e::tepui(&["task", "exec", id, "--addr", addr, "--", "/bin/sh", "-c", script])
}

fn app(id: &str, cmd: &str, marker: &str, health: bool) -> Value {
    let mut a = json!({
        "id": id,
        "instances": 1,
        "cpus": 0.1,
        "mem": 32,
        "container": {
            "type": "MESOS",
            "docker": {"image": IMAGE},
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]
        },
        "networks": [{"mode": "container/bridge"}],
        "cmd": cmd,
        "env": {MARKER_VAR: marker},
    });
    if health {
        a["healthChecks"] = json!([{
            "protocol": "HTTP", "path": "/index.html", "portIndex": 0,
            "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 2,
            "maxConsecutiveFailures": 3, "delaySeconds": 0
        }]);
    }
    a
}

#[test]
fn bridge_tasks_find_each_other_by_name_through_the_cluster_resolver() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    require_program("dig", "dnsutils").expect("dig is installed (e2e/setup.sh)");
    let marked = MarkedProcesses::new("dns");
    let sb = Sandbox::new("dns");
    let upstream = Upstream::start(UPSTREAM_IP);
    let upstream_addr = upstream.addr.to_string();
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");

    let data = sb.join("data").display().to_string();
    let mut dev = sb.spawn(
        "dev",
        &[
            "dev",
            "--data-dir",
            &data,
            "--bind",
            IP,
            "--name",
            "dns1",
            "--ports",
            PORTS,
            "--bridge",
            BRIDGE,
            "--bridge-subnet",
            SUBNET,
            "--dns-upstream",
            &upstream_addr,
        ],
    );
    dev.wait_ready(START);
    let addr = http_addr(IP);
    cli(
        &addr,
        &["image", "import", &archive.display().to_string(), "--agent", "dns1"],
    )
    .ok();

    // Two more servers: followers of the dev node, each with its own DNS.
    let token = read_token(&sb.join("data"), "server");
    let mut followers = Vec::new();
    for (i, ip) in FOLLOWERS.iter().enumerate() {
        let name = format!("s{}", i + 2);
        let dir = sb.join(&name).display().to_string();
        followers.push(sb.spawn(
            &name,
            &[
                "join",
                &cluster_addr(IP),
                "--token",
                &token,
                "--data-dir",
                &dir,
                "--bind",
                ip,
                "--name",
                &name,
                "--dns-upstream",
                &upstream_addr,
            ],
        ));
    }
    for f in followers.iter_mut() {
        f.wait_ready(START);
    }

    // The web server, and a client that only waits.
    let web = sb.join("web.json");
    let page = "busybox mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html \
                && exec busybox httpd -f -p 8080 -h /tmp/www";
    std::fs::write(&web, app("/web", page, marked.value(), true).to_string()).unwrap();
    cli(&addr, &["app", "run", &web.display().to_string(), "--wait"]).ok();
    let client = sb.join("client.json");
    std::fs::write(
        &client,
        app("/client", "exec busybox sleep 3600", marked.value(), false).to_string(),
    )
    .unwrap();
    cli(&addr, &["app", "run", &client.display().to_string(), "--wait"]).ok();

    let web_task = instance(&addr, "/web");
    let web_ip = web_task
        .container_ip
        .clone()
        .expect("the bridge task's address is in the state");
    assert!(web_ip.starts_with("10.214.54."), "{web_task:?}");
    let shown = cli(&addr, &["task", "show", &web_task.id]).ok().stdout;
    assert!(shown.contains(&format!("ip:       {web_ip}")), "{shown}");
    let client_task = instance(&addr, "/client");
    assert_ne!(client_task.container_ip, Some(web_ip.clone()));

    // The server's DNS: the container under the framework, the agent under slave.
    wait_records(IP, "web.marathon.mesos", &[&web_ip]);
    assert_eq!(dig(IP, "web.marathon.slave.mesos", "A").0, [IP]);
    // A follower answers the same, from its own copy of the state.
    for f in FOLLOWERS {
        wait_records(f, "web.marathon.mesos", &[&web_ip]);
        assert_eq!(dig(f, "web.marathon.slave.mesos", "A").0, [IP]);
        assert_eq!(dig(f, "leader.mesos", "A").0, [IP], "{f} follows the dev node");
    }

    // The tasks' resolver, the bridge's gateway on port 53, forwards to the server's DNS,
    // over UDP and TCP (asked from the host here, as a host task asks it).
    for transport in ["+notcp", "+tcp"] {
        assert_eq!(
            dig_at(RESOLVER, "53", transport, "web.marathon.mesos", "A").0,
            [web_ip.as_str()],
            "{transport}"
        );
    }

    // Inside the client's container: its resolver, and the web server by name.
    let conf = exec(&addr, &client_task.id, "cat /etc/resolv.conf").ok().stdout;
    assert!(conf.contains(&format!("nameserver {RESOLVER}\n")), "{conf}");
    assert!(conf.contains("search marathon.mesos mesos"), "{conf}");
    assert!(conf.contains("options ndots:1"), "{conf}");
    let found = exec(&addr, &client_task.id, "busybox nslookup web.marathon.mesos")
        .ok()
        .stdout;
    assert!(found.contains(&format!("Address: {web_ip}")), "{found}");
    let got = exec(
        &addr,
        &client_task.id,
        "busybox wget -q -O - http://web.marathon.mesos:8080/index.html",
    )
    .ok()
    .stdout;
    assert_eq!(got, "hello-from-web\n");
    // The bare name, through the search list.
    let got = exec(
        &addr,
        &client_task.id,
        "busybox wget -q -O - http://web:8080/index.html",
    )
    .ok()
    .stdout;
    assert_eq!(got, "hello-from-web\n");
    // A name outside the cluster goes to the upstream.
    let outside = exec(&addr, &client_task.id, "busybox nslookup outside.example")
        .ok()
        .stdout;
    assert!(outside.contains(&format!("Address: {OUTSIDE}")), "{outside}");

    // A host task asks the same resolver (an address of the host), for the same answer.
    let host: TaskView = tepui_e2e::tepui(&[
        "task",
        "run",
        "--host",
        "-o",
        "json",
        "--addr",
        &addr,
        "--",
        "/bin/busybox",
        "nslookup",
        "web.marathon.mesos",
    ])
    .ok()
    .json();
    let ended = wait_for("the host task to end", SETTLE, || {
        let t = task(&addr, &host.id);
        if is_terminal(&t.state) {
            Ok(t)
        } else {
            Err(t.state)
        }
    });
    let said = cli(&addr, &["task", "logs", &host.id]).ok().stdout;
    assert_eq!(ended.state, "TASK_FINISHED", "{ended:?}\n{said}");
    assert!(said.contains(&format!("Address: {web_ip}")), "{said}");

    // Removed, the apps' tasks end and the name goes.
    for id in ["/web", "/client"] {
        cli(&addr, &["app", "rm", id, "--force", "--wait"]).ok();
    }
    for id in [&web_task.id, &client_task.id] {
        wait_for(&format!("task {id} to end"), SETTLE, || {
            let t = task(&addr, id);
            if is_terminal(&t.state) {
                Ok(())
            } else {
                Err(t.state)
            }
        });
    }
    wait_for("web.marathon.mesos to be gone", SETTLE, || {
        match dig(IP, "web.marathon.mesos", "A") {
            (records, status) if records.is_empty() && status == "NXDOMAIN" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_for("the tasks' processes to be gone", SETTLE, || {
        let left = marked.pids();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    drop(followers);
    drop(dev);
    drop(upstream);
}
