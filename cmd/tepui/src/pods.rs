//! `tepui pod ...`: Marathon pods through `/v2/pods`. Each verb is a call or two and a table or
//! JSON; changes print their deployment (Marathon's `Marathon-Deployment-Id`) and, with
//! `--wait`, follow it until it is gone and the pod is where it was sent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use tepui_api::marathon::{Marathon, MarathonError};

use crate::apps::DeployArgs;
use crate::output::{emit, table};
use crate::ClientArgs;

/// How often `--wait` looks at the deployment.
const POLL: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum PodCmd {
    /// Create a pod from a Marathon pod definition (a JSON file, `-` for stdin).
    Add {
        file: PathBuf,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List pods with their status.
    Ls(ClientArgs),
    /// One pod's definition and containers.
    Show {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Replace a pod's definition (the whole definition, as Marathon's PUT).
    Update {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Set how many instances a pod runs.
    Scale {
        id: String,
        instances: u32,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Delete a pod: its instances are stopped.
    Rm {
        id: String,
        #[command(flatten)]
        d: DeployArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// A pod's status (STABLE or DEGRADED) and its instances.
    Status {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// A pod's instances with their containers and endpoints.
    Instances {
        id: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Kill one instance of a pod; the scheduler replaces it.
    Kill {
        id: String,
        instance: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

/// `web` and `/web` name the same pod.
fn pod_path(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

fn read_definition(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the pod definition from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON pod definition", file.display()))?;
    if !v.is_object() {
        bail!("{} must hold one JSON object, a pod definition", file.display());
    }
    Ok(v)
}

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

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn stable_count(status: &Value) -> usize {
    list(&status["instances"])
        .iter()
        .filter(|i| i["status"] == "STABLE")
        .count()
}

fn pods_table(statuses: &[Value]) -> String {
    let rows = statuses
        .iter()
        .map(|st| {
            let spec = &st["spec"];
            let containers: Vec<String> = list(&spec["containers"]).iter().map(|c| s(&c["name"])).collect();
            vec![
                s(&st["id"]),
                s(&st["status"]),
                format!("{}/{}", stable_count(st), s(&spec["scaling"]["instances"])),
                containers.join(","),
                s(&spec["version"]),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "STABLE", "CONTAINERS", "VERSION"], rows)
}

fn pod_details(p: &Value) -> String {
    let mut out = vec![
        format!("id:          {}", s(&p["id"])),
        format!("instances:   {}", s(&p["scaling"]["instances"])),
        format!("network:     {}", s(&p["networks"][0]["mode"])),
        format!(
            "upgrade:     minimumHealthCapacity {}, maximumOverCapacity {}",
            s(&p["scheduling"]["upgrade"]["minimumHealthCapacity"]),
            s(&p["scheduling"]["upgrade"]["maximumOverCapacity"])
        ),
        format!("version:     {}", s(&p["version"])),
        String::new(),
    ];
    let rows = list(&p["containers"])
        .iter()
        .map(|c| {
            let command = match &c["exec"]["command"] {
                Value::Object(o) if o.contains_key("shell") => s(&o["shell"]),
                Value::Object(o) => list(&o["argv"]).iter().map(s).collect::<Vec<_>>().join(" "),
                _ => "-".into(),
            };
            let endpoints: Vec<String> = list(&c["endpoints"])
                .iter()
                .map(|e| match (&e["hostPort"], &e["containerPort"]) {
                    (Value::Null, cp) => format!("{}:{}", s(&e["name"]), s(cp)),
                    (hp, Value::Null) => format!("{}:{}", s(&e["name"]), s(hp)),
                    (hp, cp) => format!("{}:{}->{}", s(&e["name"]), s(hp), s(cp)),
                })
                .collect();
            let check = ["http", "tcp", "exec"]
                .iter()
                .find(|k| !c["healthCheck"][**k].is_null())
                .map(|k| k.to_uppercase())
                .unwrap_or_else(|| "-".into());
            vec![
                s(&c["name"]),
                s(&c["image"]["id"]),
                s(&c["resources"]["cpus"]),
                format!("{} MB", s(&c["resources"]["mem"])),
                if endpoints.is_empty() {
                    "-".into()
                } else {
                    endpoints.join(",")
                },
                check,
                command,
            ]
        })
        .collect();
    out.push(table(
        &["CONTAINER", "IMAGE", "CPUS", "MEM", "ENDPOINTS", "CHECK", "COMMAND"],
        rows,
    ));
    out.join("\n")
}

fn instances_table(instances: &[Value]) -> String {
    let rows = instances
        .iter()
        .map(|i| {
            let containers: Vec<String> = list(&i["containers"])
                .iter()
                .map(|c| format!("{}:{}", s(&c["name"]), s(&c["status"])))
                .collect();
            let endpoints: Vec<String> = list(&i["containers"])
                .iter()
                .flat_map(|c| list(&c["endpoints"]).iter())
                .filter(|e| !e["allocatedHostPort"].is_null())
                .map(|e| format!("{}:{}", s(&e["name"]), s(&e["allocatedHostPort"])))
                .collect();
            vec![
                s(&i["id"]),
                s(&i["status"]),
                s(&i["agentHostname"]),
                containers.join(","),
                if endpoints.is_empty() {
                    "-".into()
                } else {
                    endpoints.join(",")
                },
            ]
        })
        .collect();
    table(&["INSTANCE", "STATUS", "AGENT", "CONTAINERS", "ENDPOINTS"], rows)
}

fn status_text(st: &Value) -> String {
    let mut out = format!(
        "{}: {} ({} of {} instances stable)",
        s(&st["id"]),
        s(&st["status"]),
        stable_count(st),
        s(&st["spec"]["scaling"]["instances"])
    );
    if let Some(m) = st["message"].as_str() {
        out.push_str(&format!("; {m}"));
    }
    let instances = list(&st["instances"]);
    if !instances.is_empty() {
        out.push('\n');
        out.push_str(&instances_table(instances));
    }
    out
}

fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        ""
    }
}

/// Follows a deployment until it is gone; then the pod must be at `version` and STABLE (or
/// gone, for a removal). An error when it was rolled back or replaced.
async fn wait_for(m: &Marathon, deployment: &str, pod: &str, version: Option<&str>) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let deployments = m.get("/v2/deployments").await?;
        let current = list(&deployments).iter().find(|d| d["id"] == json!(deployment));
        match current {
            Some(d) => {
                let line = format!(
                    "step {}/{}: {}",
                    s(&d["currentStep"]),
                    s(&d["totalSteps"]),
                    list(&d["currentActions"])
                        .iter()
                        .map(|a| s(&a["action"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if line != last {
                    eprintln!("{line}");
                    last = line;
                }
            }
            None => break,
        }
        tokio::time::sleep(POLL).await;
    }
    match (version, m.get(&format!("/v2/pods{pod}")).await) {
        (None, Err(MarathonError::Refused { status: 404, .. })) => Ok(()),
        (None, Ok(_)) => bail!("deployment {deployment} ended but pod {pod} is still there"),
        (Some(v), Ok(p)) if p["version"].as_str() == Some(v) => Ok(()),
        (Some(_), Ok(p)) => bail!(
            "deployment {deployment} did not finish: pod {pod} is at version {} (rolled back or replaced)",
            s(&p["version"])
        ),
        (_, Err(e)) => Err(e.into()),
    }
}

/// Prints what a change started and, with `--wait`, follows it.
async fn changed(
    m: &Marathon,
    c: &ClientArgs,
    d: &DeployArgs,
    headers: &reqwest::header::HeaderMap,
    pod: &str,
    version: Option<String>,
) -> anyhow::Result<()> {
    let deployment = headers
        .get("Marathon-Deployment-Id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let answer = json!({"pod": pod, "deploymentId": deployment, "version": version});
    let what = match &version {
        Some(v) => format!("deployment {deployment} started for pod {pod} (version {v})"),
        None => format!("deployment {deployment} started to remove pod {pod}"),
    };
    if !d.wait {
        return emit(c.output, &answer, |_| what);
    }
    if matches!(c.output, crate::Format::Table) {
        println!("{what}");
    }
    wait_for(m, &deployment, pod, version.as_deref()).await?;
    let done = json!({"pod": pod, "deploymentId": deployment, "version": version, "result": "success"});
    emit(c.output, &done, |_| format!("deployment {deployment} done"))
}

async fn put(m: &Marathon, id: &str, body: &Value, d: &DeployArgs, c: &ClientArgs) -> anyhow::Result<()> {
    let (_, headers, pod) = m
        .call_with_headers(
            Method::PUT,
            &format!("/v2/pods{id}{}", force_query(d.force)),
            Some(body),
        )
        .await?;
    changed(m, c, d, &headers, id, pod["version"].as_str().map(str::to_string)).await
}

pub async fn run_pod(cmd: PodCmd) -> anyhow::Result<()> {
    match cmd {
        PodCmd::Add { file, d, c } => {
            let m = Marathon::new(&c.addr);
            let def = read_definition(&file)?;
            let (_, headers, pod) = m
                .call_with_headers(Method::POST, &format!("/v2/pods{}", force_query(d.force)), Some(&def))
                .await?;
            let id = s(&pod["id"]);
            changed(&m, &c, &d, &headers, &id, pod["version"].as_str().map(str::to_string)).await
        }
        PodCmd::Ls(c) => {
            let m = Marathon::new(&c.addr);
            let v = m.get("/v2/pods/::status").await?;
            emit(c.output, &v, |v| pods_table(list(v)))
        }
        PodCmd::Show { id, c } => {
            let m = Marathon::new(&c.addr);
            let v = m.get(&format!("/v2/pods{}", pod_path(&id))).await?;
            emit(c.output, &v, pod_details)
        }
        PodCmd::Update { id, file, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = pod_path(&id);
            let mut def = read_definition(&file)?;
            def["id"] = json!(id);
            put(&m, &id, &def, &d, &c).await
        }
        PodCmd::Scale { id, instances, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = pod_path(&id);
            let mut def = m.get(&format!("/v2/pods{id}")).await?;
            def["scaling"] = json!({"kind": "fixed", "instances": instances});
            put(&m, &id, &def, &d, &c).await
        }
        PodCmd::Rm { id, d, c } => {
            let m = Marathon::new(&c.addr);
            let id = pod_path(&id);
            let (_, headers, _) = m
                .call_with_headers(Method::DELETE, &format!("/v2/pods{id}{}", force_query(d.force)), None)
                .await?;
            changed(&m, &c, &d, &headers, &id, None).await
        }
        PodCmd::Status { id, c } => {
            let m = Marathon::new(&c.addr);
            let v = m.get(&format!("/v2/pods{}::status", pod_path(&id))).await?;
            emit(c.output, &v, status_text)
        }
        PodCmd::Instances { id, c } => {
            let m = Marathon::new(&c.addr);
            let v = m.get(&format!("/v2/pods{}::status", pod_path(&id))).await?;
            let instances = v["instances"].clone();
            emit(c.output, &instances, |i| {
                if list(i).is_empty() {
                    format!("pod {} has no instances", pod_path(&id))
                } else {
                    instances_table(list(i))
                }
            })
        }
        PodCmd::Kill { id, instance, c } => {
            let m = Marathon::new(&c.addr);
            let id = pod_path(&id);
            let (_, v) = m
                .call(Method::DELETE, &format!("/v2/pods{id}::instances/{instance}"), None)
                .await?;
            emit(c.output, &v, |_| {
                format!("instance {instance} of pod {id} is being killed")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_marathons_status() {
        let st = json!([{
            "id": "/web", "status": "DEGRADED",
            "spec": {"scaling": {"instances": 2}, "version": "v1",
                     "containers": [{"name": "server"}, {"name": "client"}]},
            "instances": [{"id": "web.instance-1", "status": "STABLE", "agentHostname": "a1",
                "containers": [{"name": "server", "status": "TASK_RUNNING",
                                "endpoints": [{"name": "http", "allocatedHostPort": 31000}]}]}]
        }]);
        let t = pods_table(list(&st));
        assert!(
            t.contains("/web") && t.contains("DEGRADED") && t.contains("1/2") && t.contains("server,client"),
            "{t}"
        );
        let i = instances_table(list(&st[0]["instances"]));
        assert!(
            i.contains("web.instance-1") && i.contains("http:31000") && i.contains("server:TASK_RUNNING"),
            "{i}"
        );
        assert!(status_text(&st[0]).starts_with("/web: DEGRADED (1 of 2 instances stable)"));
    }
}
