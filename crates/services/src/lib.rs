//! The services scheduler of tepui (Marathon's job) as pure decision logic.
//!
//! The leader's runtime feeds it app definitions, instance records, offers, health check results
//! and the time, and carries out what it decides: launches, kills, deployment steps, events.
//!
//! What it knows:
//! - Marathon's app definition ([`app`]): the JSON clients send, with Marathon's field names and
//!   defaults, legacy fields migrated; [`validate`] answers with Marathon's 422 body;
//! - path ids and groups ([`path`], [`group`]): relative ids, the group tree, dependency order,
//!   cycles;
//! - placement: constraints ([`constraints`]) and whether an offer fits an instance, with the
//!   host ports it gets ([`fit`]);
//! - Marathon's pod definition ([`pod`]): containers with their own resources, endpoints and
//!   health checks, run together as one instance, validated with Marathon's field paths;
//! - the step function of an app (or pod) ([`plan`]): how many to launch and which to kill now for a
//!   start, scale, rolling upgrade, restart or stop, within `minimumHealthCapacity` and
//!   `maximumOverCapacity`; deployments of several apps in dependency order, with a deadline
//!   and a rollback ([`deployment`]);
//! - launch backoff and the launch queue ([`backoff`]), unreachable instances ([`mod@unreachable`]),
//!   health check results ([`health`]);
//! - why offers were declined, as Marathon's `processedOffersSummary` and one human sentence
//!   ([`why`]);
//! - Marathon's SSE event types ([`events`]) and timestamps ([`time`]).
//!
//! What it deliberately does not know:
//! - time and randomness: every call that needs the time takes `now` in milliseconds since the
//!   Unix epoch; ids (instances, deployments) come from the caller; results are deterministic;
//! - I/O of any kind: no network, disk, clock, async runtime or logging; the runtime persists
//!   app specs, instances and deployments through Raft and feeds them back;
//! - the allocator's resource model and Mesos wire types: an offer is seen as plain quantities
//!   per role ([`fit::OfferSummary`]);
//! - HTTP: routes, status codes and the `/v2` handlers live in the server; this crate provides
//!   their bodies' types and the decisions behind them;
//! - what Marathon has and tepui does not run: readiness checks, persistent and external
//!   volumes, secrets, named container networks, AppC images, fetch URIs, executors, Docker
//!   parameters, residency, artifact stores and HTTP callback subscriptions.

pub mod app;
pub mod backoff;
pub mod constraints;
pub mod deployment;
pub mod events;
pub mod fit;
pub mod group;
pub mod health;
pub mod instance;
pub mod path;
pub mod plan;
pub mod pod;
pub mod ports;
pub mod time;
pub mod unreachable;
pub mod validate;
pub mod why;

pub use app::{AppDefinition, AppSpec, EnvValue, SecretSource};
pub use deployment::Deployment;
pub use instance::{Health, Instance, InstanceId, InstanceState};
pub use path::PathId;
pub use plan::Decision;
pub use pod::{validate_pod, PodDefinition, PodSpec};
pub use validate::{validate_app, ValidationErrors};
