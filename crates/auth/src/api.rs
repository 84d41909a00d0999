//! The ACL API: policies, tokens, who a token is, and the anonymous-read switch.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, put};
use axum::{Extension, Json};
use tepui_api::{
    AclAnonymous, AclFrameworkGrant, AclPolicyBody, AclPolicyView, AclTokenCreateRequest, AclTokenCreated,
    AclTokenDeriveRequest, AclTokenView, AclWhoAmI, DEFAULT_DERIVED_TTL, MAX_DERIVED_TTL,
};
use tepui_node::http::JsonBody;
use tepui_node::{now_ms, Error, ErrorKind, Node};
use tepui_state::{AclPolicy, AclToken, Capability, Command, FrameworkGrant};

use crate::{new_token, Cap, Denied, Identity, Policy, Routes};

type ApiResult<T> = Result<Json<T>, Error>;

/// The ACL routes; they write, so they run on the leader.
pub fn routes(node: Node) -> Routes {
    Routes::new()
        .route("/v1/acl/policies", Policy::new().get(Cap::Operator), get(list_policies))
        .route(
            "/v1/acl/policies/{name}",
            Policy::new()
                .get(Cap::Operator)
                .put(Cap::Operator)
                .delete(Cap::Operator),
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route(
            "/v1/acl/tokens",
            Policy::new().get(Cap::Operator).post(Cap::Operator),
            get(list_tokens).post(create_token),
        )
        .route(
            "/v1/acl/tokens/{accessor}",
            Policy::new().delete(Cap::Operator),
            delete(revoke_token),
        )
        .route("/v1/acl/token/self", Policy::new().token(Method::GET), get(who_am_i))
        .route(
            "/v1/acl/token/self/derive",
            Policy::new().token(Method::POST),
            axum::routing::post(derive_token),
        )
        .route(
            "/v1/acl/anonymous",
            Policy::new().put(Cap::Operator),
            put(set_anonymous),
        )
        .with_state(node)
}

fn policy_view(p: &AclPolicy) -> AclPolicyView {
    AclPolicyView {
        name: p.name.clone(),
        body: AclPolicyBody {
            description: p.description.clone(),
            capabilities: p.capabilities.iter().map(|c| c.as_str().to_string()).collect(),
            frameworks: grants_view(&p.frameworks),
        },
        modified_at_ms: p.modified_at,
    }
}

fn grants_view(g: &[FrameworkGrant]) -> Vec<AclFrameworkGrant> {
    g.iter()
        .map(|g| AclFrameworkGrant {
            principal: g.principal.clone(),
            roles: g.roles.clone(),
        })
        .collect()
}

fn token_view(t: &AclToken) -> AclTokenView {
    AclTokenView {
        accessor: t.accessor.clone(),
        name: t.name.clone(),
        management: t.management,
        policies: t.policies.clone(),
        created_at_ms: t.created_at,
        expires_at_ms: t.expires_at,
    }
}

async fn list_policies(State(node): State<Node>) -> ApiResult<Vec<AclPolicyView>> {
    Ok(Json(node.read(|s| s.acl_policies.values().map(policy_view).collect())))
}

async fn get_policy(State(node): State<Node>, Path(name): Path<String>) -> ApiResult<AclPolicyView> {
    node.read(|s| s.acl_policies.get(&name).map(policy_view))
        .map(Json)
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "unknown_policy", format!("no policy {name:?}")))
}

async fn put_policy(
    State(node): State<Node>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<AclPolicyBody>,
) -> ApiResult<AclPolicyView> {
    let mut capabilities = std::collections::BTreeSet::new();
    for (i, c) in body.capabilities.iter().enumerate() {
        let cap = Capability::parse(c).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                "invalid_capability",
                format!("{c:?} is not a capability; use read, write, logs, exec, host or operator"),
            )
            .field(format!("capabilities[{i}]"))
        })?;
        capabilities.insert(cap);
    }
    for (i, g) in body.frameworks.iter().enumerate() {
        if g.principal.is_empty() || g.roles.is_empty() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "invalid_framework_grant",
                "a framework grant names a principal (or *) and at least one role (or *)",
            )
            .field(format!("frameworks[{i}]")));
        }
    }
    let policy = AclPolicy {
        name: name.clone(),
        description: body.description,
        capabilities,
        frameworks: body
            .frameworks
            .into_iter()
            .map(|g| FrameworkGrant {
                principal: g.principal,
                roles: g.roles,
            })
            .collect(),
        modified_at: now_ms(),
    };
    let view = policy_view(&policy);
    node.write(Command::AclUpsertPolicy { policy }).await?;
    tracing::info!(policy = %name, "acl policy applied");
    Ok(Json(view))
}

async fn delete_policy(State(node): State<Node>, Path(name): Path<String>) -> ApiResult<serde_json::Value> {
    node.write(Command::AclDeletePolicy { name: name.clone() }).await?;
    tracing::info!(policy = %name, "acl policy removed");
    Ok(Json(serde_json::json!({ "removed": name })))
}

async fn list_tokens(State(node): State<Node>) -> ApiResult<Vec<AclTokenView>> {
    Ok(Json(node.read(|s| s.acl_tokens.values().map(token_view).collect())))
}

