//! Batch jobs through the two APIs people used on Mesos, each driven by a client written here
//! from its documentation: Chronos (`/v1/scheduler`: an ISO 8601 job every 2 s that runs again
//! and again, dependent jobs, search, summary, run now, mark success, stats, the graph, errors
//! with a message, delete handing a parent's schedule to its child) and Metronome (`/v1/jobs`:
//! create, 409 on a duplicate, 422 with the field's path, embeds, schedules with `nextRunAt`,
//! REPLACE stopping the run before, retries on failure, delete refused while runs are active).
//! A job written through one API is read through the other.
//!
//! Runs `tepui dev` on 127.0.50.1 with ports 35000-35019 and the bridge `tpe2e-jobapi`; needs
//! root.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::{http_addr, need_root, spawn_dev, wait_for, Sandbox};

const IP: &str = "127.0.50.1";
const START: Duration = Duration::from_secs(30);
const RUNS: Duration = Duration::from_secs(60);

struct Reply {
    status: u16,
    body: Value,
    text: String,
}

/// Plain HTTP to one server, with the test's token.
struct Http {
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Http {
    fn new(addr: &str) -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            base: format!("http://{addr}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: tepui_e2e::http_client()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).unwrap());
        }
        self.rt
            .block_on(async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let text = resp.text().await?;
                Ok::<_, reqwest::Error>(Reply {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                    text,
                })
            })
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

/// A Chronos client, as its REST API documentation describes it.
struct Chronos<'a>(&'a Http);

