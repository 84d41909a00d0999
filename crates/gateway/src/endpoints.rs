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
    /// The agent it runs on.
    pub agent_id: u64,
    /// By the app's port index, as `ports`: the container's own address and port (bridge
    /// networking, once its agent reported the container's address), none otherwise.
    pub container_ports: Vec<Option<SocketAddr>>,
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

    /// The instances behind port `index` as VIP backends: as [`Self::addresses`], with each
    /// one's agent and container address.
    pub fn backends(&self, index: usize) -> Vec<crate::VipBackend> {
        let mut out: Vec<crate::VipBackend> = self
            .instances
            .iter()
            .filter_map(|i| {
                Some(crate::VipBackend {
                    task_id: i.task_id.clone(),
                    addr: (*i.ports.get(index)?)?,
                    agent_id: i.agent_id,
                    container: i.container_ports.get(index).copied().flatten(),
                })
            })
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
        let mut task_ports = t.def.ports.iter();
        let host = app.spec.network_mode() == NetworkMode::Host;
        let defs: Vec<Option<&tepui_state::PortDef>> = if host {
            (0..app.spec.port_definitions.len())
                .map(|_| task_ports.next())
                .collect()
        } else {
            app.spec
                .port_mappings()
                .iter()
                .map(|m| m.host_port.and_then(|_| task_ports.next()))
                .collect()
        };
        let ports = defs
            .iter()
            .map(|d| {
                d.map(|d| d.host_port)
                    .filter(|p| *p != 0)
                    .map(|p| SocketAddr::new(*ip, p))
            })
            .collect();
        let container_ports = defs
            .iter()
            .map(|d| {
                let d = d.filter(|d| d.host_port != 0)?;
                let cip = t.container_ip.filter(|_| !host)?;
                let port = if d.container_port == 0 {
                    d.host_port
                } else {
                    d.container_port
                };
                Some(SocketAddr::new(cip, port))
            })
            .collect();
        app.instances.push(Instance {
            task_id: t.id.clone(),
            ports,
            agent_id: t.agent_id,
            container_ports,
        });
    }
    pods(state, &agent_ips, &mut out);
    for app in out.values_mut() {
        app.instances.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    out
}

/// The labels of a pod instance's tasks (tepui-marathon's): the pod and the instance.
const LABEL_POD: &str = "tepui.pod";
const LABEL_INSTANCE: &str = "tepui.instance";

/// Pods as the gateway sees them: an app whose ports are the pod's endpoints in order (so
/// `HAPROXY_{n}_*` count endpoints, container by container, as Marathon-LB's do for pods) and
/// whose instances are the pod's instances that run with every container (healthy where
/// checked), each port at its agent and its executor's host port.
fn pods(state: &State, agent_ips: &BTreeMap<u64, IpAddr>, out: &mut BTreeMap<String, AppEndpoints>) {
    for p in state.pods.values() {
        let Ok(pod) = serde_json::from_value::<tepui_services::PodSpec>(p.spec.clone()) else {
            continue;
        };
        let endpoints = pod.endpoints();
        let def = serde_json::json!({
            "id": p.id,
            "cmd": "pod",
            "labels": pod.labels,
            "portDefinitions": endpoints.iter().map(|(_, e)| serde_json::json!({
                "port": 0, "name": e.name, "labels": e.labels,
            })).collect::<Vec<_>>(),
        });
        let Ok(def) = serde_json::from_value::<tepui_services::AppDefinition>(def) else {
            continue;
        };
        let Ok(spec) = tepui_services::validate_app(&def, &tepui_services::PathId::root(), 0) else {
            continue;
        };
        let mut by_instance: BTreeMap<&str, Vec<&tepui_state::TaskRecord>> = BTreeMap::new();
        for t in state.tasks.values() {
            if t.labels.get(LABEL_POD) == Some(&p.id) && !t.state.is_terminal() {
                if let Some(i) = t.labels.get(LABEL_INSTANCE) {
                    by_instance.entry(i.as_str()).or_default().push(t);
                }
            }
        }
        let mut instances = vec![];
        for (id, tasks) in by_instance {
            if tasks.len() < pod.containers.len() || !tasks.iter().all(|t| t.discoverable()) {
                continue;
            }
            let Some(first) = tasks.first() else { continue };
            let Some(ip) = agent_ips.get(&first.agent_id) else {
                continue;
            };
            let executor_ports = state
                .executor_of_task(&first.id)
                .map(|e| e.def.ports.clone())
                .unwrap_or_default();
            let ports = endpoints
                .iter()
                .map(|(_, e)| {
                    let p = executor_ports
                        .iter()
                        .find(|p| p.name.as_deref() == Some(e.name.as_str()))?;
                    (p.host_port != 0).then(|| SocketAddr::new(*ip, p.host_port))
                })
                .collect::<Vec<_>>();
            instances.push(Instance {
                task_id: id.to_string(),
                container_ports: vec![None; ports.len()],
                ports,
                agent_id: first.agent_id,
            });
        }
        out.insert(p.id.clone(), AppEndpoints { spec, instances });
    }
}

