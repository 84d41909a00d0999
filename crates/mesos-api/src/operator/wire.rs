//! The model in Mesos' words: v1 messages for the operator API, and the legacy JSON built from
//! them with `tepui_mesos::legacy`'s own `from_v1` helpers, as Mesos does.

use std::collections::BTreeMap;

use tepui_allocator::{AttributeValue, Resources};
use tepui_mesos::master as op;
use tepui_mesos::v1 as mesos;
use tepui_mesos::{legacy, Bytes};
use tepui_state::{ExecutorRecord, Maintenance, TaskRecord, TaskState};

use super::model::{bucket, framework_id_of, role_of, secs, Agent, Bucket, Framework, Model, RoleRow};
use crate::scheduler::to_mesos_resources;
use tepui_master::convert;
use tepui_master::OfferView;

/// The Mesos API level tepui speaks; tools compare it against the versions they support.
/// tepui's own version travels in `git_tag` (`tepui-<version>`).
pub(crate) const MESOS_VERSION: &str = "1.11.0";

/// Resources in the operator API's format (reservations as a refinement stack).
pub(crate) fn v1_resources(r: &Resources, allocated_to: Option<&str>) -> Vec<mesos::Resource> {
    to_mesos_resources(r, allocated_to, true)
}

/// The flat `{"cpus": .., "mem": .., "ports": "[..]"}` map of the legacy endpoints.
pub(crate) fn flat(r: &Resources) -> legacy::FlatResources {
    legacy::flat_resources(&v1_resources(r, None))
}

fn time(ms: u64) -> mesos::TimeInfo {
    mesos::TimeInfo::from_millis(ms as i64)
}

pub(crate) fn version_info() -> mesos::VersionInfo {
    mesos::VersionInfo {
        version: MESOS_VERSION.into(),
        build_date: None,
        build_time: None,
        build_user: None,
        git_sha: None,
        git_branch: None,
        git_tag: Some(format!("tepui-{}", crate::VERSION)),
    }
}

fn mesos_state(s: TaskState) -> mesos::TaskState {
    mesos::TaskState::from_name(s.as_str())
}

/// Reasons the leader sets itself (the others come from agents).
fn from_master(reason: Option<&str>) -> bool {
    matches!(
        reason,
        Some("REASON_SLAVE_REMOVED" | "REASON_RECONCILIATION" | "REASON_FRAMEWORK_REMOVED" | "REASON_INVALID_OFFERS")
    )
}

