//! Validation and normalization of app definitions, answering with Marathon's 422 body:
//! `{"message": "Object is not valid", "details": [{"path": "/cpus", "errors": ["..."]}]}`.
//!
//! Paths are Marathon's: a JSON-pointer-like path with array indexes in parentheses
//! (`/healthChecks(0)/portIndex`, `/constraints(1)`), `/` for rules about the whole object.
//! Where Marathon's wording is known it is used verbatim (the id pattern, the cmd/args/container
//! rule, health check port indices, unique port names, constraint shapes, `got X, expected Y or
//! more`); other messages are tepui's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::app::{
    defaults, AppDefinition, AppSpec, CommandCheck, Container, ContainerInput, ContainerType, Docker, EnvValue,
    HealthCheck, HealthCheckInput, HealthCheckProtocol, KillSelection, Network, NetworkMode, PortDefinition,
    PortDefinitionInput, PortMapping, PortMappingInput, Protocol, SecretSource, UnreachableStrategy,
    UnreachableStrategyInput, UpgradeStrategy, VersionInfo, Volume, VolumeMode,
};
use crate::constraints::Constraint;
use crate::path::PathId;
use crate::time::format_timestamp;

/// The top-level message of every 422 body.
pub const OBJECT_NOT_VALID: &str = "Object is not valid";
/// Marathon's message for an id or dependency that is not a valid path.
pub const ID_PATTERN: &str = r"must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$'";
/// Marathon's message when neither or both of cmd and args are given (and no container image).
pub const CMD_ARGS_OR_CONTAINER: &str =
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.";
/// Marathon's message for a health check port index out of range.
pub const HEALTH_CHECK_PORT_INDEX: &str =
    "Health check port indices must address an element of the ports array or container port mappings.";
/// Marathon's message for duplicate port names.
pub const PORT_NAMES_UNIQUE: &str = "Port names must be unique.";
/// Ids may not end with these: they name sub-resources of `/v2/apps/{id}`.
pub const RESERVED_NAMES: [&str; 3] = ["restart", "tasks", "versions"];

/// A 422 body. Errors for the same path are grouped, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors {
    pub message: String,
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub path: String,
    pub errors: Vec<String>,
}

impl Default for ValidationErrors {
    fn default() -> Self {
        ValidationErrors::new()
    }
}

impl ValidationErrors {
    pub fn new() -> ValidationErrors {
        ValidationErrors {
            message: OBJECT_NOT_VALID.to_string(),
            details: Vec::new(),
        }
    }

    pub fn single(path: &str, error: impl Into<String>) -> ValidationErrors {
        let mut e = ValidationErrors::new();
        e.add(path, error);
        e
    }

    pub fn add(&mut self, path: &str, error: impl Into<String>) {
        let error = error.into();
        match self.details.iter_mut().find(|d| d.path == path) {
            Some(detail) => {
                if !detail.errors.contains(&error) {
                    detail.errors.push(error);
                }
            }
            None => self.details.push(ErrorDetail {
                path: path.to_string(),
                errors: vec![error],
            }),
        }
    }

