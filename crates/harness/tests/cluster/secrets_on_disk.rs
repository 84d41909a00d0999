//! Everything secret a node writes (its key, the CA's key in the Raft state, join tokens) is
//! its owner's only, whatever the umask: data dirs 0700, files 0600. And join tokens, the
//! bootstrap ones included, expire unless told otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tepui_harness::Cluster;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` that holds a secret is 0600, and `dir` and the dirs on the way 0700.
fn assert_private(dir: &Path, files: &[&str]) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for f in files {
        let path = dir.join(f);
        if let Some(parent) = path.parent() {
            assert_eq!(mode(parent), 0o700, "{}", parent.display());
        }
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dirs_and_secrets_are_the_owners_only_whatever_the_umask() {
    // SAFETY: umask(2) only changes this process's file creation mask; this test binary runs
    // this one test.
    unsafe { libc::umask(0) };
    let c = Cluster::builder().servers(1).agents(1).start().await;
    c.wait_for_agents_ready().await;
    let server = c.server_ids()[0];
    assert_private(
        c.server_data_dir(server),
        &[
            "server-token",
            "agent-token",
            "identity/node.key",
            "identity/node.pem",
            "identity/ca.pem",
            "identity/node.json",
            "raft/raft.redb",
            "raft/raft.wal",
        ],
    );
    let agent = c.agent_ids()[0];
    let agent_dir = c.agent_data_dir(agent);
    assert_private(
        agent_dir,
        &["identity/node.key", "identity/node.pem", "identity/node.json"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_expire_after_a_day_unless_told_otherwise() {
    let c = Cluster::builder().servers(1).start().await;
    let leader = c.wait_for_leader().await;
    let client = c.client(leader);
    let created = client
        .create_token(&tepui_api::TokenCreateRequest {
            role: "agent".into(),
            ttl: None,
            description: "no ttl given".into(),
        })
        .await
        .expect("a token");
    let day = 24 * 3600 * 1000;
    let now = tepui_common::now_ms();
    let tokens = client.tokens().await.expect("tokens");
    assert_eq!(tokens.len(), 3, "the two bootstrap tokens and this one: {tokens:?}");
    for t in &tokens {
        let expires = t
            .expires_at_ms
            .unwrap_or_else(|| panic!("token {} never expires", t.id));
        assert!(
            expires > now && expires <= now + day && expires >= t.created_at_ms + day,
            "token {} expires at {expires}, created at {}",
            t.id,
            t.created_at_ms
        );
    }
    let hour = client
        .create_token(&tepui_api::TokenCreateRequest {
            role: "server".into(),
            ttl: Some("1h".into()),
            description: String::new(),
        })
        .await
        .expect("a token with a ttl");
    assert_eq!(hour.view.expires_at_ms.unwrap() - hour.view.created_at_ms, 3600 * 1000);
    assert!(created.view.expires_at_ms.is_some());
}
