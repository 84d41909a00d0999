//! Runs of jobs on the leader: the `jobs` driver launches each recorded run's task and follows
//! the task to the run's end (retrying it when the job's restart policy says so).
//!
//! A run is in the replicated state before its task exists, and the task's id is the run's,
//! with the attempt: a leader that takes over relaunches a task that was recorded but never
//! committed, and a launch that was committed is refused as a duplicate, so a run never gets
//! two tasks for one attempt.

use std::time::Duration;

use tepui_master::Master;
use tepui_node::drivers::{Activation, Driver, Outcome, Wakes};
use tepui_node::now_ms;
use tepui_state::{Command, JobRunRecord, JobRunStatus, State, TaskDef, TaskState, VolumeDef};

use crate::calendar::{time_zone, Cron, Schedule};
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

/// The runs of dependent jobs whose every parent succeeded since their last run (pure).
fn dependents_ready(s: &State, now: u64, new_id: &mut dyn FnMut() -> String) -> Vec<JobRunRecord> {
    let mut out = Vec::new();
    for job_id in s.jobs.keys() {
        let parents = tepui_state::job_dependencies(&s.jobs[job_id].spec);
        let succeeded = s.job_parents_succeeded.get(job_id).cloned().unwrap_or_default();
        if crate::graph::ready(&parents, &succeeded) {
            out.push(JobRunRecord {
                job_id: job_id.clone(),
                id: new_id(),
                status: JobRunStatus::Initial,
                created_at: now,
                completed_at: None,
                due_at: None,
                tasks: vec![],
            });
        }
    }
    out
}

/// What every job's schedule calls for at `now` (pure: the state and time in), and the next
/// due time of any of them. A schedule's due times are accounted for from the time it was
/// given (its job's last change), so a new or changed schedule never backfills.
fn schedule(s: &State, now: u64, new_id: &mut dyn FnMut() -> String) -> (Vec<Scheduled>, Option<u64>) {
    let mut out = Vec::new();
    let mut next: Option<u64> = None;
    for (job_id, record) in &s.jobs {
        let Ok(job) = serde_json::from_value::<JobSpec>(record.spec.clone()) else {
            continue;
        };
        for spec in &job.schedules {
            let key = format!("{job_id}/{}", spec.id);
            let handled = s.job_schedules_handled.get(&key).copied().unwrap_or(record.updated_at);
            let (Ok(cron), Ok(tz)) = (Cron::parse(&spec.cron), time_zone(&spec.timezone)) else {
                continue;
            };
            let calendar = Schedule::Cron { cron, tz };
            let deadline = (spec.starting_deadline_seconds.max(1) as i64).saturating_mul(1000);
            let due = calendar.due(handled as i64, now as i64, Some(deadline));
            if let Some(n) = due.next {
                let n = n.max(0) as u64;
                next = Some(next.map_or(n, |m| m.min(n)));
            }
            let passed = due.run.is_some() || due.skipped_before;
            if !passed {
                continue;
            }
            let Some(due_at) = due.run.filter(|_| spec.enabled) else {
                // Disabled, or only missed runs past their deadline: accounted for, not run.
                out.push(Scheduled {
                    schedule: key,
                    handled: now,
                    run: None,
                    replace: vec![],
                });
                continue;
            };
            let active: Vec<JobRunRecord> = s.job_runs.values().filter(|r| &r.job_id == job_id).cloned().collect();
            let run = JobRunRecord {
                job_id: job_id.clone(),
                id: new_id(),
                status: JobRunStatus::Initial,
                created_at: now,
                completed_at: None,
                due_at: Some(due_at.max(0) as u64),
                tasks: vec![],
            };
            let decision = match spec.concurrency_policy.as_str() {
                "FORBID" if !active.is_empty() => Scheduled {
                    schedule: key,
                    handled: now,
                    run: None,
                    replace: vec![],
                },
                "REPLACE" => Scheduled {
                    schedule: key,
                    handled: now,
                    run: Some(run),
                    replace: active,
                },
                _ => Scheduled {
                    schedule: key,
                    handled: now,
                    run: Some(run),
                    replace: vec![],
                },
            };
            out.push(decision);
        }
    }
    (out, next)
}

/// How soon a launch that found no room is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Starts the `jobs` driver on `master`'s node.
pub fn start(master: Master) {
    let node = master.node().clone();
    node.spawn_driver(
        "jobs",
        JobRunner { master },
        Wakes {
            waker: Default::default(),
            state_changes: true,
        },
    );
}

struct JobRunner {
    master: Master,
}

/// A run id as Metronome makes them: the time, then five random letters and digits.
pub fn new_run_id(now: u64) -> String {
    use rand::Rng;
    let stamp = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now as i64)
        .map(|t| t.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    let mut rng = rand::rng();
    let tail: String = (0..5)
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
    /// Past its active deadline: its task is killed and the run fails.
    Expire {
        run: JobRunRecord,
    },
}

