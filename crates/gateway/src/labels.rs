//! What an app's labels ask of the gateway, per port: Marathon-LB's labels, read as Marathon-LB
//! reads them, and tepui's own clearer ones. Pure: labels in, [`PortLabels`] and [`Problem`]s
//! out.
//!
//! Like Marathon-LB, this reads the app's own `labels` (not its port labels). Port `n` is the
//! index of the app's port definition (host networking) or port mapping (bridge).
//!
//! Marathon-LB's labels:
//!
//! | label | meaning here |
//! | --- | --- |
//! | `HAPROXY_GROUP` | the groups (comma-separated) of every port of the app; `external` when absent |
//! | `HAPROXY_{n}_GROUP` | the groups of port `n`, instead of `HAPROXY_GROUP` |
//! | `HAPROXY_{n}_VHOST` | host names, comma-separated; lowercased, a `:port` and a final dot dropped |
//! | `HAPROXY_{n}_PATH` | path prefixes, space-separated, each starting with `/` |
//! | `HAPROXY_{n}_REDIRECT_TO_HTTPS` | plain HTTP requests are redirected to HTTPS |
//! | `HAPROXY_{n}_BALANCE` | `roundrobin` (the default), `leastconn` or `source` |
//! | `HAPROXY_{n}_STICKY` | sticky sessions by cookie |
//! | `HAPROXY_{n}_ENABLED` | `false`: the port gets no route |
//! | `HAPROXY_{n}_MODE` | `http` or `tcp`; a `tcp` port gets no HTTP route |
//!
//! Booleans are read as Marathon-LB reads them: `true`, `t`, `yes` and `y` (any case) are true
//! and anything else is false. `false`, `f`, `no` and `n` are false without a word; any other
//! value (`1`, `0`, `on`) is false too, as in Marathon-LB, and reported, since whoever wrote `1`
//! most likely meant true. A `HAPROXY_{n}_MODE` left out is `http` when the port has host names,
//! as in Marathon-LB. Marathon-LB's other per-port labels (`AUTH`, `SSL_CERT`, `BIND_ADDR`,
//! `PORT`, the HAProxy templates, ...) are not supported and reported, so that nobody believes
//! them applied (a route whose `HAPROXY_{n}_AUTH` is ignored is served without a password).
//!
//! tepui's labels, which take precedence over their Marathon-LB counterparts when present (the
//! counterpart is then not read at all):
//!
//! | label | values | instead of |
//! | --- | --- | --- |
//! | `tepui.gateway.{n}.hosts` | host names, comma-separated | `HAPROXY_{n}_VHOST` |
//! | `tepui.gateway.{n}.path` | one path prefix, starting with `/` | `HAPROXY_{n}_PATH` |
//! | `tepui.gateway.{n}.https_redirect` | `true` or `false` | `HAPROXY_{n}_REDIRECT_TO_HTTPS` |
//! | `tepui.gateway.{n}.balance` | `round_robin`, `least_requests` or `source` | `HAPROXY_{n}_BALANCE` |
//! | `tepui.gateway.{n}.sticky` | `true` or `false` | `HAPROXY_{n}_STICKY` |
//!
//! A label that cannot be read is a [`Problem`] (source: the app's id; field:
//! `labels.HAPROXY_0_BALANCE`) saying what to write instead, and the setting keeps its default.
//! A label that narrows where a port is served (groups, hosts, path) and cannot be read leaves
//! the port without a route, never with a wider one. Labels for a port the app does not have
//! are problems too.
//!
//! Host names: letters, digits and `-` in labels of at most 63 characters, at most 253 in all,
//! optionally starting with `*.` (any name below the rest; Marathon-LB matches names exactly).

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::{Balance, Problem};

/// The group of a port whose app names none.
pub const DEFAULT_GROUP: &str = "external";

const HAPROXY_PREFIX: &str = "HAPROXY_";
const TEPUI_PREFIX: &str = "tepui.gateway.";

