//! The OCI runtime spec (`config.json`) for a task, and user names resolved in its rootfs.
//! Pure functions: a spec in, JSON out, so they are tested without containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::spec::{Network, Rootfs, TaskSpec, VolumeSource};
use crate::Error;

/// Where the task's sandbox data directory appears inside the container.
pub const SANDBOX_MOUNT: &str = "/mnt/sandbox";

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set without NET_RAW (no raw sockets, so no forged packets
/// on a shared network): enough for ordinary programs, nothing that reaches outside the
/// container. A task that is not root has none of them once its program runs.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A resolved user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

/// Who a task runs as when it names nobody: `nobody`, uid and gid 65534.
pub const DEFAULT_UID: u32 = 65534;

/// Whether a user spec asks for root (`root`, `0`, with or without a group).
pub fn is_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("root" | "0"))
}

/// Resolves `uid`, `uid:gid`, `name`, `name:group` against the `/etc/passwd` and `/etc/group`
/// of `root` (a rootfs, or `/` for the host's), read as the container would see them. No user
/// is [`DEFAULT_UID`]; `root` is uid 0 even in a rootfs without `/etc/passwd`.
pub fn resolve_user(user: Option<&str>, root: &Path) -> Result<User, Error> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(User {
            uid: DEFAULT_UID,
            gid: DEFAULT_UID,
            additional_gids: Vec::new(),
            home: Some("/".into()),
        });
    };
    let read = |rel: &str| -> Result<String, Error> {
        match crate::inroot::read_in_root(root, rel, crate::inroot::MAX_ETC_FILE) {
            Ok(data) => Ok(String::from_utf8_lossy(&data.unwrap_or_default()).into_owned()),
            Err(e) => Err(Error::InvalidSpec(format!("user {user:?}: the rootfs's {e}"))),
        }
    };
    let (passwd, group) = (read("etc/passwd")?, read("etc/group")?);
    resolve_user_in(user, &passwd, &group)
}

pub(crate) fn resolve_user_in(spec: &str, passwd: &str, group: &str) -> Result<User, Error> {
    let bad = |why: &str| Error::InvalidSpec(format!("user {spec:?}: {why}"));
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // name:x:uid:gid:gecos:home:shell
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = match u.parse::<u32>() {
        Ok(uid) => pw.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => pw.iter().find(|f| f[0] == u),
    };
    let (uid, mut gid, name, home) = match (u.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>().map_err(|_| bad("bad passwd entry"))?,
            f[3].parse::<u32>().map_err(|_| bad("bad passwd entry"))?,
            Some(f[0]),
            f.get(5).map(|h| h.to_string()),
        ),
        (Ok(uid), None) => (uid, uid, None, None),
        (Err(_), None) if u == "root" => (0, 0, None, Some("/root".into())),
        (Err(_), None) => return Err(bad("no such user in the rootfs's /etc/passwd")),
    };
    // name:x:gid:members
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| bad("no such group in the rootfs's /etc/group"))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in &gr {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional_gids.contains(&id) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Everything besides the [`TaskSpec`] that goes into the container's config.
pub struct OciInputs<'a> {
    pub spec: &'a TaskSpec,
    pub user: &'a User,
    /// The directory that becomes `/` (for [`Rootfs::Host`], an empty one in the sandbox).
    pub rootfs: &'a Path,
    /// Host directories bound read-only under `/` for [`Rootfs::Host`].
    pub host_binds: &'a [PathBuf],
    /// The task's data directory, mounted at [`SANDBOX_MOUNT`].
    pub sandbox_data: &'a Path,
    /// A generated `/etc/hosts`.
    pub hosts_file: Option<&'a Path>,
    pub resolv_conf: Option<&'a Path>,
    /// Absolute cgroup path, for example `/tepui/<id>`.
    pub cgroup_path: &'a str,
    /// The pids limit of a task that gives none.
    pub default_pids: u64,
    /// Paths hidden from [`Rootfs::Host`] tasks (an empty file or directory in their place).
    pub host_masks: &'a [PathBuf],
    /// Map the task's users into a user namespace: container uid/gid 0.. onto host ids
    /// `userns.0..userns.0 + userns.1`.
    pub userns: Option<(u32, u32)>,
}

