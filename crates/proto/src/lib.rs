//! Wire types of tepui's cluster port (gRPC over mTLS): Raft RPCs between servers, the join
//! handshake, request forwarding to the leader, and the agent stream.
//!
//! Generated from `proto/cluster.proto`; this crate holds no logic.

#![allow(clippy::all)]

tonic::include_proto!("tepui.cluster.v1");

/// Messages on the agent stream. They are JSON inside [`Envelope`]s: the stream evolves with
/// every capability that reaches agents, and serde keeps that cheap.
pub mod agent {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Resources {
        pub cpus_milli: u64,
        pub mem_mb: u64,
        pub disk_mb: u64,
        pub ports: Vec<(u16, u16)>,
        /// Static reservations, Mesos' `--resources` form: `cpus(eng):2;mem(eng):1024`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub reserved: String,
    }

    pub use tepui_state::{HealthCheckDef, PortDef, TaskDef, VolumeDef};

    /// What a task is to run, as the leader sends it to its agent: the task definition of the
    /// replicated state, as it is (its fields inline on the wire).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct TaskLaunch {
        pub task_id: String,
        pub name: String,
        #[serde(flatten)]
        pub def: TaskDef,
        /// The values of the task's secrets, opened by the leader for this launch. The agent
        /// never writes them down.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub secret_values: Vec<SecretValue>,
        /// Why the leader could not give the task its secrets: the agent fails the task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub secret_error: Option<String>,
        /// The task is run by its framework's executor, not in a container of its own: which
        /// executor, and what it is told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub executor: Option<Box<ExecutorLaunch>>,
    }

    /// A framework's executor, as a launch of one of its tasks carries it: the agent starts
    /// it (once per framework and executor id) and hands it the task.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ExecutorLaunch {
        pub framework_id: String,
        pub executor_id: String,
        pub name: String,
        /// The executor's own container: its command or image, its resources, and its
        /// shutdown grace period as `kill_grace_ms`.
        pub def: TaskDef,
        /// Mesos JSON, passed on to the executor as it is: its `ExecutorInfo`, its
        /// framework's `FrameworkInfo`, and the task's `TaskInfo`.
        pub executor_info: serde_json::Value,
        pub framework_info: serde_json::Value,
        pub task_info: serde_json::Value,
        /// Mesos' default executor (task groups): the agent runs the task in a container of
        /// its own, in the executor's network namespace and sandbox (see tepui-agent).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub default_executor: bool,
    }

    impl TaskLaunch {
        /// A launch of `def` without secrets.
        pub fn new(task_id: String, name: String, def: TaskDef) -> TaskLaunch {
            TaskLaunch {
                task_id,
                name,
                def,
                secret_values: Vec::new(),
                secret_error: None,
                executor: None,
            }
        }

        /// The same launch without its secrets' values, to keep on disk.
        pub fn without_secret_values(&self) -> TaskLaunch {
            TaskLaunch {
                secret_values: Vec::new(),
                ..self.clone()
            }
        }
    }

    /// One secret of a task with its value; its `Debug` leaves the value out.
    #[derive(Clone, PartialEq, Serialize, Deserialize)]
    pub struct SecretValue {
        pub source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub env: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub file: Option<String>,
        pub value: String,
    }

    impl std::fmt::Debug for SecretValue {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SecretValue")
                .field("source", &self.source)
                .field("env", &self.env)
                .field("file", &self.file)
                .finish_non_exhaustive()
        }
    }

    impl std::ops::Deref for TaskLaunch {
        type Target = TaskDef;

        fn deref(&self) -> &TaskDef {
            &self.def
        }
    }

    /// A change of a task's state. The agent keeps each one on disk until the leader
    /// acknowledges it, so none is lost to a restart or a partition.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct StatusUpdate {
        pub task_id: String,
        /// Unique per update; the acknowledgement names it.
        pub uuid: String,
        /// Mesos task states: `TASK_STARTING`, `TASK_RUNNING`, `TASK_FINISHED`, `TASK_FAILED`,
        /// `TASK_KILLED`, `TASK_ERROR`, `TASK_LOST`...
        pub state: String,
        /// Mesos-style reason, e.g. `REASON_COMMAND_EXECUTOR_FAILED`, `REASON_CONTAINER_LIMITATION_MEMORY`.
        pub reason: Option<String>,
        pub message: String,
        pub exit_code: Option<i32>,
        pub signal: Option<i32>,
        pub timestamp_ms: u64,
        /// Set by health checks: the task passed (or failed) them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub healthy: Option<bool>,
        /// Its place among the task's updates on this agent (0, 1, ...): an update resent
        /// after a newer one was committed is recognised as older and changes nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub seq: Option<u64>,
        /// The container's own address (bridge networking), said in the update that the task
        /// runs; later updates leave it out (the leader keeps it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub container_ip: Option<std::net::IpAddr>,
    }

    /// Where the cluster's DNS answers (the server that registered the agent), so the
    /// agent's tasks can be given a resolver that knows the cluster's names.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ClusterDns {
        /// The cluster domain (`mesos`).
        pub domain: String,
        /// A DNS server of the cluster, UDP and TCP.
        pub addr: std::net::SocketAddr,
    }

    /// A task the agent has, as it reports it when it registers.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct TaskReport {
        pub task_id: String,
        pub state: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum AgentToServer {
        /// The first message on every stream.
        Register {
            resources: Resources,
            attributes: BTreeMap<String, String>,
            http_addr: String,
            version: String,
            /// Every task the agent still has (running, or finished with updates unacknowledged).
            #[serde(default)]
            tasks: Vec<TaskReport>,
        },
        Heartbeat {
            seq: u64,
        },
        Status {
            update: StatusUpdate,
        },
        /// Part of the answer to a [`ServerToAgent::Request`].
        Reply {
            req_id: u64,
            reply: Reply,
        },
        /// About a framework's executor on the agent.
        Executor {
            event: ExecutorEvent,
        },
    }

    /// What an agent tells the leader about a framework's executor.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum ExecutorEvent {
        /// It ended (its tasks' ends come as their status updates). Sent again on every
        /// registration until [`ServerToAgent::ExecutorExitAck`].
        Exited {
            framework_id: String,
            executor_id: String,
            /// The exit code, or 128 plus the signal, when known.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            exit_status: Option<i32>,
            message: String,
        },
        /// A framework message from the executor to its scheduler (no delivery guarantee).
        Message {
            framework_id: String,
            executor_id: String,
            /// The bytes, base64.
            b64: String,
        },
    }

    /// Operations the leader asks an agent for on behalf of an API caller.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum Request {
        Logs {
            task_id: String,
            stderr: bool,
            tail: Option<usize>,
            follow: bool,
        },
        Exec {
            task_id: String,
            cmd: Vec<String>,
        },
        /// An interactive exec: stdin arrives as [`ServerToAgent::Upload`] chunks (`last` is end
        /// of input), stdout as `Data`, stderr as `Stderr`, the exit code in `Done`.
        ExecStream {
            task_id: String,
            cmd: Vec<String>,
            tty: bool,
        },
        PullImage {
            reference: String,
        },
        ListImages,
        RemoveImage {
            reference: String,
        },
        /// The archive follows as [`ServerToAgent::Upload`] chunks, ending with `last`.
        /// `reference` names the image when the archive does not (or picks one of several).
        ImportImage {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reference: Option<String>,
        },
        /// What the agent's gateway serves now (its addresses and live routes).
        GatewayRoutes,
        /// The entries of the directory at `path` in the task's sandbox (or the one file
        /// there), as Mesos' `/files/browse` lists them: `Done` carries them.
        BrowseFiles {
            task_id: String,
            path: String,
        },
        /// At most `length` bytes of the file at `path` in the task's sandbox from `offset`,
        /// as `Data` parts; `Done` carries `{"size": N}`, the file's size.
        ReadFile {
            task_id: String,
            path: String,
            offset: u64,
            length: u64,
        },
    }

    /// Answers stream back as zero or more `Data`/`Progress` parts and one `Done` or `Error`.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum Reply {
        /// Bytes, base64.
        Data {
            b64: String,
        },
        /// Standard error of an interactive exec, base64.
        Stderr {
            b64: String,
        },
        /// A JSON progress event (image pulls).
        Progress {
            event: serde_json::Value,
        },
        Done {
            result: serde_json::Value,
        },
        Error {
            message: String,
            code: String,
        },
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum ServerToAgent {
        Registered {
            node_id: u64,
            servers: Vec<String>,
            /// The cluster's DNS, when the servers run it.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            dns: Option<ClusterDns>,
        },
        HeartbeatAck {
            seq: u64,
        },
        Launch {
            task: TaskLaunch,
        },
        Kill {
            task_id: String,
            /// Overrides the task's grace period (a framework's kill policy, a drain's deadline).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            grace_ms: Option<u64>,
        },
        /// The update is committed; the agent may forget it.
        Ack {
            task_id: String,
            uuid: String,
        },
        /// The agent has a task the cluster does not know or already ended: kill and forget it.
        Forget {
            task_id: String,
        },
        Request {
            req_id: u64,
            request: Request,
        },
        /// A chunk of an upload for request `req_id`, bytes base64.
        Upload {
            req_id: u64,
            b64: String,
            last: bool,
        },
        /// The caller went away: stop answering `req_id`.
        Cancel {
            req_id: u64,
        },
        /// The framework asks its executor to shut down (its tasks with it): SHUTDOWN, then a
        /// kill after the executor's grace period.
        ShutdownExecutor {
            framework_id: String,
            executor_id: String,
        },
        /// A framework message from the scheduler to its executor (no delivery guarantee).
        FrameworkMessage {
            framework_id: String,
            executor_id: String,
            /// The bytes, base64.
            b64: String,
        },
        /// The leader recorded the executor's end: the agent stops reporting it.
        ExecutorExitAck {
            framework_id: String,
            executor_id: String,
        },
        /// The CAs to trust and the one that signs now; sent after registering and whenever they
        /// change (a CA rotation). An agent whose certificate another CA signed renews at once.
        Trust {
            ca_bundle_pem: String,
            signing_ca_pem: String,
        },
        /// What the gateways serve; sent after registering and whenever it changes. The agent
        /// keeps serving the last one it has while no server is reachable.
        Gateway {
            table: crate::gateway::GatewayTable,
        },
    }
}

