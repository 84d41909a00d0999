//! The leader's scheduling core: the allocator plus what it needs to talk to frameworks. No I/O:
//! events go into subscribers' channels, and what must be committed comes back to the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tepui_allocator::{
    AgentId, AgentMode, Allocator, Capabilities, Config, Filters, FrameworkId, Millis, OfferId, Quantities, Quota,
    Resources, Role, Scalar,
};
use tepui_state::{FrameworkRecord, Maintenance, NodeStatus, RoleConfig, State, TaskRecord, TaskState};
use tokio::sync::mpsc;

use super::convert;
use tepui_node::{Error, ErrorKind};

use super::{
    invalid, not_subscribed, refused, status_of, LaunchSpec, OfferView, Operation, SchedulerEvent, StatusView,
};

mod executors;
mod groups;

/// Tasks run through `/v1/tasks` belong to this framework (id `""`), in role `*`; it never
/// takes offers.
const OPERATOR: FrameworkId = FrameworkId(0);

struct Subscriber {
    stream_id: String,
    tx: mpsc::Sender<SchedulerEvent>,
}

/// Resources a task holds in the allocator. `pending` until its `CreateTask` is committed.
struct Held {
    framework: FrameworkId,
    agent: u64,
    role: Role,
    resources: Resources,
    /// When its `CreateTask` was sent, until the state shows it committed.
    pending: Option<Millis>,
}

/// A launch whose commit the state does not show after this long was lost (its request was
/// cancelled, or the write failed unseen): its resources are free again.
const PENDING_TIMEOUT: Millis = 30_000;

struct AgentSeen {
    total: Resources,
    mode: AgentMode,
    hostname: String,
}

/// What an ACCEPT turned into: tasks to commit and launch, reservations to record.
#[derive(Default)]
pub(crate) struct AcceptPlan {
    pub launches: Vec<TaskRecord>,
    /// The launches an executor runs, by task id: the executor and the task's `TaskInfo`.
    pub executors: HashMap<String, (tepui_state::ExecutorRecord, serde_json::Value)>,
    pub reservations: Vec<(u64, String)>,
    /// Task groups: the ids of each group's tasks (in `launches`), committed in one command.
    pub groups: Vec<Vec<String>>,
}

/// What an ACCEPT may still take from one of its offers.
struct Pool {
    offer: OfferId,
    role: Role,
    remaining: Resources,
    taken: Resources,
    /// Resources a RESERVE or UNRESERVE of this ACCEPT turned into another form, for its
    /// launches only.
    converted: Resources,
}

impl Pool {
    /// Takes `need` from the first pool that holds it; the role it was taken in.
    fn take(pools: &mut [Pool], need: &Resources) -> Option<Role> {
        pools.iter_mut().find_map(|p| {
            if p.remaining.contains(need) {
                p.remaining.try_sub_assign(need);
                p.taken.add(need);
                Some(p.role.clone())
            } else if p.converted.contains(need) {
                p.converted.try_sub_assign(need);
                Some(p.role.clone())
            } else {
                None
            }
        })
    }

    /// What the pools still hold.
    fn left(pools: &[Pool]) -> Resources {
        let mut left = Resources::new();
        for p in pools {
            left.add(&p.remaining);
            left.add(&p.converted);
        }
        left
    }
}

/// What a tick leaves for the caller to commit.
#[derive(Default)]
pub(crate) struct TickOut {
    pub disconnected: Vec<(String, Millis)>,
    pub timed_out: Vec<String>,
}

/// A read-only picture of the allocator for operator endpoints.
#[derive(Clone, Debug, Default)]
pub struct AllocationView {
    pub agents: BTreeMap<u64, AgentAllocation>,
    pub frameworks: BTreeMap<String, FrameworkAllocation>,
    pub roles: BTreeMap<String, RoleAllocation>,
    pub cluster_total: Quantities,
}

#[derive(Clone, Debug, Default)]
pub struct AgentAllocation {
    pub total: Resources,
    pub unallocated: Resources,
    pub offered: Resources,
    /// Held by tasks (allocated, not offered).
    pub used: Resources,
}

#[derive(Clone, Debug, Default)]
pub struct FrameworkAllocation {
    pub subscribed: bool,
    pub used: Resources,
    pub offered: Resources,
    pub offers: Vec<OfferView>,
}

#[derive(Clone, Debug, Default)]
pub struct RoleAllocation {
    pub weight: f64,
    pub allocated: Quantities,
    pub consumed: Quantities,
    pub share: f64,
    pub guarantees: Quantities,
    pub limits: Quantities,
    pub frameworks: Vec<String>,
}

pub(crate) struct Core {
    /// Prefix of every offer id made in this term, so an old leader's offers are never taken
    /// for this one's.
    epoch: String,
    leading_since: Millis,
    alloc: Allocator,
    ids: HashMap<String, FrameworkId>,
    names: HashMap<FrameworkId, String>,
    roles_of: HashMap<FrameworkId, Vec<Role>>,
    next_framework: u64,
    subscribers: HashMap<String, Subscriber>,
    held: HashMap<String, Held>,
    agents: HashMap<u64, AgentSeen>,
    role_configs: BTreeMap<String, RoleConfig>,
    /// When an update needing an acknowledgement was last sent, by task.
    sent_at: HashMap<String, Millis>,
    last_heartbeat: Millis,
    removing: HashSet<String>,
    /// When a framework's subscription to this leader ended; its failover timeout runs from
    /// there even before the state says it is disconnected.
    left_at: HashMap<String, Millis>,
}

fn role_of(name: &str) -> Role {
    if name.is_empty() {
        Role::default_role()
    } else {
        Role::new(name).unwrap_or_else(|_| Role::default_role())
    }
}

impl Core {
    pub(crate) fn new(now: Millis, s: &State) -> Core {
        let mut alloc = Allocator::new(Config::default());
        alloc
            .add_framework(OPERATOR, &[Role::default_role()], Capabilities::default())
            .expect("a fresh allocator");
        alloc.suppress(OPERATOR, &[]).expect("registered above");
        let mut core = Core {
            epoch: hex::encode(rand::random::<[u8; 4]>()),
            leading_since: now,
            alloc,
            ids: HashMap::from([(String::new(), OPERATOR)]),
            names: HashMap::from([(OPERATOR, String::new())]),
            roles_of: HashMap::from([(OPERATOR, vec![Role::default_role()])]),
            next_framework: 1,
            subscribers: HashMap::new(),
            held: HashMap::new(),
            agents: HashMap::new(),
            role_configs: BTreeMap::new(),
            sent_at: HashMap::new(),
            last_heartbeat: now,
            removing: HashSet::new(),
            left_at: HashMap::new(),
        };
        core.sync(s);
        core
    }

    fn offer_name(&self, id: OfferId) -> String {
        format!("{}-O{}", self.epoch, id.0)
    }

    fn offer_id(&self, name: &str) -> Option<OfferId> {
        let n = name.strip_prefix(&self.epoch)?.strip_prefix("-O")?;
        n.parse().ok().map(OfferId)
    }

    fn send(&mut self, framework: FrameworkId, event: SchedulerEvent) {
        let Some(name) = self.names.get(&framework) else { return };
        if let Some(sub) = self.subscribers.get(name) {
            // A subscriber this far behind is cut off; the next tick treats it as disconnected.
            let _ = sub.tx.try_send(event);
        }
    }

