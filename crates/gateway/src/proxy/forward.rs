//! One request's way through the gateway: its route, a redirect to HTTPS, the backend, the
//! headers, the request to the backend (sent once more elsewhere when that is safe), upgrades,
//! then the counters and the access log.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::balance::{choose, sticky_cookie, FailureOutcome, InFlight, Preference};
use super::live::{normalize_host, Live};
use super::metrics::ListenerKind;
use super::pool::{Lent, SendError};
use super::{ConnCtx, Shared};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Headers that describe one connection, not the message: never passed on.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Serves one request of a client connection.
pub(crate) async fn handle(ctx: Arc<ConnCtx>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    if !ctx.received.load(Relaxed) {
        ctx.received.store(true, Relaxed);
    }
    let shared = &*ctx.shared;
    let live = shared.live.load();
    let (parts, body) = request.into_parts();
    let target = Target::of(&parts);
    let host = target.host();
    let method = parts.method.clone();

    let mut app = None;
    let (response, backend) = match live.find(&host, target.path()) {
        None => {
            shared.metrics.unrouted.fetch_add(1, Relaxed);
            let message = format!("no route for host {host:?} and path {:?}\n", target.path());
            (text(StatusCode::NOT_FOUND, message), None)
        }
        Some(index) => {
            let route = &live.routes[index];
            app = Some(route);
            if route.spec.redirect_to_https && ctx.listener.kind == ListenerKind::Http {
                (redirect(shared, &host, &target), None)
            } else {
                let routed = Routed {
                    live: &live,
                    route_index: index,
                    target: &target,
                    host: &host,
                    started,
                };
                proxy(&ctx, routed, parts, body).await
            }
        }
    };

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(route) = app {
        route.metrics.observe(status, elapsed);
    }
    tracing::info!(
        target: "tepui_gateway::access",
        method = %method,
        host = %host,
        path = target.path(),
        status,
        app = app.map_or("", |r| r.spec.app.as_str()),
        backend = %Shown(backend),
        client = %ctx.peer,
        duration_us = elapsed.as_micros() as u64,
    );
    Ok(response)
}

/// Where a request is going, kept apart from the request (which moves on to the backend).
pub(crate) struct Target {
    host: HostSource,
    path_and_query: Option<PathAndQuery>,
}

enum HostSource {
    /// `Host` of an HTTP/1 request.
    Header(HeaderValue),
    /// The URI's authority: HTTP/2's `:authority`, or an absolute-form HTTP/1 request.
    Uri(Authority),
    Missing,
}

impl Target {
    fn of(parts: &Parts) -> Target {
        let host = match (parts.uri.authority(), parts.headers.get(header::HOST)) {
            (Some(authority), _) => HostSource::Uri(authority.clone()),
            (None, Some(value)) => HostSource::Header(value.clone()),
            (None, None) => HostSource::Missing,
        };
        Target {
            host,
            path_and_query: parts.uri.path_and_query().cloned(),
        }
    }

    /// The host routes are matched against (lowercase, no port).
    fn host(&self) -> Cow<'_, str> {
        match &self.host {
            HostSource::Header(value) => normalize_host(value.to_str().unwrap_or("")),
            HostSource::Uri(authority) => normalize_host(authority.host()),
            HostSource::Missing => Cow::Borrowed(""),
        }
    }

    /// The host as the client sent it (with its port), for `X-Forwarded-Host`.
    fn sent_host(&self) -> Option<HeaderValue> {
        match &self.host {
            HostSource::Header(value) => Some(value.clone()),
            HostSource::Uri(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            HostSource::Missing => None,
        }
    }

    fn path(&self) -> &str {
        self.path_and_query.as_ref().map_or("/", |pq| pq.path())
    }

    fn path_and_query(&self) -> &str {
        self.path_and_query.as_ref().map_or("/", |pq| pq.as_str())
    }
}

/// Why an attempt at a backend failed.
enum Failure {
    /// No connection: nothing was sent.
    Connect,
    /// Sent, but the connection ended before a response's head.
    NoResponse,
    /// No response's head within the request timeout.
    Timeout,
    /// The client's request body broke off: not the backend's fault.
    ClientBody,
}

impl Failure {
    fn of_sent(error: &hyper::Error) -> Failure {
        if error.is_user() {
            Failure::ClientBody
        } else {
            Failure::NoResponse
        }
    }

