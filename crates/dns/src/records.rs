//! The records of the cluster domain, from the replicated state, as Mesos-DNS names them.
//!
//! Three pure steps: [`Snapshot::of`] takes what DNS needs out of the state (servers, ready
//! agents, frameworks, the tasks that may be found: running and, when they have health checks,
//! healthy; the named virtual IPs) and gives the built-in frameworks their DC/OS names;
//! [`generate`] turns a snapshot into Mesos-DNS's names ([`Table`]: host names to addresses,
//! service names to targets), as its `records/generator.go` does; [`Records::new`] compiles a
//! table into the DNS records the server answers with, ready to be written without a copy.
//!
//! Besides the cluster domain there is a second zone, as on DC/OS: the named virtual IPs under
//! [`VIP_ZONE`] (`name.marathon.l4lb.thisdcos.directory`), with their addresses as
//! tepui-gateway picks them, so that every server answers the same as every agent translates.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record};
use tepui_state::{NodeStatus, Role, State, TaskRecord};

use crate::names;

/// The zone of the named virtual IPs, answered besides the cluster domain.
pub const VIP_ZONE: &str = tepui_gateway::vip::DNS_ZONE;

/// The built-in services framework's id (tepui-marathon's `FRAMEWORK_ID`): it answers as
/// `marathon`.
pub const SERVICES_FRAMEWORK_ID: &str = "tepui-services";
/// The name the services framework's tasks are found under, as on DC/OS.
pub const SERVICES_FRAMEWORK_NAME: &str = "marathon";
/// The name the jobs' tasks are found under, as on DC/OS.
pub const JOBS_FRAMEWORK_NAME: &str = "metronome";
/// The built-in jobs framework's id (tepui-jobs' `runs::FRAMEWORK_ID`): it answers as
/// `metronome`. Runs launched before it existed belong to no framework.
pub const JOBS_FRAMEWORK_ID: &str = "tepui-jobs";
/// The label tepui-marathon puts the app id in.
const LABEL_APP: &str = "tepui.app";
/// The labels of a pod instance's tasks: the pod, and the endpoints of the task's container
/// (the instance's ports are its executor's).
const LABEL_POD: &str = "tepui.pod";
const LABEL_ENDPOINTS: &str = "tepui.endpoints";
/// Where a leader's API is when its address does not say (Mesos' master port).
pub const DEFAULT_API_PORT: u16 = 5050;
/// Mesos-DNS's default SRV weight (`SRVRecordDefaultWeight`).
pub const SRV_WEIGHT: u16 = 1;

/// What the records are made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The cluster domain, lowercase, without a trailing dot (`mesos`).
    pub domain: String,
    /// The TTL of every record (and the SOA's minimum).
    pub ttl: u32,
    /// This server's addresses: `ns1.<domain>` (the SOA's primary name server) resolves to them.
    pub ns_ips: Vec<IpAddr>,
}

impl Config {
    /// A config for `domain` (cleaned as Mesos-DNS cleans a framework's name; `mesos` when
    /// nothing is left of it).
    pub fn new(domain: &str, ttl: u32, ns_ips: Vec<IpAddr>) -> Config {
        let domain = names::domain_frag(domain.trim_end_matches('.'));
        Config {
            domain: if domain.is_empty() { "mesos".into() } else { domain },
            ttl,
            ns_ips,
        }
    }

    fn fqdn(&self, name: &str) -> String {
        if name.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{name}.{}.", self.domain)
        }
    }
}

/// A server of the cluster (a Mesos master).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: u64,
    pub ip: IpAddr,
    /// Its HTTP API's port.
    pub port: u16,
}

/// A ready agent (a Mesos agent, "slave").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: u64,
    pub ip: IpAddr,
    /// Its own HTTP port.
    pub port: u16,
}

/// A framework, under the name its tasks are found by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameworkInfo {
    pub name: String,
    /// Where its scheduler is, when known as an address.
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
}

/// A task that may be found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    /// Its name as Mesos has it (Marathon's `web.prod` for `/prod/web`), not cleaned yet.
    pub name: String,
    /// Its framework's name, not cleaned yet.
    pub framework: String,
    pub agent_id: String,
    pub agent_ip: IpAddr,
    /// The container's own address (bridge networking), when known.
    pub container_ip: Option<IpAddr>,
    pub ports: Vec<PortInfo>,
}

/// A port a task holds on its agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The host port.
    pub number: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub name: Option<String>,
}

/// A named virtual IP (an app's `VIP_{n}` port label `/name:port`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipInfo {
    /// As the label has it: `/shop/db`.
    pub name: String,
    pub ip: IpAddr,
}

/// What DNS knows of the cluster: the part of the state its names are made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub leader: Option<u64>,
    /// Ordered by id: `masterN` is the N-th.
    pub servers: Vec<ServerInfo>,
    pub agents: Vec<AgentInfo>,
    pub frameworks: Vec<FrameworkInfo>,
    pub tasks: Vec<TaskInfo>,
    /// Sorted, each once (a VIP of several ports or protocols has one name).
    pub vips: Vec<VipInfo>,
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

