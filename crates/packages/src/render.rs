//! What a package deploys with given options, decided without I/O, as Cosmos renders it: the
//! schema's defaults with the user's options merged over them, checked against the schema
//! before anything else; the templates rendered with them (and `resource`); the package's
//! labels put on what they made.
//!
//! `marathon.json.mustache` may render a Marathon app (Universe's form) or a group (`{id,
//! apps, groups, dependencies}`), which becomes its apps with absolute ids and the group's
//! dependencies; `metronome.json.mustache` a Metronome job or a list of jobs. An install is
//! known by Cosmos's `appId`: the app's or group's id, or for jobs alone the first job's id
//! (`/` in front), unless the request names one.

use base64::Engine;
use serde_json::{json, Map, Value};
use tepui_services::PathId;

use crate::mustache::{merge, Template};
use crate::schema::{self, Violation};
use crate::universe::Package;

/// Cosmos's labels on what a package deploys.
pub const LABEL_NAME: &str = "DCOS_PACKAGE_NAME";
pub const LABEL_VERSION: &str = "DCOS_PACKAGE_VERSION";
pub const LABEL_SOURCE: &str = "DCOS_PACKAGE_SOURCE";
pub const LABEL_OPTIONS: &str = "DCOS_PACKAGE_OPTIONS";
pub const LABEL_METADATA: &str = "DCOS_PACKAGE_METADATA";
pub const LABEL_DEFINITION: &str = "DCOS_PACKAGE_DEFINITION";

/// Why a package cannot be rendered with these options. The messages are Cosmos's where it
/// has one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("options must be a JSON object")]
    OptionsNotObject,
    #[error("No schema available to validate the provided options")]
    OptionsNotAllowed,
    #[error("Options JSON failed validation: {}", list(.0))]
    JsonSchemaMismatch(Vec<Violation>),
    #[error("{file}: {message}")]
    Template { file: &'static str, message: String },
    #[error("Rendered Marathon JSON must be a JSON object")]
    MarathonTemplateMustBeJsonObject,
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("package {0} deploys nothing: it has neither marathon.json.mustache nor metronome.json.mustache")]
    NothingToDeploy(String),
}

fn list(violations: &[Violation]) -> String {
    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
}

/// What a package deploys.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The install's id (Cosmos's `appId`).
    pub app_id: String,
    /// The Marathon JSON as rendered and labelled (an app or a group), for `/package/render`.
    pub marathon: Option<Value>,
    /// The apps, with absolute ids, in the order the template lists them.
    pub apps: Vec<Value>,
    /// The group the apps came from, if the template made one.
    pub group: Option<String>,
    /// The Metronome jobs, in the template's order.
    pub jobs: Vec<Value>,
    /// The schema's defaults with the user's options merged over them.
    pub resolved_options: Value,
}

