//! Layer tar entry paths and the whiteouts among them (pure).
//!
//! An OCI/AUFS whiteout `dir/.wh.name` deletes `dir/name` from the layers below; the marker
//! `dir/.wh..wh..opq` makes `dir` opaque: nothing below shows through it. Other `.wh..wh.`
//! names are AUFS bookkeeping and are skipped. Whiteouts apply only to lower layers: a file the
//! same layer also carries stays.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
const AUFS_META_PREFIX: &str = ".wh..wh.";

/// What a tar entry means for the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A file, directory, link or device at this path (relative, clean).
    Normal(PathBuf),
    /// Delete this path (and everything under it) from the lower layers.
    Whiteout(PathBuf),
    /// Hide everything the lower layers have under this directory (`""` is the root).
    Opaque(PathBuf),
    /// AUFS metadata, or the layer's root itself: nothing to do.
    Skip,
}

/// Cleans an entry path: strips `/` and `.`, refuses `..` (an entry that climbs out of the
/// layer). The root (`./`) becomes the empty path.
pub fn clean_path(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("entry {} climbs out of the layer with '..'", path.display()));
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Ok(out)
}

/// Classifies an entry by its path.
pub fn classify(path: &Path) -> Result<EntryKind, String> {
    let clean = clean_path(path)?;
    let Some(name) = clean.file_name().and_then(|n| n.to_str()) else {
        return Ok(if clean.as_os_str().is_empty() {
            EntryKind::Skip
        } else {
            EntryKind::Normal(clean)
        });
    };
    let parent = clean.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == OPAQUE_MARKER {
        return Ok(EntryKind::Opaque(parent));
    }
    if name.starts_with(AUFS_META_PREFIX) {
        return Ok(EntryKind::Skip);
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.is_empty() || target == "." || target == ".." {
            return Err(format!("whiteout {} names no file", path.display()));
        }
        return Ok(EntryKind::Whiteout(parent.join(target)));
    }
    Ok(EntryKind::Normal(clean))
}

/// Applies one layer, given as its entries' paths in tar order, to a set of paths: the model
/// of what a flattened or overlay-mounted rootfs shows. Whiteouts and opaque markers act only
/// on what the lower layers brought. Directories are implied by their children.
pub fn apply_layer(tree: &mut BTreeSet<PathBuf>, entries: &[&str]) -> Result<(), String> {
    let lower = tree.clone();
    let mut added = BTreeSet::new();
    for entry in entries {
        match classify(Path::new(entry))? {
            EntryKind::Normal(p) => {
                added.insert(p);
            }
            EntryKind::Whiteout(p) => {
                tree.retain(|q| !(lower.contains(q) && q.starts_with(&p)) || added.contains(q));
            }
            EntryKind::Opaque(dir) => {
                tree.retain(|q| !(lower.contains(q) && q.starts_with(&dir) && *q != dir) || added.contains(q));
            }
            EntryKind::Skip => {}
        }
    }
    for p in added {
        let mut ancestors: Vec<PathBuf> = p.ancestors().skip(1).map(Path::to_path_buf).collect();
        ancestors.retain(|a| !a.as_os_str().is_empty());
        tree.extend(ancestors);
        tree.insert(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_entries() {
        assert_eq!(classify(Path::new("./")).unwrap(), EntryKind::Skip);
        assert_eq!(
            classify(Path::new("./etc/passwd")).unwrap(),
            EntryKind::Normal("etc/passwd".into())
        );
        assert_eq!(
            classify(Path::new("/etc/.wh.motd")).unwrap(),
            EntryKind::Whiteout("etc/motd".into())
        );
        assert_eq!(
            classify(Path::new(".wh.tmp")).unwrap(),
            EntryKind::Whiteout("tmp".into())
        );
        assert_eq!(
            classify(Path::new("var/cache/.wh..wh..opq")).unwrap(),
            EntryKind::Opaque("var/cache".into())
        );
        assert_eq!(
            classify(Path::new(".wh..wh..opq")).unwrap(),
            EntryKind::Opaque("".into())
        );
        assert_eq!(
            classify(Path::new("x/.wh..wh.plnk/1")).unwrap(),
            EntryKind::Normal("x/.wh..wh.plnk/1".into())
        );
        assert_eq!(classify(Path::new("x/.wh..wh.aufs")).unwrap(), EntryKind::Skip);
        // A name merely containing .wh. is an ordinary file.
        assert_eq!(
            classify(Path::new("a/b.wh.c")).unwrap(),
            EntryKind::Normal("a/b.wh.c".into())
        );
        assert!(classify(Path::new("a/../../etc/shadow")).unwrap_err().contains(".."));
        assert!(classify(Path::new("a/.wh.")).is_err());
    }

    fn tree(paths: &[&str]) -> BTreeSet<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn whiteouts_delete_lower_files_and_directories() {
        let mut t = BTreeSet::new();
        apply_layer(
            &mut t,
            &[
                "bin/",
                "bin/busybox",
                "etc/motd",
                "etc/hostname",
                "data/a",
                "data/sub/b",
            ],
        )
        .unwrap();
        apply_layer(&mut t, &["etc/.wh.motd", "data/.wh.sub"]).unwrap();
        assert_eq!(
            t,
            tree(&["bin", "bin/busybox", "data", "data/a", "etc", "etc/hostname"])
        );
    }

    #[test]
    fn opaque_directories_hide_only_lower_content() {
        let mut t = BTreeSet::new();
        apply_layer(&mut t, &["data/old1", "data/old2", "data/sub/x", "keep"]).unwrap();
        apply_layer(&mut t, &["data/", "data/.wh..wh..opq", "data/new"]).unwrap();
        assert_eq!(t, tree(&["data", "data/new", "keep"]));
        // The marker may come after the layer's own content.
        let mut t = BTreeSet::new();
        apply_layer(&mut t, &["d/old"]).unwrap();
        apply_layer(&mut t, &["d/new", "d/.wh..wh..opq"]).unwrap();
        assert_eq!(t, tree(&["d", "d/new"]));
    }

    #[test]
    fn a_whiteout_does_not_remove_the_same_layers_file() {
        let mut t = BTreeSet::new();
        apply_layer(&mut t, &["f"]).unwrap();
        apply_layer(&mut t, &[".wh.f", "f"]).unwrap();
        assert_eq!(t, tree(&["f"]));
        // And a later layer can bring a deleted path back.
        apply_layer(&mut t, &[".wh.f"]).unwrap();
        assert!(t.is_empty());
        apply_layer(&mut t, &["f"]).unwrap();
        assert_eq!(t, tree(&["f"]));
    }
}