/// The per-port Marathon-LB labels this module reads (`HAPROXY_{n}_{NAME}`).
const HAPROXY_READ: [&str; 8] = [
    "GROUP",
    "VHOST",
    "PATH",
    "REDIRECT_TO_HTTPS",
    "BALANCE",
    "STICKY",
    "ENABLED",
    "MODE",
];

/// tepui's per-port labels (`tepui.gateway.{n}.{name}`).
const TEPUI_READ: [&str; 5] = ["hosts", "path", "https_redirect", "balance", "sticky"];

/// How Marathon-LB proxies a port (`HAPROXY_{n}_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

/// What the labels ask of one port of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLabels {
    pub port_index: usize,
    /// The gateway groups that serve the port, sorted.
    pub groups: Vec<String>,
    /// Host names, lowercase, sorted. Empty: any host.
    pub hosts: Vec<String>,
    /// Path prefixes, in the order written. Empty: every path.
    pub paths: Vec<String>,
    pub redirect_to_https: bool,
    pub balance: Balance,
    pub sticky: bool,
    /// `HAPROXY_{n}_ENABLED`.
    pub enabled: bool,
    /// `HAPROXY_{n}_MODE`; none when not set (HTTP when the port has host names).
    pub mode: Option<Mode>,
    /// A label that narrows where the port is served (groups, hosts, path) could not be read:
    /// the port gets no route rather than a wider one.
    pub unreadable_scope: bool,
}

impl PortLabels {
    /// The defaults of a port without labels.
    fn new(port_index: usize) -> PortLabels {
        PortLabels {
            port_index,
            groups: vec![DEFAULT_GROUP.to_string()],
            hosts: Vec::new(),
            paths: Vec::new(),
            redirect_to_https: false,
            balance: Balance::RoundRobin,
            sticky: false,
            enabled: true,
            mode: None,
            unreadable_scope: false,
        }
    }

    /// Whether the port gets HTTP routes: enabled, not TCP, and with host names or a path.
    /// Marathon-LB would serve a port without them on its service port, which tepui's gateway
    /// does not do.
    pub fn has_http_route(&self) -> bool {
        self.enabled
            && !self.unreadable_scope
            && self.mode != Some(Mode::Tcp)
            && !self.groups.is_empty()
            && (!self.hosts.is_empty() || !self.paths.is_empty())
    }
}

/// Why a host name cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an empty name")]
    Empty,
    #[error("{port:?} after the colon is not a port number")]
    BadPort { port: String },
    #[error("{character:?} is not allowed (letters, digits, `-` and `.` are)")]
    BadCharacter { character: char },
    #[error("it has an empty label (two dots in a row, or a dot at the start)")]
    EmptyLabel,
    #[error("the label {label:?} is longer than 63 characters")]
    LabelTooLong { label: String },
    #[error("the label {label:?} starts or ends with `-`")]
    HyphenAtEdge { label: String },
    #[error("it is longer than 253 characters")]
    TooLong,
    #[error("`*` may only stand alone as the first label (`*.example.com`)")]
    MisplacedWildcard,
}

/// A host name as routes and certificates use it: lowercase, without a `:port` or a final dot;
/// `*.example.com` stands for any name below example.com.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let mut name = raw.trim().to_ascii_lowercase();
    if let Some((host, port)) = name.split_once(':') {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(HostError::BadPort { port: port.to_string() });
        }
        name = host.to_string();
    }
    if let Some(without_dot) = name.strip_suffix('.') {
        name = without_dot.to_string();
    }
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > 253 {
        return Err(HostError::TooLong);
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    for label in rest.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if let Some(character) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(if character == '*' {
                HostError::MisplacedWildcard
            } else {
                HostError::BadCharacter { character }
            });
        }
        if label.len() > 63 {
            return Err(HostError::LabelTooLong {
                label: label.to_string(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::HyphenAtEdge {
                label: label.to_string(),
            });
        }
    }
    Ok(name)
}

