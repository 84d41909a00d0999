//! The gateway table of a state: HTTP routes from the apps' labels ([`crate::labels`]) and
//! instances ([`crate::endpoints`]), certificates from the PEM bundles the caller opened, and
//! virtual IPs ([`crate::vip`]). Pure: the same state and bundles give an equal table.
//!
//! Routes are built for every group; each gateway serves the groups it is given. A port gets
//! HTTP routes only when its labels give it host names or a path. Marathon-LB also serves a
//! port without them on its service port (and on `:9091` by `X-Marathon-App-Id` in HTTP mode);
//! tepui's gateway serves neither, so such a port (a group alone is not enough) gets no route.
//! Marathon-LB uses a path only together with a host name; here a path alone routes that path
//! on every host.

use std::cmp::Ordering;

use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls_pemfile::Item;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tepui_state::State;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::endpoints::{self, AppEndpoints};
use crate::labels::{self, PortLabels};
use crate::{vip, Backend, Certificate, GatewayTable, HttpRoute, Problem};

/// Where a certificate's source names the host it is for: `secret:gateway/certs/HOST`.
const CERT_SOURCE_MARKER: &str = "gateway/certs/";

/// The table the gateways serve for `state`. `certificates` are each bundle's source (such as
/// `secret:gateway/certs/shop.example.com`) with its opened PEM value, or why it could not be
/// opened; a bundle that cannot be used is a [`Problem`] and left out.
pub fn build(state: &State, certificates: Vec<(String, Result<Vec<u8>, String>)>) -> GatewayTable {
    let apps = endpoints::apps(state);
    let mut problems = Vec::new();

    let mut routes = Vec::new();
    for (app_id, app) in &apps {
        let ports = labels::read(app_id, &app.spec.labels, app.port_count(), &mut problems);
        for port in ports.iter().filter(|p| p.has_http_route()) {
            routes.extend(port_routes(app_id, app, port));
        }
    }
    routes.sort_by(match_order);

    let mut certificates: Vec<Certificate> = certificates
        .into_iter()
        .filter_map(|(source, value)| match certificate(&source, value) {
            Ok(certificate) => Some(certificate),
            Err(problem) => {
                problems.push(Problem {
                    source,
                    field: "value".to_string(),
                    message: problem.to_string(),
                });
                None
            }
        })
        .collect();
    certificates.sort_by(|a, b| a.source.cmp(&b.source).then_with(|| a.hosts.cmp(&b.hosts)));

    let vips = vip::vips(&apps, &mut problems);

    problems.sort();
    problems.dedup();
    GatewayTable {
        routes,
        certificates,
        vips,
        problems,
    }
}

/// The routes of one port: one per group and path (the table's routes carry one of each).
fn port_routes(app_id: &str, app: &AppEndpoints, port: &PortLabels) -> Vec<HttpRoute> {
    let backends: Vec<Backend> = app
        .addresses(port.port_index)
        .into_iter()
        .map(|(task_id, addr)| Backend { task_id, addr })
        .collect();
    let paths: Vec<Option<String>> = if port.paths.is_empty() {
        vec![None]
    } else {
        port.paths.iter().cloned().map(Some).collect()
    };
    let mut routes = Vec::new();
    for group in &port.groups {
        for path in &paths {
            routes.push(HttpRoute {
                app: app_id.to_string(),
                port_index: port.port_index,
                group: group.clone(),
                hosts: port.hosts.clone(),
                path: path.clone(),
                redirect_to_https: port.redirect_to_https,
                balance: port.balance,
                sticky: port.sticky,
                backends: backends.clone(),
            });
        }
    }
    routes
}

/// The order routes are matched in, so that the first match is the most specific: routes with
/// host names before those for any host, then longer paths first; ties by app, port, path and
/// group, so that the order does not depend on the order apps were read in.
fn match_order(a: &HttpRoute, b: &HttpRoute) -> Ordering {
    let path_len = |r: &HttpRoute| r.path.as_ref().map_or(0, String::len);
    a.hosts
        .is_empty()
        .cmp(&b.hosts.is_empty())
        .then_with(|| path_len(b).cmp(&path_len(a)))
        .then_with(|| a.app.cmp(&b.app))
        .then_with(|| a.port_index.cmp(&b.port_index))
        .then_with(|| a.path.cmp(&b.path))
        .then_with(|| a.group.cmp(&b.group))
}

