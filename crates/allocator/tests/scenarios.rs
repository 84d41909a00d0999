//! Deterministic scenarios: each drives the allocator by hand, with time passed in, and checks
//! the invariants after every step.

mod common;

use std::collections::BTreeMap;

use common::*;
use tepui_allocator::{
    AgentId, AgentMode, Allocator, Attributes, Capabilities, Config, Error, Filters, FrameworkId, Offer, Quota,
    ResourceName, Resources, Scalar,
};

const HOUR: u64 = 3_600_000;

fn alloc() -> Allocator {
    Allocator::new(Config::default())
}

fn allocate(a: &mut Allocator, now: u64) -> Vec<Offer> {
    let offers = a.allocate(now);
    check(a, format!("after allocate({now})"));
    offers
}

fn cpus(r: &Resources) -> Scalar {
    r.scalar_sum(&ResourceName::CPUS)
}

/// Each framework launches one task of its demand per offer and gives the rest back at once;
/// an offer its task does not fit is declined for an hour. Runs until nothing is offered and
/// returns the tasks launched per framework.
fn one_task_per_offer(a: &mut Allocator, demands: &BTreeMap<FrameworkId, Resources>) -> BTreeMap<FrameworkId, u64> {
    let mut tasks: BTreeMap<FrameworkId, u64> = demands.keys().map(|f| (*f, 0)).collect();
    for now in 0..100_000 {
        let offers = allocate(a, now);
        if offers.is_empty() {
            return tasks;
        }
        for o in offers {
            let task = &demands[&o.framework];
            if o.resources.contains(task) {
                a.accept(o.id, task, Filters::NONE, now).unwrap();
                *tasks.get_mut(&o.framework).unwrap() += 1;
            } else {
                a.decline(o.id, Filters { refuse: HOUR }, now).unwrap();
            }
            check(a, format!("after answering offer {} at {now}", o.id));
        }
    }
    panic!("allocation did not settle");
}

#[test]
fn exact_arithmetic_through_the_allocator() {
    assert_eq!(
        res("cpus:0.1").iter().next().unwrap().as_scalar().unwrap() + "0.2".parse().unwrap(),
        "0.3".parse().unwrap()
    );
    let mut sum = res("cpus:0.1");
    sum.add(&res("cpus:0.2"));
    assert_eq!(sum, res("cpus:0.3"));

    // An agent of 0.3 cpus takes exactly three tasks of 0.1 and is then empty, with no crumbs.
    let mut a = Allocator::new(Config {
        min_allocatable: vec![],
        ..Config::default()
    });
    let ag = agent(&mut a, 1, "cpus:0.3;mem:300");
    let f = framework(&mut a, 1, &["r"]);
    let task = res("cpus:0.1;mem:100");
    let tasks = one_task_per_offer(&mut a, &BTreeMap::from([(f, task.clone())]));
    assert_eq!(tasks[&f], 3);
    assert!(a.agent_unallocated(ag).unwrap().is_empty());
    for (agent, r, held) in a.allocations_of(f) {
        a.recover(f, agent, &r, &held).unwrap();
    }
    assert_eq!(a.agent_unallocated(ag).unwrap(), &res("cpus:0.3;mem:300"));
    check(&a, "after recovering everything");
}

#[test]
fn drf_mesos_paper_example_frameworks_in_one_role() {
    // DRF paper / Mesos paper: 9 cpus, 18 GB; A's tasks <1 cpu, 4 GB>, B's <3 cpus, 1 GB>.
    let mut a = alloc();
    agent(&mut a, 1, "cpus:9;mem:18432");
    let fa = framework(&mut a, 1, &["analytics"]);
    let fb = framework(&mut a, 2, &["analytics"]);
    let tasks = one_task_per_offer(
        &mut a,
        &BTreeMap::from([(fa, res("cpus:1;mem:4096")), (fb, res("cpus:3;mem:1024"))]),
    );
    assert_eq!((tasks[&fa], tasks[&fb]), (3, 2));
}

