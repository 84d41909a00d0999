//! The package catalog in manifests/ on `tepui dev`, with real containers (busybox, imported
//! as `busybox:1.36`, the image the packages and examples name): the catalog added with
//! `tepui package repo add`; every package in it installed with its defaults, seen serving
//! (the web server through the gateway by its host name, the key-value store storing and
//! answering, the cron job's schedule set and a run succeeding), and uninstalled with no app,
//! job, task or record left; the web server installed at 1.0.0 with two instances and upgraded
//! to 1.1.0 as a rolling deployment (new instances start beside the old ones, which are then
//! stopped, and the gateway answers every request meanwhile); options that break the schema
//! refused with the field and the reason, nothing deployed. A second cluster deploys every
//! example app, job and group of manifests/ through the APIs.
//!
//! Two clusters side by side: `tepui dev` on 127.0.81.1 (ports 38100-38139, bridge `tpe2e-pkg`,
//! 10.214.81.0/24) and on 127.0.82.1 (38140-38179, `tpe2e-pkx`, 10.214.82.0/24); needs root and
//! busybox-static (e2e/setup.sh).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::marathon::{task_ids, Marathon};
use tepui_e2e::{http_addr, need_root, spawn_dev_with, wait_for, Output, Sandbox};
use tepui_image::testimage::{build_docker_archive, require_busybox};

/// The image every package and example names; the test imports busybox under it.
const IMAGE: &str = "busybox:1.36";
const START: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(120);

fn manifests() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests"))
        .canonicalize()
        .expect("manifests/ is in the repository")
}

/// `tepui ARGS... --addr ADDR`, with time for deployments.
fn cli(addr: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--addr", addr]);
    tepui_e2e::tepui_with_timeout(&all, WAIT)
}

/// Tasks outlive the test's daemons (they run under shims): every task id the test has seen
/// is killed when it ends, so that a failure half-way leaves no server holding a port.
struct SeenTasks(RefCell<BTreeSet<String>>);

impl SeenTasks {
    fn note(&self, ids: impl IntoIterator<Item = String>) {
        self.0.borrow_mut().extend(ids);
    }
}

