//! The server side of the web UI, through the real binary: `tepui dev` on 127.0.71.1 runs a
//! host task, and a browser's calls reach it. A websocket exec whose token travels only as a
//! `bearer.` subprotocol (and the server answering `tepui`); a bad one is 401. The task's
//! sandbox files through `tepui task files|cat` and the API, confined to the sandbox. The
//! metrics history. `tepui ui`'s login link, whose token works and is no more than its parent.
//!
//! Runs on 127.0.71.1 with ports 37100-37119 and the bridge `tpe2e-uisrv`; needs root
//! (e2e/setup.sh).

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use tepui_api::{FileInfo, TaskView};
use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, wait_for, Sandbox, API_TOKEN};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const IP: &str = "127.0.71.1";
const PORTS: &str = "37100-37119";
const BRIDGE: (&str, &str) = ("tpe2e-uisrv", "10.214.71.0/24");
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(30);
/// The task: files in its sandbox (a directory, a link inside it and one leading out), then
/// a line on stdout once they are there.
const SCRIPT: &str = "mkdir -p logs && printf 'hello, sandbox\\n' > logs/app.log && ln -s /etc/passwd escape \
                      && ln -s logs/app.log inside && echo started && exec sleep 600";

fn show(addr: &str, id: &str) -> Result<TaskView, String> {
    tepui(&["task", "show", id, "-o", "json", "--addr", addr]).try_json()
}

/// Waits until task `id` runs, failing at once if it ends.
fn wait_running(addr: &str, id: &str) -> TaskView {
    wait_for(&format!("task {id} to run"), SETTLE, || {
        let t = show(addr, id)?;
        match t.state.as_str() {
            "TASK_RUNNING" => Ok(t),
            "TASK_STAGING" | "TASK_STARTING" => Err(format!("{} ({})", t.state, t.message)),
            _ => panic!("task {id} did not run: {t:?}"),
        }
    })
}

/// Kills the task when the test ends, however it ends, while the daemon is still up: its shim
/// would outlive the daemon. Declare it after the daemon, so it drops first.
struct KillTask<'a> {
    addr: &'a str,
    id: String,
}

impl Drop for KillTask<'_> {
    fn drop(&mut self) {
        let _ = tepui(&["task", "kill", &self.id, "--addr", self.addr]);
        let _ = wait_ended(self.addr, &self.id);
    }
}

