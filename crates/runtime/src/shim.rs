//! The shim: one small single-threaded process per task, like conmon. It detaches from the
//! agent (double fork and setsid, so a dead agent leaves the task running), builds and
//! starts the container with libcontainer, copies the task's stdout and stderr into
//! size-rotated files, answers the agent on a unix socket (status, wait, kill, exec), and
//! when the container's init exits it records the final status, deletes the container,
//! its cgroup and its network, and exits.
//!
//! One thread on purpose: libcontainer's builder is not `Send`, changes the working
//! directory while it builds, and forks; and the container's init is this process's child,
//! so this is the process that must reap it. Signals arrive through a self-pipe, not a
//! blocked mask, because the container inherits the signal mask of the process that
//! forks it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tepui_common::error_chain;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::proto::{self, LineReader, Reply, Request};
use crate::sandbox::{self, NetMode, Sandbox, ShimPlan};
use crate::seccomp::SeccompExecutor;
use crate::spec::{ExecSpec, Reason, TaskState, TaskStatus};
use crate::{cgroup, net, volumes};

/// How long the shim keeps reading the task's output after its init exited.
const DRAIN: Duration = Duration::from_secs(2);

/// The line the shim writes on its ready descriptor.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ready {
    pub ok: bool,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Entry point of `tepui shim --sandbox DIR [--ready-fd N]`, and of the agent's spawner of
/// shims, `tepui shim --spawner` (see the spawner module); returns the exit code.
///
/// Call it before any other thread exists (before starting an async runtime): it forks
/// and keeps running Rust code in the child.
pub fn shim_main<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut sandbox: Option<PathBuf> = None;
    let mut ready_fd: Option<RawFd> = None;
    let mut spawner = false;
    let mut it = args.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--sandbox") => sandbox = it.next().map(PathBuf::from),
            Some("--ready-fd") => ready_fd = it.next().and_then(|v| v.to_str()?.parse().ok()),
            Some("--spawner") => spawner = true,
            _ => {}
        }
    }
    if threads() != Some(1) {
        eprintln!("shim: must start single-threaded");
        return 2;
    }
    if spawner {
        return crate::spawner::serve(0, detached_main);
    }
    let Some(sandbox) = sandbox else {
        eprintln!("shim: usage: shim --sandbox DIR [--ready-fd N] | shim --spawner");
        return 2;
    };
    // SAFETY: single-threaded (checked above); the parent only exits.
    if let Err(e) = unsafe { daemonize() } {
        eprintln!("shim: daemonize: {e}");
        return 1;
    }
    detached_main(sandbox, ready_fd)
}

/// The shim proper, once detached from the agent (executed or forked by the spawner).
fn detached_main(sandbox: PathBuf, ready_fd: Option<RawFd>) -> i32 {
    // An executed shim gets the ready pipe as its stdout; stdio is pointed at the log later,
    // so it moves to a descriptor of its own that the task's processes do not inherit.
    let ready_fd = match ready_fd {
        Some(fd @ 0..=2) => match nix::fcntl::fcntl(
            // SAFETY: the descriptor is open for as long as this borrow.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
        ) {
            Ok(moved) => Some(moved),
            Err(e) => {
                eprintln!("shim: ready pipe: {e}");
                return 1;
            }
        },
        other => other,
    };
    // SAFETY: the agent passed this descriptor for us alone; nothing else owns it.
    let ready = ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    match run(Sandbox::new(sandbox), ready) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("shim failed: {e}");
            1
        }
    }
}

