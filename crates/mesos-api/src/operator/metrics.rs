//! `/metrics/snapshot`, the Mesos master's metric names.
//!
//! Every server answers from its own copy of the replicated state, so `master/elected` is 1
//! only on the leader, and a follower's numbers lag the leader's by at most its replication
//! delay. Outstanding offers live in the leader's memory: elsewhere they are 0.
//!
//! Resource gauges count registered agents (not lost ones) and what live tasks hold; the
//! `*_percent` gauges are fractions (used / total), as in Mesos. Task metrics count the tasks
//! the state holds by state, for the terminal states too, so unlike Mesos' counters they do not
//! restart from 0 with a new leader.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use tepui_allocator::ResourceName;
use tepui_mesos::metrics::{self as names, Snapshot};
use tepui_state::{NodeStatus, TaskState};

use super::model::Model;
use tepui_master::Master;

pub(super) async fn snapshot(State(master): State<Master>, started: Instant) -> Json<Snapshot> {
    let elected = master.node().is_leader();
    let view = if elected { master.view() } else { None };
    let uptime = started.elapsed().as_secs_f64();
    Json(
        master
            .node()
            .read(|s| compute(&Model::new(s, view.as_ref()), elected, uptime)),
    )
}

fn milli_to_f64(milli: u64) -> f64 {
    milli as f64 / 1000.0
}

/// The metrics of the cluster as `m` shows it.
pub(super) fn compute(m: &Model, elected: bool, uptime_secs: f64) -> Snapshot {
    let mut out = Snapshot::new();
    let mut put = |name: &str, v: f64| {
        out.insert(name.to_string(), v);
    };
    put(names::MASTER_ELECTED, if elected { 1.0 } else { 0.0 });
    put(names::MASTER_UPTIME_SECS, uptime_secs);

    let agents = m.agents();
    let resources = [
        (
            ResourceName::CPUS,
            names::MASTER_CPUS_TOTAL,
            names::MASTER_CPUS_USED,
            names::MASTER_CPUS_PERCENT,
        ),
        (
            ResourceName::MEM,
            names::MASTER_MEM_TOTAL,
            names::MASTER_MEM_USED,
            names::MASTER_MEM_PERCENT,
        ),
        (
            ResourceName::DISK,
            names::MASTER_DISK_TOTAL,
            names::MASTER_DISK_USED,
            names::MASTER_DISK_PERCENT,
        ),
        (
            ResourceName::GPUS,
            names::MASTER_GPUS_TOTAL,
            names::MASTER_GPUS_USED,
            names::MASTER_GPUS_PERCENT,
        ),
    ];
    for (name, total_name, used_name, percent_name) in resources {
        // Summed exactly in thousandths, so 0.1 + 0.2 is 0.3.
        let total = milli_to_f64(agents.iter().map(|a| a.total.scalar_sum(&name).milli()).sum());
        let used = milli_to_f64(agents.iter().map(|a| a.used.scalar_sum(&name).milli()).sum());
        put(total_name, total);
        put(used_name, used);
        put(percent_name, if total > 0.0 { used / total } else { 0.0 });
    }
    for revocable in [
        names::MASTER_CPUS_REVOCABLE_TOTAL,
        names::MASTER_CPUS_REVOCABLE_USED,
        names::MASTER_CPUS_REVOCABLE_PERCENT,
        names::MASTER_MEM_REVOCABLE_TOTAL,
        names::MASTER_MEM_REVOCABLE_USED,
        names::MASTER_MEM_REVOCABLE_PERCENT,
        names::MASTER_DISK_REVOCABLE_TOTAL,
        names::MASTER_DISK_REVOCABLE_USED,
        names::MASTER_DISK_REVOCABLE_PERCENT,
        names::MASTER_GPUS_REVOCABLE_TOTAL,
        names::MASTER_GPUS_REVOCABLE_USED,
        names::MASTER_GPUS_REVOCABLE_PERCENT,
    ] {
        put(revocable, 0.0);
    }

    let count = |f: &dyn Fn(&super::model::Agent) -> bool| agents.iter().filter(|a| f(a)).count() as f64;
    put(names::MASTER_SLAVES_ACTIVE, count(&|a| a.active()));
    put(names::MASTER_SLAVES_INACTIVE, count(&|a| !a.active()));
    put(
        names::MASTER_SLAVES_CONNECTED,
        count(&|a| a.node.status == NodeStatus::Ready),
    );
    put(
        names::MASTER_SLAVES_DISCONNECTED,
        count(&|a| a.node.status != NodeStatus::Ready),
    );
    put(names::MASTER_SLAVES_UNREACHABLE, m.unreachable_agents() as f64);

    // Frameworks that subscribed (the built-in one of `tepui task run` is not counted).
    let connected = |id: &str, recorded: bool| match m.view {
        Some(v) => v.frameworks.get(id).is_some_and(|f| f.subscribed),
        None => recorded,
    };
    let frameworks: Vec<bool> = m.s.frameworks.values().map(|f| connected(&f.id, f.connected)).collect();
    let up = frameworks.iter().filter(|c| **c).count() as f64;
    let down = frameworks.len() as f64 - up;
    put(names::MASTER_FRAMEWORKS_ACTIVE, up);
    put(names::MASTER_FRAMEWORKS_INACTIVE, down);
    put(names::MASTER_FRAMEWORKS_CONNECTED, up);
    put(names::MASTER_FRAMEWORKS_DISCONNECTED, down);
    let offers = m
        .view
        .map(|v| v.frameworks.values().map(|f| f.offers.len()).sum::<usize>())
        .unwrap_or(0);
    put(names::MASTER_OUTSTANDING_OFFERS, offers as f64);

    allocator(m, &mut put);

    for state in TaskState::ALL {
        let metric = tepui_mesos::metrics::task_state_metric(&tepui_mesos::v1::TaskState::from_name(state.as_str()));
        if let Some(name) = metric {
            put(name, 0.0);
        }
    }
    for t in m.tasks() {
        let metric = tepui_mesos::metrics::task_state_metric(&tepui_mesos::v1::TaskState::from_name(t.state.as_str()));
        if let Some(name) = metric {
            *out.entry(name.to_string()).or_insert(0.0) += 1.0;
        }
    }
    out
}

