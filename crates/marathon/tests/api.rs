//! Marathon's `/v2` handlers on a node with no cluster under it: the state is applied in place
//! (`tepui_node::testing`), the master and the services scheduler run their real drivers on
//! it, and requests go through the real router. Agents are in the state but not connected, so
//! instances are committed as tasks and stay staged: deployments stay in progress.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tepui_marathon::{Services, ServicesConfig};
use tepui_master::{Master, MasterConfig};
use tepui_node::testing::local_node;
use tepui_node::Node;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

struct Api {
    node: Node,
    router: Router,
}

fn api() -> Api {
    api_as(Some(tepui_auth::Identity::management("tests")))
}

/// The API with `caller` where the gate would put it (none: as if no gate stood in front).
fn api_as(caller: Option<tepui_auth::Identity>) -> Api {
    let (node, _local) = local_node(tepui_state::testing::state_with_agents(2, 4096));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    let services = Services::new(
        master,
        ServicesConfig {
            deployment_timeout: Duration::from_secs(600),
        },
    );
    services.start();
    Api {
        router: match caller {
            Some(me) => services.routes().into_parts().0.layer(axum::Extension(me)),
            None => services.routes().into_parts().0,
        },
        node,
    }
}

impl Api {
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
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    /// Opens `/v2/events` and returns its body as a stream of chunks.
    async fn events(&self) -> impl futures::Stream<Item = Bytes> {
        let req = http::Request::get("/v2/events").body(Body::empty()).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body()
            .into_data_stream()
            .map(|c| c.expect("event stream chunk"))
    }

    /// Waits until `/v2/apps/{id}` has `n` tasks staged (the agents are not connected).
    async fn wait_tasks(&self, id: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let count = self.node.read(|s| {
                s.tasks
                    .values()
                    .filter(|t| t.labels.get("tepui.app").map(String::as_str) == Some(id))
                    .filter(|t| !t.state.is_terminal())
                    .count()
            });
            if count == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} has {count} tasks, not {n}"
            );
            let mut applied = self.node.watch_applied();
            let _ = tokio::time::timeout(Duration::from_millis(200), applied.changed()).await;
        }
    }
}