#[test]
fn drf_mesos_paper_example_across_roles() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:9;mem:18432");
    let fa = framework(&mut a, 1, &["a"]);
    let fb = framework(&mut a, 2, &["b"]);
    let tasks = one_task_per_offer(
        &mut a,
        &BTreeMap::from([(fa, res("cpus:1;mem:4096")), (fb, res("cpus:3;mem:1024"))]),
    );
    assert_eq!((tasks[&fa], tasks[&fb]), (3, 2));
    // Both end with a dominant share of 2/3.
    assert!((a.role_share(&role("a")) - 2.0 / 3.0).abs() < 1e-9);
    assert!((a.role_share(&role("b")) - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn weighted_roles_get_shares_proportional_to_weight() {
    let mut a = alloc();
    for i in 0..10 {
        agent(&mut a, i, "cpus:10;mem:10240");
    }
    a.set_weight(&role("light"), units(1)).unwrap();
    a.set_weight(&role("heavy"), units(3)).unwrap();
    let fl = framework(&mut a, 1, &["light"]);
    let fh = framework(&mut a, 2, &["heavy"]);
    let task = res("cpus:1;mem:128");
    let tasks = one_task_per_offer(&mut a, &BTreeMap::from([(fl, task.clone()), (fh, task)]));
    assert_eq!(tasks[&fl] + tasks[&fh], 100);
    assert!(
        (24..=26).contains(&tasks[&fl]),
        "light {} heavy {}",
        tasks[&fl],
        tasks[&fh]
    );
}

#[test]
fn hierarchical_drf_splits_a_parent_share_among_children() {
    let mut a = alloc();
    for i in 0..10 {
        agent(&mut a, i, "cpus:10;mem:10240");
    }
    let web = framework(&mut a, 1, &["eng/web"]);
    let api = framework(&mut a, 2, &["eng/api"]);
    let ops = framework(&mut a, 3, &["ops"]);
    let task = res("cpus:1;mem:128");
    let tasks = one_task_per_offer(
        &mut a,
        &BTreeMap::from([(web, task.clone()), (api, task.clone()), (ops, task)]),
    );
    // eng and ops split the cluster; eng's half is split between web and api.
    assert!((49..=51).contains(&tasks[&ops]), "{tasks:?}");
    assert!(
        (24..=26).contains(&tasks[&web]) && (24..=26).contains(&tasks[&api]),
        "{tasks:?}"
    );
}

#[test]
fn quota_guarantee_is_met_before_other_roles_get_anything() {
    let mut a = alloc();
    for i in 0..4 {
        agent(&mut a, i, "cpus:2;mem:4096");
    }
    a.set_quota(
        &role("prod"),
        Quota {
            guarantees: q("cpus:6"),
            limits: q(""),
        },
        false,
    )
    .unwrap();
    // With no framework in prod yet, the others get only what the guarantee leaves over.
    framework(&mut a, 1, &["batch"]);
    let offers = allocate(&mut a, 0);
    let got: Scalar = offers
        .iter()
        .map(|o| cpus(&o.resources))
        .fold(Scalar::ZERO, |x, y| x + y);
    assert_eq!(
        got,
        units(2),
        "batch may take only the 2 cpus beyond prod's guarantee: {offers:?}"
    );
    for o in &offers {
        a.accept(o.id, &o.resources, Filters::NONE, 0).unwrap();
    }
    check(&a, "after batch accepts");
    assert!(
        allocate(&mut a, 1).is_empty(),
        "batch gets nothing more while prod's guarantee is open"
    );

    // prod arrives and gets its 6 cpus at once, though its share is now far above batch's.
    let prod = framework(&mut a, 2, &["prod"]);
    let offers = allocate(&mut a, 2);
    assert!(offers.iter().all(|o| o.framework == prod));
    let got: Scalar = offers
        .iter()
        .map(|o| cpus(&o.resources))
        .fold(Scalar::ZERO, |x, y| x + y);
    assert_eq!(got, units(6));
}

#[test]
fn quota_guarantee_is_cut_to_what_is_missing() {
    let mut a = alloc();
    for i in 0..4 {
        agent(&mut a, i, "cpus:2;mem:4096");
    }
    a.set_quota(
        &role("prod"),
        Quota {
            guarantees: q("cpus:3"),
            limits: q(""),
        },
        false,
    )
    .unwrap();
    let prod = framework(&mut a, 1, &["prod"]);
    let batch = framework(&mut a, 2, &["batch"]);
    let offers = allocate(&mut a, 0);
    let sum = |f: FrameworkId| {
        offers
            .iter()
            .filter(|o| o.framework == f)
            .map(|o| cpus(&o.resources))
            .fold(Scalar::ZERO, |x, y| x + y)
    };
    // prod gets its 3 guaranteed cpus in the quota stage; the rest is shared by DRF, where prod
    // (already at 3 of 8) comes after batch, so batch gets the other 5 cpus.
    assert_eq!(sum(prod), units(3));
    assert_eq!(sum(batch), units(5));
}

#[test]
fn quota_limit_is_never_exceeded() {
    let mut a = alloc();
    for i in 0..4 {
        agent(&mut a, i, "cpus:2;mem:4096");
    }
    a.set_quota(
        &role("capped"),
        Quota {
            guarantees: q(""),
            limits: q("cpus:3"),
        },
        false,
    )
    .unwrap();
    let f = framework(&mut a, 1, &["capped"]);
    for now in 0..5 {
        for o in allocate(&mut a, now) {
            a.accept(o.id, &o.resources, Filters::NONE, now).unwrap();
            check(&a, "after accept");
        }
        assert!(
            a.role_consumption(&role("capped"))
                .get(&ResourceName::CPUS)
                .unwrap_or_default()
                <= units(3)
        );
    }
    assert_eq!(
        a.role_consumption(&role("capped")).get(&ResourceName::CPUS),
        Some(units(3))
    );

    // A limit below what the role holds is refused unless forced; forced, it holds and shrinks.
    let err = a
        .set_quota(
            &role("capped"),
            Quota {
                guarantees: q(""),
                limits: q("cpus:1"),
            },
            false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::LimitBelowConsumption { .. }), "{err}");
    a.set_quota(
        &role("capped"),
        Quota {
            guarantees: q(""),
            limits: q("cpus:1"),
        },
        true,
    )
    .unwrap();
    check(&a, "after forcing a lower limit");
    assert!(allocate(&mut a, 10).iter().all(|o| cpus(&o.resources).is_zero()));
    let (ag, r, held) = a
        .allocations_of(f)
        .into_iter()
        .find(|(_, _, h)| !cpus(h).is_zero())
        .unwrap();
    a.recover(f, ag, &r, &Resources::scalar(ResourceName::CPUS, cpus(&held)))
        .unwrap();
    check(&a, "after recovering under a forced limit");

    // Guarantees above limits are refused; a parent's limit caps its children.
    let err = a
        .set_quota(
            &role("x"),
            Quota {
                guarantees: q("cpus:2"),
                limits: q("cpus:1"),
            },
            false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::GuaranteeAboveLimit { .. }));
    a.set_quota(
        &role("team"),
        Quota {
            guarantees: q(""),
            limits: q("cpus:1.5"),
        },
        false,
    )
    .unwrap();
    let child = framework(&mut a, 2, &["team/a"]);
    for now in 20..25 {
        for o in allocate(&mut a, now) {
            a.accept(o.id, &o.resources, Filters::NONE, now).unwrap();
        }
    }
    assert_eq!(
        a.role_consumption(&role("team")).get(&ResourceName::CPUS),
        Some("1.5".parse().unwrap())
    );
    assert!(
        a.allocations_of(child)
            .iter()
            .map(|(_, _, h)| cpus(h))
            .fold(Scalar::ZERO, |x, y| x + y)
            <= "1.5".parse().unwrap()
    );
}

