//! The task manager: runs the leader's tasks in containers and keeps their status updates
//! until the leader acknowledges them.
//!
//! Per task, under `<data_dir>/tasks/<task dir>/` (see [`task_dir_name`]): `launch.json` (the
//! launch as received, written before anything is reported), the update queue's files,
//! `container/` (the image rootfs, when the task has an image) and `forgotten` (a marker:
//! the leader told the agent to drop the task). The container itself lives in the runtime's
//! sandbox under `<data_dir>/runtime`, and survives the agent: [`TaskManager::open`] adopts
//! what is still running and reports what ended while the agent was away.
//!
//! A task goes Starting (image pulled, rootfs prepared, container started) → Running (a
//! waiter follows it) → Ended (its final update queued). Launches, kills, acknowledgements
//! and forgets are idempotent, because the leader delivers them at least once.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tepui_common::{error_chain, now_ms};
use tepui_image::{Image, ImageRef, ImageStore, PullOptions, RegistryAuth, StoreConfig};
use tepui_proto::agent::{ClusterDns, StatusUpdate, TaskLaunch, TaskReport};
use tepui_runtime::{Rootfs, Runtime, RuntimeConfig, TaskState, TaskStatus};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::{self, RoutesFeed};
use crate::health;
use crate::launch::{self, Change};
use crate::resolver::ClusterResolver;
use crate::updates::{self, task_dir_name, valid_task_id, UpdateQueue};

mod executors;
pub use executors::AgentSelf;
pub(crate) use executors::{next_event, Refusal, Subscription};

const LAUNCH_FILE: &str = "launch.json";
const FORGOTTEN_FILE: &str = "forgotten";
const CONTAINER_DIR: &str = "container";

/// Where and how the task manager runs tasks.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// The agent's data dir: `tasks/`, `runtime/`, `images/` and `uploads/` go under it. It
    /// must be on a filesystem with overlay upper dirs and trusted xattrs (ext4, xfs).
    pub data_dir: PathBuf,
    pub runtime: RuntimeConfig,
    /// Registries (`host:port`) that may be pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry host (`host:port` as references write it; `docker.io` for
    /// Docker Hub). Registries not named here are pulled from anonymously.
    pub registry_auth: HashMap<String, RegistryAuth>,
    /// Ended tasks whose updates are all acknowledged, and ended containers' sandboxes, are
    /// removed this long after they ended.
    pub task_retention: Duration,
    /// The DNS of this node's own server (`tepui dev`): the tasks' resolver forwards there,
    /// whatever server the agent registers with.
    pub cluster_dns: Option<ClusterDns>,
}

