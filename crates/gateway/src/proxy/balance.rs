//! Which backend gets a request: the route's balance, sticky cookies, and passive health
//! (backends that keep failing are ejected for a while, then let back in by one trial request).
//!
//! Pure over the backends' counters: the time comes in as milliseconds since the gateway
//! started, so the rules are tested without a clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::Balance;

/// The cookie Marathon-LB's HAProxy configuration uses for sticky sessions.
pub const STICKY_COOKIE: &str = "mesosphere_server_id";

/// When a backend is taken out of rotation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EjectPolicy {
    /// Consecutive failed attempts (no connection, no answer, timeout) that eject it.
    pub after_failures: u32,
    /// How long it stays out before one request tries it again.
    pub eject_for: Duration,
}

/// One backend as the data plane knows it. Kept across table changes (by task id and address),
/// so counters and ejections survive a table that only changed elsewhere.
pub(crate) struct BackendState {
    pub task_id: String,
    pub addr: SocketAddr,
    /// The opaque value of the sticky cookie that names this backend.
    pub sticky_id: String,
    /// `Set-Cookie` naming this backend, made once.
    pub set_cookie: HeaderValue,
    pub in_flight: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the gateway started until which it is ejected; 0 while it is up.
    ejected_until_ms: AtomicU64,
    /// A trial request after an ejection is on its way (only one at a time).
    probing: AtomicBool,
}

impl std::fmt::Debug for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendState")
            .field("task_id", &self.task_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A backend's standing for the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Up,
    /// Out of rotation until then.
    Ejected {
        until_ms: u64,
    },
    /// Its ejection is over: the next request (one) may try it.
    Trial,
}

/// What one failure did to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureOutcome {
    /// Counted; the backend stays in rotation.
    Counted,
    /// The backend was taken out of rotation (again, if a trial request failed).
    Ejected,
}

impl BackendState {
    pub fn new(task_id: &str, addr: SocketAddr) -> Option<BackendState> {
        let sticky_id = format!("{:016x}", fnv1a(task_id.as_bytes()));
        let set_cookie = HeaderValue::try_from(format!("{STICKY_COOKIE}={sticky_id}; Path=/")).ok()?;
        Some(BackendState {
            task_id: task_id.to_owned(),
            addr,
            sticky_id,
            set_cookie,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    pub fn health(&self, now_ms: u64) -> Health {
        match self.ejected_until_ms.load(Relaxed) {
            0 => Health::Up,
            until_ms if now_ms < until_ms => Health::Ejected { until_ms },
            _ => Health::Trial,
        }
    }

    /// Claims the one trial request of a backend whose ejection is over.
    fn claim_trial(&self) -> bool {
        self.probing.compare_exchange(false, true, Relaxed, Relaxed).is_ok()
    }

    /// A request got an answer (any status: a 5xx is the app's answer, its health checks judge
    /// the app). True when this brought an ejected backend back.
    pub fn record_success(&self) -> bool {
        // Read before writing: on the hot path these are shared by every core.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if self.ejected_until_ms.load(Relaxed) != 0 {
            self.ejected_until_ms.store(0, Relaxed);
            self.probing.store(false, Relaxed);
            return true;
        }
        false
    }

    /// A request failed to connect, got no answer, or timed out.
    pub fn record_failure(&self, now_ms: u64, policy: &EjectPolicy) -> FailureOutcome {
        self.failures.fetch_add(1, Relaxed);
        let until_ms = now_ms.saturating_add(policy.eject_for.as_millis() as u64).max(1);
        if self.ejected_until_ms.load(Relaxed) != 0 {
            // A trial (or a request sent while every backend was out) failed: out again.
            self.ejected_until_ms.store(until_ms, Relaxed);
            self.probing.store(false, Relaxed);
            return FailureOutcome::Ejected;
        }
        let consecutive = self.consecutive_failures.fetch_add(1, Relaxed).saturating_add(1);
        if consecutive >= policy.after_failures.max(1)
            && self
                .ejected_until_ms
                .compare_exchange(0, until_ms, Relaxed, Relaxed)
                .is_ok()
        {
            self.consecutive_failures.store(0, Relaxed);
            return FailureOutcome::Ejected;
        }
        FailureOutcome::Counted
    }
}

/// A request on its way to a backend: counts it in flight until dropped, and gives the trial
/// back if the request ends without a verdict (the client went away).
pub(crate) struct InFlight {
    pub backend: Arc<BackendState>,
    trial: bool,
    settled: bool,
}

impl InFlight {
    pub fn start(backend: Arc<BackendState>, trial: bool) -> InFlight {
        backend.in_flight.fetch_add(1, Relaxed);
        backend.requests.fetch_add(1, Relaxed);
        InFlight {
            backend,
            trial,
            settled: false,
        }
    }

    pub fn succeeded(&mut self) -> bool {
        self.settled = true;
        self.backend.record_success()
    }

    pub fn failed(&mut self, now_ms: u64, policy: &EjectPolicy) -> FailureOutcome {
        self.settled = true;
        self.backend.record_failure(now_ms, policy)
    }

    /// Neither a success nor the backend's fault (the client's body broke off).
    pub fn abandoned(&mut self) {
        if self.trial && !self.settled {
            self.backend.probing.store(false, Relaxed);
        }
        self.settled = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Relaxed);
        if self.trial && !self.settled {
            self.backend.probing.store(false, Relaxed);
        }
    }
}

/// What a request brings to the choice.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Preference<'a> {
    /// A hash of the client's address (`Balance::Source`).
    pub source_hash: u64,
    /// The sticky cookie's value, on a sticky route.
    pub sticky_id: Option<&'a str>,
    /// A backend that just failed this request (a retry goes elsewhere).
    pub exclude: Option<&'a BackendState>,
}

