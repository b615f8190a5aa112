//! Function targets (RegisterFunctionTargets, DeregisterFunctionTargets), server targets (RegisterTargets,
//! DeregisterTargets, ModifyTargetWeight), DescribeTargets and DescribeTargetHealth.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rules::normalize_domain;
use crate::api::params::{Filter, filters, obj, parse, unknown_filter};
use crate::api::{ApiError, Ctx};
use crate::state::{Command, FunctionTarget, RuleRef, ServerTarget, TargetsOf};

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
        && !crate::snapshot::serves(listener.protocol)
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
    // A rule named by neither LocationId nor Domain + Url is refused by the state, after what is wrong with the
    // listener, the load balancer, the region or the account (as Tencent orders its errors).
    let mut targets = Vec::with_capacity(req.function_targets.len());
    for t in req.function_targets {
        let weight = t.weight.map(weight).transpose()?.unwrap_or(10);
        let namespace = if t.function.function_namespace.is_empty() {
            "default".to_string()
        } else {
            t.function.function_namespace
        };
        targets.push(FunctionTarget {
            namespace,
            name: t.function.function_name,
            qualifier: t.function.function_qualifier,
            weight,
            add_time: 0,
            trigger_name: None,
        });
    }
    let rule = rule_ref(ctx, req.load_balancer_id, req.listener_id, req.location_id, req.domain, req.url);
    Ok((rule, targets))
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
    let mut ip_filter: Option<Vec<String>> = None;
    for filter in filters(req.filters)? {
        match filter.name.as_str() {
            "location-id" => location_filter = Some(filter.values),
            "private-ip-address" => ip_filter = Some(filter.values),
            // Targets carry no tags here.
            "tag" => ip_filter = Some(Vec::new()),
            other => return Err(unknown_filter(other)),
        }
    }
    let by_ip = |t: &ServerTarget| ip_filter.as_ref().is_none_or(|ips| ips.contains(&t.ip));
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
                        let servers: Vec<Value> =
                            r.servers.iter().filter(|t| by_ip(t)).map(|t| server_output(ctx, t)).collect();
                        json!({
                            "LocationId": r.id,
                            "Domain": r.domain,
                            "Url": r.url,
                            "Targets": servers,
                            "FunctionTargets": functions,
                        })
                    })
                    .collect();
                json!(rules)
            } else {
                json!([])
            };
            json!({
                "ListenerId": l.id,
                "Protocol": l.protocol.as_api(),
                "Port": l.port,
                "Rules": rules,
                "Targets": if l.protocol.is_layer7() {
                    json!([])
                } else {
                    json!(l.servers.iter().filter(|t| by_ip(t)).map(|t| server_output(ctx, t)).collect::<Vec<_>>())
                },
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

/// A `Backend` object: a server target.
fn server_output(ctx: &Ctx<'_>, t: &ServerTarget) -> Value {
    json!({
        "Type": "ENI",
        "InstanceId": "",
        "Port": t.port,
        "Weight": t.weight,
        "PublicIpAddresses": [],
        "PrivateIpAddresses": [t.ip],
        "InstanceName": "",
        "RegisteredTime": ctx.time(t.add_time),
        "EniId": "",
        "Tag": "",
        "Zone": "",
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetInput {
    port: Option<i64>,
    #[allow(dead_code)]
    r#type: Option<String>,
    instance_id: Option<String>,
    eni_ip: Option<String>,
    weight: Option<i64>,
    #[allow(dead_code)]
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Targets {
    load_balancer_id: String,
    listener_id: String,
    targets: Vec<TargetInput>,
    location_id: Option<String>,
    domain: Option<String>,
    url: Option<String>,
    weight: Option<i64>,
}

/// The most targets one call may name (contract 5.4).
const TARGETS_PER_CALL: usize = 20;

/// A target's address and weight from a `Target` object.
fn target_input(t: TargetInput) -> Result<(String, u16, Option<u32>), ApiError> {
    if t.instance_id.is_some() {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "This server has no CVM instances: name a target by EniIp and Port.",
        ));
    }
    let Some(ip) = t.eni_ip else { return Err(ApiError::missing("Targets.EniIp")) };
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::new("InvalidParameterValue", format!("EniIp `{ip}` is not an IP address.")));
    }
    let Some(port) = t.port else { return Err(ApiError::missing("Targets.Port")) };
    let port = u16::try_from(port).ok().filter(|p| *p >= 1).ok_or_else(|| {
        ApiError::new("InvalidParameterValue.Range", format!("Port {port} is not valid: ports are 1 to 65535."))
    })?;
    let weight = t.weight.map(weight).transpose()?;
    Ok((ip, port, weight))
}

fn weight(w: i64) -> Result<u32, ApiError> {
    u32::try_from(w).ok().filter(|w| *w <= 100).ok_or_else(|| {
        ApiError::new("InvalidParameterValue.Range", format!("Weight {w} is not valid: weights are 0 to 100."))
    })
}

/// A target named by a request: address, port and its own weight when given.
type NamedTarget = (String, u16, Option<u32>);

/// What a targets request names: the holder (a layer-7 rule, or a layer-4 listener), the targets, the
/// common `Weight`, and the load balancer.
struct TargetsRequest {
    of: TargetsOf,
    targets: Vec<NamedTarget>,
    weight: Option<i64>,
    lb: String,
}

fn targets_request(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<TargetsRequest, ApiError> {
    let req: Targets = parse(p)?;
    if req.targets.is_empty() {
        return Err(ApiError::missing("Targets"));
    }
    if req.targets.len() > TARGETS_PER_CALL {
        return Err(ApiError::new(
            "LimitExceeded",
            format!("One call names at most {TARGETS_PER_CALL} targets, not {}.", req.targets.len()),
        ));
    }
    let listener = ctx.snapshot.state.listener(&ctx.scope, &req.load_balancer_id, &req.listener_id)?;
    let layer7 = listener.protocol.is_layer7();
    if layer7 && req.location_id.is_none() && req.url.is_none() {
        return Err(ApiError::missing("LocationId"));
    }
    if !layer7 && !crate::snapshot::serves(listener.protocol) {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("{} listeners do not carry traffic in this version.", listener.protocol.as_api()),
        ));
    }
    let targets = req.targets.into_iter().map(target_input).collect::<Result<Vec<_>, _>>()?;
    let lb = req.load_balancer_id.clone();
    let of = if layer7 {
        TargetsOf::Rule(rule_ref(ctx, req.load_balancer_id, req.listener_id, req.location_id, req.domain, req.url))
    } else {
        TargetsOf::Listener { scope: ctx.scope.clone(), lb_id: req.load_balancer_id, listener_id: req.listener_id }
    };
    Ok(TargetsRequest { of, targets, weight: req.weight, lb })
}

pub async fn register_servers(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let TargetsRequest { of, targets, lb, .. } = targets_request(ctx, p)?;
    let now = crate::clock::now_ms();
    let targets = targets
        .into_iter()
        .map(|(ip, port, weight)| ServerTarget { ip, port, weight: weight.unwrap_or(10), add_time: now })
        .collect();
    ctx.apply(Command::RegisterTargets { of, targets }, Some(vec![lb])).await?;
    Ok(Map::new())
}

pub async fn deregister_servers(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let TargetsRequest { of, targets, lb, .. } = targets_request(ctx, p)?;
    let targets = targets.into_iter().map(|(ip, port, _)| (ip, port)).collect();
    ctx.apply(Command::DeregisterTargets { of, targets }, Some(vec![lb])).await?;
    Ok(Map::new())
}

/// ModifyTargetWeight: `Weight` for all the targets named (a target's own `Weight` wins).
pub async fn modify_weight(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let TargetsRequest { of, targets, weight: common, lb } = targets_request(ctx, p)?;
    let common = common.map(weight).transpose()?;
    // One command per distinct weight, applied together.
    let mut by_weight: std::collections::BTreeMap<u32, Vec<(String, u16)>> = Default::default();
    for (ip, port, own) in targets {
        let Some(w) = own.or(common) else { return Err(ApiError::missing("Weight")) };
        by_weight.entry(w).or_default().push((ip, port));
    }
    let commands: Vec<Command> = by_weight
        .into_iter()
        .map(|(weight, targets)| Command::ModifyTargetWeight { of: of.clone(), targets, weight })
        .collect();
    ctx.apply(Command::Batch(commands), Some(vec![lb])).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeTargetHealth {
    load_balancer_ids: Vec<String>,
    listener_ids: Option<Vec<String>>,
    location_ids: Option<Vec<String>>,
}

/// DescribeTargetHealth: each server target's health as the active checks see it.
pub fn describe_health(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeTargetHealth = parse(p)?;
    let state = &ctx.snapshot.state;
    let mut load_balancers = Vec::new();
    for lb_id in &req.load_balancer_ids {
        let lb = state.load_balancer(&ctx.scope, lb_id)?;
        let listeners: Vec<Value> = state
            .listeners_of(lb_id)
            .into_iter()
            .filter(|l| req.listener_ids.as_ref().is_none_or(|ids| ids.contains(&l.id)))
            .map(|l| {
                // A layer-4 listener holds its targets itself: one entry named by the listener.
                let holders: Vec<(&str, &str, &str, &[ServerTarget])> = if l.protocol.is_layer7() {
                    state.rules_of(&l.id).into_iter().map(|r| (r.id.as_str(), r.domain.as_str(), r.url.as_str(), &r.servers[..])).collect()
                } else {
                    vec![(l.id.as_str(), "", "", &l.servers[..])]
                };
                let rules: Vec<Value> = holders
                    .into_iter()
                    .filter(|(id, ..)| req.location_ids.as_ref().is_none_or(|ids| ids.iter().any(|l| l == id)))
                    .map(|(id, domain, url, servers)| {
                        let targets: Vec<Value> = servers
                            .iter()
                            .map(|t| {
                                let health = ctx.api.health.status(id, &t.ip, t.port);
                                json!({
                                    "IP": t.ip,
                                    "Port": t.port,
                                    "HealthStatus": health.is_healthy(),
                                    "TargetId": format!("{}:{}", t.ip, t.port),
                                    "HealthStatusDetail": health.as_api(),
                                    // The field under its historical misspelling, which Tencent still returns.
                                    "HealthStatusDetial": health.as_api(),
                                    "TargetGroupId": "",
                                    "Weight": t.weight,
                                })
                            })
                            .collect();
                        json!({"LocationId": id, "Domain": domain, "Url": url, "RuleId": "", "Targets": targets})
                    })
                    .collect();
                json!({"ListenerId": l.id, "ListenerName": l.name, "Protocol": l.protocol.as_api(), "Port": l.port, "Rules": rules})
            })
            .collect();
        load_balancers.push(json!({"LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "Listeners": listeners}));
    }
    Ok(obj([("LoadBalancers", json!(load_balancers))]))
}

/// A rule named by `LocationId`, or by `Domain` + `Url`.
pub(crate) fn rule_ref(
    ctx: &Ctx<'_>,
    lb_id: String,
    listener_id: String,
    location_id: Option<String>,
    domain: Option<String>,
    url: Option<String>,
) -> RuleRef {
    let domain = domain.map(|d| normalize_domain(&d));
    RuleRef { scope: ctx.scope.clone(), lb_id, listener_id, location_id, domain, url }
}
