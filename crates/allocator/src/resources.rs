//! The resource model: exact scalars, port ranges, sets, and bundles of them with reservations.
//!
//! Scalars are fixed point with three decimals (milli-units in a `u64`), as in Mesos, so
//! `0.1 + 0.2 == 0.3` and adding and taking away the same amounts always returns to the start.
//! A [`Resources`] bundle is kept normalized (sorted by name, reservation and kind; no empty
//! entries), so two bundles that hold the same resources are equal with `==`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Error, Role};

/// A non-negative amount with three decimals, stored as an integer number of thousandths.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scalar(u64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    pub const fn from_milli(milli: u64) -> Scalar {
        Scalar(milli)
    }

    pub const fn from_units(units: u64) -> Scalar {
        Scalar(units * 1000)
    }

    /// Rounds to the nearest thousandth, as Mesos does when it reads a double. `None` for a
    /// negative, non-finite or too large value.
    pub fn from_f64(value: f64) -> Option<Scalar> {
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let milli = (value * 1000.0).round();
        if milli >= u64::MAX as f64 {
            return None;
        }
        Some(Scalar(milli as u64))
    }

    pub const fn milli(self) -> u64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Scalar) -> Option<Scalar> {
        self.0.checked_add(other.0).map(Scalar)
    }

    pub fn checked_sub(self, other: Scalar) -> Option<Scalar> {
        self.0.checked_sub(other.0).map(Scalar)
    }

    pub fn saturating_sub(self, other: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.checked_add(rhs.0).expect("scalar overflow"))
    }
}

impl std::ops::AddAssign for Scalar {
    fn add_assign(&mut self, rhs: Scalar) {
        *self = *self + rhs;
    }
}

impl std::ops::Sub for Scalar {
    type Output = Scalar;
    /// Panics when `rhs > self`; use [`Scalar::checked_sub`] when that can happen.
    fn sub(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.checked_sub(rhs.0).expect("scalar underflow"))
    }
}

