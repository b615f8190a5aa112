//! RegisterFunctionTargets, DeregisterFunctionTargets, DescribeTargets.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rules::normalize_domain;
use crate::api::params::{obj, parse};
use crate::api::{ApiError, Ctx};
use crate::state::{Command, FunctionTarget, RuleRef};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionInfo {
    function_namespace: String,
    function_name: String,
    function_qualifier: String,
    #[allow(dead_code)]
    function_qualifier_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionTargetInput {
    function: FunctionInfo,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionTargets {
    load_balancer_id: String,
    listener_id: String,
    function_targets: Vec<FunctionTargetInput>,
    location_id: Option<String>,
    domain: Option<String>,
    url: Option<String>,
}

pub async fn register_functions(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let (rule, targets) = function_targets(ctx, p)?;
    let lb = rule.lb_id.clone();
    if let Ok(listener) = ctx.snapshot.state.listener(&ctx.scope, &rule.lb_id, &rule.listener_id)
        && listener.protocol.is_layer7()
        && !crate::proxy::serves(listener.protocol)
    {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!(
                "{} listeners do not serve traffic in this version; bind the function to an HTTP listener.",
                listener.protocol.as_api()
            ),
        ));
    }
    ctx.apply(Command::RegisterFunctionTargets { rule, targets, now: crate::clock::now_ms() }, Some(vec![lb])).await?;
    Ok(Map::new())
}

pub async fn deregister_functions(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let (rule, targets) = function_targets(ctx, p)?;
    let lb = rule.lb_id.clone();
    ctx.apply(Command::DeregisterFunctionTargets { rule, targets }, Some(vec![lb])).await?;
    Ok(Map::new())
}

fn function_targets(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<(RuleRef, Vec<FunctionTarget>), ApiError> {
    let req: FunctionTargets = parse(p)?;
    if req.function_targets.is_empty() {
        return Err(ApiError::missing("FunctionTargets"));
    }
    if req.location_id.is_none() && req.url.is_none() {
        return Err(ApiError::missing("LocationId"));
    }
    let mut targets = Vec::with_capacity(req.function_targets.len());
    for t in req.function_targets {
        let weight = t.weight.unwrap_or(10);
        if !(0..=100).contains(&weight) {
            return Err(ApiError::new(
                "InvalidParameterValue.Range",
                format!("Weight {weight} is not valid: weights are 0 to 100."),
            ));
        }
        let namespace = if t.function.function_namespace.is_empty() {
            "default".to_string()
        } else {
            t.function.function_namespace
        };
        targets.push(FunctionTarget {
            namespace,
            name: t.function.function_name,
            qualifier: t.function.function_qualifier,
            weight: weight as u32,
            add_time: 0,
        });
    }
    let rule = RuleRef {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id,
        listener_id: req.listener_id,
        location_id: req.location_id,
        domain: req.domain.map(|d| normalize_domain(&d)),
        url: req.url,
    };
    Ok((rule, targets))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    name: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeTargets {
    load_balancer_id: String,
    listener_ids: Option<Vec<String>>,
    protocol: Option<String>,
    port: Option<i64>,
    filters: Option<Vec<Filter>>,
}

pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeTargets = parse(p)?;
    let state = &ctx.snapshot.state;
    state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let mut location_filter: Option<Vec<String>> = None;
    for filter in req.filters.unwrap_or_default() {
        match filter.name.as_str() {
            "location-id" => location_filter = Some(filter.values),
            other => {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidFilter",
                    format!("Filter `{other}` is not supported."),
                ));
            }
        }
    }
    let listeners: Vec<Value> = state
        .listeners_of(&req.load_balancer_id)
        .into_iter()
        .filter(|l| req.listener_ids.as_ref().is_none_or(|ids| ids.contains(&l.id)))
        .filter(|l| req.protocol.as_ref().is_none_or(|p| p == l.protocol.as_api()))
        .filter(|l| req.port.is_none_or(|p| p == i64::from(l.port)))
        .map(|l| {
            let rules: Value = if l.protocol.is_layer7() {
                let rules: Vec<Value> = state
                    .rules_of(&l.id)
                    .into_iter()
                    .filter(|r| location_filter.as_ref().is_none_or(|ids| ids.contains(&r.id)))
                    .map(|r| {
                        let functions: Vec<Value> = r.function.iter().map(function_target_output).collect();
                        json!({
                            "LocationId": r.id,
                            "Domain": r.domain,
                            "Url": r.url,
                            "Targets": [],
                            "FunctionTargets": functions,
                        })
                    })
                    .collect();
                json!(rules)
            } else {
                Value::Null
            };
            json!({
                "ListenerId": l.id,
                "Protocol": l.protocol.as_api(),
                "Port": l.port,
                "Rules": rules,
                "Targets": if l.protocol.is_layer7() { Value::Null } else { json!([]) },
                "EndPort": 0,
            })
        })
        .collect();
    Ok(obj([("Listeners", json!(listeners))]))
}

fn function_target_output(t: &FunctionTarget) -> Value {
    let qualifier_type =
        if t.qualifier.starts_with('$') || t.qualifier.parse::<u64>().is_err() { "ALIAS" } else { "VERSION" };
    let qualifier_type = if t.qualifier == "$LATEST" { "VERSION" } else { qualifier_type };
    json!({
        "Function": {
            "FunctionNamespace": t.namespace,
            "FunctionName": t.name,
            "FunctionQualifier": t.qualifier,
            "FunctionQualifierType": qualifier_type,
        },
        "Weight": t.weight,
    })
}
