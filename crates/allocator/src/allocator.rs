//! The allocator state machine: events in ([`Allocator::add_agent`], [`Allocator::decline`],
//! ...), offers out ([`Allocator::allocate`], [`Allocator::expired_offers`]).
//!
//! # How a cycle allocates
//!
//! Accounting is kept per role in dense vectors indexed by scalar name (cpus, mem, disk, gpus,
//! then custom names as agents bring them):
//! - *allocation* (offered plus allocated, reserved or not) drives fairness: a role's dominant
//!   share is the largest `allocation / cluster total` over scalar names, divided by its
//!   weight; a framework's share within a role is the same without a weight;
//! - *consumption* (reservations to the role, allocated or not, plus unreserved resources
//!   offered or allocated to it; the whole subtree for a parent role) is what quota
//!   guarantees and limits are measured against, as in Mesos 1.9 and later.
//!
//! At the start of a cycle every role and framework is keyed by its share once, in one ordered
//! set per parent role (a role that has frameworks of its own competes with its children as a
//! "self" leaf, like Mesos' virtual `.` node). After each offer only the keys on the path from
//! that framework to the root are updated, so the cost of a cycle is about
//! `agents × (roles + log frameworks)`, not `agents × frameworks × log frameworks`.
//!
//! Agents are then visited twice, in id order rotated each cycle:
//! 1. quota stage: roles (in DRF order) whose subtree consumption is below a guarantee of
//!    theirs or an ancestor's get offers, with the guaranteed scalars cut to what is missing;
//! 2. fair stage: every role in DRF order gets the rest, minus the *headroom* still needed by
//!    unsatisfied guarantees elsewhere (so other roles cannot eat resources quota needs).
//!
//! In both stages unreserved scalars are cut to the role's room under the quota limits of the
//! role and all its ancestors, reserved resources go only to their role and its descendants,
//! an offer below the minimum allocatable size is not made, and the first framework of the
//! role (lowest share) that is not suppressed, not filtered for that agent, not at its offer cap
//! and (for an agent with GPUs) GPU-capable gets it. A role with no room at all for a resource
//! the agent has free gets nothing unreserved there (no memory without cpus for a role at its
//! cpu limit), unless the offer holds some of that resource reserved.
//!
//! # Decline filters
//!
//! A framework that declines (or leaves unused) resources refuses, for `refuse` milliseconds,
//! any offer on that agent for that role that is contained in what it declined (Mesos'
//! semantics). Filters are kept with their agent, sorted by (framework, role), one per pair.
//! Each agent keeps `peak`, an upper bound of its unallocated resources since they last grew
//! beyond it; a filter that contained `peak` when it was made is certain, without a
//! containment test, for as long as the bound holds. A cycle skips at once an agent that every
//! eligible (framework, role) pair certainly refuses (idle frameworks that declined everything for
//! a long time). Expiry goes by a time-ordered index.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::resources::{Quantities, ReservationKind, Resource, ResourceName, Resources, Scalar, Value};
use crate::{Attributes, Error, Role};

/// Milliseconds since a fixed epoch chosen by the runtime.
pub type Millis = u64;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// An agent, numbered by the runtime (the cluster's node id).
    AgentId
);
id_type!(
    /// A framework, numbered by the runtime (which maps Mesos' string ids to numbers).
    FrameworkId
);
id_type!(
    /// An offer, numbered by the allocator from a counter: deterministic.
    OfferId
);

/// Whether an agent's resources may be offered. Only an active agent's are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentMode {
    Active,
    /// Maintenance: tasks are being moved away; nothing new goes there.
    Draining,
    /// Disconnected or deactivated by an operator.
    Deactivated,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Mesos' GPU_RESOURCES: only such frameworks are offered agents that have GPUs, so that
    /// GPU machines are not filled with work that does not need them.
    pub gpu_resources: bool,
}

/// How long a framework refuses the resources it declines (or leaves unused in an accept) on
/// that agent. Mesos' default is 5 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filters {
    pub refuse: Millis,
}

impl Filters {
    /// No filter: the resources may be offered again in the next cycle.
    pub const NONE: Filters = Filters { refuse: 0 };

    /// `refuse_seconds` as in Mesos; a negative or non-finite value means no filter.
    pub fn refuse_seconds(seconds: f64) -> Filters {
        if seconds.is_finite() && seconds > 0.0 {
            Filters {
                refuse: (seconds * 1000.0).min(u64::MAX as f64 / 2.0) as u64,
            }
        } else {
            Filters::NONE
        }
    }
}

impl Default for Filters {
    fn default() -> Filters {
        Filters { refuse: 5_000 }
    }
}

/// A role's quota: `guarantees` are offered to it before other roles get anything they would
/// take from it, `limits` cap its consumption (a missing name has no limit). Both count the
/// role's whole subtree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub guarantees: Quantities,
    pub limits: Quantities,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// An outstanding offer is rescinded by [`Allocator::expired_offers`] this long after it was
    /// made; `None` keeps offers until they are answered.
    pub offer_timeout: Option<Millis>,
    /// An offer is made only if it holds at least one of these (Mesos'
    /// `--min_allocatable_resources`, default `cpus:0.01|mem:32`). Empty: any non-empty offer.
    pub min_allocatable: Vec<Quantities>,
    /// A framework with this many outstanding offers gets no more until some are answered.
    pub max_offers_per_framework: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            offer_timeout: None,
            min_allocatable: vec![
                Quantities::new().with(ResourceName::CPUS, Scalar::from_milli(10)),
                Quantities::new().with(ResourceName::MEM, Scalar::from_units(32)),
            ],
            max_offers_per_framework: None,
        }
    }
}

/// Resources of one agent offered to one framework for one of its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub id: OfferId,
    pub framework: FrameworkId,
    pub role: Role,
    pub agent: AgentId,
    pub resources: Resources,
    pub created_at: Millis,
}

pub(crate) type RoleIdx = usize;
pub(crate) type Dense = Vec<u64>;

pub(crate) fn d_get(d: &[u64], k: usize) -> u64 {
    d.get(k).copied().unwrap_or(0)
}

fn d_apply(d: &mut Dense, k: usize, v: u64, add: bool) {
    if d.len() <= k {
        d.resize(k + 1, 0);
    }
    if add {
        d[k] += v;
    } else {
        debug_assert!(d[k] >= v, "accounting underflow");
        d[k] = d[k].saturating_sub(v);
    }
}

/// Scalar names to dense indices: cpus, mem, disk, gpus, then custom names in order of arrival.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) list: Vec<ResourceName>,
    custom: HashMap<ResourceName, usize>,
}

impl Names {
    fn new() -> Names {
        Names {
            list: vec![
                ResourceName::CPUS,
                ResourceName::MEM,
                ResourceName::DISK,
                ResourceName::GPUS,
            ],
            custom: HashMap::new(),
        }
    }

    pub(crate) fn index(&self, name: &ResourceName) -> Option<usize> {
        name.known_scalar_index().or_else(|| self.custom.get(name).copied())
    }

