//! Role names: hierarchical (`eng/web`), validated once, cheap to clone.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::Error;

/// A validated role name such as `eng` or `eng/web`.
///
/// Rules (those of Mesos): a name is `*` (the default role), or one or more components joined by
/// `/`. A component is not empty, not `.` or `..`, not `*`, does not start with `-`, and holds no
/// whitespace, control character or backslash.
///
/// Roles order by name, so ancestors sort before their descendants.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(Arc<str>);

impl Role {
    /// The default role `*`: unreserved resources "belong" to it, nothing can be reserved to it.
    pub fn default_role() -> Role {
        Role(Arc::from("*"))
    }

    pub fn new(name: &str) -> Result<Role, Error> {
        validate(name)?;
        Ok(Role(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        &*self.0 == "*"
    }

    /// The parent role (`eng` for `eng/web`), `None` for a top-level role.
    pub fn parent(&self) -> Option<Role> {
        self.0.rfind('/').map(|i| Role(Arc::from(&self.0[..i])))
    }

    /// How many components the name has (`eng/web` has 2).
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// Whether `self` is a strict ancestor of `other` (`eng` of `eng/web`, not of `engine`).
    pub fn is_ancestor_of(&self, other: &Role) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'/'
    }

    /// Whether resources reserved to `self` may be used by a framework of role `user`:
    /// a reservation serves its own role and every descendant of it.
    pub fn serves(&self, user: &Role) -> bool {
        self == user || self.is_ancestor_of(user)
    }
}

fn validate(name: &str) -> Result<(), Error> {
    let bad = |reason: &'static str| {
        Err(Error::InvalidRole {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name == "*" {
        return Ok(());
    }
    for component in name.split('/') {
        if component.is_empty() {
            return bad("empty path component (leading, trailing or double '/')");
        }
        if component == "." || component == ".." {
            return bad("'.' and '..' are not allowed as components");
        }
        if component == "*" {
            return bad("'*' is only allowed as the whole name");
        }
        if component.starts_with('-') {
            return bad("a component must not start with '-'");
        }
        if component
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return bad("whitespace, control characters and '\\' are not allowed");
        }
    }
    Ok(())
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role, Error> {
        Role::new(s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        for ok in ["*", "eng", "eng/web", "a.b/c_d", "x/y/z", "dev-team"] {
            assert!(Role::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/", "eng/", "/eng", "eng//web", ".", "..", "eng/..", "-x", "eng/-x", "a b", "e\tx", "a\\b", "eng/*",
            "*/x",
        ] {
            assert!(Role::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hierarchy() {
        let eng = Role::new("eng").unwrap();
        let web = Role::new("eng/web").unwrap();
        let engine = Role::new("engine").unwrap();
        assert_eq!(web.parent(), Some(eng.clone()));
        assert_eq!(eng.parent(), None);
        assert!(eng.is_ancestor_of(&web));
        assert!(!eng.is_ancestor_of(&engine));
        assert!(!web.is_ancestor_of(&eng));
        assert!(eng.serves(&web) && eng.serves(&eng) && !web.serves(&eng));
        assert_eq!(web.depth(), 2);
    }
}
