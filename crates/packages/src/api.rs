//! Cosmos's HTTP API: `/package/{search,describe,list-versions,render,install,list,uninstall}`,
//! `/package/repository/{list,add,delete}`, `/cosmos/service/{describe,update}` (DC/OS's
//! path for Cosmos's service calls: an upgrade) and `/capabilities`, in Cosmos's JSON and media
//! types (`application/vnd.dcos.package.install-request+json;charset=utf-8;version=v1` in,
//! `...install-response+json;charset=utf-8;version=v2` out, chosen by `Accept`; plain
//! `application/json` is taken too), with its error shape `{type, message, data}`.
//!
//! The handlers run on the leader. An install is recorded first (claiming its app id), then
//! deployed through the backend as the caller; if a deployment call is refused, what was made
//! is removed again with the record. An uninstall removes what the record lists, then the
//! record. An upgrade renders the new version (or options), updates each app (Marathon's
//! rolling deployment), creates, changes or removes jobs and schedules, and records the result.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tepui_auth::{Cap, Denied, Identity, Policy, Routes};
use tepui_node::{now_ms, Node, WriteError};
use tepui_state::{ApplyError, Command, PackageInstall, PackageRepo};

use crate::backend::{refusal_text, Backend, Caller};
use crate::catalog::{Catalog, LookupError};
use crate::fetch;
use crate::mustache::merge;
use crate::render::{self, RenderError, Rendered};
use crate::universe::Package;

#[derive(Clone)]
struct Packages {
    node: Node,
    backend: Backend,
}

/// The routes; they run on the leader (installs read and write the replicated state, and
/// deploy through the leader's own routes).
pub fn routes(node: Node, backend: Backend) -> Routes {
    Routes::new()
        .route("/package/search", Policy::new().post(Cap::Read), post(search))
        .route("/package/describe", Policy::new().post(Cap::Read), post(describe))
        .route(
            "/package/list-versions",
            Policy::new().post(Cap::Read),
            post(list_versions),
        )
        .route("/package/render", Policy::new().post(Cap::Read), post(render_package))
        .route("/package/install", Policy::new().post(Cap::Write), post(install))
        .route("/package/list", Policy::new().post(Cap::Read), post(list))
        .route("/package/uninstall", Policy::new().post(Cap::Write), post(uninstall))
        .route(
            "/package/repository/list",
            Policy::new().post(Cap::Read),
            post(repo_list),
        )
        .route(
            "/package/repository/add",
            Policy::new().post(Cap::Operator),
            post(repo_add),
        )
        .route(
            "/package/repository/delete",
            Policy::new().post(Cap::Operator),
            post(repo_delete),
        )
        .route(
            "/cosmos/service/describe",
            Policy::new().post(Cap::Read),
            post(service_describe),
        )
        .route(
            "/cosmos/service/update",
            Policy::new().post(Cap::Write),
            post(service_update),
        )
        .route("/capabilities", Policy::new().get(Cap::Read), get(capabilities))
        .with_state(Packages { node, backend })
}

// ---------------------------------------------------------------------------------------------
// Cosmos's errors and media types
// ---------------------------------------------------------------------------------------------

const ERROR_TYPE: &str = "application/vnd.dcos.package.error+json;charset=utf-8;version=v1";

/// A refusal in Cosmos's shape: `{type, message, data?}` with its media type.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    kind: String,
    message: String,
    data: Option<Value>,
}

type Answer = Result<Response, Refusal>;

impl Refusal {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            kind: kind.to_string(),
            message: message.into(),
            data: None,
        }
    }

    fn bad(kind: &str, message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, kind, message)
    }

    fn data(mut self, data: Value) -> Refusal {
        self.data = Some(data);
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({ "type": self.kind, "message": self.message });
        if let Some(d) = self.data {
            body["data"] = d;
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ERROR_TYPE));
        resp
    }
}

impl From<tepui_node::Error> for Refusal {
    fn from(e: tepui_node::Error) -> Refusal {
        let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Refusal::new(status, &e.code, e.message)
    }
}

impl From<WriteError> for Refusal {
    fn from(e: WriteError) -> Refusal {
        tepui_node::Error::from(e).into()
    }
}

impl From<LookupError> for Refusal {
    fn from(e: LookupError) -> Refusal {
        let message = e.to_string();
        match e {
            LookupError::PackageNotFound { name } => {
                Refusal::bad("PackageNotFound", message).data(json!({ "packageName": name }))
            }
            LookupError::VersionNotFound { name, version } => {
                Refusal::bad("VersionNotFound", message).data(json!({ "packageName": name, "packageVersion": version }))
            }
        }
    }
}

impl From<RenderError> for Refusal {
    fn from(e: RenderError) -> Refusal {
        let message = e.to_string();
        match e {
            RenderError::JsonSchemaMismatch(violations) => {
                let errors: Vec<Value> = violations
                    .iter()
                    .map(|v| {
                        json!({
                            "level": "error",
                            "instance": {"pointer": v.path},
                            "schema": {"loadingURI": "#", "pointer": v.schema_path.trim_end_matches(&format!("/{}", v.keyword))},
                            "domain": "validation",
                            "keyword": v.keyword,
                            "message": v.message,
                        })
                    })
                    .collect();
                Refusal::bad("JsonSchemaMismatch", message).data(json!({ "errors": errors }))
            }
            RenderError::OptionsNotAllowed => Refusal::bad("OptionsNotAllowed", message),
            RenderError::MarathonTemplateMustBeJsonObject => Refusal::bad("MarathonTemplateMustBeJsonObject", message),
            RenderError::OptionsNotObject => Refusal::bad("JsonSchemaMismatch", message),
            RenderError::Template { .. } | RenderError::Invalid { .. } | RenderError::NothingToDeploy(_) => {
                Refusal::bad("PackageRenderError", message)
            }
        }
    }
}

