//! Runs of jobs on the leader: the `jobs` driver launches each recorded run's task and follows
//! the task to the run's end (retrying it when the job's restart policy says so).
//!
//! A run is in the replicated state before its task exists, and the task's id is the run's,
//! with the attempt: a leader that takes over relaunches a task that was recorded but never
//! committed, and a launch that was committed is refused as a duplicate, so a run never gets
//! two tasks for one attempt.
//!
//! The jobs scheduler is a framework of its own on the master's in-process interface
//! ([`FRAMEWORK_ID`], in role `*`): it subscribes when its server starts leading, its tasks
//! are recorded as its own, their resources are held under it (so they count in the role's
//! share), and it acknowledges their status updates. It takes no offers: see
//! `JobRunner::launch` for why it places its tasks itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tepui_master::{FrameworkSpec, Master, SchedulerEvent};
use tepui_node::drivers::{Activation, Driver, Outcome, Wakes};
use tepui_node::now_ms;
use tepui_state::{
    ApplyError, Command, JobRunRecord, JobRunStatus, NodeStatus, Response, State, TaskDef, TaskState, VolumeDef,
};

use crate::calendar::Schedule;
use crate::metronome::{EnvValue, JobSpec, Volume};

/// A schedule's decision at one moment: its due runs up to `handled` are accounted for, by
/// `run` (if one starts), after the runs in `replace` are stopped (REPLACE).
#[derive(Debug, PartialEq)]
struct Scheduled {
    schedule: String,
    handled: u64,
    run: Option<JobRunRecord>,
    replace: Vec<JobRunRecord>,
}

/// A job read from the state, with its schedules parsed: read again only when the job
/// changes, not on every pass over thousands of jobs.
struct Parsed {
    updated_at: u64,
    job: Arc<JobSpec>,
    calendars: Vec<Option<Schedule>>,
    /// Each schedule's key in `job_schedules_handled`.
    keys: Vec<String>,
    /// Each schedule's next due time after the time it was accounted for up to, as last
    /// computed: while neither changed nor passed, a pass need not walk the calendar.
    upcoming: Vec<std::sync::Mutex<Option<(i64, Option<i64>)>>>,
}

/// The jobs of the state, parsed.
#[derive(Default)]
pub(crate) struct Jobs {
    by_id: HashMap<String, Parsed>,
}

impl Jobs {
    /// Brings the parsed jobs up to the state's.
    fn refresh(&mut self, s: &State) {
        self.by_id.retain(|id, _| s.jobs.contains_key(id));
        for (id, record) in &s.jobs {
            if self.by_id.get(id).is_some_and(|p| p.updated_at == record.updated_at) {
                continue;
            }
            let Ok(job) = serde_json::from_value::<JobSpec>(record.spec.clone()) else {
                self.by_id.remove(id);
                continue;
            };
            let calendars = job
                .schedules
                .iter()
                .map(|sc| Schedule::parse(&sc.cron, &sc.timezone, record.updated_at as i64).ok())
                .collect();
            let keys = job.schedules.iter().map(|sc| format!("{id}/{}", sc.id)).collect();
            let upcoming = job.schedules.iter().map(|_| std::sync::Mutex::new(None)).collect();
            self.by_id.insert(
                id.clone(),
                Parsed {
                    updated_at: record.updated_at,
                    job: Arc::new(job),
                    calendars,
                    keys,
                    upcoming,
                },
            );
        }
    }

    fn get(&self, id: &str) -> Option<&Arc<JobSpec>> {
        self.by_id.get(id).map(|p| &p.job)
    }
}

/// Keeps a schedule's next due time after `handled`.
fn remember(cache: &std::sync::Mutex<Option<(i64, Option<i64>)>>, handled: i64, next: Option<i64>) {
    if let Ok(mut c) = cache.lock() {
        *c = Some((handled, next));
    }
}

/// A run recorded now, its task not launched yet.
pub(crate) fn new_run(job_id: &str, id: String, now: u64, due_at: Option<u64>) -> JobRunRecord {
    JobRunRecord {
        job_id: job_id.to_string(),
        id,
        status: JobRunStatus::Initial,
        created_at: now,
        completed_at: None,
        due_at,
        tasks: vec![],
        arguments: vec![],
        exit_code: None,
        message: None,
    }
}

/// The runs of dependent jobs whose every parent succeeded since their last run (pure). A
/// disabled job waits, and so does one with a run still going: its next run starts when
/// that one ends.
fn dependents_ready(s: &State, jobs: &Jobs, now: u64, new_id: &mut dyn FnMut() -> String) -> Vec<JobRunRecord> {
    let mut busy = std::collections::HashSet::new();
    for r in s.job_runs.values() {
        busy.insert(r.job_id.as_str());
    }
    let mut out = Vec::new();
    for (job_id, succeeded) in &s.job_parents_succeeded {
        let Some(job) = jobs.get(job_id) else { continue };
        if job.disabled || busy.contains(job_id.as_str()) {
            continue;
        }
        if crate::graph::ready(&job.dependencies, succeeded) {
            out.push(new_run(job_id, new_id(), now, None));
        }
    }
    out
}

/// How many due times of one schedule one pass accounts for; more wait for the next pass,
/// which comes at once.
const DUE_PER_PASS: usize = 32;

