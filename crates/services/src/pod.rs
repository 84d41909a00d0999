//! Marathon's pod definition (`/v2/pods`): containers run together as one instance, sharing
//! the instance's network namespace and its volumes, each with its own resources, endpoints
//! and health check.
//!
//! [`PodDefinition`] is the JSON a client sends (every field optional, numbers read wide so
//! that bad values reach validation); [`validate_pod`] answers with Marathon's 422 body and
//! field paths (`/containers(0)/resources/cpus`) or gives a [`PodSpec`] with Marathon's
//! defaults. A `PodSpec` serializes to the JSON Marathon returns for a pod (plus
//! `versionInfo`, which Marathon's clients ignore) and is stored as is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::app::{
    defaults, EnvValue, KillSelection, Network, NetworkInput, NetworkMode, SecretSource, UnreachableStrategy,
    UnreachableStrategyInput, UpgradeStrategy, UpgradeStrategyInput, VersionInfo,
};
use crate::backoff::BackoffStrategy;
use crate::constraints::Constraint;
use crate::path::PathId;
use crate::plan::Policy;
use crate::time::format_timestamp;
use crate::validate::{
    app_id, float_at_least, fraction, has_duplicates, int_at_least, parse_enum, secrets_of, unreachable_strategy_at,
    ValidationErrors,
};

/// Marathon's pod defaults beyond the app ones.
pub mod pod_defaults {
    pub const EXECUTOR_CPUS: f64 = 0.1;
    pub const EXECUTOR_MEM: f64 = 32.0;
    pub const EXECUTOR_DISK: f64 = 10.0;
    pub const HTTP_SCHEME: &str = "HTTP";
    pub const PROTOCOL: &str = "tcp";
}

/// Marathon's messages for the pod-wide rules (`PodsValidationMessages`; Marathon's own text
/// misspells "must" in the first).
pub const ENDPOINT_NAMES_UNIQUE: &str = "endpoint names must be unique across all containers";
pub const CONTAINER_PORTS_UNIQUE: &str = "container ports must be unique across all containers";
pub const HOST_PORTS_UNIQUE: &str = "host ports must be unique across all containers";
pub const VOLUME_NAMES_UNIQUE: &str = "volume names must be unique";
pub const CONTAINER_NAMES_UNIQUE: &str = "container names must be unique";
pub const SECRET_VOLUME_REFERENCE: &str = "volume.secret must refer to an existing secret";
pub const VOLUME_MOUNT_REFERENCE: &str = "Referenced Volume in VolumeMount should exist";
pub const VOLUME_REFERENCED: &str = "volume must be referenced by at least one container";
pub const ONE_CHECK: &str = "Only one of http, tcp, or command may be specified";
/// A missing required field.
pub const REQUIRED: &str = "must be given";
/// Marathon's `Name`: container, endpoint and volume names.
pub const NAME_PATTERN: &str = "must fully match regular expression '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'";

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDefinition {
    pub id: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub user: Option<String>,
    pub environment: Option<BTreeMap<String, serde_json::Value>>,
    pub containers: Option<Vec<PodContainerInput>>,
    pub secrets: Option<serde_json::Value>,
    pub volumes: Option<Vec<PodVolumeInput>>,
    pub networks: Option<Vec<NetworkInput>>,
    pub scaling: Option<ScalingInput>,
    pub scheduling: Option<SchedulingInput>,
    pub executor_resources: Option<ResourcesInput>,
    /// Ignored: the version is set when the definition is stored.
    pub version: Option<String>,
}

