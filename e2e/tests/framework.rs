//! A Mesos framework against real servers and agents, through the v1 scheduler HTTP API.
//!
//! The framework client lives in this file and is written from Apache Mesos' documentation of
//! the scheduler HTTP API (<https://mesos.apache.org/documentation/latest/scheduler-http-api/>),
//! not from tepui's code: plain JSON over HTTP with reqwest, the RecordIO event stream parsed
//! here. It shares nothing with the server crates, so a shape the server gets wrong is a shape
//! a real Mesos framework would trip on.
//!
//! - `a_mesos_framework_runs_tasks_and_sees_its_agent_go_and_come_back` (127.0.16.x): offers,
//!   a launch of two tasks, updates and acknowledgements, the operator endpoints, the agent
//!   stopped (TASK_UNREACHABLE) and continued (explicit reconciliation: TASK_RUNNING), a kill
//!   and a teardown.
//! - `bad_scheduler_calls_are_refused_clearly` (127.0.17.x): a framework authenticating with
//!   its principal and secret (HTTP Basic) subscribes into its principal's roles and is refused
//!   outside them, under another principal or with a wrong secret; bad calls get a 4xx with a
//!   reason; invalid launches get TASK_ERROR or TASK_DROPPED updates and launch nothing.
//! - `a_framework_survives_a_leader_failover` (127.0.18.x): a framework subscribed through a
//!   follower (307 to the leader) loses the leader to kill -9, subscribes again through a
//!   survivor with its framework id, reconciles, and finds its task running once, its resources
//!   still taken.
//!
//! Tasks run on the host's filesystem (no `container` in the TaskInfo). Long tasks carry a
//! marker in their environment so the test finds (and on failure kills) exactly its processes.
//! Needs root, like every test that runs tasks.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tepui_api::StatusView;
use tepui_e2e::mesos::{take_record, TERMINAL_STATES};
use tepui_e2e::{
    bootstrap_server, cluster_addr, http_addr, read_token, spawn_servers, tepui, wait_for, Daemon, Sandbox, MARKER_VAR,
};

const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
/// How long one non-streaming call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How many 307s one call follows before giving up (a leader change midway may add one).
const MAX_REDIRECTS: usize = 5;

// ------------------------------------------------------------------------------------------
// The framework client
// ------------------------------------------------------------------------------------------

/// What the stream reader hands the test thread.
enum Item {
    Event(Value),
    /// The stream is over, and why.
    End(String),
}

/// Reads the SUBSCRIBE response's RecordIO body and sends each event as JSON, then an `End`.
async fn read_stream(mut resp: reqwest::Response, tx: mpsc::Sender<Item>) {
    let mut buf = Vec::new();
    loop {
        loop {
            match take_record(&mut buf) {
                Ok(Some(record)) => match serde_json::from_slice::<Value>(&record) {
                    Ok(event) => {
                        if tx.send(Item::Event(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Item::End(format!(
                            "a record is not JSON ({e}): {}",
                            String::from_utf8_lossy(&record)
                        )));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Item::End(e));
                    return;
                }
            }
        }
        match resp.chunk().await {
            Ok(Some(bytes)) => buf.extend_from_slice(&bytes),
            Ok(None) if buf.is_empty() => {
                let _ = tx.send(Item::End("the master closed the stream".into()));
                return;
            }
            Ok(None) => {
                let _ = tx.send(Item::End(format!(
                    "the master closed the stream inside a record ({} bytes held)",
                    buf.len()
                )));
                return;
            }
            Err(e) => {
                let _ = tx.send(Item::End(format!("reading the stream failed: {e}")));
                return;
            }
        }
    }
}

/// A finished non-streaming answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    /// The master that answered.
    from: String,
}

impl Reply {
    fn accepted(self, what: &str) -> Reply {
        assert_eq!(self.status, 202, "{what} through {}: {self:?}", self.from);
        self
    }
}

/// A Mesos v1 HTTP scheduler: one subscription (a RecordIO stream read in the background into
/// a channel) and calls on other connections with the stream's `Mesos-Stream-Id`.
struct Scheduler {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// The master calls go to: after a 307, the leader it pointed at (kept for later calls, as
    /// Mesos clients do).
    master: String,
    /// Every redirect followed, `(from, to)`.
    redirects: Vec<(String, String)>,
    stream_id: Option<String>,
    framework_id: Option<String>,
    events: Option<mpsc::Receiver<Item>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Events read off the stream that no one asked for yet, oldest first.
    pending: VecDeque<Value>,
    /// Why the current stream ended, once it has.
    ended: Option<String>,
    heartbeats: usize,
    /// Offers accepted or declined: not to be handed out again.
    used_offers: HashSet<String>,
    /// One line per event received, for failure messages.
    log: Vec<String>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        if std::thread::panicking() {
            let tail = &self.log[self.log.len().saturating_sub(40)..];
            eprintln!(
                "e2e: framework {:?} on {} (redirects {:?}); last events:\n  {}",
                self.framework_id,
                self.master,
                self.redirects,
                tail.join("\n  ")
            );
        }
    }
}

