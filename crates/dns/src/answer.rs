//! One query in, one answer out: the part of the server without I/O.
//!
//! [`handle`] reads a query with hickory, answers it from the [`Records`] when its name is in
//! one of their zones (the cluster domain, the VIP zone), and otherwise says to forward it; [`forwarded`] and [`server_failure`]
//! write the answers to forwarded queries. Every answer fits its transport: over UDP 512 bytes,
//! or what the client's EDNS says (at most 4096); what does not fit loses its additional
//! section first, then answers from the end, with the TC bit set.

use hickory_proto::op::{
    emit_message_parts, Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

use crate::records::{Records, Zone};

/// The longest query read: anything longer is refused.
pub const MAX_QUERY: usize = 4096;
/// The UDP payload this server offers in its EDNS (the size DNS flag day 2020 agreed on).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The largest UDP answer sent, whatever a client's EDNS asks.
pub const MAX_UDP_ANSWER: usize = 4096;
/// The smallest a resource record can be on the wire (a root owner, no data).
const MIN_RECORD: usize = 11;

/// How the query came, and so how long its answer may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// The answer is in the output buffer.
    Reply,
    /// In neither zone: ask the upstream resolvers (the query, read).
    Forward(Box<Message>),
    /// Not a query (a response, or less than a header): nothing is sent back.
    Drop,
}

fn our_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    e.set_version(0);
    e
}

/// The longest answer the client takes.
fn limit(transport: Transport, edns: Option<&Edns>) -> usize {
    match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => edns.map_or(512, |e| (e.max_payload() as usize).clamp(512, MAX_UDP_ANSWER)),
    }
}

/// Answers `query`, or says it must be forwarded or dropped; the answer is written to `out`.
/// `turn` rotates the order of records that have several (round robin across queries).
pub fn handle(records: &Records, query: &[u8], transport: Transport, turn: usize, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
        return Outcome::Drop;
    };
    if header.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let meta = header.metadata;
    if query.len() > MAX_QUERY {
        return error(meta, ResponseCode::Refused, None, None, out);
    }
    let c = header.counts;
    // Checked before reading further: a header can claim far more records than the packet
    // holds, and the reader would reserve room for them all.
    let records_claimed = c.answers as usize + c.authorities as usize + c.additionals as usize;
    if c.queries != 1 || records_claimed * MIN_RECORD > query.len() - 12 {
        return error(meta, ResponseCode::FormErr, None, None, out);
    }
    if meta.op_code != OpCode::Query {
        return error(meta, ResponseCode::NotImp, None, None, out);
    }
    let req = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => return error(meta, ResponseCode::FormErr, None, None, out),
    };
    let q = &req.queries[0];
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        let edns = our_edns();
        return error(meta, ResponseCode::BADVERS, Some(q), Some(&edns), out);
    }
    let Some(zone) = records.zone_for(q.name()) else {
        return Outcome::Forward(Box::new(req));
    };
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        let edns = req.edns.as_ref().map(|_| our_edns());
        return error(meta, ResponseCode::Refused, Some(q), edns.as_ref(), out);
    }
    authoritative(zone, &req, transport, turn, out);
    Outcome::Reply
}

/// The answer this server gives to a question for `name` (fully qualified) of type `qtype`,
/// as [`handle`] writes it for a client over TCP (nothing truncated); none when the name is
/// outside both zones (the server forwards those). For the HTTP API: no packet is sent.
pub fn resolve(records: &Records, name: &hickory_proto::rr::Name, qtype: RecordType) -> Option<Message> {
    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), qtype));
    let bytes = query.to_vec().ok()?;
    let mut out = Vec::new();
    match handle(records, &bytes, Transport::Tcp, 0, &mut out) {
        Outcome::Reply => Message::from_vec(&out).ok(),
        Outcome::Forward(_) | Outcome::Drop => None,
    }
}

fn error(
    request: Metadata,
    code: ResponseCode,
    query: Option<&Query>,
    edns: Option<&Edns>,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut meta = Metadata::response_from_request(&request);
    meta.response_code = code;
    meta.recursion_available = true;
    encode(&meta, query, &[], &[], &[], edns, out);
    Outcome::Reply
}

/// `records[turn..]` then `records[..turn]`.
fn rotated<'a>(records: &'a [Record], turn: usize, into: &mut Vec<&'a Record>) {
    if records.is_empty() {
        return;
    }
    let k = turn % records.len();
    into.extend(records[k..].iter().chain(records[..k].iter()));
}

