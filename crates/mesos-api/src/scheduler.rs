//! The Mesos v1 scheduler HTTP API (`POST /api/v1/scheduler`, JSON), translated to and from
//! the in-process scheduler interface. Errors are answered as Mesos answers them: a status and
//! a plain-text message.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tepui_allocator::{
    AttributeValue, Filters, Ranges, Reservation, ReservationKind, Resource, ResourceName, Resources, Scalar, Value,
    ValueSet,
};
use tepui_auth::{Policy, Routes};
use tepui_mesos::scheduler::{Call, CallType, Event, Failure, STREAM_ID_HEADER};
use tepui_mesos::v1 as mesos;
use tepui_state::{HealthCheckDef, PortDef, TaskDef, VolumeDef};

use tepui_master::{ExecutorSpec, FrameworkSpec, LaunchSpec, Master, OfferView, Operation, SchedulerEvent, StatusView};
use tepui_node::{Error, ErrorKind};

use crate::operator::{mesos_status, text};

const MAX_CALL_BYTES: usize = 16 << 20;

pub(crate) fn routes(master: Master) -> Routes {
    Routes::new()
        .route(
            "/api/v1/scheduler",
            Policy::new().token(Method::POST),
            post(scheduler).layer(axum::extract::DefaultBodyLimit::max(MAX_CALL_BYTES)),
        )
        .with_state(master)
}

/// Mesos answers scheduler calls on a non-leading master with a redirect to the leader.
fn to_leader(master: &Master) -> Response {
    let addr = master
        .node()
        .leader_id()
        .and_then(|id| master.node().read(|s| s.nodes.get(&id).map(|n| n.http_addr.clone())))
        .filter(|a| !a.is_empty());
    match addr {
        Some(addr) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("http://{addr}/api/v1/scheduler"))],
        )
            .into_response(),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "No leader is elected yet; retry in a moment",
        ),
    }
}

fn refuse(master: &Master, e: Error) -> Response {
    match e.kind {
        // Elected a moment ago: the allocator is being rebuilt.
        ErrorKind::NotLeader if master.node().is_leader() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The leader is starting its allocator; retry in a moment",
        ),
        ErrorKind::NotLeader => to_leader(master),
        ErrorKind::Unavailable => text(StatusCode::SERVICE_UNAVAILABLE, format!("{}; retry", e.message)),
        kind => text(mesos_status(kind), e.message),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, "invalid_request", message)
}

async fn scheduler(
    State(master): State<Master>,
    caller: Option<axum::Extension<tepui_auth::Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !master.node().is_leader() {
        return to_leader(&master);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Type {content_type:?}; tepui accepts 'application/json'"),
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let call: Call = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into Call: {} (at {path})", e.inner()),
            );
        }
    };
    if let Err(e) = call.validate() {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate scheduler::Call: {e}"),
        );
    }
    if call.kind == CallType::Subscribe {
        let Some(axum::Extension(me)) = &caller else {
            return text(StatusCode::FORBIDDEN, tepui_auth::Denied::no_caller().message);
        };
        if let Err(refusal) = may_subscribe(&master, me, &call) {
            return text(StatusCode::FORBIDDEN, refusal);
        }
        return subscribe(master, call).await;
    }
    let framework = call.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default();
    let Some(stream_id) = headers.get(STREAM_ID_HEADER).and_then(|v| v.to_str().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("All non-subscribe calls should include the '{STREAM_ID_HEADER}' header"),
        );
    };
    if let Err(e) = master.check_stream(&framework, stream_id) {
        return refuse(&master, e);
    }
    match dispatch(&master, &framework, call).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(&master, e),
    }
}

async fn dispatch(master: &Master, framework: &str, call: Call) -> Result<(), Error> {
    match call.kind {
        CallType::Teardown => master.teardown(framework).await,
        CallType::Accept => {
            let a = call.accept.unwrap_or_default();
            let offers: Vec<String> = a.offer_ids.iter().map(|o| o.value.clone()).collect();
            let launcher = Launcher::of(master, framework);
            let mut ops = Vec::new();
            for (i, op) in a.operations.iter().enumerate() {
                ops.push(operation(op, &launcher).map_err(|e| invalid(format!("accept.operations[{i}]: {e}")))?);
            }
            master
                .accept(framework, &offers, ops, filters(a.filters.as_ref()))
                .await
        }
        CallType::Decline => {
            let d = call.decline.unwrap_or_default();
            let offers: Vec<String> = d.offer_ids.iter().map(|o| o.value.clone()).collect();
            master.decline(framework, &offers, filters(d.filters.as_ref()))
        }
        CallType::Revive => master.revive(framework, &call.revive.map(|r| r.roles).unwrap_or_default()),
        CallType::Suppress => master.suppress(framework, &call.suppress.map(|r| r.roles).unwrap_or_default()),
        CallType::Kill => {
            let k = call.kill.expect("validated");
            let grace_ms = k
                .kill_policy
                .and_then(|p| p.grace_period)
                .map(|g| (g.nanoseconds.max(0) / 1_000_000) as u64);
            master.kill_for(framework, &k.task_id.value, grace_ms).await
        }
        CallType::Acknowledge => {
            let a = call.acknowledge.expect("validated");
            let uuid = String::from_utf8(a.uuid.as_slice().to_vec())
                .map_err(|_| invalid("acknowledge.uuid is not an update's uuid"))?;
            master.acknowledge(framework, &a.task_id.value, &uuid).await
        }
        CallType::Reconcile => {
            let tasks: Vec<String> = call
                .reconcile
                .map(|r| r.tasks.into_iter().map(|t| t.task_id.value).collect())
                .unwrap_or_default();
            master.reconcile(framework, &tasks)
        }
        CallType::Shutdown => {
            let sd = call.shutdown.expect("validated");
            let agent = agent_number(&sd.agent_id, "shutdown.agent_id")?;
            master.shutdown_executor(framework, agent, &sd.executor_id.value).await
        }
        CallType::Message => {
            let m = call.message.expect("validated");
            let agent = agent_number(&m.agent_id, "message.agent_id")?;
            if let Some(why) = tepui_master::message_too_large(m.data.as_slice().len()) {
                return Err(invalid(format!("message.data: {why}")));
            }
            master
                .message_executor(framework, agent, &m.executor_id.value, m.data.as_slice())
                .await
        }
        // Requests are a no-op in Mesos too.
        CallType::Request => {
            tracing::debug!(framework, "REQUEST has no effect");
            Ok(())
        }
        CallType::AcceptInverseOffers | CallType::DeclineInverseOffers => Ok(()),
        CallType::AcknowledgeOperationStatus | CallType::ReconcileOperations | CallType::UpdateFramework => {
            Err(invalid(format!("{} is not supported by tepui yet", call.kind)))
        }
        CallType::Subscribe | CallType::Unknown(_) => unreachable!("handled before"),
    }
}

