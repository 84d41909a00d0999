//! Long-running services (Marathon apps): their definitions with past versions, and the
//! deployments that move them. Instances are tasks of the services framework; they carry their
//! app and version in their labels.
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

/// A whole change of the services: apps to put and to remove, and the deployment that carries
/// it out, applied at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// (id, version, definition).
    pub put: Vec<(String, String, Value)>,
    pub remove: Vec<String>,
    pub deployment: Option<DeploymentRecord>,
    /// Deployments this one replaces (a rollback, a forced change).
    #[serde(default)]
    pub cancel: Vec<String>,
}

impl State {
    pub(crate) fn change_services(&mut self, c: &ServiceChange) -> Result<Response, ApplyError> {
        self.require_cluster()?;
        // All or nothing: check before changing anything.
        if let Some((id, ..)) = c.put.iter().find(|(id, ..)| !id.starts_with('/')) {
            return Err(ApplyError::InvalidApp { id: id.clone() });
        }
        for (id, version, spec) in &c.put {
            match self.apps.get_mut(id) {
                Some(app) => {
                    if app.version != *version {
                        let previous = (app.version.clone(), app.spec.clone());
                        app.history.push(previous);
                        if app.history.len() > MAX_APP_VERSIONS {
                            let excess = app.history.len() - MAX_APP_VERSIONS;
                            app.history.drain(..excess);
                        }
                    }
                    app.version = version.clone();
                    app.spec = spec.clone();
                }
                None => {
                    self.apps.insert(
                        id.clone(),
                        AppRecord {
                            id: id.clone(),
                            version: version.clone(),
                            spec: spec.clone(),
                            history: vec![],
                        },
                    );
                }
            }
        }
        for id in &c.remove {
            self.apps.remove(id);
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
}
