//! Marathon's REST API (`/v2/...` and `/ping`) over the services scheduler.
//!
//! The shapes are Marathon's: apps are the app definition JSON with the counts, tasks and
//! deployments Marathon embeds; errors are `{message}` (404, 409 with the locking deployments,
//! 503), `{message, details}` for a body that is not JSON (400) and Marathon's validation body
//! for a definition that is refused (422). Every change of the apps (create, update, scale,
//! restart, delete, kill and scale) goes through [`Services::deploy`](crate::Services::deploy),
//! so it is planned, checked for locks and committed in one command.
//!
//! These routes run on the leader; a follower forwards them (`/v2/events` streams through the
//! forwarding too). App ids contain slashes, so `/v2/apps/{*path}` is split here into the app
//! and its sub-resource (`/restart`, `/tasks`, `/tasks/{taskId}`, `/versions`,
//! `/versions/{version}`); ids may not end with those names.
//!
//! Pods (`/v2/pods`) are in `crate::pods`, on the same errors and bodies.
//!
//! Not here: group versions, `/v2/artifacts`, `/v2/plugins`, `/v2/eventSubscriptions`
//! (HTTP callbacks), `/v2/schema`, `/metrics` in Marathon's shape, and `DELETE /v2/leader`.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tepui_auth::{Cap, Policy, Routes};
use tepui_services::app::apply_update;
use tepui_services::events::{ApiPostEvent, Event};
use tepui_services::group::Group;
use tepui_services::time::format_timestamp;
use tepui_services::{validate_app, AppDefinition, AppSpec, Deployment, PathId, ValidationErrors};
use tepui_state::{State as Replicated, TaskRecord, TaskState};
use tokio::sync::{broadcast, mpsc};

use tepui_node::{now_ms, Error, ErrorKind};

use crate::{Services, Started, FRAMEWORK_ID, LABEL_APP, LABEL_VERSION};

mod groups;

/// tepui's version, as `/v2/info` reports it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) type Shared = State<Services>;
pub(crate) type Answer = Result<Response, Refusal>;

/// Marathon's endpoints; they run on the leader, behind the forwarding middleware.
pub(crate) fn routes(svc: Services) -> Routes {
    Routes::new()
        .route("/ping", Policy::public_get(), get(ping))
        .route(
            "/v2/apps",
            Policy::new().get(Cap::Read).post(Cap::Write).put(Cap::Write),
            get(list_apps).post(create_app).put(put_apps),
        )
        .route(
            "/v2/apps/{*path}",
            Policy::new()
                .get(Cap::Read)
                .put(Cap::Write)
                .delete(Cap::Write)
                .post(Cap::Write),
            get(get_app_path)
                .put(put_app_path)
                .delete(delete_app_path)
                .post(post_app_path),
        )
        .route(
            "/v2/groups",
            Policy::new()
                .get(Cap::Read)
                .post(Cap::Write)
                .put(Cap::Write)
                .delete(Cap::Write),
            get(root_group)
                .post(groups::create)
                .put(groups::update)
                .delete(groups::delete),
        )
        .route(
            "/v2/groups/{*id}",
            Policy::new()
                .get(Cap::Read)
                .post(Cap::Write)
                .put(Cap::Write)
                .delete(Cap::Write),
            get(group)
                .post(groups::create)
                .put(groups::update)
                .delete(groups::delete),
        )
        .route("/v2/deployments", Policy::new().get(Cap::Read), get(list_deployments))
        .route(
            "/v2/deployments/{id}",
            Policy::new().delete(Cap::Write),
            delete(cancel_deployment),
        )
        .route("/v2/tasks", Policy::new().get(Cap::Read), get(list_tasks))
        .route("/v2/tasks/delete", Policy::new().post(Cap::Write), post(delete_tasks))
        .route("/v2/queue", Policy::new().get(Cap::Read), get(queue))
        .route(
            "/v2/queue/{*path}",
            Policy::new().delete(Cap::Write),
            delete(reset_delay),
        )
        .route(
            "/v2/pods",
            Policy::new().get(Cap::Read).post(Cap::Write),
            get(crate::pods::list).post(crate::pods::create),
        )
        .route(
            "/v2/pods/{*path}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(crate::pods::get_path)
                .put(crate::pods::put_path)
                .delete(crate::pods::delete_path),
        )
        .route("/v2/events", Policy::new().get(Cap::Read), get(events))
        .route("/v2/info", Policy::new().get(Cap::Read), get(info))
        .route("/v2/leader", Policy::new().get(Cap::Read), get(leader))
        .with_state(svc)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A refused request, already in Marathon's shape (or tepui's `{code, message}` for failures
/// of the replicated state, which carry a `message` too). Boxed: results carry it a lot.
pub(crate) struct Refusal(Box<Response>);

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal(Box::new(
            (status, Json(json!({ "message": message.into() }))).into_response(),
        ))
    }

    pub(crate) fn invalid(errors: ValidationErrors) -> Refusal {
        Refusal(Box::new(
            (StatusCode::UNPROCESSABLE_ENTITY, Json(errors)).into_response(),
        ))
    }

    fn bad_json(error: impl std::fmt::Display) -> Refusal {
        let body = json!({
            "message": "Invalid JSON",
            "details": [{"path": "/", "errors": [error.to_string()]}],
        });
        Refusal(Box::new((StatusCode::BAD_REQUEST, Json(body)).into_response()))
    }

    fn no_app(id: &str) -> Refusal {
        Refusal::new(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// A domain error in Marathon's shapes: its validation body for a refused app, the locking
/// deployments with a 409, `{message}` for the rest (tepui's `{code, message}` where Marathon
/// has no shape of its own: the replicated state failing).
impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        match (e.kind, e.detail) {
            (ErrorKind::Invalid, Some(detail)) if e.code == "invalid_app" => Refusal(Box::new(
                (StatusCode::UNPROCESSABLE_ENTITY, Json(detail)).into_response(),
            )),
            (ErrorKind::Conflict, Some(detail)) if e.code == "app_locked" => {
                let mut body = json!({ "message": e.message });
                body["deployments"] = detail["deployments"].clone();
                Refusal(Box::new((StatusCode::CONFLICT, Json(body)).into_response()))
            }
            (ErrorKind::NotFound, _) => Refusal::new(StatusCode::NOT_FOUND, e.message),
            (kind, detail) => Refusal(Box::new(Error { kind, detail, ..e }.into_response())),
        }
    }
}

impl From<tepui_node::WriteError> for Refusal {
    fn from(e: tepui_node::WriteError) -> Refusal {
        Error::from(e).into()
    }
}

// ---------------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------------

/// A query string's parameters in order; a key may repeat (`embed=a&embed=b`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Params(pairs)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, comma-separated values split.
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `?force=true` (or a bare `?force`).
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("" | "true" | "1"))
    }
}

/// Decodes `%XX` and `+` (a space) in one query component; bad escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// App paths
// ---------------------------------------------------------------------------------------------

/// What `/v2/apps/{*path}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppPath {
    App(String),
    Restart(String),
    Tasks(String),
    Task(String, String),
    Versions(String),
    Version(String, String),
}