/// The chosen backend: its index in the route, and whether the request is its trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pick {
    pub index: usize,
    pub trial: bool,
}

/// Chooses a backend among `backends` (in table order) for a request. `next` is the route's
/// rotation counter. Ejected backends are skipped; when every backend is out, the one back
/// soonest is tried anyway rather than answering without trying. None only when there is no
/// backend (or the only one is excluded).
pub(crate) fn choose(
    backends: &[Arc<BackendState>],
    balance: Balance,
    next: &AtomicUsize,
    preference: Preference<'_>,
    now_ms: u64,
) -> Option<Pick> {
    let count = backends.len();
    if count == 0 {
        return None;
    }
    let excluded = |b: &BackendState| preference.exclude.is_some_and(|x| std::ptr::eq(x, b));
    let usable = |b: &BackendState| -> Option<bool> {
        if excluded(b) {
            return None;
        }
        match b.health(now_ms) {
            Health::Up => Some(false),
            Health::Trial if b.claim_trial() => Some(true),
            _ => None,
        }
    };

    if let Some(id) = preference.sticky_id {
        if let Some(index) = backends.iter().position(|b| b.sticky_id == id) {
            if let Some(trial) = usable(&backends[index]) {
                return Some(Pick { index, trial });
            }
        }
    }

    let start = match balance {
        Balance::Source => (preference.source_hash % count as u64) as usize,
        Balance::RoundRobin | Balance::LeastRequests => next.fetch_add(1, Relaxed) % count,
    };
    let in_order = (0..count).map(|k| (start + k) % count);
    match balance {
        Balance::RoundRobin | Balance::Source => {
            for index in in_order {
                if let Some(trial) = usable(&backends[index]) {
                    return Some(Pick { index, trial });
                }
            }
        }
        Balance::LeastRequests => {
            let mut best: Option<(usize, u64)> = None;
            for index in in_order {
                let backend = &backends[index];
                if excluded(backend) {
                    continue;
                }
                match backend.health(now_ms) {
                    // The trial goes first: it is the only way back for an ejected backend.
                    Health::Trial if backend.claim_trial() => return Some(Pick { index, trial: true }),
                    Health::Up => {
                        let load = backend.in_flight.load(Relaxed);
                        if best.is_none_or(|(_, least)| load < least) {
                            best = Some((index, load));
                        }
                    }
                    _ => {}
                }
            }
            if let Some((index, _)) = best {
                return Some(Pick { index, trial: false });
            }
        }
    }

    // Every backend is out (or busy with its trial): try the one back soonest.
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| !excluded(b))
        .min_by_key(|(_, b)| match b.health(now_ms) {
            Health::Ejected { until_ms } => until_ms,
            Health::Up | Health::Trial => 0,
        })
        .map(|(index, _)| Pick { index, trial: false })
}

