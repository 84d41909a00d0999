//! The step function of a running app: given its target spec and its instances, what to do now.
//!
//! [`step`] covers every action of a deployment on one app: start (from zero), scale up and
//! down, upgrade and restart (a rolling replacement of every instance whose version is not the
//! spec's configuration version), plus the unreachable bookkeeping. [`stop`] covers
//! `StopApplication` and app deletion. Both are deterministic: the same input gives the same
//! decision, ties broken by instance id.
//!
//! The bounds, with `n = instances`:
//! - `lower = ceil(minimumHealthCapacity * n)`: while old instances are replaced, a healthy
//!   instance is killed only while more than `lower` instances are healthy;
//! - `upper = n + floor(maximumOverCapacity * n)`: nothing is launched that would bring the
//!   instances (active ones plus those being killed) above `upper`. When `lower == upper` during
//!   a replacement (`minimumHealthCapacity` 1, no over-capacity) nothing could ever move, so
//!   `upper` is raised by one, as Marathon does for apps without persistent volumes.
//!
//! Fractions are rounded with a tolerance of 1e-9, so `0.3 * 10` is 3, not 4.

use std::borrow::Cow;
use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::app::{AppSpec, KillSelection, UnreachableStrategy, UpgradeStrategy};
use crate::instance::{Instance, InstanceId, InstanceState};
use crate::unreachable::{self, UnreachableAction};

/// What the runtime should do now for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// How many instances of the spec's configuration version to add to the launch queue (as
    /// `Scheduled` instances).
    pub launch: u32,
    /// Instances to kill, the first to go first. A `Scheduled` one is just dropped from the
    /// queue.
    pub kill: Vec<InstanceId>,
    /// Unreachable instances that turned inactive, by id: record it; their replacements are
    /// already counted in `launch`.
    pub mark_inactive: Vec<InstanceId>,
    /// Instances to forget, by id (unreachable past their expunge time, or unreachable ones
    /// that had to go). Kill their task if it ever shows up again.
    pub expunge: Vec<InstanceId>,
    /// The app has reached its target: every instance is of the current version, exactly
    /// `instances` of them are healthy, nothing is being killed.
    pub complete: bool,
}

/// `(lower, upper)`: the minimum healthy count while replacing and the maximum instance count.
pub fn capacity_bounds(instances: u32, strategy: &UpgradeStrategy) -> (u32, u32) {
    const EPSILON: f64 = 1e-9;
    let n = f64::from(instances);
    let lower = (n * strategy.minimum_health_capacity - EPSILON).ceil().clamp(0.0, n) as u32;
    let extra = (n * strategy.maximum_over_capacity + EPSILON).floor().clamp(0.0, n) as u32;
    (lower, instances.saturating_add(extra))
}

/// What the step function needs of a definition: an app's or a pod's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy<'a> {
    pub instances: u32,
    /// Instances of another version are replaced.
    pub config_version: &'a str,
    pub upgrade_strategy: UpgradeStrategy,
    pub kill_selection: KillSelection,
    pub unreachable_strategy: UnreachableStrategy,
}

impl AppSpec {
    pub fn policy(&self) -> Policy<'_> {
        Policy {
            instances: self.instances,
            config_version: self.config_version(),
            upgrade_strategy: self.upgrade_strategy,
            kill_selection: self.kill_selection,
            unreachable_strategy: self.unreachable_strategy,
        }
    }
}

/// The next step for an app that should run `spec`.
pub fn step(spec: &AppSpec, instances: &[Instance], now: u64) -> Decision {
    step_with(&spec.policy(), instances, now)
}

