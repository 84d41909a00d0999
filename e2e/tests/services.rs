//! Long-running services with real containers, through the Marathon `/v2` API: an HTTP server
//! app with three instances and an HTTP health check on three agents (UNIQUE hostname), a rolling
//! deployment that keeps the minimum health capacity, an instance failing its check and being
//! replaced, scaling beyond what the constraint allows (and seeing why), scaling to zero and
//! deleting. The client is written here from Marathon's documented REST API.
//!
//! Runs on 127.0.22.x; needs root and busybox-static (e2e/setup.sh).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tepui_e2e::{
    bootstrap_server, cluster_addr, http_addr, read_token, spawn_servers, tepui, wait_for, Daemon, MarkedProcesses,
    Sandbox, MARKER_VAR,
};
use tepui_image::testimage::{build_docker_archive, require_busybox};

const SERVER_IP: &str = "127.0.22.1";
const AGENTS: [(&str, &str, &str, &str); 3] = [
    ("a1", "127.0.22.2", "32500-32509", "10.214.22.0/26"),
    ("a2", "127.0.22.3", "32510-32519", "10.214.22.64/26"),
    ("a3", "127.0.22.4", "32520-32529", "10.214.22.128/26"),
];
const IMAGE: &str = "tepui-e2e/busybox:services";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);

/// Marathon's REST API over plain HTTP.
struct Marathon {
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Marathon {
    fn new(addr: &str) -> Marathon {
        // reqwest's rustls (linked in for the image crate's registry pulls) needs a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Marathon {
            base: format!("http://{addr}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: tepui_e2e::http_client()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn app(&self, id: &str) -> Value {
        self.get(&format!(
            "/v2/apps{id}?embed=apps.tasks&embed=apps.counts&embed=apps.deployments"
        ))["app"]
            .clone()
    }
}

/// Running, and passing its checks if its app has any.
fn healthy(task: &Value, checked: bool) -> bool {
    let results = task["healthCheckResults"].as_array();
    task["state"] == "TASK_RUNNING"
        && (!checked || results.is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true)))
}

/// The app's running instances that pass their health checks, and all its live instances.
fn counts(app: &Value) -> (usize, usize) {
    let checked = app["healthChecks"].as_array().is_some_and(|c| !c.is_empty());
    let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
    (tasks.iter().filter(|t| healthy(t, checked)).count(), tasks.len())
}

fn wait_settled(m: &Marathon, id: &str, healthy_wanted: usize) -> Value {
    wait_for(
        &format!("{id}: {healthy_wanted} healthy, no deployment"),
        SETTLE,
        || {
            let app = m.app(id);
            let (h, all) = counts(&app);
            let deploying = app["deployments"].as_array().is_some_and(|d| !d.is_empty());
            if h == healthy_wanted && all == healthy_wanted && !deploying {
                Ok(app)
            } else {
                Err(format!("{h} healthy of {all}, deployments {}", app["deployments"]))
            }
        },
    )
}

fn exec(addr: &str, task: &str, script: &str) -> String {
    tepui(&["task", "exec", task, "--addr", addr, "--", "/bin/sh", "-c", script])
        .ok()
        .stdout
}

fn start_cluster(sb: &Sandbox) -> (Daemon, Vec<Daemon>) {
    let s1 = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &s1,
            "--bind",
            SERVER_IP,
            "--name",
            "s1",
            "--agent-timeout-secs",
            "5",
        ],
    );
    server.wait_ready(START);
    let token = read_token(&sb.join("s1"), "agent");
    let mut agents = vec![];
    for (i, (name, ip, ports, subnet)) in AGENTS.iter().enumerate() {
        let bridge = format!("tpe2e-svc{i}");
        let a = spawn_agent(sb, SERVER_IP, &token, name, ip, ports, &bridge, subnet);
        agents.push(a);
    }
    (server, agents)
}

