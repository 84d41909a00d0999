//! Cosmos's API on a node with no cluster under it (the state applied in place): packages
//! from a Universe tree on disk and from an index over HTTP, searched, described, installed
//! through the real `/v2/apps` and `/v1/jobs` handlers, listed, upgraded and uninstalled, in
//! Cosmos's JSON and media types. Agents are in the state but not connected, so apps'
//! instances stay staged: what is checked is what the API and the state say.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tepui_auth::Identity;
use tepui_marathon::{Services, ServicesConfig};
use tepui_master::{Master, MasterConfig};
use tepui_node::testing::local_node;
use tepui_node::Node;
use tower::ServiceExt;

struct Api {
    router: Router,
    node: Node,
}

/// The packages routes with `caller` where the gate would put it, deploying through Marathon's
/// and Metronome's routes that see the same caller.
fn api_as(caller: Identity) -> Api {
    let (node, _local) = local_node(tepui_state::testing::state_with_agents(2, 4096));
    let master = Master::new(
        node.clone(),
        MasterConfig {
            agent_timeout: Duration::from_secs(600),
            secrets: None,
            retention: Default::default(),
        },
    );
    master.start();
    let services = Services::new(
        master.clone(),
        ServicesConfig {
            deployment_timeout: Duration::from_secs(600),
        },
    );
    services.start();
    tepui_jobs::runs::start(master.clone());
    let deploying = services
        .routes()
        .merge(tepui_jobs::api::routes(master))
        .into_parts()
        .0
        .layer(axum::Extension(caller.clone()));
    let backend = tepui_packages::Backend::of(deploying);
    let router = tepui_packages::api::routes(node.clone(), backend)
        .into_parts()
        .0
        .layer(axum::Extension(caller));
    Api { router, node }
}

fn api() -> Api {
    api_as(Identity::management("tests"))
}