/// The next step for whatever runs under `spec` (an app, a pod).
pub fn step_with(spec: &Policy, instances: &[Instance], now: u64) -> Decision {
    let mut decision = Decision::default();
    let view = unreachable_view(spec, instances, now, &mut decision);

    let killing = view.iter().filter(|i| i.state == InstanceState::Killing).count();
    let active: Vec<&Instance> = view.iter().map(|i| i.as_ref()).filter(|i| i.is_active()).collect();
    let total = active.len() + killing;
    let (current, old): (Vec<&Instance>, Vec<&Instance>) =
        active.iter().partition(|i| i.version == spec.config_version);
    let target = spec.instances as usize;
    let (lower, upper) = capacity_bounds(spec.instances, &spec.upgrade_strategy);

    if old.is_empty() {
        // Start, scale, or steady state.
        if current.len() < target {
            decision.launch = room(target - current.len(), upper as usize, total);
        } else {
            decision.kill = unreachable::excess_kills(spec, &current, now);
        }
        let healthy = current.iter().filter(|i| i.counts_as_healthy()).count();
        decision.complete = decision.launch == 0
            && decision.kill.is_empty()
            && killing == 0
            && current.len() >= target
            && healthy >= target;
    } else {
        // Rolling replacement of the old instances.
        let upper = if lower >= upper && target > 0 { upper + 1 } else { upper } as usize;
        let healthy = active.iter().filter(|i| i.counts_as_healthy()).count();
        let mut budget = healthy.saturating_sub(lower as usize);
        let mut candidates = Vec::new();
        if current.len() > target {
            let surplus = current.len() - target;
            candidates.extend(
                order_for_kill(current.clone(), spec.kill_selection, |_| 0)
                    .into_iter()
                    .take(surplus),
            );
        }
        candidates.extend(order_for_kill(old, spec.kill_selection, |_| 0));
        for c in candidates {
            if c.counts_as_healthy() {
                if budget == 0 {
                    continue;
                }
                budget -= 1;
            }
            decision.kill.push(c.id.clone());
        }
        decision.launch = room(target.saturating_sub(current.len()), upper, total);
    }

    // An unreachable instance cannot be killed: it is forgotten instead.
    let (gone, kill): (Vec<InstanceId>, Vec<InstanceId>) = decision.kill.into_iter().partition(|id| {
        view.iter()
            .any(|i| &i.id == id && i.state == InstanceState::Unreachable)
    });
    decision.kill = kill;
    decision.expunge.extend(gone);
    decision.expunge.sort();
    decision.mark_inactive.sort();
    decision
}

/// `StopApplication` or deletion: kill everything, forget what is unreachable. Complete once no
/// instance is left.
pub fn stop(instances: &[Instance]) -> Decision {
    let mut decision = Decision {
        complete: instances.is_empty(),
        ..Decision::default()
    };
    for i in instances {
        match i.state {
            InstanceState::Killing => {}
            InstanceState::Unreachable | InstanceState::UnreachableInactive => decision.expunge.push(i.id.clone()),
            _ => decision.kill.push(i.id.clone()),
        }
    }
    decision.kill.sort();
    decision.expunge.sort();
    decision
}

/// How many of `wanted` fit under `upper` when `total` are there.
fn room(wanted: usize, upper: usize, total: usize) -> u32 {
    wanted.min(upper.saturating_sub(total)) as u32
}

/// Applies the unreachable strategy: records which instances turn inactive or are expunged and
/// returns the instances as they are after that (expunged ones removed).
/// Borrowed where nothing changes: the planner runs on every state change, over every instance.
fn unreachable_view<'a>(
    spec: &Policy,
    instances: &'a [Instance],
    now: u64,
    decision: &mut Decision,
) -> Vec<Cow<'a, Instance>> {
    let mut view = Vec::with_capacity(instances.len());
    for inst in instances {
        if !matches!(
            inst.state,
            InstanceState::Unreachable | InstanceState::UnreachableInactive
        ) {
            view.push(Cow::Borrowed(inst));
            continue;
        }
        let since = inst.unreachable_since.unwrap_or(now);
        match unreachable::decide(&spec.unreachable_strategy, since, now) {
            UnreachableAction::Expunge => decision.expunge.push(inst.id.clone()),
            UnreachableAction::Inactive { .. } => {
                if inst.state == InstanceState::Unreachable {
                    decision.mark_inactive.push(inst.id.clone());
                }
                view.push(Cow::Owned(Instance {
                    state: InstanceState::UnreachableInactive,
                    ..inst.clone()
                }));
            }
            UnreachableAction::Wait { .. } => view.push(Cow::Borrowed(inst)),
        }
    }
    view
}