fn wait_ended(addr: &str, id: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + SETTLE;
    while std::time::Instant::now() < deadline {
        match show(addr, id) {
            Ok(t)
                if !matches!(
                    t.state.as_str(),
                    "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING"
                ) =>
            {
                return Ok(())
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(format!("task {id} did not end"))
}

/// A browser's `new WebSocket(url, ["tepui", "bearer." + base64url(token)])`.
fn browser_request(addr: &str, task: &str, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = reqwest::Url::parse_with_params(
        &format!("ws://{addr}/v1/tasks/{task}/exec/ws"),
        &[("cmd", r#"["sh"]"#), ("tty", "false")],
    )
    .expect("a valid url");
    let mut request = url.as_str().into_client_request().expect("a websocket request");
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("tepui, bearer.{encoded}").parse().expect("a header value"),
    );
    request
}

/// Runs `input` through `sh` over the exec websocket with the token only in the subprotocol:
/// (the protocol the server chose, stdout, the final text frame).
async fn exec_over_websocket(addr: &str, task: &str, token: &str, input: &str) -> (String, String, String) {
    let (socket, response) = tokio_tungstenite::connect_async(browser_request(addr, task, token))
        .await
        .unwrap_or_else(|e| panic!("the websocket opens: {e}"));
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (mut to_server, mut from_server) = socket.split();
    to_server
        .send(Message::Binary(input.as_bytes().to_vec().into()))
        .await
        .expect("stdin goes");
    to_server.send(Message::Text("eof".into())).await.expect("eof goes");
    let mut stdout = Vec::new();
    let last = tokio::time::timeout(SETTLE, async {
        while let Some(frame) = from_server.next().await {
            match frame.expect("a frame") {
                Message::Binary(b) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
                Message::Text(t) => return t.to_string(),
                _ => {}
            }
        }
        panic!("the session ended without its exit code");
    })
    .await
    .expect("the exec ends in time");
    (chosen, String::from_utf8_lossy(&stdout).into_owned(), last)
}

/// `GET url`: the status and the JSON answer.
fn get_json(runtime: &tokio::runtime::Runtime, http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    runtime.block_on(async {
        let resp = http.get(url).send().await.expect("the server answers");
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap_or_default())
    })
}

/// [`get_json`] with `token` as the caller.
fn get_json_as(runtime: &tokio::runtime::Runtime, url: &str, token: &str) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    runtime.block_on(async {
        let resp = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap_or_default())
    })
}

/// The token of the login link `tepui ui` printed: `Open http://ADDR/ui/login#token=T (valid
/// until TIME)`.
fn link_token(printed: &str, addr: &str) -> String {
    let prefix = format!("Open http://{addr}/ui/login#token=");
    let line = printed
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no login link printed: {printed:?}"));
    let (token, until) = line[prefix.len()..].split_once(' ').unwrap_or_else(|| panic!("{line}"));
    assert!(until.starts_with("(valid until ") && until.ends_with(')'), "{line}");
    token.to_string()
}

#[test]
fn the_servers_answer_what_the_web_ui_asks() {
    need_root();
    let sb = Sandbox::new("ui-server");
    let (_dev, _data) = spawn_dev(&sb, "uisrv", IP, PORTS, BRIDGE, START);
    let addr = http_addr(IP);
    let task: TaskView = tepui(&[
        "task",
        "run",
        "--host",
        "--mem",
        "32",
        "--kill-grace",
        "1",
        "-o",
        "json",
        "--addr",
        &addr,
        "--",
        "/bin/sh",
        "-c",
        SCRIPT,
    ])
    .ok()
    .json();
    let _kill = KillTask {
        addr: &addr,
        id: task.id.clone(),
    };
    wait_running(&addr, &task.id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    // 1. The exec websocket, its token only in the subprotocol, as a browser sends it.
    let (chosen, stdout, last) =
        runtime.block_on(exec_over_websocket(&addr, &task.id, API_TOKEN, "echo ws $((40+2))\n"));
    assert_eq!(chosen, "tepui", "the server picks the tepui subprotocol");
    assert_eq!(stdout, "ws 42\n");
    assert_eq!(last, r#"{"exit_code":0}"#);
    let bad = runtime.block_on(tokio_tungstenite::connect_async(browser_request(
        &addr,
        &task.id,
        "e2e-test-accessor.not-the-secret",
    )));
    match bad {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("a bad token opens no websocket: {other:?}"),
    }

    // 3. The sandbox's files, through the CLI and the API.
    wait_for("the task's files", SETTLE, || {
        let out = tepui(&["task", "cat", &task.id, "stdout", "--addr", &addr]);
        if out.stdout == "started\n" {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
    let root: Vec<FileInfo> = tepui(&["task", "files", &task.id, "-o", "json", "--addr", &addr])
        .ok()
        .json();
    let mode = |path: &str| {
        root.iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path} in {root:?}"))
            .mode
            .clone()
    };
    assert!(mode("logs").starts_with('d'), "{root:?}");
    assert!(
        mode("stdout").starts_with('-') && mode("stderr").starts_with('-'),
        "{root:?}"
    );
    assert!(
        mode("inside").starts_with('-'),
        "a link inside shows as its file: {root:?}"
    );
    assert!(mode("escape").starts_with('l'), "a link out shows as a link: {root:?}");
    for internal in ["task.json", "plan.json", "shim.log", "data", "bundle"] {
        assert!(
            !root.iter().any(|f| f.path == internal),
            "{internal} is not the task's: {root:?}"
        );
    }
    let listing = tepui(&["task", "files", &task.id, "/logs", "--addr", &addr])
        .ok()
        .stdout;
    let line = listing
        .lines()
        .find(|l| l.ends_with("logs/app.log"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("-rw") && line.contains(" 15 "), "{line}");
    let cat = tepui(&["task", "cat", &task.id, "inside", "--addr", &addr]).ok().stdout;
    assert_eq!(cat, "hello, sandbox\n");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = tepui_e2e::http_client().build().expect("a client");
    let get = |query: &str| {
        get_json(
            &runtime,
            &http,
            &format!("http://{addr}/v1/tasks/{}/files/{query}", task.id),
        )
    };
    assert_eq!(
        get("read?path=logs/app.log&offset=-1"),
        (200, serde_json::json!({"data": "", "offset": 15}))
    );
    assert_eq!(
        get("read?path=/logs/app.log&offset=7&length=7"),
        (200, serde_json::json!({"data": "sandbox", "offset": 7}))
    );
    for out in [
        "read?path=escape",
        "read?path=../../../etc/passwd",
        "browse?path=escape",
        "read?path=logs",
    ] {
        let (status, body) = get(out);
        assert_eq!(status, 400, "{out}: {body}");
    }
    for missing in ["read?path=nope", "browse?path=logs/nope", "read?path=task.json"] {
        let (status, body) = get(missing);
        assert_eq!(status, 404, "{missing}: {body}");
    }
    let refused = tepui(&["task", "cat", &task.id, "escape", "--addr", &addr]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("out of the sandbox"), "{refused:?}");

    // 4. The metrics history: the server samples at once when it starts.
    let (status, history) = get_json(
        &runtime,
        &http,
        &format!("http://{addr}/v1/metrics/history?series=cpus_total"),
    );
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["interval_seconds"], 10);
    let cpus = &history["series"][0];
    assert_eq!(cpus["name"], "cpus_total");
    assert!(
        cpus["points"].as_array().is_some_and(|p| !p.is_empty()),
        "a first sample: {history}"
    );

    // 5. `tepui ui`: a login link whose token is the caller's own policies, for a while.
    let operator = tepui_e2e::token_with_policy(&addr, "ui-operator", &["--capability", "read,logs,exec"], "alice");
    let alice = operator["secret"].as_str().expect("a secret").to_string();
    let printed = tepui(&[
        "ui",
        "--no-open",
        "--ttl",
        "10m",
        "--api-token",
        &alice,
        "--addr",
        &addr,
    ])
    .ok()
    .stdout;
    let token = link_token(&printed, &addr);
    let (status, me) = get_json_as(&runtime, &format!("http://{addr}/v1/acl/token/self"), &token);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "ui login");
    assert_eq!(me["management"], false);
    assert_eq!(me["capabilities"], serde_json::json!(["read", "logs", "exec"]));
    let (status, _) = get_json_as(&runtime, &format!("http://{addr}/v1/acl/tokens"), &token);
    assert_eq!(status, 403, "no more than its parent: no operator");
    // With `tepui dev`'s bootstrap token: a management link that expires, and cannot leave a
    // longer-lived token behind.
    let printed = tepui(&["ui", "--no-open", "--addr", &addr]).ok().stdout;
    let admin = link_token(&printed, &addr);
    let (status, me) = get_json_as(&runtime, &format!("http://{addr}/v1/acl/token/self"), &admin);
    assert_eq!((status, me["management"].as_bool()), (200, Some(true)), "{me}");
    let left = runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}/v1/acl/tokens"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "left behind"}))
            .send()
            .await
            .expect("the server answers");
        resp.json::<serde_json::Value>().await.unwrap_or_default()
    });
    let (_, tokens) = get_json_as(&runtime, &format!("http://{addr}/v1/acl/tokens"), &admin);
    let own_expiry = tokens.as_array().and_then(|all| {
        all.iter()
            .find(|t| t["name"] == "ui login" && t["management"] == true)
            .map(|t| t["expires_at_ms"].clone())
    });
    assert_eq!(Some(left["expires_at_ms"].clone()), own_expiry, "{left}");
    // On a desktop it opens the link with xdg-open (a stand-in here, which writes it down).
    let bin = sb.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = sb.join("opened");
    let fake = bin.join("xdg-open");
    std::fs::write(&fake, format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", opened.display())).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new(tepui_e2e::tepui_bin())
        .args(["ui", "--addr", &addr])
        .env("TEPUI_API_TOKEN", &alice)
        .env("PATH", &path)
        .env("DISPLAY", ":99")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("tepui ui runs");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let token = link_token(&printed, &addr);
    let link = wait_for("xdg-open to be given the link", SETTLE, || {
        std::fs::read_to_string(&opened).map_err(|e| e.to_string())
    });
    assert_eq!(link, format!("http://{addr}/ui/login#token={token}"));
}
