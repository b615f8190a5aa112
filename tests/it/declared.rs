//! Every answer the tests receive is checked against the response types the official Node.js SDK declares
//! (`scf_models.d.ts`, `clb_models.d.ts`, installed into tests/sdk-node by scripts/test): no declared key missing, no
//! null where the declaration does not say the field may be null, no value of another JSON type. The SDKs (and the
//! programs written with them) trust these declarations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// A declared type, as far as JSON tells types apart.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    String,
    Number,
    Boolean,
    /// `any`, `object`, unions: any JSON value.
    Any,
    Array(Box<Ty>),
    Interface(String),
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: Ty,
    /// The declaration says the field may be null (`可能返回 null` in its comment).
    nullable: bool,
}

/// The interfaces of one service's models, by name.
type Interfaces = HashMap<String, Vec<Field>>;

const SDK: &str = "tests/sdk-node/node_modules/tencentcloud-sdk-nodejs/tencentcloud/services";

fn models(service: &str) -> PathBuf {
    let file = match service {
        "scf" => "scf/v20180416/scf_models.d.ts",
        _ => "clb/v20180317/clb_models.d.ts",
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SDK).join(file)
}

/// The declarations of a service, parsed once; `None` where the SDK is not installed (scripts/test installs it).
fn declarations(service: &str) -> Option<&'static Interfaces> {
    static SCF: OnceLock<Option<Interfaces>> = OnceLock::new();
    static CLB: OnceLock<Option<Interfaces>> = OnceLock::new();
    let cell = if service == "scf" { &SCF } else { &CLB };
    cell.get_or_init(|| std::fs::read_to_string(models(service)).ok().map(|text| parse(&text))).as_ref()
}

/// Reads the `export interface NAME { … }` blocks of a declaration file.
fn parse(text: &str) -> Interfaces {
    let mut interfaces = Interfaces::new();
    let mut current: Option<(String, Vec<Field>)> = None;
    let mut comment = String::new();
    let mut in_comment = false;
    for line in text.lines() {
        let line = line.trim();
        if in_comment || line.starts_with("/*") {
            // Comments run from `/**` to `*/`, and their lines need not start with `*`.
            comment.push_str(line);
            comment.push('\n');
            in_comment = !line.ends_with("*/");
        } else if let Some(rest) = line.strip_prefix("export interface ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            current = Some((name, Vec::new()));
            comment.clear();
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                interfaces.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut()
            && let Some((name, ty)) = line.trim_end_matches(';').split_once(':')
        {
            let name = name.trim().trim_end_matches('?').to_string();
            fields.push(Field { name, ty: parse_type(ty.trim()), nullable: comment.contains("null") });
            comment.clear();
        }
    }
    interfaces
}

fn parse_type(text: &str) -> Ty {
    match text {
        "string" => Ty::String,
        "number" => Ty::Number,
        "boolean" => Ty::Boolean,
        _ if text.starts_with("Array<") && text.ends_with('>') => {
            Ty::Array(Box::new(parse_type(&text["Array<".len()..text.len() - 1])))
        }
        _ if text.ends_with("[]") => Ty::Array(Box::new(parse_type(&text[..text.len() - 2]))),
        _ if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && text.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            Ty::Interface(text.to_string())
        }
        _ => Ty::Any,
    }
}

/// What is wrong with an action's answer (the `Response` object), by the service's declarations.
pub fn violations(service: &str, action: &str, response: &Value) -> Vec<String> {
    let Some(interfaces) = declarations(service) else { return Vec::new() };
    let mut found = Vec::new();
    let name = format!("{action}Response");
    if interfaces.contains_key(&name) {
        check_interface(interfaces, &name, response, action, &mut found);
    }
    found
}

fn check_interface(interfaces: &Interfaces, name: &str, value: &Value, path: &str, found: &mut Vec<String>) {
    let Some(fields) = interfaces.get(name) else { return };
    let Some(object) = value.as_object() else {
        found.push(format!("{path}: {name} is declared, the answer has {value}"));
        return;
    };
    for field in fields {
        let at = format!("{path}.{}", field.name);
        match object.get(&field.name) {
            None => found.push(format!("{at}: declared, missing")),
            Some(Value::Null) if !field.nullable => found.push(format!("{at}: null, not declared as possibly null")),
            Some(Value::Null) => {}
            Some(value) => check(interfaces, &field.ty, value, &at, found),
        }
    }
}

fn check(interfaces: &Interfaces, ty: &Ty, value: &Value, path: &str, found: &mut Vec<String>) {
    match (ty, value) {
        (Ty::Any, _) | (Ty::String, Value::String(_)) | (Ty::Number, Value::Number(_)) => {}
        (Ty::Boolean, Value::Bool(_)) => {}
        (Ty::Array(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                match item {
                    Value::Null => found.push(format!("{at}: null in an array")),
                    item => check(interfaces, inner, item, &at, found),
                }
            }
        }
        (Ty::Interface(name), value) if interfaces.contains_key(name) => {
            check_interface(interfaces, name, value, path, found)
        }
        (Ty::Interface(_), _) => {}
        (ty, value) => found.push(format!("{path}: declared {ty:?}, the answer has {value}")),
    }
}

/// Panics with every violation of an answer the tests received.
pub fn assert_declared(service: &str, action: &str, response: &Value) {
    let found = violations(service, action, response);
    assert!(found.is_empty(), "{action} answers unlike the SDK declares it:\n{}\n{response}", found.join("\n"));
}

#[test]
fn the_declarations_are_installed_and_read() {
    for service in ["scf", "clb"] {
        let interfaces = declarations(service)
            .unwrap_or_else(|| panic!("{} is missing: scripts/test installs it", models(service).display()));
        assert!(interfaces.len() > 100, "{service}: {} interfaces", interfaces.len());
    }
    let scf = declarations("scf").unwrap();
    let get_function = &scf["GetFunctionResponse"];
    let runtime = get_function.iter().find(|f| f.name == "Runtime").unwrap();
    assert_eq!(runtime.ty, Ty::String);
    assert!(runtime.nullable, "Runtime may be null");
    let triggers = get_function.iter().find(|f| f.name == "Triggers").unwrap();
    assert_eq!(triggers.ty, Ty::Array(Box::new(Ty::Interface("Trigger".to_string()))));
    // A null where none is declared, a missing key, a wrong type: each found.
    let found = violations("scf", "GetFunction", &serde_json::json!({"ModTime": null, "CodeSize": "1"}));
    assert!(found.iter().any(|v| v.starts_with("GetFunction.ModTime: null")), "{found:?}");
    assert!(found.iter().any(|v| v.starts_with("GetFunction.Handler: declared, missing")), "{found:?}");
    assert!(found.iter().any(|v| v.starts_with("GetFunction.CodeSize: declared Number")), "{found:?}");
}
