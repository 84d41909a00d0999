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
use tepui_e2e::{http_addr, need_root, tepui, tepui_bin, token_with_policy, Sandbox, API_TOKEN};

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
    let data = sb.join("data");
    let data_arg = data.display().to_string();
    let args = [
        "dev",
        "--data-dir",
        &data_arg,
        "--bind",
        IP,
        "--name",
        "acl1",
        "--ports",
        "34400-34419",
        "--bridge",
        "tpe2e-acl",
        "--bridge-subnet",
        "10.214.44.0/24",
    ];
    let mut dev = sb.spawn("dev", &args);
    dev.wait_ready(START);
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
