//! Scheduled backups: while this server leads, a snapshot file every `interval` into a
//! directory, the newest `retain` kept. The files are those of `tepui operator snapshot save`
//! (`crate::http::snapshot_file`), so `tepui operator snapshot restore` takes them as they are.
//!
//! A file is named by the time it was taken and the index it holds the state at,
//! `tepui-snapshot-20250102T030405Z-1234.snap`, and appears whole or not at all (written to a
//! hidden temporary file, synced, renamed, the directory synced). Only the leader takes them; a
//! new leader looks at its own directory's newest file to know when the next one is due. The
//! period is a timeout the `backups` driver keeps, not a poll: nothing else starts a backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tepui_node::drivers::{Activation, Driver, Outcome, Wakes};

use crate::node::Inner;

/// Where and how often the leader writes backups.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    pub dir: PathBuf,
    pub interval: Duration,
    /// How many files are kept; older ones are removed after each new one.
    pub retain: usize,
}

const PREFIX: &str = "tepui-snapshot-";
const SUFFIX: &str = ".snap";

/// The name of a backup taken at `at` holding the state at `index`.
pub fn file_name(at: SystemTime, index: u64) -> String {
    // 2025-01-02T03:04:05Z -> 20250102T030405Z: sortable, and no ':' in file names.
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{PREFIX}{stamp}-{index}{SUFFIX}")
}

/// When a backup of this name was taken (whole seconds) and its index; `None` for any other
/// file.
pub fn parse_name(name: &str) -> Option<(SystemTime, u64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (stamp, index) = rest.split_once('-')?;
    let index: u64 = index.parse().ok()?;
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let at = humantime::parse_rfc3339(&rfc3339).ok()?;
    Some((at, index))
}

/// The backups among `names`, oldest first.
fn backups(names: &[String]) -> Vec<(SystemTime, u64, &str)> {
    let mut found: Vec<_> = names
        .iter()
        .filter_map(|n| parse_name(n).map(|(at, index)| (at, index, n.as_str())))
        .collect();
    found.sort();
    found
}

/// How long until the next backup is due, given the files in the directory: zero when it is
/// due now (no backup yet, or the newest is `interval` old).
pub fn due_in(names: &[String], now: SystemTime, interval: Duration) -> Duration {
    match backups(names).last() {
        // A newest file from the future (a clock set back) does not hold backups off for
        // longer than one interval.
        Some((at, _, _)) => (*at + interval)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(interval),
        None => Duration::ZERO,
    }
}

/// The backups to remove so that only the newest `retain` stay.
pub fn expired(names: &[String], retain: usize) -> Vec<String> {
    let found = backups(names);
    let excess = found.len().saturating_sub(retain.max(1));
    found[..excess].iter().map(|(_, _, n)| n.to_string()).collect()
}

