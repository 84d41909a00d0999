//! Pulling from a registry that speaks the OCI distribution API, through `oci-client` (which
//! does the HTTP, the basic auth and the bearer token flow). The store picks the platform,
//! verifies every digest itself, reports progress, and unpacks layers.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, info_span, Instrument};

use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::index::{Image, Layer};
use crate::manifest::{self, ConfigFile, Descriptor, Parsed};
use crate::reference::ImageRef;
use crate::store::ImageStore;

/// Credentials for a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials; registries that hand out anonymous tokens (Docker Hub) still work.
    #[default]
    Anonymous,
    /// A user name and password (or access token), sent as basic auth or traded for a bearer
    /// token, as the registry asks.
    Basic { username: String, password: String },
    /// A bearer token to send as is.
    Bearer { token: String },
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            RegistryAuth::Bearer { .. } => f.write_str("Bearer(***)"),
        }
    }
}

/// Options for one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub auth: RegistryAuth,
}

/// Which blob an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Manifest,
    Config,
    Layer,
}

/// Where a blob is in its pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Known, not started.
    Waiting,
    /// Bytes arriving (`done` of `total`).
    Downloading,
    /// All bytes in; checking the digest.
    Verifying,
    /// Already in the store; not downloaded.
    Exists,
    /// Unpacking the layer.
    Extracting,
    /// Finished.
    Done,
}

/// A progress event: enough to draw one bar per layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub digest: Digest,
    pub kind: BlobKind,
    pub state: PullState,
    /// Bytes downloaded so far.
    pub done: u64,
    /// Bytes expected, when known.
    pub total: Option<u64>,
}

/// A sink for progress events; `&|_| {}` ignores them.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// Report download progress every this many bytes (and at the end).
const PROGRESS_STEP: u64 = 256 * 1024;

struct Remote {
    client: Client,
    reference: ImageRef,
    oci: Reference,
    auth: OciAuth,
    insecure: bool,
}

impl ImageStore {
    /// Pulls an image (`busybox`, `127.0.0.1:5000/app:v1`, `...@sha256:...`) for the store's
    /// platform, stores it and returns it. Blobs and layers already present are not fetched
    /// again. `progress` sees every blob's state and byte counts.
    pub async fn pull(&self, reference: &str, opts: &PullOptions, progress: ProgressFn<'_>) -> Result<Image, Error> {
        let r = ImageRef::parse(reference)?;
        let span = info_span!("image_pull", reference = %r);
        self.pull_ref(r, opts, progress).instrument(span).await
    }