/// What the gateways serve: routes, certificates and virtual IPs, as the leader sends them on
/// the agent stream (tepui-gateway builds and serves them). Every list is sorted, so two tables
/// built from the same state compare equal and an unchanged table is not sent again.
pub mod gateway {
    use std::net::{IpAddr, SocketAddr};

    use serde::{Deserialize, Serialize};

    /// Everything the gateways of the cluster serve.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct GatewayTable {
        /// HTTP routes, in the order they are matched: hosts first, longest path first.
        #[serde(default)]
        pub routes: Vec<HttpRoute>,
        /// Certificates for HTTPS, chosen by SNI.
        #[serde(default)]
        pub certificates: Vec<Certificate>,
        /// Virtual IPs (L4).
        #[serde(default)]
        pub vips: Vec<Vip>,
        /// Labels and certificates that could not be used, and why (shown by `tepui gateway routes`).
        #[serde(default)]
        pub problems: Vec<Problem>,
    }

    /// How a route spreads requests over its backends (`HAPROXY_{n}_BALANCE`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Balance {
        /// HAProxy's `roundrobin` (the default).
        #[default]
        RoundRobin,
        /// HAProxy's `leastconn`: the backend with the fewest requests outstanding.
        LeastRequests,
        /// HAProxy's `source`: a hash of the client's address, so a client keeps its backend.
        Source,
    }

    /// One HTTP route: requests whose host and path match go to the backends of one port of one app.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct HttpRoute {
        /// The app's id (`/shop/web`).
        pub app: String,
        /// The index of the app's port the route serves (`n` in `HAPROXY_{n}_...`).
        pub port_index: usize,
        /// `HAPROXY_GROUP` (per port: `HAPROXY_{n}_GROUP`); `external` when the app sets none.
        pub group: String,
        /// Host names, lowercase, without a port (`HAPROXY_{n}_VHOST`, comma-separated there). A
        /// name may start with `*.` (any one or more labels). Empty: any host.
        #[serde(default)]
        pub hosts: Vec<String>,
        /// A path prefix (`HAPROXY_{n}_PATH`), starting with `/`. None: every path.
        #[serde(default)]
        pub path: Option<String>,
        /// Plain HTTP requests get a redirect to HTTPS (`HAPROXY_{n}_REDIRECT_TO_HTTPS`).
        #[serde(default)]
        pub redirect_to_https: bool,
        #[serde(default)]
        pub balance: Balance,
        /// Sticky sessions by cookie (`HAPROXY_{n}_STICKY`).
        #[serde(default)]
        pub sticky: bool,
        /// The app's running (and, with health checks, healthy) instances' addresses for this port,
        /// sorted.
        #[serde(default)]
        pub backends: Vec<Backend>,
    }

    /// An instance behind a route.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Backend {
        pub task_id: String,
        /// Where it answers from any agent: its agent's address and the host port.
        pub addr: SocketAddr,
    }

    /// A certificate and its key, for the host names it serves.
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Certificate {
        /// Where it comes from: `secret:gateway/certs/shop.example.com`, or a file's path.
        pub source: String,
        /// The names it is chosen for by SNI, lowercase (`*.example.com` matches one label).
        pub hosts: Vec<String>,
        /// The certificate chain, PEM, leaf first.
        pub cert_pem: String,
        /// The private key, PEM.
        pub key_pem: String,
    }

    impl std::fmt::Debug for Certificate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Certificate")
                .field("source", &self.source)
                .field("hosts", &self.hosts)
                .finish_non_exhaustive()
        }
    }

    /// A virtual IP and port (`VIP_{n}` port label): connections to it reach the app's instances.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Vip {
        /// `/name` for a named VIP (`/name:5555`; found as `name.marathon.l4lb.thisdcos.directory`),
        /// none for one given as `ip:port`.
        pub name: Option<String>,
        pub ip: IpAddr,
        pub port: u16,
        /// `tcp` or `udp`.
        pub protocol: String,
        /// The apps whose ports carry it (several apps may share a named VIP, as on DC/OS).
        pub apps: Vec<String>,
        /// Sorted.
        pub backends: Vec<VipBackend>,
    }

    /// An instance behind a VIP.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct VipBackend {
        pub task_id: String,
        /// The agent's address and the task's host port.
        pub addr: SocketAddr,
        /// The agent the task runs on.
        #[serde(default)]
        pub agent_id: u64,
        /// The container's own address and port (bridge networking): what its own agent sends
        /// to instead of `addr`, which is itself translated there (see `vip::local_backends`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub container: Option<SocketAddr>,
    }

    /// Something in the apps' labels or the certificates that the gateway cannot use.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    pub struct Problem {
        /// The app's id, or the certificate's source.
        pub source: String,
        /// The label or field (`labels.HAPROXY_0_BALANCE`).
        pub field: String,
        pub message: String,
    }

    // The `/v1/gateway` API's answers, here rather than in tepui-gateway so that the CLI reads
    // them without the gateway's data plane (which is Linux-only).

    /// The table as the leader builds it, without the certificates' keys.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct TableView {
        pub routes: Vec<HttpRoute>,
        pub certificates: Vec<CertView>,
        pub vips: Vec<Vip>,
        pub problems: Vec<Problem>,
    }

    /// A certificate as the API shows it: never its key.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CertView {
        pub host: String,
        pub source: String,
        /// The names it serves (the host and the certificate's DNS names).
        pub hosts: Vec<String>,
        /// The leaf's subject names and validity, when it parses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub not_after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub problem: Option<String>,
    }

    /// What `PUT /v1/gateway/certs/{host}` takes: PEM texts.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct CertPut {
        /// The certificate chain, leaf first.
        pub cert: String,
        pub key: String,
    }

    /// One agent's live routes, as `GET /v1/gateway/routes` answers.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct AgentRoutes {
        pub agent_id: u64,
        pub agent: String,
        /// What the agent answered (its gateway's addresses and routes), or why it did not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gateway: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
    }
}
