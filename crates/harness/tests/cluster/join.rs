//! Joining with tokens: the right token admits a server or an agent; a token for another CA,
//! with a wrong secret, expired, revoked or of the other role is refused with its own reason and
//! admits nothing; a joined node restarts from its identity on disk without any token.

use std::time::Duration;

use tepui_common::now_ms;

use tepui_api::TokenCreateRequest;
use tepui_harness::{wait_for, AgentStart, Cluster, FirstStart, StartedAs};

const WAIT: Duration = Duration::from_secs(15);

/// A token with one of its five dot-separated parts replaced.
fn with_part(token: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5, "a token is tepui1.<role>.<ca-hash>.<id>.<secret>");
    parts[index] = part;
    parts.join(".")
}

fn token_id(token: &str) -> String {
    token.split('.').nth(3).expect("a token id").to_string()
}

/// Node ids as the leader's API lists them.
async fn node_ids(c: &Cluster) -> Vec<u64> {
    let leader = c.wait_for_leader().await;
    let mut ids: Vec<u64> = c
        .client(leader)
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.id)
        .collect();
    ids.sort();
    ids
}

async fn create_token(c: &Cluster, role: &str, ttl: Option<&str>) -> (String, u64) {
    let leader = c.wait_for_leader().await;
    let created = c
        .client(leader)
        .create_token(&TokenCreateRequest {
            role: role.into(),
            ttl: ttl.map(String::from),
            description: format!("test {role} token"),
        })
        .await
        .expect("token created");
    (created.token, created.view.expires_at_ms.unwrap_or(u64::MAX))
}

