//! Reading a repository where its URI says: a Universe tree or an index file on the leader's
//! disk (`file:///srv/universe`, or the bare absolute path), or an index over HTTP(S), asked
//! for in Universe's media types. This is the crate's only network and disk access.

use std::path::PathBuf;
use std::time::Duration;

use crate::universe::{self, Package, RepoError};

/// A repository index larger than this is refused (Universe's whole catalog is a few MiB).
const INDEX_LIMIT: usize = 64 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What an index is asked for in, newest first, as Cosmos asks.
const ACCEPT: &str = "application/vnd.dcos.universe.repo+json;charset=utf-8;version=v5,\
application/vnd.dcos.universe.repo+json;charset=utf-8;version=v4;q=0.9,\
application/vnd.dcos.universe.repo+json;charset=utf-8;version=v3;q=0.8,\
application/json;q=0.5";

/// A repository URI as kept: `http(s)://...` as given, a path as `file://` with an absolute
/// path. Refused: anything else, and relative paths (relative to what, on the leader?).
pub fn normalize_uri(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.starts_with("http://") || raw.starts_with("https://") {
        return match reqwest::Url::parse(raw) {
            Ok(u) if u.host_str().is_some() => Ok(raw.to_string()),
            _ => Err(format!("{raw:?} is not a URL")),
        };
    }
    let path = raw.strip_prefix("file://").unwrap_or(raw);
    if raw.contains("://") && !raw.starts_with("file://") {
        return Err(format!(
            "{raw:?}: a repository is an http://, https:// or file:// URI, or an absolute path"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{raw:?}: a repository on disk is given by its absolute path (it is read by the leading server)"
        ));
    }
    Ok(format!("file://{path}"))
}

/// The packages of the repository at `uri` (as [`normalize_uri`] keeps it).
pub async fn read_repo(uri: &str) -> Result<Vec<Package>, RepoError> {
    if let Some(path) = uri.strip_prefix("file://") {
        let path = PathBuf::from(path);
        return tokio::task::spawn_blocking(move || {
            if path.is_file() {
                let bytes = std::fs::read(&path).map_err(|e| RepoError {
                    place: path.display().to_string(),
                    message: e.to_string(),
                })?;
                universe::parse_index(&bytes)
            } else {
                universe::read_dir(&path)
            }
        })
        .await
        .map_err(|e| RepoError {
            place: uri.to_string(),
            message: format!("reading stopped: {e}"),
        })?;
    }
    fetch_index(uri).await
}

async fn fetch_index(uri: &str) -> Result<Vec<Package>, RepoError> {
    let fail = |message: String| RepoError {
        place: uri.to_string(),
        message,
    };
    // reqwest's rustls needs the process's provider; ring is the only one this project uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| fail(format!("no HTTP client: {e}")))?;
    let mut resp = client
        .get(uri)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .header(
            reqwest::header::USER_AGENT,
            concat!("tepui/", env!("CARGO_PKG_VERSION")),
        )
        .send()
        .await
        .map_err(|e| fail(format!("cannot fetch it: {}", root_cause(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!("the server answered {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(format!("reading it failed: {}", root_cause(&e))))?
    {
        if body.len() + chunk.len() > INDEX_LIMIT {
            return Err(fail(format!("the index is larger than {} MiB", INDEX_LIMIT >> 20)));
        }
        body.extend_from_slice(&chunk);
    }
    universe::parse_index(&body).map_err(|e| fail(e.to_string()))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_kept_absolute() {
        assert_eq!(normalize_uri("/srv/universe").unwrap(), "file:///srv/universe");
        assert_eq!(normalize_uri("file:///srv/u.json").unwrap(), "file:///srv/u.json");
        assert_eq!(
            normalize_uri("https://universe.mesosphere.com/repo").unwrap(),
            "https://universe.mesosphere.com/repo"
        );
        assert!(normalize_uri("universe").unwrap_err().contains("absolute path"));
        assert!(normalize_uri("file://relative").is_err());
        assert!(normalize_uri("ftp://x/y").unwrap_err().contains("http://"));
        assert!(normalize_uri("http://").is_err());
    }
}
