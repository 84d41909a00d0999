//! Frameworks, roles and dynamic reservations: what two-level scheduling keeps across leaders.
//!
//! Offers are not here: they live in the leader's memory and end with its term, as in Mesos.
//! What must survive a failover is who the frameworks are (so they can re-subscribe with their
//! id and keep their tasks), the operators' role weights and quota, and dynamic reservations.
//! Resources are stored in the allocator's text form (`cpus(eng,dynamic):2;mem:512`), so this
//! crate stays free of the allocator's types.

use serde::{Deserialize, Serialize};

use crate::{ApplyError, Millis, Response, State, TaskState};

/// A framework registered with the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub id: String,
    pub name: String,
    pub user: String,
    pub principal: Option<String>,
    pub hostname: Option<String>,
    pub webui_url: Option<String>,
    pub roles: Vec<String>,
    /// Mesos capability names (`PARTITION_AWARE`, `MULTI_ROLE`, ...).
    pub capabilities: Vec<String>,
    /// How long the framework may stay disconnected before it is torn down.
    pub failover_timeout_ms: u64,
    pub registered_at: Millis,
    pub reregistered_at: Option<Millis>,
    /// Subscribed to the current leader (as far as the last leader knew).
    pub connected: bool,
    pub disconnected_at: Option<Millis>,
}

impl FrameworkRecord {
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }

    /// PARTITION_AWARE frameworks see TASK_UNREACHABLE; the others TASK_LOST.
    pub fn partition_aware(&self) -> bool {
        self.has_capability("PARTITION_AWARE")
    }
}

/// A role's operator settings. Quantities are in the allocator's text form (`cpus:4;mem:1024`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleConfig {
    /// Weight in thousandths (Mesos' default weight 1.0 is 1000).
    pub weight_milli: u64,
    pub quota_guarantees: String,
    pub quota_limits: String,
}

impl Default for RoleConfig {
    fn default() -> RoleConfig {
        RoleConfig {
            weight_milli: 1000,
            quota_guarantees: String::new(),
            quota_limits: String::new(),
        }
    }
}

impl RoleConfig {
    fn is_default(&self) -> bool {
        *self == RoleConfig::default()
    }
}

impl State {
    pub(crate) fn subscribe_framework(&mut self, f: &FrameworkRecord) -> Result<Response, ApplyError> {
        self.require_cluster()?;
        match self.frameworks.get_mut(&f.id) {
            Some(existing) => {
                let registered_at = existing.registered_at;
                *existing = f.clone();
                existing.registered_at = registered_at;
            }
            None => {
                self.frameworks.insert(f.id.clone(), f.clone());
            }
        }
        Ok(Response::Ok)
    }

    pub(crate) fn disconnect_framework(&mut self, id: &str, now: Millis) -> Result<Response, ApplyError> {
        let f = self
            .frameworks
            .get_mut(id)
            .ok_or_else(|| ApplyError::UnknownFramework { id: id.to_string() })?;
        if f.connected {
            f.connected = false;
            f.disconnected_at = Some(now);
        }
        Ok(Response::Ok)
    }

    /// Teardown (or a failover timeout): the framework is gone and every task it has that is
    /// still alive is to be killed.
    pub(crate) fn remove_framework(&mut self, id: &str, now: Millis) -> Result<Response, ApplyError> {
        self.frameworks
            .remove(id)
            .ok_or_else(|| ApplyError::UnknownFramework { id: id.to_string() })?;
        for t in self
            .tasks
            .values_mut()
            .filter(|t| t.framework_id == id && !t.state.is_terminal())
        {
            t.kill_requested = true;
            t.state = TaskState::TaskKilling;
            t.updated_at = now;
        }
        Ok(Response::Ok)
    }

    /// The framework received the task's status update with this uuid.
    pub(crate) fn acknowledge(&mut self, task_id: &str, uuid: &str) -> Result<Response, ApplyError> {
        let t = self.tasks.get_mut(task_id).ok_or_else(|| ApplyError::UnknownTask {
            id: task_id.to_string(),
        })?;
        if t.last_update_uuid.as_deref() != Some(uuid) {
            return Err(ApplyError::StaleAcknowledgement {
                task_id: task_id.to_string(),
                uuid: uuid.to_string(),
            });
        }
        t.acknowledged_uuid = Some(uuid.to_string());
        Ok(Response::Ok)
    }

    pub(crate) fn update_role(
        &mut self,
        role: &str,
        change: impl FnOnce(&mut RoleConfig),
    ) -> Result<Response, ApplyError> {
        if role.is_empty() {
            return Err(ApplyError::InvalidRole { role: role.to_string() });
        }
        let config = self.roles.entry(role.to_string()).or_default();
        change(config);
        if config.is_default() {
            self.roles.remove(role);
        }
        Ok(Response::Ok)
    }

