//! Mustache, as Cosmos renders Universe's `marathon.json.mustache`: the spec's variables,
//! sections, inverted sections and comments, with standalone tag lines removed, over a JSON
//! context. What differs from HTML Mustache is what Cosmos does so that the output stays JSON:
//!
//! - nothing is HTML-escaped (`{{x}}` and `{{{x}}}` are the same);
//! - a string value renders JSON-escaped without its quotes (`"{{name}}"` stays a valid JSON
//!   string whatever the name holds), except as an element of a list, where it keeps them (so
//!   `[{{#hosts}}{{.}},{{/hosts}}]` lists JSON strings);
//! - an integral number renders without a fraction (`256.0` is `256`), as Cosmos' BigInt does;
//! - `{{#asJson}}name{{/asJson}}` renders the value of `name` raw: a string's text unescaped
//!   (for options that hold JSON text, as in Cosmos), anything else as JSON.
//!
//! Falsy for a section: missing, `null`, `false`, `""` and `[]`. A list repeats the section
//! for each element; anything else truthy renders it once with the value on top of the
//! context. Objects and lists in a variable render as JSON (Mustache.java printed Java's
//! `toString`, which no template can have wanted). Partials and delimiter changes are refused.

use serde_json::{Map, Value};

/// A template that cannot be read, with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Variable(Name),
    Section {
        name: Name,
        inverted: bool,
        children: Vec<Node>,
        /// The template text between the tags, for `asJson`.
        raw: String,
    },
}

/// A dotted name; empty for `.`, the top of the context.
#[derive(Clone, Debug, PartialEq)]
struct Name(Vec<String>);

