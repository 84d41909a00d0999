//! Starting the long-running modes and waiting for a signal to stop.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tepui_agent::{Agent, AgentConfig, AgentStart, ResourceOverrides};
use tepui_image::RegistryAuth;
use tepui_pki::token::JoinToken;
use tepui_pki::Role;
use tepui_server::{FirstStart, Server, ServerConfig, StartedAs};

use crate::DaemonArgs;

pub enum Mode {
    Dev,
    Server {
        bootstrap: bool,
        join: Option<(String, String)>,
        agent_timeout_secs: f64,
    },
    Agent {
        join: Option<(String, String)>,
    },
    Join {
        addr: String,
        token: String,
        agent_timeout_secs: f64,
    },
}

/// Where a server's HTTP API listens unless told: beside the other listeners on a loopback
/// bind (a laptop, or several nodes on one host), on loopback otherwise. The cluster port is
/// mutual TLS; the API takes tokens, and goes on a network only when the operator says so.
pub fn default_http_bind(bind: IpAddr) -> IpAddr {
    if bind.is_loopback() {
        bind
    } else if bind.is_ipv6() {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    }
}

/// `HOST` means `HOST:5052`, the default cluster port.
pub fn default_cluster_port(addr: &str) -> String {
    let has_port = addr.parse::<SocketAddr>().is_ok()
        || (addr.starts_with('[') && addr.contains("]:"))
        || (!addr.starts_with('[') && addr.matches(':').count() == 1);
    if has_port {
        addr.to_string()
    } else if let Ok(std::net::IpAddr::V6(v6)) = addr.parse() {
        format!("[{v6}]:5052")
    } else {
        format!("{addr}:5052")
    }
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("tepui")
}

