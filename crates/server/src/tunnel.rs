//! A websocket a follower is asked for (an interactive exec, the web UI's terminal), carried to
//! the leader. Forwarded calls are one request and a streamed answer; an upgraded connection
//! needs bytes both ways. So the follower opens a byte stream to the leader on the cluster
//! port, speaks HTTP/1.1 over it with the caller's request as it came (its token, its
//! websocket key and subprotocols), and the leader serves its own router on the other end:
//! the leader's `101` goes back to the caller as is, and after it the two upgraded connections
//! are spliced, frames untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tepui_node::{Error, ErrorKind};
use tepui_proto::TunnelData;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tonic::Status;

use crate::node::Inner;

/// The in-memory pipe between hyper and the cluster port's stream, each way.
const PIPE_BYTES: usize = 64 << 10;

pub(crate) type TunnelStream = std::pin::Pin<Box<dyn Stream<Item = Result<TunnelData, Status>> + Send>>;

/// Whether a request asks to switch protocols (only websockets are served).
pub(crate) fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The leader's end: serves `router` over the bytes a follower sends, and returns the bytes to
/// send back.
pub(crate) fn serve(router: axum::Router, inbound: tonic::Streaming<TunnelData>) -> TunnelStream {
    let (here, there) = tokio::io::duplex(PIPE_BYTES);
    let (read, write) = tokio::io::split(there);
    tokio::spawn(into_pipe(inbound, write));
    let outbound = out_of_pipe(read);
    tokio::spawn(async move {
        let service = hyper_util::service::TowerToHyperService::new(router);
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(here), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "tunnelled connection ended");
        }
    });
    Box::pin(outbound.map(Ok))
}

/// The follower's end: sends `req` (an upgrade) to the leader through a tunnel and answers
/// with the leader's answer; a `101` is followed by the two connections spliced.
pub(crate) async fn relay(inner: &Arc<Inner>, mut req: Request) -> Response {
    let config = inner.raft.config();
    let wait = Duration::from_millis(3 * config.election_timeout_max);
    let browser = hyper::upgrade::on(&mut req);
    let answer = match tokio::time::timeout(wait, ask_leader(inner, req)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return unreachable("the leader did not answer the upgrade in time").into_response(),
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = answer.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let mut answer = answer;
    let leader = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (browser, leader) = match (browser.await, leader.await) {
            (Ok(b), Ok(l)) => (b, l),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "a relayed upgrade did not complete");
                return;
            }
        };
        let (mut browser, mut leader) = (TokioIo::new(browser), TokioIo::new(leader));
        if let Err(e) = tokio::io::copy_bidirectional(&mut browser, &mut leader).await {
            tracing::debug!(error = %e, "relayed websocket ended");
        }
    });
    let (parts, _) = answer.into_parts();
    Response::from_parts(parts, Body::empty())
}

async fn ask_leader(inner: &Arc<Inner>, req: Request) -> Result<http::Response<hyper::body::Incoming>, Error> {
    let leader = inner.raft.metrics().borrow().current_leader.ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "no_leader",
            "no leader is elected yet; retry in a moment",
        )
    })?;
    let addr = inner.member_addr(leader).ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "no_leader",
            "the leader's address is unknown; retry",
        )
    })?;
    if !inner.peers.admit(leader).await {
        return Err(unreachable("the leader is unreachable"));
    }
    let (here, there) = tokio::io::duplex(PIPE_BYTES);
    let (read, write) = tokio::io::split(there);
    let inbound = inner
        .peers
        .client(&addr)
        .tunnel(out_of_pipe(read))
        .await
        .map_err(|s| unreachable(&tepui_transport::status_message(&s)))?
        .into_inner();
    tokio::spawn(into_pipe(inbound, write));
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(here))
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "tunnel to the leader ended");
        }
    });
    let (parts, _) = req.into_parts();
    let mut out = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    );
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    // A leader that lost its office meanwhile answers 503 instead of tunnelling further.
    let out = out
        .header(crate::http::FORWARDED, "1")
        .body(Body::empty())
        .map_err(|e| Error::new(ErrorKind::BadRequest, "bad_request", e.to_string()))?;
    sender.send_request(out).await.map_err(|e| unreachable(&e.to_string()))
}

fn unreachable(why: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "leader_unreachable",
        format!("cannot reach the leader: {why}"),
    )
}

/// Writes what arrives on the cluster port into the pipe; the end of the stream closes the
/// pipe's writing side, so hyper sees the connection end.
async fn into_pipe(mut inbound: tonic::Streaming<TunnelData>, mut pipe: WriteHalf<DuplexStream>) {
    while let Ok(Some(chunk)) = inbound.message().await {
        if pipe.write_all(&chunk.data).await.is_err() {
            return;
        }
    }
    let _ = pipe.shutdown().await;
}

/// What hyper writes into the pipe, as the cluster port's messages; ends when hyper closes it.
fn out_of_pipe(mut pipe: ReadHalf<DuplexStream>) -> impl Stream<Item = TunnelData> + Send + 'static {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = vec![0u8; PIPE_BYTES];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let chunk = TunnelData {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
