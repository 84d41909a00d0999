//! Bridge networking: the bridge and its iptables chains (set up once, by the agent),
//! an address per task (a lease file per address), and per task a veth pair into the
//! container's network namespace plus DNAT rules for its host ports (set up and torn down
//! by the task's shim).
//!
//! It drives iproute2's `ip` and `iptables`. There is no netlink API for iptables rules
//! (iptables-nft keeps its own rule encoding in nftables), so the rules go through the
//! `iptables` command whatever happens to links; using `ip` for links too keeps one model,
//! and every step is a command an operator can read, repeat and undo by hand.
//!
//! Host ports are forwarded with DNAT in the kernel, on PREROUTING (remote clients) and
//! OUTPUT (local clients, 127.0.0.1 included), not with a userland proxy in the shim: the
//! forwarding keeps working whatever the shim does, costs no copy through user space, keeps
//! remote clients' addresses, and the single-threaded shim stays small. Loopback clients
//! need `route_localnet` on the bridge (only there, not `all`) and a MASQUERADE of
//! 127.0.0.0/8 towards the bridge; a filter rule drops packets that would use
//! `route_localnet` to reach the host's loopback services from a container.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sandbox::NetPlan;
use crate::Error;

/// The chains tepui owns; its rules never go into the built-in chains except one jump each.
pub const CHAIN_DNAT: &str = "TEPUI-DNAT";
pub const CHAIN_POSTROUTING: &str = "TEPUI-POSTROUTING";
pub const CHAIN_FORWARD: &str = "TEPUI-FORWARD";
pub const CHAIN_INPUT: &str = "TEPUI-INPUT";
/// The cluster resolver's DNAT rules (jumped to from [`CHAIN_DNAT`]).
pub const CHAIN_DNS: &str = "TEPUI-DNS";
/// The port tasks' resolvers are asked on (resolv.conf has no other).
pub const RESOLVER_PORT: u16 = 53;

/// The bridge and its private subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// Interface name, at most 15 characters.
    pub name: String,
    /// The subnet's network address; the bridge takes the first host address.
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// Set `net.ipv4.ip_forward=1` so tasks reach beyond the host (Docker does the same).
    pub enable_ip_forward: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: "tepui0".into(),
            subnet: Ipv4Addr::new(10, 213, 0, 0),
            prefix: 16,
            enable_ip_forward: true,
        }
    }
}

impl BridgeConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty()
            || self.name.len() > 15
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::InvalidConfig(format!(
                "bridge name {:?} must be 1 to 15 of [A-Za-z0-9_-]",
                self.name
            )));
        }
        if !(8..=30).contains(&self.prefix) || u32::from(self.subnet) & !self.mask() != 0 {
            return Err(Error::InvalidConfig(format!(
                "bridge subnet {}/{} is not a network address with a prefix of 8 to 30",
                self.subnet, self.prefix
            )));
        }
        Ok(())
    }
    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }
    fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

/// Runs a command, returning its stdout, or its stderr in the error.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Network(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Network(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn iptables(args: &[&str]) -> Result<String, Error> {
    let mut a = vec!["-w", "10"];
    a.extend_from_slice(args);
    run("iptables", &a)
}

/// Adds a rule unless it is there (`-C` first).
fn ensure_rule(table: &str, chain: &str, rule: &[&str], insert: bool) -> Result<(), Error> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if iptables(&check).is_ok() {
        return Ok(());
    }
    let mut add = vec!["-t", table, if insert { "-I" } else { "-A" }, chain];
    if insert {
        add.push("1");
    }
    add.extend_from_slice(rule);
    iptables(&add).map(|_| ())
}

fn ensure_chain(table: &str, chain: &str) -> Result<(), Error> {
    if iptables(&["-t", table, "-S", chain]).is_ok() {
        return Ok(());
    }
    match iptables(&["-t", table, "-N", chain]) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("exists") => Ok(()),
        Err(e) => Err(e),
    }
}

static SETUP: Mutex<()> = Mutex::new(());

