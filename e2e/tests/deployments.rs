//! Deployments through Marathon's `/v2` API with real processes: a manual rollback
//! (`PUT /v2/apps/X` with `{"version": V}`) brings an earlier definition back under a new
//! configuration version, replacing the running instances; cancelling a deployment that cannot
//! finish (`DELETE /v2/deployments/ID`) rolls it back under a new deployment, and with
//! `?force=true` just removes it and leaves the app as it is.
//!
//! The instances are `sleep`s on the host's filesystem carrying the app's environment, so the
//! test reads which definition really runs from the processes themselves (/proc/PID/environ).
//! A deployment is kept in progress by a health check that never passes (COMMAND `false`, with a
//! grace period longer than the test).
//!
//! Runs on 127.0.41.x with ports 33020-33059; needs root.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::marathon::{task_ids, task_versions, Marathon};
use tepui_e2e::{
    bootstrap_server, http_addr, need_root, process_env, spawn_agent, wait_for, Daemon, MarkedProcesses, Sandbox,
    MARKER_VAR,
};

const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);

/// A server on `server_ip` and one agent (2 cpus, 1 GB) on `agent_ip`.
fn cluster(sb: &Sandbox, server_ip: &str, agent_ip: &str, ports: &str) -> (Daemon, Daemon) {
    let server = bootstrap_server(sb, server_ip, &[]);
    let agent = spawn_agent(
        sb,
        server_ip,
        "a1",
        agent_ip,
        &[
            "--cpus",
            "2",
            "--mem",
            "1024",
            "--ports",
            ports,
            "--heartbeat-secs",
            "0.5",
        ],
        START,
    );
    (server, agent)
}

/// The `COLOR` of every live process of this test's instances, sorted.
fn colors(marked: &MarkedProcesses) -> Vec<String> {
    let mut c: Vec<String> = marked
        .pids()
        .into_iter()
        .map(|pid| process_env(pid, "COLOR").unwrap_or_default())
        .collect();
    c.sort();
    c
}

