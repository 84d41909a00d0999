//! A Mesos v1 HTTP scheduler for the tests, written from Apache Mesos' scheduler HTTP API
//! documents (<https://mesos.apache.org/documentation/latest/scheduler-http-api/>): plain JSON
//! over HTTP with reqwest and RecordIO read here, sharing nothing with tepui's crates. The
//! executor and task group tests add their own calls to it.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the subscription may take to be answered.
const START: Duration = Duration::from_secs(30);
/// How long an awaited event (an offer, an update) may take.
pub const SETTLE: Duration = Duration::from_secs(60);
/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The task states after which a task never changes again.
pub const TERMINAL_STATES: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_LOST",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

// RecordIO: Mesos' stream framing, `<decimal length>\n<that many bytes>`.

/// Takes the first whole record off `buf`: `<decimal length>\n<length bytes>`. `Ok(None)` when
/// the buffer does not hold a whole record yet.
pub fn take_record(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > 20 || !buf.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "bad RecordIO length prefix {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(40)])
            ));
        }
        return Ok(None);
    };
    let head = &buf[..nl];
    if head.is_empty() || head.len() > 20 || !head.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "bad RecordIO length prefix {:?}",
            String::from_utf8_lossy(head)
        ));
    }
    let len: usize = std::str::from_utf8(head)
        .expect("ASCII digits")
        .parse()
        .map_err(|e| format!("bad RecordIO length {:?}: {e}", String::from_utf8_lossy(head)))?;
    if buf.len() < nl + 1 + len {
        return Ok(None);
    }
    let record = buf[nl + 1..nl + 1 + len].to_vec();
    buf.drain(..nl + 1 + len);
    Ok(Some(record))
}

/// Reads a RecordIO body into a channel of JSON events; the last item says why it ended.
pub async fn pump(mut resp: reqwest::Response, tx: impl Fn(Result<Value, String>) -> bool) {
    let mut buf = Vec::new();
    loop {
        loop {
            match take_record(&mut buf) {
                Ok(Some(r)) => match serde_json::from_slice(&r) {
                    Ok(v) => {
                        if !tx(Ok(v)) {
                            return;
                        }
                    }
                    Err(e) => {
                        tx(Err(format!("a record is not JSON: {e}")));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tx(Err(e));
                    return;
                }
            }
        }
        match resp.chunk().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            Ok(None) => {
                tx(Err("the stream ended".into()));
                return;
            }
            Err(e) => {
                tx(Err(format!("reading the stream failed: {e}")));
                return;
            }
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    // reqwest's rustls needs the process's crypto provider, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub fn event_type(e: &Value) -> &str {
    e["type"].as_str().unwrap_or("")
}

pub fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// A Mesos v1 HTTP scheduler: its subscription's events read in the background, calls on
/// other connections with the stream's `Mesos-Stream-Id`.
pub struct Scheduler {
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    /// The master's HTTP address.
    pub master: String,
    stream_id: String,
    pub framework_id: String,
    events: mpsc::Receiver<Result<Value, String>>,
    /// Events read that nobody asked for yet.
    pub pending: VecDeque<Value>,
    ended: Option<String>,
    used_offers: HashSet<String>,
    log: Vec<String>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = &self.log[self.log.len().saturating_sub(40)..];
            eprintln!(
                "e2e: framework {} saw last:\n  {}",
                self.framework_id,
                tail.join("\n  ")
            );
        }
    }
}

impl Scheduler {
    pub fn subscribe(master: &str, info: Value) -> Scheduler {
        let rt = runtime();
        let http = crate::http_client()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
        let resp = rt
            .block_on(
                http.post(format!("http://{master}/api/v1/scheduler"))
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json")
                    .json(&call)
                    .send(),
            )
            .expect("SUBSCRIBE is answered");
        assert_eq!(resp.status(), 200, "SUBSCRIBE");
        let stream_id = resp.headers()["mesos-stream-id"].to_str().unwrap().to_string();
        let (tx, rx) = mpsc::channel();
        rt.spawn(pump(resp, move |e| tx.send(e).is_ok()));
        let mut fw = Scheduler {
            rt,
            http,
            master: master.to_string(),
            stream_id,
            framework_id: String::new(),
            events: rx,
            pending: VecDeque::new(),
            ended: None,
            used_offers: HashSet::new(),
            log: vec![],
        };
        let first = fw.next("SUBSCRIBED", START, |e| event_type(e) == "SUBSCRIBED");
        fw.framework_id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        fw
    }

    /// A call with this subscription's stream id: its status and body.
    pub fn call(&self, mut call: Value) -> (u16, String) {
        call["framework_id"] = json!({"value": self.framework_id});
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("http://{}/api/v1/scheduler", self.master))
                .header("Content-Type", "application/json")
                .header("Mesos-Stream-Id", &self.stream_id)
                .timeout(CALL_TIMEOUT)
                .json(&call)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{} got no answer: {e}", call["type"]));
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    pub fn accepted(&self, call: Value) {
        let ty = call["type"].clone();
        let (status, body) = self.call(call);
        assert_eq!(status, 202, "{ty}: {body}");
    }

