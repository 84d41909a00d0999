//! Batch jobs (Chronos and Metronome): when a job is due, decided as pure logic with time
//! passed in, so that every rule (daylight-saving changes, missed runs, repetitions) is tested
//! without a clock.
//!
//! `calendar` holds the two schedule languages: cron with an IANA time zone (Metronome) and ISO
//! 8601 repeating intervals (Chronos). `graph` holds dependent jobs: no unknown parent, no cycle,
//! and when a child is ready. `metronome` is Metronome's job definition with its defaults and
//! rules; `api` serves it under `/v1/jobs`; `chronos` is Chronos' job JSON and how it maps onto
//! the same jobs, served by `chronos_api` under `/v1/scheduler`; `runs` is the leader's driver
//! that launches runs' tasks and follows them, as a framework of its own on the master's
//! in-process interface; `arguments` reads a run's own arguments. Times are Unix
//! milliseconds, UTC.

pub mod api;
pub mod arguments;
pub mod calendar;
pub mod chronos;
pub mod chronos_api;
pub mod graph;
pub mod metronome;
pub mod runs;

pub use calendar::{time_zone, Cron, Due, Iso8601, Schedule, ScheduleError};
pub use graph::GraphError;
