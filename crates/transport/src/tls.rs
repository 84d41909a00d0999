use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tepui_pki::NodeIdentity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Killable;

/// Who is on the other end of an accepted connection, as tonic hands it to every request.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The identity in the peer's certificate; none for a node that is still joining.
    pub identity: Option<NodeIdentity>,
    pub remote: SocketAddr,
}

/// Bounds on a listener's connections, so that nobody without a certificate can hold more
/// than a few of them, or hold one for long.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Connections open at once, handshaking or handshaken; more are closed as they come.
    pub max_connections: usize,
    /// Connections without a cluster certificate open at once, counting every handshake in
    /// progress (joining nodes, and anyone else).
    pub max_unauthenticated: usize,
    /// How long a connection without a certificate stays open: a join is one call.
    pub unauthenticated_lifetime: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            max_connections: 4096,
            max_unauthenticated: 256,
            unauthenticated_lifetime: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// An accepted, handshaken TLS connection.
pub struct TlsConn {
    stream: Killable<tokio_rustls::server::TlsStream<TcpStream>>,
    info: PeerInfo,
    /// Hears who this connection was with once it ends.
    on_close: Option<UnboundedSender<PeerInfo>>,
    /// Its place under the listener's limits, given back when it closes.
    _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        if let Some(tx) = &self.on_close {
            let _ = tx.send(self.info.clone());
        }
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts TCP connections and completes their TLS handshakes off the accept loop, so one slow
/// or hostile client cannot hold up the others. The listener closes when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    accept_loop(listener, config, shutdown, None, ConnLimits::default())
}

/// As [`incoming`], and once a handshaken connection ends, for whatever reason (the peer closed
/// it, its process died, this node dropped it), sends its [`PeerInfo`] to `closed`.
pub fn incoming_watched(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    closed: UnboundedSender<PeerInfo>,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    accept_loop(listener, config, shutdown, Some(closed), ConnLimits::default())
}

/// As [`incoming_watched`], within `limits`.
pub fn incoming_limited(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    closed: UnboundedSender<PeerInfo>,
    limits: ConnLimits,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    accept_loop(listener, config, shutdown, Some(closed), limits)
}

fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    on_close: Option<UnboundedSender<PeerInfo>>,
    limits: ConnLimits,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let all = Arc::new(Semaphore::new(limits.max_connections));
    let unauthenticated = Arc::new(Semaphore::new(limits.max_unauthenticated));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster port accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over a limit, the connection is closed before anything is read from it.
            let (Ok(permit), Ok(unproven)) = (
                all.clone().try_acquire_owned(),
                unauthenticated.clone().try_acquire_owned(),
            ) else {
                tracing::debug!(%remote, "cluster port connection refused: too many connections");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let shutdown = shutdown.clone();
            let on_close = on_close.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "tls handshake timed out");
                        return;
                    }
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|leaf| tepui_pki::identity_from_der(leaf.as_ref()).ok());
                // A node of the cluster gives its unauthenticated place back; anyone else keeps
                // it, and is cut off after a while.
                let (unproven, killed) = match identity {
                    Some(_) => (None, shutdown),
                    None => {
                        let killed = shutdown.child_token();
                        let cut = killed.clone();
                        let lifetime = limits.unauthenticated_lifetime;
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = cut.cancelled() => {}
                                _ = tokio::time::sleep(lifetime) => cut.cancel(),
                            }
                        });
                        (Some(unproven), killed)
                    }
                };
                let _ = tx
                    .send(Ok(TlsConn {
                        stream: Killable::new(stream, &killed),
                        info: PeerInfo { identity, remote },
                        on_close,
                        _permits: (permit, unproven),
                    }))
                    .await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A lazily connected gRPC channel to `addr` (`host:port`) over TLS with `config`. It reconnects
/// by itself after failures.
pub fn channel(addr: &str, config: Arc<rustls::ClientConfig>) -> Channel {
    connect_lazy(addr, config, None)
}

/// As [`channel`], but every connection it makes fails once `closed` is cancelled, so that a
/// node that stops closes its outgoing connections as well, and its peers see it go.
pub fn channel_until(addr: &str, config: Arc<rustls::ClientConfig>, closed: &CancellationToken) -> Channel {
    connect_lazy(addr, config, Some(closed.clone()))
}

