//! The L7 data plane an agent runs: an HTTP and HTTPS reverse proxy serving the routes of the
//! current [`GatewayTable`] (in process, on hyper; no HAProxy).
//!
//! - Listeners: HTTP and HTTPS, each optional; HTTP/1.1 and HTTP/2 on both (HTTPS chooses by
//!   ALPN, cleartext HTTP/2 by prior knowledge). HTTPS picks its certificate by SNI from the
//!   table (exact name, then `*.` for one label), else the default one.
//! - Threads: accepted connections are handed in turn to worker threads, each with its own
//!   event loop and backend connection pool, so a request, its backend connection and their
//!   wake-ups stay on one thread (the multi-threaded runtime's cross-thread wake-ups cost a
//!   third of the throughput).
//! - Routing: the first route of the table, among the served groups, whose hosts match the
//!   request's host (lowercase, port stripped; no hosts: any) and whose path prefix matches on
//!   a `/` boundary (`/api` matches `/api`, `/api/x`, not `/apis`). None: 404; a route without
//!   backends: 503.
//! - Backends: HTTP/1.1 keep-alive pools, a backend connection driven by the request it is
//!   lent to (no task of its own while it serves HTTP); round robin, least outstanding requests, or a hash of
//!   the client's address; sticky sessions by the `mesosphere_server_id` cookie.
//! - Passive health: a backend that fails `eject_after_failures` times in a row (no connection,
//!   no response, timeout; a 5xx is an answer and does not count) is out for `eject_for`, then
//!   one request tries it and brings it back on success. When every backend of a route is out,
//!   requests still try the one back soonest instead of failing untried.
//! - Retries, once, to another backend (of the latest table): any request that could not
//!   connect (nothing was sent, body and all); an idempotent request without a body that got
//!   no response. Not on timeouts, not a body already sent.
//! - A new table applies to the next request; requests in flight finish on the table they
//!   started with, and client connections stay open.
//! - Every request ends with an event on target `tepui_gateway::access` (info).
//!
//! What it does not know: where tables come from (the agent's stream), or the virtual IPs.

mod balance;
mod forward;
mod live;
mod metrics;
mod pool;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{Certificate, GatewayTable};
use balance::EjectPolicy;
use live::{Live, LiveCell};
use metrics::{ListenerKind, Metrics};
use pool::Pool;

pub use balance::STICKY_COOKIE;
pub use live::{BackendHealth, LiveBackend, LiveRoute};
pub use tls::CertificateError;

/// How a gateway listens and treats clients and backends.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where plain HTTP is served (none: not served).
    pub http: Option<SocketAddr>,
    /// Where HTTPS is served (none: not served).
    pub https: Option<SocketAddr>,
    /// The route groups served (`HAPROXY_GROUP`); `*` serves every group.
    pub groups: Vec<String>,
    /// The certificate for names no certificate of the table covers. None: a self-signed one
    /// made at start.
    pub default_certificate: Option<Certificate>,
    /// How long a client has for a request's head (and a TLS handshake, and a first request on
    /// a new connection); also how long an idle HTTP/1 connection is kept.
    pub header_timeout: Duration,
    /// How long a connection to a backend may take.
    pub connect_timeout: Duration,
    /// How long a backend may take to start its response.
    pub request_timeout: Duration,
    /// The largest request head accepted (at least 8 KiB): larger ones get 431.
    pub max_header_bytes: usize,
    /// How long an idle pooled connection to a backend is kept. Shorter than the backends'
    /// own keep-alive (Node's is 5 s), so that a backend rarely closes a connection just as a
    /// request is sent on it.
    pub backend_idle_timeout: Duration,
    /// Idle pooled connections kept per backend.
    pub max_idle_per_backend: usize,
    /// Consecutive failures that eject a backend.
    pub eject_after_failures: u32,
    /// How long an ejected backend stays out before one request tries it again.
    pub eject_for: Duration,
    /// How long [`Gateway::shutdown`] waits for requests in flight.
    pub drain_timeout: Duration,
    /// Threads serving connections, each with its own event loop and backend pools (0: one
    /// per CPU).
    pub workers: usize,
    /// Keeps worker `i` on the `i`-th CPU the agent may use (as haproxy's `cpu-map` and nginx's
    /// `worker_cpu_affinity` do): a worker that the scheduler moves between CPUs loses its
    /// caches and waits to be placed, which showed as a 1.4x longer p99 under load.
    pub pin_workers: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            https: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
            groups: vec!["external".to_owned()],
            default_certificate: None,
            header_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            backend_idle_timeout: Duration::from_secs(4),
            max_idle_per_backend: 256,
            eject_after_failures: 3,
            eject_for: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(15),
            workers: 0,
            pin_workers: true,
        }
    }
}