/// The leader's allocator, in Mesos' `allocator/mesos/*` names: what it can hand out, what is
/// offered or allocated, each role's dominant share and each quota.
fn allocator(m: &Model, put: &mut impl FnMut(&str, f64)) {
    let Some(v) = m.view else { return };
    let scalars = [
        (ResourceName::CPUS, "cpus"),
        (ResourceName::MEM, "mem"),
        (ResourceName::DISK, "disk"),
        (ResourceName::GPUS, "gpus"),
    ];
    for (name, key) in &scalars {
        let total = v.cluster_total.get(name).map(|s| s.as_f64()).unwrap_or(0.0);
        let taken = milli_to_f64(
            v.agents
                .values()
                .map(|a| {
                    a.total
                        .scalar_sum(name)
                        .milli()
                        .saturating_sub(a.unallocated.scalar_sum(name).milli())
                })
                .sum(),
        );
        put(&format!("allocator/mesos/resources/{key}/total"), total);
        put(&format!("allocator/mesos/resources/{key}/offered_or_allocated"), taken);
    }
    for r in m.roles() {
        if let Some(share) = r.share {
            put(&format!("allocator/mesos/roles/{}/shares/dominant", r.name), share);
        }
        if !r.has_quota() {
            continue;
        }
        let prefix = format!("allocator/mesos/quota/roles/{}/resources", r.name);
        let named: std::collections::BTreeSet<&ResourceName> =
            r.guarantees.iter().chain(r.limits.iter()).map(|(n, _)| n).collect();
        for n in named {
            let amount =
                |q: Option<&tepui_allocator::Quantities>| q.and_then(|q| q.get(n)).map(|s| s.as_f64()).unwrap_or(0.0);
            put(&format!("{prefix}/{n}/guarantee"), amount(Some(&r.guarantees)));
            if let Some(l) = r.limits.get(n) {
                put(&format!("{prefix}/{n}/limit"), l.as_f64());
            }
            put(&format!("{prefix}/{n}/consumed"), amount(r.consumed.as_ref()));
            put(
                &format!("{prefix}/{n}/offered_or_allocated"),
                amount(r.allocator_allocated.as_ref()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tepui_state::{Maintenance, TaskState};

    use super::super::model::tests_support::{framework, state, task};
    use super::*;

    #[test]
    fn resources_agents_frameworks_and_tasks_add_up() {
        let mut s = state();
        s.nodes.get_mut(&2).unwrap().maintenance = Maintenance::Deactivated;
        s.frameworks.insert("f1".into(), framework("f1", true));
        s.frameworks.insert("f2".into(), framework("f2", false));
        s.tasks
            .insert("r1".into(), task("r1", 1, "", TaskState::TaskRunning, 1));
        s.tasks
            .insert("r2".into(), task("r2", 2, "f1", TaskState::TaskStaging, 2));
        s.tasks
            .insert("done".into(), task("done", 1, "f1", TaskState::TaskFinished, 3));
        s.tasks
            .insert("gone".into(), task("gone", 3, "f1", TaskState::TaskUnreachable, 4));
        let m = compute(&Model::new(&s, None), false, 12.5);

        assert_eq!(m["master/elected"], 0.0);
        assert_eq!(m["master/uptime_secs"], 12.5);
        // Two registered agents of 4 cpus; the lost agent and its unreachable task are out.
        assert_eq!(m["master/cpus_total"], 8.0);
        assert_eq!(m["master/cpus_used"], 1.0);
        assert_eq!(m["master/cpus_percent"], 1.0 / 8.0);
        assert_eq!(m["master/mem_total"], 8192.0);
        assert_eq!(m["master/mem_used"], 256.0);
        assert_eq!(m["master/disk_total"], 2000.0);
        assert_eq!(m["master/disk_used"], 0.0);
        assert_eq!(m["master/gpus_total"], 0.0);
        assert_eq!(m["master/gpus_percent"], 0.0, "no division by zero");

        assert_eq!(m["master/slaves_active"], 1.0);
        assert_eq!(m["master/slaves_inactive"], 1.0);
        assert_eq!(m["master/slaves_connected"], 2.0);
        assert_eq!(m["master/slaves_disconnected"], 0.0);
        assert_eq!(m["master/slaves_unreachable"], 1.0);

        assert_eq!(m["master/frameworks_active"], 1.0);
        assert_eq!(m["master/frameworks_inactive"], 1.0);
        assert_eq!(m["master/frameworks_connected"], 1.0);
        assert_eq!(m["master/frameworks_disconnected"], 1.0);
        assert_eq!(m["master/outstanding_offers"], 0.0);

        assert_eq!(m["master/tasks_running"], 1.0);
        assert_eq!(m["master/tasks_staging"], 1.0);
        assert_eq!(m["master/tasks_finished"], 1.0);
        assert_eq!(m["master/tasks_unreachable"], 1.0);
        for zero in ["starting", "failed", "killed", "lost", "error", "dropped", "killing"] {
            assert_eq!(m[&format!("master/tasks_{zero}")], 0.0, "{zero}");
        }
        for name in m.keys() {
            assert!(
                tepui_mesos::metrics::MASTER_METRICS.contains(&name.as_str()),
                "{name} is a Mesos metric name"
            );
        }
    }

    #[test]
    fn the_leaders_allocator_adds_offers_shares_and_quota() {
        use tepui_allocator::{Quantities, Resources, Role};

        use tepui_master::{AgentAllocation, FrameworkAllocation, RoleAllocation};
        use tepui_master::{AllocationView, OfferView};

        let mut s = state();
        s.frameworks.insert("f1".into(), framework("f1", false));
        let cpus = |n: &str| Resources::parse(&format!("cpus:{n}")).unwrap();
        let offer = OfferView {
            id: "e-O1".into(),
            framework_id: "f1".into(),
            agent_id: 1,
            hostname: "a1".into(),
            role: Role::new("eng").unwrap(),
            resources: cpus("1.5"),
            attributes: Default::default(),
        };
        let mut view = AllocationView {
            cluster_total: Quantities::parse("cpus:8;mem:8192").unwrap(),
            ..AllocationView::default()
        };
        view.agents.insert(
            1,
            AgentAllocation {
                total: cpus("4"),
                unallocated: cpus("2.5"),
                offered: cpus("1.5"),
                used: Resources::new(),
            },
        );
        view.frameworks.insert(
            "f1".into(),
            FrameworkAllocation {
                subscribed: true,
                used: Resources::new(),
                offered: cpus("1.5"),
                offers: vec![offer],
            },
        );
        view.roles.insert(
            "eng".into(),
            RoleAllocation {
                weight: 2.0,
                allocated: Quantities::parse("cpus:1.5").unwrap(),
                consumed: Quantities::parse("cpus:1.5").unwrap(),
                share: 0.1875,
                guarantees: Quantities::parse("cpus:1").unwrap(),
                limits: Quantities::parse("cpus:3").unwrap(),
                frameworks: vec!["f1".into()],
            },
        );
        let m = compute(&Model::new(&s, Some(&view)), true, 1.0);
        assert_eq!(m["master/outstanding_offers"], 1.0);
        // The allocator knows the framework is subscribed even if the state has not caught up.
        assert_eq!(m["master/frameworks_connected"], 1.0);
        assert_eq!(m["allocator/mesos/resources/cpus/total"], 8.0);
        assert_eq!(m["allocator/mesos/resources/cpus/offered_or_allocated"], 1.5);
        assert_eq!(m["allocator/mesos/roles/eng/shares/dominant"], 0.1875);
        assert_eq!(m["allocator/mesos/quota/roles/eng/resources/cpus/guarantee"], 1.0);
        assert_eq!(m["allocator/mesos/quota/roles/eng/resources/cpus/limit"], 3.0);
        assert_eq!(m["allocator/mesos/quota/roles/eng/resources/cpus/consumed"], 1.5);
        assert_eq!(
            m["allocator/mesos/quota/roles/eng/resources/cpus/offered_or_allocated"],
            1.5
        );
        assert!(!m.contains_key("allocator/mesos/quota/roles/*/resources/cpus/guarantee"));
    }

    #[test]
    fn sums_are_exact() {
        let mut s = state();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let mut t = task(id, 1, "", TaskState::TaskRunning, i as u64);
            t.def.cpus_milli = 100;
            s.tasks.insert(id.into(), t);
        }
        let m = compute(&Model::new(&s, None), true, 0.0);
        assert_eq!(m["master/cpus_used"], 0.3);
    }

    #[test]
    fn an_empty_cluster_has_zeros() {
        let s = tepui_state::State::default();
        let m = compute(&Model::new(&s, None), true, 0.0);
        assert_eq!(m["master/elected"], 1.0);
        assert_eq!(m["master/cpus_total"], 0.0);
        assert_eq!(m["master/cpus_percent"], 0.0);
        assert_eq!(m["master/tasks_running"], 0.0);
    }
}
