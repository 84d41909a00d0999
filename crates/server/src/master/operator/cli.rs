//! tepui's own `/v1/frameworks` and `/v1/roles`, for the CLI: tepui's error shapes
//! (`{code, message, field}`), not Mesos'.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use tepui_allocator::{Quantities, ResourceName, Role, Scalar};
use tepui_api::{FrameworkView, QuotaRequest, RoleView, WeightRequest};

use super::model::{Framework, Kind, Model, RoleRow, OPERATOR_FRAMEWORK_ID};
use crate::http::{ApiError, JsonBody};
use crate::master::convert;
use crate::master::CallError;
use crate::node::Inner;

type ApiResult<T> = Result<Json<T>, ApiError>;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
}

fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::NotLeader => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "this server is not leading yet; retry in a moment",
        ),
        CallError::NotSubscribed(id) | CallError::Removed(id) => unknown_framework(&id),
        CallError::WrongStream { .. } | CallError::Invalid(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string())
        }
        CallError::Write(w) => w.into(),
    }
}

fn unknown_framework(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_framework",
        format!("no framework {id:?}; see `tepui framework ls` for the frameworks there are"),
    )
}

async fn model<T>(inner: &Inner, f: impl FnOnce(&Model) -> T) -> Result<T, ApiError> {
    inner.linearize().await?;
    let view = inner.master.view();
    Ok(inner.state.read(|s| f(&Model::new(s, view.as_ref()))))
}

fn framework_view(m: &Model, f: &Framework) -> FrameworkView {
    let r = f.record();
    FrameworkView {
        id: f.id.clone(),
        name: f.name().to_string(),
        user: f.user().to_string(),
        principal: r.and_then(|r| r.principal.clone()),
        hostname: r.and_then(|r| r.hostname.clone()),
        webui_url: r.and_then(|r| r.webui_url.clone()),
        roles: f.roles(),
        capabilities: f.capabilities(),
        connected: f.connected(),
        tasks: f.live_tasks(),
        cpus: f.used.scalar_sum(&ResourceName::CPUS).as_f64(),
        mem_mb: convert::units(&f.used, &ResourceName::MEM),
        registered_at_ms: f.registered_at(m.cluster_created_at()),
        reregistered_at_ms: r.and_then(|r| r.reregistered_at),
        disconnected_at_ms: r.and_then(|r| r.disconnected_at),
        failover_timeout_secs: r.map(|r| r.failover_timeout_ms as f64 / 1000.0).unwrap_or(0.0),
    }
}

fn quantities_map(q: &Quantities) -> BTreeMap<String, f64> {
    q.iter().map(|(n, s)| (n.as_str().to_string(), s.as_f64())).collect()
}

fn role_view(r: &RoleRow) -> RoleView {
    let held = r.resources();
    RoleView {
        name: r.name.clone(),
        weight: r.weight,
        frameworks: r.frameworks.clone(),
        cpus: held.scalar_sum(&ResourceName::CPUS).as_f64(),
        mem_mb: convert::units(&held, &ResourceName::MEM),
        guarantees: quantities_map(&r.guarantees),
        limits: quantities_map(&r.limits),
    }
}

/// Registered frameworks, and `tepui` (the tasks of `tepui task run`) while it has tasks.
pub(super) async fn frameworks(State(inner): State<Arc<Inner>>) -> ApiResult<Vec<FrameworkView>> {
    let list = model(&inner, |m| {
        m.frameworks().iter().map(|f| framework_view(m, f)).collect()
    })
    .await?;
    Ok(Json(list))
}

pub(super) async fn framework(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> ApiResult<FrameworkView> {
    model(&inner, |m| m.framework(&id).map(|f| framework_view(m, &f)))
        .await?
        .map(Json)
        .ok_or_else(|| unknown_framework(&id))
}

/// Removes a framework and kills its tasks; answers with the framework as it was.
pub(super) async fn teardown(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> ApiResult<FrameworkView> {
    let before = model(&inner, |m| {
        m.framework(&id)
            .filter(|f| matches!(f.kind, Kind::Record(_) | Kind::Operator))
            .map(|f| (matches!(f.kind, Kind::Operator), framework_view(m, &f)))
    })
    .await?;
    let Some((builtin, view)) = before else {
        return Err(unknown_framework(&id));
    };
    if builtin {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "builtin_framework",
            format!(
                "{OPERATOR_FRAMEWORK_ID} holds the tasks of `tepui task run` and cannot be torn down; \
                 kill its tasks with `tepui task kill`"
            ),
        ));
    }
    inner.master.teardown(&inner, &id).await.map_err(call_error)?;
    tracing::info!(framework = %id, tasks = view.tasks, "framework torn down by the operator");
    Ok(Json(view))
}

pub(super) async fn roles(State(inner): State<Arc<Inner>>) -> ApiResult<Vec<RoleView>> {
    Ok(Json(
        model(&inner, |m| m.roles().iter().map(role_view).collect()).await?,
    ))
}

