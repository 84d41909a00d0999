//! The last hour of a few of the server's numbers, for the web UI's plots
//! (`GET /v1/metrics/history`): every 10 s a sample of the applied state and of the API's
//! request counter, kept in memory in a ring of 360 points per series. Each server samples
//! its own copy of the state (a follower is at most a little behind) and its own requests;
//! nothing is replicated or kept across a restart.
//!
//! The sampling is pure ([`Reading::of`], [`History::record`]); [`run`] is the clock that
//! calls it, and stops with the server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use tepui_api::{MetricSeriesView, MetricsHistoryView};
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::{Error, ErrorKind};
use tepui_state::{NodeStatus, State as Replicated, TaskState};

/// Time between two samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept per series: an hour.
pub(crate) const POINTS: usize = 360;

/// A fixed number of the newest values; the oldest goes when a new one comes.
#[derive(Clone, Debug)]
pub(crate) struct Ring<T> {
    capacity: usize,
    items: VecDeque<T>,
}

impl<T: Clone> Ring<T> {
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            capacity,
            items: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Oldest first.
    pub fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// A series: its name, what it says, and its unit.
pub(crate) struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: &'static str,
}

/// Every series, in the order the API lists them.
pub(crate) const SERIES: [Series; 10] = [
    Series {
        name: "tasks_running",
        help: "Tasks running.",
        unit: "tasks",
    },
    Series {
        name: "tasks_staging",
        help: "Tasks staging or starting: placed, not running yet.",
        unit: "tasks",
    },
    Series {
        name: "apps",
        help: "Services (Marathon apps).",
        unit: "apps",
    },
    Series {
        name: "deployments_in_progress",
        help: "Deployments of services in progress.",
        unit: "deployments",
    },
    Series {
        name: "cpus_used",
        help: "CPUs held by tasks that have not ended.",
        unit: "cpus",
    },
    Series {
        name: "cpus_total",
        help: "CPUs of the ready agents.",
        unit: "cpus",
    },
    Series {
        name: "mem_used_bytes",
        help: "Memory held by tasks that have not ended.",
        unit: "bytes",
    },
    Series {
        name: "mem_total_bytes",
        help: "Memory of the ready agents.",
        unit: "bytes",
    },
    Series {
        name: "api_requests_per_second",
        help: "API requests this server answered per second over the last interval.",
        unit: "requests/s",
    },
    Series {
        name: "job_runs_active",
        help: "Job runs that have not finished.",
        unit: "runs",
    },
];

/// What one sample reads: gauges of the applied state, and this server's request counter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    pub tasks_running: u64,
    pub tasks_staging: u64,
    pub apps: u64,
    pub deployments: u64,
    pub cpus_used_milli: u64,
    pub cpus_total_milli: u64,
    pub mem_used_mb: u64,
    pub mem_total_mb: u64,
    pub job_runs: u64,
    /// HTTP requests this server answered since it started.
    pub requests_total: u64,
}

impl Reading {
    pub fn of(s: &Replicated, requests_total: u64) -> Reading {
        let mut r = Reading {
            apps: s.apps.len() as u64,
            deployments: s.deployments.len() as u64,
            job_runs: s.job_runs.len() as u64,
            requests_total,
            ..Reading::default()
        };
        for t in s.tasks.values() {
            match t.state {
                TaskState::TaskRunning => r.tasks_running += 1,
                TaskState::TaskStaging | TaskState::TaskStarting => r.tasks_staging += 1,
                _ => {}
            }
            // What the allocator counts as held: every task that has not ended.
            if !t.state.is_terminal() {
                r.cpus_used_milli += t.def.cpus_milli;
                r.mem_used_mb += t.def.mem_mb;
            }
        }
        for n in s.nodes.values().filter(|n| n.status == NodeStatus::Ready) {
            if let Some(a) = &n.agent {
                r.cpus_total_milli += a.resources.cpus_milli;
                r.mem_total_mb += a.resources.mem_mb;
            }
        }
        r
    }
}

/// The rings of every series, and the last request count (a rate needs two).
pub(crate) struct History {
    rings: Vec<Ring<(u64, f64)>>,
    last_requests: Option<(u64, u64)>,
}

impl Default for History {
    fn default() -> Self {
        History::new(POINTS)
    }
}

/// A name in `?series=` that no series has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownSeries(pub String);

impl History {
    pub fn new(points: usize) -> History {
        History {
            rings: SERIES.iter().map(|_| Ring::new(points)).collect(),
            last_requests: None,
        }
    }

