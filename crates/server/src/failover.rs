//! Noticing a dead leader before the election timeout does.
//!
//! When the leader's process dies, the kernel closes its sockets, so a follower sees the leader's
//! connection to its cluster port end at once, while missed heartbeats would take the election
//! timeout to tell. If the leader's cluster port then refuses a new connection, the process is
//! gone, and the follower calls an election as soon as the other followers will grant votes:
//! openraft's followers refuse to vote while the leader's lease lasts (`election_timeout_max`
//! after they last heard from it), and the last they can have heard is when its connections
//! closed. Without this, a follower also waits out its own randomized election timeout after
//! the lease.
//!
//! Only the first of the remaining voters (by id) calls the election then, so that two
//! candidates do not split the vote; the next ones follow a heartbeat interval apart, should the
//! first not be able to win (its log may be behind). A frozen or cut-off leader closes nothing
//! and refuses nothing: that case is left to the election timeout. Elections are always safe in
//! Raft; calling one early costs at most a term.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_pki::Role;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::node::Inner;

/// How long a probe of the leader's port may take; on a live host a closed port refuses at once.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Watches the ends of other nodes' connections to this one's cluster port.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(mut closed) = inner.peers.take_closed_conns() else {
        return;
    };
    // Leaders whose death is being checked: one leader closes several connections at once.
    let checking: Arc<Mutex<HashSet<u64>>> = Arc::default();
    while let Some(peer) = closed.recv().await {
        let closed_at = Instant::now();
        let Some(who) = peer.identity else { continue };
        if who.role != Role::Server || who.id == inner.id || inner.leader_id() != Some(who.id) {
            continue;
        }
        if !checking.lock().unwrap_or_else(|e| e.into_inner()).insert(who.id) {
            continue;
        }
        let (inner, checking) = (inner.clone(), checking.clone());
        tokio::spawn(async move {
            check(&inner, who.id, closed_at).await;
            checking.lock().unwrap_or_else(|e| e.into_inner()).remove(&who.id);
        });
    }
}

/// What a connection attempt to a node's cluster port says about its process.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Something accepted the connection: the process lives (it only closed one connection).
    Alive,
    /// The port refused: nothing listens there any more.
    Refused,
    /// No answer in time, or another error: nothing can be concluded.
    Unknown,
}

async fn probe(addr: &str) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Probe::Alive,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        _ => Probe::Unknown,
    }
}

/// When this voter calls the election, given when the leader's connection closed: after the
/// lease of every other voter ran out, later for each voter ranked before it.
fn election_at(closed_at: Instant, lease: Duration, heartbeat: Duration, rank: u32) -> Instant {
    // The margin covers a heartbeat that another follower processed just after ours closed.
    closed_at + lease + heartbeat / 4 + heartbeat * rank
}

async fn check(inner: &Inner, leader: u64, closed_at: Instant) {
    let Some(addr) = inner.member_addr(leader) else { return };
    // The listener of a process that is shutting down may outlive its connections briefly.
    let mut verdict = probe(&addr).await;
    for _ in 0..3 {
        if verdict != Probe::Alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        verdict = probe(&addr).await;
    }
    if verdict != Probe::Refused {
        tracing::debug!(leader, ?verdict, "the leader's connection closed, but it may be alive");
        return;
    }
    let membership = inner.raft.metrics().borrow().membership_config.clone();
    let mut voters: Vec<u64> = membership.membership().voter_ids().filter(|v| *v != leader).collect();
    voters.sort_unstable();
    let Some(rank) = voters.iter().position(|v| *v == inner.id) else {
        return;
    };
    let config = inner.raft.config();
    let at = election_at(
        closed_at,
        Duration::from_millis(config.election_timeout_max),
        Duration::from_millis(config.heartbeat_interval),
        rank as u32,
    );
    tracing::info!(
        leader,
        rank,
        in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
        "the leader's process is gone; calling an election once leases run out"
    );
    tokio::time::sleep_until(at).await;
    if inner.leader_id() != Some(leader) {
        // Another leader was elected, or this node already takes part in an election.
        return;
    }
    // A voter ranked before this one may have become a candidate of the next term and failed;
    // it would refuse a second candidate of the same term, so this one skips past it.
    let elections = if rank == 0 { 1 } else { 2 };
    for _ in 0..elections {
        if let Err(e) = inner.raft.trigger().elect().await {
            tracing::warn!(error = %e, "cannot call an election");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_voter_elects_once_leases_ran_out_and_the_next_ones_later() {
        let t = Instant::now();
        let lease = Duration::from_millis(800);
        let hb = Duration::from_millis(200);
        assert_eq!(election_at(t, lease, hb, 0), t + Duration::from_millis(850));
        assert_eq!(election_at(t, lease, hb, 1), t + Duration::from_millis(1050));
    }

    #[tokio::test]
    async fn a_probe_tells_a_closed_port_from_an_open_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert_eq!(probe(&addr).await, Probe::Alive);
        drop(listener);
        assert_eq!(probe(&addr).await, Probe::Refused);
    }
}
