//! Marathon's REST API (`/v2`) against a real server and agent, with a Marathon client written
//! here from Marathon's documentation of its REST API and event stream (plain reqwest and
//! serde_json; nothing from tepui's crates), so a shape the server gets wrong is one a real
//! Marathon client would trip on.
//!
//! One app of two `sleep` instances on the host's filesystem goes through create (201 with its
//! deployment), list filters (`id`, `label`, `embed`), an environment change (a rolling upgrade
//! to a new version), a restart, scaling to 3 and to 0, and deletion, while `/v2/events` must
//! carry the deployments' and tasks' events. Bad input (not JSON, `cmd` with `args`, an unknown
//! constraint operator, a dependency cycle, an unknown app) is refused in Marathon's shapes and
//! deploys nothing. The CLI lists apps as JSON and says why an app that asks for 100 cpus waits.
//!
//! Runs on 127.0.21.x with ports 32400-32420 and the bridge `tpe2e-mar`; needs root. Tasks
//! carry a marker in their environment, so a failed run kills exactly its own processes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::{cluster_addr, http_addr, read_token, tepui, wait_for, MarkedProcesses, Sandbox, MARKER_VAR};

const SERVER_IP: &str = "127.0.21.1";
const AGENT_IP: &str = "127.0.21.2";
const PORTS: (u16, u16) = (32400, 32420);
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
const APP: &str = "/e2e/sleeper";

// ------------------------------------------------------------------------------------------
// A Marathon client
// ------------------------------------------------------------------------------------------

/// One answer: status, `Location`, `Content-Type` and the body (JSON when it parses).
#[derive(Debug)]
struct Reply {
    status: u16,
    location: Option<String>,
    body: Value,
    text: String,
}

impl Reply {
    fn expect(self, status: u16, what: &str) -> Reply {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self
    }
}

/// The events one `/v2/events` stream delivered, as (event name, data).
#[derive(Clone, Default)]
struct EventLog {
    connected: Arc<Mutex<Option<String>>>,
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl EventLog {
    fn all(&self) -> Vec<(String, Value)> {
        self.events.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d)
            .collect()
    }
}

/// Takes whole server-sent events off `buf`: `event:` and `data:` lines up to a blank line.
/// Comments (`:`) and events without data are dropped.
fn take_events(buf: &mut String) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut name = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        if data.is_empty() {
            continue;
        }
        let value = serde_json::from_str(&data.join("\n")).unwrap_or(Value::String(data.join("\n")));
        out.push((name, value));
    }
    out
}

#[test]
fn server_sent_events_are_split_into_whole_messages() {
    let mut buf = String::from(": hello\n\nevent: a\ndata: {\"x\":1}\n\nevent: b\nda");
    assert_eq!(take_events(&mut buf), [("a".to_string(), json!({"x": 1}))]);
    buf.push_str("ta: {\"y\":2}\n\n");
    assert_eq!(take_events(&mut buf), [("b".to_string(), json!({"y": 2}))]);
    assert!(buf.is_empty());
}

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
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            http: tepui_e2e::http_client()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = resp.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Reply {
                status,
                location,
                body,
                text,
            })
        })
    }

    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.send(method.clone(), path, bytes)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    fn raw(&self, method: Method, path: &str, body: &[u8]) -> Reply {
        self.send(method.clone(), path, Some(body.to_vec()))
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// A GET that must answer 200 with JSON, as an error for `wait_for` otherwise.
    fn get(&self, path: &str) -> Result<Value, String> {
        let r = self.send(Method::GET, path, None)?;
        if r.status != 200 {
            return Err(format!("GET {path}: {} {}", r.status, r.text));
        }
        Ok(r.body)
    }

    /// Opens `/v2/events{query}` and collects what it delivers in the background.
    fn events(&self, query: &str) -> EventLog {
        let log = EventLog::default();
        let req = self
            .http
            .get(format!("{}/v2/events{query}", self.base))
            .header("accept", "text/event-stream");
        let l = log.clone();
        self.rt.spawn(async move {
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    *l.connected.lock().unwrap() = Some(format!("error: {e}"));
                    return;
                }
            };
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            *l.connected.lock().unwrap() = Some(format!("{} {content_type}", resp.status().as_u16()));
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                let got = take_events(&mut buf);
                l.events.lock().unwrap().extend(got);
            }
        });
        let connected = wait_for("the event stream to answer", START, || {
            log.connected.lock().unwrap().clone().ok_or("not yet")
        });
        assert_eq!(connected, "200 text/event-stream", "GET /v2/events{query}");
        log
    }

    fn app(&self, id: &str) -> Result<Value, String> {
        Ok(self.get(&format!("/v2/apps{id}"))?["app"].clone())
    }

    fn deployment_ids(&self) -> Result<Vec<String>, String> {
        let list = self.get("/v2/deployments")?;
        let list = list
            .as_array()
            .ok_or_else(|| format!("/v2/deployments is not a list: {list}"))?;
        Ok(list
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_string))
            .collect())
    }

    /// Waits until the app runs `n` tasks, all of config version `version` when given, with no
    /// deployment of it left; returns the app.
    fn settled(&self, id: &str, n: u64, version: Option<&str>) -> Value {
        wait_for(&format!("{id} to run {n} tasks of version {version:?}"), SETTLE, || {
            let app = self.app(id)?;
            let running = app["tasksRunning"].as_u64().unwrap_or(u64::MAX);
            let deployments = app["deployments"].as_array().map(Vec::len).unwrap_or(usize::MAX);
            let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
            let versions: BTreeSet<&str> = tasks.iter().filter_map(|t| t["version"].as_str()).collect();
            let right_version = version.is_none_or(|v| versions.iter().all(|t| *t == v));
            if running == n && tasks.len() as u64 == n && deployments == 0 && right_version {
                Ok(app)
            } else {
                Err(format!(
                    "running {running}, tasks {}, deployments {deployments}, versions {versions:?}",
                    tasks.len()
                ))
            }
        })
    }

    fn wait_deployment_gone(&self, id: &str) {
        wait_for(&format!("deployment {id} to finish"), SETTLE, || {
            let ids = self.deployment_ids()?;
            if ids.iter().any(|d| d == id) {
                Err(format!("still under way: {ids:?}"))
            } else {
                Ok(())
            }
        });
    }
}