/// Creates the directory (0700: the files hold every secret of the cluster, the CA's key
/// among them) and checks that files can be written there, so a wrong flag fails at start.
pub(crate) fn prepare(dir: &Path) -> std::io::Result<()> {
    tepui_transport::create_private_dir(dir)?;
    let probe = dir.join(".tepui-write-check");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Starts the `backups` driver on this server's node: it runs while the server leads.
pub(crate) fn start(inner: Arc<Inner>, settings: BackupSettings) {
    let node = inner.node.clone();
    node.spawn_driver("backups", Backups { inner, settings }, Wakes::default());
}

struct Backups {
    inner: Arc<Inner>,
    settings: BackupSettings,
}

fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// `dir/name` with `bytes`, mode 0600, whole or not at all.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

impl Backups {
    async fn take(&self, now: SystemTime) -> Result<String, String> {
        self.inner.linearize().await.map_err(|e| e.to_string())?;
        let now_ms = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let (bytes, index) = crate::http::snapshot_file(&self.inner.state, now_ms).map_err(|e| e.to_string())?;
        let name = file_name(now, index);
        let dir = self.settings.dir.clone();
        let retain = self.settings.retain;
        let (written, size) = (name.clone(), bytes.len());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            write_whole(&dir, &written, &bytes)?;
            let names = list(&dir)?;
            for stale in expired(&names, retain) {
                std::fs::remove_file(dir.join(&stale))?;
                tracing::info!(file = %stale, "removed an old backup");
            }
            // A temporary file a crash left behind.
            for leftover in names
                .iter()
                .filter(|n| n.starts_with(&format!(".{PREFIX}")) && n.ends_with(".tmp"))
            {
                if *leftover != format!(".{written}.tmp") {
                    let _ = std::fs::remove_file(dir.join(leftover));
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write a backup to {}: {e}", self.settings.dir.display()))?;
        tracing::info!(file = %name, index, bytes = size, "backup written");
        Ok(name)
    }
}

impl Driver for Backups {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        let names = list(&self.settings.dir)
            .map_err(|e| format!("cannot list the backups in {}: {e}", self.settings.dir.display()))?;
        let now = SystemTime::now();
        let wait = due_in(&names, now, self.settings.interval);
        if !wait.is_zero() {
            return Ok(Some(wait));
        }
        self.take(now).await?;
        Ok(Some(self.settings.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn names_say_when_and_at_which_index() {
        // 2025-01-02T03:04:05Z
        let t = at(1_735_787_045);
        let name = file_name(t, 1234);
        assert_eq!(name, "tepui-snapshot-20250102T030405Z-1234.snap");
        assert_eq!(parse_name(&name), Some((t, 1234)));
        for other in [
            "notes.txt",
            "tepui-snapshot-20250102T030405Z.snap",
            "tepui-snapshot-20250102T030405Z-x.snap",
            "tepui-snapshot-2025-01-02-7.snap",
            ".tepui-snapshot-20250102T030405Z-1234.snap.tmp",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        // Names sort as their times do.
        assert!(file_name(at(1_735_787_045), 99) < file_name(at(1_735_787_046), 1));
    }

    #[test]
    fn the_next_backup_is_due_an_interval_after_the_newest() {
        let hour = Duration::from_secs(3600);
        assert_eq!(due_in(&[], at(1_000_000), hour), Duration::ZERO);
        let names = vec![
            file_name(at(1_000_000), 5),
            file_name(at(1_000_600), 9),
            "unrelated.snap".to_string(),
        ];
        assert_eq!(due_in(&names, at(1_000_600), hour), hour);
        assert_eq!(due_in(&names, at(1_001_000), hour), Duration::from_secs(3200));
        assert_eq!(due_in(&names, at(1_004_200), hour), Duration::ZERO);
        assert_eq!(due_in(&names, at(2_000_000), hour), Duration::ZERO);
        // A file stamped in the future (the clock went back) waits one interval at most.
        assert_eq!(due_in(&names, at(10), hour), hour);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let names: Vec<String> = [(300, 3), (100, 1), (200, 2), (400, 4)]
            .iter()
            .map(|(t, i)| file_name(at(1_000_000 + t), *i))
            .chain(["keep-me.txt".to_string()])
            .collect();
        assert_eq!(
            expired(&names, 2),
            vec![file_name(at(1_000_100), 1), file_name(at(1_000_200), 2)]
        );
        assert!(expired(&names, 4).is_empty());
        assert_eq!(expired(&names, 0).len(), 3, "at least one is always kept");
    }

    #[test]
    fn a_backup_appears_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("backups");
        prepare(&backups).unwrap();
        assert_eq!(std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777, 0o700);
        write_whole(&backups, "tepui-snapshot-20250102T030405Z-1.snap", b"data").unwrap();
        let names = list(&backups).unwrap();
        assert_eq!(names, vec!["tepui-snapshot-20250102T030405Z-1.snap".to_string()]);
        let path = backups.join(&names[0]);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