fn filters(f: Option<&mesos::Filters>) -> Filters {
    match f.and_then(|f| f.refuse_seconds) {
        Some(secs) => Filters::refuse_seconds(secs),
        None => Filters::default(),
    }
}

/// A framework subscribes only as a principal its token may use, into roles that principal
/// may use; and only its own principal re-subscribes with its id.
fn may_subscribe(master: &Master, me: &tepui_auth::Identity, call: &Call) -> Result<(), String> {
    let Some(sub) = call.subscribe.as_ref() else {
        return Ok(());
    };
    let info = &sub.framework_info;
    let principal = info.principal.clone().unwrap_or_default();
    for role in info.effective_roles() {
        if !me.may_subscribe(&principal, &role) {
            return Err(format!(
                "{} may not subscribe a framework as principal {principal:?} into role {role:?}",
                me.describe()
            ));
        }
    }
    if let Some(id) = info.id.as_ref().map(|i| i.value.clone()) {
        let owner = master
            .node()
            .read(|s| s.frameworks.get(&id).map(|f| f.principal.clone().unwrap_or_default()));
        if owner.is_some_and(|o| o != principal) {
            return Err(format!(
                "framework {id} belongs to another principal; it re-subscribes only as its own"
            ));
        }
    }
    Ok(())
}

/// An agent id as tepui writes them (its node number).
fn agent_number(id: &mesos::AgentId, field: &str) -> Result<u64, Error> {
    id.value
        .parse()
        .map_err(|_| invalid(format!("{field}: {:?} is not an agent of this cluster", id.value)))
}

async fn subscribe(master: Master, call: Call) -> Response {
    let sub = call.subscribe.expect("validated");
    let info = sub.framework_info;
    let spec = FrameworkSpec {
        id: info.id.as_ref().map(|i| i.value.clone()),
        name: info.name.clone(),
        user: info.user.clone(),
        principal: info.principal.clone(),
        hostname: info.hostname.clone(),
        webui_url: info.webui_url.clone(),
        roles: info.effective_roles(),
        capabilities: info
            .capabilities
            .iter()
            .filter_map(|c| c.kind.as_ref())
            .map(|k| k.as_str().to_string())
            .collect(),
        failover_timeout_ms: (info.failover_timeout_secs().max(0.0) * 1000.0) as u64,
        suppressed_roles: sub.suppressed_roles,
        builtin: false,
    };
    let refinement = spec.capabilities.iter().any(|c| c == "RESERVATION_REFINEMENT");
    let call_id = spec.id.clone();
    let subscription = match master.subscribe(spec).await {
        Ok(s) => s,
        Err(e) if e.code == "framework_removed" => {
            let id = call_id.unwrap_or_default();
            // Mesos tells a removed framework on the stream itself, then closes it.
            let event = Event::error(format!("Framework {id} has been removed"));
            let body = tepui_mesos::recordio::encode_json(&event).unwrap_or_default();
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response();
        }
        Err(e) => return refuse(&master, e),
    };
    let framework = subscription.framework_id.clone();
    let master = master.clone();
    let events = futures::stream::unfold(subscription.events, |mut events| async move {
        events.recv().await.map(|e| (e, events))
    })
    .map(move |e| {
        let mut event = to_mesos(e, &framework, refinement);
        // A task an executor runs names it in its updates, as in Mesos.
        if let Some(status) = event.update.as_mut().map(|u| &mut u.status) {
            status.executor_id = master.node().read(|s| {
                s.executor_of_task(&status.task_id.value)
                    .map(|e| mesos::ExecutorId::new(e.executor_id.as_str()))
            });
        }
        tepui_mesos::recordio::encode_json(&event).map(Bytes::from)
    });
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&subscription.stream_id) {
        h.insert(STREAM_ID_HEADER, v);
    }
    resp
}

fn to_mesos(e: SchedulerEvent, framework: &str, refinement: bool) -> Event {
    match e {
        SchedulerEvent::Subscribed { framework_id } => Event::subscribed(
            mesos::FrameworkId::new(framework_id),
            Some(tepui_master::HEARTBEAT_INTERVAL.as_secs_f64()),
            None,
        ),
        SchedulerEvent::Offers(offers) => Event::offers(offers.iter().map(|o| offer(o, refinement)).collect()),
        SchedulerEvent::Rescind { offer_id } => Event::rescind(mesos::OfferId::new(offer_id)),
        SchedulerEvent::Update(s) => Event::update(status(&s)),
        SchedulerEvent::AgentFailure { agent_id } => Event::failure(Failure {
            agent_id: Some(mesos::AgentId::new(agent_id.to_string())),
            executor_id: None,
            status: None,
        }),
        SchedulerEvent::Error { message } => {
            tracing::info!(framework, %message, "subscription ended");
            Event::error(message)
        }
        SchedulerEvent::Heartbeat => Event::heartbeat(),
        SchedulerEvent::Message {
            agent_id,
            executor_id,
            data,
        } => Event::message(
            mesos::AgentId::new(agent_id.to_string()),
            mesos::ExecutorId::new(executor_id),
            tepui_mesos::Bytes::new(data),
        ),
        SchedulerEvent::ExecutorFailure {
            agent_id,
            executor_id,
            status,
        } => Event::failure(Failure {
            agent_id: Some(mesos::AgentId::new(agent_id.to_string())),
            executor_id: Some(mesos::ExecutorId::new(executor_id)),
            status,
        }),
    }
}

