//! Client verbs: each one HTTP call and a table or JSON.

use std::path::PathBuf;

use anyhow::Context;
use tepui_api::{
    AgentImage, Client, FrameworkView, MemberView, NodeView, PortRequest, PullLine, QuotaRequest, RoleView,
    TaskRunRequest, TaskView, TokenCreateRequest, TokenView, VarPutRequest, VarView, VolumeRequest,
};

use crate::output::{ago, emit, table, when};
use crate::Format;

pub enum Verb {
    AclPolicyApply(String, tepui_api::AclPolicyBody),
    AclPolicies,
    AclPolicyRm(String),
    AclTokenCreate(tepui_api::AclTokenCreateRequest),
    AclTokens,
    AclTokenRevoke(String),
    AclWhoami,
    AclAnonymous(bool),
    Status,
    Nodes,
    Node(String),
    /// A node and the maintenance action's path (`drain?deadline_secs=30`).
    Maintenance(String, String),
    Members,
    TokenCreate(TokenCreateRequest),
    Tokens,
    TokenRevoke(String),
    VarPut(String, String, Option<u64>),
    VarGet(String),
    Vars,
    VarRm(String),
    SecretPut(String, String),
    JobAdd(serde_json::Value),
    Jobs,
    JobShow(String),
    JobRm(String),
    /// A job's id, `--wait`, and the run's own arguments.
    JobRun(String, bool, Vec<String>),
    JobHistory(String),
    /// A run, or every active run of the job.
    JobStop(String, Option<String>),
    JobLogs {
        id: String,
        run: Option<String>,
        how: crate::LogFlags,
    },
    JobGraph,
    /// Disable (true) or enable (false) a job.
    JobSetDisabled(String, bool),
    Secrets,
    SecretRm(String),
    SnapshotSave(PathBuf),
    SnapshotRestore(PathBuf),
    RemovePeer(String),
    RemoveNode(String),
    CaStatus,
    /// Whether the cluster can take a binary that speaks this.
    UpgradeCheck(tepui_common::version::Speaks),
    CaRotate,
    CaFinish,
    TaskRun(Box<crate::TaskRunArgs>),
    Tasks,
    Task(String),
    TaskWatch(String),
    TaskKill(String),
    TaskLogs {
        id: String,
        how: crate::LogFlags,
    },
    TaskExec(String, Vec<String>),
    /// A task and a path in its sandbox.
    TaskFiles(String, String),
    TaskCat(String, String),
    ImagePull(String, Option<String>),
    Images(Option<String>),
    ImageRm(String, Option<String>),
    /// An archive, onto one agent or every ready one, under a reference or its own names.
    ImageImport {
        file: PathBuf,
        agent: Option<String>,
        reference: Option<String>,
    },
    Frameworks,
    FrameworkTeardown(String),
    Roles,
    RoleWeight(String, f64),
    QuotaSet(String, QuotaRequest),
    /// A name and the record type to ask for.
    DnsLookup(String, String),
    DnsRecords,
}

fn dns_table(records: &[tepui_api::DnsRecordView]) -> String {
    let rows = records
        .iter()
        .map(|r| vec![r.name.clone(), r.rtype.clone(), r.ttl.to_string(), r.data.clone()])
        .collect();
    table(&["NAME", "TYPE", "TTL", "DATA"], rows)
}

/// A lookup's answers, and the addresses of SRV targets under them.
fn dns_lookup_table(v: &tepui_api::DnsLookupView) -> String {
    if v.answers.is_empty() {
        return format!("{} has no {} records (the name exists)", v.name, v.qtype);
    }
    let mut out = dns_table(&v.answers);
    if !v.additional.is_empty() {
        out.push_str("\n\nadditional:\n");
        out.push_str(&dns_table(&v.additional));
    }
    out
}

fn nodes_table(nodes: &[NodeView]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            let r = n.resources.as_ref();
            vec![
                n.id.to_string(),
                n.name.clone(),
                n.roles.clone(),
                if n.maintenance.is_empty() || n.maintenance == "active" {
                    n.status.clone()
                } else {
                    format!("{} ({})", n.status, n.maintenance)
                },
                if n.cluster_addr.is_empty() {
                    n.http_addr.clone()
                } else {
                    n.cluster_addr.clone()
                },
                r.map(|r| format!("{}", r.cpus)).unwrap_or_else(|| "-".into()),
                r.map(|r| format!("{} MB", r.mem_mb)).unwrap_or_else(|| "-".into()),
                r.map(|r| format!("{} MB", r.disk_mb)).unwrap_or_else(|| "-".into()),
                r.map(|r| r.ports.join(",")).unwrap_or_else(|| "-".into()),
                ago(n.last_heartbeat_ms_ago),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "ROLES",
            "STATUS",
            "ADDRESS",
            "CPUS",
            "MEM",
            "DISK",
            "PORTS",
            "LAST SEEN",
        ],
        rows,
    )
}

fn ca_table(v: &tepui_api::CaStatusView) -> String {
    let short = |sha: &str| sha.chars().take(16).collect::<String>();
    let mut out = format!("CA generation {}: {}\n", v.generation, v.ca_sha256);
    if v.rotating {
        let retiring: Vec<String> = v.retiring_ca_sha256.iter().map(|s| short(s)).collect();
        out.push_str(&format!(
            "rotating: still trusting {}; waiting for {}\n",
            retiring.join(", "),
            v.pending.join(", ")
        ));
    }
    let rows = v
        .certificates
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.name.clone(),
                if c.ca_sha256.is_empty() {
                    "-".into()
                } else {
                    short(&c.ca_sha256)
                },
                c.not_after_ms
                    .map(|ms| {
                        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                            .to_string()
                    })
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(&["ID", "NAME", "SIGNED BY", "VALID UNTIL"], rows));
    out
}

