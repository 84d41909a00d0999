//! The v1 operator API: `POST /api/v1` with a JSON `master::Call`. Queries answer 200 with a
//! `master::Response`; changes answer 200 (202 for reservations) with no body; SUBSCRIBE
//! answers a RecordIO stream of events. Refusals are a status and a plain-text message, as in
//! Mesos: 400 for a call that cannot be parsed, an unknown type or an invalid request, 501 for
//! a call tepui does not implement, 503 while no leader can answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tepui_allocator::{Quantities, ResourceName, Role, Scalar};
use tepui_mesos::master::{self as op, Call, CallType};
use tepui_mesos::v1 as mesos;
use tepui_state::{Command, Maintenance};

use super::legacy::with_model;
use super::{events, metrics, wire, Ctx, MesosError};
use crate::scheduler::from_mesos_resources;
use tepui_master::Master;

pub(super) async fn call(
    State(master): State<Master>,
    Extension(ctx): Extension<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(master, ctx, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Parses and checks a call: JSON, a known shape, the body its type needs.
pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Call, MesosError> {
    let header = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let content_type = header(header::CONTENT_TYPE).unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err(MesosError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Type {content_type:?}; tepui accepts 'application/json'"),
        ));
    }
    if let Some(accept) = header(header::ACCEPT) {
        let json_ok = accept.split(',').any(|a| {
            let a = a.trim();
            a.is_empty() || a.starts_with("application/json") || a.starts_with("*/*") || a.starts_with("application/*")
        });
        // RecordIO of JSON records, for SUBSCRIBE.
        let recordio = accept.contains("application/recordio");
        if !json_ok && !recordio {
            return Err(MesosError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("Unsupported Accept {accept:?}; tepui answers 'application/json'"),
            ));
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let call: Call = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        MesosError::bad_request(format!("Failed to parse body into Call: {} (at {path})", e.inner()))
    })?;
    if let CallType::Unknown(name) = &call.kind {
        let name = if name.is_empty() { "(empty)" } else { name.as_str() };
        return Err(MesosError::bad_request(format!(
            "Failed to validate master::Call: unknown call type {name}"
        )));
    }
    if !call.has_required_body() {
        return Err(MesosError::bad_request(format!(
            "Failed to validate master::Call: Expecting '{}' to be present",
            call.kind.as_str().to_lowercase()
        )));
    }
    Ok(call)
}

