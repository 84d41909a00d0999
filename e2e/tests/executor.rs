//! A framework with its own executor (Mesos' custom executor) against a real server and agent.
//!
//! Both sides are written here from Apache Mesos' documents, sharing nothing with tepui's
//! crates: the scheduler from the v1 scheduler HTTP API
//! (<https://mesos.apache.org/documentation/latest/scheduler-http-api/>), the executor from
//! the v1 executor HTTP API (`docs/executor-http-api.md`, `executor.proto`): plain JSON over
//! HTTP with reqwest, RecordIO read here. The executor is this very test binary, started by the
//! agent as a host task with `TEPUI_E2E_EXECUTOR` in its environment: the `executor_process`
//! test then runs the executor instead of returning at once. It runs each task's `data` (a
//! shell command) as a child process, reports it with UPDATEs, kills it on KILL, answers
//! framework messages, tells its scheduler (by framework message) what it saw, and reconnects
//! after its agent restarts, as a checkpointing executor does.
//!
//! - `a_custom_executor_runs_tasks_talks_and_outlives_its_agents_restart` (127.0.95.x): tasks on
//!   one executor (started once, its own resources, Mesos' environment), updates acknowledged
//!   by the framework and then by the agent to the executor, messages both ways, the executor
//!   in `/master/state` and GET_EXECUTORS, an agent restart (kill -9) that the executor and its
//!   task survive, a KILL through the executor, SHUTDOWN of a cooperative executor (its task
//!   TASK_KILLED, FAILURE with its status) and of one that ignores SHUTDOWN (killed after its
//!   grace period, its task TASK_FAILED / REASON_EXECUTOR_TERMINATED), one that does not
//!   subscribe again after a second agent restart (killed when the agent stops waiting, its
//!   task TASK_GONE / REASON_EXECUTOR_REREGISTRATION_TIMEOUT), and every resource back.
//! - `bad_executor_input_is_refused_and_the_agent_keeps_serving` (127.0.96.x): calls on the
//!   agent's executor API with a wrong framework id, a wrong executor id, no token or a bad
//!   body; framework messages over the size limit both ways; SHUTDOWN and MESSAGE for an
//!   executor that does not exist; a second ExecutorInfo under a running executor's id; each
//!   refused with its reason, nothing launched, and the executor still served.
//!
//! Needs root, like every test that runs tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};
use tepui_e2e::mesos::{event_type, pump, runtime, Scheduler};
use tepui_e2e::{need_root, Daemon, MarkedProcesses, OneAgentCluster, Sandbox, MARKER_VAR};

const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// What the executor is told to run with: its mode (`cooperative`: SHUTDOWN ends its tasks
/// and it; `stubborn`: it ignores SHUTDOWN; `deaf`: once disconnected it never subscribes
/// again, and lives on).
const MODE_VAR: &str = "TEPUI_E2E_EXECUTOR";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {text:?}"))
}

// ------------------------------------------------------------------------------------------
// The executor (run by the agent: this binary with TEPUI_E2E_EXECUTOR set)
// ------------------------------------------------------------------------------------------

/// The executor's entry point: a no-op in the test run itself.
#[test]
fn executor_process() {
    let Ok(mode) = std::env::var(MODE_VAR) else { return };
    let code = runtime().block_on(executor::run(mode));
    std::process::exit(code);
}

mod executor {
    use super::*;

    /// Mesos' durations (`15mins`, `2secs`, `250ms`).
    fn duration(text: &str) -> Option<Duration> {
        let digits: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let n: f64 = digits.parse().ok()?;
        let unit = &text[digits.len()..];
        let secs = match unit {
            "ns" | "nsecs" => n / 1e9,
            "us" | "usecs" => n / 1e6,
            "ms" | "msecs" => n / 1e3,
            "secs" => n,
            "mins" => n * 60.0,
            "hrs" => n * 3600.0,
            _ => return None,
        };
        Some(Duration::from_secs_f64(secs))
    }

    enum Internal {
        /// A task's process ended: its exit code (None: killed by a signal).
        Exited { task: String, code: Option<i32> },
    }

    struct Executor {
        http: reqwest::Client,
        url: String,
        token: String,
        framework_id: String,
        executor_id: String,
        /// The process of each task launched and not ended.
        pids: HashMap<String, u32>,
        killed: HashSet<String>,
        /// Tasks no update of which the agent acknowledged.
        unacked_tasks: HashMap<String, Value>,
        /// Updates the agent did not acknowledge, by uuid (base64).
        unacked_updates: VecDeque<(String, Value)>,
        subscriptions: u32,
        internal: tokio::sync::mpsc::UnboundedSender<Internal>,
        stubborn: bool,
    }

    fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_default()
    }

    pub async fn run(mode: String) -> i32 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut ex = Executor {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client"),
            url: format!("http://{}/api/v1/executor", env("MESOS_AGENT_ENDPOINT")),
            token: env("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
            framework_id: env("MESOS_FRAMEWORK_ID"),
            executor_id: env("MESOS_EXECUTOR_ID"),
            pids: HashMap::new(),
            killed: HashSet::new(),
            unacked_tasks: HashMap::new(),
            unacked_updates: VecDeque::new(),
            subscriptions: 0,
            internal: tx,
            stubborn: mode == "stubborn",
        };
        let checkpoint = env("MESOS_CHECKPOINT") == "1";
        let recovery = duration(&env("MESOS_RECOVERY_TIMEOUT")).unwrap_or(Duration::from_secs(60));
        let backoff_max = duration(&env("MESOS_SUBSCRIPTION_BACKOFF_MAX")).unwrap_or(Duration::from_secs(2));
        loop {
            // Subscribe, and again after a disconnection (a checkpointing executor retries
            // for MESOS_RECOVERY_TIMEOUT, pausing at most MESOS_SUBSCRIPTION_BACKOFF_MAX).
            let since = Instant::now();
            let mut pause = Duration::from_millis(100);
            let resp = loop {
                match ex.subscribe().await {
                    Ok(r) => break r,
                    Err(e) if checkpoint && since.elapsed() < recovery => {
                        eprintln!("executor: subscribe failed ({e}); retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(backoff_max);
                    }
                    Err(e) => {
                        eprintln!("executor: giving up: {e}");
                        return 1;
                    }
                }
            };
            let (etx, mut events) = tokio::sync::mpsc::unbounded_channel();
            let reader = tokio::spawn(pump(resp, move |e| etx.send(e).is_ok()));
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Some(Ok(event)) => {
                            if let Some(code) = ex.on_event(event).await {
                                reader.abort();
                                return code;
                            }
                        }
                        Some(Err(why)) => {
                            eprintln!("executor: disconnected: {why}");
                            break;
                        }
                        None => break,
                    },
                    Some(i) = rx.recv() => ex.on_internal(i).await,
                }
            }
            reader.abort();
            if mode == "deaf" {
                eprintln!("executor: disconnected, and not subscribing again");
                std::future::pending::<()>().await;
            }
            if !checkpoint {
                return 1;
            }
        }
    }

    impl Executor {
        fn call(&self, mut call: Value) -> reqwest::RequestBuilder {
            call["framework_id"] = json!({"value": self.framework_id});
            call["executor_id"] = json!({"value": self.executor_id});
            self.http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .header("Authorization", format!("Bearer {}", self.token))
                .body(serde_json::to_vec(&call).unwrap())
        }

        async fn subscribe(&mut self) -> Result<reqwest::Response, String> {
            let call = json!({
                "type": "SUBSCRIBE",
                "subscribe": {
                    "unacknowledged_tasks": self.unacked_tasks.values().cloned().collect::<Vec<_>>(),
                    "unacknowledged_updates": self.unacked_updates.iter().map(|(_, u)| json!({"status": u})).collect::<Vec<_>>(),
                }
            });
            let resp = self.call(call).send().await.map_err(|e| e.to_string())?;
            if resp.status() != 200 {
                let status = resp.status();
                return Err(format!("{status}: {}", resp.text().await.unwrap_or_default()));
            }
            Ok(resp)
        }

        /// A call that is answered 202; returns the status and body either way.
        async fn post(&self, call: Value) -> (u16, String) {
            match self.call(call).timeout(CALL_TIMEOUT).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                }
                Err(e) => (0, e.to_string()),
            }
        }

        async fn message(&self, text: &str) {
            let (status, body) = self
                .post(json!({"type": "MESSAGE", "message": {"data": b64(text.as_bytes())}}))
                .await;
            if status != 202 {
                eprintln!("executor: MESSAGE {text:?} answered {status}: {body}");
            }
        }

        async fn update(&mut self, task: &str, state: &str, message: &str) {
            let uuid = b64(&rand_uuid());
            let status = json!({
                "task_id": {"value": task},
                "executor_id": {"value": self.executor_id},
                "state": state,
                "source": "SOURCE_EXECUTOR",
                "message": message,
                "uuid": uuid,
            });
            self.unacked_updates.push_back((uuid, status.clone()));
            // Sent again in the next SUBSCRIBE if the agent never acknowledges it.
            let (code, body) = self.post(json!({"type": "UPDATE", "update": {"status": status}})).await;
            if code != 202 {
                eprintln!("executor: UPDATE {task} {state} answered {code}: {body}");
            }
        }

        /// Handles one event; `Some(code)`: exit with it.
        async fn on_event(&mut self, e: Value) -> Option<i32> {
            match e["type"].as_str().unwrap_or("") {
                "SUBSCRIBED" => {
                    self.subscriptions += 1;
                    let s = &e["subscribed"];
                    if self.subscriptions == 1 {
                        // What Mesos promises an executor, told to the scheduler to check.
                        let report = json!({
                            "executor_id": s["executor_info"]["executor_id"]["value"],
                            "framework_id": s["framework_info"]["id"]["value"],
                            "agent_id": s["agent_info"]["id"]["value"],
                            "container_id": s["container_id"]["value"],
                            "env": {
                                "MESOS_CHECKPOINT": env("MESOS_CHECKPOINT"),
                                "MESOS_SANDBOX": env("MESOS_SANDBOX"),
                                "MESOS_DIRECTORY": env("MESOS_DIRECTORY"),
                                "MESOS_RECOVERY_TIMEOUT": env("MESOS_RECOVERY_TIMEOUT"),
                                "MESOS_SUBSCRIPTION_BACKOFF_MAX": env("MESOS_SUBSCRIPTION_BACKOFF_MAX"),
                                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"),
                                "MESOS_AGENT_ENDPOINT": env("MESOS_AGENT_ENDPOINT"),
                                "sandbox_is_a_dir": Path::new(&env("MESOS_SANDBOX")).is_dir(),
                            },
                        });
                        self.message(&format!("subscribed:{report}")).await;
                    } else {
                        self.message(&format!("resubscribed:{}", self.subscriptions)).await;
                    }
                }
                "LAUNCH" => {
                    let task = e["launch"]["task"].clone();
                    let id = task["task_id"]["value"].as_str().unwrap_or("").to_string();
                    self.unacked_tasks.insert(id.clone(), task.clone());
                    let command = String::from_utf8(unb64(task["data"].as_str().unwrap_or(""))).unwrap();
                    match tokio::process::Command::new("/bin/sh").arg("-c").arg(&command).spawn() {
                        Ok(mut child) => {
                            let pid = child.id().unwrap_or(0);
                            self.pids.insert(id.clone(), pid);
                            // Waited for on the side; its end comes back as an internal event.
                            let internal = self.internal.clone();
                            let task = id.clone();
                            tokio::spawn(async move {
                                let code = child.wait().await.ok().and_then(|s| s.code());
                                let _ = internal.send(Internal::Exited { task, code });
                            });
                            self.update(&id, "TASK_RUNNING", &format!("running as pid {pid}")).await;
                        }
                        Err(err) => self.update(&id, "TASK_FAILED", &format!("cannot start: {err}")).await,
                    }
                }
                "KILL" => {
                    let id = e["kill"]["task_id"]["value"].as_str().unwrap_or("").to_string();
                    self.kill(&id);
                }
                "ACKNOWLEDGED" => {
                    let a = &e["acknowledged"];
                    let task = a["task_id"]["value"].as_str().unwrap_or("").to_string();
                    let uuid = a["uuid"].as_str().unwrap_or("");
                    let state = self
                        .unacked_updates
                        .iter()
                        .find(|(u, _)| u == uuid)
                        .map(|(_, s)| s["state"].as_str().unwrap_or("").to_string());
                    self.unacked_updates.retain(|(u, _)| u != uuid);
                    self.unacked_tasks.remove(&task);
                    match state {
                        Some(state) => self.message(&format!("acked:{task}:{state}")).await,
                        None => self.message(&format!("acked-unknown:{task}:{uuid}")).await,
                    }
                }
                "MESSAGE" => {
                    let text = String::from_utf8(unb64(e["message"]["data"].as_str().unwrap_or(""))).unwrap();
                    if let Some(x) = text.strip_prefix("ping:") {
                        self.message(&format!("pong:{x}")).await;
                    } else if text == "big" {
                        let big = vec![b'x'; 300 * 1024];
                        let (status, body) = self
                            .post(json!({"type": "MESSAGE", "message": {"data": b64(&big)}}))
                            .await;
                        self.message(&format!("big:{status}:{body}")).await;
                    }
                }
                "SHUTDOWN" => {
                    if self.stubborn {
                        self.message("ignoring SHUTDOWN").await;
                        return None;
                    }
                    let ids: Vec<String> = self.pids.keys().cloned().collect();
                    for id in ids {
                        self.kill(&id);
                        self.pids.remove(&id);
                        self.update(&id, "TASK_KILLED", "the executor shut down").await;
                    }
                    return Some(0);
                }
                "ERROR" => eprintln!("executor: ERROR {e}"),
                _ => {}
            }
            None
        }

        fn kill(&mut self, id: &str) {
            if let Some(&pid) = self.pids.get(id) {
                self.killed.insert(id.to_string());
                // SAFETY: kill(2) on a child this executor started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }

        async fn on_internal(&mut self, i: Internal) {
            match i {
                Internal::Exited { task, code } => {
                    if self.pids.remove(&task).is_none() {
                        return;
                    }
                    let (state, message) = if self.killed.remove(&task) {
                        ("TASK_KILLED", "killed as asked".to_string())
                    } else if code == Some(0) {
                        ("TASK_FINISHED", "exited with code 0".to_string())
                    } else {
                        ("TASK_FAILED", format!("exited with {code:?}"))
                    };
                    self.update(&task, state, &message).await;
                }
            }
        }
    }

    /// A version-4-shaped UUID: unique enough for one executor (time, pid and a counter).
    fn rand_uuid() -> [u8; 16] {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let mut b = [0u8; 16];
        b.copy_from_slice(&(nanos ^ (n << 96) ^ ((std::process::id() as u128) << 64)).to_le_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }
}

// ------------------------------------------------------------------------------------------
// The scheduler
// ------------------------------------------------------------------------------------------

/// What this test's framework asks of the master beyond the shared scheduler's calls.
trait ExecutorCalls {
    fn launch(&mut self, offer: &Value, tasks: Vec<Value>);
    fn launch_one(&mut self, cpus: f64, task: impl Fn(&str) -> Value) -> String;
    fn message_from_executor(&mut self, prefix: &str) -> (String, Value);
    fn message_to_executor(&self, agent: &str, executor: &str, data: &[u8]) -> (u16, String);
    fn shutdown(&self, agent: &str, executor: &str) -> (u16, String);
}

impl ExecutorCalls for Scheduler {
    fn launch(&mut self, offer: &Value, tasks: Vec<Value>) {
        self.accepted(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                "filters": {"refuse_seconds": 1},
            }
        }));
    }

    /// Launches `task` (made for the offer's agent) on an offer of at least `cpus`, again on a
    /// new offer if the one taken was rescinded meanwhile (an agent that registers again has
    /// its offers rescinded). Returns the agent.
    fn launch_one(&mut self, cpus: f64, task: impl Fn(&str) -> Value) -> String {
        loop {
            let offer = self.offer(cpus);
            let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
            let t = task(&agent);
            let id = t["task_id"]["value"].as_str().unwrap().to_string();
            self.launch(&offer, vec![t]);
            let first = self.next(&format!("the first update of {id}"), SETTLE, |e| {
                event_type(e) == "UPDATE" && e["update"]["status"]["task_id"]["value"] == id.as_str()
            });
            let st = &first["update"]["status"];
            if st["state"] == "TASK_DROPPED" && st["reason"] == "REASON_INVALID_OFFERS" {
                eprintln!("{id}: the offer was gone ({}); again", st["message"]);
                continue;
            }
            self.pending.push_front(first);
            return agent;
        }
    }

    /// The next framework message whose text starts with `prefix`: its text, and the event.
    fn message_from_executor(&mut self, prefix: &str) -> (String, Value) {
        let e = self.next(&format!("a message {prefix:?}"), SETTLE, |e| {
            event_type(e) == "MESSAGE"
                && e["message"]["data"]
                    .as_str()
                    .is_some_and(|d| String::from_utf8_lossy(&unb64(d)).starts_with(prefix))
        });
        let text = String::from_utf8(unb64(e["message"]["data"].as_str().unwrap())).unwrap();
        (text, e)
    }

    fn message_to_executor(&self, agent: &str, executor: &str, data: &[u8]) -> (u16, String) {
        self.call(json!({
            "type": "MESSAGE",
            "message": {"agent_id": {"value": agent}, "executor_id": {"value": executor}, "data": b64(data)}
        }))
    }

    fn shutdown(&self, agent: &str, executor: &str) -> (u16, String) {
        self.call(json!({
            "type": "SHUTDOWN",
            "shutdown": {"executor_id": {"value": executor}, "agent_id": {"value": agent}}
        }))
    }
}

