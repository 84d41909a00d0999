//! The DNS server with real packets over UDP and TCP on loopback: the cluster's names from a
//! state built here, forwarding to an upstream resolver the test runs, bad input and floods.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tepui_dns::{Config, Dns, ServerConfig};
use tepui_node::testing::{local_node, Local};
use tepui_state::{Command, NodeStatus, State, TaskState, TaskUpdate};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

fn server_config(at: &str, upstreams: Vec<SocketAddr>) -> ServerConfig {
    let mut c = ServerConfig::new(format!("{at}:0").parse().unwrap(), upstreams);
    c.upstream_timeout = Duration::from_millis(300);
    c
}

/// A node over `state` led by server 10, and its DNS on `at`.
async fn start(state: State, at: &str, server: ServerConfig) -> (Dns, Local) {
    let (node, local) = local_node(state);
    local.set_leader(Some(10), 2);
    let cfg = Config::new("mesos", 5, vec![ip(at)]);
    let dns = Dns::start(node, cfg, server).await.unwrap();
    (dns, local)
}

fn web_cluster() -> State {
    let mut s = cluster();
    app_task(&mut s, "prod_web.1", "/prod/web", 1, &[31000, 31001]);
    app_task(&mut s, "prod_web.2", "/prod/web", 2, &[31002, 31003]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_names_over_udp_and_tcp() {
    let (dns, _local) = start(web_cluster(), "127.0.53.1", server_config("127.0.53.1", vec![])).await;
    let at = dns.server.local_addr();
    for tcp in [false, true] {
        let ask = |name: &'static str, t: RecordType| async move {
            if tcp {
                ask_tcp(at, name, t).await
            } else {
                ask_udp(at, name, t).await
            }
        };
        let m = ask("web-prod.marathon.mesos.", RecordType::A).await;
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&m), vec![ip("10.1.0.1"), ip("10.1.0.2")]);
        assert!(m.answers.iter().all(|r| r.ttl == 5));
        assert_eq!(
            addresses(&ask("web-prod.marathon.slave.mesos.", RecordType::A).await),
            vec![ip("10.1.0.1"), ip("10.1.0.2")]
        );

        let m = ask("_web-prod._tcp.marathon.mesos.", RecordType::SRV).await;
        let mut ports: Vec<u16> = targets(&m).iter().map(|t| t.1).collect();
        ports.sort();
        assert_eq!(ports, vec![31000, 31001, 31002, 31003], "tcp {tcp}");
        assert!(targets(&m).iter().all(|(t, _)| t.ends_with(".marathon.slave.mesos.")));
        // Each target resolves, in the additional section and by itself.
        assert_eq!(m.additionals.len(), 2);
        let (target, _) = &targets(&m)[0];
        let target: &'static str = Box::leak(target.clone().into_boxed_str());
        assert_eq!(addresses(&ask(target, RecordType::A).await).len(), 1);
        assert_eq!(
            targets(&ask("_web-prod._udp.marathon.slave.mesos.", RecordType::SRV).await).len(),
            4
        );

        let m = ask("nothing.marathon.mesos.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let m = ask("_nothing._tcp.marathon.mesos.", RecordType::SRV).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

        let m = ask("mesos.", RecordType::NS).await;
        let RData::NS(ns) = &m.answers[0].data else {
            panic!("no NS: {m:?}")
        };
        assert_eq!(ns.0.to_ascii(), "ns1.mesos.");
        assert_eq!(
            addresses(&ask("ns1.mesos.", RecordType::A).await),
            vec![ip("127.0.53.1")]
        );
        let m = ask("mesos.", RecordType::SOA).await;
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);

        assert_eq!(
            addresses(&ask("leader.mesos.", RecordType::A).await),
            vec![ip("10.0.0.10")]
        );
        let m = ask("_leader._tcp.mesos.", RecordType::SRV).await;
        assert_eq!(targets(&m), vec![("leader.mesos.".to_string(), 5050)]);
        assert_eq!(
            addresses(&ask("master.mesos.", RecordType::A).await),
            vec![ip("10.0.0.10"), ip("10.0.0.11")]
        );
        assert_eq!(
            addresses(&ask("master1.mesos.", RecordType::A).await),
            vec![ip("10.0.0.11")]
        );
        assert_eq!(
            addresses(&ask("slave.mesos.", RecordType::A).await),
            vec![ip("10.1.0.1"), ip("10.1.0.2")]
        );
        // As Mesos-DNS: one target, `slave.mesos.`, per agent port.
        assert_eq!(
            targets(&ask("_slave._tcp.mesos.", RecordType::SRV).await),
            vec![("slave.mesos.".to_string(), 5051)]
        );
        assert_eq!(
            addresses(&ask("marathon.mesos.", RecordType::A).await),
            vec![ip("10.0.0.10")]
        );
    }
}

