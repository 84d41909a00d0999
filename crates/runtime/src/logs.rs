//! Reading a task's rotated log files: everything or the last lines, then (when following)
//! what is appended, across rotations, until the task has ended and the file is drained.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::fs::File;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::sandbox::Sandbox;

const CHUNK: usize = 64 * 1024;
/// Without inotify, a follower looks again this often.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// With inotify, a follower looks again at least this often anyway: a safety net, not the
/// way it learns of changes.
const FOLLOW_SAFETY: Duration = Duration::from_secs(1);

/// An inotify instance as tokio's reactor wants it.
struct Watch(nix::sys::inotify::Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Wakes a follower when something in the sandbox changes (an append, a rotation, the final
/// status written), instead of looking every so often. Waiting is asynchronous: a follower
/// holds no thread while its task is quiet.
struct Changes {
    inotify: Option<AsyncFd<Watch>>,
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
            .map_err(io::Error::from)
            .and_then(|i| {
                // SAFETY: `Watch` owns the inotify descriptor; it stays open, and is the one
                // `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
                unsafe { AsyncFd::register_with_interest(Watch(i), tokio::io::Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)
            })
            .map_err(|e| tracing::debug!(dir = %dir.display(), error = %e, "no inotify; following by looking"))
            .ok();
        Changes { inotify }
    }

    /// Returns after the next change (or the safety net's timeout).
    async fn wait(&self) {
        let Some(inotify) = &self.inotify else {
            tokio::time::sleep(FOLLOW_POLL).await;
            return;
        };
        let changed = async {
            loop {
                let Ok(mut ready) = inotify.readable().await else {
                    return;
                };
                // Drain what arrived; which file changed does not matter, all are looked at.
                match ready.try_io(|w| w.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(Ok(events)) if !events.is_empty() => {
                        while matches!(queued_events(inotify), Some(n) if n > 0) {}
                        return;
                    }
                    Ok(Ok(_)) | Err(_) => continue,
                    Ok(Err(_)) => return,
                }
            }
        };
        let _ = tokio::time::timeout(FOLLOW_SAFETY, changed).await;
    }
}

/// Reads what else is queued on the watch without waiting; the number of events.
fn queued_events(inotify: &AsyncFd<Watch>) -> Option<usize> {
    inotify.get_ref().0.read_events().ok().map(|e| e.len())
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

/// Streams a task's log. A task, not a thread: file reads go through tokio's blocking pool one
/// at a time, and waiting for more holds nothing.
pub(crate) fn open(sb: &Sandbox, name: &str, keep: u32, tail: Option<usize>, follow: bool) -> LogChunks {
    let (tx, rx) = mpsc::channel(16);
    let base = sb.log(name);
    let status = sb.status();
    tokio::spawn(async move {
        match produce(&base, &status, keep, tail, follow, &tx).await {
            // The reader hears of the end first: closing an inotify instance waits for the
            // kernel's SRCU grace period, which can take tens of milliseconds (off the
            // runtime's threads).
            Ok(changes) => {
                drop(tx);
                if let Some(changes) = changes {
                    tokio::task::spawn_blocking(move || drop(changes));
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    LogChunks { rx }
}

type Tx = mpsc::Sender<io::Result<Vec<u8>>>;

async fn send(tx: &Tx, data: Vec<u8>) -> bool {
    data.is_empty() || tx.send(Ok(data)).await.is_ok()
}

async fn exists(p: &Path) -> bool {
    tokio::fs::try_exists(p).await.unwrap_or(false)
}

/// Sends what is left of `f` in chunks; false once the reader is gone.
async fn drain(f: &mut File, tx: &Tx) -> io::Result<bool> {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(true);
        }
        buf.truncate(n);
        if !send(tx, buf).await {
            return Ok(false);
        }
    }
}

/// Sends the log to `tx`; returns the watch it followed with, if it followed, for the caller to
/// close after the end is sent.
async fn produce(
    base: &Path,
    status: &Path,
    keep: u32,
    tail: Option<usize>,
    follow: bool,
    tx: &Tx,
) -> io::Result<Option<Changes>> {
    // Whether the task had ended before we start reading: then one pass is all there is.
    let mut ended = exists(status).await;
    let mut current = match File::open(base).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut older = Vec::new();
    for n in (1..keep).rev() {
        let p = rotated(base, n);
        if exists(&p).await {
            older.push(p);
        }
    }
    match tail {
        Some(n) => {
            let mut data = Vec::new();
            if let Some(f) = current.as_mut() {
                f.read_to_end(&mut data).await?;
            }
            for p in older.iter().rev() {
                if tail_start(&data, n) > 0 {
                    break;
                }
                let mut prev = tokio::fs::read(p).await.unwrap_or_default();
                prev.extend_from_slice(&data);
                data = prev;
            }
            let start = tail_start(&data, n);
            for c in data[start..].chunks(CHUNK) {
                if !send(tx, c.to_vec()).await {
                    return Ok(None);
                }
            }
        }
        None => {
            for p in &older {
                let Ok(mut f) = File::open(p).await else { continue };
                if !drain(&mut f, tx).await? {
                    return Ok(None);
                }
            }
            if let Some(f) = current.as_mut() {
                if !drain(f, tx).await? {
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
            if !drain(f, tx).await? {
                return Ok(Some(changes));
            }
        }
        // Rotated (or created) since we opened it: the old file is drained, go on with the new.
        let now_ino = tokio::fs::metadata(base).await.map(|m| m.ino()).ok();
        let cur_ino = match current.as_ref() {
            Some(f) => f.metadata().await.ok().map(|m| m.ino()),
            None => None,
        };
        if now_ino.is_some() && now_ino != cur_ino {
            // The shim renames a file only after its last write, so what it holds now is all
            // of it; the drain above may have run before those last writes.
            if let Some(f) = current.as_mut() {
                if !drain(f, tx).await? {
                    return Ok(Some(changes));
                }
            }
            // Several rotations may have passed while we read: the files rotated after ours
            // come first, oldest first, then the live one.
            let (newer, live) = files_after(base, keep, cur_ino).await?;
            for mut f in newer {
                if !drain(&mut f, tx).await? {
                    return Ok(Some(changes));
                }
            }
            current = live;
            continue;
        }
        if ended {
            return Ok(Some(changes));
        }
        ended = exists(status).await;
        if !ended {
            tokio::select! {
                _ = tx.closed() => return Ok(Some(changes)),
                _ = changes.wait() => {}
            }
        }
    }
}

/// The log files that follow the one with inode `after` (all of them if it is gone), oldest
/// first and open, and the live file apart. Opened as one consistent set: if a rotation moves
/// names meanwhile, it looks again.
async fn files_after(base: &Path, keep: u32, after: Option<u64>) -> io::Result<(Vec<File>, Option<File>)> {
    let paths: Vec<PathBuf> = (1..keep)
        .rev()
        .map(|n| rotated(base, n))
        .chain(std::iter::once(base.to_path_buf()))
        .collect();
    async fn inodes(paths: &[PathBuf]) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(tokio::fs::metadata(p).await.map(|m| m.ino()).ok());
        }
        out
    }
    loop {
        let before = inodes(&paths).await;
        let mut opened = Vec::with_capacity(paths.len());
        for (p, ino) in paths.iter().zip(&before) {
            opened.push(match ino {
                Some(_) => File::open(p).await.ok(),
                None => None,
            });
        }
        let mut opened_inos = Vec::with_capacity(opened.len());
        for f in &opened {
            opened_inos.push(match f {
                Some(f) => f.metadata().await.ok().map(|m| m.ino()),
                None => None,
            });
        }
        if opened_inos != before || inodes(&paths).await != before {
            continue;
        }
        let start = after
            .and_then(|a| before.iter().position(|i| *i == Some(a)))
            .map_or(0, |i| i + 1);
        let live = opened.pop().flatten();
        let newer = opened.into_iter().skip(start).flatten().collect();
        return Ok((newer, live));
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    async fn read_until(f: &mut LogChunks, want: &[u8], deadline: Duration) {
        let mut got = Vec::new();
        while !got.ends_with(want) {
            let chunk = tokio::time::timeout(deadline, f.next())
                .await
                .expect("a chunk within the deadline")
                .expect("the stream stays open")
                .unwrap();
            got.extend_from_slice(&chunk);
        }
    }

    /// Many followers on a runtime with two blocking threads: each gets what is appended, and
    /// each ends when the task does. Followers that held a thread each would starve here.
    #[test]
    fn followers_hold_no_thread_while_they_wait() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sb = Sandbox::new(dir.path().to_path_buf());
            std::fs::write(sb.log("stdout"), b"first\n").unwrap();
            let mut followers: Vec<LogChunks> = (0..50).map(|_| open(&sb, "stdout", 1, None, true)).collect();
            let deadline = Duration::from_secs(10);
            for f in &mut followers {
                read_until(f, b"first\n", deadline).await;
            }
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new().append(true).open(sb.log("stdout")).unwrap();
            out.write_all(b"second\n").unwrap();
            for f in &mut followers {
                read_until(f, b"second\n", deadline).await;
            }
            std::fs::write(sb.status(), b"{}").unwrap();
            for f in &mut followers {
                let end = tokio::time::timeout(deadline, f.next())
                    .await
                    .expect("the end within the deadline");
                assert!(end.is_none(), "{end:?}");
            }
        });
    }

    /// Two rotations (keep 3) while the follower waits, and the end of the file it holds
    /// written just before the first: it reads all of it, each file once, in order.
    #[tokio::test(flavor = "current_thread")]
    async fn following_survives_rotations_it_did_not_see() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let sb = Sandbox::new(dir.path().to_path_buf());
        let base = sb.log("stdout");
        std::fs::write(&base, b"first\n").unwrap();
        let mut f = open(&sb, "stdout", 3, None, true);
        let deadline = Duration::from_secs(10);
        read_until(&mut f, b"first\n", deadline).await;
        // No await from here on: the follower sees none of it happen.
        let append = |p: &Path, data: &[u8]| {
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap();
            out.write_all(data).unwrap();
        };
        append(&base, b"a\n");
        std::fs::rename(&base, rotated(&base, 1)).unwrap();
        append(&base, b"b\n");
        std::fs::rename(rotated(&base, 1), rotated(&base, 2)).unwrap();
        std::fs::rename(&base, rotated(&base, 1)).unwrap();
        append(&base, b"c\n");
        std::fs::write(sb.status(), b"{}").unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = tokio::time::timeout(deadline, f.next()).await.expect("the end") {
            got.extend(chunk.unwrap());
        }
        assert_eq!(String::from_utf8(got).unwrap(), "a\nb\nc\n");
    }

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