fn offer(o: &OfferView, refinement: bool) -> mesos::Offer {
    mesos::Offer {
        id: mesos::OfferId::new(o.id.clone()),
        framework_id: mesos::FrameworkId::new(o.framework_id.clone()),
        agent_id: mesos::AgentId::new(o.agent_id.to_string()),
        hostname: o.hostname.clone(),
        url: None,
        domain: None,
        resources: to_mesos_resources(&o.resources, Some(o.role.as_str()), refinement),
        attributes: o.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        executor_ids: vec![],
        unavailability: None,
        allocation_info: Some(mesos::AllocationInfo {
            role: Some(o.role.as_str().to_string()),
        }),
    }
}

fn attribute(name: &str, v: &AttributeValue) -> mesos::Attribute {
    let mut a = mesos::Attribute {
        name: name.to_string(),
        kind: mesos::ValueType::Text,
        scalar: None,
        ranges: None,
        set: None,
        text: None,
    };
    match v {
        AttributeValue::Text(t) => a.text = Some(mesos::Text { value: t.clone() }),
        AttributeValue::Scalar(s) => {
            a.kind = mesos::ValueType::Scalar;
            a.scalar = Some(mesos::Scalar::new(s.as_f64()));
        }
        AttributeValue::Ranges(r) => {
            a.kind = mesos::ValueType::Ranges;
            a.ranges = Some(mesos::Ranges::new(r.pairs().iter().copied()));
        }
        AttributeValue::Set(s) => {
            a.kind = mesos::ValueType::Set;
            a.set = Some(mesos::Set {
                item: s.items().map(str::to_string).collect(),
            });
        }
    }
    a
}

/// Resources in Mesos' shape: reservations in the refinement format for frameworks that have
/// RESERVATION_REFINEMENT, the older `role`/`reservation` fields for the others.
pub(crate) fn to_mesos_resources(r: &Resources, allocated_to: Option<&str>, refinement: bool) -> Vec<mesos::Resource> {
    r.iter()
        .map(|e| {
            let mut m = match &e.value {
                Value::Scalar(s) => mesos::Resource::scalar(e.name.as_str(), s.as_f64()),
                Value::Ranges(rg) => mesos::Resource::ranges(e.name.as_str(), rg.pairs().iter().copied()),
                Value::Set(set) => mesos::Resource::set(e.name.as_str(), set.items()),
            };
            match &e.reservation {
                Some(rv) => {
                    let kind = match rv.kind {
                        ReservationKind::Static => mesos::ReservationType::Static,
                        ReservationKind::Dynamic => mesos::ReservationType::Dynamic,
                    };
                    if refinement {
                        m = m.reserved(kind, rv.role.as_str(), None);
                    } else {
                        m.role = Some(rv.role.as_str().to_string());
                        if rv.kind == ReservationKind::Dynamic {
                            m.reservation = Some(mesos::ReservationInfo::default());
                        }
                    }
                }
                None if !refinement => m.role = Some("*".into()),
                None => {}
            }
            if let Some(role) = allocated_to {
                m = m.allocated_to(role);
            }
            m
        })
        .collect()
}

/// Mesos resources to the allocator's model; refuses what tepui does not support, by name.
pub(crate) fn from_mesos_resources(list: &[mesos::Resource]) -> Result<Resources, String> {
    let mut out = Resources::new();
    for (i, r) in list.iter().enumerate() {
        let at = |msg: String| format!("resources[{i}] ({}): {msg}", r.name);
        if r.is_revocable() || r.shared.is_some() || r.disk.is_some() || r.provider_id.is_some() {
            return Err(at(
                "revocable, shared, disk-source and provider resources are not supported".into(),
            ));
        }
        let name = ResourceName::new(&r.name).map_err(|e| at(e.to_string()))?;
        let value = match &r.kind {
            mesos::ValueType::Scalar => {
                let v = r.scalar.ok_or_else(|| at("a SCALAR needs `scalar`".into()))?.value;
                Value::Scalar(Scalar::from_f64(v).ok_or_else(|| at(format!("{v} is not a valid amount")))?)
            }
            mesos::ValueType::Ranges => {
                let rg = r.ranges.as_ref().ok_or_else(|| at("RANGES needs `ranges`".into()))?;
                Value::Ranges(
                    Ranges::from_pairs(rg.range.iter().map(|x| (x.begin, x.end))).map_err(|e| at(e.to_string()))?,
                )
            }
            mesos::ValueType::Set => {
                let set = r.set.as_ref().ok_or_else(|| at("SET needs `set`".into()))?;
                Value::Set(ValueSet::from_items(set.item.iter().cloned()))
            }
            other => return Err(at(format!("resources of type {other} are not supported"))),
        };
        let reservation = match r.reservation_role() {
            None => None,
            Some(role) => {
                let kind = match r.reservations.last().and_then(|x| x.kind.as_ref()) {
                    Some(mesos::ReservationType::Static) => ReservationKind::Static,
                    Some(_) => ReservationKind::Dynamic,
                    None if r.reservation.is_some() => ReservationKind::Dynamic,
                    None => ReservationKind::Static,
                };
                let role = tepui_allocator::Role::new(role).map_err(|e| at(e.to_string()))?;
                Some(Reservation { role, kind })
            }
        };
        out.try_push(Resource {
            name,
            reservation,
            value,
        })
        .map_err(|e| at(e.to_string()))?;
    }
    Ok(out)
}

/// A task's scalars must add up (per name, across reservations) to an amount tepui can count:
/// a request whose amounts overflow is malformed, refused as a whole with what to fix.
fn check_amounts(t: &mesos::TaskInfo) -> Result<(), String> {
    check_resource_amounts(&t.resources).map_err(|e| format!("task {:?}: {e}", t.task_id.value))
}