    pub(crate) fn send_status(&mut self, framework: &str, status: StatusView) {
        if let Some(sub) = self.subscribers.get(framework) {
            if status.uuid.is_some() {
                self.sent_at.insert(status.task_id.clone(), crate::now_ms());
            }
            let _ = sub.tx.try_send(SchedulerEvent::Update(status));
        }
    }

    /// Ends the outstanding offers on an agent (their frameworks hear RESCIND).
    fn rescind_on(&mut self, agent: u64) {
        let ids: Vec<OfferId> = self
            .alloc
            .outstanding_offers()
            .filter(|o| o.agent == AgentId(agent))
            .map(|o| o.id)
            .collect();
        for id in ids {
            self.rescind(id);
        }
    }

    fn rescind(&mut self, id: OfferId) {
        if let Ok(offer) = self.alloc.rescind(id) {
            let offer_id = self.offer_name(id);
            self.send(offer.framework, SchedulerEvent::Rescind { offer_id });
        }
    }

    fn register(&mut self, f: &FrameworkRecord) -> FrameworkId {
        if let Some(&id) = self.ids.get(&f.id) {
            return id;
        }
        let id = FrameworkId(self.next_framework);
        self.next_framework += 1;
        let mut roles: Vec<Role> = f.roles.iter().map(|r| role_of(r)).collect();
        roles.sort();
        roles.dedup();
        let caps = Capabilities {
            gpu_resources: f.has_capability("GPU_RESOURCES"),
        };
        if let Err(e) = self.alloc.add_framework(id, &roles, caps) {
            tracing::warn!(framework = %f.id, error = %e, "allocator refused a framework");
        }
        // No offers until it subscribes to this leader.
        let _ = self.alloc.suppress(id, &[]);
        self.ids.insert(f.id.clone(), id);
        self.names.insert(id, f.id.clone());
        self.roles_of.insert(id, roles);
        id
    }

    pub(crate) fn forget_framework(&mut self, name: &str) {
        let Some(id) = self.ids.remove(name) else { return };
        self.names.remove(&id);
        self.roles_of.remove(&id);
        self.subscribers.remove(name);
        self.removing.remove(name);
        self.left_at.remove(name);
        let _ = self.alloc.remove_framework(id);
        // Its tasks are being killed; until they end, the next sync holds their resources
        // under the operator.
        self.held.retain(|_, h| h.framework != id);
    }

    /// Brings the allocator in line with the replicated state: agents and their modes, roles'
    /// weights and quota, frameworks, and the resources tasks hold.
    pub(crate) fn sync(&mut self, s: &State) {
        self.sync_roles(s);
        self.sync_agents(s);
        for f in s.frameworks.values() {
            self.register(f);
        }
        let gone: Vec<String> = self
            .ids
            .keys()
            .filter(|k| !k.is_empty() && !s.frameworks.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            self.forget_framework(&name);
        }
        self.sync_tasks(s);
    }

    fn sync_roles(&mut self, s: &State) {
        if self.role_configs == s.roles {
            return;
        }
        let names: BTreeSet<String> = self.role_configs.keys().chain(s.roles.keys()).cloned().collect();
        for name in names {
            let want = s.roles.get(&name).cloned().unwrap_or_default();
            if self.role_configs.get(&name).cloned().unwrap_or_default() == want {
                continue;
            }
            let Ok(role) = Role::new(&name) else { continue };
            if let Err(e) = self
                .alloc
                .set_weight(&role, Scalar::from_milli(want.weight_milli.max(1)))
            {
                tracing::warn!(role = %name, error = %e, "could not apply a role's weight");
            }
            let quota = Quota {
                guarantees: Quantities::parse(&want.quota_guarantees).unwrap_or_default(),
                limits: Quantities::parse(&want.quota_limits).unwrap_or_default(),
            };
            if let Err(e) = self.alloc.set_quota(&role, quota, true) {
                tracing::warn!(role = %name, error = %e, "could not apply a role's quota");
            }
        }
        self.role_configs = s.roles.clone();
    }

    fn sync_agents(&mut self, s: &State) {
        let mut present = HashSet::new();
        for n in s.nodes.values() {
            let Some(info) = &n.agent else { continue };
            present.insert(n.id);
            let total = convert::agent_total(info, s.reservations.get(&n.id).map(String::as_str));
            let mode = match (n.status, n.maintenance) {
                (NodeStatus::Ready, Maintenance::Active) => AgentMode::Active,
                (_, Maintenance::Draining) => AgentMode::Draining,
                _ => AgentMode::Deactivated,
            };
            let changed_total = self.agents.get(&n.id).map(|a| a.total != total);
            if changed_total == Some(true) {
                // Re-registered with other resources: start the agent over; its tasks' holdings
                // are added again below.
                self.rescind_on(n.id);
                let _ = self.alloc.remove_agent(AgentId(n.id));
                self.agents.remove(&n.id);
                // Every holding on it, pending ones too: the next sync takes them from the
                // state again, committed launches included.
                self.held.retain(|_, h| h.agent != n.id);
            }
            if !self.agents.contains_key(&n.id) {
                if let Err(e) = self
                    .alloc
                    .add_agent(AgentId(n.id), total.clone(), convert::attributes(info))
                {
                    tracing::warn!(agent = n.id, error = %e, "allocator refused an agent");
                    continue;
                }
                self.agents.insert(
                    n.id,
                    AgentSeen {
                        total,
                        mode: AgentMode::Active,
                        hostname: n.name.clone(),
                    },
                );
            }
            if self.agents[&n.id].mode != mode {
                if mode != AgentMode::Active {
                    // Rescinded here so that their frameworks hear of it.
                    self.rescind_on(n.id);
                }
                let _ = self.alloc.update_agent_state(AgentId(n.id), mode);
                self.agents.get_mut(&n.id).expect("inserted above").mode = mode;
            }
        }
        let removed: Vec<u64> = self.agents.keys().filter(|id| !present.contains(id)).copied().collect();
        for id in removed {
            self.rescind_on(id);
            let _ = self.alloc.remove_agent(AgentId(id));
            self.agents.remove(&id);
            self.held.retain(|_, h| h.agent != id);
            let subs: Vec<FrameworkId> = self
                .subscribers
                .keys()
                .filter_map(|n| self.ids.get(n).copied())
                .collect();
            for fw in subs {
                self.send(fw, SchedulerEvent::AgentFailure { agent_id: id });
            }
        }
    }

