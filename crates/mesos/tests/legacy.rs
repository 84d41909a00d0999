//! The legacy `/master/*` JSON endpoints and `/metrics/snapshot`.

mod common;

use common::{assert_json_eq, fixture, roundtrip};
use serde_json::json;
use tepui_mesos::legacy::{
    self, flat_attributes, flat_resources, FlatValue, Frameworks, Roles, Slaves, State, StateSummary, TaskStateCounts,
    Tasks,
};
use tepui_mesos::metrics::{self, Snapshot};
use tepui_mesos::v1::{
    self, AgentCapabilityType, AgentInfo, Attribute, ContainerStatus, IpAddress, Labels, NetworkInfo, Resource,
    TaskState, TaskStatus,
};

#[test]
fn state_round_trips_with_legacy_names() {
    let state: State = roundtrip("legacy/state.json");
    assert_eq!(state.hostname, "master-1");
    assert_eq!(state.leader_info.as_ref().unwrap().port, 5050);
    assert_eq!(state.flags["quorum"], "1");

    let slave = &state.slaves[0];
    assert_eq!(slave.info.id, "628984d0-4213-4140-bcb0-99d7ef46b1df-S0");
    assert_eq!(slave.resources["cpus"], FlatValue::Number(4.0));
    assert_eq!(slave.resources["ports"], FlatValue::Text("[31000-32000]".into()));
    assert_eq!(slave.info.attributes["ssd"].as_f64(), Some(1.0));
    assert_eq!(slave.reserved_resources["db"]["mem"].as_f64(), Some(512.0));
    assert_eq!(slave.capabilities[2], AgentCapabilityType::ReservationRefinement);
    assert!(slave.reserved_resources_full.is_none(), "/state has no *_full fields");

    let fw = &state.frameworks[0];
    assert_eq!(fw.summary.name, "marathon");
    assert_eq!(fw.role.as_deref(), Some("*"));
    assert!(fw.roles.is_none());
    let task = &fw.tasks[0];
    assert_eq!(task.slave_id, slave.info.id);
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.statuses[1].healthy, Some(true));
    let net = &task.statuses[1].container_status.as_ref().unwrap().network_infos[0];
    assert_eq!(net.ip_addresses[0].ip_address.as_deref(), Some("10.0.0.10"));
    assert_eq!(
        net.labels.as_ref().unwrap()[0].key,
        "net",
        "legacy labels are a bare array"
    );
    assert_eq!(
        task.discovery.as_ref().unwrap().ports.as_ref().unwrap().ports[0].number,
        31000
    );
    assert_eq!(fw.completed_tasks[0].limits.as_ref().unwrap()["cpus"], 2.0);
    assert_eq!(fw.executors[0].command.argv, ["exec", "--flag"]);
    assert_eq!(fw.offers[0].allocation_info.role.as_deref(), Some("*"));
}

#[test]
fn state_summary_frameworks_tasks_slaves_roles_round_trip() {
    let summary: StateSummary = roundtrip("legacy/state_summary.json");
    let s = &summary.slaves[0];
    assert_eq!(s.task_counts.running, 2);
    assert_eq!(s.task_counts.finished, 5);
    assert_eq!(s.framework_ids.len(), 1);
    assert_eq!(s.slave.info.hostname, "agent-0.example.com");
    assert_eq!(summary.frameworks[0].slave_ids[0], s.slave.info.id);

    let tasks: Tasks = roundtrip("legacy/tasks.json");
    assert_eq!(tasks.tasks[0].role.as_deref(), Some("web"));

    let frameworks: Frameworks = roundtrip("legacy/frameworks.json");
    assert_eq!(
        frameworks.frameworks[0].roles.as_deref(),
        Some(&["analytics".to_owned(), "etl".to_owned()][..])
    );
    assert_eq!(frameworks.frameworks[0].reregistered_time, Some(1_470_820_199.0));

    let slaves: Slaves = roundtrip("legacy/slaves.json");
    let slave = &slaves.slaves[0];
    assert!(!slave.active);
    assert_eq!(slave.resources["cpus_revocable"].as_f64(), Some(2.0));
    let full = slave.reserved_resources_full.as_ref().unwrap();
    assert_eq!(full["db"][0].reservation_role(), Some("db"));
    assert_eq!(slave.unreserved_resources_full.as_ref().unwrap()[1].name, "ports");

    let roles: Roles = roundtrip("legacy/roles.json");
    let quota = roles.roles[1].quota.as_ref().unwrap();
    assert_eq!(quota.guarantee["cpus"], 1.0);
    assert_eq!(quota.limit["mem"], 2048.0);
}

