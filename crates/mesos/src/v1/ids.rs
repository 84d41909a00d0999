//! Identifier messages: each is `{"value": "..."}` on the wire.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name {
            pub value: String,
        }

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name { value: value.into() }
            }

            pub fn as_str(&self) -> &str {
                &self.value
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.value)
            }
        }

        impl From<&str> for $name {
            fn from(v: &str) -> Self {
                $name::new(v)
            }
        }

        impl From<String> for $name {
            fn from(v: String) -> Self {
                $name::new(v)
            }
        }
    };
}

id_type!(
    /// Assigned by the master when a framework first subscribes.
    FrameworkId
);
id_type!(
    /// Assigned by the master to each offer.
    OfferId
);
id_type!(
    /// Assigned by the master to an agent when it registers (`SlaveID` in v0).
    AgentId
);
id_type!(
    /// Chosen by the framework; unique among the framework's active tasks.
    TaskId
);
id_type!(
    /// Chosen by the framework; unique per agent among active executors.
    ExecutorId
);
id_type!(
    /// Assigned to a resource provider when it registers.
    ResourceProviderId
);
id_type!(
    /// Chosen by the framework for an offer operation it wants feedback on.
    OperationId
);

/// A container; nested containers name their parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerId {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerId>>,
}

impl ContainerId {
    pub fn new(value: impl Into<String>) -> Self {
        ContainerId {
            value: value.into(),
            parent: None,
        }
    }
}

/// A point in time: nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeInfo {
    #[serde(deserialize_with = "crate::lenient::i64")]
    pub nanoseconds: i64,
}

impl TimeInfo {
    pub fn from_nanos(nanoseconds: i64) -> Self {
        TimeInfo { nanoseconds }
    }

    pub fn from_millis(millis: i64) -> Self {
        TimeInfo {
            nanoseconds: millis.saturating_mul(1_000_000),
        }
    }

    /// Seconds since the epoch, as the legacy endpoints and `TaskStatus.timestamp` use.
    pub fn as_secs_f64(&self) -> f64 {
        self.nanoseconds as f64 / 1e9
    }
}

/// A length of time in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DurationInfo {
    #[serde(deserialize_with = "crate::lenient::i64")]
    pub nanoseconds: i64,
}

impl DurationInfo {
    pub fn from_nanos(nanoseconds: i64) -> Self {
        DurationInfo { nanoseconds }
    }

    pub fn from_secs_f64(secs: f64) -> Self {
        DurationInfo {
            nanoseconds: (secs * 1e9).round() as i64,
        }
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.nanoseconds as f64 / 1e9
    }

    /// Negative durations become zero.
    pub fn to_std(&self) -> Duration {
        Duration::from_nanos(self.nanoseconds.max(0) as u64)
    }
}

impl From<Duration> for DurationInfo {
    fn from(d: Duration) -> Self {
        DurationInfo {
            nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        }
    }
}

/// Raw 16 bytes of an RFC 4122 UUID, as a message (`{"value": "<base64>"}`); used by
/// operations. Task status updates carry their UUID as bare bytes instead.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Uuid {
    pub value: crate::Bytes,
}