fn check_resource_amounts(resources: &[mesos::Resource]) -> Result<(), String> {
    let mut totals: std::collections::BTreeMap<&str, Scalar> = Default::default();
    for (i, r) in resources.iter().enumerate() {
        let Some(amount) = r.scalar.and_then(|v| Scalar::from_f64(v.value)) else {
            continue;
        };
        let total = totals.entry(r.name.as_str()).or_default();
        *total = total.checked_add(amount).ok_or_else(|| {
            format!(
                "resources[{i}] ({}): the amounts of {} add up to more than tepui can count; \
                 give each resource once, with a realistic amount",
                r.name, r.name
            )
        })?;
    }
    Ok(())
}

fn status(s: &StatusView) -> mesos::TaskStatus {
    let mut t = mesos::TaskStatus::new(
        mesos::TaskId::new(s.task_id.clone()),
        mesos::TaskState::from_name(s.state.as_str()),
    );
    t.message = (!s.message.is_empty()).then(|| s.message.clone());
    t.source = Some(if s.from_master {
        mesos::TaskStatusSource::Master
    } else {
        mesos::TaskStatusSource::Executor
    });
    t.reason = s.reason.as_deref().map(mesos::TaskStatusReason::from_name);
    t.agent_id = s.agent_id.map(|a| mesos::AgentId::new(a.to_string()));
    t.timestamp = Some(s.timestamp_ms as f64 / 1000.0);
    t.uuid = s.uuid.as_ref().map(|u| tepui_mesos::Bytes::new(u.as_bytes().to_vec()));
    t.healthy = s.healthy;
    t
}

/// What a LAUNCH needs of its framework to give a task's executor: the framework's id, which
/// the executor's `ExecutorInfo` carries, and the `FrameworkInfo` the executor is told.
struct Launcher {
    framework_id: String,
    framework_info: serde_json::Value,
}

impl Launcher {
    fn of(master: &Master, framework: &str) -> Launcher {
        use crate::operator::model;
        let framework_info = master.node().read(|s| {
            let record = s.frameworks.get(framework)?;
            let f = model::Framework {
                id: framework.to_string(),
                kind: model::Kind::Record(record),
                tasks: vec![],
                used: Resources::new(),
                offered: Resources::new(),
                offers: vec![],
            };
            serde_json::to_value(crate::operator::wire::framework_info(&f)).ok()
        });
        Launcher {
            framework_id: framework.to_string(),
            framework_info: framework_info.unwrap_or_default(),
        }
    }
}

fn operation(op: &mesos::OfferOperation, launcher: &Launcher) -> Result<Operation, String> {
    use mesos::OfferOperationType as T;
    match &op.kind {
        T::Launch => {
            let l = op.launch.as_ref().ok_or("LAUNCH needs `launch`")?;
            l.task_infos.iter().try_for_each(check_amounts)?;
            Ok(Operation::Launch(
                l.task_infos.iter().map(|t| launch_spec(t, launcher)).collect(),
            ))
        }
        T::LaunchGroup => {
            let g = op.launch_group.as_ref().ok_or("LAUNCH_GROUP needs `launch_group`")?;
            g.task_group.tasks.iter().try_for_each(check_amounts)?;
            let mut tasks: Vec<LaunchSpec> = g.task_group.tasks.iter().map(group_member).collect();
            // The master refuses the whole group (REASON_TASK_GROUP_INVALID) for a bad
            // executor: every task carries the reason.
            let executor = default_executor(&g.executor, launcher).unwrap_or_else(|why| {
                for t in &mut tasks {
                    t.invalid = Some(why.clone());
                }
                ExecutorSpec::default_executor(
                    &launcher.framework_id,
                    &g.executor.executor_id.value,
                    Resources::new(),
                    "host",
                    vec![],
                )
            });
            Ok(Operation::LaunchGroup { executor, tasks })
        }
        T::Reserve => {
            let r = op.reserve.as_ref().ok_or("RESERVE needs `reserve`")?;
            let res = from_mesos_resources(&r.resources)?;
            if res.iter().any(|e| {
                e.reservation
                    .as_ref()
                    .is_none_or(|rv| rv.kind != ReservationKind::Dynamic)
            }) {
                return Err("RESERVE takes resources with a dynamic reservation for a role".into());
            }
            Ok(Operation::Reserve(res))
        }
        T::Unreserve => {
            let r = op.unreserve.as_ref().ok_or("UNRESERVE needs `unreserve`")?;
            Ok(Operation::Unreserve(from_mesos_resources(&r.resources)?))
        }
        other => Err(format!("operation {other} is not supported by tepui")),
    }
}

/// A task of a group: a task of its own container, run by the group's default executor.
fn group_member(t: &mesos::TaskInfo) -> LaunchSpec {
    let mut spec = LaunchSpec {
        task_id: t.task_id.value.clone(),
        name: t.name.clone(),
        agent_id: t.agent_id.value.parse().ok(),
        def: tepui_master::empty_def(),
        resources: Resources::new(),
        invalid: None,
        labels: t
            .labels
            .iter()
            .flat_map(|l| &l.labels)
            .map(|l| (l.key.clone(), l.value.clone().unwrap_or_default()))
            .collect(),
        executor: None,
    };
    let translated = if t.executor.is_some() {
        // Mesos' words.
        Err("'TaskInfo.executor' must not be set".to_string())
    } else {
        task_def_of(t, true)
    };
    match translated {
        Ok((def, resources)) => {
            spec.def = def;
            spec.resources = resources;
        }
        Err(why) => spec.invalid = Some(why),
    }
    spec
}

