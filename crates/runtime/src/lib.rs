//! tepui's container runtime for the agent's tasks, built on youki's libcontainer.
//!
//! Each task gets a sandbox directory and a shim process ([`shim_main`], run as
//! `tepui shim --sandbox DIR`): the shim detaches from the agent, owns the container for its
//! whole life, and records its end in the sandbox. The agent-side [`Runtime`] keeps no state
//! of its own: it writes sandboxes, starts shims, and reads or asks them (a unix socket in
//! the sandbox), so an agent that restarts finds everything again with [`Runtime::adopt`].
//!
//! It deliberately knows nothing of images (the image store hands it a rootfs directory),
//! of schedulers, frameworks or task states beyond the container's own life, and nothing of
//! the HTTP API that serves logs and exec (it returns streams and descriptors).
//!
//! Requirements: root; `ip` (iproute2) and `iptables` for bridge networking; cgroup v1,
//! hybrid or v2. The shim must start single-threaded (dispatch it before any async runtime).

mod cgroup;
mod inroot;
mod logs;
mod net;
mod oci;
mod proto;
mod sandbox;
mod seccomp;
mod shell;
mod shim;
mod spawner;
mod spec;
mod volumes;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::UnixStream;

pub use logs::LogChunks;
pub use net::BridgeConfig;
pub use oci::{is_root, DEFAULT_UID, SANDBOX_MOUNT};
pub use shim::shim_main;
pub use spec::{
    ExecOutput, ExecSpec, HostPort, LogStream, Network, PortMapping, Protocol, Reason, Resolver, Rootfs,
    SecretMaterial, TaskHandle, TaskSpec, TaskState, TaskStatus, Volume, VolumeSource,
};

use proto::{LineReader, Reply, Request};
use sandbox::{NetMode, NetPlan, Sandbox, ShimPlan};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    #[error("invalid runtime config: {0}")]
    InvalidConfig(String),
    #[error("task {0} already exists")]
    Exists(String),
    #[error("no task {0}")]
    NotFound(String),
    #[error("task {id} failed to start: {message}")]
    StartFailed { id: String, message: String },
    #[error("task {0} is not running")]
    NotRunning(String),
    #[error("network setup failed: {0}")]
    Network(String),
    #[error("exec in task {id} failed: {message}")]
    Exec { id: String, message: String },
    #[error("talking to the shim of task {id}")]
    Shim {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("compiling the seccomp filter: {0}")]
    Seccomp(String),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the runtime runs tasks on this host.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The program started as the shim, and its arguments before `--sandbox DIR`.
    /// Default: this executable with `shim`.
    pub shim_program: PathBuf,
    pub shim_args: Vec<String>,
    pub bridge: BridgeConfig,
    /// Host directories bound read-only into [`Rootfs::Host`] tasks (symlinks, such as a
    /// merged-/usr `/bin`, are recreated as symlinks).
    pub host_binds: Vec<PathBuf>,
    /// Host paths under which [`VolumeSource::Host`] volumes are allowed; empty refuses all.
    pub allowed_host_volumes: Vec<PathBuf>,
    /// Parent of every task's cgroup (`<parent>/<id>`), absolute.
    pub cgroup_parent: String,
    /// Each log file is rotated at this size; this many files are kept per stream.
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// How long [`Runtime::launch`] waits for the container to run.
    pub start_timeout: Duration,
    /// The pids limit of a task that gives none.
    pub default_pids: u64,
    /// Host paths that [`Rootfs::Host`] tasks must not see, besides the ones always hidden
    /// ([`ALWAYS_MASKED`] and the SSH host keys): the agent's data dir and configuration.
    pub host_masks: Vec<PathBuf>,
    /// Run tasks in a user namespace: their uids and gids 0..65536 are host ids from this
    /// one on. `None` (the default) keeps the host's ids.
    pub userns_base: Option<u32>,
}

/// Host files a [`Rootfs::Host`] task never sees: password hashes.
pub const ALWAYS_MASKED: &[&str] = &["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"];

/// How many ids a task's user namespace maps.
pub const USERNS_SIZE: u32 = 65536;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shim_program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tepui")),
            shim_args: vec!["shim".into()],
            bridge: BridgeConfig::default(),
            host_binds: ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr", "/etc", "/opt"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            allowed_host_volumes: Vec::new(),
            cgroup_parent: "/tepui".into(),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 3,
            start_timeout: Duration::from_secs(60),
            default_pids: 2048,
            host_masks: Vec::new(),
            userns_base: None,
        }
    }
}

/// A streaming exec: the process's stdio (or its terminal), and its exit code.
pub struct ExecSession {
    pub pid: i32,
    /// Without a tty: the process's stdin (drop it to send end of file), stdout and stderr.
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// With a tty: the terminal's master side, both directions (and `TIOCSWINSZ`).
    pub pty: Option<OwnedFd>,
    id: String,
    conn: Conn,
}

