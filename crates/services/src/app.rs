//! The Marathon app definition.
//!
//! [`AppDefinition`] is the JSON a client sends to `/v2/apps`: every field optional, Marathon's
//! camelCase names, unknown fields (`deployments`, `tasks`, `executor`, `fetch`, ...) ignored.
//! [`crate::validate::validate_app`] turns it into an [`AppSpec`]: validated, relative ids
//! resolved, Marathon's defaults filled in, legacy fields (`ports`, `container.docker.network`,
//! `container.docker.portMappings`) migrated. An `AppSpec` serializes to the JSON Marathon
//! returns for an app, and deserializes from it, so it can be stored as is.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backoff::BackoffStrategy;
use crate::constraints::Constraint;
use crate::path::PathId;
use crate::time::format_timestamp;
use crate::validate::ValidationErrors;

/// Marathon's defaults for absent fields.
pub mod defaults {
    pub const CPUS: f64 = 1.0;
    pub const MEM: f64 = 128.0;
    pub const DISK: f64 = 0.0;
    pub const GPUS: u32 = 0;
    pub const INSTANCES: u32 = 1;
    pub const BACKOFF_SECONDS: f64 = 1.0;
    pub const BACKOFF_FACTOR: f64 = 1.15;
    /// Marathon 1.5 and later (and its backoff guide) use 300 seconds; the RAML of the same
    /// releases still says 3600, the 1.4 default. Apps echoed by Marathon 1.5+ carry 300.
    pub const MAX_LAUNCH_DELAY_SECONDS: f64 = 300.0;
    pub const MINIMUM_HEALTH_CAPACITY: f64 = 1.0;
    pub const MAXIMUM_OVER_CAPACITY: f64 = 1.0;
    pub const UNREACHABLE_INACTIVE_AFTER_SECONDS: u64 = 300;
    pub const UNREACHABLE_EXPUNGE_AFTER_SECONDS: u64 = 600;
    pub const HEALTH_GRACE_PERIOD_SECONDS: u64 = 300;
    pub const HEALTH_INTERVAL_SECONDS: u64 = 60;
    pub const HEALTH_TIMEOUT_SECONDS: u64 = 20;
    pub const HEALTH_MAX_CONSECUTIVE_FAILURES: u32 = 3;
    pub const HEALTH_DELAY_SECONDS: u64 = 15;
    /// The path of an HTTP health check without one.
    pub const HEALTH_PATH: &str = "/";
    /// The name of the port Marathon adds when an app declares none.
    pub const PORT_NAME: &str = "default";
}

// ---------------------------------------------------------------------------------------------
// Input: what a client sends.
// ---------------------------------------------------------------------------------------------

/// An app as a client sends it. Numbers are read wide (signed, floating) so that out-of-range
/// values reach validation and get Marathon's 422 answer instead of a parse error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDefinition {
    pub id: Option<String>,
    pub cmd: Option<String>,
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    /// Values are strings, or `{"secret": NAME}` naming one of `secrets`.
    pub env: Option<BTreeMap<String, serde_json::Value>>,
    pub instances: Option<i64>,
    pub cpus: Option<f64>,
    pub mem: Option<f64>,
    pub disk: Option<f64>,
    pub gpus: Option<i64>,
    pub container: Option<ContainerInput>,
    pub networks: Option<Vec<NetworkInput>>,
    pub port_definitions: Option<Vec<PortDefinitionInput>>,
    /// Deprecated by Marathon in favour of `portDefinitions`; migrated.
    pub ports: Option<Vec<i64>>,
    pub require_ports: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
    pub constraints: Option<Vec<Vec<String>>>,
    pub accepted_resource_roles: Option<Vec<String>>,
    pub health_checks: Option<Vec<HealthCheckInput>>,
    pub upgrade_strategy: Option<UpgradeStrategyInput>,
    pub backoff_seconds: Option<f64>,
    pub backoff_factor: Option<f64>,
    pub max_launch_delay_seconds: Option<f64>,
    pub kill_selection: Option<String>,
    pub task_kill_grace_period_seconds: Option<i64>,
    pub unreachable_strategy: Option<UnreachableStrategyInput>,
    pub dependencies: Option<Vec<String>>,
    /// `{NAME: {"source": PATH}}`: the secrets of tepui's store the app refers to by NAME.
    pub secrets: Option<serde_json::Value>,
    /// Ignored: the version is set when the definition is stored.
    pub version: Option<String>,
}

