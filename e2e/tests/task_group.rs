//! Task groups (Mesos' LAUNCH_GROUP on the default executor) against a real server and agent,
//! from a framework written here from Apache Mesos' v1 scheduler HTTP API documents
//! (<https://mesos.apache.org/documentation/latest/scheduler-http-api/>, `mesos.proto`'s
//! `TaskGroupInfo`, `ExecutorInfo.type = DEFAULT`, `Volume.Source.SandboxPath`): plain JSON over
//! HTTP with reqwest, RecordIO read here, sharing nothing with tepui's crates.
//!
//! - `a_task_group_shares_localhost_and_a_volume_and_fails_as_one` (127.0.105.x): a group of two
//!   busybox containers on the bridge: one listens on port 7000, the other connects to it on
//!   127.0.0.1 (the group's own loopback) and writes the answer to a volume of the group's
//!   sandbox (SANDBOX_PATH, PARENT), which the first reads back; the executor (type DEFAULT)
//!   and the tasks with their `executor_id` in `/master/state`, `/master/tasks` and the
//!   operator API; a KILL of the last task ends the executor. Then a group (host network)
//!   where one task exits 3: TASK_FAILED for it, TASK_KILLED for the other, the executor's
//!   end, and every resource back. Last, a group on the bridge outlives its agent (kill -9,
//!   restart), and a KILL of one of its tasks then kills both and ends the executor.
//! - `a_task_group_that_does_not_fit_is_refused_whole` (127.0.106.x): a group bigger than its
//!   offer, one whose executor is not DEFAULT and one with a volume it cannot have: every task
//!   TASK_ERROR (REASON_TASK_GROUP_INVALID) with the reason, nothing launched or held, and the
//!   agent runs the next good group.
//!
//! Needs root, busybox-static and iptables (e2e/setup.sh).

use std::time::Duration;

use serde_json::{json, Value};
use tepui_e2e::mesos::{event_type, Scheduler, SETTLE};
use tepui_e2e::{need_root, tepui, wait_for, Daemon, MarkedProcesses, OneAgentCluster, Sandbox, MARKER_VAR};
use tepui_image::testimage::{build_docker_archive, require_busybox};

const START: Duration = Duration::from_secs(30);
const IMAGE: &str = "tepui-e2e/busybox:groups";

// ------------------------------------------------------------------------------------------
// The cluster and what the tests launch
// ------------------------------------------------------------------------------------------

struct Cluster {
    marked: MarkedProcesses,
    _sb: Sandbox,
    _server: Daemon,
    agent: Daemon,
    /// How the agent starts again on its data dir.
    agent_args: Vec<String>,
    master: String,
}

impl Cluster {
    /// A server and an agent (4 cpus, 4 GiB, ports `ports`, its own bridge), with the busybox
    /// image imported on the agent.
    fn start(label: &str, server_ip: &str, agent_ip: &str, subnet: &str, ports: &str) -> Cluster {
        need_root();
        require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
        let marked = MarkedProcesses::new(label);
        let sb = Sandbox::new(label);
        let c = OneAgentCluster::start(&sb, label, (server_ip, agent_ip), subnet, ports);
        let master = c.master;
        let archive = sb.join("busybox.tar");
        build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
        tepui(&[
            "image",
            "import",
            &archive.display().to_string(),
            "--agent",
            "a1",
            "--addr",
            &master,
        ])
        .ok();
        Cluster {
            marked,
            _sb: sb,
            _server: c.server,
            agent: c.agent,
            agent_args: c.agent_args,
            master,
        }
    }
}

fn framework_info() -> Value {
    json!({
        "user": "root",
        "name": "e2e-task-group-framework",
        "roles": ["*"],
        "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "MULTI_ROLE"}],
        "failover_timeout": 3600,
        "checkpoint": true,
    })
}

fn scalars(cpus: f64, mem: f64) -> Value {
    json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ])
}

/// The default executor of a group; `bridge`: the group gets its own network namespace on the
/// agent's bridge (a `network_infos` entry), else the host's network.
fn default_executor(id: &str, bridge: bool) -> Value {
    let mut x = json!({
        "type": "DEFAULT",
        "executor_id": {"value": id},
        "name": format!("e2e group {id}"),
        "resources": scalars(0.1, 32.0),
    });
    if bridge {
        x["container"] = json!({"type": "MESOS", "network_infos": [{"name": "bridge"}]});
    }
    x
}

