//! The leader's side of the agent streams: which agent is connected on which stream, sending
//! to an agent, and requests answered by an agent (logs, exec, images) routed back to the API
//! caller who asked.
//!
//! The server's cluster port attaches each registered agent's stream here and delivers the
//! agent's replies; features only send and ask.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tepui_common::version::{Speaks, LEGACY_PROTOCOL};
use tepui_proto::agent::{Reply, Request, ServerToAgent};
use tepui_proto::Envelope;
use tokio::sync::mpsc;
use tonic::Status;

use crate::{Error, ErrorKind};

pub type StreamTx = mpsc::Sender<Result<Envelope, Status>>;

struct Session {
    conn: u64,
    tx: StreamTx,
}

struct Pending {
    agent: u64,
    replies: mpsc::Sender<Reply>,
}

/// Every agent stream of this server, and the agent requests in flight.
#[derive(Default)]
pub struct AgentHub {
    sessions: Mutex<HashMap<u64, Session>>,
    /// When each agent was last heard from. Leader memory only: after a failover agents
    /// register again.
    heard: Mutex<HashMap<u64, Instant>>,
    /// What each agent's last heartbeat reported (for `/metrics`).
    loads: Mutex<HashMap<u64, tepui_proto::agent::AgentLoad>>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// What each agent said it speaks when it registered (leader memory, like `heard`).
    speaks: Mutex<HashMap<u64, Speaks>>,
    next_conn: AtomicU64,
    next_req: AtomicU64,
}

/// Replies buffered per request before a slow reader loses it; the agent stream must not wait
/// for one caller, or its heartbeats would stall.
const REPLY_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("agent {0} is not connected to the leader")]
    NotConnected(u64),
    #[error("agent {0} runs an older tepui that cannot take this request; upgrade it")]
    TooOld(u64),
}

pub fn envelope(m: &ServerToAgent) -> Envelope {
    Envelope {
        json: serde_json::to_vec(m).expect("agent messages always serialize"),
    }
}

