//! The leader's watch over agents: one that stops heartbeating is marked lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tepui_state::{Command, NodeStatus};

use crate::node::Inner;
use crate::now_ms;

pub(crate) async fn run(inner: Arc<Inner>) {
    let tick = (inner.agent_timeout / 5).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        if !inner.is_leader() {
            leading_since = None;
            continue;
        }
        crate::tasks::finish_drains(&inner).await;
        // A new leader has no heartbeat history: every agent gets a full timeout to find it.
        let since = *leading_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let candidates: Vec<u64> = inner.state.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.agent.is_some() && n.status != NodeStatus::Lost)
                .map(|n| n.id)
                .collect()
        });
        let silent: Vec<u64> = {
            let seen = inner.agent_seen.lock().unwrap_or_else(|e| e.into_inner());
            candidates
                .into_iter()
                .filter(|id| {
                    let last = seen.get(id).copied().unwrap_or(since).max(since);
                    now.duration_since(last) > inner.agent_timeout
                })
                .collect()
        };
        for id in silent {
            tracing::warn!(
                node = id,
                timeout_ms = inner.agent_timeout.as_millis() as u64,
                "agent missed its heartbeats; marking it lost"
            );
            if let Err(e) = inner
                .write(Command::SetNodeStatus {
                    id,
                    status: NodeStatus::Lost,
                    now: now_ms(),
                })
                .await
            {
                tracing::debug!(node = id, error = %e, "could not mark agent lost");
                continue;
            }
            crate::tasks::mark_unreachable(&inner, id).await;
            // A silent stream may still be open (a stopped process, a half-open connection):
            // close it, so the agent registers again with its tasks when it comes back.
            inner.hub.kick(id, "the agent was marked lost; register again");
        }
    }
}
