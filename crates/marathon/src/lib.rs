//! Long-running services as Marathon runs them, on the leader: a framework built into tepui on
//! [`Master`]'s in-process scheduler interface that keeps every app at its definition, and
//! Marathon's `/v2` REST API over it.
//!
//! The decisions are tepui-services' (`plan::step`, deployments, constraints, backoff); this
//! crate reads apps, deployments and instances from the replicated state, carries the
//! decisions out (launch through offers, kill, commit deployment progress) and publishes
//! Marathon's events. Changes from the API go through [`Services::deploy`], which plans the
//! deployment and commits the apps and the deployment in one command.
//!
//! The leader's work is the `services` driver: it runs when the state changes, when an offer
//! or update arrives, and at the next deadline a deployment or a launch delay keeps.

mod api;
mod pods;
mod runtime;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_master::Master;
use tepui_node::drivers::{Waker, Wakes};
use tepui_node::{now_ms, Error, ErrorKind, Node};
use tepui_services::events::Event;
use tepui_services::{AppSpec, Deployment, Health, Instance, InstanceState, PathId, PodSpec, ValidationErrors};
use tepui_state::{Command, DeploymentRecord, ServiceChange, State, TaskRecord, TaskState};
use tokio::sync::broadcast;

/// The framework id of the services scheduler.
pub const FRAMEWORK_ID: &str = "tepui-services";
/// Labels on an instance's task.
pub const LABEL_APP: &str = "tepui.app";
pub const LABEL_VERSION: &str = "tepui.version";
/// Labels on a pod instance's tasks (one task per container, all of one instance launched as
/// one task group): the pod, the instance, the container.
pub const LABEL_POD: &str = "tepui.pod";
pub const LABEL_INSTANCE: &str = "tepui.instance";
pub const LABEL_CONTAINER: &str = "tepui.container";
/// The endpoints of a pod task's container, comma-separated (its ports are its executor's).
pub const LABEL_ENDPOINTS: &str = "tepui.endpoints";

/// How the services scheduler is set up.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    /// A deployment not done in this long rolls back.
    pub deployment_timeout: Duration,
}

/// An app definition Marathon refuses: 422 with its validation body.
fn invalid_app(errors: ValidationErrors) -> Error {
    let detail = serde_json::to_value(&errors).unwrap_or_default();
    Error::new(ErrorKind::Invalid, "invalid_app", errors.message.clone()).detail(detail)
}

/// A change of apps that a running deployment holds.
fn locked(deployments: Vec<String>) -> Error {
    let ids: Vec<serde_json::Value> = deployments.iter().map(|id| serde_json::json!({ "id": id })).collect();
    Error::conflict(
        "app_locked",
        "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
    )
    .detail(serde_json::json!({ "deployments": ids }))
}

/// What a change started: the deployment that carries it out (none when nothing changes).
#[derive(Clone, Debug)]
pub(crate) struct Started {
    pub deployment_id: Option<String>,
    pub version: String,
}

/// A queued app: instances waiting for offers, and why offers did not fit.
#[derive(Clone, Debug)]
pub(crate) struct QueueItem {
    pub app: AppSpec,
    pub count: u32,
    pub delay: Option<tepui_services::backoff::QueueDelay>,
    pub summary: tepui_services::why::ProcessedOffersSummary,
    pub explanation: Option<String>,
}

struct Shared {
    master: Master,
    config: ServicesConfig,
    events: broadcast::Sender<Event>,
    /// One permit per open `/v2/events` stream.
    event_streams: Arc<tokio::sync::Semaphore>,
    queue: Mutex<runtime::Queue>,
    /// One change at a time: each plans on the state the previous one left (deployment locks,
    /// service ports, partial updates).
    changes: tokio::sync::Mutex<()>,
    /// Wakes the services driver.
    waker: Waker,
    /// The scheduler's turn: an offer is matched and accepted, or the apps are looked at and
    /// acted on, one at a time, each on the state the previous one left. (The planner says how
    /// many instances to launch from the instances it sees; an offer launched meanwhile would
    /// be launched again.)
    turn: tokio::sync::Mutex<()>,
}

