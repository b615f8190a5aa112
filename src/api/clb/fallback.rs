//! Rule fallbacks, an fnlb extension to the CLB API (docs/decisions/0006-rule-fallback.md): a rule that forwards
//! to servers may name a function that answers whenever none of them can. `SetRuleFallback` sets or removes it,
//! `DescribeRuleFallbacks` lists them with whether the function is answering now. Tencent's own actions and
//! fields keep their meaning: a fallback is neither a function target nor a trigger.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::targets::rule_ref;
use crate::api::params::parse;
use crate::api::{ApiError, Ctx};
use crate::proxy::health::Status;
use crate::state::{Command, FunctionTarget, Rule};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionInfo {
    function_namespace: Option<String>,
    function_name: String,
    function_qualifier: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetRuleFallback {
    load_balancer_id: String,
    listener_id: String,
    location_id: Option<String>,
    domain: Option<String>,
    url: Option<String>,
    /// Absent: the fallback is removed.
    function: Option<FunctionInfo>,
}

pub async fn set(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: SetRuleFallback = parse(p)?;
    let fallback = req.function.map(|f| FunctionTarget {
        namespace: f.function_namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string()),
        name: f.function_name,
        qualifier: f.function_qualifier.filter(|q| !q.is_empty()).unwrap_or_else(|| "$LATEST".to_string()),
        weight: 100,
        add_time: 0,
        trigger_name: None,
    });
    let rule = rule_ref(ctx, req.load_balancer_id.clone(), req.listener_id, req.location_id, req.domain, req.url);
    let now = crate::clock::now_ms();
    ctx.apply(Command::SetRuleFallback { rule, fallback, now }, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeRuleFallbacks {
    load_balancer_id: String,
    listener_ids: Option<Vec<String>>,
}

/// The fallbacks of a load balancer's rules: each with its function and `Serving`, whether it answers now (no
/// server of the rule takes traffic).
pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeRuleFallbacks = parse(p)?;
    let state = &ctx.snapshot.state;
    state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let mut fallbacks = Vec::new();
    for listener in state.listeners_of(&req.load_balancer_id) {
        if req.listener_ids.as_ref().is_some_and(|ids| !ids.contains(&listener.id)) {
            continue;
        }
        for rule in state.rules_of(&listener.id) {
            let Some(target) = &rule.fallback else { continue };
            fallbacks.push(json!({
                "ListenerId": listener.id,
                "LocationId": rule.id,
                "Domain": rule.domain,
                "Url": rule.url,
                "Function": {
                    "FunctionNamespace": target.namespace,
                    "FunctionName": target.name,
                    "FunctionQualifier": target.qualifier,
                },
                "AddTimestamp": ctx.time(target.add_time),
                "Serving": !servers_take_traffic(ctx, rule),
            }));
        }
    }
    let mut out = Map::new();
    out.insert("TotalCount".into(), json!(fallbacks.len()));
    out.insert("RuleFallbacks".into(), Value::Array(fallbacks));
    Ok(out)
}

/// Whether any of a rule's servers takes traffic: weight above 0 and not found unhealthy.
fn servers_take_traffic(ctx: &Ctx<'_>, rule: &Rule) -> bool {
    rule.servers.iter().any(|t| t.weight > 0 && ctx.api.health.status(&rule.id, &t.ip, t.port) != Status::Unhealthy)
}
