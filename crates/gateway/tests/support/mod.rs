//! Helpers for the L7 tests: real hyper backends on loopback, a gateway with a table the test
//! changes, HTTP/1, HTTP/2 and TLS clients, certificates from a test CA.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tepui_gateway::proxy::{Gateway, Settings};
use tepui_gateway::{Backend, Balance, Certificate, GatewayTable, HttpRoute};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `127.0.60.n`: every test address is on loopback, in the range these tests own.
pub fn ip(n: u8) -> IpAddr {
    assert!((1..=99).contains(&n), "test addresses are 127.0.60.1 to 127.0.60.99");
    IpAddr::V4(Ipv4Addr::new(127, 0, 60, n))
}

/// Waits until `check` holds, failing the test at the deadline.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A gate requests can be held at until the test opens it.
#[derive(Clone)]
pub struct Gate(watch::Sender<bool>);

impl Gate {
    pub fn closed() -> Gate {
        Gate(watch::channel(false).0)
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn pass(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }
}

/// A backend that answers every request with what it saw, one `key: value` a line.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests received (counted when they arrive).
    requests: Arc<AtomicU64>,
    /// Requests answered.
    answered: Arc<AtomicU64>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(name: &str, ip: IpAddr) -> TestBackend {
        TestBackend::start_at(name, SocketAddr::new(ip, 0), None).await
    }

    /// A backend whose requests wait at `gate` before they are answered.
    pub async fn holding(name: &str, ip: IpAddr, gate: Gate) -> TestBackend {
        TestBackend::start_at(name, SocketAddr::new(ip, 0), Some(gate)).await
    }

    pub async fn start_at(name: &str, addr: SocketAddr, gate: Option<Gate>) -> TestBackend {
        let listener = TcpListener::bind(addr).await.expect("backend binds");
        let addr = listener.local_addr().expect("backend address");
        let requests = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_backend(
            name.to_owned(),
            listener,
            gate,
            requests.clone(),
            answered.clone(),
            stop.clone(),
        ));
        TestBackend {
            name: name.to_owned(),
            addr,
            requests,
            answered,
            stop,
            server,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(SeqCst)
    }

    pub fn backend(&self) -> Backend {
        Backend {
            task_id: format!("{}.task", self.name),
            addr: self.addr,
        }
    }

    /// Stops accepting, closes idle connections, lets requests in flight finish.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("backend stops in time")
            .expect("backend task");
    }
}

async fn serve_backend(
    name: String,
    listener: TcpListener,
    gate: Option<Gate>,
    requests: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let name = name.clone();
        let gate = gate.clone();
        let requests = requests.clone();
        let answered = answered.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let name = name.clone();
                let gate = gate.clone();
                let requests = requests.clone();
                let answered = answered.clone();
                async move {
                    requests.fetch_add(1, SeqCst);
                    let response = describe(&name, request, gate).await;
                    answered.fetch_add(1, SeqCst);
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn describe(name: &str, request: Request<Incoming>, gate: Option<Gate>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Some(gate) = gate {
        gate.pass().await;
    }
    let header = |name: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let text = format!(
        "backend: {name}\nmethod: {}\npath: {}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\nx-forwarded-host: {}\nx-forwarded-port: {}\nconnection: {}\nbody: {}\n",
        parts.method,
        parts.uri,
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("x-forwarded-host"),
        header("x-forwarded-port"),
        header("connection"),
        String::from_utf8_lossy(&body),
    );
    Response::builder()
        .header("x-backend", name)
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from(text)))
        .expect("response")
}

/// A backend that takes connections, reads a request, and hangs up without answering.
pub struct HangupBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HangupBackend {
    pub async fn start(ip: IpAddr) -> HangupBackend {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("hangup backend binds");
        let addr = listener.local_addr().expect("hangup backend address");
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    let _ = stream.read(&mut buffer).await;
                });
            }
        });
        HangupBackend { addr, task }
    }

    pub fn backend(&self) -> Backend {
        Backend {
            task_id: "hangup.task".to_owned(),
            addr: self.addr,
        }
    }
}

