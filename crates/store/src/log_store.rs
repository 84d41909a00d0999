//! The Raft log (in `raft.wal`), and the vote, the committed and the purged log ids (in redb).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{Database, ReadableDatabase};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{blocking, encode, get_json, sto_err, StoreError, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, META};
use crate::wal::Wal;
use crate::{LogId, NodeId, TypeConfig};

/// How often the committed log id is written out (without an fsync of its own).
const COMMITTED_EVERY: Duration = Duration::from_secs(1);

/// How many of the last appended entries are kept decoded in memory.
const RECENT: usize = 256;

/// The log half of the store, handed to `Raft::new`. Clones share one database.
#[derive(Clone)]
pub struct LogStore {
    pub(crate) db: Arc<Database>,
    pub(crate) wal: Arc<Wal>,
    committed: Arc<Mutex<Committed>>,
    recent: Arc<Mutex<Recent>>,
    /// This server's id, once the server tells it ([`LogStore::of_node`]).
    local: Option<NodeId>,
    /// The vote last saved (or read at start).
    vote: Arc<Mutex<Option<Vote<NodeId>>>>,
}

/// The last entries appended, in order and without gaps, ending with the last log entry.
/// openraft reads every new entry right after appending it (to send it to each follower, and
/// to apply it once committed); from the file, each of those reads is a read and a decode.
#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry<TypeConfig>>,
}

impl Recent {
    /// The entries in `range` if all of them are here.
    fn get(&self, range: &impl RangeBounds<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.entries.front()?.log_id.index;
        let last = self.entries.back()?.log_id.index;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        // An open end means up to the last entry, which is the last one here.
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => last + 1,
        };
        if start < first || end > last + 1 {
            return None;
        }
        if start >= end {
            return Some(Vec::new());
        }
        let (from, to) = ((start - first) as usize, (end - first) as usize);
        Some(self.entries.range(from..to).cloned().collect())
    }

    fn appended(&mut self, entries: Vec<Entry<TypeConfig>>) {
        for entry in entries {
            let follows = self
                .entries
                .back()
                .is_none_or(|b| b.log_id.index + 1 == entry.log_id.index);
            if !follows {
                self.entries.clear();
            }
            self.entries.push_back(entry);
            if self.entries.len() > RECENT {
                self.entries.pop_front();
            }
        }
    }

    /// Forgets the entries at `since` and after (a truncation).
    fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= since) {
            self.entries.pop_back();
        }
    }

    /// Forgets the entries up to `upto` (a purge).
    fn purge(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= upto) {
            self.entries.pop_front();
        }
    }
}

