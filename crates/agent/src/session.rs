//! The agent's one stream to the leader: find the leader (dial a known server, follow its
//! hint), register with the tasks the agent has, then run two halves until the stream ends:
//!
//! - the reader handles what the leader sends (launch, kill, ack, forget, requests, uploads)
//!   without ever waiting on the outgoing side, so a full outgoing channel cannot stall acks;
//! - the writer sends heartbeats and the status updates that are due (each task's oldest
//!   unacknowledged one, again on every connection and with backoff until acknowledged).
//!
//! Then reconnect with backoff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tepui_proto::agent::{AgentToServer, Resources, ServerToAgent};
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::Envelope;
use tepui_transport::{Identity, NetFilter};
use tokio::sync::{mpsc, watch};
use tonic::Streaming;

use crate::requests::Requests;
use crate::tasks::TaskManager;
use crate::Connection;

pub(crate) fn envelope(m: &AgentToServer) -> Envelope {
    Envelope {
        json: serde_json::to_vec(m).expect("agent messages always serialize"),
    }
}

pub(crate) struct Session {
    /// What the stream's connections present and trust (renewed elsewhere).
    pub tls: tepui_pki::tls::LiveTls,
    /// Where the CAs the leader announces go (the renewal loop follows them).
    pub trust: watch::Sender<Option<tepui_transport::Trust>>,
    pub identity: Identity,
    /// Whether to keep the server list on disk (not for an identity borrowed from a server).
    pub persist: bool,
    pub data_dir: PathBuf,
    pub resources: Resources,
    pub attributes: BTreeMap<String, String>,
    pub http_addr: String,
    pub heartbeat: Duration,
    pub filter: NetFilter,
    pub extra_servers: Vec<String>,
    pub connection: watch::Sender<Connection>,
    pub tasks: TaskManager,
    /// Where the leader's gateway tables go.
    pub gateway: std::sync::Arc<crate::gateway::AgentGateway>,
}

enum Ended {
    /// The server pointed at the leader.
    Redirect(String),
    Failed(String),
}

