//! Runs one container from an OCI bundle to completion, for start-latency benchmarks
//! (`e2e/bench/runtime-start.sh` times it with hyperfine beside `runc run`).
//!
//! - `tepui-bench-run [--root DIR] [--keep] BUNDLE`: the path the agent takes. A
//!   [`TaskSpec`] is made from the bundle (its rootfs, `process.args`, `process.env`, a network
//!   namespace when the bundle has one, the read-only flag); [`Runtime::launch`] writes the
//!   sandbox and starts a shim (this executable, `shim ...`), which builds and starts the
//!   container; [`Runtime::wait`] returns once the shim has recorded the end, deleted the
//!   container and removed its cgroup. The sandbox directory is removed after, unless `--keep`.
//! - `tepui-bench-run --direct [--root DIR] BUNDLE`: libcontainer only, in this process, on
//!   the bundle's own `config.json`: build (create), start, waitpid, delete. No shim, no
//!   sandbox, no async runtime; the container shares this process's stdio, as with `runc run`.
//!
//! Exits 0 when the container's command exited 0.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tepui_runtime::{Network, Rootfs, Runtime, RuntimeConfig, TaskSpec, TaskState};

const USAGE: &str = "usage: tepui-bench-run [--direct] [--keep] [--root DIR] BUNDLE";

struct Opts {
    direct: bool,
    keep: bool,
    root: PathBuf,
    bundle: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()) == Some("shim") {
        // Dispatched before anything starts a thread, as `tepui shim` is.
        std::process::exit(tepui_runtime::shim_main(args[2..].iter().cloned()));
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tepui-bench-run: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = if opts.direct {
        run_direct(&opts)
    } else {
        run_shim(&opts)
    };
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("tepui-bench-run: the container exited with {code}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tepui-bench-run: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[OsString]) -> Result<Opts, String> {
    let mut direct = false;
    let mut keep = false;
    let mut root = PathBuf::from("/var/tmp/tepui-bench-run");
    let mut bundle = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--direct") => direct = true,
            Some("--keep") => keep = true,
            Some("--root") => root = it.next().map(PathBuf::from).ok_or("--root needs a directory")?,
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ if bundle.is_none() => bundle = Some(PathBuf::from(a)),
            _ => return Err("one bundle only".into()),
        }
    }
    let bundle = bundle.ok_or("no bundle given")?;
    let bundle = std::fs::canonicalize(&bundle).map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
    Ok(Opts {
        direct,
        keep,
        root,
        bundle,
    })
}

/// Unique enough for sequential runs, and a valid id for both tepui and libcontainer.
fn fresh_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn read_config(bundle: &Path) -> Result<serde_json::Value, String> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("parse {}: {e}", path.display()))
}

/// The task the agent would launch for this bundle.
fn task_spec(bundle: &Path, config: &serde_json::Value, id: String) -> Result<TaskSpec, String> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let args = strings(&config["process"]["args"]);
    if args.is_empty() {
        return Err("config.json has no process.args".into());
    }
    let env = strings(&config["process"]["env"])
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let root = config["root"]["path"].as_str().unwrap_or("rootfs");
    let rootfs = bundle.join(root);
    let netns = config["linux"]["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "network"));
    Ok(TaskSpec {
        id,
        rootfs: Rootfs::Path(rootfs),
        args,
        env,
        user: None,
        cwd: None,
        cpus: None,
        mem_mb: None,
        pids: None,
        network: if netns {
            Network::None
        } else {
            Network::Host { ports: Vec::new() }
        },
        volumes: Vec::new(),
        read_only_rootfs: config["root"]["readonly"].as_bool().unwrap_or(false),
        kill_grace_period: std::time::Duration::from_secs(1),
        secrets: Default::default(),
        resolver: None,
    })
}

fn run_shim(opts: &Opts) -> Result<i32, String> {
    let config = read_config(&opts.bundle)?;
    let spec = task_spec(&opts.bundle, &config, fresh_id())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let cfg = RuntimeConfig {
            cgroup_parent: "/tepui-bench".into(),
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(&opts.root, cfg).map_err(|e| e.to_string())?;
        let launched = runtime.launch(&spec).await;
        let sandbox = runtime.sandbox_dir(&spec.id);
        let outcome = match launched {
            Ok(_) => runtime.wait(&spec.id).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if opts.keep {
            eprintln!("sandbox kept: {}", sandbox.display());
        } else {
            let _ = std::fs::remove_dir_all(&sandbox);
        }
        let st = outcome?;
        match (st.state, st.exit_code) {
            (TaskState::Finished, _) => Ok(0),
            (_, Some(c)) => Ok(c),
            (state, None) => Err(format!("task ended {state:?}: {}", st.message.unwrap_or_default())),
        }
    })
}

fn run_direct(opts: &Opts) -> Result<i32, String> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;

    // As a shell or runc would leave it: the container inherits ignored signals.
    // SAFETY: single-threaded; nothing else handles SIGPIPE here.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let lc_root = opts.root.join("lc");
    std::fs::create_dir_all(&lc_root).map_err(|e| format!("create {}: {e}", lc_root.display()))?;
    let chain = tepui_common::error_chain;
    let mut container = ContainerBuilder::new(fresh_id(), SyscallType::default())
        .with_root_path(&lc_root)
        .map_err(|e| chain(&e))?
        .validate_id()
        .map_err(|e| chain(&e))?
        .as_init(&opts.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("create: {}", chain(&e)))?;
    // libcontainer's Pid is from its own nix version: go through the raw number.
    let pid = Pid::from_raw(container.pid().ok_or("the container has no init pid")?.as_raw());
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        let _ = waitpid(pid, None);
        return Err(format!("start: {}", chain(&e)));
    }
    let code = match waitpid(pid, None).map_err(|e| format!("waitpid: {e}"))? {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => return Err(format!("unexpected wait status {other:?}")),
    };
    container.delete(true).map_err(|e| format!("delete: {}", chain(&e)))?;
    Ok(code)
}