    fn sync_tasks(&mut self, s: &State) {
        // Live tasks whose holding is settled: when every settled holding is one of them,
        // none ended, and the search for ended ones (a lookup in the state per holding, on
        // every tick) is skipped.
        let mut live_settled = self.sync_executors(s);
        for t in s.tasks.values() {
            if t.state.is_terminal() {
                continue;
            }
            if let Some(h) = self.held.get(&t.id) {
                live_settled += usize::from(h.pending.is_none());
                continue;
            }
            // A removed framework's tasks (being killed) are held by the operator until they end.
            let (framework, role) = match self.ids.get(&t.framework_id) {
                Some(&f) => (f, role_of(&t.role)),
                None => (OPERATOR, Role::default_role()),
            };
            let resources = convert::task_resources(t);
            let agent = AgentId(t.agent_id);
            if !self.agents.contains_key(&t.agent_id) {
                continue;
            }
            if self.alloc.add_used(framework, agent, &role, &resources).is_err() {
                // The resources may sit in an outstanding offer: take them back and retry.
                self.rescind_on(t.agent_id);
                if let Err(e) = self.alloc.add_used(framework, agent, &role, &resources) {
                    tracing::warn!(task = %t.id, agent = t.agent_id, error = %e, "a task's resources are not free in the allocator");
                    continue;
                }
            }
            self.held.insert(
                t.id.clone(),
                Held {
                    framework,
                    agent: t.agent_id,
                    role,
                    resources,
                    pending: None,
                },
            );
            live_settled += 1;
        }
        if self.held.values().filter(|h| h.pending.is_none()).count() == live_settled {
            return;
        }
        let ended: Vec<String> = self
            .held
            .iter()
            .filter(|(id, h)| {
                h.pending.is_none()
                    && !executors::is_executor_key(id)
                    && s.tasks.get(*id).is_none_or(|t| t.state.is_terminal())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            let h = self.held.remove(&id).expect("listed above");
            if let Err(e) = self.alloc.recover(h.framework, AgentId(h.agent), &h.role, &h.resources) {
                tracing::debug!(task = %id, error = %e, "nothing to recover for an ended task");
            }
        }
    }

    /// The operator's `/v1/tasks` takes resources directly: they must be unallocated (an
    /// outstanding offer holding them is rescinded first). Returns whether it got them.
    pub(crate) fn take_for_operator(&mut self, task_id: &str, agent: u64, resources: &Resources, now: Millis) -> bool {
        self.take_direct(OPERATOR, Role::default_role(), task_id, agent, resources, now)
    }

    /// A built-in framework that places its own tasks (the jobs scheduler) takes resources
    /// directly, as the operator does, but under its own id and in `role` (`*` when empty), so
    /// that they count in that role's share and consumption. `Ok(false)`: they are not free.
    pub(crate) fn take_for_framework(
        &mut self,
        framework: &str,
        role: &str,
        task_id: &str,
        agent: u64,
        resources: &Resources,
        now: Millis,
    ) -> Result<bool, Error> {
        let id = *self.ids.get(framework).ok_or_else(|| not_subscribed(framework))?;
        let role = role_of(role);
        if !self.roles_of.get(&id).is_some_and(|roles| roles.contains(&role)) {
            return Err(invalid(format!(
                "framework {framework} is not subscribed to role {role}"
            )));
        }
        Ok(self.take_direct(id, role, task_id, agent, resources, now))
    }

    fn take_direct(
        &mut self,
        framework: FrameworkId,
        role: Role,
        task_id: &str,
        agent: u64,
        resources: &Resources,
        now: Millis,
    ) -> bool {
        if self
            .alloc
            .add_used(framework, AgentId(agent), &role, resources)
            .is_err()
        {
            self.rescind_on(agent);
            if self
                .alloc
                .add_used(framework, AgentId(agent), &role, resources)
                .is_err()
            {
                return false;
            }
        }
        self.held.insert(
            task_id.to_string(),
            Held {
                framework,
                agent,
                role,
                resources: resources.clone(),
                pending: Some(now),
            },
        );
        true
    }

    /// Pending launches the state shows committed are settled; those it never shows, after a
    /// while, give their resources back (their commit was lost with a cancelled request).
    fn settle_pending(&mut self, s: &State, now: Millis) {
        let mut lost = vec![];
        for (id, h) in self.held.iter_mut() {
            let Some(since) = h.pending else { continue };
            if s.tasks.contains_key(id) || s.executors.get(id).is_some_and(|e| e.live()) {
                h.pending = None;
            } else if now.saturating_sub(since) > PENDING_TIMEOUT {
                lost.push(id.clone());
            }
        }
        for id in lost {
            tracing::warn!(task = %id, "a launch was never committed; its resources are free again");
            self.launch_failed(&id);
        }
    }

    /// The task's `CreateTask` is committed.
    pub(crate) fn launched(&mut self, task_id: &str) {
        if let Some(h) = self.held.get_mut(task_id) {
            h.pending = None;
        }
    }

    /// The task's `CreateTask` was refused: its resources are free again.
    pub(crate) fn launch_failed(&mut self, task_id: &str) {
        if let Some(h) = self.held.remove(task_id) {
            let _ = self.alloc.recover(h.framework, AgentId(h.agent), &h.role, &h.resources);
        }
    }

    fn framework_id(&self, name: &str) -> Result<FrameworkId, Error> {
        if !self.subscribers.contains_key(name) {
            return Err(not_subscribed(name));
        }
        self.ids.get(name).copied().ok_or_else(|| not_subscribed(name))
    }

    pub(crate) fn check_stream(&self, framework: &str, stream_id: &str) -> Result<(), Error> {
        match self.subscribers.get(framework) {
            None => Err(not_subscribed(framework)),
            Some(s) if s.stream_id != stream_id => Err(Error::new(
                ErrorKind::BadRequest,
                "wrong_stream",
                format!("the stream id {stream_id:?} is not framework {framework}'s current subscription"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Records a new subscription; returns the previous one's channel, which gets an ERROR.
    pub(crate) fn subscribe(
        &mut self,
        f: &FrameworkRecord,
        suppressed: &[String],
        stream_id: String,
        tx: mpsc::Sender<SchedulerEvent>,
    ) -> Result<Option<mpsc::Sender<SchedulerEvent>>, Error> {
        let id = self.register(f);
        // Offers made to an earlier connection are void.
        let stale: Vec<OfferId> = self.alloc.offers_of(id).iter().map(|o| o.id).collect();
        for o in stale {
            let _ = self.alloc.rescind(o);
        }
        let old = self
            .subscribers
            .insert(f.id.clone(), Subscriber { stream_id, tx })
            .map(|s| s.tx);
        let suppressed: Vec<Role> = suppressed.iter().map(|r| role_of(r)).collect();
        let active: Vec<Role> = self
            .roles_of
            .get(&id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !suppressed.contains(r))
            .collect();
        if !active.is_empty() {
            self.alloc.revive(id, &active).map_err(|e| invalid(e.to_string()))?;
        }
        self.removing.remove(&f.id);
        self.left_at.remove(&f.id);
        Ok(old)
    }

    pub(crate) fn accept(
        &mut self,
        s: &State,
        framework: &str,
        offer_names: &[String],
        operations: Vec<Operation>,
        filters: Filters,
        now: Millis,
    ) -> Result<AcceptPlan, Error> {
        let fid = self.framework_id(framework)?;
        let partition_aware = s.frameworks.get(framework).is_some_and(|f| f.partition_aware());
        let dropped = if partition_aware {
            TaskState::TaskDropped
        } else {
            TaskState::TaskLost
        };
        let launches: Vec<&LaunchSpec> = operations
            .iter()
            .flat_map(|op| match op {
                Operation::Launch(l) => l.iter().collect(),
                Operation::LaunchGroup { tasks, .. } => tasks.iter().collect(),
                _ => vec![],
            })
            .collect();

        // The offers must all be outstanding, this framework's, and on one agent.
        let mut offers = Vec::new();
        let mut invalid = None;
        if offer_names.is_empty() {
            invalid = Some("the ACCEPT names no offer".to_string());
        }
        for name in offer_names {
            let found = self
                .offer_id(name)
                .and_then(|id| self.alloc.offer(id))
                .filter(|o| o.framework == fid)
                .cloned();
            match found {
                Some(o) if !offers.iter().any(|p: &tepui_allocator::Offer| p.id == o.id) => offers.push(o),
                Some(_) => invalid = Some(format!("offer {name} appears twice")),
                None => {
                    invalid = Some(format!(
                        "offer {name} is no longer valid: it was accepted, declined or rescinded already, \
                         or made by an earlier leader"
                    ))
                }
            }
        }
        if offers.windows(2).any(|w| w[0].agent != w[1].agent) {
            invalid = Some("the offers are on different agents".to_string());
        }
        if let Some(message) = invalid {
            for o in &offers {
                let _ = self.alloc.rescind(o.id);
            }
            for l in launches {
                let status = refused(
                    &l.task_id,
                    l.agent_id,
                    dropped,
                    "REASON_INVALID_OFFERS",
                    message.clone(),
                );
                self.send_status(framework, status);
            }
            return Ok(AcceptPlan::default());
        }

        let agent = offers[0].agent;
        let mut pools: Vec<Pool> = offers
            .iter()
            .map(|o| Pool {
                offer: o.id,
                role: o.role.clone(),
                remaining: o.resources.clone(),
                taken: Resources::new(),
                converted: Resources::new(),
            })
            .collect();
        let mut plan = AcceptPlan::default();
        let mut reserves: Vec<(Role, Resources)> = Vec::new();
        let mut unreserves: Vec<(Role, Resources)> = Vec::new();
        let mut planned: HashSet<String> = HashSet::new();
        let mut planned_executors: HashMap<String, serde_json::Value> = HashMap::new();
        let task_error = |core: &mut Core, l: &LaunchSpec, message: String| {
            let status = refused(
                &l.task_id,
                l.agent_id,
                TaskState::TaskError,
                "REASON_TASK_INVALID",
                message,
            );
            core.send_status(framework, status);
        };
        for op in operations {
            match op {
                Operation::Reserve(res) => {
                    let roles: BTreeSet<Role> = res
                        .iter()
                        .filter_map(|e| e.reservation.as_ref().map(|r| r.role.clone()))
                        .collect();
                    let unreserved = res.strip_reservations();
                    let pool = pools
                        .iter_mut()
                        .find(|p| roles.len() == 1 && roles.contains(&p.role) && p.remaining.contains(&unreserved));
                    match pool {
                        Some(p) => {
                            p.remaining.try_sub_assign(&unreserved);
                            p.taken.add(&unreserved);
                            p.converted.add(&res);
                            reserves.push((p.role.clone(), unreserved));
                        }
                        None => {
                            tracing::warn!(framework, %res, "RESERVE refused: the offers do not hold these unreserved resources for that role")
                        }
                    }
                }
                Operation::Unreserve(res) => match pools.iter_mut().find(|p| p.remaining.contains(&res)) {
                    Some(p) => {
                        p.remaining.try_sub_assign(&res);
                        p.taken.add(&res);
                        p.converted.add(&res.strip_reservations());
                        unreserves.push((p.role.clone(), res));
                    }
                    None => {
                        tracing::warn!(framework, %res, "UNRESERVE refused: the offers do not hold these reserved resources")
                    }
                },
                Operation::LaunchGroup { executor, tasks } => {
                    let at = groups::Placing {
                        state: s,
                        framework,
                        fid,
                        agent: agent.0,
                        now,
                    };
                    let mut planning = groups::Planning {
                        pools: &mut pools,
                        planned: &mut planned,
                        planned_executors: &mut planned_executors,
                        plan: &mut plan,
                    };
                    self.plan_group(&at, &executor, tasks, &mut planning);
                }
                Operation::Launch(specs) => {
                    for l in specs {
                        if let Some(why) = l.invalid.clone().or_else(|| launch_error(&l)) {
                            task_error(self, &l, why);
                            continue;
                        }
                        if l.agent_id != Some(agent.0) {
                            let named = l.agent_id.map(|a| a.to_string()).unwrap_or_default();
                            task_error(
                                self,
                                &l,
                                format!("the task names agent {named:?}, the offer is on agent {agent}"),
                            );
                            continue;
                        }
                        if s.tasks.contains_key(&l.task_id) || planned.contains(&l.task_id) {
                            task_error(self, &l, format!("task id {:?} is already in use", l.task_id));
                            continue;
                        }
                        if l.resources.is_empty() && l.executor.is_none() {
                            task_error(self, &l, "the task uses no resources; it needs cpus or mem".into());
                            continue;
                        }
                        // A new executor takes its resources from the offer with its first task.
                        let executor_need = match &l.executor {
                            None => None,
                            Some(x) => match self.executor_need(s, &planned_executors, framework, agent.0, x) {
                                Ok(need) => Some(need),
                                Err(why) => {
                                    task_error(self, &l, why);
                                    continue;
                                }
                            },
                        };
                        let mut need = l.resources.clone();
                        if let (Some(executors::ExecutorNeed::New(_)), Some(x)) = (&executor_need, &l.executor) {
                            need.add(&x.resources);
                        }
                        if need.is_empty() {
                            task_error(self, &l, "the task and its executor use no resources".into());
                            continue;
                        }
                        let Some(role) = Pool::take(&mut pools, &need) else {
                            let left = Pool::left(&pools);
                            let message = if l.executor.is_some() {
                                // Mesos' words.
                                format!("Total resources {need} required by task and its executor is more than available {left}")
                            } else {
                                format!("the task needs {need} but the offers hold only {left}")
                            };
                            task_error(self, &l, message);
                            continue;
                        };
                        if let Some(x) = &l.executor {
                            let record = executors::executor_record(x, agent.0, framework, &role, now);
                            if let Some(executors::ExecutorNeed::New(key)) = executor_need {
                                self.hold_executor(key.clone(), fid, agent.0, role.clone(), x.resources.clone(), now);
                                planned_executors.insert(key, x.info.clone());
                            }
                            plan.executors.insert(l.task_id.clone(), (record, x.task_info.clone()));
                        }
                        planned.insert(l.task_id.clone());
                        self.held.insert(
                            l.task_id.clone(),
                            Held {
                                framework: fid,
                                agent: agent.0,
                                role: role.clone(),
                                resources: l.resources.clone(),
                                pending: Some(now),
                            },
                        );
                        plan.launches.push(task_record(&l, agent.0, framework, &role, now));
                    }
                }
            }
        }
        for p in &pools {
            if let Err(e) = self.alloc.accept(p.offer, &p.taken, filters, now) {
                tracing::warn!(framework, error = %e, "allocator refused an accept it was checked for");
            }
        }
        for (role, unreserved) in &reserves {
            if let Err(e) = self.alloc.reserve(agent, role, unreserved, Some(fid)) {
                tracing::warn!(framework, error = %e, "reservation refused");
            }
        }
        for (role, reserved) in &unreserves {
            if let Err(e) = self.alloc.unreserve(agent, reserved, Some((fid, role.clone()))) {
                tracing::warn!(framework, error = %e, "unreservation refused");
            }
        }
        for p in &pools {
            if !p.converted.is_empty() {
                let _ = self.alloc.recover(fid, agent, &p.role, &p.converted);
            }
        }
        if !reserves.is_empty() || !unreserves.is_empty() {
            if let Some(total) = self.alloc.agent_total(agent).cloned() {
                plan.reservations
                    .push((agent.0, convert::text(&convert::dynamic_part(&total))));
                if let Some(seen) = self.agents.get_mut(&agent.0) {
                    seen.total = total;
                }
            }
        }
        Ok(plan)
    }

    pub(crate) fn decline(
        &mut self,
        framework: &str,
        offer_names: &[String],
        filters: Filters,
        now: Millis,
    ) -> Result<(), Error> {
        let fid = self.framework_id(framework)?;
        for name in offer_names {
            let id = self
                .offer_id(name)
                .filter(|id| self.alloc.offer(*id).is_some_and(|o| o.framework == fid));
            // Declining an offer that is already gone is harmless, as in Mesos.
            if let Some(id) = id {
                let _ = self.alloc.decline(id, filters, now);
            }
        }
        Ok(())
    }

    fn roles_for(&self, fid: FrameworkId, names: &[String]) -> Result<Vec<Role>, Error> {
        let mine = self.roles_of.get(&fid).cloned().unwrap_or_default();
        if names.is_empty() {
            return Ok(mine);
        }
        names
            .iter()
            .map(|n| {
                let r = Role::new(n).map_err(|e| invalid(e.to_string()))?;
                if mine.contains(&r) {
                    Ok(r)
                } else {
                    Err(invalid(format!("the framework is not subscribed to role {n:?}")))
                }
            })
            .collect()
    }

    pub(crate) fn revive(&mut self, framework: &str, roles: &[String]) -> Result<(), Error> {
        let fid = self.framework_id(framework)?;
        let roles = self.roles_for(fid, roles)?;
        self.alloc.revive(fid, &roles).map_err(|e| invalid(e.to_string()))
    }

    pub(crate) fn suppress(&mut self, framework: &str, roles: &[String]) -> Result<(), Error> {
        let fid = self.framework_id(framework)?;
        let roles = self.roles_for(fid, roles)?;
        self.alloc.suppress(fid, &roles).map_err(|e| invalid(e.to_string()))
    }

    pub(crate) fn reconcile(&mut self, s: &State, framework: &str, task_ids: &[String]) -> Result<(), Error> {
        self.framework_id(framework)?;
        let Some(f) = s.frameworks.get(framework) else {
            return Err(not_subscribed(framework));
        };
        let mut answers = Vec::new();
        if task_ids.is_empty() {
            for t in s
                .tasks
                .values()
                .filter(|t| t.framework_id == framework && !t.state.is_terminal())
            {
                answers.push(reconciled(status_of(t, f)));
            }
        } else {
            for id in task_ids {
                match s.tasks.get(id).filter(|t| t.framework_id == framework) {
                    Some(t) => answers.push(reconciled(status_of(t, f))),
                    None => {
                        let state = if f.partition_aware() {
                            TaskState::TaskUnknown
                        } else {
                            TaskState::TaskLost
                        };
                        let message = "the cluster knows no such task of this framework".to_string();
                        answers.push(refused(id, None, state, "REASON_RECONCILIATION", message));
                    }
                }
            }
        }
        for a in answers {
            self.send_status(framework, a);
        }
        Ok(())
    }

    /// The leader's work at `now`: disconnected subscribers, expired offers, an allocation,
    /// heartbeats, resends and failover timeouts. See [`Core::next_deadline`] for when it is
    /// due again.
    pub(crate) fn tick(
        &mut self,
        s: &State,
        now: Millis,
        heartbeat: std::time::Duration,
        retry: std::time::Duration,
        grace: std::time::Duration,
    ) -> TickOut {
        self.sync(s);
        self.settle_pending(s, now);
        let mut out = TickOut::default();

        let closed: Vec<String> = self
            .subscribers
            .iter()
            .filter(|(_, sub)| sub.tx.is_closed() || sub.tx.capacity() == 0)
            .map(|(name, _)| name.clone())
            .collect();
        for name in closed {
            self.subscribers.remove(&name);
            if let Some(&fid) = self.ids.get(&name) {
                let offers: Vec<OfferId> = self.alloc.offers_of(fid).iter().map(|o| o.id).collect();
                for o in offers {
                    let _ = self.alloc.rescind(o);
                }
                let _ = self.alloc.suppress(fid, &[]);
            }
            self.left_at.insert(name.clone(), now);
            out.disconnected.push((name, now));
        }

        for id in self.alloc.expired_offers(now) {
            tracing::debug!(offer = id.0, "offer timed out");
        }

        {
            let offers = self.alloc.allocate(now);
            let mut by_framework: BTreeMap<FrameworkId, Vec<OfferView>> = BTreeMap::new();
            for o in offers {
                let Some(name) = self.names.get(&o.framework).cloned() else {
                    continue;
                };
                if !self.subscribers.contains_key(&name) {
                    let _ = self.alloc.rescind(o.id);
                    continue;
                }
                let view = OfferView {
                    id: self.offer_name(o.id),
                    framework_id: name,
                    agent_id: o.agent.0,
                    hostname: self
                        .agents
                        .get(&o.agent.0)
                        .map(|a| a.hostname.clone())
                        .unwrap_or_default(),
                    role: o.role.clone(),
                    resources: o.resources.clone(),
                    attributes: self.alloc.agent_attributes(o.agent).cloned().unwrap_or_default(),
                };
                by_framework.entry(o.framework).or_default().push(view);
            }
            for (fw, views) in by_framework {
                tracing::debug!(framework = fw.0, offers = views.len(), "offers made");
                self.send(fw, SchedulerEvent::Offers(views));
            }
        }

        if now.saturating_sub(self.last_heartbeat) >= heartbeat.as_millis() as u64 {
            self.last_heartbeat = now;
            for sub in self.subscribers.values() {
                let _ = sub.tx.try_send(SchedulerEvent::Heartbeat);
            }
        }

        let retry_ms = retry.as_millis() as u64;
        let names: Vec<String> = self.subscribers.keys().cloned().collect();
        for name in names {
            let Some(f) = s.frameworks.get(&name) else { continue };
            let due: Vec<StatusView> = s
                .unacknowledged(&name)
                .filter(|t| now.saturating_sub(self.sent_at.get(&t.id).copied().unwrap_or(0)) >= retry_ms)
                .map(|t| status_of(t, f))
                .collect();
            for mut status in due {
                status.timestamp_ms = status.timestamp_ms.max(1);
                self.sent_at.insert(status.task_id.clone(), now);
                if let Some(sub) = self.subscribers.get(&name) {
                    let _ = sub.tx.try_send(SchedulerEvent::Update(status));
                }
            }
        }

        self.sent_at.retain(|id, _| {
            s.tasks
                .get(id)
                .is_some_and(|t| t.last_update_uuid.is_some() && t.acknowledged_uuid != t.last_update_uuid)
        });

        let grace_ms = grace.as_millis() as u64;
        for f in s.frameworks.values() {
            if self.subscribers.contains_key(&f.id) || self.removing.contains(&f.id) {
                continue;
            }
            // A framework that was connected to an earlier leader, or left before this term,
            // has at least the grace period from the start of this term.
            let (since, timeout) = match (self.left_at.get(&f.id), f.disconnected_at) {
                (Some(&at), _) => (at, f.failover_timeout_ms),
                (None, Some(at)) if !f.connected && at >= self.leading_since => (at, f.failover_timeout_ms),
                _ => (self.leading_since, f.failover_timeout_ms.max(grace_ms)),
            };
            if now >= since.saturating_add(timeout) {
                self.removing.insert(f.id.clone());
                out.timed_out.push(f.id.clone());
            }
        }
        out
    }

    /// When [`Core::tick`] has work again without anything happening first: the allocator's
    /// next filter or offer expiry, the next heartbeat, the next resend, the next failover
    /// timeout or lost launch. `None`: nothing is due.
    pub(crate) fn next_deadline(
        &self,
        s: &State,
        now: Millis,
        heartbeat: std::time::Duration,
        retry: std::time::Duration,
        grace: std::time::Duration,
    ) -> Option<Millis> {
        let mut next = self.alloc.next_deadline();
        let mut at = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        if !self.subscribers.is_empty() {
            at(self.last_heartbeat.saturating_add(heartbeat.as_millis() as u64));
        }
        let retry_ms = retry.as_millis() as u64;
        for name in self.subscribers.keys() {
            for t in s.unacknowledged(name) {
                at(self.sent_at.get(&t.id).copied().unwrap_or(now).saturating_add(retry_ms));
            }
        }
        for h in self.held.values() {
            if let Some(since) = h.pending {
                at(since.saturating_add(PENDING_TIMEOUT + 1));
            }
        }
        let grace_ms = grace.as_millis() as u64;
        for f in s.frameworks.values() {
            if self.subscribers.contains_key(&f.id) || self.removing.contains(&f.id) {
                continue;
            }
            let (since, timeout) = match (self.left_at.get(&f.id), f.disconnected_at) {
                (Some(&left), _) => (left, f.failover_timeout_ms),
                (None, Some(d)) if !f.connected && d >= self.leading_since => (d, f.failover_timeout_ms),
                _ => (self.leading_since, f.failover_timeout_ms.max(grace_ms)),
            };
            at(since.saturating_add(timeout));
        }
        next
    }

    /// Whether the allocator would take this quota; it is applied for real when committed.
    pub(crate) fn check_quota(
        &mut self,
        role: &Role,
        guarantees: &Quantities,
        limits: &Quantities,
        force: bool,
    ) -> Result<(), Error> {
        let quota = Quota {
            guarantees: guarantees.clone(),
            limits: limits.clone(),
        };
        let previous = self.alloc.quota(role).cloned().unwrap_or_default();
        self.alloc
            .set_quota(role, quota, force)
            .map_err(|e| invalid(e.to_string()))?;
        // Back to what the state says until the command is committed and synced.
        let _ = self.alloc.set_quota(role, previous, true);
        Ok(())
    }

    /// An operator's RESERVE or UNRESERVE on an agent; returns the agent's new total.
    pub(crate) fn operator_reservation(
        &mut self,
        agent: u64,
        resources: &Resources,
        reserve: bool,
    ) -> Result<Resources, Error> {
        if !self.agents.contains_key(&agent) {
            return Err(invalid(format!("no agent {agent}")));
        }
        let bad = |e: tepui_allocator::Error| invalid(e.to_string());
        self.rescind_on(agent);
        if reserve {
            let roles: BTreeSet<Role> = resources
                .iter()
                .filter_map(|e| e.reservation.as_ref().map(|r| r.role.clone()))
                .collect();
            if roles.len() != 1 || resources.iter().any(|e| e.reservation.is_none()) {
                return Err(invalid(
                    "resources to reserve name exactly one role in their reservation",
                ));
            }
            let role = roles.into_iter().next().expect("one role");
            self.alloc
                .reserve(AgentId(agent), &role, &resources.strip_reservations(), None)
                .map_err(bad)?;
        } else {
            self.alloc.unreserve(AgentId(agent), resources, None).map_err(bad)?;
        }
        let total = self.alloc.agent_total(AgentId(agent)).cloned().unwrap_or_default();
        if let Some(seen) = self.agents.get_mut(&agent) {
            seen.total = total.clone();
        }
        Ok(total)
    }

    pub(crate) fn view(&self) -> AllocationView {
        let mut v = AllocationView {
            cluster_total: self.alloc.cluster_total(),
            ..AllocationView::default()
        };
        for &id in self.agents.keys() {
            let a = AgentId(id);
            v.agents.insert(
                id,
                AgentAllocation {
                    total: self.alloc.agent_total(a).cloned().unwrap_or_default(),
                    unallocated: self.alloc.agent_unallocated(a).cloned().unwrap_or_default(),
                    ..AgentAllocation::default()
                },
            );
        }
        for o in self.alloc.outstanding_offers() {
            if let Some(a) = v.agents.get_mut(&o.agent.0) {
                a.offered.add(&o.resources);
            }
        }
        for h in self.held.values() {
            if let Some(a) = v.agents.get_mut(&h.agent) {
                a.used.add(&h.resources);
            }
        }
        let mut roles: BTreeSet<Role> = BTreeSet::from([Role::default_role()]);
        for (name, &fid) in &self.ids {
            let mut fa = FrameworkAllocation {
                subscribed: self.subscribers.contains_key(name),
                ..FrameworkAllocation::default()
            };
            for h in self.held.values().filter(|h| h.framework == fid) {
                fa.used.add(&h.resources);
            }
            for o in self.alloc.offers_of(fid) {
                fa.offered.add(&o.resources);
                fa.offers.push(OfferView {
                    id: self.offer_name(o.id),
                    framework_id: name.clone(),
                    agent_id: o.agent.0,
                    hostname: self
                        .agents
                        .get(&o.agent.0)
                        .map(|a| a.hostname.clone())
                        .unwrap_or_default(),
                    role: o.role.clone(),
                    resources: o.resources.clone(),
                    attributes: self.alloc.agent_attributes(o.agent).cloned().unwrap_or_default(),
                });
            }
            for r in self.roles_of.get(&fid).into_iter().flatten() {
                roles.insert(r.clone());
            }
            v.frameworks.insert(name.clone(), fa);
        }
        for name in self.role_configs.keys() {
            if let Ok(r) = Role::new(name) {
                roles.insert(r);
            }
        }
        for r in roles {
            let config = self.role_configs.get(r.as_str()).cloned().unwrap_or_default();
            let quota = self.alloc.quota(&r).cloned().unwrap_or_default();
            let frameworks = self
                .ids
                .iter()
                .filter(|(n, id)| !n.is_empty() && self.roles_of.get(id).is_some_and(|rs| rs.contains(&r)))
                .map(|(n, _)| n.clone())
                .collect();
            v.roles.insert(
                r.as_str().to_string(),
                RoleAllocation {
                    weight: config.weight_milli as f64 / 1000.0,
                    allocated: self.alloc.role_allocation(&r),
                    consumed: self.alloc.role_consumption(&r),
                    share: self.alloc.role_share(&r),
                    guarantees: quota.guarantees,
                    limits: quota.limits,
                    frameworks,
                },
            );
        }
        v
    }
}

fn reconciled(mut status: StatusView) -> StatusView {
    status.reason = Some("REASON_RECONCILIATION".into());
    status.uuid = None;
    status.from_master = true;
    status
}

/// What the agents would refuse in a launch, found before anything is committed: the same
/// rules they apply (one function each, in tepui-common).
fn launch_error(l: &LaunchSpec) -> Option<String> {
    if !tepui_common::valid_task_id(&l.task_id) {
        return Some(format!(
            "task id {:?} is not valid: it must be {}",
            l.task_id,
            tepui_common::TASK_ID_RULE
        ));
    }
    l.def.health_checks.iter().enumerate().find_map(|(i, h)| {
        let path = h.path.as_deref().filter(|_| h.protocol.contains("HTTP"))?;
        tepui_common::health_path_error(path).map(|e| format!("health_checks[{i}].path: {e}"))
    })
}

fn task_record(l: &LaunchSpec, agent: u64, framework: &str, role: &Role, now: Millis) -> TaskRecord {
    let mut t = TaskRecord::staging(l.task_id.clone(), l.name.clone(), agent, l.def.clone(), now);
    t.framework_id = framework.to_string();
    t.role = if role.is_default() {
        String::new()
    } else {
        role.as_str().to_string()
    };
    t.resources = convert::text(&l.resources);
    t.labels = l.labels.clone();
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::LaunchSpec;

    fn state(agents: u64) -> State {
        tepui_state::testing::state_with_agents(agents, 2048)
    }

    fn framework(id: &str, partition_aware: bool) -> FrameworkRecord {
        FrameworkRecord {
            id: id.into(),
            name: id.into(),
            user: "root".into(),
            principal: None,
            hostname: None,
            webui_url: None,
            roles: vec!["*".into()],
            capabilities: if partition_aware {
                vec!["PARTITION_AWARE".into()]
            } else {
                vec![]
            },
            failover_timeout_ms: 10_000,
            registered_at: 0,
            reregistered_at: None,
            connected: true,
            disconnected_at: None,
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    fn tick(c: &mut Core, s: &State, now: Millis) -> TickOut {
        c.tick(s, now, 15 * SEC, 10 * SEC, 60 * SEC)
    }

    /// A subscribed framework with its event channel.
    fn subscribed(c: &mut Core, s: &mut State, id: &str) -> mpsc::Receiver<SchedulerEvent> {
        let f = framework(id, true);
        s.frameworks.insert(id.into(), f.clone());
        c.sync(s);
        let (tx, rx) = mpsc::channel(64);
        c.subscribe(&f, &[], format!("stream-{id}"), tx).unwrap();
        rx
    }

    fn offers(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<OfferView> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Offers(o) = e {
                out.extend(o);
            }
        }
        out
    }

    fn updates(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<StatusView> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if let SchedulerEvent::Update(u) = e {
                out.push(u);
            }
        }
        out
    }

    fn launch(id: &str, agent: u64, res: &str) -> LaunchSpec {
        let resources: Resources = res.parse().unwrap();
        let mut def = crate::empty_def();
        def.cpus_milli = resources.scalar_sum(&tepui_allocator::ResourceName::CPUS).milli();
        def.mem_mb = convert::units(&resources, &tepui_allocator::ResourceName::MEM);
        LaunchSpec {
            task_id: id.into(),
            name: id.into(),
            agent_id: Some(agent),
            def,
            resources,
            invalid: None,
            labels: Default::default(),
            executor: None,
        }
    }

    #[test]
    fn a_subscribed_framework_gets_the_agents_resources_offered() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let mut rx = subscribed(&mut c, &mut s, "f1");
        tick(&mut c, &s, 1);
        let o = offers(&mut rx);
        assert_eq!(o.len(), 1, "one offer for the one agent");
        assert_eq!(o[0].resources.to_string(), "cpus:2;mem:2048;ports:[31000-31009]");
        assert_eq!(o[0].agent_id, 1);
    }

    #[test]
    fn accept_refuses_what_the_agent_would_refuse() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let mut rx = subscribed(&mut c, &mut s, "f1");
        tick(&mut c, &s, 1);
        let offer = offers(&mut rx).remove(0);
        let mut checked = launch("checked", 1, "cpus:0.1;mem:32");
        checked.def.health_checks.push(tepui_state::HealthCheckDef {
            protocol: "MESOS_HTTP".into(),
            path: Some("/ HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /".into()),
            port: Some(31000),
            command: None,
            grace_period_ms: 0,
            interval_ms: 1000,
            timeout_ms: 1000,
            max_consecutive_failures: 3,
            delay_ms: 0,
        });
        let ops = vec![Operation::Launch(vec![
            launch("with:colon", 1, "cpus:0.1;mem:32"),
            checked,
            launch("fine", 1, "cpus:0.1;mem:32"),
        ])];
        let plan = c
            .accept(&s, "f1", std::slice::from_ref(&offer.id), ops, Filters::NONE, 2)
            .unwrap();
        let launched: Vec<&str> = plan.launches.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(launched, ["fine"]);
        let refused = updates(&mut rx);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused.iter().all(|u| u.state == TaskState::TaskError));
        assert!(
            refused[0].message.contains("task id \"with:colon\" is not valid"),
            "{}",
            refused[0].message
        );
        assert!(
            refused[1].message.contains("health_checks[0].path"),
            "{}",
            refused[1].message
        );
    }

    #[test]
    fn accept_launches_within_the_offer_and_refuses_the_rest() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let mut rx = subscribed(&mut c, &mut s, "f1");
        tick(&mut c, &s, 1);
        let offer = offers(&mut rx).remove(0);
        let ops = vec![Operation::Launch(vec![
            launch("ok", 1, "cpus:0.5;mem:128"),
            launch("too-big", 1, "cpus:4;mem:128"),
            launch("ok", 1, "cpus:0.1;mem:32"),
        ])];
        let plan = c
            .accept(&s, "f1", std::slice::from_ref(&offer.id), ops, Filters::NONE, 2)
            .unwrap();
        assert_eq!(plan.launches.len(), 1);
        assert_eq!(plan.launches[0].framework_id, "f1");
        assert_eq!(plan.launches[0].resources, "cpus:0.5;mem:128");
        let refused = updates(&mut rx);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused.iter().all(|u| u.state == TaskState::TaskError));
        assert!(
            refused[0].message.contains("offers hold only"),
            "{}",
            refused[0].message
        );
        assert!(refused[1].message.contains("already in use"), "{}", refused[1].message);

        // The offer is used up: a second accept of it drops its tasks.
        let again = vec![Operation::Launch(vec![launch("late", 1, "cpus:0.1;mem:32")])];
        let plan = c
            .accept(&s, "f1", std::slice::from_ref(&offer.id), again, Filters::NONE, 3)
            .unwrap();
        assert!(plan.launches.is_empty());
        let dropped = updates(&mut rx);
        assert_eq!(dropped[0].state, TaskState::TaskDropped);
        assert_eq!(dropped[0].reason.as_deref(), Some("REASON_INVALID_OFFERS"));

        // The launched task holds its resources: the next offer is what is left.
        c.launched("ok");
        let mut record = plan_record(&s, "ok");
        record.resources = "cpus:0.5;mem:128".into();
        s.tasks.insert("ok".into(), record);
        tick(&mut c, &s, 4);
        let next = offers(&mut rx);
        assert_eq!(next[0].resources.to_string(), "cpus:1.5;mem:1920;ports:[31000-31009]");
        c.alloc.check_invariants().unwrap();
    }

    fn plan_record(_s: &State, id: &str) -> TaskRecord {
        task_record(&launch(id, 1, "cpus:0.5;mem:128"), 1, "f1", &Role::default_role(), 0)
    }

    #[test]
    fn a_rebuilt_core_holds_the_resources_of_running_tasks() {
        let mut s = state(1);
        s.frameworks.insert("f1".into(), framework("f1", true));
        let mut t = plan_record(&s, "t1");
        t.state = TaskState::TaskRunning;
        s.tasks.insert("t1".into(), t);
        let mut c = Core::new(0, &s);
        let (tx, mut rx) = mpsc::channel(64);
        c.subscribe(&s.frameworks["f1"].clone(), &[], "x".into(), tx).unwrap();
        tick(&mut c, &s, 1);
        assert_eq!(
            offers(&mut rx)[0].resources.to_string(),
            "cpus:1.5;mem:1920;ports:[31000-31009]"
        );
        // The task ends: its resources come back.
        s.tasks.get_mut("t1").unwrap().state = TaskState::TaskFinished;
        tick(&mut c, &s, 2);
        assert!(c.alloc.allocations_of(c.ids["f1"]).is_empty());
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn operator_tasks_take_resources_back_from_offers() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let mut rx = subscribed(&mut c, &mut s, "f1");
        tick(&mut c, &s, 1);
        let offer = offers(&mut rx).remove(0);
        let r: Resources = "cpus:1;mem:64".parse().unwrap();
        assert!(c.take_for_operator("op", 1, &r, 1));
        let rescinded: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match e {
                SchedulerEvent::Rescind { offer_id } => Some(offer_id),
                _ => None,
            })
            .collect();
        assert_eq!(rescinded, vec![offer.id]);
        assert!(
            !c.take_for_operator("op2", 1, &"cpus:1.5".parse().unwrap(), 1),
            "only 1 cpu is left"
        );
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn a_builtin_framework_places_its_own_tasks_under_its_id_and_role() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let r: Resources = "cpus:0.5;mem:64".parse().unwrap();
        assert!(
            c.take_for_framework("jobs", "*", "j.r.1", 1, &r, 1).is_err(),
            "not registered yet"
        );
        let _rx = subscribed(&mut c, &mut s, "jobs");
        assert!(
            c.take_for_framework("jobs", "dev", "j.r.1", 1, &r, 1).is_err(),
            "a role it is not subscribed to"
        );
        assert_eq!(c.take_for_framework("jobs", "*", "j.r.1", 1, &r, 1).ok(), Some(true));
        // Held by the framework in its role: its share counts it.
        let held = c.alloc.allocations_of(c.ids["jobs"]);
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!((held[0].1.as_str(), &held[0].2), ("*", &r));
        assert!(c.alloc.role_share(&Role::default_role()) > 0.0);
        assert_eq!(
            c.take_for_framework("jobs", "*", "j.r.2", 1, &"cpus:1.8".parse().unwrap(), 1)
                .ok(),
            Some(false),
            "not free"
        );
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn frameworks_that_stay_away_past_their_failover_timeout_are_removed() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let rx = subscribed(&mut c, &mut s, "f1");
        drop(rx);
        let out = tick(&mut c, &s, 1_000);
        assert_eq!(out.disconnected, vec![("f1".to_string(), 1_000)]);
        let f = s.frameworks.get_mut("f1").unwrap();
        f.connected = false;
        f.disconnected_at = Some(1_000);
        assert!(tick(&mut c, &s, 10_999).timed_out.is_empty());
        assert_eq!(tick(&mut c, &s, 11_000).timed_out, vec!["f1".to_string()]);
        assert!(tick(&mut c, &s, 12_000).timed_out.is_empty(), "asked once");

        // Under a new leader, the same framework gets at least the grace period.
        let c2 = &mut Core::new(20_000, &s);
        assert!(tick(c2, &s, 79_999).timed_out.is_empty());
        assert_eq!(tick(c2, &s, 80_000).timed_out, vec!["f1".to_string()]);
    }

