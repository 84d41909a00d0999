//! Prometheus text exposition of the server's own numbers: the API's requests by route, Raft
//! and its store, the agents as the leader hears them, the features' collectors (registered on
//! the node) and the process.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tepui_metrics::{Counter, Encoder, Histogram, Kind, LATENCY_BUCKETS};
use tepui_state::NodeStatus;

use crate::node::Inner;

/// Status classes, 1xx to 5xx, as the `class` label says them.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route and method's requests: a latency histogram per status class (its count is the
/// requests counter).
struct Series {
    classes: [Histogram; 5],
}

impl Series {
    fn new() -> Series {
        Series {
            classes: std::array::from_fn(|_| Histogram::new(LATENCY_BUCKETS)),
        }
    }
}

/// A route's series, by the methods its policy lists, and one for any other method.
struct RouteSeries {
    methods: Vec<(http::Method, Series)>,
    other: Series,
}

/// The series of every route, made once from the route table, so the request path only looks
/// up a map that never changes (no lock) and adds to atomics.
struct HttpRoutes {
    routes: HashMap<String, RouteSeries>,
}

pub(crate) struct Metrics {
    http: OnceLock<HttpRoutes>,
    /// Requests no route matched (404 from the fallback).
    unmatched: Series,
    /// From a write's proposal until the leader has committed and applied it.
    pub raft_commit: Histogram,
    /// Times this server saw a new leader (or a new term's leader).
    pub leader_changes: Counter,
    store: Arc<tepui_store::Stats>,
}

impl Metrics {
    pub fn new(store: Arc<tepui_store::Stats>) -> Metrics {
        Metrics {
            http: OnceLock::new(),
            unmatched: Series::new(),
            raft_commit: Histogram::new(LATENCY_BUCKETS),
            leader_changes: Counter::default(),
            store,
        }
    }

    /// Makes the series of every route in `table`; requests before this count as unmatched.
    pub fn routes(&self, table: &tepui_auth::RouteTable) {
        let routes = table
            .routes()
            .into_iter()
            .map(|(path, policy)| {
                let methods = policy.methods().map(|(m, _)| (m.clone(), Series::new())).collect();
                (
                    path.to_owned(),
                    RouteSeries {
                        methods,
                        other: Series::new(),
                    },
                )
            })
            .collect();
        let _ = self.http.set(HttpRoutes { routes });
    }

    /// Counts one answered request under its route template (never the raw path).
    pub fn http_request(&self, route: Option<&str>, method: &http::Method, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let series = route
            .and_then(|r| self.http.get()?.routes.get(r))
            .map_or(&self.unmatched, |r| {
                r.methods.iter().find(|(m, _)| m == method).map_or(&r.other, |(_, s)| s)
            });
        series.classes[class].observe(elapsed);
    }

    /// Every HTTP request answered since the server started.
    pub fn requests_total(&self) -> u64 {
        let count = |s: &Series| s.classes.iter().map(Histogram::count).sum::<u64>();
        let routes: u64 = self.http.get().map_or(0, |h| {
            h.routes
                .values()
                .map(|r| r.methods.iter().map(|(_, s)| count(s)).sum::<u64>() + count(&r.other))
                .sum()
        });
        routes + count(&self.unmatched)
    }

    /// Every series that has seen a request: route, method, class and its histogram.
    fn observed<'a>(&'a self) -> Vec<(&'a str, &'a str, &'static str, &'a Histogram)> {
        let mut all = Vec::new();
        let mut push = |route: &'a str, method: &'a str, s: &'a Series| {
            for (i, h) in s.classes.iter().enumerate() {
                if h.count() > 0 {
                    all.push((route, method, CLASSES[i], h));
                }
            }
        };
        if let Some(h) = self.http.get() {
            let mut routes: Vec<_> = h.routes.iter().collect();
            routes.sort_by(|a, b| a.0.cmp(b.0));
            for (path, r) in routes {
                for (m, s) in &r.methods {
                    push(path.as_str(), m.as_str(), s);
                }
                push(path.as_str(), "OTHER", &r.other);
            }
        }
        push("unmatched", "OTHER", &self.unmatched);
        all
    }
}