    /// The first event, held back or new, that `want` takes; HEARTBEATs are dropped, other
    /// events held back. An ERROR, the end of the stream or the deadline fails the test.
    pub fn next(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        self.try_next(timeout, &want)
            .unwrap_or_else(|why| panic!("no {what}: {why}"))
    }

    pub fn try_next(&mut self, timeout: Duration, want: &dyn Fn(&Value) -> bool) -> Result<Value, String> {
        if let Some(i) = self.pending.iter().position(want) {
            return Ok(self.pending.remove(i).unwrap());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = &self.ended {
                return Err(why.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("nothing within {timeout:?}"));
            }
            match self.events.recv_timeout(left) {
                Ok(Ok(e)) => {
                    if std::env::var_os("TEPUI_E2E_TRACE").is_some() {
                        eprintln!("event: {}", short(&e));
                    }
                    self.log.push(short(&e));
                    match event_type(&e) {
                        "HEARTBEAT" => {}
                        "ERROR" => return Err(format!("ERROR: {}", short(&e))),
                        _ if want(&e) => return Ok(e),
                        _ => self.pending.push_back(e),
                    }
                }
                Ok(Err(why)) => self.ended = Some(why),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = Some("the reader is gone".into()),
            }
        }
    }

    /// An offer not used yet, with at least `cpus` unreserved.
    pub fn offer(&mut self, cpus: f64) -> Value {
        // Offers rescinded already are used up.
        for e in self.pending.iter().filter(|e| event_type(e) == "RESCIND") {
            if let Some(id) = e["rescind"]["offer_id"]["value"].as_str() {
                self.used_offers.insert(id.to_string());
            }
        }
        self.pending.retain(|e| event_type(e) != "RESCIND");
        let used = self.used_offers.clone();
        let usable = |o: &Value| {
            !used.contains(o["id"]["value"].as_str().unwrap_or(""))
                && o["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["name"] == "cpus")
                    .filter_map(|r| r["scalar"]["value"].as_f64())
                    .sum::<f64>()
                    >= cpus
        };
        let e = self.next("an offer", SETTLE, |e| {
            event_type(e) == "OFFERS" && e["offers"]["offers"].as_array().is_some_and(|o| o.iter().any(usable))
        });
        let offer = e["offers"]["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| usable(o))
            .unwrap()
            .clone();
        self.used_offers
            .insert(offer["id"]["value"].as_str().unwrap().to_string());
        offer
    }

    pub fn acknowledge(&self, status: &Value) {
        if let Some(uuid) = status["uuid"].as_str() {
            self.accepted(json!({
                "type": "ACKNOWLEDGE",
                "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}
            }));
        }
    }

    /// Acknowledges `task`'s updates until one is `want`; another end fails the test.
    pub fn update_until(&mut self, task: &str, want: &str) -> Value {
        loop {
            let e = self.next(&format!("{task} {want}"), SETTLE, |e| {
                event_type(e) == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task
            });
            let status = e["update"]["status"].clone();
            eprintln!(
                "update {task}: {} {} (uuid {}, at {})",
                status["state"], status["reason"], status["uuid"], status["timestamp"]
            );
            self.acknowledge(&status);
            if status["state"] == want {
                return status;
            }
            assert!(
                !TERMINAL_STATES.contains(&status["state"].as_str().unwrap_or("")),
                "{task} ended while waiting for {want}: {status}"
            );
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let body = self.get_text(path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The body of a 200 answer to `GET path` on the master.
    pub fn get_text(&self, path: &str) -> String {
        self.rt.block_on(async {
            let resp = self
                .http
                .get(format!("http://{}{path}", self.master))
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "GET {path}");
            resp.text().await.unwrap()
        })
    }

    pub fn operator(&self, call: Value) -> Value {
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("http://{}/api/v1", self.master))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .timeout(CALL_TIMEOUT)
                .json(&call)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "operator {call}");
            resp.json().await.unwrap()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordio_records_split_anywhere_are_put_back_together() {
        let events = [
            json!({"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": "f"}}}),
            json!({"type": "HEARTBEAT"}),
            json!({"type": "MESSAGE", "message": {"data": "ünïcödé \n and a newline"}}),
        ];
        let mut stream = Vec::new();
        for e in &events {
            let body = serde_json::to_vec(e).unwrap();
            stream.extend_from_slice(format!("{}\n", body.len()).as_bytes());
            stream.extend_from_slice(&body);
        }
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(r) = take_record(&mut buf).unwrap() {
                    got.push(serde_json::from_slice::<Value>(&r).unwrap());
                }
            }
            assert!(buf.is_empty(), "chunks of {chunk}: left {buf:?}");
            assert_eq!(got, events, "chunks of {chunk}");
        }
        assert!(take_record(&mut b"12x\n{}".to_vec()).is_err());
        assert!(take_record(&mut b"\n{}".to_vec()).is_err());
        assert!(take_record(&mut b"{\"type\":1}".to_vec()).is_err());
    }
}
