//! Exactly once across failover: a job due every 2 s on three servers, while the leader is
//! killed with SIGKILL three times (and brought back each time). Every due time from the
//! first run to the last gets exactly one run, none skipped and none doubled, as the run
//! history says and as the runs' tasks wrote into a file of the test's.
//!
//! And the dependency graph across failover (Chronos kept it in memory: a leader change
//! between two parents' runs stranded their child): two scheduled parents and a child of
//! both; the leader is killed after one parent succeeded and before the other ran. The
//! child runs exactly once, after both, and not again.
//!
//! Runs three servers on 127.0.51.1-3 and an agent on 127.0.51.4 (ports 35100-35119, bridge
//! `tpe2e-jobfo`), and for the graph three servers on 127.0.55.1-3 and an agent on 127.0.55.4
//! (ports 35500-35519, bridge `tpe2e-jobdag`); needs root.

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
    active_runs(addr, "tick")
}

const DAG_SERVERS: [&str; 3] = ["127.0.55.1", "127.0.55.2", "127.0.55.3"];
const DAG_AGENT_IP: &str = "127.0.55.4";

/// A job's (successes, failures), from its history.
fn counts(addrs: &[String], job: &str) -> Result<(u64, u64), String> {
    let h = api(addrs, &["job", "history", job, "-o", "json"])?;
    Ok((
        h["successCount"].as_u64().unwrap_or(0),
        h["failureCount"].as_u64().unwrap_or(0),
    ))
}

