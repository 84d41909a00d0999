//! The agent's own numbers, on its HTTP port's `/metrics` (scrape every agent), beside its
//! gateway's counters and the process's. The leader shows a few of them per agent too, from
//! the heartbeats (`tepui_proto::agent::AgentLoad`).

use std::time::Duration;

use tepui_metrics::{Counter, Encoder, Histogram, Kind, SLOW_BUCKETS};

use crate::http::HttpState;

pub(crate) struct TaskStats {
    /// From the launch reaching the agent to the task running (image pull, rootfs, container).
    pub launch: Histogram,
    /// Launches that ended before running: no image, no rootfs, the container did not start.
    pub launch_failures: Counter,
    /// Kills that did not reach their task's shim (each is tried again).
    pub kill_failures: Counter,
    pub pull: Histogram,
    pulls_ok: Counter,
    pulls_failed: Counter,
}

impl Default for TaskStats {
    fn default() -> TaskStats {
        TaskStats {
            launch: Histogram::new(SLOW_BUCKETS),
            launch_failures: Counter::default(),
            kill_failures: Counter::default(),
            pull: Histogram::new(SLOW_BUCKETS),
            pulls_ok: Counter::default(),
            pulls_failed: Counter::default(),
        }
    }
}

impl TaskStats {
    pub fn pulled(&self, took: Duration, ok: bool) {
        self.pull.observe(took);
        if ok {
            self.pulls_ok.inc();
        } else {
            self.pulls_failed.inc();
        }
    }
}

/// The agent's `/metrics`.
pub(crate) fn render(s: &HttpState) -> String {
    let mut enc = Encoder::new();
    let st = s.tasks.stats();
    enc.single(
        "tepui_agent_containers",
        "Tasks (containers and host tasks) running on this agent.",
        Kind::Gauge,
        s.tasks.running_count() as f64,
    );
    enc.single(
        "tepui_agent_status_updates_queued",
        "Status updates written on this agent and not yet acknowledged by the leader.",
        Kind::Gauge,
        s.tasks.updates_queued() as f64,
    );
    enc.single_histogram(
        "tepui_agent_task_launch_duration_seconds",
        "From a launch reaching the agent to its task running (image pull, rootfs, container start).",
        &st.launch,
    );
    enc.single(
        "tepui_agent_task_launch_failures_total",
        "Launches that failed before their task ran.",
        Kind::Counter,
        st.launch_failures.get() as f64,
    );
    enc.single(
        "tepui_agent_task_kill_failures_total",
        "Kills that did not reach their task's shim; each is tried again until the task ends.",
        Kind::Counter,
        st.kill_failures.get() as f64,
    );
    enc.family(
        "tepui_agent_image_pulls_total",
        "Image pulls, by result.",
        Kind::Counter,
    )
    .sample(
        "tepui_agent_image_pulls_total",
        &[("result", "ok")],
        st.pulls_ok.get() as f64,
    )
    .sample(
        "tepui_agent_image_pulls_total",
        &[("result", "failed")],
        st.pulls_failed.get() as f64,
    );
    enc.single_histogram(
        "tepui_agent_image_pull_duration_seconds",
        "How long image pulls took.",
        &st.pull,
    );
    enc.raw(&s.gateway.metrics());
    tepui_metrics::process::render(&mut enc);
    enc.finish()
}
