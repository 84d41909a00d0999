//! Certificates that last seconds renew themselves, and a CA rotation completes by itself,
//! while writes go on through every server: none fails, and every node ends up holding a
//! certificate of the new CA and trusting it alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tepui_api::VarPutRequest;
use tepui_harness::{wait_for, Cluster, RaftTimings};

const WAIT: Duration = Duration::from_secs(30);

fn node_pem(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("identity/node.pem")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_and_a_rotation_under_writes_lose_nothing() {
    // Production Raft timings: a busy machine must not make an election (which may fail a write
    // in flight) look like a lost write.
    let c = Cluster::builder()
        .servers(3)
        .agents(1)
        .raft(RaftTimings::default())
        .cert_lifetime(Duration::from_secs(4))
        .start()
        .await;
    c.wait_for_agents_ready().await;
    let mut dirs: Vec<std::path::PathBuf> = c
        .server_ids()
        .iter()
        .map(|s| c.server_data_dir(*s).to_path_buf())
        .collect();
    dirs.extend(c.agent_ids().iter().map(|a| c.agent_data_dir(*a).to_path_buf()));
    let first: Vec<String> = dirs.iter().map(|d| node_pem(d)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = c.server_ids().iter().map(|s| c.client(*s)).collect();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut done, mut failed) = (0usize, vec![]);
            while !stop.load(Ordering::SeqCst) {
                let client = &clients[done % clients.len()];
                let req = VarPutRequest {
                    value: done.to_string(),
                    cas: None,
                };
                if let Err(e) = client.put_var(&format!("load/{done}"), &req).await {
                    failed.push(format!("write {done}: {e}"));
                }
                done += 1;
            }
            (done, failed)
        })
    };

    wait_for("every node to renew", WAIT, async || {
        let stale = dirs.iter().zip(&first).filter(|(d, f)| node_pem(d) == **f).count();
        if stale == 0 {
            Ok(())
        } else {
            Err(format!("{stale} nodes have not renewed"))
        }
    })
    .await;

    let leader = c.wait_for_leader().await;
    let before = c.client(leader).ca_status().await.expect("ca status");
    let rotated = c.client(leader).ca_rotate().await.expect("rotation starts");
    assert!(rotated.rotating);
    assert_eq!(rotated.generation, before.generation + 1);
    let done = wait_for("the rotation to finish by itself", WAIT, async || {
        let s = c.client(leader).ca_status().await.map_err(|e| e.to_string())?;
        if s.rotating || s.certificates.iter().any(|n| n.ca_sha256 != s.ca_sha256) {
            Err(format!("{s:?}"))
        } else {
            Ok(s)
        }
    })
    .await;
    wait_for(
        "every node to trust the new CA alone and hold a certificate of it",
        WAIT,
        async || {
            for d in &dirs {
                let pem = std::fs::read_to_string(d.join("identity/ca.pem")).map_err(|e| e.to_string())?;
                if pem.matches("BEGIN CERTIFICATE").count() != 1
                    || tepui_pki::ca_fingerprint(&pem).ok() != Some(done.ca_sha256.clone())
                {
                    return Err(format!("{} trusts another set", d.display()));
                }
                if !tepui_pki::signed_by_any(&node_pem(d), &pem) {
                    return Err(format!("{} holds no certificate of the new CA yet", d.display()));
                }
            }
            Ok(())
        },
    )
    .await;
    // And renewals go on under the new CA.
    let rotated_pems: Vec<String> = dirs.iter().map(|d| node_pem(d)).collect();
    wait_for("every node to renew again", WAIT, async || {
        let stale = dirs
            .iter()
            .zip(&rotated_pems)
            .filter(|(d, f)| node_pem(d) == **f)
            .count();
        if stale == 0 {
            Ok(())
        } else {
            Err(format!("{stale} nodes have not renewed"))
        }
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let (writes, failed) = writer.await.expect("the writer ran");
    assert!(
        failed.is_empty(),
        "{} of {writes} writes failed: {failed:#?}",
        failed.len()
    );
    assert!(writes > 50, "only {writes} writes");
    let vars = c.client(leader).vars().await.expect("vars");
    assert_eq!(vars.iter().filter(|v| v.key.starts_with("load/")).count(), writes);
    c.wait_for_agents_ready().await;
}
