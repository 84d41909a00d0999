//! A strict reader of the Prometheus text format, for tests: it refuses what `promtool check
//! metrics` refuses (bad names, samples before their `# TYPE`, a family's samples split up, a
//! series twice, histograms whose buckets go down or lack `+Inf`) and the lint it warns about
//! (a counter not named `_total`).

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A family: its name, type, help and samples.
#[derive(Clone, Debug, Default)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The sum of the samples named `name` (a counter's, a gauge's, or a histogram's
    /// `_count`) whose labels include `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

/// Reads a whole exposition; the error names the line.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (word, name, tail) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let (Some(word @ ("HELP" | "TYPE")), Some(name)) = (word, name) else {
                continue; // a comment
            };
            check_metric_name(name).map_err(at)?;
            if current.as_deref() != Some(name) {
                if let Some(prev) = current.take() {
                    closed.insert(prev);
                }
                if closed.contains(name) {
                    return Err(at(format!("family {name} appears twice")));
                }
                current = Some(name.to_owned());
            }
            let f = families.entry(name.to_owned()).or_insert_with(|| Family {
                name: name.to_owned(),
                ..Family::default()
            });
            if !f.samples.is_empty() {
                return Err(at(format!("{word} of {name} after its samples")));
            }
            if word == "HELP" {
                if !f.help.is_empty() {
                    return Err(at("a second HELP".into()));
                }
                f.help = tail.to_owned();
            } else {
                if !f.kind.is_empty() {
                    return Err(at("a second TYPE".into()));
                }
                if !matches!(tail, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    return Err(at(format!("unknown type {tail}")));
                }
                f.kind = tail.to_owned();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = current
            .clone()
            .filter(|c| belongs(&sample.name, c, families.get(c).map_or("", |f| f.kind.as_str())))
            .ok_or_else(|| {
                at(format!(
                    "sample {} outside its family's block (TYPE first)",
                    sample.name
                ))
            })?;
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !series.insert(key) {
            return Err(at("a series twice".into()));
        }
        families
            .get_mut(&family)
            .expect("current family exists")
            .samples
            .push(sample);
    }
    for f in families.values() {
        check_family(f)?;
    }
    Ok(families)
}

fn belongs(sample: &str, family: &str, kind: &str) -> bool {
    if sample == family {
        return kind != "histogram";
    }
    kind == "histogram"
        && sample
            .strip_prefix(family)
            .is_some_and(|s| matches!(s, "_bucket" | "_sum" | "_count"))
}

/// One histogram series as read: its buckets (bound, count), its `_count`, whether it has a
/// `_sum`.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>, bool);

fn check_family(f: &Family) -> Result<(), String> {
    if f.kind.is_empty() {
        return Err(format!("{}: no TYPE", f.name));
    }
    if f.help.is_empty() {
        return Err(format!("{}: no HELP", f.name));
    }
    if f.kind == "counter" && !f.name.ends_with("_total") {
        return Err(format!("counter {} should end in _total", f.name));
    }
    if f.kind != "counter" && f.name.ends_with("_total") {
        return Err(format!("{} {} ends in _total", f.kind, f.name));
    }
    if f.kind == "counter" && f.samples.iter().any(|s| s.value < 0.0) {
        return Err(format!("counter {} is negative", f.name));
    }
    if f.kind == "histogram" {
        // Per label set (without `le`): buckets rising, ending in +Inf equal to _count.
        let mut groups: BTreeMap<String, HistogramSeries> = BTreeMap::new();
        for s in &f.samples {
            let mut labels = s.labels.clone();
            let le = labels.remove("le");
            let g = groups.entry(format!("{labels:?}")).or_default();
            if s.name.ends_with("_bucket") {
                let le = le.ok_or_else(|| format!("{}: a bucket without le", f.name))?;
                let bound = parse_value(&le).map_err(|e| format!("{}: le {e}", f.name))?;
                g.0.push((bound, s.value));
            } else if s.name.ends_with("_count") {
                g.1 = Some(s.value);
            } else {
                g.2 = true;
            }
        }
        for (labels, (buckets, count, sum)) in groups {
            let what = format!("{}{labels}", f.name);
            if !buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{what}: buckets out of order or going down"));
            }
            let last = buckets.last().ok_or_else(|| format!("{what}: no buckets"))?;
            if last.0 != f64::INFINITY {
                return Err(format!("{what}: no +Inf bucket"));
            }
            if count != Some(last.1) || !sum {
                return Err(format!("{what}: _count must equal the +Inf bucket, with a _sum"));
            }
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !ok {
        return Err(format!("bad metric name {name:?}"));
    }
    Ok(())
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            // A label name, `="`, an escaped value, `"`, then `,` or `}`.
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                end = start + 1;
                break;
            }
            let eq = after[start..].find('=').ok_or("a label without =")? + start;
            let key = &after[start..eq];
            let key_ok = key
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
            if key.is_empty() || !key_ok || key.starts_with("__") {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}'s value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '\\' => match chars.next().ok_or("a dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '"' => break,
                    '\n' => return Err("a newline in a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    end = i + 1;
                    break;
                }
                _ => return Err("expected , or } after a label".into()),
            }
        }
        rest = &after[end..];
    }
    let mut parts = rest.split(' ');
    if parts.next() != Some("") {
        return Err("no space before the value".into());
    }
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}
