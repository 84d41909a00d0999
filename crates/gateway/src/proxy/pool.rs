//! Keep-alive HTTP/1.1 connections to backends, one pool per worker thread. A backend
//! connection has no task of its own: the request that has it lent drives it (writes the
//! request, reads the response and its body) from the client connection's task, so a
//! request and its response cost no wake-up of another task, and a connection goes back to
//! the pool the moment its response's body has ended.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
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

/// The protocol state of a connection to a backend (hyper's connection with upgrades, a type
/// it does not name): polled by whoever holds the connection.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// A connection to a backend: where requests go in, and what moves them over the wire.
pub(crate) struct Conn {
    sender: SendRequest<RequestBody>,
    /// None once the connection has ended.
    driver: Option<Driver>,
}

impl Conn {
    /// Moves the connection on as far as it can go now; notices its end.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = self.driver.as_mut() {
            if let Poll::Ready(ended) = driver.as_mut().poll(cx) {
                if let Err(error) = ended {
                    tracing::debug!(error = %error, "backend connection ended with an error");
                }
                self.driver = None;
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.driver.is_none() || self.sender.is_closed()
    }

    /// Ready for a request, driving the connection meanwhile (a backend that closed it while
    /// it was idle is noticed here, before anything is sent).
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.drive(cx);
            self.sender.poll_ready(cx)
        })
        .await
        .is_ok()
    }

    /// Sends a request and drives the connection until its response's head has come.
    async fn exchange(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// An idle connection and since when.
struct Idle {
    conn: Conn,
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
    addr: SocketAddr,
    conn: Conn,
    pool: Arc<Pool>,
}

impl Lent {
    /// Moves the connection on (reads more of the response's body); called by the body
    /// whenever it has nothing to give.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        self.conn.drive(cx);
    }

    /// Back to the pool (its response's body has ended).
    pub fn give_back(self) {
        self.pool.put(self.addr, self.conn);
    }

    /// The connection is leaving HTTP (a switch of protocols): it gets a task of its own to
    /// hand its socket over to the upgrade and end.
    pub fn detach(self) {
        if let Some(driver) = self.conn.driver {
            let addr = self.addr;
            tokio::spawn(async move {
                if let Err(error) = driver.await {
                    tracing::debug!(backend = %addr, error = %error, "backend connection ended with an error");
                }
            });
        }
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
        while let Some(mut conn) = self.take(addr) {
            // A connection whose last response has just ended is a moment from ready.
            match tokio::time::timeout(self.connect_timeout, conn.ready()).await {
                Ok(true) => {}
                _ => continue,
            }
            match conn.exchange(request).await {
                Ok(response) => return Ok((response, self.lend(addr, conn))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Sent(error.into_error())),
                },
            }
        }
        let mut conn = match self.connect(addr).await {
            Some(conn) => conn,
            None => return Err(SendError::Connect(Box::new(request))),
        };
        if !conn.ready().await {
            return Err(SendError::Connect(Box::new(request)));
        }
        match conn.exchange(request).await {
            Ok(response) => Ok((response, self.lend(addr, conn))),
            Err(mut error) => match error.take_message() {
                Some(unsent) => Err(SendError::Connect(Box::new(unsent))),
                None => Err(SendError::Sent(error.into_error())),
            },
        }
    }

    fn lend(self: &Arc<Self>, addr: SocketAddr, conn: Conn) -> Lent {
        Lent {
            addr,
            conn,
            pool: self.clone(),
        }
    }

    /// The most recently used idle connection to `addr` that is still fresh.
    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(candidate) = list.pop() {
            if !candidate.conn.is_closed() && candidate.since.elapsed() < self.idle_timeout {
                return Some(candidate.conn);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_idle {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Option<Conn> {
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
            Ok((sender, connection)) => Some(Conn {
                sender,
                driver: Some(Box::pin(connection.with_upgrades())),
            }),
            Err(error) => {
                tracing::debug!(backend = %addr, error = %error, "http handshake with a backend failed");
                None
            }
        }
    }

    /// Drops idle connections past their time and those the backends closed. Nothing polls
    /// an idle connection, so each is polled once here (with no one to wake: whoever takes it
    /// next polls it again) to notice a close.
    pub fn sweep(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(|c| {
                c.conn.drive(&mut cx);
                !c.conn.is_closed() && c.since.elapsed() < self.idle_timeout
            });
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
