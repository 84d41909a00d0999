//! Batch jobs through the CLI, as a user meets them so far: `tepui job add` takes Metronome's
//! job JSON, `job ls` shows the schedule, `job show -o json` gives it back with Metronome's
//! defaults, a bad job is one line naming its fields, `job run --wait` runs it in a real
//! container to its end, `job history` shows the run, and `job rm` removes it.
//!
//! Runs `tepui dev` on 127.0.48.1 with ports 34800-34819 and the bridge `tpe2e-jobs`; needs
//! root.

use std::time::Duration;

use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, Sandbox};

const IP: &str = "127.0.48.1";
const START: Duration = Duration::from_secs(30);

#[test]
fn jobs_are_defined_listed_and_removed_with_the_cli() {
    need_root();
    let sb = Sandbox::new("jobs");
    let (_dev, _data) = spawn_dev(&sb, "jobs1", IP, "34800-34819", ("tpe2e-jobs", "10.214.48.0/24"), START);
    let addr = http_addr(IP);
    let file = sb.join("report.json");
    std::fs::write(
        &file,
        r#"{"id": "reports.nightly", "run": {"cmd": "echo report", "cpus": 0.1, "mem": 32},
            "schedules": [{"id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}]}"#,
    )
    .unwrap();
    let said = tepui(&["job", "add", &file.display().to_string(), "--addr", &addr])
        .ok()
        .stdout;
    assert!(said.contains("job reports.nightly created"), "{said}");

    let table = tepui(&["job", "ls", "--addr", &addr]).ok().stdout;
    assert!(table.contains("ID") && table.contains("reports.nightly"), "{table}");
    assert!(table.contains("0 2 * * * Europe/Berlin"), "{table}");
    let shown: serde_json::Value = tepui(&["job", "show", "reports.nightly", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(shown["run"]["maxLaunchDelay"], 3600, "{shown}");
    assert_eq!(shown["schedules"][0]["startingDeadlineSeconds"], 900, "{shown}");

    // A bad job: one line, naming the fields and what to fix; nothing stored.
    std::fs::write(&file, r#"{"id": "Bad_Id", "run": {"cmd": "x", "mem": 8}}"#).unwrap();
    let bad = tepui(&["job", "add", &file.display().to_string(), "--addr", &addr]);
    assert!(!bad.success());
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{bad}");
    assert!(
        bad.stderr.contains("/id") && bad.stderr.contains("/run/mem: got 8, expected 32 or more"),
        "{bad}"
    );
    let duplicate = tepui(&["job", "add", "-", "--addr", &addr]);
    assert!(!duplicate.success(), "stdin is empty: not JSON");

    // Run now, to its end, in a real container on the host's filesystem.
    let ran = tepui(&["job", "run", "reports.nightly", "--wait", "--addr", &addr]).ok();
    assert!(ran.stdout.contains(": SUCCESS"), "{ran}");
    assert!(
        ran.stderr.contains("STARTING") || ran.stderr.contains("ACTIVE") || ran.stderr.contains("INITIAL"),
        "{ran}"
    );
    let history = tepui(&["job", "history", "reports.nightly", "--addr", &addr])
        .ok()
        .stdout;
    assert!(
        history.contains("1 succeeded, 0 failed") && history.contains("SUCCESS"),
        "{history}"
    );
    // A run that fails says so, with exit 1.
    std::fs::write(
        &file,
        r#"{"id": "failing", "run": {"cmd": "exit 3", "cpus": 0.1, "mem": 32}}"#,
    )
    .unwrap();
    tepui(&["job", "add", &file.display().to_string(), "--addr", &addr]).ok();
    let failed = tepui(&["job", "run", "failing", "--wait", "--addr", &addr]);
    assert!(!failed.success() && failed.stdout.contains(": FAILED"), "{failed}");

    tepui(&["job", "rm", "reports.nightly", "--addr", &addr]).ok();
    tepui(&["job", "rm", "failing", "--addr", &addr]).ok();
    let listed: serde_json::Value = tepui(&["job", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(listed, serde_json::json!([]));
    let gone = tepui(&["job", "show", "reports.nightly", "--addr", &addr]);
    assert!(!gone.success() && gone.stderr.contains("Job not found"), "{gone}");
}
