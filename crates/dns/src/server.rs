//! DNS over UDP and TCP.
//!
//! UDP: one socket per core on the same address (`SO_REUSEPORT`: the kernel spreads clients
//! over them), each read by a thread of its own in a tight loop that answers from the current
//! [`Records`] without taking a lock (it checks a generation number, and takes the new records
//! only when they changed) and reuses its buffers. It reads every query queued (up to
//! [`UDP_BATCH`]) in one syscall and sends their answers in one more (`udp_batch`): a syscall
//! per datagram cost more than the answer. Forwarded names are answered from the cache in the
//! same loop (their answers join the batch's), or asked upstream by a tokio task (at most
//! `max_forwards` at once; more are dropped, and their clients ask again). A source flooding a
//! saturated socket while others ask gets one answer in eight ([`crate::shed`]). TCP: a tokio
//! task per connection (at most `max_tcp_connections`, each closed after `tcp_idle` without a
//! query), answering its queries in order.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::answer::{self, Outcome, Transport, MAX_QUERY};
use crate::forward::Forwarder;
use crate::records::Records;
use crate::shed::Shedder;
use crate::udp_batch::{RecvBatch, SendBatch};

/// How the server listens and forwards.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP and TCP, the same port (port 0: one the system picks, the same for both).
    pub listen: SocketAddr,
    /// Where names outside the domain are asked, in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long each upstream has to answer.
    pub upstream_timeout: Duration,
    /// Forwarded answers kept.
    pub cache_capacity: usize,
    /// Forwarded questions upstream at once.
    pub max_forwards: usize,
    /// UDP sockets (and threads); 0: one per core.
    pub udp_sockets: usize,
    pub max_tcp_connections: usize,
    pub tcp_idle: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> ServerConfig {
        ServerConfig {
            listen,
            upstreams,
            upstream_timeout: Duration::from_secs(2),
            cache_capacity: 10_000,
            max_forwards: 1024,
            udp_sockets: 0,
            max_tcp_connections: 256,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// Counters of what the server did, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub udp_queries: AtomicU64,
    pub tcp_queries: AtomicU64,
    /// Queries answered by this server itself: names in the domain, and refusals of bad ones.
    pub answered: AtomicU64,
    /// Of those, NXDOMAIN: names in the domain that do not exist.
    pub nxdomain: AtomicU64,
    /// Queries for names outside the domain.
    pub forwarded: AtomicU64,
    /// Of those, answered from the cache.
    pub cache_hits: AtomicU64,
    /// Of those, answered SERVFAIL: no upstream answered.
    pub upstream_failures: AtomicU64,
    /// Forwards dropped because too many were upstream already.
    pub forwards_dropped: AtomicU64,
    /// Queries of a flooding source read and not answered (see [`crate::shed`]).
    pub shed: AtomicU64,
    /// UDP answers the kernel would not send (its buffer full, or the peer unreachable).
    pub udp_send_dropped: AtomicU64,
    /// Times the records were rebuilt, and how long the last build took.
    pub rebuilds: AtomicU64,
    pub last_build_micros: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counts an answer of this server's own (`answer` is the message as written).
fn count_answer(stats: &Stats, answer: &[u8]) {
    count(&stats.answered);
    // The RCODE is the low four bits of the header's fourth byte; 3 is NXDOMAIN.
    if answer.get(3).is_some_and(|b| b & 0x0f == 3) {
        count(&stats.nxdomain);
    }
}

struct Shared {
    generation: AtomicU64,
    current: RwLock<Arc<Records>>,
    stats: Stats,
}

/// The records the server answers from; publishing new ones never waits for a query, nor a
/// query for a build.
#[derive(Clone)]
pub struct RecordsHandle {
    shared: Arc<Shared>,
}

impl RecordsHandle {
    pub fn new(records: Records) -> RecordsHandle {
        RecordsHandle {
            shared: Arc::new(Shared {
                generation: AtomicU64::new(0),
                current: RwLock::new(Arc::new(records)),
                stats: Stats::default(),
            }),
        }
    }

    /// Answers from `records` from now on.
    pub fn publish(&self, records: Records) {
        let old = {
            let mut w = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *w, Arc::new(records))
        };
        self.shared.generation.fetch_add(1, Ordering::Release);
        drop(old);
    }

    pub fn current(&self) -> Arc<Records> {
        self.shared.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn view(&self) -> View {
        View {
            handle: self.clone(),
            generation: self.shared.generation.load(Ordering::Acquire),
            records: self.current(),
        }
    }
}

/// A reader's copy of the current records, renewed when the generation moves.
struct View {
    handle: RecordsHandle,
    generation: u64,
    records: Arc<Records>,
}

impl View {
    fn records(&mut self) -> &Records {
        let g = self.handle.shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.records = self.handle.current();
            self.generation = g;
        }
        &self.records
    }
}

/// A running DNS server; stopped when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
    forwarder: Arc<Forwarder>,
}

