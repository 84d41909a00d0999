//! The web UI: hand-written HTML, CSS and JavaScript modules compiled into the binary, and the
//! public routes that serve them on the API port of every server.
//!
//! It serves static bytes and nothing else. It never reads the cluster's state: every page is
//! drawn in the browser from the public APIs, called with the user's own token (kept in the
//! tab's `sessionStorage`), so the UI can do exactly what that token may and no more. That is
//! why its routes are public (`Policy::public_get`): they carry no data. They are local routes
//! (a follower answers them itself, it never forwards them to the leader).
//!
//! - `GET /` redirects to `/ui/`.
//! - `GET /ui`, `/ui/` and `/ui/{*path}` answer the app shell (`index.html`) for every client
//!   route, so a deep link (`/ui/services/shop/web`) loads the page it names.
//! - `GET /ui/assets/{*file}` answers an asset from the table below, with its content type,
//!   an `ETag` (a hash of its bytes, computed once) and `Cache-Control: no-cache` (the browser
//!   keeps it and asks again with `If-None-Match`, answered 304 while it is unchanged, so an
//!   upgraded binary's files are picked up at once). An unknown name is a 404.
//!
//! Every answer carries a Content-Security-Policy that lets the page load and call only its own
//! server (no inline script or style, no other site), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tepui_auth::{Policy, Routes};

/// What the page may load and call: its own server only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Where the app shell lives; `/` sends browsers here.
pub const HOME: &str = "/ui/";

/// A file compiled into the binary.
struct Asset {
    /// Its path under `/ui/assets/`.
    name: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(Asset { name: $name, bytes: include_bytes!(concat!("../assets/", $name)) }),*]
    };
}

/// Every asset. A test checks this table against the `assets` directory, so a file cannot be
/// added there and forgotten here.
static ASSETS: &[Asset] = assets![
    "app.css",
    "icon.svg",
    "js/api.js",
    "js/app.js",
    "js/dom.js",
    "js/editor.js",
    "js/events.js",
    "js/graph.js",
    "js/logs.js",
    "js/model.js",
    "js/plot.js",
    "js/router.js",
    "js/terminal.js",
    "js/pages/app.js",
    "js/pages/events.js",
    "js/pages/job.js",
    "js/pages/jobs.js",
    "js/pages/login.js",
    "js/pages/metrics.js",
    "js/pages/network.js",
    "js/pages/overview.js",
    "js/pages/services.js",
    "js/pages/task.js",
    "js/pages/tasks.js",
];

/// The app shell, answered for every client route.
static SHELL: &[u8] = include_bytes!("../assets/index.html");

/// The public routes of the UI (see the module's header).
pub fn routes() -> Routes {
    Routes::new()
        .route("/", Policy::public_get(), get(to_home))
        .route("/ui", Policy::public_get(), get(shell))
        .route("/ui/", Policy::public_get(), get(shell))
        .route("/ui/{*path}", Policy::public_get(), get(shell))
        .route("/ui/assets/{*file}", Policy::public_get(), get(asset))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// A strong validator: the first 128 bits of the SHA-256 of the bytes, quoted.
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// The ETags of the shell and of every asset (in [`ASSETS`]' order), hashed on first use.
fn etags() -> &'static (String, Vec<String>) {
    static ETAGS: OnceLock<(String, Vec<String>)> = OnceLock::new();
    ETAGS.get_or_init(|| (etag_of(SHELL), ASSETS.iter().map(|a| etag_of(a.bytes)).collect()))
}

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as for a GET.
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The headers every answer of the UI carries.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn serve(request: &HeaderMap, bytes: &'static [u8], content_type: &'static str, etag: &str) -> Response {
    let mut resp = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(resp)
}

async fn to_home() -> Response {
    secured((StatusCode::SEE_OTHER, [(header::LOCATION, HOME)]).into_response())
}

async fn shell(request: HeaderMap) -> Response {
    serve(&request, SHELL, content_type("index.html"), &etags().0)
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    // Looked up by exact name in the table: no path is ever opened, so `..` finds nothing.
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => serve(&request, ASSETS[i].bytes, content_type(ASSETS[i].name), &etags().1[i]),
        None => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no such asset: {file}\n"),
            )
                .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests;
