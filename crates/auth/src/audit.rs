//! The audit log: one JSON line for every call that changes something, and for every call that
//! reads a task's output or runs a command in it (logs and exec), allowed or refused: who,
//! what, when, and the answer.
//!
//! Each server records the calls it received, so a call forwarded from a follower to the leader
//! appears in both servers' logs. Nothing of a request's body or query string is recorded
//! (either may carry a secret), and of a credential only a known token's accessor.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::http::Method;
use serde::Serialize;

use crate::{Capability, Need};

/// The log is moved to `<name>.1` (replacing the previous one) when it grows past this.
pub const ROTATE_BYTES: u64 = 64 << 20;

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unix milliseconds, when the call arrived.
    pub time_ms: u64,
    /// The token's accessor; none when the call carried no known token.
    pub accessor: Option<String>,
    /// The token's name (`anonymous` for anonymous reads), if it was known.
    pub who: Option<String>,
    pub method: String,
    /// The request's path, without its query string.
    pub path: String,
    /// The route it matched (`/v2/apps/{*id}`).
    pub route: String,
    /// The HTTP status answered (101 for an exec's websocket).
    pub status: u16,
    /// Why it was refused, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub duration_ms: u64,
}

/// Whether a call is audited: it changes something, or it reads a task's output or runs a
/// command in one.
pub fn audited(method: &Method, need: Option<Need>) -> bool {
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    changes || matches!(need, Some(Need::Cap(Capability::Logs | Capability::Exec)))
}

/// An append-only file of [`AuditRecord`]s, readable by its owner only.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<(File, u64)>,
}

impl AuditLog {
    pub fn open(path: impl Into<PathBuf>) -> io::Result<AuditLog> {
        let path = path.into();
        let file = open_private(&path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog {
            path,
            file: Mutex::new((file, size)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record. A log that cannot be written is reported, not fatal: the call it
    /// describes has been answered already.
    pub fn record(&self, r: &AuditRecord) {
        let mut line = serde_json::to_vec(r).expect("audit records serialize");
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1 >= ROTATE_BYTES {
            if let Err(e) = self.rotate(&mut guard) {
                tracing::error!(path = %self.path.display(), error = %e, "could not rotate the audit log");
            }
        }
        match guard.0.write_all(&line) {
            Ok(()) => guard.1 += line.len() as u64,
            Err(e) => tracing::error!(path = %self.path.display(), error = %e, "could not write the audit log"),
        }
    }

    fn rotate(&self, guard: &mut (File, u64)) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        *guard = (open_private(&self.path)?, 0);
        Ok(())
    }
}

fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}