/// A task of a group: a busybox container running `shell`, with the group's `shared`
/// directory on `/shared` when asked.
fn member(id: &str, agent: &str, cpus: f64, shell: &str, marker: &str, shared: bool) -> Value {
    let mut container = json!({
        "type": "MESOS",
        "mesos": {"image": {"type": "DOCKER", "docker": {"name": IMAGE}}},
    });
    if shared {
        container["volumes"] = json!([{
            "container_path": "/shared",
            "mode": "RW",
            "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "PARENT", "path": "shared"}},
        }]);
    }
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": {"value": agent},
        "resources": scalars(cpus, 32.0),
        "command": {
            "shell": true,
            "value": shell,
            "environment": {"variables": [{"name": MARKER_VAR, "value": marker}]},
        },
        "container": container,
    })
}

/// What this test's framework asks of the master beyond the shared scheduler's calls.
trait GroupCalls {
    fn launch_group(&self, offer: &Value, executor: Value, tasks: Vec<Value>);
    fn executor_ended(&mut self, executor: &str) -> Value;
    fn stdout(&self, task: &str) -> String;
}

impl GroupCalls for Scheduler {
    /// ACCEPTs `offer` with one LAUNCH_GROUP.
    fn launch_group(&self, offer: &Value, executor: Value, tasks: Vec<Value>) {
        self.accepted(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{
                    "type": "LAUNCH_GROUP",
                    "launch_group": {"executor": executor, "task_group": {"tasks": tasks}},
                }],
                "filters": {"refuse_seconds": 1},
            }
        }));
    }

    /// The executor's end (FAILURE with its executor id).
    fn executor_ended(&mut self, executor: &str) -> Value {
        self.next(&format!("the end of executor {executor}"), SETTLE, |e| {
            event_type(e) == "FAILURE" && e["failure"]["executor_id"]["value"] == executor
        })
    }

    /// A task's stdout, as `GET /v1/tasks/{id}/logs` gives it.
    fn stdout(&self, task: &str) -> String {
        self.get_text(&format!("/v1/tasks/{task}/logs"))
    }
}

fn agent_of(offer: &Value) -> String {
    offer["agent_id"]["value"].as_str().unwrap().to_string()
}

