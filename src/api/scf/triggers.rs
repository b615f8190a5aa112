//! ListTriggers, CreateTrigger and DeleteTrigger, and the CLB triggers a function has (contract 0.4): each rule
//! it is bound to. CreateTrigger with `Type` `clb` binds the function to a rule (made when missing), the same
//! binding RegisterFunctionTargets makes from the CLB side; DeleteTrigger unbinds it.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::existing;
use crate::api::params::{Filter, filters, obj, page, parse, unknown_filter};
use crate::api::{ApiError, Ctx};
use crate::snapshot::router::{DomainPattern, UrlPattern, parse_domain, parse_url};
use crate::state::{
    Command, FunctionKey, FunctionTarget, LATEST, Listener, LoadBalancer, NewRule, Protocol, Rule, RuleRef,
};

/// A CLB trigger as SCF shows it.
pub struct ClbTrigger {
    pub name: String,
    pub qualifier: String,
    pub desc: String,
    pub resource_id: String,
    pub add_time: String,
}

impl ClbTrigger {
    /// As `GetFunction.Triggers` shows it (`Trigger`).
    pub fn as_trigger(&self) -> Value {
        json!({
            "ModTime": self.add_time,
            "Type": "clb",
            "TriggerDesc": self.desc,
            "TriggerName": self.name,
            "AddTime": self.add_time,
            "Enable": 1,
            "CustomArgument": "",
            "AvailableStatus": "Available",
            "ResourceId": self.resource_id,
            "BindStatus": "on",
            "TriggerAttribute": "double",
            "Qualifier": self.qualifier,
            "Description": "",
        })
    }

    /// As `ListTriggers` shows it (`TriggerInfo`).
    pub fn as_trigger_info(&self) -> Value {
        json!({
            "Enable": 1,
            "Qualifier": self.qualifier,
            "TriggerName": self.name,
            "Type": "clb",
            "TriggerDesc": self.desc,
            "AvailableStatus": "Available",
            "CustomArgument": "",
            "AddTime": self.add_time,
            "ModTime": self.add_time,
            "ResourceId": self.resource_id,
            "BindStatus": "on",
            "TriggerAttribute": "double",
            "Description": "",
            "BoundResources": "",
        })
    }
}

/// The function's CLB triggers, oldest first.
pub fn clb_triggers(ctx: &Ctx<'_>, key: &FunctionKey) -> Vec<ClbTrigger> {
    ctx.snapshot
        .state
        .bindings_of(key)
        .into_iter()
        .map(|(lb, listener, rule)| {
            let target = rule.function.as_ref().expect("bindings have a function");
            let desc = json!({
                "loadBalanceId": lb.id,
                "listenerId": listener.id,
                "locationId": rule.id,
                "domain": rule.domain,
                "port": listener.port,
                "protocol": listener.protocol.as_api(),
                "url": rule.url,
                "weight": target.weight,
                "accessPath": access_path(lb, listener, rule),
            });
            ClbTrigger {
                name: target.trigger_name.clone().unwrap_or_else(|| rule.id.clone()),
                qualifier: target.qualifier.clone(),
                desc: desc.to_string(),
                resource_id: format!(
                    "qcs::clb:{}:uin/{}:{}/{}/{}",
                    lb.scope.region, lb.scope.uin, lb.id, listener.id, rule.id
                ),
                add_time: ctx.time(target.add_time.max(rule.create_time)),
            }
        })
        .collect()
}