/// Splits the path after `/v2/apps/` into the app id and its sub-resource. App ids never end
/// with `restart`, `tasks` or `versions`, so a path ending with one names the sub-resource.
/// `/a/tasks/x` is task `x` of app `/a` unless only an app `/a/tasks/x` exists (`exists`
/// answers for an id).
fn split_app_path(raw: &str, exists: impl Fn(&str) -> bool) -> AppPath {
    let segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    let id = |n: usize| format!("/{}", segments[..n].join("/"));
    let n = segments.len();
    match segments.last().copied() {
        Some("restart") => return AppPath::Restart(id(n - 1)),
        Some("tasks") => return AppPath::Tasks(id(n - 1)),
        Some("versions") => return AppPath::Versions(id(n - 1)),
        _ => {}
    }
    // `/tasks/x` directly under the root is an app: the root group is no app.
    if n >= 3 {
        let (app, last) = (id(n - 2), segments[n - 1].to_string());
        let only_whole = !exists(&app) && exists(&id(n));
        match segments[n - 2] {
            "tasks" if !only_whole => return AppPath::Task(app, last),
            "versions" if !only_whole => return AppPath::Version(app, last),
            _ => {}
        }
    }
    AppPath::App(id(n))
}

/// The app id of a path, or 404 when it cannot be one.
fn path_id(raw: &str) -> Result<PathId, Refusal> {
    PathId::parse(raw).map_err(|_| Refusal::no_app(raw))
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// One selector of Marathon's `label` query: `key`, `key==value`, `key!=value`,
/// `key in (a,b)`, `key notin (a,b)`. A backslash escapes the next character.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelSelector {
    Exists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Eq,
    Ne,
    Open,
    Close,
    Comma,
}

fn lex_selectors(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars().peekable();
    let flush = |word: &mut Option<String>, tokens: &mut Vec<Token>| {
        if let Some(w) = word.take() {
            tokens.push(Token::Word(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().ok_or("a backslash at the end escapes nothing")?;
                word.get_or_insert_with(String::new).push(escaped);
            }
            '=' => {
                flush(&mut word, &mut tokens);
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                tokens.push(Token::Eq);
            }
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                flush(&mut word, &mut tokens);
                tokens.push(Token::Ne);
            }
            '(' | ')' | ',' => {
                flush(&mut word, &mut tokens);
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    flush(&mut word, &mut tokens);
    Ok(tokens)
}

/// Parses a whole `label` query: comma-separated selectors, all of which must hold.
fn parse_selectors(s: &str) -> Result<Vec<LabelSelector>, String> {
    let tokens = lex_selectors(s)?;
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.clone()),
        _ => None,
    };
    while i < tokens.len() {
        let key = word(i).ok_or_else(|| format!("a label selector must start with a key in {s:?}"))?;
        i += 1;
        let selector = match tokens.get(i) {
            None | Some(Token::Comma) => LabelSelector::Exists(key),
            Some(Token::Eq) | Some(Token::Ne) => {
                let negated = tokens[i] == Token::Ne;
                i += 1;
                let value = match word(i) {
                    Some(v) => {
                        i += 1;
                        v
                    }
                    None => String::new(),
                };
                if negated {
                    LabelSelector::NotEquals(key, value)
                } else {
                    LabelSelector::Equals(key, value)
                }
            }
            Some(Token::Word(op)) if op == "in" || op == "notin" => {
                let negated = op == "notin";
                i += 1;
                if tokens.get(i) != Some(&Token::Open) {
                    return Err(format!("`{op}` must be followed by a list like (a,b) in {s:?}"));
                }
                i += 1;
                let mut values = Vec::new();
                loop {
                    match tokens.get(i) {
                        Some(Token::Word(v)) => values.push(v.clone()),
                        Some(Token::Comma) => {}
                        Some(Token::Close) => break,
                        _ => return Err(format!("a value list is not closed with ) in {s:?}")),
                    }
                    i += 1;
                }
                i += 1;
                if negated {
                    LabelSelector::NotIn(key, values)
                } else {
                    LabelSelector::In(key, values)
                }
            }
            Some(t) => return Err(format!("unexpected {t:?} after label key {key:?} in {s:?}")),
        };
        out.push(selector);
        match tokens.get(i) {
            None => {}
            Some(Token::Comma) => i += 1,
            Some(t) => {
                return Err(format!(
                    "expected a comma between label selectors, found {t:?} in {s:?}"
                ))
            }
        }
    }
    Ok(out)
}

impl LabelSelector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelSelector::Exists(k) => labels.contains_key(k),
            LabelSelector::Equals(k, v) => labels.get(k) == Some(v),
            LabelSelector::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelSelector::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelSelector::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON of apps and tasks
// ---------------------------------------------------------------------------------------------

/// What is embedded in an app beyond its definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Embed {
    tasks: bool,
    counts: bool,
    deployments: bool,
    last_task_failure: bool,
}

impl Embed {
    /// `GET /v2/apps`: counts and deployments always, as Marathon does, and what `embed` asks.
    fn for_list(p: &Params) -> Embed {
        let asked = p.all("embed");
        let has = |name: &str| asked.iter().any(|e| e == name);
        Embed {
            tasks: has("apps.tasks") || has("apps.failures"),
            counts: true,
            deployments: true,
            last_task_failure: has("apps.lastTaskFailure") || has("apps.failures"),
        }
    }

    fn all() -> Embed {
        Embed {
            tasks: true,
            counts: true,
            deployments: true,
            last_task_failure: true,
        }
    }
}

/// Marathon's task counts of an app.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Counts {
    tasks_staged: usize,
    tasks_running: usize,
    tasks_healthy: usize,
    tasks_unhealthy: usize,
}

fn counts(tasks: &[&TaskRecord]) -> Counts {
    let mut c = Counts::default();
    for t in tasks {
        match t.state {
            TaskState::TaskStaging | TaskState::TaskStarting => c.tasks_staged += 1,
            TaskState::TaskRunning => c.tasks_running += 1,
            _ => {}
        }
        if !t.state.is_terminal() {
            match t.healthy {
                Some(true) => c.tasks_healthy += 1,
                Some(false) => c.tasks_unhealthy += 1,
                None => {}
            }
        }
    }
    c
}

/// Where a task runs, as Marathon shows it.
struct Placement<'a> {
    host: &'a str,
    ip: Option<String>,
}

fn placement<'a>(s: &'a Replicated, t: &TaskRecord) -> Placement<'a> {
    let node = s.nodes.get(&t.agent_id);
    Placement {
        host: node.map(|n| n.name.as_str()).unwrap_or_default(),
        ip: node
            .and_then(|n| n.agent.as_ref())
            .and_then(|a| a.http_addr.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip().to_string()),
    }
}

