use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{
    Entry, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder, StorageError, StorageHelper, StorageIOError,
    Vote,
};
use tempfile::TempDir;
use tepui_state::{Command, Response};

use super::*;

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (log, sm) = open(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        // The suite applies entries it never appended to the log.
        Ok((dir, log, sm.without_log_sync()))
    }
}

#[test]
fn openraft_suite() {
    Suite::test_all(TempStoreBuilder).expect("openraft storage suite");
}

/// The two halves, with a state machine that applies entries the log never had: for tests of
/// the state machine alone.
fn open_apart(dir: &std::path::Path) -> (LogStore, StateMachineStore) {
    let (log, sm) = open(dir).unwrap();
    (log, sm.without_log_sync())
}

pub(crate) fn put(key: &str, value: &str) -> Command {
    Command::PutVar {
        key: key.into(),
        value: value.into(),
        cas: None,
        now: 1,
    }
}

fn normal(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Blank,
    }
}

fn membership(index: u64) -> Entry<TypeConfig> {
    let voters = BTreeSet::from([1u64]);
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], None)),
    }
}

fn as_json(entries: &[Entry<TypeConfig>]) -> serde_json::Value {
    serde_json::to_value(entries).unwrap()
}

pub(crate) fn var(reader: &StateReader, key: &str) -> Option<String> {
    reader.read(|s| s.vars.get(key).map(|v| v.value.clone()))
}

#[tokio::test]
async fn logs_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries = vec![
        // openraft's first log index is 0.
        blank(0),
        blank(1),
        membership(2),
        normal(3, put("a", "1")),
        normal(4, put("b", "2")),
        normal(5, put("c", "3")),
    ];
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 4))).await.unwrap();
        // The state machine never applied anything: as if killed right after the commit.
    }

    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 4)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        let read = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(as_json(&read), as_json(&entries));
        let read = log.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(as_json(&read), as_json(&entries[2..4]));

        // openraft's start-up path re-applies the committed logs to the in-memory state.
        let initial = StorageHelper::new(&mut log, &mut sm).get_initial_state().await.unwrap();
        assert_eq!(initial.committed, Some(log_id(1, 1, 4)));
        let reader = sm.reader();
        assert_eq!(reader.applied_index(), 4);
        assert_eq!(var(&reader, "a").as_deref(), Some("1"));
        assert_eq!(var(&reader, "b").as_deref(), Some("2"));
        assert_eq!(var(&reader, "c"), None, "index 5 is not committed");
        let (applied, mem) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 1, 4)));
        assert_eq!(mem.log_id(), &Some(log_id(1, 1, 2)));

        log.truncate(log_id(1, 1, 5)).await.unwrap();
    }

    let (mut log, _sm) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 4)), "truncate is durable");
    assert_eq!(
        as_json(&log.try_get_log_entries(..).await.unwrap()),
        as_json(&entries[..5])
    );
}

#[tokio::test]
async fn the_latest_committed_id_is_read_back_while_its_writes_are_spaced_out() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append([blank(0), blank(1), blank(2)]).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 1))).await.unwrap();
        // Within the second: kept in memory only, but it is what this store reports.
        log.save_committed(Some(log_id(1, 1, 2))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 2)));
    }
    // After a reopen the hint may lag, never lead: the first one was written.
    let (mut log, _sm) = open(dir.path()).unwrap();
    let committed = log.read_committed().await.unwrap();
    assert!(
        committed == Some(log_id(1, 1, 1)) || committed == Some(log_id(1, 1, 2)),
        "{committed:?}"
    );
}

