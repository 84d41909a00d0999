//! The gateway as a user meets it on `tepui dev`: Marathon apps from a busybox image (HTTP
//! servers in containers, host networking) with Marathon-LB labels, reached through the
//! gateway `tepui dev` runs on BIND:5080 and BIND:5443. Host routing with several vhosts, path
//! routing, an unknown host, TLS chosen by SNI for two hosts with two certificates stored with
//! `tepui cert add` (the client checks each), the redirect to HTTPS, sticky sessions, a bad
//! label reported while everything else is served, `tepui gateway routes`, and a rolling
//! restart of an app while clients keep sending requests through the gateway: not one fails;
//! HTTP/2 to the gateway. A websocket to a busybox server through the gateway; a backend whose
//! server stops while its task stays healthy is ejected (no request fails meanwhile) and taken
//! back once it answers again. A virtual IP (`VIP_0` = `/e2edb:5555`) reached by its address
//! from the host and by its name from a bridge container, following a rolling restart.
//!
//! Three clusters side by side: `tepui dev` on 127.0.56.1 (ports 35600-35639, bridge
//! `tpe2e-gw`, 10.214.56.0/24), on 127.0.57.1 (35640-35679, `tpe2e-vip`, 10.214.57.0/24) and on
//! 127.0.58.1 (35680-35719, `tpe2e-gw2`, 10.214.58.0/24); needs root, busybox-static, dig and
//! iptables (e2e/setup.sh).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::{http_addr, need_root, spawn_dev_with, wait_for, MarkedProcesses, Output, Sandbox, MARKER_VAR};
use tepui_image::testimage::{build_docker_archive, require_busybox};

const IP: &str = "127.0.56.1";
const PORTS: &str = "35600-35639";
const BRIDGE: &str = "tpe2e-gw";
const SUBNET: &str = "10.214.56.0/24";
const IMAGE: &str = "tepui-e2e/busybox:gateway";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(120);

fn gateway_http() -> SocketAddr {
    format!("{IP}:5080").parse().unwrap()
}

fn gateway_https() -> SocketAddr {
    format!("{IP}:5443").parse().unwrap()
}

/// `tepui ARGS... --addr ADDR`, with time for deployments.
fn cli(addr: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--addr", addr]);
    tepui_e2e::tepui_with_timeout(&all, WAIT)
}

/// An app of `instances` busybox HTTP servers on the agent's addresses (host networking), each
/// answering `/` with its task id and `/api/` with `api <task id>`.
fn app(id: &str, instances: u32, labels: Value, marker: &str) -> Value {
    let page = "busybox mkdir -p /tmp/www/api && echo $TEPUI_TASK_ID > /tmp/www/index.html \
         && echo api $TEPUI_TASK_ID > /tmp/www/api/index.html \
         && exec busybox httpd -f -p $PORT0 -h /tmp/www";
    json!({
        "id": id,
        "instances": instances,
        "cpus": 0.05,
        "mem": 16,
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "name": "http"}],
        "cmd": page,
        "env": {MARKER_VAR: marker},
        "labels": labels,
        "healthChecks": [{
            "protocol": "HTTP", "path": "/index.html", "portIndex": 0,
            "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 2,
            "maxConsecutiveFailures": 3, "delaySeconds": 0
        }],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    })
}

fn run_app(sb: &Sandbox, addr: &str, spec: &Value) {
    let name = spec["id"].as_str().unwrap().trim_start_matches('/').replace('/', "-");
    let file = sb.join(format!("{name}.json"));
    std::fs::write(&file, spec.to_string()).unwrap();
    cli(addr, &["app", "run", &file.display().to_string(), "--wait"]).ok();
}