fn threads() -> Option<usize> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Double fork: the agent reaps our first process at once; the survivor is in its own
/// session, a child of init (or the nearest subreaper), not of the agent.
unsafe fn daemonize() -> nix::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: the caller guarantees a single thread.
    match unsafe { fork()? } {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    setsid()?;
    // SAFETY: still single-threaded.
    match unsafe { fork()? } {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    Ok(())
}

fn redirect_stdio(sb: &Sandbox) -> io::Result<()> {
    let null = File::open("/dev/null")?;
    let log = OpenOptions::new().create(true).append(true).open(sb.shim_log())?;
    // SAFETY: dup2 onto the standard descriptors of this process.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

/// Logs go to the shim's log through their own descriptor, not fd 2: libcontainer logs
/// from the container's init too, after fd 2 became the task's stderr.
fn init_tracing(sb: &Sandbox) {
    let filter = std::env::var("TEPUI_SHIM_LOG").unwrap_or_else(|_| "info".into());
    let Ok(file) = OpenOptions::new().create(true).append(true).open(sb.shim_log()) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}

static SIG_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls: errno save/restore and write(2) to a pipe.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = SIG_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            libc::write(fd, &b as *const u8 as *const libc::c_void, 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Routes SIGCHLD, SIGTERM, SIGINT and SIGHUP to a non-blocking pipe.
fn install_signals() -> io::Result<OwnedFd> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).map_err(io::Error::from)?;
    SIG_WRITE.store(w.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(w); // lives as long as the process
    for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that is async-signal-safe (see on_signal).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(r)
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 layout).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Puts every ignored signal but SIGPIPE back to its default. Ignored dispositions survive
/// exec, and the container inherits this process's: a shim started from a Rust program
/// arrives with glibc's internal signals (32, 33) ignored. The raw system call, because
/// glibc's `sigaction` refuses those two.
fn reset_ignored_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        let dfl = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: rt_sigaction with valid pointers to structs of the kernel's layout and
        // the kernel's sigset size (8 bytes).
        unsafe {
            if libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old,
                8,
            ) == 0
                && old.handler == libc::SIG_IGN
            {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8,
                );
            }
        }
    }
}

/// Runs `f` with SIGPIPE at its default: the container inherits dispositions of ignored
/// signals, and the Rust runtime ignores SIGPIPE in this process.
fn with_default_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: single-threaded; restored right after.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, old) };
    out
}

fn report(ready: &mut Option<File>, r: &Ready) {
    if let Some(mut f) = ready.take() {
        if let Ok(mut line) = serde_json::to_vec(r) {
            line.push(b'\n');
            // The agent may be gone; SIGPIPE is ignored here, so this is only an error.
            let _ = f.write_all(&line);
        }
    }
}