/// `host:port` of the master a 307's `Location` names: `http://host:port/path` or the
/// scheme-relative `//host:port/path` Mesos masters send.
fn location_authority(location: &str) -> Result<String, String> {
    let rest = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("//"))
        .ok_or_else(|| format!("a Location that names no http master: {location:?}"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("a Location without a host: {location:?}"));
    }
    Ok(authority.to_string())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!("{}...", &s[..s.char_indices().nth(400).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

fn event_type(e: &Value) -> &str {
    e["type"].as_str().unwrap_or("")
}

impl Scheduler {
    fn new(master: &str) -> Scheduler {
        Scheduler::with_http(master, tepui_e2e::http_client())
    }

    /// A framework that authenticates as Mesos frameworks do: HTTP Basic with its principal
    /// and its secret (here a tepui API token).
    fn with_credentials(master: &str, principal: &str, secret: &str) -> Scheduler {
        use base64::Engine;
        let mut headers = reqwest::header::HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{principal}:{secret}"));
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Basic {basic}")).expect("a valid header"),
        );
        Scheduler::with_http(master, reqwest::Client::builder().default_headers(headers))
    }

    fn with_http(master: &str, http: reqwest::ClientBuilder) -> Scheduler {
        // reqwest's rustls (linked in for the image crate's registry pulls) needs the process's
        // crypto provider, even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let http = http
            // 307s are followed here, keeping method and body, and the leader is remembered.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        Scheduler {
            rt,
            http,
            master: master.to_string(),
            redirects: vec![],
            stream_id: None,
            framework_id: None,
            events: None,
            reader: None,
            pending: VecDeque::new(),
            ended: None,
            heartbeats: 0,
            used_offers: HashSet::new(),
            log: vec![],
        }
    }

    fn framework_id(&self) -> &str {
        self.framework_id.as_deref().expect("subscribed")
    }

    fn stream_id(&self) -> &str {
        self.stream_id.as_deref().expect("subscribed")
    }

    /// POSTs `body` to `/api/v1/scheduler` on the current master, following 307s to the leader
    /// (same method, same body). Without `streaming`, the whole exchange has a deadline; with
    /// it, only the wait for the response head.
    fn post(
        &mut self,
        body: &[u8],
        content_type: &str,
        stream_id: Option<&str>,
        streaming: bool,
    ) -> Result<reqwest::Response, String> {
        for _ in 0..=MAX_REDIRECTS {
            let url = format!("http://{}/api/v1/scheduler", self.master);
            let mut req = self
                .http
                .post(&url)
                .header("Content-Type", content_type)
                .header("Accept", "application/json")
                .body(body.to_vec());
            if let Some(id) = stream_id {
                req = req.header("Mesos-Stream-Id", id);
            }
            if !streaming {
                req = req.timeout(CALL_TIMEOUT);
            }
            let resp = self
                .rt
                .block_on(async { tokio::time::timeout(CALL_TIMEOUT, req.send()).await })
                .map_err(|_| format!("POST {url}: no answer within {CALL_TIMEOUT:?}"))?
                .map_err(|e| format!("POST {url}: {e}"))?;
            if resp.status().as_u16() == 307 {
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("POST {url}: 307 without a Location"))?;
                let leader = location_authority(location)?;
                self.redirects.push((self.master.clone(), leader.clone()));
                self.master = leader;
                continue;
            }
            return Ok(resp);
        }
        Err(format!("more than {MAX_REDIRECTS} redirects: {:?}", self.redirects))
    }

    /// Any bytes, any content type, any stream id: for the bad-input test.
    fn try_call_raw(&mut self, body: &[u8], content_type: &str, stream_id: Option<&str>) -> Result<Reply, String> {
        let resp = self.post(body, content_type, stream_id, false)?;
        let status = resp.status().as_u16();
        let body = self
            .rt
            .block_on(resp.text())
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Reply {
            status,
            body,
            from: self.master.clone(),
        })
    }

    fn call_raw(&mut self, body: &[u8], content_type: &str, stream_id: Option<&str>) -> Reply {
        self.try_call_raw(body, content_type, stream_id)
            .unwrap_or_else(|e| panic!("a scheduler call got no answer: {e}"))
    }

    /// A call (not SUBSCRIBE) as JSON with this subscription's stream id: status and body.
    fn call(&mut self, call: Value) -> Reply {
        let id = self.stream_id.clone();
        let body = serde_json::to_vec(&call).unwrap();
        self.call_raw(&body, "application/json", id.as_deref())
    }

    /// SUBSCRIBE with `framework_info` (with an `id`, a re-subscription: it goes into the call's
    /// `framework_id` too). Starts reading the new stream and waits for its first event, which
    /// must be SUBSCRIBED; returns that event's `subscribed`. Events of an earlier stream are
    /// dropped.
    fn try_subscribe(&mut self, framework_info: &Value) -> Result<Value, String> {
        let mut call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}});
        if let Some(id) = framework_info.get("id") {
            call["framework_id"] = id.clone();
        }
        let body = serde_json::to_vec(&call).unwrap();
        let resp = self.post(&body, "application/json", None, true)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = self.rt.block_on(resp.text()).unwrap_or_default();
            return Err(format!("SUBSCRIBE through {} answered {status}: {text}", self.master));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let stream_id = header("mesos-stream-id");
        if stream_id.is_empty() {
            return Err(format!(
                "SUBSCRIBE through {}: 200 without a Mesos-Stream-Id",
                self.master
            ));
        }
        let content_type = header("content-type");
        if !content_type.starts_with("application/json") {
            return Err(format!(
                "SUBSCRIBE through {}: Content-Type {content_type:?}, not JSON",
                self.master
            ));
        }
        if let Some(old) = self.reader.take() {
            old.abort();
        }
        let (tx, rx) = mpsc::channel();
        self.reader = Some(self.rt.spawn(read_stream(resp, tx)));
        self.events = Some(rx);
        self.ended = None;
        self.pending.clear();
        self.used_offers.clear();
        self.stream_id = Some(stream_id);
        self.log.push(format!("-- subscribed through {}", self.master));
        let first = self.try_next("the first event", Duration::from_secs(15), |_| true)?;
        if event_type(&first) != "SUBSCRIBED" {
            return Err(format!("the stream's first event is not SUBSCRIBED: {}", short(&first)));
        }
        let subscribed = first["subscribed"].clone();
        let id = subscribed["framework_id"]["value"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("SUBSCRIBED without a framework_id: {}", short(&first)))?;
        self.framework_id = Some(id.to_string());
        Ok(subscribed)
    }

    fn subscribe(&mut self, framework_info: &Value) -> Value {
        self.try_subscribe(framework_info)
            .unwrap_or_else(|e| panic!("SUBSCRIBE failed: {e}"))
    }

    /// The first event, held back or new, that `want` takes. HEARTBEATs are counted and
    /// dropped; other events are held back for later. An ERROR event, the end of the stream or
    /// the deadline is an error.
    fn try_next(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Result<Value, String> {
        if let Some(i) = self.pending.iter().position(&want) {
            return Ok(self.pending.remove(i).expect("in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = &self.ended {
                return Err(format!("{why}, while waiting for {what}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let held: Vec<String> = self.pending.iter().map(|e| event_type(e).to_string()).collect();
                return Err(format!("no {what} within {timeout:?} (held back: {held:?})"));
            }
            let rx = self.events.as_ref().expect("subscribed");
            match rx.recv_timeout(left) {
                Ok(Item::Event(e)) => {
                    self.log.push(short(&e));
                    if event_type(&e) == "HEARTBEAT" {
                        self.heartbeats += 1;
                        continue;
                    }
                    if want(&e) {
                        return Ok(e);
                    }
                    if event_type(&e) == "ERROR" {
                        return Err(format!("the master sent ERROR while waiting for {what}: {}", short(&e)));
                    }
                    self.pending.push_back(e);
                }
                Ok(Item::End(why)) => {
                    self.log.push(format!("-- stream ended: {why}"));
                    self.ended = Some(why);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = Some("the stream reader is gone".into()),
            }
        }
    }

    /// The next event of type `ty`.
    fn next_event(&mut self, ty: &str, timeout: Duration) -> Value {
        self.try_next(ty, timeout, |e| event_type(e) == ty)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The offers of the next OFFERS event that has some not yet used, minus the used ones and
    /// those rescinded since.
    fn next_offers(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let used = self.used_offers.clone();
            let e = self
                .try_next("OFFERS with a new offer", left, |e| {
                    event_type(e) == "OFFERS"
                        && e["offers"]["offers"]
                            .as_array()
                            .is_some_and(|o| o.iter().any(|o| !used.contains(offer_id(o))))
                })
                .unwrap_or_else(|e| panic!("{e}"));
            let rescinded: HashSet<String> = self
                .pending
                .iter()
                .filter(|e| event_type(e) == "RESCIND")
                .filter_map(|e| e["rescind"]["offer_id"]["value"].as_str().map(String::from))
                .collect();
            let offers: Vec<Value> = e["offers"]["offers"]
                .as_array()
                .expect("offers")
                .iter()
                .filter(|o| !used.contains(offer_id(o)) && !rescinded.contains(offer_id(o)))
                .cloned()
                .collect();
            if !offers.is_empty() {
                return offers;
            }
        }
    }

    /// The status of the next UPDATE for `task_id`.
    fn try_next_update(&mut self, task_id: &str, timeout: Duration) -> Result<Value, String> {
        let e = self.try_next(&format!("an UPDATE for {task_id}"), timeout, |e| {
            event_type(e) == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
        })?;
        Ok(e["update"]["status"].clone())
    }

    fn next_update(&mut self, task_id: &str, timeout: Duration) -> Value {
        self.try_next_update(task_id, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the stream to end (or fail) and returns why.
    fn wait_stream_end(&mut self, timeout: Duration) -> String {
        match self.try_next("the end of the stream", timeout, |_| false) {
            Err(why) if self.ended.is_some() => why,
            Err(e) => panic!("{e}"),
            Ok(_) => unreachable!(),
        }
    }

    fn base_call(&self, ty: &str) -> Value {
        json!({"framework_id": {"value": self.framework_id()}, "type": ty})
    }

    /// ACCEPT `offer_ids` with one LAUNCH of `tasks`; the rest of the offers is declined for a
    /// second.
    fn accept(&mut self, offer_ids: &[&str], tasks: Vec<Value>) -> Reply {
        let mut call = self.base_call("ACCEPT");
        call["accept"] = json!({
            "offer_ids": offer_ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
            "filters": {"refuse_seconds": 1},
        });
        self.used_offers.extend(offer_ids.iter().map(|s| s.to_string()));
        self.call(call)
    }

    fn decline(&mut self, offer_ids: &[&str]) -> Reply {
        let mut call = self.base_call("DECLINE");
        call["decline"] = json!({
            "offer_ids": offer_ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
            "filters": {"refuse_seconds": 1},
        });
        self.used_offers.extend(offer_ids.iter().map(|s| s.to_string()));
        self.call(call)
    }

    /// ACKNOWLEDGE an update's status if it carries a uuid (only those are acknowledged);
    /// true if it did.
    fn acknowledge(&mut self, status: &Value) -> bool {
        let Some(uuid) = status["uuid"].as_str() else {
            return false;
        };
        let mut call = self.base_call("ACKNOWLEDGE");
        call["acknowledge"] = json!({
            "agent_id": status["agent_id"],
            "task_id": status["task_id"],
            "uuid": uuid,
        });
        self.call(call).accepted("ACKNOWLEDGE");
        true
    }

    /// RECONCILE `(task id, agent id)`s; none: implicit reconciliation.
    fn reconcile(&mut self, tasks: &[(&str, &str)]) -> Reply {
        let mut call = self.base_call("RECONCILE");
        call["reconcile"] = json!({
            "tasks": tasks
                .iter()
                .map(|(t, a)| json!({"task_id": {"value": t}, "agent_id": {"value": a}}))
                .collect::<Vec<_>>(),
        });
        self.call(call)
    }

    /// RECONCILE (explicit with `tasks`, implicit without) until `task` is reported
    /// TASK_RUNNING; every update on the way is acknowledged and must not be terminal.
    fn reconcile_until_running(&mut self, task: &str, tasks: &[(&str, &str)], wait: Duration) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            assert!(Instant::now() < deadline, "{task} not TASK_RUNNING within {SETTLE:?}");
            self.reconcile(tasks).accepted("RECONCILE");
            match self.try_next_update(task, wait) {
                Ok(status) => {
                    eprintln!("reconciled {task}: {} {}", state(&status), reason(&status));
                    self.acknowledge(&status);
                    assert!(!TERMINAL_STATES.contains(&state(&status)), "{status}");
                    if state(&status) == "TASK_RUNNING" {
                        return status;
                    }
                }
                Err(e) if self.ended.is_some() => panic!("{e}"),
                Err(_) => {}
            }
        }
    }

    fn kill(&mut self, task_id: &str, agent_id: &str) -> Reply {
        let mut call = self.base_call("KILL");
        call["kill"] = json!({"task_id": {"value": task_id}, "agent_id": {"value": agent_id}});
        self.call(call)
    }

    fn teardown(&mut self) -> Reply {
        let call = self.base_call("TEARDOWN");
        self.call(call)
    }

    /// GET an operator endpoint of `addr` as JSON.
    fn get_json(&self, addr: &str, path: &str) -> Result<Value, String> {
        let url = format!("http://{addr}{path}");
        let req = self
            .http
            .get(&url)
            .header("Accept", "application/json")
            .timeout(CALL_TIMEOUT);
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("GET {url}: {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e}): {text}"))
        })
    }
}

// ------------------------------------------------------------------------------------------
// Mesos JSON helpers
// ------------------------------------------------------------------------------------------

fn framework_info(id: Option<&str>) -> Value {
    let mut info = json!({
        "user": "root",
        "name": "e2e-framework",
        "roles": ["*"],
        "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "MULTI_ROLE"}],
        "failover_timeout": 3600,
    });
    if let Some(id) = id {
        info["id"] = json!({"value": id});
    }
    info
}

fn offer_id(offer: &Value) -> &str {
    offer["id"]["value"].as_str().unwrap_or("")
}

fn agent_of(offer: &Value) -> String {
    offer["agent_id"]["value"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("an offer without an agent_id: {}", short(offer)))
        .to_string()
}

/// The sum of the scalar resources named `name`.
fn scalar(resources: &Value, name: &str) -> f64 {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .map(|r| {
            assert_eq!(r["type"], "SCALAR", "{}", short(r));
            r["scalar"]["value"]
                .as_f64()
                .unwrap_or_else(|| panic!("a scalar without a value: {}", short(r)))
        })
        .sum()
}

/// The ranges of the resources named `name`.
fn ranges(resources: &Value, name: &str) -> Vec<(u64, u64)> {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .flat_map(|r| {
            assert_eq!(r["type"], "RANGES", "{}", short(r));
            r["ranges"]["range"].as_array().cloned().unwrap_or_default()
        })
        .map(|r| (r["begin"].as_u64().unwrap(), r["end"].as_u64().unwrap()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// A TaskInfo without `container`: `shell` runs under `/bin/sh -c` on the host's filesystem.
fn task_info(name: &str, task_id: &str, agent_id: &str, cpus: f64, mem: f64, shell: &str) -> Value {
    json!({
        "name": name,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "role": "*"},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}, "role": "*"},
        ],
        "command": {"value": shell, "shell": true},
    })
}