fn members_table(members: &[MemberView]) -> String {
    let rows = members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.name.clone(),
                m.cluster_addr.clone(),
                m.http_addr.clone(),
                m.raft_role.clone(),
                m.matched_index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "CLUSTER ADDRESS", "HTTP ADDRESS", "RAFT", "MATCHED"],
        rows,
    )
}

/// `PRINCIPAL:ROLE[,ROLE...]`, as `tepui acl policy apply --framework` takes it.
pub fn parse_framework_grant(text: &str) -> anyhow::Result<tepui_api::AclFrameworkGrant> {
    let (principal, roles) = text
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--framework {text:?} must be PRINCIPAL:ROLE[,ROLE...]"))?;
    let roles: Vec<String> = roles.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect();
    if principal.is_empty() || roles.is_empty() {
        anyhow::bail!("--framework {text:?} must be PRINCIPAL:ROLE[,ROLE...]");
    }
    Ok(tepui_api::AclFrameworkGrant {
        principal: principal.to_string(),
        roles,
    })
}

fn tokens_table(tokens: &[TokenView]) -> String {
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.role.clone(),
                if t.revoked { "revoked".into() } else { "valid".into() },
                when(t.expires_at_ms),
                t.uses.to_string(),
                t.description.clone(),
            ]
        })
        .collect();
    table(&["ID", "ROLE", "STATE", "EXPIRES", "USES", "DESCRIPTION"], rows)
}

fn vars_table(vars: &[VarView]) -> String {
    let rows = vars
        .iter()
        .map(|v| vec![v.key.clone(), v.modify_index.to_string(), v.value.clone()])
        .collect();
    table(&["KEY", "INDEX", "VALUE"], rows)
}

fn job_history_table(h: &serde_json::Value) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (key, status) in [("successfulFinishedRuns", "SUCCESS"), ("failedFinishedRuns", "FAILED")] {
        for r in h[key].as_array().into_iter().flatten() {
            rows.push(vec![
                r["id"].as_str().unwrap_or("").to_string(),
                status.to_string(),
                r["createdAt"].as_str().unwrap_or("").to_string(),
                r["finishedAt"].as_str().unwrap_or("").to_string(),
                r["exitCode"].as_i64().map_or("-".into(), |c| c.to_string()),
            ]);
        }
    }
    rows.sort_by(|a, b| b[2].cmp(&a[2]));
    format!(
        "{} succeeded, {} failed\n{}",
        h["successCount"],
        h["failureCount"],
        table(&["RUN", "STATUS", "STARTED", "FINISHED", "EXIT"], rows)
    )
}

fn jobs_table(jobs: &[serde_json::Value]) -> String {
    let rows = jobs
        .iter()
        .map(|j| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            let schedule = crate::jobs::schedule_text(j).unwrap_or_else(|| {
                let parents = crate::jobs::parents(j);
                if parents.is_empty() {
                    "-".into()
                } else {
                    format!("after {}", parents.join(", "))
                }
            });
            let what = j["run"]["docker"]["image"]
                .as_str()
                .map(|i| format!("image {i}"))
                .or_else(|| j["run"]["cmd"].as_str().map(str::to_string))
                .unwrap_or_default();
            let state = if crate::jobs::is_disabled(j) {
                "disabled"
            } else {
                "enabled"
            };
            // The soonest of its schedules' next runs.
            let next = j["schedules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["nextRunAt"].as_str())
                .min()
                .unwrap_or("-")
                .to_string();
            let h = &j["historySummary"];
            let last = match (h["lastSuccessAt"].as_str(), h["lastFailureAt"].as_str()) {
                (Some(ok), Some(bad)) if bad > ok => "failed",
                (Some(_), _) => "succeeded",
                (None, Some(_)) => "failed",
                (None, None) => "-",
            };
            vec![
                text(&j["id"]),
                state.to_string(),
                schedule,
                next,
                last.to_string(),
                what,
            ]
        })
        .collect();
    table(&["ID", "STATE", "SCHEDULE", "NEXT RUN", "LAST", "RUNS"], rows)
}

fn secrets_table(secrets: &[tepui_api::SecretView]) -> String {
    let rows = secrets
        .iter()
        .map(|s| {
            vec![
                s.path.clone(),
                s.version.to_string(),
                crate::output::when(Some(s.modified_at_ms)),
            ]
        })
        .collect();
    table(&["PATH", "VERSION", "MODIFIED"], rows)
}

fn frameworks_table(frameworks: &[FrameworkView]) -> String {
    let rows = frameworks
        .iter()
        .map(|f| {
            vec![
                f.id.clone(),
                f.name.clone(),
                f.user.clone(),
                f.roles.join(","),
                if f.connected {
                    "connected".into()
                } else {
                    "disconnected".into()
                },
                f.tasks.to_string(),
                format!("{}", f.cpus),
                format!("{} MB", f.mem_mb),
                when(Some(f.registered_at_ms)),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "USER",
            "ROLES",
            "STATE",
            "TASKS",
            "CPUS",
            "MEM",
            "REGISTERED",
        ],
        rows,
    )
}

/// `cpus:2 mem:1024`, or `-` for none.
fn amounts(m: &std::collections::BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
}

fn roles_table(roles: &[RoleView]) -> String {
    let rows = roles
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                format!("{}", r.weight),
                r.frameworks.len().to_string(),
                format!("{}", r.cpus),
                format!("{} MB", r.mem_mb),
                amounts(&r.guarantees),
                amounts(&r.limits),
            ]
        })
        .collect();
    table(
        &["ROLE", "WEIGHT", "FRAMEWORKS", "CPUS", "MEM", "GUARANTEE", "LIMIT"],
        rows,
    )
}

