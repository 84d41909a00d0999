//! The package catalog in the replicated state: the repositories packages come from (in the
//! order they are searched, as Cosmos keeps them) and every installed package, with what it
//! made, so that it can be listed, upgraded and removed whole whoever leads.
//!
//! The packages themselves (Universe's JSON) are opaque here: tepui-packages reads them.

use serde::{Deserialize, Serialize};

use crate::{ApplyError, Millis, Response, State};

/// A package repository: a Universe repository directory or index on the leader's disk, or an
/// index served over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRepo {
    pub name: String,
    pub uri: String,
}

/// An installed package: what was installed, with which options, and what it deployed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInstall {
    /// Cosmos's `appId`: the app's (or group's) path id, or for a package of jobs only, the
    /// first job's id with a leading `/`.
    pub app_id: String,
    pub name: String,
    pub version: String,
    /// The repository it came from (its URI).
    pub source: String,
    /// The options the user gave (defaults not merged in: an upgrade merges the new version's).
    pub options: serde_json::Value,
    /// The package definition it was installed from (Universe's JSON), so that it can be
    /// listed and uninstalled after its repository is gone.
    pub package: serde_json::Value,
    /// The apps it deployed (path ids).
    #[serde(default)]
    pub apps: Vec<String>,
    /// The jobs it deployed (ids), in the order they were created.
    #[serde(default)]
    pub jobs: Vec<String>,
    pub installed_at: Millis,
    pub updated_at: Millis,
}

impl State {
    /// Adds a repository at `index` (the end when none or past it); refused when its name or
    /// URI is listed already.
    pub(crate) fn add_package_repo(&mut self, repo: &PackageRepo, index: Option<u32>) -> Result<Response, ApplyError> {
        let name_taken = self.package_repos.iter().any(|r| r.name == repo.name);
        let uri_taken = self.package_repos.iter().any(|r| r.uri == repo.uri);
        if name_taken || uri_taken {
            return Err(ApplyError::PackageRepoExists {
                name: name_taken.then(|| repo.name.clone()),
                uri: uri_taken.then(|| repo.uri.clone()),
            });
        }
        let at = index
            .map(|i| (i as usize).min(self.package_repos.len()))
            .unwrap_or(self.package_repos.len());
        self.package_repos.insert(at, repo.clone());
        Ok(Response::Ok)
    }

    /// Removes the repository named `name`, or with URI `uri` (both given: the one that has
    /// both).
    pub(crate) fn remove_package_repo(
        &mut self,
        name: Option<&str>,
        uri: Option<&str>,
    ) -> Result<Response, ApplyError> {
        let position = self.package_repos.iter().position(|r| {
            name.is_none_or(|n| r.name == n) && uri.is_none_or(|u| r.uri == u) && (name.is_some() || uri.is_some())
        });
        match position {
            Some(i) => {
                self.package_repos.remove(i);
                Ok(Response::Ok)
            }
            None => Err(ApplyError::UnknownPackageRepo {
                name: name.map(str::to_string),
                uri: uri.map(str::to_string),
            }),
        }
    }

    /// Records an install (`create`: refused when its app id is taken) or replaces one
    /// (refused when there is none); an upgrade keeps the first install's time.
    pub(crate) fn put_package_install(
        &mut self,
        install: &PackageInstall,
        create: bool,
    ) -> Result<Response, ApplyError> {
        let existing = self.package_installs.get(&install.app_id);
        let installed_at = match (existing, create) {
            (Some(_), true) => {
                return Err(ApplyError::PackageInstalled {
                    app_id: install.app_id.clone(),
                })
            }
            (None, false) => {
                return Err(ApplyError::UnknownPackageInstall {
                    app_id: install.app_id.clone(),
                })
            }
            (Some(e), false) => e.installed_at,
            (None, true) => install.installed_at,
        };
        let mut record = install.clone();
        record.installed_at = installed_at;
        self.package_installs.insert(record.app_id.clone(), record);
        Ok(Response::Ok)
    }