fn init_tracing(json: bool, access_log: bool) {
    // The gateway's access log (a line per request) only when asked for; rustls' warnings are
    // per connection (an IP address sent as SNI), so only its errors.
    let access = if access_log { "info" } else { "off" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEPUI_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "info,openraft=warn,h2=warn,tower=warn,hyper=warn,rustls=error,tepui_gateway::access={access}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(mode: Mode, args: DaemonArgs) -> anyhow::Result<()> {
    // Descriptors the daemon inherited (a lock its launcher held, a pipe) must not pass on to
    // the shims, which outlive it: they would hold them for as long as their tasks run.
    // SAFETY: only sets close-on-exec on descriptors 3 and up; no memory is involved.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    init_tracing(args.log_json, args.agent.gateway_access_log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_async(mode, args))
}

fn token_role(token: &str) -> anyhow::Result<Role> {
    let t: JoinToken = token.parse().context("the join token does not parse")?;
    Ok(t.role)
}

async fn run_async(mode: Mode, args: DaemonArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Installed before anything starts: a SIGTERM while the node starts up (a supervisor, a
    // script that saw the API answer) must stop it cleanly once it is up, not kill it.
    let stop = StopSignals::install()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let dev = matches!(mode, Mode::Dev);
    let (run_server, run_agent, first_start, agent_start, agent_timeout) = match mode {
        Mode::Dev => (true, true, FirstStart::Bootstrap, AgentStart::Refuse, 15.0),
        Mode::Server {
            bootstrap,
            join,
            agent_timeout_secs,
        } => {
            let first = match (bootstrap, join) {
                (true, _) => FirstStart::Bootstrap,
                (false, Some((addr, token))) => FirstStart::Join { addr, token },
                (false, None) => FirstStart::Refuse,
            };
            (true, false, first, AgentStart::Refuse, agent_timeout_secs)
        }
        Mode::Agent { join } => {
            let start = match join {
                Some((addr, token)) => AgentStart::Join { addr, token },
                None => AgentStart::Refuse,
            };
            (false, true, FirstStart::Refuse, start, 15.0)
        }
        Mode::Join {
            addr,
            token,
            agent_timeout_secs,
        } => match token_role(&token)? {
            Role::Server => (
                true,
                false,
                FirstStart::Join { addr, token },
                AgentStart::Refuse,
                agent_timeout_secs,
            ),
            Role::Agent => (false, true, FirstStart::Refuse, AgentStart::Join { addr, token }, 15.0),
        },
    };

    let mut server = None;
    if run_server {
        let mut cfg = ServerConfig::new(name.clone(), data_dir.clone());
        cfg.cluster_listen = SocketAddr::new(args.bind, args.cluster_port);
        cfg.http_listen = SocketAddr::new(
            args.http_bind.unwrap_or_else(|| default_http_bind(args.bind)),
            args.http_port,
        );
        cfg.advertise = args.advertise;
        cfg.api_hostnames = args.api_hostnames.clone();
        cfg.first_start = first_start;
        cfg.agent_timeout = Duration::from_secs_f64(agent_timeout);
        cfg.deployment_timeout = args.deployment_timeout;
        if let Some(lifetime) = args.cert_lifetime {
            cfg.cert_lifetime = lifetime;
        }
        cfg.bootstrap_api_token = args.bootstrap_api_token.clone();
        if let Some(dir) = &args.snapshot_dir {
            anyhow::ensure!(
                args.snapshot_interval >= Duration::from_secs(1),
                "--snapshot-interval must be at least 1s"
            );
            cfg.backups = Some(tepui_server::BackupSettings {
                dir: dir.clone(),
                interval: args.snapshot_interval,
                retain: args.snapshot_retain as usize,
            });
        }
        if args.dns_port != 0 {
            cfg.dns = Some(tepui_server::DnsSettings {
                listen: SocketAddr::new(args.dns_bind.unwrap_or(args.bind), args.dns_port),
                domain: args.dns_domain.clone(),
                ttl: args.dns_ttl,
                upstreams: args.dns_upstreams.clone(),
                http_port: (args.dns_http_port != 0).then_some(args.dns_http_port),
            });
        }
        if let (Some(cert), Some(key)) = (&args.api_cert, &args.api_key) {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            cfg.api_cert = Some(tepui_server::ApiCert {
                chain_pem: read(cert)?,
                key_pem: read(key)?,
            });
        }
        let operator_cert = cfg.api_cert.is_some();
        let s = Server::start(cfg).await.context("the server did not start")?;
        println!("tepui server {} ({}) is up", s.identity.name, s.identity.node_id);
        println!("  data dir:     {}", data_dir.display());
        let http = s.advertised_http_addr();
        if operator_cert {
            println!("  http api:     http://{http} (from this host; from elsewhere https://{http})");
        } else {
            let pin = tepui_pki::ca_fingerprint(&s.identity.ca_pem).unwrap_or_default();
            println!("  http api:     http://{http} (from this host; from elsewhere https://{http})");
            println!("  api ca pin:   {pin} (tepui --addr https://{http} --ca-pin {pin})");
        }
        println!("  cluster port: {}", s.advertised_cluster_addr());
        if let Some(dns) = s.dns_addr() {
            println!("  dns:          {dns} (udp and tcp; domain {})", args.dns_domain);
        }
        if let Some(http) = s.dns_http_addr() {
            println!("  mesos-dns:    http://{http} (Mesos-DNS's HTTP API)");
        }
        if let StartedAs::Bootstrapped {
            server_token,
            agent_token,
            api_token,
        } = &s.started_as
        {
            println!(
                "a new cluster {} was created; join tokens (also under the data dir):",
                s.identity.cluster_id
            );
            println!("  server: {server_token}");
            println!("  agent:  {agent_token}");
            println!(
                "the management API token (shown once; also in {}, 0600):",
                data_dir.join("api-token").display()
            );
            println!("  {api_token}");
            println!(
                "  join another machine: tepui join {} --token <token>",
                s.advertised_cluster_addr()
            );
        }
        server = Some(s);
    }

    let mut agent = None;
    if run_agent {
        let mut cfg = AgentConfig::new(name.clone(), data_dir.clone());
        cfg.http_listen = SocketAddr::new(args.bind, args.agent_port);
        cfg.advertise = args.advertise;
        cfg.start = match &server {
            Some(s) => {
                cfg.shared_tls = Some(s.tls());
                // The tasks' resolver forwards to this node's own DNS.
                cfg.cluster_dns = s.cluster_dns();
                let mut identity = s.identity.clone();
                identity.servers = vec![s.advertised_cluster_addr().to_string()];
                AgentStart::WithIdentity(Box::new(identity))
            }
            None => agent_start,
        };
        cfg.resources = ResourceOverrides {
            cpus: args.agent.cpus,
            mem_mb: args.agent.mem,
            disk_mb: args.agent.disk,
            ports: args.agent.ports,
            reserved: args.agent.reserve.clone(),
        };
        cfg.attributes = args.agent.attrs.iter().cloned().collect::<BTreeMap<_, _>>();
        cfg.heartbeat = Duration::from_secs_f64(args.agent.heartbeat_secs.max(0.05));
        cfg.insecure_registries = args.agent.insecure_registries.clone();
        if let Some(file) = &args.agent.registry_auth_file {
            cfg.registry_auth = registry_auth(file)?;
            cfg.runtime
                .host_masks
                .push(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone()));
        }
        cfg.runtime.allowed_host_volumes = args.agent.allowed_host_volumes.clone();
        if args.agent.userns {
            let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
            anyhow::ensure!(
                max.trim().parse::<u64>().unwrap_or(0) > 0,
                "--userns: this kernel has no user namespaces (/proc/sys/user/max_user_namespaces)"
            );
            cfg.runtime.userns_base = Some(args.agent.userns_base);
        }
        cfg.runtime.bridge.name = args.agent.bridge.clone();
        (cfg.runtime.bridge.subnet, cfg.runtime.bridge.prefix) = args.agent.bridge_subnet;
        cfg.task_retention = args.agent.task_retention;
        cfg.gateway = gateway_settings(&args, dev)?;
        let mut a = Agent::start(cfg).await.context("the agent did not start")?;
        if server.is_none() {
            println!("tepui agent {} ({}) is up", a.identity.name, a.identity.node_id);
            println!("  data dir:   {}", data_dir.display());
            println!("  agent http: http://{}", a.http_addr);
        }
        if let Some(http) = a.gateway_http_addr() {
            println!("  gateway:      http://{http}");
        }
        if let Some(https) = a.gateway_https_addr() {
            println!("  gateway tls:  https://{https}");
        }
        if a.wait_registered(Duration::from_secs(10)).await {
            let leader = a.connection.borrow().leader.clone().unwrap_or_default();
            println!("agent registered with the leader at {leader}");
        } else {
            println!("agent is still looking for the leader; it keeps trying");
        }
        agent = Some(a);
    }
    println!("ready in {} ms", started.elapsed().as_millis());

    stop.wait().await;
    tracing::info!("shutting down");
    if let Some(a) = agent {
        a.shutdown().await;
    }
    if let Some(s) = server {
        s.shutdown().await;
    }
    Ok(())
}

/// The gateway's settings from the flags; `tepui dev` turns it on at BIND:5080 and BIND:5443.
fn gateway_settings(args: &DaemonArgs, dev: bool) -> anyhow::Result<Option<tepui_gateway::proxy::Settings>> {
    let a = &args.agent;
    let on_by_default = dev && !a.no_gateway;
    let http = a
        .gateway_http
        .or(on_by_default.then(|| SocketAddr::new(args.bind, 5080)));
    let https = a
        .gateway_https
        .or(on_by_default.then(|| SocketAddr::new(args.bind, 5443)));
    if http.is_none() && https.is_none() {
        return Ok(None);
    }
    let default_certificate = match (&a.gateway_cert, &a.gateway_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let cert_pem = read(cert)?;
            let key_pem = read(key)?;
            let bundle = format!("{}\n{}\n", cert_pem.trim_end(), key_pem.trim_end());
            let read = tepui_gateway::certs::read_bundle(&cert.display().to_string(), bundle.as_bytes())
                .map_err(|(field, m)| anyhow::anyhow!("--gateway-{field}: {m}"))?;
            Some(read)
        }
        _ => None,
    };
    Ok(Some(tepui_gateway::proxy::Settings {
        http,
        https,
        groups: a.gateway_groups.clone(),
        default_certificate,
        workers: a.gateway_workers,
        pin_workers: a.gateway_pin_workers,
        ..Default::default()
    }))
}

