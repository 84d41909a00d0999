//! Chronos' job JSON (`/v1/scheduler`), field for field, and how it maps onto the one job
//! model both APIs share (Metronome's, with tepui's few additions).
//!
//! A job written through Chronos is stored as its Metronome form plus, under the key
//! `chronos`, the Chronos fields that have no Metronome counterpart (owner, executor, fetch as
//! written...), so reading it back through Chronos gives what was written. A job written
//! through Metronome has no such key; its Chronos form is derived. The counts (`successCount`,
//! `lastError`...) always come from the job's run history, never from what a client sent.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::calendar::{fix_iso8601_start, is_iso8601, Schedule};
use crate::metronome::{
    Artifact, Constraint, Docker, EnvValue, JobSpec, Network, Restart, RunSpec, ScheduleSpec, Volume,
};

/// Chronos' job name rule, as its error message spells it.
pub const NAME_RULE: &str = "([\\w\\.-]+)";

/// The key of a stored job's Chronos-only fields.
pub const STORED_KEY: &str = "chronos";

/// The id of the one schedule a Chronos job has.
pub const SCHEDULE_ID: &str = "default";

/// Chronos' starting deadline when a job gives no `epsilon` (Chronos 2's default).
pub const DEFAULT_EPSILON_SECONDS: i64 = 60;

/// Whether `name` is a valid Chronos job name: letters, digits, `_`, `.` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name != "."
        && name != ".."
}

/// A job as Chronos clients send it, with Chronos' defaults. Numbers and booleans may come
/// as strings (Chronos' own examples send `"cpus": "0.5"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChronosJob {
    pub name: String,
    #[serde(default)]
    pub command: String,
    #[serde(default = "yes", deserialize_with = "lenient_bool")]
    pub shell: bool,
    #[serde(default)]
    pub executor: String,
    #[serde(default)]
    pub executor_flags: String,
    #[serde(default)]
    pub task_info_data: String,
    #[serde(default = "two", deserialize_with = "lenient_i64")]
    pub retries: i64,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub owner_name: String,
    #[serde(default)]
    pub description: String,
    /// 0 means Chronos' default (0.1).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cpus: f64,
    /// 0 means Chronos' default (256).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub disk: f64,
    /// 0 means Chronos' default (128).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub mem: f64,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub disabled: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub soft_error: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub data_processing_job_type: bool,
    #[serde(default)]
    pub fetch: Vec<Fetch>,
    #[serde(default)]
    pub uris: Vec<String>,
    #[serde(default)]
    pub environment_variables: Vec<EnvironmentVariable>,
    #[serde(default)]
    pub arguments: Vec<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub high_priority: bool,
    #[serde(default)]
    pub run_as_user: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub concurrent: bool,
    /// Milliseconds; 0 is no limit.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub max_completion_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// `[["attribute", "EQUALS" | "LIKE" | "UNLIKE", "value"], ...]`.
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub schedule_time_zone: String,
    /// Chronos 2's late-start window (an ISO 8601 duration, `PT60S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub uri: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub executable: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub cache: bool,
    #[serde(default = "yes", deserialize_with = "lenient_bool")]
    pub extract: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_file: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `DOCKER` or `MESOS`.
    #[serde(rename = "type", default = "docker_type")]
    pub kind: String,
    pub image: String,
    /// `HOST` or `BRIDGE`.
    #[serde(default = "host_network")]
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
    #[serde(default)]
    pub network_infos: Vec<Value>,
    #[serde(default)]
    pub volumes: Vec<ContainerVolume>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub force_pull_image: bool,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    pub container_path: String,
    /// `RO` or `RW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

fn yes() -> bool {
    true
}
fn two() -> i64 {
    2
}
fn docker_type() -> String {
    "DOCKER".into()
}
fn host_network() -> String {
    "HOST".into()
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64().ok_or_else(|| de::Error::custom("not a number")),
        Value::String(s) if s.trim().is_empty() => Ok(0.0),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("{s:?} is not a number"))),
        Value::Null => Ok(0.0),
        other => Err(de::Error::custom(format!("{other} is not a number"))),
    }
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let f = lenient_f64(d)?;
    if f.fract() != 0.0 || !f.is_finite() {
        return Err(de::Error::custom(format!("{f} is not a whole number")));
    }
    Ok(f as i64)
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) => Ok(s.trim().eq_ignore_ascii_case("true")),
        Value::Null => Ok(false),
        other => Err(de::Error::custom(format!("{other} is not true or false"))),
    }
}