/// The executor of a LAUNCH_GROUP, checked as Mesos' master checks it: the default executor,
/// with its resources and network (its `network_infos` put the group on the bridge, with
/// their port mappings; none, the host's network). Its `framework_id` is filled in.
fn default_executor(x: &mesos::ExecutorInfo, launcher: &Launcher) -> Result<ExecutorSpec, String> {
    let id = &x.executor_id.value;
    if let Some(why) = executor_id_error(id) {
        return Err(format!("executor.executor_id {id:?} {why}"));
    }
    match &x.framework_id {
        Some(f) if f.value != launcher.framework_id => {
            return Err(format!(
                "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {})",
                f.value, launcher.framework_id
            ))
        }
        _ => {}
    }
    if x.kind != Some(mesos::ExecutorType::Default) {
        return Err("'ExecutorInfo.type' must be 'DEFAULT' for a task group".into());
    }
    if x.command.is_some() {
        return Err("'ExecutorInfo.command' must not be set for 'DEFAULT' executor".into());
    }
    check_resource_amounts(&x.resources).map_err(|e| format!("executor.{e}"))?;
    let resources = from_mesos_resources(&x.resources).map_err(|e| format!("executor.{e}"))?;
    let mut ports = host_ports(&resources).map_err(|e| format!("executor.{e}"))?;
    let mut network = "host";
    if let Some(c) = &x.container {
        if !c.volumes.is_empty() {
            return Err("executor.container.volumes are not supported yet".into());
        }
        if c.docker.is_some() || c.mesos.as_ref().is_some_and(|m| m.image.is_some()) {
            return Err("executor.container: the default executor runs no image".into());
        }
        if let Some(n) = c.network_infos.first() {
            network = "bridge";
            for p in &mut ports {
                let m = n.port_mappings.iter().find(|m| m.host_port == u32::from(p.host_port));
                p.container_port = match m {
                    Some(m) => u16::try_from(m.container_port).map_err(|_| {
                        "executor.container.network_infos[0].port_mappings: container_port is out of range"
                    })?,
                    None => p.host_port,
                };
                p.protocol = m.and_then(|m| m.protocol.clone()).unwrap_or_else(|| "tcp".into());
            }
        }
    }
    let mut spec = ExecutorSpec::default_executor(&launcher.framework_id, id, resources, network, ports);
    let mut info = x.clone();
    info.framework_id = Some(mesos::FrameworkId::new(launcher.framework_id.as_str()));
    spec.name = x.name.clone().unwrap_or_else(|| id.clone());
    spec.info = serde_json::to_value(&info).map_err(|e| e.to_string())?;
    spec.framework_info = launcher.framework_info.clone();
    if let Some(g) = &x.shutdown_grace_period {
        spec.def.kill_grace_ms = (g.nanoseconds.max(0) / 1_000_000) as u64;
    }
    Ok(spec)
}

/// A task group's volumes: paths of the group's sandbox (`SANDBOX_PATH` of type `PARENT`,
/// Mesos' way to share a directory between the tasks of a group), relative, without `..`.
fn group_volumes(volumes: &[mesos::Volume]) -> Result<Vec<VolumeDef>, String> {
    volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("container.volumes[{i}]");
            let source = v
                .source
                .as_ref()
                .filter(|s| s.kind == Some(mesos::VolumeSourceType::SandboxPath));
            let path = source
                .and_then(|s| s.sandbox_path.as_ref())
                .filter(|p| p.kind == Some(mesos::SandboxPathType::Parent))
                .ok_or_else(|| format!("{field}: a task of a group mounts only SANDBOX_PATH volumes of type PARENT"))?;
            let rel = std::path::Path::new(&path.path);
            if path.path.is_empty()
                || rel.is_absolute()
                || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(format!(
                    "{field}.source.sandbox_path.path {:?} must be a relative path without '..'",
                    path.path
                ));
            }
            if !v.container_path.starts_with('/') {
                return Err(format!(
                    "{field}.container_path {:?} must be an absolute path",
                    v.container_path
                ));
            }
            Ok(VolumeDef {
                source: path.path.clone(),
                target: v.container_path.clone(),
                read_only: v.mode == mesos::VolumeMode::Ro,
            })
        })
        .collect()
}

fn launch_spec(t: &mesos::TaskInfo, launcher: &Launcher) -> LaunchSpec {
    let mut spec = LaunchSpec {
        task_id: t.task_id.value.clone(),
        name: t.name.clone(),
        agent_id: t.agent_id.value.parse().ok(),
        def: tepui_master::empty_def(),
        resources: Resources::new(),
        invalid: None,
        labels: t
            .labels
            .iter()
            .flat_map(|l| &l.labels)
            .map(|l| (l.key.clone(), l.value.clone().unwrap_or_default()))
            .collect(),
        executor: None,
    };
    let translated = match &t.executor {
        None => task_def(t),
        Some(x) => executor_task_def(t).and_then(|(def, resources)| {
            spec.executor = Some(executor_spec(t, x, launcher)?);
            Ok((def, resources))
        }),
    };
    match translated {
        Ok((def, resources)) => {
            spec.def = def;
            spec.resources = resources;
        }
        Err(why) => spec.invalid = Some(why),
    }
    spec
}

/// The task of a framework's executor: its resources (the executor runs it, inside its own
/// container) and its kill grace period.
fn executor_task_def(t: &mesos::TaskInfo) -> Result<(TaskDef, Resources), String> {
    if !tepui_common::valid_task_id(&t.task_id.value) {
        return Err(format!(
            "task_id {:?} is not valid: it must be {}",
            t.task_id.value,
            tepui_common::TASK_ID_RULE
        ));
    }
    if t.command.is_some() {
        return Err("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present".into());
    }
    let resources = from_mesos_resources(&t.resources)?;
    let mut def = tepui_master::empty_def();
    def.cpus_milli = resources.scalar_sum(&ResourceName::CPUS).milli();
    def.mem_mb = tepui_master::convert::units(&resources, &ResourceName::MEM);
    def.disk_mb = tepui_master::convert::units(&resources, &ResourceName::DISK);
    def.ports = host_ports(&resources)?;
    if let Some(grace) = t.kill_policy.as_ref().and_then(|k| k.grace_period.as_ref()) {
        def.kill_grace_ms = (grace.nanoseconds.max(0) / 1_000_000) as u64;
    }
    Ok((def, resources))
}

/// The ports of `resources` as a host-networked task has them.
fn host_ports(resources: &Resources) -> Result<Vec<PortDef>, String> {
    let mut ports = Vec::new();
    let reserved = resources.reserved();
    let reserved_ranges = reserved
        .iter()
        .filter(|e| e.name == ResourceName::PORTS)
        .flat_map(|e| match &e.value {
            Value::Ranges(r) => r.pairs().to_vec(),
            _ => vec![],
        });
    let unreserved = resources.unreserved_ranges(&ResourceName::PORTS);
    for (lo, hi) in unreserved.pairs().iter().copied().chain(reserved_ranges) {
        if hi - lo > 1024 {
            return Err(format!("resources: the port range {lo}-{hi} is too large for one task"));
        }
        for port in lo..=hi {
            ports.push(PortDef {
                name: None,
                host_port: u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?,
                container_port: 0,
                protocol: "tcp".into(),
            });
        }
    }
    Ok(ports)
}

