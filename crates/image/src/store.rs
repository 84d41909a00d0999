//! The store: its directory, its index, and the operations on both.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use tracing::{debug, info, warn};

use crate::blobs::{temp_name, Blobs};
use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::index::{self, Durability, Image, IndexFile, Lease};
use crate::layer::{self, UnpackError};
use crate::manifest::Platform;
use crate::rootfs::{self, Rootfs, RootfsMode};
use crate::sys;

/// How a store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The store's directory; it needs a filesystem with trusted xattrs and device nodes (ext4,
    /// xfs), and root.
    pub root: PathBuf,
    /// Registries (`host:port` as written in references) that may be pulled from over plain
    /// HTTP. Any other registry must speak HTTPS.
    pub insecure_registries: Vec<String>,
    /// The platform to pick from multi-platform images.
    pub platform: Platform,
    /// How container rootfs are made.
    pub rootfs_mode: RootfsMode,
    /// Layers downloaded at the same time by one pull.
    pub max_concurrent_downloads: usize,
}

impl StoreConfig {
    /// Defaults: no insecure registries, this machine's platform, overlay with a copy fallback,
    /// three parallel downloads.
    pub fn new(root: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            root: root.into(),
            insecure_registries: Vec::new(),
            platform: Platform::host(),
            rootfs_mode: RootfsMode::Auto,
            max_concurrent_downloads: 3,
        }
    }
}

/// What [`ImageStore::gc`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blobs: usize,
    pub removed_layers: usize,
    pub freed_bytes: u64,
}

/// An OCI image store. Cheap to clone; clones share the store. One process owns a store
/// directory at a time (a lock file enforces it).
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    pub(crate) blobs: Blobs,
    layers_dir: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    index_path: PathBuf,
    index: Mutex<IndexFile>,
    ops: Mutex<Ops>,
    _lock: Flock<File>,
}

/// Work in flight: digests it will need (gc leaves them alone) and how many operations may
/// have temporary files (gc cleans temporary files only when there are none).
#[derive(Default)]
struct Ops {
    pins: HashMap<Digest, usize>,
    running: usize,
}

/// An operation in flight; pins are released and the count dropped when it goes.
pub(crate) struct OpGuard {
    inner: Arc<Inner>,
    pinned: Vec<Digest>,
}

