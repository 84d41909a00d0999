use axum::body::Body;
use axum::routing::get;
use tepui_state::{AclPolicy, Command, FrameworkGrant};
use tower::ServiceExt;

use super::*;

fn headers(auth: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
    h
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A state with a management token, a reader, an expired writer, and their secrets.
struct Fixture {
    state: Replicated,
    admin: String,
    reader: String,
    expired: String,
}

fn fixture() -> Fixture {
    let mut state = Replicated::default();
    let (admin, boot) = new_token("bootstrap", vec![], true, 1, None);
    state.apply(1, &Command::AclBootstrap { token: boot });
    for (name, caps) in [
        ("readers", vec![Capability::Read]),
        ("writers", vec![Capability::Write]),
    ] {
        let policy = AclPolicy {
            name: name.into(),
            description: String::new(),
            capabilities: caps.into_iter().collect(),
            frameworks: vec![FrameworkGrant {
                principal: "spark".into(),
                roles: vec!["analytics".into()],
            }],
            modified_at: 1,
        };
        state.apply(2, &Command::AclUpsertPolicy { policy });
    }
    let (reader, r) = new_token("ci", vec!["readers".into()], false, 1, None);
    state.apply(3, &Command::AclCreateToken { token: r });
    let (expired, e) = new_token("old", vec!["writers".into()], false, 1, Some(100));
    state.apply(4, &Command::AclCreateToken { token: e });
    Fixture {
        state,
        admin,
        reader,
        expired,
    }
}

#[test]
fn credentials_come_in_every_form_clients_send() {
    assert_eq!(credential(&HeaderMap::new()), Ok(None));
    assert_eq!(credential(&headers("Bearer abc.def")), Ok(Some("abc.def".into())));
    assert_eq!(credential(&headers("bearer  abc.def ")), Ok(Some("abc.def".into())));
    // Marathon's --http_credentials and a Mesos framework's principal and secret.
    assert_eq!(
        credential(&headers(&basic("marathon", "abc.def"))),
        Ok(Some("abc.def".into()))
    );
    // DC/OS.
    assert_eq!(credential(&headers("token=abc.def")), Ok(Some("abc.def".into())));
    for bad in ["Digest x", "Bearer ", "Basic !!!", &basic("nopassword", ""), "abc.def"] {
        let denied = credential(&headers(bad)).unwrap_err();
        assert_eq!(denied.status, 401, "{bad:?}");
    }
}

/// Headers of a websocket upgrade offering `protocols` (one `Sec-WebSocket-Protocol` value).
fn websocket(protocols: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
    h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocols.parse().unwrap());
    h
}

fn subprotocol(token: &str) -> String {
    format!(
        "bearer.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
    )
}

#[test]
fn a_websocket_upgrade_carries_its_token_as_a_subprotocol() {
    // Characters that differ between base64 and base64url ('+' and '/' there, '-' and '_' here).
    let token = "abc.de~~~f??>";
    let offer = format!("tepui, {}", subprotocol(token));
    assert!(offer.contains('-') || offer.contains('_'), "{offer}");
    assert_eq!(credential(&websocket(&offer)), Ok(Some(token.into())));
    // In its own header line too, and first.
    let mut h = websocket("tepui");
    h.append(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        subprotocol(token).parse().unwrap(),
    );
    assert_eq!(credential(&h), Ok(Some(token.into())));
    // Authorization wins when both are there.
    let mut both = websocket(&offer);
    both.insert(http::header::AUTHORIZATION, "Bearer other.one".parse().unwrap());
    assert_eq!(credential(&both), Ok(Some("other.one".into())));
    // No token entry: no credential; a plain request's subprotocol header is not a credential.
    assert_eq!(credential(&websocket("tepui")), Ok(None));
    let mut plain = websocket(&offer);
    plain.remove(http::header::UPGRADE);
    assert_eq!(credential(&plain), Ok(None));
    // An entry that does not decode is refused.
    for bad in ["bearer.!!!", "bearer.", "tepui, bearer.%%"] {
        assert_eq!(credential(&websocket(bad)).unwrap_err().status, 401, "{bad}");
    }
}

