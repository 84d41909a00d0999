//! The v1 scheduler API: fixtures round-trip, field names are Mesos', unknown fields are
//! ignored, unknown enum names are kept, and constructors build well-formed calls.

mod common;

use common::{assert_json_eq, fixture, fixtures_in, roundtrip};
use serde_json::json;
use tepui_mesos::scheduler::{Call, CallError, CallType, Event, EventType, ReconcileTask, Response};
use tepui_mesos::v1::{
    CommandInfo, ContainerInfo, DurationInfo, EnvironmentVariableType, Filters, FrameworkCapabilityType, FrameworkId,
    FrameworkInfo, OfferOperation, OfferOperationType, ReservationType, Resource, ResourceTotals, TaskInfo, TaskState,
    TaskStatus, TaskStatusReason, TaskStatusSource, ValueType,
};
use tepui_mesos::Bytes;

const FID: &str = "5f6a1e2b-0c1d-4e5f-9a8b-7c6d5e4f3a2b-0001";

#[test]
fn every_scheduler_fixture_round_trips() {
    let files = fixtures_in("scheduler");
    assert!(files.len() >= 30, "fixtures missing: {files:?}");
    for f in files {
        if f.ends_with("_event.json") {
            roundtrip::<Event>(&f);
        } else if f.ends_with("_response.json") {
            roundtrip::<Response>(&f);
        } else {
            let call = roundtrip::<Call>(&f);
            call.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}

#[test]
fn subscribe_call_fields() {
    let call: Call = roundtrip("scheduler/subscribe.json");
    assert_eq!(call.kind, CallType::Subscribe);
    assert!(call.framework_id.is_none());
    let sub = call.subscribe.expect("subscribe body");
    let info = &sub.framework_info;
    assert_eq!(info.user, "root");
    assert_eq!(info.name, "Example HTTP Framework");
    assert_eq!(info.failover_timeout, Some(604_800.0));
    assert_eq!(info.checkpoint, Some(true));
    assert!(info.has_capability(&FrameworkCapabilityType::MultiRole));
    assert!(info.has_capability(&FrameworkCapabilityType::PartitionAware));
    assert!(info.has_capability(&FrameworkCapabilityType::ReservationRefinement));
    assert_eq!(info.effective_roles(), vec!["analytics".to_owned(), "web".to_owned()]);
    assert_eq!(info.labels.as_ref().unwrap().get("team"), Some("data"));
    assert_eq!(sub.suppressed_roles, vec!["web"]);
    let filter = &info.offer_filters["analytics"];
    let q = &filter.min_allocatable_resources.as_ref().unwrap().quantities[0].quantities;
    assert_eq!(q["cpus"].value, 1.0);
}

#[test]
fn resubscribe_uses_the_single_role_and_the_framework_id() {
    let call: Call = roundtrip("scheduler/resubscribe.json");
    let info = &call.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(call.framework_id, info.id);
    assert_eq!(info.effective_roles(), vec!["batch".to_owned()]);
    call.validate().unwrap();
}

#[test]
fn subscribed_event_fields() {
    let ev: Event = roundtrip("scheduler/subscribed_event.json");
    assert_eq!(ev.kind, EventType::Subscribed);
    let sub = ev.subscribed.unwrap();
    assert_eq!(sub.framework_id.value, FID);
    assert_eq!(sub.heartbeat_interval_seconds, Some(15.0));
    let master = sub.master_info.unwrap();
    assert_eq!(master.ip, tepui_mesos::v1::pack_ipv4("127.0.1.1".parse().unwrap()));
    assert_eq!(master.address.unwrap().port, 5050);
}

#[test]
fn offers_event_fields() {
    let ev: Event = roundtrip("scheduler/offers_event.json");
    assert_eq!(ev.kind, EventType::Offers);
    let offers = ev.offers.unwrap().offers;
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    assert_eq!(offer.hostname, "agent-3.example.com");
    assert_eq!(
        offer.allocation_info.as_ref().unwrap().role.as_deref(),
        Some("analytics")
    );
    assert_eq!(offer.executor_ids[0].value, "etl-executor");

    let refined = &offer.resources[4];
    assert_eq!(refined.reservations.len(), 2);
    assert_eq!(refined.reservations[0].kind, Some(ReservationType::Static));
    assert_eq!(refined.reservation_role(), Some("analytics/etl"));
    assert!(offer.resources[0].reservation_role().is_none());
    assert!(offer.resources[5].is_persistent_volume());
    assert!(offer.resources[7].is_revocable());

    let totals = ResourceTotals::of(&offer.resources);
    assert_eq!(totals.scalar("cpus"), 5.5);
    assert_eq!(totals.scalar("cpus_revocable"), 0.5);
    assert_eq!(totals.scalar("disk"), 21504.0);
    assert_eq!(totals.ranges["ports"].to_string(), "[31000-31099, 31200-32000]");
    assert_eq!(totals.ranges["ports"].count(), 100 + 801);
    assert_eq!(totals.sets["gpus"].len(), 2);
    assert_eq!(offer.attributes[0].kind, ValueType::Text);
}

#[test]
fn accept_with_launch_fields() {
    let call: Call = roundtrip("scheduler/accept_launch.json");
    assert_eq!(call.kind, CallType::Accept);
    let accept = call.accept.unwrap();
    assert_eq!(accept.offer_ids.len(), 2);
    assert_eq!(Filters::effective_refuse_seconds(accept.filters.as_ref()), 10.0);
    let op = &accept.operations[0];
    assert_eq!(op.kind, OfferOperationType::Launch);
    assert!(op.has_body());
    let task = &op.launch.as_ref().unwrap().task_infos[0];
    assert_eq!(task.task_id.value, "web.8f2e9c41");
    let cmd = task.command.as_ref().unwrap();
    assert!(!cmd.is_shell());
    assert_eq!(cmd.arguments, ["python3", "-m", "http.server", "31005"]);
    let env = &cmd.environment.as_ref().unwrap().variables;
    assert_eq!(env[1].kind, Some(EnvironmentVariableType::Secret));
    let container = task.container.as_ref().unwrap();
    assert_eq!(container.image_name(), Some("library/python:3.12-slim"));
    assert_eq!(container.network_infos[0].port_mappings[0].container_port, 8000);
    assert!(container.linux_info.is_some(), "opaque linux_info is carried");
    let hc = task.health_check.as_ref().unwrap();
    assert_eq!(hc.http.as_ref().unwrap().path.as_deref(), Some("/health"));
    let grace = task.kill_policy.as_ref().unwrap().grace_period.unwrap();
    assert_eq!(grace.to_std(), std::time::Duration::from_secs(30));
    assert_eq!(task.limits["cpus"].value, 1.0);
    assert_eq!(tepui_mesos::v1::scalar_total(&task.resources, "mem"), 256.0);
}

#[test]
fn accept_with_launch_group_and_reservations() {
    let call: Call = roundtrip("scheduler/accept_launch_group.json");
    let op = &call.accept.as_ref().unwrap().operations[0];
    assert_eq!(op.kind, OfferOperationType::LaunchGroup);
    assert_eq!(op.id.as_ref().unwrap().value, "op-pod-7");
    let group = op.launch_group.as_ref().unwrap();
    assert_eq!(group.task_group.tasks.len(), 2);
    assert_eq!(group.task_group.tasks[1].data.as_ref().unwrap().as_slice(), b"hello");

    let call: Call = roundtrip("scheduler/accept_reserve_create.json");
    let kinds: Vec<_> = call.accept.unwrap().operations.into_iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            OfferOperationType::Reserve,
            OfferOperationType::Create,
            OfferOperationType::Unreserve,
            OfferOperationType::Destroy
        ]
    );
}

