//! Serving an HTTP router (the API on :5050, the agent's port) within bounds: a client that
//! sends its request headers slowly, or opens connections without end, cannot hold the
//! server's memory or descriptors.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::KillableListener;

/// Bounds on an HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers; the connection is closed then.
    pub header_read_timeout: Duration,
    /// Connections open at once; more are closed as they come, until some end.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Whether a client at `peer` may speak plain HTTP to a listener that also takes HTTPS: only
/// from this host, where nobody on the network can read the token it sends.
pub fn plain_http_allowed(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves `router` (websocket upgrades included) on `listener` until the node shuts down.
///
/// With `tls`, one port takes both: a connection that opens with a TLS handshake gets HTTPS,
/// one that opens with plain HTTP is served only from loopback and answered 400 (and closed)
/// from anywhere else, so a token is never read off the network.
pub async fn serve_http(
    mut listener: KillableListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut refused_logged = false;
    while let Some((io, addr)) = listener.accept().await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Once per burst: a flood must not become a flood of log lines.
            if !refused_logged {
                tracing::warn!(%addr, limit = limits.max_connections, "HTTP connections at their limit; closing new ones");
                refused_logged = true;
            }
            drop(io);
            continue;
        };
        refused_logged = false;
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                serve_connection(io, router, limits, addr).await;
                drop(permit);
                return;
            };
            // The client speaks first in both protocols; it gets the header timeout to do so.
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(limits.header_read_timeout, io.get_ref().peek(&mut first)).await;
            match peeked {
                Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => serve_connection(tls, router, limits, addr).await,
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
                Ok(Ok(1)) if plain_http_allowed(addr.ip()) => serve_connection(io, router, limits, addr).await,
                Ok(Ok(1)) => refuse_plain(io, addr).await,
                _ => {}
            }
            drop(permit);
        });
    }
}

async fn serve_connection<IO>(io: IO, router: axum::Router, limits: HttpLimits, addr: std::net::SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_read_timeout);
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!(%addr, error = %e, "HTTP connection ended");
    }
}

/// A plain-HTTP request from another host: one answer that says what to do, then close. The
/// request itself (and any token in it) is not read.
async fn refuse_plain<IO: tokio::io::AsyncWrite + Unpin>(mut io: IO, addr: std::net::SocketAddr) {
    use tokio::io::AsyncWriteExt;
    tracing::debug!(%addr, "plain HTTP from another host refused");
    let body = r#"{"code":"https_required","message":"this API takes plain HTTP only from its own host: use https:// (and the cluster CA: tepui --ca-pin or --ca-file)"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(answer.as_bytes()).await;
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::plain_http_allowed;

    #[test]
    fn plain_http_only_from_loopback() {
        for ok in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(plain_http_allowed(ok.parse().unwrap()), "{ok}");
        }
        for refused in ["10.0.0.1", "192.168.1.2", "0.0.0.0", "fd00::1", "::ffff:10.0.0.1", "::"] {
            assert!(!plain_http_allowed(refused.parse().unwrap()), "{refused}");
        }
    }
}
