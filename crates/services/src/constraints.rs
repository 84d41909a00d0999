//! Placement constraints in Marathon's JSON form (`["hostname", "UNIQUE"]`,
//! `["rack", "GROUP_BY", "3"]`) and their evaluation for one instance on one candidate agent.
//!
//! The field is `hostname` (the agent's hostname) or the name of an agent attribute, whose value
//! is compared as the string Mesos formats it (`[100-200]` for ranges, `{a,b}` for sets). An
//! agent without the attribute fails every operator except `UNLIKE`, as in Marathon.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A constraint operator, spelled in JSON as Marathon spells it (upper case only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    Unique,
    Cluster,
    GroupBy,
    Like,
    Unlike,
    MaxPer,
    Is,
}

impl Operator {
    pub const ALL: [Operator; 7] = [
        Operator::Unique,
        Operator::Cluster,
        Operator::GroupBy,
        Operator::Like,
        Operator::Unlike,
        Operator::MaxPer,
        Operator::Is,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Unique => "UNIQUE",
            Operator::Cluster => "CLUSTER",
            Operator::GroupBy => "GROUP_BY",
            Operator::Like => "LIKE",
            Operator::Unlike => "UNLIKE",
            Operator::MaxPer => "MAX_PER",
            Operator::Is => "IS",
        }
    }

    pub fn parse(s: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// The error for an unknown operator, worded as Marathon words it (plus `IS`).
pub const UNKNOWN_OPERATOR: &str =
    "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS";

/// One validated constraint. `LIKE` and `UNLIKE` hold their compiled, fully anchored pattern.
#[derive(Debug, Clone)]
pub struct Constraint {
    field: String,
    operator: Operator,
    value: Option<String>,
    pattern: Option<Regex>,
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.operator == other.operator && self.value == other.value
    }
}

