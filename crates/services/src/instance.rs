//! What the planner needs to know of one instance of an app.
//!
//! The runtime keeps the instance records (replicated) and hands them to [`crate::plan::step`];
//! this crate never changes them itself.

use serde::{Deserialize, Serialize};

use crate::constraints::AgentInfo;

/// An instance id, chosen by the runtime (Marathon uses `app.instance-<uuid>`).
pub type InstanceId = String;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Waiting in the launch queue for an offer; no task exists yet. Killing one forgets it.
    Scheduled,
    /// Launched, not yet running (`TASK_STAGING`).
    Staged,
    /// `TASK_STARTING`.
    Starting,
    /// `TASK_RUNNING`.
    Running,
    /// Its agent is unreachable, for less than `inactiveAfterSeconds`; it still counts.
    Unreachable,
    /// Unreachable for longer than `inactiveAfterSeconds`: replaced, no longer counted.
    UnreachableInactive,
    /// A kill was sent; it counts against the over-capacity bound until it is gone.
    Killing,
}

/// Health as the health checks of the instance's version see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Its version has no health checks: running counts as healthy.
    NoChecks,
    /// Checks are defined and none has answered yet.
    Pending,
    Healthy,
    Unhealthy,
}

/// One instance of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    /// The configuration version it runs ([`crate::app::AppSpec::config_version`]).
    pub version: String,
    pub state: InstanceState,
    pub health: Health,
    /// Where it runs; `None` while scheduled.
    pub agent: Option<AgentInfo>,
    /// When it was staged (milliseconds); orders kills by `killSelection`.
    pub started_at: Option<u64>,
    /// When its agent became unreachable. Kept after an inactive instance comes back, until it
    /// is killed or the runtime decides it is wanted again, so the planner knows it has been
    /// replaced.
    pub unreachable_since: Option<u64>,
}

impl Instance {
    /// Counts toward the app's instances: neither replaced (inactive) nor being killed.
    pub fn is_active(&self) -> bool {
        !matches!(self.state, InstanceState::UnreachableInactive | InstanceState::Killing)
    }

    /// Counts toward `minimumHealthCapacity`: running, and healthy if its version has checks.
    pub fn counts_as_healthy(&self) -> bool {
        self.state == InstanceState::Running && matches!(self.health, Health::NoChecks | Health::Healthy)
    }

    /// An instance that was replaced while unreachable and has come back.
    pub fn has_returned(&self) -> bool {
        self.unreachable_since.is_some()
            && matches!(
                self.state,
                InstanceState::Staged | InstanceState::Starting | InstanceState::Running
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(state: InstanceState, health: Health) -> Instance {
        Instance {
            id: "i".into(),
            version: "v".into(),
            state,
            health,
            agent: None,
            started_at: None,
            unreachable_since: None,
        }
    }

    #[test]
    fn healthy_means_running_and_passing() {
        assert!(inst(InstanceState::Running, Health::NoChecks).counts_as_healthy());
        assert!(inst(InstanceState::Running, Health::Healthy).counts_as_healthy());
        assert!(!inst(InstanceState::Running, Health::Pending).counts_as_healthy());
        assert!(!inst(InstanceState::Running, Health::Unhealthy).counts_as_healthy());
        assert!(!inst(InstanceState::Starting, Health::NoChecks).counts_as_healthy());
        assert!(!inst(InstanceState::Unreachable, Health::Healthy).counts_as_healthy());
    }

    #[test]
    fn active_excludes_replaced_and_killed() {
        assert!(inst(InstanceState::Scheduled, Health::Pending).is_active());
        assert!(inst(InstanceState::Unreachable, Health::Healthy).is_active());
        assert!(!inst(InstanceState::UnreachableInactive, Health::Healthy).is_active());
        assert!(!inst(InstanceState::Killing, Health::Healthy).is_active());
    }

    #[test]
    fn returned_needs_an_unreachable_mark_and_a_live_task() {
        let mut i = inst(InstanceState::Running, Health::Healthy);
        assert!(!i.has_returned());
        i.unreachable_since = Some(5);
        assert!(i.has_returned());
        i.state = InstanceState::UnreachableInactive;
        assert!(!i.has_returned());
    }
}
