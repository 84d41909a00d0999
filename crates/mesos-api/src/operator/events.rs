//! The operator SUBSCRIBE stream: SUBSCRIBED with the whole cluster, then an event for every
//! change the replicated state shows (tasks added and updated, agents added and removed,
//! frameworks added, updated and removed) and a HEARTBEAT every 15 s, RecordIO-framed.
//!
//! Changes are found by comparing what the state shows after each applied log entry with what
//! it showed before, so the stream needs no hooks in the code that makes the changes; that
//! comparison is made once per change for all subscribers ([`Hub`]), which are at most
//! [`MAX_SUBSCRIBERS`], each with a bounded queue. A stream ends when this server stops leading
//! (as Mesos ends it on a failover), the client goes away, or it falls too far behind.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use tepui_mesos::master::Event;
use tepui_mesos::recordio;
use tepui_mesos::v1 as mesos;
use tepui_state::TaskState;
use tokio::sync::mpsc;

use super::model::{framework_id_of, Model};
use super::{wire, MesosError};
use tepui_master::Master;
use tepui_master::HEARTBEAT_INTERVAL;

/// Encoded events a slow reader may have pending before its stream is cut.
const BUFFER: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
struct FrameworkSeen {
    connected: bool,
    reregistered_at: Option<u64>,
    info: mesos::FrameworkInfo,
}

/// What the stream has told its reader about.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Seen {
    /// State and latest update of every task.
    tasks: BTreeMap<String, (TaskState, Option<String>)>,
    /// Registered agents.
    agents: BTreeSet<u64>,
    frameworks: BTreeMap<String, FrameworkSeen>,
}

