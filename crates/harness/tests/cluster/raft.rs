//! Raft through the real servers: elections, failover, no lost acknowledged write, minority
//! partitions, catching up after a restart, snapshot installs, membership changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_api::VarPutRequest;
use tepui_harness::{wait_for, within, Client, Cluster, StartedAs};

const WAIT: Duration = Duration::from_secs(15);

fn put(value: &str) -> VarPutRequest {
    VarPutRequest {
        value: value.to_string(),
        cas: None,
    }
}

/// The variables a server's API returns (forwarded to the leader by a follower).
async fn vars_via(client: &Client) -> BTreeMap<String, String> {
    client
        .vars()
        .await
        .expect("listing variables")
        .into_iter()
        .map(|v| (v.key, v.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_elect_one_leader() {
    let c = Cluster::builder().servers(3).start().await;
    let leader = c.wait_for_leader().await;
    assert_eq!(c.leader_id(), Some(leader));
    let claiming: Vec<u64> = c
        .server_ids()
        .into_iter()
        .filter(|id| c.server(*id).is_leader())
        .collect();
    assert_eq!(claiming, vec![leader], "exactly one server claims leadership");
    for id in c.server_ids() {
        let status = c.client(id).status().await.expect("status");
        assert_eq!(
            status.leader.map(|l| l.id),
            Some(leader),
            "server {id} names the leader"
        );
        assert_eq!(status.servers, 3);
        let members = c.client(id).members().await.expect("members");
        assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
        assert_eq!(
            members
                .iter()
                .filter(|m| m.raft_role == "leader")
                .map(|m| m.id)
                .collect::<Vec<_>>(),
            vec![leader]
        );
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_writes_go_on() {
    let mut c = Cluster::builder().servers(3).start().await;
    let old = c.wait_for_leader().await;
    let old_term = c.metrics(old).current_term;
    c.put_var("before", "1").await;
    c.check_invariants();

    c.kill_server(old).await;
    let new = c.wait_for_leader().await;
    assert_ne!(new, old);
    assert!(
        c.metrics(new).current_term > old_term,
        "the new leader leads a later term"
    );
    c.check_invariants();

    // Through the surviving follower, which forwards to the new leader.
    let follower = c
        .live_server_ids()
        .into_iter()
        .find(|id| *id != new)
        .expect("a follower");
    let client = c.client(follower);
    let written = wait_for(
        "a write through the follower to succeed",
        Duration::from_secs(5),
        async || {
            within(Duration::from_secs(2), client.put_var("after", &put("2")))
                .await?
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert_eq!(written.value, "2");

    c.wait_converged().await;
    for id in c.live_server_ids() {
        assert_eq!(c.local_var(id, "before").as_deref(), Some("1"), "server {id}");
        assert_eq!(c.local_var(id, "after").as_deref(), Some("2"), "server {id}");
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_a_failover() {
    let mut c = Cluster::builder().servers(3).start().await;
    let old = c.wait_for_leader().await;

    // A writer that keeps writing numbered keys through every server in turn, the leader's
    // included, and remembers which writes were acknowledged with a 2xx.
    let clients: Vec<Client> = c.server_ids().into_iter().map(|id| c.client(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writer = tokio::spawn({
        let (stop, acked) = (stop.clone(), acked.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let client = &clients[i as usize % clients.len()];
                let answer = within(
                    Duration::from_secs(2),
                    client.put_var(&format!("w/{i}"), &put(&format!("v{i}"))),
                )
                .await;
                match answer {
                    Ok(Ok(_)) => acked.lock().unwrap().push(i),
                    // Pacing only: a dead server refuses at once and the loop would spin.
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
                i += 1;
            }
            i
        }
    });
    let count = || acked.lock().unwrap().len();
    wait_for("20 acknowledged writes before the failover", WAIT, async || {
        count() >= 20
    })
    .await;

    c.kill_server(old).await;
    let before_kill = count();
    let new = c.wait_for_leader().await;
    assert_ne!(new, old);
    wait_for("20 more acknowledged writes after the failover", WAIT, async || {
        count() >= before_kill + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let attempted = writer.await.expect("the writer");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() < attempted as usize,
        "some writes went to the dead server and failed"
    );
    c.check_invariants();

    c.wait_converged().await;
    for id in c.live_server_ids() {
        let vars = vars_via(&c.client(id)).await;
        for i in &acked {
            let key = format!("w/{i}");
            assert_eq!(
                vars.get(&key).map(String::as_str),
                Some(format!("v{i}").as_str()),
                "{key} via {id}"
            );
            assert_eq!(c.local_var(id, &key), Some(format!("v{i}")), "{key} on {id}");
        }
    }

    // The old leader comes back and has every acknowledged write too.
    c.restart_server(old).await;
    c.wait_converged().await;
    for i in &acked {
        assert_eq!(
            c.local_var(old, &format!("w/{i}")),
            Some(format!("v{i}")),
            "w/{i} on {old}"
        );
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_and_converges_after_heal() {
    let mut c = Cluster::builder().servers(3).start().await;
    let old = c.wait_for_leader().await;
    c.put_var("base", "1").await;
    c.wait_converged().await;
    let majority: Vec<u64> = c.server_ids().into_iter().filter(|id| *id != old).collect();

    c.isolate(old);
    let applied_at_isolation = c.server(old).state().applied_index();
    let log_at_isolation = c.metrics(old).last_log_index.expect("a log");
    // The old leader still thinks it leads: it appends the write to its log but cannot commit it.
    let minority_client = c.client(old);
    let minority_write = tokio::spawn(async move {
        within(
            Duration::from_secs(30),
            minority_client.put_var("minority", &put("from the isolated side")),
        )
        .await
    });
    wait_for("the isolated leader to append the write to its log", WAIT, async || {
        c.metrics(old).last_log_index > Some(log_at_isolation)
    })
    .await;
    let minority_index = log_at_isolation + 1;

    let new = c.wait_for_leader_among(&majority).await;
    assert_ne!(new, old);
    for i in 0..10 {
        c.put_var(&format!("majority/{i}"), "yes").await;
    }
    c.check_invariants();
    assert!(
        !minority_write.is_finished(),
        "the isolated leader answered a write while cut off: {:?}",
        minority_write.await
    );
    assert_eq!(
        c.server(old).state().applied_index(),
        applied_at_isolation,
        "the minority committed nothing"
    );
    assert!(c.metrics(old).last_log_index >= Some(minority_index));
    assert_eq!(c.local_var(old, "minority"), None);
    assert_eq!(c.local_var(old, "majority/0"), None);

    c.heal();
    let leader = c.wait_for_leader().await;
    assert!(
        majority.contains(&leader),
        "the stale leader cannot win back: its log is behind"
    );
    c.wait_converged().await;
    for id in c.server_ids() {
        for i in 0..10 {
            assert_eq!(
                c.local_var(id, &format!("majority/{i}")).as_deref(),
                Some("yes"),
                "server {id}"
            );
        }
    }
    assert_eq!(c.metrics(old).state, openraft::ServerState::Follower);

    // The old leader refuses the write once it learns of the new leader (its entry is cut from its
    // log); the client may then send it again to the new leader, which commits it at a later
    // index. Either way the entry the isolated leader appended was never committed.
    let answer = within(Duration::from_secs(20), minority_write)
        .await
        .expect("the client gives up or succeeds in time")
        .expect("the minority writer")
        .and_then(|r| r.map_err(|e| e.to_string()));
    match answer {
        Ok(view) => {
            assert!(
                // Versions are the log index times 1000 (plus the position in a batch).
                view.modify_index / 1000 > minority_index + 10,
                "the write was committed by the new leader after the majority's writes, not at the \
                 index the isolated leader gave it ({minority_index}): {view:?}"
            );
            c.wait_converged().await;
            for id in c.server_ids() {
                assert_eq!(c.local_var(id, "minority").as_deref(), Some("from the isolated side"));
            }
        }
        Err(e) => {
            for id in c.server_ids() {
                assert_eq!(c.local_var(id, "minority"), None, "refused ({e}), yet applied on {id}");
            }
        }
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_catches_up() {
    let mut c = Cluster::builder().servers(3).start().await;
    let leader = c.wait_for_leader().await;
    let follower = c.server_ids().into_iter().find(|id| *id != leader).expect("a follower");
    c.kill_server(follower).await;
    for i in 0..30 {
        c.put_var(&format!("r/{i}"), &i.to_string()).await;
    }
    c.check_invariants();
    let leader = c.wait_for_leader().await;
    let target = c.server(leader).state().applied_index();

    let restarted = c.restart_server(follower).await;
    assert!(matches!(restarted.started_as, StartedAs::Restarted));
    wait_for(
        "the restarted server to apply what the leader applied",
        WAIT,
        async || c.server(follower).state().applied_index() >= target,
    )
    .await;
    for i in 0..30 {
        assert_eq!(c.local_var(follower, &format!("r/{i}")), Some(i.to_string()));
    }
    c.wait_for_voters().await;
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_server_installs_a_snapshot() {
    let mut c = Cluster::builder().servers(3).snapshots(20, 0).start().await;
    let leader = c.wait_for_leader().await;
    let lagging = c.server_ids().into_iter().find(|id| *id != leader).expect("a follower");
    let old_last = c.metrics(lagging).last_log_index.expect("a log");
    assert!(c.metrics(lagging).snapshot.is_none_or(|s| s.index <= old_last));
    c.kill_server(lagging).await;

    // Write until no running server's log holds the entries after `old_last` any more: from
    // then on the lagging server can only catch up from a snapshot.
    let clients: Vec<Client> = c.live_server_ids().into_iter().map(|id| c.client(id)).collect();
    let mut written = 0usize;
    wait_for(
        "every running server to purge its log past the lagging server's last entry",
        Duration::from_secs(60),
        async || {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let client = clients[written % clients.len()].clone();
                let key = format!("s/{written}");
                batch.spawn(async move {
                    loop {
                        if let Ok(Ok(_)) = within(Duration::from_secs(3), client.put_var(&key, &put("x"))).await {
                            return;
                        }
                    }
                });
                written += 1;
            }
            batch.join_all().await;
            let purged: Vec<(u64, Option<u64>)> = c
                .live_server_ids()
                .into_iter()
                .map(|id| (id, c.metrics(id).purged.map(|p| p.index)))
                .collect();
            if purged.iter().all(|(_, p)| p.is_some_and(|p| p > old_last)) {
                Ok(())
            } else {
                Err(format!("after {written} writes, logs purged up to {purged:?}"))
            }
        },
    )
    .await;
    assert!(written > 100, "wrote {written} entries");
    eprintln!("wrote {written} entries; lagging server's last log index was {old_last}");
    c.check_invariants();

    c.restart_server(lagging).await;
    c.wait_converged().await;
    for i in 0..written {
        assert_eq!(c.local_var(lagging, &format!("s/{i}")).as_deref(), Some("x"), "s/{i}");
    }
    let m = c.metrics(lagging);
    eprintln!("the lagging server after catching up: {m}");
    let snapshot = m.snapshot.expect("the lagging server holds a snapshot");
    assert!(
        snapshot.index > old_last,
        "its snapshot ({snapshot}) starts past its old log (last index {old_last})"
    );
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_and_shrinks() {
    let mut c = Cluster::builder().servers(3).start().await;
    let added = c.add_server().await;
    let members = c.client(added).members().await.expect("members");
    assert_eq!(members.iter().filter(|m| m.voter).count(), 4, "{members:?}");
    assert!(members.iter().any(|m| m.id == added && m.voter));
    c.put_var("with-four", "1").await;
    c.wait_converged().await;
    assert_eq!(c.local_var(added, "with-four").as_deref(), Some("1"));
    c.check_invariants();

    let leader = c.wait_for_leader().await;
    let removed = c
        .server_ids()
        .into_iter()
        .find(|id| *id != leader && *id != added)
        .expect("an original follower");
    c.remove_server(removed).await;
    let members = c.client(leader).members().await.expect("members");
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.id != removed));
    let nodes = c.client(added).nodes().await.expect("nodes");
    assert!(
        nodes.iter().all(|n| n.id != removed),
        "the removed server's record is gone"
    );
    c.check_invariants();

    // With three voters, two of them commit: had the removal not shrunk the membership, two of
    // four could not.
    let leader = c.wait_for_leader().await;
    let stopped = c.server_ids().into_iter().find(|id| *id != leader).expect("a follower");
    c.kill_server(stopped).await;
    let view = c.put_var("with-two-of-three", "1").await;
    assert_eq!(view.value, "1");
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_see_the_leader_stop_elect_another_without_a_timeout() {
    let mut c = Cluster::builder().servers(3).start().await;
    let old = c.wait_for_leader().await;
    c.put_var("before", "1").await;
    c.wait_converged().await;
    // No follower calls an election on its own timer any more: only noticing that the leader's
    // connections closed and its port refuses can start one.
    let followers: Vec<u64> = c.live_server_ids().into_iter().filter(|id| *id != old).collect();
    for &id in &followers {
        c.server(id).raft().runtime_config().elect(false);
    }

    c.kill_server(old).await;
    let new = c.wait_for_leader().await;
    assert!(followers.contains(&new), "{new} is one of {followers:?}");
    let written = c.put_var("after", "2").await;
    assert_eq!(written.value, "2");
    c.wait_converged().await;
    for id in c.live_server_ids() {
        assert_eq!(c.local_var(id, "before").as_deref(), Some("1"), "server {id}");
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_forwarded_to_a_frozen_leader_end_when_another_is_elected() {
    let mut c = Cluster::builder().servers(3).start().await;
    let old = c.wait_for_leader().await;
    c.put_var("before", "1").await;
    c.wait_converged().await;
    let followers: Vec<u64> = c.live_server_ids().into_iter().filter(|id| *id != old).collect();

    // A frozen leader: its connections stay open, but nothing it is sent gets an answer for a
    // minute, and it says nothing either. The followers elect another after their timeout.
    for &f in &followers {
        c.delay(old, f, Duration::from_secs(60));
        c.delay(f, old, Duration::from_secs(60));
    }
    let via = c.client(followers[0]);
    // Sent at once, while the follower still forwards to the frozen leader. The read goes to
    // the new leader; the write may have been carried out by the old one, so the follower
    // answers 503 and the client tries it again (a PUT is idempotent).
    let during = put("2");
    let (read, write) = tokio::join!(
        within(Duration::from_secs(20), via.get_var("before")),
        within(Duration::from_secs(20), via.put_var("during", &during)),
    );
    let read = read
        .expect("a read forwarded to the frozen leader is answered without it")
        .expect("the read succeeds through the new leader");
    assert_eq!(read.value, "1");
    let write = write
        .expect("a write forwarded to the frozen leader is answered without it")
        .expect("the write succeeds once retried");
    assert_eq!(write.value, "2");
    let new = c.wait_for_leader_among(&followers).await;
    assert_ne!(new, old);

    c.heal();
    c.wait_converged().await;
    for id in c.live_server_ids() {
        assert_eq!(c.local_var(id, "during").as_deref(), Some("2"), "server {id}");
    }
    c.check_invariants();
    c.shutdown().await;
}