// ------------------------------------------------------------------------------------------
// The cluster and what the tests launch
// ------------------------------------------------------------------------------------------

/// This test binary where the agent's host tasks see it (they see the host's /opt, read-only),
/// removed again when dropped.
struct ExecutorBinary {
    dir: PathBuf,
    path: PathBuf,
}

impl ExecutorBinary {
    fn install(label: &str) -> ExecutorBinary {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(format!("/opt/tepui-e2e-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("executor");
        let me = std::env::current_exe().unwrap();
        if std::fs::hard_link(&me, &path).is_err() {
            std::fs::copy(&me, &path).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        ExecutorBinary { dir, path }
    }
}

impl Drop for ExecutorBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Cluster {
    _marked: MarkedProcesses,
    marker: String,
    exe: ExecutorBinary,
    sb: Sandbox,
    _server: Daemon,
    agent: Daemon,
    agent_ip: String,
    agent_args: Vec<String>,
    master: String,
}

impl Cluster {
    fn start(label: &str, server_ip: &str, agent_ip: &str, subnet: &str) -> Cluster {
        need_root();
        let marked = MarkedProcesses::new(label);
        let exe = ExecutorBinary::install(label);
        let sb = Sandbox::new(label);
        let c = OneAgentCluster::start(&sb, label, (server_ip, agent_ip), subnet, "34100-34109");
        Cluster {
            marker: marked.value().to_string(),
            _marked: marked,
            exe,
            sb,
            _server: c.server,
            agent: c.agent,
            agent_ip: agent_ip.to_string(),
            agent_args: c.agent_args,
            master: c.master,
        }
    }

    /// An ExecutorInfo of this test binary in executor `mode`, with its own resources.
    fn executor_info(&self, id: &str, mode: &str, grace_secs: u64) -> Value {
        json!({
            "executor_id": {"value": id},
            "name": format!("e2e executor {id}"),
            "command": {
                "shell": false,
                "value": self.exe.path.display().to_string(),
                "arguments": ["executor", "executor_process", "--exact", "--nocapture", "--test-threads=1"],
                "environment": {"variables": [
                    {"name": MODE_VAR, "value": mode},
                    {"name": MARKER_VAR, "value": self.marker},
                ]},
            },
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 128}},
            ],
            "shutdown_grace_period": {"nanoseconds": grace_secs * 1_000_000_000},
        })
    }

