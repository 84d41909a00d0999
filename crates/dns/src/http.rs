//! The records over HTTP: Mesos-DNS's API on a port of its own, and tepui's `/v1/dns` routes.
//!
//! [`mesos_dns_router`] is Mesos-DNS's HTTP API (`resolver/resolver.go`'s `configureHTTP`), with
//! its JSON shapes to the key: `GET /v1/version`, `/v1/config`, `/v1/hosts/{host}`,
//! `/v1/services/{service}` (and `/v1/hosts/{host}/ports`, which Mesos-DNS answers 501). Its
//! enumeration routes (`/v1/enumerate`, `/v1/axfr`) are off, as `EnumerationOn: false` says.
//!
//! It is served without authentication, as Mesos-DNS serves it, on a listener of its own
//! (port 8123), outside tepui's API and its route table (where every route names the capability
//! it needs, through `tepui_auth::Routes`, and a test walks them all). That is deliberate: it
//! tells what the DNS port already answers to anyone who asks (names, addresses, ports), and
//! this server's DNS settings, which hold no secret (tepui has no Mesos credentials to show).
//! The router has those five routes and nothing else: none of tepui's API is reachable there.
//!
//! [`routes`] is tepui's own view of the same records on the API (`/v1/dns/records`,
//! `/v1/dns/lookup`), behind the gate like every other route (the Read capability). Each
//! server answers them itself from its own records: DNS answers are per server.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use serde::{Deserialize, Serialize};
use tepui_api::{DnsLookupView, DnsRecordView, DnsRecordsView};
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::{Error, ErrorKind, Node};
use tepui_state::Role;

use crate::records::{Config, Records, SRV_WEIGHT};
use crate::server::RecordsHandle;

/// Mesos-DNS's default HTTP port.
pub const DEFAULT_PORT: u16 = 8123;
/// What `/v1/version` says as `Service`: clients check it.
const SERVICE: &str = "Mesos-DNS";
/// What `/v1/version` says as `URL` when the workspace names no repository of its own.
const MESOS_DNS_URL: &str = "https://github.com/mesosphere/mesos-dns";

/// What `/v1/config` tells of a server's DNS besides its records' [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where DNS is served (UDP and TCP).
    pub listen: SocketAddr,
    /// The port of this API (the listener's, on the same IP).
    pub http_port: u16,
    /// The upstream resolvers, in order.
    pub upstreams: Vec<SocketAddr>,
    pub upstream_timeout: Duration,
}

#[derive(Clone)]
struct MesosDns {
    node: Node,
    records: RecordsHandle,
    cfg: Arc<Config>,
    settings: Arc<Settings>,
}

/// Mesos-DNS's HTTP API over `records` (see the module's header for why it is public).
pub fn mesos_dns_router(node: Node, records: RecordsHandle, cfg: Config, settings: Settings) -> Router {
    Router::new()
        .route("/v1/version", get(version))
        .route("/v1/config", get(config))
        .route("/v1/hosts/{host}", get(host))
        .route("/v1/hosts/{host}/ports", get(ports))
        .route("/v1/services/{service}", get(service))
        .with_state(MesosDns {
            node,
            records,
            cfg: Arc::new(cfg),
            settings: Arc::new(settings),
        })
}

/// `/v1/version`: Mesos-DNS's keys with tepui's version.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "Version")]
    pub version: String,
}

