//! writebench: committed writes per second and commit latency of a replicated store.
//!
//! A benchmark, not a test. It drives one HTTP endpoint (the leader's, so the numbers compare
//! consensus and not request forwarding) with N concurrent workers, each a sequential loop of
//! writes over its own keep-alive connection, and reports what the server acknowledged:
//!
//! - `tepui`: `PUT http://ADDR/v1/vars/bench/<n>` with `{"value": "..."}`, answered after the
//!   Raft commit;
//! - `etcd`: `POST http://ADDR/v3/kv/put` with `{"key": base64, "value": base64}` on etcd's v3
//!   JSON gateway, answered after the Raft commit and apply.
//!
//! Only 2xx answers count as writes. A warm-up runs first and is not measured; then writes
//! that complete inside the measured window (a duration, or until a count is reached) count.
//! It prints one JSON line, then one readable line.
//!
//! `writebench leader --target KIND --addrs A,B,C` prints the HTTP address of the current leader,
//! waiting for one to be elected.
//!
//! `writebench failover` times a failover: it sends SIGKILL or SIGSTOP to the leader's process,
//! then starts one write through another member every few milliseconds (open loop: each write
//! is its own request, so one that hangs does not hold up the next) and reports when the first
//! one was acknowledged. Afterwards it reads every acknowledged write back through the given
//! members, so a lost write or a stale read shows up as a missing read.
//!
//! Usage:
//!   writebench run --target tepui --addr 127.0.20.1:5050 --concurrency 64 --duration 20 --value-size 64
//!   writebench leader --target etcd --addrs 127.0.21.1:2379,127.0.21.2:2379,127.0.21.3:2379
//!   writebench failover --target tepui --addr 127.0.20.2:5050 --leader-pid 1234 --fault stop \
//!       --verify 127.0.20.1:5050,127.0.20.2:5050,127.0.20.3:5050

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "writebench",
    about = "Committed writes/s and commit latency of tepui or etcd"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Target {
    Tepui,
    Etcd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Tepui => "tepui",
            Target::Etcd => "etcd",
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the load and report.
    Run(RunArgs),
    /// Kill or freeze the leader and time the first acknowledged write through another member.
    Failover(FailoverArgs),
    /// Print the leader's HTTP address (HOST:PORT), waiting for one.
    Leader {
        #[arg(long, value_enum)]
        target: Target,
        /// HTTP addresses of all members, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        addrs: Vec<String>,
        /// Seconds to wait for a leader.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    target: Target,
    /// The leader's HTTP address, HOST:PORT.
    #[arg(long)]
    addr: String,
    /// Concurrent clients, each with its own keep-alive connection and one write in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of measured load (ignored when --count is given).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Measure this many successful writes instead of a duration.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Key space: write bench/<n % keys>; 0 makes every key new (bench/0, bench/1, ...).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Hard limit on the whole run, in seconds, whatever else is asked.
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
    /// Print acknowledged writes per interval to stderr every this many seconds (0: never),
    /// to see stalls that a percentile hides.
    #[arg(long, default_value_t = 0.0)]
    progress: f64,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Fault {
    /// SIGKILL: the process is gone and the kernel closes its sockets.
    Kill,
    /// SIGSTOP, then SIGCONT after --freeze seconds: a stalled node, whose peers see no closed
    /// connection, only silence.
    Stop,
}

#[derive(clap::Args)]
struct FailoverArgs {
    #[arg(long, value_enum)]
    target: Target,
    /// HTTP address of the member the writes go through: not the leader.
    #[arg(long)]
    addr: String,
    /// The leader's process id.
    #[arg(long)]
    leader_pid: i32,
    #[arg(long, value_enum)]
    fault: Fault,
    /// Seconds a stopped leader stays frozen before SIGCONT.
    #[arg(long, default_value_t = 6.0)]
    freeze: f64,
    /// Milliseconds between the starts of two writes.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Seconds one write may take before it is abandoned (its outcome is then unknown).
    #[arg(long, default_value_t = 15.0)]
    request_timeout: f64,
    /// Give up when nothing is acknowledged this many seconds after the fault.
    #[arg(long, default_value_t = 30.0)]
    max_seconds: f64,
    /// Members to read every acknowledged write back through (linearizable reads), after the
    /// first acknowledgement, and for a stop after the resume.
    #[arg(long, value_delimiter = ',')]
    verify: Vec<String>,
}

/// What one worker saw during the measured window.
#[derive(Default)]
struct WorkerResult {
    /// Latencies of successful writes, in microseconds.
    latencies_us: Vec<u32>,
    http_errors: u64,
    transport_errors: u64,
    first_error: Option<String>,
}

struct Plan {
    target: Target,
    base: String,
    value: String,
    value_b64: String,
    keys: u64,
    measure_from: Instant,
    /// Measuring stops here (duration mode) or at the hard limit (count mode).
    stop_at: Instant,
    /// Count mode: successful measured writes still wanted.
    remaining: Option<AtomicU64>,
    seq: AtomicU64,
    /// Writes acknowledged after the window, by requests already in flight: not counted.
    late: AtomicU64,
    /// Count mode: when the last wanted write was acknowledged.
    finished_at: std::sync::Mutex<Option<Instant>>,
    /// Every acknowledged write, warm-up included, for --progress.
    acked: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.cmd {
        Cmd::Run(args) => rt.block_on(run(args)),
        Cmd::Failover(args) => rt.block_on(failover(args)),
        Cmd::Leader { target, addrs, timeout } => {
            let leader = rt.block_on(find_leader(target, &addrs, Duration::from_secs_f64(timeout)))?;
            println!("{leader}");
            Ok(())
        }
    }
}

/// An HTTP client for the target; tepui's API wants its management token
/// (`TEPUI_API_TOKEN`) on every request.
fn client(target: Target, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // reqwest's rustls (linked in for registry pulls) needs the process's crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    if let (Target::Tepui, Ok(token)) = (target, std::env::var("TEPUI_API_TOKEN")) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()?)
}

async fn find_leader(target: Target, addrs: &[String], timeout: Duration) -> anyhow::Result<String> {
    let http = client(target, Duration::from_secs(2))?;
    let deadline = Instant::now() + timeout;
    loop {
        let last = match leader_once(&http, target, addrs).await {
            Ok(Some(addr)) => return Ok(addr),
            Ok(None) => "no leader elected".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "no {} leader among {} after {:?}: {last}",
                target.name(),
                addrs.join(","),
                timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn leader_once(http: &reqwest::Client, target: Target, addrs: &[String]) -> anyhow::Result<Option<String>> {
    match target {
        Target::Tepui => {
            // Any server answers /v1/status with the leader's HTTP address.
            let mut last_err = None;
            for a in addrs {
                match http.get(format!("http://{a}/v1/status")).send().await {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await?;
                        let addr = v["leader"]["http_addr"].as_str().unwrap_or("");
                        return Ok((!addr.is_empty()).then(|| addr.to_string()));
                    }
                    Ok(r) => last_err = Some(anyhow::anyhow!("{a}: HTTP {}", r.status())),
                    Err(e) => last_err = Some(anyhow::anyhow!("{a}: {e}")),
                }
            }
            Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no address given")))
        }
        Target::Etcd => {
            // Each member tells its own id and the leader's; the leader is the one where they match.
            let mut answered = 0;
            for a in addrs {
                let Ok(r) = http
                    .post(format!("http://{a}/v3/maintenance/status"))
                    .json(&json!({}))
                    .send()
                    .await
                else {
                    continue;
                };
                if !r.status().is_success() {
                    continue;
                }
                answered += 1;
                let v: Value = r.json().await?;
                let me = id_string(&v["header"]["member_id"]);
                let leader = id_string(&v["leader"]);
                if !me.is_empty() && me == leader {
                    return Ok(Some(a.clone()));
                }
            }
            if answered == 0 {
                bail!("no etcd member answered");
            }
            Ok(None)
        }
    }
}

/// etcd's gateway writes uint64 ids as JSON strings; accept numbers too.
fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let value: String = (0..args.value_size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let value_b64 = B64.encode(value.as_bytes());
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let hard_stop = started + Duration::from_secs_f64(args.max_seconds);
    let stop_at = match args.count {
        Some(_) => hard_stop,
        None => (measure_from + Duration::from_secs_f64(args.duration)).min(hard_stop),
    };
    let plan = Arc::new(Plan {
        target: args.target,
        base: format!("http://{}", args.addr),
        value,
        value_b64,
        keys: args.keys,
        measure_from,
        stop_at,
        remaining: args.count.map(AtomicU64::new),
        seq: AtomicU64::new(0),
        late: AtomicU64::new(0),
        finished_at: std::sync::Mutex::new(None),
        acked: AtomicU64::new(0),
    });
    let ticker = (args.progress > 0.0).then(|| tokio::spawn(progress(plan.clone(), args.progress, started)));

    let timeout = Duration::from_secs_f64(args.request_timeout);
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let http = client(args.target, timeout)?;
        let plan = plan.clone();
        workers.push(tokio::spawn(worker(http, plan)));
    }
    let mut results = Vec::with_capacity(workers.len());
    for w in workers {
        results.push(w.await.context("a worker panicked")?);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    // The measured window ends when the last counted write completed (count mode) or at stop_at.
    let window_end = match args.count {
        Some(_) => plan
            .finished_at
            .lock()
            .unwrap()
            .unwrap_or_else(Instant::now)
            .min(hard_stop),
        None => stop_at,
    };
    let window = window_end.saturating_duration_since(measure_from).as_secs_f64();

    let mut lat: Vec<u32> = Vec::new();
    let (mut http_errors, mut transport_errors, mut first_error) = (0, 0, None);
    for r in results {
        lat.extend(r.latencies_us);
        http_errors += r.http_errors;
        transport_errors += r.transport_errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    lat.sort_unstable();
    let writes = lat.len() as u64;
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * lat.len() as f64).ceil() as usize;
        lat[i.clamp(1, lat.len()) - 1] as f64 / 1000.0
    };
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let wps = if window > 0.0 { writes as f64 / window } else { 0.0 };
    let errors = http_errors + transport_errors;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let report = json!({
        "target": args.target.name(),
        "addr": args.addr,
        "concurrency": args.concurrency,
        "value_size": args.value_size,
        "warmup_s": args.warmup,
        "window_s": r3(window),
        "writes": writes,
        "writes_per_s": r3(wps),
        "p50_ms": r3(pct(50.0)),
        "p90_ms": r3(pct(90.0)),
        "p99_ms": r3(pct(99.0)),
        "p999_ms": r3(pct(99.9)),
        "max_ms": r3(lat.last().map_or(0.0, |&v| v as f64 / 1000.0)),
        "mean_ms": r3(mean),
        "errors": errors,
        "http_errors": http_errors,
        "transport_errors": transport_errors,
        "late_writes": plan.late.load(Ordering::Relaxed),
        "first_error": first_error,
    });
    println!("{report}");
    println!(
        "{}: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} writes in {:.1} s, {} errors ({} clients, {} B values)",
        args.target.name(),
        wps,
        pct(50.0),
        pct(99.0),
        lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
        writes,
        window,
        errors,
        args.concurrency,
        args.value_size
    );
    if writes == 0 {
        bail!("no write succeeded: {}", report["first_error"]);
    }
    Ok(())
}

async fn progress(plan: Arc<Plan>, every: f64, started: Instant) {
    let every = Duration::from_secs_f64(every);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(started) + every, every);
    let mut last = 0;
    loop {
        tick.tick().await;
        let now = plan.acked.load(Ordering::Relaxed);
        eprintln!(
            "  t={:6.1}s {:8.0} writes/s",
            started.elapsed().as_secs_f64(),
            (now - last) as f64 / every.as_secs_f64()
        );
        last = now;
    }
}

async fn worker(http: reqwest::Client, plan: Arc<Plan>) -> WorkerResult {
    let mut out = WorkerResult::default();
    loop {
        let now = Instant::now();
        if now >= plan.stop_at {
            break;
        }
        if let Some(rem) = &plan.remaining {
            if now >= plan.measure_from && rem.load(Ordering::Relaxed) == 0 {
                break;
            }
        }
        let n = plan.seq.fetch_add(1, Ordering::Relaxed);
        let n = if plan.keys > 0 { n % plan.keys } else { n };
        let req = match plan.target {
            Target::Tepui => http
                .put(format!("{}/v1/vars/bench/{n}", plan.base))
                .json(&json!({ "value": plan.value })),
            Target::Etcd => http.post(format!("{}/v3/kv/put", plan.base)).json(&json!({
                "key": B64.encode(format!("bench/{n}")),
                "value": plan.value_b64,
            })),
        };
        let sent = Instant::now();
        let outcome = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                // Read the whole body so the connection is reused.
                let body = resp.bytes().await;
                match body {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(b) => Err((
                        true,
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&b[..b.len().min(300)])),
                    )),
                    Err(e) => Err((false, format!("reading the answer: {e}"))),
                }
            }
            Err(e) => Err((false, format!("{e:#}"))),
        };
        let done = Instant::now();
        if outcome.is_ok() {
            plan.acked.fetch_add(1, Ordering::Relaxed);
        }
        // Only requests sent inside the window and answered by its end are measured.
        let in_window = sent >= plan.measure_from && done <= plan.stop_at;
        match outcome {
            Ok(()) if in_window => {
                if let Some(rem) = &plan.remaining {
                    // Count mode: take one ticket; past zero, the write is extra and not counted.
                    match rem.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1)) {
                        Err(_) => continue,
                        Ok(1) => *plan.finished_at.lock().unwrap() = Some(done),
                        Ok(_) => {}
                    }
                }
                let us = done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32;
                out.latencies_us.push(us);
            }
            Ok(()) => {
                if sent >= plan.measure_from {
                    plan.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((is_http, msg)) => {
                if sent >= plan.measure_from {
                    if is_http {
                        out.http_errors += 1;
                    } else {
                        out.transport_errors += 1;
                    }
                    if out.first_error.is_none() {
                        out.first_error = Some(msg);
                    }
                }
                // Errors in the warm-up do not count; after any error, do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

/// One write of the failover test: `failover/<key>` set to `v-<key>`.
fn probe_write(http: &reqwest::Client, target: Target, base: &str, key: &str) -> reqwest::RequestBuilder {
    match target {
        Target::Tepui => http
            .put(format!("{base}/v1/vars/failover/{key}"))
            .json(&json!({ "value": format!("v-{key}") })),
        Target::Etcd => http.post(format!("{base}/v3/kv/put")).json(&json!({
            "key": B64.encode(format!("failover/{key}")),
            "value": B64.encode(format!("v-{key}")),
        })),
    }
}

/// Sends one write; Ok when it was acknowledged (2xx), else why not.
async fn send_probe(http: &reqwest::Client, target: Target, base: &str, key: &str) -> Result<(), String> {
    let resp = probe_write(http, target, base, key)
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("reading the answer: {e}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

/// Reads `failover/<key>` through `base`: Some(value), None when absent, Err when not answered.
async fn read_probe(http: &reqwest::Client, target: Target, base: &str, key: &str) -> Result<Option<String>, String> {
    let resp = match target {
        Target::Tepui => http.get(format!("{base}/v1/vars/failover/{key}")).send().await,
        Target::Etcd => {
            http.post(format!("{base}/v3/kv/range"))
                .json(&json!({ "key": B64.encode(format!("failover/{key}")) }))
                .send()
                .await
        }
    }
    .map_err(|e| format!("{e:#}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if target == Target::Tepui && status == reqwest::StatusCode::NOT_FOUND {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v["code"] == "unknown_var" {
            return Ok(None);
        }
    }
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(match target {
        Target::Tepui => v["value"].as_str().map(str::to_string),
        Target::Etcd => v["kvs"][0]["value"]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

fn signal(pid: i32, sig: i32) -> anyhow::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } != 0 {
        bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One finished write: its key, when it was sent and answered, and how it ended.
type Outcome = (String, Instant, Instant, Result<(), String>);

/// The closed-loop writer: one write at a time, the next one as soon as the last is answered
/// (10 ms after a failure), as a client in a loop does. It runs from before the fault until one
/// write sent after the fault is acknowledged, or `until`.
async fn closed_loop(
    http: reqwest::Client,
    target: Target,
    base: String,
    fault_at: tokio::sync::watch::Receiver<Option<Instant>>,
    until: Instant,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for n in 0u64.. {
        let key = format!("c{n}");
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let r = send_probe(&http, target, &base, &key).await;
        let ok = r.is_ok();
        out.push((key, sent, Instant::now(), r));
        let after_fault = (*fault_at.borrow()).is_some_and(|t| sent >= t);
        if ok && after_fault {
            break;
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    out
}

async fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    let http = client(args.target, Duration::from_secs_f64(args.request_timeout))?;
    let base = format!("http://{}", args.addr);
    let mut acked: Vec<String> = Vec::new();

    // Warm up the path through this member (connections, the forward to the leader).
    let warm_deadline = Instant::now() + Duration::from_secs(20);
    for n in 0u64.. {
        if acked.len() >= 20 {
            break;
        }
        let key = format!("w{n}");
        match send_probe(&http, args.target, &base, &key).await {
            Ok(()) => acked.push(key),
            Err(e) if Instant::now() > warm_deadline => bail!("warm-up writes through {} fail: {e}", args.addr),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    // The closed-loop writer is busy writing when the fault comes, as a real client would be.
    let (fault_tx, fault_rx) = tokio::sync::watch::channel(None);
    let give_up = Instant::now() + Duration::from_secs_f64(args.max_seconds);
    let closed = tokio::spawn(closed_loop(
        client(args.target, Duration::from_secs_f64(args.request_timeout))?,
        args.target,
        base.clone(),
        fault_rx,
        give_up,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (sig, name) = match args.fault {
        Fault::Kill => (libc::SIGKILL, "kill"),
        Fault::Stop => (libc::SIGSTOP, "stop"),
    };
    let t0 = Instant::now();
    signal(args.leader_pid, sig)?;
    let _ = fault_tx.send(Some(t0));

    // Open loop: a new write every interval until one is acknowledged (and a little after).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let mut inflight = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first: Option<(Duration, Duration)> = None;
    let mut stop_sending: Option<Instant> = None;
    let (mut probes, mut failed, mut first_error, mut last_error) = (0u64, 0u64, None::<String>, None::<String>);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= give_up || stop_sending.is_some_and(|s| now >= s) {
                    break;
                }
                let (http, base, tx, key) = (http.clone(), base.clone(), tx.clone(), probes.to_string());
                probes += 1;
                let target = args.target;
                inflight.spawn(async move {
                    let sent = Instant::now();
                    let r = send_probe(&http, target, &base, &key).await;
                    let _ = tx.send((key, sent, Instant::now(), r));
                });
            }
            Some((key, sent, done, r)) = rx.recv() => match r {
                Ok(()) => {
                    acked.push(key);
                    if first.is_none() {
                        first = Some((done - t0, sent.saturating_duration_since(t0)));
                        stop_sending = Some(done + Duration::from_millis(200));
                    }
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.clone());
                    last_error = Some(e);
                }
            },
        }
    }
    // Writes still in flight have an unknown outcome: not counted as acknowledged.
    drop(tx);
    while let Ok((key, _, _, r)) = rx.try_recv() {
        if r.is_ok() {
            acked.push(key);
        }
    }
    let unknown = inflight.len();
    inflight.abort_all();

    let closed = closed.await?;
    let closed_first = closed
        .iter()
        .find(|(_, sent, _, r)| *sent >= t0 && r.is_ok())
        .map(|(_, _, done, _)| *done - t0);
    let closed_failed = closed
        .iter()
        .filter(|(_, sent, _, r)| *sent >= t0 && r.is_err())
        .count();
    let closed_longest = closed
        .iter()
        .filter(|(_, sent, _, _)| *sent >= t0)
        .map(|(_, sent, done, _)| *done - *sent)
        .max();
    let closed_error = closed.iter().find_map(|(_, _, _, r)| r.clone().err());
    acked.extend(closed.iter().filter(|o| o.3.is_ok()).map(|o| o.0.clone()));

    if args.fault == Fault::Stop {
        let resume = t0 + Duration::from_secs_f64(args.freeze);
        tokio::time::sleep_until(tokio::time::Instant::from_std(resume)).await;
        signal(args.leader_pid, libc::SIGCONT)?;
    }

    // Every acknowledged write must be readable through every member that answers.
    let (mut reads, mut missing, mut unanswered) = (0u64, 0u64, 0u64);
    let mut missing_example = None;
    for addr in &args.verify {
        let base = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for key in &acked {
            loop {
                match read_probe(&http, args.target, &base, key).await {
                    Ok(v) => {
                        reads += 1;
                        if v.as_deref() != Some(format!("v-{key}").as_str()) {
                            missing += 1;
                            missing_example.get_or_insert_with(|| format!("failover/{key} through {addr}: {v:?}"));
                        }
                        break;
                    }
                    // A member catching up after the fault answers 503 for a while.
                    Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => {
                        unanswered += 1;
                        break;
                    }
                }
            }
        }
    }

    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let report = json!({
        "target": args.target.name(),
        "fault": name,
        "addr": args.addr,
        "first_ack_ms": first.map(|f| ms(f.0)),
        "first_ack_sent_ms": first.map(|f| ms(f.1)),
        "interval_ms": args.interval_ms,
        "probes": probes,
        "failed": failed,
        "unknown": unknown,
        "closed_first_ack_ms": closed_first.map(ms),
        "closed_failed": closed_failed,
        "closed_longest_ms": closed_longest.map(ms),
        "closed_first_error": closed_error,
        "acked": acked.len(),
        "reads": reads,
        "missing_reads": missing,
        "unanswered_reads": unanswered,
        "missing_example": missing_example,
        "first_error": first_error,
        "last_error": last_error,
    });
    println!("{report}");
    let Some((at, sent)) = first else {
        bail!(
            "no write acknowledged within {} s: {}",
            args.max_seconds,
            report["last_error"]
        );
    };
    println!(
        "{} {name}: first write acknowledged {:.0} ms after the fault (sent at {:.0} ms); closed loop: {}; {} reads, {} missing",
        args.target.name(),
        ms(at),
        ms(sent),
        closed_first.map_or("none".to_string(), |d| format!("{:.0} ms", ms(d))),
        reads,
        missing
    );
    Ok(())
}
