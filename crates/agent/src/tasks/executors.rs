//! Frameworks' executors on this agent (Mesos' custom executors): a framework's own program,
//! run in a container of its own, once per framework and executor id, that runs the
//! framework's tasks which name it and speaks Mesos' v1 executor API to the agent
//! (`/api/v1/executor`, see `executor_api`).
//!
//! A task of an executor is a task of the task manager like any other (its launch recorded,
//! its status updates in the durable queue until the leader acknowledges them), except that
//! no container is made for it: the executor gets it as LAUNCH, reports it with UPDATEs, and
//! gets its KILL. An update the leader acknowledged goes back to the executor as ACKNOWLEDGED
//! (its queue uuid is the executor's own uuid, in hex after `x-`, so this survives restarts).
//!
//! Per run of an executor, under `<data_dir>/executors/<dir>/`: `run.json` (who it is, its
//! container, the SHA-256 of its token, its end once it ended) and `container/` (its image's
//! rootfs). The container outlives the agent like every task's: after a restart the agent
//! adopts it and waits [`REREGISTRATION_TIMEOUT`] for the executor to subscribe again.
//!
//! What ends a run, and what its unfinished tasks become, is Mesos' choice: the executor
//! exited (TASK_FAILED, REASON_EXECUTOR_TERMINATED), never subscribed (TASK_FAILED,
//! REASON_EXECUTOR_REGISTRATION_TIMEOUT), did not come back after an agent restart (TASK_GONE,
//! or TASK_LOST for frameworks that are not partition-aware,
//! REASON_EXECUTOR_REREGISTRATION_TIMEOUT), or its container could not start (TASK_FAILED,
//! REASON_CONTAINER_LAUNCH_FAILED). A SHUTDOWN gives it its grace period, then kills it.
//!
//! The default executor of task groups can build on this: its run is a run whose "executor"
//! is the agent itself (no HTTP client), whose LAUNCH_GROUP starts each task of the group as a
//! container in the run's sandbox and namespaces, and whose end rules are those below.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tepui_mesos::executor::{Call, Event, Subscribed};
use tepui_mesos::v1 as mesos;
use tepui_proto::agent::{ExecutorEvent, ExecutorLaunch, SecretValue, StatusUpdate, TaskLaunch};
use tepui_runtime::{Rootfs, TaskState, TaskStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{io_err, lock, updates, Phase, TaskError, TaskManager, CONTAINER_DIR};
use crate::launch::{self, Change};

mod groups;

/// How long a new executor has to subscribe (Mesos' `--executor_registration_timeout`).
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an executor has to subscribe again after the agent restarted.
pub const REREGISTRATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an executor keeps trying to reach its agent (`MESOS_RECOVERY_TIMEOUT`).
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest pause between its attempts (`MESOS_SUBSCRIPTION_BACKOFF_MAX`).
pub const SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// HEARTBEAT events on a subscription.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Events an executor may have unread before its subscription is closed as too slow.
const EVENT_BUFFER: usize = 1024;
/// Framework messages waiting for the leader's stream; more are dropped (no delivery
/// guarantee, as in Mesos).
const OUTBOX_LIMIT: usize = 1024;
/// An exit report not acknowledged goes again this often.
const EXIT_RESEND: Duration = Duration::from_secs(10);

const RUN_FILE: &str = "run.json";
/// In a task's dir: its LAUNCH went to the executor.
const DELIVERED_FILE: &str = "delivered";
/// In a task's dir: the uuids of the executor's updates for it, one per line.
const EXECUTOR_UUIDS_FILE: &str = "executor-uuids";

/// A framework's executor on this agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub framework_id: String,
    pub executor_id: String,
}

impl Key {
    pub(super) fn of_launch(x: &ExecutorLaunch) -> Key {
        Key::of(x)
    }

    fn of(x: &ExecutorLaunch) -> Key {
        Key {
            framework_id: x.framework_id.clone(),
            executor_id: x.executor_id.clone(),
        }
    }

    /// A file name for any ids.
    fn dir_name(&self) -> String {
        let h = Sha256::digest(format!("{}\0{}", self.framework_id, self.executor_id).as_bytes());
        hex::encode(&h[..16])
    }
}

/// Who this agent is, as executors are told (`SUBSCRIBED`'s `agent_info`) and where they
/// reach it (`MESOS_AGENT_ENDPOINT`).
#[derive(Clone, Debug)]
pub struct AgentSelf {
    pub id: u64,
    pub hostname: String,
    pub endpoint: std::net::SocketAddr,
}

/// How a run ended, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Exit {
    exit_status: Option<i32>,
    message: String,
}

/// A run of an executor, on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRecord {
    container_id: String,
    launch: ExecutorLaunch,
    /// SHA-256 (hex) of the token the executor was given.
    token_sha256: String,
    #[serde(default)]
    ended: Option<Exit>,
    /// The leader recorded the end.
    #[serde(default)]
    exit_acked: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    /// Its container is being made.
    Launching,
    /// Its container runs; it has not subscribed yet (or not again, after a restart).
    Registering,
    Running,
    /// Told to shut down.
    Terminating,
    Ended,
}

struct RunTask {
    /// The `TaskInfo` it is given.
    info: serde_json::Value,
    /// LAUNCH went out.
    delivered: bool,
    /// A KILL to pass on (with its grace period) once it can be.
    kill: Option<Option<Duration>>,
}

/// What its unfinished tasks become when the run ends.
#[derive(Clone, Debug)]
struct Termination {
    state: &'static str,
    reason: &'static str,
    message: String,
}

struct Run {
    rec: RunRecord,
    /// A default executor's container, once it runs: its pid (its network namespace is the
    /// group's) and its address on the bridge.
    holder: Option<(i32, Option<std::net::Ipv4Addr>)>,
    /// A default executor is killing its group (one of its tasks failed).
    killing_group: bool,
    dir: PathBuf,
    state: RunState,
    /// The current subscription: its number and its events.
    sub: Option<(u64, mpsc::Sender<Event>)>,
    subscriptions: u64,
    tasks: BTreeMap<String, RunTask>,
    termination: Option<Termination>,
    /// Cancelled when the run ends: its timers stop.
    done: CancellationToken,
    exit_sent: Option<Instant>,
}

