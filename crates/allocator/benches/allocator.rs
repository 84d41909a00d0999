//! Allocator benchmarks (not tests): one allocation cycle on a large cluster, and how fast a
//! framework that accepts offers as they come can place 100,000 small tasks.
//!
//! `cargo bench -p tepui-allocator -- --quick`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tepui_allocator::{
    AgentId, Allocator, Attributes, Capabilities, Config, Filters, FrameworkId, Quantities, Quota, Resource, Resources,
    Role, Scalar,
};

const AGENTS: u64 = 10_000;

fn role(i: u64) -> Role {
    // 20 leaf roles under 5 parents: hierarchical DRF at two levels.
    Role::new(&format!("org{}/team{}", i / 4, i % 4)).unwrap()
}

/// `agents` agents of 16 cpus / 64 GB / 500 GB / 1,001 ports, `frameworks` frameworks spread
/// over 20 roles with weights 1 to 3; with `quota`, 5 roles get guarantees and 5 others limits.
fn cluster(agents: u64, frameworks: u64, quota: bool) -> Allocator {
    let mut a = Allocator::new(Config::default());
    let total = Resources::parse("cpus:16;mem:65536;disk:512000;ports:[31000-32000]").unwrap();
    let attrs = Attributes::parse("rack:r1;zone:a").unwrap();
    for i in 0..agents {
        a.add_agent(AgentId(i), total.clone(), attrs.clone()).unwrap();
    }
    for r in 0..20 {
        a.set_weight(&role(r), Scalar::from_units(1 + r % 3)).unwrap();
    }
    if quota {
        for r in 0..5 {
            let guarantees = Quantities::parse("cpus:2000;mem:8000000").unwrap();
            a.set_quota(
                &role(r * 4),
                Quota {
                    guarantees,
                    limits: Quantities::new(),
                },
                false,
            )
            .unwrap();
            let limits = Quantities::parse("cpus:4000").unwrap();
            a.set_quota(
                &role(r * 4 + 1),
                Quota {
                    guarantees: Quantities::new(),
                    limits,
                },
                false,
            )
            .unwrap();
        }
    }
    for f in 0..frameworks {
        a.add_framework(FrameworkId(f), &[role(f % 20)], Capabilities::default())
            .unwrap();
    }
    a
}

fn allocation_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocation_cycle");
    g.sample_size(10);
    for (name, quota) in [
        ("10k_agents_200_frameworks_20_roles", false),
        ("10k_agents_200_frameworks_20_roles_quota", true),
    ] {
        let base = cluster(AGENTS, 200, quota);
        g.throughput(Throughput::Elements(AGENTS));
        g.bench_function(name, |b| {
            b.iter_batched(
                || base.clone(),
                |mut a| {
                    let offers = a.allocate(0);
                    // With quota an agent can be split between a quota role and another.
                    assert!(offers.len() as u64 >= AGENTS, "{} offers", offers.len());
                    black_box(offers)
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Scaling in the number of frameworks: a cycle must not cost agents × frameworks.
    for frameworks in [20u64, 2_000] {
        let base = cluster(AGENTS, frameworks, false);
        g.bench_with_input(
            BenchmarkId::new("10k_agents_by_frameworks", frameworks),
            &base,
            |b, base| b.iter_batched(|| base.clone(), |mut a| black_box(a.allocate(0)), BatchSize::LargeInput),
        );
    }
    // A cycle with nothing to offer (everything is out in offers): the cost of looking.
    let mut busy = cluster(AGENTS, 200, false);
    busy.allocate(0);
    assert!(busy.allocate(1).is_empty());
    g.bench_function("10k_agents_all_offered_nothing_to_do", |b| {
        b.iter(|| black_box(busy.allocate(1).len()))
    });
    // The worst case for filters: every framework has declined every agent for an hour, so
    // each agent is checked against every framework's filter and nothing is offered.
    let mut filtered = cluster(AGENTS, 200, false);
    loop {
        let offers = filtered.allocate(0);
        if offers.is_empty() {
            break;
        }
        for o in offers {
            filtered.decline(o.id, Filters { refuse: 3_600_000 }, 0).unwrap();
        }
    }
    g.bench_function("10k_agents_200_frameworks_all_filtered", |b| {
        b.iter(|| black_box(filtered.allocate(1).len()))
    });
    g.finish();
}

/// `task` times `n`.
fn times(task: &Resources, n: u64) -> Resources {
    let mut out = Resources::new();
    for e in task {
        let s = e.as_scalar().expect("tasks are scalars");
        out.push(Resource::scalar(e.name.clone(), Scalar::from_milli(s.milli() * n)));
    }
    out
}

/// How many copies of `task` fit in `offer`.
fn fits(offer: &Resources, task: &Resources) -> u64 {
    task.iter()
        .map(|e| offer.unreserved_scalar(&e.name).milli() / e.as_scalar().unwrap().milli())
        .min()
        .unwrap_or(0)
}

/// One framework places `tasks` tasks, accepting offers as they come: as many tasks as fit
/// per offer (`pack`), or one task per offer and the rest back at once. Returns the cycles run.
fn place(a: &mut Allocator, tasks: u64, pack: bool) -> u64 {
    let task = Resources::parse("cpus:0.1;mem:128").unwrap();
    let mut left = tasks;
    let mut now = 0;
    while left > 0 {
        let offers = a.allocate(now);
        assert!(!offers.is_empty(), "ran out of room with {left} tasks left");
        for o in offers {
            let n = if left == 0 {
                0
            } else if pack {
                fits(&o.resources, &task).min(left)
            } else {
                fits(&o.resources, &task).min(1)
            };
            left -= n;
            a.accept(o.id, &times(&task, n), Filters::NONE, now).unwrap();
        }
        now += 1;
    }
    now
}

fn placements(c: &mut Criterion) {
    let mut g = c.benchmark_group("placements");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    let mut base = Allocator::new(Config::default());
    let total = Resources::parse("cpus:4;mem:16384;disk:100000;ports:[31000-32000]").unwrap();
    for i in 0..AGENTS {
        base.add_agent(AgentId(i), total.clone(), Attributes::new()).unwrap();
    }
    base.add_framework(FrameworkId(1), &[Role::new("batch").unwrap()], Capabilities::default())
        .unwrap();
    for (name, pack) in [
        ("100k_tasks_10k_agents_pack", true),
        ("100k_tasks_10k_agents_one_per_offer", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || base.clone(),
                |mut a| black_box(place(&mut a, 100_000, pack)),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, allocation_cycle, placements);
criterion_main!(benches);
