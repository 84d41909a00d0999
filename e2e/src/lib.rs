//! Support for end-to-end tests that drive the real `tepui` binary as separate processes.
//!
//! A test gets a [`Sandbox`] (a temp dir for data dirs, logs and files), spawns daemons in it
//! as [`Daemon`]s (stdout and stderr go to files; the process is killed when the value drops),
//! runs client commands with [`tepui`], and waits on conditions with [`wait_for`], which has a
//! deadline and never sleeps for a fixed time to let something happen.
//!
//! This crate knows nothing of tepui's internals: only its command line, the files it writes and
//! the JSON of its API. Every test binds its own loopback addresses (127.0.N.x, N per test), so
//! tests run in parallel and never meet a developer's `tepui dev` on 127.0.0.1.

use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

mod bridge;
pub mod browser;
pub mod marathon;
pub mod mesos;
pub mod previous;

pub use bridge::remove_bridge;

/// How long a client command may run before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`wait_for`] looks again.
const POLL: Duration = Duration::from_millis(100);

/// The one `TEPUI_*` variable a developer's shell may hand the binary (the log filter): every
/// other one sets a flag (each daemon flag has one), so it is removed.
const KEPT_ENV: &[&str] = &["TEPUI_LOG"];

/// The management API token every cluster the tests start begins with (given to the first
/// server as `TEPUI_BOOTSTRAP_API_TOKEN`), and that the CLI and the tests' HTTP clients send.
pub const API_TOKEN: &str = "e2e-test-accessor.e2e-test-secret-not-for-production";

/// An HTTP client builder whose requests carry [`API_TOKEN`].
pub fn http_client() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {API_TOKEN}")).expect("a valid header"),
    );
    reqwest::Client::builder().default_headers(headers)
}

/// The `tepui` binary: `$TEPUI_BIN` if set, else the one cargo built beside the running test.
///
/// The tests are targets of the `tepui` package (see cmd/tepui/Cargo.toml), so `cargo test`
/// builds the binary from the current source before it runs them, and puts it in the profile's
/// dir (`target/debug/tepui`) while the test executable sits in `target/debug/deps/`. No other
/// place is looked at: a binary left over from an older build must never be tested by mistake.
pub fn tepui_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TEPUI_BIN") {
        let path = PathBuf::from(bin);
        assert!(path.is_file(), "TEPUI_BIN={} is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("tepui"));
    match beside {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "no tepui binary beside {}: run the e2e tests through cargo (cargo test -p tepui, \
             or cargo test --workspace), which builds it first, or set TEPUI_BIN",
            exe.display()
        ),
    }
}

fn command(args: &[OsString]) -> Command {
    command_of(&tepui_bin(), args)
}

/// [`command`] of another tepui binary (an earlier release's, in the upgrade test).
fn command_of(bin: &Path, args: &[OsString]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null());
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("TEPUI_") && !KEPT_ENV.contains(&name.as_ref()) {
            cmd.env_remove(&var);
        }
    }
    // An empty config file: never the machine's /etc/tepui/config.toml (a test's own
    // `--config` wins over it).
    cmd.env("TEPUI_API_TOKEN", API_TOKEN)
        .env("TEPUI_BOOTSTRAP_API_TOKEN", API_TOKEN)
        .env("TEPUI_CONFIG", "/dev/null");
    cmd
}

fn os_args<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Waits until `check` returns `Ok`, looking again every 100 ms, and returns its value.
/// Panics after `timeout` with `what` and the last reason `check` gave.
pub fn wait_for<T, E: Display>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, E>) -> T {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let reason = match check() {
            Ok(v) => return v,
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {reason}");
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// What a finished client command left behind.
#[derive(Clone, Debug)]
pub struct Output {
    /// The exit code; -1 if a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn ok(self) -> Output {
        assert!(self.success(), "`{}` failed:\n{self}", self.command);
        self
    }

    /// Stdout parsed as JSON (for `-o json`); panics with the output if it does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => panic!("`{}` did not print the expected JSON: {e}\n{self}", self.command),
        }
    }

    /// Like [`Output::json`], but an error for [`wait_for`] instead of a panic, and a failed
    /// command is an error too.
    pub fn try_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        if !self.success() {
            return Err(format!(
                "`{}` exited {}: {}",
                self.command,
                self.code,
                self.stderr.trim()
            ));
        }
        serde_json::from_str(&self.stdout).map_err(|e| format!("`{}` printed bad JSON: {e}", self.command))
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

