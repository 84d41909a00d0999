#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tepui_image::{ImageStore, RootfsMode, StoreConfig};

/// Fails with a message that says what to install or how to run.
pub fn require_environment() {
    if let Err(e) = tepui_image::testimage::require_busybox() {
        panic!("{e}");
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests make device nodes, trusted xattrs and overlay mounts: run them as root"
    );
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub store: ImageStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut StoreConfig)) -> Fixture {
        require_environment();
        // Under /var/tmp: the same disk filesystem as the rest (not a tmpfs), which overlay
        // upper dirs and trusted xattrs need.
        let tmp = tempfile::Builder::new()
            .prefix("tepui-image-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let mut config = StoreConfig::new(tmp.path().join("store"));
        f(&mut config);
        let store = ImageStore::open(config).unwrap();
        Fixture { tmp, store }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn copy_mode() -> Fixture {
        Self::with(|c| c.rootfs_mode = RootfsMode::Copy)
    }

    /// Unpacked layer directories in the store.
    pub fn layer_dirs(&self) -> BTreeSet<String> {
        names(&self.store.root().join("layers"))
    }

    /// Blobs in the store.
    pub fn blob_files(&self) -> BTreeSet<String> {
        names(&self.store.root().join("blobs/sha256"))
    }

    /// Temporary leftovers anywhere in the store.
    pub fn temp_leftovers(&self) -> Vec<String> {
        let root = self.store.root();
        let mut out: Vec<String> = names(&root.join("tmp")).into_iter().collect();
        out.extend(names(&root.join("blobs/.tmp")));
        out.extend(names(&root.join("layers")).into_iter().filter(|n| n.starts_with('.')));
        out
    }
}

impl Drop for Fixture {
    /// A test that failed half-way may leave a rootfs mounted: unmount whatever is under the
    /// fixture's directory before it is deleted.
    fn drop(&mut self) {
        let base = self.tmp.path().to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let c = std::ffi::CString::new(p).unwrap();
            // SAFETY: a NUL-terminated path; MNT_DETACH has no other requirement.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` appears as a mount point in this process's mount table.
pub fn is_mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Checks what a rootfs of the test image shows: the top layer's whiteouts applied.
pub fn assert_test_image_rootfs(rootfs: &Path) {
    assert!(rootfs.join("bin/busybox").is_file(), "busybox is missing");
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(fs::read_to_string(rootfs.join("etc/hostname")).unwrap(), "tepui-test\n");
    assert!(
        fs::symlink_metadata(rootfs.join("etc/motd")).is_err(),
        "/etc/motd was whited out and must be absent"
    );
    assert!(!rootfs.join("etc/.wh.motd").exists());
    assert_eq!(
        names(&rootfs.join("data")),
        BTreeSet::from(["new".to_string()]),
        "/data is opaque"
    );
    assert_eq!(fs::read_to_string(rootfs.join("data/new")).unwrap(), "new\n");
}

/// Runs a command inside the rootfs with chroot, as a smoke test that it is a working root.
pub fn run_in(rootfs: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("chroot")
        .arg(rootfs)
        .args(args)
        .output()
        .expect("chroot runs");
    assert!(
        out.status.success(),
        "chroot {} {:?}: {}",
        rootfs.display(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
