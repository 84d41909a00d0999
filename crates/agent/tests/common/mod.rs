//! A task manager on real containers (the shim is this crate's test binary), a busybox image
//! from the image crate's test support, and a stand-in for the leader that receives and
//! acknowledges status updates the way the session hands them out.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tepui_agent::{RuntimeConfig, TaskConfig, TaskManager};
use tepui_proto::agent::{StatusUpdate, TaskDef, TaskLaunch};

pub const SHIM: &str = env!("CARGO_BIN_EXE_tepui-agent-shim-test");
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The test image's name in the store.
pub const BUSYBOX: &str = "tepui-test/busybox:latest";

pub fn require_environment() {
    if let Err(e) = tepui_image::testimage::require_busybox() {
        panic!("{e}");
    }
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "these tests run containers: run them as root"
    );
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub cfg: TaskConfig,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut TaskConfig)) -> Fixture {
        require_environment();
        // Under /var/tmp: a disk filesystem (overlay upper dirs and trusted xattrs), not tmpfs.
        let tmp = tempfile::Builder::new()
            .prefix("tepui-agent-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let mut cfg = TaskConfig::new(tmp.path().join("agent"));
        cfg.runtime = RuntimeConfig {
            shim_program: SHIM.into(),
            shim_args: vec!["shim".into()],
            ..RuntimeConfig::default()
        };
        f(&mut cfg);
        Fixture { tmp, cfg }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub async fn open(&self) -> TaskManager {
        TaskManager::open(self.cfg.clone())
            .await
            .expect("the task manager opens")
    }

    /// Opens the manager with the busybox test image imported as [`BUSYBOX`].
    pub async fn open_with_busybox(&self) -> TaskManager {
        let mgr = self.open().await;
        let layout = self.path("layout");
        tepui_image::testimage::build_busybox_layout(&layout, "latest").unwrap();
        mgr.images().import(&layout, Some(BUSYBOX)).unwrap();
        mgr
    }
}

impl Drop for Fixture {
    /// A test that fails midway leaves containers running and rootfs mounted inside the
    /// temporary directory: stop them and unmount before it is deleted (never delete through
    /// a mount). Off the test's runtime, which may be the one unwinding.
    fn drop(&mut self) {
        let root = self.cfg.data_dir.join("runtime");
        let runtime_cfg = self.cfg.runtime.clone();
        let tmp = self.tmp.path().to_path_buf();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(runtime) = tepui_runtime::Runtime::new(&root, runtime_cfg) else {
                    return;
                };
                for (id, st) in runtime.adopt().await.unwrap_or_default() {
                    if !st.state.is_terminal() {
                        let _ = runtime.kill(&id).await;
                        let _ = tokio::time::timeout(Duration::from_secs(20), runtime.wait(&id)).await;
                    }
                }
            });
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut under: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| Path::new(m).starts_with(&tmp))
                .collect();
            under.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in under {
                let _ = std::process::Command::new("umount").args(["-l", m]).status();
            }
        })
        .join();
    }
}

/// Unique on the host across concurrent tests and repeated runs (cgroups are global).
pub fn task_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

pub fn launch(id: &str, image: Option<&str>, args: &[&str]) -> TaskLaunch {
    TaskLaunch {
        task_id: id.into(),
        name: id.into(),
        def: TaskDef {
            image: image.map(str::to_string),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            user: None,
            cwd: None,
            cpus_milli: 500,
            mem_mb: 64,
            disk_mb: 0,
            pids: Some(64),
            network: "host".into(),
            ports: vec![],
            volumes: vec![],
            read_only_rootfs: false,
            kill_grace_ms: 1000,
            health_checks: vec![],
            secrets: vec![],
        },
        secret_values: vec![],
        secret_error: None,
        executor: None,
    }
}

/// Plays the leader's side of status updates: takes what the manager has due, records it
/// and (unless told not to) acknowledges it.
pub struct Leader {
    pub mgr: TaskManager,
    pub ack: bool,
    pub seen: Vec<StatusUpdate>,
}

impl Leader {
    pub fn new(mgr: &TaskManager) -> Leader {
        Leader {
            mgr: mgr.clone(),
            ack: true,
            seen: Vec::new(),
        }
    }

    fn pump(&mut self) {
        for u in self.mgr.due_updates(Instant::now()) {
            if self.ack {
                self.mgr.ack(&u.task_id, &u.uuid);
            }
            self.seen.push(u);
        }
    }

    /// Launches a busybox `sleep 1000` named after `name` and waits until it runs; its id and
    /// its init's pid.
    pub async fn run_sleeper(&mut self, name: &str) -> (String, i32) {
        let id = task_id(name);
        self.mgr
            .launch(launch(&id, Some(BUSYBOX), &["/bin/busybox", "sleep", "1000"]));
        self.wait_state(&id, "TASK_RUNNING").await;
        let pid = self.mgr.runtime().status(&id).await.unwrap().pid.unwrap();
        (id, pid)
    }

    /// The states the task went through, as received, in order.
    pub fn states(&self, task: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|u| u.task_id == task)
            .map(|u| u.state.clone())
            .collect()
    }

    pub fn last(&self, task: &str) -> Option<&StatusUpdate> {
        self.seen.iter().rev().find(|u| u.task_id == task)
    }

    /// Receives updates until one of `task` matches `wanted`; returns it.
    pub async fn wait_update(
        &mut self,
        task: &str,
        what: &str,
        wanted: impl Fn(&StatusUpdate) -> bool,
    ) -> StatusUpdate {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.pump();
            if let Some(u) = self.seen.iter().find(|u| u.task_id == task && wanted(u)) {
                return u.clone();
            }
            if tokio::time::timeout_at(deadline, self.mgr.changed()).await.is_err() {
                self.pump();
                panic!(
                    "task {task}: no update {what} within {DEADLINE:?}; last: {:?}",
                    self.last(task)
                );
            }
        }
    }

    /// Receives updates until `task` reached `state`; returns that update.
    pub async fn wait_state(&mut self, task: &str, state: &str) -> StatusUpdate {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.pump();
            if let Some(u) = self.seen.iter().find(|u| u.task_id == task && u.state == state) {
                return u.clone();
            }
            if tokio::time::timeout_at(deadline, self.mgr.changed()).await.is_err() {
                self.pump();
                panic!(
                    "task {task} did not reach {state} within {DEADLINE:?}; it went {:?} (last: {:?})",
                    self.states(task),
                    self.last(task)
                );
            }
        }
    }

    /// Receives updates until `task` reached a final state; returns that update.
    pub async fn wait_end(&mut self, task: &str) -> StatusUpdate {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.pump();
            if let Some(u) = self
                .seen
                .iter()
                .find(|u| u.task_id == task && tepui_agent::launch::is_terminal(&u.state))
            {
                return u.clone();
            }
            if tokio::time::timeout_at(deadline, self.mgr.changed()).await.is_err() {
                panic!(
                    "task {task} did not end within {DEADLINE:?}; it went {:?}",
                    self.states(task)
                );
            }
        }
    }
}

/// Waits, level-triggered, until `f` holds.
pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next());
            state.flatten() != Some('Z')
        })
        .unwrap_or(false)
}

pub fn task_dir(fx: &Fixture, id: &str) -> PathBuf {
    fx.cfg.data_dir.join("tasks").join(tepui_agent::task_dir_name(id))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
