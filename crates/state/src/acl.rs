//! API access control, replicated: policies that grant capabilities, and the tokens that
//! carry them. Only a hash of each token's secret is kept.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// What a token may do with the API. Every route needs one (or is the health probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Read anything but secrets and task output.
    Read,
    /// Create, change and remove apps, jobs and tasks.
    Write,
    /// Read tasks' output.
    Logs,
    /// Run commands inside tasks.
    Exec,
    /// Touch the host: tasks without an image, host volumes, tasks as root.
    Host,
    /// Run the cluster: tokens, policies, snapshots, Raft, nodes, drains, quota, certificates.
    Operator,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Read,
        Capability::Write,
        Capability::Logs,
        Capability::Exec,
        Capability::Host,
        Capability::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Logs => "logs",
            Capability::Exec => "exec",
            Capability::Host => "host",
            Capability::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Frameworks a policy lets subscribe: as `principal` (`*`: any), into `roles` (`*`: any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkGrant {
    pub principal: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl FrameworkGrant {
    pub fn admits(&self, principal: &str, role: &str) -> bool {
        (self.principal == "*" || self.principal == principal) && self.roles.iter().any(|r| r == "*" || r == role)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    #[serde(default)]
    pub frameworks: Vec<FrameworkGrant>,
    #[serde(default)]
    pub modified_at: Millis,
}

/// An API token. Its public part (`accessor`) names it in lists and revocations; the secret
/// is shown once, when it is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor: String,
    /// SHA-256 (hex) of the secret.
    pub secret_sha256: String,
    #[serde(default)]
    pub name: String,
    /// Every capability, whatever the policies say (the bootstrap token is one).
    #[serde(default)]
    pub management: bool,
    #[serde(default)]
    pub policies: Vec<String>,
    pub created_at: Millis,
    /// None: never expires.
    #[serde(default)]
    pub expires_at: Option<Millis>,
    /// The token this one was derived from: it is good only while that one is, and is revoked
    /// with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl AclToken {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// A name for a policy: what a path segment and a file name can carry.
pub fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_round_trip_their_names() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
        assert_eq!(Capability::parse("root"), None);
    }

    #[test]
    fn framework_grants_match_principal_and_role() {
        let g = FrameworkGrant {
            principal: "spark".into(),
            roles: vec!["analytics".into()],
        };
        assert!(g.admits("spark", "analytics"));
        assert!(!g.admits("spark", "web"));
        assert!(!g.admits("flink", "analytics"));
        let any = FrameworkGrant {
            principal: "*".into(),
            roles: vec!["*".into()],
        };
        assert!(any.admits("whoever", "whatever"));
        let none = FrameworkGrant {
            principal: "spark".into(),
            roles: vec![],
        };
        assert!(!none.admits("spark", "analytics"), "no roles: nothing");
    }

    #[test]
    fn policy_names_are_plain() {
        assert!(valid_policy_name("ops-team_1.v2"));
        for bad in ["", "a/b", "a b", "../x", &"x".repeat(129)] {
            assert!(!valid_policy_name(bad), "{bad:?}");
        }
    }
}
