//! Requests as the leader sends them on the agent stream (logs, exec, images), answered on a
//! channel like the stream's, against real containers and a real image store. Run as root.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::Value;
use tepui_agent::{ImageSummary, Requests};
use tepui_proto::agent::{AgentToServer, Reply, Request};
use tepui_proto::Envelope;
use tokio::sync::mpsc;

/// The stream's outgoing side, sorted by request.
struct Replies {
    rx: mpsc::Receiver<Envelope>,
    got: Vec<(u64, Reply)>,
}

impl Replies {
    fn new() -> (mpsc::Sender<Envelope>, Replies) {
        let (tx, rx) = mpsc::channel(16);
        (tx, Replies { rx, got: Vec::new() })
    }

    async fn recv(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(env)) => {
                match serde_json::from_slice::<AgentToServer>(&env.json).unwrap() {
                    AgentToServer::Reply { req_id, reply } => self.got.push((req_id, reply)),
                    other => panic!("not a reply: {other:?}"),
                }
                true
            }
            _ => false,
        }
    }

    fn of(&self, req: u64) -> Vec<&Reply> {
        self.got.iter().filter(|(r, _)| *r == req).map(|(_, x)| x).collect()
    }

    fn ended(&self, req: u64) -> bool {
        self.of(req)
            .iter()
            .any(|r| matches!(r, Reply::Done { .. } | Reply::Error { .. }))
    }

    /// Every reply to `req` up to and including its `Done` or `Error`.
    async fn until_end(&mut self, req: u64) -> Vec<Reply> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.ended(req) {
            assert!(
                self.recv(deadline).await,
                "request {req} did not end; got {:?}",
                self.of(req)
            );
        }
        self.of(req).into_iter().cloned().collect()
    }

    /// The data of `req` so far, decoded.
    fn data(&self, req: u64) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for r in self.of(req) {
            if let Reply::Data { b64: d } = r {
                out.extend(b64.decode(d).unwrap());
            }
        }
        String::from_utf8(out).unwrap()
    }

    async fn wait_data(&mut self, req: u64, want: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.data(req).contains(want) {
            assert!(
                self.recv(deadline).await,
                "no {want:?} for request {req}; got {:?}",
                self.data(req)
            );
        }
    }
}

fn done(replies: &[Reply]) -> &Value {
    match replies.last() {
        Some(Reply::Done { result }) => result,
        other => panic!("expected done, got {other:?}"),
    }
}