pub(crate) fn render(inner: &Inner) -> String {
    let m = inner.raft.metrics().borrow().clone();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("tepui_raft_term", "Current Raft term.", m.current_term);
    gauge(
        "tepui_raft_is_leader",
        "1 when this server leads.",
        u64::from(m.current_leader == Some(inner.id)),
    );
    gauge(
        "tepui_raft_last_log_index",
        "Last index in this server's Raft log.",
        m.last_log_index.unwrap_or(0),
    );
    gauge(
        "tepui_raft_applied_index",
        "Last index applied to the state machine.",
        inner.state.applied_index(),
    );
    gauge(
        "tepui_raft_voters",
        "Voters in the Raft membership.",
        m.membership_config.membership().voter_ids().count() as u64,
    );
    let not_after = tepui_pki::cert_validity(&inner.tls.material().node.cert_pem)
        .ok()
        .and_then(|(_, to)| to.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    gauge(
        "tepui_certificate_not_after_seconds",
        "When this server's certificate ends, Unix seconds (it renews two thirds of the way).",
        not_after,
    );
    let (rotating, behind) = inner.state.read(|s| {
        let behind = if s.pki.rotating() {
            s.pki.pending(s.nodes.keys()).count()
        } else {
            0
        };
        (s.pki.rotating(), behind as u64)
    });
    gauge(
        "tepui_ca_rotating",
        "1 while a CA rotation waits for nodes to renew.",
        u64::from(rotating),
    );
    gauge(
        "tepui_ca_rotation_pending_nodes",
        "Nodes whose certificate the signing CA has not signed yet, during a rotation.",
        behind,
    );
    let (ready, lost, pending) = inner.state.read(|s| {
        let count = |st| s.nodes.values().filter(|n| n.status == st).count() as u64;
        (
            count(NodeStatus::Ready),
            count(NodeStatus::Lost),
            count(NodeStatus::Pending),
        )
    });
    let _ = writeln!(out, "# HELP tepui_nodes Nodes by status.\n# TYPE tepui_nodes gauge");
    let _ = writeln!(out, "tepui_nodes{{status=\"ready\"}} {ready}");
    let _ = writeln!(out, "tepui_nodes{{status=\"lost\"}} {lost}");
    let _ = writeln!(out, "tepui_nodes{{status=\"pending\"}} {pending}");
    let by_state: std::collections::BTreeMap<&'static str, u64> = inner.state.read(|s| {
        let mut m = std::collections::BTreeMap::new();
        for t in s.tasks.values() {
            *m.entry(t.state.as_str()).or_insert(0) += 1;
        }
        m
    });
    let _ = writeln!(
        out,
        "# HELP tepui_tasks Tasks by Mesos state.\n# TYPE tepui_tasks gauge"
    );
    for state in tepui_state::TaskState::ALL {
        let n = by_state.get(state.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "tepui_tasks{{state=\"{}\"}} {n}", state.as_str());
    }
    let drivers = inner.node.drivers().statuses();
    let _ = writeln!(out, "# HELP tepui_driver_activations_total Activations of each leader driver.\n# TYPE tepui_driver_activations_total counter");
    for d in &drivers {
        let _ = writeln!(
            out,
            "tepui_driver_activations_total{{driver=\"{}\"}} {}",
            d.name, d.activations
        );
    }
    let _ = writeln!(out, "# HELP tepui_driver_errors_total Activations of each leader driver that failed.\n# TYPE tepui_driver_errors_total counter");
    for d in &drivers {
        let _ = writeln!(out, "tepui_driver_errors_total{{driver=\"{}\"}} {}", d.name, d.errors);
    }
    let _ = writeln!(out, "# HELP tepui_driver_last_duration_seconds How long each driver's last activation took.\n# TYPE tepui_driver_last_duration_seconds gauge");
    for d in &drivers {
        let _ = writeln!(
            out,
            "tepui_driver_last_duration_seconds{{driver=\"{}\"}} {}",
            d.name,
            d.last_duration_us as f64 / 1e6
        );
    }
    if let Some(dns) = &inner.dns {
        render_dns(&mut out, dns);
    }
    let mut enc = Encoder::new();
    enc.raw(&out);
    render_http(&mut enc, &inner.metrics);
    render_raft(&mut enc, inner, &m);
    render_agents(&mut enc, inner);
    inner.node.metrics().collect(&mut enc);
    tepui_metrics::process::render(&mut enc);
    enc.finish()
}

