//! What this machine can offer, detected and overridable from the command line.

use std::path::Path;

use tepui_proto::agent::Resources;

#[derive(Clone, Debug, Default)]
pub struct ResourceOverrides {
    pub cpus: Option<f64>,
    pub mem_mb: Option<u64>,
    pub disk_mb: Option<u64>,
    /// Inclusive range of ports handed to tasks.
    pub ports: Option<(u16, u16)>,
    /// Static reservations (`cpus(eng):2;mem(eng):1024`), carved out of the totals.
    pub reserved: Option<String>,
}

/// The Mesos default port range for tasks.
pub const DEFAULT_PORTS: (u16, u16) = (31000, 32000);

pub fn detect(data_dir: &Path, overrides: &ResourceOverrides) -> Resources {
    let cpus = overrides.cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0)
    });
    Resources {
        cpus_milli: (cpus * 1000.0).round() as u64,
        mem_mb: overrides.mem_mb.unwrap_or_else(memory_mb),
        disk_mb: overrides.disk_mb.unwrap_or_else(|| disk_mb(data_dir)),
        ports: vec![overrides.ports.unwrap_or(DEFAULT_PORTS)],
        reserved: overrides.reserved.clone().unwrap_or_default(),
    }
}

fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn disk_mb(dir: &Path) -> u64 {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available() * s.fragment_size() / (1024 * 1024))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine_and_honours_overrides() {
        let dir = std::env::temp_dir();
        let found = detect(&dir, &ResourceOverrides::default());
        assert!(found.cpus_milli >= 1000);
        assert!(found.mem_mb > 0);
        assert!(found.disk_mb > 0);
        assert_eq!(found.ports, vec![DEFAULT_PORTS]);
        let set = detect(
            &dir,
            &ResourceOverrides {
                cpus: Some(1.5),
                mem_mb: Some(512),
                disk_mb: Some(100),
                ports: Some((20000, 20010)),
                reserved: Some("cpus(eng):1".into()),
            },
        );
        assert_eq!(
            set,
            Resources {
                cpus_milli: 1500,
                mem_mb: 512,
                disk_mb: 100,
                ports: vec![(20000, 20010)],
                reserved: "cpus(eng):1".into()
            }
        );
    }
}