pub async fn run(verb: Verb, addr: &str, format: Format) -> anyhow::Result<()> {
    let c = Client::new(addr);
    match verb {
        Verb::Status => {
            let s = c.status().await?;
            emit(format, &s, |s| {
                let leader = s
                    .leader
                    .as_ref()
                    .map(|l| format!("{} ({}) at {}", l.name, l.id, l.cluster_addr))
                    .unwrap_or_else(|| "none".into());
                let mut out = format!(
                    "cluster:  {}\nleader:   {leader}\nterm:     {}\napplied:  {}\nservers:  {}\nagents:   {} ({} ready)\nversion:  {}",
                    s.cluster_id, s.term, s.applied_index, s.servers, s.agents, s.agents_ready, s.version
                );
                if !s.drivers.is_empty() {
                    let rows = s
                        .drivers
                        .iter()
                        .map(|d| {
                            vec![
                                d.name.clone(),
                                d.activations.to_string(),
                                d.last_activation.clone().unwrap_or_else(|| "-".into()),
                                format!("{:.1} ms", d.last_duration_us as f64 / 1000.0),
                                d.next_timeout_ms
                                    .map_or("-".into(), |t| format!("{:.1} s", t as f64 / 1000.0)),
                                d.last_error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    out.push_str("\n\n");
                    out.push_str(&table(
                        &["DRIVER", "RUNS", "LAST WOKEN BY", "TOOK", "TIMEOUT", "LAST ERROR"],
                        rows,
                    ));
                }
                out
            })
        }
        Verb::Nodes => emit(format, &c.nodes().await?, |n| nodes_table(n)),
        Verb::Node(key) => {
            let n: NodeView = c.get(&format!("/v1/nodes/{key}")).await?;
            emit(format, &n, |n| {
                let mut out = nodes_table(std::slice::from_ref(n));
                if !n.attributes.is_empty() {
                    out.push_str("\nattributes:");
                    for (k, v) in &n.attributes {
                        out.push_str(&format!("\n  {k}={v}"));
                    }
                }
                out
            })
        }
        Verb::Members => emit(format, &c.members().await?, |m| members_table(m)),
        Verb::Maintenance(node, action) => {
            let r: serde_json::Value = c
                .post(&format!("/v1/nodes/{node}/{action}"), &serde_json::json!({}))
                .await?;
            emit(format, &r, |r| {
                format!(
                    "node {} is {}",
                    r["name"].as_str().unwrap_or(&node),
                    r["maintenance"].as_str().unwrap_or("?")
                )
            })
        }
        Verb::TokenCreate(req) => {
            let t = c.create_token(&req).await?;
            emit(format, &t, |t| t.token.clone())
        }
        Verb::Tokens => emit(format, &c.tokens().await?, |t| tokens_table(t)),
        Verb::AclPolicyApply(name, body) => {
            let p: tepui_api::AclPolicyView = c.put(&format!("/v1/acl/policies/{name}"), &body).await?;
            emit(format, &p, |p| {
                format!("policy {} applied: {}", p.name, p.body.capabilities.join(", "))
            })
        }
        Verb::AclPolicies => {
            let ps: Vec<tepui_api::AclPolicyView> = c.get("/v1/acl/policies").await?;
            emit(format, &ps, |ps| {
                let rows = ps
                    .iter()
                    .map(|p| {
                        let frameworks: Vec<String> = p
                            .body
                            .frameworks
                            .iter()
                            .map(|g| format!("{}:{}", g.principal, g.roles.join(",")))
                            .collect();
                        vec![
                            p.name.clone(),
                            p.body.capabilities.join(","),
                            frameworks.join(" "),
                            p.body.description.clone(),
                        ]
                    })
                    .collect();
                table(&["NAME", "CAPABILITIES", "FRAMEWORKS", "DESCRIPTION"], rows)
            })
        }
        Verb::AclPolicyRm(name) => {
            let v: serde_json::Value = c.delete(&format!("/v1/acl/policies/{name}")).await?;
            emit(format, &v, |_| format!("policy {name} removed"))
        }
        Verb::AclTokenCreate(req) => {
            let t: tepui_api::AclTokenCreated = c.post("/v1/acl/tokens", &req).await?;
            emit(format, &t, |t| {
                format!(
                    "token {} created (shown once; keep it):\n  {}",
                    t.token.accessor, t.secret
                )
            })
        }
        Verb::AclTokens => {
            let ts: Vec<tepui_api::AclTokenView> = c.get("/v1/acl/tokens").await?;
            emit(format, &ts, |ts| {
                let rows = ts
                    .iter()
                    .map(|t| {
                        vec![
                            t.accessor.clone(),
                            t.name.clone(),
                            if t.management {
                                "management".into()
                            } else {
                                t.policies.join(",")
                            },
                            when(t.expires_at_ms),
                        ]
                    })
                    .collect();
                table(&["ACCESSOR", "NAME", "POLICIES", "EXPIRES"], rows)
            })
        }
        Verb::AclTokenRevoke(accessor) => {
            let v: serde_json::Value = c.delete(&format!("/v1/acl/tokens/{accessor}")).await?;
            emit(format, &v, |_| format!("token {accessor} revoked"))
        }
        Verb::AclWhoami => {
            let me: tepui_api::AclWhoAmI = c.get("/v1/acl/token/self").await?;
            emit(format, &me, |me| {
                format!(
                    "{} {}: {}",
                    me.accessor.as_deref().unwrap_or("anonymous"),
                    me.name,
                    me.capabilities.join(", ")
                )
            })
        }
        Verb::AclAnonymous(read) => {
            let v: tepui_api::AclAnonymous = c.put("/v1/acl/anonymous", &tepui_api::AclAnonymous { read }).await?;
            emit(format, &v, |v| {
                format!("anonymous reads are {}", if v.read { "on" } else { "off" })
            })
        }
        Verb::TokenRevoke(id) => {
            let t = c.revoke_token(&id).await?;
            emit(format, &t, |t| format!("token {} revoked", t.id))
        }
        Verb::VarPut(key, value, cas) => {
            let v = c.put_var(&key, &VarPutRequest { value, cas }).await?;
            emit(format, &v, |v| {
                format!("{} = {:?} (index {})", v.key, v.value, v.modify_index)
            })
        }
        Verb::VarGet(key) => emit(format, &c.get_var(&key).await?, |v| v.value.clone()),
        Verb::Vars => emit(format, &c.vars().await?, |v| vars_table(v)),
        Verb::VarRm(key) => {
            let v: serde_json::Value = c.delete(&format!("/v1/vars/{key}")).await?;
            emit(format, &v, |_| format!("{key} deleted"))
        }
        Verb::SecretPut(path, value) => {
            let v: tepui_api::SecretView = c
                .put(
                    &format!("/v1/secrets/{}", path.trim_start_matches('/')),
                    &tepui_api::SecretPutRequest { value },
                )
                .await?;
            emit(format, &v, |v| {
                format!("secret {} written (version {})", v.path, v.version)
            })
        }
        Verb::JobAdd(job) => {
            let v: serde_json::Value = c.post("/v1/jobs", &job).await?;
            emit(format, &v, |v| {
                format!("job {} created", v["id"].as_str().unwrap_or("?"))
            })
        }
        Verb::Jobs => {
            let v: Vec<serde_json::Value> = c.get("/v1/jobs?embed=schedules&embed=historySummary").await?;
            emit(format, &v, |v| jobs_table(v))
        }
        Verb::JobShow(id) => {
            let v: serde_json::Value = c.get(&format!("/v1/jobs/{id}")).await?;
            emit(format, &v, |v| serde_json::to_string_pretty(v).unwrap_or_default())
        }
        Verb::JobRm(id) => {
            // As `kubectl delete job`: its runs stop with it; its children take over its
            // parents or schedule, as Chronos hands them on.
            let v: serde_json::Value = c
                .delete(&format!("/v1/jobs/{id}?stopCurrentJobRuns=true&handOff=true"))
                .await?;
            emit(format, &v, |_| format!("job {id} removed"))
        }
        Verb::JobRun(id, wait, args) => {
            let run: serde_json::Value = crate::jobs::start_run(&c, &id, &args).await?;
            let run_id = run["id"].as_str().unwrap_or_default().to_string();
            if !wait {
                return emit(format, &run, |_| format!("run {run_id} of {id} started"));
            }
            eprintln!("run {run_id} of {id} started");
            let done = crate::jobs::follow_run(&c, &id, &run_id).await?;
            let status = done["status"].as_str().unwrap_or("").to_string();
            emit(format, &done, |_| format!("run {run_id} of {id}: {status}"))?;
            if status != "SUCCESS" {
                std::process::exit(1);
            }
            Ok(())
        }
        Verb::JobHistory(id) => {
            let job: serde_json::Value = c.get(&format!("/v1/jobs/{id}?embed=history")).await?;
            emit(format, &job["history"], job_history_table)
        }
        Verb::JobStop(id, run) => crate::jobs::stop(&c, &id, run, format).await,
        Verb::JobLogs { id, run, how } => crate::jobs::logs(&c, &id, run, how).await,
        Verb::JobGraph => {
            let jobs: Vec<serde_json::Value> = c.get("/v1/jobs").await?;
            let jobs: Vec<crate::jobs::GraphJob> = jobs.iter().map(crate::jobs::GraphJob::of).collect();
            emit(format, &crate::jobs::graph_json(&jobs), |_| crate::jobs::draw(&jobs))
        }
        Verb::JobSetDisabled(id, disabled) => crate::jobs::set_disabled(&c, &id, disabled, format).await,
        Verb::Secrets => {
            let v: Vec<tepui_api::SecretView> = c.get("/v1/secrets").await?;
            emit(format, &v, |v| secrets_table(v))
        }
        Verb::SecretRm(path) => {
            let v: serde_json::Value = c
                .delete(&format!("/v1/secrets/{}", path.trim_start_matches('/')))
                .await?;
            emit(format, &v, |_| format!("secret {path} removed"))
        }
        Verb::SnapshotSave(file) => {
            let bytes = c.snapshot_save().await?;
            let tmp = file.with_extension("partial");
            // A snapshot holds every secret of the cluster, the CA's key among them.
            write_private(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
            let summary = serde_json::json!({ "file": file, "bytes": bytes.len() });
            emit(format, &summary, |_| {
                format!("saved {} bytes to {}", bytes.len(), file.display())
            })
        }
        Verb::SnapshotRestore(file) => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let r = c.snapshot_restore(bytes).await?;
            emit(format, &r, |r| {
                format!(
                    "restored {} variables and {} tokens (index {})",
                    r.vars, r.tokens, r.restored_index
                )
            })
        }
        Verb::TaskRun(run) => {
            let req = run_request(&run)?;
            let t = c.run_task(&req).await?;
            if run.follow {
                eprintln!("task {} on {} ({})", t.id, t.agent_name, t.state);
                return follow_to_end(&c, &t.id).await;
            }
            emit(format, &t, |t| {
                format!("{}\n{}", t.id, tasks_table(std::slice::from_ref(t)))
            })
        }
        Verb::Tasks => emit(format, &c.tasks().await?, |t| tasks_table(t)),
        Verb::Task(id) => emit(format, &c.task(&id).await?, task_details),
        Verb::TaskKill(id) => {
            let t = c.kill_task(&id).await?;
            emit(format, &t, |t| format!("task {} is {}", t.id, t.state))
        }
        Verb::TaskWatch(id) => {
            let mut states = c.stream(&format!("/v1/tasks/{id}/watch")).await?;
            let mut buf = Vec::new();
            let mut last: Option<TaskView> = None;
            while let Some(chunk) = states.chunk().await.context("the task's state stream broke off")? {
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let t: TaskView = serde_json::from_slice(&line).context("a task state that does not parse")?;
                    match format {
                        Format::Json => println!("{}", serde_json::to_string(&t)?),
                        Format::Table => println!(
                            "{}  {}{}",
                            when(Some(t.updated_at_ms)),
                            t.state,
                            if t.message.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", t.message)
                            }
                        ),
                    }
                    last = Some(t);
                }
            }
            match last {
                Some(t) if t.state != "TASK_FINISHED" => std::process::exit(1),
                _ => Ok(()),
            }
        }
        Verb::TaskLogs { id, how } => task_logs(&c, &id, how).await,
        Verb::TaskFiles(id, path) => {
            let files: Vec<tepui_api::FileInfo> = c.get(&files_path(&id, "browse", &[("path", &path)])?).await?;
            emit(format, &files, |f| files_table(f))
        }
        Verb::TaskCat(id, path) => task_cat(&c, &id, &path).await,
        Verb::TaskExec(id, cmd) => {
            let r = c.exec(&id, cmd).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Format::Table => {
                    use std::io::Write;
                    std::io::stdout().write_all(r.stdout.as_bytes())?;
                    std::io::stderr().write_all(r.stderr.as_bytes())?;
                }
            }
            if r.exit_code != 0 {
                std::process::exit(r.exit_code.clamp(1, 255));
            }
            Ok(())
        }
        Verb::ImagePull(reference, agent) => pull(&c, reference, agent, format).await,
        Verb::Images(agent) => {
            let path = match &agent {
                Some(a) => format!("/v1/images?agent={a}"),
                None => "/v1/images".into(),
            };
            let images: Vec<AgentImage> = c.get(&path).await?;
            emit(format, &images, |i| images_table(i))
        }
        Verb::ImageRm(reference, agent) => {
            let mut path = format!("/v1/images/{reference}");
            if let Some(a) = &agent {
                path.push_str(&format!("?agent={a}"));
            }
            let r: serde_json::Value = c.delete(&path).await?;
            emit(format, &r, |_| format!("removed {reference}"))
        }
        Verb::ImageImport { file, agent, reference } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let params: Vec<(&str, &str)> = [("agent", agent.as_deref()), ("reference", reference.as_deref())]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let url = reqwest::Url::parse_with_params("http://tepui/v1/images/import", &params)?;
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let resp = c.upload(&path, bytes).await?;
            let results: Vec<tepui_api::ImageImportResult> =
                resp.json().await.context("the server's answer is not the import's")?;
            emit(format, &results, |r| import_lines(r))?;
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| r.error.is_some())
                .map(|r| r.agent.as_str())
                .collect();
            if !failed.is_empty() {
                anyhow::bail!("the import failed on {}", failed.join(", "));
            }
            Ok(())
        }
        Verb::Frameworks => emit(format, &c.frameworks().await?, |f| frameworks_table(f)),
        Verb::FrameworkTeardown(id) => {
            let f = c.teardown_framework(&id).await?;
            emit(format, &f, |f| {
                format!(
                    "framework {} ({}) torn down; {} tasks are being killed",
                    f.id, f.name, f.tasks
                )
            })
        }
        Verb::Roles => emit(format, &c.roles().await?, |r| roles_table(r)),
        Verb::RoleWeight(role, weight) => {
            let r = c.set_weight(&role, weight).await?;
            emit(format, &r, |r| format!("role {} has weight {}", r.name, r.weight))
        }
        Verb::DnsLookup(name, rtype) => {
            let v = c.dns_lookup(&name, &rtype).await?;
            if v.rcode != "NOERROR" {
                if let Format::Json = format {
                    emit(format, &v, |_| String::new())?;
                }
                let why = if v.rcode == "NXDOMAIN" {
                    " (no such name in the cluster domain)"
                } else {
                    ""
                };
                anyhow::bail!("{}: {}{why}", v.name, v.rcode);
            }
            emit(format, &v, dns_lookup_table)
        }
        Verb::DnsRecords => emit(format, &c.dns_records().await?, |v| dns_table(&v.records)),
        Verb::QuotaSet(role, req) => {
            let r = c.set_quota(&role, &req).await?;
            emit(format, &r, |r| {
                if r.guarantees.is_empty() && r.limits.is_empty() {
                    format!("role {} has no quota", r.name)
                } else {
                    format!(
                        "role {} is guaranteed {} and limited to {}",
                        r.name,
                        amounts(&r.guarantees),
                        amounts(&r.limits)
                    )
                }
            })
        }
        Verb::RemoveNode(node) => {
            let n = c.remove_node(&node).await?;
            emit(format, &n, |n| format!("removed agent {} ({})", n.name, n.id))
        }
        Verb::CaStatus => emit(format, &c.ca_status().await?, ca_table),
        Verb::UpgradeCheck(b) => {
            let v = match c.upgrade_check(&b.release, b.protocol, b.min_protocol).await {
                // A leader of 0.1.0 has no such route: the nodes are asked what they run.
                Err(tepui_api::ClientError::Api { status: 404, .. }) => crate::upgrade::ask_nodes(&c, &b).await?,
                other => other?,
            };
            emit(format, &v, crate::upgrade::table)?;
            if !v.ok {
                anyhow::bail!(
                    "the cluster cannot take {} now: see the nodes marked NO",
                    v.binary.release
                );
            }
            Ok(())
        }
        Verb::CaRotate => emit(format, &c.ca_rotate().await?, |v| {
            format!(
                "rotation started: nodes renew onto the new CA; the old one is dropped once they all did\n{}",
                ca_table(v)
            )
        }),
        Verb::CaFinish => emit(format, &c.ca_finish().await?, ca_table),
        Verb::RemovePeer(peer) => {
            let m = c.remove_peer(&peer).await?;
            emit(format, &m, |m| format!("removed {peer}\n{}", members_table(m)))
        }
    }
}

