//! The services framework's loop on the leader: subscribe to `Master`, match offers to
//! instances waiting in the launch queue, and on every tick bring each app to its definition
//! and each deployment forward.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tepui_allocator::{Filters, Ranges, Resource, ResourceName, Resources, Scalar};
use tepui_services::app::{HealthCheckProtocol, NetworkMode};
use tepui_services::backoff::LaunchQueue;
use tepui_services::constraints::AgentInfo;
use tepui_services::deployment::ActionKind;
use tepui_services::events::{
    CurrentStep, DeploymentResultEvent, DeploymentStepEvent, Event, HealthStatusChangedEvent, StatusUpdateEvent,
};
use tepui_services::fit::{self, OfferSummary, RoleResources};
use tepui_services::time::format_timestamp;
use tepui_services::unreachable::UnreachableAction;
use tepui_services::why::OfferStats;
use tepui_services::{plan, AppSpec, Deployment, PathId, PodSpec};
use tepui_state::{Command, HealthCheckDef, PortDef, State, TaskDef, TaskState};

use crate::{
    apps, deployments, pods, QueueItem, Services, TaskIndex, FRAMEWORK_ID, LABEL_APP, LABEL_POD, LABEL_VERSION,
};
use tepui_master::{ExecutorSpec, FrameworkSpec, LaunchSpec, OfferView, Operation, SchedulerEvent, StatusView};
use tepui_node::drivers::{Activation, Driver, Outcome};
use tepui_node::now_ms;

/// Offers that fit nothing are declined for this long; short, so new demand is served soon.
const DECLINE_SECS: f64 = 2.0;
/// Mesos' default grace period when an app sets none.
const DEFAULT_KILL_GRACE_MS: u64 = 3_000;

/// The leader's launch queue and offer statistics.
#[derive(Default)]
pub(crate) struct Queue {
    launch: LaunchQueue,
    stats: BTreeMap<PathId, OfferStats>,
    /// Ended tasks already counted (as failures, or not).
    counted: HashSet<String>,
    revived: Option<bool>,
}

impl Queue {
    pub(crate) fn pod_waiting(&self, pod: &PathId) -> u32 {
        self.launch.entry(pod).map(|e| e.count).unwrap_or(0)
    }

    pub(crate) fn reset_delay(&mut self, app: &PathId) -> bool {
        self.launch.reset_delay(app)
    }

    pub(crate) fn items(&self, s: &State, now: u64) -> Vec<QueueItem> {
        let specs: BTreeMap<PathId, AppSpec> = apps(s).into_iter().map(|a| (a.id.clone(), a)).collect();
        self.launch
            .waiting()
            .filter(|e| e.count > 0)
            .filter_map(|e| {
                let spec = specs.get(&e.app)?.clone();
                let stats = self.stats.get(&e.app).cloned().unwrap_or_default();
                Some(QueueItem {
                    count: e.count,
                    delay: self.launch.delay(&e.app, now),
                    summary: stats.summary(),
                    explanation: stats.explain(),
                    app: spec,
                })
            })
            .collect()
    }
}

fn spec() -> FrameworkSpec {
    FrameworkSpec {
        id: Some(FRAMEWORK_ID.to_string()),
        name: "tepui-services".into(),
        user: "root".into(),
        roles: vec!["*".into()],
        capabilities: vec!["PARTITION_AWARE".into(), "MULTI_ROLE".into()],
        // Its own: it comes back with every leader.
        failover_timeout_ms: 7 * 24 * 3600 * 1000,
        builtin: true,
        ..FrameworkSpec::default()
    }
}

/// The services framework on the leader: subscribes to the master (its offers and updates
/// are handled as they arrive, by a task of their own), and brings every app towards its
/// definition and every deployment forward whenever the state changes, the API or an event
/// asks, or a deadline (a deployment's, an unreachable instance's) comes.
pub(crate) struct ServicesDriver {
    svc: Services,
    /// The task that handles the subscription's events; it ends with the subscription.
    events: Option<tokio::task::JoinHandle<()>>,
}

impl ServicesDriver {
    pub(crate) fn new(svc: Services) -> ServicesDriver {
        ServicesDriver { svc, events: None }
    }

    /// Subscribes unless subscribed; `false`: not yet possible (a cluster being bootstrapped),
    /// and the next change of the state wakes the driver again.
    async fn subscribe(&mut self) -> Result<bool, String> {
        if self.events.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(true);
        }
        let sub = match self.svc.master().subscribe(spec()).await {
            Ok(sub) => sub,
            Err(e) if e.code == "not_initialized" => return Ok(false),
            Err(e) => return Err(format!("cannot subscribe yet: {e}")),
        };
        tracing::info!("services framework subscribed");
        self.svc.queue().revived = None;
        let svc = self.svc.clone();
        let mut events = sub.events;
        self.events = Some(tokio::spawn(async move {
            while let Some(first) = events.recv().await {
                // Whatever else is queued goes with it: the updates' acknowledgements are
                // committed in one write.
                let mut batch = vec![first];
                while let Some(e) = events.try_recv() {
                    batch.push(e);
                }
                on_events(&svc, batch).await;
            }
            tracing::info!("services framework lost its subscription");
            // The driver subscribes again (if it still leads).
            svc.kick();
        }));
        Ok(true)
    }
}

impl Driver for ServicesDriver {
    async fn activate(&mut self, _why: Activation) -> Outcome {
        if !self.subscribe().await? {
            return Ok(None);
        }
        let next = reconcile(&self.svc).await;
        Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1))))
    }

    fn step_down(&mut self) {
        if let Some(events) = self.events.take() {
            events.abort();
        }
    }
}

async fn on_events(svc: &Services, events: Vec<SchedulerEvent>) {
    let mut acks = vec![];
    let mut updates = 0;
    for e in events {
        match e {
            SchedulerEvent::Offers(offers) => {
                let _turn = svc.shared.turn.lock().await;
                on_offers(svc, offers).await
            }
            SchedulerEvent::Update(status) => {
                if let Some(uuid) = &status.uuid {
                    acks.push((status.task_id.clone(), uuid.clone()));
                }
                on_update(svc, status);
                updates += 1;
            }
            SchedulerEvent::Error { message } => tracing::warn!(%message, "services framework error"),
            _ => {}
        }
    }
    for (task, e) in svc.master().acknowledge_all(FRAMEWORK_ID, &acks).await {
        tracing::debug!(%task, error = %e, "acknowledgement not recorded");
    }
    if updates > 0 {
        svc.kick();
    }
}