#[test]
fn acknowledge_uuid_is_base64_bytes() {
    let call: Call = roundtrip("scheduler/acknowledge.json");
    let ack = call.acknowledge.unwrap();
    assert_eq!(ack.uuid.as_slice().len(), 16);
    assert_eq!(ack.uuid.to_base64(), "hTaLQ0b5Q1OZuab7QclTKQ==");

    // Unpadded text (as in Mesos' own docs) decodes too; output is always padded.
    let call: Call = serde_json::from_value(json!({
        "framework_id": {"value": FID},
        "type": "ACKNOWLEDGE",
        "acknowledge": {"agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": "jhadf73jhakdlfha723adf"}
    }))
    .unwrap();
    assert_eq!(call.acknowledge.unwrap().uuid.as_slice().len(), 16);

    let bad = serde_json::from_value::<Call>(json!({
        "framework_id": {"value": FID},
        "type": "ACKNOWLEDGE",
        "acknowledge": {"agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": "not base64!"}
    }));
    assert!(bad.unwrap_err().to_string().contains("invalid base64"));
}

#[test]
fn update_event_carries_a_full_task_status() {
    let ev: Event = roundtrip("scheduler/update_event.json");
    let status = ev.update.unwrap().status;
    assert_eq!(status.state, TaskState::Running);
    assert!(!status.state.is_terminal());
    assert_eq!(status.source, Some(TaskStatusSource::Executor));
    assert_eq!(status.reason, Some(TaskStatusReason::TaskHealthCheckStatusUpdated));
    assert_eq!(status.healthy, Some(true));
    assert_eq!(status.timestamp, Some(1_470_820_172.073_15));
    assert_eq!(status.uuid.as_ref().unwrap().as_slice().len(), 16);
    assert_eq!(status.data.as_ref().unwrap().as_slice(), br#"{"pid":42}"#);
    let cs = status.container_status.unwrap();
    assert_eq!(
        cs.network_infos[0].ip_addresses[0].ip_address.as_deref(),
        Some("172.17.0.4")
    );
    assert_eq!(cs.executor_pid, Some(19846));

    let ev: Event = roundtrip("scheduler/update_unreachable_event.json");
    let status = ev.update.unwrap().status;
    assert_eq!(status.state, TaskState::Unreachable);
    assert_eq!(status.state.for_framework(false), TaskState::Lost);
    assert_eq!(status.state.for_framework(true), TaskState::Unreachable);
    assert_eq!(status.unreachable_time.unwrap().nanoseconds, 1_470_820_290_000_000_000);
}

#[test]
fn reconcile_explicit_and_implicit() {
    let call: Call = roundtrip("scheduler/reconcile.json");
    let tasks = call.reconcile.unwrap().tasks;
    assert_eq!(tasks.len(), 2);
    assert!(tasks[1].agent_id.is_none());

    let call: Call = roundtrip("scheduler/reconcile_implicit.json");
    assert!(call.reconcile.unwrap().tasks.is_empty());

    // A RECONCILE with no body at all is implicit reconciliation too.
    let bare: Call = serde_json::from_value(json!({"framework_id": {"value": FID}, "type": "RECONCILE"})).unwrap();
    bare.validate().unwrap();
}

#[test]
fn revive_and_suppress_roles() {
    let call: Call = roundtrip("scheduler/revive.json");
    assert_eq!(call.revive.unwrap().roles, ["web"]);
    let call: Call = roundtrip("scheduler/suppress.json");
    assert_eq!(call.suppress.unwrap().roles, ["analytics", "web"]);
}

#[test]
fn kill_with_policy() {
    let call: Call = roundtrip("scheduler/kill.json");
    let kill = call.kill.unwrap();
    assert_eq!(kill.task_id.value, "web.8f2e9c41");
    assert_eq!(
        kill.kill_policy.unwrap().grace_period,
        Some(DurationInfo::from_nanos(0))
    );
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let mut v = fixture("scheduler/subscribe.json");
    v["force"] = json!(true);
    v["subscribe"]["force"] = json!(true);
    v["subscribe"]["framework_info"]["future_field"] = json!({"nested": [1, 2, 3]});
    v["subscribe"]["framework_info"]["capabilities"][0]["extra"] = json!("x");
    let call: Call = serde_json::from_value(v).unwrap();
    assert_json_eq(
        &serde_json::to_value(&call).unwrap(),
        &fixture("scheduler/subscribe.json"),
    );

    let mut v = fixture("scheduler/offers_event.json");
    v["offers"]["offers"][0]["resources"][0]["provider_extra"] = json!(1);
    v["offers"]["offers"][0]["brand_new"] = json!(null);
    let ev: Event = serde_json::from_value(v).unwrap();
    assert_json_eq(
        &serde_json::to_value(&ev).unwrap(),
        &fixture("scheduler/offers_event.json"),
    );
}

#[test]
fn unknown_enum_names_are_kept_not_rejected() {
    // A call type from a newer client parses, round-trips, and fails validation (not parsing).
    let v = json!({"framework_id": {"value": FID}, "type": "FUTURE_CALL", "future_call": {"x": 1}});
    let call: Call = serde_json::from_value(v).unwrap();
    assert_eq!(call.kind, CallType::Unknown("FUTURE_CALL".into()));
    assert!(!call.kind.is_known());
    assert_eq!(
        serde_json::to_value(&call).unwrap(),
        json!({"framework_id": {"value": FID}, "type": "FUTURE_CALL"})
    );
    assert_eq!(call.validate(), Err(CallError::UnknownType("FUTURE_CALL".into())));

    // An event type from a newer master.
    let ev: Event = serde_json::from_value(json!({"type": "SOMETHING_NEW"})).unwrap();
    assert_eq!(ev.kind.as_str(), "SOMETHING_NEW");

    // Capabilities, states, reasons, sources, operation types, resource types.
    let mut v = fixture("scheduler/subscribe.json");
    v["subscribe"]["framework_info"]["capabilities"][0]["type"] = json!("QUANTUM_AWARE");
    let call: Call = serde_json::from_value(v.clone()).unwrap();
    let caps = &call.subscribe.as_ref().unwrap().framework_info.capabilities;
    assert_eq!(
        caps[0].kind,
        Some(FrameworkCapabilityType::Unknown("QUANTUM_AWARE".into()))
    );
    assert_json_eq(&serde_json::to_value(&call).unwrap(), &v);

    let status: TaskStatus = serde_json::from_value(json!({
        "task_id": {"value": "t"},
        "state": "TASK_HIBERNATING",
        "reason": "REASON_SOLAR_FLARE",
        "source": "SOURCE_ORACLE"
    }))
    .unwrap();
    assert_eq!(status.state, TaskState::Unknown("TASK_HIBERNATING".into()));
    assert!(!status.state.is_terminal());
    assert_eq!(
        status.reason,
        Some(TaskStatusReason::Unknown("REASON_SOLAR_FLARE".into()))
    );
    assert_eq!(status.source, Some(TaskStatusSource::Unknown("SOURCE_ORACLE".into())));

    let op: OfferOperation = serde_json::from_value(json!({"type": "TELEPORT", "teleport": {}})).unwrap();
    assert_eq!(op.kind, OfferOperationType::Unknown("TELEPORT".into()));
    assert!(!op.has_body());

    let r: Resource = serde_json::from_value(json!({"name": "qubits", "type": "QUBITS"})).unwrap();
    assert_eq!(r.kind, ValueType::Unknown("QUBITS".into()));
    assert_eq!(ResourceTotals::of([&r]), ResourceTotals::default());
}

#[test]
fn enum_values_must_still_be_strings() {
    let err = serde_json::from_value::<TaskStatus>(json!({"task_id": {"value": "t"}, "state": 1})).unwrap_err();
    assert!(err.to_string().contains("TaskState"), "{err}");
}

#[test]
fn missing_required_fields_are_errors() {
    let err = serde_json::from_value::<Call>(json!({"framework_id": {"value": FID}})).unwrap_err();
    assert!(err.to_string().contains("`type`"), "{err}");

    let err = serde_json::from_value::<Call>(json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {"name": "no user"}}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("`user`"), "{err}");
}

