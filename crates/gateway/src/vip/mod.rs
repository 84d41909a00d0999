//! Virtual IPs (L4), as DC/OS has them: a port label `VIP_{n}` asks for an address and port
//! (`/name:port`, or `ip:port`) whose connections are spread over the app's instances at that
//! port, from every host of the cluster, by the kernel.
//!
//! - here: the labels to [`Vip`]s (pure), the addresses of named VIPs ([`NAMED_VIP_NETWORK`])
//!   and their DNS names ([`dns_name`]), which tepui's DNS answers for;
//! - [`rules`]: the VIPs to `iptables-restore` input, as kube-proxy's iptables mode does it (pure);
//! - [`kernel`]: loading those rules on an agent, and taking them out.
//!
//! A VIP exists as long as an app carries its label, whether or not it has instances: its name
//! keeps resolving while the app restarts, and connections to it are refused in the meantime
//! instead of going anywhere.

pub mod kernel;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use tepui_services::app::{NetworkMode, Protocol};

use crate::endpoints::AppEndpoints;
use crate::{Problem, Vip, VipBackend};

/// The network named VIPs get their addresses from: 198.18.0.0/15.
///
/// DC/OS took 11.0.0.0/8, which is public address space (allocated, and announced on the
/// internet): a VIP there hides a real host, and a packet to a VIP that is not translated (no
/// backends yet, rules not loaded yet) is routed to the internet. 198.18.0.0/15 is reserved for
/// benchmarking (RFC 2544; RFC 6890 lists it as not globally reachable), so no real host has
/// such an address and such packets are dropped at the edge of any network; and the agents refuse
/// what they do not translate ([`rules`]), so nothing leaves the host. It holds 131,072 addresses.
pub const NAMED_VIP_NETWORK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// The prefix length of [`NAMED_VIP_NETWORK`].
pub const NAMED_VIP_PREFIX: u8 = 15;
/// The zone VIP names are found in, as on DC/OS.
pub const DNS_ZONE: &str = "l4lb.thisdcos.directory";
/// The framework label of VIP names: tepui's apps are Marathon's (`name.marathon.l4lb...`).
pub const DNS_FRAMEWORK: &str = "marathon";
/// The labels that ask for a VIP start with this (`VIP_0`, `VIP_1`, any suffix, as on DC/OS).
pub const LABEL_PREFIX: &str = "VIP_";

/// What a bad label is told, after why.
const ACCEPTED_FORMS: &str = "give /name:port (a named VIP, found as name.marathon.l4lb.thisdcos.directory; \
     the slash may be left out) or ip:port with an IPv4 address, and a port from 1 to 65535";

const NAMED_VIP_SIZE: u32 = 1 << (32 - NAMED_VIP_PREFIX);

/// Whether `ip` is in [`NAMED_VIP_NETWORK`].
pub fn is_named_vip_address(ip: Ipv4Addr) -> bool {
    u32::from(ip) & !(NAMED_VIP_SIZE - 1) == u32::from(NAMED_VIP_NETWORK)
}

/// `/name:port` or `ip:port`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// As written, without the leading slash.
    Named(String),
    Address(Ipv4Addr),
}

/// One app port's claim on a VIP, before named VIPs have addresses.
struct Claim {
    target: Target,
    port: u16,
    protocol: &'static str,
    app: String,
    backends: Vec<VipBackend>,
    field: String,
}

