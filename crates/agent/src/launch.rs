//! Pure translations at the task boundary: a [`TaskLaunch`] from the leader and an image's run
//! config into the container runtime's [`TaskSpec`], and the runtime's [`TaskStatus`] into the
//! Mesos task states and reasons the leader gets. No I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tepui_image::ImageConfig;
use tepui_proto::agent::{StatusUpdate, TaskLaunch};
use tepui_runtime::{
    HostPort, Network, PortMapping, Protocol, Reason, Rootfs, TaskHandle, TaskSpec, TaskState, TaskStatus, Volume,
    VolumeSource,
};

pub const TASK_STARTING: &str = "TASK_STARTING";
pub const TASK_RUNNING: &str = "TASK_RUNNING";
pub const TASK_FINISHED: &str = "TASK_FINISHED";
pub const TASK_FAILED: &str = "TASK_FAILED";
pub const TASK_KILLED: &str = "TASK_KILLED";
pub const TASK_ERROR: &str = "TASK_ERROR";
pub const TASK_LOST: &str = "TASK_LOST";
pub const TASK_DROPPED: &str = "TASK_DROPPED";
pub const TASK_GONE: &str = "TASK_GONE";

/// The command exited non-zero or died by a signal nobody sent.
pub const REASON_COMMAND_EXECUTOR_FAILED: &str = "REASON_COMMAND_EXECUTOR_FAILED";
/// The memory cgroup OOM-killed the task.
pub const REASON_CONTAINER_LIMITATION_MEMORY: &str = "REASON_CONTAINER_LIMITATION_MEMORY";
/// The container could not be made or started: image, rootfs, command not found.
pub const REASON_CONTAINER_LAUNCH_FAILED: &str = "REASON_CONTAINER_LAUNCH_FAILED";
/// Mesos' reason when a task's secrets could not be given to it.
pub const REASON_SECRET_GENERATOR_FAILED: &str = "REASON_SECRET_GENERATOR_FAILED";
/// The task's definition cannot run anywhere (bad network mode, relative volume target...).
pub const REASON_TASK_INVALID: &str = "REASON_TASK_INVALID";
/// A kill for a task this agent does not have.
pub const REASON_TASK_UNKNOWN: &str = "REASON_TASK_UNKNOWN";
/// Killed before its container ran.
pub const REASON_TASK_KILLED_DURING_LAUNCH: &str = "REASON_TASK_KILLED_DURING_LAUNCH";
/// The task's shim died without recording the end; its processes were killed.
pub const REASON_EXECUTOR_TERMINATED: &str = "REASON_EXECUTOR_TERMINATED";
/// The agent restarted while the task was being prepared, before its container existed.
pub const REASON_AGENT_RESTARTED: &str = "REASON_AGENT_RESTARTED";
/// An executor's task it never saw, after an agent restart (Mesos' words).
pub const REASON_SLAVE_RESTARTED: &str = "REASON_SLAVE_RESTARTED";
/// A framework's executor did not subscribe in time after it started.
pub const REASON_EXECUTOR_REGISTRATION_TIMEOUT: &str = "REASON_EXECUTOR_REGISTRATION_TIMEOUT";
/// A framework's executor did not subscribe again in time after the agent restarted.
pub const REASON_EXECUTOR_REREGISTRATION_TIMEOUT: &str = "REASON_EXECUTOR_REREGISTRATION_TIMEOUT";
/// A health check changed the task's health.
pub const REASON_TASK_HEALTH_CHECK_STATUS_UPDATED: &str = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";

/// The grace period when the launch gives none (`kill_grace_ms: 0`).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Whether a Mesos task state is final.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED" | "TASK_ERROR" | "TASK_LOST" | "TASK_DROPPED" | "TASK_GONE"
    )
}

/// A task state change, before it becomes a [`StatusUpdate`] (uuid, time).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// When it happened, if not now.
    pub at: Option<SystemTime>,
    /// Set by health checks.
    pub healthy: Option<bool>,
    /// The container's own address (bridge networking), said when it runs.
    pub container_ip: Option<IpAddr>,
}