impl Seen {
    pub(super) fn of(m: &Model) -> Seen {
        Seen {
            tasks: m
                .tasks()
                .map(|t| (t.id.clone(), (t.state, t.last_update_uuid.clone())))
                .collect(),
            agents: m.agents().iter().map(|a| a.node.id).collect(),
            frameworks: m
                .frameworks()
                .iter()
                .map(|f| {
                    (
                        f.id.clone(),
                        FrameworkSeen {
                            connected: f.connected(),
                            reregistered_at: f.record().and_then(|r| r.reregistered_at),
                            info: wire::framework_info(f),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The events that take a reader from `prev` to `next` (`m` is the model `next` was taken
/// of): frameworks and agents that appeared first, then tasks, then what went away.
pub(super) fn diff(prev: &Seen, next: &Seen, m: &Model) -> Vec<Event> {
    let mut out = Vec::new();
    for f in m.frameworks() {
        let Some(now) = next.frameworks.get(&f.id) else {
            continue;
        };
        match prev.frameworks.get(&f.id) {
            None => out.push(Event::framework_added(wire::framework(m, &f))),
            Some(before) if before != now => out.push(Event::framework_updated(wire::framework(m, &f))),
            Some(_) => {}
        }
    }
    for id in next.agents.difference(&prev.agents) {
        if let Some(a) = m.agent(*id) {
            out.push(Event::agent_added(wire::agent(m, &a)));
        }
    }
    for t in m.tasks() {
        let Some(now) = next.tasks.get(&t.id) else { continue };
        match prev.tasks.get(&t.id) {
            None => out.push(Event::task_added(wire::task(m, t))),
            Some(before) if before != now => out.push(Event::task_updated(
                mesos::FrameworkId::new(framework_id_of(t)),
                wire::task_status(t),
                mesos::TaskState::from_name(t.state.as_str()),
            )),
            Some(_) => {}
        }
    }
    for id in prev.agents.difference(&next.agents) {
        out.push(Event::agent_removed(mesos::AgentId::new(id.to_string())));
    }
    for (id, before) in &prev.frameworks {
        if !next.frameworks.contains_key(id) {
            out.push(Event::framework_removed(before.info.clone()));
        }
    }
    out
}

fn encode(e: &Event) -> Option<Bytes> {
    match recordio::encode_json(e) {
        Ok(b) => Some(Bytes::from(b)),
        Err(err) => {
            tracing::error!(error = %err, "cannot encode an operator event");
            None
        }
    }
}

/// Operator event streams open at once on a leader, as Mesos'
/// `--max_operator_event_stream_subscribers` (default 1000); more are refused with a 503.
pub const MAX_SUBSCRIBERS: usize = 1000;

/// The operator event streams of one server: the change of the state after each applied log
/// entry is computed once, here, and the same encoded events go to every subscriber.
#[derive(Default)]
pub(super) struct Hub {
    inner: std::sync::Mutex<HubInner>,
}

#[derive(Default)]
struct HubInner {
    /// What every subscriber has been told about; `None` while nobody subscribes.
    seen: Option<Seen>,
    subscribers: Vec<mpsc::Sender<Bytes>>,
    /// Whether the task that follows the state for the subscribers runs.
    following: bool,
}

impl HubInner {
    /// Sends to every subscriber; one whose queue is full (a slow reader) or gone is dropped,
    /// which ends its stream, rather than buffered without bound.
    fn fan_out(&mut self, chunks: &[Bytes]) {
        self.subscribers.retain(|tx| {
            for c in chunks {
                if tx.try_send(c.clone()).is_err() {
                    if !tx.is_closed() {
                        tracing::info!("operator event stream ends: its reader is too slow");
                    }
                    return false;
                }
            }
            true
        });
    }

    /// The events from what subscribers were told to the state `m` shows, sent to them.
    fn advance(&mut self, m: &Model) {
        let next = Seen::of(m);
        if let Some(prev) = &self.seen {
            let chunks: Vec<Bytes> = diff(prev, &next, m).iter().filter_map(encode).collect();
            if !chunks.is_empty() {
                self.fan_out(&chunks);
            }
        }
        self.seen = Some(next);
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) async fn subscribe(
    master: Master,
    hub: &std::sync::Arc<Hub>,
    headers: &HeaderMap,
) -> Result<Response, MesosError> {
    master.node().linearize().await?;
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    {
        let mut h = hub.lock();
        h.subscribers.retain(|tx| !tx.is_closed());
        if h.subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(MesosError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Operator API Event Stream subscriber limit reached: {MAX_SUBSCRIBERS} streams are open; \
                     close one or retry later"
                ),
            ));
        }
        // One read: the others catch up to exactly the state the new one starts from.
        let view = master.view();
        let state = master.node().read(|s| {
            let m = Model::new(s, view.as_ref());
            h.advance(&m);
            wire::get_state(&m)
        });
        let first = Event::subscribed(state, Some(HEARTBEAT_INTERVAL.as_secs_f64()));
        if let Some(b) = encode(&first) {
            let _ = tx.try_send(b);
        }
        h.subscribers.push(tx);
        if !h.following {
            h.following = true;
            tokio::spawn(follow(master, hub.clone()));
        }
    }
    tracing::info!("operator event stream subscribed");
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let mut resp = Response::new(body);
    let wants_recordio = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/recordio"));
    let h = resp.headers_mut();
    if wants_recordio {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/recordio"));
        h.insert("message-content-type", HeaderValue::from_static("application/json"));
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(resp)
}

/// Follows the state for every subscriber: after each applied change, one diff for all of
/// them, and a HEARTBEAT every 15 s. Ends (and with it every stream) when this server stops
/// leading, or when no subscriber is left.
async fn follow(master: Master, hub: std::sync::Arc<Hub>) {
    let mut applied = master.node().watch_applied();
    let mut leadership = master.node().watch_leadership();
    let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
    loop {
        let mut beat = false;
        let ended = tokio::select! {
            changed = applied.changed() => changed.is_err(),
            changed = leadership.changed() => changed.is_err(),
            _ = heartbeat.tick() => {
                beat = true;
                false
            }
        };
        let mut h = hub.lock();
        if ended || !master.node().is_leader() {
            tracing::info!(
                subscribers = h.subscribers.len(),
                "operator event streams end: this server no longer leads"
            );
            *h = HubInner::default();
            return;
        }
        if beat {
            if let Some(b) = encode(&Event::heartbeat()) {
                h.fan_out(&[b]);
            }
        } else {
            let view = master.view();
            master.node().read(|s| h.advance(&Model::new(s, view.as_ref())));
        }
        h.subscribers.retain(|tx| !tx.is_closed());
        if h.subscribers.is_empty() {
            *h = HubInner::default();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tepui_mesos::master::EventType;
    use tepui_state::{NodeStatus, TaskState};

    use super::super::model::tests_support::{framework, state, task};
    use super::*;

    fn kinds(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.kind.as_str().to_string()).collect()
    }

    #[test]
    fn changes_become_events() {
        let mut s = state();
        let m = Model::new(&s, None);
        let before = Seen::of(&m);
        assert!(diff(&before, &before, &m).is_empty());

        s.frameworks.insert("f1".into(), framework("f1", true));
        s.tasks
            .insert("t1".into(), task("t1", 1, "f1", TaskState::TaskStaging, 1));
        s.nodes
            .insert(4, super::super::model::tests_support::agent(4, NodeStatus::Ready));
        let m = Model::new(&s, None);
        let next = Seen::of(&m);
        let events = diff(&before, &next, &m);
        assert_eq!(kinds(&events), ["FRAMEWORK_ADDED", "AGENT_ADDED", "TASK_ADDED"]);
        let added = events[2].task_added.as_ref().unwrap();
        assert_eq!(added.task.framework_id.value, "f1");
        assert_eq!(added.task.agent_id.value, "1");

        let before = next;
        let t = s.tasks.get_mut("t1").unwrap();
        t.state = TaskState::TaskRunning;
        t.last_update_uuid = Some("u1".into());
        s.nodes.get_mut(&2).unwrap().status = NodeStatus::Lost;
        s.frameworks.get_mut("f1").unwrap().connected = false;
        let m = Model::new(&s, None);
        let next = Seen::of(&m);
        let events = diff(&before, &next, &m);
        assert_eq!(kinds(&events), ["FRAMEWORK_UPDATED", "TASK_UPDATED", "AGENT_REMOVED"]);
        let updated = events[1].task_updated.as_ref().unwrap();
        assert_eq!(updated.state, mesos::TaskState::Running);
        assert_eq!(updated.framework_id.value, "f1");
        assert_eq!(events[2].agent_removed.as_ref().unwrap().agent_id.value, "2");

        let before = next;
        s.frameworks.remove("f1");
        let m = Model::new(&s, None);
        let next = Seen::of(&m);
        let events = diff(&before, &next, &m);
        assert_eq!(kinds(&events), ["FRAMEWORK_REMOVED"]);
        assert_eq!(events[0].kind, EventType::FrameworkRemoved);
        assert_eq!(
            events[0].framework_removed.as_ref().unwrap().framework_info.name,
            "fw-f1"
        );
    }

    #[test]
    fn one_diff_goes_to_every_subscriber_and_a_slow_one_is_dropped() {
        let mut s = state();
        let mut hub = HubInner::default();
        hub.advance(&Model::new(&s, None));
        let (fast1, mut rx1) = mpsc::channel(8);
        let (fast2, mut rx2) = mpsc::channel(8);
        let (slow, _rx3) = mpsc::channel(1);
        hub.subscribers = vec![fast1, fast2, slow];
        s.frameworks.insert("f1".into(), framework("f1", true));
        s.tasks
            .insert("t1".into(), task("t1", 1, "f1", TaskState::TaskStaging, 1));
        hub.advance(&Model::new(&s, None));
        assert_eq!(
            hub.subscribers.len(),
            2,
            "the reader with no room for two events is dropped"
        );
        for rx in [&mut rx1, &mut rx2] {
            let mut got = vec![];
            while let Ok(b) = rx.try_recv() {
                got.push(b);
            }
            assert_eq!(got.len(), 2, "FRAMEWORK_ADDED and TASK_ADDED");
        }
        // Nothing changed: nothing is sent.
        hub.advance(&Model::new(&s, None));
        assert!(rx1.try_recv().is_err());
    }

    #[test]
    fn the_builtin_framework_appears_with_its_first_task() {
        let mut s = state();
        let m = Model::new(&s, None);
        let before = Seen::of(&m);
        s.tasks
            .insert("t1".into(), task("t1", 1, "", TaskState::TaskStaging, 1));
        let m = Model::new(&s, None);
        let events = diff(&before, &Seen::of(&m), &m);
        assert_eq!(kinds(&events), ["FRAMEWORK_ADDED", "TASK_ADDED"]);
        assert_eq!(events[1].task_added.as_ref().unwrap().task.framework_id.value, "tepui");
    }
}
