//! The store's index: which images it has and which container rootfs use which layers. One JSON
//! file, rewritten atomically on every change. Manipulation is pure; [`load`] and [`save`] are
//! the only I/O.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::ImageConfig;
use crate::reference::ImageRef;

pub const INDEX_VERSION: u32 = 1;

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The normalized reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The platform manifest's digest.
    pub manifest_digest: Digest,
    /// The config's digest, which is also the image id.
    pub config_digest: Digest,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// Bytes of the manifest, config and layer blobs.
    pub size: u64,
    /// When the image was built, as its config says (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What to run, from the image config.
    pub config: ImageConfig,
}

impl Image {
    /// The image id (its config digest), as `docker images` shows it.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.manifest_digest, &self.config_digest]
            .into_iter()
            .chain(self.layers.iter().map(|l| &l.digest))
    }

    /// Whether `key` names this image: its reference (in any spelling), id, or manifest digest.
    fn named_by(&self, key: &str) -> bool {
        if key == self.reference || key == self.config_digest.to_string() || key == self.manifest_digest.to_string() {
            return true;
        }
        ImageRef::parse(key).is_ok_and(|r| r.to_string() == self.reference)
    }
}

/// One layer: its blob (as distributed, maybe compressed) and its diff id (the uncompressed
/// tar's digest, which names the unpacked directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A container rootfs made from an image: its layers stay until it is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container_dir: PathBuf,
    pub reference: String,
    pub image_id: Digest,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub version: u32,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub leases: Vec<Lease>,
}

/// What the index keeps alive.
#[derive(Debug, Default)]
pub struct Referenced {
    pub blobs: HashSet<Digest>,
    pub diff_ids: HashSet<Digest>,
}

impl IndexFile {
    pub fn new() -> IndexFile {
        IndexFile {
            version: INDEX_VERSION,
            ..Default::default()
        }
    }

    /// Adds an image, replacing one with the same reference; returns the replaced one.
    pub fn upsert(&mut self, image: Image) -> Option<Image> {
        let old = self
            .images
            .iter()
            .position(|i| i.reference == image.reference)
            .map(|pos| self.images.remove(pos));
        self.images.push(image);
        self.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        old
    }

    /// Finds an image by reference (normalized or not), id or manifest digest. A reference wins
    /// over a digest; a bare hex prefix of at least 12 digits matches one image id.
    pub fn find(&self, key: &str) -> Option<&Image> {
        if let Ok(r) = ImageRef::parse(key) {
            let r = r.to_string();
            if let Some(i) = self.images.iter().find(|i| i.reference == r) {
                return Some(i);
            }
        }
        if let Some(i) = self.images.iter().find(|i| i.named_by(key)) {
            return Some(i);
        }
        if key.len() >= 12 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = self.images.iter().filter(|i| i.config_digest.hex().starts_with(key));
            let first = hits.next()?;
            if hits.all(|i| i.config_digest == first.config_digest) {
                return Some(first);
            }
        }
        None
    }

    /// Removes the image `key` finds.
    pub fn remove(&mut self, key: &str) -> Option<Image> {
        let reference = self.find(key)?.reference.clone();
        let pos = self.images.iter().position(|i| i.reference == reference)?;
        Some(self.images.remove(pos))
    }

    /// Whether the image is in use: named in `in_use` (by reference, id or manifest digest),
    /// or the source of a rootfs that has not been released.
    pub fn in_use(&self, image: &Image, in_use: &HashSet<String>) -> bool {
        in_use.iter().any(|k| image.named_by(k))
            || self
                .leases
                .iter()
                .any(|l| l.reference == image.reference && l.image_id == image.config_digest)
    }

    /// Blobs and layers that images, leases and the caller's `keep` (image names or digests)
    /// still need.
    pub fn referenced(&self, keep: &HashSet<String>) -> Referenced {
        let mut r = Referenced::default();
        for image in &self.images {
            r.blobs.extend(image.blobs().cloned());
            r.diff_ids.extend(image.layers.iter().map(|l| l.diff_id.clone()));
        }
        for lease in &self.leases {
            r.diff_ids.extend(lease.diff_ids.iter().cloned());
        }
        for key in keep {
            if let Ok(d) = Digest::parse(key) {
                r.blobs.insert(d.clone());
                r.diff_ids.insert(d);
            }
        }
        r
    }

    pub fn lease(&self, container_dir: &Path) -> Option<&Lease> {
        self.leases.iter().find(|l| l.container_dir == container_dir)
    }

    pub fn add_lease(&mut self, lease: Lease) {
        self.leases.retain(|l| l.container_dir != lease.container_dir);
        self.leases.push(lease);
    }

    pub fn remove_lease(&mut self, container_dir: &Path) -> Option<Lease> {
        let pos = self.leases.iter().position(|l| l.container_dir == container_dir)?;
        Some(self.leases.remove(pos))
    }
}

