//! Batch-jobs benchmark (not a test; nothing here passes or fails): 10,000 Metronome jobs on a
//! one-minute cron, all due at the same minute, on one real server (real Raft with its log
//! fsynced, real TLS, the leader's drivers as in production) and simulated agents.
//!
//! It reports how soon after the due time each run's task is running (p50, p99, max), how many
//! runs per second the leader launches, what one pass of the `jobs` driver costs when nothing is
//! due, and where the time goes: a timeline of the burst from the leader's own log events, each
//! driver's activations, and a few costs measured alone (one write, one read index, walking a
//! cron calendar once, 10,000 `CreateTask` committed in batches).
//!
//! ```sh
//! cargo bench -p tepui-jobs --bench schedule
//! JOBS=2000 AGENTS=4 cargo bench -p tepui-jobs --bench schedule
//! ```
//!
//! The jobs are parsed by the Metronome parser and written as `PutJob` straight through Raft, in
//! batches (setup, not measured). The simulated agents join with the cluster's agent token and
//! speak the agent protocol on the cluster port, as `tepui agent` does: they register with large
//! resources, answer every launch with `TASK_RUNNING` and, once the leader acknowledged that (it
//! is committed), with `TASK_FINISHED`. They start no container, so the figures are the control
//! plane's alone. They run in this process, on the same cores as the server.
//!
//! The run waits for one minute boundary (up to about 70 s) and takes 1.5 to 3 minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tepui_harness::{wait_for, Client, Cluster, RaftTimings, Server};
use tepui_pki::token::JoinToken;
use tepui_proto::agent::{AgentToServer, Resources, ServerToAgent, StatusUpdate};
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::Envelope;
use tepui_state::{Command, JobRunStatus, NodeStatus, Response, State, TaskDef, TaskRecord, MAX_BATCH};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

const MINUTE_MS: u64 = 60_000;
/// Jobs are created at least this long before the minute they are due at.
const MARGIN_MS: u64 = 12_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    now_us() / 1000
}

// ---------------------------------------------------------------------------------------------
// A timeline from the server's own log events
// ---------------------------------------------------------------------------------------------

/// The log messages whose times the timeline keeps (each one's every occurrence, in µs).
const MARKS: &[&str] = &[
    // tepui_jobs::runs, after the one batch of ScheduleJobRun is committed: one per run.
    "scheduled job run started",
    // tepui_master::lifecycle, in launch_direct_as after the CreateTask commit and the send.
    "task created",
    // tepui_jobs::runs, after launch_direct_as returned.
    "job run's task launched",
    // tepui_jobs::runs, after a batch of SetJobRunStatus is committed: one per run.
    "job run",
];

#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<HashMap<String, Vec<u64>>>>);

