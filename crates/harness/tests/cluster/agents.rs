//! Agents: registration with resources and attributes, lost and back after a network cut,
//! following the leader through a failover.

use std::collections::BTreeMap;
use std::time::Duration;

use tepui_api::{NodeView, ResourcesView};
use tepui_harness::{wait_for, Cluster, ResourceOverrides};

const WAIT: Duration = Duration::from_secs(15);

async fn node(c: &Cluster, via: u64, id: u64) -> Result<NodeView, String> {
    let nodes = c.client(via).nodes().await.map_err(|e| e.to_string())?;
    nodes
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| format!("node {id} is not listed"))
}

async fn status(c: &Cluster, id: u64) -> Result<String, String> {
    let via = c.wait_for_leader().await;
    Ok(node(c, via, id).await?.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_with_their_resources_and_attributes() {
    let c = Cluster::builder()
        .servers(3)
        .agents(2)
        .agent_resources(ResourceOverrides {
            cpus: Some(2.5),
            mem_mb: Some(4096),
            disk_mb: Some(50_000),
            ports: Some((20000, 20999)),
            reserved: None,
        })
        .agent_attributes(|n| {
            BTreeMap::from([
                ("rack".to_string(), format!("r{n}")),
                ("zone".to_string(), "z1".to_string()),
            ])
        })
        .start()
        .await;
    let agents = c.agent_ids();
    assert_eq!(agents.len(), 2);

    // Every server answers the same (followers forward to the leader).
    for server in c.server_ids() {
        let nodes = c.client(server).nodes().await.expect("nodes");
        let listed: Vec<&NodeView> = nodes.iter().filter(|n| n.roles == "agent").collect();
        assert_eq!(listed.iter().map(|n| n.id).collect::<Vec<_>>(), agents, "via {server}");
        for (n, view) in listed.iter().enumerate() {
            assert_eq!(view.status, "ready");
            assert_eq!(view.name, c.agent_name(view.id));
            assert_eq!(
                view.resources,
                Some(ResourcesView {
                    cpus: 2.5,
                    mem_mb: 4096,
                    disk_mb: 50_000,
                    ports: vec!["20000-20999".into()],
                })
            );
            assert_eq!(view.attributes.get("rack"), Some(&format!("r{}", n + 1)));
            assert_eq!(view.attributes.get("zone").map(String::as_str), Some("z1"));
            assert_eq!(view.http_addr, c.agent(view.id).http_addr.to_string());
            assert!(view.version.is_some());
            assert!(
                view.last_heartbeat_ms_ago.is_some_and(|ms| ms < 2000),
                "the leader hears the agent: {view:?}"
            );
        }
        let status = c.client(server).status().await.expect("status");
        assert_eq!((status.agents, status.agents_ready), (2, 2));
    }
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_agent_is_lost_and_ready_again_after_heal() {
    let mut c = Cluster::builder()
        .servers(3)
        .agents(2)
        .agent_timeout(Duration::from_secs(2))
        .start()
        .await;
    let (cut, kept) = (c.agent_ids()[0], c.agent_ids()[1]);

    c.isolate(cut);
    wait_for("the isolated agent to be marked lost", WAIT, async || {
        let s = status(&c, cut).await?;
        if s == "lost" {
            Ok(())
        } else {
            Err(format!("it is {s}"))
        }
    })
    .await;
    assert_eq!(
        status(&c, kept).await.as_deref(),
        Ok("ready"),
        "the other agent is untouched"
    );
    c.check_invariants();

    c.heal();
    wait_for("the agent to be ready again", WAIT, async || {
        let s = status(&c, cut).await?;
        if s == "ready" {
            Ok(())
        } else {
            Err(format!("it is {s}"))
        }
    })
    .await;
    c.wait_for_agents_ready().await;
    assert_eq!(status(&c, kept).await.as_deref(), Ok("ready"));
    c.check_invariants();
    c.shutdown().await;
}

/// A partition leaves the agent's stream open (only its messages are dropped). The leader closes
/// the stream of an agent it marks lost, so that after the heal the agent registers again and
/// reports its tasks for reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_partitioned_from_the_servers_is_lost_and_ready_again_after_heal() {
    let mut c = Cluster::builder().servers(3).agents(1).start().await;
    let agent = c.agent_ids()[0];
    let registrations = c.agent(agent).connection.borrow().registrations;
    let servers = c.server_ids();

    c.partition(&[agent], &servers);
    wait_for("the partitioned agent to be marked lost", WAIT, async || {
        let s = status(&c, agent).await?;
        if s == "lost" {
            Ok(())
        } else {
            Err(format!("it is {s}"))
        }
    })
    .await;

    c.heal();
    // The leader marks the agent ready before its answer to the registration reaches the agent
    // (and a heartbeat on the old stream, between the lost mark and the close, may mark it ready
    // first): wait for both.
    wait_for("the agent to register again and be ready", WAIT, async || {
        let s = status(&c, agent).await?;
        let again = c.agent(agent).connection.borrow().registrations > registrations;
        if s == "ready" && again {
            Ok(())
        } else {
            Err(format!(
                "it is {s}; registered again (the leader closed its stream): {again}"
            ))
        }
    })
    .await;
    c.check_invariants();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_leader_through_a_failover() {
    let mut c = Cluster::builder().servers(3).agents(2).start().await;
    let old = c.wait_for_leader().await;
    let before: BTreeMap<u64, u64> = c
        .agent_ids()
        .into_iter()
        .map(|id| (id, c.agent(id).connection.borrow().registrations))
        .collect();
    for id in c.agent_ids() {
        assert_eq!(
            c.agent(id).connection.borrow().leader.as_deref(),
            Some(c.server_cluster_addr(old)),
            "agent {id} streams to the leader"
        );
    }

    c.kill_server(old).await;
    let new = c.wait_for_leader().await;
    assert_ne!(new, old);
    let new_addr = c.server_cluster_addr(new).to_string();
    wait_for("every agent to register with the new leader", WAIT, async || {
        for (&id, &registrations) in &before {
            let conn = c.agent(id).connection.borrow().clone();
            if conn.leader.as_deref() != Some(new_addr.as_str()) || conn.registrations <= registrations {
                return Err(format!("agent {id}: {conn:?}"));
            }
            let view = node(&c, new, id).await?;
            if view.status != "ready" || view.last_heartbeat_ms_ago.is_none_or(|ms| ms > 1000) {
                return Err(format!("the new leader sees agent {id} as {view:?}"));
            }
        }
        Ok(())
    })
    .await;
    c.check_invariants();
    c.shutdown().await;
}
