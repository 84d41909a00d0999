//! Imports (OCI layout as directory and tar, docker-save archives), rootfs with whiteouts
//! (overlay and copy), shared layers, remove and gc, and broken archives, all against a real
//! store on disk with an image built from busybox-static.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use common::{assert_test_image_rootfs, is_mounted, run_in, Fixture};
use tepui_image::testimage::{build_busybox_layout, build_busybox_layout_variant, build_docker_archive, tar_dir};
use tepui_image::{Error, RootfsMode};

#[test]
fn oci_layout_imports_as_directory_and_as_tar() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let built = build_busybox_layout(&layout, "v1").unwrap();

    let images = f.store.import(&layout, Some("tepui-test/busybox:v1")).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.reference, "docker.io/tepui-test/busybox:v1");
    assert_eq!(Some(&img.manifest_digest), built.manifest_digest.as_ref());
    assert_eq!(img.config_digest, built.config_digest);
    assert_eq!(
        img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        built.diff_ids
    );
    assert_eq!(img.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert!(img.size > 500_000, "busybox is in there: {}", img.size);
    let c = &img.config;
    assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(c.cmd, ["cat /etc/hostname"]);
    assert_eq!(c.env, ["PATH=/bin", "TEPUI_VARIANT=v1"]);
    assert_eq!(c.working_dir.as_deref(), Some("/data"));
    assert_eq!(c.user.as_deref(), Some("0:0"));
    assert_eq!(c.exposed_ports, ["5353/udp", "8080/tcp"]);
    assert_eq!(c.labels.get("org.tepui.test").map(String::as_str), Some("busybox"));

    // The same layout as a tar, under another name: nothing new is stored.
    let tar = f.path("layout.tar");
    tar_dir(&layout, &tar).unwrap();
    let blobs_before = f.blob_files();
    let again = f.store.import(&tar, Some("local/again")).unwrap();
    assert_eq!(again[0].reference, "docker.io/local/again:latest");
    assert_eq!(again[0].manifest_digest, img.manifest_digest);
    assert_eq!(f.blob_files(), blobs_before);
    assert_eq!(f.layer_dirs().len(), 2);

    assert_eq!(f.store.list().len(), 2);
    assert_eq!(f.store.get("tepui-test/busybox:v1").unwrap(), *img);
    assert_eq!(
        f.store.get(&img.config_digest.to_string()).unwrap().config_digest,
        img.config_digest
    );
    assert!(f.store.check().is_empty(), "{:?}", f.store.check());
    assert!(f.temp_leftovers().is_empty(), "{:?}", f.temp_leftovers());

    // A bare tag in the layout is not a name; without a reference the import says so.
    let err = f.store.import(&layout, None).unwrap_err();
    assert!(matches!(err, Error::UnnamedImage { .. }), "{err}");
    assert!(err.to_string().contains("give a reference"), "{err}");
}

