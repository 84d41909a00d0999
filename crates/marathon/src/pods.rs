//! Marathon's pods: `/v2/pods` (create, list, get, update, delete), `::status`, `::versions`
//! and `::instances`, and how a pod's instances are seen in the state.
//!
//! A pod instance is one task group: a task per container, launched together on one agent,
//! each labelled with the pod, the instance and the container (`LABEL_POD`, `LABEL_INSTANCE`,
//! `LABEL_CONTAINER`) and the configuration version. The planner sees an instance as one
//! [`Instance`]: running when every container runs, healthy when every container with a
//! health check passes it, going when any of its tasks is being killed or has ended (one
//! container failing takes the instance down).
//!
//! Changes go through [`Services::deploy_pod`](crate::Services::deploy_pod); errors and bodies
//! are the apps' (`crate::api`): 422 with Marathon's validation body and field paths, 409 with
//! the locking deployments, `{message}` otherwise.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tepui_services::pod::{PodDefinition, PodSpec};
use tepui_services::time::format_timestamp;
use tepui_services::{validate_pod, Health, Instance, InstanceState, PathId, ValidationErrors};
use tepui_state::{State as Replicated, TaskRecord, TaskState};

use tepui_node::now_ms;

use crate::api::{body_json, json_response, marathon_path, Answer, Caller, Params, Refusal, Shared};
use crate::{Services, LABEL_CONTAINER, LABEL_INSTANCE, LABEL_VERSION};

// ---------------------------------------------------------------------------------------------
// Instances in the state
// ---------------------------------------------------------------------------------------------

/// One instance of a pod: its tasks, one per container.
#[derive(Debug, Clone)]
pub(crate) struct PodInstance<'a> {
    pub id: String,
    pub version: String,
    pub tasks: Vec<&'a TaskRecord>,
}

impl PodInstance<'_> {
    /// Some task still lives: the instance holds resources.
    pub(crate) fn is_live(&self) -> bool {
        self.tasks.iter().any(|t| !t.state.is_terminal())
    }

    /// The live tasks, to kill the instance.
    pub(crate) fn live_tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.iter().copied().filter(|t| !t.state.is_terminal())
    }

    fn created_at(&self) -> u64 {
        self.tasks.iter().map(|t| t.created_at).min().unwrap_or(0)
    }
}

/// A pod's tasks grouped into instances, oldest first.
pub(crate) fn instances_of<'a>(tasks: &[&'a TaskRecord]) -> Vec<PodInstance<'a>> {
    let mut by_id: BTreeMap<&str, PodInstance<'a>> = BTreeMap::new();
    for t in tasks {
        let Some(id) = t.labels.get(LABEL_INSTANCE) else {
            continue;
        };
        by_id
            .entry(id.as_str())
            .or_insert_with(|| PodInstance {
                id: id.clone(),
                version: t.labels.get(LABEL_VERSION).cloned().unwrap_or_default(),
                tasks: vec![],
            })
            .tasks
            .push(t);
    }
    let mut out: Vec<PodInstance<'a>> = by_id.into_values().collect();
    out.sort_by(|a, b| (a.created_at(), &a.id).cmp(&(b.created_at(), &b.id)));
    out
}