/// Reads the index, or an empty one if there is none yet.
pub fn load(path: &Path) -> Result<IndexFile, Error> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexFile::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })
        }
    };
    let index: IndexFile = serde_json::from_slice(&data).map_err(|e| Error::CorruptIndex {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if index.version != INDEX_VERSION {
        return Err(Error::CorruptIndex {
            path: path.to_path_buf(),
            reason: format!("version {} is not {INDEX_VERSION}", index.version),
        });
    }
    Ok(index)
}

/// Whether a save must survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Images: an import or pull that was answered must not be forgotten.
    Durable,
    /// Leases only: they describe mounts and containers, which a power loss ends anyway, and
    /// the store drops the leases of vanished root filesystems when it opens.
    Volatile,
}

/// Writes the index atomically (and durably, if asked).
pub fn save(path: &Path, index: &IndexFile, durability: Durability) -> Result<(), Error> {
    let data = serde_json::to_vec_pretty(index).expect("the index serializes");
    match durability {
        Durability::Durable => crate::sys::write_atomic(path, &data),
        Durability::Volatile => crate::sys::replace_file(path, &data),
    }
    .map_err(|source| Error::Io {
        context: format!("cannot write {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn image(reference: &str, config: u8, layers: &[u8]) -> Image {
        Image {
            reference: ImageRef::parse(reference).unwrap().to_string(),
            manifest_digest: d(config + 100),
            config_digest: d(config),
            layers: layers
                .iter()
                .map(|&n| Layer {
                    digest: d(n),
                    diff_id: d(n + 50),
                    media_type: crate::manifest::OCI_LAYER_GZIP.into(),
                    size: 10,
                })
                .collect(),
            size: 100,
            created: None,
            config: ImageConfig::default(),
        }
    }

    #[test]
    fn upsert_find_remove() {
        let mut idx = IndexFile::new();
        assert!(idx.upsert(image("busybox", 1, &[10])).is_none());
        assert!(idx.upsert(image("alpine:3", 2, &[11])).is_none());
        let old = idx.upsert(image("busybox:latest", 3, &[12])).unwrap();
        assert_eq!(old.config_digest, d(1));
        assert_eq!(idx.images.len(), 2);
        assert_eq!(idx.find("busybox").unwrap().config_digest, d(3));
        assert_eq!(idx.find("docker.io/library/alpine:3").unwrap().config_digest, d(2));
        assert_eq!(
            idx.find(&d(2).to_string()).unwrap().reference,
            "docker.io/library/alpine:3"
        );
        assert_eq!(
            idx.find(&d(2).hex()[..12]).unwrap().reference,
            "docker.io/library/alpine:3"
        );
        assert_eq!(
            idx.find(&d(102).to_string()).unwrap().reference,
            "docker.io/library/alpine:3"
        );
        assert!(idx.find("alpine").is_none());
        assert!(idx.remove("alpine:3").is_some());
        assert!(idx.find("alpine:3").is_none());
    }

    #[test]
    fn in_use_by_name_or_lease() {
        let mut idx = IndexFile::new();
        let a = image("a", 1, &[10, 11]);
        idx.upsert(a.clone());
        assert!(!idx.in_use(&a, &HashSet::new()));
        assert!(idx.in_use(&a, &HashSet::from(["a:latest".to_string()])));
        assert!(idx.in_use(&a, &HashSet::from([d(1).to_string()])));
        idx.add_lease(Lease {
            container_dir: "/c1".into(),
            reference: a.reference.clone(),
            image_id: a.config_digest.clone(),
            diff_ids: a.layers.iter().map(|l| l.diff_id.clone()).collect(),
        });
        assert!(idx.in_use(&a, &HashSet::new()));
        assert!(idx.remove_lease(Path::new("/c1")).is_some());
        assert!(!idx.in_use(&a, &HashSet::new()));
    }

    #[test]
    fn referenced_covers_images_leases_and_keep() {
        let mut idx = IndexFile::new();
        idx.upsert(image("a", 1, &[10, 11]));
        idx.upsert(image("b", 2, &[10, 12]));
        idx.add_lease(Lease {
            container_dir: "/c".into(),
            reference: "gone".into(),
            image_id: d(9),
            diff_ids: vec![d(77)],
        });
        let r = idx.referenced(&HashSet::from([d(88).to_string(), "not-a-digest".into()]));
        // 2 manifests + 2 configs + 3 distinct layers + kept digest.
        assert_eq!(r.blobs.len(), 8);
        assert!(r.diff_ids.contains(&d(60)) && r.diff_ids.contains(&d(61)) && r.diff_ids.contains(&d(62)));
        assert!(r.diff_ids.contains(&d(77)) && r.diff_ids.contains(&d(88)));
        assert_eq!(idx.referenced(&HashSet::new()).diff_ids.len(), 4);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert_eq!(load(&path).unwrap(), IndexFile::new());
        let mut idx = IndexFile::new();
        idx.upsert(image("a", 1, &[10]));
        save(&path, &idx, Durability::Durable).unwrap();
        assert_eq!(load(&path).unwrap(), idx);
        std::fs::write(&path, b"{broken").unwrap();
        assert!(matches!(load(&path), Err(Error::CorruptIndex { .. })));
    }
}
