//! The process's own numbers in the names every Prometheus client library uses
//! (`process_*`), read from `/proc/self` at scrape time.

use crate::{Encoder, Kind};

/// What `/proc/self` says now. Fields that cannot be read are `None` and left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads `/proc/self` (and `/proc/stat`'s boot time).
pub fn sample() -> Sample {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let field = |i: usize| {
        fields
            .as_ref()
            .and_then(|f| f.get(i))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    // Field numbers as proc(5) gives them, counted from 1 with the pid: here from 3 (state).
    let at = |n: usize| field(n - 3);
    let per_tick = |v: u64| (ticks > 0).then(|| v as f64 / ticks as f64);
    Sample {
        cpu_seconds: at(14).zip(at(15)).and_then(|(u, s)| per_tick(u + s)),
        resident_bytes: at(24).filter(|_| page > 0).map(|p| p * page as u64),
        virtual_bytes: at(23),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l)),
        threads: at(20),
        start_time_seconds: boot
            .zip(at(22))
            .and_then(|(b, start)| per_tick(start).map(|s| b as f64 + s)),
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so it is cut at the last `)`), starting with the state.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Writes the process's families.
pub fn render(enc: &mut Encoder) {
    let s = sample();
    let mut one = |name: &str, help: &str, kind: Kind, v: Option<f64>| {
        if let Some(v) = v {
            enc.single(name, help, kind, v);
        }
    };
    one(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        Kind::Counter,
        s.cpu_seconds,
    );
    one(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        Kind::Gauge,
        s.resident_bytes.map(|v| v as f64),
    );
    one(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        Kind::Gauge,
        s.virtual_bytes.map(|v| v as f64),
    );
    one(
        "process_open_fds",
        "Number of open file descriptors.",
        Kind::Gauge,
        s.open_fds.map(|v| v as f64),
    );
    one(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        Kind::Gauge,
        s.max_fds.map(|v| v as f64),
    );
    one(
        "process_threads",
        "Number of OS threads in the process.",
        Kind::Gauge,
        s.threads.map(|v| v as f64),
    );
    one(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        Kind::Gauge,
        s.start_time_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_strange_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 123456 300";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        // utime is field 14, i.e. index 11 here.
        assert_eq!(f[14 - 3], "250");
        assert_eq!(f[20 - 3], "7");
        assert_eq!(f[24 - 3], "300");
    }

    #[test]
    fn limits_soft_value() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_sensibly() {
        let s = sample();
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() > 0);
        assert!(s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = s.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{started} vs {now}"
        );
        assert!(s.cpu_seconds.unwrap() >= 0.0);
    }
}
