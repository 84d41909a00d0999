//! The Mesos operator endpoints and the framework/role/quota verbs, against two real servers and
//! one agent on 127.0.19.x. Every Mesos call goes to the follower, which forwards it to the
//! leader (or, for `/metrics/snapshot`, answers from its own copy of the state).
//!
//! The HTTP here is plain reqwest and serde_json, written from Mesos' documentation of the
//! endpoints (<https://mesos.apache.org/documentation/latest/operator-http-api/>,
//! <https://mesos.apache.org/documentation/latest/endpoints/>), not from tepui's types, so a
//! shape tepui gets wrong is one a Mesos tool would trip on. Needs root: it runs tasks.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_api::{FrameworkView, MemberView, NodeView, RoleView, StatusView, TaskView};
use tepui_e2e::mesos::take_record;
use tepui_e2e::{cluster_addr, http_addr, read_token, tepui, wait_for, Daemon, MarkedProcesses, Sandbox, MARKER_VAR};

const S1_IP: &str = "127.0.19.1";
const S2_IP: &str = "127.0.19.2";
const AGENT_IP: &str = "127.0.19.3";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Marks this test's task processes, so a failed run leaves none behind.
const SLEEP_SECS: &str = "1019";

/// Plain HTTP to the servers, on a runtime of its own (streams are read in the background).
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime"),
            client: tepui_e2e::http_client().build().unwrap(),
        }
    }

    /// Status, content type and body.
    fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, String, String), String> {
        self.rt.block_on(async {
            let resp = req.timeout(CALL_TIMEOUT).send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            Ok((status, content_type, body))
        })
    }

    fn get(&self, addr: &str, path: &str) -> Result<(u16, String, String), String> {
        self.send(self.client.get(format!("http://{addr}{path}")))
    }

    /// A GET that must answer 200 with JSON.
    fn get_json(&self, addr: &str, path: &str) -> Result<Value, String> {
        let (status, _, body) = self.get(addr, path)?;
        if status != 200 {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON ({e}): {body}"))
    }

    /// `POST /api/v1` with a JSON call.
    fn call(&self, addr: &str, call: &Value) -> (u16, String, String) {
        let req = self
            .client
            .post(format!("http://{addr}/api/v1"))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(call.to_string());
        self.send(req).unwrap_or_else(|e| panic!("POST /api/v1 {call}: {e}"))
    }

    /// A call that must answer 200 with a JSON response of its own type.
    fn query(&self, addr: &str, kind: &str) -> Value {
        let (status, _, body) = self.call(addr, &json!({ "type": kind }));
        assert_eq!(status, 200, "{kind}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{kind}: not JSON ({e}): {body}"));
        assert_eq!(v["type"], kind, "{v}");
        v
    }

    /// SUBSCRIBE: the events, decoded from RecordIO as they arrive.
    fn subscribe(&self, addr: &str) -> mpsc::Receiver<Result<Value, String>> {
        let (tx, rx) = mpsc::channel();
        let req = self
            .client
            .post(format!("http://{addr}/api/v1"))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(json!({"type": "SUBSCRIBE"}).to_string());
        self.rt.spawn(async move {
            let mut resp = match req.send().await {
                Ok(r) if r.status() == 200 => r,
                Ok(r) => {
                    let status = r.status();
                    let _ = tx.send(Err(format!(
                        "SUBSCRIBE: {status}: {}",
                        r.text().await.unwrap_or_default()
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("SUBSCRIBE: {e}")));
                    return;
                }
            };
            let mut buf = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => {
                        let _ = tx.send(Err("the stream ended".into()));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("the stream broke: {e}")));
                        return;
                    }
                }
                loop {
                    match take_record(&mut buf) {
                        Ok(Some(record)) => {
                            let event =
                                serde_json::from_slice(&record).map_err(|e| format!("an event is not JSON: {e}"));
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            }
        });
        rx
    }
}

/// The next event of `kind` that `wanted` accepts; other events are skipped.
fn next_event(events: &mpsc::Receiver<Result<Value, String>>, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + SETTLE;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Ok(e)) if e["type"] == kind && wanted(&e) => return e,
            Ok(Ok(e)) => skipped.push(e["type"].as_str().unwrap_or("?").to_string()),
            Ok(Err(e)) => panic!("waiting for {kind}: {e}; skipped {skipped:?}"),
            Err(_) => panic!("no {kind} within {SETTLE:?}; skipped {skipped:?}"),
        }
    }
}