fn render_http(enc: &mut Encoder, metrics: &Metrics) {
    let observed = metrics.observed();
    enc.family(
        "tepui_http_requests_total",
        "HTTP requests answered, by route template, method and status class.",
        Kind::Counter,
    );
    for (route, method, class, h) in &observed {
        let labels = [("route", *route), ("method", *method), ("class", *class)];
        enc.sample("tepui_http_requests_total", &labels, h.count() as f64);
    }
    enc.family(
        "tepui_http_request_duration_seconds",
        "Time to answer an HTTP request (to its response head), by route template, method and status class.",
        Kind::Histogram,
    );
    for (route, method, class, h) in &observed {
        let labels = [("route", *route), ("method", *method), ("class", *class)];
        enc.histogram("tepui_http_request_duration_seconds", &labels, h);
    }
}

fn render_raft(enc: &mut Encoder, inner: &Inner, m: &openraft::RaftMetrics<u64, tepui_store::BasicNode>) {
    let store = &inner.metrics.store;
    enc.single(
        "tepui_raft_has_leader",
        "1 when this server knows a leader.",
        Kind::Gauge,
        f64::from(u8::from(m.current_leader.is_some())),
    );
    enc.single(
        "tepui_raft_leader_changes_total",
        "Times this server saw a new leader.",
        Kind::Counter,
        inner.metrics.leader_changes.get() as f64,
    );
    enc.single_histogram(
        "tepui_raft_commit_duration_seconds",
        "From a write's proposal on the leader until it is committed and applied.",
        &inner.metrics.raft_commit,
    );
    enc.single_histogram(
        "tepui_raft_log_fsync_duration_seconds",
        "The fdatasync of each Raft log append.",
        &store.log_fsync,
    );
    let purged = m.purged.map_or(0, |p| p.index);
    enc.single(
        "tepui_raft_log_entries",
        "Entries in this server's Raft log (after the last purge).",
        Kind::Gauge,
        m.last_log_index.unwrap_or(0).saturating_sub(purged) as f64,
    );
    enc.single(
        "tepui_raft_log_size_bytes",
        "Bytes of the Raft log file holding records.",
        Kind::Gauge,
        store.log_bytes.get() as f64,
    );
    enc.single(
        "tepui_raft_snapshot_size_bytes",
        "Size of the newest snapshot this server built, installed or loaded.",
        Kind::Gauge,
        store.snapshot_bytes.get() as f64,
    );
    enc.single_histogram(
        "tepui_raft_snapshot_duration_seconds",
        "Building a snapshot: copying, encoding and storing the state.",
        &store.snapshot_build,
    );
    enc.single(
        "tepui_raft_snapshots_installed_total",
        "Snapshots received from a leader and installed.",
        Kind::Counter,
        store.snapshots_installed.get() as f64,
    );
    enc.single(
        "tepui_raft_snapshot_index",
        "Last log index the newest snapshot covers.",
        Kind::Gauge,
        m.snapshot.map_or(0, |s| s.index) as f64,
    );
    // The leader's view of each follower: how many entries it is behind.
    if let Some(replication) = &m.replication {
        let last = m.last_log_index.unwrap_or(0);
        enc.family(
            "tepui_raft_follower_lag_entries",
            "On the leader: entries each follower has yet to match.",
            Kind::Gauge,
        );
        for (peer, matched) in replication {
            if *peer == inner.id {
                continue;
            }
            let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
            enc.sample(
                "tepui_raft_follower_lag_entries",
                &[("peer", &peer.to_string())],
                lag as f64,
            );
        }
    }
}