fn denied(d: Denied) -> Refusal {
    Refusal::new(
        StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN),
        d.code,
        d.message,
    )
}

/// Every handler serves a caller the gate let in; none without one.
fn require_caller(caller: &Option<Extension<Identity>>) -> Result<(), Refusal> {
    match caller {
        Some(_) => Ok(()),
        None => Err(denied(Denied::no_caller())),
    }
}

fn media_type(family: &str, name: &str, version: u32) -> String {
    format!("application/vnd.dcos.{family}.{name}+json;charset=utf-8;version=v{version}")
}

/// Checks the request's `Content-Type`: Cosmos's type for this call (`family.name`, v1), or
/// plain JSON.
fn check_content_type(headers: &HeaderMap, family: &str, name: &str) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let (essence, params) = split_media(value);
    let wanted = format!("application/vnd.dcos.{family}.{name}+json");
    let version_ok = params.get("version").is_none_or(|v| v == "v1");
    if essence == "application/json" || (essence == wanted && version_ok) {
        return Ok(());
    }
    Err(Refusal::bad(
        "not_valid",
        format!(
            "Item header 'Content-Type' deemed invalid by rule: should match one of {}",
            media_type(family, name, 1)
        ),
    ))
}

/// A media type's essence (lower case) and parameters.
fn split_media(value: &str) -> (String, BTreeMap<String, String>) {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect();
    (essence, params)
}

/// The response version `Accept` asks for among `versions` (newest first): the type with the
/// highest `q`; JSON, `*/*` or no `Accept` get the newest. None acceptable: Cosmos's refusal.
fn negotiate(headers: &HeaderMap, family: &str, name: &str, versions: &[u32]) -> Result<u32, Refusal> {
    let newest = versions[0];
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(newest);
    };
    let wanted = format!("application/vnd.dcos.{family}.{name}+json");
    let mut best: Option<(f32, u32)> = None;
    for range in accept.split(',') {
        let (essence, params) = split_media(range);
        let q: f32 = params.get("q").and_then(|q| q.parse().ok()).unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let version = if matches!(essence.as_str(), "*/*" | "application/*" | "application/json") {
            Some(newest)
        } else if essence == wanted {
            match params.get("version") {
                None => Some(newest),
                Some(v) => v
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| versions.contains(n)),
            }
        } else {
            None
        };
        if let Some(v) = version {
            if best.is_none_or(|(bq, bv)| q > bq || (q == bq && v > bv)) {
                best = Some((q, v));
            }
        }
    }
    best.map(|(_, v)| v).ok_or_else(|| {
        let offered: Vec<String> = versions.iter().map(|v| media_type(family, name, *v)).collect();
        Refusal::bad(
            "not_valid",
            format!(
                "Item header 'Accept' deemed invalid by rule: Media type was [{accept}] but should be one of [{}]",
                offered.join(", ")
            ),
        )
    })
}

fn reply(family: &str, name: &str, version: u32, body: Value) -> Response {
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&media_type(family, name, version)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The request body in its Cosmos type; an empty body is `{}` (every field optional then).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Refusal::bad(
            "not_parsed",
            format!("Item 'body' unable to be parsed: {} (at {path})", e.into_inner()),
        )
    })
}

/// One call's checks: a caller, the content type, the answer's version.
fn prepare(
    caller: &Option<Extension<Identity>>,
    headers: &HeaderMap,
    request: (&str, &str),
    response: (&str, &str, &[u32]),
) -> Result<u32, Refusal> {
    require_caller(caller)?;
    check_content_type(headers, request.0, request.1)?;
    negotiate(headers, response.0, response.1, response.2)
}

// ---------------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------------

impl Packages {
    /// The repositories, each read now (a repository's packages can change at any time).
    async fn catalog(&self) -> Result<Catalog, Refusal> {
        self.node.linearize().await?;
        let repos = self.node.read(|s| s.package_repos.clone());
        let read = futures::future::join_all(repos.iter().map(|r| fetch::read_repo(&r.uri))).await;
        let mut all = Vec::with_capacity(repos.len());
        for (repo, packages) in repos.iter().zip(read) {
            let packages = packages.map_err(|e| unreadable(repo, &e.to_string()))?;
            all.push((repo.uri.clone(), packages));
        }
        Ok(Catalog::new(all))
    }
}

fn unreadable(repo: &PackageRepo, cause: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_GATEWAY,
        "RepositoryUriConnection",
        format!(
            "Could not access data at URI for repository [{}]: {}: {cause}",
            repo.name, repo.uri
        ),
    )
    .data(json!({ "repository": {"name": repo.name, "uri": repo.uri}, "cause": cause }))
}

#[derive(Deserialize)]
struct SearchRequest {
    #[serde(default)]
    query: Option<String>,
}