/// One task in Marathon's shape (`/v2/apps/{id}/tasks`, `/v2/tasks`, embedded in apps).
fn task_json(t: &TaskRecord, app: &str, at: &Placement, service_ports: &[u16]) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(t.id));
    o.insert("appId".into(), json!(app));
    o.insert("host".into(), json!(at.host));
    o.insert("slaveId".into(), json!(t.agent_id.to_string()));
    o.insert("state".into(), json!(t.state.as_str()));
    o.insert(
        "ports".into(),
        json!(t.def.ports.iter().map(|p| p.host_port).collect::<Vec<_>>()),
    );
    o.insert("servicePorts".into(), json!(service_ports));
    o.insert("stagedAt".into(), json!(format_timestamp(t.created_at)));
    if let Some(started) = t.started_at {
        o.insert("startedAt".into(), json!(format_timestamp(started)));
    }
    o.insert(
        "version".into(),
        json!(t.labels.get(LABEL_VERSION).cloned().unwrap_or_default()),
    );
    // A bridge task's own address, as Mesos reports it in its network infos; else its agent's.
    let ip = t.container_ip.map(|ip| ip.to_string()).or_else(|| at.ip.clone());
    let ips: Vec<Value> = ip
        .iter()
        .map(|ip| json!({"ipAddress": ip, "protocol": if ip.contains(':') { "IPv6" } else { "IPv4" }}))
        .collect();
    o.insert("ipAddresses".into(), Value::Array(ips));
    let health: Vec<Value> = t
        .healthy
        .iter()
        .map(|alive| json!({"alive": alive, "taskId": t.id, "instanceId": t.id}))
        .collect();
    o.insert("healthCheckResults".into(), Value::Array(health));
    o.insert("localVolumes".into(), json!([]));
    Value::Object(o)
}

/// Whether an ended task counts as a failure of its app (Marathon's `lastTaskFailure`).
fn is_failure(t: &TaskRecord) -> bool {
    match t.state {
        TaskState::TaskFailed
        | TaskState::TaskError
        | TaskState::TaskLost
        | TaskState::TaskDropped
        | TaskState::TaskGone
        | TaskState::TaskGoneByOperator => true,
        TaskState::TaskKilled => !t.kill_requested,
        _ => false,
    }
}

/// The most recent failure among `tasks`, in Marathon's `lastTaskFailure` shape.
fn last_task_failure(s: &Replicated, app: &str, tasks: &[&TaskRecord]) -> Option<Value> {
    let t = tasks
        .iter()
        .filter(|t| is_failure(t))
        .max_by_key(|t| (t.updated_at, t.id.clone()))?;
    Some(json!({
        "appId": app,
        "host": placement(s, t).host,
        "message": t.message,
        "state": t.state.as_str(),
        "taskId": t.id,
        "timestamp": format_timestamp(t.finished_at.unwrap_or(t.updated_at)),
        "version": t.labels.get(LABEL_VERSION).cloned().unwrap_or_default(),
        "slaveId": t.agent_id.to_string(),
    }))
}

fn service_ports(spec: &AppSpec) -> Vec<u16> {
    if spec.port_definitions.is_empty() {
        spec.port_mappings().iter().map(|m| m.service_port).collect()
    } else {
        spec.port_definitions.iter().map(|d| d.port).collect()
    }
}

/// An app's JSON with what `embed` asks for.
fn app_json(s: &Replicated, spec: &AppSpec, embed: Embed, running: &[Deployment]) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    let Some(o) = v.as_object_mut() else { return v };
    let id = spec.id.to_string();
    let all = crate::tasks_of(s, &spec.id);
    let live: Vec<&TaskRecord> = all.iter().copied().filter(|t| !t.state.is_terminal()).collect();
    if embed.counts {
        if let Ok(Value::Object(c)) = serde_json::to_value(counts(&live)) {
            o.extend(c);
        }
    }
    if embed.deployments {
        let ids: Vec<Value> = running
            .iter()
            .filter(|d| d.affected_apps.contains(&spec.id))
            .map(|d| json!({ "id": d.id }))
            .collect();
        o.insert("deployments".into(), Value::Array(ids));
    }
    if embed.tasks {
        let ports = service_ports(spec);
        let tasks: Vec<Value> = live
            .iter()
            .map(|t| task_json(t, &id, &placement(s, t), &ports))
            .collect();
        o.insert("tasks".into(), Value::Array(tasks));
    }
    if embed.last_task_failure {
        if let Some(f) = last_task_failure(s, &id, &all) {
            o.insert("lastTaskFailure".into(), f);
        }
    }
    v
}

/// `{version, deploymentId}`. A change with nothing to do still gets an id, of a deployment
/// that finished at once, as Marathon answers.
pub(crate) fn started_json(started: &Started) -> Value {
    json!({
        "version": started.version,
        "deploymentId": started.deployment_id.clone().unwrap_or_else(crate::uuid_like),
    })
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// Parses a body as JSON: not JSON at all is Marathon's 400 `Invalid JSON`.
pub(crate) fn body_json(body: &[u8]) -> Result<Value, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad_json("the request body is empty; send a JSON object"));
    }
    serde_json::from_slice(body).map_err(Refusal::bad_json)
}

/// Marathon's path of a field (`/healthChecks(0)/portIndex`) from serde's.
pub(crate) fn marathon_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("({index})")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// An app definition from JSON; a field of the wrong type is a 422 at its path.
fn definition(v: &Value) -> Result<AppDefinition, ValidationErrors> {
    if !v.is_object() {
        return Err(ValidationErrors::single("/", "an app must be a JSON object"));
    }
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = marathon_path(e.path());
        ValidationErrors::single(&path, e.into_inner().to_string())
    })
}

fn validate(def: &AppDefinition) -> Result<AppSpec, ValidationErrors> {
    validate_app(def, &PathId::root(), now_ms())
}

/// Why one app of a `PUT` cannot be put: its definition (reported at its position in a list),
/// or anything else.
enum Bad {
    Invalid(ValidationErrors),
    Refused(Refusal),
}

impl From<ValidationErrors> for Bad {
    fn from(e: ValidationErrors) -> Bad {
        Bad::Invalid(e)
    }
}

impl From<Refusal> for Bad {
    fn from(r: Refusal) -> Bad {
        Bad::Refused(r)
    }
}

impl From<Bad> for Refusal {
    fn from(b: Bad) -> Refusal {
        match b {
            Bad::Invalid(e) => Refusal::invalid(e),
            Bad::Refused(r) => r,
        }
    }
}

pub(crate) fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn api_post_event(svc: &Services, headers: &HeaderMap, uri: &str, spec: AppSpec) {
    svc.emit(Event::ApiPost(Box::new(ApiPostEvent {
        timestamp: format_timestamp(now_ms()),
        client_ip: client_ip(headers),
        uri: uri.to_string(),
        app_definition: spec,
    })));
}

pub(crate) fn json_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Handlers: apps
// ---------------------------------------------------------------------------------------------

async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "pong").into_response()
}

async fn list_apps(State(svc): Shared, RawQuery(q): RawQuery) -> Answer {
    svc.node().linearize().await?;
    let p = Params::parse(q.as_deref());
    let selectors = match p.get("label") {
        Some(l) => parse_selectors(l).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?,
        None => vec![],
    };
    let id_filter = p.get("id").map(str::to_string);
    let cmd_filter = p.get("cmd").map(str::to_lowercase);
    let embed = Embed::for_list(&p);
    let apps: Vec<Value> = svc.node().read(|s| {
        let running = crate::deployments(s);
        crate::apps(s)
            .into_iter()
            .filter(|a| id_filter.as_deref().is_none_or(|f| a.id.to_string().contains(f)))
            .filter(|a| {
                cmd_filter
                    .as_deref()
                    .is_none_or(|f| a.cmd.as_deref().is_some_and(|c| c.to_lowercase().contains(f)))
            })
            .filter(|a| selectors.iter().all(|sel| sel.matches(&a.labels)))
            .map(|a| app_json(s, &a, embed, &running))
            .collect()
    });
    Ok(json_response(StatusCode::OK, json!({ "apps": apps })))
}

