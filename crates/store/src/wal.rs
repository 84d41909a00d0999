//! The Raft log entries in an append-only file, `raft.wal`.
//!
//! An append is one positioned write at the end of the file and one `fdatasync`. The file is
//! extended ahead of the writes with zeros (and synced) by a background thread, so that an
//! append's sync flushes the new bytes only, not a new file size or newly allocated blocks; a
//! redb commit writes and syncs about seven pages spread over its file.
//!
//! A record is `len: u32`, `crc32: u32` (of the index and the payload), `index: u64`, then `len`
//! bytes of JSON (an `openraft::Entry`), little-endian. Records follow each other with
//! consecutive indexes. Opening reads the file from the start and stops at the first record that
//! is not whole, not intact or not the next index (zeros, a write cut short by a crash); the
//! file is cut there, so that nothing after it can ever be read as a record.
//!
//! A leader's appends are written without waiting for their sync ([`Wal::write`], then
//! [`Wal::sync_soon`]): the sync runs while the entries travel to the followers, as in etcd
//! (Raft thesis, 10.2.1). [`Wal::durable`] tells how far the file is known to be on disk; the
//! state machine applies an entry only once it is, and the leader tells followers no commit
//! index beyond it, so nothing acts on an entry a crash could still take from the leader.
//!
//! A truncation cuts the file at the first removed record. A purge only forgets records in
//! memory (the store records the purged id durably); once the forgotten head of the file is
//! large, the live records are copied to a new file that replaces the old one by a rename.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::Entry;

use crate::db::{decode, StoreError};
use crate::{LogId, TypeConfig};

pub(crate) const WAL_FILE: &str = "raft.wal";
const HEADER: usize = 16;
/// Zeros written ahead of the records at a time.
const EXTEND_BY: u64 = 4 << 20;
/// Copy the live records to a new file once this much of the file's head is purged.
const COMPACT_AT: u64 = 32 << 20;
/// No single entry is this large; a longer length is damage.
const MAX_RECORD: u32 = 1 << 30;

/// Where each entry in the file is.
#[derive(Clone, Copy)]
struct Slot {
    log_id: LogId,
    offset: u64,
    len: u64,
}

struct Index {
    file: Arc<File>,
    slots: BTreeMap<u64, Slot>,
}

/// The write side: only openraft's log I/O, which runs one operation at a time, takes it.
struct Tail {
    /// Where the next record goes.
    end: u64,
    /// The file's length: zeros from `end` up to it.
    len: u64,
    /// One past the index of the last entry written.
    next: u64,
}

/// How much of the log is on disk, and the sync that is wanted or running.
struct Durability {
    /// Changes with every truncation: a sync that began before one vouches for nothing after.
    epoch: u64,
    /// A sync should cover the entries below this.
    wanted: u64,
    /// A background sync runs.
    syncing: bool,
}

pub(crate) struct Wal {
    dir: PathBuf,
    index: RwLock<Index>,
    tail: Mutex<Tail>,
    /// The thread writing the next zeros past `Tail::len`, if one runs; it returns the new
    /// length. Nothing else writes past `Tail::len` before it has been joined.
    extender: Mutex<Option<std::thread::JoinHandle<Result<u64, StoreError>>>>,
    durability: Mutex<Durability>,
    /// One past the index of the last entry known to be on disk.
    durable: tokio::sync::watch::Sender<u64>,
    stats: Arc<crate::Stats>,
}