/// Waits until the leader's `jobs` driver has started a pass after `after_ms` (and finished
/// it: a driver's status is written when its pass ends): whatever that state called for was
/// decided.
fn wait_jobs_pass_after(addrs: &[String], after_ms: i64, what: &str) {
    wait_for(what, CONVERGE, || {
        for a in addrs {
            let Ok(status) = api(&[a.clone()], &["status", "-o", "json"]) else {
                continue;
            };
            let jobs = status["drivers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["name"] == "jobs" && d["leading"] == true);
            if let Some(started) = jobs.and_then(|d| d["last_started_at_ms"].as_i64()) {
                if started > after_ms {
                    return Ok(());
                }
                return Err(format!("its last pass started at {started}"));
            }
        }
        Err("no leading jobs driver answered".to_string())
    });
}

#[test]
fn a_leader_change_between_two_parents_neither_strands_their_child_nor_runs_it_twice() {
    need_root();
    let sb = Sandbox::new("job-failover-dag");
    let mut servers = spawn_servers(&sb, &DAG_SERVERS, &[], START);
    let out = sb.join("out");
    std::fs::create_dir_all(&out).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_arg = out.display().to_string();
    let _agent = spawn_agent(
        &sb,
        DAG_SERVERS[0],
        "a1",
        DAG_AGENT_IP,
        &[
            "--ports",
            "35500-35519",
            "--bridge",
            "tpe2e-jobdag",
            "--bridge-subnet",
            "10.214.55.0/24",
            "--allow-host-volume",
            &out_arg,
        ],
        START,
    );
    let addrs: Vec<String> = DAG_SERVERS.iter().map(|ip| http_addr(ip)).collect();
    let log = out.join("runs");
    let add = |id: &str, more: Value| {
        let mut job = json!({"id": id, "run": {
            "cmd": format!("echo {id} $TEPUI_TASK_ID >> {}", log.display()),
            "cpus": 0.1, "mem": 32,
            "volumes": [{"containerPath": out_arg, "hostPath": out_arg, "mode": "RW"}]}});
        for (k, v) in more.as_object().unwrap() {
            job[k] = v.clone();
        }
        let file = sb.join(format!("{id}.json"));
        std::fs::write(&file, job.to_string()).unwrap();
        api(&addrs, &["job", "add", &file.display().to_string(), "-o", "json"]).unwrap();
    };
    // Each parent runs once: the left one 2 s after it is defined, the right one 30 s after.
    let once_after = |secs: u32| json!({"schedules": [{"id": "once", "cron": format!("R1//PT{secs}S"), "startingDeadlineSeconds": 600}]});
    add("dag-left", once_after(2));
    add("dag-right", once_after(30));
    add(
        "dag-child",
        json!({"dependencies": [{"id": "dag-left"}, {"id": "dag-right"}]}),
    );

    wait_for("the left parent to succeed", CONVERGE, || {
        match counts(&addrs, "dag-left")? {
            (1, 0) => Ok(()),
            c => Err(format!("{c:?}")),
        }
    });
    // Between the parents' runs: the right one has not run, the child waits.
    assert_eq!(
        counts(&addrs, "dag-right").unwrap(),
        (0, 0),
        "killed too late: the right parent ran"
    );
    assert_eq!(active_runs(&addrs[0], "dag-right"), Ok(0));
    assert_eq!(active_runs(&addrs[0], "dag-child"), Ok(0));
    let name = wait_for("a leader", CONVERGE, || leader(&addrs));
    let index = servers
        .iter()
        .position(|d| d.name() == name)
        .expect("the leader's daemon");
    servers[index].kill();
    eprintln!("killed the leader {name} between the parents' runs");
    let survivors: Vec<String> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, a)| a.clone())
        .collect();

    // The new leader runs the right parent, then the child: once.
    wait_for("the right parent to succeed", CONVERGE, || {
        match counts(&survivors, "dag-right")? {
            (1, 0) => Ok(()),
            c => Err(format!("{c:?}")),
        }
    });
    let child = wait_for("the child to succeed", CONVERGE, || {
        let h = api(&survivors, &["job", "history", "dag-child", "-o", "json"])?;
        match (h["successCount"].as_u64(), h["failureCount"].as_u64()) {
            (Some(1), Some(0)) => Ok(h),
            c => Err(format!("{c:?}: {h}")),
        }
    });
    let child_run = &child["successfulFinishedRuns"][0];
    let right = api(&survivors, &["job", "history", "dag-right", "-o", "json"]).unwrap();
    let left = api(&survivors, &["job", "history", "dag-left", "-o", "json"]).unwrap();
    let finished = |h: &Value| millis(&h["successfulFinishedRuns"][0]["finishedAt"]);
    assert!(
        millis(&child_run["createdAt"]) >= finished(&right) && finished(&right) > finished(&left),
        "the child started after both parents: {left} {right} {child}"
    );
    // A pass of the leader after the child ended starts no second run.
    wait_jobs_pass_after(&survivors, finished(&child), "a jobs pass after the child's run");
    assert_eq!(counts(&survivors, "dag-child").unwrap(), (1, 0));
    assert_eq!(active_runs(&survivors[0], "dag-child"), Ok(0));

    // The killed server comes back; every server tells the same history.
    let dir = sb.join(&name).display().to_string();
    servers[index].restart(&[
        "server",
        "--data-dir",
        &dir,
        "--bind",
        DAG_SERVERS[index],
        "--name",
        &name,
    ]);
    servers[index].wait_ready(START);
    wait_for("the restarted server to follow", CONVERGE, || {
        leader(&[addrs[index].clone()])
    });
    for a in &addrs {
        assert_eq!(counts(&[a.clone()], "dag-child").unwrap(), (1, 0), "via {a}");
    }
    // What the tasks wrote: each parent once, then the child once.
    let written = std::fs::read_to_string(&log).unwrap();
    let jobs: Vec<&str> = written.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(jobs, vec!["dag-left", "dag-right", "dag-child"], "{written}");
    let child_task = written.lines().last().and_then(|l| l.split(' ').nth(1)).unwrap();
    assert_eq!(
        child_task,
        format!("dag-child.{}.1", child_run["id"].as_str().unwrap()),
        "{written}"
    );
}

/// The number of active runs of `job`, through the Metronome API.
fn active_runs(addr: &str, job: &str) -> Result<usize, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = tepui_e2e::http_client()
            .build()
            .map_err(|e| e.to_string())?
            .get(format!("http://{addr}/v1/jobs/{job}/runs"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        v.as_array().map(Vec::len).ok_or_else(|| v.to_string())
    })
}