/// The URL a browser opens to reach a rule: the rule's domain when it is a plain name that is not the listener's
/// default, otherwise the VIP (any host reaches the default domain); the port always; the URL without its
/// match operator (`/` for a regular expression).
pub fn access_path(lb: &LoadBalancer, listener: &Listener, rule: &Rule) -> String {
    let scheme = if listener.protocol == Protocol::Https { "https" } else { "http" };
    let is_default = listener.default_domain.as_deref() == Some(rule.domain.as_str());
    let host = match parse_domain(&rule.domain) {
        DomainPattern::Exact(name) if !is_default => name.to_string(),
        _ if lb.vip.contains(':') => format!("[{}]", lb.vip),
        _ => lb.vip.clone(),
    };
    let path = match parse_url(&rule.url) {
        UrlPattern::Exact(p) | UrlPattern::Prefix(p) | UrlPattern::PrefixNoRegex(p) => p.to_string(),
        UrlPattern::Regex(_) | UrlPattern::RegexCaseless(_) => "/".to_string(),
    };
    format!("{scheme}://{host}:{}{path}", listener.port)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTriggers {
    function_name: String,
    namespace: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
    order_by: Option<String>,
    order: Option<String>,
    filters: Option<Vec<Filter>>,
}

pub fn list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListTriggers = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let mut triggers = clb_triggers(ctx, &key);
    for filter in filters(req.filters)? {
        let any = |value: &str| filter.values.iter().any(|v| v == value);
        match filter.name.as_str() {
            "Qualifier" => triggers.retain(|t| any(&t.qualifier)),
            "TriggerName" => triggers.retain(|t| any(&t.name)),
            // CLB triggers have no description.
            "Description" => triggers.retain(|_| any("")),
            other => return Err(unknown_filter(other)),
        }
    }
    match req.order_by.as_deref() {
        None | Some("add_time") | Some("mod_time") => {}
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.OrderBy",
                format!("OrderBy must be add_time or mod_time, not `{other}`."),
            ));
        }
    }
    match req.order.as_deref() {
        None | Some("DESC") => triggers.reverse(),
        Some("ASC") => {}
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Order",
                format!("Order must be ASC or DESC, not `{other}`."),
            ));
        }
    }
    let total = triggers.len();
    let shown: Vec<Value> =
        page(triggers, req.offset, req.limit, 20, 100)?.iter().map(ClbTrigger::as_trigger_info).collect();
    Ok(obj([("TotalCount", json!(total)), ("Triggers", json!(shown))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateTrigger {
    function_name: String,
    trigger_name: String,
    #[serde(rename = "Type")]
    kind: String,
    trigger_desc: Option<String>,
    namespace: Option<String>,
    qualifier: Option<String>,
    enable: Option<String>,
    #[allow(dead_code)]
    custom_argument: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
}

/// A CLB trigger's `TriggerDesc` as CreateTrigger takes it: the listener by id, or by `port` and `protocol` (as
/// Tencent's Serverless toolkit describes it), and the rule by id or by domain and URL (`accessPath` is an output
/// and is not read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClbTriggerDesc {
    load_balance_id: String,
    listener_id: Option<String>,
    port: Option<u16>,
    protocol: Option<String>,
    location_id: Option<String>,
    domain: Option<String>,
    url: Option<String>,
    weight: Option<i64>,
}

/// CreateTrigger (`Type` `clb`): binds the function to the rule the description names, creating the rule when the
/// listener has none for that domain and URL.
pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateTrigger = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    check_clb(&req.kind)?;
    if req.enable.as_deref().is_some_and(|e| e != "OPEN") {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "A CLB trigger is enabled while it exists (Enable OPEN); delete it to stop it.",
        ));
    }
    if req.trigger_name.is_empty() || req.trigger_name.len() > 100 {
        return Err(ApiError::new("InvalidParameterValue.TriggerName", "TriggerName must be 1 to 100 characters."));
    }
    if clb_triggers(ctx, &key).iter().any(|t| t.name == req.trigger_name) {
        return Err(ApiError::new(
            "ResourceInUse.TriggerName",
            format!("The function already has a trigger named {}.", req.trigger_name),
        ));
    }
    let text = req.trigger_desc.ok_or_else(|| ApiError::missing("TriggerDesc"))?;
    let desc: ClbTriggerDesc = serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            "InvalidParameterValue.TriggerDesc",
            format!("TriggerDesc is not a CLB trigger description: {e}."),
        )
    })?;
    let weight = desc.weight.unwrap_or(10);
    if !(0..=100).contains(&weight) {
        return Err(ApiError::new("InvalidParameterValue.TriggerDesc", "The weight is 0 to 100."));
    }
    let state = &ctx.snapshot.state;
    state.load_balancer(&ctx.scope, &desc.load_balance_id)?;
    let listener_id = match (&desc.listener_id, desc.port) {
        (Some(id), _) => state.listener(&ctx.scope, &desc.load_balance_id, id)?.id.clone(),
        (None, Some(port)) => {
            let protocol = desc.protocol.as_deref().unwrap_or("HTTP");
            let found = state
                .listeners_of(&desc.load_balance_id)
                .into_iter()
                .find(|l| l.port == port && l.protocol.as_api().eq_ignore_ascii_case(protocol));
            let found = found.ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue.TriggerDesc",
                    format!("Load balancer {} has no {protocol} listener on port {port}.", desc.load_balance_id),
                )
            })?;
            found.id.clone()
        }
        (None, None) => {
            return Err(ApiError::new(
                "InvalidParameterValue.TriggerDesc",
                "TriggerDesc names the listener by listenerId, or by port and protocol.",
            ));
        }
    };
    let mut rule = RuleRef {
        scope: ctx.scope.clone(),
        lb_id: desc.load_balance_id.clone(),
        listener_id: listener_id.clone(),
        location_id: desc.location_id.clone(),
        domain: None,
        url: None,
    };
    let mut commands = Vec::new();
    if desc.location_id.is_none() {
        let (Some(domain), Some(url)) = (desc.domain, desc.url) else {
            return Err(ApiError::new(
                "InvalidParameterValue.TriggerDesc",
                "TriggerDesc names the rule by locationId, or by domain and url.",
            ));
        };
        let domain = crate::api::clb::rules::check_domain(&domain)?;
        crate::api::clb::rules::check_url(&url)?;
        let existing_rule =
            state.rules_of(&listener_id).into_iter().find(|r| r.domain == domain && r.url == url).map(|r| r.id.clone());
        let id = match existing_rule {
            Some(id) => id,
            None => {
                let id = crate::ids::resource_id("loc");
                commands.push(Command::CreateRules {
                    scope: ctx.scope.clone(),
                    lb_id: desc.load_balance_id.clone(),
                    listener_id: listener_id.clone(),
                    rules: vec![NewRule::with_defaults(id.clone(), domain, url)],
                    now: crate::clock::now_ms(),
                });
                id
            }
        };
        rule.location_id = Some(id);
    }
    let target = FunctionTarget {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        qualifier: req.qualifier.unwrap_or_else(|| LATEST.to_string()),
        weight: weight as u32,
        add_time: 0,
        trigger_name: Some(req.trigger_name.clone()),
    };
    commands.push(Command::RegisterFunctionTargets { rule, targets: vec![target], now: crate::clock::now_ms() });
    ctx.apply(Command::Batch(commands), Some(vec![desc.load_balance_id])).await?;
    let after = Ctx {
        api: ctx.api,
        account: ctx.account.clone(),
        scope: ctx.scope.clone(),
        request_id: ctx.request_id.clone(),
        snapshot: ctx.api.control.snapshot(),
    };
    let trigger = clb_triggers(&after, &key).into_iter().find(|t| t.name == req.trigger_name);
    let info = trigger.map(|t| t.as_trigger()).ok_or_else(ApiError::internal)?;
    Ok(obj([("TriggerInfo", info)]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteTrigger {
    function_name: String,
    trigger_name: String,
    #[serde(rename = "Type")]
    kind: String,
    namespace: Option<String>,
    #[allow(dead_code)]
    trigger_desc: Option<String>,
    #[allow(dead_code)]
    qualifier: Option<String>,
}

/// DeleteTrigger (`Type` `clb`): unbinds the function from the trigger's rule (the rule stays).
pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteTrigger = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    check_clb(&req.kind)?;
    let state = &ctx.snapshot.state;
    let named = |rule: &Rule| {
        let target = rule.function.as_ref().expect("bindings have a function");
        target.trigger_name.as_deref().unwrap_or(&rule.id) == req.trigger_name
    };
    let Some((lb, listener, rule)) = state.bindings_of(&key).into_iter().find(|(_, _, rule)| named(rule)) else {
        return Err(ApiError::new(
            "ResourceNotFound.Trigger",
            format!("The function has no trigger named {}.", req.trigger_name),
        ));
    };
    let target = rule.function.clone().expect("bindings have a function");
    let rule = RuleRef {
        scope: ctx.scope.clone(),
        lb_id: lb.id.clone(),
        listener_id: listener.id.clone(),
        location_id: Some(rule.id.clone()),
        domain: None,
        url: None,
    };
    let lbs = Some(vec![lb.id.clone()]);
    ctx.apply(Command::DeregisterFunctionTargets { rule, targets: vec![target] }, lbs).await?;
    Ok(Map::new())
}

fn check_clb(kind: &str) -> Result<(), ApiError> {
    if kind == "clb" {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.Type",
        format!("Trigger type `{kind}` is not served: this server's triggers are CLB triggers (Type clb)."),
    ))
}