/// The task's latest status.
pub(crate) fn task_status(t: &TaskRecord) -> mesos::TaskStatus {
    let mut st = mesos::TaskStatus::new(t.id.as_str(), mesos_state(t.state));
    st.message = (!t.message.is_empty()).then(|| t.message.clone());
    st.reason = t.reason.as_deref().map(mesos::TaskStatusReason::from_name);
    st.source = Some(if from_master(t.reason.as_deref()) {
        mesos::TaskStatusSource::Master
    } else {
        mesos::TaskStatusSource::Executor
    });
    st.agent_id = Some(mesos::AgentId::new(t.agent_id.to_string()));
    st.timestamp = Some(secs(t.updated_at));
    st.uuid = t.last_update_uuid.as_ref().map(|u| Bytes::new(u.as_bytes().to_vec()));
    // A bridge task's own address, where Mesos-DNS and Marathon look for it.
    if let Some(ip) = t.container_ip {
        st.container_status = Some(mesos::ContainerStatus {
            network_infos: vec![mesos::NetworkInfo {
                ip_addresses: vec![mesos::IpAddress {
                    protocol: None,
                    ip_address: Some(ip.to_string()),
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    st
}

/// What is known of the task's history: when it started running, and its latest status.
fn statuses(t: &TaskRecord) -> Vec<mesos::TaskStatus> {
    let mut out = Vec::new();
    if let Some(at) = t.started_at.filter(|_| t.state != TaskState::TaskRunning) {
        let mut running = mesos::TaskStatus::new(t.id.as_str(), mesos::TaskState::Running);
        running.agent_id = Some(mesos::AgentId::new(t.agent_id.to_string()));
        running.timestamp = Some(secs(at));
        running.source = Some(mesos::TaskStatusSource::Executor);
        out.push(running);
    }
    out.push(task_status(t));
    out
}

/// The task as Mesos' master shows it; a task an executor runs names it.
pub(crate) fn task(m: &Model, t: &TaskRecord) -> mesos::Task {
    let executor_id = m
        .executor_of(&t.id)
        .map(|e| mesos::ExecutorId::new(e.executor_id.as_str()));
    let mut statuses = statuses(t);
    for st in &mut statuses {
        st.executor_id = executor_id.clone();
    }
    let latest = statuses.last().cloned().unwrap_or_else(|| task_status(t));
    mesos::Task {
        name: t.name.clone(),
        task_id: mesos::TaskId::new(t.id.as_str()),
        framework_id: mesos::FrameworkId::new(framework_id_of(t)),
        executor_id,
        agent_id: mesos::AgentId::new(t.agent_id.to_string()),
        state: latest.state.clone(),
        resources: v1_resources(&convert::task_resources(t), Some(role_of(t))),
        statuses,
        status_update_state: Some(latest.state.clone()),
        status_update_uuid: latest.uuid.clone(),
        labels: None,
        discovery: None,
        container: None,
        health_check: None,
        kill_policy: Some(mesos::KillPolicy {
            grace_period: Some(mesos::DurationInfo::from_nanos(
                (t.def.kill_grace_ms as i64).saturating_mul(1_000_000),
            )),
        }),
        user: t.def.user.clone(),
        limits: BTreeMap::new(),
    }
}

fn attributes(a: &Agent) -> Vec<mesos::Attribute> {
    convert::attributes(a.info)
        .iter()
        .map(|(name, v)| {
            let mut attr = mesos::Attribute::text(name.to_string(), "");
            attr.text = None;
            match v {
                AttributeValue::Text(t) => {
                    attr.kind = mesos::ValueType::Text;
                    attr.text = Some(mesos::Text { value: t.clone() });
                }
                AttributeValue::Scalar(s) => {
                    attr.kind = mesos::ValueType::Scalar;
                    attr.scalar = Some(mesos::Scalar::new(s.as_f64()));
                }
                AttributeValue::Ranges(r) => {
                    attr.kind = mesos::ValueType::Ranges;
                    attr.ranges = Some(mesos::Ranges::new(r.pairs().iter().copied()));
                }
                AttributeValue::Set(s) => {
                    attr.kind = mesos::ValueType::Set;
                    attr.set = Some(mesos::Set {
                        item: s.items().map(str::to_string).collect(),
                    });
                }
            }
            attr
        })
        .collect()
}

pub(crate) fn agent_info(a: &Agent) -> mesos::AgentInfo {
    mesos::AgentInfo {
        hostname: a.node.name.clone(),
        port: Some(a.port() as i32),
        resources: v1_resources(&a.total, None),
        attributes: attributes(a),
        id: Some(mesos::AgentId::new(a.id())),
        domain: None,
    }
}

fn drain_info(a: &Agent) -> Option<mesos::DrainInfo> {
    let state = match a.node.maintenance {
        Maintenance::Draining => mesos::DrainState::Draining,
        Maintenance::Drained => mesos::DrainState::Drained,
        _ => return None,
    };
    Some(mesos::DrainInfo {
        state,
        config: mesos::DrainConfig::default(),
    })
}

/// Resources held by tasks, each allocated in its task's role.
fn allocated_on(m: &Model, agent: u64) -> Vec<mesos::Resource> {
    m.tasks()
        .filter(|t| t.agent_id == agent && super::model::holds_resources(t))
        .flat_map(|t| v1_resources(&convert::task_resources(t), Some(role_of(t))))
        .collect()
}

fn offered(offers: &[OfferView]) -> Vec<mesos::Resource> {
    offers
        .iter()
        .flat_map(|o| v1_resources(&o.resources, Some(o.role.as_str())))
        .collect()
}

fn offers_on(m: &Model, agent: u64) -> Vec<OfferView> {
    m.view
        .iter()
        .flat_map(|v| v.frameworks.values())
        .flat_map(|f| f.offers.iter())
        .filter(|o| o.agent_id == agent)
        .cloned()
        .collect()
}

pub(crate) fn agent(m: &Model, a: &Agent) -> op::Agent {
    let maintenance = a.node.maintenance;
    op::Agent {
        agent_info: agent_info(a),
        active: a.active(),
        deactivated: Some(maintenance != Maintenance::Active),
        version: a.info.version.clone(),
        pid: Some(format!("slave(1)@{}", a.addr())),
        registered_time: Some(time(a.info.registered_at)),
        reregistered_time: None,
        total_resources: v1_resources(&a.total, None),
        allocated_resources: allocated_on(m, a.node.id),
        offered_resources: offered(&offers_on(m, a.node.id)),
        capabilities: vec![],
        resource_providers: vec![],
        drain_info: drain_info(a),
        estimated_drain_start_time: None,
    }
}

pub(crate) fn framework_info(f: &Framework) -> mesos::FrameworkInfo {
    let mut info = mesos::FrameworkInfo::new(f.user(), f.name());
    info.id = Some(mesos::FrameworkId::new(f.id.as_str()));
    let roles = f.roles();
    let multi_role = f.capabilities().iter().any(|c| c == "MULTI_ROLE");
    if multi_role || f.record().is_none() {
        info.roles = roles;
    } else {
        info.role = roles.into_iter().next();
    }
    info.capabilities = f
        .capabilities()
        .iter()
        .map(|c| mesos::FrameworkCapability::from(mesos::FrameworkCapabilityType::from_name(c)))
        .collect();
    info.checkpoint = Some(true);
    if let Some(r) = f.record() {
        info.failover_timeout = Some(secs(r.failover_timeout_ms));
        info.hostname = r.hostname.clone();
        info.principal = r.principal.clone();
        info.webui_url = r.webui_url.clone();
    }
    info
}

pub(crate) fn offer(o: &OfferView) -> mesos::Offer {
    mesos::Offer {
        id: mesos::OfferId::new(o.id.as_str()),
        framework_id: mesos::FrameworkId::new(o.framework_id.as_str()),
        agent_id: mesos::AgentId::new(o.agent_id.to_string()),
        hostname: o.hostname.clone(),
        url: None,
        domain: None,
        resources: v1_resources(&o.resources, Some(o.role.as_str())),
        attributes: vec![],
        executor_ids: vec![],
        unavailability: None,
        allocation_info: Some(mesos::AllocationInfo {
            role: Some(o.role.as_str().to_string()),
        }),
    }
}

/// The executor's `ExecutorInfo` as its framework gave it, its resources allocated to its role.
pub(crate) fn executor_info(e: &ExecutorRecord) -> Option<mesos::ExecutorInfo> {
    let mut info: mesos::ExecutorInfo = serde_json::from_value(e.info.clone()).ok()?;
    let role = if e.role.is_empty() { "*" } else { e.role.as_str() };
    info.resources = v1_resources(&convert::parse(&e.resources), Some(role));
    Some(info)
}

pub(crate) fn get_executors(m: &Model) -> op::GetExecutors {
    op::GetExecutors {
        executors: m
            .executors(None)
            .filter_map(|e| {
                Some(op::Executor {
                    executor_info: executor_info(e)?,
                    agent_id: mesos::AgentId::new(e.agent_id.to_string()),
                })
            })
            .collect(),
        orphan_executors: vec![],
    }
}

pub(crate) fn framework(m: &Model, f: &Framework) -> op::Framework {
    let registered = f.registered_at(m.cluster_created_at());
    op::Framework {
        framework_info: framework_info(f),
        active: f.connected(),
        connected: f.connected(),
        recovered: false,
        registered_time: Some(time(registered)),
        reregistered_time: f.record().and_then(|r| r.reregistered_at).map(time),
        unregistered_time: match f.unregistered_at() {
            0 => None,
            at => Some(time(at)),
        },
        offers: f.offers.iter().map(offer).collect(),
        inverse_offers: vec![],
        allocated_resources: f
            .tasks
            .iter()
            .filter(|t| super::model::holds_resources(t))
            .flat_map(|t| v1_resources(&convert::task_resources(t), Some(role_of(t))))
            .chain(
                m.executors(Some(f.id.as_str()))
                    .filter_map(executor_info)
                    .flat_map(|i| i.resources),
            )
            .collect(),
        offered_resources: offered(&f.offers),
    }
}

pub(crate) fn role(r: &RoleRow) -> mesos::Role {
    mesos::Role {
        name: r.name.clone(),
        weight: r.weight,
        frameworks: r
            .frameworks
            .iter()
            .map(|f| mesos::FrameworkId::new(f.as_str()))
            .collect(),
        resources: v1_resources(&r.resources(), Some(r.name.as_str())),
    }
}

pub(crate) fn get_agents(m: &Model) -> op::GetAgents {
    op::GetAgents {
        agents: m.agents().iter().map(|a| agent(m, a)).collect(),
        recovered_agents: vec![],
    }
}

pub(crate) fn get_frameworks(m: &Model) -> op::GetFrameworks {
    op::GetFrameworks {
        frameworks: m.frameworks().iter().map(|f| framework(m, f)).collect(),
        completed_frameworks: m.completed_frameworks().iter().map(|f| framework(m, f)).collect(),
        recovered_frameworks: vec![],
    }
}

pub(crate) fn get_tasks(m: &Model) -> op::GetTasks {
    let mut out = op::GetTasks::default();
    for t in m.tasks() {
        let unacknowledged = t.last_update_uuid.is_some() && t.acknowledged_uuid != t.last_update_uuid;
        match bucket(t) {
            Bucket::Active => out.tasks.push(task(m, t)),
            Bucket::Unreachable => out.unreachable_tasks.push(task(m, t)),
            // A terminal task whose update its framework has not acknowledged yet still counts.
            Bucket::Completed if unacknowledged && !t.framework_id.is_empty() => out.tasks.push(task(m, t)),
            Bucket::Completed => out.completed_tasks.push(task(m, t)),
        }
    }
    out
}

pub(crate) fn get_state(m: &Model) -> op::GetState {
    op::GetState {
        get_tasks: Some(get_tasks(m)),
        get_executors: Some(get_executors(m)),
        get_frameworks: Some(get_frameworks(m)),
        get_agents: Some(get_agents(m)),
    }
}

pub(crate) fn get_roles(m: &Model) -> op::GetRoles {
    op::GetRoles {
        roles: m.roles().iter().map(role).collect(),
    }
}

fn quantities_map(q: &tepui_allocator::Quantities) -> BTreeMap<String, f64> {
    q.iter().map(|(n, s)| (n.as_str().to_string(), s.as_f64())).collect()
}

pub(crate) fn quota_configs(m: &Model) -> Vec<op::QuotaConfig> {
    m.roles()
        .iter()
        .filter(|r| r.has_quota())
        .map(|r| op::QuotaConfig {
            role: r.name.clone(),
            guarantees: quantities_map(&r.guarantees)
                .into_iter()
                .map(|(k, v)| (k, mesos::Scalar::new(v)))
                .collect(),
            limits: quantities_map(&r.limits)
                .into_iter()
                .map(|(k, v)| (k, mesos::Scalar::new(v)))
                .collect(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Legacy
// ---------------------------------------------------------------------------------------------

pub(crate) fn legacy_task(m: &Model, t: &TaskRecord) -> legacy::Task {
    legacy::Task::from_v1(&task(m, t))
}

/// `full`: `/master/slaves` also carries the v1-style `*_full` fields.
pub(crate) fn legacy_slave(a: &Agent, full: bool) -> legacy::Slave {
    let offered_total = &a.offered;
    let mut reserved: BTreeMap<String, Resources> = BTreeMap::new();
    for e in a.total.reserved().iter() {
        if let Some(rv) = &e.reservation {
            reserved
                .entry(rv.role.as_str().to_string())
                .or_default()
                .push(e.clone());
        }
    }
    let legacy_format = |r: &Resources| to_mesos_resources(r, None, false);
    legacy::Slave {
        info: legacy::SlaveInfo::from_v1(&agent_info(a)),
        pid: format!("slave(1)@{}", a.addr()),
        registered_time: secs(a.info.registered_at),
        reregistered_time: None,
        resources: flat(&a.total),
        used_resources: flat(&a.used),
        offered_resources: flat(offered_total),
        reserved_resources: reserved.iter().map(|(role, r)| (role.clone(), flat(r))).collect(),
        unreserved_resources: flat(&a.total.unreserved()),
        active: a.active(),
        version: a.info.version.clone(),
        capabilities: vec![],
        reserved_resources_full: full.then(|| reserved.iter().map(|(k, r)| (k.clone(), legacy_format(r))).collect()),
        unreserved_resources_full: full.then(|| legacy_format(&a.total.unreserved())),
        used_resources_full: full.then(|| to_mesos_resources(&a.used, None, false)),
        offered_resources_full: full.then(|| legacy_format(offered_total)),
    }
}

pub(crate) fn legacy_framework_summary(f: &Framework) -> legacy::FrameworkSummary {
    legacy::FrameworkSummary {
        id: f.id.clone(),
        name: f.name().to_string(),
        pid: None,
        used_resources: flat(&f.used),
        offered_resources: flat(&f.offered),
        capabilities: f
            .capabilities()
            .iter()
            .map(|c| mesos::FrameworkCapabilityType::from_name(c))
            .collect(),
        hostname: f.record().and_then(|r| r.hostname.clone()).unwrap_or_default(),
        webui_url: f.record().and_then(|r| r.webui_url.clone()).unwrap_or_default(),
        active: f.connected(),
        connected: f.connected(),
        recovered: false,
    }
}

pub(crate) fn legacy_framework(m: &Model, f: &Framework) -> legacy::Framework {
    let mut resources = f.used.clone();
    resources.add(&f.offered);
    let info = framework_info(f);
    let registered = secs(f.registered_at(m.cluster_created_at()));
    let reregistered = f
        .record()
        .and_then(|r| r.reregistered_at)
        .map(secs)
        .filter(|at| *at != registered);
    let mut tasks = Vec::new();
    let mut unreachable = Vec::new();
    let mut completed = Vec::new();
    for t in &f.tasks {
        match bucket(t) {
            Bucket::Active => tasks.push(legacy_task(m, t)),
            Bucket::Unreachable => unreachable.push(legacy_task(m, t)),
            Bucket::Completed => completed.push(legacy_task(m, t)),
        }
    }
    legacy::Framework {
        summary: legacy_framework_summary(f),
        user: f.user().to_string(),
        failover_timeout: info.failover_timeout.unwrap_or(0.0),
        checkpoint: true,
        registered_time: registered,
        unregistered_time: secs(f.unregistered_at()),
        principal: info.principal.clone(),
        resources: flat(&resources),
        reregistered_time: reregistered,
        roles: (!info.roles.is_empty()).then(|| info.roles.clone()),
        role: info.role.clone(),
        tasks,
        unreachable_tasks: unreachable,
        completed_tasks: completed,
        offers: f.offers.iter().map(|o| legacy::Offer::from_v1(&offer(o))).collect(),
        executors: m
            .executors(Some(f.id.as_str()))
            .filter_map(|e| {
                let info = executor_info(e)?;
                Some(legacy::Executor::from_v1(
                    &info,
                    &mesos::AgentId::new(e.agent_id.to_string()),
                ))
            })
            .collect(),
        labels: None,
    }
}

pub(crate) fn legacy_role(r: &RoleRow) -> legacy::Role {
    legacy::Role {
        name: r.name.clone(),
        weight: r.weight,
        quota: r.has_quota().then(|| legacy::RoleQuota {
            role: r.name.clone(),
            guarantee: quantities_map(&r.guarantees),
            limit: quantities_map(&r.limits),
        }),
        resources: flat(&r.resources()),
        frameworks: r.frameworks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use tepui_state::TaskState;

    use super::super::model::tests_support::task as record;
    use super::*;

    #[test]
    fn a_bridge_tasks_address_is_in_its_status_as_mesos_reports_it() {
        let mut t = record("web.1", 1, "f1", TaskState::TaskRunning, 10);
        assert!(task_status(&t).container_status.is_none());
        t.container_ip = Some("10.213.0.5".parse().unwrap());
        // Where Mesos-DNS (`netinfo`) and Marathon read it in /master/state.
        let s = tepui_state::State::default();
        let json = serde_json::to_value(legacy::Task::from_v1(&task(&Model::new(&s, None), &t))).unwrap();
        let infos = &json["statuses"][0]["container_status"]["network_infos"];
        assert_eq!(infos[0]["ip_addresses"][0]["ip_address"], "10.213.0.5", "{json}");
    }

    #[test]
    fn executors_show_as_mesos_shows_them() {
        let mut s = super::super::model::tests_support::state();
        s.frameworks
            .insert("f1".into(), super::super::model::tests_support::framework("f1", true));
        let t = record("work.1", 1, "f1", TaskState::TaskRunning, 10);
        s.tasks.insert(t.id.clone(), t);
        let mut e = ExecutorRecord {
            framework_id: "f1".into(),
            executor_id: "ex".into(),
            agent_id: 1,
            name: "ex".into(),
            def: Default::default(),
            role: String::new(),
            resources: "cpus:0.1;mem:32".into(),
            info: serde_json::json!({
                "executor_id": {"value": "ex"}, "framework_id": {"value": "f1"},
                "command": {"value": "/bin/exec"}, "name": "my executor"
            }),
            framework_info: serde_json::Value::Null,
            tasks: Default::default(),
            launched_at: 1,
            default_executor: false,
            ended_at: None,
            message: String::new(),
            exit_status: None,
        };
        e.tasks.insert("work.1".into(), serde_json::Value::Null);
        s.executors.insert(e.key(), e);
        let m = Model::new(&s, None);
        let v1 = serde_json::to_value(task(&m, &s.tasks["work.1"])).unwrap();
        assert_eq!(v1["executor_id"]["value"], "ex", "{v1}");
        assert_eq!(v1["statuses"][0]["executor_id"]["value"], "ex", "{v1}");
        let all = serde_json::to_value(get_executors(&m)).unwrap();
        assert_eq!(all["executors"][0]["agent_id"]["value"], "1", "{all}");
        assert_eq!(
            all["executors"][0]["executor_info"]["executor_id"]["value"], "ex",
            "{all}"
        );
        let f = m.framework("f1").unwrap();
        let legacy = serde_json::to_value(legacy_framework(&m, &f)).unwrap();
        let ex = &legacy["executors"][0];
        assert_eq!(
            (ex["executor_id"].as_str(), ex["slave_id"].as_str()),
            (Some("ex"), Some("1")),
            "{legacy}"
        );
        assert_eq!(ex["resources"]["cpus"], 0.1, "{legacy}");
        // The task's (cpus:0.5;mem:128) and the executor's.
        assert_eq!(f.used.to_string(), "cpus:0.6;mem:160");
        // Ended executors are no longer listed.
        s.executors.values_mut().for_each(|e| e.ended_at = Some(2));
        assert!(get_executors(&Model::new(&s, None)).executors.is_empty());
    }
}
