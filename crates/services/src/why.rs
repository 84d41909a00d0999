//! "Why is my app not running?": per app, what happened to the offers considered for it.
//!
//! [`OfferStats`] keeps the last offers (a sliding window) with every reason each did not fit,
//! and counters since the current launch attempt began. It produces Marathon's
//! `processedOffersSummary` for `/v2/queue` and a one-line explanation of the most common
//! reason, such as "3 of the last 10 offers lacked cpus (app needs 4, the largest offer had 2)".

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::fit::{Rejection, REASONS};
use crate::time::format_timestamp;

/// The window used when none is configured.
pub const DEFAULT_WINDOW: usize = 50;

/// One considered offer; no rejections means it was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRecord {
    pub at: u64,
    pub agent_id: String,
    pub rejections: Vec<Rejection>,
}

impl OfferRecord {
    /// The first failing step in Marathon's filter order.
    fn first_rank(&self) -> Option<usize> {
        self.rejections.iter().map(Rejection::rank).min()
    }
}

/// Offer statistics of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStats {
    window: usize,
    recent: VecDeque<OfferRecord>,
    attempt_processed: u64,
    attempt_unused: u64,
    attempt_declined: [u64; REASONS.len()],
    last_used_at: Option<u64>,
    last_unused_at: Option<u64>,
}

/// Marathon's `processedOffersSummary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessedOffersSummary {
    pub processed_offers_count: u64,
    pub unused_offers_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unused_offer_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_offer_at: Option<String>,
    pub reject_summary_last_offers: Vec<DeclinedOfferStep>,
    pub reject_summary_launch_attempt: Vec<DeclinedOfferStep>,
}

/// How many offers reached a filter step and how many it declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclinedOfferStep {
    pub reason: String,
    pub declined: u64,
    pub processed: u64,
}

impl Default for OfferStats {
    fn default() -> Self {
        OfferStats::new(DEFAULT_WINDOW)
    }
}

impl OfferStats {
    /// Keeps the last `window` offers (at least one).
    pub fn new(window: usize) -> OfferStats {
        OfferStats {
            window: window.max(1),
            recent: VecDeque::new(),
            attempt_processed: 0,
            attempt_unused: 0,
            attempt_declined: [0; REASONS.len()],
            last_used_at: None,
            last_unused_at: None,
        }
    }

    /// Records one considered offer: `rejections` empty means the offer was used.
    pub fn record(&mut self, now: u64, agent_id: &str, rejections: Vec<Rejection>) {
        let record = OfferRecord {
            at: now,
            agent_id: agent_id.to_string(),
            rejections,
        };
        self.attempt_processed += 1;
        match record.first_rank() {
            Some(rank) => {
                self.attempt_unused += 1;
                self.attempt_declined[rank] += 1;
                self.last_unused_at = Some(now);
            }
            None => self.last_used_at = Some(now),
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }

    /// A new launch attempt begins (instances were queued again): the attempt counters restart,
    /// the window of recent offers stays.
    pub fn start_launch_attempt(&mut self) {
        self.attempt_processed = 0;
        self.attempt_unused = 0;
        self.attempt_declined = [0; REASONS.len()];
    }

    /// The recent offers, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &OfferRecord> {
        self.recent.iter()
    }

    pub fn summary(&self) -> ProcessedOffersSummary {
        let mut last = [0u64; REASONS.len()];
        for rank in self.recent.iter().filter_map(OfferRecord::first_rank) {
            last[rank] += 1;
        }
        ProcessedOffersSummary {
            processed_offers_count: self.attempt_processed,
            unused_offers_count: self.attempt_unused,
            last_unused_offer_at: self.last_unused_at.map(format_timestamp),
            last_used_offer_at: self.last_used_at.map(format_timestamp),
            reject_summary_last_offers: funnel(self.recent.len() as u64, &last),
            reject_summary_launch_attempt: funnel(self.attempt_processed, &self.attempt_declined),
        }
    }

    /// One line on the most common reason among the recent offers (ties go to the earlier
    /// filter step); `None` when no recent offer was declined.
    pub fn explain(&self) -> Option<String> {
        let total = self.recent.len();
        let mut counts = [0usize; REASONS.len()];
        for record in &self.recent {
            let mut seen = [false; REASONS.len()];
            for r in &record.rejections {
                seen[r.rank()] = true;
            }
            for (count, hit) in counts.iter_mut().zip(seen) {
                *count += usize::from(hit);
            }
        }
        let (rank, &count) = counts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
        if count == 0 {
            return None;
        }
        let matching: Vec<&Rejection> = self
            .recent
            .iter()
            .flat_map(|rec| rec.rejections.iter())
            .filter(|r| r.rank() == rank)
            .collect();
        let subject = if total == 1 {
            "The last offer".to_string()
        } else {
            format!("{count} of the last {total} offers")
        };
        Some(format!("{subject} {}", describe(&matching)))
    }
}

