//! What the DNS tests share: a cluster state, a DNS client, and an upstream resolver of their own
//! on loopback.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tepui_state::testing::state_with_agents;
use tepui_state::{HealthCheckDef, PortDef, Role, State, TaskDef, TaskRecord, TaskState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Agents a1, a2 at 10.1.0.1 and 10.1.0.2 (addresses in the records only: nothing is sent
/// there); servers 10 and 11 at 10.0.0.10 and 10.0.0.11, API on 5050.
pub fn cluster() -> State {
    let mut s = state_with_agents(2, 8192);
    for (id, n) in s.nodes.iter_mut() {
        n.agent.as_mut().unwrap().http_addr = format!("10.1.0.{id}:5051");
    }
    for id in [10u64, 11] {
        let mut n = s.nodes[&1].clone();
        n.id = id;
        n.name = format!("s{id}");
        n.role = Role::Server;
        n.agent = None;
        n.cluster_addr = format!("10.0.0.{id}:5052");
        n.http_addr = format!("10.0.0.{id}:5050");
        s.nodes.insert(id, n);
    }
    s
}

/// A running instance of app `app` on `agent` with host ports `ports`.
pub fn app_task(s: &mut State, id: &str, app: &str, agent: u64, ports: &[u16]) {
    let def = TaskDef {
        ports: ports
            .iter()
            .map(|p| PortDef {
                name: None,
                host_port: *p,
                container_port: 0,
                protocol: "tcp".into(),
            })
            .collect(),
        ..TaskDef::default()
    };
    let mut t = TaskRecord::staging(id, app, agent, def, 1);
    t.state = TaskState::TaskRunning;
    t.framework_id = "tepui-services".into();
    t.labels = BTreeMap::from([("tepui.app".to_string(), app.to_string())]);
    s.tasks.insert(id.into(), t);
}

/// A TCP health check, for tasks that must be healthy to be found.
pub fn health_check() -> HealthCheckDef {
    HealthCheckDef {
        protocol: "TCP".into(),
        path: None,
        port: Some(31000),
        command: None,
        grace_period_ms: 0,
        interval_ms: 1000,
        timeout_ms: 1000,
        max_consecutive_failures: 3,
        delay_ms: 0,
    }
}

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> (u16, Vec<u8>) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    (id, m.to_vec().unwrap())
}

/// Asks `server` over UDP from `from`, asking again every 100 ms from a new port (as resolvers
/// do: which of the server's sockets gets a datagram depends on the client's address and port)
/// while still listening on the earlier ones, for at most 5 s.
pub async fn ask_udp_from(
    server: SocketAddr,
    from: IpAddr,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> Message {
    let (id, q) = query(name, qtype, edns);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    // Aborted when dropped: every attempt's listener ends with the answer.
    let mut listeners = tokio::task::JoinSet::new();
    loop {
        let sock = UdpSocket::bind((from, 0)).await.unwrap();
        sock.send_to(&q, server).await.unwrap();
        let tx = tx.clone();
        listeners.spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                if let Ok(m) = Message::from_vec(&buf[..n]) {
                    if m.metadata.id == id {
                        let _ = tx.send(m).await;
                        return;
                    }
                }
            }
        });
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            return m;
        }
        assert!(Instant::now() < deadline, "no answer from {server} to {name} {qtype}");
    }
}

pub async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    ask_udp_from(server, ip("127.0.0.1"), name, qtype, None).await
}

/// Writes one length-prefixed message on `stream`.
pub async fn send_tcp(stream: &mut TcpStream, msg: &[u8]) {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await.unwrap();
}

/// Reads one length-prefixed message; none when the connection closed.
pub async fn read_tcp(stream: &mut TcpStream) -> Option<Message> {
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; len as usize];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

pub async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let (id, q) = query(name, qtype, None);
    send_tcp(&mut stream, &q).await;
    let m = read_tcp(&mut stream).await.expect("an answer over tcp");
    assert_eq!(m.metadata.id, id);
    m
}

pub fn addresses(m: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// `(target, port)` of every SRV answer, sorted.
pub fn targets(m: &Message) -> Vec<(String, u16)> {
    let mut t: Vec<(String, u16)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
            _ => None,
        })
        .collect();
    t.sort();
    t
}

/// Polls `f` until it holds, at most `within`.
pub async fn wait_for<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An upstream resolver for the tests, over UDP and TCP on one loopback address:
/// `nx.example.` is NXDOMAIN (SOA minimum 30), `big.example.` has 100 addresses (truncated over
/// UDP), every other name has one address, 192.0.2.x, for 300 s. `silent` answers nothing.
pub struct Upstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_answer(req: &Message, udp_limit: Option<usize>) -> Vec<u8> {
    let q = req.queries[0].clone();
    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.clone());
    let name = q.name().to_ascii().to_ascii_lowercase();
    if name == "nx.example." {
        m.metadata.response_code = ResponseCode::NXDomain;
        let zone = Name::from_ascii("example.").unwrap();
        m.add_authority(Record::from_rdata(
            zone.clone(),
            300,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 60, 60, 60, 30)),
        ));
    } else if q.query_type() == RecordType::A {
        let count = if name == "big.example." { 100 } else { 1 };
        let last = name.bytes().fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b)).max(1);
        for i in 0..count {
            let a = if count == 1 {
                [192, 0, 2, last]
            } else {
                [198, 51, 100, i as u8]
            };
            m.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A(a.into()))));
        }
    }
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    let bytes = m.to_vec().unwrap();
    match udp_limit {
        Some(limit) if bytes.len() > limit => {
            m.answers.clear();
            m.metadata.truncation = true;
            m.to_vec().unwrap()
        }
        _ => bytes,
    }
}

impl Upstream {
    pub async fn start(at: IpAddr, silent: bool) -> Upstream {
        let udp = Arc::new(UdpSocket::bind((at, 0)).await.unwrap());
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let counter = udp_queries.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if silent {
                    continue;
                }
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let limit = req.edns.as_ref().map_or(512, |e| e.max_payload() as usize);
                let _ = udp.send_to(&upstream_answer(&req, Some(limit)), peer).await;
            }
        });
        let counter = tcp_queries.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    while let Some(req) = read_tcp(&mut stream).await {
                        counter.fetch_add(1, Ordering::Relaxed);
                        if silent {
                            continue;
                        }
                        send_tcp(&mut stream, &upstream_answer(&req, None)).await;
                    }
                });
            }
        });
        Upstream {
            addr,
            udp_queries,
            tcp_queries,
            tasks: vec![udp_task, tcp_task],
        }
    }
}
