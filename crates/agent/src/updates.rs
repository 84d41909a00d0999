//! The durable status update queue: at-least-once delivery of task status updates, with the
//! Mesos agent's semantics.
//!
//! - Every update is written to disk (fsynced, renamed into place) before anybody can send it,
//!   so an agent killed at any moment finds it again and resends it.
//! - Per task, updates go out in the order they were made, and only the oldest unacknowledged
//!   one is in flight; the next goes after its acknowledgement.
//! - An update in flight is resent with exponential backoff ([`FIRST_RETRY`] doubling to
//!   [`MAX_RETRY`]) and on every new connection ([`UpdateQueue::reconnected`]), until the
//!   leader acknowledges it by uuid ([`UpdateQueue::ack`]); the acknowledgement deletes it.
//!
//! Layout, per task under the queue's root (`<data_dir>/tasks/<task dir>/`, see
//! [`task_dir_name`]): `updates/<seq>.json` for each unacknowledged update, and `latest.json`,
//! the last acknowledged one (its file, moved there by the acknowledgement). The most recent
//! update, which the agent reports when it registers, is the newest of them. One file per
//! update and no copies: on a filesystem without a journal every file created and deleted
//! makes the next creations slower for a while, and a thousand launches create plenty.
//!
//! Scheduling is pure: time comes in as an argument ([`UpdateQueue::due`]), so the retry
//! schedule is tested without waiting.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tepui_proto::agent::StatusUpdate;

/// The first resend of an unacknowledged update comes this long after it was sent.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Resends back off (doubling) up to this interval.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

const UPDATES_DIR: &str = "updates";
const LATEST: &str = "latest.json";

/// The directory name of a task under `<data_dir>/tasks`: the task id itself when it is a
/// safe file name (`[A-Za-z0-9_.+-]`, at most 128, not `.` or `..`: what the container
/// runtime accepts), otherwise `~` and a hash of it (`~` never starts a valid id).
pub fn task_dir_name(task_id: &str) -> String {
    if valid_task_id(task_id) {
        task_id.to_string()
    } else {
        let h = Sha256::digest(task_id.as_bytes());
        format!("~{}", &hex::encode(h)[..40])
    }
}

/// Whether the container runtime accepts this id (and it is safe as a file name): the rule
/// the leader checks at launch too.
pub use tepui_common::valid_task_id;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    seq: u64,
    update: StatusUpdate,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    at: Instant,
    backoff: Duration,
}

#[derive(Debug, Default)]
struct TaskUpdates {
    /// Unacknowledged, oldest first, with their sequence numbers (file names).
    pending: VecDeque<(u64, StatusUpdate)>,
    latest: Option<StatusUpdate>,
    next_seq: u64,
    /// When the head of `pending` was last sent on this connection.
    in_flight: Option<InFlight>,
    /// Updates reserved and not yet committed: until they are, nothing of the task is sent.
    writing: u32,
}

/// An update with its place in its task's queue, to be written to disk.
#[derive(Debug)]
pub struct Reserved {
    dir: PathBuf,
    stored: Stored,
}

impl Reserved {
    /// Writes the update (durably); needs no lock.
    pub fn write(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.stored).map_err(io::Error::other)?;
        ensure_dir(&self.dir)?;
        ensure_dir(&self.dir.join(UPDATES_DIR))?;
        write_atomic(&reserved_path(&self.dir, self.stored.seq), &bytes)
    }

    pub fn update(&self) -> &StatusUpdate {
        &self.stored.update
    }
}

fn reserved_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(UPDATES_DIR).join(format!("{seq:020}.json"))
}

/// The agent's status updates, per task, on disk.
#[derive(Debug)]
pub struct UpdateQueue {
    root: PathBuf,
    tasks: BTreeMap<String, TaskUpdates>,
}

