//! The v1 scheduler API (`POST /api/v1/scheduler`): calls from frameworks, the events the
//! master streams back (RecordIO-framed), and the synchronous responses.
//!
//! Messages use protobuf's "union" layout: a `type` plus the one body field that type names
//! (`{"type": "ACCEPT", "accept": {...}}`). The structs mirror that layout so any message,
//! including one with a type this crate does not know, parses and round-trips; constructors
//! build well-formed ones and [`Call::validate`] checks the pairing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::v1::{
    AgentId, ExecutorId, Filters, FrameworkId, FrameworkInfo, InverseOffer, KillPolicy, MasterInfo, Offer, OfferId,
    OfferOperation, OperationId, OperationStatus, Request, ResourceProviderId, TaskId, TaskStatus,
};
use crate::Bytes;

open_enum! {
    /// `scheduler.Call.Type`.
    pub enum CallType {
        Subscribe = "SUBSCRIBE",
        Teardown = "TEARDOWN",
        Accept = "ACCEPT",
        Decline = "DECLINE",
        AcceptInverseOffers = "ACCEPT_INVERSE_OFFERS",
        DeclineInverseOffers = "DECLINE_INVERSE_OFFERS",
        Revive = "REVIVE",
        Kill = "KILL",
        Shutdown = "SHUTDOWN",
        Acknowledge = "ACKNOWLEDGE",
        AcknowledgeOperationStatus = "ACKNOWLEDGE_OPERATION_STATUS",
        Reconcile = "RECONCILE",
        ReconcileOperations = "RECONCILE_OPERATIONS",
        Message = "MESSAGE",
        Request = "REQUEST",
        Suppress = "SUPPRESS",
        UpdateFramework = "UPDATE_FRAMEWORK",
    }
}

/// A call from a scheduler. Every call but SUBSCRIBE carries `framework_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_inverse_offers: Option<InverseOffersReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_inverse_offers: Option<InverseOffersReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_operation_status: Option<AcknowledgeOperationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_operations: Option<ReconcileOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Requests>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_framework: Option<UpdateFramework>,
}

/// SUBSCRIBE: the first call, answered with a stream of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Set `framework_info.id` to resubscribe after a failover.
    pub framework_info: FrameworkInfo,
    /// Roles to subscribe to with offers suppressed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
    /// Opaque: per-role attribute constraints on offers (`OfferConstraints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_constraints: Option<serde_json::Value>,
}

/// UPDATE_FRAMEWORK: change a subscribed framework's info without resubscribing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateFramework {
    pub framework_info: FrameworkInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
    /// Opaque, as in [`Subscribe::offer_constraints`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_constraints: Option<serde_json::Value>,
}

/// ACCEPT: perform `operations` on the (same-agent) offers, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<OfferOperation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// DECLINE: the same as an ACCEPT without operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// ACCEPT_INVERSE_OFFERS and DECLINE_INVERSE_OFFERS share this body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InverseOffersReply {
    #[serde(default)]
    pub inverse_offer_ids: Vec<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// REVIVE and SUPPRESS share this body; no roles means all of the framework's roles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// KILL: kill one task; `kill_policy` overrides the task's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// SHUTDOWN: stop a custom executor and its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {
    pub executor_id: ExecutorId,
    pub agent_id: AgentId,
}

/// ACKNOWLEDGE: the framework received the status update with this `uuid` (base64 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledge {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub uuid: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeOperationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_provider_id: Option<ResourceProviderId>,
    pub uuid: Bytes,
    pub operation_id: OperationId,
}

/// RECONCILE: ask for the latest status of these tasks (implicit reconciliation when empty:
/// all of the framework's known tasks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ReconcileTask>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileTask {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOperations {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<ReconcileOperation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOperation {
    pub operation_id: OperationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_provider_id: Option<ResourceProviderId>,
}

/// MESSAGE (call and event): opaque bytes between scheduler and executor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub data: Bytes,
}

/// REQUEST: resource requests for the allocator (`{"requests": [...]}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    #[serde(default)]
    pub requests: Vec<Request>,
}

