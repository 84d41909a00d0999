//! Metronome's `/v1/jobs` handlers on a node with no cluster under it (the state applied in
//! place), through the real router: a client's view of jobs and schedules, written from
//! Metronome's documented API.

use axum::Router;
use serde_json::{json, Value};
use tepui_node::testing::local_node;

fn api_as(caller: Option<tepui_auth::Identity>) -> Router {
    with_master(caller).0
}

/// The router, and the node under it with its master and the `jobs` driver running (agents
/// are in the state but not connected: tasks are committed and stay staged until a test says
/// otherwise).
fn with_master(caller: Option<tepui_auth::Identity>) -> (Router, tepui_node::Node, tepui_node::testing::Local) {
    let (r, node, local, _) = with_the_master(caller);
    (r, node, local)
}

/// [`with_master`], and the master.
fn with_the_master(
    caller: Option<tepui_auth::Identity>,
) -> (
    Router,
    tepui_node::Node,
    tepui_node::testing::Local,
    tepui_master::Master,
) {
    let (node, local) = local_node(tepui_state::testing::state_with_agents(1, 4096));
    let master = tepui_master::Master::new(
        node.clone(),
        tepui_master::MasterConfig {
            agent_timeout: std::time::Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    tepui_jobs::runs::start(master.clone());
    let router = tepui_jobs::api::routes(master.clone()).into_parts().0;
    let router = match caller {
        Some(me) => router.layer(axum::Extension(me)),
        None => router,
    };
    (router, node, local, master)
}

fn api() -> Router {
    api_as(Some(tepui_auth::Identity::management("tests")))
}

async fn call(r: &Router, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    tepui_node::testing::call_json(r, method, uri, body).await
}

fn job(id: &str) -> Value {
    json!({"id": id, "description": "nightly report", "run": {"cmd": "echo hi", "cpus": 0.1, "mem": 32},
           "schedules": [{"id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}]})
}

#[tokio::test]
async fn jobs_are_created_listed_updated_and_deleted_as_in_metronome() {
    let r = api();
    let (status, created) = call(&r, "POST", "/v1/jobs", Some(job("reports.nightly"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["run"]["maxLaunchDelay"], 3600,
        "defaults are filled in: {created}"
    );
    assert_eq!(created["schedules"][0]["concurrencyPolicy"], "ALLOW");

    let (status, dup) = call(&r, "POST", "/v1/jobs", Some(job("reports.nightly"))).await;
    assert_eq!(
        (status, dup["message"].as_str()),
        (409, Some("Job with this id already exists"))
    );

    let (status, list) = call(&r, "GET", "/v1/jobs", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, one) = call(&r, "GET", "/v1/jobs/reports.nightly", None).await;
    assert_eq!((status, one["description"].as_str()), (200, Some("nightly report")));
    let (status, missing) = call(&r, "GET", "/v1/jobs/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(missing, json!({"id": "nope", "message": "Job not found"}));

    // PUT replaces the run and keeps the schedules; the id is the path's.
    let (status, updated) = call(
        &r,
        "PUT",
        "/v1/jobs/reports.nightly",
        Some(json!({"id": "ignored", "run": {"cmd": "echo bye", "cpus": 0.2, "mem": 64}})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["id"], "reports.nightly");
    assert_eq!(updated["run"]["cmd"], "echo bye");
    assert_eq!(updated["schedules"][0]["id"], "nightly");

    let (status, _) = call(&r, "DELETE", "/v1/jobs/reports.nightly", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&r, "GET", "/v1/jobs/reports.nightly", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_jobs_get_metronomes_422_and_nothing_is_stored() {
    let r = api();
    let (status, e) = call(
        &r,
        "POST",
        "/v1/jobs",
        Some(json!({"id": "Bad", "run": {"mem": 8}, "schedules": [{"id": "s", "cron": "* * *", "timezone": "Mars/Base"}]})),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["message"], "Object is not valid");
    let paths: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for p in [
        "/id",
        "/run/mem",
        "/run",
        "/schedules(0)/cron",
        "/schedules(0)/timezone",
    ] {
        assert!(paths.contains(&p), "{p} in {paths:?}");
    }
    let (_, list) = call(&r, "GET", "/v1/jobs", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn dependencies_must_exist_have_no_cycle_and_hold_their_parents() {
    let r = api();
    let plain = |id: &str, deps: &[&str]| json!({"id": id, "run": {"cmd": "true"}, "dependencies": deps.iter().map(|d| json!({"id": d})).collect::<Vec<_>>()});
    let (status, e) = call(&r, "POST", "/v1/jobs", Some(plain("child", &["parent"]))).await;
    assert_eq!(status, 422);
    assert_eq!(e["message"], "Dependencies contain unknown jobs. unknown=[parent]");
    assert_eq!(call(&r, "POST", "/v1/jobs", Some(plain("parent", &[]))).await.0, 201);
    assert_eq!(
        call(&r, "POST", "/v1/jobs", Some(plain("child", &["parent"]))).await.0,
        201
    );
    let (status, e) = call(&r, "PUT", "/v1/jobs/parent", Some(plain("parent", &["child"]))).await;
    assert_eq!(
        (status, e["message"].as_str()),
        (422, Some("Dependencies have a cycle."))
    );
    let (status, e) = call(&r, "DELETE", "/v1/jobs/parent", None).await;
    assert_eq!(status, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("children=[child]"), "{e}");
}

#[tokio::test]
async fn schedules_of_a_job() {
    let r = api();
    assert_eq!(
        call(&r, "POST", "/v1/jobs", Some(json!({"id": "j", "run": {"cmd": "true"}})))
            .await
            .0,
        201
    );
    let s = json!({"id": "every-minute", "cron": "* * * * *", "concurrencyPolicy": "FORBID"});
    let (status, created) = call(&r, "POST", "/v1/jobs/j/schedules", Some(s.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["startingDeadlineSeconds"], 900);
    assert_eq!(call(&r, "POST", "/v1/jobs/j/schedules", Some(s)).await.0, 409);
    let (status, list) = call(&r, "GET", "/v1/jobs/j/schedules", None).await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 1));
    let (status, updated) = call(
        &r,
        "PUT",
        "/v1/jobs/j/schedules/every-minute",
        Some(json!({"id": "every-minute", "cron": "*/5 * * * *", "enabled": false})),
    )
    .await;
    assert_eq!((status, updated["enabled"].as_bool()), (200, Some(false)));
    let (status, e) = call(&r, "GET", "/v1/jobs/j/schedules/other", None).await;
    assert_eq!(status, 404);
    assert_eq!(e, json!({"id": "other", "message": "Schedule not found"}));
    // Metronome holds one schedule per job.
    let (status, e) = call(
        &r,
        "POST",
        "/v1/jobs/j/schedules",
        Some(json!({"id": "second", "cron": "0 * * * *"})),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(
        call(&r, "DELETE", "/v1/jobs/j/schedules/every-minute", None).await.0,
        200
    );
    assert_eq!(call(&r, "GET", "/v1/jobs/j/schedules", None).await.1, json!([]));
    assert_eq!(call(&r, "GET", "/v1/jobs/nope/schedules", None).await.0, 404);
}

#[tokio::test]
async fn a_job_without_an_image_needs_the_host_capability() {
    let reader = tepui_auth::Identity {
        management: false,
        capabilities: [tepui_state::Capability::Read, tepui_state::Capability::Write].into(),
        ..tepui_auth::Identity::management("deployer")
    };
    let r = api_as(Some(reader));
    let (status, e) = call(&r, "POST", "/v1/jobs", Some(json!({"id": "j", "run": {"cmd": "true"}}))).await;
    assert_eq!(status, 403, "{e}");
    assert!(e["message"].as_str().unwrap().contains("host"), "{e}");
    let (status, _) = call(
        &r,
        "POST",
        "/v1/jobs",
        Some(json!({"id": "boxed", "run": {"cmd": "true", "docker": {"image": "busybox"}}})),
    )
    .await;
    assert_eq!(status, 201);
    // No gate in front: refused, never assumed.
    let (status, _) = call(
        &api_as(None),
        "POST",
        "/v1/jobs",
        Some(json!({"id": "k", "run": {"cmd": "true"}})),
    )
    .await;
    assert_eq!(status, 403);
}

/// Waits (on the state, with a deadline) until `check` holds.
async fn until(node: &tepui_node::Node, what: &str, check: impl Fn(&tepui_state::State) -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut applied = node.watch_applied();
    while !node.read(&check) {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        let _ = tokio::time::timeout_at(deadline, applied.changed()).await;
    }
}

#[tokio::test]
async fn a_run_started_by_hand_launches_its_task_and_ends_with_it() {
    let (r, node, local) = with_master(Some(tepui_auth::Identity::management("tests")));
    assert_eq!(
        call(
            &r,
            "POST",
            "/v1/jobs",
            Some(json!({"id": "j", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}))
        )
        .await
        .0,
        201
    );
    let (status, run) = call(&r, "POST", "/v1/jobs/j/runs", Some(json!({}))).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "INITIAL");
    assert_eq!(run["jobId"], "j");
    let run_id = run["id"].as_str().unwrap().to_string();
    let task = format!("j.{run_id}.1");

    // The driver records the attempt and commits the task.
    until(&node, "the run's task", |s| s.tasks.contains_key(&task)).await;
    let (_, runs) = call(&r, "GET", "/v1/jobs/j/runs", None).await;
    assert_eq!(runs[0]["status"], "STARTING", "{runs}");
    assert_eq!(runs[0]["tasks"][0]["id"], task.as_str());

    // The agent says it runs, then that it finished.
    let update = |state: tepui_state::TaskState, seq: u64| tepui_state::Command::TaskStatus {
        task_id: task.clone(),
        update: tepui_state::TaskUpdate {
            uuid: format!("u{seq}"),
            state,
            reason: None,
            message: String::new(),
            exit_code: None,
            signal: None,
            at: seq,
            healthy: None,
            seq: Some(seq),
            container_ip: None,
        },
    };
    local.apply(&update(tepui_state::TaskState::TaskRunning, 1));
    until(&node, "the run to be active", |s| {
        s.job_runs
            .get(&run_id)
            .is_some_and(|r| r.status == tepui_state::JobRunStatus::Active)
    })
    .await;
    local.apply(&update(tepui_state::TaskState::TaskFinished, 2));
    until(&node, "the run to end", |s| s.job_runs.is_empty()).await;

    let (status, job) = call(&r, "GET", "/v1/jobs/j?embed=history&embed=activeRuns", None).await;
    assert_eq!(status, 200);
    assert_eq!(job["activeRuns"], json!([]));
    assert_eq!(job["history"]["successCount"], 1, "{job}");
    assert_eq!(job["history"]["successfulFinishedRuns"][0]["id"], run_id.as_str());
    let (status, finished) = call(&r, "GET", &format!("/v1/jobs/j/runs/{run_id}"), None).await;
    assert_eq!(
        (status, finished["status"].as_str()),
        (200, Some("SUCCESS")),
        "{finished}"
    );
    assert_eq!(call(&r, "GET", "/v1/jobs/j/runs/nope", None).await.0, 404);
    assert_eq!(call(&r, "POST", "/v1/jobs/nope/runs", Some(json!({}))).await.0, 404);
}

#[tokio::test]
async fn a_stopped_run_kills_its_task_and_fails() {
    let (r, node, _local) = with_master(Some(tepui_auth::Identity::management("tests")));
    assert_eq!(
        call(
            &r,
            "POST",
            "/v1/jobs",
            Some(json!({"id": "j", "run": {"cmd": "sleep 100", "cpus": 0.1, "mem": 32}}))
        )
        .await
        .0,
        201
    );
    let (_, run) = call(&r, "POST", "/v1/jobs/j/runs", Some(json!({}))).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let task = format!("j.{run_id}.1");
    until(&node, "the run's task", |s| s.tasks.contains_key(&task)).await;
    let (status, stopped) = call(
        &r,
        "POST",
        &format!("/v1/jobs/j/runs/{run_id}/actions/stop"),
        Some(json!({})),
    )
    .await;
    // Metronome answers with the stopped run.
    assert_eq!(status, 200);
    assert_eq!(
        (
            stopped["id"].as_str(),
            stopped["jobId"].as_str(),
            stopped["status"].as_str()
        ),
        (Some(run_id.as_str()), Some("j"), Some("FAILED")),
        "{stopped}"
    );
    assert_eq!(stopped["tasks"][0]["id"], task.as_str(), "{stopped}");
    assert!(stopped["completedAt"].is_string(), "{stopped}");
    assert!(node.read(|s| s.tasks[&task].kill_requested), "the task is being killed");
    let (_, job) = call(&r, "GET", "/v1/jobs/j?embed=history", None).await;
    assert_eq!(job["history"]["failureCount"], 1, "{job}");
    let (status, e) = call(
        &r,
        "POST",
        &format!("/v1/jobs/j/runs/{run_id}/actions/stop"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404, "no active run to stop any more: {e}");
}

#[tokio::test]
async fn runs_are_tasks_of_the_jobs_framework_which_acknowledges_their_updates() {
    let (r, node, _local, master) = with_the_master(Some(tepui_auth::Identity::management("tests")));
    let spec = json!({"id": "j", "run": {"cmd": "true", "cpus": 0.5, "mem": 32}});
    assert_eq!(call(&r, "POST", "/v1/jobs", Some(spec)).await.0, 201);
    let (_, run) = call(&r, "POST", "/v1/jobs/j/runs", Some(json!({}))).await;
    let task = format!("j.{}.1", run["id"].as_str().unwrap());
    until(&node, "the run's task", |s| s.tasks.contains_key(&task)).await;
    // Recorded as a framework of its own, and its task as that framework's, in role `*`.
    let (framework, owner, role) = node.read(|s| {
        let t = &s.tasks[&task];
        (
            s.frameworks.get(tepui_jobs::runs::FRAMEWORK_ID).cloned(),
            t.framework_id.clone(),
            t.role.clone(),
        )
    });
    let framework = framework.expect("the jobs framework is in the state");
    assert_eq!(
        (framework.name.as_str(), framework.roles.clone()),
        ("tepui-jobs", vec!["*".to_string()])
    );
    assert_eq!((owner.as_str(), role.as_str()), ("tepui-jobs", "*"));
    // The allocator holds its resources under it: they count in the role's share.
    let view = master.view().expect("the leader's allocator");
    let used = view.frameworks["tepui-jobs"].used.to_string();
    assert!(used.contains("cpus:0.5"), "{used}");
    assert!(view.roles["*"].frameworks.contains(&"tepui-jobs".to_string()));
    assert!(view.roles["*"].share > 0.0);
    // Its id is reserved: nobody else subscribes with it or tears it down.
    assert!(master.teardown("tepui-jobs").await.is_err());

    // An update from the agent reaches the framework, which acknowledges it (so that the
    // task can be forgotten once it ended).
    master
        .on_status(
            1,
            tepui_proto::agent::StatusUpdate {
                task_id: task.clone(),
                uuid: "u-running".into(),
                state: "TASK_RUNNING".into(),
                reason: None,
                message: String::new(),
                exit_code: None,
                signal: None,
                timestamp_ms: 1,
                healthy: None,
                seq: Some(1),
                container_ip: None,
            },
        )
        .await;
    until(&node, "the update acknowledged by the jobs framework", |s| {
        s.tasks[&task].acknowledged_uuid.as_deref() == Some("u-running")
    })
    .await;
}

#[tokio::test]
async fn a_chronos_run_now_passes_its_arguments_to_the_task() {
    let (r, node, _local) = with_master(Some(tepui_auth::Identity::management("tests")));
    let shell = json!({"id": "shell", "run": {"cmd": "printf '[%s]'", "cpus": 0.1, "mem": 32}});
    let direct = json!({"id": "direct", "run": {"args": ["printf", "[%s]"], "docker": {"image": "busybox"},
        "cpus": 0.1, "mem": 32}});
    for job in [shell, direct] {
        assert_eq!(call(&r, "POST", "/v1/jobs", Some(job)).await.0, 201);
    }
    for name in ["shell", "direct"] {
        // `a 'b c'`: two arguments, the second with a blank.
        let (status, body) = call(
            &r,
            "PUT",
            &format!("/v1/scheduler/job/{name}?arguments=a%20%27b%20c%27"),
            None,
        )
        .await;
        assert_eq!((status, body), (204, Value::Null));
    }
    until(&node, "both runs' tasks", |s| {
        s.job_runs
            .values()
            .filter(|r| r.tasks.iter().any(|t| s.tasks.contains_key(t)))
            .count()
            == 2
    })
    .await;
    let args = |job: &str| -> Vec<String> {
        node.read(|s| {
            let run = s.job_runs.values().find(|r| r.job_id == job).expect("its run");
            assert_eq!(run.arguments, vec!["a".to_string(), "b c".to_string()]);
            s.tasks[&run.tasks[0]].def.args.clone()
        })
    };
    assert_eq!(args("shell"), vec!["/bin/sh", "-c", "printf '[%s]' a 'b c'"]);
    assert_eq!(args("direct"), vec!["printf", "[%s]", "a", "b c"]);
}

#[tokio::test]
async fn chronos_stats_list_every_job_and_nothing_for_an_unknown_field() {
    let r = api();
    assert_eq!(call(&r, "POST", "/v1/jobs", Some(job("never.ran"))).await.0, 201);
    let (status, stats) = call(&r, "GET", "/v1/scheduler/stats/99thPercentile", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats, json!([{"jobNameLabel": "never.ran", "time": 0.0}]));
    let (status, count) = call(&r, "GET", "/scheduler/stats/count", None).await;
    assert_eq!((status, count[0]["jobNameLabel"].as_str()), (200, Some("never.ran")));
    // Chronos looks the name up in each job's histogram: not there, nothing listed.
    let (status, none) = call(&r, "GET", "/v1/scheduler/stats/42ndPercentile", None).await;
    assert_eq!((status, none), (200, json!([])));
}

#[tokio::test]
async fn a_schedule_starts_its_due_run_by_itself() {
    let (r, node, local) = with_master(Some(tepui_auth::Identity::management("tests")));
    // Defined two and a half minutes ago, every minute: a due run within its deadline.
    let defined = tepui_node::now_ms() - 150_000;
    local.apply(&tepui_state::Command::PutJob {
        id: "tick".into(),
        spec: json!({"id": "tick", "run": {"cmd": "true", "cpus": 0.1, "mem": 32},
                     "schedules": [{"id": "every-minute", "cron": "* * * * *", "startingDeadlineSeconds": 900}]}),
        create: true,
        now: defined,
    });
    until(&node, "the scheduled run's task", |s| {
        s.job_runs
            .values()
            .any(|run| run.due_at.is_some() && run.tasks.iter().any(|t| s.tasks.contains_key(t)))
    })
    .await;
    let (handled, due) = node.read(|s| {
        let due: Vec<u64> = s.job_runs.values().filter_map(|r| r.due_at).collect();
        (s.job_schedules_handled.get("tick/every-minute").copied(), due)
    });
    assert!(handled.is_some_and(|h| h > defined), "the schedule is accounted for");
    // Two (or, if the clock passed a minute meanwhile, three) due minutes, all within their
    // deadline: each gets its run, and never two for one due time.
    let distinct: std::collections::BTreeSet<u64> = due.iter().copied().collect();
    assert!(
        !due.is_empty() && due.len() <= 3 && distinct.len() == due.len(),
        "{due:?}"
    );
    let (_, active) = call(&r, "GET", "/v1/jobs/tick/runs", None).await;
    let listed = active.as_array().unwrap().len();
    assert!(listed <= 3, "{active}");
}
