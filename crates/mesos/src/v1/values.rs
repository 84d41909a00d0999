//! `Value` pieces shared by resources and attributes, labels and parameters.

use std::fmt;

use serde::{Deserialize, Serialize};

open_enum! {
    /// `Value.Type`: which of the value fields of a resource or attribute is set.
    pub enum ValueType {
        Scalar = "SCALAR",
        Ranges = "RANGES",
        Set = "SET",
        Text = "TEXT",
    }
}

/// A floating-point quantity. Mesos keeps three decimal digits of precision.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    pub value: f64,
}

impl Scalar {
    pub fn new(value: f64) -> Self {
        Scalar { value }
    }
}

/// An inclusive range `[begin, end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    #[serde(deserialize_with = "crate::lenient::u64")]
    pub begin: u64,
    #[serde(deserialize_with = "crate::lenient::u64")]
    pub end: u64,
}

impl Range {
    pub fn new(begin: u64, end: u64) -> Self {
        Range { begin, end }
    }

    /// How many integers the range holds (0 for an inverted range).
    pub fn len(&self) -> u64 {
        if self.end < self.begin {
            0
        } else {
            self.end - self.begin + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A list of ranges; the field is singular (`range`) on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    #[serde(default)]
    pub range: Vec<Range>,
}

impl Ranges {
    pub fn new(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Ranges {
            range: ranges.into_iter().map(|(b, e)| Range::new(b, e)).collect(),
        }
    }

    /// Sorted, with overlapping and adjacent ranges merged and inverted ones dropped.
    pub fn coalesced(&self) -> Ranges {
        Ranges {
            range: coalesce(self.range.iter().copied()),
        }
    }

    /// How many integers the ranges hold, counting overlaps once.
    pub fn count(&self) -> u64 {
        coalesce(self.range.iter().copied()).iter().map(Range::len).sum()
    }
}

/// Mesos' text form, used by the legacy endpoints: `[31000-32000, 33000-33010]`.
impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.range.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}-{}", r.begin, r.end)?;
        }
        f.write_str("]")
    }
}

pub(crate) fn coalesce(ranges: impl IntoIterator<Item = Range>) -> Vec<Range> {
    let mut all: Vec<Range> = ranges.into_iter().filter(|r| r.begin <= r.end).collect();
    all.sort();
    let mut out: Vec<Range> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.begin <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// A set of strings; the field is singular (`item`) on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    #[serde(default)]
    pub item: Vec<String>,
}

/// Mesos' text form, used by the legacy endpoints: `{a, b}`.
impl fmt::Display for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.item.join(", "))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub value: String,
}

/// An agent attribute such as `rack:r1` or `zone:a`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Set>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

impl Attribute {
    pub fn text(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            kind: ValueType::Text,
            scalar: None,
            ranges: None,
            set: None,
            text: Some(Text { value: value.into() }),
        }
    }

    pub fn scalar(name: impl Into<String>, value: f64) -> Self {
        Attribute {
            name: name.into(),
            kind: ValueType::Scalar,
            scalar: Some(Scalar::new(value)),
            ranges: None,
            set: None,
            text: None,
        }
    }
}

/// Free-form key/value metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A list of labels, wrapped in an object (`{"labels": [...]}`) in v1 JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub labels: Vec<Label>,
}

impl Labels {
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Labels {
            labels: pairs
                .into_iter()
                .map(|(k, v)| Label {
                    key: k.into(),
                    value: Some(v.into()),
                })
                .collect(),
        }
    }

    /// The value of the first label with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.key == key)
            .and_then(|l| l.value.as_deref())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    #[serde(default)]
    pub parameter: Vec<Parameter>,
}