fn error(replies: &[Reply]) -> (&str, &str) {
    match replies.last() {
        Some(Reply::Error { code, message }) => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_follow_to_the_end_exec_runs_inside_and_cancel_stops_a_request() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let (tx, mut replies) = Replies::new();
    let mut reqs = Requests::new(
        mgr.clone(),
        std::sync::Arc::new(tepui_agent::gateway::AgentGateway::without_proxy()),
        tx,
    );

    let id = task_id("printer");
    mgr.launch(launch(
        &id,
        Some(BUSYBOX),
        &[
            "sh",
            "-c",
            "echo one; echo two; echo err >&2; until cat /mnt/sandbox/stop 2>/dev/null; do /bin/busybox sleep 0.05; done; echo three",
        ],
    ));
    leader.wait_state(&id, "TASK_RUNNING").await;

    // Following from the start: what is there, then what comes, until the task ends.
    reqs.start(
        1,
        Request::Logs {
            task_id: id.clone(),
            stderr: false,
            tail: None,
            follow: true,
        },
    );
    replies.wait_data(1, "one\ntwo\n").await;

    reqs.start(
        2,
        Request::Logs {
            task_id: id.clone(),
            stderr: false,
            tail: Some(1),
            follow: false,
        },
    );
    replies.until_end(2).await;
    assert_eq!(replies.data(2), "two\n");
    reqs.start(
        3,
        Request::Logs {
            task_id: id.clone(),
            stderr: true,
            tail: None,
            follow: false,
        },
    );
    replies.until_end(3).await;
    assert_eq!(replies.data(3), "err\n");

    reqs.start(
        4,
        Request::Exec {
            task_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /etc/variant; echo bad >&2; exit 3".into(),
            ],
        },
    );
    let r = replies.until_end(4).await;
    let result = done(&r);
    assert_eq!(result["exit_code"], 3, "{result}");
    assert_eq!(result["stdout"], "latest\n");
    assert_eq!(result["stderr"], "bad\n");
    assert_eq!(result["truncated"], false);

    reqs.start(
        5,
        Request::Exec {
            task_id: "nobody".into(),
            cmd: vec!["true".into()],
        },
    );
    assert_eq!(error(&replies.until_end(5).await).0, "unknown_task");
    reqs.start(
        6,
        Request::Logs {
            task_id: "nobody".into(),
            stderr: false,
            tail: None,
            follow: false,
        },
    );
    assert_eq!(error(&replies.until_end(6).await).0, "unknown_task");

    // The image is in use while the task runs.
    reqs.start(
        7,
        Request::RemoveImage {
            reference: BUSYBOX.into(),
        },
    );
    let r = replies.until_end(7).await;
    assert_eq!(error(&r).0, "in_use", "{r:?}");

    // A follow that is cancelled says nothing more.
    let sleeper = task_id("sleeper");
    mgr.launch(launch(
        &sleeper,
        Some(BUSYBOX),
        &["sh", "-c", "echo up; exec /bin/busybox sleep 1000"],
    ));
    leader.wait_state(&sleeper, "TASK_RUNNING").await;
    reqs.start(
        8,
        Request::Logs {
            task_id: sleeper.clone(),
            stderr: false,
            tail: None,
            follow: true,
        },
    );
    replies.wait_data(8, "up\n").await;
    reqs.cancel(8);

    std::fs::write(mgr.runtime().sandbox_dir(&id).join("data/stop"), "").unwrap();
    let r = replies.until_end(1).await;
    assert!(matches!(r.last(), Some(Reply::Done { .. })), "{r:?}");
    assert_eq!(replies.data(1), "one\ntwo\nthree\n");
    leader.wait_end(&id).await;

    // Exec needs a running task.
    reqs.start(
        9,
        Request::Exec {
            task_id: id.clone(),
            cmd: vec!["true".into()],
        },
    );
    assert_eq!(error(&replies.until_end(9).await).0, "task_not_running");

    mgr.kill(&sleeper, None);
    leader.wait_end(&sleeper).await;
    // Only to show that nothing comes: the cancelled follow would have ended with the task.
    reqs.start(10, Request::ListImages);
    replies.until_end(10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while replies
        .recv(tokio::time::Instant::now() + Duration::from_millis(10))
        .await
    {}
    assert!(!replies.ended(8), "a cancelled request ended: {:?}", replies.of(8));

    // Now nothing uses it.
    reqs.start(
        11,
        Request::RemoveImage {
            reference: BUSYBOX.into(),
        },
    );
    let r = replies.until_end(11).await;
    let removed: ImageSummary = serde_json::from_value(done(&r).clone()).unwrap();
    assert!(removed.reference.ends_with("tepui-test/busybox:latest"), "{removed:?}");
    reqs.start(
        12,
        Request::RemoveImage {
            reference: BUSYBOX.into(),
        },
    );
    assert_eq!(error(&replies.until_end(12).await).0, "not_found");
    drop(reqs);
    mgr.shutdown().await;
}

#[tokio::test]
async fn images_are_listed_and_imported_from_uploads() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let (tx, mut replies) = Replies::new();
    let mut reqs = Requests::new(
        mgr.clone(),
        std::sync::Arc::new(tepui_agent::gateway::AgentGateway::without_proxy()),
        tx,
    );

    reqs.start(1, Request::ListImages);
    let r = replies.until_end(1).await;
    let list: Vec<ImageSummary> = serde_json::from_value(done(&r).clone()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].layers, 2);
    assert_eq!(list[0].config.entrypoint, ["/bin/sh", "-c"]);
    assert!(list[0].id.starts_with("sha256:"));

    // A docker save archive, uploaded in chunks.
    let archive = fx.path("imported.tar");
    tepui_image::testimage::build_docker_archive(&archive, "tepui-test/imported:v1").unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    reqs.start(2, Request::ImportImage { reference: None });
    let chunks: Vec<&[u8]> = bytes.chunks(100 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        reqs.upload(2, b64.encode(c), i + 1 == chunks.len()).await;
    }
    let r = replies.until_end(2).await;
    let imported: Vec<ImageSummary> = serde_json::from_value(done(&r).clone()).unwrap();
    assert_eq!(imported.len(), 1, "{imported:?}");
    assert!(
        imported[0].reference.ends_with("tepui-test/imported:v1"),
        "{imported:?}"
    );

    // A task runs from the imported image.
    let mut leader = Leader::new(&mgr);
    let id = task_id("from-import");
    mgr.launch(launch(&id, Some("tepui-test/imported:v1"), &["cat", "/etc/variant"]));
    let end = leader.wait_end(&id).await;
    assert_eq!(end.state, "TASK_FINISHED", "{end:?}");

    // The same archive under a name of the caller's.
    reqs.start(
        6,
        Request::ImportImage {
            reference: Some("tepui-test/renamed:v2".into()),
        },
    );
    for (i, c) in chunks.iter().enumerate() {
        reqs.upload(6, b64.encode(c), i + 1 == chunks.len()).await;
    }
    let renamed: Vec<ImageSummary> = serde_json::from_value(done(&replies.until_end(6).await).clone()).unwrap();
    assert_eq!(renamed.len(), 1, "{renamed:?}");
    assert!(renamed[0].reference.ends_with("tepui-test/renamed:v2"), "{renamed:?}");

    // Garbage is refused, and bad base64 too.
    reqs.start(3, Request::ImportImage { reference: None });
    reqs.upload(3, b64.encode(b"this is not a tar archive"), true).await;
    let r = replies.until_end(3).await;
    assert_eq!(error(&r).0, "bad_archive", "{r:?}");
    reqs.start(4, Request::ImportImage { reference: None });
    reqs.upload(4, "!!!".into(), false).await;
    assert_eq!(error(&replies.until_end(4).await).0, "bad_request");
    // Uploads for nobody are ignored.
    reqs.upload(99, b64.encode(b"x"), true).await;

    reqs.start(5, Request::ListImages);
    let r = replies.until_end(5).await;
    let list: Vec<ImageSummary> = serde_json::from_value(done(&r).clone()).unwrap();
    // busybox, the import and its renamed copy.
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(
        std::fs::read_dir(fx.cfg.data_dir.join("uploads"))
            .unwrap()
            .next()
            .is_none(),
        "upload files are removed"
    );
    drop(reqs);
    mgr.shutdown().await;
}