/// How the planner sees a live pod instance.
pub(crate) fn planner_instance(spec: &PodSpec, inst: &PodInstance) -> Instance {
    let tasks = &inst.tasks;
    let any = |f: &dyn Fn(&TaskRecord) -> bool| tasks.iter().any(|t| f(t));
    let all = |f: &dyn Fn(&TaskRecord) -> bool| tasks.iter().all(|t| f(t));
    let state = if any(&|t| t.kill_requested || t.state == TaskState::TaskKilling || t.state.is_terminal()) {
        // One container down takes the whole instance down.
        InstanceState::Killing
    } else if any(&|t| t.state == TaskState::TaskUnreachable) {
        InstanceState::Unreachable
    } else if all(&|t| t.state == TaskState::TaskRunning) {
        InstanceState::Running
    } else if any(&|t| t.state == TaskState::TaskStarting || t.state == TaskState::TaskRunning) {
        InstanceState::Starting
    } else {
        InstanceState::Staged
    };
    let checked: Vec<&&TaskRecord> = if inst.version == spec.config_version() {
        let with_checks: Vec<&str> = spec
            .containers
            .iter()
            .filter(|c| c.health_check.is_some())
            .map(|c| c.name.as_str())
            .collect();
        tasks
            .iter()
            .filter(|t| {
                t.labels
                    .get(LABEL_CONTAINER)
                    .is_some_and(|c| with_checks.contains(&c.as_str()))
            })
            .collect()
    } else {
        tasks.iter().filter(|t| !t.def.health_checks.is_empty()).collect()
    };
    let health = if checked.is_empty() {
        Health::NoChecks
    } else if checked.iter().any(|t| t.healthy == Some(false)) {
        Health::Unhealthy
    } else if checked.iter().all(|t| t.healthy == Some(true)) {
        Health::Healthy
    } else {
        Health::Pending
    };
    let unreachable_since = tasks
        .iter()
        .filter(|t| t.state == TaskState::TaskUnreachable)
        .map(|t| t.updated_at)
        .min();
    Instance {
        id: inst.id.clone(),
        version: inst.version.clone(),
        state,
        health,
        agent: None,
        started_at: Some(inst.created_at()),
        unreachable_since,
    }
}