impl TaskConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> TaskConfig {
        TaskConfig {
            data_dir: data_dir.into(),
            runtime: RuntimeConfig::default(),
            insecure_registries: Vec::new(),
            registry_auth: HashMap::new(),
            task_retention: Duration::from_secs(3600),
            cluster_dns: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("container runtime")]
    Runtime(#[from] tepui_runtime::Error),
    #[error("image store")]
    Images(#[from] tepui_image::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> TaskError {
    let context = context.into();
    move |source| TaskError::Io { context, source }
}

/// Where a task is in its life on this agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Pulling its image, preparing its rootfs, starting its container.
    Starting,
    Running,
    /// Its final update is queued (or it was forgotten).
    Ended,
}

struct Entry {
    dir: PathBuf,
    /// None for the record of a kill of a task this agent did not have.
    launch: Option<Arc<TaskLaunch>>,
    phase: watch::Sender<Phase>,
    /// Cancelled when a kill (or forget) is asked.
    kill: CancellationToken,
    forgotten: bool,
    /// The image the task uses until it ends (image removal refuses it).
    image: Option<String>,
    /// When this agent got the task (for the launch latency).
    received: Instant,
}

impl Entry {
    fn new(dir: PathBuf, launch: Option<Arc<TaskLaunch>>, phase: Phase) -> Entry {
        Entry {
            dir,
            image: launch.as_ref().and_then(|l| l.image.clone()),
            launch,
            phase: watch::Sender::new(phase),
            kill: CancellationToken::new(),
            forgotten: false,
            received: Instant::now(),
        }
    }
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

/// What [`TaskManager::cleanup`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Ended tasks whose records were removed.
    pub tasks: Vec<String>,
    /// Container sandboxes removed.
    pub sandboxes: Vec<String>,
    pub image_gc: tepui_image::GcReport,
}

/// The agent's tasks. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

struct Inner {
    tasks_dir: PathBuf,
    uploads_dir: PathBuf,
    runtime: Runtime,
    images: ImageStore,
    registry_auth: HashMap<String, RegistryAuth>,
    retention: Duration,
    table: Mutex<HashMap<String, Entry>>,
    updates: Mutex<UpdateQueue>,
    /// Woken when an update is queued or acknowledged.
    changed: Notify,
    /// One pull per image at a time.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tracker: TaskTracker,
    stop: CancellationToken,
    /// Launches being recorded on disk at once. Their syncs go together (the file system
    /// commits them in one journal transaction), and launches flow on to their containers at
    /// the pace the disk records them, not all at once.
    recording: Arc<tokio::sync::Semaphore>,
    /// Containers being made (see [`STARTING`]).
    starting: Arc<tokio::sync::Semaphore>,
    /// `logs -f` streams open at once.
    followers: Arc<tokio::sync::Semaphore>,
    /// The cluster's resolver for the tasks' resolv.conf.
    resolver: ClusterResolver,
    /// Frameworks' executors (see `executors`).
    executors: Mutex<executors::Executors>,
    /// Taken while an executor's update is recorded, so one sent twice at once goes once.
    executor_updates: Mutex<()>,
    stats: crate::stats::TaskStats,
    /// The gateway's newest table: a task it sends traffic to is signalled once it no longer does.
    routes: Mutex<RoutesFeed>,
}

/// A kill that failed is tried again after this, doubling up to [`KILL_RETRY_MAX`].
const KILL_RETRY_FIRST: Duration = Duration::from_millis(500);
const KILL_RETRY_MAX: Duration = Duration::from_secs(30);

/// Launches recorded at once.
const RECORDING: usize = 16;
/// Containers made at once. Enough to keep the disk and the kernel's cgroup work busy (on
/// cgroup v1 each start waits for an RCU grace period, which starts running together share).
const STARTING: usize = 64;
/// Log followers open at once on an agent; more are refused until one ends.
pub const MAX_LOG_FOLLOWERS: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
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

impl TaskManager {
    /// Opens the runtime, the image store and the update queue under the data dir, and adopts
    /// the tasks a previous run of the agent left: running containers keep running (a waiter
    /// follows each again), and tasks that ended meanwhile get their final update queued.
    pub async fn open(cfg: TaskConfig) -> Result<TaskManager, TaskError> {
        let data = &cfg.data_dir;
        // Before anything in the data dir is read or written.
        crate::format::check(data)?;
        let tasks_dir = data.join("tasks");
        fs::create_dir_all(&tasks_dir).map_err(io_err(format!("cannot create {}", tasks_dir.display())))?;
        let uploads_dir = data.join("uploads");
        let _ = fs::remove_dir_all(&uploads_dir);
        fs::create_dir_all(&uploads_dir).map_err(io_err(format!("cannot create {}", uploads_dir.display())))?;
        let runtime = Runtime::new(data.join("runtime"), cfg.runtime.clone())?;
        let mut sc = StoreConfig::new(data.join("images"));
        sc.insecure_registries = cfg.insecure_registries.clone();
        let images = open_store(sc).await?;
        let updates = UpdateQueue::open(&tasks_dir).map_err(io_err(format!("cannot read {}", tasks_dir.display())))?;
        let mgr = TaskManager {
            inner: Arc::new(Inner {
                tasks_dir,
                uploads_dir,
                runtime,
                images,
                registry_auth: cfg.registry_auth.clone(),
                retention: cfg.task_retention,
                table: Mutex::new(HashMap::new()),
                updates: Mutex::new(updates),
                changed: Notify::new(),
                pulls: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
                recording: Arc::new(tokio::sync::Semaphore::new(RECORDING)),
                starting: Arc::new(tokio::sync::Semaphore::new(STARTING)),
                followers: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_FOLLOWERS)),
                resolver: ClusterResolver::new(cfg.cluster_dns.clone()),
                executors: Mutex::new(executors::Executors::new(data.join("executors"))),
                executor_updates: Mutex::new(()),
                stats: crate::stats::TaskStats::default(),
                routes: Mutex::new(watch::channel(None).1),
            }),
        };
        if cfg.cluster_dns.is_some() {
            mgr.set_cluster_dns(None);
        }
        mgr.adopt().await?;
        Ok(mgr)
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The cluster's DNS, as a registration told it (the node's own server's wins): tasks
    /// launched from now on name this host's resolver in their resolv.conf, and the host's
    /// rules point it at that DNS (set up in the background).
    pub fn set_cluster_dns(&self, told: Option<ClusterDns>) {
        self.inner.resolver.learn(&self.inner.runtime, told);
        let me = self.clone();
        self.spawn(async move { me.inner.resolver.apply(&me.inner.runtime).await });
    }