fn status(task: &str, state: TaskState, healthy: Option<bool>, n: u64) -> Command {
    Command::TaskStatus {
        task_id: task.into(),
        update: TaskUpdate {
            uuid: format!("u{n}"),
            state,
            reason: None,
            message: String::new(),
            exit_code: None,
            signal: None,
            at: n,
            healthy,
            seq: None,
            container_ip: None,
        },
    }
}

/// Asks until `check` holds for the answer: at most a second, as the issue wants.
async fn within_a_second(at: SocketAddr, name: &'static str, what: &str, check: impl Fn(&Message) -> bool) {
    let started = Instant::now();
    wait_for(Duration::from_secs(1), what, || async {
        check(&ask_udp(at, name, RecordType::A).await)
    })
    .await;
    eprintln!("{what}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_the_state_within_a_second() {
    let mut s = web_cluster();
    app_task(&mut s, "api.1", "/api", 1, &[31005]);
    s.tasks.get_mut("api.1").unwrap().state = TaskState::TaskStaging;
    s.tasks.get_mut("api.1").unwrap().def.health_checks = vec![health_check()];
    let (dns, local) = start(s, "127.0.53.2", server_config("127.0.53.2", vec![])).await;
    let at = dns.server.local_addr();
    let nx = |m: &Message| m.metadata.response_code == ResponseCode::NXDomain;
    assert!(nx(&ask_udp(at, "api.marathon.mesos.", RecordType::A).await));

    // Running, not yet healthy: still not found; healthy: found.
    local.apply(&status("api.1", TaskState::TaskRunning, None, 1));
    local.apply(&status("api.1", TaskState::TaskRunning, Some(true), 2));
    within_a_second(at, "api.marathon.mesos.", "a task that became healthy is found", |m| {
        addresses(m) == vec![ip("10.1.0.1")]
    })
    .await;
    local.apply(&status("api.1", TaskState::TaskRunning, Some(false), 3));
    within_a_second(at, "api.marathon.mesos.", "an unhealthy task is gone", nx).await;

    // One instance killed: one address left; its agent lost: none.
    local.apply(&status("prod_web.1", TaskState::TaskKilled, None, 4));
    within_a_second(at, "web-prod.marathon.mesos.", "a killed task is gone", |m| {
        addresses(m) == vec![ip("10.1.0.2")]
    })
    .await;
    local.apply(&Command::SetNodeStatus {
        id: 2,
        status: NodeStatus::Lost,
        now: 5,
    });
    within_a_second(at, "web-prod.marathon.mesos.", "a lost agent's tasks are gone", nx).await;
    within_a_second(at, "slave.mesos.", "a lost agent is no slave", |m| {
        addresses(m) == vec![ip("10.1.0.1")]
    })
    .await;

    // A new leader.
    local.set_leader(Some(11), 3);
    within_a_second(at, "leader.mesos.", "the new leader", |m| {
        addresses(m) == vec![ip("10.0.0.11")]
    })
    .await;
    assert!(dns.records.stats().rebuilds.load(Ordering::Relaxed) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_go_upstream_and_are_cached() {
    let upstream = Upstream::start(ip("127.0.54.1"), false).await;
    let (dns, _local) = start(
        cluster(),
        "127.0.53.3",
        server_config("127.0.53.3", vec![upstream.addr]),
    )
    .await;
    let at = dns.server.local_addr();

    let m = ask_udp(at, "www.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative && m.metadata.recursion_available);
    assert_eq!(addresses(&m).len(), 1);
    assert_eq!(m.queries[0].name().to_ascii(), "www.example.");
    let first = upstream.udp_queries.load(Ordering::Relaxed);
    assert_eq!(first, 1);
    // From the cache, the TTL counting down; over TCP too.
    let again = ask_udp(at, "WWW.example.", RecordType::A).await;
    assert_eq!(addresses(&again), addresses(&m));
    assert!(again.answers[0].ttl <= 300);
    assert_eq!(
        addresses(&ask_tcp(at, "www.example.", RecordType::A).await),
        addresses(&m)
    );
    assert_eq!(upstream.udp_queries.load(Ordering::Relaxed), 1);

    // NXDOMAIN comes back as such, and is cached too.
    let m = ask_udp(at, "nx.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    ask_udp(at, "nx.example.", RecordType::A).await;
    assert_eq!(upstream.udp_queries.load(Ordering::Relaxed), 2);

    // Too big for UDP: truncated to a UDP client, whole over TCP (asked upstream over TCP).
    let m = ask_udp_from(at, ip("127.0.0.1"), "big.example.", RecordType::A, Some(1232)).await;
    assert!(m.metadata.truncation);
    let m = ask_tcp(at, "big.example.", RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 100);
    assert!(upstream.tcp_queries.load(Ordering::Relaxed) >= 1);
    assert_eq!(dns.server.cached(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_when_no_upstream_answers() {
    let silent = Upstream::start(ip("127.0.54.2"), true).await;
    let (dns, _local) = start(cluster(), "127.0.53.4", server_config("127.0.53.4", vec![silent.addr])).await;
    let at = dns.server.local_addr();
    let started = Instant::now();
    let m = ask_udp(at, "www.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(silent.udp_queries.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        ask_tcp(at, "www.example.", RecordType::A).await.metadata.response_code,
        ResponseCode::ServFail
    );
    // The domain's own names do not wait on upstreams.
    assert_eq!(
        ask_udp(at, "master.mesos.", RecordType::A).await.metadata.response_code,
        ResponseCode::NoError
    );
    // No upstream at all.
    let (dns, _local) = start(cluster(), "127.0.53.5", server_config("127.0.53.5", vec![])).await;
    let m = ask_udp(dns.server.local_addr(), "www.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

/// What `sock` receives within `wait`, if anything.
async fn receive(sock: &UdpSocket, wait: Duration) -> Option<Message> {
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_packets() {
    let (dns, _local) = start(web_cluster(), "127.0.53.6", server_config("127.0.53.6", vec![])).await;
    let at = dns.server.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (id, good) = query("web-prod.marathon.mesos.", RecordType::A, None);

    // Less than a header, and responses: no answer (a sleep only to show that none comes).
    for junk in [&good[..0], &good[..1], &good[..11]] {
        sock.send_to(junk, at).await.unwrap();
    }
    let mut response = good.clone();
    response[2] |= 0x80;
    sock.send_to(&response, at).await.unwrap();
    assert!(receive(&sock, Duration::from_millis(300)).await.is_none());

    // Cut short: FORMERR.
    sock.send_to(&good[..good.len() - 3], at).await.unwrap();
    let m = receive(&sock, Duration::from_secs(5)).await.unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (id, ResponseCode::FormErr));

    // Oversized: REFUSED.
    let mut big = good.clone();
    big.resize(5000, 0);
    sock.send_to(&big, at).await.unwrap();
    let m = receive(&sock, Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // Random bytes: answered with an error or dropped, and the server goes on.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000usize {
        let mut junk = Vec::new();
        for _ in 0..(i % 200) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(seed as u8);
        }
        sock.send_to(&junk, at).await.unwrap();
    }
    assert_eq!(
        addresses(&ask_udp(at, "web-prod.marathon.mesos.", RecordType::A).await).len(),
        2
    );

    // TCP: an oversized query is refused, a cut one waits for the rest, garbage closes.
    let mut stream = TcpStream::connect(at).await.unwrap();
    send_tcp(&mut stream, &big).await;
    assert_eq!(
        read_tcp(&mut stream).await.unwrap().metadata.response_code,
        ResponseCode::Refused
    );
    send_tcp(&mut stream, &good).await;
    assert_eq!(addresses(&read_tcp(&mut stream).await.unwrap()).len(), 2);
    send_tcp(&mut stream, &[1, 2, 3]).await;
    assert!(read_tcp(&mut stream).await.is_none());
    let mut cut = TcpStream::connect(at).await.unwrap();
    cut.write_all(&[0, 100, 1, 2, 3]).await.unwrap();
    drop(cut);
    assert_eq!(
        addresses(&ask_tcp(at, "web-prod.marathon.mesos.", RecordType::A).await).len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_names_keep_the_cache_bounded() {
    let upstream = Upstream::start(ip("127.0.54.3"), false).await;
    let mut cfg = server_config("127.0.53.7", vec![upstream.addr]);
    cfg.cache_capacity = 1000;
    let (dns, _local) = start(cluster(), "127.0.53.7", cfg).await;
    let at = dns.server.local_addr();
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut answered = 0usize;
    let mut nxdomain = 0usize;
    // In windows of 100 outstanding queries, asked again when lost.
    let names: Vec<String> = (0..10_000)
        .map(|i| {
            let r: u64 = rand::random();
            if i % 2 == 0 {
                format!("r{r:x}.example.")
            } else {
                format!("r{r:x}.marathon.mesos.")
            }
        })
        .collect();
    for window in names.chunks(100) {
        let mut waiting: std::collections::HashMap<u16, Vec<u8>> =
            window.iter().map(|n| query(n, RecordType::A, None)).collect();
        for _ in 0..5 {
            for q in waiting.values() {
                sock.send_to(q, at).await.unwrap();
            }
            while let Some(m) = receive(&sock, Duration::from_millis(500)).await {
                if waiting.remove(&m.metadata.id).is_some() {
                    answered += 1;
                    nxdomain += (m.metadata.response_code == ResponseCode::NXDomain) as usize;
                }
                if waiting.is_empty() {
                    break;
                }
            }
            if waiting.is_empty() {
                break;
            }
        }
        assert!(dns.server.cached() <= 1000);
    }
    assert_eq!(answered, 10_000);
    assert_eq!(nxdomain, 5000);
    assert_eq!(dns.server.cached(), 1000);
    assert_eq!(addresses(&ask_udp(at, "master.mesos.", RecordType::A).await).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_source_does_not_stop_answers_to_another() {
    let (dns, _local) = start(web_cluster(), "127.0.53.8", server_config("127.0.53.8", vec![])).await;
    let at = dns.server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    // The flood: as fast as one thread sends, until the other client is done (at most
    // 50,000,000 queries or 30 s); it reads nothing back. It says whether it was stopped.
    let flooding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = StdUdpSocket::bind("127.0.55.1:0").unwrap();
            let (_, q) = query("web-prod.marathon.mesos.", RecordType::A, None);
            let (_, nx) = query("nope.marathon.mesos.", RecordType::A, None);
            let started = std::time::Instant::now();
            let mut sent = 0u64;
            while sent < 50_000_000 && started.elapsed() < Duration::from_secs(30) {
                if stop.load(Ordering::Relaxed) {
                    return (sent, true);
                }
                let _ = sock.send_to(if sent.is_multiple_of(2) { &q } else { &nx }, at);
                sent += 1;
            }
            (sent, false)
        })
    };
    // The flood is on before the other client asks.
    let stats = &dns.records.stats().udp_queries;
    wait_for(Duration::from_secs(10), "the flood reaches the server", || async {
        stats.load(Ordering::Relaxed) > 20_000
    })
    .await;
    // Another client gets its answers, each within 5 s (asking again from a new port every
    // 100 ms: the flood fills the queue of the one socket its address and port hash to; the
    // others are not in its way).
    let started = Instant::now();
    let other: IpAddr = ip("127.0.55.2");
    for _ in 0..50 {
        let m = ask_udp_from(at, other, "web-prod.marathon.mesos.", RecordType::A, None).await;
        assert_eq!(addresses(&m).len(), 2);
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (sent, stopped) = flooding.join().unwrap();
    eprintln!("50 answers in {took:?} while the flood sent {sent}");
    assert!(
        stopped,
        "the flood ended before the other client had its answers ({took:?})"
    );
    // The server still answers, and has counted what it read.
    assert_eq!(
        addresses(&ask_udp(at, "web-prod.marathon.mesos.", RecordType::A).await).len(),
        2
    );
    assert!(stats.load(Ordering::Relaxed) > 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_the_threads_at_once() {
    let (dns, _local) = start(web_cluster(), "127.0.53.9", server_config("127.0.53.9", vec![])).await;
    let at = dns.server.local_addr();
    assert_eq!(
        addresses(&ask_udp(at, "web-prod.marathon.mesos.", RecordType::A).await).len(),
        2
    );
    let stopped = tokio::task::spawn_blocking(move || drop(dns));
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stopped within 5 s")
        .unwrap();
    // The port is free again.
    UdpSocket::bind(at).await.unwrap();
}
