//! The master's v1 operator API: calls, responses and stream events.

mod common;

use common::{assert_json_eq, fixture, fixtures_in, roundtrip};
use serde_json::json;
use tepui_mesos::master::{
    self, Agent, Call, CallType, Event, EventType, GetAgents, GetHealth, GetState, Response, ResponseType,
};
use tepui_mesos::v1::{
    AgentCapabilityType, AgentInfo, DrainState, FrameworkId, ReservationType, Resource, TaskState, TaskStatus, TimeInfo,
};

#[test]
fn every_operator_fixture_round_trips() {
    let files = fixtures_in("operator");
    assert!(files.len() >= 30, "fixtures missing: {files:?}");
    for f in files {
        if f.ends_with("_event.json") {
            roundtrip::<Event>(&f);
        } else if f.ends_with("_response.json") {
            roundtrip::<Response>(&f);
        } else if f.ends_with("_call.json") {
            let call = roundtrip::<Call>(&f);
            assert!(call.has_required_body(), "{f}");
        } else {
            panic!("fixture {f} has no _call/_response/_event suffix");
        }
    }
}

#[test]
fn get_state_response_pieces() {
    let resp: Response = roundtrip("operator/get_state_response.json");
    assert_eq!(resp.kind, ResponseType::GetState);
    let state = resp.get_state.unwrap();

    let agents = state.get_agents.unwrap();
    let agent = &agents.agents[0];
    assert!(agent.active);
    assert_eq!(agent.agent_info.hostname, "agent-0.example.com");
    assert_eq!(agent.agent_info.port, Some(5051));
    assert_eq!(
        agent.registered_time,
        Some(TimeInfo::from_nanos(1_470_820_172_046_531_840))
    );
    assert_eq!(agent.capabilities[0].kind, Some(AgentCapabilityType::MultiRole));
    assert_eq!(agent.agent_info.resources[3].ranges.as_ref().unwrap().count(), 1001);
    assert_eq!(agent.agent_info.resources[0].role.as_deref(), Some("*"));
    assert!(!agent.agent_info.resources[0].is_reserved());
    assert_eq!(agents.recovered_agents.len(), 1);

    let frameworks = state.get_frameworks.unwrap();
    assert_eq!(
        frameworks.frameworks[0].framework_info.principal.as_deref(),
        Some("my-principal")
    );
    assert_eq!(frameworks.completed_frameworks.len(), 1);

    let tasks = state.get_tasks.unwrap();
    let running = &tasks.tasks[0];
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.status_update_state, Some(TaskState::Running));
    assert_eq!(running.statuses[0].uuid, running.status_update_uuid);
    assert_eq!(tasks.completed_tasks[0].state, TaskState::Finished);
    assert!(tasks.completed_tasks[0].state.is_terminal());
    assert_eq!(tasks.unreachable_tasks[0].state, TaskState::Unreachable);

    let executors = state.get_executors.unwrap();
    assert_eq!(executors.executors[0].executor_info.executor_id.value, "default");
}

#[test]
fn get_agents_reports_draining() {
    let resp: Response = roundtrip("operator/get_agents_response.json");
    let agent = &resp.get_agents.unwrap().agents[0];
    assert_eq!(agent.deactivated, Some(true));
    let drain = agent.drain_info.as_ref().unwrap();
    assert_eq!(drain.state, DrainState::Draining);
    assert_eq!(drain.config.max_grace_period.unwrap().as_secs_f64(), 600.0);
}