/// Chronos' error: a message naming what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadJob(pub String);

/// Reads a job a client sent (`expect_parents`: through `/dependency`, else `/iso8601`).
pub fn parse(body: &[u8], expect_parents: bool) -> Result<ChronosJob, BadJob> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let job: ChronosJob = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        BadJob(format!("field {path}: {}", e.inner()))
    })?;
    if !valid_name(&job.name) {
        return Err(BadJob(format!(
            "the job's name is invalid. Allowed names: '{NAME_RULE}'"
        )));
    }
    if expect_parents {
        if job.parents.as_ref().is_none_or(|p| p.is_empty()) {
            return Err(BadJob(
                "Error, parent does not exist: a dependent job needs parents".into(),
            ));
        }
    } else {
        let Some(schedule) = job.schedule.as_deref() else {
            return Err(BadJob(
                "a scheduled job needs a schedule, as R/2026-01-01T00:00:00Z/PT1H".into(),
            ));
        };
        if !is_iso8601(schedule) {
            return Err(BadJob(format!(
                "Cannot parse schedule '{schedule}': the form is R[n]/START/PERIOD"
            )));
        }
        if let Err(e) = Schedule::parse(schedule, &job.schedule_time_zone, 0) {
            return Err(BadJob(format!("Cannot parse schedule '{schedule}': {e}")));
        }
    }
    if !job.fetch.is_empty() && !job.uris.is_empty() {
        return Err(BadJob(format!(
            "Tried to add both uri (deprecated) and fetch parameters on {}",
            job.name
        )));
    }
    if job.command.trim().is_empty() && job.container.is_none() {
        return Err(BadJob(
            "command: a job needs a command, or a container image to run".into(),
        ));
    }
    if let Some(c) = &job.container {
        if c.image.trim().is_empty() {
            return Err(BadJob("container.image: must not be empty".into()));
        }
        if !matches!(c.kind.to_ascii_uppercase().as_str(), "DOCKER" | "MESOS") {
            return Err(BadJob(format!("container.type: {:?} is not DOCKER or MESOS", c.kind)));
        }
        if !matches!(c.network.to_ascii_uppercase().as_str(), "HOST" | "BRIDGE" | "USER") {
            return Err(BadJob(format!(
                "container.network: {:?} is not HOST or BRIDGE",
                c.network
            )));
        }
        for (i, v) in c.volumes.iter().enumerate() {
            if v.mode
                .as_deref()
                .is_some_and(|m| !matches!(m.to_ascii_uppercase().as_str(), "RO" | "RW"))
            {
                return Err(BadJob(format!("container.volumes[{i}].mode: RO or RW")));
            }
        }
    }
    for (i, c) in job.constraints.iter().enumerate() {
        if c.len() != 3 || !matches!(c[1].as_str(), "EQUALS" | "LIKE" | "UNLIKE") {
            return Err(BadJob(format!(
                "constraints[{i}]: expected [attribute, EQUALS|LIKE|UNLIKE, value]"
            )));
        }
    }
    if job.retries < 0 {
        return Err(BadJob("retries: must be 0 or more".into()));
    }
    if job.cpus < 0.0 || job.mem < 0.0 || job.disk < 0.0 {
        return Err(BadJob("cpus, mem and disk must not be negative".into()));
    }
    if let Some(e) = &job.epsilon {
        epsilon_seconds(e).ok_or_else(|| BadJob(format!("epsilon: {e:?} is not a duration such as PT60S")))?;
    }
    Ok(job)
}

/// An `epsilon` (ISO 8601 duration of days, hours, minutes, seconds) in whole seconds.
fn epsilon_seconds(text: &str) -> Option<i64> {
    let iso = Schedule::parse(&format!("R0/1970-01-01T00:00:00Z/{text}"), "", 0).ok()?;
    let crate::calendar::Schedule::Iso8601(i) = iso else {
        return None;
    };
    if i.months != 0 {
        return None;
    }
    Some((i64::from(i.days) * 86_400_000 + i.fixed_ms) / 1000)
}