/// A call whose body does not match its type.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("unknown call type {0:?}")]
    UnknownType(String),
    #[error("{call} call is missing its `{field}` field")]
    MissingBody { call: CallType, field: &'static str },
    #[error("{call} call is missing `framework_id`")]
    MissingFrameworkId { call: CallType },
    #[error("`framework_id` ({call}) and `subscribe.framework_info.id` ({info}) differ")]
    FrameworkIdMismatch { call: String, info: String },
}

impl Call {
    fn of(framework_id: Option<FrameworkId>, kind: CallType) -> Self {
        Call {
            framework_id,
            kind,
            subscribe: None,
            accept: None,
            decline: None,
            accept_inverse_offers: None,
            decline_inverse_offers: None,
            revive: None,
            kill: None,
            shutdown: None,
            acknowledge: None,
            acknowledge_operation_status: None,
            reconcile: None,
            reconcile_operations: None,
            message: None,
            request: None,
            suppress: None,
            update_framework: None,
        }
    }

    /// SUBSCRIBE; `framework_id` is copied from `framework_info.id` when resubscribing.
    pub fn subscribe(framework_info: FrameworkInfo) -> Self {
        let framework_id = framework_info.id.clone();
        Call {
            subscribe: Some(Subscribe {
                framework_info,
                suppressed_roles: Vec::new(),
                offer_constraints: None,
            }),
            ..Call::of(framework_id, CallType::Subscribe)
        }
    }

    pub fn teardown(framework_id: FrameworkId) -> Self {
        Call::of(Some(framework_id), CallType::Teardown)
    }

    pub fn accept(
        framework_id: FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<OfferOperation>,
        filters: Option<Filters>,
    ) -> Self {
        Call {
            accept: Some(Accept {
                offer_ids,
                operations,
                filters,
            }),
            ..Call::of(Some(framework_id), CallType::Accept)
        }
    }

    pub fn decline(framework_id: FrameworkId, offer_ids: Vec<OfferId>, filters: Option<Filters>) -> Self {
        Call {
            decline: Some(Decline { offer_ids, filters }),
            ..Call::of(Some(framework_id), CallType::Decline)
        }
    }

    pub fn revive(framework_id: FrameworkId, roles: Vec<String>) -> Self {
        Call {
            revive: Some(Roles { roles }),
            ..Call::of(Some(framework_id), CallType::Revive)
        }
    }

    pub fn suppress(framework_id: FrameworkId, roles: Vec<String>) -> Self {
        Call {
            suppress: Some(Roles { roles }),
            ..Call::of(Some(framework_id), CallType::Suppress)
        }
    }

    pub fn kill(framework_id: FrameworkId, task_id: TaskId, agent_id: Option<AgentId>) -> Self {
        Call {
            kill: Some(Kill {
                task_id,
                agent_id,
                kill_policy: None,
            }),
            ..Call::of(Some(framework_id), CallType::Kill)
        }
    }

    pub fn shutdown(framework_id: FrameworkId, executor_id: ExecutorId, agent_id: AgentId) -> Self {
        Call {
            shutdown: Some(Shutdown { executor_id, agent_id }),
            ..Call::of(Some(framework_id), CallType::Shutdown)
        }
    }

    pub fn acknowledge(framework_id: FrameworkId, agent_id: AgentId, task_id: TaskId, uuid: Bytes) -> Self {
        Call {
            acknowledge: Some(Acknowledge {
                agent_id,
                task_id,
                uuid,
            }),
            ..Call::of(Some(framework_id), CallType::Acknowledge)
        }
    }

    /// RECONCILE; an empty list asks for every task the master knows for the framework.
    pub fn reconcile(framework_id: FrameworkId, tasks: Vec<ReconcileTask>) -> Self {
        Call {
            reconcile: Some(Reconcile { tasks }),
            ..Call::of(Some(framework_id), CallType::Reconcile)
        }
    }

    pub fn message(framework_id: FrameworkId, agent_id: AgentId, executor_id: ExecutorId, data: Bytes) -> Self {
        Call {
            message: Some(Message {
                agent_id,
                executor_id,
                data,
            }),
            ..Call::of(Some(framework_id), CallType::Message)
        }
    }

