//! `/metrics` of a real node after real work: `tepui dev` on 127.0.97.1 takes API calls (one
//! route hit twice, one path no route matches), deploys an app whose instance the agent
//! launches, and runs a job to its end; then the server's and the agent's `/metrics` are read
//! as Prometheus would, checked by a strict reader of the text format (and by `promtool check
//! metrics` when installed, e2e/setup.sh), and their families must show that work: requests
//! under their route template (never the raw path), Raft commits and fsyncs, the allocator's
//! passes, the app and the job, the agent's launches and heartbeats, the process. Every metric
//! that deploy/grafana/tepui-dashboard.json and deploy/prometheus/tepui-alerts.yml name must
//! be one of those families (and the rules pass `promtool check rules`).
//!
//! Runs on 127.0.97.1 with ports 38200-38219 and the bridge `tpe2e-metr`; needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tepui_e2e::{http_addr, http_client, need_root, spawn_dev, tepui, wait_for, Sandbox};
use tepui_metrics::exposition::{self, Family};

const IP: &str = "127.0.97.1";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);

type Families = BTreeMap<String, Family>;

fn get(url: &str) -> Result<(u16, String), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = http_client().build().map_err(|e| e.to_string())?;
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    })
}

/// A scrape, read strictly, and checked by promtool too when it is installed.
fn scrape(url: &str) -> Result<Families, String> {
    let (status, text) = get(url)?;
    if status != 200 {
        return Err(format!("{url}: {status} {text}"));
    }
    let families = exposition::parse(&text).map_err(|e| format!("{url}: {e}"))?;
    promtool(&["check", "metrics"], Some(&text));
    Ok(families)
}

fn have_promtool() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs promtool (when installed) and fails the test on any complaint, lint included.
fn promtool(args: &[&str], stdin: Option<&str>) {
    if !have_promtool() {
        eprintln!("promtool is not installed (e2e/setup.sh installs it): skipping promtool {args:?}");
        return;
    }
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    // `check metrics` prints lint problems but may still exit 0.
    if args.contains(&"metrics") {
        assert!(said.trim().is_empty(), "promtool {args:?} complained:\n{said}");
    }
}

fn value(f: &Families, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    f.get(family)
        .unwrap_or_else(|| panic!("family {family} missing"))
        .sum(sample, labels)
}

fn label_values(f: &Families, family: &str, label: &str) -> BTreeSet<String> {
    f.get(family)
        .map(|fam| {
            fam.samples
                .iter()
                .filter_map(|s| s.labels.get(label).cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// The metric names in a PromQL expression: the words that start like tepui's metrics (label
/// names never do; label values are in quotes and skipped).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
            word.clear();
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("tepui_") || word.starts_with("process_") {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

/// The family a sample name belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn family_of<'a>(name: &'a str, families: &Families) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (families.get(base)?.kind == "histogram").then_some(base)
    })
}

/// Every `expr` of the dashboard's panels and of the alert rules.
fn deploy_exprs(root: &Path) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/tepui-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string() && dash["schemaVersion"].is_number());
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr").to_string();
            exprs.push((format!("panel {:?}", panel["title"]), expr));
        }
    }
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/tepui-alerts.yml")).unwrap();
    let mut alert = String::new();
    for line in rules.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- alert:") {
            alert = name.trim().to_string();
        }
        if let Some(expr) = line.strip_prefix("expr:") {
            let expr = expr.trim();
            assert!(
                !expr.starts_with('|') && !expr.starts_with('>'),
                "keep {alert}'s expr on one line"
            );
            exprs.push((format!("alert {alert}"), expr.to_string()));
        }
    }
    exprs
}