/// The caller the gate let through. None means no gate stood in front: refused, never assumed.
pub(crate) type Caller = Option<axum::Extension<tepui_auth::Identity>>;

/// Refuses an app the caller may not run: without an image, or as root, it needs "host".
fn may_run(caller: &Caller, spec: &AppSpec) -> Result<(), Refusal> {
    let Some(axum::Extension(me)) = caller else {
        return Err(Refusal::from(Error::from(tepui_auth::Denied::no_caller())));
    };
    let def = tepui_state::TaskDef {
        image: spec.image().map(str::to_string),
        user: spec.user.clone(),
        volumes: crate::runtime::host_volumes(spec),
        ..tepui_state::TaskDef::default()
    };
    me.may_run(&def).map_err(|d| Refusal::from(Error::from(d)))
}

/// Refuses an app naming a secret nobody wrote: its tasks could never start.
fn secrets_exist(s: &Replicated, spec: &AppSpec) -> Result<(), Refusal> {
    let missing: Vec<(String, String)> = spec
        .secrets
        .iter()
        .filter(|(_, src)| {
            tepui_state::normalize_secret_path(&src.source).map_or(true, |p| !s.secrets.contains_key(&p))
        })
        .map(|(name, src)| (name.clone(), src.source.clone()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut e = tepui_services::validate::ValidationErrors::new();
    for (name, source) in missing {
        e.add(
            &format!("/secrets/{name}/source"),
            format!("no secret {source:?}; write it first with `tepui secret put {source}`"),
        );
    }
    Err(Refusal::invalid(e))
}

async fn create_app(
    State(svc): Shared,
    caller: Caller,
    RawQuery(q): RawQuery,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let v = body_json(&body)?;
    let spec = definition(&v).and_then(|d| validate(&d)).map_err(Refusal::invalid)?;
    may_run(&caller, &spec)?;
    svc.node().linearize().await?;
    svc.node().read(|s| secrets_exist(s, &spec))?;
    if svc.node().read(|s| crate::app(s, &spec.id).is_some()) {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("An app with id [{}] already exists.", spec.id),
        ));
    }
    let id = spec.id.clone();
    let started = svc.deploy(vec![spec], vec![], p.flag("force")).await?;
    let (stored, v) = svc.node().read(|s| {
        let stored = crate::app(s, &id);
        let v = stored.as_ref().map(|a| app_json(s, a, Embed::all(), &[]));
        (stored, v)
    });
    let mut v = v.ok_or_else(|| Refusal::no_app(&id.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        let ids: Vec<Value> = started.deployment_id.iter().map(|d| json!({ "id": d })).collect();
        o.insert("deployments".into(), Value::Array(ids));
    }
    if let Some(stored) = stored {
        api_post_event(&svc, &headers, uri.path(), stored);
    }
    tracing::info!(app = %id, deployment = ?started.deployment_id, "app created");
    let mut resp = json_response(StatusCode::CREATED, v);
    if let Ok(location) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// The definition a `PUT` body asks for, given what is stored: a partial update onto the stored
/// app, `{"version": V}` alone to go back to a stored version, or a whole new app.
fn put_target(
    s: &Replicated,
    id: Option<&PathId>,
    raw_id: &str,
    body: &Value,
    partial: bool,
) -> Result<(AppSpec, bool), Bad> {
    let existing = id.and_then(|id| crate::app(s, id));
    let obj = body
        .as_object()
        .ok_or_else(|| ValidationErrors::single("/", "an app must be a JSON object"))?;
    let revert = obj.keys().all(|k| k == "version" || k == "id") && obj.contains_key("version");
    if revert {
        let id = id.ok_or_else(|| Refusal::no_app(raw_id))?;
        let version = obj.get("version").and_then(Value::as_str).unwrap_or_default();
        if existing.is_none() {
            return Err(Refusal::no_app(raw_id).into());
        }
        let spec = crate::versions(s, id)
            .into_iter()
            .find(|(v, _)| v == version)
            .map(|(_, spec)| spec)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("Version '{version}' of app '{id}' does not exist"),
                )
            })?;
        return Ok((spec, false));
    }
    match existing {
        Some(current) if partial => {
            let def = apply_update(&current, body)?;
            Ok((validate(&def)?, false))
        }
        existing => {
            let mut def = definition(body)?;
            def.id = Some(raw_id.to_string());
            Ok((validate(&def)?, existing.is_none()))
        }
    }
}

async fn put_app(
    svc: &Services,
    caller: &Caller,
    raw_id: &str,
    p: &Params,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let v = body_json(body)?;
    let id = PathId::parse(raw_id).ok();
    let partial = p.get("partialUpdate") != Some("false");
    let mut target = None;
    let started = svc
        .deploy_from(p.flag("force"), |s| {
            let (spec, created) = put_target(s, id.as_ref(), raw_id, &v, partial).map_err(Refusal::from)?;
            may_run(caller, &spec)?;
            secrets_exist(s, &spec)?;
            target = Some((spec.id.clone(), created));
            Ok::<_, Refusal>(vec![spec])
        })
        .await?;
    let (app_id, created) = target.expect("computed before the deployment");
    if let Some(stored) = svc.node().read(|s| crate::app(s, &app_id)) {
        api_post_event(svc, headers, uri, stored);
    }
    tracing::info!(app = %app_id, created, deployment = ?started.deployment_id, "app put");
    if created {
        let mut resp = json_response(StatusCode::CREATED, started_json(&started));
        if let Ok(location) = HeaderValue::from_str(&format!("/v2/apps{app_id}")) {
            resp.headers_mut().insert(header::LOCATION, location);
        }
        return Ok(resp);
    }
    Ok(json_response(StatusCode::OK, started_json(&started)))
}

async fn put_apps(
    State(svc): Shared,
    caller: Caller,
    RawQuery(q): RawQuery,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let v = body_json(&body)?;
    let Value::Array(items) = v else {
        return Err(Refusal::invalid(ValidationErrors::single(
            "/",
            "PUT /v2/apps takes a JSON array of apps",
        )));
    };
    let mut ids: Vec<PathId> = vec![];
    let started = svc.deploy_from(p.flag("force"), |s| {
        let mut errors = ValidationErrors::new();
        let mut specs: Vec<AppSpec> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("/({i})");
            let Some(raw_id) = item.get("id").and_then(Value::as_str) else {
                errors.add(&format!("{prefix}/id"), "must not be empty");
                continue;
            };
            let id = PathId::parse(raw_id).ok();
            match put_target(s, id.as_ref(), raw_id, item, true) {
                Ok((spec, _)) if specs.iter().any(|a| a.id == spec.id) => {
                    errors.add(&format!("{prefix}/id"), format!("duplicate app id {}", spec.id))
                }
                Ok((spec, _)) => {
                    may_run(&caller, &spec)?;
                    secrets_exist(s, &spec)?;
                    specs.push(spec)
                }
                Err(Bad::Invalid(e)) => errors.extend_prefixed(&prefix, e),
                Err(Bad::Refused(refusal)) => return Err(refusal),
            }
        }
        ids = specs.iter().map(|a| a.id.clone()).collect();
        errors.into_result(specs).map_err(Refusal::invalid)
    });
    let started = started.await?;
    for id in ids {
        if let Some(stored) = svc.node().read(|s| crate::app(s, &id)) {
            api_post_event(&svc, &headers, uri.path(), stored);
        }
    }
    Ok(json_response(StatusCode::OK, started_json(&started)))
}

