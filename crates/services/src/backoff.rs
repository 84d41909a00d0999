//! Launch backoff and the launch queue (`/v2/queue`).
//!
//! After the `k`-th consecutive failure of an app's instances (a task that fails or finishes,
//! not one that was killed) launches wait
//! `min(backoffSeconds * backoffFactor^(k-1), maxLaunchDelaySeconds)`. The delay is reset when a
//! new configuration version is deployed, by `DELETE /v2/queue/{id}/delay`, when no failure
//! happened for the current delay plus `maxLaunchDelaySeconds` (Marathon's rule), and when an
//! instance has been running and healthy for `maxLaunchDelaySeconds`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::path::PathId;

/// An app's backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BackoffStrategy {
    pub backoff_seconds: f64,
    pub factor: f64,
    pub max_launch_delay_seconds: f64,
}

impl BackoffStrategy {
    /// The delay after `failures` consecutive failures, in milliseconds (0 for none).
    pub fn delay_ms(&self, failures: u32) -> u64 {
        if failures == 0 {
            return 0;
        }
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let secs = (self.backoff_seconds * self.factor.powi(exponent)).min(self.max_launch_delay_seconds);
        let secs = if secs.is_finite() {
            secs.max(0.0)
        } else {
            self.max_launch_delay_seconds.max(0.0)
        };
        (secs * 1000.0).round() as u64
    }

    pub fn max_delay_ms(&self) -> u64 {
        (self.max_launch_delay_seconds.max(0.0) * 1000.0).round() as u64
    }
}

/// One app in the launch queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub app: PathId,
    /// The configuration version the backoff applies to.
    pub version: String,
    /// Instances waiting for an offer.
    pub count: u32,
    /// Since when instances have been waiting (milliseconds).
    pub since: u64,
    /// Consecutive failures counted for the delay.
    pub failures: u32,
    pub delay_ms: u64,
    /// Launches wait until this instant (milliseconds).
    pub delay_until: u64,
    pub last_failure_at: Option<u64>,
    pub strategy: BackoffStrategy,
}

/// Marathon's `QueueDelay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDelay {
    pub time_left_seconds: u64,
    /// The delay has run out: launches are due.
    pub overdue: bool,
}

/// The launch queue and backoff state of every app, keyed by app id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchQueue {
    entries: BTreeMap<PathId, QueueEntry>,
}

impl LaunchQueue {
    pub fn new() -> LaunchQueue {
        LaunchQueue::default()
    }

    fn entry_mut(&mut self, spec: &AppSpec, now: u64) -> &mut QueueEntry {
        self.entry_for(&spec.id, spec.config_version(), spec.backoff(), now)
    }

    /// Sets how many instances of a pod wait for an offer (pods share the apps' queue: their
    /// ids never collide).
    pub fn set_waiting_pod(&mut self, pod: &crate::pod::PodSpec, count: u32, now: u64) {
        let entry = self.entry_for(&pod.id, pod.config_version(), pod.backoff(), now);
        if entry.count == 0 && count > 0 {
            entry.since = now;
        }
        entry.count = count;
    }

    /// An instance of a pod failed: the delay grows, as for an app.
    pub fn record_pod_failure(&mut self, pod: &crate::pod::PodSpec, now: u64) {
        let entry = self.entry_for(&pod.id, pod.config_version(), pod.backoff(), now);
        entry.failures = entry.failures.saturating_add(1);
        entry.delay_ms = entry.strategy.delay_ms(entry.failures);
        entry.delay_until = now.saturating_add(entry.delay_ms);
        entry.last_failure_at = Some(now);
    }

    fn entry_for(&mut self, id: &PathId, config_version: &str, strategy: BackoffStrategy, now: u64) -> &mut QueueEntry {
        let entry = self.entries.entry(id.clone()).or_insert_with(|| QueueEntry {
            app: id.clone(),
            version: config_version.to_string(),
            count: 0,
            since: now,
            failures: 0,
            delay_ms: 0,
            delay_until: 0,
            last_failure_at: None,
            strategy,
        });
        if entry.version != config_version {
            // A new version starts without delay.
            entry.version = config_version.to_string();
            entry.failures = 0;
            entry.delay_ms = 0;
            entry.delay_until = 0;
            entry.last_failure_at = None;
        }
        entry.strategy = strategy;
        entry
    }

