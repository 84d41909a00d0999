//! The Mesos HTTP APIs on a node with no cluster under it: the state is applied in place
//! (`tepui_node::testing`), the master runs its real allocator driver on it, and a framework
//! written here from Mesos' documents speaks the v1 scheduler API (JSON calls, a RecordIO event
//! stream) and the operator endpoints through the real router.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tepui_master::{Master, MasterConfig};
use tepui_mesos::recordio::Decoder;
use tepui_node::testing::local_node;
use tepui_node::Node;
use tepui_state::TaskState;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

struct Mesos {
    node: Node,
    router: Router,
    master: Master,
}

fn mesos() -> Mesos {
    let (node, _local) = local_node(tepui_state::testing::state_with_agents(2, 1024));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    Mesos {
        master: master.clone(),
        router: tepui_mesos_api::local_routes(master.clone())
            .merge(tepui_mesos_api::leader_routes(master))
            .into_parts()
            .0
            .layer(axum::Extension(tepui_auth::Identity::management("tests"))),
        node,
    }
}

/// A subscribed framework: its id, its stream id and its events.
struct Framework {
    id: String,
    stream_id: String,
    events: std::pin::Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>,
    decoder: Decoder,
    pending: std::collections::VecDeque<Value>,
}

impl Framework {
    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(e) = self.pending.pop_front() {
                    if e["type"] != "HEARTBEAT" {
                        return e;
                    }
                    continue;
                }
                let chunk = self.events.next().await.expect("the event stream stays open");
                for record in self.decoder.decode(&chunk).expect("RecordIO") {
                    self.pending
                        .push_back(serde_json::from_slice(&record).expect("a JSON event"));
                }
            }
        })
        .await
        .expect("an event within the deadline")
    }
}

impl Mesos {
    async fn post(&self, uri: &str, body: Value, stream_id: Option<&str>) -> http::Response<Body> {
        let mut req = http::Request::post(uri).header("content-type", "application/json");
        if let Some(id) = stream_id {
            req = req.header("Mesos-Stream-Id", id);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        self.router.clone().oneshot(req).await.unwrap()
    }

    async fn get(&self, uri: &str) -> (u16, Value) {
        let req = http::Request::get(uri).body(Body::empty()).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn subscribe(&self, name: &str) -> Framework {
        let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "root", "name": name, "roles": ["*"],
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}]}}});
        let resp = self.post("/api/v1/scheduler", call, None).await;
        assert_eq!(resp.status(), 200);
        let stream_id = resp.headers()["Mesos-Stream-Id"].to_str().unwrap().to_string();
        let events = resp
            .into_body()
            .into_data_stream()
            .map(|c| c.expect("a chunk of the event stream"));
        let mut f = Framework {
            id: String::new(),
            stream_id,
            events: Box::pin(events),
            decoder: Decoder::new(),
            pending: Default::default(),
        };
        let subscribed = f.next().await;
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        f.id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        f
    }

    async fn call(&self, f: &Framework, call: Value) -> (u16, String) {
        let mut call = call;
        call["framework_id"] = json!({"value": f.id});
        let resp = self.post("/api/v1/scheduler", call, Some(&f.stream_id)).await;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into())
    }
}

