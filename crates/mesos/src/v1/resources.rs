//! `Resource` and its reservation, allocation and disk details, plus small helpers to build
//! resources and add them up. There is no allocation logic here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Labels, Range, Ranges, ResourceProviderId, Scalar, Set, ValueType, Volume};

/// A named quantity on an agent: `cpus`, `mem` and `disk` (MB) are scalars, `ports` are
/// ranges.
///
/// Reservations come in two formats: with the `RESERVATION_REFINEMENT` capability a resource
/// carries a stack in `reservations` (empty means unreserved); without it, the deprecated
/// `role` (`"*"` = unreserved) and `reservation` fields describe a single reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<ResourceProviderId>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Set>,
    /// Deprecated pre-refinement format; `"*"` means unreserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    /// Deprecated pre-refinement format: a dynamic reservation for `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationInfo>,
    /// Post-refinement format: the reservation stack, innermost last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<ReservationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocable: Option<RevocableInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedInfo>,
}

/// The role a resource is allocated to (set on offered resources for multi-role frameworks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

open_enum! {
    pub enum ReservationType {
        Static = "STATIC",
        Dynamic = "DYNAMIC",
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationInfo {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ReservationType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// Marks revocable (oversubscribed) resources; an empty message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocableInfo {}

/// Marks shared resources (persistent volumes used by several tasks); an empty message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedInfo {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DiskSource>,
}

/// A persistent volume's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

open_enum! {
    pub enum DiskSourceType {
        Path = "PATH",
        Mount = "MOUNT",
        Block = "BLOCK",
        Raw = "RAW",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSource {
    #[serde(rename = "type")]
    pub kind: DiskSourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<DiskRoot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<DiskRoot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The `root` of a `PATH` or `MOUNT` disk source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRoot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// Mesos keeps three decimal digits of scalar precision; totals are rounded the same way.
pub fn round_scalar(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl Resource {
    fn bare(name: impl Into<String>, kind: ValueType) -> Self {
        Resource {
            provider_id: None,
            name: name.into(),
            kind,
            scalar: None,
            ranges: None,
            set: None,
            role: None,
            allocation_info: None,
            reservation: None,
            reservations: Vec::new(),
            disk: None,
            revocable: None,
            shared: None,
        }
    }

    /// An unreserved scalar resource.
    pub fn scalar(name: impl Into<String>, value: f64) -> Self {
        Resource {
            scalar: Some(Scalar::new(value)),
            ..Resource::bare(name, ValueType::Scalar)
        }
    }

    /// An unreserved ranges resource, from inclusive `(begin, end)` pairs.
    pub fn ranges(name: impl Into<String>, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Resource {
            ranges: Some(Ranges::new(ranges)),
            ..Resource::bare(name, ValueType::Ranges)
        }
    }

    /// An unreserved set resource.
    pub fn set<S: Into<String>>(name: impl Into<String>, items: impl IntoIterator<Item = S>) -> Self {
        Resource {
            set: Some(Set {
                item: items.into_iter().map(Into::into).collect(),
            }),
            ..Resource::bare(name, ValueType::Set)
        }
    }

    pub fn cpus(value: f64) -> Self {
        Resource::scalar("cpus", value)
    }

    /// Memory in MB.
    pub fn mem(value: f64) -> Self {
        Resource::scalar("mem", value)
    }

    /// Disk in MB.
    pub fn disk(value: f64) -> Self {
        Resource::scalar("disk", value)
    }

    pub fn gpus(value: f64) -> Self {
        Resource::scalar("gpus", value)
    }

    pub fn ports(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Resource::ranges("ports", ranges)
    }

    /// Marks the resource as allocated to `role` (`allocation_info.role`).
    pub fn allocated_to(mut self, role: impl Into<String>) -> Self {
        self.allocation_info = Some(AllocationInfo {
            role: Some(role.into()),
        });
        self
    }

    /// Pushes a reservation onto the (post-refinement) reservation stack.
    pub fn reserved(mut self, kind: ReservationType, role: impl Into<String>, principal: Option<String>) -> Self {
        self.reservations.push(ReservationInfo {
            kind: Some(kind),
            role: Some(role.into()),
            principal,
            labels: None,
        });
        self
    }

    /// The scalar value, if this is a scalar resource.
    pub fn scalar_value(&self) -> Option<f64> {
        match self.kind {
            ValueType::Scalar => self.scalar.map(|s| s.value),
            _ => None,
        }
    }

    /// The role the resource is reserved for, in either format; `None` when unreserved.
    pub fn reservation_role(&self) -> Option<&str> {
        if let Some(last) = self.reservations.last() {
            return last.role.as_deref();
        }
        match self.role.as_deref() {
            Some("*") | None => None,
            Some(role) => Some(role),
        }
    }

    pub fn is_reserved(&self) -> bool {
        self.reservation_role().is_some()
    }

    pub fn is_revocable(&self) -> bool {
        self.revocable.is_some()
    }

    pub fn is_persistent_volume(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.persistence.is_some())
    }
}

/// Resources added up by name: scalars summed (rounded to Mesos' precision), ranges merged,
/// sets united. Revocable resources count under `<name>_revocable`, as Mesos reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceTotals {
    pub scalars: BTreeMap<String, f64>,
    pub ranges: BTreeMap<String, Ranges>,
    pub sets: BTreeMap<String, BTreeSet<String>>,
}

impl ResourceTotals {
    pub fn of<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut totals = ResourceTotals::default();
        let mut ranges: BTreeMap<String, Vec<Range>> = BTreeMap::new();
        for r in resources {
            let name = if r.is_revocable() {
                format!("{}_revocable", r.name)
            } else {
                r.name.clone()
            };
            match &r.kind {
                ValueType::Scalar => {
                    if let Some(s) = r.scalar {
                        *totals.scalars.entry(name).or_insert(0.0) += s.value;
                    }
                }
                ValueType::Ranges => {
                    if let Some(rs) = &r.ranges {
                        ranges.entry(name).or_default().extend(rs.range.iter().copied());
                    }
                }
                ValueType::Set => {
                    if let Some(set) = &r.set {
                        totals.sets.entry(name).or_default().extend(set.item.iter().cloned());
                    }
                }
                ValueType::Text | ValueType::Unknown(_) => {}
            }
        }
        for v in totals.scalars.values_mut() {
            *v = round_scalar(*v);
        }
        totals.ranges = ranges
            .into_iter()
            .map(|(name, list)| {
                (
                    name,
                    Ranges {
                        range: super::values::coalesce(list),
                    },
                )
            })
            .collect();
        totals
    }

    /// The summed scalar, 0 when absent.
    pub fn scalar(&self, name: &str) -> f64 {
        self.scalars.get(name).copied().unwrap_or(0.0)
    }
}

/// Sum of the scalar resources called `name` (revocable ones excluded).
pub fn scalar_total<'a>(resources: impl IntoIterator<Item = &'a Resource>, name: &str) -> f64 {
    round_scalar(
        resources
            .into_iter()
            .filter(|r| r.name == name && !r.is_revocable())
            .filter_map(Resource::scalar_value)
            .sum(),
    )
}
