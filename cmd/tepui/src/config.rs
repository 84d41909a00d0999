//! The config file (TOML) of the daemons and the client. Its keys are the long flags of the
//! commands, so every flag, also one added later, can be set there with no second list:
//!
//! - top-level keys: the client's settings (`addr`, `api-token`, `ca-pin`, `ca-file`,
//!   `output`) for every command, and any daemon flag for every daemon (`dev`, `server`,
//!   `agent`, `join`);
//! - a table per daemon (`[server]`, `[agent]`, `[dev]`, `[join]`): that command's flags,
//!   over the top-level ones.
//!
//! The command line wins, then the environment (`TEPUI_*`: [`with_env`] gives every daemon
//! flag one), then the file, then the defaults. The file's values become arguments given to
//! clap after the user's own, and only for flags whose value would otherwise be the default
//! (clap's `value_source`), so clap parses and checks them as it does the command line.
//! Daemons read `/etc/tepui/config.toml` when it exists; `--config FILE` (or `TEPUI_CONFIG`)
//! names another, for any command.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};
use toml::de::{DeTable, DeValue};

/// Where daemons look for their config file when not given one.
pub const DEFAULT_PATH: &str = "/etc/tepui/config.toml";

/// The commands that are daemons: each may have a table of its own.
pub const DAEMONS: &[&str] = &["dev", "server", "agent", "join"];

/// A value of the file, as it becomes flags.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Text(String),
    Bool(bool),
    List(Vec<String>),
}

/// One key of the file.
#[derive(Clone, Debug)]
struct Setting {
    key: String,
    line: usize,
    value: Value,
}

/// Something wrong in the file, at a line (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// A file that passed [`ConfigFile::parse`]: every key names a flag and every value parses.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    top: Vec<Setting>,
    tables: BTreeMap<String, Vec<Setting>>,
}

/// What the file is checked against: the CLI, and which of its flags are the client's
/// settings (the root's flags and those every client verb shares).
pub struct Definition {
    /// The whole CLI, built (global flags propagated, so every command shows its own).
    pub cli: Command,
    client_keys: Vec<String>,
}

impl Definition {
    /// `cli` is the whole CLI; `client` a command holding the flags every client verb shares.
    pub fn new(cli: Command, client: &Command) -> Definition {
        let mut client_keys: Vec<String> = cli
            .get_arguments()
            .chain(client.get_arguments())
            .filter(|a| is_setting(a))
            .filter_map(|a| a.get_long().map(String::from))
            .filter(|k| k != "config")
            .collect();
        client_keys.sort();
        client_keys.dedup();
        let mut cli = cli;
        cli.build();
        Definition { cli, client_keys }
    }

    /// The daemon commands of this build (a client-only build has none).
    fn daemons(&self) -> impl Iterator<Item = &Command> {
        DAEMONS
            .iter()
            .filter_map(|d| self.cli.find_subcommand(d))
            .filter(|c| c.get_arguments().any(|a| is_setting(a) && !a.is_global_set()))
    }

    fn daemon(&self, name: &str) -> Option<&Command> {
        self.daemons().find(|c| c.get_name() == name)
    }

    fn is_client_key(&self, key: &str) -> bool {
        self.client_keys.iter().any(|k| k == key)
    }

    /// The flag a top-level key names.
    fn top_level_arg(&self, key: &str) -> Option<&Arg> {
        if self.is_client_key(key) {
            // `addr` and `output` belong to the client verbs, not the root.
            return long_arg(&self.cli, key).or_else(|| self.cli.get_subcommands().find_map(|c| long_arg(c, key)));
        }
        self.daemons().find_map(|c| long_arg(c, key))
    }
}

/// Flags a file may set: options and switches with a long name (not help or version).
fn is_setting(a: &Arg) -> bool {
    !a.is_positional()
        && a.get_long().is_some()
        && matches!(
            a.get_action(),
            ArgAction::Set | ArgAction::Append | ArgAction::SetTrue | ArgAction::SetFalse
        )
}

fn long_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| is_setting(a) && a.get_long() == Some(key))
}

