//! `/metrics/snapshot`: a flat JSON object of metric name to number
//! (`{"master/cpus_total": 4.0, "master/elected": 1.0, ...}`), and the names Mesos' master
//! publishes that dashboards and alerts commonly read.
//!
//! Gauges describe the present (`tasks_running`); counters only grow (`tasks_finished`).
//! Per-framework metrics (`master/frameworks/<name>/<id>/...`) and allocator internals are
//! left to the server.

use std::collections::BTreeMap;

/// The body of `/metrics/snapshot`.
pub type Snapshot = BTreeMap<String, f64>;

macro_rules! metric_names {
    ($($(#[$meta:meta])* $konst:ident = $name:literal;)*) => {
        $( $(#[$meta])* pub const $konst: &str = $name; )*

        /// Every name declared in this module, in declaration order.
        pub const MASTER_METRICS: &[&str] = &[$($name),*];
    };
}

metric_names! {
    // Whether this master leads, and for how long it has run.
    /// 1 on the elected (leading) master, 0 elsewhere.
    MASTER_ELECTED = "master/elected";
    MASTER_UPTIME_SECS = "master/uptime_secs";

    // Cluster resources (gauges). Memory and disk are in MB.
    MASTER_CPUS_TOTAL = "master/cpus_total";
    MASTER_CPUS_USED = "master/cpus_used";
    MASTER_CPUS_PERCENT = "master/cpus_percent";
    MASTER_CPUS_REVOCABLE_TOTAL = "master/cpus_revocable_total";
    MASTER_CPUS_REVOCABLE_USED = "master/cpus_revocable_used";
    MASTER_CPUS_REVOCABLE_PERCENT = "master/cpus_revocable_percent";
    MASTER_MEM_TOTAL = "master/mem_total";
    MASTER_MEM_USED = "master/mem_used";
    MASTER_MEM_PERCENT = "master/mem_percent";
    MASTER_MEM_REVOCABLE_TOTAL = "master/mem_revocable_total";
    MASTER_MEM_REVOCABLE_USED = "master/mem_revocable_used";
    MASTER_MEM_REVOCABLE_PERCENT = "master/mem_revocable_percent";
    MASTER_DISK_TOTAL = "master/disk_total";
    MASTER_DISK_USED = "master/disk_used";
    MASTER_DISK_PERCENT = "master/disk_percent";
    MASTER_DISK_REVOCABLE_TOTAL = "master/disk_revocable_total";
    MASTER_DISK_REVOCABLE_USED = "master/disk_revocable_used";
    MASTER_DISK_REVOCABLE_PERCENT = "master/disk_revocable_percent";
    MASTER_GPUS_TOTAL = "master/gpus_total";
    MASTER_GPUS_USED = "master/gpus_used";
    MASTER_GPUS_PERCENT = "master/gpus_percent";
    MASTER_GPUS_REVOCABLE_TOTAL = "master/gpus_revocable_total";
    MASTER_GPUS_REVOCABLE_USED = "master/gpus_revocable_used";
    MASTER_GPUS_REVOCABLE_PERCENT = "master/gpus_revocable_percent";

    // Agents.
    MASTER_SLAVES_ACTIVE = "master/slaves_active";
    MASTER_SLAVES_INACTIVE = "master/slaves_inactive";
    MASTER_SLAVES_CONNECTED = "master/slaves_connected";
    MASTER_SLAVES_DISCONNECTED = "master/slaves_disconnected";
    MASTER_SLAVES_UNREACHABLE = "master/slaves_unreachable";
    MASTER_SLAVE_REGISTRATIONS = "master/slave_registrations";
    MASTER_SLAVE_REREGISTRATIONS = "master/slave_reregistrations";
    MASTER_SLAVE_REMOVALS = "master/slave_removals";
    MASTER_SLAVE_UNREACHABLE_SCHEDULED = "master/slave_unreachable_scheduled";
    MASTER_SLAVE_UNREACHABLE_COMPLETED = "master/slave_unreachable_completed";
    MASTER_SLAVE_UNREACHABLE_CANCELED = "master/slave_unreachable_canceled";
    MASTER_RECOVERY_SLAVE_REMOVALS = "master/recovery_slave_removals";

    // Frameworks and offers.
    MASTER_FRAMEWORKS_ACTIVE = "master/frameworks_active";
    MASTER_FRAMEWORKS_INACTIVE = "master/frameworks_inactive";
    MASTER_FRAMEWORKS_CONNECTED = "master/frameworks_connected";
    MASTER_FRAMEWORKS_DISCONNECTED = "master/frameworks_disconnected";
    MASTER_OUTSTANDING_OFFERS = "master/outstanding_offers";

    // Tasks: gauges for the live states, counters for the terminal ones.
    MASTER_TASKS_STAGING = "master/tasks_staging";
    MASTER_TASKS_STARTING = "master/tasks_starting";
    MASTER_TASKS_RUNNING = "master/tasks_running";
    MASTER_TASKS_KILLING = "master/tasks_killing";
    MASTER_TASKS_UNREACHABLE = "master/tasks_unreachable";
    MASTER_TASKS_FINISHED = "master/tasks_finished";
    MASTER_TASKS_FAILED = "master/tasks_failed";
    MASTER_TASKS_KILLED = "master/tasks_killed";
    MASTER_TASKS_LOST = "master/tasks_lost";
    MASTER_TASKS_ERROR = "master/tasks_error";
    MASTER_TASKS_DROPPED = "master/tasks_dropped";
    MASTER_TASKS_GONE = "master/tasks_gone";
    MASTER_TASKS_GONE_BY_OPERATOR = "master/tasks_gone_by_operator";

    // Messages and status updates (counters).
    MASTER_DROPPED_MESSAGES = "master/dropped_messages";
    MASTER_VALID_STATUS_UPDATES = "master/valid_status_updates";
    MASTER_INVALID_STATUS_UPDATES = "master/invalid_status_updates";
    MASTER_VALID_STATUS_UPDATE_ACKNOWLEDGEMENTS = "master/valid_status_update_acknowledgements";
    MASTER_INVALID_STATUS_UPDATE_ACKNOWLEDGEMENTS = "master/invalid_status_update_acknowledgements";
    MASTER_MESSAGES_LAUNCH_TASKS = "master/messages_launch_tasks";
    MASTER_MESSAGES_DECLINE_OFFERS = "master/messages_decline_offers";
    MASTER_MESSAGES_REVIVE_OFFERS = "master/messages_revive_offers";
    MASTER_MESSAGES_SUPPRESS_OFFERS = "master/messages_suppress_offers";
    MASTER_MESSAGES_KILL_TASK = "master/messages_kill_task";
    MASTER_MESSAGES_RECONCILE_TASKS = "master/messages_reconcile_tasks";
    MASTER_MESSAGES_STATUS_UPDATE = "master/messages_status_update";
    MASTER_MESSAGES_STATUS_UPDATE_ACKNOWLEDGEMENT = "master/messages_status_update_acknowledgement";

    // Event queues and the operator stream.
    MASTER_EVENT_QUEUE_MESSAGES = "master/event_queue_messages";
    MASTER_EVENT_QUEUE_DISPATCHES = "master/event_queue_dispatches";
    MASTER_EVENT_QUEUE_HTTP_REQUESTS = "master/event_queue_http_requests";
    MASTER_OPERATOR_EVENT_STREAM_SUBSCRIBERS = "master/operator_event_stream_subscribers";

    // The master's own machine.
    SYSTEM_CPUS_TOTAL = "system/cpus_total";
    SYSTEM_LOAD_1MIN = "system/load_1min";
    SYSTEM_LOAD_5MIN = "system/load_5min";
    SYSTEM_LOAD_15MIN = "system/load_15min";
    SYSTEM_MEM_TOTAL_BYTES = "system/mem_total_bytes";
    SYSTEM_MEM_FREE_BYTES = "system/mem_free_bytes";

    // The registry (Raft in tepui's case) and allocator.
    REGISTRAR_STATE_FETCH_MS = "registrar/state_fetch_ms";
    REGISTRAR_STATE_STORE_MS = "registrar/state_store_ms";
    REGISTRAR_LOG_RECOVERED = "registrar/log/recovered";
    ALLOCATOR_ALLOCATION_RUNS = "allocator/mesos/allocation_runs";
    ALLOCATOR_ALLOCATION_RUN_MS = "allocator/mesos/allocation_run_ms";
    ALLOCATOR_EVENT_QUEUE_DISPATCHES = "allocator/mesos/event_queue_dispatches";
}

/// The master counter for tasks that ended in `state` (`master/tasks_<state>`), or the gauge
/// for a live state; `None` for states Mesos has no master metric for.
pub fn task_state_metric(state: &crate::v1::TaskState) -> Option<&'static str> {
    use crate::v1::TaskState as S;
    Some(match state {
        S::Staging => MASTER_TASKS_STAGING,
        S::Starting => MASTER_TASKS_STARTING,
        S::Running => MASTER_TASKS_RUNNING,
        S::Killing => MASTER_TASKS_KILLING,
        S::Unreachable => MASTER_TASKS_UNREACHABLE,
        S::Finished => MASTER_TASKS_FINISHED,
        S::Failed => MASTER_TASKS_FAILED,
        S::Killed => MASTER_TASKS_KILLED,
        S::Lost => MASTER_TASKS_LOST,
        S::Error => MASTER_TASKS_ERROR,
        S::Dropped => MASTER_TASKS_DROPPED,
        S::Gone => MASTER_TASKS_GONE,
        S::GoneByOperator => MASTER_TASKS_GONE_BY_OPERATOR,
        S::TaskUnknown | S::Unknown(_) => return None,
    })
}
