//! The allocator's invariants as code. Each check recomputes from the primary records (agents'
//! totals, allocations and outstanding offers) and compares with what the allocator caches.
//! Tests call [`Allocator::check_invariants`] after every step of a simulation.

use std::collections::BTreeMap;

use crate::allocator::{d_get, AgentMode, Allocator, Dense, FrameworkId, RoleIdx};
use crate::resources::{Resources, Value};
use crate::{AgentId, OfferId, Role, Scalar};

/// A broken invariant: a bug in the allocator, never a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("agent {agent} is over-committed: offered and allocated {used} exceed its total {total}")]
    OverCommitted {
        agent: AgentId,
        used: Resources,
        total: Resources,
    },
    #[error("agent {agent}: {what} is offered or allocated twice at once")]
    DoubleAllocated { agent: AgentId, what: String },
    #[error("agent {agent}: cached unallocated {cached} is not total minus used {expected}")]
    UnallocatedMismatch {
        agent: AgentId,
        cached: Resources,
        expected: Resources,
    },
    #[error("offer {offer}: {reason}")]
    BadOffer { offer: OfferId, reason: String },
    #[error("framework {framework} has {count} outstanding offers, above the cap {cap}")]
    TooManyOffers {
        framework: FrameworkId,
        count: usize,
        cap: usize,
    },
    #[error("role {role} consumes {consumption} {resource}, above its quota limit {limit}")]
    QuotaLimitExceeded {
        role: Role,
        resource: String,
        consumption: Scalar,
        limit: Scalar,
    },
    #[error("decline filters on agent {agent}: {reason}")]
    BadFilter { agent: AgentId, reason: String },
    #[error("accounting of {what}: cached {cached:?} differs from recomputed {expected:?}")]
    AccountingMismatch {
        what: String,
        cached: Vec<u64>,
        expected: Vec<u64>,
    },
}

