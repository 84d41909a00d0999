//! A task's sandbox as Mesos' `/files` shows it: its logs (`stdout`, `stderr` and their rotated
//! pieces) and the task's own files (`data/`, which the task sees as `$MESOS_SANDBOX`), under
//! one root. Nothing else of the sandbox directory is shown (its records, its seccomp filter,
//! the tmpfs that holds a task's secrets).
//!
//! The agent runs as root and the task writes `data/` as it likes, links included, so every
//! path is opened beneath `data/` by the kernel (`openat2` with `RESOLVE_BENEATH`: no `..`
//! above it, no absolute link, no magic link); a link leading out is refused, not followed.
//! What was opened is then read through its own descriptor, never by its name again, and only
//! regular files and directories are read (a FIFO would block, a device is not a file).
//!
//! Pure parts (mode strings, user names, which names are logs) are separate from the I/O.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use tepui_api::FileInfo;

/// The most entries one listing returns (sorted by name, the first ones): an answer is one
/// message on the agent's stream.
pub const MAX_ENTRIES: usize = 10_000;

/// Why a files request cannot be answered; each kind is an error code of the agent's requests.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    /// The path is not one into the sandbox (`..`, a link leading out, a part that is a file).
    #[error("{0}")]
    BadPath(String),
    #[error("{0}")]
    NotFound(String),
    /// Something that cannot be read as asked (a directory read as a file, a FIFO, a device).
    #[error("{0}")]
    NotReadable(String),
    #[error("{0}")]
    Io(String),
}

impl FilesError {
    /// The code of the agent's `Error` reply.
    pub fn code(&self) -> &'static str {
        match self {
            FilesError::BadPath(_) | FilesError::NotReadable(_) => "bad_request",
            FilesError::NotFound(_) => "not_found",
            FilesError::Io(_) => "internal",
        }
    }
}

/// Whether `name` is one of the logs the shim writes in the sandbox: `stdout`, `stderr`, and
/// their rotated pieces `stdout.1`, `stdout.2`, ...
pub fn is_log_name(name: &str) -> bool {
    let (base, piece) = match name.split_once('.') {
        None => (name, None),
        Some((base, n)) => (base, Some(n)),
    };
    let piece_ok = |n: &str| (1..=4).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit());
    matches!(base, "stdout" | "stderr") && piece.is_none_or(piece_ok)
}

/// A file's mode as `ls -l` shows it (`drwxr-xr-x`, `-rwsr-x---`, `lrwxrwxrwx`).
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o010000 => 'p',
        0o140000 => 's',
        0o020000 => 'c',
        0o060000 => 'b',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    // (read, write, execute bit, special bit, its letter with and without execute)
    let triads = [
        (0o400, 0o200, 0o100, 0o4000, 's', 'S'),
        (0o040, 0o020, 0o010, 0o2000, 's', 'S'),
        (0o004, 0o002, 0o001, 0o1000, 't', 'T'),
    ];
    for (r, w, x, special, with_x, without_x) in triads {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, mode & x != 0) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Numeric ids to names, from `/etc/passwd` or `/etc/group` text (`name:x:id:...`).
pub fn id_names(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.trim().parse::<u32>() {
            // The first line for an id wins, as getpwuid(3) reads it.
            names.entry(id).or_insert_with(|| name.to_string());
        }
    }
    names
}

