//! Unpacking one layer tar into its own directory, in overlayfs's format: a whiteout becomes a
//! character device 0:0, an opaque marker becomes `trusted.overlay.opaque=y` on its directory.
//! The directory is then usable as an overlay lower layer as is, and the copy fallback
//! ([`crate::rootfs`]) reads the same format.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::SFlag;
use tar::EntryType;
pub(crate) use tepui_common::error_chain;

use crate::digest::{Digest, HashingReader};
use crate::manifest::Compression;
use crate::sys;
use crate::whiteout::{classify, EntryKind};

/// Why a layer could not be unpacked.
#[derive(Debug)]
pub(crate) enum UnpackError {
    /// The blob is compressed in a way the store cannot read.
    Unsupported(String),
    /// The tar stream is broken, or an entry is not allowed.
    Bad(String),
    /// The uncompressed content's digest is not the diff id the config names.
    DiffIdMismatch { actual: Digest },
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Unpacks a layer blob from `reader` into the empty directory `dest` and checks its diff id.
/// Returns the uncompressed size.
pub(crate) fn unpack(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    expected_diff_id: &Digest,
) -> Result<u64, UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| UnpackError::Bad(format!("cannot read the layer: {e}")))?;
    let gzip = match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Sniff => head.starts_with(GZIP_MAGIC),
    };
    if head.starts_with(ZSTD_MAGIC) {
        return Err(UnpackError::Unsupported("zstd-compressed layer".to_string()));
    }
    if gzip && !head.starts_with(GZIP_MAGIC) {
        return Err(UnpackError::Bad("the layer is said to be gzip but is not".to_string()));
    }
    let stream: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let hashing = HashingReader::new(stream);
    let mut archive = tar::Archive::new(hashing);
    unpack_entries(&mut archive, dest).map_err(UnpackError::Bad)?;
    let (diff_id, size) = archive
        .into_inner()
        .finish()
        .map_err(|e| UnpackError::Bad(format!("cannot read the end of the layer: {e}")))?;
    if &diff_id != expected_diff_id {
        return Err(UnpackError::DiffIdMismatch { actual: diff_id });
    }
    Ok(size)
}

fn unpack_entries<R: Read>(archive: &mut tar::Archive<R>, dest: &Path) -> Result<(), String> {
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // xattrs are applied below, so that overlayfs's own are never taken from an image.
    archive.set_unpack_xattrs(false);
    archive.set_mask(0);

    let root = dest
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dest.display()))?;
    let entries = archive.entries().map_err(|e| format!("not a tar stream: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("broken tar stream: {}", error_chain(&e)))?;
        let raw_path = entry.path().map_err(|e| format!("bad entry path: {e}"))?.into_owned();
        let kind = classify(&raw_path)?;
        match kind {
            EntryKind::Skip => {}
            EntryKind::Opaque(dir) => {
                let dir = ensure_dir(&root, &dir)?;
                sys::set_xattr(&dir, sys::OVERLAY_OPAQUE_XATTR, b"y").map_err(|e| {
                    format!(
                        "cannot mark {} opaque ({e}); the image store needs a filesystem with trusted xattrs (ext4, xfs)",
                        dir.display()
                    )
                })?;
            }
            EntryKind::Whiteout(target) => {
                let name = target.file_name().expect("a whiteout names a file").to_owned();
                let parent = ensure_dir(&root, target.parent().unwrap_or(Path::new("")))?;
                let at = parent.join(name);
                // A file the same layer carries wins over its whiteout.
                if fs::symlink_metadata(&at).is_err() {
                    sys::make_whiteout(&at).map_err(|e| format!("cannot make whiteout {}: {e}", at.display()))?;
                }
            }
            EntryKind::Normal(rel) => unpack_one(&mut entry, &root, &rel)?,
        }
    }
    Ok(())
}

