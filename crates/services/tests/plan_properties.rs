//! Properties of the step function over random instance sets and upgrade strategies: it never
//! launches above the over-capacity bound, never kills below the health bound, is deterministic,
//! and a simulated cluster following its decisions converges.

use std::collections::BTreeSet;

use proptest::prelude::*;
use tepui_services::app::{AppDefinition, AppSpec, KillSelection};
use tepui_services::instance::{Health, Instance, InstanceState};
use tepui_services::path::PathId;
use tepui_services::plan::{capacity_bounds, step};
use tepui_services::unreachable::{decide, UnreachableAction};
use tepui_services::validate::validate_app;

const NEW: &str = "new";
const OLD: &str = "old";

fn spec(instances: u32, min_health: f64, over: f64, oldest_first: bool) -> AppSpec {
    let json = serde_json::json!({
        "id": "/app", "cmd": "x", "instances": instances,
        "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": over},
        "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120},
    });
    let mut s = validate_app(
        &AppDefinition::from_json(&json.to_string()).unwrap(),
        &PathId::root(),
        0,
    )
    .unwrap();
    s.version_info.last_config_change_at = NEW.into();
    if oldest_first {
        s.kill_selection = KillSelection::OldestFirst;
    }
    s
}

fn state() -> impl Strategy<Value = InstanceState> {
    prop_oneof![
        Just(InstanceState::Scheduled),
        Just(InstanceState::Staged),
        Just(InstanceState::Starting),
        Just(InstanceState::Running),
        Just(InstanceState::Running),
        Just(InstanceState::Running),
        Just(InstanceState::Unreachable),
        Just(InstanceState::UnreachableInactive),
        Just(InstanceState::Killing),
    ]
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::NoChecks),
        Just(Health::Pending),
        Just(Health::Healthy),
        Just(Health::Unhealthy)
    ]
}

fn instances() -> impl Strategy<Value = Vec<Instance>> {
    prop::collection::vec(
        (
            any::<bool>(),
            state(),
            health(),
            0u64..1_000,
            prop::option::of(0u64..200_000),
            any::<bool>(),
        ),
        0..14,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (is_new, state, health, started, unreachable_since, returned))| {
                let unreachable = matches!(state, InstanceState::Unreachable | InstanceState::UnreachableInactive);
                Instance {
                    id: format!("i{i:02}"),
                    version: if is_new { NEW } else { OLD }.into(),
                    state,
                    health,
                    agent: None,
                    started_at: (state != InstanceState::Scheduled).then_some(started),
                    unreachable_since: if unreachable || returned {
                        unreachable_since
                    } else {
                        None
                    },
                }
            })
            .collect()
    })
}

fn strategy() -> impl Strategy<Value = (u32, f64, f64, bool)> {
    let fraction = prop_oneof![Just(0.0), Just(0.25), Just(0.5), Just(1.0), 0.0f64..=1.0];
    (0u32..9, fraction.clone(), fraction, any::<bool>())
}

/// The instances as the planner sees them after the unreachable strategy: expunged ones gone,
/// inactive ones marked. Also returns the ids expunged for their time.
fn planner_view(s: &AppSpec, all: &[Instance], now: u64) -> (Vec<Instance>, BTreeSet<String>) {
    let mut view = Vec::new();
    let mut expired = BTreeSet::new();
    for i in all {
        if !matches!(i.state, InstanceState::Unreachable | InstanceState::UnreachableInactive) {
            view.push(i.clone());
            continue;
        }
        match decide(&s.unreachable_strategy, i.unreachable_since.unwrap_or(now), now) {
            UnreachableAction::Expunge => {
                expired.insert(i.id.clone());
            }
            UnreachableAction::Inactive { .. } => view.push(Instance {
                state: InstanceState::UnreachableInactive,
                ..i.clone()
            }),
            UnreachableAction::Wait { .. } => view.push(i.clone()),
        }
    }
    (view, expired)
}