/// The running instances' task ids of `app`.
fn instances(addr: &str, app: &str) -> BTreeSet<String> {
    let shown: Value = cli(addr, &["app", "show", app, "-o", "json"]).ok().json();
    shown["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// A client that sends every request to the gateway, whatever the URL's host says.
fn client(tls_roots: &[&str]) -> reqwest::Client {
    client_with_alpn(tls_roots, &[])
}

/// [`client`] offering `alpn` in its TLS handshakes (`h2` for HTTP/2).
fn client_with_alpn(tls_roots: &[&str], alpn: &[&[u8]]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        // Below the gateway's idle limit for kept-alive connections (its header timeout, 10 s),
        // as every client of a server with one must be: a connection it is closing is not
        // taken for a request.
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(4);
    for host in [
        "web.example.test",
        "www.example.test",
        "shop.example.test",
        "secure.example.test",
    ] {
        b = b.resolve(host, gateway_https());
    }
    if !tls_roots.is_empty() {
        let mut roots = rustls::RootCertStore::empty();
        for pem in tls_roots {
            for cert in rustls_pemfile_certs(pem) {
                roots.add(cert).unwrap();
            }
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        b = b.tls_backend_preconfigured(config);
    }
    b.build().unwrap()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// GET `path` through the gateway's plain HTTP port with `Host: host`: status, body, headers.
async fn get(c: &reqwest::Client, host: &str, path: &str) -> Result<(u16, String, reqwest::header::HeaderMap), String> {
    let r = c
        .get(format!("http://{}{path}", gateway_http()))
        .header("host", host)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.map_err(|e| e.to_string())?;
    Ok((status, body, headers))
}

/// Runs `f` on the test's one runtime: a client's pooled connections live on the runtime that
/// made them, so every request of the test goes through the same one.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
}

/// Until every one of `want` has answered a request for `host`: the gateway has them all.
fn wait_backends(c: &reqwest::Client, host: &str, want: &BTreeSet<String>) {
    wait_for(&format!("{host} served by {want:?}"), SETTLE, || {
        let mut seen = BTreeSet::new();
        for _ in 0..(4 * want.len()) {
            match block_on(get(c, host, "/")) {
                Ok((200, body, _)) => {
                    seen.insert(body.trim().to_string());
                }
                Ok((status, body, _)) => return Err(format!("{status} {body}")),
                Err(e) => return Err(e),
            }
        }
        if &seen == want {
            Ok(())
        } else {
            Err(format!("saw {seen:?}"))
        }
    });
}

fn self_signed(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn apps_are_served_through_the_gateway_by_host_path_and_tls() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let marked = MarkedProcesses::new("gateway");
    let sb = Sandbox::new("gateway");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (mut dev, _) = spawn_dev_with(
        &sb,
        "gw1",
        IP,
        PORTS,
        (BRIDGE, SUBNET),
        &["--dns-upstream", "127.0.56.9:53"],
        START,
    );
    assert!(
        dev.stdout()
            .contains(&format!("gateway:      http://{}", gateway_http())),
        "{}",
        dev.stdout()
    );
    let addr = http_addr(IP);
    cli(
        &addr,
        &["image", "import", &archive.display().to_string(), "--agent", "gw1"],
    )
    .ok();

    // Two vhosts on one app, a path on another, a redirect, sticky sessions.
    let external = |extra: Value| {
        let mut l = json!({"HAPROXY_GROUP": "external"});
        l.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        l
    };
    run_app(
        &sb,
        &addr,
        &app(
            "/web",
            2,
            external(json!({"HAPROXY_0_VHOST": "web.example.test,www.example.test"})),
            marked.value(),
        ),
    );
    run_app(
        &sb,
        &addr,
        &app("/api", 1, external(json!({"HAPROXY_0_PATH": "/api"})), marked.value()),
    );
    run_app(
        &sb,
        &addr,
        &app(
            "/shop",
            2,
            external(json!({"HAPROXY_0_VHOST": "shop.example.test", "HAPROXY_0_STICKY": "true"})),
            marked.value(),
        ),
    );
    run_app(
        &sb,
        &addr,
        &app(
            "/secure",
            1,
            external(json!({"HAPROXY_0_VHOST": "secure.example.test", "HAPROXY_0_REDIRECT_TO_HTTPS": "true"})),
            marked.value(),
        ),
    );
    // A label the gateway cannot use: reported, and the rest is served.
    run_app(
        &sb,
        &addr,
        &app(
            "/odd",
            1,
            external(json!({"HAPROXY_0_VHOST": "odd.example.test", "HAPROXY_0_BALANCE": "fastest"})),
            marked.value(),
        ),
    );

    let plain = client(&[]);
    let web = instances(&addr, "/web");
    assert_eq!(web.len(), 2);
    wait_backends(&plain, "web.example.test", &web);
    wait_backends(&plain, "www.example.test", &web);
    // Path routing: any host, under /api.
    let api = instances(&addr, "/api");
    let (status, body, _) = block_on(get(&plain, "anything.example.test", "/api/")).unwrap();
    assert_eq!(
        (status, body.trim().to_string()),
        (200, format!("api {}", api.iter().next().unwrap()))
    );
    // No route: 404.
    let (status, _, _) = block_on(get(&plain, "nobody.example.test", "/")).unwrap();
    assert_eq!(status, 404);
    // The redirect to HTTPS, with the gateway's TLS port.
    wait_for("the redirect", SETTLE, || {
        match block_on(get(&plain, "secure.example.test", "/x?y=1")) {
            Ok((301, _, headers)) => Ok(headers["location"].to_str().unwrap().to_string()),
            other => Err(format!("{other:?}")),
        }
    });
    let (_, _, headers) = block_on(get(&plain, "secure.example.test", "/x?y=1")).unwrap();
    assert_eq!(headers["location"], "https://secure.example.test:5443/x?y=1");

    // Sticky sessions: the cookie keeps a client on one instance.
    let shop = instances(&addr, "/shop");
    wait_backends(&plain, "shop.example.test", &shop);
    let (_, first, headers) = block_on(get(&plain, "shop.example.test", "/")).unwrap();
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("mesosphere_server_id="), "{cookie}");
    for _ in 0..10 {
        let r = block_on(async {
            plain
                .get(format!("http://{}/", gateway_http()))
                .header("host", "shop.example.test")
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        assert_eq!(r, first, "the cookie keeps the instance");
    }

    // The bad label is reported; its app still gets a route with the default balance.
    let table: Value = cli(&addr, &["gateway", "table", "-o", "json"]).ok().json();
    let problems = table["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["source"] == "/odd" && p["field"].as_str().unwrap().contains("HAPROXY_0_BALANCE")),
        "{table}"
    );
    let odd = instances(&addr, "/odd");
    wait_backends(&plain, "odd.example.test", &odd);

    // `tepui gateway routes`: the live table of the agent's gateway.
    let routes = cli(&addr, &["gateway", "routes"]).ok().stdout;
    assert!(routes.contains("web.example.test,www.example.test"), "{routes}");
    assert!(routes.contains("/api"), "{routes}");
    let live: Value = cli(&addr, &["gateway", "routes", "-o", "json"]).ok().json();
    assert_eq!(live[0]["agent"], "gw1", "{live}");

    // TLS: two hosts, two certificates, each checked by the client against its own root.
    let (web_cert, web_key) = self_signed(&["web.example.test"]);
    let (shop_cert, shop_key) = self_signed(&["shop.example.test"]);
    for (host, cert, key) in [
        ("web.example.test", &web_cert, &web_key),
        ("shop.example.test", &shop_cert, &shop_key),
    ] {
        let cert_file = sb.join(format!("{host}.crt"));
        let key_file = sb.join(format!("{host}.key"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        let out = cli(
            &addr,
            &[
                "cert",
                "add",
                "--host",
                host,
                "--cert",
                &cert_file.display().to_string(),
                "--key",
                &key_file.display().to_string(),
            ],
        )
        .ok();
        assert!(
            out.stdout.contains(&format!("certificate for {host} stored")),
            "{}",
            out.stdout
        );
    }
    // A key that is not the certificate's is refused with the field to fix.
    let wrong_key = sb.join("wrong.key");
    std::fs::write(&wrong_key, &shop_key).unwrap();
    let refused = cli(
        &addr,
        &[
            "cert",
            "add",
            "--host",
            "web.example.test",
            "--cert",
            &sb.join("web.example.test.crt").display().to_string(),
            "--key",
            &wrong_key.display().to_string(),
        ],
    );
    assert!(!refused.success());
    assert!(refused.stderr.contains("key"), "{}", refused.stderr);
    let ls = cli(&addr, &["cert", "ls"]).ok().stdout;
    assert!(
        ls.contains("web.example.test") && ls.contains("shop.example.test"),
        "{ls}"
    );

    let web_client = client(&[&web_cert]);
    let shop_client = client(&[&shop_cert]);
    let https = |c: &reqwest::Client, host: &str| {
        block_on(async {
            let r = c
                .get(format!("https://{host}:{}/", gateway_https().port()))
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok::<_, String>((r.status().as_u16(), r.text().await.map_err(|e| e.to_string())?))
        })
    };
    wait_for(
        "web.example.test over TLS with its certificate",
        SETTLE,
        || match https(&web_client, "web.example.test") {
            Ok((200, body)) if web.contains(body.trim()) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_for(
        "shop.example.test over TLS with its certificate",
        SETTLE,
        || match https(&shop_client, "shop.example.test") {
            Ok((200, body)) if shop.contains(body.trim()) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // HTTP/2, as ALPN chooses it, to the same instances (which speak HTTP/1.1).
    let h2 = client_with_alpn(&[&web_cert], &[b"h2"]);
    let (version, body) = block_on(async {
        let r = h2
            .get(format!("https://web.example.test:{}/", gateway_https().port()))
            .send()
            .await
            .unwrap();
        (r.version(), r.text().await.unwrap())
    });
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(web.contains(body.trim()), "{body}");
    // Each host gets its own certificate: the other root does not verify it.
    assert!(https(&web_client, "shop.example.test").is_err());
    assert!(https(&shop_client, "web.example.test").is_err());

    // A rolling restart of /web while clients keep asking through the gateway: each old
    // instance leaves the routes before it is killed, so not one request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, c) = (stop.clone(), ok.clone(), failed.clone(), plain.clone());
            std::thread::spawn(move || {
                block_on(async {
                    while !stop.load(Ordering::SeqCst) {
                        match get(&c, "web.example.test", "/").await {
                            Ok((200, _, _)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failed.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                })
            })
        })
        .collect();
    cli(&addr, &["app", "restart", "/web", "--wait"]).ok();
    let after = instances(&addr, "/web");
    assert!(after.is_disjoint(&web), "new instances: {after:?} (were {web:?})");
    wait_backends(&plain, "web.example.test", &after);
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok.load(Ordering::Relaxed),
        &failed[..failed.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "the load ran: {}",
        ok.load(Ordering::Relaxed)
    );

    // Removing a certificate: new handshakes for the host get the default (self-signed) one
    // (connections open already keep theirs, so each try is a new client).
    cli(&addr, &["cert", "rm", "shop.example.test"]).ok();
    wait_for("shop.example.test's certificate gone", SETTLE, || {
        match https(&client(&[&shop_cert]), "shop.example.test") {
            Err(_) => Ok(()),
            Ok(r) => Err(format!("{r:?}")),
        }
    });
    dev.terminate(Duration::from_secs(30));
}

const VIP_IP: &str = "127.0.57.1";
const VIP_PORTS: &str = "35640-35679";
const VIP_BRIDGE: &str = "tpe2e-vip";
const VIP_SUBNET: &str = "10.214.57.0/24";
const VIP_NAME: &str = "e2edb.marathon.l4lb.thisdcos.directory";

/// Takes this cluster's virtual IP rules and the test's bridge out (after the agent is gone:
/// declare it before the daemons).
struct VipCleanup {
    cluster_id: std::sync::Mutex<Option<String>>,
}

impl Drop for VipCleanup {
    fn drop(&mut self) {
        if let Some(id) = self.cluster_id.lock().unwrap().take() {
            let chains = tepui_gateway::vip::rules::Chains::for_cluster(&id);
            if let Err(e) = tepui_gateway::vip::kernel::remove(&chains) {
                eprintln!("could not remove the VIP rules of {}: {e}", chains.prefix());
            }
        }
    }
}

/// `dig @SERVER -p 5053 +short NAME`.
fn dig_short(server: &str, name: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args([
            &format!("@{server}"),
            "-p",
            "5053",
            "+short",
            "+tries=1",
            "+time=2",
            name,
            "A",
        ])
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `GET http://ADDR/` with a fresh connection each time: the VIP's rules pick a backend per
/// connection.
fn get_fresh(addr: &str) -> Result<String, String> {
    block_on(async {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let r = c
            .get(format!("http://{addr}/"))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        r.text().await.map(|t| t.trim().to_string()).map_err(|e| e.to_string())
    })
}

#[test]
fn a_virtual_ip_reaches_an_app_by_name_from_the_host_and_from_a_container() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    tepui_image::testimage::require_program("dig", "dnsutils").expect("dig is installed (e2e/setup.sh)");
    tepui_image::testimage::require_program("iptables-restore", "iptables").expect("iptables is installed");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cleanup = VipCleanup {
        cluster_id: std::sync::Mutex::new(None),
    };
    let marked = MarkedProcesses::new("gateway-vip");
    let sb = Sandbox::new("gateway-vip");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (mut dev, _) = spawn_dev_with(
        &sb,
        "vip1",
        VIP_IP,
        VIP_PORTS,
        (VIP_BRIDGE, VIP_SUBNET),
        &["--dns-upstream", "127.0.57.9:53", "--no-gateway"],
        START,
    );
    let addr = http_addr(VIP_IP);
    let status: Value = cli(&addr, &["status", "-o", "json"]).ok().json();
    *cleanup.cluster_id.lock().unwrap() = Some(status["cluster_id"].as_str().unwrap().to_string());
    cli(
        &addr,
        &["image", "import", &archive.display().to_string(), "--agent", "vip1"],
    )
    .ok();

    // Two instances behind the named VIP /e2edb:5555, bridge-networked: on this one host the
    // VIP's backends are containers whose host port is itself translated, so the agent sends to
    // the containers' own addresses, and the bridge client below needs the hairpin MASQUERADE.
    let mut db = app("/e2edb", 2, json!({}), marked.value());
    db["networks"] = json!([{"mode": "container/bridge"}]);
    db.as_object_mut().unwrap().remove("portDefinitions");
    db["container"]["portMappings"] = json!([{
        "containerPort": 8080, "hostPort": 0, "name": "http", "labels": {"VIP_0": "/e2edb:5555"}
    }]);
    db["cmd"] = json!(db["cmd"].as_str().unwrap().replace("$PORT0", "8080"));
    run_app(&sb, &addr, &db);
    let first = instances(&addr, "/e2edb");
    assert_eq!(first.len(), 2);

    // The VIP's address, from the table and from the cluster's DNS.
    let vip = wait_for("the VIP in the gateway table", SETTLE, || {
        let t: Value = cli(&addr, &["gateway", "table", "-o", "json"]).ok().json();
        match t["vips"].as_array().and_then(|v| v.first()).cloned() {
            Some(v) if v["backends"].as_array().map_or(0, |b| b.len()) == 2 => Ok(v),
            other => Err(format!("{other:?}")),
        }
    });
    let ip = vip["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("198.18.") || ip.starts_with("198.19."), "{vip}");
    assert_eq!(vip["port"], 5555);
    assert_eq!(dig_short(VIP_IP, VIP_NAME), [ip.clone()]);

    // From the host: every connection goes to one of the instances, both get some.
    let target = format!("{ip}:5555");
    wait_for("both instances through the VIP", SETTLE, || {
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            seen.insert(get_fresh(&target)?);
        }
        if seen == first {
            Ok(())
        } else {
            Err(format!("saw {seen:?}"))
        }
    });

    // From a task in a bridge container, by the VIP's name, through the cluster resolver.
    let client = json!({
        "id": "/vipclient",
        "instances": 1,
        "cpus": 0.05,
        "mem": 16,
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "networks": [{"mode": "container/bridge"}],
        "cmd": "exec busybox sleep 3600",
        "env": {MARKER_VAR: marked.value()},
    });
    run_app(&sb, &addr, &client);
    let client_task = instances(&addr, "/vipclient").into_iter().next().unwrap();
    let fetch = format!("busybox wget -q -O - http://{VIP_NAME}:5555/");
    let got = wait_for("the VIP by name from the container", SETTLE, || {
        let out = tepui_e2e::tepui(&[
            "task",
            "exec",
            &client_task,
            "--addr",
            &addr,
            "--",
            "/bin/sh",
            "-c",
            &fetch,
        ]);
        if out.success() {
            Ok(out.stdout.trim().to_string())
        } else {
            Err(out.stderr)
        }
    });
    assert!(first.contains(&got), "{got} is one of {first:?}");

    // The VIP follows a rolling restart: afterwards only the new instances answer.
    cli(&addr, &["app", "restart", "/e2edb", "--wait"]).ok();
    let after = instances(&addr, "/e2edb");
    assert!(after.is_disjoint(&first), "{after:?} vs {first:?}");
    wait_for("the new instances through the VIP", SETTLE, || {
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            seen.insert(get_fresh(&target)?);
        }
        if seen == after {
            Ok(())
        } else {
            Err(format!("saw {seen:?}"))
        }
    });
    dev.terminate(Duration::from_secs(30));
}

const WS_IP: &str = "127.0.58.1";
const WS_PORTS: &str = "35680-35719";
const WS_BRIDGE: &str = "tpe2e-gw2";
const WS_SUBNET: &str = "10.214.58.0/24";

/// A websocket server in busybox: `nc` runs this for each connection. It answers the
/// handshake (the accept key from sha1sum, xxd and base64), waits for the client's first
/// frame, and sends the text frame `hello`.
const WS_SCRIPT: &str = r#"#!/bin/sh
key=
while read -r line; do
  line=$(printf '%s' "$line" | busybox tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | busybox tr -d ' ') ;; esac
done
accept=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | busybox sha1sum | busybox cut -d' ' -f1 | busybox xxd -r -p | busybox base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
busybox head -c 2 >/dev/null
printf '\201\005hello'
"#;

/// `tepui task exec ID -- sh -c SCRIPT`.
fn exec(addr: &str, id: &str, script: &str) -> Output {
    tepui_e2e::tepui(&["task", "exec", id, "--addr", addr, "--", "/bin/sh", "-c", script])
}

/// The state of `task`'s backend in the gateway's live routes for `app`.
fn backend_state(addr: &str, app: &str, task: &str) -> Option<String> {
    let live: Value = cli(addr, &["gateway", "routes", "-o", "json"]).ok().json();
    live.as_array()?
        .iter()
        .filter_map(|a| a["gateway"]["routes"].as_array())
        .flatten()
        .filter(|r| r["app"] == app)
        .filter_map(|r| r["backends"].as_array())
        .flatten()
        .find(|b| b["task_id"] == task)
        .and_then(|b| b["state"].as_str().map(str::to_string))
}

#[test]
fn websockets_pass_and_a_failing_backend_is_ejected_then_restored() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let marked = MarkedProcesses::new("gateway-ws");
    let sb = Sandbox::new("gateway-ws");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (mut dev, _) = spawn_dev_with(
        &sb,
        "ws1",
        WS_IP,
        WS_PORTS,
        (WS_BRIDGE, WS_SUBNET),
        &["--dns-upstream", "127.0.58.9:53"],
        START,
    );
    let addr = http_addr(WS_IP);
    cli(
        &addr,
        &["image", "import", &archive.display().to_string(), "--agent", "ws1"],
    )
    .ok();
    let gateway: SocketAddr = format!("{WS_IP}:5080").parse().unwrap();

    // Websockets: the upgrade and the frames both ways pass through the gateway.
    let ws = json!({
        "id": "/ws",
        "instances": 1,
        "cpus": 0.05,
        "mem": 16,
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0}],
        "cmd": format!(
            "busybox cat > /tmp/ws.sh <<'EOF'\n{WS_SCRIPT}EOF\nbusybox chmod +x /tmp/ws.sh && exec busybox nc -ll -p $PORT0 -e /tmp/ws.sh"
        ),
        "env": {MARKER_VAR: marked.value()},
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "ws.example.test"},
    });
    run_app(&sb, &addr, &ws);
    let got = wait_for("a websocket through the gateway", SETTLE, || {
        block_on(async {
            use futures::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            use tokio_tungstenite::tungstenite::Message;
            let tcp = tokio::net::TcpStream::connect(gateway)
                .await
                .map_err(|e| e.to_string())?;
            let request = "ws://ws.example.test/".into_client_request().unwrap();
            let (mut socket, response) = tokio_tungstenite::client_async(request, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            if response.status() != 101 {
                return Err(format!("status {}", response.status()));
            }
            socket
                .send(Message::text("hi"))
                .await
                .map_err(|e| format!("send: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => Ok(t.to_string()),
                other => Err(format!("{other:?}")),
            }
        })
    });
    assert_eq!(got, "hello");

    // Ejection: two instances routed on port 0 and health-checked on port 1. One instance's
    // port-0 server is stopped while its task stays healthy: the gateway ejects it after its
    // failures (requests meanwhile go to the other: none fails), and takes it back once it
    // answers again.
    let page = "busybox mkdir -p /tmp/www && echo $TEPUI_TASK_ID > /tmp/www/index.html \
                && echo $PORT0 > /tmp/port0 && busybox httpd -p $PORT1 -h /tmp/www || exit 1\n\
                busybox httpd -f -p $PORT0 -h /tmp/www &\n\
                echo $! > /tmp/front.pid\n\
                exec busybox sleep 100000";
    let mut eject = app(
        "/eject",
        2,
        json!({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "eject.example.test"}),
        marked.value(),
    );
    eject["portDefinitions"] = json!([{"port": 0}, {"port": 0}]);
    eject["cmd"] = json!(page);
    eject["healthChecks"][0]["portIndex"] = json!(1);
    run_app(&sb, &addr, &eject);
    let both = instances(&addr, "/eject");
    let plain = client(&[]);
    let get_eject = |c: &reqwest::Client| {
        block_on(async {
            let r = c
                .get(format!("http://{gateway}/"))
                .header("host", "eject.example.test")
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = r.status().as_u16();
            let body = r.text().await.map_err(|e| e.to_string())?;
            if status == 200 {
                Ok(body.trim().to_string())
            } else {
                Err(format!("{status} {body}"))
            }
        })
    };
    wait_for("both instances through the gateway", SETTLE, || {
        let seen: BTreeSet<String> = (0..8).map(|_| get_eject(&plain)).collect::<Result<_, _>>()?;
        if seen == both {
            Ok(())
        } else {
            Err(format!("saw {seen:?}"))
        }
    });
    let broken = both.iter().next().unwrap().clone();
    exec(&addr, &broken, "kill $(cat /tmp/front.pid)").ok();
    // Every request is answered by the other instance, and the broken one is ejected.
    wait_for("the broken backend ejected", SETTLE, || {
        for _ in 0..6 {
            let body = get_eject(&plain)?;
            if body == broken {
                return Err("the broken instance answered".to_string());
            }
        }
        match backend_state(&addr, "/eject", &broken).as_deref() {
            Some("ejected") => Ok(()),
            other => Err(format!("state {other:?}")),
        }
    });
    // Its server back (out of the exec's session, so it outlives it): after the ejection
    // period, a trial request brings it back.
    exec(
        &addr,
        &broken,
        "busybox setsid busybox httpd -p $(cat /tmp/port0) -h /tmp/www < /dev/null > /dev/null 2>&1",
    )
    .ok();
    wait_for("the backend restored", SETTLE, || {
        let seen: BTreeSet<String> = (0..8).map(|_| get_eject(&plain)).collect::<Result<_, _>>()?;
        match backend_state(&addr, "/eject", &broken).as_deref() {
            Some("up") if seen.contains(&broken) => Ok(()),
            other => Err(format!("state {other:?}, saw {seen:?}")),
        }
    });
    assert_eq!(instances(&addr, "/eject"), both, "no instance was replaced");
    dev.terminate(Duration::from_secs(30));
}