impl ChronosJob {
    /// The job in the shared model, and the value stored for it (the model's JSON with the
    /// Chronos-only fields under [`STORED_KEY`]). An empty schedule START becomes `now`.
    pub fn into_stored(mut self, now: i64) -> (JobSpec, Value) {
        if let Some(s) = &self.schedule {
            self.schedule = Some(fix_iso8601_start(s, now));
        }
        if self.cpus == 0.0 {
            self.cpus = 0.1;
        }
        if self.mem == 0.0 {
            self.mem = 128.0;
        }
        if self.disk == 0.0 {
            self.disk = 256.0;
        }
        let spec = self.to_spec();
        let mut stored = serde_json::to_value(&spec).unwrap_or(Value::Null);
        let mut extras = serde_json::to_value(&self).unwrap_or(Value::Null);
        if let Some(o) = extras.as_object_mut() {
            // Kept in the shared model, from where they are read back.
            for k in ["name", "parents", "schedule", "scheduleTimeZone", "disabled"] {
                o.remove(k);
            }
        }
        stored[STORED_KEY] = extras;
        (spec, stored)
    }

    fn to_spec(&self) -> JobSpec {
        let mut run = RunSpec {
            cpus: self.cpus,
            mem: self.mem,
            disk: self.disk,
            ..RunSpec::default()
        };
        if self.shell {
            run.cmd = Some(self.command.clone()).filter(|c| !c.trim().is_empty());
        } else if !self.command.is_empty() {
            let mut args = vec![self.command.clone()];
            args.extend(self.arguments.iter().cloned());
            run.args = Some(args);
        }
        run.user = Some(self.run_as_user.clone()).filter(|u| !u.is_empty());
        run.env = self
            .environment_variables
            .iter()
            .map(|e| (e.name.clone(), EnvValue::Text(e.value.clone())))
            .collect();
        run.placement.constraints = self
            .constraints
            .iter()
            .map(|c| Constraint {
                attribute: c[0].clone(),
                operator: if c[1] == "EQUALS" { "IS".into() } else { c[1].clone() },
                value: Some(c[2].clone()),
            })
            .collect();
        run.artifacts = self
            .fetch
            .iter()
            .map(|f| Artifact {
                uri: f.uri.clone(),
                executable: f.executable,
                extract: f.extract,
                cache: f.cache,
            })
            .chain(self.uris.iter().map(|u| Artifact {
                uri: u.clone(),
                executable: false,
                extract: true,
                cache: false,
            }))
            .collect();
        if let Some(c) = &self.container {
            if c.kind.eq_ignore_ascii_case("MESOS") {
                run.ucr =
                    serde_json::from_value(json!({"image": {"id": c.image, "forcePull": c.force_pull_image}})).ok();
            } else {
                run.docker = Some(Docker {
                    image: c.image.clone(),
                    force_pull_image: c.force_pull_image,
                    parameters: c
                        .parameters
                        .iter()
                        .map(|p| crate::metronome::Parameter {
                            key: p.key.clone(),
                            value: p.value.clone(),
                        })
                        .collect(),
                    privileged: false,
                });
            }
            run.volumes = c
                .volumes
                .iter()
                .filter_map(|v| {
                    Some(Volume::Host {
                        container_path: v.container_path.clone(),
                        host_path: v.host_path.clone()?,
                        mode: v.mode.clone().unwrap_or_else(|| "RW".into()).to_ascii_uppercase(),
                    })
                })
                .collect();
            if c.network.eq_ignore_ascii_case("BRIDGE") {
                run.networks = vec![Network {
                    name: None,
                    mode: "container/bridge".into(),
                    labels: BTreeMap::new(),
                }];
            }
        }
        run.restart = Restart {
            policy: if self.retries > 0 { "ON_FAILURE" } else { "NEVER" }.into(),
            active_deadline_seconds: (self.max_completion_time > 0).then(|| (self.max_completion_time + 999) / 1000),
            retries: (self.retries > 0).then_some(self.retries as u32),
        };
        let schedules = self
            .schedule
            .iter()
            .map(|s| ScheduleSpec {
                id: SCHEDULE_ID.into(),
                cron: s.clone(),
                timezone: self.schedule_time_zone.clone(),
                starting_deadline_seconds: self
                    .epsilon
                    .as_deref()
                    .and_then(epsilon_seconds)
                    .unwrap_or(DEFAULT_EPSILON_SECONDS)
                    .max(1),
                concurrency_policy: if self.concurrent { "ALLOW" } else { "FORBID" }.into(),
                enabled: true,
            })
            .collect();
        JobSpec {
            id: self.name.clone(),
            description: Some(self.description.clone()).filter(|d| !d.is_empty()),
            dependencies: self.parents.clone().unwrap_or_default(),
            labels: BTreeMap::new(),
            schedules,
            run,
            disabled: self.disabled,
        }
    }
}