    fn intern(&mut self, name: &ResourceName) -> usize {
        if let Some(i) = self.index(name) {
            return i;
        }
        let i = self.list.len();
        self.list.push(name.clone());
        self.custom.insert(name.clone(), i);
        i
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RoleNode {
    pub(crate) role: Role,
    pub(crate) parent: Option<RoleIdx>,
    pub(crate) children: Vec<RoleIdx>,
    pub(crate) weight: Scalar,
    pub(crate) quota: Quota,
    pub(crate) guarantee: Dense,
    pub(crate) limit: Vec<Option<u64>>,
    pub(crate) frameworks: BTreeSet<FrameworkId>,
    /// Offered plus allocated to frameworks in exactly this role (DRF).
    pub(crate) alloc_own: Dense,
    /// The same over the subtree.
    pub(crate) alloc_sub: Dense,
    /// Reservations to exactly this role plus unreserved resources offered or allocated to it.
    pub(crate) cons_own: Dense,
    /// The same over the subtree: what quota is measured against.
    pub(crate) cons_sub: Dense,
    /// Where an operator forced a limit below consumption (or an agent re-registered with
    /// reservations above it): the consumption the role may keep, lowered as it falls.
    pub(crate) ceiling: Dense,
}

impl RoleNode {
    fn limit_of(&self, k: usize) -> Option<u64> {
        self.limit.get(k).copied().flatten()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) total: Resources,
    pub(crate) attributes: Attributes,
    pub(crate) mode: AgentMode,
    pub(crate) has_gpus: bool,
    /// `total` minus everything allocated or offered.
    pub(crate) unallocated: Resources,
    /// Held by frameworks' tasks, by (framework, allocation role).
    pub(crate) allocated: BTreeMap<(FrameworkId, RoleIdx), Resources>,
    pub(crate) offers: BTreeSet<OfferId>,
    /// Decline filters on this agent, sorted by (framework, role), one per pair. Kept with the
    /// agent so that the allocation loop (agent by agent) reads them from one place.
    pub(crate) filters: Vec<Filter>,
    /// An upper bound of `unallocated` since `growth` last changed: `unallocated ⊆ peak`.
    pub(crate) peak: Resources,
    /// Bumped whenever `unallocated` outgrows `peak` (and `peak` is reset).
    pub(crate) growth: u64,
}

impl Agent {
    /// Returns resources to `unallocated`.
    fn give_back(&mut self, res: &Resources) {
        if !res.is_empty() {
            self.unallocated.add(res);
            if !self.peak.contains(&self.unallocated) {
                self.peak = self.unallocated.clone();
                self.growth += 1;
            }
        }
    }

    fn filter_pos(&self, f: FrameworkId, r: RoleIdx) -> Result<usize, usize> {
        self.filters.binary_search_by(|x| (x.framework, x.role).cmp(&(f, r)))
    }

    /// Whether framework `f` in role `r` refuses this agent at `now`: `Sure` without looking at
    /// what would be offered, `Unless(declined)` if what would be offered is not contained in
    /// `declined`, `No` if there is no live filter.
    fn filter_state(&self, f: FrameworkId, r: RoleIdx, now: Millis) -> FilterState<'_> {
        if self.filters.is_empty() {
            return FilterState::No;
        }
        match self.filter_pos(f, r) {
            Ok(i) => {
                let x = &self.filters[i];
                if now >= x.expires {
                    FilterState::No
                } else if x.covers_all && x.growth == self.growth {
                    // What it declined contains `peak`, and `unallocated` has stayed within
                    // `peak` since: whatever is offered now is part of what it declined.
                    FilterState::Sure
                } else {
                    FilterState::Unless(&x.resources)
                }
            }
            Err(_) => FilterState::No,
        }
    }
}

impl Agent {
    /// Whether every pair in `pairs` (sorted) certainly refuses this agent at `now`: one
    /// sequential walk over both sorted lists, no lookups.
    fn refused_by_all(&self, pairs: &[(FrameworkId, RoleIdx)], now: Millis) -> bool {
        if pairs.is_empty() || self.filters.len() < pairs.len() {
            return pairs.is_empty();
        }
        let mut it = self.filters.iter();
        'pairs: for &(f, r) in pairs {
            for x in it.by_ref() {
                match (x.framework, x.role).cmp(&(f, r)) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Greater => return false,
                    std::cmp::Ordering::Equal => {
                        if now < x.expires && x.covers_all && x.growth == self.growth {
                            continue 'pairs;
                        }
                        return false;
                    }
                }
            }
            return false;
        }
        true
    }
}

enum FilterState<'a> {
    No,
    Sure,
    Unless(&'a Resources),
}

#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub(crate) framework: FrameworkId,
    pub(crate) role: RoleIdx,
    /// What was declined: an offer is filtered while it is contained in this.
    pub(crate) resources: Resources,
    pub(crate) expires: Millis,
    /// The agent's `growth` when the filter was made.
    pub(crate) growth: u64,
    /// Whether `resources` contained the agent's `peak` (of growth `growth`) when made.
    pub(crate) covers_all: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Framework {
    pub(crate) roles: Vec<RoleIdx>,
    pub(crate) caps: Capabilities,
    pub(crate) suppressed: BTreeSet<RoleIdx>,
    pub(crate) offers: BTreeSet<OfferId>,
    /// Offered plus allocated, per role.
    pub(crate) alloc: BTreeMap<RoleIdx, Dense>,
    /// The (agent, role) pairs under which `Agent::allocated` holds something of this framework.
    pub(crate) holdings: BTreeSet<(AgentId, RoleIdx)>,
    /// The (agent, role) pairs where this framework has a decline filter.
    pub(crate) filtered: BTreeSet<(AgentId, RoleIdx)>,
}

#[derive(Clone, Debug)]
pub(crate) struct OfferEntry {
    pub(crate) offer: Offer,
    pub(crate) role: RoleIdx,
    pub(crate) expires: Option<Millis>,
}

/// The allocator. See the crate documentation.
#[derive(Clone, Debug)]
pub struct Allocator {
    pub(crate) config: Config,
    pub(crate) names: Names,
    pub(crate) agents: BTreeMap<AgentId, Agent>,
    agent_order: Vec<AgentId>,
    agent_order_dirty: bool,
    pub(crate) frameworks: BTreeMap<FrameworkId, Framework>,
    pub(crate) roles: Vec<RoleNode>,
    role_index: HashMap<Role, RoleIdx>,
    pub(crate) offers: BTreeMap<OfferId, OfferEntry>,
    offer_expiry: BTreeSet<(Millis, OfferId)>,
    filter_expiry: BTreeSet<(Millis, AgentId, FrameworkId, RoleIdx)>,
    next_offer: u64,
    cycles: u64,
    /// Scalars of all agents, whatever their mode: the denominator of every share.
    pub(crate) cluster_total: Dense,
    quota_any: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Quota,
    Fair,
}

const SHARE_SHIFT: u32 = 48;

/// A dominant share in fixed point (2^-48), divided by the weight: integer arithmetic only, so
/// the order is the same on every machine.
fn share_key(alloc: &[u64], total: &[u64], weight: Scalar) -> u128 {
    let mut best: u128 = 0;
    for (k, &a) in alloc.iter().enumerate() {
        let t = d_get(total, k);
        if a == 0 || t == 0 {
            continue;
        }
        best = best.max((u128::from(a) << SHARE_SHIFT) / u128::from(t));
    }
    best * 1000 / u128::from(weight.milli().max(1))
}

/// Per-cycle sorting state (rebuilt at the start of each `allocate`).
struct Cycle {
    now: Millis,
    cap: usize,
    rank: Vec<u32>,
    by_rank: Vec<RoleIdx>,
    /// One ordered set per role (its children and its "self" leaf) plus the root at `roles.len()`.
    sets: Vec<BTreeSet<(u128, u32)>>,
    entry_key: Vec<u128>,
    self_key: Vec<u128>,
    fw_sets: Vec<BTreeSet<(u128, FrameworkId)>>,
    fw_key: HashMap<(FrameworkId, RoleIdx), u128>,
    /// The (framework, role) pairs that may get offers this cycle, sorted.
    eligible_pairs: Vec<(FrameworkId, RoleIdx)>,
    eligible_own: Vec<u32>,
    eligible_sub: Vec<u32>,
    avail_headroom: Dense,
    required_headroom: Dense,
    /// Whether the role or an ancestor has a guarantee (only then can it have a deficit).
    guaranteed_path: Vec<bool>,
    order: Vec<RoleIdx>,
    merged: HashMap<(FrameworkId, RoleIdx, AgentId), OfferId>,
    out: Vec<OfferId>,
}

impl Cycle {
    fn root(&self) -> usize {
        self.sets.len() - 1
    }

    /// Roles with eligible frameworks, in hierarchical DRF order.
    fn fill_order(&self, set: usize, out: &mut Vec<RoleIdx>) {
        let root = self.root();
        for &(_, rank) in &self.sets[set] {
            let idx = self.by_rank[rank as usize];
            if set != root && idx == set {
                if self.eligible_own[idx] > 0 {
                    out.push(idx);
                }
            } else if self.eligible_sub[idx] > 0 {
                self.fill_order(idx, out);
            }
        }
    }

    fn rekey(&mut self, roles: &[RoleNode], fw: &Framework, f: FrameworkId, r: RoleIdx, total: &[u64]) {
        if let Some(old) = self.fw_key.get_mut(&(f, r)) {
            self.fw_sets[r].remove(&(*old, f));
            let key = share_key(fw.alloc.get(&r).map_or(&[][..], |d| d), total, Scalar::from_units(1));
            *old = key;
            self.fw_sets[r].insert((key, f));
        }
        let rank = self.rank[r];
        self.sets[r].remove(&(self.self_key[r], rank));
        self.self_key[r] = share_key(&roles[r].alloc_own, total, roles[r].weight);
        self.sets[r].insert((self.self_key[r], rank));
        let root = self.root();
        let mut n = r;
        loop {
            let p = roles[n].parent;
            let set = p.unwrap_or(root);
            let rank = self.rank[n];
            self.sets[set].remove(&(self.entry_key[n], rank));
            self.entry_key[n] = share_key(&roles[n].alloc_sub, total, roles[n].weight);
            self.sets[set].insert((self.entry_key[n], rank));
            match p {
                Some(pp) => n = pp,
                None => break,
            }
        }
    }

