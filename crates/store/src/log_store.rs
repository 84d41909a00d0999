//! The Raft log, the vote and the committed log id, in redb.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{
    blocking, decode, encode, get_json, sto_err, StoreError, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOGS, META,
};
use crate::{LogId, NodeId, TypeConfig};

/// How often the committed log id is written out (without an fsync of its own).
const COMMITTED_EVERY: Duration = Duration::from_secs(1);

/// How many of the last appended entries are kept decoded in memory.
const RECENT: usize = 256;

/// The log half of the store, handed to `Raft::new`. Clones share one database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    committed: Arc<Mutex<Committed>>,
    recent: Arc<Mutex<Recent>>,
}

/// The last entries appended, in order and without gaps, ending with the last log entry.
/// openraft reads every new entry right after appending it (to send it to each follower, and
/// to apply it once committed); from redb, each of those reads is a transaction and a decode.
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
    pub(crate) fn new(db: Arc<Database>) -> Self {
        LogStore {
            db,
            committed: Arc::default(),
            recent: Arc::default(),
        }
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

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let mut entries = Vec::new();
        for item in table.range(range)? {
            let (_, value) = item?;
            entries.push(decode("log entry", value.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let txn = self.db.begin_read()?;
        let last_purged_log_id: Option<LogId> = get_json(&txn.open_table(META)?, KEY_PURGED, "last purged log id")?;
        let last = match txn.open_table(LOGS)?.last()? {
            Some((_, value)) => Some(decode::<Entry<TypeConfig>>("log entry", value.value())?.log_id),
            None => None,
        };
        // With every log purged, the last log id is the last purged one.
        let last_log_id = last.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Deletes the logs in `range` and, for a purge, records how far it went, in one commit.
    async fn delete_logs(
        &self,
        range: (std::ops::Bound<u64>, std::ops::Bound<u64>),
        purged: Option<LogId>,
    ) -> Result<(), StoreError> {
        let purged = purged.map(|p| encode("last purged log id", &p)).transpose()?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut logs = txn.open_table(LOGS)?;
                logs.retain_in::<u64, _>(range, |_, _| false)?;
                if let Some(bytes) = purged {
                    txn.open_table(META)?.insert(KEY_PURGED, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
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
            .map_err(sto_err(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE)
            .map_err(sto_err(ErrorSubject::Vote, ErrorVerb::Read))
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
            rows.push((entry.log_id.index, bytes));
        }
        let (first, last) = (rows.first().map(|r| r.0), rows.last().map(|r| r.0));
        let db = self.db.clone();
        let res = blocking(move || {
            if rows.is_empty() {
                return Ok(());
            }
            let txn = db.begin_write()?;
            {
                let mut logs = txn.open_table(LOGS)?;
                for (index, bytes) in &rows {
                    logs.insert(*index, bytes.as_slice())?;
                }
            }
            // Durability::Immediate (redb's default): commit returns after the fsync.
            txn.commit()?;
            Ok(())
        })
        .await;
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
        // Forgotten first: a read between the two must not find them here after redb lost them.
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncate(log_id.index);
        let range = (Bound::Included(log_id.index), Bound::Unbounded);
        self.delete_logs(range, None)
            .await
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(upto = %log_id, "purging logs");
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .purge(log_id.index);
        let range = (Bound::Unbounded, Bound::Included(log_id.index));
        self.delete_logs(range, Some(log_id))
            .await
            .map_err(sto_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