#[test]
fn layers_are_unpacked_in_overlay_format() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let built = build_busybox_layout(&layout, "v1").unwrap();
    f.store.import(&layout, Some("t/bb")).unwrap();
    let top = f.store.layer_path(&built.diff_ids[1]);
    let motd = fs::symlink_metadata(top.join("etc/motd")).unwrap();
    assert!(motd.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(motd.rdev(), 0);
    let mut value = [0u8; 4];
    let path = std::ffi::CString::new(top.join("data").to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated strings and a 4-byte buffer.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(n, 1);
    assert_eq!(value[0], b'y');
    let base = f.store.layer_path(&built.diff_ids[0]);
    let md = fs::metadata(base.join("bin/busybox")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(base.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn docker_save_archives_import_plain_and_gzipped() {
    let f = Fixture::new();
    let archive = f.path("busybox.tar");
    let built = build_docker_archive(&archive, "tepui-test/busybox:latest").unwrap();
    let images = f.store.import(&archive, None).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference, "docker.io/tepui-test/busybox:latest");
    assert_eq!(images[0].config_digest, built.config_digest);
    assert_eq!(images[0].layers.len(), 2);
    // docker save layers are plain tars: their digest is their diff id.
    for (l, d) in images[0].layers.iter().zip(&built.diff_ids) {
        assert_eq!(&l.digest, d);
        assert_eq!(&l.diff_id, d);
    }
    // The store wrote a manifest for it, as a blob.
    assert!(f.store.blob_path(&images[0].manifest_digest).is_file());

    // `docker save | gzip` works as well, under a name given here.
    let gz = f.path("busybox.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&fs::read(&archive).unwrap()).unwrap();
    enc.finish().unwrap();
    let images = f.store.import(&gz, Some("local/bb:gz")).unwrap();
    assert_eq!(images[0].reference, "docker.io/local/bb:gz");
    assert_eq!(images[0].config_digest, built.config_digest);

    let r = f.store.prepare_rootfs("local/bb:gz", &f.path("c1")).unwrap();
    assert_test_image_rootfs(&r.path);
    assert_eq!(fs::read_to_string(r.path.join("etc/variant")).unwrap(), "docker\n");
    f.store.release_rootfs(&f.path("c1")).unwrap();
    assert!(f.store.check().is_empty());
}

#[test]
fn overlay_rootfs_applies_whiteouts_and_unmounts_on_release() {
    let f = Fixture::new();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    f.store.import(&layout, Some("t/bb:v1")).unwrap();
    let dir = f.path("containers/c1");
    let r = f.store.prepare_rootfs("t/bb:v1", &dir).unwrap();
    assert_eq!(r.mode, RootfsMode::Overlay);
    assert!(is_mounted(&r.path), "{} is mounted", r.path.display());
    assert_eq!(r.config.cmd, ["cat /etc/hostname"]);
    assert_test_image_rootfs(&r.path);
    assert_eq!(
        run_in(&r.path, &["/bin/sh", "-c", "cat /etc/variant; ls /data"]),
        "v1\nnew\n"
    );

    // Writes go to the container's upper dir, never to the shared layers.
    fs::write(r.path.join("data/written"), b"mine").unwrap();
    fs::remove_file(r.path.join("etc/hostname")).unwrap();
    assert!(dir.join("upper/data/written").is_file());
    let base = f.store.get("t/bb:v1").unwrap().layers[0].diff_id.clone();
    assert!(f.store.layer_path(&base).join("etc/hostname").is_file());

    // A second container from the same image sees the image, not the first one's changes.
    let r2 = f.store.prepare_rootfs("t/bb:v1", &f.path("containers/c2")).unwrap();
    assert_test_image_rootfs(&r2.path);

    // Preparing again in the same place is refused.
    let err = f.store.prepare_rootfs("t/bb:v1", &dir).unwrap_err();
    assert!(matches!(err, Error::RootfsExists { .. }), "{err}");

    f.store.release_rootfs(&dir).unwrap();
    assert!(!is_mounted(&r.path));
    assert!(!r.path.exists() && !dir.join("upper").exists() && !dir.join("work").exists());
    assert!(dir.is_dir(), "the container dir itself is the caller's");
    // Releasing again is fine.
    f.store.release_rootfs(&dir).unwrap();

    // Even with a process inside, release leaves no mount behind.
    let mut child = std::process::Command::new("chroot")
        .arg(&r2.path)
        .args(["/bin/sh", "-c", "cd /data && exec cat"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    f.store.release_rootfs(&f.path("containers/c2")).unwrap();
    assert!(!is_mounted(&r2.path));
    drop(child.stdin.take());
    child.wait().unwrap();
}

#[test]
fn copy_rootfs_applies_whiteouts_the_same_way() {
    let f = Fixture::copy_mode();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    f.store.import(&layout, Some("t/bb:v1")).unwrap();
    let dir = f.path("c1");
    let r = f.store.prepare_rootfs("t/bb:v1", &dir).unwrap();
    assert_eq!(r.mode, RootfsMode::Copy);
    assert!(!is_mounted(&r.path));
    assert_test_image_rootfs(&r.path);
    assert_eq!(
        fs::metadata(r.path.join("bin/busybox")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(r.path.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert_eq!(run_in(&r.path, &["/bin/sh", "-c", "cat /etc/variant"]), "v1\n");
    f.store.release_rootfs(&dir).unwrap();
    assert!(!r.path.exists());
}

#[test]
fn shared_layers_are_stored_once_and_gc_removes_what_nothing_uses() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let v1 = build_busybox_layout_variant(&layout, "v1", "one").unwrap();
    let v2 = build_busybox_layout_variant(&layout, "v2", "two").unwrap();
    assert_eq!(v1.layer_digests[0], v2.layer_digests[0], "the base layer is the same");
    assert_ne!(v1.diff_ids[1], v2.diff_ids[1]);

    f.store.import(&layout, Some("t/bb:v1")).unwrap();
    f.store.import(&layout, Some("t/bb:v2")).unwrap();
    // Three layers (one shared base), and blobs: 2 manifests + 2 configs + 3 layers.
    assert_eq!(f.layer_dirs().len(), 3);
    assert_eq!(f.blob_files().len(), 7);

    // Nothing is garbage yet.
    assert_eq!(f.store.gc(&HashSet::new()).unwrap().removed_blobs, 0);

    // In use: by the caller's word, or by a rootfs not yet released.
    let err = f
        .store
        .remove("t/bb:v1", &HashSet::from(["t/bb:v1".to_string()]))
        .unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    let dir = f.path("c");
    f.store.prepare_rootfs("t/bb:v2", &dir).unwrap();
    let err = f.store.remove("t/bb:v2", &HashSet::new()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");

    f.store.remove("t/bb:v1", &HashSet::new()).unwrap();
    assert!(matches!(f.store.get("t/bb:v1"), Err(Error::NotInStore { .. })));
    let report = f.store.gc(&HashSet::new()).unwrap();
    assert_eq!(report.removed_layers, 1, "only v1's top layer goes");
    assert_eq!(report.removed_blobs, 3, "v1's manifest, config and top layer");
    assert!(report.freed_bytes > 0);
    assert!(!f.store.layer_path(&v1.diff_ids[1]).exists());
    assert!(f.store.layer_path(&v1.diff_ids[0]).exists(), "shared base stays");
    assert!(f.store.check().is_empty(), "{:?}", f.store.check());

    // The rootfs still works while gc runs around it; after release, v2 can go too.
    f.store.release_rootfs(&dir).unwrap();
    f.store.remove("t/bb:v2", &HashSet::new()).unwrap();
    // A digest the caller names is kept.
    let keep = HashSet::from([v2.diff_ids[0].to_string()]);
    let report = f.store.gc(&keep).unwrap();
    assert_eq!(report.removed_layers, 1);
    assert_eq!(f.layer_dirs().len(), 1);
    f.store.gc(&HashSet::new()).unwrap();
    assert!(f.layer_dirs().is_empty(), "{:?}", f.layer_dirs());
    assert!(f.blob_files().is_empty(), "{:?}", f.blob_files());
    assert!(f.store.list().is_empty());
}

#[test]
fn the_index_survives_reopening_the_store() {
    let f = Fixture::new();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    let root = f.path("second-store");
    let first = tepui_image::ImageStore::open(tepui_image::StoreConfig::new(&root)).unwrap();
    first.import(&layout, Some("t/bb:v1")).unwrap();
    // A second store on the same root is refused while the first holds it.
    let err = tepui_image::ImageStore::open(tepui_image::StoreConfig::new(&root)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let list = first.list();
    assert_eq!(list.len(), 1);
    drop(first);
    let again = tepui_image::ImageStore::open(tepui_image::StoreConfig::new(&root)).unwrap();
    assert_eq!(again.list(), list);
}

#[test]
fn reopening_keeps_the_leases_of_live_root_filesystems_and_drops_vanished_ones() {
    let f = Fixture::new();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    let root = f.path("second-store");
    let store = tepui_image::ImageStore::open(tepui_image::StoreConfig::new(&root)).unwrap();
    store.import(&layout, Some("t/bb:v1")).unwrap();
    let (live, gone) = (f.path("live"), f.path("gone"));
    store.prepare_rootfs("t/bb:v1", &live).unwrap();
    store.prepare_rootfs("t/bb:v1", &gone).unwrap();
    // What a power loss can leave: the container's files gone (mounts end with the machine),
    // its lease still in the index because the release was not saved durably.
    nix::mount::umount2(&gone.join("rootfs"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    fs::remove_dir_all(&gone).unwrap();
    drop(store);

    let store = tepui_image::ImageStore::open(tepui_image::StoreConfig::new(&root)).unwrap();
    let err = store.remove("t/bb:v1", &HashSet::new()).unwrap_err();
    assert!(
        matches!(err, Error::InUse { .. }),
        "the live rootfs still holds it: {err}"
    );
    store.release_rootfs(&live).unwrap();
    store
        .remove("t/bb:v1", &HashSet::new())
        .expect("no lease of the vanished rootfs holds the image");
}

#[test]
fn broken_archives_give_clear_errors_and_leave_the_store_consistent() {
    let f = Fixture::new();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    f.store.import(&layout, Some("t/good")).unwrap();
    let list = f.store.list();
    let blobs = f.blob_files();

    let check = |err: Error, want: &str| {
        let msg = err.to_string();
        assert!(msg.contains(want), "expected {want:?} in: {msg}");
        assert_eq!(f.store.list(), list, "the index is unchanged");
        assert!(f.store.check().is_empty(), "{:?}", f.store.check());
        assert!(f.temp_leftovers().is_empty(), "{:?}", f.temp_leftovers());
        msg
    };

    // A truncated tar of a layout (cut inside the busybox layer).
    let other = f.path("other");
    build_busybox_layout_variant(&other, "v9", "nine").unwrap();
    let tar = f.path("other.tar");
    tar_dir(&other, &tar).unwrap();
    let full = fs::read(&tar).unwrap();
    let cut = f.path("cut.tar");
    fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let msg = check(
        f.store.import(&cut, Some("t/cut")).unwrap_err(),
        "not a docker save archive or OCI layout",
    );
    assert!(msg.contains("cut.tar"), "{msg}");

    // A docker archive cut short.
    let docker = f.path("docker.tar");
    build_docker_archive(&docker, "t/docker:latest").unwrap();
    let full = fs::read(&docker).unwrap();
    fs::write(&docker, &full[..full.len() - 3000]).unwrap();
    check(
        f.store.import(&docker, None).unwrap_err(),
        "not a docker save archive or OCI layout",
    );

    // Not an archive at all, and an empty file.
    let junk = f.path("junk.tar");
    fs::write(&junk, vec![b'x'; 4096]).unwrap();
    check(
        f.store.import(&junk, Some("t/junk")).unwrap_err(),
        "not a docker save archive or OCI layout",
    );
    fs::write(&junk, b"").unwrap();
    check(f.store.import(&junk, Some("t/junk")).unwrap_err(), "it is empty");
    check(
        f.store.import(&f.path("missing.tar"), Some("t/m")).unwrap_err(),
        "cannot read it",
    );

    // A layout whose layer was corrupted after it was written.
    let corrupt = f.path("corrupt");
    let built = build_busybox_layout_variant(&corrupt, "v7", "seven").unwrap();
    let blob = corrupt.join("blobs/sha256").join(built.layer_digests[1].hex());
    let mut data = fs::read(&blob).unwrap();
    let n = data.len();
    data[n / 3] ^= 0xff;
    fs::write(&blob, data).unwrap();
    check(
        f.store.import(&corrupt, Some("t/corrupt")).unwrap_err(),
        "digest mismatch",
    );

    // A docker archive whose manifest.json names a layer it does not have.
    let dir = f.path("docker-dir");
    fs::create_dir(&dir).unwrap();
    let archive = f.path("d2.tar");
    build_docker_archive(&archive, "t/d2:latest").unwrap();
    tar::Archive::new(fs::File::open(&archive).unwrap())
        .unpack(&dir)
        .unwrap();
    let layer_dir = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("layer.tar").is_file())
        .unwrap()
        .path();
    fs::remove_file(layer_dir.join("layer.tar")).unwrap();
    check(f.store.import(&dir, None).unwrap_err(), "the archive is incomplete");

    // A layout for a platform this machine is not.
    let foreign = f.path("foreign");
    build_busybox_layout(&foreign, "v1").unwrap();
    let index_path = foreign.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["platform"] = serde_json::json!({"os": "linux", "architecture": "s390x"});
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let msg = check(
        f.store.import(&foreign, Some("t/foreign")).unwrap_err(),
        "not found in the image index",
    );
    assert!(msg.contains("linux/s390x"), "{msg}");

    // Orphaned blobs from the failed imports are valid content; gc takes them.
    f.store.gc(&HashSet::new()).unwrap();
    assert_eq!(f.blob_files(), blobs);
    assert!(f.store.check().is_empty());
    let r = f.store.prepare_rootfs("t/good", &f.path("c")).unwrap();
    assert_test_image_rootfs(&r.path);
    f.store.release_rootfs(&f.path("c")).unwrap();
}

/// Paths under `root`, relative, as the whiteout model lists them.
fn tree_of(root: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut std::collections::BTreeSet<std::path::PathBuf>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn entry_paths(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn overlay_and_copy_agree_with_the_whiteout_model_even_with_a_repeated_layer() {
    use tepui_image::testimage::{base_layer_tar, build_layout_from_tars, top_layer_tar};
    // base, top (deletes /etc/motd, makes /data opaque), base again (brings them back).
    let base = base_layer_tar().unwrap();
    let top = top_layer_tar("x").unwrap();
    let layers = vec![(base.clone(), true), (top.clone(), false), (base.clone(), true)];
    let mut model = std::collections::BTreeSet::new();
    for (t, _) in &layers {
        let paths = entry_paths(t);
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        tepui_image::whiteout::apply_layer(&mut model, &refs).unwrap();
    }
    assert!(model.contains(std::path::Path::new("etc/motd")));
    assert!(model.contains(std::path::Path::new("data/old1")) && model.contains(std::path::Path::new("data/new")));

    for (f, mode) in [
        (Fixture::new(), RootfsMode::Overlay),
        (Fixture::copy_mode(), RootfsMode::Copy),
    ] {
        let layout = f.path("layout");
        build_layout_from_tars(&layout, "rep", &layers, "x").unwrap();
        f.store.import(&layout, Some("t/repeat")).unwrap();
        assert_eq!(f.layer_dirs().len(), 2);
        let dir = f.path("c");
        let r = f.store.prepare_rootfs("t/repeat", &dir).unwrap();
        assert_eq!(r.mode, mode);
        assert_eq!(tree_of(&r.path), model, "{:?} rootfs", r.mode);
        f.store.release_rootfs(&dir).unwrap();

        // And the plain two-layer image.
        let two = vec![(base.clone(), false), (top.clone(), true)];
        build_layout_from_tars(&layout, "two", &two, "x").unwrap();
        f.store.import(&layout, Some("t/two:two")).unwrap();
        let mut model2 = std::collections::BTreeSet::new();
        for (t, _) in &two {
            let paths = entry_paths(t);
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            tepui_image::whiteout::apply_layer(&mut model2, &refs).unwrap();
        }
        let r = f.store.prepare_rootfs("t/two:two", &dir).unwrap();
        assert_eq!(tree_of(&r.path), model2, "{:?} rootfs", r.mode);
        assert_test_image_rootfs(&r.path);
        f.store.release_rootfs(&dir).unwrap();
    }
}

#[test]
fn auto_mode_falls_back_to_a_copy_when_overlay_cannot_mount() {
    let f = Fixture::new();
    let layout = f.path("layout");
    build_busybox_layout(&layout, "v1").unwrap();
    f.store.import(&layout, Some("t/bb:v1")).unwrap();
    // Overlay's mount options cannot carry a ':' in a path: the mount fails, the copy works.
    let dir = f.path("odd:dir");
    let r = f.store.prepare_rootfs("t/bb:v1", &dir).unwrap();
    assert_eq!(r.mode, RootfsMode::Copy);
    assert_test_image_rootfs(&r.path);
    f.store.release_rootfs(&dir).unwrap();
    assert!(!r.path.exists());

    // With overlay required, the same is an error, and nothing is left behind.
    let strict = Fixture::with(|c| c.rootfs_mode = RootfsMode::Overlay);
    strict.store.import(&layout, Some("t/bb:v1")).unwrap();
    let err = strict
        .store
        .prepare_rootfs("t/bb:v1", &strict.path("odd:dir"))
        .unwrap_err();
    assert!(matches!(err, Error::Mount { .. }), "{err:?}");
    assert!(!strict.path("odd:dir/rootfs").exists());
    strict.store.remove("t/bb:v1", &HashSet::new()).unwrap();
}