/// Why a gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen for {listener} on {addr}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the default certificate cannot be used")]
    DefaultCertificate(#[source] CertificateError),
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    #[error("cannot start a worker thread")]
    Worker(#[source] std::io::Error),
}

/// What every connection and request of one gateway shares.
pub(crate) struct Shared {
    live: Arc<LiveCell>,
    server: auto::Builder<TokioExecutor>,
    metrics: Arc<Metrics>,
    /// Times of ejections are milliseconds since then.
    epoch: Instant,
    /// The HTTPS listener's port, for redirects.
    https_port: Option<u16>,
    policy: EjectPolicy,
    request_timeout: Duration,
    header_timeout: Duration,
    /// Stop accepting; connections finish their requests and close.
    stopping: CancellationToken,
    /// Close every connection now.
    hard_stop: CancellationToken,
    /// Client connections and tunnels open (shutdown waits for none).
    open: AtomicUsize,
    all_closed: Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `at` as milliseconds since the gateway started (saves reading the clock again).
    fn ms_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Counts a connection or tunnel open until the slot is dropped.
    fn open_slot(self: &Arc<Self>) -> OpenSlot {
        self.open.fetch_add(1, Relaxed);
        OpenSlot { shared: self.clone() }
    }

    async fn all_closed(&self) {
        loop {
            let closed = self.all_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Relaxed) == 0 {
                return;
            }
            closed.await;
        }
    }
}

struct OpenSlot {
    shared: Arc<Shared>,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if self.shared.open.fetch_sub(1, Relaxed) == 1 {
            self.shared.all_closed.notify_waiters();
        }
    }
}

/// A listener's facts that requests carry to the backend, made once.
pub(crate) struct ListenerInfo {
    kind: ListenerKind,
    /// `X-Forwarded-Proto`.
    proto: HeaderValue,
    /// `X-Forwarded-Port`.
    port: HeaderValue,
    /// For the HTTPS listener.
    tls: Option<TlsAcceptor>,
}

/// One client connection's facts, made once and shared by its requests.
pub(crate) struct ConnCtx {
    shared: Arc<Shared>,
    /// The worker thread serving the connection.
    worker: Arc<Worker>,
    listener: Arc<ListenerInfo>,
    peer: SocketAddr,
    /// The client's address as `X-Forwarded-For` names it.
    client_ip: HeaderValue,
    /// For `Balance::Source`.
    source_hash: u64,
    /// A request has arrived on this connection.
    received: AtomicBool,
}

/// What one worker thread's connections share.
pub(crate) struct Worker {
    /// Backend connections (each worker has its own: a request and its backend connection are
    /// served by one thread).
    pool: Arc<Pool>,
    /// The gateway's tokens, as children for this thread alone: a connection's task checks
    /// them at every wake, and a token's check takes a lock that threads would contend for.
    stopping: CancellationToken,
    hard_stop: CancellationToken,
}

/// A running gateway. Dropping it closes everything at once; [`Gateway::shutdown`] drains.
pub struct Gateway {
    shared: Arc<Shared>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    drain_timeout: Duration,
}