#[test]
fn a_busy_node_exposes_its_metrics_and_the_dashboard_and_alerts_name_only_those() {
    need_root();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = root.join("deploy/prometheus/tepui-alerts.yml");
    promtool(&["check", "rules", &rules.display().to_string()], None);

    let sb = Sandbox::new("metrics");
    let (_dev, _data) = spawn_dev(
        &sb,
        "metrics1",
        IP,
        "38200-38219",
        ("tpe2e-metr", "10.214.97.0/24"),
        START,
    );
    let addr = http_addr(IP);
    let server = format!("http://{addr}/metrics");
    let agent = format!("http://{IP}:5051/metrics");

    // Route hits: one route twice, and a path no route matches.
    for _ in 0..2 {
        let (status, body) = get(&format!("http://{addr}/v1/nodes")).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = get(&format!("http://{addr}/v1/no/such/route")).unwrap();
    assert_eq!(status, 404);
    // An app deployed (its instance launched on the agent), and a job run to its end.
    tepui(&[
        "app",
        "run",
        "--name",
        "/metr/web",
        "--cmd",
        "exec sleep 1000",
        "--cpus",
        "0.1",
        "--mem",
        "16",
        "--wait",
        "--addr",
        &addr,
    ])
    .ok();
    tepui(&["app", "show", "/metr/web", "--addr", &addr]).ok();
    let job = sb.join("job.json");
    std::fs::write(
        &job,
        r#"{"id": "metr.once", "run": {"cmd": "echo done", "cpus": 0.1, "mem": 32}}"#,
    )
    .unwrap();
    tepui(&["job", "add", &job.display().to_string(), "--addr", &addr]).ok();
    tepui(&["job", "run", "metr.once", "--wait", "--addr", &addr]).ok();

    // The agent's load arrives with its next heartbeat.
    let s = wait_for("the leader to show the agent's running instance", SETTLE, || {
        let f = scrape(&server)?;
        let containers = value(
            &f,
            "tepui_agent_reported_containers",
            "tepui_agent_reported_containers",
            &[("agent", "metrics1")],
        );
        if containers >= 1.0 {
            Ok(f)
        } else {
            Err(format!("tepui_agent_reported_containers = {containers}"))
        }
    });

    // Requests, under their route template.
    let nodes = [("route", "/v1/nodes"), ("method", "GET"), ("class", "2xx")];
    assert!(value(&s, "tepui_http_requests_total", "tepui_http_requests_total", &nodes) >= 2.0);
    assert!(
        value(
            &s,
            "tepui_http_request_duration_seconds",
            "tepui_http_request_duration_seconds_count",
            &nodes
        ) >= 2.0
    );
    let unmatched = [("route", "unmatched"), ("class", "4xx")];
    assert!(value(&s, "tepui_http_requests_total", "tepui_http_requests_total", &unmatched) >= 1.0);
    let routes = label_values(&s, "tepui_http_requests_total", "route");
    assert!(
        routes.contains("/v2/apps") && routes.contains("/v2/apps/{*path}"),
        "{routes:?}"
    );
    for r in &routes {
        assert!(r == "unmatched" || r.starts_with('/'), "{r}");
        assert!(
            !r.contains("/metr/") && !r.contains("metr.once"),
            "a raw path as a route label: {r} ({routes:?})"
        );
    }
    // Raft.
    assert_eq!(value(&s, "tepui_raft_has_leader", "tepui_raft_has_leader", &[]), 1.0);
    assert!(
        value(
            &s,
            "tepui_raft_leader_changes_total",
            "tepui_raft_leader_changes_total",
            &[]
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "tepui_raft_commit_duration_seconds",
            "tepui_raft_commit_duration_seconds_count",
            &[]
        ) > 0.0
    );
    assert!(
        value(
            &s,
            "tepui_raft_log_fsync_duration_seconds",
            "tepui_raft_log_fsync_duration_seconds_count",
            &[]
        ) > 0.0
    );
    assert!(value(&s, "tepui_raft_log_size_bytes", "tepui_raft_log_size_bytes", &[]) > 0.0);
    assert!(value(&s, "tepui_raft_log_entries", "tepui_raft_log_entries", &[]) > 0.0);
    for name in ["tepui_raft_snapshot_size_bytes", "tepui_raft_snapshot_duration_seconds"] {
        assert!(s.contains_key(name), "{name}");
    }
    // Allocator, services, jobs.
    assert!(
        value(
            &s,
            "tepui_allocator_cycle_duration_seconds",
            "tepui_allocator_cycle_duration_seconds_count",
            &[]
        ) > 0.0
    );
    assert!(value(&s, "tepui_allocator_offers_total", "tepui_allocator_offers_total", &[]) > 0.0);
    assert_eq!(value(&s, "tepui_services_apps", "tepui_services_apps", &[]), 1.0);
    assert!(s.contains_key("tepui_services_deployments_in_progress"));
    assert!(s.contains_key("tepui_services_instances_waiting"));
    assert!(
        value(
            &s,
            "tepui_jobs_runs_finished_total",
            "tepui_jobs_runs_finished_total",
            &[("result", "success")]
        ) >= 1.0
    );
    // The agent as the leader hears it.
    let age = value(
        &s,
        "tepui_agent_heartbeat_age_seconds",
        "tepui_agent_heartbeat_age_seconds",
        &[("agent", "metrics1")],
    );
    assert!((0.0..30.0).contains(&age), "heartbeat age {age}");
    assert!(label_values(&s, "tepui_agent_reported_status_updates_queued", "agent").contains("metrics1"));
    // The process.
    assert!(
        value(
            &s,
            "process_resident_memory_bytes",
            "process_resident_memory_bytes",
            &[]
        ) > 0.0
    );
    assert!(value(&s, "process_open_fds", "process_open_fds", &[]) > 0.0);

    // The agent's own /metrics.
    let a = scrape(&agent).unwrap();
    assert!(value(&a, "tepui_agent_containers", "tepui_agent_containers", &[]) >= 1.0);
    assert!(
        value(
            &a,
            "tepui_agent_task_launch_duration_seconds",
            "tepui_agent_task_launch_duration_seconds_count",
            &[]
        ) >= 2.0,
        "the app's instance and the job's task"
    );
    for name in [
        "tepui_agent_status_updates_queued",
        "tepui_agent_image_pulls_total",
        "process_cpu_seconds_total",
    ] {
        assert!(a.contains_key(name), "{name} missing from the agent");
    }

    // Every metric the dashboard and the alerts name is exposed by the server or the agent.
    let mut all = s.clone();
    all.extend(a);
    let exprs = deploy_exprs(&root);
    assert!(exprs.len() > 20, "{exprs:?}");
    let mut unknown = Vec::new();
    for (place, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for n in names {
            if family_of(&n, &all).is_none() {
                unknown.push(format!("{place}: {n}"));
            }
        }
    }
    assert!(unknown.is_empty(), "named but not exposed:\n{}", unknown.join("\n"));
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(tepui_http_request_duration_seconds_bucket{route="tepui_x"}[5m])))"#
        ),
        vec!["tepui_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names("process_open_fds / process_max_fds > 0.8"),
        vec!["process_open_fds", "process_max_fds"]
    );
}