impl FromStr for Scalar {
    type Err = Error;
    /// Reads a plain decimal (`4`, `0.25`, `.5`); a fourth decimal and beyond round half up.
    fn from_str(s: &str) -> Result<Scalar, Error> {
        let bad = |reason: &'static str| Error::Parse {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad("empty number"));
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("not a non-negative decimal number"));
        }
        let mut milli: u64 = 0;
        for b in int.bytes() {
            milli = milli
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| bad("number too large"))?;
        }
        milli = milli.checked_mul(1000).ok_or_else(|| bad("number too large"))?;
        let digits = frac.as_bytes();
        let mut place = 100;
        for &d in digits.iter().take(3) {
            milli += u64::from(d - b'0') * place;
            place /= 10;
        }
        if digits.len() > 3 && digits[3] >= b'5' {
            milli = milli.checked_add(1).ok_or_else(|| bad("number too large"))?;
        }
        Ok(Scalar(milli))
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{int}.{}", s.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A set of non-negative integers (ports) as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new() -> Ranges {
        Ranges(Vec::new())
    }

    /// Builds from inclusive `(begin, end)` pairs in any order; overlapping pairs merge.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<Ranges, Error> {
        let mut v = Vec::new();
        for (lo, hi) in pairs {
            if lo > hi {
                return Err(Error::Parse {
                    input: format!("{lo}-{hi}"),
                    reason: "range begins after it ends",
                });
            }
            v.push((lo, hi));
        }
        Ok(Ranges::normalize(v))
    }

    /// One inclusive range; panics if `lo > hi`.
    pub fn range(lo: u64, hi: u64) -> Ranges {
        assert!(lo <= hi, "range {lo}-{hi} begins after it ends");
        Ranges(vec![(lo, hi)])
    }

    fn normalize(mut v: Vec<(u64, u64)>) -> Ranges {
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Ranges(out)
    }

    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values the ranges hold.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    pub fn union(&self, other: &Ranges) -> Ranges {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = Vec::with_capacity(self.0.len() + other.0.len());
        v.extend_from_slice(&self.0);
        v.extend_from_slice(&other.0);
        Ranges::normalize(v)
    }

    /// Whether every value of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        let mut i = 0;
        for &(lo, hi) in &other.0 {
            while i < self.0.len() && self.0[i].1 < lo {
                i += 1;
            }
            match self.0.get(i) {
                Some(&(a, b)) if a <= lo && hi <= b => {}
                _ => return false,
            }
        }
        true
    }

    /// The values of `self` that are not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::with_capacity(self.0.len());
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            let mut cur = lo;
            while j < other.0.len() && other.0[j].1 < cur {
                j += 1;
            }
            let mut k = j;
            let mut done = false;
            while k < other.0.len() && other.0[k].0 <= hi {
                let (olo, ohi) = other.0[k];
                if olo > cur {
                    out.push((cur, olo - 1));
                }
                if ohi >= hi {
                    done = true;
                    break;
                }
                cur = cur.max(ohi + 1);
                k += 1;
            }
            if !done && cur <= hi {
                out.push((cur, hi));
            }
        }
        Ranges(out)
    }

    pub fn overlaps(&self, other: &Ranges) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            if a.1 < b.0 {
                i += 1;
            } else if b.1 < a.0 {
                j += 1;
            } else {
                return true;
            }
        }
        false
    }

    /// The lowest `n` values (fewer if there are not that many), for a framework picking ports.
    pub fn take_lowest(&self, n: u64) -> Ranges {
        let mut left = n;
        let mut out = Vec::new();
        for &(lo, hi) in &self.0 {
            if left == 0 {
                break;
            }
            let len = hi - lo + 1;
            let take = len.min(left);
            out.push((lo, lo + take - 1));
            left -= take;
        }
        Ranges(out)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{lo}-{hi}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A set of text items, as a SET resource or attribute (`{a,b}`).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueSet(BTreeSet<String>);

impl ValueSet {
    pub fn new() -> ValueSet {
        ValueSet(BTreeSet::new())
    }

    pub fn from_items<S: Into<String>>(items: impl IntoIterator<Item = S>) -> ValueSet {
        ValueSet(items.into_iter().map(Into::into).collect())
    }

    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn union(&self, other: &ValueSet) -> ValueSet {
        ValueSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn contains(&self, other: &ValueSet) -> bool {
        other.0.is_subset(&self.0)
    }

    pub fn difference(&self, other: &ValueSet) -> ValueSet {
        ValueSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn overlaps(&self, other: &ValueSet) -> bool {
        !self.0.is_disjoint(&other.0)
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A resource name. The well-known ones cost nothing to clone or compare.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(NameRepr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum NameRepr {
    Cpus,
    Mem,
    Disk,
    Gpus,
    Ports,
    Custom(Arc<str>),
}

impl ResourceName {
    pub const CPUS: ResourceName = ResourceName(NameRepr::Cpus);
    /// Memory in MB, as in Mesos.
    pub const MEM: ResourceName = ResourceName(NameRepr::Mem);
    /// Disk in MB, as in Mesos.
    pub const DISK: ResourceName = ResourceName(NameRepr::Disk);
    pub const GPUS: ResourceName = ResourceName(NameRepr::Gpus);
    pub const PORTS: ResourceName = ResourceName(NameRepr::Ports);

    /// Any name of letters, digits, `_`, `-`, `.` and `/`; the well-known names map to their
    /// constants.
    pub fn new(name: &str) -> Result<ResourceName, Error> {
        Ok(ResourceName(match name {
            "cpus" => NameRepr::Cpus,
            "mem" => NameRepr::Mem,
            "disk" => NameRepr::Disk,
            "gpus" => NameRepr::Gpus,
            "ports" => NameRepr::Ports,
            _ => {
                let ok = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
                if !ok {
                    return Err(Error::Parse {
                        input: name.to_string(),
                        reason: "invalid resource name",
                    });
                }
                NameRepr::Custom(Arc::from(name))
            }
        }))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            NameRepr::Cpus => "cpus",
            NameRepr::Mem => "mem",
            NameRepr::Disk => "disk",
            NameRepr::Gpus => "gpus",
            NameRepr::Ports => "ports",
            NameRepr::Custom(s) => s,
        }
    }

    /// Dense index of the well-known scalar names (cpus 0, mem 1, disk 2, gpus 3).
    pub(crate) fn known_scalar_index(&self) -> Option<usize> {
        match self.0 {
            NameRepr::Cpus => Some(0),
            NameRepr::Mem => Some(1),
            NameRepr::Disk => Some(2),
            NameRepr::Gpus => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Static reservations come from an agent's configuration and cannot be unreserved through the
/// API; dynamic ones are made and removed by RESERVE and UNRESERVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservationKind {
    Static,
    Dynamic,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reservation {
    pub role: Role,
    pub kind: ReservationKind,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Scalar(Scalar),
    Ranges(Ranges),
    Set(ValueSet),
}

impl Value {
    fn kind(&self) -> u8 {
        match self {
            Value::Scalar(_) => 0,
            Value::Ranges(_) => 1,
            Value::Set(_) => 2,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => s.is_zero(),
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }

    /// `None` when two scalars add up past what a [`Scalar`] holds.
    fn checked_add(&self, other: &Value) -> Option<Value> {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => a.checked_add(*b).map(Value::Scalar),
            _ => Some(self.add(other)),
        }
    }

    fn add(&self, other: &Value) -> Value {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(*a + *b),
            (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.union(b)),
            (Value::Set(a), Value::Set(b)) => Value::Set(a.union(b)),
            _ => unreachable!("values of one key share a kind"),
        }
    }

    fn contains(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            (Value::Set(a), Value::Set(b)) => a.contains(b),
            _ => false,
        }
    }

    /// `None` unless `self` contains `other`.
    fn checked_sub(&self, other: &Value) -> Option<Value> {
        if !self.contains(other) {
            return None;
        }
        Some(match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(*a - *b),
            (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.difference(b)),
            (Value::Set(a), Value::Set(b)) => Value::Set(a.difference(b)),
            _ => unreachable!(),
        })
    }

    /// Whether the two share an item that cannot be given out twice (a port, a set item).
    /// Scalars are fungible and never "overlap".
    fn overlaps(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Ranges(a), Value::Ranges(b)) => a.overlaps(b),
            (Value::Set(a), Value::Set(b)) => a.overlaps(b),
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => write!(f, "{s}"),
            Value::Ranges(r) => write!(f, "{r}"),
            Value::Set(s) => write!(f, "{s}"),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One entry of a bundle: a name, an optional reservation and a value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    pub name: ResourceName,
    pub reservation: Option<Reservation>,
    pub value: Value,
}

impl Resource {
    pub fn scalar(name: ResourceName, amount: Scalar) -> Resource {
        Resource {
            name,
            reservation: None,
            value: Value::Scalar(amount),
        }
    }

    pub fn ranges(name: ResourceName, ranges: Ranges) -> Resource {
        Resource {
            name,
            reservation: None,
            value: Value::Ranges(ranges),
        }
    }

    pub fn set(name: ResourceName, set: ValueSet) -> Resource {
        Resource {
            name,
            reservation: None,
            value: Value::Set(set),
        }
    }

    pub fn reserved(mut self, role: Role, kind: ReservationKind) -> Resource {
        self.reservation = Some(Reservation { role, kind });
        self
    }

    pub fn is_unreserved(&self) -> bool {
        self.reservation.is_none()
    }

    pub fn as_scalar(&self) -> Option<Scalar> {
        match self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn key_cmp(&self, other: &Resource) -> Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| self.reservation.cmp(&other.reservation))
            .then_with(|| self.value.kind().cmp(&other.value.kind()))
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        match &self.reservation {
            Some(Reservation {
                role,
                kind: ReservationKind::Static,
            }) => write!(f, "({role})")?,
            Some(Reservation {
                role,
                kind: ReservationKind::Dynamic,
            }) => write!(f, "({role},dynamic)")?,
            None => {}
        }
        write!(f, ":{}", self.value)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A bundle of resources with exact arithmetic.
///
/// The text form is the Mesos agent flag's: `cpus:4;mem:8192;ports:[31000-32000]`, with
/// `cpus(eng):2` for a static reservation to `eng` and `cpus(eng,dynamic):2` for a dynamic one,
/// and `{a,b}` for a set.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources(Vec<Resource>);

impl Resources {
    pub fn new() -> Resources {
        Resources(Vec::new())
    }

    pub fn parse(text: &str) -> Result<Resources, Error> {
        text.parse()
    }

    /// A bundle of one scalar.
    pub fn scalar(name: ResourceName, amount: Scalar) -> Resources {
        Resources::new().with(Resource::scalar(name, amount))
    }

    /// Adds one entry (builder style).
    pub fn with(mut self, resource: Resource) -> Resources {
        self.push(resource);
        self
    }

    /// Adds one entry, merging it with an entry of the same name, reservation and kind.
    pub fn push(&mut self, resource: Resource) {
        if resource.value.is_empty() {
            return;
        }
        match self.0.binary_search_by(|r| r.key_cmp(&resource)) {
            Ok(i) => self.0[i].value = self.0[i].value.add(&resource.value),
            Err(i) => self.0.insert(i, resource),
        }
    }

    /// As [`Resources::push`], for amounts from outside: two scalars that add up past what a
    /// [`Scalar`] holds are an error, and `self` is left as it was.
    pub fn try_push(&mut self, resource: Resource) -> Result<(), Error> {
        if resource.value.is_empty() {
            return Ok(());
        }
        match self.0.binary_search_by(|r| r.key_cmp(&resource)) {
            Ok(i) => {
                let sum = self.0[i].value.checked_add(&resource.value).ok_or(Error::Overflow {
                    name: resource.name.to_string(),
                })?;
                self.0[i].value = sum;
            }
            Err(i) => self.0.insert(i, resource),
        }
        Ok(())
    }

    /// Builds from entries already sorted by key with no duplicate keys and no empty values.
    pub(crate) fn from_sorted(v: Vec<Resource>) -> Resources {
        debug_assert!(v.windows(2).all(|w| w[0].key_cmp(&w[1]) == Ordering::Less));
        debug_assert!(v.iter().all(|r| !r.value.is_empty()));
        Resources(v)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.0 = other.0.clone();
            return;
        }
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].key_cmp(&b[j]) {
                Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    let mut r = a[i].clone();
                    r.value = a[i].value.add(&b[j].value);
                    out.push(r);
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.0 = out;
    }

    /// Whether `self` holds everything in `other` (same names, reservations and at least the
    /// amounts, ranges and items).
    pub fn contains(&self, other: &Resources) -> bool {
        let a = &self.0;
        let mut i = 0;
        for r in &other.0 {
            while i < a.len() && a[i].key_cmp(r) == Ordering::Less {
                i += 1;
            }
            match a.get(i) {
                Some(x) if x.key_cmp(r) == Ordering::Equal && x.value.contains(&r.value) => {}
                _ => return false,
            }
        }
        true
    }

    /// `self - other`, or `None` unless `self` contains `other`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        let a = &self.0;
        let mut out = Vec::with_capacity(a.len());
        let mut i = 0;
        for r in &other.0 {
            while i < a.len() && a[i].key_cmp(r) == Ordering::Less {
                out.push(a[i].clone());
                i += 1;
            }
            let x = a.get(i).filter(|x| x.key_cmp(r) == Ordering::Equal)?;
            let v = x.value.checked_sub(&r.value)?;
            if !v.is_empty() {
                out.push(Resource {
                    name: x.name.clone(),
                    reservation: x.reservation.clone(),
                    value: v,
                });
            }
            i += 1;
        }
        out.extend_from_slice(&a[i..]);
        Some(Resources(out))
    }

    /// Takes `other` out of `self`; returns false and leaves `self` alone unless `self` contains
    /// `other`.
    pub fn try_sub_assign(&mut self, other: &Resources) -> bool {
        match self.checked_sub(other) {
            Some(r) => {
                *self = r;
                true
            }
            None => false,
        }
    }

    /// Whether a port or set item of `other` is also in `self`: the two could not both be given
    /// out. Scalars never overlap.
    pub fn overlaps(&self, other: &Resources) -> Option<&Resource> {
        let a = &self.0;
        let mut i = 0;
        for r in &other.0 {
            while i < a.len() && a[i].key_cmp(r) == Ordering::Less {
                i += 1;
            }
            if let Some(x) = a.get(i) {
                if x.key_cmp(r) == Ordering::Equal && x.value.overlaps(&r.value) {
                    return Some(x);
                }
            }
        }
        None
    }

    pub fn filter(&self, mut keep: impl FnMut(&Resource) -> bool) -> Resources {
        Resources(self.0.iter().filter(|r| keep(r)).cloned().collect())
    }

    pub fn unreserved(&self) -> Resources {
        self.filter(|r| r.reservation.is_none())
    }

    pub fn reserved(&self) -> Resources {
        self.filter(|r| r.reservation.is_some())
    }

    /// The entries reserved to exactly `role`.
    pub fn reserved_to(&self, role: &Role) -> Resources {
        self.filter(|r| r.reservation.as_ref().is_some_and(|v| &v.role == role))
    }

    /// The same resources, all reserved to `role` with `kind`.
    pub fn reserve_to(&self, role: &Role, kind: ReservationKind) -> Resources {
        let mut out = Resources::new();
        for r in &self.0 {
            out.push(r.clone().reserved(role.clone(), kind));
        }
        out
    }

    /// The same resources with every reservation removed.
    pub fn strip_reservations(&self) -> Resources {
        let mut out = Resources::new();
        for r in &self.0 {
            out.push(Resource {
                name: r.name.clone(),
                reservation: None,
                value: r.value.clone(),
            });
        }
        out
    }

    /// The total of one scalar across all reservations.
    pub fn scalar_sum(&self, name: &ResourceName) -> Scalar {
        self.0
            .iter()
            .filter(|r| &r.name == name)
            .filter_map(Resource::as_scalar)
            .fold(Scalar::ZERO, |a, b| a + b)
    }

    /// The unreserved part of one scalar.
    pub fn unreserved_scalar(&self, name: &ResourceName) -> Scalar {
        self.0
            .iter()
            .filter(|r| &r.name == name && r.reservation.is_none())
            .filter_map(Resource::as_scalar)
            .fold(Scalar::ZERO, |a, b| a + b)
    }

    /// The unreserved ranges of one name (ports).
    pub fn unreserved_ranges(&self, name: &ResourceName) -> Ranges {
        self.0
            .iter()
            .filter(|r| &r.name == name && r.reservation.is_none())
            .find_map(|r| match &r.value {
                Value::Ranges(x) => Some(x.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The scalar totals by name, across reservations.
    pub fn quantities(&self) -> Quantities {
        let mut q = Quantities::new();
        for r in &self.0 {
            if let Value::Scalar(s) = r.value {
                let e = q.0.entry(r.name.clone()).or_insert(Scalar::ZERO);
                *e += s;
            }
        }
        q
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromStr for Resources {
    type Err = Error;
    fn from_str(text: &str) -> Result<Resources, Error> {
        let bad = |reason: &'static str| Error::Parse {
            input: text.to_string(),
            reason,
        };
        let mut out = Resources::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (head, value) = part.split_once(':').ok_or_else(|| bad("expected name:value"))?;
            let (name, reservation) = match head.split_once('(') {
                Some((n, rest)) => {
                    let inner = rest.strip_suffix(')').ok_or_else(|| bad("unclosed '('"))?;
                    let (role, kind) = match inner.split_once(',') {
                        Some((r, "dynamic")) => (r, ReservationKind::Dynamic),
                        Some(_) => return Err(bad("expected (role) or (role,dynamic)")),
                        None => (inner, ReservationKind::Static),
                    };
                    let role = Role::new(role.trim())?;
                    if role.is_default() {
                        // `cpus(*):4` is Mesos' spelling of unreserved.
                        (n, None)
                    } else {
                        (n, Some(Reservation { role, kind }))
                    }
                }
                None => (head, None),
            };
            let name = ResourceName::new(name.trim())?;
            let value = parse_value(value.trim())?;
            if let Some(prev) = out.0.iter().find(|r| r.name == name && r.value.kind() != value.kind()) {
                return Err(Error::Parse {
                    input: format!("{part} (and {prev})"),
                    reason: "one resource name with two kinds of value",
                });
            }
            out.push(Resource {
                name,
                reservation,
                value,
            });
        }
        Ok(out)
    }
}

pub(crate) fn parse_value(v: &str) -> Result<Value, Error> {
    let bad = |reason: &'static str| Error::Parse {
        input: v.to_string(),
        reason,
    };
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?;
        let mut pairs = Vec::new();
        for p in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            let lo: u64 = lo.trim().parse().map_err(|_| bad("range bound is not an integer"))?;
            let hi: u64 = hi.trim().parse().map_err(|_| bad("range bound is not an integer"))?;
            pairs.push((lo, hi));
        }
        return Ok(Value::Ranges(Ranges::from_pairs(pairs)?));
    }
    if let Some(inner) = v.strip_prefix('{') {
        let inner = inner.strip_suffix('}').ok_or_else(|| bad("unclosed '{'"))?;
        return Ok(Value::Set(ValueSet::from_items(
            inner.split(',').map(str::trim).filter(|s| !s.is_empty()),
        )));
    }
    Ok(Value::Scalar(v.parse()?))
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Scalar amounts by name, without reservations: quota guarantees and limits, minimum
/// allocatable amounts, consumption. Text form `cpus:4;mem:1024`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Quantities(BTreeMap<ResourceName, Scalar>);

impl Quantities {
    pub fn new() -> Quantities {
        Quantities(BTreeMap::new())
    }

    pub fn parse(text: &str) -> Result<Quantities, Error> {
        let mut q = Quantities::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once(':').ok_or_else(|| Error::Parse {
                input: part.to_string(),
                reason: "expected name:value",
            })?;
            let name = ResourceName::new(name.trim())?;
            if name == ResourceName::PORTS {
                return Err(Error::Parse {
                    input: part.to_string(),
                    reason: "ports are not a scalar",
                });
            }
            q.set(name, value.parse()?);
        }
        Ok(q)
    }

    pub fn with(mut self, name: ResourceName, amount: Scalar) -> Quantities {
        self.set(name, amount);
        self
    }

    pub fn set(&mut self, name: ResourceName, amount: Scalar) {
        self.0.insert(name, amount);
    }

    pub fn get(&self, name: &ResourceName) -> Option<Scalar> {
        self.0.get(name).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ResourceName, Scalar)> {
        self.0.iter().map(|(n, s)| (n, *s))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` has at least every amount in `other`.
    pub fn contains(&self, other: &Quantities) -> bool {
        other.0.iter().all(|(n, s)| self.get(n).unwrap_or(Scalar::ZERO) >= *s)
    }
}

impl fmt::Display for Quantities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("{}");
        }
        for (i, (n, s)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{n}:{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Quantities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        s.parse().unwrap()
    }

    #[test]
    fn try_push_refuses_scalars_that_add_up_past_the_maximum() {
        let huge = Scalar::from_f64(1e16).unwrap();
        let mut r = Resources::new();
        r.try_push(Resource::scalar(ResourceName::CPUS, huge)).unwrap();
        let e = r.try_push(Resource::scalar(ResourceName::CPUS, huge)).unwrap_err();
        assert!(e.to_string().contains("cpus"), "{e}");
        assert_eq!(r, Resources::scalar(ResourceName::CPUS, huge), "left as it was");
        r.try_push(Resource::scalar(ResourceName::MEM, huge)).unwrap();
        r.try_push(Resource::scalar(ResourceName::CPUS, Scalar::from_units(1)))
            .unwrap();
        assert_eq!(r.scalar_sum(&ResourceName::CPUS), huge + Scalar::from_units(1));
    }

    #[test]
    fn scalars_are_exact() {
        let a: Scalar = "0.1".parse().unwrap();
        let b: Scalar = "0.2".parse().unwrap();
        assert_eq!(a + b, "0.3".parse().unwrap());
        assert_eq!(
            Scalar::from_f64(0.1).unwrap() + Scalar::from_f64(0.2).unwrap(),
            Scalar::from_f64(0.3).unwrap()
        );
        assert_ne!(0.1f64 + 0.2, 0.3, "f64 would drift here");
        let mut x = Scalar::from_units(1);
        for _ in 0..10 {
            x = x - "0.1".parse().unwrap();
        }
        assert_eq!(x, Scalar::ZERO);
        assert_eq!("0.0005".parse::<Scalar>().unwrap().milli(), 1);
        assert_eq!("0.0004".parse::<Scalar>().unwrap().milli(), 0);
        assert_eq!("12".parse::<Scalar>().unwrap().to_string(), "12");
        assert_eq!("1.250".parse::<Scalar>().unwrap().to_string(), "1.25");
        assert!("-1".parse::<Scalar>().is_err());
        assert!("1e3".parse::<Scalar>().is_err());
    }

    #[test]
    fn bundles_add_and_subtract() {
        let a = r("cpus:0.1;mem:32;ports:[31000-31005]");
        let mut b = a.clone();
        b.add(&r("cpus:0.2;ports:[31006-31010,40000-40000]"));
        assert_eq!(b, r("cpus:0.3;mem:32;ports:[31000-31010,40000-40000]"));
        assert!(b.contains(&a));
        assert!(!a.contains(&b));
        let c = b.checked_sub(&r("ports:[31003-31004];mem:32")).unwrap();
        assert_eq!(c, r("cpus:0.3;ports:[31000-31002,31005-31010,40000-40000]"));
        assert!(c.checked_sub(&r("ports:[31003-31003]")).is_none());
        assert!(c.checked_sub(&r("cpus:0.301")).is_none());
        assert_eq!(c.checked_sub(&c).unwrap(), Resources::new());
    }

    #[test]
    fn reservations_are_separate_keys() {
        let a = r("cpus:4;cpus(eng):2;mem(eng,dynamic):512");
        assert_eq!(a.scalar_sum(&ResourceName::CPUS), Scalar::from_units(6));
        assert_eq!(a.unreserved_scalar(&ResourceName::CPUS), Scalar::from_units(4));
        assert!(!a.contains(&r("cpus:5")));
        assert!(a.contains(&r("cpus(eng):2")));
        assert!(!a.contains(&r("mem(eng):512")), "static and dynamic differ");
        assert_eq!(a.to_string(), "cpus:4;cpus(eng):2;mem(eng,dynamic):512");
        assert_eq!(r(&a.to_string()), a);
        let eng = Role::new("eng").unwrap();
        assert_eq!(
            r("cpus:1;mem:2").reserve_to(&eng, ReservationKind::Dynamic),
            r("cpus(eng,dynamic):1;mem(eng,dynamic):2")
        );
        assert_eq!(
            a.strip_reservations().quantities(),
            Quantities::parse("cpus:6;mem:512").unwrap()
        );
    }

    #[test]
    fn ranges_ops() {
        let a = Ranges::from_pairs([(1, 10), (20, 30)]).unwrap();
        assert_eq!(
            a.difference(&Ranges::from_pairs([(5, 25)]).unwrap()).pairs(),
            &[(1, 4), (26, 30)]
        );
        assert_eq!(a.difference(&Ranges::from_pairs([(0, 100)]).unwrap()).pairs(), &[]);
        assert_eq!(
            a.difference(&Ranges::from_pairs([(1, 1), (10, 10), (21, 29)]).unwrap())
                .pairs(),
            &[(2, 9), (20, 20), (30, 30)]
        );
        assert_eq!(Ranges::from_pairs([(1, 3), (4, 6)]).unwrap().pairs(), &[(1, 6)]);
        assert!(a.overlaps(&Ranges::range(10, 12)));
        assert!(!a.overlaps(&Ranges::range(11, 19)));
        assert_eq!(a.take_lowest(12).pairs(), &[(1, 10), (20, 21)]);
        assert_eq!(a.count(), 21);
    }

    #[test]
    fn parse_errors() {
        assert!(Resources::parse("cpus").is_err());
        assert!(Resources::parse("cpus(eng:1").is_err());
        assert!(Resources::parse("cpus(/x):1").is_err());
        assert!(Resources::parse("ports:[5-3]").is_err());
        assert!(Resources::parse("cpus:1;cpus:[1-2]").is_err());
        assert_eq!(Resources::parse("cpus(*):1").unwrap(), r("cpus:1"));
    }
}
