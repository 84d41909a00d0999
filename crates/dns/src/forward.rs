//! Names outside the cluster domain: asked of the upstream resolvers in turn (UDP, then TCP when
//! the answer was truncated), each within a timeout, their answers cached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::answer::EDNS_PAYLOAD;
use crate::cache::{Cache, Key};

/// The upstream resolvers of a host's resolv.conf (its `nameserver` lines, port 53).
pub fn resolv_conf_upstreams(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // A link-local IPv6 address may carry its zone (`fe80::1%eth0`): not usable here.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The host's upstream resolvers (`/etc/resolv.conf`); none if it cannot be read.
pub fn system_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| resolv_conf_upstreams(&t))
        .unwrap_or_default()
}

/// Asks the upstream resolvers, through the cache.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    cache: Cache,
    in_flight: Arc<Semaphore>,
}

fn key_of(req: &Message) -> Option<Key> {
    let q = req.queries.first()?;
    Some((q.name().clone(), q.query_type(), q.query_class()))
}

impl Forwarder {
    /// Asks `upstreams` in order, each for at most `timeout`; keeps up to `cache_capacity`
    /// answers, and `max_in_flight` questions upstream at once.
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        cache_capacity: usize,
        max_in_flight: usize,
    ) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            cache: Cache::new(cache_capacity),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cached answer to `req`, if any.
    pub fn cached(&self, req: &Message) -> Option<Message> {
        self.cache.get(&key_of(req)?, Instant::now())
    }

    /// A place among the questions upstream; none when all are taken.
    pub fn try_begin(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// The answer to `req`: cached, or from the first upstream that answers it (not with
    /// SERVFAIL or REFUSED); none when none does. Over TCP (`tcp`) a truncated UDP answer is
    /// asked again over TCP, so the client gets all of it.
    pub async fn resolve(&self, req: &Message, tcp: bool) -> Option<Message> {
        let key = key_of(req)?;
        if let Some(m) = self.cache.get(&key, Instant::now()) {
            return Some(m);
        }
        for upstream in &self.upstreams {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let answer = match exchange_udp(*upstream, req, deadline).await {
                Ok(m) if m.metadata.truncation && tcp => exchange_tcp(*upstream, req, deadline).await,
                other => other,
            };
            match answer {
                Ok(m) if !matches!(m.metadata.response_code, ResponseCode::ServFail | ResponseCode::Refused) => {
                    self.cache.put(key, m.clone(), Instant::now());
                    return Some(m);
                }
                Ok(m) => tracing::debug!(%upstream, code = %m.metadata.response_code, "upstream failed"),
                Err(e) => tracing::debug!(%upstream, error = %e, "upstream did not answer"),
            }
        }
        None
    }
}

/// The question of `req` as this server asks it: a fresh id, recursion desired, EDNS.
fn upstream_query(req: &Message, id: u16) -> std::io::Result<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = req.metadata.checking_disabled;
    m.add_queries(req.queries.iter().cloned());
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(e);
    m.to_vec().map_err(std::io::Error::other)
}

/// Whether `resp` answers `id` with `req`'s question.
fn answers(resp: &Message, req: &Message, id: u16) -> bool {
    resp.metadata.id == id
        && resp.metadata.message_type == MessageType::Response
        && resp.queries.len() == req.queries.len()
        && resp.queries.iter().zip(&req.queries).all(|(a, b)| {
            a.name() == b.name() && a.query_type() == b.query_type() && a.query_class() == b.query_class()
        })
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")
}

async fn exchange_udp(upstream: SocketAddr, req: &Message, deadline: tokio::time::Instant) -> std::io::Result<Message> {
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A socket of its own (a random port) per question: an answer is only taken from the
    // upstream asked, with the id and the question asked.
    let sock = UdpSocket::bind(any).await?;
    sock.connect(upstream).await?;
    let id = rand::random::<u16>();
    sock.send(&upstream_query(req, id)?).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if answers(&m, req, id) {
                return Ok(m);
            }
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, req: &Message, deadline: tokio::time::Instant) -> std::io::Result<Message> {
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(upstream))
        .await
        .map_err(|_| timed_out())??;
    let id = rand::random::<u16>();
    let q = upstream_query(req, id)?;
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
    framed.extend_from_slice(&q);
    tokio::time::timeout_at(deadline, stream.write_all(&framed))
        .await
        .map_err(|_| timed_out())??;
    loop {
        let len = tokio::time::timeout_at(deadline, stream.read_u16())
            .await
            .map_err(|_| timed_out())?? as usize;
        let mut buf = vec![0u8; len];
        tokio::time::timeout_at(deadline, stream.read_exact(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        if let Ok(m) = Message::from_vec(&buf) {
            if answers(&m, req, id) {
                return Ok(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver  2001:db8::1 \nnameserver fe80::1%eth0\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            resolv_conf_upstreams(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        assert!(resolv_conf_upstreams("").is_empty());
    }
}
