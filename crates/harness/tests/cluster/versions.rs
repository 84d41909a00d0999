//! Versions between real servers and agents in one process: every server tells its release
//! and protocols in its Raft answers, so the leader's upgrade-check hears them all; a node
//! that tells nothing (as 0.1.0 did) is taken for 0.1.0: a 0.1.0 server may not join a
//! cluster whose servers all speak protocol 2 (it could not read their log), an agent may.

use std::time::Duration;

use tepui_harness::{wait_for, Cluster};
use tepui_pki::token::JoinToken;
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::JoinRequest;

const WAIT: Duration = Duration::from_secs(15);

/// A join as 0.1.0 sent it: no versions in the metadata.
async fn join_as_legacy(c: &Cluster, token: &str, name: &str) -> Result<(), tonic::Status> {
    let token: JoinToken = token.parse().unwrap();
    let leader = c.wait_for_leader().await;
    let ca_pem = c.server(leader).identity.ca_pem.clone();
    let mut client = ClusterClient::new(tepui_transport::channel(
        &c.join_addr(),
        tepui_pki::tls::client_config(&ca_pem, None).unwrap(),
    ));
    let (_key, csr_pem) = tepui_pki::generate_csr(name).unwrap();
    client
        .join(JoinRequest {
            token_id: token.id,
            secret: token.secret,
            role: token.role.as_str().into(),
            name: name.into(),
            csr_pem,
            cluster_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
            ips: vec!["127.0.0.1".into()],
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_hears_every_member_and_refuses_a_server_that_cannot_read_its_log() {
    let c = Cluster::builder().servers(3).agents(1).start().await;
    let release = tepui_common::version::RELEASE;
    let check = wait_for("the leader to hear every server speak protocol 2", WAIT, async || {
        let leader = c.wait_for_leader().await;
        let v = c
            .client(leader)
            .upgrade_check(release, 2, 1)
            .await
            .map_err(|e| e.to_string())?;
        let heard = v
            .nodes
            .iter()
            .all(|n| n.heard && n.protocol == 2 && n.release == release);
        if heard && v.nodes.len() == 4 && v.cluster_protocol == 2 {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    })
    .await;
    assert!(check.ok, "{check:?}");
    assert!(check.nodes.iter().all(|n| n.reason == "already runs it"), "{check:?}");
    // 0.1.0 can take no node's place any more.
    let leader = c.wait_for_leader().await;
    // `node ls` tells every node's release, the servers' as the leader heard them.
    let nodes = c.client(leader).nodes().await.unwrap();
    assert!(nodes.iter().all(|n| n.version.as_deref() == Some(release)), "{nodes:?}");
    let legacy = c.client(leader).upgrade_check("0.1.0", 1, 1).await.unwrap();
    assert!(!legacy.ok && legacy.nodes.iter().all(|n| !n.ok), "{legacy:?}");
    assert!(legacy.nodes[0].reason.contains("writes protocol 2"), "{legacy:?}");
    // Bad input names its field.
    let bad = c.client(leader).upgrade_check("0.2.0 beta", 2, 1).await.unwrap_err();
    assert!(bad.to_string().contains("release"), "{bad}");

    let nodes_before = c.client(leader).nodes().await.unwrap().len();
    let server_token = c.server_token().to_string();
    let refused = join_as_legacy(&c, &server_token, "old-server")
        .await
        .expect_err("a 0.1.0 server is refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("cannot join this cluster") && refused.message().contains("writes protocol 2"),
        "{refused:?}"
    );
    assert_eq!(
        c.client(leader).nodes().await.unwrap().len(),
        nodes_before,
        "nothing admitted"
    );
    // An agent reads no log: a 0.1.0 one may join, and is sent only what it decodes.
    let agent_token = c.agent_token().to_string();
    join_as_legacy(&c, &agent_token, "old-agent")
        .await
        .expect("a 0.1.0 agent joins");
    c.shutdown().await;
}
