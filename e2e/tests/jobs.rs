//! Batch jobs through the CLI, as a user meets them so far: `tepui job add` takes Metronome's
//! job JSON, `job ls` shows the schedule, `job show -o json` gives it back with Metronome's
//! defaults, a bad job is one line naming its fields, `job run --wait` runs it in a real
//! container to its end, `job history` shows the run, a run past its active deadline is
//! killed, a chain of dependent jobs runs in order while a failing parent holds its child,
//! and `job rm` removes them.
//!
//! Runs `tepui dev` on 127.0.48.1 with ports 34800-34819 and the bridge `tpe2e-jobs`; needs
//! root.

use std::time::Duration;

use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, Sandbox};

const IP: &str = "127.0.48.1";
const START: Duration = Duration::from_secs(30);

/// Milliseconds of a Metronome timestamp (`2026-12-07T01:02:03.000+0000`, always UTC here).
fn millis(t: &serde_json::Value) -> i64 {
    let text = t.as_str().unwrap_or_else(|| panic!("a time: {t}"));
    let n = |a: usize, b: usize| text[a..b].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (h, mi, s, ms) = (n(11, 13), n(14, 16), n(17, 19), n(20, 23));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms
}

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
    // Its next run: 02:00 in Berlin, 01:00 UTC in winter, 00:00 in summer.
    assert!(
        table.contains("NEXT RUN") && (table.contains("T01:00:00.000+0000") || table.contains("T00:00:00.000+0000")),
        "{table}"
    );
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
    // Its history keeps how its task ended.
    let h: serde_json::Value = tepui(&["job", "history", "failing", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(h["failedFinishedRuns"][0]["exitCode"], 3, "{h}");
    let table = tepui(&["job", "history", "failing", "--addr", &addr]).ok().stdout;
    assert!(table.contains("EXIT") && table.contains("FAILED"), "{table}");

    // Past its active deadline, a run's task is killed and the run fails.
    std::fs::write(
        &file,
        r#"{"id": "slow", "run": {"cmd": "sleep 300", "cpus": 0.1, "mem": 32, "restart": {"policy": "NEVER", "activeDeadlineSeconds": 1}}}"#,
    )
    .unwrap();
    tepui(&["job", "add", &file.display().to_string(), "--addr", &addr]).ok();
    let slow = tepui(&["job", "run", "slow", "--wait", "--addr", &addr]);
    assert!(!slow.success() && slow.stdout.contains(": FAILED"), "{slow}");
    let killed: Vec<serde_json::Value> = tepui(&["task", "ls", "-o", "json", "--addr", &addr]).ok().json();
    let task = killed
        .iter()
        .find(|t| t["id"].as_str().is_some_and(|id| id.starts_with("slow.")))
        .expect("the run's task is listed");
    tepui_e2e::wait_for("the slow run's task to end", START, || {
        let t: serde_json::Value = tepui(&[
            "task",
            "show",
            task["id"].as_str().unwrap(),
            "-o",
            "json",
            "--addr",
            &addr,
        ])
        .try_json()?;
        if t["state"] == "TASK_KILLED" {
            Ok(())
        } else {
            Err(t.to_string())
        }
    });

    // A chain: extract, then transform, then load; each starts when its parent succeeded.
    let add = |json: &str| {
        std::fs::write(&file, json).unwrap();
        tepui(&["job", "add", &file.display().to_string(), "--addr", &addr]).ok();
    };
    add(r#"{"id": "extract", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}"#);
    add(r#"{"id": "transform", "dependencies": [{"id": "extract"}], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}"#);
    add(r#"{"id": "load", "dependencies": [{"id": "transform"}], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}"#);
    let table = tepui(&["job", "ls", "--addr", &addr]).ok().stdout;
    assert!(
        table.contains("after extract") && table.contains("after transform"),
        "{table}"
    );
    tepui(&["job", "run", "extract", "--wait", "--addr", &addr]).ok();
    let succeeded = |job: &str| -> Result<u64, String> {
        let h: serde_json::Value = tepui(&["job", "history", job, "-o", "json", "--addr", &addr]).try_json()?;
        Ok(h["successCount"].as_u64().unwrap_or(0))
    };
    tepui_e2e::wait_for("the chain to reach load", START, || match succeeded("load")? {
        1 => Ok(()),
        n => Err(format!("load succeeded {n} times")),
    });
    assert_eq!(succeeded("transform").unwrap(), 1);
    // A failing parent holds its child.
    add(r#"{"id": "broken", "run": {"cmd": "exit 1", "cpus": 0.1, "mem": 32}}"#);
    add(
        r#"{"id": "after-broken", "dependencies": [{"id": "broken"}], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}"#,
    );
    let broken = tepui(&["job", "run", "broken", "--wait", "-o", "json", "--addr", &addr]);
    assert!(!broken.success(), "{broken}");
    let broken: serde_json::Value = broken.json();
    assert_eq!(broken["status"], "FAILED", "{broken}");
    // The failure is recorded; a pass of the jobs driver that began after it has decided
    // what it calls for: the child still waits.
    let failed_at = millis(&broken["completedAt"]);
    tepui_e2e::wait_for("a jobs pass after the parent failed", START, || {
        let status: serde_json::Value = tepui(&["status", "-o", "json", "--addr", &addr]).try_json()?;
        let jobs = status["drivers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["name"] == "jobs")
            .cloned()
            .ok_or_else(|| format!("no jobs driver: {status}"))?;
        match jobs["last_started_at_ms"].as_i64() {
            Some(t) if t > failed_at => Ok(()),
            t => Err(format!(
                "its last pass started at {t:?}, the parent failed at {failed_at}"
            )),
        }
    });
    let child: serde_json::Value = tepui(&["job", "history", "after-broken", "-o", "json", "--addr", &addr])
        .ok()
        .json();
    assert_eq!(
        (child["successCount"].as_u64(), child["failureCount"].as_u64()),
        (Some(0), Some(0)),
        "{child}"
    );
    let nothing = tepui(&["job", "stop", "after-broken", "--addr", &addr]);
    assert!(
        !nothing.success() && nothing.stderr.contains("has no active run"),
        "the child never started: {nothing}"
    );

    for id in [
        "load",
        "transform",
        "extract",
        "after-broken",
        "broken",
        "reports.nightly",
        "failing",
        "slow",
    ] {
        tepui(&["job", "rm", id, "--addr", &addr]).ok();
    }
    let listed: serde_json::Value = tepui(&["job", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(listed, serde_json::json!([]));
    let gone = tepui(&["job", "show", "reports.nightly", "--addr", &addr]);
    assert!(!gone.success() && gone.stderr.contains("Job not found"), "{gone}");
}
