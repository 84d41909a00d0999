//! Container root filesystems from unpacked layers: an overlay mount (layers as lower dirs,
//! a per-container upper and work dir), or, where overlay cannot be mounted, a private copy with
//! the layers applied in order.
//!
//! In `container_dir` the store owns `rootfs/` (the mount point or the copy), `upper/`, `work/`
//! and `rootfs.json` (what was made, so it can be undone); nothing else there is touched.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::SFlag;
use serde::{Deserialize, Serialize};

use crate::sys;

/// How a container rootfs is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsMode {
    /// Overlay if the kernel mounts it, else a copy.
    Auto,
    /// Overlay only; an error if it cannot be mounted.
    Overlay,
    /// Always a private copy (slower, more disk, works anywhere).
    Copy,
}

/// What [`crate::ImageStore::prepare_rootfs`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rootfs {
    /// The directory to use as the container's root.
    pub path: PathBuf,
    /// `Overlay` or `Copy`: how it was made.
    pub mode: RootfsMode,
    /// The image's normalized reference.
    pub reference: String,
    /// The image's config digest.
    pub image_id: crate::Digest,
    /// What to run, from the image config.
    pub config: crate::ImageConfig,
}

pub(crate) const STATE_FILE: &str = "rootfs.json";

pub(crate) struct Dirs {
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub state: PathBuf,
}

pub(crate) fn dirs(container_dir: &Path) -> Dirs {
    Dirs {
        rootfs: container_dir.join("rootfs"),
        upper: container_dir.join("upper"),
        work: container_dir.join("work"),
        state: container_dir.join(STATE_FILE),
    }
}

/// The overlay mount data for these lower dirs (bottom first), or why it cannot be built.
pub(crate) fn overlay_options(lowers_bottom_first: &[PathBuf], upper: &Path, work: &Path) -> Result<String, String> {
    let bad = |p: &Path| {
        let s = p.to_string_lossy();
        s.contains(':') || s.contains(',') || s.contains('\\')
    };
    if lowers_bottom_first.is_empty() {
        return Err("the image has no layers".to_string());
    }
    if let Some(p) = lowers_bottom_first
        .iter()
        .map(PathBuf::as_path)
        .chain([upper, work])
        .find(|p| bad(p))
    {
        return Err(format!(
            "path {} has ':' or ',' which overlay options cannot carry",
            p.display()
        ));
    }
    let lower: Vec<String> = lowers_bottom_first
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    // The kernel takes one page of mount data.
    if data.len() >= 4000 {
        return Err(format!(
            "{} layers make the overlay options too long",
            lowers_bottom_first.len()
        ));
    }
    Ok(data)
}

/// Mounts an overlay of `lowers` (bottom first) at `d.rootfs`.
pub(crate) fn mount_overlay(lowers: &[PathBuf], d: &Dirs) -> io::Result<()> {
    let data = overlay_options(lowers, &d.upper, &d.work).map_err(io::Error::other)?;
    for dir in [&d.upper, &d.work, &d.rootfs] {
        fs::create_dir_all(dir)?;
    }
    mount(
        Some("overlay"),
        &d.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let (Ok(md), Some(parent)) = (fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != md.dev())
}

/// Unmounts `path` if it is mounted: normally, or lazily if busy, so nothing is leaked.
pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    for _ in 0..8 {
        if !is_mount_point(path) {
            return Ok(());
        }
        match umount2(path, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => umount2(path, MntFlags::MNT_DETACH).map_err(io::Error::from)?,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    if is_mount_point(path) {
        return Err(io::Error::other(format!("{} is still mounted", path.display())));
    }
    Ok(())
}

/// Removes what the store made in a container dir (after unmounting).
pub(crate) fn remove_dirs(d: &Dirs) -> io::Result<()> {
    for dir in [&d.rootfs, &d.upper, &d.work] {
        sys::remove_any(dir)?;
    }
    sys::remove_any(&d.state)
}

/// Builds a private copy of the layers (bottom first, each in overlay format) at `dest`.
pub(crate) fn flatten(layers: &[PathBuf], dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    for layer in layers {
        let mut links = HashMap::new();
        apply_dir(layer, dest, &mut links)?;
        if let Ok(md) = fs::symlink_metadata(layer) {
            sys::copy_metadata(dest, &md)?;
        }
    }
    Ok(())
}

/// Applies one layer directory onto `dst`: whiteouts delete, opaque directories replace, the
/// rest is copied with owner, mode, times and xattrs. Hard links inside a layer stay linked.
fn apply_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from)?;
        if sys::is_whiteout(&md) {
            sys::remove_any(&to)?;
            continue;
        }
        if md.is_dir() {
            let opaque = sys::get_xattr(&from, sys::OVERLAY_OPAQUE_XATTR)?.is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&to) {
                Ok(existing) if existing.is_dir() => {
                    if opaque {
                        for child in fs::read_dir(&to)? {
                            sys::remove_any(&child?.path())?;
                        }
                    }
                }
                Ok(_) => {
                    fs::remove_file(&to)?;
                    fs::create_dir(&to)?;
                }
                Err(_) => fs::create_dir(&to)?,
            }
            apply_dir(&from, &to, links)?;
            copy_xattrs(&from, &to)?;
            sys::copy_metadata(&to, &md)?;
            continue;
        }
        sys::remove_any(&to)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            if md.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    fs::hard_link(first, &to)?;
                    continue;
                }
                links.insert(key, to.clone());
            }
            fs::copy(&from, &to)?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                // Sockets do not belong in images.
                continue;
            };
            let rdev = md.rdev();
            sys::make_node(
                &to,
                kind,
                md.mode(),
                nix::sys::stat::major(rdev),
                nix::sys::stat::minor(rdev),
            )?;
        }
        copy_xattrs(&from, &to)?;
        sys::copy_metadata(&to, &md)?;
    }
    Ok(())
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(from)?.file_type().is_symlink() {
        return Ok(());
    }
    for name in sys::list_xattrs(from)? {
        if name.starts_with(sys::RESERVED_XATTR_PREFIX) {
            continue;
        }
        if let Some(value) = sys::get_xattr(from, &name)? {
            sys::set_xattr(to, &name, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_put_the_top_layer_first() {
        let lowers = vec![PathBuf::from("/s/l/a"), PathBuf::from("/s/l/b")];
        let opts = overlay_options(&lowers, Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(opts, "lowerdir=/s/l/b:/s/l/a,upperdir=/c/upper,workdir=/c/work");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err());
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/store/layers/{i:064}")))
            .collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w"))
            .unwrap_err()
            .contains("too long"));
    }
}
