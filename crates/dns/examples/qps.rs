//! A rough load test of the DNS server, for when dnsperf is not at hand: the server in this
//! process on 127.0.0.1 with the records of 100 apps of 3 instances, and one client thread
//! keeping `WINDOW` queries outstanding for `SECONDS`, as one dnsperf client does.
//!
//! `cargo run --release -p tepui-dns --example qps [domain|forwarded|mixed] [seconds] [window]`

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tepui_dns::{Config, Dns, ServerConfig};
use tepui_state::{PortDef, State, TaskDef, TaskRecord, TaskState};

fn state() -> State {
    let mut s = tepui_state::testing::state_with_agents(3, 65536);
    for (id, n) in s.nodes.iter_mut() {
        n.agent.as_mut().unwrap().http_addr = format!("10.1.0.{id}:5051");
    }
    for app in 0..100 {
        for i in 0..3u64 {
            let id = format!("app{app}.{i}");
            let def = TaskDef {
                ports: vec![PortDef {
                    name: None,
                    host_port: 31000 + (app % 10) as u16,
                    container_port: 0,
                    protocol: "tcp".into(),
                }],
                ..TaskDef::default()
            };
            let mut t = TaskRecord::staging(&id, format!("/app{app}"), i + 1, def, 1);
            t.state = TaskState::TaskRunning;
            t.framework_id = "tepui-services".into();
            t.labels = BTreeMap::from([("tepui.app".to_string(), format!("/app{app}"))]);
            s.tasks.insert(id, t);
        }
    }
    s
}

/// A stand-in upstream on 127.0.0.2: one address per name, for an hour (so forwarded names
/// are answered from the cache after the first time).
fn upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
            m.metadata.recursion_available = true;
            m.add_queries(req.queries.iter().cloned());
            m.add_answer(hickory_proto::rr::Record::from_rdata(
                req.queries[0].name().clone(),
                3600,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 1].into())),
            ));
            let _ = sock.send_to(&m.to_vec().unwrap(), peer);
        }
    });
    addr
}

fn queries(kind: &str) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    if kind != "forwarded" {
        for app in 0..100 {
            names.push((format!("app{app}.marathon.mesos."), RecordType::A));
            names.push((format!("_app{app}._tcp.marathon.mesos."), RecordType::SRV));
        }
    }
    if kind != "domain" {
        for i in 0..200 {
            names.push((format!("host{i}.example.com."), RecordType::A));
        }
    }
    names
        .into_iter()
        .map(|(n, t)| {
            let mut m = Message::new(0, MessageType::Query, OpCode::Query);
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(Name::from_ascii(&n).unwrap(), t));
            m.to_vec().unwrap()
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).cloned().unwrap_or_else(|| "domain".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let window: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dns = rt.block_on(async {
        let (node, _local) = tepui_node::testing::local_node(state());
        let cfg = Config::new("mesos", 60, vec!["127.0.0.1".parse().unwrap()]);
        Dns::start(
            node,
            cfg,
            ServerConfig::new("127.0.0.1:0".parse().unwrap(), vec![upstream()]),
        )
        .await
        .unwrap()
    });
    let server = dns.server.local_addr();
    let qs = queries(&kind);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut sent_at = vec![Instant::now(); 65536];
    let mut next = 0usize;
    let mut send = |sock: &UdpSocket, sent_at: &mut Vec<Instant>| {
        let id = (next % 65536) as u16;
        let mut q = qs[next % qs.len()].clone();
        q[..2].copy_from_slice(&id.to_be_bytes());
        sent_at[id as usize] = Instant::now();
        let _ = sock.send(&q);
        next += 1;
    };
    // Warm up the cache and the records.
    for _ in 0..qs.len() {
        send(&sock, &mut sent_at);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut answered, mut timeouts) = (0u64, 0u64);
    let mut latency = Duration::ZERO;
    for _ in 0..window {
        send(&sock, &mut sent_at);
    }
    while Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 => {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                latency += sent_at[id as usize].elapsed();
                answered += 1;
                send(&sock, &mut sent_at);
            }
            Ok(_) => {}
            Err(_) => {
                // Lost: fill the window again.
                timeouts += 1;
                for _ in 0..window {
                    send(&sock, &mut sent_at);
                }
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "{kind}: {answered} answers in {took:.1} s: {:.0} queries/s, mean latency {:.3} ms, {timeouts} windows lost, window {window}",
        answered as f64 / took,
        latency.as_secs_f64() * 1000.0 / answered.max(1) as f64
    );
    drop(dns);
}
