//! The applied state, in memory, and its snapshots, in redb.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};
use tepui_state::{Response, State};
use tokio::sync::watch;

use crate::db::{
    blocking, decode, encode, get_json, sto_err, StoreError, KEY_SNAP_DATA, KEY_SNAP_META, KEY_SNAP_SEQ, SNAPSHOT,
};
use crate::{BasicNode, LogId, NodeId, TypeConfig};

pub(crate) type Membership = StoredMembership<NodeId, BasicNode>;
pub(crate) type Meta = SnapshotMeta<NodeId, BasicNode>;

/// What the state machine holds; also exactly what a snapshot's bytes encode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The snapshot's format ([`crate::FORMAT`] when built; absent in 0.1.0's, which is 1).
    /// Meaningful in encoded snapshots only.
    #[serde(default = "legacy_format")]
    pub(crate) format: u32,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: Membership,
    pub(crate) state: State,
}

fn legacy_format() -> u32 {
    crate::LEGACY_FORMAT
}

/// Decodes a snapshot's bytes, refusing one of a newer format than this binary reads.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<Applied, StoreError> {
    let applied: Applied = decode("snapshot", bytes)?;
    if applied.format > crate::FORMAT {
        return Err(StoreError::TooNew {
            what: "snapshot",
            found: applied.format,
        });
    }
    Ok(applied)
}

/// The in-memory state and the watch of its applied index, shared by the store and its readers.
struct Shared {
    applied: RwLock<Applied>,
    index_tx: watch::Sender<u64>,
}

impl Shared {
    // `State::apply` does not panic by contract; if something did, the state is still the
    // last consistent one we wrote, so a poisoned lock is read through rather than propagated.
    fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The state machine half of the store, handed to `Raft::new`. Clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    shared: Arc<Shared>,
    /// The last number used in a snapshot id; persisted with each snapshot so ids stay unique
    /// across restarts.
    snapshot_seq: Arc<AtomicU64>,
    stats: Arc<crate::Stats>,
    /// How far the log is on disk (one past the last index); an entry is applied only once
    /// it is there. `None`: the log's syncs are not to be waited for.
    durable: Option<watch::Receiver<u64>>,
}

/// Read access to the applied state for the API layer; cheap to clone.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

impl StateReader {
    /// Runs `f` on the applied state under a read lock; keep `f` short, applies wait for it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.read().state)
    }

    /// The index of the last log applied (0 before any).
    pub fn applied_index(&self) -> u64 {
        *self.shared.index_tx.borrow()
    }

    /// Resolves once the state machine has applied `index` or more.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.shared.index_tx.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    /// A watch receiver of the applied index, for loops that react to every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.index_tx.subscribe()
    }
}

/// A state that no Raft log feeds: commands are applied to it directly. For tests of code
/// that reads and writes through a node without running a cluster.
pub struct DetachedState {
    shared: Arc<Shared>,
}

impl DetachedState {
    pub fn new(state: State) -> DetachedState {
        DetachedState {
            shared: Arc::new(Shared {
                applied: RwLock::new(Applied {
                    state,
                    ..Applied::default()
                }),
                index_tx: watch::Sender::new(0),
            }),
        }
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }

    /// Applies one command as the next log entry and publishes the new applied index.
    pub fn apply(&self, cmd: &tepui_state::Command) -> Response {
        let index = *self.shared.index_tx.borrow() + 1;
        let answer = self.shared.write().state.apply(index, cmd);
        self.shared.index_tx.send_replace(index);
        answer
    }
}

impl StateMachineStore {
    /// Builds the state machine from the latest stored snapshot, or empty when there is none.
    pub(crate) fn load(db: Arc<Database>, stats: Arc<crate::Stats>) -> Result<Self, StoreError> {
        let txn = db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let seq: u64 = get_json(&table, KEY_SNAP_SEQ, "snapshot counter")?.unwrap_or(0);
        let applied = match table.get(KEY_SNAP_DATA)? {
            Some(data) => {
                stats.snapshot_bytes.set(data.value().len() as i64);
                decode_snapshot(data.value())?
            }
            None => Applied::default(),
        };
        drop(table);
        drop(txn);
        let index = applied.last_applied.map_or(0, |l| l.index);
        tracing::info!(
            last_applied = ?applied.last_applied,
            membership = ?applied.last_membership.membership(),
            "state machine loaded from snapshot"
        );
        let shared = Shared {
            applied: RwLock::new(applied),
            index_tx: watch::Sender::new(index),
        };
        Ok(StateMachineStore {
            db,
            shared: Arc::new(shared),
            snapshot_seq: Arc::new(AtomicU64::new(seq)),
            stats,
            durable: None,
        })
    }

    /// Applies entries as they come, whatever the log says: for openraft's storage suite,
    /// which applies entries that were never appended.
    #[cfg(test)]
    pub(crate) fn without_log_sync(mut self) -> Self {
        self.durable = None;
        self
    }