impl Run {
    /// Sends an event on the subscription; a subscription that cannot take it is closed.
    fn send(&mut self, event: Event) -> bool {
        let Some((_, tx)) = &self.sub else { return false };
        if tx.try_send(event).is_ok() {
            return true;
        }
        tracing::warn!(framework = %self.rec.launch.framework_id, executor = %self.rec.launch.executor_id, "executor's subscription is gone or too slow; closed");
        self.sub = None;
        false
    }

    fn partition_aware(&self) -> bool {
        self.rec.launch.framework_info["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|c| c["type"] == "PARTITION_AWARE"))
    }

    fn persist(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.rec).map_err(std::io::Error::other)?;
        updates::ensure_dir(&self.dir)?;
        updates::write_atomic(&self.dir.join(RUN_FILE), &bytes)
    }
}

/// Every executor run this agent has, and what goes to the leader about them.
#[derive(Default)]
pub(crate) struct Executors {
    root: PathBuf,
    /// The latest run of each executor.
    runs: HashMap<Key, Run>,
    outbox: std::collections::VecDeque<ExecutorEvent>,
    me: Option<AgentSelf>,
}

impl Executors {
    pub(crate) fn new(root: PathBuf) -> Executors {
        Executors {
            root,
            ..Executors::default()
        }
    }
}

/// A refused executor call: an HTTP status and Mesos' words.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// An open subscription: its events, and a guard that tells the agent when it closes.
pub(crate) struct Subscription {
    pub events: mpsc::Receiver<Event>,
    pub guard: SubscriptionGuard,
}