    /// Sets how many instances of `spec` wait for an offer.
    pub fn set_waiting(&mut self, spec: &AppSpec, count: u32, now: u64) {
        let entry = self.entry_mut(spec, now);
        if entry.count == 0 && count > 0 {
            entry.since = now;
        }
        entry.count = count;
    }

    /// An instance of `spec` failed (`TASK_FAILED`, `TASK_FINISHED`, or killed for failing its
    /// health checks; not `TASK_KILLED`): the delay grows.
    pub fn record_failure(&mut self, spec: &AppSpec, now: u64) {
        let entry = self.entry_mut(spec, now);
        entry.failures = entry.failures.saturating_add(1);
        entry.delay_ms = entry.strategy.delay_ms(entry.failures);
        entry.delay_until = now.saturating_add(entry.delay_ms);
        entry.last_failure_at = Some(now);
    }

    /// An instance of `app` has been running and healthy since `since`: once that is
    /// `maxLaunchDelaySeconds` ago, the app is considered stable and the delay is reset.
    pub fn instance_healthy_since(&mut self, app: &PathId, since: u64, now: u64) {
        if let Some(e) = self.entries.get_mut(app) {
            let started_after_failure = e.last_failure_at.is_none_or(|f| since >= f);
            if e.failures > 0 && started_after_failure && now.saturating_sub(since) >= e.strategy.max_delay_ms() {
                reset(e);
            }
        }
    }

    /// Resets every delay with no failure for the current delay plus `maxLaunchDelaySeconds`.
    pub fn tick(&mut self, now: u64) {
        for e in self.entries.values_mut() {
            if let Some(at) = e.last_failure_at {
                if now >= at.saturating_add(e.delay_ms).saturating_add(e.strategy.max_delay_ms()) {
                    reset(e);
                }
            }
        }
    }

    /// `DELETE /v2/queue/{id}/delay`; false when the app is not in the queue (404).
    pub fn reset_delay(&mut self, app: &PathId) -> bool {
        match self.entries.get_mut(app) {
            Some(e) => {
                reset(e);
                true
            }
            None => false,
        }
    }

    /// Whether `app` may launch now.
    pub fn can_launch(&self, app: &PathId, now: u64) -> bool {
        self.entries.get(app).is_none_or(|e| now >= e.delay_until)
    }

    /// The queue delay as `/v2/queue` shows it.
    pub fn delay(&self, app: &PathId, now: u64) -> Option<QueueDelay> {
        let e = self.entries.get(app)?;
        let left_ms = e.delay_until.saturating_sub(now);
        Some(QueueDelay {
            time_left_seconds: left_ms.div_ceil(1000),
            overdue: left_ms == 0,
        })
    }

    pub fn entry(&self, app: &PathId) -> Option<&QueueEntry> {
        self.entries.get(app)
    }

    /// Entries with instances waiting, by app id (what `/v2/queue` lists).
    pub fn waiting(&self) -> impl Iterator<Item = &QueueEntry> {
        self.entries.values().filter(|e| e.count > 0)
    }

    /// Forgets an app (deleted).
    pub fn remove(&mut self, app: &PathId) -> Option<QueueEntry> {
        self.entries.remove(app)
    }
}

