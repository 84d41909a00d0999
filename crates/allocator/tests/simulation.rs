//! Seeded simulations: random agents, frameworks, quotas and reservations, with frameworks
//! accepting, declining and finishing at random, and time passing. The invariants are checked
//! after every step; a failure names the seed and step.
//!
//! Replay one seed: `TEPUI_ALLOC_SEED=1234 cargo test -p tepui-allocator --test simulation replay`.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tepui_allocator::{
    AgentId, AgentMode, Allocator, Attributes, Capabilities, Config, Filters, FrameworkId, Quota, ReservationKind,
    Resources, Role, Scalar,
};

const ROLES: &[&str] = &["a", "a/x", "a/y", "b", "c", "c/d"];

fn random_role(rng: &mut SimRng) -> Role {
    role(rng.pick(ROLES).unwrap())
}

fn random_agent_total(rng: &mut SimRng) -> Resources {
    let cpus = Scalar::from_milli(500 + rng.below(16_000));
    let mem = 256 + rng.below(16_000);
    let port = 31_000 + rng.below(100);
    let mut text = format!(
        "cpus:{cpus};mem:{mem};disk:{};ports:[{port}-{}]",
        rng.below(50_000),
        port + rng.below(40)
    );
    if rng.chance(15) {
        text.push_str(&format!(";gpus:{}", 1 + rng.below(4)));
    }
    if rng.chance(35) {
        let r = random_role(rng);
        text.push_str(&format!(
            ";cpus({r}):{};mem({r}):{}",
            Scalar::from_milli(1 + rng.below(4000)),
            1 + rng.below(4096)
        ));
    }
    if rng.chance(10) {
        text.push_str(";tags:{a,b,c}");
    }
    res(&text)
}

fn random_quantities(rng: &mut SimRng) -> tepui_allocator::Quantities {
    let mut s = String::new();
    if rng.chance(70) {
        s.push_str(&format!("cpus:{};", Scalar::from_milli(rng.below(30_000))));
    }
    if rng.chance(50) {
        s.push_str(&format!("mem:{};", rng.below(40_000)));
    }
    q(&s)
}