/// The agents as this server hears them (on the leader: every agent with a stream).
fn render_agents(enc: &mut Encoder, inner: &Inner) {
    let heard = inner.node.agents().liveness();
    let names: HashMap<u64, String> = inner.state.read(|s| {
        heard
            .iter()
            .filter_map(|(id, _, _)| Some((*id, s.nodes.get(id)?.name.clone())))
            .collect()
    });
    let rows: Vec<_> = heard
        .iter()
        .filter_map(|(id, at, load)| Some((names.get(id)?.as_str(), at, load)))
        .collect();
    enc.family(
        "tepui_agent_heartbeat_age_seconds",
        "Seconds since this server last heard each agent (agents with a stream to it: the leader's).",
        Kind::Gauge,
    );
    for (name, at, _) in &rows {
        enc.sample(
            "tepui_agent_heartbeat_age_seconds",
            &[("agent", name)],
            at.elapsed().as_secs_f64(),
        );
    }
    enc.family(
        "tepui_agent_reported_status_updates_queued",
        "Status updates each agent holds unacknowledged, as its last heartbeat said.",
        Kind::Gauge,
    );
    for (name, _, load) in &rows {
        if let Some(l) = load {
            enc.sample(
                "tepui_agent_reported_status_updates_queued",
                &[("agent", name)],
                l.updates_queued as f64,
            );
        }
    }
    enc.family(
        "tepui_agent_reported_containers",
        "Tasks each agent runs, as its last heartbeat said.",
        Kind::Gauge,
    );
    for (name, _, load) in &rows {
        if let Some(l) = load {
            enc.sample(
                "tepui_agent_reported_containers",
                &[("agent", name)],
                l.containers as f64,
            );
        }
    }
}

