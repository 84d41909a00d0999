//! The packages of every repository together, as Cosmos merges them: a package version (name
//! and version) comes from the first repository in the list that has it; a name's newest
//! version is the highest release of the first repository holding the name. Search and
//! lookups answer in Cosmos's words.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::universe::Package;

/// A package and the repository it came from (its URI).
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub package: Package,
    pub source: String,
}

/// Why a package is not to be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("Package [{name}] not found")]
    PackageNotFound { name: String },
    #[error("Version [{version}] of package [{name}] not found")]
    VersionNotFound { name: String, version: String },
}

/// Every package of every repository, merged.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// In Cosmos's order: by name, then repository, then newest release first.
    entries: Vec<Found>,
}

impl Catalog {
    /// `repos` in their order, each with its URI and packages.
    pub fn new(repos: Vec<(String, Vec<Package>)>) -> Catalog {
        let mut all: Vec<(usize, Found)> = Vec::new();
        for (index, (source, packages)) in repos.into_iter().enumerate() {
            for package in packages {
                all.push((
                    index,
                    Found {
                        package,
                        source: source.clone(),
                    },
                ));
            }
        }
        all.sort_by(|(ia, a), (ib, b)| {
            (&a.package.name, ia)
                .cmp(&(&b.package.name, ib))
                .then(b.package.release_version.cmp(&a.package.release_version))
        });
        // A version already seen (from an earlier repository) is not taken again.
        let mut seen = std::collections::HashSet::new();
        let entries = all
            .into_iter()
            .filter(|(_, f)| seen.insert((f.package.name.clone(), f.package.version.clone())))
            .map(|(_, f)| f)
            .collect();
        Catalog { entries }
    }

    pub fn packages(&self) -> impl Iterator<Item = &Found> {
        self.entries.iter()
    }

    /// A package at `version`, or its newest.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<&Found, LookupError> {
        let mut named = self.entries.iter().filter(|f| f.package.name == name).peekable();
        if named.peek().is_none() {
            return Err(LookupError::PackageNotFound { name: name.into() });
        }
        match version {
            None => named
                .next()
                .ok_or_else(|| LookupError::PackageNotFound { name: name.into() }),
            Some(v) => named
                .find(|f| f.package.version == v)
                .ok_or_else(|| LookupError::VersionNotFound {
                    name: name.into(),
                    version: v.into(),
                }),
        }
    }

    /// Every version of a package with its release (`/package/list-versions`).
    pub fn versions(&self, name: &str) -> Result<BTreeMap<String, u64>, LookupError> {
        let versions: BTreeMap<String, u64> = self
            .entries
            .iter()
            .filter(|f| f.package.name == name)
            .map(|f| (f.package.version.clone(), f.package.release_version))
            .collect();
        if versions.is_empty() {
            return Err(LookupError::PackageNotFound { name: name.into() });
        }
        Ok(versions)
    }

    /// Cosmos's search: one result per name (its newest version, every version with its
    /// release), those whose name, description or a tag holds `query` (case aside; `*` a
    /// wildcard over the whole text instead), selected ones first, then by name.
    pub fn search(&self, query: Option<&str>) -> Vec<Value> {
        let matches = |text: &str| -> bool {
            match query.map(str::trim).filter(|q| !q.is_empty()) {
                None => true,
                Some(q) if q.contains('*') => wildcard(q, text),
                Some(q) => text.to_lowercase().contains(&q.to_lowercase()),
            }
        };
        let mut by_name: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
        for f in &self.entries {
            by_name.entry(f.package.name.as_str()).or_default().push(f);
        }
        let mut results: Vec<(bool, &str, Value)> = by_name
            .into_iter()
            .filter_map(|(name, found)| {
                let newest = &found[0].package;
                let hit = matches(name) || matches(&newest.description) || newest.tags.iter().any(|t| matches(t));
                if !hit {
                    return None;
                }
                let versions: BTreeMap<&str, u64> = found
                    .iter()
                    .map(|f| (f.package.version.as_str(), f.package.release_version))
                    .collect();
                let mut v = json!({
                    "name": name,
                    "currentVersion": newest.version,
                    "versions": versions,
                    "description": newest.description,
                    "framework": newest.framework.unwrap_or(false),
                    "tags": newest.tags,
                });
                if let Some(s) = newest.selected {
                    v["selected"] = json!(s);
                }
                if let Some(images) = newest.resource.as_ref().and_then(|r| r.get("images")) {
                    v["images"] = images.clone();
                }
                Some((newest.selected != Some(true), name, v))
            })
            .collect();
        results.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        results.into_iter().map(|(_, _, v)| v).collect()
    }
}