/// The services scheduler: its events, the leader's launch queue, and the changes of apps.
/// Cheap to clone.
#[derive(Clone)]
pub struct Services {
    shared: Arc<Shared>,
}

impl Services {
    pub fn new(master: Master, config: ServicesConfig) -> Services {
        Services {
            shared: Arc::new(Shared {
                master,
                config,
                events: broadcast::channel(1024).0,
                event_streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
                queue: Mutex::new(runtime::Queue::default()),
                changes: tokio::sync::Mutex::new(()),
                waker: Waker::default(),
                turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Reserves the framework's id on the master and starts the `services` driver.
    pub fn start(&self) {
        self.master()
            .register_builtin(FRAMEWORK_ID, "remove its apps with `tepui app rm`");
        // Weak: the node holds the collector, and the services hold the node.
        let weak = Arc::downgrade(&self.shared);
        self.node().metrics().register("services", move |enc| {
            if let Some(shared) = weak.upgrade() {
                render_services(enc, &Services { shared });
            }
        });
        self.node().spawn_driver(
            "services",
            runtime::ServicesDriver::new(self.clone()),
            Wakes {
                waker: self.shared.waker.clone(),
                state_changes: true,
            },
        );
    }

    /// Marathon's `/v2` API and `/ping`; they run on the leader, behind the forwarding.
    pub fn routes(&self) -> tepui_auth::Routes {
        api::routes(self.clone())
    }

    pub(crate) fn master(&self) -> &Master {
        &self.shared.master
    }

    pub(crate) fn node(&self) -> &Node {
        self.shared.master.node()
    }

    pub(crate) fn config(&self) -> &ServicesConfig {
        &self.shared.config
    }

    /// Asks the services driver to look at its apps now.
    pub(crate) fn kick(&self) {
        self.shared.waker.wake();
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, runtime::Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every app of the state, decoded.
pub(crate) fn apps(s: &State) -> Vec<AppSpec> {
    s.apps
        .values()
        .filter_map(|a| match serde_json::from_value::<AppSpec>(a.spec.clone()) {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::error!(app = %a.id, error = %e, "stored app does not decode");
                None
            }
        })
        .collect()
}

pub(crate) fn app(s: &State, id: &PathId) -> Option<AppSpec> {
    let record = s.apps.get(&id.to_string())?;
    serde_json::from_value(record.spec.clone()).ok()
}

/// Earlier versions of an app, oldest first, then the current one.
pub(crate) fn versions(s: &State, id: &PathId) -> Vec<(String, AppSpec)> {
    let Some(record) = s.apps.get(&id.to_string()) else {
        return vec![];
    };
    record
        .history
        .iter()
        .chain(std::iter::once(&(record.version.clone(), record.spec.clone())))
        .filter_map(|(v, spec)| Some((v.clone(), serde_json::from_value(spec.clone()).ok()?)))
        .collect()
}

/// Every pod of the state, decoded.
pub(crate) fn pods(s: &State) -> Vec<PodSpec> {
    s.pods
        .values()
        .filter_map(|p| match serde_json::from_value::<PodSpec>(p.spec.clone()) {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::error!(pod = %p.id, error = %e, "stored pod does not decode");
                None
            }
        })
        .collect()
}

pub(crate) fn pod(s: &State, id: &PathId) -> Option<PodSpec> {
    let record = s.pods.get(&id.to_string())?;
    serde_json::from_value(record.spec.clone()).ok()
}

/// Earlier versions of a pod, oldest first, then the current one.
pub(crate) fn pod_versions(s: &State, id: &PathId) -> Vec<(String, PodSpec)> {
    let Some(record) = s.pods.get(&id.to_string()) else {
        return vec![];
    };
    record
        .history
        .iter()
        .chain(std::iter::once(&(record.version.clone(), record.spec.clone())))
        .filter_map(|(v, spec)| Some((v.clone(), serde_json::from_value(spec.clone()).ok()?)))
        .collect()
}

pub(crate) fn deployments(s: &State) -> Vec<Deployment> {
    s.deployments
        .values()
        .filter_map(|d| serde_json::from_value(d.plan.clone()).ok())
        .collect()
}

/// Every app's tasks, from one pass over the state's tasks.
pub(crate) struct TaskIndex<'a> {
    by_app: std::collections::HashMap<&'a str, Vec<&'a TaskRecord>>,
    /// A pod's tasks (every container of every instance).
    by_pod: std::collections::HashMap<&'a str, Vec<&'a TaskRecord>>,
}

impl<'a> TaskIndex<'a> {
    pub(crate) fn new(s: &'a State) -> TaskIndex<'a> {
        let mut by_app: std::collections::HashMap<&str, Vec<&TaskRecord>> = Default::default();
        let mut by_pod: std::collections::HashMap<&str, Vec<&TaskRecord>> = Default::default();
        for t in s.tasks.values().filter(|t| t.framework_id == FRAMEWORK_ID) {
            if let Some(app) = t.labels.get(LABEL_APP) {
                by_app.entry(app.as_str()).or_default().push(t);
            } else if let Some(pod) = t.labels.get(LABEL_POD) {
                by_pod.entry(pod.as_str()).or_default().push(t);
            }
        }
        for tasks in by_app.values_mut().chain(by_pod.values_mut()) {
            tasks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        }
        TaskIndex { by_app, by_pod }
    }

    /// The tasks of a pod's instances (live and ended), oldest first.
    pub(crate) fn pod_tasks(&self, pod: &PathId) -> &[&'a TaskRecord] {
        self.by_pod
            .get(pod.to_string().as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The tasks that are instances of `app` (live and ended), oldest first.
    pub(crate) fn tasks(&self, app: &PathId) -> &[&'a TaskRecord] {
        self.by_app
            .get(app.to_string().as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// An app's live instances as the planner sees them (without their agents: the planner
    /// does not look at them, and copying every agent's attributes on each pass was most of
    /// the pass).
    pub(crate) fn instances(&self, spec: &AppSpec) -> Vec<Instance> {
        self.tasks(&spec.id)
            .iter()
            .filter(|t| !t.state.is_terminal())
            .map(|t| instance(spec, t))
            .collect()
    }

    /// The agents of an app's live instances, one entry per instance, for its placement
    /// constraints.
    pub(crate) fn placed_agents(&self, s: &State, app: &PathId) -> Vec<tepui_services::constraints::AgentInfo> {
        self.tasks(app)
            .iter()
            .filter(|t| !t.state.is_terminal())
            .filter_map(|t| {
                s.nodes
                    .get(&t.agent_id)
                    .map(|n| tepui_services::constraints::AgentInfo {
                        id: n.id.to_string(),
                        hostname: n.name.clone(),
                        attributes: n.agent.as_ref().map(|a| a.attributes.clone()).unwrap_or_default(),
                    })
            })
            .collect()
    }
}

/// The tasks that are instances of `app` (live and ended), oldest first.
pub(crate) fn tasks_of<'a>(s: &'a State, app: &PathId) -> Vec<&'a TaskRecord> {
    TaskIndex::new(s).tasks(app).to_vec()
}

fn instance(spec: &AppSpec, t: &TaskRecord) -> Instance {
    let state = match t.state {
        _ if t.kill_requested => InstanceState::Killing,
        TaskState::TaskStaging => InstanceState::Staged,
        TaskState::TaskStarting => InstanceState::Starting,
        TaskState::TaskUnreachable => InstanceState::Unreachable,
        TaskState::TaskKilling => InstanceState::Killing,
        _ => InstanceState::Running,
    };
    let version = t.labels.get(LABEL_VERSION).cloned().unwrap_or_default();
    // The checks of the version it runs decide whether it has any.
    let has_checks = if version == spec.config_version() {
        !spec.health_checks.is_empty()
    } else {
        !t.def.health_checks.is_empty()
    };
    let health = match (has_checks, t.healthy) {
        (false, _) => Health::NoChecks,
        (true, None) => Health::Pending,
        (true, Some(true)) => Health::Healthy,
        (true, Some(false)) => Health::Unhealthy,
    };
    Instance {
        id: t.id.clone(),
        version,
        state,
        health,
        agent: None,
        started_at: Some(t.created_at),
        unreachable_since: (t.state == TaskState::TaskUnreachable).then_some(t.updated_at),
    }
}

/// `/v2/events` streams open at once on a leader; more are refused with a 503.
pub const MAX_EVENT_STREAMS: usize = 1000;

impl Services {
    /// A receiver of events and its place among the open streams, unless all are taken.
    pub(crate) fn subscribe(&self) -> Option<(broadcast::Receiver<Event>, tokio::sync::OwnedSemaphorePermit)> {
        let permit = self.shared.event_streams.clone().try_acquire_owned().ok()?;
        Some((self.shared.events.subscribe(), permit))
    }

    pub(crate) fn emit(&self, event: Event) {
        let _ = self.shared.events.send(event);
    }

    /// Puts `put` and removes `remove` as one deployment. A deployment that already holds one
    /// of the apps refuses the change unless `force`, which cancels it.
    pub(crate) async fn deploy(&self, put: Vec<AppSpec>, remove: Vec<PathId>, force: bool) -> Result<Started, Error> {
        self.change(put, remove, force, false).await
    }

    /// Replaces every instance of an app by a rolling upgrade: `restarted` is the app with a
    /// new configuration version (`AppSpec::restarted`), kept as it is.
    pub(crate) async fn restart(&self, restarted: AppSpec, force: bool) -> Result<Started, Error> {
        self.change(vec![restarted], vec![], force, true).await
    }

    /// Like [`Services::deploy`], with the apps to put computed from the state inside the
    /// change's turn, so a partial update cannot lose another one made at the same time.
    pub(crate) async fn deploy_from<E: From<Error>>(
        &self,
        force: bool,
        compute: impl FnOnce(&State) -> Result<Vec<AppSpec>, E>,
    ) -> Result<Started, E> {
        self.change_from(force, |s| Ok((compute(s)?, vec![]))).await
    }

    /// Like [`Services::deploy_from`], with apps to remove too (a group's update or delete).
    pub(crate) async fn change_from<E: From<Error>>(
        &self,
        force: bool,
        compute: impl FnOnce(&State) -> Result<(Vec<AppSpec>, Vec<PathId>), E>,
    ) -> Result<Started, E> {
        let _one_at_a_time = self.shared.changes.lock().await;
        self.node().linearize().await.map_err(Error::from)?;
        let (put, remove) = self.node().read(compute)?;
        Ok(self.change_now(put, remove, force, false).await?)
    }

    async fn change(
        &self,
        put: Vec<AppSpec>,
        remove: Vec<PathId>,
        force: bool,
        restart: bool,
    ) -> Result<Started, Error> {
        let _one_at_a_time = self.shared.changes.lock().await;
        self.node().linearize().await?;
        self.change_now(put, remove, force, restart).await
    }

    /// A change, in its turn, on a linearized state.
    async fn change_now(
        &self,
        put: Vec<AppSpec>,
        remove: Vec<PathId>,
        force: bool,
        restart: bool,
    ) -> Result<Started, Error> {
        let now = now_ms();
        let timeout = self.config().deployment_timeout.as_millis() as u64;
        let (change, started, deployment, cancelled) = self.node().read(|s| {
            let planned = plan_change(s, put, remove, force, restart, now, timeout)?;
            let cancelled: Vec<Deployment> = deployments(s)
                .into_iter()
                .filter(|d| planned.0.cancel.contains(&d.id))
                .collect();
            Ok::<_, Error>((planned.0, planned.1, planned.2, cancelled))
        })?;
        if change.put.is_empty() && change.remove.is_empty() {
            return Ok(started);
        }
        self.node().write(Command::ChangeServices { change }).await?;
        for d in &cancelled {
            let reason = "a forced change of its apps replaced it";
            self.emit(runtime::deployment_failed_event(d, now, reason));
        }
        if let Some(d) = deployment {
            tracing::info!(deployment = %d.id, apps = ?d.affected_apps, "deployment started");
            self.emit(runtime::deployment_info_event(&d, now));
        }
        self.kick();
        Ok(started)
    }

    /// Puts a pod (`put`) or removes one (`remove`) as one deployment. A deployment that holds
    /// the pod refuses the change unless `force`, which cancels it. `put` is stamped here: a
    /// change of its instance count alone keeps the running instances.
    pub(crate) async fn deploy_pod(
        &self,
        put: Option<PodSpec>,
        remove: Option<PathId>,
        force: bool,
    ) -> Result<Started, Error> {
        let _one_at_a_time = self.shared.changes.lock().await;
        self.node().linearize().await?;
        let now = now_ms();
        let timeout = self.config().deployment_timeout.as_millis() as u64;
        let (change, started, deployment, cancelled) = self.node().read(|s| {
            let (change, started, deployment) = plan_pod_change(s, put, remove, force, now, timeout)?;
            let cancelled: Vec<Deployment> = deployments(s)
                .into_iter()
                .filter(|d| change.cancel.contains(&d.id))
                .collect();
            Ok::<_, Error>((change, started, deployment, cancelled))
        })?;
        if change.put_pods.is_empty() && change.remove_pods.is_empty() {
            return Ok(started);
        }
        self.node().write(Command::ChangeServices { change }).await?;
        for d in &cancelled {
            self.emit(runtime::deployment_failed_event(
                d,
                now,
                "a forced change of its pod replaced it",
            ));
        }
        if let Some(d) = deployment {
            tracing::info!(deployment = %d.id, pods = ?d.affected_pods, "deployment started");
            self.emit(runtime::deployment_info_event(&d, now));
        }
        self.kick();
        Ok(started)
    }

    /// Ends a deployment: rolled back (its apps back to what they were), or with `force` just
    /// dropped, leaving the apps as they are now.
    pub(crate) async fn cancel_deployment(&self, id: &str, force: bool) -> Result<Option<Started>, Error> {
        let _one_at_a_time = self.shared.changes.lock().await;
        self.node().linearize().await?;
        let d = self
            .node()
            .read(|s| deployments(s).into_iter().find(|d| d.id == id))
            .ok_or_else(|| Error::not_found("unknown_deployment", format!("DeploymentPlan {id} does not exist")))?;
        let now = now_ms();
        if force {
            self.node()
                .write(Command::UpdateDeployment {
                    id: id.to_string(),
                    plan: None,
                })
                .await?;
            self.emit(runtime::deployment_failed_event(&d, now, "cancelled with force"));
            return Ok(None);
        }
        let started = rollback(self, &d, now).await?;
        self.emit(runtime::deployment_failed_event(&d, now, "cancelled; rolling back"));
        self.kick();
        Ok(Some(started))
    }

    /// How many instances of a pod wait to be launched.
    pub(crate) fn pod_waiting(&self, pod: &PathId) -> u32 {
        self.queue().pod_waiting(pod)
    }

    /// Resets an app's launch delay (`DELETE /v2/queue/{id}/delay`).
    pub(crate) fn reset_delay(&self, app: &PathId) -> bool {
        self.queue().reset_delay(app)
    }

    pub(crate) fn queue_items(&self, s: &State) -> Vec<QueueItem> {
        self.queue().items(s, now_ms())
    }
}

/// The commit and the deployment for a change, decided on one view of the state.
fn plan_change(
    s: &State,
    put: Vec<AppSpec>,
    remove: Vec<PathId>,
    force: bool,
    restart: bool,
    now: u64,
    timeout_ms: u64,
) -> Result<(ServiceChange, Started, Option<Deployment>), Error> {
    let current: BTreeMap<PathId, AppSpec> = apps(s).into_iter().map(|a| (a.id.clone(), a)).collect();
    for id in &remove {
        if !current.contains_key(id) {
            return Err(Error::not_found("unknown_app", format!("App '{id}' does not exist")));
        }
    }
    let mut target = current.clone();
    let mut touched = vec![];
    for mut spec in put {
        // A restart carries its own new configuration version; stamping would keep the old one.
        if !restart {
            spec.stamp(current.get(&spec.id), now);
        }
        touched.push(spec.id.clone());
        target.insert(spec.id.clone(), spec);
    }
    for id in &remove {
        target.remove(id);
        touched.push(id.clone());
    }
    let mut changed: Vec<AppSpec> = touched.iter().filter_map(|id| target.get(id).cloned()).collect();
    tepui_services::ports::assign(&mut changed, &target, &current).map_err(invalid_app)?;
    for spec in changed {
        target.insert(spec.id.clone(), spec);
    }
    let target_list: Vec<AppSpec> = target.values().cloned().collect();
    tepui_services::group::dependency_order(&target_list).map_err(invalid_app)?;
    let running = deployments(s);
    let holding: Vec<String> = tepui_services::deployment::conflicting(&running, &touched)
        .into_iter()
        .map(|d| d.id.clone())
        .collect();
    if !holding.is_empty() && !force {
        return Err(locked(holding));
    }
    let original: Vec<AppSpec> = current.values().cloned().collect();
    let id = uuid_like();
    let deployment = Deployment::plan(id.clone(), &original, &target_list, now, timeout_ms).map_err(invalid_app)?;
    let version = deployment.version.clone();
    let mut change = ServiceChange {
        put: vec![],
        remove: remove.iter().map(|r| r.to_string().to_string()).collect(),
        deployment: None,
        cancel: if force { holding } else { vec![] },
        ..ServiceChange::default()
    };
    for id in &touched {
        if let Some(spec) = target.get(id) {
            if current.get(id) != Some(spec) {
                let json = serde_json::to_value(spec).expect("app specs serialize");
                change
                    .put
                    .push((id.to_string().to_string(), spec.version.clone(), json));
            }
        }
    }
    let has_steps = !deployment.steps.is_empty();
    if has_steps {
        change.deployment = Some(DeploymentRecord {
            id: id.clone(),
            plan: serde_json::to_value(&deployment).expect("deployments serialize"),
        });
    }
    let started = Started {
        deployment_id: has_steps.then_some(id),
        version,
    };
    Ok((change, started, has_steps.then_some(deployment)))
}

/// The commit and the deployment for a change of one pod, decided on one view of the state.
fn plan_pod_change(
    s: &State,
    put: Option<PodSpec>,
    remove: Option<PathId>,
    force: bool,
    now: u64,
    timeout_ms: u64,
) -> Result<(ServiceChange, Started, Option<Deployment>), Error> {
    let id = match (&put, &remove) {
        (Some(p), _) => p.id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => return Err(Error::invalid("no_pod", "no pod to change")),
    };
    let current = pod(s, &id);
    if remove.is_some() && current.is_none() {
        return Err(Error::not_found("unknown_pod", format!("Pod '{id}' does not exist")));
    }
    if put.is_some() && s.apps.contains_key(&id.to_string()) {
        return Err(Error::conflict(
            "app_exists",
            format!("An app with id [{id}] already exists."),
        ));
    }
    let target = put.map(|mut p| {
        p.stamp(current.as_ref(), now);
        p
    });
    let running = deployments(s);
    let holding: Vec<String> = tepui_services::deployment::conflicting(&running, std::slice::from_ref(&id))
        .into_iter()
        .map(|d| d.id.clone())
        .collect();
    if !holding.is_empty() && !force {
        return Err(locked(holding));
    }
    let deployment_id = uuid_like();
    let deployment = Deployment::plan_pod(
        deployment_id.clone(),
        current.as_ref(),
        target.as_ref(),
        now,
        timeout_ms,
    );
    let mut change = ServiceChange {
        cancel: if force { holding } else { vec![] },
        ..ServiceChange::default()
    };
    match &target {
        Some(t) if current.as_ref() != Some(t) => {
            let json = serde_json::to_value(t).expect("pod specs serialize");
            change.put_pods.push((id.to_string(), t.version.clone(), json));
        }
        Some(_) => {}
        None => change.remove_pods.push(id.to_string()),
    }
    let has_steps = !deployment.steps.is_empty();
    if has_steps {
        change.deployment = Some(DeploymentRecord {
            id: deployment_id.clone(),
            plan: serde_json::to_value(&deployment).expect("deployments serialize"),
        });
    }
    let started = Started {
        deployment_id: has_steps.then_some(deployment_id),
        version: target
            .as_ref()
            .map(|t| t.version.clone())
            .unwrap_or_else(|| deployment.version.clone()),
    };
    Ok((change, started, has_steps.then_some(deployment)))
}

/// Rolls a deployment back: its apps return to their original definitions, under a new
/// deployment that replaces it.
pub(crate) async fn rollback(svc: &Services, d: &Deployment, now: u64) -> Result<Started, Error> {
    let back = d
        .rollback(uuid_like(), now, svc.config().deployment_timeout.as_millis() as u64)
        .map_err(invalid_app)?;
    let originals: BTreeMap<&PathId, &AppSpec> = d.original.iter().map(|a| (&a.id, a)).collect();
    let mut change = ServiceChange {
        put: vec![],
        remove: vec![],
        deployment: None,
        cancel: vec![d.id.clone()],
        ..ServiceChange::default()
    };
    for id in &d.affected_pods {
        match d.original_pods.iter().find(|p| &p.id == id) {
            Some(spec) => {
                let mut spec = spec.clone();
                spec.version = tepui_services::time::format_timestamp(now);
                let json = serde_json::to_value(&spec).expect("pod specs serialize");
                change.put_pods.push((id.to_string(), spec.version.clone(), json));
            }
            None => change.remove_pods.push(id.to_string()),
        }
    }
    for id in &d.affected_apps {
        match originals.get(id) {
            Some(spec) => {
                let mut spec = (*spec).clone();
                spec.version = tepui_services::time::format_timestamp(now);
                let json = serde_json::to_value(&spec).expect("app specs serialize");
                change
                    .put
                    .push((id.to_string().to_string(), spec.version.clone(), json));
            }
            None => change.remove.push(id.to_string().to_string()),
        }
    }
    if !back.steps.is_empty() {
        change.deployment = Some(DeploymentRecord {
            id: back.id.clone(),
            plan: serde_json::to_value(&back).expect("deployments serialize"),
        });
    }
    svc.node().write(Command::ChangeServices { change }).await?;
    tracing::warn!(deployment = %d.id, rollback = %back.id, "deployment rolled back");
    Ok(Started {
        deployment_id: (!back.steps.is_empty()).then(|| back.id.clone()),
        version: back.version,
    })
}

/// Marathon's ids look like UUIDs; these are random, in that shape.
pub(crate) fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Why a queued app's instances wait, as one label value: its launch delay, the filter step
/// that declined most of the recent offers (Marathon's reason names), no offers at all, or
/// none of these (an offer is being used).
fn waiting_reason(q: &QueueItem) -> &'static str {
    if q.delay.as_ref().is_some_and(|d| !d.overdue) {
        return "backoff";
    }
    let worst = q
        .summary
        .reject_summary_last_offers
        .iter()
        .filter(|s| s.declined > 0)
        .max_by_key(|s| s.declined);
    match worst {
        Some(step) => tepui_services::fit::REASONS
            .iter()
            .find(|r| **r == step.reason)
            .copied()
            .unwrap_or("other"),
        None if q.summary.processed_offers_count == 0 => "no_offers",
        None => "launching",
    }
}

/// Deployments and the launch queue, for `/metrics` (the queue is the leader's).
fn render_services(enc: &mut tepui_metrics::Encoder, svc: &Services) {
    use tepui_metrics::Kind;
    let now = now_ms();
    let (apps, deployments, queue) = svc.node().read(|s| (s.apps.len(), deployments(s), svc.queue_items(s)));
    let oldest = deployments.iter().map(|d| d.started_at).min();
    let overdue = deployments.iter().filter(|d| d.deadline <= now).count();
    enc.single("tepui_services_apps", "Apps defined.", Kind::Gauge, apps as f64);
    enc.single(
        "tepui_services_deployments_in_progress",
        "Deployments under way.",
        Kind::Gauge,
        deployments.len() as f64,
    );
    enc.single(
        "tepui_services_deployment_oldest_age_seconds",
        "How long the oldest deployment under way has run (0 with none).",
        Kind::Gauge,
        oldest.map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0),
    );
    enc.single(
        "tepui_services_deployments_overdue",
        "Deployments past their deadline (about to roll back).",
        Kind::Gauge,
        overdue as f64,
    );
    let mut waiting: BTreeMap<&'static str, u64> = BTreeMap::new();
    for q in &queue {
        *waiting.entry(waiting_reason(q)).or_default() += u64::from(q.count);
    }
    enc.family(
        "tepui_services_instances_waiting",
        "Instances in the launch queue, by why they wait (backoff, no_offers, launching, or the offer filter that declined most).",
        Kind::Gauge,
    );
    for (reason, n) in waiting {
        enc.sample("tepui_services_instances_waiting", &[("reason", reason)], n as f64);
    }
}