/// Reads registry credentials from a Docker-style config.json.
fn registry_auth(file: &std::path::Path) -> anyhow::Result<std::collections::HashMap<String, RegistryAuth>> {
    use base64::Engine;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let auths = doc
        .get("auths")
        .and_then(|a| a.as_object())
        .with_context(|| format!("{} has no \"auths\" object", file.display()))?;
    let mut out = std::collections::HashMap::new();
    for (host, entry) in auths {
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        // Docker names Docker Hub by its index URL; references say docker.io.
        let host = if host.contains("index.docker.io") {
            "docker.io".to_string()
        } else {
            host.trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        };
        let auth = if let Some(token) = field("registrytoken") {
            RegistryAuth::Bearer { token }
        } else if let (Some(username), Some(password)) = (field("username"), field("password")) {
            RegistryAuth::Basic { username, password }
        } else if let Some(encoded) = field("auth") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .with_context(|| format!("the auth of {host} in {} is not base64", file.display()))?;
            let text = String::from_utf8(decoded).with_context(|| format!("the auth of {host} is not text"))?;
            let (username, password) = text
                .split_once(':')
                .with_context(|| format!("the auth of {host} is not user:password"))?;
            RegistryAuth::Basic {
                username: username.into(),
                password: password.into(),
            }
        } else {
            anyhow::bail!(
                "{}: {host} has no auth, username/password or registrytoken",
                file.display()
            );
        };
        out.insert(host, auth);
    }
    Ok(out)
}