async fn version() -> Json<VersionView> {
    let url = env!("CARGO_PKG_REPOSITORY");
    Json(VersionView {
        service: SERVICE.into(),
        url: if url.is_empty() { MESOS_DNS_URL } else { url }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Mesos-DNS's `records.Config` as its `/v1/config` writes it: every exported field under its
/// Go name (or JSON tag), in its order. tepui's values where a setting applies; where none
/// does (ZooKeeper, state polling, Mesos credentials, certificate files), its zero value.
#[allow(non_snake_case)]
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The most the records lag the state: they are rebuilt on every change (no polling),
    /// at most every [`crate::MIN_REBUILD_INTERVAL`]; under a second, so 1.
    pub RefreshSeconds: u64,
    /// The DNS port.
    pub Port: u16,
    /// Seconds an upstream has to answer.
    pub Timeout: u64,
    pub StateTimeoutSeconds: u64,
    pub ZkDetectionTimeout: u64,
    pub HttpPort: u16,
    pub TTL: u32,
    pub SRVRecordDefaultWeight: u16,
    /// The applied index the records were built at.
    pub SOASerial: u32,
    pub SOARefresh: u32,
    pub SOARetry: u32,
    pub SOAExpire: u32,
    pub SOAMinttl: u32,
    pub SOAMname: String,
    pub SOARname: String,
    /// The servers' API addresses (the Mesos masters).
    pub Masters: Vec<String>,
    pub ZoneResolvers: std::collections::BTreeMap<String, Vec<String>>,
    /// `IP` for port 53, else `IP:PORT`, as Mesos-DNS writes them.
    pub Resolvers: Vec<String>,
    /// Bridge tasks by their container's address, then the agent's.
    pub IPSources: Vec<String>,
    pub Zk: String,
    pub Domain: String,
    pub File: String,
    pub Listener: String,
    pub HTTPListener: String,
    pub RecurseOn: bool,
    pub DnsOn: bool,
    pub HttpOn: bool,
    /// Names outside the domain are forwarded (when there is an upstream).
    pub ExternalOn: bool,
    pub EnforceRFC952: bool,
    pub SetTruncateBit: bool,
    pub EnumerationOn: bool,
    pub MesosHTTPSOn: bool,
    pub CACertFile: String,
    pub CertFile: String,
    pub KeyFile: String,
    pub MesosCredentials: Credentials,
    pub IAMConfigFile: String,
    pub MesosAuthentication: String,
}

#[allow(non_snake_case)]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    pub Principal: String,
    pub Secret: String,
}

/// The values of the SOA records.rs writes: `SOA::new(mname, rname, serial, 60, 600, 86400, ttl)`.
const SOA_REFRESH: u32 = 60;
const SOA_RETRY: u32 = 600;
const SOA_EXPIRE: u32 = 86400;

fn resolver_string(addr: &SocketAddr) -> String {
    if addr.port() == 53 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// `/v1/config` for a server whose DNS is `cfg` and `settings`, with its records at `serial`
/// and the servers' API addresses `masters`.
pub fn config_view(cfg: &Config, settings: &Settings, serial: u32, masters: Vec<String>) -> ConfigView {
    let listener = settings.listen.ip().to_string();
    ConfigView {
        RefreshSeconds: 1,
        Port: settings.listen.port(),
        Timeout: settings.upstream_timeout.as_secs().max(1),
        StateTimeoutSeconds: 0,
        ZkDetectionTimeout: 0,
        HttpPort: settings.http_port,
        TTL: cfg.ttl,
        SRVRecordDefaultWeight: SRV_WEIGHT,
        SOASerial: serial,
        SOARefresh: SOA_REFRESH,
        SOARetry: SOA_RETRY,
        SOAExpire: SOA_EXPIRE,
        SOAMinttl: cfg.ttl,
        SOAMname: format!("ns1.{}.", cfg.domain),
        SOARname: format!("root.ns1.{}.", cfg.domain),
        Masters: masters,
        ZoneResolvers: Default::default(),
        Resolvers: settings.upstreams.iter().map(resolver_string).collect(),
        IPSources: vec!["netinfo".into(), "host".into()],
        Zk: String::new(),
        Domain: cfg.domain.clone(),
        File: String::new(),
        Listener: listener.clone(),
        HTTPListener: listener,
        RecurseOn: true,
        DnsOn: true,
        HttpOn: true,
        ExternalOn: !settings.upstreams.is_empty(),
        EnforceRFC952: false,
        SetTruncateBit: true,
        EnumerationOn: false,
        MesosHTTPSOn: false,
        CACertFile: String::new(),
        CertFile: String::new(),
        KeyFile: String::new(),
        MesosCredentials: Credentials::default(),
        IAMConfigFile: String::new(),
        MesosAuthentication: String::new(),
    }
}

async fn config(State(m): State<MesosDns>) -> Json<ConfigView> {
    let masters = m.node.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.role == Role::Server)
            .map(|n| n.http_addr.clone())
            .collect()
    });
    let serial = m.records.current().serial();
    Json(config_view(&m.cfg, &m.settings, serial, masters))
}

/// A name as Mesos-DNS's handlers take it: wildcards (`.*`) out, lowercase, with the dot.
fn clean(name: &str) -> String {
    let mut dom = name.replace(".*", "").to_ascii_lowercase();
    if !dom.ends_with('.') {
        dom.push('.');
    }
    dom
}

/// One address of a host, as `/v1/hosts/{host}` lists them.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub host: String,
    pub ip: String,
}