#[test]
fn a_role_at_its_cpu_limit_is_not_offered_memory_alone() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:2;mem:4096");
    agent(&mut a, 2, "cpus:2;mem:4096");
    a.set_quota(
        &role("capped"),
        Quota {
            guarantees: q(""),
            limits: q("cpus:2"),
        },
        false,
    )
    .unwrap();
    let capped = framework(&mut a, 1, &["capped"]);
    let offers = allocate(&mut a, 0);
    assert_eq!(
        offers.len(),
        1,
        "the second agent would be memory without cpus: {offers:?}"
    );
    assert_eq!(offers[0].resources, res("cpus:2;mem:4096"));
    // So another role gets that agent whole, not cpus stripped of their memory.
    let other = framework(&mut a, 2, &["other"]);
    let offers = allocate(&mut a, 1);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        (offers[0].framework, &offers[0].resources),
        (other, &res("cpus:2;mem:4096"))
    );
    assert_eq!(a.offers_of(capped).len(), 1);
}

#[test]
fn reservations_count_against_limits() {
    let mut a = alloc();
    let ag = agent(&mut a, 1, "cpus:8;mem:8192");
    a.set_quota(
        &role("r"),
        Quota {
            guarantees: q(""),
            limits: q("cpus:2"),
        },
        false,
    )
    .unwrap();
    let err = a.reserve(ag, &role("r"), &res("cpus:3"), None).unwrap_err();
    assert!(matches!(err, Error::QuotaLimitExceeded { .. }), "{err}");
    a.reserve(ag, &role("r"), &res("cpus:2"), None).unwrap();
    check(&a, "after reserving");
    assert_eq!(a.role_consumption(&role("r")).get(&ResourceName::CPUS), Some(units(2)));
    // The role is at its limit: it is offered its reservation and no unreserved cpus.
    framework(&mut a, 1, &["r"]);
    let offers = allocate(&mut a, 0);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res("cpus(r,dynamic):2;mem:8192"));
}

