//! Prometheus text exposition of the server's own numbers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tepui_state::NodeStatus;

use crate::node::Inner;

#[derive(Default)]
pub(crate) struct Metrics {
    http_2xx: AtomicU64,
    http_4xx: AtomicU64,
    http_5xx: AtomicU64,
}

impl Metrics {
    pub fn http_request(&self, status: u16) {
        let counter = match status {
            500.. => &self.http_5xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_2xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every HTTP request answered since the server started.
    pub fn requests_total(&self) -> u64 {
        [&self.http_2xx, &self.http_4xx, &self.http_5xx]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
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
    let _ = writeln!(out, "# HELP tepui_http_requests_total HTTP requests answered, by status class.\n# TYPE tepui_http_requests_total counter");
    for (class, c) in [
        ("2xx", &inner.metrics.http_2xx),
        ("4xx", &inner.metrics.http_4xx),
        ("5xx", &inner.metrics.http_5xx),
    ] {
        let _ = writeln!(
            out,
            "tepui_http_requests_total{{class=\"{class}\"}} {}",
            c.load(Ordering::Relaxed)
        );
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
    out
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