/// A pod's live instances as the planner sees them.
pub(crate) fn planner_instances(spec: &PodSpec, tasks: &[&TaskRecord]) -> Vec<Instance> {
    instances_of(tasks)
        .iter()
        .filter(|i| i.is_live())
        .map(|i| planner_instance(spec, i))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Status (Marathon's PodStatus)
// ---------------------------------------------------------------------------------------------

/// Marathon's `PodInstanceState` of an instance.
fn instance_state(i: &Instance) -> &'static str {
    match i.state {
        InstanceState::Scheduled => "PENDING",
        InstanceState::Staged | InstanceState::Starting => "STAGING",
        InstanceState::Running if i.counts_as_healthy() => "STABLE",
        InstanceState::Killing => "TERMINAL",
        _ => "DEGRADED",
    }
}

fn container_status(s: &Replicated, spec: &PodSpec, t: &TaskRecord) -> Value {
    let name = t.labels.get(LABEL_CONTAINER).cloned().unwrap_or_default();
    let container = spec.containers.iter().find(|c| c.name == name);
    // The instance's host ports are its executor's.
    let ports: Vec<tepui_state::PortDef> = s
        .executor_of_task(&t.id)
        .map(|e| e.def.ports.clone())
        .unwrap_or_default();
    let endpoints: Vec<Value> = container
        .map(|c| {
            c.endpoints
                .iter()
                .map(|ep| {
                    let mut v = json!({ "name": ep.name });
                    if let Some(port) = ports.iter().find(|p| p.name.as_deref() == Some(ep.name.as_str())) {
                        v["allocatedHostPort"] = json!(port.host_port);
                    }
                    let checked = c.health_check.as_ref().is_some_and(|h| {
                        h.http.as_ref().is_some_and(|x| x.endpoint == ep.name)
                            || h.tcp.as_ref().is_some_and(|x| x.endpoint == ep.name)
                    });
                    if checked {
                        if let Some(healthy) = t.healthy {
                            v["healthy"] = json!(healthy);
                        }
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let mut v = json!({
        "name": name,
        "status": t.state.as_str(),
        "statusSince": format_timestamp(t.updated_at),
        "containerId": t.id,
        "endpoints": endpoints,
        "conditions": [],
        "lastUpdated": format_timestamp(t.updated_at),
        "lastChanged": format_timestamp(t.updated_at),
    });
    if let Some(c) = container {
        v["resources"] = json!(c.resources);
    }
    if !t.message.is_empty() {
        v["message"] = json!(t.message);
    }
    if t.state.is_terminal() {
        let mut term = json!({});
        if let Some(code) = t.exit_code {
            term["exitCode"] = json!(code);
        }
        if !t.message.is_empty() {
            term["message"] = json!(t.message);
        }
        v["termination"] = term;
    }
    v
}

fn instance_status(s: &Replicated, spec: &PodSpec, inst: &PodInstance) -> Value {
    let planned = planner_instance(spec, inst);
    let agent = inst.tasks.first().map(|t| t.agent_id);
    let hostname = agent
        .and_then(|a| s.nodes.get(&a))
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let updated = inst.tasks.iter().map(|t| t.updated_at).max().unwrap_or(0);
    let role = inst
        .tasks
        .first()
        .map(|t| {
            if t.role.is_empty() {
                "*".to_string()
            } else {
                t.role.clone()
            }
        })
        .unwrap_or_else(|| "*".into());
    let mut networks = vec![];
    if let Some(ip) = inst.tasks.iter().find_map(|t| t.container_ip) {
        networks.push(json!({ "addresses": [ip.to_string()] }));
    }
    json!({
        "id": inst.id,
        "status": instance_state(&planned),
        "statusSince": format_timestamp(updated),
        "agentHostname": hostname,
        "agentId": agent.map(|a| a.to_string()).unwrap_or_default(),
        "resources": spec.instance_resources(),
        "networks": networks,
        "containers": inst.tasks.iter().map(|t| container_status(s, spec, t)).collect::<Vec<_>>(),
        "specReference": format!("/v2/pods{}::versions/{}", spec.id, inst.version),
        "conditions": [],
        "lastUpdated": format_timestamp(updated),
        "lastChanged": format_timestamp(updated),
        "role": role,
    })
}

/// Marathon's `PodStatus`: `STABLE` once exactly the wanted instances of the current
/// configuration run (healthy where checked) and nothing else does, else `DEGRADED`.
pub(crate) fn pod_status(s: &Replicated, svc: &Services, spec: &PodSpec) -> Value {
    let index = crate::TaskIndex::new(s);
    let tasks = index.pod_tasks(&spec.id);
    let all = instances_of(tasks);
    let live: Vec<&PodInstance> = all.iter().filter(|i| i.is_live()).collect();
    let planned: Vec<Instance> = live.iter().map(|i| planner_instance(spec, i)).collect();
    let stable = planned
        .iter()
        .filter(|i| i.version == spec.config_version() && i.counts_as_healthy())
        .count();
    let wanted = spec.instances() as usize;
    let is_stable = stable == wanted && planned.len() == wanted;
    let waiting = svc.pod_waiting(&spec.id);
    let message = if is_stable {
        None
    } else if waiting > 0 {
        Some(format!(
            "{stable} of {wanted} instances stable; {waiting} waiting to launch"
        ))
    } else {
        Some(format!("{stable} of {wanted} instances stable"))
    };
    let changed = live
        .iter()
        .flat_map(|i| i.tasks.iter().map(|t| t.updated_at))
        .max()
        .map(format_timestamp)
        .unwrap_or_else(|| spec.version.clone());
    let terminated: Vec<Value> = all
        .iter()
        .filter(|i| !i.is_live())
        .rev()
        .take(10)
        .map(|i| {
            json!({
                "instanceID": i.id,
                "startedAt": format_timestamp(i.created_at()),
                "terminatedAt": format_timestamp(i.tasks.iter().filter_map(|t| t.finished_at).max().unwrap_or(0)),
                "containers": i.tasks.iter().map(|t| json!({
                    "containerId": t.id,
                    "lastKnownState": t.state.as_str(),
                    "termination": {"exitCode": t.exit_code, "message": t.message},
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut v = json!({
        "id": spec.id,
        "spec": spec,
        "status": if is_stable { "STABLE" } else { "DEGRADED" },
        "statusSince": changed,
        "instances": live.iter().map(|i| instance_status(s, spec, i)).collect::<Vec<_>>(),
        "terminationHistory": terminated,
        "lastUpdated": format_timestamp(now_ms()),
        "lastChanged": changed,
    });
    if let Some(m) = message {
        v["message"] = json!(m);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Bodies and checks
// ---------------------------------------------------------------------------------------------

/// A pod definition from JSON; a field of the wrong type is a 422 at its path.
fn definition(v: &Value) -> Result<PodDefinition, ValidationErrors> {
    if !v.is_object() {
        return Err(ValidationErrors::single("/", "a pod must be a JSON object"));
    }
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = marathon_path(e.path());
        ValidationErrors::single(&path, e.into_inner().to_string())
    })
}

fn validate(v: &Value) -> Result<PodSpec, Refusal> {
    definition(v)
        .and_then(|d| validate_pod(&d, &PathId::root(), now_ms()))
        .map_err(Refusal::invalid)
}

/// A container's tasks as the access check sees them: an image or not, its user, host volumes.
fn task_defs(spec: &PodSpec) -> Vec<tepui_state::TaskDef> {
    spec.containers
        .iter()
        .map(|c| tepui_state::TaskDef {
            image: c.image.as_ref().map(|i| i.id.clone()),
            user: c.user.clone().or_else(|| spec.user.clone()),
            volumes: c
                .volume_mounts
                .iter()
                .filter_map(|m| {
                    let v = spec.volumes.iter().find(|v| v.name == m.name)?;
                    Some(tepui_state::VolumeDef {
                        source: v.host.clone()?,
                        target: m.mount_path.clone(),
                        read_only: m.read_only,
                    })
                })
                .collect(),
            ..tepui_state::TaskDef::default()
        })
        .collect()
}

/// Refuses a pod the caller may not run (a container without an image, as root, or with a host
/// volume needs "host"), as for apps.
fn may_run(caller: &Caller, spec: &PodSpec) -> Result<(), Refusal> {
    let Some(axum::Extension(me)) = caller else {
        return Err(Refusal::from(tepui_node::Error::from(tepui_auth::Denied::no_caller())));
    };
    for def in task_defs(spec) {
        me.may_run(&def)
            .map_err(|d| Refusal::from(tepui_node::Error::from(d)))?;
    }
    Ok(())
}

/// Refuses a pod naming a secret nobody wrote.
fn secrets_exist(s: &Replicated, spec: &PodSpec) -> Result<(), Refusal> {
    let mut e = ValidationErrors::new();
    for (name, src) in &spec.secrets {
        let known = tepui_state::normalize_secret_path(&src.source).is_ok_and(|p| s.secrets.contains_key(&p));
        if !known {
            e.add(
                &format!("/secrets/{name}/source"),
                format!(
                    "no secret {:?}; write it first with `tepui secret put {}`",
                    src.source, src.source
                ),
            );
        }
    }
    e.into_result(()).map_err(Refusal::invalid)
}

fn no_pod(id: &str) -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, format!("Pod '{id}' does not exist"))
}

fn pod_id(raw: &str) -> Result<PathId, Refusal> {
    PathId::parse(raw).map_err(|_| no_pod(raw))
}

fn with_deployment(mut resp: axum::response::Response, started: &crate::Started) -> axum::response::Response {
    let id = started.deployment_id.clone().unwrap_or_else(crate::uuid_like);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// What `/v2/pods/{*path}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PodPath {
    Pod(String),
    AllStatus,
    Status(String),
    Versions(String),
    Version(String, String),
    Instances(String),
    Instance(String, String),
}

/// Splits `id::status`, `id::versions[/v]`, `id::instances[/i]` (Marathon's `::` suffixes).
fn split_pod_path(raw: &str) -> PodPath {
    let raw = format!("/{}", raw.trim_start_matches('/'));
    let Some((id, rest)) = raw.split_once("::") else {
        return PodPath::Pod(raw.trim_end_matches('/').to_string());
    };
    let id = id.trim_end_matches('/').to_string();
    let (what, arg) = match rest.split_once('/') {
        Some((w, a)) => (w, Some(a.to_string())),
        None => (rest, None),
    };
    match (what, arg) {
        ("status", None) if id.is_empty() => PodPath::AllStatus,
        ("status", None) => PodPath::Status(id),
        ("versions", None) => PodPath::Versions(id),
        ("versions", Some(v)) => PodPath::Version(id, v),
        ("instances", None) => PodPath::Instances(id),
        ("instances", Some(i)) => PodPath::Instance(id, i),
        _ => PodPath::Pod(raw),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

pub(crate) async fn list(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    let pods = svc.node().read(crate::pods);
    Ok(json_response(StatusCode::OK, json!(pods)))
}

pub(crate) async fn create(
    State(svc): Shared,
    caller: Caller,
    RawQuery(q): RawQuery,
    OriginalUri(_uri): OriginalUri,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let spec = validate(&body_json(&body)?)?;
    may_run(&caller, &spec)?;
    svc.node().linearize().await?;
    svc.node().read(|s| secrets_exist(s, &spec))?;
    if svc.node().read(|s| crate::pod(s, &spec.id).is_some()) {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("Pod {} already exists.", spec.id),
        ));
    }
    let id = spec.id.clone();
    let started = svc.deploy_pod(Some(spec), None, p.flag("force")).await?;
    let stored = svc
        .node()
        .read(|s| crate::pod(s, &id))
        .ok_or_else(|| no_pod(&id.to_string()))?;
    tracing::info!(pod = %id, deployment = ?started.deployment_id, "pod created");
    let mut resp = json_response(StatusCode::CREATED, json!(stored));
    if let Ok(location) = HeaderValue::from_str(&format!("/v2/pods{id}")) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(with_deployment(resp, &started))
}

pub(crate) async fn get_path(State(svc): Shared, Path(path): Path<String>) -> Answer {
    svc.node().linearize().await?;
    match split_pod_path(&path) {
        PodPath::Pod(raw) => {
            let id = pod_id(&raw)?;
            let pod = svc.node().read(|s| crate::pod(s, &id)).ok_or_else(|| no_pod(&raw))?;
            Ok(json_response(StatusCode::OK, json!(pod)))
        }
        PodPath::AllStatus => {
            let all: Vec<Value> = svc
                .node()
                .read(|s| crate::pods(s).iter().map(|p| pod_status(s, &svc, p)).collect());
            Ok(json_response(StatusCode::OK, json!(all)))
        }
        PodPath::Status(raw) => {
            let id = pod_id(&raw)?;
            let v = svc
                .node()
                .read(|s| crate::pod(s, &id).map(|p| pod_status(s, &svc, &p)))
                .ok_or_else(|| no_pod(&raw))?;
            let mut resp = json_response(StatusCode::OK, v);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
            Ok(resp)
        }
        PodPath::Versions(raw) => {
            let id = pod_id(&raw)?;
            let versions = svc.node().read(|s| crate::pod_versions(s, &id));
            if versions.is_empty() {
                return Err(no_pod(&raw));
            }
            let mut list: Vec<String> = versions.into_iter().map(|(v, _)| v).collect();
            list.reverse();
            Ok(json_response(StatusCode::OK, json!(list)))
        }
        PodPath::Version(raw, version) => {
            let id = pod_id(&raw)?;
            let found = svc.node().read(|s| {
                crate::pod_versions(s, &id)
                    .into_iter()
                    .find(|(v, _)| *v == version)
                    .map(|(_, p)| p)
            });
            let pod = found.ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("Version '{version}' of pod '{raw}' does not exist"),
                )
            })?;
            Ok(json_response(StatusCode::OK, json!(pod)))
        }
        PodPath::Instances(_) | PodPath::Instance(..) => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET is not supported here; see ::status for the instances",
        )),
    }
}

pub(crate) async fn put_path(
    State(svc): Shared,
    caller: Caller,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
    _headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let PodPath::Pod(raw) = split_pod_path(&path) else {
        return Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "PUT is for a pod"));
    };
    let p = Params::parse(q.as_deref());
    let mut v = body_json(&body)?;
    let id = pod_id(&raw)?;
    // Marathon: the body's id, when given, must be the path's.
    match v.get("id").and_then(Value::as_str) {
        Some(body_id) if PathId::parse(body_id).ok().as_ref() != Some(&id) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("'{id}' does not match definition's id ('{body_id}')"),
            ));
        }
        _ => {}
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(id.to_string()));
    }
    let spec = validate(&v)?;
    may_run(&caller, &spec)?;
    svc.node().linearize().await?;
    svc.node().read(|s| secrets_exist(s, &spec))?;
    let created = svc.node().read(|s| crate::pod(s, &id).is_none());
    let started = svc.deploy_pod(Some(spec), None, p.flag("force")).await?;
    let stored = svc.node().read(|s| crate::pod(s, &id)).ok_or_else(|| no_pod(&raw))?;
    tracing::info!(pod = %id, created, deployment = ?started.deployment_id, "pod put");
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_deployment(json_response(status, json!(stored)), &started))
}