/// Creates the bridge, its address, sysctls and tepui's chains; safe to repeat.
pub(crate) fn ensure_bridge(cfg: &BridgeConfig) -> Result<(), Error> {
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let br = cfg.name.as_str();
    if run("ip", &["link", "show", "dev", br]).is_err() {
        if let Err(e) = run("ip", &["link", "add", "name", br, "type", "bridge"]) {
            if !e.to_string().contains("exists") {
                return Err(e);
            }
        }
    }
    let gw = format!("{}/{}", cfg.gateway(), cfg.prefix);
    run("ip", &["addr", "replace", &gw, "dev", br])?;
    run("ip", &["link", "set", "dev", br, "up"])?;
    write_sysctl(&format!("net/ipv4/conf/{br}/route_localnet"), "1")?;
    if cfg.enable_ip_forward {
        write_sysctl("net/ipv4/ip_forward", "1")?;
    }

    ensure_chain("nat", CHAIN_DNAT)?;
    ensure_chain("nat", CHAIN_POSTROUTING)?;
    ensure_chain("filter", CHAIN_FORWARD)?;
    ensure_chain("filter", CHAIN_INPUT)?;
    let local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN_DNAT];
    ensure_rule("nat", "PREROUTING", &local, false)?;
    ensure_rule("nat", "OUTPUT", &local, false)?;
    ensure_rule("nat", "POSTROUTING", &["-j", CHAIN_POSTROUTING], false)?;
    ensure_rule("filter", "FORWARD", &["-j", CHAIN_FORWARD], true)?;
    ensure_rule("filter", "INPUT", &["-j", CHAIN_INPUT], true)?;

    let cidr = cfg.cidr();
    // NAT out to anywhere but the bridge itself.
    ensure_rule(
        "nat",
        CHAIN_POSTROUTING,
        &["-s", &cidr, "!", "-o", br, "-j", "MASQUERADE"],
        false,
    )?;
    // Local clients on 127.0.0.0/8: the container answers to the bridge address.
    ensure_rule(
        "nat",
        CHAIN_POSTROUTING,
        &["-s", "127.0.0.0/8", "-o", br, "-j", "MASQUERADE"],
        false,
    )?;
    ensure_rule("filter", CHAIN_FORWARD, &["-i", br, "-j", "ACCEPT"], false)?;
    ensure_rule("filter", CHAIN_FORWARD, &["-o", br, "-j", "ACCEPT"], false)?;
    ensure_rule(
        "filter",
        CHAIN_INPUT,
        &[
            "-i",
            br,
            "-d",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "DROP",
        ],
        false,
    )?;
    Ok(())
}

/// The cluster's resolver on this host: the bridge's gateway, port 53 (UDP and TCP), DNAT'ed
/// to `target` (the cluster's DNS), or to nothing. Queries come from bridge tasks (PREROUTING)
/// and from host tasks (OUTPUT), both through [`CHAIN_DNAT`], which takes packets for the
/// host's own addresses. A loopback target (`tepui dev`) is reached through the bridge's
/// `route_localnet`, so the DNAT'ed queries, and only they, are let past the filter that keeps
/// containers off the host's loopback services. Other rules tagged with this bridge are
/// removed once the new ones are in, so queries are never left without a rule. Safe to repeat.
pub(crate) fn set_resolver(cfg: &BridgeConfig, target: Option<std::net::SocketAddrV4>) -> Result<(), Error> {
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let br = cfg.name.as_str();
    let gw = cfg.gateway().to_string();
    let port = RESOLVER_PORT.to_string();
    let tag = format!("tepui-dns:{br}");
    let Some(target) = target else {
        // Nothing to point at: drop this bridge's rules, if there are any.
        return delete_tagged(CHAIN_DNS, &tag, |_| true);
    };
    ensure_chain("nat", CHAIN_DNS)?;
    ensure_rule("nat", CHAIN_DNAT, &["-j", CHAIN_DNS], true)?;
    let to = target.to_string();
    for proto in ["udp", "tcp"] {
        ensure_rule(
            "filter",
            CHAIN_INPUT,
            &[
                "-i",
                br,
                "-p",
                proto,
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "--ctorigdst",
                &gw,
                "--ctorigdstport",
                &port,
                "-j",
                "ACCEPT",
            ],
            true,
        )?;
        ensure_rule(
            "nat",
            CHAIN_DNS,
            &[
                "-d",
                &gw,
                "-p",
                proto,
                "--dport",
                &port,
                "-m",
                "comment",
                "--comment",
                &tag,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ],
            false,
        )?;
    }
    // Rules of an earlier target.
    delete_tagged(CHAIN_DNS, &tag, |words| {
        let at = words.iter().position(|w| w == "--to-destination");
        at.and_then(|i| words.get(i + 1)).map(String::as_str) != Some(to.as_str())
    })
}