fn connect_lazy(addr: &str, config: Arc<rustls::ClientConfig>, closed: Option<CancellationToken>) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Endpoint::from_static("http://invalid.address"))
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let addr = addr.to_string();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let addr = addr.clone();
        let config = config.clone();
        let closed = closed.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from(tepui_pki::tls::SERVER_NAME)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                .to_owned();
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            // A token nobody cancels keeps the connection as it is.
            let closed = closed.unwrap_or_default();
            Ok::<_, io::Error>(TokioIo::new(Killable::new(tls, &closed)))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tepui_pki::{NodeIdentity, Role};
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn connections_without_a_certificate_are_few_and_short_lived() {
        use tokio::io::AsyncReadExt;

        let ca = tepui_pki::generate_ca("test").unwrap();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let me = NodeIdentity {
            id: 1,
            role: Role::Server,
            name: "n1".into(),
        };
        let server_cert = tepui_pki::issue_node_cert(&ca, &me, &[ip]).unwrap();
        let server_tls = tepui_pki::tls::server_config(&ca.cert_pem, &server_cert).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, _closed) = tokio::sync::mpsc::unbounded_channel();
        let limits = ConnLimits {
            max_connections: 100,
            max_unauthenticated: 2,
            unauthenticated_lifetime: Duration::from_millis(300),
            handshake_timeout: Duration::from_secs(10),
        };
        let mut conns = incoming_limited(listener, server_tls, CancellationToken::new(), closed_tx, limits);

        // Two that never handshake hold both unauthenticated places: a third is closed at once.
        let mut idle1 = TcpStream::connect(addr).await.unwrap();
        let _idle2 = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
            .await
            .expect("the third connection is closed without waiting");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

        // One place comes free; a client without a certificate handshakes, and is cut off
        // after its lifetime although it keeps the connection open.
        idle1.shutdown().await.unwrap();
        drop(idle1);
        let client_tls = tepui_pki::tls::client_config(&ca.cert_pem, None).unwrap();
        let name = rustls_pki_types::ServerName::try_from(tepui_pki::tls::SERVER_NAME).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut client = loop {
            let tcp = TcpStream::connect(addr).await.unwrap();
            match tokio_rustls::TlsConnector::from(client_tls.clone())
                .connect(name.clone(), tcp)
                .await
            {
                Ok(c) => break c,
                // The freed place may not be back yet.
                Err(_) if tokio::time::Instant::now() < deadline => tokio::task::yield_now().await,
                Err(e) => panic!("no handshake: {e}"),
            }
        };
        let conn = conns.next().await.unwrap().unwrap();
        assert!(conn.connect_info().identity.is_none());
        let server_side = tokio::spawn(async move {
            let mut conn = conn;
            let mut b = [0u8; 16];
            conn.read(&mut b).await
        });
        let ended = tokio::time::timeout(Duration::from_secs(10), server_side)
            .await
            .expect("the connection is cut within its lifetime")
            .unwrap();
        assert!(ended.is_err(), "{ended:?}");
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the client sees the end: {n:?}");
    }

    #[tokio::test]
    async fn a_watched_connection_reports_its_peer_when_it_ends() {
        let ca = tepui_pki::generate_ca("test").unwrap();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let node = |id, role| NodeIdentity {
            id,
            role,
            name: format!("n{id}"),
        };
        let server_cert = tepui_pki::issue_node_cert(&ca, &node(1, Role::Server), &[ip]).unwrap();
        let client_cert = tepui_pki::issue_node_cert(&ca, &node(7, Role::Server), &[ip]).unwrap();
        let server_tls = tepui_pki::tls::server_config(&ca.cert_pem, &server_cert).unwrap();
        let client_tls = tepui_pki::tls::client_config(&ca.cert_pem, Some(&client_cert)).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
        let mut conns = incoming_watched(listener, server_tls, CancellationToken::new(), closed_tx);

        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(tepui_pki::tls::SERVER_NAME).unwrap();
        let mut client = tokio_rustls::TlsConnector::from(client_tls)
            .connect(name, tcp)
            .await
            .unwrap();
        let conn = conns.next().await.unwrap().unwrap();
        assert_eq!(conn.connect_info().identity.map(|i| i.id), Some(7));
        assert!(
            closed.try_recv().is_err(),
            "nothing is reported while the connection is open"
        );

        client.shutdown().await.unwrap();
        drop(client);
        drop(conn);
        let peer = tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .expect("the end of the connection is reported")
            .unwrap();
        assert_eq!(peer.identity, Some(node(7, Role::Server)));
        assert_eq!(peer.remote.ip(), ip);
    }
}