    fn is_backends_fault(&self) -> bool {
        !matches!(self, Failure::ClientBody)
    }

    fn response(&self) -> Response<ProxyBody> {
        match self {
            Failure::Connect => text(StatusCode::BAD_GATEWAY, "bad gateway: cannot connect to a backend\n"),
            Failure::NoResponse => text(
                StatusCode::BAD_GATEWAY,
                "bad gateway: the backend closed without answering\n",
            ),
            Failure::Timeout => text(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout: the backend did not answer in time\n",
            ),
            Failure::ClientBody => text(StatusCode::BAD_REQUEST, "bad request: the request body broke off\n"),
        }
    }
}

/// A request's route, found.
struct Routed<'a> {
    live: &'a Arc<Live>,
    route_index: usize,
    target: &'a Target,
    /// The target's host, normalized.
    host: &'a str,
    /// When the request arrived.
    started: Instant,
}

/// The request to the backends of its route, and the backend that answered (or failed last).
async fn proxy(
    ctx: &ConnCtx,
    routed: Routed<'_>,
    mut parts: Parts,
    body: Incoming,
) -> (Response<ProxyBody>, Option<SocketAddr>) {
    let Routed {
        live,
        route_index,
        target,
        host,
        started,
    } = routed;
    let shared = &*ctx.shared;
    let now_ms = shared.ms_since_epoch(started);
    let client_version = parts.version;
    let upgrade = (client_version == Version::HTTP_11)
        .then(|| upgrade_protocol(&parts.headers))
        .flatten();
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<OnUpgrade>(),
        None => None,
    };
    // Without a body the request can be sent again; with one, the body is streamed once.
    let bodiless = body.is_end_stream();
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );

    let route = &live.routes[route_index];
    // On a sticky route: the backend the client's cookie names (owned: the headers move on).
    let cookie: Option<String> = if route.spec.sticky {
        sticky_cookie(&parts.headers).map(str::to_owned)
    } else {
        None
    };
    let preference = Preference {
        source_hash: ctx.source_hash,
        sticky_id: cookie.as_deref(),
        exclude: None,
    };
    let first = choose(&route.backends, route.spec.balance, &route.next, preference, now_ms);
    let Some(mut pick) = first else {
        let message = format!(
            "no backend for {} (port index {})\n",
            route.spec.app, route.spec.port_index
        );
        return (text(StatusCode::SERVICE_UNAVAILABLE, message), None);
    };

    prepare_request_headers(&mut parts.headers, ctx, target, upgrade.as_ref());
    // The backend gets origin-form (an HTTP/2 request's URI carries scheme and authority).
    let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        parts.uri
    } else {
        match &target.path_and_query {
            Some(path_and_query) => Uri::from(path_and_query.clone()),
            None => Uri::from_static("/"),
        }
    };
    // Sent and then lost, a request without a body can be rebuilt and sent again.
    let mut resend = (bodiless && idempotent).then(|| (parts.method.clone(), uri.clone(), parts.headers.clone()));
    let mut request = Request::new(if bodiless {
        RequestBody::Empty
    } else {
        RequestBody::Client(body)
    });
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers;
    let mut request = Some(request);

    let mut current: Arc<Live> = live.clone();
    let mut current_index = route_index;
    let mut retried = false;
    loop {
        let attempt_route = &current.routes[current_index];
        let backend = attempt_route.backends[pick.index].clone();
        let Some(attempt) = request.take().or_else(|| {
            resend.take().map(|(method, uri, headers)| {
                let mut again = Request::new(RequestBody::Empty);
                *again.method_mut() = method;
                *again.uri_mut() = uri;
                *again.headers_mut() = headers;
                again
            })
        }) else {
            return (text(StatusCode::BAD_GATEWAY, "bad gateway\n"), Some(backend.addr));
        };
        let mut in_flight = InFlight::start(backend.clone(), pick.trial);
        let outcome = tokio::time::timeout(shared.request_timeout, ctx.worker.pool.send(backend.addr, attempt)).await;
        let failure = match outcome {
            Ok(Ok((response, lent))) => {
                if in_flight.succeeded() {
                    tracing::info!(app = %attempt_route.spec.app, backend = %backend.addr, task_id = %backend.task_id, "backend back in rotation");
                }
                let set_cookie = route.spec.sticky && cookie.as_deref() != Some(backend.sticky_id.as_str());
                let response = relay_response(
                    ctx,
                    response,
                    lent,
                    in_flight,
                    client_version,
                    client_upgrade,
                    set_cookie,
                );
                return (response, Some(backend.addr));
            }
            Ok(Err(SendError::Connect(unsent))) => {
                // Nothing went out: the request, body and all, can go elsewhere.
                request = Some(*unsent);
                Failure::Connect
            }
            Ok(Err(SendError::Sent(error))) => {
                tracing::debug!(
                    app = %attempt_route.spec.app,
                    backend = %backend.addr,
                    error = &error as &dyn std::error::Error,
                    "request to a backend failed"
                );
                Failure::of_sent(&error)
            }
            Err(_elapsed) => Failure::Timeout,
        };
        if failure.is_backends_fault() {
            if in_flight.failed(shared.now_ms(), &shared.policy) == FailureOutcome::Ejected {
                attempt_route.metrics.ejections.fetch_add(1, Relaxed);
                tracing::warn!(
                    app = %attempt_route.spec.app,
                    backend = %backend.addr,
                    task_id = %backend.task_id,
                    eject_for_ms = shared.policy.eject_for.as_millis() as u64,
                    "backend ejected after failing"
                );
            }
        } else {
            in_flight.abandoned();
        }
        drop(in_flight);

        let may_retry = !retried
            && match failure {
                Failure::Connect => request.is_some(),
                Failure::NoResponse => resend.is_some(),
                Failure::Timeout | Failure::ClientBody => false,
            };
        if may_retry {
            // The table may have changed since (a backend replaced): the retry follows it.
            let latest = shared.live.load();
            if let Some(index) = latest.find(host, target.path()) {
                let retry_route = &latest.routes[index];
                let preference = Preference {
                    source_hash: ctx.source_hash,
                    sticky_id: None,
                    exclude: Some(&backend),
                };
                let next = choose(
                    &retry_route.backends,
                    retry_route.spec.balance,
                    &retry_route.next,
                    preference,
                    shared.now_ms(),
                );
                if let Some(next) = next {
                    route.metrics.retries.fetch_add(1, Relaxed);
                    pick = next;
                    current_index = index;
                    current = latest;
                    retried = true;
                    continue;
                }
            }
        }
        return (failure.response(), Some(backend.addr));
    }
}