/// The DNS server's counters (tepui-dns's `Stats`) and its records.
fn render_dns(out: &mut String, dns: &tepui_dns::RecordsHandle) {
    let st = dns.stats();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP tepui_dns_queries_total DNS queries received, by transport.\n# TYPE tepui_dns_queries_total counter"
    );
    let _ = writeln!(
        out,
        "tepui_dns_queries_total{{transport=\"udp\"}} {}",
        load(&st.udp_queries)
    );
    let _ = writeln!(
        out,
        "tepui_dns_queries_total{{transport=\"tcp\"}} {}",
        load(&st.tcp_queries)
    );
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    };
    counter(
        "tepui_dns_answered_total",
        "DNS queries this server answered itself (names in the cluster domain, and refusals).",
        load(&st.answered),
    );
    counter(
        "tepui_dns_nxdomain_total",
        "Of those, NXDOMAIN: names in the domain that do not exist.",
        load(&st.nxdomain),
    );
    counter(
        "tepui_dns_forwarded_total",
        "DNS queries for names outside the domain, forwarded upstream or answered from the cache.",
        load(&st.forwarded),
    );
    counter(
        "tepui_dns_cache_hits_total",
        "Forwarded DNS queries answered from the cache.",
        load(&st.cache_hits),
    );
    counter(
        "tepui_dns_upstream_failures_total",
        "Forwarded DNS queries answered SERVFAIL: no upstream answered.",
        load(&st.upstream_failures),
    );
    counter(
        "tepui_dns_forwards_dropped_total",
        "Forwarded DNS queries dropped: too many upstream at once.",
        load(&st.forwards_dropped),
    );
    counter(
        "tepui_dns_shed_total",
        "DNS queries of a flooding source read and not answered.",
        load(&st.shed),
    );
    counter(
        "tepui_dns_udp_send_dropped_total",
        "DNS answers over UDP the kernel would not take (its send buffer full).",
        load(&st.udp_send_dropped),
    );
    counter(
        "tepui_dns_rebuilds_total",
        "Times the DNS records were rebuilt from the state.",
        load(&st.rebuilds),
    );
    let records = dns.current();
    let _ = writeln!(
        out,
        "# HELP tepui_dns_last_build_seconds How long the last build of the DNS records took.\n# TYPE tepui_dns_last_build_seconds gauge\ntepui_dns_last_build_seconds {}",
        load(&st.last_build_micros) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# HELP tepui_dns_names Names in the cluster domain.\n# TYPE tepui_dns_names gauge\ntepui_dns_names {}",
        records.len()
    );
    let _ = writeln!(
        out,
        "# HELP tepui_dns_serial The applied index the DNS records were built at (the SOA serial).\n# TYPE tepui_dns_serial gauge\ntepui_dns_serial {}",
        records.serial()
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tepui_auth::{Cap, Policy, Routes};
    use tepui_metrics::{exposition, Encoder};

    use super::{render_http, Metrics};

    #[test]
    fn requests_count_under_their_route_template_method_and_class() {
        let (_, table) = Routes::<()>::new()
            .route("/v1/nodes", Policy::new().get(Cap::Read), get(|| async {}))
            .route(
                "/v2/apps/{*path}",
                Policy::new().get(Cap::Read).put(Cap::Write),
                get(|| async {}).put(|| async {}),
            )
            .into_parts();
        let m = Metrics::new(Default::default());
        let ms = Duration::from_millis;
        // Before the table is known, everything is unmatched.
        m.http_request(Some("/v1/nodes"), &http::Method::GET, 200, ms(1));
        m.routes(&table);
        m.http_request(Some("/v1/nodes"), &http::Method::GET, 200, ms(2));
        m.http_request(Some("/v1/nodes"), &http::Method::GET, 503, ms(3));
        m.http_request(Some("/v2/apps/{*path}"), &http::Method::PUT, 409, ms(40));
        m.http_request(Some("/v2/apps/{*path}"), &http::Method::PATCH, 405, ms(1));
        m.http_request(None, &http::Method::GET, 404, ms(1));
        assert_eq!(m.requests_total(), 6);

        let mut enc = Encoder::new();
        render_http(&mut enc, &m);
        let text = enc.finish();
        let f = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let count = |labels: &[(&str, &str)]| f["tepui_http_requests_total"].sum("tepui_http_requests_total", labels);
        assert_eq!(
            count(&[("route", "/v1/nodes"), ("method", "GET"), ("class", "2xx")]),
            1.0
        );
        assert_eq!(count(&[("route", "/v1/nodes"), ("class", "5xx")]), 1.0);
        assert_eq!(
            count(&[("route", "/v2/apps/{*path}"), ("method", "PUT"), ("class", "4xx")]),
            1.0
        );
        assert_eq!(count(&[("route", "/v2/apps/{*path}"), ("method", "OTHER")]), 1.0);
        assert_eq!(count(&[("route", "unmatched")]), 2.0);
        let hist = &f["tepui_http_request_duration_seconds"];
        let put = [("route", "/v2/apps/{*path}"), ("method", "PUT"), ("class", "4xx")];
        assert_eq!(hist.sum("tepui_http_request_duration_seconds_count", &put), 1.0);
        let le = |b: &str| {
            let mut l = put.to_vec();
            l.push(("le", b));
            hist.sum("tepui_http_request_duration_seconds_bucket", &l)
        };
        assert_eq!((le("0.025"), le("0.05")), (0.0, 1.0), "{text}");
        // Series with no requests are left out.
        assert!(!text.contains("method=\"GET\",class=\"1xx\""), "{text}");
    }
}