impl Gateway {
    /// Binds the listeners and serves `table` (and every table it changes to) until shut down.
    pub async fn start(
        settings: Settings,
        mut table: watch::Receiver<Arc<GatewayTable>>,
    ) -> Result<Gateway, GatewayError> {
        let provider = tls::provider();
        let metrics = Arc::new(Metrics::default());
        let first = table.borrow_and_update().clone();
        let live = Live::build(&first, &settings.groups, &Live::default(), &metrics, &provider);
        metrics.table_updates.fetch_add(1, Relaxed);
        metrics.certificates_rejected.store(live.certs.rejected as u64, Relaxed);
        let live = Arc::new(LiveCell::new(live));

        let http = bind("http", settings.http).await?;
        let https = bind("https", settings.https).await?;
        let acceptor = match &https {
            Some(_) => {
                let default = match &settings.default_certificate {
                    Some(certificate) => certificate.clone(),
                    None => tls::self_signed().map_err(GatewayError::DefaultCertificate)?,
                };
                let default = tls::certified_key(&default, &provider).map_err(GatewayError::DefaultCertificate)?;
                let resolver = Arc::new(tls::SniResolver {
                    live: live.clone(),
                    default,
                });
                let config = tls::server_config(resolver, provider.clone()).map_err(GatewayError::Tls)?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };

        let mut server = auto::Builder::new(TokioExecutor::new());
        server
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(settings.max_header_bytes.max(8192));
        server
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
            // HTTP/2 connections have no header timeout once open: pings find dead clients.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));

        let shared = Arc::new(Shared {
            live,
            server,
            metrics,
            epoch: Instant::now(),
            https_port: https.as_ref().map(|(_, addr)| addr.port()),
            policy: EjectPolicy {
                after_failures: settings.eject_after_failures,
                eject_for: settings.eject_for,
            },
            request_timeout: settings.request_timeout,
            header_timeout: settings.header_timeout,
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
        });

        let count = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for index in 0..count {
            let (inbox, accepted) = mpsc::unbounded_channel();
            let worker = spawn_worker(index, shared.clone(), &settings, accepted).map_err(|error| {
                shared.hard_stop.cancel();
                GatewayError::Worker(error)
            })?;
            workers.push(worker);
            inboxes.push(inbox);
        }
        let dispatch = Arc::new(Dispatch {
            inboxes,
            next: AtomicUsize::new(0),
        });

        let mut tasks = Vec::new();
        let http_addr = http.as_ref().map(|(_, addr)| *addr);
        let https_addr = https.as_ref().map(|(_, addr)| *addr);
        if let Some((listener, addr)) = http {
            let info = listener_info(ListenerKind::Http, addr, None);
            tasks.push(tokio::spawn(accept_loop(
                shared.clone(),
                listener,
                info,
                dispatch.clone(),
            )));
        }
        if let Some((listener, addr)) = https {
            let info = listener_info(ListenerKind::Https, addr, acceptor);
            tasks.push(tokio::spawn(accept_loop(shared.clone(), listener, info, dispatch)));
        }
        tasks.push(tokio::spawn(follow_table(
            shared.clone(),
            table,
            settings.groups.clone(),
            provider,
        )));
        tracing::info!(http = ?http_addr, https = ?https_addr, groups = ?settings.groups, workers = count, "gateway serving");
        Ok(Gateway {
            shared,
            http_addr,
            https_addr,
            tasks,
            workers,
            drain_timeout: settings.drain_timeout,
        })
    }

    /// Where plain HTTP is served (the bound address: port 0 resolved).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where HTTPS is served.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The routes served now, with their backends' state (`tepui gateway routes`).
    pub fn routes(&self) -> Vec<LiveRoute> {
        self.shared.live.load().describe(self.shared.now_ms())
    }

    /// The gateway's counters, Prometheus text (`tepui_gateway_*`).
    pub fn metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Stops accepting, lets requests in flight finish (up to the drain timeout), then closes
    /// what is left.
    pub async fn shutdown(mut self) {
        self.shared.stopping.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if tokio::time::timeout(self.drain_timeout, self.shared.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.shared.open.load(Relaxed),
                "gateway connections still open at the drain timeout: closing them"
            );
        }
        self.shared.hard_stop.cancel();
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        tracing::info!("gateway stopped");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shared.stopping.cancel();
        self.shared.hard_stop.cancel();
    }
}

