//! How long ended tasks stay in the replicated state. Mesos keeps the last
//! `max_completed_tasks_per_framework` of each framework; Marathon forgets an instance once it
//! is replaced. Here each group (a framework, or an app of a built-in framework) keeps its most
//! recent ended tasks up to a count, and none longer than an age. A task whose last status
//! update its framework has not acknowledged yet stays until it has (or its framework is gone):
//! the update is still being resent.
//!
//! [`decide`] is the decision, pure, with the time passed in; the `task_gc` driver carries it
//! out with `ForgetTasks` commands.

use std::collections::BTreeMap;
use std::time::Duration;

use tepui_node::drivers::{Activation, Driver, Outcome};
use tepui_node::now_ms;
use tepui_state::{Command, Millis, State, TaskRecord};

use crate::Master;

/// The label the built-in services framework puts on an app's instances; each app is its own
/// group.
const APP_LABEL: &str = "tepui.app";

/// Tasks forgotten in one command at most.
const FORGET_BATCH: usize = 1000;

/// What ended tasks are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Ended tasks kept per framework (per app for the services framework), newest first.
    pub max_per_group: usize,
    /// No ended task is kept longer than this after it ended.
    pub max_age: Duration,
}

impl Default for Retention {
    /// Mesos' default of 1000 completed tasks per framework, and a day.
    fn default() -> Retention {
        Retention {
            max_per_group: 1000,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to forget now, and when to look again for age alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub forget: Vec<String>,
    /// When the oldest ended task kept reaches its age (Unix ms).
    pub next_at: Option<Millis>,
}

fn ended_at(t: &TaskRecord) -> Millis {
    t.finished_at.unwrap_or(t.updated_at)
}

/// Whether an ended task may go: nobody waits for its last update any more.
fn settled(s: &State, t: &TaskRecord) -> bool {
    t.last_update_uuid.is_none()
        || t.acknowledged_uuid == t.last_update_uuid
        || !s.frameworks.contains_key(&t.framework_id)
}

/// The ended tasks of `s` past `r` at `now`.
pub fn decide(s: &State, now: Millis, r: &Retention) -> Decision {
    let max_age = u64::try_from(r.max_age.as_millis()).unwrap_or(u64::MAX);
    // A job run takes its result from its task: the task stays until the run has finished.
    let held: std::collections::BTreeSet<&str> = s
        .job_runs
        .values()
        .flat_map(|r| r.tasks.iter().map(String::as_str))
        .collect();
    let mut groups: BTreeMap<(&str, &str), Vec<&TaskRecord>> = BTreeMap::new();
    for t in s
        .tasks
        .values()
        .filter(|t| t.state.is_terminal() && settled(s, t) && !held.contains(t.id.as_str()))
    {
        let app = t.labels.get(APP_LABEL).map(String::as_str).unwrap_or("");
        groups.entry((t.framework_id.as_str(), app)).or_default().push(t);
    }
    let mut d = Decision::default();
    for tasks in groups.values_mut() {
        // Newest first; ids break ties, so the decision does not depend on map order.
        tasks.sort_by(|a, b| ended_at(b).cmp(&ended_at(a)).then_with(|| a.id.cmp(&b.id)));
        for (i, t) in tasks.iter().enumerate() {
            let expires = ended_at(t).saturating_add(max_age);
            if i >= r.max_per_group || expires <= now {
                d.forget.push(t.id.clone());
            } else {
                d.next_at = Some(d.next_at.map_or(expires, |n| n.min(expires)));
            }
        }
    }
    d.forget.sort();
    d
}

/// Forgets ended tasks past the master's retention: woken when the state changes (tasks end,
/// updates are acknowledged), and when the oldest kept task comes of age; at most once per
/// [`GC_GAP`], since a burst of thousands of changes needs one look, not thousands.
pub(crate) struct TaskGc {
    pub(crate) master: Master,
    pub(crate) last: Option<std::time::Instant>,
}

/// The least time between two looks at the task table.
const GC_GAP: Duration = Duration::from_secs(1);

impl Driver for TaskGc {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        if let Some(since) = self.last.map(|l| l.elapsed()).filter(|e| *e < GC_GAP) {
            return Ok(Some(GC_GAP - since));
        }
        self.last = Some(std::time::Instant::now());
        let node = self.master.node();
        let retention = self.master.config().retention;
        let now = now_ms();
        let d = node.read(|s| decide(s, now, &retention));
        for ids in d.forget.chunks(FORGET_BATCH) {
            node.write(Command::ForgetTasks { task_ids: ids.to_vec() })
                .await
                .map_err(|e| format!("forgetting {} ended tasks: {e}", ids.len()))?;
            tracing::info!(tasks = ids.len(), "ended tasks past their retention forgotten");
        }
        Ok(d.next_at.map(|at| Duration::from_millis(at.saturating_sub(now) + 1)))
    }
}

#[cfg(test)]
mod tests {
    use tepui_state::{TaskDef, TaskState};