pub(crate) struct SubscriptionGuard {
    tasks: TaskManager,
    key: Key,
    number: u64,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        let mut ex = lock(&self.tasks.inner.executors);
        if let Some(run) = ex.runs.get_mut(&self.key) {
            if run.sub.as_ref().is_some_and(|(n, _)| *n == self.number) {
                run.sub = None;
                tracing::info!(framework = %self.key.framework_id, executor = %self.key.executor_id, "executor disconnected");
            }
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Mesos' way of writing a duration (`15mins`, `2secs`, `250ms`).
fn mesos_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{}mins", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}secs", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The queue uuid of an executor's update: its own uuid, so that the acknowledgement names it.
fn queue_uuid(executor_uuid: &[u8]) -> String {
    format!("x-{}", hex::encode(executor_uuid))
}

fn executor_uuid(queue_uuid: &str) -> Option<Vec<u8>> {
    hex::decode(queue_uuid.strip_prefix("x-")?).ok()
}

/// The task states an executor may report, as the agent keeps them.
fn known_state(state: &mesos::TaskState) -> Option<&'static str> {
    use mesos::TaskState as S;
    Some(match state {
        S::Starting => "TASK_STARTING",
        S::Running => "TASK_RUNNING",
        S::Killing => "TASK_KILLING",
        S::Finished => "TASK_FINISHED",
        S::Failed => "TASK_FAILED",
        S::Killed => "TASK_KILLED",
        S::Error => "TASK_ERROR",
        S::Lost => "TASK_LOST",
        S::Dropped => "TASK_DROPPED",
        S::Gone => "TASK_GONE",
        _ => return None,
    })
}

fn read_uuids(dir: &Path) -> HashSet<String> {
    std::fs::read_to_string(dir.join(EXECUTOR_UUIDS_FILE))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

impl TaskManager {
    /// Who this agent is, for executors: set once it knows its id and address.
    pub fn set_agent_self(&self, me: AgentSelf) {
        lock(&self.inner.executors).me = Some(me);
    }

    // ---- tasks of executors ----

    /// A task the leader gave an executor: its run is started if it does not run yet, and it
    /// gets the task when it has subscribed.
    pub(super) async fn run_on_executor(&self, id: String) {
        let (launch, killed) = {
            let table = lock(&self.inner.table);
            let Some(e) = table.get(&id) else { return };
            (
                e.launch.clone().expect("launched tasks have a launch"),
                e.kill.is_cancelled(),
            )
        };
        let x = launch.executor.as_deref().expect("a task of an executor");
        if killed {
            let change = Change::new(
                launch::TASK_KILLED,
                Some(launch::REASON_TASK_KILLED_DURING_LAUNCH),
                "killed before its executor got it",
            );
            self.finish(&id, change).await;
            return;
        }
        let key = Key::of(x);
        let start = {
            let mut ex = lock(&self.inner.executors);
            let root = ex.root.clone();
            let task = RunTask {
                info: x.task_info.clone(),
                delivered: false,
                kill: None,
            };
            match ex.runs.get_mut(&key) {
                Some(run) if run.state != RunState::Ended => {
                    run.tasks.insert(id.clone(), task);
                    if run.state == RunState::Running {
                        self.deliver(run);
                    }
                    drop(ex);
                    self.update_run_limits(&key);
                    return;
                }
                _ => {
                    let token = hex::encode(rand::random::<[u8; 32]>());
                    let container_id = format!(
                        "exec.{}.{}",
                        &key.dir_name()[..16],
                        hex::encode(rand::random::<[u8; 4]>())
                    );
                    let run = Run {
                        holder: None,
                        killing_group: false,
                        rec: RunRecord {
                            container_id,
                            launch: x.clone(),
                            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
                            ended: None,
                            exit_acked: false,
                        },
                        dir: root.join(key.dir_name()),
                        state: RunState::Launching,
                        sub: None,
                        subscriptions: 0,
                        tasks: BTreeMap::from([(id.clone(), task)]),
                        termination: None,
                        done: CancellationToken::new(),
                        exit_sent: None,
                    };
                    ex.runs.insert(key.clone(), run);
                    Some(token)
                }
            }
        };
        if let Some(token) = start {
            self.start_run(key, token).await;
        }
    }

    /// Sends LAUNCH for each task of the run not delivered yet, and KILL for kills waiting.
    fn deliver(&self, run: &mut Run) {
        if run.rec.launch.default_executor {
            self.start_group_tasks(run);
            return;
        }
        let ids: Vec<String> = run.tasks.keys().cloned().collect();
        for id in ids {
            let t = run.tasks.get_mut(&id).expect("listed");
            if !t.delivered {
                match serde_json::from_value::<mesos::TaskInfo>(t.info.clone()) {
                    Ok(info) => {
                        if !run.send(Event::launch(info)) {
                            return;
                        }
                        let t = run.tasks.get_mut(&id).expect("listed");
                        t.delivered = true;
                        let dir = self.inner.tasks_dir.join(updates::task_dir_name(&id));
                        if let Err(e) = updates::write_atomic(&dir.join(DELIVERED_FILE), b"") {
                            tracing::warn!(task = %id, error = %e, "cannot record that the executor got the task");
                        }
                        tracing::info!(task = %id, executor = %run.rec.launch.executor_id, "task given to its executor");
                    }
                    Err(e) => tracing::error!(task = %id, error = %e, "the task's TaskInfo does not parse; not given"),
                }
            }
            let t = run.tasks.get_mut(&id).expect("listed");
            if let (true, Some(grace)) = (t.delivered, t.kill.take()) {
                if !run.send(kill_event(&id, grace)) {
                    run.tasks.get_mut(&id).expect("listed").kill = Some(grace);
                    return;
                }
            }
        }
    }

    /// KILL of a task an executor runs: passed on to the executor, or, before it has the
    /// task, answered TASK_KILLED here.
    pub(super) fn kill_executor_task(&self, task_id: &str, key: Key, grace: Option<Duration>) {
        let killed_here = {
            let mut ex = lock(&self.inner.executors);
            match ex.runs.get_mut(&key) {
                Some(run) if run.state != RunState::Ended => match run.tasks.get_mut(task_id) {
                    Some(t) if t.delivered => {
                        if !run.send(kill_event(task_id, grace)) {
                            run.tasks.get_mut(task_id).expect("found").kill = Some(grace);
                        }
                        false
                    }
                    Some(_) => {
                        run.tasks.remove(task_id);
                        true
                    }
                    // Not handed to the run yet (being recorded): `run_on_executor` sees the kill.
                    None => false,
                },
                _ => false,
            }
        };
        if killed_here {
            let me = self.clone();
            let id = task_id.to_string();
            self.spawn(async move {
                let change = Change::new(
                    launch::TASK_KILLED,
                    Some(launch::REASON_TASK_KILLED_DURING_LAUNCH),
                    "killed before its executor got it",
                );
                me.finish(&id, change).await;
            });
        }
    }

    /// The task is forgotten: its executor is asked to kill it, and hears nothing more of it.
    pub(super) fn forget_executor_task(&self, task_id: &str, key: Key) {
        let mut ex = lock(&self.inner.executors);
        if let Some(run) = ex.runs.get_mut(&key) {
            if let Some(t) = run.tasks.remove(task_id) {
                if t.delivered && run.state != RunState::Ended {
                    run.send(kill_event(task_id, None));
                }
            }
        }
    }

    /// The leader committed an executor's update: the executor hears ACKNOWLEDGED.
    pub(super) fn executor_acknowledged(&self, task_id: &str, uuid: &str) {
        let Some(bytes) = executor_uuid(uuid) else { return };
        let Some(key) = self.executor_of(task_id) else { return };
        let mut ex = lock(&self.inner.executors);
        if let Some(run) = ex.runs.get_mut(&key) {
            run.send(Event::acknowledged(
                mesos::TaskId::new(task_id),
                tepui_mesos::Bytes::new(bytes),
            ));
        }
    }

    /// The executor of a task, if one runs it.
    fn executor_of(&self, task_id: &str) -> Option<Key> {
        let table = lock(&self.inner.table);
        let launch = table.get(task_id)?.launch.as_ref()?;
        launch.executor.as_deref().map(Key::of)
    }

    // ---- runs ----

    /// Makes the run's container and follows it.
    async fn start_run(&self, key: Key, token: String) {
        let (rec, dir, me) = {
            let ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get(&key) else { return };
            (run.rec.clone(), run.dir.clone(), ex.me.clone())
        };
        let x = &rec.launch;
        let container_dir = dir.join(CONTAINER_DIR);
        let recorded = {
            let ex = lock(&self.inner.executors);
            ex.runs.get(&key).map(Run::persist)
        };
        if let Some(Err(e)) = recorded {
            let message = format!("the agent cannot record the executor: {e}");
            self.end_run(&key, None, Some(launch_failed(message))).await;
            return;
        }
        let Some(me) = me else {
            self.end_run(
                &key,
                None,
                Some(launch_failed("the agent does not know its address yet".into())),
            )
            .await;
            return;
        };
        tracing::info!(framework = %x.framework_id, executor = %x.executor_id, container = %rec.container_id, default = x.default_executor, "starting an executor");
        let mut def = if x.default_executor {
            groups::holder_def(x)
        } else {
            x.def.clone()
        };
        let rootfs = match &def.image {
            None => None,
            Some(reference) => {
                let image = match self.ensure_image(reference).await {
                    Ok(i) => i,
                    Err(e) => {
                        let message = format!("cannot get image {reference}: {}", tepui_common::error_chain(&e));
                        self.end_run(&key, None, Some(launch_failed(message))).await;
                        return;
                    }
                };
                let cd = container_dir.clone();
                let reference = image.reference.clone();
                match self
                    .blocking(move |images| images.prepare_rootfs(&reference, &cd))
                    .await
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let message = format!(
                            "cannot prepare the executor's rootfs: {}",
                            tepui_common::error_chain(&e)
                        );
                        self.release(&rec.container_id, &container_dir, true).await;
                        self.end_run(&key, None, Some(launch_failed(message))).await;
                        return;
                    }
                }
            }
        };
        let grace = Duration::from_millis(def.kill_grace_ms.max(1));
        let sandbox = self.inner.runtime.sandbox_dir(&rec.container_id).join("data");
        let custom = !x.default_executor;
        for (k, v) in [
            ("MESOS_FRAMEWORK_ID", x.framework_id.clone()),
            ("MESOS_EXECUTOR_ID", x.executor_id.clone()),
            ("MESOS_DIRECTORY", sandbox.display().to_string()),
            ("MESOS_SANDBOX", tepui_runtime::SANDBOX_MOUNT.to_string()),
            ("MESOS_AGENT_ENDPOINT", me.endpoint.to_string()),
            ("MESOS_SLAVE_ID", me.id.to_string()),
            // Every task on tepui survives its agent's restart: executors are checkpointed.
            ("MESOS_CHECKPOINT", "1".to_string()),
            ("MESOS_RECOVERY_TIMEOUT", mesos_duration(RECOVERY_TIMEOUT)),
            (
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                mesos_duration(SUBSCRIPTION_BACKOFF_MAX),
            ),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", mesos_duration(grace)),
        ]
        .into_iter()
        .filter(|_| custom)
        {
            def.env.insert(k.to_string(), v);
        }
        // Its tasks run in its container: it gets their resources too.
        let (cpus, mem) = self.run_limits(&key);
        def.cpus_milli = cpus;
        def.mem_mb = mem;
        let mut container = TaskLaunch::new(rec.container_id.clone(), x.name.clone(), def);
        if custom {
            // The token stays off the disk, as secrets do.
            container.secret_values.push(SecretValue {
                source: "executor-token".into(),
                env: Some(tepui_mesos::executor::TOKEN_ENV.into()),
                file: None,
                value: token,
            });
        }
        let (image_config, root) = match &rootfs {
            Some(r) => (Some(&r.config), Rootfs::Path(r.path.clone())),
            None => (None, Rootfs::Host),
        };
        let spec = match launch::task_spec(&container, image_config, root) {
            Ok(s) => tepui_runtime::TaskSpec {
                resolver: self.inner.resolver.current(),
                kill_grace_period: grace,
                ..s
            },
            Err(message) => {
                self.release(&rec.container_id, &container_dir, rootfs.is_some()).await;
                self.end_run(&key, None, Some(launch_failed(message))).await;
                return;
            }
        };
        let Ok(permit) = self.inner.starting.clone().acquire_owned().await else {
            return;
        };
        let inner = self.inner.clone();
        let rt = tokio::runtime::Handle::current();
        let id = rec.container_id.clone();
        let launched = self
            .inner
            .tracker
            .spawn_blocking(move || {
                let launched = rt.block_on(inner.runtime.launch(&spec));
                drop(permit);
                launched
            })
            .await
            .unwrap_or_else(|e| {
                Err(tepui_runtime::Error::StartFailed {
                    id,
                    message: format!("the launch thread failed: {e}"),
                })
            });
        match launched {
            Ok(handle) if x.default_executor => {
                tracing::info!(executor = %x.executor_id, pid = handle.pid, "default executor running; starting its tasks");
                {
                    let mut ex = lock(&self.inner.executors);
                    let Some(run) = ex.runs.get_mut(&key) else { return };
                    run.holder = Some((handle.pid, handle.ip));
                    if run.state == RunState::Launching {
                        run.state = RunState::Running;
                        self.deliver(run);
                    }
                }
                self.follow_run(
                    key.clone(),
                    rec.container_id.clone(),
                    container_dir.clone(),
                    rootfs.is_some(),
                );
                // Shut down while its container was being made: it ends now.
                self.end_group_if_done(&key);
            }
            Ok(handle) => {
                tracing::info!(executor = %x.executor_id, pid = handle.pid, "executor running; waiting for it to subscribe");
                let done = {
                    let mut ex = lock(&self.inner.executors);
                    let Some(run) = ex.runs.get_mut(&key) else { return };
                    if run.state == RunState::Launching {
                        run.state = RunState::Registering;
                    }
                    run.done.clone()
                };
                self.subscribe_timer(key.clone(), REGISTRATION_TIMEOUT, done, false);
                self.follow_run(key, rec.container_id, container_dir, rootfs.is_some());
            }
            Err(e) => {
                let message = match &e {
                    tepui_runtime::Error::StartFailed { message, .. } => message.clone(),
                    other => tepui_common::error_chain(other),
                };
                self.release(&rec.container_id, &container_dir, rootfs.is_some()).await;
                self.end_run(
                    &key,
                    None,
                    Some(launch_failed(format!("Failed to launch container: {message}"))),
                )
                .await;
            }
        }
    }

