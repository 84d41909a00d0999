//! The table as the data plane serves it: routes of the served groups with host indexes, the
//! backends' live state, parsed certificates. Built once per table; requests only read it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use serde::Serialize;

use super::balance::{BackendState, Health};
use super::metrics::{Metrics, RouteMetrics};
use super::tls::CertStore;
use crate::{Balance, GatewayTable, HttpRoute};

/// The current [`Live`] table, swapped whole when a new table arrives. A request clones the
/// `Arc` once and keeps serving from it even if the table changes meanwhile.
pub(crate) struct LiveCell {
    current: RwLock<Arc<Live>>,
}

impl LiveCell {
    pub fn new(live: Live) -> LiveCell {
        LiveCell {
            current: RwLock::new(Arc::new(live)),
        }
    }

    pub fn load(&self) -> Arc<Live> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn store(&self, live: Arc<Live>) {
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = live;
    }
}

/// FNV-1a for the host indexes: short keys, looked up at every request; the keys come from
/// the table, not from clients, so flooding one bucket is not a concern.
#[derive(Clone, Copy, Default)]
pub(crate) struct FnvBuild;

pub(crate) struct FnvHasher(u64);

impl std::hash::BuildHasher for FnvBuild {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type HostIndex = HashMap<String, Vec<usize>, FnvBuild>;

/// One served route.
pub(crate) struct RouteEntry {
    pub spec: HttpRoute,
    /// The route's backends (the table's list, without duplicates).
    pub backends: Vec<Arc<BackendState>>,
    /// Round robin's rotation.
    pub next: AtomicUsize,
    pub metrics: Arc<RouteMetrics>,
    /// A certificate of the table covers every host of the route.
    pub tls: bool,
}

impl RouteEntry {
    fn path_matches(&self, path: &str) -> bool {
        self.spec
            .path
            .as_deref()
            .is_none_or(|prefix| path_matches(prefix, path))
    }
}

/// Whether a route's path prefix matches a request's path: the same path, or a path below it
/// (`/api` matches `/api`, `/api/` and `/api/v1`, not `/apis`; `/api/` matches `/api/v1`).
pub(crate) fn path_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// A request's host as routes are matched against it: lowercase, without port or final dot.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A table ready to serve.
#[derive(Default)]
pub(crate) struct Live {
    pub routes: Vec<RouteEntry>,
    /// Route indexes (ascending) by exact host.
    exact_hosts: HostIndex,
    /// Route indexes (ascending) by the part after `*.` of a wildcard host.
    wildcard_hosts: HostIndex,
    /// Routes for any host.
    any_host: Vec<usize>,
    pub certs: CertStore,
}

impl Live {
    /// The first route, in table order, whose hosts and path prefix match.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut consider = |candidates: &[usize]| {
            for &index in candidates {
                if best.is_some_and(|b| index >= b) {
                    return;
                }
                if self.routes[index].path_matches(path) {
                    best = Some(index);
                    return;
                }
            }
        };
        if let Some(candidates) = self.exact_hosts.get(host) {
            consider(candidates);
        }
        if !self.wildcard_hosts.is_empty() {
            // `*.example.com` covers any name below example.com, one label or more.
            let mut rest = host;
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(candidates) = self.wildcard_hosts.get(parent) {
                    consider(candidates);
                }
                rest = parent;
            }
        }
        consider(&self.any_host);
        best
    }

    /// Builds the served table from `table`, keeping the backends' state and the parsed
    /// certificates of `previous`.
    pub fn build(
        table: &GatewayTable,
        groups: &[String],
        previous: &Live,
        metrics: &Metrics,
        provider: &CryptoProvider,
    ) -> Live {
        let serves_all = groups.iter().any(|g| g == "*");
        let mut known: HashMap<(&str, SocketAddr), &Arc<BackendState>> = HashMap::new();
        for route in &previous.routes {
            for backend in &route.backends {
                known.insert((backend.task_id.as_str(), backend.addr), backend);
            }
        }
        let certs = CertStore::build(&table.certificates, &previous.certs, provider);
        let mut live = Live::default();
        let mut made: HashMap<(&str, SocketAddr), Arc<BackendState>> = HashMap::new();
        for spec in &table.routes {
            if !serves_all && !groups.contains(&spec.group) {
                continue;
            }
            let mut backends: Vec<Arc<BackendState>> = Vec::with_capacity(spec.backends.len());
            for backend in &spec.backends {
                let key = (backend.task_id.as_str(), backend.addr);
                let state = match made.get(&key).or_else(|| known.get(&key).copied()) {
                    Some(state) => state.clone(),
                    None => match BackendState::new(&backend.task_id, backend.addr) {
                        Some(state) => Arc::new(state),
                        None => continue,
                    },
                };
                made.insert(key, state.clone());
                if !backends.iter().any(|b| Arc::ptr_eq(b, &state)) {
                    backends.push(state);
                }
            }
            let index = live.routes.len();
            let hosts: Vec<String> = spec.hosts.iter().map(|h| normalize_host(h).into_owned()).collect();
            if hosts.is_empty() {
                live.any_host.push(index);
            }
            for host in &hosts {
                let by = match host.strip_prefix("*.") {
                    Some(parent) => live.wildcard_hosts.entry(parent.to_owned()),
                    None => live.exact_hosts.entry(host.clone()),
                };
                let list = by.or_default();
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
            let tls = !hosts.is_empty() && hosts.iter().all(|h| certs.covers(h));
            live.routes.push(RouteEntry {
                spec: HttpRoute {
                    hosts,
                    backends: Vec::new(),
                    ..spec.clone()
                },
                backends,
                next: AtomicUsize::new(0),
                metrics: metrics.route(&spec.app, spec.port_index),
                tls,
            });
        }
        live.certs = certs;
        live
    }

    /// The routes as `tepui gateway routes` shows them.
    pub fn describe(&self, now_ms: u64) -> Vec<LiveRoute> {
        self.routes
            .iter()
            .map(|route| LiveRoute {
                app: route.spec.app.clone(),
                port_index: route.spec.port_index,
                group: route.spec.group.clone(),
                hosts: route.spec.hosts.clone(),
                path: route.spec.path.clone(),
                tls: route.tls,
                redirect: route.spec.redirect_to_https,
                balance: route.spec.balance,
                sticky: route.spec.sticky,
                backends: route
                    .backends
                    .iter()
                    .map(|b| {
                        let (state, retry_in_ms) = match b.health(now_ms) {
                            Health::Up => (BackendHealth::Up, None),
                            Health::Ejected { until_ms } => (BackendHealth::Ejected, Some(until_ms - now_ms)),
                            Health::Trial => (BackendHealth::Ejected, Some(0)),
                        };
                        LiveBackend {
                            task_id: b.task_id.clone(),
                            addr: b.addr,
                            state,
                            retry_in_ms,
                            in_flight: b.in_flight.load(Relaxed),
                            requests: b.requests.load(Relaxed),
                            failures: b.failures.load(Relaxed),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A route as the gateway serves it now (`tepui gateway routes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveRoute {
    pub app: String,
    pub port_index: usize,
    pub group: String,
    pub hosts: Vec<String>,
    pub path: Option<String>,
    /// A certificate of the table (not the default one) covers every host of the route.
    pub tls: bool,
    /// Plain HTTP requests are redirected to HTTPS.
    pub redirect: bool,
    pub balance: Balance,
    pub sticky: bool,
    pub backends: Vec<LiveBackend>,
}

/// A backend of a route as the gateway sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveBackend {
    pub task_id: String,
    pub addr: SocketAddr,
    pub state: BackendHealth,
    /// While ejected: in how many milliseconds a request tries it again (0: the next one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Requests sent to it and not finished.
    pub in_flight: u64,
    /// Requests sent to it (retries included).
    pub requests: u64,
    /// Requests that failed to connect, got no answer or timed out.
    pub failures: u64,
}

/// Whether a backend gets requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendHealth {
    Up,
    /// Out of rotation after consecutive failures, until `retry_in_ms`.
    Ejected,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    fn route(app: &str, hosts: &[&str], path: Option<&str>) -> HttpRoute {
        HttpRoute {
            app: app.to_owned(),
            port_index: 0,
            group: "external".to_owned(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: path.map(str::to_owned),
            redirect_to_https: false,
            balance: Balance::RoundRobin,
            sticky: false,
            backends: vec![Backend {
                task_id: format!("{app}.1"),
                addr: SocketAddr::from(([127, 0, 60, 1], 9000)),
            }],
        }
    }

    fn build(routes: Vec<HttpRoute>, groups: &[&str]) -> Live {
        let table = GatewayTable {
            routes,
            ..GatewayTable::default()
        };
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        Live::build(
            &table,
            &groups,
            &Live::default(),
            &Metrics::default(),
            &super::super::tls::provider(),
        )
    }

    fn app(live: &Live, host: &str, path: &str) -> Option<String> {
        live.find(host, path).map(|i| live.routes[i].spec.app.clone())
    }

    #[test]
    fn first_match_in_table_order_by_host_then_path() {
        let live = build(
            vec![
                route("/api", &["shop.example.com"], Some("/api")),
                route("/shop", &["shop.example.com", "www.example.com"], None),
                route("/wild", &["*.example.com"], None),
                route("/static", &[], Some("/static/")),
                route("/default", &[], None),
            ],
            &["external"],
        );
        assert_eq!(app(&live, "shop.example.com", "/api/v1").as_deref(), Some("/api"));
        assert_eq!(app(&live, "shop.example.com", "/api").as_deref(), Some("/api"));
        assert_eq!(app(&live, "shop.example.com", "/apis").as_deref(), Some("/shop"));
        assert_eq!(app(&live, "www.example.com", "/").as_deref(), Some("/shop"));
        assert_eq!(app(&live, "a.b.example.com", "/").as_deref(), Some("/wild"));
        assert_eq!(app(&live, "example.com", "/static/x").as_deref(), Some("/static"));
        assert_eq!(app(&live, "example.com", "/static").as_deref(), Some("/default"));
        assert_eq!(app(&live, "other.org", "/x").as_deref(), Some("/default"));
    }

    #[test]
    fn only_served_groups_and_no_match_is_none() {
        let mut internal = route("/internal", &["a.test"], None);
        internal.group = "internal".to_owned();
        let live = build(vec![internal.clone(), route("/b", &["b.test"], None)], &["external"]);
        assert_eq!(app(&live, "a.test", "/"), None);
        assert_eq!(app(&live, "b.test", "/").as_deref(), Some("/b"));
        let all = build(vec![internal], &["*"]);
        assert_eq!(app(&all, "a.test", "/").as_deref(), Some("/internal"));
    }

    #[test]
    fn backends_keep_their_state_across_tables() {
        let metrics = Metrics::default();
        let provider = super::super::tls::provider();
        let groups = vec!["external".to_owned()];
        let table = GatewayTable {
            routes: vec![route("/a", &["a.test"], None)],
            ..GatewayTable::default()
        };
        let first = Live::build(&table, &groups, &Live::default(), &metrics, &provider);
        first.routes[0].backends[0].requests.fetch_add(5, Relaxed);
        let mut changed = table.clone();
        changed.routes.push(route("/b", &["b.test"], None));
        let second = Live::build(&changed, &groups, &first, &metrics, &provider);
        assert_eq!(second.routes[0].backends[0].requests.load(Relaxed), 5);
        assert!(Arc::ptr_eq(&first.routes[0].metrics, &second.routes[0].metrics));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize_host("shop.example.com."), "shop.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("10.0.0.1"), "10.0.0.1");
        assert!(path_matches("/", "/anything"));
        assert!(!path_matches("/a", "/b"));
    }
}
