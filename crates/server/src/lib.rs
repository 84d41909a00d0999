//! A tepui control-plane server: one Raft voter with its storage, the cluster port (Raft RPCs,
//! joins, forwarding, agent streams over mTLS), the HTTP API, and the features wired onto the
//! node handle.
//!
//! Any server answers any API call: a follower forwards what it cannot answer to the leader over
//! the cluster port. This crate wires parts together and holds no feature: it builds the
//! [`tepui_node::Node`] over its Raft and hands it to the features (tepui-master,
//! tepui-mesos-api, tepui-marathon), whose routes and drivers it only assembles. Its own API is
//! the cluster's (`/v1/status`, nodes, members, tokens, variables, snapshots, Raft peers) and
//! `/metrics`.

mod backups;
mod certs;
mod cluster;
mod failover;
mod forward;
mod history;
mod http;
mod metrics;
mod node;
mod peers;
mod raft_net;
mod recover;
mod tunnel;
mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use backups::BackupSettings;
pub use node::{Server, StartedAs, AUDIT_LOG};
pub use recover::{recover, Recovery, RemovedServer};
pub use tepui_transport::NetFilter;

/// How a server comes up when its data dir holds no identity yet.
#[derive(Clone, Debug)]
pub enum FirstStart {
    /// Create a new cluster with this server as its only voter.
    Bootstrap,
    /// Join an existing cluster through a server's cluster address with a server token.
    Join { addr: String, token: String },
    /// Refuse to start: the operator must say which of the two.
    Refuse,
}

#[derive(Clone, Debug)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub keep_behind_snapshot: u64,
}

impl Default for RaftTimings {
    /// A follower that stops hearing from the leader calls an election after the leader's lease
    /// (`election_max`) plus a random timeout in `election_min..election_max`: 1.2 to 1.6 s
    /// here, as etcd's 1 to 2 s. The heartbeat is also openraft's deadline for an AppendEntries
    /// answer, which waits for the follower's fsync, so it stays well above an fsync's time.
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(200),
            election_min: Duration::from_millis(400),
            election_max: Duration::from_millis(800),
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
        }
    }
}

impl RaftTimings {
    /// Fast timings for in-process tests on loopback.
    pub fn fast() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// The cluster port (gRPC over mTLS); port 0 picks a free one.
    pub cluster_listen: SocketAddr,
    /// The HTTP API; port 0 picks a free one.
    pub http_listen: SocketAddr,
    /// The IP other nodes reach this one on; defaults to the listen IP.
    pub advertise: Option<std::net::IpAddr>,
    pub first_start: FirstStart,
    pub raft: RaftTimings,
    /// An agent not heard from for this long is marked lost.
    pub agent_timeout: Duration,
    /// A deployment of services not done in this long rolls back.
    pub deployment_timeout: Duration,
    pub filter: NetFilter,
    /// How long the node certificates this server signs last, when it leads; nodes renew two
    /// thirds of the way through. A year by default; tests make it short.
    pub cert_lifetime: Duration,
    /// The management API token a new cluster starts with (`ACCESSOR.SECRET`), for
    /// automation that must know it in advance; none: a random one.
    pub bootstrap_api_token: Option<String>,
    /// Names callers may address the HTTP API by (the `Host` they send), besides IP
    /// addresses, localhost and the cluster's node names.
    pub api_hostnames: Vec<String>,
    /// The HTTPS certificate chain and key of the API (`--api-cert`, `--api-key`), PEM;
    /// none: the node's own certificate, signed by the cluster CA.
    pub api_cert: Option<ApiCert>,
    /// The cluster's DNS server (tepui-dns), on every server when set.
    pub dns: Option<DnsSettings>,
    /// Scheduled backups, written by this server while it leads.
    pub backups: Option<BackupSettings>,
}

/// Where and how a server answers DNS for the cluster.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// UDP and TCP, one port (5053 by default).
    pub listen: SocketAddr,
    /// The cluster domain (`mesos`).
    pub domain: String,
    /// The TTL of the domain's records, in seconds.
    pub ttl: u32,
    /// Where names outside the domain are asked; empty: the host's `/etc/resolv.conf`.
    pub upstreams: Vec<SocketAddr>,
    /// Mesos-DNS's HTTP API, on this port of the DNS's IP (8123 by default, as Mesos-DNS;
    /// 0: one the system picks); none: not served.
    pub http_port: Option<u16>,
}

impl DnsSettings {
    /// What the agents registering with this server are told of its DNS, bound at `bound`:
    /// the cleaned domain, and an address they can reach (the advertised IP when it listens
    /// on every address).
    pub(crate) fn for_agents(&self, bound: SocketAddr, advertise: std::net::IpAddr) -> tepui_proto::agent::ClusterDns {
        let ip = if bound.ip().is_unspecified() {
            advertise
        } else {
            bound.ip()
        };
        tepui_proto::agent::ClusterDns {
            domain: tepui_dns::Config::new(&self.domain, self.ttl, vec![]).domain,
            addr: SocketAddr::new(ip, bound.port()),
        }
    }
}

impl Server {
    /// Where this server's DNS answers for the cluster's nodes, when it serves DNS: an agent
    /// in the same process (`tepui dev`) points its tasks' resolver there.
    pub fn cluster_dns(&self) -> Option<tepui_proto::agent::ClusterDns> {
        self.inner.cluster_dns.get().cloned()
    }
}

/// An operator's certificate for the HTTPS API.
#[derive(Clone, Debug)]
pub struct ApiCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl ServerConfig {
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            name: name.into(),
            data_dir: data_dir.into(),
            cluster_listen: ([127, 0, 0, 1], 5052).into(),
            http_listen: ([127, 0, 0, 1], 5050).into(),
            advertise: None,
            first_start: FirstStart::Refuse,
            raft: RaftTimings::default(),
            agent_timeout: Duration::from_secs(15),
            deployment_timeout: Duration::from_secs(600),
            filter: NetFilter::default(),
            cert_lifetime: tepui_pki::NODE_VALIDITY,
            bootstrap_api_token: None,
            api_hostnames: Vec::new(),
            api_cert: None,
            dns: None,
            backups: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("identity")]
    Identity(#[from] tepui_transport::IdentityError),
    #[error("join failed")]
    Join(#[from] tepui_transport::JoinError),
    #[error("certificates")]
    Pki(#[from] tepui_pki::PkiError),
    #[error("raft storage")]
    Store(#[from] tepui_store::StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
