//! Secrets as a user meets them: `tepui secret put` takes a value from stdin, `secret ls`
//! shows paths and versions only, a task gets the secret as an environment variable and as a
//! read-only file, and the value appears in no API answer, no log line, no snapshot and no
//! file of the data dir on disk (the task's copy lives on a tmpfs that goes when it ends).
//! Marathon apps take them in Marathon's own fields.
//!
//! Runs on 127.0.47.1 with ports 34700-34719 and the bridge `tpe2e-sec`; needs root.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tepui_e2e::marathon::Marathon;
use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, tepui_bin, wait_for, Sandbox, API_TOKEN};

const IP: &str = "127.0.47.1";
const START: Duration = Duration::from_secs(30);

/// `tepui secret put PATH` with `value` on stdin.
fn put_secret(addr: &str, path: &str, value: &str) -> String {
    let mut child = Command::new(tepui_bin())
        .args(["secret", "put", path, "--addr", addr])
        .env("TEPUI_API_TOKEN", API_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every regular file under `dir` on the same filesystem (a tmpfs mounted inside is memory,
/// not disk) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                todo.push(e.path());
            } else if m.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(e.path().display().to_string());
                    }
                }
            }
        }
    }
    found
}

/// Waits until task `id` has ended (its shim recorded the end and is done with its sandbox).
fn wait_ended(addr: &str, id: &str) {
    wait_for(&format!("task {id} to end"), START, || {
        let t: serde_json::Value = tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()?;
        match t["state"].as_str() {
            Some("TASK_KILLED" | "TASK_FINISHED" | "TASK_FAILED") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn secrets_reach_tasks_and_nothing_else() {
    need_root();
    let sb = Sandbox::new("secrets");
    let (dev, data) = spawn_dev(&sb, "sec1", IP, "34700-34719", ("tpe2e-sec", "10.214.47.0/24"), START);
    let data_arg = data.display().to_string();
    let addr = http_addr(IP);

    let key = data.join("identity/secrets.key");
    let mode = std::fs::metadata(&key)
        .expect("the server made a secrets key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let value = format!("pw-{}-never-shown", std::process::id());
    let said = put_secret(&addr, "/db/password", &value);
    assert!(said.contains("secret db/password written"), "{said}");
    let listed = tepui(&["secret", "ls", "-o", "json", "--addr", &addr]).ok().stdout;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["path"], "db/password", "{listed}");
    let table = tepui(&["secret", "ls", "--addr", &addr]).ok().stdout;
    assert!(table.contains("PATH") && table.contains("db/password"), "{table}");

    // A task that names a secret nobody wrote: refused, with the field at fault.
    let refused = tepui(&[
        "task",
        "run",
        "--host",
        "--secret",
        "X=db/nope",
        "--addr",
        &addr,
        "--",
        "true",
    ]);
    assert!(!refused.success());
    assert!(refused.stderr.contains("no secret \"db/nope\""), "{refused}");

    // The task gets it both ways and shows their hashes (its command line never holds the
    // value: that is in the API).
    let script = "printf %s \"$DB_PASSWORD\" | sha256sum; sha256sum < /tmp/db-password; \
                  test -w /tmp/db-password || echo read-only; sleep 300";
    let task: serde_json::Value = tepui(&[
        "task",
        "run",
        "--host",
        "-o",
        "json",
        "--secret",
        "DB_PASSWORD=/db/password",
        "--secret-file",
        "/tmp/db-password=db/password",
        "--addr",
        &addr,
        "--",
        "sh",
        "-c",
        script,
    ])
    .ok()
    .json();
    let id = task["id"].as_str().unwrap().to_string();
    let mut hasher = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hasher.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    let expected = String::from_utf8(hasher.wait_with_output().unwrap().stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap().to_string();
    wait_for("the task to show its secrets' hashes", START, || {
        let logs = tepui(&["task", "logs", &id, "--addr", &addr]).stdout;
        if logs.matches(expected.as_str()).count() == 2 && logs.contains("read-only") {
            Ok(())
        } else {
            Err(format!("logs so far: {logs:?}"))
        }
    });

    // Nowhere else: API answers, the daemon's logs, the audit log, a snapshot, the data dir.
    let answers = [
        tepui(&["task", "show", &id, "-o", "json", "--addr", &addr]).ok().stdout,
        tepui(&["task", "ls", "-o", "json", "--addr", &addr]).ok().stdout,
        tepui(&["secret", "ls", "-o", "json", "--addr", &addr]).ok().stdout,
    ];
    for a in &answers {
        assert!(a.contains("db/password"), "the reference shows: {a}");
        assert!(!a.contains(&value), "an API answer holds the value: {a}");
    }
    let snapshot = sb.join("snap.bin");
    tepui(&[
        "operator",
        "snapshot",
        "save",
        &snapshot.display().to_string(),
        "--addr",
        &addr,
    ])
    .ok();
    let bytes = std::fs::read(&snapshot).unwrap();
    assert!(
        !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
        "the snapshot holds the value"
    );
    assert!(
        String::from_utf8_lossy(&bytes).contains("sealed1:"),
        "the snapshot holds the sealed secret"
    );
    assert!(
        !dev.stdout().contains(&value) && !dev.stderr().contains(&value),
        "a log line holds the value"
    );
    let on_disk = files_holding(&data, value.as_bytes());
    assert!(on_disk.is_empty(), "files of the data dir hold the value: {on_disk:?}");

    // Killed: its tmpfs goes with it.
    tepui(&["task", "kill", &id, "--addr", &addr]).ok();
    wait_ended(&addr, &id);
    wait_for("the task's secrets to be unmounted", START, || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let held: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&data_arg) && l.contains(" tmpfs "))
            .collect();
        if held.is_empty() {
            Ok(())
        } else {
            Err(format!("{held:?}"))
        }
    });

    // Marathon's form, field for field: env {"secret": NAME}, secrets {NAME: {source}}, and a
    // file-based secret as a volume (a relative containerPath is in the sandbox).
    let m = Marathon::new(&addr);
    let app = json!({
        "id": "/vault-reader",
        "cmd": "printf %s \"$DB_PASSWORD\" | sha256sum; sha256sum < /mnt/sandbox/pw.txt; sleep 300",
        "cpus": 0.01,
        "mem": 16,
        "env": {"DB_PASSWORD": {"secret": "pw"}, "PLAIN": "x"},
        "secrets": {"pw": {"source": "/db/password"}},
        "container": {"type": "MESOS", "volumes": [{"containerPath": "pw.txt", "secret": "pw"}]}
    });
    m.call(Method::POST, "/v2/apps", Some(&app))
        .expect(201, "an app with secrets");
    let shown = m.wait_settled("/vault-reader", 1, None, START);
    assert_eq!(shown["env"]["DB_PASSWORD"], json!({"secret": "pw"}), "{shown}");
    assert_eq!(shown["secrets"]["pw"]["source"], "/db/password", "{shown}");
    assert_eq!(shown["container"]["volumes"][0]["secret"], "pw", "{shown}");
    assert!(!shown.to_string().contains(&value), "the app's answer holds the value");
    let instance = shown["tasks"][0]["id"].as_str().unwrap().to_string();
    wait_for("the app's task to show its secrets' hashes", START, || {
        let logs = tepui(&["task", "logs", &instance, "--addr", &addr]).stdout;
        if logs.matches(expected.as_str()).count() == 2 {
            Ok(())
        } else {
            Err(format!("logs so far: {logs:?}"))
        }
    });
    let on_disk = files_holding(&data, value.as_bytes());
    assert!(on_disk.is_empty(), "files of the data dir hold the value: {on_disk:?}");
    // A secret nobody wrote: 422 at the field.
    let mut missing = app.clone();
    missing["id"] = json!("/no-such-secret");
    missing["secrets"]["pw"]["source"] = json!("/db/nothing");
    let refused = m.call(Method::POST, "/v2/apps", Some(&missing));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("/secrets/pw/source"), "{}", refused.text);
    m.call(Method::DELETE, "/v2/apps/vault-reader", None)
        .expect(200, "the app goes");
    // Ended, not only stopping: its shim has written its last, before the sandbox goes.
    wait_ended(&addr, &instance);

    // Removed: gone from the list, and a task naming it is refused.
    tepui(&["secret", "rm", "db/password", "--addr", &addr]).ok();
    let listed = tepui(&["secret", "ls", "-o", "json", "--addr", &addr]).ok().stdout;
    assert_eq!(listed.trim(), "[]");
    let refused = tepui(&[
        "task",
        "run",
        "--host",
        "--secret",
        "X=db/password",
        "--addr",
        &addr,
        "--",
        "true",
    ]);
    assert!(
        !refused.success() && refused.stderr.contains("no secret \"db/password\""),
        "{refused}"
    );
}
