//! The agent's side of the gateway: the table the leader sends, the L7 proxy where it is
//! turned on (`--gateway-http`, `--gateway-https`), and the virtual IPs' rules on every agent.
//!
//! The table lives in a watch that outlives the agent's streams: while no server is
//! reachable, the proxy and the rules keep serving the last table the leader sent.

use std::sync::Arc;

use serde_json::json;
use tepui_gateway::GatewayTable;
use tokio::sync::watch;

/// What the agent serves of the gateway.
pub struct AgentGateway {
    /// The newest table from the leader (none before the first).
    pub(crate) table: watch::Sender<Option<Arc<GatewayTable>>>,
    /// The L7 proxy, where it is turned on.
    pub(crate) proxy: Option<tepui_gateway::proxy::Gateway>,
}

impl AgentGateway {
    /// An agent's gateway without a proxy (the tables are kept, nothing is served).
    pub fn without_proxy() -> AgentGateway {
        AgentGateway {
            table: watch::channel(None).0,
            proxy: None,
        }
    }

    /// Takes a table from the leader; an unchanged one changes nothing.
    pub fn update(&self, table: GatewayTable) {
        self.table.send_if_modified(|current| {
            if current.as_deref() == Some(&table) {
                return false;
            }
            *current = Some(Arc::new(table));
            true
        });
    }

    /// What `tepui gateway routes` shows of this agent.
    pub fn live(&self) -> Option<serde_json::Value> {
        let proxy = self.proxy.as_ref()?;
        Some(json!({
            "http": proxy.http_addr().map(|a| a.to_string()),
            "https": proxy.https_addr().map(|a| a.to_string()),
            "routes": proxy.routes(),
        }))
    }

    /// The proxy's counters, Prometheus text (empty without a proxy).
    pub fn metrics(&self) -> String {
        self.proxy.as_ref().map(|p| p.metrics()).unwrap_or_default()
    }
}

/// A proxy's table: the agent's newest one, the empty table until the first arrives.
pub(crate) fn proxy_feed(
    mut from: watch::Receiver<Option<Arc<GatewayTable>>>,
) -> (
    watch::Receiver<Arc<GatewayTable>>,
    impl std::future::Future<Output = ()>,
) {
    let first = from.borrow_and_update().clone().unwrap_or_default();
    let (tx, rx) = watch::channel(first);
    let forward = async move {
        while from.changed().await.is_ok() {
            let next = from.borrow_and_update().clone();
            if let Some(t) = next {
                if tx.send(t).is_err() {
                    return;
                }
            }
        }
    };
    (rx, forward)
}

/// Keeps this host's virtual IP rules those of the newest table, on every agent (every agent
/// and every task reaches VIPs through its own kernel). Rules are loaded when the VIPs change,
/// and stay when the agent stops: tasks outlive their agent, and so do the VIPs they use; the
/// next agent's first table loads them anew.
///
/// `node_id` is this agent's: its own bridge tasks are sent to at their container's address
/// ([`tepui_gateway::vip::local_backends`]), so each agent loads rules of its own.
pub(crate) async fn follow_vips(
    mut tables: watch::Receiver<Option<Arc<GatewayTable>>>,
    cluster_id: String,
    node_id: u64,
) {
    use tepui_gateway::vip::{kernel, local_backends, rules::Chains};
    if !tokio::task::spawn_blocking(kernel::available).await.unwrap_or(false) {
        tracing::warn!("iptables-save/iptables-restore not found: virtual IPs are not served on this host");
        return;
    }
    // A cluster without VIPs leaves the host's tables alone; rules an earlier run left are
    // refreshed by the first table.
    let chains = Chains::for_cluster(&cluster_id);
    let check = chains.clone();
    let present = tokio::task::spawn_blocking(move || kernel::present(&check)).await;
    let mut loaded: Option<Vec<tepui_gateway::Vip>> = match present {
        Ok(Ok(false)) => Some(Vec::new()),
        _ => None,
    };
    loop {
        let table = tables.borrow_and_update().clone();
        if let Some(table) = table {
            let vips = local_backends(&table.vips, node_id);
            if loaded.as_ref() != Some(&vips) {
                let to_load = vips.clone();
                let chains = chains.clone();
                let result = tokio::task::spawn_blocking(move || kernel::apply(&to_load, &chains)).await;
                match result {
                    Ok(Ok(())) => {
                        tracing::info!(vips = vips.len(), "virtual IP rules loaded");
                        loaded = Some(vips);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "virtual IP rules could not be loaded; next table tries again")
                    }
                    Err(_) => return,
                }
            }
        }
        if tables.changed().await.is_err() {
            return;
        }
    }
}
