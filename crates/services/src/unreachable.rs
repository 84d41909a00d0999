//! Decisions for instances whose agent is unreachable, after the app's `unreachableStrategy`.
//!
//! - `{inactiveAfterSeconds, expungeAfterSeconds}`: unreachable for `inactiveAfterSeconds`, the
//!   instance turns inactive and a replacement is launched; unreachable for
//!   `expungeAfterSeconds`, it is expunged (forgotten, and killed if its task ever shows up).
//! - `"disabled"`: the app is not partition-aware; an unreachable instance is expunged at once
//!   and replaced, as Marathon does with a lost task.
//!
//! An inactive instance that comes back before it is expunged is kept while it fits under the
//! over-capacity bound (Marathon then shows "2 of 1"), and killed once its expunge time has
//! passed, or at once when keeping it would exceed `instances + floor(maximumOverCapacity *
//! instances)`.

use crate::app::UnreachableStrategy;
use crate::instance::{Instance, InstanceId};
use crate::plan::{capacity_bounds, order_for_kill, Policy};

/// What to do with an unreachable instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableAction {
    /// Keep waiting; ask again at `inactive_at` (milliseconds).
    Wait { inactive_at: u64 },
    /// Inactive: replace it, keep the record until `expunge_at`.
    Inactive { expunge_at: u64 },
    /// Forget it.
    Expunge,
}

/// The action for an instance unreachable since `since`.
pub fn decide(strategy: &UnreachableStrategy, since: u64, now: u64) -> UnreachableAction {
    match *strategy {
        UnreachableStrategy::Disabled => UnreachableAction::Expunge,
        UnreachableStrategy::Enabled {
            inactive_after_seconds,
            expunge_after_seconds,
        } => {
            let inactive_at = since.saturating_add(inactive_after_seconds.saturating_mul(1000));
            let expunge_at = since.saturating_add(expunge_after_seconds.saturating_mul(1000));
            if now >= expunge_at {
                UnreachableAction::Expunge
            } else if now >= inactive_at {
                UnreachableAction::Inactive { expunge_at }
            } else {
                UnreachableAction::Wait { inactive_at }
            }
        }
    }
}

/// Whether an instance that came back after being unreachable since `since` is past its
/// expunge time and must go.
pub fn returned_expired(strategy: &UnreachableStrategy, since: u64, now: u64) -> bool {
    decide(strategy, since, now) == UnreachableAction::Expunge
}

