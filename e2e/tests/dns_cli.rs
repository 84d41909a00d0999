//! Service discovery as a user meets it: a Marathon app started through `/v2/apps` is found by
//! `tepui dns lookup` (its A record, and with `--type SRV` its port), listed by `tepui dns
//! records`, answered by Mesos-DNS's HTTP API on port 8123 (no token, as Mesos-DNS) and by
//! `dig` against the DNS port; once the app is deleted its name is NXDOMAIN everywhere, within
//! two seconds of its task ending.
//!
//! Runs `tepui dev` on 127.0.52.1 with ports 35200-35219 and the bridge `tpe2e-dnscli`, its
//! DNS on the default ports (5053, 8123) of that address and its upstream a dead loopback port,
//! so no query leaves the host; needs root, and `dig` (dnsutils, e2e/setup.sh) for its part.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::marathon::Marathon;
use tepui_e2e::{http_addr, need_root, tepui, wait_for, Sandbox};

const IP: &str = "127.0.52.1";
const START: Duration = Duration::from_secs(30);

/// `dig` against the dev node's DNS: its status and answer lines; none when `dig` is missing.
fn dig(args: &[&str]) -> Option<(String, Vec<String>)> {
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.52.1",
            "-p",
            "5053",
            "+tries=1",
            "+time=2",
            "+noall",
            "+comments",
            "+answer",
        ])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no status in dig's answer:\n{text}"));
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    Some((status, answers))
}

