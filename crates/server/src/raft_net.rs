//! openraft's network: Raft RPCs as JSON payloads over the cluster port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tepui_proto::RaftPayload;
use tepui_store::{LogStore, TypeConfig};
use tokio::sync::watch;

use crate::peers::Peers;
use crate::versions::PeerVersions;

pub(crate) struct Network {
    peers: Peers,
    seen: Arc<Mutex<HashMap<u64, Instant>>>,
    versions: PeerVersions,
    log: LogStore,
    held: CommitHeld,
}

impl Network {
    pub fn new(
        peers: Peers,
        seen: Arc<Mutex<HashMap<u64, Instant>>>,
        versions: PeerVersions,
        log: LogStore,
        held: CommitHeld,
    ) -> Network {
        Network {
            peers,
            seen,
            versions,
            log,
            held,
        }
    }
}

/// A commit index the leader held back from its followers because its own sync of the entry
/// was still running (see `tepui_store`'s log): once the sync ends, a heartbeat tells it.
#[derive(Clone, Default)]
pub(crate) struct CommitHeld {
    /// One past the held index (0: none).
    until: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
}

impl CommitHeld {
    fn hold(&self, index: u64) {
        self.until.fetch_max(index + 1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// Sends a heartbeat (which carries the commit index) once the leader's log is on disk past
/// a commit index it held back.
pub(crate) async fn send_held_commits(raft: tepui_store::Raft, mut durable: watch::Receiver<u64>, held: CommitHeld) {
    loop {
        held.notify.notified().await;
        let until = held.until.load(Ordering::Acquire);
        if until == 0 {
            continue;
        }
        if durable.wait_for(|next| *next >= until).await.is_err() {
            return;
        }
        let _ = held
            .until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire);
        if raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerConn {
        PeerConn {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            seen: self.seen.clone(),
            versions: self.versions.clone(),
            log: self.log.clone(),
            held: self.held.clone(),
        }
    }
}

pub(crate) struct PeerConn {
    target: u64,
    addr: String,
    peers: Peers,
    seen: Arc<Mutex<HashMap<u64, Instant>>>,
    versions: PeerVersions,
    log: LogStore,
    held: CommitHeld,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Snapshot,
    Vote,
}

impl PeerConn {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if !self.peers.admit(self.target).await {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "dropped by the network filter");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(timeout);
        crate::versions::tell(request.metadata_mut());
        let mut client = self.peers.client(&self.addr);
        let answer = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
            Rpc::Vote => client.vote(request).await,
        };
        let payload = match answer {
            Ok(r) => {
                // Every answer says what the peer speaks (0.1.0's say nothing).
                self.versions.heard(self.target, crate::versions::told(r.metadata()));
                r.into_inner()
            }
            Err(status) => {
                let e = std::io::Error::other(tepui_transport::status_message(&status));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&e))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.target, Instant::now());
        let result: Result<Resp, E> =
            serde_json::from_slice(&payload.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        // The leader counts its own entries before their sync ends; no follower may apply one
        // before it is on the leader's disk too.
        let committed = rpc.leader_commit;
        rpc.leader_commit = self.log.on_disk(committed);
        if let Some(c) = committed.filter(|c| Some(*c) != rpc.leader_commit) {
            self.held.hold(c.index);
        }
        self.call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