#[test]
fn decline_filters_hold_for_refuse_seconds_then_expire() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:4;mem:4096");
    let f = framework(&mut a, 1, &["r"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    a.decline(o.id, Filters::default(), 0).unwrap();
    check(&a, "after decline");
    assert!(allocate(&mut a, 1).is_empty());
    assert!(allocate(&mut a, 4_999).is_empty());
    let again = allocate(&mut a, 5_000);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].framework, f);
    assert_ne!(again[0].id, o.id, "offer ids come from a counter");

    // Filters are per framework: another framework gets what one refused.
    a.decline(again[0].id, Filters::refuse_seconds(60.0), 5_000).unwrap();
    let g = framework(&mut a, 2, &["r"]);
    let other = allocate(&mut a, 5_001);
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].framework, g);
}

#[test]
fn a_filter_covers_only_the_resources_declined() {
    let mut a = alloc();
    let ag = agent(&mut a, 1, "cpus:4;mem:4096");
    let f1 = framework(&mut a, 1, &["r"]);
    let f2 = framework(&mut a, 2, &["r"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    assert_eq!(o.framework, f1);
    a.accept(o.id, &res("cpus:2;mem:2048"), Filters::NONE, 0).unwrap();
    let o = allocate(&mut a, 0).pop().unwrap();
    assert_eq!(o.framework, f2, "f2 has the lower share");
    a.decline(o.id, Filters { refuse: HOUR }, 0).unwrap();
    let o = allocate(&mut a, 1).pop().unwrap();
    assert_eq!(o.framework, f1);
    a.decline(o.id, Filters { refuse: HOUR }, 1).unwrap();
    assert!(allocate(&mut a, 2).is_empty(), "both refuse cpus:2;mem:2048");
    // f1's task ends: cpus:4;mem:4096 is more than either declined, so it is offered again.
    a.recover(f1, ag, &role("r"), &res("cpus:2;mem:2048")).unwrap();
    check(&a, "after recover");
    let o = allocate(&mut a, 3).pop().unwrap();
    assert_eq!(o.resources, res("cpus:4;mem:4096"));
}

#[test]
fn unused_resources_of_an_accept_are_filtered_too() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:4;mem:4096");
    framework(&mut a, 1, &["r"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    a.accept(o.id, &res("cpus:1;mem:1024"), Filters::default(), 0).unwrap();
    assert!(allocate(&mut a, 4_999).is_empty());
    assert_eq!(allocate(&mut a, 5_000).pop().unwrap().resources, res("cpus:3;mem:3072"));
}

#[test]
fn suppress_stops_offers_and_revive_restarts_them_and_clears_filters() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:4;mem:4096");
    agent(&mut a, 2, "cpus:4;mem:4096");
    let f = framework(&mut a, 1, &["r"]);
    for o in allocate(&mut a, 0) {
        a.decline(o.id, Filters { refuse: HOUR }, 0).unwrap();
    }
    a.suppress(f, &[]).unwrap();
    assert!(allocate(&mut a, 1).is_empty());
    a.revive(f, &[]).unwrap();
    assert_eq!(allocate(&mut a, 2).len(), 2, "revive cleared the one-hour filters");

    // Per role: a framework in two roles suppressed in one is offered only for the other.
    let mut a = alloc();
    agent(&mut a, 1, "cpus:4;mem:4096");
    agent(&mut a, 2, "cpus:4;mem:4096");
    let g = framework(&mut a, 1, &["x", "y"]);
    a.suppress(g, &[role("x")]).unwrap();
    let offers = allocate(&mut a, 0);
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().all(|o| o.role == role("y")));
    assert!(matches!(a.suppress(g, &[role("z")]), Err(Error::NotSubscribed { .. })));
    for o in offers {
        a.decline(o.id, Filters::NONE, 0).unwrap();
    }
    a.revive(g, &[role("x")]).unwrap();
    a.suppress(g, &[role("y")]).unwrap();
    assert!(allocate(&mut a, 1).iter().all(|o| o.role == role("x")));
}

#[test]
fn offers_time_out_and_are_rescinded() {
    let mut a = Allocator::new(Config {
        offer_timeout: Some(10_000),
        ..Config::default()
    });
    let ag = agent(&mut a, 1, "cpus:4;mem:4096");
    framework(&mut a, 1, &["r"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    assert!(a.expired_offers(9_999).is_empty());
    assert_eq!(a.expired_offers(10_000), vec![o.id]);
    check(&a, "after expiry");
    assert!(a.offer(o.id).is_none());
    assert_eq!(a.agent_unallocated(ag).unwrap(), a.agent_total(ag).unwrap());
    assert_eq!(
        a.accept(o.id, &res("cpus:1"), Filters::NONE, 10_001),
        Err(Error::UnknownOffer(o.id))
    );
    // No filter: offered again at once.
    let again = allocate(&mut a, 10_001);
    assert_eq!(again.len(), 1);
    assert!(a.expired_offers(20_000).is_empty(), "the new offer expires at 20001");
    assert_eq!(a.expired_offers(20_001), vec![again[0].id]);
}

#[test]
fn draining_and_deactivated_agents_are_not_offered() {
    let mut a = alloc();
    let a1 = agent(&mut a, 1, "cpus:4;mem:4096");
    let a2 = agent(&mut a, 2, "cpus:4;mem:4096");
    let f = framework(&mut a, 1, &["r"]);
    let offers = allocate(&mut a, 0);
    assert_eq!(offers.len(), 2);
    let on_a1 = offers.iter().find(|o| o.agent == a1).unwrap().id;
    assert_eq!(
        a.update_agent_state(a1, AgentMode::Draining).unwrap(),
        vec![on_a1],
        "its offer is rescinded"
    );
    check(&a, "after drain");
    for o in a.offers_of(f).iter().map(|o| o.id).collect::<Vec<_>>() {
        a.decline(o, Filters::NONE, 0).unwrap();
    }
    for now in 1..4 {
        let offers = allocate(&mut a, now);
        assert!(offers.iter().all(|o| o.agent == a2), "{offers:?}");
        for o in offers {
            a.decline(o.id, Filters::NONE, now).unwrap();
        }
    }
    a.update_agent_state(a1, AgentMode::Deactivated).unwrap();
    assert!(allocate(&mut a, 5).iter().all(|o| o.agent == a2));
    for o in a.offers_of(f).iter().map(|o| o.id).collect::<Vec<_>>() {
        a.decline(o, Filters::NONE, 5).unwrap();
    }
    a.update_agent_state(a1, AgentMode::Active).unwrap();
    assert_eq!(allocate(&mut a, 6).len(), 2);
    assert_eq!(a.agent_mode(a1), Some(AgentMode::Active));
}

fn sole_offer(total: &str, roles: &[&str]) -> Resources {
    let mut a = alloc();
    agent(&mut a, 1, total);
    framework(&mut a, 1, roles);
    let offers = allocate(&mut a, 0);
    assert!(offers.len() <= 1);
    offers.into_iter().next().map(|o| o.resources).unwrap_or_default()
}

#[test]
fn reservations_go_only_to_their_role_and_its_descendants() {
    let total = "cpus:1;mem:1024;cpus(eng):4;mem(eng):4096";
    let unreserved = res("cpus:1;mem:1024");
    assert_eq!(sole_offer(total, &["eng"]), res(total));
    assert_eq!(
        sole_offer(total, &["eng/web"]),
        res(total),
        "a reservation to eng serves eng/web"
    );
    assert_eq!(sole_offer(total, &["eng/web/frontend"]), res(total));
    assert_eq!(sole_offer(total, &["ops"]), unreserved);
    assert_eq!(sole_offer(total, &["engine"]), unreserved, "engine is not under eng");
    // A reservation to a child does not serve its parent.
    assert_eq!(
        sole_offer("cpus:1;mem:64;cpus(eng/web):2;mem(eng/web):512", &["eng"]),
        res("cpus:1;mem:64")
    );

    // With everyone present, reserved resources still reach only eng's subtree.
    let mut a = alloc();
    for i in 0..5 {
        agent(&mut a, i, total);
    }
    let ops = framework(&mut a, 1, &["ops"]);
    framework(&mut a, 2, &["eng/web"]);
    framework(&mut a, 3, &["engine"]);
    for now in 0..20 {
        for o in allocate(&mut a, now) {
            if o.resources.iter().any(|e| e.reservation.is_some()) {
                assert!(o.role == role("eng/web"), "{o:?}");
            }
            a.decline(o.id, Filters::NONE, now).unwrap();
        }
    }
    assert!(a.offers_of(ops).is_empty());
}

#[test]
fn dynamic_reservations_by_operators_and_frameworks() {
    let mut a = alloc();
    let ag = agent(&mut a, 1, "cpus:4;mem:4096;cpus(eng):1");
    // Static reservations cannot be unreserved; nothing is reserved to '*'.
    assert!(matches!(
        a.unreserve(ag, &res("cpus(eng):1"), None),
        Err(Error::StaticReservation { .. })
    ));
    assert!(matches!(
        a.reserve(ag, &tepui_allocator::Role::default_role(), &res("cpus:1"), None),
        Err(Error::InvalidReservation { .. })
    ));
    // An operator reserves unallocated resources.
    let reserved = a.reserve(ag, &role("ops"), &res("cpus:2;mem:1024"), None).unwrap();
    assert_eq!(reserved, res("cpus(ops,dynamic):2;mem(ops,dynamic):1024"));
    check(&a, "after reserve");
    assert_eq!(
        a.agent_total(ag).unwrap(),
        &res("cpus:2;mem:3072;cpus(eng):1;cpus(ops,dynamic):2;mem(ops,dynamic):1024")
    );
    assert!(matches!(
        a.reserve(ag, &role("ops"), &res("cpus:3"), None),
        Err(Error::NotAvailable { .. })
    ));
    let f = framework(&mut a, 1, &["ops"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    assert_eq!(
        o.resources,
        res("cpus:2;mem:3072;cpus(ops,dynamic):2;mem(ops,dynamic):1024")
    );
    // Accept unreserved cpus and reserve them for ops from the framework's holding.
    a.accept(
        o.id,
        &res("cpus:1;cpus(ops,dynamic):2;mem(ops,dynamic):1024"),
        Filters::NONE,
        0,
    )
    .unwrap();
    a.reserve(ag, &role("ops"), &res("cpus:1"), Some(f)).unwrap();
    check(&a, "after a framework's reserve");
    assert_eq!(a.allocated(f, ag), res("cpus(ops,dynamic):3;mem(ops,dynamic):1024"));
    // Unreserve while held, then give back; then the operator unreserves the rest.
    a.unreserve(ag, &res("cpus(ops,dynamic):1"), Some((f, role("ops"))))
        .unwrap();
    check(&a, "after a framework's unreserve");
    a.recover(f, ag, &role("ops"), &a.allocated(f, ag)).unwrap();
    check(&a, "after recover");
    a.unreserve(ag, &res("cpus(ops,dynamic):2;mem(ops,dynamic):1024"), None)
        .unwrap();
    check(&a, "after the operator's unreserve");
    assert_eq!(a.agent_total(ag).unwrap(), &res("cpus:4;mem:4096;cpus(eng):1"));
    assert!(a.role_consumption(&role("ops")).is_empty());
}

#[test]
fn the_offer_cap_limits_outstanding_offers_per_framework() {
    let mut a = Allocator::new(Config {
        max_offers_per_framework: Some(2),
        ..Config::default()
    });
    for i in 0..5 {
        agent(&mut a, i, "cpus:1;mem:1024");
    }
    let f = framework(&mut a, 1, &["r"]);
    let g = framework(&mut a, 2, &["r"]);
    let offers = allocate(&mut a, 0);
    assert_eq!(offers.iter().filter(|o| o.framework == f).count(), 2);
    assert_eq!(offers.iter().filter(|o| o.framework == g).count(), 2);
    assert!(
        allocate(&mut a, 1).is_empty(),
        "both at the cap; one agent stays unoffered"
    );
    a.decline(offers[0].id, Filters::NONE, 1).unwrap();
    assert_eq!(allocate(&mut a, 2).len(), 1);
}

#[test]
fn scraps_below_the_minimum_are_not_offered() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:0.005;mem:16");
    framework(&mut a, 1, &["r"]);
    assert!(allocate(&mut a, 0).is_empty());
    agent(&mut a, 2, "cpus:1;mem:1040");
    let o = allocate(&mut a, 1).pop().unwrap();
    assert_eq!(o.agent, AgentId(2));
    a.accept(o.id, &res("cpus:0.995;mem:1024"), Filters::NONE, 1).unwrap();
    assert!(
        allocate(&mut a, 2).is_empty(),
        "cpus:0.005;mem:16 is left on both agents"
    );
    // mem alone above the minimum is worth an offer.
    agent(&mut a, 3, "mem:32");
    assert_eq!(allocate(&mut a, 3).len(), 1);
}

#[test]
fn gpu_agents_go_only_to_gpu_capable_frameworks() {
    let mut a = alloc();
    agent(&mut a, 1, "cpus:8;mem:8192;gpus:2");
    agent(&mut a, 2, "cpus:8;mem:8192");
    framework(&mut a, 1, &["r"]);
    let offers = allocate(&mut a, 0);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent, AgentId(2));
    a.add_framework(FrameworkId(2), &[role("ml")], Capabilities { gpu_resources: true })
        .unwrap();
    let offers = allocate(&mut a, 1);
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].agent, offers[0].framework), (AgentId(1), FrameworkId(2)));
    assert_eq!(offers[0].resources.scalar_sum(&ResourceName::GPUS), units(2));
}