#[tokio::test]
async fn reads_of_recent_entries_agree_with_the_database_across_truncate_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path()).unwrap();
    let entries: Vec<_> = (0..10).map(|i| normal(i, put("k", &i.to_string()))).collect();
    log.blocking_append(entries.clone()).await.unwrap();
    assert_eq!(
        as_json(&log.try_get_log_entries(3..7).await.unwrap()),
        as_json(&entries[3..7])
    );
    assert_eq!(
        as_json(&log.try_get_log_entries(8..).await.unwrap()),
        as_json(&entries[8..])
    );
    assert_eq!(as_json(&log.try_get_log_entries(..).await.unwrap()), as_json(&entries));
    assert!(log.try_get_log_entries(9..12).await.unwrap().len() == 1);

    // A conflicting entry replaces 7 and later ones.
    log.truncate(log_id(1, 1, 7)).await.unwrap();
    let replaced = Entry::<TypeConfig> {
        log_id: log_id(2, 1, 7),
        payload: openraft::EntryPayload::Normal(put("k", "new")),
    };
    log.blocking_append([replaced.clone()]).await.unwrap();
    let mut expected = entries[..7].to_vec();
    expected.push(replaced);
    assert_eq!(as_json(&log.try_get_log_entries(..).await.unwrap()), as_json(&expected));
    assert_eq!(
        as_json(&log.try_get_log_entries(6..).await.unwrap()),
        as_json(&expected[6..])
    );

    log.purge(log_id(1, 1, 4)).await.unwrap();
    assert_eq!(
        as_json(&log.try_get_log_entries(..).await.unwrap()),
        as_json(&expected[5..])
    );
    assert_eq!(
        as_json(&log.try_get_log_entries(5..8).await.unwrap()),
        as_json(&expected[5..8])
    );

    // A reopened store has no recent entries: the same reads come from the database.
    drop(log);
    drop(_sm);
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert_eq!(
        as_json(&log.try_get_log_entries(..).await.unwrap()),
        as_json(&expected[5..])
    );
}

#[tokio::test]
async fn all_logs_purged_keeps_last_log_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append([blank(1), blank(2)]).await.unwrap();
        log.purge(log_id(1, 1, 2)).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 2)));
    assert!(log.try_get_log_entries(..).await.unwrap().is_empty());
}

#[tokio::test]
async fn snapshot_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (_log, mut sm) = open_apart(dir.path());
        sm.apply([
            blank(1),
            membership(2),
            normal(3, put("a", "1")),
            normal(4, put("b", "2")),
        ])
        .await
        .unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1, 4)));
        // Applied after the snapshot and never logged: gone after the restart.
        sm.apply([normal(5, put("c", "3"))]).await.unwrap();
        snap
    };

    let (_log, mut sm) = open(dir.path()).unwrap();
    let reader = sm.reader();
    assert_eq!(reader.applied_index(), 4);
    assert_eq!(var(&reader, "a").as_deref(), Some("1"));
    assert_eq!(var(&reader, "b").as_deref(), Some("2"));
    assert_eq!(var(&reader, "c"), None);
    let (applied, mem) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 4)));
    assert_eq!(mem.log_id(), &Some(log_id(1, 1, 2)));

    let current = sm.get_current_snapshot().await.unwrap().expect("stored snapshot");
    assert_eq!(current.meta, first.meta);
    assert_eq!(current.snapshot.get_ref(), first.snapshot.get_ref());

    let again = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(again.meta.last_log_id, first.meta.last_log_id);
    assert_ne!(
        again.meta.snapshot_id, first.meta.snapshot_id,
        "snapshot ids stay unique across restarts"
    );
}

#[tokio::test]
async fn install_snapshot_replaces_state_and_keeps_newest() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (_l, mut leader) = open_apart(leader_dir.path());
    let (_f, mut follower) = open_apart(follower_dir.path());

    leader.apply([membership(1), normal(2, put("a", "1"))]).await.unwrap();
    let old = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    leader.apply([normal(3, put("b", "2"))]).await.unwrap();
    let new = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

    follower.apply([normal(1, put("stale", "x"))]).await.unwrap();
    let reader = follower.reader();
    follower
        .install_snapshot(&new.meta, new.snapshot.clone())
        .await
        .unwrap();
    assert_eq!(reader.applied_index(), 3);
    assert_eq!(var(&reader, "stale"), None);
    assert_eq!(var(&reader, "b").as_deref(), Some("2"));
    assert_eq!(follower.applied_state().await.unwrap().0, Some(log_id(1, 1, 3)));

    // A build that finishes after a newer install must not replace the stored snapshot.
    let stored = follower
        .persist_snapshot(&old.meta, old.snapshot.get_ref().clone())
        .await
        .unwrap();
    assert!(!stored);
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, new.meta);
}

#[tokio::test]
async fn reader_waits_for_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_apart(dir.path());
    let reader = sm.reader();
    let mut rx = reader.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);

    let waiter = tokio::spawn({
        let reader = reader.clone();
        async move { reader.wait_applied(3).await }
    });
    sm.apply([blank(1), normal(2, put("a", "1"))]).await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 2);
    assert!(!waiter.is_finished());
    sm.apply([normal(3, put("b", "2"))]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("wait_applied resolves")
        .unwrap();
    // Already reached: returns at once.
    reader.wait_applied(1).await;
    assert_eq!(reader.applied_index(), 3);
}

