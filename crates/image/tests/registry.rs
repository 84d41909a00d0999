//! Pulls from a real registry (Debian's docker-registry on loopback), pushed to with skopeo.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use common::{assert_test_image_rootfs, Fixture};
use tepui_image::testimage::{
    build_busybox_layout, build_busybox_layout_variant, require_program, Registry, BASIC_PASSWORD, BASIC_USER,
};
use tepui_image::{BlobKind, Error, Progress, PullOptions, PullState, RegistryAuth};

fn require_tools() {
    common::require_environment();
    for (program, package) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        if let Err(e) = require_program(program, package) {
            panic!("{e}");
        }
    }
}

/// A registry with `tepui/busybox:v1` and `:v2` (sharing the base layer) pushed to it.
fn registry_with_images(f: &Fixture) -> (Registry, tepui_image::testimage::TestImage) {
    require_tools();
    let registry = Registry::start(&f.path("registry")).unwrap();
    let layout = f.path("layout");
    let v1 = build_busybox_layout(&layout, "v1").unwrap();
    build_busybox_layout_variant(&layout, "v2", "two").unwrap();
    registry.push_layout(&layout, "v1", "tepui/busybox").unwrap();
    registry.push_layout(&layout, "v2", "tepui/busybox").unwrap();
    (registry, v1)
}