async fn get_app_path(State(svc): Shared, Path(path): Path<String>) -> Answer {
    svc.node().linearize().await?;
    let target = svc.node().read(|s| split_app_path(&path, |id| exists(s, id)));
    match target {
        AppPath::App(raw) => {
            let id = path_id(&raw)?;
            let v = svc.node().read(|s| {
                let running = crate::deployments(s);
                crate::app(s, &id).map(|a| app_json(s, &a, Embed::all(), &running))
            });
            let v = v.ok_or_else(|| Refusal::no_app(&raw))?;
            Ok(json_response(StatusCode::OK, json!({ "app": v })))
        }
        AppPath::Tasks(raw) => {
            let id = path_id(&raw)?;
            let tasks = svc.node().read(|s| {
                let spec = crate::app(s, &id)?;
                let ports = service_ports(&spec);
                let id = id.to_string();
                Some(
                    crate::tasks_of(s, &spec.id)
                        .into_iter()
                        .filter(|t| !t.state.is_terminal())
                        .map(|t| task_json(t, &id, &placement(s, t), &ports))
                        .collect::<Vec<_>>(),
                )
            });
            let tasks = tasks.ok_or_else(|| Refusal::no_app(&raw))?;
            Ok(json_response(StatusCode::OK, json!({ "tasks": tasks })))
        }
        AppPath::Task(raw, task) => {
            let id = path_id(&raw)?;
            let t = svc.node().read(|s| {
                let spec = crate::app(s, &id)?;
                let ports = service_ports(&spec);
                crate::tasks_of(s, &id)
                    .into_iter()
                    .find(|t| t.id == task)
                    .map(|t| task_json(t, &id.to_string(), &placement(s, t), &ports))
            });
            let t = t.ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("Task '{task}' does not exist")))?;
            Ok(json_response(StatusCode::OK, json!({ "task": t })))
        }
        AppPath::Versions(raw) => {
            let id = path_id(&raw)?;
            let versions = svc.node().read(|s| crate::versions(s, &id));
            if versions.is_empty() {
                return Err(Refusal::no_app(&raw));
            }
            let list: Vec<&String> = versions.iter().rev().map(|(v, _)| v).collect();
            Ok(json_response(StatusCode::OK, json!({ "versions": list })))
        }
        AppPath::Version(raw, version) => {
            let id = path_id(&raw)?;
            let spec = svc
                .node()
                .read(|s| crate::versions(s, &id).into_iter().find(|(v, _)| *v == version));
            let (_, spec) = spec.ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("App '{raw}' does not exist in version {version}"),
                )
            })?;
            Ok(json_response(
                StatusCode::OK,
                serde_json::to_value(&spec).unwrap_or_default(),
            ))
        }
        AppPath::Restart(_) => Err(method_not_allowed("GET")),
    }
}

fn exists(s: &Replicated, raw: &str) -> bool {
    PathId::parse(raw).is_ok_and(|id| s.apps.contains_key(&id.to_string()))
}

fn method_not_allowed(method: &str) -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on this resource"),
    )
}

async fn put_app_path(
    State(svc): Shared,
    caller: Caller,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let target = svc.node().read(|s| split_app_path(&path, |id| exists(s, id)));
    match target {
        AppPath::App(raw) => put_app(&svc, &caller, &raw, &p, uri.path(), &headers, &body).await,
        _ => Err(method_not_allowed("PUT")),
    }
}

async fn post_app_path(State(svc): Shared, Path(path): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let p = Params::parse(q.as_deref());
    let target = svc.node().read(|s| split_app_path(&path, |id| exists(s, id)));
    let AppPath::Restart(raw) = target else {
        return Err(method_not_allowed("POST"));
    };
    let id = path_id(&raw)?;
    svc.node().linearize().await?;
    let spec = svc
        .node()
        .read(|s| crate::app(s, &id))
        .ok_or_else(|| Refusal::no_app(&raw))?;
    let started = svc.restart(spec.restarted(now_ms()), p.flag("force")).await?;
    tracing::info!(app = %id, deployment = ?started.deployment_id, "app restarted");
    Ok(json_response(StatusCode::OK, started_json(&started)))
}

async fn delete_app_path(State(svc): Shared, Path(path): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let p = Params::parse(q.as_deref());
    svc.node().linearize().await?;
    let target = svc.node().read(|s| split_app_path(&path, |id| exists(s, id)));
    match target {
        AppPath::App(raw) => {
            let id = path_id(&raw)?;
            let started = svc.deploy(vec![], vec![id.clone()], p.flag("force")).await?;
            tracing::info!(app = %id, deployment = ?started.deployment_id, "app deleted");
            Ok(json_response(StatusCode::OK, started_json(&started)))
        }
        AppPath::Task(raw, task) => {
            let id = path_id(&raw)?;
            let known = svc.node().read(|s| {
                crate::app(s, &id)?;
                Some(
                    crate::tasks_of(s, &id)
                        .iter()
                        .any(|t| t.id == task && !t.state.is_terminal()),
                )
            });
            match known {
                None => return Err(Refusal::no_app(&raw)),
                Some(false) => {
                    return Err(Refusal::new(
                        StatusCode::NOT_FOUND,
                        format!("Task '{task}' does not exist"),
                    ))
                }
                Some(true) => {}
            }
            kill_instances(&svc, BTreeMap::from([(id, vec![task])]), &p, true).await
        }
        AppPath::Tasks(raw) => {
            let id = path_id(&raw)?;
            let host = p.get("host").map(str::to_string);
            let tasks = svc.node().read(|s| {
                crate::app(s, &id)?;
                Some(
                    crate::tasks_of(s, &id)
                        .into_iter()
                        .filter(|t| !t.state.is_terminal())
                        .filter(|t| host.as_deref().is_none_or(|h| placement(s, t).host == h))
                        .map(|t| t.id.clone())
                        .collect::<Vec<_>>(),
                )
            });
            let tasks = tasks.ok_or_else(|| Refusal::no_app(&raw))?;
            kill_instances(&svc, BTreeMap::from([(id, tasks)]), &p, false).await
        }
        _ => Err(method_not_allowed("DELETE")),
    }
}

