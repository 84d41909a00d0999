//! The cluster port lets in only what ARCHITECTURE.md promises: Raft RPCs and forwarded API
//! calls from servers, `AddServer` only for the caller's own id, agent streams only with a
//! certificate, and nothing from a node that was removed (checked on every call, so within a
//! second of the removal on every server).

use std::time::{Duration, Instant};

use tepui_harness::{wait_for, Cluster};
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::{AddServerRequest, Envelope, HttpRequest, RaftPayload, RenewRequest};
use tepui_transport::Identity;
use tonic::transport::Channel;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(15);

/// A client of `addr`'s cluster port that presents `identity`'s certificate.
fn as_node(addr: &str, identity: &Identity) -> ClusterClient<Channel> {
    ClusterClient::new(tepui_transport::channel(addr, identity.client_tls().unwrap()))
}

/// A client that trusts the cluster's CA but presents no certificate.
fn anonymous(addr: &str, ca_pem: &str) -> ClusterClient<Channel> {
    ClusterClient::new(tepui_transport::channel(
        addr,
        tepui_pki::tls::client_config(ca_pem, None).unwrap(),
    ))
}

fn payload() -> RaftPayload {
    RaftPayload { json: b"{}".to_vec() }
}

fn forwarded() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path_and_query: "/v1/vars".into(),
        headers: Default::default(),
        body: vec![],
    }
}

fn assert_code<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, code: Code, words: &str) {
    match r {
        Err(s) if s.code() == code && s.message().contains(words) => {}
        other => panic!("{what}: expected {code:?} saying {words:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_port_refuses_what_a_caller_may_not_do() {
    let c = Cluster::builder().servers(2).agents(1).start().await;
    c.wait_for_agents_ready().await;
    let leader = c.wait_for_leader().await;
    let addr = c.server_cluster_addr(leader).to_string();
    let agent_id = c.agent_ids()[0];
    let agent = c.agent(agent_id).identity.clone();
    let follower = *c.server_ids().iter().find(|s| **s != leader).unwrap();
    let server = c.server(follower).identity.clone();

    // An agent's certificate is the cluster's, but it may not speak Raft...
    let mut client = as_node(&addr, &agent);
    assert_code(
        "vote",
        client.vote(payload()).await,
        Code::PermissionDenied,
        "not a server",
    );
    assert_code(
        "append_entries",
        client.append_entries(payload()).await,
        Code::PermissionDenied,
        "not a server",
    );
    assert_code(
        "install_snapshot",
        client.install_snapshot(payload()).await,
        Code::PermissionDenied,
        "not a server",
    );
    // ...nor have the leader run API calls for it.
    assert_code(
        "forward_http",
        client.forward_http(forwarded()).await,
        Code::PermissionDenied,
        "not a server",
    );
    // A server's certificate gets past that check (the empty payload is what it refuses).
    let mut client = as_node(&addr, &server);
    assert_code(
        "a server's vote",
        client.vote(payload()).await,
        Code::InvalidArgument,
        "bad raft payload",
    );

    // A server may ask to become a voter for itself only.
    let other = AddServerRequest {
        node_id: follower + 100,
        cluster_addr: "127.0.0.1:1".into(),
    };
    assert_code(
        "add_server for another id",
        client.add_server(other).await,
        Code::PermissionDenied,
        &format!("node {follower} cannot add node {}", follower + 100),
    );

    // Without a certificate, only Join: no agent stream.
    let mut client = anonymous(&addr, &agent.ca_pem);
    let stream = tokio_stream::iter(Vec::<Envelope>::new());
    assert_code(
        "agent_stream",
        client.agent_stream(stream).await,
        Code::Unauthenticated,
        "certificate of this cluster is required",
    );
    assert_code(
        "vote",
        client.vote(payload()).await,
        Code::Unauthenticated,
        "certificate of this cluster is required",
    );
    let renew = RenewRequest {
        csr_pem: String::new(),
        ips: vec![],
    };
    assert_code(
        "renew",
        client.renew(renew).await,
        Code::Unauthenticated,
        "certificate of this cluster is required",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_refused_within_a_second_everywhere() {
    let mut c = Cluster::builder().servers(3).agents(1).start().await;
    c.wait_for_agents_ready().await;
    let leader = c.wait_for_leader().await;
    let agent_id = c.agent_ids()[0];
    let agent = c.agent(agent_id).identity.clone();
    let mut connection = c.agent(agent_id).connection.clone();
    assert!(connection.borrow().leader.is_some(), "the agent's stream is open");
    let servers = c.server_ids();
    let addrs: Vec<String> = servers.iter().map(|s| c.server_cluster_addr(*s).to_string()).collect();
    let renew = || RenewRequest {
        csr_pem: tepui_pki::generate_csr("a").unwrap().1,
        ips: vec![],
    };
    // Before: the leader renews the agent's certificate; followers say where the leader is.
    let mut to_leader = as_node(c.server_cluster_addr(leader), &agent);
    to_leader.renew(renew()).await.expect("a member renews");
    let follower = *servers.iter().find(|s| **s != leader).unwrap();
    match as_node(c.server_cluster_addr(follower), &agent).renew(renew()).await {
        Err(s) if s.code() == Code::Unavailable && s.metadata().get("x-tepui-leader").is_some() => {}
        other => panic!("a follower should point at the leader, got {other:?}"),
    }

    c.client(leader)
        .remove_node(&agent.name)
        .await
        .expect("the agent is removed");
    let removed_at = Instant::now();
    // Its open stream ends...
    let ended = tokio::time::timeout(
        Duration::from_secs(1),
        connection.wait_for(|conn| conn.leader.is_none()),
    )
    .await;
    assert!(ended.is_ok(), "the removed agent's stream is still open after a second");
    // ...and every server refuses its certificate.
    for addr in &addrs {
        let mut client = as_node(addr, &agent);
        let refused = |r: Result<_, tonic::Status>| match r {
            Err(s) if s.code() == Code::PermissionDenied && s.message().contains("not part of this cluster") => Ok(()),
            other => Err(format!("{other:?}")),
        };
        wait_for("every server to refuse the removed agent", WAIT, async || {
            refused(client.renew(renew()).await.map(|_| ()))?;
            refused(
                client
                    .agent_stream(tokio_stream::iter(Vec::<Envelope>::new()))
                    .await
                    .map(|_| ()),
            )
        })
        .await;
    }
    assert!(
        removed_at.elapsed() < Duration::from_secs(1),
        "refused only after {:?}",
        removed_at.elapsed()
    );

    // A removed server's certificate goes the same way.
    let gone = *servers.iter().find(|s| **s != leader).unwrap();
    let gone_identity = c.server(gone).identity.clone();
    c.remove_server(gone).await;
    let removed_at = Instant::now();
    for s in c.server_ids() {
        let mut client = as_node(c.server_cluster_addr(s), &gone_identity);
        wait_for("the removed server to be refused", WAIT, async || {
            match client.vote(payload()).await {
                Err(st) if st.code() == Code::PermissionDenied => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let mut client = as_node(c.server_cluster_addr(s), &gone_identity);
        assert_code(
            "forward_http from a removed server",
            client.forward_http(forwarded()).await,
            Code::PermissionDenied,
            "not part of this cluster",
        );
    }
    assert!(
        removed_at.elapsed() < Duration::from_secs(1),
        "refused only after {:?}",
        removed_at.elapsed()
    );
}