#[test]
fn flat_resources_match_mesos_model() {
    let resources = vec![
        Resource::cpus(0.5),
        Resource::cpus(1.25),
        Resource::mem(128.0),
        Resource::ports([(31010, 31011), (31000, 31000)]),
        Resource::ports([(31001, 31001)]),
        Resource::set("gpus_ids", ["b", "a"]),
        Resource {
            revocable: Some(Default::default()),
            ..Resource::cpus(2.0)
        },
    ];
    assert_eq!(
        serde_json::to_value(flat_resources(&resources)).unwrap(),
        json!({
            "cpus": 1.75, "gpus": 0.0, "mem": 128.0, "disk": 0.0,
            "ports": "[31000-31001, 31010-31011]",
            "gpus_ids": "{a, b}",
            "cpus_revocable": 2.0
        })
    );
    // Nothing at all still reports the four standard scalars.
    assert_eq!(
        serde_json::to_value(flat_resources(&[])).unwrap(),
        json!({"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0})
    );
    // Three decimal digits of precision, as Mesos keeps.
    let r = [Resource::cpus(0.1), Resource::cpus(0.2)];
    assert_eq!(flat_resources(&r)["cpus"], FlatValue::Number(0.3));
}

#[test]
fn flat_attributes_match_mesos_model() {
    let mut ranges = Attribute::scalar("levels", 0.0);
    ranges.kind = v1::ValueType::Ranges;
    ranges.scalar = None;
    ranges.ranges = Some(v1::Ranges::new([(1, 3)]));
    let attrs = [Attribute::text("rack", "r1"), Attribute::scalar("ssd", 1.0), ranges];
    assert_eq!(
        serde_json::to_value(flat_attributes(&attrs)).unwrap(),
        json!({"rack": "r1", "ssd": 1.0, "levels": "[1-3]"})
    );
    let info = AgentInfo {
        hostname: "agent-0".into(),
        port: None,
        resources: vec![],
        attributes: attrs.to_vec(),
        id: Some("S0".into()),
        domain: None,
    };
    assert_eq!(
        serde_json::to_value(legacy::SlaveInfo::from_v1(&info)).unwrap(),
        json!({"id": "S0", "hostname": "agent-0", "port": 5051, "attributes": {"rack": "r1", "ssd": 1.0, "levels": "[1-3]"}})
    );
}

#[test]
fn task_from_v1_renames_to_legacy_fields() {
    let mut status = TaskStatus::new("web.1", TaskState::Running);
    status.timestamp = Some(1_470_820_172.5);
    status.healthy = Some(true);
    status.labels = Some(Labels::from_pairs([("k", "v")]));
    status.container_status = Some(ContainerStatus {
        network_infos: vec![NetworkInfo {
            ip_addresses: vec![IpAddress {
                protocol: None,
                ip_address: Some("10.0.0.5".into()),
            }],
            labels: Some(Labels::from_pairs([("net", "blue")])),
            ..Default::default()
        }],
        ..Default::default()
    });
    let task = v1::Task {
        name: "web".into(),
        task_id: "web.1".into(),
        framework_id: "fw-1".into(),
        executor_id: None,
        agent_id: "S0".into(),
        state: TaskState::Running,
        resources: vec![
            Resource::cpus(0.5).allocated_to("web"),
            Resource::mem(64.0).allocated_to("web"),
        ],
        statuses: vec![status],
        status_update_state: None,
        status_update_uuid: None,
        labels: Some(Labels::from_pairs([("app", "web")])),
        discovery: None,
        container: None,
        health_check: None,
        kill_policy: None,
        user: Some("nobody".into()),
        limits: Default::default(),
    };
    assert_eq!(
        serde_json::to_value(legacy::Task::from_v1(&task)).unwrap(),
        json!({
            "id": "web.1",
            "name": "web",
            "framework_id": "fw-1",
            "executor_id": "",
            "slave_id": "S0",
            "state": "TASK_RUNNING",
            "resources": {"cpus": 0.5, "gpus": 0.0, "mem": 64.0, "disk": 0.0},
            "role": "web",
            "statuses": [{
                "state": "TASK_RUNNING",
                "timestamp": 1470820172.5,
                "labels": [{"key": "k", "value": "v"}],
                "container_status": {"network_infos": [{
                    "labels": [{"key": "net", "value": "blue"}],
                    "ip_addresses": [{"ip_address": "10.0.0.5"}]
                }]},
                "healthy": true
            }],
            "user": "nobody",
            "labels": [{"key": "app", "value": "web"}]
        })
    );
}

#[test]
fn offer_and_executor_from_v1() {
    let offer: v1::Offer = serde_json::from_value(json!({
        "id": {"value": "O1"}, "framework_id": {"value": "F1"}, "agent_id": {"value": "S1"}, "hostname": "h",
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}}],
        "allocation_info": {"role": "web"}
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(legacy::Offer::from_v1(&offer)).unwrap(),
        json!({"id": "O1", "framework_id": "F1", "allocation_info": {"role": "web"}, "slave_id": "S1",
               "resources": {"cpus": 2.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}})
    );

    let mut exec = v1::ExecutorInfo::new("E1");
    exec.framework_id = Some("F1".into());
    exec.command = Some(v1::CommandInfo {
        uris: vec![v1::CommandUri {
            value: "u".into(),
            executable: None,
            extract: None,
            cache: None,
            output_file: None,
        }],
        ..v1::CommandInfo::shell("run")
    });
    assert_eq!(
        serde_json::to_value(legacy::Executor::from_v1(&exec, &"S1".into())).unwrap(),
        json!({"executor_id": "E1", "name": "", "framework_id": "F1",
               "command": {"shell": true, "value": "run", "argv": [], "uris": [{"value": "u", "executable": false}]},
               "resources": {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}, "slave_id": "S1"})
    );
    // With resources but no allocation role, Mesos writes an empty role.
    exec.resources = vec![Resource::cpus(0.1)];
    assert_eq!(legacy::Executor::from_v1(&exec, &"S1".into()).role.as_deref(), Some(""));
}

#[test]
fn task_state_counts_cover_the_ten_reported_states() {
    let mut counts = TaskStateCounts::default();
    for s in TaskState::KNOWN {
        counts.count(s);
    }
    counts.count(&TaskState::Unknown("TASK_NEW".into()));
    let v = serde_json::to_value(counts).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 10);
    assert!(obj.values().all(|n| n == &json!(1)));
    assert!(obj.contains_key("TASK_UNREACHABLE") && !obj.contains_key("TASK_GONE"));
}