#[test]
fn validate_checks_body_and_framework_id() {
    let fid = FrameworkId::new(FID);
    let no_body: Call = serde_json::from_value(json!({"framework_id": {"value": FID}, "type": "ACCEPT"})).unwrap();
    assert_eq!(
        no_body.validate(),
        Err(CallError::MissingBody {
            call: CallType::Accept,
            field: "accept"
        })
    );
    assert_eq!(
        no_body.validate().unwrap_err().to_string(),
        "ACCEPT call is missing its `accept` field"
    );

    let mut kill = Call::kill(fid.clone(), "t".into(), None);
    kill.framework_id = None;
    assert_eq!(
        kill.validate(),
        Err(CallError::MissingFrameworkId { call: CallType::Kill })
    );

    let mut info = FrameworkInfo::new("root", "fw");
    info.id = Some(FrameworkId::new("a"));
    let mut sub = Call::subscribe(info);
    sub.framework_id = Some(FrameworkId::new("b"));
    assert!(matches!(sub.validate(), Err(CallError::FrameworkIdMismatch { .. })));

    Call::teardown(fid).validate().unwrap();
}

#[test]
fn constructors_write_mesos_json() {
    let fid = FrameworkId::new(FID);
    let mut info = FrameworkInfo::new("root", "tepui-test");
    info.roles = vec!["web".into()];
    info.capabilities = vec![FrameworkCapabilityType::MultiRole.into()];
    assert_eq!(
        serde_json::to_value(Call::subscribe(info)).unwrap(),
        json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {
                "user": "root", "name": "tepui-test", "roles": ["web"], "capabilities": [{"type": "MULTI_ROLE"}]
            }}
        })
    );

    let task = TaskInfo::command(
        "sleep",
        "sleep-1",
        "agent-1",
        CommandInfo::shell("sleep 10"),
        vec![
            Resource::cpus(0.1).allocated_to("web"),
            Resource::ports([(31000, 31000)]),
        ],
    );
    let accept = Call::accept(
        fid.clone(),
        vec!["offer-1".into()],
        vec![OfferOperation::launch(vec![task])],
        Some(Filters::refuse(5.0)),
    );
    accept.validate().unwrap();
    assert_eq!(
        serde_json::to_value(&accept).unwrap(),
        json!({
            "framework_id": {"value": FID},
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [{"value": "offer-1"}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                    "name": "sleep",
                    "task_id": {"value": "sleep-1"},
                    "agent_id": {"value": "agent-1"},
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}, "allocation_info": {"role": "web"}},
                        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31000}]}}
                    ],
                    "command": {"shell": true, "value": "sleep 10"}
                }]}}],
                "filters": {"refuse_seconds": 5.0}
            }
        })
    );

    let ack = Call::acknowledge(fid.clone(), "agent-1".into(), "sleep-1".into(), Bytes::from([0u8; 16]));
    assert_eq!(
        serde_json::to_value(&ack).unwrap()["acknowledge"]["uuid"],
        json!("AAAAAAAAAAAAAAAAAAAAAA==")
    );

    let rec = Call::reconcile(
        fid.clone(),
        vec![ReconcileTask {
            task_id: "t1".into(),
            agent_id: None,
        }],
    );
    assert_eq!(
        serde_json::to_value(&rec).unwrap(),
        json!({"framework_id": {"value": FID}, "type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t1"}}]}})
    );

    assert_eq!(
        serde_json::to_value(Call::revive(fid.clone(), vec![])).unwrap(),
        json!({"framework_id": {"value": FID}, "type": "REVIVE", "revive": {}})
    );
    assert_eq!(
        serde_json::to_value(Event::heartbeat()).unwrap(),
        json!({"type": "HEARTBEAT"})
    );
    assert_eq!(
        serde_json::to_value(Event::rescind("o1".into())).unwrap(),
        json!({"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}})
    );
    assert_eq!(
        serde_json::to_value(Event::error("Framework failed over")).unwrap(),
        fixture("scheduler/error_event.json")
    );
    let mut status = TaskStatus::new("t1", TaskState::Finished);
    status.timestamp = Some(1.5);
    assert_eq!(
        serde_json::to_value(Event::update(status)).unwrap(),
        json!({"type": "UPDATE", "update": {"status": {"task_id": {"value": "t1"}, "state": "TASK_FINISHED", "timestamp": 1.5}}})
    );
    let offers = Event::offers(vec![]);
    assert_eq!(
        serde_json::to_value(offers).unwrap(),
        json!({"type": "OFFERS", "offers": {"offers": []}})
    );
}

#[test]
fn sixty_four_bit_integers_accept_numeric_strings() {
    let call: Call = serde_json::from_value(json!({
        "framework_id": {"value": FID},
        "type": "KILL",
        "kill": {"task_id": {"value": "t"}, "kill_policy": {"grace_period": {"nanoseconds": "5000000000"}}}
    }))
    .unwrap();
    let grace = call
        .kill
        .as_ref()
        .unwrap()
        .kill_policy
        .as_ref()
        .unwrap()
        .grace_period
        .unwrap();
    assert_eq!(grace.nanoseconds, 5_000_000_000);
    // Written back as a number.
    assert_eq!(
        serde_json::to_value(&call).unwrap()["kill"]["kill_policy"]["grace_period"]["nanoseconds"],
        json!(5_000_000_000i64)
    );

    let r: Resource = serde_json::from_value(json!({
        "name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": "31000", "end": 31010.0}]}
    }))
    .unwrap();
    assert_eq!(r.ranges.unwrap().range[0].len(), 11);

    assert!(serde_json::from_value::<DurationInfo>(json!({"nanoseconds": "soon"})).is_err());
    assert!(serde_json::from_value::<DurationInfo>(json!({"nanoseconds": 1.5})).is_err());
}

#[test]
fn mesos_doc_example_offer_shape_is_what_we_write() {
    // Mesos' scheduler doc shows offers with an `offer_id` field at the event's top level;
    // the proto (and real masters) nest them as `offers.offers[].id`. We follow the proto.
    let ev: Event = roundtrip("scheduler/offers_event.json");
    let v = serde_json::to_value(&ev).unwrap();
    assert!(v["offers"]["offers"][0]["id"]["value"].is_string());
}

#[test]
fn container_helper_builds_a_mesos_docker_image() {
    let c = ContainerInfo::mesos_docker_image("nginx:1.27");
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "nginx:1.27"}}}})
    );
}