/// Datagrams read (and answers sent) per syscall at most: enough that a busy socket's queue
/// drains in a few calls, few enough that a batch's answers leave soon after its first query
/// came.
pub const UDP_BATCH: usize = 32;

/// How soon an idle UDP thread notices the server stopping. (A socket shut down to wake its
/// reader makes std's `recv_from` panic on the empty address it returns.)
const STOP_WITHIN: Duration = Duration::from_millis(250);

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Room for bursts while a thread is busy (the kernel caps it at rmem_max).
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s)
}

impl DnsServer {
    /// Starts serving on `cfg.listen` from `records`. Needs a tokio runtime (forwarding and TCP
    /// run on it).
    pub async fn start(cfg: ServerConfig, records: RecordsHandle) -> io::Result<DnsServer> {
        let runtime = tokio::runtime::Handle::current();
        let sockets = if cfg.udp_sockets == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.udp_sockets
        };
        let first = udp_socket(cfg.listen)?;
        let addr = first
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        let mut udp = vec![first];
        for _ in 1..sockets {
            udp.push(udp_socket(addr)?);
        }
        let listener = TcpListener::bind(addr).await?;
        let forwarder = Arc::new(Forwarder::new(
            cfg.upstreams.clone(),
            cfg.upstream_timeout,
            cfg.cache_capacity,
            cfg.max_forwards,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, s) in udp.into_iter().enumerate() {
            // A thread sees `stop` at its next packet or, when idle, within this.
            s.set_read_timeout(Some(STOP_WITHIN))?;
            let worker = UdpWorker {
                socket: Arc::new(UdpSocket::from(s)),
                records: records.clone(),
                forwarder: forwarder.clone(),
                runtime: runtime.clone(),
                stop: stop.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        let tcp = tokio::spawn(serve_tcp(
            listener,
            records,
            forwarder.clone(),
            cfg.max_tcp_connections,
            cfg.tcp_idle,
        ));
        tracing::info!(%addr, sockets, upstreams = ?cfg.upstreams, "dns serving");
        Ok(DnsServer {
            addr,
            stop,
            threads,
            tcp,
            forwarder,
        })
    }

    /// Where it listens (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many forwarded answers are cached.
    pub fn cached(&self) -> usize {
        self.forwarder.cache().len()
    }

    /// Stops serving: the UDP threads end, the TCP listener and its connections close.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.tcp.abort();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UdpWorker {
    socket: Arc<UdpSocket>,
    records: RecordsHandle,
    forwarder: Arc<Forwarder>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
}

impl UdpWorker {
    fn run(self) {
        // One byte more than a query may have: a longer datagram is seen as such and refused.
        let mut batch = RecvBatch::new(UDP_BATCH, MAX_QUERY + 1);
        let mut replies = SendBatch::with_capacity(UDP_BATCH, 512);
        let mut out = Vec::with_capacity(4096);
        let mut view = self.records.view();
        let stats = &self.records.shared.stats;
        let mut turn = 0usize;
        let mut shedder = Shedder::new(std::time::Instant::now());
        loop {
            let received = batch.recv(&*self.socket);
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let n = match received {
                Ok(n) => n,
                Err(e) => {
                    // The idle timeout (`STOP_WITHIN`), or an ICMP error of an earlier answer
                    // (ECONNREFUSED): nothing to answer.
                    if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                        tracing::trace!(error = %e, "dns udp read");
                    }
                    continue;
                }
            };
            stats.udp_queries.fetch_add(n as u64, Ordering::Relaxed);
            for query in batch.iter() {
                if !shedder.admit(query.peer.ip(), std::time::Instant::now) {
                    count(&stats.shed);
                    continue;
                }
                // Cut to its buffer, a query is one byte too long: `handle` refuses it.
                debug_assert!(!query.truncated || query.payload.len() > MAX_QUERY);
                turn = turn.wrapping_add(1);
                match answer::handle(view.records(), query.payload, Transport::Udp, turn, &mut out) {
                    Outcome::Reply => {
                        count_answer(stats, &out);
                        replies.push(&out, query.peer);
                    }
                    Outcome::Drop => {}
                    Outcome::Forward(req) => self.forward(req, query.peer, &mut out, &mut replies),
                }
            }
            if !replies.is_empty() {
                let flushed = replies.flush(&*self.socket);
                if flushed.dropped > 0 {
                    stats
                        .udp_send_dropped
                        .fetch_add(flushed.dropped as u64, Ordering::Relaxed);
                    if let Some(e) = flushed.error {
                        tracing::trace!(error = %e, dropped = flushed.dropped, "dns udp send");
                    }
                }
            }
        }
    }

    /// Answers `req` from the cache into `replies`, or asks upstream on a task that sends its
    /// own answer.
    fn forward(
        &self,
        req: Box<hickory_proto::op::Message>,
        peer: SocketAddr,
        out: &mut Vec<u8>,
        replies: &mut SendBatch,
    ) {
        let stats = &self.records.shared.stats;
        count(&stats.forwarded);
        if let Some(resp) = self.forwarder.cached(&req) {
            count(&stats.cache_hits);
            answer::forwarded(&resp, &req, Transport::Udp, out);
            replies.push(out, peer);
            return;
        }
        let Some(permit) = self.forwarder.try_begin() else {
            count(&stats.forwards_dropped);
            return;
        };
        let socket = self.socket.clone();
        let forwarder = self.forwarder.clone();
        let records = self.records.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let mut out = Vec::new();
            match forwarder.resolve(&req, false).await {
                Some(resp) => answer::forwarded(&resp, &req, Transport::Udp, &mut out),
                None => {
                    count(&records.shared.stats.upstream_failures);
                    answer::server_failure(&req, &mut out);
                }
            }
            // A UDP send does not wait for the peer; at worst for room in the socket's buffer.
            let _ = socket.send_to(&out, peer);
        });
    }
}