impl AppDefinition {
    /// Parses a request body; a malformed body is a 422 with the parser's message at `/`.
    pub fn from_json(body: &str) -> Result<AppDefinition, ValidationErrors> {
        serde_json::from_str(body).map_err(|e| ValidationErrors::single("/", format!("invalid JSON: {e}")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInput {
    /// `DOCKER` (the default) or `MESOS`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub docker: Option<DockerInput>,
    pub port_mappings: Option<Vec<PortMappingInput>>,
    pub volumes: Option<Vec<VolumeInput>>,
    /// Refused: AppC images are not supported.
    pub appc: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerInput {
    pub image: Option<String>,
    /// Deprecated: `BRIDGE`, `HOST`, `USER` or `NONE`; migrated to `networks`.
    pub network: Option<String>,
    pub force_pull_image: Option<bool>,
    /// Deprecated location of `container.portMappings`; migrated.
    pub port_mappings: Option<Vec<PortMappingInput>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMappingInput {
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    pub service_port: Option<i64>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInput {
    pub container_path: Option<String>,
    pub host_path: Option<String>,
    pub mode: Option<String>,
    /// Refused: only host volumes are supported.
    pub persistent: Option<serde_json::Value>,
    /// Refused: only host volumes are supported.
    pub external: Option<serde_json::Value>,
    /// A file-based secret: NAME of one of the app's `secrets`, put at `containerPath`.
    pub secret: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInput {
    /// `host`, `container/bridge` or `container` (the default when absent, as in Marathon).
    pub mode: Option<String>,
    pub name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinitionInput {
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckInput {
    pub protocol: Option<String>,
    pub path: Option<String>,
    pub port_index: Option<i64>,
    pub port: Option<i64>,
    pub command: Option<CommandInput>,
    pub grace_period_seconds: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub max_consecutive_failures: Option<i64>,
    pub delay_seconds: Option<i64>,
    pub ignore_http1xx: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CommandInput {
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategyInput {
    pub minimum_health_capacity: Option<f64>,
    pub maximum_over_capacity: Option<f64>,
}

/// `"disabled"` or `{inactiveAfterSeconds, expungeAfterSeconds}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum UnreachableStrategyInput {
    Named(String),
    Enabled(UnreachableEnabledInput),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreachableEnabledInput {
    pub inactive_after_seconds: Option<i64>,
    pub expunge_after_seconds: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Normalized: what is stored and planned with.
// ---------------------------------------------------------------------------------------------

/// A validated app with every default applied. Build one with [`crate::validate::validate_app`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    pub id: PathId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Secrets by the names `env` and secret volumes use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
    pub instances: u32,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    pub gpus: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    pub networks: Vec<Network>,
    /// Host ports (host networking only; empty otherwise).
    #[serde(default)]
    pub port_definitions: Vec<PortDefinition>,
    pub require_ports: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// `None` accepts resources of every role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    pub upgrade_strategy: UpgradeStrategy,
    pub backoff_seconds: f64,
    pub backoff_factor: f64,
    pub max_launch_delay_seconds: f64,
    pub kill_selection: KillSelection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<u64>,
    pub unreachable_strategy: UnreachableStrategy,
    #[serde(default)]
    pub dependencies: Vec<PathId>,
    /// When this definition was stored (any change).
    pub version: String,
    pub version_info: VersionInfo,
}

/// Marathon's `versionInfo`: instances are replaced only when the configuration changed, not
/// when the app was only scaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub last_scaling_at: String,
    pub last_config_change_at: String,
}

impl AppSpec {
    /// The version an instance of the current configuration carries; instances with another
    /// version are replaced by a rolling upgrade.
    pub fn config_version(&self) -> &str {
        &self.version_info.last_config_change_at
    }

    pub fn backoff(&self) -> BackoffStrategy {
        BackoffStrategy {
            backoff_seconds: self.backoff_seconds,
            factor: self.backoff_factor,
            max_launch_delay_seconds: self.max_launch_delay_seconds,
        }
    }

    pub fn network_mode(&self) -> NetworkMode {
        self.networks.first().map(|n| n.mode).unwrap_or(NetworkMode::Host)
    }

    /// The image to run, if any (a Docker image under either container type).
    pub fn image(&self) -> Option<&str> {
        self.container.as_ref()?.docker.as_ref().map(|d| d.image.as_str())
    }

    pub fn port_mappings(&self) -> &[PortMapping] {
        self.container
            .as_ref()
            .map(|c| c.port_mappings.as_slice())
            .unwrap_or(&[])
    }

    /// How many ports a health check's `portIndex` can address: the port definitions with host
    /// networking, the port mappings otherwise.
    pub fn port_count(&self) -> usize {
        match self.network_mode() {
            NetworkMode::Host => self.port_definitions.len(),
            NetworkMode::Bridge => self.port_mappings().len(),
        }
    }

    /// Whether anything but the instance count and the versions differs.
    pub fn is_config_change(&self, other: &AppSpec) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        for s in [&mut a, &mut b] {
            s.instances = 0;
            s.version.clear();
            s.version_info.last_scaling_at.clear();
            s.version_info.last_config_change_at.clear();
        }
        a != b
    }

    /// Sets `version` and `versionInfo` for storing this definition at `now`, after `previous`:
    /// a change of the instance count alone keeps the configuration version, so running
    /// instances stay.
    pub fn stamp(&mut self, previous: Option<&AppSpec>, now: u64) {
        let version = format_timestamp(now);
        self.version = version.clone();
        self.version_info.last_scaling_at = version.clone();
        self.version_info.last_config_change_at = match previous {
            Some(prev) if !self.is_config_change(prev) => prev.version_info.last_config_change_at.clone(),
            _ => version,
        };
    }

    /// The same definition with a new configuration version: every instance is replaced by a
    /// rolling upgrade (`POST /v2/apps/{id}/restart`).
    pub fn restarted(&self, now: u64) -> AppSpec {
        let mut spec = self.clone();
        let version = format_timestamp(now);
        spec.version = version.clone();
        spec.version_info = VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: version,
        };
        spec
    }
}

/// Applies a `PUT /v2/apps/{id}` body to a stored app the way Marathon does: fields present in
/// `update` replace the stored ones, absent fields keep their value. The result still has to go
/// through [`crate::validate::validate_app`]. The id always stays the stored one.
pub fn apply_update(existing: &AppSpec, update: &serde_json::Value) -> Result<AppDefinition, ValidationErrors> {
    let serde_json::Value::Object(changes) = update else {
        return Err(ValidationErrors::single("/", "the update must be a JSON object"));
    };
    let mut merged = match serde_json::to_value(existing) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(ValidationErrors::single("/", "the stored app cannot be serialized")),
    };
    for (key, value) in changes {
        merged.insert(key.clone(), value.clone());
    }
    // Leaving host networking drops the stored host ports unless the update brings its own.
    let leaves_host = changes.get("networks").and_then(|n| n.as_array()).is_some_and(|n| {
        n.iter()
            .any(|net| net.get("mode").and_then(|m| m.as_str()) != Some("host"))
    });
    if leaves_host && !changes.contains_key("portDefinitions") && !changes.contains_key("ports") {
        merged.remove("portDefinitions");
    }
    merged.insert("id".into(), serde_json::Value::String(existing.id.to_string()));
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| ValidationErrors::single("/", format!("invalid JSON: {e}")))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(rename = "type")]
    pub kind: ContainerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerType {
    Docker,
    Mesos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    pub image: String,
    pub force_pull_image: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// 0 means "the same as the host port".
    pub container_port: u16,
    /// `Some(0)` is a dynamic host port, `None` none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub service_port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "tcp")]
    Tcp,
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "tcp,udp", alias = "udp,tcp")]
    TcpUdp,
}

/// An environment variable's value: text, or a secret by its name in the app's `secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Text(String),
    Secret { secret: String },
}

/// Where one of an app's secrets comes from: a path in tepui's secret store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSource {
    pub source: String,
}

/// A host path mounted into the container, or a file-based secret (`secret` set, no host path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_path: String,
    pub mode: VolumeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    #[serde(rename = "RO")]
    ReadOnly,
    #[serde(rename = "RW")]
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The networks tepui can run: the agent's (`host`) or a bridge with NAT (`container/bridge`).
/// Marathon's named `container` networks are refused by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "container/bridge")]
    Bridge,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDefinition {
    /// 0 is a dynamic port; with `requirePorts` a non-zero port is the host port itself.
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub protocol: HealthCheckProtocol,
    /// Set (default `/`) for the HTTP protocols only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index into the app's ports; set unless `port` is, or the protocol is `COMMAND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandCheck>,
    pub grace_period_seconds: u64,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    /// 0 never kills.
    pub max_consecutive_failures: u32,
    pub delay_seconds: u64,
    pub ignore_http1xx: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCheck {
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckProtocol {
    Http,
    Https,
    Tcp,
    Command,
    MesosHttp,
    MesosHttps,
    MesosTcp,
}

impl HealthCheckProtocol {
    pub fn is_http(self) -> bool {
        matches!(
            self,
            HealthCheckProtocol::Http
                | HealthCheckProtocol::Https
                | HealthCheckProtocol::MesosHttp
                | HealthCheckProtocol::MesosHttps
        )
    }

    pub fn is_command(self) -> bool {
        self == HealthCheckProtocol::Command
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        UpgradeStrategy {
            minimum_health_capacity: defaults::MINIMUM_HEALTH_CAPACITY,
            maximum_over_capacity: defaults::MAXIMUM_OVER_CAPACITY,
        }
    }
}

/// Which instances go first when some must be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    #[default]
    #[serde(alias = "YoungestFirst")]
    YoungestFirst,
    #[serde(alias = "OldestFirst")]
    OldestFirst,
}

/// What happens to an instance whose agent is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableStrategy {
    /// The instance is treated as lost at once: expunged and replaced.
    Disabled,
    /// Replaced after `inactive_after_seconds`, forgotten (and killed if it comes back) after
    /// `expunge_after_seconds`.
    Enabled {
        inactive_after_seconds: u64,
        expunge_after_seconds: u64,
    },
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        UnreachableStrategy::Enabled {
            inactive_after_seconds: defaults::UNREACHABLE_INACTIVE_AFTER_SECONDS,
            expunge_after_seconds: defaults::UNREACHABLE_EXPUNGE_AFTER_SECONDS,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum UnreachableJson {
    Named(String),
    #[serde(rename_all = "camelCase")]
    Enabled {
        inactive_after_seconds: u64,
        expunge_after_seconds: u64,
    },
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            UnreachableStrategy::Disabled => UnreachableJson::Named("disabled".into()),
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableJson::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match UnreachableJson::deserialize(deserializer)? {
            UnreachableJson::Named(s) if s == "disabled" => Ok(UnreachableStrategy::Disabled),
            UnreachableJson::Named(s) => Err(serde::de::Error::custom(format!("unknown unreachable strategy {s:?}"))),
            UnreachableJson::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => Ok(UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate_app;

    fn spec(json: &str) -> AppSpec {
        let def = AppDefinition::from_json(json).unwrap();
        validate_app(&def, &PathId::root(), 1_000).unwrap()
    }

    #[test]
    fn unknown_and_output_only_fields_are_ignored() {
        let def = AppDefinition::from_json(
            r#"{"id":"/a","cmd":"x","deployments":[{"id":"d"}],"tasks":[],"tasksRunning":3,"executor":"","fetch":[]}"#,
        )
        .unwrap();
        assert_eq!(def.cmd.as_deref(), Some("x"));
    }

    #[test]
    fn malformed_json_is_a_422_at_the_root() {
        let e = AppDefinition::from_json(r#"{"cpus":"lots"}"#).unwrap_err();
        assert_eq!(e.details[0].path, "/");
        assert!(e.details[0].errors[0].starts_with("invalid JSON"));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = spec(
            r#"{"id":"/prod/web","cmd":"serve","instances":3,"constraints":[["hostname","UNIQUE"]],
                "healthChecks":[{"protocol":"HTTP"}],"unreachableStrategy":"disabled",
                "container":{"type":"DOCKER","docker":{"image":"nginx"}},"networks":[{"mode":"container/bridge"}]}"#,
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["unreachableStrategy"], "disabled");
        assert_eq!(json["constraints"][0][1], "UNIQUE");
        assert_eq!(json["container"]["type"], "DOCKER");
        assert_eq!(json["networks"][0]["mode"], "container/bridge");
        assert_eq!(json["killSelection"], "YOUNGEST_FIRST");
        assert_eq!(json["versionInfo"]["lastConfigChangeAt"], "1970-01-01T00:00:01.000Z");
        let back: AppSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn scaling_keeps_the_config_version() {
        let v1 = spec(r#"{"id":"/a","cmd":"x"}"#);
        let mut scaled = v1.clone();
        scaled.instances = 5;
        scaled.stamp(Some(&v1), 2_000);
        assert_eq!(scaled.version, "1970-01-01T00:00:02.000Z");
        assert_eq!(scaled.config_version(), v1.config_version());
        let mut changed = scaled.clone();
        changed.cmd = Some("y".into());
        changed.stamp(Some(&scaled), 3_000);
        assert_eq!(changed.config_version(), "1970-01-01T00:00:03.000Z");
        assert!(changed.is_config_change(&scaled));
        let restarted = changed.restarted(4_000);
        assert!(!restarted.is_config_change(&changed));
        assert_eq!(restarted.config_version(), "1970-01-01T00:00:04.000Z");
    }

    #[test]
    fn update_merges_onto_the_stored_app() {
        let stored = spec(r#"{"id":"/a","cmd":"x","instances":2,"labels":{"k":"v"}}"#);
        let update = serde_json::json!({"id": "/elsewhere", "instances": 4, "cpus": 0.5});
        let def = apply_update(&stored, &update).unwrap();
        let merged = validate_app(&def, &PathId::root(), 2_000).unwrap();
        assert_eq!(merged.id, stored.id);
        assert_eq!(merged.instances, 4);
        assert_eq!(merged.cpus, 0.5);
        assert_eq!(merged.cmd.as_deref(), Some("x"));
        assert_eq!(merged.labels["k"], "v");
        assert!(apply_update(&stored, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn update_to_bridge_networking_drops_host_ports() {
        let stored = spec(r#"{"id":"/a","cmd":"x"}"#);
        assert_eq!(stored.port_definitions.len(), 1);
        let update = serde_json::json!({"networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "nginx"}}});
        let merged = validate_app(&apply_update(&stored, &update).unwrap(), &PathId::root(), 2_000).unwrap();
        assert!(merged.port_definitions.is_empty());
        assert_eq!(merged.port_mappings().len(), 1);
    }

    #[test]
    fn kill_selection_accepts_both_spellings() {
        assert_eq!(
            spec(r#"{"id":"/a","cmd":"x","killSelection":"OLDEST_FIRST"}"#).kill_selection,
            KillSelection::OldestFirst
        );
        assert_eq!(
            spec(r#"{"id":"/a","cmd":"x","killSelection":"OldestFirst"}"#).kill_selection,
            KillSelection::OldestFirst
        );
    }
}
