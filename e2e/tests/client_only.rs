//! The CLI without its daemons (`--no-default-features`) builds from crates that build on
//! macOS and Windows: none of the Linux-only ones (containers, seccomp, eBPF, the agent and
//! the server), and on Windows nothing Unix-only. `cargo tree` resolves the dependencies for
//! each target without building them; `cargo check` builds the client here.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that build only on Linux, or only with the daemons.
const LINUX_ONLY: &[&str] = &[
    "libcontainer",
    "libseccomp",
    "libseccomp-sys",
    "libbpf-sys",
    "libbpf-rs",
    "tepui-runtime",
    "tepui-agent",
    "tepui-server",
    "tepui-gateway",
    "tepui-image",
    "tepui-dns",
    "tepui-store",
];

/// Crates that build only on Unix-like systems.
const UNIX_ONLY: &[&str] = &["nix"];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// The names of the crates `tepui` depends on (normal dependencies, transitively).
fn dependencies(features: &[&str], target: Option<&str>) -> BTreeSet<String> {
    let mut cmd = cargo();
    cmd.args([
        "tree", "-p", "tepui", "-e", "normal", "--prefix", "none", "--format", "{p}",
    ]);
    cmd.args(features);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {features:?} {target:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn the_client_builds_without_the_linux_only_crates() {
    let full = dependencies(&[], None);
    assert!(
        full.contains("libcontainer"),
        "the daemons' build has the runtime: {full:?}"
    );

    for (target, forbidden) in [
        (None, LINUX_ONLY.to_vec()),
        (Some("aarch64-apple-darwin"), LINUX_ONLY.to_vec()),
        (Some("x86_64-pc-windows-msvc"), [LINUX_ONLY, UNIX_ONLY].concat()),
    ] {
        let deps = dependencies(&["--no-default-features"], target);
        assert!(deps.contains("tepui-api"), "{target:?}: {deps:?}");
        let found: Vec<&&str> = forbidden.iter().filter(|c| deps.contains(**c)).collect();
        assert!(found.is_empty(), "the client for {target:?} depends on {found:?}");
    }

    let out = cargo()
        .args([
            "check",
            "-p",
            "tepui",
            "--no-default-features",
            "--bin",
            "tepui",
            "--message-format",
            "short",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo check -p tepui --no-default-features:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
