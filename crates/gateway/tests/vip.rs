//! VIP rules in the real kernel: connections from this host to a VIP reach echo servers on
//! loopback through the DNAT rules, follow the backends as they change, and are refused at once
//! when there is nothing behind the VIP.
//!
//! Each test loads its rules under a chain prefix of its own and a VIP address no other test
//! uses, so tests run at once with each other and with an agent on the same host; a guard takes
//! the rules out however the test ends. Traffic goes to loopback only, or to VIPs that these
//! rules translate to loopback or refuse. Without `iptables` the tests say so and pass (and
//! without `ip`, the one from a container).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tepui_gateway::vip::kernel;
use tepui_gateway::vip::rules::Chains;
use tepui_gateway::{Vip, VipBackend};

/// Takes a prefix's rules out when dropped.
struct Loaded(Chains);

impl Loaded {
    fn new(prefix: &str) -> Loaded {
        let chains = Chains::new(prefix).unwrap();
        // Left over by an earlier run that was killed.
        kernel::remove(&chains).unwrap();
        Loaded(chains)
    }

    fn apply(&self, vips: &[Vip]) {
        kernel::apply(vips, &self.0).unwrap_or_else(|e| panic!("apply: {e}"));
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Err(e) = kernel::remove(&self.0) {
            eprintln!("could not remove the rules of {}: {e}", self.0.prefix());
        }
    }
}

fn no_iptables() -> bool {
    if kernel::available() {
        return false;
    }
    eprintln!("skipped: iptables-save and iptables-restore are not installed");
    true
}

/// A TCP server on `ip` that answers each line with `{name}:{line}`.
fn tcp_echo(ip: &str, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() {
                    let _ = stream.write_all(format!("{name}:{line}").as_bytes());
                }
            });
        }
    });
    addr
}

/// A UDP server on `ip` that answers each datagram with `{name}:{datagram}`.
fn udp_echo(ip: &str, name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = socket.send_to(reply.as_bytes(), from);
        }
    });
    addr
}

/// Sends `ping` over a new connection to `to`; the answer, or why there is none.
fn ask(to: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"ping\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

fn vip(ip: &str, port: u16, protocol: &str, backends: &[(&str, SocketAddr)]) -> Vip {
    Vip {
        name: Some("/test".into()),
        ip: ip.parse().unwrap(),
        port,
        protocol: protocol.into(),
        apps: vec!["/test".into()],
        backends: backends
            .iter()
            .map(|(task_id, addr)| VipBackend {
                task_id: task_id.to_string(),
                addr: *addr,
                agent_id: 0,
                container: None,
            })
            .collect(),
    }
}

/// The lines of `iptables-save` that mention `prefix`'s chains.
fn saved_lines_of(prefix: &str) -> Vec<String> {
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("{prefix}-VIP")) || l.contains(&format!("tepui-vips:{prefix}\"")))
        .map(str::to_string)
        .collect()
}

/// Connecting to `to` is refused, at once.
fn assert_refused_at_once(to: SocketAddr) {
    let started = Instant::now();
    let err = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect_err("the connection went through");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_vip_reaches_its_backends_follows_them_and_refuses_when_there_are_none() {
    if no_iptables() {
        return;
    }
    let loaded = Loaded::new("TVIPTCP");
    let a = tcp_echo("127.0.61.1", "a");
    let b = tcp_echo("127.0.61.2", "b");
    let to: SocketAddr = "198.19.254.1:7001".parse().unwrap();

    loaded.apply(&[vip("198.19.254.1", 7001, "tcp", &[("a", a)])]);
    assert_eq!(ask(to).unwrap(), "a:ping");

    // Both backends get connections (each has a half; 200 tries miss one with odds of 2^-199).
    loaded.apply(&[vip("198.19.254.1", 7001, "tcp", &[("a", a), ("b", b)])]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        seen.insert(ask(to).unwrap());
        if seen.len() == 2 || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(seen, BTreeSet::from(["a:ping".to_string(), "b:ping".to_string()]));

    // Loading again changes nothing and adds no second jump.
    let before = saved_lines_of("TVIPTCP");
    loaded.apply(&[vip("198.19.254.1", 7001, "tcp", &[("a", a), ("b", b)])]);
    assert_eq!(saved_lines_of("TVIPTCP"), before);
    let jumps = before.iter().filter(|l| l.contains("tepui-vips:TVIPTCP")).count();
    assert_eq!(jumps, 6, "{before:#?}");

    // New connections go to the backend that is left only.
    loaded.apply(&[vip("198.19.254.1", 7001, "tcp", &[("b", b)])]);
    for _ in 0..20 {
        assert_eq!(ask(to).unwrap(), "b:ping");
    }

    // No backends, then no VIP at all: refused by the guard, not sent anywhere.
    loaded.apply(&[vip("198.19.254.1", 7001, "tcp", &[])]);
    assert_refused_at_once(to);
    loaded.apply(&[]);
    assert_refused_at_once(to);
    assert!(
        !saved_lines_of("TVIPTCP").iter().any(|l| l.contains("TVIPTCP-VIP-")),
        "the VIP's chain is left"
    );

    // Taken out: nothing of the prefix is left.
    kernel::remove(&loaded.0).unwrap();
    assert_eq!(saved_lines_of("TVIPTCP"), Vec::<String>::new());
    kernel::remove(&loaded.0).unwrap();
}

#[test]
fn a_udp_vip_reaches_its_backend() {
    if no_iptables() {
        return;
    }
    let loaded = Loaded::new("TVIPUDP");
    let backend = udp_echo("127.0.61.3", "u");
    loaded.apply(&[vip("198.19.254.2", 7002, "udp", &[("u", backend)])]);
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket.connect("198.19.254.2:7002").unwrap();
    // Datagrams may be lost: ask again until an answer comes, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    let answer = loop {
        socket.send(b"ping").unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            break String::from_utf8_lossy(&buf[..n]).to_string();
        }
        assert!(Instant::now() < deadline, "no answer through the VIP");
    };
    assert_eq!(answer, "u:ping");
}