    fn agent_api(&self) -> String {
        format!("http://{}:5051/api/v1/executor", self.agent_ip)
    }
}

fn framework_info() -> Value {
    json!({
        "user": "root",
        "name": "e2e-executor-framework",
        "roles": ["*"],
        "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "MULTI_ROLE"}],
        "failover_timeout": 3600,
        "checkpoint": true,
    })
}

/// A task its executor runs: `data` is the shell command the test executor starts for it.
fn task_on(executor: &Value, id: &str, agent: &str, shell: &str) -> Value {
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": {"value": agent},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.25}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        ],
        "executor": executor,
        "data": b64(shell.as_bytes()),
    })
}

fn cpus_of(resources: &Value) -> f64 {
    match resources {
        Value::Array(list) => list
            .iter()
            .filter(|r| r["name"] == "cpus")
            .filter_map(|r| r["scalar"]["value"].as_f64())
            .sum(),
        // The legacy endpoints' flat map.
        other => other["cpus"].as_f64().unwrap_or(0.0),
    }
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn a_custom_executor_runs_tasks_talks_and_outlives_its_agents_restart() {
    let mut c = Cluster::start("ex95", "127.0.95.1", "127.0.95.2", "10.214.95.0/24");
    let mut fw = Scheduler::subscribe(&c.master, framework_info());

    // A task on executor ex-1: the agent starts the executor, which subscribes and runs it.
    let offer = fw.offer(1.0);
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let ex1 = c.executor_info("ex-1", "cooperative", 2);
    fw.launch(&offer, vec![task_on(&ex1, "t1", &agent, "exec sleep 600")]);
    let (text, _) = fw.message_from_executor("subscribed:");
    let told: Value = serde_json::from_str(&text["subscribed:".len()..]).unwrap();
    assert_eq!(told["executor_id"], "ex-1", "{told}");
    assert_eq!(told["framework_id"], fw.framework_id.as_str(), "{told}");
    assert_eq!(told["agent_id"], agent.as_str(), "{told}");
    assert!(told["container_id"].as_str().is_some_and(|c| !c.is_empty()), "{told}");
    let env = &told["env"];
    assert_eq!(env["MESOS_CHECKPOINT"], "1", "{told}");
    assert_eq!(env["MESOS_SANDBOX"], "/mnt/sandbox", "{told}");
    assert_eq!(env["sandbox_is_a_dir"], true, "{told}");
    assert!(
        env["MESOS_DIRECTORY"]
            .as_str()
            .is_some_and(|d| d.starts_with(c.sb.path().to_str().unwrap())),
        "{told}"
    );
    assert_eq!(env["MESOS_AGENT_ENDPOINT"], "127.0.95.2:5051", "{told}");
    assert_eq!(env["MESOS_RECOVERY_TIMEOUT"], "15mins", "{told}");
    assert_eq!(env["MESOS_SUBSCRIPTION_BACKOFF_MAX"], "2secs", "{told}");
    assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "2secs", "{told}");

    let running = fw.update_until("t1", "TASK_RUNNING");
    assert_eq!(running["executor_id"]["value"], "ex-1", "{running}");
    assert_eq!(running["source"], "SOURCE_EXECUTOR", "{running}");
    // Acknowledged by the framework, committed by the leader: the agent tells the executor.
    fw.message_from_executor("acked:t1:TASK_RUNNING");

    // Framework messages both ways.
    let (status, body) = fw.message_to_executor(&agent, "ex-1", b"ping:1");
    assert_eq!(status, 202, "{body}");
    let (_, pong) = fw.message_from_executor("pong:1");
    assert_eq!(pong["message"]["agent_id"]["value"], agent.as_str(), "{pong}");
    assert_eq!(pong["message"]["executor_id"]["value"], "ex-1", "{pong}");

    // A second task on the same executor: no second executor, only the task's resources.
    fw.launch_one(0.25, |a| task_on(&ex1, "t2", a, "exit 0"));
    fw.update_until("t2", "TASK_RUNNING");
    let finished = fw.update_until("t2", "TASK_FINISHED");
    assert_eq!(finished["executor_id"]["value"], "ex-1", "{finished}");
    fw.message_from_executor("acked:t2:TASK_FINISHED");
    assert!(
        !fw.pending.iter().any(|e| event_type(e) == "MESSAGE"
            && String::from_utf8_lossy(&unb64(e["message"]["data"].as_str().unwrap_or(""))).starts_with("subscribed:")),
        "the executor was started once"
    );

    // The operator endpoints show the executor as Mesos does.
    let state = fw.get("/master/state");
    let f = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == fw.framework_id.as_str())
        .unwrap_or_else(|| panic!("the framework in /master/state: {state}"));
    let executors = f["executors"].as_array().unwrap();
    assert_eq!(executors.len(), 1, "{f}");
    assert_eq!(executors[0]["executor_id"], "ex-1", "{f}");
    assert_eq!(executors[0]["slave_id"], agent.as_str(), "{f}");
    assert_eq!(executors[0]["framework_id"], fw.framework_id.as_str(), "{f}");
    assert!((cpus_of(&executors[0]["resources"]) - 0.5).abs() < 1e-9, "{f}");
    let t1 = f["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "t1").unwrap();
    assert_eq!(t1["executor_id"], "ex-1", "{t1}");
    let got = fw.operator(json!({"type": "GET_EXECUTORS"}));
    let list = got["get_executors"]["executors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{got}");
    assert_eq!(list[0]["executor_info"]["executor_id"]["value"], "ex-1", "{got}");
    assert_eq!(list[0]["agent_id"]["value"], agent.as_str(), "{got}");
    // The executor's resources and its running task's are in use on the agent.
    let slaves = fw.get("/master/slaves");
    assert!(
        (cpus_of(&slaves["slaves"][0]["used_resources"]) - 0.75).abs() < 1e-9,
        "{slaves}"
    );

    // The agent dies and comes back: the executor subscribes again, t1 runs on.
    c.agent.kill();
    c.agent.restart(&c.agent_args);
    c.agent.wait_ready(START);
    fw.message_from_executor("resubscribed:2");
    fw.accepted(json!({
        "type": "RECONCILE",
        "reconcile": {"tasks": [{"task_id": {"value": "t1"}, "agent_id": {"value": agent}}]}
    }));
    let reconciled = fw.next("t1 reconciled", SETTLE, |e| {
        event_type(e) == "UPDATE"
            && e["update"]["status"]["task_id"]["value"] == "t1"
            && e["update"]["status"]["reason"] == "REASON_RECONCILIATION"
    });
    assert_eq!(reconciled["update"]["status"]["state"], "TASK_RUNNING", "{reconciled}");
    assert_eq!(
        reconciled["update"]["status"]["executor_id"]["value"], "ex-1",
        "{reconciled}"
    );
    let (status, body) = fw.message_to_executor(&agent, "ex-1", b"ping:after-restart");
    assert_eq!(status, 202, "{body}");
    fw.message_from_executor("pong:after-restart");

    // KILL goes through the executor.
    fw.accepted(json!({"type": "KILL", "kill": {"task_id": {"value": "t1"}, "agent_id": {"value": agent}}}));
    let killed = fw.update_until("t1", "TASK_KILLED");
    assert_eq!(killed["executor_id"]["value"], "ex-1", "{killed}");

    // SHUTDOWN of a cooperative executor: it kills its task and exits; the framework hears
    // FAILURE with its status.
    fw.launch_one(0.25, |a| task_on(&ex1, "t3", a, "exec sleep 600"));
    fw.update_until("t3", "TASK_RUNNING");
    let (status, body) = fw.shutdown(&agent, "ex-1");
    assert_eq!(status, 202, "{body}");
    let ended = fw.update_until("t3", "TASK_KILLED");
    assert_eq!(ended["message"], "the executor shut down", "{ended}");
    let failure = fw.next("FAILURE of ex-1", SETTLE, |e| {
        event_type(e) == "FAILURE" && e["failure"]["executor_id"]["value"] == "ex-1"
    });
    assert_eq!(failure["failure"]["agent_id"]["value"], agent.as_str(), "{failure}");
    assert_eq!(failure["failure"]["status"], 0, "{failure}");

    // One that ignores SHUTDOWN is killed after its grace period; its task fails with it.
    let ex2 = c.executor_info("ex-2", "stubborn", 2);
    fw.launch_one(1.0, |a| task_on(&ex2, "t4", a, "exec sleep 600"));
    fw.message_from_executor("subscribed:");
    fw.update_until("t4", "TASK_RUNNING");
    let asked = Instant::now();
    let (status, body) = fw.shutdown(&agent, "ex-2");
    assert_eq!(status, 202, "{body}");
    fw.message_from_executor("ignoring SHUTDOWN");
    let failed = fw.update_until("t4", "TASK_FAILED");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "killed before its grace period"
    );
    assert_eq!(failed["reason"], "REASON_EXECUTOR_TERMINATED", "{failed}");
    assert_eq!(failed["executor_id"]["value"], "ex-2", "{failed}");
    let failure = fw.next("FAILURE of ex-2", SETTLE, |e| {
        event_type(e) == "FAILURE" && e["failure"]["executor_id"]["value"] == "ex-2"
    });
    assert_eq!(failure["failure"]["status"], 137, "killed: {failure}");

    // One that does not come back after an agent restart is killed once the agent has waited
    // for it; its task is gone (TASK_GONE for a partition-aware framework).
    let ex3 = c.executor_info("ex-3", "deaf", 2);
    fw.launch_one(1.0, |a| task_on(&ex3, "t5", a, "exec sleep 600"));
    fw.message_from_executor("subscribed:");
    fw.update_until("t5", "TASK_RUNNING");
    c.agent.kill();
    c.agent.restart(&c.agent_args);
    c.agent.wait_ready(START);
    let gone = fw.update_until("t5", "TASK_GONE");
    assert_eq!(gone["reason"], "REASON_EXECUTOR_REREGISTRATION_TIMEOUT", "{gone}");
    assert!(
        gone["message"].as_str().unwrap().contains("did not reregister"),
        "{gone}"
    );
    fw.next("FAILURE of ex-3", SETTLE, |e| {
        event_type(e) == "FAILURE" && e["failure"]["executor_id"]["value"] == "ex-3"
    });

    // Everything they held is free again, and no executor is left.
    tepui_e2e::wait_for("the agent's resources back", SETTLE, || {
        let slaves = fw.get("/master/slaves");
        let used = cpus_of(&slaves["slaves"][0]["used_resources"]);
        let executors = fw.operator(json!({"type": "GET_EXECUTORS"}));
        let left = executors["get_executors"]["executors"].as_array().map_or(0, Vec::len);
        if used.abs() < 1e-9 && left == 0 {
            Ok(())
        } else {
            Err(format!("{used} cpus used, {left} executors"))
        }
    });
    fw.accepted(json!({"type": "TEARDOWN"}));
}