fn state(status: &Value) -> &str {
    status["state"].as_str().unwrap_or("")
}

fn reason(status: &Value) -> &str {
    status["reason"].as_str().unwrap_or("")
}

/// Waits for `task_id` to reach `want`, acknowledging every update on the way that carries a
/// uuid: an agent resends an update until it is acknowledged and holds the task's next one
/// back until then. A terminal state other than `want` fails the test.
fn ack_updates_until(fw: &mut Scheduler, task_id: &str, want: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = fw
            .try_next_update(task_id, left)
            .unwrap_or_else(|e| panic!("{task_id} never got to {want}: {e}"));
        eprintln!(
            "update {task_id}: {} {} {:?} (uuid: {})",
            state(&status),
            reason(&status),
            status["message"].as_str().unwrap_or(""),
            status["uuid"].is_string()
        );
        fw.acknowledge(&status);
        if state(&status) == want {
            return status;
        }
        assert!(
            !TERMINAL_STATES.contains(&state(&status)),
            "{task_id} ended {} while waiting for {want}: {}",
            state(&status),
            short(&status)
        );
    }
}

/// A task id no other run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `export MARKER=marker; exec sleep SECS`: the process is `sleep SECS`, with the marker in its
/// environment.
fn marked_sleep(marker: &str, secs: &str) -> String {
    format!("export {MARKER_VAR}={marker}; exec sleep {secs}")
}

