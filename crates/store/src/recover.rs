//! Offline surgery on a stopped server's store, for a cluster that lost its quorum for good.
//!
//! Raft cannot change its membership without a quorum of the old one, so a server left alone
//! can never be given a new membership online. [`OfflineStore::make_sole_voter`] does what a
//! leader elected by a one-voter membership would have done, on disk: it takes a term above
//! every term the store has seen, records this server's vote for itself in it as granted
//! (committed), and appends, under that leader, a membership entry naming this server the only
//! voter, then the commands the caller gives. When the server starts, openraft finds itself the
//! leader of a cluster of one (a committed vote for itself), with the new membership in effect
//! (the last membership entry in the log is the effective one), and commits its whole log.
//!
//! Nothing of the log is dropped: the entries past the committed index may have been committed
//! by the lost servers and acknowledged to clients, and a Raft leader commits the entries it
//! holds from earlier terms too; so keeping them is what an ordinary election of this server
//! would have done, and dropping them could lose acknowledged writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{Entry, EntryPayload, LeaderId, Membership, Vote};
use redb::ReadableDatabase;
use tepui_state::{Command, State};

use crate::db::{encode, get_json, StoreError, KEY_COMMITTED, KEY_VOTE, META};
use crate::{BasicNode, LogId, LogStore, NodeId, StateMachineStore};

/// What a stopped server's store holds.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub vote: Vote<NodeId>,
    /// The last entry the stored snapshot covers.
    pub snapshot: Option<LogId>,
    /// The last entry this server knew to be committed (a hint written at most once a second,
    /// so it may lag a little).
    pub committed: Option<LogId>,
    /// The last entry of its log.
    pub last_log: Option<LogId>,
    /// The membership in effect: the last one in the log, else the snapshot's.
    pub membership: Membership<NodeId, BasicNode>,
    /// The state with every entry of the log applied, committed or not: what this server holds
    /// once it leads alone and has committed its log.
    pub state: State,
}

/// What [`OfflineStore::make_sole_voter`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forced {
    /// The term the server leads in when it starts.
    pub term: u64,
    /// The index of the new membership entry.
    pub membership_index: u64,
    /// The index of the last entry appended.
    pub last_index: u64,
}

/// A store opened with no Raft running on it. Opening takes the store's lock, so it fails while
/// a server runs on the same directory.
pub struct OfflineStore {
    log: LogStore,
    sm: StateMachineStore,
}

