//! Marathon's path ids: `/prod/web` names app `web` in group `/prod`.
//!
//! A [`PathId`] is always absolute and normalized (no `.`, `..` or empty segments). Relative ids
//! (`web`, `../db`) are resolved against a base group with [`PathId::resolve`]. Every segment is
//! one or more dot-separated labels of lowercase letters, digits and hyphens, where a label
//! neither starts nor ends with a hyphen, as Marathon requires.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a path id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid segment {segment:?} in path {path:?}")]
    InvalidSegment { path: String, segment: String },
    #[error("path {0:?} goes above the root group")]
    AboveRoot(String),
}

/// An absolute, normalized path id. Ordered segment by segment, so a group sorts before its
/// members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PathId {
    segments: Vec<String>,
}

impl PathId {
    /// The root group `/`.
    pub fn root() -> PathId {
        PathId::default()
    }

    /// Parses an id; a relative one is resolved against the root.
    pub fn parse(raw: &str) -> Result<PathId, PathError> {
        PathId::resolve(&PathId::root(), raw)
    }

    /// Resolves `raw` against the group `base`: an absolute id ignores `base`; `.` and `..`
    /// segments are applied; empty segments (`//`, a trailing `/`) are dropped.
    pub fn resolve(base: &PathId, raw: &str) -> Result<PathId, PathError> {
        let mut segments = if raw.starts_with('/') {
            Vec::new()
        } else {
            base.segments.clone()
        };
        for segment in raw.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot(raw.to_string()));
                    }
                }
                s if is_valid_segment(s) => segments.push(s.to_string()),
                s => {
                    return Err(PathError::InvalidSegment {
                        path: raw.to_string(),
                        segment: s.to_string(),
                    });
                }
            }
        }
        Ok(PathId { segments })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The enclosing group; the root is its own parent.
    pub fn parent(&self) -> PathId {
        let mut segments = self.segments.clone();
        segments.pop();
        PathId { segments }
    }

    /// `self` with one more segment.
    pub fn child(&self, name: &str) -> Result<PathId, PathError> {
        if !is_valid_segment(name) {
            return Err(PathError::InvalidSegment {
                path: format!("{self}/{name}"),
                segment: name.to_string(),
            });
        }
        let mut segments = self.segments.clone();
        segments.push(name.to_string());
        Ok(PathId { segments })
    }

    /// The ancestor (or `self`) with the first `len` segments.
    pub(crate) fn prefix(&self, len: usize) -> PathId {
        PathId {
            segments: self.segments[..len.min(self.segments.len())].to_vec(),
        }
    }

    /// Whether `other` is `self` or lies below it.
    pub fn contains(&self, other: &PathId) -> bool {
        other.segments.len() >= self.segments.len() && other.segments[..self.segments.len()] == self.segments[..]
    }
}

/// Marathon's segment rule: `(label\.)*label` where a label is `[a-z0-9]` or
/// `[a-z0-9][a-z0-9-]*[a-z0-9]`.
fn is_valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for PathId {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PathId::parse(s)
    }
}

impl Serialize for PathId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PathId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PathId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathId {
        PathId::parse(s).unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(p("/prod/web").to_string(), "/prod/web");
        assert_eq!(p("prod/web"), p("/prod/web"));
        assert_eq!(p("/prod/web/"), p("/prod/web"));
        assert_eq!(p("/").to_string(), "/");
        assert!(p("/").is_root());
        assert_eq!(p("/a.b-c/x1").segments(), ["a.b-c", "x1"]);
    }

    #[test]
    fn refuses_bad_segments() {
        for bad in ["/Web", "/a b", "/-a", "/a-", "/a..b", "/a/.../b", "/a_b", "/a/b.", "/é"] {
            assert!(PathId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PathId::parse(".."), Err(PathError::AboveRoot("..".into())));
    }

    #[test]
    fn resolves_relative_ids_against_a_group() {
        let base = p("/prod/backend");
        assert_eq!(PathId::resolve(&base, "db").unwrap(), p("/prod/backend/db"));
        assert_eq!(
            PathId::resolve(&base, "../frontend/web").unwrap(),
            p("/prod/frontend/web")
        );
        assert_eq!(PathId::resolve(&base, "./cache").unwrap(), p("/prod/backend/cache"));
        assert_eq!(PathId::resolve(&base, "/other").unwrap(), p("/other"));
        assert!(PathId::resolve(&base, "../../../x").is_err());
    }

    #[test]
    fn parent_child_and_containment() {
        let web = p("/prod/web");
        assert_eq!(web.parent(), p("/prod"));
        assert_eq!(PathId::root().parent(), PathId::root());
        assert_eq!(web.name(), Some("web"));
        assert_eq!(p("/prod").child("web").unwrap(), web);
        assert!(p("/prod").child("Web").is_err());
        assert!(p("/prod").contains(&web));
        assert!(web.contains(&web));
        assert!(PathId::root().contains(&web));
        assert!(!p("/pro").contains(&web));
        assert!(!web.contains(&p("/prod")));
        assert!(p("/prod") < web);
    }

    #[test]
    fn serde_as_string() {
        let id: PathId = serde_json::from_str("\"/a/b\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"/a/b\"");
        assert!(serde_json::from_str::<PathId>("\"/A\"").is_err());
    }
}
