//! The leader's background work, as named drivers that react instead of poll.
//!
//! A [`Driver`] is activated when something it cares about happens: this server starts leading
//! (after a linearizable read, so it sees every committed write), its [`Waker`] is woken (a
//! typed notification: a subscription, an update, a kick from its API), the applied state
//! changes (when it asked for that), or a timeout it keeps runs out. Nothing wakes it on a
//! period. Each activation's start, duration and error are kept here, where `/v1/status` and
//! `/metrics` show them.
//!
//! Drivers run only on the leader; when leadership moves away (or the term changes), the
//! driver's [`Driver::step_down`] drops what only a leader keeps.
//!
//! A driver's pass usually looks at the whole state, so while changes flood in (a thousand
//! tasks starting) running it after each one would cost a pass per change. After a pass
//! that took T, a wake or a state change runs it again no sooner than [`REST`] × T later:
//! a driver spends at most a tenth of a core on such passes, and a cheap pass (tens of
//! microseconds) still reacts within a millisecond. Leading and timeouts are not held back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{now_ms, Node};

/// After a pass that took T, wakes and state changes wait until `REST` × T after its end.
pub const REST: u32 = 9;

/// The longest such rest, however long the pass took.
pub(crate) const MAX_REST: Duration = Duration::from_secs(1);

/// Why a driver runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// This server has just become the leader (or started a new term as leader).
    Leading,
    /// Its waker was woken.
    Woken,
    /// The applied state changed.
    StateChanged,
    /// The timeout it asked for ran out.
    Timeout,
}

impl Activation {
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Leading => "leading",
            Activation::Woken => "woken",
            Activation::StateChanged => "state_changed",
            Activation::Timeout => "timeout",
        }
    }
}

/// One activation's outcome: the longest the driver may wait before it must run again (a
/// deadline it keeps; `None`: only wakes), or what went wrong.
pub type Outcome = Result<Option<Duration>, String>;

/// A piece of leader work.
pub trait Driver: Send + 'static {
    /// Does the work; returns when done.
    fn activate(&mut self, why: Activation) -> impl Future<Output = Outcome> + Send;

    /// This server stopped leading (or a new term began): forget what only a leader keeps.
    fn step_down(&mut self) {}
}

/// Wakes a driver. Wakes while it runs are remembered: it runs once more after.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What activates a driver besides leading and its timeouts.
#[derive(Clone, Default)]
pub struct Wakes {
    pub waker: Waker,
    /// Every change of the applied state (coalesced: changes during an activation give one
    /// more).
    pub state_changes: bool,
}

/// What `/v1/status` shows of a driver.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DriverStatus {
    pub name: String,
    pub leading: bool,
    pub activations: u64,
    pub errors: u64,
    pub last_activation: Option<&'static str>,
    /// Unix ms.
    pub last_started_at: Option<u64>,
    pub last_duration_us: u64,
    pub last_error: Option<String>,
    /// The timeout the driver keeps now, in ms from its last activation.
    pub next_timeout_ms: Option<u64>,
}

/// Every driver of a server and how it last ran.
#[derive(Default)]
pub struct Drivers {
    statuses: Mutex<BTreeMap<&'static str, DriverStatus>>,
}

impl Drivers {
    /// Every driver's status, by name.
    pub fn statuses(&self) -> Vec<DriverStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut DriverStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        f(statuses.entry(name).or_insert_with(|| DriverStatus {
            name: name.to_string(),
            ..DriverStatus::default()
        }))
    }
}

impl Node {
    /// Starts `driver` under `name`; it runs while this server leads, until shutdown.
    pub fn spawn_driver<D: Driver>(&self, name: &'static str, driver: D, wakes: Wakes) -> tokio::task::JoinHandle<()> {
        self.drivers().update(name, |_| {});
        tokio::spawn(run(self.clone(), name, driver, wakes))
    }
}

async fn run<D: Driver>(node: Node, name: &'static str, mut driver: D, wakes: Wakes) {
    let shutdown = node.shutdown_token().clone();
    let mut leadership = node.watch_leadership();
    let mut applied = node.watch_applied();
    // The term this driver leads in, once its first activation ran.
    let mut leading_term: Option<u64> = None;
    let mut deadline: Option<Instant> = None;
    // Activations that failed in a row: the retry waits longer each time.
    let mut failures: u32 = 0;
    // Wakes and state changes wait until then (see REST).
    let mut rested_at: Option<Instant> = None;
    loop {
        let now_leading = *leadership.borrow_and_update();
        let leads = now_leading.leader == Some(node.id());
        if leading_term.is_some() && (!leads || leading_term != Some(now_leading.term)) {
            driver.step_down();
            leading_term = None;
            deadline = None;
            node.drivers().update(name, |s| s.leading = false);
        }
        if !leads {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leadership.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let why = if leading_term.is_none() {
            // Everything committed before this term must be applied before a leader acts.
            let linearized = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = node.linearize() => r,
            };
            if let Err(e) = linearized {
                tracing::debug!(driver = name, error = %e, "not leading after all");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = leadership.changed() => if changed.is_err() { return },
                }
                continue;
            }
            leading_term = Some(now_leading.term);
            node.drivers().update(name, |s| s.leading = true);
            Activation::Leading
        } else {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                changed = leadership.changed() => {
                    if changed.is_err() { return }
                    continue;
                }
                _ = wakes.waker.0.notified() => Activation::Woken,
                changed = applied.changed(), if wakes.state_changes => {
                    if changed.is_err() { return }
                    Activation::StateChanged
                }
                _ = sleep_until(deadline), if deadline.is_some() => Activation::Timeout,
            }
        };
        let resting = rested_at.filter(|at| *at > Instant::now());
        if let (Activation::Woken | Activation::StateChanged, Some(at)) = (why, resting) {
            // The pass after the rest sees every change that arrived during it.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        // Changes from here on wake it again.
        applied.borrow_and_update();
        let started = Instant::now();
        let started_at = now_ms();
        let outcome = driver.activate(why).await;
        let took = started.elapsed();
        rested_at = Some(Instant::now() + (took * REST).min(MAX_REST));
        deadline = match &outcome {
            Ok(Some(after)) => Some(Instant::now() + *after),
            _ => None,
        };
        if let Err(e) = &outcome {
            tracing::warn!(driver = name, activation = why.as_str(), error = %e, "driver activation failed");
        }
        node.drivers().update(name, |s| {
            s.activations += 1;
            s.last_activation = Some(why.as_str());
            s.last_started_at = Some(started_at);
            s.last_duration_us = took.as_micros() as u64;
            match &outcome {
                Ok(next) => {
                    s.last_error = None;
                    s.next_timeout_ms = next.map(|d| d.as_millis() as u64);
                }
                Err(e) => {
                    s.errors += 1;
                    s.last_error = Some(e.clone());
                    s.next_timeout_ms = None;
                }
            }
        });
        // A driver that failed tries again, but not in a tight loop.
        if outcome.is_err() {
            failures = failures.saturating_add(1);
            deadline = Some(Instant::now() + retry_after(failures));
        } else {
            failures = 0;
        }
    }
}