/// `/v1/hosts/{host}`: the host's addresses (A, then AAAA); for an unknown host one empty
/// entry, as Mesos-DNS answers.
pub fn hosts(records: &Records, host: &str) -> Vec<HostView> {
    let dom = clean(host);
    let mut out: Vec<HostView> = records
        .table()
        .hosts
        .get(&dom)
        .into_iter()
        .flatten()
        .map(|ip| HostView {
            host: dom.clone(),
            ip: ip.to_string(),
        })
        .collect();
    if out.is_empty() {
        out.push(HostView::default());
    }
    out
}

async fn host(State(m): State<MesosDns>, Path(name): Path<String>) -> Json<Vec<HostView>> {
    Json(hosts(&m.records.current(), &name))
}

async fn ports() -> Response {
    (StatusCode::NOT_IMPLEMENTED, "To be implemented...").into_response()
}

/// One target of a service, as `/v1/services/{service}` lists them.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The name as asked (Mesos-DNS does not clean it here).
    pub service: String,
    pub host: String,
    pub ip: String,
    /// A string, as in Mesos-DNS.
    pub port: String,
}

/// `/v1/services/{service}`: each SRV target with its first IPv4 and first IPv6 address (a
/// target without an address is left out); for an unknown service one empty entry.
pub fn services(records: &Records, service: &str) -> Vec<ServiceView> {
    let dom = clean(service);
    let table = records.table();
    let mut out = Vec::new();
    for (target, port) in table.services.get(&dom).into_iter().flatten() {
        let ips: Option<&BTreeSet<IpAddr>> = table.hosts.get(target);
        let first_v4 = ips.and_then(|s| s.iter().find(|ip| ip.is_ipv4()));
        let first_v6 = ips.and_then(|s| s.iter().find(|ip| ip.is_ipv6()));
        for ip in first_v4.into_iter().chain(first_v6) {
            out.push(ServiceView {
                service: service.to_string(),
                host: target.clone(),
                ip: ip.to_string(),
                port: port.to_string(),
            });
        }
    }
    if out.is_empty() {
        out.push(ServiceView::default());
    }
    out
}

async fn service(State(m): State<MesosDns>, Path(name): Path<String>) -> Json<Vec<ServiceView>> {
    Json(services(&m.records.current(), &name))
}

/// tepui's `/v1/dns` routes over `dns` (none: this server serves no DNS, and says so).
pub fn routes(dns: Option<RecordsHandle>) -> Routes {
    Routes::new()
        .route("/v1/dns/records", Policy::new().get(Cap::Read), get(all_records))
        .route("/v1/dns/lookup", Policy::new().get(Cap::Read), get(lookup))
        .with_state(dns)
}

fn dns_off() -> Error {
    Error::new(
        ErrorKind::NotFound,
        "dns_off",
        "this server does not serve DNS (it was started with --dns-port 0)",
    )
}

fn record_view(r: &Record) -> DnsRecordView {
    DnsRecordView {
        name: r.name.to_string(),
        rtype: r.record_type().to_string(),
        ttl: r.ttl,
        data: r.data.to_string(),
    }
}

/// Every record of the domain: the apex's SOA and NS, then every name's A, AAAA and SRV
/// records, sorted by name; then the VIP zone's the same way, when there are named VIPs.
pub fn records_view(records: &Records) -> DnsRecordsView {
    let mut out = Vec::new();
    // The VIP zone always has its apex: more names means VIPs.
    let vips = (records.vips.names.len() > 1).then_some(&records.vips);
    for zone in std::iter::once(&records.cluster).chain(vips) {
        out.push(record_view(&zone.soa));
        out.push(record_view(&zone.ns));
        let mut names: Vec<(&Name, &crate::records::Node)> = zone.names.iter().collect();
        names.sort_by_key(|(n, _)| n.to_string());
        for (_, node) in names {
            out.extend(node.a.iter().chain(&node.aaaa).chain(&node.srv).map(record_view));
        }
    }
    DnsRecordsView {
        domain: records.zone().to_string(),
        serial: records.serial(),
        records: out,
    }
}

async fn all_records(State(dns): State<Option<RecordsHandle>>) -> Result<Json<DnsRecordsView>, Error> {
    let dns = dns.ok_or_else(dns_off)?;
    Ok(Json(records_view(&dns.current())))
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    name: String,
    #[serde(default, rename = "type")]
    qtype: Option<String>,
}