    /// A place for one more log follower, unless all are taken; held while it follows.
    pub fn log_follower(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.followers.clone().try_acquire_owned().ok()
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    pub(crate) fn uploads_dir(&self) -> &Path {
        &self.inner.uploads_dir
    }

    /// Runs `f` until it ends or the manager shuts down; [`TaskManager::shutdown`] waits for it.
    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.inner.stop.clone();
        self.inner
            .tracker
            .spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = f => {}
                }
            })
            .abort_handle()
    }

    /// Runs blocking work (image store, file trees) off the async threads; shutdown waits
    /// for it, so the store is not reopened while a previous run still uses it.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&ImageStore) -> T + Send + 'static,
        T: Send + 'static,
    {
        let images = self.inner.images.clone();
        match self.inner.tracker.spawn_blocking(move || f(&images)).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Stops every waiter, launch and request of this manager (the containers keep running)
    /// and waits until they are gone.
    pub async fn shutdown(&self) {
        self.stop();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Like [`TaskManager::shutdown`], without waiting.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    // ---- the leader's messages ----

    /// A task to run. A launch of a task the agent has (running or ended) is ignored.
    ///
    /// The launch is recorded on disk (its `TASK_STARTING` follows, written on its own) by the task's own
    /// future, off the connection's loop, so that launches arriving together are written side
    /// by side. An agent that dies before the record is written has not got the task: the
    /// leader sends it again when the agent registers.
    pub fn launch(&self, task: TaskLaunch) {
        let id = task.task_id.clone();
        let dir = self.inner.tasks_dir.join(task_dir_name(&id));
        {
            let mut table = lock(&self.inner.table);
            if table.contains_key(&id) {
                tracing::debug!(task = %id, "launch of a task this agent has: ignored");
                return;
            }
            table.insert(
                id.clone(),
                Entry::new(dir.clone(), Some(Arc::new(task.clone())), Phase::Starting),
            );
        }
        tracing::info!(task = %id, "launching");
        let on_executor = task.executor.is_some();
        // The default executor is the agent: it reports its tasks' states itself.
        let reports_itself = task.executor.as_ref().is_none_or(|x| x.default_executor);
        let me = self.clone();
        self.spawn(async move {
            let Ok(permit) = me.inner.recording.clone().acquire_owned().await else {
                return;
            };
            let recorder = me.clone();
            let task_id = id.clone();
            let recorded = tokio::task::spawn_blocking(move || {
                updates::ensure_dir(&dir)
                    .and_then(|()| {
                        // Secrets stay in memory: the record has only their references.
                        let bytes =
                            serde_json::to_vec_pretty(&task.without_secret_values()).map_err(io::Error::other)?;
                        updates::write_atomic(&dir.join(LAUNCH_FILE), &bytes)
                    })
                    .map(|()| {
                        // An executor reports its own tasks' states.
                        if reports_itself {
                            recorder.push(&task_id, Change::starting())
                        }
                    })
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            drop(permit);
            match recorded {
                Ok(()) if on_executor => me.run_on_executor(id).await,
                Ok(()) => me.run(id).await,
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "cannot record the launch; refusing it");
                    let message = format!("the agent cannot record the launch: {e}");
                    me.finish(&id, Change::launch_failed(message)).await;
                }
            }
        });
    }

    /// Stops a task: SIGTERM, SIGKILL after its grace period; its waiter reports
    /// `TASK_KILLED`. A task still starting is stopped before its container runs. A kill of a
    /// task the agent does not have is answered `TASK_KILLED` with reason
    /// `REASON_TASK_UNKNOWN` (it is not running here, which is what the kill wants).
    pub fn kill(&self, task_id: &str, grace: Option<Duration>) {
        let executor = {
            let table = lock(&self.inner.table);
            table.get(task_id).filter(|e| e.phase() != Phase::Ended).and_then(|e| {
                e.kill.cancel();
                // A default executor's tasks are containers of the agent's, killed as any.
                e.launch
                    .as_ref()?
                    .executor
                    .as_deref()
                    .filter(|x| !x.default_executor)
                    .map(executors::Key::of_launch)
            })
        };
        if let Some(key) = executor {
            tracing::info!(task = %task_id, "killing, through its executor");
            self.kill_executor_task(task_id, key, grace);
            return;
        }
        let kill_now = {
            let mut table = lock(&self.inner.table);
            match table.get_mut(task_id) {
                None => {
                    let dir = self.inner.tasks_dir.join(task_dir_name(task_id));
                    table.insert(task_id.to_string(), Entry::new(dir, None, Phase::Ended));
                    drop(table);
                    tracing::info!(task = %task_id, "kill of a task this agent does not have");
                    self.push(
                        task_id,
                        Change::new(
                            launch::TASK_KILLED,
                            Some(launch::REASON_TASK_UNKNOWN),
                            "not on this agent",
                        ),
                    );
                    return;
                }
                Some(e) if e.phase() == Phase::Ended => {
                    tracing::debug!(task = %task_id, "kill of an ended task: ignored");
                    return;
                }
                Some(e) => {
                    e.kill.cancel();
                    e.phase() == Phase::Running
                }
            }
        };
        tracing::info!(task = %task_id, "killing");
        if kill_now {
            self.kill_container(task_id, grace);
        }
    }

    /// The gateway's tables, from the agent's connection to the leader.
    pub(crate) fn follow_routes(&self, feed: RoutesFeed) {
        *lock(&self.inner.routes) = feed;
    }

    fn kill_container(&self, task_id: &str, grace: Option<Duration>) {
        let me = self.clone();
        let id = task_id.to_string();
        let routes = lock(&self.inner.routes).clone();
        self.spawn(async move {
            // A task the gateway still sends requests to first leaves its routes (the leader's
            // next table drops it), within its grace period.
            let limit = grace.map_or(gateway::LEAVE_ROUTES_MAX, |g| g.min(gateway::LEAVE_ROUTES_MAX));
            let waited = gateway::leave_routes(routes, &id, limit).await;
            if !waited.is_zero() {
                tracing::debug!(task = %id, waited_ms = waited.as_millis() as u64, "left the gateway's routes");
            }
            let grace = grace.map(|g| g.saturating_sub(waited));
            // A kill that did not reach the shim is tried again until the task ends: the
            // leader sent it once, and a task left running would hold up its deployment.
            let mut pause = KILL_RETRY_FIRST;
            while let Err(e) = me.inner.runtime.kill_within(&id, grace).await {
                if me.phase(&id).is_none_or(|p| p == Phase::Ended) {
                    return;
                }
                me.inner.stats.kill_failures.inc();
                tracing::warn!(task = %id, error = %error_chain(&e), retry_in_ms = pause.as_millis() as u64, "kill failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(KILL_RETRY_MAX);
            }
        });
    }

    /// The leader committed an update: delete it and send the task's next one.
    pub fn ack(&self, task_id: &str, uuid: &str) -> bool {
        let acked = lock(&self.inner.updates).ack(task_id, uuid);
        if acked {
            tracing::debug!(task = %task_id, %uuid, "update acknowledged");
            self.executor_acknowledged(task_id, uuid);
            self.inner.changed.notify_one();
        } else {
            tracing::debug!(task = %task_id, %uuid, "acknowledgement of no pending update: ignored");
        }
        acked
    }

    /// The cluster does not know the task (or is done with it): kill it if it runs, then drop
    /// it and its pending updates. Nothing more is reported about it.
    pub fn forget(&self, task_id: &str) {
        let (kill_now, remove, on_executor) = {
            let mut table = lock(&self.inner.table);
            let Some(e) = table.get_mut(task_id) else {
                tracing::debug!(task = %task_id, "forget of a task this agent does not have");
                return;
            };
            e.forgotten = true;
            if let Err(err) = updates::write_atomic(&e.dir.join(FORGOTTEN_FILE), b"") {
                tracing::warn!(task = %task_id, error = %err, "cannot record the forget");
            }
            if let Err(err) = lock(&self.inner.updates).remove(task_id) {
                tracing::warn!(task = %task_id, error = %err, "cannot delete the task's updates");
            }
            e.kill.cancel();
            let executor = e
                .launch
                .as_ref()
                .and_then(|l| l.executor.as_deref())
                .filter(|x| !x.default_executor)
                .map(executors::Key::of_launch);
            match (executor, e.phase()) {
                (_, Phase::Ended) => (false, Some(e.dir.clone()), None),
                // Its executor is told to kill it; nothing more of it is kept.
                (Some(key), _) => {
                    e.phase.send_replace(Phase::Ended);
                    (false, Some(e.dir.clone()), Some(key))
                }
                (None, Phase::Running) => (true, None, None),
                (None, Phase::Starting) => (false, None, None),
            }
        };
        if let Some(key) = on_executor {
            self.forget_executor_task(task_id, key);
        }
        tracing::info!(task = %task_id, "forgetting");
        if kill_now {
            self.kill_container(task_id, None);
        }
        if let Some(dir) = remove {
            let me = self.clone();
            let id = task_id.to_string();
            self.spawn(async move { me.drop_forgotten(&id, &dir).await });
        }
    }

    // ---- what the session sends ----

    /// Every task the agent still has (not ended, or ended with unacknowledged updates) with
    /// its latest state, for registration.
    pub fn reports(&self) -> Vec<TaskReport> {
        let table = lock(&self.inner.table);
        let updates = lock(&self.inner.updates);
        let mut out: Vec<TaskReport> = table
            .iter()
            .filter(|(id, e)| !e.forgotten && (e.phase() != Phase::Ended || updates.unacknowledged(id)))
            .map(|(id, e)| TaskReport {
                task_id: id.clone(),
                state: updates.latest(id).map(|u| u.state.clone()).unwrap_or_else(|| {
                    match e.phase() {
                        Phase::Starting => launch::TASK_STARTING,
                        Phase::Running => launch::TASK_RUNNING,
                        Phase::Ended => launch::TASK_FAILED,
                    }
                    .to_string()
                }),
            })
            .collect();
        out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        out
    }

    /// A new connection: every task's oldest pending update goes out again.
    pub fn reconnected(&self) {
        lock(&self.inner.updates).reconnected();
        self.inner.changed.notify_one();
    }

    /// Updates to send now (see [`UpdateQueue::due`]).
    pub fn due_updates(&self, now: Instant) -> Vec<StatusUpdate> {
        lock(&self.inner.updates).due(now)
    }

    /// When the next update is due, if any is pending.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        lock(&self.inner.updates).next_due(now)
    }

    /// Resolves when an update was queued or acknowledged since the last call (one waiter).
    pub async fn changed(&self) {
        self.inner.changed.notified().await
    }

    // ---- queries ----

    pub fn phase(&self, task_id: &str) -> Option<Phase> {
        lock(&self.inner.table).get(task_id).map(Entry::phase)
    }

    /// A watch of the task's phase.
    pub fn watch_phase(&self, task_id: &str) -> Option<watch::Receiver<Phase>> {
        lock(&self.inner.table).get(task_id).map(|e| e.phase.subscribe())
    }

    /// The task's most recent update.
    pub fn latest(&self, task_id: &str) -> Option<StatusUpdate> {
        lock(&self.inner.updates).latest(task_id).cloned()
    }

    /// The task's unacknowledged updates, oldest first.
    pub fn pending(&self, task_id: &str) -> Vec<StatusUpdate> {
        lock(&self.inner.updates)
            .pending(task_id)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Every task the agent has a record of, sorted.
    pub fn task_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.table).keys().cloned().collect();
        v.sort();
        v
    }

    /// What the task manager measured.
    pub(crate) fn stats(&self) -> &crate::stats::TaskStats {
        &self.inner.stats
    }

    /// Kills that did not reach their task's shim so far (`tepui_agent_task_kill_failures_total`).
    pub fn kill_failures(&self) -> u64 {
        self.inner.stats.kill_failures.get()
    }

    /// Tasks whose container (or host process) runs now.
    pub fn running_count(&self) -> usize {
        lock(&self.inner.table)
            .values()
            .filter(|e| e.phase() == Phase::Running)
            .count()
    }

    /// Status updates written and not yet acknowledged by the leader.
    pub fn updates_queued(&self) -> usize {
        lock(&self.inner.updates).pending_count()
    }

    /// Images that tasks not yet ended use.
    pub fn images_in_use(&self) -> HashSet<String> {
        let mut images: HashSet<String> = lock(&self.inner.table)
            .values()
            .filter(|e| e.phase() != Phase::Ended)
            .filter_map(|e| e.image.clone())
            .collect();
        images.extend(self.executor_images());
        images
    }

    // ---- internals ----

    /// Queues an update (on disk before it can be sent). Nothing is queued for a forgotten
    /// task: the check and the push happen under the table lock, as `forget` drops updates.
    fn push(&self, task_id: &str, change: Change) {
        self.push_update(change.into_update(task_id, new_uuid()));
    }

    /// [`TaskManager::push`] of an update made already (an executor's).
    fn push_update(&self, update: StatusUpdate) {
        let task_id = update.task_id.as_str();
        let table = lock(&self.inner.table);
        if table.get(task_id).is_some_and(|e| e.forgotten) {
            tracing::debug!(task = %task_id, state = %update.state, "forgotten task: update dropped");
            return;
        }
        tracing::info!(
            task = %task_id,
            state = %update.state,
            reason = ?update.reason,
            message = %update.message,
            uuid = %update.uuid,
            "task status"
        );
        let reserved = lock(&self.inner.updates).reserve(update);
        drop(table);
        // The write (an fsync) holds no lock and no async worker: many tasks' updates are
        // written side by side, and the connection's loop keeps sending and acknowledging.
        let inner = self.inner.clone();
        self.inner.tracker.spawn_blocking(move || {
            let written = reserved.write();
            if let Err(e) = &written {
                let task = &reserved.update().task_id;
                tracing::error!(task = %task, error = %e, "cannot record a status update; it is lost");
            }
            lock(&inner.updates).commit(reserved, written.is_ok());
            inner.changed.notify_one();
        });
    }

    /// From launch to the final update.
    async fn run(&self, id: String) {
        let (launch, kill, dir) = {
            let table = lock(&self.inner.table);
            let Some(e) = table.get(&id) else { return };
            (
                e.launch.clone().expect("launched tasks have a launch"),
                e.kill.clone(),
                e.dir.clone(),
            )
        };
        if !valid_task_id(&id) {
            let message = format!("task id {id:?} must be {}", tepui_common::TASK_ID_RULE);
            self.finish(&id, Change::invalid(message)).await;
            return;
        }
        if let Some(e) = &launch.secret_error {
            let message = format!("the task's secrets cannot be given: {e}");
            let failed = Change::new(
                launch::TASK_FAILED,
                Some(launch::REASON_SECRET_GENERATOR_FAILED),
                message,
            );
            self.finish(&id, failed).await;
            return;
        }
        let container_dir = dir.join(CONTAINER_DIR);
        let has_image = launch.image.is_some();
        let killed = || {
            Change::new(
                launch::TASK_KILLED,
                Some(launch::REASON_TASK_KILLED_DURING_LAUNCH),
                "killed before its container ran",
            )
        };
        let rootfs = match &launch.image {
            None => None,
            Some(reference) => {
                // Only the pull is abandoned for a kill: a rootfs being made is finished and
                // then released, so no mount is left behind.
                let image = tokio::select! {
                    r = self.ensure_image(reference) => r,
                    _ = kill.cancelled() => {
                        self.finish(&id, killed()).await;
                        return;
                    }
                };
                let image = match image {
                    Ok(i) => i,
                    Err(e) => {
                        self.inner.stats.launch_failures.inc();
                        let message = format!("cannot get image {reference}: {}", error_chain(&e));
                        self.finish(&id, Change::launch_failed(message)).await;
                        return;
                    }
                };
                if kill.is_cancelled() {
                    self.finish(&id, killed()).await;
                    return;
                }
                let cd = container_dir.clone();
                let key = image.reference.clone();
                match self.blocking(move |images| images.prepare_rootfs(&key, &cd)).await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let message = format!("cannot prepare the rootfs of {}: {}", image.reference, error_chain(&e));
                        self.release(&id, &container_dir, true).await;
                        self.finish(&id, Change::launch_failed(message)).await;
                        return;
                    }
                }
            }
        };
        if kill.is_cancelled() {
            self.release(&id, &container_dir, has_image).await;
            self.finish(&id, killed()).await;
            return;
        }
        let (image_config, root) = match &rootfs {
            Some(r) => (Some(&r.config), Rootfs::Path(r.path.clone())),
            None => (None, Rootfs::Host),
        };
        let mut spec = match launch::task_spec(&launch, image_config, root) {
            Ok(s) => tepui_runtime::TaskSpec {
                resolver: self.inner.resolver.current(),
                ..s
            },
            Err(message) => {
                self.release(&id, &container_dir, has_image).await;
                self.finish(&id, Change::invalid(message)).await;
                return;
            }
        };
        // A task of a group: in the group's network namespace, its relative volumes in the
        // group's sandbox.
        let mut group_ip = None;
        match self.group_place(&id) {
            None => {}
            Some(Ok(place)) => {
                spec.network = tepui_runtime::Network::Join { netns: place.netns };
                for v in &mut spec.volumes {
                    if let tepui_runtime::VolumeSource::Sandbox(rel) = &v.source {
                        v.source = tepui_runtime::VolumeSource::Shared(place.shared.join(rel));
                    }
                }
                group_ip = place.ip;
            }
            Some(Err(message)) => {
                self.release(&id, &container_dir, has_image).await;
                self.finish(&id, Change::launch_failed(message)).await;
                return;
            }
        }
        // Making a container is mostly blocking file system work (and, on cgroup v1, waits
        // for RCU grace periods): it runs on a blocking thread, so a thousand starts do not
        // hold the async workers that carry status updates and acknowledgements.
        // At most STARTING at a time, so the blocking pool keeps room for the status writes.
        let Ok(permit) = self.inner.starting.clone().acquire_owned().await else {
            return;
        };
        let inner = self.inner.clone();
        let rt = tokio::runtime::Handle::current();
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
                    id: id.clone(),
                    message: format!("the launch thread failed: {e}"),
                })
            });
        match launched {
            Ok(handle) => {
                let kill_now = {
                    let table = lock(&self.inner.table);
                    match table.get(&id) {
                        Some(e) => {
                            e.phase.send_replace(Phase::Running);
                            self.inner.stats.launch.observe(e.received.elapsed());
                            e.kill.is_cancelled()
                        }
                        None => true,
                    }
                };
                let handle = tepui_runtime::TaskHandle {
                    ip: handle.ip.or(group_ip),
                    ..handle
                };
                self.push(&id, Change::running(&handle));
                if kill_now {
                    self.kill_container(&id, None);
                } else {
                    self.start_health_checks(&id, &launch);
                }
            }
            Err(e) => {
                self.inner.stats.launch_failures.inc();
                let change = match &e {
                    tepui_runtime::Error::InvalidSpec(m) => Change::invalid(m.clone()),
                    tepui_runtime::Error::StartFailed { message, .. } => Change::launch_failed(message.clone()),
                    other => Change::launch_failed(error_chain(other)),
                };
                self.release(&id, &container_dir, has_image).await;
                self.finish(&id, change).await;
                return;
            }
        }
        self.wait_end(&id, &container_dir, has_image).await;
    }

    fn launch_of(&self, id: &str) -> Option<Arc<TaskLaunch>> {
        lock(&self.inner.table).get(id).and_then(|e| e.launch.clone())
    }

    /// Runs the task's health checks until it ends; reports changes of health and kills it
    /// when a check fails too often in a row.
    fn start_health_checks(&self, id: &str, launch: &TaskLaunch) {
        if launch.health_checks.is_empty() {
            return;
        }
        let Some(mut phase) = self.watch_phase(id) else { return };
        let me = self.clone();
        let id = id.to_string();
        let checks = launch.health_checks.clone();
        self.spawn(async move {
            let started = Instant::now();
            let mut tracker = health::Tracker::new(checks.clone());
            let mut due: Vec<Instant> = checks
                .iter()
                .map(|c| started + Duration::from_millis(c.delay_ms))
                .collect();
            loop {
                let (i, at) = due
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by_key(|(_, t)| *t)
                    .expect("at least one check");
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    changed = phase.changed() => {
                        if changed.is_err() || *phase.borrow() == Phase::Ended {
                            return;
                        }
                        continue;
                    }
                }
                if *phase.borrow() != Phase::Running {
                    return;
                }
                let result = health::probe(&me.inner.runtime, &id, &checks[i]).await;
                due[i] = Instant::now() + Duration::from_millis(checks[i].interval_ms.max(100));
                if *phase.borrow() != Phase::Running {
                    return;
                }
                match tracker.record(i, result, started.elapsed()) {
                    health::Verdict::Same => {}
                    health::Verdict::Healthy(h) => {
                        let message = if h {
                            "health checks pass"
                        } else {
                            "a health check fails"
                        };
                        me.push(&id, Change::health(h, message));
                    }
                    health::Verdict::Kill(why) => {
                        tracing::warn!(task = %id, reason = %why, "unhealthy; killing the task");
                        me.push(&id, Change::health(false, format!("{why}; killing the task")));
                        me.kill(&id, None);
                        return;
                    }
                }
            }
        });
    }

    /// Waits until the container ends and reports how.
    async fn wait_end(&self, id: &str, container_dir: &Path, has_image: bool) {
        let change = match self.inner.runtime.wait(id).await {
            Ok(st) => Change::ended(&st),
            Err(e) => Change::new(
                launch::TASK_FAILED,
                Some(launch::REASON_EXECUTOR_TERMINATED),
                format!("lost track of the container: {}", error_chain(&e)),
            ),
        };
        let forgotten = lock(&self.inner.table).get(id).is_none_or(|e| e.forgotten);
        if !has_image || forgotten {
            self.release(id, container_dir, has_image).await;
            self.finish(id, change).await;
            return;
        }
        // The end is reported before the rootfs is unmounted (that takes a millisecond or
        // two); the task stays unended, and its image in use, until it is.
        let state = change.state;
        self.push(id, change);
        self.group_task_ended(id, state);
        self.release(id, container_dir, has_image).await;
        let forgotten = self.mark_ended(id).flatten();
        // Forgotten meanwhile (the leader heard of the end): its files go now.
        if let Some(dir) = forgotten {
            self.drop_forgotten(id, &dir).await;
        }
    }

    /// Marks a task ended (its image no longer in use): `None` if the agent does not have it,
    /// else its dir when it was forgotten.
    fn mark_ended(&self, id: &str) -> Option<Option<PathBuf>> {
        let mut table = lock(&self.inner.table);
        let e = table.get_mut(id)?;
        e.phase.send_replace(Phase::Ended);
        e.image = None;
        Some(e.forgotten.then(|| e.dir.clone()))
    }

    /// Records the end of a task: its final update (unless forgotten), or, forgotten, its
    /// removal.
    async fn finish(&self, id: &str, change: Change) {
        let Some(forgotten) = self.mark_ended(id) else {
            return;
        };
        self.group_task_ended(id, change.state);
        match forgotten {
            None => self.push(id, change),
            Some(dir) => {
                tracing::info!(task = %id, state = change.state, "forgotten task ended");
                self.drop_forgotten(id, &dir).await;
            }
        }
    }

    /// Removes an ended, forgotten task: its files first, then its entry, so that a launch
    /// of the same id delivered again meanwhile is still ignored.
    async fn drop_forgotten(&self, id: &str, dir: &Path) {
        self.remove_task_files(id, dir, false).await;
        let mut table = lock(&self.inner.table);
        if table.get(id).is_some_and(|e| e.forgotten && e.phase() == Phase::Ended) {
            table.remove(id);
        }
    }

    /// Lets go of the task's image rootfs (idempotent).
    async fn release(&self, id: &str, container_dir: &Path, has_image: bool) {
        if !has_image {
            return;
        }
        let dir = container_dir.to_path_buf();
        if let Err(e) = self.blocking(move |images| images.release_rootfs(&dir)).await {
            tracing::warn!(task = %id, error = %error_chain(&e), "cannot release the rootfs");
        }
    }

    /// Removes a task's directory, after its rootfs is released (never through a mount).
    async fn remove_task_files(&self, id: &str, dir: &Path, has_image: bool) {
        let container_dir = dir.join(CONTAINER_DIR);
        if has_image || container_dir.exists() {
            let cd = container_dir.clone();
            if let Err(e) = self.blocking(move |images| images.release_rootfs(&cd)).await {
                tracing::warn!(task = %id, error = %error_chain(&e), "cannot release the rootfs; keeping the task dir");
                return;
            }
        }
        let d = dir.to_path_buf();
        if let Err(e) = self.blocking(move |_| fs::remove_dir_all(&d)).await {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(task = %id, error = %e, "cannot remove the task dir");
            }
        }
    }

    fn pull_lock(&self, reference: &str) -> Arc<tokio::sync::Mutex<()>> {
        let key = tepui_image::ImageRef::parse(reference)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| reference.to_string());
        let mut pulls = lock(&self.inner.pulls);
        pulls.retain(|_, m| Arc::strong_count(m) > 1);
        pulls.entry(key).or_default().clone()
    }

    /// The credentials configured for the reference's registry, if any.
    fn pull_options(&self, reference: &str) -> PullOptions {
        let auth = ImageRef::parse(reference)
            .ok()
            .and_then(|r| self.inner.registry_auth.get(r.registry()).cloned())
            .unwrap_or_default();
        PullOptions { auth }
    }

    /// The image from the store, pulled first if the store does not have it.
    pub async fn ensure_image(&self, reference: &str) -> Result<Image, tepui_image::Error> {
        let m = self.pull_lock(reference);
        let _one = m.lock().await;
        match self.inner.images.get(reference) {
            Ok(i) => Ok(i),
            Err(tepui_image::Error::NotInStore { .. }) => {
                tracing::info!(%reference, "pulling the image of a task");
                let started = Instant::now();
                let pulled = self
                    .inner
                    .images
                    .pull(reference, &self.pull_options(reference), &|_| {})
                    .await;
                self.inner.stats.pulled(started.elapsed(), pulled.is_ok());
                pulled
            }
            Err(e) => Err(e),
        }
    }

    /// Pulls an image (again, if the store has it: its tag may have moved).
    pub async fn pull_image(
        &self,
        reference: &str,
        progress: tepui_image::ProgressFn<'_>,
    ) -> Result<Image, tepui_image::Error> {
        let m = self.pull_lock(reference);
        let _one = m.lock().await;
        let started = Instant::now();
        let pulled = self
            .inner
            .images
            .pull(reference, &self.pull_options(reference), progress)
            .await;
        self.inner.stats.pulled(started.elapsed(), pulled.is_ok());
        pulled
    }

    // ---- adoption ----

    async fn adopt(&self) -> Result<(), TaskError> {
        let executor_containers = self.load_runs()?;
        let adopted: HashMap<String, TaskStatus> = self.inner.runtime.adopt().await?.into_iter().collect();
        let by_dir: HashMap<String, String> = lock(&self.inner.updates)
            .task_ids()
            .map(|id| (task_dir_name(id), id.to_string()))
            .collect();
        let mut known = HashSet::new();
        let rd = fs::read_dir(&self.inner.tasks_dir)
            .map_err(io_err(format!("cannot list {}", self.inner.tasks_dir.display())))?;
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            let launch: Option<TaskLaunch> = fs::read(dir.join(LAUNCH_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let id = match (&launch, by_dir.get(&name)) {
                (Some(l), _) => l.task_id.clone(),
                (None, Some(id)) => id.clone(),
                (None, None) => {
                    tracing::warn!(dir = %dir.display(), "task dir without a launch or updates: removed");
                    self.remove_task_files(&name, &dir, false).await;
                    continue;
                }
            };
            known.insert(id.clone());
            let container = adopted.get(&id).cloned();
            self.adopt_one(id, dir, launch, container).await;
        }
        for (id, st) in &adopted {
            if !known.contains(id) && !executor_containers.contains(id) && !st.state.is_terminal() {
                tracing::warn!(task = %id, "a container this agent has no record of: killed");
                if let Err(e) = self.inner.runtime.kill(id).await {
                    tracing::warn!(task = %id, error = %error_chain(&e), "kill failed");
                }
            }
        }
        self.adopt_runs(&adopted).await;
        Ok(())
    }

    async fn adopt_one(&self, id: String, dir: PathBuf, launch: Option<TaskLaunch>, container: Option<TaskStatus>) {
        let has_image = launch.as_ref().is_some_and(|l| l.image.is_some());
        let container_dir = dir.join(CONTAINER_DIR);
        let forgotten = dir.join(FORGOTTEN_FILE).exists();
        let latest = lock(&self.inner.updates).latest(&id).map(|u| u.state.clone());
        let live = container.as_ref().filter(|st| !st.state.is_terminal());
        let launch = launch.map(Arc::new);

        if forgotten {
            let _ = lock(&self.inner.updates).remove(&id);
            if live.is_some() {
                let mut e = Entry::new(dir, launch, Phase::Running);
                e.forgotten = true;
                e.kill.cancel();
                lock(&self.inner.table).insert(id.clone(), e);
                tracing::info!(task = %id, "adopted a forgotten task: killing it");
                self.kill_container(&id, None);
                self.follow(id, container_dir, has_image, true);
            } else {
                self.remove_task_files(&id, &dir, has_image).await;
            }
            return;
        }
        let ended = latest.as_deref().is_some_and(launch::is_terminal) || launch.is_none();
        if ended {
            lock(&self.inner.table).insert(id.clone(), Entry::new(dir, launch, Phase::Ended));
            self.release(&id, &container_dir, has_image).await;
            return;
        }
        let in_group = launch
            .as_ref()
            .and_then(|l| l.executor.as_deref())
            .is_some_and(|x| x.default_executor);
        if in_group {
            // Its container is followed as any task's, back in its group if it was started.
            if let Some(l) = launch.as_deref().filter(|_| container.is_some()) {
                self.adopt_executor_task(&id, l, &dir);
            }
        } else if let Some(l) = launch.clone().filter(|l| l.executor.is_some()) {
            // Run by its executor: back in the executor's run, which settles it.
            let phase = match latest.as_deref() {
                Some(launch::TASK_RUNNING | "TASK_KILLING") => Phase::Running,
                _ => Phase::Starting,
            };
            lock(&self.inner.table).insert(id.clone(), Entry::new(dir.clone(), launch, phase));
            if !self.adopt_executor_task(&id, &l, &dir) {
                let change = Change::new(
                    launch::TASK_FAILED,
                    Some(launch::REASON_EXECUTOR_TERMINATED),
                    "Executor terminated",
                );
                self.finish(&id, change).await;
            }
            return;
        }
        match (&container, live) {
            (Some(st), Some(_)) => {
                let phase = if st.state == TaskState::Running {
                    Phase::Running
                } else {
                    Phase::Starting
                };
                lock(&self.inner.table).insert(id.clone(), Entry::new(dir, launch, phase));
                tracing::info!(task = %id, pid = ?st.pid, "adopted a running task");
                let reported = latest.as_deref() == Some(launch::TASK_RUNNING);
                self.follow(id, container_dir, has_image, reported);
            }
            (Some(st), None) => {
                lock(&self.inner.table).insert(id.clone(), Entry::new(dir, launch, Phase::Running));
                tracing::info!(task = %id, state = ?st.state, "a task ended while the agent was away");
                self.release(&id, &container_dir, has_image).await;
                self.finish(&id, Change::ended(st)).await;
            }
            (None, _) => {
                lock(&self.inner.table).insert(id.clone(), Entry::new(dir, launch, Phase::Starting));
                self.release(&id, &container_dir, has_image).await;
                self.finish(
                    &id,
                    Change::new(
                        launch::TASK_FAILED,
                        Some(launch::REASON_AGENT_RESTARTED),
                        "the agent restarted while the task was starting, before its container existed",
                    ),
                )
                .await;
            }
        }
    }

    /// Follows an adopted container: reports it running (if it was not yet), then its end.
    fn follow(&self, id: String, container_dir: PathBuf, has_image: bool, running_reported: bool) {
        let me = self.clone();
        self.spawn(async move {
            loop {
                match me.inner.runtime.status(&id).await {
                    Ok(st) if st.state == TaskState::Starting => {
                        // The shim is still building the container; it records the outcome.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(st) if st.state == TaskState::Running => {
                        let kill_now = {
                            let table = lock(&me.inner.table);
                            match table.get(&id) {
                                Some(e) => {
                                    e.phase.send_replace(Phase::Running);
                                    e.kill.is_cancelled()
                                }
                                None => false,
                            }
                        };
                        if kill_now {
                            me.kill_container(&id, None);
                        } else if let Some(launch) = me.launch_of(&id) {
                            me.start_health_checks(&id, &launch);
                        }
                        if !running_reported {
                            let message = format!("running as pid {}", st.pid.unwrap_or_default());
                            me.push(&id, Change::new(launch::TASK_RUNNING, None, message));
                        }
                        break;
                    }
                    _ => break,
                }
            }
            me.wait_end(&id, &container_dir, has_image).await;
        });
    }

    // ---- cleanup ----

    /// Removes ended tasks whose updates are all acknowledged once they are older than the
    /// retention, the runtime's old sandboxes, and image layers nothing uses.
    pub async fn cleanup(&self) -> CleanupReport {
        let retention_ms = self.inner.retention.as_millis() as u64;
        let now = now_ms();
        let expired: Vec<(String, Entry)> = {
            let mut table = lock(&self.inner.table);
            let mut updates = lock(&self.inner.updates);
            let ids: Vec<String> = table
                .iter()
                .filter(|(id, e)| {
                    e.phase() == Phase::Ended
                        && !updates.unacknowledged(id)
                        && updates
                            .latest(id)
                            .is_none_or(|u| u.timestamp_ms.saturating_add(retention_ms) <= now)
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| {
                    let e = table.remove(&id)?;
                    if let Err(err) = updates.remove(&id) {
                        tracing::warn!(task = %id, error = %err, "cannot delete the task's updates");
                    }
                    Some((id, e))
                })
                .collect()
        };
        let mut report = CleanupReport::default();
        for (id, e) in expired {
            let has_image = e.launch.as_ref().is_some_and(|l| l.image.is_some());
            self.remove_task_files(&id, &e.dir, has_image).await;
            tracing::info!(task = %id, "ended task removed");
            report.tasks.push(id);
        }
        report.tasks.sort();
        for dir in self.cleanup_runs() {
            let d = dir.clone();
            if let Err(e) = self.blocking(move |_| fs::remove_dir_all(&d)).await {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an executor's record");
                }
            }
        }
        match self.inner.runtime.cleanup(self.inner.retention).await {
            Ok(removed) => report.sandboxes = removed,
            Err(e) => tracing::warn!(error = %error_chain(&e), "sandbox cleanup failed"),
        }
        let in_use = self.images_in_use();
        match self.blocking(move |images| images.gc(&in_use)).await {
            Ok(gc) => report.image_gc = gc,
            Err(e) => tracing::warn!(error = %error_chain(&e), "image gc failed"),
        }
        report
    }
}

/// Opens the image store; a previous run in this process (an agent restarted in place) may
/// still be letting go of it.
async fn open_store(sc: StoreConfig) -> Result<ImageStore, tepui_image::Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ImageStore::open(sc.clone()) {
            Err(tepui_image::Error::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}