/// Reads the labels of an app with `port_count` ports: one [`PortLabels`] per port, in port
/// order. What cannot be used goes to `problems`.
pub fn read(
    app_id: &str,
    labels: &BTreeMap<String, String>,
    port_count: usize,
    problems: &mut Vec<Problem>,
) -> Vec<PortLabels> {
    let mut reader = Reader {
        app_id,
        labels,
        problems,
    };
    reader.check_names(port_count);
    let app_groups = match reader.get("HAPROXY_GROUP") {
        Some(value) => reader.groups("HAPROXY_GROUP", value),
        None => Some(vec![DEFAULT_GROUP.to_string()]),
    };
    (0..port_count).map(|n| reader.port(n, app_groups.as_deref())).collect()
}

/// Reads labels and reports what it cannot use.
struct Reader<'a> {
    app_id: &'a str,
    labels: &'a BTreeMap<String, String>,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.labels.get(key).map(String::as_str)
    }

    fn problem(&mut self, key: &str, message: impl Display) {
        self.problems.push(Problem {
            source: self.app_id.to_string(),
            field: format!("labels.{key}"),
            message: message.to_string(),
        });
    }

    /// Reports labels that name a port the app does not have, and gateway labels this module
    /// does not read.
    fn check_names(&mut self, port_count: usize) {
        let ports = match port_count {
            0 => "the app has no ports".to_string(),
            1 => "the app has one port, 0".to_string(),
            n => format!("the app has {n} ports, 0 to {}", n - 1),
        };
        let missing = |index: Option<usize>| {
            let port = index.map_or_else(|| "that port".to_string(), |i| format!("port {i}"));
            format!("names {port}, but {ports}: put the label under one of them, or remove it")
        };
        for key in self.labels.keys() {
            if let Some((index, name)) = haproxy_port_key(key) {
                if index.is_none_or(|i| i >= port_count) {
                    self.problem(key, missing(index));
                } else if !HAPROXY_READ.contains(&name) {
                    let consequence = if name == "AUTH" {
                        "the port is served without a password"
                    } else {
                        "it is ignored"
                    };
                    self.problem(
                        key,
                        format!(
                            "tepui's gateway does not support Marathon-LB's {name} label: {consequence}; \
                             it reads GROUP, VHOST, PATH, REDIRECT_TO_HTTPS, BALANCE, STICKY, ENABLED and MODE"
                        ),
                    );
                }
            } else if let Some(rest) = key.strip_prefix(TEPUI_PREFIX) {
                let expected = "write tepui.gateway.{n}.hosts, .path, .https_redirect, .balance or .sticky, \
                                with n the port's index";
                match rest.split_once('.') {
                    Some((index, name)) if is_index(index) => {
                        let index = index.parse::<usize>().ok();
                        if index.is_none_or(|i| i >= port_count) {
                            self.problem(key, missing(index));
                        } else if !TEPUI_READ.contains(&name) {
                            self.problem(key, format!("tepui's gateway has no label {name:?}: {expected}"));
                        }
                    }
                    _ => self.problem(key, format!("not a gateway label tepui knows: {expected}")),
                }
            }
        }
    }

    fn port(&mut self, n: usize, app_groups: Option<&[String]>) -> PortLabels {
        let haproxy = |name: &str| format!("HAPROXY_{n}_{name}");
        let tepui = |name: &str| format!("tepui.gateway.{n}.{name}");
        let mut port = PortLabels::new(n);

        let groups = match self.get(&haproxy("GROUP")) {
            Some(value) => self.groups(&haproxy("GROUP"), value),
            None => app_groups.map(<[String]>::to_vec),
        };
        match groups {
            Some(groups) => port.groups = groups,
            None => port.unreadable_scope = true,
        }

        let hosts_key = [tepui("hosts"), haproxy("VHOST")]
            .into_iter()
            .find(|k| self.labels.contains_key(k));
        if let Some(key) = hosts_key {
            match self.hosts(&key) {
                Some(hosts) => port.hosts = hosts,
                None => port.unreadable_scope = true,
            }
        }

        let path_key = if self.labels.contains_key(&tepui("path")) {
            Some((tepui("path"), PathSyntax::Tepui))
        } else if self.labels.contains_key(&haproxy("PATH")) {
            Some((haproxy("PATH"), PathSyntax::MarathonLb))
        } else {
            None
        };
        if let Some((key, syntax)) = path_key {
            match self.paths(&key, syntax) {
                Some(paths) => port.paths = paths,
                None => port.unreadable_scope = true,
            }
        }

        if let Some(value) = self.flag(&tepui("https_redirect"), &haproxy("REDIRECT_TO_HTTPS")) {
            port.redirect_to_https = value;
        }
        if let Some(value) = self.flag(&tepui("sticky"), &haproxy("STICKY")) {
            port.sticky = value;
        }
        if let Some(balance) = self.balance(&tepui("balance"), &haproxy("BALANCE")) {
            port.balance = balance;
        }
        if let Some(value) = self.get(&haproxy("ENABLED")) {
            port.enabled = self.marathon_lb_bool(&haproxy("ENABLED"), value);
        }
        if let Some(value) = self.get(&haproxy("MODE")) {
            port.mode = match value.trim().to_ascii_lowercase().as_str() {
                "http" => Some(Mode::Http),
                "tcp" => Some(Mode::Tcp),
                _ => {
                    self.problem(
                        &haproxy("MODE"),
                        format!("{value:?} is not a mode: write http or tcp; it is left unset"),
                    );
                    None
                }
            };
        }
        if port.mode == Some(Mode::Tcp) && port.enabled && (!port.hosts.is_empty() || !port.paths.is_empty()) {
            self.problem(
                &haproxy("MODE"),
                "the port is proxied as tcp, so its host names and path get no HTTP route: \
                 write http, or remove the host and path labels",
            );
        }
        port
    }

    /// Groups, comma-separated; none when the label names none.
    fn groups(&mut self, key: &str, value: &str) -> Option<Vec<String>> {
        let mut groups: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        if groups.is_empty() {
            self.problem(
                key,
                "names no group: write one or more, comma-separated (external, internal); \
                 the ports it is for get no route until then",
            );
            return None;
        }
        groups.sort();
        groups.dedup();
        Some(groups)
    }

    /// The host names of `key`, sorted; none when it has no usable one.
    fn hosts(&mut self, key: &str) -> Option<Vec<String>> {
        let value = self.get(key).unwrap_or_default();
        let mut hosts = Vec::new();
        for raw in value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            match normalize_host(raw) {
                Ok(host) => hosts.push(host),
                Err(e) => self.problem(
                    key,
                    format!("{raw:?} is not a host name: {e}; write names such as shop.example.com, comma-separated"),
                ),
            }
        }
        if hosts.is_empty() {
            self.problem(key, "names no usable host: the port gets no route until it does");
            return None;
        }
        hosts.sort();
        hosts.dedup();
        Some(hosts)
    }

    /// The path prefixes of `key`; none when it has no usable one.
    fn paths(&mut self, key: &str, syntax: PathSyntax) -> Option<Vec<String>> {
        let value = self.get(key).unwrap_or_default();
        let mut paths: Vec<String> = Vec::new();
        let written: Vec<&str> = match syntax {
            PathSyntax::Tepui => {
                let trimmed = value.trim();
                if trimmed.contains(char::is_whitespace) {
                    self.problem(
                        key,
                        "takes one path: write one path prefix such as /api, without spaces",
                    );
                    return None;
                }
                vec![trimmed]
            }
            PathSyntax::MarathonLb => value.split_whitespace().collect(),
        };
        for word in written {
            if word.starts_with('-') && syntax == PathSyntax::MarathonLb {
                let why = if word == "-i" {
                    "case-insensitive matching (-i) is not supported: paths are matched as written".to_string()
                } else {
                    format!("the path_beg flag {word} is not supported: it is ignored")
                };
                self.problem(key, why);
            } else if !word.starts_with('/') {
                self.problem(
                    key,
                    format!("{word:?} does not start with `/`: write a path prefix such as /api"),
                );
            } else if !paths.iter().any(|p| p == word) {
                paths.push(word.to_string());
            }
        }
        if paths.is_empty() {
            self.problem(key, "names no usable path: the port gets no route until it does");
            return None;
        }
        Some(paths)
    }

    /// A boolean from tepui's label `tepui_key` or else Marathon-LB's `haproxy_key`; none when
    /// neither is set or tepui's cannot be read.
    fn flag(&mut self, tepui_key: &str, haproxy_key: &str) -> Option<bool> {
        if let Some(value) = self.get(tepui_key) {
            return match value.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    self.problem(
                        tepui_key,
                        format!("{value:?} is not a boolean: write true or false; false is used"),
                    );
                    None
                }
            };
        }
        let value = self.get(haproxy_key)?;
        Some(self.marathon_lb_bool(haproxy_key, value))
    }

    /// A boolean as Marathon-LB reads it: `true`, `t`, `yes`, `y` (any case) are true, anything
    /// else is false; values that are neither its true nor its usual false spellings are reported.
    fn marathon_lb_bool(&mut self, key: &str, value: &str) -> bool {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" => true,
            "false" | "f" | "no" | "n" => false,
            _ => {
                self.problem(
                    key,
                    format!(
                        "Marathon-LB reads {value:?} as false (only true, t, yes and y are true), and so does tepui: \
                         write true or false"
                    ),
                );
                false
            }
        }
    }

    /// The balance of tepui's label `tepui_key` or else Marathon-LB's `haproxy_key`; none when
    /// neither is set or the one read is not known.
    fn balance(&mut self, tepui_key: &str, haproxy_key: &str) -> Option<Balance> {
        if let Some(value) = self.get(tepui_key) {
            return match value.trim().to_ascii_lowercase().as_str() {
                "round_robin" => Some(Balance::RoundRobin),
                "least_requests" => Some(Balance::LeastRequests),
                "source" => Some(Balance::Source),
                _ => {
                    self.problem(
                        tepui_key,
                        format!(
                            "{value:?} is not a balance: write round_robin, least_requests or source; \
                             round_robin is used"
                        ),
                    );
                    None
                }
            };
        }
        let value = self.get(haproxy_key)?;
        match value.trim().to_ascii_lowercase().as_str() {
            "roundrobin" => Some(Balance::RoundRobin),
            "leastconn" => Some(Balance::LeastRequests),
            "source" => Some(Balance::Source),
            _ => {
                self.problem(
                    haproxy_key,
                    format!(
                        "tepui's gateway does not support the balance {value:?}: write roundrobin, leastconn or source; \
                         roundrobin is used"
                    ),
                );
                None
            }
        }
    }
}

