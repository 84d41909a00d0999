//! Health checks on real containers: a passing check makes the task healthy, a failing one
//! makes it unhealthy and gets it killed. Run as root.

mod common;

use common::*;
use tepui_proto::agent::HealthCheckDef;

fn command_check(command: &str, max_failures: u32) -> HealthCheckDef {
    HealthCheckDef {
        protocol: "COMMAND".into(),
        path: None,
        port: None,
        command: Some(command.into()),
        grace_period_ms: 0,
        interval_ms: 200,
        timeout_ms: 5_000,
        max_consecutive_failures: max_failures,
        delay_ms: 0,
    }
}

#[tokio::test]
async fn passing_checks_report_healthy_and_failing_ones_kill_the_task() {
    let fx = Fixture::new();
    let mgr = fx.open().await;
    let mut leader = Leader::new(&mgr);

    let good = task_id("healthy");
    let mut l = launch(&good, None, &["/bin/sleep", "100"]);
    l.def.health_checks.push(command_check("true", 3));
    mgr.launch(l);
    let healthy = leader.wait_update(&good, "healthy", |u| u.healthy == Some(true)).await;
    assert_eq!(healthy.state, "TASK_RUNNING");
    assert_eq!(
        healthy.reason.as_deref(),
        Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED")
    );

    let bad = task_id("unhealthy");
    let mut l = launch(&bad, None, &["/bin/sleep", "100"]);
    l.def.health_checks.push(command_check("exit 3", 2));
    mgr.launch(l);
    let end = leader.wait_end(&bad).await;
    assert_eq!(end.state, "TASK_KILLED", "{end:?}");
    let unhealthy = leader
        .wait_update(&bad, "unhealthy", |u| u.healthy == Some(false))
        .await;
    assert!(
        unhealthy.message.contains("failed 2 times in a row") && unhealthy.message.contains("exited with 3"),
        "{unhealthy:?}"
    );
    assert!(
        leader.seen.iter().all(|u| u.task_id != bad || u.healthy != Some(true)),
        "never healthy"
    );

    mgr.kill(&good, None);
    assert_eq!(leader.wait_end(&good).await.state, "TASK_KILLED");
}