#[test]
fn tokens_grant_what_their_policies_say() {
    let f = fixture();
    let admin = authenticate(&f.state, Some(&f.admin), 50).unwrap();
    assert!(Capability::ALL.iter().all(|c| admin.can(*c)));
    assert!(admin.may_subscribe("anyone", "any-role"));

    let reader = authenticate(&f.state, Some(&f.reader), 50).unwrap();
    assert!(reader.can(Capability::Read));
    assert!(!reader.can(Capability::Write));
    assert_eq!(reader.require(Capability::Exec).unwrap_err().status, 403);
    assert!(reader.may_subscribe("spark", "analytics"));
    assert!(!reader.may_subscribe("spark", "web"));

    // Expired, wrong secret, unknown accessor, no dot: all 401.
    let expired = authenticate(&f.state, Some(&f.expired), 100).unwrap_err();
    assert_eq!(expired.status, 401);
    assert!(expired.message.contains("expired"), "{expired}");
    let (accessor, _) = f.reader.split_once('.').unwrap();
    for bad in [format!("{accessor}.wrong"), "nobody.secret".into(), "nodot".into()] {
        assert_eq!(authenticate(&f.state, Some(&bad), 50).unwrap_err().status, 401, "{bad}");
    }
}

#[test]
fn anonymous_calls_read_only_when_an_operator_allows_it() {
    let mut f = fixture();
    let refused = authenticate(&f.state, None, 1).unwrap_err();
    assert_eq!(refused.status, 401);
    assert!(
        refused.message.contains("api-token"),
        "says where the token is: {refused}"
    );
    f.state.apply(9, &Command::AclSetAnonymousRead { enabled: true });
    let anon = authenticate(&f.state, None, 1).unwrap();
    assert!(anon.can(Capability::Read) && !anon.can(Capability::Write));
}

fn table() -> RouteTable {
    let (_, table) = Routes::<()>::new()
        .route("/health", Policy::public_get(), get(|| async { "ok" }))
        .route(
            "/things",
            Policy::new().get(Capability::Read).post(Capability::Write),
            get(|| async { "list" })
                .post(|| async { "made" })
                .delete(|| async { "oops" }),
        )
        .into_parts();
    table
}

#[test]
fn the_table_gives_each_method_its_need_and_nothing_more() {
    let f = fixture();
    let t = table();
    let none = HeaderMap::new();
    assert_eq!(check(&t, &f.state, "/health", &Method::GET, &none, 1), Ok(None));
    assert_eq!(
        check(&t, &f.state, "/things", &Method::GET, &none, 1)
            .unwrap_err()
            .status,
        401
    );
    let reader = headers(&format!("Bearer {}", f.reader));
    assert!(check(&t, &f.state, "/things", &Method::GET, &reader, 1)
        .unwrap()
        .is_some());
    assert!(check(&t, &f.state, "/things", &Method::HEAD, &reader, 1).is_ok());
    assert_eq!(
        check(&t, &f.state, "/things", &Method::POST, &reader, 1)
            .unwrap_err()
            .status,
        403
    );
    // DELETE is served, but no policy names it: refused even to the management token.
    let admin = headers(&format!("Bearer {}", f.admin));
    let denied = check(&t, &f.state, "/things", &Method::DELETE, &admin, 1).unwrap_err();
    assert_eq!((denied.status, denied.code), (403, "no_policy"));
}

