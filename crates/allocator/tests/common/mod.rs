//! Helpers shared by the allocator's integration tests.
#![allow(dead_code)]

use std::fmt::Display;

use tepui_allocator::{
    AgentId, Allocator, Attributes, Capabilities, FrameworkId, Quantities, Resources, Role, Scalar, Value,
};

pub fn res(s: &str) -> Resources {
    Resources::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

pub fn role(s: &str) -> Role {
    Role::new(s).unwrap_or_else(|e| panic!("{e}"))
}

pub fn q(s: &str) -> Quantities {
    Quantities::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

pub fn units(u: u64) -> Scalar {
    Scalar::from_units(u)
}

pub fn agent(a: &mut Allocator, id: u64, total: &str) -> AgentId {
    a.add_agent(AgentId(id), res(total), Attributes::new()).unwrap();
    AgentId(id)
}

pub fn framework(a: &mut Allocator, id: u64, roles: &[&str]) -> FrameworkId {
    let roles: Vec<Role> = roles.iter().map(|r| role(r)).collect();
    a.add_framework(FrameworkId(id), &roles, Capabilities::default())
        .unwrap();
    FrameworkId(id)
}

/// Panics with `context` (which names the seed in simulations) if an invariant is broken.
pub fn check(a: &Allocator, context: impl Display) {
    if let Err(e) = a.check_invariants() {
        panic!("{context}: invariant broken: {e}");
    }
}

/// SplitMix64: a tiny deterministic generator for seeded simulations.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len() as u64) as usize])
        }
    }
}

/// A random part of a bundle: a random amount of each scalar, a prefix of each range, a subset
/// of each set.
pub fn random_part(rng: &mut SimRng, r: &Resources) -> Resources {
    let mut out = Resources::new();
    for e in r {
        if rng.chance(25) {
            continue;
        }
        let mut part = e.clone();
        part.value = match &e.value {
            Value::Scalar(s) => Value::Scalar(Scalar::from_milli(rng.below(s.milli() + 1))),
            Value::Ranges(x) => Value::Ranges(x.take_lowest(rng.below(x.count() + 1))),
            Value::Set(x) => Value::Set(tepui_allocator::ValueSet::from_items(
                x.items()
                    .filter(|_| rng.chance(50))
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )),
        };
        out.push(part);
    }
    out
}
