//! Load shedding on a UDP socket: a source that floods a saturated socket while others ask
//! too gets only one answer in [`SLIP`]; its other packets are read and dropped, which costs a
//! fraction of answering, so the socket's queue drains and the others' queries get in.
//!
//! `SO_REUSEPORT` puts one client address and port on one socket: a flood fills that socket's
//! queue, and a client that shares it loses most of its queries unless the thread reads faster
//! than the flood comes. A lone client, however fast (a benchmark), is never shed: there is no
//! one to protect. Time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Packets per look at who sends what.
pub const WINDOW: u32 = 4096;
/// A window that fills faster than this means the socket is saturated (80,000 queries a
/// second or more on one socket).
pub const SATURATED: Duration = Duration::from_millis(50);
/// The share of a window that makes a source the one to shed: three quarters.
const DOMINANT: (u32, u32) = (3, 4);
/// How long a source is shed after the last window that found it flooding.
pub const SHED_FOR: Duration = Duration::from_secs(1);
/// A shed source gets one answer in this many.
pub const SLIP: u32 = 8;

pub struct Shedder {
    total: u32,
    started: Instant,
    counts: HashMap<IpAddr, u32>,
    shedding: Option<IpAddr>,
    until: Instant,
    slip: u32,
}

impl Shedder {
    pub fn new(now: Instant) -> Shedder {
        Shedder {
            total: 0,
            started: now,
            counts: HashMap::new(),
            shedding: None,
            until: now,
            slip: 0,
        }
    }

    /// The source being shed, if any.
    pub fn shedding(&self) -> Option<IpAddr> {
        self.shedding
    }

    /// Whether to answer a packet from `src`; `clock` is read only at the end of a window and
    /// for the shed source's packets.
    pub fn admit(&mut self, src: IpAddr, clock: impl Fn() -> Instant) -> bool {
        self.total += 1;
        *self.counts.entry(src).or_default() += 1;
        if self.total >= WINDOW {
            self.look(clock());
        }
        if self.shedding != Some(src) {
            return true;
        }
        if clock() >= self.until {
            self.shedding = None;
            return true;
        }
        self.slip = self.slip.wrapping_add(1);
        self.slip.is_multiple_of(SLIP)
    }

    fn look(&mut self, now: Instant) {
        let saturated = now.saturating_duration_since(self.started) < SATURATED;
        let top = self.counts.iter().max_by_key(|(_, c)| **c).map(|(ip, c)| (*ip, *c));
        if let Some((ip, c)) = top {
            if saturated && self.counts.len() > 1 && c * DOMINANT.1 >= self.total * DOMINANT.0 {
                if self.shedding != Some(ip) {
                    tracing::warn!(source = %ip, "dns: a source floods a saturated socket while others ask; answering one query in {SLIP} of its");
                }
                self.shedding = Some(ip);
                self.until = now + SHED_FOR;
            }
        }
        self.counts.clear();
        self.total = 0;
        self.started = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `n` packets from `src`, `gap` apart from `*now`; how many were admitted.
    fn send(s: &mut Shedder, src: IpAddr, n: u32, now: &mut Instant, gap: Duration) -> u32 {
        let mut admitted = 0;
        for _ in 0..n {
            *now += gap;
            let t = *now;
            admitted += s.admit(src, || t) as u32;
        }
        admitted
    }

    #[test]
    fn a_lone_client_is_never_shed_however_fast() {
        let mut now = Instant::now();
        let mut s = Shedder::new(now);
        let fast = Duration::from_nanos(1000);
        assert_eq!(send(&mut s, ip("10.0.0.1"), 10 * WINDOW, &mut now, fast), 10 * WINDOW);
        assert_eq!(s.shedding(), None);
    }

    #[test]
    fn a_flood_beside_others_is_shed_then_forgiven() {
        let mut now = Instant::now();
        let mut s = Shedder::new(now);
        let fast = Duration::from_nanos(1000);
        let (flood, other) = (ip("10.0.0.1"), ip("10.0.0.2"));
        send(&mut s, flood, WINDOW - 10, &mut now, fast);
        assert_eq!(send(&mut s, other, 10, &mut now, fast), 10);
        assert_eq!(s.shedding(), Some(flood));
        // One in SLIP of the flood's packets is answered; the other client's all are.
        let admitted = send(&mut s, flood, 800, &mut now, fast);
        assert_eq!(admitted, 800 / SLIP);
        assert_eq!(send(&mut s, other, 5, &mut now, fast), 5);
        // When the flood stops, it is answered again after SHED_FOR.
        now += SHED_FOR;
        assert_eq!(send(&mut s, flood, 3, &mut now, fast), 3);
        assert_eq!(s.shedding(), None);
    }

    #[test]
    fn busy_but_not_saturated_or_shared_fairly_is_not_shed() {
        let mut now = Instant::now();
        let mut s = Shedder::new(now);
        // Slow: a window takes longer than SATURATED.
        let slow = SATURATED / WINDOW * 2;
        send(&mut s, ip("10.0.0.1"), WINDOW - 1, &mut now, slow);
        send(&mut s, ip("10.0.0.2"), 1, &mut now, slow);
        assert_eq!(s.shedding(), None);
        // Fast, but two clients half and half.
        let fast = Duration::from_nanos(1000);
        for _ in 0..WINDOW / 2 {
            send(&mut s, ip("10.0.0.1"), 1, &mut now, fast);
            send(&mut s, ip("10.0.0.2"), 1, &mut now, fast);
        }
        assert_eq!(s.shedding(), None);
    }
}