/// Marathon's events for a status update.
fn on_update(svc: &Services, status: StatusView) {
    let event = svc.node().read(|s| {
        let t = s.tasks.get(&status.task_id)?;
        let app = PathId::parse(t.labels.get(LABEL_APP)?).ok()?;
        let host = s.nodes.get(&t.agent_id).map(|n| n.name.clone()).unwrap_or_default();
        let version = t.labels.get(LABEL_VERSION).cloned().unwrap_or_default();
        let now = format_timestamp(now_ms());
        let mut events = vec![Event::StatusUpdate(StatusUpdateEvent {
            timestamp: now.clone(),
            slave_id: t.agent_id.to_string(),
            task_id: t.id.clone(),
            task_status: status.state.as_str().to_string(),
            message: status.message.clone(),
            app_id: app.clone(),
            host,
            ip_addresses: vec![],
            ports: t.def.ports.iter().map(|p| p.host_port).collect(),
            version: version.clone(),
        })];
        if let (Some(alive), Some(TaskState::TaskRunning)) = (status.healthy, Some(status.state)) {
            events.push(Event::HealthStatusChanged(HealthStatusChangedEvent {
                timestamp: now,
                app_id: app,
                instance_id: t.id.clone(),
                task_id: Some(t.id.clone()),
                version,
                alive,
            }));
        }
        Some(events)
    });
    for e in event.into_iter().flatten() {
        svc.emit(e);
    }
}

/// One offer as the services scheduler sees it.
fn summary(s: &State, o: &OfferView) -> OfferSummary {
    let attributes = s
        .nodes
        .get(&o.agent_id)
        .and_then(|n| n.agent.as_ref())
        .map(|a| a.attributes.clone())
        .unwrap_or_default();
    let r = &o.resources;
    let ports: Vec<(u16, u16)> = r
        .iter()
        .filter(|e| e.name == ResourceName::PORTS)
        .flat_map(|e| match &e.value {
            tepui_allocator::Value::Ranges(rg) => rg.pairs().to_vec(),
            _ => vec![],
        })
        .filter_map(|(lo, hi)| Some((u16::try_from(lo).ok()?, u16::try_from(hi).ok()?)))
        .collect();
    OfferSummary {
        agent: AgentInfo {
            id: o.agent_id.to_string(),
            hostname: o.hostname.clone(),
            attributes,
        },
        resources: vec![RoleResources {
            role: o.role.as_str().to_string(),
            cpus: r.scalar_sum(&ResourceName::CPUS).as_f64(),
            mem: r.scalar_sum(&ResourceName::MEM).as_f64(),
            disk: r.scalar_sum(&ResourceName::DISK).as_f64(),
            gpus: r.scalar_sum(&ResourceName::GPUS).as_f64() as u32,
            ports,
        }],
        maintenance: false,
    }
}

/// Takes what one instance uses out of an offer summary.
fn deduct(summary: &mut OfferSummary, spec: &AppSpec, host_ports: &[u16]) {
    deduct_amounts(summary, spec.cpus, spec.mem, spec.disk, spec.gpus, host_ports)
}

fn deduct_amounts(summary: &mut OfferSummary, cpus: f64, mem: f64, disk: f64, gpus: u32, host_ports: &[u16]) {
    if let Some(r) = summary.resources.first_mut() {
        r.cpus -= cpus;
        r.mem -= mem;
        r.disk -= disk;
        r.gpus = r.gpus.saturating_sub(gpus);
        for p in host_ports {
            let mut next = vec![];
            for &(lo, hi) in &r.ports {
                if *p < lo || *p > hi {
                    next.push((lo, hi));
                    continue;
                }
                if lo < *p {
                    next.push((lo, p - 1));
                }
                if *p < hi {
                    next.push((p + 1, hi));
                }
            }
            r.ports = next;
        }
    }
}

async fn on_offers(svc: &Services, offers: Vec<OfferView>) {
    let now = now_ms();
    for offer in offers {
        let (launches, groups) = svc.node().read(|s| {
            let mut q = svc.queue();
            match_offer_all(&mut q, s, &offer, now)
        });
        let result = if launches.is_empty() && groups.is_empty() {
            svc.master().decline(
                FRAMEWORK_ID,
                std::slice::from_ref(&offer.id),
                Filters::refuse_seconds(DECLINE_SECS),
            )
        } else {
            tracing::info!(
                agent = offer.agent_id,
                count = launches.len(),
                pod_instances = groups.len(),
                "launching instances"
            );
            let mut ops = vec![];
            if !launches.is_empty() {
                ops.push(Operation::Launch(launches));
            }
            ops.extend(groups);
            svc.master()
                .accept(
                    FRAMEWORK_ID,
                    std::slice::from_ref(&offer.id),
                    ops,
                    Filters::refuse_seconds(DECLINE_SECS),
                )
                .await
        };
        if let Err(e) = result {
            tracing::debug!(offer = %offer.id, error = %e, "offer not answered");
        }
    }
}

/// Packs waiting instances into one offer, app by app, recording why it did not fit.
#[cfg(test)]
fn match_offer(q: &mut Queue, s: &State, offer: &OfferView, now: u64) -> Vec<LaunchSpec> {
    match_offer_all(q, s, offer, now).0
}

/// Packs waiting app instances, then waiting pod instances (a task group each), into one offer.
fn match_offer_all(q: &mut Queue, s: &State, offer: &OfferView, now: u64) -> (Vec<LaunchSpec>, Vec<Operation>) {
    let index = TaskIndex::new(s);
    let mut summary = summary(s, offer);
    let mut launches = vec![];
    for spec in apps(s) {
        let waiting = q.launch.entry(&spec.id).map(|e| e.count).unwrap_or(0);
        if waiting == 0 || !q.launch.can_launch(&spec.id, now) {
            continue;
        }
        // Only constraints look at where the other instances run.
        let constrained = !spec.constraints.is_empty();
        let mut placed: Vec<AgentInfo> = if constrained {
            index.placed_agents(s, &spec.id)
        } else {
            Vec::new()
        };
        let mut launched = 0;
        while launched < waiting {
            let refs: Vec<&AgentInfo> = placed.iter().collect();
            match fit::evaluate(&spec, &summary, &refs) {
                Ok(f) => {
                    launches.push(launch_spec(&spec, offer.agent_id, &f.host_ports));
                    deduct(&mut summary, &spec, &f.host_ports);
                    if constrained {
                        placed.push(summary.agent.clone());
                    }
                    q.stats
                        .entry(spec.id.clone())
                        .or_default()
                        .record(now, &offer.agent_id.to_string(), vec![]);
                    launched += 1;
                }
                Err(rejections) => {
                    if launched == 0 {
                        q.stats.entry(spec.id.clone()).or_default().record(
                            now,
                            &offer.agent_id.to_string(),
                            rejections,
                        );
                    }
                    break;
                }
            }
        }
        if launched > 0 {
            q.launch.set_waiting(&spec, waiting - launched, now);
        }
    }
    let mut groups = vec![];
    for pod in pods(s) {
        let waiting = q.launch.entry(&pod.id).map(|e| e.count).unwrap_or(0);
        if waiting == 0 || !q.launch.can_launch(&pod.id, now) {
            continue;
        }
        let constrained = !pod.scheduling.placement.constraints.is_empty();
        let mut placed: Vec<AgentInfo> = if constrained {
            pod_agents(s, &index, &pod.id)
        } else {
            Vec::new()
        };
        let mut launched = 0;
        while launched < waiting {
            let refs: Vec<&AgentInfo> = placed.iter().collect();
            match fit::evaluate_pod(&pod, &summary, &refs) {
                Ok(f) => {
                    groups.push(pod_launch(&pod, offer.agent_id, &f.host_ports));
                    let r = pod.instance_resources();
                    deduct_amounts(&mut summary, r.cpus, r.mem, r.disk, r.gpus, &f.host_ports);
                    if constrained {
                        placed.push(summary.agent.clone());
                    }
                    launched += 1;
                }
                Err(rejections) => {
                    if launched == 0 {
                        q.stats
                            .entry(pod.id.clone())
                            .or_default()
                            .record(now, &offer.agent_id.to_string(), rejections);
                    }
                    break;
                }
            }
        }
        if launched > 0 {
            q.launch.set_waiting_pod(&pod, waiting - launched, now);
        }
    }
    (launches, groups)
}

