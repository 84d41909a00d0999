//! Enums, bytes, ranges, durations and the small resource helpers.

use std::time::Duration;

use serde_json::json;
use tepui_mesos::v1::{
    pack_ipv4, scalar_total, DurationInfo, Filters, FrameworkCapabilityType, Range, Ranges, ReservationType, Resource,
    ResourceTotals, TaskState, TaskStatusReason, TimeInfo,
};
use tepui_mesos::Bytes;

#[test]
fn all_fourteen_task_states_by_mesos_name() {
    let names: Vec<&str> = TaskState::KNOWN.iter().map(TaskState::as_str).collect();
    assert_eq!(
        names,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_KILLING",
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_ERROR",
            "TASK_LOST",
            "TASK_DROPPED",
            "TASK_UNREACHABLE",
            "TASK_GONE",
            "TASK_GONE_BY_OPERATOR",
            "TASK_UNKNOWN",
        ]
    );
    for s in TaskState::KNOWN {
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v, json!(s.as_str()));
        assert_eq!(&serde_json::from_value::<TaskState>(v).unwrap(), s);
        assert_eq!(&s.as_str().parse::<TaskState>().unwrap(), s);
        assert_eq!(s.to_string(), s.as_str());
    }
    let terminal: Vec<&str> = TaskState::KNOWN
        .iter()
        .filter(|s| s.is_terminal())
        .map(TaskState::as_str)
        .collect();
    assert_eq!(
        terminal,
        [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_ERROR",
            "TASK_LOST",
            "TASK_DROPPED",
            "TASK_GONE",
            "TASK_GONE_BY_OPERATOR"
        ]
    );
    for s in [
        TaskState::Dropped,
        TaskState::Gone,
        TaskState::GoneByOperator,
        TaskState::TaskUnknown,
    ] {
        assert_eq!(s.for_framework(false), TaskState::Lost);
        assert_eq!(s.for_framework(true), s);
    }
    assert_eq!(TaskState::Running.for_framework(false), TaskState::Running);
}

#[test]
fn full_reason_list() {
    assert_eq!(TaskStatusReason::KNOWN.len(), 35);
    for r in TaskStatusReason::KNOWN {
        assert!(r.as_str().starts_with("REASON_"), "{r}");
        assert!(r.is_known());
    }
    assert_eq!(
        TaskStatusReason::from_name("REASON_AGENT_DRAINING"),
        TaskStatusReason::AgentDraining
    );
    assert_eq!(
        serde_json::to_value(TaskStatusReason::ContainerLimitationMemory).unwrap(),
        json!("REASON_CONTAINER_LIMITATION_MEMORY")
    );
}

#[test]
fn unknown_names_round_trip_verbatim() {
    let cap: FrameworkCapabilityType = serde_json::from_value(json!("UNKNOWN")).unwrap();
    assert_eq!(cap, FrameworkCapabilityType::Unknown("UNKNOWN".into()));
    assert_eq!(serde_json::to_value(&cap).unwrap(), json!("UNKNOWN"));
    let r: ReservationType = "LEASED".parse().unwrap();
    assert_eq!(r.to_string(), "LEASED");
    assert!(!r.is_known());
}

#[test]
fn bytes_are_standard_base64() {
    let b = Bytes::from(*b"\x00\x01\xfe\xff");
    assert_eq!(serde_json::to_value(&b).unwrap(), json!("AAH+/w=="));
    assert_eq!(serde_json::from_value::<Bytes>(json!("AAH+/w==")).unwrap(), b);
    assert_eq!(
        serde_json::from_value::<Bytes>(json!("AAH+/w")).unwrap(),
        b,
        "padding optional on input"
    );
    assert!(
        serde_json::from_value::<Bytes>(json!("AAH-_w==")).is_err(),
        "url-safe alphabet is not Mesos'"
    );
    assert_eq!(format!("{b:?}"), "Bytes(AAH+/w==)");
}

#[test]
fn ranges_and_totals() {
    assert_eq!(Range::new(31000, 31000).len(), 1);
    assert_eq!(Range::new(5, 4).len(), 0);
    let r = Ranges::new([(10, 20), (1, 3), (4, 5), (15, 30), (40, 39)]);
    assert_eq!(r.coalesced(), Ranges::new([(1, 5), (10, 30)]));
    assert_eq!(r.count(), 5 + 21);
    assert_eq!(r.coalesced().to_string(), "[1-5, 10-30]");
    assert_eq!(Ranges::default().to_string(), "[]");
    assert_eq!(
        Ranges::new([(u64::MAX - 1, u64::MAX), (0, 0)]).coalesced().range.len(),
        2
    );

    let res = vec![
        Resource::cpus(1.5),
        Resource::cpus(0.5).reserved(ReservationType::Dynamic, "db", Some("ops".into())),
        Resource::mem(256.0),
        Resource::disk(100.0),
        Resource::gpus(1.0),
        Resource {
            revocable: Some(Default::default()),
            ..Resource::mem(100.0)
        },
    ];
    assert_eq!(scalar_total(&res, "cpus"), 2.0);
    assert_eq!(scalar_total(&res, "mem"), 256.0, "revocable excluded");
    let totals = ResourceTotals::of(&res);
    assert_eq!(totals.scalar("mem_revocable"), 100.0);
    assert_eq!(totals.scalar("absent"), 0.0);
    assert_eq!(res[1].reservation_role(), Some("db"));
    assert_eq!(
        serde_json::to_value(&res[1]).unwrap(),
        json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
               "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "ops"}]})
    );
    // Pre-refinement format: role "*" is unreserved, any other role is reserved.
    let legacy_reserved: Resource =
        serde_json::from_value(json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": "web"}))
            .unwrap();
    assert_eq!(legacy_reserved.reservation_role(), Some("web"));
    let legacy_unreserved: Resource =
        serde_json::from_value(json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": "*"})).unwrap();
    assert!(!legacy_unreserved.is_reserved());
}

#[test]
fn filters_durations_times_addresses() {
    assert_eq!(Filters::effective_refuse_seconds(None), 5.0);
    assert_eq!(Filters::effective_refuse_seconds(Some(&Filters::default())), 5.0);
    assert_eq!(Filters::effective_refuse_seconds(Some(&Filters::refuse(-1.0))), 5.0);
    assert_eq!(Filters::effective_refuse_seconds(Some(&Filters::refuse(0.0))), 0.0);
    assert_eq!(
        Filters::effective_refuse_seconds(Some(&Filters::refuse(1e9))),
        31_536_000.0
    );

    let d = DurationInfo::from(Duration::from_millis(1500));
    assert_eq!(d.nanoseconds, 1_500_000_000);
    assert_eq!(d.as_secs_f64(), 1.5);
    assert_eq!(DurationInfo::from_secs_f64(0.25).to_std(), Duration::from_millis(250));
    assert_eq!(DurationInfo::from_nanos(-5).to_std(), Duration::ZERO);
    assert_eq!(TimeInfo::from_millis(1_500).as_secs_f64(), 1.5);

    assert_eq!(pack_ipv4("127.0.1.1".parse().unwrap()), 16_842_879);
}