#[test]
fn removing_agents_and_frameworks_returns_their_offers_and_frees_their_holdings() {
    let mut a = alloc();
    let a1 = agent(&mut a, 1, "cpus:4;mem:4096");
    let a2 = agent(&mut a, 2, "cpus:4;mem:4096");
    let f = framework(&mut a, 1, &["r"]);
    let g = framework(&mut a, 2, &["r"]);
    let offers = allocate(&mut a, 0);
    let of = offers.iter().find(|o| o.framework == f).unwrap().clone();
    let og = offers.iter().find(|o| o.framework == g).unwrap().clone();
    a.accept(of.id, &res("cpus:1;mem:1024"), Filters::NONE, 0).unwrap();
    assert_eq!(a.remove_framework(f).unwrap(), vec![]);
    check(&a, "after removing a framework");
    assert_eq!(a.agent_unallocated(of.agent).unwrap(), a.agent_total(of.agent).unwrap());
    assert_eq!(a.remove_agent(og.agent).unwrap(), vec![og.id]);
    check(&a, "after removing an agent");
    assert_eq!(a.cluster_total(), q("cpus:4;mem:4096"));
    assert_eq!(
        a.agent_ids().collect::<Vec<_>>(),
        vec![if og.agent == a1 { a2 } else { a1 }]
    );
    assert_eq!(a.remove_agent(og.agent), Err(Error::UnknownAgent(og.agent)));
}