fn run(sb: Sandbox, mut ready: Option<File>) -> Result<(), String> {
    std::env::set_current_dir(&sb.run).map_err(|e| format!("chdir {}: {e}", sb.run.display()))?;
    redirect_stdio(&sb).map_err(|e| format!("stdio: {e}"))?;
    init_tracing(&sb);

    // The lock says "a shim lives here" for as long as this process does.
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(sb.shim_lock())
        .map_err(|e| format!("open lock: {e}"))?;
    // SAFETY: flock on our own descriptor.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("lock: {}", io::Error::last_os_error()));
    }
    let _ = sandbox::write_atomic(&sb.shim_pid(), std::process::id().to_string().as_bytes());

    let plan: ShimPlan = sandbox::read_json(&sb.plan()).map_err(|e| format!("read plan: {e}"))?;
    let span = tracing::info_span!("shim", task = %plan.id);
    let _enter = span.enter();
    let mut status = TaskStatus::new(&plan.id, TaskState::Starting);
    status.ip = match &plan.net {
        NetMode::Bridge(n) => Some(n.ip),
        _ => None,
    };
    let _ = sandbox::write_json(&sb.state(), &status);

    reset_ignored_signals();
    let sig_r = install_signals().map_err(|e| format!("signals: {e}"))?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let null = File::open("/dev/null").map_err(|e| e.to_string())?;
    let _ = fs::create_dir_all(sb.lc_root());

    let started = start_container(&sb, &plan, null, out_w, err_w);
    let (container, pid) = match started {
        Ok(c) => c,
        Err(message) => {
            tracing::error!(%message, "task failed to start");
            if let NetMode::Bridge(n) = &plan.net {
                for e in net::teardown_task(n, &plan.id) {
                    tracing::warn!("network teardown: {e}");
                }
            }
            for e in cgroup::kill_and_remove(&plan.cgroup_path) {
                tracing::warn!("cgroup cleanup: {e}");
            }
            let _ = fs::remove_dir_all(sb.lc_root().join(&plan.id));
            sandbox::unmount_secrets(&sb.bundle());
            status.state = TaskState::Failed;
            status.reason = Some(Reason::StartFailed);
            status.message = Some(message.clone());
            status.finished_at = Some(SystemTime::now());
            let _ = sandbox::write_json(&sb.status(), &status);
            report(
                &mut ready,
                &Ready {
                    ok: false,
                    pid: None,
                    message: Some(message),
                },
            );
            return Ok(());
        }
    };
    status.state = TaskState::Running;
    status.pid = Some(pid);
    status.started_at = Some(SystemTime::now());

    let _ = fs::remove_file(Sandbox::SOCKET);
    let listener = UnixListener::bind(Sandbox::SOCKET).map_err(|e| format!("bind socket: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let _ = sandbox::write_json(&sb.state(), &status);
    tracing::info!(pid, "task running");
    report(
        &mut ready,
        &Ready {
            ok: true,
            pid: Some(pid),
            message: None,
        },
    );

    let mut shim = Shim {
        stdout: Some((
            out_r,
            RotatingLog::open(&sb.log("stdout"), plan.log_max_bytes, plan.log_max_files)?,
        )),
        stderr: Some((
            err_r,
            RotatingLog::open(&sb.log("stderr"), plan.log_max_bytes, plan.log_max_files)?,
        )),
        sb,
        plan,
        container,
        pid,
        status,
        listener,
        sig_r,
        waiters: Vec::new(),
        execs: HashMap::new(),
        exec_seq: 0,
        kill_deadline: None,
        killed: false,
        exit: None,
        drain_deadline: None,
    };
    shim.run_loop();
    shim.finish();
    drop(lock);
    Ok(())
}

/// The task's compiled seccomp filter, installed before its program (or an exec's) runs. A
/// sandbox without one runs nothing.
fn seccomp_executor(sb: &Sandbox) -> Result<SeccompExecutor, String> {
    let bpf = fs::read(sb.seccomp()).map_err(|e| format!("the seccomp filter {}: {e}", sb.seccomp().display()))?;
    Ok(SeccompExecutor::new(bpf))
}

/// Builds (created state), wires the network, starts. Returns the container and its init.
fn start_container(
    sb: &Sandbox,
    plan: &ShimPlan,
    stdin: File,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<(Container, i32), String> {
    // Host volumes are opened now, beneath their allowed roots, and held open until the
    // container's mounts are checked against them.
    let mut opened = Vec::new();
    for v in &plan.host_volumes {
        let (fd, id) = volumes::open_beneath(v)?;
        opened.push((fd, (v.clone(), id)));
    }
    let builder = ContainerBuilder::new(plan.id.clone(), SyscallType::default())
        .with_executor(seccomp_executor(sb)?)
        .with_root_path(sb.lc_root())
        .map_err(|e| error_chain(&e))?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .validate_id()
        .map_err(|e| error_chain(&e))?
        .as_init(sb.bundle())
        .with_systemd(false)
        .with_detach(true);
    let mut container = with_default_sigpipe(|| builder.build()).map_err(|e| error_chain(&e))?;
    let pid = container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| "container has no init pid".to_string())?;
    let checks: Vec<_> = opened.iter().map(|(_, c)| c.clone()).collect();
    let wired = volumes::verify_mounted(pid, &checks).and_then(|()| {
        match &plan.net {
            NetMode::Bridge(n) => net::setup_task(n, &plan.id, pid),
            NetMode::None => net::setup_loopback(pid),
            NetMode::Host | NetMode::Joined => Ok(()),
        }
        .map_err(|e| e.to_string())
    });
    drop(opened);
    let started = wired.and_then(|()| container.start().map_err(|e| error_chain(&e)));
    if let Err(e) = started {
        let _ = container.delete(true);
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(e);
    }
    Ok((container, pid))
}

/// A log file rotated by size: `name`, `name.1` (newer) .. `name.{keep-1}` (oldest).
struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    keep: u32,
}