struct Sim {
    a: Allocator,
    rng: SimRng,
    now: u64,
    next_agent: u64,
    next_framework: u64,
    transcript: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = SimRng::new(seed);
        let config = Config {
            offer_timeout: rng.chance(50).then(|| 1_000 + rng.below(20_000)),
            min_allocatable: if rng.chance(20) {
                vec![]
            } else {
                Config::default().min_allocatable
            },
            max_offers_per_framework: rng.chance(50).then(|| 1 + rng.below(6) as usize),
        };
        let mut sim = Sim {
            a: Allocator::new(config),
            rng,
            now: 0,
            next_agent: 1,
            next_framework: 1,
            transcript: Vec::new(),
        };
        for _ in 0..3 + sim.rng.below(6) {
            sim.add_agent();
        }
        for _ in 0..2 + sim.rng.below(4) {
            sim.add_framework();
        }
        sim
    }

    fn add_agent(&mut self) -> String {
        let total = random_agent_total(&mut self.rng);
        let id = AgentId(self.next_agent);
        self.next_agent += 1;
        format!(
            "add_agent {id} {total}: {:?}",
            self.a.add_agent(id, total.clone(), Attributes::new())
        )
    }

    fn add_framework(&mut self) -> String {
        let mut roles = vec![random_role(&mut self.rng)];
        if self.rng.chance(30) {
            roles.push(random_role(&mut self.rng));
        }
        let caps = Capabilities {
            gpu_resources: self.rng.chance(30),
        };
        let id = FrameworkId(self.next_framework);
        self.next_framework += 1;
        format!(
            "add_framework {id} {roles:?} {caps:?}: {:?}",
            self.a.add_framework(id, &roles, caps)
        )
    }

    fn random_offer(&mut self) -> Option<tepui_allocator::Offer> {
        let offers: Vec<_> = self.a.outstanding_offers().cloned().collect();
        self.rng.pick(&offers).cloned()
    }

    fn random_framework(&mut self) -> Option<FrameworkId> {
        let fs: Vec<_> = self.a.framework_ids().collect();
        self.rng.pick(&fs).copied()
    }

    fn random_agent(&mut self) -> Option<AgentId> {
        let ags: Vec<_> = self.a.agent_ids().collect();
        self.rng.pick(&ags).copied()
    }

    fn random_holding(&mut self) -> Option<(FrameworkId, AgentId, Role, Resources)> {
        let f = self.random_framework()?;
        let hs = self.a.allocations_of(f);
        let (ag, r, held) = self.rng.pick(&hs)?.clone();
        Some((f, ag, r, held))
    }

    fn random_filters(&mut self) -> Filters {
        match self.rng.below(3) {
            0 => Filters::NONE,
            1 => Filters::default(),
            _ => Filters {
                refuse: self.rng.below(20_000),
            },
        }
    }

    fn step(&mut self) -> String {
        let now = self.now;
        let event = self.rng.below(100);
        let out = match event {
            0..=29 => {
                let offers = self.a.allocate(now);
                let list: Vec<String> = offers
                    .iter()
                    .map(|o| format!("{}->{}@{}:{}", o.id, o.framework, o.agent, o.resources))
                    .collect();
                format!("allocate {now}: {list:?}")
            }
            30..=44 => match self.random_offer() {
                Some(o) => {
                    let used = if self.rng.chance(30) {
                        o.resources.clone()
                    } else {
                        random_part(&mut self.rng, &o.resources)
                    };
                    let filters = self.random_filters();
                    format!("accept {} {used}: {:?}", o.id, self.a.accept(o.id, &used, filters, now))
                }
                None => "no offer to accept".into(),
            },
            45..=54 => match self.random_offer() {
                Some(o) => {
                    let filters = self.random_filters();
                    format!("decline {} {filters:?}: {:?}", o.id, self.a.decline(o.id, filters, now))
                }
                None => "no offer to decline".into(),
            },
            55..=63 => match self.random_holding() {
                Some((f, ag, r, held)) => {
                    let part = if self.rng.chance(40) {
                        held
                    } else {
                        random_part(&mut self.rng, &held)
                    };
                    format!("recover {f} {ag} {r} {part}: {:?}", self.a.recover(f, ag, &r, &part))
                }
                None => "nothing to recover".into(),
            },
            64..=66 => self.add_agent(),
            67..=68 => match self.random_agent() {
                Some(ag) => format!("remove_agent {ag}: {:?}", self.a.remove_agent(ag)),
                None => "no agent".into(),
            },
            69..=72 => match self.random_agent() {
                Some(ag) => {
                    let mode = [
                        AgentMode::Active,
                        AgentMode::Active,
                        AgentMode::Draining,
                        AgentMode::Deactivated,
                    ][self.rng.below(4) as usize];
                    format!(
                        "update_agent_state {ag} {mode:?}: {:?}",
                        self.a.update_agent_state(ag, mode)
                    )
                }
                None => "no agent".into(),
            },
            73..=74 => self.add_framework(),
            75 => match self.random_framework() {
                Some(f) => format!("remove_framework {f}: {:?}", self.a.remove_framework(f)),
                None => "no framework".into(),
            },
            76..=78 => match self.random_framework() {
                Some(f) => {
                    let roles = if self.rng.chance(50) {
                        vec![]
                    } else {
                        vec![random_role(&mut self.rng)]
                    };
                    format!("suppress {f} {roles:?}: {:?}", self.a.suppress(f, &roles))
                }
                None => "no framework".into(),
            },
            79..=81 => match self.random_framework() {
                Some(f) => {
                    let roles = if self.rng.chance(50) {
                        vec![]
                    } else {
                        vec![random_role(&mut self.rng)]
                    };
                    format!("revive {f} {roles:?}: {:?}", self.a.revive(f, &roles))
                }
                None => "no framework".into(),
            },
            82..=83 => {
                let r = random_role(&mut self.rng);
                let w = Scalar::from_milli(self.rng.below(5_000));
                format!("set_weight {r} {w}: {:?}", self.a.set_weight(&r, w))
            }
            84..=87 => {
                let r = random_role(&mut self.rng);
                let quota = Quota {
                    guarantees: random_quantities(&mut self.rng),
                    limits: random_quantities(&mut self.rng),
                };
                let force = self.rng.chance(30);
                format!(
                    "set_quota {r} {quota:?} force={force}: {:?}",
                    self.a.set_quota(&r, quota.clone(), force)
                )
            }
            88..=90 => {
                if self.rng.chance(50) {
                    match self.random_agent() {
                        Some(ag) => {
                            let free = self.a.agent_unallocated(ag).unwrap().unreserved();
                            let part = random_part(&mut self.rng, &free);
                            let r = random_role(&mut self.rng);
                            format!("reserve {ag} {r} {part}: {:?}", self.a.reserve(ag, &r, &part, None))
                        }
                        None => "no agent".into(),
                    }
                } else {
                    match self.random_holding() {
                        Some((f, ag, r, held)) => {
                            let part = random_part(&mut self.rng, &held.unreserved());
                            format!(
                                "reserve {ag} {r} {part} held by {f}: {:?}",
                                self.a.reserve(ag, &r, &part, Some(f))
                            )
                        }
                        None => "nothing held".into(),
                    }
                }
            }
            91..=93 => {
                let dynamic = |r: &Resources| {
                    r.filter(|e| {
                        e.reservation
                            .as_ref()
                            .is_some_and(|v| v.kind == ReservationKind::Dynamic)
                    })
                };
                if self.rng.chance(50) {
                    match self.random_agent() {
                        Some(ag) => {
                            let part = random_part(&mut self.rng, &dynamic(self.a.agent_unallocated(ag).unwrap()));
                            format!("unreserve {ag} {part}: {:?}", self.a.unreserve(ag, &part, None))
                        }
                        None => "no agent".into(),
                    }
                } else {
                    match self.random_holding() {
                        Some((f, ag, r, held)) => {
                            let part = random_part(&mut self.rng, &dynamic(&held));
                            format!(
                                "unreserve {ag} {part} held by {f}/{r}: {:?}",
                                self.a.unreserve(ag, &part, Some((f, r.clone())))
                            )
                        }
                        None => "nothing held".into(),
                    }
                }
            }
            94..=95 => match self.random_offer() {
                Some(o) => format!("rescind {}: {:?}", o.id, self.a.rescind(o.id).map(|o| o.id)),
                None => "no offer to rescind".into(),
            },
            96..=97 => format!("expired_offers {now}: {:?}", self.a.expired_offers(now)),
            _ => match (self.random_framework(), self.random_agent()) {
                (Some(f), Some(ag)) => {
                    let r = random_role(&mut self.rng);
                    let part = random_part(&mut self.rng, &self.a.agent_unallocated(ag).unwrap().clone());
                    format!("add_used {f} {ag} {r} {part}: {:?}", self.a.add_used(f, ag, &r, &part))
                }
                _ => "nothing to add_used".into(),
            },
        };
        self.now += self.rng.below(2_000);
        out
    }
}

