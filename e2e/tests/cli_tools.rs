//! The tools around the binary, through the real binary: `tepui version` and `--version`,
//! shell completions that their shells accept (and that complete), man pages that render, `tepui
//! config check`, and a server that takes its flags from a config file (on 127.0.72.1) under
//! the command line's.
//!
//! Uses bash and groff (groff-base, in e2e/setup.sh); zsh and fish are checked when installed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tepui_api::NodeView;
use tepui_e2e::{tepui, wait_for, Sandbox};

const SERVER_IP: &str = "127.0.72.1";
const START: Duration = Duration::from_secs(20);

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn version_names_the_build() {
    let v: Value = tepui(&["version", "-o", "json"]).ok().json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    let commit = v["commit"].as_str().unwrap_or_default().to_string();
    // The test runs in the checkout the binary was built from (when it is one).
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert!(
            commit == head || commit == format!("{head}-dirty"),
            "commit {commit:?}, HEAD {head}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
    let built = v["build_date"].as_str().unwrap_or_default();
    assert!(humantime::parse_rfc3339(built).is_ok(), "build date {built:?}");
    assert!(built.ends_with('Z'), "UTC: {built}");
    assert!(v["target"].as_str().unwrap_or_default().contains("linux"), "{v}");
    assert!(v["rustc"].as_str().unwrap_or_default().starts_with("rustc "), "{v}");
    assert_eq!(v["features"], serde_json::json!(["daemon"]), "{v}");

    let table = tepui(&["version"]).ok().stdout;
    for label in ["commit:", "built:", "target:", "rustc:", "features:"] {
        assert!(table.contains(label), "{table}");
    }
    let line = tepui(&["--version"]).ok().stdout;
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!("tepui {} ({commit} {built} ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
}

#[test]
fn completions_are_scripts_their_shells_take() {
    let sb = Sandbox::new("completions");
    let bash = tepui(&["completions", "bash"]).ok().stdout;
    let script = sb.join("tepui.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // And it completes: verbs, then a verb's flags.
    let complete = |words: &str, cword: usize| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _tepui tepui \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &program]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("tepui ima", 1), "image");
    let flags = complete("tepui image import --a", 3);
    for flag in ["--agent", "--as", "--addr"] {
        assert!(flags.split(' ').any(|f| f == flag), "{flags}");
    }

    for (shell, check) in [("zsh", "zsh"), ("fish", "fish")] {
        let text = tepui(&["completions", shell]).ok().stdout;
        assert!(text.contains("tepui") && text.contains("image"), "{shell}: {text}");
        if installed(check) {
            let file = sb.join(format!("tepui.{shell}"));
            std::fs::write(&file, &text).unwrap();
            let out = Command::new(check).arg("-n").arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{check} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(!tepui(&["completions", "tcsh"]).success());
}

/// A page's roff, checked without groff: a title first, requests groff knows, indents closed.
fn roff_is_sound(page: &Path, roff: &str) {
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "{}: {roff:.80}",
        page.display()
    );
    assert!(
        roff.contains("\n.TH ") || roff.starts_with(".TH "),
        "{}: no .TH",
        page.display()
    );
    let known = [
        "TH", "SH", "SS", "PP", "LP", "P", "TP", "IP", "RS", "RE", "B", "I", "BR", "IR", "RB", "RI", "br", "sp", "nf",
        "fi", "ie", "el", "if", "ds", "nr", "ft", "in", "ti", "\\\"", "EX", "EE",
    ];
    let mut depth = 0i32;
    for line in roff.lines().filter(|l| l.starts_with('.')) {
        let request = line[1..].split_whitespace().next().unwrap_or_default();
        let request = request.trim_end_matches('\\');
        assert!(
            request.is_empty() || known.contains(&request) || request.starts_with("\\\""),
            "{}: unknown request {line:?}",
            page.display()
        );
        match request {
            "RS" => depth += 1,
            "RE" => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{}: .RE without .RS", page.display());
    }
    assert_eq!(depth, 0, "{}: .RS left open", page.display());
}

#[test]
fn man_pages_render() {
    let sb = Sandbox::new("man");
    let dir = sb.join("man1");
    tepui(&["man", "--dir", &dir.display().to_string()]).ok();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "tepui.1",
        "tepui-server.1",
        "tepui-image-import.1",
        "tepui-config-check.1",
        "tepui-operator-ca-rotate.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "no {want} in {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("shim")),
        "the hidden shim has no page: {pages:?}"
    );
    assert!(!pages.iter().any(|p| p.ends_with("-help.1")), "{pages:?}");
    let groff = installed("groff");
    for page in &pages {
        let path = dir.join(page);
        let roff = std::fs::read_to_string(&path).unwrap();
        roff_is_sound(&path, &roff);
        if groff {
            // -ww: every warning; -z: no output, only the checks.
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && warnings.trim().is_empty(), "{page}: {warnings}");
        }
    }
    if groff {
        // Plain ASCII: no bold, underline or overstrike.
        let out = Command::new("groff")
            .args(["-man", "-Tascii", "-P-cbou"])
            .arg(dir.join("tepui-image-import.1"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tepui image import"), "{text}");
        assert!(text.contains("--as"), "{text}");
    }
}

#[test]
fn config_check_says_ok_or_each_problem_with_its_line() {
    let sb = Sandbox::new("config-check");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/config.example.toml");
    let ok = tepui(&["config", "check", "--config", example]);
    assert_eq!((ok.code, ok.stdout.trim()), (0, "ok"), "{ok}");

    let bad = sb.join("bad.toml");
    std::fs::write(
        &bad,
        "data-dir = \"/var/lib/tepui\"\nhttp-prot = 5050\n\n[server]\ndns-port = \"many\"\n[agents]\ncpus = 2\n",
    )
    .unwrap();
    let out = tepui(&["config", "check", "--config", &bad.display().to_string()]);
    assert_eq!(out.code, 1, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |n: usize| format!("{}:{n}: ", bad.display());
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&at(2)) && lines[0].contains("unknown key http-prot"),
        "{out}"
    );
    assert!(lines[1].starts_with(&at(5)) && lines[1].contains("dns-port"), "{out}");
    assert!(
        lines[2].starts_with(&at(6)) && lines[2].contains("unknown table [agents]"),
        "{out}"
    );

    // A daemon refuses to start on it, with the same lines.
    let out = tepui(&["server", "--config", &bad.display().to_string()]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains(&format!("error: {}", at(2))), "{out}");
}

#[test]
fn a_server_takes_its_flags_from_the_file_under_the_command_line() {
    let sb = Sandbox::new("config-server");
    let file = sb.join("tepui.toml");
    let data = sb.join("s1");
    // The file: where the data is, the addresses, names at two levels; the command line: the
    // HTTP port (the file's would be 5072), and a name over both of the file's.
    std::fs::write(
        &file,
        format!(
            "data-dir = {:?}\nbind = \"{SERVER_IP}\"\nname = \"top\"\ndns-port = 0\ndns-http-port = 0\n\
             \n[server]\nbootstrap = true\nname = \"from-file\"\nhttp-port = 5072\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let config = file.display().to_string();
    let addr = format!("{SERVER_IP}:5073");
    let mut server = sb.spawn("s1", &["server", "--config", &config, "--http-port", "5073"]);
    server.wait_ready(START);
    let nodes: Vec<NodeView> = wait_for("the server's node list", START, || {
        tepui(&["node", "ls", "-o", "json", "--addr", &addr]).try_json()
    });
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].name, "from-file", "the table over the top level");
    assert!(data.join("api-token").exists(), "the data dir is the file's");
    let stdout = server.stdout();
    assert!(!stdout.contains("dns:"), "dns-port = 0 turned DNS off: {stdout}");

    // A client verb takes the file's client settings (and none of the daemons').
    std::fs::write(
        sb.join("client.toml"),
        format!("addr = \"{addr}\"\noutput = \"json\"\n"),
    )
    .unwrap();
    let client = sb.join("client.toml").display().to_string();
    let status: Value = tepui(&["status", "--config", &client]).ok().json();
    assert!(status.is_object(), "{status}");
}