impl Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// What an operator does through the CLI for a client: `tepui acl policy apply POLICY GRANTS...`
/// (`--capability`, `--framework` flags), then a token named `name` with that policy. The
/// token's JSON (`accessor`, `secret`).
pub fn token_with_policy(addr: &str, policy: &str, grants: &[&str], name: &str) -> serde_json::Value {
    let mut apply = vec!["acl", "policy", "apply", policy];
    apply.extend_from_slice(grants);
    apply.extend_from_slice(&["--addr", addr]);
    tepui(&apply).ok();
    tepui(&[
        "acl", "token", "create", "--name", name, "--policy", policy, "-o", "json", "--addr", addr,
    ])
    .ok()
    .json()
}

/// Runs `tepui ARGS...` to the end (at most [`COMMAND_TIMEOUT`]) and returns what it printed.
pub fn tepui<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    tepui_with_timeout(args, COMMAND_TIMEOUT)
}

/// [`tepui`] with a deadline of its own; panics if the command runs past it.
pub fn tepui_with_timeout<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Output {
    let args = os_args(args);
    let line = format!(
        "tepui {}",
        args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{line}` did not finish within {timeout:?}");
            }
            Err(e) => panic!("cannot wait for `{line}`: {e}"),
        }
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        command: line,
    }
}

/// `tepui task exec -i ID -- sh` fed `input` on stdin, given up after 30 s: (exit code,
/// stdout, stderr).
pub fn exec_interactive(addr: &str, id: &str, input: &str) -> (i32, String, String) {
    let mut child = std::process::Command::new(tepui_bin())
        .args(["task", "exec", "-i", id, "--addr", addr, "--", "sh"])
        .env("TEPUI_API_TOKEN", API_TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tepui runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("input goes in");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("waitable").is_some() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A temp dir for one test: data dirs, daemon logs, files. Kept (and its path printed) when
/// the test fails, so the logs can be read. The bridges its daemons were given (`--bridge`)
/// are removed with it, rules and all: it is made first and dropped last, after the daemons.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    bridges: std::sync::Mutex<Vec<String>>,
}

impl Sandbox {
    /// `label` names the dir, to tell the sandboxes of parallel tests apart.
    pub fn new(label: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tepui-e2e-{label}-"))
            .tempdir()
            .expect("a temp dir can be created");
        Sandbox {
            dir: Some(dir),
            bridges: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("the dir lives as long as the sandbox").path()
    }

    /// A path inside the sandbox (not created).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Starts `tepui ARGS...` as a long-running process named `name`, logging to
    /// `<sandbox>/<name>.stdout` and `.stderr`. Returns at once; see [`Daemon::wait_ready`].
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, name: &str, args: &[S]) -> Daemon {
        self.spawn_bin(name, &tepui_bin(), args)
    }

    /// [`Sandbox::spawn`] of another tepui binary (an earlier release's).
    pub fn spawn_bin<S: AsRef<std::ffi::OsStr>>(&self, name: &str, bin: &Path, args: &[S]) -> Daemon {
        let named = args.windows(2).find(|w| w[0].as_ref() == "--bridge");
        if let Some(bridge) = named.and_then(|w| w[1].as_ref().to_str()) {
            let mut bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
            if !bridges.iter().any(|b| b == bridge) {
                bridges.push(bridge.to_string());
            }
        }
        let mut d = Daemon {
            bin: bin.to_path_buf(),
            name: name.to_string(),
            stdout_path: self.join(format!("{name}.stdout")),
            stderr_path: self.join(format!("{name}.stderr")),
            args: vec![],
            child: None,
            stdout_from: 0,
        };
        d.start(args);
        d
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for bridge in self.bridges.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            remove_bridge(&bridge);
        }
        // The daemons were killed with SIGKILL: nothing released the rootfs of their tasks'
        // containers, and a mount point keeps the dir from being removed. Their tasks outlive
        // them by design (under their shims): nothing would end those either.
        if let Some(dir) = &self.dir {
            kill_tasks_under(dir.path());
            unmount_under(dir.path());
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("e2e: kept {} for the logs", path.display());
            }
        }
    }
}

/// A process's parent and arguments, from /proc.
struct Proc {
    pid: i32,
    ppid: i32,
    args: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name's closing parenthesis: state, then the parent's pid.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // A spawned shim rewrites its arguments as one line, spaces between them.
            let args = cmdline
                .split(|&b| b == 0 || b == b' ')
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Proc { pid, ppid, args })
        })
        .collect()
}

/// Kills the shims whose sandbox is under `dir` and every process below them (the tasks), and
/// removes the tasks' emptied cgroups (under `tepui/`), so that a test leaves nothing running.
fn kill_tasks_under(dir: &Path) {
    let procs = processes();
    let mut doomed: Vec<i32> = procs
        .iter()
        .filter(|p| {
            p.args.get(1).is_some_and(|a| a == "shim")
                && p.args.get(2).is_some_and(|a| a == "--sandbox")
                && p.args.get(3).is_some_and(|s| Path::new(s).starts_with(dir))
        })
        .map(|p| p.pid)
        .collect();
    if doomed.is_empty() {
        return;
    }
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(procs.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    let mut cgroups: Vec<PathBuf> = doomed
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.splitn(3, ':');
                    let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                    let hierarchy = if controllers.is_empty() { "unified" } else { controllers };
                    let hierarchy = hierarchy.strip_prefix("name=").unwrap_or(hierarchy);
                    path.contains("/tepui/").then(|| {
                        Path::new("/sys/fs/cgroup")
                            .join(hierarchy)
                            .join(path.trim_start_matches('/'))
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    cgroups.sort();
    cgroups.dedup();
    eprintln!(
        "e2e: killing {} processes of tasks left under {}",
        doomed.len(),
        dir.display()
    );
    for pid in doomed.iter().rev() {
        // SAFETY: kill(2) of a shim of this sandbox's agents, or of a process below one.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    for cgroup in cgroups {
        // A cgroup is removable once its last process is reaped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cgroup.exists() && std::fs::remove_dir(&cgroup).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Detaches every mount at or below `dir`, deepest first (lazily: a process that still has one
/// open keeps it until it lets go).
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: a valid NUL-terminated path; umount2 reads it and touches no memory of ours.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "e2e: cannot unmount {}: {}",
                point.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// /proc/self/mountinfo writes space, tab, newline and backslash in paths as `\ooo` (octal).
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `tepui` daemon process. Dropping it kills the process (SIGKILL).
pub struct Daemon {
    /// The tepui binary it runs.
    bin: PathBuf,
    name: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    args: Vec<OsString>,
    child: Option<Child>,
    /// Where this run's output starts in the stdout file: restarts append.
    stdout_from: u64,
}

impl Daemon {
    fn start<S: AsRef<std::ffi::OsStr>>(&mut self, args: &[S]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.args = os_args(args);
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()))
        };
        let stdout = open(&self.stdout_path);
        let stderr = open(&self.stderr_path);
        self.stdout_from = stdout.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = command_of(&self.bin, &self.args);
        // Plain logs: they are read in files, not on a terminal.
        cmd.env("NO_COLOR", "1").stdout(stdout).stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has ended, `None` while it runs (or after a kill).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// SIGKILL, like a power cut, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a service manager stops it, and waits at most `timeout` for the exit.
    /// Panics if it is still running then (and kills it).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                    self.name,
                    self.stderr_tail(25)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same logs, with new arguments (a restart usually drops
    /// `--token` or `--bootstrap`).
    pub fn restart<S: AsRef<std::ffi::OsStr>>(&mut self, args: &[S]) {
        self.kill();
        self.start(args);
    }

    /// Starts another binary in its place (it must have stopped), on the same logs: an
    /// upgrade.
    pub fn start_bin<S: AsRef<std::ffi::OsStr>>(&mut self, bin: &Path, args: &[S]) {
        self.bin = bin.to_path_buf();
        self.start(args);
    }

    /// This run's stdout so far.
    pub fn stdout(&self) -> String {
        read_from(&self.stdout_path, self.stdout_from)
    }

    /// Everything the process wrote to stderr, over all its runs.
    pub fn stderr(&self) -> String {
        read_from(&self.stderr_path, 0)
    }

    /// The last `n` lines of stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let all = self.stderr();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until this run printed its `ready in N ms` line. Panics if the process exits first,
    /// with its stderr.
    pub fn wait_ready(&mut self, timeout: Duration) -> &mut Daemon {
        let what = format!("{} to print `ready in`", self.name);
        wait_for(&what, timeout, || {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before it was ready\n--- stdout\n{}\n--- stderr\n{}",
                    self.name,
                    self.stdout(),
                    self.stderr_tail(40)
                );
            }
            if self.stdout().lines().any(|l| l.starts_with("ready in ")) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
        self
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let crashed = self.exited();
        self.kill();
        if std::thread::panicking() {
            let state = match crashed {
                Some(status) => format!("had exited ({status})"),
                None => "was running".to_string(),
            };
            eprintln!(
                "e2e: daemon {} {state}; args: {:?}; last stderr lines:\n{}\n",
                self.name,
                self.args,
                self.stderr_tail(25)
            );
        }
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// On Linux, the daemon gets SIGKILL when the test thread that started it goes away, so an
/// aborted test run leaves no process holding its addresses.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// `IP:5050`, the HTTP API of a node bound to `ip`.
pub fn http_addr(ip: &str) -> String {
    format!("{ip}:5050")
}

/// `IP:5052`, the cluster port of a server bound to `ip`.
pub fn cluster_addr(ip: &str) -> String {
    format!("{ip}:5052")
}

/// A join token a bootstrapped server wrote under its data dir (`server-token`, `agent-token`).
pub fn read_token(data_dir: &Path, role: &str) -> String {
    let path = data_dir.join(format!("{role}-token"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// How long a daemon the tests start may take to answer.
pub const DAEMON_READY: Duration = Duration::from_secs(30);

/// A server `s1` that bootstraps a cluster on `ip`, its data dir `s1` in `sb`, with `extra`
/// arguments; returns once it answers.
pub fn bootstrap_server(sb: &Sandbox, ip: &str, extra: &[&str]) -> Daemon {
    let dir = sb.join("s1").display().to_string();
    let mut args = vec![
        "server",
        "--bootstrap",
        "--data-dir",
        &dir,
        "--bind",
        ip,
        "--name",
        "s1",
    ];
    args.extend_from_slice(extra);
    let mut server = sb.spawn("s1", &args);
    server.wait_ready(DAEMON_READY);
    server
}

/// One bootstrapped server `s1` and one agent `a1` joined to it, as separate processes in `sb`:
/// the agent offers 4 cpus, 4 GiB and the ports `ports`, heartbeats every half second, and has
/// a bridge of its own (`tpe2e-LABEL` on `subnet`).
pub struct OneAgentCluster {
    pub server: Daemon,
    pub agent: Daemon,
    /// How the agent starts again on its data dir.
    pub agent_args: Vec<String>,
    /// The server's HTTP API, `IP:5050`.
    pub master: String,
}

impl OneAgentCluster {
    pub fn start(sb: &Sandbox, label: &str, ips: (&str, &str), subnet: &str, ports: &str) -> OneAgentCluster {
        let (server_ip, agent_ip) = ips;
        let server = bootstrap_server(sb, server_ip, &[]);
        let token = read_token(&sb.join("s1"), "agent");
        let agent_dir = sb.join("a1").display().to_string();
        let bridge = format!("tpe2e-{label}");
        let common: Vec<String> = [
            "--data-dir",
            &agent_dir,
            "--bind",
            agent_ip,
            "--name",
            "a1",
            "--cpus",
            "4",
            "--mem",
            "4096",
            "--ports",
            ports,
            "--heartbeat-secs",
            "0.5",
            "--bridge",
            &bridge,
            "--bridge-subnet",
            subnet,
        ]
        .map(String::from)
        .to_vec();
        let mut join = vec!["join".to_string(), cluster_addr(server_ip), "--token".into(), token];
        join.extend(common.iter().cloned());
        let mut agent = sb.spawn("a1", &join);
        agent.wait_ready(DAEMON_READY);
        let mut agent_args = vec!["agent".to_string()];
        agent_args.extend(common);
        OneAgentCluster {
            server,
            agent,
            agent_args,
            master: http_addr(server_ip),
        }
    }
}

/// The environment variable that marks the processes of one test's tasks.
pub const MARKER_VAR: &str = "TEPUI_E2E_MARKER";

/// Kills, when dropped, every process whose environment holds `TEPUI_E2E_MARKER=<marker>`.
/// Tasks outlive their agents (they run under shims), so a test that fails half-way would
/// otherwise leave them running, holding ports the next run needs. Put [`MarkedProcesses::value`]
/// into the tasks' environment; declare the guard before the daemons so it runs after them.
pub struct MarkedProcesses {
    marker: String,
}

impl MarkedProcesses {
    pub fn new(label: &str) -> MarkedProcesses {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        MarkedProcesses {
            marker: format!("{label}-{}-{nanos}", std::process::id()),
        }
    }

    /// The value to give [`MARKER_VAR`] in the tasks' environment.
    pub fn value(&self) -> &str {
        &self.marker
    }

    /// The marked processes alive now.
    pub fn pids(&self) -> Vec<i32> {
        let want = format!("{MARKER_VAR}={}", self.marker).into_bytes();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == want.as_slice()))
            })
            .collect()
    }
}

impl Drop for MarkedProcesses {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill(2) on a process of this test's tasks (its marker is in its environment).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Panics unless the test runs as root (it runs tasks: namespaces, cgroups, mounts).
pub fn need_root() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs tasks and needs root");
    }
}

/// The value of `var` in the environment of process `pid`, if it has it.
pub fn process_env(pid: i32, var: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// An agent named `name` on `ip`, joined with the agent token of the bootstrapped server `s1`
/// (data dir `<sandbox>/s1`, cluster port on `server_ip`), with `extra` flags. Returns it ready.
/// `tepui dev` in `sb` on `ip` with the port range `ports` and a bridge of the test's own
/// (`bridge`, `subnet`), ready; and its data dir.
pub fn spawn_dev(
    sb: &Sandbox,
    name: &str,
    ip: &str,
    ports: &str,
    bridge: (&str, &str),
    ready: Duration,
) -> (Daemon, PathBuf) {
    spawn_dev_with(sb, name, ip, ports, bridge, &[], ready)
}

/// [`spawn_dev`] with more flags.
pub fn spawn_dev_with(
    sb: &Sandbox,
    name: &str,
    ip: &str,
    ports: &str,
    bridge: (&str, &str),
    extra: &[&str],
    ready: Duration,
) -> (Daemon, PathBuf) {
    let data = sb.join("data");
    let data_arg = data.display().to_string();
    let mut args = vec![
        "dev",
        "--data-dir",
        &data_arg,
        "--bind",
        ip,
        "--name",
        name,
        "--ports",
        ports,
        "--bridge",
        bridge.0,
        "--bridge-subnet",
        bridge.1,
    ];
    args.extend_from_slice(extra);
    let mut dev = sb.spawn("dev", &args);
    dev.wait_ready(ready);
    (dev, data)
}

pub fn spawn_agent(sb: &Sandbox, server_ip: &str, name: &str, ip: &str, extra: &[&str], ready: Duration) -> Daemon {
    spawn_agent_bin(sb, &tepui_bin(), server_ip, name, ip, extra, ready)
}

/// [`spawn_agent`] of another tepui binary.
pub fn spawn_agent_bin(
    sb: &Sandbox,
    bin: &Path,
    server_ip: &str,
    name: &str,
    ip: &str,
    extra: &[&str],
    ready: Duration,
) -> Daemon {
    let token = read_token(&sb.join("s1"), "agent");
    let dir = sb.join(name).display().to_string();
    let mut args: Vec<String> = [
        "join",
        &cluster_addr(server_ip),
        "--token",
        &token,
        "--data-dir",
        &dir,
        "--bind",
        ip,
        "--name",
        name,
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut agent = sb.spawn_bin(name, bin, &args);
    agent.wait_ready(ready);
    agent
}

/// Servers `s1`, `s2`, ... on `ips`, each with `extra` flags: `s1` bootstraps, the others join
/// with its server token. Returns them ready, in order.
pub fn spawn_servers(sb: &Sandbox, ips: &[&str], extra: &[&str], ready: Duration) -> Vec<Daemon> {
    spawn_servers_bin(sb, &tepui_bin(), ips, extra, ready)
}

/// [`spawn_servers`] of another tepui binary.
pub fn spawn_servers_bin(sb: &Sandbox, bin: &Path, ips: &[&str], extra: &[&str], ready: Duration) -> Vec<Daemon> {
    let flags = |name: &str, ip: &str| -> Vec<String> {
        let dir = sb.join(name).display().to_string();
        let mut f: Vec<String> = ["--data-dir", &dir, "--bind", ip, "--name", name]
            .map(String::from)
            .to_vec();
        f.extend(extra.iter().map(|s| s.to_string()));
        f
    };
    let mut args = vec!["server".to_string(), "--bootstrap".into()];
    args.extend(flags("s1", ips[0]));
    let mut servers = vec![sb.spawn_bin("s1", bin, &args)];
    servers[0].wait_ready(ready);
    let token = read_token(&sb.join("s1"), "server");
    for (i, ip) in ips.iter().enumerate().skip(1) {
        let name = format!("s{}", i + 1);
        let mut args = vec![
            "join".to_string(),
            cluster_addr(ips[0]),
            "--token".into(),
            token.clone(),
        ];
        args.extend(flags(&name, ip));
        servers.push(sb.spawn_bin(&name, bin, &args));
    }
    for s in servers.iter_mut() {
        s.wait_ready(ready);
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_path(r"/x\9"), r"/x\9");
    }

    /// What a killed agent leaves: mounts inside mounts under the sandbox's dir.
    #[test]
    fn a_dropped_sandbox_unmounts_what_is_mounted_under_it() {
        let sandbox = Sandbox::new("unmount");
        let outer = sandbox.join("tasks/one/rootfs");
        let inner = outer.join("proc");
        let mounted = |p: &Path| {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|f| Path::new(&unescape_mount_path(f)) == p)
        };
        std::fs::create_dir_all(&outer).unwrap();
        let tmpfs = |p: &Path| {
            let target = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: valid NUL-terminated strings; no data argument.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            assert_eq!(
                rc,
                0,
                "mount tmpfs on {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        };
        tmpfs(&outer);
        std::fs::create_dir_all(&inner).unwrap();
        tmpfs(&inner);
        assert!(mounted(&outer) && mounted(&inner));
        let dir = sandbox.path().to_path_buf();
        drop(sandbox);
        assert!(!mounted(&inner) && !mounted(&outer), "both are unmounted");
        assert!(!dir.exists(), "and the dir is removed");
    }
    /// A file in e2e/tests that cmd/tepui/Cargo.toml does not list would never run.
    #[test]
    fn every_e2e_test_file_is_a_test_target_of_the_tepui_package() {
        let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(e2e.join("../cmd/tepui/Cargo.toml")).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(e2e.join("tests"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".rs"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for f in files {
            let entry = format!("path = \"../../e2e/tests/{f}\"");
            assert!(
                manifest.contains(&entry),
                "e2e/tests/{f} is not a [[test]] of cmd/tepui/Cargo.toml; add one with {entry}"
            );
        }
    }
}
