//! Versions: which release a binary is, which cluster protocol it speaks, and whether a
//! cluster can take a binary (the rule `tepui operator upgrade-check` applies).
//!
//! A *protocol* number names what nodes send each other and store: the Raft commands, the
//! agent stream's messages, the stored formats. A binary speaks its own [`PROTOCOL`] and can
//! still work beside nodes down to [`MIN_PROTOCOL`]: it decodes everything they send, and the
//! leader sends nothing newer than the cluster's lowest protocol (the gate). A node that tells
//! no protocol (0.1.0 told none) speaks [`LEGACY_PROTOCOL`].

use serde::{Deserialize, Serialize};

/// This binary's release, from the workspace's version.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The protocol this binary speaks: 2 since 0.2.0.
pub const PROTOCOL: u32 = 2;

/// The oldest protocol this binary works beside (and whose data dirs it reads).
pub const MIN_PROTOCOL: u32 = 1;

/// The protocol of a node that says none: 0.1.0, the release before versions were told.
pub const LEGACY_PROTOCOL: u32 = 1;

/// The release that told no versions.
pub const LEGACY_RELEASE: &str = "0.1.0";

/// The gRPC metadata keys a node tells its release and protocols in (answers to Raft calls,
/// join requests).
pub const META_RELEASE: &str = "x-tepui-release";
pub const META_PROTOCOL: &str = "x-tepui-protocol";
pub const META_MIN_PROTOCOL: &str = "x-tepui-min-protocol";

/// A binary's release and the protocols it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speaks {
    pub release: String,
    pub protocol: u32,
    pub min_protocol: u32,
}

impl Speaks {
    /// This binary.
    pub fn this() -> Speaks {
        Speaks {
            release: RELEASE.to_string(),
            protocol: PROTOCOL,
            min_protocol: MIN_PROTOCOL,
        }
    }

    /// A node that told nothing: 0.1.0.
    pub fn legacy() -> Speaks {
        Speaks {
            release: LEGACY_RELEASE.to_string(),
            protocol: LEGACY_PROTOCOL,
            min_protocol: LEGACY_PROTOCOL,
        }
    }

    /// What a node told, each part optional (absent: 0.1.0's).
    pub fn told(release: Option<&str>, protocol: Option<u32>, min_protocol: Option<u32>) -> Speaks {
        let protocol = protocol.unwrap_or(LEGACY_PROTOCOL);
        Speaks {
            release: release.unwrap_or(LEGACY_RELEASE).to_string(),
            protocol,
            min_protocol: min_protocol.unwrap_or(protocol).min(protocol),
        }
    }

    /// Whether a node speaking `self` and one speaking `other` understand each other.
    pub fn works_with(&self, other: &Speaks) -> bool {
        self.min_protocol <= other.protocol && other.min_protocol <= self.protocol
    }
}

/// The releases this binary knows, for `upgrade-check --version`.
pub fn known_release(release: &str) -> Option<Speaks> {
    let release = release.trim().trim_start_matches('v');
    match release {
        "0.1.0" => Some(Speaks::legacy()),
        RELEASE => Some(Speaks::this()),
        _ => None,
    }
}

/// How to upgrade a cluster, in order (`upgrade-check` prints it).
pub const PROCEDURE: &[&str] = &[
    "servers first, one at a time, the leader last: stop one, start the new binary on the same data dir and addresses, and wait until `tepui server members` shows it a voter that caught up with the leader",
    "then the agents, one at a time: stop one, start the new binary on the same data dir; its tasks keep running and it adopts them again",
    "commands of a newer protocol are written only once every server speaks it",
];

/// A member of the cluster as the leader knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub server: bool,
    pub speaks: Speaks,
    /// Whether the leader heard it tell its versions (an unheard server counts as 0.1.0).
    pub heard: bool,
}

/// Whether a binary can take one node's place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdict {
    pub id: u64,
    pub ok: bool,
    pub reason: String,
}

/// The lowest protocol among servers: what the leader may write to the log, and what every
/// server's data dir may hold.
pub fn cluster_protocol<'a>(servers: impl IntoIterator<Item = &'a Speaks>) -> u32 {
    servers.into_iter().map(|s| s.protocol).min().unwrap_or(LEGACY_PROTOCOL)
}

/// Whether `binary` can replace each member, one at a time, the others as they are: it must
/// read what the cluster writes (the cluster's protocol), and understand, and be understood
/// by, every other server (and, for an agent, every server it may find leading).
pub fn check(binary: &Speaks, members: &[Member]) -> Vec<NodeVerdict> {
    let servers: Vec<&Member> = members.iter().filter(|m| m.server).collect();
    let in_use = cluster_protocol(servers.iter().map(|m| &m.speaks));
    members
        .iter()
        .map(|m| {
            let peers = servers.iter().filter(|s| s.id != m.id);
            let mut reason = None;
            if binary.protocol < in_use {
                reason = Some(format!(
                    "the cluster writes protocol {in_use}; {} speaks up to {}",
                    binary.release, binary.protocol
                ));
            }
            for p in peers {
                if reason.is_none() && !binary.works_with(&p.speaks) {
                    reason = Some(format!(
                        "{} (protocols {}..={}) and server {} on {} (protocols {}..={}) do not understand each other",
                        binary.release,
                        binary.min_protocol,
                        binary.protocol,
                        p.name,
                        p.speaks.release,
                        p.speaks.min_protocol,
                        p.speaks.protocol
                    ));
                }
            }
            let ok = reason.is_none();
            let reason = reason.unwrap_or_else(|| {
                if m.speaks == *binary {
                    "already runs it".to_string()
                } else if !m.server && binary.protocol > in_use {
                    "yes, once every server runs it (servers first)".to_string()
                } else {
                    "yes".to_string()
                }
            });
            NodeVerdict { id: m.id, ok, reason }
        })
        .collect()
}