fn tasks_table(tasks: &[TaskView]) -> String {
    let rows = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.framework.clone(),
                t.agent_name.clone(),
                match t.healthy {
                    Some(true) => format!("{} (healthy)", t.state.trim_start_matches("TASK_")),
                    Some(false) => format!("{} (unhealthy)", t.state.trim_start_matches("TASK_")),
                    None => t.state.trim_start_matches("TASK_").to_string(),
                },
                t.image.clone().unwrap_or_else(|| "(host)".into()),
                t.cmd.join(" "),
                t.ports
                    .iter()
                    .map(|p| p.host_port.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                t.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                t.message.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "FRAMEWORK",
            "AGENT",
            "STATE",
            "IMAGE",
            "COMMAND",
            "PORTS",
            "EXIT",
            "MESSAGE",
        ],
        rows,
    )
}

fn task_details(t: &TaskView) -> String {
    let mut out = format!(
        "id:       {}\nname:     {}\nagent:    {} ({})\nstate:    {}\nimage:    {}\ncommand:  {}\nresources: {} cpus, {} MB mem, {} MB disk\nnetwork:  {}",
        t.id,
        t.name,
        t.agent_name,
        t.agent_id,
        t.state,
        t.image.clone().unwrap_or_else(|| "(host)".into()),
        t.cmd.join(" "),
        t.cpus,
        t.mem_mb,
        t.disk_mb,
        t.network
    );
    if let Some(ip) = &t.container_ip {
        out.push_str(&format!("\nip:       {ip}"));
    }
    for p in &t.ports {
        out.push_str(&format!(
            "\nport:     {}{} -> {}/{}",
            p.name.as_ref().map(|n| format!("{n} ")).unwrap_or_default(),
            p.host_port,
            p.container_port,
            p.protocol
        ));
    }
    if let Some(code) = t.exit_code {
        out.push_str(&format!("\nexit:     {code}"));
    }
    if let Some(sig) = t.signal {
        out.push_str(&format!("\nsignal:   {sig}"));
    }
    if let Some(r) = &t.reason {
        out.push_str(&format!("\nreason:   {r}"));
    }
    if !t.message.is_empty() {
        out.push_str(&format!("\nmessage:  {}", t.message));
    }
    out
}