/// How a path label is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathSyntax {
    /// One prefix.
    Tepui,
    /// HAProxy's `path_beg` arguments: prefixes separated by spaces, maybe flags (`-i`).
    MarathonLb,
}

/// `HAPROXY_{n}_{NAME}` taken apart: the port index (none when it is too large to be one) and
/// the name. None for the app-wide labels (`HAPROXY_GROUP`, `HAPROXY_DEPLOYMENT_GROUP`).
fn haproxy_port_key(key: &str) -> Option<(Option<usize>, &str)> {
    let (index, name) = key.strip_prefix(HAPROXY_PREFIX)?.split_once('_')?;
    is_index(index).then(|| (index.parse().ok(), name))
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The ports of an app `/shop` with `ports` ports and `pairs` as labels, and the problems.
    fn read_app(pairs: &[(&str, &str)], ports: usize) -> (Vec<PortLabels>, Vec<Problem>) {
        let mut problems = Vec::new();
        let read = read("/shop", &labels(pairs), ports, &mut problems);
        (read, problems)
    }

    /// The fields of the problems, in order.
    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn an_app_without_labels_gets_defaults_and_no_route() {
        let (ports, problems) = read_app(&[], 2);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ports, vec![PortLabels::new(0), PortLabels::new(1)]);
        assert_eq!(ports[0].groups, vec!["external"]);
        assert!(!ports[0].has_http_route());
    }

    #[test]
    fn vhosts_are_lowercased_without_port_or_final_dot_sorted_and_deduplicated() {
        let (ports, problems) = read_app(
            &[(
                "HAPROXY_0_VHOST",
                "Shop.Example.com, www.shop.example.com:8080 ,shop.example.com.,,*.Cdn.Example.com",
            )],
            1,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            ports[0].hosts,
            vec!["*.cdn.example.com", "shop.example.com", "www.shop.example.com"]
        );
        assert_eq!(ports[0].mode, None);
        assert!(ports[0].has_http_route());
    }

    #[test]
    fn invalid_host_names_are_problems_and_the_valid_ones_stay() {
        let (ports, problems) = read_app(&[("HAPROXY_0_VHOST", "ok.example.com,bad_name.example.com,a..b")], 1);
        assert_eq!(ports[0].hosts, vec!["ok.example.com"]);
        assert!(ports[0].has_http_route());
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_0_VHOST"; 2]);
        assert!(
            problems[0].message.contains("\"bad_name.example.com\""),
            "{}",
            problems[0].message
        );
        assert!(
            problems[0].message.contains("'_' is not allowed"),
            "{}",
            problems[0].message
        );
        assert!(problems[1].message.contains("empty label"), "{}", problems[1].message);
        assert!(problems.iter().all(|p| p.source == "/shop"));
    }

    #[test]
    fn a_hosts_label_with_no_usable_name_leaves_the_port_without_a_route() {
        // With the path alone the route would match every host: no route instead.
        let (ports, problems) = read_app(&[("HAPROXY_0_VHOST", "bad_name"), ("HAPROXY_0_PATH", "/api")], 1);
        assert!(ports[0].hosts.is_empty());
        assert!(ports[0].unreadable_scope);
        assert!(!ports[0].has_http_route());
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_0_VHOST"; 2]);
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(normalize_host("A-1.example.COM:443").unwrap(), "a-1.example.com");
        assert_eq!(normalize_host("*.example.com").unwrap(), "*.example.com");
        assert_eq!(normalize_host("localhost").unwrap(), "localhost");
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert_eq!(normalize_host(":80"), Err(HostError::Empty));
        assert!(matches!(normalize_host("a.com:http"), Err(HostError::BadPort { .. })));
        assert!(matches!(normalize_host("a.com:0"), Err(HostError::BadPort { .. })));
        assert_eq!(normalize_host("a.*.com"), Err(HostError::MisplacedWildcard));
        assert_eq!(normalize_host("*"), Err(HostError::MisplacedWildcard));
        assert!(matches!(normalize_host("-a.com"), Err(HostError::HyphenAtEdge { .. })));
        assert!(matches!(
            normalize_host(&"a".repeat(64)),
            Err(HostError::LabelTooLong { .. })
        ));
        assert_eq!(
            normalize_host(&vec!["a".repeat(60); 5].join(".")),
            Err(HostError::TooLong)
        );
        assert!(matches!(
            normalize_host("a b.com"),
            Err(HostError::BadCharacter { character: ' ' })
        ));
    }

    #[test]
    fn paths_are_space_separated_prefixes_starting_with_a_slash() {
        let (ports, problems) = read_app(&[("HAPROXY_0_PATH", " /api  /v2/api /api")], 1);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ports[0].paths, vec!["/api", "/v2/api"]);
        assert!(ports[0].hosts.is_empty());
        assert!(ports[0].has_http_route());

        let (ports, problems) = read_app(&[("HAPROXY_0_PATH", "-i /api api")], 1);
        assert_eq!(ports[0].paths, vec!["/api"]);
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_0_PATH"; 2]);
        assert!(
            problems[0].message.contains("case-insensitive"),
            "{}",
            problems[0].message
        );
        assert!(
            problems[1].message.contains("does not start with `/`"),
            "{}",
            problems[1].message
        );

        let (ports, problems) = read_app(&[("HAPROXY_0_PATH", "api")], 1);
        assert!(!ports[0].has_http_route());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn booleans_are_read_as_marathon_lb_reads_them() {
        for (value, expected, reported) in [
            ("true", true, false),
            ("TRUE", true, false),
            ("t", true, false),
            ("Yes", true, false),
            ("y", true, false),
            ("false", false, false),
            ("F", false, false),
            ("no", false, false),
            ("n", false, false),
            ("1", false, true),
            ("0", false, true),
            ("on", false, true),
        ] {
            let (ports, problems) = read_app(
                &[
                    ("HAPROXY_0_VHOST", "a.example.com"),
                    ("HAPROXY_0_REDIRECT_TO_HTTPS", value),
                    ("HAPROXY_0_STICKY", value),
                ],
                1,
            );
            assert_eq!(ports[0].redirect_to_https, expected, "{value}");
            assert_eq!(ports[0].sticky, expected, "{value}");
            assert_eq!(!problems.is_empty(), reported, "{value}: {problems:?}");
        }
        let (_, problems) = read_app(&[("HAPROXY_0_STICKY", "1")], 1);
        assert!(
            problems[0].message.contains("write true or false"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn balance_names_map_and_others_are_problems_with_the_default() {
        for (value, expected) in [
            ("roundrobin", Balance::RoundRobin),
            ("leastconn", Balance::LeastRequests),
            ("source", Balance::Source),
        ] {
            let (ports, problems) = read_app(&[("HAPROXY_0_BALANCE", value)], 1);
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(ports[0].balance, expected);
        }
        let (ports, problems) = read_app(&[("HAPROXY_1_BALANCE", "static-rr")], 2);
        assert_eq!(ports[1].balance, Balance::RoundRobin);
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_1_BALANCE"]);
        assert!(
            problems[0].message.contains("write roundrobin, leastconn or source"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn groups_per_port_override_the_apps() {
        let (ports, problems) = read_app(
            &[("HAPROXY_GROUP", "internal, external"), ("HAPROXY_1_GROUP", "admin")],
            3,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ports[0].groups, vec!["external", "internal"]);
        assert_eq!(ports[1].groups, vec!["admin"]);
        assert_eq!(ports[2].groups, vec!["external", "internal"]);
    }

    #[test]
    fn an_empty_group_leaves_the_port_without_a_route() {
        let (ports, problems) = read_app(
            &[
                ("HAPROXY_GROUP", " , "),
                ("HAPROXY_0_VHOST", "a.example.com"),
                ("HAPROXY_1_VHOST", "b.example.com"),
                ("HAPROXY_1_GROUP", "internal"),
            ],
            2,
        );
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_GROUP"]);
        assert!(!ports[0].has_http_route());
        assert!(ports[1].has_http_route());
        assert_eq!(ports[1].groups, vec!["internal"]);
    }

    #[test]
    fn disabled_and_tcp_ports_get_no_route() {
        let (ports, problems) = read_app(
            &[
                ("HAPROXY_0_VHOST", "a.example.com"),
                ("HAPROXY_0_ENABLED", "false"),
                ("HAPROXY_1_VHOST", "b.example.com"),
                ("HAPROXY_1_MODE", "TCP"),
                ("HAPROXY_2_VHOST", "c.example.com"),
                ("HAPROXY_2_MODE", "http"),
                ("HAPROXY_2_ENABLED", "true"),
            ],
            3,
        );
        assert!(!ports[0].enabled);
        assert!(!ports[0].has_http_route());
        assert_eq!(ports[1].mode, Some(Mode::Tcp));
        assert!(!ports[1].has_http_route());
        assert!(ports[2].has_http_route());
        // Host names on a tcp port are not served: said so.
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_1_MODE"]);
    }

    #[test]
    fn an_unknown_mode_is_a_problem_and_left_unset() {
        let (ports, problems) = read_app(&[("HAPROXY_0_MODE", "udp"), ("HAPROXY_0_VHOST", "a.example.com")], 1);
        assert_eq!(ports[0].mode, None);
        assert!(ports[0].has_http_route());
        assert_eq!(fields(&problems), vec!["labels.HAPROXY_0_MODE"]);
    }

    #[test]
    fn tepui_labels_take_precedence() {
        let (ports, problems) = read_app(
            &[
                ("HAPROXY_0_VHOST", "old.example.com"),
                ("HAPROXY_0_PATH", "/old /older"),
                ("HAPROXY_0_REDIRECT_TO_HTTPS", "false"),
                ("HAPROXY_0_BALANCE", "roundrobin"),
                ("HAPROXY_0_STICKY", "true"),
                ("tepui.gateway.0.hosts", "new.example.com,www.new.example.com"),
                ("tepui.gateway.0.path", "/new"),
                ("tepui.gateway.0.https_redirect", "true"),
                ("tepui.gateway.0.balance", "least_requests"),
                ("tepui.gateway.0.sticky", "false"),
            ],
            1,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let port = &ports[0];
        assert_eq!(port.hosts, vec!["new.example.com", "www.new.example.com"]);
        assert_eq!(port.paths, vec!["/new"]);
        assert!(port.redirect_to_https);
        assert_eq!(port.balance, Balance::LeastRequests);
        assert!(!port.sticky);
    }

    #[test]
    fn tepui_labels_are_strict() {
        let (ports, problems) = read_app(
            &[
                ("tepui.gateway.0.hosts", "a.example.com"),
                ("tepui.gateway.0.sticky", "yes"),
                ("tepui.gateway.0.balance", "leastconn"),
                ("tepui.gateway.0.path", "/a /b"),
                ("tepui.gateway.0.vhost", "b.example.com"),
                ("tepui.gateway.hosts", "c.example.com"),
            ],
            1,
        );
        assert!(!ports[0].sticky);
        assert_eq!(ports[0].balance, Balance::RoundRobin);
        // A path that cannot be read leaves the port without a route, not one for every path.
        assert!(!ports[0].has_http_route());
        let mut got = fields(&problems);
        got.sort();
        assert_eq!(
            got,
            vec![
                "labels.tepui.gateway.0.balance",
                "labels.tepui.gateway.0.path",
                "labels.tepui.gateway.0.sticky",
                "labels.tepui.gateway.0.vhost",
                "labels.tepui.gateway.hosts",
            ]
        );
    }

    #[test]
    fn labels_for_ports_the_app_does_not_have_are_problems() {
        let (ports, problems) = read_app(
            &[
                ("HAPROXY_0_VHOST", "a.example.com"),
                ("HAPROXY_2_VHOST", "c.example.com"),
                ("HAPROXY_99999999999999999999999_PATH", "/x"),
                ("tepui.gateway.1.hosts", "b.example.com"),
                ("HAPROXY_DEPLOYMENT_GROUP", "shop"),
            ],
            1,
        );
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].hosts, vec!["a.example.com"]);
        assert_eq!(
            fields(&problems),
            vec![
                "labels.HAPROXY_2_VHOST",
                "labels.HAPROXY_99999999999999999999999_PATH",
                "labels.tepui.gateway.1.hosts",
            ]
        );
        assert!(
            problems[0].message.contains("the app has one port, 0"),
            "{}",
            problems[0].message
        );
        let (_, problems) = read_app(&[("HAPROXY_0_VHOST", "a.example.com")], 0);
        assert!(
            problems[0].message.contains("the app has no ports"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn marathon_lb_labels_tepui_does_not_support_are_reported() {
        let (ports, problems) = read_app(
            &[
                ("HAPROXY_0_VHOST", "a.example.com"),
                ("HAPROXY_0_AUTH", "realm:user:hash"),
                ("HAPROXY_0_BIND_ADDR", "10.0.0.1"),
            ],
            1,
        );
        assert!(ports[0].has_http_route());
        assert_eq!(
            fields(&problems),
            vec!["labels.HAPROXY_0_AUTH", "labels.HAPROXY_0_BIND_ADDR"]
        );
        assert!(
            problems[0].message.contains("without a password"),
            "{}",
            problems[0].message
        );
    }
}
