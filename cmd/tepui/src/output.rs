//! Tables for people, JSON for scripts.

use serde::Serialize;

use crate::Format;

/// Left-aligned columns separated by three spaces, like `docker ps` and `nomad node status`.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out
    };
    let mut lines = vec![line(header.to_vec())];
    for r in &rows {
        lines.push(line(r.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

pub fn emit<T: Serialize>(format: Format, value: &T, human: impl FnOnce(&T) -> String) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => println!("{}", human(value)),
    }
    Ok(())
}

pub fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 120_000 => format!("{}s", ms / 1000),
        Some(ms) => format!("{}m", ms / 60_000),
    }
}

pub fn when(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        }
    }
}