fn need_root() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs tasks and needs root");
    }
}

fn spawn_cluster(sb: &Sandbox) -> Vec<Daemon> {
    let dir = |name: &str| sb.join(name).display().to_string();
    let mut s1 = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &dir("s1"),
            "--bind",
            S1_IP,
            "--name",
            "s1",
            "--agent-timeout-secs",
            "3",
        ],
    );
    s1.wait_ready(START);
    let server_token = read_token(&sb.join("s1"), "server");
    let agent_token = read_token(&sb.join("s1"), "agent");
    let mut s2 = sb.spawn(
        "s2",
        &[
            "join",
            &cluster_addr(S1_IP),
            "--token",
            &server_token,
            "--data-dir",
            &dir("s2"),
            "--bind",
            S2_IP,
            "--name",
            "s2",
            "--agent-timeout-secs",
            "3",
        ],
    );
    s2.wait_ready(START);
    let mut agent = sb.spawn(
        "a1",
        &[
            "join",
            &cluster_addr(S1_IP),
            "--token",
            &agent_token,
            "--data-dir",
            &dir("a1"),
            "--bind",
            AGENT_IP,
            "--name",
            "a1",
            "--cpus",
            "2",
            "--mem",
            "2048",
            "--ports",
            "32100-32110",
            "--heartbeat-secs",
            "0.3",
            "--bridge",
            "tpe2e-op",
            "--bridge-subnet",
            "10.214.19.0/24",
        ],
    );
    agent.wait_ready(START);
    vec![s1, s2, agent]
}

/// (leader, follower) HTTP addresses once both servers vote and one leads.
fn leader_and_follower() -> (String, String) {
    let (a, b) = (http_addr(S1_IP), http_addr(S2_IP));
    wait_for("two voters and a leader", SETTLE, || {
        let m: Vec<MemberView> = tepui(&["server", "members", "-o", "json", "--addr", &a]).try_json()?;
        if m.iter().filter(|m| m.voter).count() != 2 {
            return Err(format!("{m:?}"));
        }
        let s: StatusView = tepui(&["status", "-o", "json", "--addr", &b]).try_json()?;
        match s.leader {
            Some(l) if l.http_addr == a => Ok((a.clone(), b.clone())),
            Some(l) if l.http_addr == b => Ok((b.clone(), a.clone())),
            other => Err(format!("leader {other:?}")),
        }
    })
}

fn run_task(addr: &str, marker: &str) -> TaskView {
    let env = format!("{MARKER_VAR}={marker}");
    tepui(&[
        "task",
        "run",
        "--host",
        "--cpus",
        "0.25",
        "--mem",
        "32",
        "--kill-grace",
        "1",
        "-e",
        &env,
        "--addr",
        addr,
        "-o",
        "json",
        "--",
        "/bin/sleep",
        SLEEP_SECS,
    ])
    .ok()
    .json()
}

fn wait_running(addr: &str, id: &str) {
    wait_for(&format!("task {id} to run"), SETTLE, || {
        let t: TaskView = tepui(&["task", "show", id, "--addr", addr, "-o", "json"]).try_json()?;
        if t.state == "TASK_RUNNING" {
            Ok(())
        } else {
            Err(format!("{} {}", t.state, t.message))
        }
    });
}

fn nodes(addr: &str) -> Vec<NodeView> {
    tepui(&["node", "ls", "-o", "json", "--addr", addr]).ok().json()
}

fn roles(addr: &str) -> Vec<RoleView> {
    tepui(&["role", "ls", "-o", "json", "--addr", addr]).ok().json()
}

fn role(addr: &str, name: &str) -> Option<RoleView> {
    roles(addr).into_iter().find(|r| r.name == name)
}

/// The scalar `name` in a list of v1 resources, summed; `reserved_to` keeps only those reserved
/// (refinement format) to that role, `None` only unreserved ones.
fn scalar(resources: &Value, name: &str, reserved_to: Option<&str>) -> f64 {
    resources
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|r| r["name"] == name)
                .filter(|r| {
                    let role = r["reservations"]
                        .as_array()
                        .and_then(|s| s.last())
                        .and_then(|x| x["role"].as_str());
                    role == reserved_to
                })
                .filter_map(|r| r["scalar"]["value"].as_f64())
                .sum()
        })
        .unwrap_or(0.0)
}

fn metric(http: &Http, addr: &str, name: &str) -> Result<f64, String> {
    let m = http.get_json(addr, "/metrics/snapshot")?;
    m[name].as_f64().ok_or_else(|| format!("no {name} in {m}"))
}