/// Why a certificate bundle cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error("the bundle could not be opened: {0}")]
    Unopened(String),
    #[error("the bundle is not valid PEM: {0}")]
    NotPem(String),
    #[error(
        "the bundle has no certificate: put the chain (BEGIN CERTIFICATE blocks, leaf first) and then the private key \
         in one PEM, as HAProxy's combined .pem files"
    )]
    NoCertificate,
    #[error(
        "the bundle has no private key: put it (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) after the \
         certificates, in the same PEM"
    )]
    NoKey,
    #[error("the bundle has {0} private keys: keep only the first certificate's")]
    SeveralKeys(usize),
    #[error("the first certificate does not parse as X.509: {0}")]
    BadLeaf(String),
    #[error("the private key cannot be used ({0}): RSA, ECDSA P-256 or P-384 and Ed25519 keys can")]
    UnusableKey(rustls::Error),
    #[error("the private key is not the first certificate's (their public keys differ): put the leaf's key in")]
    KeyMismatch,
    #[error("the certificate names no host: give the certificate DNS names, or store it as gateway/certs/HOST")]
    NoHosts,
}

/// A bundle ready to serve: its certificates and key as written, for the host in its source
/// and the leaf's DNS names.
pub(crate) fn certificate(source: &str, value: Result<Vec<u8>, String>) -> Result<Certificate, BundleError> {
    let pem = value.map_err(BundleError::Unopened)?;
    let mut chain: Vec<(CertificateDer<'static>, String)> = Vec::new();
    let mut keys: Vec<(PrivateKeyDer<'static>, String)> = Vec::new();
    for (item, text) in pem_blocks(&pem)? {
        match item {
            Item::X509Certificate(der) => chain.push((der, text)),
            Item::Pkcs1Key(der) => keys.push((der.into(), text)),
            Item::Pkcs8Key(der) => keys.push((der.into(), text)),
            Item::Sec1Key(der) => keys.push((der.into(), text)),
            // Public keys, CRLs, requests: not what a gateway serves; HAProxy ignores them too.
            _ => {}
        }
    }
    let Some((leaf, _)) = chain.first() else {
        return Err(BundleError::NoCertificate);
    };
    let (key, key_pem) = match keys.len() {
        0 => return Err(BundleError::NoKey),
        1 => keys.remove(0),
        n => return Err(BundleError::SeveralKeys(n)),
    };

    let mut hosts = leaf_dns_names(leaf)?;
    if let Some(host) = source
        .split_once(CERT_SOURCE_MARKER)
        .and_then(|(_, host)| labels::normalize_host(host).ok())
    {
        hosts.push(host);
    }
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Err(BundleError::NoHosts);
    }

    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(BundleError::UnusableKey)?;
    let certs: Vec<CertificateDer<'static>> = chain.iter().map(|(der, _)| der.clone()).collect();
    match CertifiedKey::new(certs, signing_key).keys_match() {
        // Unknown: the key cannot tell its public key; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => return Err(BundleError::KeyMismatch),
        Err(e) => return Err(BundleError::BadLeaf(e.to_string())),
    }

    Ok(Certificate {
        source: source.to_string(),
        hosts,
        cert_pem: chain.into_iter().map(|(_, text)| text).collect(),
        key_pem,
    })
}

/// The PEM blocks of `pem` that rustls-pemfile recognizes, each with its text as written (from
/// its BEGIN line to its END line), so that what is served is what was stored.
fn pem_blocks(pem: &[u8]) -> Result<Vec<(Item, String)>, BundleError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = pem;
    loop {
        let next = rustls_pemfile::read_one_from_slice(rest)
            .map_err(|e| BundleError::NotPem(std::io::Error::from(e).to_string()))?;
        let Some((item, after)) = next else {
            return Ok(blocks);
        };
        // What was read: maybe text and blocks it skipped, then the block.
        let read = &rest[..rest.len() - after.len()];
        let start = read.windows(BEGIN.len()).rposition(|w| w == BEGIN).unwrap_or(0);
        let text = std::str::from_utf8(&read[start..])
            .map_err(|_| BundleError::NotPem("a block is not ASCII text".to_string()))?;
        blocks.push((item, format!("{}\n", text.trim_end())));
        rest = after;
    }
}

