//! Exactly once across failover: a job due every 2 s on three servers, while the leader is
//! killed with SIGKILL three times (and brought back each time). Every due time from the
//! first run to the last gets exactly one run, none skipped and none doubled, as the run
//! history says and as the runs' tasks wrote into a file of the test's.
//!
//! Runs three servers on 127.0.51.1-3 and an agent on 127.0.51.4 (ports 35100-35119, bridge
//! `tpe2e-jobfo`); needs root.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{http_addr, need_root, spawn_agent, spawn_servers, tepui, wait_for, Sandbox};

const SERVERS: [&str; 3] = ["127.0.51.1", "127.0.51.2", "127.0.51.3"];
const AGENT_IP: &str = "127.0.51.4";
const START: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(60);
const KILLS: usize = 3;

/// `tepui` against whichever server answers, as JSON.
fn api(addrs: &[String], args: &[&str]) -> Result<Value, String> {
    let mut last = String::new();
    for a in addrs {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--addr", a]);
        match tepui(&full).try_json() {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn leader(addrs: &[String]) -> Result<String, String> {
    let status = api(addrs, &["status", "-o", "json"])?;
    status["leader"]["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no leader yet: {status}"))
}

/// Milliseconds of a Metronome timestamp (`2026-12-07T01:02:03.000+0000`).
fn millis(t: &Value) -> i64 {
    let text = t.as_str().unwrap_or_else(|| panic!("a time: {t}"));
    chrono_like_parse(text)
}

fn chrono_like_parse(text: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SS.mmm+0000, always UTC here.
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
fn every_due_run_happens_exactly_once_while_leaders_are_killed() {
    need_root();
    let sb = Sandbox::new("job-failover");
    let mut servers = spawn_servers(&sb, &SERVERS, &[], START);
    let out = sb.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Host tasks run as an unprivileged user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_arg = out.display().to_string();
    let _agent = spawn_agent(
        &sb,
        SERVERS[0],
        "a1",
        AGENT_IP,
        &[
            "--ports",
            "35100-35119",
            "--bridge",
            "tpe2e-jobfo",
            "--bridge-subnet",
            "10.214.51.0/24",
            "--allow-host-volume",
            &out_arg,
        ],
        START,
    );
    let addrs: Vec<String> = SERVERS.iter().map(|ip| http_addr(ip)).collect();
    let log = out.join("runs");
    let job = json!({"id": "tick", "run": {
            "cmd": format!("echo $TEPUI_TASK_ID >> {}", log.display()),
            "cpus": 0.1, "mem": 32,
            "volumes": [{"containerPath": out.display().to_string(), "hostPath": out.display().to_string(), "mode": "RW"}]},
        "schedules": [{"id": "often", "cron": "R//PT2S", "startingDeadlineSeconds": 60}]});
    let file = sb.join("tick.json");
    std::fs::write(&file, job.to_string()).unwrap();
    api(&addrs, &["job", "add", &file.display().to_string(), "-o", "json"]).unwrap();
    let successes = |addrs: &[String]| -> Result<u64, String> {
        let h = api(addrs, &["job", "history", "tick", "-o", "json"])?;
        Ok(h["successCount"].as_u64().unwrap_or(0))
    };
    wait_for("the first runs", CONVERGE, || match successes(&addrs)? {
        n if n >= 2 => Ok(()),
        n => Err(format!("{n} runs")),
    });

    for round in 1..=KILLS {
        let name = wait_for("a leader", CONVERGE, || leader(&addrs));
        let index = servers
            .iter()
            .position(|d| d.name() == name)
            .expect("the leader's daemon");
        let before = successes(&addrs).unwrap();
        servers[index].kill();
        eprintln!("round {round}: killed the leader {name} after {before} runs");
        let survivors: Vec<String> = addrs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, a)| a.clone())
            .collect();
        // Runs go on under the new leader.
        wait_for("runs under the new leader", CONVERGE, || match successes(&survivors)? {
            n if n >= before + 2 => Ok(()),
            n => Err(format!("{n} runs")),
        });
        // The killed server comes back on its data dir (without --bootstrap or a token).
        let dir = sb.join(&name).display().to_string();
        servers[index].restart(&["server", "--data-dir", &dir, "--bind", SERVERS[index], "--name", &name]);
        servers[index].wait_ready(START);
        wait_for("the restarted server to follow", CONVERGE, || {
            leader(&[addrs[index].clone()])
        });
    }

    // Stop the schedule and let the last runs end.
    let disabled = tepui(&["job", "disable", "tick", "--addr", &addrs[0]]);
    assert!(disabled.success(), "{disabled}");
    wait_for("no run of tick left", CONVERGE, || {
        let j = api(&addrs, &["job", "show", "tick", "-o", "json"])?;
        if j["disabled"] != true {
            return Err(format!("not disabled yet: {j}"));
        }
        let t = reqwest_runs(&addrs[0])?;
        if t == 0 {
            Ok(())
        } else {
            Err(format!("{t} runs active"))
        }
    });

    let history = api(&addrs, &["job", "history", "tick", "-o", "json"]).unwrap();
    let failed = history["failedFinishedRuns"].as_array().unwrap();
    assert!(failed.is_empty(), "no run failed: {failed:?}");
    let runs = history["successfulFinishedRuns"].as_array().unwrap();
    assert!(runs.len() >= 2 * KILLS + 2, "{history}");
    // Every due time once, every 2 s, none missing between the first and the last.
    let mut due: Vec<i64> = runs.iter().map(|r| millis(&r["dueAt"])).collect();
    due.sort_unstable();
    let distinct: BTreeSet<i64> = due.iter().copied().collect();
    assert_eq!(distinct.len(), due.len(), "a due time ran twice: {due:?}");
    for pair in due.windows(2) {
        assert_eq!(pair[1] - pair[0], 2000, "a due time was skipped: {due:?}");
    }
    // What the tasks wrote: one line per run, each run's first and only attempt.
    let written = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let run_ids: BTreeSet<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(lines.len(), runs.len(), "{written}");
    for line in &lines {
        let parts: Vec<&str> = line.rsplitn(3, '.').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], "1", "one attempt per run: {line}");
        assert!(run_ids.contains(parts[1]), "{line} is a run of the history");
    }
    let written_runs: BTreeSet<&str> = lines.iter().map(|l| l.rsplitn(3, '.').nth(1).unwrap()).collect();
    assert_eq!(written_runs.len(), lines.len(), "a run's task ran twice: {written}");
    eprintln!("{} due runs, each once, across {KILLS} leader kills", runs.len());
}

/// The number of active runs of `tick`, through the Metronome API.
fn reqwest_runs(addr: &str) -> Result<usize, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = tepui_e2e::http_client()
            .build()
            .map_err(|e| e.to_string())?
            .get(format!("http://{addr}/v1/jobs/tick/runs"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        v.as_array().map(Vec::len).ok_or_else(|| v.to_string())
    })
}