    async fn pull_ref(&self, r: ImageRef, opts: &PullOptions, progress: ProgressFn<'_>) -> Result<Image, Error> {
        let remote = Remote::new(self, &r, &opts.auth)?;
        remote.authenticate().await?;

        let (bytes, mut manifest_digest) = remote.manifest(&remote.oci).await?;
        if let Some(want) = r.digest() {
            if &manifest_digest != want {
                return Err(Error::DigestMismatch {
                    what: format!("manifest of {r}"),
                    expected: want.to_string(),
                    actual: manifest_digest.to_string(),
                });
            }
        }
        let mut manifest_bytes = bytes;
        let manifest = match manifest::parse_manifest(&manifest_bytes, None).map_err(|reason| bad_media(&r, reason))? {
            Parsed::Manifest(m) => m,
            Parsed::Index(index) => {
                let entry =
                    manifest::select_platform(&index.manifests, &self.config().platform).map_err(|available| {
                        Error::PlatformNotFound {
                            reference: r.to_string(),
                            platform: self.config().platform.to_string(),
                            available,
                        }
                    })?;
                let want = parse_digest(&entry.digest, &r)?;
                debug!(platform = %self.config().platform, digest = %want, "picked from the image index");
                let (bytes, digest) = remote.manifest(&remote.oci.clone_with_digest(want.to_string())).await?;
                if digest != want {
                    return Err(Error::DigestMismatch {
                        what: format!("platform manifest of {r}"),
                        expected: want.to_string(),
                        actual: digest.to_string(),
                    });
                }
                manifest_bytes = bytes;
                manifest_digest = digest;
                match manifest::parse_manifest(&manifest_bytes, Some(&entry.media_type))
                    .map_err(|reason| bad_media(&r, reason))?
                {
                    Parsed::Manifest(m) => m,
                    Parsed::Index(_) => {
                        return Err(Error::BadImage {
                            reference: r.to_string(),
                            reason: "the image index points at another index".to_string(),
                        })
                    }
                }
            }
        };
        progress(&Progress {
            digest: manifest_digest.clone(),
            kind: BlobKind::Manifest,
            state: PullState::Done,
            done: manifest_bytes.len() as u64,
            total: Some(manifest_bytes.len() as u64),
        });

        // Refuse what cannot be run before downloading anything big.
        match manifest.config.media_type.as_str() {
            manifest::OCI_CONFIG | manifest::DOCKER_CONFIG | "" => {}
            other => {
                return Err(Error::UnsupportedMediaType {
                    media_type: other.to_string(),
                    what: format!("config of {r} (not a container image)"),
                })
            }
        }
        for l in &manifest.layers {
            if manifest::layer_compression(&l.media_type).is_none() {
                return Err(Error::UnsupportedMediaType {
                    media_type: l.media_type.clone(),
                    what: format!("layer {} of {r}", l.digest),
                });
            }
        }
        let config_digest = parse_digest(&manifest.config.digest, &r)?;
        let layer_digests = manifest
            .layers
            .iter()
            .map(|l| parse_digest(&l.digest, &r))
            .collect::<Result<Vec<_>, _>>()?;

        let mut op = self.begin_op();
        op.pin([manifest_digest.clone(), config_digest.clone()]);
        op.pin(layer_digests.iter().cloned());

        let config_bytes = remote.small_blob(&manifest.config, &config_digest).await?;
        let config = ConfigFile::parse(&config_bytes).map_err(|reason| Error::BadImage {
            reference: r.to_string(),
            reason,
        })?;
        let diff_ids = config
            .diff_ids()
            .iter()
            .map(|d| parse_digest(d, &r))
            .collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::BadImage {
                reference: r.to_string(),
                reason: format!(
                    "the manifest has {} layers and the config {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        op.pin(diff_ids.iter().cloned());
        self.inner.blobs.put(&config_bytes, &config_digest, "image config")?;
        progress(&Progress {
            digest: config_digest.clone(),
            kind: BlobKind::Config,
            state: PullState::Done,
            done: config_bytes.len() as u64,
            total: Some(config_bytes.len() as u64),
        });

        for (l, d) in manifest.layers.iter().zip(&layer_digests) {
            progress(&Progress {
                digest: d.clone(),
                kind: BlobKind::Layer,
                state: PullState::Waiting,
                done: 0,
                total: u64::try_from(l.size).ok(),
            });
        }
        // After a failure no new layer starts, and the pull returns only when the ones under
        // way have finished, so nothing keeps writing into the store behind the caller's back.
        // (Collected first: a lazy iterator's closure held across an await makes the future
        // lose `Send`.)
        let failed = AtomicBool::new(false);
        let mut jobs = Vec::with_capacity(manifest.layers.len());
        for ((desc, digest), diff_id) in manifest.layers.iter().zip(&layer_digests).zip(&diff_ids) {
            let (failed, remote) = (&failed, &remote);
            jobs.push(async move {
                if failed.load(Ordering::SeqCst) {
                    return Err(None);
                }
                let result = self.fetch_layer(remote, desc, digest, diff_id, progress).await;
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                result.map_err(Some)
            });
        }
        let results: Vec<Result<Layer, Option<Error>>> = futures::stream::iter(jobs)
            .buffered(self.config().max_concurrent_downloads.max(1))
            .collect()
            .await;
        let mut layers = Vec::with_capacity(results.len());
        let mut first_error = None;
        for r in results {
            match r {
                Ok(layer) => layers.push(layer),
                Err(Some(e)) if first_error.is_none() => first_error = Some(e),
                Err(_) => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        self.inner
            .blobs
            .put(&manifest_bytes, &manifest_digest, "image manifest")?;
        let size = manifest_bytes.len() as u64 + config_bytes.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
        let image = self.commit(Image {
            reference: r.to_string(),
            manifest_digest,
            config_digest,
            layers,
            size,
            created: config.created.clone(),
            config: config.image_config(),
        })?;
        drop(op);
        info!(reference = %image.reference, size = image.size, "pulled");
        Ok(image)
    }

    async fn fetch_layer(
        &self,
        remote: &Remote,
        desc: &Descriptor,
        digest: &Digest,
        diff_id: &Digest,
        progress: ProgressFn<'_>,
    ) -> Result<Layer, Error> {
        let declared = u64::try_from(desc.size).ok();
        let event = |state, done, total| {
            progress(&Progress {
                digest: digest.clone(),
                kind: BlobKind::Layer,
                state,
                done,
                total,
            })
        };
        let size = match self.inner.blobs.size(digest) {
            Some(size) => {
                event(PullState::Exists, size, Some(size));
                size
            }
            None => {
                let mut stream = remote
                    .client
                    .pull_blob_stream(&remote.oci, &oci_descriptor(desc))
                    .await
                    .map_err(|e| remote.plain_error(e, &format!("layer {digest}")))?;
                let total = stream.content_length.or(declared);
                let mut writer = self.inner.blobs.writer()?;
                let mut reported = 0u64;
                event(PullState::Downloading, 0, total);
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| stream_error(e, remote, digest))?;
                    writer
                        .write_all(&chunk)
                        .ctx(|| format!("cannot write layer {digest}"))?;
                    let done = writer.written();
                    if done - reported >= PROGRESS_STEP {
                        reported = done;
                        event(PullState::Downloading, done, total);
                    }
                }
                let done = writer.written();
                event(PullState::Downloading, done, total);
                if let Some(t) = total {
                    if done < t {
                        return Err(Error::Unreachable {
                            registry: remote.reference.registry().to_string(),
                            source: format!("layer {digest} ended after {done} of {t} bytes").into(),
                        });
                    }
                }
                event(PullState::Verifying, done, total);
                let what = format!("layer {digest}");
                let d = digest.clone();
                tokio::task::spawn_blocking(move || writer.commit(Some(&d), &what))
                    .await
                    .expect("blob commit does not panic")?;
                done
            }
        };
        event(PullState::Extracting, size, Some(size));
        let store = self.clone();
        let (blob, media_type, diff) = (digest.clone(), desc.media_type.clone(), diff_id.clone());
        tokio::task::spawn_blocking(move || store.ensure_layer(&blob, &media_type, &diff))
            .await
            .expect("layer unpack does not panic")?;
        event(PullState::Done, size, Some(size));
        Ok(Layer {
            digest: digest.clone(),
            diff_id: diff_id.clone(),
            media_type: desc.media_type.clone(),
            size,
        })
    }
}

impl Remote {
    fn new(store: &ImageStore, r: &ImageRef, auth: &RegistryAuth) -> Result<Remote, Error> {
        // oci-client's reqwest is built without a crypto provider: ring is the process's one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let insecure = store.config().insecure_registries.iter().any(|x| x == r.registry());
        let config = ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("tepui/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            registry: r.registry().to_string(),
            what: "client setup".to_string(),
            message: e.to_string(),
        })?;
        let oci = match (r.tag(), r.digest()) {
            (Some(tag), Some(d)) => Reference::with_tag_and_digest(
                r.registry().to_string(),
                r.repository().to_string(),
                tag.to_string(),
                d.to_string(),
            ),
            (_, Some(d)) => Reference::with_digest(r.registry().to_string(), r.repository().to_string(), d.to_string()),
            (tag, None) => Reference::with_tag(
                r.registry().to_string(),
                r.repository().to_string(),
                tag.unwrap_or(crate::reference::DEFAULT_TAG).to_string(),
            ),
        };
        let auth = match auth {
            RegistryAuth::Anonymous => OciAuth::Anonymous,
            RegistryAuth::Basic { username, password } => OciAuth::Basic(username.clone(), password.clone()),
            RegistryAuth::Bearer { token } => OciAuth::Bearer(token.clone()),
        };
        Ok(Remote {
            client,
            reference: r.clone(),
            oci,
            auth,
            insecure,
        })
    }

    /// Asks the registry what auth it wants and gets a token if it uses them.
    async fn authenticate(&self) -> Result<(), Error> {
        match self.client.auth(&self.oci, &self.auth, RegistryOperation::Pull).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error(e, "authentication").await),
        }
    }

    async fn manifest(&self, oci: &Reference) -> Result<(Vec<u8>, Digest), Error> {
        let (bytes, _) = match self
            .client
            .pull_manifest_raw(oci, &self.auth, manifest::ACCEPTED_MANIFESTS)
            .await
        {
            Ok(v) => v,
            Err(e) => return Err(self.error(e, "manifest").await),
        };
        let digest = Digest::of(&bytes);
        Ok((bytes.to_vec(), digest))
    }

    /// A small blob (the config) into memory, digest checked.
    async fn small_blob(&self, desc: &Descriptor, digest: &Digest) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        if let Err(e) = self.client.pull_blob(&self.oci, &oci_descriptor(desc), &mut out).await {
            return Err(self.error(e, &format!("blob {digest}")).await);
        }
        let actual = Digest::of(&out);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(out)
    }

    /// Turns an oci-client error into one that says what to fix; a TLS failure against a
    /// registry that answers plain HTTP says so.
    async fn error(&self, e: OciDistributionError, what: &str) -> Error {
        if let OciDistributionError::RequestError(re) = &e {
            // Where requests go (`docker.io` is served at index.docker.io).
            let (host, port) = crate::reference::split_host_port(self.oci.resolve_registry());
            // A token service elsewhere (Docker Hub's auth.docker.io) is named as such.
            if let Some(url) = re.url() {
                let url_host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
                let same = url_host == host && (port.is_none() || url.port_or_known_default() == port);
                if !same {
                    return Error::Unreachable {
                        registry: format!("{} (its token service {})", self.reference.registry(), url.authority()),
                        source: crate::layer::error_chain(re).into(),
                    };
                }
            }
            if (re.is_connect() || re.is_request())
                && !self.insecure
                && speaks_plain_http(&host, port.unwrap_or(80)).await
            {
                return Error::InsecureRegistry {
                    registry: self.reference.registry().to_string(),
                };
            }
        }
        self.plain_error(e, what)
    }

    fn plain_error(&self, e: OciDistributionError, what: &str) -> Error {
        let registry = self.reference.registry().to_string();
        let reference = self.reference.to_string();
        let not_found = || Error::NotFound {
            reference: reference.clone(),
            registry: registry.clone(),
        };
        let auth_required = || Error::AuthRequired {
            registry: registry.clone(),
            reference: reference.clone(),
        };
        let denied = || Error::AuthDenied {
            registry: registry.clone(),
            reference: reference.clone(),
        };
        // A 401 despite credentials means they were refused.
        let unauthorized = || match self.auth {
            OciAuth::Anonymous => auth_required(),
            _ => denied(),
        };
        match e {
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown))
                {
                    return not_found();
                }
                if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized)) {
                    return unauthorized();
                }
                if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                    return denied();
                }
                Error::Registry {
                    registry,
                    what: what.to_string(),
                    message: envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                404 if what == "manifest" => not_found(),
                401 => unauthorized(),
                403 => denied(),
                _ => Error::Registry {
                    registry,
                    what: what.to_string(),
                    message: format!("HTTP {code}: {}", message.chars().take(300).collect::<String>()),
                },
            },
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                unauthorized()
            }
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => Error::DigestMismatch {
                what: what.to_string(),
                expected,
                actual,
            },
            OciDistributionError::UnsupportedMediaTypeError(media_type)
            | OciDistributionError::IncompatibleLayerMediaTypeError(media_type) => Error::UnsupportedMediaType {
                media_type,
                what: what.to_string(),
            },
            OciDistributionError::UnsupportedSchemaVersionError(v) => Error::UnsupportedMediaType {
                media_type: format!("manifest schema version {v}"),
                what: what.to_string(),
            },
            OciDistributionError::RequestError(source) => Error::Unreachable {
                registry,
                source: Box::new(source),
            },
            OciDistributionError::IoError(source) => Error::Unreachable {
                registry,
                source: Box::new(source),
            },
            other => Error::Registry {
                registry,
                what: what.to_string(),
                message: other.to_string(),
            },
        }
    }
}

fn stream_error(e: std::io::Error, remote: &Remote, digest: &Digest) -> Error {
    if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
    {
        return Error::DigestMismatch {
            what: format!("layer {digest}"),
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    Error::Unreachable {
        registry: remote.reference.registry().to_string(),
        source: Box::new(e),
    }
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    }
}

fn parse_digest(s: &str, r: &ImageRef) -> Result<Digest, Error> {
    Digest::parse(s).map_err(|reason| Error::BadImage {
        reference: r.to_string(),
        reason,
    })
}

fn bad_media(r: &ImageRef, reason: String) -> Error {
    if reason.contains("schema 1") {
        return Error::UnsupportedMediaType {
            media_type: "application/vnd.docker.distribution.manifest.v1+json".to_string(),
            what: format!("manifest of {r} (push it again with a current tool)"),
        };
    }
    Error::BadImage {
        reference: r.to_string(),
        reason,
    }
}

/// Whether `host:port` answers a plain HTTP request (a registry without TLS).
async fn speaks_plain_http(host: &str, port: u16) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await?;
        s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 7];
        s.read_exact(&mut head).await?;
        std::io::Result::Ok(&head == b"HTTP/1.")
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), probe).await, Ok(Ok(true)))
}