impl Allocator {
    /// Checks every invariant; the first violation found is returned.
    ///
    /// - no agent is over-committed: for every agent, what is offered plus what is allocated
    ///   fits in its total, per resource (name and reservation), and the cached unallocated
    ///   resources are exactly the rest;
    /// - nothing is offered or allocated twice at once: offers and allocations on an agent share
    ///   no port or set item (scalars are covered by the first point);
    /// - every outstanding offer is on an active agent, to a framework subscribed to its role,
    ///   with reserved resources only of that role or its ancestors, GPUs only to GPU-capable
    ///   frameworks, and no framework holds more offers than the cap;
    /// - quota limits are never exceeded: every role's subtree consumption is within its limits
    ///   (or within what an operator forced, which only shrinks);
    /// - decline filters are indexed both ways, and a filter the allocator treats as certain
    ///   without looking (it covered everything unallocated, and the agent has not gained
    ///   anything since) does contain everything unallocated;
    /// - the cached per-role and per-framework accounting equals a recomputation.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_agents()?;
        self.check_offers()?;
        self.check_accounting()?;
        self.check_quota_limits()
    }

    fn check_agents(&self) -> Result<(), InvariantViolation> {
        for (&id, agent) in &self.agents {
            let mut used = Resources::new();
            let mut take = |res: &Resources, what: &dyn Fn() -> String| -> Result<(), InvariantViolation> {
                if let Some(x) = used.overlaps(res) {
                    return Err(InvariantViolation::DoubleAllocated {
                        agent: id,
                        what: format!("{x} (in {})", what()),
                    });
                }
                used.add(res);
                Ok(())
            };
            for ((f, r), res) in &agent.allocated {
                take(res, &|| {
                    format!("allocation of framework {f} in role {}", self.roles[*r].role)
                })?;
            }
            for o in &agent.offers {
                let entry = self.offers.get(o).ok_or_else(|| InvariantViolation::BadOffer {
                    offer: *o,
                    reason: format!("listed by agent {id} but not outstanding"),
                })?;
                take(&entry.offer.resources, &|| format!("offer {o}"))?;
            }
            let Some(expected) = agent.total.checked_sub(&used) else {
                return Err(InvariantViolation::OverCommitted {
                    agent: id,
                    used,
                    total: agent.total.clone(),
                });
            };
            if expected != agent.unallocated {
                return Err(InvariantViolation::UnallocatedMismatch {
                    agent: id,
                    cached: agent.unallocated.clone(),
                    expected,
                });
            }
            for &(f, r) in agent.allocated.keys() {
                let ok = self.frameworks.get(&f).is_some_and(|fw| fw.holdings.contains(&(id, r)));
                if !ok {
                    return Err(InvariantViolation::AccountingMismatch {
                        what: format!("holdings of framework {f} on agent {id}"),
                        cached: vec![],
                        expected: vec![1],
                    });
                }
            }
        }
        for (&id, agent) in &self.agents {
            if agent
                .filters
                .windows(2)
                .any(|w| (w[0].framework, w[0].role) >= (w[1].framework, w[1].role))
            {
                return Err(InvariantViolation::BadFilter {
                    agent: id,
                    reason: "filters not sorted and unique".into(),
                });
            }
            if !agent.peak.contains(&agent.unallocated) {
                return Err(InvariantViolation::BadFilter {
                    agent: id,
                    reason: format!("unallocated {} outgrew its bound {}", agent.unallocated, agent.peak),
                });
            }
            for x in &agent.filters {
                if !self
                    .frameworks
                    .get(&x.framework)
                    .is_some_and(|fw| fw.filtered.contains(&(id, x.role)))
                {
                    return Err(InvariantViolation::BadFilter {
                        agent: id,
                        reason: format!("filter of framework {} not indexed by it", x.framework),
                    });
                }
                // The shortcut that skips looking at a filter's resources must be sound.
                if x.covers_all && x.growth == agent.growth && !x.resources.contains(&agent.unallocated) {
                    return Err(InvariantViolation::BadFilter {
                        agent: id,
                        reason: format!(
                            "filter of framework {} is taken as certain, but {} is not within {}",
                            x.framework, agent.unallocated, x.resources
                        ),
                    });
                }
            }
        }
        for (&f, fw) in &self.frameworks {
            for &(a, r) in &fw.filtered {
                if !self
                    .agents
                    .get(&a)
                    .is_some_and(|ag| ag.filters.iter().any(|x| x.framework == f && x.role == r))
                {
                    return Err(InvariantViolation::BadFilter {
                        agent: a,
                        reason: format!("framework {f} indexes a missing filter"),
                    });
                }
            }
            for &(a, r) in &fw.holdings {
                if !self.agents.get(&a).is_some_and(|ag| ag.allocated.contains_key(&(f, r))) {
                    return Err(InvariantViolation::AccountingMismatch {
                        what: format!("holdings of framework {f} on agent {a}"),
                        cached: vec![1],
                        expected: vec![],
                    });
                }
            }
        }
        Ok(())
    }

    fn check_offers(&self) -> Result<(), InvariantViolation> {
        let bad = |offer: OfferId, reason: String| Err(InvariantViolation::BadOffer { offer, reason });
        let cap = self.config.max_offers_per_framework.unwrap_or(usize::MAX);
        for (&id, entry) in &self.offers {
            let o = &entry.offer;
            if o.id != id {
                return bad(id, format!("stored under another id {}", o.id));
            }
            let Some(agent) = self.agents.get(&o.agent) else {
                return bad(id, format!("unknown agent {}", o.agent));
            };
            if !agent.offers.contains(&id) {
                return bad(id, "not listed by its agent".into());
            }
            if agent.mode != AgentMode::Active {
                return bad(id, format!("agent {} is {:?}", o.agent, agent.mode));
            }
            let Some(fw) = self.frameworks.get(&o.framework) else {
                return bad(id, format!("unknown framework {}", o.framework));
            };
            if !fw.offers.contains(&id) {
                return bad(id, "not listed by its framework".into());
            }
            if !fw.roles.contains(&entry.role) || self.roles[entry.role].role != o.role {
                return bad(
                    id,
                    format!("framework {} is not subscribed to role {}", o.framework, o.role),
                );
            }
            if o.resources.is_empty() {
                return bad(id, "empty".into());
            }
            for e in &o.resources {
                if let Some(rv) = &e.reservation {
                    if !rv.role.serves(&o.role) {
                        return bad(
                            id,
                            format!("{e} is reserved to {}, offered to role {}", rv.role, o.role),
                        );
                    }
                }
            }
            if agent.has_gpus && !fw.caps.gpu_resources {
                return bad(
                    id,
                    format!(
                        "agent {} has GPUs, framework {} is not GPU-capable",
                        o.agent, o.framework
                    ),
                );
            }
        }
        let listed: usize = self.agents.values().map(|a| a.offers.len()).sum();
        if listed != self.offers.len() {
            return Err(InvariantViolation::AccountingMismatch {
                what: "outstanding offers listed by agents".into(),
                cached: vec![listed as u64],
                expected: vec![self.offers.len() as u64],
            });
        }
        let mut held = 0;
        for (&f, fw) in &self.frameworks {
            if fw.offers.len() > cap {
                return Err(InvariantViolation::TooManyOffers {
                    framework: f,
                    count: fw.offers.len(),
                    cap,
                });
            }
            held += fw.offers.len();
        }
        if held != self.offers.len() {
            return Err(InvariantViolation::AccountingMismatch {
                what: "outstanding offers listed by frameworks".into(),
                cached: vec![held as u64],
                expected: vec![self.offers.len() as u64],
            });
        }
        Ok(())
    }

    fn check_accounting(&self) -> Result<(), InvariantViolation> {
        let n = self.names.len();
        let nr = self.roles.len();
        let mut alloc_own = vec![vec![0u64; n]; nr];
        let mut cons_own = vec![vec![0u64; n]; nr];
        let mut fw_alloc: BTreeMap<(FrameworkId, RoleIdx), Dense> = BTreeMap::new();
        let mut total = vec![0u64; n];
        let idx = |name: &crate::ResourceName| self.names.index(name).expect("every scalar name is interned");
        let mut count = |f: FrameworkId, r: RoleIdx, res: &Resources| {
            for e in res {
                if let Value::Scalar(s) = e.value {
                    let k = idx(&e.name);
                    alloc_own[r][k] += s.milli();
                    fw_alloc.entry((f, r)).or_insert_with(|| vec![0; n])[k] += s.milli();
                    if e.reservation.is_none() {
                        cons_own[r][k] += s.milli();
                    }
                }
            }
        };
        for agent in self.agents.values() {
            for (&(f, r), res) in &agent.allocated {
                count(f, r, res);
            }
            for o in &agent.offers {
                let entry = &self.offers[o];
                count(entry.offer.framework, entry.role, &entry.offer.resources);
            }
        }
        for agent in self.agents.values() {
            for e in &agent.total {
                if let Value::Scalar(s) = e.value {
                    let k = idx(&e.name);
                    total[k] += s.milli();
                    if let Some(rv) = &e.reservation {
                        let r = self.role_idx(&rv.role).expect("reservation roles are interned");
                        cons_own[r][k] += s.milli();
                    }
                }
            }
        }
        let mismatch = |what: String, cached: &[u64], expected: &[u64]| -> Result<(), InvariantViolation> {
            if (0..n).any(|k| d_get(cached, k) != d_get(expected, k)) {
                return Err(InvariantViolation::AccountingMismatch {
                    what,
                    cached: cached.to_vec(),
                    expected: expected.to_vec(),
                });
            }
            Ok(())
        };
        mismatch("the cluster total".into(), &self.cluster_total, &total)?;
        let mut alloc_sub = alloc_own.clone();
        let mut cons_sub = cons_own.clone();
        for r in 0..nr {
            let mut p = self.roles[r].parent;
            while let Some(i) = p {
                for k in 0..n {
                    alloc_sub[i][k] += alloc_own[r][k];
                    cons_sub[i][k] += cons_own[r][k];
                }
                p = self.roles[i].parent;
            }
        }
        for (r, node) in self.roles.iter().enumerate() {
            let name = &node.role;
            mismatch(format!("allocation to role {name}"), &node.alloc_own, &alloc_own[r])?;
            mismatch(
                format!("allocation to the subtree of role {name}"),
                &node.alloc_sub,
                &alloc_sub[r],
            )?;
            mismatch(format!("consumption of role {name}"), &node.cons_own, &cons_own[r])?;
            mismatch(
                format!("consumption of the subtree of role {name}"),
                &node.cons_sub,
                &cons_sub[r],
            )?;
        }
        for (&f, fw) in &self.frameworks {
            for r in fw
                .alloc
                .keys()
                .copied()
                .chain(fw_alloc.range((f, 0)..=(f, usize::MAX)).map(|((_, r), _)| *r))
            {
                let cached = fw.alloc.get(&r).map_or(&[][..], |d| d);
                let expected = fw_alloc.get(&(f, r)).map_or(&[][..], |d| d);
                mismatch(
                    format!("allocation to framework {f} in role {}", self.roles[r].role),
                    cached,
                    expected,
                )?;
            }
        }
        Ok(())
    }

    fn check_quota_limits(&self) -> Result<(), InvariantViolation> {
        for node in &self.roles {
            for (k, l) in node.limit.iter().enumerate() {
                let Some(l) = *l else { continue };
                let c = d_get(&node.cons_sub, k);
                if c > l.max(d_get(&node.ceiling, k)) {
                    return Err(InvariantViolation::QuotaLimitExceeded {
                        role: node.role.clone(),
                        resource: self.names.list[k].to_string(),
                        consumption: Scalar::from_milli(c),
                        limit: Scalar::from_milli(l),
                    });
                }
            }
        }
        Ok(())
    }
}
