//! `tepui app ...` and `tepui deployment ...`: long-running services through Marathon's `/v2`
//! API. Each verb is a call or two and a table or JSON; commands that start a deployment print
//! its id and, with `--wait`, follow it to its end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};
use tepui_api::marathon::Marathon;

use crate::output::{emit, table};
use crate::{ClientArgs, Format};

/// How often `deployment watch` looks when the event stream is not to be had.
const POLL: Duration = Duration::from_millis(500);
/// How often `deployment watch` refreshes the explanation of instances that wait: offers come
/// and go without an event.
const WHY_REFRESH: Duration = Duration::from_secs(5);
/// How long a finished deployment's success or failure event is awaited before the apps decide.
const EVENT_GRACE: Duration = Duration::from_secs(2);

#[derive(Subcommand)]
pub enum AppCmd {
    /// Create an app from a Marathon app definition (a JSON file, `-` for stdin) or from flags.
    Run {
        /// A Marathon app definition; flags given too override its fields.
        file: Option<PathBuf>,
        /// The app's id, like `web` or `/prod/web`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List apps.
    Ls(ClientArgs),
    /// One app with its instances.
    Show {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Set how many instances an app runs.
    Scale {
        id: String,
        instances: u32,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Replace every instance of an app by a rolling upgrade, with the same definition.
    Restart {
        id: String,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Change an app: the fields of a JSON file (partial, like Marathon's PUT) and/or flags.
    Update {
        id: String,
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Delete an app: its instances are stopped.
    Rm {
        id: String,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Put an app back to an earlier version (by default the one before the current).
    Rollback {
        id: String,
        /// The version to go back to (see `tepui app show ID -o json` or /v2/apps/ID/versions).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Why an app's instances are not running: the offers that did not fit, and why.
    Why {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum DeploymentCmd {
    /// List the deployments under way.
    Ls(ClientArgs),
    /// Follow a deployment until it is done; exits 1 if it failed or was rolled back.
    Watch {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Cancel a deployment: its apps roll back, or with --force it just stops where it is.
    Rm {
        id: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        c: ClientArgs,
    },
}

/// An app's definition from flags.
#[derive(Args, Clone, Default)]
pub struct SpecArgs {
    /// An OCI image to run; without one the command runs on the agent's filesystem.
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub instances: Option<u32>,
    /// The port the app listens on; repeatable. With --image the app gets a bridge and this is
    /// the container's port (the host port is picked); without, it is the host port itself (0:
    /// any free one, in $PORT0).
    #[arg(long = "port")]
    pub ports: Vec<u16>,
    /// A shell command (`sh -c`).
    #[arg(long)]
    pub cmd: Option<String>,
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory in MB.
    #[arg(long)]
    pub mem: Option<f64>,
    /// KEY=VALUE; repeatable. `app update` adds them to the app's environment.
    #[arg(short = 'e', long = "env", value_parser = crate::parse_key_value)]
    pub env: Vec<(String, String)>,
    /// An HTTP health check of this path on the first port.
    #[arg(long)]
    pub health_path: Option<String>,
}

#[derive(Args, Clone, Default)]
pub struct DeployArgs {
    /// Override a deployment that holds the app (it is cancelled).
    #[arg(long)]
    pub force: bool,
    /// Wait until the deployment is done; exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
}

// ---------------------------------------------------------------------------------------------
// Marathon's API over HTTP
// ---------------------------------------------------------------------------------------------

/// `web` and `/web` name the same app.
fn app_path(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Definitions from flags
// ---------------------------------------------------------------------------------------------

fn read_definition(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the app definition from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON app definition", file.display()))?;
    if !v.is_object() {
        bail!("{} must hold one JSON object, an app definition", file.display());
    }
    Ok(v)
}

/// The fields the flags set, onto `base`. `env` holds the environment to start from.
fn apply_flags(base: &mut Map<String, Value>, a: &SpecArgs, env: Map<String, Value>) -> anyhow::Result<()> {
    if let Some(cmd) = &a.cmd {
        base.insert("cmd".into(), json!(cmd));
    }
    if let Some(n) = a.instances {
        base.insert("instances".into(), json!(n));
    }
    if let Some(cpus) = a.cpus {
        base.insert("cpus".into(), json!(cpus));
    }
    if let Some(mem) = a.mem {
        base.insert("mem".into(), json!(mem));
    }
    if !a.env.is_empty() {
        let mut env = env;
        for (k, v) in &a.env {
            env.insert(k.clone(), json!(v));
        }
        base.insert("env".into(), Value::Object(env));
    }
    if let Some(image) = &a.image {
        let mut container = json!({"type": "DOCKER", "docker": {"image": image}});
        if !a.ports.is_empty() {
            let mappings: Vec<Value> = a
                .ports
                .iter()
                .map(|p| json!({"containerPort": p, "hostPort": 0, "protocol": "tcp"}))
                .collect();
            container["portMappings"] = Value::Array(mappings);
            base.insert("networks".into(), json!([{"mode": "container/bridge"}]));
        }
        base.insert("container".into(), container);
    } else if !a.ports.is_empty() {
        let defs: Vec<Value> = a.ports.iter().map(|p| json!({"port": p, "protocol": "tcp"})).collect();
        base.insert("portDefinitions".into(), Value::Array(defs));
        base.insert("requirePorts".into(), json!(a.ports.iter().any(|p| *p != 0)));
    }
    if let Some(path) = &a.health_path {
        if a.ports.is_empty() && !has_ports(base) {
            bail!("--health-path needs a --port to check");
        }
        base.insert(
            "healthChecks".into(),
            json!([{"protocol": "HTTP", "path": path, "portIndex": 0}]),
        );
    }
    Ok(())
}

fn has_ports(def: &Map<String, Value>) -> bool {
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    non_empty(def.get("portDefinitions"))
        || non_empty(def.get("ports"))
        || non_empty(def.get("container").and_then(|c| c.get("portMappings")))
}

/// The definition `app run` sends.
fn run_definition(file: Option<&PathBuf>, name: Option<&str>, a: &SpecArgs) -> anyhow::Result<Value> {
    let mut def = match file {
        Some(f) => match read_definition(f)? {
            Value::Object(m) => m,
            _ => unreachable!("read_definition returns objects"),
        },
        None => Map::new(),
    };
    if let Some(name) = name {
        def.insert("id".into(), json!(name));
    }
    if !def.contains_key("id") {
        bail!("give the app a --name (or an \"id\" in its definition)");
    }
    let env = def.get("env").and_then(Value::as_object).cloned().unwrap_or_default();
    apply_flags(&mut def, a, env)?;
    if file.is_none() && a.cmd.is_none() && a.image.is_none() {
        bail!("give a --cmd to run, an --image, or both");
    }
    Ok(Value::Object(def))
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// A JSON value in a table cell: strings bare, whole numbers without `.0`, null as `-`.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn apps_table(apps: &[Value]) -> String {
    let rows = apps
        .iter()
        .map(|a| {
            let what = a["container"]["docker"]["image"]
                .as_str()
                .map(str::to_string)
                .or_else(|| a["cmd"].as_str().map(str::to_string))
                .unwrap_or_else(|| s(&a["args"]));
            let health = match (a["tasksHealthy"].as_u64(), a["tasksUnhealthy"].as_u64()) {
                (Some(0), Some(0)) | (None, None) => "-".to_string(),
                (h, u) => format!("{} healthy, {} unhealthy", h.unwrap_or(0), u.unwrap_or(0)),
            };
            let deployments: Vec<String> = a["deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| s(&d["id"]))
                .collect();
            vec![
                s(&a["id"]),
                format!("{}/{}", a["tasksRunning"].as_u64().unwrap_or(0), s(&a["instances"])),
                health,
                s(&a["cpus"]),
                format!("{} MB", s(&a["mem"])),
                if deployments.is_empty() {
                    "-".into()
                } else {
                    deployments.join(",")
                },
                s(&a["version"]),
                what,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "RUNNING",
            "HEALTH",
            "CPUS",
            "MEM",
            "DEPLOYMENT",
            "VERSION",
            "RUNS",
        ],
        rows,
    )
}

fn tasks_table(tasks: &[Value]) -> String {
    let rows = tasks
        .iter()
        .map(|t| {
            let ports: Vec<String> = t["ports"].as_array().into_iter().flatten().map(s).collect();
            let health = match t["healthCheckResults"].as_array().and_then(|r| r.first()) {
                Some(r) if r["alive"] == json!(true) => "healthy",
                Some(_) => "unhealthy",
                None => "-",
            };
            vec![
                s(&t["id"]),
                s(&t["host"]),
                t["state"]
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches("TASK_")
                    .to_string(),
                if ports.is_empty() { "-".into() } else { ports.join(",") },
                health.into(),
                s(&t["version"]),
                s(&t["startedAt"]),
            ]
        })
        .collect();
    table(
        &["TASK", "HOST", "STATE", "PORTS", "HEALTH", "VERSION", "STARTED"],
        rows,
    )
}

fn app_details(a: &Value) -> String {
    let mut out = apps_table(std::slice::from_ref(a));
    if let Some(f) = a.get("lastTaskFailure") {
        out.push_str(&format!(
            "\nlast failure: {} {} on {} at {}: {}",
            s(&f["taskId"]),
            s(&f["state"]),
            s(&f["host"]),
            s(&f["timestamp"]),
            s(&f["message"])
        ));
    }
    let tasks = a["tasks"].as_array().cloned().unwrap_or_default();
    if tasks.is_empty() {
        out.push_str("\nno instances");
    } else {
        out.push('\n');
        out.push_str(&tasks_table(&tasks));
    }
    out
}

fn deployments_table(list: &[Value]) -> String {
    let rows = list
        .iter()
        .map(|d| {
            let apps: Vec<String> = d["affectedApps"].as_array().into_iter().flatten().map(s).collect();
            let actions: Vec<String> = d["currentActions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", s(&a["action"]), s(&a["app"])))
                .collect();
            vec![
                s(&d["id"]),
                apps.join(","),
                format!("{}/{}", s(&d["currentStep"]), s(&d["totalSteps"])),
                if actions.is_empty() {
                    "-".into()
                } else {
                    actions.join(", ")
                },
                s(&d["version"]),
            ]
        })
        .collect();
    table(&["ID", "APPS", "STEP", "ACTIONS", "STARTED"], rows)
}

/// `app why`: the offers that did not fit a queued app.
fn why_text(app: &str, entry: Option<&Value>, running: u64, instances: u64) -> String {
    let Some(q) = entry else {
        return format!("app {app}: nothing waiting ({running} of {instances} instances running)");
    };
    let mut out = format!("app {app}: {} instance(s) waiting for an offer", s(&q["count"]));
    if q["delay"]["overdue"] == json!(false) {
        out.push_str(&format!(
            "\nlaunches are held back {}s after failures (backoff)",
            s(&q["delay"]["timeLeftSeconds"])
        ));
    }
    let summary = &q["processedOffersSummary"];
    let rows: Vec<Vec<String>> = summary["rejectSummaryLastOffers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["declined"].as_u64().unwrap_or(0) > 0)
        .map(|r| vec![s(&r["reason"]), s(&r["declined"]), s(&r["processed"])])
        .collect();
    if rows.is_empty() {
        out.push_str("\nno offer has been turned down yet");
    } else {
        out.push('\n');
        out.push_str(&table(&["REASON", "DECLINED", "OF OFFERS"], rows));
    }
    if let Some(why) = q["why"].as_str() {
        out.push('\n');
        out.push_str(why);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------------

/// What a command that started a deployment knows of it.
struct Started {
    deployment: String,
    version: String,
    apps: Vec<String>,
    /// The deployment removes the apps.
    removes: bool,
}

/// Whether a deployment that is gone reached its goal: each app at the deployment's version
/// (or gone, for a removal).
async fn reached(m: &Marathon, s: &Started) -> anyhow::Result<bool> {
    for app in &s.apps {
        let now = m.app(app).await?;
        let ok = match now {
            None => s.removes,
            Some(a) => !s.removes && a["version"].as_str() == Some(s.version.as_str()),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Follows a deployment until it is gone, printing its steps on stderr, and why instances
/// wait when they cannot be placed. `Ok` when it succeeded; an error when it failed, was
/// rolled back (at its deadline, or cancelled), or does not exist. It looks again when an
/// event of the deployment or its apps arrives; the only timer is a slow refresh of the
/// explanation, which no event announces.
async fn watch(m: &Marathon, id: &str, mut known: Option<Started>) -> anyhow::Result<()> {
    let mut events = m
        .events(&[
            "deployment_success",
            "deployment_failed",
            "deployment_step_success",
            "deployment_info",
            "status_update_event",
            "health_status_changed_event",
        ])
        .await
        .ok();
    let mut last_line = String::new();
    let mut last_why = String::new();
    let mut pending: Vec<Value> = vec![];
    loop {
        let list = m.get("/v2/deployments").await?;
        let current = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["id"] == json!(id))
            .cloned();
        if let Some(o) = pending.drain(..).find_map(|e| event_outcome(&e, id)) {
            return o.map_err(|e| anyhow::anyhow!(e));
        }
        let Some(d) = current else {
            // Gone: its last event, or else where the apps are, says how it ended.
            if let Some(rx) = events.as_mut() {
                let deadline = tokio::time::Instant::now() + EVENT_GRACE;
                while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    if let Some(o) = event_outcome(&e, id) {
                        return o.map_err(|e| anyhow::anyhow!(e));
                    }
                }
            }
            let Some(k) = known else {
                bail!("no deployment {id} is under way (it finished, or never was)");
            };
            if reached(m, &k).await? {
                return Ok(());
            }
            bail!(
                "deployment {id} did not bring {} to version {}: it failed or was cancelled",
                k.apps.join(", "),
                k.version
            );
        };
        if known.is_none() {
            known = Some(Started {
                deployment: id.to_string(),
                version: s(&d["version"]),
                apps: d["affectedApps"].as_array().into_iter().flatten().map(s).collect(),
                removes: d["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|st| st["actions"].as_array().cloned().unwrap_or_default())
                    .any(|a| a["action"] == json!("StopApplication")),
            });
        }
        let mut parts = Vec::new();
        let mut short = Vec::new();
        for a in d["currentActions"].as_array().into_iter().flatten() {
            let app = s(&a["app"]);
            let progress = match m.app(&app).await? {
                Some(v) => {
                    let (running, instances) = (
                        v["tasksRunning"].as_u64().unwrap_or(0),
                        v["instances"].as_u64().unwrap_or(0),
                    );
                    if running < instances {
                        short.push(app.clone());
                    }
                    format!(" ({running} of {instances} running)")
                }
                None => String::new(),
            };
            parts.push(format!("{} {app}{progress}", s(&a["action"])));
        }
        let line = format!(
            "deployment {id}: step {}/{}: {}",
            s(&d["currentStep"]),
            s(&d["totalSteps"]),
            parts.join(", ")
        );
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        // Instances that wait for offers: why they do not fit, as `app why` says it.
        let why = waiting_why(m, &short).await.unwrap_or_default();
        if !why.is_empty() && why != last_why {
            let deadline = d["deadline"]
                .as_str()
                .map(|t| format!("; rolls back at {t} if not done"))
                .unwrap_or_default();
            eprintln!("{why}{deadline}");
        }
        last_why = why;
        match events.as_mut() {
            Some(rx) => match tokio::time::timeout(WHY_REFRESH, rx.recv()).await {
                Ok(Some(e)) => {
                    pending.push(e);
                    while let Ok(e) = rx.try_recv() {
                        pending.push(e);
                    }
                }
                Ok(None) => events = None,
                Err(_) => {}
            },
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// Why the instances of `apps` that wait for offers are not placed, one line each: the
/// queue's explanation (`app why` shows it whole).
async fn waiting_why(m: &Marathon, apps: &[String]) -> anyhow::Result<String> {
    if apps.is_empty() {
        return Ok(String::new());
    }
    let queue = m.get("/v2/queue").await?;
    let mut lines = vec![];
    for q in queue["queue"].as_array().into_iter().flatten() {
        let app = s(&q["app"]["id"]);
        if !apps.contains(&app) {
            continue;
        }
        let why = q["why"].as_str().unwrap_or("no offer has been turned down yet");
        lines.push(format!("  {} instance(s) of {app} waiting: {why}", s(&q["count"])));
    }
    Ok(lines.join("\n"))
}

/// How an event says a deployment ended, if it is about `id`'s end.
fn event_outcome(e: &Value, id: &str) -> Option<Result<(), String>> {
    if e["id"] != json!(id) {
        return None;
    }
    match e["eventType"].as_str()? {
        "deployment_success" => Some(Ok(())),
        "deployment_failed" => Some(Err(format!(
            "deployment {id} failed: {}",
            e["reason"].as_str().unwrap_or("no reason given")
        ))),
        _ => None,
    }
}

/// Prints what a change started and, with `--wait`, follows it.
async fn started(
    m: &Marathon,
    format: Format,
    answer: &Value,
    apps: Vec<String>,
    removes: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let id = s(&answer["deploymentId"]);
    let version = s(&answer["version"]);
    if !wait {
        return emit(format, answer, |_| {
            format!("deployment {id} started for {} (version {version})", apps.join(", "))
        });
    }
    if matches!(format, Format::Table) {
        println!("deployment {id} started for {} (version {version})", apps.join(", "));
    }
    let k = Started {
        deployment: id.clone(),
        version: version.clone(),
        apps: apps.clone(),
        removes,
    };
    watch(m, &k.deployment.clone(), Some(k)).await?;
    let done = json!({"deploymentId": id, "version": version, "apps": apps, "result": "success"});
    emit(format, &done, |_| format!("deployment {id} done"))
}

// ---------------------------------------------------------------------------------------------
// Verbs
// ---------------------------------------------------------------------------------------------

fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        ""
    }
}

pub async fn run_app(cmd: AppCmd) -> anyhow::Result<()> {
    match cmd {
        AppCmd::Run { file, name, spec, d, c } => {
            let m = Marathon::new(&c.addr);
            let def = run_definition(file.as_ref(), name.as_deref(), &spec)?;
            let (_, app) = m
                .call(Method::POST, &format!("/v2/apps{}", force_query(d.force)), Some(&def))
                .await?;
            let answer = json!({
                "version": app["version"],
                "deploymentId": app["deployments"][0]["id"],
            });
            if answer["deploymentId"].is_null() {
                return emit(c.output, &app, |a| {
                    format!("app {} created; nothing to deploy", s(&a["id"]))
                });
            }
            started(&m, c.output, &answer, vec![s(&app["id"])], false, d.wait).await
        }
        AppCmd::Ls(c) => {
            let m = Marathon::new(&c.addr);
            let v = m.get("/v2/apps").await?;
            let apps = v["apps"].as_array().cloned().unwrap_or_default();
            emit(c.output, &apps, |a| apps_table(a))
        }
        AppCmd::Show { id, c } => {
            let m = Marathon::new(&c.addr);
            let v = m.get(&format!("/v2/apps{}", app_path(&id))).await?;
            emit(c.output, &v["app"], app_details)
        }
        AppCmd::Scale { id, instances, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            if m.app(&id).await?.is_none() {
                bail!("app {id} does not exist");
            }
            let body = json!({ "instances": instances });
            let (_, answer) = m
                .call(
                    Method::PUT,
                    &format!("/v2/apps{id}{}", force_query(d.force)),
                    Some(&body),
                )
                .await?;
            started(&m, c.output, &answer, vec![id], false, d.wait).await
        }
        AppCmd::Restart { id, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            let (_, answer) = m
                .call(
                    Method::POST,
                    &format!("/v2/apps{id}/restart{}", force_query(d.force)),
                    None,
                )
                .await?;
            started(&m, c.output, &answer, vec![id], false, d.wait).await
        }
        AppCmd::Update { id, file, spec, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            let current = m
                .app(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("app {id} does not exist"))?;
            let mut body = match &file {
                Some(f) => match read_definition(f)? {
                    Value::Object(o) => o,
                    _ => unreachable!("read_definition returns objects"),
                },
                None => Map::new(),
            };
            let env = body
                .get("env")
                .or_else(|| current.get("env"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            apply_flags(&mut body, &spec, env)?;
            if body.is_empty() {
                bail!("nothing to change: give a file or flags such as --image, --cmd, --env or --instances");
            }
            body.remove("id");
            let (_, answer) = m
                .call(
                    Method::PUT,
                    &format!("/v2/apps{id}{}", force_query(d.force)),
                    Some(&Value::Object(body)),
                )
                .await?;
            started(&m, c.output, &answer, vec![id], false, d.wait).await
        }
        AppCmd::Rm { id, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            let (_, answer) = m
                .call(Method::DELETE, &format!("/v2/apps{id}{}", force_query(d.force)), None)
                .await?;
            started(&m, c.output, &answer, vec![id], true, d.wait).await
        }
        AppCmd::Rollback { id, to, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            let versions = m.get(&format!("/v2/apps{id}/versions")).await?;
            let list: Vec<String> = versions["versions"].as_array().into_iter().flatten().map(s).collect();
            let target = match to {
                Some(v) if list.contains(&v) => v,
                Some(v) => bail!("app {id} has no version {v}; it has {}", list.join(", ")),
                // Newest first: the current version, then the one before it.
                None => list
                    .get(1)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("app {id} has no earlier version to go back to"))?,
            };
            let body = json!({ "version": target });
            let (_, answer) = m
                .call(
                    Method::PUT,
                    &format!("/v2/apps{id}{}", force_query(d.force)),
                    Some(&body),
                )
                .await?;
            if matches!(c.output, Format::Table) && !d.wait {
                eprintln!("app {id} goes back to version {target}");
            }
            started(&m, c.output, &answer, vec![id], false, d.wait).await
        }
        AppCmd::Why { id, c } => {
            let m = Marathon::new(&c.addr);
            let id = app_path(&id);
            let app = m
                .app(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("app {id} does not exist"))?;
            let queue = m.get("/v2/queue").await?;
            let entry = queue["queue"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["app"]["id"] == json!(id))
                .cloned();
            let running = app["tasksRunning"].as_u64().unwrap_or(0);
            let instances = app["instances"].as_u64().unwrap_or(0);
            let json = entry.clone().unwrap_or_else(|| json!({"app": {"id": id}, "count": 0}));
            emit(c.output, &json, |_| why_text(&id, entry.as_ref(), running, instances))
        }
    }
}

pub async fn run_deployment(cmd: DeploymentCmd) -> anyhow::Result<()> {
    match cmd {
        DeploymentCmd::Ls(c) => {
            let m = Marathon::new(&c.addr);
            let v = m.get("/v2/deployments").await?;
            let list = v.as_array().cloned().unwrap_or_default();
            emit(c.output, &list, |l| deployments_table(l))
        }
        DeploymentCmd::Watch { id, c } => {
            let m = Marathon::new(&c.addr);
            watch(&m, &id, None).await?;
            let done = json!({"deploymentId": id, "result": "success"});
            emit(c.output, &done, |_| format!("deployment {id} done"))
        }
        DeploymentCmd::Rm { id, force, c } => {
            let m = Marathon::new(&c.addr);
            let (status, answer) = m
                .call(
                    Method::DELETE,
                    &format!("/v2/deployments/{id}{}", force_query(force)),
                    None,
                )
                .await?;
            if status == 202 || answer.is_null() {
                let v = json!({"deploymentId": id, "stopped": true});
                return emit(c.output, &v, |_| {
                    format!("deployment {id} stopped; its apps stay as they are now")
                });
            }
            emit(c.output, &answer, |a| {
                format!(
                    "deployment {id} cancelled; deployment {} rolls it back",
                    s(&a["deploymentId"])
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_marathon_definition() {
        let a = SpecArgs {
            image: Some("nginx".into()),
            instances: Some(3),
            ports: vec![80],
            cmd: None,
            cpus: Some(0.5),
            mem: Some(64.0),
            env: vec![("A".into(), "1".into())],
            health_path: Some("/".into()),
        };
        let def = run_definition(None, Some("web"), &a).unwrap();
        assert_eq!(def["id"], "web");
        assert_eq!(def["instances"], 3);
        assert_eq!(def["container"]["docker"]["image"], "nginx");
        assert_eq!(def["container"]["portMappings"][0]["containerPort"], 80);
        assert_eq!(def["networks"][0]["mode"], "container/bridge");
        assert_eq!(def["env"]["A"], "1");
        assert_eq!(def["healthChecks"][0]["portIndex"], 0);

        let host = SpecArgs {
            cmd: Some("exec sleep 1000".into()),
            ports: vec![0],
            ..SpecArgs::default()
        };
        let def = run_definition(None, Some("/prod/sleeper"), &host).unwrap();
        assert_eq!(def["portDefinitions"][0]["port"], 0);
        assert_eq!(def["requirePorts"], false);
        assert!(def.get("container").is_none());

        assert!(run_definition(None, None, &host).is_err(), "an app needs an id");
        assert!(run_definition(None, Some("x"), &SpecArgs::default()).is_err());
        let unchecked = SpecArgs {
            cmd: Some("x".into()),
            health_path: Some("/".into()),
            ..SpecArgs::default()
        };
        assert!(run_definition(None, Some("x"), &unchecked).is_err());
    }

    #[test]
    fn update_flags_add_to_the_environment() {
        let mut body = Map::new();
        let a = SpecArgs {
            env: vec![("B".into(), "2".into())],
            ..SpecArgs::default()
        };
        let current = json!({"A": "1", "B": "0"}).as_object().cloned().unwrap();
        apply_flags(&mut body, &a, current).unwrap();
        assert_eq!(Value::Object(body), json!({"env": {"A": "1", "B": "2"}}));
    }

    #[test]
    fn sse_messages_are_taken_whole() {
        let mut buf =
            String::from(": comment\n\nevent: deployment_success\ndata: {\"eventType\":\"deployment_success\",");
        assert!(tepui_api::marathon::take_sse_events(&mut buf).is_empty());
        buf.push_str("\"id\":\"d1\"}\n\nevent: x\ndata: {");
        let got = tepui_api::marathon::take_sse_events(&mut buf);
        assert_eq!(got, [json!({"eventType": "deployment_success", "id": "d1"})]);
        assert_eq!(event_outcome(&got[0], "d1"), Some(Ok(())));
        assert_eq!(event_outcome(&got[0], "d2"), None);
        assert_eq!(buf, "event: x\ndata: {");
        let failed = json!({"eventType": "deployment_failed", "id": "d1", "reason": "deadline"});
        assert_eq!(
            event_outcome(&failed, "d1"),
            Some(Err("deployment d1 failed: deadline".into()))
        );
    }

    #[test]
    fn why_names_the_reasons() {
        let entry = json!({
            "app": {"id": "/big"}, "count": 2,
            "delay": {"timeLeftSeconds": 0, "overdue": true},
            "processedOffersSummary": {"rejectSummaryLastOffers": [
                {"reason": "UnfulfilledRole", "declined": 0, "processed": 4},
                {"reason": "InsufficientCpus", "declined": 4, "processed": 4}
            ]},
            "why": "4 of the last 4 offers lacked cpus (app needs 100, the largest offer had 2)"
        });
        let text = why_text("/big", Some(&entry), 0, 2);
        assert!(text.contains("2 instance(s) waiting"), "{text}");
        assert!(text.contains("InsufficientCpus"), "{text}");
        assert!(!text.contains("UnfulfilledRole"), "{text}");
        assert!(
            text.ends_with("lacked cpus (app needs 100, the largest offer had 2)"),
            "{text}"
        );
        assert_eq!(
            why_text("/ok", None, 2, 2),
            "app /ok: nothing waiting (2 of 2 instances running)"
        );
        assert_eq!(app_path("web/"), "/web");
        assert_eq!(app_path("/prod/web"), "/prod/web");
        assert_eq!(s(&json!(32.0)), "32");
        assert_eq!(s(&json!(0.1)), "0.1");
        assert_eq!(s(&json!(null)), "-");
    }
}