fn reset(e: &mut QueueEntry) {
    e.failures = 0;
    e.delay_ms = 0;
    e.delay_until = 0;
    e.last_failure_at = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppDefinition;
    use crate::validate::validate_app;
    use proptest::prelude::*;

    fn spec(json: &str) -> AppSpec {
        validate_app(&AppDefinition::from_json(json).unwrap(), &PathId::root(), 0).unwrap()
    }

    #[test]
    fn delay_grows_by_the_factor_up_to_the_maximum() {
        let s = BackoffStrategy {
            backoff_seconds: 1.0,
            factor: 1.15,
            max_launch_delay_seconds: 300.0,
        };
        assert_eq!(s.delay_ms(0), 0);
        assert_eq!(s.delay_ms(1), 1_000);
        assert_eq!(s.delay_ms(2), 1_150);
        assert_eq!(s.delay_ms(3), 1_322);
        assert_eq!(s.delay_ms(100), 300_000);
        assert_eq!(s.delay_ms(u32::MAX), 300_000);
        let doubling = BackoffStrategy {
            backoff_seconds: 2.0,
            factor: 2.0,
            max_launch_delay_seconds: 10.0,
        };
        assert_eq!(
            [1, 2, 3, 4].map(|k| doubling.delay_ms(k)),
            [2_000, 4_000, 8_000, 10_000]
        );
    }

    #[test]
    fn failures_delay_launches_and_a_reset_clears_them() {
        let s = spec(r#"{"id":"/a","cmd":"x","backoffSeconds":10,"backoffFactor":2,"maxLaunchDelaySeconds":60}"#);
        let mut q = LaunchQueue::new();
        q.set_waiting(&s, 2, 0);
        assert!(q.can_launch(&s.id, 0));
        assert_eq!(
            q.delay(&s.id, 0),
            Some(QueueDelay {
                time_left_seconds: 0,
                overdue: true
            })
        );
        q.record_failure(&s, 1_000);
        assert!(!q.can_launch(&s.id, 10_999));
        assert!(q.can_launch(&s.id, 11_000));
        assert_eq!(
            q.delay(&s.id, 5_500),
            Some(QueueDelay {
                time_left_seconds: 6,
                overdue: false
            })
        );
        q.record_failure(&s, 11_000);
        assert_eq!(q.entry(&s.id).unwrap().delay_until, 31_000);
        assert!(q.reset_delay(&s.id));
        assert!(q.can_launch(&s.id, 11_001));
        assert!(!q.reset_delay(&PathId::parse("/unknown").unwrap()));
        assert!(q.can_launch(&PathId::parse("/unknown").unwrap(), 0));
    }

    #[test]
    fn a_new_version_starts_without_delay() {
        let v1 = spec(r#"{"id":"/a","cmd":"x"}"#);
        let mut q = LaunchQueue::new();
        q.record_failure(&v1, 0);
        q.record_failure(&v1, 0);
        assert_eq!(q.entry(&v1.id).unwrap().failures, 2);
        let v2 = v1.restarted(5);
        q.set_waiting(&v2, 1, 5);
        assert_eq!(q.entry(&v1.id).unwrap().failures, 0);
        assert!(q.can_launch(&v1.id, 5));
    }

    #[test]
    fn quiet_periods_and_stable_instances_reset() {
        let s = spec(r#"{"id":"/a","cmd":"x","backoffSeconds":10,"maxLaunchDelaySeconds":60}"#);
        let mut q = LaunchQueue::new();
        q.record_failure(&s, 0);
        q.tick(69_999);
        assert_eq!(q.entry(&s.id).unwrap().failures, 1);
        q.tick(70_000);
        assert_eq!(q.entry(&s.id).unwrap().failures, 0, "no failure for delay + max delay");

        q.record_failure(&s, 100_000);
        q.instance_healthy_since(&s.id, 90_000, 200_000);
        assert_eq!(
            q.entry(&s.id).unwrap().failures,
            1,
            "started before the failure: does not count"
        );
        q.instance_healthy_since(&s.id, 110_000, 169_999);
        assert_eq!(q.entry(&s.id).unwrap().failures, 1);
        q.instance_healthy_since(&s.id, 110_000, 170_000);
        assert_eq!(q.entry(&s.id).unwrap().failures, 0);
    }

    #[test]
    fn waiting_lists_apps_with_instances_to_launch() {
        let a = spec(r#"{"id":"/a","cmd":"x"}"#);
        let b = spec(r#"{"id":"/b","cmd":"x"}"#);
        let mut q = LaunchQueue::new();
        q.set_waiting(&a, 0, 0);
        q.set_waiting(&b, 3, 7);
        let waiting: Vec<_> = q.waiting().map(|e| (e.app.to_string(), e.count, e.since)).collect();
        assert_eq!(waiting, [("/b".to_string(), 3, 7)]);
        assert!(q.remove(&b.id).is_some());
        assert_eq!(q.waiting().count(), 0);
    }

    proptest! {
        #[test]
        fn delay_is_monotonic_and_bounded(
            backoff in 0.0f64..100.0, factor in 1.0f64..5.0, max in 0.0f64..4000.0, k in 1u32..200
        ) {
            let s = BackoffStrategy { backoff_seconds: backoff, factor, max_launch_delay_seconds: max };
            prop_assert!(s.delay_ms(k) <= s.max_delay_ms());
            prop_assert!(s.delay_ms(k) <= s.delay_ms(k + 1));
        }
    }
}
