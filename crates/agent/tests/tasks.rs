//! The task manager on real containers: launches from images and from the host, failures
//! before and after running, kills, forgets, cleanup, and adoption by a new manager on the
//! same data dir while containers run. Run as root.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use tepui_agent::{Phase, TaskManager};
use tepui_runtime::{LogStream, TaskState};

async fn log(mgr: &TaskManager, id: &str, stream: LogStream) -> String {
    let mut chunks = mgr.runtime().logs(id, stream, None, false).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = chunks.next().await {
        out.extend(c.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn image_and_host_tasks_run_to_the_end_with_their_output_in_the_logs() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);

    let id = task_id("hello");
    let mut l = launch(
        &id,
        Some(BUSYBOX),
        &["sh", "-c", "echo hello $TEPUI_VARIANT $MINE $PWD; echo oops >&2"],
    );
    l.def.env.insert("MINE".into(), "mine".into());
    mgr.launch(l.clone());
    // Delivery is at least once: the same launch again is ignored.
    mgr.launch(l.clone());
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(leader.states(&id), ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);
    // The image's env and working dir, with the task's env on top.
    assert_eq!(log(&mgr, &id, LogStream::Stdout).await, "hello latest mine /data\n");
    assert_eq!(log(&mgr, &id, LogStream::Stderr).await, "oops\n");
    mgr.launch(l);
    assert!(mgr.pending(&id).is_empty(), "a launch of an ended task is ignored too");
    assert_eq!(mgr.latest(&id).unwrap().state, "TASK_FINISHED");
    // Ended once its rootfs is released, which may come just after the end is reported.
    let mut phase = mgr.watch_phase(&id).expect("the task is known");
    tokio::time::timeout(Duration::from_secs(10), phase.wait_for(|p| *p == Phase::Ended))
        .await
        .expect("ended within 10 s")
        .expect("the task stays known");
    assert!(
        mgr.reports().iter().all(|r| r.task_id != id),
        "acknowledged and ended: not reported"
    );

    // No args: the image's entrypoint and cmd (`sh -c "cat /etc/hostname"`).
    let id = task_id("image-cmd");
    mgr.launch(launch(&id, Some(BUSYBOX), &[]));
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");
    assert_eq!(log(&mgr, &id, LogStream::Stdout).await, "tepui-test\n");

    // No image: the host's programs, isolated.
    let id = task_id("host");
    mgr.launch(launch(
        &id,
        None,
        &["/bin/sh", "-c", "echo on the host; cat /proc/1/comm"],
    ));
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");
    let out = log(&mgr, &id, LogStream::Stdout).await;
    assert!(out.starts_with("on the host\n"), "{out:?}");
    assert!(
        !out.contains("systemd") && !out.contains("init\n"),
        "its own pid namespace: {out:?}"
    );

    // Every rootfs was released when its task ended.
    assert!(mgr.images().check().is_empty(), "{:?}", mgr.images().check());
    mgr.images()
        .remove(BUSYBOX, &HashSet::new())
        .expect("no task holds the image any more");
    mgr.shutdown().await;
}

#[tokio::test]
async fn failures_are_reported_with_exit_codes_and_reasons() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);

    let failing = task_id("exit1");
    mgr.launch(launch(&failing, Some(BUSYBOX), &["sh", "-c", "echo bad >&2; exit 1"]));
    let no_such = task_id("nosuch");
    mgr.launch(launch(&no_such, Some(BUSYBOX), &["/bin/no-such-command"]));
    let bad_net = task_id("badnet");
    let mut l = launch(&bad_net, Some(BUSYBOX), &["true"]);
    l.def.network = "overlay".into();
    mgr.launch(l);
    mgr.launch(launch("../escape", None, &["true"]));

    let end = leader.wait_end(&failing).await;
    assert_eq!(end.state, "TASK_FAILED", "{end:?}");
    assert_eq!(end.exit_code, Some(1));
    assert_eq!(end.reason.as_deref(), Some("REASON_COMMAND_EXECUTOR_FAILED"));
    assert_eq!(
        leader.states(&failing),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    );

    let end = leader.wait_end(&no_such).await;
    assert_eq!(end.state, "TASK_FAILED", "{end:?}");
    assert_eq!(end.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    assert!(end.message.contains("no-such-command"), "{end:?}");
    assert_eq!(leader.states(&no_such), ["TASK_STARTING", "TASK_FAILED"]);

    let end = leader.wait_end(&bad_net).await;
    assert_eq!(end.state, "TASK_ERROR", "{end:?}");
    assert_eq!(end.reason.as_deref(), Some("REASON_TASK_INVALID"));
    assert!(end.message.contains("overlay"), "{end:?}");

    let end = leader.wait_end("../escape").await;
    assert_eq!(end.state, "TASK_ERROR", "{end:?}");
    assert!(end.message.contains("task id"), "{end:?}");
    assert!(!fx.cfg.data_dir.join("escape").exists());

    // The image is free again: failed launches released their rootfs.
    assert!(mgr.images().check().is_empty());
    mgr.shutdown().await;
}

