//! A server with its DNS: the cluster's names from its own state, over real UDP on loopback;
//! the same records over Mesos-DNS's HTTP API (its own port, no token) and tepui's
//! `/v1/dns` routes (the API, with a token); its counters in `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tepui_server::{DnsSettings, FirstStart, Server, ServerConfig};
use tokio::net::UdpSocket;

async fn ask(server: SocketAddr, name: &str) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let q = q.to_vec().unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..20 {
        sock.send_to(&q, server).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(250), sock.recv_from(&mut buf)).await {
            return Message::from_vec(&buf[..n]).unwrap();
        }
    }
    panic!("no answer from {server} for {name}");
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_for_its_cluster_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "127.0.53.20".parse().unwrap();
    let mut cfg = ServerConfig::new("s1", dir.path());
    cfg.cluster_listen = SocketAddr::new(ip, 0);
    cfg.http_listen = SocketAddr::new(ip, 0);
    cfg.first_start = FirstStart::Bootstrap;
    cfg.dns = Some(DnsSettings {
        listen: SocketAddr::new(ip, 0),
        domain: "Cluster".into(),
        ttl: 7,
        upstreams: vec![],
        http_port: None,
    });
    let server = Server::start(cfg).await.unwrap();
    let dns = server.dns_addr().expect("dns is on");
    assert_eq!(dns.ip(), ip);
    // The records follow the state: the leader is known once this server leads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = ask(dns, "leader.cluster.").await;
        if addresses(&m) == vec![ip] {
            assert!(m.metadata.authoritative);
            assert_eq!(m.answers[0].ttl, 7);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader record: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(addresses(&ask(dns, "master.cluster.").await), vec![ip]);
    assert_eq!(addresses(&ask(dns, "master0.cluster.").await), vec![ip]);
    assert_eq!(addresses(&ask(dns, "ns1.cluster.").await), vec![ip]);
    assert_eq!(addresses(&ask(dns, "marathon.cluster.").await), vec![ip]);
    assert_eq!(
        ask(dns, "web.marathon.cluster.").await.metadata.response_code,
        ResponseCode::NXDomain
    );
    server.shutdown().await;
    // Its port is free again.
    UdpSocket::bind(dns).await.unwrap();
}

/// A server on `ip` bootstrapped with DNS on port 0 (and Mesos-DNS's HTTP API on port 0 when
/// `http`), and its management token.
async fn start(dir: &std::path::Path, ip: IpAddr, dns: bool) -> (Server, String) {
    let mut cfg = ServerConfig::new("s1", dir);
    cfg.cluster_listen = SocketAddr::new(ip, 0);
    cfg.http_listen = SocketAddr::new(ip, 0);
    cfg.first_start = FirstStart::Bootstrap;
    if dns {
        cfg.dns = Some(DnsSettings {
            listen: SocketAddr::new(ip, 0),
            domain: "mesos".into(),
            ttl: 5,
            upstreams: vec!["127.0.0.1:9".parse().unwrap()],
            http_port: Some(0),
        });
    }
    let server = Server::start(cfg).await.unwrap();
    let tepui_server::StartedAs::Bootstrapped { api_token, .. } = &server.started_as else {
        panic!("not bootstrapped")
    };
    let token = api_token.clone();
    (server, token)
}