/// Kills instances, by app. With `?scale=true` the apps' instance counts go down by as many,
/// through one deployment; the kills go first, so the scheduler never picks other victims.
async fn kill_instances(svc: &Services, by_app: BTreeMap<PathId, Vec<String>>, p: &Params, single: bool) -> Answer {
    let scale = p.flag("scale");
    let force = p.flag("force");
    let mut scaled = Vec::new();
    if scale {
        let (specs, locked) = svc.node().read(|s| {
            let specs: Vec<AppSpec> = by_app
                .iter()
                .filter_map(|(id, tasks)| {
                    let mut spec = crate::app(s, id)?;
                    spec.instances = spec.instances.saturating_sub(tasks.len() as u32);
                    Some(spec)
                })
                .collect();
            let ids: Vec<PathId> = by_app.keys().cloned().collect();
            let running = crate::deployments(s);
            let locked: Vec<String> = tepui_services::deployment::conflicting(&running, &ids)
                .into_iter()
                .map(|d| d.id.clone())
                .collect();
            (specs, locked)
        });
        if !locked.is_empty() && !force {
            return Err(crate::locked(locked).into());
        }
        scaled = specs;
    }
    let mut killed = Vec::new();
    for (app, tasks) in &by_app {
        for task in tasks {
            svc.master().kill(task).await?;
            tracing::info!(%app, task = %task, scale, "instance killed");
            killed.push((app.clone(), task.clone()));
        }
    }
    if scale {
        let started = svc.deploy(scaled, vec![], force).await?;
        return Ok(json_response(StatusCode::OK, started_json(&started)));
    }
    let tasks: Vec<Value> = svc.node().read(|s| {
        killed
            .iter()
            .filter_map(|(app, id)| {
                let t = s.tasks.get(id)?;
                let ports = crate::app(s, app).map(|a| service_ports(&a)).unwrap_or_default();
                Some(task_json(t, &app.to_string(), &placement(s, t), &ports))
            })
            .collect()
    });
    if single {
        if let Some(t) = tasks.into_iter().next() {
            return Ok(json_response(StatusCode::OK, json!({ "task": t })));
        }
        return Ok(json_response(StatusCode::OK, json!({ "task": null })));
    }
    Ok(json_response(StatusCode::OK, json!({ "tasks": tasks })))
}

// ---------------------------------------------------------------------------------------------
// Handlers: groups, deployments, tasks, queue
// ---------------------------------------------------------------------------------------------

/// Marathon's groups carry `pods` too; tepui has none.
fn group_json(g: &Group) -> Value {
    let mut v = serde_json::to_value(g).unwrap_or_else(|_| json!({}));
    add_pods(&mut v);
    v
}

fn add_pods(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert("pods".into(), json!([]));
        if let Some(Value::Array(groups)) = o.get_mut("groups") {
            groups.iter_mut().for_each(add_pods);
        }
    }
}

fn tree(s: &Replicated) -> Group {
    let apps = crate::apps(s);
    let version = apps.iter().map(|a| a.version.clone()).max();
    let mut root = Group::from_apps(apps);
    root.version = Some(version.unwrap_or_else(|| format_timestamp(now_ms())));
    root
}

async fn root_group(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    let v = svc.node().read(|s| group_json(&tree(s)));
    Ok(json_response(StatusCode::OK, v))
}

async fn group(State(svc): Shared, Path(raw): Path<String>) -> Answer {
    svc.node().linearize().await?;
    let missing = || Refusal::new(StatusCode::NOT_FOUND, format!("Group '/{raw}' does not exist"));
    let id = PathId::parse(&raw).map_err(|_| missing())?;
    let v = svc.node().read(|s| tree(s).group(&id).map(group_json));
    Ok(json_response(StatusCode::OK, v.ok_or_else(missing)?))
}

async fn list_deployments(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    let list: Vec<Value> = svc.node().read(|s| {
        crate::deployments(s)
            .iter()
            .filter_map(|d| serde_json::to_value(d.info()).ok())
            .collect()
    });
    Ok(json_response(StatusCode::OK, Value::Array(list)))
}

async fn cancel_deployment(State(svc): Shared, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let p = Params::parse(q.as_deref());
    let force = p.flag("force");
    let answer = svc.cancel_deployment(&id, force).await?;
    tracing::info!(deployment = %id, force, "deployment cancelled");
    match answer {
        Some(started) => Ok(json_response(StatusCode::OK, started_json(&started))),
        None => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

/// `?status=running` and the like, as task states.
fn status_filter(p: &Params) -> Result<Vec<TaskState>, Refusal> {
    p.all("status")
        .iter()
        .map(|s| {
            TaskState::parse(&format!("TASK_{}", s.to_uppercase())).ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown task status {s:?}; use running, staging, starting, killing or unreachable"),
                )
            })
        })
        .collect()
}

async fn list_tasks(State(svc): Shared, RawQuery(q): RawQuery) -> Answer {
    let p = Params::parse(q.as_deref());
    let wanted = status_filter(&p)?;
    svc.node().linearize().await?;
    let tasks: Vec<Value> = svc.node().read(|s| {
        let ports: BTreeMap<String, Vec<u16>> = crate::apps(s)
            .iter()
            .map(|a| (a.id.to_string(), service_ports(a)))
            .collect();
        let mut live: Vec<&TaskRecord> = s
            .tasks
            .values()
            .filter(|t| t.framework_id == FRAMEWORK_ID && !t.state.is_terminal())
            .filter(|t| wanted.is_empty() || wanted.contains(&t.state))
            .collect();
        live.sort_by_key(|t| (t.created_at, t.id.clone()));
        live.into_iter()
            .filter_map(|t| {
                let app = t.labels.get(LABEL_APP)?;
                let ports = ports.get(app).map(Vec::as_slice).unwrap_or_default();
                Some(task_json(t, app, &placement(s, t), ports))
            })
            .collect()
    });
    Ok(json_response(StatusCode::OK, json!({ "tasks": tasks })))
}

async fn delete_tasks(State(svc): Shared, RawQuery(q): RawQuery, body: Bytes) -> Answer {
    let p = Params::parse(q.as_deref());
    let v = body_json(&body)?;
    let ids: Vec<String> = match v.get("ids") {
        Some(Value::Array(ids)) if ids.iter().all(Value::is_string) => {
            ids.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()
        }
        _ => {
            return Err(Refusal::invalid(ValidationErrors::single(
                "/ids",
                "must be a list of task ids",
            )))
        }
    };
    svc.node().linearize().await?;
    let grouped = svc.node().read(|s| {
        let mut by_app: BTreeMap<PathId, Vec<String>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for id in ids.iter().collect::<BTreeSet<_>>() {
            let app = s
                .tasks
                .get(id)
                .filter(|t| t.framework_id == FRAMEWORK_ID && !t.state.is_terminal())
                .and_then(|t| t.labels.get(LABEL_APP))
                .and_then(|a| PathId::parse(a).ok());
            match app {
                Some(app) => by_app.entry(app).or_default().push(id.clone()),
                None => unknown.push(id.clone()),
            }
        }
        (by_app, unknown)
    });
    let (by_app, unknown) = grouped;
    if !unknown.is_empty() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "no running instances with the ids {}; nothing was killed",
                unknown.join(", ")
            ),
        ));
    }
    // `wipe` forgets instances in Marathon; tepui's instances are their tasks, which a kill ends.
    kill_instances(&svc, by_app, &p, false).await
}

async fn queue(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    let items: Vec<Value> = svc.node().read(|s| {
        svc.queue_items(s)
            .into_iter()
            .map(|q| {
                let mut o = Map::new();
                o.insert("app".into(), serde_json::to_value(&q.app).unwrap_or_default());
                o.insert("count".into(), json!(q.count));
                let delay = q
                    .delay
                    .and_then(|d| serde_json::to_value(d).ok())
                    .unwrap_or_else(|| json!({"timeLeftSeconds": 0, "overdue": true}));
                o.insert("delay".into(), delay);
                o.insert(
                    "processedOffersSummary".into(),
                    serde_json::to_value(&q.summary).unwrap_or_default(),
                );
                o.insert("role".into(), json!("*"));
                if let Some(why) = q.explanation {
                    o.insert("why".into(), json!(why));
                }
                Value::Object(o)
            })
            .collect()
    });
    Ok(json_response(StatusCode::OK, json!({ "queue": items })))
}

