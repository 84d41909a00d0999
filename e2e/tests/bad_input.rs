//! Bad input against a real server on 127.0.13.x: malformed, unknown, mistyped, empty and
//! oversized bodies, unknown routes and wrong methods over raw HTTP, and bad join tokens and
//! unreachable addresses on the command line. Every refusal is a 4xx with the JSON error shape
//! or one `error:` line, and the server keeps answering.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tepui_api::{Health, NodeView};
use tepui_e2e::{cluster_addr, http_addr, read_token, tepui, wait_for, Daemon, Output, Sandbox};

/// The HTTP test's server; the CLI test's cluster lives on 127.0.13.11-19.
const SERVER_IP: &str = "127.0.13.1";
const CLI_SERVER_IP: &str = "127.0.13.11";

fn start_server(sb: &Sandbox, ip: &str) -> Daemon {
    let dir = sb.join("s1");
    let mut d = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &dir.display().to_string(),
            "--bind",
            ip,
            "--name",
            "s1",
        ],
    );
    d.wait_ready(Duration::from_secs(20));
    d
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
    text: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} ({}) {}", self.status, self.content_type, self.text)
    }
}

async fn call(http: &reqwest::Client, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
    call_with(http, method, path, body, false).await
}

/// A request; a `chunked` body goes in 64 KB chunks without a length.
async fn call_with(http: &reqwest::Client, method: Method, path: &str, body: Option<Vec<u8>>, chunked: bool) -> Answer {
    let url = format!("http://{}{path}", http_addr(SERVER_IP));
    let mut req = http.request(method.clone(), &url);
    if let Some(body) = body {
        req = req.header("content-type", "application/json");
        req = if chunked {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
            req.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        } else {
            req.body(body)
        };
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e:?}"));
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.expect("a whole body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
        text,
    }
}

/// What a refusal must say about the field at fault.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// Whatever it says (a parse error may point into the document).
    Any,
    /// It names no field.
    None,
    /// It names this path.
    Is(&'static str),
}

/// Checks a refusal: this status and the JSON error shape {code, message, field?} with this
/// code and field.
#[track_caller]
fn refused(a: &Answer, status: u16, code: &str, field: Field) {
    assert_eq!(a.status.as_u16(), status, "{a:?}");
    assert!(a.content_type.starts_with("application/json"), "{a:?}");
    let obj = a.body.as_object().unwrap_or_else(|| panic!("not a JSON object: {a:?}"));
    assert_eq!(obj.get("code").and_then(Value::as_str), Some(code), "{a:?}");
    let message = obj.get("message").and_then(Value::as_str).unwrap_or("");
    assert!(!message.is_empty(), "a message: {a:?}");
    for key in obj.keys() {
        assert!(["code", "message", "field"].contains(&key.as_str()), "{a:?}");
    }
    let named = obj.get("field").map(|f| f.as_str().expect("field is a string"));
    match field {
        Field::Any => {}
        Field::None => assert_eq!(named, None, "{a:?}"),
        Field::Is(path) => assert_eq!(named, Some(path), "{a:?}"),
    }
}

struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
    field: Field,
    chunked: bool,
}

fn case(what: &'static str, method: Method, path: &'static str, body: Option<&[u8]>) -> Case {
    Case {
        what,
        method,
        path,
        body: body.map(<[u8]>::to_vec),
        status: 0,
        code: "",
        field: Field::None,
        chunked: false,
    }
}

impl Case {
    fn expect(mut self, status: u16, code: &'static str, field: Field) -> Case {
        (self.status, self.code, self.field) = (status, code, field);
        self
    }

    fn chunked(mut self) -> Case {
        self.chunked = true;
        self
    }
}

