//! The HTTP listener's bounds, against a real socket: a client that never finishes its request
//! headers is cut off, and connections past the limit are closed until others end.

use std::time::{Duration, Instant};

use axum::routing::get;
use tepui_transport::{serve_http, HttpLimits, KillableListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

async fn server(limits: HttpLimits) -> (std::net::SocketAddr, CancellationToken) {
    server_with_tls(limits, None).await
}

async fn server_with_tls(
    limits: HttpLimits,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> (std::net::SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = axum::Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve_http(
        KillableListener::new(listener, stop.clone()),
        router,
        limits,
        tls,
    ));
    (addr, stop)
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("the server closed the connection in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_ok(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (addr, _stop) = server(HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 16,
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut slow).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    // A prompt client is served.
    get_ok(&mut TcpStream::connect(addr).await.unwrap()).await;
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_until_others_end() {
    let (addr, _stop) = server(HttpLimits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    get_ok(&mut first).await;
    get_ok(&mut second).await;
    // Both stay open (keep-alive): a third is closed without an answer.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(read_to_close(&mut third).await, "");
    // Once one ends, new connections are served again.
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        let _ = next.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(DEADLINE, next.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no connection served after one ended");
        tokio::task::yield_now().await;
    }
    get_ok(&mut second).await;
}

/// With TLS configured, one port takes HTTPS (verified against the cluster CA) and plain HTTP
/// from loopback.
#[tokio::test]
async fn one_port_takes_https_and_plain_http_from_loopback() {
    use tepui_pki::{generate_ca, issue_node_cert, tls, NodeIdentity, Role};
    let ca = generate_ca("c1").unwrap();
    let identity = NodeIdentity {
        id: 1,
        role: Role::Server,
        name: "s1".into(),
    };
    let node = issue_node_cert(&ca, &identity, &[]).unwrap();
    let live = tls::LiveTls::new(tls::TlsMaterial {
        ca_bundle_pem: ca.cert_pem.clone(),
        node,
        extra_chain_pem: String::new(),
    })
    .unwrap();
    let (addr, _stop) = server_with_tls(HttpLimits::default(), Some(live.api_server_config().unwrap())).await;

    let mut plain = TcpStream::connect(addr).await.unwrap();
    get_ok(&mut plain).await;

    let pin = tepui_pki::ca_fingerprint(&ca.cert_pem).unwrap();
    let config = tls::api_client_config(&tls::ClusterTrust::Pin(pin)).unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut secure = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the cluster CA");
    secure
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, secure.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");

    // Another cluster's pin: the handshake fails, nothing is sent.
    let other = generate_ca("c2").unwrap();
    let wrong = tls::api_client_config(&tls::ClusterTrust::Pin(
        tepui_pki::ca_fingerprint(&other.cert_pem).unwrap(),
    ))
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let err = tokio_rustls::TlsConnector::from(std::sync::Arc::new(wrong))
        .connect(name, tcp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
}
