//! Prometheus metrics as tepui exposes them: counters, gauges and duration histograms kept in
//! atomics (cheap on hot paths: no lock, no allocation), the text exposition format
//! (`Encoder`), a `Registry` of collectors that render at scrape time, the process's own
//! numbers from `/proc/self` (`process`), and a strict reader of the text format (`exposition`)
//! for tests.
//!
//! It deliberately knows no metric of any subsystem and keeps no global registry: each crate
//! owns its numbers and registers a collector with the node it runs in.

pub mod exposition;
pub mod process;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Request latencies (HTTP, Raft commits): half a millisecond to ten seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Disk syncs: a hundred microseconds to a second.
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Slow operations (container launches, image pulls, snapshots, scheduling passes): ten
/// milliseconds to five minutes.
pub const SLOW_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A number that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A number that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A histogram of durations with fixed buckets (upper bounds in seconds). Observing is a few
/// relaxed atomic adds; the sum is kept in nanoseconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Not cumulative; one more than `bounds`, the last being +Inf.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must increase");
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Relaxed) as f64 / 1e9
    }
}

/// The kind of a family, as `# TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the Prometheus text format (version 0.0.4). A family is its `family` line followed
/// by its samples; write each family's samples together.
#[derive(Default)]
pub struct Encoder {
    out: String,
}

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Encoder {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Encoder {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Encoder {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// A histogram's samples (`_bucket`, `_sum`, `_count`) under `labels`, within a family
    /// started with `Kind::Histogram`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Encoder {
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            le.clear();
            match h.bounds.get(i) {
                Some(b) => write_value(&mut le, *b),
                None => le.push_str("+Inf"),
            }
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, h.sum_seconds());
        let _ = write!(self.out, "\n{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
        self
    }

    /// A family of one unlabelled histogram.
    pub fn single_histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Encoder {
        self.family(name, help, Kind::Histogram).histogram(name, &[], h)
    }

    /// Text written by other code in this format (a family or more, whole).
    pub fn raw(&mut self, text: &str) -> &mut Encoder {
        self.out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.out.push('\n');
        }
        self
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

type Collector = Arc<dyn Fn(&mut Encoder) + Send + Sync>;

/// The collectors of one process's `/metrics`, rendered in the order they were registered.
/// Each writes whole families; two collectors must not write the same family.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Arc<Mutex<Vec<(String, Collector)>>>,
}

impl Registry {
    /// Adds a collector under `name`, replacing one registered under that name before (a
    /// driver that starts again registers again).
    pub fn register(&self, name: &str, collect: impl Fn(&mut Encoder) + Send + Sync + 'static) {
        let mut all = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        let collect: Collector = Arc::new(collect);
        match all.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = collect,
            None => all.push((name.to_owned(), collect)),
        }
    }

    /// Every collector's families.
    pub fn collect(&self, enc: &mut Encoder) {
        let all: Vec<Collector> = {
            let all = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
            all.iter().map(|(_, c)| c.clone()).collect()
        };
        for c in all {
            c(enc);
        }
    }
}

#[cfg(test)]
mod tests;