/// The latest committed log id openraft reported, and when one was last written out.
#[derive(Default)]
struct Committed {
    latest: Option<LogId>,
    written_at: Option<Instant>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>, wal: Wal) -> Self {
        LogStore {
            db,
            wal: Arc::new(wal),
            committed: Arc::default(),
            recent: Arc::default(),
            local: None,
            vote: Arc::default(),
        }
    }

    /// Tells the store which server it belongs to: the appends of that server's own entries
    /// while it leads are then reported before their sync ends (see [`crate::wal`]).
    pub fn of_node(mut self, id: NodeId) -> Self {
        self.local = Some(id);
        self
    }

    /// Whether an append now is this server's own as the leader: its saved vote is a
    /// committed one for itself (a follower's vote names its leader).
    pub(crate) fn leading(&self) -> bool {
        let Some(local) = self.local else {
            return false;
        };
        let vote = self.vote.lock().unwrap_or_else(|e| e.into_inner());
        vote.as_ref()
            .is_some_and(|v| v.is_committed() && v.leader_id().voted_for() == Some(local))
    }

    /// One past the index of the last entry known to be on disk; changes as syncs end.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wal.durable()
    }

    /// `committed`, or the id of the last entry on disk if that comes first (`None` when the
    /// log no longer has it): what may be told as committed while the leader's own sync of
    /// later entries is still running.
    pub fn on_disk(&self, committed: Option<LogId>) -> Option<LogId> {
        let c = committed?;
        let durable = *self.wal.durable().borrow();
        if c.index < durable {
            return Some(c);
        }
        durable.checked_sub(1).and_then(|i| self.wal.log_id_at(i))
    }

    /// What the store measures (shared with its state machine half).
    pub fn stats(&self) -> Arc<crate::Stats> {
        self.wal.stats()
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        get_json(&table, key, key)
    }

    async fn write_meta<T: Serialize + ?Sized>(&self, key: &'static str, value: &T) -> Result<(), StoreError> {
        self.write_meta_with(key, value, redb::Durability::Immediate).await
    }

    async fn write_meta_with<T: Serialize + ?Sized>(
        &self,
        key: &'static str,
        value: &T,
        durability: redb::Durability,
    ) -> Result<(), StoreError> {
        let bytes = encode(key, value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Writes the latest committed log id openraft reported durably, for a server that stops:
    /// the hint is written at most once a second and without a sync of its own, and on the next
    /// start it says how much of the log to apply again (and `tepui operator recover` reports
    /// it).
    pub async fn flush_committed(&self) -> Result<(), StoreError> {
        let latest = self.committed.lock().unwrap_or_else(|e| e.into_inner()).latest;
        if latest.is_none() {
            return Ok(());
        }
        // The last appends may still be syncing: the hint never names an entry not on disk.
        let wal = self.wal.clone();
        blocking(move || wal.sync()).await?;
        self.write_meta(KEY_COMMITTED, &self.on_disk(latest)).await
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let from = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        self.wal.read(from, to)
    }

    pub(crate) fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let txn = self.db.begin_read()?;
        let last_purged_log_id: Option<LogId> = get_json(&txn.open_table(META)?, KEY_PURGED, "last purged log id")?;
        // With every log purged, the last log id is the last purged one.
        let last_log_id = self.wal.last_log_id().or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        if let Some(entries) = self.recent.lock().unwrap_or_else(|e| e.into_inner()).get(&range) {
            return Ok(entries);
        }
        self.read_range(range)
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state().map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_VOTE, vote)
            .await
            .map_err(sto_err(ErrorSubject::Vote, ErrorVerb::Write))?;
        *self.vote.lock().unwrap_or_else(|e| e.into_inner()) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let vote: Option<Vote<NodeId>> = self
            .read_meta(KEY_VOTE)
            .map_err(sto_err(ErrorSubject::Vote, ErrorVerb::Read))?;
        *self.vote.lock().unwrap_or_else(|e| e.into_inner()) = vote;
        Ok(vote)
    }

    // Persisting the committed log id lets openraft re-apply committed logs on start, so the
    // in-memory state machine is whole again before this server serves reads.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        // The committed id is a hint for replay after a restart, not a promise: openraft learns
        // it again from the leader (or, alone, by committing a new entry), and reads wait for
        // that. So it is written at most once a second, and without an fsync of its own (the
        // next append's durable commit carries it): a commit advances with every write, and a
        // redb commit per advance cost a thread hop and several page writes on every server.
        let due = {
            let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            c.latest = committed;
            let due = c.written_at.is_none_or(|t| t.elapsed() >= COMMITTED_EVERY);
            if due {
                c.written_at = Some(Instant::now());
            }
            due
        };
        if !due {
            return Ok(());
        }
        let committed = self.on_disk(committed);
        self.write_meta_with(KEY_COMMITTED, &committed, redb::Durability::None)
            .await
            .map_err(sto_err(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        if let Some(latest) = self.committed.lock().unwrap_or_else(|e| e.into_inner()).latest {
            return Ok(Some(latest));
        }
        let committed: Option<Option<LogId>> = self
            .read_meta(KEY_COMMITTED)
            .map_err(sto_err(ErrorSubject::Store, ErrorVerb::Read))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut rows = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes =
                encode("log entry", entry).map_err(sto_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write))?;
            rows.push((entry.log_id, bytes));
        }
        let (first, last) = (rows.first().map(|r| r.0.index), rows.last().map(|r| r.0.index));
        if self.leading() {
            // The leader's own entries: written now, synced while openraft sends them to the
            // followers. The leader counts itself at once; nothing acts on a commit before the
            // sync ends (the state machine waits for it, followers hear no later commit).
            match self.wal.write(&rows) {
                Ok(()) => {
                    self.recent.lock().unwrap_or_else(|e| e.into_inner()).appended(entries);
                    callback.log_io_completed(Ok(()));
                    self.wal.sync_soon();
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(error = %e, first = ?first, last = ?last, "cannot append logs");
                    callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                    return Err(sto_err(ErrorSubject::Logs, ErrorVerb::Write)(e));
                }
            }
        }
        let wal = self.wal.clone();
        // One write and one fdatasync: returns once the entries are on disk.
        let res = blocking(move || wal.append(&rows)).await;
        match res {
            Ok(()) => {
                tracing::trace!(first = ?first, last = ?last, "appended logs");
                // Before openraft hears of them, so that its first reads find them here.
                self.recent.lock().unwrap_or_else(|e| e.into_inner()).appended(entries);
                // Only now are the entries on disk, so only now may openraft count them.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, first = ?first, last = ?last, "cannot append logs");
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(sto_err(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(since = %log_id, "truncating logs");
        // Forgotten first: a read between the two must not find them here after the file lost them.
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncate(log_id.index);
        let wal = self.wal.clone();
        blocking(move || wal.truncate(log_id.index))
            .await
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(upto = %log_id, "purging logs");
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .purge(log_id.index);
        // Recorded durably first: the file's head is forgotten only after, and on a restart
        // entries up to the purged id are skipped.
        self.write_meta(KEY_PURGED, &log_id)
            .await
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Delete))?;
        let wal = self.wal.clone();
        blocking(move || wal.purge(log_id.index))
            .await
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