impl Rendered {
    /// The apps' ids.
    pub fn app_ids(&self) -> Vec<String> {
        self.apps
            .iter()
            .filter_map(|a| a.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter_map(|j| j.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

/// The schema's defaults with `options` over them, checked against the schema (Cosmos's
/// order: options without a schema are refused, the merged whole is what is checked).
pub fn resolve_options(pkg: &Package, options: Option<&Value>) -> Result<Map<String, Value>, RenderError> {
    let user = match options {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(RenderError::OptionsNotObject),
    };
    let mut merged = pkg.config.as_ref().map(schema::defaults).unwrap_or_default();
    merge(&mut merged, &user);
    match &pkg.config {
        None if !user.is_empty() => return Err(RenderError::OptionsNotAllowed),
        None => {}
        Some(s) => {
            let violations = schema::validate(s, &Value::Object(merged.clone()));
            if !violations.is_empty() {
                return Err(RenderError::JsonSchemaMismatch(violations));
            }
        }
    }
    Ok(merged)
}

/// Renders `pkg` from repository `source` with the user's `options`; `app_id` names the
/// install's app (or group) instead of the template's id.
pub fn render(
    pkg: &Package,
    source: &str,
    options: Option<&Value>,
    app_id: Option<&str>,
) -> Result<Rendered, RenderError> {
    let resolved = resolve_options(pkg, options)?;
    let user_options = match options {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => json!({}),
    };
    let mut context = resolved.clone();
    if let Some(r) = &pkg.resource {
        context.insert("resource".into(), r.clone());
    }
    let context = Value::Object(context);
    let app_labels = package_labels(pkg, source, &user_options, true);
    let job_labels = package_labels(pkg, source, &user_options, false);

    let override_id = app_id.map(|raw| parse_id(raw, "appId")).transpose()?;

    let mut marathon = None;
    let mut apps = Vec::new();
    let mut group = None;
    let template = pkg.marathon_template().map_err(|message| RenderError::Template {
        file: "marathon.json.mustache",
        message,
    })?;
    if let Some(t) = template {
        let mut rendered = render_json(&t, &context, "marathon.json.mustache")?;
        let Some(obj) = rendered.as_object_mut() else {
            return Err(RenderError::MarathonTemplateMustBeJsonObject);
        };
        if let Some(id) = &override_id {
            obj.insert("id".into(), Value::String(id.to_string()));
        }
        if obj.contains_key("apps") || obj.contains_key("groups") {
            let id = group_id(obj)?;
            flatten_group(&rendered, &PathId::root(), &[], &mut apps, "")?;
            for app in &mut apps {
                add_labels(app, &app_labels, &format!("app {}", app["id"].as_str().unwrap_or("?")))?;
            }
            group = Some(id.to_string());
            marathon = Some(labelled_group(&rendered, &app_labels)?);
        } else {
            let id = app_path(obj, "")?;
            obj.insert("id".into(), Value::String(id.to_string()));
            add_labels(&mut rendered, &app_labels, "the app")?;
            apps.push(rendered.clone());
            marathon = Some(rendered);
        }
    }

    let mut jobs = Vec::new();
    let template = pkg.metronome_template().map_err(|message| RenderError::Template {
        file: "metronome.json.mustache",
        message,
    })?;
    if let Some(t) = template {
        let rendered = render_json(&t, &context, "metronome.json.mustache")?;
        let listed = match rendered {
            Value::Array(items) => items,
            one @ Value::Object(_) => vec![one],
            _ => {
                return Err(RenderError::Invalid {
                    at: "metronome.json.mustache".into(),
                    message: "must render a Metronome job (a JSON object) or a list of them".into(),
                })
            }
        };
        for (i, mut job) in listed.into_iter().enumerate() {
            let at = format!("metronome.json.mustache: job {i}");
            let id = job.get("id").and_then(Value::as_str).map(str::to_string);
            let Some(id) = id.filter(|id| !id.is_empty()) else {
                return Err(RenderError::Invalid {
                    at,
                    message: "a job needs an \"id\"".into(),
                });
            };
            if !job.is_object() {
                return Err(RenderError::Invalid {
                    at,
                    message: "a job must be a JSON object".into(),
                });
            }
            add_labels(&mut job, &job_labels, &format!("job {id}"))?;
            jobs.push(job);
        }
    }

    let install_id = match (&group, apps.first(), jobs.first()) {
        (Some(g), _, _) => g.clone(),
        (None, Some(app), _) => app["id"].as_str().unwrap_or_default().to_string(),
        (None, None, Some(job)) => match &override_id {
            Some(id) => id.to_string(),
            None => parse_id(job["id"].as_str().unwrap_or_default(), "the first job's id")?.to_string(),
        },
        (None, None, None) => return Err(RenderError::NothingToDeploy(pkg.name.clone())),
    };
    Ok(Rendered {
        app_id: install_id,
        marathon,
        apps,
        group,
        jobs,
        resolved_options: Value::Object(resolved),
    })
}

fn render_json(template: &str, context: &Value, file: &'static str) -> Result<Value, RenderError> {
    let t = Template::parse(template).map_err(|e| RenderError::Template {
        file,
        message: e.to_string(),
    })?;
    let text = t.render(context);
    serde_json::from_str(&text).map_err(|e| RenderError::Template {
        file,
        message: format!(
            "does not render to JSON with these options ({e}); line {}: {}",
            e.line(),
            text.lines().nth(e.line().saturating_sub(1)).unwrap_or("").trim()
        ),
    })
}

fn parse_id(raw: &str, what: &str) -> Result<PathId, RenderError> {
    let id = PathId::parse(raw).map_err(|e| RenderError::Invalid {
        at: what.into(),
        message: e.to_string(),
    })?;
    if id.is_root() {
        return Err(RenderError::Invalid {
            at: what.into(),
            message: format!("{raw:?} names the root group, not an app"),
        });
    }
    Ok(id)
}

fn app_path(obj: &Map<String, Value>, base: &str) -> Result<PathId, RenderError> {
    let at = if base.is_empty() {
        "the app's id".to_string()
    } else {
        format!("{base} id")
    };
    let raw = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| RenderError::Invalid {
            at: at.clone(),
            message: "an app needs an \"id\"".into(),
        })?;
    parse_id(raw, &at)
}

fn group_id(obj: &Map<String, Value>) -> Result<PathId, RenderError> {
    let raw = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| RenderError::Invalid {
            at: "the group's id".into(),
            message: "a group needs an \"id\"".into(),
        })?;
    parse_id(raw, "the group's id")
}

fn resolve_all(base: &PathId, list: Option<&Value>, at: &str) -> Result<Vec<PathId>, RenderError> {
    let mut out = Vec::new();
    for (i, d) in list.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let raw = d.as_str().ok_or_else(|| RenderError::Invalid {
            at: format!("{at}/dependencies/{i}"),
            message: "must be a path id".into(),
        })?;
        out.push(PathId::resolve(base, raw).map_err(|e| RenderError::Invalid {
            at: format!("{at}/dependencies/{i}"),
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

/// A group's apps with absolute ids: an app's relative id and dependencies are its group's,
/// and a group's dependencies hold for every app inside it, as in Marathon.
fn flatten_group(
    group: &Value,
    base: &PathId,
    inherited: &[PathId],
    out: &mut Vec<Value>,
    at: &str,
) -> Result<(), RenderError> {
    let raw = group
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| RenderError::Invalid {
            at: format!("{at}/id"),
            message: "a group needs an \"id\"".into(),
        })?;
    let id = PathId::resolve(base, raw).map_err(|e| RenderError::Invalid {
        at: format!("{at}/id"),
        message: e.to_string(),
    })?;
    let mut deps = inherited.to_vec();
    deps.extend(resolve_all(&id.parent(), group.get("dependencies"), at)?);
    for (i, app) in group
        .get("apps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let here = format!("{at}/apps/{i}");
        let Some(obj) = app.as_object() else {
            return Err(RenderError::Invalid {
                at: here,
                message: "an app must be a JSON object".into(),
            });
        };
        let raw = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| RenderError::Invalid {
                at: format!("{here}/id"),
                message: "an app needs an \"id\"".into(),
            })?;
        let app_id = PathId::resolve(&id, raw).map_err(|e| RenderError::Invalid {
            at: format!("{here}/id"),
            message: e.to_string(),
        })?;
        let mut app_deps = resolve_all(&id, obj.get("dependencies"), &here)?;
        for d in &deps {
            if !app_deps.contains(d) {
                app_deps.push(d.clone());
            }
        }
        let mut flat = obj.clone();
        flat.insert("id".into(), Value::String(app_id.to_string()));
        if !app_deps.is_empty() {
            flat.insert(
                "dependencies".into(),
                Value::Array(app_deps.iter().map(|d| Value::String(d.to_string())).collect()),
            );
        }
        out.push(Value::Object(flat));
    }
    for (i, sub) in group
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        flatten_group(sub, &id, &deps, out, &format!("{at}/groups/{i}"))?;
    }
    Ok(())
}

/// The group JSON as rendered, with the package's labels on each of its apps.
fn labelled_group(group: &Value, labels: &Map<String, Value>) -> Result<Value, RenderError> {
    let mut g = group.clone();
    if let Some(apps) = g.get_mut("apps").and_then(Value::as_array_mut) {
        for app in apps {
            add_labels(app, labels, "a group's app")?;
        }
    }
    if let Some(groups) = g.get_mut("groups").and_then(Value::as_array_mut) {
        for sub in groups.iter_mut() {
            *sub = labelled_group(sub, labels)?;
        }
    }
    Ok(g)
}

/// Puts the package's labels over the object's own (which must be strings, as Marathon and
/// Metronome require).
fn add_labels(target: &mut Value, labels: &Map<String, Value>, what: &str) -> Result<(), RenderError> {
    let Some(obj) = target.as_object_mut() else {
        return Ok(());
    };
    let mut merged = match obj.remove("labels") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(RenderError::Invalid {
                at: format!("{what}: labels"),
                message: "must be an object of strings".into(),
            })
        }
    };
    if let Some((k, _)) = merged.iter().find(|(_, v)| !v.is_string()) {
        return Err(RenderError::Invalid {
            at: format!("{what}: labels.{k}"),
            message: "a label's value must be a string".into(),
        });
    }
    for (k, v) in labels {
        merged.insert(k.clone(), v.clone());
    }
    obj.insert("labels".into(), Value::Object(merged));
    Ok(())
}

/// JSON in a label: without nulls, base64, as Cosmos writes it.
fn label_json(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(drop_nulls(v).to_string())
}

fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// Cosmos's `StorageEnvelope` of the package definition: its media type and the JSON,
/// gzipped, in base64.
fn definition_envelope(pkg: &Package) -> Value {
    use std::io::Write;
    let version = pkg.packaging_version.split('.').next().unwrap_or("4");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to memory cannot fail.
    let _ = gz.write_all(pkg.to_json().to_string().as_bytes());
    let data = gz.finish().unwrap_or_default();
    json!({
        "metadata": {
            "Content-Type": format!("application/vnd.dcos.universe.package+json;charset=utf-8;version=v{version}"),
            "Content-Encoding": "gzip",
        },
        "data": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// The labels Cosmos puts on an app (`full`) or, fewer, on a job.
pub fn package_labels(pkg: &Package, source: &str, user_options: &Value, full: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(LABEL_NAME.into(), json!(pkg.name));
    m.insert(LABEL_VERSION.into(), json!(pkg.version));
    m.insert(LABEL_SOURCE.into(), json!(source));
    if full {
        m.insert(LABEL_OPTIONS.into(), json!(label_json(user_options)));
        m.insert(LABEL_METADATA.into(), json!(label_json(&pkg.metadata())));
        m.insert(LABEL_DEFINITION.into(), json!(label_json(&definition_envelope(pkg))));
    }
    m
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn package(marathon: Option<&str>, metronome: Option<&str>, config: Option<Value>) -> Package {
        let mut v = json!({"packagingVersion": "4.0", "name": "web", "version": "1.0.0", "releaseVersion": 0,
                           "maintainer": "m", "description": "d", "tags": ["http"],
                           "resource": {"assets": {"container": {"docker": {"image": "busybox:1.36"}}}}});
        if let Some(t) = marathon {
            v["marathon"] = json!({"v2AppMustacheTemplate": b64(t)});
        }
        if let Some(t) = metronome {
            v["metronome"] = json!({"v1JobsMustacheTemplate": b64(t)});
        }
        if let Some(c) = config {
            v["config"] = c;
        }
        serde_json::from_value(v).unwrap()
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {"service": {"type": "object", "properties": {
            "name": {"type": "string", "default": "web"},
            "instances": {"type": "integer", "default": 1, "minimum": 1}},
            "additionalProperties": false}}})
    }

    const APP: &str = r#"{"id": "{{service.name}}", "instances": {{service.instances}},
        "container": {"docker": {"image": "{{resource.assets.container.docker.image}}"}},
        "labels": {"HAPROXY_GROUP": "external"}}"#;

    #[test]
    fn an_app_with_defaults_options_and_cosmos_labels() {
        let pkg = package(Some(APP), None, Some(schema()));
        let r = render(
            &pkg,
            "file:///catalog",
            Some(&json!({"service": {"instances": 3}})),
            None,
        )
        .unwrap();
        assert_eq!(r.app_id, "/web");
        assert_eq!(r.resolved_options, json!({"service": {"name": "web", "instances": 3}}));
        assert_eq!(r.apps.len(), 1);
        let app = &r.apps[0];
        assert_eq!(app["id"], "/web");
        assert_eq!(app["instances"], 3);
        assert_eq!(app["container"]["docker"]["image"], "busybox:1.36");
        let labels = &app["labels"];
        assert_eq!(labels["HAPROXY_GROUP"], "external", "the template's own labels stay");
        assert_eq!(labels[LABEL_NAME], "web");
        assert_eq!(labels[LABEL_VERSION], "1.0.0");
        assert_eq!(labels[LABEL_SOURCE], "file:///catalog");
        let options: Value = serde_json::from_slice(&unb64(labels[LABEL_OPTIONS].as_str().unwrap())).unwrap();
        assert_eq!(
            options,
            json!({"service": {"instances": 3}}),
            "the user's options, not the defaults"
        );
        let metadata: Value = serde_json::from_slice(&unb64(labels[LABEL_METADATA].as_str().unwrap())).unwrap();
        assert_eq!(metadata["name"], "web");
        assert!(metadata.get("config").is_none());
        let envelope: Value = serde_json::from_slice(&unb64(labels[LABEL_DEFINITION].as_str().unwrap())).unwrap();
        assert_eq!(
            envelope["metadata"]["Content-Type"],
            "application/vnd.dcos.universe.package+json;charset=utf-8;version=v4"
        );
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&unb64(envelope["data"].as_str().unwrap())[..])
            .read_to_string(&mut unzipped)
            .unwrap();
        let definition: Value = serde_json::from_str(&unzipped).unwrap();
        assert_eq!(definition["name"], "web");
        assert_eq!(definition["config"], schema());

        let renamed = render(&pkg, "file:///catalog", None, Some("/team/web-2")).unwrap();
        assert_eq!(
            (renamed.app_id.as_str(), renamed.apps[0]["id"].as_str()),
            ("/team/web-2", Some("/team/web-2"))
        );
    }

