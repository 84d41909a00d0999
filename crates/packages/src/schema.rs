//! A package's options schema (`config.json`): JSON Schema draft 4, as Universe writes it.
//!
//! [`defaults`] is Cosmos's: every property's `default`, nested objects' defaults kept nested.
//! [`validate`] checks the options (defaults merged in) and reports every violation with the
//! JSON pointer of the value at fault (`/service/instances`) and why. The keywords: `type`
//! (one or a list), `enum`, `properties`, `required`, `additionalProperties` (a boolean or a
//! schema), `patternProperties`, `minProperties`/`maxProperties`, `items` (one schema or one
//! per position), `minItems`/`maxItems`, `uniqueItems`, `minimum`/`maximum` with draft 4's
//! boolean `exclusiveMinimum`/`exclusiveMaximum` (and later drafts' numbers), `multipleOf`,
//! `minLength`/`maxLength`, `pattern`, `allOf`/`anyOf`/`oneOf`/`not`, and `$ref` to a place in
//! the same schema (`#/definitions/x`). Others (`format`, `title`, `description`, `media`) are
//! not checked, as Cosmos's validator leaves `format` alone too.

use serde_json::{Map, Value};

/// One reason options break the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The JSON pointer of the value at fault (`/service/instances`; `` for the whole).
    pub path: String,
    /// The JSON pointer of the schema keyword it breaks.
    pub schema_path: String,
    pub keyword: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// Every property's default, as Cosmos extracts them: a property with a `default` gives it; an
/// object property without one gives its own properties' defaults, when it has any.
pub fn defaults(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    for (name, prop) in props {
        if let Some(d) = prop.get("default") {
            out.insert(name.clone(), d.clone());
        } else if prop.get("properties").is_some() {
            let nested = defaults(prop);
            if !nested.is_empty() {
                out.insert(name.clone(), Value::Object(nested));
            }
        }
    }
    out
}

/// Checks `instance` against `schema`; every violation, in document order.
pub fn validate(schema: &Value, instance: &Value) -> Vec<Violation> {
    let mut v = Validator {
        root: schema,
        out: Vec::new(),
        depth: 0,
    };
    v.check(schema, instance, "", "");
    v.out
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => matches!(v, Value::Number(n) if is_integer(n)),
        "number" => v.is_number(),
        other => type_name(v) == other,
    }
}

/// A value in a message: short JSON.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Schemas nest this deep at most (a `$ref` loop ends here instead of in a stack overflow).
const MAX_DEPTH: usize = 64;

struct Validator<'a> {
    root: &'a Value,
    out: Vec<Violation>,
    depth: usize,
}

impl<'a> Validator<'a> {
    fn add(&mut self, path: &str, schema_path: &str, keyword: &'static str, message: String) {
        self.out.push(Violation {
            path: path.to_string(),
            schema_path: format!("{schema_path}/{keyword}"),
            keyword,
            message,
        });
    }

    /// Whether `instance` matches `schema`, without reporting.
    fn matches(&mut self, schema: &'a Value, instance: &Value, path: &str, schema_path: &str) -> bool {
        let before = self.out.len();
        self.check(schema, instance, path, schema_path);
        let ok = self.out.len() == before;
        self.out.truncate(before);
        ok
    }