#[test]
fn the_operator_api_and_the_role_verbs_through_a_follower() {
    need_root();
    let marked = MarkedProcesses::new("op");
    let marker = marked.value().to_string();
    let sb = Sandbox::new("operator");
    let _daemons = spawn_cluster(&sb);
    let http = Http::new();
    let (leader, follower) = leader_and_follower();
    let f = follower.as_str();
    eprintln!("leader {leader}, follower {follower}");
    let agent_id = wait_for("the agent to be ready", SETTLE, || {
        let n = nodes(f);
        n.iter()
            .find(|n| n.name == "a1" && n.status == "ready")
            .map(|n| n.id.to_string())
            .ok_or_else(|| format!("{n:?}"))
    });

    // The event stream first, so it sees the tasks come.
    let events = http.subscribe(f);
    let subscribed = next_event(&events, "SUBSCRIBED", |_| true);
    assert!(
        subscribed["subscribed"]["heartbeat_interval_seconds"].as_f64() > Some(0.0),
        "{subscribed}"
    );
    let agents = &subscribed["subscribed"]["get_state"]["get_agents"]["agents"];
    assert_eq!(
        agents[0]["agent_info"]["id"]["value"],
        agent_id.as_str(),
        "{subscribed}"
    );

    let first = run_task(f, &marker);
    let added = next_event(&events, "TASK_ADDED", |e| {
        e["task_added"]["task"]["task_id"]["value"] == first.id.as_str()
    });
    assert_eq!(added["task_added"]["task"]["framework_id"]["value"], "tepui", "{added}");
    assert_eq!(
        added["task_added"]["task"]["agent_id"]["value"],
        agent_id.as_str(),
        "{added}"
    );
    let running = next_event(&events, "TASK_UPDATED", |e| {
        e["task_updated"]["state"] == "TASK_RUNNING"
    });
    assert_eq!(
        running["task_updated"]["status"]["task_id"]["value"],
        first.id.as_str(),
        "{running}"
    );
    let second = run_task(f, &marker);
    wait_running(f, &first.id);
    wait_running(f, &second.id);

    // /master/state: the agent with what the tasks use, the tasks under the built-in framework.
    let state = wait_for("both tasks in /master/state", SETTLE, || {
        let s = http.get_json(f, "/master/state")?;
        let running = s["frameworks"]
            .as_array()
            .and_then(|fs| fs.iter().find(|fw| fw["id"] == "tepui"))
            .and_then(|fw| fw["tasks"].as_array())
            .map(|ts| ts.iter().filter(|t| t["state"] == "TASK_RUNNING").count());
        if running == Some(2) {
            Ok(s)
        } else {
            Err(format!("{running:?}"))
        }
    });
    let slave = &state["slaves"][0];
    assert_eq!(slave["id"], agent_id.as_str(), "{state}");
    assert_eq!(slave["hostname"], "a1", "{slave}");
    assert_eq!(slave["resources"]["cpus"], 2.0, "{slave}");
    assert_eq!(slave["resources"]["ports"], "[32100-32110]", "{slave}");
    assert!(
        slave["used_resources"]["cpus"]
            .as_f64()
            .is_some_and(|c| (c - 0.5).abs() < 1e-9),
        "{slave}"
    );
    assert_eq!(slave["active"], true, "{slave}");
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|fw| fw["id"] == "tepui")
        .unwrap();
    assert_eq!(fw["name"], "tepui-tasks", "{fw}");
    let task = fw["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == first.id.as_str())
        .unwrap();
    assert_eq!(task["slave_id"], agent_id.as_str(), "{task}");
    assert_eq!(task["framework_id"], "tepui", "{task}");
    assert_eq!(task["resources"]["cpus"], 0.25, "{task}");
    assert!(
        state["leader"].as_str().is_some_and(|l| l.contains(&leader)),
        "{}",
        state["leader"]
    );
    for alias in ["/master/state.json", "/state.json"] {
        assert!(http.get_json(f, alias).unwrap().get("slaves").is_some(), "{alias}");
    }

    // /master/tasks: pages in creation order.
    let page = |q: &str| -> Vec<String> {
        let v = http.get_json(f, &format!("/master/tasks?{q}")).unwrap();
        v["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(page("limit=1&offset=0&order=asc"), vec![first.id.clone()]);
    assert_eq!(page("limit=1&offset=1&order=asc"), vec![second.id.clone()]);
    assert_eq!(page("limit=1&order=des"), vec![second.id.clone()]);
    assert_eq!(page("limit=5&framework_id=tepui").len(), 2);
    assert_eq!(page(&format!("task_id={}", first.id)), vec![first.id.clone()]);
    let (status, content_type, body) = http.get(f, "/master/tasks?limit=lots").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        content_type.starts_with("text/plain") && body.contains("limit"),
        "{content_type}: {body}"
    );

    // /master/slaves, /master/frameworks, /master/roles, /master/state-summary.
    let slaves = http
        .get_json(f, &format!("/master/slaves?slave_id={agent_id}"))
        .unwrap();
    assert_eq!(slaves["slaves"].as_array().map(Vec::len), Some(1), "{slaves}");
    assert!(slaves["slaves"][0]["used_resources_full"].is_array(), "{slaves}");
    assert_eq!(
        http.get_json(f, "/master/slaves?slave_id=999").unwrap()["slaves"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let frameworks = http.get_json(f, "/master/frameworks?framework_id=tepui").unwrap();
    assert_eq!(frameworks["frameworks"][0]["active"], true, "{frameworks}");
    let roles_json = http.get_json(f, "/master/roles").unwrap();
    let star = roles_json["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "*")
        .unwrap();
    assert_eq!(star["resources"]["cpus"], 0.5, "{roles_json}");
    assert_eq!(star["weight"], 1.0, "{roles_json}");
    let summary = http.get_json(f, "/master/state-summary").unwrap();
    assert_eq!(summary["slaves"][0]["TASK_RUNNING"], 2, "{summary}");

    // /metrics/snapshot: the follower answers itself.
    wait_for("the follower's metrics to show both tasks", SETTLE, || {
        let n = metric(&http, f, "master/tasks_running")?;
        if n == 2.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    let m = http.get_json(f, "/metrics/snapshot").unwrap();
    assert_eq!(m["master/elected"], 0.0, "{m}");
    assert!(m["master/cpus_used"].as_f64() > Some(0.0), "{m}");
    assert_eq!(m["master/cpus_total"], 2.0, "{m}");
    assert_eq!(m["master/cpus_percent"], 0.25, "{m}");
    assert_eq!(m["master/slaves_active"], 1.0, "{m}");
    assert!(m["master/uptime_secs"].as_f64() > Some(0.0), "{m}");
    assert_eq!(metric(&http, &leader, "master/elected"), Ok(1.0));
    assert_eq!(metric(&http, &leader, "master/outstanding_offers"), Ok(0.0));

    // v1 queries.
    let health = http.query(f, "GET_HEALTH");
    assert_eq!(health["get_health"]["healthy"], true, "{health}");
    let version = http.query(f, "GET_VERSION");
    assert!(
        version["get_version"]["version_info"]["version"].is_string(),
        "{version}"
    );
    let st = http.query(f, "GET_STATE");
    let tasks = st["get_state"]["get_tasks"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tasks.len(), 2, "{st}");
    assert!(tasks.iter().all(|t| t["state"] == "TASK_RUNNING"), "{st}");
    let ids: Vec<&str> = st["get_state"]["get_frameworks"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["framework_info"]["id"]["value"].as_str())
        .collect();
    assert!(ids.contains(&"tepui"), "{st}");
    let got = http.query(f, "GET_TASKS");
    let t = got["get_tasks"]["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["task_id"]["value"] == first.id.as_str()))
        .unwrap_or_else(|| panic!("{got}"));
    assert_eq!(t["agent_id"]["value"], agent_id.as_str(), "{t}");
    assert_eq!(scalar(&t["resources"], "cpus", None), 0.25, "{t}");
    let agents = http.query(f, "GET_AGENTS");
    let a = &agents["get_agents"]["agents"][0];
    assert_eq!(a["agent_info"]["id"]["value"], agent_id.as_str(), "{agents}");
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(scalar(&a["total_resources"], "cpus", None), 2.0, "{a}");
    assert_eq!(scalar(&a["allocated_resources"], "cpus", None), 0.5, "{a}");

    // Weights: UPDATE_WEIGHTS, seen by `tepui role ls`; `tepui role weight`.
    let (status, _, body) = http.call(
        f,
        &json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": 2.5}]}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(role(f, "eng").map(|r| r.weight), Some(2.5));
    let w = tepui(&["role", "weight", "eng", "3", "--addr", f]).ok();
    assert!(w.stdout.contains("weight 3"), "{w}");
    assert_eq!(role(f, "eng").map(|r| r.weight), Some(3.0));
    let bad = tepui(&["role", "weight", "eng", "0", "--addr", f]);
    assert!(!bad.success() && bad.stderr.contains("422"), "{bad}");
    let weights = http.query(f, "GET_WEIGHTS");
    assert_eq!(weights["get_weights"]["weight_infos"][0]["weight"], 3.0, "{weights}");

    // Quota: `tepui quota set`, seen by `role ls`, GET_QUOTA and /master/roles.
    let set = tepui(&[
        "quota",
        "set",
        "eng",
        "--guarantee",
        "cpus=0.5,mem=256",
        "--limit",
        "cpus=1",
        "--addr",
        f,
    ])
    .ok();
    assert!(set.stdout.contains("guaranteed cpus:0.5 mem:256"), "{set}");
    let eng = role(f, "eng").unwrap();
    assert_eq!(eng.guarantees.get("cpus"), Some(&0.5), "{eng:?}");
    assert_eq!(eng.guarantees.get("mem"), Some(&256.0), "{eng:?}");
    assert_eq!(eng.limits.get("cpus"), Some(&1.0), "{eng:?}");
    let quota = http.query(f, "GET_QUOTA");
    let config = &quota["get_quota"]["status"]["configs"][0];
    assert_eq!(config["role"], "eng", "{quota}");
    assert_eq!(config["guarantees"]["cpus"]["value"], 0.5, "{quota}");
    assert_eq!(config["limits"]["cpus"]["value"], 1.0, "{quota}");
    let legacy_roles = http.get_json(f, "/master/roles").unwrap();
    let eng = legacy_roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "eng")
        .unwrap();
    assert_eq!(eng["quota"]["guarantee"]["cpus"], 0.5, "{eng}");
    assert_eq!(eng["weight"], 3.0, "{eng}");
    let roles_v1 = http.query(f, "GET_ROLES");
    assert!(
        roles_v1["get_roles"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "eng" && r["weight"] == 3.0),
        "{roles_v1}"
    );
    // A limit below the guarantee: refused, saying which field and why.
    let refused = tepui(&[
        "quota",
        "set",
        "eng",
        "--guarantee",
        "cpus=2",
        "--limit",
        "cpus=1",
        "--addr",
        f,
    ]);
    assert!(!refused.success(), "{refused}");
    assert!(
        refused.stderr.contains("HTTP 422") && refused.stderr.contains("below the guarantee"),
        "{refused}"
    );
    assert_eq!(refused.stderr_lines().len(), 1, "{refused}");
    let (status, content_type, body) = http.call(
        f,
        &json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "eng", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 1}}}
        ]}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        content_type.starts_with("text/plain") && body.contains("limit"),
        "{body}"
    );
    assert_eq!(
        role(f, "eng").unwrap().limits.get("cpus"),
        Some(&1.0),
        "the quota stayed"
    );
    let (status, _, body) = http.call(
        f,
        &json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "eng"}]}}),
    );
    assert_eq!(status, 200, "{body}");
    let eng = role(f, "eng").unwrap();
    assert!(
        eng.guarantees.is_empty() && eng.limits.is_empty(),
        "quota removed: {eng:?}"
    );

    // Reservations: 0.5 cpus for eng on the agent, then given back.
    let reservation = json!([{
        "name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
        "reservations": [{"type": "DYNAMIC", "role": "eng"}]
    }]);
    let (status, _, body) = http.call(
        f,
        &json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent_id}, "resources": reservation
        }}),
    );
    assert_eq!(status, 202, "{body}");
    let agents = http.query(f, "GET_AGENTS");
    let total = &agents["get_agents"]["agents"][0]["total_resources"];
    assert_eq!(scalar(total, "cpus", Some("eng")), 0.5, "{total}");
    assert_eq!(scalar(total, "cpus", None), 1.5, "{total}");
    let slave = http.get_json(f, "/master/slaves").unwrap();
    assert_eq!(slave["slaves"][0]["reserved_resources"]["eng"]["cpus"], 0.5, "{slave}");
    assert_eq!(slave["slaves"][0]["unreserved_resources"]["cpus"], 1.5, "{slave}");
    let (status, _, body) = http.call(
        f,
        &json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
            "agent_id": {"value": agent_id}, "resources": reservation
        }}),
    );
    assert_eq!(status, 202, "{body}");
    let agents = http.query(f, "GET_AGENTS");
    let total = &agents["get_agents"]["agents"][0]["total_resources"];
    assert_eq!(scalar(total, "cpus", Some("eng")), 0.0, "{total}");
    assert_eq!(scalar(total, "cpus", None), 2.0, "{total}");
    let (status, _, body) = http.call(
        f,
        &json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": "999"}, "resources": reservation
        }}),
    );
    assert_eq!(status, 400, "{body}");

    // Bad calls: 400 with a plain-text reason.
    for (call, says) in [
        (json!({"type": "MAKE_COFFEE"}), "MAKE_COFFEE"),
        (json!({"type": "UPDATE_WEIGHTS"}), "update_weights"),
        (json!({"kind": "GET_HEALTH"}), "type"),
    ] {
        let (status, content_type, body) = http.call(f, &call);
        assert_eq!(status, 400, "{call}: {body}");
        assert!(content_type.starts_with("text/plain"), "{call}: {content_type}");
        assert!(body.contains(says), "{call}: {body}");
    }

    // Maintenance through the operator API, seen by `tepui node ls`.
    let maintenance = |want: &str| {
        wait_for(&format!("a1 to be {want}"), SETTLE, || {
            let n = nodes(f);
            match n.iter().find(|n| n.name == "a1").map(|n| n.maintenance.clone()) {
                Some(m) if m == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    };
    let agent_ref = json!({"agent_id": {"value": agent_id}});
    let (status, _, body) = http.call(f, &json!({"type": "DEACTIVATE_AGENT", "deactivate_agent": agent_ref}));
    assert_eq!(status, 200, "{body}");
    maintenance("deactivated");
    let agents = http.query(f, "GET_AGENTS");
    assert_eq!(agents["get_agents"]["agents"][0]["active"], false, "{agents}");
    let (status, _, body) = http.call(f, &json!({"type": "REACTIVATE_AGENT", "reactivate_agent": agent_ref}));
    assert_eq!(status, 200, "{body}");
    maintenance("active");

    // The framework verbs.
    let fws: Vec<FrameworkView> = tepui(&["framework", "ls", "-o", "json", "--addr", f]).ok().json();
    let builtin = fws
        .iter()
        .find(|fw| fw.id == "tepui")
        .unwrap_or_else(|| panic!("{fws:?}"));
    assert_eq!(
        (builtin.name.as_str(), builtin.tasks),
        ("tepui-tasks", 2),
        "{builtin:?}"
    );
    assert!((builtin.cpus - 0.5).abs() < 1e-9 && builtin.mem_mb == 64, "{builtin:?}");
    let table = tepui(&["framework", "ls", "--addr", f]).ok();
    assert!(table.stdout.contains("tepui-tasks"), "{table}");
    let nobody = tepui(&["framework", "teardown", "nobody", "--addr", f]);
    assert!(
        !nobody.success() && nobody.stderr.contains("tepui framework ls"),
        "{nobody}"
    );
    let builtin_teardown = tepui(&["framework", "teardown", "tepui", "--addr", f]);
    assert!(
        !builtin_teardown.success() && builtin_teardown.stderr.contains("tepui task kill"),
        "{builtin_teardown}"
    );
    let (status, _, body) = http.call(
        f,
        &json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nobody"}}}),
    );
    assert_eq!(status, 400, "{body}");
    let table = tepui(&["role", "ls", "--addr", f]).ok();
    assert!(
        table.stdout.contains("eng") && table.stdout.contains("WEIGHT"),
        "{table}"
    );

    // Draining kills the tasks; the stream tells.
    let (status, _, body) = http.call(f, &json!({"type": "DRAIN_AGENT", "drain_agent": agent_ref}));
    assert_eq!(status, 200, "{body}");
    next_event(&events, "TASK_UPDATED", |e| {
        e["task_updated"]["state"] == "TASK_KILLED"
            && e["task_updated"]["status"]["task_id"]["value"] == first.id.as_str()
    });
    maintenance("drained");
    wait_for("the follower's metrics to show the kills", SETTLE, || {
        let counts = (
            metric(&http, f, "master/tasks_running")?,
            metric(&http, f, "master/tasks_killed")?,
        );
        if counts == (0.0, 2.0) {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    });
    wait_for("the tasks' processes to be gone", SETTLE, || {
        match marked.pids().len() {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        }
    });
    let (status, _, body) = http.call(f, &json!({"type": "REACTIVATE_AGENT", "reactivate_agent": agent_ref}));
    assert_eq!(status, 200, "{body}");
    maintenance("active");
}
