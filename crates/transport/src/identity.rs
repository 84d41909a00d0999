use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tepui_pki::{CertifiedKey, NodeIdentity, PkiError, Role};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {detail}; move the data dir away and join again")]
    Damaged { path: PathBuf, detail: String },
    #[error("bad certificate material")]
    Pki(#[from] PkiError),
}

/// What a node keeps on disk after it joined, so that a restart needs no token: its id, its
/// key and certificate, the cluster CA and where the servers were last seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: u64,
    pub name: String,
    pub role: Role,
    pub cluster_id: String,
    /// Cluster addresses of the servers, refreshed whenever a server tells us.
    pub servers: Vec<String>,
    #[serde(skip)]
    pub ca_pem: String,
    #[serde(skip)]
    pub cert_pem: String,
    #[serde(skip)]
    pub key_pem: String,
}

const META: &str = "node.json";
const CA: &str = "ca.pem";
const CERT: &str = "node.pem";
const KEY: &str = "node.key";

impl Identity {
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("identity")
    }

    /// Reads the identity under `data_dir`; `None` when this node never joined.
    pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let dir = Self::dir(data_dir);
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| IdentityError::Read { path, source })
        };
        let mut id: Identity = serde_json::from_str(&read(META)?).map_err(|e| IdentityError::Damaged {
            path: meta_path.clone(),
            detail: e.to_string(),
        })?;
        id.ca_pem = read(CA)?;
        id.cert_pem = read(CERT)?;
        id.key_pem = read(KEY)?;
        Ok(Some(id))
    }

    /// Writes every file to a temporary name first and renames it, so a crash leaves either the
    /// old or the new file, never half of one. The metadata goes last: it marks the node joined.
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        self.save_certs(data_dir)?;
        self.save_meta(data_dir)
    }

    /// Writes the CA bundle, the certificate and the key (after a join or a renewal).
    pub fn save_certs(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let dir = Self::dir(data_dir);
        create_private_dir(&dir).map_err(|source| IdentityError::Write {
            path: dir.clone(),
            source,
        })?;
        write_atomic(&dir.join(CA), self.ca_pem.as_bytes(), 0o600)?;
        write_atomic(&dir.join(CERT), self.cert_pem.as_bytes(), 0o600)?;
        write_atomic(&dir.join(KEY), self.key_pem.as_bytes(), 0o600)
    }

    /// Writes the metadata alone (the servers last seen change often; the certificate does not).
    pub fn save_meta(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let dir = Self::dir(data_dir);
        create_private_dir(&dir).map_err(|source| IdentityError::Write {
            path: dir.clone(),
            source,
        })?;
        let meta = serde_json::to_vec_pretty(self).expect("identity metadata always serializes");
        write_atomic(&dir.join(META), &meta, 0o600)
    }

    pub fn node_identity(&self) -> NodeIdentity {
        NodeIdentity {
            id: self.node_id,
            role: self.role,
            name: self.name.clone(),
        }
    }

    pub fn certified_key(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// The node's swappable TLS, trusting its CA bundle and presenting its certificate.
    pub fn live_tls(&self) -> Result<tepui_pki::tls::LiveTls, IdentityError> {
        Ok(tepui_pki::tls::LiveTls::new(tepui_pki::tls::TlsMaterial {
            ca_bundle_pem: self.ca_pem.clone(),
            node: self.certified_key(),
            extra_chain_pem: String::new(),
        })?)
    }

    pub fn server_tls(&self) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        Ok(tepui_pki::tls::server_config(&self.ca_pem, &self.certified_key())?)
    }

    pub fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
        Ok(tepui_pki::tls::client_config(
            &self.ca_pem,
            Some(&self.certified_key()),
        )?)
    }
}

/// Creates `path` (and its parents) and makes it the owner's only (0700), whatever the umask:
/// data dirs hold keys, tokens and the replicated state.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Writes a file whole or not at all, fsynced, with `mode` (0o600 for secrets).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // node.pem.tmp, not node.tmp: the certificate and the metadata may be saved at once (a
    // renewal and the session's server list), and must not share a temporary file.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let err = |source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    // A leftover temporary file keeps whatever mode it had: set it.
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}