/// The record types a lookup may ask for.
fn query_type(text: &str) -> Result<RecordType, Error> {
    let upper = text.trim().to_ascii_uppercase();
    match RecordType::from_str(&upper) {
        Ok(t)
            if !matches!(
                t,
                RecordType::Unknown(_) | RecordType::OPT | RecordType::AXFR | RecordType::IXFR
            ) =>
        {
            Ok(t)
        }
        _ => Err(Error::new(
            ErrorKind::Invalid,
            "invalid_type",
            format!("{text:?} is not a record type to ask for; give one like A, AAAA, SRV, SOA, NS or ANY"),
        )
        .field("type")),
    }
}

fn rcode(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// The answer this server's DNS gives to `name` (fully qualified or not) and `qtype`, as the
/// API shows it; an error for a name that is no DNS name, or outside both zones.
pub fn lookup_view(records: &Records, name: &str, qtype: RecordType) -> Result<DnsLookupView, Error> {
    let invalid = |why: String| Error::new(ErrorKind::Invalid, "invalid_name", why).field("name");
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(invalid("give a name to look up, like web.marathon.mesos".into()));
    }
    let mut fqdn = Name::from_ascii(trimmed).map_err(|e| invalid(format!("{trimmed:?} is not a DNS name: {e}")))?;
    fqdn.set_fqdn(true);
    let Some(answer) = crate::answer::resolve(records, &fqdn, qtype) else {
        return Err(Error::new(
            ErrorKind::Invalid,
            "outside_domain",
            format!(
                "{fqdn} is not in the cluster domain {} nor in the VIP zone {}: this server forwards such names to its upstream resolvers; ask one of them",
                records.zone(),
                records.vip_zone()
            ),
        )
        .field("name"));
    };
    Ok(lookup_from(&answer, &fqdn, qtype))
}

fn lookup_from(m: &Message, name: &Name, qtype: RecordType) -> DnsLookupView {
    DnsLookupView {
        name: name.to_string(),
        qtype: qtype.to_string(),
        rcode: rcode(m.metadata.response_code),
        authoritative: m.metadata.authoritative,
        answers: m.answers.iter().map(record_view).collect(),
        authority: m.authorities.iter().map(record_view).collect(),
        additional: m.additionals.iter().map(record_view).collect(),
    }
}