    /// Adds the sample `r` taken at `now_ms`. The request rate starts with the second sample,
    /// and skips a sample whose counter went back or whose clock did not move.
    pub fn record(&mut self, now_ms: u64, r: &Reading) {
        const MIB: f64 = 1024.0 * 1024.0;
        let rate = match self.last_requests {
            Some((at, count)) if now_ms > at && r.requests_total >= count => {
                Some((r.requests_total - count) as f64 * 1000.0 / (now_ms - at) as f64)
            }
            _ => None,
        };
        self.last_requests = Some((now_ms, r.requests_total));
        let values: [Option<f64>; 10] = [
            Some(r.tasks_running as f64),
            Some(r.tasks_staging as f64),
            Some(r.apps as f64),
            Some(r.deployments as f64),
            Some(r.cpus_used_milli as f64 / 1000.0),
            Some(r.cpus_total_milli as f64 / 1000.0),
            Some(r.mem_used_mb as f64 * MIB),
            Some(r.mem_total_mb as f64 * MIB),
            rate,
            Some(r.job_runs as f64),
        ];
        for (ring, value) in self.rings.iter_mut().zip(values) {
            if let Some(v) = value {
                ring.push((now_ms, v));
            }
        }
    }

    /// The series named in `only` (every one when empty), in their own order.
    pub fn view(&self, only: &[&str]) -> Result<MetricsHistoryView, UnknownSeries> {
        if let Some(unknown) = only.iter().find(|n| !SERIES.iter().any(|s| s.name == **n)) {
            return Err(UnknownSeries(unknown.to_string()));
        }
        let series = SERIES
            .iter()
            .zip(&self.rings)
            .filter(|(s, _)| only.is_empty() || only.contains(&s.name))
            .map(|(s, ring)| MetricSeriesView {
                name: s.name.into(),
                help: s.help.into(),
                unit: s.unit.into(),
                points: ring.to_vec(),
            })
            .collect();
        Ok(MetricsHistoryView {
            interval_seconds: INTERVAL.as_secs(),
            series,
        })
    }
}

pub(crate) type Shared = Arc<Mutex<History>>;

/// `GET /v1/metrics/history`, answered by each server from its own samples.
pub(crate) fn routes(history: Shared) -> Routes {
    Routes::new()
        .route(
            "/v1/metrics/history",
            Policy::new().get(Cap::Read),
            get(history_handler),
        )
        .with_state(history)
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// Comma-separated names.
    #[serde(default)]
    series: String,
}

