//! ListTriggers, and the CLB triggers a function has (contract 0.4): each rule it is bound to.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::existing;
use crate::api::params::{obj, page, parse};
use crate::api::{ApiError, Ctx};
use crate::proxy::router::{DomainPattern, UrlPattern, parse_domain, parse_url};
use crate::state::{FunctionKey, Listener, LoadBalancer, Protocol, Rule};

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
                name: rule.id.clone(),
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
}

pub fn list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListTriggers = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let mut triggers = clb_triggers(ctx, &key);
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
