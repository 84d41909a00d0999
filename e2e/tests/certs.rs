//! Certificates over the life of a cluster, as separate processes on 127.0.43.1-5: node
//! certificates that last seconds renew themselves, and `tepui operator ca rotate` replaces the
//! CA, while a steady stream of writes through every server loses none; afterwards a join token
//! made before the rotation (it pins the old CA) still joins a node, and every data dir trusts
//! the new CA alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_api::{CaStatusView, NodeView, VarView};
use tepui_e2e::{http_addr, spawn_agent, spawn_servers, tepui, wait_for, Sandbox};

const SERVERS: [&str; 3] = ["127.0.43.1", "127.0.43.2", "127.0.43.3"];
const AGENT: &str = "127.0.43.4";
const LATE_AGENT: &str = "127.0.43.5";
const START: Duration = Duration::from_secs(20);
/// Short enough that every node renews a few times during the test.
const LIFETIME: &str = "12s";

fn node_pem(sb: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sb.join(name).join("identity/node.pem")).unwrap_or_default()
}

fn ca_status(addr: &str) -> Result<CaStatusView, String> {
    tepui(&["operator", "ca", "status", "-o", "json", "--addr", addr]).try_json()
}

/// The certificates in a PEM file.
fn certs_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches("BEGIN CERTIFICATE")
        .count()
}