    /// The cpus (thousandths) and memory its container gets: its own and its live tasks'.
    fn run_limits(&self, key: &Key) -> (u64, u64) {
        let (own, tasks): (tepui_proto::agent::TaskDef, Vec<String>) = {
            let ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get(key) else {
                return (0, 0);
            };
            if run.rec.launch.default_executor {
                // Its tasks have containers of their own.
                let d = &run.rec.launch.def;
                return (d.cpus_milli, d.mem_mb);
            }
            (run.rec.launch.def.clone(), run.tasks.keys().cloned().collect())
        };
        let table = lock(&self.inner.table);
        let (mut cpus, mut mem) = (own.cpus_milli, own.mem_mb);
        for id in tasks {
            if let Some(l) = table
                .get(&id)
                .filter(|e| e.phase() != Phase::Ended)
                .and_then(|e| e.launch.clone())
            {
                cpus += l.cpus_milli;
                mem += l.mem_mb;
            }
        }
        (cpus, mem)
    }

    /// Gives the run's container its tasks' resources (see [`TaskManager::run_limits`]).
    fn update_run_limits(&self, key: &Key) {
        let container = {
            let ex = lock(&self.inner.executors);
            match ex.runs.get(key) {
                Some(r)
                    if matches!(
                        r.state,
                        RunState::Registering | RunState::Running | RunState::Terminating
                    ) =>
                {
                    r.rec.container_id.clone()
                }
                _ => return,
            }
        };
        let (cpus, mem) = self.run_limits(key);
        let inner = self.inner.clone();
        self.spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                inner.runtime.update_limits(
                    &container,
                    (cpus > 0).then(|| cpus as f64 / 1000.0),
                    (mem > 0).then_some(mem),
                )
            })
            .await;
            if let Ok(Err(e)) = result {
                tracing::debug!(error = %tepui_common::error_chain(&e), "cannot update an executor's limits");
            }
        });
    }

    /// Ends the run if the executor has not subscribed `within` (again, after a restart).
    fn subscribe_timer(&self, key: Key, within: Duration, done: CancellationToken, again: bool) {
        let me = self.clone();
        self.spawn(async move {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tokio::time::sleep(within) => {}
            }
            let container = {
                let mut ex = lock(&me.inner.executors);
                let Some(run) = ex.runs.get_mut(&key) else { return };
                if run.state != RunState::Registering || run.done.is_cancelled() {
                    return;
                }
                let gone = if run.partition_aware() {
                    launch::TASK_GONE
                } else {
                    launch::TASK_LOST
                };
                run.termination = Some(if again {
                    Termination {
                        state: gone,
                        reason: launch::REASON_EXECUTOR_REREGISTRATION_TIMEOUT,
                        message: format!("Executor did not reregister within {}", mesos_duration(within)),
                    }
                } else {
                    Termination {
                        state: launch::TASK_FAILED,
                        reason: launch::REASON_EXECUTOR_REGISTRATION_TIMEOUT,
                        message: format!("Executor did not register within {}", mesos_duration(within)),
                    }
                });
                run.state = RunState::Terminating;
                run.rec.container_id.clone()
            };
            tracing::warn!(framework = %key.framework_id, executor = %key.executor_id, "executor did not subscribe in time; killing it");
            if let Err(e) = me.inner.runtime.kill_within(&container, Some(Duration::ZERO)).await {
                tracing::warn!(container = %container, error = %tepui_common::error_chain(&e), "kill failed");
            }
        });
    }

    /// Waits for the run's container to end, then ends the run.
    fn follow_run(&self, key: Key, container: String, container_dir: PathBuf, has_image: bool) {
        let me = self.clone();
        self.spawn(async move {
            let status = me.inner.runtime.wait(&container).await;
            me.release(&container, &container_dir, has_image).await;
            let exit = match &status {
                Ok(st) => exit_of(st),
                Err(e) => Exit {
                    exit_status: None,
                    message: format!(
                        "lost track of the executor's container: {}",
                        tepui_common::error_chain(e)
                    ),
                },
            };
            me.end_run(&key, Some(&container), None).await;
            me.record_exit(&key, &container, exit);
        });
    }

    /// The run is over: its unfinished tasks end as its termination says (TASK_FAILED,
    /// REASON_EXECUTOR_TERMINATED by default), its subscription closes. `container`: only if
    /// the run is still that container's; `termination` overrides the run's own.
    async fn end_run(&self, key: &Key, container: Option<&str>, termination: Option<Termination>) {
        let (tasks, termination, started) = {
            let mut ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get_mut(key) else { return };
            if container.is_some_and(|c| c != run.rec.container_id) || run.state == RunState::Ended {
                return;
            }
            run.state = RunState::Ended;
            run.sub = None;
            run.done.cancel();
            let t = termination
                .or_else(|| run.termination.clone())
                .unwrap_or_else(|| Termination {
                    state: launch::TASK_FAILED,
                    reason: launch::REASON_EXECUTOR_TERMINATED,
                    message: "Executor terminated".into(),
                });
            if container.is_none() {
                // Never ran: its end is recorded now.
                run.rec.ended = Some(Exit {
                    exit_status: None,
                    message: t.message.clone(),
                });
                if let Err(e) = run.persist() {
                    tracing::warn!(executor = %key.executor_id, error = %e, "cannot record the executor's end");
                }
                run.exit_sent = Some(Instant::now());
                let exit = run_exit(run);
                ex.outbox.push_back(exit_event(key, exit));
            }
            let run = ex.runs.get_mut(key).expect("found");
            let default = run.rec.launch.default_executor;
            // A default executor's tasks in containers of their own are killed, and report
            // their own ends; the others end as the termination says.
            let (started, tasks): (Vec<_>, Vec<_>) = std::mem::take(&mut run.tasks)
                .into_iter()
                .partition(|(_, t)| default && t.delivered);
            let started: Vec<String> = started.into_iter().map(|(id, _)| id).collect();
            let tasks: Vec<String> = tasks.into_iter().map(|(id, _)| id).collect();
            (tasks, t, started)
        };
        tracing::info!(framework = %key.framework_id, executor = %key.executor_id, tasks = tasks.len(), reason = termination.reason, "executor ended");
        for id in started {
            self.kill_group_task(&id, Some(Duration::ZERO));
        }
        for id in tasks {
            if self.phase(&id).is_some_and(|p| p != Phase::Ended) {
                let change = Change::new(termination.state, Some(termination.reason), termination.message.clone());
                self.finish(&id, change).await;
            }
        }
        self.inner.changed.notify_one();
    }

    /// Records how the container ended and tells the leader.
    fn record_exit(&self, key: &Key, container: &str, exit: Exit) {
        let mut ex = lock(&self.inner.executors);
        let Some(run) = ex.runs.get_mut(key).filter(|r| r.rec.container_id == container) else {
            return;
        };
        if run.rec.ended.is_some() {
            return;
        }
        run.rec.ended = Some(exit.clone());
        if let Err(e) = run.persist() {
            tracing::warn!(executor = %key.executor_id, error = %e, "cannot record the executor's end");
        }
        run.exit_sent = Some(Instant::now());
        ex.outbox.push_back(exit_event(key, exit));
        drop(ex);
        self.inner.changed.notify_one();
    }

    /// SHUTDOWN from the framework: the executor gets SHUTDOWN and its grace period, then its
    /// container is killed.
    pub(crate) fn shutdown_executor(&self, framework_id: &str, executor_id: &str) {
        let key = Key {
            framework_id: framework_id.to_string(),
            executor_id: executor_id.to_string(),
        };
        let (container, grace, done) = {
            let mut ex = lock(&self.inner.executors);
            let Some(run) = ex.runs.get_mut(&key) else {
                tracing::debug!(
                    framework = framework_id,
                    executor = executor_id,
                    "shutdown of an executor this agent does not run"
                );
                return;
            };
            match run.state {
                RunState::Ended | RunState::Terminating => return,
                RunState::Launching => {
                    // Its container is being made: it ends as soon as it runs.
                    run.state = RunState::Terminating;
                    return;
                }
                RunState::Registering | RunState::Running => {}
            }
            run.state = RunState::Terminating;
            run.send(Event::shutdown());
            (
                run.rec.container_id.clone(),
                Duration::from_millis(run.rec.launch.def.kill_grace_ms),
                run.done.clone(),
            )
        };
        tracing::info!(framework = framework_id, executor = executor_id, grace = ?grace, "shutting the executor down");
        let me = self.clone();
        self.spawn(async move {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tokio::time::sleep(grace) => {}
            }
            tracing::info!(container = %container, "the executor did not exit within its grace period; killing it");
            if let Err(e) = me.inner.runtime.kill_within(&container, Some(Duration::ZERO)).await {
                tracing::warn!(container = %container, error = %tepui_common::error_chain(&e), "kill failed");
            }
        });
    }

    /// A framework message from the scheduler: the executor's MESSAGE, if it is subscribed.
    pub(crate) fn framework_message(&self, framework_id: &str, executor_id: &str, data_b64: &str) {
        let Ok(data) = b64().decode(data_b64) else {
            tracing::warn!(
                framework = framework_id,
                executor = executor_id,
                "a framework message that is not base64; dropped"
            );
            return;
        };
        let key = Key {
            framework_id: framework_id.to_string(),
            executor_id: executor_id.to_string(),
        };
        let mut ex = lock(&self.inner.executors);
        let sent = ex
            .runs
            .get_mut(&key)
            .is_some_and(|run| run.send(Event::message(tepui_mesos::Bytes::new(data))));
        if !sent {
            tracing::info!(
                framework = framework_id,
                executor = executor_id,
                "dropping a framework message: the executor is not subscribed"
            );
        }
    }

    /// The leader recorded an executor's end.
    pub(crate) fn executor_exit_acked(&self, framework_id: &str, executor_id: &str) {
        let key = Key {
            framework_id: framework_id.to_string(),
            executor_id: executor_id.to_string(),
        };
        let mut ex = lock(&self.inner.executors);
        if let Some(run) = ex.runs.get_mut(&key).filter(|r| r.rec.ended.is_some()) {
            run.rec.exit_acked = true;
            if let Err(e) = run.persist() {
                tracing::warn!(executor = executor_id, error = %e, "cannot record the acknowledgement of the executor's end");
            }
        }
    }

    /// What is due for the leader about executors: framework messages, and the ends it has
    /// not acknowledged (again every [`EXIT_RESEND`], and all of them after `reconnected`).
    pub fn executor_events(&self, now: Instant, reconnected: bool) -> Vec<ExecutorEvent> {
        let mut ex = lock(&self.inner.executors);
        let mut out: Vec<ExecutorEvent> = ex.outbox.drain(..).collect();
        for (key, run) in ex.runs.iter_mut() {
            let Some(exit) = run.rec.ended.clone().filter(|_| !run.rec.exit_acked) else {
                continue;
            };
            let due = reconnected || run.exit_sent.is_none_or(|at| now.duration_since(at) >= EXIT_RESEND);
            if due {
                if !out.iter().any(|e| matches!(e, ExecutorEvent::Exited { framework_id, executor_id, .. } if *framework_id == key.framework_id && *executor_id == key.executor_id)) {
                    out.push(exit_event(key, exit));
                }
                run.exit_sent = Some(now);
            }
        }
        out
    }

    // ---- the executor API ----

    /// Finds the executor a call comes from and checks its token (Mesos' words for the ids).
    fn caller(&self, ex: &Executors, call: &Call, token: Option<&str>) -> Result<Key, Refusal> {
        let key = Key {
            framework_id: call.framework_id.value.clone(),
            executor_id: call.executor_id.value.clone(),
        };
        if !ex.runs.keys().any(|k| k.framework_id == key.framework_id) {
            return Err(refuse(400, "Framework cannot be found"));
        }
        let Some(run) = ex.runs.get(&key).filter(|r| r.state != RunState::Ended) else {
            return Err(refuse(400, "Executor cannot be found"));
        };
        let presented = token.map(|t| hex::encode(Sha256::digest(t.as_bytes())));
        if presented.as_deref() != Some(run.rec.token_sha256.as_str()) {
            return Err(refuse(
                401,
                format!(
                    "the call must carry the executor's token ({}) as 'Authorization: Bearer <token>'",
                    tepui_mesos::executor::TOKEN_ENV
                ),
            ));
        }
        Ok(key)
    }

    /// SUBSCRIBE: the subscription's stream, starting with SUBSCRIBED; then the updates and
    /// tasks the executor lists as unacknowledged are settled, and its tasks delivered.
    pub(crate) fn executor_subscribe(&self, call: Call, token: Option<&str>) -> Result<Subscription, Refusal> {
        let subscribe = call.subscribe.clone().unwrap_or_default();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let (key, number, dropped, shutdown) = {
            let mut ex = lock(&self.inner.executors);
            let key = self.caller(&ex, &call, token)?;
            let me = ex.me.clone();
            let run = ex.runs.get_mut(&key).expect("found by caller");
            if run.state == RunState::Launching {
                return Err(refuse(
                    503,
                    "the executor's container is still being made; subscribe again",
                ));
            }
            run.subscriptions += 1;
            let number = run.subscriptions;
            if let Some((_, old)) = run.sub.replace((number, tx)) {
                // Mesos closes the earlier connection.
                drop(old);
            }
            let subscribed = subscribed_event(run, me.as_ref())
                .map_err(|e| refuse(500, format!("cannot describe the executor: {e}")))?;
            run.send(Event::subscribed(subscribed));
            let shutdown = run.state == RunState::Terminating;
            if run.state == RunState::Registering {
                run.state = RunState::Running;
            }
            // Tasks it was given but does not know (given just before an agent restart, and
            // lost on the way) are dropped, as Mesos does.
            let listed: HashSet<&str> = subscribe
                .unacknowledged_tasks
                .iter()
                .map(|t| t.task_id.value.as_str())
                .collect();
            let dropped: Vec<String> = run
                .tasks
                .iter()
                .filter(|(id, t)| t.delivered && !listed.contains(id.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            (key, number, dropped, shutdown)
        };
        tracing::info!(framework = %key.framework_id, executor = %key.executor_id, subscription = number, "executor subscribed");
        for update in &subscribe.unacknowledged_updates {
            if let Err(r) = self.take_update(&key, &update.status) {
                tracing::warn!(executor = %key.executor_id, reason = %r.message, "an unacknowledged update of a resubscribing executor was refused");
            }
        }
        let mut drop_now = Vec::new();
        for id in dropped {
            // Only those with no update at all: the others it reported already.
            if self.latest(&id).is_none() && self.pending(&id).is_empty() {
                drop_now.push(id);
            }
        }
        {
            let mut ex = lock(&self.inner.executors);
            if let Some(run) = ex.runs.get_mut(&key) {
                let gone = if run.partition_aware() {
                    launch::TASK_DROPPED
                } else {
                    launch::TASK_LOST
                };
                for id in &drop_now {
                    run.tasks.remove(id);
                }
                if shutdown {
                    run.send(Event::shutdown());
                } else {
                    self.deliver(run);
                }
                drop(ex);
                for id in drop_now {
                    let me = self.clone();
                    self.spawn(async move {
                        let change = Change::new(
                            gone,
                            Some(launch::REASON_SLAVE_RESTARTED),
                            "Task launched during agent restart",
                        );
                        me.finish(&id, change).await;
                    });
                }
            }
        }
        Ok(Subscription {
            events: rx,
            guard: SubscriptionGuard {
                tasks: self.clone(),
                key,
                number,
            },
        })
    }

    /// UPDATE: the status update goes into the durable queue (once per uuid); the executor
    /// hears ACKNOWLEDGED when the leader has it.
    pub(crate) fn executor_update(&self, call: &Call, token: Option<&str>) -> Result<(), Refusal> {
        let key = {
            let ex = lock(&self.inner.executors);
            self.caller(&ex, call, token)?
        };
        let status = &call.update.as_ref().expect("validated").status;
        self.take_update(&key, status)
    }

    fn take_update(&self, key: &Key, status: &mesos::TaskStatus) -> Result<(), Refusal> {
        // One update at a time: the same one sent twice at once is queued once.
        let _one = lock(&self.inner.executor_updates);
        let task_id = status.task_id.value.as_str();
        if self.executor_of(task_id).as_ref() != Some(key) {
            return Err(refuse(
                400,
                format!("task {task_id:?} is not a task of executor {:?}", key.executor_id),
            ));
        }
        let state = known_state(&status.state)
            .ok_or_else(|| refuse(400, format!("an executor cannot report state {}", status.state)))?;
        let uuid_bytes = status.uuid.as_ref().map(|u| u.as_slice().to_vec()).unwrap_or_default();
        let uuid = queue_uuid(&uuid_bytes);
        let dir = self.inner.tasks_dir.join(updates::task_dir_name(task_id));
        // The same update again (a retry, or one listed when resubscribing): queued already,
        // or acknowledged already (then the executor hears it again).
        if read_uuids(&dir).contains(&uuid) {
            let pending = self.pending(task_id).iter().any(|u| u.uuid == uuid);
            if !pending {
                self.executor_acknowledged(task_id, &uuid);
            }
            return Ok(());
        }
        let line = format!("{uuid}\n");
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(EXECUTOR_UUIDS_FILE))
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()).and_then(|()| f.sync_data()));
        if let Err(e) = recorded {
            return Err(refuse(503, format!("the agent cannot record the update: {e}")));
        }
        let update = StatusUpdate {
            task_id: task_id.to_string(),
            uuid,
            state: state.to_string(),
            reason: status.reason.as_ref().map(|r| r.as_str().to_string()),
            message: status.message.clone().unwrap_or_default(),
            exit_code: None,
            signal: None,
            timestamp_ms: tepui_common::now_ms(),
            healthy: status.healthy,
            seq: None,
            container_ip: None,
        };
        if launch::is_terminal(state) {
            // Its end frees its share of the executor's container.
            if let Some(Some(dir)) = self.mark_ended(task_id) {
                let me = self.clone();
                let id = task_id.to_string();
                self.spawn(async move { me.drop_forgotten(&id, &dir).await });
            }
            let mut ex = lock(&self.inner.executors);
            if let Some(run) = ex.runs.get_mut(key) {
                run.tasks.remove(task_id);
            }
        } else if state == launch::TASK_RUNNING {
            if let Some(e) = lock(&self.inner.table).get(task_id) {
                if e.phase() == Phase::Starting {
                    e.phase.send_replace(Phase::Running);
                }
            }
        }
        self.push_update(update);
        self.update_run_limits(key);
        Ok(())
    }

    /// MESSAGE from the executor: to the leader, for its scheduler.
    pub(crate) fn executor_message(&self, call: &Call, token: Option<&str>, max: usize) -> Result<(), Refusal> {
        let mut ex = lock(&self.inner.executors);
        let key = self.caller(&ex, call, token)?;
        let data = &call.message.as_ref().expect("validated").data;
        if data.as_slice().len() > max {
            return Err(refuse(
                400,
                format!(
                    "the message's data is {} bytes; a framework message carries at most {max}",
                    data.as_slice().len()
                ),
            ));
        }
        if ex.outbox.len() >= OUTBOX_LIMIT {
            return Err(refuse(
                503,
                "too many messages wait for the leader; send it again later",
            ));
        }
        ex.outbox.push_back(ExecutorEvent::Message {
            framework_id: key.framework_id,
            executor_id: key.executor_id,
            b64: data.to_base64(),
        });
        drop(ex);
        self.inner.changed.notify_one();
        Ok(())
    }

    // ---- adoption ----

    /// Reads the runs a previous run of the agent left. Returns the containers they own.
    pub(super) fn load_runs(&self) -> Result<HashSet<String>, TaskError> {
        let mut ex = lock(&self.inner.executors);
        let root = ex.root.clone();
        std::fs::create_dir_all(&root).map_err(io_err(format!("cannot create {}", root.display())))?;
        let mut containers = HashSet::new();
        for entry in std::fs::read_dir(&root)
            .map_err(io_err(format!("cannot list {}", root.display())))?
            .flatten()
        {
            let dir = entry.path();
            let Some(rec) = std::fs::read(dir.join(RUN_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok())
            else {
                continue;
            };
            containers.insert(rec.container_id.clone());
            let key = Key::of(&rec.launch);
            let state = if rec.ended.is_some() {
                RunState::Ended
            } else {
                RunState::Registering
            };
            ex.runs.insert(
                key,
                Run {
                    holder: None,
                    killing_group: false,
                    rec,
                    dir,
                    state,
                    sub: None,
                    subscriptions: 0,
                    tasks: BTreeMap::new(),
                    termination: None,
                    done: CancellationToken::new(),
                    exit_sent: None,
                },
            );
        }
        Ok(containers)
    }

    /// A task of an executor found after a restart: back in its run (if the run is not over).
    pub(super) fn adopt_executor_task(&self, id: &str, launch: &TaskLaunch, dir: &Path) -> bool {
        let Some(x) = launch.executor.as_deref() else {
            return false;
        };
        let mut ex = lock(&self.inner.executors);
        match ex.runs.get_mut(&Key::of(x)) {
            Some(run) if run.state != RunState::Ended => {
                run.tasks.insert(
                    id.to_string(),
                    RunTask {
                        info: x.task_info.clone(),
                        delivered: dir.join(DELIVERED_FILE).exists(),
                        kill: None,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Follows the runs' containers again: a live one waits for its executor to subscribe
    /// again, one that ended meanwhile ends its run.
    pub(super) async fn adopt_runs(&self, containers: &HashMap<String, TaskStatus>) {
        let runs: Vec<(Key, String, PathBuf, bool)> = {
            let ex = lock(&self.inner.executors);
            ex.runs
                .iter()
                .filter(|(_, r)| r.state != RunState::Ended)
                .map(|(k, r)| {
                    (
                        k.clone(),
                        r.rec.container_id.clone(),
                        r.dir.join(CONTAINER_DIR),
                        r.rec.launch.def.image.is_some(),
                    )
                })
                .collect()
        };
        for (key, container, container_dir, has_image) in runs {
            match containers.get(&container) {
                Some(st)
                    if !st.state.is_terminal() && st.state != TaskState::Starting && self.adopt_holder(&key, st) =>
                {
                    self.follow_run(key.clone(), container, container_dir, has_image);
                    self.end_group_if_done(&key);
                }
                Some(st) if !st.state.is_terminal() && st.state != TaskState::Starting => {
                    tracing::info!(framework = %key.framework_id, executor = %key.executor_id, "adopted a running executor; waiting for it to subscribe again");
                    let done = lock(&self.inner.executors).runs.get(&key).map(|r| r.done.clone());
                    if let Some(done) = done {
                        self.subscribe_timer(key.clone(), REREGISTRATION_TIMEOUT, done, true);
                    }
                    self.follow_run(key, container, container_dir, has_image);
                }
                st => {
                    if st.is_some_and(|st| !st.state.is_terminal()) {
                        // Still being made when the agent went: it cannot be trusted to come up
                        // with the run it belongs to.
                        if let Err(e) = self.inner.runtime.kill_within(&container, Some(Duration::ZERO)).await {
                            tracing::warn!(container = %container, error = %tepui_common::error_chain(&e), "kill failed");
                        }
                    }
                    let exit = st
                        .filter(|st| st.state.is_terminal())
                        .map(exit_of)
                        .unwrap_or_else(|| Exit {
                            exit_status: None,
                            message: "the agent restarted while the executor's container was being made".into(),
                        });
                    self.release(&container, &container_dir, has_image).await;
                    self.end_run(&key, Some(&container), None).await;
                    self.record_exit(&key, &container, exit);
                }
            }
        }
    }

    /// Runs that ended, whose end the leader has and whose tasks are gone: their records go.
    pub(super) fn cleanup_runs(&self) -> Vec<PathBuf> {
        let mut ex = lock(&self.inner.executors);
        let done: Vec<Key> = ex
            .runs
            .iter()
            .filter(|(_, r)| r.state == RunState::Ended && r.rec.exit_acked && r.tasks.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| ex.runs.remove(&k))
            .map(|r| r.dir)
            .collect()
    }

    /// Images that live executors use.
    pub(super) fn executor_images(&self) -> Vec<String> {
        lock(&self.inner.executors)
            .runs
            .values()
            .filter(|r| r.state != RunState::Ended)
            .filter_map(|r| r.rec.launch.def.image.clone())
            .collect()
    }
}

fn kill_event(task_id: &str, grace: Option<Duration>) -> Event {
    Event::kill(
        mesos::TaskId::new(task_id),
        grace.map(|g| mesos::KillPolicy {
            grace_period: Some(mesos::DurationInfo::from_nanos(
                g.as_nanos().min(i64::MAX as u128) as i64
            )),
        }),
    )
}

fn launch_failed(message: String) -> Termination {
    Termination {
        state: launch::TASK_FAILED,
        reason: launch::REASON_CONTAINER_LAUNCH_FAILED,
        message,
    }
}

fn exit_of(st: &TaskStatus) -> Exit {
    let exit_status = match (st.exit_code, st.signal) {
        (_, Some(s)) => Some(128 + s),
        (c, None) => c,
    };
    let message = match (st.exit_code, st.signal) {
        (_, Some(s)) => format!("the executor was killed by signal {s}"),
        (Some(c), None) => format!("the executor exited with code {c}"),
        (None, None) => st.message.clone().unwrap_or_else(|| "the executor ended".into()),
    };
    Exit { exit_status, message }
}

fn run_exit(run: &Run) -> Exit {
    run.rec.ended.clone().unwrap_or(Exit {
        exit_status: None,
        message: String::new(),
    })
}

fn exit_event(key: &Key, exit: Exit) -> ExecutorEvent {
    ExecutorEvent::Exited {
        framework_id: key.framework_id.clone(),
        executor_id: key.executor_id.clone(),
        exit_status: exit.exit_status,
        message: exit.message,
    }
}

fn subscribed_event(run: &Run, me: Option<&AgentSelf>) -> Result<Subscribed, serde_json::Error> {
    let x = &run.rec.launch;
    let executor_info: mesos::ExecutorInfo = serde_json::from_value(x.executor_info.clone())?;
    let framework_info: mesos::FrameworkInfo = serde_json::from_value(x.framework_info.clone())?;
    let (hostname, port, id) = match me {
        Some(me) => (me.hostname.clone(), Some(me.endpoint.port() as i32), Some(me.id)),
        None => (String::new(), None, None),
    };
    Ok(Subscribed {
        executor_info,
        framework_info,
        agent_info: mesos::AgentInfo {
            hostname,
            port,
            resources: vec![],
            attributes: vec![],
            id: id.map(|id| mesos::AgentId::new(id.to_string())),
            domain: None,
        },
        container_id: Some(mesos::ContainerId::new(run.rec.container_id.as_str())),
    })
}

/// For the HTTP layer: the subscription's events as they come, with a HEARTBEAT when there
/// has been nothing for a while.
pub(crate) async fn next_event(events: &mut mpsc::Receiver<Event>) -> Option<Event> {
    match tokio::time::timeout(HEARTBEAT_INTERVAL, events.recv()).await {
        Ok(e) => e,
        Err(_) => Some(Event::heartbeat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_mesos_writes_them() {
        assert_eq!(mesos_duration(Duration::from_secs(15 * 60)), "15mins");
        assert_eq!(mesos_duration(Duration::from_secs(2)), "2secs");
        assert_eq!(mesos_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(mesos_duration(Duration::from_secs(90)), "90secs");
    }

    #[test]
    fn queue_uuids_carry_the_executors_own() {
        let u = [1u8, 2, 3, 255];
        assert_eq!(queue_uuid(&u), "x-010203ff");
        assert_eq!(executor_uuid(&queue_uuid(&u)).unwrap(), u);
        assert_eq!(executor_uuid("5b7c-not-an-executor-uuid"), None);
    }

    #[test]
    fn keys_name_any_ids_as_file_names() {
        let k = Key {
            framework_id: "f/../x".into(),
            executor_id: "e\0".into(),
        };
        assert!(k.dir_name().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            k.dir_name(),
            Key {
                framework_id: "f".into(),
                executor_id: "e".into()
            }
            .dir_name()
        );
    }
}
