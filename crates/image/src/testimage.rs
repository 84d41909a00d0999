//! Test support (feature `test-support`): a tiny real image built from Debian's busybox-static,
//! written as an OCI layout or a `docker save` archive, and a real registry (Debian's
//! docker-registry) on loopback, pushed to with skopeo. For this crate's tests, other crates'
//! tests and e2e.
//!
//! The image has two layers. The base (gzip) has `/bin/busybox` with `sh`, `ls`, `cat`, `echo`
//! links, `/etc/motd`, `/etc/hostname`, `/etc/passwd`, `/data/old1`, `/data/sub/old2`. The top
//! (plain tar) deletes `/etc/motd` with a whiteout, makes `/data` opaque and adds `/data/new`
//! and `/etc/variant`. The base layer is byte-for-byte the same in every build, so images built
//! with different variants share it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use serde_json::json;

use crate::digest::Digest;
use crate::manifest::{self, Platform};

/// Where the test image's busybox comes from (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// Timestamp on every file in the test image, so builds are reproducible.
const MTIME: u64 = 1_700_000_000;

/// The user [`Registry::start_with_basic_auth`] lets in.
pub const BASIC_USER: &str = "tepui";
/// Its password.
pub const BASIC_PASSWORD: &str = "s3cret";
/// bcrypt (cost 5, cheap to check) of [`BASIC_PASSWORD`], as htpasswd wants it.
const BASIC_BCRYPT: &str = "$2b$05$gLky3NxdgTm/EOSRN5FHFOPtrV804IsaHNkuj1QVmM.ui.dG8m2nm";

/// What was built.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The manifest's digest (`None` for a docker archive, which has no manifest; the store
    /// writes one when it imports it).
    pub manifest_digest: Option<Digest>,
    pub config_digest: Digest,
    /// Layer blob digests, bottom first.
    pub layer_digests: Vec<Digest>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// Checks that busybox-static is installed and returns its path, or says how to install it.
pub fn require_busybox() -> io::Result<PathBuf> {
    let p = PathBuf::from(BUSYBOX);
    if !p.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{BUSYBOX} is missing: install Debian's busybox-static (run e2e/setup.sh as root)"),
        ));
    }
    Ok(p)
}

/// Checks that a program is installed, or says which Debian package has it.
pub fn require_program(program: &str, package: &str) -> io::Result<()> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{program} is missing: install Debian's {package} (run e2e/setup.sh as root)"),
        ))
    }
}

struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, format!("{path}/"), io::empty())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target)
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        self.b.into_inner()
    }
}

/// The base layer's tar (uncompressed).
pub fn base_layer_tar() -> io::Result<Vec<u8>> {
    let busybox = fs::read(require_busybox()?)?;
    let mut t = TarBuilder::new();
    t.dir("bin", 0o755)?;
    t.file("bin/busybox", 0o755, &busybox)?;
    for link in ["sh", "ls", "cat", "echo"] {
        t.symlink(&format!("bin/{link}"), "busybox")?;
    }
    t.dir("etc", 0o755)?;
    t.file("etc/motd", 0o644, b"welcome to the tepui test image\n")?;
    t.file("etc/hostname", 0o644, b"tepui-test\n")?;
    t.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    t.dir("data", 0o755)?;
    t.file("data/old1", 0o644, b"old1\n")?;
    t.dir("data/sub", 0o755)?;
    t.file("data/sub/old2", 0o644, b"old2\n")?;
    t.dir("tmp", 0o1777)?;
    t.finish()
}

/// The top layer's tar (uncompressed): whiteouts and `variant`.
pub fn top_layer_tar(variant: &str) -> io::Result<Vec<u8>> {
    let mut t = TarBuilder::new();
    t.dir("etc", 0o755)?;
    t.file("etc/.wh.motd", 0o644, b"")?;
    t.file("etc/variant", 0o644, format!("{variant}\n").as_bytes())?;
    t.dir("data", 0o755)?;
    t.file("data/.wh..wh..opq", 0o644, b"")?;
    t.file("data/new", 0o644, b"new\n")?;
    t.finish()
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // flate2 writes a zero mtime in the gzip header, so this is reproducible.
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    e.finish()
}

