//! The cluster port's plumbing: mTLS listeners and channels for tonic, the node identity kept
//! on disk, the join handshake, and a fault-injection filter for tests.
//!
//! It knows certificates and sockets, not Raft or the state model: servers and agents build
//! their gRPC services on top of it.

mod filter;
mod http;
mod identity;
mod join;
mod killable;
mod renew;
mod tls;
mod versions;

pub use filter::{NetFilter, Verdict};
pub use http::{plain_http_allowed, serve_http, HttpLimits};
pub use identity::{create_private_dir, write_atomic, Identity, IdentityError};
pub use join::{join, join_with_key, JoinError, JoinParams};
pub use killable::{Killable, KillableListener};
pub use renew::{LeaderFn, RenewError, Renewer, Trust};
pub use tls::{channel, channel_until, incoming, incoming_limited, incoming_watched, ConnLimits, PeerInfo, TlsConn};
pub use versions::{tell_versions, told_versions};

/// Turns a tonic status into one line a person can act on.
pub fn status_message(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut msg = status.message().to_string();
    let mut source = status.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        source = s.source();
    }
    if msg.is_empty() {
        format!("{:?}", status.code())
    } else {
        msg
    }
}