#[test]
fn renewal_and_ca_rotation_under_load_lose_no_write() {
    let sb = Sandbox::new("certs");
    let mut servers = spawn_servers(&sb, &SERVERS, &["--cert-lifetime", LIFETIME], START);
    let mut agent = spawn_agent(&sb, SERVERS[0], "a1", AGENT, &["--heartbeat-secs", "0.5"], START);
    let names = ["s1", "s2", "s3", "a1"];
    // Joining servers got the cluster's secrets key (any of them may lead and open secrets);
    // the agent did not.
    let key = |n: &str| std::fs::read(sb.join(n).join("identity/secrets.key")).ok();
    assert_eq!(key("s1").map(|k| k.len()), Some(32));
    assert_eq!(key("s2"), key("s1"));
    assert_eq!(key("s3"), key("s1"));
    assert_eq!(key("a1"), None);
    let first: BTreeMap<&str, String> = names.iter().map(|n| (*n, node_pem(&sb, n))).collect();
    let old_agent_token = tepui_e2e::read_token(&sb.join("s1"), "agent");
    let before = ca_status(&http_addr(SERVERS[0])).expect("ca status");
    assert!(!before.rotating);

    // A steady stream of writes, one at a time, through each server in turn (followers forward
    // theirs to the leader over the cluster port).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, failures) = (stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut done = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let addr = http_addr(SERVERS[done % SERVERS.len()]);
                let key = format!("load/{done}");
                let out = tepui(&["var", "put", &key, &done.to_string(), "--addr", &addr]);
                if !out.success() {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{key} via {addr}: {}", out.stderr.trim()));
                }
                done += 1;
            }
            done
        })
    };

    // Every node renews by itself, well before its certificate ends.
    wait_for("every node to renew its certificate", Duration::from_secs(40), || {
        let stale: Vec<&str> = names
            .iter()
            .filter(|n| node_pem(&sb, n) == first[**n])
            .copied()
            .collect();
        if stale.is_empty() {
            Ok(())
        } else {
            Err(format!("not renewed yet: {stale:?}"))
        }
    });

    // The rotation, asked of a follower like any call.
    let rotated: CaStatusView = tepui(&[
        "operator",
        "ca",
        "rotate",
        "-o",
        "json",
        "--addr",
        &http_addr(SERVERS[1]),
    ])
    .ok()
    .json();
    assert_eq!(rotated.generation, before.generation + 1);
    assert_ne!(rotated.ca_sha256, before.ca_sha256);
    assert!(rotated.rotating, "the old CA stays trusted until every node renewed");
    assert_eq!(rotated.retiring_ca_sha256, vec![before.ca_sha256.clone()]);

    // Every node renews onto the new CA, and then the old one is dropped by itself.
    let done = wait_for("the rotation to finish", Duration::from_secs(40), || {
        let s = ca_status(&http_addr(SERVERS[2]))?;
        let behind: Vec<&str> = s
            .certificates
            .iter()
            .filter(|c| c.ca_sha256 != s.ca_sha256)
            .map(|c| c.name.as_str())
            .collect();
        if s.rotating || !behind.is_empty() {
            return Err(format!("rotating {}, behind: {behind:?}", s.rotating));
        }
        Ok(s)
    });
    assert_eq!(done.ca_sha256, rotated.ca_sha256);
    // Every node on disk trusts the new CA alone (agents hear of it on their stream).
    wait_for(
        "every data dir to trust the new CA alone",
        Duration::from_secs(20),
        || {
            for n in names {
                let ca = sb.join(n).join("identity/ca.pem");
                let pem = std::fs::read_to_string(&ca).map_err(|e| e.to_string())?;
                let sha = tepui_pki::ca_fingerprint(&pem).map_err(|e| e.to_string())?;
                if certs_in(&ca) != 1 || sha != done.ca_sha256 {
                    return Err(format!("{n} trusts {} CAs, the first {sha}", certs_in(&ca)));
                }
            }
            Ok(())
        },
    );

    // Renewals go on under the new CA while the writes run.
    let after_rotation: BTreeMap<&str, String> = names.iter().map(|n| (*n, node_pem(&sb, n))).collect();
    wait_for("a renewal under the new CA", Duration::from_secs(40), || {
        if names.iter().all(|n| node_pem(&sb, n) != after_rotation[*n]) {
            Ok(())
        } else {
            Err("not every node renewed again yet")
        }
    });

    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().expect("the writer ran to the end");
    let failed = failures.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} of {writes} writes failed: {failed:#?}",
        failed.len()
    );
    assert!(writes > 100, "only {writes} writes in the whole test");
    eprintln!("certs: {writes} writes, none failed");
    let stored: Vec<VarView> = tepui(&["var", "ls", "-o", "json", "--addr", &http_addr(SERVERS[0])])
        .ok()
        .json();
    let loaded = stored.iter().filter(|v| v.key.starts_with("load/")).count();
    assert_eq!(loaded, writes, "every acknowledged write is there");

    // A server and an agent restarted on their data dirs come back on the renewed certificate
    // and the new CA alone: a write through the server is forwarded over a new connection.
    let dir = |n: &str| sb.join(n).display().to_string();
    servers[2].restart(&[
        "server",
        "--data-dir",
        &dir("s3"),
        "--bind",
        SERVERS[2],
        "--name",
        "s3",
        "--cert-lifetime",
        LIFETIME,
    ]);
    servers[2].wait_ready(START);
    agent.restart(&[
        "agent",
        "--data-dir",
        &dir("a1"),
        "--bind",
        AGENT,
        "--name",
        "a1",
        "--heartbeat-secs",
        "0.5",
    ]);
    agent.wait_ready(START);
    assert!(
        agent.stdout().contains("agent registered with the leader"),
        "the restarted agent did not register: {}",
        agent.stdout()
    );
    wait_for("a write through the restarted server", Duration::from_secs(20), || {
        let out = tepui(&["var", "put", "after/restart", "1", "--addr", &http_addr(SERVERS[2])]);
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });

    // A token made before the rotation pins the old CA, and still joins a node.
    assert_eq!(old_agent_token.split('.').nth(2), Some(before.ca_sha256.as_str()));
    let mut late = spawn_agent(&sb, SERVERS[1], "a2", LATE_AGENT, &["--heartbeat-secs", "0.5"], START);
    wait_for("both agents ready", Duration::from_secs(20), || {
        let nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &http_addr(SERVERS[0])]).try_json()?;
        let ready = nodes
            .iter()
            .filter(|n| n.roles == "agent" && n.status == "ready")
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(format!("{nodes:?}"))
        }
    });
    let status = ca_status(&http_addr(SERVERS[0])).expect("ca status");
    let a2 = status
        .certificates
        .iter()
        .find(|c| c.name == "a2")
        .expect("a2 is listed");
    assert_eq!(
        a2.ca_sha256, status.ca_sha256,
        "the new node got a certificate of the new CA"
    );

    late.kill();
    agent.kill();
    for s in servers.iter_mut() {
        s.kill();
    }
}
