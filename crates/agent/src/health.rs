//! Health checks run by the agent next to each task (HTTP, HTTPS, TCP, COMMAND), as Mesos'
//! executors run them: close to the task, so checking scales with the agents and not the leader.
//!
//! A task is healthy once every check passed; a check failing `max_consecutive_failures` times
//! in a row (outside the grace period, which ends with the first success) makes it unhealthy
//! and the agent kills it. Changes of health go to the leader as `TASK_RUNNING` updates with
//! `healthy` set, as Mesos sends them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tepui_proto::agent::HealthCheckDef;
use tepui_runtime::ExecSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where a check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Unknown,
    Passing,
    Failing(u32),
}

/// The combined verdict of a task's checks after one result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to report.
    Same,
    /// Health changed: report it.
    Healthy(bool),
    /// Too many failures in a row: report and kill.
    Kill(String),
}

/// The pure part: results in, verdicts out. Time comes as `elapsed` since the task started.
#[derive(Debug)]
pub(crate) struct Tracker {
    checks: Vec<(HealthCheckDef, Standing)>,
    reported: Option<bool>,
    ever_passed: bool,
}

impl Tracker {
    pub(crate) fn new(checks: Vec<HealthCheckDef>) -> Tracker {
        Tracker {
            checks: checks.into_iter().map(|c| (c, Standing::Unknown)).collect(),
            reported: None,
            ever_passed: false,
        }
    }

    pub(crate) fn record(&mut self, index: usize, result: Result<(), String>, elapsed: Duration) -> Verdict {
        let Some((check, standing)) = self.checks.get_mut(index) else {
            return Verdict::Same;
        };
        match result {
            Ok(()) => {
                *standing = Standing::Passing;
                self.ever_passed = true;
            }
            Err(why) => {
                let in_grace = !self.ever_passed && elapsed < Duration::from_millis(check.grace_period_ms);
                if in_grace {
                    return Verdict::Same;
                }
                let n = match *standing {
                    Standing::Failing(n) => n + 1,
                    _ => 1,
                };
                *standing = Standing::Failing(n);
                if n >= check.max_consecutive_failures.max(1) {
                    self.reported = Some(false);
                    return Verdict::Kill(format!(
                        "{} health check failed {n} times in a row: {why}",
                        check.protocol
                    ));
                }
            }
        }
        let healthy = self.checks.iter().all(|(_, s)| *s == Standing::Passing);
        let unhealthy = self.checks.iter().any(|(_, s)| matches!(s, Standing::Failing(_)));
        let now = if healthy {
            Some(true)
        } else if unhealthy && self.reported == Some(true) {
            Some(false)
        } else {
            None
        };
        match now {
            Some(h) if self.reported != Some(h) => {
                self.reported = Some(h);
                Verdict::Healthy(h)
            }
            _ => Verdict::Same,
        }
    }
}