impl UpdateQueue {
    /// Opens the queue under `root` (created if missing) and loads every task's pending and
    /// latest update. Nothing is in flight: every task's oldest update is due.
    pub fn open(root: &Path) -> io::Result<UpdateQueue> {
        ensure_dir(root)?;
        let mut tasks = BTreeMap::new();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let dir = entry.path();
            let latest = read_stored(&dir.join(LATEST));
            let mut pending: Vec<Stored> = Vec::new();
            let updates = dir.join(UPDATES_DIR);
            if let Ok(rd) = fs::read_dir(&updates) {
                for f in rd.flatten() {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with(".tmp-") {
                        let _ = fs::remove_file(f.path());
                        continue;
                    }
                    match read_stored(&f.path()) {
                        Some(s) => pending.push(s),
                        None => tracing::warn!(file = %f.path().display(), "unreadable status update skipped"),
                    }
                }
            }
            pending.sort_by_key(|s| s.seq);
            let id = match (pending.first(), &latest) {
                (Some(s), _) | (None, Some(s)) => s.update.task_id.clone(),
                (None, None) => continue,
            };
            let mut t = TaskUpdates::default();
            let latest_seq = latest.as_ref().map(|s| s.seq);
            let newest_pending = pending.last().map(|s| s.seq);
            t.next_seq = latest_seq.max(newest_pending).map_or(0, |s| s + 1);
            // The latest update is the newest one written: a crash can come between writing
            // an update and copying it to latest.json.
            t.latest = match (latest, pending.last()) {
                (Some(l), Some(p)) if p.seq > l.seq => Some(p.update.clone()),
                (Some(l), _) => Some(l.update),
                (None, Some(p)) => Some(p.update.clone()),
                (None, None) => None,
            };
            t.pending = pending.into_iter().map(|s| (s.seq, s.update)).collect();
            tasks.insert(id, t);
        }
        Ok(UpdateQueue {
            root: root.to_path_buf(),
            tasks,
        })
    }

    fn dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_dir_name(task_id))
    }

    /// Appends an update to its task's queue; it is on disk when this returns `Ok`.
    pub fn push(&mut self, update: StatusUpdate) -> io::Result<()> {
        let reserved = self.reserve(update);
        let written = reserved.write();
        self.commit(reserved, written.is_ok());
        written
    }

    /// Gives an update its place in its task's queue. It is written to disk with
    /// [`Reserved::write`], without the queue (so that writes of many tasks go on side by
    /// side), and joins the queue with [`UpdateQueue::commit`]. Meanwhile nothing of its task
    /// is sent, so the task's updates still go out in order.
    pub fn reserve(&mut self, mut update: StatusUpdate) -> Reserved {
        let dir = self.dir(&update.task_id);
        let t = self.tasks.entry(update.task_id.clone()).or_default();
        let seq = t.next_seq;
        t.next_seq = seq + 1;
        t.writing += 1;
        update.seq = Some(seq);
        // The latest is what the agent last made of the task, already while it is written.
        t.latest = Some(update.clone());
        Reserved {
            dir,
            stored: Stored { seq, update },
        }
    }

    /// An update reserved and written (or not: then it is lost, and only its place is freed)
    /// joins its task's queue. A task removed meanwhile gets nothing: the file goes too.
    pub fn commit(&mut self, reserved: Reserved, written: bool) {
        let Reserved { dir, stored } = reserved;
        let Some(t) = self.tasks.get_mut(&stored.update.task_id) else {
            if written {
                let _ = fs::remove_file(reserved_path(&dir, stored.seq));
                let _ = fs::remove_file(dir.join(LATEST));
                let _ = fs::remove_dir(dir.join(UPDATES_DIR));
            }
            return;
        };
        t.writing = t.writing.saturating_sub(1);
        if !written {
            return;
        }
        let at = t.pending.partition_point(|(seq, _)| *seq < stored.seq);
        t.pending.insert(at, (stored.seq, stored.update));
    }

    /// The leader committed the update `uuid` of `task_id`: it becomes the task's
    /// `latest.json` (the newest acknowledged update), and the task's next update is due.
    /// True if it was the task's oldest pending update; acknowledgements of anything else
    /// (repeated, or never sent) change nothing.
    pub fn ack(&mut self, task_id: &str, uuid: &str) -> bool {
        let dir = self.dir(task_id);
        let Some(t) = self.tasks.get_mut(task_id) else {
            return false;
        };
        match t.pending.front() {
            Some((seq, u)) if u.uuid == uuid => {
                let path = reserved_path(&dir, *seq);
                // Not synced: if a crash undoes the move, the update is sent again (at least
                // once), and `open` takes the newest of the two files as the latest.
                if let Err(e) = fs::rename(&path, dir.join(LATEST)) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(file = %path.display(), error = %e, "could not retire an acknowledged update");
                    }
                }
                t.pending.pop_front();
                t.in_flight = None;
                true
            }
            _ => false,
        }
    }

    /// A new connection to the leader: whatever was in flight is lost with the old one, so
    /// every task's oldest update is due again, with the backoff starting over.
    pub fn reconnected(&mut self) {
        for t in self.tasks.values_mut() {
            t.in_flight = None;
        }
    }

    /// The updates to send now: per task, the oldest unacknowledged one, if it was not sent
    /// on this connection yet or its resend time has come. Marks them sent at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        for t in self.tasks.values_mut() {
            if t.writing > 0 {
                continue;
            }
            let Some((_, head)) = t.pending.front() else { continue };
            let backoff = match t.in_flight {
                None => FIRST_RETRY,
                Some(f) if now >= f.at + f.backoff => (f.backoff * 2).min(MAX_RETRY),
                Some(_) => continue,
            };
            out.push(head.clone());
            t.in_flight = Some(InFlight { at: now, backoff });
        }
        out
    }

    /// When [`UpdateQueue::due`] next has something to send: `now` if something was never
    /// sent on this connection, else the earliest resend; `None` when nothing is pending.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.tasks
            .values()
            .filter(|t| !t.pending.is_empty() && t.writing == 0)
            .map(|t| t.in_flight.map_or(now, |f| f.at + f.backoff))
            .min()
    }

    /// The most recent update of a task, acknowledged or not.
    pub fn latest(&self, task_id: &str) -> Option<&StatusUpdate> {
        self.tasks.get(task_id).and_then(|t| t.latest.as_ref())
    }

    /// A task's unacknowledged updates, oldest first.
    pub fn pending(&self, task_id: &str) -> Vec<&StatusUpdate> {
        self.tasks
            .get(task_id)
            .map(|t| t.pending.iter().map(|(_, u)| u).collect())
            .unwrap_or_default()
    }

    /// Whether the task has updates the leader has not acknowledged (written or being written).
    pub fn unacknowledged(&self, task_id: &str) -> bool {
        self.tasks
            .get(task_id)
            .is_some_and(|t| !t.pending.is_empty() || t.writing > 0)
    }

    /// Every task the queue has updates for (pending or latest).
    /// Updates written and not yet acknowledged, over every task.
    pub fn pending_count(&self) -> usize {
        self.tasks.values().map(|t| t.pending.len()).sum()
    }

    pub fn task_ids(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    /// Drops everything of a task: its pending updates (never sent again) and its latest.
    pub fn remove(&mut self, task_id: &str) -> io::Result<()> {
        let dir = self.dir(task_id);
        self.tasks.remove(task_id);
        match fs::remove_dir_all(dir.join(UPDATES_DIR)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match fs::remove_file(dir.join(LATEST)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn read_stored(path: &Path) -> Option<Stored> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Creates a directory (and its parents); a new one is made durable in its parent.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Writes a file so that it is either all there or not there at all, and durable on return.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file needs a directory"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_dir_names_are_safe() {
        assert_eq!(task_dir_name("web.1-a_b+c"), "web.1-a_b+c");
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(129)] {
            let n = task_dir_name(bad);
            assert!(n.starts_with('~') && n.len() == 41, "{bad:?} -> {n}");
            assert!(!n.contains('/'));
        }
        assert_ne!(task_dir_name("a/b"), task_dir_name("a/c"));
    }
}