async fn bind(
    listener: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, GatewayError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let error = |source| GatewayError::Bind { listener, addr, source };
    let bound = TcpListener::bind(addr).await.map_err(error)?;
    let local = bound.local_addr().map_err(error)?;
    Ok(Some((bound, local)))
}

fn listener_info(kind: ListenerKind, addr: SocketAddr, tls: Option<TlsAcceptor>) -> Arc<ListenerInfo> {
    Arc::new(ListenerInfo {
        kind,
        proto: HeaderValue::from_static(kind.name()),
        port: HeaderValue::from(addr.port()),
        tls,
    })
}

/// Applies every new table as it arrives; the last one keeps being served if the sender goes.
async fn follow_table(
    shared: Arc<Shared>,
    mut table: watch::Receiver<Arc<GatewayTable>>,
    groups: Vec<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) {
    loop {
        tokio::select! {
            _ = shared.stopping.cancelled() => return,
            changed = table.changed() => {
                if changed.is_err() {
                    tracing::info!("the gateway table's sender is gone: serving the last table");
                    return;
                }
            }
        }
        let latest = table.borrow_and_update().clone();
        let started = Instant::now();
        let previous = shared.live.load();
        let live = Live::build(&latest, &groups, &previous, &shared.metrics, &provider);
        drop(previous);
        shared.metrics.table_updates.fetch_add(1, Relaxed);
        shared
            .metrics
            .certificates_rejected
            .store(live.certs.rejected as u64, Relaxed);
        tracing::debug!(
            routes = live.routes.len(),
            certificates_rejected = live.certs.rejected,
            took_us = started.elapsed().as_micros() as u64,
            "gateway table applied"
        );
        shared.live.store(Arc::new(live));
    }
}

/// A connection accepted, on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerInfo>,
    slot: OpenSlot,
}

/// Hands accepted connections to the workers in turn.
struct Dispatch {
    inboxes: Vec<mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, info: Arc<ListenerInfo>, dispatch: Arc<Dispatch>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.stopping.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer))) {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning on the error.
                tracing::warn!(
                    listener = info.kind.name(),
                    error = &error as &dyn std::error::Error,
                    "gateway cannot accept a connection"
                );
                tokio::select! {
                    _ = shared.stopping.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let worker = dispatch.next.fetch_add(1, Relaxed) % dispatch.inboxes.len();
        let accepted = Accepted {
            stream,
            peer,
            listener: info.clone(),
            slot: shared.open_slot(),
        };
        if dispatch.inboxes[worker].send(accepted).is_err() {
            tracing::warn!(worker, "gateway worker gone: connection dropped");
        }
    }
}

/// A thread with its own event loop: the connections handed to it, their requests and the
/// connections to backends those use all run there, so a request never wakes another thread.
fn spawn_worker(
    index: usize,
    shared: Arc<Shared>,
    settings: &Settings,
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Sockets and timers only: a loop with no signal or child-process driver skips their
    // bookkeeping at every turn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let connect_timeout = settings.connect_timeout;
    let idle_timeout = settings.backend_idle_timeout;
    let max_idle = settings.max_idle_per_backend;
    let pin = settings.pin_workers;
    std::thread::Builder::new()
        .name(format!("tepui-gateway-{index}"))
        .spawn(move || {
            if pin {
                pin_to_cpu(index);
            }
            runtime.block_on(async move {
                let worker = Arc::new(Worker {
                    pool: Arc::new(Pool::new(connect_timeout, idle_timeout, max_idle)),
                    stopping: shared.stopping.child_token(),
                    hard_stop: shared.hard_stop.child_token(),
                });
                tokio::spawn(worker.pool.clone().sweep_until(worker.hard_stop.clone()));
                loop {
                    tokio::select! {
                        _ = worker.hard_stop.cancelled() => return,
                        next = accepted.recv() => match next {
                            Some(connection) => {
                                tokio::spawn(serve_connection(shared.clone(), worker.clone(), connection));
                            }
                            // Listeners closed: keep serving what is open until the end.
                            None => return worker.hard_stop.cancelled().await,
                        },
                    }
                }
            });
        })
}