#[tokio::test]
async fn followers_beyond_the_bound_are_refused_until_one_ends() {
    let fx = Fixture::new();
    let mgr = fx.open_with_busybox().await;
    let mut leader = Leader::new(&mgr);
    let (tx, mut replies) = Replies::new();
    let mut reqs = Requests::new(
        mgr.clone(),
        std::sync::Arc::new(tepui_agent::gateway::AgentGateway::without_proxy()),
        tx,
    );
    let id = task_id("quiet");
    mgr.launch(launch(&id, Some(BUSYBOX), &["sh", "-c", "echo hi; exec sleep 600"]));
    leader.wait_state(&id, "TASK_RUNNING").await;

    // Every place but one is taken by other followers.
    let mut held: Vec<_> = (1..tepui_agent::MAX_LOG_FOLLOWERS)
        .map(|_| mgr.log_follower().expect("a place"))
        .collect();
    let follow = |id: &str| Request::Logs {
        task_id: id.to_string(),
        stderr: false,
        tail: None,
        follow: true,
    };
    reqs.start(1, follow(&id));
    replies.wait_data(1, "hi\n").await;
    reqs.start(2, follow(&id));
    let ended = replies.until_end(2).await;
    let (code, message) = error(&ended);
    assert_eq!(code, "too_many_followers", "{message}");
    // Reading without following still works.
    reqs.start(
        3,
        Request::Logs {
            task_id: id.clone(),
            stderr: false,
            tail: None,
            follow: false,
        },
    );
    done(&replies.until_end(3).await);
    held.pop();
    reqs.start(4, follow(&id));
    replies.wait_data(4, "hi\n").await;
    mgr.kill(&id, None);
    leader.wait_state(&id, "TASK_KILLED").await;
}
