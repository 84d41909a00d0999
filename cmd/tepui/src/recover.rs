//! `tepui operator recover`: quorum-loss recovery on a stopped server, and what it tells the
//! operator.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Args, Clone)]
pub struct RecoverArgs {
    /// The data dir of the surviving server (stopped).
    #[arg(long, env = "TEPUI_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
}

pub fn run(args: RecoverArgs) -> anyhow::Result<()> {
    let r = tepui_server::recover(&args.data_dir)
        .with_context(|| format!("cannot recover the server in {}", args.data_dir.display()))?;
    let who = format!("{} (node {})", r.name, r.node_id);
    let Some(term) = r.term else {
        println!(
            "{who} is already the only voter of cluster {}; nothing to do",
            r.cluster_id
        );
        return Ok(());
    };
    let show = |i: Option<u64>| i.map_or("none".to_string(), |i| i.to_string());
    println!("{who} is now the only voter of cluster {} (term {term})", r.cluster_id);
    println!("its log:");
    println!("  snapshot up to index:       {}", show(r.snapshot_index));
    println!("  applied, known committed:   {}", show(r.committed_index));
    println!("  last entry:                 {}", show(r.last_log_index));
    let (committed, last) = (r.committed_index.unwrap_or(0), r.last_log_index.unwrap_or(0));
    if last > committed {
        println!(
            "  entries {}..={last} were not known here to be committed; they are kept and will be",
            committed + 1
        );
        println!("  committed when it starts (the lost servers may have committed them already)");
    }
    println!(
        "what may be lost: writes the lost servers committed after index {} (they never reached",
        show(r.last_log_index)
    );
    println!("  this server); nothing this server holds is dropped");
    if r.removed.is_empty() {
        println!("no server was removed");
    } else {
        println!("removed from the cluster:");
        for s in &r.removed {
            let name = if s.name.is_empty() { "?" } else { &s.name };
            println!("  {name} (node {}) at {}", s.id, s.cluster_addr);
        }
    }
    println!("next:");
    println!("  1. start this server as before; it leads a cluster of one, agents reconnect by themselves");
    println!("  2. make a server token (tepui token create --role server) and `tepui join` new servers");
    println!("     with empty data dirs; never start a removed server on its old data dir: wipe it first");
    Ok(())
}