impl Session {
    pub(crate) async fn run(mut self) {
        let mut hint: Option<String> = None;
        let mut backoff = Duration::from_millis(100);
        let mut next = 0usize;
        loop {
            let mut servers = self.identity.servers.clone();
            for s in &self.extra_servers {
                if !servers.contains(s) {
                    servers.push(s.clone());
                }
            }
            let addr = match hint.take() {
                Some(h) => h,
                None if servers.is_empty() => {
                    tracing::error!("this agent knows no server address; start it with --join ADDR");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                None => {
                    next = (next + 1) % servers.len();
                    servers[next].clone()
                }
            };
            let registrations = self.connection.borrow().registrations;
            match self.connect(&addr).await {
                Ended::Redirect(leader) => {
                    tracing::debug!(from = %addr, to = %leader, "following the leader hint");
                    hint = Some(leader);
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ended::Failed(why) => {
                    self.connection.send_modify(|c| c.leader = None);
                    tracing::debug!(server = %addr, reason = %why, "agent stream ended");
                    // A stream that registered worked: reconnect with short pauses again instead
                    // of the longest pause an earlier outage left behind.
                    if self.connection.borrow().registrations > registrations {
                        backoff = Duration::from_millis(100);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
    }

    async fn connect(&mut self, addr: &str) -> Ended {
        let me = self.identity.node_id;
        if self.filter.is_isolated(me) {
            return Ended::Failed("isolated by the network filter".into());
        }
        let tls = match self.tls.client_config() {
            Ok(t) => t,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut client = ClusterClient::new(tepui_transport::channel(addr, tls));
        let (tx, rx) = mpsc::channel::<Envelope>(16);
        let register = AgentToServer::Register {
            resources: self.resources.clone(),
            attributes: self.attributes.clone(),
            http_addr: self.http_addr.clone(),
            version: crate::VERSION.into(),
            tasks: self.tasks.reports(),
            protocol: Some(tepui_common::version::PROTOCOL),
            min_protocol: Some(tepui_common::version::MIN_PROTOCOL),
        };
        let _ = tx.send(envelope(&register)).await;
        let resp = match client
            .agent_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r,
            Err(status) => {
                if let Some(leader) = status.metadata().get("x-tepui-leader").and_then(|v| v.to_str().ok()) {
                    if !leader.is_empty() && leader != addr {
                        return Ended::Redirect(leader.to_string());
                    }
                }
                return Ended::Failed(tepui_transport::status_message(&status));
            }
        };
        let inbound = resp.into_inner();
        let registered = AtomicBool::new(false);
        let requests = Requests::new(self.tasks.clone(), self.gateway.clone(), tx.clone());
        let writer = write_loop(
            tx,
            self.tasks.clone(),
            self.heartbeat,
            self.filter.clone(),
            me,
            &registered,
        );
        let reader = self.read_loop(addr, inbound, requests, &registered);
        tokio::select! {
            e = reader => e,
            e = writer => e,
        }
    }

    async fn read_loop(
        &mut self,
        addr: &str,
        mut inbound: Streaming<Envelope>,
        mut requests: Requests,
        registered: &AtomicBool,
    ) -> Ended {
        loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ended::Failed("the server closed the stream".into()),
                Err(s) => return Ended::Failed(tepui_transport::status_message(&s)),
            };
            let msg = match serde_json::from_slice::<ServerToAgent>(&msg.json) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable message from the server");
                    continue;
                }
            };
            match msg {
                ServerToAgent::Registered { node_id, servers, dns } => {
                    tracing::info!(node = node_id, leader = %addr, "registered with the leader");
                    self.remember_servers(servers);
                    self.tasks.set_cluster_dns(dns);
                    self.connection.send_modify(|c| {
                        c.leader = Some(addr.to_string());
                        c.registrations += 1;
                    });
                    // What was in flight went with the last stream: send it all again.
                    registered.store(true, Ordering::SeqCst);
                    self.tasks.reconnected();
                }
                ServerToAgent::HeartbeatAck { .. } => {}
                ServerToAgent::Launch { task } => self.tasks.launch(task),
                ServerToAgent::Kill { task_id, grace_ms } => {
                    self.tasks.kill(&task_id, grace_ms.map(Duration::from_millis))
                }
                ServerToAgent::Ack { task_id, uuid } => {
                    self.tasks.ack(&task_id, &uuid);
                }
                ServerToAgent::Forget { task_id } => self.tasks.forget(&task_id),
                ServerToAgent::ShutdownExecutor {
                    framework_id,
                    executor_id,
                } => self.tasks.shutdown_executor(&framework_id, &executor_id),
                ServerToAgent::FrameworkMessage {
                    framework_id,
                    executor_id,
                    b64,
                } => self.tasks.framework_message(&framework_id, &executor_id, &b64),
                ServerToAgent::ExecutorExitAck {
                    framework_id,
                    executor_id,
                } => self.tasks.executor_exit_acked(&framework_id, &executor_id),
                ServerToAgent::Request { req_id, request } => requests.start(req_id, request),
                ServerToAgent::Upload { req_id, b64, last } => requests.upload(req_id, b64, last).await,
                ServerToAgent::Cancel { req_id } => requests.cancel(req_id),
                ServerToAgent::Gateway { table } => self.gateway.update(table),
                ServerToAgent::Trust {
                    ca_bundle_pem,
                    signing_ca_pem,
                } => {
                    self.trust.send_replace(Some(tepui_transport::Trust {
                        ca_bundle_pem,
                        signing_ca_pem,
                        extra_chain_pem: String::new(),
                    }));
                }
            }
        }
    }

    fn remember_servers(&mut self, servers: Vec<String>) {
        if servers.is_empty() || servers == self.identity.servers {
            return;
        }
        self.identity.servers = servers;
        if self.persist {
            if let Err(e) = self.identity.save_meta(&self.data_dir) {
                tracing::warn!(error = %e, "could not save the server list");
            }
        }
    }
}

/// Heartbeats, and status updates once registered.
async fn write_loop(
    tx: mpsc::Sender<Envelope>,
    tasks: TaskManager,
    heartbeat: Duration,
    filter: NetFilter,
    me: u64,
    registered: &AtomicBool,
) -> Ended {
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut executors_told = false;
    loop {
        let is_registered = registered.load(Ordering::SeqCst);
        if is_registered {
            // Executors' ends not acknowledged go again on a new stream, and their messages.
            for event in tasks.executor_events(std::time::Instant::now(), !executors_told) {
                if tx.send(envelope(&AgentToServer::Executor { event })).await.is_err() {
                    return Ended::Failed("the stream closed".into());
                }
            }
            executors_told = true;
            for update in tasks.due_updates(std::time::Instant::now()) {
                if filter.is_isolated(me) {
                    return Ended::Failed("isolated by the network filter".into());
                }
                tracing::debug!(task = %update.task_id, state = %update.state, uuid = %update.uuid, "sending status update");
                if tx.send(envelope(&AgentToServer::Status { update })).await.is_err() {
                    return Ended::Failed("the stream closed".into());
                }
            }
        }
        let next = if is_registered {
            tasks.next_due(std::time::Instant::now())
        } else {
            None
        };
        let resend = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                if filter.is_isolated(me) {
                    return Ended::Failed("isolated by the network filter".into());
                }
                seq += 1;
                let load = tepui_proto::agent::AgentLoad {
                    updates_queued: tasks.updates_queued() as u64,
                    containers: tasks.running_count() as u64,
                };
                if tx.send(envelope(&AgentToServer::Heartbeat { seq, load: Some(load) })).await.is_err() {
                    return Ended::Failed("the stream closed".into());
                }
            }
            _ = tasks.changed() => {}
            _ = resend => {}
        }
    }
}
