//! The shim's socket protocol: one JSON object per line, file descriptors (an exec's stdio,
//! a terminal's master side) passed with SCM_RIGHTS alongside a line.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::spec::{ExecSpec, TaskStatus};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// SIGTERM now, SIGKILL after the grace period (the task's own unless given).
    Kill {
        grace: Option<Duration>,
    },
    /// Answered once the task ended, with its final status.
    Wait,
    /// Non-tty: three descriptors (stdin, stdout, stderr) come with the line.
    Exec(ExecSpec),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Status(TaskStatus),
    Ok,
    Error {
        message: String,
    },
    /// For a tty exec, the terminal's master side comes with this line.
    ExecStarted {
        pid: i32,
    },
    ExecExited {
        code: i32,
    },
}

pub const MAX_FDS: usize = 4;

/// Sends one line (and descriptors) on a socket; `MSG_NOSIGNAL` so a gone peer is an error,
/// not a SIGPIPE.
pub fn send_line(fd: RawFd, msg: &impl Serialize, fds: &[RawFd]) -> nix::Result<()> {
    let mut bytes = serde_json::to_vec(msg).map_err(|_| nix::Error::EINVAL)?;
    bytes.push(b'\n');
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if sent == 0 && !fds.is_empty() { &cmsg } else { &[] };
        match sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `recvmsg`: bytes read (0 at end of stream) and any descriptors that came along.
pub fn recv_some(fd: RawFd, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for r in raw {
                // SAFETY: the kernel just installed these descriptors in our table for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// A line reader over a blocking socket that keeps descriptors that arrive with the bytes.
pub struct LineReader {
    buf: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader {
            buf: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// A complete line already buffered, if any.
    pub fn take_line(&mut self) -> Option<Vec<u8>> {
        let pos = self.buf.iter().position(|b| *b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=pos).collect();
        Some(line[..line.len() - 1].to_vec())
    }

    /// Adds bytes read with [`recv_some`].
    pub fn push(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.buf.extend_from_slice(bytes);
        self.fds.extend(fds);
    }

    /// Reads (blocking) until a whole line is there; `None` at end of stream.
    pub fn read_line_blocking(&mut self, fd: &impl AsRawFd) -> nix::Result<Option<Vec<u8>>> {
        loop {
            if let Some(l) = self.take_line() {
                return Ok(Some(l));
            }
            let mut chunk = [0u8; 4096];
            let (n, fds) = match recv_some(fd.as_raw_fd(), &mut chunk) {
                Ok(r) => r,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
            };
            self.push(&chunk[..n], fds);
            if n == 0 {
                return Ok(None);
            }
        }
    }
}
