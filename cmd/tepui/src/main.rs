//! The `tepui` binary: argument parsing, tracing setup and wiring. Daemons (`dev`, `server`,
//! `agent`, `join`) start crates; every other verb is a client of the HTTP API.

mod apps;
mod client;
mod config;
#[cfg(feature = "daemon")]
mod daemon;
mod gateway;
mod jobs;
mod output;
mod packages;
mod pods;
#[cfg(feature = "daemon")]
mod recover;
mod tools;
mod ui;
mod upgrade;

#[cfg(feature = "daemon")]
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "tepui", version = tools::LONG_VERSION, about = "A data-center operating system in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A config file (TOML: the long flags as keys; see deploy/config.example.toml) [default
    /// for the daemons: /etc/tepui/config.toml when it exists]
    #[arg(long, global = true, env = "TEPUI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The API token to send [default: TEPUI_API_TOKEN, else the api-token file in the data dir]
    #[arg(long, global = true, env = "TEPUI_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// HTTPS: trust the cluster CA with this SHA-256 (the hash in join tokens; `tepui operator
    /// ca status` shows it) [default: the ca.pem of a server in the local data dir]
    #[arg(long, global = true, env = "TEPUI_CA_PIN", conflicts_with = "ca_file")]
    ca_pin: Option<String>,
    /// HTTPS: trust the CA certificates in this PEM file (the cluster's, or the one that signed
    /// a server's --api-cert)
    #[arg(long, global = true, env = "TEPUI_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Server and agent in one process, on one node: a cluster on a laptop.
    #[cfg(feature = "daemon")]
    Dev(DaemonArgs),
    /// A control-plane node: a Raft voter, the API and the schedulers.
    Server(ServerCmd),
    /// A worker node that runs tasks.
    #[cfg(feature = "daemon")]
    Agent(AgentArgs),
    /// Join a cluster as a server or an agent, by the token's kind.
    #[cfg(feature = "daemon")]
    Join(JoinArgs),
    /// The cluster at a glance.
    Status(ClientArgs),
    /// Nodes: servers and agents.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// API access: policies, tokens, anonymous reads.
    #[command(subcommand)]
    Acl(AclCmd),
    /// Tasks: run one on an agent, list, logs, exec, kill.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Images on the agents: pull, list, remove, import.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Replicated variables (small configuration values).
    #[command(subcommand)]
    Var(VarCmd),
    /// Secrets: stored encrypted, given to tasks, never shown again.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Batch jobs (Metronome's job JSON): define, list, show, run, stop, logs, graph, remove.
    #[command(subcommand)]
    Job(JobCmd),
    /// Mesos frameworks: list, tear down.
    #[command(subcommand)]
    Framework(FrameworkCmd),
    /// Roles: their weights, quota, frameworks and what they hold.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Role quota: guarantees and limits.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// The per-task supervisor an agent starts; not for people.
    #[cfg(feature = "daemon")]
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Backup, restore and Raft maintenance.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Long-running services (Marathon apps): run, list, scale, update, roll back, why.
    #[command(subcommand)]
    App(apps::AppCmd),
    /// Marathon pods (containers run together as one instance): add, list, scale, update, status.
    #[command(subcommand)]
    Pod(pods::PodCmd),
    /// Deployments of services: list, watch, cancel.
    #[command(subcommand)]
    Deployment(apps::DeploymentCmd),
    /// Service discovery: what the cluster's DNS answers, asked through the API.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// The gateway: the routes agents serve (from app labels) and the virtual IPs.
    #[command(subcommand)]
    Gateway(gateway::GatewayCmd),
    /// The gateway's TLS certificates, kept as cluster secrets and chosen by SNI.
    #[command(subcommand)]
    Cert(gateway::CertCmd),
    /// Packages from Universe repositories (DC/OS's catalog): search, describe, install,
    /// list, upgrade, uninstall; their repositories.
    #[command(subcommand)]
    Package(packages::PackageCmd),
    /// A login link to the web UI with a short-lived token of your own token's policies;
    /// opened in a browser where there is one.
    Ui(ui::UiArgs),
    /// This binary: version, commit, build date, target, compiler and features.
    Version(tools::VersionArgs),
    /// A shell's completion script, e.g. `tepui completions bash > /etc/bash_completion.d/tepui`.
    Completions(tools::CompletionsArgs),
    /// Man pages, one per command (`tepui man --dir /usr/local/share/man/man1`).
    Man(tools::ManArgs),
    /// The config file: check it.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check the config file (--config FILE, else /etc/tepui/config.toml): every key a flag,
    /// every value one it takes; prints "ok", or each problem with its line and exits 1.
    Check,
}