async fn lookup(
    State(dns): State<Option<RecordsHandle>>,
    q: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DnsLookupView>, Error> {
    let Query(q) = q.map_err(|e| {
        Error::new(
            ErrorKind::BadRequest,
            "bad_query",
            format!(
                "{}; ask as /v1/dns/lookup?name=web.marathon.mesos&type=A",
                e.body_text()
            ),
        )
    })?;
    let dns = dns.ok_or_else(dns_off)?;
    let qtype = query_type(q.qtype.as_deref().unwrap_or("A"))?;
    Ok(Json(lookup_view(&dns.current(), &q.name, qtype)?))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::records::Table;

    fn records() -> Records {
        let mut t = Table::default();
        let mut host = |n: &str, ip: &str| {
            t.hosts.entry(n.to_string()).or_default().insert(ip.parse().unwrap());
        };
        host("web.marathon.mesos.", "10.1.0.1");
        host("web.marathon.mesos.", "10.1.0.2");
        host("web-a-1.marathon.slave.mesos.", "10.1.0.1");
        host("web-b-2.marathon.slave.mesos.", "10.1.0.2");
        host("web-b-2.marathon.slave.mesos.", "fd00::2");
        host("ns1.mesos.", "10.0.0.1");
        let mut service = |n: &str, target: &str, port: u16| {
            t.services
                .entry(n.to_string())
                .or_default()
                .insert((target.to_string(), port));
        };
        service("_web._tcp.marathon.mesos.", "web-a-1.marathon.slave.mesos.", 31000);
        service("_web._tcp.marathon.mesos.", "web-b-2.marathon.slave.mesos.", 31001);
        service("_web._tcp.marathon.mesos.", "gone.marathon.slave.mesos.", 31002);
        Records::new(t, &Config::new("mesos", 60, vec!["10.0.0.1".parse().unwrap()]), 42)
    }

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn hosts_are_listed_as_mesos_dns_does_with_one_empty_entry_for_none() {
        let r = records();
        assert_eq!(
            to_json(&hosts(&r, "Web.Marathon.mesos")),
            json!([
                {"host": "web.marathon.mesos.", "ip": "10.1.0.1"},
                {"host": "web.marathon.mesos.", "ip": "10.1.0.2"},
            ])
        );
        // A then AAAA; wildcards stripped.
        assert_eq!(
            to_json(&hosts(&r, "web-b-2.*.marathon.slave.mesos.")),
            json!([
                {"host": "web-b-2.marathon.slave.mesos.", "ip": "10.1.0.2"},
                {"host": "web-b-2.marathon.slave.mesos.", "ip": "fd00::2"},
            ])
        );
        assert_eq!(to_json(&hosts(&r, "nope.mesos")), json!([{"host": "", "ip": ""}]));
    }

    #[test]
    fn services_give_each_target_its_first_addresses_and_the_port_as_a_string() {
        let r = records();
        assert_eq!(
            to_json(&services(&r, "_web._tcp.marathon.mesos")),
            json!([
                {"service": "_web._tcp.marathon.mesos", "host": "web-a-1.marathon.slave.mesos.", "ip": "10.1.0.1", "port": "31000"},
                {"service": "_web._tcp.marathon.mesos", "host": "web-b-2.marathon.slave.mesos.", "ip": "10.1.0.2", "port": "31001"},
                {"service": "_web._tcp.marathon.mesos", "host": "web-b-2.marathon.slave.mesos.", "ip": "fd00::2", "port": "31001"},
            ])
        );
        assert_eq!(
            to_json(&services(&r, "_db._tcp.marathon.mesos.")),
            json!([{"service": "", "host": "", "ip": "", "port": ""}])
        );
    }

    #[test]
    fn config_has_every_key_of_mesos_dns_in_its_order() {
        let settings = Settings {
            listen: "10.0.0.1:5053".parse().unwrap(),
            http_port: 8123,
            upstreams: vec!["10.0.0.53:53".parse().unwrap(), "10.0.0.54:5353".parse().unwrap()],
            upstream_timeout: Duration::from_secs(2),
        };
        let cfg = Config::new("mesos", 5, vec![]);
        let text = serde_json::to_string(&config_view(&cfg, &settings, 9, vec!["10.0.0.1:5050".into()])).unwrap();
        // The keys of Mesos-DNS's records.Config (encoding/json: exported fields in order).
        let keys = [
            "RefreshSeconds",
            "Port",
            "Timeout",
            "StateTimeoutSeconds",
            "ZkDetectionTimeout",
            "HttpPort",
            "TTL",
            "SRVRecordDefaultWeight",
            "SOASerial",
            "SOARefresh",
            "SOARetry",
            "SOAExpire",
            "SOAMinttl",
            "SOAMname",
            "SOARname",
            "Masters",
            "ZoneResolvers",
            "Resolvers",
            "IPSources",
            "Zk",
            "Domain",
            "File",
            "Listener",
            "HTTPListener",
            "RecurseOn",
            "DnsOn",
            "HttpOn",
            "ExternalOn",
            "EnforceRFC952",
            "SetTruncateBit",
            "EnumerationOn",
            "MesosHTTPSOn",
            "CACertFile",
            "CertFile",
            "KeyFile",
            "MesosCredentials",
            "IAMConfigFile",
            "MesosAuthentication",
        ];
        let mut at = 0;
        for k in keys {
            let found = text[at..]
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing or out of order in {text}"));
            at += found;
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_object().unwrap().len(), keys.len());
        assert_eq!(v["Port"], 5053);
        assert_eq!(v["HttpPort"], 8123);
        assert_eq!(v["TTL"], 5);
        assert_eq!(v["Domain"], "mesos");
        assert_eq!(v["Listener"], "10.0.0.1");
        assert_eq!(v["Resolvers"], json!(["10.0.0.53", "10.0.0.54:5353"]));
        assert_eq!(v["Masters"], json!(["10.0.0.1:5050"]));
        assert_eq!(v["SOAMname"], "ns1.mesos.");
        assert_eq!(v["SOARname"], "root.ns1.mesos.");
        assert_eq!(v["SOASerial"], 9);
        assert_eq!(v["ZoneResolvers"], json!({}));
        assert_eq!(v["MesosCredentials"], json!({"Principal": "", "Secret": ""}));
        assert_eq!(v["ExternalOn"], true);
        assert_eq!(v["EnumerationOn"], false);
    }

    #[test]
    fn version_has_mesos_dns_keys() {
        let v = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(version());
        let v = to_json(&v.0);
        assert_eq!(v["Service"], "Mesos-DNS");
        assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
        assert!(v["URL"].as_str().unwrap().starts_with("https://"));
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn the_records_view_lists_every_record_sorted() {
        let v = to_json(&records_view(&records()));
        assert_eq!(v["domain"], "mesos.");
        assert_eq!(v["serial"], 42);
        let rows = v["records"].as_array().unwrap();
        assert_eq!(rows[0]["name"], "mesos.");
        assert_eq!(rows[0]["type"], "SOA");
        assert_eq!(rows[1]["type"], "NS");
        assert_eq!(rows[1]["data"], "ns1.mesos.");
        assert!(rows.contains(&json!({"name": "web.marathon.mesos.", "type": "A", "ttl": 60, "data": "10.1.0.2"})));
        assert!(rows
            .contains(&json!({"name": "web-b-2.marathon.slave.mesos.", "type": "AAAA", "ttl": 60, "data": "fd00::2"})));
        assert!(rows.contains(&json!({
            "name": "_web._tcp.marathon.mesos.", "type": "SRV", "ttl": 60,
            "data": "0 1 31001 web-b-2.marathon.slave.mesos."
        })));
        let names: Vec<&str> = rows[2..].iter().map(|r| r["name"].as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_records_view_lists_the_vip_zone_after_the_domain_when_there_are_vips() {
        let mut t = Table::default();
        t.hosts
            .entry("web.marathon.l4lb.thisdcos.directory.".into())
            .or_default()
            .insert("198.18.83.116".parse().unwrap());
        t.hosts
            .entry("ns1.mesos.".into())
            .or_default()
            .insert("10.0.0.1".parse().unwrap());
        let r = Records::new(t, &Config::new("mesos", 60, vec![]), 1);
        let v = to_json(&records_view(&r));
        let rows: Vec<(&str, &str)> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap(), r["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("mesos.", "SOA"),
                ("mesos.", "NS"),
                ("ns1.mesos.", "A"),
                ("l4lb.thisdcos.directory.", "SOA"),
                ("l4lb.thisdcos.directory.", "NS"),
                ("web.marathon.l4lb.thisdcos.directory.", "A"),
            ]
        );
        let v = lookup_view(&r, "web.marathon.l4lb.thisdcos.directory", RecordType::A).unwrap();
        assert_eq!(v.answers[0].data, "198.18.83.116");
        let e = lookup_view(&r, "example.com", RecordType::A).unwrap_err();
        assert!(e.message.contains("l4lb.thisdcos.directory."), "{}", e.message);
    }

    #[test]
    fn a_lookup_is_the_dns_answer_records_nxdomain_or_nodata() {
        let r = records();
        let v = lookup_view(&r, "_web._tcp.marathon.mesos", RecordType::SRV).unwrap();
        assert_eq!(v.name, "_web._tcp.marathon.mesos.");
        assert_eq!(v.qtype, "SRV");
        assert_eq!(v.rcode, "NOERROR");
        assert!(v.authoritative);
        let mut srv: Vec<&str> = v.answers.iter().map(|a| a.data.as_str()).collect();
        srv.sort();
        assert_eq!(
            srv,
            [
                "0 1 31000 web-a-1.marathon.slave.mesos.",
                "0 1 31001 web-b-2.marathon.slave.mesos.",
                "0 1 31002 gone.marathon.slave.mesos."
            ]
        );
        assert!(v.additional.iter().any(|a| a.data == "10.1.0.1"));

        let v = lookup_view(&r, "Web.Marathon.Mesos.", RecordType::A).unwrap();
        assert_eq!(v.answers.len(), 2);
        assert_eq!(v.answers[0].ttl, 60);

        let v = lookup_view(&r, "nope.marathon.mesos", RecordType::A).unwrap();
        assert_eq!(v.rcode, "NXDOMAIN");
        assert!(v.answers.is_empty());
        assert_eq!(v.authority[0].rtype, "SOA");

        // NODATA: the name exists, not with this type.
        let v = lookup_view(&r, "web.marathon.mesos", RecordType::AAAA).unwrap();
        assert_eq!(v.rcode, "NOERROR");
        assert!(v.answers.is_empty());

        let e = lookup_view(&r, "example.com", RecordType::A).unwrap_err();
        assert_eq!(e.code, "outside_domain");
        assert!(lookup_view(&r, "", RecordType::A).is_err());
        assert!(lookup_view(&r, "a..b", RecordType::A).is_err());
    }

    #[test]
    fn lookup_types_are_read_in_any_case() {
        assert_eq!(query_type("srv").unwrap(), RecordType::SRV);
        assert_eq!(query_type(" aaaa ").unwrap(), RecordType::AAAA);
        assert_eq!(query_type("ANY").unwrap(), RecordType::ANY);
        assert!(query_type("bogus").is_err());
        assert!(query_type("AXFR").is_err());
    }
}
