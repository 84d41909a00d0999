//! The L7 data plane end to end: real hyper backends on loopback (127.0.60.x, port 0), a
//! gateway serving a table the test changes, clients over HTTP/1.1, HTTP/2, TLS and websockets.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use support::*;
use tepui_gateway::proxy::{BackendHealth, Settings, STICKY_COOKIE};
use tepui_gateway::Balance;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_with_forwarded_headers() {
    let shop = TestBackend::start("shop", ip(2)).await;
    let api = TestBackend::start("api", ip(2)).await;
    let blog = TestBackend::start("blog", ip(3)).await;
    let wild = TestBackend::start("wild", ip(3)).await;
    let internal = TestBackend::start("internal", ip(3)).await;
    let mut internal_route = route("/internal", &["internal.test"], None, vec![internal.backend()]);
    internal_route.group = "internal".to_owned();
    let gw = TestGateway::start(
        settings(ip(1)),
        table(
            vec![
                route("/shop/api", &["shop.test"], Some("/api"), vec![api.backend()]),
                route("/shop/web", &["shop.test", "www.shop.test"], None, vec![shop.backend()]),
                route("/blog", &["blog.test"], None, vec![blog.backend()]),
                route("/wild", &["*.wild.test"], None, vec![wild.backend()]),
                route("/empty", &["empty.test"], None, vec![]),
                internal_route,
            ],
            vec![],
        ),
    )
    .await;
    let addr = gw.http();
    let mut client = Http1::connect(addr).await;

    let cases = [
        ("shop.test", "/", "shop"),
        ("SHOP.test:80", "/cart?x=1", "shop"),
        ("www.shop.test", "/api", "shop"),
        ("shop.test", "/api", "api"),
        ("shop.test", "/api/v1/items", "api"),
        ("shop.test", "/apis", "shop"),
        ("blog.test", "/post/1", "blog"),
        ("a.wild.test", "/", "wild"),
        ("a.b.wild.test", "/", "wild"),
    ];
    for (host, path, expected) in cases {
        let reply = client.get(host, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}{path}: {reply:?}");
        assert_eq!(reply.backend(), expected, "{host}{path}");
        assert_eq!(
            reply.seen("path"),
            Some(path),
            "the path and query go through unchanged"
        );
        assert_eq!(reply.seen("host"), Some(host), "Host as the client sent it");
    }

    // No route: 404 saying for what; the internal group is not served by default.
    for (host, path) in [("nobody.test", "/"), ("wild.test", "/"), ("internal.test", "/")] {
        let reply = client.get(host, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}");
        assert!(
            reply.body.contains("no route") && reply.body.contains(host),
            "{}",
            reply.body
        );
    }

    // A route without backends (none running): 503.
    let reply = client.get("empty.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("no backend for /empty"), "{}", reply.body);

    // Forwarded headers: X-Forwarded-For appended, the others set; hop-by-hop ones dropped.
    let reply = client
        .try_send(request(
            "GET",
            "blog.test:8080",
            "/",
            "",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "spoofed"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "hop"),
                ("proxy-authorization", "Basic eA=="),
            ],
        ))
        .await
        .expect("a response");
    assert_eq!(reply.status, StatusCode::OK);
    let forwarded_for = reply.seen("x-forwarded-for").expect("x-forwarded-for");
    assert!(
        forwarded_for.starts_with("203.0.113.7, 127."),
        "appended: {forwarded_for}"
    );
    assert_eq!(reply.seen("x-forwarded-proto"), Some("http"));
    assert_eq!(reply.seen("x-forwarded-host"), Some("blog.test:8080"));
    assert_eq!(reply.seen("x-forwarded-port"), Some(addr.port().to_string().as_str()));
    assert!(
        !reply.body.contains("x-secret"),
        "a header named by Connection is not passed on"
    );
    assert!(
        reply.headers.get("keep-alive").is_none(),
        "hop-by-hop response headers are dropped"
    );
    assert_eq!(reply.headers.get("x-backend").map(|v| v.as_bytes()), Some(&b"blog"[..]));

    // Large bodies stream both ways.
    let large = "x".repeat(1 << 20);
    let reply = client
        .try_send(request("POST", "blog.test", "/upload", &large, &[]))
        .await
        .expect("a response");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen("body").map(str::len), Some(large.len()));

    // A POST with a body goes through.
    let reply = client
        .try_send(request("POST", "blog.test", "/comments", "hello body", &[]))
        .await
        .expect("a response");
    assert_eq!(reply.seen("method"), Some("POST"));
    assert_eq!(reply.seen("body"), Some("hello body"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_chooses_each_hosts_certificate_by_sni() {
    let ca = TestCa::new();
    let (cert_a, der_a) = ca.certificate(&["a.test"]);
    let (cert_b, der_b) = ca.certificate(&["*.b.test"]);
    let mut broken = ca.certificate(&["broken.test"]).0;
    broken.key_pem = ca.certificate(&["other.test"]).0.key_pem;
    let app_a = TestBackend::start("a", ip(5)).await;
    let app_b = TestBackend::start("b", ip(5)).await;
    let gw = TestGateway::start(
        settings(ip(4)),
        table(
            vec![
                route("/a", &["a.test"], None, vec![app_a.backend()]),
                route("/b", &["*.b.test"], None, vec![app_b.backend()]),
                route("/c", &["c.test"], None, vec![app_b.backend()]),
            ],
            vec![broken, cert_a, cert_b],
        ),
    )
    .await;
    let connector = ca.client(&[b"http/1.1"]);

    for (sni, expected_der, app) in [("a.test", &der_a, "a"), ("api.b.test", &der_b, "b")] {
        let tls = tls_connect(&connector, gw.https(), sni)
            .await
            .expect("the handshake verifies");
        let (_, session) = tls.get_ref();
        let presented = session.peer_certificates().expect("a certificate")[0].clone();
        assert_eq!(&presented, expected_der, "{sni} gets its own certificate");
        let mut client = Http1::over(hyper_util::rt::TokioIo::new(tls)).await;
        let reply = client.get(sni, "/secure").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.backend(), app);
        assert_eq!(reply.seen("x-forwarded-proto"), Some("https"));
        assert_eq!(
            reply.seen("x-forwarded-port"),
            Some(gw.https().port().to_string().as_str())
        );
    }

    // A name no certificate covers gets the self-signed default: this client refuses it.
    assert!(tls_connect(&connector, gw.https(), "c.test").await.is_err());
    assert!(
        tls_connect(&connector, gw.https(), "x.y.b.test").await.is_err(),
        "a wildcard covers one label"
    );

    let routes = gw.gateway.routes();
    let tls_of = |app: &str| routes.iter().find(|r| r.app == app).expect("route").tls;
    assert!(tls_of("/a") && tls_of("/b") && !tls_of("/c"));
    let metrics = gw.gateway.metrics();
    assert_eq!(
        metric(&metrics, "tepui_gateway_certificates_rejected"),
        Some(1.0),
        "{metrics}"
    );
    wait_for("the refused handshakes to be counted", WAIT, || {
        metric(&gw.gateway.metrics(), "tepui_gateway_tls_handshake_failures_total").unwrap_or(0.0) >= 2.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_plain_http_to_https() {
    let ca = TestCa::new();
    let (cert, _) = ca.certificate(&["secure.test"]);
    let app = TestBackend::start("secure", ip(7)).await;
    let mut secure = route("/secure", &["secure.test"], None, vec![app.backend()]);
    secure.redirect_to_https = true;
    let gw = TestGateway::start(settings(ip(6)), table(vec![secure], vec![cert])).await;

    let reply = get(gw.http(), "secure.test", "/login?next=%2Fhome").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    let expected = format!("https://secure.test:{}/login?next=%2Fhome", gw.https().port());
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );
    assert_eq!(app.requests(), 0);

    let tls = tls_connect(&ca.client(&[b"http/1.1"]), gw.https(), "secure.test")
        .await
        .expect("handshake");
    let reply = Http1::over(hyper_util::rt::TokioIo::new(tls))
        .await
        .get("secure.test", "/login")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "secure");
    assert!(gw.gateway.routes()[0].redirect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_relayed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let echo = WsBackend::start(ip(9)).await;
    let gw = TestGateway::start(
        settings(ip(8)),
        table(vec![route("/ws", &["ws.test"], None, vec![echo.backend()])], vec![]),
    )
    .await;
    let stream = tokio::net::TcpStream::connect(gw.http()).await.expect("connects");
    let (mut ws, response) = tokio_tungstenite::client_async("ws://ws.test/chat", stream)
        .await
        .expect("the websocket handshake goes through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..20 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let echoed = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an echo in time")
            .expect("open")
            .expect("a message");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.expect("send");
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message");
    assert_eq!(echoed.into_data().as_ref(), &[0u8, 1, 2, 255]);
    let metrics = gw.gateway.metrics();
    assert_eq!(metric(&metrics, "tepui_gateway_tunnels"), Some(1.0), "{metrics}");
    ws.close(None).await.expect("close");
    // The close handshake ends, then both sides' connections.
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, ws.next()).await.expect("closes in time") {}
    drop(ws);
    wait_for("the tunnel to close", WAIT, || {
        metric(&gw.gateway.metrics(), "tepui_gateway_tunnels") == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_and_cleartext() {
    let ca = TestCa::new();
    let (cert, _) = ca.certificate(&["h2.test"]);
    let app = TestBackend::start("h2app", ip(11)).await;
    let gw = TestGateway::start(
        settings(ip(10)),
        table(vec![route("/h2", &["h2.test"], None, vec![app.backend()])], vec![cert]),
    )
    .await;

    let tls = tls_connect(&ca.client(&[b"h2", b"http/1.1"]), gw.https(), "h2.test")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = http2(hyper_util::rt::TokioIo::new(tls)).await;
    // Several streams at once on one connection.
    let mut replies = Vec::new();
    for i in 0..8 {
        let mut sender = sender.clone();
        replies.push(tokio::spawn(async move {
            http2_get(&mut sender, &format!("https://h2.test/stream/{i}")).await
        }));
    }
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.await.expect("stream task");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.version, Version::HTTP_2);
        assert_eq!(reply.backend(), "h2app");
        assert_eq!(reply.seen("path"), Some(format!("/stream/{i}").as_str()));
        assert_eq!(
            reply.seen("host"),
            Some("h2.test"),
            "the backend gets Host from :authority"
        );
        assert_eq!(reply.seen("x-forwarded-proto"), Some("https"));
    }
    let reply = http2_get(&mut sender, "https://nothing.test/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Cleartext HTTP/2 with prior knowledge.
    let plain = tokio::net::TcpStream::connect(gw.http()).await.expect("connects");
    let mut sender = http2(hyper_util::rt::TokioIo::new(plain)).await;
    let reply = http2_get(&mut sender, "http://h2.test/plain").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.seen("x-forwarded-proto"), Some("http"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_ejected_and_later_restored() {
    let good = TestBackend::start("good", ip(13)).await;
    let flaky = TestBackend::start("flaky", ip(14)).await;
    let flaky_addr = flaky.addr;
    let flaky_backend = flaky.backend();
    flaky.stop().await;
    let gw = TestGateway::start(
        Settings {
            eject_after_failures: 2,
            eject_for: Duration::from_secs(2),
            ..settings(ip(12))
        },
        table(
            vec![route("/app", &["app.test"], None, vec![good.backend(), flaky_backend])],
            vec![],
        ),
    )
    .await;
    let mut client = Http1::connect(gw.http()).await;
    let flaky_state = |gw: &TestGateway| {
        gw.gateway.routes()[0]
            .backends
            .iter()
            .find(|b| b.addr == flaky_addr)
            .cloned()
            .expect("flaky backend listed")
    };

    // Requests that meet the dead backend are retried on the good one: no client sees it.
    let deadline = Instant::now() + WAIT;
    while flaky_state(&gw).state != BackendHealth::Ejected {
        assert!(Instant::now() < deadline, "the dead backend was never ejected");
        let reply = client.get("app.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.backend(), "good");
    }
    let ejected = flaky_state(&gw);
    assert!(ejected.failures >= 2);
    assert!(metric(
        &gw.gateway.metrics(),
        "tepui_gateway_backend_ejections_total{app=\"/app\",port_index=\"0\"}"
    )
    .is_some_and(|n| n >= 1.0));

    // While it is out, it gets no requests.
    for _ in 0..10 {
        assert_eq!(client.get("app.test", "/").await.backend(), "good");
    }
    let later = flaky_state(&gw);
    if later.state == BackendHealth::Ejected && later.retry_in_ms.unwrap_or(0) > 0 {
        assert_eq!(later.requests, ejected.requests, "an ejected backend gets no requests");
    }

    // It comes back: after the ejection one request tries it and lets it in.
    let restarted = TestBackend::start_at("flaky", flaky_addr, None).await;
    let deadline = Instant::now() + WAIT;
    while !(flaky_state(&gw).state == BackendHealth::Up && restarted.requests() >= 2) {
        assert!(
            Instant::now() < deadline,
            "the restored backend never got requests again"
        );
        let reply = client.get("app.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_follow_the_cookie_while_the_backend_is_there() {
    let backends = [
        TestBackend::start("s1", ip(16)).await,
        TestBackend::start("s2", ip(16)).await,
        TestBackend::start("s3", ip(16)).await,
    ];
    let mut sticky = route(
        "/sticky",
        &["sticky.test"],
        None,
        backends.iter().map(|b| b.backend()).collect(),
    );
    sticky.sticky = true;
    let gw = TestGateway::start(settings(ip(15)), table(vec![sticky.clone()], vec![])).await;
    let mut client = Http1::connect(gw.http()).await;

    let first = client.get("sticky.test", "/").await;
    let set_cookie = first
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a sticky cookie")
        .to_owned();
    assert!(set_cookie.starts_with(&format!("{STICKY_COOKIE}=")), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("cookie pair").to_owned();
    let chosen = first.backend().to_owned();

    for _ in 0..9 {
        let reply = client
            .try_send(request(
                "GET",
                "sticky.test",
                "/",
                "",
                &[("cookie", &format!("a=b; {cookie}"))],
            ))
            .await
            .expect("a response");
        assert_eq!(reply.backend(), chosen, "the cookie keeps the client on its backend");
        assert!(
            reply.headers.get("set-cookie").is_none(),
            "no new cookie while it holds"
        );
    }
    // Without the cookie, round robin spreads requests.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(client.get("sticky.test", "/").await.backend().to_owned());
    }
    assert_eq!(seen.len(), 3);

    // The backend goes away: the cookie's requests go elsewhere, with a new cookie.
    sticky
        .backends
        .retain(|b| !b.task_id.starts_with(&format!("{chosen}.")));
    gw.set_table(table(vec![sticky], vec![])).await;
    let reply = client
        .try_send(request("GET", "sticky.test", "/", "", &[("cookie", &cookie)]))
        .await
        .expect("a response");
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(reply.backend(), chosen);
    let renewed = reply
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a new cookie");
    assert!(!renewed.starts_with(&cookie));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_avoids_the_busy_backend() {
    let gate_a = Gate::closed();
    let gate_b = Gate::closed();
    let a = TestBackend::holding("a", ip(18), gate_a.clone()).await;
    let b = TestBackend::holding("b", ip(18), gate_b.clone()).await;
    let mut least = route("/least", &["least.test"], None, vec![a.backend(), b.backend()]);
    least.balance = Balance::LeastRequests;
    let gw = TestGateway::start(settings(ip(17)), table(vec![least], vec![])).await;
    let addr = gw.http();

    // Four held requests, sent one at a time: least outstanding spreads them two and two.
    let mut held = Vec::new();
    for sent in 1..=4u64 {
        held.push(tokio::spawn(async move { get(addr, "least.test", "/held").await }));
        wait_for("the request to reach a backend", WAIT, || {
            a.requests() + b.requests() == sent
        })
        .await;
    }
    assert_eq!((a.requests(), b.requests()), (2, 2));

    // b finishes its two; a still holds two: the next requests all go to b.
    gate_b.open();
    wait_for("b's requests to finish", WAIT, || b.answered() == 2).await;
    for _ in 0..6 {
        let before = b.requests();
        let request = tokio::spawn(async move { get(addr, "least.test", "/next").await });
        wait_for("the request to reach a backend", WAIT, || {
            b.requests() > before || a.requests() > 2
        })
        .await;
        assert_eq!(a.requests(), 2, "a request went to the busy backend");
        let reply = request.await.expect("request task");
        assert_eq!(reply.backend(), "b");
    }
    gate_a.open();
    for request in held {
        assert_eq!(request.await.expect("held request").status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_retried_elsewhere_when_that_is_safe() {
    let alive = TestBackend::start("alive", ip(20)).await;
    let dead = TestBackend::start("dead", ip(21)).await;
    let dead_backend = dead.backend();
    dead.stop().await;
    let hangup = HangupBackend::start(ip(21)).await;
    let gw = TestGateway::start(
        Settings {
            eject_after_failures: 1000,
            ..settings(ip(19))
        },
        table(
            vec![route(
                "/retry",
                &["retry.test"],
                None,
                vec![dead_backend.clone(), alive.backend()],
            )],
            vec![],
        ),
    )
    .await;
    let mut client = Http1::connect(gw.http()).await;

    // A backend that refuses connections got nothing: any request goes to another, body and all.
    for _ in 0..4 {
        let reply = client.get("retry.test", "/").await;
        assert_eq!((reply.status, reply.backend()), (StatusCode::OK, "alive"));
        let reply = client
            .try_send(request("POST", "retry.test", "/", "payload", &[]))
            .await
            .expect("a response");
        assert_eq!((reply.status, reply.backend()), (StatusCode::OK, "alive"));
        assert_eq!(reply.seen("body"), Some("payload"));
    }
    let dead_state = gw.gateway.routes()[0]
        .backends
        .iter()
        .find(|b| b.addr == dead_backend.addr)
        .cloned()
        .expect("dead backend");
    assert!(dead_state.failures >= 2, "{dead_state:?}");
    let retries = metric(
        &gw.gateway.metrics(),
        "tepui_gateway_retries_total{app=\"/retry\",port_index=\"0\"}",
    );
    assert!(retries.is_some_and(|n| n >= 2.0), "{retries:?}");

    // A backend that hangs up after reading the request: a GET is sent again elsewhere; a
    // request with a body was consumed, so it is not.
    gw.set_table(table(
        vec![route(
            "/retry",
            &["retry.test"],
            None,
            vec![hangup.backend(), alive.backend()],
        )],
        vec![],
    ))
    .await;
    for _ in 0..4 {
        let reply = client.get("retry.test", "/").await;
        assert_eq!((reply.status, reply.backend()), (StatusCode::OK, "alive"));
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = client
            .try_send(request("POST", "retry.test", "/", "payload", &[]))
            .await
            .expect("a response");
        if reply.status == StatusCode::BAD_GATEWAY {
            assert!(reply.body.contains("without answering"), "{}", reply.body);
        }
        statuses.push(reply.status);
    }
    assert!(statuses.contains(&StatusCode::BAD_GATEWAY), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");

    // Only dead backends: 502 with a short body, not a hang.
    gw.set_table(table(
        vec![route("/retry", &["retry.test"], None, vec![dead_backend])],
        vec![],
    ))
    .await;
    let reply = client.get("retry.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("cannot connect"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_and_a_replaced_backend_under_load_lose_no_request() {
    let old = TestBackend::start("old", ip(23)).await;
    let new = TestBackend::start("new", ip(24)).await;
    let other = TestBackend::start("other", ip(24)).await;
    let gw = Arc::new(
        TestGateway::start(
            settings(ip(22)),
            table(vec![route("/load", &["load.test"], None, vec![old.backend()])], vec![]),
        )
        .await,
    );
    let addr = gw.http();
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let min_duration = Duration::from_secs(2);
    let hard_stop = started + Duration::from_secs(30);

    let mut loops = Vec::new();
    for worker in 0..8 {
        let succeeded = succeeded.clone();
        let failed = failed.clone();
        let done = done.clone();
        loops.push(tokio::spawn(async move {
            let mut client = Http1::connect(addr).await;
            let mut i = 0u64;
            while !(done.load(SeqCst) && started.elapsed() >= min_duration) && Instant::now() < hard_stop {
                i += 1;
                let path = format!("/w{worker}/{i}");
                match client.try_send(request("GET", "load.test", &path, "", &[])).await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        succeeded.fetch_add(1, SeqCst);
                    }
                    Ok(reply) => {
                        eprintln!("failed request {path}: {} {}", reply.status, reply.body);
                        failed.fetch_add(1, SeqCst);
                    }
                    Err(error) => {
                        eprintln!("failed request {path}: {error}");
                        failed.fetch_add(1, SeqCst);
                        client = Http1::connect(addr).await;
                    }
                }
            }
        }));
    }

    wait_for("load on the old backend", WAIT, || old.answered() >= 200).await;
    // A route is added ahead of it and a backend joins.
    gw.set_table(table(
        vec![
            route("/other", &["other.test"], None, vec![other.backend()]),
            route("/load", &["load.test"], None, vec![old.backend(), new.backend()]),
        ],
        vec![],
    ))
    .await;
    wait_for("load on the new backend", WAIT, || new.answered() >= 100).await;
    // The old backend is replaced, and the route's path changes.
    gw.set_table(table(
        vec![
            route("/other", &["other.test"], None, vec![other.backend()]),
            route("/load", &["load.test"], Some("/"), vec![new.backend()]),
        ],
        vec![],
    ))
    .await;
    let after_switch = new.answered();
    wait_for("the new backend to take the load", WAIT, || {
        new.answered() >= after_switch + 200
    })
    .await;
    let old_served = old.answered();
    old.stop().await;
    let after_stop = new.answered();
    wait_for("more load after the old backend stopped", WAIT, || {
        new.answered() >= after_stop + 100
    })
    .await;
    done.store(true, SeqCst);
    for worker in loops {
        worker.await.expect("load loop");
    }

    let succeeded = succeeded.load(SeqCst);
    let failed = failed.load(SeqCst);
    eprintln!(
        "load: {succeeded} succeeded, {failed} failed in {:?}",
        started.elapsed()
    );
    assert_eq!(failed, 0, "requests failed across table changes");
    assert!(old_served >= 200 && new.answered() >= 400);
    assert_eq!(
        succeeded,
        old_served + new.answered(),
        "every success was answered by a backend"
    );
    assert_eq!(other.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_refused_and_others_served() {
    let app = TestBackend::start("app", ip(26)).await;
    let gw = TestGateway::start(
        Settings {
            max_header_bytes: 16 * 1024,
            ..settings(ip(25))
        },
        table(vec![route("/app", &[], None, vec![app.backend()])], vec![]),
    )
    .await;
    let addr = gw.http();

    let (answer, _) = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: a.test\r\nBroken Header\r\n\r\n", WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let (answer, _) = raw_exchange(addr, b"\x16\x03\x01garbage\r\n\r\n", WAIT).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    let mut huge = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let (answer, _) = raw_exchange(addr, &huge, WAIT).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let mut many = b"GET / HTTP/1.1\r\nHost: a.test\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let (answer, _) = raw_exchange(addr, &many, WAIT).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(app.requests(), 0);

    let reply = get(addr, "a.test", "/fine").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_at_the_header_timeout_while_others_are_served() {
    let app = TestBackend::start("app", ip(28)).await;
    let header_timeout = Duration::from_millis(800);
    let gw = TestGateway::start(
        Settings {
            header_timeout,
            ..settings(ip(27))
        },
        table(vec![route("/app", &[], None, vec![app.backend()])], vec![]),
    )
    .await;
    let addr = gw.http();

    let slow = tokio::spawn(raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Partial: ",
        WAIT,
    ));
    let silent = tokio::spawn(raw_exchange(addr, b"", WAIT));
    let https = gw.https();
    let slow_tls = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(https).await.expect("connects");
        let mut buffer = [0u8; 64];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
        started.elapsed()
    });
    // Others are served meanwhile, on new and kept-alive connections.
    let mut client = Http1::connect(addr).await;
    for _ in 0..5 {
        assert_eq!(client.get("a.test", "/").await.status, StatusCode::OK);
        assert_eq!(get(addr, "a.test", "/").await.status, StatusCode::OK);
    }
    for (what, task) in [("slow", slow), ("silent", silent)] {
        let (answer, took) = task.await.expect("raw client");
        assert!(
            took >= header_timeout - Duration::from_millis(100),
            "{what} cut too early: {took:?}"
        );
        assert!(
            took < header_timeout + Duration::from_secs(5),
            "{what} cut too late: {took:?}"
        );
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{what}: {answer:?}"
        );
    }
    let took = slow_tls.await.expect("tls client");
    assert!(took >= header_timeout - Duration::from_millis(100) && took < header_timeout + Duration::from_secs(5));
    assert_eq!(app.requests(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let gate = Gate::closed();
    let app = TestBackend::holding("app", ip(30), gate.clone()).await;
    let gw = TestGateway::start(
        settings(ip(29)),
        table(vec![route("/app", &[], None, vec![app.backend()])], vec![]),
    )
    .await;
    let addr = gw.http();
    let held = tokio::spawn(async move { get(addr, "a.test", "/slow").await });
    wait_for("the request to reach the backend", WAIT, || app.requests() == 1).await;
    let shutdown = tokio::spawn(gw.gateway.shutdown());
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the gateway kept accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!shutdown.is_finished(), "shutdown waits for the request in flight");
    gate.open();
    let reply = held.await.expect("held request");
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown ends once drained")
        .expect("shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backends_request_in_flight_finishes() {
    let gate = Gate::closed();
    let leaving = TestBackend::holding("leaving", ip(34), gate.clone()).await;
    let staying = TestBackend::start("staying", ip(34)).await;
    let gw = TestGateway::start(
        settings(ip(33)),
        table(
            vec![route("/app", &["app.test"], None, vec![leaving.backend()])],
            vec![],
        ),
    )
    .await;
    let addr = gw.http();
    let held = tokio::spawn(async move { get(addr, "app.test", "/long").await });
    wait_for("the request to reach the backend", WAIT, || leaving.requests() == 1).await;

    gw.set_table(table(
        vec![route("/app", &["app.test"], None, vec![staying.backend()])],
        vec![],
    ))
    .await;
    assert_eq!(get(addr, "app.test", "/next").await.backend(), "staying");
    assert!(!held.is_finished());
    gate.open();
    let reply = held.await.expect("held request");
    assert_eq!((reply.status, reply.backend()), (StatusCode::OK, "leaving"));
}

/// Backend connections are driven by the requests they serve: one the backend closed while it
/// sat idle is replaced without a failed request or a mark against the backend, and bodies
/// larger than any buffer stream both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_closed_while_idle_are_replaced_and_big_bodies_stream() {
    const SIZE: usize = 3 * 1024 * 1024 + 17;
    let backend = OneShotBackend::start(ip(36), SIZE).await;
    let gw = TestGateway::start(
        Settings {
            eject_after_failures: 1,
            workers: 1,
            ..settings(ip(35))
        },
        table(
            vec![route("/big", &["big.test"], None, vec![backend.backend()])],
            vec![],
        ),
    )
    .await;
    let mut client = Http1::connect(gw.http()).await;
    let upload = "y".repeat(2 * 1024 * 1024 + 5);
    // A connection nobody drives would hang a request: each round is bounded.
    for round in 0..6 {
        let reply = tokio::time::timeout(WAIT, client.get("big.test", "/"))
            .await
            .expect("a GET answered in time");
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "round {round}: {}",
            &reply.body[..reply.body.len().min(200)]
        );
        assert_eq!(reply.body.len(), SIZE, "round {round}");
        assert!(reply.body.bytes().all(|b| b == b'x'));
        let reply = tokio::time::timeout(WAIT, client.try_send(request("POST", "big.test", "/", &upload, &[])))
            .await
            .expect("a POST answered in time")
            .expect("a response");
        assert_eq!(reply.status, StatusCode::OK, "round {round}: {}", reply.body);
        assert_eq!(reply.body, format!("received: {}\n", upload.len()));
    }
    // Every request had a connection of its own, found closed in the pool by the next one.
    assert_eq!(backend.connections.load(SeqCst), 12);
    let state = gw.gateway.routes()[0].backends[0].clone();
    assert_eq!(state.failures, 0, "{state:?}");
    assert_eq!(state.state, BackendHealth::Up, "{state:?}");
    assert_eq!(state.requests, 12, "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_metrics_report_the_live_table() {
    let app = TestBackend::start("app", ip(32)).await;
    let mut r = route("/shop", &["shop.test"], Some("/api"), vec![app.backend()]);
    r.balance = Balance::Source;
    r.sticky = true;
    let gw = TestGateway::start(settings(ip(31)), table(vec![r], vec![])).await;
    for _ in 0..3 {
        assert_eq!(get(gw.http(), "shop.test", "/api/x").await.status, StatusCode::OK);
    }
    assert_eq!(
        get(gw.http(), "shop.test", "/other").await.status,
        StatusCode::NOT_FOUND
    );

    let routes = gw.gateway.routes();
    let json = serde_json::to_value(&routes).expect("routes serialize");
    let first = &json[0];
    assert_eq!(first["app"], "/shop");
    assert_eq!(first["hosts"][0], "shop.test");
    assert_eq!(first["path"], "/api");
    assert_eq!(first["balance"], "source");
    assert_eq!(first["sticky"], true);
    assert_eq!(first["tls"], false);
    assert_eq!(first["backends"][0]["state"], "up");
    assert_eq!(first["backends"][0]["requests"], 3);
    assert_eq!(first["backends"][0]["in_flight"], 0);

    let metrics = gw.gateway.metrics();
    let labels = "app=\"/shop\",port_index=\"0\"";
    assert_eq!(
        metric(
            &metrics,
            &format!("tepui_gateway_requests_total{{{labels},class=\"2xx\"}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("tepui_gateway_request_duration_seconds_count{{{labels}}}")
        ),
        Some(3.0)
    );
    assert_eq!(metric(&metrics, "tepui_gateway_unrouted_requests_total"), Some(1.0));
    assert!(metric(&metrics, "tepui_gateway_client_connections_total{listener=\"http\"}").is_some_and(|n| n >= 4.0));
    assert!(metrics.contains("# TYPE tepui_gateway_request_duration_seconds histogram"));
}