    #[test]
    fn options_that_break_the_schema_are_refused_with_the_field() {
        let pkg = package(Some(APP), None, Some(schema()));
        let e = render(
            &pkg,
            "s",
            Some(&json!({"service": {"instances": 0, "color": "red"}})),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Options JSON failed validation: /service/color: unknown property \"color\"; the properties here are instances, name; /service/instances: 0 is less than the minimum of 1"
        );
        assert_eq!(
            render(&pkg, "s", Some(&json!([1])), None).unwrap_err(),
            RenderError::OptionsNotObject
        );
        let no_schema = package(Some(r#"{"id": "x"}"#), None, None);
        assert_eq!(
            render(&no_schema, "s", Some(&json!({"a": 1})), None).unwrap_err(),
            RenderError::OptionsNotAllowed
        );
        assert!(
            render(&no_schema, "s", Some(&json!({})), None).is_ok(),
            "empty options need no schema"
        );
    }

    #[test]
    fn a_group_becomes_its_apps_with_absolute_ids_and_dependencies() {
        let group = r#"{"id": "/shop", "dependencies": ["/infra"], "apps": [
            {"id": "db", "cmd": "db"},
            {"id": "web", "cmd": "web", "dependencies": ["db"]}],
          "groups": [{"id": "jobs", "apps": [{"id": "worker", "cmd": "w", "labels": {"x": "y"}}]}]}"#;
        let pkg = package(Some(group), None, None);
        let r = render(&pkg, "s", None, None).unwrap();
        assert_eq!(r.app_id, "/shop");
        assert_eq!(r.group.as_deref(), Some("/shop"));
        assert_eq!(r.app_ids(), ["/shop/db", "/shop/web", "/shop/jobs/worker"]);
        assert_eq!(r.apps[0]["dependencies"], json!(["/infra"]));
        assert_eq!(r.apps[1]["dependencies"], json!(["/shop/db", "/infra"]));
        assert_eq!(r.apps[2]["dependencies"], json!(["/infra"]));
        assert_eq!(r.apps[2]["labels"]["x"], "y");
        assert!(r.apps.iter().all(|a| a["labels"][LABEL_NAME] == "web"));
        let m = r.marathon.unwrap();
        assert_eq!(m["groups"][0]["apps"][0]["labels"][LABEL_VERSION], "1.0.0");

        let moved = render(&pkg, "s", None, Some("/staging/shop")).unwrap();
        assert_eq!(
            moved.app_ids(),
            ["/staging/shop/db", "/staging/shop/web", "/staging/shop/jobs/worker"]
        );
    }