/// An agent of `--cpus 2 --mem 1024` joined to `server_ip`, ready.
#[allow(clippy::too_many_arguments)]
fn spawn_agent(
    sb: &Sandbox,
    server_ip: &str,
    token: &str,
    name: &str,
    ip: &str,
    ports: &str,
    bridge: &str,
    subnet: &str,
) -> Daemon {
    let dir = sb.join(name).display().to_string();
    let mut a = sb.spawn(
        name,
        &[
            "join",
            &cluster_addr(server_ip),
            "--token",
            token,
            "--data-dir",
            &dir,
            "--bind",
            ip,
            "--name",
            name,
            "--cpus",
            "2",
            "--mem",
            "1024",
            "--ports",
            ports,
            "--heartbeat-secs",
            "0.3",
            "--bridge",
            bridge,
            "--bridge-subnet",
            subnet,
        ],
    );
    a.wait_ready(START);
    a
}

fn web_app(color: &str, marker: &str) -> Value {
    json!({
        "id": "/web",
        "instances": 3,
        "cpus": 0.1,
        "mem": 32,
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "cmd": "busybox mkdir -p /tmp/www && echo ok > /tmp/www/health && exec busybox httpd -f -p $PORT0 -h /tmp/www",
        "portDefinitions": [{"port": 0, "name": "http"}],
        "env": {"COLOR": color, MARKER_VAR: marker},
        "constraints": [["hostname", "UNIQUE"]],
        "healthChecks": [{
            "protocol": "HTTP", "path": "/health", "portIndex": 0,
            "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 2,
            "delaySeconds": 0
        }],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}
    })
}