    /// Adds `other`'s errors with their paths below `prefix` (`/apps(0)` + `/cpus`).
    pub fn extend_prefixed(&mut self, prefix: &str, other: ValidationErrors) {
        for detail in other.details {
            let path = if detail.path == "/" {
                prefix.to_string()
            } else {
                format!("{prefix}{}", detail.path)
            };
            for error in detail.errors {
                self.add(&path, error);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.details.is_empty()
    }

    /// `Ok(value)` when nothing was found.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Whether `path` has `error` (for tests and callers that map errors).
    pub fn has(&self, path: &str, error: &str) -> bool {
        self.details
            .iter()
            .any(|d| d.path == path && d.errors.iter().any(|e| e == error))
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object is not valid")?;
        for (i, d) in self.details.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{}: {}", d.path, d.errors.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Validates `def` and fills in Marathon's defaults. A relative id is resolved against the
/// group `base`; dependencies are resolved against the app's own group. `now` (milliseconds)
/// becomes the version; see [`AppSpec::stamp`] to keep the configuration version of a scale.
pub fn validate_app(def: &AppDefinition, base: &PathId, now: u64) -> Result<AppSpec, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let id = app_id(def.id.as_deref(), base, &mut e);

    let cmd = match def.cmd.as_deref() {
        Some("") => {
            e.add("/cmd", "must not be empty");
            None
        }
        other => other.map(str::to_string),
    };
    let args = def.args.clone().unwrap_or_default();

    let mode = network_mode(def, &mut e);
    let container = container(def.container.as_ref(), mode, &mut e);
    let has_image = container.as_ref().is_some_and(|c| c.docker.is_some());
    let has_cmd = cmd.is_some();
    let has_args = !args.is_empty();
    // Exactly one of cmd and args, or neither with a container image.
    let runnable = if has_cmd || has_args {
        has_cmd != has_args
    } else {
        has_image
    };
    if !runnable {
        e.add("/", CMD_ARGS_OR_CONTAINER);
    }

    let port_definitions = port_definitions(def, mode, &mut e);
    let port_count = match mode {
        NetworkMode::Host => port_definitions.len(),
        NetworkMode::Bridge => container.as_ref().map_or(0, |c| c.port_mappings.len()),
    };

    let instances = int_at_least(&mut e, "/instances", def.instances, i64::from(defaults::INSTANCES), 0);
    let cpus = float_at_least(&mut e, "/cpus", def.cpus, defaults::CPUS, 0.001);
    let mem = float_at_least(&mut e, "/mem", def.mem, defaults::MEM, 0.0);
    let disk = float_at_least(&mut e, "/disk", def.disk, defaults::DISK, 0.0);
    let gpus = int_at_least(&mut e, "/gpus", def.gpus, i64::from(defaults::GPUS), 0);

    let upgrade = def.upgrade_strategy.clone().unwrap_or_default();
    let upgrade_strategy = UpgradeStrategy {
        minimum_health_capacity: fraction(
            &mut e,
            "/upgradeStrategy/minimumHealthCapacity",
            upgrade.minimum_health_capacity,
            defaults::MINIMUM_HEALTH_CAPACITY,
        ),
        maximum_over_capacity: fraction(
            &mut e,
            "/upgradeStrategy/maximumOverCapacity",
            upgrade.maximum_over_capacity,
            defaults::MAXIMUM_OVER_CAPACITY,
        ),
    };

    let backoff_seconds = float_at_least(
        &mut e,
        "/backoffSeconds",
        def.backoff_seconds,
        defaults::BACKOFF_SECONDS,
        0.0,
    );
    let backoff_factor = float_at_least(
        &mut e,
        "/backoffFactor",
        def.backoff_factor,
        defaults::BACKOFF_FACTOR,
        1.0,
    );
    let max_launch_delay_seconds = float_at_least(
        &mut e,
        "/maxLaunchDelaySeconds",
        def.max_launch_delay_seconds,
        defaults::MAX_LAUNCH_DELAY_SECONDS,
        0.0,
    );
    let kill_selection = match def.kill_selection.as_deref() {
        None => KillSelection::default(),
        Some(s) => parse_enum(s).unwrap_or_else(|| {
            e.add("/killSelection", "must be one of YOUNGEST_FIRST or OLDEST_FIRST");
            KillSelection::default()
        }),
    };
    let task_kill_grace_period_seconds = def
        .task_kill_grace_period_seconds
        .map(|v| int_at_least(&mut e, "/taskKillGracePeriodSeconds", Some(v), 0, 0) as u64);

    let spec = AppSpec {
        cmd,
        args,
        user: def.user.clone().filter(|u| !u.is_empty()),
        env: env(def, &mut e),
        secrets: secrets(def, &mut e),
        instances: u32::try_from(instances).unwrap_or(u32::MAX),
        cpus,
        mem,
        disk,
        gpus: u32::try_from(gpus).unwrap_or(u32::MAX),
        container,
        networks: vec![Network {
            mode,
            labels: network_labels(def),
        }],
        port_definitions,
        require_ports: def.require_ports.unwrap_or(false),
        labels: def.labels.clone().unwrap_or_default(),
        constraints: constraints(def, &mut e),
        accepted_resource_roles: accepted_roles(def, &mut e),
        health_checks: health_checks(def.health_checks.as_deref().unwrap_or(&[]), port_count, &mut e),
        upgrade_strategy,
        backoff_seconds,
        backoff_factor,
        max_launch_delay_seconds,
        kill_selection,
        task_kill_grace_period_seconds,
        unreachable_strategy: unreachable_strategy(def.unreachable_strategy.as_ref(), &mut e),
        dependencies: dependencies(def, &id, &mut e),
        version: format_timestamp(now),
        version_info: VersionInfo {
            last_scaling_at: format_timestamp(now),
            last_config_change_at: format_timestamp(now),
        },
        id,
    };
    secret_references(&spec, &mut e);
    e.into_result(spec)
}

pub(crate) fn app_id(raw: Option<&str>, base: &PathId, e: &mut ValidationErrors) -> PathId {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        e.add("/id", "must not be empty");
        return PathId::root();
    };
    match PathId::resolve(base, raw) {
        Ok(id) if id.is_root() => {
            e.add("/id", "must not be the root group");
            id
        }
        Ok(id) => {
            if id.name().is_some_and(|n| RESERVED_NAMES.contains(&n)) {
                e.add(
                    "/id",
                    format!(
                        "must not end with any of the following reserved keywords: {}",
                        RESERVED_NAMES.join(", ")
                    ),
                );
            }
            id
        }
        Err(_) => {
            e.add("/id", ID_PATTERN);
            PathId::root()
        }
    }
}

/// The one network of the app: `networks`, else the deprecated `container.docker.network`,
/// else host.
fn network_mode(def: &AppDefinition, e: &mut ValidationErrors) -> NetworkMode {
    let legacy = def
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .and_then(|d| d.network.as_deref());
    match def.networks.as_deref().filter(|n| !n.is_empty()) {
        Some(networks) => {
            if legacy.is_some() {
                e.add("/container/docker/network", "must not be set together with networks");
            }
            if networks.len() > 1 {
                e.add(
                    "/networks",
                    "host and container/bridge networking cannot be combined with other networks",
                );
            }
            let mut mode = None;
            for (i, net) in networks.iter().enumerate() {
                let parsed = match net.mode.as_deref().unwrap_or("container") {
                    "host" => Some(NetworkMode::Host),
                    "container/bridge" => Some(NetworkMode::Bridge),
                    "container" => {
                        e.add(
                            &format!("/networks({i})/mode"),
                            "named container networks are not supported; use host or container/bridge",
                        );
                        None
                    }
                    _ => {
                        e.add(
                            &format!("/networks({i})/mode"),
                            "must be one of host, container/bridge or container",
                        );
                        None
                    }
                };
                if parsed.is_some() && net.name.is_some() {
                    e.add(
                        &format!("/networks({i})/name"),
                        "must not be set for host or container/bridge networking",
                    );
                }
                mode = mode.or(parsed);
            }
            mode.unwrap_or(NetworkMode::Host)
        }
        None => match legacy {
            None | Some("HOST") => NetworkMode::Host,
            Some("BRIDGE") => NetworkMode::Bridge,
            Some("USER") | Some("NONE") => {
                e.add(
                    "/container/docker/network",
                    "only HOST and BRIDGE networking are supported",
                );
                NetworkMode::Host
            }
            Some(_) => {
                e.add("/container/docker/network", "must be one of BRIDGE, HOST, NONE or USER");
                NetworkMode::Host
            }
        },
    }
}

fn network_labels(def: &AppDefinition) -> BTreeMap<String, String> {
    def.networks
        .as_ref()
        .and_then(|n| n.first())
        .and_then(|n| n.labels.clone())
        .unwrap_or_default()
}

fn container(input: Option<&ContainerInput>, mode: NetworkMode, e: &mut ValidationErrors) -> Option<Container> {
    let Some(c) = input else {
        // Bridge networking needs a container; a MESOS one without an image runs the command.
        return (mode == NetworkMode::Bridge).then(|| Container {
            kind: ContainerType::Mesos,
            docker: None,
            port_mappings: port_mappings(None, mode, e),
            volumes: Vec::new(),
        });
    };
    let kind = match c.kind.as_deref() {
        None | Some("DOCKER") => ContainerType::Docker,
        Some("MESOS") => ContainerType::Mesos,
        Some(_) => {
            e.add("/container/type", "must be one of DOCKER or MESOS");
            ContainerType::Docker
        }
    };
    if c.appc.as_ref().is_some_and(|a| !a.is_null()) {
        e.add("/container/appc", "AppC images are not supported");
    }
    let docker = match &c.docker {
        Some(d) => {
            let image = d.image.clone().unwrap_or_default();
            if image.is_empty() {
                e.add("/container/docker/image", "must not be empty");
            }
            Some(Docker {
                image,
                force_pull_image: d.force_pull_image.unwrap_or(false),
            })
        }
        None => {
            if kind == ContainerType::Docker {
                e.add("/container/docker", "must be set for a DOCKER container");
            }
            None
        }
    };
    let mut volumes = Vec::new();
    for (i, v) in c.volumes.iter().flatten().enumerate() {
        let path = format!("/container/volumes({i})");
        if v.persistent.is_some() || v.external.is_some() {
            e.add(&path, "only host volumes (hostPath) and secrets are supported");
            continue;
        }
        if let Some(secret) = &v.secret {
            let Some(name) = secret.as_str().filter(|n| !n.is_empty()) else {
                e.add(
                    &format!("{path}/secret"),
                    "must be the name of one of the app's secrets",
                );
                continue;
            };
            let container_path = v.container_path.clone().unwrap_or_default();
            if let Some(m) = tepui_common::secret_file_error(&container_path) {
                e.add(&format!("{path}/containerPath"), m);
            }
            if v.host_path.as_deref().is_some_and(|h| !h.is_empty()) {
                e.add(&format!("{path}/hostPath"), "a secret volume has no hostPath");
            }
            volumes.push(Volume {
                container_path,
                host_path: String::new(),
                mode: VolumeMode::ReadOnly,
                secret: Some(name.to_string()),
            });
            continue;
        }
        let container_path = v.container_path.clone().unwrap_or_default();
        if container_path.is_empty() {
            e.add(&format!("{path}/containerPath"), "must not be empty");
        }
        let host_path = v.host_path.clone().unwrap_or_default();
        if host_path.is_empty() {
            e.add(&format!("{path}/hostPath"), "must not be empty");
        }
        let mode = match v.mode.as_deref() {
            None | Some("RW") => VolumeMode::ReadWrite,
            Some("RO") => VolumeMode::ReadOnly,
            Some(_) => {
                e.add(&format!("{path}/mode"), "must be one of RO or RW");
                VolumeMode::ReadWrite
            }
        };
        volumes.push(Volume {
            container_path,
            host_path,
            mode,
            secret: None,
        });
    }
    Some(Container {
        kind,
        docker,
        port_mappings: port_mappings(Some(c), mode, e),
        volumes,
    })
}

fn port_mappings(c: Option<&ContainerInput>, mode: NetworkMode, e: &mut ValidationErrors) -> Vec<PortMapping> {
    let current = c.and_then(|c| c.port_mappings.as_ref());
    let legacy = c.and_then(|c| c.docker.as_ref()).and_then(|d| d.port_mappings.as_ref());
    let (list, path): (Option<&Vec<PortMappingInput>>, &str) = match (current, legacy) {
        (Some(cur), Some(old)) if !cur.is_empty() && !old.is_empty() => {
            e.add(
                "/container/docker/portMappings",
                "must not be set together with container.portMappings",
            );
            (Some(cur), "/container/portMappings")
        }
        (Some(cur), Some(old)) if cur.is_empty() && !old.is_empty() => (Some(old), "/container/docker/portMappings"),
        (Some(cur), _) => (Some(cur), "/container/portMappings"),
        (None, Some(old)) => (Some(old), "/container/docker/portMappings"),
        (None, None) => (None, "/container/portMappings"),
    };
    if mode == NetworkMode::Host {
        if list.is_some_and(|l| !l.is_empty()) {
            e.add(
                path,
                "port mappings require container/bridge networking; use portDefinitions",
            );
        }
        return Vec::new();
    }
    let default = [PortMappingInput {
        name: Some(defaults::PORT_NAME.into()),
        ..Default::default()
    }];
    let inputs: &[PortMappingInput] = list.map(Vec::as_slice).unwrap_or(&default);
    let mut mappings = Vec::new();
    for (i, m) in inputs.iter().enumerate() {
        let at = format!("{path}({i})");
        mappings.push(PortMapping {
            container_port: port(e, &format!("{at}/containerPort"), m.container_port.unwrap_or(0)),
            // In bridge mode an absent host port is a dynamic one, as in Marathon.
            host_port: Some(port(e, &format!("{at}/hostPort"), m.host_port.unwrap_or(0))),
            service_port: port(e, &format!("{at}/servicePort"), m.service_port.unwrap_or(0)),
            protocol: protocol(e, &format!("{at}/protocol"), m.protocol.as_deref()),
            name: port_name(e, &format!("{at}/name"), m.name.as_deref()),
            labels: m.labels.clone().unwrap_or_default(),
        });
    }
    if has_duplicates(mappings.iter().filter_map(|m| m.name.as_deref())) {
        e.add(path, PORT_NAMES_UNIQUE);
    }
    mappings
}

fn port_definitions(def: &AppDefinition, mode: NetworkMode, e: &mut ValidationErrors) -> Vec<PortDefinition> {
    let given = def.port_definitions.as_ref();
    let legacy = def.ports.as_ref();
    if mode == NetworkMode::Bridge {
        if given.is_some_and(|g| !g.is_empty()) {
            e.add(
                "/portDefinitions",
                "port definitions require host networking; use container.portMappings",
            );
        }
        if legacy.is_some_and(|l| !l.is_empty()) {
            e.add("/ports", "ports require host networking; use container.portMappings");
        }
        return Vec::new();
    }
    if given.is_some() && legacy.is_some_and(|l| !l.is_empty()) {
        e.add("/ports", "must not be set together with portDefinitions");
    }
    let (inputs, path): (Vec<PortDefinitionInput>, &str) = match (given, legacy) {
        (Some(g), _) => (g.clone(), "/portDefinitions"),
        (None, Some(ports)) => (
            ports
                .iter()
                .map(|p| PortDefinitionInput {
                    port: Some(*p),
                    ..Default::default()
                })
                .collect(),
            "/ports",
        ),
        (None, None) => (
            vec![PortDefinitionInput {
                port: Some(0),
                name: Some(defaults::PORT_NAME.into()),
                ..Default::default()
            }],
            "/portDefinitions",
        ),
    };
    let mut defs = Vec::new();
    for (i, p) in inputs.iter().enumerate() {
        let at = format!("{path}({i})");
        let port_at = if path == "/ports" {
            at.clone()
        } else {
            format!("{at}/port")
        };
        defs.push(PortDefinition {
            port: port(e, &port_at, p.port.unwrap_or(0)),
            protocol: protocol(e, &format!("{at}/protocol"), p.protocol.as_deref()),
            name: port_name(e, &format!("{at}/name"), p.name.as_deref()),
            labels: p.labels.clone().unwrap_or_default(),
        });
    }
    if has_duplicates(defs.iter().filter_map(|d| d.name.as_deref())) {
        e.add(path, PORT_NAMES_UNIQUE);
    }
    if has_duplicates(defs.iter().map(|d| d.port).filter(|p| *p != 0)) {
        e.add(path, "Ports must be unique.");
    }
    defs
}

fn port(e: &mut ValidationErrors, path: &str, value: i64) -> u16 {
    u16::try_from(value).unwrap_or_else(|_| {
        e.add(path, format!("got {value}, expected between 0 and 65535"));
        0
    })
}

fn protocol(e: &mut ValidationErrors, path: &str, value: Option<&str>) -> Protocol {
    match value {
        None => Protocol::Tcp,
        Some(s) => parse_enum(s).unwrap_or_else(|| {
            e.add(path, "must be one of tcp, udp or tcp,udp");
            Protocol::Tcp
        }),
    }
}

fn port_name(e: &mut ValidationErrors, path: &str, value: Option<&str>) -> Option<String> {
    match value {
        Some("") => {
            e.add(path, "must not be empty");
            None
        }
        other => other.map(str::to_string),
    }
}

pub(crate) fn has_duplicates<T: Ord>(items: impl Iterator<Item = T>) -> bool {
    let mut seen = BTreeSet::new();
    items.into_iter().any(|i| !seen.insert(i))
}

fn health_checks(list: &[HealthCheckInput], port_count: usize, e: &mut ValidationErrors) -> Vec<HealthCheck> {
    let mut checks = Vec::new();
    for (i, hc) in list.iter().enumerate() {
        let at = format!("/healthChecks({i})");
        let protocol = match hc.protocol.as_deref() {
            None => HealthCheckProtocol::Http,
            Some(s) => parse_enum(s).unwrap_or_else(|| {
                e.add(
                    &format!("{at}/protocol"),
                    "must be one of HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS or MESOS_TCP",
                );
                HealthCheckProtocol::Http
            }),
        };
        let command = if protocol.is_command() {
            match hc
                .command
                .as_ref()
                .and_then(|c| c.value.clone())
                .filter(|v| !v.is_empty())
            {
                Some(value) => Some(CommandCheck { value }),
                None => {
                    e.add(&format!("{at}/command"), "must be set for the COMMAND protocol");
                    None
                }
            }
        } else {
            if hc.command.is_some() {
                e.add(&format!("{at}/command"), "is only allowed with the COMMAND protocol");
            }
            None
        };
        let (port_index, port_number) = if protocol.is_command() {
            (None, None)
        } else {
            match (hc.port_index, hc.port) {
                (Some(_), Some(_)) => {
                    e.add(&at, "must not contain both 'port' and 'portIndex'");
                    (None, None)
                }
                (None, Some(p)) => (None, Some(port(e, &format!("{at}/port"), p))),
                (Some(idx), None) => {
                    if idx < 0 || idx as u64 >= port_count as u64 {
                        e.add(&at, HEALTH_CHECK_PORT_INDEX);
                    }
                    (u32::try_from(idx).ok(), None)
                }
                (None, None) => {
                    if port_count == 0 {
                        e.add(&at, HEALTH_CHECK_PORT_INDEX);
                        (None, None)
                    } else {
                        (Some(0), None)
                    }
                }
            }
        };
        let path = protocol.is_http().then(|| {
            hc.path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| defaults::HEALTH_PATH.into())
        });
        // The agent writes the path into a request line: nothing may end that line early.
        if let Some(why) = path.as_deref().and_then(tepui_common::health_path_error) {
            e.add(&format!("{at}/path"), why);
        }
        let seconds = |e: &mut ValidationErrors, field: &str, v: Option<i64>, default: u64, min: i64| -> u64 {
            int_at_least(e, &format!("{at}/{field}"), v, default as i64, min) as u64
        };
        checks.push(HealthCheck {
            protocol,
            path,
            port_index,
            port: port_number,
            command,
            grace_period_seconds: seconds(
                e,
                "gracePeriodSeconds",
                hc.grace_period_seconds,
                defaults::HEALTH_GRACE_PERIOD_SECONDS,
                0,
            ),
            // tepui refuses 0 for the interval and the timeout: a check needs time to run.
            interval_seconds: seconds(
                e,
                "intervalSeconds",
                hc.interval_seconds,
                defaults::HEALTH_INTERVAL_SECONDS,
                1,
            ),
            timeout_seconds: seconds(
                e,
                "timeoutSeconds",
                hc.timeout_seconds,
                defaults::HEALTH_TIMEOUT_SECONDS,
                1,
            ),
            max_consecutive_failures: u32::try_from(seconds(
                e,
                "maxConsecutiveFailures",
                hc.max_consecutive_failures,
                u64::from(defaults::HEALTH_MAX_CONSECUTIVE_FAILURES),
                0,
            ))
            .unwrap_or(u32::MAX),
            delay_seconds: seconds(e, "delaySeconds", hc.delay_seconds, defaults::HEALTH_DELAY_SECONDS, 0),
            ignore_http1xx: hc.ignore_http1xx.unwrap_or(false),
        });
    }
    checks
}

fn constraints(def: &AppDefinition, e: &mut ValidationErrors) -> Vec<Constraint> {
    let mut out: Vec<Constraint> = Vec::new();
    for (i, parts) in def.constraints.iter().flatten().enumerate() {
        match Constraint::parse(parts) {
            // Marathon keeps constraints in a set: a repeated one counts once.
            Ok(c) if out.contains(&c) => {}
            Ok(c) => out.push(c),
            Err(msg) => e.add(&format!("/constraints({i})"), msg),
        }
    }
    out
}

fn accepted_roles(def: &AppDefinition, e: &mut ValidationErrors) -> Option<Vec<String>> {
    let roles = def.accepted_resource_roles.as_ref()?;
    let mut out: Vec<String> = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        if role.is_empty() {
            e.add(&format!("/acceptedResourceRoles({i})"), "must not be empty");
        } else if !out.contains(role) {
            out.push(role.clone());
        }
    }
    // An empty list accepts every role, like an absent one.
    (!out.is_empty()).then_some(out)
}