/// The gate in front of a router, walked over the router's own table as the API-wide test
/// does: without a token 401, with one lacking the capability 403, with it through.
#[tokio::test]
async fn the_gate_walks_its_own_table() {
    let f = fixture();
    let (node, _local) = tepui_node::testing::local_node(f.state.clone());
    let (router, table) = Routes::<()>::new()
        .route("/health", Policy::public_get(), get(|| async { "ok" }))
        .route(
            "/things",
            Policy::new().get(Capability::Read).post(Capability::Write),
            get(|| async { "list" }).post(|| async { "made" }),
        )
        .into_parts();
    let table = Arc::new(table);
    let app = router.layer(axum::middleware::from_fn_with_state(
        Gate {
            table: table.clone(),
            node,
            audit: None,
            hostnames: Default::default(),
        },
        enforce,
    ));
    let call = |method: &Method, path: &str, token: Option<&str>| {
        let mut req = http::Request::builder().method(method.clone()).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let mut walked = 0;
    for (path, policy) in table.routes() {
        for (method, need) in policy.methods() {
            walked += 1;
            let status = |r: Response| r.status().as_u16();
            match need {
                Need::Public => assert_eq!(status(call(method, path, None).await.unwrap()), 200),
                Need::Token => unreachable!("no such route here"),
                Need::Cap(cap) => {
                    assert_eq!(status(call(method, path, None).await.unwrap()), 401, "{method} {path}");
                    let lacking = if cap == Capability::Read {
                        None
                    } else {
                        Some(f.reader.as_str())
                    };
                    if let Some(t) = lacking {
                        assert_eq!(
                            status(call(method, path, Some(t)).await.unwrap()),
                            403,
                            "{method} {path}"
                        );
                    }
                    assert_eq!(
                        status(call(method, path, Some(&f.admin)).await.unwrap()),
                        200,
                        "{method} {path}"
                    );
                }
            }
        }
    }
    assert_eq!(walked, 3);
    // A path no route matches goes on to the router's 404.
    assert_eq!(call(&Method::GET, "/nothing", None).await.unwrap().status(), 404);
    // A web page's own DNS name pointed here is refused, even with a good token; the same
    // call forwarded by a server (which checked the Host it got) passes; health answers all.
    let with_host = |path: &str, forwarded: bool| {
        let mut req = http::Request::builder()
            .uri(path)
            .header("host", "evil.example:5050")
            .header("authorization", format!("Bearer {}", f.admin))
            .body(Body::empty())
            .unwrap();
        if forwarded {
            req.extensions_mut().insert(Forwarded);
        }
        app.clone().oneshot(req)
    };
    assert_eq!(with_host("/things", false).await.unwrap().status(), 403);
    assert_eq!(with_host("/things", true).await.unwrap().status(), 200);
    assert_eq!(with_host("/health", false).await.unwrap().status(), 200);
    // A browser's websocket: the token in a subprotocol; a bad one is 401, a weak one 403.
    let upgrade = |token: &str| {
        let req = http::Request::builder()
            .uri("/things")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-protocol", format!("tepui, {}", subprotocol(token)))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req)
    };
    assert_eq!(upgrade(&f.admin).await.unwrap().status(), 200);
    assert_eq!(upgrade(&f.reader).await.unwrap().status(), 200);
    let (accessor, _) = f.reader.split_once('.').unwrap();
    assert_eq!(upgrade(&format!("{accessor}.wrong")).await.unwrap().status(), 401);
}

#[test]
fn what_a_web_page_could_send_is_refused() {
    let with = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    };
    // A form or plain text posted from anywhere: refused; JSON and the dialects' own types pass.
    for ct in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let d = browser_check(&Method::POST, &with(&[("content-type", ct)])).unwrap_err();
        assert_eq!(d.status, 415, "{ct}");
    }
    for ct in ["application/json", "application/x-protobuf", "application/octet-stream"] {
        assert!(
            browser_check(&Method::POST, &with(&[("content-type", ct)])).is_ok(),
            "{ct}"
        );
    }
    assert!(browser_check(&Method::GET, &with(&[("content-type", "text/plain")])).is_ok());
    // Another site's page: refused for changes and websockets; this server's own pages pass.
    let foreign = [("host", "127.0.0.1:5050"), ("origin", "http://evil.example")];
    assert_eq!(browser_check(&Method::DELETE, &with(&foreign)).unwrap_err().status, 403);
    let ws = [
        ("host", "127.0.0.1:5050"),
        ("origin", "http://evil.example"),
        ("upgrade", "websocket"),
    ];
    assert_eq!(browser_check(&Method::GET, &with(&ws)).unwrap_err().status, 403);
    let own = [
        ("host", "127.0.0.1:5050"),
        ("origin", "http://127.0.0.1:5050"),
        ("upgrade", "websocket"),
    ];
    assert!(browser_check(&Method::GET, &with(&own)).is_ok());
    assert!(
        browser_check(&Method::GET, &with(&foreign)).is_ok(),
        "reads are not changes"
    );
}