    pub fn update_framework(framework_info: FrameworkInfo, suppressed_roles: Vec<String>) -> Self {
        let framework_id = framework_info.id.clone();
        Call {
            update_framework: Some(UpdateFramework {
                framework_info,
                suppressed_roles,
                offer_constraints: None,
            }),
            ..Call::of(framework_id, CallType::UpdateFramework)
        }
    }

    /// Checks the shape Mesos requires before acting on a call: a known type, the body that
    /// type names (where the body has required fields), and `framework_id` on every call but
    /// SUBSCRIBE. REVIVE, SUPPRESS and RECONCILE may omit their body (it means "all").
    pub fn validate(&self) -> Result<(), CallError> {
        use CallType as T;

        let missing = |field| {
            Err(CallError::MissingBody {
                call: self.kind.clone(),
                field,
            })
        };
        let has_body = match &self.kind {
            T::Subscribe => self.subscribe.is_some(),
            T::Accept => self.accept.is_some(),
            T::Decline => self.decline.is_some(),
            T::AcceptInverseOffers => self.accept_inverse_offers.is_some(),
            T::DeclineInverseOffers => self.decline_inverse_offers.is_some(),
            T::Kill => self.kill.is_some(),
            T::Shutdown => self.shutdown.is_some(),
            T::Acknowledge => self.acknowledge.is_some(),
            T::AcknowledgeOperationStatus => self.acknowledge_operation_status.is_some(),
            T::Message => self.message.is_some(),
            T::Request => self.request.is_some(),
            T::UpdateFramework => self.update_framework.is_some(),
            T::Teardown | T::Revive | T::Suppress | T::Reconcile | T::ReconcileOperations => true,
            T::Unknown(name) => return Err(CallError::UnknownType(name.clone())),
        };
        if !has_body {
            return missing(body_field(&self.kind));
        }

        if self.kind == T::Subscribe {
            let info_id = self.subscribe.as_ref().and_then(|s| s.framework_info.id.as_ref());
            if let (Some(call), Some(info)) = (&self.framework_id, info_id) {
                if call != info {
                    return Err(CallError::FrameworkIdMismatch {
                        call: call.value.clone(),
                        info: info.value.clone(),
                    });
                }
            }
        } else if self.framework_id.is_none() {
            return Err(CallError::MissingFrameworkId {
                call: self.kind.clone(),
            });
        }
        Ok(())
    }
}

/// The body field a call type uses (`ACKNOWLEDGE` -> `acknowledge`).
fn body_field(kind: &CallType) -> &'static str {
    match kind {
        CallType::Subscribe => "subscribe",
        CallType::Accept => "accept",
        CallType::Decline => "decline",
        CallType::AcceptInverseOffers => "accept_inverse_offers",
        CallType::DeclineInverseOffers => "decline_inverse_offers",
        CallType::Revive => "revive",
        CallType::Kill => "kill",
        CallType::Shutdown => "shutdown",
        CallType::Acknowledge => "acknowledge",
        CallType::AcknowledgeOperationStatus => "acknowledge_operation_status",
        CallType::Reconcile => "reconcile",
        CallType::ReconcileOperations => "reconcile_operations",
        CallType::Message => "message",
        CallType::Request => "request",
        CallType::Suppress => "suppress",
        CallType::UpdateFramework => "update_framework",
        CallType::Teardown | CallType::Unknown(_) => "",
    }
}

open_enum! {
    /// `scheduler.Event.Type`.
    pub enum EventType {
        Subscribed = "SUBSCRIBED",
        Offers = "OFFERS",
        InverseOffers = "INVERSE_OFFERS",
        Rescind = "RESCIND",
        RescindInverseOffer = "RESCIND_INVERSE_OFFER",
        Update = "UPDATE",
        UpdateOperationStatus = "UPDATE_OPERATION_STATUS",
        Message = "MESSAGE",
        Failure = "FAILURE",
        Error = "ERROR",
        Heartbeat = "HEARTBEAT",
    }
}

/// An event on the subscription stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Offers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inverse_offers: Option<InverseOffers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind: Option<Rescind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind_inverse_offer: Option<RescindInverseOffer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_operation_status: Option<UpdateOperationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEvent>,
}