async fn reset_delay(State(svc): Shared, Path(path): Path<String>) -> Answer {
    let Some(raw) = path.strip_suffix("/delay") else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no such resource /v2/queue/{path}"),
        ));
    };
    let missing = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!("Application /{} not found in tasks queue.", raw.trim_start_matches('/')),
        )
    };
    let id = PathId::parse(raw).map_err(|_| missing())?;
    svc.node().linearize().await?;
    if svc.reset_delay(&id) {
        tracing::info!(app = %id, "launch delay reset");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(missing())
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers: events, info, leader
// ---------------------------------------------------------------------------------------------

/// How often an idle event stream gets a comment line, so a reader that left is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Encoded events a slow reader may have pending before its stream is cut.
const EVENT_BUFFER: usize = 1024;

/// Whether an event passes `?event_type=` (no filter passes everything).
fn wanted(filter: &[String], event_type: &str) -> bool {
    filter.is_empty() || filter.iter().any(|f| f == event_type)
}

fn sse(event_type: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event_type}\ndata: {data}\n\n"))
}

async fn events(State(svc): Shared, RawQuery(q): RawQuery, headers: HeaderMap) -> Answer {
    svc.node().linearize().await?;
    let p = Params::parse(q.as_deref());
    let filter = p.all("event_type");
    let Some((rx, permit)) = svc.subscribe() else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Too many event streams: {} are open on this leader, the most it serves; close one or retry later",
                crate::MAX_EVENT_STREAMS
            ),
        ));
    };
    let (tx, out) = mpsc::channel::<Bytes>(EVENT_BUFFER);
    let _ = tx.try_send(Bytes::from_static(b": tepui event stream\n\n"));
    if wanted(&filter, "event_stream_attached") {
        let attached = json!({
            "remoteAddress": client_ip(&headers),
            "eventType": "event_stream_attached",
            "timestamp": format_timestamp(now_ms()),
        });
        let _ = tx.try_send(sse("event_stream_attached", &attached.to_string()));
    }
    tracing::info!(filter = ?filter, "event stream attached");
    tokio::spawn(async move {
        follow_events(svc, rx, filter, tx).await;
        drop(permit);
    });
    let stream = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|b| (Ok::<_, Infallible>(b), out))
    });
    let body = Body::from_stream(stream);
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Relays events until the reader leaves, falls too far behind, or this server stops leading.
async fn follow_events(
    svc: Services,
    mut rx: broadcast::Receiver<Event>,
    filter: Vec<String>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut leadership = svc.node().watch_leadership();
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => break,
            e = rx.recv() => match e {
                Ok(e) if wanted(&filter, e.event_type()) => Some(Bytes::from(e.to_sse())),
                Ok(_) => None,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(missed = n, "event stream ends: its reader fell behind");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = leadership.changed() => {
                if changed.is_err() || !svc.node().is_leader() {
                    tracing::info!("event stream ends: this server no longer leads");
                    break;
                }
                None
            }
            _ = keepalive.tick() => Some(Bytes::from_static(b":\n\n")),
        };
        if let Some(chunk) = chunk {
            if tx.try_send(chunk).is_err() {
                tracing::info!("event stream ends: its reader is gone or too slow");
                break;
            }
        }
    }
}

async fn info(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    let port = svc
        .node()
        .info()
        .http_addr
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .unwrap_or(5050);
    let timeout = svc.config().deployment_timeout.as_secs();
    let v = json!({
        "name": "tepui",
        "version": VERSION,
        "buildref": "",
        "elected": svc.node().is_leader(),
        "leader": svc.node().info().http_addr,
        "frameworkId": FRAMEWORK_ID,
        "marathon_config": {
            "master": svc.node().info().cluster_addr,
            "framework_name": FRAMEWORK_ID,
            "failover_timeout": 7 * 24 * 3600,
            "hostname": svc.node().info().name,
            "ha": true,
            "checkpoint": true,
            "mesos_role": "*",
            "mesos_user": "root",
            "webui_url": null,
            "deployment_timeout_seconds": timeout,
        },
        "zookeeper_config": {},
        "event_subscriber": null,
        "http_config": {
            "http_port": port,
            "https_port": null,
        },
    });
    Ok(json_response(StatusCode::OK, v))
}

