//! Wire types of tepui's cluster port (gRPC over mTLS): Raft RPCs between servers, the join
//! handshake, request forwarding to the leader, and the agent stream.
//!
//! Generated from `proto/cluster.proto`; this crate holds no logic.

#![allow(clippy::all)]

tonic::include_proto!("tepui.cluster.v1");

/// Messages on the agent stream. They are JSON inside [`Envelope`]s: the stream evolves with
/// every capability that reaches agents, and serde keeps that cheap.
pub mod agent {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Resources {
        pub cpus_milli: u64,
        pub mem_mb: u64,
        pub disk_mb: u64,
        pub ports: Vec<(u16, u16)>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum AgentToServer {
        /// The first message on every stream.
        Register {
            resources: Resources,
            attributes: BTreeMap<String, String>,
            http_addr: String,
            version: String,
        },
        Heartbeat {
            seq: u64,
        },
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum ServerToAgent {
        Registered { node_id: u64, servers: Vec<String> },
        HeartbeatAck { seq: u64 },
    }
}
