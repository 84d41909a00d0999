//! Durable Raft storage for tepui servers.
//!
//! The Raft log is an append-only file, `<data dir>/raft.wal`: an append is one write and one
//! `fdatasync`. One redb file, `<data dir>/raft.redb`, holds the vote, the purged and committed
//! log ids and the latest snapshot, each write a commit with `Durability::Immediate` (fsync before
//! it returns) except the committed id's, a hint. What openraft was told is stored survives
//! `kill -9` and power loss.
//!
//! The replicated [`tepui_state::State`] lives in memory behind [`StateMachineStore`]; on
//! [`open`] it starts from the latest stored snapshot, and openraft re-applies the committed logs
//! after it (the committed log id is persisted for that). [`StateReader`] gives the API layer
//! read access and a watch of the applied index.
//!
//! [`OfflineStore`] is for a stopped server only: it reads what the store holds and makes the
//! server the only voter of its cluster (recovery from a lost quorum).
//!
//! This crate does not know about the network, cluster membership policy or the meaning of
//! commands: it stores entries, applies them with `State::apply`, and snapshots the result.

mod db;
mod log_store;
mod recover;
mod state_machine;
mod stats;
#[cfg(test)]
mod tests;
mod wal;

use std::path::Path;
use std::sync::Arc;

pub use db::StoreError;
pub use log_store::LogStore;
pub use openraft::BasicNode;
pub use recover::{Forced, Inspection, OfflineStore};
pub use state_machine::{DetachedState, StateMachineStore, StateReader};
pub use stats::Stats;

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
pub type LogId = openraft::LogId<NodeId>;

/// The format of the stored records this release writes: the log's entries, the vote and
/// the other log ids, and snapshots. 0.1.0 wrote format 1 and said nothing (so absent means
/// 1); format 2 (0.2.0) is 1 with the format said, in the database and in each snapshot, and
/// a log that may hold commands of cluster protocol 2 once every server speaks it. A store of
/// a newer format than this is refused at open.
pub const FORMAT: u32 = 2;

/// The format of a store or snapshot that says none: 0.1.0's.
pub const LEGACY_FORMAT: u32 = 1;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "raft.redb";

/// Opens (creating if needed) `<dir>/raft.redb` and returns the two storage halves for openraft.
///
/// The file is locked while any half (or a clone of one) is alive: a second `open` of the same
/// directory, in this process or another, fails with [`StoreError::Open`].
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    // The state holds the cluster CA's key: the directory and its files are the owner's only,
    // whatever the umask.
    let private_dir = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    };
    private_dir().map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    // `create` opens an existing database (recovering it after a crash) or makes a new one.
    let db = redb::Database::create(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        StoreError::CreateDir {
            path: path.clone(),
            source,
        }
    })?;

    // Create every table up front so that read transactions never meet a missing one.
    let txn = db.begin_write()?;
    txn.open_table(db::LOGS)?;
    txn.open_table(db::META)?;
    txn.open_table(db::SNAPSHOT)?;
    txn.commit()?;

    check_format(&db)?;
    migrate_log(dir, &db)?;
    let purged: Option<LogId> = {
        let txn = redb::ReadableDatabase::begin_read(&db)?;
        db::get_json(&txn.open_table(db::META)?, db::KEY_PURGED, "last purged log id")?
    };
    let stats = Arc::new(Stats::default());
    let wal = wal::Wal::open(dir, purged.map(|p| p.index), stats.clone())?;

    let db = Arc::new(db);
    let log = LogStore::new(db.clone(), wal);
    let sm = StateMachineStore::load(db, stats)?.wait_for_log_sync(log.durable());
    tracing::info!(path = %path.display(), "opened raft store");
    Ok((log, sm))
}

/// Refuses a store of a newer format than this release reads, and records this release's
/// format in an older one (whose records it reads as they are).
fn check_format(db: &redb::Database) -> Result<(), StoreError> {
    let found: Option<u32> = {
        let txn = redb::ReadableDatabase::begin_read(db)?;
        db::get_json(&txn.open_table(db::META)?, db::KEY_FORMAT, "store format")?
    };
    let found = found.unwrap_or(LEGACY_FORMAT);
    if found > FORMAT {
        return Err(StoreError::TooNew {
            what: "raft store",
            found,
        });
    }
    if found < FORMAT {
        let txn = db.begin_write()?;
        txn.open_table(db::META)?
            .insert(db::KEY_FORMAT, db::encode("store format", &FORMAT)?.as_slice())?;
        txn.commit()?;
        tracing::info!(from = found, to = FORMAT, "raft store format recorded");
    }
    Ok(())
}

/// Moves a log kept in redb by an earlier version into `raft.wal`. The file appears whole (a
/// rename), and only then are the redb rows deleted: a crash in between leaves both, and the
/// file wins.
fn migrate_log(dir: &Path, db: &redb::Database) -> Result<(), StoreError> {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let rows = {
        let txn = db.begin_read()?;
        let logs = txn.open_table(db::LOGS)?;
        if logs.is_empty()? {
            return Ok(());
        }
        let mut rows = Vec::new();
        if !dir.join(wal::WAL_FILE).exists() {
            for item in redb::ReadableTable::iter(&logs)? {
                let (_, value) = item?;
                let entry: openraft::Entry<TypeConfig> = db::decode("log entry", value.value())?;
                rows.push((entry.log_id, value.value().to_vec()));
            }
        }
        rows
    };
    if !rows.is_empty() {
        wal::Wal::create_with(dir, &rows)?;
        tracing::info!(entries = rows.len(), "moved the raft log from redb to its own file");
    }
    let txn = db.begin_write()?;
    txn.delete_table(db::LOGS)?;
    txn.open_table(db::LOGS)?;
    txn.commit()?;
    Ok(())
}