/// The agents of a pod's live instances, one entry per instance, for its constraints.
fn pod_agents(s: &State, index: &TaskIndex, pod: &PathId) -> Vec<AgentInfo> {
    crate::pods::instances_of(index.pod_tasks(pod))
        .iter()
        .filter(|i| i.is_live())
        .filter_map(|i| {
            let n = s.nodes.get(&i.tasks.first()?.agent_id)?;
            Some(AgentInfo {
                id: n.id.to_string(),
                hostname: n.name.clone(),
                attributes: n.agent.as_ref().map(|a| a.attributes.clone()).unwrap_or_default(),
            })
        })
        .collect()
}

/// The environment name of an endpoint (`ENDPOINT_HTTP` for `http`), as Marathon sets it.
fn endpoint_env(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ENDPOINT_{upper}")
}

/// One new instance of `pod` on `agent`: its default executor (the instance's network,
/// ports and executor resources) and a task per container.
fn pod_launch(pod: &PodSpec, agent: u64, host_ports: &[u16]) -> Operation {
    let longest = pod.containers.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let max_base = 128usize.saturating_sub(".instance-".len() + 36 + 1 + longest);
    let base: String = pod
        .id
        .segments()
        .join("_")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    let base = &base[base.len().saturating_sub(max_base)..];
    let instance = format!("{base}.instance-{}", crate::uuid_like());
    let bridge = pod.network_mode() == NetworkMode::Bridge;
    // The instance's ports, in endpoint order: those with a host port get the next one.
    let mut next = host_ports.iter();
    let mut ports = vec![];
    let mut env_ports = BTreeMap::new();
    for (_, e) in pod.endpoints() {
        let host = e.host_port.and_then(|_| next.next().copied());
        if let Some(h) = host {
            ports.push(PortDef {
                name: Some(e.name.clone()),
                host_port: h,
                container_port: e.container_port.filter(|p| *p != 0).unwrap_or(h),
                protocol: if e.protocol.iter().any(|p| p == "udp") {
                    "udp"
                } else {
                    "tcp"
                }
                .into(),
            });
        }
        // What the containers listen on: the container port on a bridge, else the host port.
        let port = if bridge {
            e.container_port.filter(|p| *p != 0).or(host)
        } else {
            host
        };
        if let Some(p) = port {
            env_ports.insert(endpoint_env(&e.name), p.to_string());
        }
    }
    let mut executor_resources = Resources::new();
    let ex = pod.executor_resources;
    executor_resources.push(Resource::scalar(
        ResourceName::CPUS,
        Scalar::from_milli((ex.cpus * 1000.0).round() as u64),
    ));
    executor_resources.push(Resource::scalar(
        ResourceName::MEM,
        Scalar::from_units(ex.mem.ceil() as u64),
    ));
    if ex.disk > 0.0 {
        executor_resources.push(Resource::scalar(
            ResourceName::DISK,
            Scalar::from_units(ex.disk.ceil() as u64),
        ));
    }
    if let Ok(r) = Ranges::from_pairs(host_ports.iter().map(|p| (*p as u64, *p as u64))) {
        if !r.is_empty() {
            executor_resources.push(Resource::ranges(ResourceName::PORTS, r));
        }
    }
    let network = if bridge { "bridge" } else { "host" };
    let executor = ExecutorSpec::default_executor(FRAMEWORK_ID, &instance, executor_resources, network, ports.clone());
    let secret_source = |name: &str| {
        pod.secrets
            .get(name)
            .and_then(|s| tepui_state::normalize_secret_path(&s.source).ok())
    };
    let tasks = pod
        .containers
        .iter()
        .map(|c| {
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            let mut secrets = vec![];
            for (k, v) in pod.environment.iter().chain(&c.environment) {
                match v {
                    tepui_services::EnvValue::Text(t) => {
                        env.insert(k.clone(), t.clone());
                    }
                    tepui_services::EnvValue::Secret { secret } => {
                        env.remove(k);
                        if let Some(source) = secret_source(secret) {
                            secrets.retain(|r: &tepui_state::SecretRef| r.env.as_deref() != Some(k));
                            secrets.push(tepui_state::SecretRef {
                                source,
                                env: Some(k.clone()),
                                file: None,
                            });
                        }
                    }
                }
            }
            env.extend(env_ports.clone());
            env.insert("MARATHON_APP_ID".into(), pod.id.to_string());
            env.insert("MARATHON_APP_VERSION".into(), pod.version.clone());
            env.insert("MESOS_TASK_ID".into(), format!("{instance}.{}", c.name));
            let mut volumes = vec![];
            for m in &c.volume_mounts {
                let Some(v) = pod.volumes.iter().find(|v| v.name == m.name) else {
                    continue;
                };
                match (&v.host, &v.secret) {
                    (Some(host), _) => volumes.push(tepui_state::VolumeDef {
                        source: host.clone(),
                        target: m.mount_path.clone(),
                        read_only: m.read_only,
                    }),
                    (None, Some(secret)) => {
                        if let Some(source) = secret_source(secret) {
                            secrets.push(tepui_state::SecretRef {
                                source,
                                env: None,
                                file: Some(m.mount_path.clone()),
                            });
                        }
                    }
                    // Ephemeral: a directory of the instance's shared sandbox.
                    (None, None) => volumes.push(tepui_state::VolumeDef {
                        source: format!("volumes/{}", v.name),
                        target: m.mount_path.clone(),
                        read_only: m.read_only,
                    }),
                }
            }
            let health_checks = c
                .health_check
                .iter()
                .map(|h| {
                    let endpoint = h
                        .http
                        .as_ref()
                        .map(|x| x.endpoint.as_str())
                        .or(h.tcp.as_ref().map(|x| x.endpoint.as_str()));
                    let port = endpoint.and_then(|name| {
                        ports
                            .iter()
                            .find(|p| p.name.as_deref() == Some(name))
                            .map(|p| p.host_port)
                    });
                    HealthCheckDef {
                        protocol: match (&h.http, &h.tcp) {
                            (Some(x), _) if x.scheme == "HTTPS" => "HTTPS",
                            (Some(_), _) => "HTTP",
                            (None, Some(_)) => "TCP",
                            _ => "COMMAND",
                        }
                        .into(),
                        path: h.http.as_ref().map(|x| x.path.clone()),
                        port,
                        command: h.exec.as_ref().map(|x| match &x.command {
                            tepui_services::pod::MesosCommand::Shell { shell } => shell.clone(),
                            tepui_services::pod::MesosCommand::Argv { argv } => argv.join(" "),
                        }),
                        grace_period_ms: h.grace_period_seconds * 1000,
                        interval_ms: (h.interval_seconds * 1000).max(100),
                        timeout_ms: (h.timeout_seconds * 1000).max(100),
                        max_consecutive_failures: if h.max_consecutive_failures == 0 {
                            u32::MAX
                        } else {
                            h.max_consecutive_failures
                        },
                        delay_ms: h.delay_seconds * 1000,
                    }
                })
                .collect();
            let def = TaskDef {
                image: c.image.as_ref().map(|i| i.id.clone()),
                args: c.exec.as_ref().map(|x| x.command.argv()).unwrap_or_default(),
                env,
                user: c.user.clone().or_else(|| pod.user.clone()),
                cwd: None,
                cpus_milli: (c.resources.cpus * 1000.0).round() as u64,
                mem_mb: c.resources.mem.ceil() as u64,
                disk_mb: c.resources.disk.ceil() as u64,
                pids: None,
                network: network.into(),
                // The instance's ports are its executor's; a container holds none of its own.
                ports: vec![],
                volumes,
                read_only_rootfs: false,
                kill_grace_ms: c
                    .lifecycle
                    .as_ref()
                    .map(|l| (l.kill_grace_period_seconds * 1000.0) as u64)
                    .unwrap_or(DEFAULT_KILL_GRACE_MS),
                health_checks,
                secrets,
            };
            let mut resources = Resources::new();
            resources.push(Resource::scalar(ResourceName::CPUS, Scalar::from_milli(def.cpus_milli)));
            resources.push(Resource::scalar(ResourceName::MEM, Scalar::from_units(def.mem_mb)));
            if def.disk_mb > 0 {
                resources.push(Resource::scalar(ResourceName::DISK, Scalar::from_units(def.disk_mb)));
            }
            if c.resources.gpus > 0 {
                resources.push(Resource::scalar(
                    ResourceName::GPUS,
                    Scalar::from_units(c.resources.gpus as u64),
                ));
            }
            LaunchSpec {
                task_id: format!("{instance}.{}", c.name),
                name: format!("{}.{}", pod.id, c.name),
                agent_id: Some(agent),
                def,
                resources,
                invalid: None,
                labels: BTreeMap::from([
                    (LABEL_POD.to_string(), pod.id.to_string()),
                    (crate::LABEL_INSTANCE.to_string(), instance.clone()),
                    (crate::LABEL_CONTAINER.to_string(), c.name.clone()),
                    (LABEL_VERSION.to_string(), pod.config_version().to_string()),
                    (
                        crate::LABEL_ENDPOINTS.to_string(),
                        c.endpoints
                            .iter()
                            .map(|e| e.name.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
                executor: None,
            }
        })
        .collect();
    Operation::LaunchGroup { executor, tasks }
}

/// What of an app's path goes into its tasks' ids, at most: `.instance-` and a uuid follow.
const MAX_ID_BASE: usize = 128 - ".instance-".len() - 36;

/// An app's host volumes, as its tasks mount them (the agent checks them against its
/// `--allow-host-volume`).
pub(crate) fn host_volumes(spec: &AppSpec) -> Vec<tepui_state::VolumeDef> {
    spec.container
        .iter()
        .flat_map(|c| c.volumes.iter())
        .filter(|v| v.secret.is_none())
        .map(|v| tepui_state::VolumeDef {
            source: v.host_path.clone(),
            target: v.container_path.clone(),
            read_only: v.mode == tepui_services::app::VolumeMode::ReadOnly,
        })
        .collect()
}

/// An app's secrets as its tasks get them: by `env` and by secret volumes, each naming one of
/// the app's `secrets`.
pub(crate) fn secret_refs(spec: &AppSpec) -> Vec<tepui_state::SecretRef> {
    let source = |name: &str| {
        spec.secrets
            .get(name)
            .and_then(|s| tepui_state::normalize_secret_path(&s.source).ok())
    };
    let from_env = spec.env.iter().filter_map(|(k, v)| match v {
        tepui_services::EnvValue::Secret { secret } => Some(tepui_state::SecretRef {
            source: source(secret)?,
            env: Some(k.clone()),
            file: None,
        }),
        tepui_services::EnvValue::Text(_) => None,
    });
    let from_volumes = spec.container.iter().flat_map(|c| c.volumes.iter()).filter_map(|v| {
        Some(tepui_state::SecretRef {
            source: source(v.secret.as_deref()?)?,
            env: None,
            file: Some(v.container_path.clone()),
        })
    });
    from_env.chain(from_volumes).collect()
}
/// The task of one new instance of `spec` on `agent` with these host ports.
fn launch_spec(spec: &AppSpec, agent: u64, host_ports: &[u16]) -> LaunchSpec {
    let base: String = spec
        .id
        .segments()
        .join("_")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    // A task id is at most 128 characters: a deep app path keeps its end, which names it best.
    let base = &base[base.len().saturating_sub(MAX_ID_BASE)..];
    let task_id = format!("{base}.instance-{}", crate::uuid_like());
    let bridge = spec.network_mode() == NetworkMode::Bridge;
    let mut ports = vec![];
    if bridge {
        let mapped = spec.port_mappings().iter().filter(|m| m.host_port.is_some());
        for (m, host) in mapped.zip(host_ports) {
            ports.push(PortDef {
                name: m.name.clone(),
                host_port: *host,
                container_port: m.container_port,
                protocol: protocol(&m.protocol),
            });
        }
    } else {
        for (d, host) in spec.port_definitions.iter().zip(host_ports) {
            ports.push(PortDef {
                name: d.name.clone(),
                host_port: *host,
                container_port: 0,
                protocol: protocol(&d.protocol),
            });
        }
    }
    let mut env: std::collections::BTreeMap<String, String> = spec
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            tepui_services::EnvValue::Text(t) => Some((k.clone(), t.clone())),
            tepui_services::EnvValue::Secret { .. } => None,
        })
        .collect();
    env.insert("MARATHON_APP_ID".into(), spec.id.to_string());
    env.insert("MARATHON_APP_VERSION".into(), spec.version.clone());
    let health_checks = spec
        .health_checks
        .iter()
        .map(|h| HealthCheckDef {
            protocol: match h.protocol {
                HealthCheckProtocol::Http | HealthCheckProtocol::MesosHttp => "HTTP",
                HealthCheckProtocol::Https | HealthCheckProtocol::MesosHttps => "HTTPS",
                HealthCheckProtocol::Tcp | HealthCheckProtocol::MesosTcp => "TCP",
                HealthCheckProtocol::Command => "COMMAND",
            }
            .into(),
            path: h.path.clone(),
            port: h
                .port
                .or_else(|| h.port_index.and_then(|i| host_port_of(spec, host_ports, i as usize))),
            command: h.command.as_ref().map(|c| c.value.clone()),
            grace_period_ms: h.grace_period_seconds * 1000,
            interval_ms: (h.interval_seconds * 1000).max(100),
            timeout_ms: (h.timeout_seconds * 1000).max(100),
            max_consecutive_failures: if h.max_consecutive_failures == 0 {
                u32::MAX
            } else {
                h.max_consecutive_failures
            },
            // Marathon runs HTTP, HTTPS and TCP checks itself from the start; only the checks
            // Mesos runs (MESOS_* and COMMAND) wait `delaySeconds` first.
            delay_ms: match h.protocol {
                HealthCheckProtocol::Http | HealthCheckProtocol::Https | HealthCheckProtocol::Tcp => 0,
                _ => h.delay_seconds * 1000,
            },
        })
        .collect();
    let def = TaskDef {
        image: spec.image().map(str::to_string),
        args: match &spec.cmd {
            Some(cmd) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
            None => spec.args.clone(),
        },
        env,
        user: spec.user.clone(),
        cwd: None,
        cpus_milli: (spec.cpus * 1000.0).round() as u64,
        mem_mb: spec.mem.ceil() as u64,
        disk_mb: spec.disk.ceil() as u64,
        pids: None,
        network: if bridge { "bridge" } else { "host" }.into(),
        ports,
        volumes: host_volumes(spec),
        read_only_rootfs: false,
        kill_grace_ms: spec
            .task_kill_grace_period_seconds
            .map(|s| s * 1000)
            .unwrap_or(DEFAULT_KILL_GRACE_MS),
        health_checks,
        secrets: secret_refs(spec),
    };
    let mut resources = Resources::new();
    resources.push(Resource::scalar(ResourceName::CPUS, Scalar::from_milli(def.cpus_milli)));
    resources.push(Resource::scalar(ResourceName::MEM, Scalar::from_units(def.mem_mb)));
    if def.disk_mb > 0 {
        resources.push(Resource::scalar(ResourceName::DISK, Scalar::from_units(def.disk_mb)));
    }
    if spec.gpus > 0 {
        resources.push(Resource::scalar(
            ResourceName::GPUS,
            Scalar::from_units(spec.gpus as u64),
        ));
    }
    if let Ok(r) = Ranges::from_pairs(host_ports.iter().map(|p| (*p as u64, *p as u64))) {
        if !r.is_empty() {
            resources.push(Resource::ranges(ResourceName::PORTS, r));
        }
    }
    LaunchSpec {
        task_id,
        name: spec.id.to_string(),
        agent_id: Some(agent),
        def,
        resources,
        invalid: None,
        labels: BTreeMap::from([
            (LABEL_APP.to_string(), spec.id.to_string()),
            (LABEL_VERSION.to_string(), spec.config_version().to_string()),
        ]),
        executor: None,
    }
}

/// The host port of the app's port `index` (a port definition, or a port mapping in bridge mode,
/// where only the mappings with a host port have one).
fn host_port_of(spec: &AppSpec, host_ports: &[u16], index: usize) -> Option<u16> {
    if spec.network_mode() != NetworkMode::Bridge {
        return host_ports.get(index).copied();
    }
    let mappings = spec.port_mappings();
    mappings.get(index)?.host_port?;
    let position = mappings[..index].iter().filter(|m| m.host_port.is_some()).count();
    host_ports.get(position).copied()
}

fn protocol(p: &tepui_services::app::Protocol) -> String {
    match p {
        tepui_services::app::Protocol::Udp => "udp",
        _ => "tcp",
    }
    .to_string()
}

/// What one tick decided, to be carried out after the state is read.
#[derive(Default)]
struct Work {
    kill: Vec<String>,
    deployment_updates: Vec<(String, Option<serde_json::Value>)>,
    overdue: Vec<Deployment>,
    events: Vec<Event>,
    waiting: bool,
    /// The next time something changes by time alone (Unix ms): a deployment's deadline, an
    /// unreachable instance turning inactive or expunged, a launch delay running out.
    next: Option<u64>,
}

impl Work {
    fn due_at(&mut self, at: u64) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }
}

/// Brings every app towards its definition and every deployment forward; returns when it
/// must look again even if nothing happens (Unix ms).
async fn reconcile(svc: &Services) -> Option<u64> {
    let _turn = svc.shared.turn.lock().await;
    let now = now_ms();
    let work = svc.node().read(|s| {
        let mut q = svc.queue();
        decide(&mut q, s, now)
    });
    for (id, answer) in work.kill.iter().zip(svc.master().kill_all(&work.kill, None).await) {
        if let Err(e) = answer {
            tracing::debug!(task = %id, error = %e, "could not kill an instance");
        }
    }
    let updates = work
        .deployment_updates
        .iter()
        .map(|(id, plan)| Command::UpdateDeployment {
            id: id.clone(),
            plan: plan.clone(),
        })
        .collect();
    match svc.node().write_batch(updates).await {
        Ok(answers) => {
            for ((id, _), answer) in work.deployment_updates.iter().zip(answers) {
                if let Err(e) = answer {
                    tracing::debug!(deployment = %id, error = %e, "could not record deployment progress");
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not record deployment progress"),
    }
    for d in work.overdue {
        // In the API's turn, and only if no change replaced the deployment meanwhile.
        let _one_at_a_time = svc.shared.changes.lock().await;
        let current = svc.node().read(|s| s.deployments.contains_key(&d.id));
        if !current {
            continue;
        }
        svc.emit(deployment_failed_event(
            &d,
            now,
            "the deployment did not finish before its deadline; rolling back",
        ));
        if let Err(e) = crate::rollback(svc, &d, now).await {
            tracing::warn!(deployment = %d.id, error = %e, "could not roll back an overdue deployment");
        }
    }
    for e in work.events {
        svc.emit(e);
    }
    let mut q = svc.queue();
    if q.revived != Some(work.waiting) {
        q.revived = Some(work.waiting);
        drop(q);
        let r = if work.waiting {
            svc.master().revive(FRAMEWORK_ID, &[])
        } else {
            svc.master().suppress(FRAMEWORK_ID, &[])
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "could not revive or suppress offers");
            svc.queue().revived = None;
        }
    }
    work.next
}

fn decide(q: &mut Queue, s: &State, now: u64) -> Work {
    let mut work = Work::default();
    let index = TaskIndex::new(s);
    let specs = apps(s);
    let known: HashSet<String> = specs.iter().map(|a| a.id.to_string()).collect();
    q.counted.retain(|id| s.tasks.contains_key(id));
    q.launch.tick(now);
    // Whether each app reached its definition, for the deployments' steps below.
    let mut complete: HashMap<&PathId, bool> = HashMap::with_capacity(specs.len());
    for spec in &specs {
        for t in index.tasks(&spec.id) {
            if t.state.is_terminal() && q.counted.insert(t.id.clone()) {
                let failed = matches!(
                    t.state,
                    TaskState::TaskFailed | TaskState::TaskError | TaskState::TaskLost | TaskState::TaskDropped
                ) || (t.state == TaskState::TaskKilled && !t.kill_requested);
                if failed && now.saturating_sub(t.updated_at) < 600_000 {
                    q.launch.record_failure(spec, now);
                }
            }
            if t.state == TaskState::TaskRunning && t.healthy != Some(false) {
                if let Some(since) = t.started_at {
                    q.launch.instance_healthy_since(&spec.id, since, now);
                }
            }
        }
        let current = index.instances(spec);
        let decision = plan::step(spec, &current, now);
        complete.insert(&spec.id, decision.complete);
        q.launch.set_waiting(spec, decision.launch, now);
        for i in &current {
            if let Some(since) = i.unreachable_since {
                match tepui_services::unreachable::decide(&spec.unreachable_strategy, since, now) {
                    UnreachableAction::Wait { inactive_at } => work.due_at(inactive_at),
                    UnreachableAction::Inactive { expunge_at } => work.due_at(expunge_at),
                    UnreachableAction::Expunge => {}
                }
            }
        }
        if let Some(e) = q.launch.entry(&spec.id).filter(|e| e.count > 0 && e.delay_until > now) {
            work.due_at(e.delay_until);
        }
        if decision.launch > 0 {
            work.waiting = true;
        }
        let killing: HashSet<&str> = current
            .iter()
            .filter(|i| i.state == tepui_services::InstanceState::Killing)
            .map(|i| i.id.as_str())
            .collect();
        for id in decision.kill.iter().chain(&decision.expunge) {
            if !killing.contains(id.as_str()) {
                work.kill.push(id.clone());
            }
        }
    }
    // Pods: the same step function over their instances (a task group each).
    let pod_specs = pods(s);
    let known_pods: HashSet<String> = pod_specs.iter().map(|p| p.id.to_string()).collect();
    for spec in &pod_specs {
        let tasks = index.pod_tasks(&spec.id);
        for inst in crate::pods::instances_of(tasks) {
            // An instance fails once, whichever of its containers failed first (the others are
            // killed with it).
            let failed = inst.tasks.iter().any(|t| {
                matches!(
                    t.state,
                    TaskState::TaskFailed | TaskState::TaskError | TaskState::TaskLost | TaskState::TaskDropped
                ) && now.saturating_sub(t.updated_at) < 600_000
            });
            if let Some(first) = inst.tasks.first() {
                if !inst.is_live() && q.counted.insert(first.id.clone()) && failed {
                    q.launch.record_pod_failure(spec, now);
                }
            }
        }
        let current = crate::pods::planner_instances(spec, tasks);
        let decision = plan::step_with(&spec.policy(), &current, now);
        q.launch.set_waiting_pod(spec, decision.launch, now);
        if let Some(e) = q.launch.entry(&spec.id).filter(|e| e.count > 0 && e.delay_until > now) {
            work.due_at(e.delay_until);
        }
        if decision.launch > 0 {
            work.waiting = true;
        }
        for i in &current {
            if let Some(since) = i.unreachable_since {
                match tepui_services::unreachable::decide(&spec.scheduling.unreachable_strategy, since, now) {
                    UnreachableAction::Wait { inactive_at } => work.due_at(inactive_at),
                    UnreachableAction::Inactive { expunge_at } => work.due_at(expunge_at),
                    UnreachableAction::Expunge => {}
                }
            }
        }
        let going: HashSet<&str> = decision
            .kill
            .iter()
            .chain(&decision.expunge)
            .map(String::as_str)
            .collect();
        for inst in crate::pods::instances_of(tasks) {
            if going.contains(inst.id.as_str()) {
                work.kill
                    .extend(inst.live_tasks().filter(|t| !t.kill_requested).map(|t| t.id.clone()));
            } else if inst.is_live() && inst.tasks.iter().any(|t| t.state.is_terminal() || t.kill_requested) {
                // One container down takes its instance down: the others stop too.
                work.kill
                    .extend(inst.live_tasks().filter(|t| !t.kill_requested).map(|t| t.id.clone()));
            }
        }
    }
    // Instances of removed apps and pods stop.
    for t in s.tasks.values() {
        let orphan_pod = t.labels.get(LABEL_POD).map(|p| !known_pods.contains(p));
        let orphan = t.framework_id == FRAMEWORK_ID
            && !t.state.is_terminal()
            && !t.kill_requested
            && match orphan_pod {
                Some(gone) => gone && t.labels.get(LABEL_APP).is_none(),
                None => t.labels.get(LABEL_APP).is_none_or(|a| !known.contains(a)),
            };
        if orphan {
            work.kill.push(t.id.clone());
        }
    }
    let stale: Vec<PathId> = q
        .launch
        .waiting()
        .map(|e| e.app.clone())
        .filter(|a| !known.contains(&a.to_string()) && !known_pods.contains(&a.to_string()))
        .collect();
    for a in stale {
        q.launch.remove(&a);
        q.stats.remove(&a);
    }
    for mut d in deployments(s) {
        work.due_at(d.deadline);
        if d.is_overdue(now) {
            work.overdue.push(d);
            continue;
        }
        let step_done = d
            .current_actions()
            .iter()
            .all(|a| action_done(s, &index, &complete, a.action, &a.app, now));
        if !step_done {
            continue;
        }
        let step = CurrentStep {
            actions: d.current_actions().to_vec(),
        };
        let finished = d.advance();
        work.events
            .push(Event::DeploymentStepSuccess(Box::new(DeploymentStepEvent {
                timestamp: format_timestamp(now),
                plan: d.plan_view(),
                current_step: step,
            })));
        if finished {
            tracing::info!(deployment = %d.id, "deployment finished");
            work.events
                .push(Event::DeploymentSuccess(Box::new(DeploymentResultEvent {
                    timestamp: format_timestamp(now),
                    id: d.id.clone(),
                    plan: Some(d.plan_view()),
                    reason: None,
                })));
            work.deployment_updates.push((d.id.clone(), None));
        } else {
            let plan = serde_json::to_value(&d).expect("deployments serialize");
            work.deployment_updates.push((d.id.clone(), Some(plan)));
        }
    }
    work
}

/// Whether a deployment action has reached its goal (`complete`: whether each app that exists
/// reached its definition).
fn action_done(
    s: &State,
    index: &TaskIndex,
    complete: &HashMap<&PathId, bool>,
    action: ActionKind,
    app: &PathId,
    now: u64,
) -> bool {
    if action.is_pod() {
        let pod = app;
        return match (action, crate::pod(s, pod)) {
            (ActionKind::StartPod, _) => true,
            (ActionKind::StopPod, _) | (_, None) => index.pod_tasks(pod).iter().all(|t| t.state.is_terminal()),
            (_, Some(spec)) => {
                let current = crate::pods::planner_instances(&spec, index.pod_tasks(pod));
                plan::step_with(&spec.policy(), &current, now).complete
            }
        };
    }
    match (action, complete.get(app)) {
        // Marathon's start step only creates the app; scaling it up is the next step.
        (ActionKind::StartApplication, _) => true,
        (ActionKind::StopApplication, _) | (_, None) => index.tasks(app).iter().all(|t| t.state.is_terminal()),
        (_, Some(done)) => *done,
    }
}

/// Marathon's `deployment_failed`: a deployment ended without reaching its goal (its deadline
/// passed, or it was cancelled or replaced).
pub(crate) fn deployment_failed_event(d: &Deployment, now: u64, reason: &str) -> Event {
    Event::DeploymentFailed(Box::new(DeploymentResultEvent {
        timestamp: format_timestamp(now),
        id: d.id.clone(),
        plan: Some(d.plan_view()),
        reason: Some(reason.to_string()),
    }))
}

pub(crate) fn deployment_info_event(d: &Deployment, now: u64) -> Event {
    Event::DeploymentInfo(Box::new(DeploymentStepEvent {
        timestamp: format_timestamp(now),
        plan: d.plan_view(),
        current_step: CurrentStep {
            actions: d.current_actions().to_vec(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use tepui_services::{validate_app, AppDefinition};
    use tepui_state::TaskRecord;

    use super::*;

    fn state(agents: u64) -> State {
        tepui_state::testing::state_with_agents(agents, 1024)
    }

    fn put_app(s: &mut State, json: serde_json::Value, now: u64) -> AppSpec {
        let def: AppDefinition = serde_json::from_value(json).unwrap();
        let mut spec = validate_app(&def, &PathId::root(), now).unwrap();
        spec.stamp(super::super::app(s, &spec.id).as_ref(), now);
        s.apply(
            now,
            &Command::ChangeServices {
                change: tepui_state::ServiceChange {
                    put: vec![(
                        spec.id.to_string(),
                        spec.version.clone(),
                        serde_json::to_value(&spec).unwrap(),
                    )],
                    remove: vec![],
                    deployment: None,
                    cancel: vec![],
                    ..Default::default()
                },
            },
        );
        spec
    }

    fn offer(agent: u64, resources: &str) -> OfferView {
        OfferView {
            id: format!("o{agent}"),
            framework_id: FRAMEWORK_ID.into(),
            agent_id: agent,
            hostname: format!("a{agent}"),
            role: tepui_allocator::Role::default_role(),
            resources: resources.parse().unwrap(),
            attributes: Default::default(),
        }
    }

    /// Records launches as the leader would: tasks in the state, running.
    fn run(s: &mut State, launches: Vec<LaunchSpec>, state: TaskState) {
        for l in launches {
            let mut t = TaskRecord::staging(l.task_id.clone(), l.name.clone(), l.agent_id.unwrap(), l.def.clone(), 1);
            t.state = state;
            t.started_at = Some(1);
            t.framework_id = FRAMEWORK_ID.into();
            t.resources = tepui_master::convert::text(&l.resources);
            t.labels = l.labels.clone();
            s.tasks.insert(t.id.clone(), t);
        }
    }

    #[test]
    fn waiting_instances_are_packed_into_offers_with_their_constraints() {
        let mut s = state(3);
        let spec = put_app(
            &mut s,
            serde_json::json!({"id": "/web", "cmd": "sleep 100", "instances": 3, "cpus": 0.5, "mem": 64,
                "constraints": [["hostname", "UNIQUE"]]}),
            1_000,
        );
        let mut q = Queue::default();
        let work = decide(&mut q, &s, 2_000);
        assert!(work.waiting, "three instances wait");
        assert!(work.kill.is_empty());
        // UNIQUE hostname: one offer takes one instance however big it is.
        let first = match_offer(&mut q, &s, &offer(1, "cpus:2;mem:1024;ports:[31000-31009]"), 2_000);
        assert_eq!(first.len(), 1);
        let l = &first[0];
        assert_eq!(l.labels[LABEL_APP], "/web");
        assert_eq!(l.labels[LABEL_VERSION], spec.config_version());
        assert_eq!(l.def.args, vec!["/bin/sh", "-c", "sleep 100"]);
        assert_eq!(l.def.ports.len(), 1, "one default port");
        assert_eq!(l.resources.to_string(), "cpus:0.5;mem:64;ports:[31000-31000]");
        run(&mut s, first, TaskState::TaskRunning);
        // The same agent again: the constraint refuses it, and says so.
        let again = match_offer(&mut q, &s, &offer(1, "cpus:1.5;mem:960;ports:[31001-31009]"), 2_100);
        assert!(again.is_empty());
        let why = q.stats[&spec.id].explain().unwrap_or_default();
        assert!(why.to_lowercase().contains("constraint"), "{why}");
        let second = match_offer(&mut q, &s, &offer(2, "cpus:2;mem:1024;ports:[31000-31009]"), 2_200);
        let third = match_offer(&mut q, &s, &offer(3, "cpus:2;mem:1024;ports:[31000-31009]"), 2_300);
        assert_eq!((second.len(), third.len()), (1, 1));
        run(&mut s, second, TaskState::TaskRunning);
        run(&mut s, third, TaskState::TaskRunning);
        let work = decide(&mut q, &s, 3_000);
        assert!(!work.waiting, "all three run");
    }

    #[test]
    fn an_app_that_cannot_fit_says_why() {
        let mut s = state(1);
        let spec = put_app(
            &mut s,
            serde_json::json!({"id": "/big", "cmd": "sleep 1", "cpus": 100}),
            1_000,
        );
        let mut q = Queue::default();
        decide(&mut q, &s, 2_000);
        assert!(match_offer(&mut q, &s, &offer(1, "cpus:2;mem:1024;ports:[31000-31009]"), 2_000).is_empty());
        let items = q.items(&s, 2_000);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].app.id, spec.id);
        let why = items[0].explanation.clone().unwrap_or_default();
        assert!(why.contains("cpus"), "{why}");
    }

    #[test]
    fn scaling_down_kills_and_removed_apps_stop() {
        let mut s = state(1);
        put_app(
            &mut s,
            serde_json::json!({"id": "/web", "cmd": "sleep 100", "instances": 2, "cpus": 0.1, "mem": 32}),
            1_000,
        );
        let mut q = Queue::default();
        decide(&mut q, &s, 2_000);
        let l = match_offer(&mut q, &s, &offer(1, "cpus:2;mem:1024;ports:[31000-31009]"), 2_000);
        assert_eq!(l.len(), 2, "both fit on one agent");
        run(&mut s, l, TaskState::TaskRunning);
        put_app(
            &mut s,
            serde_json::json!({"id": "/web", "cmd": "sleep 100", "instances": 1, "cpus": 0.1, "mem": 32}),
            3_000,
        );
        let work = decide(&mut q, &s, 4_000);
        assert_eq!(work.kill.len(), 1);
        s.apply(
            5,
            &Command::ChangeServices {
                change: tepui_state::ServiceChange {
                    put: vec![],
                    remove: vec!["/web".into()],
                    deployment: None,
                    cancel: vec![],
                    ..Default::default()
                },
            },
        );
        let work = decide(&mut q, &s, 5_000);
        assert_eq!(work.kill.len(), 2, "a removed app's instances all stop");
        assert!(q.items(&s, 5_000).is_empty());
    }

    #[test]
    fn task_ids_of_deep_apps_are_ids_the_agents_run() {
        let mut s = state(1);
        let deep = format!("/{}/web", ["group-with-a-long-name"; 6].join("/"));
        let spec = put_app(
            &mut s,
            serde_json::json!({"id": deep, "cmd": "x", "cpus": 0.1, "mem": 16}),
            1_000,
        );
        let l = launch_spec(&spec, 1, &[]);
        assert!(tepui_common::valid_task_id(&l.task_id), "{}", l.task_id);
        assert!(l.task_id.contains("_web.instance-"), "{}", l.task_id);
    }

    #[test]
    fn health_checks_reach_the_instance_port_and_only_mesos_checks_wait() {
        let mut s = state(1);
        let spec = put_app(
            &mut s,
            serde_json::json!({"id": "/web", "cmd": "x", "cpus": 0.1, "mem": 16,
                "portDefinitions": [{"port": 0}, {"port": 0}],
                "healthChecks": [{"protocol": "HTTP", "path": "/h", "portIndex": 1},
                                 {"protocol": "COMMAND", "command": {"value": "true"}}]}),
            1_000,
        );
        let l = launch_spec(&spec, 1, &[31004, 31007]);
        let http = &l.def.health_checks[0];
        assert_eq!(
            (http.protocol.as_str(), http.port, http.delay_ms),
            ("HTTP", Some(31007), 0)
        );
        let command = &l.def.health_checks[1];
        assert_eq!((command.protocol.as_str(), command.delay_ms), ("COMMAND", 15_000));
    }

    #[test]
    fn host_volumes_and_secrets_reach_the_task_definition() {
        let mut s = state(1);
        let spec = put_app(
            &mut s,
            serde_json::json!({"id": "/db", "cmd": "x", "cpus": 0.1, "mem": 16,
                "env": {"PLAIN": "v", "DB_PASSWORD": {"secret": "pw"}},
                "secrets": {"pw": {"source": "/db/password"}},
                "container": {"type": "MESOS", "volumes": [
                    {"containerPath": "/data", "hostPath": "/srv/db", "mode": "RO"},
                    {"containerPath": "pw.txt", "secret": "pw"}]}}),
            1_000,
        );
        let l = launch_spec(&spec, 1, &[]);
        assert_eq!(
            l.def.volumes,
            vec![tepui_state::VolumeDef {
                source: "/srv/db".into(),
                target: "/data".into(),
                read_only: true,
            }]
        );
        assert_eq!(l.def.env.get("PLAIN").map(String::as_str), Some("v"));
        assert!(!l.def.env.contains_key("DB_PASSWORD"), "a secret is no plain variable");
        assert_eq!(
            l.def.secrets,
            vec![
                tepui_state::SecretRef {
                    source: "db/password".into(),
                    env: Some("DB_PASSWORD".into()),
                    file: None,
                },
                tepui_state::SecretRef {
                    source: "db/password".into(),
                    env: None,
                    file: Some("pw.txt".into()),
                },
            ]
        );
    }

    #[test]
    fn a_waiting_pod_instance_is_one_task_group_on_the_default_executor() {
        let mut s = state(1);
        let def: tepui_services::PodDefinition = serde_json::from_value(serde_json::json!({
        "id": "/shop/web", "volumes": [{"name": "data"}],
        "containers": [
            {"name": "server", "exec": {"command": {"shell": "httpd -p $ENDPOINT_HTTP"}},
             "resources": {"cpus": 0.2, "mem": 32}, "endpoints": [{"name": "http", "hostPort": 0}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}],
             "healthCheck": {"http": {"endpoint": "http"}, "intervalSeconds": 2, "timeoutSeconds": 1}},
            {"name": "client", "exec": {"command": {"argv": ["sleep", "100"]}},
             "resources": {"cpus": 0.1, "mem": 16}, "volumeMounts": [{"name": "data", "mountPath": "/in"}]}
        ]}))
        .unwrap();
        let mut pod = tepui_services::validate_pod(&def, &PathId::root(), 1_000).unwrap();
        pod.stamp(None, 1_000);
        s.apply(
            1,
            &Command::ChangeServices {
                change: tepui_state::ServiceChange {
                    put_pods: vec![(
                        pod.id.to_string(),
                        pod.version.clone(),
                        serde_json::to_value(&pod).unwrap(),
                    )],
                    ..Default::default()
                },
            },
        );
        let mut q = Queue::default();
        let work = decide(&mut q, &s, 2_000);
        assert!(work.waiting, "one instance waits");
        // The executor takes Marathon's 10 MB of disk besides the containers.
        let small = match_offer_all(&mut q, &s, &offer(1, "cpus:2;mem:1024;ports:[31000-31009]"), 2_000);
        assert!(small.1.is_empty(), "no disk for the executor");
        let (apps, groups) = match_offer_all(
            &mut q,
            &s,
            &offer(1, "cpus:2;mem:1024;disk:100;ports:[31000-31009]"),
            2_000,
        );
        assert!(apps.is_empty());
        assert_eq!(groups.len(), 1);
        let Operation::LaunchGroup { executor, tasks } = &groups[0] else {
            panic!("a task group");
        };
        assert!(executor.default_executor);
        assert_eq!(executor.def.network, "host");
        assert_eq!(executor.def.ports.len(), 1);
        assert_eq!(
            (executor.def.ports[0].name.as_deref(), executor.def.ports[0].host_port),
            (Some("http"), 31000)
        );
        assert_eq!(
            executor.resources.to_string(),
            "cpus:0.1;mem:32;disk:10;ports:[31000-31000]"
        );
        assert_eq!(tasks.len(), 2);
        let instance = &tasks[0].labels[crate::LABEL_INSTANCE];
        assert_eq!(&executor.executor_id, instance);
        assert!(instance.starts_with("shop_web.instance-"), "{instance}");
        for (t, name) in tasks.iter().zip(["server", "client"]) {
            assert_eq!(t.task_id, format!("{instance}.{name}"));
            assert!(tepui_common::valid_task_id(&t.task_id), "{}", t.task_id);
            assert_eq!(t.labels[LABEL_POD], "/shop/web");
            assert_eq!(t.labels[LABEL_VERSION], pod.config_version());
            assert_eq!(
                t.def.env["ENDPOINT_HTTP"], "31000",
                "every container knows every endpoint"
            );
            assert_eq!(
                t.def.volumes[0].source, "volumes/data",
                "the instance's shared directory"
            );
        }
        assert_eq!(tasks[0].def.args, ["/bin/sh", "-c", "httpd -p $ENDPOINT_HTTP"]);
        assert_eq!(tasks[0].def.health_checks[0].port, Some(31000));
        assert_eq!(tasks[1].def.args, ["sleep", "100"]);
        assert_eq!(tasks[1].labels[crate::LABEL_ENDPOINTS], "");
        assert_eq!(tasks[0].resources.to_string(), "cpus:0.2;mem:32");
        // Launched: nothing else waits.
        let again = match_offer_all(
            &mut q,
            &s,
            &offer(1, "cpus:1;mem:512;disk:90;ports:[31001-31009]"),
            2_100,
        );
        assert!(again.1.is_empty());
    }
}
