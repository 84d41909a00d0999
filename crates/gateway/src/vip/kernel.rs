//! Loading the VIP rules on this host: `iptables-save` shows what is there, [`rules`] decides,
//! and one `iptables-restore --noflush` replaces tepui's chains, each table in one commit, so a
//! connection sees the old rules or the new ones, never a half-loaded set.
//!
//! The functions block (they run commands): the agent calls them off its async threads. Calls
//! in one process are serialized, as two of them reading and then writing the same chains
//! would undo each other's work.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::rules::{self, Chains, Installed};
use crate::Vip;

/// Why the rules could not be loaded or taken out.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Failed { program: &'static str, stderr: String },
    #[error("iptables-restore refused line {line} ({text}): {stderr}")]
    Refused { line: usize, text: String, stderr: String },
}

static LOADING: Mutex<()> = Mutex::new(());

/// Whether this host has the commands the rules are loaded with (`iptables-save` and
/// `iptables-restore`).
pub fn available() -> bool {
    ["iptables-save", "iptables-restore"].into_iter().all(|program| {
        Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Makes the kernel serve `vips` under `chains`: their chains filled anew, chains of VIPs that
/// are gone deleted, the jumps from the built-in chains added where missing. Safe to repeat.
pub fn apply(vips: &[Vip], chains: &Chains) -> Result<(), KernelError> {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let installed = installed()?;
    let input = rules::restore_input(vips, chains, &installed);
    restore(&input)?;
    tracing::debug!(
        prefix = chains.prefix(),
        vips = vips.len(),
        backends = vips.iter().map(|v| v.backends.len()).sum::<usize>(),
        "virtual IP rules loaded"
    );
    Ok(())
}

/// Takes every rule and chain of `chains` out (agent shutdown, tests). Once out, nothing
/// refuses packets for VIPs either: they go where the host routes them.
pub fn remove(chains: &Chains) -> Result<(), KernelError> {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let installed = installed()?;
    if let Some(input) = rules::removal_input(chains, &installed) {
        restore(&input)?;
        tracing::info!(prefix = chains.prefix(), "virtual IP rules removed");
    }
    Ok(())
}

/// Whether rules of `chains` are loaded (by this agent before it restarted, say).
pub fn present(chains: &Chains) -> Result<bool, KernelError> {
    Ok(installed()?.has_any(chains))
}

/// What the nat and filter tables hold now.
fn installed() -> Result<Installed, KernelError> {
    let mut save = String::new();
    for table in ["nat", "filter"] {
        save.push_str(&run("iptables-save", &["-t", table])?);
    }
    Ok(Installed::parse(&save))
}

fn run(program: &'static str, args: &[&str]) -> Result<String, KernelError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| KernelError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(KernelError::Failed {
            program,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Feeds `input` to `iptables-restore --noflush` (waiting for the xtables lock where the
/// legacy backend has one).
fn restore(input: &str) -> Result<(), KernelError> {
    let program = "iptables-restore";
    let mut child = Command::new(program)
        .args(["-w", "10", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KernelError::Spawn { program, source })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as the command's failure below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| KernelError::Spawn { program, source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // "iptables-restore: line 7 failed": say which rule.
    let line = stderr
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    match line.and_then(|n| Some((n, input.lines().nth(n.checked_sub(1)?)?))) {
        Some((line, text)) => Err(KernelError::Refused {
            line,
            text: text.to_string(),
            stderr,
        }),
        None => Err(KernelError::Failed { program, stderr }),
    }
}
