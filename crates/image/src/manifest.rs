//! The JSON shapes the store reads: OCI and Docker manifests and indexes, image configs, a
//! docker-save `manifest.json`. Lenient on input (unknown fields ignored, nulls accepted), since
//! registries and tools differ in what they write. Platform choice is here too, pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifest media types asked for from registries, most preferred first.
pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// The annotation an OCI layout uses to name a manifest (a tag, or a full reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and `docker save` (25+) use for the full reference.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// A platform as written in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// Tells a manifest from an index, by media type (header or field) and then by shape.
pub fn parse_manifest(bytes: &[u8], header_media_type: Option<&str>) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    if probe.schema_version == Some(1) {
        return Err("schema 1 manifests are not supported".to_string());
    }
    let media_type = probe.media_type.as_deref().or(header_media_type).unwrap_or("");
    let is_index = match media_type {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => probe.manifests.is_some() && probe.config.is_none(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Parsed::Index)
            .map_err(|e| format!("bad image index: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(Parsed::Manifest)
            .map_err(|e| format!("bad image manifest: {e}"))
    }
}

/// The image config document (OCI and Docker share it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// What a container needs from an image's config to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `"8080/tcp"`, `"53/udp"`, sorted.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

impl ConfigFile {
    pub fn parse(bytes: &[u8]) -> Result<ConfigFile, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("image config is not valid: {e}"))
    }

    /// Why the image is not built for `platform`, if its config says it is not.
    pub fn platform_mismatch(&self, platform: &Platform) -> Option<String> {
        let spec = PlatformSpec {
            os: self.os.clone()?,
            architecture: self.architecture.clone()?,
            variant: self.variant.clone(),
        };
        (!platform.matches(&spec)).then(|| match &spec.variant {
            Some(v) => format!("{}/{}/{v}", spec.os, spec.architecture),
            None => format!("{}/{}", spec.os, spec.architecture),
        })
    }

    pub fn diff_ids(&self) -> &[String] {
        self.rootfs.as_ref().map(|r| r.diff_ids.as_slice()).unwrap_or(&[])
    }

    /// The run settings, with empty strings taken as unset.
    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let mut exposed_ports: Vec<String> = c
            .exposed_ports
            .unwrap_or_default()
            .into_keys()
            .map(|p| if p.contains('/') { p } else { format!("{p}/tcp") })
            .collect();
        exposed_ports.sort();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            exposed_ports,
            labels: c.labels.unwrap_or_default(),
            stop_signal: non_empty(c.stop_signal),
        }
    }
}

/// One entry of a docker-save `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// The platform the store wants images for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform, in OCI's names (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an index entry's platform runs here. An entry without a variant matches any
    /// variant; arm64's `v8` is its default variant.
    pub fn matches(&self, p: &PlatformSpec) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        let norm = |v: Option<&str>| match (self.architecture.as_str(), v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match (norm(self.variant.as_deref()), norm(p.variant.as_deref())) {
            (_, None) => true,
            (Some(want), Some(have)) => want == have,
            (None, Some(_)) => false,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the entry for `platform` from an index, or says which platforms it has.
pub fn select_platform<'a>(entries: &'a [Descriptor], platform: &Platform) -> Result<&'a Descriptor, String> {
    let chosen = entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
    if let Some(d) = chosen {
        return Ok(d);
    }
    let mut available: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    available.dedup();
    if available.is_empty() {
        available.push("no platforms".to_string());
    }
    Err(available.join(", "))
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Decide from the first bytes (archives whose layers have no media type).
    Sniff,
}

/// The compression of a layer media type, or `None` when the store cannot unpack it.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER => Some(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(Compression::Gzip),
        // Non-distributable layers are still plain tars when present.
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "" => Some(Compression::Sniff),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: Some(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn platform_selection() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let entries = vec![
            entry("linux", "arm", Some("v7")),
            entry("linux", "arm64", None),
            entry("linux", "amd64", None),
            entry("unknown", "unknown", None),
        ];
        assert_eq!(select_platform(&entries, &amd64).unwrap().platform, entries[2].platform);
        assert_eq!(select_platform(&entries, &arm64).unwrap().platform, entries[1].platform);
        let only_arm = vec![entry("linux", "arm", Some("v7")), entry("windows", "amd64", None)];
        let err = select_platform(&only_arm, &amd64).unwrap_err();
        assert_eq!(err, "linux/arm/v7, windows/amd64");
        assert_eq!(amd64.to_string(), "linux/amd64");
    }

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:{0}","size":2}},"layers":[]}}"#,
            "1".repeat(64)
        );
        assert!(matches!(
            parse_manifest(m.as_bytes(), None).unwrap(),
            Parsed::Manifest(_)
        ));
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_manifest(i.as_bytes(), None).unwrap(), Parsed::Index(_)));
        assert!(parse_manifest(br#"{"schemaVersion":1}"#, None)
            .unwrap_err()
            .contains("schema 1"));
    }

    #[test]
    fn config_extraction() {
        let cfg = ConfigFile::parse(
            br#"{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux",
                "config":{"User":"","Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["sh"],
                "WorkingDir":"/srv","ExposedPorts":{"8080/tcp":{},"53/udp":{},"9000":{}}},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .unwrap();
        let c = cfg.image_config();
        assert_eq!(c.cmd, vec!["sh"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.user, None);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.exposed_ports, vec!["53/udp", "8080/tcp", "9000/tcp"]);
        assert_eq!(cfg.diff_ids(), ["sha256:aa"]);
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(layer_compression(OCI_LAYER_GZIP), Some(Compression::Gzip));
        assert_eq!(layer_compression(DOCKER_LAYER), Some(Compression::None));
        assert_eq!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"), None);
        assert_eq!(layer_compression("application/vnd.wasm.content.layer.v1+wasm"), None);
    }
}