impl Constraint {
    /// Parses Marathon's array form: field, operator and an optional value. The error is the
    /// message for the 422 body.
    pub fn parse(parts: &[String]) -> Result<Constraint, String> {
        if parts.len() < 2 || parts.len() > 3 {
            return Err("Each constraint must have either 2 or 3 fields".into());
        }
        let field = parts[0].clone();
        if field.is_empty() {
            return Err("Constraint field must not be empty".into());
        }
        let operator = Operator::parse(&parts[1]).ok_or_else(|| UNKNOWN_OPERATOR.to_string())?;
        let value = parts.get(2).cloned();
        let mut pattern = None;
        match operator {
            Operator::Unique => {
                if value.is_some() {
                    return Err("Value specified but not used".into());
                }
            }
            Operator::Cluster => {}
            Operator::GroupBy => {
                if let Some(v) = &value {
                    parse_count(v).ok_or_else(|| format!("GROUP_BY value {v:?} must be a non-negative integer"))?;
                }
            }
            Operator::MaxPer => {
                let v = value.as_deref().ok_or("MAX_PER requires a value")?;
                match parse_count(v) {
                    Some(n) if n > 0 => {}
                    _ => return Err(format!("MAX_PER value {v:?} must be a positive integer")),
                }
            }
            Operator::Like | Operator::Unlike => {
                let v = value
                    .as_deref()
                    .ok_or_else(|| format!("{} requires a regular expression", operator.as_str()))?;
                let anchored = format!("^(?:{v})$");
                pattern = Some(Regex::new(&anchored).map_err(|_| format!("'{v}' is not a valid regular expression"))?);
            }
            Operator::Is => {
                if value.is_none() {
                    return Err("IS requires a value".into());
                }
            }
        }
        Ok(Constraint {
            field,
            operator,
            value,
            pattern,
        })
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Marathon's array form.
    pub fn to_parts(&self) -> Vec<String> {
        let mut parts = vec![self.field.clone(), self.operator.as_str().to_string()];
        parts.extend(self.value.clone());
        parts
    }

    /// Whether one more instance may run on `candidate`, given the agents the app's other
    /// instances run on (one entry per instance). The error is a human reason.
    pub fn check(&self, candidate: &AgentInfo, placed: &[&AgentInfo]) -> Result<(), String> {
        let field = self.field.as_str();
        let Some(value) = candidate.field_value(field) else {
            return if self.operator == Operator::Unlike {
                Ok(())
            } else {
                Err(format!("agent {} has no attribute {field:?}", candidate.hostname))
            };
        };
        let placed_values = || placed.iter().filter_map(|a| a.field_value(field));
        match self.operator {
            Operator::Unique => match placed_values().any(|v| v == value) {
                true => Err(format!("an instance already runs on {field} {value}")),
                false => Ok(()),
            },
            Operator::Cluster => {
                let wanted = match self.value.as_deref().filter(|v| !v.is_empty()) {
                    Some(v) => Some(v),
                    None => placed_values().next(),
                };
                match wanted {
                    Some(w) if w != value => Err(format!("{field} is {value}, instances must run on {field} {w}")),
                    _ => Ok(()),
                }
            }
            Operator::GroupBy => {
                let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
                for v in placed_values() {
                    *counts.entry(v).or_default() += 1;
                }
                let mine = counts.get(value).copied().unwrap_or(0);
                if mine == 0 {
                    return Ok(());
                }
                let wanted_groups = self.value.as_deref().and_then(parse_count).unwrap_or(0);
                let smallest = if (counts.len() as u64) < wanted_groups {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                if mine <= smallest {
                    Ok(())
                } else {
                    Err(format!(
                        "{mine} instances already run on {field} {value}, other groups have {smallest}"
                    ))
                }
            }
            Operator::Like => match self.matches(value) {
                true => Ok(()),
                false => Err(format!(
                    "{field} {value} does not match {}",
                    self.value.as_deref().unwrap_or("")
                )),
            },
            Operator::Unlike => match self.matches(value) {
                true => Err(format!(
                    "{field} {value} matches {}",
                    self.value.as_deref().unwrap_or("")
                )),
                false => Ok(()),
            },
            Operator::MaxPer => {
                let max = self.value.as_deref().and_then(parse_count).unwrap_or(0);
                let count = placed_values().filter(|v| *v == value).count() as u64;
                if count < max {
                    Ok(())
                } else {
                    Err(format!(
                        "{count} instances already run on {field} {value} (at most {max})"
                    ))
                }
            }
            Operator::Is => {
                let wanted = self.value.as_deref().unwrap_or("");
                if values_equal(value, wanted) {
                    Ok(())
                } else {
                    Err(format!("{field} is {value}, not {wanted}"))
                }
            }
        }
    }

    fn matches(&self, value: &str) -> bool {
        self.pattern.as_ref().is_some_and(|p| p.is_match(value))
    }
}

fn parse_count(v: &str) -> Option<u64> {
    v.trim().parse().ok()
}

/// `IS` compares text exactly and numbers numerically (`"1"` is `"1.0"`).
fn values_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl fmt::Display for Constraint {
    /// Marathon's `field:OPERATOR[:value]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.field, self.operator.as_str())?;
        if let Some(v) = &self.value {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_parts().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parts = Vec::<String>::deserialize(deserializer)?;
        Constraint::parse(&parts).map_err(serde::de::Error::custom)
    }
}

/// What placement needs to know of an agent: its id, hostname and attributes (formatted as
/// strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub id: String,
    pub hostname: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl AgentInfo {
    pub fn new(id: &str, hostname: &str) -> AgentInfo {
        AgentInfo {
            id: id.to_string(),
            hostname: hostname.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with_attribute(mut self, name: &str, value: &str) -> AgentInfo {
        self.attributes.insert(name.to_string(), value.to_string());
        self
    }

    /// The value a constraint on `field` sees: the hostname for `hostname`, else the attribute.
    pub fn field_value(&self, field: &str) -> Option<&str> {
        if field == "hostname" {
            Some(&self.hostname)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

/// The first constraint a candidate agent does not meet, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintViolation {
    /// The constraint in Marathon's `field:OPERATOR[:value]` form.
    pub constraint: String,
    pub reason: String,
}

impl fmt::Display for ConstraintViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "constraint {} not met: {}", self.constraint, self.reason)
    }
}

/// Checks every constraint in order for one more instance on `candidate`; `placed` holds the
/// agent of each other active instance of the app.
pub fn check_all(
    constraints: &[Constraint],
    candidate: &AgentInfo,
    placed: &[&AgentInfo],
) -> Result<(), ConstraintViolation> {
    for c in constraints {
        c.check(candidate, placed).map_err(|reason| ConstraintViolation {
            constraint: c.to_string(),
            reason,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(parts: &[&str]) -> Constraint {
        Constraint::parse(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn err(parts: &[&str]) -> String {
        Constraint::parse(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err()
    }

    fn agent(host: &str, rack: Option<&str>) -> AgentInfo {
        let a = AgentInfo::new(host, host);
        match rack {
            Some(r) => a.with_attribute("rack", r),
            None => a,
        }
    }

    #[test]
    fn parse_validates_shape_and_values() {
        assert_eq!(err(&["hostname"]), "Each constraint must have either 2 or 3 fields");
        assert_eq!(
            err(&["a", "UNIQUE", "b", "c"]),
            "Each constraint must have either 2 or 3 fields"
        );
        assert_eq!(err(&["hostname", "unique"]), UNKNOWN_OPERATOR);
        assert_eq!(err(&["hostname", "UNIQUE", "x"]), "Value specified but not used");
        assert_eq!(err(&["rack", "LIKE"]), "LIKE requires a regular expression");
        assert_eq!(
            err(&["rack", "UNLIKE", "rack-[1"]),
            "'rack-[1' is not a valid regular expression"
        );
        assert!(err(&["rack", "MAX_PER", "0"]).contains("positive integer"));
        assert!(err(&["rack", "MAX_PER"]).contains("requires a value"));
        assert!(err(&["rack", "GROUP_BY", "x"]).contains("non-negative integer"));
        assert!(err(&["rack", "IS"]).contains("requires a value"));
        assert!(err(&["", "UNIQUE"]).contains("field"));
        c(&["rack", "GROUP_BY"]);
        c(&["rack", "GROUP_BY", "3"]);
        c(&["rack", "CLUSTER"]);
        c(&["rack", "CLUSTER", "rack-1"]);
    }

    #[test]
    fn serde_uses_the_array_form() {
        let parsed: Constraint = serde_json::from_str(r#"["rack","LIKE","rack-[1-3]"]"#).unwrap();
        assert_eq!(parsed.to_string(), "rack:LIKE:rack-[1-3]");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"["rack","LIKE","rack-[1-3]"]"#
        );
        assert!(serde_json::from_str::<Constraint>(r#"["rack","NOPE"]"#).is_err());
    }

    #[test]
    fn unique_on_hostname_and_attribute() {
        let unique_host = c(&["hostname", "UNIQUE"]);
        let a = agent("a", Some("r1"));
        let b = agent("b", Some("r1"));
        assert!(unique_host.check(&a, &[]).is_ok());
        assert!(unique_host.check(&a, &[&b]).is_ok());
        assert_eq!(
            unique_host.check(&a, &[&a]).unwrap_err(),
            "an instance already runs on hostname a"
        );
        let unique_rack = c(&["rack", "UNIQUE"]);
        assert!(unique_rack.check(&a, &[&b]).is_err());
        assert!(unique_rack.check(&agent("c", Some("r2")), &[&b]).is_ok());
        assert!(
            unique_rack.check(&agent("d", None), &[]).is_err(),
            "missing attribute refuses"
        );
    }

    #[test]
    fn cluster_with_and_without_value() {
        let fixed = c(&["rack", "CLUSTER", "r1"]);
        assert!(fixed.check(&agent("a", Some("r1")), &[]).is_ok());
        assert!(fixed.check(&agent("a", Some("r2")), &[]).is_err());
        let host = c(&["hostname", "CLUSTER", "a.specific.node.com"]);
        assert!(host.check(&agent("a.specific.node.com", None), &[]).is_ok());
        assert!(host.check(&agent("other", None), &[]).is_err());
        let follow = c(&["rack", "CLUSTER"]);
        let first = agent("a", Some("r7"));
        assert!(
            follow.check(&agent("x", Some("r3")), &[]).is_ok(),
            "first instance goes anywhere"
        );
        assert!(follow.check(&agent("b", Some("r7")), &[&first]).is_ok());
        assert!(follow.check(&agent("b", Some("r3")), &[&first]).is_err());
        assert!(follow.check(&agent("b", None), &[]).is_err());
        let empty = c(&["rack", "CLUSTER", ""]);
        assert!(
            empty.check(&agent("b", Some("r3")), &[&first]).is_err(),
            "empty value behaves as no value"
        );
    }

    #[test]
    fn group_by_spreads_evenly() {
        let r1 = agent("a", Some("r1"));
        let r2 = agent("b", Some("r2"));
        let r3 = agent("c", Some("r3"));
        // Without a count only the values seen so far are groups.
        let g = c(&["rack", "GROUP_BY"]);
        assert!(g.check(&r1, &[]).is_ok());
        assert!(g.check(&r1, &[&r1]).is_ok(), "a single group is always the smallest");
        assert!(g.check(&r2, &[&r1]).is_ok(), "a new value is always welcome");
        assert!(g.check(&r1, &[&r1, &r2]).is_ok());
        assert!(g.check(&r1, &[&r1, &r1, &r2]).is_err());
        // With a count, a value that already has instances waits until all groups exist.
        let g3 = c(&["rack", "GROUP_BY", "3"]);
        assert!(g3.check(&r1, &[&r1]).is_err());
        assert!(g3.check(&r1, &[&r1, &r2]).is_err());
        assert!(g3.check(&r3, &[&r1, &r2]).is_ok());
        assert!(g3.check(&r1, &[&r1, &r2, &r3]).is_ok());
        assert!(g3.check(&r1, &[&r1, &r1, &r2, &r3]).is_err());
    }

    #[test]
    fn like_and_unlike_match_the_whole_value() {
        let like = c(&["rack", "LIKE", "rack-[1-3]"]);
        assert!(like.check(&agent("a", Some("rack-2")), &[]).is_ok());
        assert!(like.check(&agent("a", Some("rack-4")), &[]).is_err());
        assert!(
            like.check(&agent("a", Some("xrack-2")), &[]).is_err(),
            "full match only"
        );
        assert!(
            like.check(&agent("a", Some("rack-22")), &[]).is_err(),
            "full match only"
        );
        assert!(like.check(&agent("a", None), &[]).is_err());
        let any = c(&["rack", "LIKE", ".*"]);
        assert!(any.check(&agent("a", Some("")), &[]).is_ok());
        let alternatives = c(&["hostname", "LIKE", "a|b"]);
        assert!(
            alternatives.check(&agent("b", None), &[]).is_ok(),
            "alternation is grouped by the anchors"
        );
        assert!(alternatives.check(&agent("ab", None), &[]).is_err());
        let unlike = c(&["rack", "UNLIKE", "rack-[7-9]"]);
        assert!(unlike.check(&agent("a", Some("rack-1")), &[]).is_ok());
        assert!(unlike.check(&agent("a", Some("rack-8")), &[]).is_err());
        assert!(
            unlike.check(&agent("a", None), &[]).is_ok(),
            "UNLIKE accepts agents without the attribute"
        );
    }

    #[test]
    fn max_per_counts_per_value() {
        let m = c(&["rack", "MAX_PER", "2"]);
        let r1 = agent("a", Some("r1"));
        assert!(m.check(&r1, &[&r1]).is_ok());
        assert!(m.check(&r1, &[&r1, &r1]).is_err());
        assert!(m.check(&agent("b", Some("r2")), &[&r1, &r1]).is_ok());
    }

    #[test]
    fn is_compares_text_and_numbers() {
        let is = c(&["gen", "IS", "3"]);
        let a = AgentInfo::new("a", "a").with_attribute("gen", "3.0");
        assert!(is.check(&a, &[]).is_ok());
        let b = AgentInfo::new("b", "b").with_attribute("gen", "4");
        assert!(is.check(&b, &[]).is_err());
        let text = c(&["os", "IS", "linux"]);
        assert!(text
            .check(&AgentInfo::new("a", "a").with_attribute("os", "linux"), &[])
            .is_ok());
        assert!(text
            .check(&AgentInfo::new("a", "a").with_attribute("os", "Linux"), &[])
            .is_err());
    }

    #[test]
    fn check_all_names_the_failing_constraint() {
        let cs = vec![c(&["rack", "LIKE", "r.*"]), c(&["hostname", "UNIQUE"])];
        let a = agent("a", Some("r1"));
        let v = check_all(&cs, &a, &[&a]).unwrap_err();
        assert_eq!(v.constraint, "hostname:UNIQUE");
        assert_eq!(
            v.to_string(),
            "constraint hostname:UNIQUE not met: an instance already runs on hostname a"
        );
        assert!(check_all(&cs, &agent("b", Some("r1")), &[&a]).is_ok());
    }
}
