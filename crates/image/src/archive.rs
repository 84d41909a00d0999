//! Importing images from files: `docker save` archives (`manifest.json`, a config and layer
//! tars) and OCI image layouts (`oci-layout`, `index.json`, `blobs/`), each as a directory or
//! as a tar (plain or gzip). Layers may be plain or gzip. Everything is checked by digest on the
//! way in; nothing is recorded in the index until an image is complete.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tracing::{info, info_span, warn};

use crate::digest::{Digest, HashingReader};
use crate::error::Error;
use crate::index::{Image, Layer};
use crate::layer::error_chain;
use crate::manifest::{self, ConfigFile, Descriptor, DockerSaveEntry, Manifest, Parsed};
use crate::reference::ImageRef;
use crate::store::ImageStore;
use crate::whiteout::clean_path;

/// Largest manifest, index or config read into memory.
const MAX_JSON: u64 = 16 << 20;

/// One image found in an archive.
struct Candidate {
    /// Names the archive gives it: full references or bare tags.
    names: Vec<String>,
    source: Source,
}

enum Source {
    Oci {
        manifest_bytes: Vec<u8>,
        manifest_digest: Digest,
        manifest: Box<Manifest>,
        dir: PathBuf,
    },
    Docker {
        config: PathBuf,
        layers: Vec<PathBuf>,
    },
}

impl ImageStore {
    /// Imports the images in a `docker save` archive or an OCI layout (a directory, or a tar or
    /// tar.gz of either). With `reference`, the image is stored under that name (an archive
    /// with several images must have exactly one whose tag matches it); without, under the
    /// names the archive gives (an OCI layout that names only a tag needs `reference`).
    pub fn import(&self, path: &Path, reference: Option<&str>) -> Result<Vec<Image>, Error> {
        let _span = info_span!("image_import", path = %path.display()).entered();
        let given = reference.map(ImageRef::parse).transpose()?;
        let bad = |reason: String| Error::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let md = fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let op = self.begin_op();
        let extracted;
        let dir = if md.is_dir() {
            path.to_path_buf()
        } else {
            extracted = self.temp_dir("import-")?;
            extract(path, &extracted.path).map_err(bad)?;
            extracted.path.clone()
        };
        let dir = dir.canonicalize().map_err(|e| bad(format!("cannot resolve it: {e}")))?;

        let candidates = if dir.join("oci-layout").is_file() {
            self.read_oci_layout(&dir).map_err(|e| archive_error(e, path))?
        } else if dir.join("manifest.json").is_file() {
            read_docker_save(&dir).map_err(bad)?
        } else {
            return Err(bad("it has neither oci-layout nor manifest.json".to_string()));
        };
        if candidates.is_empty() {
            return Err(bad("it holds no images".to_string()));
        }
        let plan = choose_names(&candidates, given.as_ref()).map_err(|e| match e {
            Choice::Ambiguous(names) => Error::AmbiguousArchive {
                path: path.to_path_buf(),
                names,
            },
            Choice::Unnamed(what) => Error::UnnamedImage {
                path: path.to_path_buf(),
                what,
            },
        })?;

        let mut out = Vec::new();
        let mut op = op;
        for (i, refs) in plan {
            let images = self
                .import_one(&candidates[i].source, &refs, &mut op)
                .map_err(|e| archive_error(e, path))?;
            out.extend(images);
        }
        info!(images = out.len(), "imported");
        Ok(out)
    }

