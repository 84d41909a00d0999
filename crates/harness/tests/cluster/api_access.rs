//! Every route of every API dialect, walked from the server's own route table: without a token
//! it is refused (401), with a token lacking what the route needs it is refused (403), with
//! one that has it the gate lets it through. A route added without a policy cannot be
//! registered (features hand the server `tepui_auth::Routes`), and a method served without
//! a need is refused even to the management token; both show here.

use tepui_auth::{Cap, Need};
use tepui_harness::{Cluster, API_TOKEN};

/// A concrete path for a route pattern: every parameter becomes `x`.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_what_its_policy_says() {
    let c = Cluster::builder().servers(1).start().await;
    let leader = c.wait_for_leader().await;
    let server = c.server(leader);
    let table = server.route_table().expect("the router is built");
    let base = format!("http://{}", server.http_addr);
    let admin = tepui_harness::Client::new(&base).with_token(API_TOKEN);

    // A token for each capability, through the ACL API.
    let http = reqwest::Client::new();
    let mut tokens = std::collections::HashMap::new();
    for cap in Cap::ALL {
        let name = format!("only-{}", cap.as_str());
        let _: serde_json::Value = admin
            .put(
                &format!("/v1/acl/policies/{name}"),
                &serde_json::json!({ "capabilities": [cap.as_str()] }),
            )
            .await
            .expect("policy applied");
        let made: serde_json::Value = admin
            .post(
                "/v1/acl/tokens",
                &serde_json::json!({ "name": name, "policies": [name] }),
            )
            .await
            .expect("token created");
        tokens.insert(cap, made["secret"].as_str().unwrap().to_string());
    }
    // A token whose policy grants nothing.
    let _: serde_json::Value = admin
        .put("/v1/acl/policies/nothing", &serde_json::json!({}))
        .await
        .unwrap();
    let nothing: serde_json::Value = admin
        .post("/v1/acl/tokens", &serde_json::json!({ "policies": ["nothing"] }))
        .await
        .unwrap();
    let nothing = nothing["secret"].as_str().unwrap().to_string();

    let call = |method: &http::Method, path: &str, token: Option<&str>| {
        let mut req = http.request(
            reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
            format!("{base}{path}"),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        // Writes carry JSON, as every client sends them; the body itself may be refused.
        req.header("content-type", "application/json").body("{}").send()
    };
    let mut walked = 0;
    for (pattern, policy) in table.routes() {
        let path = concrete(pattern);
        for (method, need) in policy.methods() {
            walked += 1;
            let status = |r: reqwest::Response| r.status().as_u16();
            let anonymous = status(call(method, &path, None).await.unwrap());
            match need {
                Need::Public => {
                    // `x` in a catch-all may name nothing (the UI's `/ui/assets/x`): its 404 comes
                    // from the handler, past the gate, which is what this checks.
                    let unknown_name = anonymous == 404 && pattern.contains("{*");
                    assert!(
                        anonymous < 400 || unknown_name,
                        "{method} {pattern} is public but answered {anonymous}"
                    );
                    continue;
                }
                Need::Token | Need::Cap(_) => {
                    assert_eq!(anonymous, 401, "{method} {pattern} without a token");
                }
            }
            if let Need::Cap(cap) = need {
                // Every other capability's token lacks it.
                for (other, token) in &tokens {
                    if *other == cap {
                        continue;
                    }
                    let got = status(call(method, &path, Some(token)).await.unwrap());
                    assert_eq!(got, 403, "{method} {pattern} with only {:?}", other.as_str());
                }
                let got = status(call(method, &path, Some(&tokens[&cap])).await.unwrap());
                assert!(
                    got != 401 && got != 403,
                    "{method} {pattern} with {:?}: {got}",
                    cap.as_str()
                );
            } else {
                // The handler decides; a token is let in.
                let got = status(call(method, &path, Some(&nothing)).await.unwrap());
                assert_ne!(got, 401, "{method} {pattern} with a token");
            }
            let got = status(call(method, &path, Some(API_TOKEN)).await.unwrap());
            assert!(
                got != 401 && got != 403,
                "{method} {pattern} with the management token: {got}"
            );
        }
    }
    assert!(walked > 60, "only {walked} route methods: is the table complete?");

    // What a web page could make a browser send, even with a token the browser holds.
    let forged = http
        .post(format!("{base}/v2/apps"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"id":"/x","cmd":"true"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 415);
    let foreign = http
        .post(format!("{base}/v2/apps"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(r#"{"id":"/x","cmd":"true"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    let ws = http
        .get(format!("{base}/v1/tasks/x/exec/ws"))
        .bearer_auth(API_TOKEN)
        .header("origin", "http://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(ws.status().as_u16(), 403, "a websocket from another site's page");
    c.shutdown().await;
}

/// A follower reads a body only up to its route's own limit before forwarding it: a 2 MiB
/// variable is refused by the follower itself (with no leader to forward to, so the refusal
/// can only be its own), where it used to read up to 512 MiB of any call first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_no_more_of_a_body_than_its_route_takes() {
    let mut c = Cluster::builder().servers(3).start().await;
    let leader = c.wait_for_leader().await;
    let ids = c.live_server_ids();
    let follower = *ids.iter().find(|id| **id != leader).unwrap();
    let other = *ids.iter().find(|id| **id != leader && **id != follower).unwrap();
    let base = c.client(follower).base().to_string();
    c.kill_server(leader).await;
    c.kill_server(other).await;

    let http = reqwest::Client::new();
    let put = |body: Vec<u8>| {
        http.put(format!("{base}/v1/vars/big"))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let small = put(br#"{"value":"1"}"#.to_vec()).await.unwrap();
    assert_eq!(
        small.status(),
        503,
        "no leader to forward to: {}",
        small.text().await.unwrap()
    );
    let big = put(vec![b' '; 2 << 20]).await.unwrap();
    assert_eq!(big.status(), 413);
    let body: serde_json::Value = big.json().await.unwrap();
    assert_eq!(body["code"], "body_too_large", "{body}");
    c.shutdown().await;
}