    #[test]
    fn jobs_alone_or_beside_an_app() {
        let jobs = r#"[{"id": "{{job.id}}", "run": {"cmd": "echo hi"}, "schedules": [{"id": "s", "cron": "{{job.cron}}"}]},
                      {"id": "{{job.id}}-cleanup", "run": {"cmd": "true"}}]"#;
        let config = json!({"type": "object", "properties": {"job": {"type": "object", "properties": {
            "id": {"type": "string", "default": "report"}, "cron": {"type": "string", "default": "0 * * * *"}}}}});
        let pkg = package(None, Some(jobs), Some(config.clone()));
        let r = render(&pkg, "s", Some(&json!({"job": {"cron": "*/5 * * * *"}})), None).unwrap();
        assert_eq!(r.app_id, "/report");
        assert!(r.apps.is_empty() && r.marathon.is_none());
        assert_eq!(r.job_ids(), ["report", "report-cleanup"]);
        assert_eq!(r.jobs[0]["schedules"][0]["cron"], "*/5 * * * *");
        assert_eq!(r.jobs[0]["labels"][LABEL_NAME], "web");
        assert!(
            r.jobs[0]["labels"].get(LABEL_DEFINITION).is_none(),
            "jobs carry the short labels"
        );
        assert_eq!(render(&pkg, "s", None, Some("/reports")).unwrap().app_id, "/reports");

