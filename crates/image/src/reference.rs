//! Image references: parsing and Docker-style normalization (pure).
//!
//! `busybox` is `docker.io/library/busybox:latest`; `127.0.0.1:5000/app` is
//! `127.0.0.1:5000/app:latest`; a reference with a digest and no tag keeps no tag.

use std::fmt;

use crate::digest::Digest;
use crate::error::Error;

/// The registry an unqualified name belongs to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

/// A normalized image reference: registry, repository, and a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalizes a reference as `docker pull` would.
    pub fn parse(input: &str) -> Result<ImageRef, Error> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.len() > 4096 {
            return Err(bad("it is longer than 4096 characters"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|e| bad(&format!("bad digest: {e}")))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        // The tag is after the last ':' that follows the last '/'; a ':' before it is a port.
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => (&rest[..colon], Some(&rest[colon + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| bad(&reason))?;
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if is_registry_host(first) => (first.to_string(), remainder.to_string()),
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        validate_registry(&registry).map_err(|reason| bad(&reason))?;
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DEFAULT_REGISTRY.to_string(),
            _ => registry,
        };
        validate_repository(&repository).map_err(|reason| bad(&reason))?;
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, Error> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            reference: format!("{}/{}:{tag}", self.registry, self.repository),
            reason,
        })?;
        Ok(ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The registry host, and the port if given.
    #[cfg(test)]
    fn host_port(&self) -> (String, Option<u16>) {
        split_host_port(&self.registry)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ImageRef::parse(s)
    }
}

/// Whether the first path component names a registry rather than a namespace, as Docker decides:
/// it has a dot or a port, or is `localhost`.
fn is_registry_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

pub(crate) fn split_host_port(registry: &str) -> (String, Option<u16>) {
    if let Some(rest) = registry.strip_prefix('[') {
        // [v6]:port
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_string(), port);
        }
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().ok()),
        _ => (registry.to_string(), None),
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, _) = split_host_port(registry);
    if let Some((_, port)) = registry.rsplit_once(':') {
        if !registry.ends_with(']') && !registry.starts_with('[') && port.parse::<u16>().is_err() {
            return Err(format!("registry port {port:?} is not a number"));
        }
    }
    if host.is_empty() {
        return Err("the registry host is empty".to_string());
    }
    let ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '_');
    if !ok {
        return Err(format!("registry host {host:?} has characters a host name cannot have"));
    }
    Ok(())
}

/// Repository path components: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, joined by `/`.
fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository name is empty".to_string());
    }
    if repository.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_string());
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lowercase".to_string());
    }
    for component in repository.split('/') {
        validate_path_component(component)?;
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), String> {
    let err = || {
        format!(
            "repository path component {component:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or dashes"
        )
    };
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("the repository name has an empty path component".to_string());
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(err());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one '_', '__', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(err());
        }
    }
    Ok(())
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if bytes.is_empty() {
        return Err("the tag is empty".to_string());
    }
    if bytes.len() > 128 {
        return Err("the tag is longer than 128 characters".to_string());
    }
    if !word(bytes[0]) || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {tag:?} must be letters, digits, '_', '.' or '-', and not start with '.' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/library/busybox:x"), "docker.io/library/busybox:x");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
    }

    #[test]
    fn registries_with_ports_and_localhost() {
        let r = ImageRef::parse("127.0.0.1:5000/tepui/app:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "tepui/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.host_port(), ("127.0.0.1".to_string(), Some(5000)));
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("ghcr.io/owner/app"), "ghcr.io/owner/app:latest");
        // Without a dot, a port or "localhost" the first component is a namespace.
        assert_eq!(norm("owner/app"), "docker.io/owner/app:latest");
        assert_eq!(
            ImageRef::parse("[::1]:5000/app").unwrap().host_port(),
            ("::1".to_string(), Some(5000))
        );
    }

    #[test]
    fn digests_with_and_without_tags() {
        let hex = "a".repeat(64);
        let r = ImageRef::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@sha256:{hex}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/app:v2@sha256:{hex}")).unwrap();
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.digest().unwrap().hex(), hex);
    }

    #[test]
    fn bad_references_say_why() {
        for (input, why) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "tag is empty"),
            ("busybox:-x", "must be letters"),
            ("a//b", "empty path component"),
            ("a/b-", "must be lowercase letters"),
            ("a..b", "must be lowercase letters"),
            ("busybox@sha256:abc", "bad digest"),
            ("bad host!/x", "whitespace"),
            ("host.io:port/x", "not a number"),
        ] {
            let err = ImageRef::parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
        }
        assert!(ImageRef::parse("a__b/c.d/e-f/g---h").is_ok());
    }

    #[test]
    fn with_tag_drops_the_digest() {
        let hex = "b".repeat(64);
        let r = ImageRef::parse(&format!("x.io/app@sha256:{hex}")).unwrap();
        assert_eq!(r.with_tag("v3").unwrap().to_string(), "x.io/app:v3");
        assert!(r.with_tag("..").is_err());
    }
}
