//! HTTP pieces every feature's API uses: the `/v1` rendering of [`Error`], and JSON bodies
//! read with a size limit and parsed with the path of the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tepui_api::ErrorBody;

use crate::{Error, ErrorKind};

/// JSON bodies are small; routes that take more (a snapshot, an image) raise their own limit.
pub const JSON_LIMIT: usize = 1 << 20;
/// How much of an oversized JSON body is read and thrown away before the 413 goes out.
const DRAIN_LIMIT: usize = 64 << 20;

/// `/v1` answers an error as `{code, message, field?}` with the kind's status.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            field: self.field,
        };
        (status, axum::Json(body)).into_response()
    }
}

/// A JSON body, parsed with the path of the field at fault in every error.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Error> {
        let bytes = read_body(req, JSON_LIMIT).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads a body of at most `limit` bytes. An oversized body is read to its end (up to
/// [`DRAIN_LIMIT`]) and thrown away before the 413 goes out: a client that sends without
/// `Expect: 100-continue` is still writing, and closing the connection on it resets it before
/// the client reads the answer.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        // A client waiting for `100 Continue` has sent nothing yet; one that announces more
        // than is worth reading gets its answer now too.
        if req.headers().contains_key(http::header::EXPECT) || len > DRAIN_LIMIT as u64 {
            return Err(too_large());
        }
    }
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                "bad_body",
                format!("cannot read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(buf))
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "invalid_json",
            "the request body is empty; send a JSON object",
        ));
    }
    // Every body is an object; serde would also take a struct's fields from an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Error::new(
                ErrorKind::Invalid,
                "invalid_field",
                "the request body must be a JSON object",
            ),
            Err(e) => Error::new(ErrorKind::BadRequest, "invalid_json", e.to_string()),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner();
        // The path of a missing field is its parent's; name the field itself.
        let text = inner.to_string();
        if let Some(name) = text.strip_prefix("missing field `").and_then(|t| t.split('`').next()) {
            path = if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
        }
        let (kind, code) = match inner.classify() {
            serde_json::error::Category::Data => {
                if text.starts_with("unknown field") {
                    (ErrorKind::Invalid, "unknown_field")
                } else {
                    (ErrorKind::Invalid, "invalid_field")
                }
            }
            _ => (ErrorKind::BadRequest, "invalid_json"),
        };
        let err = Error::new(kind, code, text);
        // "?" stands for a segment the parser had not identified yet: no use to the caller.
        if path == "." || path.split('.').any(|segment| segment == "?") {
            err
        } else {
            err.field(path)
        }
    })
}