/// What every job's schedule calls for at `now` (pure: the state and time in), and the next
/// due time of any of them. A schedule's due times are accounted for from the time it was
/// given (its job's last change), so a new or changed schedule never backfills. Under ALLOW
/// every due time within the starting deadline gets its run; FORBID and REPLACE start one
/// run for the newest.
fn schedule(s: &State, jobs: &Jobs, now: u64, new_id: &mut dyn FnMut() -> String) -> (Vec<Scheduled>, Option<u64>) {
    let mut active: HashMap<&str, Vec<&JobRunRecord>> = HashMap::new();
    for r in s.job_runs.values() {
        active.entry(r.job_id.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    let mut next: Option<u64> = None;
    let mut wake_at = |n: Option<i64>| {
        if let Some(n) = n {
            let n = n.max(0) as u64;
            next = Some(next.map_or(n, |m: u64| m.min(n)));
        }
    };
    for (job_id, record) in &s.jobs {
        let Some(parsed) = jobs.by_id.get(job_id) else { continue };
        let job = &parsed.job;
        for (i, (spec, calendar)) in job.schedules.iter().zip(&parsed.calendars).enumerate() {
            let Some(calendar) = calendar else { continue };
            let key = &parsed.keys[i];
            let handled = s.job_schedules_handled.get(key).copied().unwrap_or(record.updated_at) as i64;
            let cached = &parsed.upcoming[i];
            if let Some((h, next)) = cached.lock().map(|c| *c).unwrap_or(None) {
                if h == handled && next.is_none_or(|n| n > now as i64) {
                    wake_at(next);
                    continue;
                }
            }
            let deadline = Some((spec.starting_deadline_seconds.max(1)).saturating_mul(1000));
            let runs_now = spec.enabled && !job.disabled;
            let running: Vec<JobRunRecord> = active
                .get(job_id.as_str())
                .map(|v| v.iter().map(|r| (*r).clone()).collect())
                .unwrap_or_default();
            match spec.concurrency_policy.as_str() {
                "FORBID" | "REPLACE" => {
                    let due = calendar.newest_due(handled, now as i64, deadline);
                    wake_at(due.next);
                    if due.handled == handled {
                        remember(cached, handled, due.next);
                        continue;
                    }
                    let replace = spec.concurrency_policy == "REPLACE";
                    let starts = runs_now && due.run.is_some() && (replace || running.is_empty());
                    out.push(Scheduled {
                        schedule: key.clone(),
                        handled: due.handled.max(0) as u64,
                        run: starts.then(|| new_run(job_id, new_id(), now, due.run.map(|t| t.max(0) as u64))),
                        replace: if starts && replace { running } else { vec![] },
                    });
                }
                _ => {
                    let mut h = handled;
                    let mut upcoming: Option<i64> = None;
                    for _ in 0..DUE_PER_PASS {
                        let due = calendar.due(h, now as i64, deadline);
                        upcoming = due.next;
                        if due.handled == h {
                            if h == handled {
                                remember(cached, handled, due.next);
                            }
                            break;
                        }
                        out.push(Scheduled {
                            schedule: key.clone(),
                            handled: due.handled.max(0) as u64,
                            run: due
                                .run
                                .filter(|_| runs_now)
                                .map(|t| new_run(job_id, new_id(), now, Some(t.max(0) as u64))),
                            replace: vec![],
                        });
                        h = due.handled;
                    }
                    // Past the cap, the next is due already: the next pass comes at once.
                    wake_at(upcoming);
                }
            }
        }
    }
    (out, next)
}

/// How soon a launch that found no room is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The jobs scheduler's framework id (and name), reserved on the master.
pub const FRAMEWORK_ID: &str = "tepui-jobs";

/// The role the jobs' tasks run in. Metronome's jobs have no role of their own: they run in
/// the role of the framework (its `--mesos_role`, `*` unless configured); so do tepui's.
pub const JOBS_ROLE: &str = "*";

fn framework_spec() -> FrameworkSpec {
    FrameworkSpec {
        id: Some(FRAMEWORK_ID.to_string()),
        name: FRAMEWORK_ID.to_string(),
        user: "root".into(),
        roles: vec![JOBS_ROLE.into()],
        // It places its own tasks: no offers, ever.
        suppressed_roles: vec![JOBS_ROLE.into()],
        capabilities: vec!["PARTITION_AWARE".into()],
        // Its own: it comes back with every leader.
        failover_timeout_ms: 7 * 24 * 3600 * 1000,
        builtin: true,
        ..FrameworkSpec::default()
    }
}

/// Starts the `jobs` driver on `master`'s node, its framework id reserved.
pub fn start(master: Master) {
    master.register_builtin(FRAMEWORK_ID, "remove its jobs with `tepui job rm`");
    let node = master.node().clone();
    let stats = Arc::new(RunStats::default());
    let (collected, reader) = (stats.clone(), node.reader());
    node.metrics()
        .register("jobs", move |enc| render_jobs(enc, &collected, &reader));
    node.spawn_driver(
        "jobs",
        JobRunner {
            master,
            jobs: Jobs::default(),
            events: None,
            stats,
        },
        Wakes {
            waker: Default::default(),
            state_changes: true,
        },
    );
}

struct JobRunner {
    master: Master,
    jobs: Jobs,
    /// The task that acknowledges the framework's status updates; it ends with the
    /// subscription.
    events: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<RunStats>,
}

/// A scheduled run that starts later than this after its due time is late.
const LATE_AFTER_MS: u64 = 60_000;

/// What the jobs driver measures while leading, for `/metrics`.
struct RunStats {
    /// From a scheduled run's due time until its run is recorded.
    start_delay: tepui_metrics::Histogram,
    scheduled: tepui_metrics::Counter,
    late: tepui_metrics::Counter,
}

impl Default for RunStats {
    fn default() -> RunStats {
        RunStats {
            start_delay: tepui_metrics::Histogram::new(tepui_metrics::SLOW_BUCKETS),
            scheduled: tepui_metrics::Counter::default(),
            late: tepui_metrics::Counter::default(),
        }
    }
}

fn render_jobs(enc: &mut tepui_metrics::Encoder, stats: &RunStats, reader: &tepui_node::StateReader) {
    use tepui_metrics::Kind;
    let (jobs, active, succeeded, failed) = reader.read(|s| {
        let (ok, failed) = s
            .job_history
            .values()
            .fold((0, 0), |(o, f), h| (o + h.success_count, f + h.failure_count));
        (s.jobs.len(), s.job_runs.len(), ok, failed)
    });
    enc.single("tepui_jobs", "Jobs defined.", Kind::Gauge, jobs as f64);
    enc.single(
        "tepui_jobs_runs_active",
        "Job runs started and not finished.",
        Kind::Gauge,
        active as f64,
    );
    enc.family(
        "tepui_jobs_runs_finished_total",
        "Job runs finished, by result, over the jobs that exist (from the replicated history).",
        Kind::Counter,
    )
    .sample(
        "tepui_jobs_runs_finished_total",
        &[("result", "success")],
        succeeded as f64,
    )
    .sample(
        "tepui_jobs_runs_finished_total",
        &[("result", "failure")],
        failed as f64,
    );
    enc.single(
        "tepui_jobs_scheduled_runs_total",
        "Runs started by a schedule, by this server while leading.",
        Kind::Counter,
        stats.scheduled.get() as f64,
    );
    enc.single(
        "tepui_jobs_runs_late_total",
        "Scheduled runs started more than a minute after their due time.",
        Kind::Counter,
        stats.late.get() as f64,
    );
    enc.single_histogram(
        "tepui_jobs_run_start_delay_seconds",
        "From a scheduled run's due time until the leader recorded it.",
        &stats.start_delay,
    );
}

/// A run id as Metronome makes them: the time, then random letters and digits.
pub fn new_run_id(now: u64) -> String {
    use rand::Rng;
    let stamp = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now as i64)
        .map(|t| t.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    let mut rng = rand::rng();
    // Metronome's ids have five; eight keep thousands of runs started in one second apart.
    let tail: String = (0..8)
        .map(|_| {
            let c = rng.random_range(0..36u8);
            (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
        })
        .collect();
    format!("{stamp}{tail}")
}

/// The task id of a run's attempt (1, 2...).
pub fn task_id(run: &JobRunRecord, attempt: usize) -> String {
    format!("{}.{}.{attempt}", run.job_id, run.id)
}

/// What the driver does for one run now.
#[derive(Debug, PartialEq)]
enum Step {
    /// Record attempt `n`'s task id, then launch it.
    Launch {
        run_id: String,
        task_id: String,
        def: Box<TaskDef>,
    },
    /// The recorded attempt's task was never committed (a leader died between): launch it.
    Relaunch {
        task_id: String,
        def: Box<TaskDef>,
    },
    Status {
        run_id: String,
        status: JobRunStatus,
    },
    /// The latest attempt's agent was lost: the attempt failed. Its task's kill is asked for
    /// (carried out if the agent comes back) in the same write that records attempt `next`
    /// (launched after the backoff) or, without one, ends the run failed; so a new leader
    /// never finds the kill without the decision, and a run never has two attempts going.
    Lost {
        run_id: String,
        task_id: String,
        next: Option<String>,
        /// Why the attempt failed, for the run's history if it ends there.
        why: String,
    },
    /// Past its active deadline: its task is killed and the run fails.
    Expire {
        run: JobRunRecord,
    },
}

/// Decides, for every unfinished run, what comes next (pure: the state and time in, steps
/// out), and the soonest active deadline still ahead.
fn plan(s: &State, jobs: &Jobs, now: u64) -> (Vec<Step>, Option<u64>) {
    let mut steps = Vec::new();
    let mut next_deadline: Option<u64> = None;
    for run in s.job_runs.values() {
        let Some(job) = jobs.get(&run.job_id) else {
            steps.push(Step::Status {
                run_id: run.id.clone(),
                status: JobRunStatus::Failed,
            });
            continue;
        };
        // Counted from the run's start, across its attempts (as Kubernetes' job deadline).
        if let Some(secs) = job.run.restart.active_deadline_seconds {
            let deadline = run.created_at.saturating_add(secs.max(0) as u64 * 1000);
            if now >= deadline {
                steps.push(Step::Expire { run: run.clone() });
                continue;
            }
            next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
        let def = || Box::new(run_task_def(job, run));
        let Some(latest) = run.tasks.last() else {
            steps.push(Step::Launch {
                run_id: run.id.clone(),
                task_id: task_id(run, 1),
                def: def(),
            });
            continue;
        };
        // `retries` (Chronos') caps the attempts after the first; none is no cap.
        let attempts_left = job.run.restart.retries.is_none_or(|n| run.tasks.len() <= n as usize);
        let retries = job.run.restart.policy == "ON_FAILURE" && attempts_left;
        let Some(task) = s.tasks.get(latest) else {
            // Recorded, never committed: a leader died between, or a retry waits its backoff
            // after the attempt before it ended.
            let previous = run.tasks.len().checked_sub(2).and_then(|i| s.tasks.get(&run.tasks[i]));
            if let Some(prev) = previous {
                let again_at = prev
                    .finished_at
                    .unwrap_or(prev.updated_at)
                    .saturating_add(retry_backoff(run.tasks.len() - 1).as_millis() as u64);
                if now < again_at {
                    next_deadline = Some(next_deadline.map_or(again_at, |d| d.min(again_at)));
                    continue;
                }
            }
            steps.push(Step::Relaunch {
                task_id: latest.clone(),
                def: def(),
            });
            continue;
        };
        let agent_lost = task.state == TaskState::TaskUnreachable
            || s.nodes.get(&task.agent_id).is_none_or(|n| n.status == NodeStatus::Lost);
        if agent_lost && !task.state.is_terminal() {
            steps.push(if task.kill_requested {
                // Stopped (or drained) while its agent was away: not retried, as any kill.
                Step::Status {
                    run_id: run.id.clone(),
                    status: JobRunStatus::Failed,
                }
            } else {
                let agent = s.nodes.get(&task.agent_id).map_or("?", |n| n.name.as_str());
                Step::Lost {
                    run_id: run.id.clone(),
                    task_id: latest.clone(),
                    next: retries.then(|| task_id(run, run.tasks.len() + 1)),
                    why: format!("its agent {agent} was lost (task {latest} unreachable)"),
                }
            });
            continue;
        }
        match task.state {
            TaskState::TaskRunning if run.status != JobRunStatus::Active => steps.push(Step::Status {
                run_id: run.id.clone(),
                status: JobRunStatus::Active,
            }),
            TaskState::TaskFinished => steps.push(Step::Status {
                run_id: run.id.clone(),
                status: JobRunStatus::Success,
            }),
            st if st.is_terminal() => {
                if retries && !task.kill_requested {
                    // Backing off: 1 s after the first failure, doubling up to a minute.
                    let again_at = task
                        .finished_at
                        .unwrap_or(0)
                        .saturating_add(retry_backoff(run.tasks.len()).as_millis() as u64);
                    if now < again_at {
                        next_deadline = Some(next_deadline.map_or(again_at, |d| d.min(again_at)));
                        continue;
                    }
                    steps.push(Step::Launch {
                        run_id: run.id.clone(),
                        task_id: task_id(run, run.tasks.len() + 1),
                        def: def(),
                    });
                } else {
                    steps.push(Step::Status {
                        run_id: run.id.clone(),
                        status: JobRunStatus::Failed,
                    });
                }
            }
            _ => {}
        }
    }
    (steps, next_deadline)
}

/// An attempt whose agent was lost, as [`Step::Lost`] says.
struct Lost {
    run_id: String,
    task_id: String,
    next: Option<String>,
    why: String,
}

/// How long a run waits before its next attempt, after `failed` attempts failed.
pub fn retry_backoff(failed: usize) -> Duration {
    let exp = failed.saturating_sub(1).min(6) as u32;
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(60))
}

/// The task of one run: the job's, with the run's own arguments after the job's: after its
/// `args`, or at the end of its shell command (as Chronos appends them), each quoted there so
/// that it arrives as one argument.
fn run_task_def(job: &JobSpec, run: &JobRunRecord) -> TaskDef {
    let mut def = task_def(job);
    if run.arguments.is_empty() {
        return def;
    }
    match &job.run.cmd {
        Some(cmd) => {
            if let Some(script) = def.args.last_mut() {
                *script = crate::arguments::append_to_command(cmd, &run.arguments);
            }
        }
        None => def.args.extend(run.arguments.iter().cloned()),
    }
    def
}

/// The task a job's run launches.
pub fn task_def(job: &JobSpec) -> TaskDef {
    let r = &job.run;
    let image = r
        .docker
        .as_ref()
        .map(|d| d.image.clone())
        .or_else(|| r.ucr.as_ref().map(|u| u.image.id.clone()));
    let args = match (&r.cmd, &r.args) {
        (Some(cmd), _) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        (None, Some(args)) => args.clone(),
        (None, None) => vec![],
    };
    let env = r
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Text(t) => Some((k.clone(), t.clone())),
            EnvValue::Secret { .. } => None,
        })
        .collect();
    let source = |name: &str| {
        r.secrets
            .get(name)
            .and_then(|s| tepui_state::normalize_secret_path(&s.source).ok())
    };
    let mut secrets: Vec<tepui_state::SecretRef> = r
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Secret { secret } => Some(tepui_state::SecretRef {
                source: source(secret)?,
                env: Some(k.clone()),
                file: None,
            }),
            EnvValue::Text(_) => None,
        })
        .collect();
    let mut volumes = Vec::new();
    for v in &r.volumes {
        match v {
            Volume::Host {
                container_path,
                host_path,
                mode,
            } => volumes.push(VolumeDef {
                source: host_path.clone(),
                target: container_path.clone(),
                read_only: mode == "RO",
            }),
            Volume::Secret { container_path, secret } => {
                if let Some(source) = source(secret) {
                    secrets.push(tepui_state::SecretRef {
                        source,
                        env: None,
                        file: Some(container_path.clone()),
                    });
                }
            }
        }
    }
    TaskDef {
        image,
        args,
        env,
        user: r.user.clone(),
        cpus_milli: (r.cpus * 1000.0).round().max(1.0) as u64,
        mem_mb: r.mem.ceil() as u64,
        disk_mb: r.disk.ceil() as u64,
        volumes,
        kill_grace_ms: r
            .task_kill_grace_period_seconds
            .map(|s| s.max(0) as u64 * 1000)
            .unwrap_or(0),
        secrets,
        ..TaskDef::default()
    }
}