#[cfg(test)]
mod tests {
    use tepui_services::{validate_app, AppDefinition, PathId};
    use tepui_state::testing::state_with_agents;
    use tepui_state::{AppRecord, PortDef, TaskDef, TaskRecord, TaskState};

    use super::*;

    /// Agent 2 at 10.1.0.2, running `task_id` of `json`'s app with `ports` (host, container).
    fn one_instance(json: serde_json::Value, task_id: &str, ports: &[(u16, u16)], container_ip: Option<&str>) -> State {
        let mut state = state_with_agents(2, 4096);
        for (id, node) in state.nodes.iter_mut() {
            node.agent.as_mut().expect("an agent").http_addr = format!("10.1.0.{id}:5051");
        }
        let definition = AppDefinition::from_json(&json.to_string()).expect("app JSON");
        let spec = validate_app(&definition, &PathId::root(), 1_000).expect("a valid app");
        let app = spec.id.to_string();
        state.apps.insert(
            app.clone(),
            AppRecord {
                id: app.clone(),
                version: spec.version.clone(),
                spec: serde_json::to_value(&spec).expect("serializable"),
                history: Vec::new(),
            },
        );
        let def = TaskDef {
            ports: ports
                .iter()
                .map(|(host_port, container_port)| PortDef {
                    name: None,
                    host_port: *host_port,
                    container_port: *container_port,
                    protocol: "tcp".into(),
                })
                .collect(),
            ..TaskDef::default()
        };
        let mut task = TaskRecord::staging(task_id, &app, 2, def, 1);
        task.state = TaskState::TaskRunning;
        task.labels.insert(LABEL_APP.into(), app);
        task.container_ip = container_ip.map(|ip| ip.parse().expect("an address"));
        state.tasks.insert(task_id.into(), task);
        state
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("an address"))
    }

    #[test]
    fn a_bridge_instance_has_its_agent_and_container_addresses() {
        let json = serde_json::json!({
            "id": "/db",
            "container": {
                "type": "DOCKER",
                "docker": {"image": "db:1"},
                "portMappings": [
                    {"containerPort": 5432, "hostPort": 0},
                    {"containerPort": 0, "hostPort": 0},
                ],
            },
            "networks": [{"mode": "container/bridge"}],
        });
        let state = one_instance(json.clone(), "db.1", &[(31001, 5432), (31003, 0)], Some("10.213.0.5"));
        let found = apps(&state);
        let i = &found["/db"].instances[0];
        assert_eq!(i.agent_id, 2);
        assert_eq!(i.ports, [addr("10.1.0.2:31001"), addr("10.1.0.2:31003")]);
        assert_eq!(i.container_ports, [addr("10.213.0.5:5432"), addr("10.213.0.5:31003")]);
        let backends = found["/db"].backends(0);
        assert_eq!(
            (backends[0].agent_id, backends[0].addr, backends[0].container),
            (2, "10.1.0.2:31001".parse().unwrap(), addr("10.213.0.5:5432"))
        );

        // Before its agent reports the container's address, there is none.
        let state = one_instance(json, "db.1", &[(31001, 5432), (31003, 0)], None);
        assert_eq!(apps(&state)["/db"].instances[0].container_ports, [None, None]);
    }

    #[test]
    fn a_host_networking_instance_has_no_container_address() {
        let json = serde_json::json!({"id": "/web", "cmd": "serve", "portDefinitions": [{"port": 0}]});
        let state = one_instance(json, "web.1", &[(31005, 0)], Some("10.213.0.6"));
        let i = &apps(&state)["/web"].instances[0];
        assert_eq!(i.ports, [addr("10.1.0.2:31005")]);
        assert_eq!(i.container_ports, [None]);
        assert_eq!(apps(&state)["/web"].backends(0)[0].container, None);
    }
}
