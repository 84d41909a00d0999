//! `GET /v1/events`: what changed in the cluster, as server-sent events, for those who would
//! otherwise poll (the web UI's pages; scripts): agents and servers, apps and deployments,
//! tasks, frameworks, roles, jobs and job runs, and the leader. One stream tells a page all it
//! needs (a browser has six connections to a server over HTTP/1.1; each stream holds one).
//!
//! Every server answers from its own applied state, without the leader. One loop per server
//! compares a fingerprint of each record after every change (at most every
//! [`MIN_INTERVAL`]) with the one before, and only while someone listens. An event names what
//! changed and how it is now in a few fields; a reader fetches the rest from the APIs it
//! already uses. A reader that falls behind is disconnected: it reconnects and fetches again,
//! as after any reconnect.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use serde_json::{json, Value};
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::{now_ms, Error, ErrorKind, Node};
use tepui_state::State as Replicated;
use tokio::sync::{broadcast, watch, Notify, Semaphore};

/// Changes closer together than this are reported together.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// A comment line this often, so that proxies and readers see a live connection.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Events a reader may fall behind by before it is disconnected.
const BACKLOG: usize = 4096;
/// How long a new reader waits for the loop to read the state it compares with.
const BASELINE_WAIT: Duration = Duration::from_secs(5);
/// Streams one server serves at once.
pub const MAX_STREAMS: usize = 256;

/// The kinds of record an event is about; the event type is `<kind>_changed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Node,
    App,
    Deployment,
    Task,
    Framework,
    Role,
    Job,
    JobRun,
    Leader,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Node,
        Kind::App,
        Kind::Deployment,
        Kind::Task,
        Kind::Framework,
        Kind::Role,
        Kind::Job,
        Kind::JobRun,
        Kind::Leader,
    ];

    pub fn event_type(self) -> &'static str {
        match self {
            Kind::Node => "node_changed",
            Kind::App => "app_changed",
            Kind::Deployment => "deployment_changed",
            Kind::Task => "task_changed",
            Kind::Framework => "framework_changed",
            Kind::Role => "role_changed",
            Kind::Job => "job_changed",
            Kind::JobRun => "job_run_changed",
            Kind::Leader => "leader_changed",
        }
    }
}

/// One change: the record's kind and key, and what it is now (`removed: true` when it is gone).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: Kind,
    pub key: String,
    pub data: Value,
}

impl Change {
    /// The SSE frame: `event:` is the type, `data:` the JSON with `eventType` and `timestamp`.
    fn to_sse(&self, at_ms: u64) -> Bytes {
        let mut data = self.data.clone();
        if let Value::Object(o) = &mut data {
            o.insert("eventType".into(), self.kind.event_type().into());
            o.insert("timestamp".into(), at_ms.into());
        }
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.kind.event_type(), data))
    }
}

/// Each record's fingerprint, with what an event about it would say.
#[derive(Default)]
pub struct Snapshot {
    records: BTreeMap<(Kind, String), (u64, Value)>,
}