impl Api {
    /// A call with Cosmos's request type for `kind` (`package.install-request`) and `accept`.
    async fn cosmos(&self, path: &str, kind: &str, accept: Option<&str>, body: Value) -> (u16, String, Value) {
        let mut req = http::Request::builder().method("POST").uri(path).header(
            "content-type",
            format!("application/vnd.dcos.{kind}+json;charset=utf-8;version=v1"),
        );
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, content_type, json)
    }

    /// A call with plain JSON, as tepui's CLI sends.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        tepui_node::testing::call_json(&self.router, "POST", path, Some(body)).await
    }

    async fn add_repo(&self, name: &str, uri: &str) {
        let (status, body) = self
            .post("/package/repository/add", json!({"name": name, "uri": uri}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    fn app(&self, id: &str) -> Option<Value> {
        self.node.read(|s| s.apps.get(id).map(|a| a.spec.clone()))
    }

    fn job(&self, id: &str) -> Option<Value> {
        self.node.read(|s| s.jobs.get(id).map(|j| j.spec.clone()))
    }

    fn installs(&self) -> Vec<String> {
        self.node.read(|s| s.package_installs.keys().cloned().collect())
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
}

/// A Universe tree: `web` 1.0.0 and 1.1.0 (an app with an options schema), `shop` (a group),
/// `report` (jobs only), `hosttool` (an app without an image: it needs the host capability).
fn catalog(root: &Path) {
    let packages = root.join("repo/packages");
    for (rev, version) in [(0, "1.0.0"), (1, "1.1.0")] {
        let dir = packages.join(format!("W/web/{rev}"));
        write(
            &dir,
            "package.json",
            &json!({"packagingVersion": "4.0", "name": "web", "version": version, "maintainer": "ops@example.com",
                    "description": "a small web server", "tags": ["http", "www"], "upgradesFrom": ["*"],
                    "postInstallNotes": "web is up", "postUninstallNotes": "web is gone"})
            .to_string(),
        );
        write(
            &dir,
            "config.json",
            r#"{"type": "object", "properties": {
                 "service": {"type": "object", "additionalProperties": false, "properties": {
                   "name": {"type": "string", "default": "web"},
                   "instances": {"type": "integer", "default": 1, "minimum": 1, "maximum": 5}}},
                 "gateway": {"type": "object", "properties": {"host": {"type": "string", "default": "web.example.test"}}}}}"#,
        );
        write(
            &dir,
            "marathon.json.mustache",
            &format!(
                r#"{{"id": "{{{{service.name}}}}", "instances": {{{{service.instances}}}}, "cpus": 0.1, "mem": 32,
                   "cmd": "echo {version}",
                   "container": {{"type": "MESOS", "docker": {{"image": "{{{{resource.assets.container.docker.image}}}}"}}}},
                   "labels": {{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "{{{{gateway.host}}}}"}},
                   "portDefinitions": [{{"port": 0}}]}}"#
            ),
        );
        write(
            &dir,
            "resource.json",
            r#"{"assets": {"container": {"docker": {"image": "busybox:1.36"}}}}"#,
        );
    }
    let shop = packages.join("S/shop/0");
    write(
        &shop,
        "package.json",
        r#"{"packagingVersion": "4.0", "name": "shop", "version": "1", "maintainer": "m", "description": "a shop", "tags": []}"#,
    );
    write(
        &shop,
        "marathon.json.mustache",
        r#"{"id": "/shop", "apps": [
             {"id": "db", "cmd": "db", "cpus": 0.1, "mem": 32, "container": {"type": "MESOS", "docker": {"image": "busybox:1.36"}}},
             {"id": "web", "cmd": "web", "cpus": 0.1, "mem": 32, "dependencies": ["db"],
              "container": {"type": "MESOS", "docker": {"image": "busybox:1.36"}}}]}"#,
    );
    for (rev, cron) in [(0, "0 2 * * *"), (1, "30 3 * * *")] {
        let report = packages.join(format!("R/report/{rev}"));
        write(
            &report,
            "package.json",
            &json!({"packagingVersion": "4.0", "name": "report", "version": format!("1.{rev}"), "maintainer": "m",
                    "description": "a nightly report", "tags": ["cron"]})
            .to_string(),
        );
        write(
            &report,
            "metronome.json.mustache",
            &format!(
                r#"[{{"id": "report", "run": {{"cmd": "echo report", "cpus": 0.1, "mem": 32, "docker": {{"image": "busybox:1.36"}}}},
                    "schedules": [{{"id": "nightly", "cron": "{cron}", "timezone": "UTC"}}]}},
                   {{"id": "report-cleanup", "dependencies": [{{"id": "report"}}],
                    "run": {{"cmd": "echo clean", "cpus": 0.1, "mem": 32, "docker": {{"image": "busybox:1.36"}}}}}}]"#
            ),
        );
    }
    let host = packages.join("H/hosttool/0");
    write(
        &host,
        "package.json",
        r#"{"packagingVersion": "3.0", "name": "hosttool", "version": "1", "maintainer": "m", "description": "runs on the host", "tags": []}"#,
    );
    write(
        &host,
        "marathon.json.mustache",
        r#"{"id": "/hosttool", "cmd": "sleep 100", "cpus": 0.1, "mem": 32}"#,
    );
}