    pub(crate) fn remove_package_install(&mut self, app_id: &str) -> Result<Response, ApplyError> {
        self.package_installs
            .remove(app_id)
            .map(|_| Response::Ok)
            .ok_or_else(|| ApplyError::UnknownPackageInstall {
                app_id: app_id.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{ApplyError, Command, PackageInstall, PackageRepo, Response, State};

    fn repo(name: &str, uri: &str) -> PackageRepo {
        PackageRepo {
            name: name.into(),
            uri: uri.into(),
        }
    }

    fn add(s: &mut State, name: &str, uri: &str, index: Option<u32>) -> Response {
        s.apply(
            1,
            &Command::AddPackageRepo {
                repo: repo(name, uri),
                index,
            },
        )
    }

    fn names(s: &State) -> Vec<&str> {
        s.package_repos.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn repositories_keep_their_order_and_refuse_duplicates() {
        let mut s = State::default();
        assert_eq!(add(&mut s, "a", "file:///a", None), Response::Ok);
        assert_eq!(add(&mut s, "b", "http://b/repo", None), Response::Ok);
        assert_eq!(add(&mut s, "first", "file:///first", Some(0)), Response::Ok);
        assert_eq!(add(&mut s, "last", "file:///last", Some(99)), Response::Ok);
        assert_eq!(names(&s), ["first", "a", "b", "last"]);

        assert_eq!(
            add(&mut s, "a", "file:///other", None),
            Response::Rejected(ApplyError::PackageRepoExists {
                name: Some("a".into()),
                uri: None
            })
        );
        assert_eq!(
            add(&mut s, "other", "http://b/repo", None),
            Response::Rejected(ApplyError::PackageRepoExists {
                name: None,
                uri: Some("http://b/repo".into())
            })
        );
        assert_eq!(names(&s), ["first", "a", "b", "last"], "a refusal changes nothing");
    }

    #[test]
    fn repositories_are_removed_by_name_or_uri() {
        let mut s = State::default();
        add(&mut s, "a", "file:///a", None);
        add(&mut s, "b", "file:///b", None);
        let remove = |s: &mut State, name: Option<&str>, uri: Option<&str>| {
            s.apply(
                2,
                &Command::RemovePackageRepo {
                    name: name.map(str::to_string),
                    uri: uri.map(str::to_string),
                },
            )
        };
        assert_eq!(remove(&mut s, None, Some("file:///b")), Response::Ok);
        assert_eq!(names(&s), ["a"]);
        assert!(matches!(
            remove(&mut s, Some("a"), Some("file:///b")),
            Response::Rejected(ApplyError::UnknownPackageRepo { .. })
        ));
        assert!(matches!(
            remove(&mut s, None, None),
            Response::Rejected(ApplyError::UnknownPackageRepo { .. })
        ));
        assert_eq!(remove(&mut s, Some("a"), None), Response::Ok);
        assert!(s.package_repos.is_empty());
    }

    fn install(app_id: &str, version: &str, now: u64) -> PackageInstall {
        PackageInstall {
            app_id: app_id.into(),
            name: "web".into(),
            version: version.into(),
            source: "file:///catalog".into(),
            options: json!({"service": {"instances": 2}}),
            package: json!({"name": "web", "version": version}),
            apps: vec![app_id.into()],
            jobs: vec![],
            installed_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_install_is_recorded_once_upgraded_in_place_and_removed() {
        let mut s = State::default();
        let put = |s: &mut State, i: PackageInstall, create: bool| {
            s.apply(3, &Command::PutPackageInstall { install: i, create })
        };
        assert_eq!(put(&mut s, install("/web", "1.0.0", 10), true), Response::Ok);
        assert_eq!(
            put(&mut s, install("/web", "1.0.0", 11), true),
            Response::Rejected(ApplyError::PackageInstalled { app_id: "/web".into() })
        );
        assert_eq!(
            put(&mut s, install("/other", "1.0.0", 11), false),
            Response::Rejected(ApplyError::UnknownPackageInstall {
                app_id: "/other".into()
            })
        );
        assert_eq!(put(&mut s, install("/web", "1.1.0", 20), false), Response::Ok);
        let upgraded = &s.package_installs["/web"];
        assert_eq!(upgraded.version, "1.1.0");
        assert_eq!((upgraded.installed_at, upgraded.updated_at), (10, 20));

        let remove = |s: &mut State| s.apply(4, &Command::RemovePackageInstall { app_id: "/web".into() });
        assert_eq!(remove(&mut s), Response::Ok);
        assert!(s.package_installs.is_empty());
        assert!(matches!(
            remove(&mut s),
            Response::Rejected(ApplyError::UnknownPackageInstall { .. })
        ));
    }

    #[test]
    fn the_same_commands_make_the_same_state() {
        let run = || {
            let mut s = State::default();
            add(&mut s, "a", "file:///a", None);
            s.apply(
                5,
                &Command::PutPackageInstall {
                    install: install("/web", "1.0.0", 7),
                    create: true,
                },
            );
            s
        };
        assert_eq!(run(), run());
        let round_trip: State = serde_json::from_str(&serde_json::to_string(&run()).unwrap()).unwrap();
        assert_eq!(round_trip, run(), "the records survive a snapshot");
    }
}