async fn handle(master: Master, ctx: Arc<Ctx>, headers: &HeaderMap, body: &[u8]) -> Result<Response, MesosError> {
    let call = parse(headers, body)?;
    tracing::debug!(call = %call.kind, "operator call");
    let answer = |r: op::Response| Ok(axum::Json(r).into_response());
    match call.kind {
        CallType::GetHealth => answer(op::Response::get_health(op::GetHealth { healthy: true })),
        CallType::GetVersion => answer(op::Response::get_version(op::GetVersion {
            version_info: wire::version_info(),
        })),
        CallType::GetFlags => answer(op::Response::get_flags(op::GetFlags::default())),
        CallType::GetMetrics => {
            let uptime = ctx.started.elapsed().as_secs_f64();
            let elected = master.node().is_leader();
            let snapshot = with_model(&master, |m| metrics::compute(m, elected, uptime)).await?;
            answer(op::Response::get_metrics(op::GetMetrics {
                metrics: snapshot
                    .into_iter()
                    .map(|(name, value)| mesos::Metric {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            }))
        }
        CallType::GetState => answer(op::Response::get_state(with_model(&master, wire::get_state).await?)),
        CallType::GetAgents => answer(op::Response::get_agents(with_model(&master, wire::get_agents).await?)),
        CallType::GetFrameworks => answer(op::Response::get_frameworks(
            with_model(&master, wire::get_frameworks).await?,
        )),
        CallType::GetExecutors => answer(op::Response::get_executors(
            with_model(&master, wire::get_executors).await?,
        )),
        CallType::GetOperations => answer(op::Response::get_operations(op::GetOperations::default())),
        CallType::GetTasks => answer(op::Response::get_tasks(with_model(&master, wire::get_tasks).await?)),
        CallType::GetRoles => answer(op::Response::get_roles(with_model(&master, wire::get_roles).await?)),
        CallType::GetWeights => {
            let roles = with_model(&master, |m| m.roles()).await?;
            answer(op::Response::get_weights(op::GetWeights {
                weight_infos: roles
                    .iter()
                    .filter(|r| r.weight != 1.0)
                    .map(|r| mesos::WeightInfo {
                        weight: r.weight,
                        role: Some(r.name.clone()),
                    })
                    .collect(),
            }))
        }
        CallType::GetQuota => answer(op::Response::get_quota(op::GetQuota {
            status: op::QuotaStatus {
                infos: vec![],
                configs: with_model(&master, wire::quota_configs).await?,
            },
        })),
        CallType::GetMaster => answer(op::Response::get_master(get_master(&master, &ctx))),
        CallType::Subscribe => events::subscribe(master, &ctx.events, headers).await,
        CallType::UpdateWeights => {
            let body = call.update_weights.expect("checked by has_required_body");
            let mut weights = Vec::new();
            for (i, w) in body.weight_infos.iter().enumerate() {
                let role = w.role.clone().ok_or_else(|| {
                    MesosError::bad_request(format!("update_weights.weight_infos[{i}]: a weight needs a role"))
                })?;
                weights.push((role, w.weight));
            }
            master.update_weights(&weights).await?;
            tracing::info!(?weights, "role weights updated");
            Ok(StatusCode::OK.into_response())
        }
        CallType::UpdateQuota => {
            let body = call.update_quota.expect("checked by has_required_body");
            update_quota(&master, body).await?;
            Ok(StatusCode::OK.into_response())
        }
        CallType::ReserveResources => {
            let body = call.reserve_resources.expect("checked by has_required_body");
            if !body.source.is_empty() {
                return Err(MesosError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "reserve_resources.source (re-reserving reserved resources) is not supported by tepui; \
                     unreserve them first",
                ));
            }
            reservation(&master, &body.agent_id, &body.resources, true).await
        }
        CallType::UnreserveResources => {
            let body = call.unreserve_resources.expect("checked by has_required_body");
            reservation(&master, &body.agent_id, &body.resources, false).await
        }
        CallType::DrainAgent => {
            let body = call.drain_agent.expect("checked by has_required_body");
            if body.mark_gone == Some(true) {
                return Err(MesosError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "drain_agent.mark_gone is not supported by tepui; drain, then remove the node",
                ));
            }
            let id = agent_node(&master, &body.agent_id)?;
            let grace_ms = body
                .max_grace_period
                .as_ref()
                .map(|d| (d.nanoseconds.max(0) / 1_000_000) as u64);
            master.drain_agent(id, grace_ms).await?;
            Ok(StatusCode::OK.into_response())
        }
        CallType::DeactivateAgent => {
            let body = call.deactivate_agent.expect("checked by has_required_body");
            let id = agent_node(&master, &body.agent_id)?;
            set_maintenance(&master, id, Maintenance::Deactivated).await?;
            Ok(StatusCode::OK.into_response())
        }
        CallType::ReactivateAgent => {
            let body = call.reactivate_agent.expect("checked by has_required_body");
            let id = agent_node(&master, &body.agent_id)?;
            set_maintenance(&master, id, Maintenance::Active).await?;
            Ok(StatusCode::OK.into_response())
        }
        CallType::Teardown => {
            let body = call.teardown.expect("checked by has_required_body");
            let id = body.framework_id.value;
            match master.teardown(&id).await {
                Ok(()) => Ok(StatusCode::OK.into_response()),
                Err(e) if e.code == "framework_removed" => {
                    Err(MesosError::bad_request(format!("No framework found with ID {id}")))
                }
                Err(e) => Err(e.into()),
            }
        }
        other => Err(MesosError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{other} is not supported by tepui"),
        )),
    }
}

fn get_master(master: &Master, ctx: &Ctx) -> op::GetMaster {
    let (host, port) = master
        .node()
        .info()
        .http_addr
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse().unwrap_or(5050)))
        .unwrap_or_else(|| (master.node().info().http_addr.clone(), 5050));
    let ip = host.parse::<std::net::Ipv4Addr>().ok();
    op::GetMaster {
        master_info: Some(mesos::MasterInfo {
            id: master.node().id().to_string(),
            ip: ip.map(mesos::pack_ipv4).unwrap_or(0),
            port,
            pid: Some(format!("master@{}", master.node().info().http_addr)),
            hostname: Some(master.node().info().name.clone()),
            version: Some(wire::MESOS_VERSION.into()),
            address: Some(mesos::Address {
                hostname: Some(master.node().info().name.clone()),
                ip: Some(host),
                port: port as i32,
            }),
            domain: None,
            capabilities: vec![],
        }),
        start_time: Some(ctx.started_ms as f64 / 1000.0),
        elected_time: None,
    }
}

/// Quantities from a quota map; `what` names the map in messages.
fn quantities(what: &str, map: &std::collections::BTreeMap<String, mesos::Scalar>) -> Result<Quantities, MesosError> {
    let mut q = Quantities::new();
    for (name, v) in map {
        let n = ResourceName::new(name).map_err(|e| MesosError::bad_request(format!("{what}.{name}: {e}")))?;
        if n == ResourceName::PORTS {
            return Err(MesosError::bad_request(format!(
                "{what}.{name}: quota applies to scalar resources only"
            )));
        }
        let s = Scalar::from_f64(v.value).ok_or_else(|| {
            MesosError::bad_request(format!("{what}.{name}: {} is not a non-negative amount", v.value))
        })?;
        q.set(n, s);
    }
    Ok(q)
}

