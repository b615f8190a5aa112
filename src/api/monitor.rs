//! The console's charts, from the counts fnlb keeps itself (`stats`): fnlb extensions, one per service.
//! `DescribeFunctionMetrics` (scf) gives a function's last hour minute by minute; `DescribeRuleMetrics` (clb) a
//! rule's.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::params::{obj, parse};
use super::{ApiError, Ctx};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionMetrics {
    function_name: String,
    namespace: Option<String>,
}

pub fn function(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: FunctionMetrics = parse(p)?;
    let key = super::scf::existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let minutes: Vec<Value> = ctx
        .api
        .functions
        .function_stats(&key)
        .read()
        .into_iter()
        .map(|m| {
            json!({
                "Time": ctx.time(m.minute * 60_000),
                "Invocations": m.invocations,
                "Errors": m.errors,
                "DurationP50": m.duration_p50_ms,
                "DurationP99": m.duration_p99_ms,
                "ConcurrentExecutions": m.concurrent,
            })
        })
        .collect();
    Ok(obj([("Period", json!(60)), ("Metrics", json!(minutes))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleMetrics {
    load_balancer_id: String,
    listener_id: String,
    location_id: String,
}

pub fn rule(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: RuleMetrics = parse(p)?;
    let rule =
        super::clb::targets::rule_ref(ctx, req.load_balancer_id, req.listener_id, Some(req.location_id), None, None);
    let location = ctx.snapshot.state.resolve_rule(&rule)?;
    let stats = ctx.snapshot.http_listeners.values().flat_map(|l| l.rules.iter()).find(|r| r.location_id == location);
    let minutes: Vec<Value> = stats
        .map(|r| r.stats.read())
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            json!({
                "Time": ctx.time(m.minute * 60_000),
                "Requests": m.requests,
                "Status2xx": m.by_class[0],
                "Status3xx": m.by_class[1],
                "Status4xx": m.by_class[2],
                "Status5xx": m.by_class[3],
            })
        })
        .collect();
    Ok(obj([("Period", json!(60)), ("Metrics", json!(minutes))]))
}
