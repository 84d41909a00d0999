//! Marathon pods through `/v2/pods`, with a client written here from Marathon's REST API
//! documents (`docs/docs/pods.md`, the RAML of `/v2/pods`, `PodStatus`): plain HTTP and JSON,
//! sharing nothing with tepui's crates.
//!
//! A pod of two busybox containers on the agent's network: `server` serves an ephemeral volume
//! over HTTP on the endpoint `http` (a host port picked from the offer, in `$ENDPOINT_HTTP`);
//! `client` fetches the server's page over 127.0.0.1 and writes it back into the shared volume,
//! so what the server then serves proves both containers share the instance's network and
//! volume. The pod is created (`::status` STABLE), scaled to 2 (the first instance stays),
//! updated by a rolling deployment within `minimumHealthCapacity` 0.5 and
//! `maximumOverCapacity` 0.5 (every instance replaced, never more than 3 or fewer than 1
//! stable), its versions listed, and deleted (nothing of it left). Bad pod JSON is refused with
//! 422 and Marathon's field paths.
//!
//! Runs on 127.0.107.x; needs root and busybox-static (e2e/setup.sh).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{
    cluster_addr, http_addr, need_root, read_token, tepui, wait_for, Daemon, MarkedProcesses, Sandbox, MARKER_VAR,
};
use tepui_image::testimage::{build_docker_archive, require_busybox};

const SERVER_IP: &str = "127.0.107.1";
const AGENT_IP: &str = "127.0.107.2";
const BAD_INPUT_SERVER_IP: &str = "127.0.107.11";
const PORTS: &str = "32700-32719";
const IMAGE: &str = "tepui-e2e/busybox:pods";
/// The agent's gateway (Marathon-LB's labels on the pod route `web.example.test` here).
const GATEWAY: &str = "127.0.107.2:5080";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(90);

