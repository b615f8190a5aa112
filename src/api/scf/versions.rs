//! PublishVersion, ListVersionByFunction, and the aliases: CreateAlias, GetAlias, UpdateAlias, DeleteAlias,
//! ListAliases.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{existing, function_key, validate};
use crate::api::params::{obj, page, parse};
use crate::api::{ApiError, Ctx};
use crate::state::{Alias, Command, DEFAULT_ALIAS, Function, FunctionKey, LATEST};

static ALIAS_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$").expect("valid pattern"));

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishVersion {
    function_name: String,
    description: Option<String>,
    namespace: Option<String>,
}

pub async fn publish(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: PublishVersion = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    ctx.apply(Command::PublishVersion { key: key.clone(), description, now: crate::clock::now_ms() }, None).await?;
    let snapshot = ctx.api.control.snapshot();
    let function = snapshot.state.function(&key)?;
    let version = &function.versions[&function.last_version];
    Ok(obj([
        ("FunctionVersion", json!(version.version.to_string())),
        ("CodeSize", json!(version.code.size)),
        ("MemorySize", json!(version.config.memory_mb)),
        ("Description", json!(version.description)),
        ("Handler", json!(version.handler)),
        ("Timeout", json!(version.config.timeout_s)),
        ("Runtime", json!(function.runtime)),
        ("Namespace", json!(function.key.namespace)),
    ]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersions {
    function_name: String,
    namespace: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
    order: Option<String>,
}

pub fn list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListVersions = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let mut versions: Vec<(String, String, i64, i64)> =
        vec![(LATEST.to_string(), function.config.description.clone(), function.add_time, function.mod_time)];
    versions.extend(
        function.versions.values().map(|v| (v.version.to_string(), v.description.clone(), v.add_time, v.add_time)),
    );
    match req.order.as_deref() {
        None | Some("ASC") => {}
        Some("DESC") => versions.reverse(),
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Order",
                format!("Order must be ASC or DESC, not `{other}`."),
            ));
        }
    }
    let total = versions.len();
    let shown = page(versions, req.offset, req.limit, 20, 100)?;
    let names: Vec<&str> = shown.iter().map(|v| v.0.as_str()).collect();
    let objects: Vec<Value> = shown
        .iter()
        .map(|(version, description, added, modified)| {
            json!({
                "Version": version,
                "Description": description,
                "AddTime": ctx.time(*added),
                "ModTime": ctx.time(*modified),
                "Status": "Active",
            })
        })
        .collect();
    Ok(obj([("FunctionVersion", json!(names)), ("Versions", json!(objects)), ("TotalCount", json!(total))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionWeight {
    version: String,
    weight: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfig {
    additional_version_weights: Option<Vec<VersionWeight>>,
    addtion_version_matchs: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutAlias {
    name: String,
    function_name: String,
    function_version: String,
    namespace: Option<String>,
    routing_config: Option<RoutingConfig>,
    description: Option<String>,
}

pub async fn create_alias(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    put_alias(ctx, p, false).await
}

pub async fn update_alias(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    put_alias(ctx, p, true).await
}

async fn put_alias(ctx: &Ctx<'_>, p: Map<String, Value>, replace: bool) -> Result<Map<String, Value>, ApiError> {
    let req: PutAlias = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let default_update = replace && req.name == DEFAULT_ALIAS;
    if !default_update && !ALIAS_NAME.is_match(&req.name) {
        return Err(ApiError::new(
            "InvalidParameterValue.Name",
            format!(
                "Alias name `{}` is not valid: 1 to 64 letters, digits, `_` or `-`, starting with a letter.",
                req.name
            ),
        ));
    }
    check_version(&req.function_version)?;
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    let mut additional = None;
    if let Some(routing) = req.routing_config {
        if routing.addtion_version_matchs.is_some_and(|m| !m.is_empty()) {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "Rule-based alias routing (AddtionVersionMatchs) is not supported; use AdditionalVersionWeights.",
            ));
        }
        let weights = routing.additional_version_weights.unwrap_or_default();
        if weights.len() > 1 {
            return Err(ApiError::new(
                "InvalidParameterValue.AdditionalVersionWeights",
                "An alias may name at most one additional version.",
            ));
        }
        if let Some(w) = weights.into_iter().next() {
            check_version(&w.version)?;
            if !(w.weight > 0.0 && w.weight <= 1.0) || w.version == req.function_version {
                return Err(ApiError::new(
                    "InvalidParameterValue.AdditionalVersionWeights",
                    "The additional version must differ from FunctionVersion and have a Weight above 0 and at most 1.",
                ));
            }
            additional = Some((w.version, (w.weight * 1_000_000.0).round() as u32));
        }
    }
    let now = crate::clock::now_ms();
    let alias =
        Alias { name: req.name, version: req.function_version, additional, description, add_time: now, mod_time: now };
    ctx.apply(Command::PutAlias { key, alias, replace }, None).await?;
    Ok(Map::new())
}

fn check_version(version: &str) -> Result<(), ApiError> {
    if version == LATEST || version.parse::<u32>().is_ok_and(|n| n > 0) {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.FunctionVersion",
        format!("`{version}` is not $LATEST or a version number."),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasRef {
    function_name: String,
    name: String,
    namespace: Option<String>,
}

pub fn get_alias(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: AliasRef = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let alias = function.alias(&req.name).ok_or_else(|| not_found(&key, &req.name))?;
    let Value::Object(fields) = alias_output(ctx, &alias) else { unreachable!("alias_output builds an object") };
    Ok(fields)
}

pub async fn delete_alias(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: AliasRef = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    ctx.apply(Command::DeleteAlias { key, name: req.name }, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliases {
    function_name: String,
    namespace: Option<String>,
    function_version: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

pub fn list_aliases(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListAliases = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let number = |name: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|v| {
            v.parse::<i64>().map_err(|_| ApiError::new("InvalidParameterValue", format!("{name} must be a number.")))
        })
        .transpose()
    };
    let aliases: Vec<Alias> = all_aliases(function)
        .into_iter()
        .filter(|a| req.function_version.as_ref().is_none_or(|v| &a.version == v))
        .collect();
    let total = aliases.len();
    let shown: Vec<Value> = page(aliases, number("Offset", req.offset)?, number("Limit", req.limit)?, 20, 100)?
        .iter()
        .map(|a| alias_output(ctx, a))
        .collect();
    Ok(obj([("Aliases", json!(shown)), ("TotalCount", json!(total))]))
}

/// Every alias of a function, `$DEFAULT` first.
fn all_aliases(function: &Function) -> Vec<Alias> {
    let mut aliases: Vec<Alias> = function.alias(DEFAULT_ALIAS).into_iter().collect();
    aliases.extend(function.aliases.values().filter(|a| a.name != DEFAULT_ALIAS).cloned());
    aliases
}

fn alias_output(ctx: &Ctx<'_>, alias: &Alias) -> Value {
    let weights: Vec<Value> = alias
        .additional
        .iter()
        .map(|(version, share)| json!({"Version": version, "Weight": f64::from(*share) / 1_000_000.0}))
        .collect();
    json!({
        "FunctionVersion": alias.version,
        "Name": alias.name,
        "RoutingConfig": {"AdditionalVersionWeights": weights, "AddtionVersionMatchs": []},
        "Description": alias.description,
        "AddTime": ctx.time(alias.add_time),
        "ModTime": ctx.time(alias.mod_time),
    })
}

fn not_found(key: &FunctionKey, alias: &str) -> ApiError {
    ApiError::new("ResourceNotFound.Alias", format!("Function {} has no alias {alias}.", key.name))
}