async fn search(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "search-request"),
        ("package", "search-response", &[1]),
    )?;
    let req: SearchRequest = parse(&body)?;
    let catalog = p.catalog().await?;
    let results = catalog.search(req.query.as_deref());
    Ok(reply("package", "search-response", v, json!({ "packages": results })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    package_name: String,
    #[serde(default)]
    package_version: Option<String>,
}

/// Cosmos's v2 describe: the definition's fields flat, defaults filled.
fn describe_v2(pkg: &Package) -> Value {
    let mut v = pkg.to_json();
    if let Some(o) = v.as_object_mut() {
        o.remove("releaseVersion");
        o.entry("selected").or_insert(json!(false));
        o.entry("framework").or_insert(json!(false));
    }
    v
}

async fn describe(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "describe-request"),
        ("package", "describe-response", &[3, 2]),
    )?;
    let req: DescribeRequest = parse(&body)?;
    let catalog = p.catalog().await?;
    let found = catalog.find(&req.package_name, req.package_version.as_deref())?;
    let body = match v {
        2 => describe_v2(&found.package),
        _ => json!({ "package": found.package.to_json() }),
    };
    Ok(reply("package", "describe-response", v, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListVersionsRequest {
    package_name: String,
    #[serde(default)]
    include_package_versions: bool,
}

async fn list_versions(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "list-versions-request"),
        ("package", "list-versions-response", &[1]),
    )?;
    let req: ListVersionsRequest = parse(&body)?;
    let _ = req.include_package_versions;
    let catalog = p.catalog().await?;
    let versions: BTreeMap<String, String> = catalog
        .versions(&req.package_name)?
        .into_iter()
        .map(|(version, release)| (version, release.to_string()))
        .collect();
    Ok(reply(
        "package",
        "list-versions-response",
        v,
        json!({ "results": versions }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstallRequest {
    package_name: String,
    #[serde(default)]
    package_version: Option<String>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    app_id: Option<String>,
}

async fn render_package(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "render-request"),
        ("package", "render-response", &[1]),
    )?;
    let req: InstallRequest = parse(&body)?;
    let catalog = p.catalog().await?;
    let found = catalog.find(&req.package_name, req.package_version.as_deref())?;
    let r = render::render(
        &found.package,
        &found.source,
        req.options.as_ref(),
        req.app_id.as_deref(),
    )?;
    let mut out = json!({ "marathonJson": r.marathon });
    // tepui's own: the jobs too, and the options as resolved.
    out["metronomeJobs"] = Value::Array(r.jobs.clone());
    out["resolvedOptions"] = r.resolved_options.clone();
    Ok(reply("package", "render-response", v, out))
}

// ---------------------------------------------------------------------------------------------
// Install, list, uninstall
// ---------------------------------------------------------------------------------------------

/// A deploying call refused: its status, in Cosmos's words for Marathon's refusals.
fn backend_refused(what: &str, status: u16, body: &Value) -> Refusal {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let kind = if what.starts_with("job") {
        "MetronomeBadResponse"
    } else {
        "MarathonBadResponse"
    };
    let mut r = Refusal::new(status, kind, format!("{what}: {}", refusal_text(body)));
    if let Some(details) = body.get("details") {
        r = r.data(json!({ "errors": details }));
    }
    r
}

fn unavailable(e: String) -> Refusal {
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e)
}

/// `/v2/apps/<id>` for an absolute id.
fn app_uri(id: &str) -> String {
    format!("/v2/apps{id}")
}

impl Packages {
    async fn call(
        &self,
        who: &Caller,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Refusal> {
        self.backend.call(who, method, uri, body).await.map_err(unavailable)
    }

    async fn app_exists(&self, who: &Caller, id: &str) -> Result<bool, Refusal> {
        let (status, body) = self.call(who, Method::GET, &app_uri(id), None).await?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(backend_refused(&format!("app {id}"), s, &body)),
        }
    }

    /// Creates the rendered apps and jobs; on a refusal, removes what it made and says why.
    async fn deploy_new(&self, who: &Caller, r: &Rendered) -> Result<(), Refusal> {
        let mut made_apps: Vec<String> = Vec::new();
        let mut made_jobs: Vec<String> = Vec::new();
        let result = self.create(who, r, &mut made_apps, &mut made_jobs).await;
        if result.is_err() {
            let _ = self.remove(who, &made_apps, &made_jobs).await;
        }
        result
    }

    async fn create(
        &self,
        who: &Caller,
        r: &Rendered,
        made_apps: &mut Vec<String>,
        made_jobs: &mut Vec<String>,
    ) -> Result<(), Refusal> {
        match (r.group.is_some(), r.apps.as_slice()) {
            (_, []) => {}
            (false, [app]) => {
                let id = app["id"].as_str().unwrap_or_default().to_string();
                let (status, body) = self.call(who, Method::POST, "/v2/apps", Some(app)).await?;
                if status == 409 && self.app_exists(who, &id).await? {
                    return Err(already_installed(&id));
                }
                if !(200..300).contains(&status) {
                    return Err(backend_refused(&format!("app {id}"), status, &body));
                }
                made_apps.push(id);
            }
            (_, apps) => {
                // A group: its apps in one deployment, none of them there already.
                for app in apps {
                    let id = app["id"].as_str().unwrap_or_default();
                    if self.app_exists(who, id).await? {
                        return Err(already_installed(id));
                    }
                }
                let all = Value::Array(apps.to_vec());
                let (status, body) = self.call(who, Method::PUT, "/v2/apps", Some(&all)).await?;
                if !(200..300).contains(&status) {
                    let group = r.group.as_deref().unwrap_or("the group");
                    return Err(backend_refused(&format!("group {group}"), status, &body));
                }
                made_apps.extend(r.app_ids());
            }
        }
        for job in &r.jobs {
            let id = job["id"].as_str().unwrap_or_default().to_string();
            let (status, body) = self.call(who, Method::POST, "/v1/jobs", Some(job)).await?;
            if !(200..300).contains(&status) {
                return Err(backend_refused(&format!("job {id}"), status, &body));
            }
            made_jobs.push(id);
        }
        Ok(())
    }

    /// Removes jobs (the last made first: children before their parents) and apps; ones
    /// already gone are no error.
    async fn remove(&self, who: &Caller, apps: &[String], jobs: &[String]) -> Result<(), Refusal> {
        for id in jobs.iter().rev() {
            let uri = format!("/v1/jobs/{id}?stopCurrentJobRuns=true");
            let (status, body) = self.call(who, Method::DELETE, &uri, None).await?;
            if !(200..300).contains(&status) && status != 404 {
                return Err(backend_refused(&format!("job {id}"), status, &body));
            }
        }
        for id in apps {
            let uri = format!("{}?force=true", app_uri(id));
            let (status, body) = self.call(who, Method::DELETE, &uri, None).await?;
            if !(200..300).contains(&status) && status != 404 {
                return Err(backend_refused(&format!("app {id}"), status, &body));
            }
        }
        Ok(())
    }
}

fn already_installed(app_id: &str) -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        "PackageAlreadyInstalled",
        "Package is already installed",
    )
    .data(json!({ "appId": app_id }))
}