fn unreachable_strategy(input: Option<&UnreachableStrategyInput>, e: &mut ValidationErrors) -> UnreachableStrategy {
    unreachable_strategy_at("/unreachableStrategy", input, e)
}

/// `unreachableStrategy` at `at` (an app's `/unreachableStrategy`, a pod's under `/scheduling`).
pub(crate) fn unreachable_strategy_at(
    at: &str,
    input: Option<&UnreachableStrategyInput>,
    e: &mut ValidationErrors,
) -> UnreachableStrategy {
    match input {
        None => UnreachableStrategy::default(),
        Some(UnreachableStrategyInput::Named(s)) if s == "disabled" => UnreachableStrategy::Disabled,
        Some(UnreachableStrategyInput::Named(_)) => {
            e.add(
                at,
                "must be \"disabled\" or an object with inactiveAfterSeconds and expungeAfterSeconds",
            );
            UnreachableStrategy::default()
        }
        Some(UnreachableStrategyInput::Enabled(x)) => {
            let inactive = int_at_least(
                e,
                &format!("{at}/inactiveAfterSeconds"),
                x.inactive_after_seconds,
                defaults::UNREACHABLE_INACTIVE_AFTER_SECONDS as i64,
                0,
            ) as u64;
            let expunge = int_at_least(
                e,
                &format!("{at}/expungeAfterSeconds"),
                x.expunge_after_seconds,
                defaults::UNREACHABLE_EXPUNGE_AFTER_SECONDS as i64,
                0,
            ) as u64;
            if expunge < inactive {
                e.add(
                    &format!("{at}/expungeAfterSeconds"),
                    "must be greater than or equal to inactiveAfterSeconds",
                );
            }
            UnreachableStrategy::Enabled {
                inactive_after_seconds: inactive,
                expunge_after_seconds: expunge,
            }
        }
    }
}