#[tokio::test]
async fn kill_ends_a_task_killed_even_before_it_runs() {
    // A "registry" that accepts connections and never answers: pulls from it hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_host = silent.local_addr().unwrap().to_string();
    let fx = Fixture::with(|c| c.insecure_registries = vec![silent_host.clone()]);
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);

    let id = task_id("sleeper");
    mgr.launch(launch(
        &id,
        Some(BUSYBOX),
        &[
            "sh",
            "-c",
            "trap 'echo term; exit 0' TERM; while :; do /bin/busybox sleep 0.1; done",
        ],
    ));
    leader.wait_state(&id, "TASK_RUNNING").await;
    let pid = mgr.runtime().status(&id).await.unwrap().pid.unwrap();
    assert!(alive(pid));
    mgr.kill(&id, None);
    mgr.kill(&id, None);
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_KILLED", "{end:?}");
    assert_eq!(leader.states(&id), ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]);
    assert!(!alive(pid));
    mgr.kill(&id, None);
    assert!(mgr.pending(&id).is_empty(), "a kill of an ended task changes nothing");

    // Killed while its image is being pulled.
    let stuck = task_id("stuck");
    mgr.launch(launch(&stuck, Some(&format!("{silent_host}/slow/image:1")), &["true"]));
    leader.wait_state(&stuck, "TASK_STARTING").await;
    mgr.kill(&stuck, None);
    let end = leader.wait_end(&stuck).await;
    assert_eq!(end.state, "TASK_KILLED", "{end:?}");
    assert_eq!(end.reason.as_deref(), Some("REASON_TASK_KILLED_DURING_LAUNCH"));

    // A task this agent never had.
    mgr.kill("never-here", None);
    let end = leader.wait_end("never-here").await;
    assert_eq!(end.state, "TASK_KILLED");
    assert_eq!(end.reason.as_deref(), Some("REASON_TASK_UNKNOWN"));
    assert_eq!(end.message, "not on this agent");
    mgr.kill("never-here", None);
    assert_eq!(leader.states("never-here").len(), 1);
    drop(silent);
    mgr.shutdown().await;
    drop(fx);
}

#[tokio::test]
async fn a_kill_that_does_not_reach_the_shim_is_tried_again_until_the_task_ends() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let (id, pid) = leader.run_sleeper("unreached").await;

    // The shim's socket is moved away: the kill cannot be delivered.
    let sock = mgr.runtime().run_dir(&id).join("shim.sock");
    let aside = sock.with_file_name("shim.sock.aside");
    std::fs::rename(&sock, &aside).unwrap();
    mgr.kill(&id, None);
    wait_for("a kill that failed", || mgr.kill_failures() >= 1).await;
    assert!(alive(pid), "not delivered, so not killed");

    // Back in place: the next attempt ends the task.
    std::fs::rename(&aside, &sock).unwrap();
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_KILLED", "{end:?}");
    assert!(!alive(pid));
    mgr.shutdown().await;
}

#[tokio::test]
async fn forget_kills_the_task_and_drops_it_with_its_updates() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let (id, pid) = leader.run_sleeper("forgotten").await;

    // Updates the leader never acknowledged are dropped with the task.
    leader.ack = false;
    mgr.forget(&id);
    wait_for("the forgotten task to be gone", || mgr.phase(&id).is_none()).await;
    assert!(!alive(pid));
    assert!(mgr.pending(&id).is_empty());
    assert!(mgr.reports().is_empty());
    assert!(!task_dir(&fx, &id).exists());
    assert_eq!(mgr.runtime().status(&id).await.unwrap().state, TaskState::Killed);
    assert!(
        mgr.due_updates(std::time::Instant::now()).is_empty(),
        "nothing more is said about a forgotten task"
    );
    assert_eq!(leader.states(&id), ["TASK_STARTING", "TASK_RUNNING"]);
    mgr.forget(&id);
    mgr.shutdown().await;
}