/// The agent's user and group names, for the owners of files.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Owners {
    pub fn new(passwd: &str, group: &str) -> Owners {
        Owners {
            users: id_names(passwd),
            groups: id_names(group),
        }
    }

    /// The host's (`/etc/passwd`, `/etc/group`); numbers where they cannot be read.
    pub fn of_host() -> Owners {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Owners::new(&read("/etc/passwd"), &read("/etc/group"))
    }

    fn user(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    fn group(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}

/// One entry as the API shows it, from its `lstat`.
pub fn file_info(path: String, meta: &std::fs::Metadata, owners: &Owners) -> FileInfo {
    FileInfo {
        path,
        nlink: meta.nlink(),
        size: meta.size(),
        mtime: meta.mtime(),
        mode: mode_string(meta.mode()),
        uid: owners.user(meta.uid()),
        gid: owners.group(meta.gid()),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A task's sandbox directory, seen through the files API.
#[derive(Clone, Debug)]
pub struct SandboxFiles {
    dir: PathBuf,
}

/// What a path names.
enum Target {
    /// The root: the logs and the top of `data/`.
    Root,
    /// Opened with `O_PATH`: a log, or something beneath `data/`.
    Opened(OwnedFd),
}

impl SandboxFiles {
    /// The sandbox at `dir` (the runtime's sandbox directory of one task).
    pub fn new(dir: PathBuf) -> SandboxFiles {
        SandboxFiles { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Opens `rel` (already plain: see [`tepui_common::sandbox_path`]) without following a link
    /// out of `data/`.
    fn open(&self, rel: &str) -> Result<Target, FilesError> {
        let rel = tepui_common::sandbox_path(rel).map_err(FilesError::BadPath)?;
        if rel.is_empty() {
            return Ok(Target::Root);
        }
        let missing = || FilesError::NotFound(format!("no {rel:?} in the sandbox"));
        let first = rel.split('/').next().unwrap_or_default();
        if is_log_name(first) && self.dir.join(first).is_file() {
            if first != rel {
                return Err(missing());
            }
            // The shim's own file in the sandbox directory, which the task cannot write to.
            return open_path(&self.dir.join(first)).map(Target::Opened);
        }
        let data = match open_path(&self.data()) {
            Ok(fd) => fd,
            Err(FilesError::NotFound(_)) => return Err(missing()),
            Err(e) => return Err(e),
        };
        // Links are followed, the last part's too, as long as they stay beneath `data/`.
        match open_beneath(&data, &rel) {
            Ok(fd) => Ok(Target::Opened(fd)),
            Err(nix::errno::Errno::ENOENT) => Err(missing()),
            Err(nix::errno::Errno::EXDEV | nix::errno::Errno::ELOOP) => Err(FilesError::BadPath(format!(
                "{rel:?} leads out of the sandbox through a link; only what is inside it can be shown"
            ))),
            Err(nix::errno::Errno::ENOTDIR) => Err(FilesError::NotFound(format!(
                "no {rel:?} in the sandbox: a part of it is not a directory"
            ))),
            Err(e) => Err(FilesError::Io(format!("opening {rel:?} in the sandbox: {e}"))),
        }
    }

    /// The entries of the directory `rel` (or the file `rel` alone), as Mesos lists them.
    pub fn browse(&self, rel: &str, owners: &Owners) -> Result<Vec<FileInfo>, FilesError> {
        let rel = tepui_common::sandbox_path(rel).map_err(FilesError::BadPath)?;
        match self.open(&rel)? {
            Target::Root => self.browse_root(owners),
            Target::Opened(fd) => {
                let meta = File::from(fd.try_clone().map_err(io_err(&rel))?)
                    .metadata()
                    .map_err(io_err(&rel))?;
                if !meta.is_dir() {
                    return Ok(vec![file_info(rel, &meta, owners)]);
                }
                let data = open_path(&self.data())?;
                list(&fd, &data, &rel, owners, |_| true)
            }
        }
    }

    fn browse_root(&self, owners: &Owners) -> Result<Vec<FileInfo>, FilesError> {
        let mut entries = Vec::new();
        let mut logs = Vec::new();
        let dir = std::fs::read_dir(&self.dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FilesError::NotFound("the task has no sandbox on this agent".into()),
            _ => FilesError::Io(format!("listing the sandbox: {e}")),
        })?;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_log_name(&name) {
                continue;
            }
            match entry.metadata() {
                Ok(meta) if meta.is_file() => {
                    entries.push(file_info(name.clone(), &meta, owners));
                    logs.push(name);
                }
                _ => {}
            }
        }
        match open_path(&self.data()) {
            Ok(data) => entries.extend(list(&data, &data, "", owners, |name| !logs.iter().any(|l| l == name))?),
            Err(FilesError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.truncate(MAX_ENTRIES);
        Ok(entries)
    }

    /// At most `length` bytes of the file `rel` from `offset`, and the file's size.
    pub fn read(&self, rel: &str, offset: u64, length: u64) -> Result<(Vec<u8>, u64), FilesError> {
        let rel = tepui_common::sandbox_path(rel).map_err(FilesError::BadPath)?;
        let fd = match self.open(&rel)? {
            Target::Root => return Err(FilesError::NotReadable("the sandbox is a directory: browse it".into())),
            Target::Opened(fd) => fd,
        };
        let file = reopen(&fd, &rel)?;
        let meta = file.metadata().map_err(io_err(&rel))?;
        if meta.is_dir() {
            return Err(FilesError::NotReadable(format!("{rel:?} is a directory: browse it")));
        }
        if !meta.is_file() {
            return Err(FilesError::NotReadable(format!("{rel:?} is not a regular file")));
        }
        let size = meta.len();
        let want = length.min(size.saturating_sub(offset)).min(tepui_api::MAX_FILE_READ) as usize;
        let mut data = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match file.read_at(&mut data[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(&rel)(e)),
            }
        }
        data.truncate(got);
        Ok((data, size))
    }
}

/// `rel` opened with `O_PATH` beneath `data` (a descriptor of `data/`): every link on the way
/// followed, none out of it (an absolute link, `..` above it, a magic link: `EXDEV`/`ELOOP`).
fn open_beneath(data: &OwnedFd, rel: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(data.as_fd(), Path::new(rel), how)
}

fn io_err(rel: &str) -> impl Fn(std::io::Error) -> FilesError + '_ {
    move |e| FilesError::Io(format!("{rel:?} in the sandbox: {e}"))
}

/// An `O_PATH` descriptor of a path the agent trusts (the sandbox's own files), not following
/// a last part that is a link.
fn open_path(path: &Path) -> Result<OwnedFd, FilesError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags(OFlag::O_PATH | OFlag::O_NOFOLLOW))
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FilesError::NotFound(format!("{} does not exist", path.display())),
            _ => FilesError::Io(format!("opening {}: {e}", path.display())),
        })
}