impl Timeline {
    fn take(&self) -> HashMap<String, Vec<u64>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Timeline {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if let Some(mark) = MARKS.iter().find(|k| **k == m.0) {
            let at = now_us();
            self.0.lock().unwrap().entry(mark.to_string()).or_default().push(at);
        } else if *event.metadata().level() <= tracing::Level::WARN {
            // Anything the leader warns about during the run, by message.
            let at = now_us();
            self.0
                .lock()
                .unwrap()
                .entry(format!("WARN {}", m.0))
                .or_default()
                .push(at);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated agents
// ---------------------------------------------------------------------------------------------

/// What a simulated agent saw of one task, Unix µs.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// The leader's launch arrived.
    launched: u64,
    /// The leader acknowledged TASK_RUNNING: it is committed.
    running: u64,
    finished: u64,
}

/// What the simulated agents saw, by task id.
#[derive(Default)]
struct Agents {
    tasks: Mutex<HashMap<String, Seen>>,
}

fn envelope(m: &AgentToServer) -> Envelope {
    Envelope {
        json: serde_json::to_vec(m).expect("agent messages serialize"),
    }
}

fn status(task_id: &str, state: &str, seq: u64) -> AgentToServer {
    // From JSON, as the agent's wire form: fields added to the update later take their
    // defaults.
    let update: StatusUpdate = serde_json::from_value(serde_json::json!({
        "task_id": task_id,
        "uuid": format!("{task_id}/{state}"),
        "state": state,
        "reason": null,
        "message": "",
        "exit_code": (state == "TASK_FINISHED").then_some(0),
        "signal": null,
        "timestamp_ms": now_ms(),
        "seq": seq,
    }))
    .expect("a status update");
    AgentToServer::Status { update }
}

/// Joins an agent named `name` through `addr` and runs its stream until the process ends;
/// returns its node id once the leader answered the registration.
async fn start_agent(addr: &str, token: &str, name: &str, shared: Arc<Agents>) -> u64 {
    let token: JoinToken = token.parse().expect("the harness's agent token");
    let identity = tepui_transport::join(&tepui_transport::JoinParams {
        addr: addr.to_string(),
        token,
        name: name.to_string(),
        cluster_addr: String::new(),
        http_addr: "127.0.0.1:9".into(),
        ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
    })
    .await
    .expect("a simulated agent joins");
    let mut client = ClusterClient::new(tepui_transport::channel(addr, identity.client_tls().expect("tls")));
    // Unbounded: the reader below never waits on the outgoing side.
    let (tx, rx) = mpsc::unbounded_channel::<Envelope>();
    let register = AgentToServer::Register {
        // Room for every task at once (each takes 10 millicpus and 32 MB).
        resources: Resources {
            cpus_milli: 1_000_000,
            mem_mb: 4_000_000,
            disk_mb: 1_000_000,
            ports: vec![],
            reserved: String::new(),
        },
        attributes: BTreeMap::new(),
        http_addr: "127.0.0.1:9".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        tasks: vec![],
        protocol: Some(tepui_common::version::PROTOCOL),
        min_protocol: Some(tepui_common::version::MIN_PROTOCOL),
    };
    tx.send(envelope(&register)).expect("open");
    let mut inbound = client
        .agent_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("the leader takes the agent's stream")
        .into_inner();
    let id = identity.node_id;
    tokio::spawn(async move {
        // The agent's heartbeat (the protocol's, not a synchronization): 2 s as `tepui agent`.
        let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
        let mut seq = 0;
        loop {
            let msg = tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(m)) => m,
                    _ => return,
                },
                _ = heartbeat.tick() => {
                    seq += 1;
                    let _ = tx.send(envelope(&AgentToServer::Heartbeat { seq, load: None }));
                    continue;
                }
            };
            let Ok(msg) = serde_json::from_slice::<ServerToAgent>(&msg.json) else {
                continue;
            };
            match msg {
                ServerToAgent::Launch { task } => {
                    let at = now_us();
                    shared
                        .tasks
                        .lock()
                        .unwrap()
                        .entry(task.task_id.clone())
                        .or_default()
                        .launched = at;
                    let _ = tx.send(envelope(&status(&task.task_id, "TASK_RUNNING", 0)));
                }
                ServerToAgent::Ack { task_id, uuid } => {
                    let at = now_us();
                    if uuid.ends_with("/TASK_RUNNING") {
                        shared.tasks.lock().unwrap().entry(task_id.clone()).or_default().running = at;
                        let _ = tx.send(envelope(&status(&task_id, "TASK_FINISHED", 1)));
                    } else if uuid.ends_with("/TASK_FINISHED") {
                        shared.tasks.lock().unwrap().entry(task_id).or_default().finished = at;
                    }
                }
                ServerToAgent::Kill { task_id, .. } => {
                    let _ = tx.send(envelope(&status(&task_id, "TASK_KILLED", 2)));
                }
                _ => {}
            }
        }
    });
    id
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Waits until `ready` holds on the server's applied state, looking again at every change.
async fn wait_state(server: &Server, what: &str, timeout: Duration, mut ready: impl FnMut(&State) -> bool) -> bool {
    let reader = server.state();
    let mut changes = reader.subscribe();
    let waited = tokio::time::timeout(timeout, async {
        loop {
            let _ = changes.borrow_and_update();
            if reader.read(&mut ready) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if waited.is_err() {
        println!("!! timed out after {timeout:?} waiting for {what}");
    }
    waited.is_ok()
}

/// Commits `cmds` straight through Raft, in batches of at most `MAX_BATCH` as the node does.
async fn commit(server: &Server, cmds: Vec<Command>) {
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let chunk: Vec<Command> = cmds.by_ref().take(MAX_BATCH).collect();
        let n = chunk.len();
        let answer = server
            .raft()
            .client_write(Command::Batch { cmds: chunk })
            .await
            .map_err(|e| e.to_string())
            .expect("a batch commits")
            .data;
        match answer {
            Response::Batch(answers) if answers.len() == n => {
                if let Some(bad) = answers.iter().find(|a| matches!(a, Response::Rejected(_))) {
                    panic!("a command of the batch was rejected: {bad:?}");
                }
            }
            other => panic!("unexpected answer to a batch: {other:?}"),
        }
    }
}

/// Commits `cmds` as [`commit`] does, and counts the commands accepted instead of insisting.
async fn commit_counting(server: &Server, cmds: Vec<Command>) -> usize {
    let mut ok = 0;
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let chunk: Vec<Command> = cmds.by_ref().take(MAX_BATCH).collect();
        if let Ok(r) = server.raft().client_write(Command::Batch { cmds: chunk }).await {
            if let Response::Batch(answers) = r.data {
                ok += answers.iter().filter(|a| !matches!(a, Response::Rejected(_))).count();
            }
        }
    }
    ok
}

async fn put_var(server: &Server, key: &str) {
    server
        .raft()
        .client_write(Command::PutVar {
            key: key.to_string(),
            value: "x".into(),
            cas: None,
            now: now_ms(),
        })
        .await
        .map_err(|e| e.to_string())
        .expect("a write commits");
}

/// The `jobs` driver as `/v1/status` shows it: (activations, last activation's µs).
async fn jobs_driver(client: &Client) -> Result<(u64, u64), String> {
    let status = client.status().await.map_err(|e| e.to_string())?;
    let d = status
        .drivers
        .iter()
        .find(|d| d.name == "jobs")
        .ok_or("no jobs driver")?;
    Ok((d.activations, d.last_duration_us))
}

/// Every driver's activations, from `/v1/status`.
async fn driver_activations(client: &Client) -> BTreeMap<String, (u64, u64)> {
    let status = client.status().await.expect("status");
    status
        .drivers
        .iter()
        .map(|d| (d.name.clone(), (d.activations, d.last_duration_us)))
        .collect()
}

/// `n` passes of the `jobs` driver, each set off by one unrelated write (a variable): the
/// duration of each pass, µs.
async fn idle_passes(server: &Server, client: &Client, n: usize, deadline_ms: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        if now_ms() + 1_000 > deadline_ms {
            break;
        }
        let (before, _) = jobs_driver(client).await.expect("status");
        put_var(server, &format!("bench/idle/{i}")).await;
        let took = wait_for(
            "a pass of the jobs driver",
            Duration::from_secs(10),
            async || match jobs_driver(client).await {
                Ok((activations, us)) if activations > before => Some(us),
                _ => None,
            },
        )
        .await;
        out.push(took);
    }
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn since(us: u64, from_ms: u64) -> String {
    ms(us.saturating_sub(from_ms * 1000))
}

fn spread(values: &mut [u64]) -> String {
    values.sort_unstable();
    format!(
        "p50 {} / p99 {} / max {}",
        ms(percentile(values, 50.0)),
        ms(percentile(values, 99.0)),
        ms(values.last().copied().unwrap_or(0))
    )
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

/// Looks at the leader's state every 50 ms until `ready` holds (a level-triggered wait, as the
/// harness's `wait_for`); false after `timeout`. For conditions too costly to evaluate on every
/// one of the burst's thousands of state changes.
async fn poll_state(server: &Server, timeout: Duration, mut ready: impl FnMut(&State) -> bool) -> bool {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(timeout, async {
        loop {
            tick.tick().await;
            if server.state().read(&mut ready) {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::main]
async fn main() {
    let jobs = env_usize("JOBS", 10_000);
    let agents = env_usize("AGENTS", 1).max(1);
    let timeline = Timeline::default();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("tepui_jobs", tracing::Level::INFO)
        .with_target("tepui_master", tracing::Level::INFO);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(timeline.clone().with_filter(filter)))
        .expect("the only subscriber");

    println!(
        "# batch jobs: {jobs} jobs on `* * * * *`, {agents} simulated agent(s), 1 server (load average {})",
        load_average()
    );
    let started = Instant::now();
    // One server with the production Raft timings (a snapshot every 10,000 entries) and agent
    // timeout; its data dir is under TMPDIR.
    let c = Cluster::builder()
        .servers(1)
        .agents(0)
        .raft(RaftTimings::default())
        .agent_timeout(Duration::from_secs(15))
        .start()
        .await;
    let leader = c.wait_for_leader().await;
    let client = c.client(leader);
    let addr = c.server_cluster_addr(leader).to_string();
    let shared = Arc::new(Agents::default());
    let mut agent_ids = Vec::new();
    for i in 0..agents {
        let id = start_agent(&addr, c.agent_token(), &format!("sim{i}"), shared.clone()).await;
        agent_ids.push(id);
    }
    let server = c.server(leader);
    {
        let ids = agent_ids.clone();
        let ready = wait_state(
            server,
            "the simulated agents to be ready",
            Duration::from_secs(30),
            |s| {
                ids.iter().all(|id| {
                    s.nodes
                        .get(id)
                        .is_some_and(|n| n.agent.is_some() && n.status == NodeStatus::Ready)
                })
            },
        )
        .await;
        assert!(ready, "the simulated agents did not become ready");
    }
    println!("cluster and agents up in {:?}", started.elapsed());

    // The floor of a serial launch: one small write committed at a time, and one read index.
    let mut writes = Vec::new();
    for i in 0..200 {
        let t = now_us();
        put_var(server, &format!("bench/serial/{i}")).await;
        writes.push(now_us() - t);
    }
    let serial_write = spread(&mut writes);
    let mut reads = Vec::new();
    for _ in 0..200 {
        let t = now_us();
        server
            .raft()
            .ensure_linearizable()
            .await
            .map_err(|e| e.to_string())
            .expect("leading");
        reads.push(now_us() - t);
    }
    let serial_linearize = spread(&mut reads);
    println!("one write at a time (200 PutVar): {serial_write}; one linearize at a time: {serial_linearize}");

    // The minute the jobs are due at: the next one, if there is time to create them before it.
    let mut now = now_ms();
    if now.next_multiple_of(MINUTE_MS) - now < MARGIN_MS {
        // Too close to a boundary: the jobs are created just after it (this only picks the
        // minute; nothing waits on the cluster here).
        let after = now.next_multiple_of(MINUTE_MS) + 50 - now;
        tokio::time::sleep(Duration::from_millis(after)).await;
        now = now_ms();
    }
    let due = (now + 1).next_multiple_of(MINUTE_MS);
    let due_time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(due as i64).expect("a time");
    let create_started = Instant::now();
    let mut cmds = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let id = format!("j{i:05}");
        let body = format!(
            r#"{{"id":"{id}","run":{{"cmd":"true","cpus":0.01,"mem":32}},"schedules":[{{"id":"s","cron":"* * * * *"}}]}}"#
        );
        let job = tepui_jobs::metronome::parse_job(body.as_bytes()).expect("a valid job");
        cmds.push(Command::PutJob {
            id,
            spec: serde_json::to_value(&job).expect("a job serializes"),
            create: true,
            now: now_ms(),
        });
    }
    commit(server, cmds).await;
    let created = now_ms();
    assert!(created < due, "the jobs were created after the minute they are due at");
    println!(
        "{jobs} jobs created in {:?}, {:.1} s before they are due",
        create_started.elapsed(),
        (due - created) as f64 / 1000.0
    );

    // The driver's pass with nothing due, over every job, while the minute comes.
    let mut idle = idle_passes(server, &client, 30, due - 3_000).await;
    let idle_s = spread(&mut idle);
    println!("jobs driver pass, nothing due ({} passes): {idle_s}", idle.len());

    // Every driver's activations so far, to count those of the burst.
    let drivers_before = driver_activations(&client).await;
    // What each driver's last activation took, looked at twice a second through the burst
    // (an observation, nothing waits on it).
    let sampled: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let sampler = {
        let client = client.clone();
        let sampled = sampled.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if now_ms() < due {
                    continue;
                }
                if let Ok(status) = client.status().await {
                    let mut m = sampled.lock().unwrap();
                    for d in status.drivers {
                        m.entry(d.name).or_default().push(d.last_duration_us);
                    }
                }
            }
        })
    };
    timeline.take();
    println!(
        "waiting for {} (in {:.1} s)",
        due_time.to_rfc3339(),
        due.saturating_sub(now_ms()) as f64 / 1000.0
    );

    // The burst: until the state records every run due at that minute as ended.
    let ended = poll_state(server, Duration::from_secs(170), |s| {
        let open = s.job_runs.values().any(|r| r.due_at == Some(due));
        !open
            && s.job_history
                .values()
                .map(|h| h.finished.iter().filter(|r| r.due_at == Some(due)).count())
                .sum::<usize>()
                >= jobs
    })
    .await;
    let ended_at = now_us();
    sampler.abort();
    let marks = timeline.take();
    let drivers_after = driver_activations(&client).await;
    let lost: Vec<u64> = server.state().read(|s| {
        agent_ids
            .iter()
            .copied()
            .filter(|id| s.nodes.get(id).is_none_or(|n| n.status != NodeStatus::Ready))
            .collect()
    });

    // The measured runs, as the state recorded them, and their tasks.
    struct Runs {
        ended: usize,
        succeeded: usize,
        still_open: BTreeMap<String, usize>,
        later: usize,
        recorded: Vec<u64>,
        completed: Vec<u64>,
        tasks: Vec<String>,
        /// Recorded more than 10 s after the due time: (job, run id, ms after the due time).
        late: Vec<(String, String, u64)>,
    }
    let mut runs = server.state().read(|s| {
        let mut r = Runs {
            ended: 0,
            succeeded: 0,
            still_open: BTreeMap::new(),
            later: 0,
            recorded: vec![],
            completed: vec![],
            tasks: vec![],
            late: vec![],
        };
        for h in s.job_history.values() {
            for run in h.finished.iter().filter(|run| run.due_at == Some(due)) {
                r.ended += 1;
                if run.status == JobRunStatus::Success {
                    r.succeeded += 1;
                }
                r.recorded.push(run.created_at.saturating_sub(due) * 1000);
                if run.created_at > due + 10_000 {
                    r.late.push((run.job_id.clone(), run.id.clone(), run.created_at - due));
                }
                r.completed
                    .push(run.completed_at.unwrap_or(0).saturating_sub(due) * 1000);
                r.tasks.extend(run.tasks.iter().cloned());
            }
        }
        for run in s.job_runs.values() {
            if run.due_at == Some(due) {
                let task = run
                    .tasks
                    .last()
                    .and_then(|t| s.tasks.get(t))
                    .map(|t| t.state.as_str())
                    .unwrap_or("no task");
                *r.still_open.entry(format!("{:?}/{task}", run.status)).or_default() += 1;
                r.recorded.push(run.created_at.saturating_sub(due) * 1000);
                r.tasks.extend(run.tasks.iter().cloned());
            } else {
                r.later += 1;
            }
        }
        r
    });
    let (seen, launches_seen): (Vec<Seen>, usize) = {
        let tasks = shared.tasks.lock().unwrap();
        (
            runs.tasks.iter().filter_map(|id| tasks.get(id).copied()).collect(),
            tasks.len(),
        )
    };
    let due_us = due * 1000;
    let mut to_launch: Vec<u64> = seen
        .iter()
        .filter(|s| s.launched > 0)
        .map(|s| s.launched.saturating_sub(due_us))
        .collect();
    let mut to_running: Vec<u64> = seen
        .iter()
        .filter(|s| s.running > 0)
        .map(|s| s.running.saturating_sub(due_us))
        .collect();
    let last_launch = seen.iter().map(|s| s.launched).max().unwrap_or(due_us);
    let last_running = seen.iter().map(|s| s.running).max().unwrap_or(due_us);
    let within = |v: &[u64], us: u64| v.iter().filter(|x| **x <= us).count();
    let within_s = |v: &[u64]| {
        format!(
            "within 1 s: {}, 10 s: {}, 30 s: {}, 60 s: {} of {}",
            within(v, 1_000_000),
            within(v, 10_000_000),
            within(v, 30_000_000),
            within(v, 60_000_000),
            v.len()
        )
    };

    // Per-launch cost over the burst, from the leader's own "task created" events.
    // The measured minute's launches are the first `jobs` (one driver pass launches them one
    // after the other; a later minute's come in a later pass).
    let mut created_marks = marks.get("task created").cloned().unwrap_or_default();
    created_marks.truncate(jobs);
    let per_launch = |from: usize, to: usize| -> String {
        let slice = &created_marks[from.min(created_marks.len())..to.min(created_marks.len())];
        if slice.len() < 2 {
            return "-".into();
        }
        let per = (slice[slice.len() - 1] - slice[0]) / (slice.len() as u64 - 1);
        format!("{} per launch ({:.0}/s)", ms(per), 1e6 / per.max(1) as f64)
    };

    // The leader's place() over the state as the burst left it (ended tasks are kept).
    let def = TaskDef {
        args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        cpus_milli: 10,
        mem_mb: 32,
        ..TaskDef::default()
    };
    let (tasks_in_state, place_us) = server.state().read(|s| {
        let t = Instant::now();
        for _ in 0..100 {
            let _ = std::hint::black_box(s.place(&def, 0, None));
        }
        (s.tasks.len(), t.elapsed().as_micros() as u64 / 100)
    });

    // What if the launches were one batch: as many CreateTask committed in batches of
    // MAX_BATCH, as `write_batch` does (the apply still checks each task's fit).
    let whatif: Vec<Command> = (0..jobs)
        .map(|i| Command::CreateTask {
            task: Box::new(TaskRecord::staging(
                format!("whatif.{i}"),
                "whatif",
                agent_ids[i % agent_ids.len()],
                def.clone(),
                now_ms(),
            )),
        })
        .collect();
    let t = Instant::now();
    let whatif_ok = commit_counting(server, whatif).await;
    let whatif_took = t.elapsed();

    // What walking the calendar of `* * * * *` (UTC) costs once, at three times of the day:
    // a pass calls it for every schedule it does not skip.
    let cron = tepui_jobs::Schedule::parse("* * * * *", "", 0).expect("a cron");
    let day = due - due % 86_400_000;
    let next_after: Vec<(&str, u64)> = [
        ("at 00:01 UTC", day + 60_000),
        ("now", due),
        ("at 23:58 UTC", day + 86_280_000),
    ]
    .into_iter()
    .map(|(label, at)| {
        let t = Instant::now();
        for i in 0..1000 {
            std::hint::black_box(cron.next_after(at as i64 + i));
        }
        (label, t.elapsed().as_nanos() as u64 / 1000)
    })
    .collect();

    // ---------------------------------------------------------------------------------------
    println!();
    println!("## results: the {jobs} runs due at {}", due_time.to_rfc3339());
    println!(
        "runs: {} recorded, {} ended ({} succeeded), still open: {:?}; runs of later minutes: {}",
        runs.recorded.len(),
        runs.ended,
        runs.succeeded,
        runs.still_open,
        runs.later
    );
    println!(
        "launches the agents got: {} of these runs' tasks, {launches_seen} in all",
        seen.len()
    );
    if !lost.is_empty() {
        println!("!! agents not ready at the end (marked lost): {lost:?}");
    }
    println!("due -> run recorded (the pass's now): {}", spread(&mut runs.recorded));
    if !runs.late.is_empty() {
        println!("!! runs recorded more than 10 s late (job, run, ms): {:?}", runs.late);
    }
    println!("due -> launch at the agent:           {}", spread(&mut to_launch));
    println!("due -> TASK_RUNNING committed:        {}", spread(&mut to_running));
    println!("  {}", within_s(&to_running));
    println!("due -> run recorded as ended:         {}", spread(&mut runs.completed));
    if let (Some(first), Some(made)) = (
        marks.get("job run").and_then(|v| v.first()),
        runs.completed.get(runs.completed.len() / 2),
    ) {
        // `completed_at` is when the pass made the SetJobRunStatus commands; the events follow
        // the answer to the whole batch.
        println!(
            "  the batch of SetJobRunStatus, made at {} after the due time, answered {} later",
            ms(*made),
            ms(first.saturating_sub(due_us + made))
        );
    }
    let launch_span = last_launch.saturating_sub(due_us).max(1);
    println!(
        "launch rate: {:.0} runs/s ({} launches, due -> last launch {})",
        to_launch.len() as f64 / (launch_span as f64 / 1e6),
        to_launch.len(),
        ms(launch_span)
    );
    println!("due -> last TASK_RUNNING committed: {}", since(last_running, due));
    println!(
        "due -> every run ended in the state: {}{}",
        since(ended_at, due),
        if ended { "" } else { " (not all, gave up)" }
    );
    println!();
    println!("## timeline of the burst (from the due time)");
    let mut keys: Vec<&String> = marks.keys().collect();
    keys.sort();
    for key in keys {
        let v = &marks[key];
        // The first `jobs` of each are this minute's (later minutes' follow in later passes).
        let first = &v[..v.len().min(jobs)];
        println!(
            "{key:>28}: {:>6} events; the first {}: from {} to {}",
            v.len(),
            first.len(),
            since(first[0], due),
            since(first[first.len() - 1], due)
        );
    }
    let n = created_marks.len();
    println!("launch cost, launches 1-1000:  {}", per_launch(0, 1000));
    println!(
        "launch cost, middle 1000:      {}",
        per_launch((n / 2).saturating_sub(500), n / 2 + 500)
    );
    println!(
        "launch cost, last 1000:        {}",
        per_launch(n.saturating_sub(1000), n)
    );
    println!();
    println!("## drivers from the due time to the end (activations; an activation's duration, sampled every 0.5 s)");
    let mut sampled = std::mem::take(&mut *sampled.lock().unwrap());
    for (name, (after, _)) in &drivers_after {
        let before = drivers_before.get(name).map(|d| d.0).unwrap_or(0);
        let samples = sampled.remove(name).unwrap_or_default();
        let mut v = samples.clone();
        println!(
            "{name:>12}: {:>6} activations; {} ({} samples)",
            after - before,
            spread(&mut v),
            samples.len()
        );
    }
    println!();
    println!("## costs");
    println!("one write at a time (PutVar):     {serial_write}");
    println!("one linearize at a time:          {serial_linearize}");
    println!(
        "jobs driver pass, nothing due, {jobs} jobs: {idle_s} ({} passes)",
        idle.len()
    );
    for (label, ns) in &next_after {
        println!("`* * * * *` next_after, {label}: {:.1} µs", *ns as f64 / 1000.0);
    }
    println!("place() with {tasks_in_state} tasks in the state: {}", ms(place_us));
    println!(
        "what-if: {jobs} CreateTask in batches of {MAX_BATCH}: {:?} ({:.0} tasks/s; {whatif_ok} accepted)",
        whatif_took,
        jobs as f64 / whatif_took.as_secs_f64()
    );
    println!(
        "total run time: {:?}; load average {}",
        started.elapsed(),
        load_average()
    );
    c.shutdown().await;
}