impl Name {
    fn parse(text: &str) -> Option<Name> {
        let text = text.trim();
        if text == "." {
            return Some(Name(vec![]));
        }
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty() || p.chars().any(char::is_whitespace)) {
            return None;
        }
        Some(Name(parts))
    }

    fn display(&self) -> String {
        if self.0.is_empty() {
            ".".into()
        } else {
            self.0.join(".")
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Variable,
    Section,
    Inverted,
    Close,
    Comment,
}

/// A token of the source: text, or a tag with its place.
#[derive(Clone, Debug)]
enum Token {
    Text(String),
    Tag {
        kind: Kind,
        name: String,
        /// Byte offsets of the whole tag in the source.
        start: usize,
        end: usize,
    },
}

fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

fn error_at(src: &str, offset: usize, message: impl Into<String>) -> TemplateError {
    let (line, column) = position(src, offset);
    TemplateError {
        line,
        column,
        message: message.into(),
    }
}

fn tokenize(src: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = 0;
    while let Some(found) = src[rest..].find("{{") {
        let start = rest + found;
        if start > rest {
            tokens.push(Token::Text(src[rest..start].to_string()));
        }
        let triple = src[start..].starts_with("{{{");
        let (open, close) = if triple { (3, "}}}") } else { (2, "}}") };
        let inner_start = start + open;
        let Some(inner_len) = src[inner_start..].find(close) else {
            return Err(error_at(
                src,
                start,
                format!("a tag opened here is not closed with {close}"),
            ));
        };
        let inner = &src[inner_start..inner_start + inner_len];
        let end = inner_start + inner_len + close.len();
        let (kind, name) = if triple {
            (Kind::Variable, inner)
        } else {
            match inner.trim_start().chars().next() {
                Some('#') => (Kind::Section, &inner.trim_start()[1..]),
                Some('^') => (Kind::Inverted, &inner.trim_start()[1..]),
                Some('/') => (Kind::Close, &inner.trim_start()[1..]),
                Some('!') => (Kind::Comment, ""),
                Some('&') => (Kind::Variable, &inner.trim_start()[1..]),
                Some('>') => return Err(error_at(src, start, "partials ({{> name}}) are not supported")),
                Some('=') => {
                    return Err(error_at(
                        src,
                        start,
                        "changing the delimiters ({{=<% %>=}}) is not supported",
                    ))
                }
                _ => (Kind::Variable, inner),
            }
        };
        tokens.push(Token::Tag {
            kind,
            name: name.trim().to_string(),
            start,
            end,
        });
        rest = end;
    }
    if rest < src.len() {
        tokens.push(Token::Text(src[rest..].to_string()));
    }
    Ok(tokens)
}

/// The text of a line before a tag is only spaces and tabs since the line began.
fn blank_line_start(text: &str, at_template_start: bool) -> bool {
    match text.rfind('\n') {
        Some(i) => text[i + 1..].chars().all(|c| c == ' ' || c == '\t'),
        None => at_template_start && text.chars().all(|c| c == ' ' || c == '\t'),
    }
}

/// The text after a tag is only spaces and tabs up to a line end (or the template's end).
fn blank_line_end(text: &str, at_template_end: bool) -> bool {
    let trimmed = text.trim_start_matches([' ', '\t']);
    trimmed.starts_with('\n') || trimmed.starts_with("\r\n") || (at_template_end && trimmed.is_empty())
}

/// Removes the lines that hold nothing but a section, inverted section, closing or comment
/// tag, as the spec says ("standalone" tags leave no blank line behind).
fn strip_standalone(tokens: &mut [Token]) {
    let n = tokens.len();
    let text_of = |t: Option<&Token>| match t {
        Some(Token::Text(s)) => Some(s.clone()),
        _ => None,
    };
    // Decided on the original text, then applied.
    let mut standalone = vec![false; n];
    for i in 0..n {
        let Token::Tag { kind, .. } = &tokens[i] else {
            continue;
        };
        if *kind == Kind::Variable {
            continue;
        }
        let before = if i == 0 {
            Some(String::new())
        } else {
            text_of(tokens.get(i - 1))
        };
        let before_ok = match before {
            Some(t) => blank_line_start(&t, i <= 1),
            None => false,
        };
        let after = if i + 1 == n {
            Some(String::new())
        } else {
            text_of(tokens.get(i + 1))
        };
        let after_ok = match after {
            Some(t) => blank_line_end(&t, i + 2 >= n),
            None => false,
        };
        standalone[i] = before_ok && after_ok;
    }
    for i in 0..n {
        if !standalone[i] {
            continue;
        }
        if i > 0 {
            if let Token::Text(t) = &mut tokens[i - 1] {
                let keep = t.rfind('\n').map(|j| j + 1).unwrap_or(0);
                t.truncate(keep);
            }
        }
        if let Some(Token::Text(t)) = tokens.get_mut(i + 1) {
            let trimmed = t.trim_start_matches([' ', '\t']);
            let rest = trimmed
                .strip_prefix("\r\n")
                .or_else(|| trimmed.strip_prefix('\n'))
                .unwrap_or(trimmed);
            *t = rest.to_string();
        }
    }
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut tokens = tokenize(src)?;
        strip_standalone(&mut tokens);
        // A stack of open sections: (name, inverted, children so far, where its body starts,
        // where its tag starts).
        let mut stack: Vec<(Name, bool, Vec<Node>, usize, usize)> = Vec::new();
        let mut top: Vec<Node> = Vec::new();
        for token in tokens {
            let current = match stack.last_mut() {
                Some(open) => &mut open.2,
                None => &mut top,
            };
            match token {
                Token::Text(t) => {
                    if !t.is_empty() {
                        current.push(Node::Text(t));
                    }
                }
                Token::Tag { kind, name, start, end } => {
                    if kind == Kind::Comment {
                        continue;
                    }
                    let parsed = Name::parse(&name).ok_or_else(|| {
                        error_at(src, start, format!("{name:?} is not a name (letters, digits, dots)"))
                    })?;
                    match kind {
                        Kind::Variable => current.push(Node::Variable(parsed)),
                        Kind::Section | Kind::Inverted => {
                            stack.push((parsed, kind == Kind::Inverted, Vec::new(), end, start));
                        }
                        Kind::Close => {
                            let Some((open, inverted, children, body_start, _)) = stack.pop() else {
                                return Err(error_at(
                                    src,
                                    start,
                                    format!("{{{{/{}}}}} closes no section", parsed.display()),
                                ));
                            };
                            if open != parsed {
                                return Err(error_at(
                                    src,
                                    start,
                                    format!(
                                        "{{{{/{}}}}} closes section {:?}, which is still open",
                                        parsed.display(),
                                        open.display()
                                    ),
                                ));
                            }
                            let node = Node::Section {
                                name: open,
                                inverted,
                                children,
                                raw: src[body_start..start].to_string(),
                            };
                            match stack.last_mut() {
                                Some(parent) => parent.2.push(node),
                                None => top.push(node),
                            }
                        }
                        Kind::Comment => {}
                    }
                }
            }
        }
        if let Some((name, _, _, _, start)) = stack.pop() {
            return Err(error_at(
                src,
                start,
                format!("section {:?} is not closed", name.display()),
            ));
        }
        Ok(Template { nodes: top })
    }

    /// Renders with `context` (an object, normally: the options and `resource`).
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        let mut stack = vec![Frame {
            value: context,
            in_list: false,
        }];
        render_nodes(&self.nodes, &mut stack, &mut out);
        out
    }
}

/// A value on the context stack, and whether it is an element of a list.
#[derive(Clone, Copy)]
struct Frame<'a> {
    value: &'a Value,
    in_list: bool,
}