/// How long a driver waits before it tries again after `failures` failed activations in a
/// row: half a second, doubling, at most 30 s (wakes and state changes still run it sooner).
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    Duration::from_millis(500 << doublings).min(Duration::from_secs(30))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_failing_driver_backs_off_up_to_half_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| super::retry_after(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(super::retry_after(u32::MAX), Duration::from_secs(30));
    }

    use tepui_state::{Command, State};

    use super::*;
    use crate::testing::local_node;

    struct Recorder {
        seen: tokio::sync::mpsc::UnboundedSender<Activation>,
        step_downs: Arc<AtomicUsize>,
        timeout: Option<Duration>,
    }

    impl Driver for Recorder {
        async fn activate(&mut self, why: Activation) -> Outcome {
            let _ = self.seen.send(why);
            Ok(self.timeout.take())
        }

        fn step_down(&mut self) {
            self.step_downs.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Takes 10 ms (of paused time) per activation and records when each began.
    struct Slow {
        began: tokio::sync::mpsc::UnboundedSender<(Activation, Instant)>,
        timeout: Option<Duration>,
    }

    impl Driver for Slow {
        async fn activate(&mut self, why: Activation) -> Outcome {
            let _ = self.began.send((why, Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(self.timeout.take())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_after_a_long_pass_wait_nine_times_its_length_and_timeouts_do_not() {
        let (node, _local) = local_node(State::default());
        let (began, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let wakes = Wakes::default();
        node.spawn_driver(
            "slow",
            Slow {
                began,
                timeout: Some(Duration::ZERO),
            },
            wakes.clone(),
        );
        let recv = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Activation, Instant)>| rx.try_recv().ok();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            seen.extend(recv(&mut rx));
        }
        let (leading, at_leading) = seen[0];
        let (timeout, at_timeout) = seen[1];
        assert_eq!((leading, timeout), (Activation::Leading, Activation::Timeout));
        // The timeout ran as soon as the first pass ended.
        assert!(
            at_timeout - at_leading < Duration::from_millis(11),
            "{:?}",
            at_timeout - at_leading
        );
        wakes.waker.wake();
        let (woken, at_woken) = loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if let Some(x) = recv(&mut rx) {
                break x;
            }
        };
        assert_eq!(woken, Activation::Woken);
        let rest = at_woken - (at_timeout + Duration::from_millis(10));
        assert!(rest >= Duration::from_millis(90), "woken {rest:?} after a 10 ms pass");
        assert!(rest < Duration::from_millis(100), "woken {rest:?} after a 10 ms pass");
        node.shut_down();
    }

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Activation>) -> Activation {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an activation within 10 s")
            .expect("the driver runs")
    }

    #[tokio::test]
    async fn a_driver_runs_on_leading_wakes_state_changes_and_its_timeout() {
        let (node, local) = local_node(State::default());
        let (seen, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let wakes = Wakes {
            state_changes: true,
            ..Wakes::default()
        };
        let step_downs = Arc::new(AtomicUsize::new(0));
        node.spawn_driver(
            "recorder",
            Recorder {
                seen,
                step_downs: step_downs.clone(),
                timeout: Some(Duration::from_millis(10)),
            },
            wakes.clone(),
        );
        assert_eq!(next(&mut rx).await, Activation::Leading);
        assert_eq!(next(&mut rx).await, Activation::Timeout);
        wakes.waker.wake();
        assert_eq!(next(&mut rx).await, Activation::Woken);
        node.write(Command::PutVar {
            key: "k".into(),
            value: "v".into(),
            cas: None,
            now: 1,
        })
        .await
        .unwrap();
        assert_eq!(next(&mut rx).await, Activation::StateChanged);

        // Another server leads: the driver steps down and waits.
        local.set_leader(Some(99), 2);
        tokio::time::timeout(Duration::from_secs(10), async {
            while step_downs.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the driver steps down");
        wakes.waker.wake();
        local.set_leader(Some(node.id()), 3);
        assert_eq!(next(&mut rx).await, Activation::Leading);
        let status = node.drivers().statuses();
        assert_eq!(status[0].name, "recorder");
        assert!(status[0].leading);
        assert!(status[0].activations >= 5, "{status:?}");
        node.shut_down();
    }
}
