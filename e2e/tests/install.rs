//! deploy/install.sh as it runs on a fresh machine: inside a new network namespace
//! (`unshare --net --mount`) and a chroot holding nothing but busybox-static, then a second time
//! (nothing changes), `--uninstall`, `--uninstall --purge`; and with `--root DIR` from outside,
//! as a packager runs it. It checks the files, their modes and owners, the `tepui` user in the
//! root's /etc/passwd, that `tepui config check` takes the config it writes, and
//! `systemd-analyze verify` on the units it installs (systemd's package; e2e/setup.sh).
//!
//! Needs root (chroot, namespaces, chown) and busybox-static (e2e/setup.sh).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tepui_e2e::{need_root, tepui_bin, Sandbox};

const BUSYBOX: &str = "/bin/busybox";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (success, stdout, stderr) = run(cmd);
    assert!(success, "{shown} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The binary under test where `dir/tepui` is: a hard link when it can (it is large).
fn place_binary(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("tepui");
    if std::fs::hard_link(tepui_bin(), &to).is_err() {
        std::fs::copy(tepui_bin(), &to).unwrap();
    }
    to
}

/// A root with busybox-static and its applets, an /etc with root alone, and a release
/// directory: install.sh and its units (no binary beside them yet).
fn minimal_root(root: &Path) {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install busybox-static (e2e/setup.sh)"
    );
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "tmp",
        "root",
        "opt/release/systemd",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let applets = ok(Command::new(BUSYBOX).arg("--list-full"));
    for path in applets.lines().filter(|l| !l.is_empty() && *l != "bin/busybox") {
        let link = root.join(path);
        if !link.exists() {
            std::os::unix::fs::symlink("/bin/busybox", link).unwrap();
        }
    }
    // The device nodes a shell needs.
    std::fs::create_dir_all(root.join("dev")).unwrap();
    for (node, minor) in [("null", "3"), ("zero", "5")] {
        ok(Command::new("mknod")
            .args(["-m", "666"])
            .arg(root.join("dev").join(node))
            .args(["c", "1", minor]));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    let deploy = repo().join("deploy");
    std::fs::copy(deploy.join("install.sh"), root.join("opt/release/install.sh")).unwrap();
    for unit in ["tepui-server.service", "tepui-agent.service"] {
        std::fs::copy(
            deploy.join("systemd").join(unit),
            root.join("opt/release/systemd").join(unit),
        )
        .unwrap();
    }
}

/// install.sh with `args` inside `root`: a new network and mount namespace, chrooted, with a
/// clean environment.
fn install_in_chroot(root: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--fork", "--", "chroot"])
        .arg(root)
        .args(["/bin/sh", "/opt/release/install.sh"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    ok(&mut cmd)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().uid()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        let mut got = 0;
        while got < n {
            let m = fb.read(&mut bb[got..n]).unwrap();
            assert!(m > 0, "short read");
            got += m;
        }
        if n == 0 {
            return true;
        }
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The `tepui` entries of the root's /etc/passwd: (uid, gid, home, shell).
fn tepui_users(root: &Path) -> Vec<(u32, u32, String, String)> {
    std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("tepui:"))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].to_string(),
                f[6].to_string(),
            )
        })
        .collect()
}

