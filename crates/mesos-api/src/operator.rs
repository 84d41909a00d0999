//! The Mesos operator endpoints: the legacy JSON (`/master/state`, `/master/state-summary`,
//! `/master/tasks`, `/master/frameworks`, `/master/slaves`, `/master/roles`), `/metrics/snapshot`
//! and the v1 operator API (`POST /api/v1`, JSON, with its SUBSCRIBE event stream); and tepui's
//! own `/v1/frameworks` and `/v1/roles` that the CLI uses.
//!
//! What they show comes from the replicated state (agents, tasks, frameworks, roles,
//! reservations); the leader's allocator adds only what lives in its memory, the outstanding
//! offers. Every endpoint but `/metrics/snapshot` runs on the leader (a follower forwards the
//! request and relays the answer, streams included); `/metrics/snapshot` is answered by the
//! server asked, from its own copy of the state, so that `master/elected` says whether that
//! server leads.
//!
//! How tepui maps onto Mesos' words:
//! - An agent is a node that runs one; its id is the node id in decimal, its hostname the node's
//!   name. Registered agents (`slaves`) are those not lost; lost ones count as unreachable.
//!   `active` means ready and in no maintenance.
//! - Tasks run with `tepui task run` (empty framework id) belong to the framework `tepui`
//!   (`tepui-tasks`, user root, role `*`), listed while the state holds any of its tasks.
//! - A removed framework whose tasks the state still holds is a completed framework; only its
//!   id is known by then.
//! - Mesos' version is reported as [`wire::MESOS_VERSION`], the API level tepui speaks;
//!   tepui's own version travels in `git_tag`.
//!
//! Refusals of the Mesos endpoints are a status and a plain-text message, as Mesos answers;
//! the `/v1` ones are tepui's `{code, message, field}`.

mod cli;
mod events;
mod legacy;
mod metrics;
pub(crate) mod model;
mod v1;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::Method;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Extension;
use tepui_auth::{Cap, Policy, Routes};

use tepui_master::Master;
use tepui_node::{Error, ErrorKind, WriteError};

pub use events::MAX_SUBSCRIBERS as MAX_OPERATOR_SUBSCRIBERS;

/// What the handlers know of this server beyond its master.
struct Ctx {
    started: Instant,
    /// Unix ms.
    started_ms: u64,
    /// The operator API's SUBSCRIBE streams.
    events: Arc<events::Hub>,
}

/// The endpoints that run on the leader: merged behind the forwarding middleware.
pub(crate) fn routes(master: Master) -> Routes {
    let ctx = Arc::new(Ctx {
        started: Instant::now(),
        started_ms: master.node().info().started_at,
        events: Arc::default(),
    });
    Routes::new()
        .route("/master/state", Policy::new().get(Cap::Read), get(legacy::state))
        .route("/master/state.json", Policy::new().get(Cap::Read), get(legacy::state))
        .route("/state", Policy::new().get(Cap::Read), get(legacy::state))
        .route("/state.json", Policy::new().get(Cap::Read), get(legacy::state))
        .route(
            "/master/state-summary",
            Policy::new().get(Cap::Read),
            get(legacy::state_summary),
        )
        .route("/master/tasks", Policy::new().get(Cap::Read), get(legacy::tasks))
        .route(
            "/master/frameworks",
            Policy::new().get(Cap::Read),
            get(legacy::frameworks),
        )
        .route("/master/slaves", Policy::new().get(Cap::Read), get(legacy::slaves))
        .route("/master/roles", Policy::new().get(Cap::Read), get(legacy::roles))
        .route("/api/v1", Policy::new().token(Method::POST), post(v1::call))
        .route("/v1/frameworks", Policy::new().get(Cap::Read), get(cli::frameworks))
        .route(
            "/v1/frameworks/{id}",
            Policy::new().get(Cap::Read).delete(Cap::Operator),
            get(cli::framework).delete(cli::teardown),
        )
        .route("/v1/roles", Policy::new().get(Cap::Read), get(cli::roles))
        .route(
            "/v1/roles/{role}/quota",
            Policy::new().put(Cap::Operator),
            put(cli::set_quota),
        )
        .route(
            "/v1/roles/{role}/weight",
            Policy::new().put(Cap::Operator),
            put(cli::set_weight),
        )
        .map_router(|r| r.layer(Extension(ctx)))
        .with_state(master)
}

/// The endpoints every server answers itself: merged outside the forwarding middleware.
pub(crate) fn local_routes(master: Master) -> Routes {
    let started = Instant::now();
    Routes::new()
        .route(
            "/metrics/snapshot",
            Policy::new().get(Cap::Read),
            get(move |m: State<Master>| metrics::snapshot(m, started)),
        )
        .with_state(master)
}

/// An error in the Mesos dialect: a status and a plain-text message, as Mesos answers. Every
/// domain [`Error`] renders into one; the rest are refusals of Mesos' own shapes.
#[derive(Debug)]
pub struct MesosError {
    status: StatusCode,
    message: String,
}

impl MesosError {
    fn new(status: StatusCode, message: impl Into<String>) -> MesosError {
        MesosError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> MesosError {
        MesosError::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The status Mesos answers an error of this kind with: it has no 422.
pub fn mesos_status(kind: ErrorKind) -> StatusCode {
    let code = match kind {
        ErrorKind::Invalid => 400,
        other => other.status(),
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A plain-text answer, as Mesos gives.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        message.into(),
    )
        .into_response()
}

impl IntoResponse for MesosError {
    fn into_response(self) -> Response {
        text(self.status, self.message)
    }
}

impl From<Error> for MesosError {
    fn from(e: Error) -> MesosError {
        MesosError::new(mesos_status(e.kind), e.message)
    }
}

impl From<WriteError> for MesosError {
    fn from(e: WriteError) -> MesosError {
        Error::from(e).into()
    }
}