#[test]
fn second_open_of_same_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(dir.path()).unwrap();
    match open(dir.path()) {
        Err(StoreError::Open { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second open of a locked database succeeded"),
    }
}

/// A network for a one-node cluster, which never needs one.
struct NoNetwork;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "single-node test has no network",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoNetwork {
        NoNetwork
    }
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

pub(crate) async fn start(dir: &std::path::Path) -> (Raft, StateReader) {
    let t0 = std::time::Instant::now();
    let (log, sm) = loop {
        match open(dir) {
            Ok(halves) => break halves,
            // The previous Raft's state machine worker drops its half just after `shutdown`.
            Err(e) if e.is_already_open() && t0.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    // As a server's store: its own appends as the leader are synced in the background.
    let log = log.of_node(1);
    let reader = sm.reader();
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let raft = Raft::new(1, Arc::new(config.validate().unwrap()), NoNetwork, log, sm)
        .await
        .unwrap();
    (raft, reader)
}

async fn write(raft: &Raft, cmd: Command) -> (u64, Response) {
    let resp = raft.client_write(cmd).await.unwrap();
    (resp.log_id.index, resp.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_restarts_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let wait = Some(Duration::from_secs(10));
    let last = {
        let (raft, reader) = start(dir.path()).await;
        raft.initialize(BTreeMap::from([(1, BasicNode::default())]))
            .await
            .unwrap();
        raft.wait(wait).current_leader(1, "leader").await.unwrap();

        let (i1, r1) = write(&raft, put("a", "1")).await;
        assert_eq!(
            r1,
            Response::Var {
                key: "a".into(),
                modify_index: i1 * 1000
            }
        );
        write(&raft, put("b", "2")).await;
        raft.trigger().snapshot().await.unwrap();
        raft.wait(wait)
            .snapshot(log_id(1, 1, i1 + 1), "snapshot")
            .await
            .unwrap();
        let (last, _) = write(&raft, put("c", "3")).await;
        reader.wait_applied(last).await;
        raft.shutdown().await.unwrap();
        last
    };

    let (raft, reader) = start(dir.path()).await;
    tokio::time::timeout(Duration::from_secs(10), reader.wait_applied(last))
        .await
        .expect("state restored");
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(var(&reader, k).as_deref(), Some(v), "{k}");
    }
    raft.wait(wait).current_leader(1, "leader again").await.unwrap();
    let (_, r) = write(&raft, put("d", "4")).await;
    assert!(matches!(r, Response::Var { .. }));
    raft.shutdown().await.unwrap();
}

const KILL_DIR_ENV: &str = "TEPUI_STORE_KILL9_DIR";

/// The writer half of `appended_logs_survive_kill_9`, run in a child process.
#[tokio::test]
#[ignore = "run by appended_logs_survive_kill_9 in a child process"]
async fn kill9_child_writer() {
    let Some(dir) = std::env::var_os(KILL_DIR_ENV) else {
        return;
    };
    let (mut log, _sm) = open(std::path::Path::new(&dir)).unwrap();
    for index in 0.. {
        log.blocking_append([normal(index, put("k", &index.to_string()))])
            .await
            .unwrap();
        // Reported only after the append returned, i.e. after the fsync.
        println!("appended {index}");
    }
}

#[test]
fn appended_logs_survive_kill_9() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::kill9_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(i) = line.unwrap().strip_prefix("appended ") {
            acked = Some(i.parse::<u64>().unwrap());
            if acked >= Some(30) {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no clean close of the database
    child.wait().unwrap();
    let acked = acked.expect("the child appended logs");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut log, _sm) = open(dir.path()).unwrap();
        let last = log.get_log_state().await.unwrap().last_log_id.expect("logs survive");
        assert!(
            last.index >= acked,
            "acknowledged log {acked} lost, last is {}",
            last.index
        );
        let entries = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(entries.len() as u64, last.index + 1, "no holes");
    });
}

fn entry(term: u64, index: u64, value: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(put("k", value)),
    }
}

async fn all_entries(dir: &std::path::Path) -> serde_json::Value {
    let (mut log, _sm) = open(dir).unwrap();
    as_json(&log.try_get_log_entries(..).await.unwrap())
}