impl PodDefinition {
    /// Parses a request body; a malformed body is a 422 with the parser's message at `/`.
    pub fn from_json(body: &str) -> Result<PodDefinition, ValidationErrors> {
        serde_json::from_str(body).map_err(|e| ValidationErrors::single("/", format!("invalid JSON: {e}")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodContainerInput {
    pub name: Option<String>,
    pub exec: Option<ExecInput>,
    pub resources: Option<ResourcesInput>,
    pub endpoints: Option<Vec<EndpointInput>>,
    pub image: Option<ImageInput>,
    pub environment: Option<BTreeMap<String, serde_json::Value>>,
    pub user: Option<String>,
    pub health_check: Option<PodHealthCheckInput>,
    pub volume_mounts: Option<Vec<VolumeMountInput>>,
    /// Refused when not empty: tepui fetches no artifacts.
    pub artifacts: Option<Vec<serde_json::Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub lifecycle: Option<LifecycleInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecInput {
    pub command: Option<CommandInput>,
    pub override_entrypoint: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CommandInput {
    pub shell: Option<String>,
    pub argv: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ResourcesInput {
    pub cpus: Option<f64>,
    pub mem: Option<f64>,
    pub disk: Option<f64>,
    pub gpus: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInput {
    pub name: Option<String>,
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    pub protocol: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInput {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub force_pull: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodHealthCheckInput {
    pub http: Option<HttpCheckInput>,
    pub tcp: Option<TcpCheckInput>,
    pub exec: Option<ExecCheckInput>,
    pub grace_period_seconds: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub max_consecutive_failures: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub delay_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HttpCheckInput {
    pub endpoint: Option<String>,
    pub path: Option<String>,
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TcpCheckInput {
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ExecCheckInput {
    pub command: Option<CommandInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMountInput {
    pub name: Option<String>,
    pub mount_path: Option<String>,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleInput {
    pub kill_grace_period_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodVolumeInput {
    pub name: Option<String>,
    pub host: Option<String>,
    pub secret: Option<String>,
    /// Refused: no persistent volumes.
    pub persistent: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingInput {
    pub kind: Option<String>,
    pub instances: Option<i64>,
    pub max_instances: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingInput {
    pub backoff: Option<BackoffInput>,
    pub upgrade: Option<UpgradeStrategyInput>,
    pub placement: Option<PlacementInput>,
    pub kill_selection: Option<String>,
    pub unreachable_strategy: Option<UnreachableStrategyInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffInput {
    pub backoff: Option<f64>,
    pub backoff_factor: Option<f64>,
    pub max_launch_delay: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementInput {
    pub constraints: Option<Vec<Vec<String>>>,
    pub accepted_resource_roles: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Normalized
// ---------------------------------------------------------------------------------------------

/// A validated pod with Marathon's defaults. Build one with [`validate_pod`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub id: PathId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, EnvValue>,
    pub containers: Vec<PodContainer>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub volumes: Vec<PodVolume>,
    pub networks: Vec<Network>,
    pub scaling: Scaling,
    pub scheduling: Scheduling,
    pub executor_resources: Resources,
    pub version_info: VersionInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodContainer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    pub resources: Resources,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default)]
    pub environment: BTreeMap<String, EnvValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<PodHealthCheck>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exec {
    pub command: MesosCommand,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_entrypoint: Option<bool>,
}

/// `{"shell": "..."}` or `{"argv": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MesosCommand {
    Shell { shell: String },
    Argv { argv: Vec<String> },
}

impl MesosCommand {
    /// The process to run: a shell command under `/bin/sh -c`, or the argv as it is.
    pub fn argv(&self) -> Vec<String> {
        match self {
            MesosCommand::Shell { shell } => vec!["/bin/sh".into(), "-c".into(), shell.clone()],
            MesosCommand::Argv { argv } => argv.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    #[serde(default)]
    pub gpus: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    /// `Some(0)`: a host port picked from the offer; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub protocol: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub kind: String,
    pub id: String,
    pub force_pull: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    pub grace_period_seconds: u64,
    pub interval_seconds: u64,
    pub max_consecutive_failures: u32,
    pub timeout_seconds: u64,
    pub delay_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    pub endpoint: String,
    pub path: String,
    pub scheme: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCheck {
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCheck {
    pub command: MesosCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub kill_grace_period_seconds: f64,
}

/// A pod volume: ephemeral (neither `host` nor `secret`: a directory of the instance), a host
/// path, or a secret as a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodVolume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    /// Always `fixed`.
    pub kind: String,
    pub instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    pub backoff: Backoff,
    pub upgrade: UpgradeStrategy,
    pub placement: Placement,
    pub kill_selection: KillSelection,
    pub unreachable_strategy: UnreachableStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub backoff: f64,
    pub backoff_factor: f64,
    pub max_launch_delay: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub accepted_resource_roles: Vec<String>,
}

impl PodSpec {
    pub fn instances(&self) -> u32 {
        self.scaling.instances
    }

    /// The version instances of the current configuration carry.
    pub fn config_version(&self) -> &str {
        &self.version_info.last_config_change_at
    }

    pub fn network_mode(&self) -> NetworkMode {
        self.networks.first().map(|n| n.mode).unwrap_or(NetworkMode::Host)
    }

    /// What the step function needs: the same rolling rules as an app's.
    pub fn policy(&self) -> Policy<'_> {
        Policy {
            instances: self.scaling.instances,
            config_version: self.config_version(),
            upgrade_strategy: self.scheduling.upgrade,
            kill_selection: self.scheduling.kill_selection,
            unreachable_strategy: self.scheduling.unreachable_strategy,
        }
    }

    pub fn backoff(&self) -> BackoffStrategy {
        BackoffStrategy {
            backoff_seconds: self.scheduling.backoff.backoff,
            factor: self.scheduling.backoff.backoff_factor,
            max_launch_delay_seconds: self.scheduling.backoff.max_launch_delay,
        }
    }

    /// What one instance holds: its containers' resources and the executor's.
    pub fn instance_resources(&self) -> Resources {
        let mut sum = self.executor_resources;
        for c in &self.containers {
            sum.cpus += c.resources.cpus;
            sum.mem += c.resources.mem;
            sum.disk += c.resources.disk;
            sum.gpus = sum.gpus.saturating_add(c.resources.gpus);
        }
        sum
    }

    /// Every endpoint of the pod in order (container by container), with its container's name:
    /// the order Marathon-LB's `HAPROXY_{n}_*` labels count in.
    pub fn endpoints(&self) -> Vec<(&str, &Endpoint)> {
        self.containers
            .iter()
            .flat_map(|c| c.endpoints.iter().map(move |e| (c.name.as_str(), e)))
            .collect()
    }

    /// Whether anything but the instance count and the versions differs.
    pub fn is_config_change(&self, other: &PodSpec) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        for s in [&mut a, &mut b] {
            s.scaling.instances = 0;
            s.version.clear();
            s.version_info.last_scaling_at.clear();
            s.version_info.last_config_change_at.clear();
        }
        a != b
    }

    /// Sets `version` and `versionInfo` for storing this definition at `now` after `previous`:
    /// a change of the instance count alone keeps the configuration version.
    pub fn stamp(&mut self, previous: Option<&PodSpec>, now: u64) {
        let version = format_timestamp(now);
        self.version = version.clone();
        self.version_info.last_scaling_at = version.clone();
        self.version_info.last_config_change_at = match previous {
            Some(prev) if !self.is_config_change(prev) => prev.version_info.last_config_change_at.clone(),
            _ => version,
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 63 && ok(&b[0]) && ok(&b[b.len() - 1]) && b.iter().all(|c| ok(c) || *c == b'-')
}

/// A required name at `at`, checked against Marathon's `Name` pattern.
fn name(e: &mut ValidationErrors, at: &str, value: Option<&str>) -> String {
    match value {
        None => {
            e.add(at, REQUIRED);
            String::new()
        }
        Some(n) if !valid_name(n) => {
            e.add(at, NAME_PATTERN);
            n.to_string()
        }
        Some(n) => n.to_string(),
    }
}

fn port(e: &mut ValidationErrors, at: &str, value: i64) -> u16 {
    u16::try_from(value).unwrap_or_else(|_| {
        e.add(at, format!("got {value}, expected between 0 and 65535"));
        0
    })
}

fn command(e: &mut ValidationErrors, at: &str, input: Option<&CommandInput>) -> Option<MesosCommand> {
    let Some(c) = input else {
        e.add(at, REQUIRED);
        return None;
    };
    match (&c.shell, &c.argv) {
        (Some(_), Some(_)) | (None, None) => {
            e.add(at, "specify either shell or argv, never both");
            None
        }
        (Some(shell), None) if shell.is_empty() => {
            e.add(&format!("{at}/shell"), "must not be empty");
            None
        }
        (None, Some(argv)) if argv.is_empty() => {
            e.add(&format!("{at}/argv"), "must not be empty");
            None
        }
        (Some(shell), None) => Some(MesosCommand::Shell { shell: shell.clone() }),
        (None, Some(argv)) => Some(MesosCommand::Argv { argv: argv.clone() }),
    }
}

fn environment(
    e: &mut ValidationErrors,
    at: &str,
    input: Option<&BTreeMap<String, serde_json::Value>>,
    secrets: &BTreeMap<String, SecretSource>,
) -> BTreeMap<String, EnvValue> {
    let mut out = BTreeMap::new();
    for (key, value) in input.into_iter().flatten() {
        let path = format!("{at}/{key}");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            e.add(&path, "must be a valid environment variable name");
            continue;
        }
        match value {
            serde_json::Value::String(s) => {
                out.insert(key.clone(), EnvValue::Text(s.clone()));
            }
            serde_json::Value::Object(o) if o.len() == 1 && o.get("secret").is_some_and(|s| s.is_string()) => {
                let name = o["secret"].as_str().unwrap_or_default().to_string();
                if !secrets.contains_key(&name) {
                    e.add(&path, format!("references an undefined secret named {name:?}"));
                }
                out.insert(key.clone(), EnvValue::Secret { secret: name });
            }
            _ => e.add(&path, "must be a string or {\"secret\": NAME}"),
        }
    }
    out
}

fn resources(e: &mut ValidationErrors, at: &str, input: Option<&ResourcesInput>, executor: bool) -> Resources {
    let r = input.cloned().unwrap_or_default();
    let (cpus, mem, disk, min_cpus, min_mem) = if executor {
        (
            pod_defaults::EXECUTOR_CPUS,
            pod_defaults::EXECUTOR_MEM,
            pod_defaults::EXECUTOR_DISK,
            0.0,
            0.0,
        )
    } else {
        (defaults::CPUS, defaults::MEM, defaults::DISK, 0.001, 0.001)
    };
    Resources {
        cpus: float_at_least(e, &format!("{at}/cpus"), r.cpus, cpus, min_cpus),
        mem: float_at_least(e, &format!("{at}/mem"), r.mem, mem, min_mem),
        disk: float_at_least(e, &format!("{at}/disk"), r.disk, disk, 0.0),
        gpus: int_at_least(e, &format!("{at}/gpus"), r.gpus, 0, 0) as u32,
    }
}

fn network(e: &mut ValidationErrors, input: Option<&[NetworkInput]>) -> Network {
    let networks = input.unwrap_or(&[]);
    if networks.len() > 1 {
        e.add("/networks", "a pod has one network: host or container/bridge");
    }
    let Some(net) = networks.first() else {
        // Marathon's pods default to no container network: the agent's.
        return Network {
            mode: NetworkMode::Host,
            labels: BTreeMap::new(),
        };
    };
    let mode = match net.mode.as_deref().unwrap_or("container") {
        "host" => NetworkMode::Host,
        "container/bridge" => NetworkMode::Bridge,
        "container" => {
            e.add(
                "/networks(0)/mode",
                "named container networks are not supported; use host or container/bridge",
            );
            NetworkMode::Host
        }
        _ => {
            e.add(
                "/networks(0)/mode",
                "must be one of host, container/bridge or container",
            );
            NetworkMode::Host
        }
    };
    if net.name.is_some() {
        e.add(
            "/networks(0)/name",
            "must not be set for host or container/bridge networking",
        );
    }
    Network {
        mode,
        labels: net.labels.clone().unwrap_or_default(),
    }
}

fn endpoint(e: &mut ValidationErrors, at: &str, input: &EndpointInput, mode: NetworkMode) -> Endpoint {
    let endpoint_name = name(e, &format!("{at}/name"), input.name.as_deref());
    let container_port = input.container_port.map(|p| port(e, &format!("{at}/containerPort"), p));
    match mode {
        NetworkMode::Host if container_port.is_some() => e.add(
            &format!("{at}/containerPort"),
            "is not allowed when using host-mode networking",
        ),
        NetworkMode::Bridge if container_port.is_none() => e.add(
            &format!("{at}/containerPort"),
            "is required when using container/bridge networking",
        ),
        _ => {}
    }
    let host_port = match (input.host_port, mode) {
        (Some(p), _) => Some(port(e, &format!("{at}/hostPort"), p)),
        // On the agent's network every endpoint is a host port; dynamic unless given.
        (None, NetworkMode::Host) => Some(0),
        (None, NetworkMode::Bridge) => None,
    };
    let protocol = match &input.protocol {
        None => vec![pod_defaults::PROTOCOL.to_string()],
        Some(list) => {
            if list.is_empty() {
                e.add(&format!("{at}/protocol"), "must not be empty");
            }
            for (k, p) in list.iter().enumerate() {
                if !matches!(p.as_str(), "tcp" | "udp" | "http" | "https" | "http2" | "grpc") {
                    e.add(
                        &format!("{at}/protocol({k})"),
                        "must be one of tcp, udp, http, https, http2 or grpc",
                    );
                }
            }
            if has_duplicates(list.iter()) {
                e.add(
                    &format!("{at}/protocol"),
                    "Duplicate protocols within the same endpoint are not allowed",
                );
            }
            list.clone()
        }
    };
    Endpoint {
        name: endpoint_name,
        container_port,
        host_port,
        protocol,
        labels: input.labels.clone().unwrap_or_default(),
    }
}

fn secs(e: &mut ValidationErrors, at: &str, value: Option<i64>, default: u64) -> u64 {
    int_at_least(e, at, value, default as i64, 0) as u64
}

fn health_check(
    e: &mut ValidationErrors,
    at: &str,
    input: &PodHealthCheckInput,
    endpoints: &[Endpoint],
) -> PodHealthCheck {
    let kinds = [input.http.is_some(), input.tcp.is_some(), input.exec.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        e.add(at, ONE_CHECK);
    }
    let mut endpoint_of = |field: &str, value: Option<&str>| -> String {
        let path = format!("{at}/{field}/endpoint");
        match value {
            None => {
                e.add(&path, REQUIRED);
                String::new()
            }
            Some(n) if !endpoints.iter().any(|ep| ep.name == n) => {
                e.add(&path, "must be the name of one of the container's endpoints");
                n.to_string()
            }
            Some(n) => n.to_string(),
        }
    };
    let http = input.http.as_ref().map(|h| HttpCheck {
        endpoint: endpoint_of("http", h.endpoint.as_deref()),
        path: h.path.clone().unwrap_or_else(|| defaults::HEALTH_PATH.to_string()),
        scheme: h
            .scheme
            .as_deref()
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| pod_defaults::HTTP_SCHEME.to_string()),
    });
    let tcp = input.tcp.as_ref().map(|t| TcpCheck {
        endpoint: endpoint_of("tcp", t.endpoint.as_deref()),
    });
    if let Some(h) = &http {
        if !matches!(h.scheme.as_str(), "HTTP" | "HTTPS") {
            e.add(&format!("{at}/http/scheme"), "must be one of HTTP or HTTPS");
        }
        if !h.path.starts_with('/') || h.path.len() > 1024 {
            e.add(
                &format!("{at}/http/path"),
                "must be an absolute path of at most 1024 characters",
            );
        } else if let Some(m) = tepui_common::health_path_error(&h.path) {
            e.add(&format!("{at}/http/path"), m);
        }
    }
    let exec = input.exec.as_ref().and_then(|x| {
        command(e, &format!("{at}/exec/command"), x.command.as_ref()).map(|command| ExecCheck { command })
    });
    let interval_seconds = secs(
        e,
        &format!("{at}/intervalSeconds"),
        input.interval_seconds,
        defaults::HEALTH_INTERVAL_SECONDS,
    );
    let timeout_seconds = secs(
        e,
        &format!("{at}/timeoutSeconds"),
        input.timeout_seconds,
        defaults::HEALTH_TIMEOUT_SECONDS,
    );
    if timeout_seconds >= interval_seconds {
        e.add(
            &format!("{at}/timeoutSeconds"),
            format!("got {timeout_seconds}, expected less than intervalSeconds ({interval_seconds})"),
        );
    }
    PodHealthCheck {
        http,
        tcp,
        exec,
        grace_period_seconds: secs(
            e,
            &format!("{at}/gracePeriodSeconds"),
            input.grace_period_seconds,
            defaults::HEALTH_GRACE_PERIOD_SECONDS,
        ),
        interval_seconds,
        max_consecutive_failures: secs(
            e,
            &format!("{at}/maxConsecutiveFailures"),
            input.max_consecutive_failures,
            u64::from(defaults::HEALTH_MAX_CONSECUTIVE_FAILURES),
        ) as u32,
        timeout_seconds,
        delay_seconds: secs(
            e,
            &format!("{at}/delaySeconds"),
            input.delay_seconds,
            defaults::HEALTH_DELAY_SECONDS,
        ),
    }
}

fn container(
    e: &mut ValidationErrors,
    i: usize,
    c: &PodContainerInput,
    mode: NetworkMode,
    secrets: &BTreeMap<String, SecretSource>,
    volume_names: &[&str],
) -> PodContainer {
    let at = format!("/containers({i})");
    let container_name = name(e, &format!("{at}/name"), c.name.as_deref());
    let exec = c.exec.as_ref().and_then(|x| {
        let command = command(e, &format!("{at}/exec/command"), x.command.as_ref())?;
        Some(Exec {
            command,
            override_entrypoint: x.override_entrypoint,
        })
    });
    let image = c.image.as_ref().map(|img| {
        let kind = img.kind.clone().unwrap_or_else(|| "DOCKER".to_string());
        if kind != "DOCKER" {
            e.add(&format!("{at}/image/kind"), "must be DOCKER");
        }
        let id = img.id.clone().unwrap_or_default();
        if id.is_empty() {
            e.add(&format!("{at}/image/id"), "must not be empty");
        }
        Image {
            kind,
            id,
            force_pull: img.force_pull.unwrap_or(false),
        }
    });
    if c.exec.is_none() && image.is_none() {
        e.add(&at, "a container needs an exec command, an image, or both");
    }
    let endpoints: Vec<Endpoint> = c
        .endpoints
        .iter()
        .flatten()
        .enumerate()
        .map(|(j, ep)| endpoint(e, &format!("{at}/endpoints({j})"), ep, mode))
        .collect();
    let health_check = c
        .health_check
        .as_ref()
        .map(|h| health_check(e, &format!("{at}/healthCheck"), h, &endpoints));
    let volume_mounts = c
        .volume_mounts
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, m)| {
            let mat = format!("{at}/volumeMounts({k})");
            let vname = name(e, &format!("{mat}/name"), m.name.as_deref());
            if !vname.is_empty() && !volume_names.contains(&vname.as_str()) {
                e.add(&format!("{mat}/name"), VOLUME_MOUNT_REFERENCE);
            }
            let mount_path = m.mount_path.clone().unwrap_or_default();
            if mount_path.is_empty() || mount_path.len() > 1024 {
                e.add(&format!("{mat}/mountPath"), "must be a path of 1 to 1024 characters");
            }
            VolumeMount {
                name: vname,
                mount_path,
                read_only: m.read_only.unwrap_or(false),
            }
        })
        .collect();
    if c.artifacts.as_ref().is_some_and(|a| !a.is_empty()) {
        e.add(
            &format!("{at}/artifacts"),
            "artifacts are not supported; put files in the image",
        );
    }
    let lifecycle = c.lifecycle.as_ref().map(|l| Lifecycle {
        kill_grace_period_seconds: float_at_least(
            e,
            &format!("{at}/lifecycle/killGracePeriodSeconds"),
            l.kill_grace_period_seconds,
            3.0,
            0.0,
        ),
    });
    if c.user.as_deref() == Some("") {
        e.add(&format!("{at}/user"), "must not be empty");
    }
    PodContainer {
        name: container_name,
        exec,
        resources: resources(e, &format!("{at}/resources"), c.resources.as_ref(), false),
        endpoints,
        image,
        environment: environment(e, &format!("{at}/environment"), c.environment.as_ref(), secrets),
        user: c.user.clone().filter(|u| !u.is_empty()),
        health_check,
        volume_mounts,
        labels: c.labels.clone().unwrap_or_default(),
        lifecycle,
    }
}

/// Validates `def` and fills in Marathon's defaults; a relative id is resolved against `base`.
/// `now` (milliseconds) becomes the version; see [`PodSpec::stamp`] to keep the configuration
/// version of a scale.
pub fn validate_pod(def: &PodDefinition, base: &PathId, now: u64) -> Result<PodSpec, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let id = app_id(def.id.as_deref(), base, &mut e);
    if def.user.as_deref() == Some("") {
        e.add("/user", "must not be empty");
    }
    let secrets = secrets_of(def.secrets.as_ref(), &mut e);
    let environment = environment(&mut e, "/environment", def.environment.as_ref(), &secrets);
    let network = network(&mut e, def.networks.as_deref());

    let mut volumes = Vec::new();
    for (k, v) in def.volumes.iter().flatten().enumerate() {
        let at = format!("/volumes({k})");
        let vname = name(&mut e, &format!("{at}/name"), v.name.as_deref());
        if v.persistent.is_some() {
            e.add(&format!("{at}/persistent"), "persistent volumes are not supported");
        }
        if v.host.is_some() && v.secret.is_some() {
            e.add(&at, "a volume is a host path or a secret, not both");
        }
        if let Some(host) = &v.host {
            if !host.starts_with('/') {
                e.add(&format!("{at}/host"), "must be an absolute path");
            }
        }
        if let Some(secret) = &v.secret {
            if !secrets.contains_key(secret) {
                e.add(&format!("{at}/secret"), SECRET_VOLUME_REFERENCE);
            }
        }
        volumes.push(PodVolume {
            name: vname,
            host: v.host.clone(),
            secret: v.secret.clone(),
        });
    }
    if has_duplicates(volumes.iter().map(|v| v.name.as_str())) {
        e.add("/volumes", VOLUME_NAMES_UNIQUE);
    }
    let volume_names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();

    let containers: Vec<PodContainer> = match def.containers.as_deref() {
        None | Some([]) => {
            e.add("/containers", "must not be empty");
            Vec::new()
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| container(&mut e, i, c, network.mode, &secrets, &volume_names))
            .collect(),
    };
    if has_duplicates(containers.iter().map(|c| c.name.as_str())) {
        e.add("/containers", CONTAINER_NAMES_UNIQUE);
    }
    for (k, v) in volumes.iter().enumerate() {
        let used = containers
            .iter()
            .any(|c| c.volume_mounts.iter().any(|m| m.name == v.name));
        if !used {
            e.add(&format!("/volumes({k})"), VOLUME_REFERENCED);
        }
    }
    let endpoints: Vec<&Endpoint> = containers.iter().flat_map(|c| &c.endpoints).collect();
    if has_duplicates(endpoints.iter().map(|ep| ep.name.as_str())) {
        e.add("/", ENDPOINT_NAMES_UNIQUE);
    }
    if has_duplicates(endpoints.iter().filter_map(|ep| ep.container_port).filter(|p| *p != 0)) {
        e.add("/", CONTAINER_PORTS_UNIQUE);
    }
    if has_duplicates(endpoints.iter().filter_map(|ep| ep.host_port).filter(|p| *p != 0)) {
        e.add("/", HOST_PORTS_UNIQUE);
    }

    let scaling_in = def.scaling.clone().unwrap_or_default();
    if scaling_in.kind.as_deref().is_some_and(|k| k != "fixed") {
        e.add("/scaling/kind", "Not a fixed scaling policy");
    }
    let instances = int_at_least(
        &mut e,
        "/scaling/instances",
        scaling_in.instances,
        i64::from(defaults::INSTANCES),
        0,
    ) as u32;
    let max_instances = scaling_in.max_instances.map(|m| {
        let m = int_at_least(&mut e, "/scaling/maxInstances", Some(m), 0, 0) as u32;
        if m < instances {
            e.add(
                "/scaling/maxInstances",
                format!("got {m}, expected at least instances ({instances})"),
            );
        }
        m
    });

    let sched = def.scheduling.clone().unwrap_or_default();
    let backoff_in = sched.backoff.clone().unwrap_or_default();
    let upgrade_in = sched.upgrade.clone().unwrap_or_default();
    let placement_in = sched.placement.clone().unwrap_or_default();
    let mut constraints: Vec<Constraint> = Vec::new();
    for (i, parts) in placement_in.constraints.iter().flatten().enumerate() {
        match Constraint::parse(parts) {
            Ok(c) if constraints.contains(&c) => {}
            Ok(c) => constraints.push(c),
            Err(msg) => e.add(&format!("/scheduling/placement/constraints({i})"), msg),
        }
    }
    let mut roles: Vec<String> = Vec::new();
    for (i, role) in placement_in.accepted_resource_roles.iter().flatten().enumerate() {
        if role.is_empty() {
            e.add(
                &format!("/scheduling/placement/acceptedResourceRoles({i})"),
                "must not be empty",
            );
        } else if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    let kill_selection = match sched.kill_selection.as_deref() {
        None => KillSelection::default(),
        Some(s) => parse_enum(s).unwrap_or_else(|| {
            e.add(
                "/scheduling/killSelection",
                "must be one of YOUNGEST_FIRST or OLDEST_FIRST",
            );
            KillSelection::default()
        }),
    };
    let scheduling = Scheduling {
        backoff: Backoff {
            backoff: float_at_least(
                &mut e,
                "/scheduling/backoff/backoff",
                backoff_in.backoff,
                defaults::BACKOFF_SECONDS,
                0.0,
            ),
            backoff_factor: float_at_least(
                &mut e,
                "/scheduling/backoff/backoffFactor",
                backoff_in.backoff_factor,
                defaults::BACKOFF_FACTOR,
                0.0,
            ),
            max_launch_delay: float_at_least(
                &mut e,
                "/scheduling/backoff/maxLaunchDelay",
                backoff_in.max_launch_delay,
                defaults::MAX_LAUNCH_DELAY_SECONDS,
                0.0,
            ),
        },
        upgrade: UpgradeStrategy {
            minimum_health_capacity: fraction(
                &mut e,
                "/scheduling/upgrade/minimumHealthCapacity",
                upgrade_in.minimum_health_capacity,
                defaults::MINIMUM_HEALTH_CAPACITY,
            ),
            maximum_over_capacity: fraction(
                &mut e,
                "/scheduling/upgrade/maximumOverCapacity",
                upgrade_in.maximum_over_capacity,
                defaults::MAXIMUM_OVER_CAPACITY,
            ),
        },
        placement: Placement {
            constraints,
            accepted_resource_roles: roles,
        },
        kill_selection,
        unreachable_strategy: unreachable_strategy_at(
            "/scheduling/unreachableStrategy",
            sched.unreachable_strategy.as_ref(),
            &mut e,
        ),
    };
    let executor_resources = resources(&mut e, "/executorResources", def.executor_resources.as_ref(), true);
    let version = format_timestamp(now);
    let spec = PodSpec {
        id,
        labels: def.labels.clone().unwrap_or_default(),
        version: version.clone(),
        user: def.user.clone().filter(|u| !u.is_empty()),
        environment,
        containers,
        secrets,
        volumes,
        networks: vec![network],
        scaling: Scaling {
            kind: "fixed".into(),
            instances,
            max_instances,
        },
        scheduling,
        executor_resources,
        version_info: VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: version,
        },
    };
    e.into_result(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<PodSpec, ValidationErrors> {
        let def: PodDefinition = serde_json::from_value(json).unwrap();
        validate_pod(&def, &PathId::root(), 1_000)
    }

    fn web() -> serde_json::Value {
        serde_json::json!({
            "id": "/web",
            "containers": [
                {"name": "server", "exec": {"command": {"shell": "httpd -f -p $ENDPOINT_HTTP"}},
                 "resources": {"cpus": 0.1, "mem": 32},
                 "endpoints": [{"name": "http", "hostPort": 0}],
                 "image": {"kind": "DOCKER", "id": "busybox:latest"},
                 "healthCheck": {"http": {"endpoint": "http", "path": "/"}}},
                {"name": "client", "exec": {"command": {"argv": ["sleep", "1000"]}},
                 "resources": {"cpus": 0.1, "mem": 16}}
            ]
        })
    }

    #[test]
    fn defaults_are_marathons() {
        let p = parse(web()).unwrap();
        assert_eq!(p.id.to_string(), "/web");
        assert_eq!(p.scaling.instances, 1);
        assert_eq!(p.scaling.kind, "fixed");
        assert_eq!(p.network_mode(), NetworkMode::Host);
        assert_eq!(p.scheduling.upgrade.minimum_health_capacity, 1.0);
        assert_eq!(p.scheduling.upgrade.maximum_over_capacity, 1.0);
        assert_eq!(p.scheduling.backoff.max_launch_delay, 300.0);
        assert_eq!(p.executor_resources.cpus, 0.1);
        assert_eq!(p.executor_resources.mem, 32.0);
        let server = &p.containers[0];
        assert_eq!(server.endpoints[0].protocol, ["tcp"]);
        assert_eq!(server.endpoints[0].host_port, Some(0));
        let hc = server.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.interval_seconds, hc.timeout_seconds, hc.grace_period_seconds),
            (60, 20, 300)
        );
        assert_eq!(hc.http.as_ref().unwrap().scheme, "HTTP");
        assert_eq!(p.containers[1].resources.disk, 0.0);
        let r = p.instance_resources();
        assert!((r.cpus - 0.3).abs() < 1e-9, "{}", r.cpus);
        assert_eq!(r.mem, 80.0);
    }

    #[test]
    fn spec_round_trips_as_marathons_json() {
        let p = parse(web()).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["containers"][0]["exec"]["command"]["shell"],
            "httpd -f -p $ENDPOINT_HTTP"
        );
        assert_eq!(json["containers"][1]["exec"]["command"]["argv"][0], "sleep");
        assert_eq!(json["scheduling"]["upgrade"]["minimumHealthCapacity"], 1.0);
        assert_eq!(json["scheduling"]["killSelection"], "YOUNGEST_FIRST");
        assert_eq!(json["networks"][0]["mode"], "host");
        assert_eq!(json["scaling"]["instances"], 1);
        let back: PodSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, p);
        // What GET answers goes back into PUT unchanged.
        let again: PodDefinition = serde_json::from_value(json).unwrap();
        let mut p2 = validate_pod(&again, &PathId::root(), 1_000).unwrap();
        p2.version_info = p.version_info.clone();
        assert_eq!(p2, p);
    }

    #[test]
    fn what_get_answers_put_back_is_no_change() {
        let full = serde_json::json!({
            "id": "/shop/web", "labels": {"HAPROXY_GROUP": "external"}, "environment": {"COLOR": "blue"},
            "volumes": [{"name": "data"}], "networks": [{"mode": "host"}],
            "scaling": {"kind": "fixed", "instances": 1},
            "scheduling": {"upgrade": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
                           "backoff": {"backoff": 1, "backoffFactor": 1.15, "maxLaunchDelay": 30}},
            "containers": [
                {"name": "server", "image": {"kind": "DOCKER", "id": "busybox"},
                 "exec": {"command": {"shell": "x"}}, "resources": {"cpus": 0.1, "mem": 32},
                 "endpoints": [{"name": "http", "hostPort": 0, "protocol": ["http"]}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "healthCheck": {"http": {"endpoint": "http", "path": "/index.html", "scheme": "HTTP"},
                     "gracePeriodSeconds": 20, "intervalSeconds": 2, "timeoutSeconds": 1,
                     "maxConsecutiveFailures": 3, "delaySeconds": 0}},
                {"name": "client", "image": {"kind": "DOCKER", "id": "busybox"},
                 "exec": {"command": {"shell": "y"}}, "resources": {"cpus": 0.1, "mem": 16},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
        });
        let p = parse(full).unwrap();
        let mut got = serde_json::to_value(&p).unwrap();
        got["scaling"]["instances"] = serde_json::json!(2);
        let def: PodDefinition = serde_json::from_value(got).unwrap();
        let mut scaled = validate_pod(&def, &PathId::root(), 2_000).unwrap();
        assert!(!scaled.is_config_change(&p), "{scaled:#?}\n{p:#?}");
        scaled.stamp(Some(&p), 2_000);
        assert_eq!(scaled.config_version(), p.config_version());
    }

    #[test]
    fn bad_fields_have_marathons_paths() {
        let mut bad = web();
        bad["containers"][0]["resources"]["cpus"] = serde_json::json!(-1);
        bad["containers"][1]["name"] = serde_json::json!("server");
        bad["containers"][1]["endpoints"] = serde_json::json!([{"hostPort": 0}]);
        bad["scaling"] = serde_json::json!({"kind": "fixed", "instances": -2});
        bad["scheduling"] = serde_json::json!({"upgrade": {"maximumOverCapacity": 2}});
        let e = parse(bad).unwrap_err();
        assert!(
            e.has("/containers(0)/resources/cpus", "got -1, expected 0.001 or more"),
            "{e}"
        );
        assert!(e.has("/containers", CONTAINER_NAMES_UNIQUE), "{e}");
        assert!(e.has("/containers(1)/endpoints(0)/name", REQUIRED), "{e}");
        assert!(e.has("/scaling/instances", "got -2, expected 0 or more"), "{e}");
        assert!(
            e.has(
                "/scheduling/upgrade/maximumOverCapacity",
                "got 2, expected between 0.0 and 1.0"
            ),
            "{e}"
        );
    }

    #[test]
    fn pod_wide_rules() {
        let e = parse(serde_json::json!({"id": "/p"})).unwrap_err();
        assert!(e.has("/containers", "must not be empty"));
        let e = parse(serde_json::json!({"id": "/p", "containers": [
            {"name": "a", "exec": {"command": {"shell": "x"}}, "endpoints": [{"name": "e", "hostPort": 8080}]},
            {"name": "B", "exec": {"command": {"shell": "x", "argv": ["x"]}},
             "endpoints": [{"name": "e", "hostPort": 8080}],
             "volumeMounts": [{"name": "nope", "mountPath": "/m"}]}],
            "volumes": [{"name": "data"}]}))
        .unwrap_err();
        assert!(e.has("/", ENDPOINT_NAMES_UNIQUE), "{e}");
        assert!(e.has("/", HOST_PORTS_UNIQUE), "{e}");
        assert!(e.has("/containers(1)/name", NAME_PATTERN), "{e}");
        assert!(
            e.has(
                "/containers(1)/exec/command",
                "specify either shell or argv, never both"
            ),
            "{e}"
        );
        assert!(
            e.has("/containers(1)/volumeMounts(0)/name", VOLUME_MOUNT_REFERENCE),
            "{e}"
        );
        assert!(e.has("/volumes(0)", VOLUME_REFERENCED), "{e}");
    }

    #[test]
    fn networks_and_endpoints() {
        let e = parse(
            serde_json::json!({"id": "/p", "networks": [{"mode": "container/bridge"}], "containers": [
            {"name": "a", "image": {"kind": "DOCKER", "id": "busybox"}, "endpoints": [{"name": "e", "hostPort": 0}]}]}),
        )
        .unwrap_err();
        assert!(e.has(
            "/containers(0)/endpoints(0)/containerPort",
            "is required when using container/bridge networking"
        ));
        let e = parse(serde_json::json!({"id": "/p", "containers": [
            {"name": "a", "exec": {"command": {"shell": "x"}}, "endpoints": [{"name": "e", "containerPort": 80}]}]}))
        .unwrap_err();
        assert!(e.has(
            "/containers(0)/endpoints(0)/containerPort",
            "is not allowed when using host-mode networking"
        ));
        let e = parse(
            serde_json::json!({"id": "/p", "networks": [{"mode": "container", "name": "dcos"}],
            "containers": [{"name": "a", "exec": {"command": {"shell": "x"}}}]}),
        )
        .unwrap_err();
        assert!(
            !e.details.is_empty() && e.details[0].path.starts_with("/networks(0)"),
            "{e}"
        );
    }

    #[test]
    fn health_checks_name_an_endpoint_and_one_kind() {
        let e = parse(serde_json::json!({"id": "/p", "containers": [
            {"name": "a", "exec": {"command": {"shell": "x"}}, "endpoints": [{"name": "web"}],
             "healthCheck": {"http": {"endpoint": "other"}, "tcp": {"endpoint": "web"},
                             "intervalSeconds": 5, "timeoutSeconds": 5}}]}))
        .unwrap_err();
        assert!(e.has("/containers(0)/healthCheck", ONE_CHECK), "{e}");
        assert!(
            e.has(
                "/containers(0)/healthCheck/http/endpoint",
                "must be the name of one of the container's endpoints"
            ),
            "{e}"
        );
        assert!(
            e.details
                .iter()
                .any(|d| d.path == "/containers(0)/healthCheck/timeoutSeconds"),
            "{e}"
        );
    }

    #[test]
    fn secrets_volumes_and_environment() {
        let ok = parse(serde_json::json!({"id": "/p", "secrets": {"pw": {"source": "/db/pw"}},
            "environment": {"A": "1", "PW": {"secret": "pw"}},
            "volumes": [{"name": "scratch"}, {"name": "pwfile", "secret": "pw"}, {"name": "logs", "host": "/var/log"}],
            "containers": [{"name": "a", "exec": {"command": {"shell": "x"}},
                "volumeMounts": [{"name": "scratch", "mountPath": "/s"}, {"name": "pwfile", "mountPath": "pw"},
                                 {"name": "logs", "mountPath": "/l", "readOnly": true}]},
                {"name": "b", "exec": {"command": {"shell": "x"}}, "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}]}))
        .unwrap();
        assert_eq!(ok.volumes.len(), 3);
        assert!(ok.containers[0].volume_mounts[2].read_only);
        let e = parse(serde_json::json!({"id": "/p", "environment": {"PW": {"secret": "nope"}},
            "volumes": [{"name": "v", "secret": "nope"}, {"name": "v", "persistent": {"size": 10}}],
            "containers": [{"name": "a", "exec": {"command": {"shell": "x"}}, "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}))
        .unwrap_err();
        assert!(e.details.iter().any(|d| d.path == "/environment/PW"), "{e}");
        assert!(e.has("/volumes(0)/secret", SECRET_VOLUME_REFERENCE), "{e}");
        assert!(e.has("/volumes", VOLUME_NAMES_UNIQUE), "{e}");
        assert!(
            e.has("/volumes(1)/persistent", "persistent volumes are not supported"),
            "{e}"
        );
    }

    #[test]
    fn scaling_keeps_the_config_version_and_a_change_does_not() {
        let v1 = parse(web()).unwrap();
        let mut scaled = v1.clone();
        scaled.scaling.instances = 3;
        scaled.stamp(Some(&v1), 2_000);
        assert_eq!(scaled.config_version(), v1.config_version());
        assert_ne!(scaled.version, v1.version);
        let mut changed = scaled.clone();
        changed.containers[1].exec = Some(Exec {
            command: MesosCommand::Shell {
                shell: "sleep 5".into(),
            },
            override_entrypoint: None,
        });
        changed.stamp(Some(&scaled), 3_000);
        assert_eq!(changed.config_version(), "1970-01-01T00:00:03.000Z");
        assert_eq!(changed.policy().instances, 3);
    }
}