fn authoritative(zone: &Zone, req: &Message, transport: Transport, turn: usize, out: &mut Vec<u8>) {
    let q = &req.queries[0];
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.authoritative = true;
    meta.recursion_available = true;
    let edns = req.edns.as_ref().map(|_| our_edns());
    let limit = limit(transport, req.edns.as_ref());
    let mut answers: Vec<&Record> = Vec::new();
    let mut additionals: Vec<&Record> = Vec::new();
    let Some(node) = zone.names.get(q.name()) else {
        meta.response_code = ResponseCode::NXDomain;
        write(meta, q, &[], &[&zone.soa], &[], edns.as_ref(), limit, out);
        return;
    };
    let apex = q.name() == &zone.apex;
    let qtype = q.query_type();
    let any = qtype == RecordType::ANY;
    if qtype == RecordType::A || any {
        rotated(&node.a, turn, &mut answers);
    }
    if qtype == RecordType::AAAA || any {
        rotated(&node.aaaa, turn, &mut answers);
    }
    if qtype == RecordType::SRV || any {
        rotated(&node.srv, turn, &mut answers);
        additionals.extend(node.glue.iter());
    }
    if apex && (qtype == RecordType::SOA || any) {
        answers.push(&zone.soa);
    }
    if apex && (qtype == RecordType::NS || any) {
        answers.push(&zone.ns);
        additionals.extend(zone.ns_glue.iter());
    }
    if answers.is_empty() {
        // The name exists, not with this type: NODATA, with the SOA for negative caching.
        write(meta, q, &[], &[&zone.soa], &[], edns.as_ref(), limit, out);
    } else {
        write(meta, q, &answers, &[], &additionals, edns.as_ref(), limit, out);
    }
}

/// The answer to `req` from an upstream's `resp` (or the cache's copy of it).
pub fn forwarded(resp: &Message, req: &Message, transport: Transport, out: &mut Vec<u8>) {
    let mut meta = resp.metadata;
    meta.id = req.metadata.id;
    meta.message_type = MessageType::Response;
    meta.recursion_desired = req.metadata.recursion_desired;
    meta.checking_disabled = req.metadata.checking_disabled;
    meta.recursion_available = true;
    meta.authoritative = false;
    let edns = req.edns.as_ref().map(|_| our_edns());
    let answers: Vec<&Record> = resp.answers.iter().collect();
    let authorities: Vec<&Record> = resp.authorities.iter().collect();
    let additionals: Vec<&Record> = resp.additionals.iter().collect();
    write(
        meta,
        &req.queries[0],
        &answers,
        &authorities,
        &additionals,
        edns.as_ref(),
        limit(transport, req.edns.as_ref()),
        out,
    );
}

/// SERVFAIL for `req`: no upstream answered.
pub fn server_failure(req: &Message, out: &mut Vec<u8>) {
    let edns = req.edns.as_ref().map(|_| our_edns());
    error(
        req.metadata,
        ResponseCode::ServFail,
        req.queries.first(),
        edns.as_ref(),
        out,
    );
}

/// Encodes the message; false when hickory could not (a count past 65535, say).
fn encode(
    meta: &Metadata,
    query: Option<&Query>,
    answers: &[&Record],
    authorities: &[&Record],
    additionals: &[&Record],
    edns: Option<&Edns>,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    let ok = emit_message_parts(
        meta,
        &mut query.into_iter(),
        &mut answers.iter().copied(),
        &mut authorities.iter().copied(),
        &mut additionals.iter().copied(),
        edns,
        None,
        &mut encoder,
    )
    .is_ok();
    if !ok {
        out.clear();
    }
    ok
}

