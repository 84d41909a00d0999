//! Reading a task's rotated log files: everything or the last lines, then (when following)
//! what is appended, across rotations, until the task has ended and the file is drained.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::sandbox::Sandbox;

const CHUNK: usize = 64 * 1024;
/// Without inotify, a follower looks again this often.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// With inotify, a follower looks again at least this often anyway: a safety net, not the
/// way it learns of changes.
const FOLLOW_SAFETY_MS: u16 = 1000;

/// Wakes a follower when something in the sandbox changes (an append, a rotation, the final
/// status written), instead of looking every so often.
struct Changes {
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl Changes {
    fn watch(dir: &Path) -> Changes {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| {
                let events = AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE;
                i.add_watch(dir, events).map(|_| i)
            })
            .map_err(|e| tracing::debug!(dir = %dir.display(), error = %e, "no inotify; following by looking"))
            .ok();
        Changes { inotify }
    }

    /// Returns after the next change (or the safety net's timeout).
    fn wait(&self) {
        use std::os::fd::AsFd;

        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(FOLLOW_POLL);
            return;
        };
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(FOLLOW_SAFETY_MS));
        // Drain what arrived; which file changed does not matter, all are looked at.
        while matches!(inotify.read_events(), Ok(events) if !events.is_empty()) {}
    }
}

/// Chunks of a task's log, as a `futures::Stream`.
pub struct LogChunks {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
}

impl futures::Stream for LogChunks {
    type Item = io::Result<Vec<u8>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

fn rotated(base: &Path, n: u32) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Start of the last `n` lines of `data` (a final line without newline counts).
pub(crate) fn tail_start(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    let mut count = 0;
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            count += 1;
            if count == n {
                return i + 1;
            }
        }
    }
    0
}

pub(crate) fn open(sb: &Sandbox, name: &str, keep: u32, tail: Option<usize>, follow: bool) -> LogChunks {
    let (tx, rx) = mpsc::channel(16);
    let base = sb.log(name);
    let status = sb.status();
    tokio::task::spawn_blocking(move || {
        match produce(&base, &status, keep, tail, follow, &tx) {
            // The reader hears of the end first: closing an inotify instance waits for the
            // kernel's SRCU grace period, which can take tens of milliseconds.
            Ok(changes) => {
                drop(tx);
                drop(changes);
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    LogChunks { rx }
}

fn read_all(f: &mut File) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

type Tx = mpsc::Sender<io::Result<Vec<u8>>>;

fn send(tx: &Tx, data: Vec<u8>) -> bool {
    data.is_empty() || tx.blocking_send(Ok(data)).is_ok()
}

/// Sends the log to `tx`; returns the watch it followed with, if it followed, for the caller to
/// close after the end is sent.
fn produce(
    base: &Path,
    status: &Path,
    keep: u32,
    tail: Option<usize>,
    follow: bool,
    tx: &Tx,
) -> io::Result<Option<Changes>> {
    // Whether the task had ended before we start reading: then one pass is all there is.
    let mut ended = status.exists();
    let mut current = match File::open(base) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let older: Vec<PathBuf> = (1..keep)
        .rev()
        .map(|n| rotated(base, n))
        .filter(|p| p.exists())
        .collect();
    let head = match current.as_mut() {
        Some(f) => read_all(f)?,
        None => Vec::new(),
    };
    match tail {
        Some(n) => {
            let mut data = head;
            for p in older.iter().rev() {
                if tail_start(&data, n) > 0 {
                    break;
                }
                let mut prev = std::fs::read(p).unwrap_or_default();
                prev.extend_from_slice(&data);
                data = prev;
            }
            let start = tail_start(&data, n);
            for c in data[start..].chunks(CHUNK) {
                if !send(tx, c.to_vec()) {
                    return Ok(None);
                }
            }
        }
        None => {
            for p in &older {
                let mut f = match File::open(p) {
                    Ok(f) => f,
                    Err(_) => continue,
                };
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    if !send(tx, buf) {
                        return Ok(None);
                    }
                }
            }
            for c in head.chunks(CHUNK) {
                if !send(tx, c.to_vec()) {
                    return Ok(None);
                }
            }
        }
    }
    if !follow {
        return Ok(None);
    }
    // Watching before the next read: a change after it cannot go unnoticed.
    let changes = Changes::watch(base.parent().unwrap_or(Path::new(".")));
    loop {
        if let Some(f) = current.as_mut() {
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if !send(tx, buf) {
                    return Ok(Some(changes));
                }
            }
        }
        // Rotated (or created) since we opened it: the old file is drained, go on with the new.
        let now_ino = std::fs::metadata(base).map(|m| m.ino()).ok();
        let cur_ino = current.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
        if now_ino.is_some() && now_ino != cur_ino {
            current = File::open(base).ok();
            continue;
        }
        if ended {
            return Ok(Some(changes));
        }
        ended = status.exists();
        if tx.is_closed() {
            return Ok(Some(changes));
        }
        if !ended {
            changes.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tail_start;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[tail_start(d, 1)..], b"c\n");
        assert_eq!(&d[tail_start(d, 2)..], b"b\nc\n");
        assert_eq!(&d[tail_start(d, 9)..], b"a\nb\nc\n");
        assert_eq!(&d[tail_start(d, 0)..], b"");
        let d = b"a\nb\npartial";
        assert_eq!(&d[tail_start(d, 1)..], b"partial");
        assert_eq!(&d[tail_start(d, 2)..], b"b\npartial");
    }
}