/// What an installation leaves, whoever ran it; the server's user's uid.
fn check_installed(root: &Path, binary: &Path) -> u32 {
    let bin = root.join("usr/local/bin/tepui");
    assert_eq!(mode(&bin), 0o755);
    assert!(same_bytes(&bin, binary), "the installed binary is the one given");

    let users = tepui_users(root);
    assert_eq!(users.len(), 1, "one tepui user: {users:?}");
    let (uid, gid, home, shell) = users[0].clone();
    assert!((100..1000).contains(&uid), "a system uid: {uid}");
    assert_eq!(home, "/var/lib/tepui");
    assert!(shell.ends_with("nologin"), "{shell}");
    let groups = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert_eq!(
        groups
            .lines()
            .filter(|l| l.starts_with(&format!("tepui:x:{gid}:")))
            .count(),
        1,
        "{groups}"
    );

    for (dir, uid_wanted) in [("var/lib/tepui", uid), ("var/lib/tepui-agent", 0), ("etc/tepui", 0)] {
        let p = root.join(dir);
        assert_eq!(mode(&p), 0o700, "{dir}");
        assert_eq!(owner(&p), uid_wanted, "{dir}");
    }
    let config = root.join("etc/tepui/config.toml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(owner(&config), 0);
    let checked = ok(Command::new(tepui_bin())
        .args(["config", "check", "--config"])
        .arg(&config));
    assert_eq!(checked.trim(), "ok");

    let units = root.join("etc/systemd/system");
    let server = std::fs::read_to_string(units.join("tepui-server.service")).unwrap();
    let agent = std::fs::read_to_string(units.join("tepui-agent.service")).unwrap();
    for line in [
        "User=tepui",
        "Restart=on-failure",
        "LimitNOFILE=",
        "--data-dir /var/lib/tepui\n",
    ] {
        assert!(server.contains(line), "server unit has {line}:\n{server}");
    }
    for line in [
        "KillMode=process\n",
        "Delegate=yes\n",
        "Restart=on-failure\n",
        "LimitNOFILE=",
        "--data-dir /var/lib/tepui-agent\n",
    ] {
        assert!(agent.contains(line), "agent unit has {line}:\n{agent}");
    }
    assert!(!agent.contains("User="), "the agent runs as root: it makes containers");
    for unit in ["tepui-server.service", "tepui-agent.service"] {
        assert_eq!(mode(&units.join(unit)), 0o644);
    }
    uid
}

/// `systemd-analyze verify` on the installed units, with the installed binary where their
/// ExecStart looks (a private mount of /usr/local/bin); skipped when systemd-analyze is absent.
fn verify_units(root: &Path) {
    if run(Command::new("systemd-analyze").arg("--version")).0 {
        let units = root.join("etc/systemd/system");
        let script = format!(
            "mount --make-rprivate / && mount -t tmpfs tmpfs /usr/local/bin && cp {bin} /usr/local/bin/tepui && \
             systemd-analyze verify {units}/tepui-server.service {units}/tepui-agent.service",
            bin = root.join("usr/local/bin/tepui").display(),
            units = units.display()
        );
        let (success, stdout, stderr) = run(Command::new("unshare").args(["--mount", "--", "sh", "-c", &script]));
        assert!(success, "systemd-analyze verify failed:\n{stdout}\n{stderr}");
        let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("tepui-")).collect();
        assert!(complaints.is_empty(), "systemd-analyze verify: {complaints:?}");
    } else {
        eprintln!("systemd-analyze is not installed (Debian's systemd): the units were not verified");
    }
}