/// Writes and logs or exec calls are recorded with who made them and the answer, refused
/// ones too; reads are not; no secret reaches the file, which only its owner may read.
#[tokio::test]
async fn the_gate_records_writes_and_output_reads_in_the_audit_log() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path().join("audit.log")).unwrap());
    let (node, _local) = tepui_node::testing::local_node(f.state.clone());
    let (router, table) = Routes::<()>::new()
        .route(
            "/things",
            Policy::new().get(Capability::Read).post(Capability::Write),
            get(|| async { "list" }).post(|| async { "made" }),
        )
        .route(
            "/things/{id}/logs",
            Policy::new().get(Capability::Logs),
            get(|| async { "output" }),
        )
        .into_parts();
    let app = router.layer(axum::middleware::from_fn_with_state(
        Gate {
            table: Arc::new(table),
            node,
            audit: Some(log.clone()),
            hostnames: Default::default(),
        },
        enforce,
    ));
    let call = |method: Method, path: &str, auth: Option<String>| {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(
        call(Method::POST, "/things?secret=x", bearer(&f.admin))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(Method::POST, "/things", bearer(&f.reader)).await.unwrap().status(),
        403
    );
    assert_eq!(call(Method::POST, "/things", None).await.unwrap().status(), 401);
    assert_eq!(
        call(Method::GET, "/things", bearer(&f.admin)).await.unwrap().status(),
        200
    );
    assert_eq!(
        call(Method::GET, "/things/a/logs", bearer(&f.admin))
            .await
            .unwrap()
            .status(),
        200
    );

    let text = std::fs::read_to_string(log.path()).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(String, String, u64, Option<String>)> = records
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
                r["who"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("POST".into(), "/things".into(), 200, Some("bootstrap".into())),
            ("POST".into(), "/things".into(), 403, None),
            ("POST".into(), "/things".into(), 401, None),
            ("GET".into(), "/things/a/logs".into(), 200, Some("bootstrap".into())),
        ],
        "{text}"
    );
    let (reader_accessor, _) = f.reader.split_once('.').unwrap();
    assert_eq!(
        records[1]["accessor"], reader_accessor,
        "a refused known token is named"
    );
    assert!(
        records[1]["refused"].as_str().unwrap().contains("write"),
        "{}",
        records[1]
    );
    assert_eq!(records[2]["accessor"], serde_json::Value::Null);
    assert_eq!(records[3]["route"], "/things/{id}/logs");
    for t in [&f.admin, &f.reader] {
        let (_, secret) = t.split_once('.').unwrap();
        assert!(!text.contains(secret), "a token's secret in the audit log");
    }
    assert!(!text.contains("secret=x"), "query strings are not recorded");
    let mode = std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_host_that_does_not_name_this_cluster_is_refused() {
    let names = HostNames::new(["tepui.example.com."]);
    let nodes = ["s1", "Agent-7"];
    let ok = |h: Option<&str>| host_check(h, &names, nodes.iter().copied()).is_ok();
    for h in [
        "127.0.0.1:5050",
        "10.1.2.3",
        "[::1]:5050",
        "::1",
        "localhost:5050",
        "app.localhost",
        "TEPUI.example.com:5050",
        "s1:5050",
        "agent-7",
    ] {
        assert!(ok(Some(h)), "{h}");
    }
    assert!(ok(None), "no Host: not a browser");
    // A page's own name pointed at this address (DNS rebinding), or a name nobody configured.
    for h in [
        "evil.example:5050",
        "tepui.example.com.evil.example",
        "localhost.evil.example",
        "s1.other",
    ] {
        let d = host_check(Some(h), &names, nodes.iter().copied()).unwrap_err();
        assert_eq!((d.status, d.code), (403, "unknown_host"), "{h}");
        assert!(d.message.contains("--api-hostname"), "{}", d.message);
    }
}

