//! A task's sandbox directory: what the agent writes for the shim, and what the shim
//! records for the agent. Every record is written to a temporary file and renamed, so a
//! reader sees the old record or the new one, never half of one.
//!
//! A sandbox has two directories. The one in the data dir keeps what outlives the task's
//! processes: its logs, its data, its definition and its final status. Its run directory, on
//! a tmpfs under [`RUN_ROOT`] (as runc and containerd keep theirs under /run), keeps what
//! lives only as long as they do: the shim's socket, pid, lock and live state,
//! libcontainer's state, the OCI bundle and the shim's plan. Those are most of the files a
//! start makes and rewrites; on disk each one cost an inode, and a machine's restart leaves
//! none of them behind to be mistaken for a live task.

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::oci::User;
use crate::spec::PortMapping;

/// Where the sandboxes' run directories are: a tmpfs (mounted there when /run is not one).
pub const RUN_ROOT: &str = "/run/tepui/tasks";

/// Paths inside one sandbox.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub dir: PathBuf,
    /// The run directory (see the module's comment).
    pub run: PathBuf,
}

impl Sandbox {
    /// The sandbox in `dir` (an absolute path), and its run directory, named by the task and
    /// a digest of `dir` so that the agent and the shim find it from `dir` alone. A sandbox of
    /// an earlier release kept everything in `dir`; its shim still runs there, so it stays.
    pub fn new(dir: PathBuf) -> Sandbox {
        let run = if dir.join("shim.lock").exists() {
            dir.clone()
        } else {
            run_dir_of(&dir)
        };
        Sandbox { dir, run }
    }
    pub fn task(&self) -> PathBuf {
        self.dir.join("task.json")
    }
    pub fn plan(&self) -> PathBuf {
        self.run.join("plan.json")
    }
    /// The task's seccomp filter, compiled (BPF), which the shim installs before the task's
    /// program and every exec runs.
    pub fn seccomp(&self) -> PathBuf {
        self.run.join("seccomp.bpf")
    }
    pub fn bundle(&self) -> PathBuf {
        self.run.join("bundle")
    }
    pub fn host_root(&self) -> PathBuf {
        self.dir.join("host-root")
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn hosts(&self) -> PathBuf {
        self.run.join("hosts")
    }
    /// The task's `/etc/resolv.conf`, when the agent gives it the cluster's resolver.
    pub fn resolv_conf(&self) -> PathBuf {
        self.run.join("resolv.conf")
    }
    /// libcontainer's state root (it keeps `<id>/state.json` and its sockets there).
    pub fn lc_root(&self) -> PathBuf {
        self.run.join("lc")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    pub fn shim_lock(&self) -> PathBuf {
        self.run.join("shim.lock")
    }
    pub fn shim_pid(&self) -> PathBuf {
        self.run.join("shim.pid")
    }
    /// Relative to the run directory, which is the shim's working directory; clients connect
    /// through `/proc/self/fd/N/` so deep paths do not hit the socket path limit.
    pub const SOCKET: &'static str = "shim.sock";
    /// The live state (starting, running with a pid).
    pub fn state(&self) -> PathBuf {
        self.run.join("state.json")
    }
    /// The final status; present once the task ended and its resources were released.
    pub fn status(&self) -> PathBuf {
        self.dir.join("status.json")
    }
}

fn run_dir_of(dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(dir.as_os_str().as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new(RUN_ROOT).join(format!("{name}.{short}"))
}

/// Makes [`RUN_ROOT`], on a tmpfs: /run/tepui becomes one (0700, root's) unless it is on one
/// already. Agents on one machine share it; a lock keeps two from mounting it twice.
pub fn prepare_run_root() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let top = Path::new(RUN_ROOT).parent().expect("RUN_ROOT has a parent");
    fs::create_dir_all(top)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(top.with_extension("lock"))?;
    // SAFETY: flock on a descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let on_tmpfs = nix::sys::statfs::statfs(top)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .map_err(io::Error::from)?;
    if !on_tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            top,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(|e| io::Error::other(format!("mount a tmpfs on {}: {e}", top.display())))?;
    }
    fs::create_dir_all(RUN_ROOT)
}

/// What the shim needs, decided by the agent at launch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimPlan {
    pub id: String,
    pub cgroup_path: String,
    pub kill_grace: Duration,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub user: User,
    pub mem_mb: Option<u64>,
    pub net: NetMode,
    /// Opened and checked by the shim where they are mounted.
    #[serde(default)]
    pub host_volumes: Vec<crate::volumes::HostVolume>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    Host,
    /// Its own network namespace with loopback only.
    None,
    Bridge(NetPlan),
    /// Another container's network namespace, set up by that container's shim.
    Joined,
}