/// FNV-1a, 64 bits: stable across builds and platforms, for ids that clients keep in cookies.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The value of the sticky cookie among a request's `Cookie` headers.
pub(crate) fn sticky_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == STICKY_COOKIE).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u8) -> Vec<Arc<BackendState>> {
        (1..=n)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 60, i], 8000));
                Arc::new(BackendState::new(&format!("task-{i}"), addr).expect("backend"))
            })
            .collect()
    }

    const POLICY: EjectPolicy = EjectPolicy {
        after_failures: 3,
        eject_for: Duration::from_millis(1000),
    };

    fn pick(backends: &[Arc<BackendState>], balance: Balance, next: &AtomicUsize, now_ms: u64) -> Pick {
        choose(backends, balance, next, Preference::default(), now_ms).expect("a backend")
    }

    #[test]
    fn round_robin_goes_around() {
        let b = backends(3);
        let next = AtomicUsize::new(0);
        let order: Vec<usize> = (0..6).map(|_| pick(&b, Balance::RoundRobin, &next, 1).index).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn failures_eject_then_one_trial_lets_back_in() {
        let b = backends(2);
        let next = AtomicUsize::new(0);
        assert_eq!(b[0].record_failure(10, &POLICY), FailureOutcome::Counted);
        assert_eq!(b[0].record_failure(11, &POLICY), FailureOutcome::Counted);
        assert_eq!(b[0].record_failure(12, &POLICY), FailureOutcome::Ejected);
        assert_eq!(b[0].health(500), Health::Ejected { until_ms: 1012 });
        for _ in 0..4 {
            assert_eq!(pick(&b, Balance::RoundRobin, &next, 500).index, 1);
        }
        // The ejection is over: exactly one request tries it.
        let trials: Vec<Pick> = (0..4).map(|_| pick(&b, Balance::RoundRobin, &next, 1100)).collect();
        assert_eq!(trials.iter().filter(|p| p.trial).count(), 1);
        assert!(trials.iter().filter(|p| !p.trial).all(|p| p.index == 1));
        // It fails: out again for the whole period.
        assert_eq!(b[0].record_failure(1101, &POLICY), FailureOutcome::Ejected);
        assert_eq!(b[0].health(1200), Health::Ejected { until_ms: 2101 });
        // The next trial succeeds: back in rotation.
        let trial = (0..2)
            .map(|_| pick(&b, Balance::RoundRobin, &next, 2200))
            .find(|p| p.trial)
            .expect("a trial");
        assert_eq!(trial.index, 0);
        assert!(b[0].record_success());
        assert_eq!(b[0].health(2201), Health::Up);
    }

    #[test]
    fn success_resets_the_consecutive_count() {
        let b = backends(1);
        for _ in 0..10 {
            assert_eq!(b[0].record_failure(1, &POLICY), FailureOutcome::Counted);
            assert_eq!(b[0].record_failure(1, &POLICY), FailureOutcome::Counted);
            assert!(!b[0].record_success());
        }
        assert_eq!(b[0].health(2), Health::Up);
        assert_eq!(b[0].failures.load(Relaxed), 20);
    }

    #[test]
    fn every_backend_out_still_tries_the_one_back_soonest() {
        let b = backends(2);
        let next = AtomicUsize::new(0);
        for _ in 0..3 {
            b[1].record_failure(5, &POLICY);
        }
        for _ in 0..3 {
            b[0].record_failure(7, &POLICY);
        }
        let p = pick(&b, Balance::RoundRobin, &next, 10);
        assert_eq!(p, Pick { index: 1, trial: false });
    }

    #[test]
    fn a_trial_dropped_without_a_verdict_is_given_back() {
        let b = backends(1);
        let next = AtomicUsize::new(0);
        for _ in 0..3 {
            b[0].record_failure(0, &POLICY);
        }
        let p = pick(&b, Balance::RoundRobin, &next, 2000);
        assert!(p.trial);
        drop(InFlight::start(b[0].clone(), true));
        assert!(pick(&b, Balance::RoundRobin, &next, 2001).trial);
    }

    #[test]
    fn least_requests_prefers_the_idle_backend() {
        let b = backends(3);
        let next = AtomicUsize::new(0);
        let _busy = [
            InFlight::start(b[0].clone(), false),
            InFlight::start(b[1].clone(), false),
        ];
        for _ in 0..5 {
            assert_eq!(pick(&b, Balance::LeastRequests, &next, 1).index, 2);
        }
        let _third = InFlight::start(b[2].clone(), false);
        let _fourth = InFlight::start(b[2].clone(), false);
        for _ in 0..5 {
            assert_ne!(pick(&b, Balance::LeastRequests, &next, 1).index, 2);
        }
    }

    #[test]
    fn source_keeps_a_client_on_one_backend() {
        let b = backends(5);
        let next = AtomicUsize::new(0);
        let hash = fnv1a(&[10, 1, 2, 3]);
        let preference = Preference {
            source_hash: hash,
            ..Preference::default()
        };
        let first = choose(&b, Balance::Source, &next, preference, 1).expect("pick").index;
        for _ in 0..10 {
            assert_eq!(
                choose(&b, Balance::Source, &next, preference, 1).expect("pick").index,
                first
            );
        }
    }

    #[test]
    fn sticky_cookie_wins_while_its_backend_is_up() {
        let b = backends(3);
        let next = AtomicUsize::new(0);
        let id = b[2].sticky_id.clone();
        let preference = Preference {
            sticky_id: Some(&id),
            ..Preference::default()
        };
        for _ in 0..5 {
            assert_eq!(
                choose(&b, Balance::RoundRobin, &next, preference, 1)
                    .expect("pick")
                    .index,
                2
            );
        }
        for _ in 0..3 {
            b[2].record_failure(1, &POLICY);
        }
        for _ in 0..5 {
            assert_ne!(
                choose(&b, Balance::RoundRobin, &next, preference, 2)
                    .expect("pick")
                    .index,
                2
            );
        }
    }

    #[test]
    fn a_retry_goes_elsewhere_or_nowhere() {
        let b = backends(2);
        let next = AtomicUsize::new(0);
        let preference = Preference {
            exclude: Some(&b[0]),
            ..Preference::default()
        };
        for _ in 0..4 {
            assert_eq!(
                choose(&b, Balance::LeastRequests, &next, preference, 1)
                    .expect("pick")
                    .index,
                1
            );
        }
        let one = &b[..1];
        assert_eq!(choose(one, Balance::RoundRobin, &next, preference, 1), None);
    }

    #[test]
    fn sticky_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("x=y;mesosphere_server_id=00ff; z=3"),
        );
        assert_eq!(sticky_cookie(&headers), Some("00ff"));
        assert_eq!(sticky_cookie(&http::HeaderMap::new()), None);
    }
}