    fn import_one(
        &self,
        source: &Source,
        refs: &[ImageRef],
        op: &mut crate::store::OpGuard,
    ) -> Result<Vec<Image>, Error> {
        let blobs = &self.inner.blobs;
        // (manifest bytes, manifest digest, config bytes, config digest, layers as (file, descriptor))
        let (manifest_bytes, manifest_digest, config_bytes, config_digest, layer_files) = match source {
            Source::Oci {
                manifest_bytes,
                manifest_digest,
                manifest,
                dir,
            } => {
                let config_digest = Digest::parse(&manifest.config.digest).map_err(|reason| bad_in(dir, reason))?;
                let config_bytes = read_json(&blob_path(dir, &config_digest)).map_err(|reason| bad_in(dir, reason))?;
                if Digest::of(&config_bytes) != config_digest {
                    return Err(Error::DigestMismatch {
                        what: "image config in the archive".to_string(),
                        expected: config_digest.to_string(),
                        actual: Digest::of(&config_bytes).to_string(),
                    });
                }
                let mut layers = Vec::new();
                for l in &manifest.layers {
                    if manifest::layer_compression(&l.media_type).is_none() {
                        return Err(Error::UnsupportedMediaType {
                            media_type: l.media_type.clone(),
                            what: format!("layer {}", l.digest),
                        });
                    }
                    let d = Digest::parse(&l.digest).map_err(|reason| bad_in(dir, reason))?;
                    layers.push((blob_path(dir, &d), l.clone()));
                }
                (
                    manifest_bytes.clone(),
                    manifest_digest.clone(),
                    config_bytes,
                    config_digest,
                    layers,
                )
            }
            Source::Docker { config, layers } => {
                let config_bytes = read_json(config).map_err(|reason| bad_in(config, reason))?;
                let config_digest = Digest::of(&config_bytes);
                let mut descs = Vec::new();
                for file in layers {
                    // Hash first, so the digest is pinned before the blob exists.
                    let (digest, size, gzip) = hash_file(file).map_err(|reason| bad_in(file, reason))?;
                    descs.push((
                        file.clone(),
                        Descriptor {
                            media_type: if gzip {
                                manifest::OCI_LAYER_GZIP
                            } else {
                                manifest::OCI_LAYER
                            }
                            .to_string(),
                            digest: digest.to_string(),
                            size: size as i64,
                            platform: None,
                            annotations: None,
                            urls: None,
                        },
                    ));
                }
                let manifest = Manifest {
                    schema_version: 2,
                    media_type: Some(manifest::OCI_MANIFEST.to_string()),
                    config: Descriptor {
                        media_type: manifest::OCI_CONFIG.to_string(),
                        digest: config_digest.to_string(),
                        size: config_bytes.len() as i64,
                        platform: None,
                        annotations: None,
                        urls: None,
                    },
                    layers: descs.iter().map(|(_, d)| d.clone()).collect(),
                };
                let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
                let digest = Digest::of(&bytes);
                (bytes, digest, config_bytes, config_digest, descs)
            }
        };

        let config = ConfigFile::parse(&config_bytes).map_err(|reason| Error::BadImage {
            reference: refs[0].to_string(),
            reason,
        })?;
        if let Some(other) = config.platform_mismatch(&self.config().platform) {
            warn!(reference = %refs[0], image_platform = %other, platform = %self.config().platform, "imported image is built for another platform");
        }
        let diff_ids = config
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| Error::BadImage {
                reference: refs[0].to_string(),
                reason,
            })?;
        if diff_ids.len() != layer_files.len() {
            return Err(Error::BadImage {
                reference: refs[0].to_string(),
                reason: format!(
                    "{} layers but {} diff ids in the config",
                    layer_files.len(),
                    diff_ids.len()
                ),
            });
        }
        let layer_digests: Vec<Digest> = layer_files
            .iter()
            .map(|(_, d)| Digest::parse(&d.digest).expect("checked above"))
            .collect();
        op.pin([manifest_digest.clone(), config_digest.clone()]);
        op.pin(layer_digests.iter().cloned());
        op.pin(diff_ids.iter().cloned());