fn insecure(host: String) -> impl FnOnce(&mut tepui_image::StoreConfig) {
    move |c| c.insecure_registries = vec![host]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_reports_progress_and_reuses_what_is_stored() {
    let tmp = Fixture::new();
    let (registry, built) = registry_with_images(&tmp);
    let f = Fixture::with(insecure(registry.host()));
    let reference = format!("{}/tepui/busybox:v1", registry.host());

    let events = Mutex::new(Vec::<Progress>::new());
    let record = |p: &Progress| events.lock().unwrap().push(p.clone());
    let img = f
        .store
        .pull(&reference, &PullOptions::default(), &record)
        .await
        .unwrap();
    assert_eq!(img.reference, reference);
    // skopeo writes the manifest anew when it pushes and gzips the plain top layer; the config
    // and the (already gzipped) base layer are the same bytes.
    assert_eq!(img.config_digest, built.config_digest);
    assert_eq!(img.layers[0].digest, built.layer_digests[0]);
    assert_eq!(
        img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        built.diff_ids
    );
    assert_eq!(img.config.cmd, ["cat /etc/hostname"]);
    assert_eq!(img.config.exposed_ports, ["5353/udp", "8080/tcp"]);

    // Per layer: waiting, downloading up to its full size, verifying, extracting, done.
    let events = events.into_inner().unwrap();
    let mut by_layer: BTreeMap<String, Vec<&Progress>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == BlobKind::Layer) {
        by_layer.entry(e.digest.to_string()).or_default().push(e);
    }
    assert_eq!(by_layer.len(), 2);
    for layer in &img.layers {
        let evs = &by_layer[&layer.digest.to_string()];
        let states: Vec<PullState> = evs.iter().map(|e| e.state).collect();
        assert_eq!(states.first(), Some(&PullState::Waiting));
        assert_eq!(states.last(), Some(&PullState::Done));
        for s in [PullState::Downloading, PullState::Verifying, PullState::Extracting] {
            assert!(states.contains(&s), "{s:?} in {states:?}");
        }
        let last_download = evs.iter().rfind(|e| e.state == PullState::Downloading).unwrap();
        assert_eq!(last_download.done, layer.size);
        assert_eq!(last_download.total, Some(layer.size));
        let downloads: Vec<u64> = evs
            .iter()
            .filter(|e| e.state == PullState::Downloading)
            .map(|e| e.done)
            .collect();
        assert!(
            downloads.windows(2).all(|w| w[0] <= w[1]),
            "progress only grows: {downloads:?}"
        );
    }
    // The busybox layer is big enough for intermediate progress.
    let base = &by_layer[&img.layers[0].digest.to_string()];
    assert!(base.iter().filter(|e| e.state == PullState::Downloading).count() > 2);
    assert!(events
        .iter()
        .any(|e| e.kind == BlobKind::Manifest && e.state == PullState::Done));
    assert!(events
        .iter()
        .any(|e| e.kind == BlobKind::Config && e.state == PullState::Done));

    // The pulled image runs as a rootfs with its whiteouts applied.
    let r = f.store.prepare_rootfs(&reference, &f.path("c1")).unwrap();
    assert_test_image_rootfs(&r.path);
    f.store.release_rootfs(&f.path("c1")).unwrap();

    // v2 shares the base layer: it is not downloaded again, only v2's top layer is.
    let events = Mutex::new(Vec::<Progress>::new());
    let record = |p: &Progress| events.lock().unwrap().push(p.clone());
    let v2 = f
        .store
        .pull(
            &format!("{}/tepui/busybox:v2", registry.host()),
            &PullOptions::default(),
            &record,
        )
        .await
        .unwrap();
    let events = events.into_inner().unwrap();
    assert_eq!(v2.layers[0], img.layers[0]);
    let base_states: Vec<PullState> = events
        .iter()
        .filter(|e| e.digest == img.layers[0].digest)
        .map(|e| e.state)
        .collect();
    assert!(base_states.contains(&PullState::Exists), "{base_states:?}");
    assert!(!base_states.contains(&PullState::Downloading), "{base_states:?}");
    assert_eq!(f.layer_dirs().len(), 3, "one shared base, two tops");

    // Pulling by digest finds the same image.
    let by_digest = format!("{}/tepui/busybox@{}", registry.host(), img.manifest_digest);
    let again = f
        .store
        .pull(&by_digest, &PullOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);

    // Removing v1 and collecting leaves v2 whole.
    f.store.remove(&reference, &HashSet::new()).unwrap();
    f.store.remove(&by_digest, &HashSet::new()).unwrap();
    let report = f.store.gc(&HashSet::new()).unwrap();
    assert_eq!(report.removed_layers, 1);
    assert!(f.store.check().is_empty(), "{:?}", f.store.check());
    assert!(f.temp_leftovers().is_empty(), "{:?}", f.temp_leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_say_what_to_fix() {
    let tmp = Fixture::new();
    let (registry, _) = registry_with_images(&tmp);
    let host = registry.host();
    let f = Fixture::with(insecure(host.clone()));
    let opts = PullOptions::default();

    // Unknown repository, and unknown tag of a known one.
    for missing in [format!("{host}/tepui/nothing:v1"), format!("{host}/tepui/busybox:v404")] {
        let err = f.store.pull(&missing, &opts, &|_| {}).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{missing}: {err:?}");
        assert!(err.to_string().contains("not found in registry"), "{err}");
    }

    // A plain-HTTP registry not in insecure_registries is refused, with the fix in the message.
    let strict = Fixture::new();
    let err = strict
        .store
        .pull(&format!("{host}/tepui/busybox:v1"), &opts, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsecureRegistry { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("insecure_registries") && msg.contains(&host), "{msg}");
    assert!(strict.store.list().is_empty());

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{port}");
    let f2 = Fixture::with(insecure(dead.clone()));
    let err = f2.store.pull(&format!("{dead}/x/y"), &opts, &|_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");

    // Bad references never reach the network.
    let err = f.store.pull("Upper/Case", &opts, &|_| {}).await.unwrap_err();
    assert!(matches!(err, Error::InvalidReference { .. }), "{err:?}");
    assert!(f.store.list().is_empty());
    assert!(f.temp_leftovers().is_empty(), "{:?}", f.temp_leftovers());

    // A registry serving corrupted layers: the download is checked against its digest and
    // nothing corrupt is kept.
    let mut corrupted = 0;
    let blobs = tmp.path("registry/data/docker/registry/v2/blobs/sha256");
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data_path = blob.path().join("data");
            let mut data = std::fs::read(&data_path).unwrap();
            if data.starts_with(&[0x1f, 0x8b]) {
                let mid = data.len() / 2;
                data[mid] ^= 0x55;
                std::fs::write(&data_path, data).unwrap();
                corrupted += 1;
            }
        }
    }
    assert!(corrupted >= 2, "the layers are gzip blobs in the registry");
    let err = f
        .store
        .pull(&format!("{host}/tepui/busybox:v2"), &opts, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(f.store.list().is_empty());
    assert!(f.layer_dirs().is_empty(), "{:?}", f.layer_dirs());
    assert!(f.store.check().is_empty());
    assert!(f.temp_leftovers().is_empty(), "{:?}", f.temp_leftovers());
    f.store.gc(&HashSet::new()).unwrap();
    assert!(f.blob_files().is_empty(), "{:?}", f.blob_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_wants_auth_gets_it() {
    let tmp = Fixture::new();
    // Push to an open registry, then serve the same storage with token auth required.
    let data = tmp.path("registry");
    {
        let (_open, _) = registry_with_images(&tmp);
    }
    let guarded = Registry::start_with(
        &data,
        // The token realm is the registry itself, which has no token service: a client without
        // a token is refused, one with any bearer token is let in.
        "auth:\n  silly:\n    realm: http://{addr}/token\n    service: tepui-test\n",
    )
    .unwrap();
    let f = Fixture::with(insecure(guarded.host()));
    let reference = format!("{}/tepui/busybox:v1", guarded.host());

    let err = f
        .store
        .pull(&reference, &PullOptions::default(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRequired { .. }), "{err:?}");
    assert!(err.to_string().contains("authentication required"), "{err}");

    let with_token = PullOptions {
        auth: RegistryAuth::Bearer {
            token: "any-token-will-do".to_string(),
        },
    };
    let img = f.store.pull(&reference, &with_token, &|_| {}).await.unwrap();
    assert_eq!(img.layers.len(), 2);
    drop(guarded);

    // Basic auth (htpasswd): no credentials, wrong ones, right ones.
    let basic = Registry::start_with_basic_auth(&data).unwrap();
    let f = Fixture::with(insecure(basic.host()));
    let reference = format!("{}/tepui/busybox:v2", basic.host());
    let err = f
        .store
        .pull(&reference, &PullOptions::default(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRequired { .. }), "{err:?}");
    let wrong = PullOptions {
        auth: RegistryAuth::Basic {
            username: BASIC_USER.to_string(),
            password: "wrong".to_string(),
        },
    };
    let err = f.store.pull(&reference, &wrong, &|_| {}).await.unwrap_err();
    assert!(matches!(err, Error::AuthDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("denied"), "{err}");
    let right = PullOptions {
        auth: RegistryAuth::Basic {
            username: BASIC_USER.to_string(),
            password: BASIC_PASSWORD.to_string(),
        },
    };
    let img = f.store.pull(&reference, &right, &|_| {}).await.unwrap();
    assert_eq!(img.reference, reference);
    assert!(f.store.check().is_empty());
}