/// Deletes the rules of nat chain `chain` tagged `tag` that `stale` picks (given the rule's
/// words); a missing chain has none.
fn delete_tagged(chain: &str, tag: &str, stale: impl Fn(&[String]) -> bool) -> Result<(), Error> {
    let Ok(listing) = iptables(&["-t", "nat", "-S", chain]) else {
        return Ok(());
    };
    for line in listing.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        if words.first().map(String::as_str) != Some("-A") || !words.iter().any(|w| w == tag) || !stale(&words) {
            continue;
        }
        let mut args: Vec<&str> = vec!["-t", "nat", "-D"];
        args.extend(words[1..].iter().map(String::as_str));
        iptables(&args)?;
    }
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<(), Error> {
    let path = format!("/proc/sys/{key}");
    if fs::read_to_string(&path).map(|v| v.trim() == value).unwrap_or(false) {
        return Ok(());
    }
    fs::write(&path, value).map_err(|e| Error::Network(format!("cannot set {path}: {e}")))
}

/// Reserves a free address for `id`: a file named after the address, created exclusively.
pub(crate) fn lease(dir: &Path, cfg: &BridgeConfig, id: &str) -> Result<(Ipv4Addr, std::path::PathBuf), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create lease dir", dir, e))?;
    let base = u32::from(cfg.subnet);
    let size = 1u32 << (32 - cfg.prefix);
    // .0 is the network, .1 the bridge, the last the broadcast address.
    for off in 2..size - 1 {
        let ip = Ipv4Addr::from(base + off);
        let path = dir.join(ip.to_string());
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(id.as_bytes())
                    .map_err(|e| Error::io("write lease", &path, e))?;
                return Ok((ip, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create lease", &path, e)),
        }
    }
    Err(Error::Network(format!("no free address left in {}", cfg.cidr())))
}

/// The host side of a task's veth pair: short, stable, derived from the id.
pub(crate) fn host_veth(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    format!("tp{}", &hex::encode(digest)[..11])
}

fn comment(id: &str) -> String {
    format!("tepui:{id}")
}

fn dnat_rule(plan: &NetPlan, id: &str, p: &crate::spec::PortMapping) -> Vec<String> {
    vec![
        "-p".into(),
        p.protocol.as_str().into(),
        "--dport".into(),
        p.host_port.to_string(),
        "-m".into(),
        "comment".into(),
        "--comment".into(),
        comment(id),
        "-j".into(),
        "DNAT".into(),
        "--to-destination".into(),
        format!("{}:{}", plan.ip, p.container_port),
    ]
}