/// SIGTERM and SIGINT, caught from the moment they are installed (one that comes early is
/// kept until [`StopSignals::wait`]).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{default_cluster_port, default_http_bind};

    #[test]
    fn the_api_stays_on_loopback_unless_the_node_binds_there() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(default_http_bind(ip("127.0.0.11")), ip("127.0.0.11"));
        assert_eq!(default_http_bind(ip("::1")), ip("::1"));
        assert_eq!(default_http_bind(ip("10.0.0.1")), ip("127.0.0.1"));
        assert_eq!(default_http_bind(ip("0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(default_http_bind(ip("fd00::1")), ip("::1"));
    }

    #[test]
    fn cluster_port_defaults_to_5052() {
        assert_eq!(default_cluster_port("10.0.0.1"), "10.0.0.1:5052");
        assert_eq!(default_cluster_port("10.0.0.1:6000"), "10.0.0.1:6000");
        assert_eq!(default_cluster_port("node-a"), "node-a:5052");
        assert_eq!(default_cluster_port("node-a:7"), "node-a:7");
        assert_eq!(default_cluster_port("::1"), "[::1]:5052");
        assert_eq!(default_cluster_port("[::1]:9"), "[::1]:9");
    }

    #[test]
    fn registry_auth_reads_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}, "https://index.docker.io/v1/": {"username": "u", "password": "p"}, "r.example:443": {"registrytoken": "t"}}}"#,
        )
        .unwrap();
        let auth = super::registry_auth(&file).unwrap();
        assert_eq!(
            auth["127.0.0.1:5000"],
            super::RegistryAuth::Basic {
                username: "user".into(),
                password: "pass".into()
            }
        );
        assert_eq!(
            auth["docker.io"],
            super::RegistryAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(auth["r.example:443"], super::RegistryAuth::Bearer { token: "t".into() });
        std::fs::write(&file, r#"{"auths": {"h": {}}}"#).unwrap();
        assert!(super::registry_auth(&file).is_err());
    }
}