/// Runs `steps` random steps from `seed`, checking every invariant after each; returns the
/// transcript.
fn run(seed: u64, steps: usize) -> Vec<String> {
    let mut sim = Sim::new(seed);
    check(&sim.a, format!("seed {seed}, initial state"));
    for i in 0..steps {
        let what = sim.step();
        if let Err(e) = sim.a.check_invariants() {
            let tail = sim
                .transcript
                .iter()
                .rev()
                .take(5)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ");
            panic!("seed {seed}, step {i}: {what}\ninvariant broken: {e}\nprevious steps:\n  {tail}");
        }
        sim.transcript.push(what);
    }
    sim.transcript
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No agent is ever over-committed (nor anything else in `check_invariants` broken) under
    /// random event sequences.
    #[test]
    fn no_agent_is_ever_over_committed(seed in any::<u64>()) {
        run(seed, 400);
    }
}

#[test]
fn long_simulations_on_fixed_seeds() {
    for seed in 0..16 {
        run(seed, 3_000);
    }
}

#[test]
fn simulations_are_deterministic() {
    assert_eq!(run(42, 600), run(42, 600));
}

#[test]
fn replay() {
    if let Ok(seed) = std::env::var("TEPUI_ALLOC_SEED") {
        let seed: u64 = seed.parse().expect("TEPUI_ALLOC_SEED is a u64");
        for line in run(seed, 3_000) {
            println!("{line}");
        }
    }
}

