//! Starting shims by forking a small, already-running process instead of executing the
//! binary for every task.
//!
//! Executing `tepui shim` costs about 2 ms of CPU per task before the shim does anything: the
//! dynamic loader applies some 65,000 relocations, copying a megabyte of the binary's pages,
//! and that copy then stays private to each shim for its whole life. So the agent starts one
//! spawner (`tepui shim --spawner`, single-threaded, its socket on stdin) and sends it, for
//! each task, the sandbox directory and the write end of the task's ready pipe. The spawner
//! forks the shim, which starts a session of its own, and answers. The shims share the
//! spawner's relocated pages copy-on-write.
//!
//! One fork, not an executed shim's two: each fork copies the parent's page tables and each
//! exit tears a copy down, and those were a tenth of all CPU in a deployment of 1000
//! instances. The shims are the spawner's children while it lives; it ignores SIGCHLD, so the
//! kernel reaps those that end. The spawner is the agent's child and ends with it (end of
//! file on its socket), and its shims go on, in their own sessions, children of init (or the
//! nearest subreaper) as an executed shim is. If the spawner cannot be reached the agent
//! starts another, and if that fails too the caller executes the shim directly.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use nix::unistd::{fork, setsid, ForkResult};

/// The longest answer the agent waits for; a fork takes well under a millisecond.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for a sandbox path.
const MAX_REQUEST: usize = 4096;
const OK: &[u8] = b"ok";

/// The agent's handle on its spawner, started on first use.
pub(crate) struct Spawner {
    program: PathBuf,
    args: Vec<String>,
    conn: Mutex<Option<Conn>>,
}

struct Conn {
    sock: OwnedFd,
    child: Child,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing the socket ends the spawner; reaping it leaves no zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a request failed: the spawner refused it (it stays usable), or the connection broke.
enum Failure {
    Refused(String),
    Broken(io::Error),
}

impl Spawner {
    pub(crate) fn new(program: PathBuf, args: Vec<String>) -> Spawner {
        Spawner {
            program,
            args,
            conn: Mutex::new(None),
        }
    }

    /// Starts the shim of `sandbox`, whose ready pipe is `ready`, and returns once it has
    /// detached. Blocking; one request at a time.
    pub(crate) fn spawn(&self, sandbox: &Path, ready: BorrowedFd<'_>) -> io::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(self.start()?);
            }
            let c = conn.as_ref().expect("started above");
            match request(c.sock.as_fd(), sandbox, ready) {
                Ok(()) => return Ok(()),
                Err(Failure::Refused(why)) => return Err(io::Error::other(why)),
                Err(Failure::Broken(e)) => {
                    tracing::warn!(error = %e, attempt, "the shim spawner is gone; starting another");
                    *conn = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The spawner's pid, if one runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.child.id())
    }

    fn start(&self) -> io::Result<Conn> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        setsockopt(
            &ours,
            sockopt::ReceiveTimeout,
            &TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0),
        )?;
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .arg("--spawner")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        tracing::debug!(pid = child.id(), "shim spawner started");
        Ok(Conn { sock: ours, child })
    }
}

fn request(sock: BorrowedFd<'_>, sandbox: &Path, ready: BorrowedFd<'_>) -> Result<(), Failure> {
    let path = sandbox.as_os_str().as_bytes();
    if path.len() > MAX_REQUEST {
        return Err(Failure::Refused(format!(
            "sandbox path {} is too long",
            sandbox.display()
        )));
    }
    let fds = [ready.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    // A spawner that died must be an error here, never a SIGPIPE for the agent.
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(path)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Failure::Broken(e.into()))?;
    let mut buf = [0u8; 512];
    let n = loop {
        match nix::sys::socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Failure::Broken(e.into())),
            Ok(0) => return Err(Failure::Broken(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => break n,
        }
    };
    if &buf[..n] == OK {
        Ok(())
    } else {
        Err(Failure::Refused(String::from_utf8_lossy(&buf[..n]).into_owned()))
    }
}

