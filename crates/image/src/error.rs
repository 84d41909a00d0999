//! The store's errors. Each message says what to fix; the cause, where there is one, is the
//! error's source and is not repeated in the message.

use std::io;
use std::path::PathBuf;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("image {reference} not found in registry {registry}: check the repository name and tag")]
    NotFound { reference: String, registry: String },

    #[error("image {reference} is not in the local store: pull or import it first")]
    NotInStore { reference: String },

    #[error(
        "registry {registry} refused {reference}: authentication required; give credentials for \
         this registry (or check that the repository exists: some registries answer 401 for \
         unknown names)"
    )]
    AuthRequired { registry: String, reference: String },

    #[error("registry {registry} refused {reference}: access denied for these credentials")]
    AuthDenied { registry: String, reference: String },

    #[error("registry {registry} is unreachable: check the address, the network and the registry's TLS")]
    Unreachable {
        registry: String,
        #[source]
        source: Source,
    },

    #[error(
        "registry {registry} speaks plain HTTP, and it is not in insecure_registries: add \
         {registry:?} there to allow pulling from it without TLS"
    )]
    InsecureRegistry { registry: String },

    #[error("registry {registry} failed the request for {what}: {message}")]
    Registry {
        registry: String,
        what: String,
        message: String,
    },

    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; the content is corrupt or was tampered with"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("not a docker save archive or OCI layout: {path}: {reason}")]
    BadArchive { path: PathBuf, reason: String },

    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { media_type: String, what: String },

    #[error("platform {platform} not found in the image index of {reference} (it has: {available})")]
    PlatformNotFound {
        reference: String,
        platform: String,
        available: String,
    },

    #[error("archive {path} holds several images ({names}); name the one to import")]
    AmbiguousArchive { path: PathBuf, names: String },

    #[error("archive {path} gives image {what} no repository name: give a reference to import it as")]
    UnnamedImage { path: PathBuf, what: String },

    #[error("image {reference} is in use: stop the containers that use it first")]
    InUse { reference: String },

    #[error("a rootfs ({reference}) is already prepared in {dir}: release it first")]
    RootfsExists { dir: PathBuf, reference: String },

    #[error("image store is inconsistent: {what}; remove the image and pull or import it again")]
    Inconsistent { what: String },

    #[error("image {reference} is not usable: {reason}")]
    BadImage { reference: String, reason: String },

    #[error("bad layer {digest}: {reason}")]
    BadLayer { digest: String, reason: String },

    #[error("image store {root} is locked by another process (pid file {lock}); one agent per store")]
    Locked { root: PathBuf, lock: PathBuf },

    #[error("image store index {path} is unreadable: {reason}; move it away to start over")]
    CorruptIndex { path: PathBuf, reason: String },

    #[error("cannot mount the rootfs at {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// `io::Result` to `Result` with a message that names what was being done.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