/// Reads SSE chunks until an event of `kind` arrives; returns its data.
async fn next_event(events: &mut (impl futures::Stream<Item = Bytes> + Unpin), kind: &str) -> Value {
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let chunk = events.next().await.expect("the event stream stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let event = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(event), Some(data)) = (event, data) {
                    if event == kind {
                        return serde_json::from_str(data).unwrap();
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event within {WAIT:?}"))
}

fn web(instances: u32) -> Value {
    json!({"id": "/web", "cmd": "sleep 100", "instances": instances, "cpus": 0.1, "mem": 32})
}

#[tokio::test]
async fn a_new_app_is_deployed_and_its_instances_placed() {
    let api = api();
    let (status, body) = api.call("POST", "/v2/apps", Some(web(2))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "/web");
    assert_eq!(body["instances"], 2);
    let deployment = body["deployments"][0]["id"].as_str().expect("a deployment").to_string();

    api.wait_tasks("/web", 2).await;
    let (status, list) = api.call("GET", "/v2/deployments", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list[0]["id"],
        deployment.as_str(),
        "staged instances keep it in progress"
    );
    let (status, app) = api.call("GET", "/v2/apps/web", None).await;
    assert_eq!(status, 200);
    assert_eq!(app["app"]["tasksStaged"], 2, "{app}");

    let (status, again) = api.call("POST", "/v2/apps", Some(web(2))).await;
    assert_eq!(status, 409, "an app that exists: {again}");
}

#[tokio::test]
async fn refusals_have_marathons_shapes() {
    let api = api();
    let (status, body) = api
        .call("POST", "/v2/apps", Some(json!({"id": "/bad", "cmd": "x", "cpus": -1})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["message"], "Object is not valid");
    assert!(
        body["details"].as_array().unwrap().iter().any(|d| d["path"] == "/cpus"),
        "{body}"
    );

    // A health check path that would end the agent's request line early.
    let app = json!({"id": "/hc", "cmd": "x", "healthChecks": [
        {"protocol": "MESOS_HTTP", "path": "/ HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /"}]});
    let (status, body) = api.call("POST", "/v2/apps", Some(app)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["path"], "/healthChecks(0)/path", "{body}");

    let (status, body) = api.call("GET", "/v2/apps/nothing", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("App '/nothing' does not exist"))
    );

    // An update of an app a deployment holds is refused with the locking deployment.
    let (_, created) = api.call("POST", "/v2/apps", Some(web(1))).await;
    let deployment = created["deployments"][0]["id"].clone();
    let (status, body) = api.call("PUT", "/v2/apps/web", Some(web(3))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["deployments"][0]["id"], deployment);
    assert!(body["message"].as_str().unwrap().contains("locked"), "{body}");
    // With force the change goes through, replacing the deployment.
    let (status, body) = api.call("PUT", "/v2/apps/web?force=true", Some(web(3))).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["deploymentId"], deployment);
}

#[tokio::test]
async fn a_cancelled_deployment_rolls_back_and_says_it_failed() {
    let api = api();
    let mut events = Box::pin(api.events().await);
    let (_, created) = api.call("POST", "/v2/apps", Some(web(1))).await;
    api.wait_tasks("/web", 1).await;
    let (status, updated) = api.call("PUT", "/v2/apps/web?force=true", Some(web(2))).await;
    assert_eq!(status, 200, "{updated}");
    let replaced = next_event(&mut events, "deployment_failed").await;
    assert_eq!(
        replaced["id"], created["deployments"][0]["id"],
        "the forced update replaced it"
    );
    let deployment = updated["deploymentId"].as_str().unwrap().to_string();
    api.wait_tasks("/web", 2).await;

    // Without force: rolled back to one instance, by a new deployment.
    let (status, body) = api.call("DELETE", &format!("/v2/deployments/{deployment}"), None).await;
    assert_eq!(status, 200, "{body}");
    let rollback = body["deploymentId"]
        .as_str()
        .expect("a rollback deployment")
        .to_string();
    assert_ne!(rollback, deployment);
    let failed = next_event(&mut events, "deployment_failed").await;
    assert_eq!(failed["id"], deployment.as_str());
    let (_, app) = api.call("GET", "/v2/apps/web", None).await;
    assert_eq!(app["app"]["instances"], 1, "back to the original definition");

    // With force: the deployment is just dropped.
    let (status, _) = api
        .call("DELETE", &format!("/v2/deployments/{rollback}?force=true"), None)
        .await;
    assert_eq!(status, 202);
    let failed = next_event(&mut events, "deployment_failed").await;
    assert_eq!(failed["id"], rollback.as_str());
    let (_, list) = api.call("GET", "/v2/deployments", None).await;
    assert_eq!(list, json!([]));

    let (status, body) = api.call("DELETE", "/v2/deployments/nope", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("DeploymentPlan nope does not exist"))
    );
}