/// Runs `ip -batch -` inside the network namespace of `pid`.
fn ip_batch_in(pid: i32, script: &str) -> Result<(), Error> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::Network(format!("cannot open the netns of {pid}: {e}")))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe; it runs in the forked child before exec and only
    // touches the child's namespaces. `ns` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::Network(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Network(format!("ip -batch: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Network(format!("ip -batch: {e}")))?;
    drop(ns);
    if !out.status.success() {
        return Err(Error::Network(format!(
            "ip -batch in the netns of {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Brings up loopback in a container that has no other interface.
pub(crate) fn setup_loopback(pid: i32) -> Result<(), Error> {
    ip_batch_in(pid, "link set dev lo up\n")
}

/// Wires a created (not yet started) container to the bridge and maps its ports.
pub(crate) fn setup_task(plan: &NetPlan, id: &str, pid: i32) -> Result<(), Error> {
    let hv = plan.host_veth.as_str();
    // A stale link from an earlier task with the same id would block the name.
    let _ = run("ip", &["link", "del", "dev", hv]);
    run(
        "ip",
        &[
            "link",
            "add",
            "name",
            hv,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pid.to_string(),
        ],
    )?;
    run("ip", &["link", "set", "dev", hv, "master", &plan.bridge, "up"])?;
    let script = format!(
        "link set dev lo up\naddr add {}/{} dev eth0\nlink set dev eth0 up\nroute add default via {}\n",
        plan.ip, plan.prefix, plan.gateway
    );
    ip_batch_in(pid, &script)?;
    for p in &plan.ports {
        let rule = dnat_rule(plan, id, p);
        let mut args = vec!["-t", "nat", "-A", CHAIN_DNAT];
        args.extend(rule.iter().map(String::as_str));
        iptables(&args)?;
    }
    Ok(())
}

/// Removes what [`setup_task`] made; every step is tolerant of having been done already.
pub(crate) fn teardown_task(plan: &NetPlan, id: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = delete_rules_of(id) {
        errors.push(e.to_string());
    }
    // Usually gone with the network namespace already.
    if run("ip", &["link", "show", "dev", &plan.host_veth]).is_ok() {
        if let Err(e) = run("ip", &["link", "del", "dev", &plan.host_veth]) {
            errors.push(e.to_string());
        }
    }
    match fs::read_to_string(&plan.lease) {
        Ok(owner) if owner == id => {
            if let Err(e) = fs::remove_file(&plan.lease) {
                errors.push(format!("release {}: {e}", plan.lease.display()));
            }
        }
        _ => {}
    }
    errors
}

/// Deletes every rule in tepui's DNAT chain tagged with the task's id.
pub(crate) fn delete_rules_of(id: &str) -> Result<(), Error> {
    let listing = match iptables(&["-t", "nat", "-S", CHAIN_DNAT]) {
        Ok(l) => l,
        // No chain: the bridge was never set up, so there is nothing to delete.
        Err(_) => return Ok(()),
    };
    let tag = comment(id);
    for line in listing.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        if words.first().map(String::as_str) != Some("-A") || !words.contains(&tag) {
            continue;
        }
        let mut args: Vec<&str> = vec!["-t", "nat", "-D"];
        args.extend(words[1..].iter().map(String::as_str));
        iptables(&args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_config_checks() {
        assert!(BridgeConfig::default().validate().is_ok());
        assert_eq!(BridgeConfig::default().gateway(), Ipv4Addr::new(10, 213, 0, 1));
        let bad = BridgeConfig {
            subnet: Ipv4Addr::new(10, 213, 0, 1),
            ..BridgeConfig::default()
        };
        assert!(bad.validate().is_err());
        let long = BridgeConfig {
            name: "a-very-long-bridge".into(),
            ..BridgeConfig::default()
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn leases_are_exclusive_and_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BridgeConfig {
            subnet: Ipv4Addr::new(10, 99, 0, 0),
            prefix: 30,
            ..BridgeConfig::default()
        };
        let (ip, path) = lease(dir.path(), &cfg, "a").unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 99, 0, 2));
        assert!(lease(dir.path(), &cfg, "b").is_err());
        fs::remove_file(path).unwrap();
        assert_eq!(lease(dir.path(), &cfg, "b").unwrap().0, ip);
    }

    #[test]
    fn veth_names_fit() {
        let n = host_veth("a-rather-long-task-id.with.dots-0123456789");
        assert!(n.len() <= 15);
        assert_ne!(n, host_veth("other"));
    }
}