fn images_table(images: &[AgentImage]) -> String {
    let field = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))
            .unwrap_or_default()
    };
    let rows = images
        .iter()
        .map(|i| {
            let size = i.image.get("size").and_then(|s| s.as_u64()).unwrap_or(0);
            let digest = field(&i.image, "manifest_digest");
            vec![
                i.agent.clone(),
                field(&i.image, "reference"),
                digest.chars().take(19).collect(),
                format!("{:.1} MB", size as f64 / 1e6),
            ]
        })
        .collect();
    table(&["AGENT", "REFERENCE", "DIGEST", "SIZE"], rows)
}

/// `-p` forms: `[NAME=]CONTAINER`, `[NAME=]HOST:CONTAINER` (bridge), `[NAME=][HOST]` (host),
/// with an optional `/udp`.
fn parse_port(spec: &str, bridge: bool) -> anyhow::Result<PortRequest> {
    let bad = || anyhow::anyhow!("port {spec:?} is not [NAME=]PORT, [NAME=]HOST:CONTAINER or NAME");
    let (spec_body, protocol) = match spec.rsplit_once('/') {
        Some((b, p)) if p == "tcp" || p == "udp" => (b, p.to_string()),
        Some(_) => return Err(bad()),
        None => (spec, "tcp".to_string()),
    };
    let (name, rest) = match spec_body.split_once('=') {
        Some((n, r)) => (Some(n.to_string()), r),
        None if spec_body.chars().all(|c| c.is_ascii_digit() || c == ':') => (None, spec_body),
        None => (Some(spec_body.to_string()), ""),
    };
    let num = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (host_port, container_port) = match rest.split_once(':') {
        Some((h, c)) => (num(h)?, num(c)?),
        None if rest.is_empty() => (0, 0),
        None if bridge => (0, num(rest)?),
        None => (num(rest)?, 0),
    };
    Ok(PortRequest {
        name,
        container_port,
        host_port,
        protocol,
    })
}