fn check_role(role: &str) -> Result<(), ApiError> {
    Role::new(role).map_err(|e| invalid("role", format!("{e}")))?;
    Ok(())
}

async fn role_answer(inner: &Inner, role: &str) -> ApiResult<RoleView> {
    let view = model(inner, |m| m.roles().iter().find(|r| r.name == role).map(role_view)).await?;
    Ok(Json(view.unwrap_or_else(|| RoleView {
        name: role.to_string(),
        weight: 1.0,
        frameworks: vec![],
        cpus: 0.0,
        mem_mb: 0,
        guarantees: BTreeMap::new(),
        limits: BTreeMap::new(),
    })))
}

/// A field at fault and what is wrong with it.
type FieldError = (String, String);

/// Quantities from a request map; errors name the field (`guarantees.cpus`).
pub(super) fn quantities(field: &str, map: &BTreeMap<String, f64>) -> Result<Quantities, FieldError> {
    let mut q = Quantities::new();
    for (name, v) in map {
        let at = format!("{field}.{name}");
        let n = ResourceName::new(name).map_err(|e| (at.clone(), format!("{name:?}: {e}")))?;
        if n == ResourceName::PORTS {
            return Err((
                at,
                "quota applies to scalar resources (cpus, mem, disk, gpus, ...), not ports".into(),
            ));
        }
        let s = Scalar::from_f64(*v).ok_or_else(|| (at.clone(), format!("{v} is not a non-negative amount")))?;
        q.set(n, s);
    }
    Ok(q)
}

/// Quota with its guarantees at most its limits; errors name the field.
pub(super) fn quota(req: &QuotaRequest) -> Result<(Quantities, Quantities), FieldError> {
    let guarantees = quantities("guarantees", &req.guarantees)?;
    let limits = quantities("limits", &req.limits)?;
    for (name, g) in guarantees.iter() {
        if let Some(l) = limits.get(name).filter(|l| *l < g) {
            return Err((
                format!("limits.{name}"),
                format!(
                    "the limit of {l} {name} is below the guarantee of {g} {name}: \
                     a role cannot be guaranteed more than it may hold"
                ),
            ));
        }
    }
    Ok((guarantees, limits))
}

pub(super) async fn set_quota(
    State(inner): State<Arc<Inner>>,
    Path(role): Path<String>,
    JsonBody(req): JsonBody<QuotaRequest>,
) -> ApiResult<RoleView> {
    check_role(&role)?;
    let (guarantees, limits) = quota(&req).map_err(|(field, message)| invalid(&field, message))?;
    inner
        .master
        .update_quota(&inner, &role, &guarantees, &limits, req.force)
        .await
        .map_err(|e| match e {
            // The allocator says what is wrong, and when --force would set it anyway.
            CallError::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_quota", message),
            other => call_error(other),
        })?;
    tracing::info!(role, %guarantees, %limits, force = req.force, "quota set");
    role_answer(&inner, &role).await
}

pub(super) async fn set_weight(
    State(inner): State<Arc<Inner>>,
    Path(role): Path<String>,
    JsonBody(req): JsonBody<WeightRequest>,
) -> ApiResult<RoleView> {
    check_role(&role)?;
    if !(req.weight.is_finite() && req.weight > 0.0) || Scalar::from_f64(req.weight).is_none_or(|s| s.is_zero()) {
        return Err(invalid(
            "weight",
            format!(
                "{} is not a positive weight (at least 0.001; 1.0 is the default)",
                req.weight
            ),
        ));
    }
    inner
        .master
        .update_weights(&inner, &[(role.clone(), req.weight)])
        .await
        .map_err(call_error)?;
    tracing::info!(role, weight = req.weight, "role weight set");
    role_answer(&inner, &role).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_errors_name_the_field() {
        let req = |g: &[(&str, f64)], l: &[(&str, f64)]| QuotaRequest {
            guarantees: g.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            limits: l.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            force: false,
        };
        let (g, l) = quota(&req(&[("cpus", 2.0), ("mem", 1024.0)], &[("cpus", 4.0)])).unwrap();
        assert_eq!(
            (g.to_string(), l.to_string()),
            ("cpus:2;mem:1024".into(), "cpus:4".into())
        );
        let field = |r: QuotaRequest| quota(&r).err().map(|(field, _)| field);
        assert_eq!(
            field(req(&[("cpus", 4.0)], &[("cpus", 2.0)])).as_deref(),
            Some("limits.cpus")
        );
        assert_eq!(field(req(&[("cpus", -1.0)], &[])).as_deref(), Some("guarantees.cpus"));
        assert_eq!(field(req(&[], &[("ports", 10.0)])).as_deref(), Some("limits.ports"));
        assert_eq!(field(req(&[("c p u", 1.0)], &[])).as_deref(), Some("guarantees.c p u"));
        assert!(quota(&req(&[], &[])).is_ok(), "no quota at all");
    }
}