impl ExecSession {
    /// Waits for the process to exit: its code, or 128 + the signal that killed it.
    pub async fn wait(mut self) -> Result<i32> {
        let id = self.id.clone();
        match self.conn.recv().await.map_err(|e| shim_err(&id, e))? {
            Some((Reply::ExecExited { code }, _)) => Ok(code),
            // The container ended and took the process with it.
            None => Ok(137),
            Some((other, _)) => Err(Error::Exec {
                id,
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}

/// The agent's handle on the container runtime. Cheap; holds no task state.
pub struct Runtime {
    root: PathBuf,
    config: RuntimeConfig,
    /// `config.allowed_host_volumes`, resolved once (the operator's paths may hold links).
    allowed_host_volumes: Vec<PathBuf>,
    bridge_ready: tokio::sync::Mutex<bool>,
    /// The default seccomp profile, compiled once (tens of ms of CPU) for every task.
    seccomp_bpf: Vec<u8>,
    /// Forks the shims (started on first use).
    spawner: Arc<spawner::Spawner>,
}

fn shim_err(id: &str, source: io::Error) -> Error {
    Error::Shim {
        id: id.to_string(),
        source,
    }
}

fn validate_id(id: &str) -> Result<()> {
    if tepui_common::valid_task_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "task id {id:?} must be {}",
            tepui_common::TASK_ID_RULE
        )))
    }
}

impl Runtime {
    /// A runtime keeping its sandboxes under `root_dir/tasks`.
    pub fn new(root_dir: impl Into<PathBuf>, config: RuntimeConfig) -> Result<Runtime> {
        let root = root_dir.into();
        if !config.cgroup_parent.starts_with('/') {
            return Err(Error::InvalidConfig(format!(
                "cgroup parent {:?} must be absolute",
                config.cgroup_parent
            )));
        }
        config.bridge.validate()?;
        if let Err(e) = cgroup::prepare_parent(&config.cgroup_parent) {
            // Tasks still start without it, each paying for a copy of the parent's cpuset.
            tracing::warn!(parent = %config.cgroup_parent, "cpuset of the tasks' parent cgroup: {e}");
        }
        let tasks = root.join("tasks");
        fs::create_dir_all(&tasks).map_err(|e| Error::io("create", &tasks, e))?;
        sandbox::prepare_run_root().map_err(|e| Error::io("prepare", Path::new(sandbox::RUN_ROOT), e))?;
        let root = fs::canonicalize(&root).map_err(|e| Error::io("resolve", &root, e))?;
        let allowed_host_volumes = config
            .allowed_host_volumes
            .iter()
            .map(|a| fs::canonicalize(a).unwrap_or_else(|_| a.clone()))
            .collect();
        let seccomp_bpf = seccomp::compile_default().map_err(|e| Error::Seccomp(tepui_common::error_chain(&e)))?;
        let runtime = Runtime {
            root,
            allowed_host_volumes,
            bridge_ready: tokio::sync::Mutex::new(false),
            seccomp_bpf,
            spawner: Arc::new(spawner::Spawner::new(
                config.shim_program.clone(),
                config.shim_args.clone(),
            )),
            config,
        };
        runtime.prepare_host_root(&runtime.shared_host_root())?;
        Ok(runtime)
    }

    /// The pid of the process that forks this runtime's shims, once one runs.
    pub fn spawner_pid(&self) -> Option<u32> {
        self.spawner.pid()
    }

    fn sandbox(&self, id: &str) -> Sandbox {
        Sandbox::new(self.root.join("tasks").join(id))
    }