#[test]
fn an_app_is_found_by_name_through_the_cli_mesos_dns_api_and_dig_until_it_is_deleted() {
    need_root();
    let sb = Sandbox::new("dnscli");
    let data = sb.join("data").display().to_string();
    let mut dev = sb.spawn(
        "dev",
        &[
            "dev",
            "--data-dir",
            &data,
            "--bind",
            IP,
            "--name",
            "dnscli1",
            "--ports",
            "35200-35219",
            "--bridge",
            "tpe2e-dnscli",
            "--bridge-subnet",
            "10.214.52.0/24",
            "--dns-upstream",
            "127.0.52.1:1",
        ],
    );
    dev.wait_ready(START);
    let stdout = dev.stdout();
    assert!(
        stdout.contains("127.0.52.1:5053") && stdout.contains("127.0.52.1:8123"),
        "{stdout}"
    );
    let addr = http_addr(IP);
    let lookup = |args: &[&str]| {
        let mut all = vec!["dns", "lookup"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--addr", &addr]);
        tepui(&all)
    };

    let marathon = Marathon::new(&addr);
    marathon
        .call(
            Method::POST,
            "/v2/apps",
            Some(&json!({
                "id": "/web", "cmd": "exec sleep 600", "cpus": 0.01, "mem": 16, "instances": 1,
                "portDefinitions": [{"port": 0, "name": "http"}],
            })),
        )
        .expect(201, "POST /v2/apps");
    let app = marathon.wait_settled("/web", 1, None, Duration::from_secs(60));
    let task = app["tasks"][0].clone();
    let task_id = task["id"].as_str().unwrap().to_string();
    let port = task["ports"][0].as_u64().expect("the task has a port");
    assert!((35200..=35219).contains(&port), "{task}");

    // The CLI, through the API: the A record (the agent's address), then the SRV with the port.
    let found = wait_for("web.marathon.mesos to resolve", Duration::from_secs(5), || {
        let out = lookup(&["web.marathon.mesos"]);
        if out.success() {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert!(
        found.stdout.contains("NAME") && found.stdout.contains("web.marathon.mesos.") && found.stdout.contains(IP),
        "{found}"
    );
    let srv = lookup(&["_web._tcp.marathon.mesos", "--type", "SRV"]).ok();
    assert!(
        srv.stdout.contains("SRV") && srv.stdout.contains(&format!(" {port} web-")),
        "{srv}"
    );
    assert!(
        srv.stdout.contains("additional:") && srv.stdout.contains(".marathon.slave.mesos."),
        "{srv}"
    );
    let srv_json: Value = lookup(&["_web._tcp.marathon.mesos", "-t", "srv", "-o", "json"])
        .ok()
        .json();
    assert_eq!(srv_json["rcode"], "NOERROR", "{srv_json}");
    assert_eq!(srv_json["answers"].as_array().unwrap().len(), 1, "{srv_json}");
    let target = srv_json["answers"][0]["data"].as_str().unwrap().to_string();
    assert!(target.starts_with(&format!("0 1 {port} web-")), "{srv_json}");
    let target_host = target.rsplit(' ').next().unwrap().to_string();

    // Every record, as a table and as JSON.
    let records = tepui(&["dns", "records", "--addr", &addr]).ok().stdout;
    assert!(
        records.contains("NAME") && records.contains("TYPE") && records.contains("DATA"),
        "{records}"
    );
    assert!(
        records.contains("leader.mesos.") && records.contains("_web._tcp.marathon.mesos."),
        "{records}"
    );
    let all: Value = tepui(&["dns", "records", "-o", "json", "--addr", &addr]).ok().json();
    assert_eq!(all["domain"], "mesos.");
    assert!(all["records"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "web.marathon.mesos.", "type": "A", "ttl": 5, "data": IP})));

    // Mesos-DNS's API on its own port, without a token.
    let mesos_dns = Marathon::with_authorization(&format!("{IP}:8123"), None);
    let hosts = mesos_dns.get("/v1/hosts/web.marathon.mesos").unwrap();
    assert_eq!(hosts, json!([{"host": "web.marathon.mesos.", "ip": IP}]));
    let services = mesos_dns.get("/v1/services/_web._tcp.marathon.mesos").unwrap();
    assert_eq!(
        services,
        json!([{"service": "_web._tcp.marathon.mesos", "host": target_host, "ip": IP, "port": port.to_string()}])
    );
    let version = mesos_dns.get("/v1/version").unwrap();
    assert_eq!(version["Service"], "Mesos-DNS", "{version}");
    let config = mesos_dns.get("/v1/config").unwrap();
    assert_eq!(config["Port"], 5053, "{config}");
    assert_eq!(config["HttpPort"], 8123, "{config}");
    assert_eq!(config["Resolvers"], json!(["127.0.52.1:1"]), "{config}");
    // Only Mesos-DNS's routes are there: none of tepui's API.
    assert_eq!(mesos_dns.call(Method::GET, "/v2/apps", None).status, 404);

    // A real resolver client.
    let dug = dig(&["web.marathon.mesos"]);
    match &dug {
        Some((status, answers)) => {
            assert_eq!(status, "NOERROR", "{answers:?}");
            assert!(
                answers
                    .iter()
                    .any(|a| a.starts_with("web.marathon.mesos.") && a.ends_with(IP)),
                "{answers:?}"
            );
            let (status, answers) = dig(&["_web._tcp.marathon.mesos", "SRV"]).unwrap();
            assert_eq!(status, "NOERROR");
            assert!(
                answers.iter().any(|a| a.contains(&format!(" {port} web-"))),
                "{answers:?}"
            );
        }
        None => eprintln!("dig is not installed (dnsutils; e2e/setup.sh): its part is skipped"),
    }

    // Deleted: the task ends and the name goes, within two seconds of each other.
    marathon
        .call(Method::DELETE, "/v2/apps/web", None)
        .expect(200, "DELETE /v2/apps/web");
    let deleted = Instant::now();
    let mut ended: Option<Instant> = None;
    let mut gone: Option<Instant> = None;
    wait_for("the task to end and its name to go", Duration::from_secs(30), || {
        if ended.is_none() {
            let t = marathon.get(&format!("/v1/tasks/{task_id}"))?;
            if ["TASK_KILLED", "TASK_FINISHED", "TASK_FAILED"].contains(&t["state"].as_str().unwrap_or("")) {
                ended = Some(Instant::now());
            }
        }
        if gone.is_none() {
            let v = marathon.get("/v1/dns/lookup?name=web.marathon.mesos&type=A")?;
            if v["rcode"] == "NXDOMAIN" {
                gone = Some(Instant::now());
            }
        }
        match (ended, gone) {
            (Some(e), Some(g)) => Ok((e, g)),
            _ => Err(format!("ended {ended:?}, gone {gone:?}")),
        }
    });
    let (ended, gone) = (ended.unwrap(), gone.unwrap());
    // The name goes as the kill starts (a killing task is not found), not when it has ended.
    assert!(
        gone <= deleted + Duration::from_secs(2) && gone <= ended + Duration::from_secs(2),
        "the name went {:?} after the delete, the task ended {:?} after it",
        gone - deleted,
        ended - deleted
    );
    eprintln!(
        "deleted → ended {:?}, → NXDOMAIN {:?}",
        ended - deleted,
        gone.saturating_duration_since(deleted)
    );

    // NXDOMAIN everywhere: one line and exit 1 from the CLI, an empty entry from Mesos-DNS's
    // API, NXDOMAIN from dig.
    let nx = lookup(&["web.marathon.mesos"]);
    assert_eq!(nx.code, 1, "{nx}");
    assert_eq!(nx.stderr.trim().lines().count(), 1, "{nx}");
    assert!(nx.stderr.contains("web.marathon.mesos.: NXDOMAIN"), "{nx}");
    assert_eq!(
        mesos_dns.get("/v1/hosts/web.marathon.mesos").unwrap(),
        json!([{"host": "", "ip": ""}])
    );
    if dug.is_some() {
        let (status, answers) = dig(&["web.marathon.mesos"]).unwrap();
        assert_eq!(status, "NXDOMAIN", "{answers:?}");
    }
    // A name outside the domain is not this server's to answer over the API.
    let outside = lookup(&["example.com"]);
    assert_eq!(outside.code, 1, "{outside}");
    assert!(outside.stderr.contains("not in the cluster domain"), "{outside}");
}
