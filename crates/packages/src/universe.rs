//! Universe's package definitions, read as Universe writes them: a repository directory
//! (`repo/packages/<L>/<name>/<revision>/` with `package.json`, `config.json`,
//! `marathon.json.mustache`, `resource.json` and `command.json`) or a repository index
//! (`{"packages": [...]}`, packaging versions 2.0 to 5.0, as `gen_universe.py` writes it and
//! Universe's servers answer with `application/vnd.dcos.universe.repo+json;version=v3|v4|v5`),
//! where each package carries its release version, `marathon.v2AppMustacheTemplate` in
//! base64, `config` and `resource`.
//!
//! tepui adds one file of its own: `metronome.json.mustache`, a template of a Metronome job or
//! a list of them (`metronome.v1JobsMustacheTemplate` in an index), so that a package can
//! deploy jobs beside (or instead of) an app.
//!
//! Reading is pure apart from the directory walk; every error names the file (or the index
//! entry) and the field.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mustache::Template;

/// The packaging versions Universe defines.
pub const PACKAGING_VERSIONS: [&str; 4] = ["2.0", "3.0", "4.0", "5.0"];

/// A repository or a package in it that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct RepoError {
    /// The file, or the index entry (`packages[3] (web 1.0.0)`).
    pub place: String,
    pub message: String,
}

impl RepoError {
    fn new(place: impl Into<String>, message: impl Into<String>) -> RepoError {
        RepoError {
            place: place.into(),
            message: message.into(),
        }
    }
}

/// `marathon`: the app (or group) template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marathon {
    /// The template, base64 (standard alphabet, padded).
    pub v2_app_mustache_template: String,
}

/// `metronome` (tepui's): the jobs template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metronome {
    /// The template, base64: a Metronome job, or a list of them.
    pub v1_jobs_mustache_template: String,
}

/// A package definition: Universe's `package.json` with what the other files add. Fields this
/// does not know are kept as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub packaging_version: String,
    pub name: String,
    pub version: String,
    /// The revision directory's number; in an index, its own field.
    #[serde(default)]
    pub release_version: u64,
    #[serde(default)]
    pub maintainer: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_install_notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install_notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_uninstall_notes: Option<String>,
    /// Versions this one may be upgraded from (`*`: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades_from: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marathon: Option<Marathon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metronome: Option<Metronome>,
    /// The options schema (`config.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// `resource.json`: images, assets (the templates read `resource.assets...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Value>,
    /// `scm`, `website`, `licenses`, `minDcosReleaseVersion`, `images`, ...: kept, not read.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The metadata fields of a package (Cosmos's `PackageDetails`), in the order Cosmos lists them.
const METADATA_FIELDS: [&str; 14] = [
    "packagingVersion",
    "name",
    "version",
    "maintainer",
    "description",
    "tags",
    "selected",
    "scm",
    "website",
    "framework",
    "preInstallNotes",
    "postInstallNotes",
    "postUninstallNotes",
    "licenses",
];

fn decode_template(encoded: &str, what: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("{what} is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8 text"))
}

