//! Long-running services (Marathon apps and pods): their definitions with past versions, and
//! the deployments that move them. Instances are tasks of the services framework; they carry
//! their app (or pod) and version in their labels.
//!
//! Definitions and deployments are kept as the JSON the services crate writes, so this crate
//! stays free of its types; only the leader interprets them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ApplyError, Response, State};

/// Past versions kept per app (Marathon keeps a bounded history too).
pub const MAX_APP_VERSIONS: usize = 50;

/// An app as it should be: the target of every deployment that touches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app's path id, `/prod/web`.
    pub id: String,
    /// Its version (Marathon's timestamp string).
    pub version: String,
    /// The definition (tepui-services' `AppSpec`).
    pub spec: Value,
    /// Earlier definitions by version, oldest first, the current one excluded.
    #[serde(default)]
    pub history: Vec<(String, Value)>,
}

/// A deployment in progress (tepui-services' `Deployment`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: String,
    pub plan: Value,
}

/// A whole change of the services: apps (and pods) to put and to remove, and the deployment
/// that carries it out, applied at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// (id, version, definition).
    pub put: Vec<(String, String, Value)>,
    pub remove: Vec<String>,
    pub deployment: Option<DeploymentRecord>,
    /// Deployments this one replaces (a rollback, a forced change).
    #[serde(default)]
    pub cancel: Vec<String>,
    /// Pods: (id, version, definition) as for apps (tepui-services' `PodSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub put_pods: Vec<(String, String, Value)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_pods: Vec<String>,
}

/// Puts a definition into `records`, keeping the one it replaces in its history.
fn put_record(records: &mut std::collections::BTreeMap<String, AppRecord>, id: &str, version: &str, spec: &Value) {
    match records.get_mut(id) {
        Some(record) => {
            if record.version != version {
                let previous = (record.version.clone(), record.spec.clone());
                record.history.push(previous);
                if record.history.len() > MAX_APP_VERSIONS {
                    let excess = record.history.len() - MAX_APP_VERSIONS;
                    record.history.drain(..excess);
                }
            }
            record.version = version.to_string();
            record.spec = spec.clone();
        }
        None => {
            records.insert(
                id.to_string(),
                AppRecord {
                    id: id.to_string(),
                    version: version.to_string(),
                    spec: spec.clone(),
                    history: vec![],
                },
            );
        }
    }
}

impl State {
    pub(crate) fn change_services(&mut self, c: &ServiceChange) -> Result<Response, ApplyError> {
        self.require_cluster()?;
        // All or nothing: check before changing anything.
        let all_puts = c.put.iter().chain(&c.put_pods);
        if let Some((id, ..)) = all_puts.clone().find(|(id, ..)| !id.starts_with('/')) {
            return Err(ApplyError::InvalidApp { id: id.clone() });
        }
        // Apps and pods share one namespace of ids.
        let app_stays =
            |id: &String| (self.apps.contains_key(id) && !c.remove.contains(id)) || c.put.iter().any(|(a, ..)| a == id);
        let pod_stays = |id: &String| {
            (self.pods.contains_key(id) && !c.remove_pods.contains(id)) || c.put_pods.iter().any(|(p, ..)| p == id)
        };
        if let Some((id, ..)) = c.put_pods.iter().find(|(id, ..)| app_stays(id)) {
            return Err(ApplyError::InvalidApp { id: id.clone() });
        }
        if let Some((id, ..)) = c.put.iter().find(|(id, ..)| pod_stays(id)) {
            return Err(ApplyError::InvalidApp { id: id.clone() });
        }
        for (id, version, spec) in &c.put {
            put_record(&mut self.apps, id, version, spec);
        }
        for (id, version, spec) in &c.put_pods {
            put_record(&mut self.pods, id, version, spec);
        }
        for id in &c.remove {
            self.apps.remove(id);
        }
        for id in &c.remove_pods {
            self.pods.remove(id);
        }
        for id in &c.cancel {
            self.deployments.remove(id);
        }
        if let Some(d) = &c.deployment {
            self.deployments.insert(d.id.clone(), d.clone());
        }
        Ok(Response::Ok)
    }