/// How eagerly an instance is killed: the least useful first.
fn kill_rank(i: &Instance) -> u8 {
    match i.state {
        InstanceState::Scheduled => 0,
        InstanceState::Unreachable | InstanceState::UnreachableInactive => 1,
        InstanceState::Staged => 2,
        InstanceState::Starting => 3,
        InstanceState::Running if !i.counts_as_healthy() => 4,
        InstanceState::Running => 5,
        InstanceState::Killing => 6,
    }
}

/// Orders instances for killing: by state (scheduled, unreachable, staged, starting, unhealthy,
/// healthy), then by `class` (lower first), then by `killSelection` on `started_at`, then by id.
pub(crate) fn order_for_kill(
    mut instances: Vec<&Instance>,
    selection: KillSelection,
    class: impl Fn(&Instance) -> u8,
) -> Vec<&Instance> {
    instances.sort_by_key(|i| {
        let started = i.started_at.unwrap_or(u64::MAX);
        let age = match selection {
            KillSelection::YoungestFirst => Reverse(started),
            KillSelection::OldestFirst => Reverse(u64::MAX - started),
        };
        (kill_rank(i), class(i), age, i.id.clone())
    });
    instances
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppDefinition, UnreachableStrategy};
    use crate::instance::Health;
    use crate::path::PathId;
    use crate::validate::validate_app;

    const V1: &str = "v1";
    const V2: &str = "v2";

    fn spec(instances: u32, min_health: f64, over: f64) -> AppSpec {
        let json = format!(
            r#"{{"id":"/a","cmd":"x","instances":{instances},
               "upgradeStrategy":{{"minimumHealthCapacity":{min_health},"maximumOverCapacity":{over}}}}}"#
        );
        let mut s = validate_app(&AppDefinition::from_json(&json).unwrap(), &PathId::root(), 0).unwrap();
        s.version_info.last_config_change_at = V2.into();
        s
    }

    fn inst(id: &str, version: &str, state: InstanceState, health: Health, started: u64) -> Instance {
        Instance {
            id: id.into(),
            version: version.into(),
            state,
            health,
            agent: None,
            started_at: Some(started),
            unreachable_since: None,
        }
    }

    fn healthy(id: &str, version: &str, started: u64) -> Instance {
        inst(id, version, InstanceState::Running, Health::Healthy, started)
    }

    #[test]
    fn bounds_round_like_marathon() {
        let s = |m, o| UpgradeStrategy {
            minimum_health_capacity: m,
            maximum_over_capacity: o,
        };
        assert_eq!(capacity_bounds(10, &s(1.0, 1.0)), (10, 20));
        assert_eq!(capacity_bounds(10, &s(0.3, 0.3)), (3, 13));
        assert_eq!(capacity_bounds(3, &s(0.5, 0.5)), (2, 4));
        assert_eq!(capacity_bounds(3, &s(0.0, 0.0)), (0, 3));
        assert_eq!(capacity_bounds(0, &s(1.0, 1.0)), (0, 0));
    }

    #[test]
    fn starts_from_zero_and_completes_when_healthy() {
        let s = spec(3, 1.0, 1.0);
        let d = step(&s, &[], 0);
        assert_eq!(d.launch, 3);
        assert!(!d.complete);
        let staged: Vec<Instance> = (0..3)
            .map(|i| inst(&format!("i{i}"), V2, InstanceState::Staged, Health::Pending, i))
            .collect();
        let d = step(&s, &staged, 0);
        assert_eq!((d.launch, d.kill.len(), d.complete), (0, 0, false));
        let running: Vec<Instance> = (0..3).map(|i| healthy(&format!("i{i}"), V2, i)).collect();
        assert!(step(&s, &running, 0).complete);
    }

    #[test]
    fn scales_down_youngest_first_and_unhealthy_before_healthy() {
        let s = spec(2, 1.0, 1.0);
        let all = vec![
            healthy("old", V2, 1),
            healthy("mid", V2, 2),
            healthy("young", V2, 3),
            inst("sick", V2, InstanceState::Running, Health::Unhealthy, 0),
        ];
        let d = step(&s, &all, 0);
        assert_eq!(d.kill, ["sick", "young"]);
        let mut oldest = s.clone();
        oldest.kill_selection = KillSelection::OldestFirst;
        let d = step(&oldest, &all[..3], 0);
        assert_eq!(d.kill, ["old"]);
    }

    #[test]
    fn scheduled_instances_go_first() {
        let s = spec(1, 1.0, 1.0);
        let mut queued = inst("q", V2, InstanceState::Scheduled, Health::Pending, 0);
        queued.started_at = None;
        let d = step(&s, &[healthy("a", V2, 1), queued], 0);
        assert_eq!(d.kill, ["q"]);
    }

    #[test]
    fn rolling_upgrade_with_full_health_capacity_starts_new_before_killing_old() {
        let s = spec(2, 1.0, 1.0);
        let old = vec![healthy("o1", V1, 1), healthy("o2", V1, 2)];
        let d = step(&s, &old, 0);
        assert_eq!(d.launch, 2);
        assert!(d.kill.is_empty());
        // New ones staged: nothing more to do until they are healthy.
        let mut with_new = old.clone();
        with_new.push(inst("n1", V2, InstanceState::Staged, Health::Pending, 10));
        with_new.push(inst("n2", V2, InstanceState::Staged, Health::Pending, 11));
        let d = step(&s, &with_new, 0);
        assert_eq!((d.launch, d.kill.len()), (0, 0));
        // One new healthy: one old may go.
        with_new[2] = healthy("n1", V2, 10);
        let d = step(&s, &with_new, 0);
        assert_eq!(d.kill, ["o2"]);
        // All new healthy: all old go; not complete until they are gone.
        with_new[3] = healthy("n2", V2, 11);
        let d = step(&s, &with_new, 0);
        assert_eq!(d.kill, ["o2", "o1"]);
        assert!(!d.complete);
        assert!(step(&s, &with_new[2..], 0).complete);
    }

    #[test]
    fn rolling_upgrade_with_half_capacity_and_no_overcapacity() {
        let s = spec(4, 0.5, 0.0);
        let old: Vec<Instance> = (0..4).map(|i| healthy(&format!("o{i}"), V1, i)).collect();
        let d = step(&s, &old, 0);
        assert_eq!(d.kill.len(), 2, "down to half first");
        assert_eq!(d.launch, 0, "no room while the kills are under way");
        let mut next: Vec<Instance> = old[..2].to_vec();
        let d = step(&s, &next, 0);
        assert_eq!((d.launch, d.kill.len()), (2, 0));
        next.push(healthy("n0", V2, 10));
        next.push(healthy("n1", V2, 11));
        let d = step(&s, &next, 0);
        assert_eq!(d.kill.len(), 2);
        assert_eq!(d.launch, 0);
    }

    #[test]
    fn zero_health_capacity_kills_everything_first() {
        let s = spec(3, 0.0, 0.0);
        let old: Vec<Instance> = (0..3).map(|i| healthy(&format!("o{i}"), V1, i)).collect();
        let d = step(&s, &old, 0);
        assert_eq!(d.kill.len(), 3);
        assert_eq!(d.launch, 0);
        let killing: Vec<Instance> = old
            .iter()
            .map(|i| Instance {
                state: InstanceState::Killing,
                ..i.clone()
            })
            .collect();
        assert_eq!(
            step(&s, &killing, 0).launch,
            0,
            "killed instances still hold their place"
        );
        assert_eq!(step(&s, &[], 0).launch, 3);
    }

    #[test]
    fn full_health_capacity_without_overcapacity_may_go_one_over() {
        let s = spec(3, 1.0, 0.0);
        let old: Vec<Instance> = (0..3).map(|i| healthy(&format!("o{i}"), V1, i)).collect();
        let d = step(&s, &old, 0);
        assert_eq!((d.launch, d.kill.len()), (1, 0));
        let mut next = old.clone();
        next.push(healthy("n0", V2, 10));
        let d = step(&s, &next, 0);
        assert_eq!((d.launch, d.kill.len()), (0, 1));
    }

    #[test]
    fn unhealthy_old_instances_are_replaced_without_waiting() {
        let s = spec(2, 1.0, 0.0);
        let old = vec![
            healthy("o1", V1, 1),
            inst("o2", V1, InstanceState::Running, Health::Unhealthy, 2),
        ];
        let d = step(&s, &old, 0);
        assert_eq!(d.kill, ["o2"]);
    }

    #[test]
    fn unreachable_instances_turn_inactive_and_are_replaced() {
        let mut s = spec(2, 1.0, 1.0);
        s.unreachable_strategy = UnreachableStrategy::Enabled {
            inactive_after_seconds: 60,
            expunge_after_seconds: 120,
        };
        let mut lost = healthy("lost", V2, 1);
        lost.state = InstanceState::Unreachable;
        lost.unreachable_since = Some(0);
        let all = vec![healthy("ok", V2, 2), lost.clone()];
        let d = step(&s, &all, 30_000);
        assert_eq!(
            (d.launch, d.mark_inactive.len()),
            (0, 0),
            "still within inactiveAfterSeconds"
        );
        let d = step(&s, &all, 60_000);
        assert_eq!(d.mark_inactive, ["lost"]);
        assert_eq!(d.launch, 1);
        let inactive = Instance {
            state: InstanceState::UnreachableInactive,
            ..lost.clone()
        };
        let d = step(&s, &[healthy("ok", V2, 2), inactive.clone()], 90_000);
        assert_eq!((d.launch, d.mark_inactive.len(), d.expunge.len()), (1, 0, 0));
        let d = step(&s, &[healthy("ok", V2, 2), inactive], 120_000);
        assert_eq!(d.expunge, ["lost"]);
        s.unreachable_strategy = UnreachableStrategy::Disabled;
        let d = step(&s, &all, 0);
        assert_eq!((d.expunge.as_slice(), d.launch), (&["lost".to_string()][..], 1));
    }

    #[test]
    fn unreachable_instances_to_be_removed_are_expunged_not_killed() {
        let s = spec(1, 1.0, 1.0);
        let mut lost = healthy("lost", V2, 1);
        lost.state = InstanceState::Unreachable;
        lost.unreachable_since = Some(0);
        let d = step(&s, &[healthy("ok", V2, 2), lost], 1_000);
        assert!(d.kill.is_empty());
        assert_eq!(d.expunge, ["lost"]);
    }

    #[test]
    fn stop_kills_everything() {
        let mut lost = healthy("lost", V1, 1);
        lost.state = InstanceState::Unreachable;
        let all = vec![
            healthy("a", V1, 1),
            inst("k", V1, InstanceState::Killing, Health::Healthy, 1),
            lost,
        ];
        let d = stop(&all);
        assert_eq!(d.kill, ["a"]);
        assert_eq!(d.expunge, ["lost"]);
        assert!(!d.complete);
        assert!(stop(&[]).complete);
    }

    #[test]
    fn deterministic_under_input_order() {
        let s = spec(2, 0.5, 0.5);
        let mut all: Vec<Instance> = (0..5).map(|i| healthy(&format!("o{i}"), V1, i % 2)).collect();
        let a = step(&s, &all, 0);
        all.reverse();
        assert_eq!(step(&s, &all, 0), a);
    }
}
