//! Service discovery by DNS, as Mesos-DNS serves it, from the replicated state.
//!
//! Every server answers for the cluster domain (`mesos` by default), and for the named virtual
//! IPs' zone (`l4lb.thisdcos.directory`, as on DC/OS), from its own copy of the state: [`follow`]
//! rebuilds the records whenever the applied state or the leadership changes (no polling), and
//! the [`server`] answers from the newest records over UDP and TCP, forwarding every other name
//! to the upstream resolvers through a bounded cache.
//!
//! - [`records`]: the pure part: the state to Mesos-DNS's names ([`records::Snapshot`],
//!   [`records::generate`]) and the names to wire-ready records ([`records::Records`]).
//! - [`answer`]: one query in, one answer out (hickory's wire format), no I/O.
//! - [`cache`] and [`forward`]: names outside the domain.
//! - [`server`]: the sockets; [`shed`]: who is not answered when one source floods.
//! - [`http`]: the same records over HTTP: Mesos-DNS's API (its own port, 8123, public as
//!   Mesos-DNS's is) and tepui's `/v1/dns` routes (on the API, behind its gate).
//!
//! It knows the state and the node handle; nothing of Raft, or the frameworks beyond the ids
//! and labels that name their tasks. The VIPs' names and addresses are tepui-gateway's
//! ([`tepui_gateway::vip`]), so that DNS and the agents' rules agree. It builds routers; the
//! server decides where they listen.

pub mod answer;
pub mod cache;
pub mod forward;
pub mod http;
pub mod names;
pub mod records;
pub mod server;
pub mod shed;
mod udp_batch;

use std::time::{Duration, Instant};

use tepui_node::Node;

pub use records::{Config, Records, Snapshot, Table, VipInfo};
pub use server::{DnsServer, RecordsHandle, ServerConfig, Stats};

/// Rebuilds follow the state at most this often while changes keep coming: a burst of
/// applied entries costs one build per interval, and the records are never later than this
/// behind the state (plus a build). A build longer than a tenth of it rests nine times its
/// length first (`tepui_node::StateChanges::next`).
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(50);

/// The records of `node`'s applied state now, with its current leader.
pub fn build(node: &Node, cfg: &Config) -> Records {
    let leader = node.leader_id();
    let serial = node.applied_index() as u32;
    let snap = node.read(|s| Snapshot::of(s, leader));
    Records::build(&snap, cfg, serial)
}

/// Keeps `handle`'s records those of `node`'s state: rebuilt after every change of the applied
/// state or of the leadership (coalesced: at most one build per [`MIN_REBUILD_INTERVAL`]),
/// until the node shuts down.
pub async fn follow(node: Node, cfg: Config, handle: RecordsHandle) {
    let mut changes = node.changes();
    loop {
        changes.mark_seen();
        let started = Instant::now();
        // Only the snapshot is taken under the state's lock; the build runs off it, on a
        // thread that may block.
        let leader = node.leader_id();
        let serial = node.applied_index() as u32;
        let snap = node.read(|s| Snapshot::of(s, leader));
        let build_cfg = cfg.clone();
        let Ok(records) = tokio::task::spawn_blocking(move || Records::build(&snap, &build_cfg, serial)).await else {
            return;
        };
        let names = records.len();
        handle.publish(records);
        let took = started.elapsed();
        let stats = handle.stats();
        stats.rebuilds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .last_build_micros
            .store(took.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(serial, names, took_us = took.as_micros() as u64, "dns records rebuilt");
        if !changes.next(started, MIN_REBUILD_INTERVAL).await {
            return;
        }
    }
}

/// A server's DNS: the records following the state, and the server answering from them.
pub struct Dns {
    pub server: DnsServer,
    pub records: RecordsHandle,
    follow: tokio::task::JoinHandle<()>,
    node: Node,
    cfg: Config,
    upstreams: Vec<std::net::SocketAddr>,
    upstream_timeout: Duration,
}

impl Dns {
    /// Serves `node`'s records as `server` says, following its state.
    pub async fn start(node: Node, cfg: Config, server: ServerConfig) -> std::io::Result<Dns> {
        let records = RecordsHandle::new(build(&node, &cfg));
        let upstreams = server.upstreams.clone();
        let upstream_timeout = server.upstream_timeout;
        let dns = DnsServer::start(server, records.clone()).await?;
        let follow = tokio::spawn(follow(node.clone(), cfg.clone(), records.clone()));
        Ok(Dns {
            server: dns,
            records,
            follow,
            node,
            cfg,
            upstreams,
            upstream_timeout,
        })
    }

    /// Mesos-DNS's HTTP API over these records, for a listener on `http_port` of the DNS's
    /// address (see [`http`] for why it is public).
    pub fn mesos_dns_router(&self, http_port: u16) -> axum::Router {
        http::mesos_dns_router(
            self.node.clone(),
            self.records.clone(),
            self.cfg.clone(),
            http::Settings {
                listen: self.server.local_addr(),
                http_port,
                upstreams: self.upstreams.clone(),
                upstream_timeout: self.upstream_timeout,
            },
        )
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.follow.abort();
    }
}