#[test]
fn unknown_fields_in_legacy_documents_are_ignored() {
    let mut v = fixture("legacy/state.json");
    v["unknown_top"] = json!(1);
    v["slaves"][0]["drain_info"] = json!({"state": "DRAINING"});
    v["frameworks"][0]["tasks"][0]["unknown"] = json!("x");
    let state: State = serde_json::from_value(v).unwrap();
    assert_json_eq(&serde_json::to_value(&state).unwrap(), &fixture("legacy/state.json"));
}

#[test]
fn metrics_snapshot_is_a_flat_map_with_mesos_names() {
    let snap: Snapshot = roundtrip("legacy/metrics_snapshot.json");
    assert_eq!(snap[metrics::MASTER_CPUS_TOTAL], 8.0);
    assert_eq!(snap[metrics::MASTER_ELECTED], 1.0);
    for name in snap.keys() {
        if name.starts_with("master/") || name.starts_with("system/") {
            assert!(metrics::MASTER_METRICS.contains(&name.as_str()), "{name} not listed");
        }
    }
    for required in [
        "master/cpus_total",
        "master/cpus_used",
        "master/mem_total",
        "master/mem_used",
        "master/disk_total",
        "master/disk_used",
        "master/tasks_running",
        "master/tasks_staging",
        "master/tasks_finished",
        "master/tasks_failed",
        "master/tasks_killed",
        "master/tasks_lost",
        "master/frameworks_active",
        "master/slaves_active",
        "master/elected",
        "master/uptime_secs",
    ] {
        assert!(metrics::MASTER_METRICS.contains(&required), "{required}");
    }
    let mut unique = metrics::MASTER_METRICS.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), metrics::MASTER_METRICS.len(), "duplicate metric names");
    assert_eq!(
        metrics::task_state_metric(&TaskState::Killed),
        Some("master/tasks_killed")
    );
    assert_eq!(metrics::task_state_metric(&TaskState::TaskUnknown), None);
}