/// A network namespace behind a veth pair, as a bridge container is: the host's side has
/// `route_localnet`, as tepui-runtime gives its bridge, and the rule tepui-runtime puts with it
/// that keeps containers off the host's loopback services. All of it goes on drop.
struct Container {
    ns: String,
    host_side: String,
    /// The rule keeping the container off loopback, as `iptables -D` takes it.
    off_loopback: Vec<String>,
    /// The host's address on the veth.
    host_addr: String,
    /// The container's address.
    addr: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().unwrap()
}

fn must(what: &str, out: Output) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Container {
    /// None where `ip` is missing. Names and addresses from the process id, so two runs of the
    /// test at once do not meet.
    fn start() -> Option<Container> {
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipped: the ip command is not installed");
            return None;
        }
        // Two of this process's tests may have one each.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2;
        let pid = std::process::id();
        let c = Container {
            ns: format!("tvip{pid}{n}"),
            host_side: format!("tvh{pid}{n}"),
            off_loopback: Vec::new(),
            host_addr: String::new(),
            addr: String::new(),
        };
        let peer = format!("tvc{pid}{n}");
        let block = ((pid * 2 + n) % 64) * 4;
        let host_addr = format!("10.214.61.{}", block + 1);
        let inside = ["netns", "exec", c.ns.as_str()];
        let run_inside = |args: &[&str]| ip(&[&inside[..], &["ip"], args].concat());
        must("netns", ip(&["netns", "add", &c.ns]));
        must(
            "veth",
            ip(&["link", "add", &c.host_side, "type", "veth", "peer", "name", &peer]),
        );
        must("move", ip(&["link", "set", &peer, "netns", &c.ns]));
        must(
            "address",
            ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &c.host_side]),
        );
        must("up", ip(&["link", "set", &c.host_side, "up"]));
        let ns_addr = format!("10.214.61.{}/30", block + 2);
        must("address inside", run_inside(&["addr", "add", &ns_addr, "dev", &peer]));
        must("up inside", run_inside(&["link", "set", &peer, "up"]));
        must(
            "route inside",
            run_inside(&["route", "add", "default", "via", &host_addr]),
        );
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{}/route_localnet", c.host_side), "1").unwrap();
        let mut c = c;
        c.host_addr = host_addr;
        c.addr = format!("10.214.61.{}", block + 2);
        c.off_loopback = [
            "INPUT",
            "-i",
            &c.host_side,
            "-d",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "DROP",
        ]
        .map(str::to_string)
        .to_vec();
        let mut add = vec!["-w".to_string(), "10".into(), "-A".into()];
        add.extend(c.off_loopback.iter().cloned());
        must("off loopback", Command::new("iptables").args(&add).output().unwrap());
        Some(c)
    }

    /// Sends `ping` from inside to `to` over TCP: the answer, or what went wrong.
    fn ask(&self, to: SocketAddr) -> Result<String, String> {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} && echo ping >&3 && head -n 1 <&3",
            to.ip(),
            to.port()
        );
        let out = ip(&["netns", "exec", &self.ns, "timeout", "5", "bash", "-c", &script]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.off_loopback.is_empty() {
            let mut delete = vec!["-w".to_string(), "10".into(), "-D".into()];
            delete.extend(self.off_loopback.iter().cloned());
            let _ = Command::new("iptables").args(&delete).output();
        }
        // The veth pair goes with the namespace.
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", &self.host_side]);
    }
}