impl OpGuard {
    /// Keeps gc off these digests (blobs or diff ids) until the operation ends. Pin before
    /// checking whether something exists.
    pub(crate) fn pin(&mut self, digests: impl IntoIterator<Item = Digest>) {
        let mut ops = lock(&self.inner.ops);
        for d in digests {
            *ops.pins.entry(d.clone()).or_default() += 1;
            self.pinned.push(d);
        }
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let mut ops = lock(&self.inner.ops);
        ops.running -= 1;
        for d in self.pinned.drain(..) {
            if let Some(n) = ops.pins.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    ops.pins.remove(&d);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImageStore {
    /// Opens (creating if needed) the store at `config.root`, takes its lock and removes
    /// temporary files a crash left.
    pub fn open(config: StoreConfig) -> Result<ImageStore, Error> {
        let root = &config.root;
        fs::create_dir_all(root).ctx(|| format!("cannot create the image store {}", root.display()))?;
        let root = root
            .canonicalize()
            .ctx(|| format!("cannot resolve {}", root.display()))?;
        let lock_path = root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("cannot open {}", lock_path.display()))?;
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| Error::Locked {
            root: root.clone(),
            lock: lock_path.clone(),
        })?;
        lock.set_len(0)
            .ctx(|| format!("cannot write {}", lock_path.display()))?;
        let _ = writeln!(&mut *lock, "{}", std::process::id());

        let blobs = Blobs::open(&root)?;
        let layers_dir = root.join("layers");
        let tmp_dir = root.join("tmp");
        fs::create_dir_all(&layers_dir).ctx(|| format!("cannot create {}", layers_dir.display()))?;
        let _ = fs::remove_dir_all(&tmp_dir);
        fs::create_dir_all(&tmp_dir).ctx(|| format!("cannot create {}", tmp_dir.display()))?;
        remove_layer_temps(&layers_dir);
        let index_path = root.join("index.json");
        let mut index = index::load(&index_path)?;
        // A lease whose root filesystem is gone (its release was not saved before a power
        // loss) would hold its layers forever.
        let before = index.leases.len();
        index.leases.retain(|l| {
            let d = rootfs::dirs(&l.container_dir);
            d.state.exists() || rootfs::is_mount_point(&d.rootfs)
        });
        if index.leases.len() != before {
            warn!(
                dropped = before - index.leases.len(),
                "leases of root filesystems that are gone dropped"
            );
            index::save(&index_path, &index, Durability::Durable)?;
        }
        info!(root = %root.display(), images = index.images.len(), "image store open");
        Ok(ImageStore {
            inner: Arc::new(Inner {
                config: StoreConfig {
                    root: root.clone(),
                    ..config
                },
                blobs,
                layers_dir,
                tmp_dir,
                index_path,
                index: Mutex::new(index),
                ops: Mutex::new(Ops::default()),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.config.root
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The directory a layer is unpacked in (overlay format), by diff id.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.inner.layers_dir.join(diff_id.hex())
    }

    /// The path of a blob, by digest.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.path(digest)
    }

    /// Every image, by reference.
    pub fn list(&self) -> Vec<Image> {
        lock(&self.inner.index).images.clone()
    }

    /// An image by reference (`busybox`, `docker.io/library/busybox:latest`), id or manifest
    /// digest.
    pub fn get(&self, key: &str) -> Result<Image, Error> {
        lock(&self.inner.index)
            .find(key)
            .cloned()
            .ok_or_else(|| not_in_store(key))
    }

    /// Forgets an image (its layers and blobs stay until [`ImageStore::gc`]). Refused if
    /// `in_use` names it (by reference, id or manifest digest) or a rootfs made from it has not
    /// been released.
    pub fn remove(&self, key: &str, in_use: &HashSet<String>) -> Result<Image, Error> {
        self.update_index(Durability::Durable, |idx| {
            let image = idx.find(key).cloned().ok_or_else(|| not_in_store(key))?;
            if idx.in_use(&image, in_use) {
                return Err(Error::InUse {
                    reference: image.reference.clone(),
                });
            }
            idx.remove(&image.reference);
            info!(reference = %image.reference, "image removed");
            Ok(image)
        })
    }

    /// Deletes layers and blobs that no image, no unreleased rootfs, no operation in flight and
    /// nothing in `in_use` needs. `in_use` takes image references or ids (kept anyway while
    /// the image is in the index) and blob or layer digests to keep.
    pub fn gc(&self, in_use: &HashSet<String>) -> Result<GcReport, Error> {
        let index = lock(&self.inner.index);
        let ops = lock(&self.inner.ops);
        let mut keep = index.referenced(in_use);
        for d in ops.pins.keys() {
            keep.blobs.insert(d.clone());
            keep.diff_ids.insert(d.clone());
        }
        let mut report = GcReport::default();
        for entry in fs::read_dir(&self.inner.layers_dir)
            .ctx(|| format!("cannot list {}", self.inner.layers_dir.display()))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let remove = match Digest::from_hex(name) {
                Some(d) => !keep.diff_ids.contains(&d),
                None => name.starts_with(".tmp-") && ops.running == 0,
            };
            if remove {
                report.freed_bytes += tree_size(&entry.path());
                sys::remove_any(&entry.path()).ctx(|| format!("cannot remove layer {name}"))?;
                if !name.starts_with('.') {
                    report.removed_layers += 1;
                }
            }
        }
        for d in self.inner.blobs.list()? {
            if !keep.blobs.contains(&d) {
                report.freed_bytes += self.inner.blobs.remove(&d)?;
                report.removed_blobs += 1;
            }
        }
        if ops.running == 0 {
            self.inner.blobs.clean_temp()?;
            for entry in fs::read_dir(&self.inner.tmp_dir).into_iter().flatten().flatten() {
                let _ = sys::remove_any(&entry.path());
            }
        }
        info!(
            blobs = report.removed_blobs,
            layers = report.removed_layers,
            bytes = report.freed_bytes,
            "image store gc"
        );
        Ok(report)
    }

    /// Checks that every image's blobs and unpacked layers, and every rootfs lease's layers,
    /// are present. Returns the problems found; empty means consistent.
    pub fn check(&self) -> Vec<String> {
        let index = lock(&self.inner.index);
        let mut problems = Vec::new();
        for image in &index.images {
            for blob in image.blobs() {
                if !self.inner.blobs.exists(blob) {
                    problems.push(format!("{}: blob {blob} is missing", image.reference));
                }
            }
            for layer in &image.layers {
                if !self.layer_path(&layer.diff_id).is_dir() {
                    problems.push(format!("{}: layer {} is not unpacked", image.reference, layer.diff_id));
                }
            }
        }
        for lease in &index.leases {
            for d in &lease.diff_ids {
                if !self.layer_path(d).is_dir() {
                    problems.push(format!(
                        "rootfs {}: layer {d} is missing",
                        lease.container_dir.display()
                    ));
                }
            }
        }
        problems
    }

    /// Makes a root filesystem for a container from an image, in `container_dir` (created if
    /// missing): an overlay mount of the image's layers with a private upper dir, or a private
    /// copy (see [`RootfsMode`]). The image's layers stay until [`ImageStore::release_rootfs`].
    pub fn prepare_rootfs(&self, image: &str, container_dir: &Path) -> Result<Rootfs, Error> {
        fs::create_dir_all(container_dir).ctx(|| format!("cannot create {}", container_dir.display()))?;
        let container_dir = container_dir
            .canonicalize()
            .ctx(|| format!("cannot resolve {}", container_dir.display()))?;
        let image = self.update_index(Durability::Volatile, |idx| {
            let image = idx.find(image).cloned().ok_or_else(|| not_in_store(image))?;
            if let Some(lease) = idx.lease(&container_dir) {
                return Err(Error::RootfsExists {
                    dir: container_dir.clone(),
                    reference: lease.reference.clone(),
                });
            }
            idx.add_lease(Lease {
                container_dir: container_dir.clone(),
                reference: image.reference.clone(),
                image_id: image.config_digest.clone(),
                diff_ids: image.layers.iter().map(|l| l.diff_id.clone()).collect(),
            });
            Ok(image)
        })?;
        match self.make_rootfs(&image, &container_dir) {
            Ok(r) => Ok(r),
            Err(e) => {
                let d = rootfs::dirs(&container_dir);
                let _ = rootfs::unmount(&d.rootfs);
                let _ = rootfs::remove_dirs(&d);
                let _ = self.update_index(Durability::Volatile, |idx| {
                    idx.remove_lease(&container_dir);
                    Ok(())
                });
                Err(e)
            }
        }
    }

    fn make_rootfs(&self, image: &Image, container_dir: &Path) -> Result<Rootfs, Error> {
        // A layer that appears twice only matters at its topmost place (it brings the same
        // files and whiteouts again there), and overlay refuses a lower dir given twice.
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (i, l) in image.layers.iter().enumerate() {
            if !image.layers[i + 1..].iter().any(|later| later.diff_id == l.diff_id) {
                lowers.push(self.layer_path(&l.diff_id));
            }
        }
        if let Some(missing) = lowers.iter().find(|p| !p.is_dir()) {
            return Err(Error::Inconsistent {
                what: format!("layer {} of {} is missing", missing.display(), image.reference),
            });
        }
        let d = rootfs::dirs(container_dir);
        if rootfs::is_mount_point(&d.rootfs) {
            return Err(Error::RootfsExists {
                dir: container_dir.to_path_buf(),
                reference: "something mounted there".to_string(),
            });
        }
        rootfs::remove_dirs(&d).ctx(|| format!("cannot clear {}", container_dir.display()))?;
        let mode = match self.inner.config.rootfs_mode {
            RootfsMode::Copy => RootfsMode::Copy,
            mode => match rootfs::mount_overlay(&lowers, &d) {
                Ok(()) => RootfsMode::Overlay,
                Err(source) if mode == RootfsMode::Overlay => {
                    return Err(Error::Mount {
                        target: d.rootfs.clone(),
                        source,
                    })
                }
                Err(e) => {
                    warn!(error = %e, rootfs = %d.rootfs.display(), "overlay mount failed; copying the layers instead");
                    rootfs::remove_dirs(&d).ctx(|| format!("cannot clear {}", container_dir.display()))?;
                    RootfsMode::Copy
                }
            },
        };
        if mode == RootfsMode::Copy {
            rootfs::flatten(&lowers, &d.rootfs).ctx(|| {
                format!(
                    "cannot copy the layers of {} into {}",
                    image.reference,
                    d.rootfs.display()
                )
            })?;
        }
        let r = Rootfs {
            path: d.rootfs.clone(),
            mode,
            reference: image.reference.clone(),
            image_id: image.config_digest.clone(),
            config: image.config.clone(),
        };
        let state = serde_json::to_vec_pretty(&r).expect("rootfs state serializes");
        // Like the lease, it describes a mount, which does not outlive the machine.
        sys::replace_file(&d.state, &state).ctx(|| format!("cannot write {}", d.state.display()))?;
        info!(reference = %image.reference, rootfs = %d.rootfs.display(), ?mode, "rootfs prepared");
        Ok(r)
    }

    /// Undoes [`ImageStore::prepare_rootfs`]: unmounts (lazily if busy, so no mount is left
    /// behind), deletes `rootfs/`, `upper/`, `work/` in `container_dir`, and lets the image's
    /// layers go. Releasing twice, or a directory never prepared, is fine.
    pub fn release_rootfs(&self, container_dir: &Path) -> Result<(), Error> {
        let container_dir = match container_dir.canonicalize() {
            Ok(p) => p,
            Err(_) => container_dir.to_path_buf(),
        };
        if container_dir.is_dir() {
            let d = rootfs::dirs(&container_dir);
            rootfs::unmount(&d.rootfs).map_err(|source| Error::Mount {
                target: d.rootfs.clone(),
                source,
            })?;
            rootfs::remove_dirs(&d).ctx(|| format!("cannot remove the rootfs in {}", container_dir.display()))?;
        }
        self.update_index(Durability::Volatile, |idx| {
            if idx.remove_lease(&container_dir).is_some() {
                debug!(dir = %container_dir.display(), "rootfs released");
            }
            Ok(())
        })
    }

    /// Runs `f` on a copy of the index and saves it; the in-memory index changes only if the
    /// save worked.
    pub(crate) fn update_index<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut IndexFile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = lock(&self.inner.index);
        let mut next = guard.clone();
        let out = f(&mut next)?;
        if next != *guard {
            index::save(&self.inner.index_path, &next, durability)?;
            *guard = next;
        }
        Ok(out)
    }

    /// Starts an operation that writes blobs or layers.
    pub(crate) fn begin_op(&self) -> OpGuard {
        lock(&self.inner.ops).running += 1;
        OpGuard {
            inner: self.inner.clone(),
            pinned: Vec::new(),
        }
    }

    /// Unpacks a layer blob into `layers/<diff id>` unless it is there already.
    pub(crate) fn ensure_layer(&self, blob: &Digest, media_type: &str, diff_id: &Digest) -> Result<(), Error> {
        let dest = self.layer_path(diff_id);
        if dest.is_dir() {
            return Ok(());
        }
        let compression =
            crate::manifest::layer_compression(media_type).ok_or_else(|| Error::UnsupportedMediaType {
                media_type: media_type.to_string(),
                what: format!("layer {blob}"),
            })?;
        let tmp = self.inner.layers_dir.join(temp_name(".tmp-"));
        fs::create_dir(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        let result = (|| {
            let file = File::open(self.inner.blobs.path(blob)).ctx(|| format!("cannot open blob {blob}"))?;
            layer::unpack(file, compression, &tmp, diff_id).map_err(|e| match e {
                UnpackError::Unsupported(what) => Error::UnsupportedMediaType {
                    media_type: media_type.to_string(),
                    what: format!("layer {blob} ({what})"),
                },
                UnpackError::Bad(reason) => Error::BadLayer {
                    digest: blob.to_string(),
                    reason,
                },
                UnpackError::DiffIdMismatch { actual } => Error::DigestMismatch {
                    what: format!("uncompressed layer {blob} (its diff id)"),
                    expected: diff_id.to_string(),
                    actual: actual.to_string(),
                },
            })
        })();
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another operation unpacked the same layer first.
            if !dest.is_dir() {
                return Err(Error::Io {
                    context: format!("cannot move layer {diff_id} into place"),
                    source: e,
                });
            }
        }
        sys::sync_dir(&self.inner.layers_dir).ctx(|| format!("cannot sync {}", self.inner.layers_dir.display()))?;
        debug!(%diff_id, size, "layer unpacked");
        Ok(())
    }

    /// Records a complete image (its blobs and layers are in place).
    pub(crate) fn commit(&self, image: Image) -> Result<Image, Error> {
        self.update_index(Durability::Durable, |idx| {
            if let Some(old) = idx.upsert(image.clone()) {
                if old.manifest_digest != image.manifest_digest {
                    info!(reference = %image.reference, old = %old.manifest_digest, new = %image.manifest_digest, "image reference moved");
                }
            }
            Ok(())
        })?;
        info!(reference = %image.reference, id = %image.config_digest.short(), "image stored");
        Ok(image)
    }

    /// A fresh directory under the store's `tmp/`, removed when dropped.
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<TempDir, Error> {
        let path = self.inner.tmp_dir.join(temp_name(prefix));
        fs::create_dir(&path).ctx(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }
}

pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn not_in_store(key: &str) -> Error {
    Error::NotInStore {
        reference: crate::ImageRef::parse(key)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| key.to_string()),
    }
}

fn remove_layer_temps(layers_dir: &Path) {
    for entry in fs::read_dir(layers_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn tree_size(path: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else { return 0 };
    if !md.is_dir() {
        return md.len();
    }
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| tree_size(&e.path()))
        .sum::<u64>()
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.config.root)
            .finish()
    }
}
