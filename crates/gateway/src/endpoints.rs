//! The apps of the state with their instances that may get traffic, and where each of an
//! instance's ports answers: what routes and virtual IPs point at.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use tepui_services::app::{AppSpec, NetworkMode};
use tepui_state::{NodeStatus, State};

/// The label the services framework puts an instance's app id in (tepui-marathon's).
pub const LABEL_APP: &str = "tepui.app";

/// An app and its instances that may get traffic now.
#[derive(Clone, Debug)]
pub struct AppEndpoints {
    pub spec: AppSpec,
    /// Sorted by task id.
    pub instances: Vec<Instance>,
}

/// A running (and, with health checks, healthy) instance on a ready agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub task_id: String,
    /// By the app's port index (`n` of `HAPROXY_{n}_*` and `VIP_{n}`): the agent's address and
    /// the host port, or none where the port has no host port (a bridge mapping without one).
    pub ports: Vec<Option<SocketAddr>>,
}

impl AppEndpoints {
    /// The labels of the app's port `index`: its port definition's (host networking) or its
    /// port mapping's (bridge).
    pub fn port_labels(&self, index: usize) -> BTreeMap<String, String> {
        if self.spec.network_mode() == NetworkMode::Host {
            self.spec.port_definitions.get(index).map(|d| d.labels.clone())
        } else {
            self.spec.port_mappings().get(index).map(|m| m.labels.clone())
        }
        .unwrap_or_default()
    }

    /// How many ports the app has (`n` runs from 0 to this).
    pub fn port_count(&self) -> usize {
        if self.spec.network_mode() == NetworkMode::Host {
            self.spec.port_definitions.len()
        } else {
            self.spec.port_mappings().len()
        }
    }

    /// Where the instances answer on port `index`, sorted.
    pub fn addresses(&self, index: usize) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = self
            .instances
            .iter()
            .filter_map(|i| Some((i.task_id.clone(), (*i.ports.get(index)?)?)))
            .collect();
        out.sort();
        out
    }
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

/// Every app of `state` (by id) with its instances that may get traffic. An app whose stored
/// definition cannot be read is left out (the services scheduler wrote it; it reads them too).
pub fn apps(state: &State) -> BTreeMap<String, AppEndpoints> {
    let mut out: BTreeMap<String, AppEndpoints> = state
        .apps
        .values()
        .filter_map(|a| {
            let spec: AppSpec = serde_json::from_value(a.spec.clone()).ok()?;
            Some((
                a.id.clone(),
                AppEndpoints {
                    spec,
                    instances: Vec::new(),
                },
            ))
        })
        .collect();
    let agent_ips: BTreeMap<u64, IpAddr> = state
        .nodes
        .values()
        .filter(|n| n.status == NodeStatus::Ready)
        .filter_map(|n| Some((n.id, ip_of(&n.agent.as_ref()?.http_addr)?)))
        .collect();
    for t in state.tasks.values().filter(|t| t.discoverable()) {
        let Some(app) = t.labels.get(LABEL_APP).and_then(|id| out.get_mut(id)) else {
            continue;
        };
        let Some(ip) = agent_ips.get(&t.agent_id) else {
            continue;
        };
        // The task's ports are the app's ports that have a host port, in order.
        let mut host_ports = t.def.ports.iter().map(|p| p.host_port);
        let ports = if app.spec.network_mode() == NetworkMode::Host {
            (0..app.spec.port_definitions.len())
                .map(|_| host_ports.next())
                .collect::<Vec<_>>()
        } else {
            app.spec
                .port_mappings()
                .iter()
                .map(|m| m.host_port.and_then(|_| host_ports.next()))
                .collect()
        };
        let ports = ports
            .into_iter()
            .map(|p| p.filter(|p| *p != 0).map(|p| SocketAddr::new(*ip, p)))
            .collect();
        app.instances.push(Instance {
            task_id: t.id.clone(),
            ports,
        });
    }
    for app in out.values_mut() {
        app.instances.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    out
}