// ------------------------------------------------------------------------------------------
// Processes
// ------------------------------------------------------------------------------------------

fn ids(tasks: &Value) -> BTreeSet<String> {
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// `/v2/apps` with a query: the ids listed.
fn listed(m: &Marathon, query: &str) -> Vec<String> {
    let v = m.get(&format!("/v2/apps{query}")).unwrap();
    v["apps"]
        .as_array()
        .unwrap_or_else(|| panic!("/v2/apps{query} has no apps list: {v}"))
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

/// Nothing deployed: no apps, no deployments, no tasks.
fn assert_nothing_deployed(m: &Marathon, after: &str) {
    assert_eq!(listed(m, ""), Vec::<String>::new(), "apps after {after}");
    assert_eq!(
        m.deployment_ids().unwrap(),
        Vec::<String>::new(),
        "deployments after {after}"
    );
    assert_eq!(m.get("/v2/tasks").unwrap()["tasks"], json!([]), "tasks after {after}");
}

#[test]
fn marathon_clients_run_apps_through_the_v2_api() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs tasks and needs root");
    }
    let marked = MarkedProcesses::new("marathon");
    let marker = marked.value().to_string();
    let sb = Sandbox::new("marathon");
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
        ],
    );
    server.wait_ready(START);
    let token = read_token(&sb.join("s1"), "agent");
    let a1_dir = sb.join("a1").display().to_string();
    let ports = format!("{}-{}", PORTS.0, PORTS.1);
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
            "--cpus",
            "2",
            "--mem",
            "2048",
            "--ports",
            &ports,
            "--heartbeat-secs",
            "0.5",
            "--bridge",
            "tpe2e-mar",
            "--bridge-subnet",
            "10.214.21.0/24",
        ],
    );
    agent.wait_ready(START);
    let m = Marathon::new(&addr);

    // The basics.
    let ping = m.call(Method::GET, "/ping", None).expect(200, "GET /ping");
    assert_eq!(ping.text.trim(), "pong");
    let info = m.get("/v2/info").unwrap();
    assert_eq!(info["name"], "tepui");
    assert_eq!(info["leader"], addr.as_str());
    assert!(info["frameworkId"].is_string(), "{info}");
    assert!(info["marathon_config"].is_object(), "{info}");
    assert_eq!(m.get("/v2/leader").unwrap()["leader"], addr.as_str());
    assert_nothing_deployed(&m, "start");

    // Event streams: everything, and only deployment_success.
    let all = m.events("");
    let successes = m.events("?event_type=deployment_success");

    // Create: 201, Location, the app with its deployment.
    let definition = json!({
        "id": APP,
        "cmd": "exec sleep 1000",
        "instances": 2,
        "cpus": 0.1,
        "mem": 32,
        "env": {MARKER_VAR: marker},
        "labels": {"tier": "web", "owner": "e2e"},
        "taskKillGracePeriodSeconds": 1,
    });
    let created = m
        .call(Method::POST, "/v2/apps", Some(&definition))
        .expect(201, "POST /v2/apps");
    assert_eq!(created.location.as_deref(), Some("/v2/apps/e2e/sleeper"), "{created:?}");
    assert_eq!(created.body["id"], APP);
    assert_eq!(created.body["instances"], 2);
    assert_eq!(created.body["cpus"], 0.1);
    let first_deployment = created.body["deployments"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no deployment in {}", created.text))
        .to_string();
    let again = m.call(Method::POST, "/v2/apps", Some(&definition));
    assert_eq!(again.status, 409, "creating it twice: {}", again.text);
    assert!(
        again.body["message"].as_str().is_some_and(|s| s.contains(APP)),
        "{}",
        again.text
    );

    let app = m.settled(APP, 2, None);
    m.wait_deployment_gone(&first_deployment);
    assert_eq!(app["tasksStaged"], 0);
    assert_eq!(app["labels"]["tier"], "web");
    let v1 = app["versionInfo"]["lastConfigChangeAt"].as_str().unwrap().to_string();
    let first_tasks = ids(&app["tasks"]);
    assert_eq!(marked.pids().len(), 2, "two sleeps run on the host");

    // The tasks as Marathon shows them.
    let tasks = m.get("/v2/apps/e2e/sleeper/tasks").unwrap()["tasks"].clone();
    assert_eq!(ids(&tasks), first_tasks);
    for t in tasks.as_array().unwrap() {
        assert_eq!(t["appId"], APP, "{t}");
        assert_eq!(t["host"], "a1", "{t}");
        assert_eq!(t["state"], "TASK_RUNNING", "{t}");
        assert_eq!(t["version"], v1.as_str(), "{t}");
        let port = t["ports"][0].as_u64().unwrap_or(0) as u16;
        assert!(
            (PORTS.0..=PORTS.1).contains(&port),
            "a host port from the agent's range: {t}"
        );
        assert!(t["stagedAt"].is_string() && t["startedAt"].is_string(), "{t}");
        assert!(t["slaveId"].is_string(), "{t}");
    }
    let all_tasks = m.get("/v2/tasks?status=running").unwrap()["tasks"].clone();
    assert_eq!(ids(&all_tasks), first_tasks);
    assert_eq!(m.get("/v2/tasks?status=staging").unwrap()["tasks"], json!([]));

    // Filters and embedding.
    assert_eq!(listed(&m, "?id=e2e/sleep"), [APP]);
    assert_eq!(listed(&m, "?id=nothing-like-it"), Vec::<String>::new());
    assert_eq!(listed(&m, "?label=tier==web"), [APP]);
    assert_eq!(listed(&m, "?label=tier%3D%3Dweb,owner"), [APP]);
    assert_eq!(listed(&m, "?label=tier!=web"), Vec::<String>::new());
    assert_eq!(listed(&m, "?label=tier%20in%20(db,web)"), [APP]);
    assert_eq!(listed(&m, "?label=tier%20notin%20(db,web)"), Vec::<String>::new());
    assert_eq!(listed(&m, "?label=absent"), Vec::<String>::new());
    let plain = m.get("/v2/apps").unwrap()["apps"][0].clone();
    assert_eq!(plain["tasksRunning"], 2, "counts are always there: {plain}");
    assert_eq!(plain["deployments"], json!([]), "{plain}");
    assert!(plain.get("tasks").is_none(), "tasks only when embedded: {plain}");
    let embedded = m.get("/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure").unwrap()["apps"][0].clone();
    assert_eq!(ids(&embedded["tasks"]), first_tasks);
    let groups = m.get("/v2/groups").unwrap();
    assert_eq!(groups["id"], "/");
    assert_eq!(groups["groups"][0]["id"], "/e2e", "{groups}");
    assert_eq!(groups["groups"][0]["apps"][0]["id"], APP, "{groups}");
    assert_eq!(m.get("/v2/groups/e2e").unwrap()["apps"][0]["id"], APP);

    // An environment change is a new version: a rolling upgrade replaces both tasks.
    let update = json!({"env": {MARKER_VAR: marker, "COLOR": "blue"}});
    let put = m
        .call(Method::PUT, "/v2/apps/e2e/sleeper", Some(&update))
        .expect(200, "PUT /v2/apps/e2e/sleeper");
    let upgrade = put.body["deploymentId"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", put.text))
        .to_string();
    assert!(put.body["version"].is_string(), "{}", put.text);
    m.wait_deployment_gone(&upgrade);
    let current = m.app(APP).unwrap();
    let v2 = current["versionInfo"]["lastConfigChangeAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v2, v1, "an environment change is a configuration change");
    assert_eq!(current["env"]["COLOR"], "blue");
    let app = m.settled(APP, 2, Some(&v2));
    let upgraded_tasks = ids(&app["tasks"]);
    assert!(
        upgraded_tasks.is_disjoint(&first_tasks),
        "{upgraded_tasks:?} vs {first_tasks:?}"
    );
    let versions = m.get("/v2/apps/e2e/sleeper/versions").unwrap()["versions"].clone();
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    let old = m
        .get(&format!(
            "/v2/apps/e2e/sleeper/versions/{}",
            versions[1].as_str().unwrap()
        ))
        .unwrap();
    assert!(
        old["env"].get("COLOR").is_none(),
        "the first version had no COLOR: {old}"
    );

    // A restart replaces every task with the same definition.
    let restart = m
        .call(Method::POST, "/v2/apps/e2e/sleeper/restart", None)
        .expect(200, "POST /v2/apps/e2e/sleeper/restart");
    let restart_id = restart.body["deploymentId"].as_str().unwrap().to_string();
    m.wait_deployment_gone(&restart_id);
    let current = m.app(APP).unwrap();
    let v3 = current["versionInfo"]["lastConfigChangeAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v3, v2, "a restart is a new configuration version: {current}");
    let app = m.settled(APP, 2, Some(&v3));
    let restarted_tasks = ids(&app["tasks"]);
    assert!(restarted_tasks.is_disjoint(&upgraded_tasks), "every task was replaced");
    assert_eq!(app["env"]["COLOR"], "blue", "the definition stays");

    // Scaling keeps the running tasks and their version.
    let scale_up = m
        .call(Method::PUT, "/v2/apps/e2e/sleeper", Some(&json!({"instances": 3})))
        .expect(200, "scale to 3");
    m.wait_deployment_gone(scale_up.body["deploymentId"].as_str().unwrap());
    let app = m.settled(APP, 3, Some(&v3));
    assert!(
        ids(&app["tasks"]).is_superset(&restarted_tasks),
        "scaling up keeps the tasks"
    );
    assert_eq!(app["versionInfo"]["lastConfigChangeAt"], v3.as_str());
    let scale_down = m
        .call(Method::PUT, "/v2/apps/e2e/sleeper", Some(&json!({"instances": 0})))
        .expect(200, "scale to 0");
    m.wait_deployment_gone(scale_down.body["deploymentId"].as_str().unwrap());
    m.settled(APP, 0, None);
    assert_eq!(m.get("/v2/apps/e2e/sleeper/tasks").unwrap()["tasks"], json!([]));
    wait_for("the sleeps to end", SETTLE, || match marked.pids().len() {
        0 => Ok(()),
        n => Err(format!("{n} left")),
    });

    // The events of all that.
    let deployment_ids = [&first_deployment, &upgrade, &restart_id];
    wait_for("deployment_success events", SETTLE, || {
        let got: Vec<String> = all
            .named("deployment_success")
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        match deployment_ids.iter().find(|d| !got.contains(d)) {
            None => Ok(()),
            Some(missing) => Err(format!("no deployment_success for {missing}; got {got:?}")),
        }
    });
    let updates = all.named("status_update_event");
    let running: BTreeSet<String> = updates
        .iter()
        .filter(|e| e["appId"] == APP && e["taskStatus"] == "TASK_RUNNING")
        .filter_map(|e| e["taskId"].as_str().map(str::to_string))
        .collect();
    assert!(
        running.is_superset(&first_tasks),
        "TASK_RUNNING of {first_tasks:?} in {running:?}"
    );
    assert!(
        running.is_superset(&upgraded_tasks),
        "TASK_RUNNING of {upgraded_tasks:?} in {running:?}"
    );
    assert!(
        updates
            .iter()
            .any(|e| e["appId"] == APP && e["taskStatus"] == "TASK_KILLED"),
        "the replaced tasks' TASK_KILLED: {updates:?}"
    );
    for e in &updates {
        assert!(
            e["timestamp"].is_string() && e["slaveId"].is_string() && e["version"].is_string(),
            "{e}"
        );
    }
    let posts = all.named("api_post_event");
    assert!(
        posts.iter().any(|e| e["appDefinition"]["id"] == APP),
        "api_post_event: {posts:?}"
    );
    assert!(!all.named("deployment_info").is_empty(), "deployment_info");
    let filtered = successes.all();
    assert!(
        filtered.iter().all(|(name, _)| name == "deployment_success"),
        "?event_type=deployment_success delivered {:?}",
        filtered.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(filtered.len() >= 3, "{filtered:?}");

    // Deleting the app stops its tasks.
    let one = m
        .call(Method::PUT, "/v2/apps/e2e/sleeper", Some(&json!({"instances": 1})))
        .expect(200, "scale to 1");
    m.wait_deployment_gone(one.body["deploymentId"].as_str().unwrap());
    let app = m.settled(APP, 1, Some(&v3));
    let last = ids(&app["tasks"]);
    let deleted = m
        .call(Method::DELETE, "/v2/apps/e2e/sleeper", None)
        .expect(200, "DELETE /v2/apps/e2e/sleeper");
    let removal = deleted.body["deploymentId"].as_str().unwrap().to_string();
    assert!(deleted.body["version"].is_string(), "{}", deleted.text);
    m.wait_deployment_gone(&removal);
    let gone = m
        .call(Method::GET, "/v2/apps/e2e/sleeper", None)
        .expect(404, "the deleted app");
    assert!(
        gone.body["message"]
            .as_str()
            .is_some_and(|s| s.contains("does not exist")),
        "{}",
        gone.text
    );
    let v1_tasks: Vec<Value> = tepui(&["task", "ls", "--addr", &addr, "-o", "json"]).ok().json();
    for t in v1_tasks
        .iter()
        .filter(|t| last.contains(t["id"].as_str().unwrap_or_default()))
    {
        assert_eq!(t["state"], "TASK_KILLED", "{t}");
    }
    assert!(marked.pids().is_empty(), "no sleep is left");
    assert_nothing_deployed(&m, "the delete");

    // Bad input, in Marathon's shapes, and nothing deployed for any of it.
    let not_json = m
        .raw(Method::POST, "/v2/apps", b"{\"id\": \"/bad\", cmd:")
        .expect(400, "not JSON");
    assert!(not_json.body["message"].is_string(), "{}", not_json.text);
    assert!(not_json.body["details"].is_array(), "{}", not_json.text);
    let both = m
        .call(
            Method::POST,
            "/v2/apps",
            Some(&json!({"id": "/bad", "cmd": "sleep 1", "args": ["sleep", "1"]})),
        )
        .expect(422, "cmd and args");
    assert!(both.body["message"].is_string(), "{}", both.text);
    let detail = &both.body["details"][0];
    assert!(detail["path"].is_string(), "{}", both.text);
    assert!(
        detail["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("'cmd' or 'args'")),
        "{}",
        both.text
    );
    let constraint = m
        .call(
            Method::POST,
            "/v2/apps",
            Some(&json!({"id": "/bad", "cmd": "sleep 1", "constraints": [["hostname", "SOMETIMES"]]})),
        )
        .expect(422, "an unknown constraint operator");
    let paths: Vec<&str> = constraint.body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(paths, ["/constraints(0)"], "{}", constraint.text);
    let cycle = m
        .call(
            Method::PUT,
            "/v2/apps",
            Some(&json!([
                {"id": "/cycle/a", "cmd": "sleep 1", "dependencies": ["/cycle/b"]},
                {"id": "/cycle/b", "cmd": "sleep 1", "dependencies": ["/cycle/a"]},
            ])),
        )
        .expect(422, "a dependency cycle");
    assert!(cycle.text.contains("/cycle/a"), "the cycle is named: {}", cycle.text);
    let unknown = m
        .call(Method::GET, "/v2/apps/no/such/app", None)
        .expect(404, "an unknown app");
    assert_eq!(unknown.body["message"], "App '/no/such/app' does not exist");
    m.call(Method::DELETE, "/v2/apps/no/such/app", None)
        .expect(404, "deleting an unknown app");
    m.call(
        Method::PUT,
        "/v2/apps/no/such/app",
        Some(&json!({"version": "2020-01-01T00:00:00.000Z"})),
    )
    .expect(404, "rolling an unknown app back");
    m.call(Method::DELETE, "/v2/deployments/no-such-deployment", None)
        .expect(404, "an unknown deployment");
    assert_nothing_deployed(&m, "bad input");

    // A group: created with its apps (ids relative to it, the group's dependency on each app),
    // scaled as a whole, deleted as a whole.
    let sleeper =
        |id: &str| json!({"id": id, "cmd": "exec sleep 1000", "cpus": 0.05, "mem": 16, "env": {MARKER_VAR: marker}});
    let group = json!({"id": "/grp", "apps": [sleeper("db")], "groups": [
        {"id": "front", "dependencies": ["/grp/db"], "apps": [sleeper("web")]}]});
    let created = m
        .call(Method::POST, "/v2/groups", Some(&group))
        .expect(201, "POST /v2/groups");
    m.wait_deployment_gone(created.body["deploymentId"].as_str().unwrap());
    m.settled("/grp/db", 1, None);
    let web = m.settled("/grp/front/web", 1, None);
    assert_eq!(web["dependencies"], json!(["/grp/db"]), "{web}");
    m.call(Method::POST, "/v2/groups", Some(&group))
        .expect(409, "a group that exists");
    let scaled = m
        .call(Method::PUT, "/v2/groups/grp", Some(&json!({"scaleBy": 2})))
        .expect(200, "PUT /v2/groups/grp scaleBy");
    m.wait_deployment_gone(scaled.body["deploymentId"].as_str().unwrap());
    m.settled("/grp/db", 2, None);
    m.settled("/grp/front/web", 2, None);
    let deleted = m
        .call(Method::DELETE, "/v2/groups/grp", None)
        .expect(200, "DELETE /v2/groups/grp");
    m.wait_deployment_gone(deleted.body["deploymentId"].as_str().unwrap());
    wait_for("the group's tasks to end", SETTLE, || {
        match m.get("/v2/tasks")?["tasks"].as_array() {
            Some(t) if t.is_empty() => Ok(()),
            t => Err(format!("{t:?}")),
        }
    });
    assert_nothing_deployed(&m, "the group's delete");

    // The CLI: apps as JSON, and why an app that asks for 100 cpus waits.
    let run = tepui(&[
        "app",
        "run",
        "--name",
        "big",
        "--cmd",
        "exec sleep 1000",
        "--cpus",
        "100",
        "--mem",
        "32",
        "--env",
        &format!("{MARKER_VAR}={marker}"),
        "--addr",
        &addr,
    ])
    .ok();
    assert!(run.stdout.contains("deployment "), "{run}");
    let listed_json: Vec<Value> = tepui(&["app", "ls", "--addr", &addr, "-o", "json"]).ok().json();
    assert_eq!(listed_json.len(), 1, "{listed_json:?}");
    assert_eq!(listed_json[0]["id"], "/big");
    assert_eq!(listed_json[0]["cpus"], 100.0);
    let why = wait_for("`tepui app why big` to name cpus", SETTLE, || {
        let out = tepui(&["app", "why", "big", "--addr", &addr]);
        if out.success() && out.stdout.contains("cpus") && out.stdout.contains("InsufficientCpus") {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert!(why.stdout.contains("waiting"), "{why}");
    let queue = m.get("/v2/queue").unwrap();
    let entry = &queue["queue"][0];
    assert_eq!(entry["app"]["id"], "/big", "{queue}");
    assert_eq!(entry["count"], 1, "{queue}");
    assert!(entry["delay"]["overdue"].is_boolean(), "{queue}");
    assert!(
        entry["processedOffersSummary"]["processedOffersCount"].as_u64() > Some(0),
        "{queue}"
    );
    assert!(entry["why"].as_str().is_some_and(|w| w.contains("cpus")), "{queue}");
    // Its deployment cannot finish: deleting the app needs --force.
    let locked = tepui(&["app", "rm", "big", "--addr", &addr]);
    assert_eq!(locked.code, 1, "{locked}");
    assert_eq!(locked.stderr_lines().len(), 1, "one error line: {locked}");
    assert!(locked.stderr.contains("locked"), "{locked}");
    tepui(&["app", "rm", "big", "--force", "--wait", "--addr", &addr]).ok();
    assert_nothing_deployed(&m, "the CLI's app");
    assert!(marked.pids().is_empty());
}