/// The line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn convert(value: &DeValue) -> Result<Value, String> {
    let scalar = |v: &DeValue| -> Option<String> {
        match v {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(i) => Some(i.to_string()),
            DeValue::Float(f) => Some(f.to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            DeValue::Datetime(d) => Some(d.to_string()),
            DeValue::Array(_) | DeValue::Table(_) => None,
        }
    };
    match value {
        DeValue::Boolean(b) => Ok(Value::Bool(*b)),
        DeValue::Array(items) => items
            .iter()
            .map(|i| scalar(i.get_ref()))
            .collect::<Option<Vec<String>>>()
            .map(Value::List)
            .ok_or_else(|| "a list holds strings or numbers, not lists or tables".to_string()),
        DeValue::Table(_) => Err("a table is not a value here (tables: [dev], [server], [agent], [join])".into()),
        other => Ok(Value::Text(scalar(other).unwrap_or_default())),
    }
}

/// Whether `value` is one `arg` takes; the reason if not.
fn check_value(arg: &Arg, value: &Value) -> Result<(), String> {
    // The flag's own value parser, alone in a command of its own (without the rules that tie
    // it to other flags, which the trial parses check).
    let long = arg.get_long().unwrap_or_default().to_string();
    let probe = Command::new("tepui").no_binary_name(true).arg(
        Arg::new(long.clone())
            .long(long.clone())
            .action(ArgAction::Set)
            .allow_hyphen_values(true)
            .value_parser(arg.get_value_parser().clone()),
    );
    let parse = |v: &str| {
        probe
            .clone()
            .try_get_matches_from([format!("--{long}={v}")])
            .map(|_| ())
            .map_err(|e| clap_message(&e))
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue | ArgAction::SetFalse, Value::Bool(_)) => Ok(()),
        (ArgAction::SetTrue | ArgAction::SetFalse, _) => Err("is a switch: give true or false".into()),
        (ArgAction::Append, Value::List(items)) => items.iter().try_for_each(|v| parse(v)),
        (_, Value::List(_)) => Err("takes one value, not a list".into()),
        (_, Value::Bool(b)) => parse(&b.to_string()),
        (_, Value::Text(t)) => parse(t),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

impl ConfigFile {
    /// Reads the file and checks it against the CLI: every problem, each with its line.
    pub fn load(path: &Path, def: &Definition) -> anyhow::Result<Result<ConfigFile, Vec<Problem>>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
        Ok(ConfigFile::parse(path, &text, def))
    }

    pub fn parse(path: &Path, text: &str, def: &Definition) -> Result<ConfigFile, Vec<Problem>> {
        let file = ConfigFile::parse_settings(path, text, def)?;
        let problems = file.trial_parses(def);
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }

    /// Each key and value on its own, without the rules between flags.
    fn parse_settings(path: &Path, text: &str, def: &Definition) -> Result<ConfigFile, Vec<Problem>> {
        let doc = DeTable::parse(text).map_err(|e| {
            vec![Problem {
                line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
                message: e.message().trim().to_string(),
            }]
        })?;
        // A client-only build knows no daemon flags: it leaves them to the daemons' builds.
        let with_daemons = def.daemons().next().is_some();
        let mut problems = Vec::new();
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            top: Vec::new(),
            tables: BTreeMap::new(),
        };
        let setting = |key: &str, line: usize, value: &DeValue, problems: &mut Vec<Problem>| {
            if key == "config" {
                problems.push(Problem {
                    line,
                    message: "a config file cannot name another (config is a command-line flag)".into(),
                });
                return None;
            }
            match convert(value) {
                Ok(value) => Some(Setting {
                    key: key.to_string(),
                    line,
                    value,
                }),
                Err(message) => {
                    problems.push(Problem {
                        line,
                        message: format!("{key}: {message}"),
                    });
                    None
                }
            }
        };
        for (key, value) in doc.get_ref().iter() {
            let name: &str = key.get_ref();
            let line = line_of(text, key.span().start);
            if let DeValue::Table(table) = value.get_ref() {
                if !DAEMONS.contains(&name) {
                    problems.push(Problem {
                        line,
                        message: format!("unknown table [{name}]: the tables are [dev], [server], [agent] and [join]"),
                    });
                    continue;
                }
                let Some(cmd) = def.daemon(name) else {
                    // This build has no such daemon: nothing to check it against.
                    continue;
                };
                let mut settings = Vec::new();
                for (k, v) in table.iter() {
                    let k_line = line_of(text, k.span().start);
                    let Some(s) = setting(k.get_ref(), k_line, v.get_ref(), &mut problems) else {
                        continue;
                    };
                    match long_arg(cmd, &s.key) {
                        None => problems.push(Problem {
                            line: k_line,
                            message: format!("unknown key {} in [{name}]: `tepui {name}` has no --{}", s.key, s.key),
                        }),
                        Some(arg) => match check_value(arg, &s.value) {
                            Ok(()) => settings.push(s),
                            Err(why) => problems.push(Problem {
                                line: k_line,
                                message: format!("[{name}] {}: {why}", s.key),
                            }),
                        },
                    }
                }
                file.tables.insert(name.to_string(), settings);
                continue;
            }
            let Some(s) = setting(name, line, value.get_ref(), &mut problems) else {
                continue;
            };
            match def.top_level_arg(&s.key) {
                Some(arg) => match check_value(arg, &s.value) {
                    Ok(()) => file.top.push(s),
                    Err(why) => problems.push(Problem {
                        line,
                        message: format!("{}: {why}", s.key),
                    }),
                },
                None if !with_daemons => {}
                None => problems.push(Problem {
                    line,
                    message: format!(
                        "unknown key {name}: not a flag of the daemons (tepui dev, server, agent, join) nor a client setting"
                    ),
                }),
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            problems.sort_by_key(|p| p.line);
            Err(problems)
        }
    }

    /// Each daemon started with nothing but the file, as clap would see it: catches flags that
    /// exclude or need each other (`bootstrap` with `join`, `api-cert` without `api-key`).
    fn trial_parses(&self, def: &Definition) -> Vec<Problem> {
        let mut problems = Vec::new();
        let has_daemon_keys = self.top.iter().any(|s| !def.is_client_key(&s.key));
        for daemon in def.daemons() {
            let name = daemon.get_name();
            let table = self.tables.get(name);
            if table.is_none() && !has_daemon_keys {
                continue;
            }
            let mut args: Vec<OsString> = vec!["tepui".into(), name.into()];
            if name == "join" {
                // Its one positional, which a file never gives.
                args.push("127.0.0.1".into());
            }
            let empty = ArgMatches::default();
            args.extend(self.arguments(def, &[name.to_string()], daemon, &empty));
            if let Err(e) = def.cli.clone().try_get_matches_from(&args) {
                if e.kind() != clap::error::ErrorKind::MissingRequiredArgument {
                    let line = table.and_then(|t| t.first()).map(|s| s.line).unwrap_or(1);
                    problems.push(Problem {
                        line,
                        message: format!("tepui {name}: {}", clap_message(&e)),
                    });
                }
            }
        }
        problems
    }

    /// The arguments the file adds to the command at `path` (`["server"]`, `["image",
    /// "import"]`), given what the command line and the environment already set (`matches`,
    /// the command's own).
    fn arguments(&self, def: &Definition, path: &[String], leaf: &Command, matches: &ArgMatches) -> Vec<OsString> {
        let daemon = path.len() == 1 && def.daemon(&path[0]).is_some();
        // By key: the table's over the top level's.
        let mut chosen: BTreeMap<&str, &Setting> = BTreeMap::new();
        for s in &self.top {
            if daemon || def.is_client_key(&s.key) {
                chosen.insert(&s.key, s);
            }
        }
        if daemon {
            for s in self.tables.get(&path[0]).into_iter().flatten() {
                chosen.insert(&s.key, s);
            }
        }
        let valid: Vec<&str> = leaf.get_arguments().map(|a| a.get_id().as_str()).collect();
        let given = |arg: &Arg| {
            let id = arg.get_id().as_str();
            valid.contains(&id)
                && matches!(
                    matches.try_contains_id(id).ok().and_then(|_| matches.value_source(id)),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
        };
        let mut settings: Vec<&Setting> = chosen.into_values().collect();
        settings.sort_by_key(|s| s.line);
        let mut out = Vec::new();
        for s in settings {
            let Some(arg) = long_arg(leaf, &s.key) else {
                continue;
            };
            // The command line and the environment win, also over a flag that excludes this one.
            if given(arg) || leaf.get_arg_conflicts_with(arg).into_iter().any(given) {
                continue;
            }
            let flag = format!("--{}", s.key);
            match (&s.value, arg.get_action()) {
                (Value::Bool(true), ArgAction::SetTrue | ArgAction::SetFalse) => out.push(flag.into()),
                (Value::Bool(false), ArgAction::SetTrue | ArgAction::SetFalse) => {}
                (Value::Bool(b), _) => out.push(format!("{flag}={b}").into()),
                (Value::Text(t), _) => out.push(format!("{flag}={t}").into()),
                (Value::List(items), _) => out.extend(items.iter().map(|v| format!("{flag}={v}").into())),
            }
        }
        out
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Gives every daemon flag without an environment variable one, `TEPUI_` and its long name
/// (`--http-port`: `TEPUI_HTTP_PORT`), and every client setting too (`TEPUI_OUTPUT`).
pub fn with_env(cli: Command, client: &Command) -> Command {
    let client_keys: Vec<String> = client
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect();
    fn env_for(a: Arg) -> Arg {
        if a.get_env().is_some() || !is_setting(&a) {
            return a;
        }
        let long = a.get_long().unwrap_or_default();
        let name = format!("TEPUI_{}", long.to_uppercase().replace('-', "_"));
        a.env(name)
    }
    fn client_env(c: Command, keys: &[String]) -> Command {
        c.mut_args(|a| {
            if a.get_long().is_some_and(|l| keys.iter().any(|k| k == l)) {
                env_for(a)
            } else {
                a
            }
        })
        .mut_subcommands(|s| client_env(s, keys))
    }
    let mut cli = client_env(cli, &client_keys);
    for daemon in DAEMONS {
        if cli.find_subcommand(daemon).is_some() {
            cli = cli.mut_subcommand(daemon, |c| c.mut_args(env_for));
        }
    }
    cli
}

/// Which file a command reads: the one named (`--config`, `TEPUI_CONFIG`), else the default
/// one for a daemon when it exists.
pub fn file_for(named: Option<&Path>, is_daemon: bool, default: &Path) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_path_buf()),
        None if is_daemon && default.exists() => Some(default.to_path_buf()),
        None => None,
    }
}