#[tokio::test]
async fn a_record_cut_short_by_a_crash_is_dropped_and_the_log_goes_on() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (0..5).map(|i| entry(1, i, &i.to_string())).collect();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
    }
    // What a crash in the middle of the next append can leave: a header and part of a payload,
    // written over the zeros ahead of the records.
    let path = dir.path().join(wal::WAL_FILE);
    let end = {
        let bytes = std::fs::read(&path).unwrap();
        bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count()
    };
    let mut torn = 200u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[7, 7, 7, 7]);
    torn.extend_from_slice(&5u64.to_le_bytes());
    torn.extend_from_slice(b"{\"log_id\":");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &torn, end as u64).unwrap();
    drop(f);
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 4)));
        log.blocking_append([entry(1, 5, "5")]).await.unwrap();
    }
    let mut expected = entries.clone();
    expected.push(entry(1, 5, "5"));
    assert_eq!(all_entries(dir.path()).await, as_json(&expected));
    // Garbage at the end of the file is dropped in the same way.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[1, 2, 3]).unwrap();
    drop(f);
    assert_eq!(all_entries(dir.path()).await, as_json(&expected));
}

#[tokio::test]
async fn truncated_entries_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append((0..6).map(|i| entry(1, i, "aaaa"))).await.unwrap();
        log.truncate(log_id(1, 1, 3)).await.unwrap();
    }
    // Stopped right after the truncation: a restart must not find 3 to 5 again.
    let mut expected: Vec<_> = (0..3).map(|i| entry(1, i, "aaaa")).collect();
    assert_eq!(all_entries(dir.path()).await, as_json(&expected));
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        // The same size at the same place: old records 4 and 5 would line up after it.
        log.blocking_append([entry(2, 3, "bbbb")]).await.unwrap();
    }
    expected.push(entry(2, 3, "bbbb"));
    assert_eq!(all_entries(dir.path()).await, as_json(&expected));
}

#[tokio::test]
async fn a_file_mostly_purged_is_rewritten_with_the_live_entries() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(1 << 20);
    let path = dir.path().join(wal::WAL_FILE);
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append((0..40).map(|i| entry(1, i, &format!("{i}{big}"))))
            .await
            .unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 40 << 20);
        log.purge(log_id(1, 1, 35)).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 5 << 20, "compacted");
        log.blocking_append([entry(1, 40, "40")]).await.unwrap();
        let read = log.try_get_log_entries(36..).await.unwrap();
        assert_eq!(read.len(), 5);
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 35)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 40)));
    let read = log.try_get_log_entries(..).await.unwrap();
    let mut expected: Vec<_> = (36..40).map(|i| entry(1, i, &format!("{i}{big}"))).collect();
    expected.push(entry(1, 40, "40"));
    assert_eq!(as_json(&read), as_json(&expected));
}

#[tokio::test]
async fn a_log_kept_in_redb_by_an_earlier_version_moves_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (0..4).map(|i| entry(1, i, &i.to_string())).collect();
    {
        let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut logs = txn.open_table(db::LOGS).unwrap();
            for e in &entries {
                let bytes = serde_json::to_vec(e).unwrap();
                logs.insert(e.log_id.index, bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    assert_eq!(all_entries(dir.path()).await, as_json(&entries));
    assert!(dir.path().join(wal::WAL_FILE).exists());
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append([entry(1, 4, "4")]).await.unwrap();
    }
    let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let logs = txn.open_table(db::LOGS).unwrap();
    assert!(
        redb::ReadableTableMetadata::is_empty(&logs).unwrap(),
        "the old rows are gone"
    );
    drop((logs, txn, db));
    let mut expected = entries.clone();
    expected.push(entry(1, 4, "4"));
    assert_eq!(all_entries(dir.path()).await, as_json(&expected));
}

#[tokio::test]
async fn a_stopping_server_records_the_latest_committed_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append([blank(0), blank(1), blank(2)]).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 1))).await.unwrap();
        // Within the second: only in memory, until the flush.
        log.save_committed(Some(log_id(1, 1, 2))).await.unwrap();
        log.flush_committed().await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 2)));
}

