//! Offers, the operations a framework performs on them, inverse offers and filters.

use serde::{Deserialize, Serialize};

use super::{
    AgentId, AllocationInfo, Attribute, DiskSourceType, DomainInfo, DurationInfo, ExecutorId, ExecutorInfo,
    FrameworkId, OfferId, OperationId, Resource, Scalar, TaskGroupInfo, TaskInfo, TimeInfo, Url,
};

/// Resources on one agent offered to one framework (for one of its roles).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// Executors of this framework already running on the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executor_ids: Vec<ExecutorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<Unavailability>,
    /// The role the offer is made to (matches every resource's `allocation_info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

/// A planned unavailability window (maintenance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailability {
    pub start: TimeInfo,
    /// Unset means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationInfo>,
}

open_enum! {
    /// `Offer.Operation.Type`.
    pub enum OfferOperationType {
        Launch = "LAUNCH",
        LaunchGroup = "LAUNCH_GROUP",
        Reserve = "RESERVE",
        Unreserve = "UNRESERVE",
        Create = "CREATE",
        Destroy = "DESTROY",
        GrowVolume = "GROW_VOLUME",
        ShrinkVolume = "SHRINK_VOLUME",
        CreateDisk = "CREATE_DISK",
        DestroyDisk = "DESTROY_DISK",
    }
}

/// One operation of an ACCEPT call (`Offer.Operation`): the `type` names which body is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfferOperation {
    #[serde(rename = "type")]
    pub kind: OfferOperationType,
    /// Set by frameworks that want UPDATE_OPERATION_STATUS feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OperationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Reserve>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserve: Option<Unreserve>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Create>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy: Option<Destroy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_volume: Option<GrowVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_volume: Option<ShrinkVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_disk: Option<CreateDisk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_disk: Option<DestroyDisk>,
}

impl OfferOperation {
    fn of(kind: OfferOperationType) -> Self {
        OfferOperation {
            kind,
            id: None,
            launch: None,
            launch_group: None,
            reserve: None,
            unreserve: None,
            create: None,
            destroy: None,
            grow_volume: None,
            shrink_volume: None,
            create_disk: None,
            destroy_disk: None,
        }
    }

    pub fn launch(task_infos: Vec<TaskInfo>) -> Self {
        OfferOperation {
            launch: Some(Launch { task_infos }),
            ..Self::of(OfferOperationType::Launch)
        }
    }

    pub fn launch_group(executor: ExecutorInfo, task_group: TaskGroupInfo) -> Self {
        OfferOperation {
            launch_group: Some(LaunchGroup { executor, task_group }),
            ..Self::of(OfferOperationType::LaunchGroup)
        }
    }

    pub fn reserve(resources: Vec<Resource>) -> Self {
        OfferOperation {
            reserve: Some(Reserve {
                source: Vec::new(),
                resources,
            }),
            ..Self::of(OfferOperationType::Reserve)
        }
    }

    pub fn unreserve(resources: Vec<Resource>) -> Self {
        OfferOperation {
            unreserve: Some(Unreserve { resources }),
            ..Self::of(OfferOperationType::Unreserve)
        }
    }

    pub fn create(volumes: Vec<Resource>) -> Self {
        OfferOperation {
            create: Some(Create { volumes }),
            ..Self::of(OfferOperationType::Create)
        }
    }

    pub fn destroy(volumes: Vec<Resource>) -> Self {
        OfferOperation {
            destroy: Some(Destroy { volumes }),
            ..Self::of(OfferOperationType::Destroy)
        }
    }

    /// Whether the body matching `type` is present (an unknown type never is).
    pub fn has_body(&self) -> bool {
        match self.kind {
            OfferOperationType::Launch => self.launch.is_some(),
            OfferOperationType::LaunchGroup => self.launch_group.is_some(),
            OfferOperationType::Reserve => self.reserve.is_some(),
            OfferOperationType::Unreserve => self.unreserve.is_some(),
            OfferOperationType::Create => self.create.is_some(),
            OfferOperationType::Destroy => self.destroy.is_some(),
            OfferOperationType::GrowVolume => self.grow_volume.is_some(),
            OfferOperationType::ShrinkVolume => self.shrink_volume.is_some(),
            OfferOperationType::CreateDisk => self.create_disk.is_some(),
            OfferOperationType::DestroyDisk => self.destroy_disk.is_some(),
            OfferOperationType::Unknown(_) => false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    pub executor: ExecutorInfo,
    pub task_group: TaskGroupInfo,
}

/// `source` (optional since 1.x) lets a reservation be changed rather than only added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reserve {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Resource>,
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unreserve {
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Create {
    #[serde(default)]
    pub volumes: Vec<Resource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Destroy {
    #[serde(default)]
    pub volumes: Vec<Resource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowVolume {
    pub volume: Resource,
    pub addition: Resource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShrinkVolume {
    pub volume: Resource,
    pub subtract: Scalar,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateDisk {
    pub source: Resource,
    pub target_type: DiskSourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestroyDisk {
    pub source: Resource,
}

/// A request to give resources back (maintenance).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseOffer {
    pub id: OfferId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    pub framework_id: FrameworkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    pub unavailability: Unavailability,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
}

/// How long unused offered resources stay refused to the framework after ACCEPT/DECLINE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<f64>,
}

impl Filters {
    /// Mesos' default refusal when no filter is given.
    pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;
    /// Mesos caps refusals at 365 days.
    pub const MAX_REFUSE_SECONDS: f64 = 31_536_000.0;

    pub fn refuse(seconds: f64) -> Self {
        Filters {
            refuse_seconds: Some(seconds),
        }
    }

    /// The refusal to apply: the default when unset or negative, capped at 365 days.
    pub fn effective_refuse_seconds(filters: Option<&Filters>) -> f64 {
        match filters.and_then(|f| f.refuse_seconds) {
            Some(s) if s >= 0.0 => s.min(Self::MAX_REFUSE_SECONDS),
            _ => Self::DEFAULT_REFUSE_SECONDS,
        }
    }
}

/// A resource request (the REQUEST call); Mesos' own allocator ignores these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
}
