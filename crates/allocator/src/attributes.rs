//! Agent attributes (`rack:r1;zone:a;cores:8;ports:[1-9];tags:{ssd,fast}`): facts about an agent
//! that frameworks match constraints against. The allocator stores and returns them; it does not
//! decide anything by them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::resources::{parse_value, Ranges, Scalar, Value, ValueSet};
use crate::Error;

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    Text(String),
    Scalar(Scalar),
    Ranges(Ranges),
    Set(ValueSet),
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Text(s) => f.write_str(s),
            AttributeValue::Scalar(s) => write!(f, "{s}"),
            AttributeValue::Ranges(r) => write!(f, "{r}"),
            AttributeValue::Set(s) => write!(f, "{s}"),
        }
    }
}

impl fmt::Debug for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Attributes by name; a name appears once.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(BTreeMap<String, AttributeValue>);

impl Attributes {
    pub fn new() -> Attributes {
        Attributes(BTreeMap::new())
    }

    /// Parses `name:value;...`; a value is a scalar if it reads as a number, ranges in `[..]`, a
    /// set in `{..}`, and text otherwise (as Mesos reads the agent's `--attributes`).
    pub fn parse(text: &str) -> Result<Attributes, Error> {
        let mut out = Attributes::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once(':').ok_or_else(|| Error::Parse {
                input: part.to_string(),
                reason: "expected name:value",
            })?;
            let value = value.trim();
            let value = if value.starts_with('[') || value.starts_with('{') || value.parse::<Scalar>().is_ok() {
                match parse_value(value)? {
                    Value::Scalar(s) => AttributeValue::Scalar(s),
                    Value::Ranges(r) => AttributeValue::Ranges(r),
                    Value::Set(s) => AttributeValue::Set(s),
                }
            } else {
                AttributeValue::Text(value.to_string())
            };
            out = out.with(name.trim(), value);
        }
        Ok(out)
    }

    pub fn with(mut self, name: impl Into<String>, value: AttributeValue) -> Attributes {
        self.0.insert(name.into(), value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Attributes {
    type Err = Error;
    fn from_str(s: &str) -> Result<Attributes, Error> {
        Attributes::parse(s)
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}:{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let a = Attributes::parse("rack:r1;cores:8;ports:[1-9];tags:{ssd,fast};zone:eu-1a").unwrap();
        assert_eq!(a.get("rack"), Some(&AttributeValue::Text("r1".into())));
        assert_eq!(a.get("cores"), Some(&AttributeValue::Scalar(Scalar::from_units(8))));
        assert_eq!(a.get("ports"), Some(&AttributeValue::Ranges(Ranges::range(1, 9))));
        assert_eq!(
            a.get("tags"),
            Some(&AttributeValue::Set(ValueSet::from_items(["fast", "ssd"])))
        );
        assert_eq!(a.get("zone"), Some(&AttributeValue::Text("eu-1a".into())));
        assert_eq!(Attributes::parse(&a.to_string()).unwrap(), a);
    }
}
