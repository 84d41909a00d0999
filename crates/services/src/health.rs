//! Health check results of one instance, judged by Marathon's rules: failures are ignored within
//! `gracePeriodSeconds` of the start until the first success; `maxConsecutiveFailures`
//! consecutive failures (0: never) kill the instance. Agents run the checks; this decides what
//! their results mean and when the next check is due.

use serde::{Deserialize, Serialize};

use crate::app::HealthCheck;
use crate::instance::Health;
use crate::time::format_timestamp;

/// The results of one health check of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTracker {
    pub consecutive_failures: u32,
    pub first_success_at: Option<u64>,
    pub last_success_at: Option<u64>,
    pub last_failure_at: Option<u64>,
    pub last_failure_cause: Option<String>,
}

/// What one result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthOutcome {
    pub health: Health,
    /// The health differs from before (`health_status_changed_event`).
    pub changed: bool,
    /// A failure that counts (`failed_health_check_event`); failures in the grace period do
    /// not.
    pub failed: bool,
    /// Too many consecutive failures: kill the instance (`unhealthy_task_kill_event`; it
    /// counts as a failure for backoff).
    pub kill: bool,
}

impl HealthTracker {
    /// The health this check's results show.
    pub fn health(&self) -> Health {
        match (self.last_success_at, self.last_failure_at) {
            (None, None) => Health::Pending,
            (Some(_), None) => Health::Healthy,
            (None, Some(_)) => Health::Unhealthy,
            (Some(ok), Some(bad)) if ok > bad => Health::Healthy,
            _ => Health::Unhealthy,
        }
    }

    /// Records one result of `check` for an instance started at `started_at` (milliseconds).
    pub fn record(
        &mut self,
        check: &HealthCheck,
        started_at: u64,
        now: u64,
        result: Result<(), String>,
    ) -> HealthOutcome {
        let before = self.health();
        let mut outcome = HealthOutcome {
            health: before,
            changed: false,
            failed: false,
            kill: false,
        };
        match result {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.first_success_at.get_or_insert(now);
                self.last_success_at = Some(now);
            }
            Err(cause) => {
                let in_grace = self.first_success_at.is_none()
                    && now < started_at.saturating_add(check.grace_period_seconds.saturating_mul(1000));
                if in_grace {
                    return outcome;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_failure_at = Some(now);
                self.last_failure_cause = Some(cause);
                outcome.failed = true;
                outcome.kill =
                    check.max_consecutive_failures > 0 && self.consecutive_failures >= check.max_consecutive_failures;
            }
        }
        outcome.health = self.health();
        outcome.changed = outcome.health != before;
        outcome
    }

    /// Marathon's `Health` object for `/v2/apps/{id}/tasks`.
    pub fn view(&self, instance_id: &str) -> HealthView {
        HealthView {
            alive: self.health() == Health::Healthy,
            consecutive_failures: self.consecutive_failures,
            first_success: self.first_success_at.map(format_timestamp),
            last_success: self.last_success_at.map(format_timestamp),
            last_failure: self.last_failure_at.map(format_timestamp),
            last_failure_cause: self.last_failure_cause.clone(),
            instance_id: instance_id.to_string(),
        }
    }
}

/// Marathon's `Health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub alive: bool,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_cause: Option<String>,
    pub instance_id: String,
}

/// An instance's health over all its checks: unhealthy if any is, healthy if all are.
pub fn combine(healths: &[Health]) -> Health {
    if healths.is_empty() {
        Health::NoChecks
    } else if healths.contains(&Health::Unhealthy) {
        Health::Unhealthy
    } else if healths.iter().all(|h| *h == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Pending
    }
}

/// When to run `check` next: `delaySeconds` after the start, then every `intervalSeconds`
/// after the previous run began.
pub fn next_check_at(check: &HealthCheck, started_at: u64, last_run_at: Option<u64>) -> u64 {
    match last_run_at {
        None => started_at.saturating_add(check.delay_seconds.saturating_mul(1000)),
        Some(last) => last.saturating_add(check.interval_seconds.saturating_mul(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::HealthCheckProtocol;

    fn check(grace: u64, max_failures: u32) -> HealthCheck {
        HealthCheck {
            protocol: HealthCheckProtocol::Http,
            path: Some("/".into()),
            port_index: Some(0),
            port: None,
            command: None,
            grace_period_seconds: grace,
            interval_seconds: 10,
            timeout_seconds: 5,
            max_consecutive_failures: max_failures,
            delay_seconds: 15,
            ignore_http1xx: false,
        }
    }

    #[test]
    fn failures_in_the_grace_period_are_ignored_until_the_first_success() {
        let c = check(60, 3);
        let mut t = HealthTracker::default();
        let o = t.record(&c, 0, 10_000, Err("connection refused".into()));
        assert_eq!(
            (o.health, o.failed, o.kill, o.changed),
            (Health::Pending, false, false, false)
        );
        let o = t.record(&c, 0, 20_000, Ok(()));
        assert_eq!((o.health, o.changed), (Health::Healthy, true));
        // After the first success the grace period no longer protects.
        let o = t.record(&c, 0, 30_000, Err("500".into()));
        assert_eq!((o.health, o.failed, o.changed), (Health::Unhealthy, true, true));
        assert_eq!(t.consecutive_failures, 1);
    }

    #[test]
    fn consecutive_failures_kill() {
        let c = check(0, 3);
        let mut t = HealthTracker::default();
        assert!(!t.record(&c, 0, 1, Err("x".into())).kill);
        assert!(!t.record(&c, 0, 2, Err("x".into())).kill);
        assert!(t.record(&c, 0, 3, Err("x".into())).kill);
        t.record(&c, 0, 4, Ok(()));
        assert_eq!(t.consecutive_failures, 0);
        let never = check(0, 0);
        let mut t = HealthTracker::default();
        for i in 0..10 {
            assert!(!t.record(&never, 0, i, Err("x".into())).kill);
        }
    }

    #[test]
    fn view_is_marathons_health() {
        let c = check(0, 3);
        let mut t = HealthTracker::default();
        t.record(&c, 0, 1_000, Ok(()));
        t.record(&c, 0, 2_000, Err("timeout".into()));
        let v = serde_json::to_value(t.view("app.instance-1")).unwrap();
        assert_eq!(v["alive"], false);
        assert_eq!(v["consecutiveFailures"], 1);
        assert_eq!(v["firstSuccess"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["lastFailureCause"], "timeout");
        assert_eq!(v["instanceId"], "app.instance-1");
    }

    #[test]
    fn combining_and_scheduling() {
        assert_eq!(combine(&[]), Health::NoChecks);
        assert_eq!(combine(&[Health::Healthy, Health::Healthy]), Health::Healthy);
        assert_eq!(combine(&[Health::Healthy, Health::Pending]), Health::Pending);
        assert_eq!(combine(&[Health::Pending, Health::Unhealthy]), Health::Unhealthy);
        let c = check(0, 3);
        assert_eq!(next_check_at(&c, 1_000, None), 16_000);
        assert_eq!(next_check_at(&c, 1_000, Some(16_000)), 26_000);
    }
}