impl Drop for SeenTasks {
    fn drop(&mut self) {
        let seen = self.0.borrow();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            let Some(task) = tepui_e2e::process_env(pid, "TEPUI_TASK_ID") else {
                continue;
            };
            if seen.contains(&task) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A cluster: `tepui dev` with the busybox image imported.
struct Dev {
    addr: String,
    ip: &'static str,
    marathon: Marathon,
    _dev: tepui_e2e::Daemon,
    _sb: Sandbox,
}

fn start(label: &str, name: &str, ip: &'static str, ports: &str, bridge: (&str, &str)) -> Dev {
    let sb = Sandbox::new(label);
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let dns = format!("{}:53", ip.rsplit_once('.').map(|(net, _)| format!("{net}.9")).unwrap());
    let (dev, _) = spawn_dev_with(&sb, name, ip, ports, bridge, &["--dns-upstream", &dns], START);
    let addr = http_addr(ip);
    cli(
        &addr,
        &["image", "import", &archive.display().to_string(), "--agent", name],
    )
    .ok();
    Dev {
        marathon: Marathon::new(&addr),
        addr,
        ip,
        _dev: dev,
        _sb: sb,
    }
}

impl Dev {
    fn cli(&self, args: &[&str]) -> Output {
        cli(&self.addr, args)
    }

    /// An HTTP GET of `path` through the gateway, as `host`.
    fn gateway_get(&self, http: &reqwest::Client, host: &str, path: &str) -> Result<(u16, String), String> {
        request(http.get(format!("http://{}:5080{path}", self.ip)).header("host", host))
    }

    /// The app's running tasks, noted.
    fn running(&self, seen: &SeenTasks, app: &str) -> Result<Vec<Value>, String> {
        let app = self.marathon.app(app)?;
        seen.note(task_ids(&app));
        Ok(app["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .cloned()
            .collect())
    }

    /// Nothing of an install left: no record, no app, no job, no live task of the app.
    fn assert_gone(&self, apps: &[&str], jobs: &[&str], tasks: &BTreeSet<String>) {
        let installed: Value = self.cli(&["package", "ls", "-o", "json"]).ok().json();
        assert_eq!(installed["packages"], json!([]), "no install record is left");
        for app in apps {
            let r = self.marathon.call(Method::GET, &format!("/v2/apps{app}"), None);
            assert_eq!(r.status, 404, "app {app} is removed: {}", r.text);
        }
        let listed: Vec<Value> = self.cli(&["job", "ls", "-o", "json"]).ok().json();
        for job in jobs {
            assert!(
                !listed.iter().any(|j| j["id"] == *job),
                "job {job} is removed: {listed:?}"
            );
        }
        wait_for("the removed apps' tasks to end", SETTLE, || {
            let all: Vec<Value> = self.cli(&["task", "ls", "-o", "json"]).try_json()?;
            let live: Vec<&Value> = all
                .iter()
                .filter(|t| t["id"].as_str().is_some_and(|id| tasks.contains(id)))
                .filter(|t| {
                    !matches!(
                        t["state"].as_str(),
                        Some("TASK_FINISHED" | "TASK_KILLED" | "TASK_FAILED" | "TASK_LOST")
                    )
                })
                .collect();
            if live.is_empty() {
                Ok(())
            } else {
                Err(format!("still live: {live:?}"))
            }
        });
    }
}

fn http() -> reqwest::Client {
    // reqwest's rustls (linked in for registry pulls) needs a provider, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        // Below the gateway's idle limit for kept-alive connections (its header timeout).
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Runs `f` on the test's one runtime: a client's pooled connections live on the runtime that
/// made them, so every request goes through the same one.
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

/// One request: its status and body.
fn request(req: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    block_on(async {
        let r = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    })
}

/// The web server: its default host name answers through the gateway with its page.
fn check_web(dev: &Dev, seen: &SeenTasks) -> (Vec<&'static str>, Vec<&'static str>) {
    let http = http();
    let tasks = wait_for("the web server to run", SETTLE, || {
        let t = dev.running(seen, "/web")?;
        if t.is_empty() {
            Err("no running instance".to_string())
        } else {
            Ok(t)
        }
    });
    let task = tasks[0]["id"].as_str().unwrap().to_string();
    let page = wait_for("the web server through the gateway", SETTLE, || {
        match dev.gateway_get(&http, "web.localhost", "/") {
            Ok((200, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(page.trim(), format!("Hello from tepui: web 1.1.0 on {task}"));
    let app = dev.marathon.app("/web").unwrap();
    assert_eq!(app["labels"]["DCOS_PACKAGE_NAME"], "web");
    assert_eq!(app["labels"]["DCOS_PACKAGE_VERSION"], "1.1.0");
    assert!(app["labels"]["DCOS_PACKAGE_SOURCE"]
        .as_str()
        .unwrap()
        .starts_with("file:///"));
    (vec!["/web"], vec![])
}

/// The key-value store: a value stored answers back, an unknown key is 404.
fn check_kv(dev: &Dev, seen: &SeenTasks) -> (Vec<&'static str>, Vec<&'static str>) {
    let http = http();
    let task = wait_for("the store to run", SETTLE, || {
        let t = dev.running(seen, "/kv")?;
        t.first().cloned().ok_or_else(|| "no running instance".to_string())
    });
    let port = task["ports"][0].as_u64().expect("the store has a port");
    let base = format!("http://{}:{port}/cgi-bin/kv", dev.ip);
    wait_for("the store to store a value", SETTLE, || {
        match request(http.post(format!("{base}/greeting")).body("hello, packages"))? {
            (200, text) if text.trim() == "stored" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        request(http.get(format!("{base}/greeting"))).unwrap(),
        (200, "hello, packages".to_string())
    );
    assert_eq!(request(http.get(format!("{base}/nothing-here"))).unwrap().0, 404);
    assert_eq!(request(http.get(format!("{base}/no%20spaces"))).unwrap().0, 400);
    (vec!["/kv"], vec![])
}

/// The cron job: scheduled as its defaults say, and a run of it succeeds in a container.
fn check_cron(dev: &Dev, seen: &SeenTasks) -> (Vec<&'static str>, Vec<&'static str>) {
    let job: Value = dev.cli(&["job", "show", "nightly", "-o", "json"]).ok().json();
    assert_eq!(job["schedules"][0]["cron"], "0 3 * * *", "{job}");
    assert_eq!(job["schedules"][0]["timezone"], "UTC");
    assert_eq!(job["labels"]["DCOS_PACKAGE_NAME"], "cron");
    assert_eq!(job["run"]["docker"]["image"], IMAGE);
    let table = dev.cli(&["job", "ls"]).ok().stdout;
    assert!(table.contains("nightly") && table.contains("0 3 * * * UTC"), "{table}");
    let ran = dev.cli(&["job", "run", "nightly", "--wait"]).ok();
    assert!(ran.stdout.contains(": SUCCESS"), "{ran}");
    let tasks: Vec<Value> = dev.cli(&["task", "ls", "-o", "json"]).ok().json();
    seen.note(
        tasks
            .iter()
            .filter_map(|t| t["id"].as_str())
            .filter(|id| id.starts_with("nightly"))
            .map(str::to_string),
    );
    (vec![], vec!["nightly"])
}

#[test]
fn every_package_installs_serves_upgrades_and_uninstalls() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let seen = SeenTasks(RefCell::new(BTreeSet::new()));
    let dev = start(
        "packages",
        "pkg1",
        "127.0.81.1",
        "38100-38139",
        ("tpe2e-pkg", "10.214.81.0/24"),
    );
    let catalog = manifests().join("universe");
    let added = dev
        .cli(&["package", "repo", "add", "manifests", &catalog.display().to_string()])
        .ok()
        .stdout;
    assert!(added.contains("manifests") && added.contains("file:///"), "{added}");

    // Every package of the catalog, with its defaults.
    let found: Value = dev.cli(&["package", "search", "-o", "json"]).ok().json();
    let names: Vec<String> = found["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 3, "{found}");
    let search = dev.cli(&["package", "search", "key-value"]).ok().stdout;
    assert!(search.contains("kv") && !search.contains("cron"), "{search}");
    for name in &names {
        let described = dev.cli(&["package", "describe", name]).ok().stdout;
        assert!(
            described.contains(name.as_str()) && described.contains("options"),
            "{described}"
        );
        let installed = dev.cli(&["package", "install", name]).ok().stdout;
        assert!(installed.contains(&format!("package {name} ")), "{installed}");
        let listed = dev.cli(&["package", "ls"]).ok().stdout;
        assert!(listed.contains(name.as_str()), "{listed}");
        let (apps, jobs) = match name.as_str() {
            "web" => check_web(&dev, &seen),
            "kv" => check_kv(&dev, &seen),
            "cron" => check_cron(&dev, &seen),
            other => panic!("package {other} of manifests/ has no check here: add one"),
        };
        let tasks = seen.0.borrow().clone();
        let removed = dev.cli(&["package", "uninstall", name]).ok().stdout;
        assert!(removed.contains(&format!("package {name} ")), "{removed}");
        dev.assert_gone(&apps, &jobs, &tasks);
    }

    // Options that break the schema: one line naming the field and the reason; nothing made.
    let bad = dev.cli(&["package", "install", "web", "--set", "service.instances=0"]);
    assert!(!bad.success(), "{bad}");
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{bad}");
    assert!(
        bad.stderr
            .contains("/service/instances: 0 is less than the minimum of 1"),
        "{bad}"
    );
    let bad = dev.cli(&[
        "package",
        "install",
        "web",
        "--set",
        "gateway.port=80",
        "--set",
        "service.mem=\"lots\"",
    ]);
    assert!(!bad.success(), "{bad}");
    assert!(bad.stderr.contains("/gateway/port: unknown property"), "{bad}");
    assert!(
        bad.stderr.contains("/service/mem: expected number, got string"),
        "{bad}"
    );
    let r = dev.marathon.call(Method::GET, "/v2/apps/web", None);
    assert_eq!(r.status, 404, "nothing is deployed: {}", r.text);
    let installed: Value = dev.cli(&["package", "ls", "-o", "json"]).ok().json();
    assert_eq!(installed["packages"], json!([]));

    // An upgrade is a rolling deployment: 1.0.0 with two instances, then 1.1.0.
    let http = http();
    dev.cli(&[
        "package",
        "install",
        "web",
        "--version",
        "1.0.0",
        "--set",
        "service.instances=2",
    ])
    .ok();
    let old: BTreeSet<String> = wait_for("two 1.0.0 instances", SETTLE, || {
        let t = dev.running(&seen, "/web")?;
        if t.len() == 2 {
            Ok(t.iter().map(|t| t["id"].as_str().unwrap().to_string()).collect())
        } else {
            Err(format!("{} running", t.len()))
        }
    });
    wait_for("both 1.0.0 instances through the gateway", SETTLE, || {
        let mut pages = BTreeSet::new();
        for _ in 0..8 {
            match dev.gateway_get(&http, "web.localhost", "/") {
                Ok((200, body)) => {
                    pages.insert(body.trim().to_string());
                }
                other => return Err(format!("{other:?}")),
            }
        }
        let want: BTreeSet<String> = old
            .iter()
            .map(|t| format!("Hello from tepui: web 1.0.0 on {t}"))
            .collect();
        if pages == want {
            Ok(())
        } else {
            Err(format!("{pages:?}"))
        }
    });
    let (status, _) = dev.gateway_get(&http, "web.localhost", "/version.txt").unwrap();
    assert_eq!(status, 404, "1.0.0 has no /version.txt");
    let upgraded = dev
        .cli(&["package", "upgrade", "web", "--version", "1.1.0"])
        .ok()
        .stdout;
    assert!(upgraded.contains("/web is now web 1.1.0 (deployment "), "{upgraded}");
    // While it rolls: every request through the gateway answers, and new instances run
    // beside old ones before the old ones stop.
    let mut failures = Vec::new();
    let mut saw_both = false;
    let new: BTreeSet<String> = wait_for("two 1.1.0 instances in place of the 1.0.0 ones", WAIT, || {
        for _ in 0..5 {
            match dev.gateway_get(&http, "web.localhost", "/") {
                Ok((200, _)) => {}
                other => failures.push(format!("{other:?}")),
            }
        }
        let running: BTreeSet<String> = dev
            .running(&seen, "/web")?
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        if running.iter().any(|t| old.contains(t)) && running.iter().any(|t| !old.contains(t)) {
            saw_both = true;
        }
        let app = dev.marathon.app("/web")?;
        let deploying = app["deployments"].as_array().map(Vec::len).unwrap_or(0);
        if running.len() == 2 && running.is_disjoint(&old) && deploying == 0 {
            Ok(running)
        } else {
            Err(format!("running {running:?}, {deploying} deployments"))
        }
    });
    assert!(failures.is_empty(), "requests failed during the upgrade: {failures:?}");
    assert!(
        saw_both,
        "the upgrade started new instances before the old ones stopped"
    );
    wait_for("the 1.1.0 pages through the gateway", SETTLE, || {
        let mut pages = BTreeSet::new();
        for _ in 0..8 {
            if let Ok((200, body)) = dev.gateway_get(&http, "web.localhost", "/") {
                pages.insert(body.trim().to_string());
            }
        }
        let want: BTreeSet<String> = new
            .iter()
            .map(|t| format!("Hello from tepui: web 1.1.0 on {t}"))
            .collect();
        if pages == want {
            Ok(())
        } else {
            Err(format!("{pages:?}"))
        }
    });
    let (status, body) = dev.gateway_get(&http, "web.localhost", "/version.txt").unwrap();
    assert_eq!((status, body.trim()), (200, "1.1.0"));
    let listed: Value = dev.cli(&["package", "ls", "-o", "json"]).ok().json();
    let install = &listed["packages"][0];
    assert_eq!(install["packageInformation"]["packageDefinition"]["version"], "1.1.0");
    assert_eq!(
        install["tepui"]["options"],
        json!({"service": {"instances": 2}}),
        "the options stay"
    );
    let app = dev.marathon.app("/web").unwrap();
    assert_eq!(app["labels"]["DCOS_PACKAGE_VERSION"], "1.1.0");
    assert_eq!(app["instances"], 2);
    let tasks = seen.0.borrow().clone();
    dev.cli(&["package", "uninstall", "web"]).ok();
    dev.assert_gone(&["/web"], &[], &tasks);

    dev.cli(&["package", "repo", "rm", "manifests"]).ok();
    let repos = dev.cli(&["package", "repo", "ls"]).ok().stdout;
    assert!(repos.contains("no package repositories"), "{repos}");
}

/// Marathon's group JSON as the apps it holds, with absolute ids and dependencies (tepui's
/// `/v2/groups` takes no writes yet: the apps go in one `PUT /v2/apps`, one deployment).
fn group_apps(group: &Value, base: &str, out: &mut Vec<Value>) {
    let resolve = |base: &str, id: &str| -> String {
        if id.starts_with('/') {
            id.to_string()
        } else {
            format!("{}/{id}", base.trim_end_matches('/'))
        }
    };
    let id = resolve(base, group["id"].as_str().unwrap());
    for app in group["apps"].as_array().into_iter().flatten() {
        let mut app = app.clone();
        app["id"] = json!(resolve(&id, app["id"].as_str().unwrap()));
        if let Some(deps) = app["dependencies"].as_array() {
            let deps: Vec<String> = deps.iter().map(|d| resolve(&id, d.as_str().unwrap())).collect();
            app["dependencies"] = json!(deps);
        }
        out.push(app);
    }
    for sub in group["groups"].as_array().into_iter().flatten() {
        group_apps(sub, &id, out);
    }
}

fn json_files(dir: &str) -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "manifests/{dir} has examples");
    files
        .into_iter()
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, v)
        })
        .collect()
}

#[test]
fn every_example_app_job_and_group_deploys() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    let seen = SeenTasks(RefCell::new(BTreeSet::new()));
    let dev = start(
        "examples",
        "pkx1",
        "127.0.82.1",
        "38140-38179",
        ("tpe2e-pkx", "10.214.82.0/24"),
    );

    for (file, app) in json_files("apps") {
        let id = app["id"].as_str().unwrap().to_string();
        let ran = dev.cli(&["app", "run", &file.display().to_string(), "--wait"]);
        assert!(ran.success(), "{}: {ran}", file.display());
        let n = app["instances"].as_u64().unwrap_or(1) as usize;
        let settled = dev.marathon.wait_settled(&id, n, None, SETTLE);
        seen.note(task_ids(&settled));
        dev.cli(&["app", "rm", &id, "--wait"]).ok();
    }

    for (file, job) in json_files("jobs") {
        let id = job["id"].as_str().unwrap().to_string();
        dev.cli(&["job", "add", &file.display().to_string()]).ok();
        let ran = dev.cli(&["job", "run", &id, "--wait"]);
        assert!(
            ran.success() && ran.stdout.contains(": SUCCESS"),
            "{}: {ran}",
            file.display()
        );
        let tasks: Vec<Value> = dev.cli(&["task", "ls", "-o", "json"]).ok().json();
        seen.note(tasks.iter().filter_map(|t| t["id"].as_str().map(str::to_string)));
        dev.cli(&["job", "rm", &id]).ok();
    }

    for (file, group) in json_files("groups") {
        let mut apps = Vec::new();
        group_apps(&group, "/", &mut apps);
        assert!(!apps.is_empty(), "{} holds apps", file.display());
        let put = dev
            .marathon
            .call(Method::PUT, "/v2/apps", Some(&Value::Array(apps.clone())))
            .expect(200, &file.display().to_string());
        let deployment = put.body["deploymentId"].as_str().unwrap().to_string();
        dev.marathon.wait_deployment_gone(&deployment, WAIT);
        for app in &apps {
            let id = app["id"].as_str().unwrap();
            let n = app["instances"].as_u64().unwrap_or(1) as usize;
            let settled = dev.marathon.wait_settled(id, n, None, SETTLE);
            seen.note(task_ids(&settled));
        }
        for app in apps.iter().rev() {
            let id = app["id"].as_str().unwrap();
            dev.marathon
                .call(Method::DELETE, &format!("/v2/apps{id}"), None)
                .expect(200, id);
        }
    }
    let left: Value = dev.marathon.get("/v2/apps").unwrap();
    wait_for("every example app to be removed", SETTLE, || {
        let apps: Value = dev.marathon.get("/v2/apps")?;
        if apps["apps"].as_array().is_some_and(|a| a.is_empty()) {
            Ok(())
        } else {
            Err(format!("{left}"))
        }
    });
}
