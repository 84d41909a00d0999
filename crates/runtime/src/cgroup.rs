//! What the runtime reads from and checks in cgroups itself; libcontainer creates, limits
//! and removes them. Both versions: v1 (and hybrid hosts, where libcontainer uses the v1
//! controllers) and v2 (unified).

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// v1 controllers, possibly with a cgroup2 tree at `unified` beside them (hybrid).
    V1,
    /// Only cgroup2 at the root.
    V2,
}

pub fn setup() -> Setup {
    match nix::sys::statfs::statfs(ROOT) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Setup::V2,
        _ => Setup::V1,
    }
}

fn rel(cgroup_path: &str) -> &str {
    cgroup_path.trim_start_matches('/')
}

/// The directories of one cgroup path, in every hierarchy it may live in.
pub fn dirs(cgroup_path: &str) -> Vec<PathBuf> {
    match setup() {
        Setup::V2 => vec![Path::new(ROOT).join(rel(cgroup_path))],
        Setup::V1 => {
            let mut out = Vec::new();
            if let Ok(rd) = fs::read_dir(ROOT) {
                for e in rd.flatten() {
                    let p = e.path().join(rel(cgroup_path));
                    if p.is_dir() {
                        out.push(p);
                    }
                }
            }
            out
        }
    }
}

/// How many times the memory cgroup's OOM killer killed a process of the task.
/// v2: `memory.events` `oom_kill`; v1: `memory.oom_control` `oom_kill` (kernel 4.13+),
/// falling back to `under_oom`.
pub fn oom_kills(cgroup_path: &str) -> u64 {
    match setup() {
        Setup::V2 => {
            let p = Path::new(ROOT).join(rel(cgroup_path)).join("memory.events");
            field(&fs::read_to_string(p).unwrap_or_default(), "oom_kill")
        }
        Setup::V1 => {
            let dir = Path::new(ROOT).join("memory").join(rel(cgroup_path));
            let control = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
            field(&control, "oom_kill").max(field(&control, "under_oom"))
        }
    }
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Pids still in the cgroup (any hierarchy).
pub fn procs(cgroup_path: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for d in dirs(cgroup_path) {
        for f in ["cgroup.procs", "tasks"] {
            if let Ok(text) = fs::read_to_string(d.join(f)) {
                for l in text.lines() {
                    if let Ok(p) = l.trim().parse::<i32>() {
                        if !pids.contains(&p) {
                            pids.push(p);
                        }
                    }
                }
            }
        }
    }
    pids
}

/// Changes a running container's CPU limit (`cpus`: shares and a CFS quota per 100 ms
/// period, as the container was made with) and raises its memory limit to `mem_mb`; memory is
/// never lowered under a running container (that would reclaim or OOM-kill it).
pub fn update_limits(cgroup_path: &str, cpus: Option<f64>, mem_mb: Option<u64>) -> std::io::Result<()> {
    let period: u64 = 100_000;
    let write = |p: PathBuf, value: String| {
        fs::write(&p, value).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    match setup() {
        Setup::V2 => {
            let dir = Path::new(ROOT).join(rel(cgroup_path));
            if let Some(cpus) = cpus.filter(|c| *c > 0.0 && c.is_finite()) {
                let quota = ((cpus * period as f64).round() as u64).max(1000);
                write(dir.join("cpu.max"), format!("{quota} {period}"))?;
                // libcontainer's conversion of shares to a weight.
                let shares = ((cpus * 1024.0).round() as u64).max(2);
                let weight = 1 + ((shares - 2) * 9999) / 262_142;
                write(dir.join("cpu.weight"), weight.to_string())?;
            }
            if let Some(mb) = mem_mb {
                let file = dir.join("memory.max");
                let now = fs::read_to_string(&file).unwrap_or_default();
                let bytes = mb * 1024 * 1024;
                if now.trim().parse::<u64>().is_ok_and(|n| n < bytes) {
                    write(file, bytes.to_string())?;
                }
            }
        }
        Setup::V1 => {
            if let Some(cpus) = cpus.filter(|c| *c > 0.0 && c.is_finite()) {
                let dir = Path::new(ROOT).join("cpu").join(rel(cgroup_path));
                let quota = ((cpus * period as f64).round() as u64).max(1000);
                write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                write(
                    dir.join("cpu.shares"),
                    ((cpus * 1024.0).round() as u64).max(2).to_string(),
                )?;
            }
            if let Some(mb) = mem_mb {
                let file = Path::new(ROOT)
                    .join("memory")
                    .join(rel(cgroup_path))
                    .join("memory.limit_in_bytes");
                let now = fs::read_to_string(&file).unwrap_or_default();
                let bytes = mb * 1024 * 1024;
                if now.trim().parse::<u64>().is_ok_and(|n| n < bytes) {
                    write(file, bytes.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// Makes the kernel fill each new task's v1 cpuset from its parent when the task's cgroup is
/// made. A new v1 cpuset starts with no cpus and no memory nodes, and libcontainer copies the
/// parent's into it before the task can join; each such write checks every sibling cpuset and
/// rebuilds the scheduler domains, so the thousandth task's start paid for the 999 before it.
/// With `cgroup.clone_children` on the parent the copy happens at mkdir, and libcontainer finds
/// nothing to write. Creates the parent's directories in the cpuset hierarchy (filled from
/// their own parents) on the way; does nothing on v2 or without a cpuset hierarchy.
pub fn prepare_parent(cgroup_parent: &str) -> std::io::Result<()> {
    if setup() != Setup::V1 {
        return Ok(());
    }
    let mut dir = Path::new(ROOT).join("cpuset");
    if !dir.join("cpuset.cpus").is_file() {
        return Ok(());
    }
    let with_path = |p: &Path, e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    for part in rel(cgroup_parent).split('/').filter(|p| !p.is_empty()) {
        let above = dir.clone();
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(with_path(&dir, e)),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(dir.join(file)).map_err(|e| with_path(&dir.join(file), e))?;
            if own.trim().is_empty() {
                let inherited = fs::read_to_string(above.join(file)).map_err(|e| with_path(&above.join(file), e))?;
                fs::write(dir.join(file), inherited.trim()).map_err(|e| with_path(&dir.join(file), e))?;
            }
        }
    }
    let flag = dir.join("cgroup.clone_children");
    fs::write(&flag, "1").map_err(|e| with_path(&flag, e))
}

/// Kills what is left in the cgroup and removes its directories (leaf first).
/// Used when a shim died and libcontainer's own delete never ran.
pub fn kill_and_remove(cgroup_path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for _ in 0..50 {
        let pids = procs(cgroup_path);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) with a pid read from the cgroup; at worst ESRCH.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for d in dirs(cgroup_path) {
        remove_tree(&d, &mut errors);
    }
    errors
}

fn remove_tree(dir: &Path, errors: &mut Vec<String>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path(), errors);
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            errors.push(format!("remove {}: {e}", dir.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_parse() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(super::field(t, "oom_kill"), 3);
        assert_eq!(super::field(t, "under_oom"), 0);
        assert_eq!(super::field("low 0\n", "oom_kill"), 0);
    }
}
