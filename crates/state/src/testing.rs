//! Fixtures for tests of the crates that read the state.

use std::collections::BTreeMap;

use crate::{AgentInfo, ClusterInfo, Maintenance, NodeRecord, NodeStatus, Resources, Role, State};

/// An initialized cluster with `agents` ready agents `a1`... of 2 cpus, `mem_mb` of memory and
/// ports 31000-31009.
pub fn state_with_agents(agents: u64, mem_mb: u64) -> State {
    let mut s = State {
        cluster: Some(ClusterInfo {
            cluster_id: "c".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            created_at: 0,
        }),
        ..State::default()
    };
    for id in 1..=agents {
        s.nodes.insert(
            id,
            NodeRecord {
                id,
                name: format!("a{id}"),
                role: Role::Agent,
                cluster_addr: String::new(),
                http_addr: String::new(),
                agent: Some(AgentInfo {
                    resources: Resources {
                        cpus_milli: 2000,
                        mem_mb,
                        disk_mb: 0,
                        reserved: String::new(),
                        ports: vec![(31000, 31009)],
                    },
                    attributes: BTreeMap::new(),
                    http_addr: String::new(),
                    version: String::new(),
                    registered_at: 0,
                }),
                status: NodeStatus::Ready,
                joined_at: 0,
                status_changed_at: 0,
                token_id: None,
                maintenance: Maintenance::Active,
            },
        );
    }
    s
}