/// Writes the answer within `limit` bytes: all of it if it fits; else without the additional
/// section; else as many answers as fit, with TC set, so the client asks again over TCP.
#[allow(clippy::too_many_arguments)]
fn write(
    meta: Metadata,
    query: &Query,
    answers: &[&Record],
    authorities: &[&Record],
    additionals: &[&Record],
    edns: Option<&Edns>,
    limit: usize,
    out: &mut Vec<u8>,
) {
    let q = Some(query);
    if encode(&meta, q, answers, authorities, additionals, edns, out) && out.len() <= limit {
        return;
    }
    if !additionals.is_empty() && encode(&meta, q, answers, authorities, &[], edns, out) && out.len() <= limit {
        return;
    }
    let mut meta = meta;
    meta.truncation = true;
    // The most answers that fit (none always does: a question fits in any limit here).
    let (mut lo, mut hi) = (0, answers.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if encode(&meta, q, &answers[..mid], &[], &[], edns, out) && out.len() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if !encode(&meta, q, &answers[..lo], &[], &[], edns, out) || out.len() > limit {
        encode(&meta, None, &[], &[], &[], None, out);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, NS, SRV};
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::records::{generate, Config, Snapshot, Table, VipInfo};

    fn records(hosts: &[(&str, &str)], services: &[(&str, &str, u16)]) -> Records {
        let mut t = Table::default();
        for (n, ip) in hosts {
            t.hosts.entry(n.to_string()).or_default().insert(ip.parse().unwrap());
        }
        for (n, target, port) in services {
            t.services
                .entry(n.to_string())
                .or_default()
                .insert((target.to_string(), *port));
        }
        Records::new(t, &Config::new("mesos", 60, vec!["10.0.0.1".parse().unwrap()]), 3)
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(4321, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn ask(r: &Records, name: &str, qtype: RecordType) -> Message {
        let mut out = Vec::new();
        assert!(matches!(
            handle(r, &query(name, qtype, None), Transport::Udp, 0, &mut out),
            Outcome::Reply
        ));
        Message::from_vec(&out).unwrap()
    }

    fn a(ip: &str) -> RData {
        RData::A(A(ip.parse::<Ipv4Addr>().unwrap()))
    }

    #[test]
    fn a_records_are_answered_with_authority_and_rotated() {
        let r = records(
            &[("web.marathon.mesos.", "10.1.0.1"), ("web.marathon.mesos.", "10.1.0.2")],
            &[],
        );
        let m = ask(&r, "Web.Marathon.MESOS.", RecordType::A);
        assert_eq!(m.metadata.id, 4321);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired && m.metadata.recursion_available);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let ips: Vec<RData> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(ips, vec![a("10.1.0.1"), a("10.1.0.2")]);
        let mut out = Vec::new();
        handle(
            &r,
            &query("web.marathon.mesos.", RecordType::A, None),
            Transport::Udp,
            1,
            &mut out,
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers[0].data, a("10.1.0.2"));
        assert_eq!(m.answers[0].ttl, 60);
    }

    #[test]
    fn srv_answers_carry_their_targets_addresses() {
        let r = records(
            &[("web-x-1.marathon.slave.mesos.", "10.1.0.1")],
            &[("_web._tcp.marathon.mesos.", "web-x-1.marathon.slave.mesos.", 31000)],
        );
        let m = ask(&r, "_web._tcp.marathon.mesos.", RecordType::SRV);
        assert_eq!(
            m.answers[0].data,
            RData::SRV(SRV::new(
                0,
                1,
                31000,
                Name::from_ascii("web-x-1.marathon.slave.mesos.").unwrap()
            ))
        );
        assert_eq!(m.additionals.len(), 1);
        assert_eq!(m.additionals[0].data, a("10.1.0.1"));
    }

    #[test]
    fn unknown_names_are_nxdomain_with_the_soa_and_known_ones_without_the_type_nodata() {
        let r = records(&[("web.marathon.mesos.", "10.1.0.1")], &[]);
        let m = ask(&r, "nope.marathon.mesos.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        for (name, t) in [
            ("web.marathon.mesos.", RecordType::AAAA),
            ("web.marathon.mesos.", RecordType::TXT),
            ("marathon.mesos.", RecordType::A),
            ("web.marathon.mesos.", RecordType::SOA),
        ] {
            let m = ask(&r, name, t);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {t}");
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        }
    }

    #[test]
    fn the_apex_has_soa_and_ns() {
        let r = records(&[("ns1.mesos.", "10.0.0.1")], &[]);
        let m = ask(&r, "mesos.", RecordType::SOA);
        assert_eq!(m.answers.len(), 1);
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!("not a SOA")
        };
        assert_eq!(&soa.mname, &Name::from_ascii("ns1.mesos.").unwrap());
        assert_eq!(soa.serial, 3);
        let m = ask(&r, "mesos.", RecordType::NS);
        assert_eq!(m.answers[0].record_type(), RecordType::NS);
        assert_eq!(m.additionals[0].data, a("10.0.0.1"));
        assert_eq!(ask(&r, "mesos.", RecordType::ANY).answers.len(), 2);
    }

    #[test]
    fn other_names_are_forwarded() {
        let r = records(&[], &[]);
        let mut out = Vec::new();
        let o = handle(
            &r,
            &query("example.com.", RecordType::A, None),
            Transport::Udp,
            0,
            &mut out,
        );
        let Outcome::Forward(req) = o else {
            panic!("not forwarded: {o:?}")
        };
        assert_eq!(req.queries[0].name(), &Name::from_ascii("example.com.").unwrap());
        // `mesos.example.com` is not in the domain either.
        let o = handle(
            &r,
            &query("mesos.example.com.", RecordType::A, None),
            Transport::Udp,
            0,
            &mut out,
        );
        assert!(matches!(o, Outcome::Forward(_)));
    }

    /// Records of domain `domain` with `hosts` and the named VIPs `vips` (name, address).
    fn records_with_vips(domain: &str, hosts: &[(&str, &str)], vips: &[(&str, &str)]) -> Records {
        let snap = Snapshot {
            vips: vips
                .iter()
                .map(|(name, ip)| VipInfo {
                    name: name.to_string(),
                    ip: ip.parse().unwrap(),
                })
                .collect(),
            ..Snapshot::default()
        };
        let cfg = Config::new(domain, 60, vec!["10.0.0.1".parse().unwrap()]);
        let mut t = generate(&snap, &cfg);
        for (n, ip) in hosts {
            t.hosts.entry(n.to_string()).or_default().insert(ip.parse().unwrap());
        }
        Records::new(t, &cfg, 3)
    }

    #[test]
    fn vip_names_are_answered_with_authority_from_their_own_zone() {
        let r = records_with_vips("mesos", &[], &[("/shop/db", "198.18.183.135")]);
        let m = ask(&r, "ShopDB.marathon.l4lb.thisdcos.directory.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        let ips: Vec<RData> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(ips, vec![a("198.18.183.135")]);
        // Unknown names get NXDOMAIN with the zone's own SOA; known ones NODATA for other types.
        let zone = Name::from_ascii("l4lb.thisdcos.directory.").unwrap();
        for (name, code) in [
            ("db.marathon.l4lb.thisdcos.directory.", ResponseCode::NXDomain),
            ("shopdb.marathon.l4lb.thisdcos.directory.", ResponseCode::NoError),
            ("marathon.l4lb.thisdcos.directory.", ResponseCode::NoError),
        ] {
            let t = if code == ResponseCode::NoError {
                RecordType::AAAA
            } else {
                RecordType::A
            };
            let m = ask(&r, name, t);
            assert_eq!(m.metadata.response_code, code, "{name}");
            assert!(m.metadata.authoritative && m.answers.is_empty(), "{name}");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            assert_eq!(m.authorities[0].name, zone);
        }
        // The apex: SOA and NS, served by the cluster's name server.
        let m = ask(&r, "l4lb.thisdcos.directory.", RecordType::SOA);
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!("not a SOA")
        };
        assert_eq!(&soa.mname, &Name::from_ascii("ns1.mesos.").unwrap());
        assert_eq!(soa.serial, 3);
        let m = ask(&r, "l4lb.thisdcos.directory.", RecordType::NS);
        assert_eq!(
            m.answers[0].data,
            RData::NS(NS(Name::from_ascii("ns1.mesos.").unwrap()))
        );
        assert_eq!(m.additionals[0].data, a("10.0.0.1"));
    }

    #[test]
    fn names_outside_both_zones_are_still_forwarded() {
        let r = records_with_vips("mesos", &[], &[("/web", "198.18.83.116")]);
        let mut out = Vec::new();
        for name in [
            "example.com.",
            "thisdcos.directory.",
            "leader.thisdcos.directory.",
            "l4lb.thisdcos.directory.example.com.",
        ] {
            let o = handle(&r, &query(name, RecordType::A, None), Transport::Udp, 0, &mut out);
            assert!(matches!(o, Outcome::Forward(_)), "{name}: {o:?}");
        }
    }

    #[test]
    fn a_cluster_domain_above_the_vip_zone_leaves_it_its_names() {
        let r = records_with_vips(
            "thisdcos.directory",
            &[("leader.thisdcos.directory.", "10.0.0.2")],
            &[("/web", "198.18.83.116")],
        );
        let m = ask(&r, "leader.thisdcos.directory.", RecordType::A);
        assert_eq!(m.answers[0].data, a("10.0.0.2"));
        let m = ask(&r, "web.marathon.l4lb.thisdcos.directory.", RecordType::A);
        assert_eq!(m.answers[0].data, a("198.18.83.116"));
        let m = ask(&r, "nope.l4lb.thisdcos.directory.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            m.authorities[0].name,
            Name::from_ascii("l4lb.thisdcos.directory.").unwrap()
        );
    }

    #[test]
    fn bad_input_is_dropped_or_answered_with_an_error() {
        let r = records(&[("web.marathon.mesos.", "10.1.0.1")], &[]);
        let mut out = Vec::new();
        let good = query("web.marathon.mesos.", RecordType::A, None);
        // Shorter than a header, or a response: nothing.
        assert!(matches!(
            handle(&r, &good[..5], Transport::Udp, 0, &mut out),
            Outcome::Drop
        ));
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(matches!(
            handle(&r, &response, Transport::Udp, 0, &mut out),
            Outcome::Drop
        ));
        // Cut anywhere after the header: FORMERR with the id.
        for cut in 12..good.len() {
            assert!(matches!(
                handle(&r, &good[..cut], Transport::Udp, 0, &mut out),
                Outcome::Reply
            ));
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "cut at {cut}");
            assert_eq!(m.metadata.id, 4321);
        }
        // Claims of thousands of records in a small packet.
        let mut claims = good.clone();
        claims[10] = 0xff;
        claims[11] = 0xff;
        handle(&r, &claims, Transport::Udp, 0, &mut out);
        assert_eq!(
            Message::from_vec(&out).unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
        // Two questions, or none.
        let mut two = good.clone();
        two[5] = 2;
        handle(&r, &two, Transport::Udp, 0, &mut out);
        assert_eq!(
            Message::from_vec(&out).unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
        // Too long: refused.
        let mut long = good.clone();
        long.resize(MAX_QUERY + 1, 0);
        handle(&r, &long, Transport::Udp, 0, &mut out);
        assert_eq!(
            Message::from_vec(&out).unwrap().metadata.response_code,
            ResponseCode::Refused
        );
        // Another opcode.
        let mut update = good.clone();
        update[2] = (update[2] & 0x87) | (5 << 3);
        handle(&r, &update, Transport::Udp, 0, &mut out);
        assert_eq!(
            Message::from_vec(&out).unwrap().metadata.response_code,
            ResponseCode::NotImp
        );
        // Random bytes never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            let mut junk = Vec::with_capacity(len % 300);
            for _ in 0..len % 300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            if junk.len() > 2 {
                junk[2] &= 0x7f;
            }
            let _ = handle(&r, &junk, Transport::Udp, 0, &mut out);
        }
    }

    #[test]
    fn big_answers_are_truncated_over_udp_unless_edns_allows_them() {
        let hosts: Vec<(String, String)> = (1..=60)
            .map(|i| ("big.marathon.mesos.".to_string(), format!("10.1.0.{i}")))
            .collect();
        let hosts: Vec<(&str, &str)> = hosts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let r = records(&hosts, &[]);
        let mut out = Vec::new();
        handle(
            &r,
            &query("big.marathon.mesos.", RecordType::A, None),
            Transport::Udp,
            0,
            &mut out,
        );
        assert!(out.len() <= 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 60);
        handle(
            &r,
            &query("big.marathon.mesos.", RecordType::A, Some(4096)),
            Transport::Udp,
            0,
            &mut out,
        );
        let m = Message::from_vec(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
        assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
        handle(
            &r,
            &query("big.marathon.mesos.", RecordType::A, None),
            Transport::Tcp,
            0,
            &mut out,
        );
        let m = Message::from_vec(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[test]
    fn edns_versions_past_zero_get_badvers() {
        let r = records(&[], &[]);
        let mut m = Message::from_vec(&query("web.marathon.mesos.", RecordType::A, Some(1232))).unwrap();
        m.edns.as_mut().unwrap().set_version(1);
        let mut out = Vec::new();
        handle(&r, &m.to_vec().unwrap(), Transport::Udp, 0, &mut out);
        // 16 is BADVERS in an answer to a query with EDNS (hickory reads it as BADSIG, its TSIG twin).
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.edns.is_some());
    }
}
