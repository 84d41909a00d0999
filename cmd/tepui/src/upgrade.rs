//! `tepui operator upgrade-check`: what a binary speaks (asked of the binary itself, or known
//! by its release), then the cluster's verdict for each node.

use std::path::Path;

use anyhow::Context;
use tepui_common::version::{known_release, Speaks, RELEASE};

/// What the binary at `binary`, or the release `version`, speaks; this binary's without
/// either.
pub fn binary_speaks(binary: Option<&Path>, version: Option<&str>) -> anyhow::Result<Speaks> {
    if let Some(path) = binary {
        let out = std::process::Command::new(path)
            .args(["version", "-o", "json"])
            .output()
            .with_context(|| format!("cannot run {}", path.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "{} version -o json failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} version -o json did not print JSON", path.display()))?;
        let release = v["version"]
            .as_str()
            .with_context(|| format!("{} version -o json has no version", path.display()))?;
        let number = |k: &str| v[k].as_u64().map(|n| n as u32);
        // 0.1.0 printed no protocols.
        return Ok(match (number("protocol"), known_release(release)) {
            (None, Some(known)) => known,
            (protocol, _) => Speaks::told(Some(release), protocol, number("min_protocol")),
        });
    }
    match version {
        Some(v) => known_release(v).with_context(|| {
            format!("unknown release {v:?}: this tepui knows 0.1.0 and {RELEASE}; give --binary PATH of the new binary instead")
        }),
        None => Ok(Speaks::this()),
    }
}

/// The verdict worked out here, for a cluster whose leader predates the upgrade-check route
/// (0.1.0): each server's release from its `/v1/health`, each agent's from the node list, and
/// the protocols those releases speak.
pub async fn ask_nodes(c: &tepui_api::Client, binary: &Speaks) -> anyhow::Result<tepui_api::UpgradeCheckView> {
    use tepui_common::version::Member;
    let members = c.members().await?;
    let nodes = c.nodes().await?;
    let leader = members.iter().find(|m| m.raft_role == "leader").map(|m| m.id);
    let mut all = Vec::new();
    for m in &members {
        let health = tepui_api::Client::new(&m.http_addr).health().await;
        let (speaks, heard) = match health {
            Ok(h) => (
                known_release(&h.version).unwrap_or_else(|| Speaks::told(Some(&h.version), None, None)),
                true,
            ),
            Err(_) => (Speaks::legacy(), false),
        };
        all.push(Member {
            id: m.id,
            name: m.name.clone(),
            server: true,
            speaks,
            heard,
        });
    }
    for n in nodes.iter().filter(|n| n.roles == "agent") {
        let release = n.version.clone().unwrap_or_default();
        all.push(Member {
            id: n.id,
            name: n.name.clone(),
            server: false,
            speaks: known_release(&release).unwrap_or_else(|| Speaks::told(Some(&release), None, None)),
            heard: n.status == "ready",
        });
    }
    Ok(tepui_api::UpgradeCheckView::build(binary, &all, leader))
}

/// The verdict as a table, with the procedure.
pub fn table(v: &tepui_api::UpgradeCheckView) -> String {
    let rows = v
        .nodes
        .iter()
        .map(|n| {
            vec![
                if n.leader {
                    format!("{} (leader)", n.role)
                } else {
                    n.role.clone()
                },
                n.id.to_string(),
                n.name.clone(),
                if n.heard {
                    n.release.clone()
                } else {
                    format!("{}?", n.release)
                },
                format!("{}..={}", n.min_protocol, n.protocol),
                if n.ok { "yes" } else { "NO" }.into(),
                n.reason.clone(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} (protocols {}..={}) into a cluster that writes protocol {}: {}\n\n",
        v.binary.release,
        v.binary.min_protocol,
        v.binary.protocol,
        v.cluster_protocol,
        if v.ok { "can be taken" } else { "cannot be taken" }
    );
    out.push_str(&crate::output::table(
        &["ROLE", "ID", "NAME", "RELEASE", "PROTOCOLS", "CAN TAKE", "WHY"],
        rows,
    ));
    out.push_str("\n\nhow to upgrade:");
    for (i, step) in v.procedure.iter().enumerate() {
        out.push_str(&format!("\n  {}. {step}", i + 1));
    }
    if v.nodes.iter().any(|n| !n.heard) {
        out.push_str("\n\n(a release with ? was not heard by this leader yet: a server counts as 0.1.0)");
    }
    out
}