#[test]
fn an_http_app_is_deployed_upgraded_healed_scaled_and_deleted() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let marked = MarkedProcesses::new("services");
    let sb = Sandbox::new("services");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (_server, _agents) = start_cluster(&sb);
    let addr = http_addr(SERVER_IP);
    let archive = archive.display().to_string();
    for (name, ..) in AGENTS {
        tepui(&["image", "import", &archive, "--agent", name, "--addr", &addr]).ok();
    }
    let m = Marathon::new(&addr);

    // Deploy: three healthy instances, one per agent.
    let (status, created) = m.call(
        reqwest::Method::POST,
        "/v2/apps",
        Some(&web_app("blue", marked.value())),
    );
    assert_eq!(status, 201, "{created}");
    assert!(created["deployments"][0]["id"].is_string(), "{created}");
    let app = wait_settled(&m, "/web", 3);
    let hosts: BTreeSet<String> = app["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["host"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(hosts.len(), 3, "UNIQUE hostname: {app}");
    let service_port = app["portDefinitions"][0]["port"].as_u64().unwrap_or_default();
    assert!(
        (10000..=20000).contains(&service_port),
        "port 0 gets a service port from 10000-20000: {app}"
    );
    for t in app["tasks"].as_array().unwrap() {
        let port = t["ports"][0].as_u64().expect("a host port");
        let body = m.rt.block_on(async {
            m.http
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        assert_eq!(body, "ok\n", "instance {} answers", t["id"]);
    }

    // A rolling deployment: never fewer than 2 of 3 healthy, never more than 3 instances.
    let (status, changed) = m.call(
        reqwest::Method::PUT,
        "/v2/apps/web",
        Some(&web_app("green", marked.value())),
    );
    assert_eq!(status, 200, "{changed}");
    let deployment = changed["deploymentId"].as_str().expect("a deployment").to_string();
    let deadline = Instant::now() + SETTLE;
    let mut lowest = usize::MAX;
    loop {
        let app = m.app("/web");
        let (h, all) = counts(&app);
        lowest = lowest.min(h);
        assert!(
            h >= 2,
            "minimumHealthCapacity 0.5 of 3 keeps 2 healthy: {h} healthy, {app}"
        );
        let running = app["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count();
        assert!(running <= 3, "maximumOverCapacity 0: {running} running");
        let deploying = m
            .get("/v2/deployments")
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == deployment.as_str());
        if !deploying && h == 3 && all == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rolling deployment did not finish: {app}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("rolling deployment done; at least {lowest} healthy throughout");
    let app = m.app("/web");
    for t in app["tasks"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        assert_eq!(exec(&addr, id, "echo $COLOR"), "green\n", "{id} runs the new version");
    }

    // An instance that fails its check is killed and replaced.
    let victim = app["tasks"][0]["id"].as_str().unwrap().to_string();
    exec(&addr, &victim, "busybox rm /tmp/www/health");
    wait_for("the unhealthy instance to be replaced", SETTLE, || {
        let app = m.app("/web");
        let ids: Vec<&str> = app["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        let (h, all) = counts(&app);
        if !ids.contains(&victim.as_str()) && h == 3 && all == 3 {
            Ok(())
        } else {
            Err(format!("{h} healthy of {all}: {ids:?}"))
        }
    });

    // Five instances on three agents with UNIQUE hostname: two wait, and the queue says why.
    let (status, scaled) = m.call(reqwest::Method::PUT, "/v2/apps/web", Some(&json!({"instances": 5})));
    assert_eq!(status, 200, "{scaled}");
    let why = wait_for("two instances waiting, with a reason", SETTLE, || {
        let q = m.get("/v2/queue");
        let entry = q["queue"]
            .as_array()
            .and_then(|q| q.iter().find(|e| e["app"]["id"] == "/web").cloned())
            .ok_or_else(|| format!("not queued: {q}"))?;
        let text = entry.to_string().to_lowercase();
        if entry["count"] == 2 && text.contains("constraint") {
            Ok(entry)
        } else {
            Err(entry.to_string())
        }
    });
    eprintln!("queued: {why}");
    assert_eq!(counts(&m.app("/web")).0, 3, "the three placed instances stay healthy");

    // The scale to five cannot finish, so the app is locked; force overrides it.
    let (status, locked) = m.call(reqwest::Method::PUT, "/v2/apps/web", Some(&json!({"instances": 0})));
    assert_eq!(status, 409, "{locked}");
    assert!(
        locked["message"].as_str().is_some_and(|msg| msg.contains("locked")),
        "{locked}"
    );
    // To zero, then gone.
    let (status, _) = m.call(
        reqwest::Method::PUT,
        "/v2/apps/web?force=true",
        Some(&json!({"instances": 0})),
    );
    assert_eq!(status, 200);
    wait_settled(&m, "/web", 0);
    let (status, deleted) = m.call(reqwest::Method::DELETE, "/v2/apps/web", None);
    assert_eq!(status, 200, "{deleted}");
    wait_for("the app to be gone", SETTLE, || {
        let (status, v) = m.call(reqwest::Method::GET, "/v2/apps/web", None);
        if status == 404 {
            Ok(())
        } else {
            Err(format!("{status}: {v}"))
        }
    });
    wait_gone(&marked);
}

/// Deleting an app stops its processes.
fn wait_gone(marked: &MarkedProcesses) {
    wait_for("the app's processes to be gone", SETTLE, || match marked.pids().len() {
        0 => Ok(()),
        n => Err(format!("{n} left")),
    });
}

fn delete_app(m: &Marathon, id: &str) {
    let (status, v) = m.call(reqwest::Method::DELETE, &format!("/v2/apps{id}?force=true"), None);
    assert_eq!(status, 200, "{v}");
}

fn need_root() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs containers and needs root");
    }
}

/// Live tasks of an app, from any server that answers; `None` while none does.
fn live_tasks(servers: &[String], app: &str) -> Option<Vec<Value>> {
    servers.iter().find_map(|s| {
        let m = Marathon::new(s);
        let (status, v) = m.call(reqwest::Method::GET, &format!("/v2/apps{app}?embed=apps.tasks"), None);
        (status == 200).then(|| v["app"]["tasks"].as_array().cloned().unwrap_or_default())
    })
}

fn sleeper(env: &str, marker: &str) -> Value {
    json!({
        "id": "/sleepers",
        "instances": 4,
        "cpus": 0.1,
        "mem": 16,
        "cmd": "exec sleep 1000",
        "env": {"GENERATION": env, MARKER_VAR: marker},
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}
    })
}

#[test]
fn a_deployment_finishes_under_a_new_leader() {
    need_root();
    let marked = MarkedProcesses::new("services-failover");
    let ips = ["127.0.23.1", "127.0.23.2", "127.0.23.3"];
    let sb = Sandbox::new("services-failover");
    let mut servers = spawn_servers(&sb, &ips, &["--agent-timeout-secs", "10"], START);
    let agent_token = read_token(&sb.join("s1"), "agent");
    let mut agents = vec![];
    for (i, ip) in ["127.0.23.4", "127.0.23.5"].iter().enumerate() {
        let name = format!("a{}", i + 1);
        let ports = format!("{}-{}", 32600 + i * 20, 32619 + i * 20);
        let bridge = format!("tpe2e-svf{i}");
        let subnet = format!("10.214.23.{}/26", i * 64);
        let a = spawn_agent(&sb, ips[0], &agent_token, &name, ip, &ports, &bridge, &subnet);
        agents.push(a);
    }
    let addrs: Vec<String> = ips.iter().map(|ip| http_addr(ip)).collect();
    let m = Marathon::new(&addrs[0]);
    let (status, created) = m.call(reqwest::Method::POST, "/v2/apps", Some(&sleeper("one", marked.value())));
    assert_eq!(status, 201, "{created}");
    wait_for("four instances running", SETTLE, || {
        let tasks = live_tasks(&addrs, "/sleepers").unwrap_or_default();
        let running = tasks.iter().filter(|t| t["state"] == "TASK_RUNNING").count();
        if running == 4 && m.get("/v2/deployments").as_array().is_some_and(|d| d.is_empty()) {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    });
    let before: BTreeSet<String> = live_tasks(&addrs, "/sleepers")
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str().map(String::from))
        .collect();

    // Start a rolling deployment and kill -9 the leader at once.
    let (status, changed) = m.call(
        reqwest::Method::PUT,
        "/v2/apps/sleepers",
        Some(&sleeper("two", marked.value())),
    );
    assert_eq!(status, 200, "{changed}");
    let status: Value = tepui(&["status", "-o", "json", "--addr", &addrs[0]]).ok().json();
    let leader = status["leader"]["name"].as_str().expect("a leader").to_string();
    let index = servers
        .iter()
        .position(|d| d.name() == leader)
        .expect("the leader's daemon");
    servers[index].kill();
    let survivors: Vec<String> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, a)| a.clone())
        .collect();
    eprintln!("killed the leader {leader} during the deployment");

    // Never more than 4 + 0.5 * 4 = 6 instances, and the deployment completes.
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(tasks) = live_tasks(&survivors, "/sleepers") {
            let live = tasks.iter().filter(|t| t["state"] != "TASK_KILLED").count();
            assert!(live <= 6, "maximumOverCapacity 0.5 of 4 allows 6: {live}: {tasks:?}");
            let new: Vec<&Value> = tasks
                .iter()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .filter(|t| !before.contains(t["id"].as_str().unwrap_or_default()))
                .collect();
            let deploying = survivors.iter().any(|s| {
                let (st, d) = Marathon::new(s).call(reqwest::Method::GET, "/v2/deployments", None);
                st != 200 || d.as_array().is_none_or(|d| !d.is_empty())
            });
            if new.len() == 4 && tasks.len() == 4 && !deploying {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the deployment did not finish under the new leader"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(marked.pids().len(), 4, "exactly the four new instances run");
    delete_app(&Marathon::new(&survivors[0]), "/sleepers");
    wait_gone(&marked);
}

#[test]
fn a_deployment_that_never_gets_healthy_rolls_back_at_its_deadline() {
    need_root();
    let marked = MarkedProcesses::new("services-rollback");
    let sb = Sandbox::new("services-rollback");
    let _server = bootstrap_server(&sb, "127.0.24.1", &["--deployment-timeout", "8s"]);
    let token = read_token(&sb.join("s1"), "agent");
    let _agent = spawn_agent(
        &sb,
        "127.0.24.1",
        &token,
        "a1",
        "127.0.24.2",
        "32700-32719",
        "tpe2e-svr",
        "10.214.24.0/24",
    );
    let m = Marathon::new(&http_addr("127.0.24.1"));
    let app = |check: &str| {
        json!({
            "id": "/checked", "instances": 2, "cpus": 0.1, "mem": 16, "cmd": "exec sleep 1000",
            "env": {MARKER_VAR: marked.value()},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": check},
                "gracePeriodSeconds": 300, "intervalSeconds": 1, "timeoutSeconds": 5, "maxConsecutiveFailures": 3,
                "delaySeconds": 0}],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
        })
    };
    let (status, _) = m.call(reqwest::Method::POST, "/v2/apps", Some(&app("true")));
    assert_eq!(status, 201);
    wait_settled(&m, "/checked", 2);

    // The new version never passes its check; the old instances must stay until it gives up.
    let (status, changed) = m.call(reqwest::Method::PUT, "/v2/apps/checked", Some(&app("false")));
    assert_eq!(status, 200, "{changed}");
    let started = Instant::now();
    wait_for("the deployment to be rolled back", SETTLE, || {
        let a = m.app("/checked");
        let check = a["healthChecks"][0]["command"]["value"].clone();
        let deploying = a["deployments"].as_array().is_some_and(|d| !d.is_empty());
        let (h, all) = counts(&a);
        assert!(
            h >= 2,
            "minimumHealthCapacity 1.0: both old instances stay healthy: {a}"
        );
        if check == "true" && !deploying && h == 2 && all == 2 {
            Ok(())
        } else {
            Err(format!("check {check}, deploying {deploying}, {h} healthy of {all}"))
        }
    });
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "rolled back at the deadline, not before: {:?}",
        started.elapsed()
    );
    delete_app(&m, "/checked");
    wait_gone(&marked);
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this test started and a plain signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