fn encode_template(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

impl Package {
    /// `marathon.json.mustache`, decoded.
    pub fn marathon_template(&self) -> Result<Option<String>, String> {
        self.marathon
            .as_ref()
            .map(|m| decode_template(&m.v2_app_mustache_template, "marathon.v2AppMustacheTemplate"))
            .transpose()
    }

    /// `metronome.json.mustache`, decoded.
    pub fn metronome_template(&self) -> Result<Option<String>, String> {
        self.metronome
            .as_ref()
            .map(|m| decode_template(&m.v1_jobs_mustache_template, "metronome.v1JobsMustacheTemplate"))
            .transpose()
    }

    /// The whole definition as JSON (Cosmos's `PackageDefinition`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The metadata Cosmos lists for an installed package (`packageDefinition` in
    /// `/package/list`), and puts in the `DCOS_PACKAGE_METADATA` label.
    pub fn metadata(&self) -> Value {
        let all = self.to_json();
        let mut out = Map::new();
        for field in METADATA_FIELDS {
            if let Some(v) = all.get(field) {
                out.insert(field.to_string(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// Checks what a package must hold: a name and version of Universe's forms, a packaging
    /// version Universe defines, templates that decode and parse, a schema that is an object.
    pub fn check(&self) -> Result<(), String> {
        if !PACKAGING_VERSIONS.contains(&self.packaging_version.as_str()) {
            return Err(format!(
                "/packagingVersion: {:?} is not one of {}",
                self.packaging_version,
                PACKAGING_VERSIONS.join(", ")
            ));
        }
        if !valid_name(&self.name) {
            return Err(format!(
                "/name: {:?} must be lowercase letters, digits and hyphens, starting with a letter",
                self.name
            ));
        }
        if self.version.is_empty()
            || !self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "/version: {:?} must be letters, digits, dots and hyphens",
                self.version
            ));
        }
        if let Some(c) = &self.config {
            if !c.is_object() {
                return Err("config: the options schema must be a JSON object".into());
            }
        }
        if let Some(r) = &self.resource {
            if !r.is_object() {
                return Err("resource: must be a JSON object".into());
            }
        }
        if let Some(t) = self.marathon_template()? {
            Template::parse(&t).map_err(|e| format!("marathon.json.mustache: {e}"))?;
        }
        if let Some(t) = self.metronome_template()? {
            Template::parse(&t).map_err(|e| format!("metronome.json.mustache: {e}"))?;
        }
        Ok(())
    }
}

/// Universe's package names: `^[a-z][a-z0-9-]*[a-z0-9]$`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    first_ok
        && name.len() >= 2
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// A repository index (`{"packages": [...]}`), as Universe serves it.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Package>, RepoError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| RepoError::new("the repository index", format!("not JSON: {e}")))?;
    let Some(entries) = v.get("packages").and_then(Value::as_array) else {
        return Err(RepoError::new(
            "the repository index",
            "must be an object with a \"packages\" list (a Universe repository, version 3 to 5)",
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let label = format!(
            "packages[{i}] ({} {})",
            entry.get("name").and_then(Value::as_str).unwrap_or("?"),
            entry.get("version").and_then(Value::as_str).unwrap_or("?")
        );
        let pkg: Package = serde_path_to_error::deserialize(entry)
            .map_err(|e| RepoError::new(&label, format!("/{}: {}", e.path(), e.inner())))?;
        pkg.check().map_err(|m| RepoError::new(&label, m))?;
        out.push(pkg);
    }
    Ok(out)
}

/// Writes packages as a repository index (version 4, with tepui's `metronome`), as
/// `gen_universe.py` would: what a directory read here looks like over HTTP.
pub fn to_index(packages: &[Package]) -> Value {
    serde_json::json!({ "packages": packages.iter().map(Package::to_json).collect::<Vec<_>>() })
}

/// Where the package directories of a Universe tree are: `DIR/repo/packages`,
/// `DIR/packages`, or `DIR` itself.
fn packages_root(dir: &Path) -> PathBuf {
    for candidate in [dir.join("repo").join("packages"), dir.join("packages")] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    dir.to_path_buf()
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, RepoError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RepoError::new(dir.display().to_string(), e.to_string()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn read_json(path: &Path) -> Result<Option<Value>, RepoError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RepoError::new(path.display().to_string(), e.to_string())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RepoError::new(path.display().to_string(), format!("not JSON: {e}")))
}

fn read_text(path: &Path) -> Result<Option<String>, RepoError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RepoError::new(path.display().to_string(), e.to_string())),
    }
}

/// One revision directory: `package.json` and the files beside it.
pub fn read_package_dir(dir: &Path, release_version: u64) -> Result<Package, RepoError> {
    let at = |file: &str| dir.join(file).display().to_string();
    let Some(mut json) = read_json(&dir.join("package.json"))? else {
        return Err(RepoError::new(
            at("package.json"),
            "missing: every package revision needs one",
        ));
    };
    let Some(obj) = json.as_object_mut() else {
        return Err(RepoError::new(at("package.json"), "must be a JSON object"));
    };
    obj.insert("releaseVersion".into(), Value::from(release_version));
    // The files a package directory may hold, as gen_universe.py folds them in.
    for (file, key) in [
        ("config.json", "config"),
        ("resource.json", "resource"),
        ("command.json", "command"),
    ] {
        if let Some(v) = read_json(&dir.join(file))? {
            obj.insert(key.into(), v);
        }
    }
    if let Some(t) = read_text(&dir.join("marathon.json.mustache"))? {
        Template::parse(&t).map_err(|e| RepoError::new(at("marathon.json.mustache"), e.to_string()))?;
        obj.insert(
            "marathon".into(),
            serde_json::json!({ "v2AppMustacheTemplate": encode_template(&t) }),
        );
    }
    if let Some(t) = read_text(&dir.join("metronome.json.mustache"))? {
        Template::parse(&t).map_err(|e| RepoError::new(at("metronome.json.mustache"), e.to_string()))?;
        obj.insert(
            "metronome".into(),
            serde_json::json!({ "v1JobsMustacheTemplate": encode_template(&t) }),
        );
    }
    let pkg: Package = serde_path_to_error::deserialize(&json)
        .map_err(|e| RepoError::new(at("package.json"), format!("/{}: {}", e.path(), e.inner())))?;
    pkg.check().map_err(|m| RepoError::new(at("package.json"), m))?;
    Ok(pkg)
}

/// Every package revision under a Universe tree (`repo/packages/<L>/<name>/<revision>`).
pub fn read_dir(dir: &Path) -> Result<Vec<Package>, RepoError> {
    if !dir.is_dir() {
        return Err(RepoError::new(dir.display().to_string(), "not a directory"));
    }
    let root = packages_root(dir);
    let mut out = Vec::new();
    for letter in sorted_dirs(&root)? {
        for package_dir in sorted_dirs(&letter)? {
            let dir_name = package_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            for revision in sorted_dirs(&package_dir)? {
                let Some(release) = revision
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    return Err(RepoError::new(
                        revision.display().to_string(),
                        "a package's revisions are directories named 0, 1, 2, ...",
                    ));
                };
                let pkg = read_package_dir(&revision, release)?;
                if pkg.name != dir_name {
                    return Err(RepoError::new(
                        revision.join("package.json").display().to_string(),
                        format!("/name: {:?} is not the directory's name {dir_name:?}", pkg.name),
                    ));
                }
                out.push(pkg);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn web_revision(dir: &Path, version: &str) {
        write(
            dir,
            "package.json",
            &json!({"packagingVersion": "4.0", "name": "web", "version": version, "maintainer": "ops@example.com",
                    "description": "a web server", "tags": ["http"], "scm": "https://example.com/web"})
            .to_string(),
        );
        write(
            dir,
            "config.json",
            r#"{"type": "object", "properties": {"service": {"type": "object", "properties": {"name": {"type": "string", "default": "web"}}}}}"#,
        );
        write(
            dir,
            "marathon.json.mustache",
            r#"{"id": "{{service.name}}", "cmd": "httpd"}"#,
        );
        write(
            dir,
            "resource.json",
            r#"{"assets": {"container": {"docker": {"image": "busybox:1.36"}}}}"#,
        );
    }

    #[test]
    fn a_universe_tree_is_read_with_its_revisions() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo/packages");
        web_revision(&root.join("W/web/0"), "1.0.0");
        web_revision(&root.join("W/web/1"), "1.1.0");
        write(
            &root.join("C/cron/0"),
            "package.json",
            r#"{"packagingVersion": "3.0", "name": "cron", "version": "0.1", "maintainer": "m", "description": "d", "tags": []}"#,
        );
        write(
            &root.join("C/cron/0"),
            "metronome.json.mustache",
            r#"[{"id": "report"}]"#,
        );

        for dir in [tmp.path().to_path_buf(), tmp.path().join("repo"), root.clone()] {
            let pkgs = read_dir(&dir).unwrap();
            let ids: Vec<(String, String, u64)> = pkgs
                .iter()
                .map(|p| (p.name.clone(), p.version.clone(), p.release_version))
                .collect();
            assert_eq!(
                ids,
                [
                    ("cron".into(), "0.1".into(), 0),
                    ("web".into(), "1.0.0".into(), 0),
                    ("web".into(), "1.1.0".into(), 1)
                ]
            );
        }
        let pkgs = read_dir(tmp.path()).unwrap();
        let web = &pkgs[2];
        assert_eq!(
            web.marathon_template().unwrap().unwrap(),
            r#"{"id": "{{service.name}}", "cmd": "httpd"}"#
        );
        assert_eq!(
            web.resource.as_ref().unwrap()["assets"]["container"]["docker"]["image"],
            "busybox:1.36"
        );
        assert_eq!(web.other["scm"], "https://example.com/web", "fields not read are kept");
        assert_eq!(pkgs[0].metronome_template().unwrap().unwrap(), r#"[{"id": "report"}]"#);
        assert!(pkgs[0].marathon.is_none());
        assert_eq!(
            web.metadata(),
            json!({"packagingVersion": "4.0", "name": "web", "version": "1.1.0", "maintainer": "ops@example.com",
                   "description": "a web server", "tags": ["http"], "scm": "https://example.com/web"})
        );

        // The same packages through an index, as a Universe server sends them.
        let index = serde_json::to_vec(&to_index(&pkgs)).unwrap();
        assert_eq!(parse_index(&index).unwrap(), pkgs);
    }

    #[test]
    fn bad_packages_are_refused_naming_the_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("packages");
        web_revision(&root.join("W/web/0"), "1.0.0");
        write(&root.join("W/web/0"), "marathon.json.mustache", "{\"id\": \"{{#a}}\"}");
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(e.place.ends_with("W/web/0/marathon.json.mustache"), "{e}");
        assert!(e.message.contains("section \"a\" is not closed"), "{e}");

        web_revision(&root.join("W/web/0"), "1.0.0");
        write(&root.join("W/web/0"), "config.json", "{ not json");
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(
            e.place.ends_with("W/web/0/config.json") && e.message.starts_with("not JSON"),
            "{e}"
        );

        web_revision(&root.join("W/web/0"), "1.0.0");
        write(
            &root.join("W/web/0"),
            "package.json",
            r#"{"packagingVersion": "4.0", "name": "web", "version": 1}"#,
        );
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(
            e.place.ends_with("W/web/0/package.json") && e.message.starts_with("/version:"),
            "{e}"
        );

        write(
            &root.join("W/web/0"),
            "package.json",
            r#"{"packagingVersion": "9.0", "name": "web", "version": "1"}"#,
        );
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(e.message.starts_with("/packagingVersion:"), "{e}");

        write(
            &root.join("W/web/0"),
            "package.json",
            r#"{"packagingVersion": "4.0", "name": "other", "version": "1"}"#,
        );
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(e.message.contains("is not the directory's name"), "{e}");

        std::fs::remove_dir_all(&root).unwrap();
        web_revision(&root.join("W/web/latest"), "1.0.0");
        let e = read_dir(tmp.path()).unwrap_err();
        assert!(e.message.contains("named 0, 1, 2"), "{e}");

        assert!(read_dir(&tmp.path().join("nowhere")).is_err());
    }

    #[test]
    fn indexes_are_checked_entry_by_entry() {
        assert!(parse_index(b"[]").unwrap_err().message.contains("\"packages\" list"));
        assert!(parse_index(b"nope").unwrap_err().message.starts_with("not JSON"));
        let e = parse_index(
            json!({"packages": [{"packagingVersion": "3.0", "name": "web", "version": "1", "releaseVersion": 0,
                                 "marathon": {"v2AppMustacheTemplate": "%%%"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.place, "packages[0] (web 1)");
        assert!(e.message.contains("not base64"), "{e}");
        assert!(parse_index(br#"{"packages": []}"#).unwrap().is_empty());
    }

    #[test]
    fn universe_names() {
        for ok in ["web", "kv-store", "a1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["Web", "1web", "web-", "w", "we_b", ""] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
