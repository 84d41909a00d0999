//! Backup and restore across clusters on 127.0.12.x: a snapshot of cluster A restored into
//! cluster B carries A's variables and tokens; a damaged file is refused and B keeps working.

use std::time::Duration;

use tepui_api::{NodeView, RestoreResult, StatusView, TokenCreated, TokenView, VarView};
use tepui_e2e::{http_addr, tepui, Daemon, Sandbox};

const A_IP: &str = "127.0.12.1";
const B_IP: &str = "127.0.12.2";

fn bootstrap(sb: &Sandbox, name: &str, ip: &str) -> Daemon {
    let dir = sb.join(name);
    let mut d = sb.spawn(
        name,
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &dir.display().to_string(),
            "--bind",
            ip,
            "--name",
            name,
        ],
    );
    d.wait_ready(Duration::from_secs(20));
    d
}

fn var(addr: &str, key: &str) -> VarView {
    tepui(&["var", "get", key, "-o", "json", "--addr", addr]).ok().json()
}

fn tokens(addr: &str) -> Vec<TokenView> {
    tepui(&["token", "ls", "-o", "json", "--addr", addr]).ok().json()
}

#[test]
fn snapshot_moves_state_between_clusters_and_refuses_damage() {
    let sb = Sandbox::new("snapshot");
    let (a, b) = (http_addr(A_IP), http_addr(B_IP));
    let _a = bootstrap(&sb, "cluster-a", A_IP);
    let _b = bootstrap(&sb, "cluster-b", B_IP);

    let vars = [
        ("db/url", "postgres://db:5432"),
        ("feature", "on"),
        ("motd", "hello world"),
    ];
    for (k, v) in vars {
        tepui(&["var", "put", k, v, "--addr", &a]).ok();
    }
    let created: TokenCreated = tepui(&[
        "token",
        "create",
        "--role",
        "agent",
        "--description",
        "made in A",
        "-o",
        "json",
        "--addr",
        &a,
    ])
    .ok()
    .json();
    let a_tokens = tokens(&a);
    assert!(a_tokens.iter().any(|t| t.id == created.view.id));

    let file = sb.join("a.snap");
    let saved = tepui(&[
        "operator",
        "snapshot",
        "save",
        &file.display().to_string(),
        "--addr",
        &a,
    ])
    .ok();
    assert!(saved.stdout.starts_with("saved "), "{saved}");
    let bytes = std::fs::read(&file).expect("the snapshot file exists");
    assert!(!bytes.is_empty());
    // It holds every secret of the cluster (the CA's key among them): its owner's only.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the snapshot file is {mode:o}");
    }

    let b_status: StatusView = tepui(&["status", "-o", "json", "--addr", &b]).ok().json();
    let a_status: StatusView = tepui(&["status", "-o", "json", "--addr", &a]).ok().json();
    assert_ne!(a_status.cluster_id, b_status.cluster_id);
    assert!(
        tepui(&["var", "get", "feature", "--addr", &b]).code != 0,
        "B starts empty"
    );

    let restored: RestoreResult = tepui(&[
        "operator",
        "snapshot",
        "restore",
        &file.display().to_string(),
        "-o",
        "json",
        "--addr",
        &b,
    ])
    .ok()
    .json();
    assert_eq!(restored.vars, vars.len());
    assert_eq!(restored.tokens, a_tokens.len());

    for (k, v) in vars {
        assert_eq!(var(&b, k).value, v, "{k} in B");
    }
    let plain = tepui(&["var", "get", "motd", "--addr", &b]).ok();
    assert_eq!(plain.stdout.trim(), "hello world");
    let b_tokens = tokens(&b);
    let t = b_tokens
        .iter()
        .find(|t| t.id == created.view.id)
        .unwrap_or_else(|| panic!("A's token in B: {b_tokens:?}"));
    assert_eq!(
        (t.role.as_str(), t.description.as_str(), t.revoked),
        ("agent", "made in A", false)
    );
    let mut ids: Vec<&str> = b_tokens.iter().map(|t| t.id.as_str()).collect();
    let mut a_ids: Vec<&str> = a_tokens.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    a_ids.sort();
    assert_eq!(ids, a_ids, "B holds exactly A's tokens");
    // B keeps its own identity and nodes: its running servers hold certificates of B's CA.
    let after: StatusView = tepui(&["status", "-o", "json", "--addr", &b]).ok().json();
    assert_eq!(after.cluster_id, b_status.cluster_id);
    let b_nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &b]).ok().json();
    let names: Vec<&str> = b_nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["cluster-b"]);

    // Flip one byte inside the state (in a value, so the file is still valid JSON).
    let at = bytes
        .windows(b"hello world".len())
        .position(|w| w == b"hello world")
        .expect("the value is in the file");
    let mut damaged = bytes.clone();
    damaged[at] = b'j';
    let bad_file = sb.join("damaged.snap");
    std::fs::write(&bad_file, &damaged).unwrap();
    let out = tepui(&[
        "operator",
        "snapshot",
        "restore",
        &bad_file.display().to_string(),
        "--addr",
        &b,
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "one line: {out}");
    assert!(out.stderr.starts_with("error: "), "{out}");
    assert!(out.stderr.contains("checksum"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");

    // A file that is not a snapshot at all is refused the same way.
    let junk = sb.join("junk.snap");
    std::fs::write(&junk, b"\x00\x01 not json").unwrap();
    let out = tepui(&[
        "operator",
        "snapshot",
        "restore",
        &junk.display().to_string(),
        "--addr",
        &b,
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "one line: {out}");
    assert!(out.stderr.contains("not a tepui snapshot"), "{out}");

    // B is untouched and still takes reads and writes.
    assert_eq!(var(&b, "motd").value, "hello world");
    tepui(&["var", "put", "after", "restore", "--addr", &b]).ok();
    assert_eq!(var(&b, "after").value, "restore");
    let health = tepui(&["status", "--addr", &b]).ok();
    assert!(health.stdout.contains("leader:"), "{health}");
}
