//! What a gateway serves: routes, certificates and virtual IPs, as the leader sends them.
//!
//! The types are wire types of the agent stream, so they live in tepui-proto; the leader derives
//! the table from the state ([`crate::build`]), the agents' data planes follow it.

pub use tepui_proto::gateway::*;