        let one = package(
            Some(APP),
            Some(r#"{"id": "nightly", "run": {"cmd": "x"}}"#),
            Some(schema()),
        );
        let r = render(&one, "s", None, None).unwrap();
        assert_eq!((r.app_id.as_str(), r.job_ids()), ("/web", vec!["nightly".to_string()]));
    }

    #[test]
    fn templates_that_do_not_make_json_say_where() {
        let pkg = package(Some("{\n  \"id\": \"x\",\n  \"cpus\": {{cpus}}\n}"), None, None);
        let e = render(&pkg, "s", None, None).unwrap_err().to_string();
        assert!(e.starts_with("marathon.json.mustache: does not render to JSON"), "{e}");
        assert!(e.contains("(expected value at line 4 column 1); line 4: }"), "{e}");
        let e = render(&package(Some("[1]"), None, None), "s", None, None).unwrap_err();
        assert_eq!(e, RenderError::MarathonTemplateMustBeJsonObject);
        let e = render(&package(Some(r#"{"cmd": "x"}"#), None, None), "s", None, None).unwrap_err();
        assert!(e.to_string().contains("an app needs an \"id\""), "{e}");
        let e = render(&package(Some(r#"{"id": "Bad_Id"}"#), None, None), "s", None, None).unwrap_err();
        assert!(e.to_string().starts_with("the app's id: invalid segment"), "{e}");
        let e = render(
            &package(Some(r#"{"id": "a", "labels": {"n": 1}}"#), None, None),
            "s",
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the app: labels.n: a label's value must be a string");
        let e = render(&package(None, Some("[{\"run\": {}}]"), None), "s", None, None).unwrap_err();
        assert!(e.to_string().contains("a job needs an \"id\""), "{e}");
        let e = render(&package(None, None, None), "s", None, None).unwrap_err();
        assert!(matches!(e, RenderError::NothingToDeploy(_)));
    }
}
