//! `tepui package ...`: the package catalog through Cosmos's API (`/package/*`,
//! `/cosmos/service/update`). Each verb is a call or two and a table or JSON.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use tepui_api::Client;

use crate::output::{emit, table};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum PackageCmd {
    /// Packages of the repositories whose name, description or a tag holds QUERY (`*` is a
    /// wildcard over the whole name).
    Search {
        query: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// A package: what it is, its versions and its options with their defaults.
    Describe {
        name: String,
        /// A version other than the newest.
        #[arg(long)]
        version: Option<String>,
        /// Show what it would deploy with these options instead (nothing is deployed).
        #[arg(long)]
        render: bool,
        #[command(flatten)]
        o: OptionArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Install a package: its options are checked against its schema before anything is
    /// deployed.
    Install {
        name: String,
        /// A version other than the newest.
        #[arg(long)]
        version: Option<String>,
        /// The app (or group) id to install it as, instead of the package's.
        #[arg(long)]
        app_id: Option<String>,
        #[command(flatten)]
        o: OptionArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Installed packages.
    Ls {
        /// Only this package's installs.
        name: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Remove an installed package and everything it deployed.
    Uninstall {
        name: String,
        /// Which install, when there are several.
        #[arg(long)]
        app_id: Option<String>,
        /// Every install of the package.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Move an install to another version and/or options: its apps roll to the new definition
    /// (Marathon's rolling deployment); its jobs are replaced.
    Upgrade {
        name: String,
        /// Which install, when there are several.
        #[arg(long)]
        app_id: Option<String>,
        /// The version to move to [default: the installed one: a change of options].
        #[arg(long)]
        version: Option<String>,
        /// The options given are all the options (otherwise they are merged over the
        /// installed ones).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        o: OptionArgs,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Package repositories: Universe trees on the servers' disk, or indexes over HTTP.
    #[command(subcommand)]
    Repo(RepoCmd),
}

#[derive(Subcommand)]
pub enum RepoCmd {
    /// Add a repository: a URL of a Universe index, or a directory (a Universe tree) that the
    /// leading server reads.
    Add {
        name: String,
        /// `https://...`, `http://...`, or a directory (made absolute here).
        location: String,
        /// Its place in the search order (0: first) [default: last].
        #[arg(long)]
        index: Option<u32>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// The repositories, in the order they are searched.
    Ls(ClientArgs),
    /// Remove a repository (what was installed from it stays).
    Rm {
        name: String,
        #[command(flatten)]
        c: ClientArgs,
    },
}

/// A package's options: a JSON file, with single values set over it.
#[derive(Args, Clone, Default)]
pub struct OptionArgs {
    /// The options, a JSON object (a file, `-` for stdin).
    #[arg(long)]
    options: Option<PathBuf>,
    /// One option, `path.to.option=value`; the value is JSON when it reads as JSON
    /// (`3`, `true`, `["a"]`), else a string. Repeatable; applied over --options.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

impl OptionArgs {
    /// The options object, or none when none were given.
    fn read(&self) -> anyhow::Result<Option<Value>> {
        let mut options = match &self.options {
            None => None,
            Some(file) => {
                let text = if file.as_os_str() == "-" {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                    t
                } else {
                    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
                };
                let v: Value =
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
                if !v.is_object() {
                    bail!("{}: the options must be a JSON object", file.display());
                }
                Some(v)
            }
        };
        for assignment in &self.set {
            let root = options.get_or_insert_with(|| json!({}));
            set_option(root, assignment)?;
        }
        Ok(options)
    }
}

/// Sets `a.b.c=value` in `root`, making the objects on the way.
fn set_option(root: &mut Value, assignment: &str) -> anyhow::Result<()> {
    let Some((path, raw)) = assignment.split_once('=') else {
        bail!("--set {assignment}: give PATH=VALUE, like service.instances=2");
    };
    let parts: Vec<&str> = path.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {assignment}: {path:?} is not a dotted path like service.instances");
    }
    let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut at = root;
    for (i, part) in parts.iter().enumerate() {
        let obj = match at {
            Value::Object(o) => o,
            _ => bail!(
                "--set {assignment}: {} is set to a value that is not an object",
                parts[..i].join(".")
            ),
        };
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value);
            return Ok(());
        }
        at = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The first line of a text, cut to `max` characters.
fn short(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max - 3).collect::<String>())
    } else {
        line.to_string()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn search_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let versions: Vec<String> = p["versions"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            vec![
                text(&p["name"]),
                text(&p["currentVersion"]),
                versions.join(","),
                strings(&p["tags"]).join(","),
                short(&text(&p["description"]), 60),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no packages found (tepui package repo ls shows where they are looked for)".into();
    }
    table(&["NAME", "VERSION", "VERSIONS", "TAGS", "DESCRIPTION"], rows)
}

/// A schema's options, flattened: `path (type, default D): description`.
fn option_lines(schema: &Value, prefix: &str, out: &mut Vec<Vec<String>>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if prop.get("properties").is_some() {
            option_lines(prop, &path, out);
            continue;
        }
        out.push(vec![
            path,
            text(prop.get("type").unwrap_or(&Value::Null)),
            prop.get("default").map(|d| d.to_string()).unwrap_or_default(),
            short(&text(prop.get("description").unwrap_or(&Value::Null)), 60),
        ]);
    }
}

fn describe_text(v: &Value) -> String {
    let p = &v["package"];
    let mut out = format!(
        "{} {} (packaging {})\n{}\n",
        text(&p["name"]),
        text(&p["version"]),
        text(&p["packagingVersion"]),
        text(&p["description"])
    );
    out.push_str(&format!("maintainer: {}\n", text(&p["maintainer"])));
    let tags = strings(&p["tags"]);
    if !tags.is_empty() {
        out.push_str(&format!("tags:       {}\n", tags.join(", ")));
    }
    let mut deploys = Vec::new();
    if p.get("marathon").is_some() {
        deploys.push("a Marathon app (or group)");
    }
    if p.get("metronome").is_some() {
        deploys.push("Metronome jobs");
    }
    out.push_str(&format!("deploys:    {}\n", deploys.join(" and ")));
    if let Some(notes) = p.get("preInstallNotes").and_then(Value::as_str) {
        out.push_str(&format!("before installing: {notes}\n"));
    }
    let mut rows = Vec::new();
    if let Some(schema) = p.get("config") {
        option_lines(schema, "", &mut rows);
    }
    if rows.is_empty() {
        out.push_str("options:    none");
    } else {
        out.push_str("\noptions (--set PATH=VALUE, or --options FILE):\n");
        out.push_str(&table(&["PATH", "TYPE", "DEFAULT", "DESCRIPTION"], rows));
    }
    out
}

fn installs_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let def = &i["packageInformation"]["packageDefinition"];
            vec![
                text(&def["name"]),
                text(&def["version"]),
                text(&i["appId"]),
                strings(&i["tepui"]["apps"]).join(","),
                strings(&i["tepui"]["jobs"]).join(","),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no packages installed".into();
    }
    table(&["NAME", "VERSION", "APP ID", "APPS", "JOBS"], rows)
}

fn repos_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| vec![i.to_string(), text(&r["name"]), text(&r["uri"])])
        .collect();
    if rows.is_empty() {
        return "no package repositories (tepui package repo add NAME URL|DIR)".into();
    }
    table(&["#", "NAME", "URI"], rows)
}

/// A repository location as the API takes it: URLs as given, a directory made absolute.
fn repo_uri(location: &str) -> anyhow::Result<String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let path = Path::new(location);
    match std::fs::canonicalize(path) {
        Ok(abs) => Ok(abs.display().to_string()),
        // Not here, but perhaps on the servers.
        Err(_) if path.is_absolute() => Ok(location.to_string()),
        Err(e) => bail!("{location}: {e} (give a URL, or a directory that exists)"),
    }
}

/// The install of `name` to act on: `app_id`, or its only one.
async fn install_id(client: &Client, name: &str, app_id: Option<String>) -> anyhow::Result<String> {
    if let Some(id) = app_id {
        return Ok(id);
    }
    let listed: Value = client.post("/package/list", &json!({ "packageName": name })).await?;
    let ids: Vec<String> = listed["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["appId"].as_str().map(str::to_string))
        .collect();
    match ids.as_slice() {
        [] => bail!("package {name} is not installed (tepui package ls)"),
        [one] => Ok(one.clone()),
        many => bail!(
            "package {name} is installed {} times ({}); say which with --app-id",
            many.len(),
            many.join(", ")
        ),
    }
}

pub async fn run(cmd: PackageCmd) -> anyhow::Result<()> {
    match cmd {
        PackageCmd::Search { query, c } => {
            let v: Value = Client::new(&c.addr)
                .post("/package/search", &json!({ "query": query }))
                .await?;
            emit(c.output, &v, search_table)
        }
        PackageCmd::Describe {
            name,
            version,
            render,
            o,
            c,
        } => {
            let client = Client::new(&c.addr);
            if render {
                let body = json!({"packageName": name, "packageVersion": version, "options": o.read()?});
                let v: Value = client.post("/package/render", &body).await?;
                return emit(c.output, &v, |v| {
                    let mut out = serde_json::to_string_pretty(&v["marathonJson"]).unwrap_or_default();
                    if v["metronomeJobs"].as_array().is_some_and(|j| !j.is_empty()) {
                        out.push('\n');
                        out.push_str(&serde_json::to_string_pretty(&v["metronomeJobs"]).unwrap_or_default());
                    }
                    out
                });
            }
            let v: Value = client
                .post(
                    "/package/describe",
                    &json!({"packageName": name, "packageVersion": version}),
                )
                .await?;
            emit(c.output, &v, describe_text)
        }
        PackageCmd::Install {
            name,
            version,
            app_id,
            o,
            c,
        } => {
            let body = json!({"packageName": name, "packageVersion": version, "options": o.read()?, "appId": app_id});
            let v: Value = Client::new(&c.addr).post("/package/install", &body).await?;
            emit(c.output, &v, |v| {
                let mut out = format!(
                    "package {} {} installed as {}",
                    text(&v["packageName"]),
                    text(&v["packageVersion"]),
                    text(&v["appId"])
                );
                if let Some(notes) = v["postInstallNotes"].as_str() {
                    out.push('\n');
                    out.push_str(notes);
                }
                out
            })
        }
        PackageCmd::Ls { name, c } => {
            let v: Value = Client::new(&c.addr)
                .post("/package/list", &json!({ "packageName": name }))
                .await?;
            emit(c.output, &v, installs_table)
        }
        PackageCmd::Uninstall { name, app_id, all, c } => {
            let body = json!({"packageName": name, "appId": app_id, "all": all});
            let v: Value = Client::new(&c.addr).post("/package/uninstall", &body).await?;
            emit(c.output, &v, |v| {
                let mut lines = Vec::new();
                for r in v["results"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "package {} {} uninstalled from {}",
                        text(&r["packageName"]),
                        text(&r["packageVersion"]),
                        text(&r["appId"])
                    ));
                    if let Some(notes) = r["postUninstallNotes"].as_str() {
                        lines.push(notes.to_string());
                    }
                }
                lines.join("\n")
            })
        }
        PackageCmd::Upgrade {
            name,
            app_id,
            version,
            replace,
            o,
            c,
        } => {
            let client = Client::new(&c.addr);
            let id = install_id(&client, &name, app_id).await?;
            let body = json!({"appId": id, "packageName": name, "packageVersion": version,
                              "options": o.read()?, "replace": replace});
            let v: Value = client.post("/cosmos/service/update", &body).await?;
            emit(c.output, &v, |v| {
                let deployment = match v["marathonDeploymentId"].as_str() {
                    Some(d) => format!(" (deployment {d})"),
                    None => String::new(),
                };
                format!(
                    "{id} is now {} {}{deployment}",
                    text(&v["package"]["name"]),
                    text(&v["package"]["version"])
                )
            })
        }
        PackageCmd::Repo(RepoCmd::Add {
            name,
            location,
            index,
            c,
        }) => {
            let body = json!({"name": name, "uri": repo_uri(&location)?, "index": index});
            let v: Value = Client::new(&c.addr).post("/package/repository/add", &body).await?;
            emit(c.output, &v, repos_table)
        }
        PackageCmd::Repo(RepoCmd::Ls(c)) => {
            let v: Value = Client::new(&c.addr)
                .post("/package/repository/list", &json!({}))
                .await?;
            emit(c.output, &v, repos_table)
        }
        PackageCmd::Repo(RepoCmd::Rm { name, c }) => {
            let v: Value = Client::new(&c.addr)
                .post("/package/repository/delete", &json!({ "name": name }))
                .await?;
            emit(c.output, &v, |_| format!("repository {name} removed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_builds_nested_options_over_a_file() {
        let mut root = json!({"service": {"name": "web"}});
        set_option(&mut root, "service.instances=3").unwrap();
        set_option(&mut root, "gateway.host=web.example.test").unwrap();
        set_option(&mut root, "flags.on=true").unwrap();
        set_option(&mut root, "list=[\"a\",1]").unwrap();
        set_option(&mut root, "text=\"42\"").unwrap();
        assert_eq!(
            root,
            json!({"service": {"name": "web", "instances": 3}, "gateway": {"host": "web.example.test"},
                   "flags": {"on": true}, "list": ["a", 1], "text": "42"})
        );
        assert!(
            set_option(&mut root, "service.name.first=x").is_err(),
            "name is a string"
        );
        assert!(set_option(&mut root, "novalue").is_err());
        assert!(set_option(&mut root, "a..b=1").is_err());
    }

    #[test]
    fn schemas_read_as_option_rows() {
        let schema = json!({"properties": {"service": {"properties": {
            "instances": {"type": "integer", "default": 1, "description": "how many"}}},
            "top": {"type": "string"}}});
        let mut rows = Vec::new();
        option_lines(&schema, "", &mut rows);
        assert_eq!(
            rows,
            [
                vec![
                    "service.instances".to_string(),
                    "integer".into(),
                    "1".into(),
                    "how many".into()
                ],
                vec!["top".to_string(), "string".into(), "".into(), "".into()],
            ]
        );
    }
}
