//! The task lifecycle and tepui's `/v1` task API on a node with no cluster under it: the
//! state is applied in place (`tepui_node::testing`), the master runs its real drivers on it,
//! and agents are streams the test attaches to the node's hub, so the test sees exactly what
//! each agent is sent and answers for it.

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tepui_master::{Master, MasterConfig};
use tepui_node::testing::local_node;
use tepui_node::Node;
use tepui_proto::agent::{ServerToAgent, StatusUpdate, TaskReport};
use tepui_proto::Envelope;
use tepui_state::{Maintenance, TaskState};
use tokio::sync::mpsc;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    node: Node,
    master: Master,
    router: Router,
}

fn fixture() -> Fixture {
    fixture_with_local().0
}

/// The fixture and the test's hand on the node's state and leadership.
fn fixture_with_local() -> (Fixture, tepui_node::testing::Local) {
    let (node, local) = local_node(tepui_state::testing::state_with_agents(2, 1024));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    let f = Fixture {
        router: tepui_master::http::routes(master.clone())
            .into_parts()
            .0
            .layer(axum::Extension(tepui_auth::Identity::management("tests"))),
        node,
        master,
    };
    (f, local)
}

/// An agent's end of its stream: what the leader sends it.
struct Agent(mpsc::Receiver<Result<Envelope, tonic::Status>>);

impl Agent {
    fn attach(node: &Node, id: u64) -> Agent {
        let (tx, rx) = mpsc::channel(64);
        node.agents().attach(id, tx);
        Agent(rx)
    }

    async fn next(&mut self) -> ServerToAgent {
        let envelope = tokio::time::timeout(WAIT, self.0.recv())
            .await
            .expect("a message within the deadline")
            .expect("the stream is open")
            .expect("not an error");
        serde_json::from_slice(&envelope.json).unwrap()
    }
}

impl Fixture {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn task_state(&self, id: &str) -> Option<TaskState> {
        self.node.read(|s| s.tasks.get(id).map(|t| t.state))
    }

    async fn wait(&self, what: &str, check: impl Fn(&Fixture) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut applied = self.node.watch_applied();
        while !check(self) {
            assert!(tokio::time::Instant::now() < deadline, "{what} within {WAIT:?}");
            let _ = tokio::time::timeout(Duration::from_millis(200), applied.changed()).await;
        }
    }
}

fn update(task: &str, state: &str, uuid: &str) -> StatusUpdate {
    StatusUpdate {
        task_id: task.into(),
        uuid: uuid.into(),
        state: state.into(),
        reason: None,
        message: String::new(),
        exit_code: None,
        signal: None,
        timestamp_ms: 1,
        healthy: None,
        seq: None,
        container_ip: None,
    }
}