/// Marathon's REST API over plain HTTP: a status, the headers and the JSON body.
struct Marathon {
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Marathon {
    fn new(addr: &str) -> Marathon {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Marathon {
            base: format!("http://{addr}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: tepui_e2e::http_client()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.rt.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                headers,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    fn get(&self, path: &str) -> Value {
        let (status, _, v) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// A plain GET of a URL outside the API (an instance's endpoint).
    fn fetch(&self, url: &str) -> Result<String, String> {
        self.rt.block_on(async {
            let resp = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            resp.text().await.map_err(|e| e.to_string())
        })
    }
}

/// The pod; `marker` marks its processes so that the test ends them all, whatever happens.
fn pod(color: &str, instances: u32, marker: &str) -> Value {
    json!({
        "id": "/shop/web",
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example.test"},
        "environment": {"COLOR": color, MARKER_VAR: marker},
        "volumes": [{"name": "data"}],
        "networks": [{"mode": "host"}],
        "scaling": {"kind": "fixed", "instances": instances},
        "scheduling": {
            "upgrade": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
            "backoff": {"backoff": 1, "backoffFactor": 1.15, "maxLaunchDelay": 30}
        },
        "containers": [
            {
                "name": "server",
                "image": {"kind": "DOCKER", "id": IMAGE},
                "exec": {"command": {"shell":
                    "echo $COLOR > /data/index.html && exec busybox httpd -f -p $ENDPOINT_HTTP -h /data"}},
                "resources": {"cpus": 0.1, "mem": 32},
                "endpoints": [{"name": "http", "hostPort": 0, "protocol": ["http"]}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "healthCheck": {
                    "http": {"endpoint": "http", "path": "/index.html", "scheme": "HTTP"},
                    "gracePeriodSeconds": 20, "intervalSeconds": 2, "timeoutSeconds": 1,
                    "maxConsecutiveFailures": 3, "delaySeconds": 0
                }
            },
            {
                "name": "client",
                "image": {"kind": "DOCKER", "id": IMAGE},
                "exec": {"command": {"shell":
                    "while true; do busybox wget -q -O /data/fetched.tmp http://127.0.0.1:$ENDPOINT_HTTP/index.html && busybox mv /data/fetched.tmp /data/fetched.txt; busybox sleep 0.3; done"}},
                "resources": {"cpus": 0.1, "mem": 16},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }
        ]
    })
}

/// The pod's status once it is STABLE with `n` instances and no deployment holds it.
fn wait_stable(m: &Marathon, n: usize) -> Value {
    wait_for(&format!("/shop/web STABLE with {n} instances"), SETTLE, || {
        let st = m.get("/v2/pods/shop/web::status");
        let deployments = m.get("/v2/deployments");
        let busy = deployments.as_array().into_iter().flatten().any(|d| {
            d["affectedPods"]
                .as_array()
                .is_some_and(|p| p.contains(&json!("/shop/web")))
        });
        let instances = st["instances"].as_array().map(Vec::len).unwrap_or(0);
        if st["status"] == "STABLE" && instances == n && !busy {
            Ok(st)
        } else {
            Err(format!(
                "{} with {instances} instances, deploying: {busy}; {}",
                st["status"], st["message"]
            ))
        }
    })
}

fn instance_ids(st: &Value) -> BTreeSet<String> {
    st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Each instance's host port of the endpoint `http`.
fn http_ports(st: &Value) -> Vec<u64> {
    st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
                .find(|e| e["name"] == "http")?["allocatedHostPort"]
                .as_u64()
        })
        .collect()
}

/// Every instance answers with what its client fetched from its server over 127.0.0.1.
fn wait_fetched(m: &Marathon, st: &Value, color: &str) {
    let ports = http_ports(st);
    let instances = st["instances"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(ports.len(), instances, "a host port per instance: {st}");
    for port in ports {
        wait_for(&format!("the client's copy on port {port}"), SETTLE, || {
            let page = m.fetch(&format!("http://{AGENT_IP}:{port}/fetched.txt"))?;
            if page.trim() == color {
                Ok(())
            } else {
                Err(format!("fetched {page:?}"))
            }
        });
    }
}

/// A bootstrapped server on `ip`, ready.
fn start_server(sb: &Sandbox, ip: &str) -> Daemon {
    let s1 = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &["server", "--bootstrap", "--data-dir", &s1, "--bind", ip, "--name", "s1"],
    );
    server.wait_ready(START);
    server
}

fn start_cluster(sb: &Sandbox) -> (Daemon, Daemon) {
    let server = start_server(sb, SERVER_IP);
    let token = read_token(&sb.join("s1"), "agent");
    let dir = sb.join("a1").display().to_string();
    let mut agent = sb.spawn(
        "a1",
        &[
            "join",
            &cluster_addr(SERVER_IP),
            "--token",
            &token,
            "--data-dir",
            &dir,
            "--bind",
            AGENT_IP,
            "--name",
            "a1",
            "--cpus",
            "4",
            "--mem",
            "2048",
            "--ports",
            PORTS,
            "--heartbeat-secs",
            "0.3",
            "--gateway-http",
            GATEWAY,
            "--bridge",
            "tpe2e-pods0",
            "--bridge-subnet",
            "10.214.107.0/26",
        ],
    );
    agent.wait_ready(START);
    (server, agent)
}

#[test]
fn bad_pod_json_is_refused_with_field_paths() {
    need_root();
    let sb = Sandbox::new("pods-bad");
    // Refusals need no agent; an address of its own, as the other test runs alongside.
    let _server = start_server(&sb, BAD_INPUT_SERVER_IP);
    let m = Marathon::new(&http_addr(BAD_INPUT_SERVER_IP));
    let bad = json!({
        "id": "/bad",
        "containers": [
            {"name": "a", "exec": {"command": {"shell": "sleep 1"}}, "resources": {"cpus": -1, "mem": 32}},
            {"name": "a", "exec": {"command": {"shell": "sleep 1"}}, "resources": {"cpus": 0.1, "mem": 32},
             "endpoints": [{"hostPort": 0}]}
        ]
    });
    let (status, _, v) = m.call(reqwest::Method::POST, "/v2/pods", Some(&bad));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["message"], "Object is not valid", "{v}");
    let paths: BTreeSet<String> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "/containers(0)/resources/cpus",
        "/containers",
        "/containers(1)/endpoints(0)/name",
    ] {
        assert!(paths.contains(want), "{want} in {v}");
    }
    // A field of the wrong type names its path too; nothing was stored.
    let (status, _, v) = m.call(
        reqwest::Method::POST,
        "/v2/pods",
        Some(&json!({"id": "/bad", "containers": [{"name": "a", "resources": {"cpus": "lots"}}]})),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["details"][0]["path"], "/containers(0)/resources/cpus", "{v}");
    assert_eq!(m.get("/v2/pods"), json!([]));
    let (status, _, _) = m.call(reqwest::Method::GET, "/v2/pods/bad", None);
    assert_eq!(status, 404);
}

#[test]
fn a_pod_is_created_scaled_rolled_and_deleted() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let marked = MarkedProcesses::new("pods");
    let sb = Sandbox::new("pods");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (_server, _agent) = start_cluster(&sb);
    let addr = http_addr(SERVER_IP);
    tepui(&[
        "image",
        "import",
        &archive.display().to_string(),
        "--agent",
        "a1",
        "--addr",
        &addr,
    ])
    .ok();
    let m = Marathon::new(&addr);

    // Create: 201 with the pod, its deployment in Marathon-Deployment-Id.
    let (status, headers, created) = m.call(reqwest::Method::POST, "/v2/pods", Some(&pod("blue", 1, marked.value())));
    assert_eq!(status, 201, "{created}");
    assert!(headers.contains_key("marathon-deployment-id"), "{headers:?}");
    assert_eq!(created["id"], "/shop/web");
    assert_eq!(created["scaling"]["instances"], 1);
    assert_eq!(
        created["containers"][1]["resources"]["disk"], 0.0,
        "defaults filled in: {created}"
    );
    let st = wait_stable(&m, 1);
    assert_eq!(st["spec"]["id"], "/shop/web");
    let first = instance_ids(&st);
    let containers = st["instances"][0]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{st}");
    assert!(containers.iter().all(|c| c["status"] == "TASK_RUNNING"), "{st}");
    wait_fetched(&m, &st, "blue");
    let listed = m.get("/v2/pods");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Scale to 2: the running instance stays.
    let mut two = m.get("/v2/pods/shop/web");
    two["scaling"]["instances"] = json!(2);
    let (status, _, v) = m.call(reqwest::Method::PUT, "/v2/pods/shop/web", Some(&two));
    assert_eq!(status, 200, "{v}");
    let st = wait_stable(&m, 2);
    let scaled = instance_ids(&st);
    assert!(first.is_subset(&scaled), "a scale keeps {first:?}: {scaled:?}");
    wait_fetched(&m, &st, "blue");

    // DNS: the pod's name (Mesos-DNS's, as an app's: `web-shop`) and its endpoint's SRV records,
    // one per instance at its host port.
    let mut ports: Vec<u64> = http_ports(&st);
    ports.sort_unstable();
    wait_for("the pod's DNS records", SETTLE, || {
        let a = m.get("/v1/dns/lookup?name=web-shop.marathon.mesos&type=A");
        let srv = m.get("/v1/dns/lookup?name=_http._web-shop._tcp.marathon.mesos&type=SRV");
        let data = |v: &Value| -> Vec<String> {
            v["answers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["data"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let mut srv_ports: Vec<u64> = data(&srv)
            .iter()
            .filter_map(|d| d.split_whitespace().nth(2)?.parse().ok())
            .collect();
        srv_ports.sort_unstable();
        if data(&a).contains(&AGENT_IP.to_string()) && srv_ports == ports {
            Ok(())
        } else {
            Err(format!("A {a}; SRV {srv}"))
        }
    });

    // The gateway: HAPROXY_0_VHOST on the pod routes to its first endpoint on every instance.
    wait_for("the gateway's route to the pod", SETTLE, || {
        let body = m.rt.block_on(async {
            reqwest::Client::new()
                .get(format!("http://{GATEWAY}/fetched.txt"))
                .header("host", "web.example.test")
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())
        })?;
        if body.trim() == "blue" {
            Ok(())
        } else {
            Err(format!("answered {body:?}"))
        }
    });

    // A rolling update: every instance replaced, at most 2 + floor(0.5 * 2) = 3 instances and
    // at least ceil(0.5 * 2) = 1 stable while it runs.
    let (status, headers, v) = m.call(
        reqwest::Method::PUT,
        "/v2/pods/shop/web",
        Some(&pod("green", 2, marked.value())),
    );
    assert_eq!(status, 200, "{v}");
    let deployment = headers["marathon-deployment-id"].to_str().unwrap().to_string();
    let (mut most, mut fewest_stable) = (0, usize::MAX);
    let st = wait_for("the rolling update", SETTLE, || {
        let st = m.get("/v2/pods/shop/web::status");
        let instances = st["instances"].as_array().cloned().unwrap_or_default();
        let stable = instances.iter().filter(|i| i["status"] == "STABLE").count();
        most = most.max(instances.len());
        fewest_stable = fewest_stable.min(stable);
        let ids = instance_ids(&st);
        let running = m.get("/v2/deployments");
        let busy = running
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["id"] == json!(deployment));
        if !busy && st["status"] == "STABLE" && ids.len() == 2 && ids.is_disjoint(&scaled) {
            Ok(st)
        } else {
            Err(format!("{} instances, {stable} stable, deploying: {busy}", ids.len()))
        }
    });
    assert!(most <= 3, "never more than 3 instances: {most}");
    assert!(fewest_stable >= 1, "never fewer than 1 stable: {fewest_stable}");
    wait_fetched(&m, &st, "green");
    let versions = m.get("/v2/pods/shop/web::versions");
    assert!(
        versions.as_array().is_some_and(|v| v.len() >= 3),
        "create, scale, update: {versions}"
    );
    let oldest = versions
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let v1 = m.get(&format!("/v2/pods/shop/web::versions/{oldest}"));
    assert_eq!(v1["environment"]["COLOR"], "blue");

    // Kill one instance: it is replaced.
    let victim = instance_ids(&st).into_iter().next().unwrap();
    let (status, _, v) = m.call(
        reqwest::Method::DELETE,
        &format!("/v2/pods/shop/web::instances/{victim}"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    let st = wait_for("a replacement", SETTLE, || {
        let st = m.get("/v2/pods/shop/web::status");
        let ids = instance_ids(&st);
        if st["status"] == "STABLE" && ids.len() == 2 && !ids.contains(&victim) {
            Ok(st)
        } else {
            Err(format!("{} {ids:?}", st["status"]))
        }
    });
    let ports = http_ports(&st);

    // Delete: 202, then nothing of the pod is left.
    let (status, headers, _) = m.call(reqwest::Method::DELETE, "/v2/pods/shop/web", None);
    assert_eq!(status, 202);
    assert!(headers.contains_key("marathon-deployment-id"));
    wait_for("the pod's tasks to end", SETTLE, || {
        let tasks = m.get("/v1/tasks");
        let live: Vec<String> = tasks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("/shop/web.")))
            .filter(|t| {
                !matches!(
                    t["state"].as_str(),
                    Some("TASK_KILLED" | "TASK_FINISHED" | "TASK_FAILED" | "TASK_LOST" | "TASK_ERROR")
                )
            })
            .map(|t| format!("{} {}", t["id"], t["state"]))
            .collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    });
    let (status, _, _) = m.call(reqwest::Method::GET, "/v2/pods/shop/web", None);
    assert_eq!(status, 404);
    assert_eq!(m.get("/v2/pods"), json!([]));
    for port in ports {
        assert!(
            m.fetch(&format!("http://{AGENT_IP}:{port}/index.html")).is_err(),
            "port {port} is closed"
        );
    }
}
