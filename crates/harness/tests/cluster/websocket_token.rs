//! A browser's websocket carries its token as a `bearer.<base64url>` subprotocol (it cannot
//! set headers): the leader takes it; a follower, which forwards calls without their
//! subprotocols, hands it on as the caller's `Authorization`, so the leader does not answer
//! 401 (a web UI would take that for a logout); a bad one is 401 everywhere.

use base64::Engine;
use tepui_harness::{wait_for, Cluster, API_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_token_in_a_subprotocol_counts_on_every_server() {
    let c = Cluster::builder().servers(3).start().await;
    let leader = c.wait_for_leader().await;
    let follower = *c.live_server_ids().iter().find(|id| **id != leader).unwrap();
    // The harness's client installs the TLS crypto provider reqwest needs.
    let bases: std::collections::HashMap<u64, String> = [leader, follower]
        .map(|id| (id, c.client(id).base().to_string()))
        .into();
    let http = reqwest::Client::new();
    let upgrade = |id: u64, token: &str| {
        let base = &bases[&id];
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        let req = http
            .get(format!("{base}/v1/tasks/nope/exec/ws?cmd=%5B%22sh%22%5D"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", format!("tepui, bearer.{encoded}"));
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    // On the leader the token passes and the handler answers: no such task.
    let (status, body) = upgrade(leader, API_TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_task"), "{body}");
    // Through a follower (once it knows the leader): not refused for want of a token.
    wait_for(
        "the follower to forward with the subprotocol's token",
        std::time::Duration::from_secs(20),
        async || {
            let (status, body) = upgrade(follower, API_TOKEN).await;
            match status {
                503 => Err(format!("{status}: {body}")),
                401 | 403 => panic!("the follower's forward lost the token: {status} {body}"),
                _ => Ok(()),
            }
        },
    )
    .await;
    for id in [leader, follower] {
        let (status, body) = upgrade(id, "e2e.not-a-token").await;
        assert_eq!(status, 401, "{body}");
    }
    c.shutdown().await;
}