/// The virtual IPs the apps' `VIP_{n}` port labels ask for, with their backends; what cannot
/// be used goes to `problems`.
///
/// Backends are the app's instances that may get traffic (running, and healthy where checked)
/// at that port's host address. Several apps may carry the same VIP (their backends merge, as
/// on DC/OS), and so may two spellings of one name (`/shop/db` and `/shopdb` are the same DNS
/// name, so the same VIP). A port of protocol `tcp,udp` gives a VIP of each. Sorted: named VIPs
/// by name, then the others by address.
pub fn vips(apps: &BTreeMap<String, AppEndpoints>, problems: &mut Vec<Problem>) -> Vec<Vip> {
    let mut claims = Vec::new();
    for (app_id, app) in apps {
        for index in 0..app.port_count() {
            claims_of_port(app_id, app, index, &mut claims, problems);
        }
    }
    let fragments: BTreeSet<String> = claims
        .iter()
        .filter_map(|c| match &c.target {
            Target::Named(name) => Some(dns_fragment(name)),
            Target::Address(_) => None,
        })
        .collect();
    let addresses = allocate(&fragments);

    #[derive(Default)]
    struct Merged {
        names: BTreeSet<String>,
        apps: BTreeSet<String>,
        backends: BTreeSet<VipBackend>,
    }
    let mut merged: BTreeMap<(Ipv4Addr, u16, &'static str), Merged> = BTreeMap::new();
    for claim in claims {
        let (ip, name) = match &claim.target {
            Target::Address(ip) => (*ip, None),
            Target::Named(name) => match addresses.get(&dns_fragment(name)) {
                Some(ip) => (*ip, Some(format!("/{name}"))),
                None => {
                    problems.push(Problem {
                        source: claim.app.clone(),
                        field: claim.field.clone(),
                        message: format!("no address is left for /{name} in {NAMED_VIP_NETWORK}/{NAMED_VIP_PREFIX}"),
                    });
                    continue;
                }
            },
        };
        let entry = merged.entry((ip, claim.port, claim.protocol)).or_default();
        entry.names.extend(name);
        entry.apps.insert(claim.app);
        entry.backends.extend(claim.backends);
    }
    let mut out: Vec<Vip> = merged
        .into_iter()
        .map(|((ip, port, protocol), m)| Vip {
            name: m.names.into_iter().next(),
            ip: IpAddr::V4(ip),
            port,
            protocol: protocol.to_string(),
            apps: m.apps.into_iter().collect(),
            backends: m.backends.into_iter().collect(),
        })
        .collect();
    out.sort_by(|a, b| {
        (a.name.is_none(), &a.name, a.ip, a.port, &a.protocol).cmp(&(
            b.name.is_none(),
            &b.name,
            b.ip,
            b.port,
            &b.protocol,
        ))
    });
    out
}

/// The claims of the `VIP_*` labels of port `index` of `app`.
fn claims_of_port(
    app_id: &str,
    app: &AppEndpoints,
    index: usize,
    claims: &mut Vec<Claim>,
    problems: &mut Vec<Problem>,
) {
    let labels = app.port_labels(index);
    let vip_labels: Vec<(&String, &String)> = labels.iter().filter(|(k, _)| k.starts_with(LABEL_PREFIX)).collect();
    if vip_labels.is_empty() {
        return;
    }
    let host = app.spec.network_mode() == NetworkMode::Host;
    let protocol = if host {
        app.spec.port_definitions.get(index).map(|d| d.protocol)
    } else {
        app.spec.port_mappings().get(index).map(|m| m.protocol)
    };
    let protocols: &[&'static str] = match protocol {
        Some(Protocol::Tcp) | None => &["tcp"],
        Some(Protocol::Udp) => &["udp"],
        Some(Protocol::TcpUdp) => &["tcp", "udp"],
    };
    let backends: Vec<VipBackend> = app.backends(index);
    for (key, value) in vip_labels {
        let field = if host {
            format!("portDefinitions[{index}].labels.{key}")
        } else {
            format!("container.portMappings[{index}].labels.{key}")
        };
        let (target, port) = match parse(value) {
            Ok(parsed) => parsed,
            Err(why) => {
                problems.push(Problem {
                    source: app_id.to_string(),
                    field,
                    message: format!("{value:?} is not a VIP: {why}; {ACCEPTED_FORMS}"),
                });
                continue;
            }
        };
        for protocol in protocols {
            claims.push(Claim {
                target: target.clone(),
                port,
                protocol,
                app: app_id.to_string(),
                backends: backends.clone(),
                field: field.clone(),
            });
        }
    }
}

/// The VIPs as agent `agent_id` serves them: its own bridge tasks' backends at their
/// container's address instead of the host port, as kube-proxy does for local endpoints.
///
/// A bridge task's host port is itself a DNAT on its agent (tepui-runtime's port mapping), and
/// a connection is translated once per hook: a connection from that host to a VIP, translated
/// to the agent's own host port, would not be translated again and would be refused. Other
/// agents' backends, and host-networking ones, are left as they are; the order is kept.
pub fn local_backends(vips: &[Vip], agent_id: u64) -> Vec<Vip> {
    vips.iter()
        .map(|vip| {
            let mut vip = vip.clone();
            for b in &mut vip.backends {
                if let Some(container) = b.container.filter(|_| b.agent_id == agent_id) {
                    b.addr = container;
                }
            }
            vip
        })
        .collect()
}

/// Reads a `VIP_{n}` label's value; the error says what is wrong with it.
fn parse(value: &str) -> Result<(Target, u16), String> {
    let value = value.trim();
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("it has no port".into());
    };
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{port:?} is not a port")),
        Ok(p) => p,
    };
    if host.contains(':') || host.starts_with('[') {
        return Err("IPv6 addresses are not supported".into());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        if is_named_vip_address(ip) {
            return Err(format!(
                "{ip} is in {NAMED_VIP_NETWORK}/{NAMED_VIP_PREFIX}, where named VIPs get their addresses; use a name"
            ));
        }
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(format!(
                "{ip} cannot be a VIP (loopback, unspecified, multicast or broadcast)"
            ));
        }
        return Ok((Target::Address(ip), port));
    }
    if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // `10.0.0.256:80` is a typo, not a name.
        return Err(format!("{host} is not an IPv4 address"));
    }
    let name = host.strip_prefix('/').unwrap_or(host);
    if dns_fragment(name).is_empty() {
        return Err(format!("the name {host:?} has no letters or digits"));
    }
    Ok((Target::Named(name.to_string()), port))
}