/// Which of `current` (the active instances of the app's current configuration, including
/// returned ones) to kill because there are more than `spec.instances`. Returned instances still
/// within their expunge time are tolerated up to the over-capacity allowance; everything beyond
/// is killed, returned instances first, then by the usual kill order.
pub fn excess_kills(spec: &Policy, current: &[&Instance], now: u64) -> Vec<InstanceId> {
    let target = spec.instances as usize;
    if current.len() <= target {
        return Vec::new();
    }
    let extra = current.len() - target;
    let (_, upper) = capacity_bounds(spec.instances, &spec.upgrade_strategy);
    let expired = |i: &Instance| {
        i.unreachable_since
            .is_some_and(|s| returned_expired(&spec.unreachable_strategy, s, now))
    };
    let in_window = current.iter().filter(|i| i.has_returned() && !expired(i)).count();
    let tolerated = in_window.min(upper as usize - target);
    let kill = extra - tolerated.min(extra);
    let class = |i: &Instance| match (i.has_returned(), expired(i)) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    };
    order_for_kill(current.to_vec(), spec.kill_selection, class)
        .into_iter()
        .take(kill)
        .map(|i| i.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppDefinition, AppSpec};
    use crate::instance::{Health, InstanceState};
    use crate::path::PathId;
    use crate::validate::validate_app;

    const ENABLED: UnreachableStrategy = UnreachableStrategy::Enabled {
        inactive_after_seconds: 60,
        expunge_after_seconds: 120,
    };

    #[test]
    fn waits_then_replaces_then_expunges() {
        assert_eq!(
            decide(&ENABLED, 1_000, 1_000),
            UnreachableAction::Wait { inactive_at: 61_000 }
        );
        assert_eq!(
            decide(&ENABLED, 1_000, 60_999),
            UnreachableAction::Wait { inactive_at: 61_000 }
        );
        assert_eq!(
            decide(&ENABLED, 1_000, 61_000),
            UnreachableAction::Inactive { expunge_at: 121_000 }
        );
        assert_eq!(decide(&ENABLED, 1_000, 121_000), UnreachableAction::Expunge);
    }

    #[test]
    fn zero_zero_replaces_and_expunges_at_once() {
        let s = UnreachableStrategy::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0,
        };
        assert_eq!(decide(&s, 5, 5), UnreachableAction::Expunge);
        let s = UnreachableStrategy::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 300,
        };
        assert_eq!(decide(&s, 5, 5), UnreachableAction::Inactive { expunge_at: 300_005 });
    }

    #[test]
    fn disabled_expunges_immediately() {
        assert_eq!(
            decide(&UnreachableStrategy::Disabled, 10, 10),
            UnreachableAction::Expunge
        );
        assert!(returned_expired(&UnreachableStrategy::Disabled, 10, 10));
    }

    fn spec(instances: u32, over: f64) -> AppSpec {
        let json = format!(
            r#"{{"id":"/a","cmd":"x","instances":{instances},"upgradeStrategy":{{"minimumHealthCapacity":1,"maximumOverCapacity":{over}}},
               "unreachableStrategy":{{"inactiveAfterSeconds":60,"expungeAfterSeconds":120}}}}"#
        );
        validate_app(&AppDefinition::from_json(&json).unwrap(), &PathId::root(), 0).unwrap()
    }

    fn running(id: &str, started: u64, returned_since: Option<u64>) -> Instance {
        Instance {
            id: id.into(),
            version: "1970-01-01T00:00:00.000Z".into(),
            state: InstanceState::Running,
            health: Health::NoChecks,
            agent: None,
            started_at: Some(started),
            unreachable_since: returned_since,
        }
    }

    #[test]
    fn a_returned_instance_is_tolerated_within_over_capacity_until_expunge() {
        let s = spec(1, 1.0);
        let replacement = running("new", 70_000, None);
        let back = running("back", 1_000, Some(0));
        let both = [&replacement, &back];
        assert!(
            excess_kills(&s.policy(), &both, 90_000).is_empty(),
            "2 of 1 while within the expunge time"
        );
        assert_eq!(
            excess_kills(&s.policy(), &both, 120_000),
            ["back"],
            "killed once its expunge time passed"
        );
    }

    #[test]
    fn without_over_capacity_a_returned_instance_goes_at_once() {
        let s = spec(1, 0.0);
        let replacement = running("new", 70_000, None);
        let back = running("back", 1_000, Some(0));
        assert_eq!(excess_kills(&s.policy(), &[&replacement, &back], 90_000), ["back"]);
    }

    #[test]
    fn tolerance_is_capped_by_the_over_capacity_bound() {
        // 4 instances, 25% over capacity: one returned instance may stay, not two.
        let s = spec(4, 0.25);
        let mut all: Vec<Instance> = (0..4).map(|i| running(&format!("n{i}"), 100 + i, None)).collect();
        all.push(running("back1", 1, Some(0)));
        all.push(running("back2", 2, Some(0)));
        let refs: Vec<&Instance> = all.iter().collect();
        let kills = excess_kills(&s.policy(), &refs, 90_000);
        assert_eq!(kills.len(), 1);
        assert!(kills[0].starts_with("back"));
    }

    #[test]
    fn no_excess_no_kills() {
        let s = spec(2, 1.0);
        let a = running("a", 1, None);
        assert!(excess_kills(&s.policy(), &[&a], 0).is_empty());
    }
}
