//! The cluster's resolver for this agent's tasks.
//!
//! Tasks find each other by name through the cluster's DNS (tepui-dns, on the servers, port
//! 5053 by default). A resolv.conf can only name servers on port 53, and a bridge task cannot
//! reach the host's loopback, so every agent has one resolver address of its own: its bridge's
//! gateway, port 53, which the runtime DNATs to the cluster's DNS
//! ([`tepui_runtime::Runtime::set_cluster_resolver`]). Bridge tasks reach it as their gateway,
//! host tasks as an address of the host. The DNS it forwards to is the agent's own server's
//! when the node is one (`tepui dev`), else that of the server the agent registered with (the
//! leader, which the agent follows across failovers).
//!
//! Tasks name it in their `/etc/resolv.conf`, with the cluster domain in `search`
//! ([`resolver_for`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use tepui_proto::agent::ClusterDns;
use tepui_runtime::{Resolver, Runtime};

/// `options` of the tasks' resolv.conf: a name with a dot is asked as it is first
/// (`web.marathon.mesos`, `example.com`), a bare one through the search list (`web`).
pub const OPTIONS: &[&str] = &["ndots:1"];

/// The resolv.conf of a task whose resolver is `at`, for the cluster domain `domain`: the
/// services' names first, as on DC/OS (`web` is `web.marathon.mesos`), then the domain, then
/// the host's own search domains (so what resolved by a short name on the host still does).
pub fn resolver_for(at: IpAddr, domain: &str, host_search: &[String]) -> Resolver {
    let mut search = vec![format!("marathon.{domain}"), domain.to_string()];
    for d in host_search {
        if !search.contains(d) {
            search.push(d.clone());
        }
    }
    // glibc before 2.26 reads six at most.
    search.truncate(6);
    Resolver {
        nameservers: vec![at],
        search,
        options: OPTIONS.iter().map(|o| o.to_string()).collect(),
    }
}

/// The search domains of a resolv.conf's text: its last `search` or `domain` line, as the
/// C library reads it.
pub fn search_domains(resolv_conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => {
                out = words
                    .take_while(|w| !w.starts_with('#') && !w.starts_with(';'))
                    .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|w| !w.is_empty())
                    .collect();
            }
            _ => {}
        }
    }
    out
}

/// What the agent knows of the cluster's DNS, and what tasks get from it.
#[derive(Default)]
pub(crate) struct ClusterResolver {
    /// The DNS of this node's own server (`tepui dev`): preferred to the one a registration
    /// names.
    pub local: Option<ClusterDns>,
    /// The newest DNS to forward to (set up in the background, the newest wins).
    wanted: Mutex<Option<ClusterDns>>,
    /// What launches put in their resolv.conf now.
    resolver: Mutex<Option<Resolver>>,
    /// The target the host's rules have, as far as this agent knows (none: not known yet).
    applied: tokio::sync::Mutex<Option<Option<SocketAddr>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterResolver {
    pub fn new(local: Option<ClusterDns>) -> ClusterResolver {
        ClusterResolver {
            local,
            ..ClusterResolver::default()
        }
    }

    /// The resolver a task launched now gets, if any.
    pub fn current(&self) -> Option<Resolver> {
        lock(&self.resolver).clone()
    }

    /// Records that the cluster's DNS is `told` (by a registration; the node's own server's
    /// wins) and sets the resolver of the next launches. [`ClusterResolver::apply`] then sets
    /// up the host's rules.
    pub fn learn(&self, runtime: &Runtime, told: Option<ClusterDns>) {
        let dns = self.local.clone().or(told);
        let resolver = dns.as_ref().map(|d| {
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            resolver_for(
                IpAddr::V4(runtime.resolver_address()),
                &d.domain,
                &search_domains(&host),
            )
        });
        *lock(&self.resolver) = resolver;
        *lock(&self.wanted) = dns;
    }

    /// Points the host's resolver at the newest DNS learnt, unless it already does. If that
    /// fails, tasks launched from now on keep the host's resolver.
    pub async fn apply(&self, runtime: &Runtime) {
        let mut applied = self.applied.lock().await;
        let wanted = lock(&self.wanted).clone();
        let target = wanted.as_ref().map(|d| d.addr);
        if *applied == Some(target) {
            return;
        }
        if target.is_none() && applied.is_none() {
            // No cluster DNS, and no rules of this agent's to remove: no iptables at all.
            *applied = Some(None);
            return;
        }
        match runtime.set_cluster_resolver(target).await {
            Ok(Some(at)) => {
                tracing::info!(resolver = %at, dns = ?target, "tasks' resolver forwards to the cluster's DNS");
                *applied = Some(target);
            }
            Ok(None) => *applied = Some(None),
            Err(e) => {
                tracing::warn!(
                    dns = ?target,
                    error = %tepui_common::error_chain(&e),
                    "cannot set up the tasks' resolver; tasks get the host's"
                );
                *applied = None;
                if *lock(&self.wanted) == wanted {
                    *lock(&self.resolver) = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_then_the_domain_then_the_hosts_search() {
        let r = resolver_for(
            "10.213.0.1".parse().unwrap(),
            "mesos",
            &["corp.example".into(), "mesos".into()],
        );
        assert_eq!(r.search, ["marathon.mesos", "mesos", "corp.example"]);
        assert_eq!(r.nameservers, ["10.213.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.options, ["ndots:1"]);
        let many: Vec<String> = (0..10).map(|i| format!("d{i}.example")).collect();
        assert_eq!(
            resolver_for("10.0.0.1".parse().unwrap(), "mesos", &many).search.len(),
            6
        );
    }

    #[test]
    fn the_last_search_or_domain_line_counts() {
        let text = "nameserver 10.0.0.2\ndomain old.example\nsearch A.example. b.example # comment\noptions ndots:2\n";
        assert_eq!(search_domains(text), ["a.example", "b.example"]);
        assert!(search_domains("nameserver 10.0.0.2\n").is_empty());
    }
}