/// Marathon's funnel: each step sees the offers the earlier steps did not decline.
fn funnel(processed: u64, declined: &[u64; REASONS.len()]) -> Vec<DeclinedOfferStep> {
    let mut remaining = processed;
    REASONS
        .iter()
        .zip(declined)
        .map(|(reason, &d)| {
            let step = DeclinedOfferStep {
                reason: reason.to_string(),
                declined: d,
                processed: remaining,
            };
            remaining = remaining.saturating_sub(d);
            step
        })
        .collect()
}

/// The predicate and detail for rejections of one kind (all of the same kind, newest last).
fn describe(rejections: &[&Rejection]) -> String {
    let max = |f: fn(&Rejection) -> Option<f64>| rejections.iter().filter_map(|r| f(r)).fold(0.0f64, f64::max);
    match rejections.last() {
        Some(Rejection::InsufficientCpus { needed, .. }) => {
            let largest = max(|r| match r {
                Rejection::InsufficientCpus { offered, .. } => Some(*offered),
                _ => None,
            });
            format!("lacked cpus (app needs {needed}, the largest offer had {largest})")
        }
        Some(Rejection::InsufficientMemory { needed, .. }) => {
            let largest = max(|r| match r {
                Rejection::InsufficientMemory { offered, .. } => Some(*offered),
                _ => None,
            });
            format!("lacked memory (app needs {needed} MiB, the largest offer had {largest} MiB)")
        }
        Some(Rejection::InsufficientDisk { needed, .. }) => {
            let largest = max(|r| match r {
                Rejection::InsufficientDisk { offered, .. } => Some(*offered),
                _ => None,
            });
            format!("lacked disk (app needs {needed} MiB, the largest offer had {largest} MiB)")
        }
        Some(Rejection::InsufficientGpus { needed, .. }) => {
            let largest = max(|r| match r {
                Rejection::InsufficientGpus { offered, .. } => Some(f64::from(*offered)),
                _ => None,
            });
            format!("lacked gpus (app needs {needed}, the largest offer had {largest})")
        }
        Some(Rejection::InsufficientPorts { missing, .. }) if !missing.is_empty() => {
            let ports: Vec<String> = missing.iter().map(ToString::to_string).collect();
            let noun = if missing.len() == 1 { "port" } else { "ports" };
            format!("lacked ports (app needs host {noun} {}, not offered)", ports.join(", "))
        }
        Some(Rejection::InsufficientPorts { needed, .. }) => {
            let largest = max(|r| match r {
                Rejection::InsufficientPorts { offered, .. } => Some(*offered as f64),
                _ => None,
            });
            format!("lacked ports (app needs {needed}, the largest offer had {largest})")
        }
        Some(Rejection::UnfulfilledConstraint(v)) => {
            format!("did not meet constraint {} (latest: {})", v.constraint, v.reason)
        }
        Some(Rejection::UnfulfilledRole { accepted, offered }) => format!(
            "had no resources in an accepted role (app accepts {}, the latest offer had {})",
            accepted.join(", "),
            offered.join(", ")
        ),
        Some(Rejection::AgentMaintenance) => "came from agents in maintenance".to_string(),
        None => "were declined".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::ConstraintViolation;

    fn cpus(offered: f64) -> Vec<Rejection> {
        vec![Rejection::InsufficientCpus { needed: 4.0, offered }]
    }

    #[test]
    fn explains_the_most_common_reason() {
        let mut s = OfferStats::new(10);
        assert_eq!(s.explain(), None);
        for i in 0..7 {
            s.record(i, "a", vec![]);
        }
        assert_eq!(s.explain(), None, "used offers explain nothing");
        s.record(7, "b", cpus(2.0));
        s.record(8, "c", cpus(1.0));
        s.record(
            9,
            "d",
            vec![
                Rejection::InsufficientMemory {
                    needed: 512.0,
                    offered: 0.0,
                },
                cpus(0.5).remove(0),
            ],
        );
        assert_eq!(
            s.explain().unwrap(),
            "3 of the last 10 offers lacked cpus (app needs 4, the largest offer had 2)"
        );
    }

    #[test]
    fn the_window_slides() {
        let mut s = OfferStats::new(3);
        s.record(0, "a", cpus(1.0));
        s.record(1, "a", vec![Rejection::AgentMaintenance]);
        s.record(2, "a", vec![Rejection::AgentMaintenance]);
        s.record(3, "a", vec![]);
        assert_eq!(s.recent().count(), 3);
        assert_eq!(
            s.explain().unwrap(),
            "2 of the last 3 offers came from agents in maintenance"
        );
        let mut one = OfferStats::new(1);
        one.record(
            0,
            "a",
            vec![Rejection::InsufficientMemory {
                needed: 512.0,
                offered: 256.0,
            }],
        );
        assert_eq!(
            one.explain().unwrap(),
            "The last offer lacked memory (app needs 512 MiB, the largest offer had 256 MiB)"
        );
    }

    #[test]
    fn explains_constraints_roles_and_ports() {
        let mut s = OfferStats::new(5);
        let v = ConstraintViolation {
            constraint: "hostname:UNIQUE".into(),
            reason: "an instance already runs on hostname a".into(),
        };
        s.record(0, "a", vec![Rejection::UnfulfilledConstraint(v)]);
        assert_eq!(
            s.explain().unwrap(),
            "The last offer did not meet constraint hostname:UNIQUE (latest: an instance already runs on hostname a)"
        );
        let mut r = OfferStats::new(5);
        r.record(
            0,
            "a",
            vec![Rejection::UnfulfilledRole {
                accepted: vec!["slave_public".into()],
                offered: vec!["*".into()],
            }],
        );
        assert_eq!(
            r.explain().unwrap(),
            "The last offer had no resources in an accepted role (app accepts slave_public, the latest offer had *)"
        );
        let mut p = OfferStats::new(5);
        p.record(
            0,
            "a",
            vec![Rejection::InsufficientPorts {
                needed: 2,
                offered: 100,
                missing: vec![80],
            }],
        );
        p.record(
            1,
            "a",
            vec![Rejection::InsufficientPorts {
                needed: 2,
                offered: 1,
                missing: vec![],
            }],
        );
        assert!(p.explain().unwrap().starts_with("2 of the last 2 offers lacked ports"));
    }

    #[test]
    fn summary_is_marathons_funnel() {
        let mut s = OfferStats::new(10);
        s.record(
            1_000,
            "a",
            vec![Rejection::UnfulfilledRole {
                accepted: vec![],
                offered: vec![],
            }],
        );
        s.record(2_000, "b", cpus(1.0));
        s.record(
            3_000,
            "c",
            vec![
                Rejection::InsufficientMemory {
                    needed: 1.0,
                    offered: 0.0,
                },
                cpus(1.0).remove(0),
            ],
        );
        s.record(4_000, "d", vec![]);
        let sum = s.summary();
        assert_eq!(sum.processed_offers_count, 4);
        assert_eq!(sum.unused_offers_count, 3);
        assert_eq!(sum.last_used_offer_at.as_deref(), Some("1970-01-01T00:00:04.000Z"));
        assert_eq!(sum.last_unused_offer_at.as_deref(), Some("1970-01-01T00:00:03.000Z"));
        let steps: Vec<(&str, u64, u64)> = sum
            .reject_summary_last_offers
            .iter()
            .map(|d| (d.reason.as_str(), d.declined, d.processed))
            .collect();
        assert_eq!(
            steps,
            [
                ("UnfulfilledRole", 1, 4),
                ("UnfulfilledConstraint", 0, 3),
                ("AgentMaintenance", 0, 3),
                ("InsufficientCpus", 2, 3),
                ("InsufficientMemory", 0, 1),
                ("InsufficientDisk", 0, 1),
                ("InsufficientGpus", 0, 1),
                ("InsufficientPorts", 0, 1),
            ]
        );
        assert_eq!(sum.reject_summary_launch_attempt, sum.reject_summary_last_offers);
        s.start_launch_attempt();
        let after = s.summary();
        assert_eq!(after.processed_offers_count, 0);
        assert_eq!(after.reject_summary_launch_attempt[0].processed, 0);
        assert_eq!(after.reject_summary_last_offers[0].processed, 4, "the window stays");
        let json = serde_json::to_value(&after).unwrap();
        assert!(json.get("rejectSummaryLastOffers").is_some());
        assert_eq!(json["rejectSummaryLastOffers"][3]["reason"], "InsufficientCpus");
    }
}