    use super::*;

    fn ended(id: &str, framework: &str, app: Option<&str>, at: Millis) -> TaskRecord {
        let def: TaskDef = crate::empty_def();
        let mut t = TaskRecord::staging(id, id, 1, def, 0);
        t.framework_id = framework.into();
        t.state = TaskState::TaskFinished;
        t.finished_at = Some(at);
        t.updated_at = at;
        t.last_update_uuid = Some(format!("u-{id}"));
        t.acknowledged_uuid = t.last_update_uuid.clone();
        if let Some(app) = app {
            t.labels.insert(APP_LABEL.into(), app.into());
        }
        t
    }

    fn state(tasks: Vec<TaskRecord>) -> State {
        let mut s = State::default();
        for f in ["f1", "f2", "svc"] {
            let rec = tepui_state::FrameworkRecord {
                id: f.into(),
                name: f.into(),
                user: "root".into(),
                principal: None,
                hostname: None,
                webui_url: None,
                roles: vec!["*".into()],
                capabilities: vec![],
                failover_timeout_ms: 0,
                registered_at: 0,
                reregistered_at: None,
                connected: true,
                disconnected_at: None,
            };
            s.frameworks.insert(f.into(), rec);
        }
        for t in tasks {
            s.tasks.insert(t.id.clone(), t);
        }
        s
    }

    const HOUR: Millis = 3_600_000;

    fn retention(n: usize) -> Retention {
        Retention {
            max_per_group: n,
            max_age: Duration::from_millis(HOUR),
        }
    }

    #[test]
    fn each_group_keeps_its_newest_ended_tasks() {
        let s = state(vec![
            ended("a1", "f1", None, 10),
            ended("a2", "f1", None, 30),
            ended("a3", "f1", None, 20),
            ended("b1", "f2", None, 5),
            ended("web1", "svc", Some("/web"), 1),
            ended("web2", "svc", Some("/web"), 2),
            ended("db1", "svc", Some("/db"), 1),
        ]);
        let d = decide(&s, 100, &retention(2));
        assert_eq!(d.forget, ["a1"], "f1 keeps a2 and a3; every other group is within 2");
        let d = decide(&s, 100, &retention(1));
        assert_eq!(d.forget, ["a1", "a3", "web1"]);
        // The oldest kept task comes of age first.
        assert_eq!(d.next_at, Some(1 + HOUR));
    }

    #[test]
    fn ended_tasks_go_at_their_age_and_live_ones_never() {
        let mut live = ended("live", "f1", None, 0);
        live.state = TaskState::TaskRunning;
        live.finished_at = None;
        let s = state(vec![live, ended("old", "f1", None, 0), ended("new", "f1", None, HOUR)]);
        let d = decide(&s, HOUR, &retention(10));
        assert_eq!(d.forget, ["old"]);
        assert_eq!(d.next_at, Some(2 * HOUR));
        assert_eq!(decide(&s, HOUR - 1, &retention(10)).forget, Vec::<String>::new());
    }

    #[test]
    fn the_task_of_an_unfinished_job_run_stays_until_the_run_has_its_result() {
        let mut s = state(vec![ended("j.r1.1", "", None, 0), ended("other", "", None, 0)]);
        s.job_runs.insert(
            "r1".into(),
            tepui_state::JobRunRecord {
                job_id: "j".into(),
                id: "r1".into(),
                status: tepui_state::JobRunStatus::Active,
                created_at: 0,
                completed_at: None,
                due_at: None,
                tasks: vec!["j.r1.1".into()],
                arguments: vec![],
                exit_code: None,
                message: None,
            },
        );
        let d = decide(&s, 10 * HOUR, &retention(0));
        assert_eq!(d.forget, ["other"]);
        s.job_runs.clear();
        assert_eq!(decide(&s, 10 * HOUR, &retention(0)).forget, ["j.r1.1", "other"]);
    }

    #[test]
    fn an_unacknowledged_update_keeps_its_task_while_its_framework_is_there() {
        let mut waiting = ended("waiting", "f1", None, 0);
        waiting.acknowledged_uuid = None;
        let mut orphan = ended("orphan", "gone", None, 0);
        orphan.acknowledged_uuid = None;
        let s = state(vec![waiting, orphan]);
        let d = decide(&s, 10 * HOUR, &retention(0));
        assert_eq!(d.forget, ["orphan"]);
        assert_eq!(d.next_at, None);
    }
}
