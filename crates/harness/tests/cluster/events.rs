//! `GET /v1/events` on a follower: every server streams the changes it applies (a job defined
//! through the leader, an agent marked lost), filtered by type; an unknown type is refused
//! with its field.

use std::time::Duration;

use serde_json::Value;
use tepui_harness::{Cluster, API_TOKEN};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// Reads the SSE stream at `url` into (event type, data) pairs.
async fn subscribe(http: &reqwest::Client, url: &str) -> mpsc::UnboundedReceiver<(String, Value)> {
    let mut resp = http
        .get(url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"].to_str().unwrap(), "text/event-stream");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut kind = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(t) = line.strip_prefix("event: ") {
                        kind = Some(t.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(d).ok();
                    }
                }
                if let (Some(kind), Some(data)) = (kind, data) {
                    if tx.send((kind, data)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Waits for an event that `wanted` accepts; every event seen on the way is kept for the
/// failure message.
async fn expect(
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    what: &str,
    wanted: impl Fn(&str, &Value) -> bool,
) -> Value {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some((kind, data)) = rx.recv().await {
            if wanted(&kind, &data) {
                return Some(data);
            }
            seen.push(kind);
        }
        None
    })
    .await;
    match found {
        Ok(Some(data)) => data,
        _ => panic!("no event {what}; saw {seen:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_streams_the_changes_it_applies() {
    let mut c = Cluster::builder().servers(3).agents(1).start().await;
    c.wait_for_agents_ready().await;
    let leader = c.wait_for_leader().await;
    let follower = *c.live_server_ids().iter().find(|id| **id != leader).unwrap();
    let agent = c.agent_ids()[0];
    let base = c.client(follower).base().to_string();
    let leader_base = c.client(leader).base().to_string();
    let http = reqwest::Client::new();

    let bad = http
        .get(format!("{base}/v1/events?types=node_changed,nonsense"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body.to_string().contains("types") && body.to_string().contains("nonsense"),
        "{body}"
    );
    let anonymous = http.get(format!("{base}/v1/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the stream needs a token");

    let mut events = subscribe(&http, &format!("{base}/v1/events?types=job_changed,node_changed")).await;
    // A job written through the leader shows on the follower's stream once it applies it.
    let job = serde_json::json!({"id": "evented", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}});
    let created = http
        .post(format!("{leader_base}/v1/jobs"))
        .bearer_auth(API_TOKEN)
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let seen = expect(&mut events, "for the new job", |kind, data| {
        kind == "job_changed" && data["id"] == "evented"
    })
    .await;
    assert_eq!(seen["eventType"], "job_changed");
    assert!(seen["timestamp"].as_u64().is_some(), "{seen}");

    c.isolate(agent);
    let lost = expect(&mut events, "for the agent marked lost", |kind, data| {
        kind == "node_changed" && data["id"] == agent && data["status"] == "lost"
    })
    .await;
    assert_eq!(lost["role"], "agent", "{lost}");
    c.heal();
    expect(&mut events, "for the agent ready again", |kind, data| {
        kind == "node_changed" && data["id"] == agent && data["status"] == "ready"
    })
    .await;

    let removed = http
        .delete(format!("{leader_base}/v1/jobs/evented"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success(), "{:?}", removed.text().await);
    expect(&mut events, "for the removed job", |kind, data| {
        kind == "job_changed" && data["id"] == "evented" && data["removed"] == true
    })
    .await;
    c.shutdown().await;
}