pub(crate) async fn delete_path(
    State(svc): Shared,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    match split_pod_path(&path) {
        PodPath::Pod(raw) => {
            let id = pod_id(&raw)?;
            let started = svc.deploy_pod(None, Some(id.clone()), p.flag("force")).await?;
            tracing::info!(pod = %id, deployment = ?started.deployment_id, "pod removed");
            Ok(with_deployment(StatusCode::ACCEPTED.into_response(), &started))
        }
        PodPath::Instance(raw, instance) => {
            let id = pod_id(&raw)?;
            let killed = kill_instances(&svc, &id, &[instance.clone()]).await?;
            let one = killed.into_iter().next().ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("Instance '{instance}' of pod '{raw}' does not exist"),
                )
            })?;
            Ok(json_response(StatusCode::OK, one))
        }
        PodPath::Instances(raw) => {
            let id = pod_id(&raw)?;
            let v = body_json(&body)?;
            let ids: Vec<String> = serde_json::from_value(v)
                .map_err(|_| Refusal::invalid(ValidationErrors::single("/", "must be an array of instance ids")))?;
            let killed = kill_instances(&svc, &id, &ids).await?;
            Ok(json_response(StatusCode::OK, json!(killed)))
        }
        _ => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE is for a pod or its instances",
        )),
    }
}

