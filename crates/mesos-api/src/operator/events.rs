//! The operator SUBSCRIBE stream: SUBSCRIBED with the whole cluster, then an event for every
//! change the replicated state shows (tasks added and updated, agents added and removed,
//! frameworks added, updated and removed) and a HEARTBEAT every 15 s, RecordIO-framed.
//!
//! Changes are found by comparing what the state shows after each applied log entry with what
//! it showed before, so the stream needs no hooks in the code that makes the changes. It ends
//! when this server stops leading (as Mesos ends it on a failover) or the client goes away.

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
            None => out.push(Event::task_added(wire::task(t))),
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

pub(super) async fn subscribe(master: Master, headers: &HeaderMap) -> Result<Response, MesosError> {
    master.node().linearize().await?;
    let view = master.view();
    let (state, seen) = master.node().read(|s| {
        let m = Model::new(s, view.as_ref());
        (wire::get_state(&m), Seen::of(&m))
    });
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    let first = Event::subscribed(state, Some(HEARTBEAT_INTERVAL.as_secs_f64()));
    if let Some(b) = encode(&first) {
        let _ = tx.try_send(b);
    }
    tracing::info!("operator event stream subscribed");
    tokio::spawn(follow(master, seen, tx));
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

/// Sends the events of every change until the reader leaves or this server stops leading.
async fn follow(master: Master, mut seen: Seen, tx: mpsc::Sender<Bytes>) {
    let mut applied = master.node().watch_applied();
    let mut leadership = master.node().watch_leadership();
    let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
    loop {
        let mut events = Vec::new();
        tokio::select! {
            _ = tx.closed() => break,
            changed = applied.changed() => {
                if changed.is_err() {
                    break;
                }
                let view = master.view();
                events = master.node().read(|s| {
                    let m = Model::new(s, view.as_ref());
                    let next = Seen::of(&m);
                    let events = diff(&seen, &next, &m);
                    seen = next;
                    events
                });
            }
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = heartbeat.tick() => events.push(Event::heartbeat()),
        }
        if !master.node().is_leader() {
            tracing::info!("operator event stream ends: this server no longer leads");
            break;
        }
        for e in events {
            let Some(b) = encode(&e) else { continue };
            // A reader this far behind is cut off rather than buffered without bound.
            if tx.try_send(b).is_err() {
                tracing::info!("operator event stream ends: its reader is gone or too slow");
                return;
            }
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
