//! The durable status update queue, on a real directory, with time passed in.

use std::path::Path;
use std::time::{Duration, Instant};

use tepui_agent::{task_dir_name, UpdateQueue, FIRST_RETRY, MAX_RETRY};
use tepui_proto::agent::StatusUpdate;

fn update(task: &str, uuid: &str, state: &str) -> StatusUpdate {
    StatusUpdate {
        task_id: task.into(),
        uuid: uuid.into(),
        state: state.into(),
        reason: None,
        message: String::new(),
        exit_code: None,
        signal: None,
        timestamp_ms: 1,
        healthy: None,
        seq: None,
        container_ip: None,
    }
}

fn uuids(v: &[StatusUpdate]) -> Vec<&str> {
    let mut u: Vec<&str> = v.iter().map(|u| u.uuid.as_str()).collect();
    u.sort();
    u
}

fn files(root: &Path, task: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(task_dir_name(task)).join("updates"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn only_the_oldest_update_per_task_is_in_flight_and_an_ack_sends_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    q.push(update("a", "a1", "TASK_STARTING")).unwrap();
    q.push(update("a", "a2", "TASK_RUNNING")).unwrap();
    q.push(update("b", "b1", "TASK_STARTING")).unwrap();
    assert_eq!(files(dir.path(), "a").len(), 2, "on disk before anything is sent");

    let t0 = Instant::now();
    assert_eq!(q.next_due(t0), Some(t0));
    assert_eq!(uuids(&q.due(t0)), ["a1", "b1"]);
    assert!(q.due(t0).is_empty(), "sent ones wait for their retry");
    assert_eq!(q.next_due(t0), Some(t0 + FIRST_RETRY));

    // Acknowledgements of anything but the head change nothing.
    assert!(!q.ack("a", "a2"));
    assert!(!q.ack("a", "nope"));
    assert!(!q.ack("nobody", "a1"));
    assert!(q.ack("a", "a1"));
    assert!(!q.ack("a", "a1"), "a repeated ack is a no-op");
    assert_eq!(files(dir.path(), "a").len(), 1, "the acknowledged update is deleted");
    assert_eq!(uuids(&q.due(t0)), ["a2"], "the next one goes at once");
    assert!(q.ack("a", "a2"));
    assert!(q.ack("b", "b1"));
    assert!(q.due(t0).is_empty());
    assert_eq!(q.next_due(t0), None);
    assert!(files(dir.path(), "a").is_empty());
    assert_eq!(q.latest("a").unwrap().uuid, "a2", "the latest stays after its ack");
}

#[test]
fn unacknowledged_updates_are_resent_with_exponential_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    q.push(update("a", "a1", "TASK_RUNNING")).unwrap();
    let t0 = Instant::now();
    assert_eq!(q.due(t0).len(), 1);
    let mut now = t0;
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let next = q.next_due(now).unwrap();
        assert!(q.due(next - Duration::from_millis(1)).is_empty(), "not before its time");
        gaps.push((next - now).as_secs());
        now = next;
        assert_eq!(uuids(&q.due(now)), ["a1"]);
    }
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(MAX_RETRY.as_secs(), 30);

    // A new connection sends it at once, and the backoff starts over.
    q.reconnected();
    assert_eq!(q.next_due(now), Some(now));
    assert_eq!(uuids(&q.due(now)), ["a1"]);
    assert_eq!(q.next_due(now), Some(now + FIRST_RETRY));
}

#[test]
fn a_reopened_queue_resends_what_was_not_acknowledged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = UpdateQueue::open(dir.path()).unwrap();
        for (i, s) in ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"].iter().enumerate() {
            q.push(update("web.1", &format!("w{i}"), s)).unwrap();
        }
        q.push(update("db", "d0", "TASK_STARTING")).unwrap();
        q.push(update("gone", "g0", "TASK_FINISHED")).unwrap();
        let now = Instant::now();
        q.due(now);
        assert!(q.ack("web.1", "w0"));
        assert!(q.ack("gone", "g0"));
        // Dropped without ceremony, as kill -9 would.
    }
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    let mut ids: Vec<&str> = q.task_ids().collect();
    ids.sort();
    assert_eq!(ids, ["db", "gone", "web.1"]);
    let pending: Vec<String> = q.pending("web.1").iter().map(|u| u.uuid.clone()).collect();
    assert_eq!(pending, ["w1", "w2"]);
    assert!(q.pending("gone").is_empty());
    assert_eq!(q.latest("gone").unwrap().state, "TASK_FINISHED");
    assert_eq!(q.latest("web.1").unwrap().uuid, "w2");

    let now = Instant::now();
    assert_eq!(
        uuids(&q.due(now)),
        ["d0", "w1"],
        "everything pending is due after a restart"
    );
    assert!(q.ack("web.1", "w1"));
    assert_eq!(uuids(&q.due(now)), ["w2"]);

    // New updates go after the old ones, on disk too.
    q.push(update("web.1", "w3", "TASK_KILLED")).unwrap();
    drop(q);
    let q = UpdateQueue::open(dir.path()).unwrap();
    let pending: Vec<&str> = q.pending("web.1").iter().map(|u| u.uuid.as_str()).collect();
    assert_eq!(pending, ["w2", "w3"]);
    assert_eq!(q.latest("web.1").unwrap().uuid, "w3");
}