/// Dominant share of `n` tasks of (cpu, mem) on (ctot, mtot), as a fraction over ctot*mtot.
fn dominant(n: u64, cpu: u64, mem: u64, ctot: u64, mtot: u64) -> u128 {
    u128::from(n) * (u128::from(cpu) * u128::from(mtot)).max(u128::from(mem) * u128::from(ctot))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Offers converge to DRF: every task goes to the framework with the lowest dominant share
    /// among those that still want resources, and at the end no framework's task fits in what
    /// is left. Frameworks share a role, or each has its own (same weight).
    #[test]
    fn every_task_goes_to_the_lowest_dominant_share(
        cpus in 4u64..48,
        mem_gb in 4u64..48,
        demands in prop::collection::vec((1u64..=40, 1u64..=64), 2..5),
        separate_roles in any::<bool>(),
    ) {
        let mut a = Allocator::new(Config::default());
        let ag = agent(&mut a, 1, &format!("cpus:{cpus};mem:{}", mem_gb * 1024));
        let (ctot, mtot) = (cpus * 10, mem_gb * 8); // in tenths of a cpu and 128 MB units
        let mut tasks = BTreeMap::new();
        for (i, &(c, m)) in demands.iter().enumerate() {
            let r = if separate_roles { format!("r{i}") } else { "r".to_string() };
            let f = framework(&mut a, i as u64 + 1, &[&r]);
            tasks.insert(f, (c, m, res(&format!("cpus:{}.{};mem:{}", c / 10, c % 10, m * 128))));
        }
        let mut count: BTreeMap<FrameworkId, u64> = tasks.keys().map(|f| (*f, 0)).collect();
        let mut wanting: BTreeMap<FrameworkId, bool> = tasks.keys().map(|f| (*f, true)).collect();
        let mut now = 0;
        loop {
            let offers = a.allocate(now);
            check(&a, "drf");
            if offers.is_empty() {
                break;
            }
            prop_assert_eq!(offers.len(), 1);
            let o = &offers[0];
            let (c, m, task) = &tasks[&o.framework];
            let mine = dominant(count[&o.framework], *c, *m, ctot, mtot);
            for (f, (c2, m2, _)) in &tasks {
                if *f != o.framework && wanting[f] {
                    let theirs = dominant(count[f], *c2, *m2, ctot, mtot);
                    prop_assert!(mine <= theirs, "framework {} (share {}) got an offer before {} (share {})", o.framework, mine, f, theirs);
                }
            }
            if o.resources.contains(task) {
                a.accept(o.id, task, Filters::NONE, now).unwrap();
                *count.get_mut(&o.framework).unwrap() += 1;
            } else {
                a.decline(o.id, Filters { refuse: 3_600_000 }, now).unwrap();
                *wanting.get_mut(&o.framework).unwrap() = false;
            }
            now += 1;
        }
        let free = a.agent_unallocated(ag).unwrap();
        for (f, (_, _, task)) in &tasks {
            prop_assert!(!free.contains(task), "framework {}'s task still fits in {}", f, free);
        }
    }
}

/// Whether `r` is worth an offer under the default minimum (cpus:0.01 or mem:32).
fn allocatable(r: &Resources) -> bool {
    r.scalar_sum(&tepui_allocator::ResourceName::CPUS) >= Scalar::from_milli(10)
        || r.scalar_sum(&tepui_allocator::ResourceName::MEM) >= Scalar::from_units(32)
}

