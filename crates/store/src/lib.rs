//! Durable Raft storage for tepui servers.
//!
//! One redb file, `<data dir>/raft.redb`, holds the Raft log, the vote, the committed log id and
//! the latest snapshot. Every write is a redb commit with `Durability::Immediate` (fsync before it
//! returns), so what openraft was told is stored survives `kill -9` and power loss.
//!
//! The replicated [`tepui_state::State`] lives in memory behind [`StateMachineStore`]; on
//! [`open`] it starts from the latest stored snapshot, and openraft re-applies the committed logs
//! after it (the committed log id is persisted for that). [`StateReader`] gives the API layer
//! read access and a watch of the applied index.
//!
//! This crate does not know about the network, cluster membership policy or the meaning of
//! commands: it stores entries, applies them with `State::apply`, and snapshots the result.

mod db;
mod log_store;
mod state_machine;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub use db::StoreError;
pub use log_store::LogStore;
pub use openraft::BasicNode;
pub use state_machine::{DetachedState, StateMachineStore, StateReader};

openraft::declare_raft_types!(
    /// openraft's type configuration for tepui.
    pub TypeConfig:
        D = tepui_state::Command,
        R = tepui_state::Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub(crate) type LogId = openraft::LogId<NodeId>;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "raft.redb";

/// Opens (creating if needed) `<dir>/raft.redb` and returns the two storage halves for openraft.
///
/// The file is locked while any half (or a clone of one) is alive: a second `open` of the same
/// directory, in this process or another, fails with [`StoreError::Open`].
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    // `create` opens an existing database (recovering it after a crash) or makes a new one.
    let db = redb::Database::create(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;

    // Create every table up front so that read transactions never meet a missing one.
    let txn = db.begin_write()?;
    txn.open_table(db::LOGS)?;
    txn.open_table(db::META)?;
    txn.open_table(db::SNAPSHOT)?;
    txn.commit()?;

    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone())?;
    tracing::info!(path = %path.display(), "opened raft store");
    Ok((LogStore::new(db), sm))
}