/// The DNS name of a named VIP: `name.marathon.l4lb.thisdcos.directory` for `/name`; none when
/// nothing of the name is left for DNS.
///
/// The name is made as DC/OS's dcos-l4lb makes it (`mesos_state:domain_frag`): split at dots,
/// each part lowercased with `-`, `_` and `.` turned into `-` and every other character dropped,
/// slashes included. So a name in a group is flattened, not reversed: `/shop/db` is
/// `shopdb.marathon.l4lb.thisdcos.directory` (Marathon's task names reverse an app's path,
/// VIP names do not), and `/shop.eu/db` is `shop.eudb.marathon.l4lb.thisdcos.directory`.
pub fn dns_name(name: &str) -> Option<String> {
    let fragment = dns_fragment(name);
    (!fragment.is_empty()).then(|| format!("{fragment}.{DNS_FRAMEWORK}.{DNS_ZONE}"))
}

/// The labels a VIP's name gives before `.marathon.l4lb.thisdcos.directory` (see [`dns_name`]):
/// what makes two spellings the same VIP.
fn dns_fragment(name: &str) -> String {
    name.split('.')
        .map(dns_label)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// One DNS label, as Mesos-DNS and DC/OS clean one: letters lowercased, digits kept, `-`, `_`
/// and `.` become `-` (none leading), every other character dropped, at most 63 characters,
/// no trailing `-`.
fn dns_label(part: &str) -> String {
    let mut mapped = String::new();
    for c in part.chars() {
        match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => mapped.push(c),
            '-' | '_' | '.' if !mapped.is_empty() => mapped.push('-'),
            _ => {}
        }
    }
    if mapped.len() <= 63 {
        return mapped.trim_end_matches('-').to_string();
    }
    // Cut at 63 without a trailing dash; as DC/OS, the letters and digits after the cut fill
    // the room the dashes left (only ASCII is in `mapped`, so any index is a boundary).
    let mut label = mapped[..63].trim_end_matches('-').to_string();
    let room = 63 - label.len();
    label.extend(mapped[63..].chars().filter(|c| *c != '-').take(room));
    label
}