/// The state's refusal of a package record, in Cosmos's words where it has them.
fn record_refused(e: WriteError) -> Refusal {
    match e {
        WriteError::Rejected(ApplyError::PackageInstalled { app_id }) => already_installed(&app_id),
        other => other.into(),
    }
}

async fn install(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "install-request"),
        ("package", "install-response", &[2, 1]),
    )?;
    let req: InstallRequest = parse(&body)?;
    let who = Caller::from_headers(&headers);
    let catalog = p.catalog().await?;
    let found = catalog.find(&req.package_name, req.package_version.as_deref())?;
    let pkg = &found.package;
    let rendered = render::render(pkg, &found.source, req.options.as_ref(), req.app_id.as_deref())?;
    let now = now_ms();
    let record = PackageInstall {
        app_id: rendered.app_id.clone(),
        name: pkg.name.clone(),
        version: pkg.version.clone(),
        source: found.source.clone(),
        options: req.options.clone().unwrap_or_else(|| json!({})),
        package: pkg.to_json(),
        apps: rendered.app_ids(),
        jobs: rendered.job_ids(),
        installed_at: now,
        updated_at: now,
    };
    // The record first: it claims the app id, so two installs of one id cannot both deploy.
    p.node
        .write(Command::PutPackageInstall {
            install: record,
            create: true,
        })
        .await
        .map_err(record_refused)?;
    if let Err(refused) = p.deploy_new(&who, &rendered).await {
        let _ = p
            .node
            .write(Command::RemovePackageInstall {
                app_id: rendered.app_id.clone(),
            })
            .await;
        tracing::info!(package = %pkg.name, version = %pkg.version, app_id = %rendered.app_id, reason = %refused.message, "package install refused");
        return Err(refused);
    }
    tracing::info!(
        package = %pkg.name,
        version = %pkg.version,
        app_id = %rendered.app_id,
        apps = rendered.apps.len(),
        jobs = rendered.jobs.len(),
        "package installed"
    );
    let body = match v {
        1 => json!({"packageName": pkg.name, "packageVersion": pkg.version, "appId": rendered.app_id}),
        _ => {
            let mut b = json!({"packageName": pkg.name, "packageVersion": pkg.version, "appId": rendered.app_id});
            if let Some(notes) = &pkg.post_install_notes {
                b["postInstallNotes"] = json!(notes);
            }
            b
        }
    };
    Ok(reply("package", "install-response", v, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    #[serde(default)]
    package_name: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
}

/// An app id as Marathon normalizes it (`web` is `/web`); unparsable ones as given.
fn normalize_app_id(raw: &str) -> String {
    tepui_services::PathId::parse(raw)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| raw.to_string())
}

fn installation_json(i: &PackageInstall) -> Value {
    let package: Option<Package> = serde_json::from_value(i.package.clone()).ok();
    let definition = package
        .as_ref()
        .map(Package::metadata)
        .unwrap_or_else(|| json!({"name": i.name, "version": i.version}));
    let mut info = json!({ "packageDefinition": definition });
    if let Some(resource) = package.as_ref().and_then(|p| p.resource.clone()) {
        info["resourceDefinition"] = resource;
    }
    json!({
        "appId": i.app_id,
        "packageInformation": info,
        // tepui's own: what the install made, with which options, from where.
        "tepui": {
            "options": i.options,
            "source": i.source,
            "apps": i.apps,
            "jobs": i.jobs,
            "installedAt": i.installed_at,
            "updatedAt": i.updated_at,
        },
    })
}