    #[test]
    fn unacknowledged_updates_are_resent_after_the_retry_interval_only() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let mut rx = subscribed(&mut c, &mut s, "f1");
        let mut t = plan_record(&s, "t1");
        t.state = TaskState::TaskFinished;
        t.last_update_uuid = Some("u1".into());
        s.tasks.insert("t1".into(), t.clone());
        c.send_status("f1", status_of(&t, &s.frameworks["f1"]));
        let sent = crate::now_ms();
        assert_eq!(updates(&mut rx).len(), 1);
        tick(&mut c, &s, sent + 1_000);
        assert!(updates(&mut rx).is_empty(), "not again before the retry interval");
        tick(&mut c, &s, sent + 10_000);
        assert_eq!(updates(&mut rx).len(), 1, "resent once the interval passed");
        s.tasks.get_mut("t1").unwrap().acknowledged_uuid = Some("u1".into());
        tick(&mut c, &s, sent + 30_000);
        assert!(updates(&mut rx).is_empty(), "acknowledged: never again");
    }

    #[test]
    fn partition_unaware_frameworks_see_lost_where_others_see_unreachable() {
        let s = state(1);
        let mut t = plan_record(&s, "t1");
        t.state = TaskState::TaskUnreachable;
        assert_eq!(status_of(&t, &framework("f", true)).state, TaskState::TaskUnreachable);
        assert_eq!(status_of(&t, &framework("f", false)).state, TaskState::TaskLost);
        t.state = TaskState::TaskRunning;
        assert_eq!(status_of(&t, &framework("f", false)).state, TaskState::TaskRunning);
    }

    #[test]
    fn statically_reserved_resources_go_only_to_their_role() {
        let mut s = state(1);
        s.nodes.get_mut(&1).unwrap().agent.as_mut().unwrap().resources.reserved = "cpus(eng):1;mem(eng):512".into();
        let mut c = Core::new(0, &s);
        let mut star = subscribed(&mut c, &mut s, "star");
        let mut eng_fw = framework("eng", true);
        eng_fw.roles = vec!["eng".into()];
        s.frameworks.insert("eng".into(), eng_fw.clone());
        c.sync(&s);
        let (tx, mut eng) = mpsc::channel(64);
        c.subscribe(&eng_fw, &[], "e".into(), tx).unwrap();
        tick(&mut c, &s, 1);
        let mut offered: Vec<String> = offers(&mut star)
            .into_iter()
            .chain(offers(&mut eng))
            .map(|o| format!("{}={}", o.role, o.resources))
            .collect();
        offered.sort();
        assert!(
            offered
                .iter()
                .any(|o| o.starts_with("eng=") && o.contains("cpus(eng):1")),
            "{offered:?}"
        );
        assert!(
            offered
                .iter()
                .filter(|o| o.starts_with("*="))
                .all(|o| !o.contains("(eng)")),
            "{offered:?}"
        );
        c.alloc.check_invariants().unwrap();
    }

    #[test]
    fn a_framework_that_just_left_gets_its_whole_failover_timeout() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let rx = subscribed(&mut c, &mut s, "f1");
        // Leading for long already; the state still says connected when the stream ends.
        assert!(tick(&mut c, &s, 500_000).timed_out.is_empty());
        drop(rx);
        let out = tick(&mut c, &s, 600_000);
        assert_eq!(out.disconnected.len(), 1);
        assert!(out.timed_out.is_empty(), "not at the moment it left");
        assert!(tick(&mut c, &s, 609_999).timed_out.is_empty());
        assert_eq!(tick(&mut c, &s, 610_000).timed_out, vec!["f1".to_string()]);
    }

    #[test]
    fn launches_never_committed_give_their_resources_back() {
        let mut s = state(1);
        let mut c = Core::new(0, &s);
        let r: Resources = "cpus:2;mem:1024".parse().unwrap();
        assert!(c.take_for_operator("lost", 1, &r, 1_000));
        assert!(!c.take_for_operator("other", 1, &r, 1_000), "held while pending");
        tick(&mut c, &s, 1_000 + PENDING_TIMEOUT);
        assert!(!c.take_for_operator("other", 1, &r, 2_000), "still within the timeout");
        tick(&mut c, &s, 1_001 + PENDING_TIMEOUT);
        assert!(c.take_for_operator("other", 1, &r, 40_000), "free again");
        // One the state shows committed stays held.
        s.tasks.insert("other".into(), plan_record(&s, "other"));
        tick(&mut c, &s, 200_000);
        assert!(!c.take_for_operator("third", 1, &"cpus:0.5".parse().unwrap(), 200_000));
        c.alloc.check_invariants().unwrap();
    }
}