/// Docker's masked paths: what in /proc and /sys tells about, or reaches, the host.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths: kernel settings a task could otherwise write as root.
const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Environment the runtime adds: ports and the sandbox.
pub fn task_env(spec: &TaskSpec) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let name_key = |n: &str| {
        n.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    match &spec.network {
        Network::Host { ports } => {
            for (i, p) in ports.iter().enumerate() {
                env.insert(format!("PORT{i}"), p.port.to_string());
                if let Some(n) = &p.name {
                    env.insert(format!("PORT_{}", name_key(n)), p.port.to_string());
                }
            }
            if let Some(p) = ports.first() {
                env.insert("PORT".into(), p.port.to_string());
            }
        }
        Network::Bridge { ports } => {
            for (i, p) in ports.iter().enumerate() {
                env.insert(format!("PORT{i}"), p.container_port.to_string());
                env.insert(format!("HOST_PORT{i}"), p.host_port.to_string());
                if let Some(n) = &p.name {
                    let k = name_key(n);
                    env.insert(format!("PORT_{k}"), p.container_port.to_string());
                    env.insert(format!("HOST_PORT_{k}"), p.host_port.to_string());
                }
            }
            if let Some(p) = ports.first() {
                env.insert("PORT".into(), p.container_port.to_string());
            }
        }
        Network::None | Network::Join { .. } => {}
    }
    env.insert("TEPUI_TASK_ID".into(), spec.id.clone());
    env.insert("TEPUI_SANDBOX".into(), SANDBOX_MOUNT.into());
    env.insert("MESOS_SANDBOX".into(), SANDBOX_MOUNT.into());
    env
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate", "nosuid", "nodev"];
    if read_only {
        options.push("ro");
    }
    json!({
        "destination": target,
        "type": "bind",
        "source": source,
        "options": options,
    })
}