fn libc_flags(f: OFlag) -> i32 {
    f.bits()
}

/// Opens what `fd` (an `O_PATH` descriptor) names for reading, through the descriptor itself
/// (`/proc/self/fd/N`), so it is the very file that was checked; a link is followed beneath
/// `data/` only. Non-blocking, so a FIFO cannot hold the agent.
fn reopen(fd: &OwnedFd, rel: &str) -> Result<File, FilesError> {
    let meta = File::from(fd.try_clone().map_err(io_err(rel))?)
        .metadata()
        .map_err(io_err(rel))?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(FilesError::NotReadable(format!("{rel:?} is not a regular file")));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags(OFlag::O_NONBLOCK | OFlag::O_NOCTTY))
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(io_err(rel))
}

/// The entries of the directory `fd` (an `O_PATH` descriptor of `rel` beneath `data`), with
/// paths under `rel`; those `keep` refuses are left out. A link that stays beneath `data/`
/// shows as what it points to (so a link to a directory descends); one leading out shows as
/// the link itself, and nothing of what it points to.
fn list(
    fd: &OwnedFd,
    data: &OwnedFd,
    rel: &str,
    owners: &Owners,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<FileInfo>, FilesError> {
    // Through the descriptor: the directory that was opened beneath `data/`, whatever its name
    // points to by now. Entry names hold no `/`, so `lstat` of one stays inside it.
    let base = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let dir = std::fs::read_dir(&base).map_err(io_err(rel))?;
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect();
    names.sort();
    names.truncate(MAX_ENTRIES);
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        // Gone since it was listed: left out.
        let Ok(meta) = std::fs::symlink_metadata(base.join(&name)) else {
            continue;
        };
        let path = join(rel, &name);
        let target = meta
            .file_type()
            .is_symlink()
            .then(|| open_beneath(data, &path).ok())
            .flatten()
            .and_then(|fd| File::from(fd).metadata().ok());
        entries.push(file_info(path, target.as_ref().unwrap_or(&meta), owners));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o104750), "-rwsr-x---");
        assert_eq!(mode_string(0o102640), "-rw-r-S---");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o041776), "drwxrwxrwT");
        assert_eq!(mode_string(0o010600), "prw-------");
        assert_eq!(mode_string(0o140755), "srwxr-xr-x");
        assert_eq!(mode_string(0o020666), "crw-rw-rw-");
        assert_eq!(mode_string(0o060660), "brw-rw----");
    }

    #[test]
    fn owners_are_named_from_passwd_and_group() {
        let owners = Owners::new(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n# comment\nbroken\ndup:x:0:0::/:\n",
            "root:x:0:\nnogroup:x:65534:\n",
        );
        assert_eq!(owners.user(0), "root", "the first line for an id wins");
        assert_eq!(owners.user(65534), "nobody");
        assert_eq!(owners.user(1234), "1234");
        assert_eq!(owners.group(65534), "nogroup");
        assert_eq!(owners.group(7), "7");
    }

    #[test]
    fn logs_are_the_shims_files() {
        for ok in ["stdout", "stderr", "stdout.1", "stderr.12"] {
            assert!(is_log_name(ok), "{ok}");
        }
        for not in [
            "stdout.",
            "stdout.x",
            "stdin",
            "stdout.1.2",
            "task.json",
            "data",
            "stdout.12345",
        ] {
            assert!(!is_log_name(not), "{not}");
        }
    }

    /// A sandbox as the runtime leaves it: records and a secrets dir beside the logs and
    /// `data/`, with the task's files and links in `data/`.
    fn sandbox() -> (tempfile::TempDir, SandboxFiles) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("task");
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(dir.join("bundle")).unwrap();
        std::fs::write(dir.join("bundle/secret"), "s3cret").unwrap();
        std::fs::write(dir.join("task.json"), "{}").unwrap();
        std::fs::write(dir.join("stdout"), "out\n").unwrap();
        std::fs::write(dir.join("stdout.1"), "older\n").unwrap();
        std::fs::write(dir.join("stderr"), "").unwrap();
        std::fs::write(data.join("hello.txt"), "hello, sandbox\n").unwrap();
        std::fs::write(data.join("stdout"), "the task's own file named stdout").unwrap();
        std::fs::write(data.join("sub/deeper/x.log"), "0123456789").unwrap();
        let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, data.join(name)).unwrap();
        link("hello.txt", "inside");
        link("sub", "subdir");
        link("/etc/passwd", "absolute");
        link("../bundle/secret", "secret");
        link("../../../../../../../etc/passwd", "climb");
        nix::unistd::mkfifo(&data.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        (tmp, SandboxFiles::new(dir))
    }

    fn paths(entries: &[FileInfo]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn the_root_shows_the_logs_and_the_tasks_files_and_nothing_else() {
        let (_tmp, sb) = sandbox();
        let owners = Owners::new("me:x:0:0::/:\n", "us:x:0:\n");
        for root in ["", "/", "."] {
            let entries = sb.browse(root, &owners).unwrap();
            assert_eq!(
                paths(&entries),
                [
                    "absolute",
                    "climb",
                    "fifo",
                    "hello.txt",
                    "inside",
                    "secret",
                    "stderr",
                    "stdout",
                    "stdout.1",
                    "sub",
                    "subdir"
                ],
                "{root:?}"
            );
            let hello = entries.iter().find(|e| e.path == "hello.txt").unwrap();
            assert_eq!((hello.size, hello.nlink), (15, 1));
            assert!(hello.mode.starts_with("-rw"), "{hello:?}");
            assert_eq!((hello.uid.as_str(), hello.gid.as_str()), ("me", "us"));
            assert!(hello.mtime > 1_600_000_000, "{hello:?}");
            let stdout = entries.iter().find(|e| e.path == "stdout").unwrap();
            assert_eq!(stdout.size, 4, "the log, not the task's file of that name");
            let sub = entries.iter().find(|e| e.path == "sub").unwrap();
            assert!(sub.mode.starts_with('d'), "{sub:?}");
            // Links inside show as what they point to; links out as themselves.
            let mode = |p: &str| entries.iter().find(|e| e.path == p).unwrap().mode.clone();
            assert!(mode("inside").starts_with('-') && mode("subdir").starts_with('d'));
            for out in ["absolute", "climb", "secret"] {
                assert!(mode(out).starts_with('l'), "{out}: {}", mode(out));
            }
            assert!(mode("fifo").starts_with('p'));
        }
        let deeper = sb.browse("/sub/deeper", &owners).unwrap();
        assert_eq!(paths(&deeper), ["sub/deeper/x.log"]);
        // A file browses as itself; a link to a directory inside descends.
        assert_eq!(
            paths(&sb.browse("sub/deeper/x.log", &owners).unwrap()),
            ["sub/deeper/x.log"]
        );
        assert_eq!(
            paths(&sb.browse("subdir/deeper", &owners).unwrap()),
            ["subdir/deeper/x.log"]
        );
    }

    #[test]
    fn reads_are_pieces_of_files_inside_the_sandbox() {
        let (_tmp, sb) = sandbox();
        assert_eq!(
            sb.read("hello.txt", 0, 100).unwrap(),
            (b"hello, sandbox\n".to_vec(), 15)
        );
        assert_eq!(sb.read("/sub/deeper/x.log", 3, 4).unwrap(), (b"3456".to_vec(), 10));
        assert_eq!(sb.read("sub/deeper/x.log", 8, 100).unwrap(), (b"89".to_vec(), 10));
        assert_eq!(sb.read("sub/deeper/x.log", 50, 100).unwrap(), (vec![], 10));
        assert_eq!(sb.read("sub/deeper/x.log", 0, 0).unwrap(), (vec![], 10));
        assert_eq!(sb.read("stdout", 0, 100).unwrap(), (b"out\n".to_vec(), 4));
        assert_eq!(sb.read("stdout.1", 0, 100).unwrap(), (b"older\n".to_vec(), 6));
        assert_eq!(sb.read("inside", 7, 100).unwrap(), (b"sandbox\n".to_vec(), 15));
        // No way out: .., links out (absolute or climbing), the secrets beside data/.
        for out in ["../task.json", "sub/../../bundle/secret", "absolute", "climb", "secret"] {
            let e = sb.read(out, 0, 100).unwrap_err();
            assert!(matches!(e, FilesError::BadPath(_)), "{out}: {e:?}");
            assert_eq!(e.code(), "bad_request", "{out}");
        }
        for out in ["absolute", "absolute/x", "climb/..", "secret", "secret/x", "/../etc"] {
            assert_eq!(
                sb.browse(out, &Owners::default()).unwrap_err().code(),
                "bad_request",
                "{out}"
            );
        }
        // What is not there; what the sandbox directory has beside data/ is not there either.
        for missing in [
            "nope",
            "sub/nope",
            "task.json",
            "bundle/secret",
            "stdout/x",
            "hello.txt/x",
        ] {
            let e = sb.read(missing, 0, 1).unwrap_err();
            assert_eq!(e.code(), "not_found", "{missing}: {e:?}");
        }
        // Not files: the root, a directory, a FIFO (which would block a reader).
        for not_file in ["", "sub", "fifo"] {
            let e = sb.read(not_file, 0, 1).unwrap_err();
            assert!(matches!(e, FilesError::NotReadable(_)), "{not_file}: {e:?}");
        }
    }

    #[test]
    fn reads_are_capped() {
        let (_tmp, sb) = sandbox();
        let big = vec![b'x'; (tepui_api::MAX_FILE_READ + 10) as usize];
        std::fs::write(sb.data().join("big"), &big).unwrap();
        let (data, size) = sb.read("big", 5, u64::MAX).unwrap();
        assert_eq!((data.len() as u64, size), (tepui_api::MAX_FILE_READ, big.len() as u64));
    }

    #[test]
    fn a_sandbox_without_data_shows_its_logs_and_none_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("task");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stderr"), "failed\n").unwrap();
        let sb = SandboxFiles::new(dir);
        assert_eq!(paths(&sb.browse("", &Owners::default()).unwrap()), ["stderr"]);
        assert_eq!(sb.read("x", 0, 1).unwrap_err().code(), "not_found");
        let gone = SandboxFiles::new(tmp.path().join("never"));
        assert_eq!(gone.browse("", &Owners::default()).unwrap_err().code(), "not_found");
    }
}