/// The backend's response made into the client's: hop-by-hop headers out, the sticky cookie
/// in, and for a switch of protocols the two upgraded connections joined.
fn relay_response(
    ctx: &ConnCtx,
    response: Response<Incoming>,
    lent: Lent,
    in_flight: InFlight,
    client_version: Version,
    client_upgrade: Option<OnUpgrade>,
    set_cookie: bool,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let protocol = if switching {
        parts.headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut parts.headers);
    if set_cookie {
        parts
            .headers
            .append(header::SET_COOKIE, in_flight.backend.set_cookie.clone());
    }
    parts.version = client_version;
    if !switching {
        return Response::from_parts(parts, ProxyBody::Backend(BackendBody::new(body, lent, in_flight)));
    }
    // The backend connection is the tunnel's now: it does not go back to the pool.
    lent.detach();
    let (Some(client_upgrade), Some(backend_upgrade), Some(protocol)) =
        (client_upgrade, parts.extensions.remove::<OnUpgrade>(), protocol)
    else {
        return text(
            StatusCode::BAD_GATEWAY,
            "bad gateway: the backend switched protocols unasked\n",
        );
    };
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, protocol);
    spawn_tunnel(ctx, client_upgrade, backend_upgrade, in_flight);
    Response::from_parts(parts, ProxyBody::Full(None))
}

/// Relays an upgraded connection (a websocket) both ways until either side closes. The backend
/// counts the tunnel in flight for its whole life; a shutdown waits for it up to its bound.
fn spawn_tunnel(ctx: &ConnCtx, client: OnUpgrade, backend: OnUpgrade, in_flight: InFlight) {
    let shared = ctx.shared.clone();
    let hard_stop = ctx.worker.hard_stop.clone();
    let slot = shared.open_slot();
    tokio::spawn(async move {
        let _slot = slot;
        let _in_flight = in_flight;
        let (client, backend) = match tokio::join!(client, backend) {
            (Ok(client), Ok(backend)) => (client, backend),
            (client, backend) => {
                tracing::debug!(
                    client_ok = client.is_ok(),
                    backend_ok = backend.is_ok(),
                    "an upgrade did not complete on both sides"
                );
                return;
            }
        };
        shared.metrics.tunnels.fetch_add(1, Relaxed);
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => match copied {
                Ok((to_backend, to_client)) => tracing::debug!(to_backend, to_client, "tunnel closed"),
                Err(error) => tracing::debug!(error = &error as &dyn std::error::Error, "tunnel broke off"),
            },
            _ = hard_stop.cancelled() => {}
        }
        shared.metrics.tunnels.fetch_sub(1, Relaxed);
    });
}