/// The agent's resources in use, from `/master/state`.
fn used_cpus(fw: &Scheduler) -> f64 {
    let state = fw.get("/master/state");
    state["slaves"][0]["used_resources"]["cpus"].as_f64().unwrap_or(0.0)
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn a_task_group_shares_localhost_and_a_volume_and_fails_as_one() {
    let mut c = Cluster::start("grp105", "127.0.105.1", "127.0.105.2", "10.214.105.0/24", "34300-34309");
    let marker = c.marked.value().to_string();
    let mut fw = Scheduler::subscribe(&c.master, framework_info());

    // The server answers one connection, then waits for what the client wrote to the
    // group's volume and prints it; the client connects over the group's loopback until the
    // server answers, writes the answer to the volume, and stays.
    let srv = "echo pong | busybox nc -l -p 7000 >/dev/null; \
               until [ -s /shared/reply ]; do busybox sleep 0.1; done; \
               echo \"srv read: $(cat /shared/reply)\"";
    let cli = "until busybox nc -w 1 127.0.0.1 7000 </dev/null >/shared/reply.tmp 2>/dev/null \
                 && [ -s /shared/reply.tmp ]; do busybox sleep 0.2; done; \
               busybox mv /shared/reply.tmp /shared/reply; \
               echo \"cli got: $(cat /shared/reply)\"; exec busybox sleep 3600";
    let offer = fw.offer(1.0);
    let agent = agent_of(&offer);
    fw.launch_group(
        &offer,
        default_executor("g1", true),
        vec![
            member("g1-srv", &agent, 0.2, srv, &marker, true),
            member("g1-cli", &agent, 0.2, cli, &marker, true),
        ],
    );
    let running = fw.update_until("g1-srv", "TASK_RUNNING");
    assert_eq!(running["executor_id"]["value"], "g1", "{running}");
    fw.update_until("g1-cli", "TASK_RUNNING");
    // One network namespace on the bridge: both tasks have the group's address.
    let ip_of = |fw: &Scheduler, id: &str| fw.get(&format!("/v1/tasks/{id}"))["container_ip"].clone();
    let ip = ip_of(&fw, "g1-srv");
    assert!(ip.as_str().is_some_and(|ip| ip.starts_with("10.214.105.")), "{ip}");
    assert_eq!(ip_of(&fw, "g1-cli"), ip);
    let finished = fw.update_until("g1-srv", "TASK_FINISHED");
    assert_eq!(finished["executor_id"]["value"], "g1", "{finished}");
    let out = fw.stdout("g1-srv");
    assert!(
        out.contains("srv read: pong"),
        "the server read the client's write: {out:?}"
    );
    let out = wait_for("the client's output", SETTLE, || {
        let out = fw.stdout("g1-cli");
        if out.contains("cli got: pong") {
            Ok(out)
        } else {
            Err(format!("{out:?}"))
        }
    });
    assert!(out.contains("cli got: pong"));

    // The executor and its tasks as Mesos shows them. A finished task leaves the rest running.
    let state = fw.get("/master/state");
    let f = &state["frameworks"][0];
    let executors = f["executors"].as_array().unwrap();
    assert_eq!(executors.len(), 1, "{f}");
    assert_eq!(executors[0]["executor_id"], "g1", "{f}");
    assert_eq!(executors[0]["type"], "DEFAULT", "{f}");
    let cli_task = f["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "g1-cli")
        .cloned();
    let cli_task = cli_task.unwrap_or_else(|| panic!("g1-cli in /master/state: {f}"));
    assert_eq!(cli_task["executor_id"], "g1", "{cli_task}");
    assert_eq!(cli_task["state"], "TASK_RUNNING", "{cli_task}");
    let tasks = fw.get("/master/tasks");
    let listed = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "g1-cli")
        .cloned();
    assert_eq!(listed.unwrap()["executor_id"], "g1", "{tasks}");
    let got = fw.operator(json!({"type": "GET_EXECUTORS"}));
    let list = got["get_executors"]["executors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{got}");
    assert_eq!(list[0]["executor_info"]["type"], "DEFAULT", "{got}");
    assert_eq!(list[0]["executor_info"]["executor_id"]["value"], "g1", "{got}");
    let got = fw.operator(json!({"type": "GET_TASKS"}));
    let t = got["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"]["value"] == "g1-cli")
        .cloned()
        .unwrap_or_else(|| panic!("g1-cli in GET_TASKS: {got}"));
    assert_eq!(t["executor_id"]["value"], "g1", "{t}");

    // Killing the last task ends the executor.
    fw.accepted(json!({"type": "KILL", "kill": {"task_id": {"value": "g1-cli"}, "agent_id": {"value": agent}}}));
    fw.update_until("g1-cli", "TASK_KILLED");
    fw.executor_ended("g1");

    // A group where one task fails: the other is killed, the executor ends.
    let offer = fw.offer(1.0);
    let agent = agent_of(&offer);
    fw.launch_group(
        &offer,
        default_executor("g2", false),
        vec![
            member("g2-ok", &agent, 0.2, "exec busybox sleep 3600", &marker, false),
            member("g2-bad", &agent, 0.2, "busybox sleep 1; exit 3", &marker, false),
        ],
    );
    fw.update_until("g2-ok", "TASK_RUNNING");
    let failed = fw.update_until("g2-bad", "TASK_FAILED");
    assert!(
        failed["message"].as_str().unwrap_or("").contains('3'),
        "the exit status is told: {failed}"
    );
    let killed = fw.update_until("g2-ok", "TASK_KILLED");
    assert_eq!(killed["executor_id"]["value"], "g2", "{killed}");
    fw.executor_ended("g2");

    // A group outlives its agent (kill -9 and a restart); a KILL of one of its tasks then
    // takes the whole group down.
    let offer = fw.offer(1.0);
    let agent = agent_of(&offer);
    fw.launch_group(
        &offer,
        default_executor("g3", true),
        vec![
            member("g3-a", &agent, 0.2, "exec busybox sleep 3600", &marker, false),
            member("g3-b", &agent, 0.2, "exec busybox sleep 3600", &marker, false),
        ],
    );
    fw.update_until("g3-a", "TASK_RUNNING");
    fw.update_until("g3-b", "TASK_RUNNING");
    c.agent.kill();
    let args = c.agent_args.clone();
    c.agent.restart(&args);
    c.agent.wait_ready(START);
    fw.accepted(json!({"type": "KILL", "kill": {"task_id": {"value": "g3-a"}, "agent_id": {"value": agent}}}));
    fw.update_until("g3-a", "TASK_KILLED");
    fw.update_until("g3-b", "TASK_KILLED");
    fw.executor_ended("g3");

    // Everything is given back.
    wait_for("the agent's resources back", SETTLE, || {
        let used = used_cpus(&fw);
        let live = fw.operator(json!({"type": "GET_EXECUTORS"}))["get_executors"]["executors"]
            .as_array()
            .map_or(0, Vec::len);
        if used < 1e-9 && live == 0 {
            Ok(())
        } else {
            Err(format!("cpus used {used}, {live} executors"))
        }
    });
}