    /// Frameworks' tasks whose latest status update the framework has not acknowledged yet.
    pub fn unacknowledged(&self, framework_id: &str) -> impl Iterator<Item = &crate::TaskRecord> {
        let framework_id = framework_id.to_string();
        self.tasks.values().filter(move |t| {
            t.framework_id == framework_id && t.last_update_uuid.is_some() && t.acknowledged_uuid != t.last_update_uuid
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tests_support::{def, record, state_with_agents};
    use crate::{Command, TaskUpdate};

    fn framework(id: &str) -> FrameworkRecord {
        FrameworkRecord {
            id: id.into(),
            name: "f".into(),
            user: "root".into(),
            principal: None,
            hostname: None,
            webui_url: None,
            roles: vec!["*".into()],
            capabilities: vec!["PARTITION_AWARE".into()],
            failover_timeout_ms: 1000,
            registered_at: 10,
            reregistered_at: None,
            connected: true,
            disconnected_at: None,
        }
    }

    #[test]
    fn resubscribing_keeps_the_registration_time() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::SubscribeFramework {
                framework: framework("f1"),
            },
        );
        let mut again = framework("f1");
        again.registered_at = 99;
        again.reregistered_at = Some(99);
        s.apply(2, &Command::SubscribeFramework { framework: again });
        assert_eq!(s.frameworks["f1"].registered_at, 10);
        assert_eq!(s.frameworks["f1"].reregistered_at, Some(99));
        assert!(s.frameworks["f1"].partition_aware());
        s.apply(
            3,
            &Command::DisconnectFramework {
                id: "f1".into(),
                now: 5,
            },
        );
        assert!(!s.frameworks["f1"].connected);
        assert_eq!(s.frameworks["f1"].disconnected_at, Some(5));
    }

    #[test]
    fn removing_a_framework_kills_its_live_tasks_only() {
        let mut s = state_with_agents(1);
        s.apply(
            1,
            &Command::SubscribeFramework {
                framework: framework("f1"),
            },
        );
        for (id, fw) in [("a", "f1"), ("b", "f1"), ("c", "")] {
            let mut t = record(id, 1, def(10, 1));
            t.framework_id = fw.into();
            s.apply(2, &Command::CreateTask { task: t });
        }
        s.tasks.get_mut("b").unwrap().state = TaskState::TaskFinished;
        assert_eq!(
            s.apply(
                3,
                &Command::RemoveFramework {
                    id: "f1".into(),
                    now: 7
                }
            ),
            Response::Ok
        );
        assert!(s.frameworks.is_empty());
        assert!(s.tasks["a"].kill_requested);
        assert_eq!(s.tasks["b"].state, TaskState::TaskFinished);
        assert!(!s.tasks["c"].kill_requested);
        assert!(matches!(
            s.apply(
                4,
                &Command::RemoveFramework {
                    id: "f1".into(),
                    now: 8
                }
            ),
            Response::Rejected(ApplyError::UnknownFramework { .. })
        ));
    }

    #[test]
    fn acknowledgements_match_the_latest_update() {
        let mut s = state_with_agents(1);
        let mut t = record("a", 1, def(10, 1));
        t.framework_id = "f1".into();
        s.apply(1, &Command::CreateTask { task: t });
        let update = |uuid: &str, state| Command::TaskStatus {
            task_id: "a".into(),
            update: TaskUpdate {
                uuid: uuid.into(),
                state,
                reason: None,
                message: String::new(),
                exit_code: None,
                signal: None,
                at: 1,
                healthy: None,
                seq: None,
                container_ip: None,
            },
        };
        s.apply(2, &update("u1", TaskState::TaskRunning));
        assert_eq!(s.unacknowledged("f1").count(), 1);
        assert!(matches!(
            s.apply(
                3,
                &Command::AcknowledgeTask {
                    task_id: "a".into(),
                    uuid: "old".into()
                }
            ),
            Response::Rejected(ApplyError::StaleAcknowledgement { .. })
        ));
        s.apply(
            4,
            &Command::AcknowledgeTask {
                task_id: "a".into(),
                uuid: "u1".into(),
            },
        );
        assert_eq!(s.unacknowledged("f1").count(), 0);
        s.apply(5, &update("u2", TaskState::TaskFinished));
        assert_eq!(s.unacknowledged("f1").count(), 1, "a new update needs its own ack");
    }

    #[test]
    fn role_settings_back_to_default_are_forgotten() {
        let mut s = state_with_agents(0);
        s.apply(
            1,
            &Command::UpdateWeights {
                weights: vec![("eng".into(), 2500)],
            },
        );
        assert_eq!(s.roles["eng"].weight_milli, 2500);
        s.apply(
            2,
            &Command::SetQuota {
                role: "eng".into(),
                guarantees: "cpus:1".into(),
                limits: "cpus:2".into(),
            },
        );
        assert_eq!(s.roles["eng"].quota_limits, "cpus:2");
        s.apply(
            3,
            &Command::UpdateWeights {
                weights: vec![("eng".into(), 1000)],
            },
        );
        s.apply(
            4,
            &Command::SetQuota {
                role: "eng".into(),
                guarantees: String::new(),
                limits: String::new(),
            },
        );
        assert!(s.roles.is_empty());
    }
}