#[test]
fn an_unreachable_instance_is_replaced_and_the_surplus_killed_when_it_returns() {
    need_root();
    let marked = MarkedProcesses::new("services-unreachable");
    let sb = Sandbox::new("services-unreachable");
    let dir = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &dir,
            "--bind",
            "127.0.25.1",
            "--name",
            "s1",
            "--agent-timeout-secs",
            "2",
        ],
    );
    server.wait_ready(START);
    let token = read_token(&sb.join("s1"), "agent");
    let mut agents = vec![];
    for (i, ip) in ["127.0.25.2", "127.0.25.3"].iter().enumerate() {
        let name = format!("a{}", i + 1);
        let ports = format!("{}-{}", 32800 + i * 20, 32819 + i * 20);
        let bridge = format!("tpe2e-svu{i}");
        let subnet = format!("10.214.25.{}/26", i * 64);
        let a = spawn_agent(&sb, "127.0.25.1", &token, &name, ip, &ports, &bridge, &subnet);
        agents.push(a);
    }
    let m = Marathon::new(&http_addr("127.0.25.1"));
    let app = json!({
        "id": "/single", "instances": 1, "cpus": 0.1, "mem": 16, "cmd": "exec sleep 1000",
        "env": {MARKER_VAR: marked.value()},
        "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 600},
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    });
    let (status, created) = m.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert_eq!(status, 201, "{created}");
    let first = wait_settled(&m, "/single", 1)["tasks"][0].clone();
    let first_id = first["id"].as_str().unwrap().to_string();
    let host = first["host"].as_str().unwrap().to_string();
    let index = agents.iter().position(|a| a.name() == host).expect("its agent");
    let pid = agents[index].pid().expect("the agent runs");

    // The agent goes silent: its instance is unreachable, then replaced on the other agent.
    signal(pid, libc::SIGSTOP);
    let replacement = wait_for("a replacement running elsewhere", SETTLE, || {
        let tasks = m.app("/single")["tasks"].as_array().cloned().unwrap_or_default();
        let running: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "TASK_RUNNING").collect();
        match running.as_slice() {
            [t] if t["id"] != first_id.as_str() && t["host"] != host.as_str() => {
                Ok(t["id"].as_str().unwrap().to_string())
            }
            _ => Err(format!("{tasks:?}")),
        }
    });
    assert_eq!(
        marked.pids().len(),
        2,
        "the old copy still runs under its stopped agent"
    );

    // It comes back: two copies of a one-instance app; the surplus goes.
    signal(pid, libc::SIGCONT);
    wait_for("one copy left", SETTLE, || {
        let tasks = m.app("/single")["tasks"].as_array().cloned().unwrap_or_default();
        let running = tasks.iter().filter(|t| t["state"] == "TASK_RUNNING").count();
        if running == 1 && tasks.len() == 1 && marked.pids().len() == 1 {
            Ok(())
        } else {
            Err(format!(
                "{running} running, {} processes: {tasks:?}",
                marked.pids().len()
            ))
        }
    });
    eprintln!("replaced {first_id} by {replacement}; one copy left");
    delete_app(&m, "/single");
    wait_gone(&marked);
}