fn stored_format(dir: &std::path::Path) -> Option<u32> {
    let db = redb::Database::create(dir.join(DB_FILE)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    db::get_json(&txn.open_table(db::META).unwrap(), db::KEY_FORMAT, "format").unwrap()
}

fn set_stored_format(dir: &std::path::Path, format: u32) {
    let db = redb::Database::create(dir.join(DB_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(db::META)
        .unwrap()
        .insert(db::KEY_FORMAT, serde_json::to_vec(&format).unwrap().as_slice())
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append([blank(0), blank(1)]).await.unwrap();
    }
    assert_eq!(stored_format(dir.path()), Some(FORMAT));
    set_stored_format(dir.path(), FORMAT + 1);
    let err = open(dir.path()).err().expect("a newer store is refused");
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, .. } if found == FORMAT + 1),
        "{msg}"
    );
    assert!(
        msg.contains("newer tepui") && msg.contains("run the newer release"),
        "{msg}"
    );
    assert_eq!(stored_format(dir.path()), Some(FORMAT + 1), "nothing was rewritten");
}

/// A snapshot as 0.1.0 stored it: this release's encoding without `format`, the only field
/// it added.
fn as_legacy_snapshot(bytes: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(v["format"], serde_json::json!(FORMAT));
    v.as_object_mut().unwrap().remove("format");
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn snapshots_without_a_format_are_read_and_newer_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snap = {
        let (_log, mut sm) = open_apart(dir.path());
        sm.apply([blank(1), membership(2), normal(3, put("a", "1"))])
            .await
            .unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap()
    };
    let legacy = as_legacy_snapshot(snap.snapshot.get_ref());
    // Installed from a 0.1.0 leader, and stored and loaded again.
    let other = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open_apart(other.path());
        sm.install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(legacy.clone())))
            .await
            .unwrap();
        assert_eq!(var(&sm.reader(), "a").as_deref(), Some("1"));
    }
    let (_log, sm) = open(other.path()).unwrap();
    assert_eq!(var(&sm.reader(), "a").as_deref(), Some("1"));
    assert_eq!(sm.reader().applied_index(), 3);
    drop(sm);

    // One of a newer format, from a newer leader, is refused and changes nothing.
    let mut newer: serde_json::Value = serde_json::from_slice(&legacy).unwrap();
    newer["format"] = serde_json::json!(FORMAT + 1);
    let newer = serde_json::to_vec(&newer).unwrap();
    let third = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_apart(third.path());
    let err = sm
        .install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(newer)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("format"), "{err}");
    assert_eq!(var(&sm.reader(), "a"), None);
}

/// A copy of the Raft store a 0.1.0 server left (crates/store/tests/fixtures/v0.1.0).
fn legacy_store() -> TempDir {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.0");
    let dir = tempfile::tempdir().unwrap();
    for f in [DB_FILE, wal::WAL_FILE] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_store_written_by_0_1_0_opens_with_its_log_vote_and_state() {
    let dir = legacy_store();
    assert_eq!(stored_format(dir.path()), None, "0.1.0 said no format");
    {
        let (mut log, mut sm) = open_apart(dir.path());
        let state = log.get_log_state().await.unwrap();
        let last = state.last_log_id.expect("the fixture has a log").index;
        let entries = log.try_get_log_entries(0..=last).await.unwrap();
        assert_eq!(entries.len() as u64, last + 1, "every entry decodes");
        let vote = log.read_vote().await.unwrap().expect("a vote");
        assert_eq!(vote.leader_id().voted_for(), Some(1));
        sm.apply(entries).await.unwrap();
        let reader = sm.reader();
        for k in ["a", "b", "c"] {
            assert_eq!(var(&reader, &format!("fixture/{k}")), Some(format!("value-{k}")));
        }
        reader.read(|s| {
            assert!(s.cluster.is_some(), "the cluster's identity");
            assert_eq!(s.nodes.get(&1).map(|n| n.name.as_str()), Some("fixture"));
            assert!(!s.tokens.is_empty(), "the join tokens");
        });
        // New entries go on after the old ones, and a snapshot of it all is written.
        log.blocking_append([normal(last + 1, put("fixture/d", "value-d"))])
            .await
            .unwrap();
        sm.apply([normal(last + 1, put("fixture/d", "value-d"))]).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    // This release recorded its format; it opens again with the old and the new entries.
    assert_eq!(stored_format(dir.path()), Some(FORMAT));
    let (mut log, sm) = open(dir.path()).unwrap();
    assert_eq!(var(&sm.reader(), "fixture/d").as_deref(), Some("value-d"));
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap().index;
    assert_eq!(log.try_get_log_entries(0..=last).await.unwrap().len() as u64, last + 1);
}

#[tokio::test]
async fn only_a_leaders_own_appends_skip_waiting_for_their_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _sm) = open(dir.path()).unwrap();
    let mut log = log.of_node(1);
    assert!(!log.leading(), "no vote yet");
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    assert!(!log.leading(), "a candidate's vote for itself is not a leader's");
    log.save_vote(&Vote::new_committed(2, 3)).await.unwrap();
    assert!(!log.leading(), "a follower's vote names its leader");
    log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
    assert!(log.leading());

    // The leader's append returns; the sync ends on its own, and the durable mark follows.
    log.blocking_append([normal(0, put("a", "1")), normal(1, put("b", "2"))])
        .await
        .unwrap();
    let mut durable = log.durable();
    tokio::time::timeout(Duration::from_secs(10), durable.wait_for(|next| *next == 2))
        .await
        .expect("the background sync ends")
        .unwrap();

    // A store that was not told its node appends as a follower: on disk when it returns.
    let dir = tempfile::tempdir().unwrap();
    let (mut other, _sm) = open(dir.path()).unwrap();
    other.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
    other.blocking_append([normal(0, put("a", "1"))]).await.unwrap();
    assert_eq!(*other.durable().borrow(), 1);
}