/// Mesos' default `--executor_shutdown_grace_period`.
const EXECUTOR_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// A task's executor (`TaskInfo.executor`), checked as Mesos' master checks it, with its
/// `framework_id` filled in as the master does.
fn executor_spec(t: &mesos::TaskInfo, x: &mesos::ExecutorInfo, launcher: &Launcher) -> Result<ExecutorSpec, String> {
    let id = &x.executor_id.value;
    if let Some(why) = executor_id_error(id) {
        return Err(format!("executor.executor_id {id:?} {why}"));
    }
    match &x.framework_id {
        Some(f) if f.value != launcher.framework_id => {
            return Err(format!(
                "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {})",
                f.value, launcher.framework_id
            ))
        }
        _ => {}
    }
    if x.kind.as_ref().is_some_and(|k| *k != mesos::ExecutorType::Custom) {
        return Err("'ExecutorInfo.type' must be 'CUSTOM'".into());
    }
    let command = x.command.as_ref().ok_or("'ExecutorInfo.command' must be set")?;
    let mut def = tepui_master::empty_def();
    def.kill_grace_ms = x
        .shutdown_grace_period
        .as_ref()
        .map(|g| (g.nanoseconds.max(0) / 1_000_000) as u64)
        .unwrap_or(EXECUTOR_SHUTDOWN_GRACE_MS);
    command_into(command, &mut def, "executor.command")?;
    if let Some(c) = &x.container {
        if !c.volumes.is_empty() {
            return Err("executor.container.volumes are not supported yet".into());
        }
        if c.docker
            .as_ref()
            .is_some_and(|d| d.network == Some(mesos::DockerNetwork::Bridge))
        {
            return Err(
                "executor.container: an executor runs with host networking (it reaches its agent on the agent's address)"
                    .into(),
            );
        }
        def.image = c.image_name().map(str::to_string);
    }
    check_resource_amounts(&x.resources).map_err(|e| format!("executor.{e}"))?;
    let resources = from_mesos_resources(&x.resources).map_err(|e| format!("executor.{e}"))?;
    def.cpus_milli = resources.scalar_sum(&ResourceName::CPUS).milli();
    def.mem_mb = tepui_master::convert::units(&resources, &ResourceName::MEM);
    def.disk_mb = tepui_master::convert::units(&resources, &ResourceName::DISK);
    def.ports = host_ports(&resources).map_err(|e| format!("executor.{e}"))?;
    let mut info = x.clone();
    info.framework_id = Some(mesos::FrameworkId::new(launcher.framework_id.as_str()));
    let mut task_info = t.clone();
    task_info.executor = Some(info.clone());
    Ok(ExecutorSpec {
        executor_id: id.clone(),
        name: x.name.clone().unwrap_or_else(|| id.clone()),
        def,
        resources,
        info: serde_json::to_value(&info).map_err(|e| e.to_string())?,
        framework_info: launcher.framework_info.clone(),
        task_info: serde_json::to_value(&task_info).map_err(|e| e.to_string())?,
        default_executor: false,
    })
}

/// What Mesos refuses in an executor id.
fn executor_id_error(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("must not be empty")
    } else if id == "." || id == ".." {
        Some("must not be '.' or '..'")
    } else if id.contains('/') {
        Some("must not contain '/'")
    } else if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not contain whitespace or control characters")
    } else if id.len() > 255 {
        Some("must be at most 255 bytes")
    } else {
        None
    }
}

fn task_def(t: &mesos::TaskInfo) -> Result<(TaskDef, Resources), String> {
    task_def_of(t, false)
}

/// A task's definition; `in_group`: a task of a group (it may mount the group's sandbox).
fn task_def_of(t: &mesos::TaskInfo, in_group: bool) -> Result<(TaskDef, Resources), String> {
    // Task ids name the task's sandbox and container on its agent: the agents' rule.
    if !tepui_common::valid_task_id(&t.task_id.value) {
        return Err(format!(
            "task_id {:?} is not valid: it must be {}",
            t.task_id.value,
            tepui_common::TASK_ID_RULE
        ));
    }
    if t.command.is_none() && t.container.is_none() {
        return Err("the task has neither a command nor a container".into());
    }
    let resources = from_mesos_resources(&t.resources)?;
    let cpus = resources.scalar_sum(&ResourceName::CPUS).milli();
    let mem = tepui_master::convert::units(&resources, &ResourceName::MEM);
    if cpus == 0 && mem == 0 {
        return Err("the task needs cpus or mem in its resources".into());
    }
    let mut def = tepui_master::empty_def();
    def.cpus_milli = cpus;
    def.mem_mb = mem;
    def.disk_mb = tepui_master::convert::units(&resources, &ResourceName::DISK);
    if let Some(c) = &t.command {
        command_into(c, &mut def, "command")?;
    }
    let mut mappings = vec![];
    if let Some(c) = &t.container {
        if in_group {
            def.volumes = group_volumes(&c.volumes)?;
        } else if !c.volumes.is_empty() {
            return Err("container.volumes are not supported yet".into());
        }
        def.image = c.image_name().map(str::to_string);
        if let Some(d) = &c.docker {
            if d.network == Some(mesos::DockerNetwork::Bridge) {
                def.network = "bridge".into();
                mappings = d.port_mappings.clone();
            }
        }
        if def.image.is_none() && t.command.is_none() {
            return Err("the container names no image and the task has no command".into());
        }
    }
    for (lo, hi) in resources
        .unreserved_ranges(&ResourceName::PORTS)
        .pairs()
        .iter()
        .copied()
        .chain(
            resources
                .reserved()
                .filter(|e| e.name == ResourceName::PORTS)
                .iter()
                .flat_map(|e| match &e.value {
                    Value::Ranges(r) => r.pairs().to_vec(),
                    _ => vec![],
                }),
        )
    {
        if hi - lo > 1024 {
            return Err(format!("resources: the port range {lo}-{hi} is too large for one task"));
        }
        for port in lo..=hi {
            let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
            let mapping = mappings.iter().find(|m| m.host_port == port as u32);
            let container_port = match (def.network.as_str(), mapping) {
                (_, Some(m)) => u16::try_from(m.container_port).map_err(|_| "container_port is out of range")?,
                ("bridge", None) => port,
                _ => 0,
            };
            def.ports.push(PortDef {
                name: None,
                host_port: port,
                container_port,
                protocol: mapping.and_then(|m| m.protocol.clone()).unwrap_or_else(|| "tcp".into()),
            });
        }
    }
    if let Some(grace) = t.kill_policy.as_ref().and_then(|k| k.grace_period.as_ref()) {
        def.kill_grace_ms = (grace.nanoseconds.max(0) / 1_000_000) as u64;
    }
    if let Some(h) = &t.health_check {
        let check = health_check(h, &def.ports).map_err(|e| format!("health_check: {e}"))?;
        def.health_checks.push(check);
    }
    Ok((def, resources))
}