    pub(crate) fn update_deployment(&mut self, id: &str, plan: Option<&Value>) -> Result<Response, ApplyError> {
        match plan {
            Some(p) => {
                let d = self
                    .deployments
                    .get_mut(id)
                    .ok_or_else(|| ApplyError::UnknownDeployment { id: id.to_string() })?;
                d.plan = p.clone();
            }
            None => {
                self.deployments
                    .remove(id)
                    .ok_or_else(|| ApplyError::UnknownDeployment { id: id.to_string() })?;
            }
        }
        Ok(Response::Ok)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::task::tests_support::state_with_agents;
    use crate::Command;

    fn put(id: &str, version: &str) -> Command {
        Command::ChangeServices {
            change: ServiceChange {
                put: vec![(id.into(), version.into(), json!({"id": id, "version": version}))],
                remove: vec![],
                deployment: Some(DeploymentRecord {
                    id: format!("d-{version}"),
                    plan: json!({}),
                }),
                cancel: vec![],
                ..ServiceChange::default()
            },
        }
    }

    #[test]
    fn new_versions_keep_the_old_ones_in_history() {
        let mut s = state_with_agents(0);
        assert_eq!(s.apply(1, &put("/web", "v1")), Response::Ok);
        assert_eq!(s.apply(2, &put("/web", "v2")), Response::Ok);
        let app = &s.apps["/web"];
        assert_eq!(app.version, "v2");
        assert_eq!(
            app.history,
            vec![("v1".to_string(), json!({"id": "/web", "version": "v1"}))]
        );
        assert_eq!(s.deployments.len(), 2);
        s.apply(
            3,
            &Command::UpdateDeployment {
                id: "d-v1".into(),
                plan: None,
            },
        );
        assert_eq!(s.deployments.len(), 1);
        assert!(matches!(
            s.apply(4, &put("relative", "v1")),
            Response::Rejected(ApplyError::InvalidApp { .. })
        ));
    }

    #[test]
    fn history_is_bounded() {
        let mut s = state_with_agents(0);
        for v in 0..(MAX_APP_VERSIONS + 10) {
            s.apply(v as u64 + 1, &put("/web", &format!("v{v}")));
        }
        assert_eq!(s.apps["/web"].history.len(), MAX_APP_VERSIONS);
        assert_eq!(s.apps["/web"].history[0].0, "v9");
    }

    #[test]
    fn pods_keep_versions_and_share_ids_with_apps() {
        let mut s = state_with_agents(0);
        let pod = |version: &str| Command::ChangeServices {
            change: ServiceChange {
                put_pods: vec![("/p".into(), version.into(), json!({"id": "/p", "version": version}))],
                ..ServiceChange::default()
            },
        };
        assert_eq!(s.apply(1, &pod("v1")), Response::Ok);
        assert_eq!(s.apply(2, &pod("v2")), Response::Ok);
        assert_eq!(s.pods["/p"].version, "v2");
        assert_eq!(s.pods["/p"].history.len(), 1);
        assert!(s.apps.is_empty());
        // An app cannot take a pod's id, nor a pod an app's.
        assert!(matches!(
            s.apply(3, &put("/p", "v1")),
            Response::Rejected(ApplyError::InvalidApp { .. })
        ));
        assert_eq!(s.apply(4, &put("/web", "v1")), Response::Ok);
        let clash = Command::ChangeServices {
            change: ServiceChange {
                put_pods: vec![("/web".into(), "v1".into(), json!({}))],
                ..ServiceChange::default()
            },
        };
        assert!(matches!(
            s.apply(5, &clash),
            Response::Rejected(ApplyError::InvalidApp { .. })
        ));
        let remove = Command::ChangeServices {
            change: ServiceChange {
                remove_pods: vec!["/p".into()],
                ..ServiceChange::default()
            },
        };
        assert_eq!(s.apply(6, &remove), Response::Ok);
        assert!(s.pods.is_empty());
    }
}
