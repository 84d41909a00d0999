//! The format of the agent's records in its data dir (task launches, status updates,
//! executors), said in one file, `<data dir>/format`: `{"format": N, "release": "..."}`.
//!
//! 0.1.0 wrote format 1 and no file, so a data dir without one holds format 1, which this
//! release reads as it is. A data dir of a newer format than this release knows is refused at
//! start, before anything in it is touched: an older agent would misread what it cannot parse.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The format of the records this release writes: 2 is 1 with the format said.
pub const FORMAT: u32 = 2;
/// The format of a data dir that says none: 0.1.0's.
pub const LEGACY_FORMAT: u32 = 1;
const FILE: &str = "format";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: u32,
    #[serde(default)]
    release: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the agent data dir {dir} is in format {found}, written by tepui {release}; this one ({this}) reads formats up to {FORMAT}: run the newer release on it (going back to an older release is not supported)", this = tepui_common::version::RELEASE)]
    TooNew { dir: String, found: u32, release: String },
    #[error("cannot read or write {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Refuses a data dir of a newer format, and says this release's format in an older or a
/// new one. Returns the format found.
pub fn check(data_dir: &Path) -> Result<u32, FormatError> {
    let path = data_dir.join(FILE);
    let err = |source| FormatError::Io {
        path: path.display().to_string(),
        source,
    };
    let found = match std::fs::read(&path) {
        Ok(bytes) => {
            let m: Marker = serde_json::from_slice(&bytes).map_err(|e| err(io::Error::other(e)))?;
            if m.format > FORMAT {
                return Err(FormatError::TooNew {
                    dir: data_dir.display().to_string(),
                    found: m.format,
                    release: m.release,
                });
            }
            m.format
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => LEGACY_FORMAT,
        Err(e) => return Err(err(e)),
    };
    if found < FORMAT || !path.exists() {
        let marker = Marker {
            format: FORMAT,
            release: tepui_common::version::RELEASE.to_string(),
        };
        let bytes = serde_json::to_vec(&marker).map_err(|e| err(io::Error::other(e)))?;
        crate::updates::ensure_dir(data_dir).map_err(err)?;
        crate::updates::write_atomic(&path, &bytes).map_err(err)?;
        if found < FORMAT {
            tracing::info!(from = found, to = FORMAT, dir = %data_dir.display(), "agent data dir format recorded");
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_dir_is_taken_and_marked_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        // 0.1.0's data dir: records, no marker.
        std::fs::create_dir_all(dir.path().join("tasks/t1")).unwrap();
        assert_eq!(check(dir.path()).unwrap(), LEGACY_FORMAT);
        assert_eq!(check(dir.path()).unwrap(), FORMAT);
        std::fs::write(dir.path().join(FILE), br#"{"format": 99, "release": "9.0.0"}"#).unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 99") && e.contains("tepui 9.0.0"), "{e}");
        // Refused before anything was written.
        let kept = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(kept.contains("99"), "{kept}");
    }
}
