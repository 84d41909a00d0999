//! What the store measures for `/metrics`: its own disk work, which openraft's metrics do not
//! show. The server renders them.

use tepui_metrics::{Counter, Gauge, Histogram, FSYNC_BUCKETS, SLOW_BUCKETS};

/// Shared by both halves of one store (`LogStore::stats`, `StateMachineStore::stats`).
#[derive(Debug)]
pub struct Stats {
    /// Each log append's `fdatasync`.
    pub log_fsync: Histogram,
    /// Bytes of `raft.wal` holding records (its purged head until compaction included).
    pub log_bytes: Gauge,
    /// Building a snapshot: copy, encode and store.
    pub snapshot_build: Histogram,
    /// The size of the newest snapshot built, installed or loaded.
    pub snapshot_bytes: Gauge,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: Counter,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            log_fsync: Histogram::new(FSYNC_BUCKETS),
            log_bytes: Gauge::default(),
            snapshot_build: Histogram::new(SLOW_BUCKETS),
            snapshot_bytes: Gauge::default(),
            snapshots_installed: Counter::default(),
        }
    }
}