fn config_json(diff_ids: &[Digest], variant: &str) -> Vec<u8> {
    let platform = Platform::host();
    let mut config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/bin", format!("TEPUI_VARIANT={variant}")],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["cat /etc/hostname"],
            "WorkingDir": "/data",
            "User": "0:0",
            "ExposedPorts": {"8080/tcp": {}, "5353/udp": {}},
            "Labels": {"org.tepui.test": "busybox"}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "history": [{"created_by": "tepui testimage base"}, {"created_by": "tepui testimage top"}]
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    serde_json::to_vec(&config).expect("config serializes")
}

fn write_blob(dir: &Path, data: &[u8]) -> io::Result<Digest> {
    let d = Digest::of(data);
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(blobs.join(d.hex()), data)?;
    Ok(d)
}

/// Writes the test image into the OCI layout `dir` (created, or added to) under `tag`
/// (`org.opencontainers.image.ref.name`, as skopeo's `oci:DIR:TAG` finds it).
pub fn build_busybox_layout(dir: &Path, tag: &str) -> io::Result<TestImage> {
    build_busybox_layout_variant(dir, tag, tag)
}

/// Like [`build_busybox_layout`], with `/etc/variant` (and so the top layer) set to `variant`.
pub fn build_busybox_layout_variant(dir: &Path, tag: &str, variant: &str) -> io::Result<TestImage> {
    let layers = [(base_layer_tar()?, true), (top_layer_tar(variant)?, false)];
    build_layout_from_tars(dir, tag, &layers, variant)
}

/// Writes an image made of these layer tars (uncompressed; each gzipped in the layout when its
/// flag says so), bottom first, into the OCI layout `dir` under `tag`. `variant` goes into the
/// config's environment.
pub fn build_layout_from_tars(
    dir: &Path,
    tag: &str,
    layers: &[(Vec<u8>, bool)],
    variant: &str,
) -> io::Result<TestImage> {
    fs::create_dir_all(dir)?;
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    let mut descriptors = Vec::new();
    for (tar, gz) in layers {
        diff_ids.push(Digest::of(tar));
        let (blob, media_type) = if *gz {
            (gzip(tar)?, manifest::OCI_LAYER_GZIP)
        } else {
            (tar.clone(), manifest::OCI_LAYER)
        };
        let d = write_blob(dir, &blob)?;
        descriptors.push(json!({"mediaType": media_type, "digest": d.to_string(), "size": blob.len()}));
        layer_digests.push(d);
    }
    let config = config_json(&diff_ids, variant);
    let config_digest = write_blob(dir, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    let manifest_digest = write_blob(dir, &manifest)?;

    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
        Err(_) => json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": []}),
    };
    let entries = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| io::Error::other("index.json has no manifests"))?;
    entries.retain(|e| e["annotations"][manifest::ANNOTATION_REF_NAME] != json!(tag));
    entries.push(json!({
        "mediaType": manifest::OCI_MANIFEST,
        "digest": manifest_digest.to_string(),
        "size": manifest.len(),
        "annotations": {manifest::ANNOTATION_REF_NAME: tag}
    }));
    fs::write(
        &index_path,
        serde_json::to_vec_pretty(&index).expect("index serializes"),
    )?;
    Ok(TestImage {
        manifest_digest: Some(manifest_digest),
        config_digest,
        layer_digests,
        diff_ids,
    })
}

/// Writes the test image as a `docker save` archive (a tar with `manifest.json`, the config
/// and `<id>/layer.tar` per layer, plain tars) named `repo_tag` (`tepui-test/busybox:latest`).
pub fn build_docker_archive(path: &Path, repo_tag: &str) -> io::Result<TestImage> {
    let base = base_layer_tar()?;
    let top = top_layer_tar("docker")?;
    let diff_ids = vec![Digest::of(&base), Digest::of(&top)];
    let config = config_json(&diff_ids, "docker");
    let config_digest = Digest::of(&config);
    let config_name = format!("{}.json", config_digest.hex());
    let layer_names: Vec<String> = diff_ids.iter().map(|d| format!("{}/layer.tar", d.hex())).collect();
    let manifest = json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]);
    let (repo, tag) = repo_tag.rsplit_once(':').unwrap_or((repo_tag, "latest"));
    let mut repositories = BTreeMap::new();
    repositories.insert(repo.to_string(), json!({ tag: diff_ids[1].hex() }));

    let mut t = TarBuilder::new();
    for (d, data) in diff_ids.iter().zip([&base, &top]) {
        t.dir(d.hex(), 0o755)?;
        t.file(&format!("{}/VERSION", d.hex()), 0o644, b"1.0")?;
        t.file(
            &format!("{}/json", d.hex()),
            0o644,
            format!(r#"{{"id":"{}"}}"#, d.hex()).as_bytes(),
        )?;
        t.file(&format!("{}/layer.tar", d.hex()), 0o644, data)?;
    }
    t.file(&config_name, 0o644, &config)?;
    t.file(
        "manifest.json",
        0o644,
        &serde_json::to_vec(&manifest).expect("serializes"),
    )?;
    t.file(
        "repositories",
        0o644,
        &serde_json::to_vec(&repositories).expect("serializes"),
    )?;
    fs::write(path, t.finish()?)?;
    Ok(TestImage {
        manifest_digest: None,
        config_digest,
        layer_digests: diff_ids.clone(),
        diff_ids,
    })
}