async fn create_token(
    State(node): State<Node>,
    me: Option<Extension<Identity>>,
    JsonBody(req): JsonBody<AclTokenCreateRequest>,
) -> ApiResult<AclTokenCreated> {
    let now = now_ms();
    let expires_at = match &req.ttl {
        None => None,
        Some(ttl) => {
            let d = tepui_api::parse_token_ttl(ttl)
                .map_err(|e| Error::new(ErrorKind::Invalid, "invalid_ttl", e).field("ttl"))?;
            Some(now.saturating_add(d.as_millis() as u64))
        }
    };
    let expires_at = node.read(|s| capped_by_caller(s, me.as_deref(), expires_at));
    let (secret, record) = new_token(&req.name, req.policies, false, now, expires_at);
    let view = token_view(&record);
    node.write(Command::AclCreateToken { token: record }).await?;
    tracing::info!(accessor = %view.accessor, name = %view.name, "acl token created");
    Ok(Json(AclTokenCreated { token: view, secret }))
}

async fn revoke_token(State(node): State<Node>, Path(accessor): Path<String>) -> ApiResult<serde_json::Value> {
    node.write(Command::AclRevokeToken {
        accessor: accessor.clone(),
    })
    .await?;
    tracing::info!(%accessor, "acl token revoked");
    Ok(Json(serde_json::json!({ "revoked": accessor })))
}

async fn who_am_i(Extension(me): Extension<Identity>) -> ApiResult<AclWhoAmI> {
    let capabilities = if me.management {
        Capability::ALL.iter().map(|c| c.as_str().to_string()).collect()
    } else {
        me.capabilities.iter().map(|c| c.as_str().to_string()).collect()
    };
    Ok(Json(AclWhoAmI {
        accessor: me.accessor.clone(),
        name: me.name.clone(),
        management: me.management,
        capabilities,
        frameworks: grants_view(&me.frameworks),
    }))
}

/// The token a caller derives from its own: `parent`'s policies (those that still exist) and
/// its management flag, expiring at `now + ttl` or with `parent`, whichever is first.
///
/// A derived token is for a browser (`tepui ui`'s login link): it does what its parent does,
/// as the CLI with the parent would, for a short while. Deriving never widens: no policy the
/// parent lacks, no longer than the parent lives. A derived management token (from the
/// bootstrap token on a laptop) is the one kind that could otherwise outlive itself, by minting
/// tokens; no token may mint an ACL or join token that outlives it (see
/// [`capped_by_caller`]). It records its parent: revoking the parent revokes it.
pub(crate) fn derived_token(
    parent: &AclToken,
    policy_exists: impl Fn(&str) -> bool,
    name: &str,
    ttl: std::time::Duration,
    now: u64,
) -> (String, AclToken) {
    let policies = parent.policies.iter().filter(|p| policy_exists(p)).cloned().collect();
    let until = tepui_api::token_expiry(now, ttl).unwrap_or(u64::MAX);
    let expires_at = parent.expires_at.map_or(until, |p| p.min(until));
    let (secret, mut token) = new_token(name, policies, parent.management, now, Some(expires_at));
    token.parent = Some(parent.accessor.clone());
    (secret, token)
}

/// The expiry a token made by `caller` gets: the one asked for, but never later than the
/// caller's own token's (a short-lived token cannot leave a long-lived one behind).
pub fn capped_by_caller(state: &tepui_state::State, caller: Option<&Identity>, asked: Option<u64>) -> Option<u64> {
    let own = caller
        .and_then(|me| me.accessor.as_ref())
        .and_then(|accessor| state.acl_tokens.get(accessor))
        .and_then(|token| token.expires_at);
    match (asked, own) {
        (Some(asked), Some(own)) => Some(asked.min(own)),
        (None, own) => own,
        (asked, None) => asked,
    }
}

async fn derive_token(
    State(node): State<Node>,
    me: Option<Extension<Identity>>,
    JsonBody(req): JsonBody<AclTokenDeriveRequest>,
) -> Result<(StatusCode, Json<AclTokenCreated>), Error> {
    let Some(Extension(me)) = me else {
        return Err(Denied::no_caller().into());
    };
    let Some(accessor) = me.accessor else {
        return Err(Denied::unauthenticated("only a token can derive a token; this call carries none").into());
    };
    let ttl = match req.ttl.as_deref() {
        None => DEFAULT_DERIVED_TTL,
        Some(text) => {
            let d = tepui_api::parse_token_ttl(text)
                .map_err(|e| Error::new(ErrorKind::Invalid, "invalid_ttl", e).field("ttl"))?;
            if d > MAX_DERIVED_TTL {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    "invalid_ttl",
                    format!(
                        "ttl {text:?} is longer than {}h, the longest a derived token may live",
                        MAX_DERIVED_TTL.as_secs() / 3600
                    ),
                )
                .field("ttl"));
            }
            d
        }
    };
    let name = req
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("derived");
    let now = now_ms();
    let (secret, record) = node.read(|s| {
        let parent = s
            .acl_tokens
            .get(&accessor)
            .ok_or_else(|| Error::from(Denied::unauthenticated("unknown or revoked API token")))?;
        Ok::<_, Error>(derived_token(
            parent,
            |p| s.acl_policies.contains_key(p),
            name,
            ttl,
            now,
        ))
    })?;
    let view = token_view(&record);
    node.write(Command::AclCreateToken { token: record }).await?;
    tracing::info!(accessor = %view.accessor, parent = %accessor, name = %view.name, expires_at_ms = ?view.expires_at_ms, "acl token derived");
    Ok((StatusCode::CREATED, Json(AclTokenCreated { token: view, secret })))
}

async fn set_anonymous(State(node): State<Node>, JsonBody(body): JsonBody<AclAnonymous>) -> ApiResult<AclAnonymous> {
    node.write(Command::AclSetAnonymousRead { enabled: body.read }).await?;
    tracing::info!(read = body.read, "anonymous API access changed");
    Ok(Json(body))
}
