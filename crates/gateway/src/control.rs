//! The control plane's side of the gateway: the table follows the state on the leader (which
//! sends it to every agent), certificates are kept as the cluster's secrets, and the live
//! routes are asked of the agents that serve them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Json;
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::http::JsonBody;
use tepui_node::{now_ms, Error, ErrorKind, Node};
use tepui_proto::agent::Request;
use tepui_secrets::Keyring;
use tepui_state::{Command, NodeStatus};
use tokio::sync::watch;

use crate::{build, GatewayTable};

/// Where certificates are kept among the secrets: `gateway/certs/<host>`.
pub const CERT_PREFIX: &str = "gateway/certs/";
/// A wildcard host's `*` in a secret path, which allows only letters, digits, `.`, `_`, `-`.
const WILDCARD_IN_PATH: &str = "_wildcard";
/// Rebuilds follow the state at most this often while changes keep coming.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(50);
/// How long `GET /v1/gateway/routes` waits for each agent.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The secret path of `host`'s certificate.
pub fn cert_path(host: &str) -> String {
    match host.strip_prefix('*') {
        Some(rest) => format!("{CERT_PREFIX}{WILDCARD_IN_PATH}{rest}"),
        None => format!("{CERT_PREFIX}{host}"),
    }
}

/// The host a certificate's secret path is for.
pub fn host_of_path(path: &str) -> Option<String> {
    let host = path.strip_prefix(CERT_PREFIX)?;
    Some(match host.strip_prefix(WILDCARD_IN_PATH) {
        Some(rest) => format!("*{rest}"),
        None => host.to_string(),
    })
}

/// The table of `node`'s applied state now; certificates are opened with `keyring`.
pub fn table(node: &Node, keyring: Option<&Keyring>) -> GatewayTable {
    node.read(|state| {
        let certificates = state
            .secrets
            .range(CERT_PREFIX.to_string()..)
            .take_while(|(p, _)| p.starts_with(CERT_PREFIX))
            .filter_map(|(path, record)| {
                let host = host_of_path(path)?;
                let value = match keyring {
                    Some(k) => k.open(path, &record.sealed).map_err(|e| e.to_string()),
                    None => Err("this server has no secrets key to open certificates with".to_string()),
                };
                Some((format!("secret:{CERT_PREFIX}{host}"), value))
            })
            .collect();
        build::build(state, certificates)
    })
}

/// Keeps `tx` the table of `node`'s state while it leads (the agents' streams send it on):
/// rebuilt after every change of the applied state or of the leadership, at most once per
/// [`MIN_REBUILD_INTERVAL`], and published only when it changed. Ends with the node.
pub async fn follow(node: Node, keyring: Option<Arc<Keyring>>, tx: watch::Sender<Option<Arc<GatewayTable>>>) {
    let mut changes = node.changes();
    loop {
        changes.mark_seen();
        let started = Instant::now();
        if node.is_leader() {
            let node = node.clone();
            let keyring = keyring.clone();
            let Ok(next) = tokio::task::spawn_blocking(move || table(&node, keyring.as_deref())).await else {
                return;
            };
            let changed = tx.send_if_modified(|current| {
                if current.as_deref() == Some(&next) {
                    return false;
                }
                *current = Some(Arc::new(next));
                true
            });
            if let (true, Some(t)) = (changed, tx.borrow().as_ref()) {
                tracing::debug!(
                    routes = t.routes.len(),
                    vips = t.vips.len(),
                    certificates = t.certificates.len(),
                    problems = t.problems.len(),
                    took_us = started.elapsed().as_micros() as u64,
                    "gateway table rebuilt"
                );
            }
        }
        if !changes.next(started, MIN_REBUILD_INTERVAL).await {
            return;
        }
    }
}

#[derive(Clone)]
struct Control {
    node: Node,
    keyring: Option<Arc<Keyring>>,
}

/// `/v1/gateway/...`: the table, the certificates, the agents' live routes. They run on the
/// leader (which opens the certificates and reaches the agents).
pub fn routes(node: Node, keyring: Option<Arc<Keyring>>) -> Routes {
    Routes::new()
        .route("/v1/gateway/table", Policy::new().get(Cap::Read), get(show_table))
        .route("/v1/gateway/routes", Policy::new().get(Cap::Read), get(live_routes))
        .route("/v1/gateway/certs", Policy::new().get(Cap::Read), get(list_certs))
        .route(
            "/v1/gateway/certs/{host}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(show_cert).put(put_cert).delete(remove_cert),
        )
        .with_state(Control { node, keyring })
}

// The answers' shapes are wire types, in tepui-proto (the CLI reads them without this crate).
pub use crate::table::{AgentRoutes, CertPut, CertView, TableView};

