//! VK's official JSON schema (vendored, API 5.199): which methods exist, their parameters and token types, and the
//! shape of their answers. The sandbox checks every call against it — not against the `vk` crate's types — so a
//! mistake in the client is caught rather than mirrored.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

pub struct Schema {
    files: HashMap<&'static str, Value>,
    methods: HashMap<String, MethodDef>,
}

#[derive(Debug, Clone)]
pub struct MethodDef {
    pub name: String,
    /// `user`, `group`, `service`.
    pub access_token_type: Vec<String>,
    pub params: Vec<ParamDef>,
    /// Response kind (`response`, `extendedResponse`, …) → `$ref` relative to the schema root.
    pub responses: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ParamDef {
    pub name: String,
    pub types: Vec<String>,
    pub required: bool,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub max_length: Option<usize>,
    pub min_length: Option<usize>,
    pub enum_values: Option<Vec<String>>,
    pub item_types: Vec<String>,
    pub item_enum: Option<Vec<String>>,
    pub item_minimum: Option<i64>,
}

/// The whole schema, parsed once.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(Schema::load)
}

impl Schema {
    fn load() -> Schema {
        let mut files = HashMap::new();
        for (path, text) in SCHEMA_FILES {
            let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("schema {path}: {e}"));
            files.insert(*path, value);
        }
        let mut schema = Schema { files, methods: HashMap::new() };
        let mut methods = HashMap::new();
        for (path, value) in &schema.files {
            if !path.ends_with("methods.json") {
                continue;
            }
            for m in value["methods"].as_array().into_iter().flatten() {
                let def = schema.method_def(path, m);
                methods.insert(def.name.clone(), def);
            }
        }
        schema.methods = methods;
        schema
    }

    fn method_def(&self, path: &str, m: &Value) -> MethodDef {
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                _ => vec![],
            }
        };
        let enum_of = |v: &Value| -> Option<Vec<String>> {
            v.get("enum")
                .and_then(|e| e.as_array())
                .map(|a| a.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect())
        };
        let mut params = Vec::new();
        for p in m["parameters"].as_array().into_iter().flatten() {
            let items = p.get("items").map(|i| self.deref(path, i).1).unwrap_or(Value::Null);
            params.push(ParamDef {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                types: strings(&p["type"]),
                required: p["required"].as_bool().unwrap_or(false),
                minimum: p["minimum"].as_i64(),
                maximum: p["maximum"].as_i64(),
                max_length: p["maxLength"].as_u64().map(|n| n as usize),
                min_length: p["minLength"].as_u64().map(|n| n as usize),
                enum_values: enum_of(p),
                item_types: strings(&items["type"]),
                item_enum: enum_of(&items),
                item_minimum: items["minimum"].as_i64(),
            });
        }
        let mut responses = HashMap::new();
        if let Some(r) = m["responses"].as_object() {
            for (kind, v) in r {
                if let Some(reference) = v["$ref"].as_str() {
                    responses.insert(kind.clone(), resolve_path(path, reference));
                }
            }
        }
        MethodDef {
            name: m["name"].as_str().unwrap_or_default().to_owned(),
            access_token_type: strings(&m["access_token_type"]),
            params,
            responses,
        }
    }

    pub fn method(&self, name: &str) -> Option<&MethodDef> {
        self.methods.get(name)
    }

    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// Follows `$ref`s from `node` (found in file `path`) to the node they name; returns its file and the node.
    fn deref(&self, path: &str, node: &Value) -> (String, Value) {
        let mut path = path.to_owned();
        let mut node = node.clone();
        for _ in 0..32 {
            let Some(reference) = node.get("$ref").and_then(|r| r.as_str()) else { break };
            let target = resolve_path(&path, reference);
            let (file, pointer) = target.split_once('#').unwrap_or((&target, ""));
            let Some(doc) = self.files.get(file) else { break };
            let Some(found) = doc.pointer(pointer) else { break };
            node = found.clone();
            path = file.to_owned();
        }
        (path, node)
    }

    /// Checks `{"response": …}` against the method's declared answer (`response`, or `extendedResponse` etc.).
    pub fn validate_response(&self, method: &str, kind: &str, envelope: &Value) -> Result<(), Vec<String>> {
        let def = self.method(method).ok_or_else(|| vec![format!("unknown method {method}")])?;
        let reference = def.responses.get(kind).ok_or_else(|| vec![format!("{method} has no {kind}")])?;
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let node = self.files.get(file).and_then(|d| d.pointer(pointer)).cloned();
        let node = node.ok_or_else(|| vec![format!("{reference} not found")])?;
        let mut errors = Vec::new();
        self.validate(file, &node, envelope, "$", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks a callback request body VK would send: the envelope against `callback_base` and the object against
    /// `callback_<type>` (both in `callback/objects.json`), when the schema defines that type.
    pub fn validate_callback(&self, body: &Value) -> Result<(), Vec<String>> {
        const FILE: &str = "callback/objects.json";
        let definition = |name: &str| self.files.get(FILE).and_then(|d| d.pointer(&format!("/definitions/{name}")));
        let mut errors = Vec::new();
        let base = definition("callback_base").ok_or_else(|| vec!["callback_base not found".to_owned()])?;
        let event_type = body["type"].as_str().unwrap_or_default();
        // The schema's object definitions; a few types share one, under another name. `like_add`/`like_remove`
        // are missing from the schema's `callback_type` enum although VK sends them (they are parameters of
        // `groups.setCallbackSettings` and have `callback_like_add_remove`): for those the type is taken as known.
        let object_name = match event_type {
            "like_add" | "like_remove" => "callback_like_add_remove".to_owned(),
            "wall_reply_delete" => "callback_wall_comment_delete".to_owned(),
            other => format!("callback_{other}"),
        };
        // The base names every field VK sends; `object` is checked by type below.
        let mut envelope = body.clone();
        if let Some(map) = envelope.as_object_mut() {
            map.remove("object");
            if matches!(event_type, "like_add" | "like_remove") {
                // Checked as a type the enum lists; everything else about the envelope is checked as usual.
                map.insert("type".into(), Value::String("wall_reply_new".into()));
            }
        }
        self.validate(FILE, base, &envelope, "$", &mut errors);
        if let Some(object_def) = definition(&object_name) {
            self.validate(FILE, object_def, &body["object"], "$.object", &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn validate(&self, path: &str, node: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let (path, node) = self.deref(path, node);
        let path = path.as_str();
        if let Some(types) = node.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(|t| t.as_str()).collect(),
                _ => vec![],
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: expected {allowed:?}, got {value}"));
                return;
            }
        }
        if let Some(values) = node.get("enum").and_then(|e| e.as_array()) {
            if !values.contains(value) {
                errors.push(format!("{at}: {value} is not one of {values:?}"));
            }
        }
        if let (Some(min), Some(n)) = (node.get("minimum").and_then(|m| m.as_f64()), value.as_f64()) {
            if n < min {
                errors.push(format!("{at}: {n} is below the minimum {min}"));
            }
        }
        if let (Some(max), Some(n)) = (node.get("maximum").and_then(|m| m.as_f64()), value.as_f64()) {
            if n > max {
                errors.push(format!("{at}: {n} is above the maximum {max}"));
            }
        }
        for all in node.get("allOf").and_then(|a| a.as_array()).into_iter().flatten() {
            self.validate(path, all, value, at, errors);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = node.get(key).and_then(|a| a.as_array()) {
                let fits = options.iter().any(|o| {
                    let mut e = Vec::new();
                    self.validate(path, o, value, at, &mut e);
                    e.is_empty()
                });
                if !fits {
                    errors.push(format!("{at}: matches none of {key}"));
                }
            }
        }
        if let Value::Object(object) = value {
            let properties = node.get("properties").and_then(|p| p.as_object());
            let mut required: Vec<&str> = node
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if let Some(props) = properties {
                for (name, prop) in props {
                    if prop.get("required").and_then(|r| r.as_bool()) == Some(true) {
                        required.push(name);
                    }
                    if let Some(v) = object.get(name) {
                        self.validate(path, prop, v, &format!("{at}.{name}"), errors);
                    }
                }
            }
            for name in required {
                if !object.contains_key(name) {
                    errors.push(format!("{at}: missing required {name}"));
                }
            }
            if node.get("additionalProperties") == Some(&Value::Bool(false)) {
                for name in object.keys() {
                    if properties.is_none_or(|p| !p.contains_key(name)) {
                        errors.push(format!("{at}: unexpected property {name}"));
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item)) = (value, node.get("items")) {
            for (i, v) in items.iter().enumerate() {
                self.validate(path, item, v, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

fn type_matches(t: &str, value: &Value) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// Resolves `reference` (e.g. `../groups/objects.json#/definitions/x` or `#/definitions/x`) against the file
/// `from` (e.g. `groups/responses.json`) to `groups/objects.json#/definitions/x`.
fn resolve_path(from: &str, reference: &str) -> String {
    let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
    if file.is_empty() {
        let base = from.split_once('#').map_or(from, |(f, _)| f);
        return format!("{base}#{pointer}");
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for segment in file.split('/') {
        match segment {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("{}#{pointer}", parts.join("/"))
}

/// A parameter that breaks its definition: VK's error 100 message.
pub fn check_params(def: &MethodDef, args: &HashMap<String, String>) -> Result<(), String> {
    for p in &def.params {
        let Some(raw) = args.get(&p.name) else {
            if p.required {
                return Err(format!("{} is undefined", p.name));
            }
            continue;
        };
        if p.types.iter().any(|t| t == "array") {
            if raw.is_empty() {
                continue;
            }
            for item in raw.split(',') {
                check_scalar(&p.name, &p.item_types, item, p.item_minimum, None, None, None, p.item_enum.as_deref())?;
            }
        } else {
            check_scalar(
                &p.name,
                &p.types,
                raw,
                p.minimum,
                p.maximum,
                p.max_length,
                p.min_length,
                p.enum_values.as_deref(),
            )?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_scalar(
    name: &str,
    types: &[String],
    raw: &str,
    minimum: Option<i64>,
    maximum: Option<i64>,
    max_length: Option<usize>,
    min_length: Option<usize>,
    enum_values: Option<&[String]>,
) -> Result<(), String> {
    let has = |t: &str| types.iter().any(|x| x == t);
    if has("integer") && !has("string") {
        let n: i64 = raw.trim().parse().map_err(|_| format!("{name} not integer"))?;
        if let Some(min) = minimum {
            if n < min {
                return Err(format!("{name} should be greater or equal to {min}"));
            }
        }
        if let Some(max) = maximum {
            if n > max {
                return Err(format!("{name} should be less or equal to {max}"));
            }
        }
    } else if has("number") {
        raw.trim().parse::<f64>().map_err(|_| format!("{name} not number"))?;
    } else if has("boolean") {
        if !matches!(raw, "0" | "1" | "true" | "false") {
            return Err(format!("{name} should be 0 or 1"));
        }
    } else if has("string") {
        let chars = raw.chars().count();
        if let Some(max) = max_length {
            if chars > max {
                return Err(format!("{name} is too long (maximum is {max} characters)"));
            }
        }
        if let Some(min) = min_length {
            if chars < min {
                return Err(format!("{name} is too short (minimum is {min} characters)"));
            }
        }
    }
    // VK ignores unknown `fields`; other enumerated parameters must be one of their values.
    if let Some(values) = enum_values {
        if name != "fields" && !values.iter().any(|v| v == raw) {
            return Err(format!("{name} is invalid"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_across_files() {
        assert_eq!(
            resolve_path("groups/responses.json", "../groups/objects.json#/definitions/x"),
            "groups/objects.json#/definitions/x"
        );
        assert_eq!(resolve_path("groups/objects.json#/a", "#/definitions/y"), "groups/objects.json#/definitions/y");
        assert_eq!(resolve_path("groups/methods.json", "../errors.json#/errors/e"), "errors.json#/errors/e");
    }

    #[test]
    fn the_schema_knows_vk_methods_and_their_limits() {
        let s = schema();
        assert!(s.method_count() > 400, "{}", s.method_count());
        let add = s.method("groups.addCallbackServer").unwrap();
        let title = add.params.iter().find(|p| p.name == "title").unwrap();
        assert_eq!(title.max_length, Some(14));
        assert!(title.required);
        assert!(s.method("groups.setCallbackServer").is_none(), "removed in 5.68");
        let perms = s.method("groups.getTokenPermissions").unwrap();
        assert_eq!(perms.access_token_type, vec!["group".to_owned()]);
    }

    #[test]
    fn params_are_checked_with_vk_wording() {
        let def = schema().method("groups.addCallbackServer").unwrap();
        let mut args: HashMap<String, String> = [("group_id", "1001"), ("url", "https://x/"), ("title", "vkhook")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(check_params(def, &args), Ok(()));
        args.insert("title".into(), "fifteen chars!!".into());
        assert_eq!(check_params(def, &args), Err("title is too long (maximum is 14 characters)".into()));
        args.remove("title");
        assert_eq!(check_params(def, &args), Err("title is undefined".into()));
        args.insert("title".into(), "t".into());
        args.insert("group_id".into(), "abc".into());
        assert_eq!(check_params(def, &args), Err("group_id not integer".into()));
        args.insert("group_id".into(), "0".into());
        assert_eq!(check_params(def, &args), Err("group_id should be greater or equal to 1".into()));
    }
}
