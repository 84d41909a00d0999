//! Scheduled backups on 127.0.92.x: three servers, each with `--snapshot-dir` of its own;
//! only the leader writes, every `--snapshot-interval`, keeping `--snapshot-retain` files,
//! each whole and private. After the leader dies the next one carries on in its own directory.
//! A new cluster restored from one of the files (`tepui operator snapshot restore`) has the
//! apps and jobs that were in it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tepui_api::{RestoreResult, StatusView};
use tepui_e2e::{http_addr, spawn_servers, tepui, wait_for, Daemon, Sandbox};

const IPS: [&str; 3] = ["127.0.92.1", "127.0.92.2", "127.0.92.3"];
const RESTORED_IP: &str = "127.0.92.4";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
const RETAIN: usize = 3;

fn backup_dir(sb: &Sandbox, server: usize) -> PathBuf {
    sb.join(format!("backups-s{}", server + 1))
}

/// The files of `dir`, sorted: backups sort oldest first, by the time in their names.
fn backups(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn index_of(name: &str) -> u64 {
    name.trim_end_matches(".snap")
        .rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no index in {name}"))
}

fn status(addr: &str) -> Result<StatusView, String> {
    tepui(&["status", "-o", "json", "--addr", addr]).try_json()
}

fn leader(addr: &str) -> Result<String, String> {
    status(addr)?.leader.map(|l| l.name).ok_or_else(|| "no leader".into())
}

#[test]
fn the_leader_keeps_backups_and_a_new_cluster_restores_one() {
    let sb = Sandbox::new("backups");
    let per_server: Vec<String> = (0..3).map(|i| backup_dir(&sb, i).display().to_string()).collect();
    // Each server its own directory: the flags are the same but for the path.
    let mut servers: Vec<Daemon> = Vec::new();
    {
        let first = spawn_servers(
            &sb,
            &IPS[..1],
            &[
                "--snapshot-dir",
                &per_server[0],
                "--snapshot-interval",
                "1s",
                "--snapshot-retain",
                "3",
            ],
            START,
        );
        servers.extend(first);
        let token = tepui_e2e::read_token(&sb.join("s1"), "server");
        for i in 1..3 {
            let name = format!("s{}", i + 1);
            let dir = sb.join(&name).display().to_string();
            let mut d = sb.spawn(
                &name,
                &[
                    "join",
                    &tepui_e2e::cluster_addr(IPS[0]),
                    "--token",
                    &token,
                    "--data-dir",
                    &dir,
                    "--bind",
                    IPS[i],
                    "--name",
                    &name,
                    "--snapshot-dir",
                    &per_server[i],
                    "--snapshot-interval",
                    "1s",
                    "--snapshot-retain",
                    "3",
                ],
            );
            d.wait_ready(START);
            servers.push(d);
        }
    }
    let s1 = http_addr(IPS[0]);

    // What the backups must carry: an app (no agent: it waits for one) and a job.
    tepui(&[
        "app",
        "run",
        "--name",
        "/backup/web",
        "--cmd",
        "exec sleep 1000",
        "--cpus",
        "0.1",
        "--mem",
        "16",
        "--addr",
        &s1,
    ])
    .ok();
    let job = sb.join("job.json");
    std::fs::write(
        &job,
        r#"{"id": "nightly", "run": {"cmd": "echo backup", "cpus": 0.1, "mem": 32}}"#,
    )
    .unwrap();
    tepui(&["job", "add", &job.display().to_string(), "--addr", &s1]).ok();

    let first_leader = wait_for("a leader", SETTLE, || leader(&s1));
    let first_term = status(&s1).unwrap().term;
    let li = ["s1", "s2", "s3"].iter().position(|n| *n == first_leader).unwrap();
    let dir = backup_dir(&sb, li);
    // A backup that holds both.
    let (file, saved) = wait_for("a backup with the app and the job", SETTLE, || {
        let names = backups(&dir);
        let newest = names.last().ok_or("no backup yet")?;
        let bytes = std::fs::read(dir.join(newest)).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{newest}: {e}"))?;
        let state = &v["state"];
        if state["apps"].get("/backup/web").is_some() && state["jobs"].get("nightly").is_some() {
            Ok((dir.join(newest), v))
        } else {
            Err(format!("{newest} lacks them yet"))
        }
    });
    assert_eq!(saved["format"], "tepui-snapshot/1");
    assert_eq!(
        saved["index"].as_u64(),
        Some(index_of(&file.file_name().unwrap().to_string_lossy()))
    );
    let first_seen = backups(&dir)[0].clone();

    // More backups come; only the newest three stay, the first one goes.
    let kept = wait_for("the oldest backups removed", SETTLE, || {
        let names = backups(&dir);
        if !names.contains(&first_seen) && names.len() == RETAIN {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    });
    assert!(
        kept.iter()
            .all(|n| n.starts_with("tepui-snapshot-") && n.ends_with(".snap")),
        "{kept:?}"
    );
    let indexes: Vec<u64> = kept.iter().map(|n| index_of(n)).collect();
    assert!(indexes.windows(2).all(|w| w[0] <= w[1]), "{kept:?}");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for n in &kept {
        let mode = std::fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{n}");
    }
    // The driver shows in the leader's status, without an error.
    let now = status(&s1).unwrap();
    let driver = now
        .drivers
        .iter()
        .find(|d| d.name == "backups")
        .expect("a backups driver");
    assert!(
        driver.leading && driver.activations >= 3 && driver.last_error.is_none(),
        "{driver:?}"
    );
    // Followers write none (unless an election came between, which changes the term).
    if now.term == first_term {
        for i in (0..3).filter(|i| *i != li) {
            assert!(backups(&backup_dir(&sb, i)).is_empty(), "s{} is a follower", i + 1);
        }
    } else {
        eprintln!("an election came between: the followers' directories were not checked");
    }

    // The leader dies: the next one writes into its own directory.
    servers[li].kill();
    let other = http_addr(IPS[(li + 1) % 3]);
    let next_leader = wait_for("a new leader", SETTLE, || match leader(&other) {
        Ok(l) if l != first_leader => Ok(l),
        Ok(l) => Err(format!("still {l}")),
        Err(e) => Err(e),
    });
    let ni = ["s1", "s2", "s3"].iter().position(|n| *n == next_leader).unwrap();
    wait_for("the new leader's backups", SETTLE, || {
        let names = backups(&backup_dir(&sb, ni));
        if names.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });

    // A new cluster restored from the backup has the app and the job.
    let restored_dir = sb.join("restored").display().to_string();
    let mut restored = sb.spawn(
        "restored",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &restored_dir,
            "--bind",
            RESTORED_IP,
            "--name",
            "restored",
        ],
    );
    restored.wait_ready(START);
    let r = http_addr(RESTORED_IP);
    assert!(
        !tepui(&["app", "show", "/backup/web", "--addr", &r]).success(),
        "empty at first"
    );
    let result: RestoreResult = tepui(&[
        "operator",
        "snapshot",
        "restore",
        &file.display().to_string(),
        "-o",
        "json",
        "--addr",
        &r,
    ])
    .ok()
    .json();
    assert!(result.restored_index > 0);
    let app: Value = tepui(&["app", "show", "/backup/web", "-o", "json", "--addr", &r])
        .ok()
        .json();
    assert_eq!(app["id"], "/backup/web");
    assert_eq!(app["cmd"], "exec sleep 1000");
    let shown: Value = tepui(&["job", "show", "nightly", "-o", "json", "--addr", &r])
        .ok()
        .json();
    assert_eq!(shown["id"], "nightly", "{shown}");
    let apps: Vec<Value> = tepui(&["app", "ls", "-o", "json", "--addr", &r]).ok().json();
    let ids: BTreeSet<&str> = apps.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["/backup/web"]));
}