impl Change {
    pub fn new(state: &'static str, reason: Option<&'static str>, message: impl Into<String>) -> Change {
        Change {
            state,
            reason,
            message: message.into(),
            exit_code: None,
            signal: None,
            at: None,
            healthy: None,
            container_ip: None,
        }
    }

    /// The task's health changed (still running).
    pub fn health(healthy: bool, message: impl Into<String>) -> Change {
        Change {
            healthy: Some(healthy),
            ..Change::new(TASK_RUNNING, Some(REASON_TASK_HEALTH_CHECK_STATUS_UPDATED), message)
        }
    }

    pub fn starting() -> Change {
        Change::new(TASK_STARTING, None, "preparing the container")
    }

    pub fn running(h: &TaskHandle) -> Change {
        let message = match h.ip {
            Some(ip) => format!("running as pid {} at {ip}", h.pid),
            None => format!("running as pid {}", h.pid),
        };
        Change {
            container_ip: h.ip.map(IpAddr::V4),
            ..Change::new(TASK_RUNNING, None, message)
        }
    }

    /// Failed before the container ran.
    pub fn launch_failed(message: impl Into<String>) -> Change {
        Change::new(TASK_FAILED, Some(REASON_CONTAINER_LAUNCH_FAILED), message)
    }

    pub fn invalid(message: impl Into<String>) -> Change {
        Change::new(TASK_ERROR, Some(REASON_TASK_INVALID), message)
    }

    /// The runtime's final status of a task.
    pub fn ended(st: &TaskStatus) -> Change {
        let code_or_signal = match (st.exit_code, st.signal) {
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), None) => format!("exited with code {c}"),
            (None, None) => "ended".to_string(),
        };
        let (state, reason, default_message) = match st.state {
            TaskState::Finished => (TASK_FINISHED, None, "the command exited with code 0".to_string()),
            TaskState::Killed => (TASK_KILLED, None, format!("killed as asked; {code_or_signal}")),
            TaskState::Failed => {
                let reason = match st.reason {
                    _ if st.oom_killed => REASON_CONTAINER_LIMITATION_MEMORY,
                    Some(Reason::MemoryLimit) => REASON_CONTAINER_LIMITATION_MEMORY,
                    Some(Reason::StartFailed) => REASON_CONTAINER_LAUNCH_FAILED,
                    Some(Reason::ShimLost) => REASON_EXECUTOR_TERMINATED,
                    Some(Reason::CommandFailed) | Some(Reason::Signaled) | None => REASON_COMMAND_EXECUTOR_FAILED,
                };
                (TASK_FAILED, Some(reason), format!("the command {code_or_signal}"))
            }
            // Not final; callers only pass final statuses.
            TaskState::Starting | TaskState::Running => (TASK_FAILED, Some(REASON_EXECUTOR_TERMINATED), code_or_signal),
        };
        Change {
            state,
            reason,
            message: st.message.clone().filter(|m| !m.is_empty()).unwrap_or(default_message),
            exit_code: st.exit_code.or((st.state == TaskState::Finished).then_some(0)),
            signal: st.signal,
            at: st.finished_at,
            healthy: None,
            container_ip: None,
        }
    }

    pub fn into_update(self, task_id: &str, uuid: String) -> StatusUpdate {
        let at = self.at.unwrap_or_else(SystemTime::now);
        StatusUpdate {
            task_id: task_id.to_string(),
            uuid,
            state: self.state.to_string(),
            reason: self.reason.map(str::to_string),
            message: self.message,
            exit_code: self.exit_code,
            signal: self.signal,
            timestamp_ms: at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            healthy: self.healthy,
            seq: None,
            container_ip: self.container_ip,
        }
    }
}