fn dependencies(def: &AppDefinition, id: &PathId, e: &mut ValidationErrors) -> Vec<PathId> {
    let mut out: Vec<PathId> = Vec::new();
    for (i, raw) in def.dependencies.iter().flatten().enumerate() {
        let at = format!("/dependencies({i})");
        match PathId::resolve(&id.parent(), raw) {
            Ok(dep) if dep.is_root() => e.add(&at, "must not be the root group"),
            Ok(dep) if dep == *id => e.add(&at, "an app must not depend on itself"),
            Ok(dep) if out.contains(&dep) => {}
            Ok(dep) => out.push(dep),
            Err(_) => e.add(&at, ID_PATTERN),
        }
    }
    out
}

fn env(def: &AppDefinition, e: &mut ValidationErrors) -> BTreeMap<String, EnvValue> {
    let mut out = BTreeMap::new();
    for (key, value) in def.env.iter().flatten() {
        let at = format!("/env/{key}");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            e.add(&at, "must be a valid environment variable name");
            continue;
        }
        match value {
            serde_json::Value::String(s) => {
                out.insert(key.clone(), EnvValue::Text(s.clone()));
            }
            serde_json::Value::Object(o) if o.len() == 1 && o.get("secret").is_some_and(|s| s.is_string()) => {
                let name = o["secret"].as_str().unwrap_or_default().to_string();
                out.insert(key.clone(), EnvValue::Secret { secret: name });
            }
            _ => e.add(&at, "must be a string or {\"secret\": NAME}"),
        }
    }
    out
}