/// Waits until exactly the processes `want` (their colors) run.
fn wait_colors(marked: &MarkedProcesses, want: &[&str]) {
    wait_for(&format!("processes of colors {want:?}"), SETTLE, || {
        let now = colors(marked);
        if now == want {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_string()
}

#[test]
fn a_manual_rollback_runs_an_earlier_version_again() {
    need_root();
    let marked = MarkedProcesses::new("deploy-rollback");
    let sb = Sandbox::new("deploy-rollback");
    let (_server, _agent) = cluster(&sb, "127.0.41.1", "127.0.41.2", "33020-33039");
    let m = Marathon::new(&http_addr("127.0.41.1"));
    let app = |color: &str| {
        json!({
            "id": "/roll/back", "instances": 2, "cpus": 0.1, "mem": 16, "cmd": "exec sleep 1000",
            "env": {"COLOR": color, MARKER_VAR: marked.value()},
        })
    };
    let created = m
        .call(Method::POST, "/v2/apps", Some(&app("blue")))
        .expect(201, "create");
    let first_version = s(&created.body["version"]);
    let blue = m.wait_settled("/roll/back", 2, None, SETTLE);
    let blue_config = s(&blue["versionInfo"]["lastConfigChangeAt"]);
    assert_eq!(task_versions(&blue), BTreeSet::from([blue_config.clone()]));
    wait_colors(&marked, &["blue", "blue"]);

    let put = m
        .call(Method::PUT, "/v2/apps/roll/back", Some(&app("green")))
        .expect(200, "the change to green");
    m.wait_deployment_gone(&s(&put.body["deploymentId"]), SETTLE);
    let green = m.app("/roll/back").unwrap();
    let green_config = s(&green["versionInfo"]["lastConfigChangeAt"]);
    assert_ne!(green_config, blue_config);
    let green = m.wait_settled("/roll/back", 2, Some(&green_config), SETTLE);
    wait_colors(&marked, &["green", "green"]);

    // Back to the first version: its definition, under a new configuration version, and new
    // instances that run it.
    let back = m
        .call(
            Method::PUT,
            "/v2/apps/roll/back",
            Some(&json!({"version": first_version})),
        )
        .expect(200, "the rollback");
    let rollback = s(&back.body["deploymentId"]);
    let rolled_version = s(&back.body["version"]);
    assert_ne!(rolled_version, first_version, "a rollback is a new version");
    m.wait_deployment_gone(&rollback, SETTLE);
    let now = m.app("/roll/back").unwrap();
    assert_eq!(now["env"]["COLOR"], "blue", "{now}");
    let rolled_config = s(&now["versionInfo"]["lastConfigChangeAt"]);
    assert!(
        rolled_config != blue_config && rolled_config != green_config,
        "the rollback is a configuration change of its own: {rolled_config}"
    );
    let rolled = m.wait_settled("/roll/back", 2, Some(&rolled_config), SETTLE);
    assert!(
        task_ids(&rolled).is_disjoint(&task_ids(&green)),
        "every green instance was replaced"
    );
    wait_colors(&marked, &["blue", "blue"]);
    let versions = m.get("/v2/apps/roll/back/versions").unwrap();
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(3), "{versions}");

    // A version the app never had.
    let unknown = m
        .call(
            Method::PUT,
            "/v2/apps/roll/back",
            Some(&json!({"version": "2001-01-01T00:00:00.000Z"})),
        )
        .expect(404, "an unknown version");
    assert!(unknown.text.contains("does not exist"), "{}", unknown.text);
    assert_eq!(m.deployment_ids().unwrap(), Vec::<String>::new());

    m.call(Method::DELETE, "/v2/apps/roll/back", None).expect(200, "delete");
    wait_colors(&marked, &[]);
}

#[test]
fn a_cancelled_deployment_rolls_back_and_a_forced_cancel_leaves_the_app_as_it_is() {
    need_root();
    let marked = MarkedProcesses::new("deploy-cancel");
    let sb = Sandbox::new("deploy-cancel");
    let (_server, _agent) = cluster(&sb, "127.0.41.11", "127.0.41.12", "33040-33059");
    let m = Marathon::new(&http_addr("127.0.41.11"));
    let app = |color: &str, check: &str| {
        json!({
            "id": "/stuck", "instances": 2, "cpus": 0.1, "mem": 16, "cmd": "exec sleep 1000",
            "env": {"COLOR": color, MARKER_VAR: marked.value()},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": check},
                "gracePeriodSeconds": 600, "intervalSeconds": 1, "timeoutSeconds": 5,
                "maxConsecutiveFailures": 3, "delaySeconds": 0}],
            // New instances first; the old ones go only as new ones pass their checks.
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
        })
    };
    m.call(Method::POST, "/v2/apps", Some(&app("blue", "true")))
        .expect(201, "create");
    let blue = m.wait_settled("/stuck", 2, None, SETTLE);
    assert_eq!(
        blue["tasksHealthy"], 2,
        "the deployment ended with both healthy: {blue}"
    );
    let blue_tasks = task_ids(&blue);
    let blue_config = s(&blue["versionInfo"]["lastConfigChangeAt"]);
    wait_colors(&marked, &["blue", "blue"]);

    // A change whose instances never pass their check: it stays in progress.
    let start_stuck = || {
        let put = m
            .call(Method::PUT, "/v2/apps/stuck", Some(&app("green", "false")))
            .expect(200, "the change that cannot finish");
        let id = s(&put.body["deploymentId"]);
        wait_colors(&marked, &["blue", "blue", "green", "green"]);
        assert_eq!(m.deployment_ids().unwrap(), std::slice::from_ref(&id));
        id
    };

    // Cancel: a new deployment rolls it back; the green instances go, the blue ones stay.
    let stuck = start_stuck();
    let cancel = m
        .call(Method::DELETE, &format!("/v2/deployments/{stuck}"), None)
        .expect(200, "cancel");
    let rollback = s(&cancel.body["deploymentId"]);
    assert_ne!(rollback, stuck, "the rollback is a deployment of its own");
    assert!(cancel.body["version"].is_string(), "{}", cancel.text);
    assert!(
        !m.deployment_ids().unwrap().contains(&stuck),
        "the cancelled deployment is gone at once"
    );
    m.wait_deployment_gone(&rollback, SETTLE);
    let back = m.wait_settled("/stuck", 2, Some(&blue_config), SETTLE);
    assert_eq!(back["env"]["COLOR"], "blue", "{back}");
    assert_eq!(back["healthChecks"][0]["command"]["value"], "true", "{back}");
    assert_eq!(task_ids(&back), blue_tasks, "the original instances were kept");
    wait_colors(&marked, &["blue", "blue"]);

    // Cancel with force: the deployment is dropped, nothing rolls back, the app keeps the
    // definition it was given.
    let stuck = start_stuck();
    let forced = m.call(Method::DELETE, &format!("/v2/deployments/{stuck}?force=true"), None);
    assert_eq!(forced.status, 202, "a forced cancel: {}", forced.text);
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        // Showing that nothing happens takes a while of looking.
        assert_eq!(m.deployment_ids().unwrap(), Vec::<String>::new(), "no rollback starts");
        let a = m.app("/stuck").unwrap();
        assert_eq!(a["env"]["COLOR"], "green", "the app stays as it was: {a}");
        assert_eq!(a["healthChecks"][0]["command"]["value"], "false", "{a}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        colors(&marked).contains(&"green".to_string()),
        "the green instances were not rolled back"
    );
    m.call(Method::DELETE, "/v2/apps/stuck?force=true", None)
        .expect(200, "delete");
    wait_colors(&marked, &[]);
}
