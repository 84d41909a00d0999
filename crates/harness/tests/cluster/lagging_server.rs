//! A token made through the leader is good on a server that has not applied it yet: the
//! server catches up with the leader before it judges the token, instead of answering 401
//! "unknown or revoked" for a token the cluster holds.

use serde_json::Value;
use tepui_harness::{Cluster, API_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_server_catches_up_before_it_refuses_a_token() {
    let mut c = Cluster::builder().servers(3).start().await;
    let leader = c.wait_for_leader().await;
    let ids = c.live_server_ids();
    let lagging = *ids.iter().find(|id| **id != leader).unwrap();
    let others: Vec<u64> = ids.iter().copied().filter(|id| *id != lagging).collect();
    // The harness's client installs the TLS crypto provider reqwest needs: first.
    let leader_base = c.client(leader).base().to_string();
    let lagging_base = c.client(lagging).base().to_string();
    let http = reqwest::Client::new();

    // Cut off, the follower misses the token's creation; back, it has not applied it yet when
    // the call comes (the leader's next append is a heartbeat away).
    c.partition(&[lagging], &others);
    let created: Value = http
        .post(format!("{leader_base}/v1/acl/tokens"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"name": "fresh", "policies": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("a secret: {created}"))
        .to_string();
    c.heal();
    let resp = http
        .get(format!("{lagging_base}/v1/acl/token/self"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "fresh", "{body}");

    // A token nobody made is still refused, after the same catch-up.
    let resp = http
        .get(format!("{lagging_base}/v1/acl/token/self"))
        .bearer_auth("nobodys0.token-secret-never-made")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    c.shutdown().await;
}
