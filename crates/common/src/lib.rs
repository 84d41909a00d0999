//! The few words every tepui crate shares: what a node is (server or agent), the wall clock in
//! Unix milliseconds, how an error and its causes are printed on one line, and the input rules
//! that the leader and the agents must agree on (task ids, health check paths, paths into a
//! task's sandbox), and versions (`version`: the release, the cluster protocol, and whether a
//! cluster can take a binary).
//!
//! Deliberately tiny and without I/O beyond reading the clock: the pure decision crates depend
//! on it too.

pub mod version;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a node of the cluster is: a control-plane server or a worker agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "server" => Some(Role::Server),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error and its sources on one line, `outer: inner: innermost`, skipping a source whose
/// text the line already holds (errors that print their source too).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// What a valid task id is, in words, for error messages.
pub const TASK_ID_RULE: &str = "1 to 128 of [A-Za-z0-9_.+-], and not . or ..";

/// Whether a task id is one the agents run: it names the task's sandbox directory and its
/// container. The leader refuses what fails here when a task is launched, so no task is
/// committed that its agent would refuse.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.'))
}

/// The largest framework message (its data, before base64), either way between a scheduler
/// and its executor: the leader and the agents refuse larger ones alike.
pub const MAX_FRAMEWORK_MESSAGE: usize = 256 * 1024;

/// The longest HTTP health check path (with its query).
pub const MAX_HEALTH_PATH: usize = 2048;

/// Why `path` cannot be an HTTP health check's path, if it cannot: it goes into a request
/// line as it is, so it must start with `/` and hold only visible ASCII (no spaces, no CR or
/// LF that would end the line and start headers of the caller's choosing).
pub fn health_path_error(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("{path:?} must start with /"));
    }
    if path.len() > MAX_HEALTH_PATH {
        return Some(format!("is longer than {MAX_HEALTH_PATH} bytes"));
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Some(format!(
            "{path:?} holds {c:?}: only visible ASCII is allowed (percent-encode the rest)"
        ));
    }
    None
}

/// A secret's path as stored: `/`-separated names of letters, digits, `.`, `_` and `-`, without
/// a leading `/` (Marathon's and Metronome's `source` may have one; both name the same secret).
pub fn normalize_secret_path(raw: &str) -> Result<String, String> {
    let path = raw.trim_start_matches('/');
    if path.is_empty() || path.len() > 256 {
        return Err(format!("secret path {raw:?} must have 1 to 256 characters"));
    }
    for segment in path.split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(format!(
                "secret path {raw:?}: each part between slashes is letters, digits, '.', '_' or '-' (not . or ..)"
            ));
        }
    }
    Ok(path.to_string())
}

/// Where a secret file goes in a container: an absolute path, or one relative to the task's
/// sandbox (Marathon's file-based secrets name it so); never with `..`.
pub fn secret_file_error(path: &str) -> Option<String> {
    if path.is_empty() || path.contains('\0') || path.split('/').any(|p| p == "..") || path.ends_with('/') {
        return Some(format!(
            "secret file {path:?} must be a path in the container (absolute, or relative to the sandbox) without .."
        ));
    }
    None
}

/// The longest path into a task's sandbox the files API takes.
pub const MAX_SANDBOX_PATH: usize = 4096;

/// A path into a task's sandbox, as the files API takes it (Mesos' `/files` `path`), made
/// relative and plain: `""`, `"/"` and `"."` are the sandbox itself, a leading `/` is the
/// sandbox's root (never the host's), empty and `.` parts go; `..` anywhere is refused, so no
/// path names anything above the sandbox by its spelling (links are the agent's to refuse).
/// The leader checks it before asking the agent, the agent again.
pub fn sandbox_path(raw: &str) -> Result<String, String> {
    if raw.len() > MAX_SANDBOX_PATH {
        return Err(format!("path is longer than {MAX_SANDBOX_PATH} bytes"));
    }
    if raw.contains('\0') {
        return Err(format!("path {raw:?} holds a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {raw:?} leaves the sandbox: .. is not allowed")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_stay_in_the_sandbox() {
        for (raw, want) in [
            ("", ""),
            ("/", ""),
            (".", ""),
            ("stdout", "stdout"),
            ("/etc/passwd", "etc/passwd"),
            ("a//b/./c/", "a/b/c"),
            ("...", "..."),
            ("a..b/c", "a..b/c"),
        ] {
            assert_eq!(sandbox_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
        for bad in ["..", "../x", "a/../b", "/..", "a/..", "a\0b"] {
            assert!(sandbox_path(bad).is_err(), "{bad:?}");
        }
        assert!(sandbox_path(&"a/".repeat(MAX_SANDBOX_PATH)).is_err());
    }

    #[test]
    fn task_ids_are_safe_names() {
        for ok in ["web.1-a_b+c", "a", &"x".repeat(128), "app.instance-1f2e"] {
            assert!(valid_task_id(ok), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "a@b", "é", "a\n", &"x".repeat(129)] {
            assert!(!valid_task_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn health_paths_cannot_break_the_request_line() {
        assert_eq!(health_path_error("/health?verbose=1&x=%20"), None);
        for bad in [
            "/x HTTP/1.1\r\nHost: evil\r\n\r\nGET /",
            "/a\nb",
            "/a b",
            "health",
            "/ü",
            "",
        ] {
            assert!(health_path_error(bad).is_some(), "{bad:?}");
        }
        assert!(health_path_error(&format!("/{}", "a".repeat(MAX_HEALTH_PATH))).is_some());
    }

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chains_name_each_cause_once() {
        let e = E(
            "pull failed",
            Some(Box::new(E("connect: refused", Some(Box::new(E("refused", None)))))),
        );
        assert_eq!(error_chain(&e), "pull failed: connect: refused");
        assert_eq!(error_chain(&E("alone", None)), "alone");
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Server, Role::Agent] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn secret_paths_and_files() {
        assert_eq!(normalize_secret_path("/db/password").unwrap(), "db/password");
        assert_eq!(
            normalize_secret_path("db/pass_word-2.txt").unwrap(),
            "db/pass_word-2.txt"
        );
        for bad in [
            "",
            "/",
            "db//pw",
            "db/../pw",
            "./pw",
            "db/p w",
            "db/pw/",
            &"a".repeat(257),
        ] {
            assert!(normalize_secret_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(secret_file_error("/run/pw"), None);
        assert_eq!(secret_file_error("certs/tls.key"), None);
        for bad in ["", "../pw", "/run/../pw", "dir/", "a\0b"] {
            assert!(secret_file_error(bad).is_some(), "{bad:?}");
        }
    }
}
