//! The tools around the binary: `tepui version`, shell completions and man pages, all from the
//! CLI's own definition.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::Format;

/// What this binary is, as the build script recorded it (build.rs).
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    pub version: &'static str,
    /// The cluster protocol it speaks, and the oldest it works beside (upgrade-check reads
    /// them from `version -o json`).
    pub protocol: u32,
    pub min_protocol: u32,
    /// The short commit hash, `-dirty` if the tree had changes, `unknown` without git.
    pub commit: &'static str,
    /// UTC, RFC 3339 (SOURCE_DATE_EPOCH when the build set it).
    pub build_date: &'static str,
    pub target: &'static str,
    pub rustc: &'static str,
    pub features: Vec<&'static str>,
}

pub fn version_info() -> VersionInfo {
    VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        protocol: tepui_common::version::PROTOCOL,
        min_protocol: tepui_common::version::MIN_PROTOCOL,
        commit: env!("TEPUI_GIT_COMMIT"),
        build_date: env!("TEPUI_BUILD_DATE"),
        target: env!("TEPUI_BUILD_TARGET"),
        rustc: env!("TEPUI_RUSTC_VERSION"),
        features: env!("TEPUI_FEATURES").split(',').filter(|f| !f.is_empty()).collect(),
    }
}

/// `tepui --version`: one line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TEPUI_GIT_COMMIT"),
    " ",
    env!("TEPUI_BUILD_DATE"),
    " ",
    env!("TEPUI_BUILD_TARGET"),
    ")"
);

#[derive(Args, Clone)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

pub fn print_version(args: &VersionArgs) -> anyhow::Result<()> {
    let v = version_info();
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Table => {
            let features = if v.features.is_empty() {
                "none (client only)".to_string()
            } else {
                v.features.join(", ")
            };
            println!("tepui {}", v.version);
            println!(
                "  protocol:  {} (works beside {}..={})",
                v.protocol, v.min_protocol, v.protocol
            );
            println!("  commit:    {}", v.commit);
            println!("  built:     {}", v.build_date);
            println!("  target:    {}", v.target);
            println!("  rustc:     {}", v.rustc);
            println!("  features:  {features}");
        }
    }
    Ok(())
}

#[derive(Args, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for a shell, e.g. `tepui completions bash >
/// /etc/bash_completion.d/tepui`.
pub fn print_completions(args: &CompletionsArgs, mut cli: clap::Command) {
    clap_complete::generate(args.shell, &mut cli, "tepui", &mut std::io::stdout());
}

#[derive(Args, Clone)]
pub struct ManArgs {
    /// Where to write the pages (tepui.1, tepui-server.1, tepui-image-import.1...); made if
    /// missing.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn write_man_pages(args: &ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    let pages = man_pages(cli, &args.dir)?;
    println!("wrote {} man pages to {}", pages.len(), args.dir.display());
    Ok(())
}

/// Writes one page per visible command, `tepui.1` and `tepui-SUB[-SUB...].1`, and returns
/// their paths.
pub fn man_pages(mut cli: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    // Built, so that each subcommand has its page name (`tepui-image-import`), its command line
    // (`tepui image import`) and the global flags.
    cli.build();
    let mut written = Vec::new();
    write_page(&cli, dir, &mut written)?;
    Ok(written)
}

fn write_page(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let page = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(page.to_uppercase())
        .source(format!("tepui {}", env!("CARGO_PKG_VERSION")))
        .manual("tepui manual");
    let mut roff = Vec::new();
    man.render(&mut roff)
        .with_context(|| format!("cannot render the page of {page}"))?;
    let path = dir.join(format!("{page}.1"));
    std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_page(sub, dir, written)?;
    }
    Ok(())
}
