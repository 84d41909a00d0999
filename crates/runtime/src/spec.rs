//! What the agent asks for (a [`TaskSpec`]) and what it gets back (a [`TaskStatus`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// One task to run in a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique on this host: `[A-Za-z0-9_.+-]`, at most 128 characters.
    pub id: String,
    pub rootfs: Rootfs,
    /// The command and its arguments; the first is looked up in the container's `PATH`.
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `uid`, `uid:gid`, `name` or `name:group`; names are resolved in the rootfs's
    /// `/etc/passwd` and `/etc/group` (the host's for [`Rootfs::Host`]). Default `nobody`
    /// (65534); root only when asked for (`root` or `0`).
    #[serde(default)]
    pub user: Option<String>,
    /// Absolute path inside the container; default `/` (the sandbox for [`Rootfs::Host`]).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// CPU shares (`cpus * 1024`) and a CFS quota of `cpus` per period.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory limit; going past it OOM-kills the task, which ends failed with
    /// [`Reason::MemoryLimit`].
    #[serde(default)]
    pub mem_mb: Option<u64>,
    /// Most processes and threads the task may have at once (default
    /// `RuntimeConfig::default_pids`).
    #[serde(default)]
    pub pids: Option<u64>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// Time between SIGTERM and SIGKILL when the task is killed.
    #[serde(default = "default_grace")]
    pub kill_grace_period: Duration,
    /// Secret values for the task: never written to disk (the spec is saved without them).
    #[serde(skip)]
    pub secrets: SecretMaterial,
    /// The resolver its `/etc/resolv.conf` names (host and bridge networking). None: an
    /// image's task gets the host's file, a host task sees the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<Resolver>,
}

/// A task's `/etc/resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolver {
    pub nameservers: Vec<IpAddr>,
    /// Domains tried, in order, for names with fewer dots than `ndots`.
    pub search: Vec<String>,
    /// `options` words, like `ndots:1`.
    pub options: Vec<String>,
}

impl Resolver {
    /// The file's text. Names that would break its line format (spaces, control characters)
    /// are left out.
    pub fn resolv_conf(&self) -> String {
        let word = |w: &&String| !w.is_empty() && w.chars().all(|c| c.is_ascii_graphic() && c != '#' && c != ';');
        let mut out = String::from("# written by tepui: the cluster's resolver\n");
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        let search: Vec<&str> = self.search.iter().filter(word).map(String::as_str).collect();
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        let options: Vec<&str> = self.options.iter().filter(word).map(String::as_str).collect();
        if !options.is_empty() {
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

/// A task's secrets: environment variables, and files mounted read-only from a tmpfs that
/// holds the task's bundle while it runs. Its `Debug` shows names, never values.
#[derive(Clone, Default, PartialEq)]
pub struct SecretMaterial {
    pub env: BTreeMap<String, String>,
    /// (absolute path inside the container, content)
    pub files: Vec<(PathBuf, String)>,
}

impl SecretMaterial {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }
}

impl std::fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMaterial")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("files", &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .finish()
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

/// Where the container's root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rootfs {
    /// A directory prepared by the image store (the task may write to it unless
    /// `read_only_rootfs`).
    Path(PathBuf),
    /// The host's own programs (`RuntimeConfig::host_binds`, read-only) with a private
    /// `/tmp`, still in its own pid, mount, uts and ipc namespaces: the Mesos/Nomad `exec` style.
    Host,
}

/// How the task reaches the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network namespace. The ports are only announced to the task:
    /// `PORT0..`, `PORT_<NAME>`.
    Host { ports: Vec<HostPort> },
    /// Its own network namespace on the runtime's bridge, NAT out, and host ports
    /// forwarded to container ports. The task gets `PORT0..`/`PORT_<NAME>` (the container
    /// port to listen on) and `HOST_PORT0..`/`HOST_PORT_<NAME>` (the port on the host).
    Bridge { ports: Vec<PortMapping> },
    /// Its own network namespace with only a loopback interface.
    None,
    /// The network namespace at `netns` (another container's `/proc/PID/ns/net`: a task
    /// group's), whose network that container set up: nothing is set up or torn down here.
    Join { netns: PathBuf },
}

impl Default for Network {
    fn default() -> Self {
        Network::Host { ports: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(default)]
    pub name: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

/// A directory mounted into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: VolumeSource,
    /// Absolute path inside the container.
    pub target: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// A host path; refused unless under one of `RuntimeConfig::allowed_host_volumes`.
    Host(PathBuf),
    /// A relative path under the task's sandbox data directory (created when missing).
    Sandbox(PathBuf),
    /// An absolute host directory the agent made for a group of tasks (a task group's shared
    /// sandbox): created when missing, writable by every task of the group. Only the agent
    /// gives it; it never comes from a task's definition.
    Shared(PathBuf),
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// The shim is building the container.
    Starting,
    Running,
    /// Exited 0.
    Finished,
    /// Exited non-zero, died by a signal nobody asked for, hit its memory limit, failed to
    /// start, or lost its shim.
    Failed,
    /// Ended because the agent asked for it.
    Killed,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Finished | TaskState::Failed | TaskState::Killed)
    }
}

/// Why a task failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Exited with a non-zero code.
    CommandFailed,
    /// Died by a signal that the runtime did not send.
    Signaled,
    /// The memory cgroup OOM-killed a process of the task.
    MemoryLimit,
    /// The container could not be built or started (for example, no such command).
    StartFailed,
    /// Its shim died before recording the end; the task's processes were killed.
    ShimLost,
}

/// The state of one task, as recorded in its sandbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: String,
    pub state: TaskState,
    /// The container's init process, in the host's pid namespace.
    #[serde(default)]
    pub pid: Option<i32>,
    /// The task's address on the bridge.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub started_at: Option<SystemTime>,
    #[serde(default)]
    pub finished_at: Option<SystemTime>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// The memory cgroup recorded at least one OOM kill.
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub reason: Option<Reason>,
    /// For people: why it failed, in a sentence.
    #[serde(default)]
    pub message: Option<String>,
}

impl TaskStatus {
    pub(crate) fn new(id: &str, state: TaskState) -> TaskStatus {
        TaskStatus {
            id: id.to_string(),
            state,
            pid: None,
            ip: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            signal: None,
            oom_killed: false,
            reason: None,
            message: None,
        }
    }
}

/// What [`crate::Runtime::launch`] returns once the container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskHandle {
    pub id: String,
    pub pid: i32,
    pub sandbox: PathBuf,
    pub ip: Option<Ipv4Addr>,
}

/// A command to run inside a running task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Added to (and overriding) the task's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Run on a pseudo-terminal (for `-it`).
    #[serde(default)]
    pub tty: bool,
}

/// What a finished [`crate::Runtime::exec`] printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Which log of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Resolver;

    #[test]
    fn resolv_conf_names_the_resolver_and_leaves_out_what_would_break_it() {
        let r = Resolver {
            nameservers: vec!["10.213.0.1".parse().unwrap()],
            search: vec![
                "marathon.mesos".into(),
                "mesos".into(),
                "bad name".into(),
                String::new(),
            ],
            options: vec!["ndots:1".into(), "x\ny".into()],
        };
        assert_eq!(
            r.resolv_conf(),
            "# written by tepui: the cluster's resolver\nnameserver 10.213.0.1\nsearch marathon.mesos mesos\noptions ndots:1\n"
        );
        let bare = Resolver {
            nameservers: vec!["10.0.0.1".parse().unwrap()],
            ..Resolver::default()
        };
        assert!(!bare.resolv_conf().contains("search") && !bare.resolv_conf().contains("options"));
    }
}