fn cert_views(table: &GatewayTable) -> Vec<CertView> {
    let mut out: Vec<CertView> = table
        .certificates
        .iter()
        .map(|c| CertView {
            host: c.source.rsplit('/').next().unwrap_or_default().to_string(),
            source: c.source.clone(),
            hosts: c.hosts.clone(),
            not_after: crate::certs::not_after(&c.cert_pem),
            problem: None,
        })
        .collect();
    for p in &table.problems {
        if let Some(path) = p.source.strip_prefix("secret:") {
            if let Some(host) = host_of_path(path) {
                out.push(CertView {
                    host,
                    source: p.source.clone(),
                    hosts: Vec::new(),
                    not_after: None,
                    problem: Some(p.message.clone()),
                });
            }
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

async fn show_table(State(c): State<Control>) -> Result<Json<TableView>, Error> {
    let t = tokio::task::spawn_blocking(move || table(&c.node, c.keyring.as_deref()))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(Json(TableView {
        certificates: cert_views(&t),
        routes: t.routes,
        vips: t.vips,
        problems: t.problems,
    }))
}

async fn list_certs(State(c): State<Control>) -> Result<Json<Vec<CertView>>, Error> {
    let t = tokio::task::spawn_blocking(move || table(&c.node, c.keyring.as_deref()))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(Json(cert_views(&t)))
}

fn unknown_cert(host: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "unknown_certificate",
        format!("no certificate for {host:?}"),
    )
}

async fn show_cert(State(c): State<Control>, Path(host): Path<String>) -> Result<Json<CertView>, Error> {
    let host = host.to_ascii_lowercase();
    let Json(all) = list_certs(State(c)).await?;
    all.into_iter()
        .find(|v| v.host == host)
        .map(Json)
        .ok_or_else(|| unknown_cert(&host))
}

/// Whether `host` is a name a certificate can be chosen for by SNI (`*.` once, at the start).
fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

async fn put_cert(
    State(c): State<Control>,
    Path(host): Path<String>,
    JsonBody(req): JsonBody<CertPut>,
) -> Result<Json<CertView>, Error> {
    let host = host.to_ascii_lowercase();
    if !valid_host(&host) {
        return Err(Error::new(
            ErrorKind::Invalid,
            "invalid_host",
            format!("{host:?} is not a host name (letters, digits and '-' between dots; '*.' may start it)"),
        )
        .field("host"));
    }
    let mut bundle = req.cert.trim_end().to_string();
    bundle.push('\n');
    bundle.push_str(req.key.trim_end());
    bundle.push('\n');
    let hosts = crate::certs::check_bundle(&host, bundle.as_bytes())
        .map_err(|(field, message)| Error::new(ErrorKind::Invalid, "invalid_certificate", message).field(field))?;
    if bundle.len() > tepui_secrets::VALUE_LIMIT {
        return Err(Error::new(
            ErrorKind::TooLarge,
            "certificate_too_large",
            format!(
                "a certificate and key take at most {} bytes",
                tepui_secrets::VALUE_LIMIT
            ),
        )
        .field("cert"));
    }
    let Some(keyring) = &c.keyring else {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "no_secrets_key",
            "the leading server has no secrets key to keep certificates with",
        ));
    };
    let path = cert_path(&host);
    let sealed = keyring.seal(&path, bundle.as_bytes());
    c.node
        .write(Command::PutSecret {
            path: path.clone(),
            sealed,
            now: now_ms(),
        })
        .await?;
    tracing::info!(host = %host, "gateway certificate stored");
    Ok(Json(CertView {
        source: format!("secret:{CERT_PREFIX}{host}"),
        host,
        not_after: crate::certs::not_after(&req.cert),
        hosts,
        problem: None,
    }))
}

async fn remove_cert(State(c): State<Control>, Path(host): Path<String>) -> Result<Json<serde_json::Value>, Error> {
    let host = host.to_ascii_lowercase();
    let path = cert_path(&host);
    if !c.node.read(|s| s.secrets.contains_key(&path)) {
        return Err(unknown_cert(&host));
    }
    c.node.write(Command::DeleteSecret { path }).await?;
    tracing::info!(host = %host, "gateway certificate removed");
    Ok(Json(serde_json::json!({ "deleted": host })))
}

/// Every ready agent's gateway, asked side by side: what it serves now.
async fn live_routes(State(c): State<Control>) -> Result<Json<Vec<AgentRoutes>>, Error> {
    let agents: Vec<(u64, String)> = c.node.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.agent.is_some() && n.status == NodeStatus::Ready)
            .map(|n| (n.id, n.name.clone()))
            .collect()
    });
    let asks = agents.into_iter().map(|(id, name)| {
        let node = c.node.clone();
        async move {
            let answer = tokio::time::timeout(ASK_TIMEOUT, node.agents().ask(id, &name, Request::GatewayRoutes)).await;
            let (gateway, error) = match answer {
                Ok(Ok(v)) => (Some(v), None),
                Ok(Err(e)) => (None, Some(e.to_string())),
                Err(_) => (None, Some(format!("no answer within {}s", ASK_TIMEOUT.as_secs()))),
            };
            AgentRoutes {
                agent_id: id,
                agent: name,
                gateway,
                error,
            }
        }
    });
    Ok(Json(futures::future::join_all(asks).await))
}