async fn history_handler(
    State(history): State<Shared>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<MetricsHistoryView>, Error> {
    let only: Vec<&str> = q.series.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let view = history.lock().unwrap_or_else(|e| e.into_inner()).view(&only);
    view.map(axum::Json).map_err(|UnknownSeries(name)| {
        let known: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
        Error::new(
            ErrorKind::BadRequest,
            "unknown_series",
            format!("no series {name:?}; there are {}", known.join(", ")),
        )
        .field("series")
    })
}

/// Samples every `interval` ([`INTERVAL`] on a server; the first at once) until `stop` is
/// cancelled. `read` takes a sample, outside the history's lock.
pub(crate) async fn run(
    history: Shared,
    read: impl Fn() -> Reading + Send + 'static,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let reading = read();
        history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(tepui_node::now_ms(), &reading);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tepui_state::{TaskDef, TaskRecord};

    #[test]
    fn a_ring_keeps_the_newest_in_order() {
        let mut r = Ring::new(3);
        assert!(r.to_vec().is_empty());
        for i in 1..=2 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), [1, 2]);
        for i in 3..=7 {
            r.push(i);
        }
        assert_eq!((r.to_vec(), r.len()), (vec![5, 6, 7], 3));
        let mut none = Ring::new(0);
        none.push(1);
        assert!(none.to_vec().is_empty());
    }

    fn task(id: &str, state: TaskState, cpus_milli: u64, mem_mb: u64) -> TaskRecord {
        let def: TaskDef = serde_json::from_value(serde_json::json!({
            "image": null, "args": ["sleep", "9"], "env": {}, "user": null, "cwd": null,
            "cpus_milli": cpus_milli, "mem_mb": mem_mb, "disk_mb": 0, "pids": null,
            "network": "host", "ports": [], "volumes": [], "read_only_rootfs": false,
            "kill_grace_ms": 1000
        }))
        .unwrap();
        let mut t = TaskRecord::staging(id, id, 1, def, 0);
        t.state = state;
        t
    }

    #[test]
    fn a_reading_counts_tasks_and_resources_of_the_state() {
        let mut s = tepui_state::testing::state_with_agents(3, 1024);
        s.nodes.get_mut(&3).unwrap().status = NodeStatus::Lost;
        for t in [
            task("a", TaskState::TaskRunning, 500, 128),
            task("b", TaskState::TaskRunning, 250, 64),
            task("c", TaskState::TaskStaging, 100, 32),
            task("d", TaskState::TaskStarting, 100, 32),
            task("e", TaskState::TaskKilling, 100, 32),
            task("f", TaskState::TaskFinished, 4000, 4096),
        ] {
            s.tasks.insert(t.id.clone(), t);
        }
        let r = Reading::of(&s, 77);
        assert_eq!(
            r,
            Reading {
                tasks_running: 2,
                tasks_staging: 2,
                apps: 0,
                deployments: 0,
                cpus_used_milli: 1050,
                cpus_total_milli: 4000,
                mem_used_mb: 288,
                mem_total_mb: 2048,
                job_runs: 0,
                requests_total: 77,
            }
        );
    }

    #[test]
    fn samples_become_points_and_the_request_counter_a_rate() {
        let mut h = History::new(3);
        let reading = |requests_total, tasks_running| Reading {
            tasks_running,
            cpus_total_milli: 2500,
            mem_total_mb: 2,
            requests_total,
            ..Reading::default()
        };
        h.record(10_000, &reading(100, 1));
        h.record(20_000, &reading(150, 2));
        h.record(30_000, &reading(150, 3));
        // A restarted counter (it went back): no rate for that sample.
        h.record(40_000, &reading(20, 4));
        h.record(50_000, &reading(120, 5));
        let v = h.view(&[]).unwrap();
        assert_eq!(v.interval_seconds, 10);
        let names: Vec<&str> = v.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, SERIES.iter().map(|s| s.name).collect::<Vec<_>>());
        let points = |name: &str| v.series.iter().find(|s| s.name == name).unwrap().points.clone();
        assert_eq!(points("tasks_running"), [(30_000, 3.0), (40_000, 4.0), (50_000, 5.0)]);
        assert_eq!(
            points("api_requests_per_second"),
            [(20_000, 5.0), (30_000, 0.0), (50_000, 10.0)]
        );
        assert_eq!(points("cpus_total"), [(30_000, 2.5), (40_000, 2.5), (50_000, 2.5)]);
        assert_eq!(points("mem_total_bytes")[0].1, 2.0 * 1024.0 * 1024.0);

        let only = h.view(&["apps", "tasks_running"]).unwrap();
        let names: Vec<&str> = only.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tasks_running", "apps"]);
        assert_eq!(
            h.view(&["tasks_runing"]).unwrap_err(),
            UnknownSeries("tasks_runing".into())
        );
    }

    #[tokio::test]
    async fn the_route_answers_the_samples_and_names_an_unknown_series() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let history: Shared = Arc::new(Mutex::new(History::default()));
        history.lock().unwrap().record(
            1_000,
            &Reading {
                tasks_running: 4,
                ..Reading::default()
            },
        );
        let (router, table) = routes(history).into_parts();
        assert_eq!(
            table.need("/v1/metrics/history", &http::Method::GET),
            Some(tepui_auth::Need::Cap(Cap::Read))
        );
        let get = |uri: &str| {
            let req = http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let router = router.clone();
            async move {
                let resp = router.oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
            }
        };
        let (status, body) = get("/v1/metrics/history").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["interval_seconds"], 10);
        assert_eq!(body["series"].as_array().unwrap().len(), SERIES.len());
        let running = &body["series"][0];
        assert_eq!(
            (running["name"].as_str(), running["unit"].as_str()),
            (Some("tasks_running"), Some("tasks"))
        );
        assert_eq!(running["points"], serde_json::json!([[1000, 4.0]]));
        assert!(running["help"].as_str().is_some_and(|h| !h.is_empty()));
        // No rate from a single sample.
        assert_eq!(body["series"][8]["points"], serde_json::json!([]));

        let (status, body) = get("/v1/metrics/history?series=apps,tasks_running").await;
        assert_eq!(status, 200);
        let names: Vec<&str> = body["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["tasks_running", "apps"]);
        let (status, body) = get("/v1/metrics/history?series=apps,nope").await;
        assert_eq!((status, body["field"].as_str()), (400, Some("series")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("tasks_running"), "{body}");
    }

    #[tokio::test]
    async fn the_sampler_samples_until_it_is_stopped() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let history: Shared = Arc::new(Mutex::new(History::default()));
        let stop = tokio_util::sync::CancellationToken::new();
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let sampler = tokio::spawn(run(
            history.clone(),
            move || Reading {
                tasks_running: counted.fetch_add(1, Ordering::SeqCst) + 1,
                ..Reading::default()
            },
            Duration::from_millis(10),
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while history.lock().unwrap().rings[0].len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "three samples within 10 s");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), sampler)
            .await
            .expect("the sampler stops when told")
            .unwrap();
        let taken = calls.load(Ordering::SeqCst);
        // Only to show that nothing more happens.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), taken, "no sample after the stop");
        let points = history.lock().unwrap().view(&["tasks_running"]).unwrap().series[0]
            .points
            .clone();
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        assert_eq!(values, (1..=taken).map(|v| v as f64).collect::<Vec<_>>());
    }
}