/// What Chronos reports of a job's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub success_count: u64,
    pub error_count: u64,
    /// Chronos' times (`2026-01-01T00:00:00.000Z`), empty for never.
    pub last_success: String,
    pub last_error: String,
    pub errors_since_last_success: u64,
}

/// Chronos' time format.
pub fn chronos_time(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// The job as Chronos shows it: the fields stored with it (or, for a job written through
/// Metronome, derived from its definition), its parents or schedule, and its counts.
/// `exhausted`: its schedule has no run left (Chronos then shows it disabled).
pub fn view(stored: &Value, job: &JobSpec, counts: &Counts, exhausted: bool) -> Value {
    let mut out = match stored.get(STORED_KEY) {
        Some(extras) if extras.is_object() => extras.clone(),
        _ => derived(job),
    };
    let o = out.as_object_mut().expect("an object");
    o.insert("name".into(), json!(job.id));
    o.insert("successCount".into(), json!(counts.success_count));
    o.insert("errorCount".into(), json!(counts.error_count));
    o.insert("lastSuccess".into(), json!(counts.last_success));
    o.insert("lastError".into(), json!(counts.last_error));
    o.insert("errorsSinceLastSuccess".into(), json!(counts.errors_since_last_success));
    o.insert("disabled".into(), json!(job.disabled || exhausted));
    for k in ["parents", "schedule", "scheduleTimeZone", "epsilon"] {
        o.remove(k);
    }
    match job.schedules.first() {
        Some(s) if job.dependencies.is_empty() => {
            o.insert("schedule".into(), json!(s.cron));
            o.insert("scheduleTimeZone".into(), json!(s.timezone));
        }
        _ => {
            o.insert("parents".into(), json!(job.dependencies));
        }
    }
    // Chronos lists uris and fetch both, each filled from the other.
    let fetch = o.get("fetch").and_then(Value::as_array).cloned().unwrap_or_default();
    let uris = o.get("uris").and_then(Value::as_array).cloned().unwrap_or_default();
    if fetch.is_empty() && !uris.is_empty() {
        let from_uris: Vec<Value> = uris
            .iter()
            .map(|u| json!({"uri": u, "executable": false, "cache": false, "extract": true}))
            .collect();
        o.insert("fetch".into(), Value::Array(from_uris));
    } else if uris.is_empty() && !fetch.is_empty() {
        let from_fetch: Vec<Value> = fetch.iter().filter_map(|f| f.get("uri").cloned()).collect();
        o.insert("uris".into(), Value::Array(from_fetch));
    }
    out
}

/// The Chronos fields of a job written through Metronome.
fn derived(job: &JobSpec) -> Value {
    let r = &job.run;
    let (command, shell, arguments) = match (&r.cmd, &r.args) {
        (Some(cmd), _) => (cmd.clone(), true, vec![]),
        (None, Some(args)) if !args.is_empty() => (args[0].clone(), false, args[1..].to_vec()),
        _ => (String::new(), true, vec![]),
    };
    let env: Vec<Value> = r
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Text(t) => Some(json!({"name": k, "value": t})),
            EnvValue::Secret { .. } => None,
        })
        .collect();
    let container = r
        .docker
        .as_ref()
        .map(|d| ("DOCKER", d.image.clone(), d.force_pull_image))
        .or_else(|| {
            r.ucr
                .as_ref()
                .map(|u| ("MESOS", u.image.id.clone(), u.image.force_pull))
        })
        .map(|(kind, image, pull)| {
            let volumes: Vec<Value> = r
                .volumes
                .iter()
                .filter_map(|v| match v {
                    Volume::Host {
                        container_path,
                        host_path,
                        mode,
                    } => Some(json!({"containerPath": container_path, "hostPath": host_path, "mode": mode})),
                    Volume::Secret { .. } => None,
                })
                .collect();
            let bridge = r.networks.iter().any(|n| n.mode == "container/bridge");
            json!({"type": kind, "image": image, "network": if bridge { "BRIDGE" } else { "HOST" },
                   "networkInfos": [], "volumes": volumes, "forcePullImage": pull, "parameters": []})
        });
    let constraints: Vec<Value> = r
        .placement
        .constraints
        .iter()
        .map(|c| {
            let op = match c.operator.as_str() {
                "IS" | "EQ" => "EQUALS",
                other => other,
            };
            json!([c.attribute, op, c.value.clone().unwrap_or_default()])
        })
        .collect();
    let retries = match (&r.restart.policy[..], r.restart.retries) {
        ("ON_FAILURE", Some(n)) => i64::from(n),
        // Without a cap Metronome retries until the deadline; Chronos has no word for it.
        ("ON_FAILURE", None) => i64::from(u32::MAX),
        _ => 0,
    };
    let fetch: Vec<Value> = r
        .artifacts
        .iter()
        .map(|a| json!({"uri": a.uri, "executable": a.executable, "cache": a.cache, "extract": a.extract}))
        .collect();
    let mut v = json!({
        "command": command,
        "shell": shell,
        "executor": "",
        "executorFlags": "",
        "taskInfoData": "",
        "retries": retries,
        "owner": "",
        "ownerName": "",
        "description": job.description.clone().unwrap_or_default(),
        "cpus": r.cpus,
        "disk": r.disk,
        "mem": r.mem,
        "softError": false,
        "dataProcessingJobType": false,
        "fetch": fetch,
        "uris": [],
        "environmentVariables": env,
        "arguments": arguments,
        "highPriority": false,
        "runAsUser": r.user.clone().unwrap_or_else(|| "root".into()),
        "concurrent": job.schedules.first().is_none_or(|s| s.concurrency_policy == "ALLOW"),
        "maxCompletionTime": r.restart.active_deadline_seconds.map_or(0, |s| s * 1000),
        "constraints": constraints,
    });
    if let Some(c) = container {
        v["container"] = c;
    }
    v
}

