//! The HTTP API's OpenAPI document as a test oracle: which statuses an operation may answer, and
//! whether a body or header conforms to the document's schemas.
//!
//! The checker handles exactly the subset of JSON Schema the document uses (`$ref`, `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `oneOf`, `anyOf`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `maxItems`, `pattern` of anchored character classes,
//! `format: uuid`) and refuses any other keyword, so the document cannot grow a rule that no
//! test enforces.

mod pattern;

use serde_json::{Map, Value};

use pattern::Pattern;

/// Keywords that only describe: they constrain nothing.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples"];

/// A parsed OpenAPI document.
pub struct Document {
    doc: Value,
}

impl Document {
    /// Parses the document's text.
    pub fn parse(text: &str) -> Document {
        Document {
            doc: serde_json::from_str(text).expect("the OpenAPI document is JSON"),
        }
    }

    /// The document as JSON.
    pub fn json(&self) -> &Value {
        &self.doc
    }

    /// Every operation: (method in lower case, path).
    pub fn operations(&self) -> Vec<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("a path item")
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect()
    }

    /// The operation `method path` (`method` in lower case); panics if it is not documented.
    pub fn operation(&self, method: &str, path: &str) -> &Value {
        let operation = &self.doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        operation
    }

    /// The statuses the operation documents.
    pub fn statuses(&self, method: &str, path: &str) -> Vec<u16> {
        let responses = self.operation(method, path)["responses"]
            .as_object()
            .expect("responses");
        responses
            .keys()
            .map(|s| s.parse().expect("a numeric status"))
            .collect()
    }

    /// Follows a local `$ref` (any number of them).
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(target) = value.get("$ref").and_then(Value::as_str) {
            let pointer = target.strip_prefix('#').expect("a local $ref");
            value = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{target} does not resolve"));
        }
        value
    }

    /// The schema of the operation's JSON request body, if it takes one.
    pub fn request_schema(&self, method: &str, path: &str) -> Option<&Value> {
        let body = self.operation(method, path).get("requestBody")?;
        Some(&self.resolve(body)["content"]["application/json"]["schema"])
    }

    /// The schema of the operation's query parameter `name`.
    pub fn query_schema(&self, method: &str, path: &str, name: &str) -> &Value {
        let parameters = self.operation(method, path)["parameters"]
            .as_array()
            .expect("parameters");
        let parameter = parameters
            .iter()
            .map(|p| self.resolve(p))
            .find(|p| p["in"] == "query" && p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no query parameter {name}"));
        &parameter["schema"]
    }

    /// Checks an answer against the document: the status is documented for the operation, the
    /// body conforms to that response's schema, and each header it requires is there (in
    /// `head`, the response's status line and headers) and conforms. The reason if not.
    pub fn check_answer(
        &self,
        method: &str,
        path: &str,
        status: u16,
        head: &str,
        body: &Value,
    ) -> Result<(), String> {
        let responses = &self.operation(method, path)["responses"];
        let response = responses
            .get(status.to_string())
            .map(|r| self.resolve(r))
            .ok_or_else(|| format!("{method} {path}: status {status} is not documented"))?;
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Err(format!("{method} {path} {status}: no JSON schema"));
        }
        if header(head, "content-type") != Some("application/json") {
            return Err(format!("{method} {path} {status}: not JSON: {head}"));
        }
        self.validate(schema, body)
            .map_err(|e| format!("{method} {path} {status}: body {body}: {e}"))?;
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header_schema) in headers {
                let header_schema = self.resolve(header_schema);
                match header(head, name) {
                    Some(value) => self
                        .validate(&header_schema["schema"], &Value::String(value.to_owned()))
                        .map_err(|e| format!("{method} {path} {status}: header {name}: {e}"))?,
                    None if header_schema["required"] == true => {
                        return Err(format!("{method} {path} {status}: no {name} header"));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Whether `value` conforms to `schema`; the first reason if not.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        let schema = self.resolve(schema);
        let rules = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err("nothing is allowed here".into()),
            Value::Object(rules) => rules,
            other => return Err(format!("not a schema: {other}")),
        };
        for (keyword, rule) in rules {
            self.apply(rules, keyword, rule, value)?;
        }
        Ok(())
    }

    fn apply(
        &self,
        rules: &Map<String, Value>,
        keyword: &str,
        rule: &Value,
        value: &Value,
    ) -> Result<(), String> {
        let fail = |why: String| Err(format!("{value}: {why}"));
        match keyword {
            k if ANNOTATIONS.contains(&k) => {}
            "type" => {
                let name = rule.as_str().expect("type is one name");
                if !is_type(value, name) {
                    return fail(format!("not of type {name}"));
                }
            }
            "enum" => {
                if !rule.as_array().expect("enum").contains(value) {
                    return fail(format!("not one of {rule}"));
                }
            }
            "properties" => {
                if let Value::Object(fields) = value {
                    for (name, schema) in rule.as_object().expect("properties") {
                        if let Some(field) = fields.get(name) {
                            self.validate(schema, field)
                                .map_err(|e| format!("{name}: {e}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Value::Object(fields) = value {
                    for name in rule.as_array().expect("required") {
                        let name = name.as_str().expect("a field name");
                        if !fields.contains_key(name) {
                            return fail(format!("{name} is required"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Value::Object(fields) = value {
                    let known = rules.get("properties").and_then(Value::as_object);
                    for (name, field) in fields {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            self.validate(rule, field)
                                .map_err(|e| format!("{name}: {e}"))?;
                        }
                    }
                }
            }
            "items" => {
                if let Value::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(rule, item)
                            .map_err(|e| format!("[{i}]: {e}"))?;
                    }
                }
            }
            "anyOf" => {
                let branches = rule.as_array().expect("anyOf");
                if !branches.iter().any(|b| self.validate(b, value).is_ok()) {
                    return fail("matches none of anyOf's branches".into());
                }
            }
            "oneOf" => {
                let branches = rule.as_array().expect("oneOf");
                let matched = branches
                    .iter()
                    .filter(|b| self.validate(b, value).is_ok())
                    .count();
                if matched != 1 {
                    return fail(format!("matches {matched} of oneOf's branches, not one"));
                }
            }
            "minimum" | "maximum" => {
                if let Some(n) = value.as_f64() {
                    let bound = rule.as_f64().expect("a number");
                    if (keyword == "minimum" && n < bound) || (keyword == "maximum" && n > bound) {
                        return fail(format!("beyond {keyword} {bound}"));
                    }
                }
            }
            "minLength" | "maxLength" | "maxItems" => {
                let bound = rule.as_u64().expect("a count");
                let length = match value {
                    Value::String(s) if keyword != "maxItems" => s.chars().count(),
                    Value::Array(a) if keyword == "maxItems" => a.len(),
                    _ => return Ok(()),
                };
                let length = u64::try_from(length).unwrap_or(u64::MAX);
                if (keyword == "minLength" && length < bound)
                    || (keyword != "minLength" && length > bound)
                {
                    return fail(format!("length {length} beyond {keyword} {bound}"));
                }
            }
            "pattern" => {
                if let Value::String(s) = value {
                    let pattern = Pattern::parse(rule.as_str().expect("a pattern"));
                    if !pattern.matches(s) {
                        return fail(format!("does not match {rule}"));
                    }
                }
            }
            "format" => {
                assert_eq!(rule, "uuid", "the checker knows only format uuid");
                if let Value::String(s) = value
                    && !is_hyphenated_uuid(s)
                {
                    return fail("not a hyphenated UUID".into());
                }
            }
            other => panic!("the checker does not know the keyword {other:?}: teach it"),
        }
        Ok(())
    }
}

/// The value of header `name` in the response head `head` (names compare case-insensitively).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

fn is_hyphenated_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
        && uuid::Uuid::parse_str(s).is_ok()
}