fn unpack_one<R: Read>(entry: &mut tar::Entry<'_, R>, root: &Path, rel: &Path) -> Result<(), String> {
    let at = root.join(rel);
    // A whiteout that an earlier entry of this layer made gives way to the real file.
    if let Ok(md) = fs::symlink_metadata(&at) {
        if sys::is_whiteout(&md) {
            fs::remove_file(&at).map_err(|e| format!("cannot replace {}: {e}", at.display()))?;
        }
    }
    let xattrs = entry_xattrs(entry)?;
    let header = entry.header();
    let entry_type = header.entry_type();
    let node = match entry_type {
        EntryType::Char => Some(SFlag::S_IFCHR),
        EntryType::Block => Some(SFlag::S_IFBLK),
        EntryType::Fifo => Some(SFlag::S_IFIFO),
        _ => None,
    };
    if let Some(kind) = node {
        let mode = header
            .mode()
            .map_err(|e| format!("bad mode for {}: {e}", rel.display()))?;
        let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
        let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let parent = ensure_dir(root, rel.parent().unwrap_or(Path::new("")))?;
        let at = parent.join(rel.file_name().expect("a normal entry has a name"));
        sys::remove_any(&at).map_err(|e| format!("cannot replace {}: {e}", at.display()))?;
        sys::make_node(&at, kind, mode, major, minor).map_err(|e| format!("cannot make node {}: {e}", at.display()))?;
        std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", at.display()))?;
        sys::set_times(&at, mtime, 0).map_err(|e| format!("cannot set times of {}: {e}", at.display()))?;
        return apply_xattrs(&at, &xattrs);
    }
    let unpacked = entry
        .unpack_in(root)
        .map_err(|e| format!("cannot unpack {}: {}", rel.display(), error_chain(&e)))?;
    if !unpacked {
        return Err(format!("entry {} points outside the layer", rel.display()));
    }
    if entry_type.is_symlink() {
        return Ok(());
    }
    apply_xattrs(&at, &xattrs)
}

/// The xattrs a PAX header carries for this entry (`SCHILY.xattr.NAME`).
fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions().map_err(|e| format!("bad PAX header: {e}"))? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|e| format!("bad PAX header: {e}"))?;
        if let Ok(key) = ext.key() {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn apply_xattrs(path: &Path, xattrs: &[(String, Vec<u8>)]) -> Result<(), String> {
    for (name, value) in xattrs {
        if name.starts_with(sys::RESERVED_XATTR_PREFIX) {
            continue;
        }
        sys::set_xattr(path, name, value).map_err(|e| format!("cannot set xattr {name} on {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Makes sure `rel` is a directory inside `root` (creating missing ones), refusing a path that
/// a symlink leads out of the layer. Returns its path.
fn ensure_dir(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut cur = root.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(md) if md.file_type().is_symlink() => {
                let resolved = cur
                    .canonicalize()
                    .map_err(|e| format!("cannot resolve {}: {e}", cur.display()))?;
                if !resolved.starts_with(root) || !resolved.is_dir() {
                    return Err(format!(
                        "{} leads out of the layer or to a non-directory",
                        rel.display()
                    ));
                }
                cur = resolved;
            }
            Ok(_) => {
                // A whiteout or file of this layer stands where a directory is needed.
                fs::remove_file(&cur).map_err(|e| format!("cannot replace {}: {e}", cur.display()))?;
                fs::create_dir(&cur).map_err(|e| format!("cannot create {}: {e}", cur.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| format!("cannot create {}: {e}", cur.display()))?;
            }
            Err(e) => return Err(format!("cannot inspect {}: {e}", cur.display())),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            match data {
                Some(data) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *data).unwrap();
                }
                None => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let data = tar_of(&[
            ("etc/", None),
            ("etc/.wh.motd", Some(b"")),
            ("data/", None),
            ("data/.wh..wh..opq", Some(b"")),
            ("data/new", Some(b"new")),
            ("same/.wh.f", Some(b"")),
            ("same/f", Some(b"kept")),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let diff_id = Digest::of(&data);
        let size = unpack(&data[..], Compression::Sniff, dir.path(), &diff_id).unwrap();
        assert_eq!(size, data.len() as u64);
        let motd = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
        assert!(sys::is_whiteout(&motd), "mode {:o}", motd.mode());
        assert_eq!(
            sys::get_xattr(&dir.path().join("data"), sys::OVERLAY_OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!dir.path().join("data/.wh..wh..opq").exists());
        assert_eq!(fs::read(dir.path().join("data/new")).unwrap(), b"new");
        assert_eq!(fs::read(dir.path().join("same/f")).unwrap(), b"kept");
    }

    #[test]
    fn a_wrong_diff_id_is_caught() {
        let data = tar_of(&[("a", Some(b"x"))]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&data[..], Compression::None, dir.path(), &Digest::of(b"other")).unwrap_err();
        assert!(matches!(err, UnpackError::DiffIdMismatch { .. }));
    }

    #[test]
    fn a_truncated_layer_is_an_error() {
        let data = tar_of(&[("a", Some(&[1u8; 5000][..])), ("b", Some(b"x"))]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&data[..3000], Compression::None, dir.path(), &Digest::of(&data)).unwrap_err();
        assert!(matches!(err, UnpackError::Bad(_)), "{err:?}");
    }

    #[test]
    fn zstd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(
            &[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..],
            Compression::Sniff,
            dir.path(),
            &Digest::of(b""),
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Unsupported(_)));
    }
}