#[test]
fn the_newest_pending_update_wins_over_the_latest_file() {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join(task_dir_name("a"));
    {
        let mut q = UpdateQueue::open(dir.path()).unwrap();
        q.push(update("a", "a0", "TASK_RUNNING")).unwrap();
        // An acknowledged update becomes the task's latest.json, its file moved there.
        assert!(q.ack("a", "a0"));
        assert!(files(dir.path(), "a").is_empty());
        assert!(task_dir.join("latest.json").is_file());
        q.push(update("a", "a1", "TASK_FAILED")).unwrap();
    }
    // A crash with a half-written temporary file left behind.
    std::fs::write(
        task_dir.join("updates").join(".tmp-00000000000000000002.json"),
        b"{\"seq\":",
    )
    .unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    assert_eq!(
        q.latest("a").unwrap().uuid,
        "a1",
        "the newer pending update, not latest.json"
    );
    assert_eq!(q.pending("a").len(), 1);
    assert_eq!(files(dir.path(), "a").len(), 1, "temporary files are removed");
    q.push(update("a", "a2", "TASK_FAILED")).unwrap();
    assert_eq!(files(dir.path(), "a").len(), 2, "sequence numbers do not collide");
    assert!(q.ack("a", "a1"));
    drop(q);
    let q = UpdateQueue::open(dir.path()).unwrap();
    assert_eq!(q.latest("a").unwrap().uuid, "a2");
    assert_eq!(
        q.pending("a").iter().map(|u| u.uuid.as_str()).collect::<Vec<_>>(),
        ["a2"]
    );
}

#[test]
fn removing_a_task_drops_its_updates_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    q.push(update("a/b", "x0", "TASK_RUNNING")).unwrap();
    q.push(update("c", "c0", "TASK_RUNNING")).unwrap();
    assert!(
        dir.path().join(task_dir_name("a/b")).is_dir(),
        "odd ids get a safe directory"
    );
    q.remove("a/b").unwrap();
    q.remove("never-there").unwrap();
    assert!(q.latest("a/b").is_none());
    assert_eq!(uuids(&q.due(Instant::now())), ["c0"]);
    drop(q);
    let q = UpdateQueue::open(dir.path()).unwrap();
    assert_eq!(q.task_ids().collect::<Vec<_>>(), ["c"]);
}

/// Updates are written to disk outside the queue's lock, so a task's second update can be
/// written before its first; they still go out in the order they were made, and nothing of
/// the task goes out while one of them is being written.
#[test]
fn updates_written_out_of_order_go_out_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    let first = q.reserve(update("a", "a1", "TASK_STARTING"));
    let second = q.reserve(update("a", "a2", "TASK_RUNNING"));
    assert_eq!(q.latest("a").map(|u| u.uuid.as_str()), Some("a2"));
    second.write().unwrap();
    q.commit(second, true);
    let t0 = Instant::now();
    assert!(q.due(t0).is_empty(), "the first is still being written");
    assert_eq!(q.next_due(t0), None);
    first.write().unwrap();
    q.commit(first, true);
    assert_eq!(uuids(&q.due(t0)), ["a1"]);
    assert!(q.ack("a", "a1"));
    assert_eq!(uuids(&q.due(t0)), ["a2"]);
    assert_eq!(q.pending("a")[0].seq, Some(1), "each update carries its place");
}

/// A task removed while one of its updates is being written keeps nothing of it.
#[test]
fn an_update_written_for_a_removed_task_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = UpdateQueue::open(dir.path()).unwrap();
    let late = q.reserve(update("a", "a1", "TASK_FINISHED"));
    q.remove("a").unwrap();
    late.write().unwrap();
    q.commit(late, true);
    assert!(q.pending("a").is_empty());
    assert!(files(dir.path(), "a").is_empty());
    assert!(q.due(Instant::now()).is_empty());
}