/// One plain HTTP/1.1 GET with no credential: the status and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connected in time")
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Mesos-DNS answers small bodies; chunked ones come as one chunk here.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.split("\r\n").nth(1).unwrap_or("").to_string()
    } else {
        body.to_string()
    };
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_dns_http_api_and_the_lookup_route_answer_from_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "127.0.53.21".parse().unwrap();
    let (server, token) = start(dir.path(), ip, true).await;
    let dns = server.dns_addr().unwrap();
    let mesos_dns = server.dns_http_addr().expect("mesos-dns's api is on");
    assert_eq!(mesos_dns.ip(), ip);
    let api_port = server.http_addr.port();

    // Mesos-DNS's API, without a token: the leader once this server leads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(mesos_dns, "/v1/hosts/leader.mesos").await;
        assert_eq!(status, 200, "{body}");
        if json(&body) == serde_json::json!([{"host": "leader.mesos.", "ip": ip.to_string()}]) {
            break;
        }
        assert_eq!(
            json(&body),
            serde_json::json!([{"host": "", "ip": ""}]),
            "an unknown host"
        );
        assert!(tokio::time::Instant::now() < deadline, "no leader: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = http_get(mesos_dns, "/v1/services/_leader._tcp.mesos.").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        serde_json::json!([{
            "service": "_leader._tcp.mesos.", "host": "leader.mesos.",
            "ip": ip.to_string(), "port": api_port.to_string()
        }])
    );
    let (_, body) = http_get(mesos_dns, "/v1/services/_web._tcp.marathon.mesos").await;
    assert_eq!(
        json(&body),
        serde_json::json!([{"service": "", "host": "", "ip": "", "port": ""}])
    );
    let (status, body) = http_get(mesos_dns, "/v1/version").await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["Service"], "Mesos-DNS");
    assert_eq!(v["Version"], tepui_server::VERSION);
    let (status, body) = http_get(mesos_dns, "/v1/config").await;
    assert_eq!(status, 200);
    let c = json(&body);
    assert_eq!(c["Domain"], "mesos");
    assert_eq!(c["Port"], dns.port());
    assert_eq!(c["HttpPort"], mesos_dns.port());
    assert_eq!(c["Listener"], ip.to_string());
    assert_eq!(c["TTL"], 5);
    assert_eq!(c["Resolvers"], serde_json::json!(["127.0.0.1:9"]));
    assert_eq!(c["Masters"], serde_json::json!([server.advertised_http_addr()]));
    assert_eq!(c["DnsOn"], true);
    assert_eq!(c["HttpOn"], true);
    assert_eq!(http_get(mesos_dns, "/v1/hosts/leader.mesos/ports").await.0, 501);
    // Nothing of tepui's API is served there, with or without a token.
    for path in [
        "/v1/status",
        "/v1/health",
        "/metrics",
        "/v1/dns/records",
        "/v2/apps",
        "/v1/enumerate",
        "/",
    ] {
        assert_eq!(http_get(mesos_dns, path).await.0, 404, "{path} on mesos-dns's port");
    }

    // tepui's API: the answer DNS gives, from the same records, with a token only.
    let base = format!("http://{}", server.http_addr);
    let api = tepui_api::Client::new(&base).with_token(&token);
    let v = api.dns_lookup("leader.mesos", "a").await.unwrap();
    assert_eq!(v.rcode, "NOERROR");
    assert!(v.authoritative);
    assert_eq!(v.answers.len(), 1);
    assert_eq!(v.answers[0].data, ip.to_string());
    assert_eq!(v.answers[0].ttl, 5);
    let v = api.dns_lookup("_leader._tcp.mesos.", "SRV").await.unwrap();
    assert_eq!(v.answers[0].data, format!("0 1 {api_port} leader.mesos."));
    assert_eq!(v.additional[0].data, ip.to_string());
    let v = api.dns_lookup("web.marathon.mesos", "A").await.unwrap();
    assert_eq!(v.rcode, "NXDOMAIN");
    assert_eq!(v.authority[0].rtype, "SOA");
    let e = api.dns_lookup("example.com", "A").await.unwrap_err();
    assert!(e.to_string().contains("outside_domain"), "{e}");
    let e = api.dns_lookup("leader.mesos", "bogus").await.unwrap_err();
    assert!(e.to_string().contains("invalid_type"), "{e}");
    let all = api.dns_records().await.unwrap();
    assert_eq!(all.domain, "mesos.");
    assert!(all
        .records
        .iter()
        .any(|r| r.name == "master.mesos." && r.rtype == "A" && r.data == ip.to_string()));
    // Without a token: refused, as every route of the API.
    let anonymous = tepui_api::Client::new(&base).with_token("nobody.nothing");
    assert!(anonymous.dns_records().await.is_err());

    // Its counters: a query answered, one NXDOMAIN.
    assert!(!addresses(&ask(dns, "leader.mesos.").await).is_empty());
    assert_eq!(
        ask(dns, "nope.mesos.").await.metadata.response_code,
        ResponseCode::NXDomain
    );
    let metrics = reqwest_metrics(&base, &token).await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}")) as u64
    };
    assert!(value("tepui_dns_answered_total") >= 2);
    assert!(value("tepui_dns_nxdomain_total") >= 1);
    assert!(value("tepui_dns_queries_total{transport=\"udp\"}") >= 2);
    assert!(value("tepui_dns_rebuilds_total") >= 1);
    assert!(value("tepui_dns_names") >= 4);
    value("tepui_dns_forwarded_total");
    value("tepui_dns_cache_hits_total");
    value("tepui_dns_shed_total");
    value("tepui_dns_last_build_seconds");
    server.shutdown().await;
}

/// `/metrics` as Prometheus scrapes it, with a token.
async fn reqwest_metrics(base: &str, token: &str) -> String {
    let api = tepui_api::Client::new(base).with_token(token);
    let resp = api.stream("/metrics").await.unwrap();
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_dns_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path(), "127.0.53.22".parse().unwrap(), false).await;
    assert!(server.dns_addr().is_none() && server.dns_http_addr().is_none());
    let api = tepui_api::Client::new(&format!("http://{}", server.http_addr)).with_token(&token);
    let e = api.dns_lookup("leader.mesos", "A").await.unwrap_err();
    assert!(e.to_string().contains("dns_off"), "{e}");
    let metrics = reqwest_metrics(&format!("http://{}", server.http_addr), &token).await;
    assert!(!metrics.contains("tepui_dns_"), "{metrics}");
    server.shutdown().await;
}