impl Driver for JobRunner {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        if !self.subscribe().await? {
            return Ok(None);
        }
        let node = self.master.node().clone();
        let now = now_ms();
        let jobs = &mut self.jobs;
        node.read(|s| jobs.refresh(s));
        let (scheduled, next_due) = node.read(|s| schedule(s, &self.jobs, now, &mut || new_run_id(now)));
        let mut more_due = false;
        let mut cmds = Vec::with_capacity(scheduled.len());
        for sc in scheduled {
            for old in &sc.replace {
                self.stop(old).await?;
            }
            cmds.push(Command::ScheduleJobRun {
                schedule: sc.schedule,
                handled: sc.handled,
                run: sc.run,
            });
        }
        // One log entry for every schedule due at this moment: thousands of jobs on one
        // minute start together.
        for (cmd, answer) in batch(&node, cmds).await? {
            let Command::ScheduleJobRun { schedule, run, .. } = cmd else {
                continue;
            };
            match answer {
                Ok(_) => {
                    more_due = true;
                    if let Some(run) = run {
                        if let Some(due) = run.due_at {
                            let delay = now.saturating_sub(due);
                            self.stats.start_delay.observe(Duration::from_millis(delay));
                            self.stats.scheduled.inc();
                            if delay > LATE_AFTER_MS {
                                self.stats.late.inc();
                            }
                        }
                        tracing::info!(%schedule, run = %run.id, due_at = ?run.due_at, "scheduled job run started");
                    }
                }
                // Accounted for already (by this leader's last pass, or the one before).
                Err(ApplyError::ScheduleHandled { .. }) => {}
                Err(e) => tracing::warn!(%schedule, error = %e, "schedule not recorded"),
            }
        }
        let dependents = node.read(|s| dependents_ready(s, &self.jobs, now, &mut || new_run_id(now)));
        let cmds = dependents
            .into_iter()
            .map(|run| Command::StartDependentRun { run })
            .collect();
        for (cmd, answer) in batch(&node, cmds).await? {
            let Command::StartDependentRun { run } = cmd else {
                continue;
            };
            match answer {
                Ok(_) => {
                    tracing::info!(job = %run.job_id, run = %run.id, "dependent job run started: its parents succeeded")
                }
                // Started already by an earlier pass: the wait begins anew.
                Err(ApplyError::JobNotReady { .. } | ApplyError::JobRunExists { .. }) => {}
                Err(e) => tracing::warn!(job = %run.job_id, error = %e, "dependent run not started"),
            }
        }
        let (steps, next_deadline) = node.read(|s| plan(s, &self.jobs, now));
        let mut statuses = Vec::new();
        let mut launches = Vec::new();
        let mut records = Vec::new();
        let mut lost = Vec::new();
        for step in steps {
            match step {
                Step::Status { run_id, status } => statuses.push(Command::SetJobRunStatus {
                    run_id,
                    status,
                    now: now_ms(),
                    message: None,
                }),
                Step::Launch { run_id, task_id, def } => {
                    // Recorded first: a new leader relaunches this very task, never another.
                    records.push(Command::JobRunTask {
                        run_id,
                        task_id: task_id.clone(),
                    });
                    launches.push((task_id, def));
                }
                Step::Relaunch { task_id, def } => launches.push((task_id, def)),
                Step::Lost {
                    run_id,
                    task_id,
                    next,
                    why,
                } => {
                    tracing::info!(run = %run_id, task = %task_id, retry = ?next, %why, "job run's attempt failed");
                    lost.push(Lost {
                        run_id,
                        task_id,
                        next,
                        why,
                    });
                }
                Step::Expire { run } => {
                    tracing::info!(run = %run.id, job = %run.job_id, "job run past its active deadline; stopping it");
                    self.stop(&run).await?;
                }
            }
        }
        for (cmd, answer) in batch(&node, statuses).await? {
            match (cmd, answer) {
                (Command::SetJobRunStatus { run_id, status, .. }, Ok(_)) => {
                    tracing::info!(run = %run_id, status = ?status, "job run")
                }
                (cmd, Err(e)) => return Err(format!("{}: {e}", cmd.kind())),
                _ => {}
            }
        }
        for (cmd, answer) in batch(&node, records).await? {
            if let Err(e) = answer {
                return Err(format!("{}: {e}", cmd.kind()));
            }
        }
        self.abandon(lost).await?;
        let waiting = !self.launch(launches).await;
        let soonest = match (next_due, next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_due = soonest.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1)));
        let retry = (waiting || more_due).then_some(if more_due { Duration::from_millis(1) } else { RETRY });
        Ok(match (retry, until_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn step_down(&mut self) {
        if let Some(events) = self.events.take() {
            events.abort();
        }
    }
}

/// Stops a run (by hand, REPLACE, a deadline): its task killed, the run ended failed.
pub(crate) async fn stop_run(master: &Master, run: &JobRunRecord) -> Result<(), String> {
    let node = master.node();
    if let Some(task) = run.tasks.last() {
        let live = node.read(|s| s.tasks.get(task).is_some_and(|t| !t.state.is_terminal()));
        if live {
            master
                .kill(task)
                .await
                .map_err(|e| format!("stopping run {}: {e}", run.id))?;
        }
    }
    let cmd = Command::SetJobRunStatus {
        run_id: run.id.clone(),
        status: JobRunStatus::Failed,
        now: now_ms(),
        message: None,
    };
    if let Err(e) = node.write(cmd).await {
        // Gone already (it ended, or another pass stopped it) is what was wanted.
        if node.read(|s| s.job_runs.contains_key(&run.id)) {
            return Err(format!("stopping run {}: {e}", run.id));
        }
    }
    tracing::info!(job = %run.job_id, run = %run.id, "job run stopped");
    Ok(())
}

/// Commits `cmds` (in as few log entries as the store allows) and pairs each with its answer.
async fn batch(
    node: &tepui_node::Node,
    cmds: Vec<Command>,
) -> Result<Vec<(Command, Result<Response, ApplyError>)>, String> {
    if cmds.is_empty() {
        return Ok(vec![]);
    }
    let answers = node.write_batch(cmds.clone()).await.map_err(|e| e.to_string())?;
    Ok(cmds.into_iter().zip(answers).collect())
}

impl JobRunner {
    async fn stop(&self, run: &JobRunRecord) -> Result<(), String> {
        stop_run(&self.master, run).await
    }

    /// Subscribes the jobs framework unless it is subscribed; `false`: not yet possible (a
    /// cluster being bootstrapped), and the next change of the state wakes the driver again.
    /// Its status updates are acknowledged as they come (in one write for all that are
    /// queued): the runs follow their tasks in the state, not in the updates.
    async fn subscribe(&mut self) -> Result<bool, String> {
        if self.events.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(true);
        }
        let sub = match self.master.subscribe(framework_spec()).await {
            Ok(sub) => sub,
            Err(e) if e.code == "not_initialized" => return Ok(false),
            Err(e) => return Err(format!("cannot subscribe the jobs framework yet: {e}")),
        };
        tracing::info!(framework = FRAMEWORK_ID, "jobs framework subscribed");
        let master = self.master.clone();
        let mut events = sub.events;
        self.events = Some(tokio::spawn(async move {
            while let Some(first) = events.recv().await {
                let mut queued = vec![first];
                while let Some(e) = events.try_recv() {
                    queued.push(e);
                }
                let mut acks = Vec::new();
                for e in queued {
                    match e {
                        SchedulerEvent::Update(status) => {
                            if let Some(uuid) = status.uuid {
                                acks.push((status.task_id, uuid));
                            }
                        }
                        SchedulerEvent::Error { message } => tracing::warn!(%message, "jobs framework error"),
                        _ => {}
                    }
                }
                for (task, e) in master.acknowledge_all(FRAMEWORK_ID, &acks).await {
                    tracing::debug!(%task, error = %e, "acknowledgement not recorded");
                }
            }
            // The driver subscribes again at its next activation, if it still leads.
            tracing::info!("jobs framework lost its subscription");
        }));
        Ok(true)
    }

    /// Ends the attempts whose agents were lost. Each task's kill and its run's next step
    /// (the next attempt recorded, or the run failed) are one pair in one write: a list of at
    /// most `MAX_BATCH` commands is one log entry, so a pair is never split by a leader's
    /// death. The kills are then sent to agents that are back already (those still away get
    /// them when they register: `Master::on_register`).
    async fn abandon(&self, lost: Vec<Lost>) -> Result<(), String> {
        if lost.is_empty() {
            return Ok(());
        }
        let node = self.master.node();
        let now = now_ms();
        for chunk in lost.chunks(tepui_state::MAX_BATCH / 2) {
            let cmds = chunk
                .iter()
                .flat_map(|l| {
                    let then = match &l.next {
                        Some(next) => Command::JobRunTask {
                            run_id: l.run_id.clone(),
                            task_id: next.clone(),
                        },
                        None => Command::SetJobRunStatus {
                            run_id: l.run_id.clone(),
                            status: JobRunStatus::Failed,
                            now,
                            message: Some(l.why.clone()),
                        },
                    };
                    [
                        Command::KillTask {
                            task_id: l.task_id.clone(),
                            now,
                        },
                        then,
                    ]
                })
                .collect();
            for (cmd, answer) in batch(node, cmds).await? {
                // The run ended meanwhile (stopped by hand): nothing more to decide.
                if let Err(e) = answer {
                    tracing::debug!(command = cmd.kind(), error = %e, "lost attempt's step refused");
                }
            }
        }
        let ids: Vec<String> = lost.into_iter().map(|l| l.task_id).collect();
        for (id, answer) in ids.iter().zip(self.master.kill_all(&ids, None).await) {
            if let Err(e) = answer {
                tracing::debug!(task = %id, error = %e, "kill of a lost attempt not sent");
            }
        }
        Ok(())
    }

    /// Launches the runs' tasks (all in one batch), each on an agent that meets its job's
    /// constraints; false when some must be tried again (no room yet).
    ///
    /// The jobs framework places its tasks itself ([`Master::launch_direct_many`]: one tally
    /// of free resources, one write for the whole batch) instead of taking offers. Offers
    /// would make each pass revive, wait for the allocator's next run, and answer every
    /// agent's offer with an ACCEPT of its own (a write each), so the thousands of runs due at
    /// one minute would go out offer by offer; docs/benchmarks.md ("Batch jobs") records the
    /// launch rate of this path. The resources are still the allocator's to account: they are
    /// taken from it under this framework and role (an offer holding them is rescinded
    /// first), as an ACCEPT takes them, and the state's fit check guards each agent. Exactly
    /// once is not the placement's but the task id's: each attempt's id is recorded before
    /// its launch, and a second launch of it is refused.
    async fn launch(&self, launches: Vec<(String, Box<TaskDef>)>) -> bool {
        if launches.is_empty() {
            return true;
        }
        let node = self.master.node();
        let batch: Vec<tepui_master::DirectLaunch> = launches
            .into_iter()
            .map(|(task_id, def)| {
                let name = task_id.rsplitn(3, '.').last().unwrap_or("job").to_string();
                let constraints = self
                    .jobs
                    .get(&name)
                    .map(|j| j.run.placement.constraints.clone())
                    .unwrap_or_default();
                let agents = (!constraints.is_empty()).then(|| node.read(|s| agents_meeting(s, &constraints)));
                tepui_master::DirectLaunch {
                    id: task_id,
                    name,
                    def: *def,
                    agents,
                    role: JOBS_ROLE.to_string(),
                }
            })
            .collect();
        let ids: Vec<String> = batch.iter().map(|l| l.id.clone()).collect();
        let mut all_placed = true;
        let answers = self.master.launch_direct_many(FRAMEWORK_ID, batch).await;
        for (id, answer) in ids.iter().zip(answers) {
            match answer {
                Ok(()) => tracing::info!(task = %id, "job run's task launched"),
                // Committed before (by this leader or the one before): nothing to do.
                Err(e) if e.code == "task_exists" => {}
                Err(e) => {
                    tracing::debug!(task = %id, error = %e, "job run's task not launched yet");
                    all_placed = false;
                }
            }
        }
        all_placed
    }
}

