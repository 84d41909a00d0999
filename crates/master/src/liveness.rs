//! The leader's watch over agents: one that stops heartbeating is marked lost and its tasks
//! unreachable; one heard from again is ready. And drains that are done.

use std::time::{Duration, Instant};

use tepui_node::drivers::{Activation, Driver, Outcome};
use tepui_node::now_ms;
use tepui_state::{Command, NodeStatus, TaskState};

use crate::Master;

impl Master {
    /// An agent's heartbeat arrived on its stream.
    pub async fn on_heartbeat(&self, agent: u64) {
        let node = self.node();
        node.agents().heard(agent);
        // Marked lost while its stream stayed open (a partition): its heartbeats are back, and
        // no new registration will come.
        let lost = node.read(|s| s.nodes.get(&agent).is_some_and(|n| n.status == NodeStatus::Lost));
        if lost {
            let ready = Command::SetNodeStatus {
                id: agent,
                status: NodeStatus::Ready,
                now: now_ms(),
            };
            match node.write(ready).await {
                Ok(_) => tracing::info!(node = agent, "lost agent heard from again; it is ready"),
                Err(e) => tracing::debug!(node = agent, error = %e, "could not mark agent ready"),
            }
        }
    }
}

/// Marks agents lost that were not heard from within the agent timeout. It runs when the
/// first such deadline passes, never on a period.
pub(crate) struct Liveness {
    master: Master,
    /// When this server started leading: a new leader has no heartbeat history, so every
    /// agent gets a full timeout to find it.
    leading_since: Option<Instant>,
}

impl Liveness {
    pub(crate) fn new(master: Master) -> Liveness {
        Liveness {
            master,
            leading_since: None,
        }
    }
}

impl Driver for Liveness {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        let node = self.master.node();
        let timeout = self.master.config().agent_timeout;
        let since = *self.leading_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        // An earlier leader may have marked an agent lost and gone before it marked the agent's
        // tasks: they are marked here (nothing else would, the agent being lost already).
        let lost_with_live_tasks: Vec<u64> = node.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.agent.is_some() && n.status == NodeStatus::Lost)
                .filter(|n| {
                    s.tasks
                        .values()
                        .any(|t| t.agent_id == n.id && !t.state.is_terminal() && t.state != TaskState::TaskUnreachable)
                })
                .map(|n| n.id)
                .collect()
        });
        for id in lost_with_live_tasks {
            tracing::info!(
                node = id,
                "agent lost under an earlier leader; marking its tasks unreachable"
            );
            self.master.mark_unreachable(id).await;
        }
        let candidates: Vec<u64> = node.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.agent.is_some() && n.status != NodeStatus::Lost)
                .map(|n| n.id)
                .collect()
        });
        let mut next = timeout;
        for id in candidates {
            let last = node.agents().last_heard(id).unwrap_or(since).max(since);
            let silent_for = now.duration_since(last);
            if silent_for <= timeout {
                next = next.min(timeout - silent_for);
                continue;
            }
            tracing::warn!(
                node = id,
                timeout_ms = timeout.as_millis() as u64,
                "agent missed its heartbeats; marking it lost"
            );
            let lost = Command::SetNodeStatus {
                id,
                status: NodeStatus::Lost,
                now: now_ms(),
            };
            if let Err(e) = node.write(lost).await {
                tracing::debug!(node = id, error = %e, "could not mark agent lost");
                continue;
            }
            self.master.mark_unreachable(id).await;
            // A silent stream may still be open (a stopped process, a half-open connection):
            // close it, so the agent registers again with its tasks when it comes back.
            node.agents().kick(id, "the agent was marked lost; register again");
        }
        // A little past the deadline, so that the silent agent is past it when looked at.
        Ok(Some(next + Duration::from_millis(5)))
    }

    fn step_down(&mut self) {
        self.leading_since = None;
    }
}

/// Marks draining agents drained once their last task has ended; it looks whenever the state
/// changes.
pub(crate) struct Drains {
    pub(crate) master: Master,
}

impl Driver for Drains {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        self.master.finish_drains().await;
        Ok(None)
    }
}