/// A command's program, arguments, environment and user into `def`; `field` names the
/// command in errors.
fn command_into(c: &mesos::CommandInfo, def: &mut TaskDef, field: &str) -> Result<(), String> {
    if c.is_shell() {
        let value = c.value.as_deref().filter(|v| !v.trim().is_empty());
        let value = value.ok_or_else(|| format!("{field}.value is required for a shell command"))?;
        def.args = vec!["/bin/sh".into(), "-c".into(), value.to_string()];
    } else if let Some(v) = &c.value {
        def.args = std::iter::once(v.clone())
            .chain(c.arguments.iter().skip(1).cloned())
            .collect();
    } else {
        def.args = c.arguments.clone();
    }
    if let Some(env) = &c.environment {
        for (i, v) in env.variables.iter().enumerate() {
            let value = v
                .value
                .clone()
                .ok_or_else(|| format!("{field}.environment.variables[{i}]: secrets are not supported"))?;
            if v.name.is_empty() || v.name.contains('=') {
                return Err(format!("{field}.environment.variables[{i}]: invalid name {:?}", v.name));
            }
            def.env.insert(v.name.clone(), value);
        }
    }
    def.user = c.user.clone();
    Ok(())
}

/// A Mesos health check with Mesos' defaults. Its port is the task's port (the container port
/// for a bridge task); the agent checks the host port that maps to it.
fn health_check(h: &mesos::HealthCheck, ports: &[PortDef]) -> Result<HealthCheckDef, String> {
    let secs = |v: Option<f64>, default: f64| -> Result<u64, String> {
        let v = v.unwrap_or(default);
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok((v * 1000.0) as u64)
        } else {
            Err(format!("{v} is not a number of seconds between 0 and 86400"))
        }
    };
    let host_port = |port: u32| -> Result<u16, String> {
        let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
        Ok(ports
            .iter()
            .find(|p| p.container_port == port && p.container_port != 0)
            .map(|p| p.host_port)
            .unwrap_or(port))
    };
    let (protocol, path, port, command) = match h.kind.as_ref().map(|k| k.as_str()) {
        Some("HTTP") => {
            let http = h.http.as_ref().ok_or("an HTTP check needs `http`")?;
            let scheme = http.scheme.as_deref().unwrap_or("http");
            let protocol = if scheme.eq_ignore_ascii_case("https") {
                "HTTPS"
            } else {
                "HTTP"
            };
            (protocol, http.path.clone(), Some(host_port(http.port)?), None)
        }
        Some("TCP") => {
            let tcp = h.tcp.as_ref().ok_or("a TCP check needs `tcp`")?;
            ("TCP", None, Some(host_port(tcp.port)?), None)
        }
        Some("COMMAND") => {
            let c = h.command.as_ref().and_then(|c| c.value.clone());
            (
                "COMMAND",
                None,
                None,
                Some(c.ok_or("a COMMAND check needs `command.value`")?),
            )
        }
        other => {
            return Err(format!(
                "the check type {other:?} is not supported; use HTTP, TCP or COMMAND"
            ))
        }
    };
    Ok(HealthCheckDef {
        protocol: protocol.into(),
        path,
        port,
        command,
        grace_period_ms: secs(h.grace_period_seconds, 10.0)?,
        interval_ms: secs(h.interval_seconds, 10.0)?.max(100),
        timeout_ms: secs(h.timeout_seconds, 20.0)?.max(100),
        max_consecutive_failures: h.consecutive_failures.unwrap_or(3).max(1),
        delay_ms: secs(h.delay_seconds, 15.0)?,
    })
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> mesos::TaskInfo {
        serde_json::from_value(json).unwrap()
    }

    fn launcher() -> Launcher {
        Launcher {
            framework_id: "fw-1".into(),
            framework_info: serde_json::json!({"id": {"value": "fw-1"}, "user": "root", "name": "f"}),
        }
    }

    fn executor_task(executor: serde_json::Value) -> mesos::TaskInfo {
        task(serde_json::json!({
            "name": "work", "task_id": {"value": "work.1"}, "agent_id": {"value": "2"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}],
            "data": "aGVsbG8=",
            "kill_policy": {"grace_period": {"nanoseconds": 1000000000}},
            "executor": executor
        }))
    }

    #[test]
    fn a_task_with_an_executor_carries_the_executor_and_what_it_is_told() {
        let t = executor_task(serde_json::json!({
            "executor_id": {"value": "ex-1"}, "name": "my executor",
            "command": {"value": "/opt/exec --flag", "environment": {"variables": [{"name": "MODE", "value": "x"}]}},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}
            ],
            "shutdown_grace_period": {"nanoseconds": 2000000000}
        }));
        let spec = launch_spec(&t, &launcher());
        assert_eq!(spec.invalid, None);
        assert_eq!((spec.def.cpus_milli, spec.def.kill_grace_ms), (500, 1000));
        assert!(spec.def.args.is_empty(), "the executor runs the task");
        let x = spec.executor.unwrap();
        assert_eq!((x.executor_id.as_str(), x.name.as_str()), ("ex-1", "my executor"));
        assert_eq!(x.def.args, ["/bin/sh", "-c", "/opt/exec --flag"]);
        assert_eq!(x.def.env["MODE"], "x");
        assert_eq!((x.def.cpus_milli, x.def.mem_mb, x.def.kill_grace_ms), (100, 32, 2000));
        assert_eq!(x.resources.to_string(), "cpus:0.1;mem:32");
        // The master fills in the executor's framework id, in what the executor is told too.
        assert_eq!(x.info["framework_id"]["value"], "fw-1");
        assert_eq!(x.task_info["executor"]["framework_id"]["value"], "fw-1");
        assert_eq!(x.task_info["data"], "aGVsbG8=");
        assert_eq!(x.framework_info["name"], "f");
    }

    #[test]
    fn bad_executors_are_refused_in_mesos_words() {
        let refused = |executor: serde_json::Value| launch_spec(&executor_task(executor), &launcher()).invalid.unwrap();
        assert_eq!(
            refused(serde_json::json!({"executor_id": {"value": "e"}})),
            "'ExecutorInfo.command' must be set"
        );
        assert_eq!(
            refused(
                serde_json::json!({"executor_id": {"value": "e"}, "framework_id": {"value": "other"}, "command": {"value": "x"}})
            ),
            "ExecutorInfo has an invalid FrameworkID (Actual: other vs Expected: fw-1)"
        );
        assert_eq!(
            refused(serde_json::json!({"executor_id": {"value": "e"}, "type": "DEFAULT", "command": {"value": "x"}})),
            "'ExecutorInfo.type' must be 'CUSTOM'"
        );
        assert!(
            refused(serde_json::json!({"executor_id": {"value": "a/b"}, "command": {"value": "x"}})).contains("'/'")
        );
        assert!(
            refused(serde_json::json!({"executor_id": {"value": ""}, "command": {"value": "x"}})).contains("empty")
        );
        assert!(refused(serde_json::json!({
            "executor_id": {"value": "e"}, "command": {"value": "x"},
            "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "BRIDGE"}}
        }))
        .contains("host networking"));
    }

    #[test]
    fn a_shell_task_becomes_a_task_definition() {
        let t = task(serde_json::json!({
            "name": "web", "task_id": {"value": "web.1"}, "agent_id": {"value": "3"},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.25}, "role": "*"},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]}}
            ],
            "command": {"value": "echo hi", "environment": {"variables": [{"name": "A", "value": "1"}]}},
            "kill_policy": {"grace_period": {"nanoseconds": 2000000000}}
        }));
        let spec = launch_spec(&t, &launcher());
        assert_eq!(spec.invalid, None);
        assert_eq!(spec.agent_id, Some(3));
        assert_eq!(spec.def.args, vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!((spec.def.cpus_milli, spec.def.mem_mb), (250, 64));
        assert_eq!(
            spec.def.ports.iter().map(|p| p.host_port).collect::<Vec<_>>(),
            vec![31000, 31001]
        );
        assert_eq!(spec.def.env["A"], "1");
        assert_eq!(spec.def.kill_grace_ms, 2000);
        assert_eq!(spec.resources.to_string(), "cpus:0.25;mem:64;ports:[31000-31001]");
    }

    #[test]
    fn unsupported_tasks_say_why() {
        let base = serde_json::json!({
            "name": "x", "task_id": {"value": "x"}, "agent_id": {"value": "1"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}],
        });
        let mut no_command = base.clone();
        no_command["task_id"]["value"] = "x".into();
        assert!(launch_spec(&task(no_command), &launcher())
            .invalid
            .unwrap()
            .contains("neither a command"));
        let mut bad_id = base.clone();
        bad_id["task_id"]["value"] = "../etc".into();
        bad_id["command"] = serde_json::json!({"value": "true"});
        assert!(launch_spec(&task(bad_id), &launcher())
            .invalid
            .unwrap()
            .contains("task_id"));
        let mut both = base;
        both["command"] = serde_json::json!({"value": "true"});
        both["executor"] = serde_json::json!({"executor_id": {"value": "e"}, "command": {"value": "x"}});
        assert_eq!(
            launch_spec(&task(both), &launcher()).invalid.unwrap(),
            "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        );
    }

    #[test]
    fn reservations_round_trip_in_both_formats() {
        let r: Resources = "cpus:1;cpus(eng,dynamic):2;mem(ops):64".parse().unwrap();
        for refinement in [false, true] {
            let m = to_mesos_resources(&r, Some("eng"), refinement);
            assert_eq!(from_mesos_resources(&m).unwrap(), r, "refinement {refinement}");
        }
    }

    #[test]
    fn mesos_health_checks_get_mesos_defaults_and_the_host_port() {
        let t = task(serde_json::json!({
            "name": "web", "task_id": {"value": "web.1"}, "agent_id": {"value": "3"},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31005, "end": 31005}]}}
            ],
            "container": {"type": "DOCKER", "docker": {"image": "nginx", "network": "BRIDGE",
                "port_mappings": [{"host_port": 31005, "container_port": 80}]}},
            "health_check": {"type": "HTTP", "http": {"port": 80, "path": "/ping"}, "consecutive_failures": 5}
        }));
        let spec = launch_spec(&t, &launcher());
        assert_eq!(spec.invalid, None);
        let h = &spec.def.health_checks[0];
        assert_eq!(
            (h.protocol.as_str(), h.port, h.path.as_deref()),
            ("HTTP", Some(31005), Some("/ping"))
        );
        assert_eq!(
            (h.interval_ms, h.timeout_ms, h.grace_period_ms, h.delay_ms),
            (10_000, 20_000, 10_000, 15_000)
        );
        assert_eq!(h.max_consecutive_failures, 5);
        let mut bad = t.clone();
        bad.health_check.as_mut().unwrap().kind = Some(mesos::CheckType::from_name("GRPC"));
        assert!(launch_spec(&bad, &launcher()).invalid.unwrap().contains("health_check"));
    }
}
