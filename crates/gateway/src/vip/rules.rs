//! The kernel's data path of the VIPs, as kube-proxy's iptables mode does it, written as
//! `iptables-restore` input. Pure: what is loaded is decided here from the VIPs and from what
//! `iptables-save` shows ([`Installed`]); [`super::kernel`] runs the commands.
//!
//! In the nat table (the first packet of each connection):
//! - `{P}-VIPS`, jumped to from PREROUTING (containers, other hosts) and OUTPUT (this host and
//!   its host-network tasks): each VIP with backends matches its address, protocol and port and
//!   jumps to
//! - `{P}-VIP-{address, port and protocol in hex}`: one DNAT per backend, the k-th of n (from 0)
//!   taken with probability 1/(n-k) (`-m statistic --mode random`), the last always: each gets
//!   1/n of the connections.
//!
//! - `{P}-VIPS-POSTROUTING`, jumped to from POSTROUTING for translated connections: a
//!   connection from a VIP to a container on this host's bridge (a local backend given at its
//!   container's address, see below) is masqueraded, as kube-proxy's hairpin rule does. A
//!   container reaching, through a VIP, another one on the same bridge (or itself) would
//!   otherwise get the reply straight from that container's address, over the bridge, and drop
//!   it; masqueraded, the reply comes back through the host, where conntrack undoes both
//!   translations. Such a backend sees the bridge's address as its client's.
//!
//! In the filter table:
//! - `{P}-VIPS-GUARD`, jumped to from OUTPUT and FORWARD for new connections: a packet for a VIP
//!   that was not translated (`! --ctstate DNAT`: the VIP has no backends, or its rules are not
//!   loaded yet) is refused, with a TCP reset or an ICMP port unreachable: it never goes to the
//!   network the address belongs to, and the client fails at once instead of timing out.
//! - `{P}-VIPS-INPUT`, jumped to from INPUT: connections translated from a VIP to a backend on
//!   loopback are accepted. Agents in tests and `tepui dev` listen on 127.x; a bridge container
//!   reaches them through its bridge's `route_localnet`, as it reaches the cluster resolver
//!   (tepui-runtime's `net.rs` sets it), and this rule lets those connections, and only those,
//!   past the one there that keeps containers off the host's loopback services. Replies need no
//!   MASQUERADE: conntrack undoes the DNAT on the way back. From OUTPUT nothing else is needed.
//!
//! Every chain is tepui's own and filled whole each time (declaring a chain in
//! `iptables-restore --noflush` input empties it); chains of VIPs that are gone are deleted.
//! The built-in chains get one jump each, added when missing and kept ahead of every rule but
//! other VIP jumps: an ACCEPT earlier in FORWARD (Docker's, or tepui-runtime's for its bridge)
//! would let untranslated packets out, a DROP earlier in INPUT would drop translated ones.
//! `{P}` is a prefix of the caller's: agents use [`Chains::DEFAULT_PREFIX`], tests their own, so
//! both can load rules on one host at once.
//!
//! A backend that is a bridge container's host port on this very host is not reached this way:
//! that host port is itself a DNAT (tepui-runtime's), and a connection is translated once per
//! hook, so it would go to the host port, where nothing listens. The agent gives such backends
//! as the container's own address and port ([`super::local_backends`]: `addr` equal to
//! `container`), and those get the MASQUERADE above.
//!
//! What changes with the backends is the choice for new connections: an open TCP connection
//! keeps its backend (conntrack holds the translation), and so does a UDP flow while packets
//! keep coming (kube-proxy deletes such conntrack entries with `conntrack -D`; not done here).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{is_named_vip_address, NAMED_VIP_NETWORK, NAMED_VIP_PREFIX};
use crate::Vip;

/// Every jump rule carries this and the prefix in a comment: rules that have it may come before
/// ours.
const TAG: &str = "tepui-vips:";
/// Where loopback backends are.
const LOOPBACK: &str = "127.0.0.0/8";
/// The longest chain name iptables takes.
const MAX_CHAIN: usize = 28;

/// A chain prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain prefix {0:?} must be 1 to 10 uppercase ASCII letters or digits")]
pub struct InvalidPrefix(pub String);