/// Parses the command line with the config file's settings: clap's own errors (and help) as
/// clap prints them, the file's problems each with its line; both exit.
pub fn parse<T: FromArgMatches>(def: &Definition, args: Vec<OsString>) -> T {
    match parse_with(def, args, Path::new(DEFAULT_PATH)) {
        Ok(t) => t,
        Err(Failure::Clap(e, note)) => {
            let code = e.exit_code();
            let _ = e.print();
            if let Some(note) = note {
                eprintln!("{note}");
            }
            std::process::exit(code);
        }
        Err(Failure::File(path, problems)) => {
            for p in problems {
                eprintln!("error: {}:{}: {}", path.display(), p.line, p.message);
            }
            std::process::exit(1);
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[derive(Debug)]
pub enum Failure {
    /// clap's error (or help), and which settings came from the file.
    Clap(clap::Error, Option<String>),
    File(PathBuf, Vec<Problem>),
    Other(anyhow::Error),
}

pub fn parse_with<T: FromArgMatches>(def: &Definition, args: Vec<OsString>, default: &Path) -> Result<T, Failure> {
    use clap::error::ErrorKind;
    let (matches, first_error) = match def.cli.clone().try_get_matches_from(&args) {
        Ok(m) => (m, None),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            return Err(Failure::Clap(e, None))
        }
        // Perhaps the file gives what is missing (a daemon's --token): read it leniently first.
        Err(e) => match def.cli.clone().ignore_errors(true).try_get_matches_from(&args) {
            Ok(m) => (m, Some(e)),
            Err(_) => return Err(Failure::Clap(e, None)),
        },
    };
    let mut path = Vec::new();
    let mut leaf = &def.cli;
    let mut leaf_matches = &matches;
    while let Some((name, sub)) = leaf_matches.subcommand() {
        path.push(name.to_string());
        leaf = match leaf.find_subcommand(name) {
            Some(c) => c,
            None => break,
        };
        leaf_matches = sub;
    }
    let finish = |m: &ArgMatches, first_error: Option<clap::Error>| match first_error {
        Some(e) => Err(Failure::Clap(e, None)),
        None => T::from_arg_matches(m).map_err(|e| Failure::Clap(e, None)),
    };
    // `tepui config check` reads the file itself, to report on it; the hidden shim takes its
    // arguments verbatim from the agent.
    if path.first().map(String::as_str) == Some("config") || leaf.is_hide_set() {
        return finish(&matches, first_error);
    }
    let named = matches
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .filter(|p| !p.as_os_str().is_empty());
    let is_daemon = path.len() == 1 && def.daemon(&path[0]).is_some();
    let Some(file_path) = file_for(named.map(PathBuf::as_path), is_daemon, default) else {
        return finish(&matches, first_error);
    };
    let file = match ConfigFile::load(&file_path, def) {
        Ok(Ok(f)) => f,
        Ok(Err(problems)) => return Err(Failure::File(file_path, problems)),
        Err(e) => return Err(Failure::Other(e)),
    };
    let extra = file.arguments(def, &path, leaf, leaf_matches);
    if extra.is_empty() {
        return finish(&matches, first_error);
    }
    let mut args = args;
    // Before a `--` (after which everything is a positional), else at the end.
    let at = args
        .iter()
        .skip(1)
        .position(|a| a == "--")
        .map(|i| i + 1)
        .unwrap_or(args.len());
    let note = format!(
        "(with settings from {}: {})",
        file.path.display(),
        extra.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    args.splice(at..at, extra);
    match def.cli.clone().try_get_matches_from(&args) {
        Ok(m) => T::from_arg_matches(&m).map_err(|e| Failure::Clap(e, Some(note))),
        Err(e) => Err(Failure::Clap(e, Some(note))),
    }
}

/// `tepui config check`: "ok", or the problems (each with its line) and exit 1.
pub fn check(def: &Definition, named: Option<&Path>) -> anyhow::Result<()> {
    let path = named
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    if named.is_none() && !path.exists() {
        anyhow::bail!("no config file at {DEFAULT_PATH}; name one with --config FILE");
    }
    match ConfigFile::load(&path, def)? {
        Ok(_) => {
            if def.daemons().next().is_none() {
                println!("ok (a client-only build: the daemons' settings were not checked)");
            } else {
                println!("ok");
            }
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                println!("{}:{}: {}", path.display(), p.line, p.message);
            }
            std::process::exit(1);
        }
    }
}

#[cfg(all(test, feature = "daemon"))]
mod tests {
    use super::*;
    use crate::{cli_definition, Cli, Command as Verb, ServerArgs, ServerCmd};

    /// Parses `args` with `text` as the file given by --config.
    fn parse_file(text: &str, args: &[&str]) -> Result<Cli, Failure> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.insert(1, "--config".into());
        argv.insert(2, path.clone().into());
        parse_with(&cli_definition(), argv, Path::new("/nonexistent/config.toml"))
    }

    fn server(cli: Cli) -> ServerArgs {
        match cli.command {
            Verb::Server(ServerCmd { daemon, .. }) => daemon,
            _ => panic!("not tepui server"),
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        match ConfigFile::parse(Path::new("c.toml"), text, &cli_definition()) {
            Ok(_) => vec![],
            Err(p) => p,
        }
    }

    #[test]
    fn the_command_line_wins_then_the_table_then_the_top_level() {
        let file = "http-port = 6000\ndns-ttl = 3\nlog-json = true\n\n[server]\nhttp-port = 6100\n\
                    dns-upstream = [\"1.1.1.1\", \"9.9.9.9:5353\"]\ngateway-pin-workers = false\n";
        let s = server(parse_file(file, &["tepui", "server", "--dns-ttl", "7"]).unwrap());
        assert_eq!(s.daemon.http_port, 6100, "the table over the top level");
        assert_eq!(s.daemon.dns_ttl, 7, "the command line over the file");
        assert!(s.daemon.log_json, "a switch");
        assert!(!s.daemon.agent.gateway_pin_workers, "a boolean option");
        assert_eq!(s.daemon.dns_upstreams.len(), 2, "a list is the flag repeated");
        // A repeated flag on the command line replaces the file's list, not adds to it.
        let s = server(parse_file(file, &["tepui", "server", "--dns-upstream", "8.8.8.8"]).unwrap());
        assert_eq!(s.daemon.dns_upstreams, vec!["8.8.8.8:53".parse().unwrap()]);
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        // The only test that reads this variable.
        std::env::set_var("TEPUI_DNS_DOMAIN", "from.env");
        let s = server(
            parse_file(
                "[server]\ndns-domain = \"from.file\"\ndns-port = 99\n",
                &["tepui", "server"],
            )
            .unwrap(),
        );
        std::env::remove_var("TEPUI_DNS_DOMAIN");
        assert_eq!(s.daemon.dns_domain, "from.env");
        assert_eq!(s.daemon.dns_port, 99);
    }

    #[test]
    fn the_file_gives_what_the_command_line_lacks_and_yields_to_what_excludes_it() {
        let cli = parse_file("[join]\ntoken = \"tepui1.agent.x\"\n", &["tepui", "join", "10.0.0.1"]).unwrap();
        match cli.command {
            Verb::Join(j) => assert_eq!(j.token, "tepui1.agent.x"),
            _ => panic!("not join"),
        }
        // --join on the command line: the file's bootstrap (which excludes it) stays out.
        let s = server(
            parse_file(
                "[server]\nbootstrap = true\n",
                &["tepui", "server", "--join", "10.0.0.1:5052", "--token", "t"],
            )
            .unwrap(),
        );
        assert!(!s.bootstrap);
        assert_eq!(s.join.as_deref(), Some("10.0.0.1:5052"));
    }

    #[test]
    fn daemon_settings_stay_out_of_client_verbs() {
        let file = "name = \"node-1\"\naddr = \"127.0.0.9:5050\"\noutput = \"json\"\n";
        let cli = parse_file(file, &["tepui", "task", "run", "--host", "--", "true"]).unwrap();
        match cli.command {
            Verb::Task(crate::TaskCmd::Run { run, c }) => {
                assert_eq!(run.name, None, "the daemons' name is not the task's");
                assert_eq!(c.addr, "127.0.0.9:5050");
                assert!(matches!(c.output, crate::Format::Json));
                assert_eq!(run.cmd, vec!["true"]);
            }
            _ => panic!("not task run"),
        }
        let s = server(parse_file(file, &["tepui", "server"]).unwrap());
        assert_eq!(s.daemon.name.as_deref(), Some("node-1"));
    }

    #[test]
    fn the_shim_takes_its_arguments_as_they_are() {
        let cli = parse_file("api-token = \"x.y\"\n", &["tepui", "shim", "--sandbox", "/s"]).unwrap();
        match cli.command {
            Verb::Shim { args } => assert_eq!(args, ["--sandbox", "/s"]),
            _ => panic!("not the shim"),
        }
    }

    #[test]
    fn problems_name_their_line() {
        let text = "bogus = 1\nhttp-port = \"lots\"\n[server]\nnope = true\nlog-json = \"yes\"\n\
                    [agent]\nbootstrap = true\n[elsewhere]\nx = 1\n";
        let p = problems(text);
        let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 5, 7, 8], "{p:#?}");
        assert!(p[0].message.contains("unknown key bogus"), "{p:#?}");
        assert!(p[1].message.contains("invalid value 'lots'"), "{p:#?}");
        assert!(p[2].message.contains("unknown key nope in [server]"), "{p:#?}");
        assert!(p[3].message.contains("true or false"), "{p:#?}");
        assert!(p[4].message.contains("tepui agent` has no --bootstrap"), "{p:#?}");
        assert!(p[5].message.contains("unknown table [elsewhere]"), "{p:#?}");
        assert_eq!(problems("x = [1,\n").len(), 1);
        assert!(problems("config = \"/etc/other.toml\"\n")[0]
            .message
            .contains("cannot name another"));
        // Flags that exclude each other, as clap says.
        let p = problems("[server]\nbootstrap = true\njoin = \"10.0.0.1:5052\"\ntoken = \"t\"\n");
        assert!(p[0].message.contains("cannot be used with"), "{p:#?}");
        assert!(problems("data-dir = \"/var/lib/tepui\"\n[server]\nbootstrap = true\n").is_empty());
    }

    #[test]
    fn a_bad_file_stops_a_daemon_with_its_lines() {
        match parse_file("[server]\nhttp-port = 70000\n", &["tepui", "server"]) {
            Err(Failure::File(_, p)) => assert_eq!(p[0].line, 2, "{p:#?}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a port of 70000 was taken"),
        }
    }

    #[test]
    fn daemons_read_the_default_file_and_clients_only_a_named_one() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("config.toml");
        assert_eq!(file_for(None, true, &default), None, "absent");
        std::fs::write(&default, "").unwrap();
        assert_eq!(file_for(None, true, &default), Some(default.clone()));
        assert_eq!(file_for(None, false, &default), None);
        let named = Path::new("/x.toml");
        assert_eq!(file_for(Some(named), false, &default), Some(named.to_path_buf()));
    }

    #[test]
    fn every_daemon_flag_has_an_environment_variable() {
        let def = cli_definition();
        for daemon in def.daemons() {
            for arg in daemon.get_arguments().filter(|a| is_setting(a)) {
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("--{:?} has none", arg.get_long()));
                assert!(env.to_string_lossy().starts_with("TEPUI_"), "{env:?}");
            }
        }
        let http_port = long_arg(def.daemon("server").unwrap(), "http-port").unwrap();
        assert_eq!(http_port.get_env().unwrap(), "TEPUI_HTTP_PORT");
    }

    /// deploy/config.example.toml documents every daemon flag, and every key it shows (once
    /// uncommented) is one the CLI takes, with a value it takes.
    #[test]
    fn the_example_file_matches_the_cli() {
        let example = include_str!("../../../deploy/config.example.toml");
        let mut keys = Vec::new();
        let uncommented: String = example
            .lines()
            .map(|line| {
                let Some(rest) = line.strip_prefix("# ") else {
                    return line.to_string();
                };
                match rest.split_once(" = ") {
                    Some((key, _))
                        if !key.is_empty()
                            && key
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
                    {
                        keys.push(key.to_string());
                        rest.to_string()
                    }
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let def = cli_definition();
        if let Err(p) = ConfigFile::parse_settings(Path::new("config.example.toml"), &uncommented, &def) {
            panic!("deploy/config.example.toml, uncommented: {p:#?}");
        }
        let mut missing = Vec::new();
        for daemon in def.daemons() {
            for arg in daemon
                .get_arguments()
                .filter(|a| is_setting(a) && !a.is_global_set() && !a.is_hide_set())
            {
                let long = arg.get_long().unwrap_or_default().to_string();
                if !keys.contains(&long) && !missing.contains(&long) {
                    missing.push(long);
                }
            }
        }
        assert!(missing.is_empty(), "deploy/config.example.toml lacks {missing:?}");
        // The client's settings too.
        for key in &def.client_keys {
            assert!(
                keys.contains(key),
                "deploy/config.example.toml lacks the client setting {key}"
            );
        }
    }
}