/// SUBSCRIBED: the first event of a subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub framework_id: FrameworkId,
    /// Set when the master sends HEARTBEATs; a scheduler that hears nothing for several
    /// intervals should resubscribe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<MasterInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    #[serde(default)]
    pub offers: Vec<Offer>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InverseOffers {
    #[serde(default)]
    pub inverse_offers: Vec<InverseOffer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rescind {
    pub offer_id: OfferId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescindInverseOffer {
    pub inverse_offer_id: OfferId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub status: TaskStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateOperationStatus {
    pub status: OperationStatus,
}

/// FAILURE: an agent was lost, or (with `executor_id`) an executor exited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    /// The executor's wait status, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// ERROR: unrecoverable for the scheduler (e.g. it was failed over); it should abort.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub message: String,
}

impl Event {
    fn of(kind: EventType) -> Self {
        Event {
            kind,
            subscribed: None,
            offers: None,
            inverse_offers: None,
            rescind: None,
            rescind_inverse_offer: None,
            update: None,
            update_operation_status: None,
            message: None,
            failure: None,
            error: None,
        }
    }

    pub fn subscribed(
        framework_id: FrameworkId,
        heartbeat_interval_seconds: Option<f64>,
        master_info: Option<MasterInfo>,
    ) -> Self {
        Event {
            subscribed: Some(Subscribed {
                framework_id,
                heartbeat_interval_seconds,
                master_info,
            }),
            ..Event::of(EventType::Subscribed)
        }
    }

    pub fn offers(offers: Vec<Offer>) -> Self {
        Event {
            offers: Some(Offers { offers }),
            ..Event::of(EventType::Offers)
        }
    }

    pub fn inverse_offers(inverse_offers: Vec<InverseOffer>) -> Self {
        Event {
            inverse_offers: Some(InverseOffers { inverse_offers }),
            ..Event::of(EventType::InverseOffers)
        }
    }

    pub fn rescind(offer_id: OfferId) -> Self {
        Event {
            rescind: Some(Rescind { offer_id }),
            ..Event::of(EventType::Rescind)
        }
    }

    pub fn rescind_inverse_offer(inverse_offer_id: OfferId) -> Self {
        Event {
            rescind_inverse_offer: Some(RescindInverseOffer { inverse_offer_id }),
            ..Event::of(EventType::RescindInverseOffer)
        }
    }

    pub fn update(status: TaskStatus) -> Self {
        Event {
            update: Some(Update { status }),
            ..Event::of(EventType::Update)
        }
    }

    pub fn update_operation_status(status: OperationStatus) -> Self {
        Event {
            update_operation_status: Some(UpdateOperationStatus { status }),
            ..Event::of(EventType::UpdateOperationStatus)
        }
    }

    pub fn message(agent_id: AgentId, executor_id: ExecutorId, data: Bytes) -> Self {
        Event {
            message: Some(Message {
                agent_id,
                executor_id,
                data,
            }),
            ..Event::of(EventType::Message)
        }
    }

    pub fn failure(failure: Failure) -> Self {
        Event {
            failure: Some(failure),
            ..Event::of(EventType::Failure)
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Event {
            error: Some(ErrorEvent {
                message: message.into(),
            }),
            ..Event::of(EventType::Error)
        }
    }

    pub fn heartbeat() -> Self {
        Event::of(EventType::Heartbeat)
    }
}

open_enum! {
    /// `scheduler.Response.Type`.
    pub enum ResponseType {
        ReconcileOperations = "RECONCILE_OPERATIONS",
    }
}

/// A synchronous (200 OK) answer to a call; only RECONCILE_OPERATIONS has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_operations: Option<ReconcileOperationsResponse>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOperationsResponse {
    #[serde(default)]
    pub operation_statuses: Vec<OperationStatus>,
}

impl Response {
    pub fn reconcile_operations(operation_statuses: Vec<OperationStatus>) -> Self {
        Response {
            kind: ResponseType::ReconcileOperations,
            reconcile_operations: Some(ReconcileOperationsResponse { operation_statuses }),
        }
    }
}

/// The header a scheduler must echo on every call after SUBSCRIBE: the master names the
/// subscription stream in the SUBSCRIBE response.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";