/// The runtime spec for a launch. `image` is the image's run config when the task runs in an
/// image (`rootfs` is then its prepared directory); without one it runs on the host's
/// programs. Errors say what is wrong with the task's definition.
pub fn task_spec(task: &TaskLaunch, image: Option<&ImageConfig>, rootfs: Rootfs) -> Result<TaskSpec, String> {
    let args = if !task.args.is_empty() {
        task.args.clone()
    } else if let Some(img) = image {
        img.entrypoint.iter().chain(img.cmd.iter()).cloned().collect()
    } else {
        Vec::new()
    };
    if args.is_empty() {
        return Err(match image {
            Some(_) => "no command: the task gives no args and the image no entrypoint or cmd".into(),
            None => "no command: a task without an image needs args".into(),
        });
    }

    let mut env = BTreeMap::new();
    if let Some(img) = image {
        for kv in &img.env {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    env.insert(k.to_string(), v.to_string());
                }
                _ => {}
            }
        }
    }
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));

    // The task's own `user` (root only if it asks, and the API let it); else the image's,
    // unless that is root: an image cannot make its task root. Else the runtime's default,
    // nobody.
    let user = task.user.clone().filter(|u| !u.is_empty()).or_else(|| {
        image
            .and_then(|i| i.user.clone())
            .filter(|u| !u.is_empty() && !tepui_runtime::is_root(u))
    });
    let cwd = task
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| image.and_then(|i| i.working_dir.clone()))
        .map(PathBuf::from);
    if let Some(c) = &cwd {
        if !c.is_absolute() {
            return Err(format!("cwd {c:?} must be an absolute path"));
        }
    }

    let protocol = |p: &str| match p {
        "" | "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("port protocol {other:?} is neither tcp nor udp")),
    };
    let network = match task.network.as_str() {
        "" | "host" => Network::Host {
            ports: task
                .ports
                .iter()
                .map(|p| HostPort {
                    name: p.name.clone(),
                    port: p.host_port,
                })
                .collect(),
        },
        "bridge" => Network::Bridge {
            ports: task
                .ports
                .iter()
                .map(|p| {
                    Ok(PortMapping {
                        name: p.name.clone(),
                        host_port: p.host_port,
                        container_port: if p.container_port == 0 {
                            p.host_port
                        } else {
                            p.container_port
                        },
                        protocol: protocol(&p.protocol)?,
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        "none" if task.ports.is_empty() => Network::None,
        "none" => return Err("network none cannot have ports".into()),
        other => return Err(format!("network {other:?} is not host, bridge or none")),
    };

    let mut volumes = Vec::new();
    for v in &task.volumes {
        let target = PathBuf::from(&v.target);
        if !target.is_absolute() {
            return Err(format!("volume target {:?} must be an absolute path", v.target));
        }
        let source = if v.source.starts_with('/') {
            VolumeSource::Host(PathBuf::from(&v.source))
        } else {
            VolumeSource::Sandbox(PathBuf::from(&v.source))
        };
        volumes.push(Volume {
            source,
            target,
            read_only: v.read_only,
        });
    }

    Ok(TaskSpec {
        id: task.task_id.clone(),
        rootfs,
        args,
        env,
        user,
        cwd,
        cpus: (task.cpus_milli > 0).then(|| task.cpus_milli as f64 / 1000.0),
        mem_mb: (task.mem_mb > 0).then_some(task.mem_mb),
        pids: task.pids.filter(|p| *p > 0),
        network,
        volumes,
        read_only_rootfs: task.read_only_rootfs,
        kill_grace_period: if task.kill_grace_ms == 0 {
            DEFAULT_KILL_GRACE
        } else {
            Duration::from_millis(task.kill_grace_ms)
        },
        secrets: secret_material(task)?,
        resolver: None,
    })
}

/// The secrets the leader gave with the launch, as the runtime takes them.
fn secret_material(task: &TaskLaunch) -> Result<tepui_runtime::SecretMaterial, String> {
    let mut m = tepui_runtime::SecretMaterial::default();
    for s in &task.secret_values {
        if let Some(name) = &s.env {
            m.env.insert(name.clone(), s.value.clone());
        }
        if let Some(file) = &s.file {
            if let Some(e) = tepui_common::secret_file_error(file) {
                return Err(e);
            }
            // Relative: in the sandbox, as Marathon's file-based secrets are.
            m.files.push((
                std::path::Path::new(tepui_runtime::SANDBOX_MOUNT).join(file),
                s.value.clone(),
            ));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tepui_proto::agent::{PortDef, TaskDef, VolumeDef};

    fn launch() -> TaskLaunch {
        TaskLaunch {
            task_id: "web.1".into(),
            name: "web".into(),
            def: TaskDef {
                image: Some("busybox".into()),
                args: vec![],
                env: [("B".to_string(), "task".to_string())].into(),
                user: None,
                cwd: None,
                cpus_milli: 250,
                mem_mb: 64,
                disk_mb: 0,
                pids: Some(32),
                network: "bridge".into(),
                ports: vec![
                    PortDef {
                        name: Some("http".into()),
                        host_port: 31000,
                        container_port: 8080,
                        protocol: "tcp".into(),
                    },
                    PortDef {
                        name: None,
                        host_port: 31001,
                        container_port: 0,
                        protocol: "udp".into(),
                    },
                ],
                volumes: vec![
                    VolumeDef {
                        source: "/srv/data".into(),
                        target: "/data".into(),
                        read_only: true,
                    },
                    VolumeDef {
                        source: "cache".into(),
                        target: "/cache".into(),
                        read_only: false,
                    },
                ],
                read_only_rootfs: true,
                kill_grace_ms: 1500,
                health_checks: vec![],
                secrets: vec![],
            },
            secret_values: vec![],
            secret_error: None,
            executor: None,
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into(), "junk".into()],
            working_dir: Some("/srv".into()),
            user: Some("1000".into()),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn an_image_task_takes_what_it_does_not_say_from_the_image() {
        let s = task_spec(&launch(), Some(&image()), Rootfs::Path("/r".into())).unwrap();
        assert_eq!(s.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(s.env["PATH"], "/bin");
        assert_eq!(s.env["A"], "image");
        assert_eq!(s.env["B"], "task", "the task's env overrides the image's");
        assert_eq!(s.env.len(), 3);
        assert_eq!(s.user.as_deref(), Some("1000"));
        assert_eq!(s.cwd, Some(PathBuf::from("/srv")));
        assert_eq!(s.cpus, Some(0.25));
        assert_eq!(s.mem_mb, Some(64));
        assert_eq!(s.pids, Some(32));
        assert!(s.read_only_rootfs);
        assert_eq!(s.kill_grace_period, Duration::from_millis(1500));
        assert_eq!(
            s.network,
            Network::Bridge {
                ports: vec![
                    PortMapping {
                        name: Some("http".into()),
                        host_port: 31000,
                        container_port: 8080,
                        protocol: Protocol::Tcp
                    },
                    PortMapping {
                        name: None,
                        host_port: 31001,
                        container_port: 31001,
                        protocol: Protocol::Udp
                    },
                ]
            }
        );
        assert_eq!(s.volumes[0].source, VolumeSource::Host("/srv/data".into()));
        assert!(s.volumes[0].read_only);
        assert_eq!(s.volumes[1].source, VolumeSource::Sandbox("cache".into()));
    }

    #[test]
    fn the_task_overrides_the_image() {
        let mut t = launch();
        t.def.args = vec!["echo".into(), "mine".into()];
        t.def.user = Some("nobody".into());
        t.def.cwd = Some("/tmp".into());
        t.def.network = "host".into();
        t.def.kill_grace_ms = 0;
        let s = task_spec(&t, Some(&image()), Rootfs::Path("/r".into())).unwrap();
        assert_eq!(s.args, ["echo", "mine"]);
        assert_eq!(s.user.as_deref(), Some("nobody"));
        assert_eq!(s.cwd, Some(PathBuf::from("/tmp")));
        assert_eq!(s.kill_grace_period, DEFAULT_KILL_GRACE);
        assert_eq!(
            s.network,
            Network::Host {
                ports: vec![
                    HostPort {
                        name: Some("http".into()),
                        port: 31000
                    },
                    HostPort {
                        name: None,
                        port: 31001
                    }
                ]
            }
        );
    }

    #[test]
    fn an_image_cannot_make_its_task_root_but_the_task_can_ask() {
        let mut img = image();
        for root in ["root", "0", "0:0", "root:wheel"] {
            img.user = Some(root.into());
            let s = task_spec(&launch(), Some(&img), Rootfs::Path("/r".into())).unwrap();
            assert_eq!(s.user, None, "image user {root:?} falls back to the default (nobody)");
        }
        let mut t = launch();
        t.def.user = Some("root".into());
        let s = task_spec(&t, Some(&img), Rootfs::Path("/r".into())).unwrap();
        assert_eq!(s.user.as_deref(), Some("root"));
        let mut t = launch();
        t.def.image = None;
        t.def.args = vec!["true".into()];
        assert_eq!(task_spec(&t, None, Rootfs::Host).unwrap().user, None);
    }

    #[test]
    fn bad_definitions_are_refused_with_a_reason() {
        let mut t = launch();
        t.def.image = None;
        assert!(task_spec(&t, None, Rootfs::Host).unwrap_err().contains("needs args"));
        let empty = ImageConfig::default();
        assert!(task_spec(&launch(), Some(&empty), Rootfs::Host)
            .unwrap_err()
            .contains("no entrypoint or cmd"));
        let mut t = launch();
        t.def.network = "overlay".into();
        assert!(task_spec(&t, Some(&image()), Rootfs::Host)
            .unwrap_err()
            .contains("overlay"));
        let mut t = launch();
        t.def.ports[0].protocol = "sctp".into();
        assert!(task_spec(&t, Some(&image()), Rootfs::Host)
            .unwrap_err()
            .contains("sctp"));
        let mut t = launch();
        t.def.volumes[0].target = "data".into();
        assert!(task_spec(&t, Some(&image()), Rootfs::Host)
            .unwrap_err()
            .contains("absolute"));
        let mut t = launch();
        t.def.cwd = Some("rel".into());
        assert!(task_spec(&t, Some(&image()), Rootfs::Host)
            .unwrap_err()
            .contains("absolute"));
    }

    fn status(state: TaskState) -> TaskStatus {
        let mut s: TaskStatus = serde_json::from_value(serde_json::json!({"id": "t", "state": "running"})).unwrap();
        s.state = state;
        s
    }

    #[test]
    fn runtime_ends_map_to_mesos_states_and_reasons() {
        let mut st = status(TaskState::Finished);
        st.exit_code = Some(0);
        let c = Change::ended(&st);
        assert_eq!((c.state, c.reason, c.exit_code), (TASK_FINISHED, None, Some(0)));

        let mut st = status(TaskState::Failed);
        st.exit_code = Some(3);
        st.reason = Some(Reason::CommandFailed);
        let c = Change::ended(&st);
        assert_eq!(
            (c.state, c.reason, c.exit_code),
            (TASK_FAILED, Some(REASON_COMMAND_EXECUTOR_FAILED), Some(3))
        );
        assert_eq!(c.message, "the command exited with code 3");

        let mut st = status(TaskState::Failed);
        st.signal = Some(9);
        st.oom_killed = true;
        st.reason = Some(Reason::MemoryLimit);
        st.message = Some("out of memory".into());
        let c = Change::ended(&st);
        assert_eq!(
            (c.state, c.reason, c.signal),
            (TASK_FAILED, Some(REASON_CONTAINER_LIMITATION_MEMORY), Some(9))
        );
        assert_eq!(c.message, "out of memory");

        let mut st = status(TaskState::Failed);
        st.reason = Some(Reason::StartFailed);
        assert_eq!(Change::ended(&st).reason, Some(REASON_CONTAINER_LAUNCH_FAILED));
        st.reason = Some(Reason::ShimLost);
        assert_eq!(Change::ended(&st).reason, Some(REASON_EXECUTOR_TERMINATED));

        let mut st = status(TaskState::Killed);
        st.signal = Some(15);
        let c = Change::ended(&st);
        assert_eq!((c.state, c.reason, c.signal), (TASK_KILLED, None, Some(15)));

        let u = Change::new(TASK_KILLED, Some(REASON_TASK_UNKNOWN), "not on this agent").into_update("x", "u".into());
        assert_eq!(u.state, "TASK_KILLED");
        assert_eq!(u.reason.as_deref(), Some("REASON_TASK_UNKNOWN"));
        assert!(u.timestamp_ms > 0);
        assert!(is_terminal(&u.state) && !is_terminal(TASK_RUNNING));
    }
}