async fn list(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "list-request"),
        ("package", "list-response", &[1]),
    )?;
    let req: ListRequest = parse(&body)?;
    let want_id = req.app_id.as_deref().map(normalize_app_id);
    p.node.linearize().await?;
    let mut installs: Vec<Value> = p.node.read(|s| {
        s.package_installs
            .values()
            .filter(|i| req.package_name.as_deref().is_none_or(|n| i.name == n))
            .filter(|i| want_id.as_deref().is_none_or(|id| i.app_id == id))
            .map(installation_json)
            .collect()
    });
    installs.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["packageInformation"]["packageDefinition"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["appId"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(reply("package", "list-response", v, json!({ "packages": installs })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UninstallRequest {
    package_name: String,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    all: Option<bool>,
}

async fn uninstall(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "uninstall-request"),
        ("package", "uninstall-response", &[1]),
    )?;
    let req: UninstallRequest = parse(&body)?;
    let who = Caller::from_headers(&headers);
    let want_id = req.app_id.as_deref().map(normalize_app_id);
    p.node.linearize().await?;
    let installs: Vec<PackageInstall> = p.node.read(|s| {
        s.package_installs
            .values()
            .filter(|i| i.name == req.package_name)
            .filter(|i| want_id.as_deref().is_none_or(|id| i.app_id == id))
            .cloned()
            .collect()
    });
    match (&want_id, installs.len()) {
        (Some(id), 0) => {
            return Err(Refusal::bad(
                "UninstallNonExistentAppForPackage",
                format!("Package [{}] with id [{id}] is not installed", req.package_name),
            )
            .data(json!({"packageName": req.package_name, "appId": id})))
        }
        (None, 0) => {
            return Err(Refusal::bad(
                "PackageNotInstalled",
                format!("Package [{}] is not installed", req.package_name),
            )
            .data(json!({"packageName": req.package_name})))
        }
        (None, n) if n > 1 && req.all != Some(true) => {
            let ids: Vec<&str> = installs.iter().map(|i| i.app_id.as_str()).collect();
            return Err(Refusal::bad(
                "AmbiguousAppId",
                format!(
                    "Multiple apps named [{}] are installed: [{}]",
                    req.package_name,
                    ids.join(", ")
                ),
            )
            .data(json!({"packageName": req.package_name, "appIds": ids})));
        }
        _ => {}
    }
    let mut results = Vec::new();
    for i in installs {
        p.remove(&who, &i.apps, &i.jobs).await?;
        p.node
            .write(Command::RemovePackageInstall {
                app_id: i.app_id.clone(),
            })
            .await?;
        tracing::info!(package = %i.name, version = %i.version, app_id = %i.app_id, "package uninstalled");
        let notes = serde_json::from_value::<Package>(i.package.clone())
            .ok()
            .and_then(|p| p.post_uninstall_notes);
        let mut r = json!({"packageName": i.name, "appId": i.app_id, "packageVersion": i.version});
        if let Some(n) = notes {
            r["postUninstallNotes"] = json!(n);
        }
        results.push(r);
    }
    Ok(reply("package", "uninstall-response", v, json!({ "results": results })))
}

// ---------------------------------------------------------------------------------------------
// Upgrades: Cosmos's service calls
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceRequest {
    app_id: String,
    #[serde(default)]
    package_name: Option<String>,
    #[serde(default)]
    package_version: Option<String>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    replace: bool,
}

fn not_installed(app_id: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "MarathonAppNotFound",
        format!("Unable to locate service with marathon appId: '{app_id}'"),
    )
    .data(json!({ "appId": app_id }))
}

/// Whether `pkg` may replace an install of `from` (its `upgradesFrom`, when it has one).
fn may_upgrade_from(pkg: &Package, from: &str) -> bool {
    pkg.version == from
        || pkg
            .upgrades_from
            .as_ref()
            .is_none_or(|list| list.iter().any(|v| v == "*" || v == from))
}

impl Packages {
    async fn installed(&self, raw_id: &str) -> Result<PackageInstall, Refusal> {
        let id = normalize_app_id(raw_id);
        self.node.linearize().await?;
        self.node
            .read(|s| s.package_installs.get(&id).cloned())
            .ok_or_else(|| not_installed(&id))
    }
}

async fn service_describe(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("service", "describe-request"),
        ("service", "describe-response", &[1]),
    )?;
    let req: ServiceRequest = parse(&body)?;
    let install = p.installed(&req.app_id).await?;
    let pkg: Package = serde_json::from_value(install.package.clone()).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the recorded package does not read: {e}"),
        )
    })?;
    let catalog = p.catalog().await?;
    let upgrades: Vec<String> = catalog
        .packages()
        .filter(|f| f.package.name == install.name && f.package.version != install.version)
        .filter(|f| may_upgrade_from(&f.package, &install.version))
        .map(|f| f.package.version.clone())
        .collect();
    let resolved = render::resolve_options(&pkg, Some(&install.options))
        .map(Value::Object)
        .ok();
    Ok(reply(
        "service",
        "describe-response",
        v,
        json!({
            "package": install.package,
            "upgradesTo": upgrades,
            "downgradesTo": [],
            "resolvedOptions": resolved,
            "userProvidedOptions": install.options,
        }),
    ))
}