/// Kills instances of a pod (each of its live tasks); the scheduler replaces them. Answers
/// each killed instance as Marathon's `Instance` (its id, agent and state).
async fn kill_instances(svc: &Services, pod: &PathId, ids: &[String]) -> Result<Vec<Value>, Refusal> {
    svc.node().linearize().await?;
    let found: Vec<(String, Vec<String>, String)> = svc.node().read(|s| {
        let exists = crate::pod(s, pod).is_some();
        if !exists {
            return Err(no_pod(&pod.to_string()));
        }
        let index = crate::TaskIndex::new(s);
        Ok(instances_of(index.pod_tasks(pod))
            .into_iter()
            .filter(|i| ids.contains(&i.id) && i.is_live())
            .map(|i| {
                let agent = i.tasks.first().map(|t| t.agent_id.to_string()).unwrap_or_default();
                (i.id.clone(), i.live_tasks().map(|t| t.id.clone()).collect(), agent)
            })
            .collect())
    })?;
    let mut out = vec![];
    for (instance, tasks, agent) in found {
        for (task, answer) in tasks.iter().zip(svc.master().kill_all(&tasks, None).await) {
            if let Err(e) = answer {
                tracing::debug!(%task, error = %e, "could not kill a pod instance's task");
            }
        }
        tracing::info!(%pod, %instance, "pod instance killed");
        out.push(json!({
            "instanceId": {"idString": instance},
            "agentInfo": {"agentId": agent},
            "state": {"condition": "Killing"},
            "runSpecVersion": null,
        }));
    }
    svc.kick();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_paths_split_at_the_double_colon() {
        assert_eq!(split_pod_path("web"), PodPath::Pod("/web".into()));
        assert_eq!(split_pod_path("prod/web"), PodPath::Pod("/prod/web".into()));
        assert_eq!(split_pod_path("::status"), PodPath::AllStatus);
        assert_eq!(split_pod_path("prod/web::status"), PodPath::Status("/prod/web".into()));
        assert_eq!(split_pod_path("web::versions"), PodPath::Versions("/web".into()));
        assert_eq!(
            split_pod_path("web::versions/2024-01-01T00:00:00.000Z"),
            PodPath::Version("/web".into(), "2024-01-01T00:00:00.000Z".into())
        );
        assert_eq!(split_pod_path("web::instances"), PodPath::Instances("/web".into()));
        assert_eq!(
            split_pod_path("web::instances/web.instance-1"),
            PodPath::Instance("/web".into(), "web.instance-1".into())
        );
    }

    fn task(id: &str, instance: &str, container: &str, state: TaskState, healthy: Option<bool>) -> TaskRecord {
        let mut t = TaskRecord::staging(id, "/p", 1, tepui_state::TaskDef::default(), 10);
        t.state = state;
        t.healthy = healthy;
        t.labels = BTreeMap::from([
            (crate::LABEL_POD.to_string(), "/p".to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_CONTAINER.to_string(), container.to_string()),
            (LABEL_VERSION.to_string(), "v1".to_string()),
        ]);
        t
    }

    fn spec() -> PodSpec {
        let def: PodDefinition = serde_json::from_value(json!({"id": "/p", "containers": [
            {"name": "web", "exec": {"command": {"shell": "x"}}, "endpoints": [{"name": "http"}],
             "healthCheck": {"http": {"endpoint": "http"}}},
            {"name": "side", "exec": {"command": {"shell": "y"}}}]}))
        .unwrap();
        let mut p = validate_pod(&def, &PathId::root(), 0).unwrap();
        p.version_info.last_config_change_at = "v1".into();
        p
    }

    #[test]
    fn an_instance_is_its_containers_together() {
        let p = spec();
        let a1 = task("a1", "i-a", "web", TaskState::TaskRunning, Some(true));
        let a2 = task("a2", "i-a", "side", TaskState::TaskRunning, None);
        let b1 = task("b1", "i-b", "web", TaskState::TaskRunning, None);
        let b2 = task("b2", "i-b", "side", TaskState::TaskStarting, None);
        let c1 = task("c1", "i-c", "web", TaskState::TaskRunning, Some(true));
        let c2 = task("c2", "i-c", "side", TaskState::TaskFailed, None);
        let d1 = task("d1", "i-d", "web", TaskState::TaskKilled, None);
        let tasks = [&a1, &a2, &b1, &b2, &c1, &c2, &d1];
        let all = instances_of(&tasks);
        assert_eq!(all.len(), 4);
        let planned = planner_instances(&p, &tasks);
        let by_id = |id: &str| planned.iter().find(|i| i.id == id).unwrap().clone();
        // Healthy: every checked container passes (the side car has no check).
        assert_eq!(
            (by_id("i-a").state, by_id("i-a").health),
            (InstanceState::Running, Health::Healthy)
        );
        assert!(by_id("i-a").counts_as_healthy());
        // One container still starting: the instance is starting, its check pending.
        assert_eq!(
            (by_id("i-b").state, by_id("i-b").health),
            (InstanceState::Starting, Health::Pending)
        );
        // One container failed: the instance is going, and counts for nothing.
        assert_eq!(by_id("i-c").state, InstanceState::Killing);
        // Every task ended: not live.
        assert!(planned.iter().all(|i| i.id != "i-d"));
        assert_eq!(instance_state(&by_id("i-a")), "STABLE");
        assert_eq!(instance_state(&by_id("i-b")), "STAGING");
    }
}
