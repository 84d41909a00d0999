//! Host volumes checked where they are mounted. The agent's check of a path (at launch) says
//! nothing about what the path is when the container is built: a task that can write under
//! an allowed directory could swap a directory for a symlink to `/etc` in between. So the
//! shim opens each volume itself, just before it builds the container, beneath its allowed
//! root with no way out (`openat2` with `RESOLVE_BENEATH`: no `..` above it, no absolute or
//! magic links), and after libcontainer mounted it, checks that what the container sees at
//! the target is that very directory (same device and inode, looked up inside the container's
//! root). A mismatch fails the start before the task's program runs.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use serde::{Deserialize, Serialize};

/// A host volume as the shim checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVolume {
    /// The allowed directory it is under (trusted: the agent's configuration).
    pub root: PathBuf,
    /// The path under `root`, relative, without `..`.
    pub rel: PathBuf,
    /// Where it appears in the container.
    pub target: PathBuf,
}

/// The identity of an opened directory or file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    dev: u64,
    ino: u64,
}

fn ident(fd: &OwnedFd) -> std::io::Result<Ident> {
    let st = nix::sys::stat::fstat(fd.as_fd())?;
    Ok(Ident {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Splits `path` into the allowed root it is lexically under and the rest.
pub fn split_under(path: &Path, allowed: &[PathBuf]) -> Option<(PathBuf, PathBuf)> {
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    allowed.iter().find_map(|a| {
        let rel = path.strip_prefix(a).ok()?;
        Some((a.clone(), rel.to_path_buf()))
    })
}

/// Opens the volume beneath its root, following no link out of it.
pub fn open_beneath(v: &HostVolume) -> Result<(OwnedFd, Ident), String> {
    let root = nix::fcntl::open(
        &v.root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("host volume root {}: {e}", v.root.display()))?;
    let rel = if v.rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        v.rel.as_path()
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_fd(), rel, how).map_err(|e| {
        format!(
            "host volume {}: {e} (it must stay under {} when mounted; a link leading out is refused)",
            v.root.join(&v.rel).display(),
            v.root.display()
        )
    })?;
    let id = ident(&fd).map_err(|e| format!("host volume {}: {e}", v.root.join(&v.rel).display()))?;
    Ok((fd, id))
}

/// What the container whose init is `pid` (created, not started) has at `target`.
pub fn mounted_ident(pid: i32, target: &Path) -> Result<Ident, String> {
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("container root of pid {pid}: {e}"))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_fd(), target, how).map_err(|e| format!("volume target {}: {e}", target.display()))?;
    ident(&fd).map_err(|e| format!("volume target {}: {e}", target.display()))
}

/// Checks that the container sees, at every volume's target, what was opened.
pub fn verify_mounted(pid: i32, opened: &[(HostVolume, Ident)]) -> Result<(), String> {
    for (v, want) in opened {
        let got = mounted_ident(pid, &v.target)?;
        if got != *want {
            return Err(format!(
                "host volume {} changed while it was mounted at {}; refused",
                v.root.join(&v.rel).display(),
                v.target.display()
            ));
        }
    }
    Ok(())
}

/// Device and inode of a path.
#[cfg(test)]
pub fn path_ident(path: &Path) -> std::io::Result<Ident> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path)?;
    Ok(Ident {
        dev: md.dev(),
        ino: md.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_under_their_allowed_root() {
        let allowed = vec![PathBuf::from("/srv/data"), PathBuf::from("/mnt")];
        assert_eq!(
            split_under(Path::new("/srv/data/a/b"), &allowed),
            Some((PathBuf::from("/srv/data"), PathBuf::from("a/b")))
        );
        assert_eq!(
            split_under(Path::new("/srv/data"), &allowed),
            Some((PathBuf::from("/srv/data"), PathBuf::new()))
        );
        assert_eq!(split_under(Path::new("/srv/database"), &allowed), None);
        assert_eq!(split_under(Path::new("/srv/data/../../etc"), &allowed), None);
        assert_eq!(split_under(Path::new("srv/data/a"), &allowed), None);
    }

    #[test]
    fn links_out_of_the_root_are_refused_and_links_inside_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("allowed");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", root.join("up")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inside")).unwrap();
        let v = |rel: &str| HostVolume {
            root: root.clone(),
            rel: rel.into(),
            target: "/data".into(),
        };
        let (_, real) = open_beneath(&v("real")).unwrap();
        assert_eq!(real, path_ident(&root.join("real")).unwrap());
        let (_, inside) = open_beneath(&v("inside")).unwrap();
        assert_eq!(inside, real);
        assert!(open_beneath(&v("abs")).is_err());
        assert!(open_beneath(&v("up")).is_err());
        assert!(open_beneath(&v("")).is_ok());
    }

    #[test]
    fn a_different_directory_at_the_target_is_refused() {
        // Our own process stands in for the container: its root is the host's.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let v = HostVolume {
            root: dir.path().into(),
            rel: "a".into(),
            target: dir.path().join("b"),
        };
        let (_, a) = open_beneath(&v).unwrap();
        let pid = std::process::id() as i32;
        assert!(verify_mounted(pid, &[(v.clone(), a)]).unwrap_err().contains("changed"));
        let same = HostVolume {
            target: dir.path().join("a"),
            ..v
        };
        assert!(verify_mounted(pid, &[(same, a)]).is_ok());
    }
}