    fn check(&mut self, schema: &'a Value, instance: &Value, path: &str, schema_path: &str) {
        let Some(s) = schema.as_object() else {
            // `true`/`false` schemas (draft 6), or nothing to check.
            if schema == &Value::Bool(false) {
                self.add(path, schema_path, "false", "no value is allowed here".into());
            }
            return;
        };
        if self.depth >= MAX_DEPTH {
            self.add(
                path,
                schema_path,
                "$ref",
                "the schema nests too deep (a $ref loop?)".into(),
            );
            return;
        }
        self.depth += 1;
        if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
            match reference.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                Some(target) => self.check(target, instance, path, &format!("{schema_path}/$ref")),
                None => self.add(
                    path,
                    schema_path,
                    "$ref",
                    format!("the schema refers to {reference:?}, which it does not hold"),
                ),
            }
            self.depth -= 1;
            // Draft 4: a `$ref` stands for the whole schema.
            return;
        }
        self.check_type(s, instance, path, schema_path);
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            if !options.iter().any(|o| o == instance) {
                let list: Vec<String> = options.iter().map(shown).collect();
                self.add(
                    path,
                    schema_path,
                    "enum",
                    format!("{} is not one of [{}]", shown(instance), list.join(", ")),
                );
            }
        }
        match instance {
            Value::Number(n) => self.check_number(s, n, path, schema_path),
            Value::String(text) => self.check_string(s, text, path, schema_path),
            Value::Array(items) => self.check_array(s, items, path, schema_path),
            Value::Object(fields) => self.check_object(s, fields, path, schema_path),
            _ => {}
        }
        self.check_combinations(s, instance, path, schema_path);
        self.depth -= 1;
    }

    fn check_type(&mut self, s: &Map<String, Value>, instance: &Value, path: &str, schema_path: &str) {
        let allowed: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        if allowed.is_empty() || allowed.iter().any(|t| has_type(instance, t)) {
            return;
        }
        let expected = if allowed.len() == 1 {
            allowed[0].to_string()
        } else {
            format!("one of {}", allowed.join(", "))
        };
        self.add(
            path,
            schema_path,
            "type",
            format!("expected {expected}, got {} {}", type_name(instance), shown(instance)),
        );
    }

    fn check_number(&mut self, s: &Map<String, Value>, n: &serde_json::Number, path: &str, schema_path: &str) {
        let Some(x) = n.as_f64() else {
            return;
        };
        let bound = |key: &str| s.get(key).and_then(Value::as_f64);
        let flag = |key: &str| s.get(key).and_then(Value::as_bool).unwrap_or(false);
        if let Some(min) = bound("minimum") {
            if flag("exclusiveMinimum") && x <= min {
                self.add(path, schema_path, "minimum", format!("{n} must be greater than {min}"));
            } else if x < min {
                self.add(
                    path,
                    schema_path,
                    "minimum",
                    format!("{n} is less than the minimum of {min}"),
                );
            }
        }
        if let Some(max) = bound("maximum") {
            if flag("exclusiveMaximum") && x >= max {
                self.add(path, schema_path, "maximum", format!("{n} must be less than {max}"));
            } else if x > max {
                self.add(
                    path,
                    schema_path,
                    "maximum",
                    format!("{n} is greater than the maximum of {max}"),
                );
            }
        }
        // Later drafts: the exclusive bounds as numbers of their own.
        if let Some(min) = bound("exclusiveMinimum") {
            if x <= min {
                self.add(
                    path,
                    schema_path,
                    "exclusiveMinimum",
                    format!("{n} must be greater than {min}"),
                );
            }
        }
        if let Some(max) = bound("exclusiveMaximum") {
            if x >= max {
                self.add(
                    path,
                    schema_path,
                    "exclusiveMaximum",
                    format!("{n} must be less than {max}"),
                );
            }
        }
        if let Some(m) = bound("multipleOf").filter(|m| *m > 0.0) {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                self.add(path, schema_path, "multipleOf", format!("{n} is not a multiple of {m}"));
            }
        }
    }

    fn check_string(&mut self, s: &Map<String, Value>, text: &str, path: &str, schema_path: &str) {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                self.add(
                    path,
                    schema_path,
                    "minLength",
                    format!(
                        "{} is shorter than {min} characters",
                        shown(&Value::String(text.into()))
                    ),
                );
            }
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                self.add(
                    path,
                    schema_path,
                    "maxLength",
                    format!("{} is longer than {max} characters", shown(&Value::String(text.into()))),
                );
            }
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => self.add(
                    path,
                    schema_path,
                    "pattern",
                    format!(
                        "{} does not match the pattern {pattern:?}",
                        shown(&Value::String(text.into()))
                    ),
                ),
                Ok(_) => {}
                Err(_) => self.add(
                    path,
                    schema_path,
                    "pattern",
                    format!("the schema's pattern {pattern:?} is not a regular expression"),
                ),
            }
        }
    }

    fn check_array(&mut self, s: &'a Map<String, Value>, items: &[Value], path: &str, schema_path: &str) {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if n < min {
                self.add(
                    path,
                    schema_path,
                    "minItems",
                    format!("has {n} items, fewer than {min}"),
                );
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                self.add(path, schema_path, "maxItems", format!("has {n} items, more than {max}"));
            }
        }
        if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (i, a) in items.iter().enumerate() {
                if items[..i].contains(a) {
                    self.add(
                        &format!("{path}/{i}"),
                        schema_path,
                        "uniqueItems",
                        format!("{} is listed twice", shown(a)),
                    );
                }
            }
        }
        match s.get("items") {
            Some(Value::Array(per_position)) => {
                for (i, (item, schema)) in items.iter().zip(per_position).enumerate() {
                    self.check(
                        schema,
                        item,
                        &format!("{path}/{i}"),
                        &format!("{schema_path}/items/{i}"),
                    );
                }
                if s.get("additionalItems") == Some(&Value::Bool(false)) && items.len() > per_position.len() {
                    self.add(
                        &format!("{path}/{}", per_position.len()),
                        schema_path,
                        "additionalItems",
                        format!("at most {} items are allowed", per_position.len()),
                    );
                }
            }
            Some(schema @ Value::Object(_)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(schema, item, &format!("{path}/{i}"), &format!("{schema_path}/items"));
                }
            }
            _ => {}
        }
    }

    fn check_object(&mut self, s: &'a Map<String, Value>, fields: &Map<String, Value>, path: &str, schema_path: &str) {
        for name in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = name.as_str() {
                if !fields.contains_key(name) {
                    self.add(
                        &format!("{path}/{}", pointer_escape(name)),
                        schema_path,
                        "required",
                        format!("{name:?} is required"),
                    );
                }
            }
        }
        let n = fields.len() as u64;
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
            if n < min {
                self.add(
                    path,
                    schema_path,
                    "minProperties",
                    format!("has {n} properties, fewer than {min}"),
                );
            }
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
            if n > max {
                self.add(
                    path,
                    schema_path,
                    "maxProperties",
                    format!("has {n} properties, more than {max}"),
                );
            }
        }
        let properties = s.get("properties").and_then(Value::as_object);
        let patterns: Vec<(regex::Regex, &Value, &String)> = s
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(p, schema)| Some((regex::Regex::new(p).ok()?, schema, p)))
            .collect();
        for (name, value) in fields {
            let at = format!("{path}/{}", pointer_escape(name));
            let mut known = false;
            if let Some(schema) = properties.and_then(|p| p.get(name)) {
                known = true;
                self.check(
                    schema,
                    value,
                    &at,
                    &format!("{schema_path}/properties/{}", pointer_escape(name)),
                );
            }
            for (re, schema, pattern) in &patterns {
                if re.is_match(name) {
                    known = true;
                    self.check(
                        schema,
                        value,
                        &at,
                        &format!("{schema_path}/patternProperties/{}", pointer_escape(pattern)),
                    );
                }
            }
            if known {
                continue;
            }
            match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let names: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let hint = if names.is_empty() {
                        "no properties are allowed here".to_string()
                    } else {
                        format!("the properties here are {}", names.join(", "))
                    };
                    self.add(
                        &at,
                        schema_path,
                        "additionalProperties",
                        format!("unknown property {name:?}; {hint}"),
                    );
                }
                Some(schema @ Value::Object(_)) => {
                    self.check(schema, value, &at, &format!("{schema_path}/additionalProperties"));
                }
                _ => {}
            }
        }
    }

    fn check_combinations(&mut self, s: &'a Map<String, Value>, instance: &Value, path: &str, schema_path: &str) {
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for (i, schema) in all.iter().enumerate() {
                self.check(schema, instance, path, &format!("{schema_path}/allOf/{i}"));
            }
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            let ok = any
                .iter()
                .enumerate()
                .any(|(i, schema)| self.matches(schema, instance, path, &format!("{schema_path}/anyOf/{i}")));
            if !ok {
                self.add(
                    path,
                    schema_path,
                    "anyOf",
                    format!("{} matches none of the allowed forms", shown(instance)),
                );
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let matched = one
                .iter()
                .enumerate()
                .filter(|(i, schema)| self.matches(schema, instance, path, &format!("{schema_path}/oneOf/{i}")))
                .count();
            if matched != 1 {
                self.add(
                    path,
                    schema_path,
                    "oneOf",
                    format!("{} matches {matched} of the forms, not exactly one", shown(instance)),
                );
            }
        }
        if let Some(not) = s.get("not") {
            if self.matches(not, instance, path, &format!("{schema_path}/not")) {
                self.add(
                    path,
                    schema_path,
                    "not",
                    format!("{} matches a form that is not allowed", shown(instance)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn web_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "service": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "default": "web", "pattern": "^[a-z][a-z0-9-]*$"},
                        "instances": {"type": "integer", "default": 1, "minimum": 1, "maximum": 10},
                        "cpus": {"type": "number", "default": 0.1, "minimum": 0.01, "exclusiveMinimum": true},
                        "role": {"type": "string", "enum": ["web", "api"]}
                    },
                    "required": ["name", "instances"],
                    "additionalProperties": false
                },
                "gateway": {
                    "type": "object",
                    "properties": {"hosts": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": []}}
                },
                "notes": {"type": "object", "properties": {"text": {"type": "string"}}},
                "mode": {"default": "fast"}
            }
        })
    }

    fn messages(schema: &Value, options: Value) -> Vec<String> {
        validate(schema, &options).iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn defaults_are_collected_nested_as_cosmos_does() {
        assert_eq!(
            Value::Object(defaults(&web_schema())),
            json!({"service": {"name": "web", "instances": 1, "cpus": 0.1},
                   "gateway": {"hosts": []},
                   "mode": "fast"}),
            "an object without defaults inside (notes) is left out"
        );
        assert!(defaults(&json!({"type": "object"})).is_empty());
    }

    #[test]
    fn good_options_pass() {
        let s = web_schema();
        assert!(validate(
            &s,
            &json!({"service": {"name": "web-2", "instances": 3, "cpus": 0.5, "role": "api"}})
        )
        .is_empty());
        assert!(
            validate(&s, &json!({"service": {"name": "a", "instances": 2.0}})).is_empty(),
            "2.0 is an integer"
        );
    }

    #[test]
    fn each_violation_names_the_field_and_the_reason() {
        let s = web_schema();
        assert_eq!(
            messages(&s, json!({"service": {"name": "web", "instances": 0}})),
            ["/service/instances: 0 is less than the minimum of 1"]
        );
        assert_eq!(
            messages(&s, json!({"service": {"name": "web", "instances": "two"}})),
            ["/service/instances: expected integer, got string \"two\""]
        );
        assert_eq!(
            messages(&s, json!({"service": {"name": "web", "instances": 1.5}})),
            ["/service/instances: expected integer, got number 1.5"]
        );
        assert_eq!(
            messages(
                &s,
                json!({"service": {"name": "Web!", "instances": 11, "cpus": 0.01, "role": "db", "color": "red"}})
            ),
            [
                "/service/color: unknown property \"color\"; the properties here are cpus, instances, name, role",
                "/service/cpus: 0.01 must be greater than 0.01",
                "/service/instances: 11 is greater than the maximum of 10",
                "/service/name: \"Web!\" does not match the pattern \"^[a-z][a-z0-9-]*$\"",
                "/service/role: \"db\" is not one of [\"web\", \"api\"]",
            ]
        );
        assert_eq!(
            messages(&s, json!({"service": {"instances": 1}})),
            ["/service/name: \"name\" is required"]
        );
        assert_eq!(
            messages(
                &s,
                json!({"gateway": {"hosts": ["a", ""]}, "service": {"name": "a", "instances": 1}})
            ),
            ["/gateway/hosts/1: \"\" is shorter than 1 characters"]
        );
        assert_eq!(messages(&s, json!([])), ["/: expected object, got array []"]);
        let v = &validate(&s, &json!({"service": {"name": "a", "instances": 0}}))[0];
        assert_eq!(v.keyword, "minimum");
        assert_eq!(v.schema_path, "/properties/service/properties/instances/minimum");
    }

    #[test]
    fn arrays_combinations_and_refs() {
        let s = json!({
            "definitions": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
            "type": "object",
            "properties": {
                "ports": {"type": "array", "items": {"$ref": "#/definitions/port"}, "uniqueItems": true, "maxItems": 3},
                "size": {"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["small", "large"]}]},
                "either": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                "never": {"not": {"type": "string"}},
                "pair": {"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": false},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "missing": {"$ref": "#/definitions/nothing"}
            }
        });
        assert!(validate(&s, &json!({"ports": [80, 443], "size": "small", "either": null, "never": 1, "pair": ["a", 1], "labels": {"a": "b"}})).is_empty());
        assert_eq!(
            messages(
                &s,
                json!({"ports": [80, 80, 0, 5], "size": "medium", "either": 1, "never": "x", "pair": ["a", 1, 2], "labels": {"a": 1}})
            ),
            [
                "/either: 1 matches none of the allowed forms",
                "/labels/a: expected string, got integer 1",
                "/never: \"x\" matches a form that is not allowed",
                "/pair/2: at most 2 items are allowed",
                "/ports: has 4 items, more than 3",
                "/ports/1: 80 is listed twice",
                "/ports/2: 0 is less than the minimum of 1",
                "/size: \"medium\" matches 0 of the forms, not exactly one",
            ]
        );
        assert_eq!(
            messages(&s, json!({"missing": 1})),
            ["/missing: the schema refers to \"#/definitions/nothing\", which it does not hold"]
        );
        // A $ref loop ends.
        let looped = json!({"definitions": {"a": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"});
        assert!(!validate(&looped, &json!(1)).is_empty());
    }
}