#[tokio::test]
async fn followers_hear_of_no_commit_past_the_leaders_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _sm) = open(dir.path()).unwrap();
    let rows = |from: u64, to: u64| -> Vec<(LogId, Vec<u8>)> {
        (from..to)
            .map(|i| {
                let e = normal(i, put("k", &i.to_string()));
                (e.log_id, serde_json::to_vec(&e).unwrap())
            })
            .collect()
    };
    log.wal.append(&rows(0, 3)).unwrap();
    log.wal.write(&rows(3, 5)).unwrap();
    assert_eq!(*log.durable().borrow(), 3);
    assert_eq!(log.on_disk(Some(log_id(1, 1, 1))), Some(log_id(1, 1, 1)));
    assert_eq!(log.on_disk(Some(log_id(1, 1, 4))), Some(log_id(1, 1, 2)));
    assert_eq!(log.on_disk(None), None);
    log.wal.sync().unwrap();
    assert_eq!(log.on_disk(Some(log_id(1, 1, 4))), Some(log_id(1, 1, 4)));
}

#[tokio::test]
async fn a_sync_begun_before_a_truncation_vouches_for_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _sm) = open(dir.path()).unwrap();
    let row = |term: u64, i: u64| {
        let e = entry(term, i, "v");
        (e.log_id, serde_json::to_vec(&e).unwrap())
    };
    log.wal.write(&[row(1, 0), row(1, 1), row(1, 2), row(1, 3)]).unwrap();
    let (next, epoch, _file) = log.wal.sync_target();
    assert_eq!(next, 4);
    log.wal.truncate(2).unwrap();
    log.wal.write(&[row(2, 2), row(2, 3)]).unwrap();
    // The sync that began before the cut ends now: it covered the old entries 2 and 3, not
    // the new ones.
    log.wal.synced(next, epoch);
    assert!(*log.durable().borrow() <= 2);
    log.wal.sync().unwrap();
    assert_eq!(*log.durable().borrow(), 4);
}

#[tokio::test]
async fn entries_are_applied_only_once_the_log_has_them_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, sm) = open(dir.path()).unwrap();
    let (durable, on_disk) = tokio::sync::watch::channel(0u64);
    let mut sm = sm.wait_for_log_sync(on_disk);
    let reader = sm.reader();
    let mut apply = Box::pin(async move { sm.apply([normal(0, put("a", "1")), normal(1, put("b", "2"))]).await });
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(apply.as_mut().poll(&mut cx).is_pending(), "nothing is on disk yet");
    durable.send_replace(1);
    assert!(
        apply.as_mut().poll(&mut cx).is_pending(),
        "the last entry is not on disk yet"
    );
    assert_eq!(var(&reader, "a"), None);
    durable.send_replace(2);
    let replies = tokio::time::timeout(Duration::from_secs(10), apply)
        .await
        .expect("applied once on disk")
        .unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(var(&reader, "b").as_deref(), Some("2"));
}