/// The pids of processes whose command line is exactly `sleep SECS` and whose environment
/// holds `marker`.
fn marked_sleeps(marker: &str, secs: &str) -> Vec<i32> {
    let want_cmdline = format!("sleep\0{secs}\0").into_bytes();
    let want_env = format!("{MARKER_VAR}={marker}").into_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want_cmdline))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == want_env.as_slice()))
        })
        .collect()
}

/// Kills this test's marked `sleep` processes when dropped: tasks outlive their agent (they run
/// under a shim), and a failed test should not leave them for an hour. Declare it before the
/// daemons, so it runs after they are gone.
struct KillMarked {
    marker: String,
    secs: &'static str,
}

impl Drop for KillMarked {
    fn drop(&mut self) {
        for pid in marked_sleeps(&self.marker, self.secs) {
            // SAFETY: kill(2) on a process this test launched (its marker is in the environment).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this test started and a plain signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

fn need_root() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs tasks and needs root");
    }
}

/// `/master/tasks` through `addr`: the tasks with id `task_id`.
fn master_tasks(fw: &Scheduler, addr: &str, task_id: &str) -> Result<Vec<Value>, String> {
    let v = fw.get_json(addr, "/master/tasks")?;
    let tasks = v["tasks"]
        .as_array()
        .ok_or_else(|| format!("/master/tasks without a tasks array: {}", short(&v)))?;
    Ok(tasks.iter().filter(|t| t["id"] == task_id).cloned().collect())
}

/// `/master/frameworks` through `addr`: the framework with id `id`, if listed.
fn master_framework(fw: &Scheduler, addr: &str, id: &str) -> Result<Option<Value>, String> {
    let v = fw.get_json(addr, "/master/frameworks")?;
    let list = v["frameworks"]
        .as_array()
        .ok_or_else(|| format!("/master/frameworks without a frameworks array: {}", short(&v)))?;
    Ok(list.iter().find(|f| f["id"] == id).cloned())
}

/// `tepui task ls` through `addr`, as JSON values.
fn cli_tasks(addr: &str) -> Vec<Value> {
    tepui(&["task", "ls", "--addr", addr, "-o", "json"]).ok().json()
}

fn start_server(sb: &Sandbox, ip: &str) -> Daemon {
    bootstrap_server(sb, ip, &["--agent-timeout-secs", "2"])
}

/// An agent joined through `server_ip` with 2 cpus and 2048 MB, its own ports and bridge.
fn start_agent(
    sb: &Sandbox,
    server_ip: &str,
    ip: &str,
    token: &str,
    ports: &str,
    bridge: &str,
    subnet: &str,
) -> Daemon {
    let dir = sb.join("a1").display().to_string();
    let mut agent = sb.spawn(
        "a1",
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
            "a1",
            "--cpus",
            "2",
            "--mem",
            "2048",
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
    agent.wait_ready(START);
    agent
}

/// One server and one agent of a test, with what cleans up after it.
struct OneAgent {
    marker: String,
    _cleanup: KillMarked,
    _sb: Sandbox,
    addr: String,
    _server: Daemon,
    agent: Daemon,
}

/// `label` names the test's processes (`sleep 1000` marked with it) and bridge `tpe2e-<label>`.
fn one_agent(label: &str, sandbox: &str, server_ip: &str, agent_ip: &str, ports: &str, subnet: &str) -> OneAgent {
    let marker = unique(label);
    let cleanup = KillMarked {
        marker: marker.clone(),
        secs: "1000",
    };
    let sb = Sandbox::new(sandbox);
    let server = start_server(&sb, server_ip);
    let token = read_token(&sb.join("s1"), "agent");
    let bridge = format!("tpe2e-{label}");
    let agent = start_agent(&sb, server_ip, agent_ip, &token, ports, &bridge, subnet);
    OneAgent {
        marker,
        _cleanup: cleanup,
        _sb: sb,
        addr: http_addr(server_ip),
        _server: server,
        agent,
    }
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn a_mesos_framework_runs_tasks_and_sees_its_agent_go_and_come_back() {
    need_root();
    const SERVER_IP: &str = "127.0.16.1";
    const AGENT_IP: &str = "127.0.16.2";
    let OneAgent {
        marker,
        _cleanup,
        _sb,
        addr,
        _server,
        agent,
    } = one_agent("fw1", "framework", SERVER_IP, AGENT_IP, "32100-32109", "10.214.16.0/24");

    let mut fw = Scheduler::new(&addr);
    let subscribed = fw.subscribe(&framework_info(None));
    let fid = fw.framework_id().to_string();
    assert!(
        subscribed["heartbeat_interval_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{subscribed}"
    );
    assert!(fw.redirects.is_empty(), "the only server leads: {:?}", fw.redirects);
    let listed = wait_for(
        "the framework in /master/frameworks",
        SETTLE,
        || match master_framework(&fw, &addr, &fid)? {
            Some(f) => Ok(f),
            None => Err("not listed".to_string()),
        },
    );
    assert_eq!(listed["name"], "e2e-framework", "{listed}");
    assert_eq!(listed["active"], true, "{listed}");

    // An offer of the whole agent.
    let event = fw.next_event("OFFERS", SETTLE);
    let offers = event["offers"]["offers"].as_array().cloned().unwrap_or_default();
    assert!(!offers.is_empty(), "OFFERS without offers: {event}");
    let offer = offers[0].clone();
    eprintln!("offer: {}", short(&offer));
    assert_eq!(offer["framework_id"]["value"], fid.as_str(), "{offer}");
    assert!(offer["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{offer}");
    let agent_id = agent_of(&offer);
    assert!(scalar(&offer["resources"], "cpus") >= 0.2, "{offer}");
    assert!(scalar(&offer["resources"], "mem") >= 64.0, "{offer}");
    assert_eq!(ranges(&offer["resources"], "ports"), vec![(32100, 32109)], "{offer}");
    let others: Vec<&str> = offers[1..].iter().map(offer_id).collect();
    if !others.is_empty() {
        fw.decline(&others).accepted("DECLINE");
    }

    // Two tasks in one ACCEPT; what they leave of the offer is declined by the filter.
    let quick = unique("quick");
    let sleepy = unique("sleepy");
    fw.accept(
        &[offer_id(&offer)],
        vec![
            task_info("quick", &quick, &agent_id, 0.1, 32.0, "sleep 0.2"),
            task_info("sleepy", &sleepy, &agent_id, 0.1, 32.0, &marked_sleep(&marker, "1000")),
        ],
    )
    .accepted("ACCEPT");
    let running = ack_updates_until(&mut fw, &quick, "TASK_RUNNING", SETTLE);
    assert_eq!(running["agent_id"]["value"], agent_id.as_str(), "{running}");
    let finished = ack_updates_until(&mut fw, &quick, "TASK_FINISHED", SETTLE);
    assert!(
        finished["uuid"].is_string(),
        "the agent's update is acknowledged: {finished}"
    );
    let running = ack_updates_until(&mut fw, &sleepy, "TASK_RUNNING", SETTLE);
    assert!(
        running["uuid"].is_string(),
        "the agent's update is acknowledged: {running}"
    );

    // The operator endpoint and the CLI see the framework's task.
    let t = wait_for("the long task in /master/tasks", SETTLE, || {
        let found = master_tasks(&fw, &addr, &sleepy)?;
        match found.as_slice() {
            [t] if t["state"] == "TASK_RUNNING" => Ok(t.clone()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(t["framework_id"], fid.as_str(), "{t}");
    assert_eq!(t["slave_id"], agent_id.as_str(), "{t}");
    assert_eq!(t["name"], "sleepy", "{t}");
    if let Some(q) = master_tasks(&fw, &addr, &quick).unwrap().first() {
        assert_eq!(q["state"], "TASK_FINISHED", "{q}");
    }
    let cli = cli_tasks(&addr);
    let c = cli
        .iter()
        .find(|t| t["id"] == sleepy.as_str())
        .unwrap_or_else(|| panic!("tepui task ls lists the framework's task: {cli:?}"));
    assert_eq!(
        (c["state"].as_str(), c["agent_name"].as_str(), c["framework"].as_str()),
        (Some("TASK_RUNNING"), Some("a1"), Some(fid.as_str())),
        "{c}"
    );
    wait_for("one process for the long task", SETTLE, || {
        match marked_sleeps(&marker, "1000").len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    });

    // The agent goes silent: the framework (PARTITION_AWARE) hears TASK_UNREACHABLE.
    let pid = agent.pid().expect("the agent runs");
    signal(pid, libc::SIGSTOP);
    let unreachable = ack_updates_until(&mut fw, &sleepy, "TASK_UNREACHABLE", SETTLE);
    assert_eq!(reason(&unreachable), "REASON_SLAVE_REMOVED", "{unreachable}");
    assert_eq!(unreachable["agent_id"]["value"], agent_id.as_str(), "{unreachable}");

    // Back: explicit reconciliation until the master answers TASK_RUNNING.
    signal(pid, libc::SIGCONT);
    let back = fw.reconcile_until_running(&sleepy, &[(&sleepy, &agent_id)], Duration::from_secs(1));
    if back["uuid"].is_null() {
        assert_eq!(reason(&back), "REASON_RECONCILIATION", "{back}");
    }
    assert_eq!(marked_sleeps(&marker, "1000").len(), 1, "the task kept running");

    // KILL, then TEARDOWN: the master closes the stream and the framework is no longer active.
    fw.kill(&sleepy, &agent_id).accepted("KILL");
    ack_updates_until(&mut fw, &sleepy, "TASK_KILLED", SETTLE);
    wait_for(
        "the killed task's process to be gone",
        SETTLE,
        || match marked_sleeps(&marker, "1000").len() {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        },
    );
    fw.teardown().accepted("TEARDOWN");
    let why = fw.wait_stream_end(SETTLE);
    eprintln!("after TEARDOWN: {why}");
    wait_for(
        "the framework to be gone from the active ones",
        SETTLE,
        || match master_framework(&fw, &addr, &fid)? {
            Some(f) if f["active"] == true => Err(format!("still active: {}", short(&f))),
            _ => Ok(()),
        },
    );
}

#[test]
fn bad_scheduler_calls_are_refused_clearly() {
    need_root();
    const SERVER_IP: &str = "127.0.17.1";
    const AGENT_IP: &str = "127.0.17.2";
    let OneAgent {
        marker,
        _cleanup,
        _sb,
        addr,
        _server,
        agent: _agent,
    } = one_agent(
        "fw2",
        "framework-bad",
        SERVER_IP,
        AGENT_IP,
        "32200-32209",
        "10.214.17.0/24",
    );

    // A framework with a principal and a secret subscribes into the roles its principal may
    // use, and nowhere else; another principal's credentials do not pass for it.
    let made = tepui_e2e::token_with_policy(
        &addr,
        "spark-jobs",
        &["--capability", "read", "--framework", "spark:analytics"],
        "spark",
    );
    let secret = made["secret"].as_str().expect("the secret is shown").to_string();
    let with_roles = |principal: &str, roles: &[&str]| {
        let mut info = framework_info(None);
        info["principal"] = json!(principal);
        info["roles"] = json!(roles);
        info
    };
    let mut spark = Scheduler::with_credentials(&addr, "spark", &secret);
    spark.subscribe(&with_roles("spark", &["analytics"]));
    let err = Scheduler::with_credentials(&addr, "spark", &secret)
        .try_subscribe(&with_roles("spark", &["prod"]))
        .unwrap_err();
    assert!(err.contains("403") && err.contains("prod"), "outside its roles: {err}");
    let err = Scheduler::with_credentials(&addr, "hadoop", &secret)
        .try_subscribe(&with_roles("hadoop", &["analytics"]))
        .unwrap_err();
    assert!(err.contains("403"), "another principal: {err}");
    let err = Scheduler::with_credentials(&addr, "spark", "spark-accessor.not-the-secret")
        .try_subscribe(&with_roles("spark", &["analytics"]))
        .unwrap_err();
    assert!(err.contains("401"), "a wrong secret: {err}");
    drop(spark);

    let mut fw = Scheduler::new(&addr);
    fw.subscribe(&framework_info(None));
    let fid = fw.framework_id().to_string();
    let stream_id = fw.stream_id().to_string();
    let json_ct = "application/json";
    let refused = |r: &Reply, statuses: &[u16], what: &str| {
        eprintln!("{what}: {r:?}");
        assert!(statuses.contains(&r.status), "{what}: want {statuses:?}: {r:?}");
        assert!(!r.body.trim().is_empty(), "{what}: a refusal says why: {r:?}");
    };

    // An unknown call type, otherwise fine.
    let r = fw.call(json!({"framework_id": {"value": fid}, "type": "FROBNICATE", "frobnicate": {}}));
    refused(&r, &[400], "unknown call type");
    assert!(r.body.contains("FROBNICATE"), "the refusal names the type: {r:?}");

    // A stream id that is not this subscription's, and none at all.
    let reconcile = serde_json::to_vec(&json!({
        "framework_id": {"value": fid}, "type": "RECONCILE", "reconcile": {"tasks": []}
    }))
    .unwrap();
    let r = fw.call_raw(&reconcile, json_ct, Some("0badc0de-0000-4000-8000-000000000000"));
    refused(&r, &[400], "wrong Mesos-Stream-Id");
    assert!(
        r.body.to_lowercase().contains("stream"),
        "the refusal names the stream id: {r:?}"
    );
    let r = fw.call_raw(&reconcile, json_ct, None);
    refused(&r, &[400], "no Mesos-Stream-Id");
    assert!(
        r.body.to_lowercase().contains("stream"),
        "the refusal names the stream id: {r:?}"
    );

    // A framework that never subscribed.
    let stranger = serde_json::to_vec(&json!({
        "framework_id": {"value": "e2e-no-such-framework"}, "type": "RECONCILE", "reconcile": {"tasks": []}
    }))
    .unwrap();
    let r = fw.call_raw(&stranger, json_ct, Some(&stream_id));
    refused(&r, &[400, 403], "unknown framework");

    // No framework_id at all on a non-SUBSCRIBE call.
    let r = fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}));
    refused(&r, &[400], "no framework_id");

    // Not JSON.
    let r = fw.call_raw(b"this is { not json", json_ct, Some(&stream_id));
    refused(&r, &[400], "not JSON");
    let r = fw.call_raw(b"", json_ct, Some(&stream_id));
    refused(&r, &[400], "empty body");

    // None of that touched the subscription: offers keep coming on the same stream.
    let offer = fw.next_offers(SETTLE)[0].clone();
    let agent_id = agent_of(&offer);
    let total_cpus = scalar(&offer["resources"], "cpus");
    assert!(total_cpus < 1000.0, "{offer}");

    // More than the offer holds: TASK_ERROR, REASON_TASK_INVALID, and the offer is used up.
    let greedy = unique("greedy");
    fw.accept(
        &[offer_id(&offer)],
        vec![task_info(
            "greedy",
            &greedy,
            &agent_id,
            1000.0,
            32.0,
            &marked_sleep(&marker, "1000"),
        )],
    )
    .accepted("ACCEPT of too much");
    let s = fw.next_update(&greedy, SETTLE);
    eprintln!("greedy: {}", short(&s));
    assert_eq!((state(&s), reason(&s)), ("TASK_ERROR", "REASON_TASK_INVALID"), "{s}");
    let msg = s["message"].as_str().unwrap_or("").to_lowercase();
    assert!(
        msg.contains("cpu") || msg.contains("resource"),
        "the message says what is wrong: {s}"
    );
    fw.acknowledge(&s);

    // A launch that fits, on a new offer.
    let offer = fw.next_offers(SETTLE)[0].clone();
    let legit = unique("legit");
    fw.accept(
        &[offer_id(&offer)],
        vec![task_info(
            "legit",
            &legit,
            &agent_of(&offer),
            0.1,
            32.0,
            &marked_sleep(&marker, "1000"),
        )],
    )
    .accepted("ACCEPT");
    ack_updates_until(&mut fw, &legit, "TASK_RUNNING", SETTLE);

    // The same offer again, and an offer id that never was: TASK_DROPPED, REASON_INVALID_OFFERS.
    let used = offer_id(&offer).to_string();
    let mut refused = vec![greedy.clone()];
    for (name, offer) in [("again", used.as_str()), ("phantom", "e2e-made-up-offer")] {
        let task = unique(name);
        refused.push(task.clone());
        fw.accept(
            &[offer],
            vec![task_info(
                name,
                &task,
                &agent_id,
                0.1,
                32.0,
                &marked_sleep(&marker, "1000"),
            )],
        )
        .accepted(&format!("ACCEPT of offer {offer}"));
        let s = fw.next_update(&task, SETTLE);
        eprintln!("{name}: {}", short(&s));
        assert_eq!(
            (state(&s), reason(&s)),
            ("TASK_DROPPED", "REASON_INVALID_OFFERS"),
            "{s}"
        );
        assert!(
            s["message"].as_str().unwrap_or("").to_lowercase().contains("offer"),
            "the message says what is wrong: {s}"
        );
        fw.acknowledge(&s);
    }

    // Only the legitimate task exists, anywhere.
    let v = fw.get_json(&addr, "/master/tasks").expect("/master/tasks");
    let ids: Vec<&str> = v["tasks"]
        .as_array()
        .expect("a tasks array")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, vec![legit.as_str()], "{v}");
    let cli = cli_tasks(&addr);
    for bad in &refused {
        assert!(
            !cli.iter().any(|t| t["id"] == bad.as_str()),
            "{bad} was not launched: {cli:?}"
        );
    }
    wait_for("one process: the legitimate task's", SETTLE, || {
        match marked_sleeps(&marker, "1000").len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    });

    // The framework is still fine: kill its task and leave.
    fw.kill(&legit, &agent_id).accepted("KILL");
    ack_updates_until(&mut fw, &legit, "TASK_KILLED", SETTLE);
    fw.teardown().accepted("TEARDOWN");
}

#[test]
fn a_framework_survives_a_leader_failover() {
    need_root();
    const SERVERS: [(&str, &str); 3] = [("s1", "127.0.18.1"), ("s2", "127.0.18.2"), ("s3", "127.0.18.3")];
    const AGENT_IP: &str = "127.0.18.4";
    let marker = unique("fw3");
    let _cleanup = KillMarked {
        marker: marker.clone(),
        secs: "3601",
    };
    let sb = Sandbox::new("framework-failover");
    // Three servers as in cluster.rs: s1 bootstraps, s2 and s3 join with its server token.
    let ips: Vec<&str> = SERVERS.iter().map(|(_, ip)| *ip).collect();
    let mut servers = spawn_servers(&sb, &ips, &["--agent-timeout-secs", "5"], START);
    let agent_token = read_token(&sb.join("s1"), "agent");
    let s1_addr = http_addr(SERVERS[0].1);
    wait_for("3 voters and a leader", SETTLE, || {
        let m: Vec<Value> = tepui(&["server", "members", "-o", "json", "--addr", &s1_addr]).try_json()?;
        let voters = m.iter().filter(|m| m["voter"] == true).count();
        let leaders = m.iter().filter(|m| m["raft_role"] == "leader").count();
        if voters == 3 && leaders == 1 {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });
    let _agent = start_agent(
        &sb,
        SERVERS[0].1,
        AGENT_IP,
        &agent_token,
        "32300-32309",
        "tpe2e-fw3",
        "10.214.18.0/24",
    );

    // Subscribe through a follower: its 307 leads to the leader.
    let status: StatusView = tepui(&["status", "-o", "json", "--addr", &s1_addr]).ok().json();
    let leader = status.leader.expect("a leader");
    let follower = SERVERS.iter().find(|(n, _)| *n != leader.name).expect("a follower");
    let mut fw = Scheduler::new(&http_addr(follower.1));
    let subscribed = wait_for("SUBSCRIBED through a follower", SETTLE, || {
        fw.master = http_addr(follower.1);
        fw.try_subscribe(&framework_info(None))
    });
    let fid = fw.framework_id().to_string();
    eprintln!("subscribed as {fid} through {:?}: {subscribed}", fw.redirects);
    assert_eq!(
        fw.redirects.first().map(|(from, _)| from.as_str()),
        Some(http_addr(follower.1).as_str()),
        "the follower redirected: {:?}",
        fw.redirects
    );
    assert_eq!(fw.master, leader.http_addr, "the framework talks to the leader now");

    // The whole agent on offer; a task takes half a cpu and 128 MB of it.
    let offer = fw.next_offers(SETTLE)[0].clone();
    let agent_id = agent_of(&offer);
    let (cpus, mem) = (scalar(&offer["resources"], "cpus"), scalar(&offer["resources"], "mem"));
    assert!(
        close(cpus, 2.0) && close(mem, 2048.0),
        "the agent's --cpus and --mem: {offer}"
    );
    let task = unique("survivor");
    fw.accept(
        &[offer_id(&offer)],
        vec![task_info(
            "survivor",
            &task,
            &agent_id,
            0.5,
            128.0,
            &marked_sleep(&marker, "3601"),
        )],
    )
    .accepted("ACCEPT");
    ack_updates_until(&mut fw, &task, "TASK_RUNNING", SETTLE);
    wait_for("one `sleep 3601`", SETTLE, || {
        match marked_sleeps(&marker, "3601").len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    });

    // kill -9 the leader the framework is connected to: its stream ends.
    let (dead_name, dead_ip) = *SERVERS
        .iter()
        .find(|(_, ip)| http_addr(ip) == fw.master)
        .expect("the framework's master is one of ours");
    assert_eq!(dead_name, leader.name);
    servers
        .iter_mut()
        .find(|d| d.name() == dead_name)
        .expect("its daemon")
        .kill();
    let why = fw.wait_stream_end(SETTLE);
    eprintln!("{dead_name} killed: {why}");

    // Subscribe again, same framework id, through the survivors until one takes it.
    let survivors: Vec<String> = SERVERS
        .iter()
        .filter(|(_, ip)| *ip != dead_ip)
        .map(|(_, ip)| http_addr(ip))
        .collect();
    let mut attempt = 0;
    let again = wait_for("SUBSCRIBED again after the failover", Duration::from_secs(60), || {
        fw.master = survivors[attempt % survivors.len()].clone();
        attempt += 1;
        fw.try_subscribe(&framework_info(Some(&fid)))
    });
    eprintln!(
        "subscribed again through {} after {attempt} attempts: {again}",
        fw.master
    );
    assert_eq!(fw.framework_id(), fid, "the same framework");
    assert_ne!(fw.master, http_addr(dead_ip));

    // Implicit reconciliation: the task is still running.
    let running = fw.reconcile_until_running(&task, &[], Duration::from_secs(2));
    if running["uuid"].is_null() {
        assert_eq!(reason(&running), "REASON_RECONCILIATION", "{running}");
    }
    assert_eq!(running["agent_id"]["value"], agent_id.as_str(), "{running}");

    // Once, running, in the survivors' books and on the host.
    for survivor in &survivors {
        let t = wait_for(&format!("{task} in /master/tasks of {survivor}"), SETTLE, || {
            let found = master_tasks(&fw, survivor, &task)?;
            match found.as_slice() {
                [t] if t["state"] == "TASK_RUNNING" => Ok(t.clone()),
                other => Err(format!("{other:?}")),
            }
        });
        assert_eq!(t["framework_id"], fid.as_str(), "{t}");
    }
    assert_eq!(marked_sleeps(&marker, "3601").len(), 1, "exactly one `sleep 3601`");

    // The new leader offers what the task leaves of the agent.
    let offers = fw.next_offers(SETTLE);
    let offer = offers
        .iter()
        .find(|o| agent_of(o) == agent_id)
        .unwrap_or_else(|| panic!("an offer for the agent: {offers:?}"))
        .clone();
    let (cpus, mem) = (scalar(&offer["resources"], "cpus"), scalar(&offer["resources"], "mem"));
    assert!(
        close(cpus, 1.5) && close(mem, 2048.0 - 128.0),
        "the task's 0.5 cpus and 128 MB are not offered again: {offer}"
    );
    let ids: Vec<&str> = offers.iter().map(offer_id).collect();
    fw.decline(&ids).accepted("DECLINE");

    fw.kill(&task, &agent_id).accepted("KILL");
    ack_updates_until(&mut fw, &task, "TASK_KILLED", SETTLE);
    wait_for("`sleep 3601` to be gone", SETTLE, || {
        match marked_sleeps(&marker, "3601").len() {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        }
    });
    fw.teardown().accepted("TEARDOWN");
}
