//! The redb tables, the JSON codec and the mapping of failures onto openraft's error types.

use std::path::PathBuf;

use openraft::{ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::NodeId;

/// Log entries by index, each a JSON-encoded `openraft::Entry`: where earlier versions kept the
/// log; moved to `raft.wal` on open.
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Small records of the log store: vote, committed and last purged log ids (JSON).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The current snapshot: its meta (JSON), its bytes, and the counter behind snapshot ids.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "last_purged";
/// The format of what the store holds (absent: 0.1.0's, format 1).
pub(crate) const KEY_FORMAT: &str = "format";
pub(crate) const KEY_SNAP_META: &str = "meta";
pub(crate) const KEY_SNAP_DATA: &str = "data";
pub(crate) const KEY_SNAP_SEQ: &str = "seq";

/// Everything that can go wrong inside the store.
///
/// Towards openraft these become `StorageError`s naming what failed; `open` returns them as is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the raft database {path} (is another tepui process using this data directory?): {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("raft database: {0}")]
    Db(#[from] redb::Error),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot decode {what} (the raft database may be corrupt or from an incompatible version): {source}")]
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("raft log file")]
    Wal(#[source] std::io::Error),
    #[error("{0}")]
    Recover(String),
    #[error("the {what} is in format {found}, written by a newer tepui; this one ({release}) reads formats up to {supported}: run the newer release on this data dir (going back to an older release is not supported)", release = tepui_common::version::RELEASE, supported = crate::FORMAT)]
    TooNew { what: &'static str, found: u32 },
}

impl StoreError {
    /// The database is held by another `open` that is still alive: another process, or in this
    /// process a Raft whose tasks have not all ended yet (openraft's state machine worker drops
    /// its half a moment after `Raft::shutdown` returns, so an in-process restart should retry).
    pub fn is_already_open(&self) -> bool {
        matches!(
            self,
            StoreError::Open {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                ..
            }
        )
    }
}

// redb has one error type per operation; all of them fold into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::DatabaseError
);

pub(crate) fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// Reads and decodes one JSON record of a string-keyed table.
pub(crate) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(guard) => decode(what, guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Runs a write (which ends in an fsync) off the async worker threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Maps a store failure to the `StorageError` openraft expects, naming what failed and how.
pub(crate) fn sto_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StoreError) -> StorageError<NodeId> {
    move |e| StorageIOError::new(subject, verb, &e).into()
}