/// `secrets`: `{NAME: {"source": PATH}}`, each path one of tepui's secret store.
fn secrets(def: &AppDefinition, e: &mut ValidationErrors) -> BTreeMap<String, SecretSource> {
    secrets_of(def.secrets.as_ref(), e)
}

/// A definition's `secrets` (an app's, a pod's).
pub(crate) fn secrets_of(raw: Option<&serde_json::Value>, e: &mut ValidationErrors) -> BTreeMap<String, SecretSource> {
    let mut out = BTreeMap::new();
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return out;
    };
    let Some(map) = raw.as_object() else {
        e.add("/secrets", "must be an object of {\"source\": PATH} by name");
        return out;
    };
    for (name, v) in map {
        let at = format!("/secrets/{name}");
        if name.is_empty() {
            e.add(&at, "a secret's name must not be empty");
            continue;
        }
        let Some(source) = v.as_object().and_then(|o| o.get("source")).and_then(|s| s.as_str()) else {
            e.add(
                &format!("{at}/source"),
                "must be the path of a secret (tepui secret put PATH)",
            );
            continue;
        };
        if let Err(m) = tepui_common::normalize_secret_path(source) {
            e.add(&format!("{at}/source"), m);
            continue;
        }
        out.insert(
            name.clone(),
            SecretSource {
                source: source.to_string(),
            },
        );
    }
    out
}

/// Every secret `env` and the volumes name is one of `secrets`.
fn secret_references(spec: &AppSpec, e: &mut ValidationErrors) {
    for (key, value) in &spec.env {
        if let EnvValue::Secret { secret } = value {
            if !spec.secrets.contains_key(secret) {
                e.add(
                    &format!("/env/{key}"),
                    format!("references an undefined secret named {secret:?}"),
                );
            }
        }
    }
    let volumes = spec.container.iter().flat_map(|c| c.volumes.iter()).enumerate();
    for (i, v) in volumes {
        if let Some(secret) = &v.secret {
            if !spec.secrets.contains_key(secret) {
                e.add(
                    &format!("/container/volumes({i})/secret"),
                    format!("references an undefined secret named {secret:?}"),
                );
            }
        }
    }
}

pub(crate) fn float_at_least(e: &mut ValidationErrors, path: &str, value: Option<f64>, default: f64, min: f64) -> f64 {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v < min {
        e.add(path, format!("got {v}, expected {min} or more"));
    }
    v
}

pub(crate) fn fraction(e: &mut ValidationErrors, path: &str, value: Option<f64>, default: f64) -> f64 {
    let v = value.unwrap_or(default);
    if !(0.0..=1.0).contains(&v) {
        e.add(path, format!("got {v}, expected between 0.0 and 1.0"));
        return default;
    }
    v
}

/// An integer at least `min` (and at most `u32::MAX`, so it fits every field it is used for).
pub(crate) fn int_at_least(e: &mut ValidationErrors, path: &str, value: Option<i64>, default: i64, min: i64) -> i64 {
    let v = value.unwrap_or(default);
    if v < min {
        e.add(path, format!("got {v}, expected {min} or more"));
        return min.max(0);
    }
    if v > i64::from(u32::MAX) {
        e.add(path, format!("got {v}, expected {} or less", u32::MAX));
        return i64::from(u32::MAX);
    }
    v
}