#[test]
fn frameworks_tasks_roles_quota() {
    let resp: Response = roundtrip("operator/get_frameworks_response.json");
    let fw = &resp.get_frameworks.unwrap().frameworks[0];
    assert_eq!(fw.framework_info.roles, ["slave_public", "*"]);
    assert_eq!(fw.offers[0].agent_id.value, "361be53a-4d1b-42c1-bec3-e3979eff90bd-S0");

    let resp: Response = roundtrip("operator/get_tasks_response.json");
    let tasks = resp.get_tasks.unwrap();
    assert_eq!(tasks.pending_tasks[0].state, TaskState::Staging);
    assert_eq!(
        tasks.tasks[0].labels.as_ref().unwrap().get("HAPROXY_GROUP"),
        Some("external")
    );

    let resp: Response = roundtrip("operator/get_roles_response.json");
    let roles = resp.get_roles.unwrap().roles;
    assert_eq!(roles[1].weight, 2.5);
    assert_eq!(
        roles[1].frameworks[0],
        FrameworkId::new("74bddcbc-4a02-4d64-b291-aed52032055f-0000")
    );

    let resp: Response = roundtrip("operator/get_quota_response.json");
    let status = resp.get_quota.unwrap().status;
    assert_eq!(status.configs[0].limits["mem"].value, 2048.0);
    assert_eq!(status.infos.len(), 1);
}

#[test]
fn mutating_calls() {
    let call: Call = roundtrip("operator/reserve_resources_call.json");
    let reserve = call.reserve_resources.unwrap();
    assert_eq!(reserve.source[0].reservation_role(), Some("role_a"));
    assert_eq!(reserve.resources[0].reservation_role(), Some("role_b"));
    assert_eq!(
        reserve.resources[0].reservations[0].kind,
        Some(ReservationType::Dynamic)
    );

    let call: Call = roundtrip("operator/update_weights_call.json");
    assert_eq!(call.update_weights.unwrap().weight_infos[1].weight, 0.5);

    let call: Call = roundtrip("operator/update_quota_call.json");
    let quota = call.update_quota.unwrap();
    assert_eq!(quota.force, Some(false));
    assert_eq!(quota.quota_configs[1].guarantees["cpus"].value, 0.5);

    let call: Call = roundtrip("operator/drain_agent_call.json");
    let drain = call.drain_agent.unwrap();
    assert_eq!(drain.max_grace_period.unwrap().nanoseconds, 600_000_000_000);
    assert_eq!(drain.mark_gone, Some(false));

    let call: Call = roundtrip("operator/deactivate_agent_call.json");
    assert_eq!(call.kind, CallType::DeactivateAgent);
    let call: Call = roundtrip("operator/reactivate_agent_call.json");
    assert_eq!(
        call.reactivate_agent.unwrap().agent_id.value,
        "3192b9d1-db71-4699-ae25-e28dfbf42de1"
    );
}

#[test]
fn bodies_are_required_where_mesos_requires_them() {
    let call: Call = serde_json::from_value(json!({"type": "DRAIN_AGENT"})).unwrap();
    assert!(!call.has_required_body());
    assert!(Call::new(CallType::GetState).has_required_body());
    let unknown: Call = serde_json::from_value(json!({"type": "GET_EVERYTHING"})).unwrap();
    assert_eq!(unknown.kind, CallType::Unknown("GET_EVERYTHING".into()));
    assert!(!unknown.has_required_body());
}

