//! The in-process cluster tests, one test binary: each of them links the whole server, so one
//! binary instead of one per file saves a link and about 190 MB of disk per file.

mod agents;
mod api_access;
mod certs;
mod cluster_port;
mod cluster_port_limits;
mod events;
mod join;
mod lagging_server;
mod raft;
mod secrets_on_disk;
mod versions;
mod websocket_token;