#[test]
fn a_container_reaches_a_loopback_backend_through_a_vip_and_is_refused_without_one() {
    if no_iptables() {
        return;
    }
    let loaded = Loaded::new("TVIPNS");
    let Some(container) = Container::start() else {
        return;
    };
    let backend = tcp_echo("127.0.61.4", "c");
    let to: SocketAddr = "198.19.254.3:7003".parse().unwrap();
    loaded.apply(&[vip("198.19.254.3", 7003, "tcp", &[("c", backend)])]);
    assert_eq!(container.ask(to), Ok("c:ping".to_string()));

    // Untranslated, the packet would be forwarded out of the host: the guard refuses it.
    loaded.apply(&[vip("198.19.254.3", 7003, "tcp", &[])]);
    let started = Instant::now();
    let refused = container.ask(to).expect_err("the connection went through");
    assert!(refused.contains("Connection refused"), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// A TCP server inside `container` on `port`, answering each line with `inside:{line}`, and
/// the host port that tepui-runtime would map to it: a DNAT on this host from the host's
/// address on the veth. Both go when dropped.
struct InsideServer {
    server: std::process::Child,
    host_port: Vec<String>,
}

impl InsideServer {
    fn start(container: &Container, port: u16, host_port: u16) -> Option<InsideServer> {
        if Command::new("busybox").arg("true").output().is_err() {
            eprintln!("skipped: busybox is not installed");
            return None;
        }
        let server = Command::new("ip")
            .args(["netns", "exec", &container.ns, "busybox", "nc", "-ll", "-p"])
            .arg(port.to_string())
            .args(["-e", "sh", "-c", "read l; echo inside:$l"])
            .spawn()
            .unwrap();
        let host_port: Vec<String> = [
            "OUTPUT",
            "-t",
            "nat",
            "-d",
            &format!("{}/32", container.host_addr),
            "-p",
            "tcp",
            "--dport",
            &host_port.to_string(),
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{}:{port}", container.addr),
        ]
        .map(|s| s.to_string())
        .to_vec();
        let mut add = vec!["-w".to_string(), "10".into(), "-A".into()];
        add.extend(host_port.iter().cloned());
        let out = Command::new("iptables").args(&add).output().unwrap();
        let started = InsideServer { server, host_port };
        must("host port", out);
        Some(started)
    }
}

impl Drop for InsideServer {
    fn drop(&mut self) {
        let mut delete = vec!["-w".to_string(), "10".into(), "-D".into()];
        delete.extend(self.host_port.iter().cloned());
        let _ = Command::new("iptables").args(&delete).output();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_local_container_behind_a_host_port_is_reached_at_its_own_address_even_from_itself() {
    if no_iptables() {
        return;
    }
    let loaded = Loaded::new("TVIPHP");
    let Some(container) = Container::start() else {
        return;
    };
    let Some(_server) = InsideServer::start(&container, 7100, 7101) else {
        return;
    };
    let host_port: SocketAddr = format!("{}:7101", container.host_addr).parse().unwrap();
    let own: SocketAddr = format!("{}:7100", container.addr).parse().unwrap();
    wait_until("the server inside answers through its host port", || ask(host_port));

    let to: SocketAddr = "198.19.254.4:7004".parse().unwrap();
    let mut vips = vec![vip("198.19.254.4", 7004, "tcp", &[("c", host_port)])];
    vips[0].backends[0].agent_id = 7;
    vips[0].backends[0].container = Some(own);
    // As every other agent loads it: at the host port, which this host's own connections do not
    // reach (translated once already, they are not translated again).
    loaded.apply(&vips);
    assert!(ask(to).is_err(), "the host port was reached through the VIP");

    // As the task's own agent loads it: at the container's address, from the host, and from
    // the container itself (masqueraded, or the reply would come from its own address).
    loaded.apply(&tepui_gateway::vip::local_backends(&vips, 7));
    assert_eq!(ask(to).map_err(|e| e.to_string()), Ok("inside:ping".to_string()));
    assert_eq!(container.ask(to), Ok("inside:ping".to_string()));
}

/// Waits for `f` to answer, for up to ten seconds.
fn wait_until(what: &str, f: impl Fn() -> std::io::Result<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