    /// Applies entries only once the log says they are on disk (see [`crate::wal`]).
    pub(crate) fn wait_for_log_sync(mut self, durable: watch::Receiver<u64>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// A copy of what the state machine holds: right after [`crate::open`], the stored
    /// snapshot's.
    pub(crate) fn applied_copy(&self) -> Applied {
        self.shared.read().clone()
    }

    /// A reader of the applied state for the API layer.
    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }

    fn publish_applied(&self, last_applied: Option<LogId>) {
        // send_replace: the value must change even when nobody subscribes yet.
        self.shared.index_tx.send_replace(last_applied.map_or(0, |l| l.index));
    }

    /// Stores a snapshot durably unless a newer one is already stored (a build may finish after
    /// an install it raced with). Returns whether it was stored.
    pub(crate) async fn persist_snapshot(&self, meta: &Meta, data: Vec<u8>) -> Result<bool, StoreError> {
        let meta_bytes = encode("snapshot meta", meta)?;
        let last_log_id = meta.last_log_id;
        let seq = self.snapshot_seq.load(Ordering::SeqCst);
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            let stored = {
                let mut table = txn.open_table(SNAPSHOT)?;
                let current: Option<Meta> = get_json(&table, KEY_SNAP_META, "snapshot meta")?;
                let superseded = current.is_some_and(|c| c.last_log_id > last_log_id);
                if !superseded {
                    table.insert(KEY_SNAP_META, meta_bytes.as_slice())?;
                    table.insert(KEY_SNAP_DATA, data.as_slice())?;
                }
                let stored_seq: u64 = get_json(&table, KEY_SNAP_SEQ, "snapshot counter")?.unwrap_or(0);
                if seq > stored_seq {
                    table.insert(KEY_SNAP_SEQ, encode("snapshot counter", &seq)?.as_slice())?;
                }
                !superseded
            };
            txn.commit()?;
            Ok(stored)
        })
        .await
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let meta: Option<Meta> = get_json(&table, KEY_SNAP_META, "snapshot meta")?;
        let (Some(meta), Some(data)) = (meta, table.get(KEY_SNAP_DATA)?) else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.value().to_vec())),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let started = std::time::Instant::now();
        // Clone under the lock and encode outside it, so applies are held up only by the copy.
        let mut applied = self.shared.read().clone();
        applied.format = crate::FORMAT;
        let data = encode("snapshot", &applied).map_err(sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (term, index) = applied.last_applied.map_or((0, 0), |l| (l.leader_id.term, l.index));
        let meta = Meta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id: format!("{term}-{index}-{seq}"),
        };
        let stored = self.persist_snapshot(&meta, data.clone()).await.map_err(sto_err(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Write,
        ))?;
        self.stats.snapshot_build.observe(started.elapsed());
        self.stats.snapshot_bytes.set(data.len() as i64);
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), stored, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if let (Some(durable), Some(last)) = (self.durable.as_mut(), entries.last().map(|e| e.log_id)) {
            if durable.wait_for(|next| *next > last.index).await.is_err() {
                return Err(StorageError::from_io_error(
                    ErrorSubject::Apply(last),
                    ErrorVerb::Write,
                    std::io::Error::other("the raft log is closed"),
                ));
            }
        }
        let mut replies = Vec::new();
        let last_applied = {
            let mut applied = self.shared.write();
            for entry in entries {
                let log_id = entry.log_id;
                applied.last_applied = Some(log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => Response::Ok,
                    EntryPayload::Normal(cmd) => {
                        let reply = applied.state.apply(log_id.index, &cmd);
                        tracing::debug!(
                            index = log_id.index,
                            kind = cmd.kind(),
                            rejected = matches!(reply, Response::Rejected(_)),
                            "applied command"
                        );
                        reply
                    }
                    EntryPayload::Membership(m) => {
                        applied.last_membership = StoredMembership::new(Some(log_id), m);
                        Response::Ok
                    }
                };
                replies.push(reply);
            }
            applied.last_applied
        };
        // Published after the lock is released, so a woken reader sees the new state.
        self.publish_applied(last_applied);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let body = decode_snapshot(&data).map_err(sto_err(subject(), ErrorVerb::Read))?;
        let bytes = data.len();
        // Durable first: if this fails, the in-memory state is left as it was.
        self.persist_snapshot(meta, data)
            .await
            .map_err(sto_err(subject(), ErrorVerb::Write))?;
        {
            let mut applied = self.shared.write();
            // openraft's meta is authoritative for where the snapshot stands in the log.
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership.clone();
            applied.state = body.state;
        }
        self.publish_applied(meta.last_log_id);
        self.stats.snapshot_bytes.set(bytes as i64);
        self.stats.snapshots_installed.inc();
        tracing::info!(snapshot_id = %meta.snapshot_id, last_log_id = ?meta.last_log_id, bytes, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot()
            .map_err(sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}