/// Tars a directory (such as an OCI layout) into `out`, paths relative to it.
pub fn tar_dir(dir: &Path, out: &Path) -> io::Result<()> {
    let mut b = tar::Builder::new(File::create(out)?);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    b.into_inner()?.sync_all()
}

/// Debian's docker-registry serving on a free loopback port from a temporary directory;
/// killed when dropped.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    /// Log lines the registry printed so far and after readiness.
    log: mpsc::Receiver<String>,
}

impl Registry {
    /// Starts a registry storing in `dir` (config and data go there) and waits, up to 30 s,
    /// until it listens.
    pub fn start(dir: &Path) -> io::Result<Registry> {
        Self::start_with(dir, "")
    }

    /// Like [`Registry::start`], with YAML appended to the config at top level (an `auth:`
    /// section, for example); `{addr}` in it becomes the registry's `127.0.0.1:PORT`.
    pub fn start_with(dir: &Path, extra_config: &str) -> io::Result<Registry> {
        require_program("docker-registry", "docker-registry")?;
        fs::create_dir_all(dir.join("data"))?;
        let mut last_err = None;
        // A port found free can be taken before the registry binds it; try a few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: tepui-test\n{extra_config}",
                    dir.join("data").display(),
                    extra_config = extra_config.replace("{addr}", &addr.to_string()),
                ),
            )?;
            match Self::spawn(&config, addr) {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("tried at least once"))
    }

    fn spawn(config: &Path, addr: SocketAddr) -> io::Result<Registry> {
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut registry = Registry { child, addr, log: rx };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match registry.log.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("listening on");
                    seen.push(line);
                    if ready {
                        return Ok(registry);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "docker-registry did not listen on {addr} within 30 s:\n{}",
                            seen.join("\n")
                        ),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = registry.child.wait()?;
                    return Err(io::Error::other(format!(
                        "docker-registry exited ({status}) before listening on {addr}:\n{}",
                        seen.join("\n")
                    )));
                }
            }
        }
    }

    /// Like [`Registry::start`], requiring basic auth as [`BASIC_USER`] / [`BASIC_PASSWORD`]
    /// (an htpasswd file in `dir`).
    pub fn start_with_basic_auth(dir: &Path) -> io::Result<Registry> {
        fs::create_dir_all(dir)?;
        let htpasswd = dir.join("htpasswd");
        fs::write(&htpasswd, format!("{BASIC_USER}:{BASIC_BCRYPT}\n"))?;
        Self::start_with(
            dir,
            &format!(
                "auth:\n  htpasswd:\n    realm: tepui-test\n    path: {}\n",
                htpasswd.display()
            ),
        )
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pushes `layout:tag` to `name:tag` in this registry with skopeo.
    pub fn push_layout(&self, layout: &Path, tag: &str, name: &str) -> io::Result<()> {
        self.push_layout_with(layout, tag, name, &[])
    }

    /// Like [`Registry::push_layout`], with extra skopeo arguments (`--dest-registry-token`).
    pub fn push_layout_with(&self, layout: &Path, tag: &str, name: &str, extra: &[&str]) -> io::Result<()> {
        require_program("skopeo", "skopeo")?;
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.host()))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "skopeo copy to {}/{name}:{tag} failed ({}): {}",
                self.host(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// What the registry logged since the last call (for failure messages).
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
