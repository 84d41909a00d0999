//! Serving an HTTP router (the API on :5050, the agent's port) within bounds: a client that
//! sends its request headers slowly, or opens connections without end, cannot hold the
//! server's memory or descriptors.

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

/// Serves `router` (websocket upgrades included) on `listener` until the node shuts down.
pub async fn serve_http(mut listener: KillableListener, router: axum::Router, limits: HttpLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
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
            drop(permit);
        });
    }
}