impl AgentHub {
    /// Records that `agent` was heard from now.
    pub fn heard(&self, agent: u64) {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, Instant::now());
    }

    /// Keeps what `agent`'s heartbeat reported.
    pub fn report_load(&self, agent: u64, load: tepui_proto::agent::AgentLoad) {
        self.loads.lock().unwrap_or_else(|e| e.into_inner()).insert(agent, load);
    }

    /// Every agent heard from by this server: when, and what it last reported.
    pub fn liveness(&self) -> Vec<(u64, Instant, Option<tepui_proto::agent::AgentLoad>)> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = heard
            .into_iter()
            .map(|(id, at)| (id, at, loads.get(&id).copied()))
            .collect();
        all.sort_by_key(|(id, _, _)| *id);
        all
    }

    /// When `agent` was last heard from by this server.
    pub fn last_heard(&self, agent: u64) -> Option<Instant> {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .copied()
    }

    /// Records what `agent` said it speaks when it registered.
    pub fn set_speaks(&self, agent: u64, speaks: Speaks) {
        self.speaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, speaks);
    }

    /// What `agent` said it speaks at its last registration with this server.
    pub fn speaks(&self, agent: u64) -> Option<Speaks> {
        self.speaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .cloned()
    }

    /// Whether `agent` can decode `msg` (an agent not heard counts as 0.1.0).
    fn can_take(&self, agent: u64, msg: &ServerToAgent) -> bool {
        let protocol = self.speaks(agent).map_or(LEGACY_PROTOCOL, |s| s.protocol);
        let ok = msg.protocol() <= protocol;
        if !ok {
            tracing::warn!(
                agent,
                protocol,
                needs = msg.protocol(),
                "not sending a message the agent cannot decode; upgrade it"
            );
        }
        ok
    }

    /// Records the stream of a newly registered agent; returns its connection number.
    pub fn attach(&self, agent: u64, tx: StreamTx) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, Session { conn, tx });
        conn
    }

    /// Whether `conn` is still the agent's stream.
    pub fn is_current(&self, agent: u64, conn: u64) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .is_some_and(|s| s.conn == conn)
    }

    /// Ends an agent's stream from this side.
    pub fn kick(&self, agent: u64, why: &str) {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .map(|s| (s.conn, s.tx.clone()));
        if let Some((conn, tx)) = session {
            let _ = tx.try_send(Err(Status::unavailable(why.to_string())));
            self.detach(agent, conn);
        }
    }

    /// Forgets a stream that ended, unless a newer one of the same agent replaced it. Requests
    /// in flight on it fail.
    pub fn detach(&self, agent: u64, conn: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(&agent).is_some_and(|s| s.conn == conn) {
            sessions.remove(&agent);
            drop(sessions);
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|_, p| {
                if p.agent == agent {
                    let _ = p.replies.try_send(Reply::Error {
                        message: format!("agent {agent} disconnected"),
                        code: "agent_disconnected".into(),
                    });
                    false
                } else {
                    true
                }
            });
        }
    }

    fn sender(&self, agent: u64) -> Option<StreamTx> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .map(|s| s.tx.clone())
    }

    /// Sends one message; false when the agent is not connected (it gets what it missed when
    /// it registers again).
    pub async fn send(&self, agent: u64, msg: &ServerToAgent) -> bool {
        // The upgrade gate, per agent: an older agent is sent nothing it cannot decode.
        if !self.can_take(agent, msg) {
            return false;
        }
        match self.sender(agent) {
            Some(tx) => tx.send(Ok(envelope(msg))).await.is_ok(),
            None => false,
        }
    }

    /// Asks an agent for something; the replies arrive on the returned receiver, ending with
    /// `Done` or `Error`.
    pub async fn request(&self, agent: u64, request: Request) -> Result<(u64, mpsc::Receiver<Reply>), HubError> {
        let tx = self.sender(agent).ok_or(HubError::NotConnected(agent))?;
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = ServerToAgent::Request { req_id, request };
        if !self.can_take(agent, &msg) {
            return Err(HubError::TooOld(agent));
        }
        let (replies, rx) = mpsc::channel(REPLY_BUFFER);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req_id, Pending { agent, replies });
        if tx.send(Ok(envelope(&msg))).await.is_err() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req_id);
            return Err(HubError::NotConnected(agent));
        }
        Ok((req_id, rx))
    }

    /// Sends a chunk of an upload that belongs to request `req_id`.
    pub async fn upload(&self, agent: u64, req_id: u64, b64: String, last: bool) -> Result<(), HubError> {
        let tx = self.sender(agent).ok_or(HubError::NotConnected(agent))?;
        tx.send(Ok(envelope(&ServerToAgent::Upload { req_id, b64, last })))
            .await
            .map_err(|_| HubError::NotConnected(agent))
    }

    /// Routes a reply from an agent to whoever asked.
    pub fn deliver(&self, from: u64, req_id: u64, reply: Reply) {
        let last = matches!(reply, Reply::Done { .. } | Reply::Error { .. });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get(&req_id).filter(|p| p.agent == from) else {
            return;
        };
        let gone = match p.replies.try_send(reply) {
            Ok(()) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(req_id, agent = from, "a reader fell behind; dropping its request");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        };
        if last || gone {
            pending.remove(&req_id);
        }
        if gone && !last {
            if let Some(tx) = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&from)
                .map(|s| s.tx.clone())
            {
                let _ = tx.try_send(Ok(envelope(&ServerToAgent::Cancel { req_id })));
            }
        }
    }

    /// The caller went away before the answer ended.
    pub fn cancel(&self, req_id: u64) {
        let removed = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req_id);
        if let Some(p) = removed {
            if let Some(tx) = self.sender(p.agent) {
                let _ = tx.try_send(Ok(envelope(&ServerToAgent::Cancel { req_id })));
            }
        }
    }

    /// Asks an agent and waits for its single answer; `name` is the agent's, for messages.
    pub async fn ask(&self, agent: u64, name: &str, request: Request) -> Result<serde_json::Value, Error> {
        let (_, mut replies) = self
            .request(agent, request)
            .await
            .map_err(|_| not_connected(agent, name))?;
        final_reply(&mut replies, agent, name).await
    }
}

/// The error for an agent that has no stream to this leader.
pub fn not_connected(agent: u64, name: &str) -> Error {
    Error::unavailable(
        "agent_not_connected",
        format!("agent {name} ({agent}) is not connected to the leader; try again when it is"),
    )
}

/// An agent's refusal, with its code, as an error of the API.
pub fn agent_error(code: &str, message: String) -> Error {
    let kind = match code {
        "unknown_task" | "not_found" => ErrorKind::NotFound,
        "agent_disconnected" | "not_connected" | "too_many_followers" => ErrorKind::Unavailable,
        "refused" | "in_use" | "task_not_running" => ErrorKind::Conflict,
        "bad_archive" | "bad_reference" | "insecure_registry" | "bad_image" | "digest_mismatch"
        | "upload_incomplete" => ErrorKind::Invalid,
        "bad_request" => ErrorKind::BadRequest,
        _ => ErrorKind::BadGateway,
    };
    Error::new(kind, code, message)
}

/// Waits for the answer that ends an agent request, skipping progress and data.
pub async fn final_reply(
    replies: &mut mpsc::Receiver<Reply>,
    agent: u64,
    name: &str,
) -> Result<serde_json::Value, Error> {
    loop {
        match replies.recv().await {
            Some(Reply::Done { result }) => return Ok(result),
            Some(Reply::Error { message, code }) => return Err(agent_error(&code, message)),
            Some(_) => {}
            None => return Err(not_connected(agent, name)),
        }
    }
}

/// Cancels an agent request when whatever streams its answer goes away.
pub struct CancelOnDrop {
    pub node: crate::Node,
    pub req_id: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.node.agents().cancel(self.req_id);
    }
}