        let mut layers = Vec::new();
        for (((file, desc), digest), diff_id) in layer_files.iter().zip(&layer_digests).zip(&diff_ids) {
            let what = format!("layer {digest}");
            let (_, size) = match File::open(file) {
                Ok(f) => blobs.ingest(f, Some(digest), &what)?,
                Err(e) => return Err(bad_in(file, format!("cannot read the layer: {e}"))),
            };
            self.ensure_layer(digest, &desc.media_type, diff_id)?;
            layers.push(Layer {
                digest: digest.clone(),
                diff_id: diff_id.clone(),
                media_type: desc.media_type.clone(),
                size,
            });
        }
        blobs.put(&config_bytes, &config_digest, "image config")?;
        blobs.put(&manifest_bytes, &manifest_digest, "image manifest")?;
        let size = manifest_bytes.len() as u64 + config_bytes.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
        refs.iter()
            .map(|r| {
                self.commit(Image {
                    reference: r.to_string(),
                    manifest_digest: manifest_digest.clone(),
                    config_digest: config_digest.clone(),
                    layers: layers.clone(),
                    size,
                    created: config.created.clone(),
                    config: config.image_config(),
                })
            })
            .collect()
    }

    fn read_oci_layout(&self, dir: &Path) -> Result<Vec<Candidate>, Error> {
        let layout: serde_json::Value =
            serde_json::from_slice(&read_json(&dir.join("oci-layout")).map_err(|r| bad_in(dir, r))?)
                .map_err(|e| bad_in(dir, format!("oci-layout is not JSON: {e}")))?;
        if layout.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
            return Err(bad_in(dir, "oci-layout has no imageLayoutVersion".to_string()));
        }
        let index_bytes = read_json(&dir.join("index.json")).map_err(|r| bad_in(dir, r))?;
        let index = match manifest::parse_manifest(&index_bytes, Some(manifest::OCI_INDEX))
            .map_err(|r| bad_in(dir, format!("index.json: {r}")))?
        {
            Parsed::Index(i) => i,
            Parsed::Manifest(_) => return Err(bad_in(dir, "index.json is a manifest, not an index".to_string())),
        };
        let platform = &self.config().platform;
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for entry in &index.manifests {
            let mut names = Vec::new();
            if let Some(a) = &entry.annotations {
                for key in [manifest::ANNOTATION_IMAGE_NAME, manifest::ANNOTATION_REF_NAME] {
                    if let Some(v) = a.get(key) {
                        names.push(v.clone());
                    }
                }
            }
            if let Some(p) = &entry.platform {
                if !platform.matches(p) {
                    skipped.push(entry.clone());
                    continue;
                }
            }
            let (bytes, digest) = read_blob_checked(dir, &entry.digest)?;
            let manifest =
                match manifest::parse_manifest(&bytes, Some(&entry.media_type)).map_err(|r| bad_in(dir, r))? {
                    Parsed::Manifest(m) => m,
                    Parsed::Index(nested) => {
                        let chosen = manifest::select_platform(&nested.manifests, platform).map_err(|available| {
                            Error::PlatformNotFound {
                                reference: names.first().cloned().unwrap_or_else(|| entry.digest.clone()),
                                platform: platform.to_string(),
                                available,
                            }
                        })?;
                        let (bytes, digest) = read_blob_checked(dir, &chosen.digest)?;
                        match manifest::parse_manifest(&bytes, Some(&chosen.media_type)).map_err(|r| bad_in(dir, r))? {
                            Parsed::Manifest(m) => {
                                out.push(Candidate {
                                    names,
                                    source: Source::Oci {
                                        manifest_bytes: bytes,
                                        manifest_digest: digest,
                                        manifest: Box::new(m),
                                        dir: dir.to_path_buf(),
                                    },
                                });
                                continue;
                            }
                            Parsed::Index(_) => {
                                return Err(bad_in(dir, "nested image indexes are not supported".to_string()))
                            }
                        }
                    }
                };
            out.push(Candidate {
                names,
                source: Source::Oci {
                    manifest_bytes: bytes,
                    manifest_digest: digest,
                    manifest: Box::new(manifest),
                    dir: dir.to_path_buf(),
                },
            });
        }
        if out.is_empty() && !skipped.is_empty() {
            let available = manifest::select_platform(&skipped, platform).err().unwrap_or_default();
            return Err(Error::PlatformNotFound {
                reference: dir.display().to_string(),
                platform: platform.to_string(),
                available,
            });
        }
        Ok(out)
    }
}

/// What went wrong choosing names.
enum Choice {
    Ambiguous(String),
    Unnamed(String),
}