/// Runs one check once, within its timeout.
pub(crate) async fn probe(
    runtime: &tepui_runtime::Runtime,
    task_id: &str,
    check: &HealthCheckDef,
) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    let run = async {
        match check.protocol.as_str() {
            "HTTP" | "HTTPS" | "MESOS_HTTP" | "MESOS_HTTPS" => {
                let port = check.port.ok_or("the check has no port")?;
                let path = check.path.as_deref().unwrap_or("/");
                // Checked where the task was submitted; again here, where it becomes a request
                // line, in case it came another way.
                if let Some(why) = tepui_common::health_path_error(path) {
                    return Err(format!("the check's path {why}"));
                }
                let tls = check.protocol.ends_with("HTTPS");
                http_get(port, path, tls).await
            }
            "TCP" | "MESOS_TCP" => {
                let port = check.port.ok_or("the check has no port")?;
                TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect to port {port}: {e}"))
            }
            "COMMAND" => {
                let command = check.command.as_deref().ok_or("the check has no command")?;
                let spec = ExecSpec {
                    args: vec!["/bin/sh".into(), "-c".into(), command.to_string()],
                    env: Default::default(),
                    cwd: None,
                    tty: false,
                };
                let out = runtime.exec(task_id, &spec).await.map_err(|e| e.to_string())?;
                if out.exit_code == 0 {
                    Ok(())
                } else {
                    Err(format!("the command exited with {}", out.exit_code))
                }
            }
            other => Err(format!("unknown health check protocol {other:?}")),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// `GET path` on 127.0.0.1:port; a 2xx or 3xx status passes (Marathon's rule).
async fn http_get(port: u16, path: &str, tls: bool) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to port {port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: tepui-health-check\r\nConnection: close\r\n\r\n"
    );
    let status = if tls {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        exchange(stream, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.lines().next().unwrap_or_default()))?;
    Ok(status)
}

/// Health checks do not verify certificates, as Marathon's do not: the task's own certificate
/// is usually for its public name, not for 127.0.0.1.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max: u32, grace_ms: u64) -> HealthCheckDef {
        HealthCheckDef {
            protocol: "TCP".into(),
            path: None,
            port: Some(1),
            command: None,
            grace_period_ms: grace_ms,
            interval_ms: 1000,
            timeout_ms: 1000,
            max_consecutive_failures: max,
            delay_ms: 0,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_in_the_grace_period_do_not_count_until_the_first_success() {
        let mut t = Tracker::new(vec![check(2, 10_000)]);
        assert_eq!(t.record(0, Err("no".into()), S), Verdict::Same);
        assert_eq!(t.record(0, Err("no".into()), 2 * S), Verdict::Same);
        assert_eq!(t.record(0, Ok(()), 3 * S), Verdict::Healthy(true));
        assert_eq!(t.record(0, Ok(()), 4 * S), Verdict::Same, "reported once");
        // After a success the grace period is over.
        assert_eq!(t.record(0, Err("no".into()), 5 * S), Verdict::Healthy(false));
        assert!(matches!(t.record(0, Err("no".into()), 6 * S), Verdict::Kill(m) if m.contains("2 times")));
    }

    #[test]
    fn every_check_must_pass_to_be_healthy() {
        let mut t = Tracker::new(vec![check(3, 0), check(3, 0)]);
        assert_eq!(t.record(0, Ok(()), S), Verdict::Same);
        assert_eq!(t.record(1, Ok(()), S), Verdict::Healthy(true));
        assert_eq!(t.record(1, Err("x".into()), 2 * S), Verdict::Healthy(false));
        assert_eq!(t.record(1, Ok(()), 3 * S), Verdict::Healthy(true));
    }

    #[test]
    fn a_check_that_never_passes_kills_after_the_grace_period() {
        let mut t = Tracker::new(vec![check(3, 2_000)]);
        assert_eq!(t.record(0, Err("x".into()), S), Verdict::Same);
        assert_eq!(t.record(0, Err("x".into()), 3 * S), Verdict::Same);
        assert_eq!(t.record(0, Err("x".into()), 4 * S), Verdict::Same);
        assert!(matches!(t.record(0, Err("x".into()), 5 * S), Verdict::Kill(_)));
    }

    #[tokio::test]
    async fn http_and_tcp_probes_talk_to_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await.unwrap();
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        assert_eq!(http_get(port, "/health", false).await, Ok(()));
        let refused = http_get(port, "/health", false).await.unwrap_err();
        assert!(refused.contains("503"), "{refused}");
        server.await.unwrap();
        let closed = http_get(port, "/", false).await.unwrap_err();
        assert!(closed.contains("connect"), "{closed}");
    }

    /// A runtime for [`probe`]; the network checks never touch it.
    fn runtime() -> (tempfile::TempDir, tepui_runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tepui_runtime::Runtime::new(dir.path(), tepui_runtime::RuntimeConfig::default()).unwrap();
        (dir, rt)
    }

    fn network_check(protocol: &str, port: u16, path: Option<&str>) -> HealthCheckDef {
        HealthCheckDef {
            protocol: protocol.into(),
            path: path.map(String::from),
            port: Some(port),
            command: None,
            grace_period_ms: 0,
            interval_ms: 1000,
            timeout_ms: 2000,
            max_consecutive_failures: 3,
            delay_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_path_that_would_break_the_request_line_is_never_sent() {
        let (_dir, rt) = runtime();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A server that passes whatever it is asked.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let ok = network_check("HTTP", port, Some("/health"));
        assert_eq!(probe(&rt, "t1", &ok).await, Ok(()));
        let injected = network_check("HTTP", port, Some("/health HTTP/1.1\r\nHost: x\r\n\r\nDELETE /data"));
        let refused = probe(&rt, "t1", &injected).await.unwrap_err();
        assert!(refused.contains("path"), "{refused}");
    }

    #[tokio::test]
    async fn tcp_checks_pass_while_the_port_listens_and_fail_once_it_is_closed() {
        let (_dir, rt) = runtime();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for protocol in ["TCP", "MESOS_TCP"] {
            // Nothing is accepted or read: a completed connect is all a TCP check asks.
            assert_eq!(probe(&rt, "t1", &network_check(protocol, port, None)).await, Ok(()));
        }
        drop(listener);
        for protocol in ["TCP", "MESOS_TCP"] {
            let down = probe(&rt, "t1", &network_check(protocol, port, None))
                .await
                .unwrap_err();
            assert!(down.contains(&format!("connect to port {port}")), "{down}");
        }
        let mut no_port = network_check("TCP", port, None);
        no_port.port = None;
        assert!(probe(&rt, "t1", &no_port).await.is_err());
    }

    /// An HTTPS server with a self-signed certificate for another name, answering `statuses`
    /// in turn, one connection each; returns its port.
    async fn https_server(statuses: Vec<&'static str>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["task.example".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut requests = vec![];
            for status in statuses {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = tls.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                tls.write_all(answer.as_bytes()).await.unwrap();
                tls.shutdown().await.unwrap();
            }
            requests
        });
        (port, server)
    }

    #[tokio::test]
    async fn https_checks_talk_tls_and_do_not_verify_the_certificate() {
        let (_dir, rt) = runtime();
        let (port, server) = https_server(vec!["200 OK", "301 Moved Permanently", "500 Internal Server Error"]).await;
        let check = |protocol| network_check(protocol, port, Some("/ready"));
        assert_eq!(probe(&rt, "t1", &check("HTTPS")).await, Ok(()));
        assert_eq!(probe(&rt, "t1", &check("MESOS_HTTPS")).await, Ok(()), "a 3xx passes");
        let failed = probe(&rt, "t1", &check("HTTPS")).await.unwrap_err();
        assert!(failed.contains("500"), "{failed}");
        let requests = server.await.unwrap();
        assert!(
            requests.iter().all(|r| r.starts_with("GET /ready HTTP/1.1\r\n")),
            "{requests:?}"
        );
    }

    #[tokio::test]
    async fn an_https_check_of_a_plain_http_port_fails_its_handshake() {
        let (_dir, rt) = runtime();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        });
        let err = probe(&rt, "t1", &network_check("HTTPS", port, None)).await.unwrap_err();
        assert!(err.contains("TLS handshake"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_check_that_gets_no_answer_fails_at_its_timeout() {
        let (_dir, rt) = runtime();
        // Accepts (in the backlog) and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut check = network_check("HTTP", port, None);
        check.timeout_ms = 200;
        let started = std::time::Instant::now();
        let err = probe(&rt, "t1", &check).await.unwrap_err();
        assert!(err.contains("no answer within 200 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
