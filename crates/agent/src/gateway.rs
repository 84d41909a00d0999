//! The agent's side of the gateway: the table the leader sends, the L7 proxy where it is
//! turned on (`--gateway-http`, `--gateway-https`), and the virtual IPs' rules on every agent.
//!
//! The table lives in a watch that outlives the agent's streams: while no server is
//! reachable, the proxy and the rules keep serving the last table the leader sent.

use std::sync::Arc;
use std::time::Duration;

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

/// The agent's newest table from the leader (none before the first).
pub(crate) type RoutesFeed = watch::Receiver<Option<Arc<GatewayTable>>>;

/// The longest a task being killed waits to leave the gateway's routes before it is signalled.
pub(crate) const LEAVE_ROUTES_MAX: Duration = Duration::from_secs(2);

/// Whether the table sends anything to the task: a backend of an HTTP route or of a VIP.
pub(crate) fn routes_to(table: &GatewayTable, task_id: &str) -> bool {
    table
        .routes
        .iter()
        .any(|r| r.backends.iter().any(|b| b.task_id == task_id))
        || table
            .vips
            .iter()
            .any(|v| v.backends.iter().any(|b| b.task_id == task_id))
}

/// Waits until the newest table sends nothing to `task_id`, at most `limit`; returns how long
/// it waited. The leader leaves a task being killed out of its next table, which reaches every
/// agent's proxy at about the same time: a task signalled after that gets no request it could
/// not finish (a process without a SIGTERM handler ends at once, mid-response).
pub(crate) async fn leave_routes(mut feed: RoutesFeed, task_id: &str, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let left = feed.wait_for(|t| !t.as_deref().is_some_and(|t| routes_to(t, task_id)));
    // The sender gone (the agent stopping) or the limit reached: signal it anyway.
    let _ = tokio::time::timeout(limit, left).await;
    start.elapsed()
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

#[cfg(test)]
mod tests {
    use tepui_gateway::{Backend, HttpRoute};

    use super::*;

    fn routing_to(task_ids: &[&str]) -> Option<Arc<GatewayTable>> {
        let backends = task_ids
            .iter()
            .enumerate()
            .map(|(i, id)| Backend {
                task_id: id.to_string(),
                addr: format!("127.0.0.1:{}", 31000 + i).parse().unwrap(),
            })
            .collect();
        Some(Arc::new(GatewayTable {
            routes: vec![HttpRoute {
                app: "/web".into(),
                port_index: 0,
                group: "external".into(),
                hosts: vec!["web.example.test".into()],
                path: None,
                redirect_to_https: false,
                balance: Default::default(),
                sticky: false,
                backends,
            }],
            ..Default::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_leaves_the_routes_when_the_next_table_drops_it() {
        let (tx, rx) = watch::channel(routing_to(&["web.1", "web.2"]));
        let waiting = tokio::spawn({
            let rx = rx.clone();
            async move { leave_routes(rx, "web.1", LEAVE_ROUTES_MAX).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "still routed to: no signal yet");
        // A table that changes something else keeps it waiting.
        tx.send_replace(routing_to(&["web.1", "web.2", "web.3"]));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        tx.send_replace(routing_to(&["web.2", "web.3"]));
        assert_eq!(waiting.await.unwrap(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_not_routed_to_is_signalled_at_once_and_one_still_routed_at_the_limit() {
        let (tx, rx) = watch::channel(routing_to(&["web.2"]));
        assert_eq!(
            leave_routes(rx.clone(), "web.1", LEAVE_ROUTES_MAX).await,
            Duration::ZERO
        );
        let (_none, no_table) = watch::channel(None);
        assert_eq!(leave_routes(no_table, "web.1", LEAVE_ROUTES_MAX).await, Duration::ZERO);
        // No new table comes (no leader): the grace period bounds the wait.
        let limit = Duration::from_millis(1500);
        assert_eq!(leave_routes(rx.clone(), "web.2", limit).await, limit);
        // The agent stopping (its table's sender gone) ends the wait too.
        drop(tx);
        assert_eq!(leave_routes(rx, "web.2", LEAVE_ROUTES_MAX).await, Duration::ZERO);
    }

    #[test]
    fn virtual_ips_route_too() {
        let mut table = GatewayTable::default();
        assert!(!routes_to(&table, "db.1"));
        table.vips.push(
            serde_json::from_value(json!({
                "ip": "11.0.0.1", "port": 5432, "protocol": "tcp", "apps": ["/db"],
                "backends": [{"task_id": "db.1", "addr": "127.0.0.1:31001"}]
            }))
            .unwrap(),
        );
        assert!(routes_to(&table, "db.1"));
        assert!(!routes_to(&table, "db.2"));
    }
}
