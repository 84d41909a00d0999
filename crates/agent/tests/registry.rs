//! Images from a real registry (Debian's docker-registry on loopback, plain HTTP): pulled when
//! a task needs them, pulled on request with progress, and clear failures for images that do
//! not exist or registries the agent may not use. Run as root.

mod common;

use common::*;
use tepui_agent::{ImageSummary, Requests};
use tepui_image::testimage::Registry;
use tepui_proto::agent::{AgentToServer, Reply, Request};
use tokio::sync::mpsc;

fn registry(fx: &Fixture) -> Registry {
    let reg = Registry::start(&fx.path("registry")).unwrap();
    let layout = fx.path("push-layout");
    tepui_image::testimage::build_busybox_layout(&layout, "v1").unwrap();
    reg.push_layout(&layout, "v1", "tools/busybox").unwrap();
    reg
}

#[tokio::test]
async fn a_task_pulls_its_image_and_missing_images_fail_the_task_clearly() {
    let fx0 = Fixture::new();
    let reg = registry(&fx0);
    let fx = Fixture::with(|c| c.insecure_registries = vec![reg.host()]);
    let mgr = fx.open().await;
    let mut leader = Leader::new(&mgr);

    let id = task_id("pulled");
    let image = format!("{}/tools/busybox:v1", reg.host());
    mgr.launch(launch(&id, Some(&image), &["cat", "/etc/variant"]));
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");
    assert_eq!(leader.states(&id), ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);
    assert!(mgr.images().get(&image).is_ok(), "the pulled image stays in the store");

    let missing = task_id("missing");
    mgr.launch(launch(&missing, Some(&format!("{}/tools/nope:v1", reg.host())), &[]));
    let end = leader.wait_end(&missing).await;
    assert_eq!(end.state, "TASK_FAILED", "{end:?}");
    assert_eq!(end.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    assert!(end.message.contains("not found"), "{end:?}");
    assert!(end.message.contains("tools/nope:v1"), "{end:?}");

    let bad = task_id("badref");
    mgr.launch(launch(&bad, Some("UPPER/Case::x"), &[]));
    let end = leader.wait_end(&bad).await;
    assert_eq!(end.state, "TASK_FAILED", "{end:?}");
    assert!(end.message.contains("invalid image reference"), "{end:?}");
    mgr.shutdown().await;

    // An agent that may not use plain HTTP with this registry says what to change.
    let strict = Fixture::new();
    let mgr = strict.open().await;
    let mut leader = Leader::new(&mgr);
    let id = task_id("insecure");
    mgr.launch(launch(&id, Some(&image), &[]));
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FAILED", "{end:?}");
    assert!(end.message.contains("insecure_registries"), "{end:?}");
    mgr.shutdown().await;
}

#[tokio::test]
async fn pull_requests_report_progress_then_the_image() {
    let fx0 = Fixture::new();
    let reg = registry(&fx0);
    let fx = Fixture::with(|c| c.insecure_registries = vec![reg.host()]);
    let mgr = fx.open().await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut reqs = Requests::new(
        mgr.clone(),
        std::sync::Arc::new(tepui_agent::gateway::AgentGateway::without_proxy()),
        tx,
    );
    let image = format!("{}/tools/busybox:v1", reg.host());

    let mut pull = |req_id: u64, reference: String| {
        reqs.start(req_id, Request::PullImage { reference });
    };
    pull(1, image.clone());
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let env = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the pull did not end")
            .unwrap();
        let AgentToServer::Reply { req_id: 1, reply } = serde_json::from_slice(&env.json).unwrap() else {
            panic!("unexpected message")
        };
        let end = matches!(reply, Reply::Done { .. } | Reply::Error { .. });
        replies.push(reply);
        if end {
            break;
        }
    }
    let events: Vec<&serde_json::Value> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Progress { event } => Some(event),
            _ => None,
        })
        .collect();
    assert!(
        events.iter().any(|e| e["kind"] == "layer"
            && e["state"] == "done"
            && e["digest"].as_str().unwrap().starts_with("sha256:")),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["state"] == "downloading" && e["total"].as_u64().is_some()));
    let Some(Reply::Done { result }) = replies.last() else {
        panic!("{replies:?}")
    };
    let summary: ImageSummary = serde_json::from_value(result.clone()).unwrap();
    assert_eq!(summary.reference, image);
    assert_eq!(summary.layers, 2);

    pull(2, format!("{}/tools/nope:v1", reg.host()));
    let env = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
    match serde_json::from_slice(&env.json).unwrap() {
        AgentToServer::Reply {
            req_id: 2,
            reply: Reply::Error { code, message },
        } => {
            assert_eq!(code, "not_found", "{message}");
        }
        other => panic!("{other:?}"),
    }
    drop(reqs);
    mgr.shutdown().await;
}