#[test]
fn install_sh_in_a_chroot_in_a_fresh_network_namespace() {
    need_root();
    let sb = Sandbox::new("install");
    let root = sb.join("root");
    minimal_root(&root);
    let given = place_binary(&root.join("opt/build"));

    let said = install_in_chroot(
        &root,
        &[
            "--binary",
            "/opt/build/tepui",
            "--bootstrap",
            "--bind",
            "10.0.91.5",
            "--name",
            "node1",
        ],
    );
    assert!(said.contains("tepui installed"), "{said}");
    // No systemd in the chroot: it says how to run it instead of starting anything.
    assert!(said.contains("no systemd here"), "{said}");
    let uid = check_installed(&root, &given);
    let config = std::fs::read_to_string(root.join("etc/tepui/config.toml")).unwrap();
    let server_table = config.split("[agent]").next().unwrap();
    for line in ["bootstrap = true", "bind = \"10.0.91.5\"", "name = \"node1\""] {
        assert!(server_table.contains(line), "{line} in [server]:\n{config}");
    }
    verify_units(&root);

    // Again, with the binary beside the script (a release's layout): nothing else changes, and
    // the operator's config stays as it is.
    std::fs::write(root.join("etc/tepui/config.toml"), "[server]\nbind = \"10.0.91.6\"\n").unwrap();
    let beside = place_binary(&root.join("opt/release"));
    let said = install_in_chroot(&root, &["--bootstrap"]);
    assert!(said.contains("kept the existing"), "{said}");
    assert_eq!(check_installed(&root, &beside), uid, "the same user");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/tepui/config.toml")).unwrap(),
        "[server]\nbind = \"10.0.91.6\"\n"
    );

    // --uninstall removes the binary and the units, keeps the config and the data.
    std::fs::write(root.join("var/lib/tepui/keep-me"), "data").unwrap();
    install_in_chroot(&root, &["--uninstall"]);
    assert!(!root.join("usr/local/bin/tepui").exists());
    assert!(!root.join("etc/systemd/system/tepui-server.service").exists());
    assert!(!root.join("etc/systemd/system/tepui-agent.service").exists());
    assert!(root.join("var/lib/tepui/keep-me").exists());
    assert!(root.join("etc/tepui/config.toml").exists());
    assert_eq!(tepui_users(&root).len(), 1);
    // --purge takes the rest, the user too.
    install_in_chroot(&root, &["--uninstall", "--purge"]);
    for gone in ["var/lib/tepui", "var/lib/tepui-agent", "etc/tepui"] {
        assert!(!root.join(gone).exists(), "{gone}");
    }
    assert!(tepui_users(&root).is_empty());
    for f in ["etc/group", "etc/shadow"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        assert!(!text.contains("tepui:"), "{f}: {text}");
    }
    assert!(std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .starts_with("root:"));
}

#[test]
fn install_sh_into_a_root_directory_for_packagers() {
    need_root();
    let sb = Sandbox::new("install-root");
    let root = sb.join("pkg");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nsvc:x:100:100::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nsvc:x:100:\n").unwrap();
    let binary = place_binary(&sb.join("build"));
    let script = repo().join("deploy/install.sh");
    let install = |extra: &[&str]| {
        let mut cmd = Command::new("sh");
        cmd.arg(&script)
            .arg("--root")
            .arg(&root)
            .arg("--binary")
            .arg(&binary)
            .args(extra);
        ok(&mut cmd)
    };
    // An agent token: the join goes into the [agent] table; nothing is started below a root.
    let said = install(&["--join", "10.0.91.1:5052", "--token", "tepui1.agent.abc.def.ghi"]);
    assert!(!said.contains("started"), "{said}");
    let uid = check_installed(&root, &binary);
    assert_eq!(uid, 101, "the first free system id, 100 being taken");
    let config = std::fs::read_to_string(root.join("etc/tepui/config.toml")).unwrap();
    let agent_table = config.split("[agent]").nth(1).unwrap();
    assert!(agent_table.contains("join = \"10.0.91.1:5052\""), "{config}");
    assert!(agent_table.contains("token = \"tepui1.agent.abc.def.ghi\""), "{config}");
    assert!(!config.split("[agent]").next().unwrap().contains("token"), "{config}");
    verify_units(&root);
    install(&[]);
    assert_eq!(check_installed(&root, &binary), uid, "idempotent");

    // A token of the wrong kind for the role asked is refused before anything is written.
    let mut cmd = Command::new("sh");
    cmd.arg(&script).arg("--root").arg(sb.path()).args([
        "--role",
        "server",
        "--join",
        "10.0.91.1:5052",
        "--token",
        "tepui1.agent.abc.def.ghi",
    ]);
    let (success, _, stderr) = run(&mut cmd);
    assert!(!success && stderr.contains("cannot start a server"), "{stderr}");
    assert!(!sb.join("usr").exists());
}