#[test]
fn a_derived_token_never_exceeds_its_parent() {
    let f = fixture();
    let hour = std::time::Duration::from_secs(3600);
    let reader = f.state.acl_tokens.values().find(|t| t.name == "ci").unwrap().clone();
    let exists = |p: &str| f.state.acl_policies.contains_key(p);
    // The parent's policies, no management, expiring after the TTL.
    let (secret, derived) = api::derived_token(&reader, exists, "ui", hour, 1_000);
    assert_eq!(
        (derived.policies.clone(), derived.management, derived.expires_at),
        (vec!["readers".to_string()], false, Some(1_000 + 3_600_000))
    );
    assert!(secret.starts_with(&format!("{}.", derived.accessor)));
    assert_ne!(derived.accessor, reader.accessor);
    // A parent that expires sooner takes its derived token with it.
    let mut short = reader.clone();
    short.expires_at = Some(5_000);
    let (_, d) = api::derived_token(&short, exists, "ui", hour, 1_000);
    assert_eq!(d.expires_at, Some(5_000));
    // A policy deleted since is not carried over (it grants nothing any more).
    let mut stale = reader.clone();
    stale.policies.push("gone".into());
    let (_, d) = api::derived_token(&stale, exists, "ui", hour, 1_000);
    assert_eq!(d.policies, ["readers"]);
    // A management token (the bootstrap one) derives a management token that expires.
    let admin = f.state.acl_tokens.values().find(|t| t.management).unwrap();
    let (_, d) = api::derived_token(admin, exists, "ui", hour, 1_000);
    assert_eq!((d.management, d.expires_at), (true, Some(1_000 + 3_600_000)));
}

/// Revoking a token revokes what was derived from it, and from those: checked at
/// authentication (also where the revocation is not applied yet) and removed by the revocation.
#[test]
fn a_derived_token_ends_with_its_parents_revocation() {
    let f = fixture();
    let hour = std::time::Duration::from_secs(3600);
    let exists = |p: &str| f.state.acl_policies.contains_key(p);
    let reader = f.state.acl_tokens.values().find(|t| t.name == "ci").unwrap().clone();
    let (child_secret, child) = api::derived_token(&reader, exists, "ui", hour, 1_000);
    assert_eq!(child.parent.as_deref(), Some(reader.accessor.as_str()));
    let (grandchild_secret, grandchild) = api::derived_token(&child, exists, "ui2", hour, 1_000);
    let mut state = f.state.clone();
    state.apply(20, &Command::AclCreateToken { token: child.clone() });
    state.apply(
        21,
        &Command::AclCreateToken {
            token: grandchild.clone(),
        },
    );
    assert!(authenticate(&state, Some(&grandchild_secret), 2_000).is_ok());

    // The parent gone from a state that still holds its descendants: refused all the same.
    let mut orphaned = state.clone();
    orphaned.acl_tokens.remove(&reader.accessor);
    for secret in [&child_secret, &grandchild_secret] {
        let denied = authenticate(&orphaned, Some(secret), 2_000).unwrap_err();
        assert_eq!(denied.status, 401);
        assert!(denied.message.contains("revoked or expired"), "{}", denied.message);
    }
    // An expired parent ends them too.
    let mut expired = state.clone();
    expired.acl_tokens.get_mut(&child.accessor).unwrap().expires_at = Some(1_500);
    assert_eq!(
        authenticate(&expired, Some(&grandchild_secret), 2_000)
            .unwrap_err()
            .status,
        401
    );

    // The revocation removes the whole line.
    state.apply(
        22,
        &Command::AclRevokeToken {
            accessor: reader.accessor.clone(),
        },
    );
    for gone in [&reader.accessor, &child.accessor, &grandchild.accessor] {
        assert!(!state.acl_tokens.contains_key(gone), "{gone}");
    }
    assert!(!state.acl_tokens.is_empty(), "the others stay");
}

