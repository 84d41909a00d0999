//! The JSON wire shapes of Apache Mesos' HTTP APIs, spelled exactly as Mesos spells them.
//!
//! tepui speaks Mesos so that existing framework clients and tools work against it unchanged.
//! This crate is the dictionary for that: plain serde types plus a few small helpers.
//!
//! - [`v1`]: the common messages of `mesos.v1` (IDs, `Resource`, `FrameworkInfo`, `Offer`,
//!   `TaskInfo`, `TaskStatus`, `TaskState` and its reasons, ...).
//! - [`scheduler`]: `/api/v1/scheduler` calls, events and responses.
//! - [`executor`]: an agent's `/api/v1/executor` calls and events.
//! - [`master`]: the master's operator API at `/api/v1` (calls, responses, the event stream).
//! - [`legacy`]: the older JSON endpoints (`/master/state`, `/master/state-summary`,
//!   `/master/tasks`, `/master/frameworks`, `/master/slaves`, `/master/roles`), which use other
//!   field names than v1 (`slaves`, `slave_id`, resources as a flat `{"cpus": ..}` map).
//! - [`metrics`]: the `/metrics/snapshot` map and the metric names Mesos publishes.
//! - [`recordio`]: Mesos' stream framing (`<length>\n<record>`), an encoder and an
//!   incremental decoder.
//!
//! How the JSON is read and written, deliberately:
//! - Unknown fields are ignored on input, as Mesos' own JSON parser does.
//! - Every enum is *open*: a name this crate does not know (a newer Mesos, a newer client)
//!   deserializes into an `Unknown(String)` variant and serializes back unchanged, so a
//!   message is never rejected only for carrying a newer enum value. The API layer decides
//!   what an unknown value means for a request (usually: reject it with a clear message).
//! - Optional fields that are absent stay absent on output; repeated fields that are empty
//!   are left out. Protobuf `bytes` travel as standard base64 strings ([`Bytes`]).
//! - 64-bit integers are written as JSON numbers; on input a numeric string is accepted too,
//!   since protobuf's canonical JSON mapping writes them that way.
//! - Sub-messages that tepui carries but does not interpret (Linux/rlimit/TTY container
//!   options, CSI volumes, offer constraints, maintenance schedules) are kept as opaque
//!   [`serde_json::Value`]s, so they survive a round trip.
//!
//! What this crate is not: it does no I/O, runs no server, holds no state and makes no
//! decisions. It does not allocate resources or match offers (the allocator does), and it
//! never leaks into the core model: the API layer converts these shapes to and from tepui's
//! own types at the edge.

#[macro_use]
mod open_enum;

mod bytes;
mod lenient;

pub mod executor;
pub mod legacy;
pub mod master;
pub mod metrics;
pub mod recordio;
pub mod scheduler;
pub mod v1;

pub use bytes::Bytes;