/// The names of one user's chains: `{prefix}-VIPS`, `{prefix}-VIP-...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chains {
    prefix: String,
}

impl Chains {
    /// The agents' prefix.
    pub const DEFAULT_PREFIX: &'static str = "TEPUI";

    /// Chains named after `prefix`. No dash in it: one prefix's chains can then never look like
    /// another's (`TEPUI-VIP...` against `TEPUI-VIPX-VIP...`), nor like tepui-runtime's.
    pub fn new(prefix: &str) -> Result<Chains, InvalidPrefix> {
        let ok = (1..=MAX_CHAIN - 18).contains(&prefix.len())
            && prefix.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(Chains { prefix: prefix.into() })
        } else {
            Err(InvalidPrefix(prefix.into()))
        }
    }

    /// The agents' chains.
    pub fn agent() -> Chains {
        Chains {
            prefix: Self::DEFAULT_PREFIX.into(),
        }
    }

    /// The chains of the agents of cluster `cluster_id`: `TV` and eight hex digits of a hash
    /// of the id. Agents of one cluster on one host load the same rules into them; another
    /// cluster's agents on the same host (tests, a second `tepui dev`) keep to their own.
    pub fn for_cluster(cluster_id: &str) -> Chains {
        // FNV-1a, 32 bits: stable across builds and Rust versions.
        let hash = cluster_id
            .bytes()
            .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        Chains {
            prefix: format!("TV{hash:08X}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The nat chain every VIP is matched in.
    pub fn dispatch(&self) -> String {
        format!("{}-VIPS", self.prefix)
    }

    /// The nat chain masquerading connections to local containers.
    pub fn hairpin(&self) -> String {
        format!("{}-VIPS-POSTROUTING", self.prefix)
    }

    /// The filter chain refusing what was not translated.
    pub fn guard(&self) -> String {
        format!("{}-VIPS-GUARD", self.prefix)
    }

    /// The filter chain accepting translated connections to loopback.
    pub fn loopback(&self) -> String {
        format!("{}-VIPS-INPUT", self.prefix)
    }

    /// The nat chain of one VIP: its address, port and protocol, so its name says which it is
    /// (`TEPUI-VIP-C61253740050T` is 198.18.83.116:80/tcp).
    pub fn of_vip(&self, ip: Ipv4Addr, port: u16, protocol: &str) -> String {
        let p = if protocol == "udp" { 'U' } else { 'T' };
        format!("{}-VIP-{:08X}{port:04X}{p}", self.prefix, u32::from(ip))
    }

    /// Whether `chain` is one of these.
    pub fn owns(&self, chain: &str) -> bool {
        chain.starts_with(&format!("{}-VIP", self.prefix))
    }

    fn tag(&self) -> String {
        format!("{TAG}{}", self.prefix)
    }

    /// The jumps from the built-in chains.
    fn jumps(&self) -> Vec<Jump> {
        let tag = self.tag();
        let translate = format!("-m comment --comment \"{tag}\" -j {}", self.dispatch());
        let guard = format!(
            "-m conntrack --ctstate NEW -m comment --comment \"{tag}\" -j {}",
            self.guard()
        );
        let loopback = format!("-d {LOOPBACK} -m comment --comment \"{tag}\" -j {}", self.loopback());
        let hairpin = format!(
            "-m conntrack --ctstate DNAT -m comment --comment \"{tag}\" -j {}",
            self.hairpin()
        );
        vec![
            Jump::new("nat", "PREROUTING", translate.clone(), self.dispatch()),
            Jump::new("nat", "OUTPUT", translate, self.dispatch()),
            Jump::new("nat", "POSTROUTING", hairpin, self.hairpin()),
            Jump::new("filter", "OUTPUT", guard.clone(), self.guard()),
            Jump::new("filter", "FORWARD", guard, self.guard()),
            Jump::new("filter", "INPUT", loopback, self.loopback()),
        ]
    }
}

/// A rule in a built-in chain that jumps to one of ours.
struct Jump {
    table: &'static str,
    from: &'static str,
    /// The rule, without `-A chain`.
    spec: String,
    target: String,
}

impl Jump {
    fn new(table: &'static str, from: &'static str, spec: String, target: String) -> Jump {
        Jump {
            table,
            from,
            spec,
            target,
        }
    }
}

/// What `iptables-save` shows of some tables: their chains, and every chain's rules in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    tables: BTreeMap<String, Listing>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Listing {
    chains: BTreeSet<String>,
    /// By chain: the rules as `iptables-save` writes them, without `-A chain`.
    rules: BTreeMap<String, Vec<String>>,
}

impl Installed {
    /// Whether any chain of `chains` is there (a VIP was served under them before).
    pub fn has_any(&self, chains: &Chains) -> bool {
        self.tables.values().any(|l| l.chains.iter().any(|c| chains.owns(c)))
    }

    /// Reads `iptables-save` output (one table or several).
    pub fn parse(save: &str) -> Installed {
        let mut out = Installed::default();
        let mut table: Option<String> = None;
        for line in save.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('*') {
                out.tables.entry(name.to_string()).or_default();
                table = Some(name.to_string());
                continue;
            }
            if line == "COMMIT" {
                table = None;
                continue;
            }
            let Some(listing) = table.as_ref().and_then(|t| out.tables.get_mut(t)) else {
                continue;
            };
            if let Some(declared) = line.strip_prefix(':') {
                if let Some(chain) = declared.split_whitespace().next() {
                    listing.chains.insert(chain.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
                listing
                    .rules
                    .entry(chain.to_string())
                    .or_default()
                    .push(spec.to_string());
            }
        }
        out
    }

    fn chains(&self, table: &str) -> impl Iterator<Item = &String> {
        self.tables.get(table).into_iter().flat_map(|l| l.chains.iter())
    }

    fn rules(&self, table: &str, chain: &str) -> &[String] {
        self.tables
            .get(table)
            .and_then(|l| l.rules.get(chain))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Whether rule `spec` jumps to `target`.
fn jumps_to(spec: &str, target: &str) -> bool {
    let words: Vec<&str> = spec.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == target)
}

/// One table's part of the input: chains declared (so emptied), jumps from the built-in chains,
/// the rules of the chains, then chains deleted.
struct Section {
    table: &'static str,
    declared: Vec<String>,
    jumps: Vec<String>,
    commands: Vec<String>,
    deleted: Vec<String>,
}

impl Section {
    fn new(table: &'static str) -> Section {
        Section {
            table,
            declared: Vec::new(),
            jumps: Vec::new(),
            commands: Vec::new(),
            deleted: Vec::new(),
        }
    }

    fn declare(&mut self, chain: &str) {
        if !self.declared.iter().any(|c| c == chain) {
            self.declared.push(chain.to_string());
        }
    }

    fn is_empty(&self) -> bool {
        self.declared.is_empty() && self.jumps.is_empty() && self.commands.is_empty() && self.deleted.is_empty()
    }

    fn write(&self, out: &mut String) {
        out.push_str(&format!("*{}\n", self.table));
        for chain in &self.declared {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for command in self.jumps.iter().chain(&self.commands) {
            out.push_str(command);
            out.push('\n');
        }
        for chain in &self.deleted {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }

    /// Puts `jump` first in its chain (after other VIP jumps), unless it is there already.
    fn place(&mut self, jump: &Jump, installed: &Installed) {
        let rules = installed.rules(jump.table, jump.from);
        let ours: Vec<usize> = (0..rules.len())
            .filter(|i| jumps_to(&rules[*i], &jump.target))
            .collect();
        if let [only] = ours[..] {
            if rules[..only].iter().all(|r| r.contains(TAG)) {
                return;
            }
        }
        for i in ours {
            self.jumps.push(format!("-D {} {}", jump.from, rules[i]));
        }
        self.jumps.push(format!("-I {} 1 {}", jump.from, jump.spec));
    }

    /// Deletes every chain of `chains` in this table that `keep` does not name.
    fn delete_stale(&mut self, chains: &Chains, installed: &Installed, keep: &BTreeSet<String>) {
        for chain in installed.chains(self.table) {
            if chains.owns(chain) && !keep.contains(chain) {
                self.declare(chain);
                self.deleted.push(chain.clone());
            }
        }
    }
}

/// A comment iptables takes whatever the name: quoted, of harmless characters.
fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/._:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    format!("\"{clean}\"")
}

/// A VIP as the kernel sees it.
struct Entry {
    label: String,
    /// Sorted, IPv4 only.
    backends: BTreeSet<(SocketAddrV4, String)>,
    /// The backends at a container's address on this host (masqueraded).
    local: BTreeSet<(SocketAddrV4, String)>,
}

/// The `iptables-restore --noflush` input that makes the kernel serve `vips` under `chains`,
/// given what is `installed`. VIPs and backends on IPv6, and protocols other than `tcp` and
/// `udp`, are left out (`iptables` is IPv4's; [`super::vips`] makes none).
pub fn restore_input(vips: &[Vip], chains: &Chains, installed: &Installed) -> String {
    let mut entries: BTreeMap<(Ipv4Addr, u16, &'static str), Entry> = BTreeMap::new();
    for vip in vips {
        let IpAddr::V4(ip) = vip.ip else { continue };
        let protocol = match vip.protocol.to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => continue,
        };
        let label = format!(
            "{}:{}/{protocol}",
            vip.name.clone().unwrap_or_else(|| ip.to_string()),
            vip.port
        );
        let entry = entries.entry((ip, vip.port, protocol)).or_insert(Entry {
            label,
            backends: BTreeSet::new(),
            local: BTreeSet::new(),
        });
        for b in &vip.backends {
            if let SocketAddr::V4(addr) = b.addr {
                entry.backends.insert((addr, b.task_id.clone()));
                if b.container == Some(b.addr) {
                    entry.local.insert((addr, b.task_id.clone()));
                }
            }
        }
    }
    let range = format!("{NAMED_VIP_NETWORK}/{NAMED_VIP_PREFIX}");

    let mut filter = Section::new("filter");
    let guard = chains.guard();
    let loopback = chains.loopback();
    filter.declare(&guard);
    filter.declare(&loopback);
    let untranslated = "-m conntrack ! --ctstate DNAT";
    filter.commands.push(format!(
        "-A {guard} -d {range} -p tcp {untranslated} -j REJECT --reject-with tcp-reset"
    ));
    filter.commands.push(format!(
        "-A {guard} -d {range} {untranslated} -j REJECT --reject-with icmp-port-unreachable"
    ));
    filter.commands.push(format!(
        "-A {loopback} -d {LOOPBACK} -m conntrack --ctstate DNAT --ctorigdst {range} -j ACCEPT"
    ));
    // VIPs on addresses of their own are guarded one by one.
    for ((ip, port, protocol), entry) in &entries {
        if is_named_vip_address(*ip) {
            continue;
        }
        let reject = if *protocol == "tcp" {
            "tcp-reset"
        } else {
            "icmp-port-unreachable"
        };
        let c = comment(&entry.label);
        filter.commands.push(format!(
            "-A {guard} -d {ip}/32 -p {protocol} -m {protocol} --dport {port} {untranslated} -m comment --comment {c} -j REJECT --reject-with {reject}"
        ));
        filter.commands.push(format!(
            "-A {loopback} -d {LOOPBACK} -p {protocol} -m conntrack --ctstate DNAT --ctorigdst {ip}/32 --ctorigdstport {port} -m comment --comment {c} -j ACCEPT"
        ));
    }

    let mut nat = Section::new("nat");
    let dispatch = chains.dispatch();
    let hairpin = chains.hairpin();
    nat.declare(&dispatch);
    nat.declare(&hairpin);
    let mut keep_nat: BTreeSet<String> = [dispatch.clone(), hairpin.clone()].into();
    for ((ip, port, protocol), entry) in &entries {
        if entry.backends.is_empty() {
            // No chain: its packets are not translated, and the guard refuses them.
            continue;
        }
        let chain = chains.of_vip(*ip, *port, protocol);
        nat.declare(&chain);
        keep_nat.insert(chain.clone());
        nat.commands.push(format!(
            "-A {dispatch} -d {ip}/32 -p {protocol} -m {protocol} --dport {port} -m comment --comment {} -j {chain}",
            comment(&entry.label)
        ));
        let n = entry.backends.len();
        for (k, (addr, task_id)) in entry.backends.iter().enumerate() {
            let pick = if k + 1 < n {
                format!(" -m statistic --mode random --probability {:.10}", 1.0 / (n - k) as f64)
            } else {
                String::new()
            };
            nat.commands.push(format!(
                "-A {chain} -p {protocol} -m comment --comment {}{pick} -j DNAT --to-destination {addr}",
                comment(task_id)
            ));
        }
        for (addr, task_id) in &entry.local {
            nat.commands.push(format!(
                "-A {hairpin} -d {}/32 -p {protocol} -m {protocol} --dport {} -m conntrack --ctorigdst {ip}/32 --ctorigdstport {port} -m comment --comment {} -j MASQUERADE",
                addr.ip(),
                addr.port(),
                comment(task_id)
            ));
        }
    }
    let keep_filter: BTreeSet<String> = [guard, loopback].into();

    for jump in chains.jumps() {
        let section = if jump.table == "nat" { &mut nat } else { &mut filter };
        section.place(&jump, installed);
    }
    filter.delete_stale(chains, installed, &keep_filter);
    nat.delete_stale(chains, installed, &keep_nat);

    // The guard is in place before any translation changes.
    let mut out = String::new();
    filter.write(&mut out);
    nat.write(&mut out);
    out
}

/// The `iptables-restore --noflush` input that takes every rule and chain of `chains` out, or
/// none when nothing of them is `installed`.
pub fn removal_input(chains: &Chains, installed: &Installed) -> Option<String> {
    let mut out = String::new();
    for table in ["nat", "filter"] {
        let mut section = Section::new(table);
        let ours: Vec<&String> = installed.chains(table).filter(|c| chains.owns(c)).collect();
        if let Some(listing) = installed.tables.get(table) {
            for (chain, rules) in &listing.rules {
                if chains.owns(chain) {
                    continue;
                }
                for rule in rules {
                    if ours.iter().any(|target| jumps_to(rule, target)) {
                        section.jumps.push(format!("-D {chain} {rule}"));
                    }
                }
            }
        }
        for chain in ours {
            section.declare(chain);
            section.deleted.push(chain.clone());
        }
        if !section.is_empty() {
            section.write(&mut out);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VipBackend;

    fn vip(name: Option<&str>, ip: &str, port: u16, protocol: &str, backends: &[&str]) -> Vip {
        Vip {
            name: name.map(str::to_string),
            ip: ip.parse().unwrap(),
            port,
            protocol: protocol.into(),
            apps: vec!["/app".into()],
            backends: backends
                .iter()
                .enumerate()
                .map(|(i, a)| VipBackend {
                    task_id: format!("app.{i}"),
                    addr: a.parse().unwrap(),
                    agent_id: 0,
                    container: None,
                })
                .collect(),
        }
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Chains::new("TEPUI").is_ok());
        assert!(Chains::new("T1").is_ok());
        for bad in ["", "tepui", "TE-PUI", "ABCDEFGHIJK", "TÉ"] {
            assert_eq!(Chains::new(bad), Err(InvalidPrefix(bad.into())), "{bad}");
        }
        let c = Chains::new("ABCDEFGHIJ").unwrap();
        let longest = c.of_vip(Ipv4Addr::new(255, 255, 255, 255), 65535, "udp");
        assert_eq!(longest.len(), MAX_CHAIN, "{longest}");
        assert_eq!(c.guard(), "ABCDEFGHIJ-VIPS-GUARD");
        assert!(c.owns(&longest) && c.owns(&c.dispatch()) && !c.owns("ABCDEFGHIJ-DNAT"));
        assert!(!Chains::agent().owns("TEPUI-INPUT") && !Chains::agent().owns("TEPUI-DNS"));
    }

    #[test]
    fn a_first_load_declares_the_chains_inserts_the_jumps_and_spreads_over_backends() {
        let vips = [
            vip(
                Some("/web"),
                "198.18.83.116",
                80,
                "tcp",
                &["10.1.0.1:31000", "10.1.0.2:31001", "127.0.0.1:31002"],
            ),
            vip(None, "10.10.0.5", 53, "udp", &["10.1.0.3:31053"]),
            vip(Some("/idle"), "198.18.0.9", 9000, "tcp", &[]),
        ];
        let input = restore_input(&vips, &Chains::agent(), &Installed::default());
        let expected = r#"*filter
:TEPUI-VIPS-GUARD - [0:0]
:TEPUI-VIPS-INPUT - [0:0]
-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS-GUARD
-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS-GUARD
-I INPUT 1 -d 127.0.0.0/8 -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS-INPUT
-A TEPUI-VIPS-GUARD -d 198.18.0.0/15 -p tcp -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset
-A TEPUI-VIPS-GUARD -d 198.18.0.0/15 -m conntrack ! --ctstate DNAT -j REJECT --reject-with icmp-port-unreachable
-A TEPUI-VIPS-INPUT -d 127.0.0.0/8 -m conntrack --ctstate DNAT --ctorigdst 198.18.0.0/15 -j ACCEPT
-A TEPUI-VIPS-GUARD -d 10.10.0.5/32 -p udp -m udp --dport 53 -m conntrack ! --ctstate DNAT -m comment --comment "10.10.0.5:53/udp" -j REJECT --reject-with icmp-port-unreachable
-A TEPUI-VIPS-INPUT -d 127.0.0.0/8 -p udp -m conntrack --ctstate DNAT --ctorigdst 10.10.0.5/32 --ctorigdstport 53 -m comment --comment "10.10.0.5:53/udp" -j ACCEPT
COMMIT
*nat
:TEPUI-VIPS - [0:0]
:TEPUI-VIPS-POSTROUTING - [0:0]
:TEPUI-VIP-0A0A00050035U - [0:0]
:TEPUI-VIP-C61253740050T - [0:0]
-I PREROUTING 1 -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS
-I OUTPUT 1 -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS
-I POSTROUTING 1 -m conntrack --ctstate DNAT -m comment --comment "tepui-vips:TEPUI" -j TEPUI-VIPS-POSTROUTING
-A TEPUI-VIPS -d 10.10.0.5/32 -p udp -m udp --dport 53 -m comment --comment "10.10.0.5:53/udp" -j TEPUI-VIP-0A0A00050035U
-A TEPUI-VIP-0A0A00050035U -p udp -m comment --comment "app.0" -j DNAT --to-destination 10.1.0.3:31053
-A TEPUI-VIPS -d 198.18.83.116/32 -p tcp -m tcp --dport 80 -m comment --comment "/web:80/tcp" -j TEPUI-VIP-C61253740050T
-A TEPUI-VIP-C61253740050T -p tcp -m comment --comment "app.0" -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.1.0.1:31000
-A TEPUI-VIP-C61253740050T -p tcp -m comment --comment "app.1" -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.1.0.2:31001
-A TEPUI-VIP-C61253740050T -p tcp -m comment --comment "app.2" -j DNAT --to-destination 127.0.0.1:31002
COMMIT
"#;
        assert_eq!(lines(&input), lines(expected), "{input}");
    }

    /// What `iptables-save` shows once `prefix`'s rules are loaded, with `vip_chains`, behind
    /// tepui-runtime's jumps.
    fn saved(prefix: &str, vip_chains: &[&str]) -> Installed {
        let mut save = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        save += &format!(":{prefix}-VIPS-GUARD - [0:0]\n:{prefix}-VIPS-INPUT - [0:0]\n");
        save +=
            &format!("-A INPUT -d 127.0.0.0/8 -m comment --comment \"tepui-vips:{prefix}\" -j {prefix}-VIPS-INPUT\n");
        save += "-A INPUT -j TEPUI-INPUT\n";
        for chain in ["FORWARD", "OUTPUT"] {
            save += &format!(
                "-A {chain} -m conntrack --ctstate NEW -m comment --comment \"tepui-vips:{prefix}\" -j {prefix}-VIPS-GUARD\n"
            );
        }
        save += "-A FORWARD -j TEPUI-FORWARD\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
        save += &format!(":{prefix}-VIPS - [0:0]\n:{prefix}-VIPS-POSTROUTING - [0:0]\n");
        for chain in vip_chains {
            save += &format!(":{chain} - [0:0]\n");
        }
        for chain in ["PREROUTING", "OUTPUT"] {
            save += &format!("-A {chain} -m comment --comment \"tepui-vips:{prefix}\" -j {prefix}-VIPS\n");
        }
        save += &format!(
            "-A POSTROUTING -m conntrack --ctstate DNAT -m comment --comment \"tepui-vips:{prefix}\" -j {prefix}-VIPS-POSTROUTING\n"
        );
        save += "-A OUTPUT -m addrtype --dst-type LOCAL -j TEPUI-DNAT\nCOMMIT\n";
        Installed::parse(&save)
    }

    #[test]
    fn jumps_in_place_are_left_alone_and_gone_vips_lose_their_chains() {
        let c = Chains::agent();
        let installed = saved("TEPUI", &["TEPUI-VIP-C61253740050T", "TEPUI-VIP-0A0A00050035U"]);
        let input = restore_input(
            &[vip(Some("/web"), "198.18.83.116", 80, "tcp", &["10.1.0.1:31000"])],
            &c,
            &installed,
        );
        assert!(!input.contains("-I ") && !input.contains("-D "), "{input}");
        let nat = &input[input.find("*nat").unwrap()..];
        assert!(nat.contains(":TEPUI-VIP-0A0A00050035U - [0:0]\n"), "{nat}");
        assert!(nat.ends_with("-X TEPUI-VIP-0A0A00050035U\nCOMMIT\n"), "{nat}");
        assert!(nat.contains("-j DNAT --to-destination 10.1.0.1:31000\n"));
        assert!(!nat.contains("-X TEPUI-VIP-C61253740050T") && !nat.contains("-X TEPUI-VIPS\n"));
    }

    #[test]
    fn a_jump_behind_another_rule_or_twice_is_put_back_first() {
        let c = Chains::new("T1").unwrap();
        let save = "*filter\n:FORWARD ACCEPT [0:0]\n:T1-VIPS-GUARD - [0:0]\n\
            -A FORWARD -m comment --comment \"tepui-vips:T0\" -j T0-VIPS-GUARD\n\
            -A FORWARD -j DOCKER-USER\n\
            -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"tepui-vips:T1\" -j T1-VIPS-GUARD\n\
            -A OUTPUT -m comment --comment \"tepui-vips:T0\" -j T0-VIPS-GUARD\n\
            -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"tepui-vips:T1\" -j T1-VIPS-GUARD\n\
            -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"tepui-vips:T1\" -j T1-VIPS-GUARD\n\
            COMMIT\n";
        let input = restore_input(&[], &c, &Installed::parse(save));
        let jump = "-m conntrack --ctstate NEW -m comment --comment \"tepui-vips:T1\" -j T1-VIPS-GUARD";
        let commands: Vec<&str> = input
            .lines()
            .filter(|l| l.starts_with("-D ") || l.starts_with("-I "))
            .collect();
        let expected = [
            format!("-D OUTPUT {jump}"),
            format!("-D OUTPUT {jump}"),
            format!("-I OUTPUT 1 {jump}"),
            format!("-D FORWARD {jump}"),
            format!("-I FORWARD 1 {jump}"),
        ];
        assert_eq!(
            commands[..5],
            expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        assert_eq!(commands.len(), 9, "{input}");
        // Another prefix's chains are not ours to delete.
        assert!(!input.contains("T0-"), "{input}");
    }

    #[test]
    fn removal_takes_out_jumps_and_chains_and_nothing_else() {
        let installed = saved("T2", &["T2-VIP-C61253740050T"]);
        let input = removal_input(&Chains::new("T2").unwrap(), &installed).unwrap();
        let expected = r#"*nat
:T2-VIP-C61253740050T - [0:0]
:T2-VIPS - [0:0]
:T2-VIPS-POSTROUTING - [0:0]
-D OUTPUT -m comment --comment "tepui-vips:T2" -j T2-VIPS
-D POSTROUTING -m conntrack --ctstate DNAT -m comment --comment "tepui-vips:T2" -j T2-VIPS-POSTROUTING
-D PREROUTING -m comment --comment "tepui-vips:T2" -j T2-VIPS
-X T2-VIP-C61253740050T
-X T2-VIPS
-X T2-VIPS-POSTROUTING
COMMIT
*filter
:T2-VIPS-GUARD - [0:0]
:T2-VIPS-INPUT - [0:0]
-D FORWARD -m conntrack --ctstate NEW -m comment --comment "tepui-vips:T2" -j T2-VIPS-GUARD
-D INPUT -d 127.0.0.0/8 -m comment --comment "tepui-vips:T2" -j T2-VIPS-INPUT
-D OUTPUT -m conntrack --ctstate NEW -m comment --comment "tepui-vips:T2" -j T2-VIPS-GUARD
-X T2-VIPS-GUARD
-X T2-VIPS-INPUT
COMMIT
"#;
        assert_eq!(lines(&input), lines(expected), "{input}");
        assert_eq!(removal_input(&Chains::new("T3").unwrap(), &installed), None);
    }

    #[test]
    fn connections_to_local_containers_are_masqueraded() {
        let mut web = vip(
            Some("/web"),
            "198.18.83.116",
            80,
            "tcp",
            &["10.213.0.2:8080", "10.1.0.2:31001", "10.1.0.1:31002"],
        );
        // The first is a container on this host (given at its own address); the second one on
        // another host (at its host port); the third a host-networking task.
        web.backends[0].container = Some("10.213.0.2:8080".parse().unwrap());
        web.backends[1].container = Some("10.213.0.7:8080".parse().unwrap());
        let input = restore_input(&[web], &Chains::agent(), &Installed::default());
        let masquerades: Vec<&str> = input.lines().filter(|l| l.contains("MASQUERADE")).collect();
        assert_eq!(
            masquerades,
            ["-A TEPUI-VIPS-POSTROUTING -d 10.213.0.2/32 -p tcp -m tcp --dport 8080 -m conntrack --ctorigdst 198.18.83.116/32 --ctorigdstport 80 -m comment --comment \"app.0\" -j MASQUERADE"],
            "{input}"
        );
        assert!(input.contains("-j DNAT --to-destination 10.213.0.2:8080\n"), "{input}");
        // A VIP without backends keeps the chain, empty.
        let input = restore_input(&[], &Chains::agent(), &saved("TEPUI", &[]));
        assert!(input.contains(":TEPUI-VIPS-POSTROUTING - [0:0]\n"), "{input}");
        assert!(
            !input.contains("-X TEPUI-VIPS-POSTROUTING") && !input.contains("MASQUERADE"),
            "{input}"
        );
    }

    #[test]
    fn probabilities_give_each_backend_an_equal_share() {
        let backends: Vec<String> = (0..7).map(|i| format!("10.1.0.{i}:31000")).collect();
        let refs: Vec<&str> = backends.iter().map(String::as_str).collect();
        let input = restore_input(
            &[vip(None, "10.20.0.1", 80, "tcp", &refs)],
            &Chains::agent(),
            &Installed::default(),
        );
        let mut left = 1.0f64;
        let mut shares = Vec::new();
        for line in input.lines().filter(|l| l.contains("-j DNAT")) {
            let p = line
                .split_whitespace()
                .skip_while(|w| *w != "--probability")
                .nth(1)
                .map_or(1.0, |p| p.parse::<f64>().unwrap());
            shares.push(left * p);
            left *= 1.0 - p;
        }
        assert_eq!(shares.len(), 7);
        for s in shares {
            assert!((s - 1.0 / 7.0).abs() < 1e-9, "{s}");
        }
    }

    #[test]
    fn odd_names_make_harmless_comments_and_ipv6_is_left_out() {
        let input = restore_input(
            &[
                vip(Some("/a \"b\"\n-j ACCEPT"), "198.18.0.5", 80, "tcp", &["10.0.0.1:1"]),
                vip(None, "fd00::1", 80, "tcp", &["[fd00::2]:1"]),
                vip(None, "10.0.0.9", 80, "sctp", &["10.0.0.1:1"]),
            ],
            &Chains::agent(),
            &Installed::default(),
        );
        assert!(input.contains("--comment \"/a__b__-j_ACCEPT:80/tcp\""), "{input}");
        assert!(!input.contains("fd00") && !input.contains("10.0.0.9"), "{input}");
    }
}