fn fingerprint(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Snapshot {
    /// Reads what events are about out of the state. Tasks, the many records, are told apart by
    /// a few fields (every update moves `updated_at`); the others by their whole JSON.
    pub fn of(s: &Replicated, leader: Option<u64>) -> Snapshot {
        let mut records = BTreeMap::new();
        let mut put = |kind: Kind, key: String, print: u64, data: Value| {
            records.insert((kind, key), (print, data));
        };
        for n in s.nodes.values() {
            let whole = serde_json::to_string(n).unwrap_or_default();
            let data = json!({"id": n.id, "name": n.name, "role": n.role, "status": n.status});
            put(Kind::Node, n.id.to_string(), fingerprint(&whole), data);
        }
        for a in s.apps.values() {
            put(
                Kind::App,
                a.id.clone(),
                fingerprint(&a.version),
                json!({"id": a.id, "version": a.version}),
            );
        }
        for d in s.deployments.values() {
            let apps = d.plan.get("affectedApps").cloned().unwrap_or(Value::Null);
            let print = fingerprint(&d.plan.to_string());
            put(
                Kind::Deployment,
                d.id.clone(),
                print,
                json!({"id": d.id, "affectedApps": apps}),
            );
        }
        for t in s.tasks.values() {
            let print = fingerprint(&(t.updated_at, t.state, t.healthy, t.kill_requested, t.agent_id));
            let data = json!({"id": t.id, "state": t.state, "agentId": t.agent_id, "healthy": t.healthy,
                "frameworkId": t.framework_id});
            put(Kind::Task, t.id.clone(), print, data);
        }
        for f in s.frameworks.values() {
            let whole = serde_json::to_string(f).unwrap_or_default();
            put(
                Kind::Framework,
                f.id.clone(),
                fingerprint(&whole),
                json!({"id": f.id, "name": f.name}),
            );
        }
        for (name, r) in &s.roles {
            let whole = serde_json::to_string(r).unwrap_or_default();
            put(Kind::Role, name.clone(), fingerprint(&whole), json!({"role": name}));
        }
        for (id, j) in &s.jobs {
            let print = fingerprint(&(
                j.updated_at,
                s.job_history
                    .get(id)
                    .map(|h| serde_json::to_string(h).unwrap_or_default()),
            ));
            put(Kind::Job, id.clone(), print, json!({"id": id}));
        }
        for r in s.job_runs.values() {
            let print = fingerprint(&(
                serde_json::to_string(&r.status).unwrap_or_default(),
                r.completed_at,
                &r.tasks,
            ));
            let data = json!({"jobId": r.job_id, "id": r.id, "status": r.status});
            put(Kind::JobRun, format!("{}/{}", r.job_id, r.id), print, data);
        }
        put(
            Kind::Leader,
            String::new(),
            fingerprint(&leader),
            json!({"leader": leader}),
        );
        Snapshot { records }
    }

    /// What changed from `before` to `self`, in kind and key order; records that are gone
    /// come as `{"removed": true}` with their last data.
    pub fn changes_since(&self, before: &Snapshot) -> Vec<Change> {
        let mut out = Vec::new();
        for ((kind, key), (print, data)) in &self.records {
            let same = before
                .records
                .get(&(*kind, key.clone()))
                .is_some_and(|(p, _)| p == print);
            if !same {
                out.push(Change {
                    kind: *kind,
                    key: key.clone(),
                    data: data.clone(),
                });
            }
        }
        for ((kind, key), (_, data)) in &before.records {
            if !self.records.contains_key(&(*kind, key.clone())) {
                let mut data = data.clone();
                if let Value::Object(o) = &mut data {
                    o.insert("removed".into(), true.into());
                }
                out.push(Change {
                    kind: *kind,
                    key: key.clone(),
                    data,
                });
            }
        }
        out.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
        out
    }
}

/// The server's event source: one loop, any number of readers.
#[derive(Clone)]
pub struct Events {
    node: Node,
    sender: broadcast::Sender<Arc<Vec<Change>>>,
    streams: Arc<Semaphore>,
    /// A new reader asks the loop for a state to compare the next change with...
    wake: Arc<Notify>,
    /// ...and waits until it has one, so that no change after it attached goes unreported.
    has_baseline: Arc<watch::Sender<bool>>,
}

impl Events {
    /// Starts the loop; it ends when the node shuts down.
    pub fn start(node: Node) -> Events {
        let events = Events {
            node,
            sender: broadcast::channel(BACKLOG).0,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            wake: Arc::new(Notify::new()),
            has_baseline: Arc::new(watch::channel(false).0),
        };
        tokio::spawn(events.clone().follow());
        events
    }

    async fn follow(self) {
        let mut changes = self.node.changes();
        let mut last: Option<Snapshot> = None;
        let mut built = Instant::now();
        loop {
            tokio::select! {
                more = changes.next(built, MIN_INTERVAL) => if !more { return },
                _ = self.wake.notified() => {}
            }
            // Nobody listens: nothing to compare, and the next reader starts from its own fetch.
            if self.sender.receiver_count() == 0 {
                last = None;
                self.has_baseline.send_replace(false);
                continue;
            }
            changes.mark_seen();
            built = Instant::now();
            let leader = self.node.leader_id();
            let now = self.node.read(|s| Snapshot::of(s, leader));
            if let Some(before) = &last {
                let diff = now.changes_since(before);
                if !diff.is_empty() {
                    let _ = self.sender.send(Arc::new(diff));
                }
            }
            last = Some(now);
            self.has_baseline.send_replace(true);
        }
    }

    /// The routes; served by every server from its own state (never forwarded).
    pub fn routes(self) -> Routes {
        Routes::new()
            .route("/v1/events", Policy::new().get(Cap::Read), get(stream))
            .with_state(self)
    }
}

/// `GET /v1/events[?types=node_changed,task_changed]`.
async fn stream(State(events): State<Events>, RawQuery(query): RawQuery) -> Result<Response, Error> {
    let mut wanted: Vec<String> = Vec::new();
    for pair in query.as_deref().unwrap_or("").split('&') {
        if let Some(list) = pair.strip_prefix("types=") {
            let list = list.replace("%2C", ",").replace("%2c", ",");
            wanted.extend(list.split(',').filter(|t| !t.is_empty()).map(str::to_string));
        }
    }
    if let Some(bad) = wanted
        .iter()
        .find(|t| !Kind::ALL.iter().any(|k| k.event_type() == t.as_str()))
    {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.event_type()).collect();
        return Err(Error::new(
            ErrorKind::BadRequest,
            "bad_event_type",
            format!("types: unknown event type {bad:?}; the types are {}", names.join(", ")),
        )
        .field("types"));
    }
    let Ok(permit) = events.streams.clone().try_acquire_owned() else {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "too_many_streams",
            format!("{MAX_STREAMS} event streams are open on this server, the most it serves; close one or use another server"),
        ));
    };
    let mut rx = events.sender.subscribe();
    let mut baseline = events.has_baseline.subscribe();
    if !*baseline.borrow_and_update() {
        events.wake.notify_one();
        let _ = tokio::time::timeout(BASELINE_WAIT, baseline.wait_for(|b| *b)).await;
    }
    let shutdown = events.node.shutdown_token().clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(64);
    let _ = tx.try_send(Bytes::from_static(b": tepui cluster events\n\n"));
    tokio::spawn(async move {
        let _permit = permit;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let frames: Vec<Bytes> = tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
                _ = keepalive.tick() => vec![Bytes::from_static(b": keepalive\n\n")],
                got = rx.recv() => match got {
                    Ok(batch) => {
                        let at = now_ms();
                        batch
                            .iter()
                            .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.kind.event_type()))
                            .map(|c| c.to_sse(at))
                            .collect()
                    }
                    // Behind: end, so that the reader reconnects and fetches what it missed.
                    Err(_) => return,
                },
            };
            for frame in frames {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        }
    });
    let body = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|b| (Ok::<_, Infallible>(b), out))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tepui_state::{NodeStatus, TaskState};

    fn task(id: &str, state: TaskState, updated_at: u64) -> tepui_state::TaskRecord {
        let mut t = tepui_state::TaskRecord::staging(id, id, 7, crate::empty_def(), 1);
        t.state = state;
        t.updated_at = updated_at;
        t
    }

    #[test]
    fn changes_name_what_moved_was_added_and_went() {
        let mut s = Replicated::default();
        s.tasks.insert("a".into(), task("a", TaskState::TaskStaging, 1));
        s.tasks.insert("b".into(), task("b", TaskState::TaskRunning, 1));
        let before = Snapshot::of(&s, Some(1));
        assert!(
            Snapshot::of(&s, Some(1)).changes_since(&before).is_empty(),
            "nothing moved"
        );

        s.tasks.insert("a".into(), task("a", TaskState::TaskRunning, 2));
        s.tasks.remove("b");
        s.tasks.insert("c".into(), task("c", TaskState::TaskStaging, 2));
        let after = Snapshot::of(&s, Some(2));
        let changes = after.changes_since(&before);
        let seen: Vec<(&str, &str, Value)> = changes
            .iter()
            .map(|c| {
                (
                    c.kind.event_type(),
                    c.key.as_str(),
                    c.data.get("removed").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("task_changed", "a", Value::Null),
                ("task_changed", "b", Value::Bool(true)),
                ("task_changed", "c", Value::Null),
                ("leader_changed", "", Value::Null),
            ]
        );
        assert_eq!(changes[0].data["state"], "TASK_RUNNING");
        assert_eq!(changes[3].data["leader"], 2);
    }

    #[test]
    fn an_agent_marked_lost_is_a_node_change() {
        let mut s = Replicated::default();
        let node: tepui_state::NodeRecord = serde_json::from_value(json!({
            "id": 3, "name": "a1", "role": "agent", "cluster_addr": "", "http_addr": "",
            "status": "ready", "joined_at": 1, "status_changed_at": 1,
        }))
        .expect("a node record");
        s.nodes.insert(3, node);
        let before = Snapshot::of(&s, None);
        s.nodes.get_mut(&3).unwrap().status = NodeStatus::Lost;
        let changes = Snapshot::of(&s, None).changes_since(&before);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            (changes[0].kind, changes[0].data["status"].clone()),
            (Kind::Node, json!("lost"))
        );
        let frame = String::from_utf8(changes[0].to_sse(42).to_vec()).unwrap();
        assert!(frame.starts_with("event: node_changed\ndata: {"), "{frame}");
        assert!(
            frame.contains(r#""eventType":"node_changed""#) && frame.ends_with("}\n\n"),
            "{frame}"
        );
    }
}
