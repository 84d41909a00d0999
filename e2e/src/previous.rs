//! The previous release's binary, built once from its git tag, for the upgrade test.
//!
//! `e2e/previous-release` names it: `TAG COMMIT` (`v0.1.0 75f4adb...`). The tag's commit is
//! used when the clone has the tag, else the commit id of the file; a test fails loudly if the
//! clone has neither. The source is `git archive`d into
//! `<target dir>/previous-release/src-<commit>` and built there with a target dir of its own
//! (`<target dir>/previous-release/target`: the outer `cargo test` holds the main one's lock),
//! and the binary is kept as `<target dir>/previous-release/tepui-<commit>`: later runs find
//! it there and build nothing.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository's root (e2e's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the repository")
        .to_path_buf()
}

/// The target dir this test binary was built in (`<target>/debug/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The previous release's tag and commit: the tag's commit when the clone has the tag, else
/// the commit `e2e/previous-release` names, if the clone has it.
pub fn previous_release() -> (String, String) {
    let file = repo_root().join("e2e/previous-release");
    let line = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut words = line.split_whitespace();
    let (tag, commit) = match (words.next(), words.next()) {
        (Some(t), Some(c)) => (t.to_string(), c.to_string()),
        _ => panic!("{} must read `TAG COMMIT`, not {line:?}", file.display()),
    };
    if let Some(c) = git(&["rev-parse", "--verify", "--quiet", &format!("{tag}^{{commit}}")]) {
        if c != commit {
            eprintln!(
                "previous release: tag {tag} is {c}, not {commit} as {} says; using the tag",
                file.display()
            );
        }
        return (tag, c);
    }
    match git(&["rev-parse", "--verify", "--quiet", &format!("{commit}^{{commit}}")]) {
        Some(c) => (tag, c),
        None => panic!(
            "the previous release is neither tag {tag} nor commit {commit} in this clone: fetch the tag \
             (git fetch origin tag {tag}) or the history that holds the commit"
        ),
    }
}

/// Holds an exclusive lock on a file while it lives (two test runs build it once).
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        let f = File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        // SAFETY: flock(2) on a file descriptor this value owns.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}: {}", path.display(), std::io::Error::last_os_error());
        Lock { _file: f }
    }
}

fn run(what: &str, cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// The previous release's `tepui` binary, built on the first call of any run.
pub fn previous_tepui() -> PathBuf {
    let (tag, commit) = previous_release();
    let dir = target_dir().join("previous-release");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let bin = dir.join(format!("tepui-{commit}"));
    let _lock = Lock::take(&dir.join(".lock"));
    if bin.is_file() {
        return bin;
    }
    let src = dir.join(format!("src-{commit}"));
    if !src.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).unwrap();
        eprintln!("previous release: unpacking {tag} ({commit}) into {}", src.display());
        let archive = dir.join(format!("src-{commit}.tar"));
        run(
            "git archive",
            Command::new("git")
                .arg("-C")
                .arg(repo_root())
                .args(["archive", "--format=tar", "-o"])
                .arg(&archive)
                .arg(&commit),
        );
        run("tar", Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&src));
        let _ = std::fs::remove_file(&archive);
        std::fs::write(src.join(".complete"), &commit).unwrap();
    }
    eprintln!("previous release: building {tag} ({commit}); this happens once");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        "cargo build of the previous release",
        Command::new(cargo)
            .current_dir(&src)
            .args(["build", "-p", "tepui", "--bin", "tepui"])
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .env("TEPUI_BUILD_COMMIT", &commit),
    );
    let built = dir.join("target/debug/tepui");
    let tmp = dir.join(format!(".tepui-{commit}.tmp"));
    std::fs::copy(&built, &tmp).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    std::fs::rename(&tmp, &bin).unwrap();
    bin
}