#[derive(Subcommand)]
enum DnsCmd {
    /// The answer the server's DNS gives for NAME (web.marathon.mesos); exit 1 on NXDOMAIN.
    Lookup {
        name: String,
        /// The record type: A, AAAA, SRV, SOA, NS or ANY.
        #[arg(long = "type", short = 't', default_value = "A")]
        rtype: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Every record of the cluster domain the server answers with.
    Records(ClientArgs),
}

#[cfg(feature = "daemon")]
#[derive(Args, Clone)]
struct DaemonArgs {
    /// Where this node keeps its state [default: ~/.local/share/tepui]
    #[arg(long, env = "TEPUI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The IP every listener binds to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The IP other nodes reach this one on [default: the bind IP]
    #[arg(long)]
    advertise: Option<IpAddr>,
    /// The IP a server's HTTP API listens on [default: the bind IP if it is a loopback
    /// address, else 127.0.0.1: the API is on the network only when asked, as with 0.0.0.0]
    #[arg(long)]
    http_bind: Option<IpAddr>,
    /// A name callers use for a server's HTTP API (repeatable): the `Host` header must be an
    /// IP address, localhost, a node's name or one of these (DNS-rebinding protection)
    #[arg(long = "api-hostname", value_name = "NAME")]
    api_hostnames: Vec<String>,
    /// Servers: the HTTPS certificate chain of the API, PEM [default: the node's certificate,
    /// signed by the cluster CA; clients trust it with --ca-pin]
    #[arg(long, requires = "api_key", value_name = "FILE")]
    api_cert: Option<PathBuf>,
    /// Servers: the private key of --api-cert, PEM.
    #[arg(long, requires = "api_cert", value_name = "FILE")]
    api_key: Option<PathBuf>,
    /// The node's name [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// HTTP API port.
    #[arg(long, default_value_t = 5050)]
    http_port: u16,
    /// Agent HTTP port.
    #[arg(long, default_value_t = 5051)]
    agent_port: u16,
    /// Cluster (gRPC, mTLS) port.
    #[arg(long, default_value_t = 5052)]
    cluster_port: u16,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Servers: how long the node certificates this server signs last (tests make it short).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    cert_lifetime: Option<std::time::Duration>,
    /// The management API token a new cluster starts with (ACCESSOR.SECRET) instead of a
    /// random one, for automation that must know it in advance.
    #[arg(long, env = "TEPUI_BOOTSTRAP_API_TOKEN", hide_env_values = true)]
    bootstrap_api_token: Option<String>,
    /// Servers: a deployment of services not done in this long rolls back by itself.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    deployment_timeout: std::time::Duration,
    /// Servers: the IP the cluster's DNS listens on, UDP and TCP [default: the bind IP]
    #[arg(long)]
    dns_bind: Option<IpAddr>,
    /// Servers: the cluster's DNS port (UDP and TCP); 0 turns DNS off.
    #[arg(long, default_value_t = 5053)]
    dns_port: u16,
    /// Servers: the cluster's DNS domain (Mesos-DNS names: web.marathon.mesos).
    #[arg(long, default_value = "mesos")]
    dns_domain: String,
    /// Servers: a resolver for names outside the domain, IP or IP:PORT (repeatable, asked in
    /// order) [default: the nameservers of /etc/resolv.conf]
    #[arg(long = "dns-upstream", value_name = "ADDR", value_parser = parse_dns_upstream)]
    dns_upstreams: Vec<std::net::SocketAddr>,
    /// Servers: the TTL of the domain's DNS records, in seconds.
    #[arg(long, default_value_t = 5)]
    dns_ttl: u32,
    /// Servers: the port of Mesos-DNS's HTTP API (/v1/hosts, /v1/services...), unauthenticated
    /// as Mesos-DNS's, on the DNS's IP; 0 turns it off.
    #[arg(long, default_value_t = 8123)]
    dns_http_port: u16,
    /// Servers: while this server leads, write a backup (the file `tepui operator snapshot
    /// save` writes, named by time and index) into this directory every --snapshot-interval.
    #[arg(long, value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,
    /// Servers: how often the leader writes a backup into --snapshot-dir (at least 1s).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    snapshot_interval: std::time::Duration,
    /// Servers: how many backups --snapshot-dir keeps; older ones are removed.
    #[arg(long, value_name = "N", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    snapshot_retain: u32,
    #[command(flatten)]
    agent: AgentResourceArgs,
}

#[cfg(feature = "daemon")]
#[derive(Args, Clone)]
struct AgentResourceArgs {
    /// CPUs to offer [default: detected]
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory to offer, in MB [default: detected]
    #[arg(long)]
    mem: Option<u64>,
    /// Disk to offer, in MB [default: free space of the data dir]
    #[arg(long)]
    disk: Option<u64>,
    /// Port range for tasks, LOW-HIGH [default: 31000-32000]
    #[arg(long, value_parser = parse_port_range)]
    ports: Option<(u16, u16)>,
    /// An attribute for placement constraints, KEY=VALUE; repeatable.
    #[arg(long = "attr", value_parser = parse_key_value)]
    attrs: Vec<(String, String)>,
    /// Static reservations out of the resources above, Mesos style: `cpus(eng):2;mem(eng):1024`.
    #[arg(long, value_parser = parse_reservations)]
    reserve: Option<String>,
    /// A registry that may be pulled from over plain HTTP, HOST:PORT; repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Registry credentials for pulls, in Docker's config.json format (`{"auths": {"HOST":
    /// {"auth": base64(user:password)}}}`, or `username`/`password`, or `registrytoken`).
    #[arg(long)]
    registry_auth_file: Option<PathBuf>,
    /// A host path tasks may mount as a volume (and everything under it); repeatable.
    #[arg(long = "allow-host-volume")]
    allowed_host_volumes: Vec<PathBuf>,
    /// The bridge for tasks in bridge mode.
    #[arg(long, default_value = "tepui0")]
    bridge: String,
    /// The bridge's subnet, CIDR.
    #[arg(long, default_value = "10.213.0.0/16", value_parser = parse_cidr)]
    bridge_subnet: (std::net::Ipv4Addr, u8),
    /// Run tasks in user namespaces: their uids and gids 0..65536 become host ids from
    /// --userns-base on, so root in a task is nobody on the host. Needs a kernel with user
    /// namespaces; image files owned by host root then show as nobody inside.
    #[arg(long)]
    userns: bool,
    /// The first host id of the tasks' user namespaces.
    #[arg(long, default_value_t = 100_000, requires = "userns")]
    userns_base: u32,
    /// How long ended tasks' sandboxes are kept, like 1h or 10m.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    task_retention: std::time::Duration,
    /// Seconds an agent waits between heartbeats.
    #[arg(long, default_value_t = 2.0, value_parser = parse_secs)]
    heartbeat_secs: f64,
    /// Agents: serve the gateway's HTTP routes on this IP:PORT [`tepui dev`: BIND:5080]
    #[arg(long, value_name = "ADDR")]
    gateway_http: Option<std::net::SocketAddr>,
    /// Agents: serve the gateway's HTTPS routes on this IP:PORT [`tepui dev`: BIND:5443]
    #[arg(long, value_name = "ADDR")]
    gateway_https: Option<std::net::SocketAddr>,
    /// `tepui dev`: no gateway listeners.
    #[arg(long)]
    no_gateway: bool,
    /// Agents: log every request through the gateway (method, host, path, status, backend,
    /// time), target `tepui_gateway::access`.
    #[arg(long)]
    gateway_access_log: bool,
    /// Agents: the HAPROXY_GROUP values whose apps this gateway serves (repeatable; `*` for
    /// every app with routes).
    #[arg(long = "gateway-group", value_name = "GROUP", default_value = "external")]
    gateway_groups: Vec<String>,
    /// Agents: the certificate HTTPS falls back to when no certificate of the cluster names
    /// the host (PEM chain) [default: a self-signed one made at start]
    #[arg(long, value_name = "FILE", requires = "gateway_key")]
    gateway_cert: Option<PathBuf>,
    /// Agents: the key of --gateway-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "gateway_cert")]
    gateway_key: Option<PathBuf>,
    /// Agents: the gateway's worker threads, each with its own event loop (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    gateway_workers: usize,
    /// Agents: keep each gateway worker on a CPU of its own (`false`: let the scheduler move
    /// them, as on a host where the gateway shares CPUs set aside for something else).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    gateway_pin_workers: bool,
}

/// `tepui server` runs the daemon; `tepui server members` lists the Raft peers. A client-only
/// build has only the subcommand.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
#[cfg_attr(not(feature = "daemon"), command(subcommand_required = true))]
struct ServerCmd {
    #[command(subcommand)]
    sub: Option<ServerSub>,
    #[cfg(feature = "daemon")]
    #[command(flatten)]
    daemon: ServerArgs,
}

#[derive(Subcommand)]
enum ServerSub {
    /// List the servers of the Raft membership.
    Members(ClientArgs),
}

#[cfg(feature = "daemon")]
#[derive(Args, Clone)]
struct ServerArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Start a new cluster with this server as its first voter.
    #[arg(long, conflicts_with = "join")]
    bootstrap: bool,
    /// A server of the cluster to join, HOST:PORT of its cluster port.
    #[arg(long, requires = "token")]
    join: Option<String>,
    /// A server join token.
    #[arg(long, env = "TEPUI_TOKEN")]
    token: Option<String>,
    /// Seconds without heartbeats before an agent is marked lost.
    #[arg(long, default_value_t = 15.0, value_parser = parse_secs)]
    agent_timeout_secs: f64,
}

