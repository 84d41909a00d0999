//! A server with its DNS: the cluster's names from its own state, over real UDP on loopback.

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