async fn service_update(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("service", "update-request"),
        ("service", "update-response", &[1]),
    )?;
    let req: ServiceRequest = parse(&body)?;
    let who = Caller::from_headers(&headers);
    let install = p.installed(&req.app_id).await?;
    if let Some(name) = req.package_name.as_deref().filter(|n| *n != install.name) {
        return Err(Refusal::bad(
            "PackageNameMismatch",
            format!(
                "{} is an install of package [{}], not [{name}]",
                install.app_id, install.name
            ),
        ));
    }
    let version = req.package_version.clone().unwrap_or_else(|| install.version.clone());
    let catalog = p.catalog().await?;
    let (pkg, source) = match catalog.find(&install.name, Some(&version)) {
        Ok(found) => (found.package.clone(), found.source.clone()),
        // The installed version, gone from the repositories: its recorded definition.
        Err(_) if version == install.version => match serde_json::from_value::<Package>(install.package.clone()) {
            Ok(pkg) => (pkg, install.source.clone()),
            Err(e) => {
                return Err(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the recorded package does not read: {e}"),
                ))
            }
        },
        Err(e) => return Err(e.into()),
    };
    if !may_upgrade_from(&pkg, &install.version) {
        return Err(Refusal::bad(
            "UpgradeNotAllowed",
            format!(
                "Package [{}] version [{}] cannot be upgraded from version [{}] (its upgradesFrom: {})",
                pkg.name,
                pkg.version,
                install.version,
                pkg.upgrades_from.clone().unwrap_or_default().join(", ")
            ),
        ));
    }
    // Cosmos's rule: the stored options, with the given ones merged over them, unless
    // `replace` says the given ones are all.
    let options = match (req.replace, req.options.clone()) {
        (true, given) => given.unwrap_or_else(|| json!({})),
        (false, None) => install.options.clone(),
        (false, Some(Value::Object(given))) => {
            let mut stored = install.options.as_object().cloned().unwrap_or_default();
            merge(&mut stored, &given);
            Value::Object(stored)
        }
        (false, Some(_)) => return Err(RenderError::OptionsNotObject.into()),
    };
    let override_id = pkg.marathon.is_some().then_some(install.app_id.as_str());
    let mut rendered = render::render(&pkg, &source, Some(&options), override_id)?;
    // An install keeps its id, whatever a jobs-only package's first job is now.
    rendered.app_id = install.app_id.clone();
    let (deployment, outcome) = p.upgrade(&who, &install, &rendered).await;
    let now = now_ms();
    let record = match &outcome {
        Ok(()) => PackageInstall {
            app_id: install.app_id.clone(),
            name: pkg.name.clone(),
            version: pkg.version.clone(),
            source: source.clone(),
            options: options.clone(),
            package: pkg.to_json(),
            apps: rendered.app_ids(),
            jobs: rendered.job_ids(),
            installed_at: install.installed_at,
            updated_at: now,
        },
        // Half done: the old version's record, listing everything either may have made, so
        // that an uninstall still removes it all.
        Err(_) => {
            let mut r = install.clone();
            for a in rendered.app_ids() {
                if !r.apps.contains(&a) {
                    r.apps.push(a);
                }
            }
            for j in rendered.job_ids() {
                if !r.jobs.contains(&j) {
                    r.jobs.push(j);
                }
            }
            r.updated_at = now;
            r
        }
    };
    p.node
        .write(Command::PutPackageInstall {
            install: record,
            create: false,
        })
        .await?;
    outcome?;
    tracing::info!(
        package = %pkg.name,
        from = %install.version,
        to = %pkg.version,
        app_id = %install.app_id,
        deployment = ?deployment,
        "package upgraded"
    );
    Ok(reply(
        "service",
        "update-response",
        v,
        json!({
            "package": pkg.to_json(),
            "resolvedOptions": rendered.resolved_options,
            "marathonDeploymentId": deployment,
        }),
    ))
}

impl Packages {
    /// Carries an upgrade out: each app replaced (Marathon rolls its instances), created or
    /// removed; each job replaced with its schedules, created or removed. Returns the first
    /// app's deployment.
    async fn upgrade(
        &self,
        who: &Caller,
        old: &PackageInstall,
        new: &Rendered,
    ) -> (Option<String>, Result<(), Refusal>) {
        let mut deployment = None;
        let result = async {
            let new_apps = new.app_ids();
            for app in &new.apps {
                let id = app["id"].as_str().unwrap_or_default();
                if old.apps.iter().any(|a| a == id) {
                    // As Cosmos updates: the whole definition, over a deployment in progress.
                    let uri = format!("{}?force=true&partialUpdate=false", app_uri(id));
                    let (status, body) = self.call(who, Method::PUT, &uri, Some(app)).await?;
                    if !(200..300).contains(&status) {
                        return Err(backend_refused(&format!("app {id}"), status, &body));
                    }
                    if deployment.is_none() {
                        deployment = body.get("deploymentId").and_then(Value::as_str).map(str::to_string);
                    }
                } else {
                    if self.app_exists(who, id).await? {
                        return Err(already_installed(id));
                    }
                    let (status, body) = self.call(who, Method::POST, "/v2/apps", Some(app)).await?;
                    if !(200..300).contains(&status) {
                        return Err(backend_refused(&format!("app {id}"), status, &body));
                    }
                }
            }
            let gone_apps: Vec<String> = old.apps.iter().filter(|a| !new_apps.contains(a)).cloned().collect();
            let new_jobs = new.job_ids();
            let gone_jobs: Vec<String> = old.jobs.iter().filter(|j| !new_jobs.contains(j)).cloned().collect();
            self.remove(who, &gone_apps, &gone_jobs).await?;
            for job in &new.jobs {
                let id = job["id"].as_str().unwrap_or_default();
                if old.jobs.iter().any(|j| j == id) {
                    self.replace_job(who, id, job).await?;
                } else {
                    let (status, body) = self.call(who, Method::POST, "/v1/jobs", Some(job)).await?;
                    if !(200..300).contains(&status) {
                        return Err(backend_refused(&format!("job {id}"), status, &body));
                    }
                }
            }
            Ok(())
        }
        .await;
        (deployment, result)
    }