    /// The task's sandbox directory (logs, records, and `data/`, the task's own files).
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandbox(id).dir
    }

    /// The task's run directory: its shim's socket, pid, lock and live state, and its bundle,
    /// on a tmpfs (see the sandbox module).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.sandbox(id).run
    }

    fn lease_dir(&self) -> PathBuf {
        self.root.join("net").join(&self.config.bridge.name)
    }

    /// Changes a running task's CPU limit and raises its memory limit (never lowers it): a
    /// framework's executor gets the resources of the tasks it runs in its container.
    pub fn update_limits(&self, id: &str, cpus: Option<f64>, mem_mb: Option<u64>) -> Result<()> {
        validate_id(id)?;
        let cgroup_path = format!("{}/{}", self.config.cgroup_parent.trim_end_matches('/'), id);
        cgroup::update_limits(&cgroup_path, cpus, mem_mb)
            .map_err(|e| Error::io("update limits of", Path::new(&cgroup_path), e))
    }

    /// Writes the sandbox, starts the shim, and waits until the container runs. A container
    /// that cannot start (no such command, a bad mount) is [`Error::StartFailed`], and its
    /// status says so too.
    #[tracing::instrument(skip_all, fields(task = %spec.id))]
    pub async fn launch(&self, spec: &TaskSpec) -> Result<TaskHandle> {
        validate_id(&spec.id)?;
        if spec.args.is_empty() {
            return Err(Error::InvalidSpec("args must not be empty".into()));
        }
        let sb = self.sandbox(&spec.id);
        match fs::create_dir(&sb.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(Error::Exists(spec.id.clone())),
            Err(e) => return Err(Error::io("create", &sb.dir, e)),
        }
        // Whatever an earlier sandbox of the same path left there is stale.
        let _ = fs::remove_dir_all(&sb.run);
        if let Err(e) = fs::create_dir(&sb.run) {
            let _ = fs::remove_dir(&sb.dir);
            return Err(Error::io("create", &sb.run, e));
        }
        let mut lease: Option<PathBuf> = None;
        let prepared = self.prepare(spec, &sb, &mut lease).await;
        let ip = match prepared {
            Ok(ip) => ip,
            Err(e) => {
                if let Some(l) = lease {
                    let _ = fs::remove_file(l);
                }
                sandbox::unmount_secrets(&sb.bundle());
                let _ = fs::remove_dir_all(&sb.dir);
                let _ = fs::remove_dir_all(&sb.run);
                return Err(e);
            }
        };
        let ready = self.spawn_shim(&sb).await?;
        match ready {
            shim::Ready {
                ok: true,
                pid: Some(pid),
                ..
            } => {
                tracing::info!(pid, "task running");
                Ok(TaskHandle {
                    id: spec.id.clone(),
                    pid,
                    sandbox: sb.dir.clone(),
                    ip,
                })
            }
            shim::Ready { message, .. } => Err(Error::StartFailed {
                id: spec.id.clone(),
                message: message.unwrap_or_else(|| "the shim gave no reason".into()),
            }),
        }
    }

    async fn prepare(
        &self,
        spec: &TaskSpec,
        sb: &Sandbox,
        lease: &mut Option<PathBuf>,
    ) -> Result<Option<std::net::Ipv4Addr>> {
        let data = sb.data();
        fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
        // Where the user's name is looked up: the image's files, or the host's.
        let (rootfs, users_root) = match &spec.rootfs {
            Rootfs::Path(p) => {
                if !p.is_dir() {
                    return Err(Error::InvalidSpec(format!("rootfs {p:?} is not a directory")));
                }
                (p.clone(), p.clone())
            }
            // One skeleton serves every host task whose mount points are all in it: their
            // root is read-only, and a skeleton per task was about 15 of the 40 files and
            // directories each start created. A volume's mount point would be made in the
            // skeleton, so a task with volumes gets one of its own.
            Rootfs::Host if spec.volumes.is_empty() => (self.shared_host_root(), PathBuf::from("/")),
            Rootfs::Host => {
                let r = sb.host_root();
                self.prepare_host_root(&r)?;
                (r, PathBuf::from("/"))
            }
        };
        let user = oci::resolve_user(spec.user.as_deref(), &users_root)?;
        if self.config.userns_base.is_some() && (user.uid >= USERNS_SIZE || user.gid >= USERNS_SIZE) {
            return Err(Error::InvalidSpec(format!(
                "user {}:{} is outside the {USERNS_SIZE} ids a task's user namespace maps",
                user.uid, user.gid
            )));
        }
        // With a user namespace, the task's ids are shifted on the host.
        let shift = self.config.userns_base.unwrap_or(0);
        // The task owns its sandbox data, as on Mesos.
        let own = |p: &Path| {
            std::os::unix::fs::chown(p, Some(user.uid + shift), Some(user.gid + shift))
                .map_err(|e| Error::io("chown", p, e))
        };
        own(&data)?;

        let mut volumes_ok = Vec::new();
        let mut host_volumes = Vec::new();
        for v in &spec.volumes {
            match &v.source {
                VolumeSource::Host(p) => {
                    // Checked here for an early answer; the shim checks again where it mounts.
                    let split = volumes::split_under(p, &self.allowed_host_volumes).or_else(|| {
                        let real = fs::canonicalize(p).ok()?;
                        volumes::split_under(&real, &self.allowed_host_volumes)
                    });
                    let Some((root, rel)) = split else {
                        return Err(Error::InvalidSpec(format!(
                            "host volume {p:?} is not under an allowed path"
                        )));
                    };
                    let hv = volumes::HostVolume {
                        root,
                        rel,
                        target: v.target.clone(),
                    };
                    volumes::open_beneath(&hv).map_err(Error::InvalidSpec)?;
                    volumes_ok.push(spec::Volume {
                        source: VolumeSource::Host(hv.root.join(&hv.rel)),
                        ..v.clone()
                    });
                    host_volumes.push(hv);
                }
                VolumeSource::Sandbox(rel) => {
                    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                        return Err(Error::InvalidSpec(format!(
                            "sandbox volume {rel:?} must be relative, without .."
                        )));
                    }
                    let d = data.join(rel);
                    fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
                    own(&d)?;
                    volumes_ok.push(v.clone());
                }
                VolumeSource::Shared(d) => {
                    if !d.is_absolute() {
                        return Err(Error::InvalidSpec(format!(
                            "shared volume {d:?} is not an absolute path"
                        )));
                    }
                    fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
                    // Every task of the group writes there, whichever user it runs as.
                    fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                        .map_err(|e| Error::io("chmod", d, e))?;
                    volumes_ok.push(v.clone());
                }
            }
        }
        let mut spec_ok = spec.clone();
        spec_ok.volumes = volumes_ok;
        if !spec.secrets.is_empty() {
            // The bundle (config.json holds the environment) and the secret files live on a
            // tmpfs of the task's own: in memory, never on disk, gone when the task ends.
            for (target, source) in sandbox::secrets_tmpfs(&sb.bundle(), &spec.secrets)? {
                spec_ok.volumes.push(spec::Volume {
                    source: VolumeSource::Host(source),
                    target,
                    read_only: true,
                });
            }
            spec_ok
                .env
                .extend(spec.secrets.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }

        let (net, ip) = match &spec.network {
            Network::Host { .. } => (NetMode::Host, None),
            Network::None => (NetMode::None, None),
            Network::Join { netns } => {
                if !netns.is_absolute() {
                    return Err(Error::InvalidSpec(format!(
                        "network namespace {netns:?} is not an absolute path"
                    )));
                }
                (NetMode::Joined, None)
            }
            Network::Bridge { ports } => {
                self.ensure_bridge().await?;
                let cfg = self.config.bridge.clone();
                let (ip, path) = net::lease(&self.lease_dir(), &cfg, &spec.id)?;
                *lease = Some(path.clone());
                (
                    NetMode::Bridge(NetPlan {
                        bridge: cfg.name.clone(),
                        host_veth: net::host_veth(&spec.id),
                        ip,
                        prefix: cfg.prefix,
                        gateway: cfg.gateway(),
                        ports: ports.clone(),
                        lease: path,
                    }),
                    Some(ip),
                )
            }
        };

        let hostname: String = spec.id.chars().take(63).collect();
        let hosts = match (&net, ip) {
            (NetMode::Host, _) => None,
            (_, Some(ip)) => Some(format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{ip}\t{hostname}\n")),
            (_, None) => Some(format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost\n")),
        };
        if let Some(h) = &hosts {
            fs::write(sb.hosts(), h).map_err(|e| Error::io("write", &sb.hosts(), e))?;
        }
        // The cluster's resolver when the agent gives one; else an image's task gets the
        // host's file (a host task sees the host's /etc as it is).
        let host_resolv = Path::new("/etc/resolv.conf");
        let own_resolv = sb.resolv_conf();
        let resolv = match (&spec.resolver, &net) {
            (_, NetMode::None) => None,
            // A host task's /etc is the host's: the file is mounted over the host's own, which
            // must be a file there (not a link into a /run the task does not have).
            (Some(r), _)
                if matches!(spec.rootfs, Rootfs::Path(_))
                    || fs::symlink_metadata(host_resolv).is_ok_and(|m| m.file_type().is_file()) =>
            {
                fs::write(&own_resolv, r.resolv_conf()).map_err(|e| Error::io("write", &own_resolv, e))?;
                Some(own_resolv.as_path())
            }
            _ => (matches!(spec.rootfs, Rootfs::Path(_)) && host_resolv.is_file()).then_some(host_resolv),
        };

        let cgroup_path = format!("{}/{}", self.config.cgroup_parent.trim_end_matches('/'), spec.id);
        let hosts_path = sb.hosts();
        let config = oci::config(&oci::OciInputs {
            spec: &spec_ok,
            user: &user,
            rootfs: &rootfs,
            host_binds: &self.config.host_binds,
            sandbox_data: &data,
            hosts_file: hosts.as_ref().map(|_| hosts_path.as_path()),
            resolv_conf: resolv,
            cgroup_path: &cgroup_path,
            default_pids: self.config.default_pids,
            host_masks: &self.host_masks(),
            userns: self.config.userns_base.map(|b| (b, USERNS_SIZE)),
        })?;
        if self.config.userns_base.is_some() {
            make_mount_targets(&rootfs, &config)?;
        }
        // libcontainer reads it back with oci-spec: refuse here what it would refuse there.
        serde_json::from_value::<oci_spec::runtime::Spec>(config.clone())
            .map_err(|e| Error::InvalidSpec(format!("generated OCI config: {e}")))?;
        let bundle = sb.bundle();
        fs::create_dir_all(&bundle).map_err(|e| Error::io("create", &bundle, e))?;
        let cfg_path = bundle.join("config.json");
        sandbox::write_json(&cfg_path, &config).map_err(|e| Error::io("write", &cfg_path, e))?;
        sandbox::write_json(&sb.task(), spec).map_err(|e| Error::io("write", &sb.task(), e))?;
        sandbox::write_atomic(&sb.seccomp(), &self.seccomp_bpf).map_err(|e| Error::io("write", &sb.seccomp(), e))?;
        let plan = ShimPlan {
            id: spec.id.clone(),
            cgroup_path,
            kill_grace: spec.kill_grace_period,
            log_max_bytes: self.config.log_max_bytes,
            log_max_files: self.config.log_max_files,
            user,
            mem_mb: spec.mem_mb,
            net,
            host_volumes,
        };
        sandbox::write_json(&sb.plan(), &plan).map_err(|e| Error::io("write", &sb.plan(), e))?;
        Ok(ip)
    }

    /// What host tasks must not see: password hashes, the SSH host keys, and the
    /// configured paths.
    fn host_masks(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = ALWAYS_MASKED.iter().map(PathBuf::from).collect();
        if let Ok(rd) = fs::read_dir("/etc/ssh") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("_key") {
                    out.push(e.path());
                }
            }
        }
        out.extend(self.config.host_masks.iter().cloned());
        out.sort();
        out
    }

    fn shared_host_root(&self) -> PathBuf {
        self.root.join("host-root")
    }

    /// Makes (or completes) a root for host tasks: the mount points of the host's bound
    /// directories (links where the host has links) and of /proc, /dev, /sys, /tmp, /etc and
    /// the sandbox. Idempotent, and it never removes anything: running tasks may have their
    /// root here.
    fn prepare_host_root(&self, r: &Path) -> Result<()> {
        let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| Error::io("create", p, e));
        mk(r)?;
        for d in &self.config.host_binds {
            let Ok(rel) = d.strip_prefix("/") else {
                continue;
            };
            let inside = r.join(rel);
            match fs::symlink_metadata(d) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(d).map_err(|e| Error::io("read link", d, e))?;
                    if let Some(parent) = inside.parent() {
                        mk(parent)?;
                    }
                    if let Err(e) = std::os::unix::fs::symlink(&target, &inside) {
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(Error::io("symlink", &inside, e));
                        }
                    }
                }
                Ok(m) if m.is_dir() => mk(&inside)?,
                _ => {}
            }
        }
        for d in ["proc", "dev", "sys", "tmp", "mnt/sandbox", "etc"] {
            mk(&r.join(d))?;
        }
        Ok(())
    }

    /// Points this host's cluster resolver at `target`, the cluster's DNS: the bridge's
    /// gateway answers DNS on port 53 (UDP and TCP) by a DNAT to it, for bridge tasks (it is
    /// their gateway) and host tasks (it is an address of the host) alike. Makes the bridge
    /// if need be. Returns the resolver's address, to name in tasks' `/etc/resolv.conf`
    /// ([`TaskSpec::resolver`]). `None` removes the DNAT (queries to the gateway then go
    /// unanswered).
    pub async fn set_cluster_resolver(
        &self,
        target: Option<std::net::SocketAddr>,
    ) -> Result<Option<std::net::Ipv4Addr>> {
        let target = match target {
            None => None,
            Some(std::net::SocketAddr::V4(t)) => Some(t),
            Some(t) => {
                return Err(Error::InvalidConfig(format!(
                    "the cluster's DNS at {t} is IPv6; the bridge's resolver forwards to IPv4 only"
                )))
            }
        };
        if target.is_some() {
            self.ensure_bridge().await?;
        }
        let cfg = self.config.bridge.clone();
        tokio::task::spawn_blocking(move || net::set_resolver(&cfg, target))
            .await
            .map_err(|e| Error::Network(format!("resolver setup panicked: {e}")))??;
        Ok(target.map(|_| self.config.bridge.gateway()))
    }

    /// The address tasks name as their resolver once [`Runtime::set_cluster_resolver`] set
    /// it up: the bridge's gateway.
    pub fn resolver_address(&self) -> std::net::Ipv4Addr {
        self.config.bridge.gateway()
    }

    async fn ensure_bridge(&self) -> Result<()> {
        let mut ready = self.bridge_ready.lock().await;
        if !*ready {
            let cfg = self.config.bridge.clone();
            tokio::task::spawn_blocking(move || net::ensure_bridge(&cfg))
                .await
                .map_err(|e| Error::Network(format!("bridge setup panicked: {e}")))??;
            *ready = true;
        }
        Ok(())
    }

    /// Executes the shim (when the spawner cannot fork one); `w`, the ready pipe's write
    /// end, becomes its stdout, so std starts it with posix_spawn (vfork): forking the agent
    /// would copy its page tables and then fault on every page it writes until the child
    /// execs.
    async fn exec_shim(&self, sb: &Sandbox, w: OwnedFd) -> Result<()> {
        let mut cmd = tokio::process::Command::new(&self.config.shim_program);
        cmd.args(&self.config.shim_args)
            .arg("--sandbox")
            .arg(&sb.dir)
            .args(["--ready-fd", "1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(w))
            .stderr(std::process::Stdio::null());
        let status = cmd
            .status()
            .await
            .map_err(|e| Error::io("start shim", &self.config.shim_program, e))?;
        if !status.success() {
            return Err(Error::StartFailed {
                id: sandbox_id(sb),
                message: format!("the shim exited with {status}"),
            });
        }
        Ok(())
    }

    async fn spawn_shim(&self, sb: &Sandbox) -> Result<shim::Ready> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe for", &sb.dir, e.into()))?;
        let (spawner, dir) = (self.spawner.clone(), sb.dir.clone());
        let (forked, w) = tokio::task::spawn_blocking(move || (spawner.spawn(&dir, w.as_fd()), w))
            .await
            .map_err(|e| Error::io("start shim", &sb.dir, io::Error::other(e.to_string())))?;
        match forked {
            Ok(()) => drop(w),
            Err(e) => {
                tracing::warn!(error = %e, "the shim spawner failed; executing the shim");
                self.exec_shim(sb, w).await?;
            }
        }
        let mut rx =
            tokio::net::unix::pipe::Receiver::from_owned_fd(r).map_err(|e| Error::io("read shim pipe", &sb.dir, e))?;
        let mut line = Vec::new();
        let read = tokio::time::timeout(self.config.start_timeout, rx.read_to_end(&mut line)).await;
        match read {
            Err(_) => {
                return Err(Error::StartFailed {
                    id: sandbox_id(sb),
                    message: format!(
                        "not running after {:?}; see {}",
                        self.config.start_timeout,
                        sb.shim_log().display()
                    ),
                })
            }
            Ok(Err(e)) => return Err(Error::io("read shim pipe", &sb.dir, e)),
            Ok(Ok(_)) => {}
        }
        match serde_json::from_slice::<shim::Ready>(line.trim_ascii()) {
            Ok(r) => Ok(r),
            Err(_) => {
                // The shim died before it said anything; its log says why.
                let log = fs::read_to_string(sb.shim_log()).unwrap_or_default();
                let last = log.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                Ok(shim::Ready {
                    ok: false,
                    pid: None,
                    message: Some(format!("the shim exited without a word: {last}")),
                })
            }
        }
    }

    /// The task's current status.
    pub async fn status(&self, id: &str) -> Result<TaskStatus> {
        validate_id(id)?;
        let sb = self.sandbox(id);
        self.status_of(&sb, id)
    }

    fn status_of(&self, sb: &Sandbox, id: &str) -> Result<TaskStatus> {
        if let Ok(s) = sandbox::read_json::<TaskStatus>(&sb.status()) {
            return Ok(s);
        }
        if !sb.dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        if sandbox::shim_alive(sb) || self.starting(sb) {
            return Ok(sandbox::read_json::<TaskStatus>(&sb.state())
                .unwrap_or_else(|_| TaskStatus::new(id, TaskState::Starting)));
        }
        // Ended in the meantime?
        if let Ok(s) = sandbox::read_json::<TaskStatus>(&sb.status()) {
            return Ok(s);
        }
        Ok(self.reap_lost(sb, id))
    }

    /// A sandbox whose shim has not taken its lock yet (launch in progress).
    fn starting(&self, sb: &Sandbox) -> bool {
        if sb.state().exists() {
            return false;
        }
        let age = fs::metadata(sb.plan())
            .or_else(|_| fs::metadata(&sb.dir))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        age < self.config.start_timeout
    }

    /// A shim died without recording the end: kill what is left of the task, release its
    /// cgroup, network and address, and record it as failed with [`Reason::ShimLost`].
    fn reap_lost(&self, sb: &Sandbox, id: &str) -> TaskStatus {
        tracing::warn!(task = id, "shim is gone without a final status; cleaning up");
        let plan: Option<ShimPlan> = sandbox::read_json(&sb.plan()).ok();
        if let Some(plan) = &plan {
            for e in cgroup::kill_and_remove(&plan.cgroup_path) {
                tracing::warn!(task = id, "cgroup cleanup: {e}");
            }
            if let NetMode::Bridge(n) = &plan.net {
                for e in net::teardown_task(n, id) {
                    tracing::warn!(task = id, "network teardown: {e}");
                }
            }
        }
        let _ = fs::remove_dir_all(sb.lc_root());
        let mut st =
            sandbox::read_json::<TaskStatus>(&sb.state()).unwrap_or_else(|_| TaskStatus::new(id, TaskState::Starting));
        st.state = TaskState::Failed;
        st.reason = Some(Reason::ShimLost);
        st.message = Some("the task's shim died; its processes were killed".into());
        st.finished_at = Some(SystemTime::now());
        let _ = sandbox::write_json(&sb.status(), &st);
        st
    }

    /// Waits until the task has ended; its final status.
    pub async fn wait(&self, id: &str) -> Result<TaskStatus> {
        validate_id(id)?;
        let sb = self.sandbox(id);
        loop {
            let st = self.status_of(&sb, id)?;
            if st.state.is_terminal() {
                return Ok(st);
            }
            // A live shim answers a wait when the task ends, whatever state it last wrote.
            if st.state == TaskState::Running || sandbox::shim_alive(&sb) {
                if let Ok(mut c) = Conn::connect(&sb).await {
                    if c.send(&Request::Wait, &[]).await.is_ok() {
                        if let Ok(Some((Reply::Status(s), _))) = c.recv().await {
                            return Ok(s);
                        }
                    }
                }
                // The shim closed its socket: it is on its way out, having recorded the end.
                // Its lock goes when it does.
                if sandbox::shim_alive(&sb) {
                    let lock = sb.clone();
                    let _ = tokio::task::spawn_blocking(move || sandbox::wait_shim_exit(&lock)).await;
                    continue;
                }
            }
            // Still starting (no shim holds the lock yet): look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the shim to stop the task: SIGTERM, then SIGKILL after the task's
    /// `kill_grace_period`. Returns once asked; [`Runtime::wait`] gives the end
    /// ([`TaskState::Killed`]).
    pub async fn kill(&self, id: &str) -> Result<()> {
        self.kill_within(id, None).await
    }

    /// [`Runtime::kill`] with another grace period than the task's own.
    pub async fn kill_within(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        validate_id(id)?;
        let sb = self.sandbox(id);
        let st = self.status_of(&sb, id)?;
        if st.state.is_terminal() {
            return Ok(());
        }
        let asked = async {
            let mut c = Conn::connect(&sb).await?;
            c.send(&Request::Kill { grace }, &[]).await?;
            c.recv().await
        }
        .await;
        match asked {
            Ok(Some((Reply::Ok, _))) => Ok(()),
            Ok(Some((Reply::Error { message }, _))) => Err(shim_err(id, io::Error::other(message))),
            other => {
                // Gone meanwhile (ended, or the shim died): the status tells which.
                let st = self.status_of(&sb, id)?;
                if st.state.is_terminal() {
                    Ok(())
                } else {
                    Err(shim_err(id, io::Error::other(format!("no answer to kill: {other:?}"))))
                }
            }
        }
    }

    /// Runs a command in the running task and collects its output (no tty).
    pub async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.tty {
            return Err(Error::Exec {
                id: id.to_string(),
                message: "a tty exec streams: use exec_stream".into(),
            });
        }
        let mut s = self.exec_stream(id, cmd).await?;
        drop(s.stdin.take());
        let mut out = s.stdout.take().expect("non-tty exec has stdout");
        let mut err = s.stderr.take().expect("non-tty exec has stderr");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let (ro, re) = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
        ro.map_err(|x| shim_err(id, x))?;
        re.map_err(|x| shim_err(id, x))?;
        let exit_code = s.wait().await?;
        Ok(ExecOutput {
            exit_code,
            stdout: o,
            stderr: e,
        })
    }

    /// Starts a command in the running task and hands over its stdio (or terminal).
    pub async fn exec_stream(&self, id: &str, cmd: &ExecSpec) -> Result<ExecSession> {
        validate_id(id)?;
        let sb = self.sandbox(id);
        let st = self.status_of(&sb, id)?;
        if st.state != TaskState::Running {
            return Err(Error::NotRunning(id.to_string()));
        }
        let exec_err = |message: String| Error::Exec {
            id: id.to_string(),
            message,
        };
        let mut conn = Conn::connect(&sb).await.map_err(|e| shim_err(id, e))?;
        let mut session = ExecSession {
            pid: 0,
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
            id: id.to_string(),
            conn: Conn::placeholder(),
        };
        if cmd.tty {
            conn.send(&Request::Exec(cmd.clone()), &[])
                .await
                .map_err(|e| shim_err(id, e))?;
        } else {
            let p = |_: ()| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from);
            let (in_r, in_w) = p(()).map_err(|e| shim_err(id, e))?;
            let (out_r, out_w) = p(()).map_err(|e| shim_err(id, e))?;
            let (err_r, err_w) = p(()).map_err(|e| shim_err(id, e))?;
            conn.send(
                &Request::Exec(cmd.clone()),
                &[in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            )
            .await
            .map_err(|e| shim_err(id, e))?;
            drop((in_r, out_w, err_w));
            use tokio::net::unix::pipe;
            session.stdin = Some(pipe::Sender::from_owned_fd(in_w).map_err(|e| shim_err(id, e))?);
            session.stdout = Some(pipe::Receiver::from_owned_fd(out_r).map_err(|e| shim_err(id, e))?);
            session.stderr = Some(pipe::Receiver::from_owned_fd(err_r).map_err(|e| shim_err(id, e))?);
        }
        match conn.recv().await.map_err(|e| shim_err(id, e))? {
            Some((Reply::ExecStarted { pid }, mut fds)) => {
                session.pid = pid;
                if cmd.tty {
                    session.pty = Some(fds.pop().ok_or_else(|| exec_err("no terminal came back".into()))?);
                }
            }
            Some((Reply::Error { message }, _)) => return Err(exec_err(message)),
            other => return Err(exec_err(format!("unexpected reply {other:?}"))),
        }
        session.conn = conn;
        Ok(session)
    }

    /// The task's stdout or stderr: all of it or its last `tail` lines, then (when
    /// `follow`) what it writes until it ends.
    pub async fn logs(&self, id: &str, stream: LogStream, tail: Option<usize>, follow: bool) -> Result<LogChunks> {
        validate_id(id)?;
        let sb = self.sandbox(id);
        if !sb.dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(logs::open(
            &sb,
            stream.file_name(),
            self.config.log_max_files.max(1),
            tail,
            follow,
        ))
    }

    /// After an agent restart: every sandbox with its status. Tasks whose shim lives keep
    /// running untouched; those whose shim died get their recorded final status (or, with
    /// none recorded, are cleaned up and marked failed with [`Reason::ShimLost`]).
    pub async fn adopt(&self) -> Result<Vec<(String, TaskStatus)>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            let sb = self.sandbox(&id);
            match self.status_of(&sb, &id) {
                Ok(st) => out.push((id, st)),
                Err(e) => tracing::warn!(task = %id, "adopt: {e}"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("tasks");
        let rd = fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        Ok(rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect())
    }

    /// Removes the sandboxes of tasks that ended more than `retention` ago, after making
    /// sure nothing of them is left (processes, cgroups, rules, links, addresses).
    /// Returns the ids removed.
    pub async fn cleanup(&self, retention: Duration) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let now = SystemTime::now();
        let mut by_id: HashMap<String, TaskStatus> = HashMap::new();
        for (id, st) in self.adopt().await? {
            by_id.insert(id, st);
        }
        for (id, st) in by_id {
            if !st.state.is_terminal() {
                continue;
            }
            let old_enough = st
                .finished_at
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= retention);
            if !old_enough {
                continue;
            }
            let sb = self.sandbox(&id);
            // A shim that recorded the end is on its way out; give it a moment.
            let exiting = tokio::time::timeout(Duration::from_secs(5), async {
                while sandbox::shim_alive(&sb) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            if exiting.await.is_err() {
                tracing::warn!(task = %id, "cleanup: the shim is still alive");
                continue;
            }
            if let Ok(plan) = sandbox::read_json::<ShimPlan>(&sb.plan()) {
                let mut errs = cgroup::kill_and_remove(&plan.cgroup_path);
                if let NetMode::Bridge(n) = &plan.net {
                    errs.extend(net::teardown_task(n, &id));
                }
                if !errs.is_empty() {
                    tracing::warn!(task = %id, "cleanup: {}", errs.join("; "));
                    continue;
                }
            }
            sandbox::unmount_secrets(&sb.bundle());
            if sb.run != sb.dir {
                fs::remove_dir_all(&sb.run)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| Error::io("remove", &sb.run, e))?;
            }
            fs::remove_dir_all(&sb.dir).map_err(|e| Error::io("remove", &sb.dir, e))?;
            tracing::info!(task = %id, "sandbox removed");
            removed.push(id);
        }
        removed.sort();
        Ok(removed)
    }
}

/// Makes the mount points of `config` in `rootfs`, as host root. In a user namespace the
/// container's root cannot create them in a rootfs that host root owns.
fn make_mount_targets(rootfs: &Path, config: &serde_json::Value) -> Result<()> {
    for m in config["mounts"].as_array().into_iter().flatten() {
        let Some(dest) = m["destination"].as_str() else {
            continue;
        };
        let rel = dest.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            continue;
        }
        let inside = rootfs.join(rel);
        if fs::symlink_metadata(&inside).is_ok() {
            continue;
        }
        let source_is_file = m["source"].as_str().is_some_and(|s| Path::new(s).is_file());
        let made = if source_is_file {
            inside
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| fs::File::create(&inside).map(drop))
        } else {
            fs::create_dir_all(&inside)
        };
        made.map_err(|e| Error::io("create mount point", &inside, e))?;
    }
    Ok(())
}

