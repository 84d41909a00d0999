//! `tepui operator recover`: a stopped server of a cluster that lost its quorum for good becomes
//! the only voter of its cluster, with everything its log holds, and the other servers leave
//! the replicated node list. The Raft side is `tepui_store::OfflineStore`; this is the policy
//! (which server, which nodes go) and the account of what may have been lost.

use std::path::Path;

use tepui_pki::Role;
use tepui_state::Command;
use tepui_store::OfflineStore;
use tepui_transport::Identity;

use crate::ServerError;

/// A server that is no longer part of the cluster after a recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedServer {
    pub id: u64,
    /// Empty when the state holds no record of it (it never finished joining).
    pub name: String,
    pub cluster_addr: String,
}

/// What a recovery did, and what it could not keep.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub node_id: u64,
    pub name: String,
    pub cluster_id: String,
    /// The last entry of the stored snapshot.
    pub snapshot_index: Option<u64>,
    /// The last entry this server knew to be committed, so applied (a hint it writes at most
    /// once a second: the truth may be a little further).
    pub committed_index: Option<u64>,
    /// The last entry of its log before the recovery. Entries after `committed_index` up to it
    /// were not known here to be committed; they are kept and committed now.
    pub last_log_index: Option<u64>,
    /// The servers removed from the membership and the node list.
    pub removed: Vec<RemovedServer>,
    /// The term it leads in; `None` when it already was the only voter and nothing was done.
    pub term: Option<u64>,
}

/// Makes the server of `data_dir` the only voter of its cluster. It must be stopped: the store
/// is locked while a server runs on it.
pub fn recover(data_dir: &Path) -> Result<Recovery, ServerError> {
    let identity = Identity::load(data_dir)?.ok_or_else(|| {
        ServerError::Config(format!(
            "{} holds no node identity: give the data dir of a server of the cluster",
            data_dir.display()
        ))
    })?;
    if identity.role != Role::Server {
        return Err(ServerError::Config(format!(
            "{} is an agent's data dir; recover runs on a server's",
            data_dir.display()
        )));
    }
    let store = OfflineStore::open(&data_dir.join("raft")).map_err(|e| {
        if e.is_already_open() {
            ServerError::Config(format!(
                "the Raft store in {} is in use: stop the server first",
                data_dir.display()
            ))
        } else {
            ServerError::Store(e)
        }
    })?;
    let seen = store.inspect()?;
    let me = identity.node_id;
    let mut removed: Vec<RemovedServer> = seen
        .membership
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, node)| RemovedServer {
            id: *id,
            name: String::new(),
            cluster_addr: node.addr.clone(),
        })
        .collect();
    // Servers the state lists but the membership does not (a join cut short) go too.
    for n in seen
        .state
        .nodes
        .values()
        .filter(|n| n.role == Role::Server && n.id != me)
    {
        match removed.iter_mut().find(|r| r.id == n.id) {
            Some(r) => r.name = n.name.clone(),
            None => removed.push(RemovedServer {
                id: n.id,
                name: n.name.clone(),
                cluster_addr: n.cluster_addr.clone(),
            }),
        }
    }
    removed.sort_by_key(|r| r.id);
    let alone = seen.membership.voter_ids().eq([me]) && seen.membership.learner_ids().next().is_none();
    let term = if alone && removed.is_empty() {
        None
    } else {
        let drop_records: Vec<Command> = removed
            .iter()
            .filter(|r| seen.state.nodes.contains_key(&r.id))
            .map(|r| Command::RemoveNode { id: r.id })
            .collect();
        Some(store.make_sole_voter(me, drop_records)?.term)
    };
    Ok(Recovery {
        node_id: me,
        name: identity.name,
        cluster_id: identity.cluster_id,
        snapshot_index: seen.snapshot.map(|l| l.index),
        committed_index: seen.committed.map(|l| l.index),
        last_log_index: seen.last_log.map(|l| l.index),
        removed,
        term,
    })
}