fn port_of(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// Whether a task may be found: running on a ready agent and, when it has health checks,
/// healthy (a task whose checks have not answered yet is not).
pub fn discoverable(task: &TaskRecord) -> bool {
    task.discoverable()
}

/// The address of a bridge task's container, as its agent reported it (Mesos-DNS's `netinfo`
/// source, which it asks first).
fn container_ip(task: &TaskRecord) -> Option<IpAddr> {
    task.container_ip
}

impl Snapshot {
    /// The part of `state` DNS answers from, with `leader` leading.
    pub fn of(state: &State, leader: Option<u64>) -> Snapshot {
        Snapshot::of_with(state, leader, container_ip)
    }

    /// [`Snapshot::of`] with the container addresses `container_ip` says.
    pub fn of_with(
        state: &State,
        leader: Option<u64>,
        container_ip: impl Fn(&TaskRecord) -> Option<IpAddr>,
    ) -> Snapshot {
        let mut servers = Vec::new();
        let mut agents: BTreeMap<u64, AgentInfo> = BTreeMap::new();
        for n in state.nodes.values() {
            if n.role == Role::Server {
                if let Some(ip) = ip_of(&n.cluster_addr).or_else(|| ip_of(&n.http_addr)) {
                    servers.push(ServerInfo {
                        id: n.id,
                        ip,
                        port: port_of(&n.http_addr).unwrap_or(DEFAULT_API_PORT),
                    });
                }
            }
            if let Some(a) = &n.agent {
                if n.status == NodeStatus::Ready {
                    if let Some(ip) = ip_of(&a.http_addr) {
                        agents.insert(
                            n.id,
                            AgentInfo {
                                id: n.id,
                                ip,
                                port: port_of(&a.http_addr).unwrap_or(5051),
                            },
                        );
                    }
                }
            }
        }
        let leader_at = leader.and_then(|l| servers.iter().find(|s| s.id == l)).cloned();
        let mut frameworks: Vec<FrameworkInfo> = [SERVICES_FRAMEWORK_NAME, JOBS_FRAMEWORK_NAME]
            .into_iter()
            .map(|name| FrameworkInfo {
                name: name.into(),
                ip: leader_at.as_ref().map(|l| l.ip),
                port: leader_at.as_ref().map(|l| l.port),
            })
            .collect();
        for f in state.frameworks.values() {
            if f.id == SERVICES_FRAMEWORK_ID || f.id == JOBS_FRAMEWORK_ID {
                continue;
            }
            frameworks.push(FrameworkInfo {
                name: f.name.clone(),
                ip: f.hostname.as_deref().and_then(|h| h.parse().ok()),
                port: None,
            });
        }
        // The jobs' runs: which task is which job's run.
        let runs: HashMap<&str, (&str, &str)> = state
            .job_runs
            .values()
            .flat_map(|r| {
                r.tasks
                    .iter()
                    .map(move |t| (t.as_str(), (r.job_id.as_str(), r.id.as_str())))
            })
            .collect();
        let mut tasks = Vec::new();
        for t in state.tasks.values().filter(|t| discoverable(t)) {
            let Some(agent) = agents.get(&t.agent_id) else {
                continue;
            };
            let (framework, name) = if t.framework_id == SERVICES_FRAMEWORK_ID {
                // A pod's containers answer under the pod's name, as an app's instances do.
                let app = t
                    .labels
                    .get(LABEL_APP)
                    .or_else(|| t.labels.get(LABEL_POD))
                    .unwrap_or(&t.name);
                (SERVICES_FRAMEWORK_NAME.to_string(), names::marathon_task_name(app))
            } else if t.framework_id.is_empty() || t.framework_id == JOBS_FRAMEWORK_ID {
                // The jobs' tasks; the operator's own (`/v1/tasks`) belong to no framework.
                let Some((job, run)) = runs.get(t.id.as_str()) else {
                    continue;
                };
                (JOBS_FRAMEWORK_NAME.to_string(), names::metronome_task_name(job, run))
            } else {
                let Some(f) = state.frameworks.get(&t.framework_id) else {
                    continue;
                };
                (f.name.clone(), t.name.clone())
            };
            // A pod container's ports: its endpoints among its instance's (the executor's).
            let pod_ports: Vec<tepui_state::PortDef> = match t.labels.get(LABEL_ENDPOINTS) {
                Some(names) if t.labels.contains_key(LABEL_POD) => {
                    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
                    state
                        .executor_of_task(&t.id)
                        .map(|e| {
                            e.def
                                .ports
                                .iter()
                                .filter(|p| p.name.as_deref().is_some_and(|n| names.contains(&n)))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                }
                _ => vec![],
            };
            tasks.push(TaskInfo {
                id: t.id.clone(),
                name,
                framework,
                agent_id: t.agent_id.to_string(),
                agent_ip: agent.ip,
                container_ip: if t.def.network == "bridge" {
                    container_ip(t)
                } else {
                    None
                },
                ports: t
                    .def
                    .ports
                    .iter()
                    .chain(&pod_ports)
                    .filter(|p| p.host_port != 0)
                    .map(|p| PortInfo {
                        number: p.host_port,
                        protocol: p.protocol.to_ascii_lowercase(),
                        name: p.name.clone(),
                    })
                    .collect(),
            });
        }
        servers.sort_by_key(|s| s.id);
        Snapshot {
            leader,
            servers,
            agents: agents.into_values().collect(),
            frameworks,
            tasks,
            vips: named_vips(state),
        }
    }
}

/// The named VIPs of `state`, with the addresses tepui-gateway gives them (the labels it cannot
/// use are its to report, on the gateway's table).
fn named_vips(state: &State) -> Vec<VipInfo> {
    let apps = tepui_gateway::endpoints::apps(state);
    let vips: BTreeSet<VipInfo> = tepui_gateway::vip::vips(&apps, &mut Vec::new())
        .into_iter()
        .filter_map(|v| {
            Some(VipInfo {
                name: v.name?,
                ip: v.ip,
            })
        })
        .collect();
    vips.into_iter().collect()
}

/// Mesos-DNS's names: host names (fully qualified, lowercase, with the trailing dot) to
/// addresses, and service names to `(target, port)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub hosts: BTreeMap<String, BTreeSet<IpAddr>>,
    pub services: BTreeMap<String, BTreeSet<(String, u16)>>,
}

impl Table {
    fn host(&mut self, name: String, ip: IpAddr) {
        self.hosts.entry(name).or_default().insert(ip);
    }

    fn service(&mut self, name: String, target: String, port: u16) {
        self.services.entry(name).or_default().insert((target, port));
    }

    /// The addresses of `name` (lowercase, with or without the trailing dot).
    pub fn addresses(&self, name: &str) -> Vec<IpAddr> {
        self.hosts
            .get(&dotted(name))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The `(target, port)`s of service `name`.
    pub fn targets(&self, name: &str) -> Vec<(String, u16)> {
        self.services
            .get(&dotted(name))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn dotted(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

/// The names Mesos-DNS would make of `snap`:
/// - per framework: `framework.domain` (its scheduler's address) and `_framework._tcp.framework.domain`;
/// - per agent: `slave.domain` and `_slave._tcp.domain`;
/// - `ns1.domain`: this server;
/// - the leader: `leader.domain`, `_leader._tcp.domain`, `_leader._udp.domain`; every server:
///   `master.domain` and `masterN.domain`;
/// - per task: `task.framework.domain` (the container's address, else the agent's) and
///   `task.framework.slave.domain` (the agent's), the same for its canonical name
///   `task-<hash of its id>-<agent>`, and per port `_task._tcp` and `_task._udp` under both
///   `framework.domain` and `framework.slave.domain`, pointing at the canonical name under
///   `slave` with the host port; a named port also gives `_port._task._protocol.framework.domain`;
/// - per named VIP, in [`VIP_ZONE`]: `name.marathon.l4lb.thisdcos.directory` (DC/OS's name:
///   `/shop/db` is `shopdb`, see [`tepui_gateway::vip::dns_name`]), its address.
pub fn generate(snap: &Snapshot, cfg: &Config) -> Table {
    let mut t = Table::default();
    for f in &snap.frameworks {
        let fname = names::domain_frag(&f.name);
        if fname.is_empty() {
            continue;
        }
        if let Some(ip) = f.ip {
            let a = cfg.fqdn(&fname);
            t.host(a.clone(), ip);
            if let Some(port) = f.port {
                t.service(format!("_framework._tcp.{a}"), a, port);
            }
        }
    }
    let slave = cfg.fqdn("slave");
    for a in &snap.agents {
        t.host(slave.clone(), a.ip);
        t.service(cfg.fqdn("_slave._tcp"), slave.clone(), a.port);
    }
    for ip in &cfg.ns_ips {
        t.host(cfg.fqdn("ns1"), *ip);
    }
    if let Some(leader) = snap.leader.and_then(|l| snap.servers.iter().find(|s| s.id == l)) {
        let name = cfg.fqdn("leader");
        t.host(name.clone(), leader.ip);
        t.service(cfg.fqdn("_leader._tcp"), name.clone(), leader.port);
        t.service(cfg.fqdn("_leader._udp"), name, leader.port);
    }
    for (i, s) in snap.servers.iter().enumerate() {
        t.host(cfg.fqdn("master"), s.ip);
        t.host(cfg.fqdn(&format!("master{i}")), s.ip);
    }
    for task in &snap.tasks {
        task_records(&mut t, task, cfg);
    }
    for vip in &snap.vips {
        if let Some(name) = tepui_gateway::vip::dns_name(&vip.name) {
            t.host(format!("{name}."), vip.ip);
        }
    }
    t
}

fn task_records(t: &mut Table, task: &TaskInfo, cfg: &Config) {
    let fname = names::domain_frag(&task.framework);
    let name = names::label(&task.name);
    if fname.is_empty() || name.is_empty() {
        return;
    }
    let canonical = format!(
        "{name}-{}-{}",
        names::task_hash(&task.id),
        names::agent_tail(&task.agent_id)
    );
    let ip = task.container_ip.unwrap_or(task.agent_ip);
    for host in [&name, &canonical] {
        t.host(cfg.fqdn(&format!("{host}.{fname}")), ip);
        t.host(cfg.fqdn(&format!("{host}.{fname}.slave")), task.agent_ip);
    }
    let target = cfg.fqdn(&format!("{canonical}.{fname}.slave"));
    for p in &task.ports {
        for proto in ["tcp", "udp"] {
            for sub in ["", ".slave"] {
                t.service(
                    cfg.fqdn(&format!("_{name}._{proto}.{fname}{sub}")),
                    target.clone(),
                    p.number,
                );
            }
        }
        let port_name = p.name.as_deref().map(names::label).unwrap_or_default();
        let proto = names::label(&p.protocol);
        if !port_name.is_empty() && (proto == "tcp" || proto == "udp") {
            t.service(
                cfg.fqdn(&format!("_{port_name}._{name}._{proto}.{fname}")),
                target.clone(),
                p.number,
            );
        }
    }
}

/// A name's records, ready to be written.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    pub srv: Vec<Record>,
    /// The addresses of the SRV targets (the additional section).
    pub glue: Vec<Record>,
}

impl Node {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.a.is_empty() && self.aaaa.is_empty() && self.srv.is_empty()
    }
}

/// One zone's records, compiled for answering: every name (and every name between them and the
/// apex, which exist without records of their own) to its records, and the apex's SOA and NS.
#[derive(Debug)]
pub(crate) struct Zone {
    pub apex: Name,
    pub names: HashMap<Name, Node>,
    pub soa: Record,
    pub ns: Record,
    /// The name server's addresses (it is `ns1` of the cluster domain for both zones).
    pub ns_glue: Vec<Record>,
}

/// Which zone a name is answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Cluster,
    Vips,
}

/// The zone holding `name`: the most specific of the two (a cluster domain of
/// `thisdcos.directory` leaves `l4lb.thisdcos.directory` to the VIPs); the cluster domain when
/// both are the same.
fn owner(cluster: &Name, vips: &Name, name: &Name) -> Option<Which> {
    match (cluster.zone_of(name), vips.zone_of(name)) {
        (true, true) if vips.num_labels() > cluster.num_labels() => Some(Which::Vips),
        (true, _) => Some(Which::Cluster),
        (false, true) => Some(Which::Vips),
        (false, false) => None,
    }
}

/// `text` as a name, with the zone that holds it.
fn pick<'a>(cluster: &'a mut Zone, vips: &'a mut Zone, text: &str) -> Option<(Name, &'a mut Zone)> {
    let name = Name::from_ascii(text).ok()?;
    match owner(&cluster.apex, &vips.apex, &name)? {
        Which::Cluster => Some((name, cluster)),
        Which::Vips => Some((name, vips)),
    }
}

/// The records this server answers with, compiled: the cluster domain's and the VIP zone's.
#[derive(Debug)]
pub struct Records {
    pub(crate) cluster: Zone,
    pub(crate) vips: Zone,
    table: Table,
    serial: u32,
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

impl Records {
    /// An empty domain (its SOA, NS and `ns1`), before the state is known.
    pub fn empty(cfg: &Config) -> Records {
        let mut t = Table::default();
        for ip in &cfg.ns_ips {
            t.host(cfg.fqdn("ns1"), *ip);
        }
        Records::new(t, cfg, 0)
    }

    /// [`generate`], then [`Records::new`].
    pub fn build(snap: &Snapshot, cfg: &Config, serial: u32) -> Records {
        Records::new(generate(snap, cfg), cfg, serial)
    }

    /// Compiles `table` (names that are not valid DNS names, too long ones for instance, or
    /// that are in neither zone, are left out).
    pub fn new(table: Table, cfg: &Config, serial: u32) -> Records {
        let ttl = cfg.ttl;
        let cluster_apex = Name::from_ascii(cfg.fqdn("")).unwrap_or_else(|_| Name::root());
        let vips_apex = Name::from_ascii(format!("{VIP_ZONE}.")).unwrap_or_else(|_| Name::root());
        let mname = Name::from_ascii(cfg.fqdn("ns1")).unwrap_or_else(|_| cluster_apex.clone());
        let rname = Name::from_ascii(cfg.fqdn("root.ns1")).unwrap_or_else(|_| cluster_apex.clone());
        let ns_glue: Vec<Record> = table
            .hosts
            .get(&cfg.fqdn("ns1"))
            .map(|ips| ips.iter().map(|ip| address_record(mname.clone(), ttl, *ip)).collect())
            .unwrap_or_default();
        // Both zones are this server's: the same name server, serial and TTLs.
        let zone = |apex: Name| Zone {
            soa: Record::from_rdata(
                apex.clone(),
                ttl,
                RData::SOA(SOA::new(mname.clone(), rname.clone(), serial, 60, 600, 86400, ttl)),
            ),
            ns: Record::from_rdata(apex.clone(), ttl, RData::NS(NS(mname.clone()))),
            ns_glue: ns_glue.clone(),
            names: HashMap::new(),
            apex,
        };
        let mut cluster = zone(cluster_apex);
        let mut vips = zone(vips_apex);
        for (host, ips) in &table.hosts {
            let Some((name, zone)) = pick(&mut cluster, &mut vips, host) else {
                tracing::debug!(%host, "not a DNS name of either zone; left out");
                continue;
            };
            let node = zone.names.entry(name.clone()).or_default();
            for ip in ips {
                match ip {
                    IpAddr::V4(_) => node.a.push(address_record(name.clone(), ttl, *ip)),
                    IpAddr::V6(_) => node.aaaa.push(address_record(name.clone(), ttl, *ip)),
                }
            }
        }
        for (service, targets) in &table.services {
            let Some((name, zone)) = pick(&mut cluster, &mut vips, service) else {
                tracing::debug!(%service, "not a DNS name of either zone; left out");
                continue;
            };
            let mut srv = Vec::new();
            let mut glue = Vec::new();
            let mut glued = HashSet::new();
            for (target, port) in targets {
                let Some(target_name) = Name::from_ascii(target).ok() else {
                    continue;
                };
                srv.push(Record::from_rdata(
                    name.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, SRV_WEIGHT, *port, target_name.clone())),
                ));
                // As Mesos-DNS: the first address of each target, once.
                if glued.insert(target.clone()) {
                    if let Some(ips) = table.hosts.get(target) {
                        if let Some(ip) = ips.iter().find(|ip| ip.is_ipv4()) {
                            glue.push(address_record(target_name.clone(), ttl, *ip));
                        }
                        if let Some(ip) = ips.iter().find(|ip| ip.is_ipv6()) {
                            glue.push(address_record(target_name.clone(), ttl, *ip));
                        }
                    }
                }
            }
            let node = zone.names.entry(name).or_default();
            node.srv = srv;
            node.glue = glue;
        }
        // The names between a record's name and the apex exist too (empty non-terminals):
        // `_tcp.marathon.mesos` is no NXDOMAIN while `_web._tcp.marathon.mesos` exists, or a
        // resolver minimising its queries would stop there.
        for zone in [&mut cluster, &mut vips] {
            let owners: Vec<Name> = zone.names.keys().cloned().collect();
            for mut n in owners {
                while n.num_labels() > zone.apex.num_labels() {
                    n = n.base_name();
                    zone.names.entry(n.clone()).or_default();
                }
            }
            zone.names.entry(zone.apex.clone()).or_default();
        }
        Records {
            cluster,
            vips,
            table,
            serial,
        }
    }

    /// The zone `name` is answered from, if it is in one.
    pub(crate) fn zone_for(&self, name: &Name) -> Option<&Zone> {
        match owner(&self.cluster.apex, &self.vips.apex, name)? {
            Which::Cluster => Some(&self.cluster),
            Which::Vips => Some(&self.vips),
        }
    }

    /// The names these records were compiled from.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The domain, fully qualified.
    pub fn zone(&self) -> &Name {
        &self.cluster.apex
    }

    /// The VIP zone, fully qualified (`l4lb.thisdcos.directory.`).
    pub fn vip_zone(&self) -> &Name {
        &self.vips.apex
    }

    /// The SOA's serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many names exist in the two zones (empty non-terminals and apexes included).
    pub fn len(&self) -> usize {
        self.cluster.names.len() + self.vips.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cluster.names.is_empty() && self.vips.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tepui_state::testing::state_with_agents;
    use tepui_state::{FrameworkRecord, HealthCheckDef, JobRunRecord, JobRunStatus, PortDef, TaskDef, TaskState};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg() -> Config {
        Config::new("mesos", 60, vec![ip("10.0.0.1")])
    }

    /// Servers 10.0.0.1 (id 10) and 10.0.0.2 (id 11); agents a1, a2 at 10.1.0.1, 10.1.0.2.
    fn state() -> State {
        let mut s = state_with_agents(2, 4096);
        for (id, n) in s.nodes.iter_mut() {
            n.agent.as_mut().unwrap().http_addr = format!("10.1.0.{id}:5051");
        }
        for (id, last) in [(10u64, 1), (11, 2)] {
            let mut n = s.nodes[&1].clone();
            n.id = id;
            n.name = format!("s{id}");
            n.role = Role::Server;
            n.agent = None;
            n.cluster_addr = format!("10.0.0.{last}:5052");
            n.http_addr = format!("10.0.0.{last}:5050");
            s.nodes.insert(id, n);
        }
        s
    }

    fn def(ports: &[(u16, Option<&str>, &str)]) -> TaskDef {
        TaskDef {
            ports: ports
                .iter()
                .map(|(p, name, proto)| PortDef {
                    name: name.map(str::to_string),
                    host_port: *p,
                    container_port: 0,
                    protocol: proto.to_string(),
                })
                .collect(),
            ..TaskDef::default()
        }
    }

    fn running<'a>(
        s: &'a mut State,
        id: &str,
        name: &str,
        agent: u64,
        framework: &str,
        def: TaskDef,
    ) -> &'a mut TaskRecord {
        let mut t = TaskRecord::staging(id, name, agent, def, 1);
        t.state = TaskState::TaskRunning;
        t.framework_id = framework.into();
        s.tasks.insert(id.into(), t);
        s.tasks.get_mut(id).unwrap()
    }

    fn app_task<'a>(s: &'a mut State, id: &str, app: &str, agent: u64, def: TaskDef) -> &'a mut TaskRecord {
        let t = running(s, id, app, agent, SERVICES_FRAMEWORK_ID, def);
        t.labels.insert(LABEL_APP.into(), app.into());
        t
    }

    fn table(s: &State) -> Table {
        generate(&Snapshot::of(s, Some(10)), &cfg())
    }

    fn canonical(name: &str, id: &str, agent: u64) -> String {
        format!("{name}-{}-{agent}", names::task_hash(id))
    }

    #[test]
    fn a_task_of_an_app_has_its_agents_address() {
        let mut s = state();
        app_task(&mut s, "prod_web.1", "/prod/web", 1, def(&[(31000, None, "tcp")]));
        app_task(&mut s, "prod_web.2", "/prod/web", 2, def(&[(31001, None, "tcp")]));
        let t = table(&s);
        assert_eq!(
            t.addresses("web-prod.marathon.mesos"),
            vec![ip("10.1.0.1"), ip("10.1.0.2")]
        );
        assert_eq!(
            t.addresses("web-prod.marathon.slave.mesos"),
            vec![ip("10.1.0.1"), ip("10.1.0.2")]
        );
        let c1 = canonical("web-prod", "prod_web.1", 1);
        assert_eq!(t.addresses(&format!("{c1}.marathon.mesos")), vec![ip("10.1.0.1")]);
        assert_eq!(t.addresses(&format!("{c1}.marathon.slave.mesos")), vec![ip("10.1.0.1")]);
    }

    #[test]
    fn srv_records_give_each_instance_port_under_both_protocols_and_both_subdomains() {
        let mut s = state();
        app_task(
            &mut s,
            "web.1",
            "/web",
            1,
            def(&[(31000, None, "tcp"), (31005, Some("admin"), "tcp")]),
        );
        app_task(
            &mut s,
            "web.2",
            "/web",
            2,
            def(&[(31001, None, "tcp"), (31006, Some("admin"), "tcp")]),
        );
        let t = table(&s);
        let c1 = format!("{}.marathon.slave.mesos.", canonical("web", "web.1", 1));
        let c2 = format!("{}.marathon.slave.mesos.", canonical("web", "web.2", 2));
        let all = vec![
            (c1.clone(), 31000),
            (c1.clone(), 31005),
            (c2.clone(), 31001),
            (c2.clone(), 31006),
        ];
        let mut sorted = all.clone();
        sorted.sort();
        for name in [
            "_web._tcp.marathon.mesos",
            "_web._udp.marathon.mesos",
            "_web._tcp.marathon.slave.mesos",
            "_web._udp.marathon.slave.mesos",
        ] {
            assert_eq!(t.targets(name), sorted, "{name}");
        }
        // A named port: its own name, under its protocol only.
        assert_eq!(
            t.targets("_admin._web._tcp.marathon.mesos"),
            vec![(c1.clone(), 31005), (c2.clone(), 31006)]
        );
        assert!(t.targets("_admin._web._udp.marathon.mesos").is_empty());
        // Every target resolves to its agent.
        assert_eq!(t.addresses(&c1), vec![ip("10.1.0.1")]);
        assert_eq!(t.addresses(&c2), vec![ip("10.1.0.2")]);
    }

    #[test]
    fn bridge_tasks_resolve_to_their_container_under_the_framework_and_to_the_agent_under_slave() {
        let mut s = state();
        let mut d = def(&[(31000, None, "tcp")]);
        d.network = "bridge".into();
        app_task(&mut s, "db.1", "/db", 1, d);
        let snap = Snapshot::of_with(&s, Some(10), |_| Some(ip("10.213.0.7")));
        let t = generate(&snap, &cfg());
        let c = canonical("db", "db.1", 1);
        assert_eq!(t.addresses("db.marathon.mesos"), vec![ip("10.213.0.7")]);
        assert_eq!(t.addresses(&format!("{c}.marathon.mesos")), vec![ip("10.213.0.7")]);
        assert_eq!(t.addresses("db.marathon.slave.mesos"), vec![ip("10.1.0.1")]);
        // The SRV target is the agent's name with the host port: reachable from anywhere.
        assert_eq!(
            t.targets("_db._tcp.marathon.mesos"),
            vec![(format!("{c}.marathon.slave.mesos."), 31000)]
        );
        // A host task ignores any container address.
        let mut s = state();
        app_task(&mut s, "web.1", "/web", 1, def(&[]));
        let t = generate(&Snapshot::of_with(&s, Some(10), |_| Some(ip("10.213.0.7"))), &cfg());
        assert_eq!(t.addresses("web.marathon.mesos"), vec![ip("10.1.0.1")]);
    }

    #[test]
    fn a_bridge_tasks_container_address_comes_from_the_state() {
        let mut s = state();
        let mut d = def(&[(31000, None, "tcp")]);
        d.network = "bridge".into();
        app_task(&mut s, "db.1", "/db", 1, d.clone()).container_ip = Some(ip("10.213.0.9"));
        // Not reported (yet): the agent's address.
        app_task(&mut s, "cache.1", "/cache", 2, d);
        let t = table(&s);
        assert_eq!(t.addresses("db.marathon.mesos"), vec![ip("10.213.0.9")]);
        assert_eq!(t.addresses("db.marathon.slave.mesos"), vec![ip("10.1.0.1")]);
        assert_eq!(t.addresses("cache.marathon.mesos"), vec![ip("10.1.0.2")]);
    }

    #[test]
    fn only_running_and_healthy_tasks_on_ready_agents_are_found() {
        let mut s = state();
        let checked = TaskDef {
            health_checks: vec![HealthCheckDef {
                protocol: "TCP".into(),
                path: None,
                port: Some(31000),
                command: None,
                grace_period_ms: 0,
                interval_ms: 1000,
                timeout_ms: 1000,
                max_consecutive_failures: 3,
                delay_ms: 0,
            }],
            ..TaskDef::default()
        };
        app_task(&mut s, "up.1", "/up", 1, def(&[]));
        app_task(&mut s, "unchecked.1", "/unchecked", 1, checked.clone()).healthy = None;
        app_task(&mut s, "sick.1", "/sick", 1, checked.clone()).healthy = Some(false);
        app_task(&mut s, "well.1", "/well", 1, checked).healthy = Some(true);
        app_task(&mut s, "staging.1", "/staging", 1, def(&[])).state = TaskState::TaskStaging;
        app_task(&mut s, "killing.1", "/killing", 1, def(&[])).state = TaskState::TaskKilling;
        app_task(&mut s, "done.1", "/done", 1, def(&[])).state = TaskState::TaskFinished;
        app_task(&mut s, "lost.1", "/lost", 2, def(&[]));
        s.nodes.get_mut(&2).unwrap().status = NodeStatus::Lost;
        let t = table(&s);
        let found: Vec<&str> = ["up", "unchecked", "sick", "well", "staging", "killing", "done", "lost"]
            .into_iter()
            .filter(|n| !t.addresses(&format!("{n}.marathon.mesos")).is_empty())
            .collect();
        assert_eq!(found, vec!["up", "well"]);
        // A lost agent is no slave either.
        assert_eq!(t.addresses("slave.mesos"), vec![ip("10.1.0.1")]);
    }

    #[test]
    fn jobs_answer_as_metronome_and_other_frameworks_by_their_name() {
        let mut s = state();
        running(
            &mut s,
            "prod.backup.20240101abc.1",
            "prod.backup",
            1,
            JOBS_FRAMEWORK_ID,
            def(&[]),
        );
        s.frameworks.insert(
            JOBS_FRAMEWORK_ID.into(),
            FrameworkRecord {
                id: JOBS_FRAMEWORK_ID.into(),
                name: JOBS_FRAMEWORK_ID.into(),
                user: "root".into(),
                principal: None,
                hostname: None,
                webui_url: None,
                roles: vec!["*".into()],
                capabilities: vec![],
                failover_timeout_ms: 0,
                registered_at: 0,
                reregistered_at: None,
                connected: true,
                disconnected_at: None,
            },
        );
        s.job_runs.insert(
            "prod.backup.20240101abc".into(),
            JobRunRecord {
                job_id: "prod.backup".into(),
                id: "20240101abc".into(),
                status: JobRunStatus::Active,
                created_at: 0,
                completed_at: None,
                due_at: None,
                tasks: vec!["prod.backup.20240101abc.1".into()],
                arguments: vec![],
                exit_code: None,
                message: None,
            },
        );
        // The operator's own task belongs to no framework.
        running(&mut s, "adhoc.1", "adhoc", 1, "", def(&[]));
        s.frameworks.insert(
            "fw-1".into(),
            FrameworkRecord {
                id: "fw-1".into(),
                name: "Spark.Prod".into(),
                user: "root".into(),
                principal: None,
                hostname: Some("10.9.9.9".into()),
                webui_url: None,
                roles: vec![],
                capabilities: vec![],
                failover_timeout_ms: 0,
                registered_at: 0,
                reregistered_at: None,
                connected: true,
                disconnected_at: None,
            },
        );
        running(&mut s, "exec-1", "Exec_One", 2, "fw-1", def(&[(31002, None, "tcp")]));
        running(&mut s, "orphan", "orphan", 2, "fw-gone", def(&[]));
        let t = table(&s);
        assert_eq!(
            t.addresses("20240101abc-backup-prod.metronome.mesos"),
            vec![ip("10.1.0.1")]
        );
        assert!(t
            .hosts
            .keys()
            .all(|k| !k.starts_with("adhoc") && !k.starts_with("orphan")));
        assert_eq!(t.addresses("exec-one.spark.prod.mesos"), vec![ip("10.1.0.2")]);
        assert_eq!(t.targets("_exec-one._tcp.spark.prod.mesos").len(), 1);
        // Framework records: the scheduler's address; the built-in ones are on the leader.
        assert_eq!(t.addresses("spark.prod.mesos"), vec![ip("10.9.9.9")]);
        assert!(t.targets("_framework._tcp.spark.prod.mesos").is_empty());
        assert_eq!(t.addresses("marathon.mesos"), vec![ip("10.0.0.1")]);
        assert_eq!(
            t.targets("_framework._tcp.marathon.mesos"),
            vec![("marathon.mesos.".into(), 5050)]
        );
        assert_eq!(t.addresses("metronome.mesos"), vec![ip("10.0.0.1")]);
        assert!(
            t.addresses("tepui-jobs.mesos").is_empty(),
            "the jobs framework is metronome"
        );
    }

    #[test]
    fn leader_masters_slaves_and_the_name_server() {
        let s = state();
        let t = generate(&Snapshot::of(&s, Some(11)), &cfg());
        assert_eq!(t.addresses("leader.mesos"), vec![ip("10.0.0.2")]);
        assert_eq!(t.targets("_leader._tcp.mesos"), vec![("leader.mesos.".into(), 5050)]);
        assert_eq!(t.targets("_leader._udp.mesos"), vec![("leader.mesos.".into(), 5050)]);
        assert_eq!(t.addresses("master.mesos"), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(t.addresses("master0.mesos"), vec![ip("10.0.0.1")]);
        assert_eq!(t.addresses("master1.mesos"), vec![ip("10.0.0.2")]);
        assert_eq!(t.addresses("slave.mesos"), vec![ip("10.1.0.1"), ip("10.1.0.2")]);
        assert_eq!(t.targets("_slave._tcp.mesos"), vec![("slave.mesos.".into(), 5051)]);
        assert_eq!(t.addresses("ns1.mesos"), vec![ip("10.0.0.1")]);
        // No leader known: no leader records, the masters stay.
        let t = generate(&Snapshot::of(&s, None), &cfg());
        assert!(t.addresses("leader.mesos").is_empty());
        assert_eq!(t.addresses("master.mesos").len(), 2);
    }

    #[test]
    fn another_domain_and_names_cleaned() {
        let mut s = state();
        app_task(&mut s, "x.1", "/Team_A/My.Service", 1, def(&[]));
        let c = Config::new("Cluster.Example.", 5, vec![]);
        assert_eq!(c.domain, "cluster.example");
        let t = generate(&Snapshot::of(&s, Some(10)), &c);
        assert_eq!(
            t.addresses("my-service-team-a.marathon.cluster.example"),
            vec![ip("10.1.0.1")]
        );
        assert_eq!(Config::new("..", 5, vec![]).domain, "mesos");
    }

    /// Stores app `id` as the services scheduler does (tepui-services' `AppSpec`, as JSON), with
    /// one host port labelled `VIP_0` = `vip`; no instances.
    fn vip_app(s: &mut State, id: &str, vip: &str) {
        let spec = serde_json::json!({
            "id": id, "cmd": "sleep 1000", "args": [], "env": {}, "instances": 1, "cpus": 1.0,
            "mem": 128.0, "disk": 0.0, "gpus": 0, "networks": [{"mode": "host"}],
            "portDefinitions": [{"port": 0, "protocol": "tcp", "labels": {"VIP_0": vip}}],
            "requirePorts": false, "labels": {}, "constraints": [], "healthChecks": [],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
            "backoffSeconds": 1.0, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300.0,
            "killSelection": "YOUNGEST_FIRST",
            "unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600},
            "dependencies": [], "version": "1970-01-01T00:00:00.000Z",
            "versionInfo": {"lastScalingAt": "1970-01-01T00:00:00.000Z", "lastConfigChangeAt": "1970-01-01T00:00:00.000Z"}
        });
        s.apps.insert(
            id.into(),
            tepui_state::AppRecord {
                id: id.into(),
                version: "1970-01-01T00:00:00.000Z".into(),
                spec,
                history: Vec::new(),
            },
        );
    }

    #[test]
    fn named_vips_resolve_in_their_own_zone_to_the_gateways_addresses() {
        let mut s = state();
        vip_app(&mut s, "/shop/db", "/shop/db:5432");
        vip_app(&mut s, "/web", "web:80");
        vip_app(&mut s, "/web2", "/web:8080");
        vip_app(&mut s, "/raw", "10.10.0.5:80");
        let gateway = tepui_gateway::vip::vips(&tepui_gateway::endpoints::apps(&s), &mut Vec::new());
        let ip_of = |name: &str| gateway.iter().find(|v| v.name.as_deref() == Some(name)).unwrap().ip;
        let snap = Snapshot::of(&s, Some(10));
        // One per name, whatever its ports; none for a VIP without a name.
        assert_eq!(
            snap.vips,
            vec![
                VipInfo {
                    name: "/shop/db".into(),
                    ip: ip_of("/shop/db")
                },
                VipInfo {
                    name: "/web".into(),
                    ip: ip_of("/web")
                },
            ]
        );
        let t = generate(&snap, &cfg());
        assert_eq!(
            t.addresses("shopdb.marathon.l4lb.thisdcos.directory"),
            vec![ip_of("/shop/db")]
        );
        assert_eq!(t.addresses("web.marathon.l4lb.thisdcos.directory"), vec![ip_of("/web")]);
        let r = Records::new(t, &cfg(), 1);
        let n = |s: &str| Name::from_ascii(s).unwrap();
        assert_eq!(r.vip_zone(), &n("l4lb.thisdcos.directory."));
        assert_eq!(r.vips.names[&n("web.marathon.l4lb.thisdcos.directory.")].a.len(), 1);
        assert!(r.vips.names[&n("marathon.l4lb.thisdcos.directory.")].is_empty());
        assert!(r.vips.names.contains_key(&n("l4lb.thisdcos.directory.")));
        assert!(!r
            .cluster
            .names
            .contains_key(&n("web.marathon.l4lb.thisdcos.directory.")));
    }

    #[test]
    fn compiled_records_have_empty_non_terminals_and_glue() {
        let mut s = state();
        app_task(&mut s, "web.1", "/web", 1, def(&[(31000, None, "tcp")]));
        let r = Records::build(&Snapshot::of(&s, Some(10)), &cfg(), 7);
        let n = |s: &str| Name::from_ascii(s).unwrap();
        assert!(r.cluster.names[&n("_tcp.marathon.mesos.")].is_empty());
        assert!(r.cluster.names[&n("marathon.slave.mesos.")].is_empty());
        assert!(r.cluster.names.contains_key(&n("mesos.")));
        let srv = &r.cluster.names[&n("_web._tcp.marathon.mesos.")];
        assert_eq!(srv.srv.len(), 1);
        assert_eq!(srv.glue.len(), 1);
        assert_eq!(srv.glue[0].data, RData::A(A(Ipv4Addr::new(10, 1, 0, 1))));
        // Case does not matter.
        assert!(r.cluster.names.contains_key(&n("WEB.Marathon.MESOS.")));
        assert_eq!(r.serial(), 7);
        assert_eq!(r.cluster.ns_glue.len(), 1);
        // A name too long for DNS is left out, the rest stays.
        let mut long = Table::default();
        long.host(format!("{}.mesos.", vec!["a".repeat(60); 5].join(".")), ip("10.0.0.9"));
        long.host("ok.mesos.".into(), ip("10.0.0.9"));
        let r = Records::new(long, &cfg(), 1);
        assert!(r.cluster.names.contains_key(&n("ok.mesos.")));
    }
}
