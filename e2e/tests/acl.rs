//! API access as a user meets it: `tepui dev` prints its management token once and leaves it
//! 0600 in its data dir, where the CLI finds it; an operator makes a policy and a token with
//! `tepui acl`; clients send that token in each form real ones do (Bearer, HTTP Basic as
//! Marathon's `--http_credentials` sends it, DC/OS's `token=`); a token lacking a capability is
//! refused with a clear line; a revoked one at once; anonymous reads only when turned on.
//!
//! Runs on 127.0.44.1 with ports 34400-34419 and the bridge `tpe2e-acl`; needs root.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::json;
use tepui_e2e::marathon::Marathon;
use tepui_e2e::{http_addr, need_root, spawn_dev, tepui, tepui_bin, token_with_policy, Sandbox, API_TOKEN};

const IP: &str = "127.0.44.1";
const START: Duration = Duration::from_secs(30);

/// The CLI with no token from the tests: only what the environment given here provides.
fn cli_alone(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(tepui_bin());
    cmd.args(args).stdin(Stdio::null());
    for var in ["TEPUI_API_TOKEN", "TEPUI_DATA_DIR", "TEPUI_ADDR", "XDG_DATA_HOME"] {
        cmd.env_remove(var);
    }
    // No home: the default data dir must not hold a token of some other cluster.
    cmd.env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the tepui binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_policies_and_the_forms_clients_send_them_in() {
    need_root();
    let sb = Sandbox::new("acl");
    let (dev, data) = spawn_dev(&sb, "acl1", IP, "34400-34419", ("tpe2e-acl", "10.214.44.0/24"), START);
    let data_arg = data.display().to_string();
    let addr = http_addr(IP);

    // Printed once, and kept 0600 where the CLI looks.
    let out = dev.stdout();
    assert!(out.contains(API_TOKEN), "the management token is printed: {out}");
    let file = data.join("api-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), API_TOKEN);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "api-token is private");

    // Without a token: one clear line. With the data dir: it just works.
    let (ok, _, err) = cli_alone(&["status", "--addr", &addr], &[]);
    assert!(!ok, "no token, no answer");
    assert!(err.contains("needs a token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, _, err) = cli_alone(&["status", "--addr", &addr], &[("TEPUI_DATA_DIR", &data_arg)]);
    assert!(ok, "the data dir's token is found: {err}");

    // An operator makes a reader.
    let made = token_with_policy(&addr, "readers", &["--capability", "read"], "ci");
    let reader = made["secret"].as_str().expect("the secret is shown").to_string();
    let accessor = made["accessor"].as_str().unwrap().to_string();
    let listed = tepui(&["acl", "token", "ls", "--addr", &addr]).ok().stdout;
    assert!(
        listed.contains(&accessor) && !listed.contains(&reader),
        "ls never shows secrets: {listed}"
    );

    // The reader reads, and is refused a write with what to fix.
    let (ok, _, err) = cli_alone(&["app", "ls", "--addr", &addr, "--api-token", &reader], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli_alone(&["var", "put", "k", "v", "--addr", &addr, "--api-token", &reader], &[]);
    assert!(!ok);
    assert!(err.contains("\"write\" capability"), "{err}");
    let (ok, who, _) = cli_alone(&["acl", "whoami", "--addr", &addr], &[("TEPUI_API_TOKEN", &reader)]);
    assert!(ok && who.contains("read") && who.contains("ci"), "{who}");

    // Marathon's --http_credentials (Basic, the token as the password) and DC/OS's token=.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("marathon:{reader}"))
    );
    let m = Marathon::with_authorization(&addr, Some(&basic));
    assert_eq!(m.call(Method::GET, "/v2/apps", None).status, 200);
    let app = json!({"id": "/web", "cmd": "sleep 100", "cpus": 0.01, "mem": 8});
    let refused = m.call(Method::POST, "/v2/apps", Some(&app));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.body["message"].as_str().unwrap().contains("write"),
        "{}",
        refused.text
    );
    let dcos = Marathon::with_authorization(&addr, Some(&format!("token={reader}")));
    assert_eq!(dcos.call(Method::GET, "/v2/info", None).status, 200);

    // A deployer without `host` may not run a command on the host's filesystem.
    let deployer = token_with_policy(&addr, "deployers", &["--capability", "read,write"], "deployer");
    let d = Marathon::with_authorization(&addr, Some(&format!("Bearer {}", deployer["secret"].as_str().unwrap())));
    let refused = d.call(Method::POST, "/v2/apps", Some(&app));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("host"), "{}", refused.text);

    // Revoked: refused at once.
    tepui(&["acl", "token", "revoke", &accessor, "--addr", &addr]).ok();
    assert_eq!(m.call(Method::GET, "/v2/apps", None).status, 401);

    // Anonymous: nothing, until an operator allows reads; never writes. The health probes
    // always answer.
    let anon = Marathon::with_authorization(&addr, None);
    assert_eq!(anon.call(Method::GET, "/v1/health", None).status, 200);
    assert_eq!(anon.call(Method::GET, "/ping", None).status, 200);
    assert_eq!(anon.call(Method::GET, "/v2/apps", None).status, 401);
    tepui(&["acl", "anonymous", "on", "--addr", &addr]).ok();
    assert_eq!(anon.call(Method::GET, "/v2/apps", None).status, 200);
    assert_eq!(anon.call(Method::POST, "/v2/apps", Some(&app)).status, 403);
    tepui(&["acl", "anonymous", "off", "--addr", &addr]).ok();
    assert_eq!(anon.call(Method::GET, "/v2/apps", None).status, 401);
}

/// The API over HTTPS, as from another machine: the CLI trusts the cluster CA by the pin
/// `tepui dev` prints (or by its `ca.pem`), refuses another cluster's, and an interactive exec
/// goes over the same TLS; a plain client with the CA file checks the name as usual.
#[test]
fn the_api_speaks_https_to_clients_that_trust_the_cluster_ca() {
    need_root();
    let ip = "127.0.44.2";
    let sb = Sandbox::new("acl-https");
    let (dev, data) = spawn_dev(
        &sb,
        "https1",
        ip,
        "34420-34439",
        ("tpe2e-acl2", "10.214.45.0/24"),
        START,
    );
    let url = format!("https://{}", http_addr(ip));
    let ca_file = data.join("identity").join("ca.pem");
    let ca_pem = std::fs::read_to_string(&ca_file).expect("the node keeps its CA");
    let pin = tepui_pki::ca_fingerprint(&ca_pem).unwrap();
    let out = dev.stdout();
    assert!(
        out.contains(&format!("api ca pin:   {pin}")),
        "the pin is printed: {out}"
    );

    let token = ("TEPUI_API_TOKEN", API_TOKEN);
    let (ok, status, err) = cli_alone(&["status", "-o", "json", "--addr", &url, "--ca-pin", &pin], &[token]);
    assert!(ok, "{err}");
    assert!(status.contains("\"leader\""), "{status}");
    let (ok, _, err) = cli_alone(
        &["node", "ls", "--addr", &url],
        &[token, ("TEPUI_CA_FILE", &ca_file.display().to_string())],
    );
    assert!(ok, "{err}");

    // Another cluster's pin, or no trust at all: refused before the token is sent, in one line.
    let wrong = "ab".repeat(32);
    let (ok, _, err) = cli_alone(&["status", "--addr", &url, "--ca-pin", &wrong], &[token]);
    assert!(!ok);
    assert!(
        err.contains("hash mismatch") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = cli_alone(&["status", "--addr", &url], &[token]);
    assert!(!ok);
    assert!(err.contains("--ca-pin"), "says how to trust the cluster: {err}");
    let (ok, _, err) = cli_alone(&["status", "--addr", &url, "--ca-pin", "12ab"], &[token]);
    assert!(!ok && err.contains("64 hex"), "{err}");

    // exec -i over TLS (a websocket to the leader through the same CA trust).
    let (ok, task, err) = cli_alone(
        &[
            "task", "run", "--host", "-o", "json", "--addr", &url, "--ca-pin", &pin, "--", "sleep", "300",
        ],
        &[token],
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(&task).unwrap()["id"]
        .as_str()
        .expect("the task has an id")
        .to_string();
    tepui_e2e::wait_for("the task to run", START, || {
        let (_, shown, _) = cli_alone(
            &["task", "show", &id, "-o", "json", "--addr", &url, "--ca-pin", &pin],
            &[token],
        );
        if shown.contains("TASK_RUNNING") {
            Ok(())
        } else {
            Err(shown)
        }
    });
    let mut exec = Command::new(tepui_bin())
        .args(["task", "exec", "-i", &id, "--addr", &url, "--ca-pin", &pin, "--", "sh"])
        .env("TEPUI_API_TOKEN", API_TOKEN)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    exec.stdin.take().unwrap().write_all(b"echo over-$((6*7))\n").unwrap();
    let done = tepui_e2e::wait_for("the exec session to end", START, || match exec.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err("running"),
    });
    let out = exec.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        done.success() && stdout.contains("over-42"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Tasks outlive their agent by design: this one must not outlive the test.
    let (ok, _, err) = cli_alone(&["task", "kill", &id, "--addr", &url, "--ca-pin", &pin], &[token]);
    assert!(ok, "{err}");

    // Any HTTPS client given the CA file: the certificate names the node's address.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let answer = client
            .get(format!("{url}/v2/apps"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("HTTPS with the cluster CA as root");
        answer.status()
    });
    assert_eq!(status, 200);
}