fn occupying(i: &Instance) -> bool {
    i.is_active() || i.state == InstanceState::Killing
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn bounds_hold((n, m, o, oldest) in strategy(), all in instances(), now in 0u64..300_000) {
        let s = spec(n, m, o, oldest);
        let d = step(&s, &all, now);
        let (view, expired) = planner_view(&s, &all, now);

        // Lists name known instances, each once; kills only what can be killed, expunges only
        // what is unreachable.
        let mut seen = BTreeSet::new();
        for id in d.kill.iter().chain(&d.expunge) {
            prop_assert!(seen.insert(id.clone()), "{} listed twice", id);
        }
        for id in &d.kill {
            let inst = view.iter().find(|i| &i.id == id).expect("killed instance exists");
            prop_assert!(inst.is_active());
            prop_assert!(inst.state != InstanceState::Unreachable);
        }
        for id in &d.expunge {
            let unreachable = view.iter().any(|i| &i.id == id && i.state == InstanceState::Unreachable);
            prop_assert!(expired.contains(id) || unreachable, "{} expunged without being unreachable", id);
        }
        for id in &d.mark_inactive {
            prop_assert!(all.iter().any(|i| &i.id == id && i.state == InstanceState::Unreachable));
        }

        // Over-capacity: a launch never brings the instances above the bound.
        let total = view.iter().filter(|i| occupying(i)).count();
        let has_old = view.iter().any(|i| i.is_active() && i.version == OLD);
        let (lower, upper) = capacity_bounds(n, &s.upgrade_strategy);
        let upper = if has_old && lower >= upper && n > 0 { upper + 1 } else { upper };
        if d.launch > 0 {
            prop_assert!(total + d.launch as usize <= upper as usize, "total {} + launch {} > upper {}", total, d.launch, upper);
        }
        // Never more launched than the target needs.
        let current = view.iter().filter(|i| i.is_active() && i.version == NEW).count();
        prop_assert!(current + d.launch as usize <= (n as usize).max(current));

        // Health: killing never takes the healthy count below min(before, lower).
        let healthy_before = all.iter().filter(|i| i.counts_as_healthy()).count();
        let healthy_killed = all
            .iter()
            .filter(|i| i.counts_as_healthy() && (d.kill.contains(&i.id) || d.expunge.contains(&i.id)))
            .count();
        prop_assert!(
            healthy_before - healthy_killed >= healthy_before.min(lower as usize),
            "healthy {} - {} < min(.., {})", healthy_before, healthy_killed, lower
        );

        // Complete only when the target is reached.
        if d.complete {
            prop_assert!(!has_old);
            prop_assert!(view.iter().filter(|i| i.version == NEW && i.counts_as_healthy()).count() >= n as usize);
        }

        // Deterministic, whatever the order of the input.
        let mut reversed = all.clone();
        reversed.reverse();
        prop_assert_eq!(step(&s, &reversed, now), d);
    }

    #[test]
    fn a_cluster_that_follows_the_plan_converges((n, m, o, oldest) in strategy(), old_count in 0u32..9) {
        let s = spec(n, m, o, oldest);
        let (lower, upper) = capacity_bounds(n, &s.upgrade_strategy);
        let upper = if lower >= upper && n > 0 { upper + 1 } else { upper };
        let mut next_id = 0;
        let mut fresh = |version: &str, state: InstanceState, t: u64| {
            next_id += 1;
            Instance {
                id: format!("i{next_id:03}"),
                version: version.into(),
                state,
                health: Health::Healthy,
                agent: None,
                started_at: Some(t),
                unreachable_since: None,
            }
        };
        let mut world: Vec<Instance> = (0..old_count).map(|_| fresh(OLD, InstanceState::Running, 0)).collect();
        let mut done = false;
        for t in 1..200u64 {
            let d = step(&s, &world, t);
            let healthy = world.iter().filter(|i| i.counts_as_healthy()).count();
            // Apply the decision.
            world.retain(|i| !(d.kill.contains(&i.id) && i.state == InstanceState::Scheduled));
            for i in world.iter_mut().filter(|i| d.kill.contains(&i.id)) {
                i.state = InstanceState::Killing;
            }
            for _ in 0..d.launch {
                world.push(fresh(NEW, InstanceState::Scheduled, t));
            }
            let occupied = world.iter().filter(|i| occupying(i)).count();
            prop_assert!(d.launch == 0 || occupied <= upper as usize, "step {t}: {occupied} > {upper}");
            let healthy_after = world.iter().filter(|i| i.counts_as_healthy()).count();
            prop_assert!(healthy_after >= healthy.min(lower as usize));
            if d.complete {
                prop_assert_eq!(world.iter().filter(|i| i.version == NEW && i.counts_as_healthy()).count(), n as usize);
                prop_assert!(world.iter().all(|i| i.version == NEW));
                done = true;
                break;
            }
            // The world moves on: kills finish, launched instances start and become healthy.
            world.retain(|i| i.state != InstanceState::Killing);
            for i in world.iter_mut().filter(|i| i.state == InstanceState::Scheduled) {
                i.state = InstanceState::Running;
                i.started_at = Some(t);
            }
        }
        prop_assert!(done, "did not converge");
    }
}