    /// A job's new definition and schedules (Metronome's PUT keeps a job's schedules, so they
    /// are put one by one).
    async fn replace_job(&self, who: &Caller, id: &str, job: &Value) -> Result<(), Refusal> {
        let what = format!("job {id}");
        let mut definition = job.clone();
        let schedules: Vec<Value> = definition
            .as_object_mut()
            .and_then(|o| o.remove("schedules"))
            .and_then(|s| s.as_array().cloned())
            .unwrap_or_default();
        let (status, body) = self
            .call(who, Method::PUT, &format!("/v1/jobs/{id}"), Some(&definition))
            .await?;
        if !(200..300).contains(&status) {
            return Err(backend_refused(&what, status, &body));
        }
        let (status, current) = self
            .call(who, Method::GET, &format!("/v1/jobs/{id}/schedules"), None)
            .await?;
        if status != 200 {
            return Err(backend_refused(&what, status, &current));
        }
        let current: BTreeSet<String> = current
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut wanted = BTreeSet::new();
        for s in &schedules {
            let Some(sid) = s.get("id").and_then(Value::as_str) else {
                continue;
            };
            wanted.insert(sid.to_string());
            let (method, uri) = if current.contains(sid) {
                (Method::PUT, format!("/v1/jobs/{id}/schedules/{sid}"))
            } else {
                (Method::POST, format!("/v1/jobs/{id}/schedules"))
            };
            let (status, body) = self.call(who, method, &uri, Some(s)).await?;
            if !(200..300).contains(&status) {
                return Err(backend_refused(&format!("{what} schedule {sid}"), status, &body));
            }
        }
        for sid in current.difference(&wanted) {
            let (status, body) = self
                .call(who, Method::DELETE, &format!("/v1/jobs/{id}/schedules/{sid}"), None)
                .await?;
            if !(200..300).contains(&status) && status != 404 {
                return Err(backend_refused(&format!("{what} schedule {sid}"), status, &body));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------------------------

fn repos_json(repos: &[PackageRepo]) -> Value {
    Value::Array(repos.iter().map(|r| json!({"name": r.name, "uri": r.uri})).collect())
}

async fn repo_list(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "repository.list-request"),
        ("package", "repository.list-response", &[1]),
    )?;
    let _: Map<String, Value> = parse(&body)?;
    p.node.linearize().await?;
    let repos = p.node.read(|s| s.package_repos.clone());
    Ok(reply(
        "package",
        "repository.list-response",
        v,
        json!({ "repositories": repos_json(&repos) }),
    ))
}

#[derive(Deserialize)]
struct RepoAddRequest {
    name: String,
    uri: String,
    #[serde(default)]
    index: Option<u32>,
}

fn repo_present(name: Option<&str>, uri: Option<&str>) -> Refusal {
    let message = match (name, uri) {
        (Some(n), Some(u)) => format!("Repository name [{n}] and URI [{u}] are both already present in the list"),
        (Some(n), None) => format!("Repository name [{n}] is already present in the list"),
        (None, Some(u)) => format!("Repository URI [{u}] is already present in the list"),
        (None, None) => "Repository is already present in the list".into(),
    };
    Refusal::new(StatusCode::CONFLICT, "RepositoryAlreadyPresent", message).data(json!({"name": name, "uri": uri}))
}

async fn repo_add(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "repository.add-request"),
        ("package", "repository.add-response", &[1]),
    )?;
    let req: RepoAddRequest = parse(&body)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Refusal::bad(
            "not_valid",
            "name: a repository needs a name (no control characters)",
        ));
    }
    let uri = fetch::normalize_uri(&req.uri).map_err(|e| {
        Refusal::bad(
            "RepositoryUriSyntax",
            format!("URI for repository [{name}] has invalid syntax: {}: {e}", req.uri),
        )
        .data(json!({"repository": {"name": name, "uri": req.uri}, "cause": e}))
    })?;
    let repo = PackageRepo { name, uri };
    p.node.linearize().await?;
    let (name_taken, uri_taken) = p.node.read(|s| {
        (
            s.package_repos.iter().any(|r| r.name == repo.name),
            s.package_repos.iter().any(|r| r.uri == repo.uri),
        )
    });
    if name_taken || uri_taken {
        return Err(repo_present(
            name_taken.then_some(repo.name.as_str()),
            uri_taken.then_some(repo.uri.as_str()),
        ));
    }
    // Read it now: a repository that cannot be read is better refused than found out later.
    let packages = fetch::read_repo(&repo.uri)
        .await
        .map_err(|e| unreadable(&repo, &e.to_string()).status(StatusCode::BAD_REQUEST))?;
    match p
        .node
        .write(Command::AddPackageRepo {
            repo: repo.clone(),
            index: req.index,
        })
        .await
    {
        Ok(_) => {}
        Err(WriteError::Rejected(ApplyError::PackageRepoExists { name, uri })) => {
            return Err(repo_present(name.as_deref(), uri.as_deref()))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(repository = %repo.name, uri = %repo.uri, packages = packages.len(), "package repository added");
    let repos = p.node.read(|s| s.package_repos.clone());
    Ok(reply(
        "package",
        "repository.add-response",
        v,
        json!({ "repositories": repos_json(&repos) }),
    ))
}

impl Refusal {
    fn status(mut self, status: StatusCode) -> Refusal {
        self.status = status;
        self
    }
}

#[derive(Deserialize)]
struct RepoDeleteRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uri: Option<String>,
}

