//! The sandbox files routes (`/v1/tasks/{id}/files/browse|read`, Mesos' `/files` shapes) on a
//! node with no cluster under it: the test stands for the task's agent, sees the request the
//! leader relays and answers it.

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tepui_master::{Master, MasterConfig};
use tepui_node::testing::local_node;
use tepui_node::Node;
use tepui_proto::agent::{Reply, Request, ServerToAgent};
use tepui_proto::Envelope;
use tokio::sync::mpsc;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

struct Agent(mpsc::Receiver<Result<Envelope, tonic::Status>>);

impl Agent {
    async fn next(&mut self) -> ServerToAgent {
        let envelope = tokio::time::timeout(WAIT, self.0.recv())
            .await
            .expect("a message within the deadline")
            .expect("the stream is open")
            .expect("not an error");
        serde_json::from_slice(&envelope.json).unwrap()
    }

    /// The next request the leader relays, and its id.
    async fn request(&mut self) -> (u64, Request) {
        loop {
            if let ServerToAgent::Request { req_id, request } = self.next().await {
                return (req_id, request);
            }
        }
    }
}

async fn call(router: &Router, uri: &str) -> (u16, Value) {
    let req = http::Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A node with agent a1 attached, a task on it, and the routes.
async fn fixture() -> (Node, Router, Agent, String) {
    let (node, _local) = local_node(tepui_state::testing::state_with_agents(1, 1024));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    let router = tepui_master::http::routes(master.clone())
        .into_parts()
        .0
        .layer(axum::Extension(tepui_auth::Identity::management("tests")));
    let (tx, rx) = mpsc::channel(64);
    node.agents().attach(1, tx);
    let mut agent = Agent(rx);
    let run = json!({"name": "web", "cmd": ["sleep", "9"], "cpus": 0.1, "mem": 32, "agent": "a1"});
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/tasks")
        .header("content-type", "application/json")
        .body(Body::from(run.to_string()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let task: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(matches!(agent.next().await, ServerToAgent::Launch { .. }));
    (node, router, agent, task["id"].as_str().unwrap().to_string())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn browse_relays_to_the_tasks_agent_in_mesos_shape() {
    let (node, router, mut agent, id) = fixture().await;
    let entries = json!([
        {"path": "logs/app.log", "nlink": 1, "size": 12, "mtime": 1700000000, "mode": "-rw-r--r--",
         "uid": "nobody", "gid": "nogroup"},
        {"path": "logs/old", "nlink": 2, "size": 4096, "mtime": 1700000001, "mode": "drwxr-xr-x",
         "uid": "root", "gid": "root"}
    ]);
    let answering = async {
        let (req_id, request) = agent.request().await;
        assert_eq!(
            request,
            Request::BrowseFiles {
                task_id: id.clone(),
                path: "logs".into()
            },
            "the path is made plain before it is sent"
        );
        node.agents().deliver(
            1,
            req_id,
            Reply::Done {
                result: entries.clone(),
            },
        );
    };
    let uri = format!("/v1/tasks/{id}/files/browse?path=/logs/");
    let ((status, body), ()) = tokio::join!(call(&router, &uri), answering);
    assert_eq!((status, &body), (200, &entries));

    // The root when no path is given; the agent's refusals keep their status.
    for (code, status) in [("not_found", 404), ("bad_request", 400)] {
        let answering = async {
            let (req_id, request) = agent.request().await;
            assert!(
                matches!(&request, Request::BrowseFiles { path, .. } if path.is_empty()),
                "{request:?}"
            );
            node.agents().deliver(
                1,
                req_id,
                Reply::Error {
                    message: "no".into(),
                    code: code.into(),
                },
            );
        };
        let uri = format!("/v1/tasks/{id}/files/browse");
        let ((got, body), ()) = tokio::join!(call(&router, &uri), answering);
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }

    // Refused here, never sent: a path with .., a task nobody knows.
    let (status, body) = call(&router, &format!("/v1/tasks/{id}/files/browse?path=a/../../x")).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("path")), "{body}");
    let (status, body) = call(&router, "/v1/tasks/nope/files/browse").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_task")), "{body}");
}

#[tokio::test]
async fn read_relays_pieces_and_sizes_in_mesos_shape() {
    let (node, router, mut agent, id) = fixture().await;

    // A piece: the agent's data parts, put together, at the offset asked.
    let answering = async {
        let (req_id, request) = agent.request().await;
        assert_eq!(
            request,
            Request::ReadFile {
                task_id: id.clone(),
                path: "stdout".into(),
                offset: 6,
                length: 5,
            }
        );
        node.agents().deliver(1, req_id, Reply::Data { b64: b64(b"wor") });
        node.agents().deliver(1, req_id, Reply::Data { b64: b64(b"ld") });
        node.agents().deliver(
            1,
            req_id,
            Reply::Done {
                result: json!({"size": 12}),
            },
        );
    };
    let uri = format!("/v1/tasks/{id}/files/read?path=stdout&offset=6&length=5");
    let ((status, body), ()) = tokio::join!(call(&router, &uri), answering);
    assert_eq!((status, body), (200, json!({"data": "world", "offset": 6})));

    // offset=-1: the size, no data.
    let answering = async {
        let (req_id, request) = agent.request().await;
        assert!(matches!(request, Request::ReadFile { length: 0, .. }), "{request:?}");
        node.agents().deliver(
            1,
            req_id,
            Reply::Done {
                result: json!({"size": 12}),
            },
        );
    };
    let uri = format!("/v1/tasks/{id}/files/read?path=stdout&offset=-1");
    let ((status, body), ()) = tokio::join!(call(&router, &uri), answering);
    assert_eq!((status, body), (200, json!({"data": "", "offset": 12})));

    // No length: at most 1 MiB; a longer one is cut to it.
    let answering = async {
        let (req_id, request) = agent.request().await;
        assert!(
            matches!(request, Request::ReadFile { offset: 0, length, .. } if length == tepui_api::MAX_FILE_READ),
            "{request:?}"
        );
        node.agents().deliver(
            1,
            req_id,
            Reply::Done {
                result: json!({"size": 0}),
            },
        );
    };
    let uri = format!("/v1/tasks/{id}/files/read?path=stdout&length=99999999999");
    let ((status, body), ()) = tokio::join!(call(&router, &uri), answering);
    assert_eq!((status, body), (200, json!({"data": "", "offset": 0})));

    // A directory is the agent's 400; a missing file its 404.
    let answering = async {
        let (req_id, _) = agent.request().await;
        node.agents().deliver(
            1,
            req_id,
            Reply::Error {
                message: "\"logs\" is a directory: browse it".into(),
                code: "bad_request".into(),
            },
        );
    };
    let uri = format!("/v1/tasks/{id}/files/read?path=logs");
    let ((status, _), ()) = tokio::join!(call(&router, &uri), answering);
    assert_eq!(status, 400);

    for (query, field) in [
        ("offset=0", "path"),
        ("path=../secret", "path"),
        ("path=x&offset=-7", "offset"),
        ("path=x&length=lots", "length"),
    ] {
        let (status, body) = call(&router, &format!("/v1/tasks/{id}/files/read?{query}")).await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
}