/// The addresses of named VIPs, by DNS fragment: each name its own address in
/// [`NAMED_VIP_NETWORK`], picked by a hash of the name, so every server and agent picks the same
/// one without asking anyone, and a name keeps its address while others come and go.
///
/// A name tries addresses in an order of its own (the hash of the name and the attempt); names
/// are placed in alphabetical order, each at the first of its addresses no earlier name took.
/// So a name moves only when another name wants the very address it has (or had: when that
/// name goes, it moves back): with 131,070 addresses, about one name in 1,300 has to share its
/// first choice at 100 names, one in 130 at 1,000. The hash (FNV-1a, then a mix) is part of
/// the contract: another one would move every VIP on an upgrade.
fn allocate(fragments: &BTreeSet<String>) -> BTreeMap<String, Ipv4Addr> {
    // The network's first and last addresses are left out.
    let usable = NAMED_VIP_SIZE - 2;
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for fragment in fragments {
        let mut found = None;
        for attempt in 0..32 {
            let offset = 1 + (address_hash(fragment, attempt) % u64::from(usable)) as u32;
            if taken.insert(offset) {
                found = Some(offset);
                break;
            }
        }
        if found.is_none() && (taken.len() as u32) < usable {
            // A crowded network: the next free address after the first choice.
            let first = address_hash(fragment, 0) % u64::from(usable);
            found = (0..u64::from(usable))
                .map(|step| 1 + ((first + step) % u64::from(usable)) as u32)
                .find(|offset| taken.insert(*offset));
        }
        if let Some(offset) = found {
            out.insert(fragment.clone(), Ipv4Addr::from(u32::from(NAMED_VIP_NETWORK) + offset));
        }
    }
    out
}