async fn repo_delete(
    State(p): State<Packages>,
    caller: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let v = prepare(
        &caller,
        &headers,
        ("package", "repository.delete-request"),
        ("package", "repository.delete-response", &[1]),
    )?;
    let req: RepoDeleteRequest = parse(&body)?;
    if req.name.is_none() && req.uri.is_none() {
        return Err(Refusal::bad("not_valid", "name or uri: say which repository to delete"));
    }
    let uri = req
        .uri
        .as_deref()
        .map(|u| fetch::normalize_uri(u).unwrap_or_else(|_| u.to_string()));
    match p
        .node
        .write(Command::RemovePackageRepo {
            name: req.name.clone(),
            uri: uri.clone(),
        })
        .await
    {
        Ok(_) => {}
        Err(WriteError::Rejected(ApplyError::UnknownPackageRepo { name, uri })) => {
            let message = match (&name, &uri) {
                (Some(n), Some(u)) => format!("Neither repository name [{n}] nor URI [{u}] are present in the list"),
                (Some(n), None) => format!("Repository name [{n}] is not present in the list"),
                (None, Some(u)) => format!("Repository URI [{u}] is not present in the list"),
                (None, None) => "No repository named".into(),
            };
            return Err(Refusal::new(StatusCode::NOT_FOUND, "RepositoryNotPresent", message)
                .data(json!({"name": name, "uri": uri})));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(repository = ?req.name, uri = ?uri, "package repository removed");
    let repos = p.node.read(|s| s.package_repos.clone());
    Ok(reply(
        "package",
        "repository.delete-response",
        v,
        json!({ "repositories": repos_json(&repos) }),
    ))
}

/// `GET /capabilities`: what this Cosmos does, as DC/OS's CLI asks before package calls.
async fn capabilities(caller: Option<Extension<Identity>>) -> Answer {
    require_caller(&caller)?;
    let mut resp = (
        StatusCode::OK,
        axum::Json(json!({"capabilities": [
            {"name": "PACKAGE_MANAGEMENT"},
            {"name": "METRONOME"},
        ]})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.dcos.capabilities+json;charset=utf-8;version=v1"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_picks_the_version_asked_for() {
        let d = |accept: Option<&str>| {
            let h = match accept {
                Some(a) => headers(&[("accept", a)]),
                None => HeaderMap::new(),
            };
            negotiate(&h, "package", "describe-response", &[3, 2]).map_err(|r| r.message)
        };
        assert_eq!(d(None), Ok(3));
        assert_eq!(d(Some("*/*")), Ok(3));
        assert_eq!(d(Some("application/json")), Ok(3));
        assert_eq!(
            d(Some(
                "application/vnd.dcos.package.describe-response+json;charset=utf-8;version=v2"
            )),
            Ok(2)
        );
        assert_eq!(
            d(Some("application/vnd.dcos.package.describe-response+json;charset=utf-8;version=v2;q=0.1,application/vnd.dcos.package.describe-response+json;charset=utf-8;version=v3;q=0.9")),
            Ok(3)
        );
        let refused = d(Some("application/vnd.dcos.package.install-response+json;version=v1")).unwrap_err();
        assert!(
            refused.starts_with("Item header 'Accept' deemed invalid by rule"),
            "{refused}"
        );
    }

    #[test]
    fn content_types_are_cosmos_or_json() {
        let ok = |ct: &str| check_content_type(&headers(&[("content-type", ct)]), "package", "install-request").is_ok();
        assert!(ok(
            "application/vnd.dcos.package.install-request+json;charset=utf-8;version=v1"
        ));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(!ok(
            "application/vnd.dcos.package.describe-request+json;charset=utf-8;version=v1"
        ));
        assert!(!ok(
            "application/vnd.dcos.package.install-request+json;charset=utf-8;version=v9"
        ));
        assert!(check_content_type(&HeaderMap::new(), "package", "install-request").is_ok());
    }

    #[test]
    fn upgrades_follow_upgrades_from() {
        let pkg = |from: Option<Vec<&str>>| -> Package {
            let mut v = json!({"packagingVersion": "4.0", "name": "web", "version": "2.0.0"});
            if let Some(f) = from {
                v["upgradesFrom"] = json!(f);
            }
            serde_json::from_value(v).unwrap()
        };
        assert!(may_upgrade_from(&pkg(None), "1.0.0"));
        assert!(may_upgrade_from(&pkg(Some(vec!["1.0.0"])), "1.0.0"));
        assert!(may_upgrade_from(&pkg(Some(vec!["*"])), "0.1"));
        assert!(!may_upgrade_from(&pkg(Some(vec!["1.1.0"])), "1.0.0"));
        assert!(
            may_upgrade_from(&pkg(Some(vec![])), "2.0.0"),
            "a configuration change of the same version"
        );
    }
}