#[tokio::test]
async fn event_streams_are_bounded_in_number() {
    let api = api();
    let open = |api: &Api| {
        let req = http::Request::get("/v2/events").body(Body::empty()).unwrap();
        api.router.clone().oneshot(req)
    };
    let mut streams = Vec::new();
    for _ in 0..tepui_marathon::MAX_EVENT_STREAMS {
        let resp = open(&api).await.unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp);
    }
    let resp = open(&api).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("Too many event streams"),
        "{body}"
    );

    // A reader that leaves gives its place back.
    drop(streams.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = open(&api).await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the place never came back");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_call_that_did_not_pass_the_gate_is_refused_not_assumed_allowed() {
    let api = api_as(None);
    let (status, body) = api
        .call(
            "POST",
            "/v2/apps",
            Some(json!({"id": "/web", "cmd": "sleep 100", "instances": 1})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("gate"), "{body}");
    assert_eq!(
        api.call("GET", "/v2/apps/web", None).await.0,
        404,
        "nothing was created"
    );
}

/// The ids of the apps in a group's JSON, every level down.
fn group_apps(g: &Value) -> Vec<String> {
    let mut out: Vec<String> = g["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    for child in g["groups"].as_array().into_iter().flatten() {
        out.extend(group_apps(child));
    }
    out.sort();
    out
}

#[tokio::test]
async fn groups_are_created_changed_scaled_and_deleted_as_deployments_of_their_apps() {
    let api = api();
    let prod = json!({
        "id": "/prod",
        "dependencies": ["/db"],
        "apps": [{"id": "web", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 2}],
        "groups": [{"id": "back", "apps": [{"id": "api", "cmd": "sleep 100", "cpus": 0.1, "mem": 16}]}],
    });
    let (status, body) = api
        .call(
            "POST",
            "/v2/apps",
            Some(json!({"id": "/db", "cmd": "sleep 100", "cpus": 0.1, "mem": 16})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.call("POST", "/v2/groups?force=true", Some(prod.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["deploymentId"].is_string() && body["version"].is_string(),
        "{body}"
    );
    let (_, g) = api.call("GET", "/v2/groups/prod", None).await;
    assert_eq!(group_apps(&g), ["/prod/back/api", "/prod/web"], "{g}");
    let (_, web) = api.call("GET", "/v2/apps/prod/web", None).await;
    assert_eq!(
        web["app"]["dependencies"],
        json!(["/db"]),
        "the group's dependency is the app's: {web}"
    );
    api.wait_tasks("/prod/web", 2).await;

    // Created once; PUT changes it.
    let (status, body) = api.call("POST", "/v2/groups?force=true", Some(prod)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Use PUT"), "{body}");

    // A PUT with apps and no groups: web is replaced by www, the subgroup stays.
    let update = json!({"apps": [{"id": "www", "cmd": "sleep 100", "cpus": 0.1, "mem": 16}]});
    let (status, body) = api.call("PUT", "/v2/groups/prod?force=true", Some(update)).await;
    assert_eq!(status, 200, "{body}");
    let (_, g) = api.call("GET", "/v2/groups/prod", None).await;
    assert_eq!(group_apps(&g), ["/prod/back/api", "/prod/www"], "{g}");
    let (status, _) = api.call("GET", "/v2/apps/prod/web", None).await;
    assert_eq!(status, 404, "an app the new group no longer holds is removed");

    // scaleBy reaches every app below the group.
    let (status, body) = api
        .call("PUT", "/v2/groups/prod?force=true", Some(json!({"scaleBy": 3})))
        .await;
    assert_eq!(status, 200, "{body}");
    for app in ["prod/www", "prod/back/api"] {
        let (_, a) = api.call("GET", &format!("/v2/apps/{app}"), None).await;
        assert_eq!(a["app"]["instances"], 3, "{a}");
    }

    // Refusals: the field path of a bad app, an empty group, a rollback of a group, unknown groups.
    let bad = json!({"id": "/bad", "apps": [{"id": "x", "cmd": "x", "cpus": -1}]});
    let (status, body) = api.call("POST", "/v2/groups", Some(bad)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["path"], "/apps(0)/cpus", "{body}");
    let (status, body) = api.call("POST", "/v2/groups", Some(json!({"id": "/empty"}))).await;
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (422, Some("/apps")),
        "{body}"
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v2/groups/prod",
            Some(json!({"version": "2026-01-01T00:00:00.000Z"})),
        )
        .await;
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (422, Some("/version")),
        "{body}"
    );
    let (status, body) = api.call("PUT", "/v2/groups/prod", Some(json!({"scaleBy": -1}))).await;
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (422, Some("/scaleBy")),
        "{body}"
    );
    let cycle = json!({"id": "/loop", "apps": [
        {"id": "a", "cmd": "x", "dependencies": ["b"]}, {"id": "b", "cmd": "x", "dependencies": ["a"]}]});
    let (status, body) = api.call("POST", "/v2/groups", Some(cycle)).await;
    assert_eq!(status, 422, "a dependency cycle: {body}");
    let (status, _) = api.call("DELETE", "/v2/groups/nothing", None).await;
    assert_eq!(status, 404);
    let (status, _) = api.call("POST", "/v2/groups", Some(json!("not a group"))).await;
    assert_eq!(status, 422);
    let (_, g) = api.call("GET", "/v2/groups", None).await;
    assert_eq!(
        group_apps(&g),
        ["/db", "/prod/back/api", "/prod/www"],
        "nothing refused was deployed: {g}"
    );

    // DELETE takes every app below the group, as one deployment.
    let (status, body) = api.call("DELETE", "/v2/groups/prod?force=true", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["deploymentId"].is_string(), "{body}");
    let (status, _) = api.call("GET", "/v2/groups/prod", None).await;
    assert_eq!(status, 404);
    let (_, g) = api.call("GET", "/v2/groups", None).await;
    assert_eq!(group_apps(&g), ["/db"], "{g}");
}