/// One task's place on the bridge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetPlan {
    pub bridge: String,
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub ports: Vec<PortMapping>,
    /// The address reservation to release at the end.
    pub lease: PathBuf,
}

/// Writes a sandbox record whole or not at all (a temporary file renamed into place). It is not
/// fsynced: the records describe processes, which do not outlive the machine, and they outlive
/// an agent or shim crash through the page cache. After a power loss an empty record reads as
/// unreadable, and the task is reported lost with its machine, which is the truth. (The fsyncs
/// were most of a container's start time; see docs/benchmarks.md.)
/// Mounts a tmpfs of the task's own on `bundle` (0700, root's) and writes the secret files
/// into it (0444: whoever the task runs as reads them, through their read-only mounts).
/// Returns each file's (path in the container, path on the tmpfs).
pub fn secrets_tmpfs(bundle: &Path, secrets: &crate::SecretMaterial) -> crate::Result<Vec<(PathBuf, PathBuf)>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(bundle).map_err(|e| crate::Error::io("create", bundle, e))?;
    let target = CString::new(bundle.as_os_str().as_bytes())
        .map_err(|_| crate::Error::InvalidSpec("a NUL in the sandbox path".into()))?;
    let size: usize = 1024 * 1024 + secrets.files.iter().map(|(_, v)| v.len() + 4096).sum::<usize>();
    let options = CString::new(format!("mode=0700,size={size}")).expect("no NUL");
    // SAFETY: every pointer is a NUL-terminated string that lives through the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(crate::Error::io(
            "mount a tmpfs for secrets on",
            bundle,
            io::Error::last_os_error(),
        ));
    }
    let mut out = Vec::with_capacity(secrets.files.len());
    for (i, (inside, value)) in secrets.files.iter().enumerate() {
        if !inside.is_absolute() {
            return Err(crate::Error::InvalidSpec(format!(
                "secret file {inside:?} must be an absolute path"
            )));
        }
        let on_tmpfs = bundle.join(format!("secret-{i}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&on_tmpfs)
            .map_err(|e| crate::Error::io("write", &on_tmpfs, e))?;
        f.write_all(value.as_bytes())
            .map_err(|e| crate::Error::io("write", &on_tmpfs, e))?;
        out.push((inside.clone(), on_tmpfs));
    }
    Ok(out)
}

/// Unmounts a task's secrets tmpfs, if it has one: its values are gone with it.
pub fn unmount_secrets(bundle: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(target) = CString::new(bundle.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path. EINVAL (not a mount point) and ENOENT are the usual
    // answers for a task without secrets.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            tracing::warn!(bundle = %bundle.display(), error = %e, "cannot unmount a task's secrets");
        }
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    fs::rename(&tmp, path)
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Blocks until no shim holds the sandbox's lock: the moment the shim exits (it has recorded
/// the task's end by then). Returns at once when there is no lock file.
pub fn wait_shim_exit(sb: &Sandbox) {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::OpenOptions::new().read(true).open(sb.shim_lock()) else {
        return;
    };
    // SAFETY: a blocking flock on a descriptor we own; released when `f` drops.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) };
}

/// Whether a shim holds the sandbox's lock (it takes it first thing and keeps it until it
/// exits, so the answer does not depend on pids, which are reused).
pub fn shim_alive(sb: &Sandbox) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::OpenOptions::new().read(true).open(sb.shim_lock()) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; the lock (if taken) is released when `f` drops.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    r != 0
}