#[tokio::test]
async fn a_framework_gets_offers_and_launches_into_them() {
    let m = mesos();
    let mut f = m.subscribe("docs-framework").await;
    let offers = f.next().await;
    assert_eq!(offers["type"], "OFFERS", "{offers}");
    let list = offers["offers"]["offers"].as_array().unwrap();
    assert_eq!(list.len(), 2, "one offer per agent: {offers}");
    let offer = &list[0];
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .unwrap();
    assert_eq!(cpus["scalar"]["value"], 2.0);

    let accept = json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
            "name": "t1", "task_id": {"value": "t1"}, "agent_id": {"value": agent},
            "command": {"shell": true, "value": "sleep 10"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}]}]}}],
        "filters": {"refuse_seconds": 60}}});
    let (status, body) = m.call(&f, accept.clone()).await;
    assert_eq!(status, 202, "{body}");
    let task = m
        .node
        .read(|s| s.tasks.get("t1").cloned())
        .expect("the task is committed");
    assert_eq!(
        (task.state, task.framework_id.as_str()),
        (TaskState::TaskStaging, f.id.as_str())
    );
    assert_eq!(task.def.args, ["/bin/sh", "-c", "sleep 10"]);

    // The same offer again: it is used up, so the launch is dropped, as Mesos does.
    let mut again = accept;
    again["accept"]["operations"][0]["launch"]["task_infos"][0]["task_id"]["value"] = json!("t2");
    let (status, _) = m.call(&f, again).await;
    assert_eq!(status, 202);
    let dropped = f.next().await;
    assert_eq!(dropped["type"], "UPDATE", "{dropped}");
    assert_eq!(dropped["update"]["status"]["task_id"]["value"], "t2");
    assert_eq!(dropped["update"]["status"]["state"], "TASK_DROPPED");

    // The operator endpoints see the framework and its task.
    let (status, state) = m.get("/master/state").await;
    assert_eq!(status, 200);
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == f.id.as_str())
        .expect("the framework is listed");
    assert_eq!(fw["name"], "docs-framework");
    assert_eq!(fw["tasks"][0]["id"], "t1");
    let (status, tasks) = m.get("/master/tasks").await;
    assert_eq!(
        (status, tasks["tasks"][0]["state"].as_str()),
        (200, Some("TASK_STAGING"))
    );
    let resp = m.post("/api/v1", json!({"type": "GET_AGENTS"}), None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["get_agents"]["agents"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn calls_are_refused_as_mesos_refuses_them() {
    let m = mesos();
    let f = m.subscribe("refused").await;
    // No stream id.
    let call = json!({"type": "REVIVE", "framework_id": {"value": f.id}});
    let resp = m.post("/api/v1/scheduler", call.clone(), None).await;
    assert_eq!(resp.status(), 400);
    // Another stream's id.
    let resp = m.post("/api/v1/scheduler", call.clone(), Some("not-the-stream")).await;
    assert_eq!(resp.status(), 400);
    let (status, _) = m.call(&f, call).await;
    assert_eq!(status, 202, "the right stream id");
    // Unknown framework.
    let resp = m
        .post(
            "/api/v1/scheduler",
            json!({"type": "DECLINE", "framework_id": {"value": "nobody"}, "decline": {"offer_ids": []}}),
            Some(&f.stream_id),
        )
        .await;
    assert_eq!(resp.status(), 403);
    // Not JSON; and a content type the API does not take.
    let req = http::Request::post("/api/v1/scheduler")
        .header("content-type", "application/json")
        .body(Body::from("{nope"))
        .unwrap();
    let resp = m.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let req = http::Request::post("/api/v1/scheduler")
        .header("content-type", "application/x-protobuf")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(m.router.clone().oneshot(req).await.unwrap().status(), 415);
}

#[tokio::test]
async fn an_accept_whose_amounts_overflow_is_refused_with_what_to_fix() {
    let m = mesos();
    let mut f = m.subscribe("overflow").await;
    let offers = f.next().await;
    let offer = &offers["offers"]["offers"][0];
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let huge = json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 1e16}});
    let accept = json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
            "name": "t1", "task_id": {"value": "t1"}, "agent_id": {"value": agent},
            "command": {"shell": true, "value": "true"},
            "resources": [huge, huge]}]}}]}});
    let (status, body) = m.call(&f, accept).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("resources[1] (cpus)") && body.contains("add up"),
        "{body}"
    );
    assert!(m.node.read(|s| s.tasks.is_empty()));

    // The same amounts in a RESERVE: refused too, and the master still answers.
    let reserve = json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "RESERVE", "reserve": {"resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1e16}, "role": "*",
             "reservations": [{"type": "DYNAMIC", "role": "eng"}]},
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1e16}, "role": "*",
             "reservations": [{"type": "DYNAMIC", "role": "eng"}]}]}}]}});
    let (status, body) = m.call(&f, reserve).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cpus"), "{body}");
    let (status, _) = m.get("/master/state").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_task_id_the_agents_would_refuse_is_an_error_at_accept() {
    let m = mesos();
    let mut f = m.subscribe("ids").await;
    let offers = f.next().await;
    let offer = &offers["offers"]["offers"][0];
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    // ':' and '@' passed the master's old rule; the agents never ran such a task.
    let accept = json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
            "name": "t", "task_id": {"value": "driver:1@spark"}, "agent_id": {"value": agent},
            "command": {"shell": true, "value": "true"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}]}]}}]}});
    let (status, body) = m.call(&f, accept).await;
    assert_eq!(status, 202, "{body}");
    let update = f.next().await;
    assert_eq!(update["type"], "UPDATE", "{update}");
    let st = &update["update"]["status"];
    assert_eq!(st["task_id"]["value"], "driver:1@spark");
    assert_eq!(st["state"], "TASK_ERROR");
    assert!(st["message"].as_str().unwrap().contains("[A-Za-z0-9_.+-]"), "{update}");
    assert!(m.node.read(|s| s.tasks.is_empty()), "nothing committed");
}

/// Opens the operator API's event stream.
async fn operator_subscribe(m: &Mesos) -> http::Response<Body> {
    m.post("/api/v1", json!({"type": "SUBSCRIBE"}), None).await
}

/// The next non-heartbeat operator event of `body`.
async fn next_event(
    events: &mut (impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    decoder: &mut Decoder,
    pending: &mut std::collections::VecDeque<Value>,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(e) = pending.pop_front() {
                if e["type"] != "HEARTBEAT" {
                    return e;
                }
                continue;
            }
            let chunk = events.next().await.expect("open").expect("a chunk");
            for r in decoder.decode(&chunk).expect("RecordIO") {
                pending.push_back(serde_json::from_slice(&r).unwrap());
            }
        }
    })
    .await
    .expect("an event within the deadline")
}