fn lookup<'a>(stack: &[Frame<'a>], name: &Name) -> Option<Frame<'a>> {
    let Some((first, rest)) = name.0.split_first() else {
        return stack.last().copied();
    };
    let mut found = stack.iter().rev().find_map(|f| f.value.as_object()?.get(first))?;
    for part in rest {
        found = found.as_object()?.get(part)?;
    }
    Some(Frame {
        value: found,
        in_list: false,
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// A number as Cosmos prints it: integral values without a fraction.
fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

fn value_text(frame: Frame<'_>) -> String {
    match frame.value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::String(s) => {
            let quoted = Value::String(s.clone()).to_string();
            if frame.in_list {
                quoted
            } else {
                quoted[1..quoted.len() - 1].to_string()
            }
        }
        other => other.to_string(),
    }
}

fn render_nodes<'a>(nodes: &'a [Node], stack: &mut Vec<Frame<'a>>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Variable(name) => {
                if let Some(f) = lookup(stack, name) {
                    out.push_str(&value_text(f));
                }
            }
            Node::Section {
                name,
                inverted,
                children,
                raw,
            } => {
                if !inverted && name.0 == ["asJson"] {
                    out.push_str(&as_json(stack, raw));
                    continue;
                }
                let found = lookup(stack, name);
                let value = found.map(|f| f.value).unwrap_or(&Value::Null);
                if *inverted {
                    if !truthy(value) {
                        render_nodes(children, stack, out);
                    }
                    continue;
                }
                if !truthy(value) {
                    continue;
                }
                match value {
                    Value::Array(items) => {
                        for item in items {
                            stack.push(Frame {
                                value: item,
                                in_list: true,
                            });
                            render_nodes(children, stack, out);
                            stack.pop();
                        }
                    }
                    other => {
                        stack.push(Frame {
                            value: other,
                            in_list: false,
                        });
                        render_nodes(children, stack, out);
                        stack.pop();
                    }
                }
            }
        }
    }
}