#[test]
fn a_task_group_that_does_not_fit_is_refused_whole() {
    let c = Cluster::start("grp106", "127.0.106.1", "127.0.106.2", "10.214.106.0/24", "34310-34319");
    let marker = c.marked.value().to_string();
    let mut fw = Scheduler::subscribe(&c.master, framework_info());

    let refused = |fw: &mut Scheduler, ids: &[&str], words: &str| {
        for id in ids {
            let st = fw.update_until(id, "TASK_ERROR");
            assert_eq!(st["reason"], "REASON_TASK_GROUP_INVALID", "{st}");
            let message = st["message"].as_str().unwrap_or("");
            assert!(message.contains(words), "{id}: {message:?} should say {words:?}");
        }
    };

    // More than the agent has (4 cpus): the two tasks and the executor's 0.1 together.
    let offer = fw.offer(1.0);
    let agent = agent_of(&offer);
    fw.launch_group(
        &offer,
        default_executor("big", false),
        vec![
            member("big-a", &agent, 2.0, "exec busybox sleep 3600", &marker, false),
            member("big-b", &agent, 2.0, "exec busybox sleep 3600", &marker, false),
        ],
    );
    refused(
        &mut fw,
        &["big-a", "big-b"],
        "required by task group and its executor are more than available",
    );

    // A custom executor for a group.
    let offer = fw.offer(1.0);
    let mut custom = default_executor("custom", false);
    custom["type"] = json!("CUSTOM");
    custom["command"] = json!({"value": "/bin/true"});
    fw.launch_group(
        &offer,
        custom,
        vec![member(
            "custom-a",
            &agent,
            0.1,
            "exec busybox sleep 3600",
            &marker,
            false,
        )],
    );
    refused(&mut fw, &["custom-a"], "'ExecutorInfo.type' must be 'DEFAULT'");

    // A volume of the task's own sandbox (SELF): only the group's (PARENT) is shared.
    let offer = fw.offer(1.0);
    let mut own = member("own-a", &agent, 0.1, "exec busybox sleep 3600", &marker, true);
    own["container"]["volumes"][0]["source"]["sandbox_path"]["type"] = json!("SELF");
    fw.launch_group(
        &offer,
        default_executor("own", false),
        vec![
            own,
            member("own-b", &agent, 0.1, "exec busybox sleep 3600", &marker, false),
        ],
    );
    refused(&mut fw, &["own-a"], "container.volumes[0]");
    refused(
        &mut fw,
        &["own-b"],
        "Task group is invalid: task own-a: container.volumes[0]",
    );

    // Nothing of them was launched or is held.
    let tasks = fw.get("/master/tasks");
    assert!(tasks["tasks"].as_array().unwrap().is_empty(), "{tasks}");
    let got = fw.operator(json!({"type": "GET_EXECUTORS"}));
    assert!(
        got["get_executors"]["executors"].as_array().is_none_or(Vec::is_empty),
        "{got}"
    );
    assert!(used_cpus(&fw) < 1e-9);

    // The agent serves the next group.
    let offer = fw.offer(1.0);
    let agent = agent_of(&offer);
    fw.launch_group(
        &offer,
        default_executor("good", false),
        vec![member("good-a", &agent, 0.1, "exec busybox sleep 3600", &marker, false)],
    );
    fw.update_until("good-a", "TASK_RUNNING");
    fw.accepted(json!({"type": "KILL", "kill": {"task_id": {"value": "good-a"}, "agent_id": {"value": agent}}}));
    fw.update_until("good-a", "TASK_KILLED");
    fw.executor_ended("good");
}
