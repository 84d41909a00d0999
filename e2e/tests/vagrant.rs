//! The Vagrantfile at the top of the repository: `vagrant validate` takes it (Debian's vagrant
//! package; e2e/setup.sh installs it), and refuses a copy with a mistake, so the check is real.
//! Skipped, saying so, only where vagrant is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use tepui_e2e::Sandbox;

/// Loads a Vagrantfile (ARGV[0]) with a stand-in for `Vagrant.configure` that records every
/// machine's inline shell provisioner and writes it to ARGV[1]/<machine>.sh.
const STAND_IN: &str = r##"
class Recorder
  def initialize(machines, name = nil)
    @machines = machines
    @name = name
  end
  def vm = self
  def define(name) = yield(Recorder.new(@machines, name))
  def provision(kind, **opts)
    @machines[@name] = opts[:inline] if kind == "shell"
  end
  def provider(*) = nil
  def method_missing(*) = self
  def respond_to_missing?(*) = true
end
module Vagrant
  def self.configure(_version) = yield(Recorder.new($machines))
end
$machines = {}
load ARGV[0]
$machines.each { |name, script| File.write(File.join(ARGV[1], "#{name}.sh"), script) }
"##;

fn vagrant_validate(dir: &Path, home: &Path) -> (bool, String) {
    let out = Command::new("vagrant")
        .arg("validate")
        .current_dir(dir)
        .env("VAGRANT_CWD", dir)
        .env("VAGRANT_HOME", home)
        // No version check over the network.
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .expect("vagrant runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_vagrantfile_validates() {
    if Command::new("vagrant").arg("--version").output().is_err() {
        eprintln!("SKIPPED: vagrant is not installed (e2e/setup.sh installs Debian's vagrant package)");
        return;
    }
    let repo: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(repo.join("Vagrantfile")).unwrap();
    // Validated in a copy: vagrant leaves a .vagrant dir where it runs.
    let sb = Sandbox::new("vagrant");
    let (good, bad, home) = (sb.join("good"), sb.join("bad"), sb.join("home"));
    for d in [&good, &bad, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(good.join("Vagrantfile"), &text).unwrap();
    let (ok, said) = vagrant_validate(&good, &home);
    assert!(ok, "vagrant validate:\n{said}");
    assert!(said.contains("validated successfully"), "{said}");

    // Three servers and two agents, each provisioned by a shell script that runs the install
    // script: the Vagrantfile run under a stand-in for Vagrant's configuration object, which
    // writes each machine's script out, then `sh -n` on each.
    let scripts = sb.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let out = Command::new("ruby")
        .args(["-e", STAND_IN])
        .arg(good.join("Vagrantfile"))
        .arg(&scripts)
        .output()
        .expect("ruby runs (vagrant depends on it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut machines: Vec<String> = std::fs::read_dir(&scripts)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    machines.sort();
    assert_eq!(
        machines,
        ["agent1.sh", "agent2.sh", "server1.sh", "server2.sh", "server3.sh"]
    );
    for m in &machines {
        let script = std::fs::read_to_string(scripts.join(m)).unwrap();
        assert!(
            script.contains("sh /vagrant/deploy/install.sh --binary"),
            "{m}:\n{script}"
        );
        let joins = script.contains("--join 192.168.56.11:5052 --token");
        assert_eq!(m == "server1.sh", script.contains("--bootstrap"), "{m}:\n{script}");
        assert_eq!(m != "server1.sh", joins, "{m}:\n{script}");
        let syntax = Command::new("sh").arg("-n").arg(scripts.join(m)).output().unwrap();
        assert!(
            syntax.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
    }

    let broken = text.replace("node.vm.hostname = name", "node.vm.hostnam = name");
    assert_ne!(broken, text);
    std::fs::write(bad.join("Vagrantfile"), broken).unwrap();
    let (ok, said) = vagrant_validate(&bad, &home);
    assert!(!ok, "a Vagrantfile with an unknown setting must not validate:\n{said}");
}