#[tokio::test]
async fn operator_event_streams_share_one_diff_and_are_bounded_in_number() {
    let m = mesos();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let resp = operator_subscribe(&m).await;
        assert_eq!(resp.status(), 200);
        let mut events = resp.into_body().into_data_stream();
        let (mut decoder, mut pending) = (Decoder::new(), Default::default());
        let first = next_event(&mut events, &mut decoder, &mut pending).await;
        assert_eq!(first["type"], "SUBSCRIBED", "{first}");
        streams.push((events, decoder, pending));
    }
    // A framework subscribes: both streams hear of it.
    let _f = m.subscribe("watched").await;
    for (events, decoder, pending) in &mut streams {
        let e = next_event(events, decoder, pending).await;
        assert_eq!(e["type"], "FRAMEWORK_ADDED", "{e}");
        assert_eq!(e["framework_added"]["framework"]["framework_info"]["name"], "watched");
    }

    let mut more = Vec::new();
    for _ in streams.len()..tepui_mesos_api::MAX_OPERATOR_SUBSCRIBERS {
        let resp = operator_subscribe(&m).await;
        assert_eq!(resp.status(), 200);
        more.push(resp);
    }
    let resp = operator_subscribe(&m).await;
    assert_eq!(resp.status(), 503);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("subscriber limit reached"));
    drop(more.pop());
    assert_eq!(
        operator_subscribe(&m).await.status(),
        200,
        "a closed stream's place is free"
    );
}

#[tokio::test]
async fn tasks_on_a_framework_executor_the_executors_end_and_messages() {
    let m = mesos();
    let mut f = m.subscribe("with-executor").await;
    let offers = f.next().await;
    let offer = &offers["offers"]["offers"][0];
    let agent = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let executor = json!({
        "executor_id": {"value": "ex"}, "command": {"value": "/usr/bin/my-executor"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}]});
    let task = |id: &str| {
        json!({
        "name": id, "task_id": {"value": id}, "agent_id": {"value": agent}, "executor": executor,
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.25}}]})
    };
    let accept = json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task("a"), task("b")]}}]}});
    let (status, body) = m.call(&f, accept).await;
    assert_eq!(status, 202, "{body}");
    let e = m
        .node
        .read(|s| s.executor(agent.parse().unwrap(), &f.id, "ex").cloned())
        .expect("the executor is recorded with its tasks");
    assert_eq!(e.tasks.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(e.resources, "cpus:0.5;mem:64");
    assert_eq!(e.info["framework_id"]["value"], f.id.as_str(), "the master fills it in");
    assert_eq!(e.framework_info["name"], "with-executor");

    let resp = m.post("/api/v1", json!({"type": "GET_EXECUTORS"}), None).await;
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["get_executors"]["executors"][0]["executor_info"]["executor_id"]["value"], "ex",
        "{body}"
    );
    let (_, state) = m.get("/master/state").await;
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == f.id.as_str())
        .unwrap();
    assert_eq!(fw["executors"][0]["executor_id"], "ex", "{fw}");
    assert_eq!(fw["tasks"][0]["executor_id"], "ex", "{fw}");

    // MESSAGE and SHUTDOWN name a running executor; a message has a size limit.
    let message = |executor: &str, data: &[u8]| {
        use base64::Engine;
        json!({"type": "MESSAGE", "message": {"agent_id": {"value": agent}, "executor_id": {"value": executor},
            "data": base64::engine::general_purpose::STANDARD.encode(data)}})
    };
    let (status, body) = m.call(&f, message("ex", b"hello")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = m.call(&f, message("nope", b"hello")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no executor \"nope\""), "{body}");
    let (status, body) = m.call(&f, message("ex", &vec![0u8; 300 * 1024])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 262144"), "{body}");
    let shutdown =
        json!({"type": "SHUTDOWN", "shutdown": {"executor_id": {"value": "ex"}, "agent_id": {"value": agent}}});
    let (status, body) = m.call(&f, shutdown).await;
    assert_eq!(status, 202, "{body}");

    // Its agent reports its end: FAILURE with its status, its resources free.
    m.master
        .on_executor_event(
            agent.parse().unwrap(),
            tepui_proto::agent::ExecutorEvent::Exited {
                framework_id: f.id.clone(),
                executor_id: "ex".into(),
                exit_status: Some(0),
                message: "exited".into(),
            },
        )
        .await;
    let failure = loop {
        let e = f.next().await;
        if e["type"] == "FAILURE" {
            break e;
        }
    };
    assert_eq!(failure["failure"]["executor_id"]["value"], "ex", "{failure}");
    assert_eq!(failure["failure"]["status"], 0, "{failure}");
    assert!(m.node.read(|s| s
        .executor(agent.parse().unwrap(), &f.id, "ex")
        .is_some_and(|e| !e.live())));
    let resp = m.post("/api/v1", json!({"type": "GET_EXECUTORS"}), None).await;
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        body["get_executors"]["executors"].as_array().is_none_or(Vec::is_empty),
        "{body}"
    );
}