#[test]
fn refused_calls_change_nothing() {
    let mut a = alloc();
    let ag = agent(&mut a, 1, "cpus:4;mem:4096;ports:[31000-31009]");
    let f = framework(&mut a, 1, &["r"]);
    let o = allocate(&mut a, 0).pop().unwrap();
    let before = format!("{:?}", a.outstanding_offers().collect::<Vec<_>>());
    assert!(matches!(
        a.accept(o.id, &res("cpus:5"), Filters::NONE, 0),
        Err(Error::NotInOffer { .. })
    ));
    assert!(matches!(
        a.accept(o.id, &res("ports:[30000-30000]"), Filters::NONE, 0),
        Err(Error::NotInOffer { .. })
    ));
    assert_eq!(before, format!("{:?}", a.outstanding_offers().collect::<Vec<_>>()));
    a.accept(o.id, &res("cpus:1;ports:[31000-31001]"), Filters::NONE, 0)
        .unwrap();
    assert!(matches!(
        a.recover(f, ag, &role("r"), &res("cpus:2")),
        Err(Error::NotAllocated { .. })
    ));
    assert!(matches!(
        a.recover(f, ag, &role("r"), &res("ports:[31002-31002]")),
        Err(Error::NotAllocated { .. })
    ));
    check(&a, "after refused calls");
    assert_eq!(
        a.add_agent(ag, res("cpus:1"), Attributes::new()),
        Err(Error::AgentExists(ag))
    );
    assert_eq!(
        a.add_framework(f, &[role("r")], Capabilities::default()),
        Err(Error::FrameworkExists(f))
    );
    assert_eq!(
        a.add_framework(FrameworkId(9), &[], Capabilities::default()),
        Err(Error::NoRoles(FrameworkId(9)))
    );
    assert!(matches!(
        a.set_weight(&role("r"), Scalar::ZERO),
        Err(Error::InvalidWeight { .. })
    ));
    // Ports are handed out exactly once.
    let o = allocate(&mut a, 1).pop().unwrap();
    assert_eq!(
        o.resources.unreserved_ranges(&ResourceName::PORTS).pairs(),
        &[(31002, 31009)]
    );
}

#[test]
fn attributes_are_kept_for_frameworks() {
    let mut a = alloc();
    let attrs = Attributes::parse("rack:r1;zone:eu-1a;cores:8").unwrap();
    a.add_agent(AgentId(7), res("cpus:1;mem:64"), attrs.clone()).unwrap();
    assert_eq!(a.agent_attributes(AgentId(7)), Some(&attrs));
}

#[test]
fn resources_in_use_after_a_failover_are_accounted() {
    let mut a = alloc();
    let ag = agent(&mut a, 1, "cpus:4;mem:4096");
    let f = framework(&mut a, 1, &["r"]);
    a.add_used(f, ag, &role("r"), &res("cpus:3;mem:1024")).unwrap();
    check(&a, "after add_used");
    assert_eq!(allocate(&mut a, 0).pop().unwrap().resources, res("cpus:1;mem:3072"));
    assert!(matches!(
        a.add_used(f, ag, &role("r"), &res("cpus:3")),
        Err(Error::NotAvailable { .. })
    ));
}