/// Decides, for every unfinished run, what comes next (pure: the state and time in, steps
/// out), and the soonest active deadline still ahead.
fn plan(s: &State, now: u64) -> (Vec<Step>, Option<u64>) {
    let mut steps = Vec::new();
    let mut next_deadline: Option<u64> = None;
    for run in s.job_runs.values() {
        let Some(job) = s
            .jobs
            .get(&run.job_id)
            .and_then(|j| serde_json::from_value::<JobSpec>(j.spec.clone()).ok())
        else {
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
        let def = || Box::new(task_def(&job));
        let Some(latest) = run.tasks.last() else {
            steps.push(Step::Launch {
                run_id: run.id.clone(),
                task_id: task_id(run, 1),
                def: def(),
            });
            continue;
        };
        let Some(task) = s.tasks.get(latest) else {
            steps.push(Step::Relaunch {
                task_id: latest.clone(),
                def: def(),
            });
            continue;
        };
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
                let retry = job.run.restart.policy == "ON_FAILURE" && !task.kill_requested;
                if retry {
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
        let node = self.master.node().clone();
        let now = now_ms();
        let (scheduled, next_due) = node.read(|s| schedule(s, now, &mut || new_run_id(now)));
        for sc in scheduled {
            for old in &sc.replace {
                self.stop(old).await?;
            }
            let started = sc.run.as_ref().map(|r| r.id.clone());
            let cmd = Command::ScheduleJobRun {
                schedule: sc.schedule.clone(),
                handled: sc.handled,
                run: sc.run,
            };
            match node.write(cmd).await.map_err(tepui_node::Error::from) {
                Ok(_) => {
                    if let Some(run) = started {
                        tracing::info!(schedule = %sc.schedule, %run, "scheduled job run started");
                    }
                }
                // Accounted for already (by this leader's last pass, or the one before).
                Err(e) if e.code == "schedule_handled" => {}
                Err(e) => return Err(format!("schedule {}: {e}", sc.schedule)),
            }
        }
        let dependents = node.read(|s| dependents_ready(s, now, &mut || new_run_id(now)));
        for run in dependents {
            let (job, id) = (run.job_id.clone(), run.id.clone());
            match node
                .write(Command::StartDependentRun { run })
                .await
                .map_err(tepui_node::Error::from)
            {
                Ok(_) => tracing::info!(%job, run = %id, "dependent job run started: its parents succeeded"),
                // Started already by an earlier pass: the wait begins anew.
                Err(e) if e.code == "job_not_ready" || e.code == "job_run_exists" => {}
                Err(e) => return Err(format!("dependent run of {job}: {e}")),
            }
        }
        let (steps, next_deadline) = node.read(|s| plan(s, now));
        let mut waiting = false;
        for step in steps {
            match step {
                Step::Status { run_id, status } => {
                    let cmd = Command::SetJobRunStatus {
                        run_id: run_id.clone(),
                        status,
                        now: now_ms(),
                    };
                    if let Err(e) = node.write(cmd).await {
                        return Err(format!("run {run_id}: {e}"));
                    }
                    tracing::info!(run = %run_id, status = ?status, "job run");
                }
                Step::Launch { run_id, task_id, def } => {
                    // Recorded first: a new leader relaunches this very task, never another.
                    let cmd = Command::JobRunTask {
                        run_id: run_id.clone(),
                        task_id: task_id.clone(),
                    };
                    if let Err(e) = node.write(cmd).await {
                        return Err(format!("run {run_id}: {e}"));
                    }
                    waiting |= !self.launch(task_id, *def).await;
                }
                Step::Relaunch { task_id, def } => waiting |= !self.launch(task_id, *def).await,
                Step::Expire { run } => {
                    tracing::info!(run = %run.id, job = %run.job_id, "job run past its active deadline; stopping it");
                    self.stop(&run).await?;
                }
            }
        }
        let soonest = match (next_due, next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_due = soonest.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1)));
        Ok(match (waiting.then_some(RETRY), until_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

impl JobRunner {
    /// Stops a run (REPLACE): its task killed, the run ended failed.
    async fn stop(&self, run: &JobRunRecord) -> Result<(), String> {
        let node = self.master.node();
        if let Some(task) = run.tasks.last() {
            let live = node.read(|s| s.tasks.get(task).is_some_and(|t| !t.state.is_terminal()));
            if live {
                self.master
                    .kill(task)
                    .await
                    .map_err(|e| format!("stopping run {}: {e}", run.id))?;
            }
        }
        let cmd = Command::SetJobRunStatus {
            run_id: run.id.clone(),
            status: JobRunStatus::Failed,
            now: now_ms(),
        };
        if let Err(e) = node.write(cmd).await {
            // Gone already (it ended, or another pass stopped it) is what was wanted.
            if node.read(|s| s.job_runs.contains_key(&run.id)) {
                return Err(format!("stopping run {}: {e}", run.id));
            }
        }
        Ok(())
    }

    /// Launches a run's task; false when it must be tried again (no room yet).
    async fn launch(&self, task_id: String, def: TaskDef) -> bool {
        let name = task_id.rsplitn(3, '.').last().unwrap_or("job").to_string();
        match self
            .master
            .launch_direct_as(task_id.clone(), &name, def, vec![], None)
            .await
        {
            Ok(_) => {
                tracing::info!(task = %task_id, "job run's task launched");
                true
            }
            // Committed before (by this leader or the one before): nothing to do.
            Err(e) if e.code == "task_exists" => true,
            Err(e) => {
                tracing::debug!(task = %task_id, error = %e, "job run's task not launched yet");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let steps = plan(&s, 10).0;
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
        assert!(matches!(&plan(&s, 10).0[..], [Step::Relaunch { task_id, .. }] if task_id == "j.r1.1"));
        with_task(&mut s, "j.r1.1", TaskState::TaskRunning);
        assert_eq!(
            plan(&s, 10).0,
            vec![Step::Status {
                run_id: "r1".into(),
                status: JobRunStatus::Active
            }]
        );
        with_task(&mut s, "j.r1.1", TaskState::TaskFinished);
        assert_eq!(
            plan(&s, 10).0,
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
        let (steps, next) = plan(&s, 5_999);
        assert_eq!((steps, next), (vec![], Some(6_000)), "still within its deadline");
        let (steps, _) = plan(&s, 6_000);
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
            plan(&never, 10).0,
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
        assert!(matches!(&plan(&retry, 10).0[..], [Step::Launch { task_id, .. }] if task_id == "j.r1.2"));
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
    fn a_due_run_starts_once_and_the_schedule_is_accounted_for() {
        let mut s = scheduled_job("* * * * *", "ALLOW", 900, true, NOW - 150_000);
        let (out, next) = schedule(&s, NOW, &mut ids());
        assert_eq!(out.len(), 1);
        let run = out[0].run.as_ref().expect("a run is due");
        assert_eq!(run.due_at, Some(NOW - 30_000), "the newest due minute");
        assert_eq!((out[0].schedule.as_str(), out[0].handled), ("j/s", NOW));
        assert_eq!(next, Some(NOW + 30_000));
        let cmd = Command::ScheduleJobRun {
            schedule: "j/s".into(),
            handled: NOW,
            run: Some(run.clone()),
        };
        assert!(matches!(s.apply(2, &cmd), tepui_state::Response::Ok));
        // The same decision again (a late write of an old leader): refused, nothing doubled.
        assert!(matches!(s.apply(3, &cmd), tepui_state::Response::Rejected(_)));
        assert_eq!(s.job_runs.len(), 1);
        // Nothing more is due until the next minute.
        assert_eq!(schedule(&s, NOW + 1_000, &mut ids()).0, vec![]);
        assert_eq!(schedule(&s, NOW + 30_000, &mut ids()).0.len(), 1);
    }

    #[test]
    fn missed_runs_past_their_deadline_and_disabled_schedules_do_not_run() {
        // Hourly; defined an hour ago; the 00:00 run is 10.5 minutes late, past 60 s.
        let s = scheduled_job("0 * * * *", "ALLOW", 60, true, NOW - 60 * MIN);
        let (out, _) = schedule(&s, NOW, &mut ids());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].run.as_ref(), out[0].handled), (None, NOW));
        let off = scheduled_job("* * * * *", "ALLOW", 900, false, NOW - 150_000);
        let (out, _) = schedule(&off, NOW, &mut ids());
        assert_eq!(out[0].run, None);
        // A schedule given after the due time never backfills it.
        let fresh = scheduled_job("* * * * *", "ALLOW", 900, true, NOW - 10_000);
        assert_eq!(schedule(&fresh, NOW, &mut ids()).0, vec![]);
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
                    },
                },
            );
            let (out, _) = schedule(&s, NOW, &mut ids());
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
            };
            s.apply(2, &Command::StartJobRun { run });
            s.apply(
                3,
                &Command::SetJobRunStatus {
                    run_id: format!("{job}-run"),
                    status,
                    now: 3,
                },
            );
        };
        assert!(dependents_ready(&s, 10, &mut ids()).is_empty());
        finish(&mut s, "a", JobRunStatus::Success);
        assert!(
            dependents_ready(&s, 10, &mut ids()).is_empty(),
            "b has not succeeded yet"
        );
        finish(&mut s, "b", JobRunStatus::Failed);
        assert!(
            dependents_ready(&s, 10, &mut ids()).is_empty(),
            "a failed parent holds its child"
        );
        finish(&mut s, "b", JobRunStatus::Success);
        let ready = dependents_ready(&s, 10, &mut ids());
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].job_id, "c");
        let start = Command::StartDependentRun { run: ready[0].clone() };
        assert!(matches!(s.apply(4, &start), tepui_state::Response::Ok));
        // Started: the wait begins again, and the same start is refused.
        assert!(dependents_ready(&s, 10, &mut ids()).is_empty());
        assert!(matches!(s.apply(5, &start), tepui_state::Response::Rejected(_)));
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