async fn token_uses(c: &Cluster, id: &str) -> u64 {
    let leader = c.wait_for_leader().await;
    c.client(leader)
        .tokens()
        .await
        .expect("tokens")
        .into_iter()
        .find(|t| t.id == id)
        .expect("the token")
        .uses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_tokens_join_a_server_and_an_agent() {
    let mut c = Cluster::builder().servers(1).start().await;
    let server_token = c.server_token().to_string();
    let agent_token = c.agent_token().to_string();

    let server = c.try_join_server(&server_token).await.expect("the server joins");
    assert!(matches!(c.server(server).started_as, StartedAs::Joined));
    c.wait_for_voters().await;
    assert!(c.voters(1).contains(&server), "the joined server is a voter");

    let agent = c.try_join_agent(&agent_token).await.expect("the agent joins");
    c.wait_for_agents_ready().await;

    let nodes = c.client(server).nodes().await.expect("nodes");
    let roles: Vec<(u64, &str, &str)> = nodes
        .iter()
        .map(|n| (n.id, n.roles.as_str(), n.status.as_str()))
        .collect();
    assert_eq!(
        roles,
        vec![
            (1, "server", "ready"),
            (server, "server", "ready"),
            (agent, "agent", "ready")
        ]
    );
    assert_eq!(token_uses(&c, &token_id(&server_token)).await, 1);
    assert_eq!(token_uses(&c, &token_id(&agent_token)).await, 1);
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let mut c = Cluster::builder().servers(3).start().await;
    let before = node_ids(&c).await;
    let leader = c.wait_for_leader().await;
    let follower = c.server_ids().into_iter().find(|id| *id != leader).expect("a follower");
    let through_follower = c.server_cluster_addr(follower).to_string();

    for role in ["server", "agent"] {
        let valid = if role == "server" {
            c.server_token().to_string()
        } else {
            c.agent_token().to_string()
        };
        let join = async |c: &mut Cluster, token: String| -> Result<u64, String> {
            if role == "server" {
                c.try_start_server(FirstStart::Join {
                    addr: through_follower.clone(),
                    token,
                })
                .await
            } else {
                c.try_start_agent(AgentStart::Join {
                    addr: through_follower.clone(),
                    token,
                })
                .await
            }
        };

        // A token for another cluster: the TLS handshake fails before anything is sent.
        let other_ca = with_part(&valid, 2, &"0f".repeat(32));
        let err = join(&mut c, other_ca).await.expect_err("another CA's token");
        assert!(err.contains("is not the cluster the token belongs to"), "{role}: {err}");

        let secret = with_part(&valid, 4, &"x".repeat(32));
        let err = join(&mut c, secret).await.expect_err("a wrong secret");
        assert!(
            err.contains(&format!("wrong secret for token {}", token_id(&valid))),
            "{role}: {err}"
        );

        let unknown = with_part(&valid, 3, "zzzzzz");
        let err = join(&mut c, unknown).await.expect_err("an unknown token");
        assert!(err.contains("unknown token zzzzzz"), "{role}: {err}");

        let (expiring, expires_at) = create_token(&c, role, Some("1ms")).await;
        wait_for("the token to expire", WAIT, async || now_ms() > expires_at).await;
        let err = join(&mut c, expiring.clone()).await.expect_err("an expired token");
        assert!(
            err.contains(&format!("token {} expired at {expires_at}", token_id(&expiring))),
            "{role}: {err}"
        );

        let (revoked, _) = create_token(&c, role, None).await;
        let view = c
            .client(follower)
            .revoke_token(&token_id(&revoked))
            .await
            .expect("revoked");
        assert!(view.revoked);
        let err = join(&mut c, revoked.clone()).await.expect_err("a revoked token");
        assert!(
            err.contains(&format!("token {} was revoked", token_id(&revoked))),
            "{role}: {err}"
        );
        assert_eq!(token_uses(&c, &token_id(&revoked)).await, 0);
        assert_eq!(token_uses(&c, &token_id(&expiring)).await, 0);
    }

    assert_eq!(node_ids(&c).await, before, "nothing joined");
    assert_eq!(c.server_ids().len(), 3);
    assert!(c.agent_ids().is_empty());
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_one_role_does_not_join_the_other() {
    let mut c = Cluster::builder().servers(1).start().await;
    let before = node_ids(&c).await;
    let server_token = c.server_token().to_string();
    let agent_token = c.agent_token().to_string();

    // The joining node checks the role written in the token first...
    let err = c
        .try_join_server(&agent_token)
        .await
        .expect_err("an agent token for a server");
    assert!(
        err.contains("this is an agent token; a server needs a server token"),
        "{err}"
    );
    let err = c
        .try_join_agent(&server_token)
        .await
        .expect_err("a server token for an agent");
    assert!(
        err.contains("this is a server token; an agent needs an agent token"),
        "{err}"
    );

    // ...and the cluster checks the role it recorded, whatever the token text says.
    let relabelled = with_part(&agent_token, 1, "server");
    let err = c
        .try_join_server(&relabelled)
        .await
        .expect_err("a relabelled agent token");
    assert!(
        err.contains(&format!("token {} is a", token_id(&agent_token)))
            && err.contains("agent token, but the node asked to join as server"),
        "{err}"
    );
    let relabelled = with_part(&server_token, 1, "agent");
    let err = c
        .try_join_agent(&relabelled)
        .await
        .expect_err("a relabelled server token");
    assert!(
        err.contains("server token, but the node asked to join as agent"),
        "{err}"
    );

    assert_eq!(node_ids(&c).await, before, "nothing joined");
    assert_eq!(token_uses(&c, &token_id(&agent_token)).await, 0);
    assert_eq!(token_uses(&c, &token_id(&server_token)).await, 0);
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_restart_from_their_identity_without_a_token() {
    let mut c = Cluster::builder().servers(3).agents(1).start().await;
    let agent = c.agent_ids()[0];

    // Without a token and without an identity, nothing starts.
    let err = c
        .try_start_server(FirstStart::Refuse)
        .await
        .expect_err("an empty data dir");
    assert!(err.contains("holds no cluster yet"), "{err}");
    let err = c
        .try_start_agent(AgentStart::Refuse)
        .await
        .expect_err("an empty data dir");
    assert!(err.contains("holds no identity yet"), "{err}");

    // A joined server, then the bootstrap server, each restarted without a token.
    let leader = c.wait_for_leader().await;
    let joined = c
        .server_ids()
        .into_iter()
        .find(|id| *id != 1 && *id != leader)
        .expect("a joined follower");
    for id in [joined, 1] {
        c.kill_server(id).await;
        c.put_var(&format!("while-{id}-was-down"), "x").await;
        let restarted = c.restart_server(id).await;
        assert!(matches!(restarted.started_as, StartedAs::Restarted), "server {id}");
        c.wait_for_voters().await;
        c.wait_converged().await;
        assert_eq!(c.local_var(id, &format!("while-{id}-was-down")).as_deref(), Some("x"));
        c.check_invariants();
    }

    // The agent too: same id, registered again, ready.
    let registrations = c.agent(agent).connection.borrow().registrations;
    assert!(registrations >= 1);
    c.kill_agent(agent).await;
    let restarted = c.restart_agent(agent).await;
    assert_eq!(restarted.id(), agent);
    c.wait_for_agents_ready().await;
    let leader = c.wait_for_leader().await;
    let nodes = c.client(leader).nodes().await.expect("nodes");
    let record = nodes.iter().find(|n| n.id == agent).expect("the agent's record");
    assert_eq!(record.status, "ready");
    assert_eq!(nodes.len(), 4, "no new node: {nodes:?}");
    c.check_invariants();
    c.shutdown().await;
}