#[test]
fn bad_executor_input_is_refused_and_the_agent_keeps_serving() {
    let c = Cluster::start("ex96", "127.0.96.1", "127.0.96.2", "10.214.96.0/24");
    let mut fw = Scheduler::subscribe(&c.master, framework_info());
    let offer = fw.offer(1.0);
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let ex1 = c.executor_info("ex-1", "cooperative", 2);
    fw.launch(&offer, vec![task_on(&ex1, "t1", &agent, "exec sleep 600")]);
    fw.message_from_executor("subscribed:");
    fw.update_until("t1", "TASK_RUNNING");

    let rt = runtime();
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, content_type: &str, token: Option<&str>| -> (u16, String) {
        rt.block_on(async {
            let mut req = http
                .post(c.agent_api())
                .header("Content-Type", content_type)
                .timeout(CALL_TIMEOUT)
                .body(body);
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            let resp = req.send().await.expect("the agent answers");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    };
    let subscribe = |framework: &str, executor: &str| {
        serde_json::to_vec(&json!({
            "type": "SUBSCRIBE",
            "framework_id": {"value": framework},
            "executor_id": {"value": executor},
            "subscribe": {},
        }))
        .unwrap()
    };
    let fid = fw.framework_id.clone();
    let (status, body) = post(subscribe("no-such-framework", "ex-1"), "application/json", Some("x"));
    assert_eq!((status, body.as_str()), (400, "Framework cannot be found"));
    let (status, body) = post(subscribe(&fid, "no-such-executor"), "application/json", Some("x"));
    assert_eq!((status, body.as_str()), (400, "Executor cannot be found"));
    let (status, body) = post(subscribe(&fid, "ex-1"), "application/json", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"), "{body}");
    let (status, body) = post(subscribe(&fid, "ex-1"), "application/json", Some("not-its-token"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(b"{not json".to_vec(), "application/json", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("Failed to convert JSON into Call protobuf"), "{body}");
    let (status, body) = post(subscribe(&fid, "ex-1"), "text/plain", None);
    assert_eq!(status, 415, "{body}");
    let staging = serde_json::to_vec(&json!({
        "type": "UPDATE", "framework_id": {"value": fid}, "executor_id": {"value": "ex-1"},
        "update": {"status": {"task_id": {"value": "t1"}, "state": "TASK_STAGING", "source": "SOURCE_EXECUTOR", "uuid": b64(&[1; 16])}},
    }))
    .unwrap();
    let (status, body) = post(staging, "application/json", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TASK_STAGING"), "{body}");

    // Framework messages over the limit, either way.
    let big = vec![b'x'; 300 * 1024];
    let (status, body) = fw.message_to_executor(&agent, "ex-1", &big);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 262144"), "{body}");
    let (status, _) = fw.message_to_executor(&agent, "ex-1", b"big");
    assert_eq!(status, 202);
    let (text, _) = fw.message_from_executor("big:");
    assert!(
        text.starts_with("big:400:") && text.contains("at most 262144"),
        "{text}"
    );

    // SHUTDOWN and MESSAGE for an executor that does not exist; a second ExecutorInfo under
    // the running one's id.
    let (status, body) = fw.shutdown(&agent, "no-such-executor");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no executor \"no-such-executor\""), "{body}");
    let (status, body) = fw.message_to_executor(&agent, "no-such-executor", b"hi");
    assert_eq!(status, 400, "{body}");
    let mut other = ex1.clone();
    other["command"]["environment"]["variables"][0]["value"] = json!("stubborn");
    fw.launch_one(0.25, |a| task_on(&other, "t-other", a, "exec sleep 600"));
    let e = fw.next("t-other refused", SETTLE, |e| {
        event_type(e) == "UPDATE" && e["update"]["status"]["task_id"]["value"] == "t-other"
    });
    let st = &e["update"]["status"];
    assert_eq!(
        (st["state"].as_str(), st["reason"].as_str()),
        (Some("TASK_ERROR"), Some("REASON_TASK_INVALID")),
        "{st}"
    );
    assert!(st["message"].as_str().unwrap().contains("not compatible"), "{st}");

    // Nothing was launched by any of it, and the executor is served as before.
    let state = fw.get("/master/state");
    let f = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == fid.as_str())
        .unwrap()
        .clone();
    assert_eq!(f["executors"].as_array().unwrap().len(), 1, "{f}");
    let tasks: Vec<&str> = f["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(tasks, ["t1"], "{f}");
    let (status, body) = fw.message_to_executor(&agent, "ex-1", b"ping:still");
    assert_eq!(status, 202, "{body}");
    fw.message_from_executor("pong:still");
    fw.accepted(json!({"type": "TEARDOWN"}));
}