/// Liveness, the other half of the invariants: after every `allocate`, no agent is left with
/// resources worth offering while some framework has no live decline filter covering them.
/// The test keeps its own model of the filters (one per framework, role and agent; the latest
/// decline replaces the previous one; revive clears them). No quota, reservations or GPUs here,
/// so whatever is unallocated could go to anyone.
fn run_liveness(seed: u64, steps: usize) {
    type Key = (FrameworkId, Role, AgentId);
    let mut rng = SimRng::new(seed);
    let mut a = Allocator::new(Config::default());
    let agents: Vec<AgentId> = (0..2 + rng.below(5))
        .map(|i| {
            agent(
                &mut a,
                i,
                &format!(
                    "cpus:{};mem:{};ports:[1-{}]",
                    1 + rng.below(8),
                    64 + rng.below(4096),
                    1 + rng.below(9)
                ),
            )
        })
        .collect();
    let mut frameworks: Vec<(FrameworkId, Vec<Role>)> = Vec::new();
    for i in 0..1 + rng.below(4) {
        let roles = if rng.chance(30) {
            vec![random_role(&mut rng), random_role(&mut rng)]
        } else {
            vec![random_role(&mut rng)]
        };
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        framework(&mut a, i + 1, &names);
        frameworks.push((FrameworkId(i + 1), roles));
    }
    let mut filters: BTreeMap<Key, (Resources, u64)> = BTreeMap::new();
    let mut now = 0u64;
    for step in 0..steps {
        let ctx = format!("seed {seed}, step {step}");
        match rng.below(10) {
            0..=3 => {
                a.allocate(now);
                check(&a, &ctx);
                for &ag in &agents {
                    let free = a.agent_unallocated(ag).unwrap().clone();
                    if !allocatable(&free) {
                        continue;
                    }
                    for (f, roles) in &frameworks {
                        for r in roles {
                            let refused = filters
                                .get(&(*f, r.clone(), ag))
                                .is_some_and(|(declined, expires)| now < *expires && declined.contains(&free));
                            assert!(
                                refused,
                                "{ctx}: agent {ag} keeps {free} although framework {f} in role {r} would take it"
                            );
                        }
                    }
                }
            }
            4..=5 => {
                let offers: Vec<_> = a.outstanding_offers().cloned().collect();
                if let Some(o) = rng.pick(&offers) {
                    let used = random_part(&mut rng, &o.resources);
                    let refuse = [0, 1_000, 5_000, 60_000][rng.below(4) as usize];
                    a.accept(o.id, &used, Filters { refuse }, now).unwrap();
                    let rest = o.resources.checked_sub(&used).unwrap();
                    if refuse > 0 && !rest.is_empty() {
                        filters.insert((o.framework, o.role.clone(), o.agent), (rest, now + refuse));
                    }
                }
            }
            6..=7 => {
                let offers: Vec<_> = a.outstanding_offers().cloned().collect();
                if let Some(o) = rng.pick(&offers) {
                    let refuse = [0, 1_000, 5_000, 60_000][rng.below(4) as usize];
                    a.decline(o.id, Filters { refuse }, now).unwrap();
                    if refuse > 0 {
                        filters.insert(
                            (o.framework, o.role.clone(), o.agent),
                            (o.resources.clone(), now + refuse),
                        );
                    }
                }
            }
            8 => {
                let (f, _) = rng.pick(&frameworks).unwrap().clone();
                let held = a.allocations_of(f);
                if let Some((ag, r, res)) = rng.pick(&held).cloned() {
                    let part = if rng.chance(50) {
                        res
                    } else {
                        random_part(&mut rng, &res)
                    };
                    a.recover(f, ag, &r, &part).unwrap();
                }
            }
            _ => {
                if rng.chance(30) {
                    let (f, _) = rng.pick(&frameworks).unwrap().clone();
                    a.revive(f, &[]).unwrap();
                    filters.retain(|(g, _, _), _| *g != f);
                }
            }
        }
        check(&a, &ctx);
        now += rng.below(1_500);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn nothing_offerable_is_held_back(seed in any::<u64>()) {
        run_liveness(seed, 400);
    }
}
