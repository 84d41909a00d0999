//! `tepui image import` through the real binary, on one server (127.0.73.1) and two agents
//! (127.0.73.2, .3) as their own processes: without `--agent` an archive goes onto every ready
//! agent, as `image pull` does; an OCI layout whose index names no repository (a bare tag, or
//! no `org.opencontainers.image.ref.name` at all, as `skopeo copy ... oci:DIR` writes it) is
//! refused until `--as REF` names it, and then stored under that name.
//!
//! Needs root (layers hold device nodes) and what e2e/setup.sh installs: busybox-static,
//! docker-registry and skopeo.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tepui_api::{AgentImage, ImageImportResult, NodeView};
use tepui_e2e::{http_addr, need_root, spawn_agent, tepui, wait_for, Sandbox};
use tepui_image::testimage::{build_busybox_layout, require_busybox, require_program, tar_dir, Registry};

const SERVER_IP: &str = "127.0.73.1";
const AGENTS: [(&str, &str, &str, &str); 2] = [
    ("a1", "127.0.73.2", "tpe2e-img1", "10.214.73.0/25"),
    ("a2", "127.0.73.3", "tpe2e-img2", "10.214.73.128/25"),
];
const START: Duration = Duration::from_secs(30);
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `tepui image import FILE ARGS... -o json`.
fn import(addr: &str, file: &Path, args: &[&str]) -> tepui_e2e::Output {
    let file = file.display().to_string();
    let mut all = vec!["image", "import", &file, "-o", "json", "--addr", addr];
    all.extend_from_slice(args);
    tepui(&all)
}

/// Which agents hold `reference` (its name as the store writes it: `docker.io/...`).
fn holders(addr: &str, reference: &str) -> Vec<String> {
    let images: Vec<AgentImage> = tepui(&["image", "ls", "-o", "json", "--addr", addr]).ok().json();
    let mut agents: Vec<String> = images
        .into_iter()
        .filter(|i| i.image["reference"].as_str().is_some_and(|r| r.ends_with(reference)))
        .map(|i| i.agent)
        .collect();
    agents.sort();
    agents
}

/// The layout `skopeo copy docker://... oci:DIR` writes when the destination names no tag.
fn skopeo_layout_without_a_name(sb: &Sandbox) -> std::path::PathBuf {
    let registry = Registry::start(&sb.join("registry")).expect("docker-registry starts");
    let built = sb.join("built");
    build_busybox_layout(&built, "v2").unwrap();
    registry
        .push_layout(&built, "v2", "tepui-e2e/pushed")
        .expect("skopeo pushes the layout");
    let dir = sb.join("unnamed");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/tepui-e2e/pushed:v2", registry.host()))
        .arg(format!("oci:{}", dir.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{index}");
    assert!(
        entries[0]["annotations"][ANNOTATION_REF_NAME].is_null(),
        "skopeo named the image after all: {index}"
    );
    dir
}

#[test]
fn imports_go_onto_every_agent_and_unnamed_layouts_take_a_name() {
    need_root();
    require_busybox().unwrap();
    for (program, package) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        require_program(program, package).unwrap();
    }
    let sb = Sandbox::new("images");
    let data = sb.join("s1").display().to_string();
    let mut server = sb.spawn(
        "s1",
        &[
            "server",
            "--bootstrap",
            "--data-dir",
            &data,
            "--bind",
            SERVER_IP,
            "--name",
            "s1",
            "--dns-port",
            "0",
            "--dns-http-port",
            "0",
        ],
    );
    server.wait_ready(START);
    let _agents: Vec<_> = AGENTS
        .iter()
        .map(|(name, ip, bridge, subnet)| {
            let flags = ["--heartbeat-secs", "0.5", "--bridge", bridge, "--bridge-subnet", subnet];
            spawn_agent(&sb, SERVER_IP, name, ip, &flags, START)
        })
        .collect();
    let addr = http_addr(SERVER_IP);
    wait_for("both agents to be ready", START, || {
        let nodes: Vec<NodeView> = tepui(&["node", "ls", "-o", "json", "--addr", &addr]).try_json()?;
        let ready = nodes
            .iter()
            .filter(|n| n.roles == "agent" && n.status == "ready")
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(format!("{ready} ready: {nodes:?}"))
        }
    });

    // An OCI layout whose index gives the image a bare tag: no repository, so no name.
    let tagged = sb.join("tagged");
    build_busybox_layout(&tagged, "v1").unwrap();
    let tagged_tar = sb.join("tagged.tar");
    tar_dir(&tagged, &tagged_tar).unwrap();
    let refused = import(&addr, &tagged_tar, &[]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("give a reference"), "{refused}");
    assert!(refused.stderr.contains("--as"), "the error says how: {refused}");

    // With --as, and without --agent: onto both agents, under that name.
    let out = import(&addr, &tagged_tar, &["--as", "tepui-e2e/tagged:v1"]).ok();
    let mut results: Vec<ImageImportResult> = out.json();
    results.sort_by(|a, b| a.agent.cmp(&b.agent));
    assert_eq!(
        results.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(),
        ["a1", "a2"],
        "{results:?}"
    );
    for r in &results {
        assert!(r.error.is_none(), "{r:?}");
        assert_eq!(r.images.len(), 1, "{r:?}");
        assert_eq!(r.images[0]["reference"], "docker.io/tepui-e2e/tagged:v1", "{r:?}");
    }
    assert_eq!(holders(&addr, "tepui-e2e/tagged:v1"), ["a1", "a2"]);

    // A layout with no name at all (as skopeo writes one), onto one agent.
    let unnamed = skopeo_layout_without_a_name(&sb);
    let unnamed_tar = sb.join("unnamed.tar");
    tar_dir(&unnamed, &unnamed_tar).unwrap();
    let refused = import(&addr, &unnamed_tar, &["--agent", "a2"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("give a reference"), "{refused}");
    let results: Vec<ImageImportResult> = import(&addr, &unnamed_tar, &["--agent", "a2", "--as", "tepui-e2e/bare:2"])
        .ok()
        .json();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].agent, "a2");
    assert_eq!(
        results[0].images[0]["reference"], "docker.io/tepui-e2e/bare:2",
        "{results:?}"
    );
    assert_eq!(holders(&addr, "tepui-e2e/bare:2"), ["a2"]);

    // The table form says what each agent imported.
    let table = tepui(&[
        "image",
        "import",
        &unnamed_tar.display().to_string(),
        "--as",
        "tepui-e2e/bare:3",
        "--addr",
        &addr,
    ])
    .ok()
    .stdout;
    assert!(table.contains("a1: imported docker.io/tepui-e2e/bare:3"), "{table}");
    assert!(table.contains("a2: imported docker.io/tepui-e2e/bare:3"), "{table}");

    // A reference that is not one is refused by the server, naming the field.
    let bad = import(&addr, &unnamed_tar, &["--as", "not a reference"]);
    assert_eq!(bad.code, 1, "{bad}");
    assert!(bad.stderr.contains("not an image reference"), "{bad}");
}
