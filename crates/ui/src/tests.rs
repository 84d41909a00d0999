use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

async fn call(method: Method, path: &str, headers: &[(header::HeaderName, &str)]) -> Answer {
    let (router, _) = routes().into_parts();
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

async fn get(path: &str) -> Answer {
    call(Method::GET, path, &[]).await
}

fn assert_secured(a: &Answer, what: &str) {
    assert_eq!(
        a.header(header::CONTENT_SECURITY_POLICY),
        CONTENT_SECURITY_POLICY,
        "{what}"
    );
    assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
    assert_eq!(a.header(header::REFERRER_POLICY), "no-referrer", "{what}");
}

#[tokio::test]
async fn the_root_sends_browsers_to_the_ui() {
    let a = get("/").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header(header::LOCATION), "/ui/");
    assert_secured(&a, "/");
}

#[tokio::test]
async fn every_client_route_gets_the_shell() {
    for path in [
        "/ui",
        "/ui/",
        "/ui/login",
        "/ui/services",
        "/ui/services/_new",
        "/ui/services/new",
        "/ui/services/shop/web",
        "/ui/jobs/nightly.backup",
        "/ui/tasks/shop_web.0a1b",
        "/ui/metrics",
        "/ui/assets",
    ] {
        let a = get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.header(header::CONTENT_TYPE), "text/html; charset=utf-8", "{path}");
        assert_eq!(a.body, SHELL, "{path}");
        assert!(!a.header(header::ETAG).is_empty(), "{path}");
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache", "{path}");
        assert_secured(&a, path);
    }
}

#[tokio::test]
async fn assets_have_their_types_and_validators() {
    for (path, ty) in [
        ("/ui/assets/app.css", "text/css; charset=utf-8"),
        ("/ui/assets/js/app.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/js/pages/overview.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/icon.svg", "image/svg+xml"),
    ] {
        let a = get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.header(header::CONTENT_TYPE), ty, "{path}");
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache", "{path}");
        assert_secured(&a, path);
        let etag = a.header(header::ETAG).to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
            "{path}: {etag}"
        );
        assert_eq!(etag, etag_of(&a.body), "{path}: the ETag is the body's hash");

        // The browser asks again with what it holds: 304 and no body while it is unchanged.
        for held in [etag.as_str(), &format!("W/{etag}"), &format!("\"other\", {etag}"), "*"] {
            let again = call(Method::GET, path, &[(header::IF_NONE_MATCH, held)]).await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path} with {held}");
            assert!(again.body.is_empty());
            assert_eq!(again.header(header::ETAG), etag);
            assert_secured(&again, path);
        }
        let stale = call(Method::GET, path, &[(header::IF_NONE_MATCH, "\"stale\"")]).await;
        assert_eq!(stale.status, StatusCode::OK);
        assert_eq!(stale.body, a.body);
    }
    // HEAD answers the headers only.
    let head = call(Method::HEAD, "/ui/assets/app.css", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header(header::CONTENT_TYPE), "text/css; charset=utf-8");
}

#[tokio::test]
async fn unknown_assets_are_not_found() {
    for path in [
        "/ui/assets/nope.js",
        "/ui/assets/js/../app.css",
        "/ui/assets/%2e%2e/src/lib.rs",
        "/ui/assets/js/",
        "/ui/assets/index.html.bak",
    ] {
        let a = get(path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_secured(&a, path);
    }
}

#[test]
fn the_asset_table_is_the_assets_directory() {
    fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else if name != "index.html" {
                out.push(name);
            }
        }
    }
    let mut on_disk = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
        "",
        &mut on_disk,
    );
    on_disk.sort();
    let mut table: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
    table.sort();
    assert_eq!(table, on_disk);
}

/// Every module a script imports, and every asset the shell names, is in the table: a typo
/// would only show as a blank page in a browser.
#[test]
fn references_between_assets_resolve() {
    let known = |name: &str| ASSETS.iter().any(|a| a.name == name);
    let shell = std::str::from_utf8(SHELL).unwrap();
    let mut named = 0;
    for part in shell.split("/ui/assets/").skip(1) {
        let name: String = part.chars().take_while(|c| !matches!(c, '"' | '\'')).collect();
        assert!(known(&name), "index.html names {name}, which is no asset");
        named += 1;
    }
    assert!(named >= 2, "the shell loads its style and its script");
    let mut imported = 0;
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let text = std::str::from_utf8(a.bytes).unwrap();
        let dir = a.name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        // Import statements, one a line (`import {a} from './x.js';`, `import * as p from ...`).
        let imports = text
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("} from "))
            .filter_map(|l| l.rsplit_once(" from ").map(|(_, spec)| spec));
        for spec in imports {
            let spec: String = spec
                .trim_start_matches(['\'', '"'])
                .chars()
                .take_while(|c| !matches!(c, '\'' | '"'))
                .collect();
            let mut path: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
            for seg in spec.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        path.pop();
                    }
                    s => path.push(s),
                }
            }
            let resolved = path.join("/");
            assert!(
                known(&resolved),
                "{} imports {spec} ({resolved}), which is no asset",
                a.name
            );
            imported += 1;
        }
    }
    assert!(
        imported > 30,
        "only {imported} imports found: is the check reading them?"
    );
}

/// The pages build their DOM from data with `textContent` and `createElement`, never by
/// parsing HTML, so what an API answers (an app id, a log line) cannot become markup.
#[test]
fn no_script_parses_html() {
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let text = std::str::from_utf8(a.bytes).unwrap();
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!text.contains(bad), "{} uses {bad}", a.name);
        }
    }
}

/// The UI's routes carry no data: the same bytes whoever asks, with or without a token, and
/// nothing but what was compiled in.
#[tokio::test]
async fn ui_routes_answer_static_bytes_only() {
    let (_, table) = routes().into_parts();
    let patterns: Vec<String> = table.routes().iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(patterns, ["/", "/ui", "/ui/", "/ui/assets/{*file}", "/ui/{*path}"]);
    for (pattern, policy) in table.routes() {
        let methods: Vec<_> = policy.methods().collect();
        assert_eq!(
            methods,
            [(&Method::GET, tepui_auth::Need::Public)],
            "{pattern} is a public GET and nothing else"
        );
        let path = pattern.replace("{*file}", "js/app.js").replace("{*path}", "services/x");
        let anonymous = get(&path).await;
        let with_token = call(
            Method::GET,
            &path,
            &[
                (header::AUTHORIZATION, "Bearer abcdefgh.0123456789"),
                (header::COOKIE, "session=1"),
            ],
        )
        .await;
        assert_eq!(anonymous.status, with_token.status, "{path}");
        assert_eq!(anonymous.body, with_token.body, "{path}");
        let compiled_in = anonymous.body.is_empty()
            || anonymous.body == SHELL
            || ASSETS.iter().any(|a| a.bytes == anonymous.body.as_slice());
        assert!(compiled_in, "{path} answers bytes that were not compiled in");
    }
    // Nothing but GET (and HEAD) is served.
    let post = call(Method::POST, "/ui/services", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}