impl OfflineStore {
    pub fn open(dir: &Path) -> Result<OfflineStore, StoreError> {
        let (log, sm) = crate::open(dir)?;
        Ok(OfflineStore { log, sm })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StoreError> {
        let txn = self.log.db.begin_read()?;
        get_json(&txn.open_table(META)?, key, key)
    }

    /// Reads what the store holds, applying the log after the snapshot to a copy of its state.
    pub fn inspect(&self) -> Result<Inspection, StoreError> {
        let vote: Vote<NodeId> = self.read_meta(KEY_VOTE)?.unwrap_or_default();
        let committed: Option<LogId> = self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        let last_log = self.log.log_state()?.last_log_id;
        let mut applied = self.sm.applied_copy();
        let snapshot = applied.last_applied;
        let from = snapshot.map_or(0, |s| s.index + 1);
        for entry in self.log.wal.read(from, u64::MAX)? {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    // A refusal is an answer, as when a server applies it.
                    let _ = applied.state.apply(entry.log_id.index, &cmd);
                }
                EntryPayload::Membership(m) => {
                    applied.last_membership = openraft::StoredMembership::new(Some(entry.log_id), m);
                }
            }
        }
        Ok(Inspection {
            vote,
            snapshot,
            committed,
            last_log,
            membership: applied.last_membership.membership().clone(),
            state: applied.state,
        })
    }

    /// Makes server `id` the only voter, as described in the module's documentation, and
    /// appends `then` after the new membership, as one entry (a batch when there are several).
    /// Refused when the store has no log yet or `id` is not in its membership (its address
    /// comes from there).
    pub fn make_sole_voter(&self, id: NodeId, then: Vec<Command>) -> Result<Forced, StoreError> {
        let found = self.inspect()?;
        let Some(last) = found.last_log else {
            return Err(StoreError::Recover(
                "this server's raft log is empty: it never joined a cluster".into(),
            ));
        };
        let Some(node) = found.membership.get_node(&id).cloned() else {
            return Err(StoreError::Recover(format!(
                "server {id} is not in the raft membership its log holds; recover a server that is"
            )));
        };
        let term = found.vote.leader_id().term.max(last.leader_id.term) + 1;
        let leader = LeaderId::new(term, id);
        let membership = Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, node)]));
        let mut entries: Vec<Entry<crate::TypeConfig>> = vec![Entry {
            log_id: LogId::new(leader, last.index + 1),
            payload: EntryPayload::Membership(membership),
        }];
        let payload = match then.len() {
            0 => None,
            1 => then.into_iter().next(),
            _ => Some(Command::Batch { cmds: then }),
        };
        if let Some(cmd) = payload {
            entries.push(Entry {
                log_id: LogId::new(leader, last.index + 2),
                payload: EntryPayload::Normal(cmd),
            });
        }
        // The vote first: a crash before the entries leaves a leader of the old membership that
        // cannot commit anything, and running this again fixes it; entries of a term above the
        // vote would break openraft's rule that no entry is newer than the vote.
        let vote = Vote::new_committed(term, id);
        let bytes = encode(KEY_VOTE, &vote)?;
        let txn = self.log.db.begin_write()?;
        txn.open_table(META)?.insert(KEY_VOTE, bytes.as_slice())?;
        txn.commit()?;
        let mut rows = Vec::with_capacity(entries.len());
        for e in &entries {
            rows.push((e.log_id, encode("log entry", e)?));
        }
        self.log.wal.append(&rows)?;
        let last_index = entries.last().map_or(last.index + 1, |e| e.log_id.index);
        tracing::warn!(
            node = id,
            term,
            last_index,
            "made this server the only voter of its cluster"
        );
        Ok(Forced {
            term,
            membership_index: last.index + 1,
            last_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::testing::log_id;

    use super::*;
    use crate::tests::{put, start, var};

    fn entry(index: u64, payload: EntryPayload<crate::TypeConfig>) -> Entry<crate::TypeConfig> {
        // Written by server 2, the leader of term 1.
        Entry {
            log_id: log_id(1, 2, index),
            payload,
        }
    }

    /// A follower's store in a three-server cluster whose leader (2) died: it knows 1..=2 are
    /// committed and holds 3, which the leader may have committed too.
    async fn follower_of_three(dir: &Path) {
        let (mut log, _sm) = crate::open(dir).unwrap();
        let nodes = BTreeMap::from([
            (1, BasicNode::new("127.0.0.1:1")),
            (2, BasicNode::new("127.0.0.1:2")),
            (3, BasicNode::new("127.0.0.1:3")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        log.blocking_append([
            entry(0, EntryPayload::Membership(membership)),
            entry(1, EntryPayload::Normal(put("a", "1"))),
            entry(2, EntryPayload::Normal(put("b", "2"))),
            entry(3, EntryPayload::Normal(put("c", "3"))),
        ])
        .await
        .unwrap();
        log.save_vote(&Vote::new_committed(1, 2)).await.unwrap();
        log.save_committed(Some(log_id(1, 2, 2))).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovered_server_leads_alone_with_its_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        follower_of_three(dir.path()).await;

        let offline = OfflineStore::open(dir.path()).unwrap();
        let err = OfflineStore::open(dir.path())
            .err()
            .expect("the store is locked while open");
        assert!(err.is_already_open(), "{err}");
        let seen = offline.inspect().unwrap();
        assert_eq!(seen.committed, Some(log_id(1, 2, 2)));
        assert_eq!(seen.last_log, Some(log_id(1, 2, 3)));
        assert_eq!(seen.snapshot, None);
        assert_eq!(seen.membership.voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            seen.state.vars.get("c").map(|v| v.value.as_str()),
            Some("3"),
            "the state as of the whole log"
        );
        let refused = offline.make_sole_voter(9, vec![]).unwrap_err();
        assert!(refused.to_string().contains("not in the raft membership"), "{refused}");

        let forced = offline
            .make_sole_voter(1, vec![put("recovered", "yes"), put("by", "one")])
            .unwrap();
        assert_eq!(
            forced,
            Forced {
                term: 2,
                membership_index: 4,
                last_index: 5
            }
        );
        let after = offline.inspect().unwrap();
        assert_eq!(after.membership.voter_ids().collect::<Vec<_>>(), vec![1]);
        assert_eq!(after.membership.get_node(&1), Some(&BasicNode::new("127.0.0.1:1")));
        assert_eq!(after.vote, Vote::new_committed(2, 1));
        drop(offline);

        // Started, it leads at once, commits everything it held and what was appended.
        let (raft, reader) = start(dir.path()).await;
        let wait = Some(Duration::from_secs(10));
        raft.wait(wait)
            .current_leader(1, "the recovered server leads")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), reader.wait_applied(5))
            .await
            .expect("the whole log applied");
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("recovered", "yes"), ("by", "one")] {
            assert_eq!(var(&reader, k).as_deref(), Some(v), "{k}");
        }
        let voters: Vec<u64> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        assert_eq!(voters, vec![1]);
        let written = raft.client_write(put("d", "4")).await.unwrap();
        assert!(written.log_id.index > 5);
        assert_eq!(written.log_id.leader_id.term, 2, "no election was needed");
        raft.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn an_empty_store_cannot_be_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let offline = OfflineStore::open(dir.path()).unwrap();
        let refused = offline.make_sole_voter(1, vec![]).unwrap_err();
        assert!(refused.to_string().contains("empty"), "{refused}");
        let mut log = offline.log.clone();
        assert_eq!(log.read_vote().await.unwrap(), None, "nothing was written");
    }
}