fn bad_requests() -> Vec<Case> {
    use Field::{Any, Is};
    use Method as M;
    const VAR: &str = "/v1/vars/k";
    const TOKENS: &str = "/v1/tokens";
    let mut big = br#"{"value": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend(br#""}"#);
    let long_value = format!(r#"{{"value": "{}"}}"#, "x".repeat(100 << 10));
    let deep = "[".repeat(100_000);
    let deep_value = format!(r#"{{"value": {deep}"#);
    vec![
        // Malformed JSON.
        case("truncated", M::PUT, VAR, Some(br#"{"value": "#)).expect(400, "invalid_json", Any),
        case("trailing comma", M::PUT, VAR, Some(br#"{"value": "v",}"#)).expect(400, "invalid_json", Field::None),
        case("not utf-8", M::PUT, VAR, Some(b"\xff\xfe{}")).expect(400, "invalid_json", Any),
        case("a form", M::POST, TOKENS, Some(b"role=agent")).expect(400, "invalid_json", Any),
        case("nested 100000 deep", M::PUT, VAR, Some(deep.as_bytes())).expect(400, "invalid_json", Any),
        case("value nested deep", M::PUT, VAR, Some(deep_value.as_bytes())).expect(422, "invalid_field", Any),
        // Unknown fields, named by their path.
        case("unknown field", M::PUT, VAR, Some(br#"{"value": "v", "ttl": 5}"#)).expect(
            422,
            "unknown_field",
            Is("ttl"),
        ),
        case(
            "misspelt field",
            M::POST,
            TOKENS,
            Some(br#"{"role": "agent", "rol": "x"}"#),
        )
        .expect(422, "unknown_field", Is("rol")),
        // Wrong types and values, named by their path.
        case("number for string", M::PUT, VAR, Some(br#"{"value": 5}"#)).expect(422, "invalid_field", Is("value")),
        case("string for number", M::PUT, VAR, Some(br#"{"value": "v", "cas": "1"}"#)).expect(
            422,
            "invalid_field",
            Is("cas"),
        ),
        case("negative index", M::PUT, VAR, Some(br#"{"value": "v", "cas": -1}"#)).expect(
            422,
            "invalid_field",
            Is("cas"),
        ),
        case("array for role", M::POST, TOKENS, Some(br#"{"role": ["agent"]}"#)).expect(
            422,
            "invalid_field",
            Is("role"),
        ),
        case("unknown role", M::POST, TOKENS, Some(br#"{"role": "king"}"#)).expect(422, "invalid_field", Is("role")),
        case("bad ttl", M::POST, TOKENS, Some(br#"{"role": "agent", "ttl": "soon"}"#)).expect(
            422,
            "invalid_field",
            Is("ttl"),
        ),
        // Its milliseconds do not fit a u64 once added to now.
        case(
            "ttl too long",
            M::POST,
            TOKENS,
            Some(br#"{"role": "agent", "ttl": "600000000years"}"#),
        )
        .expect(422, "invalid_field", Is("ttl")),
        case("array body", M::PUT, VAR, Some(br#"["v"]"#)).expect(422, "invalid_field", Any),
        case("string body", M::PUT, VAR, Some(br#""v""#)).expect(422, "invalid_field", Any),
        case("missing field", M::PUT, VAR, Some(b"{}")).expect(422, "invalid_field", Is("value")),
        case("bad key", M::PUT, "/v1/vars/bad%20key", Some(br#"{"value": "v"}"#)).expect(
            422,
            "invalid_key",
            Field::None,
        ),
        // Empty bodies.
        case("empty body", M::PUT, VAR, Some(b"")).expect(400, "invalid_json", Any),
        case("blank body", M::POST, TOKENS, Some(b"  \n")).expect(400, "invalid_json", Any),
        case("no body", M::POST, TOKENS, None).expect(400, "invalid_json", Any),
        // Too large: a 2 MB body, and a value over the variable limit in a small body.
        case("2 MB body", M::PUT, VAR, Some(&big)).expect(413, "body_too_large", Field::None),
        case("2 MB chunked body", M::PUT, VAR, Some(&big))
            .expect(413, "body_too_large", Field::None)
            .chunked(),
        case("100 KB value", M::PUT, VAR, Some(long_value.as_bytes())).expect(413, "value_too_large", Is("value")),
        // Unknown routes and wrong methods.
        case("unknown route", M::GET, "/v1/nope", None).expect(404, "not_found", Field::None),
        // `/` is the web UI's; a path no route has:
        case("no such path", M::GET, "/nothing-here", None).expect(404, "not_found", Field::None),
        case("other version", M::GET, "/v2/status", None).expect(404, "not_found", Field::None),
        case("delete status", M::DELETE, "/v1/status", None).expect(405, "method_not_allowed", Field::None),
        case("post health", M::POST, "/v1/health", Some(b"{}")).expect(405, "method_not_allowed", Field::None),
        case("put nodes", M::PUT, "/v1/nodes", Some(b"{}")).expect(405, "method_not_allowed", Field::None),
        // Unknown things.
        case("unknown node", M::GET, "/v1/nodes/nobody", None).expect(404, "unknown_node", Field::None),
        case("unknown var", M::GET, "/v1/vars/missing", None).expect(404, "unknown_var", Field::None),
        case("unknown token", M::DELETE, "/v1/tokens/zzzzzz", None).expect(404, "unknown_token", Field::None),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn http_refuses_bad_requests_and_stays_up() {
    let sb = Sandbox::new("bad-http");
    let mut server = start_server(&sb, SERVER_IP);
    // reqwest's rustls (linked in for registry pulls) needs the process's crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = tepui_e2e::http_client()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    for c in bad_requests() {
        let a = call_with(&http, c.method.clone(), c.path, c.body, c.chunked).await;
        eprintln!("{}: {a:?}", c.what);
        refused(&a, c.status, c.code, c.field);
    }

    // Nothing above was written, and the server is still up and answering.
    assert!(server.is_running(), "the server survived:\n{}", server.stderr_tail(20));
    let a = call(&http, Method::GET, "/v1/health", None).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let health: Health = serde_json::from_value(a.body).expect("a health answer");
    assert_eq!((health.status.as_str(), health.role.as_str()), ("ok", "leader"));
    let a = call(&http, Method::GET, "/v1/vars/k", None).await;
    refused(&a, 404, "unknown_var", Field::None);
    let a = call(&http, Method::PUT, "/v1/vars/k", Some(br#"{"value": "fine"}"#.to_vec())).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
}

/// One `error: ...` line on stderr and a non-zero exit.
#[track_caller]
fn one_error_line(out: &Output) -> &str {
    assert_ne!(out.code, 0, "`{}` must fail:\n{out}", out.command);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "`{}` must print one line:\n{out}", out.command);
    assert!(lines[0].starts_with("error: "), "{out}");
    lines[0]
}

#[test]
fn cli_refuses_bad_tokens_and_unreachable_addresses() {
    let sb = Sandbox::new("bad-cli");
    let _server = start_server(&sb, CLI_SERVER_IP);
    let addr = http_addr(CLI_SERVER_IP);
    let agent_token = read_token(&sb.join("s1"), "agent");
    let server_token = read_token(&sb.join("s1"), "server");
    let join = |token: &str, name: &str, ip: &str| -> Output {
        let dir = sb.join(name).display().to_string();
        tepui(&[
            "join",
            &cluster_addr(CLI_SERVER_IP),
            "--token",
            token,
            "--data-dir",
            &dir,
            "--bind",
            ip,
            "--name",
            name,
        ])
    };

    // Malformed tokens never reach the network.
    for bad in ["garbage", "tepui1.agent.abc.def.ghi", "tepui2.agent.x.y.z", ""] {
        let out = join(bad, "j1", "127.0.13.12");
        let line = one_error_line(&out);
        assert!(line.contains("token"), "{out}");
    }
    let out = join(&agent_token.replace(".agent.", ".pilot."), "j1", "127.0.13.12");
    assert!(one_error_line(&out).contains("unknown role"), "{out}");

    // A well-formed token whose CA hash is not this cluster's: refused before anything is sent.
    for (token, name, ip) in [
        (&agent_token, "j2", "127.0.13.13"),
        (&server_token, "j3", "127.0.13.14"),
    ] {
        let hash = token.split('.').nth(2).expect("a 64-hex CA hash");
        assert_eq!(hash.len(), 64);
        let wrong: String = hash.chars().rev().collect();
        let out = join(&token.replace(hash, &wrong), name, ip);
        let line = one_error_line(&out);
        assert!(line.contains("hash mismatch"), "{out}");
    }
    // A token TTL past what the cluster keeps is refused before anything is sent.
    let out = tepui(&[
        "token",
        "create",
        "--role",
        "agent",
        "--ttl",
        "600000000years",
        "--addr",
        &addr,
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr_lines()
            .iter()
            .any(|l| l.contains("the longest a token may live")),
        "{out}"
    );

    // Nobody was admitted.
    let nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(nodes.len(), 1, "{nodes:?}");

    // A failed join leaves the data dir usable: the same dir joins with the right token.
    let mut j2 = sb.spawn(
        "j2",
        &[
            "join",
            &cluster_addr(CLI_SERVER_IP),
            "--token",
            &agent_token,
            "--data-dir",
            &sb.join("j2").display().to_string(),
            "--bind",
            "127.0.13.13",
            "--name",
            "j2",
        ],
    );
    j2.wait_ready(Duration::from_secs(20));
    wait_for("j2 to be ready", Duration::from_secs(20), || {
        let n: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &addr]).try_json()?;
        if n.iter().any(|n| n.name == "j2" && n.status == "ready") {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    });

    // A join through an address where nothing listens.
    let dir = sb.join("j4").display().to_string();
    let out = tepui(&[
        "join",
        "127.0.13.99:5052",
        "--token",
        &agent_token,
        "--data-dir",
        &dir,
        "--bind",
        "127.0.13.15",
        "--name",
        "j4",
    ]);
    let line = one_error_line(&out);
    assert!(line.contains("127.0.13.99:5052"), "{out}");

    // Client commands against an address where nothing listens.
    for args in [
        vec!["status"],
        vec!["node", "ls"],
        vec!["server", "members", "-o", "json"],
        vec!["var", "put", "k", "v"],
    ] {
        let mut args = args.clone();
        args.extend(["--addr", "127.0.13.99:5050"]);
        let out = tepui(&args);
        let line = one_error_line(&out);
        assert!(line.contains("127.0.13.99:5050"), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
    }

    // Client commands the server refuses: one line with the reason.
    let out = tepui(&["var", "get", "missing", "--addr", &addr]);
    assert!(one_error_line(&out).contains("unknown_var"), "{out}");
    let out = tepui(&["token", "create", "--role", "king", "--addr", &addr]);
    assert!(one_error_line(&out).contains("role"), "{out}");
    let out = tepui(&["var", "put", "bad key", "v", "--addr", &addr]);
    assert!(one_error_line(&out).contains("invalid_key"), "{out}");
    let missing = sb.join("no-such.snap").display().to_string();
    let out = tepui(&["operator", "snapshot", "restore", &missing, "--addr", &addr]);
    assert!(one_error_line(&out).contains("cannot read"), "{out}");

    // Durations a daemon cannot use are refused by the argument parser, not by a panic.
    for (flag, value) in [
        ("--agent-timeout-secs", "-1"),
        ("--agent-timeout-secs", "nan"),
        ("--heartbeat-secs", "inf"),
    ] {
        let dir = sb.join("never").display().to_string();
        let out = tepui(&[
            "server",
            "--data-dir",
            &dir,
            "--bind",
            "127.0.13.16",
            &format!("{flag}={value}"),
        ]);
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.starts_with("error: invalid value"), "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }

    let status = tepui(&["status", "--addr", &addr]).ok();
    assert!(status.stdout.contains("leader:"), "{status}");
}