impl Chronos<'_> {
    fn add_scheduled(&self, job: &Value) -> Reply {
        self.0.call(Method::POST, "/v1/scheduler/iso8601", Some(job))
    }
    fn add_dependent(&self, job: &Value) -> Reply {
        self.0.call(Method::POST, "/v1/scheduler/dependency", Some(job))
    }
    fn jobs(&self) -> Vec<Value> {
        let r = self.0.call(Method::GET, "/v1/scheduler/jobs", None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().cloned().unwrap()
    }
    fn job(&self, name: &str) -> Result<Value, String> {
        let r = self.0.call(Method::GET, &format!("/v1/scheduler/job/{name}"), None);
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("{} {}", r.status, r.text))
        }
    }
    fn search(&self, query: &str) -> Vec<Value> {
        let r = self
            .0
            .call(Method::GET, &format!("/v1/scheduler/jobs/search?{query}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().cloned().unwrap()
    }
    fn run_now(&self, name: &str) -> Reply {
        self.0.call(Method::PUT, &format!("/v1/scheduler/job/{name}"), None)
    }
    fn delete(&self, name: &str) -> Reply {
        self.0.call(Method::DELETE, &format!("/v1/scheduler/job/{name}"), None)
    }
    fn success_count(&self, name: &str) -> Result<u64, String> {
        Ok(self.job(name)?["successCount"].as_u64().unwrap_or(0))
    }
}

#[test]
fn chronos_and_metronome_clients_drive_the_same_jobs() {
    need_root();
    let sb = Sandbox::new("jobapis");
    let (_dev, _data) = spawn_dev(
        &sb,
        "jobapi1",
        IP,
        "35000-35019",
        ("tpe2e-jobapi", "10.214.50.0/24"),
        START,
    );
    let http = Http::new(&http_addr(IP));
    let chronos = Chronos(&http);

    // -- Chronos --------------------------------------------------------------------------
    assert_eq!(
        http.call(Method::GET, "/v1/scheduler/leader", None).body["leader"],
        http_addr(IP)
    );
    // A job every 2 s, from now (an empty start), runs again and again, with its history.
    let every = json!({"name": "every2s", "command": "echo tick", "schedule": "R//PT2S",
        "cpus": "0.1", "mem": 32, "owner": "ops@example.com", "async": false});
    let r = chronos.add_scheduled(&every);
    assert_eq!((r.status, r.text.as_str()), (204, ""), "{}", r.text);
    wait_for("every2s to have run three times", RUNS, || {
        match chronos.success_count("every2s")? {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} runs so far")),
        }
    });
    let job = chronos.job("every2s").unwrap();
    assert_eq!(job["owner"], "ops@example.com", "{job}");
    assert_eq!(
        (job["retries"].as_i64(), job["shell"].as_bool()),
        (Some(2), Some(true)),
        "{job}"
    );
    assert_eq!(
        (job["cpus"].as_f64(), job["disk"].as_f64()),
        (Some(0.1), Some(256.0)),
        "{job}"
    );
    assert!(
        job["schedule"].as_str().unwrap().starts_with("R/20"),
        "the start is fixed when stored: {job}"
    );
    assert!(job["lastSuccess"].as_str().unwrap().ends_with('Z'), "{job}");
    assert_eq!(job["errorCount"], 0, "{job}");
    let stat = http.call(Method::GET, "/v1/scheduler/job/stat/every2s", None).body;
    assert!(stat["histogram"]["count"].as_u64().unwrap() >= 3, "{stat}");
    assert_eq!(stat["taskStatHistory"][0]["jobName"], "every2s", "{stat}");
    // Each run once: three successes are three runs with three due times.
    let history: Value = http.call(Method::GET, "/v1/jobs/every2s?embed=history", None).body;
    let runs = history["history"]["successfulFinishedRuns"].as_array().unwrap().len();
    assert!(runs >= 3, "{history}");
    let disabled = json!({"name": "every2s", "command": "echo tick", "schedule": "R//PT2S", "disabled": true});
    assert_eq!(chronos.add_scheduled(&disabled).status, 204);
    assert_eq!(chronos.job("every2s").unwrap()["disabled"], true);

    // A parent on a far schedule and its dependent child; run the parent now and the child
    // follows.
    let parent = json!({"name": "Nightly_Export", "command": "echo export",
        "schedule": "R/2099-01-01T00:00:00Z/P1D", "scheduleTimeZone": "Europe/Berlin", "cpus": 0.1, "mem": 32});
    assert_eq!(chronos.add_scheduled(&parent).status, 204);
    let child =
        json!({"name": "report", "command": "echo report", "parents": ["Nightly_Export"], "cpus": 0.1, "mem": 32});
    assert_eq!(chronos.add_dependent(&child).status, 204);
    assert_eq!(chronos.run_now("Nightly_Export").status, 204);
    wait_for("the child to follow its parent", RUNS, || {
        match chronos.success_count("report")? {
            1 => Ok(()),
            n => Err(format!("report ran {n} times")),
        }
    });
    // Marked successful by hand: the child runs again.
    let marked = http.call(Method::PUT, "/v1/scheduler/job/success/Nightly_Export", None);
    assert_eq!(marked.status, 200);
    assert!(marked.text.contains("true"), "{}", marked.text);
    wait_for("the child to run after the parent was marked", RUNS, || {
        match chronos.success_count("report")? {
            2 => Ok(()),
            n => Err(format!("report ran {n} times")),
        }
    });
    assert_eq!(chronos.success_count("Nightly_Export").unwrap(), 2);
    // Listing, searching, the summary, the graph.
    let names: Vec<String> = chronos
        .jobs()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"report".to_string()) && names.contains(&"every2s".to_string()),
        "{names:?}"
    );
    let found = chronos.search("name=nightly");
    assert_eq!(found.len(), 1, "case does not matter: {found:?}");
    assert_eq!(chronos.search("command=REPORT")[0]["name"], "report");
    assert_eq!(chronos.search("name=nothing&any=tick")[0]["name"], "every2s");
    assert_eq!(chronos.search("any=e&limit=1&offset=1").len(), 1);
    let summary = http.call(Method::GET, "/v1/scheduler/jobs/summary", None).body;
    let report = summary["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "report")
        .unwrap()
        .clone();
    assert_eq!(
        (report["status"].as_str(), report["state"].as_str()),
        (Some("success"), Some("idle")),
        "{report}"
    );
    assert_eq!(report["parents"], json!(["Nightly_Export"]));
    let dot = http.call(Method::GET, "/v1/scheduler/graph/dot", None).text;
    assert!(
        dot.starts_with("digraph G {") && dot.contains("label = \"report\"") && dot.contains("->"),
        "{dot}"
    );
    let csv = http.call(Method::GET, "/v1/scheduler/graph/csv", None).text;
    assert!(
        csv.contains("link,Nightly_Export,report") && csv.contains("node,report,success,idle"),
        "{csv}"
    );
    let stats = http.call(Method::GET, "/v1/scheduler/stats/99thPercentile", None).body;
    assert!(
        stats.as_array().unwrap().iter().any(|s| s["jobNameLabel"] == "report"),
        "{stats}"
    );
    // Chronos 2's paths answer the same.
    assert_eq!(
        http.call(Method::GET, "/scheduler/job/report", None).body["name"],
        "report"
    );

    // Bad input: 400 with a message naming what to fix; nothing stored.
    let before = chronos.jobs().len();
    for (job, dependent, says) in [
        (
            json!({"name": "x", "command": "true", "schedule": "R/yesterday/PT1H"}),
            false,
            "Cannot parse schedule",
        ),
        (
            json!({"name": "x", "command": "true", "schedule": "R//PT1H", "scheduleTimeZone": "Mars/Base"}),
            false,
            "Mars/Base",
        ),
        (
            json!({"name": "bad name", "command": "true", "schedule": "R//PT1H"}),
            false,
            "name is invalid",
        ),
        (
            json!({"name": "x", "command": "true", "parents": ["missing"]}),
            true,
            "parent does not exist",
        ),
        // Nightly_Export under report would close a cycle.
        (
            json!({"name": "Nightly_Export", "command": "true", "parents": ["report"]}),
            true,
            "depend on itself",
        ),
    ] {
        let r = if dependent {
            chronos.add_dependent(&job)
        } else {
            chronos.add_scheduled(&job)
        };
        assert_eq!(r.status, 400, "{job}: {}", r.text);
        assert!(
            r.body["message"].as_str().unwrap_or("").contains(says),
            "{job}: {}",
            r.text
        );
    }
    assert_eq!(chronos.jobs().len(), before);
    assert_eq!(
        chronos.job("Nightly_Export").unwrap()["schedule"],
        "R/2099-01-01T00:00:00Z/P1D"
    );
    assert_eq!(chronos.job("nope").unwrap_err().split(' ').next(), Some("400"));

    // Both APIs, one set of jobs.
    let seen = http.call(Method::GET, "/v1/jobs/report", None);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["run"]["cmd"], "echo report");
    assert_eq!(seen.body["dependencies"], json!([{"id": "Nightly_Export"}]));

    // Deleting the parent hands its schedule to its child.
    assert_eq!(chronos.delete("Nightly_Export").status, 204);
    let orphan = chronos.job("report").unwrap();
    assert_eq!(orphan["schedule"], "R/2099-01-01T00:00:00Z/P1D", "{orphan}");
    assert_eq!(orphan["scheduleTimeZone"], "Europe/Berlin", "{orphan}");
    assert!(orphan.get("parents").is_none(), "{orphan}");

    // -- Metronome ------------------------------------------------------------------------
    let job = json!({"id": "nightly.cleanup", "description": "clean up", "labels": {"team": "ops"},
        "run": {"cmd": "echo clean", "cpus": 0.1, "mem": 32}});
    let r = http.call(Method::POST, "/v1/jobs", Some(&job));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["run"]["maxLaunchDelay"], 3600);
    let again = http.call(Method::POST, "/v1/jobs", Some(&job));
    assert_eq!(again.status, 409, "{}", again.text);
    let bad = http.call(
        Method::POST,
        "/v1/jobs",
        Some(&json!({"id": "Bad", "run": {"cmd": "x", "mem": 1}})),
    );
    assert_eq!(
        (bad.status, bad.body["message"].as_str()),
        (422, Some("Object is not valid")),
        "{}",
        bad.text
    );
    let paths: Vec<&str> = bad.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/id") && paths.contains(&"/run/mem"), "{paths:?}");
    // Seen through Chronos.
    let through_chronos = chronos.job("nightly.cleanup").unwrap();
    assert_eq!(
        (through_chronos["command"].as_str(), through_chronos["retries"].as_i64()),
        (Some("echo clean"), Some(0))
    );
    // A schedule, with its next run.
    let sched = json!({"id": "daily", "cron": "30 3 * * *", "timezone": "America/New_York"});
    let r = http.call(Method::POST, "/v1/jobs/nightly.cleanup/schedules", Some(&sched));
    assert_eq!(r.status, 201, "{}", r.text);
    let listed = http
        .call(Method::GET, "/v1/jobs?embed=schedules&embed=historySummary", None)
        .body;
    let cleanup = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "nightly.cleanup")
        .unwrap();
    let next = cleanup["schedules"][0]["nextRunAt"].as_str().unwrap();
    assert!(
        next.contains("T07:30:00.000+0000") || next.contains("T08:30:00.000+0000"),
        "03:30 in New York: {next}"
    );
    assert_eq!(cleanup["historySummary"]["successCount"], 0);

    // Retries on failure: two more attempts, then the run fails.
    let flaky = json!({"id": "flaky", "run": {"cmd": "exit 3", "cpus": 0.1, "mem": 32,
        "restart": {"policy": "ON_FAILURE", "retries": 2}}});
    assert_eq!(http.call(Method::POST, "/v1/jobs", Some(&flaky)).status, 201);
    let run = http.call(Method::POST, "/v1/jobs/flaky/runs", None);
    assert_eq!(
        (run.status, run.body["status"].as_str()),
        (201, Some("INITIAL")),
        "{}",
        run.text
    );
    let failed = wait_for("flaky's run to fail after its retries", RUNS, || {
        let h = http.call(Method::GET, "/v1/jobs/flaky?embed=history", None).body;
        match h["history"]["failedFinishedRuns"].as_array().map(Vec::len) {
            Some(1) => Ok(h["history"]["failedFinishedRuns"][0].clone()),
            _ => Err(h.to_string()),
        }
    });
    assert_eq!(failed["tasks"].as_array().unwrap().len(), 3, "{failed}");

    // REPLACE: every 2 s a new run, and the one before (still sleeping) is stopped.
    let replacing = json!({"id": "replacing", "run": {"cmd": "sleep 600", "cpus": 0.1, "mem": 32},
        "schedules": [{"id": "often", "cron": "R//PT2S", "concurrencyPolicy": "REPLACE"}]});
    assert_eq!(http.call(Method::POST, "/v1/jobs", Some(&replacing)).status, 201);
    wait_for("a run to be replaced", RUNS, || {
        let h = http
            .call(Method::GET, "/v1/jobs/replacing?embed=history&embed=activeRuns", None)
            .body;
        let replaced = h["history"]["failedFinishedRuns"].as_array().map_or(0, Vec::len);
        let active = h["activeRuns"].as_array().map_or(0, Vec::len);
        if replaced >= 1 && active == 1 {
            Ok(())
        } else {
            Err(h.to_string())
        }
    });
    // Delete refused while a run is active, unless its runs are stopped with it.
    let refused = http.call(Method::DELETE, "/v1/jobs/replacing", None);
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("stopCurrentJobRuns"), "{}", refused.text);
    let deleted = http.call(Method::DELETE, "/v1/jobs/replacing?stopCurrentJobRuns=true", None);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    // Every task ends: nothing is left running when the test is over.
    for name in ["every2s", "report", "nightly.cleanup", "flaky"] {
        let r = chronos.delete(name);
        assert_eq!(r.status, 204, "{name}: {}", r.text);
    }
    wait_for("every job's task to have ended", RUNS, || {
        let tasks = http.call(Method::GET, "/v1/tasks", None).body;
        let live: Vec<&Value> = tasks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                !t["state"].as_str().is_some_and(|s| {
                    matches!(
                        s,
                        "TASK_FINISHED"
                            | "TASK_FAILED"
                            | "TASK_KILLED"
                            | "TASK_LOST"
                            | "TASK_ERROR"
                            | "TASK_DROPPED"
                            | "TASK_GONE"
                    )
                })
            })
            .collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
    assert_eq!(chronos.jobs(), Vec::<Value>::new());
}
