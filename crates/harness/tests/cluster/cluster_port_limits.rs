//! The cluster port to callers without a certificate: `Join` takes small messages only, and
//! every other call is refused before its body is read.

use tepui_harness::Cluster;
use tepui_pki::token::JoinToken;
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::{JoinRequest, RaftPayload};

/// A client that checks the server against the token's pinned CA and shows no certificate, as
/// a joining node (or anyone else) does.
fn anonymous(c: &Cluster, addr: &str) -> ClusterClient<tonic::transport::Channel> {
    let token: JoinToken = c.agent_token().parse().expect("a token");
    let (config, _) = tepui_pki::tls::pinned_client_config(&token.ca_sha256).expect("pinned config");
    ClusterClient::new(tepui_transport::channel(addr, config))
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_certificate_get_join_with_small_messages_and_nothing_else() {
    let c = Cluster::builder().servers(1).start().await;
    let leader = c.wait_for_leader().await;
    let mut client = anonymous(&c, c.server_cluster_addr(leader));

    // A join request far bigger than any real one is refused for its size, unread.
    let token: JoinToken = c.agent_token().parse().unwrap();
    let huge = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        role: "agent".into(),
        name: "big".into(),
        csr_pem: "x".repeat(1 << 20),
        ..Default::default()
    };
    let status = client.join(huge).await.expect_err("too big");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // A small one is answered (here: refused for its CSR, after the token was checked).
    let small = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        role: "agent".into(),
        name: "small".into(),
        csr_pem: "not a csr".into(),
        ..Default::default()
    };
    let status = client.join(small).await.expect_err("a bad CSR");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("certificate request"), "{status:?}");

    // Raft calls are refused before their (large) bodies are read.
    let status = client
        .vote(RaftPayload {
            json: vec![b' '; 8 << 20],
        })
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("only Join is open"), "{status:?}");
    c.shutdown().await;
}
