//! Join tokens: "tepui1.<role>.<ca_sha256>.<id>.<secret>".
//!
//! The CA hash lets a joining node verify the cluster before it sends anything; the id names
//! the token so the cluster can look it up, and only the SHA-256 of the secret needs to be
//! stored. Whether a token is still valid is the cluster's business, not this module's.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::{sha256_hex, PkiError, Role};

const PREFIX: &str = "tepui1";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SHAPE: &str = "join token must look like tepui1.<role>.<ca-hash>.<id>.<secret>";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub role: Role,
    /// Lowercase hex SHA-256 of the cluster CA certificate DER.
    pub ca_sha256: String,
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    /// A fresh token with a random id and secret. `ca_sha256` is taken as given (lowercased).
    pub fn generate(role: Role, ca_sha256: &str) -> JoinToken {
        JoinToken {
            role,
            ca_sha256: ca_sha256.to_ascii_lowercase(),
            id: random_alnum(ID_LEN),
            secret: random_alnum(SECRET_LEN),
        }
    }

    /// Lowercase hex SHA-256 of the secret: what the cluster stores instead of the secret.
    pub fn secret_sha256(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

/// `len` characters from [a-z0-9], drawn from the thread-local CSPRNG.
fn random_alnum(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn is_lower_alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}.{}",
            self.role.as_str(),
            self.ca_sha256,
            self.id,
            self.secret
        )
    }
}

impl FromStr for JoinToken {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Tokens are pasted from terminals and files; stray whitespace is not an error.
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [prefix, role, ca_sha256, id, secret] = parts[..] else {
            return Err(PkiError::Token(SHAPE.to_string()));
        };
        if prefix != PREFIX {
            return Err(PkiError::Token(format!(
                "{SHAPE} (it starts with {prefix:?}, not {PREFIX:?})"
            )));
        }
        let role = Role::parse(role).ok_or_else(|| {
            PkiError::Token(format!(
                "unknown role {role:?} in join token (expected server or agent)"
            ))
        })?;
        if ca_sha256.len() != 64 || !ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token("ca hash must be 64 hex characters".to_string()));
        }
        if id.len() != ID_LEN || !is_lower_alnum(id) {
            return Err(PkiError::Token(format!(
                "token id must be {ID_LEN} lowercase letters or digits"
            )));
        }
        if secret.len() != SECRET_LEN || !is_lower_alnum(secret) {
            return Err(PkiError::Token(format!(
                "token secret must be {SECRET_LEN} lowercase letters or digits"
            )));
        }
        Ok(JoinToken {
            role,
            ca_sha256: ca_sha256.to_ascii_lowercase(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn err(s: &str) -> String {
        s.parse::<JoinToken>().unwrap_err().to_string()
    }

    #[test]
    fn round_trip() {
        for role in [Role::Server, Role::Agent] {
            let t = JoinToken::generate(role, HASH);
            assert_eq!(t.id.len(), 6);
            assert_eq!(t.secret.len(), 32);
            assert!(is_lower_alnum(&t.id) && is_lower_alnum(&t.secret));
            let s = t.to_string();
            assert!(s.starts_with(&format!("tepui1.{}.{HASH}.", role.as_str())), "{s}");
            let back: JoinToken = s.parse().unwrap();
            assert_eq!(back, t);
            // Surrounding whitespace (e.g. a newline from a file) is tolerated.
            assert_eq!(format!("  {s}\n").parse::<JoinToken>().unwrap(), t);
        }
    }

    #[test]
    fn tokens_are_random_and_secret_hash_is_stable() {
        let a = JoinToken::generate(Role::Agent, HASH);
        let b = JoinToken::generate(Role::Agent, HASH);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret_sha256(), sha256_hex(a.secret.as_bytes()));
        assert_eq!(a.secret_sha256().len(), 64);
        assert_ne!(a.secret_sha256(), b.secret_sha256());
    }

    #[test]
    fn uppercase_hash_is_normalised() {
        let s = format!("tepui1.agent.{}.abc123.{}", HASH.to_uppercase(), "a".repeat(32));
        assert_eq!(s.parse::<JoinToken>().unwrap().ca_sha256, HASH);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let secret = "s".repeat(32);
        assert!(err("").contains("join token must look like tepui1.<role>.<ca-hash>.<id>.<secret>"));
        assert!(err("tepui1.server.abc").contains("must look like"));
        assert!(err(&format!("tepui1.server.{HASH}.abc123.{secret}.extra")).contains("must look like"));
        assert!(err(&format!("tepui2.server.{HASH}.abc123.{secret}")).contains("must look like"));
        assert!(err(&format!("tepui1.boss.{HASH}.abc123.{secret}")).contains("unknown role \"boss\""));
        assert!(err(&format!("tepui1.server.abc.abc123.{secret}")).contains("ca hash must be 64 hex characters"));
        let bad_hex = "g".repeat(64);
        assert!(err(&format!("tepui1.server.{bad_hex}.abc123.{secret}")).contains("ca hash must be 64 hex characters"));
        assert!(err(&format!("tepui1.server.{HASH}.ABC123.{secret}")).contains("token id"));
        assert!(err(&format!("tepui1.server.{HASH}.abc12.{secret}")).contains("token id"));
        assert!(err(&format!("tepui1.server.{HASH}.abc123.short")).contains("token secret"));
    }
}
