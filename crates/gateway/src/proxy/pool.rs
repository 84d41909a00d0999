//! Keep-alive HTTP/1.1 connections to backends, one pool per worker thread: a request and the
//! backend connection it uses run on one thread, a connection goes back to the pool the
//! moment its response's body has ended, and nothing is spawned per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::forward::RequestBody;
use super::live::FnvBuild;

/// Why no response came from a backend.
pub(crate) enum SendError {
    /// No connection (refused, unreachable, timed out): nothing was sent, the request is back.
    Connect(Box<Request<RequestBody>>),
    /// The request went out (or part of it), then the connection failed.
    Sent(hyper::Error),
}

/// An idle connection and since when.
struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, FnvBuild>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
}

/// A connection lent to one request, to be given back once its response has been read.
pub(crate) struct Lent {
    pub addr: SocketAddr,
    pub sender: SendRequest<RequestBody>,
    pub pool: Arc<Pool>,
}

impl Lent {
    /// Back to the pool (its response's body has ended).
    pub fn give_back(self) {
        self.pool.put(self.addr, self.sender);
    }
}

impl Pool {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration, max_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
            max_idle,
        }
    }

    /// Sends `request` to `addr` on an idle connection or a new one. A pooled connection that
    /// turns out closed (the backend dropped it while idle) is replaced without counting as a
    /// failure, since the request was not sent.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lent), SendError> {
        while let Some(mut sender) = self.take(addr) {
            if !sender.is_ready() {
                // Its last response has just ended; the connection is a moment from ready.
                match tokio::time::timeout(self.connect_timeout, sender.ready()).await {
                    Ok(Ok(())) => {}
                    _ => continue,
                }
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.lend(addr, sender))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Sent(error.into_error())),
                },
            }
        }
        let mut sender = match self.connect(addr).await {
            Some(sender) => sender,
            None => return Err(SendError::Connect(Box::new(request))),
        };
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, self.lend(addr, sender))),
            Err(mut error) => match error.take_message() {
                Some(unsent) => Err(SendError::Connect(Box::new(unsent))),
                None => Err(SendError::Sent(error.into_error())),
            },
        }
    }

    fn lend(self: &Arc<Self>, addr: SocketAddr, sender: SendRequest<RequestBody>) -> Lent {
        Lent {
            addr,
            sender,
            pool: self.clone(),
        }
    }

    /// The most recently used idle connection to `addr` that is still fresh.
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(candidate) = list.pop() {
            if !candidate.sender.is_closed() && candidate.since.elapsed() < self.idle_timeout {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_idle {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(backend = %addr, error = &error as &dyn std::error::Error, "cannot connect to a backend");
                return None;
            }
            Err(_elapsed) => {
                tracing::debug!(backend = %addr, "connecting to a backend timed out");
                return None;
            }
        };
        let _ = stream.set_nodelay(true);
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok((sender, connection)) => {
                tokio::spawn(async move {
                    if let Err(error) = connection.with_upgrades().await {
                        tracing::debug!(backend = %addr, error = %error, "backend connection ended with an error");
                    }
                });
                Some(sender)
            }
            Err(error) => {
                tracing::debug!(backend = %addr, error = %error, "http handshake with a backend failed");
                None
            }
        }
    }

    /// Drops idle connections past their time and those the backends closed.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout);
            !list.is_empty()
        });
    }

    /// Sweeps every `idle_timeout` until `stop`.
    pub async fn sweep_until(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let period = self.idle_timeout.max(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => self.sweep(),
            }
        }
    }
}