#[tokio::test]
async fn a_task_is_placed_launched_updated_and_killed() {
    let f = fixture();
    let mut a1 = Agent::attach(&f.node, 1);
    let run = json!({"name": "web", "cmd": ["sleep", "9"], "cpus": 0.5, "mem": 64, "agent": "a1",
                     "ports": [{"name": "http", "host_port": 0}]});
    let (status, task) = f.call("POST", "/v1/tasks", Some(run)).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(
        (task["agent_name"].as_str(), task["state"].as_str()),
        (Some("a1"), Some("TASK_STAGING"))
    );
    let port = task["ports"][0]["host_port"].as_u64().unwrap();
    assert!((31000..=31009).contains(&port), "a port of the agent's range: {port}");

    let ServerToAgent::Launch { task: launch } = a1.next().await else {
        panic!("the agent is sent the launch first")
    };
    assert_eq!(launch.task_id, id);
    assert_eq!(
        (launch.args.clone(), launch.cpus_milli, launch.mem_mb),
        (vec!["sleep".to_string(), "9".into()], 500, 64)
    );

    // The agent's update is committed, then acknowledged.
    f.master.on_status(1, update(&id, "TASK_RUNNING", "u1")).await;
    assert_eq!(f.task_state(&id), Some(TaskState::TaskRunning));
    assert!(matches!(a1.next().await, ServerToAgent::Ack { uuid, .. } if uuid == "u1"));
    // An update for a task the cluster does not know is acknowledged and forgotten.
    f.master.on_status(1, update("ghost", "TASK_RUNNING", "u2")).await;
    assert!(matches!(a1.next().await, ServerToAgent::Ack { .. }));
    assert!(matches!(a1.next().await, ServerToAgent::Forget { task_id } if task_id == "ghost"));

    let (status, killed) = f.call("DELETE", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(status, 200, "{killed}");
    assert!(matches!(a1.next().await, ServerToAgent::Kill { task_id, .. } if task_id == id));
    assert!(f.node.read(|s| s.tasks[&id].kill_requested));
    let (status, body) = f.call("DELETE", "/v1/tasks/nope", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_task")));
}

#[tokio::test]
async fn a_new_leader_marks_unreachable_the_tasks_of_an_agent_lost_under_the_old_one() {
    let (f, local) = fixture_with_local();
    let mut a1 = Agent::attach(&f.node, 1);
    let run = json!({"name": "web", "cmd": ["sleep", "9"], "cpus": 0.5, "mem": 64, "agent": "a1"});
    let (status, task) = f.call("POST", "/v1/tasks", Some(run)).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    assert!(matches!(a1.next().await, ServerToAgent::Launch { .. }));
    f.master.on_status(1, update(&id, "TASK_RUNNING", "u1")).await;
    assert_eq!(f.task_state(&id), Some(TaskState::TaskRunning));

    // The old leader marked the agent lost, and went before it marked the agent's tasks.
    local.set_leader(None, 2);
    local.apply(&tepui_state::Command::SetNodeStatus {
        id: 1,
        status: tepui_state::NodeStatus::Lost,
        now: tepui_node::now_ms(),
    });
    local.set_leader(Some(1), 3);
    f.wait("the lost agent's task to be unreachable", |f| {
        f.task_state(&id) == Some(TaskState::TaskUnreachable)
    })
    .await;
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let f = fixture();
    let (status, body) = f
        .call("POST", "/v1/tasks", Some(json!({"cmd": ["x"], "cpus": 0})))
        .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("cpus")), "{body}");
    let (status, body) = f
        .call(
            "POST",
            "/v1/tasks",
            Some(json!({"cmd": ["x"], "ports": [{"protocol": "sctp"}]})),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("ports[0].protocol")),
        "{body}"
    );
    let (status, body) = f
        .call("POST", "/v1/tasks", Some(json!({"cmd": ["x"], "mem": "lots"})))
        .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("mem")), "{body}");
    let (status, body) = f
        .call("POST", "/v1/tasks", Some(json!({"cmd": ["x"], "agent": "a9"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_node")), "{body}");
    let (status, body) = f
        .call("POST", "/v1/tasks", Some(json!({"cmd": ["x"], "mem": 100000})))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("no_room")), "{body}");
}

#[tokio::test]
async fn an_agent_that_registers_again_settles_the_truth() {
    let f = fixture();
    let mut a2 = Agent::attach(&f.node, 2);
    let mut ids = vec![];
    for name in ["kept", "lost", "missed"] {
        let run = json!({"name": name, "cmd": ["sleep", "9"], "cpus": 0.1, "mem": 32, "agent": "a2"});
        let (status, task) = f.call("POST", "/v1/tasks", Some(run)).await;
        assert_eq!(status, 201);
        ids.push(task["id"].as_str().unwrap().to_string());
        assert!(matches!(a2.next().await, ServerToAgent::Launch { .. }));
    }
    for (id, uuid) in ids[..2].iter().zip(["r1", "r2"]) {
        f.master.on_status(2, update(id, "TASK_RUNNING", uuid)).await;
        assert!(matches!(a2.next().await, ServerToAgent::Ack { .. }));
    }
    // It reports the first task and one nobody wants; the second is gone, the third (still
    // staging) never arrived.
    let reported = vec![
        TaskReport {
            task_id: ids[0].clone(),
            state: "TASK_RUNNING".into(),
        },
        TaskReport {
            task_id: "stray".into(),
            state: "TASK_RUNNING".into(),
        },
    ];
    f.master.on_register(2, reported).await;
    assert_eq!(f.task_state(&ids[0]), Some(TaskState::TaskRunning));
    assert_eq!(f.task_state(&ids[1]), Some(TaskState::TaskLost));
    let mut sent = vec![a2.next().await, a2.next().await];
    sent.sort_by_key(|m| matches!(m, ServerToAgent::Forget { .. }));
    assert!(
        matches!(&sent[0], ServerToAgent::Launch { task } if task.task_id == ids[2]),
        "{sent:?}"
    );
    assert!(
        matches!(&sent[1], ServerToAgent::Forget { task_id } if task_id == "stray"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_drained_agent_ends_drained_once_its_tasks_end() {
    let f = fixture();
    let mut a1 = Agent::attach(&f.node, 1);
    let run = json!({"name": "job", "cmd": ["sleep", "9"], "cpus": 0.1, "mem": 32, "agent": "a1",
                     "kill_grace_period_secs": 30});
    let (_, task) = f.call("POST", "/v1/tasks", Some(run)).await;
    let id = task["id"].as_str().unwrap().to_string();
    assert!(matches!(a1.next().await, ServerToAgent::Launch { .. }));

    let (status, body) = f.call("POST", "/v1/nodes/a1/drain?deadline_secs=2", None).await;
    assert_eq!(
        (status, body["maintenance"].as_str()),
        (200, Some("draining")),
        "{body}"
    );
    assert!(
        matches!(a1.next().await, ServerToAgent::Kill { task_id, grace_ms } if task_id == id && grace_ms == Some(2000)),
        "the deadline caps the task's own grace period"
    );
    // New tasks do not go to a draining agent.
    let (status, _) = f
        .call(
            "POST",
            "/v1/tasks",
            Some(json!({"cmd": ["x"], "agent": "a1", "mem": 32})),
        )
        .await;
    assert_eq!(status, 409);

    f.master.on_status(1, update(&id, "TASK_KILLED", "k1")).await;
    f.wait("the agent to be drained", |f| {
        f.node.read(|s| s.nodes[&1].maintenance == Maintenance::Drained)
    })
    .await;
    let (status, body) = f.call("POST", "/v1/nodes/a1/reactivate", None).await;
    assert_eq!((status, body["maintenance"].as_str()), (200, Some("active")));
    let (status, body) = f.call("POST", "/v1/nodes/a7/drain", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_node")));
}

#[tokio::test]
async fn ended_tasks_past_the_retention_are_forgotten() {
    let (node, _local) = local_node(tepui_state::testing::state_with_agents(2, 1024));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: tepui_master::retention::Retention {
                max_per_group: 2,
                max_age: Duration::from_secs(3600),
            },
        },
    );
    master.start();
    let f = Fixture {
        router: tepui_master::http::routes(master.clone())
            .into_parts()
            .0
            .layer(axum::Extension(tepui_auth::Identity::management("tests"))),
        node,
        master,
    };
    let mut a1 = Agent::attach(&f.node, 1);
    let mut ids = vec![];
    for i in 0..4 {
        let run = json!({"name": format!("t{i}"), "cmd": ["true"], "cpus": 0.1, "mem": 16, "agent": "a1"});
        let (status, task) = f.call("POST", "/v1/tasks", Some(run)).await;
        assert_eq!(status, 201, "{task}");
        ids.push(task["id"].as_str().unwrap().to_string());
        assert!(matches!(a1.next().await, ServerToAgent::Launch { .. }));
    }
    // Three end, one after the other; the fourth keeps running.
    let now = tepui_common::now_ms();
    for (i, id) in ids[..3].iter().enumerate() {
        let mut u = update(id, "TASK_FINISHED", &format!("end{i}"));
        u.timestamp_ms = now + i as u64;
        f.master.on_status(1, u).await;
        assert!(matches!(a1.next().await, ServerToAgent::Ack { .. }));
    }
    f.wait("the oldest ended task to be forgotten", |f| {
        f.task_state(&ids[0]).is_none()
    })
    .await;
    let kept: Vec<Option<TaskState>> = ids.iter().map(|id| f.task_state(id)).collect();
    assert_eq!(
        kept,
        [
            None,
            Some(TaskState::TaskFinished),
            Some(TaskState::TaskFinished),
            Some(TaskState::TaskStaging)
        ]
    );
    let (status, _) = f.call("GET", &format!("/v1/tasks/{}", ids[0]), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn many_direct_launches_are_placed_against_one_tally_and_committed_together() {
    let f = fixture();
    let sized = |id: &str, mem_mb: u64, agents: Option<Vec<u64>>| tepui_master::DirectLaunch {
        id: id.into(),
        name: "batch".into(),
        def: tepui_state::TaskDef {
            args: vec!["true".into()],
            cpus_milli: 100,
            mem_mb,
            ..Default::default()
        },
        agents,
        role: String::new(),
    };
    let launch = |id: &str, agents: Option<Vec<u64>>| sized(id, 512, agents);
    // Two agents of 1024 MB: four of these fit, two on each; the fifth does not.
    let answers = f
        .master
        .launch_direct_many(
            "",
            vec![
                launch("t1", None),
                launch("t2", None),
                launch("t3", Some(vec![2])),
                launch("t4", None),
                launch("t5", None),
            ],
        )
        .await;
    let codes: Vec<&str> = answers
        .iter()
        .map(|a| match a {
            Ok(()) => "ok",
            Err(e) => e.code.as_str(),
        })
        .collect();
    assert_eq!(codes, ["ok", "ok", "ok", "ok", "no_room"], "{answers:?}");
    let agents: Vec<u64> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|t| f.node.read(|s| s.tasks[*t].agent_id))
        .collect();
    assert_eq!(agents.iter().filter(|a| **a == 1).count(), 2, "{agents:?}");
    assert_eq!(agents[2], 2, "t3 may only go to agent 2");
    // The same id again (small enough to be placed) is refused, as for one launch.
    let again = f.master.launch_direct_many("", vec![sized("t1", 0, None)]).await;
    assert!(matches!(&again[..], [Err(e)] if e.code == "task_exists"), "{again:?}");
    // A framework places its own only once it is subscribed; nothing is committed before.
    let unknown = f.master.launch_direct_many("nobody", vec![sized("t6", 0, None)]).await;
    assert!(
        matches!(&unknown[..], [Err(e)] if e.code == "not_subscribed"),
        "{unknown:?}"
    );
    assert!(f.node.read(|s| !s.tasks.contains_key("t6")));
}