/// Writes `EXTEND_BY` zeros at `from` and syncs them; returns the new length.
fn extend(file: &File, from: u64) -> Result<u64, StoreError> {
    let zeros = vec![0u8; EXTEND_BY as usize];
    file.write_all_at(&zeros, from).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(from + EXTEND_BY)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Wal(e)
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn record(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER + payload.len());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&checksum(index, payload).to_le_bytes());
    r.extend_from_slice(&index.to_le_bytes());
    r.extend_from_slice(payload);
    r
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Reads the valid records at the start of `bytes`; returns them and where they end.
fn scan(bytes: &[u8]) -> (Vec<(Slot, Entry<TypeConfig>)>, u64) {
    let mut found = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let word = |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().expect("4 bytes"));
        let (len, crc) = (word(0), word(4));
        let index = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        if len == 0 || len > MAX_RECORD || bytes.len() - at - HEADER < len as usize {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len as usize];
        if checksum(index, payload) != crc {
            break;
        }
        let Ok(entry) = decode::<Entry<TypeConfig>>("log entry", payload) else {
            break;
        };
        let follows = found
            .last()
            .is_none_or(|(s, _): &(Slot, _)| s.log_id.index + 1 == index);
        if entry.log_id.index != index || !follows {
            break;
        }
        let slot = Slot {
            log_id: entry.log_id,
            offset: at as u64,
            len: (HEADER + len as usize) as u64,
        };
        found.push((slot, entry));
        at += HEADER + len as usize;
    }
    (found, at as u64)
}

/// A new file (truncated if it exists) only its owner can read: the log holds every secret of
/// the state.
fn create_private(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)
}