#[cfg(feature = "daemon")]
#[derive(Args, Clone)]
struct AgentArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// A server to join through, HOST:PORT of its cluster port.
    #[arg(long, requires = "token")]
    join: Option<String>,
    /// An agent join token.
    #[arg(long, env = "TEPUI_TOKEN")]
    token: Option<String>,
}

#[cfg(feature = "daemon")]
#[derive(Args, Clone)]
struct JoinArgs {
    /// A server's cluster address, HOST[:PORT] (port 5052 by default).
    addr: String,
    #[arg(long, env = "TEPUI_TOKEN")]
    token: String,
    /// With a server token: seconds without heartbeats before an agent is marked lost.
    #[arg(long, default_value_t = 15.0, value_parser = parse_secs)]
    agent_timeout_secs: f64,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Copy, Clone, Default, ValueEnum)]
enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// A server's HTTP API address.
    #[arg(long, env = "TEPUI_ADDR", default_value = "127.0.0.1:5050", global = true)]
    addr: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
}

#[derive(Subcommand)]
enum NodeCmd {
    /// List servers and agents.
    Ls(ClientArgs),
    /// One node, by id or name.
    Show {
        node: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Drain an agent: no new tasks, its tasks killed with their grace periods, then drained.
    Drain {
        node: String,
        /// No task gets longer than this to stop (Mesos' max_grace_period), e.g. 30s.
        #[arg(long, value_parser = parse_duration)]
        deadline: Option<std::time::Duration>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Remove an agent with no live tasks from the cluster; its certificate is refused from
    /// then on (servers: `tepui operator raft remove-peer`).
    Rm {
        node: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Stop giving an agent new tasks; its tasks keep running.
    Deactivate {
        node: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Bring a drained or deactivated agent back into service.
    Reactivate {
        node: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a join token.
    Create {
        /// server or agent
        #[arg(long)]
        role: String,
        /// How long the token is valid, like 24h or 30m [default: 24h]
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List tokens (their secrets are not stored).
    Ls(ClientArgs),
    /// Revoke a token by id: no new node joins with it.
    Revoke {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum AclCmd {
    /// Policies: what tokens may do.
    #[command(subcommand)]
    Policy(AclPolicyCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(AclTokenCmd),
    /// Who the token this CLI sends is, and what it may do.
    Whoami(ClientArgs),
    /// Let calls without a token read (on), or not (off, the default).
    Anonymous {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum AclPolicyCmd {
    /// Create or replace a policy.
    Apply {
        name: String,
        /// read, write, logs, exec, host or operator (repeat or comma-separate)
        #[arg(long = "capability", value_delimiter = ',')]
        capabilities: Vec<String>,
        /// A framework principal and the roles it may subscribe into: PRINCIPAL:ROLE[,ROLE...]
        #[arg(long = "framework")]
        frameworks: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    Ls(ClientArgs),
    Rm {
        name: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum AclTokenCmd {
    /// Make a token; its secret is printed once.
    Create {
        #[arg(long, default_value = "")]
        name: String,
        /// Policies it carries (repeat or comma-separate)
        #[arg(long = "policy", value_delimiter = ',')]
        policies: Vec<String>,
        /// How long it is valid, like 24h [default: no end]
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    Ls(ClientArgs),
    /// Revoke a token by its accessor: it stops working at once.
    Revoke {
        accessor: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Args, Clone)]
pub struct TaskRunArgs {
    /// An OCI image; leave it out with --host to run on the agent's own filesystem.
    pub image: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true)]
    pub cmd: Vec<String>,
    /// Run the command on the host's filesystem (still isolated), without an image.
    #[arg(long, conflicts_with = "image")]
    pub host: bool,
    /// A name for the task; its id is NAME.<random> [default: task]
    #[arg(long)]
    pub name: Option<String>,
    /// The agent to run on, by id or name [default: the cluster picks]
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long, default_value_t = 0.1)]
    pub cpus: f64,
    /// Memory limit in MB.
    #[arg(long, default_value_t = 64)]
    pub mem: u64,
    /// Disk in MB.
    #[arg(long, default_value_t = 0)]
    pub disk: u64,
    /// Most processes the task may have.
    #[arg(long)]
    pub pids: Option<u64>,
    /// host or bridge.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// A port, repeatable: bridge mode `[NAME=]CONTAINER` or `[NAME=]HOST:CONTAINER`; host
    /// mode `NAME` (any free port) or `[NAME=]HOST`; add `/udp` for UDP.
    #[arg(short = 'p', long = "port")]
    pub ports: Vec<String>,
    /// KEY=VALUE; repeatable.
    #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// VAR=SECRET: the environment variable VAR holds the secret's value; repeatable.
    #[arg(long = "secret", value_name = "VAR=SECRET", value_parser = parse_key_value)]
    pub secret_env: Vec<(String, String)>,
    /// PATH=SECRET: the read-only file PATH in the container holds the secret's value;
    /// repeatable.
    #[arg(long = "secret-file", value_name = "PATH=SECRET", value_parser = parse_key_value)]
    pub secret_files: Vec<(String, String)>,
    /// The user to run as: uid, uid:gid or a name from the image; `root` (or 0) only when
    /// asked for [default: the image's unless it is root, else nobody (65534)]
    #[arg(long)]
    pub user: Option<String>,
    /// The working directory inside the container [default: the image's]
    #[arg(long)]
    pub workdir: Option<String>,
    /// SOURCE:TARGET[:ro]; repeatable.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Seconds between SIGTERM and SIGKILL when the task is killed.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub kill_grace: f64,
    /// Follow the task's output until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Run a task on an agent.
    Run {
        #[command(flatten)]
        run: Box<TaskRunArgs>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List tasks.
    Ls(ClientArgs),
    /// One task.
    Show {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Follow a task's state: a line each time it changes, until it ends (exit 1 unless it
    /// finished).
    Watch {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Kill a task: SIGTERM, then SIGKILL after its grace period.
    Kill {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// A task's output, through the servers.
    Logs {
        id: String,
        #[command(flatten)]
        how: LogFlags,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List the files of a task's sandbox (its logs and its own files, $MESOS_SANDBOX), as
    /// `ls -l` does.
    Files {
        id: String,
        /// A directory (or file) in the sandbox [default: its root]
        path: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Print a file of a task's sandbox.
    Cat {
        id: String,
        path: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Run a command inside a running task.
    Exec {
        id: String,
        /// Send this terminal's input to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the command a terminal (use with -i for a shell).
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Pull an image onto the agents (all ready ones, or --agent).
    Pull {
        reference: String,
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List the images on the agents.
    Ls {
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Remove an image from the agents.
    Rm {
        reference: String,
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Import a `docker save` archive or an OCI layout tar onto the agents (all ready ones, or
    /// --agent).
    Import {
        file: PathBuf,
        /// The agent to import onto, by id or name [default: every ready agent]
        #[arg(long)]
        agent: Option<String>,
        /// The reference to store the image under (`registry.example/app:1.0`): needed when the
        /// archive names no repository (an OCI layout with only a tag, or none); with several
        /// images in the archive, the one whose tag it names.
        #[arg(long = "as", value_name = "REF")]
        reference: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum JobCmd {
    /// Create a job from a file of Metronome's job JSON (`-` reads stdin).
    Add {
        file: PathBuf,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Every job, with its schedule.
    Ls(ClientArgs),
    /// One job's definition.
    Show(JobIdArgs),
    /// Remove a job: its active runs stop, and its children take over its parents or schedule.
    Rm(JobIdArgs),
    /// Start a run now; with --wait, follow it to its end (exit 1 unless it succeeded).
    Run {
        id: String,
        #[arg(long)]
        wait: bool,
        /// An argument for this run only, after the job's (repeat it for more): after its
        /// `args`, or at the end of its `cmd`, quoted, as one word each
        #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// The job's finished runs, newest first, and its counts.
    History(JobIdArgs),
    /// Stop a run (its task is killed and the run fails), or every active run of the job.
    Stop {
        id: String,
        /// The run [default: every active run]
        run: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// The output of a run's latest task [default: the newest run: an active one, else the
    /// last finished].
    Logs {
        id: String,
        run: Option<String>,
        #[command(flatten)]
        how: LogFlags,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Draw the jobs' dependency graph: roots first, each job's children under it, with its
    /// schedule (or "manual") and whether it is disabled.
    Graph(ClientArgs),
    /// Let a disabled job's schedules and dependencies start runs again.
    Enable(JobIdArgs),
    /// Stop a job's schedules and dependencies from starting runs; `job run` still does.
    Disable(JobIdArgs),
}

/// How a task's output is read (`task logs`, `job logs`).
#[derive(Args, Clone, Copy)]
pub struct LogFlags {
    /// Keep printing as the task writes (for a job's run, waits for its first task).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The task's stderr instead of its stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

#[derive(Args)]
struct JobIdArgs {
    id: String,
    #[command(flatten)]
    c: ClientArgs,
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Write a secret (a new version if it exists). The value comes from --from-file, else
    /// from stdin; never from the command line, where other users and the shell's history
    /// would see it.
    Put {
        /// Letters, digits, '.', '_', '-', parts separated by '/': `db/password`.
        path: String,
        /// Read the value from this file.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// The secrets' paths and versions (never their values).
    Ls(ClientArgs),
    Rm {
        path: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum VarCmd {
    Put {
        key: String,
        value: String,
        /// Only write if the current modify index is this (0: the key is absent).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        c: ClientArgs,
    },
    Get {
        key: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    Ls(ClientArgs),
    Rm {
        key: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum FrameworkCmd {
    /// List frameworks (`tepui` holds the tasks of `tepui task run`).
    Ls(ClientArgs),
    /// Remove a framework: its tasks are killed and it cannot subscribe again.
    Teardown {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum RoleCmd {
    /// List roles.
    Ls(ClientArgs),
    /// Set a role's weight: its fair share grows with it (1 is the default).
    Weight {
        role: String,
        weight: f64,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum QuotaCmd {
    /// Set a role's quota; without --guarantee and --limit it is removed.
    Set {
        role: String,
        /// What the role is guaranteed, NAME=AMOUNT[,NAME=AMOUNT...] (mem and disk in MB);
        /// repeatable.
        #[arg(long = "guarantee", value_parser = parse_amounts)]
        guarantees: Vec<Amounts>,
        /// The most the role may hold, NAME=AMOUNT[,NAME=AMOUNT...]; repeatable.
        #[arg(long = "limit", value_parser = parse_amounts)]
        limits: Vec<Amounts>,
        /// Set it even if the role already holds more than the new limits.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    #[command(subcommand)]
    Raft(RaftCmd),
    /// The cluster CA: status, rotation.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Whether the cluster can take a new binary (this one without --binary or --version):
    /// each server's and agent's release and protocols and whether the binary can replace it;
    /// exits 1 if not.
    UpgradeCheck(UpgradeCheckArgs),
    /// After losing the quorum for good: make this stopped server the only voter, with
    /// everything its log holds, and say what may have been lost. Then start it and join new
    /// servers to it.
    #[cfg(feature = "daemon")]
    Recover(recover::RecoverArgs),
}

#[derive(Args)]
struct UpgradeCheckArgs {
    /// The new binary: it is run as `PATH version -o json`.
    #[arg(long, conflicts_with = "release")]
    binary: Option<PathBuf>,
    /// A release this tepui knows (0.1.0, or its own) instead of a binary.
    #[arg(long = "version", id = "release")]
    release: Option<String>,
    #[command(flatten)]
    c: ClientArgs,
}

#[derive(Subcommand)]
enum CaCmd {
    /// The signing CA, a rotation under way, and which CA signed each node's certificate.
    Status(ClientArgs),
    /// Replace the cluster CA with no downtime: a new CA signs from now on, both are trusted
    /// until every node renewed onto the new one, then the old one is dropped.
    Rotate(ClientArgs),
    /// Drop the old CA now, locking out nodes that have not renewed yet.
    Finish(ClientArgs),
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Save the whole replicated state to FILE.
    Save {
        file: PathBuf,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Replace the replicated state with FILE (this cluster's CA and nodes stay).
    Restore {
        file: PathBuf,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
enum RaftCmd {
    /// List the Raft peers.
    ListPeers(ClientArgs),
    /// Remove a server from the Raft membership, by id or name.
    RemovePeer {
        peer: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

/// A number of seconds a `Duration` can hold: positive, finite, at most a day.
/// A join token's TTL, checked here so a bad one fails before anything is sent.
fn parse_ttl(s: &str) -> Result<String, String> {
    tepui_api::parse_token_ttl(s).map(|_| s.trim().to_string())
}

/// A duration flag (`10m`, `1h`), at most ten years, so that deadlines computed from it
/// cannot overflow.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration like 30s or 10m: {e}"))?;
    if d > tepui_api::MAX_TOKEN_TTL {
        return Err(format!("{s:?} is longer than ten years"));
    }
    Ok(d)
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 86400")),
    }
}

#[cfg(feature = "daemon")]
fn parse_cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a subnet like 10.213.0.0/16"))?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("prefix /{prefix} must be 8 to 30"))?;
    Ok((ip, prefix))
}

/// `IP` (port 53) or `IP:PORT`.
#[cfg(feature = "daemon")]
fn parse_dns_upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse::<std::net::SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not an IP or IP:PORT"))
}

#[cfg(feature = "daemon")]
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like 31000-32000"))?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("{lo:?} is not a port"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("{hi:?} is not a port"))?;
    if lo > hi {
        return Err(format!("the range {s} is empty: {lo} > {hi}"));
    }
    Ok((lo, hi))
}

/// Resource amounts by name, as `cpus=2,mem=1024` gives them.
#[derive(Clone, Debug, PartialEq)]
struct Amounts(Vec<(String, f64)>);

fn parse_amounts(s: &str) -> Result<Amounts, String> {
    let amounts = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, amount) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=AMOUNT, like cpus=2 or mem=1024"))?;
            let amount: f64 = amount
                .trim()
                .parse()
                .ok()
                .filter(|a: &f64| a.is_finite() && *a >= 0.0)
                .ok_or_else(|| format!("{amount:?} in {part:?} is not a non-negative number"))?;
            if name.trim().is_empty() {
                return Err(format!("{part:?} has no resource name"));
            }
            Ok((name.trim().to_string(), amount))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if amounts.is_empty() {
        return Err(format!("{s:?} names no resource; give NAME=AMOUNT, like cpus=2"));
    }
    Ok(Amounts(amounts))
}

/// Static reservations: every entry reserved to a role other than `*`.
#[cfg(feature = "daemon")]
fn parse_reservations(s: &str) -> Result<String, String> {
    let r: tepui_allocator::Resources = s.parse().map_err(|e: tepui_allocator::Error| e.to_string())?;
    if let Some(e) = r.iter().find(|e| e.reservation.is_none()) {
        return Err(format!(
            "{e} is not reserved to a role; write it as {}(ROLE):...",
            e.name
        ));
    }
    Ok(r.to_string())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The CLI as clap parses it: the derive's definition, with an environment variable for every
/// daemon flag and client setting.
fn cli_definition() -> config::Definition {
    let client = ClientArgs::augment_args(clap::Command::new("client")).args(Cli::command().get_arguments().cloned());
    config::Definition::new(config::with_env(Cli::command(), &client), &client)
}

fn main() {
    let def = cli_definition();
    let outcome = run(config::parse(&def, std::env::args_os().collect()), &def);
    if let Err(e) = outcome {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        let mut line = String::new();
        for part in chain {
            if !line.contains(&part) {
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(&part);
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// A secret's value: the file's, else stdin's (one trailing newline dropped, as `echo` adds it).
fn read_secret_value(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::io::{IsTerminal, Read};
    let mut value = match file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("value (end with Ctrl-D):");
            }
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .context("cannot read the value from stdin (it must be UTF-8 text)")?;
            v
        }
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn run_client(verb: client::Verb, c: ClientArgs) -> anyhow::Result<()> {
    runtime()?.block_on(client::run(verb, &c.addr, c.output))
}

fn run(cli: Cli, def: &config::Definition) -> anyhow::Result<()> {
    use client::Verb;
    if let Some(token) = cli.api_token.filter(|t| !t.trim().is_empty()) {
        tepui_api::set_api_token(token.trim().to_string());
    }
    let trust = match (cli.ca_pin.filter(|p| !p.trim().is_empty()), cli.ca_file) {
        (Some(pin), _) => Some(tepui_api::ApiTrust::Pin(pin.trim().to_string())),
        (None, Some(file)) => Some(tepui_api::ApiTrust::CaFile(file)),
        (None, None) => None,
    };
    if let Some(trust) = trust {
        tepui_api::set_api_trust(trust).map_err(anyhow::Error::msg)?;
    }
    match cli.command {
        #[cfg(feature = "daemon")]
        Command::Dev(d) => daemon::run(daemon::Mode::Dev, d),
        Command::Server(ServerCmd {
            sub: Some(ServerSub::Members(c)),
            ..
        }) => run_client(Verb::Members, c),
        #[cfg(not(feature = "daemon"))]
        Command::Server(ServerCmd { sub: None }) => {
            anyhow::bail!("this tepui is a client only (built without the daemon feature)")
        }
        #[cfg(feature = "daemon")]
        Command::Server(ServerCmd { daemon: s, .. }) => {
            let mode = daemon::Mode::Server {
                bootstrap: s.bootstrap,
                join: s
                    .join
                    .map(|addr| (daemon::default_cluster_port(&addr), s.token.unwrap_or_default())),
                agent_timeout_secs: s.agent_timeout_secs,
            };
            daemon::run(mode, s.daemon)
        }
        #[cfg(feature = "daemon")]
        Command::Agent(a) => {
            let join = a
                .join
                .map(|addr| (daemon::default_cluster_port(&addr), a.token.unwrap_or_default()));
            daemon::run(daemon::Mode::Agent { join }, a.daemon)
        }
        #[cfg(feature = "daemon")]
        Command::Join(j) => daemon::run(
            daemon::Mode::Join {
                addr: daemon::default_cluster_port(&j.addr),
                token: j.token,
                agent_timeout_secs: j.agent_timeout_secs,
            },
            j.daemon,
        ),
        Command::Status(c) => run_client(Verb::Status, c),
        Command::Node(NodeCmd::Ls(c)) => run_client(Verb::Nodes, c),
        Command::Node(NodeCmd::Show { node, c }) => run_client(Verb::Node(node), c),
        Command::Node(NodeCmd::Drain { node, deadline, c }) => {
            let action = match deadline {
                Some(d) => format!("drain?deadline_secs={}", d.as_secs_f64()),
                None => "drain".to_string(),
            };
            run_client(Verb::Maintenance(node, action), c)
        }
        Command::Node(NodeCmd::Rm { node, c }) => run_client(Verb::RemoveNode(node), c),
        Command::Node(NodeCmd::Deactivate { node, c }) => run_client(Verb::Maintenance(node, "deactivate".into()), c),
        Command::Node(NodeCmd::Reactivate { node, c }) => run_client(Verb::Maintenance(node, "reactivate".into()), c),
        Command::Token(TokenCmd::Create {
            role,
            ttl,
            description,
            c,
        }) => run_client(
            Verb::TokenCreate(tepui_api::TokenCreateRequest { role, ttl, description }),
            c,
        ),
        Command::Token(TokenCmd::Ls(c)) => run_client(Verb::Tokens, c),
        Command::Acl(AclCmd::Policy(AclPolicyCmd::Apply {
            name,
            capabilities,
            frameworks,
            description,
            c,
        })) => {
            let frameworks = frameworks
                .iter()
                .map(|f| client::parse_framework_grant(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = tepui_api::AclPolicyBody {
                description,
                capabilities,
                frameworks,
            };
            run_client(Verb::AclPolicyApply(name, body), c)
        }
        Command::Acl(AclCmd::Policy(AclPolicyCmd::Ls(c))) => run_client(Verb::AclPolicies, c),
        Command::Acl(AclCmd::Policy(AclPolicyCmd::Rm { name, c })) => run_client(Verb::AclPolicyRm(name), c),
        Command::Acl(AclCmd::Token(AclTokenCmd::Create { name, policies, ttl, c })) => run_client(
            Verb::AclTokenCreate(tepui_api::AclTokenCreateRequest { name, policies, ttl }),
            c,
        ),
        Command::Acl(AclCmd::Token(AclTokenCmd::Ls(c))) => run_client(Verb::AclTokens, c),
        Command::Acl(AclCmd::Token(AclTokenCmd::Revoke { accessor, c })) => {
            run_client(Verb::AclTokenRevoke(accessor), c)
        }
        Command::Acl(AclCmd::Whoami(c)) => run_client(Verb::AclWhoami, c),
        Command::Acl(AclCmd::Anonymous { state, c }) => run_client(Verb::AclAnonymous(state == "on"), c),
        Command::Token(TokenCmd::Revoke { id, c }) => run_client(Verb::TokenRevoke(id), c),
        #[cfg(feature = "daemon")]
        Command::Shim { args } => std::process::exit(tepui_runtime::shim_main(args)),
        Command::Task(TaskCmd::Run { run, c }) => run_client(Verb::TaskRun(run), c),
        Command::Task(TaskCmd::Ls(c)) => run_client(Verb::Tasks, c),
        Command::Task(TaskCmd::Show { id, c }) => run_client(Verb::Task(id), c),
        Command::Task(TaskCmd::Watch { id, c }) => run_client(Verb::TaskWatch(id), c),
        Command::Task(TaskCmd::Kill { id, c }) => run_client(Verb::TaskKill(id), c),
        Command::Task(TaskCmd::Logs { id, how, c }) => run_client(Verb::TaskLogs { id, how }, c),
        Command::Task(TaskCmd::Files { id, path, c }) => run_client(Verb::TaskFiles(id, path.unwrap_or_default()), c),
        Command::Task(TaskCmd::Cat { id, path, c }) => run_client(Verb::TaskCat(id, path), c),
        Command::Task(TaskCmd::Exec {
            id,
            cmd,
            interactive,
            tty,
            c,
        }) if interactive || tty => runtime()?.block_on(client::exec_interactive(&c.addr, &id, cmd, interactive, tty)),
        Command::Task(TaskCmd::Exec { id, cmd, c, .. }) => run_client(Verb::TaskExec(id, cmd), c),
        Command::Image(ImageCmd::Pull { reference, agent, c }) => run_client(Verb::ImagePull(reference, agent), c),
        Command::Image(ImageCmd::Ls { agent, c }) => run_client(Verb::Images(agent), c),
        Command::Image(ImageCmd::Rm { reference, agent, c }) => run_client(Verb::ImageRm(reference, agent), c),
        Command::Image(ImageCmd::Import {
            file,
            agent,
            reference,
            c,
        }) => run_client(Verb::ImageImport { file, agent, reference }, c),
        Command::Var(VarCmd::Put { key, value, cas, c }) => run_client(Verb::VarPut(key, value, cas), c),
        Command::Var(VarCmd::Get { key, c }) => run_client(Verb::VarGet(key), c),
        Command::Var(VarCmd::Ls(c)) => run_client(Verb::Vars, c),
        Command::Secret(SecretCmd::Put { path, from_file, c }) => {
            let value = read_secret_value(from_file.as_deref())?;
            run_client(Verb::SecretPut(path, value), c)
        }
        Command::Secret(SecretCmd::Ls(c)) => run_client(Verb::Secrets, c),
        Command::Job(JobCmd::Add { file, c }) => {
            let text = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let job: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            run_client(Verb::JobAdd(job), c)
        }
        Command::Job(JobCmd::Ls(c)) => run_client(Verb::Jobs, c),
        Command::Job(JobCmd::Show(JobIdArgs { id, c })) => run_client(Verb::JobShow(id), c),
        Command::Job(JobCmd::Rm(JobIdArgs { id, c })) => run_client(Verb::JobRm(id), c),
        Command::Job(JobCmd::Run { id, wait, args, c }) => run_client(Verb::JobRun(id, wait, args), c),
        Command::Job(JobCmd::History(JobIdArgs { id, c })) => run_client(Verb::JobHistory(id), c),
        Command::Job(JobCmd::Stop { id, run, c }) => run_client(Verb::JobStop(id, run), c),
        Command::Job(JobCmd::Logs { id, run, how, c }) => run_client(Verb::JobLogs { id, run, how }, c),
        Command::Job(JobCmd::Graph(c)) => run_client(Verb::JobGraph, c),
        Command::Job(JobCmd::Enable(JobIdArgs { id, c })) => run_client(Verb::JobSetDisabled(id, false), c),
        Command::Job(JobCmd::Disable(JobIdArgs { id, c })) => run_client(Verb::JobSetDisabled(id, true), c),
        Command::Secret(SecretCmd::Rm { path, c }) => run_client(Verb::SecretRm(path), c),
        Command::Var(VarCmd::Rm { key, c }) => run_client(Verb::VarRm(key), c),
        Command::Framework(FrameworkCmd::Ls(c)) => run_client(Verb::Frameworks, c),
        Command::Framework(FrameworkCmd::Teardown { id, c }) => run_client(Verb::FrameworkTeardown(id), c),
        Command::Role(RoleCmd::Ls(c)) => run_client(Verb::Roles, c),
        Command::Role(RoleCmd::Weight { role, weight, c }) => run_client(Verb::RoleWeight(role, weight), c),
        Command::Quota(QuotaCmd::Set {
            role,
            guarantees,
            limits,
            force,
            c,
        }) => run_client(
            Verb::QuotaSet(
                role,
                tepui_api::QuotaRequest {
                    guarantees: guarantees.into_iter().flat_map(|a| a.0).collect(),
                    limits: limits.into_iter().flat_map(|a| a.0).collect(),
                    force,
                },
            ),
            c,
        ),
        Command::Operator(OperatorCmd::Snapshot(SnapshotCmd::Save { file, c })) => {
            run_client(Verb::SnapshotSave(file), c)
        }
        Command::Operator(OperatorCmd::Snapshot(SnapshotCmd::Restore { file, c })) => {
            run_client(Verb::SnapshotRestore(file), c)
        }
        Command::Operator(OperatorCmd::Raft(RaftCmd::ListPeers(c))) => run_client(Verb::Members, c),
        Command::Operator(OperatorCmd::Ca(CaCmd::Status(c))) => run_client(Verb::CaStatus, c),
        Command::Operator(OperatorCmd::UpgradeCheck(a)) => {
            let speaks = upgrade::binary_speaks(a.binary.as_deref(), a.release.as_deref())?;
            run_client(Verb::UpgradeCheck(speaks), a.c)
        }
        Command::Operator(OperatorCmd::Ca(CaCmd::Rotate(c))) => run_client(Verb::CaRotate, c),
        Command::Operator(OperatorCmd::Ca(CaCmd::Finish(c))) => run_client(Verb::CaFinish, c),
        Command::Operator(OperatorCmd::Raft(RaftCmd::RemovePeer { peer, c })) => run_client(Verb::RemovePeer(peer), c),
        #[cfg(feature = "daemon")]
        Command::Operator(OperatorCmd::Recover(args)) => recover::run(args),
        Command::App(cmd) => runtime()?.block_on(apps::run_app(cmd)),
        Command::Deployment(cmd) => runtime()?.block_on(apps::run_deployment(cmd)),
        Command::Pod(cmd) => runtime()?.block_on(pods::run_pod(cmd)),
        Command::Dns(DnsCmd::Lookup { name, rtype, c }) => run_client(Verb::DnsLookup(name, rtype), c),
        Command::Dns(DnsCmd::Records(c)) => run_client(Verb::DnsRecords, c),
        Command::Gateway(cmd) => runtime()?.block_on(gateway::run_gateway(cmd)),
        Command::Cert(cmd) => runtime()?.block_on(gateway::run_cert(cmd)),
        Command::Package(cmd) => runtime()?.block_on(packages::run(cmd)),
        Command::Ui(args) => runtime()?.block_on(ui::run(args)),
        Command::Version(args) => tools::print_version(&args),
        Command::Completions(args) => {
            tools::print_completions(&args, def.cli.clone());
            Ok(())
        }
        Command::Man(args) => tools::write_man_pages(&args, def.cli.clone()),
        Command::Config(ConfigCmd::Check) => config::check(def, cli.config.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_name_equals_number() {
        assert_eq!(
            parse_amounts("cpus=2, mem=1024").unwrap(),
            Amounts(vec![("cpus".into(), 2.0), ("mem".into(), 1024.0)])
        );
        assert_eq!(parse_amounts("cpus=0.5").unwrap(), Amounts(vec![("cpus".into(), 0.5)]));
        assert!(parse_amounts("cpus").unwrap_err().contains("NAME=AMOUNT"));
        assert!(parse_amounts("cpus=-1").unwrap_err().contains("non-negative"));
        assert!(parse_amounts("cpus=lots").is_err());
        assert!(parse_amounts("=2").is_err());
        assert!(parse_amounts(",").is_err());
    }

    #[test]
    fn quota_flags_repeat_and_merge() {
        let cli = Cli::try_parse_from([
            "tepui",
            "quota",
            "set",
            "eng",
            "--guarantee",
            "cpus=2,mem=1024",
            "--limit",
            "cpus=4",
            "--limit",
            "mem=2048",
            "--force",
        ])
        .unwrap();
        match cli.command {
            Command::Quota(QuotaCmd::Set {
                role,
                guarantees,
                limits,
                force,
                ..
            }) => {
                assert_eq!(role, "eng");
                assert_eq!(guarantees.len(), 1);
                assert_eq!(limits.into_iter().flat_map(|a| a.0).count(), 2);
                assert!(force);
            }
            _ => panic!("not quota set"),
        }
    }
}
