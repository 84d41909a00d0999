//! Changes of groups: `POST`, `PUT` and `DELETE` on `/v2/groups[/{id}]`.
//!
//! tepui keeps a group as the apps inside it (the tree is derived from app ids), so a change of
//! a group is a change of its apps, planned as one deployment like `PUT /v2/apps`: a group's
//! dependencies are added to every app inside it, and an empty group cannot be created (it
//! would not be there to read back).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use tepui_services::group::{self, GroupChange, GroupDefinition};
use tepui_services::{PathId, ValidationErrors};

use super::{
    body_json, json_response, marathon_path, may_run, secrets_exist, started_json, tree, Answer, Caller, Params,
    Refusal, Shared,
};
use tepui_node::now_ms;

fn group_definition(body: &[u8]) -> Result<GroupDefinition, Refusal> {
    let v = body_json(body)?;
    if !v.is_object() {
        return Err(Refusal::invalid(ValidationErrors::single(
            "/",
            "a group must be a JSON object",
        )));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = marathon_path(e.path());
        Refusal::invalid(ValidationErrors::single(&path, e.into_inner().to_string()))
    })
}

/// The group a path names (`/v2/groups` alone: the root).
fn group_id(raw: Option<Path<String>>) -> Result<PathId, Refusal> {
    match raw {
        None => Ok(PathId::root()),
        Some(Path(raw)) => PathId::parse(&raw)
            .map_err(|_| Refusal::new(StatusCode::NOT_FOUND, format!("Group '/{raw}' does not exist"))),
    }
}

fn missing(id: &PathId) -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, format!("Group '{id}' does not exist"))
}

/// The change checked against the whole tree and the caller: the tree's rules after it, and
/// what the caller may run for every app it puts or changes.
fn checked(
    s: &tepui_state::State,
    caller: &Caller,
    mut change: GroupChange,
) -> Result<(Vec<tepui_services::AppSpec>, Vec<PathId>), Refusal> {
    let current = tree(s);
    change.put.retain(|a| current.app(&a.id) != Some(a));
    group::tree_after(&current, &change)
        .validate()
        .map_err(Refusal::invalid)?;
    for spec in &change.put {
        may_run(caller, spec)?;
        secrets_exist(s, spec)?;
    }
    Ok((change.put, change.remove))
}

/// `POST`: a new group with its apps and groups, ids relative to the path's group.
pub(super) async fn create(
    State(svc): Shared,
    caller: Caller,
    raw: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let base = group_id(raw)?;
    let def = group_definition(&body)?;
    let mut id = base.clone();
    let started = svc
        .change_from(p.flag("force"), |s| {
            let new = group::validate_group(&def, &base, now_ms()).map_err(Refusal::invalid)?;
            id = new.id.clone();
            if tree(s).group(&new.id).is_some() {
                return Err(Refusal::new(
                    StatusCode::CONFLICT,
                    format!("Group {} is already created. Use PUT to change this group.", new.id),
                ));
            }
            if let Some(app) = tree(s).app(&new.id) {
                return Err(Refusal::new(
                    StatusCode::CONFLICT,
                    format!("An app with id [{}] already exists.", app.id),
                ));
            }
            if new.transitive_apps().is_empty() {
                return Err(Refusal::invalid(ValidationErrors::single(
                    "/apps",
                    "tepui keeps a group as the apps inside it: give the group at least one app",
                )));
            }
            let put = group::apps_with_group_dependencies(&new);
            checked(s, &caller, GroupChange { put, remove: vec![] })
        })
        .await?;
    tracing::info!(group = %id, deployment = ?started.deployment_id, "group created");
    let mut resp = json_response(StatusCode::CREATED, started_json(&started));
    if let Ok(location) = HeaderValue::from_str(&format!("/v2/groups{id}")) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// `PUT`: the group replaced by the body (created if it is not there), or scaled (`scaleBy`).
pub(super) async fn update(
    State(svc): Shared,
    caller: Caller,
    raw: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Answer {
    let p = Params::parse(q.as_deref());
    let id = group_id(raw)?;
    let mut def = group_definition(&body)?;
    if def.version.is_some() {
        return Err(Refusal::invalid(ValidationErrors::single(
            "/version",
            "tepui keeps versions per app, not per group: roll an app back with PUT /v2/apps/{id} and {\"version\": ...}",
        )));
    }
    if let Some(factor) = def.scale_by {
        if !factor.is_finite() || factor < 0.0 {
            return Err(Refusal::invalid(ValidationErrors::single(
                "/scaleBy",
                "must be a number of at least 0",
            )));
        }
        if def.apps.is_some() || def.groups.is_some() || def.dependencies.is_some() {
            return Err(Refusal::invalid(ValidationErrors::single(
                "/scaleBy",
                "scaleBy changes instance counts only: give it without apps, groups or dependencies",
            )));
        }
    }
    // The path names the group; an id in the body may only repeat it.
    let given = def.id.take();
    if let Some(given) = given.as_deref().filter(|g| !g.is_empty()) {
        if PathId::resolve(&id.parent(), given).ok().as_ref() != Some(&id) {
            return Err(Refusal::invalid(ValidationErrors::single(
                "/id",
                format!("the body's id {given} is not the group {id} of the path"),
            )));
        }
    }
    let started = svc
        .change_from(p.flag("force"), |s| {
            let current = tree(s);
            let change = match def.scale_by {
                Some(factor) => group::scale_group(&current, &id, factor).ok_or_else(|| missing(&id))?,
                None => {
                    let new = group::validate_group(&def, &id, now_ms()).map_err(Refusal::invalid)?;
                    if current.app(&new.id).is_some() {
                        return Err(Refusal::new(
                            StatusCode::CONFLICT,
                            format!("An app with id [{}] already exists.", new.id),
                        ));
                    }
                    group::replace_group(&current, new, def.apps.is_some(), def.groups.is_some())
                }
            };
            checked(s, &caller, change)
        })
        .await?;
    tracing::info!(group = %id, deployment = ?started.deployment_id, "group updated");
    Ok(json_response(StatusCode::OK, started_json(&started)))
}

/// `DELETE`: every app of the group and below, as one deployment.
pub(super) async fn delete(State(svc): Shared, raw: Option<Path<String>>, RawQuery(q): RawQuery) -> Answer {
    let p = Params::parse(q.as_deref());
    let id = group_id(raw)?;
    let started = svc
        .change_from(p.flag("force"), |s| {
            let current = tree(s);
            let change = group::remove_group(&current, &id).ok_or_else(|| missing(&id))?;
            Ok::<_, Refusal>((change.put, change.remove))
        })
        .await?;
    tracing::info!(group = %id, deployment = ?started.deployment_id, "group deleted");
    Ok(json_response(StatusCode::OK, started_json(&started)))
}