/// The OCI runtime config for a task.
pub fn config(inputs: &OciInputs<'_>) -> Result<Value, Error> {
    let spec = inputs.spec;
    let host = matches!(spec.rootfs, Rootfs::Host);

    // Environment: runtime variables first, the task's own override them, PATH and HOME
    // default when missing.
    let mut env = task_env(spec);
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    if let Some(home) = &inputs.user.home {
        env.entry("HOME".into()).or_insert_with(|| home.clone());
    }
    // A host task sees the host's files, but only under the directories bound into it.
    let files = if host { Path::new("/") } else { inputs.rootfs };
    let args = crate::shell::direct(&spec.args, files, &env["PATH"], |p| {
        !host || inputs.host_binds.iter().any(|b| p.starts_with(b))
    })
    .unwrap_or_else(|| spec.args.clone());
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let cwd = match &spec.cwd {
        Some(c) if c.is_absolute() => c.clone(),
        Some(c) => return Err(Error::InvalidSpec(format!("cwd {c:?} is not absolute"))),
        None if host => PathBuf::from(SANDBOX_MOUNT),
        None => PathBuf::from("/"),
    };

    let mut mounts = vec![
        // The root again on itself, without set-uid programs or device files: libcontainer has
        // no option for the root mount's flags, and later mounts stack on this one.
        json!({"destination": "/", "type": "bind", "source": inputs.rootfs,
               "options": ["rbind", "rprivate", "nosuid", "nodev"]}),
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
    ];
    // A joined namespace is not the container's own either: its sysfs cannot be mounted
    // from the task's user namespace.
    let host_net = matches!(spec.network, Network::Host { .. } | Network::Join { .. });
    if inputs.userns.is_some() && host_net {
        // sysfs can only be mounted by the owner of the network namespace: as runc does, the
        // host's, read-only, in its place.
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys",
                           "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev", "ro"]}));
    } else {
        mounts.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}));
    }
    if host {
        for dir in inputs.host_binds {
            // A symlinked top-level directory (merged /usr) is recreated as a symlink in
            // the rootfs by the caller; only real directories are bound.
            if dir.is_dir() && !dir.is_symlink() {
                mounts.push(bind(dir, dir, true));
            }
        }
    }
    if host || spec.read_only_rootfs {
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]}));
    }
    mounts.push(bind(inputs.sandbox_data, Path::new(SANDBOX_MOUNT), false));
    if let Some(h) = inputs.hosts_file {
        mounts.push(bind(h, Path::new("/etc/hosts"), true));
    }
    if let Some(r) = inputs.resolv_conf {
        mounts.push(bind(r, Path::new("/etc/resolv.conf"), true));
    }
    for v in &spec.volumes {
        if !v.target.is_absolute() {
            return Err(Error::InvalidSpec(format!(
                "volume target {:?} is not absolute",
                v.target
            )));
        }
        let source = match &v.source {
            VolumeSource::Host(p) => p.clone(),
            VolumeSource::Sandbox(rel) => inputs.sandbox_data.join(rel),
            VolumeSource::Shared(p) => p.clone(),
        };
        mounts.push(bind(&source, &v.target, v.read_only));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
    ];
    match &spec.network {
        Network::Host { .. } => {}
        Network::Join { netns } => namespaces.push(json!({"type": "network", "path": netns})),
        Network::Bridge { .. } | Network::None => namespaces.push(json!({"type": "network"})),
    }

    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if let Some(cpus) = spec.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(Error::InvalidSpec(format!("cpus {cpus} must be positive")));
        }
        let period: u64 = 100_000;
        resources["cpu"] = json!({
            "shares": ((cpus * 1024.0).round() as u64).max(2),
            "quota": ((cpus * period as f64).round() as i64).max(1000),
            "period": period,
        });
    }
    if let Some(mb) = spec.mem_mb {
        if mb == 0 {
            return Err(Error::InvalidSpec("mem_mb must be positive".into()));
        }
        resources["memory"] = json!({ "limit": (mb as i64) * 1024 * 1024 });
    }
    // Always a limit: a fork bomb stops at it, not at the host's.
    let pids = spec.pids.unwrap_or(inputs.default_pids);
    if pids == 0 {
        return Err(Error::InvalidSpec("pids must be positive".into()));
    }
    resources["pids"] = json!({ "limit": pids as i64 });

    let mut masked: Vec<String> = MASKED.iter().map(|p| p.to_string()).collect();
    if host {
        masked.extend(inputs.host_masks.iter().map(|p| p.to_string_lossy().into_owned()));
    }
    let (uid_mappings, gid_mappings) = match inputs.userns {
        Some((host_id, size)) => {
            namespaces.push(json!({"type": "user"}));
            let m = json!([{"containerID": 0, "hostID": host_id, "size": size}]);
            (Some(m.clone()), Some(m))
        }
        None => (None, None),
    };

    let hostname: String = spec.id.chars().take(63).collect();
    let caps = CAPS.to_vec();
    let readonly_root = host || spec.read_only_rootfs;
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": inputs.user.uid,
                "gid": inputs.user.gid,
                "additionalGids": inputs.user.additional_gids,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": true,
        },
        "root": { "path": inputs.rootfs, "readonly": readonly_root },
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": inputs.cgroup_path,
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": masked,
            "readonlyPaths": READ_ONLY,
            // No "seccomp": the shim installs the filter compiled once by the agent
            // (crate::seccomp), not libcontainer in each container's init.
        },
    });
    if let (Some(u), Some(g)) = (uid_mappings, gid_mappings) {
        config["linux"]["uidMappings"] = u;
        config["linux"]["gidMappings"] = g;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{HostPort, PortMapping, Protocol};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nstaff:x:50:www\naudio:x:29:other\n";

    #[test]
    fn users_resolve_by_name_and_number() {
        let u = resolve_user_in("www", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (33, 33, vec![50]));
        assert_eq!(u.home.as_deref(), Some("/var/www"));
        let u = resolve_user_in("1000:1001", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
        let u = resolve_user_in("1000", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = resolve_user_in("www:staff", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        assert!(resolve_user_in("nobody", PASSWD, GROUP).is_err());
        assert!(resolve_user_in("www:nogroup", PASSWD, GROUP).is_err());
    }

    #[test]
    fn users_are_looked_up_in_the_rootfs_never_through_its_links_to_the_host() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), PASSWD).unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("passwd"), root.path().join("etc/passwd")).unwrap();
        let e = resolve_user(Some("www"), root.path()).unwrap_err();
        assert!(e.to_string().contains("no such user"), "{e}");
        // The same file inside the rootfs is found.
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(resolve_user(Some("www"), root.path()).unwrap().uid, 33);
        // A directory where the file should be: a clear error.
        std::fs::create_dir(root.path().join("etc/group")).unwrap();
        let e = resolve_user(Some("www"), root.path()).unwrap_err();
        assert!(e.to_string().contains("/etc/group is not a regular file"), "{e}");
    }

    fn spec(network: Network) -> TaskSpec {
        TaskSpec {
            id: "t1".into(),
            rootfs: Rootfs::Path("/r".into()),
            args: vec!["sh".into()],
            env: [("PATH".to_string(), "/bin".to_string())].into(),
            user: None,
            cwd: None,
            cpus: Some(0.5),
            mem_mb: Some(16),
            pids: Some(8),
            network,
            volumes: vec![],
            read_only_rootfs: false,
            kill_grace_period: std::time::Duration::from_secs(1),
            secrets: Default::default(),
            resolver: None,
        }
    }

    #[test]
    fn ports_become_environment() {
        let s = spec(Network::Host {
            ports: vec![
                HostPort {
                    name: Some("http".into()),
                    port: 31000,
                },
                HostPort {
                    name: None,
                    port: 31001,
                },
            ],
        });
        let env = task_env(&s);
        assert_eq!(env["PORT0"], "31000");
        assert_eq!(env["PORT1"], "31001");
        assert_eq!(env["PORT_HTTP"], "31000");
        let s = spec(Network::Bridge {
            ports: vec![PortMapping {
                name: Some("web-ui".into()),
                host_port: 31000,
                container_port: 8080,
                protocol: Protocol::Tcp,
            }],
        });
        let env = task_env(&s);
        assert_eq!(env["PORT0"], "8080");
        assert_eq!(env["HOST_PORT0"], "31000");
        assert_eq!(env["PORT_WEB_UI"], "8080");
    }

    #[test]
    fn config_is_a_valid_oci_spec_with_limits() {
        let s = spec(Network::Bridge { ports: vec![] });
        let user = resolve_user_in("0", PASSWD, GROUP).unwrap();
        let v = config(&OciInputs {
            spec: &s,
            user: &user,
            rootfs: Path::new("/r"),
            host_binds: &[],
            sandbox_data: Path::new("/s/data"),
            hosts_file: None,
            resolv_conf: None,
            cgroup_path: "/tepui/t1",
            default_pids: 2048,
            host_masks: &[],
            userns: None,
        })
        .unwrap();
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        // The shim installs the compiled filter; libcontainer must not build it again in the
        // container's init, under the task's CPU limit.
        assert!(parsed.linux().as_ref().unwrap().seccomp().is_none());
        let res = parsed.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(16 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 8);
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(res.cpu().as_ref().unwrap().shares(), Some(512));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        let env = v["process"]["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e == "PATH=/bin"));
        assert!(parsed.process().as_ref().unwrap().rlimits().is_none());
    }

    #[test]
    fn a_task_of_a_group_joins_its_network_namespace_and_mounts_the_shared_volume() {
        let mut s = spec(Network::Join {
            netns: "/proc/42/ns/net".into(),
        });
        s.volumes.push(crate::spec::Volume {
            source: VolumeSource::Shared("/g/shared/data".into()),
            target: "/data".into(),
            read_only: false,
        });
        let user = resolve_user_in("0", PASSWD, GROUP).unwrap();
        let v = config(&OciInputs {
            spec: &s,
            user: &user,
            rootfs: Path::new("/r"),
            host_binds: &[],
            sandbox_data: Path::new("/s/data"),
            hosts_file: None,
            resolv_conf: None,
            cgroup_path: "/tepui/t1",
            default_pids: 2048,
            host_masks: &[],
            userns: None,
        })
        .unwrap();
        serde_json::from_value::<oci_spec::runtime::Spec>(v.clone()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        let net: Vec<_> = ns.iter().filter(|n| n["type"] == "network").collect();
        assert_eq!(
            net,
            [&serde_json::json!({"type": "network", "path": "/proc/42/ns/net"})]
        );
        let mounts = v["mounts"].as_array().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/data" && m["source"] == "/g/shared/data"));
        assert!(!task_env(&s).contains_key("PORT0"));
    }
}