fn run_request(r: &crate::TaskRunArgs) -> anyhow::Result<TaskRunRequest> {
    if r.image.is_none() && !r.host {
        anyhow::bail!("give an image, or --host to run the command on the agent's own filesystem");
    }
    let bridge = r.network == "bridge";
    let ports = r
        .ports
        .iter()
        .map(|p| parse_port(p, bridge))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let volumes = r
        .volumes
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            match parts.as_slice() {
                [s, t] => Ok(VolumeRequest {
                    source: s.to_string(),
                    target: t.to_string(),
                    read_only: false,
                }),
                [s, t, "ro"] => Ok(VolumeRequest {
                    source: s.to_string(),
                    target: t.to_string(),
                    read_only: true,
                }),
                _ => Err(anyhow::anyhow!("volume {v:?} is not SOURCE:TARGET[:ro]")),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(TaskRunRequest {
        name: r.name.clone(),
        image: r.image.clone(),
        cmd: r.cmd.clone(),
        env: r.env.iter().cloned().collect(),
        user: r.user.clone(),
        cwd: r.workdir.clone(),
        cpus: r.cpus,
        mem: r.mem,
        disk: r.disk,
        pids: r.pids,
        network: r.network.clone(),
        ports,
        volumes,
        read_only_rootfs: r.read_only,
        kill_grace_period_secs: r.kill_grace,
        agent: r.agent.clone(),
        secrets: r
            .secret_env
            .iter()
            .map(|(var, source)| tepui_api::SecretRequest {
                source: source.clone(),
                env: Some(var.clone()),
                file: None,
            })
            .chain(r.secret_files.iter().map(|(path, source)| tepui_api::SecretRequest {
                source: source.clone(),
                env: None,
                file: Some(path.clone()),
            }))
            .collect(),
    })
}

/// A task's output (its stderr with `stderr`), to the end or, with `follow`, as it comes.
/// `/v1/tasks/ID/files/WHAT` with `params` encoded as a query.
fn files_path(id: &str, what: &str, params: &[(&str, &str)]) -> anyhow::Result<String> {
    let url = reqwest::Url::parse_with_params(&format!("http://tepui/v1/tasks/{id}/files/{what}"), params)?;
    Ok(format!("{}?{}", url.path(), url.query().unwrap_or_default()))
}

/// As `ls -l` shows files: mode, links, owner, group, size, time, path.
fn files_table(files: &[tepui_api::FileInfo]) -> String {
    let rows = files
        .iter()
        .map(|f| {
            vec![
                f.mode.clone(),
                f.nlink.to_string(),
                f.uid.clone(),
                f.gid.clone(),
                f.size.to_string(),
                when(u64::try_from(f.mtime).ok().map(|s| s.saturating_mul(1000))),
                f.path.clone(),
            ]
        })
        .collect();
    table(&["MODE", "LINKS", "UID", "GID", "SIZE", "MODIFIED", "PATH"], rows)
}

/// Prints a file of a task's sandbox, a piece (at most 1 MiB) at a time, up to the size it
/// had when the first piece was asked for.
async fn task_cat(c: &Client, id: &str, path: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let size: tepui_api::FileData = c
        .get(&files_path(id, "read", &[("path", path), ("offset", "-1")])?)
        .await?;
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    while offset < size.offset {
        let piece: tepui_api::FileData = c
            .get(&files_path(
                id,
                "read",
                &[("path", path), ("offset", &offset.to_string())],
            )?)
            .await?;
        if piece.data.is_empty() {
            // The file shrank since its size was asked.
            break;
        }
        out.write_all(piece.data.as_bytes())?;
        // The text's bytes are the file's, except where it was no UTF-8 (replaced).
        offset += piece.data.len() as u64;
    }
    out.flush()?;
    Ok(())
}

pub(crate) async fn task_logs(c: &Client, id: &str, how: crate::LogFlags) -> anyhow::Result<()> {
    let crate::LogFlags { follow, stderr, tail } = how;
    let mut path = format!("/v1/tasks/{id}/logs?follow={follow}&stderr={stderr}");
    if let Some(n) = tail {
        path.push_str(&format!("&tail={n}"));
    }
    copy_stream(c.stream(&path).await?, stderr).await
}

async fn copy_stream(mut resp: reqwest::Response, to_stderr: bool) -> anyhow::Result<()> {
    use std::io::Write;
    while let Some(chunk) = resp.chunk().await.context("the log stream broke off")? {
        if to_stderr {
            std::io::stderr().write_all(&chunk)?;
        } else {
            let mut out = std::io::stdout();
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Prints a task's output until it ends, then exits with the task's exit code. The output
/// and the task's states are streams: nothing here waits on a timer.
async fn follow_to_end(c: &Client, id: &str) -> anyhow::Result<()> {
    // Both asked for at once; the states are watched from the start, so the end is never
    // missed between the two streams.
    let (watch, logs) = (
        format!("/v1/tasks/{id}/watch"),
        format!("/v1/tasks/{id}/logs?follow=true"),
    );
    let (mut states, output) = tokio::try_join!(c.stream(&watch), c.stream(&logs))?;
    copy_stream(output, false).await?;
    let mut last: Option<tepui_api::TaskView> = None;
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = states.chunk().await.context("the task's state stream broke off")? {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                last = Some(serde_json::from_slice(&line).context("a task state that does not parse")?);
            }
        }
        anyhow::Ok(())
    };
    // The output ends with the task; its end is committed a moment later at most.
    if tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .is_err()
    {
        eprintln!("task {id}: its output ended but the task did not, 30 s later");
    }
    let t = match last {
        Some(t) => t,
        None => c.task(id).await?,
    };
    eprintln!(
        "task {} ended {}{}",
        t.id,
        t.state,
        if t.message.is_empty() {
            String::new()
        } else {
            format!(": {}", t.message)
        }
    );
    if t.state != "TASK_FINISHED" {
        std::process::exit(t.exit_code.unwrap_or(1).clamp(1, 255));
    }
    Ok(())
}

/// Pulls with a progress bar per agent (or JSON lines with -o json).
async fn pull(c: &Client, reference: String, agent: Option<String>, format: Format) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut resp = c
        .stream_post(
            "/v1/images/pull",
            &tepui_api::ImagePullRequest {
                reference: reference.clone(),
                agent,
            },
        )
        .await?
        .bytes_stream();
    let bars = indicatif::MultiProgress::new();
    let mut per_agent: std::collections::HashMap<String, indicatif::ProgressBar> = Default::default();
    let style = indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut layers: std::collections::HashMap<(String, String), (u64, u64)> = Default::default();
    let mut failed = false;
    let mut buf = Vec::new();
    while let Some(chunk) = resp.next().await {
        buf.extend_from_slice(&chunk.context("the pull stream broke off")?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(l) = serde_json::from_slice::<PullLine>(&line) else {
                continue;
            };
            if matches!(format, Format::Json) {
                println!("{}", serde_json::to_string(&l)?);
                failed |= l.error.is_some();
                continue;
            }
            let bar = per_agent.entry(l.agent.clone()).or_insert_with(|| {
                let b = bars.add(indicatif::ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(l.agent.clone());
                b
            });
            if let Some(ev) = &l.progress {
                let digest = ev
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .to_string();
                let done = ev.get("done").and_then(|d| d.as_u64()).unwrap_or(0);
                let total = ev.get("total").and_then(|d| d.as_u64()).unwrap_or(0);
                layers.insert((l.agent.clone(), digest), (done, total));
                let (d, t) = layers
                    .iter()
                    .filter(|((a, _), _)| a == &l.agent)
                    .fold((0, 0), |acc, (_, (d, t))| (acc.0 + d, acc.1 + t));
                bar.set_length(t.max(1));
                bar.set_position(d);
                bar.set_message(
                    ev.get("state")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                        .to_lowercase(),
                );
            }
            if let Some(done) = &l.done {
                let r = done
                    .get("reference")
                    .and_then(|r| r.as_str())
                    .unwrap_or(&reference)
                    .to_string();
                bar.finish_with_message(format!("pulled {r}"));
            }
            if let Some(e) = &l.error {
                failed = true;
                bar.abandon_with_message(format!("failed: {}", e.message));
            }
        }
    }
    if failed {
        anyhow::bail!("the pull of {reference} failed on some agents");
    }
    Ok(())
}

/// A line per agent: the references it imported, or why it did not.
fn import_lines(results: &[tepui_api::ImageImportResult]) -> String {
    results
        .iter()
        .map(|r| match &r.error {
            Some(e) => format!("{}: failed: {}", r.agent, e.message),
            None => {
                let refs: Vec<&str> = r
                    .images
                    .iter()
                    .filter_map(|i| i.get("reference").and_then(|v| v.as_str()))
                    .collect();
                format!("{}: imported {}", r.agent, refs.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Puts the terminal in raw mode while alive, so keys reach the remote shell as typed.
#[cfg(unix)]
struct RawTerminal(Option<nix::sys::termios::Termios>);

/// Elsewhere the console stays as it is: lines reach the remote shell when Enter is pressed.
#[cfg(not(unix))]
struct RawTerminal;

#[cfg(not(unix))]
impl RawTerminal {
    fn enter(_want: bool) -> RawTerminal {
        RawTerminal
    }
}

#[cfg(unix)]
impl RawTerminal {
    fn enter(want: bool) -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        if !want || !nix::unistd::isatty(&stdin).unwrap_or(false) {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

#[cfg(unix)]
impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

/// The connection under an exec websocket: plain TCP, or TLS over it.
trait ExecIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ExecIo for T {}

/// `tepui task exec -i/-t`: a websocket to the leader, which relays to the task's agent.
pub async fn exec_interactive(
    addr: &str,
    id: &str,
    cmd: Vec<String>,
    interactive: bool,
    tty: bool,
) -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::Message;
    let c = Client::new(addr);
    // Only the leader holds the agents' streams; ask any server where it is.
    let secure = c.base().starts_with("https://");
    let leader = c.status().await?.leader.map(|l| l.http_addr).unwrap_or_else(|| {
        c.base()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    });
    let scheme = if secure { "wss" } else { "ws" };
    let url = reqwest::Url::parse_with_params(
        &format!("{scheme}://{leader}/v1/tasks/{id}/exec/ws"),
        &[("cmd", serde_json::to_string(&cmd)?), ("tty", tty.to_string())],
    )?;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.as_str().into_client_request()?;
    if let Some(token) = tepui_api::api_token() {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let tcp = tokio::net::TcpStream::connect(&leader)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open an exec session at {leader}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        let Some(config) = tepui_api::api_tls_config() else {
            anyhow::bail!("an exec session over HTTPS needs the CA to trust: give --ca-pin or --ca-file");
        };
        let host = url
            .host_str()
            .unwrap_or("server.tepui")
            .trim_matches(['[', ']'])
            .to_string();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open an exec session at {leader}: {e}"))?;
        Box::new(tls) as Box<dyn ExecIo>
    } else {
        Box::new(tcp) as Box<dyn ExecIo>
    };
    let (socket, _) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            let message = serde_json::from_str::<tepui_api::ErrorBody>(&body)
                .map(|e| e.message)
                .unwrap_or(body);
            anyhow::bail!("{message}");
        }
        Err(e) => anyhow::bail!("cannot open an exec session at {leader}: {e}"),
    };
    let (mut to_server, mut from_server) = socket.split();
    let terminal = RawTerminal::enter(tty && interactive);
    let feeding = async move {
        if !interactive {
            let _ = to_server.send(Message::Text("eof".into())).await;
            return;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = to_server.send(Message::Text("eof".into())).await;
                    return;
                }
                Ok(n) => {
                    if to_server.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let feeder = tokio::spawn(feeding);
    let mut exit_code = 1;
    while let Some(frame) = from_server.next().await {
        use std::io::Write;
        match frame.context("the exec session broke off")? {
            Message::Binary(bytes) if !bytes.is_empty() => {
                if bytes[0] == 2 {
                    let mut err = std::io::stderr();
                    err.write_all(&bytes[1..])?;
                    err.flush()?;
                } else {
                    let mut out = std::io::stdout();
                    out.write_all(&bytes[1..])?;
                    out.flush()?;
                }
            }
            Message::Text(text) => {
                let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                    drop(terminal);
                    anyhow::bail!("{e}");
                }
                exit_code = v.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(1) as i32;
                break;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    feeder.abort();
    drop(terminal);
    if exit_code != 0 {
        std::process::exit(exit_code.clamp(1, 255));
    }
    Ok(())
}

/// Writes `bytes` to a new file only its owner can read (0600, whatever the umask).
#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Elsewhere a new file in the user's own directories is theirs already.
#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn port_forms() {
        let p = parse_port("8080", true).unwrap();
        assert_eq!((p.name, p.host_port, p.container_port), (None, 0, 8080));
        let p = parse_port("web=31005:80", true).unwrap();
        assert_eq!(
            (p.name.as_deref(), p.host_port, p.container_port),
            (Some("web"), 31005, 80)
        );
        let p = parse_port("http", false).unwrap();
        assert_eq!((p.name.as_deref(), p.host_port), (Some("http"), 0));
        let p = parse_port("31010/udp", false).unwrap();
        assert_eq!((p.host_port, p.protocol.as_str()), (31010, "udp"));
        assert!(parse_port("a=b:c", true).is_err());
    }
}