/// Parses a Marathon enum spelling through its serde names.
pub(crate) fn parse_enum<T: DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::Operator;

    fn parse(json: &str) -> Result<AppSpec, ValidationErrors> {
        validate_app(&AppDefinition::from_json(json).unwrap(), &PathId::root(), 0)
    }

    fn ok(json: &str) -> AppSpec {
        parse(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(json: &str) -> ValidationErrors {
        parse(json).expect_err("expected a validation error")
    }

    #[test]
    fn minimal_app_gets_marathons_defaults() {
        let s = ok(r#"{"id":"/web","cmd":"sleep 100"}"#);
        assert_eq!(s.id.to_string(), "/web");
        assert_eq!((s.cpus, s.mem, s.disk, s.gpus, s.instances), (1.0, 128.0, 0.0, 0, 1));
        assert_eq!(
            s.networks,
            vec![Network {
                mode: NetworkMode::Host,
                labels: BTreeMap::new()
            }]
        );
        assert_eq!(s.port_definitions.len(), 1);
        assert_eq!(s.port_definitions[0].port, 0);
        assert_eq!(s.port_definitions[0].protocol, Protocol::Tcp);
        assert_eq!(s.port_definitions[0].name.as_deref(), Some("default"));
        assert!(!s.require_ports);
        assert_eq!(
            s.upgrade_strategy,
            UpgradeStrategy {
                minimum_health_capacity: 1.0,
                maximum_over_capacity: 1.0
            }
        );
        assert_eq!(
            (s.backoff_seconds, s.backoff_factor, s.max_launch_delay_seconds),
            (1.0, 1.15, 300.0)
        );
        assert_eq!(s.kill_selection, KillSelection::YoungestFirst);
        assert_eq!(
            s.unreachable_strategy,
            UnreachableStrategy::Enabled {
                inactive_after_seconds: 300,
                expunge_after_seconds: 600
            }
        );
        assert_eq!(s.task_kill_grace_period_seconds, None);
        assert_eq!(s.accepted_resource_roles, None);
        assert_eq!(s.version, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn error_body_has_marathons_shape() {
        let e = errors(r#"{"id":"/web","cmd":"x","cpus":0,"mem":-1}"#);
        let body = serde_json::to_value(&e).unwrap();
        assert_eq!(body["message"], "Object is not valid");
        assert_eq!(body["details"][0]["path"], "/cpus");
        assert_eq!(body["details"][0]["errors"][0], "got 0, expected 0.001 or more");
        assert_eq!(body["details"][1]["path"], "/mem");
        assert_eq!(body["details"][1]["errors"][0], "got -1, expected 0 or more");
        assert!(e.to_string().starts_with("object is not valid: /cpus: got 0"));
    }

    #[test]
    fn ids_are_checked_and_resolved() {
        assert!(errors(r#"{"cmd":"x"}"#).has("/id", "must not be empty"));
        assert!(errors(r#"{"id":"/Web","cmd":"x"}"#).has("/id", ID_PATTERN));
        assert!(errors(r#"{"id":"a b","cmd":"x"}"#).has("/id", ID_PATTERN));
        assert!(errors(r#"{"id":"/","cmd":"x"}"#).has("/id", "must not be the root group"));
        let reserved = errors(r#"{"id":"/a/restart","cmd":"x"}"#);
        assert!(reserved.details[0].errors[0].contains("reserved keywords"));
        let def =
            AppDefinition::from_json(r#"{"id":"web","cmd":"x","dependencies":["db","../shared/cache"]}"#).unwrap();
        let s = validate_app(&def, &PathId::parse("/prod/frontend").unwrap(), 0).unwrap();
        assert_eq!(s.id.to_string(), "/prod/frontend/web");
        let deps: Vec<String> = s.dependencies.iter().map(ToString::to_string).collect();
        assert_eq!(deps, ["/prod/frontend/db", "/prod/shared/cache"]);
    }

    #[test]
    fn dependencies_must_be_valid_ids() {
        assert!(errors(r#"{"id":"/a/b","cmd":"x","dependencies":["/a/.../"]}"#).has("/dependencies(0)", ID_PATTERN));
        assert!(errors(r#"{"id":"/a/b","cmd":"x","dependencies":["b"]}"#)
            .has("/dependencies(0)", "an app must not depend on itself"));
        let dup = ok(r#"{"id":"/a/b","cmd":"x","dependencies":["c","/a/c"]}"#);
        assert_eq!(dup.dependencies.len(), 1);
    }

    #[test]
    fn cmd_args_and_container_rule() {
        assert!(errors(r#"{"id":"/a"}"#).has("/", CMD_ARGS_OR_CONTAINER));
        assert!(errors(r#"{"id":"/a","cmd":"x","args":["y"]}"#).has("/", CMD_ARGS_OR_CONTAINER));
        ok(r#"{"id":"/a","args":["sleep","1"]}"#);
        ok(r#"{"id":"/a","container":{"docker":{"image":"nginx"}}}"#);
        ok(r#"{"id":"/a","cmd":"x","container":{"docker":{"image":"nginx"}}}"#);
        assert!(errors(r#"{"id":"/a","container":{"type":"MESOS"}}"#).has("/", CMD_ARGS_OR_CONTAINER));
        assert!(errors(r#"{"id":"/a","cmd":""}"#).has("/cmd", "must not be empty"));
        // An empty args array counts as absent, as in Marathon.
        ok(r#"{"id":"/a","cmd":"x","args":[]}"#);
    }

    #[test]
    fn numeric_ranges() {
        assert!(errors(r#"{"id":"/a","cmd":"x","instances":-1}"#).has("/instances", "got -1, expected 0 or more"));
        ok(r#"{"id":"/a","cmd":"x","instances":0}"#);
        assert!(errors(r#"{"id":"/a","cmd":"x","gpus":-2}"#).has("/gpus", "got -2, expected 0 or more"));
        assert!(errors(r#"{"id":"/a","cmd":"x","disk":-0.5}"#).has("/disk", "got -0.5, expected 0 or more"));
        assert!(
            errors(r#"{"id":"/a","cmd":"x","backoffFactor":0.5}"#).has("/backoffFactor", "got 0.5, expected 1 or more")
        );
        assert!(
            errors(r#"{"id":"/a","cmd":"x","backoffSeconds":-1}"#).has("/backoffSeconds", "got -1, expected 0 or more")
        );
        assert!(errors(r#"{"id":"/a","cmd":"x","maxLaunchDelaySeconds":-1}"#)
            .has("/maxLaunchDelaySeconds", "got -1, expected 0 or more"));
        assert!(errors(r#"{"id":"/a","cmd":"x","taskKillGracePeriodSeconds":-1}"#)
            .has("/taskKillGracePeriodSeconds", "got -1, expected 0 or more"));
        assert!(errors(r#"{"id":"/a","cmd":"x","instances":5000000000}"#)
            .has("/instances", "got 5000000000, expected 4294967295 or less"));
        let s = ok(
            r#"{"id":"/a","cmd":"x","cpus":0.25,"mem":64,"disk":10,"gpus":1,"instances":3,"taskKillGracePeriodSeconds":30}"#,
        );
        assert_eq!((s.cpus, s.mem, s.disk, s.gpus, s.instances), (0.25, 64.0, 10.0, 1, 3));
        assert_eq!(s.task_kill_grace_period_seconds, Some(30));
    }

    #[test]
    fn upgrade_strategy_is_within_zero_and_one() {
        let e = errors(
            r#"{"id":"/a","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":1.5,"maximumOverCapacity":-0.1}}"#,
        );
        assert!(e.has(
            "/upgradeStrategy/minimumHealthCapacity",
            "got 1.5, expected between 0.0 and 1.0"
        ));
        assert!(e.has(
            "/upgradeStrategy/maximumOverCapacity",
            "got -0.1, expected between 0.0 and 1.0"
        ));
        let s = ok(r#"{"id":"/a","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":0.5}}"#);
        assert_eq!(
            s.upgrade_strategy,
            UpgradeStrategy {
                minimum_health_capacity: 0.5,
                maximum_over_capacity: 1.0
            }
        );
    }

    #[test]
    fn constraints_are_parsed_with_their_index() {
        let e = errors(
            r#"{"id":"/a","cmd":"x","constraints":[["hostname","UNIQUE"],["rack","FOO"],["rack","LIKE","[x"],["a"]]}"#,
        );
        assert!(e.has("/constraints(1)", crate::constraints::UNKNOWN_OPERATOR));
        assert!(e.has("/constraints(2)", "'[x' is not a valid regular expression"));
        assert!(e.has("/constraints(3)", "Each constraint must have either 2 or 3 fields"));
        let s = ok(
            r#"{"id":"/a","cmd":"x","constraints":[["hostname","UNIQUE"],["hostname","UNIQUE"],["rack","GROUP_BY","2"]]}"#,
        );
        assert_eq!(s.constraints.len(), 2);
        assert_eq!(s.constraints[1].operator(), Operator::GroupBy);
    }

    #[test]
    fn health_checks_get_defaults_and_port_index_checks() {
        let s = ok(
            r#"{"id":"/a","cmd":"x","healthChecks":[{"protocol":"HTTP"},{"protocol":"TCP","port":8080},
            {"protocol":"COMMAND","command":{"value":"true"}}]}"#,
        );
        let http = &s.health_checks[0];
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.port_index, Some(0));
        assert_eq!(
            (
                http.grace_period_seconds,
                http.interval_seconds,
                http.timeout_seconds,
                http.max_consecutive_failures,
                http.delay_seconds
            ),
            (300, 60, 20, 3, 15)
        );
        assert!(!http.ignore_http1xx);
        assert_eq!(s.health_checks[1].port, Some(8080));
        assert_eq!(s.health_checks[1].port_index, None);
        assert_eq!(s.health_checks[1].path, None);
        assert_eq!(s.health_checks[2].command.as_ref().unwrap().value, "true");
        assert_eq!(s.health_checks[2].port_index, None);

        let e = errors(r#"{"id":"/a","cmd":"x","healthChecks":[{"portIndex":1}]}"#);
        assert!(e.has("/healthChecks(0)", HEALTH_CHECK_PORT_INDEX));
        let e = errors(
            r#"{"id":"/a","cmd":"x","healthChecks":[{"path":"/ok"},{"path":"/ HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /"}]}"#,
        );
        assert_eq!(e.details.len(), 1, "{e}");
        assert_eq!(e.details[0].path, "/healthChecks(1)/path", "{e}");
        let e = errors(r#"{"id":"/a","cmd":"x","portDefinitions":[],"healthChecks":[{"protocol":"TCP"}]}"#);
        assert!(e.has("/healthChecks(0)", HEALTH_CHECK_PORT_INDEX));
        let e = errors(
            r#"{"id":"/a","cmd":"x","healthChecks":[{"protocol":"COMMAND"},{"protocol":"FTP"},{"port":1,"portIndex":0},
            {"intervalSeconds":0,"maxConsecutiveFailures":-1},{"protocol":"TCP","command":{"value":"x"}}]}"#,
        );
        assert!(e.has("/healthChecks(0)/command", "must be set for the COMMAND protocol"));
        assert!(e.has(
            "/healthChecks(1)/protocol",
            "must be one of HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS or MESOS_TCP"
        ));
        assert!(e.has("/healthChecks(2)", "must not contain both 'port' and 'portIndex'"));
        assert!(e.has("/healthChecks(3)/intervalSeconds", "got 0, expected 1 or more"));
        assert!(e.has("/healthChecks(3)/maxConsecutiveFailures", "got -1, expected 0 or more"));
        assert!(e.has("/healthChecks(4)/command", "is only allowed with the COMMAND protocol"));
        // Port mappings count for bridge networking.
        ok(
            r#"{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80},{"containerPort":81}]},
            "networks":[{"mode":"container/bridge"}],"healthChecks":[{"portIndex":1,"protocol":"MESOS_HTTP"}]}"#,
        );
    }

    #[test]
    fn port_definitions_and_legacy_ports() {
        let s = ok(r#"{"id":"/a","cmd":"x","ports":[0,8080],"requirePorts":true}"#);
        assert_eq!(s.port_definitions.iter().map(|p| p.port).collect::<Vec<_>>(), [0, 8080]);
        assert!(s.require_ports);
        let none = ok(r#"{"id":"/a","cmd":"x","portDefinitions":[]}"#);
        assert!(none.port_definitions.is_empty());
        let e = errors(
            r#"{"id":"/a","cmd":"x","portDefinitions":[{"port":1,"name":"http"},{"port":1,"name":"http","protocol":"sctp"},{"port":70000}]}"#,
        );
        assert!(e.has("/portDefinitions", PORT_NAMES_UNIQUE));
        assert!(e.has("/portDefinitions", "Ports must be unique."));
        assert!(e.has("/portDefinitions(1)/protocol", "must be one of tcp, udp or tcp,udp"));
        assert!(e.has("/portDefinitions(2)/port", "got 70000, expected between 0 and 65535"));
        assert!(
            errors(r#"{"id":"/a","cmd":"x","portDefinitions":[{"port":1}],"ports":[2]}"#)
                .has("/ports", "must not be set together with portDefinitions")
        );
        let udp = ok(r#"{"id":"/a","cmd":"x","portDefinitions":[{"port":0,"protocol":"udp,tcp"}]}"#);
        assert_eq!(udp.port_definitions[0].protocol, Protocol::TcpUdp);
    }

    #[test]
    fn bridge_networking_and_port_mappings() {
        let s = ok(
            r#"{"id":"/a","container":{"type":"DOCKER","docker":{"image":"nginx","forcePullImage":true},
            "portMappings":[{"containerPort":80,"name":"http"}]},"networks":[{"mode":"container/bridge"}]}"#,
        );
        assert_eq!(s.network_mode(), NetworkMode::Bridge);
        assert!(s.port_definitions.is_empty());
        let m = &s.port_mappings()[0];
        assert_eq!(
            (m.container_port, m.host_port, m.service_port, m.protocol),
            (80, Some(0), 0, Protocol::Tcp)
        );
        assert_eq!(s.image(), Some("nginx"));
        assert!(s.container.as_ref().unwrap().docker.as_ref().unwrap().force_pull_image);
        // Without port mappings Marathon adds one default mapping; an empty array means none.
        let d = ok(r#"{"id":"/a","cmd":"x","networks":[{"mode":"container/bridge"}]}"#);
        assert_eq!(d.container.as_ref().unwrap().kind, ContainerType::Mesos);
        assert_eq!(d.port_mappings()[0].name.as_deref(), Some("default"));
        let none = ok(
            r#"{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[]},"networks":[{"mode":"container/bridge"}]}"#,
        );
        assert!(none.port_mappings().is_empty());
        let e = errors(
            r#"{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[{"name":"p"},{"name":"p"}]},"networks":[{"mode":"container/bridge"}],"portDefinitions":[{"port":0}]}"#,
        );
        assert!(e.has("/container/portMappings", PORT_NAMES_UNIQUE));
        assert!(e.has(
            "/portDefinitions",
            "port definitions require host networking; use container.portMappings"
        ));
        let host = errors(r#"{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80}]}}"#);
        assert!(host.has(
            "/container/portMappings",
            "port mappings require container/bridge networking; use portDefinitions"
        ));
    }

    #[test]
    fn legacy_docker_network_is_migrated() {
        let s = ok(
            r#"{"id":"/a","container":{"type":"DOCKER","docker":{"image":"i","network":"BRIDGE",
            "portMappings":[{"containerPort":8080,"hostPort":0,"servicePort":9000}]}}}"#,
        );
        assert_eq!(s.network_mode(), NetworkMode::Bridge);
        assert_eq!(s.port_mappings()[0].container_port, 8080);
        assert_eq!(s.port_mappings()[0].service_port, 9000);
        assert!(
            errors(r#"{"id":"/a","container":{"docker":{"image":"i","network":"USER"}}}"#).has(
                "/container/docker/network",
                "only HOST and BRIDGE networking are supported"
            )
        );
        assert!(errors(
            r#"{"id":"/a","container":{"docker":{"image":"i","network":"HOST"}},"networks":[{"mode":"host"}]}"#
        )
        .has("/container/docker/network", "must not be set together with networks"));
    }

    #[test]
    fn networks_are_checked() {
        let e = errors(r#"{"id":"/a","cmd":"x","networks":[{"name":"dcos"}]}"#);
        assert!(e.has(
            "/networks(0)/mode",
            "named container networks are not supported; use host or container/bridge"
        ));
        let e = errors(r#"{"id":"/a","cmd":"x","networks":[{"mode":"host"},{"mode":"container/bridge"}]}"#);
        assert!(e.has(
            "/networks",
            "host and container/bridge networking cannot be combined with other networks"
        ));
        assert!(
            errors(r#"{"id":"/a","cmd":"x","networks":[{"mode":"host","name":"n"}]}"#).has(
                "/networks(0)/name",
                "must not be set for host or container/bridge networking"
            )
        );
        assert!(errors(r#"{"id":"/a","cmd":"x","networks":[{"mode":"overlay"}]}"#).has(
            "/networks(0)/mode",
            "must be one of host, container/bridge or container"
        ));
    }

    #[test]
    fn containers_and_volumes() {
        assert!(errors(r#"{"id":"/a","cmd":"x","container":{"type":"DOCKER"}}"#)
            .has("/container/docker", "must be set for a DOCKER container"));
        assert!(errors(r#"{"id":"/a","cmd":"x","container":{"docker":{"image":""}}}"#)
            .has("/container/docker/image", "must not be empty"));
        assert!(errors(r#"{"id":"/a","cmd":"x","container":{"type":"RKT"}}"#)
            .has("/container/type", "must be one of DOCKER or MESOS"));
        assert!(
            errors(r#"{"id":"/a","cmd":"x","container":{"type":"MESOS","appc":{"image":"x"}}}"#)
                .has("/container/appc", "AppC images are not supported")
        );
        let s = ok(
            r#"{"id":"/a","cmd":"x","container":{"type":"MESOS","volumes":[{"containerPath":"/data","hostPath":"/srv","mode":"RO"}]}}"#,
        );
        let c = s.container.unwrap();
        assert_eq!(c.kind, ContainerType::Mesos);
        assert_eq!(
            c.volumes[0],
            Volume {
                container_path: "/data".into(),
                host_path: "/srv".into(),
                mode: VolumeMode::ReadOnly,
                secret: None,
            }
        );
        let e = errors(
            r#"{"id":"/a","cmd":"x","container":{"type":"MESOS","volumes":[{"containerPath":"d","persistent":{"size":10}},{"mode":"XX"}]}}"#,
        );
        assert!(e.has(
            "/container/volumes(0)",
            "only host volumes (hostPath) and secrets are supported"
        ));
        assert!(e.has("/container/volumes(1)/containerPath", "must not be empty"));
        assert!(e.has("/container/volumes(1)/hostPath", "must not be empty"));
        assert!(e.has("/container/volumes(1)/mode", "must be one of RO or RW"));
    }

    #[test]
    fn env_secrets_and_roles() {
        let s = ok(
            r#"{"id":"/a","cmd":"x","env":{"A":"1"},"acceptedResourceRoles":["slave_public","slave_public"],"secrets":{}}"#,
        );
        assert_eq!(s.env["A"], EnvValue::Text("1".into()));
        assert_eq!(s.accepted_resource_roles, Some(vec!["slave_public".to_string()]));
        let e = errors(
            r#"{"id":"/a","cmd":"x","env":{"S":{"secret":"nope"},"N":1,"":"x","A=B":"y"},"secrets":{"pw":{"source":"../x"},"q":{}},"acceptedResourceRoles":[""]}"#,
        );
        assert!(e.has("/env/S", "references an undefined secret named \"nope\""));
        assert!(e.has("/env/N", "must be a string or {\"secret\": NAME}"));
        assert!(e.has("/env/", "must be a valid environment variable name"));
        assert!(e.has("/env/A=B", "must be a valid environment variable name"));
        assert!(e.details.iter().any(|d| d.path == "/secrets/pw/source"), "{e:?}");
        assert!(e.has(
            "/secrets/q/source",
            "must be the path of a secret (tepui secret put PATH)"
        ));
        assert!(e.has("/acceptedResourceRoles(0)", "must not be empty"));
        assert_eq!(
            ok(r#"{"id":"/a","cmd":"x","acceptedResourceRoles":[]}"#).accepted_resource_roles,
            None
        );
    }

    #[test]
    fn secrets_as_marathon_takes_them() {
        let s = ok(r#"{"id":"/a","cmd":"x",
            "env":{"PLAIN":"v","DB_PASSWORD":{"secret":"pw"}},
            "secrets":{"pw":{"source":"/db/password"},"cert":{"source":"tls/cert"}},
            "container":{"type":"MESOS","volumes":[{"containerPath":"certs/tls.pem","secret":"cert"}]}}"#);
        assert_eq!(s.env["DB_PASSWORD"], EnvValue::Secret { secret: "pw".into() });
        assert_eq!(s.secrets["pw"].source, "/db/password");
        let v = &s.container.as_ref().unwrap().volumes[0];
        assert_eq!(v.secret.as_deref(), Some("cert"));
        assert_eq!(v.mode, VolumeMode::ReadOnly);
        // Shown back field for field.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["env"]["DB_PASSWORD"], serde_json::json!({"secret": "pw"}));
        assert_eq!(json["env"]["PLAIN"], "v");
        assert_eq!(json["secrets"]["pw"], serde_json::json!({"source": "/db/password"}));
        assert_eq!(json["container"]["volumes"][0]["secret"], "cert");
        assert!(json["container"]["volumes"][0].get("hostPath").is_none());

        let e = errors(
            r#"{"id":"/a","cmd":"x","secrets":{"s":{"source":"x"}},
            "container":{"type":"MESOS","volumes":[{"containerPath":"../up","secret":"s"},{"containerPath":"/f","secret":"other"},{"containerPath":"/g","secret":7}]}}"#,
        );
        assert!(
            e.details
                .iter()
                .any(|d| d.path == "/container/volumes(0)/containerPath"),
            "{e:?}"
        );
        assert!(e.has(
            "/container/volumes(1)/secret",
            "references an undefined secret named \"other\""
        ));
        assert!(e.has(
            "/container/volumes(2)/secret",
            "must be the name of one of the app's secrets"
        ));
    }

    #[test]
    fn unreachable_strategy_forms() {
        assert_eq!(
            ok(r#"{"id":"/a","cmd":"x","unreachableStrategy":"disabled"}"#).unreachable_strategy,
            UnreachableStrategy::Disabled
        );
        assert_eq!(
            ok(r#"{"id":"/a","cmd":"x","unreachableStrategy":{"inactiveAfterSeconds":0,"expungeAfterSeconds":0}}"#)
                .unreachable_strategy,
            UnreachableStrategy::Enabled {
                inactive_after_seconds: 0,
                expunge_after_seconds: 0
            }
        );
        assert_eq!(
            ok(r#"{"id":"/a","cmd":"x","unreachableStrategy":{"inactiveAfterSeconds":60}}"#).unreachable_strategy,
            UnreachableStrategy::Enabled {
                inactive_after_seconds: 60,
                expunge_after_seconds: 600
            }
        );
        assert!(
            errors(r#"{"id":"/a","cmd":"x","unreachableStrategy":{"inactiveAfterSeconds":900}}"#).has(
                "/unreachableStrategy/expungeAfterSeconds",
                "must be greater than or equal to inactiveAfterSeconds"
            )
        );
        assert!(!errors(r#"{"id":"/a","cmd":"x","unreachableStrategy":"sometimes"}"#).is_empty());
        assert!(errors(r#"{"id":"/a","cmd":"x","killSelection":"RANDOM"}"#)
            .has("/killSelection", "must be one of YOUNGEST_FIRST or OLDEST_FIRST"));
    }

    #[test]
    fn errors_group_by_path_and_prefix() {
        let mut e = ValidationErrors::new();
        e.add("/cpus", "a");
        e.add("/cpus", "b");
        e.add("/cpus", "a");
        e.add("/", "c");
        let mut outer = ValidationErrors::new();
        outer.extend_prefixed("/apps(2)", e);
        assert_eq!(outer.details.len(), 2);
        assert_eq!(
            outer.details[0],
            ErrorDetail {
                path: "/apps(2)/cpus".into(),
                errors: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(outer.details[1].path, "/apps(2)");
        assert!(ValidationErrors::new().into_result(1).is_ok());
    }
}
