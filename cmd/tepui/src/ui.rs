//! `tepui ui`: a login link to the web UI carrying a short-lived token derived from the CLI's
//! own (`POST /v1/acl/token/self/derive`), printed and, on a desktop, opened.

use std::path::Path;

use clap::Args;

use crate::output::when;
use crate::{ClientArgs, Format};

#[derive(Args)]
pub struct UiArgs {
    /// How long the link's token lives (at most 24h; never longer than the CLI's own token).
    #[arg(long, default_value = "15m", value_parser = parse_ui_ttl)]
    ttl: String,
    /// Only print the link; do not open a browser.
    #[arg(long)]
    no_open: bool,
    #[command(flatten)]
    c: ClientArgs,
}

fn parse_ui_ttl(s: &str) -> Result<String, String> {
    let d = tepui_api::parse_token_ttl(s)?;
    if d > tepui_api::MAX_DERIVED_TTL {
        return Err(format!("{s:?} is longer than 24h, the longest a login link may last"));
    }
    Ok(s.trim().to_string())
}

/// The UI's login page at `base` (the API's address, as the CLI reaches it) with `secret` in
/// the fragment, which browsers never send to a server (the page reads it and drops it).
pub fn login_link(base: &str, secret: &str) -> String {
    format!("{}/ui/login#token={secret}", base.trim_end_matches('/'))
}

/// Whether to start a browser: not when asked not to, not without a graphical session, not
/// without `xdg-open`.
pub fn should_open(no_open: bool, display: Option<&str>, wayland: Option<&str>, xdg_open: bool) -> bool {
    let graphical = [display, wayland].iter().flatten().any(|v| !v.is_empty());
    !no_open && graphical && xdg_open
}

/// Where `program` is on `path` (a `PATH` value), if it is there and executable.
pub fn on_path(program: &str, path: &str) -> Option<std::path::PathBuf> {
    #[cfg(unix)]
    let executable = |m: &std::fs::Metadata| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o111 != 0
    };
    #[cfg(not(unix))]
    let executable = |_: &std::fs::Metadata| true;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| Path::new(p).metadata().is_ok_and(|m| m.is_file() && executable(&m)))
}

pub async fn run(args: UiArgs) -> anyhow::Result<()> {
    let c = tepui_api::Client::new(&args.c.addr);
    let req = tepui_api::AclTokenDeriveRequest {
        ttl: Some(args.ttl.clone()),
        name: Some("ui login".into()),
    };
    let derived: tepui_api::AclTokenCreated = c.post("/v1/acl/token/self/derive", &req).await?;
    let link = login_link(c.base(), &derived.secret);
    let until = when(derived.token.expires_at_ms);
    match args.c.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "url": link,
                "accessor": derived.token.accessor,
                "expires_at_ms": derived.token.expires_at_ms,
            }))?
        ),
        Format::Table => println!("Open {link} (valid until {until})"),
    }
    let env = |k: &str| std::env::var(k).ok();
    let xdg_open = env("PATH").and_then(|p| on_path("xdg-open", &p));
    let display = env("DISPLAY");
    let wayland = env("WAYLAND_DISPLAY");
    if let Some(program) = xdg_open.filter(|_| should_open(args.no_open, display.as_deref(), wayland.as_deref(), true))
    {
        // The browser outlives this command; its output is not ours to show.
        let started = std::process::Command::new(program)
            .arg(&link)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = started {
            eprintln!("could not start xdg-open ({e}); open the link above yourself");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_carries_the_token_in_its_fragment() {
        assert_eq!(
            login_link("http://127.0.0.1:5050/", "abc.def"),
            "http://127.0.0.1:5050/ui/login#token=abc.def"
        );
        assert_eq!(
            login_link("https://10.0.0.1:5050", "abc.def"),
            "https://10.0.0.1:5050/ui/login#token=abc.def"
        );
    }

    #[test]
    fn a_browser_opens_only_on_a_desktop_with_xdg_open() {
        assert!(should_open(false, Some(":0"), None, true));
        assert!(should_open(false, None, Some("wayland-0"), true));
        assert!(!should_open(true, Some(":0"), None, true), "--no-open");
        assert!(!should_open(false, None, None, true), "no graphical session");
        assert!(!should_open(false, Some(""), Some(""), true), "empty variables");
        assert!(!should_open(false, Some(":0"), None, false), "no xdg-open");
    }

    #[test]
    fn programs_are_found_on_the_path_only_when_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("xdg-open"), "").unwrap();
        std::fs::write(b.join("xdg-open"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("xdg-open"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(on_path("xdg-open", path.to_str().unwrap()), Some(b.join("xdg-open")));
        assert_eq!(on_path("xdg-open", a.to_str().unwrap()), None);
    }

    #[test]
    fn the_ttl_is_a_day_at_most() {
        assert_eq!(parse_ui_ttl("15m").as_deref(), Ok("15m"));
        assert!(parse_ui_ttl("25h").is_err());
        assert!(parse_ui_ttl("soon").is_err());
    }
}