/// `*` matches any run of characters; the rest literally, over the whole text.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, release: u64, description: &str, tags: &[&str]) -> Package {
        serde_json::from_value(json!({
            "packagingVersion": "4.0", "name": name, "version": version, "releaseVersion": release,
            "maintainer": "m", "description": description, "tags": tags,
        }))
        .unwrap()
    }

    fn catalog() -> Catalog {
        Catalog::new(vec![
            (
                "file:///first".into(),
                vec![
                    pkg("web", "1.0.0", 0, "a web server", &["http"]),
                    pkg("web", "1.1.0", 1, "a web server, newer", &["http"]),
                    pkg("kv", "0.1", 0, "a key-value store", &["database"]),
                ],
            ),
            (
                "http://second/repo".into(),
                vec![
                    pkg("web", "1.1.0", 7, "the second repo's 1.1.0", &[]),
                    pkg("web", "2.0.0", 9, "only in the second", &[]),
                    pkg("cron-report", "1", 0, "a nightly report", &["batch", "cron"]),
                ],
            ),
        ])
    }

    #[test]
    fn the_first_repository_wins_and_its_newest_release_is_current() {
        let c = catalog();
        let newest = c.find("web", None).unwrap();
        assert_eq!(
            (newest.package.version.as_str(), newest.source.as_str()),
            ("1.1.0", "file:///first")
        );
        let v2 = c.find("web", Some("2.0.0")).unwrap();
        assert_eq!(v2.source, "http://second/repo");
        let v11 = c.find("web", Some("1.1.0")).unwrap();
        assert_eq!(
            v11.package.description, "a web server, newer",
            "the first repository's 1.1.0"
        );
        assert_eq!(
            c.find("nope", None).unwrap_err().to_string(),
            "Package [nope] not found"
        );
        assert_eq!(
            c.find("web", Some("3")).unwrap_err().to_string(),
            "Version [3] of package [web] not found"
        );
        assert_eq!(
            c.versions("web").unwrap(),
            BTreeMap::from([("1.0.0".into(), 0), ("1.1.0".into(), 1), ("2.0.0".into(), 9)])
        );
    }

    #[test]
    fn search_matches_names_descriptions_and_tags() {
        let c = catalog();
        let names = |q: Option<&str>| -> Vec<String> {
            c.search(q)
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(None), ["cron-report", "kv", "web"]);
        assert_eq!(names(Some("WEB")), ["web"]);
        assert_eq!(names(Some("store")), ["kv"], "by description");
        assert_eq!(names(Some("cron")), ["cron-report"]);
        assert_eq!(names(Some("batch")), ["cron-report"], "by tag");
        assert_eq!(names(Some("w*")), ["web"]);
        assert_eq!(names(Some("*report")), ["cron-report"]);
        assert_eq!(
            names(Some("e*")),
            Vec::<String>::new(),
            "a wildcard spans the whole text"
        );
        let web = &c.search(Some("web"))[0];
        assert_eq!(web["currentVersion"], "1.1.0");
        assert_eq!(web["versions"], json!({"1.0.0": 0, "1.1.0": 1, "2.0.0": 9}));
        assert_eq!(web["framework"], false);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abc"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a**", "a"));
        assert!(!wildcard("a*c", "abd"));
        assert!(wildcard("*b*", "abc"));
        assert!(!wildcard("abc", "abcd"));
    }
}