impl Drop for HangupBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/1.1 backend that answers one request per connection and then closes it without
/// saying so (no `Connection: close`), as a server does whose keep-alive timeout ran out: the
/// gateway keeps the connection as idle and finds it closed when it takes it again. A POST is
/// answered with its body's length, a GET with `size` bytes of `x`.
pub struct OneShotBackend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl OneShotBackend {
    pub async fn start(ip: IpAddr, size: usize) -> OneShotBackend {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("one-shot backend binds");
        let addr = listener.local_addr().expect("one-shot backend address");
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = vec![0u8; 64 * 1024];
                    // The head, then as much body as its Content-Length says.
                    let (head_end, length) = loop {
                        let Ok(n) = stream.read(&mut buffer).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while seen.len() < head_end + length {
                        let Ok(n) = stream.read(&mut buffer).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                    }
                    let body = if length > 0 {
                        format!("received: {length}\n").into_bytes()
                    } else {
                        vec![b'x'; size]
                    };
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        OneShotBackend {
            addr,
            connections,
            task,
        }
    }

    pub fn backend(&self) -> Backend {
        Backend {
            task_id: "oneshot.task".to_owned(),
            addr: self.addr,
        }
    }
}

impl Drop for OneShotBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A websocket backend that echoes every message.
pub struct WsBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WsBackend {
    pub async fn start(ip: IpAddr) -> WsBackend {
        use futures::{SinkExt, StreamExt};
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("ws backend binds");
        let addr = listener.local_addr().expect("ws backend address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsBackend { addr, task }
    }

    pub fn backend(&self) -> Backend {
        Backend {
            task_id: "ws.task".to_owned(),
            addr: self.addr,
        }
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A route of app `app` for `hosts` (and `path`) to `backends`, round robin.
pub fn route(app: &str, hosts: &[&str], path: Option<&str>, backends: Vec<Backend>) -> HttpRoute {
    HttpRoute {
        app: app.to_owned(),
        port_index: 0,
        group: "external".to_owned(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        path: path.map(str::to_owned),
        redirect_to_https: false,
        balance: Balance::RoundRobin,
        sticky: false,
        backends,
    }
}

pub fn table(routes: Vec<HttpRoute>, certificates: Vec<Certificate>) -> GatewayTable {
    GatewayTable {
        routes,
        certificates,
        ..GatewayTable::default()
    }
}

/// Settings on `ip`, both listeners on port 0, quick to drain.
pub fn settings(ip: IpAddr) -> Settings {
    Settings {
        http: Some(SocketAddr::new(ip, 0)),
        https: Some(SocketAddr::new(ip, 0)),
        drain_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// A gateway and the sender of its table.
pub struct TestGateway {
    pub gateway: Gateway,
    pub table: watch::Sender<Arc<GatewayTable>>,
}

impl TestGateway {
    pub async fn start(settings: Settings, table: GatewayTable) -> TestGateway {
        let (sender, receiver) = watch::channel(Arc::new(table));
        let gateway = Gateway::start(settings, receiver).await.expect("gateway starts");
        TestGateway { gateway, table: sender }
    }

    pub fn http(&self) -> SocketAddr {
        self.gateway.http_addr().expect("http listener")
    }

    pub fn https(&self) -> SocketAddr {
        self.gateway.https_addr().expect("https listener")
    }

    /// Sends a new table and waits until the gateway serves it (its routes' backends show).
    pub async fn set_table(&self, table: GatewayTable) {
        let expected: Vec<(String, Option<String>, Vec<SocketAddr>)> = table
            .routes
            .iter()
            .map(|r| {
                (
                    r.app.clone(),
                    r.path.clone(),
                    r.backends.iter().map(|b| b.addr).collect(),
                )
            })
            .collect();
        self.table.send_replace(Arc::new(table));
        wait_for("the gateway to apply the table", Duration::from_secs(5), || {
            let served: Vec<(String, Option<String>, Vec<SocketAddr>)> = self
                .gateway
                .routes()
                .into_iter()
                .map(|r| (r.app, r.path, r.backends.iter().map(|b| b.addr).collect()))
                .collect();
            served == expected
        })
        .await;
    }
}

/// A response, its body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// A `key: value` line of a test backend's answer.
    pub fn seen(&self, key: &str) -> Option<&str> {
        self.body.lines().find_map(|line| {
            let (k, v) = line.split_once(": ")?;
            (k == key).then_some(v)
        })
    }

    pub fn backend(&self) -> &str {
        self.seen("backend").unwrap_or("")
    }
}

async fn into_reply(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One HTTP/1.1 connection to the gateway, kept alive across requests.
pub struct Http1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Http1 {
    pub async fn connect(addr: SocketAddr) -> Http1 {
        let stream = TcpStream::connect(addr).await.expect("connects to the gateway");
        Http1::over(TokioIo::new(stream)).await
    }

    pub async fn over<I>(io: I) -> Http1
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("http/1 handshake");
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Http1 { sender }
    }

    pub async fn try_send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        Ok(into_reply(response).await)
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        self.try_send(request("GET", host, path, "", &[]))
            .await
            .expect("a response")
    }
}

/// A request for `host` and `path` with extra headers.
pub fn request(method: &str, host: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request")
}

/// A GET on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    Http1::connect(addr).await.get(host, path).await
}

/// Sends raw bytes and reads until the gateway closes the connection (or `timeout`).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connects to the gateway");
    // The gateway may answer and close before everything is written: that is an answer too.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the gateway did not close the connection within {timeout:?}"
    );
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// A test CA and certificates it signs.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub root: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tepui gateway test ca");
        let key = rcgen::KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca certificate");
        TestCa {
            root: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `hosts`, and its DER (what a client should see).
    pub fn certificate(&self, hosts: &[&str]) -> (Certificate, CertificateDer<'static>) {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(names.clone()).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (
            Certificate {
                source: format!("test:{}", names.join(",")),
                hosts: names,
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            cert.der().clone(),
        )
    }

    /// A TLS client that trusts this CA only and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// A TLS connection to the gateway for server name `sni`.
pub async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    connector.connect(name, stream).await
}

/// An HTTP/2 connection over `io`.
pub async fn http2<I>(io: I) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("http/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

pub async fn http2_get(sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>, uri: &str) -> Reply {
    let request = Request::builder()
        .uri(uri)
        .version(Version::HTTP_2)
        .body(Empty::new())
        .expect("request");
    sender.ready().await.expect("http/2 ready");
    let response = sender.send_request(request).await.expect("http/2 response");
    into_reply(response).await
}

/// A line of the gateway's metrics, by its name and labels (`name{labels}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}