async fn serve_tcp(
    listener: TcpListener,
    records: RecordsHandle,
    forwarder: Arc<Forwarder>,
    max_connections: usize,
    idle: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    // Dropped (and so every connection aborted) when the server stops.
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: give the connections a moment to end.
                tracing::warn!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "dns tcp: too many connections; closed");
            continue;
        };
        let records = records.clone();
        let forwarder = forwarder.clone();
        connections.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, records, forwarder, idle).await {
                tracing::trace!(%peer, error = %e, "dns tcp connection");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    records: RecordsHandle,
    forwarder: Arc<Forwarder>,
    idle: Duration,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut view = records.view();
    let stats = &records.shared.stats;
    let mut query = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4096);
    let mut turn = 0usize;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "idle");
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timed_out()),
        };
        // At most 64 KiB (the length is 16 bits): read it all, then refuse it if too long.
        query.resize(len, 0);
        tokio::time::timeout(idle, stream.read_exact(&mut query))
            .await
            .map_err(|_| timed_out())??;
        count(&stats.tcp_queries);
        turn = turn.wrapping_add(1);
        match answer::handle(view.records(), &query, Transport::Tcp, turn, &mut out) {
            Outcome::Reply => count_answer(stats, &out),
            Outcome::Drop => return Ok(()),
            Outcome::Forward(req) => {
                count(&stats.forwarded);
                match forwarder.resolve(&req, true).await {
                    Some(resp) => answer::forwarded(&resp, &req, Transport::Tcp, &mut out),
                    None => {
                        count(&stats.upstream_failures);
                        answer::server_failure(&req, &mut out);
                    }
                }
            }
        }
        framed.clear();
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        tokio::time::timeout(idle, stream.write_all(&framed))
            .await
            .map_err(|_| timed_out())??;
    }
}