/// All roles' quota is checked before any is set; the allocator then checks each against the
/// cluster as it applies it.
async fn update_quota(master: &Master, body: op::UpdateQuota) -> Result<(), MesosError> {
    let force = body.force.unwrap_or(false);
    let mut parsed = Vec::new();
    for (i, c) in body.quota_configs.iter().enumerate() {
        let at = format!("update_quota.quota_configs[{i}]");
        Role::new(&c.role).map_err(|e| MesosError::bad_request(format!("{at}.role: {e}")))?;
        let guarantees = quantities(&format!("{at}.guarantees"), &c.guarantees)?;
        let limits = quantities(&format!("{at}.limits"), &c.limits)?;
        for (name, g) in guarantees.iter() {
            if let Some(l) = limits.get(name).filter(|l| *l < g) {
                return Err(MesosError::bad_request(format!(
                    "{at}: role '{}' cannot have a guarantee of {g} {name} above its limit of {l}",
                    c.role
                )));
            }
        }
        parsed.push((c.role.clone(), guarantees, limits));
    }
    for (role, guarantees, limits) in parsed {
        master.update_quota(&role, &guarantees, &limits, force).await?;
        tracing::info!(role, %guarantees, %limits, force, "quota updated");
    }
    Ok(())
}

/// A node id in Mesos' agent id, of a node that runs an agent.
fn agent_node(master: &Master, id: &mesos::AgentId) -> Result<u64, MesosError> {
    let unknown = || MesosError::bad_request(format!("Unknown agent {:?}: tepui's agent ids are node ids", id.value));
    let n: u64 = id.value.trim().parse().map_err(|_| unknown())?;
    let is_agent = master
        .node()
        .read(|s| s.nodes.get(&n).is_some_and(|n| n.agent.is_some()));
    if is_agent {
        Ok(n)
    } else {
        Err(unknown())
    }
}

async fn reservation(
    master: &Master,
    agent: &mesos::AgentId,
    resources: &[mesos::Resource],
    reserve: bool,
) -> Result<Response, MesosError> {
    let what = if reserve {
        "reserve_resources"
    } else {
        "unreserve_resources"
    };
    let id = agent_node(master, agent)?;
    if resources.is_empty() {
        return Err(MesosError::bad_request(format!("{what}.resources is empty")));
    }
    let r = from_mesos_resources(resources).map_err(|e| MesosError::bad_request(format!("{what}.{e}")))?;
    if r.iter().any(|e| e.reservation.is_none()) {
        return Err(MesosError::bad_request(format!(
            "{what}.resources: every resource needs a reservation (`reservations: [{{\"type\": \"DYNAMIC\", \"role\": ..}}]`)"
        )));
    }
    master.operator_reservation(id, &r, reserve).await?;
    tracing::info!(agent = id, resources = %r, reserve, "operator reservation");
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn set_maintenance(master: &Master, id: u64, maintenance: Maintenance) -> Result<(), MesosError> {
    master.node().write(Command::SetMaintenance { id, maintenance }).await?;
    tracing::info!(node = id, maintenance = maintenance.as_str(), "agent maintenance");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(body: &str) -> Result<Call, (StatusCode, String)> {
        parse(&HeaderMap::new(), body.as_bytes()).map_err(|e| (e.status, e.message))
    }

    #[test]
    fn calls_are_checked_before_anything_runs() {
        assert_eq!(
            parse_json(r#"{"type": "GET_HEALTH"}"#).unwrap().kind,
            CallType::GetHealth
        );
        let (status, message) = parse_json(r#"{"type": "MAKE_COFFEE"}"#).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("MAKE_COFFEE"), "{message}");
        let (status, message) = parse_json(r#"{"type": "UPDATE_WEIGHTS"}"#).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("update_weights"), "{message}");
        let (status, message) = parse_json("{").unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("Failed to parse body"), "{message}");
        let (status, _) =
            parse_json(r#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": 3}}"#).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let mut proto = HeaderMap::new();
        proto.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        assert_eq!(
            parse(&proto, b"{}").unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, "application/x-protobuf".parse().unwrap());
        assert_eq!(
            parse(&accept, br#"{"type": "GET_HEALTH"}"#).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn quota_maps_are_read_by_name() {
        let map = [
            ("cpus".to_string(), mesos::Scalar::new(2.0)),
            ("mem".to_string(), mesos::Scalar::new(1024.0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(quantities("g", &map).unwrap().to_string(), "cpus:2;mem:1024");
        let ports = [("ports".to_string(), mesos::Scalar::new(2.0))].into_iter().collect();
        assert!(quantities("g", &ports).unwrap_err().message.contains("g.ports"));
        let negative = [("cpus".to_string(), mesos::Scalar::new(-1.0))].into_iter().collect();
        assert!(quantities("g", &negative).unwrap_err().message.contains("g.cpus"));
    }
}