impl RotatingLog {
    fn open(path: &Path, max: u64, keep: u32) -> Result<RotatingLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.size()).unwrap_or(0);
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            max: max.max(1),
            keep: keep.max(1),
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.size >= self.max {
                self.rotate();
            }
            let room = (self.max - self.size).max(1) as usize;
            let n = room.min(data.len());
            if let Err(e) = self.file.write_all(&data[..n]) {
                tracing::warn!("write {}: {e}", self.path.display());
                return;
            }
            self.size += n as u64;
            data = &data[n..];
        }
    }

    fn rotate(&mut self) {
        if self.keep <= 1 {
            let _ = self.file.set_len(0);
            self.size = 0;
            return;
        }
        for n in (1..self.keep - 1).rev() {
            let _ = fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        let _ = fs::rename(&self.path, self.rotated(1));
        match OpenOptions::new().create(true).append(true).open(&self.path) {
            Ok(f) => {
                self.file = f;
                self.size = 0;
            }
            Err(e) => tracing::warn!("reopen {}: {e}", self.path.display()),
        }
    }
}

struct Shim {
    sb: Sandbox,
    plan: ShimPlan,
    container: Container,
    pid: i32,
    status: TaskStatus,
    listener: UnixListener,
    sig_r: OwnedFd,
    stdout: Option<(OwnedFd, RotatingLog)>,
    stderr: Option<(OwnedFd, RotatingLog)>,
    waiters: Vec<UnixStream>,
    execs: HashMap<i32, UnixStream>,
    exec_seq: u64,
    kill_deadline: Option<Instant>,
    killed: bool,
    exit: Option<WaitStatus>,
    drain_deadline: Option<Instant>,
}

impl Shim {
    fn done(&self) -> bool {
        self.exit.is_some()
            && ((self.stdout.is_none() && self.stderr.is_none())
                || self.drain_deadline.is_some_and(|d| Instant::now() >= d))
    }