/// The ready agents that meet every constraint (Metronome's IS/EQ, LIKE, UNLIKE), the
/// freest first.
fn agents_meeting(s: &State, constraints: &[crate::metronome::Constraint]) -> Vec<u64> {
    use tepui_services::constraints::{check_all, AgentInfo, Constraint};
    let parsed: Vec<Constraint> = constraints
        .iter()
        .filter_map(|c| {
            let op = if c.operator == "EQ" { "IS" } else { c.operator.as_str() };
            let mut parts = vec![c.attribute.clone(), op.to_string()];
            parts.extend(c.value.clone());
            Constraint::parse(&parts).ok()
        })
        .collect();
    let mut out: Vec<(u64, u64)> = s
        .nodes
        .values()
        .filter(|n| n.status == tepui_state::NodeStatus::Ready)
        .filter_map(|n| {
            let agent = n.agent.as_ref()?;
            let info = AgentInfo {
                id: n.id.to_string(),
                hostname: n.name.clone(),
                attributes: agent.attributes.clone(),
            };
            check_all(&parsed, &info, &[]).ok()?;
            Some((n.id, s.free_on(n.id).map(|f| f.cpus_milli).unwrap_or(0)))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1));
    out.into_iter().map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &State) -> Jobs {
        let mut jobs = Jobs::default();
        jobs.refresh(s);
        jobs
    }

    fn job(policy: &str) -> serde_json::Value {
        serde_json::json!({"id": "j", "run": {"cmd": "echo hi", "cpus": 0.1, "mem": 32, "restart": {"policy": policy}}})
    }

    /// A state with job `j` of `spec` and its run `r1`.
    fn state_of(spec: serde_json::Value, status: JobRunStatus, created_at: u64, tasks: &[&str]) -> State {
        let mut s = tepui_state::testing::state_with_agents(1, 4096);
        s.apply(
            1,
            &Command::PutJob {
                id: "j".into(),
                spec,
                create: true,
                now: 1,
            },
        );
        s.apply(
            2,
            &Command::StartJobRun {
                run: JobRunRecord {
                    job_id: "j".into(),
                    id: "r1".into(),
                    status,
                    created_at,
                    completed_at: None,
                    due_at: None,
                    tasks: tasks.iter().map(|t| t.to_string()).collect(),
                    arguments: vec![],
                    exit_code: None,
                    message: None,
                },
            },
        );
        s
    }

    fn state_with_run(policy: &str) -> State {
        state_of(job(policy), JobRunStatus::Initial, 2, &[])
    }

    fn with_task(s: &mut State, id: &str, state: TaskState) {
        let def = task_def(&serde_json::from_value(job("NEVER")).unwrap());
        let mut t = tepui_state::TaskRecord::staging(id, "j", 1, def, 3);
        t.state = state;
        s.tasks.insert(id.into(), t);
    }

    #[test]
    fn a_run_launches_then_follows_its_task() {
        let mut s = state_with_run("NEVER");
        let steps = plan(&s, &parsed(&s), 10).0;
        assert!(
            matches!(&steps[..], [Step::Launch { task_id, .. }] if task_id == "j.r1.1"),
            "{steps:?}"
        );
        s.apply(
            3,
            &Command::JobRunTask {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
            },
        );
        // Recorded but not committed: the same task again, never a new one.
        assert!(matches!(&plan(&s, &parsed(&s), 10).0[..], [Step::Relaunch { task_id, .. }] if task_id == "j.r1.1"));
        with_task(&mut s, "j.r1.1", TaskState::TaskRunning);
        assert_eq!(
            plan(&s, &parsed(&s), 10).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Active
            }]
        );
        with_task(&mut s, "j.r1.1", TaskState::TaskFinished);
        assert_eq!(
            plan(&s, &parsed(&s), 10).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Success
            }]
        );
    }

    #[test]
    fn a_run_past_its_active_deadline_is_stopped() {
        let spec = serde_json::json!({"id": "j", "run": {"cmd": "sleep 100",
            "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 5}}});
        let mut s = state_of(spec, JobRunStatus::Active, 1_000, &["j.r1.1"]);
        with_task(&mut s, "j.r1.1", TaskState::TaskRunning);
        let (steps, next) = plan(&s, &parsed(&s), 5_999);
        assert_eq!((steps, next), (vec![], Some(6_000)), "still within its deadline");
        let (steps, _) = plan(&s, &parsed(&s), 6_000);
        assert!(
            matches!(&steps[..], [Step::Expire { run }] if run.id == "r1"),
            "{steps:?}"
        );
    }

    #[test]
    fn a_failed_run_is_retried_only_on_failure_policy() {
        let mut never = state_with_run("NEVER");
        never.apply(
            3,
            &Command::JobRunTask {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
            },
        );
        with_task(&mut never, "j.r1.1", TaskState::TaskFailed);
        assert_eq!(
            plan(&never, &parsed(&never), 10).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Failed
            }]
        );

        let mut retry = state_with_run("ON_FAILURE");
        retry.apply(
            3,
            &Command::JobRunTask {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
            },
        );
        with_task(&mut retry, "j.r1.1", TaskState::TaskFailed);
        retry.tasks.get_mut("j.r1.1").unwrap().finished_at = Some(10);
        // Backing off a second after the failure, then the next attempt.
        assert_eq!(plan(&retry, &parsed(&retry), 500), (vec![], Some(1_010)));
        assert!(
            matches!(&plan(&retry, &parsed(&retry), 1_010).0[..], [Step::Launch { task_id, .. }] if task_id == "j.r1.2")
        );
        assert_eq!(
            (retry_backoff(1), retry_backoff(3), retry_backoff(20)),
            (Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(60))
        );
    }

    /// A state with run `r1` of `j` (`policy`) on attempt 1, whose task is `state` on agent 1.
    fn attempt_in(policy: &str, state: TaskState) -> State {
        let mut s = state_with_run(policy);
        s.apply(
            3,
            &Command::JobRunTask {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
            },
        );
        with_task(&mut s, "j.r1.1", state);
        let t = s.tasks.get_mut("j.r1.1").unwrap();
        t.updated_at = 100;
        t.message = "agent a1 is unreachable: no heartbeat within the timeout".into();
        s
    }

    /// What the driver writes for a `Step::Lost`, as one entry.
    fn abandon_in(s: &mut State, step: &Step, now: u64) {
        let Step::Lost {
            run_id,
            task_id,
            next,
            why,
        } = step
        else {
            panic!("not a lost attempt: {step:?}");
        };
        let then = match next {
            Some(next) => Command::JobRunTask {
                run_id: run_id.clone(),
                task_id: next.clone(),
            },
            None => Command::SetJobRunStatus {
                run_id: run_id.clone(),
                status: JobRunStatus::Failed,
                now,
                message: Some(why.clone()),
            },
        };
        let kill = Command::KillTask {
            task_id: task_id.clone(),
            now,
        };
        let answer = s.apply(4, &Command::Batch { cmds: vec![kill, then] });
        assert_eq!(answer, Response::Batch(vec![Response::Ok, Response::Ok]));
    }

    #[test]
    fn an_attempt_whose_agent_is_lost_fails_and_is_retried_after_its_backoff() {
        let mut s = attempt_in("ON_FAILURE", TaskState::TaskUnreachable);
        let steps = plan(&s, &parsed(&s), 200).0;
        assert_eq!(
            steps,
            vec![Step::Lost {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
                next: Some("j.r1.2".into()),
                why: "its agent a1 was lost (task j.r1.1 unreachable)".into(),
            }]
        );
        abandon_in(&mut s, &steps[0], 200);
        // The lost task is to be killed (by its agent, if it comes back), and the run is on
        // its second attempt: a leader that takes over now decides the same from the state.
        assert!(s.tasks["j.r1.1"].kill_requested);
        assert_eq!(s.job_runs["r1"].tasks, vec!["j.r1.1", "j.r1.2"]);
        // The retry waits a second after the loss, then launches the recorded attempt.
        assert_eq!(plan(&s, &parsed(&s), 500), (vec![], Some(1_200)));
        assert!(matches!(&plan(&s, &parsed(&s), 1_200).0[..], [Step::Relaunch { task_id, .. }] if task_id == "j.r1.2"));
        // The agent comes back and its task is killed: the run follows attempt 2 only.
        s.tasks.get_mut("j.r1.1").unwrap().state = TaskState::TaskKilled;
        with_task(&mut s, "j.r1.2", TaskState::TaskRunning);
        assert_eq!(
            plan(&s, &parsed(&s), 1_300).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Active
            }]
        );
    }

    #[test]
    fn an_attempt_whose_agent_is_lost_fails_the_run_under_never() {
        let mut s = attempt_in("NEVER", TaskState::TaskUnreachable);
        let steps = plan(&s, &parsed(&s), 200).0;
        assert_eq!(
            steps,
            vec![Step::Lost {
                run_id: "r1".into(),
                task_id: "j.r1.1".into(),
                next: None,
                why: "its agent a1 was lost (task j.r1.1 unreachable)".into(),
            }]
        );
        abandon_in(&mut s, &steps[0], 200);
        assert!(s.job_runs.is_empty(), "the run ended");
        assert!(s.tasks["j.r1.1"].kill_requested);
        let h = &s.job_history["j"];
        assert_eq!((h.failure_count, h.finished[0].status), (1, JobRunStatus::Failed));
        assert_eq!(
            h.finished[0].message.as_deref(),
            Some("its agent a1 was lost (task j.r1.1 unreachable)"),
            "the history says why"
        );
    }

    #[test]
    fn a_lost_agent_counts_before_its_tasks_are_marked_and_retries_run_out() {
        // The agent is marked lost; its task is not marked unreachable yet.
        let mut s = attempt_in("ON_FAILURE", TaskState::TaskRunning);
        s.nodes.get_mut(&1).unwrap().status = NodeStatus::Lost;
        assert!(matches!(
            &plan(&s, &parsed(&s), 200).0[..],
            [Step::Lost { next: Some(n), .. }] if n == "j.r1.2"
        ));
        // No retry left: the run fails.
        let spec =
            serde_json::json!({"id": "j", "run": {"cmd": "true", "restart": {"policy": "ON_FAILURE", "retries": 0}}});
        let mut none_left = state_of(spec, JobRunStatus::Active, 2, &["j.r1.1"]);
        with_task(&mut none_left, "j.r1.1", TaskState::TaskUnreachable);
        assert!(matches!(
            &plan(&none_left, &parsed(&none_left), 200).0[..],
            [Step::Lost { next: None, .. }]
        ));
        // Stopped while its agent is away (its kill waits for the agent): failed, not retried.
        let mut stopped = attempt_in("ON_FAILURE", TaskState::TaskUnreachable);
        stopped.nodes.get_mut(&1).unwrap().status = NodeStatus::Lost;
        stopped.apply(
            4,
            &Command::KillTask {
                task_id: "j.r1.1".into(),
                now: 150,
            },
        );
        assert_eq!(stopped.tasks["j.r1.1"].state, TaskState::TaskKilling);
        assert_eq!(
            plan(&stopped, &parsed(&stopped), 200).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Failed
            }]
        );
    }

    #[test]
    fn a_runs_arguments_follow_the_jobs() {
        let shell: JobSpec = serde_json::from_value(job("NEVER")).unwrap();
        let mut run = new_run("j", "r1".into(), 1, None);
        run.arguments = vec!["a".into(), "b c".into()];
        assert_eq!(
            run_task_def(&shell, &run).args,
            vec!["/bin/sh", "-c", "echo hi a 'b c'"]
        );
        let direct: JobSpec =
            serde_json::from_value(serde_json::json!({"id": "j", "run": {"args": ["echo", "hi"]}})).unwrap();
        assert_eq!(run_task_def(&direct, &run).args, vec!["echo", "hi", "a", "b c"]);
        run.arguments.clear();
        assert_eq!(run_task_def(&shell, &run).args, vec!["/bin/sh", "-c", "echo hi"]);
    }

    const MIN: u64 = 60_000;
    /// 2026-01-01T00:10:30Z
    const NOW: u64 = 1_767_226_230_000;

    fn scheduled_job(cron: &str, policy: &str, deadline: u64, enabled: bool, defined_at: u64) -> State {
        let mut s = tepui_state::testing::state_with_agents(1, 4096);
        s.apply(
            1,
            &Command::PutJob {
                id: "j".into(),
                spec: serde_json::json!({"id": "j", "run": {"cmd": "true"}, "schedules": [{"id": "s", "cron": cron,
                    "concurrencyPolicy": policy, "startingDeadlineSeconds": deadline, "enabled": enabled}]}),
                create: true,
                now: defined_at,
            },
        );
        s
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("run{n}")
        }
    }

    #[test]
    fn every_due_run_starts_once_and_the_schedule_is_accounted_for() {
        // Defined at 00:08:00; at 00:10:30 the runs of 00:09 and 00:10 are due, both within
        // their deadline: each starts, in order, once.
        let mut s = scheduled_job("* * * * *", "ALLOW", 900, true, NOW - 150_000);
        let (out, next) = schedule(&s, &parsed(&s), NOW, &mut ids());
        assert_eq!(out.len(), 2, "{out:?}");
        let due: Vec<Option<u64>> = out.iter().map(|o| o.run.as_ref().and_then(|r| r.due_at)).collect();
        assert_eq!(due, vec![Some(NOW - 90_000), Some(NOW - 30_000)]);
        assert_eq!((out[1].schedule.as_str(), out[1].handled), ("j/s", NOW - 30_000));
        assert_eq!(next, Some(NOW + 30_000));
        let cmds: Vec<Command> = out
            .iter()
            .map(|o| Command::ScheduleJobRun {
                schedule: o.schedule.clone(),
                handled: o.handled,
                run: o.run.clone(),
            })
            .collect();
        for (i, cmd) in cmds.iter().enumerate() {
            assert!(matches!(s.apply(2 + i as u64, cmd), tepui_state::Response::Ok));
        }
        // The same decisions again (a late write of an old leader): refused, nothing doubled.
        for cmd in &cmds {
            assert!(matches!(s.apply(9, cmd), tepui_state::Response::Rejected(_)));
        }
        assert_eq!(s.job_runs.len(), 2);
        // Nothing more is due until the next minute.
        assert_eq!(schedule(&s, &parsed(&s), NOW + 1_000, &mut ids()).0, vec![]);
        assert_eq!(schedule(&s, &parsed(&s), NOW + 30_000, &mut ids()).0.len(), 1);
    }

    #[test]
    fn a_remembered_next_due_time_still_fires_when_it_comes() {
        let s = scheduled_job("* * * * *", "ALLOW", 900, true, NOW - 10_000);
        let jobs = parsed(&s);
        // Nothing due yet; the next due minute is remembered...
        assert_eq!(schedule(&s, &jobs, NOW, &mut ids()), (vec![], Some(NOW + 30_000)));
        assert_eq!(
            schedule(&s, &jobs, NOW + 1_000, &mut ids()),
            (vec![], Some(NOW + 30_000))
        );
        // ...and when it comes, it is due.
        let (out, _) = schedule(&s, &jobs, NOW + 30_000, &mut ids());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].run.as_ref().and_then(|r| r.due_at), Some(NOW + 30_000));
    }

    #[test]
    fn a_disabled_job_accounts_for_its_due_times_without_running_them() {
        let mut s = tepui_state::testing::state_with_agents(1, 4096);
        s.apply(
            1,
            &Command::PutJob {
                id: "j".into(),
                spec: serde_json::json!({"id": "j", "disabled": true, "run": {"cmd": "true"},
                    "schedules": [{"id": "s", "cron": "R/2026-01-01T00:00:00Z/PT2S"}]}),
                create: true,
                now: NOW - 5_000,
            },
        );
        let (out, _) = schedule(&s, &parsed(&s), NOW, &mut ids());
        assert!(!out.is_empty() && out.iter().all(|o| o.run.is_none()), "{out:?}");
    }

    #[test]
    fn missed_runs_past_their_deadline_and_disabled_schedules_do_not_run() {
        // Hourly; defined an hour ago; the 00:00 run is 10.5 minutes late, past 60 s.
        let s = scheduled_job("0 * * * *", "ALLOW", 60, true, NOW - 60 * MIN);
        let (out, _) = schedule(&s, &parsed(&s), NOW, &mut ids());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].run.as_ref(), out[0].handled), (None, NOW));
        let off = scheduled_job("* * * * *", "ALLOW", 900, false, NOW - 150_000);
        let (out, _) = schedule(&off, &parsed(&off), NOW, &mut ids());
        assert_eq!(out[0].run, None);
        // A schedule given after the due time never backfills it.
        let fresh = scheduled_job("* * * * *", "ALLOW", 900, true, NOW - 10_000);
        assert_eq!(schedule(&fresh, &parsed(&fresh), NOW, &mut ids()).0, vec![]);
    }

    #[test]
    fn forbid_skips_while_a_run_is_active_and_replace_stops_it() {
        for (policy, starts, replaces) in [("FORBID", false, 0), ("REPLACE", true, 1), ("ALLOW", true, 0)] {
            let mut s = scheduled_job("* * * * *", policy, 900, true, NOW - 150_000);
            s.apply(
                2,
                &Command::StartJobRun {
                    run: JobRunRecord {
                        job_id: "j".into(),
                        id: "busy".into(),
                        status: JobRunStatus::Active,
                        created_at: 0,
                        completed_at: None,
                        due_at: None,
                        tasks: vec![],
                        arguments: vec![],
                        exit_code: None,
                        message: None,
                    },
                },
            );
            let (out, _) = schedule(&s, &parsed(&s), NOW, &mut ids());
            assert_eq!(out[0].run.is_some(), starts, "{policy}");
            assert_eq!(out[0].replace.len(), replaces, "{policy}");
        }
    }

    #[test]
    fn a_child_runs_once_each_parent_succeeded_and_waits_again() {
        let mut s = tepui_state::testing::state_with_agents(1, 4096);
        let put = |s: &mut State, id: &str, deps: &[&str]| {
            let deps: Vec<serde_json::Value> = deps.iter().map(|d| serde_json::json!({"id": d})).collect();
            s.apply(
                1,
                &Command::PutJob {
                    id: id.into(),
                    spec: serde_json::json!({"id": id, "dependencies": deps, "run": {"cmd": "true"}}),
                    create: true,
                    now: 1,
                },
            );
        };
        put(&mut s, "a", &[]);
        put(&mut s, "b", &[]);
        put(&mut s, "c", &["a", "b"]);
        let finish = |s: &mut State, job: &str, status: JobRunStatus| {
            let run = JobRunRecord {
                job_id: job.into(),
                id: format!("{job}-run"),
                status: JobRunStatus::Active,
                created_at: 2,
                completed_at: None,
                due_at: None,
                tasks: vec![],
                arguments: vec![],
                exit_code: None,
                message: None,
            };
            s.apply(2, &Command::StartJobRun { run });
            s.apply(
                3,
                &Command::SetJobRunStatus {
                    run_id: format!("{job}-run"),
                    status,
                    now: 3,
                    message: None,
                },
            );
        };
        assert!(dependents_ready(&s, &parsed(&s), 10, &mut ids()).is_empty());
        finish(&mut s, "a", JobRunStatus::Success);
        assert!(
            dependents_ready(&s, &parsed(&s), 10, &mut ids()).is_empty(),
            "b has not succeeded yet"
        );
        finish(&mut s, "b", JobRunStatus::Failed);
        assert!(
            dependents_ready(&s, &parsed(&s), 10, &mut ids()).is_empty(),
            "a failed parent holds its child"
        );
        finish(&mut s, "b", JobRunStatus::Success);
        let ready = dependents_ready(&s, &parsed(&s), 10, &mut ids());
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].job_id, "c");
        let start = Command::StartDependentRun { run: ready[0].clone() };
        assert!(matches!(s.apply(4, &start), tepui_state::Response::Ok));
        // Started: the wait begins again, and the same start is refused.
        assert!(dependents_ready(&s, &parsed(&s), 10, &mut ids()).is_empty());
        assert!(matches!(s.apply(5, &start), tepui_state::Response::Rejected(_)));
    }

    #[test]
    fn a_run_recorded_as_succeeded_goes_to_history_and_readies_its_children() {
        let mut s = tepui_state::testing::state_with_agents(1, 4096);
        for (id, deps) in [("p", json_deps(&[])), ("c", json_deps(&["p"]))] {
            s.apply(
                1,
                &Command::PutJob {
                    id: id.into(),
                    spec: serde_json::json!({"id": id, "dependencies": deps, "run": {"cmd": "true"}}),
                    create: true,
                    now: 1,
                },
            );
        }
        let mut marked = new_run("p", "m1".into(), 5, None);
        marked.status = JobRunStatus::Success;
        marked.completed_at = Some(5);
        assert!(matches!(
            s.apply(2, &Command::StartJobRun { run: marked }),
            tepui_state::Response::Ok
        ));
        assert!(s.job_runs.is_empty(), "never launched");
        assert_eq!(s.job_history["p"].success_count, 1);
        let ready = dependents_ready(&s, &parsed(&s), 10, &mut ids());
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].job_id, "c");
        // A child with a run still going waits for it to end.
        s.apply(
            3,
            &Command::StartJobRun {
                run: new_run("c", "busy".into(), 6, None),
            },
        );
        assert!(dependents_ready(&s, &parsed(&s), 10, &mut ids()).is_empty());
    }

    fn json_deps(ids: &[&str]) -> Vec<serde_json::Value> {
        ids.iter().map(|d| serde_json::json!({"id": d})).collect()
    }

    #[test]
    fn the_task_of_a_job() {
        let j: JobSpec = serde_json::from_value(serde_json::json!({"id": "j", "run": {
            "cmd": "echo $A", "cpus": 0.5, "mem": 64, "env": {"A": "1", "S": {"secret": "s"}},
            "secrets": {"s": {"source": "/db/pw"}}, "docker": {"image": "busybox"},
            "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"}]}}))
        .unwrap();
        let d = task_def(&j);
        assert_eq!(d.image.as_deref(), Some("busybox"));
        assert_eq!(d.args, vec!["/bin/sh", "-c", "echo $A"]);
        assert_eq!((d.cpus_milli, d.mem_mb), (500, 64));
        assert_eq!(d.env.get("A").map(String::as_str), Some("1"));
        assert!(!d.env.contains_key("S"));
        assert_eq!(d.secrets[0].source, "db/pw");
        assert_eq!(d.volumes[0].target, "/data");
    }
}