#[tokio::test]
async fn cleanup_removes_ended_tasks_once_acknowledged_and_old_enough() {
    let fx = Fixture::with(|c| c.task_retention = Duration::ZERO);
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let done = task_id("done");
    let unacked = task_id("unacked");
    mgr.launch(launch(&done, Some(BUSYBOX), &["/bin/busybox", "true"]));
    leader.wait_end(&done).await;
    leader.ack = false;
    mgr.launch(launch(&unacked, None, &["/bin/true"]));
    wait_for("the unacknowledged task to end", || {
        mgr.latest(&unacked).is_some_and(|u| u.state == "TASK_FINISHED")
    })
    .await;
    // The acknowledged one goes once its shim has let go of its container too (under load that
    // can come a moment after its last update): clean up until it is gone.
    let (mut tasks, mut sandboxes) = (vec![], vec![]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(tasks.contains(&done) && sandboxes.contains(&done)) {
        assert!(
            std::time::Instant::now() < deadline,
            "cleanup did not remove {done}: tasks {tasks:?}, sandboxes {sandboxes:?}"
        );
        let report = mgr.cleanup().await;
        tasks.extend(report.tasks);
        sandboxes.extend(report.sandboxes);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tasks, std::slice::from_ref(&done), "only the acknowledged task goes");
    assert!(!task_dir(&fx, &done).exists());
    assert!(!mgr.runtime().sandbox_dir(&done).exists());
    assert!(mgr.phase(&done).is_none());
    // Its final update is not acknowledged: the task stays, and is reported.
    assert!(task_dir(&fx, &unacked).exists());
    assert_eq!(mgr.reports().len(), 1);
    assert_eq!(mgr.reports()[0].state, "TASK_FINISHED");

    // Image gc: layers of a removed image go once nothing uses them.
    mgr.images().remove(BUSYBOX, &HashSet::new()).unwrap();
    let report = mgr.cleanup().await;
    assert!(report.image_gc.removed_layers >= 2, "{report:?}");
    mgr.shutdown().await;
}

#[tokio::test]
async fn a_new_manager_adopts_running_containers_and_reports_what_ended_meanwhile() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let keeps = task_id("keeps-running");
    let ends = task_id("ends-while-away");
    let quiet = task_id("quiet");
    mgr.launch(launch(&keeps, Some(BUSYBOX), &["/bin/busybox", "sleep", "1000"]));
    mgr.launch(launch(
        &ends,
        Some(BUSYBOX),
        &[
            "sh",
            "-c",
            "until cat /mnt/sandbox/stop; do /bin/busybox sleep 0.05; done",
        ],
    ));
    leader.wait_state(&keeps, "TASK_RUNNING").await;
    leader.wait_state(&ends, "TASK_RUNNING").await;
    // One task whose updates the leader never acknowledged.
    leader.ack = false;
    mgr.launch(launch(&quiet, Some(BUSYBOX), &["/bin/busybox", "true"]));
    // Its three updates (starting, running, finished) are written and wait for an ack.
    wait_for("the unacknowledged task to end", || {
        mgr.latest(&quiet).is_some_and(|u| u.state == "TASK_FINISHED") && mgr.pending(&quiet).len() == 3
    })
    .await;
    let keeps_pid = mgr.runtime().status(&keeps).await.unwrap().pid.unwrap();
    let ends_pid = mgr.runtime().status(&ends).await.unwrap().pid.unwrap();

    // The agent goes away; its containers do not.
    mgr.shutdown().await;
    drop(leader);
    drop(mgr);
    assert!(alive(keeps_pid) && alive(ends_pid));
    std::fs::write(fx.cfg.data_dir.join("runtime/tasks").join(&ends).join("data/stop"), "").unwrap();
    // Ended, as its shim records it (the process goes a moment before the record is there).
    let runtime = tepui_runtime::Runtime::new(fx.cfg.data_dir.join("runtime"), fx.cfg.runtime.clone()).unwrap();
    let st = tokio::time::timeout(DEADLINE, runtime.wait(&ends))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.state, TaskState::Finished, "{st:?}");
    assert!(!alive(ends_pid));

    let mgr = fx.open().await;
    let mut leader = Leader::new(&mgr);
    let mut reports = mgr.reports();
    reports.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let states: Vec<(&str, &str)> = reports.iter().map(|r| (r.task_id.as_str(), r.state.as_str())).collect();
    let mut want = vec![
        (ends.as_str(), "TASK_FINISHED"),
        (keeps.as_str(), "TASK_RUNNING"),
        (quiet.as_str(), "TASK_FINISHED"),
    ];
    want.sort();
    assert_eq!(states, want, "registration reports every task with its latest state");

    // What was never acknowledged comes again, in order; what ended meanwhile is reported.
    let end = leader.wait_end(&quiet).await;
    assert_eq!(end.state, "TASK_FINISHED");
    assert_eq!(
        leader.states(&quiet),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    );
    let end = leader.wait_end(&ends).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");
    assert_eq!(leader.states(&ends), ["TASK_FINISHED"]);

    // The running one is the same process, followed again: a kill ends it, reported.
    assert_eq!(mgr.phase(&keeps), Some(Phase::Running));
    assert_eq!(mgr.runtime().status(&keeps).await.unwrap().pid, Some(keeps_pid));
    assert!(alive(keeps_pid));
    assert!(
        leader.states(&keeps).is_empty(),
        "RUNNING was acknowledged before the restart"
    );
    mgr.kill(&keeps, None);
    let end = leader.wait_end(&keeps).await;
    assert_eq!(end.state, "TASK_KILLED", "{end:?}");
    assert!(!alive(keeps_pid));
    assert!(mgr.images().check().is_empty());
    mgr.shutdown().await;
}