/// The protocol a request asks to switch to (`Connection: upgrade` with `Upgrade`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes the hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| *name != header::HOST)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The request's headers as the backend gets them: hop-by-hop ones out, `Host` as the client
/// sent it, and `X-Forwarded-For` (appended), `-Proto`, `-Host` and `-Port`.
fn prepare_request_headers(headers: &mut HeaderMap, ctx: &ConnCtx, target: &Target, upgrade: Option<&HeaderValue>) {
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    let sent_host = target.sent_host();
    if !headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in `:authority`; the backend speaks HTTP/1.1.
        if let Some(host) = &sent_host {
            headers.insert(header::HOST, host.clone());
        }
    }
    let forwarded_for = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined: Vec<u8> = Vec::with_capacity(64);
        for value in headers.get_all(&X_FORWARDED_FOR) {
            joined.extend_from_slice(value.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(ctx.client_ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ctx.client_ip.clone())
    } else {
        ctx.client_ip.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), ctx.listener.proto.clone());
    match sent_host {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.insert(X_FORWARDED_PORT.clone(), ctx.listener.port.clone());
}

/// `301` to the same host and path over HTTPS.
fn redirect(shared: &Shared, host: &str, target: &Target) -> Response<ProxyBody> {
    if host.is_empty() {
        return text(StatusCode::BAD_REQUEST, "bad request: no host\n");
    }
    let port = match shared.https_port {
        Some(port) if port != 443 => format!(":{port}"),
        _ => String::new(),
    };
    let location = format!("https://{host}{port}{}", target.path_and_query());
    match HeaderValue::try_from(location) {
        Ok(location) => {
            let mut response = text(StatusCode::MOVED_PERMANENTLY, "");
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "bad request: the target cannot be redirected\n",
        ),
    }
}

/// A response the gateway writes itself.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let body: Bytes = body.into();
    let mut response = Response::new(ProxyBody::Full((!body.is_empty()).then_some(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A backend's address in the access log, `-` for none.
struct Shown(Option<SocketAddr>);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The body of a request to a backend: the client's, or none (a request that may be resent).
pub(crate) enum RequestBody {
    Client(Incoming),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(body) => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The body of a response to a client: the backend's, or one the gateway wrote.
pub(crate) enum ProxyBody {
    Backend(BackendBody),
    Full(Option<Bytes>),
}

/// A backend's response body: holds its request in flight, and its connection until the body
/// ends, when the connection goes back to the pool (not if the body broke off).
pub(crate) struct BackendBody {
    body: Incoming,
    lent: Option<Lent>,
    _in_flight: InFlight,
}

impl BackendBody {
    fn new(body: Incoming, lent: Lent, in_flight: InFlight) -> BackendBody {
        let mut this = BackendBody {
            body,
            lent: Some(lent),
            _in_flight: in_flight,
        };
        if this.body.is_end_stream() {
            this.ended();
        }
        this
    }

    fn ended(&mut self) {
        if let Some(lent) = self.lent.take() {
            lent.give_back();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Backend(backend) => {
                let mut polled = Pin::new(&mut backend.body).poll_frame(cx);
                if polled.is_pending() {
                    // The body waits on its connection, which only this request drives: move it
                    // on (it reads what the body wants), then look again.
                    if let Some(lent) = backend.lent.as_mut() {
                        lent.drive(cx);
                        polled = Pin::new(&mut backend.body).poll_frame(cx);
                    }
                }
                match &polled {
                    Poll::Ready(None) => backend.ended(),
                    Poll::Ready(Some(Ok(_))) if backend.body.is_end_stream() => backend.ended(),
                    Poll::Ready(Some(Err(_))) => backend.lent = None,
                    _ => {}
                }
                polled
            }
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Backend(backend) => backend.body.is_end_stream(),
            ProxyBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Backend(backend) => backend.body.size_hint(),
            ProxyBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