#[test]
fn mesos_doc_drain_example_uses_seconds_not_nanoseconds() {
    // Mesos' operator doc shows `"max_grace_period": {"seconds": 600}`, but DurationInfo only
    // has `nanoseconds` (required), so Mesos itself rejects that body. So do we.
    let err = serde_json::from_value::<Call>(json!({
        "type": "DRAIN_AGENT",
        "drain_agent": {"agent_id": {"value": "a"}, "max_grace_period": {"seconds": 600}, "mark_gone": false}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("nanoseconds"), "{err}");
}

#[test]
fn events_of_the_subscribe_stream() {
    let ev: Event = roundtrip("operator/subscribed_event.json");
    let sub = ev.subscribed.unwrap();
    assert_eq!(sub.heartbeat_interval_seconds, Some(15.0));
    assert_eq!(sub.get_state.unwrap().get_agents.unwrap().agents[0].version, "1.11.0");

    let ev: Event = roundtrip("operator/task_updated_event.json");
    let upd = ev.task_updated.unwrap();
    assert_eq!(upd.state, TaskState::Running);
    assert_eq!(upd.status.task_id.value, "42154f1b-adcd-4421-bf13-8bd11adfafaf");

    let ev: Event = roundtrip("operator/framework_added_event.json");
    assert_eq!(ev.kind, EventType::FrameworkAdded);
    assert!(!ev.framework_added.unwrap().framework.recovered);

    let ev: Event = roundtrip("operator/agent_removed_event.json");
    assert_eq!(
        ev.agent_removed.unwrap().agent_id.value,
        "c3946a13-75b4-4d3c-9d0e-fc10038dca85-S3"
    );

    // A newer master's event type (e.g. AGENT_UPDATED, proposed in MESOS-9816) is kept.
    let ev: Event = serde_json::from_value(json!({"type": "AGENT_UPDATED", "agent_updated": {}})).unwrap();
    assert_eq!(ev.kind, EventType::Unknown("AGENT_UPDATED".into()));
}

#[test]
fn constructors_write_mesos_json() {
    assert_eq!(
        serde_json::to_value(Response::get_health(GetHealth { healthy: true })).unwrap(),
        fixture("operator/get_health_response.json")
    );

    let agent = Agent {
        agent_info: AgentInfo {
            hostname: "a0".into(),
            port: Some(5051),
            resources: vec![],
            attributes: vec![],
            id: Some("c3946a13-S0".into()),
            domain: None,
        },
        active: true,
        deactivated: None,
        version: "1.11.0".into(),
        pid: None,
        registered_time: None,
        reregistered_time: None,
        total_resources: vec![],
        allocated_resources: vec![],
        offered_resources: vec![],
        capabilities: vec![],
        resource_providers: vec![],
        drain_info: None,
        estimated_drain_start_time: None,
    };
    let state = GetState {
        get_agents: Some(GetAgents {
            agents: vec![agent],
            recovered_agents: vec![],
        }),
        get_frameworks: Some(Default::default()),
        get_tasks: Some(Default::default()),
        get_executors: Some(Default::default()),
    };
    assert_json_eq(
        &serde_json::to_value(Event::subscribed(state, Some(15.0))).unwrap(),
        &fixture("operator/subscribed_event.json"),
    );

    let mut status = TaskStatus::new("42154f1b-adcd-4421-bf13-8bd11adfafaf", TaskState::Running);
    status.agent_id = Some("2915adf-8aff-4421-bf13-afdafaf1f1".into());
    status.executor_id = Some("adfaf-adff-2421-bf13-adf23tafa21".into());
    status.source = Some(tepui_mesos::v1::TaskStatusSource::Executor);
    status.timestamp = Some(1_501_191_957.5);
    let ev = Event::task_updated(
        "49154f1b-8cf6-4421-bf13-8bd11dccd1f1".into(),
        status,
        TaskState::Running,
    );
    assert_json_eq(
        &serde_json::to_value(ev).unwrap(),
        &fixture("operator/task_updated_event.json"),
    );

    assert_eq!(
        serde_json::to_value(Event::heartbeat()).unwrap(),
        fixture("operator/heartbeat_event.json")
    );
    assert_eq!(
        serde_json::to_value(Call::new(CallType::Subscribe)).unwrap(),
        fixture("operator/subscribe_call.json")
    );

    let roles = Response::get_roles(master::GetRoles {
        roles: vec![tepui_mesos::v1::Role {
            name: "*".into(),
            weight: 1.0,
            frameworks: vec![],
            resources: vec![Resource::cpus(1.0)],
        }],
    });
    assert_eq!(
        serde_json::to_value(roles).unwrap(),
        json!({"type": "GET_ROLES", "get_roles": {"roles": [{"name": "*", "weight": 1.0, "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}
        ]}]}})
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let mut v = fixture("operator/get_agents_response.json");
    v["get_agents"]["agents"][0]["future"] = json!({"a": 1});
    v["get_agents"]["agents"][0]["agent_info"]["future"] = json!(2);
    v["get_agents"]["future"] = json!([]);
    let resp: Response = serde_json::from_value(v).unwrap();
    assert_json_eq(
        &serde_json::to_value(&resp).unwrap(),
        &fixture("operator/get_agents_response.json"),
    );
}