/// Whether a node speaking `joiner` may join (a server when `server`) a cluster whose servers
/// speak `servers`: it must understand, and be understood by, every server (any may lead),
/// and a server must also read what the cluster writes.
pub fn can_join(joiner: &Speaks, server: bool, servers: &[Speaks]) -> Result<(), String> {
    let in_use = cluster_protocol(servers);
    if server && joiner.protocol < in_use {
        return Err(format!(
            "the cluster writes protocol {in_use} and {} speaks up to {}: run a newer release",
            joiner.release, joiner.protocol
        ));
    }
    match servers.iter().find(|s| !joiner.works_with(s)) {
        Some(s) => Err(format!(
            "{} (protocols {}..={}) and a server on {} (protocols {}..={}) do not understand each other{}",
            joiner.release,
            joiner.min_protocol,
            joiner.protocol,
            s.release,
            s.min_protocol,
            s.protocol,
            if joiner.min_protocol > s.protocol {
                ": upgrade the servers first"
            } else {
                ""
            }
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, server: bool, speaks: Speaks) -> Member {
        Member {
            id,
            name: format!("n{id}"),
            server,
            speaks,
            heard: true,
        }
    }

    fn future(protocol: u32, min_protocol: u32) -> Speaks {
        Speaks {
            release: "9.9.9".into(),
            protocol,
            min_protocol,
        }
    }

    #[test]
    fn a_node_that_tells_nothing_is_legacy() {
        assert_eq!(Speaks::told(None, None, None), Speaks::legacy());
        let s = Speaks::told(Some("0.2.0"), Some(2), None);
        assert_eq!((s.protocol, s.min_protocol), (2, 2));
        assert_eq!(known_release("v0.1.0"), Some(Speaks::legacy()));
        assert_eq!(known_release(RELEASE), Some(Speaks::this()));
        assert_eq!(known_release("7.0.0"), None);
    }

    #[test]
    fn this_release_can_take_a_legacy_cluster_one_node_at_a_time() {
        let members = vec![
            member(1, true, Speaks::legacy()),
            member(2, true, Speaks::legacy()),
            member(3, false, Speaks::legacy()),
        ];
        let v = check(&Speaks::this(), &members);
        assert!(v.iter().all(|v| v.ok), "{v:?}");
        // An agent on a newer protocol than the servers waits for them.
        assert!(v[2].reason.contains("servers first"), "{v:?}");
    }

    #[test]
    fn a_legacy_binary_cannot_join_once_every_server_speaks_more() {
        let members = vec![member(1, true, Speaks::this()), member(2, true, Speaks::this())];
        let v = check(&Speaks::legacy(), &members);
        assert!(v.iter().all(|v| !v.ok), "{v:?}");
        assert!(v[0].reason.contains("writes protocol 2"), "{v:?}");
        // With one server still on 0.1.0, going back is still possible.
        let mixed = vec![member(1, true, Speaks::this()), member(2, true, Speaks::legacy())];
        assert!(check(&Speaks::legacy(), &mixed).iter().all(|v| v.ok));
    }

    #[test]
    fn joins_need_a_release_that_reads_the_cluster_and_talks_to_every_server() {
        let new = [Speaks::this(), Speaks::this()];
        let mixed = [Speaks::this(), Speaks::legacy()];
        assert!(can_join(&Speaks::legacy(), true, &mixed).is_ok());
        let e = can_join(&Speaks::legacy(), true, &new).unwrap_err();
        assert!(e.contains("writes protocol 2"), "{e}");
        // An agent does not read the log: an old one may join, the leader sends it only
        // what it decodes.
        assert!(can_join(&Speaks::legacy(), false, &new).is_ok());
        let e = can_join(&future(3, 2), false, &mixed).unwrap_err();
        assert!(e.contains("upgrade the servers first"), "{e}");
    }

    #[test]
    fn a_binary_that_dropped_the_old_protocol_waits_for_the_old_servers() {
        let members = vec![member(1, true, Speaks::legacy()), member(2, true, Speaks::this())];
        let v = check(&future(3, 2), &members);
        // Replacing the legacy server leaves server 2, which it understands.
        assert!(v[0].ok, "{v:?}");
        // Replacing server 2 leaves the legacy one, which it does not.
        assert!(!v[1].ok && v[1].reason.contains("do not understand"), "{v:?}");
        assert_eq!(cluster_protocol([&Speaks::legacy(), &Speaks::this()]), 1);
    }
}