    fn run_loop(&mut self) {
        while !self.done() {
            let mut fds = vec![
                libc::pollfd {
                    fd: self.sig_r.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for p in [&self.stdout, &self.stderr] {
                fds.push(libc::pollfd {
                    fd: p.as_ref().map(|(fd, _)| fd.as_raw_fd()).unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let now = Instant::now();
            let deadline = [self.kill_deadline, self.drain_deadline].into_iter().flatten().min();
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1,
                None => -1,
            };
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("poll: {e}");
                }
            }
            if fds[0].revents != 0 {
                self.on_signals();
            }
            if fds[2].revents != 0 {
                Self::pump(&mut self.stdout);
            }
            if fds[3].revents != 0 {
                Self::pump(&mut self.stderr);
            }
            if fds[1].revents != 0 {
                self.accept();
            }
            if let Some(d) = self.kill_deadline {
                if Instant::now() >= d && self.exit.is_none() {
                    tracing::info!(pid = self.pid, "grace period over, SIGKILL");
                    // SAFETY: kill(2) on our own child, which we have not reaped yet.
                    unsafe { libc::kill(self.pid, libc::SIGKILL) };
                    self.kill_deadline = None;
                }
            }
        }
    }

    fn pump(slot: &mut Option<(OwnedFd, RotatingLog)>) {
        let Some((fd, log)) = slot.as_mut() else {
            return;
        };
        let mut buf = [0u8; 65536];
        match nix::unistd::read(&*fd, &mut buf) {
            Ok(0) => *slot = None,
            Ok(n) => log.write(&buf[..n]),
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            Err(e) => {
                tracing::warn!("read task output: {e}");
                *slot = None;
            }
        }
    }

    fn on_signals(&mut self) {
        let mut buf = [0u8; 64];
        let mut term = false;
        while let Ok(n) = nix::unistd::read(&self.sig_r, &mut buf) {
            if n == 0 {
                break;
            }
            term |= buf[..n]
                .iter()
                .any(|s| [libc::SIGTERM, libc::SIGINT].contains(&(*s as i32)));
        }
        self.reap();
        if term {
            tracing::info!("shim got SIGTERM, killing the task");
            self.request_kill(self.plan.kill_grace);
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(ws) => {
                    let Some(pid) = ws.pid().map(|p| p.as_raw()) else {
                        continue;
                    };
                    let code = match ws {
                        WaitStatus::Exited(_, c) => Some(c),
                        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
                        _ => None,
                    };
                    if pid == self.pid && code.is_some() {
                        tracing::info!(?ws, "task init exited");
                        self.exit = Some(ws);
                        self.kill_deadline = None;
                        self.drain_deadline = Some(Instant::now() + DRAIN);
                    } else if let (Some(code), Some(s)) = (code, self.execs.remove(&pid)) {
                        let _ = proto::send_line(s.as_raw_fd(), &Reply::ExecExited { code }, &[]);
                    }
                }
            }
        }
    }

    fn request_kill(&mut self, grace: Duration) {
        if self.exit.is_some() {
            return;
        }
        self.killed = true;
        let sig = if grace.is_zero() { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.pid, sig) };
        if sig == libc::SIGTERM && !handles_sigterm(self.pid) {
            // The kernel drops a signal that a namespace's init neither catches nor ignores,
            // where any other process would die of it. So SIGTERM goes to the task's other
            // processes as well (as Mesos signals the task's tree), and an init alone gets what
            // SIGTERM would have done to it: the end, now rather than after the grace period.
            let others: Vec<i32> = cgroup::procs(&self.plan.cgroup_path)
                .into_iter()
                .filter(|p| *p != self.pid)
                .collect();
            tracing::info!(
                pid = self.pid,
                others = others.len(),
                "the task's init leaves SIGTERM to its default"
            );
            let (targets, signal) = if others.is_empty() {
                (vec![self.pid], libc::SIGKILL)
            } else {
                (others, libc::SIGTERM)
            };
            for p in targets {
                // SAFETY: kill(2) on our child or a pid read from the task's own cgroup; at
                // worst ESRCH.
                unsafe { libc::kill(p, signal) };
            }
        }
        if sig == libc::SIGTERM {
            let d = Instant::now() + grace;
            self.kill_deadline = Some(self.kill_deadline.map_or(d, |old| old.min(d)));
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => self.serve(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn serve(&mut self, s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut reader = LineReader::new();
        let req = match reader.read_line_blocking(&s) {
            Ok(Some(line)) => serde_json::from_slice::<Request>(&line),
            _ => return,
        };
        let fd = s.as_raw_fd();
        match req {
            Err(e) => {
                let _ = proto::send_line(
                    fd,
                    &Reply::Error {
                        message: format!("bad request: {e}"),
                    },
                    &[],
                );
            }
            Ok(Request::Status) => {
                let _ = proto::send_line(fd, &Reply::Status(self.status.clone()), &[]);
            }
            Ok(Request::Kill { grace }) => {
                self.request_kill(grace.unwrap_or(self.plan.kill_grace));
                let _ = proto::send_line(fd, &Reply::Ok, &[]);
            }
            Ok(Request::Wait) => self.waiters.push(s),
            Ok(Request::Exec(spec)) => {
                let fds = std::mem::take(&mut reader.fds);
                match self.exec(&spec, fds) {
                    Ok((pid, pty)) => {
                        let raw: Vec<RawFd> = pty.iter().map(|f| f.as_raw_fd()).collect();
                        if proto::send_line(fd, &Reply::ExecStarted { pid }, &raw).is_ok() {
                            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                            self.execs.insert(pid, s);
                        }
                    }
                    Err(message) => {
                        let _ = proto::send_line(fd, &Reply::Error { message }, &[]);
                    }
                }
            }
        }
    }

    /// Runs a process in the container's namespaces and cgroup (libcontainer's tenant
    /// builder), with the client's stdio or on a new terminal whose master side is returned.
    fn exec(&mut self, spec: &ExecSpec, mut fds: Vec<OwnedFd>) -> Result<(i32, Option<OwnedFd>), String> {
        if self.exit.is_some() || self.killed {
            return Err("the task is not running".into());
        }
        if spec.args.is_empty() {
            return Err("no command given".into());
        }
        if !spec.tty && fds.len() != 3 {
            return Err(format!("expected 3 descriptors, got {}", fds.len()));
        }
        self.exec_seq += 1;
        let seq = self.exec_seq;
        // The process is the task's own, with the command, environment and terminal changed.
        let config: serde_json::Value =
            sandbox::read_json(&self.sb.bundle().join("config.json")).map_err(|e| e.to_string())?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(spec.args);
        process["terminal"] = serde_json::json!(spec.tty);
        if let Some(cwd) = &spec.cwd {
            process["cwd"] = serde_json::json!(cwd);
        }
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        for (k, v) in &spec.env {
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
            env.push(format!("{k}={v}"));
        }
        if spec.tty && !spec.env.contains_key("TERM") {
            env.push("TERM=xterm".into());
        }
        process["env"] = serde_json::json!(env);
        let process_path = self.sb.run.join(format!("exec-{seq}.json"));
        sandbox::write_json(&process_path, &process).map_err(|e| e.to_string())?;

        let console_path = socket_path(&self.sb.run, &format!("console-{seq}.sock"));
        let console = if spec.tty {
            let _ = fs::remove_file(&console_path);
            Some(UnixListener::bind(&console_path).map_err(|e| format!("console socket: {e}"))?)
        } else {
            None
        };

        let mut builder = ContainerBuilder::new(self.plan.id.clone(), SyscallType::default())
            .with_executor(seccomp_executor(&self.sb)?)
            .with_root_path(self.sb.lc_root())
            .map_err(|e| error_chain(&e))?;
        if spec.tty {
            builder = builder.with_console_socket(Some(&console_path));
        } else {
            let stderr = fds.pop().expect("three descriptors");
            let stdout = fds.pop().expect("three descriptors");
            let stdin = fds.pop().expect("three descriptors");
            builder = builder.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr);
        }
        let tenant = builder
            .as_tenant()
            .with_process(Some(&process_path))
            .with_detach(spec.tty);
        let built = with_default_sigpipe(|| tenant.build());
        let _ = fs::remove_file(&process_path);
        let result = match built {
            Ok(pid) => {
                let pty = match &console {
                    Some(l) => match receive_pty(l) {
                        Ok(fd) => Some(fd),
                        Err(e) => {
                            // SAFETY: kill(2) on the child we just made.
                            unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
                            let _ = fs::remove_file(&console_path);
                            return Err(format!("terminal: {e}"));
                        }
                    },
                    None => None,
                };
                Ok((pid.as_raw(), pty))
            }
            Err(e) => Err(error_chain(&e)),
        };
        if console.is_some() {
            let _ = fs::remove_file(&console_path);
        }
        result
    }

    fn finish(&mut self) {
        let oom = cgroup::oom_kills(&self.plan.cgroup_path) > 0;
        if let Err(e) = self.container.delete(true) {
            tracing::warn!("delete container: {}", error_chain(&e));
        }
        for e in cgroup::kill_and_remove(&self.plan.cgroup_path) {
            tracing::warn!("cgroup cleanup: {e}");
        }
        let _ = fs::remove_dir_all(self.sb.lc_root().join(&self.plan.id));
        sandbox::unmount_secrets(&self.sb.bundle());
        if let NetMode::Bridge(n) = &self.plan.net {
            for e in net::teardown_task(n, &self.plan.id) {
                tracing::warn!("network teardown: {e}");
            }
        }
        let mut st = self.status.clone();
        st.finished_at = Some(SystemTime::now());
        st.oom_killed = oom;
        match self.exit {
            Some(WaitStatus::Exited(_, c)) => st.exit_code = Some(c),
            Some(WaitStatus::Signaled(_, s, _)) => st.signal = Some(s as i32),
            _ => {}
        }
        let (state, reason, message) = if self.killed {
            (TaskState::Killed, None, None)
        } else if st.exit_code == Some(0) {
            (TaskState::Finished, None, None)
        } else if oom {
            let mb = self.plan.mem_mb.map(|m| format!(" of {m} MB")).unwrap_or_default();
            (
                TaskState::Failed,
                Some(Reason::MemoryLimit),
                Some(format!("killed by the kernel: out of memory at its limit{mb}")),
            )
        } else if let Some(c) = st.exit_code {
            (
                TaskState::Failed,
                Some(Reason::CommandFailed),
                Some(format!("exited with code {c}")),
            )
        } else {
            let s = st.signal.unwrap_or(0);
            (
                TaskState::Failed,
                Some(Reason::Signaled),
                Some(format!("killed by signal {s}")),
            )
        };
        st.state = state;
        st.reason = reason;
        st.message = message;
        if let Err(e) = sandbox::write_json(&self.sb.status(), &st) {
            tracing::error!("write final status: {e}");
        }
        tracing::info!(state = ?st.state, exit_code = ?st.exit_code, signal = ?st.signal, oom, "task ended");
        for w in self.waiters.drain(..) {
            let _ = proto::send_line(w.as_raw_fd(), &Reply::Status(st.clone()), &[]);
        }
        self.execs.clear();
        let _ = fs::remove_file(Sandbox::SOCKET);
        self.status = st;
    }
}

/// Whether `pid` catches or ignores SIGTERM (`SigCgt`, `SigIgn` in its status); when that
/// cannot be read, it is taken to, which leaves the kill as it was asked.
fn handles_sigterm(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let bit = 1u64 << (libc::SIGTERM - 1);
    match (mask("SigCgt:"), mask("SigIgn:")) {
        (Some(caught), Some(ignored)) => (caught | ignored) & bit != 0,
        _ => true,
    }
}

fn receive_pty(l: &UnixListener) -> io::Result<OwnedFd> {
    // libcontainer connected and sent the terminal while it built the process; never
    // block the shim on it for long all the same.
    let mut pfd = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    if unsafe { libc::poll(&mut pfd, 1, 5000) } != 1 {
        return Err(io::Error::other("libcontainer did not connect the terminal"));
    }
    let (s, _) = l.accept()?;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 256];
    let (_, mut fds) = proto::recv_some(s.as_raw_fd(), &mut buf).map_err(io::Error::from)?;
    fds.pop().ok_or_else(|| io::Error::other("no terminal descriptor came"))
}

/// Where a unix socket named `name` for a task goes: in its sandbox `dir` when the path fits a
/// socket address (108 bytes with the NUL; a Marathon instance id alone is 60 characters), else
/// in a private directory under /run, named by this shim's pid.
fn socket_path(dir: &Path, name: &str) -> PathBuf {
    const SUN_PATH_MAX: usize = 107;
    let beside = dir.join(name);
    if beside.as_os_str().len() <= SUN_PATH_MAX {
        return beside;
    }
    let short = Path::new(SHORT_SOCKET_DIR);
    if fs::create_dir_all(short).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(short, fs::Permissions::from_mode(0o700));
    }
    short.join(format!("{}-{name}", std::process::id()))
}