/// The leaf certificate's DNS names (subject alternative names), lowercase, without a final dot.
pub(crate) fn leaf_dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, BundleError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| BundleError::BadLeaf(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| BundleError::BadLeaf(e.to_string()))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => labels::normalize_host(dns).ok(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tepui_services::{validate_app, AppDefinition, PathId};
    use tepui_state::testing::state_with_agents;
    use tepui_state::{AppRecord, HealthCheckDef, PortDef, TaskDef, TaskRecord, TaskState};

    use super::*;
    use crate::endpoints::LABEL_APP;
    use crate::Balance;

    /// Two ready agents, 1 and 2, at 10.1.0.1 and 10.1.0.2.
    fn cluster() -> State {
        let mut state = state_with_agents(2, 4096);
        for (id, node) in state.nodes.iter_mut() {
            node.agent.as_mut().expect("an agent").http_addr = format!("10.1.0.{id}:5051");
        }
        state
    }

    /// Stores the app of Marathon JSON `json` as the services scheduler does.
    fn add_app(state: &mut State, json: serde_json::Value) {
        let definition = AppDefinition::from_json(&json.to_string()).expect("app JSON");
        let spec = validate_app(&definition, &PathId::root(), 1_000).expect("a valid app");
        let id = spec.id.to_string();
        state.apps.insert(
            id.clone(),
            AppRecord {
                id,
                version: spec.version.clone(),
                spec: serde_json::to_value(&spec).expect("serializable"),
                history: Vec::new(),
            },
        );
    }

    /// A running instance `task_id` of `app` on `agent` with `host_ports`.
    fn add_instance<'a>(
        state: &'a mut State,
        task_id: &str,
        app: &str,
        agent: u64,
        host_ports: &[u16],
    ) -> &'a mut TaskRecord {
        let def = TaskDef {
            ports: host_ports
                .iter()
                .map(|p| PortDef {
                    name: None,
                    host_port: *p,
                    container_port: 0,
                    protocol: "tcp".into(),
                })
                .collect(),
            ..TaskDef::default()
        };
        let mut task = TaskRecord::staging(task_id, app, agent, def, 1);
        task.state = TaskState::TaskRunning;
        task.labels.insert(LABEL_APP.into(), app.into());
        state.tasks.insert(task_id.into(), task);
        state.tasks.get_mut(task_id).expect("just inserted")
    }

    fn backend(task_id: &str, addr: &str) -> Backend {
        Backend {
            task_id: task_id.into(),
            addr: addr.parse::<SocketAddr>().expect("an address"),
        }
    }

    /// A route as (app, port, group, hosts, path).
    type RouteSummary<'a> = (&'a str, usize, &'a str, Vec<&'a str>, Option<&'a str>);

    fn summary(table: &GatewayTable) -> Vec<RouteSummary<'_>> {
        table
            .routes
            .iter()
            .map(|r| {
                (
                    r.app.as_str(),
                    r.port_index,
                    r.group.as_str(),
                    r.hosts.iter().map(String::as_str).collect(),
                    r.path.as_deref(),
                )
            })
            .collect()
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("names")
            .self_signed(&key)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_vhost_app_gets_one_route_with_its_instances() {
        let mut state = cluster();
        add_app(
            &mut state,
            serde_json::json!({
                "id": "/shop/web",
                "cmd": "serve",
                "portDefinitions": [{"port": 0}],
                "labels": {
                    "HAPROXY_GROUP": "external",
                    "HAPROXY_0_VHOST": "shop.example.com,WWW.shop.example.com:80",
                    "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
                    "HAPROXY_0_BALANCE": "leastconn",
                    "HAPROXY_0_STICKY": "true",
                },
            }),
        );
        add_instance(&mut state, "shop_web.2", "/shop/web", 2, &[31002]);
        add_instance(&mut state, "shop_web.1", "/shop/web", 1, &[31001]);
        let table = build(&state, Vec::new());
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        assert_eq!(
            table.routes,
            vec![HttpRoute {
                app: "/shop/web".into(),
                port_index: 0,
                group: "external".into(),
                hosts: vec!["shop.example.com".into(), "www.shop.example.com".into()],
                path: None,
                redirect_to_https: true,
                balance: Balance::LeastRequests,
                sticky: true,
                backends: vec![
                    backend("shop_web.1", "10.1.0.1:31001"),
                    backend("shop_web.2", "10.1.0.2:31002"),
                ],
            }]
        );
    }

    #[test]
    fn routes_are_ordered_hosts_first_then_longest_path() {
        let mut state = cluster();
        for (id, labels) in [
            ("/a-catchall", serde_json::json!({"HAPROXY_0_PATH": "/"})),
            ("/b-api", serde_json::json!({"HAPROXY_0_PATH": "/api /api/v2/admin"})),
            (
                "/c-site",
                serde_json::json!({"HAPROXY_0_VHOST": "site.example.com", "HAPROXY_0_PATH": "/static"}),
            ),
            ("/d-site", serde_json::json!({"HAPROXY_0_VHOST": "site.example.com"})),
            ("/e-grouponly", serde_json::json!({"HAPROXY_GROUP": "internal"})),
        ] {
            add_app(
                &mut state,
                serde_json::json!({"id": id, "cmd": "serve", "labels": labels}),
            );
        }
        let table = build(&state, Vec::new());
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        assert_eq!(
            summary(&table),
            vec![
                ("/c-site", 0, "external", vec!["site.example.com"], Some("/static")),
                ("/d-site", 0, "external", vec!["site.example.com"], None),
                ("/b-api", 0, "external", vec![], Some("/api/v2/admin")),
                ("/b-api", 0, "external", vec![], Some("/api")),
                ("/a-catchall", 0, "external", vec![], Some("/")),
            ]
        );
        // An app without instances still has its route, with no backends.
        assert!(table.routes.iter().all(|r| r.backends.is_empty()));
    }

    #[test]
    fn each_port_has_its_own_groups_and_labels() {
        let mut state = cluster();
        add_app(
            &mut state,
            serde_json::json!({
                "id": "/shop/api",
                "cmd": "serve",
                "portDefinitions": [{"port": 0}, {"port": 0}, {"port": 0}],
                "labels": {
                    "HAPROXY_GROUP": "external,partners",
                    "HAPROXY_0_VHOST": "api.example.com",
                    "HAPROXY_1_GROUP": "internal",
                    "HAPROXY_1_VHOST": "api.internal",
                    "HAPROXY_1_BALANCE": "source",
                    "HAPROXY_2_VHOST": "metrics.example.com",
                    "HAPROXY_2_ENABLED": "false",
                },
            }),
        );
        add_instance(&mut state, "shop_api.1", "/shop/api", 1, &[31000, 31001, 31002]);
        let table = build(&state, Vec::new());
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        assert_eq!(
            summary(&table),
            vec![
                ("/shop/api", 0, "external", vec!["api.example.com"], None),
                ("/shop/api", 0, "partners", vec!["api.example.com"], None),
                ("/shop/api", 1, "internal", vec!["api.internal"], None),
            ]
        );
        assert_eq!(table.routes[0].backends, vec![backend("shop_api.1", "10.1.0.1:31000")]);
        assert_eq!(table.routes[2].backends, vec![backend("shop_api.1", "10.1.0.1:31001")]);
        assert_eq!(table.routes[2].balance, Balance::Source);
        assert_eq!(table.routes[0].balance, Balance::RoundRobin);
    }

    #[test]
    fn only_running_healthy_instances_on_ready_agents_are_backends() {
        let mut state = cluster();
        add_app(
            &mut state,
            serde_json::json!({
                "id": "/web",
                "cmd": "serve",
                "labels": {"HAPROXY_0_VHOST": "web.example.com"},
            }),
        );
        let checked = |state: &mut State, id: &str, agent: u64, port: u16, healthy: Option<bool>| {
            let task = add_instance(state, id, "/web", agent, &[port]);
            task.def.health_checks = vec![HealthCheckDef {
                protocol: "TCP".into(),
                path: None,
                port: Some(port),
                command: None,
                grace_period_ms: 1_000,
                interval_ms: 1_000,
                timeout_ms: 1_000,
                max_consecutive_failures: 3,
                delay_ms: 0,
            }];
            task.healthy = healthy;
        };
        checked(&mut state, "web.healthy", 1, 31000, Some(true));
        checked(&mut state, "web.unhealthy", 1, 31001, Some(false));
        checked(&mut state, "web.unchecked", 2, 31002, None);
        add_instance(&mut state, "web.staging", "/web", 2, &[31003]).state = TaskState::TaskStaging;
        add_instance(&mut state, "web.lost-agent", "/web", 2, &[31004]);
        add_instance(&mut state, "web.other", "/web", 1, &[31005]);
        let mut table = build(&state, Vec::new());
        assert_eq!(
            table.routes[0].backends,
            vec![
                backend("web.healthy", "10.1.0.1:31000"),
                backend("web.lost-agent", "10.1.0.2:31004"),
                backend("web.other", "10.1.0.1:31005"),
            ]
        );
        // An agent that is not ready takes its instances out.
        state.nodes.get_mut(&2).expect("agent 2").status = tepui_state::NodeStatus::Lost;
        table = build(&state, Vec::new());
        assert_eq!(
            table.routes[0].backends,
            vec![
                backend("web.healthy", "10.1.0.1:31000"),
                backend("web.other", "10.1.0.1:31005"),
            ]
        );
    }

    #[test]
    fn a_bridge_app_routes_to_the_host_ports_of_its_port_mappings() {
        let mut state = cluster();
        add_app(
            &mut state,
            serde_json::json!({
                "id": "/db-admin",
                "container": {
                    "type": "DOCKER",
                    "docker": {"image": "admin:1"},
                    "portMappings": [{"containerPort": 5432}, {"containerPort": 8080, "hostPort": 0}],
                },
                "networks": [{"mode": "container/bridge"}],
                "labels": {"HAPROXY_1_VHOST": "db-admin.example.com", "HAPROXY_0_MODE": "tcp"},
            }),
        );
        add_instance(&mut state, "db-admin.1", "/db-admin", 2, &[31007, 31008]);
        let table = build(&state, Vec::new());
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        assert_eq!(
            summary(&table),
            vec![("/db-admin", 1, "external", vec!["db-admin.example.com"], None)]
        );
        assert_eq!(table.routes[0].backends, vec![backend("db-admin.1", "10.1.0.2:31008")]);
    }

    #[test]
    fn bad_labels_are_problems_of_their_app() {
        let mut state = cluster();
        add_app(
            &mut state,
            serde_json::json!({
                "id": "/shop/web",
                "cmd": "serve",
                "labels": {
                    "HAPROXY_0_VHOST": "shop.example.com,not_a_host",
                    "HAPROXY_0_BALANCE": "static-rr",
                    "HAPROXY_1_VHOST": "nowhere.example.com",
                },
            }),
        );
        let table = build(&state, Vec::new());
        // The route stays, with what could be read and the default balance.
        assert_eq!(
            summary(&table),
            vec![("/shop/web", 0, "external", vec!["shop.example.com"], None)]
        );
        assert_eq!(table.routes[0].balance, Balance::RoundRobin);
        let fields: Vec<(&str, &str)> = table
            .problems
            .iter()
            .map(|p| (p.source.as_str(), p.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("/shop/web", "labels.HAPROXY_0_BALANCE"),
                ("/shop/web", "labels.HAPROXY_0_VHOST"),
                ("/shop/web", "labels.HAPROXY_1_VHOST"),
            ]
        );
        assert!(
            table.problems[0].message.contains("roundrobin, leastconn or source"),
            "{}",
            table.problems[0].message
        );
    }

    #[test]
    fn a_good_bundle_serves_the_host_of_its_source_and_its_names() {
        let (cert, key) = self_signed(&["Shop.Example.com", "www.shop.example.com", "*.cdn.example.com"]);
        let bundle = format!("# the shop's certificate\n{cert}{key}");
        let table = build(
            &cluster(),
            vec![("secret:gateway/certs/shop.example.com".into(), Ok(bundle.into_bytes()))],
        );
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        let [served] = table.certificates.as_slice() else {
            panic!("one certificate: {:?}", table.certificates)
        };
        assert_eq!(served.source, "secret:gateway/certs/shop.example.com");
        assert_eq!(
            served.hosts,
            vec!["*.cdn.example.com", "shop.example.com", "www.shop.example.com"]
        );
        assert_eq!(served.cert_pem.trim(), cert.trim());
        assert_eq!(served.key_pem.trim(), key.trim());
    }

    #[test]
    fn a_chain_keeps_its_order_and_the_source_host_is_added() {
        let (leaf, key) = self_signed(&["a.example.com"]);
        let (intermediate, _) = self_signed(&["ca.example.com"]);
        let bundle = format!("{leaf}{intermediate}{key}");
        let table = build(
            &cluster(),
            vec![("secret:gateway/certs/b.example.com".into(), Ok(bundle.into_bytes()))],
        );
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        let served = &table.certificates[0];
        assert_eq!(served.hosts, vec!["a.example.com", "b.example.com"]);
        assert_eq!(served.cert_pem, format!("{}\n{}\n", leaf.trim(), intermediate.trim()));
    }

    #[test]
    fn broken_bundles_are_problems_never_panics() {
        let (cert, key) = self_signed(&["shop.example.com"]);
        let (_, other_key) = self_signed(&["shop.example.com"]);
        let (second_cert, second_key) = self_signed(&["shop.example.com"]);
        let broken_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        // (name, value, what the problem says)
        type Case<'a> = (&'a str, Result<Vec<u8>, String>, &'a str);
        let cases: Vec<Case> = vec![
            (
                "a-unopened",
                Err("the secret is sealed with another key".into()),
                "could not be opened",
            ),
            ("b-no-key", Ok(cert.clone().into_bytes()), "has no private key"),
            ("c-no-cert", Ok(key.clone().into_bytes()), "has no certificate"),
            (
                "d-other-key",
                Ok(format!("{cert}{other_key}").into_bytes()),
                "is not the first certificate's",
            ),
            (
                "e-two-keys",
                Ok(format!("{cert}{key}{second_key}").into_bytes()),
                "has 2 private keys",
            ),
            (
                "f-broken-key",
                Ok(format!("{cert}{broken_key}").into_bytes()),
                "cannot be used",
            ),
            (
                "g-not-pem",
                Ok(b"-----BEGIN CERTIFICATE-----\n!!!\n".to_vec()),
                "is not valid PEM",
            ),
            ("h-empty", Ok(Vec::new()), "has no certificate"),
            (
                "i-key-of-the-second",
                Ok(format!("{cert}{second_cert}{second_key}").into_bytes()),
                "is not the first",
            ),
        ];
        let input = cases
            .iter()
            .map(|(name, value, _)| (format!("secret:gateway/certs/{name}.example.com"), value.clone()))
            .collect();
        let table = build(&cluster(), input);
        assert!(table.certificates.is_empty(), "{:?}", table.certificates);
        assert_eq!(table.problems.len(), cases.len(), "{:?}", table.problems);
        for (problem, (name, _, expected)) in table.problems.iter().zip(&cases) {
            assert_eq!(problem.source, format!("secret:gateway/certs/{name}.example.com"));
            assert_eq!(problem.field, "value");
            assert!(problem.message.contains(expected), "{name}: {}", problem.message);
        }
    }

    #[test]
    fn a_certificate_without_any_host_is_a_problem() {
        let (cert, key) = self_signed(&[]);
        let table = build(
            &cluster(),
            vec![("/etc/tepui/default.pem".into(), Ok(format!("{cert}{key}").into_bytes()))],
        );
        assert!(table.certificates.is_empty());
        assert_eq!(table.problems.len(), 1);
        assert!(
            table.problems[0].message.contains("names no host"),
            "{}",
            table.problems[0].message
        );
    }

    #[test]
    fn two_builds_of_the_same_state_are_equal() {
        let mut state = cluster();
        for n in 0..5 {
            add_app(
                &mut state,
                serde_json::json!({
                    "id": format!("/app{n}"),
                    "cmd": "serve",
                    "labels": {
                        "HAPROXY_GROUP": "b,a",
                        "HAPROXY_0_VHOST": format!("app{n}.example.com"),
                        "HAPROXY_0_PATH": "/x /y",
                        "HAPROXY_0_BALANCE": "nope",
                    },
                }),
            );
            add_instance(
                &mut state,
                &format!("app{n}.1"),
                &format!("/app{n}"),
                1 + n % 2,
                &[31000 + n as u16],
            );
        }
        let (cert, key) = self_signed(&["app1.example.com"]);
        let certificates = || {
            vec![
                (
                    "secret:gateway/certs/app1.example.com".to_string(),
                    Ok(format!("{cert}{key}").into_bytes()),
                ),
                (
                    "secret:gateway/certs/app0.example.com".to_string(),
                    Err("sealed".to_string()),
                ),
            ]
        };
        let first = build(&state, certificates());
        let mut reversed = certificates();
        reversed.reverse();
        let second = build(&state, reversed);
        assert_eq!(first, second);
        assert_eq!(first.routes.len(), 5 * 2 * 2);
        assert_eq!(first.problems.len(), 5 + 1);
    }
}
