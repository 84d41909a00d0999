//! tepui's own `/v1/frameworks` and `/v1/roles`, for the CLI: tepui's error shapes
//! (`{code, message, field}`), not Mesos'.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use tepui_allocator::{Quantities, ResourceName, Role, Scalar};
use tepui_api::{FrameworkView, QuotaRequest, RoleView, WeightRequest};

use super::model::{Framework, Kind, Model, RoleRow, OPERATOR_FRAMEWORK_ID};
use tepui_master::{convert, Master};
use tepui_node::http::JsonBody;
use tepui_node::{Error, ErrorKind};

type ApiResult<T> = Result<Json<T>, Error>;

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(field, message)
}

fn unknown_framework(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "unknown_framework",
        format!("no framework {id:?}; see `tepui framework ls` for the frameworks there are"),
    )
}

async fn model<T>(master: &Master, f: impl FnOnce(&Model) -> T) -> Result<T, Error> {
    master.node().linearize().await?;
    let view = master.view();
    Ok(master.node().read(|s| f(&Model::new(s, view.as_ref()))))
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
pub(super) async fn frameworks(State(master): State<Master>) -> ApiResult<Vec<FrameworkView>> {
    let list = model(&master, |m| {
        m.frameworks().iter().map(|f| framework_view(m, f)).collect()
    })
    .await?;
    Ok(Json(list))
}

pub(super) async fn framework(State(master): State<Master>, Path(id): Path<String>) -> ApiResult<FrameworkView> {
    model(&master, |m| m.framework(&id).map(|f| framework_view(m, &f)))
        .await?
        .map(Json)
        .ok_or_else(|| unknown_framework(&id))
}

/// Removes a framework and kills its tasks; answers with the framework as it was.
pub(super) async fn teardown(State(master): State<Master>, Path(id): Path<String>) -> ApiResult<FrameworkView> {
    let before = model(&master, |m| {
        m.framework(&id)
            .filter(|f| matches!(f.kind, Kind::Record(_) | Kind::Operator))
            .map(|f| (matches!(f.kind, Kind::Operator), framework_view(m, &f)))
    })
    .await?;
    let Some((builtin, view)) = before else {
        return Err(unknown_framework(&id));
    };
    if builtin {
        return Err(Error::new(
            ErrorKind::Conflict,
            "builtin_framework",
            format!(
                "{OPERATOR_FRAMEWORK_ID} holds the tasks of `tepui task run` and cannot be torn down; \
                 kill its tasks with `tepui task kill`"
            ),
        ));
    }
    master.teardown(&id).await.map_err(|e| match e.code.as_str() {
        "framework_removed" | "not_subscribed" => unknown_framework(&id),
        _ => e,
    })?;
    tracing::info!(framework = %id, tasks = view.tasks, "framework torn down by the operator");
    Ok(Json(view))
}

pub(super) async fn roles(State(master): State<Master>) -> ApiResult<Vec<RoleView>> {
    Ok(Json(
        model(&master, |m| m.roles().iter().map(role_view).collect()).await?,
    ))
}

fn check_role(role: &str) -> Result<(), Error> {
    Role::new(role).map_err(|e| invalid("role", format!("{e}")))?;
    Ok(())
}

async fn role_answer(master: &Master, role: &str) -> ApiResult<RoleView> {
    let view = model(master, |m| m.roles().iter().find(|r| r.name == role).map(role_view)).await?;
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
    State(master): State<Master>,
    Path(role): Path<String>,
    JsonBody(req): JsonBody<QuotaRequest>,
) -> ApiResult<RoleView> {
    check_role(&role)?;
    let (guarantees, limits) = quota(&req).map_err(|(field, message)| invalid(&field, message))?;
    master
        .update_quota(&role, &guarantees, &limits, req.force)
        .await
        .map_err(|e| match e {
            // The allocator says what is wrong, and when --force would set it anyway.
            e if e.kind == ErrorKind::Invalid => Error::new(ErrorKind::Invalid, "invalid_quota", e.message),
            other => other,
        })?;
    tracing::info!(role, %guarantees, %limits, force = req.force, "quota set");
    role_answer(&master, &role).await
}

pub(super) async fn set_weight(
    State(master): State<Master>,
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
    master.update_weights(&[(role.clone(), req.weight)]).await?;
    tracing::info!(role, weight = req.weight, "role weight set");
    role_answer(&master, &role).await
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