/// What a stored job's Chronos-only fields say about running it (a stored job without them
/// was written through Metronome).
pub fn stored_extras(stored: &Value) -> Option<&Value> {
    stored.get(STORED_KEY).filter(|v| v.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronos_example_job_reads_with_its_defaults_and_maps_onto_the_shared_model() {
        let body = br#"{"schedule": "R10/2012-10-01T05:52:00Z/PT2S", "name": "SAMPLE_JOB1",
            "epsilon": "PT15M", "command": "echo 'FOO' >> /tmp/JOB1_OUT", "owner": "bob@airbnb.com",
            "async": false, "cpus": "0.5", "unknown": 1}"#;
        let job = parse(body, false).unwrap();
        assert_eq!((job.retries, job.shell, job.cpus), (2, true, 0.5));
        let (spec, stored) = job.into_stored(0);
        assert_eq!(spec.id, "SAMPLE_JOB1");
        assert_eq!((spec.run.cpus, spec.run.mem, spec.run.disk), (0.5, 128.0, 256.0));
        assert_eq!(spec.run.cmd.as_deref(), Some("echo 'FOO' >> /tmp/JOB1_OUT"));
        assert_eq!(spec.run.restart.policy, "ON_FAILURE");
        assert_eq!(spec.run.restart.retries, Some(2));
        let s = &spec.schedules[0];
        assert_eq!(
            (s.cron.as_str(), s.starting_deadline_seconds),
            ("R10/2012-10-01T05:52:00Z/PT2S", 900)
        );
        assert_eq!(s.concurrency_policy, "FORBID", "concurrent defaults to false");
        assert_eq!(stored[STORED_KEY]["owner"], "bob@airbnb.com");
        // Read back: what was written, with the counts.
        let counts = Counts {
            success_count: 3,
            last_success: chronos_time(1_000),
            ..Counts::default()
        };
        let v = view(&stored, &spec, &counts, false);
        assert_eq!(v["name"], "SAMPLE_JOB1");
        assert_eq!(v["owner"], "bob@airbnb.com");
        assert_eq!(v["successCount"], 3);
        assert_eq!(v["lastSuccess"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["lastError"], "");
        assert_eq!(v["schedule"], "R10/2012-10-01T05:52:00Z/PT2S");
        assert_eq!(v["disk"], 256.0);
        assert!(v.get("parents").is_none());
    }

    #[test]
    fn a_dependent_docker_job() {
        let body = br#"{"name": "child", "command": "run", "parents": ["a", "b"], "retries": 0,
            "shell": false, "arguments": ["-x"], "concurrent": true,
            "container": {"type": "DOCKER", "image": "busybox", "network": "BRIDGE",
                "volumes": [{"containerPath": "/var/log/", "hostPath": "/logs/", "mode": "RW"}]},
            "constraints": [["rack", "EQUALS", "r1"]], "environmentVariables": [{"name": "A", "value": "1"}]}"#;
        let job = parse(body, true).unwrap();
        let (spec, stored) = job.into_stored(0);
        assert_eq!(spec.dependencies, vec!["a", "b"]);
        assert_eq!(spec.run.args, Some(vec!["run".to_string(), "-x".to_string()]));
        assert_eq!(spec.run.docker.as_ref().unwrap().image, "busybox");
        assert_eq!(spec.run.networks[0].mode, "container/bridge");
        assert_eq!(spec.run.placement.constraints[0].operator, "IS");
        assert_eq!(spec.run.restart.policy, "NEVER");
        let v = view(&stored, &spec, &Counts::default(), false);
        assert_eq!(v["parents"], json!(["a", "b"]));
        assert_eq!(v["container"]["volumes"][0]["hostPath"], "/logs/");
        assert!(v.get("schedule").is_none());
    }

    #[test]
    fn a_metronome_job_seen_through_chronos() {
        let spec: JobSpec = serde_json::from_value(json!({"id": "nightly", "run": {"cmd": "echo hi", "cpus": 0.2,
            "docker": {"image": "busybox"}, "restart": {"policy": "ON_FAILURE", "retries": 1}},
            "schedules": [{"id": "s", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}]}))
        .unwrap();
        let stored = serde_json::to_value(&spec).unwrap();
        let v = view(&stored, &spec, &Counts::default(), false);
        assert_eq!(
            (v["command"].as_str(), v["shell"].as_bool()),
            (Some("echo hi"), Some(true))
        );
        assert_eq!(v["retries"], 1);
        assert_eq!(v["container"]["image"], "busybox");
        assert_eq!(v["schedule"], "0 2 * * *");
        assert_eq!(v["scheduleTimeZone"], "Europe/Berlin");
    }

    #[test]
    fn bad_jobs_say_what_to_fix() {
        let bad = |body: &str, dep: bool| parse(body.as_bytes(), dep).unwrap_err().0;
        assert!(bad(r#"{"name": "a b", "command": "x", "schedule": "R//PT1H"}"#, false).contains("name is invalid"));
        assert!(
            bad(r#"{"name": "a", "command": "x", "schedule": "R/nope/PT1H"}"#, false).contains("Cannot parse schedule")
        );
        assert!(
            bad(r#"{"name": "a", "command": "x", "schedule": "0 * * * *"}"#, false).contains("Cannot parse schedule")
        );
        assert!(bad(
            r#"{"name": "a", "command": "x", "schedule": "R//PT1H", "scheduleTimeZone": "Mars/Base"}"#,
            false
        )
        .contains("Mars/Base"));
        assert!(bad(r#"{"name": "a", "command": "x"}"#, true).contains("parent"));
        assert!(bad(r#"{"name": "a", "schedule": "R//PT1H"}"#, false).contains("command"));
        assert!(bad(
            r#"{"name": "a", "command": "x", "schedule": "R//PT1H", "cpus": "lots"}"#,
            false
        )
        .contains("cpus"));
        assert!(bad(
            r#"{"name": "a", "command": "x", "schedule": "R//PT1H", "constraints": [["a", "NEAR", "b"]]}"#,
            false
        )
        .contains("constraints[0]"));
    }

    #[test]
    fn names_and_epsilon() {
        for ok in ["SAMPLE_JOB1", "a.b-c", "x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "..", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(epsilon_seconds("PT15M"), Some(900));
        assert_eq!(epsilon_seconds("P1DT1S"), Some(86_401));
        assert_eq!(epsilon_seconds("P1M"), None);
    }
}
