use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the filter decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
}

#[derive(Debug, Default)]
struct Rules {
    blocked: HashSet<(u64, u64)>,
    isolated: HashSet<u64>,
    delays: HashMap<(u64, u64), Duration>,
}

/// Fault injection between nodes, by node id: partitions, isolation, dropped and delayed
/// messages. Every outgoing cluster message asks it first. In production nobody sets a rule,
/// so every message passes; the test harness shares one filter among all its nodes.
#[derive(Clone, Debug, Default)]
pub struct NetFilter {
    rules: Arc<Mutex<Rules>>,
}

impl NetFilter {
    fn with<T>(&self, f: impl FnOnce(&mut Rules) -> T) -> T {
        f(&mut self.rules.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Drops everything between the two groups, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.with(|r| {
            for &x in a {
                for &y in b {
                    r.blocked.insert((x, y));
                    r.blocked.insert((y, x));
                }
            }
        })
    }

    /// Drops messages from `from` to `to` only.
    pub fn block(&self, from: u64, to: u64) {
        self.with(|r| r.blocked.insert((from, to)));
    }

    /// Cuts a node off from every other.
    pub fn isolate(&self, id: u64) {
        self.with(|r| r.isolated.insert(id));
    }

    pub fn delay(&self, from: u64, to: u64, by: Duration) {
        self.with(|r| r.delays.insert((from, to), by));
    }

    /// Removes every rule.
    pub fn heal(&self) {
        self.with(|r| *r = Rules::default())
    }

    pub fn is_isolated(&self, id: u64) -> bool {
        self.with(|r| r.isolated.contains(&id))
    }

    pub fn verdict(&self, from: u64, to: u64) -> Verdict {
        self.with(|r| {
            if r.isolated.contains(&from) || r.isolated.contains(&to) || r.blocked.contains(&(from, to)) {
                Verdict::Drop
            } else if let Some(d) = r.delays.get(&(from, to)) {
                Verdict::Delay(*d)
            } else {
                Verdict::Pass
            }
        })
    }

    /// Waits out a delay rule; false when the message must be dropped.
    pub async fn admit(&self, from: u64, to: u64) -> bool {
        match self.verdict(from, to) {
            Verdict::Pass => true,
            Verdict::Drop => false,
            Verdict::Delay(d) => {
                tokio::time::sleep(d).await;
                // The rules may have changed while the message was in flight.
                self.verdict(from, to) != Verdict::Drop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_symmetric_and_heals() {
        let f = NetFilter::default();
        f.partition(&[1], &[2, 3]);
        assert_eq!(f.verdict(1, 2), Verdict::Drop);
        assert_eq!(f.verdict(3, 1), Verdict::Drop);
        assert_eq!(f.verdict(2, 3), Verdict::Pass);
        f.heal();
        assert_eq!(f.verdict(1, 2), Verdict::Pass);
    }

    #[test]
    fn isolation_and_delay() {
        let f = NetFilter::default();
        f.isolate(4);
        f.delay(1, 2, Duration::from_millis(5));
        assert_eq!(f.verdict(4, 1), Verdict::Drop);
        assert_eq!(f.verdict(1, 4), Verdict::Drop);
        assert_eq!(f.verdict(1, 2), Verdict::Delay(Duration::from_millis(5)));
        assert!(f.is_isolated(4));
    }
}
