//! Readers for 64-bit integer fields that accept a JSON number or a numeric string.
//!
//! Mesos writes `int64`/`uint64` as JSON numbers; protobuf's canonical JSON mapping (used by
//! some clients, e.g. Java's `JsonFormat`) writes them as strings. Both are accepted here;
//! output is always a number.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

struct IntVisitor<T>(std::marker::PhantomData<T>);

macro_rules! int_visitor {
    ($t:ty, $what:literal) => {
        impl Visitor<'_> for IntVisitor<$t> {
            type Value = $t;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<$t, E> {
                <$t>::try_from(v).map_err(|_| E::custom(format_args!("{v} is out of range")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<$t, E> {
                <$t>::try_from(v).map_err(|_| E::custom(format_args!("{v} is out of range")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<$t, E> {
                // Integral floats such as `1.0` are what some JSON writers emit for numbers.
                if v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64 {
                    Ok(v as $t)
                } else {
                    Err(E::custom(format_args!("{v} is not an integer in range")))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                v.trim()
                    .parse::<$t>()
                    .map_err(|_| E::custom(format_args!("{v:?} is not an integer")))
            }
        }
    };
}

int_visitor!(i64, "a signed 64-bit integer (number or numeric string)");
int_visitor!(u64, "an unsigned 64-bit integer (number or numeric string)");

pub(crate) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor::<i64>(std::marker::PhantomData))
}

pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(IntVisitor::<u64>(std::marker::PhantomData))
}