/// Keeps the calling thread on the `index`-th CPU it may run on (wrapping around).
fn pin_to_cpu(index: usize) {
    // SAFETY: cpu_set_t is plain data; the calls only read and write the set given.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[index % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

async fn serve_connection(shared: Arc<Shared>, worker: Arc<Worker>, accepted: Accepted) {
    let Accepted {
        stream,
        peer,
        listener,
        slot,
    } = accepted;
    let _slot = slot;
    let _open = shared.metrics.connection_opened(listener.kind);
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%peer, error = &error as &dyn std::error::Error, "accepted connection unusable");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    // The whole way to a first request is bounded: a silent client does not hold a task.
    let first_request_by = tokio::time::Instant::now() + shared.header_timeout;
    let ip = peer.ip().to_canonical();
    let source_hash = match ip {
        std::net::IpAddr::V4(v4) => balance::fnv1a(&v4.octets()),
        std::net::IpAddr::V6(v6) => balance::fnv1a(&v6.octets()),
    };
    let client_ip = HeaderValue::try_from(ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let acceptor = listener.tls.clone();
    let ctx = Arc::new(ConnCtx {
        shared: shared.clone(),
        worker: worker.clone(),
        listener,
        peer,
        client_ip,
        source_hash,
        received: AtomicBool::new(false),
    });
    let Some(acceptor) = acceptor else {
        return drive(ctx, TokioIo::new(stream), first_request_by).await;
    };
    let handshake = tokio::select! {
        _ = worker.hard_stop.cancelled() => return,
        _ = worker.stopping.cancelled() => return,
        handshake = tokio::time::timeout_at(first_request_by, acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => drive(ctx, TokioIo::new(stream), first_request_by).await,
        Ok(Err(error)) => {
            shared.metrics.tls_handshake_failures.fetch_add(1, Relaxed);
            tracing::debug!(%peer, error = &error as &dyn std::error::Error, "tls handshake failed");
        }
        Err(_elapsed) => {
            shared.metrics.tls_handshake_failures.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "tls handshake timed out");
        }
    }
}

/// Serves a client connection's requests until it closes, draining on shutdown.
async fn drive<I>(ctx: Arc<ConnCtx>, io: I, first_request_by: tokio::time::Instant)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shared = ctx.shared.clone();
    let service = hyper::service::service_fn({
        let ctx = ctx.clone();
        move |request| forward::handle(ctx.clone(), request)
    });
    let connection = shared.server.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    // Made once: a connection's task is polled at every read and write.
    let first_request = tokio::time::sleep_until(first_request_by);
    let stopping = ctx.worker.stopping.cancelled();
    let hard_stop = ctx.worker.hard_stop.cancelled();
    tokio::pin!(first_request, stopping, hard_stop);
    let mut awaiting_first = true;
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(peer = %ctx.peer, error = %error, "client connection ended with an error");
                }
                return;
            }
            _ = &mut first_request, if awaiting_first => {
                awaiting_first = false;
                if !ctx.received.load(Relaxed) {
                    tracing::debug!(peer = %ctx.peer, "no request within the header timeout: connection closed");
                    return;
                }
            }
            _ = &mut stopping, if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut hard_stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pinned_worker_runs_on_one_cpu_of_those_allowed() {
        let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = std::thread::spawn(move || {
            super::pin_to_cpu(allowed + 1);
            std::thread::available_parallelism().map_or(0, |n| n.get())
        })
        .join()
        .expect("the pinned thread ends");
        assert_eq!(cpus, 1, "allowed {allowed} CPUs before");
    }
}
