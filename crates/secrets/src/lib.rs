//! Secrets: values sealed with the cluster's secrets key before they reach the replicated
//! state (so the Raft log, snapshots and backups hold only ciphertext), opened on the leader
//! only to launch a task, and handed to its agent over the cluster's mutual TLS.
//!
//! The key is 32 random bytes in every server's `identity/secrets.key` (0600): the bootstrap
//! server makes it and joining servers get it with their certificate. It is never replicated,
//! so a stolen snapshot reveals nothing.

pub mod api;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tepui_proto::agent::SecretValue;
use tepui_state::{SecretRef, State};

/// The key file, under a server's data dir.
pub const KEY_FILE: &str = "identity/secrets.key";

/// What a sealed value starts with: the format, so that a later one can be told apart.
const SEALED_PREFIX: &str = "sealed1:";

/// The most a secret may hold.
pub const VALUE_LIMIT: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the secrets key in {path} is {len} bytes; it must be 32")]
    BadKey { path: PathBuf, len: usize },
    #[error("secret {path:?} cannot be opened with this cluster's key (sealed by another cluster, or damaged)")]
    Unsealable { path: String },
}

/// The cluster's secrets key.
pub struct Keyring {
    key: LessSafeKey,
    raw: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

impl Keyring {
    /// A new random key.
    pub fn generate() -> Keyring {
        let mut raw = [0u8; 32];
        SystemRandom::new()
            .fill(&mut raw)
            .expect("the system's random source works");
        Keyring::from_raw(raw)
    }

    fn from_raw(raw: [u8; 32]) -> Keyring {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32 bytes is an AES-256 key"));
        Keyring { key, raw }
    }

    /// A key received from another server (at join).
    pub fn from_bytes(bytes: &[u8]) -> Option<Keyring> {
        <[u8; 32]>::try_from(bytes).ok().map(Keyring::from_raw)
    }

    /// The key, to hand to a joining server over the pinned TLS of the join.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The key in `data_dir`, if this server has one.
    pub fn load(data_dir: &Path) -> Result<Option<Keyring>, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Keyring::from_bytes(&bytes)
                .map(Some)
                .ok_or(SecretsError::BadKey { len: bytes.len(), path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretsError::Io { path, source }),
        }
    }

    /// Writes the key into `data_dir` (0600, whole or not at all).
    pub fn save(&self, data_dir: &Path) -> Result<(), SecretsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecretsError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("key.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&self.raw).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Seals `value` for the secret at `path`: AES-256-GCM with a random nonce, the path as
    /// associated data (a sealed value moved to another path does not open).
    pub fn seal(&self, path: &str, value: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut buf = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(path.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any value under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Opens what [`Keyring::seal`] sealed for `path`.
    pub fn open(&self, path: &str, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let unsealable = || SecretsError::Unsealable { path: path.to_string() };
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(unsealable)?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| unsealable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unsealable());
        }
        let mut body = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| unsealable())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(path.as_bytes()), &mut body)
            .map_err(|_| unsealable())?;
        Ok(plain.to_vec())
    }
}

/// The values a task's secret references stand for, as its agent gets them. An error names
/// the first secret that cannot be given and why.
pub fn resolve(state: &State, keyring: Option<&Keyring>, refs: &[SecretRef]) -> Result<Vec<SecretValue>, String> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let Some(record) = state.secrets.get(&r.source) else {
            return Err(format!("secret {:?} does not exist", r.source));
        };
        let Some(keyring) = keyring else {
            return Err(format!(
                "this server has no secrets key ({KEY_FILE} under its data dir) to open secret {:?}",
                r.source
            ));
        };
        let value = keyring.open(&r.source, &record.sealed).map_err(|e| e.to_string())?;
        let value = String::from_utf8(value).map_err(|_| format!("secret {:?} is not UTF-8 text", r.source))?;
        out.push(SecretValue {
            source: r.source.clone(),
            env: r.env.clone(),
            file: r.file.clone(),
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_path() {
        let k = Keyring::generate();
        let sealed = k.seal("/db/password", b"hunter2");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, k.seal("/db/password", b"hunter2"), "a fresh nonce each time");
        assert_eq!(k.open("/db/password", &sealed).unwrap(), b"hunter2");
        assert!(k.open("/db/other", &sealed).is_err(), "bound to its path");
        assert!(
            Keyring::generate().open("/db/password", &sealed).is_err(),
            "another key"
        );
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('A');
        assert!(k.open("/db/password", &damaged).is_err());
        assert!(k.open("/db/password", "hunter2").is_err());
        assert!(k.open("/db/password", "sealed1:").is_err());
    }

    #[test]
    fn the_key_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::load(dir.path()).unwrap().is_none());
        let k = Keyring::generate();
        k.save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let again = Keyring::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.open("/a", &k.seal("/a", b"x")).unwrap(), b"x");
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            Keyring::load(dir.path()),
            Err(SecretsError::BadKey { len: 5, .. })
        ));
    }

    #[test]
    fn resolve_gives_each_reference_its_value_or_says_which_is_missing() {
        let k = Keyring::generate();
        let mut state = State::default();
        state.secrets.insert(
            "/db/pw".into(),
            tepui_state::SecretRecord {
                sealed: k.seal("/db/pw", b"s3cret"),
                modify_index: 1,
                modified_at: 0,
            },
        );
        let refs = vec![
            SecretRef {
                source: "/db/pw".into(),
                env: Some("DB_PASSWORD".into()),
                file: None,
            },
            SecretRef {
                source: "/db/pw".into(),
                env: None,
                file: Some("/run/secrets/pw".into()),
            },
        ];
        let got = resolve(&state, Some(&k), &refs).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].value, "s3cret");
        assert_eq!(got[0].env.as_deref(), Some("DB_PASSWORD"));
        assert_eq!(got[1].file.as_deref(), Some("/run/secrets/pw"));
        assert!(!format!("{got:?}").contains("s3cret"), "never in a debug line");

        let missing = vec![SecretRef {
            source: "/nope".into(),
            env: Some("X".into()),
            file: None,
        }];
        assert!(resolve(&state, Some(&k), &missing)
            .unwrap_err()
            .contains("\"/nope\" does not exist"));
        assert!(resolve(&state, None, &refs).unwrap_err().contains("no secrets key"));
        assert!(resolve(&state, Some(&Keyring::generate()), &refs)
            .unwrap_err()
            .contains("cannot be opened"));
    }
}
