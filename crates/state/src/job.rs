//! Batch jobs' runs in the replicated state: every run is recorded before its task launches
//! (with the due time it stands for), so a new leader neither skips nor repeats one.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Finished runs kept per job.
pub const JOB_HISTORY_LIMIT: usize = 100;

/// Metronome's run states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobRunStatus {
    /// Recorded; its task is not launched yet.
    Initial,
    /// Its task is launched and not running yet.
    Starting,
    /// Its task runs.
    Active,
    Success,
    Failed,
}

impl JobRunStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, JobRunStatus::Success | JobRunStatus::Failed)
    }
}

/// One run of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunRecord {
    pub job_id: String,
    pub id: String,
    pub status: JobRunStatus,
    pub created_at: Millis,
    #[serde(default)]
    pub completed_at: Option<Millis>,
    /// The schedule's due time this run stands for; none for a run started by hand.
    #[serde(default)]
    pub due_at: Option<Millis>,
    /// Its tasks, one per attempt, the latest last.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Arguments given for this run only (Chronos' run now `?arguments=`), after the job's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// How its last task ended, kept with the run once it has finished (the task itself may
    /// be forgotten by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A job's finished runs and counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHistory {
    pub success_count: u64,
    pub failure_count: u64,
    pub last_success_at: Option<Millis>,
    pub last_failure_at: Option<Millis>,
    /// Newest first, at most [`JOB_HISTORY_LIMIT`].
    pub finished: VecDeque<JobRunRecord>,
}

impl JobHistory {
    pub(crate) fn record(&mut self, run: JobRunRecord) {
        let at = run.completed_at.unwrap_or(run.created_at);
        match run.status {
            JobRunStatus::Success => {
                self.success_count += 1;
                self.last_success_at = Some(at);
            }
            _ => {
                self.failure_count += 1;
                self.last_failure_at = Some(at);
            }
        }
        self.finished.push_front(run);
        self.finished.truncate(JOB_HISTORY_LIMIT);
    }
}

/// The jobs a job depends on, from its definition (Metronome's `dependencies: [{"id"}]`).
pub fn job_dependencies(spec: &serde_json::Value) -> Vec<String> {
    spec.get("dependencies")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(n: u64, status: JobRunStatus) -> JobRunRecord {
        JobRunRecord {
            job_id: "j".into(),
            id: format!("r{n}"),
            status,
            created_at: n,
            completed_at: Some(n + 1),
            due_at: None,
            tasks: vec![],
            arguments: vec![],
            exit_code: None,
            message: None,
        }
    }

    #[test]
    fn the_history_keeps_the_newest_runs_up_to_its_limit_and_counts_them_all() {
        let mut h = JobHistory::default();
        let total = JOB_HISTORY_LIMIT as u64 + 5;
        for n in 1..=total {
            // Every third run fails.
            let status = if n % 3 == 0 {
                JobRunStatus::Failed
            } else {
                JobRunStatus::Success
            };
            h.record(finished(n, status));
            assert!(h.finished.len() <= JOB_HISTORY_LIMIT);
        }
        assert_eq!(h.finished.len(), JOB_HISTORY_LIMIT);
        // Newest first; the five oldest are gone, their counts are not.
        assert_eq!(h.finished.front().map(|r| r.id.as_str()), Some("r105"));
        assert_eq!(h.finished.back().map(|r| r.id.as_str()), Some("r6"));
        assert_eq!(h.success_count + h.failure_count, total);
        assert_eq!(h.failure_count, total / 3);
        assert_eq!((h.last_success_at, h.last_failure_at), (Some(105), Some(106)));
    }
}
