//! The cache of upstream answers: bounded (CLOCK eviction: a full cache replaces the first entry
//! that expired or was not read since the hand last passed it), honouring TTLs (an answer lives
//! as long as its shortest record, a negative one as its SOA says, at most an hour), and handing
//! out copies whose TTLs have counted down. Time is passed in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// The longest an answer is kept, whatever its TTL.
pub const MAX_TTL: u32 = 3600;

/// What an answer is cached under: its question (the name case-insensitively).
pub type Key = (Name, RecordType, DNSClass);

struct Slot {
    key: Key,
    msg: Arc<Message>,
    stored: Instant,
    expires: Instant,
    used: bool,
}

#[derive(Default)]
struct Inner {
    index: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

impl Inner {
    fn remove(&mut self, i: usize) {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key.clone(), i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }
}

/// A bounded cache of answers by question.
pub struct Cache {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// How long `msg` may be cached: the shortest TTL of its answers; for NXDOMAIN and NODATA the
/// SOA's (the smaller of its TTL and its minimum, RFC 2308); none for failures, truncated
/// answers and negative ones without a SOA.
pub fn ttl_of(msg: &Message) -> Option<u32> {
    if msg.metadata.truncation {
        return None;
    }
    let ttl = match msg.metadata.response_code {
        ResponseCode::NoError if !msg.answers.is_empty() => msg.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => msg.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        }),
        _ => None,
    }?;
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A copy of the answer to `key`, its TTLs lowered by the time it has been kept; none when
    /// there is none or it expired (then it is dropped).
    pub fn get(&self, key: &Key, now: Instant) -> Option<Message> {
        let (msg, stored) = {
            let mut inner = self.lock();
            let i = *inner.index.get(key)?;
            if inner.slots[i].expires <= now {
                inner.remove(i);
                return None;
            }
            let slot = &mut inner.slots[i];
            slot.used = true;
            (slot.msg.clone(), slot.stored)
        };
        let elapsed = now.saturating_duration_since(stored).as_secs().min(u32::MAX as u64) as u32;
        let mut msg = (*msg).clone();
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(elapsed);
        }
        Some(msg)
    }

    /// Keeps `msg` as the answer to `key`, if it may be cached ([`ttl_of`]).
    pub fn put(&self, key: Key, msg: Message, now: Instant) {
        let Some(ttl) = ttl_of(&msg) else {
            return;
        };
        let slot = Slot {
            key: key.clone(),
            msg: Arc::new(msg),
            stored: now,
            expires: now + Duration::from_secs(ttl as u64),
            used: false,
        };
        let mut inner = self.lock();
        if let Some(&i) = inner.index.get(&key) {
            inner.slots[i] = slot;
            return;
        }
        if inner.slots.len() < self.capacity {
            let i = inner.slots.len();
            inner.slots.push(slot);
            inner.index.insert(key, i);
            return;
        }
        // CLOCK: at most two turns of the hand (the first clears every `used`).
        let len = inner.slots.len();
        for _ in 0..2 * len {
            let hand = inner.hand;
            inner.hand = (hand + 1) % len;
            let s = &mut inner.slots[hand];
            if s.expires <= now || !s.used {
                let old = std::mem::replace(s, slot);
                inner.index.remove(&old.key);
                inner.index.insert(key, hand);
                return;
            }
            s.used = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    use super::*;

    fn key(name: &str) -> Key {
        (Name::from_ascii(name).unwrap(), RecordType::A, DNSClass::IN)
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            Name::from_ascii("x.example.").unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
        m
    }

    fn negative(code: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        let n = Name::from_ascii("example.").unwrap();
        m.add_authority(Record::from_rdata(
            n.clone(),
            soa_ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 1, 1, 1, minimum)),
        ));
        m
    }

    #[test]
    fn ttls_decide_how_long() {
        assert_eq!(ttl_of(&answer(30)), Some(30));
        assert_eq!(ttl_of(&answer(0)), None);
        assert_eq!(ttl_of(&answer(86400)), Some(MAX_TTL));
        assert_eq!(ttl_of(&negative(ResponseCode::NXDomain, 300, 60)), Some(60));
        assert_eq!(ttl_of(&negative(ResponseCode::NoError, 20, 60)), Some(20));
        assert_eq!(ttl_of(&negative(ResponseCode::ServFail, 300, 60)), None);
        let mut nxdomain_without_soa = answer(30);
        nxdomain_without_soa.answers.clear();
        nxdomain_without_soa.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(ttl_of(&nxdomain_without_soa), None);
        let mut truncated = answer(30);
        truncated.metadata.truncation = true;
        assert_eq!(ttl_of(&truncated), None);
    }

    #[test]
    fn answers_count_down_and_expire() {
        let c = Cache::new(10);
        let t0 = Instant::now();
        c.put(key("x.example."), answer(30), t0);
        // Names are compared without case.
        let m = c.get(&key("X.Example."), t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(m.answers[0].ttl, 20);
        assert!(c.get(&key("x.example."), t0 + Duration::from_secs(30)).is_none());
        assert!(c.is_empty());
        assert!(c.get(&key("y.example."), t0).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_keeps_what_is_read() {
        let c = Cache::new(100);
        let t0 = Instant::now();
        c.put(key("hot.example."), answer(300), t0);
        for i in 0..10_000 {
            c.put(key(&format!("n{i}.example.")), answer(300), t0);
            assert!(c.len() <= 100);
            // Read often, so CLOCK keeps it.
            if i % 50 == 0 {
                assert!(c.get(&key("hot.example."), t0).is_some(), "evicted at {i}");
            }
        }
        assert_eq!(c.len(), 100);
        // Expired entries go first.
        let c = Cache::new(2);
        c.put(key("a.example."), answer(1), t0);
        c.put(key("b.example."), answer(300), t0);
        c.get(&key("a.example."), t0);
        c.get(&key("b.example."), t0);
        c.put(key("c.example."), answer(300), t0 + Duration::from_secs(5));
        assert!(c.get(&key("b.example."), t0 + Duration::from_secs(5)).is_some());
        assert!(c.get(&key("c.example."), t0 + Duration::from_secs(5)).is_some());
    }
}
