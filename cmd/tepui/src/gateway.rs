//! `tepui gateway` (what the gateways serve) and `tepui cert` (their certificates), over the
//! `/v1/gateway` API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use tepui_api::Client;
use tepui_proto::gateway::{AgentRoutes, CertPut, CertView, TableView};

use crate::output::{emit, table};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum GatewayCmd {
    /// The live routes of every agent's gateway: hosts, paths, backends and their state.
    Routes(ClientArgs),
    /// What the leader sends the gateways: routes, virtual IPs, and labels it cannot use.
    Table(ClientArgs),
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Store a certificate for a host, kept as a cluster secret; gateways serve it at once.
    Add {
        /// The host it is for (`shop.example.com`, `*.example.com`); the certificate must name it.
        #[arg(long)]
        host: String,
        /// The certificate chain, PEM, leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// Its private key, PEM.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// The certificates the gateways serve.
    Ls(ClientArgs),
    /// Remove a host's certificate.
    Rm {
        host: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn hosts_cell(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "*".into()
    } else {
        hosts.join(",")
    }
}

fn routes_table(agents: &[AgentRoutes]) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for a in agents {
        let Some(g) = &a.gateway else {
            if let Some(e) = &a.error {
                notes.push(format!("{}: {e}", a.agent));
            }
            continue;
        };
        let routes = g.get("routes").and_then(Value::as_array).cloned().unwrap_or_default();
        if routes.is_empty() {
            notes.push(format!("{}: no routes", a.agent));
        }
        for r in routes {
            let hosts: Vec<String> = r
                .get("hosts")
                .and_then(Value::as_array)
                .map(|h| h.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let backends = r.get("backends").and_then(Value::as_array).cloned().unwrap_or_default();
            let up = backends.iter().filter(|b| text(b, "state") == "up").count();
            let mut options = Vec::new();
            if r.get("redirect").and_then(Value::as_bool) == Some(true) {
                options.push("https-redirect".to_string());
            }
            if r.get("sticky").and_then(Value::as_bool) == Some(true) {
                options.push("sticky".to_string());
            }
            options.push(text(&r, "balance"));
            rows.push(vec![
                a.agent.clone(),
                hosts_cell(&hosts),
                r.get("path").and_then(Value::as_str).unwrap_or("/").to_string(),
                format!("{}:{}", text(&r, "app"), text(&r, "port_index")),
                format!("{up}/{}", backends.len()),
                if r.get("tls").and_then(Value::as_bool) == Some(true) {
                    "yes".into()
                } else {
                    "default".into()
                },
                options.join(","),
            ]);
        }
    }
    let mut out = if rows.is_empty() {
        "no gateway serves a route".to_string()
    } else {
        table(&["AGENT", "HOSTS", "PATH", "APP:PORT", "UP", "CERT", "OPTIONS"], rows)
    };
    for n in notes {
        out.push('\n');
        out.push_str(&n);
    }
    out
}

fn table_view(t: &TableView) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = t
        .routes
        .iter()
        .map(|r| {
            vec![
                hosts_cell(&r.hosts),
                r.path.clone().unwrap_or_else(|| "/".into()),
                format!("{}:{}", r.app, r.port_index),
                r.group.clone(),
                r.backends.len().to_string(),
            ]
        })
        .collect();
    out.push_str(&if rows.is_empty() {
        "no routes (apps get one with HAPROXY_GROUP and HAPROXY_{n}_VHOST or HAPROXY_{n}_PATH labels)".to_string()
    } else {
        table(&["HOSTS", "PATH", "APP:PORT", "GROUP", "BACKENDS"], rows)
    });
    if !t.vips.is_empty() {
        let rows = t
            .vips
            .iter()
            .map(|v| {
                vec![
                    v.name.clone().unwrap_or_else(|| "-".into()),
                    format!("{}:{}", v.ip, v.port),
                    v.protocol.clone(),
                    v.apps.join(","),
                    v.backends.len().to_string(),
                ]
            })
            .collect();
        out.push_str("\n\n");
        out.push_str(&table(&["VIP", "ADDRESS", "PROTO", "APPS", "BACKENDS"], rows));
    }
    if !t.problems.is_empty() {
        out.push_str("\n\nproblems:");
        for p in &t.problems {
            out.push_str(&format!("\n  {} {}: {}", p.source, p.field, p.message));
        }
    }
    out
}

fn certs_table(certs: &[CertView]) -> String {
    if certs.is_empty() {
        return "no certificates (tepui cert add --host HOST --cert FILE --key FILE)".into();
    }
    let rows = certs
        .iter()
        .map(|c| {
            vec![
                c.host.clone(),
                c.hosts.join(","),
                c.not_after.clone().unwrap_or_else(|| "-".into()),
                c.problem.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["HOST", "NAMES", "NOT AFTER", "PROBLEM"], rows)
}

pub async fn run_gateway(cmd: GatewayCmd) -> anyhow::Result<()> {
    match cmd {
        GatewayCmd::Routes(c) => {
            let agents: Vec<AgentRoutes> = Client::new(&c.addr).get("/v1/gateway/routes").await?;
            emit(c.output, &agents, |a| routes_table(a))
        }
        GatewayCmd::Table(c) => {
            let t: TableView = Client::new(&c.addr).get("/v1/gateway/table").await?;
            emit(c.output, &t, table_view)
        }
    }
}

fn read_pem(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

pub async fn run_cert(cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Add { host, cert, key, c } => {
            let body = CertPut {
                cert: read_pem(&cert, "certificate")?,
                key: read_pem(&key, "key")?,
            };
            let v: CertView = Client::new(&c.addr)
                .put(&format!("/v1/gateway/certs/{}", host.to_ascii_lowercase()), &body)
                .await?;
            emit(c.output, &v, |v| {
                format!(
                    "certificate for {} stored (names {}; valid until {})",
                    v.host,
                    v.hosts.join(", "),
                    v.not_after.as_deref().unwrap_or("?")
                )
            })
        }
        CertCmd::Ls(c) => {
            let certs: Vec<CertView> = Client::new(&c.addr).get("/v1/gateway/certs").await?;
            emit(c.output, &certs, |c| certs_table(c))
        }
        CertCmd::Rm { host, c } => {
            let v: Value = Client::new(&c.addr)
                .delete(&format!("/v1/gateway/certs/{}", host.to_ascii_lowercase()))
                .await?;
            emit(c.output, &v, |_| format!("certificate for {host} removed"))
        }
    }
}