/// Which candidates to import under which references.
fn choose_names(candidates: &[Candidate], given: Option<&ImageRef>) -> Result<Vec<(usize, Vec<ImageRef>)>, Choice> {
    let all_names = || {
        let names: Vec<String> = candidates.iter().flat_map(|c| c.names.iter().cloned()).collect();
        if names.is_empty() {
            format!("{} unnamed", candidates.len())
        } else {
            names.join(", ")
        }
    };
    if let Some(r) = given {
        if candidates.len() == 1 {
            return Ok(vec![(0, vec![r.clone()])]);
        }
        let want = r.tag().unwrap_or(crate::reference::DEFAULT_TAG);
        let hits: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.names.iter().any(|n| name_tag(n).as_deref() == Some(want)))
            .map(|(i, _)| i)
            .collect();
        return match hits.as_slice() {
            [i] => Ok(vec![(*i, vec![r.clone()])]),
            _ => Err(Choice::Ambiguous(all_names())),
        };
    }
    let mut plan = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let mut refs: Vec<ImageRef> = c
            .names
            .iter()
            .filter(|n| is_full_name(n))
            .filter_map(|n| ImageRef::parse(n).ok())
            .collect();
        refs.sort();
        refs.dedup();
        if refs.is_empty() {
            let what = match c.names.first() {
                Some(tag) => format!("tagged {tag:?}"),
                None => format!("#{}", i + 1),
            };
            return Err(Choice::Unnamed(what));
        }
        plan.push((i, refs));
    }
    Ok(plan)
}

/// A full reference has a repository: a '/' or a ':' (a bare OCI `ref.name` is a tag).
fn is_full_name(name: &str) -> bool {
    name.contains('/') || name.contains(':') || name.contains('@')
}

/// The tag a name carries (a bare name is a tag).
fn name_tag(name: &str) -> Option<String> {
    if is_full_name(name) {
        ImageRef::parse(name).ok().and_then(|r| r.tag().map(str::to_string))
    } else {
        Some(name.to_string())
    }
}

fn read_docker_save(dir: &Path) -> Result<Vec<Candidate>, String> {
    let bytes = read_json(&dir.join("manifest.json"))?;
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json is not a docker save manifest: {e}"))?;
    entries
        .into_iter()
        .map(|e| {
            let config = inside(dir, &e.config)?;
            let layers = e.layers.iter().map(|l| inside(dir, l)).collect::<Result<Vec<_>, _>>()?;
            Ok(Candidate {
                names: e.repo_tags.unwrap_or_default(),
                source: Source::Docker { config, layers },
            })
        })
        .collect()
}

/// `rel` inside `dir`, which must exist and not lead out of it.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let clean = clean_path(Path::new(rel))?;
    let joined = dir.join(&clean);
    let real = joined
        .canonicalize()
        .map_err(|e| format!("{rel} is missing ({e}); the archive is incomplete"))?;
    if !real.starts_with(dir) {
        return Err(format!("{rel} points outside the archive"));
    }
    Ok(real)
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