/// `{{#asJson}}name{{/asJson}}`: the value of `name` raw.
fn as_json(stack: &[Frame<'_>], raw: &str) -> String {
    let Some(name) = Name::parse(raw) else {
        return "null".into();
    };
    match lookup(stack, &name).map(|f| f.value) {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Merges `fragment` into `target` as Cosmos does: objects field by field, recursively; any
/// other value of `fragment` replaces the target's.
pub fn merge(target: &mut Map<String, Value>, fragment: &Map<String, Value>) {
    for (k, v) in fragment {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(f)) => merge(t, f),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(src: &str, ctx: Value) -> String {
        Template::parse(src).unwrap().render(&ctx)
    }

    #[test]
    fn variables_with_dotted_names_and_no_html_escaping() {
        let ctx = json!({"service": {"name": "web", "cpus": 0.5, "mem": 256.0, "instances": 2, "on": true},
                         "html": "<a href=\"x\">&</a>"});
        assert_eq!(
            render(
                r#"{"id": "{{service.name}}", "cpus": {{service.cpus}}, "mem": {{service.mem}}, "n": {{service.instances}}, "on": {{service.on}}}"#,
                ctx.clone()
            ),
            r#"{"id": "web", "cpus": 0.5, "mem": 256, "n": 2, "on": true}"#
        );
        // Strings stay valid inside a JSON string, and are not HTML-escaped.
        assert_eq!(render(r#""{{html}}""#, ctx.clone()), r#""<a href=\"x\">&</a>""#);
        assert_eq!(render(r#""{{{html}}}""#, ctx.clone()), r#""<a href=\"x\">&</a>""#);
        assert_eq!(render(r#""{{&html}}""#, ctx.clone()), r#""<a href=\"x\">&</a>""#);
        // Missing names render nothing.
        assert_eq!(render("[{{nothing.here}}{{service.nothing}}]", ctx), "[]");
    }

    #[test]
    fn escapes_keep_the_output_json() {
        let ctx = json!({"cmd": "echo \"hi\"\n\tthere \\ now"});
        let out = render(r#"{"cmd": "{{cmd}}"}"#, ctx.clone());
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["cmd"], ctx["cmd"]);
    }

    #[test]
    fn sections_for_truthy_values_lists_and_objects() {
        let ctx = json!({
            "gw": {"host": "web.example.test", "path": ""},
            "on": true, "off": false, "zero": 0,
            "hosts": ["a.test", "b.test"],
            "ports": [{"n": 80}, {"n": 443}],
        });
        assert_eq!(
            render("{{#gw.host}}vhost={{gw.host}}{{/gw.host}}", ctx.clone()),
            "vhost=web.example.test"
        );
        assert_eq!(
            render("{{#gw.path}}path{{/gw.path}}", ctx.clone()),
            "",
            "an empty string is falsy"
        );
        assert_eq!(render("{{#on}}yes{{/on}}{{#off}}no{{/off}}", ctx.clone()), "yes");
        assert_eq!(render("{{#zero}}zero is {{.}}{{/zero}}", ctx.clone()), "zero is 0");
        assert_eq!(render("{{#missing}}no{{/missing}}", ctx.clone()), "");
        // A list of strings gives JSON strings with their quotes.
        assert_eq!(
            render("[{{#hosts}}{{.}},{{/hosts}}]", ctx.clone()),
            r#"["a.test","b.test",]"#
        );
        assert_eq!(render("{{#ports}}{{n}} {{/ports}}", ctx.clone()), "80 443 ");
        // An object section looks names up in it first, then outside.
        assert_eq!(render("{{#gw}}{{host}} {{on}}{{/gw}}", ctx), "web.example.test true");
    }

    #[test]
    fn inverted_sections() {
        let ctx = json!({"empty": [], "name": "x", "blank": "", "no": null});
        assert_eq!(
            render(
                "{{^empty}}a{{/empty}}{{^name}}b{{/name}}{{^blank}}c{{/blank}}{{^no}}d{{/no}}{{^gone}}e{{/gone}}",
                ctx
            ),
            "acde"
        );
    }

    #[test]
    fn standalone_tags_leave_no_blank_lines() {
        let src = "{\n  {{#on}}\n  \"a\": 1,\n  {{/on}}\n  {{! a comment }}\n  \"b\": 2\n}\n";
        assert_eq!(render(src, json!({"on": true})), "{\n  \"a\": 1,\n  \"b\": 2\n}\n");
        assert_eq!(render(src, json!({"on": false})), "{\n  \"b\": 2\n}\n");
        // Not standalone: text on the same line stays.
        assert_eq!(render("x {{#on}}y{{/on}} z\n", json!({"on": true})), "x y z\n");
        assert_eq!(render("{{#on}}\n{{/on}}", json!({"on": true})), "");
    }

    #[test]
    fn as_json_renders_a_value_raw() {
        let ctx = json!({"extra": "{\"a\": 1}", "env": {"A": "b"}});
        assert_eq!(render("{{#asJson}}extra{{/asJson}}", ctx.clone()), r#"{"a": 1}"#);
        assert_eq!(render("{{#asJson}}env{{/asJson}}", ctx.clone()), r#"{"A":"b"}"#);
        assert_eq!(render("{{#asJson}}missing{{/asJson}}", ctx), "null");
    }

    #[test]
    fn bad_templates_say_where() {
        let e = Template::parse("{\n  \"id\": \"{{name}\"\n}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10), "{e}");
        let e = Template::parse("{{#a}}\n{{/b}}").unwrap_err();
        assert!(e.message.contains("closes section \"a\""), "{e}");
        assert_eq!(e.line, 2);
        let e = Template::parse("x\n{{#a}}").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
        let e = Template::parse("{{/a}}").unwrap_err();
        assert!(e.message.contains("closes no section"), "{e}");
        assert!(Template::parse("{{> partial}}").is_err());
        assert!(Template::parse("{{=<% %>=}}").is_err());
        assert!(Template::parse("{{a b}}").is_err());
    }

    #[test]
    fn a_universe_template_renders_to_json() {
        let src = r#"{
  "id": "{{service.name}}",
  "cpus": {{service.cpus}},
  "mem": {{service.mem}},
  "container": {
    "type": "DOCKER",
    "docker": {"image": "{{resource.assets.container.docker.image}}"}
  },
  "labels": {
    {{#gateway.host}}
    "HAPROXY_0_VHOST": "{{gateway.host}}",
    {{/gateway.host}}
    "HAPROXY_GROUP": "external"
  }
}"#;
        let ctx = json!({"service": {"name": "web", "cpus": 0.1, "mem": 64.0},
                         "gateway": {"host": "web.example.test"},
                         "resource": {"assets": {"container": {"docker": {"image": "busybox:1.36"}}}}});
        let v: Value = serde_json::from_str(&render(src, ctx.clone())).unwrap();
        assert_eq!(v["mem"], 64);
        assert_eq!(v["labels"]["HAPROXY_0_VHOST"], "web.example.test");
        assert_eq!(v["container"]["docker"]["image"], "busybox:1.36");
        let mut without = ctx;
        without["gateway"]["host"] = json!("");
        let v: Value = serde_json::from_str(&render(src, without)).unwrap();
        assert_eq!(v["labels"], json!({"HAPROXY_GROUP": "external"}));
    }

    #[test]
    fn merge_is_deep_for_objects_only() {
        let mut target = json!({"a": {"b": 1, "c": [1]}, "d": 1}).as_object().unwrap().clone();
        let fragment = json!({"a": {"c": [2], "e": 3}, "d": {"x": 1}})
            .as_object()
            .unwrap()
            .clone();
        merge(&mut target, &fragment);
        assert_eq!(
            Value::Object(target),
            json!({"a": {"b": 1, "c": [2], "e": 3}, "d": {"x": 1}})
        );
    }
}