fn sandbox_id(sb: &Sandbox) -> String {
    sb.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A client connection to a shim.
struct Conn {
    stream: Option<UnixStream>,
    reader: LineReader,
}

impl Conn {
    fn placeholder() -> Conn {
        Conn {
            stream: None,
            reader: LineReader::new(),
        }
    }

    async fn connect(sb: &Sandbox) -> io::Result<Conn> {
        // Through the directory's descriptor: sun_path holds only 108 bytes.
        let dir = fs::File::open(&sb.run)?;
        let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), Sandbox::SOCKET);
        let stream = UnixStream::connect(&path).await?;
        drop(dir);
        Ok(Conn {
            stream: Some(stream),
            reader: LineReader::new(),
        })
    }

    fn stream(&self) -> io::Result<&UnixStream> {
        self.stream
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    async fn send(&mut self, req: &Request, fds: &[RawFd]) -> io::Result<()> {
        let s = self.stream()?;
        loop {
            s.writable().await?;
            let fd = s.as_raw_fd();
            match s.try_io(Interest::WRITABLE, || {
                proto::send_line(fd, req, fds).map_err(io::Error::from)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn recv(&mut self) -> io::Result<Option<(Reply, Vec<OwnedFd>)>> {
        loop {
            if let Some(line) = self.reader.take_line() {
                let reply = serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return Ok(Some((reply, std::mem::take(&mut self.reader.fds))));
            }
            let s = self.stream()?;
            s.readable().await?;
            let fd = s.as_raw_fd();
            let mut buf = [0u8; 4096];
            match s.try_io(Interest::READABLE, || {
                proto::recv_some(fd, &mut buf).map_err(io::Error::from)
            }) {
                Ok((0, fds)) => {
                    self.reader.push(&[], fds);
                    return Ok(None);
                }
                Ok((n, fds)) => self.reader.push(&buf[..n], fds),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The agent runs these from spawned tasks: their futures must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(rt: &Runtime, spec: &TaskSpec, cmd: &ExecSpec) {
        assert_send(&rt.launch(spec));
        assert_send(&rt.status("x"));
        assert_send(&rt.wait("x"));
        assert_send(&rt.kill("x"));
        assert_send(&rt.exec("x", cmd));
        assert_send(&rt.exec_stream("x", cmd));
        assert_send(&rt.logs("x", LogStream::Stdout, None, false));
        assert_send(&rt.adopt());
        assert_send(&rt.cleanup(Duration::ZERO));
    }

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("web.1-a_b+c").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bad = RuntimeConfig {
            cgroup_parent: "tepui".into(),
            ..RuntimeConfig::default()
        };
        assert!(matches!(Runtime::new(dir.path(), bad), Err(Error::InvalidConfig(_))));
        assert!(Runtime::new(dir.path(), RuntimeConfig::default()).is_ok());
    }
}
