//! The data plane's counters, as atomics updated on the request path, and their Prometheus
//! text (`tepui_gateway_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in microseconds.
const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Http,
    Https,
}

impl ListenerKind {
    fn index(self) -> usize {
        match self {
            ListenerKind::Http => 0,
            ListenerKind::Https => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        }
    }
}

/// One route's counters, kept by app and port index across table changes (counters only go up).
#[derive(Default)]
pub(crate) struct RouteMetrics {
    /// Responses by status class: 1xx to 5xx.
    responses: [AtomicU64; 5],
    /// Time to the response's head, by bucket (not cumulative; the last one is +Inf).
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_us: AtomicU64,
    pub ejections: AtomicU64,
    pub retries: AtomicU64,
}

impl RouteMetrics {
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }
}

/// Every counter of one gateway.
#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<(String, usize), Arc<RouteMetrics>>>,
    /// Requests no route matched.
    pub unrouted: AtomicU64,
    /// Client connections open now, by listener.
    open_connections: [AtomicI64; 2],
    /// Client connections accepted, by listener.
    accepted_connections: [AtomicU64; 2],
    pub tls_handshake_failures: AtomicU64,
    pub table_updates: AtomicU64,
    /// Certificates of the current table that could not be used.
    pub certificates_rejected: AtomicU64,
    /// Upgraded connections (websockets) being relayed now.
    pub tunnels: AtomicI64,
}

/// Counts a client connection as open until dropped.
pub(crate) struct OpenConnection {
    metrics: Arc<Metrics>,
    kind: ListenerKind,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open_connections[self.kind.index()].fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// The counters of a route, made the first time it is seen.
    pub fn route(&self, app: &str, port_index: usize) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.entry((app.to_owned(), port_index)).or_default().clone()
    }

    pub fn connection_opened(self: &Arc<Self>, kind: ListenerKind) -> OpenConnection {
        self.accepted_connections[kind.index()].fetch_add(1, Relaxed);
        self.open_connections[kind.index()].fetch_add(1, Relaxed);
        OpenConnection {
            metrics: self.clone(),
            kind,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let routes: Vec<((String, usize), Arc<RouteMetrics>)> = {
            let routes = self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out = String::with_capacity(1024 + routes.len() * 2048);

        header(
            &mut out,
            "tepui_gateway_requests_total",
            "counter",
            "Requests answered on a route, by status class.",
        );
        for ((app, port), m) in &routes {
            for (class, count) in m.responses.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tepui_gateway_requests_total{{app=\"{}\",port_index=\"{port}\",class=\"{}xx\"}} {}",
                    escape(app),
                    class + 1,
                    count.load(Relaxed)
                );
            }
        }

        header(
            &mut out,
            "tepui_gateway_request_duration_seconds",
            "histogram",
            "Time from a request's head to its response's head, by route.",
        );
        for ((app, port), m) in &routes {
            let labels = format!("app=\"{}\",port_index=\"{port}\"", escape(app));
            let mut cumulative = 0u64;
            for (i, count) in m.latency.iter().enumerate() {
                cumulative += count.load(Relaxed);
                let le = match LATENCY_BOUNDS_US.get(i) {
                    Some(bound) => format!("{}", *bound as f64 / 1e6),
                    None => "+Inf".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "tepui_gateway_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = m.latency_sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "tepui_gateway_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "tepui_gateway_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }

        header(
            &mut out,
            "tepui_gateway_backend_ejections_total",
            "counter",
            "Backends taken out of a route's rotation after failing.",
        );
        for ((app, port), m) in &routes {
            let _ = writeln!(
                out,
                "tepui_gateway_backend_ejections_total{{app=\"{}\",port_index=\"{port}\"}} {}",
                escape(app),
                m.ejections.load(Relaxed)
            );
        }

        header(
            &mut out,
            "tepui_gateway_retries_total",
            "counter",
            "Requests sent again to another backend after the first got no answer.",
        );
        for ((app, port), m) in &routes {
            let _ = writeln!(
                out,
                "tepui_gateway_retries_total{{app=\"{}\",port_index=\"{port}\"}} {}",
                escape(app),
                m.retries.load(Relaxed)
            );
        }

        header(
            &mut out,
            "tepui_gateway_client_connections",
            "gauge",
            "Client connections open now.",
        );
        for kind in [ListenerKind::Http, ListenerKind::Https] {
            let _ = writeln!(
                out,
                "tepui_gateway_client_connections{{listener=\"{}\"}} {}",
                kind.name(),
                self.open_connections[kind.index()].load(Relaxed)
            );
        }
        header(
            &mut out,
            "tepui_gateway_client_connections_total",
            "counter",
            "Client connections accepted.",
        );
        for kind in [ListenerKind::Http, ListenerKind::Https] {
            let _ = writeln!(
                out,
                "tepui_gateway_client_connections_total{{listener=\"{}\"}} {}",
                kind.name(),
                self.accepted_connections[kind.index()].load(Relaxed)
            );
        }

        let singles: [(&str, &str, &str, i64); 5] = [
            (
                "tepui_gateway_unrouted_requests_total",
                "counter",
                "Requests whose host and path no route matched.",
                self.unrouted.load(Relaxed) as i64,
            ),
            (
                "tepui_gateway_tls_handshake_failures_total",
                "counter",
                "TLS handshakes that failed or timed out.",
                self.tls_handshake_failures.load(Relaxed) as i64,
            ),
            (
                "tepui_gateway_table_updates_total",
                "counter",
                "Gateway tables applied.",
                self.table_updates.load(Relaxed) as i64,
            ),
            (
                "tepui_gateway_certificates_rejected",
                "gauge",
                "Certificates of the current table that cannot be used.",
                self.certificates_rejected.load(Relaxed) as i64,
            ),
            (
                "tepui_gateway_tunnels",
                "gauge",
                "Upgraded connections (websockets) relayed now.",
                self.tunnels.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in singles {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as Prometheus' text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_classes_add_up() {
        let metrics = Metrics::default();
        let route = metrics.route("/shop/web", 0);
        route.observe(200, Duration::from_micros(300));
        route.observe(204, Duration::from_millis(3));
        route.observe(502, Duration::from_secs(20));
        let text = metrics.render();
        assert!(text.contains("tepui_gateway_requests_total{app=\"/shop/web\",port_index=\"0\",class=\"2xx\"} 2"));
        assert!(text.contains("tepui_gateway_requests_total{app=\"/shop/web\",port_index=\"0\",class=\"5xx\"} 1"));
        assert!(text.contains(
            "tepui_gateway_request_duration_seconds_bucket{app=\"/shop/web\",port_index=\"0\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "tepui_gateway_request_duration_seconds_bucket{app=\"/shop/web\",port_index=\"0\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "tepui_gateway_request_duration_seconds_bucket{app=\"/shop/web\",port_index=\"0\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("tepui_gateway_request_duration_seconds_count{app=\"/shop/web\",port_index=\"0\"} 3"));
    }
}
