//! What each server speaks, as this server heard it, and the cluster's protocol: the gate
//! that keeps the leader from writing commands an older server cannot decode.
//!
//! Servers tell their release and protocols in the metadata of every answer to a Raft call
//! (and of their join request); the leader calls every member at least once per heartbeat,
//! so it knows them all within one. A member it has not heard yet counts as 0.1.0, which told
//! nothing: a new leader starts from the oldest protocol, never from a guess.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tepui_common::version::{self, Speaks};
use tonic::metadata::MetadataMap;

/// Puts this binary's release and protocols into a call's or an answer's metadata.
pub(crate) fn tell(md: &mut MetadataMap) {
    tepui_transport::tell_versions(md, &Speaks::this());
}

/// What a call's or an answer's metadata says the other side speaks (0.1.0 said nothing).
pub(crate) fn told(md: &MetadataMap) -> Speaks {
    tepui_transport::told_versions(md)
}

/// What each peer server said it speaks in its last answer, by node id.
#[derive(Clone, Default)]
pub(crate) struct PeerVersions {
    heard: Arc<Mutex<HashMap<u64, Speaks>>>,
}

impl PeerVersions {
    pub fn heard(&self, id: u64, speaks: Speaks) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if heard.get(&id) != Some(&speaks) {
            tracing::info!(node = id, release = %speaks.release, protocol = speaks.protocol, "server speaks");
            heard.insert(id, speaks);
        }
    }

    /// What `id` speaks, if it was heard.
    pub fn get(&self, id: u64) -> Option<Speaks> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// The lowest protocol among `members` (this server, `own`, speaks this binary's), an
    /// unheard one counting as 0.1.0.
    pub fn cluster_protocol(&self, own: u64, members: impl IntoIterator<Item = u64>) -> u32 {
        let speaks: Vec<Speaks> = members
            .into_iter()
            .map(|id| {
                if id == own {
                    Speaks::this()
                } else {
                    self.get(id).unwrap_or_else(Speaks::legacy)
                }
            })
            .collect();
        version::cluster_protocol(&speaks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_protocol_is_the_lowest_and_unheard_servers_are_legacy() {
        let peers = PeerVersions::default();
        assert_eq!(peers.cluster_protocol(1, [1]), version::PROTOCOL);
        assert_eq!(peers.cluster_protocol(1, [1, 2]), version::LEGACY_PROTOCOL);
        peers.heard(2, Speaks::this());
        assert_eq!(peers.cluster_protocol(1, [1, 2]), version::PROTOCOL);
        peers.heard(3, Speaks::legacy());
        assert_eq!(peers.cluster_protocol(1, [1, 2, 3]), version::LEGACY_PROTOCOL);
    }
}