/// `tepui shim --spawner`: serves the agent on `sock` until it hangs up. Must run
/// single-threaded (it forks and goes on running Rust code in the child).
pub(crate) fn serve(sock: RawFd, run_shim: fn(PathBuf, Option<RawFd>) -> i32) -> i32 {
    // The shims it forks are reaped by the kernel when they end: no zombies, no waiting.
    // SAFETY: setting a signal's disposition to SIG_IGN runs no code of ours.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    loop {
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (n, ready) = match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
            Ok(msg) => {
                let mut ready = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for fd in fds {
                                // SAFETY: the kernel just gave us this descriptor.
                                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                                if ready.is_none() {
                                    ready = Some(owned);
                                }
                            }
                        }
                    }
                }
                (msg.bytes, ready)
            }
        };
        if n == 0 && ready.is_none() {
            // The agent is gone.
            return 0;
        }
        let sandbox = PathBuf::from(OsStr::from_bytes(&buf[..n]));
        let answer = match ready {
            None => "no ready pipe came with the request".to_string(),
            Some(ready) => match fork_shim(sock, sandbox, ready, run_shim) {
                Ok(()) => String::new(),
                Err(e) => format!("cannot start the shim: {e}"),
            },
        };
        let answer = if answer.is_empty() { OK } else { answer.as_bytes() };
        if nix::sys::socket::send(sock, answer, MsgFlags::empty()).is_err() {
            return 1;
        }
    }
}

/// Forks the shim, in a session of its own.
fn fork_shim(
    sock: RawFd,
    sandbox: PathBuf,
    ready: OwnedFd,
    run_shim: fn(PathBuf, Option<RawFd>) -> i32,
) -> Result<(), String> {
    // SAFETY: the spawner is single-threaded (checked when it started).
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => {
            drop(ready);
            Ok(())
        }
        ForkResult::Child => {
            // SAFETY: the shim waits for its own children (the container's processes); /dev/null
            // replaces the spawner's socket, which is the spawner's alone.
            unsafe {
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                if let Ok(null) = File::open("/dev/null") {
                    libc::dup2(null.as_raw_fd(), sock);
                }
            }
            if setsid().is_err() {
                // The ready pipe closes unwritten: the agent reports the start failed.
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(1) }
            }
            retitle(&[
                OsStr::new("tepui"),
                OsStr::new("shim"),
                OsStr::new("--sandbox"),
                sandbox.as_os_str(),
            ]);
            let fd = ready.as_raw_fd();
            std::mem::forget(ready);
            let code = run_shim(sandbox, Some(fd));
            std::process::exit(code)
        }
    }
}

/// Makes `/proc/self/cmdline` read `args` (as far as they fit), so the shim shows in `ps` as
/// an executed one would, with its sandbox. setproctitle's way, which needs no privilege: the
/// environment moves to the heap, then the strings the kernel handed to the spawner (its
/// arguments and environment, one contiguous area) are overwritten.
fn retitle(args: &[&OsStr]) {
    let Some((start, end)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| args_area(&s))
    else {
        return;
    };
    let vars: Vec<_> = std::env::vars_os().collect();
    for (k, v) in vars {
        // Single-threaded here; glibc copies each string it sets onto the heap.
        std::env::set_var(k, v);
    }
    let mut line = Vec::new();
    for a in args {
        line.extend_from_slice(a.as_bytes());
        line.push(b' ');
    }
    line.pop();
    let len = end - start;
    line.truncate(len.saturating_sub(1));
    line.resize(len, 0);
    // SAFETY: [start, end) is this process's argument and environment strings, which nothing
    // reads any more (the environment was copied above, the arguments were parsed).
    unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), start as *mut u8, len) };
}

/// The start of the arguments and the end of the environment, from `/proc/self/stat`.
fn args_area(stat: &str) -> Option<(usize, usize)> {
    // Fields after the command name (which may hold spaces) start with the third, `state`;
    // arg_start is the 48th, env_end the 51st.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start: usize = fields.get(45)?.parse().ok()?;
    let end: usize = fields.get(48)?.parse().ok()?;
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_area_is_read_past_a_command_name_with_spaces() {
        let mut stat = String::from("42 (a (b) c) S");
        for n in 4..=52 {
            stat.push_str(&format!(" {n}"));
        }
        assert_eq!(args_area(&stat), Some((48, 51)));
        assert_eq!(args_area("42 (x) S 1 2"), None);
        assert!(args_area(&std::fs::read_to_string("/proc/self/stat").unwrap()).is_some());
    }
}