impl Wal {
    /// Opens `dir/raft.wal`, creating it when absent. Entries up to `purged` are forgotten.
    pub(crate) fn open(dir: &Path, purged: Option<u64>, stats: Arc<crate::Stats>) -> Result<Wal, StoreError> {
        let path = dir.join(WAL_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if !existed {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (found, end) = scan(&bytes);
        if end < bytes.len() as u64 {
            if bytes[end as usize..].iter().any(|b| *b != 0) {
                tracing::warn!(
                    at = end,
                    "the raft log ends in an incomplete record (a write cut short); dropping it"
                );
            }
            // Nothing past the last good record may be read as one later.
            file.set_len(end).map_err(io)?;
        }
        // A process killed between a write and its sync left the write in the page cache:
        // what is read back now is made durable before anything counts on it.
        file.sync_data().map_err(io)?;
        let next = found.last().map_or(0, |(s, _)| s.log_id.index + 1);
        let slots = found
            .into_iter()
            .filter(|(s, _)| purged.is_none_or(|p| s.log_id.index > p))
            .map(|(s, _)| (s.log_id.index, s))
            .collect();
        Ok(Wal {
            dir: dir.to_path_buf(),
            index: RwLock::new(Index {
                file: Arc::new(file),
                slots,
            }),
            tail: Mutex::new(Tail { end, len: end, next }),
            extender: Mutex::new(None),
            durability: Mutex::new(Durability {
                epoch: 0,
                wanted: next,
                syncing: false,
            }),
            durable: tokio::sync::watch::channel(next).0,
            stats: {
                stats.log_bytes.set(end as i64);
                stats
            },
        })
    }

    /// Waits for the background extension, if any, and takes its result.
    fn join_extender(&self, tail: &mut Tail, wait: bool) {
        let mut slot = self.extender.lock().unwrap_or_else(|e| e.into_inner());
        if !wait && !slot.as_ref().is_some_and(|h| h.is_finished()) {
            return;
        }
        if let Some(handle) = slot.take() {
            match handle.join() {
                Ok(Ok(len)) => tail.len = tail.len.max(len),
                // The next append extends the file itself, and reports what goes wrong.
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot extend the raft log ahead of time"),
                Err(_) => tracing::warn!("the thread extending the raft log panicked"),
            }
        }
    }

    /// Starts extending the file in the background when little zeroed room is left.
    fn extend_ahead(&self, tail: &Tail, file: &Arc<File>) {
        if tail.len - tail.end >= EXTEND_BY / 2 {
            return;
        }
        let mut slot = self.extender.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let (file, from) = (file.clone(), tail.len);
        let spawned = std::thread::Builder::new()
            .name("raft-log-extend".into())
            .spawn(move || extend(&file, from));
        match spawned {
            Ok(handle) => *slot = Some(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start a thread to extend the raft log"),
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> Arc<crate::Stats> {
        self.stats.clone()
    }

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the last entry, if any is left.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.read_index().slots.values().next_back().map(|s| s.log_id)
    }

    /// The entries with indexes in `from..to`, in order.
    pub(crate) fn read(&self, from: u64, to: u64) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        // Held while reading, so that a truncation cannot cut the file under the read.
        let index = self.read_index();
        let mut entries = Vec::new();
        for slot in index.slots.range(from..to).map(|(_, s)| *s) {
            let mut buf = vec![0u8; slot.len as usize];
            index.file.read_exact_at(&mut buf, slot.offset).map_err(io)?;
            entries.push(decode("log entry", &buf[HEADER..])?);
        }
        Ok(entries)
    }

    /// Writes the entries, with their encodings, after the last one and syncs them.
    pub(crate) fn append(&self, entries: &[(LogId, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(entries)?;
        self.sync()
    }

    /// Writes the entries after the last one, without waiting for them to reach the disk
    /// ([`Wal::sync`] or [`Wal::sync_soon`] does); reads find them at once.
    pub(crate) fn write(&self, entries: &[(LogId, Vec<u8>)]) -> Result<(), StoreError> {
        let Some((last, _)) = entries.last() else {
            return Ok(());
        };
        let mut tail = self.lock_tail();
        let mut buf = Vec::new();
        let mut slots = Vec::with_capacity(entries.len());
        for (log_id, payload) in entries {
            let r = record(log_id.index, payload);
            slots.push(Slot {
                log_id: *log_id,
                offset: tail.end + buf.len() as u64,
                len: r.len() as u64,
            });
            buf.extend_from_slice(&r);
        }
        let file = self.read_index().file.clone();
        let new_end = tail.end + buf.len() as u64;
        let short = new_end > tail.len;
        self.join_extender(&mut tail, short);
        if new_end > tail.len {
            // Not extended in time (or a very large append): zeros up to a whole step past the
            // records, with the length, go to disk with this append's sync.
            let len = new_end.div_ceil(EXTEND_BY) * EXTEND_BY;
            let zeros = vec![0u8; (len - tail.len) as usize];
            file.write_all_at(&zeros, tail.len).map_err(io)?;
            tail.len = len;
        }
        file.write_all_at(&buf, tail.end).map_err(io)?;
        tail.end = new_end;
        tail.next = last.index + 1;
        self.stats.log_bytes.set(new_end as i64);
        {
            let mut index = self.write_index();
            for s in slots {
                index.slots.insert(s.log_id.index, s);
            }
        }
        self.extend_ahead(&tail, &file);
        Ok(())
    }

    /// Syncs everything written so far, and returns once it is on disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let (next, epoch, file) = self.sync_target();
        let syncing = std::time::Instant::now();
        file.sync_data().map_err(io)?;
        self.stats.log_fsync.observe(syncing.elapsed());
        self.synced(next, epoch);
        Ok(())
    }

    /// Syncs everything written so far on a blocking thread and returns at once; syncs asked
    /// for while one runs are covered by the next one. [`Wal::durable`] tells when it is done.
    /// A failed sync ends the process: entries the leader counted as its own could be gone.
    pub(crate) fn sync_soon(self: &Arc<Self>) {
        let next = self.lock_tail().next;
        {
            let mut d = self.lock_durability();
            d.wanted = d.wanted.max(next);
            if d.syncing || *self.durable.borrow() >= d.wanted {
                return;
            }
            d.syncing = true;
        }
        let wal = self.clone();
        tokio::task::spawn_blocking(move || loop {
            if let Err(e) = wal.sync() {
                tracing::error!(error = %e, "cannot sync the raft log; stopping: entries acknowledged to the cluster may not be on disk");
                std::process::abort();
            }
            let mut d = wal.lock_durability();
            if *wal.durable.borrow() >= d.wanted {
                d.syncing = false;
                return;
            }
        });
    }

    /// What a sync starting now covers: the entries below `next`, in this file, this epoch.
    pub(crate) fn sync_target(&self) -> (u64, u64, Arc<File>) {
        let tail = self.lock_tail();
        let file = self.read_index().file.clone();
        let epoch = self.lock_durability().epoch;
        (tail.next, epoch, file)
    }

    /// Records that the entries below `next` are on disk, unless a truncation came between.
    pub(crate) fn synced(&self, next: u64, epoch: u64) {
        let d = self.lock_durability();
        if d.epoch == epoch {
            self.durable.send_if_modified(|n| {
                let later = next > *n;
                if later {
                    *n = next;
                }
                later
            });
        }
    }

    /// One past the index of the last entry known to be on disk; changes as syncs complete.
    pub(crate) fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The id of the entry at `index`, if the log has it.
    pub(crate) fn log_id_at(&self, index: u64) -> Option<LogId> {
        self.read_index().slots.get(&index).map(|s| s.log_id)
    }

    fn lock_durability(&self) -> std::sync::MutexGuard<'_, Durability> {
        self.durability.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the entries from `since` on, for good.
    pub(crate) fn truncate(&self, since: u64) -> Result<(), StoreError> {
        let mut tail = self.lock_tail();
        // No zeros may land past the cut after it.
        self.join_extender(&mut tail, true);
        let mut index = self.write_index();
        let Some(cut) = index.slots.range(since..).next().map(|(_, s)| s.offset) else {
            return Ok(());
        };
        {
            // A sync running now must not vouch for what is written at these indexes next.
            let mut d = self.lock_durability();
            d.epoch += 1;
            d.wanted = d.wanted.min(since);
            self.durable.send_if_modified(|n| {
                let lower = since < *n;
                if lower {
                    *n = since;
                }
                lower
            });
        }
        index.file.set_len(cut).map_err(io)?;
        index.file.sync_data().map_err(io)?;
        index.slots.split_off(&since);
        tail.next = since;
        tail.end = cut;
        self.stats.log_bytes.set(cut as i64);
        tail.len = cut;
        Ok(())
    }

    /// Forgets the entries up to `upto` (the caller has recorded the purge durably), and copies
    /// the live ones to a new file when much of the file is forgotten.
    pub(crate) fn purge(&self, upto: u64) -> Result<(), StoreError> {
        let mut tail = self.lock_tail();
        let mut index = self.write_index();
        index.slots = index.slots.split_off(&upto.saturating_add(1));
        let head = index.slots.values().next().map_or(tail.end, |s| s.offset);
        if head < COMPACT_AT {
            return Ok(());
        }
        self.join_extender(&mut tail, true);
        let live = tail.end - head;
        let mut bytes = vec![0u8; live as usize];
        index.file.read_exact_at(&mut bytes, head).map_err(io)?;
        let tmp = self.dir.join(format!("{WAL_FILE}.tmp"));
        let mut new = create_private(&tmp)?;
        new.write_all(&bytes).map_err(io)?;
        new.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(WAL_FILE)).map_err(io)?;
        sync_dir(&self.dir)?;
        let new = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(WAL_FILE))
            .map_err(io)?;
        index.file = Arc::new(new);
        for s in index.slots.values_mut() {
            s.offset -= head;
        }
        tail.end = live;
        self.stats.log_bytes.set(live as i64);
        tail.len = live;
        tracing::debug!(dropped_bytes = head, live_bytes = live, "compacted the raft log");
        Ok(())
    }

    /// Writes a whole log to a new `raft.wal` in `dir` at once, for a migration: the file
    /// appears complete or not at all.
    pub(crate) fn create_with(dir: &Path, entries: &[(LogId, Vec<u8>)]) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        for (log_id, payload) in entries {
            buf.extend_from_slice(&record(log_id.index, payload));
        }
        let tmp = dir.join(format!("{WAL_FILE}.tmp"));
        let mut f = create_private(&tmp)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, dir.join(WAL_FILE)).map_err(io)?;
        sync_dir(dir)
    }
}
