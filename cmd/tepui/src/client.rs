//! Client verbs: each one HTTP call and a table or JSON.

use std::path::PathBuf;

use anyhow::Context;
use tepui_api::{Client, MemberView, NodeView, TokenCreateRequest, TokenView, VarPutRequest, VarView};

use crate::output::{ago, emit, table, when};
use crate::Format;

pub enum Verb {
    Status,
    Nodes,
    Node(String),
    Members,
    TokenCreate(TokenCreateRequest),
    Tokens,
    TokenRevoke(String),
    VarPut(String, String, Option<u64>),
    VarGet(String),
    Vars,
    VarRm(String),
    SnapshotSave(PathBuf),
    SnapshotRestore(PathBuf),
    RemovePeer(String),
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
                n.status.clone(),
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
                format!(
                    "cluster:  {}\nleader:   {leader}\nterm:     {}\napplied:  {}\nservers:  {}\nagents:   {} ({} ready)\nversion:  {}",
                    s.cluster_id, s.term, s.applied_index, s.servers, s.agents, s.agents_ready, s.version
                )
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
        Verb::TokenCreate(req) => {
            let t = c.create_token(&req).await?;
            emit(format, &t, |t| t.token.clone())
        }
        Verb::Tokens => emit(format, &c.tokens().await?, |t| tokens_table(t)),
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
        Verb::SnapshotSave(file) => {
            let bytes = c.snapshot_save().await?;
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
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
        Verb::RemovePeer(peer) => {
            let m = c.remove_peer(&peer).await?;
            emit(format, &m, |m| format!("removed {peer}\n{}", members_table(m)))
        }
    }
}