fn read_blob_checked(dir: &Path, digest: &str) -> Result<(Vec<u8>, Digest), Error> {
    let d = Digest::parse(digest).map_err(|r| bad_in(dir, r))?;
    let bytes = read_json(&blob_path(dir, &d)).map_err(|r| bad_in(dir, r))?;
    let actual = Digest::of(&bytes);
    if actual != d {
        return Err(Error::DigestMismatch {
            what: "manifest in the archive".to_string(),
            expected: d.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok((bytes, d))
}

fn read_json(path: &Path) -> Result<Vec<u8>, String> {
    let f = File::open(path).map_err(|e| format!("cannot read {}: {e}", file_label(path)))?;
    let mut out = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {}: {e}", file_label(path)))?;
    if out.len() as u64 > MAX_JSON {
        return Err(format!("{} is larger than {MAX_JSON} bytes", file_label(path)));
    }
    Ok(out)
}

fn file_label(path: &Path) -> String {
    // Paths inside a temporary extraction mean nothing to the user; the archive name comes from
    // the error around this one.
    let parts: Vec<_> = path.components().rev().take(3).collect();
    parts
        .into_iter()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The digest and size of a file, and whether it is gzip.
fn hash_file(path: &Path) -> Result<(Digest, u64, bool), String> {
    let f = File::open(path).map_err(|e| format!("cannot read {}: {e}", file_label(path)))?;
    let mut r = BufReader::new(f);
    let gzip = r
        .fill_buf()
        .map_err(|e| format!("cannot read {}: {e}", file_label(path)))?
        .starts_with(&[0x1f, 0x8b]);
    let (digest, size) = HashingReader::new(r)
        .finish()
        .map_err(|e| format!("cannot read {}: {e}", file_label(path)))?;
    Ok((digest, size, gzip))
}

fn bad_in(path: &Path, reason: String) -> Error {
    Error::BadArchive {
        path: path.to_path_buf(),
        reason,
    }
}

/// Errors about files inside an archive name the archive the user gave.
fn archive_error(e: Error, archive: &Path) -> Error {
    match e {
        Error::BadArchive { reason, .. } => Error::BadArchive {
            path: archive.to_path_buf(),
            reason,
        },
        other => other,
    }
}

/// Extracts a tar or tar.gz into `dest`: regular files, directories and links only.
fn extract(path: &Path, dest: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let head = r.fill_buf().map_err(|e| format!("cannot read it: {e}"))?;
    if head.is_empty() {
        return Err("it is empty".to_string());
    }
    let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| format!("not a tar file: {e}"))?;
    let mut count = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("broken or truncated tar: {}", printable(&error_chain(&e))))?;
        use tar::EntryType::*;
        match entry.header().entry_type() {
            Regular | Directory | Symlink | Link | Continuous => {}
            _ => continue,
        }
        let ok = entry
            .unpack_in(dest)
            .map_err(|e| format!("broken or truncated tar: {}", printable(&error_chain(&e))))?;
        if !ok {
            return Err("an entry points outside the archive".to_string());
        }
        count += 1;
    }
    if count == 0 {
        return Err("it is not a tar file, or an empty one".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(names: &[&str]) -> Candidate {
        Candidate {
            names: names.iter().map(|s| s.to_string()).collect(),
            source: Source::Docker {
                config: PathBuf::new(),
                layers: vec![],
            },
        }
    }

    #[test]
    fn names_from_the_archive() {
        let c = vec![cand(&["busybox:latest", "busybox:1"]), cand(&["x.io/app:v2"])];
        let plan = choose_names(&c, None).ok().unwrap();
        assert_eq!(
            plan[0].1.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["docker.io/library/busybox:1", "docker.io/library/busybox:latest"]
        );
        assert_eq!(plan[1].1[0].to_string(), "x.io/app:v2");
        // A bare OCI ref.name is only a tag.
        assert!(matches!(choose_names(&[cand(&["v1"])], None), Err(Choice::Unnamed(_))));
        assert!(matches!(choose_names(&[cand(&[])], None), Err(Choice::Unnamed(_))));
    }

    #[test]
    fn a_given_reference_picks_by_tag() {
        let r = ImageRef::parse("local/app:v2").unwrap();
        let one = vec![cand(&["v1"])];
        assert_eq!(choose_names(&one, Some(&r)).ok().unwrap()[0].0, 0);
        let two = vec![cand(&["v1"]), cand(&["v2"])];
        assert_eq!(choose_names(&two, Some(&r)).ok().unwrap()[0].0, 1);
        let r3 = ImageRef::parse("local/app:v3").unwrap();
        assert!(matches!(choose_names(&two, Some(&r3)), Err(Choice::Ambiguous(n)) if n == "v1, v2"));
    }

    #[test]
    fn archive_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("a"), b"x").unwrap();
        assert!(inside(&root, "a").is_ok());
        assert!(inside(&root, "../a").unwrap_err().contains(".."));
        assert!(inside(&root, "missing").unwrap_err().contains("incomplete"));
        std::os::unix::fs::symlink("/etc/hostname", root.join("l")).unwrap();
        assert!(inside(&root, "l").unwrap_err().contains("outside"));
    }
}

/// The tar crate quotes raw header bytes in its errors; an error message must stay one short
/// printable line whatever a broken upload contains.
fn printable(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.chars().count() > 160 {
        out = out.chars().take(160).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_and_length_are_tamed() {
        assert_eq!(super::printable("a\nb\u{0}c"), "a b c");
        assert!(super::printable(&"x".repeat(500)).ends_with("..."));
    }
}