/// Sockets whose sandbox path is too long to bind.
const SHORT_SOCKET_DIR: &str = "/run/tepui/sockets";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_fit_a_socket_address() {
        let short = Path::new("/var/lib/tepui/tasks/web.1");
        assert_eq!(socket_path(short, "console-1.sock"), short.join("console-1.sock"));
        let long = PathBuf::from(format!(
            "/var/lib/tepui/data/tasks/{}",
            "shop_frontend-web.instance-".repeat(3)
        ));
        let path = socket_path(&long, "console-1.sock");
        assert!(path.starts_with(SHORT_SOCKET_DIR), "{}", path.display());
        assert!(path.as_os_str().len() <= 107);
        assert!(path
            .to_string_lossy()
            .ends_with(&format!("{}-console-1.sock", std::process::id())));
    }

    #[test]
    fn logs_rotate_by_size_and_keep_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("stdout");
        let mut log = RotatingLog::open(&base, 10, 3).unwrap();
        log.write(b"0123456789abcdefghij");
        log.write(b"ABCDEFGHIJ");
        log.write(b"xyz");
        let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(base.clone()), "xyz");
        assert_eq!(read(log.rotated(1)), "ABCDEFGHIJ");
        assert_eq!(read(log.rotated(2)), "abcdefghij");
        // The oldest is gone: only three files are kept.
        assert!(!log.rotated(3).exists());
    }
}
