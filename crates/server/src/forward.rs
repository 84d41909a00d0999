//! Sending a follower's API call to the leader, across a change of leader.
//!
//! A call waits for a leader while an election runs, instead of failing at once. A call sent to
//! a leader that stops answering (a frozen process, a partition: no connection closes) is given
//! up as soon as this node sees another leader, or none, instead of waiting for the old one:
//!
//! - a call that never reached the leader (its port refused the connection) goes to the new
//!   leader, whatever it is;
//! - a GET or HEAD goes to the new leader too: running a read twice changes nothing;
//! - any other call may have been carried out by the old leader (it may have replicated the
//!   write before it stopped), so it is answered 503 `leader_unreachable`; the client, which
//!   knows whether the call is idempotent, decides whether to send it again. Sending it again
//!   here could carry out a non-idempotent write twice without anyone knowing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tepui_proto::{HttpChunk, HttpRequest};
use tokio::time::Instant;

use tepui_node::{Error, ErrorKind};

use crate::http::ChunkStream;
use crate::node::Inner;
use crate::peers::ForwardError;

/// Bodies up to this size are kept for a second try; a bigger one (a snapshot upload) is sent
/// once.
const RETRY_BODY_LIMIT: usize = 1 << 20;

/// Sends `req` to the leader, or runs it here if this node became the leader meanwhile, and
/// returns the answer's head and the rest of its body.
pub(crate) async fn to_leader(inner: &Arc<Inner>, req: HttpRequest) -> Result<(HttpChunk, ChunkStream), Error> {
    let config = inner.raft.config();
    // Long enough for a leader lease to run out and an election after it, with room to spare.
    let deadline = Instant::now() + Duration::from_millis(3 * config.election_timeout_max);
    let safe = req.method == "GET" || req.method == "HEAD";
    let keep = req.body.len() <= RETRY_BODY_LIMIT;
    let mut pending = Some(req);
    let mut metrics = inner.raft.metrics();
    loop {
        let Some(req) = (if keep { pending.clone() } else { pending.take() }) else {
            return Err(unreachable("the leader changed while it held this request"));
        };
        let elected = async {
            let m = metrics.wait_for(|m| m.current_leader.is_some()).await;
            m.ok().and_then(|m| m.current_leader)
        };
        let leader = match tokio::time::timeout_at(deadline, elected).await {
            Ok(Some(leader)) => leader,
            _ => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "no_leader",
                    "no leader is elected yet; retry in a moment",
                ))
            }
        };
        if leader == inner.id {
            return run_here(inner, req).await;
        }
        let Some(addr) = inner.member_addr(leader) else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "no_leader",
                "the leader's address is unknown; retry",
            ));
        };
        let mut changes = inner.raft.metrics();
        // Ends with the watch's read guard dropped: it must not live across an await.
        let leader_changed = async move {
            let _ = changes.wait_for(|m| m.current_leader != Some(leader)).await;
        };
        tokio::select! {
            answer = inner.peers.forward(leader, &addr, req) => match answer {
                Ok((head, rest)) => return Ok((head, Box::pin(rest))),
                Err(e) => {
                    let sent = matches!(e, ForwardError::Failed(_));
                    if sent && !safe {
                        return Err(unreachable_after(e.status()));
                    }
                    // Nothing ran, or running it again is harmless: try the next leader.
                    tracing::debug!(%leader, error = %tepui_transport::status_message(e.status()), "forward failed; waiting for another leader");
                    let next = async {
                        let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
                    };
                    if tokio::time::timeout_at(deadline, next).await.is_err() {
                        return Err(if sent {
                            unreachable_after(e.status())
                        } else {
                            Error::new(
                                ErrorKind::Unavailable,
                                "no_leader",
                                format!(
                                    "the leader did not answer ({}) and no other was elected; retry in a moment",
                                    tepui_transport::status_message(e.status())
                                ),
                            )
                        });
                    }
                }
            },
            _ = leader_changed => {
                tracing::info!(%leader, safe, "the leader changed while it held a forwarded request");
                if !safe {
                    return Err(unreachable(
                        "the leader changed while it held this request, which may or may not have been carried out",
                    ));
                }
            }
        }
    }
}

/// This node leads now: the call runs through its own router.
async fn run_here(inner: &Arc<Inner>, req: HttpRequest) -> Result<(HttpChunk, ChunkStream), Error> {
    let router = inner
        .router
        .get()
        .ok_or_else(|| Error::new(ErrorKind::Unavailable, "starting_up", "starting up; retry"))?
        .clone();
    let mut chunks = crate::http::execute_forwarded(router, req).await;
    match chunks.next().await {
        Some(Ok(head)) => Ok((head, chunks)),
        Some(Err(status)) => Err(unreachable_after(&status)),
        None => Err(unreachable("empty answer")),
    }
}

fn unreachable(why: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "leader_unreachable",
        format!("{why}; retry in a moment if it is safe to do again"),
    )
}

fn unreachable_after(status: &tonic::Status) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "leader_unreachable",
        format!(
            "the leader did not answer: {}; retry in a moment",
            tepui_transport::status_message(status)
        ),
    )
}
