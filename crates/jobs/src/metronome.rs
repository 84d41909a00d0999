//! Metronome's job definition (`/v1/jobs`), field for field: what a client sends, with
//! Metronome's defaults, checked by Metronome's rules, and its 422 answer
//! (`{"message": "Object is not valid", "details": [{"path", "errors"}]}`) when they fail.
//! Unknown fields are ignored, as Metronome does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::{time_zone, Schedule};

/// A job as Metronome's API has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Written as `[{"id": ...}]`.
    #[serde(default, with = "dependency_ids")]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    #[serde(default)]
    pub run: RunSpec,
    /// tepui's own: a disabled job's schedules and parents start no runs (runs by hand
    /// still do). Chronos' `disabled`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

mod dependency_ids {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Id {
        id: String,
    }

    pub fn serialize<S: Serializer>(ids: &[String], s: S) -> Result<S::Ok, S::Error> {
        ids.iter()
            .map(|id| Id { id: id.clone() })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(Vec::<Id>::deserialize(d)?.into_iter().map(|i| i.id).collect())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    #[serde(default = "defaults::cpus")]
    pub cpus: f64,
    #[serde(default = "defaults::mem")]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub gpus: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Seconds.
    #[serde(default = "defaults::max_launch_delay")]
    pub max_launch_delay: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucr: Option<Ucr>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub networks: Vec<Network>,
}

impl Default for RunSpec {
    fn default() -> RunSpec {
        serde_json::from_str("{}").expect("every field of a run has a default")
    }
}

mod defaults {
    pub fn cpus() -> f64 {
        1.0
    }
    pub fn mem() -> f64 {
        128.0
    }
    pub fn max_launch_delay() -> i64 {
        3600
    }
    pub fn kind() -> String {
        "docker".into()
    }
    pub fn starting_deadline() -> i64 {
        900
    }
    pub fn timezone() -> String {
        "UTC".into()
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn extract() -> bool {
        true
    }
}

/// An environment variable: text, or `{"secret": NAME}` naming one of `secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Text(String),
    Secret { secret: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSource {
    pub source: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub attribute: String,
    /// `IS`, `EQ`, `LIKE` or `UNLIKE`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub uri: String,
    #[serde(default = "defaults::extract")]
    pub extract: bool,
    #[serde(default)]
    pub executable: bool,
    #[serde(default)]
    pub cache: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    pub image: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub force_pull_image: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ucr {
    pub image: UcrImage,
    #[serde(default)]
    pub privileged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UcrImage {
    pub id: String,
    #[serde(default = "defaults::kind")]
    pub kind: String,
    #[serde(default)]
    pub force_pull: bool,
}

/// A host path, or a file-based secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, rename_all = "camelCase")]
pub enum Volume {
    #[serde(rename_all = "camelCase")]
    Host {
        container_path: String,
        host_path: String,
        /// `RO` or `RW`.
        mode: String,
    },
    #[serde(rename_all = "camelCase")]
    Secret { container_path: String, secret: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restart {
    /// `NEVER` or `ON_FAILURE`.
    #[serde(default = "Restart::never")]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// tepui's own (Chronos' `retries`): at most this many attempts after the first under
    /// ON_FAILURE; none is without limit (Metronome's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

impl Restart {
    fn never() -> String {
        "NEVER".into()
    }
}

impl Default for Restart {
    fn default() -> Restart {
        Restart {
            policy: Restart::never(),
            active_deadline_seconds: None,
            retries: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host`, `container/bridge` or `container`.
    pub mode: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A schedule of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    pub id: String,
    pub cron: String,
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    #[serde(default = "defaults::starting_deadline")]
    pub starting_deadline_seconds: i64,
    /// `ALLOW`, `FORBID`, or `REPLACE` (which stops the active run first).
    #[serde(default = "ScheduleSpec::allow")]
    pub concurrency_policy: String,
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
}

impl ScheduleSpec {
    fn allow() -> String {
        "ALLOW".into()
    }
}

/// Metronome's 422 answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    pub message: String,
    pub details: Vec<InvalidDetail>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidDetail {
    pub path: String,
    pub errors: Vec<String>,
}

impl Invalid {
    fn new() -> Invalid {
        Invalid {
            message: "Object is not valid".into(),
            details: Vec::new(),
        }
    }

    fn add(&mut self, path: &str, error: impl Into<String>) {
        let error = error.into();
        match self.details.iter_mut().find(|d| d.path == path) {
            Some(d) => d.errors.push(error),
            None => self.details.push(InvalidDetail {
                path: path.to_string(),
                errors: vec![error],
            }),
        }
    }
}

/// What a job id is: dot-separated parts of lowercase letters, digits and inner dashes.
pub const JOB_ID_RULE: &str = "^([a-z0-9]+(-+[a-z0-9]+)*)(\\.([a-z0-9]+(-+[a-z0-9]+)*))*$";

/// Whether `id` is a valid job id ([`JOB_ID_RULE`]).
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with('-')
                && !part.ends_with('-')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// JSON into `T`; a field of the wrong type is a 422 at its path (`/run/cpus`).
fn read<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Invalid> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut inv = Invalid::new();
        let path = e.path().to_string();
        let path = if path == "." {
            "/".to_string()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        inv.add(&path, e.inner().to_string());
        inv
    })
}

/// Reads and checks a job as a client sent it.
pub fn parse_job(body: &[u8]) -> Result<JobSpec, Invalid> {
    let job: JobSpec = read(body)?;
    validate_job(&job)?;
    Ok(job)
}

/// Metronome's rules for a job, and its schema's bounds.
pub fn validate_job(job: &JobSpec) -> Result<(), Invalid> {
    let mut e = Invalid::new();
    if !valid_job_id(&job.id) {
        e.add("/id", format!("must fully match regular expression '{JOB_ID_RULE}'"));
    }
    let r = &job.run;
    if !(r.cpus >= 0.01) {
        e.add("/run/cpus", format!("got {}, expected 0.01 or more", r.cpus));
    }
    if !(r.mem >= 32.0) {
        e.add("/run/mem", format!("got {}, expected 32 or more", r.mem));
    }
    if !(r.disk >= 0.0) {
        e.add("/run/disk", format!("got {}, expected 0 or more", r.disk));
    }
    if r.gpus < 0 {
        e.add("/run/gpus", format!("got {}, expected 0 or more", r.gpus));
    }
    if r.max_launch_delay < 1 {
        e.add(
            "/run/maxLaunchDelay",
            format!("got {}, expected 1 or more", r.max_launch_delay),
        );
    }
    if r.cmd.as_deref() == Some("") {
        e.add("/run/cmd", "must not be empty");
    }
    let has_image = r.docker.as_ref().is_some_and(|d| !d.image.is_empty()) || r.ucr.is_some();
    if r.cmd.is_none() && !has_image {
        e.add("/run", "Cmd, Docker or UCR image must be specified");
    }
    if r.docker.is_some() && r.ucr.is_some() {
        e.add("/run", "Either Docker or UCR should be provided, but not both");
    }
    if r.gpus > 0 && r.docker.is_some() {
        e.add("/run/gpus", "GPUs are not supported with Docker");
    }
    if !matches!(r.restart.policy.as_str(), "NEVER" | "ON_FAILURE") {
        e.add(
            "/run/restart/policy",
            "error.expected.restartPolicy: NEVER or ON_FAILURE",
        );
    }
    if r.restart.active_deadline_seconds.is_some_and(|s| s < 1) {
        e.add("/run/restart/activeDeadlineSeconds", "expected 1 or more");
    }
    for (i, c) in r.placement.constraints.iter().enumerate() {
        if !matches!(c.operator.as_str(), "IS" | "EQ" | "LIKE" | "UNLIKE") {
            e.add(
                &format!("/run/placement/constraints({i})/operator"),
                "must be one of IS, EQ, LIKE, UNLIKE",
            );
        }
    }
    for (i, v) in r.volumes.iter().enumerate() {
        let at = format!("/run/volumes({i})");
        match v {
            Volume::Host {
                container_path,
                host_path,
                mode,
            } => {
                if container_path.is_empty() {
                    e.add(&format!("{at}/containerPath"), "must not be empty");
                }
                if host_path.is_empty() {
                    e.add(&format!("{at}/hostPath"), "must not be empty");
                }
                if !matches!(mode.as_str(), "RO" | "RW") {
                    e.add(&format!("{at}/mode"), "must be one of RO, RW");
                }
            }
            Volume::Secret { container_path, secret } => {
                if r.docker.is_some() {
                    e.add("/run/volumes", "File based secrets are only supported by UCR");
                }
                if let Some(m) = tepui_common::secret_file_error(container_path) {
                    e.add(&format!("{at}/containerPath"), m);
                }
                if secret.is_empty() {
                    e.add(&format!("{at}/secret"), "must not be empty");
                }
            }
        }
    }
    for (name, s) in &r.secrets {
        if let Err(m) = tepui_common::normalize_secret_path(&s.source) {
            e.add(&format!("/run/secrets/{name}/source"), m);
        }
    }
    let referenced: std::collections::BTreeSet<&str> = r
        .env
        .values()
        .filter_map(|v| match v {
            EnvValue::Secret { secret } => Some(secret.as_str()),
            EnvValue::Text(_) => None,
        })
        .chain(r.volumes.iter().filter_map(|v| match v {
            Volume::Secret { secret, .. } => Some(secret.as_str()),
            Volume::Host { .. } => None,
        }))
        .collect();
    let undefined: Vec<&str> = referenced
        .iter()
        .copied()
        .filter(|s| !r.secrets.contains_key(*s))
        .collect();
    let unused: Vec<&str> = r
        .secrets
        .keys()
        .map(String::as_str)
        .filter(|s| !referenced.contains(s))
        .collect();
    let mut secrets_message = String::new();
    if !undefined.is_empty() {
        secrets_message.push_str(&format!(
            "The following secrets are referenced, but undefined: {}. Please add them to the secrets field.",
            undefined.join(", ")
        ));
    }
    if !unused.is_empty() {
        secrets_message.push_str(&format!(
            "The following secrets are defined, but not referenced: {}. Please remove them from the secrets field.",
            unused.join(", ")
        ));
    }
    if !secrets_message.is_empty() {
        e.add("/run", secrets_message);
    }
    let modes: std::collections::BTreeSet<&str> = r.networks.iter().map(|n| n.mode.as_str()).collect();
    for (i, n) in r.networks.iter().enumerate() {
        if !matches!(n.mode.as_str(), "host" | "container/bridge" | "container") {
            e.add(
                &format!("/run/networks({i})/mode"),
                "must be one of host, container/bridge, container",
            );
        }
    }
    if modes.len() > 1 {
        e.add(
            "/run/networks",
            "You may not mix host, container, or container/bridge networking. Only define one kind of network.",
        );
    }
    if !has_image && modes.iter().any(|m| *m != "host") {
        e.add("/run/networks", "Only containers may join container or bridge networks");
    }

    if job.schedules.len() > 1 {
        e.add(
            "/schedules",
            format!("has size {}, expected 1 or less", job.schedules.len()),
        );
    }
    if !job.schedules.is_empty() && !job.dependencies.is_empty() {
        e.add("/", "Jobs may not have both dependencies and schedules specified");
    }
    let mut seen = std::collections::BTreeSet::new();
    if job.dependencies.iter().any(|d| !seen.insert(d)) {
        e.add("/dependencies", "has double entries");
    }
    for (i, s) in job.schedules.iter().enumerate() {
        if let Some(errs) = schedule_errors(s) {
            for (field, m) in errs {
                e.add(&format!("/schedules({i}){field}"), m);
            }
        }
    }
    if e.details.is_empty() {
        Ok(())
    } else {
        Err(e)
    }
}

/// Reads and checks a schedule sent on its own (`/v1/jobs/{id}/schedules`).
pub fn parse_schedule(body: &[u8]) -> Result<ScheduleSpec, Invalid> {
    let s: ScheduleSpec = read(body)?;
    if let Some(errs) = schedule_errors(&s) {
        let mut inv = Invalid::new();
        for (field, m) in errs {
            inv.add(if field.is_empty() { "/" } else { field }, m);
        }
        return Err(inv);
    }
    Ok(s)
}

/// A schedule's faults: (the field's path, relative, and what is wrong).
fn schedule_errors(s: &ScheduleSpec) -> Option<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    if !valid_job_id(&s.id) {
        out.push(("/id", format!("must fully match regular expression '{JOB_ID_RULE}'")));
    }
    // A cron expression, or (tepui's own) an ISO 8601 repeating interval.
    let zone_ok = match time_zone(&s.timezone) {
        Ok(_) => true,
        Err(e) => {
            out.push(("/timezone", e.to_string()));
            false
        }
    };
    if let Err(e) = Schedule::parse(&s.cron, if zone_ok { &s.timezone } else { "" }, 0) {
        out.push(("/cron", e.to_string()));
    }
    if s.starting_deadline_seconds < 60 {
        out.push((
            "/startingDeadlineSeconds",
            format!("got {}, expected 60 or more", s.starting_deadline_seconds),
        ));
    }
    if !matches!(s.concurrency_policy.as_str(), "ALLOW" | "FORBID" | "REPLACE") {
        out.push(("/concurrencyPolicy", "must be one of ALLOW, FORBID, REPLACE".into()));
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(e: &Invalid, path: &str, needle: &str) -> bool {
        e.details
            .iter()
            .any(|d| d.path == path && d.errors.iter().any(|m| m.contains(needle)))
    }

    #[test]
    fn metronomes_example_reads_and_writes_back_field_for_field() {
        let body = r#"{
          "id": "prod.example.app",
          "description": "Example Application",
          "labels": {"location": "olympus", "owner": "zeus"},
          "run": {
            "artifacts": [{"uri": "http://foo.test.com/application.zip", "extract": true, "executable": true, "cache": false}],
            "cmd": "nuke --dry --master local",
            "cpus": 1.5, "mem": 32, "disk": 128,
            "env": {"MON": "test", "CONNECT": "direct", "PW": {"secret": "pw"}},
            "secrets": {"pw": {"source": "/db/password"}},
            "maxLaunchDelay": 3600,
            "placement": {"constraints": [{"attribute": "rack", "operator": "EQ", "value": "rack-2"}]},
            "restart": {"activeDeadlineSeconds": 120, "policy": "NEVER"},
            "user": "root",
            "volumes": [{"containerPath": "/mnt/test", "hostPath": "/etc/guest", "mode": "RW"}],
            "unknownField": "ignored"
          },
          "schedules": [{"id": "every-minute", "cron": "* * * * *"}]
        }"#;
        let job = parse_job(body.as_bytes()).unwrap();
        assert_eq!(job.run.env["PW"], EnvValue::Secret { secret: "pw".into() });
        assert_eq!(job.schedules[0].timezone, "UTC");
        assert_eq!(job.schedules[0].starting_deadline_seconds, 900);
        assert_eq!(job.schedules[0].concurrency_policy, "ALLOW");
        let back = serde_json::to_value(&job).unwrap();
        assert_eq!(back["run"]["volumes"][0]["hostPath"], "/etc/guest");
        assert_eq!(back["run"]["restart"]["activeDeadlineSeconds"], 120);
        assert_eq!(back["run"]["env"]["PW"], serde_json::json!({"secret": "pw"}));
        assert_eq!(back["dependencies"], serde_json::json!([]));
        assert!(back["run"].get("unknownField").is_none());
        // Defaults of a bare job.
        let bare = parse_job(br#"{"id": "a", "run": {"cmd": "true"}}"#).unwrap();
        assert_eq!((bare.run.cpus, bare.run.mem, bare.run.disk), (1.0, 128.0, 0.0));
        assert_eq!(bare.run.max_launch_delay, 3600);
        assert_eq!(bare.run.restart.policy, "NEVER");
    }

    #[test]
    fn metronomes_rules_with_their_paths() {
        let e = parse_job(br#"{"id": "Bad_ID", "run": {"cpus": 0, "mem": 16, "restart": {"policy": "ALWAYS"}}}"#)
            .unwrap_err();
        assert_eq!(e.message, "Object is not valid");
        assert!(has(&e, "/id", "must fully match"), "{e:?}");
        assert!(has(&e, "/run/cpus", "0.01 or more"), "{e:?}");
        assert!(has(&e, "/run/mem", "32 or more"), "{e:?}");
        assert!(has(&e, "/run", "Cmd, Docker or UCR image must be specified"), "{e:?}");
        assert!(has(&e, "/run/restart/policy", "NEVER or ON_FAILURE"), "{e:?}");

        let e = parse_job(br#"{"id": "a", "run": {"cmd": "x", "env": {"A": {"secret": "nope"}}, "secrets": {"extra": {"source": "s"}}}}"#)
            .unwrap_err();
        assert!(has(&e, "/run", "referenced, but undefined: nope"), "{e:?}");
        assert!(has(&e, "/run", "defined, but not referenced: extra"), "{e:?}");

        let e = parse_job(
            br#"{"id": "a", "dependencies": [{"id": "b"}, {"id": "b"}], "run": {"cmd": "x"},
                 "schedules": [{"id": "s", "cron": "61 * * * *", "timezone": "Nowhere/City", "startingDeadlineSeconds": 5, "concurrencyPolicy": "SOMETIMES"}]}"#,
        )
        .unwrap_err();
        assert!(has(&e, "/", "both dependencies and schedules"), "{e:?}");
        assert!(has(&e, "/dependencies", "double entries"), "{e:?}");
        assert!(has(&e, "/schedules(0)/cron", "minute"), "{e:?}");
        assert!(has(&e, "/schedules(0)/timezone", "Nowhere/City"), "{e:?}");
        assert!(has(&e, "/schedules(0)/startingDeadlineSeconds", "60 or more"), "{e:?}");
        assert!(has(&e, "/schedules(0)/concurrencyPolicy", "REPLACE"), "{e:?}");

        // A wrong type names its field.
        let e = parse_job(br#"{"id": "a", "run": {"cmd": "x", "cpus": "lots"}}"#).unwrap_err();
        assert_eq!(e.details[0].path, "/run/cpus", "{e:?}");

        let e = parse_job(
            br#"{"id": "a", "run": {"docker": {"image": "i"}, "ucr": {"image": {"id": "i"}}, "gpus": 1,
                 "networks": [{"mode": "host"}, {"mode": "container/bridge"}]}}"#,
        )
        .unwrap_err();
        assert!(has(&e, "/run", "not both"), "{e:?}");
        assert!(has(&e, "/run/gpus", "not supported with Docker"), "{e:?}");
        assert!(has(&e, "/run/networks", "You may not mix"), "{e:?}");
    }

    #[test]
    fn job_ids() {
        for ok in ["a", "prod.example.app", "my-job-2", "a.b-c.d"] {
            assert!(valid_job_id(ok), "{ok}");
        }
        for bad in ["", "A", "a..b", "-a", "a-", "a_b", "a/b", ".a", "a."] {
            assert!(!valid_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_schedule_on_its_own() {
        let s = parse_schedule(
            br#"{"id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin", "concurrencyPolicy": "REPLACE"}"#,
        )
        .unwrap();
        assert_eq!((s.timezone.as_str(), s.enabled), ("Europe/Berlin", true));
        let e = parse_schedule(br#"{"id": "n", "cron": "bad"}"#).unwrap_err();
        assert!(has(&e, "/cron", "fields"), "{e:?}");
    }
}