/// FNV-1a of the name, a separator and the attempt, then SplitMix64's finalizer so that every
/// bit of the name reaches the low bits the modulo keeps.
fn address_hash(fragment: &str, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in fragment.bytes().chain([0xff]).chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tepui_services::{validate_app, AppDefinition, PathId};

    use super::*;
    use crate::endpoints::Instance;

    fn spec(json: &str) -> tepui_services::AppSpec {
        let def = AppDefinition::from_json(json).unwrap();
        validate_app(&def, &PathId::root(), 0).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A host-networking app whose ports carry `labels` (one map per port, protocol tcp).
    fn host_app(id: &str, ports: &[(&str, &[(&str, &str)])]) -> AppEndpoints {
        let defs: Vec<serde_json::Value> = ports
            .iter()
            .map(|(protocol, labels)| {
                let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
                serde_json::json!({"port": 0, "protocol": protocol, "labels": labels})
            })
            .collect();
        let json = serde_json::json!({"id": id, "cmd": "sleep 1000", "portDefinitions": defs});
        AppEndpoints {
            spec: spec(&json.to_string()),
            instances: Vec::new(),
        }
    }

    fn instance(task_id: &str, ports: &[Option<&str>]) -> Instance {
        Instance {
            task_id: task_id.into(),
            ports: ports
                .iter()
                .map(|p| p.map(|a| a.parse::<SocketAddr>().unwrap()))
                .collect(),
            agent_id: 0,
            container_ports: Vec::new(),
        }
    }

    fn backend(task_id: &str, addr: &str) -> VipBackend {
        VipBackend {
            task_id: task_id.into(),
            addr: addr.parse().unwrap(),
            agent_id: 0,
            container: None,
        }
    }

    #[test]
    fn an_agent_sends_to_its_own_bridge_tasks_at_the_container_address() {
        let on = |agent_id: u64, task: &str, addr: &str, container: Option<&str>| VipBackend {
            agent_id,
            container: container.map(|c| c.parse().unwrap()),
            ..backend(task, addr)
        };
        let vips = vec![Vip {
            name: Some("/db".into()),
            ip: "198.18.0.7".parse().unwrap(),
            port: 5555,
            protocol: "tcp".into(),
            apps: vec!["/db".into()],
            backends: vec![
                on(1, "db.a", "10.0.0.1:31000", Some("172.31.0.2:8080")),
                on(1, "db.b", "10.0.0.1:31001", None),
                on(2, "db.c", "10.0.0.2:31000", Some("172.31.0.2:8080")),
            ],
        }];
        let addrs = |vips: &[Vip]| -> Vec<String> { vips[0].backends.iter().map(|b| b.addr.to_string()).collect() };
        let local = local_backends(&vips, 1);
        assert_eq!(addrs(&local), ["172.31.0.2:8080", "10.0.0.1:31001", "10.0.0.2:31000"]);
        let local = local_backends(&vips, 2);
        assert_eq!(addrs(&local), ["10.0.0.1:31000", "10.0.0.1:31001", "172.31.0.2:8080"]);
        assert_eq!(local_backends(&vips, 3), vips);
    }

    fn run(apps: Vec<AppEndpoints>) -> (Vec<Vip>, Vec<Problem>) {
        let apps: BTreeMap<String, AppEndpoints> = apps.into_iter().map(|a| (a.spec.id.to_string(), a)).collect();
        let mut problems = Vec::new();
        let vips = vips(&apps, &mut problems);
        (vips, problems)
    }

    fn named_ip(name: &str) -> IpAddr {
        let fragments: BTreeSet<String> = [dns_fragment(name)].into();
        IpAddr::V4(allocate(&fragments)[&dns_fragment(name)])
    }

    #[test]
    fn a_named_vip_gets_an_address_in_the_benchmarking_range_and_the_instances_as_backends() {
        let mut web = host_app("/web", &[("tcp", &[("VIP_0", "/web:80")]), ("tcp", &[])]);
        web.instances = vec![
            instance("web.2", &[Some("10.1.0.2:31002"), Some("10.1.0.2:31003")]),
            instance("web.1", &[Some("10.1.0.1:31000"), Some("10.1.0.1:31001")]),
        ];
        let (vips, problems) = run(vec![web]);
        assert_eq!(problems, vec![]);
        assert_eq!(vips.len(), 1);
        let v = &vips[0];
        assert_eq!(v.name.as_deref(), Some("/web"));
        let IpAddr::V4(ip) = v.ip else { panic!("not IPv4") };
        assert!(is_named_vip_address(ip), "{ip}");
        assert_eq!((v.port, v.protocol.as_str()), (80, "tcp"));
        assert_eq!(v.apps, vec!["/web".to_string()]);
        assert_eq!(
            v.backends,
            vec![backend("web.1", "10.1.0.1:31000"), backend("web.2", "10.1.0.2:31002")]
        );
    }

    #[test]
    fn addresses_of_names_are_pinned_across_versions() {
        // The hash is part of the contract: servers and agents of two versions must agree.
        assert_eq!(named_ip("web"), "198.18.83.116".parse::<IpAddr>().unwrap());
        assert_eq!(named_ip("shopdb"), "198.18.183.135".parse::<IpAddr>().unwrap());
        // Spellings of one DNS name are one VIP.
        assert_eq!(named_ip("/web"), named_ip("web"));
        assert_eq!(named_ip("shop/db"), named_ip("shopdb"));
    }

    #[test]
    fn a_name_with_or_without_its_slash_and_an_address_are_all_accepted() {
        let a = host_app(
            "/a",
            &[
                ("tcp", &[("VIP_0", "/shop/db:5432")]),
                ("udp", &[("VIP_1", "10.10.0.5:53")]),
            ],
        );
        let b = host_app("/b", &[("tcp", &[("VIP_0", "shop/db:5432"), ("VIP_X", "shopdb:5432")])]);
        let (vips, problems) = run(vec![a, b]);
        assert_eq!(problems, vec![]);
        assert_eq!(vips.len(), 2, "{vips:?}");
        assert_eq!(vips[0].name.as_deref(), Some("/shop/db"));
        assert_eq!(vips[0].ip, named_ip("shopdb"));
        assert_eq!(vips[0].apps, vec!["/a".to_string(), "/b".to_string()]);
        assert_eq!(vips[1].name, None);
        assert_eq!(vips[1].ip, "10.10.0.5".parse::<IpAddr>().unwrap());
        assert_eq!((vips[1].port, vips[1].protocol.as_str()), (53, "udp"));
    }

    #[test]
    fn apps_sharing_a_vip_merge_their_backends_and_tcp_udp_gives_one_of_each() {
        let mut a = host_app("/a", &[("tcp,udp", &[("VIP_0", "/dns:53")])]);
        a.instances = vec![instance("a.1", &[Some("10.1.0.1:31000")])];
        let mut b = host_app("/b", &[("tcp", &[("VIP_0", "/dns:53")])]);
        b.instances = vec![instance("b.1", &[Some("10.1.0.2:31500")]), instance("b.2", &[None])];
        let (vips, problems) = run(vec![a, b]);
        assert_eq!(problems, vec![]);
        let summary: Vec<(&str, &str, Vec<String>, usize)> = vips
            .iter()
            .map(|v| {
                (
                    v.name.as_deref().unwrap(),
                    v.protocol.as_str(),
                    v.apps.clone(),
                    v.backends.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/dns", "tcp", vec!["/a".to_string(), "/b".to_string()], 2),
                ("/dns", "udp", vec!["/a".to_string()], 1),
            ]
        );
        assert_eq!(vips[0].ip, vips[1].ip);
    }

    #[test]
    fn a_bridge_apps_port_mapping_labels_count_and_problems_name_them() {
        let json = serde_json::json!({
            "id": "/db",
            "container": {
                "type": "DOCKER",
                "docker": {"image": "postgres"},
                "portMappings": [
                    {"containerPort": 5432, "hostPort": 0, "labels": {"VIP_0": "/db:5432"}},
                    {"containerPort": 9187, "hostPort": 0, "labels": {"VIP_1": "db"}}
                ]
            },
            "networks": [{"mode": "container/bridge"}]
        });
        let mut db = AppEndpoints {
            spec: spec(&json.to_string()),
            instances: Vec::new(),
        };
        db.instances = vec![instance("db.1", &[Some("10.1.0.1:31000"), Some("10.1.0.1:31001")])];
        let (vips, problems) = run(vec![db]);
        assert_eq!(vips.len(), 1);
        assert_eq!(vips[0].backends, vec![backend("db.1", "10.1.0.1:31000")]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].source, "/db");
        assert_eq!(problems[0].field, "container.portMappings[1].labels.VIP_1");
        assert!(problems[0].message.contains("has no port"), "{}", problems[0].message);
    }

    #[test]
    fn bad_values_are_problems_that_say_the_accepted_forms() {
        let bad = [
            "web",
            "/web:0",
            "/web:65536",
            "/web:http",
            ":80",
            "/:80",
            "/!!:80",
            "10.0.0.256:80",
            "[::1]:80",
            "fe80::1:80",
            "127.0.0.1:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "198.19.0.1:80",
        ];
        let labels: Vec<(String, &str)> = bad.iter().enumerate().map(|(i, v)| (format!("VIP_{i}"), *v)).collect();
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let app = host_app(
            "/bad",
            &[("tcp", &labels), ("tcp", &[("HAPROXY_0_VHOST", "x"), ("VIP", "/no:1")])],
        );
        let (vips, problems) = run(vec![app]);
        assert_eq!(vips, vec![]);
        assert_eq!(problems.len(), bad.len(), "{problems:#?}");
        for p in &problems {
            assert!(p.field.starts_with("portDefinitions[0].labels.VIP_"), "{}", p.field);
            assert!(
                p.message.contains("/name:port") && p.message.contains("ip:port"),
                "{}",
                p.message
            );
        }
        let first = problems
            .iter()
            .find(|p| p.field == "portDefinitions[0].labels.VIP_0")
            .unwrap();
        assert!(
            first.message.starts_with("\"web\" is not a VIP: it has no port;"),
            "{}",
            first.message
        );
    }

    #[test]
    fn dns_names_follow_dcos() {
        assert_eq!(
            dns_name("/web").as_deref(),
            Some("web.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(dns_name("web").as_deref(), Some("web.marathon.l4lb.thisdcos.directory"));
        assert_eq!(
            dns_name("/shop/db").as_deref(),
            Some("shopdb.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(
            dns_name("/Shop_EU/My-DB").as_deref(),
            Some("shop-eumy-db.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(
            dns_name("/shop.eu/db").as_deref(),
            Some("shop.eudb.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(
            dns_name("/--x--").as_deref(),
            Some("x.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(dns_name("/"), None);
        let long = dns_name(&format!("/{}-b", "a".repeat(62))).unwrap();
        assert!(long.starts_with(&format!("{}b.", "a".repeat(62))), "{long}");
    }

    #[test]
    fn output_is_sorted_and_the_same_whatever_the_order_of_labels() {
        let one = host_app(
            "/one",
            &[(
                "tcp",
                &[("VIP_0", "/zeta:1"), ("VIP_1", "10.0.0.9:1"), ("VIP_2", "/alpha:1")],
            )],
        );
        let two = host_app("/two", &[("tcp", &[("VIP_0", "10.0.0.2:1"), ("VIP_1", "/beta:1")])]);
        let (a, _) = run(vec![one.clone(), two.clone()]);
        let (b, _) = run(vec![two, one]);
        assert_eq!(a, b);
        let order: Vec<String> = a
            .iter()
            .map(|v| v.name.clone().unwrap_or_else(|| v.ip.to_string()))
            .collect();
        assert_eq!(order, vec!["/alpha", "/beta", "/zeta", "10.0.0.2", "10.0.0.9"]);
    }

    #[test]
    fn names_keep_their_address_while_others_come_and_go() {
        let all: BTreeSet<String> = (0..3000).map(|i| format!("svc-{i}")).collect();
        let before = allocate(&all);
        let firsts: BTreeMap<&String, Ipv4Addr> = all
            .iter()
            .map(|f| {
                let offset = 1 + (address_hash(f, 0) % u64::from(NAMED_VIP_SIZE - 2)) as u32;
                (f, Ipv4Addr::from(u32::from(NAMED_VIP_NETWORK) + offset))
            })
            .collect();
        let distinct: BTreeSet<&Ipv4Addr> = before.values().collect();
        assert_eq!(distinct.len(), all.len());
        let half: BTreeSet<String> = all
            .iter()
            .filter(|f| f.len() % 2 == 0 || f.ends_with('7'))
            .cloned()
            .collect();
        let after = allocate(&half);
        let mut contested = 0;
        for f in &half {
            if before[f] == firsts[f] {
                // It has its first choice, and names only went: it cannot move.
                assert_eq!(after[f], before[f], "{f}");
            } else {
                contested += 1;
            }
        }
        // Few names have to share their first choice: about 3000 / 131070 of them.
        assert!(contested < half.len() / 50, "{contested} of {}", half.len());
    }

    #[test]
    fn colliding_names_get_distinct_addresses_the_first_alphabetically_keeping_its_choice() {
        // Find two names that want the same address.
        let usable = u64::from(NAMED_VIP_SIZE - 2);
        let mut seen: BTreeMap<u64, String> = BTreeMap::new();
        let (a, b) = (0..1_000_000)
            .find_map(|i| {
                let name = format!("n{i}");
                let slot = address_hash(&name, 0) % usable;
                let other = seen.insert(slot, name.clone())?;
                Some(if other < name { (other, name) } else { (name, other) })
            })
            .unwrap();
        let alone = allocate(&[a.clone()].into());
        let both = allocate(&[a.clone(), b.clone()].into());
        assert_eq!(both[&a], alone[&a]);
        assert_ne!(both[&a], both[&b]);
        assert!(is_named_vip_address(both[&b]));
        assert_eq!(allocate(&[b.clone(), a.clone()].into()), both);
    }
}