/// `POST /v1/acl/token/self/derive` through the gate: 201 with the new secret, which reads as
/// its parent does and no more, is replicated as a token, and expires.
#[tokio::test]
async fn a_token_derives_a_short_lived_token_of_its_own_policies() {
    use http_body_util::BodyExt;
    let mut f = fixture();
    // A reader whose own token expires in ten minutes.
    let now = tepui_node::now_ms();
    let (short, record) = new_token("short", vec!["readers".into()], false, now, Some(now + 600_000));
    f.state.apply(10, &Command::AclCreateToken { token: record });
    let (node, _local) = tepui_node::testing::local_node(f.state.clone());
    let (router, table) = api::routes(node.clone()).into_parts();
    let app = router.layer(axum::middleware::from_fn_with_state(
        Gate {
            table: Arc::new(table),
            node: node.clone(),
            audit: None,
            hostnames: Default::default(),
        },
        enforce,
    ));
    let call = |path: &str, token: &str, body: serde_json::Value| {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
        }
    };
    const DERIVE: &str = "/v1/acl/token/self/derive";

    let (status, body) = call(DERIVE, &f.reader, serde_json::json!({"ttl": "1h", "name": "ui login"})).await;
    assert_eq!(status, 201, "{body}");
    let created: tepui_api::AclTokenCreated = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(created.token.name, "ui login");
    assert_eq!(created.token.policies, ["readers"]);
    assert!(!created.token.management);
    let expires = created.token.expires_at_ms.expect("a derived token expires");
    assert!(
        (now + 3_600_000..=tepui_node::now_ms() + 3_600_000).contains(&expires),
        "{body}"
    );
    // Replicated as a token like any other, and it works: reads, writes nothing.
    let state = node.read(|s| s.clone());
    assert!(state.acl_tokens.contains_key(&created.token.accessor));
    let me = authenticate(&state, Some(&created.secret), now).unwrap();
    assert!(me.can(Capability::Read) && !me.can(Capability::Write) && !me.management);
    // And it ends when it says.
    assert_eq!(
        authenticate(&state, Some(&created.secret), expires).unwrap_err().status,
        401
    );

    // Defaults: 15 minutes, named "derived".
    let (status, body) = call(DERIVE, &f.reader, serde_json::json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "derived");
    let expires = body["expires_at_ms"].as_u64().unwrap();
    assert!(
        expires >= now + 900_000 && expires <= tepui_node::now_ms() + 900_000,
        "{body}"
    );

    // Never past the parent: asked for a day, it ends with its ten-minute parent.
    let (status, body) = call(DERIVE, &short, serde_json::json!({"ttl": "24h"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_at_ms"], now + 600_000);

    // A day at most; a TTL that is no duration names the field.
    for ttl in ["25h", "soon", "0s"] {
        let (status, body) = call(DERIVE, &f.reader, serde_json::json!({ "ttl": ttl })).await;
        assert_eq!((status, body["field"].as_str()), (422, Some("ttl")), "{ttl}: {body}");
    }
    // The management token derives a management token that expires, and that one cannot
    // leave a token behind that outlives it; an unknown token is 401.
    let (status, body) = call(DERIVE, &f.admin, serde_json::json!({"ttl": "30m"})).await;
    assert_eq!((status, body["management"].as_bool()), (201, Some(true)), "{body}");
    let short_admin = body["secret"].as_str().unwrap().to_string();
    let admin_expires = body["expires_at_ms"].as_u64().unwrap();
    assert!(admin_expires <= tepui_node::now_ms() + 1_800_000, "{body}");
    for asked in [
        serde_json::json!({"name": "forever"}),
        serde_json::json!({"name": "a year", "ttl": "8760h"}),
    ] {
        let (status, body) = call("/v1/acl/tokens", &short_admin, asked.clone()).await;
        assert_eq!(status, 200, "{asked}: {body}");
        assert_eq!(body["expires_at_ms"].as_u64(), Some(admin_expires), "{asked}: {body}");
    }
    let (status, body) = call(
        "/v1/acl/tokens",
        &short_admin,
        serde_json::json!({"name": "brief", "ttl": "1m"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_at_ms"].as_u64().unwrap() < admin_expires, "{body}");
    let (status, _) = call(DERIVE, "nobody.nothing", serde_json::json!({})).await;
    assert_eq!(status, 401);
    // A derived token derives in turn, within its own life.
    let (status, body) = call(DERIVE, &created.secret, serde_json::json!({"ttl": "2h"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_at_ms"], expires_of(&node, &created.token.accessor));
}

fn expires_of(node: &Node, accessor: &str) -> serde_json::Value {
    node.read(|s| serde_json::json!(s.acl_tokens[accessor].expires_at))
}