fn uri(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[tokio::test]
async fn repositories_are_added_listed_and_deleted_as_in_cosmos() {
    let tmp = tempfile::tempdir().unwrap();
    catalog(tmp.path());
    let api = api();
    let (status, ct, body) = api
        .cosmos(
            "/package/repository/add",
            "package.repository.add-request",
            Some("application/vnd.dcos.package.repository.add-response+json;charset=utf-8;version=v1"),
            json!({"name": "local", "uri": tmp.path().display().to_string()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ct,
        "application/vnd.dcos.package.repository.add-response+json;charset=utf-8;version=v1"
    );
    assert_eq!(
        body,
        json!({"repositories": [{"name": "local", "uri": uri(tmp.path())}]})
    );

    // Cosmos's refusals: present already, a bad URI, a repository that cannot be read.
    let (status, ct, body) = api
        .cosmos(
            "/package/repository/add",
            "package.repository.add-request",
            None,
            json!({"name": "local", "uri": "http://elsewhere/repo"}),
        )
        .await;
    assert_eq!(
        (status, ct.as_str()),
        (409, "application/vnd.dcos.package.error+json;charset=utf-8;version=v1")
    );
    assert_eq!(body["type"], "RepositoryAlreadyPresent");
    assert_eq!(
        body["message"],
        "Repository name [local] is already present in the list"
    );
    let (status, body) = api
        .post("/package/repository/add", json!({"name": "rel", "uri": "some/dir"}))
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("RepositoryUriSyntax")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/package/repository/add",
            json!({"name": "gone", "uri": "/nowhere/at/all"}),
        )
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("RepositoryUriConnection")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("not a directory"), "{body}");

    // An index over HTTP, added first.
    let index = tepui_packages::universe::to_index(&tepui_packages::universe::read_dir(tmp.path()).unwrap());
    let served = Router::new().route(
        "/repo.json",
        axum::routing::get(move || {
            let index = index.clone();
            async move { axum::Json(index) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_uri = format!("http://{}/repo.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, served).await });
    let (status, body) = api
        .post(
            "/package/repository/add",
            json!({"name": "remote", "uri": http_uri, "index": 0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, list) = api
        .cosmos(
            "/package/repository/list",
            "package.repository.list-request",
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["repositories"][0]["name"], "remote");
    assert_eq!(list["repositories"][1]["name"], "local");
    let (_, found) = api.post("/package/search", json!({"query": "web"})).await;
    assert_eq!(found["packages"][0]["name"], "web", "{found}");
    let (_, described) = api.post("/package/describe", json!({"packageName": "web"})).await;
    assert_eq!(described["package"]["version"], "1.1.0");

    let (status, _, body) = api
        .cosmos(
            "/package/repository/delete",
            "package.repository.delete-request",
            None,
            json!({"name": "remote"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repositories"], json!([{"name": "local", "uri": uri(tmp.path())}]));
    let (status, body) = api.post("/package/repository/delete", json!({"name": "remote"})).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("RepositoryNotPresent")),
        "{body}"
    );
    assert_eq!(body["message"], "Repository name [remote] is not present in the list");
}

#[tokio::test]
async fn search_and_describe_speak_cosmos() {
    let tmp = tempfile::tempdir().unwrap();
    catalog(tmp.path());
    let api = api();
    api.add_repo("local", &tmp.path().display().to_string()).await;

    let (status, ct, body) = api
        .cosmos(
            "/package/search",
            "package.search-request",
            None,
            json!({"query": "cron"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ct,
        "application/vnd.dcos.package.search-response+json;charset=utf-8;version=v1"
    );
    assert_eq!(
        body,
        json!({"packages": [{"name": "report", "currentVersion": "1.1", "versions": {"1.0": 0, "1.1": 1},
                             "description": "a nightly report", "framework": false, "tags": ["cron"]}]})
    );
    let (_, _, all) = api
        .cosmos("/package/search", "package.search-request", None, json!({}))
        .await;
    let names: Vec<&str> = all["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hosttool", "report", "shop", "web"]);

    // Describe: v3 by default, v2 when asked, a given version, Cosmos's refusals.
    let (status, ct, v3) = api
        .cosmos(
            "/package/describe",
            "package.describe-request",
            None,
            json!({"packageName": "web"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ct,
        "application/vnd.dcos.package.describe-response+json;charset=utf-8;version=v3"
    );
    let pkg = &v3["package"];
    assert_eq!(
        (pkg["version"].as_str(), pkg["releaseVersion"].as_u64()),
        (Some("1.1.0"), Some(1))
    );
    assert_eq!(
        pkg["config"]["properties"]["service"]["properties"]["instances"]["default"],
        1
    );
    assert!(pkg["marathon"]["v2AppMustacheTemplate"].is_string());
    assert_eq!(
        pkg["resource"]["assets"]["container"]["docker"]["image"],
        "busybox:1.36"
    );
    let (status, ct, v2) = api
        .cosmos(
            "/package/describe",
            "package.describe-request",
            Some("application/vnd.dcos.package.describe-response+json;charset=utf-8;version=v2"),
            json!({"packageName": "web", "packageVersion": "1.0.0"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(ct.ends_with("version=v2"), "{ct}");
    assert_eq!(
        (v2["name"].as_str(), v2["version"].as_str()),
        (Some("web"), Some("1.0.0"))
    );
    assert_eq!(v2["selected"], false);
    let (status, _, e) = api
        .cosmos(
            "/package/describe",
            "package.describe-request",
            None,
            json!({"packageName": "nope"}),
        )
        .await;
    assert_eq!((status, e["type"].as_str()), (400, Some("PackageNotFound")));
    assert_eq!(e["message"], "Package [nope] not found");
    let (_, _, e) = api
        .cosmos(
            "/package/describe",
            "package.describe-request",
            None,
            json!({"packageName": "web", "packageVersion": "9"}),
        )
        .await;
    assert_eq!(e["message"], "Version [9] of package [web] not found");
    // The wrong request type, an answer type it does not make, a body without its field.
    let (status, _, e) = api
        .cosmos(
            "/package/describe",
            "package.install-request",
            None,
            json!({"packageName": "web"}),
        )
        .await;
    assert_eq!((status, e["type"].as_str()), (400, Some("not_valid")), "{e}");
    let (status, _, e) = api
        .cosmos(
            "/package/describe",
            "package.describe-request",
            Some("application/vnd.dcos.package.install-response+json;charset=utf-8;version=v1"),
            json!({"packageName": "web"}),
        )
        .await;
    assert_eq!((status, e["type"].as_str()), (400, Some("not_valid")), "{e}");
    let (status, _, e) = api
        .cosmos("/package/describe", "package.describe-request", None, json!({}))
        .await;
    assert_eq!((status, e["type"].as_str()), (400, Some("not_parsed")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("packageName"), "{e}");

    let (_, versions) = api.post("/package/list-versions", json!({"packageName": "web"})).await;
    assert_eq!(versions, json!({"results": {"1.0.0": "0", "1.1.0": "1"}}));
    let (status, rendered) = api
        .post(
            "/package/render",
            json!({"packageName": "web", "options": {"service": {"name": "site"}}}),
        )
        .await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!(rendered["marathonJson"]["id"], "/site");
    assert_eq!(rendered["marathonJson"]["labels"]["DCOS_PACKAGE_NAME"], "web");
}

#[tokio::test]
async fn an_app_package_installs_lists_upgrades_and_uninstalls() {
    let tmp = tempfile::tempdir().unwrap();
    catalog(tmp.path());
    let api = api();
    api.add_repo("local", &tmp.path().display().to_string()).await;

    // Options that break the schema: refused with the field and the reason, nothing made.
    let (status, ct, e) = api
        .cosmos(
            "/package/install",
            "package.install-request",
            None,
            json!({"packageName": "web", "options": {"service": {"instances": 0, "color": "red"}}}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(ct, "application/vnd.dcos.package.error+json;charset=utf-8;version=v1");
    assert_eq!(e["type"], "JsonSchemaMismatch");
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("Options JSON failed validation: "), "{message}");
    assert!(
        message.contains("/service/instances: 0 is less than the minimum of 1"),
        "{message}"
    );
    assert!(message.contains("/service/color: unknown property"), "{message}");
    let pointers: Vec<&str> = e["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instance"]["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/service/color", "/service/instances"]);
    assert!(api.app("/web").is_none() && api.installs().is_empty());

    // Install 1.0.0 with two instances.
    let (status, ct, installed) = api
        .cosmos(
            "/package/install",
            "package.install-request",
            Some("application/vnd.dcos.package.install-response+json;charset=utf-8;version=v2"),
            json!({"packageName": "web", "packageVersion": "1.0.0", "options": {"service": {"instances": 2}}}),
        )
        .await;
    assert_eq!(status, 200, "{installed}");
    assert_eq!(
        ct,
        "application/vnd.dcos.package.install-response+json;charset=utf-8;version=v2"
    );
    assert_eq!(
        installed,
        json!({"packageName": "web", "packageVersion": "1.0.0", "appId": "/web", "postInstallNotes": "web is up"})
    );
    let app = api.app("/web").expect("the app is deployed");
    assert_eq!(app["instances"], 2);
    assert_eq!(app["cmd"], "echo 1.0.0");
    assert_eq!(app["labels"]["DCOS_PACKAGE_NAME"], "web");
    assert_eq!(app["labels"]["DCOS_PACKAGE_VERSION"], "1.0.0");
    assert_eq!(app["labels"]["HAPROXY_0_VHOST"], "web.example.test");
    assert_eq!(app["labels"]["DCOS_PACKAGE_SOURCE"], uri(tmp.path()));

    // Twice: Cosmos's 409.
    let (status, e) = api.post("/package/install", json!({"packageName": "web"})).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (409, Some("PackageAlreadyInstalled")),
        "{e}"
    );
    assert_eq!(e["message"], "Package is already installed");
    // Beside it, under another id: two installs of one package.
    let (status, second) = api
        .post(
            "/package/install",
            json!({"packageName": "web", "appId": "/staging/web"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert!(api.app("/staging/web").is_some());

    let (status, ct, listed) = api
        .cosmos(
            "/package/list",
            "package.list-request",
            None,
            json!({"packageName": "web"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ct,
        "application/vnd.dcos.package.list-response+json;charset=utf-8;version=v1"
    );
    let ids: Vec<&str> = listed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["appId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["/staging/web", "/web"]);
    let web = &listed["packages"][1];
    assert_eq!(web["packageInformation"]["packageDefinition"]["version"], "1.0.0");
    assert_eq!(
        web["packageInformation"]["resourceDefinition"]["assets"]["container"]["docker"]["image"],
        "busybox:1.36"
    );
    assert_eq!(web["tepui"]["options"], json!({"service": {"instances": 2}}));
    assert_eq!(web["tepui"]["apps"], json!(["/web"]));

    // An uninstall by name alone is ambiguous now.
    let (status, e) = api.post("/package/uninstall", json!({"packageName": "web"})).await;
    assert_eq!((status, e["type"].as_str()), (400, Some("AmbiguousAppId")), "{e}");
    assert_eq!(
        e["message"],
        "Multiple apps named [web] are installed: [/staging/web, /web]"
    );

    // Upgrade /web to 1.1.0: the app is replaced in place (a rolling deployment), the
    // options kept; the record follows.
    let (status, ct, updated) = api
        .cosmos(
            "/cosmos/service/update",
            "service.update-request",
            None,
            json!({"appId": "/web", "packageVersion": "1.1.0", "replace": false}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        ct,
        "application/vnd.dcos.service.update-response+json;charset=utf-8;version=v1"
    );
    assert_eq!(updated["package"]["version"], "1.1.0");
    assert_eq!(updated["resolvedOptions"]["service"]["instances"], 2);
    let deployment = updated["marathonDeploymentId"]
        .as_str()
        .expect("a deployment")
        .to_string();
    assert!(
        api.node.read(|s| s.deployments.contains_key(&deployment)),
        "the rolling deployment runs"
    );
    let app = api.app("/web").unwrap();
    assert_eq!(
        (app["cmd"].as_str(), app["instances"].as_u64()),
        (Some("echo 1.1.0"), Some(2))
    );
    assert_eq!(app["labels"]["DCOS_PACKAGE_VERSION"], "1.1.0");
    let record = api.node.read(|s| s.package_installs["/web"].clone());
    assert_eq!(record.version, "1.1.0");

    // A configuration change: the given options merged over the stored ones; then a bad one.
    let (status, updated) = api
        .post(
            "/cosmos/service/update",
            json!({"appId": "/web", "options": {"service": {"instances": 3}}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(api.app("/web").unwrap()["instances"], 3);
    let (status, e) = api
        .post(
            "/cosmos/service/update",
            json!({"appId": "/web", "options": {"service": {"instances": 9}}, "force": true}),
        )
        .await;
    assert_eq!((status, e["type"].as_str()), (400, Some("JsonSchemaMismatch")), "{e}");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("/service/instances: 9 is greater than the maximum of 5"));
    assert_eq!(api.app("/web").unwrap()["instances"], 3, "nothing changed");
    let (_, described) = api.post("/cosmos/service/describe", json!({"appId": "/web"})).await;
    assert_eq!(described["userProvidedOptions"], json!({"service": {"instances": 3}}));
    assert_eq!(described["upgradesTo"], json!(["1.0.0"]));
    let (status, e) = api.post("/cosmos/service/update", json!({"appId": "/nope"})).await;
    assert_eq!((status, e["type"].as_str()), (404, Some("MarathonAppNotFound")), "{e}");

    // Uninstall each: the app and the record go.
    let (status, ct, gone) = api
        .cosmos(
            "/package/uninstall",
            "package.uninstall-request",
            None,
            json!({"packageName": "web", "appId": "web"}),
        )
        .await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(
        ct,
        "application/vnd.dcos.package.uninstall-response+json;charset=utf-8;version=v1"
    );
    assert_eq!(
        gone,
        json!({"results": [{"packageName": "web", "appId": "/web", "packageVersion": "1.1.0", "postUninstallNotes": "web is gone"}]})
    );
    assert!(api.app("/web").is_none());
    let (status, _) = api
        .post("/package/uninstall", json!({"packageName": "web", "all": true}))
        .await;
    assert_eq!(status, 200);
    assert!(api.app("/staging/web").is_none());
    assert!(api.installs().is_empty());
    let (status, e) = api.post("/package/uninstall", json!({"packageName": "web"})).await;
    assert_eq!(
        (status, e["message"].as_str()),
        (400, Some("Package [web] is not installed"))
    );
}

#[tokio::test]
async fn groups_and_jobs_are_packages_too() {
    let tmp = tempfile::tempdir().unwrap();
    catalog(tmp.path());
    let api = api();
    api.add_repo("local", &tmp.path().display().to_string()).await;

    let (status, body) = api.post("/package/install", json!({"packageName": "shop"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["appId"], "/shop");
    assert!(api.app("/shop/db").is_some());
    let web = api.app("/shop/web").unwrap();
    assert_eq!(web["dependencies"], json!(["/shop/db"]));
    assert_eq!(web["labels"]["DCOS_PACKAGE_NAME"], "shop");

    let (status, body) = api
        .post(
            "/package/install",
            json!({"packageName": "report", "packageVersion": "1.0"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["appId"], "/report");
    let job = api.job("report").expect("the job is created");
    assert_eq!(job["schedules"][0]["cron"], "0 2 * * *");
    assert_eq!(job["labels"]["DCOS_PACKAGE_VERSION"], "1.0");
    assert_eq!(
        api.job("report-cleanup").unwrap()["dependencies"],
        json!([{"id": "report"}])
    );

    // The jobs' upgrade changes the schedule in place.
    let (status, body) = api
        .post(
            "/cosmos/service/update",
            json!({"appId": "/report", "packageVersion": "1.1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let job = api.job("report").unwrap();
    assert_eq!(job["schedules"][0]["cron"], "30 3 * * *");
    assert_eq!(job["labels"]["DCOS_PACKAGE_VERSION"], "1.1");

    for name in ["shop", "report"] {
        let (status, body) = api.post("/package/uninstall", json!({"packageName": name})).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(api.app("/shop/db").is_none() && api.app("/shop/web").is_none());
    assert!(api.job("report").is_none() && api.job("report-cleanup").is_none());
    assert!(api.installs().is_empty());
}

#[tokio::test]
async fn a_package_can_do_no_more_than_its_installers_token() {
    let tmp = tempfile::tempdir().unwrap();
    catalog(tmp.path());
    let writer = Identity {
        accessor: Some("w".into()),
        name: "writer".into(),
        management: false,
        capabilities: [tepui_state::Capability::Read, tepui_state::Capability::Write].into(),
        frameworks: vec![],
    };
    let api = api_as(writer);
    // Adding repositories is an operator's: the route says so, the gate enforces it. Here the
    // state is set as an operator would have.
    api.node
        .write(tepui_state::Command::AddPackageRepo {
            repo: tepui_state::PackageRepo {
                name: "local".into(),
                uri: uri(tmp.path()),
            },
            index: None,
        })
        .await
        .unwrap();
    // An app without an image runs on the host: Marathon refuses it to this token, so the
    // install is refused with its reason, and nothing stays behind.
    let (status, e) = api.post("/package/install", json!({"packageName": "hosttool"})).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["type"], "MarathonBadResponse");
    assert!(e["message"].as_str().unwrap().contains("\"host\" capability"), "{e}");
    assert!(api.app("/hosttool").is_none());
    assert!(api.installs().is_empty());
    // What the token may do, it does.
    let (status, body) = api.post("/package/install", json!({"packageName": "web"})).await;
    assert_eq!(status, 200, "{body}");
}
