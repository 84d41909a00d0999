//! Service ports: the cluster-wide port of each of an app's ports (a `portDefinitions` port, a
//! port mapping's `servicePort`), which load balancers and service discovery use. Marathon
//! assigns the ones given as 0 from 10000-20000, unique across apps, and keeps them across
//! updates.

use std::collections::{BTreeMap, BTreeSet};

use crate::app::{AppSpec, NetworkMode};
use crate::path::PathId;
use crate::validate::ValidationErrors;

/// Marathon's default `local_port_min` and `local_port_max`.
pub const SERVICE_PORTS: (u16, u16) = (10000, 20000);

/// The service ports an app holds, in port order (0 for none yet).
pub fn service_ports(spec: &AppSpec) -> Vec<u16> {
    match spec.network_mode() {
        NetworkMode::Host => spec.port_definitions.iter().map(|p| p.port).collect(),
        NetworkMode::Bridge => spec.port_mappings().iter().map(|m| m.service_port).collect(),
    }
}

fn set_service_ports(spec: &mut AppSpec, ports: &[u16]) {
    match spec.network_mode() {
        NetworkMode::Host => {
            for (p, port) in spec.port_definitions.iter_mut().zip(ports) {
                p.port = *port;
            }
        }
        NetworkMode::Bridge => {
            if let Some(c) = spec.container.as_mut() {
                for (m, port) in c.port_mappings.iter_mut().zip(ports) {
                    m.service_port = *port;
                }
            }
        }
    }
}

/// Gives every 0 service port of the `changed` apps a free one: the port the app had at that
/// position before if it had one, else the lowest port no other app holds. A port another app
/// already holds is refused.
pub fn assign(
    changed: &mut [AppSpec],
    others: &BTreeMap<PathId, AppSpec>,
    previous: &BTreeMap<PathId, AppSpec>,
) -> Result<(), ValidationErrors> {
    let changing: BTreeSet<&PathId> = changed.iter().map(|a| &a.id).collect();
    let mut taken: BTreeMap<u16, PathId> = BTreeMap::new();
    for (id, app) in others.iter().filter(|(id, _)| !changing.contains(id)) {
        for p in service_ports(app).into_iter().filter(|p| *p != 0) {
            taken.insert(p, id.clone());
        }
    }
    // Fixed ports first, so an automatic one never takes a port asked for explicitly.
    for app in changed.iter() {
        for (i, p) in service_ports(app).into_iter().enumerate().filter(|(_, p)| *p != 0) {
            if let Some(holder) = taken.get(&p).filter(|h| **h != app.id) {
                let path = match app.network_mode() {
                    NetworkMode::Host => format!("/portDefinitions({i})/port"),
                    NetworkMode::Bridge => format!("/container/portMappings({i})/servicePort"),
                };
                return Err(ValidationErrors::single(
                    &path,
                    format!("Requested service port {p} is already used by app {holder}"),
                ));
            }
            taken.insert(p, app.id.clone());
        }
    }
    for app in changed.iter_mut() {
        let before = previous.get(&app.id).map(service_ports).unwrap_or_default();
        let mut ports = service_ports(app);
        for (i, port) in ports.iter_mut().enumerate().filter(|(_, p)| **p == 0) {
            let kept = before.get(i).copied().filter(|p| *p != 0 && !taken.contains_key(p));
            let chosen = match kept {
                Some(p) => p,
                None => (SERVICE_PORTS.0..=SERVICE_PORTS.1)
                    .find(|p| !taken.contains_key(p))
                    .ok_or_else(|| ValidationErrors::single("/", "no service port is left in 10000-20000"))?,
            };
            taken.insert(chosen, app.id.clone());
            *port = chosen;
        }
        set_service_ports(app, &ports);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate_app;
    use crate::AppDefinition;

    fn app(json: serde_json::Value) -> AppSpec {
        let def: AppDefinition = serde_json::from_value(json).unwrap();
        validate_app(&def, &PathId::root(), 0).unwrap()
    }

    fn by_id(apps: &[AppSpec]) -> BTreeMap<PathId, AppSpec> {
        apps.iter().map(|a| (a.id.clone(), a.clone())).collect()
    }

    #[test]
    fn zero_ports_get_the_lowest_free_ones_and_keep_them() {
        let a = app(serde_json::json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 0}]}));
        let mut first = vec![a.clone()];
        assign(&mut first, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(service_ports(&first[0]), vec![10000, 10001]);
        let b = app(serde_json::json!({"id": "/b", "cmd": "x", "portDefinitions": [{"port": 0}]}));
        let mut second = vec![b];
        assign(&mut second, &by_id(&first), &BTreeMap::new()).unwrap();
        assert_eq!(service_ports(&second[0]), vec![10002]);
        // An update of /a that says 0 again keeps its ports.
        let mut again = vec![a];
        let all = by_id(&[first[0].clone(), second[0].clone()]);
        assign(&mut again, &all, &by_id(&first)).unwrap();
        assert_eq!(service_ports(&again[0]), vec![10000, 10001]);
    }

    #[test]
    fn a_port_held_by_another_app_is_refused_with_its_path() {
        let a = app(serde_json::json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 10500}]}));
        let mut a = vec![a];
        assign(&mut a, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let b = app(serde_json::json!({"id": "/b", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 10500}]}));
        let err = assign(&mut [b], &by_id(&a), &BTreeMap::new()).unwrap_err();
        let body = serde_json::to_string(&err).unwrap();
        assert!(
            body.contains("/portDefinitions(1)/port") && body.contains("/a"),
            "{body}"
        );
    }
}
