//! `POST /api/v1/executor` on the agent's HTTP port: Mesos' v1 executor API, JSON only.
//!
//! SUBSCRIBE answers with the executor's event stream (RecordIO, `application/json`); UPDATE
//! and MESSAGE answer 202. Refusals are a status and a plain-text message, in Mesos' words
//! where Mesos has them: a body that is not a call is 400, a call for a framework or an
//! executor this agent does not run is 400 (`Framework cannot be found`, `Executor cannot be
//! found`), a call without the executor's token is 401. The token is the one the agent gave
//! the executor in `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, sent as `Authorization: Bearer`.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tepui_mesos::executor::{Call, CallType};

use crate::tasks::{next_event, Refusal, TaskManager};

fn text(status: StatusCode, message: impl Into<String>) -> Response {
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

fn refused(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    text(status, r.message)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the `Accept` header lets the stream be JSON (no header: anything goes).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t == "application/json" || t == "application/*" || t == "*/*"
    })
}

pub(crate) async fn executor(tasks: TaskManager, headers: HeaderMap, body: Bytes) -> Response {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return text(StatusCode::BAD_REQUEST, "Expecting 'Content-Type' to be present");
    };
    if !content_type.starts_with("application/json") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expecting 'Content-Type' of application/json (tepui takes no protobuf); got {content_type:?}"),
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let call: Call = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to convert JSON into Call protobuf: {} (at {path})", e.inner()),
            );
        }
    };
    if let Err(e) = call.validate() {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate Executor::Call: {e}"),
        );
    }
    let token = bearer(&headers);
    match call.kind {
        CallType::Subscribe => {
            if !accepts_json(&headers) {
                return text(
                    StatusCode::NOT_ACCEPTABLE,
                    "Expecting 'Accept' to allow 'application/json'",
                );
            }
            match tasks.executor_subscribe(call, token) {
                Ok(sub) => stream(sub),
                Err(r) => refused(r),
            }
        }
        CallType::Update => match tasks.executor_update(&call, token) {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(r) => refused(r),
        },
        CallType::Message => match tasks.executor_message(&call, token, tepui_common::MAX_FRAMEWORK_MESSAGE) {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(r) => refused(r),
        },
        // Mesos answers HEARTBEAT without looking further.
        CallType::Heartbeat => StatusCode::ACCEPTED.into_response(),
        CallType::Unknown(_) => text(StatusCode::NOT_IMPLEMENTED, "unknown call type"),
    }
}

/// The subscription as a RecordIO body; the guard goes with the body, so a connection that
/// closes ends the subscription.
fn stream(sub: crate::tasks::Subscription) -> Response {
    let crate::tasks::Subscription { events, guard } = sub;
    let body = futures::stream::unfold((events, guard), |(mut events, guard)| async move {
        let event = next_event(&mut events).await?;
        let bytes = tepui_mesos::recordio::encode_json(&event).map(Bytes::from);
        Some((bytes, (events, guard)))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