    /// Takes a framework that reached its offer cap out of this cycle.
    fn drop_framework(&mut self, roles: &[RoleNode], f: FrameworkId, fw_roles: &[RoleIdx]) {
        self.eligible_pairs.retain(|&(g, _)| g != f);
        for &r in fw_roles {
            if let Some(key) = self.fw_key.remove(&(f, r)) {
                if self.fw_sets[r].remove(&(key, f)) {
                    self.eligible_own[r] -= 1;
                    let mut n = Some(r);
                    while let Some(i) = n {
                        self.eligible_sub[i] -= 1;
                        n = roles[i].parent;
                    }
                }
            }
        }
    }
}

/// Scalar amounts of a bundle by dense index: (all, unreserved only).
type Deltas = Vec<(usize, u64)>;

impl Allocator {
    pub fn new(config: Config) -> Allocator {
        Allocator {
            config,
            names: Names::new(),
            agents: BTreeMap::new(),
            agent_order: Vec::new(),
            agent_order_dirty: false,
            frameworks: BTreeMap::new(),
            roles: Vec::new(),
            role_index: HashMap::new(),
            offers: BTreeMap::new(),
            offer_expiry: BTreeSet::new(),
            filter_expiry: BTreeSet::new(),
            next_offer: 1,
            cycles: 0,
            cluster_total: Vec::new(),
            quota_any: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- roles -----

    fn intern_role(&mut self, role: &Role) -> RoleIdx {
        if let Some(&i) = self.role_index.get(role) {
            return i;
        }
        let parent = role.parent().map(|p| self.intern_role(&p));
        let i = self.roles.len();
        self.roles.push(RoleNode {
            role: role.clone(),
            parent,
            children: Vec::new(),
            weight: Scalar::from_units(1),
            quota: Quota::default(),
            guarantee: Vec::new(),
            limit: Vec::new(),
            frameworks: BTreeSet::new(),
            alloc_own: Vec::new(),
            alloc_sub: Vec::new(),
            cons_own: Vec::new(),
            cons_sub: Vec::new(),
            ceiling: Vec::new(),
        });
        if let Some(p) = parent {
            self.roles[p].children.push(i);
        }
        self.role_index.insert(role.clone(), i);
        i
    }

    pub(crate) fn role_idx(&self, role: &Role) -> Option<RoleIdx> {
        self.role_index.get(role).copied()
    }

    /// Sets a role's weight (default 1): its share is divided by it, so a role of weight 2 gets
    /// twice the resources of a role of weight 1 when both want more.
    pub fn set_weight(&mut self, role: &Role, weight: Scalar) -> Result<(), Error> {
        if weight.is_zero() {
            return Err(Error::InvalidWeight { role: role.clone() });
        }
        let r = self.intern_role(role);
        self.roles[r].weight = weight;
        Ok(())
    }

    /// Sets (or, with an empty [`Quota`], removes) a role's quota. A limit below the role's
    /// current consumption is refused unless `force`; forced, the role keeps what it holds and
    /// gets nothing more of that resource until it is back under the limit.
    pub fn set_quota(&mut self, role: &Role, quota: Quota, force: bool) -> Result<(), Error> {
        if role.is_default() {
            return Err(Error::InvalidQuota {
                role: role.clone(),
                reason: "the default role '*' has no quota",
            });
        }
        for (name, g) in quota.guarantees.iter() {
            if let Some(l) = quota.limits.get(name) {
                if g > l {
                    return Err(Error::GuaranteeAboveLimit {
                        role: role.clone(),
                        resource: name.clone(),
                        guarantee: g,
                        limit: l,
                    });
                }
            }
        }
        if quota
            .guarantees
            .iter()
            .chain(quota.limits.iter())
            .any(|(n, _)| *n == ResourceName::PORTS)
        {
            return Err(Error::InvalidQuota {
                role: role.clone(),
                reason: "quota applies to scalar resources only",
            });
        }
        let r = self.intern_role(role);
        let mut guarantee = Vec::new();
        let mut limit: Vec<Option<u64>> = Vec::new();
        for (name, g) in quota.guarantees.iter() {
            let k = self.names.intern(name);
            d_apply(&mut guarantee, k, g.milli(), true);
        }
        for (name, l) in quota.limits.iter() {
            let k = self.names.intern(name);
            if limit.len() <= k {
                limit.resize(k + 1, None);
            }
            limit[k] = Some(l.milli());
        }
        let node = &self.roles[r];
        for (k, l) in limit.iter().enumerate() {
            if let Some(l) = *l {
                let c = d_get(&node.cons_sub, k);
                if c > l && !force {
                    return Err(Error::LimitBelowConsumption {
                        role: role.clone(),
                        resource: self.names.list[k].clone(),
                        limit: Scalar::from_milli(l),
                        consumption: Scalar::from_milli(c),
                    });
                }
            }
        }
        let node = &mut self.roles[r];
        node.quota = quota;
        node.guarantee = guarantee;
        node.limit = limit;
        node.ceiling.clear();
        self.raise_ceilings(r);
        self.quota_any = self.roles.iter().any(|n| n.guarantee.iter().any(|&g| g > 0));
        Ok(())
    }

    // ----- accounting -----

    fn deltas(&self, res: &Resources) -> (Deltas, Deltas) {
        let mut all = Vec::with_capacity(res.len());
        let mut unreserved = Vec::with_capacity(res.len());
        for e in res {
            if let Value::Scalar(s) = e.value {
                let k = self
                    .names
                    .index(&e.name)
                    .expect("scalar names are interned when agents join");
                all.push((k, s.milli()));
                if e.reservation.is_none() {
                    unreserved.push((k, s.milli()));
                }
            }
        }
        (all, unreserved)
    }

    /// Adds (or takes away) resources offered or allocated to framework `f` in role `r`.
    fn charge(&mut self, f: FrameworkId, r: RoleIdx, res: &Resources, add: bool) {
        let (all, unreserved) = self.deltas(res);
        if all.is_empty() {
            return;
        }
        let fw = self.frameworks.get_mut(&f).expect("charged framework exists");
        let falloc = fw.alloc.entry(r).or_default();
        for &(k, v) in &all {
            d_apply(falloc, k, v, add);
        }
        {
            let node = &mut self.roles[r];
            for &(k, v) in &all {
                d_apply(&mut node.alloc_own, k, v, add);
            }
            for &(k, v) in &unreserved {
                d_apply(&mut node.cons_own, k, v, add);
            }
        }
        let mut n = Some(r);
        while let Some(i) = n {
            let node = &mut self.roles[i];
            for &(k, v) in &all {
                d_apply(&mut node.alloc_sub, k, v, add);
            }
            for &(k, v) in &unreserved {
                d_apply(&mut node.cons_sub, k, v, add);
            }
            n = node.parent;
        }
        if !add && !unreserved.is_empty() {
            self.lower_ceilings(r);
        }
    }

    /// Adds (or takes away) consumption of role `r` that is not an allocation: reservations,
    /// and the unreserved side of unreserving a held reservation.
    fn consume(&mut self, r: RoleIdx, k: usize, v: u64, add: bool) {
        d_apply(&mut self.roles[r].cons_own, k, v, add);
        let mut n = Some(r);
        while let Some(i) = n {
            d_apply(&mut self.roles[i].cons_sub, k, v, add);
            n = self.roles[i].parent;
        }
        if !add {
            self.lower_ceilings(r);
        }
    }

    /// Reservations of a bundle as (role, dense index, amount); interns roles.
    fn reservation_deltas(&mut self, res: &Resources) -> Vec<(RoleIdx, usize, u64)> {
        let mut out = Vec::new();
        for e in res {
            if let (Some(rv), Value::Scalar(s)) = (&e.reservation, &e.value) {
                let r = self.intern_role(&rv.role);
                let k = self.names.intern(&e.name);
                out.push((r, k, s.milli()));
            }
        }
        out
    }

    /// After consumption fell: a forced excess shrinks with it, and ends once under the limit.
    fn lower_ceilings(&mut self, r: RoleIdx) {
        let mut n = Some(r);
        while let Some(i) = n {
            let node = &mut self.roles[i];
            if !node.ceiling.is_empty() {
                let mut any = false;
                for k in 0..node.ceiling.len() {
                    let c = d_get(&node.cons_sub, k);
                    node.ceiling[k] = match node.limit_of(k) {
                        Some(l) if c > l => node.ceiling[k].min(c),
                        _ => 0,
                    };
                    any |= node.ceiling[k] > 0;
                }
                if !any {
                    node.ceiling.clear();
                }
            }
            n = node.parent;
        }
    }

    /// After an event the allocator cannot refuse pushed consumption above a limit (an agent
    /// re-registering with reservations, a forced quota, resources reported in use): remember
    /// the excess as the ceiling.
    fn raise_ceilings(&mut self, r: RoleIdx) {
        let mut n = Some(r);
        while let Some(i) = n {
            let node = &mut self.roles[i];
            for k in 0..node.limit.len() {
                if let Some(l) = node.limit[k] {
                    let c = d_get(&node.cons_sub, k);
                    if c > l {
                        if node.ceiling.len() <= k {
                            node.ceiling.resize(k + 1, 0);
                        }
                        node.ceiling[k] = node.ceiling[k].max(c);
                    }
                }
            }
            n = node.parent;
        }
    }

    /// The first quota limit that adding `add` to the consumption of `r` would break, checking
    /// `r` and its ancestors up to (not including) `stop`.
    fn limit_violation(&self, r: RoleIdx, add: &[(usize, u64)], stop: Option<RoleIdx>) -> Option<Error> {
        let mut sum: Dense = Vec::new();
        for &(k, v) in add {
            d_apply(&mut sum, k, v, true);
        }
        let mut n = Some(r);
        while let Some(i) = n {
            if Some(i) == stop {
                break;
            }
            if let Some(e) = self.node_violation(i, &sum) {
                return Some(e);
            }
            n = self.roles[i].parent;
        }
        None
    }

    /// The first limit of role `i` that adding `add` (dense) to its consumption would break.
    fn node_violation(&self, i: RoleIdx, add: &[u64]) -> Option<Error> {
        let node = &self.roles[i];
        for (k, &v) in add.iter().enumerate() {
            if let Some(l) = node.limit_of(k) {
                let after = d_get(&node.cons_sub, k) + v;
                if v > 0 && after > l {
                    return Some(Error::QuotaLimitExceeded {
                        role: node.role.clone(),
                        resource: self.names.list[k].clone(),
                        would_be: Scalar::from_milli(after),
                        limit: Scalar::from_milli(l),
                    });
                }
            }
        }
        None
    }

    // ----- agents -----

    /// An agent joins with its total resources (static reservations inside, e.g.
    /// `cpus(eng):2`; after a failover also its dynamic ones) and attributes. It starts active.
    pub fn add_agent(&mut self, id: AgentId, total: Resources, attributes: Attributes) -> Result<(), Error> {
        if self.agents.contains_key(&id) {
            return Err(Error::AgentExists(id));
        }
        if total
            .iter()
            .any(|e| e.reservation.as_ref().is_some_and(|rv| rv.role.is_default()))
        {
            return Err(Error::InvalidReservation {
                reason: "nothing can be reserved to the default role '*'",
            });
        }
        for e in &total {
            if matches!(e.value, Value::Scalar(_)) {
                let k = self.names.intern(&e.name);
                d_apply(
                    &mut self.cluster_total,
                    k,
                    e.as_scalar().unwrap_or_default().milli(),
                    true,
                );
            }
        }
        let reservations = self.reservation_deltas(&total);
        for &(r, k, v) in &reservations {
            self.consume(r, k, v, true);
        }
        for &(r, _, _) in &reservations {
            self.raise_ceilings(r);
        }
        let has_gpus = !total.scalar_sum(&ResourceName::GPUS).is_zero();
        self.agents.insert(
            id,
            Agent {
                peak: total.clone(),
                unallocated: total.clone(),
                total,
                attributes,
                mode: AgentMode::Active,
                has_gpus,
                allocated: BTreeMap::new(),
                offers: BTreeSet::new(),
                filters: Vec::new(),
                growth: 0,
            },
        );
        self.agent_order_dirty = true;
        Ok(())
    }

    /// An agent leaves (removed, or gone for good): its offers end (returned, to rescind), its
    /// tasks' resources are no longer held by anyone, its reservations stop counting.
    pub fn remove_agent(&mut self, id: AgentId) -> Result<Vec<OfferId>, Error> {
        let agent = self.agents.get(&id).ok_or(Error::UnknownAgent(id))?;
        let offer_ids: Vec<OfferId> = agent.offers.iter().copied().collect();
        for &o in &offer_ids {
            self.take_offer(o, true);
        }
        let agent = self.agents.get_mut(&id).expect("checked above");
        let allocated = std::mem::take(&mut agent.allocated);
        for ((f, r), res) in allocated {
            self.charge(f, r, &res, false);
            if let Some(fw) = self.frameworks.get_mut(&f) {
                fw.holdings.remove(&(id, r));
            }
        }
        let agent = self.agents.remove(&id).expect("checked above");
        for (r, k, v) in self.reservation_deltas(&agent.total) {
            self.consume(r, k, v, false);
        }
        for e in &agent.total {
            if let Value::Scalar(s) = e.value {
                let k = self.names.intern(&e.name);
                d_apply(&mut self.cluster_total, k, s.milli(), false);
            }
        }
        for x in &agent.filters {
            if let Some(fw) = self.frameworks.get_mut(&x.framework) {
                fw.filtered.remove(&(id, x.role));
            }
        }
        self.agent_order_dirty = true;
        Ok(offer_ids)
    }

    /// Marks an agent active, draining or deactivated. Leaving `Active` ends its outstanding
    /// offers (returned, to rescind); its tasks keep their resources until recovered.
    pub fn update_agent_state(&mut self, id: AgentId, mode: AgentMode) -> Result<Vec<OfferId>, Error> {
        let agent = self.agents.get_mut(&id).ok_or(Error::UnknownAgent(id))?;
        agent.mode = mode;
        if mode == AgentMode::Active {
            return Ok(Vec::new());
        }
        let offer_ids: Vec<OfferId> = agent.offers.iter().copied().collect();
        for &o in &offer_ids {
            self.take_offer(o, true);
        }
        Ok(offer_ids)
    }

    /// After a failover: resources the agent reports in use by a framework's tasks. They are
    /// allocated to the framework in `role` as if it had accepted them.
    pub fn add_used(
        &mut self,
        framework: FrameworkId,
        agent: AgentId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), Error> {
        let r = self.subscribed(framework, role)?;
        if resources
            .iter()
            .any(|e| e.reservation.as_ref().is_some_and(|rv| !rv.role.serves(role)))
        {
            return Err(Error::InvalidReservation {
                reason: "reserved resources serve only their role and its descendants",
            });
        }
        let a = self.agents.get_mut(&agent).ok_or(Error::UnknownAgent(agent))?;
        if !a.unallocated.try_sub_assign(resources) {
            return Err(Error::NotAvailable {
                agent,
                resources: resources.clone(),
            });
        }
        a.allocated.entry((framework, r)).or_default().add(resources);
        self.frameworks
            .get_mut(&framework)
            .expect("checked")
            .holdings
            .insert((agent, r));
        self.charge(framework, r, resources, true);
        self.raise_ceilings(r);
        Ok(())
    }

    // ----- frameworks -----

    /// A framework subscribes to one or more roles.
    pub fn add_framework(&mut self, id: FrameworkId, roles: &[Role], capabilities: Capabilities) -> Result<(), Error> {
        if self.frameworks.contains_key(&id) {
            return Err(Error::FrameworkExists(id));
        }
        if roles.is_empty() {
            return Err(Error::NoRoles(id));
        }
        let mut idxs: Vec<RoleIdx> = roles.iter().map(|r| self.intern_role(r)).collect();
        idxs.sort_unstable();
        idxs.dedup();
        for &r in &idxs {
            self.roles[r].frameworks.insert(id);
        }
        self.frameworks.insert(
            id,
            Framework {
                roles: idxs,
                caps: capabilities,
                suppressed: BTreeSet::new(),
                offers: BTreeSet::new(),
                alloc: BTreeMap::new(),
                holdings: BTreeSet::new(),
                filtered: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// A framework leaves: its offers end (returned) and everything it held is unallocated again
    /// (its tasks are gone).
    pub fn remove_framework(&mut self, id: FrameworkId) -> Result<Vec<OfferId>, Error> {
        let fw = self.frameworks.get(&id).ok_or(Error::UnknownFramework(id))?;
        let offer_ids: Vec<OfferId> = fw.offers.iter().copied().collect();
        for &o in &offer_ids {
            self.take_offer(o, true);
        }
        let holdings = std::mem::take(&mut self.frameworks.get_mut(&id).expect("checked").holdings);
        for (a, r) in holdings {
            let agent = self.agents.get_mut(&a).expect("holdings point at known agents");
            if let Some(res) = agent.allocated.remove(&(id, r)) {
                agent.give_back(&res);
                self.charge(id, r, &res, false);
            }
        }
        let fw = self.frameworks.remove(&id).expect("checked");
        for &(a, r) in &fw.filtered {
            let agent = self.agents.get_mut(&a).expect("filters point at known agents");
            if let Ok(i) = agent.filter_pos(id, r) {
                agent.filters.remove(i);
            }
        }
        for r in fw.roles {
            self.roles[r].frameworks.remove(&id);
        }
        Ok(offer_ids)
    }

    fn subscribed(&self, f: FrameworkId, role: &Role) -> Result<RoleIdx, Error> {
        let fw = self.frameworks.get(&f).ok_or(Error::UnknownFramework(f))?;
        self.role_idx(role)
            .filter(|r| fw.roles.contains(r))
            .ok_or_else(|| Error::NotSubscribed {
                framework: f,
                role: role.clone(),
            })
    }

    fn framework_roles(&self, f: FrameworkId, roles: &[Role]) -> Result<Vec<RoleIdx>, Error> {
        let fw = self.frameworks.get(&f).ok_or(Error::UnknownFramework(f))?;
        if roles.is_empty() {
            return Ok(fw.roles.clone());
        }
        roles.iter().map(|r| self.subscribed(f, r)).collect()
    }

    /// SUPPRESS: the framework gets no offers for these roles (all of its roles if empty) until
    /// it revives. Outstanding offers stay.
    pub fn suppress(&mut self, framework: FrameworkId, roles: &[Role]) -> Result<(), Error> {
        let idxs = self.framework_roles(framework, roles)?;
        self.frameworks
            .get_mut(&framework)
            .expect("checked")
            .suppressed
            .extend(idxs);
        Ok(())
    }

    /// REVIVE: offers resume for these roles (all if empty) and their decline filters are
    /// cleared.
    pub fn revive(&mut self, framework: FrameworkId, roles: &[Role]) -> Result<(), Error> {
        let idxs = self.framework_roles(framework, roles)?;
        let fw = self.frameworks.get_mut(&framework).expect("checked");
        for r in &idxs {
            fw.suppressed.remove(r);
        }
        let cleared: Vec<(AgentId, RoleIdx)> = fw.filtered.iter().filter(|(_, r)| idxs.contains(r)).copied().collect();
        for (a, r) in cleared {
            fw.filtered.remove(&(a, r));
            let agent = self.agents.get_mut(&a).expect("filters point at known agents");
            if let Ok(i) = agent.filter_pos(framework, r) {
                agent.filters.remove(i);
            }
        }
        Ok(())
    }

    // ----- offers -----

    /// Removes an outstanding offer; with `recover`, its resources become unallocated again.
    fn take_offer(&mut self, id: OfferId, recover: bool) -> Option<OfferEntry> {
        let entry = self.offers.remove(&id)?;
        if let Some(t) = entry.expires {
            self.offer_expiry.remove(&(t, id));
        }
        let agent = self
            .agents
            .get_mut(&entry.offer.agent)
            .expect("offers point at known agents");
        agent.offers.remove(&id);
        self.frameworks
            .get_mut(&entry.offer.framework)
            .expect("offers point at known frameworks")
            .offers
            .remove(&id);
        if recover {
            agent.give_back(&entry.offer.resources);
            self.charge(entry.offer.framework, entry.role, &entry.offer.resources, false);
        }
        Some(entry)
    }

    fn install_filter(
        &mut self,
        f: FrameworkId,
        r: RoleIdx,
        agent: AgentId,
        resources: Resources,
        filters: Filters,
        now: Millis,
    ) {
        if filters.refuse == 0 || resources.is_empty() {
            return;
        }
        let expires = now.saturating_add(filters.refuse);
        let ag = self.agents.get_mut(&agent).expect("filtered agent exists");
        let covers_all = if resources.contains(&ag.peak) {
            true
        } else if resources == ag.unallocated {
            // Tighten the bound to what is unallocated now, so that this filter (and later ones
            // like it) can be decided without looking; earlier filters lose that shortcut.
            ag.peak = ag.unallocated.clone();
            ag.growth += 1;
            true
        } else {
            false
        };
        let filter = Filter {
            framework: f,
            role: r,
            covers_all,
            resources,
            expires,
            growth: ag.growth,
        };
        // One filter per (framework, role, agent): a new decline replaces the old filter.
        match ag.filter_pos(f, r) {
            Ok(i) => ag.filters[i] = filter,
            Err(i) => ag.filters.insert(i, filter),
        }
        self.frameworks
            .get_mut(&f)
            .expect("filtered framework exists")
            .filtered
            .insert((agent, r));
        self.filter_expiry.insert((expires, agent, f, r));
    }

    /// DECLINE: the offer's resources are unallocated again, and the framework refuses them on
    /// that agent (for that role) for `filters.refuse` from `now`: they are not offered to it
    /// while what would be offered is contained in what it declined.
    pub fn decline(&mut self, offer: OfferId, filters: Filters, now: Millis) -> Result<(), Error> {
        let entry = self.take_offer(offer, true).ok_or(Error::UnknownOffer(offer))?;
        let o = entry.offer;
        self.install_filter(o.framework, entry.role, o.agent, o.resources, filters, now);
        Ok(())
    }

    /// ACCEPT: `used` (part of the offer) is allocated to the framework in the offer's role until
    /// recovered; the rest is unallocated again and filtered as in [`Allocator::decline`].
    pub fn accept(&mut self, offer: OfferId, used: &Resources, filters: Filters, now: Millis) -> Result<(), Error> {
        let entry = self.offers.get(&offer).ok_or(Error::UnknownOffer(offer))?;
        let remainder = entry
            .offer
            .resources
            .checked_sub(used)
            .ok_or_else(|| Error::NotInOffer {
                offer,
                used: used.clone(),
            })?;
        let entry = self.take_offer(offer, false).expect("checked above");
        let (f, r, a) = (entry.offer.framework, entry.role, entry.offer.agent);
        let agent = self.agents.get_mut(&a).expect("offers point at known agents");
        if !used.is_empty() {
            agent.allocated.entry((f, r)).or_default().add(used);
            self.frameworks
                .get_mut(&f)
                .expect("offers point at known frameworks")
                .holdings
                .insert((a, r));
        }
        if !remainder.is_empty() {
            agent.give_back(&remainder);
            self.charge(f, r, &remainder, false);
            self.install_filter(f, r, a, remainder, filters, now);
        }
        Ok(())
    }

    /// Ends an outstanding offer without a filter (the runtime rescinds it, e.g. for an
    /// operator's maintenance or a framework that failed over).
    pub fn rescind(&mut self, offer: OfferId) -> Result<Offer, Error> {
        self.take_offer(offer, true)
            .map(|e| e.offer)
            .ok_or(Error::UnknownOffer(offer))
    }

    /// Resources held by a framework's tasks are free again (tasks finished or were killed).
    pub fn recover(
        &mut self,
        framework: FrameworkId,
        agent: AgentId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), Error> {
        let not_allocated = || Error::NotAllocated {
            framework,
            agent,
            role: role.clone(),
            resources: resources.clone(),
        };
        if !self.frameworks.contains_key(&framework) {
            return Err(Error::UnknownFramework(framework));
        }
        let r = self.role_idx(role).ok_or_else(not_allocated)?;
        let a = self.agents.get_mut(&agent).ok_or(Error::UnknownAgent(agent))?;
        let held = a.allocated.get_mut(&(framework, r)).ok_or_else(not_allocated)?;
        if !held.try_sub_assign(resources) {
            return Err(not_allocated());
        }
        if held.is_empty() {
            a.allocated.remove(&(framework, r));
            self.frameworks
                .get_mut(&framework)
                .expect("checked")
                .holdings
                .remove(&(agent, r));
        }
        a.give_back(resources);
        self.charge(framework, r, resources, false);
        Ok(())
    }

    /// The earliest time something the allocator keeps runs out (a decline filter, an offer's
    /// timeout): an allocation then may offer more. `None`: nothing will.
    pub fn next_deadline(&self) -> Option<Millis> {
        let filter = self.filter_expiry.first().map(|&(t, ..)| t);
        let offer = self.offer_expiry.first().map(|&(t, _)| t);
        match (filter, offer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The offers whose timeout has passed at `now`: they are ended (their resources unallocated
    /// again, no filter) and returned for the runtime to rescind.
    pub fn expired_offers(&mut self, now: Millis) -> Vec<OfferId> {
        let mut out = Vec::new();
        while let Some(&(t, id)) = self.offer_expiry.first() {
            if t > now {
                break;
            }
            self.offer_expiry.pop_first();
            if self.offers.contains_key(&id) {
                self.take_offer(id, true);
                out.push(id);
            }
        }
        out
    }

    // ----- reservations -----

    /// RESERVE: unreserved resources on `agent` become dynamically reserved to `role`. With no
    /// `holder` (an operator) they must be unallocated, and the reservation must fit the quota
    /// limits of `role` and its ancestors; with a holder (a framework reserving from an offer
    /// it accepted), they must be allocated to it in `role`, and stay so. Returns the reserved
    /// resources.
    pub fn reserve(
        &mut self,
        agent: AgentId,
        role: &Role,
        resources: &Resources,
        holder: Option<FrameworkId>,
    ) -> Result<Resources, Error> {
        if role.is_default() {
            return Err(Error::InvalidReservation {
                reason: "nothing can be reserved to the default role '*'",
            });
        }
        if resources.iter().any(|e| e.reservation.is_some()) {
            return Err(Error::InvalidReservation {
                reason: "resources to reserve must be unreserved",
            });
        }
        if resources.is_empty() {
            return Err(Error::InvalidReservation {
                reason: "nothing to reserve",
            });
        }
        if !self.agents.contains_key(&agent) {
            return Err(Error::UnknownAgent(agent));
        }
        let reserved = resources.reserve_to(role, ReservationKind::Dynamic);
        match holder {
            None => {
                if !self.agents[&agent].unallocated.contains(resources) {
                    return Err(Error::NotAvailable {
                        agent,
                        resources: resources.clone(),
                    });
                }
                let r = self.intern_role(role);
                let (_, unreserved) = self.deltas(resources);
                if let Some(e) = self.limit_violation(r, &unreserved, None) {
                    return Err(e);
                }
                let a = self.agents.get_mut(&agent).expect("checked");
                a.unallocated.try_sub_assign(resources);
                a.give_back(&reserved);
                swap_in_total(&mut a.total, resources, &reserved);
                for (k, v) in unreserved {
                    self.consume(r, k, v, true);
                }
            }
            Some(f) => {
                let r = self.subscribed(f, role)?;
                let a = self.agents.get_mut(&agent).expect("checked");
                let held = a.allocated.get_mut(&(f, r)).filter(|h| h.contains(resources));
                let Some(held) = held else {
                    return Err(Error::NotAllocated {
                        framework: f,
                        agent,
                        role: role.clone(),
                        resources: resources.clone(),
                    });
                };
                held.try_sub_assign(resources);
                held.add(&reserved);
                swap_in_total(&mut a.total, resources, &reserved);
                // Consumption is unchanged: an unreserved allocation to `role` became a
                // reservation to `role`; allocation (DRF) is unchanged too.
            }
        }
        Ok(reserved)
    }

    /// UNRESERVE: dynamically reserved resources (as offered, e.g. `cpus(eng,dynamic):2`) become
    /// unreserved. With no `holder` they must be unallocated; with a holder `(framework, role)`
    /// they must be allocated to it in that role, and stay so as unreserved resources (which
    /// must fit the quota limits of the roles between the reservation's and the holder's).
    /// Returns the unreserved resources.
    pub fn unreserve(
        &mut self,
        agent: AgentId,
        resources: &Resources,
        holder: Option<(FrameworkId, Role)>,
    ) -> Result<Resources, Error> {
        if resources.is_empty() {
            return Err(Error::InvalidReservation {
                reason: "nothing to unreserve",
            });
        }
        for e in resources {
            match &e.reservation {
                None => {
                    return Err(Error::InvalidReservation {
                        reason: "resources to unreserve must be reserved",
                    })
                }
                Some(rv) if rv.kind == ReservationKind::Static => {
                    return Err(Error::StaticReservation {
                        resources: Resources::new().with(e.clone()),
                    })
                }
                _ => {}
            }
        }
        if !self.agents.contains_key(&agent) {
            return Err(Error::UnknownAgent(agent));
        }
        let unreserved = resources.strip_reservations();
        let res_deltas: Vec<(RoleIdx, usize, u64)> = resources
            .iter()
            .filter_map(|e| {
                let rv = e.reservation.as_ref()?;
                let s = e.as_scalar()?;
                Some((self.role_idx(&rv.role)?, self.names.index(&e.name)?, s.milli()))
            })
            .collect();
        match holder {
            None => {
                let a = self.agents.get_mut(&agent).expect("checked");
                if !a.unallocated.try_sub_assign(resources) {
                    return Err(Error::NotAvailable {
                        agent,
                        resources: resources.clone(),
                    });
                }
                a.give_back(&unreserved);
                swap_in_total(&mut a.total, resources, &unreserved);
                for (r, k, v) in res_deltas {
                    self.consume(r, k, v, false);
                }
            }
            Some((f, role)) => {
                let ar = self.subscribed(f, &role)?;
                let not_allocated = || Error::NotAllocated {
                    framework: f,
                    agent,
                    role: role.clone(),
                    resources: resources.clone(),
                };
                if !self.agents[&agent]
                    .allocated
                    .get(&(f, ar))
                    .is_some_and(|h| h.contains(resources))
                {
                    return Err(not_allocated());
                }
                // The unreserved amounts now count for the holder's role; check the limits of
                // the roles between it and each reservation's role.
                let mut n = Some(ar);
                while let Some(i) = n {
                    let mut add: Dense = Vec::new();
                    for &(rr, k, v) in &res_deltas {
                        if self.roles[rr].role.is_ancestor_of(&self.roles[i].role) {
                            d_apply(&mut add, k, v, true);
                        }
                    }
                    if let Some(e) = self.node_violation(i, &add) {
                        return Err(e);
                    }
                    n = self.roles[i].parent;
                }
                let a = self.agents.get_mut(&agent).expect("checked");
                let held = a.allocated.get_mut(&(f, ar)).expect("checked");
                held.try_sub_assign(resources);
                held.add(&unreserved);
                swap_in_total(&mut a.total, resources, &unreserved);
                for (rr, k, v) in res_deltas {
                    self.consume(ar, k, v, true);
                    self.consume(rr, k, v, false);
                }
            }
        }
        Ok(unreserved)
    }

    // ----- allocation -----

    /// Whether an offer of `res` is worth making (the minimum allocatable resources).
    fn allocatable(&self, res: &Resources) -> bool {
        if res.is_empty() {
            return false;
        }
        if self.config.min_allocatable.is_empty() {
            return true;
        }
        self.config
            .min_allocatable
            .iter()
            .any(|q| q.iter().all(|(name, min)| res.scalar_sum(name) >= min))
    }

    /// What is still missing to the guarantees of `r` and its ancestors, per scalar (the largest
    /// shortfall on the path).
    fn effective_deficit(&self, r: RoleIdx) -> Dense {
        let mut d = vec![0; self.names.len()];
        let mut n = Some(r);
        while let Some(i) = n {
            let node = &self.roles[i];
            for (k, &g) in node.guarantee.iter().enumerate() {
                let missing = g.saturating_sub(d_get(&node.cons_sub, k));
                d[k] = d[k].max(missing);
            }
            n = node.parent;
        }
        d
    }

    /// Unreserved resources that must stay unallocated for guarantees not yet met: per subtree,
    /// the larger of its own shortfall and its children's, summed over top-level roles.
    fn required_headroom(&self) -> Dense {
        fn walk(a: &Allocator, r: RoleIdx, n: usize) -> Dense {
            let node = &a.roles[r];
            let mut need = vec![0; n];
            for &c in &node.children {
                for (k, v) in walk(a, c, n).into_iter().enumerate() {
                    need[k] += v;
                }
            }
            for (k, &g) in node.guarantee.iter().enumerate() {
                need[k] = need[k].max(g.saturating_sub(d_get(&node.cons_sub, k)));
            }
            need
        }
        let n = self.names.len();
        let mut total = vec![0; n];
        for (r, node) in self.roles.iter().enumerate() {
            if node.parent.is_none() {
                for (k, v) in walk(self, r, n).into_iter().enumerate() {
                    total[k] += v;
                }
            }
        }
        total
    }

    /// How much of unreserved scalar `k` role `r` may get now.
    fn room(&self, r: RoleIdx, k: usize, stage: Stage, deficit: &[u64], cyc: &Cycle) -> u64 {
        let mut room = u64::MAX;
        let mut n = Some(r);
        while let Some(i) = n {
            let node = &self.roles[i];
            if let Some(l) = node.limit_of(k) {
                room = room.min(l.saturating_sub(d_get(&node.cons_sub, k)));
            }
            n = node.parent;
        }
        if self.quota_any {
            let d = d_get(deficit, k);
            let surplus = d_get(&cyc.avail_headroom, k).saturating_sub(d_get(&cyc.required_headroom, k));
            let headroom = match stage {
                Stage::Quota if d > 0 => d,
                Stage::Quota => surplus,
                Stage::Fair => surplus.saturating_add(d),
            };
            room = room.min(headroom);
        }
        room
    }

    /// What agent `a` can offer to role `r` now.
    ///
    /// Unreserved scalars are cut to the role's room (limits, headroom). If the room for a
    /// scalar the agent has free is zero and the offer would hold none of it (not even
    /// reserved), the role gets no unreserved resources from this agent at all: a role at its
    /// cpu limit is not offered memory without cpus, which it could not use and which would
    /// leave the agent's cpus stranded without memory for everyone else.
    fn offerable(&self, agent: &Agent, r: RoleIdx, stage: Stage, deficit: &[u64], cyc: &Cycle) -> Resources {
        let role = &self.roles[r].role;
        let mut out = Vec::with_capacity(agent.unallocated.len());
        let mut no_room: Vec<&ResourceName> = Vec::new();
        for e in &agent.unallocated {
            match &e.reservation {
                Some(rv) => {
                    if rv.role.serves(role) {
                        out.push(e.clone());
                    }
                }
                None => match e.value {
                    Value::Scalar(s) => {
                        let k = self.names.index(&e.name).expect("interned");
                        let take = s.milli().min(self.room(r, k, stage, deficit, cyc));
                        if take > 0 {
                            out.push(Resource::scalar(e.name.clone(), Scalar::from_milli(take)));
                        } else {
                            no_room.push(&e.name);
                        }
                    }
                    _ => out.push(e.clone()),
                },
            }
        }
        if no_room.iter().any(|name| !out.iter().any(|e| &e.name == *name)) {
            out.retain(|e| e.reservation.is_some());
        }
        Resources::from_sorted(out)
    }

    fn build_cycle(&self, now: Millis) -> Cycle {
        let nr = self.roles.len();
        let mut by_rank: Vec<RoleIdx> = (0..nr).collect();
        by_rank.sort_by(|&a, &b| self.roles[a].role.cmp(&self.roles[b].role));
        let mut rank = vec![0u32; nr];
        for (i, &r) in by_rank.iter().enumerate() {
            rank[r] = i as u32;
        }
        let cap = self.config.max_offers_per_framework.unwrap_or(usize::MAX);
        let mut fw_sets = vec![BTreeSet::new(); nr];
        let mut fw_key = HashMap::new();
        let mut eligible_own = vec![0u32; nr];
        let one = Scalar::from_units(1);
        for (&f, fw) in &self.frameworks {
            if fw.offers.len() >= cap {
                continue;
            }
            for &r in &fw.roles {
                if fw.suppressed.contains(&r) {
                    continue;
                }
                let key = share_key(fw.alloc.get(&r).map_or(&[][..], |d| d), &self.cluster_total, one);
                fw_sets[r].insert((key, f));
                fw_key.insert((f, r), key);
                eligible_own[r] += 1;
            }
        }
        let mut eligible_pairs: Vec<(FrameworkId, RoleIdx)> = fw_key.keys().copied().collect();
        eligible_pairs.sort_unstable();
        let mut eligible_sub = vec![0u32; nr];
        for (r, &own) in eligible_own.iter().enumerate() {
            if own > 0 {
                let mut n = Some(r);
                while let Some(i) = n {
                    eligible_sub[i] += own;
                    n = self.roles[i].parent;
                }
            }
        }
        let mut sets = vec![BTreeSet::new(); nr + 1];
        let mut entry_key = vec![0u128; nr];
        let mut self_key = vec![0u128; nr];
        for (r, node) in self.roles.iter().enumerate() {
            self_key[r] = share_key(&node.alloc_own, &self.cluster_total, node.weight);
            sets[r].insert((self_key[r], rank[r]));
            entry_key[r] = share_key(&node.alloc_sub, &self.cluster_total, node.weight);
            sets[node.parent.unwrap_or(nr)].insert((entry_key[r], rank[r]));
        }
        let mut avail_headroom = Vec::new();
        let mut required_headroom = Vec::new();
        let mut guaranteed_path = vec![false; nr];
        if self.quota_any {
            for (r, flag) in guaranteed_path.iter_mut().enumerate() {
                let mut n = Some(r);
                while let Some(i) = n {
                    *flag |= self.roles[i].guarantee.iter().any(|&g| g > 0);
                    n = self.roles[i].parent;
                }
            }
            avail_headroom = vec![0; self.names.len()];
            for agent in self.agents.values().filter(|a| a.mode == AgentMode::Active) {
                for e in agent.unallocated.iter().filter(|e| e.reservation.is_none()) {
                    if let Value::Scalar(s) = e.value {
                        avail_headroom[self.names.index(&e.name).expect("interned")] += s.milli();
                    }
                }
            }
            required_headroom = self.required_headroom();
        }
        Cycle {
            now,
            cap,
            rank,
            by_rank,
            sets,
            entry_key,
            self_key,
            fw_sets,
            fw_key,
            eligible_pairs,
            eligible_own,
            eligible_sub,
            avail_headroom,
            required_headroom,
            guaranteed_path,
            order: Vec::with_capacity(nr),
            merged: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// One allocation cycle at `now`: returns the new offers (each also kept as outstanding
    /// until accepted, declined, rescinded or expired).
    pub fn allocate(&mut self, now: Millis) -> Vec<Offer> {
        self.cycles += 1;
        while let Some(&(t, a, f, r)) = self.filter_expiry.first() {
            if t > now {
                break;
            }
            self.filter_expiry.pop_first();
            // The entry may be stale (filter replaced, revived, or its agent gone).
            if let Some(agent) = self.agents.get_mut(&a) {
                if let Ok(i) = agent.filter_pos(f, r) {
                    if agent.filters[i].expires <= now {
                        agent.filters.remove(i);
                        if let Some(fw) = self.frameworks.get_mut(&f) {
                            fw.filtered.remove(&(a, r));
                        }
                    }
                }
            }
        }
        if self.agent_order_dirty {
            self.agent_order = self.agents.keys().copied().collect();
            self.agent_order_dirty = false;
        }
        let n = self.agent_order.len();
        if n == 0 || self.frameworks.is_empty() {
            return Vec::new();
        }
        let mut cyc = self.build_cycle(now);
        if cyc
            .eligible_sub
            .iter()
            .zip(&self.roles)
            .all(|(&e, node)| node.parent.is_some() || e == 0)
        {
            return Vec::new();
        }
        // A different first agent each cycle, so the same agents do not always go to the same
        // (lowest-share) frameworks first. 7919 is prime: the starts spread over the ring.
        let start = (self.cycles.wrapping_mul(7919) % n as u64) as usize;
        let order = std::mem::take(&mut self.agent_order);
        let rotated = || order[start..].iter().chain(&order[..start]).copied();
        if self.quota_any {
            for a in rotated() {
                self.allocate_agent(&mut cyc, a, Stage::Quota);
            }
        }
        for a in rotated() {
            self.allocate_agent(&mut cyc, a, Stage::Fair);
        }
        self.agent_order = order;
        cyc.out.iter().map(|id| self.offers[id].offer.clone()).collect()
    }

    fn allocate_agent(&mut self, cyc: &mut Cycle, a: AgentId, stage: Stage) {
        let agent = &self.agents[&a];
        if agent.mode != AgentMode::Active || agent.unallocated.is_empty() {
            return;
        }
        if stage == Stage::Quota && cyc.required_headroom.iter().all(|&h| h == 0) {
            return; // every guarantee is met
        }
        if agent.refused_by_all(&cyc.eligible_pairs, cyc.now) {
            return; // e.g. idle frameworks that declined everything for a long time
        }
        let mut order = std::mem::take(&mut cyc.order);
        order.clear();
        cyc.fill_order(cyc.root(), &mut order);
        for &r in &order {
            let deficit = if cyc.guaranteed_path[r] {
                self.effective_deficit(r)
            } else {
                Vec::new()
            };
            if stage == Stage::Quota && deficit.iter().all(|&d| d == 0) {
                continue;
            }
            if cyc.eligible_own[r] == 0 {
                continue; // its last frameworks reached their cap on this agent
            }
            let agent = &self.agents[&a];
            if agent.unallocated.is_empty() {
                break;
            }
            // The first framework (lowest share) that takes it. What to offer is computed only
            // once some framework is not certainly filtered, and then only once per role.
            let mut to_offer: Option<Resources> = None;
            let mut chosen = None;
            for &(_, f) in &cyc.fw_sets[r] {
                if agent.has_gpus && !self.frameworks[&f].caps.gpu_resources {
                    continue;
                }
                let state = agent.filter_state(f, r, cyc.now);
                if matches!(state, FilterState::Sure) {
                    continue;
                }
                let offer = to_offer.get_or_insert_with(|| self.offerable(agent, r, stage, &deficit, cyc));
                if !self.allocatable(offer) {
                    break;
                }
                if let FilterState::Unless(declined) = state {
                    if declined.contains(offer) {
                        continue;
                    }
                }
                chosen = Some(f);
                break;
            }
            if let (Some(f), Some(offer)) = (chosen, to_offer) {
                self.make_offer(cyc, f, r, a, offer);
            }
        }
        cyc.order = order;
    }

    fn make_offer(&mut self, cyc: &mut Cycle, f: FrameworkId, r: RoleIdx, a: AgentId, res: Resources) {
        let agent = self.agents.get_mut(&a).expect("allocating a known agent");
        let taken = agent.unallocated.try_sub_assign(&res);
        debug_assert!(taken, "offerable resources are unallocated");
        if self.quota_any {
            for e in res.iter().filter(|e| e.reservation.is_none()) {
                if let Value::Scalar(s) = e.value {
                    d_apply(
                        &mut cyc.avail_headroom,
                        self.names.index(&e.name).expect("interned"),
                        s.milli(),
                        false,
                    );
                }
            }
        }
        self.charge(f, r, &res, true);
        if let Some(&id) = cyc.merged.get(&(f, r, a)) {
            // The quota stage already offered this framework part of this agent: one offer.
            self.offers
                .get_mut(&id)
                .expect("merged offer is outstanding")
                .offer
                .resources
                .add(&res);
        } else {
            let id = OfferId(self.next_offer);
            self.next_offer += 1;
            let expires = self.config.offer_timeout.map(|t| cyc.now.saturating_add(t));
            if let Some(t) = expires {
                self.offer_expiry.insert((t, id));
            }
            self.agents.get_mut(&a).expect("known").offers.insert(id);
            self.frameworks.get_mut(&f).expect("known").offers.insert(id);
            let role = self.roles[r].role.clone();
            self.offers.insert(
                id,
                OfferEntry {
                    offer: Offer {
                        id,
                        framework: f,
                        role,
                        agent: a,
                        resources: res,
                        created_at: cyc.now,
                    },
                    role: r,
                    expires,
                },
            );
            cyc.merged.insert((f, r, a), id);
            cyc.out.push(id);
        }
        let fw = &self.frameworks[&f];
        cyc.rekey(&self.roles, fw, f, r, &self.cluster_total);
        if cyc.guaranteed_path[r] {
            cyc.required_headroom = self.required_headroom();
        }
        if fw.offers.len() >= cyc.cap {
            let roles = fw.roles.clone();
            cyc.drop_framework(&self.roles, f, &roles);
        }
    }

    // ----- reading -----

    pub fn offer(&self, id: OfferId) -> Option<&Offer> {
        self.offers.get(&id).map(|e| &e.offer)
    }

    /// All outstanding offers, by id.
    pub fn outstanding_offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.values().map(|e| &e.offer)
    }

    /// A framework's outstanding offers.
    pub fn offers_of(&self, framework: FrameworkId) -> Vec<&Offer> {
        self.frameworks
            .get(&framework)
            .map(|fw| fw.offers.iter().filter_map(|id| self.offer(*id)).collect())
            .unwrap_or_default()
    }

    pub fn agent_total(&self, agent: AgentId) -> Option<&Resources> {
        self.agents.get(&agent).map(|a| &a.total)
    }

    pub fn agent_unallocated(&self, agent: AgentId) -> Option<&Resources> {
        self.agents.get(&agent).map(|a| &a.unallocated)
    }

    pub fn agent_attributes(&self, agent: AgentId) -> Option<&Attributes> {
        self.agents.get(&agent).map(|a| &a.attributes)
    }

    pub fn agent_mode(&self, agent: AgentId) -> Option<AgentMode> {
        self.agents.get(&agent).map(|a| a.mode)
    }

    /// What a framework's tasks hold on an agent (all roles), not counting offers.
    pub fn allocated(&self, framework: FrameworkId, agent: AgentId) -> Resources {
        let mut out = Resources::new();
        if let Some(a) = self.agents.get(&agent) {
            for ((f, _), res) in &a.allocated {
                if *f == framework {
                    out.add(res);
                }
            }
        }
        out
    }

    /// Everything a framework's tasks hold, as (agent, role, resources), by agent then role.
    pub fn allocations_of(&self, framework: FrameworkId) -> Vec<(AgentId, Role, Resources)> {
        let Some(fw) = self.frameworks.get(&framework) else {
            return Vec::new();
        };
        fw.holdings
            .iter()
            .map(|&(a, r)| {
                (
                    a,
                    self.roles[r].role.clone(),
                    self.agents[&a].allocated[&(framework, r)].clone(),
                )
            })
            .collect()
    }

    /// Known agents, by id.
    pub fn agent_ids(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.agents.keys().copied()
    }

    /// Known frameworks, by id.
    pub fn framework_ids(&self) -> impl Iterator<Item = FrameworkId> + '_ {
        self.frameworks.keys().copied()
    }

    fn dense_to_quantities(&self, d: &[u64]) -> Quantities {
        let mut q = Quantities::new();
        for (k, &v) in d.iter().enumerate() {
            if v > 0 {
                q.set(self.names.list[k].clone(), Scalar::from_milli(v));
            }
        }
        q
    }

    /// What counts against a role's quota: its subtree's reservations and unreserved resources
    /// offered or allocated to it.
    pub fn role_consumption(&self, role: &Role) -> Quantities {
        self.role_idx(role)
            .map(|r| self.dense_to_quantities(&self.roles[r].cons_sub))
            .unwrap_or_default()
    }

    /// What a role's subtree is offered or allocated (what its fair share is computed from).
    pub fn role_allocation(&self, role: &Role) -> Quantities {
        self.role_idx(role)
            .map(|r| self.dense_to_quantities(&self.roles[r].alloc_sub))
            .unwrap_or_default()
    }

    /// What a framework is offered or allocated in a role.
    pub fn framework_allocation(&self, framework: FrameworkId, role: &Role) -> Quantities {
        let (Some(fw), Some(r)) = (self.frameworks.get(&framework), self.role_idx(role)) else {
            return Quantities::new();
        };
        fw.alloc
            .get(&r)
            .map(|d| self.dense_to_quantities(d))
            .unwrap_or_default()
    }

    /// A role's weighted dominant share (0..=1 divided by weight), for metrics and tests.
    pub fn role_share(&self, role: &Role) -> f64 {
        self.role_idx(role)
            .map(|r| {
                share_key(&self.roles[r].alloc_sub, &self.cluster_total, self.roles[r].weight) as f64
                    / (1u128 << SHARE_SHIFT) as f64
            })
            .unwrap_or(0.0)
    }

    pub fn quota(&self, role: &Role) -> Option<&Quota> {
        self.role_idx(role).map(|r| &self.roles[r].quota)
    }

    /// Scalars of all agents.
    pub fn cluster_total(&self) -> Quantities {
        self.dense_to_quantities(&self.cluster_total)
    }
}

fn swap_in_total(total: &mut Resources, out: &Resources, into: &Resources) {
    let ok = total.try_sub_assign(out);
    debug_assert!(ok, "swapped resources are part of the total");
    total.add(into);
}
