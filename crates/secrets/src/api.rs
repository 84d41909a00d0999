//! The secrets API: names and versions can be listed, values can be written and removed,
//! never read back.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Json;
use tepui_api::{SecretPutRequest, SecretView};
use tepui_auth::{Cap, Policy, Routes};
use tepui_node::http::JsonBody;
use tepui_node::{now_ms, Error, ErrorKind, Node};
use tepui_state::{normalize_secret_path, Command, Response, SecretRecord};

use crate::{Keyring, VALUE_LIMIT};

#[derive(Clone)]
struct Secrets {
    node: Node,
    keyring: Option<Arc<Keyring>>,
}

type ApiResult<T> = Result<Json<T>, Error>;

/// `/v1/secrets`: they write, so they run on the leader, whose `keyring` seals.
pub fn routes(node: Node, keyring: Option<Arc<Keyring>>) -> Routes {
    Routes::new()
        .route("/v1/secrets", Policy::new().get(Cap::Read), get(list))
        .route(
            "/v1/secrets/{*path}",
            Policy::new().get(Cap::Read).put(Cap::Write).delete(Cap::Write),
            get(show).put(put).delete(remove),
        )
        .with_state(Secrets { node, keyring })
}

fn view(path: &str, r: &SecretRecord) -> SecretView {
    SecretView {
        path: path.to_string(),
        version: r.modify_index,
        modified_at_ms: r.modified_at,
    }
}

fn path_of(raw: &str) -> Result<String, Error> {
    normalize_secret_path(raw).map_err(|m| Error::new(ErrorKind::Invalid, "invalid_secret_path", m).field("path"))
}

fn unknown(path: &str) -> Error {
    Error::new(ErrorKind::NotFound, "unknown_secret", format!("no secret {path:?}"))
}

async fn list(State(s): State<Secrets>) -> ApiResult<Vec<SecretView>> {
    Ok(Json(
        s.node.read(|st| st.secrets.iter().map(|(p, r)| view(p, r)).collect()),
    ))
}

async fn show(State(s): State<Secrets>, Path(raw): Path<String>) -> ApiResult<SecretView> {
    let path = path_of(&raw)?;
    s.node
        .read(|st| st.secrets.get(&path).map(|r| view(&path, r)))
        .map(Json)
        .ok_or_else(|| unknown(&path))
}

async fn put(
    State(s): State<Secrets>,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<SecretPutRequest>,
) -> ApiResult<SecretView> {
    let path = path_of(&raw)?;
    if req.value.len() > VALUE_LIMIT {
        return Err(Error::new(
            ErrorKind::TooLarge,
            "value_too_large",
            format!(
                "a secret holds at most {VALUE_LIMIT} bytes; this one has {}",
                req.value.len()
            ),
        )
        .field("value"));
    }
    let Some(keyring) = &s.keyring else {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "no_secrets_key",
            format!(
                "the leading server has no secrets key ({} under its data dir); copy it from another server",
                crate::KEY_FILE
            ),
        ));
    };
    let sealed = keyring.seal(&path, req.value.as_bytes());
    let now = now_ms();
    let answer = s
        .node
        .write(Command::PutSecret {
            path: path.clone(),
            sealed,
            now,
        })
        .await?;
    let version = match answer {
        Response::Secret { modify_index, .. } => modify_index,
        _ => 0,
    };
    tracing::info!(secret = %path, version, "secret written");
    Ok(Json(SecretView {
        path,
        version,
        modified_at_ms: now,
    }))
}

async fn remove(State(s): State<Secrets>, Path(raw): Path<String>) -> ApiResult<serde_json::Value> {
    let path = path_of(&raw)?;
    if !s.node.read(|st| st.secrets.contains_key(&path)) {
        return Err(unknown(&path));
    }
    s.node.write(Command::DeleteSecret { path: path.clone() }).await?;
    tracing::info!(secret = %path, "secret removed");
    Ok(Json(serde_json::json!({ "deleted": path })))
}
