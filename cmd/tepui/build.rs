//! Facts about the build for `tepui version`, as environment variables of the compilation:
//! the commit (`TEPUI_GIT_COMMIT`), the build date (`TEPUI_BUILD_DATE`), the target
//! (`TEPUI_BUILD_TARGET`), the compiler (`TEPUI_RUSTC_VERSION`) and the features
//! (`TEPUI_FEATURES`).
//!
//! It runs again only when the commit moves (`.git/HEAD` and the ref it points to), not on
//! every edit: a new build date would rebuild the binary each time. So `-dirty` says whether
//! the tree had changes when the commit last moved (or at the first build).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Packagers building from a tarball can say which commit it is.
    println!("cargo:rerun-if-env-changed=TEPUI_BUILD_COMMIT");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let commit = match env::var("TEPUI_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=TEPUI_GIT_COMMIT={commit}");

    // Reproducible builds set SOURCE_DATE_EPOCH (seconds since 1970, UTC).
    let built = match env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        None => SystemTime::now(),
    };
    println!(
        "cargo:rustc-env=TEPUI_BUILD_DATE={}",
        humantime::format_rfc3339_seconds(built)
    );

    println!(
        "cargo:rustc-env=TEPUI_BUILD_TARGET={}",
        env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_version = output(Command::new(rustc).arg("-V")).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TEPUI_RUSTC_VERSION={rustc_version}");

    // Every feature this build has, as cargo tells build scripts (CARGO_FEATURE_DAEMON...).
    let mut features: Vec<String> = env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    features.sort();
    println!("cargo:rustc-env=TEPUI_FEATURES={}", features.join(","));
}

/// The short hash of HEAD, with `-dirty` when tracked files differ from it; `None` outside a
/// git checkout or without git. Watches what moves the commit.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| output(Command::new("git").arg("-C").arg(dir).args(args));
    // The checkout must be tepui's own (cmd/tepui's grandparent), not one a tarball was
    // unpacked into.
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let workspace = dir.join("../..").canonicalize().ok()?;
    if top.canonicalize().ok()? != workspace {
        return None;
    }
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    // Worktrees keep HEAD in their own git dir and the refs in the common one.
    let common_dir = git(&["rev-parse", "--git-common-dir"])
        .map(|d| dir.join(d))
        .unwrap_or_else(|| git_dir.clone());
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&reference);
        let packed = common_dir.join("packed-refs");
        // Only files that exist: cargo runs the script again every time for a missing one.
        if loose.is_file() {
            println!("cargo:rerun-if-changed={}", loose.display());
        } else if packed.is_file() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    // No optional locks: a build never writes the index (git status would refresh it).
    let changes = output(Command::new("git").arg("--no-optional-locks").arg("-C").arg(dir).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]));
    Some(match changes {
        Some(c) if !c.is_empty() => format!("{hash}-dirty"),
        _ => hash,
    })
}

/// The command's trimmed standard output when it succeeds.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