async fn leader(State(svc): Shared) -> Answer {
    svc.node().linearize().await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "leader": svc.node().info().http_addr }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn app_paths_split_off_their_sub_resources() {
        let none = |_: &str| false;
        assert_eq!(split_app_path("web", none), AppPath::App("/web".into()));
        assert_eq!(split_app_path("prod/web", none), AppPath::App("/prod/web".into()));
        assert_eq!(split_app_path("prod/web/", none), AppPath::App("/prod/web".into()));
        assert_eq!(
            split_app_path("prod/web/restart", none),
            AppPath::Restart("/prod/web".into())
        );
        assert_eq!(
            split_app_path("prod/web/tasks", none),
            AppPath::Tasks("/prod/web".into())
        );
        assert_eq!(
            split_app_path("prod/web/tasks/prod_web.instance-1", none),
            AppPath::Task("/prod/web".into(), "prod_web.instance-1".into())
        );
        assert_eq!(
            split_app_path("prod/web/versions", none),
            AppPath::Versions("/prod/web".into())
        );
        assert_eq!(
            split_app_path("prod/web/versions/2024-01-01T00:00:00.000Z", none),
            AppPath::Version("/prod/web".into(), "2024-01-01T00:00:00.000Z".into())
        );
        // A group named `tasks` directly under the root is not a task of the root.
        assert_eq!(split_app_path("tasks/x", none), AppPath::App("/tasks/x".into()));
    }

    #[test]
    fn an_app_whose_id_looks_like_a_task_path_is_found() {
        let only_whole = |id: &str| id == "/a/tasks/x";
        assert_eq!(
            split_app_path("a/tasks/x", only_whole),
            AppPath::App("/a/tasks/x".into())
        );
        let both = |id: &str| id == "/a/tasks/x" || id == "/a";
        assert_eq!(
            split_app_path("a/tasks/x", both),
            AppPath::Task("/a".into(), "x".into())
        );
    }

    #[test]
    fn query_parameters_repeat_and_decode() {
        let p = Params::parse(Some(
            "embed=apps.tasks&embed=apps.counts,apps.deployments&label=tier%3D%3Dweb&force&x=a+b",
        ));
        assert_eq!(p.all("embed"), ["apps.tasks", "apps.counts", "apps.deployments"]);
        assert_eq!(p.get("label"), Some("tier==web"));
        assert!(p.flag("force"));
        assert!(!p.flag("scale"));
        assert_eq!(p.get("x"), Some("a b"));
        let raw = Params::parse(Some("label=tier==web"));
        assert_eq!(raw.get("label"), Some("tier==web"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(Params::parse(None), Params::default());
    }

    #[test]
    fn label_selectors_parse() {
        use LabelSelector::*;
        assert_eq!(parse_selectors("tier").unwrap(), [Exists("tier".into())]);
        assert_eq!(
            parse_selectors("tier==web").unwrap(),
            [Equals("tier".into(), "web".into())]
        );
        assert_eq!(
            parse_selectors("tier != web, env").unwrap(),
            [NotEquals("tier".into(), "web".into()), Exists("env".into())]
        );
        assert_eq!(
            parse_selectors("env in (prod, qa),tier notin (db)").unwrap(),
            [
                In("env".into(), vec!["prod".into(), "qa".into()]),
                NotIn("tier".into(), vec!["db".into()])
            ]
        );
        assert_eq!(
            parse_selectors(r"a\,b==c\ d").unwrap(),
            [Equals("a,b".into(), "c d".into())]
        );
        assert_eq!(
            parse_selectors("tier=web").unwrap(),
            [Equals("tier".into(), "web".into())]
        );
        assert!(parse_selectors("env in prod").is_err());
        assert!(parse_selectors("env in (prod").is_err());
        assert!(parse_selectors("==web").is_err());
        assert!(parse_selectors("a b").is_err());
        assert!(parse_selectors("a\\").is_err());
    }

    #[test]
    fn label_selectors_match() {
        let l = labels(&[("tier", "web"), ("env", "prod")]);
        let all = |q: &str| parse_selectors(q).unwrap().iter().all(|s| s.matches(&l));
        assert!(all("tier"));
        assert!(!all("owner"));
        assert!(all("tier==web,env==prod"));
        assert!(!all("tier==web,env==qa"));
        assert!(all("tier!=db"));
        assert!(all("owner!=x"), "an absent label is not equal to anything");
        assert!(all("env in (qa,prod)"));
        assert!(!all("env notin (qa,prod)"));
        assert!(all("owner notin (x)"));
        assert!(!all("owner in (x)"));
    }

    fn task(id: &str, state: TaskState, healthy: Option<bool>) -> TaskRecord {
        let def = tepui_state::TaskDef {
            args: vec!["/bin/sh".into(), "-c".into(), "sleep 1000".into()],
            cpus_milli: 100,
            mem_mb: 32,
            ports: vec![tepui_state::PortDef {
                name: None,
                host_port: 31005,
                container_port: 0,
                protocol: "tcp".into(),
            }],
            kill_grace_ms: 3000,
            ..tepui_state::TaskDef::default()
        };
        TaskRecord {
            state,
            message: "exited with 1".into(),
            updated_at: 5_000,
            started_at: Some(2_000),
            framework_id: FRAMEWORK_ID.into(),
            role: "*".into(),
            healthy,
            labels: BTreeMap::from([
                (LABEL_APP.to_string(), "/web".to_string()),
                (LABEL_VERSION.to_string(), "1970-01-01T00:00:01.000Z".to_string()),
            ]),
            ..TaskRecord::staging(id, "/web", 7, def, 1_000)
        }
    }

    #[test]
    fn task_json_has_marathons_fields() {
        let t = task("web.instance-1", TaskState::TaskRunning, Some(true));
        let at = Placement {
            host: "a1",
            ip: Some("127.0.21.2".into()),
        };
        let v = task_json(&t, "/web", &at, &[10000]);
        assert_eq!(v["id"], "web.instance-1");
        assert_eq!(v["appId"], "/web");
        assert_eq!(v["host"], "a1");
        assert_eq!(v["slaveId"], "7");
        assert_eq!(v["state"], "TASK_RUNNING");
        assert_eq!(v["ports"], json!([31005]));
        assert_eq!(v["servicePorts"], json!([10000]));
        assert_eq!(v["stagedAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["startedAt"], "1970-01-01T00:00:02.000Z");
        assert_eq!(v["version"], "1970-01-01T00:00:01.000Z");
        assert_eq!(
            v["ipAddresses"][0],
            json!({"ipAddress": "127.0.21.2", "protocol": "IPv4"})
        );
        assert_eq!(v["healthCheckResults"][0]["alive"], true);
        let bridged = TaskRecord {
            container_ip: Some("10.213.0.5".parse().unwrap()),
            ..t.clone()
        };
        assert_eq!(
            task_json(&bridged, "/web", &at, &[])["ipAddresses"],
            json!([{"ipAddress": "10.213.0.5", "protocol": "IPv4"}])
        );
        let staging = TaskRecord {
            started_at: None,
            healthy: None,
            ..task("web.instance-2", TaskState::TaskStaging, None)
        };
        let v = task_json(&staging, "/web", &Placement { host: "a1", ip: None }, &[]);
        assert!(v.get("startedAt").is_none());
        assert_eq!(v["healthCheckResults"], json!([]));
        assert_eq!(v["ipAddresses"], json!([]));
    }

    #[test]
    fn counts_and_failures() {
        let running = task("1", TaskState::TaskRunning, Some(true));
        let sick = task("2", TaskState::TaskRunning, Some(false));
        let staging = task("3", TaskState::TaskStaging, None);
        let starting = task("4", TaskState::TaskStarting, None);
        let c = counts(&[&running, &sick, &staging, &starting]);
        assert_eq!(
            c,
            Counts {
                tasks_staged: 2,
                tasks_running: 2,
                tasks_healthy: 1,
                tasks_unhealthy: 1
            }
        );
        let failed = task("5", TaskState::TaskFailed, None);
        let killed_on_purpose = TaskRecord {
            kill_requested: true,
            ..task("6", TaskState::TaskKilled, None)
        };
        let killed_behind_our_back = task("7", TaskState::TaskKilled, None);
        assert!(is_failure(&failed));
        assert!(!is_failure(&killed_on_purpose));
        assert!(is_failure(&killed_behind_our_back));
        assert!(!is_failure(&running));
    }

    #[test]
    fn marathon_paths_of_bad_fields() {
        let v = json!({"id": "/a", "cmd": "x", "healthChecks": [{"portIndex": "zero"}]});
        let Err(e) = definition(&v) else {
            panic!("a string port index is refused")
        };
        assert_eq!(e.details[0].path, "/healthChecks(0)/portIndex");
        assert!(definition(&json!([1]))
            .unwrap_err()
            .has("/", "an app must be a JSON object"));
        let e: Result<AppDefinition, _> = serde_path_to_error::deserialize(json!({"cpus": "lots"}));
        assert_eq!(marathon_path(e.unwrap_err().path()), "/cpus");
        let e: Result<AppDefinition, _> =
            serde_path_to_error::deserialize(json!({"healthChecks": [{}, {"portIndex": "x"}]}));
        assert_eq!(marathon_path(e.unwrap_err().path()), "/healthChecks(1)/portIndex");
        assert!(body_json(b"{not json").is_err());
        assert!(body_json(b"  ").is_err());
    }

    #[test]
    fn groups_carry_empty_pods() {
        let app = validate_app(
            &AppDefinition {
                id: Some("/prod/web".into()),
                cmd: Some("x".into()),
                ..AppDefinition::default()
            },
            &PathId::root(),
            0,
        )
        .unwrap();
        let v = group_json(&Group::from_apps([app]));
        assert_eq!(v["id"], "/");
        assert_eq!(v["pods"], json!([]));
        assert_eq!(v["groups"][0]["id"], "/prod");
        assert_eq!(v["groups"][0]["pods"], json!([]));
        assert_eq!(v["groups"][0]["apps"][0]["id"], "/prod/web");
    }

    #[test]
    fn event_filters() {
        assert!(wanted(&[], "deployment_success"));
        let f = vec!["deployment_success".to_string(), "status_update_event".to_string()];
        assert!(wanted(&f, "status_update_event"));
        assert!(!wanted(&f, "api_post_event"));
        assert_eq!(sse("x", "{}"), Bytes::from_static(b"event: x\ndata: {}\n\n"));
    }
}
