//! The tepui allocator: who is offered which agent's resources, as a pure state machine.
//!
//! This is the first level of Mesos' two-level scheduling. Agents bring resources, frameworks
//! subscribe to roles, and [`Allocator::allocate`] hands out offers by hierarchical, weighted
//! Dominant Resource Fairness, with quota guarantees met first and quota limits never exceeded,
//! reservations kept for their roles, decline filters, suppress and revive, a minimum offer size,
//! a cap on outstanding offers per framework, and offer timeouts.
//!
//! What it knows:
//! - the resource model ([`Resources`]: exact three-decimal scalars, ranges, sets, static and
//!   dynamic reservations), agent [`Attributes`], hierarchical [`Role`]s with weights and
//!   [`Quota`];
//! - which resources of each agent are unallocated, offered, or allocated to which framework
//!   and role, and which offers are outstanding.
//!
//! What it deliberately does not know:
//! - time: every call that needs it takes `now` (milliseconds since any fixed epoch), so a test
//!   drives time by hand and every run is deterministic; there is no randomness either (agents
//!   are visited in id order, rotated each cycle; ties break by name and id);
//! - I/O of any kind: it returns offers to send and offers to rescind, and the runtime sends
//!   them, persists roles, quota and reservations through Raft, and feeds them back after a
//!   failover (`add_framework`, `add_agent`, `add_used`, `set_quota`, `set_weight`);
//! - tasks, executors and wire formats (Mesos protobuf/JSON): only resources held by a
//!   framework in a role on an agent;
//! - placement constraints: attributes are stored for frameworks to match, not used here.
//!
//! [`Allocator::check_invariants`] states the invariants as code (no over-commit, nothing offered
//! twice, quota limits held, accounting consistent); tests call it after every step.

mod allocator;
mod attributes;
mod invariants;
mod resources;
mod role;

pub use allocator::{
    AgentId, AgentMode, Allocator, Capabilities, Config, Filters, FrameworkId, Millis, Offer, OfferId, Quota,
};
pub use attributes::{AttributeValue, Attributes};
pub use invariants::InvariantViolation;
pub use resources::{
    Quantities, Ranges, Reservation, ReservationKind, Resource, ResourceName, Resources, Scalar, Value, ValueSet,
};
pub use role::Role;

/// Why a call was refused. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRole { name: String, reason: &'static str },
    #[error("cannot parse {input:?}: {reason}")]
    Parse { input: String, reason: &'static str },
    #[error("the amounts of {name} add up to more than tepui can count")]
    Overflow { name: String },
    #[error("agent {0} is already known")]
    AgentExists(AgentId),
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("framework {0} is already known")]
    FrameworkExists(FrameworkId),
    #[error("unknown framework {0}")]
    UnknownFramework(FrameworkId),
    #[error("framework {0} subscribes to no role")]
    NoRoles(FrameworkId),
    #[error("framework {framework} is not subscribed to role {role}")]
    NotSubscribed { framework: FrameworkId, role: Role },
    #[error("unknown offer {0} (accepted, declined, rescinded or expired already)")]
    UnknownOffer(OfferId),
    #[error("offer {offer} does not hold {used}")]
    NotInOffer { offer: OfferId, used: Resources },
    #[error("framework {framework} holds no {resources} in role {role} on agent {agent}")]
    NotAllocated {
        framework: FrameworkId,
        agent: AgentId,
        role: Role,
        resources: Resources,
    },
    #[error("agent {agent} has no unallocated {resources}")]
    NotAvailable { agent: AgentId, resources: Resources },
    #[error("invalid reservation: {reason}")]
    InvalidReservation { reason: &'static str },
    #[error("{resources} is reserved statically; only the agent's configuration changes it")]
    StaticReservation { resources: Resources },
    #[error("role {role} would consume {would_be} {resource}, above its quota limit {limit}")]
    QuotaLimitExceeded {
        role: Role,
        resource: ResourceName,
        would_be: Scalar,
        limit: Scalar,
    },
    #[error("quota of role {role}: the guarantee {guarantee} {resource} is above the limit {limit}")]
    GuaranteeAboveLimit {
        role: Role,
        resource: ResourceName,
        guarantee: Scalar,
        limit: Scalar,
    },
    #[error(
        "quota limit {limit} {resource} of role {role} is below its consumption {consumption}; \
         force it to apply it anyway"
    )]
    LimitBelowConsumption {
        role: Role,
        resource: ResourceName,
        limit: Scalar,
        consumption: Scalar,
    },
    #[error("role {role} cannot have quota: {reason}")]
    InvalidQuota { role: Role, reason: &'static str },
    #[error("weight of role {role} must be positive")]
    InvalidWeight { role: Role },
}
