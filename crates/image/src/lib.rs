//! The agent's OCI image store.
//!
//! [`ImageStore`] pulls images from any registry that speaks the OCI distribution API (basic
//! and bearer-token auth; plain HTTP only for registries listed in
//! [`StoreConfig::insecure_registries`]), reporting [`Progress`] per blob, and imports
//! `docker save` archives and OCI image layouts. Content lives under the store's root:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs, each checked against its digest
//!   before it is renamed into place;
//! - `layers/<diff id hex>/`: each layer unpacked once, shared by every image that has it, in
//!   overlayfs's format (whiteouts are character devices 0:0, opaque directories carry
//!   `trusted.overlay.opaque=y`);
//! - `index.json`: the images (normalized reference, manifest and config digests, layers, size,
//!   created, run config) and the container rootfs that hold layers, written atomically.
//!
//! [`ImageStore::prepare_rootfs`] mounts an overlay of an image's layers for a container (or,
//! where overlay cannot be mounted, copies them), and [`ImageStore::release_rootfs`] undoes it.
//! [`ImageStore::gc`] deletes what no image, rootfs or operation in flight needs.
//!
//! This crate does not know about containers, tasks or the cluster: the caller says what is in
//! use, where a container's directory is, and which credentials go with a pull. It keeps no
//! registry credentials. It needs root (device nodes, trusted xattrs, mounts) and a store on a
//! filesystem that has them (ext4, xfs). Pulls install ring as the process's default rustls
//! crypto provider if none is installed (oci-client's HTTP client needs one).

mod archive;
mod blobs;
mod digest;
mod error;
mod index;
mod layer;
mod manifest;
mod pull;
mod reference;
mod rootfs;
mod store;
mod sys;
pub mod whiteout;

#[cfg(feature = "test-support")]
pub mod testimage;

pub use digest::Digest;
pub use error::Error;
pub use index::{Image, Layer};
pub use manifest::{ImageConfig, Platform};
pub use pull::{BlobKind, Progress, ProgressFn, PullOptions, PullState, RegistryAuth};
pub use reference::ImageRef;
pub use rootfs::{Rootfs, RootfsMode};
pub use store::{GcReport, ImageStore, StoreConfig};

/// Media types the store understands, for callers that build images (tests, tools).
pub mod media_types {
    pub use crate::manifest::{
        DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER,
        OCI_LAYER_GZIP, OCI_MANIFEST,
    };
}

#[cfg(test)]
mod send_check {
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn pull_future_is_send(store: crate::ImageStore, opts: crate::PullOptions) {
        assert_send(async move { store.pull("busybox", &opts, &|_| {}).await });
    }
}
