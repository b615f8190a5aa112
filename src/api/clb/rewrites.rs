//! Redirects between rules (ManualRewrite, AutoRewrite, DeleteRewrite, DescribeRewrite): a rule whose requests
//! are answered with a redirect to another rule's listener, typically HTTP to HTTPS.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::params::parse;
use crate::api::{ApiError, Ctx};
use crate::state::{Command, NewListener, NewRule, Protocol, Rewrite, Rule};

/// `RewriteCode` when none is given.
const DEFAULT_REWRITE_CODE: i64 = 301;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RewriteLocationMap {
    source_location_id: String,
    target_location_id: String,
    rewrite_code: Option<i64>,
    take_url: Option<bool>,
    #[allow(dead_code)]
    source_domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rewrites {
    load_balancer_id: String,
    source_listener_id: String,
    target_listener_id: String,
    rewrite_infos: Vec<RewriteLocationMap>,
}

/// A `RewriteCode` as a status code (which ones a redirect may use, the state decides: 301, 302, 307).
fn rewrite_code(code: i64) -> Result<u16, ApiError> {
    u16::try_from(code).map_err(|_| {
        ApiError::new("InvalidParameterValue", format!("RewriteCode {code} is not one of 301, 302 and 307."))
    })
}

pub async fn manual(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Rewrites = parse(p)?;
    if req.rewrite_infos.is_empty() {
        return Err(ApiError::missing("RewriteInfos"));
    }
    let mut rewrites = Vec::with_capacity(req.rewrite_infos.len());
    for info in req.rewrite_infos {
        let code = rewrite_code(info.rewrite_code.unwrap_or(DEFAULT_REWRITE_CODE))?;
        let rewrite = Rewrite {
            listener_id: req.target_listener_id.clone(),
            location_id: info.target_location_id,
            code,
            take_url: info.take_url.unwrap_or(false),
            auto: false,
        };
        rewrites.push((info.source_location_id, rewrite));
    }
    let command = Command::AddRewrites {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        source_listener_id: req.source_listener_id,
        rewrites,
    };
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Rewrites = parse(p)?;
    if req.rewrite_infos.is_empty() {
        return Err(ApiError::missing("RewriteInfos"));
    }
    let command = Command::DeleteRewrites {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        source_listener_id: req.source_listener_id,
        target_listener_id: req.target_listener_id,
        rewrites: req.rewrite_infos.into_iter().map(|i| (i.source_location_id, i.target_location_id)).collect(),
    };
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeRewrite {
    load_balancer_id: String,
    source_listener_ids: Option<Vec<String>>,
    source_location_ids: Option<Vec<String>>,
}

/// The rules of a load balancer that redirect, as `RuleOutput`s with their `RewriteTarget`.
pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeRewrite = parse(p)?;
    let state = &ctx.snapshot.state;
    state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let mut set = Vec::new();
    for listener in state.listeners_of(&req.load_balancer_id) {
        if req.source_listener_ids.as_ref().is_some_and(|ids| !ids.contains(&listener.id)) {
            continue;
        }
        for rule in state.rules_of(&listener.id) {
            if rule.rewrite.is_none() || req.source_location_ids.as_ref().is_some_and(|ids| !ids.contains(&rule.id)) {
                continue;
            }
            set.push(super::rules::rule_output(ctx, listener, rule));
        }
    }
    let mut out = Map::new();
    out.insert("RewriteSet".into(), Value::Array(set));
    Ok(out)
}

/// A rule's `RewriteTarget` object (without a redirect: no target, and the other members empty, as the SDKs declare
/// them never null).
pub fn target_output(rule: &Rule) -> Value {
    match &rule.rewrite {
        Some(r) => json!({
            "TargetListenerId": r.listener_id,
            "TargetLocationId": r.location_id,
            "RewriteCode": r.code,
            "TakeUrl": r.take_url,
            "RewriteType": if r.auto { "AUTO" } else { "MANUAL" },
        }),
        None => json!({
            "TargetListenerId": null, "TargetLocationId": null, "RewriteCode": 0, "TakeUrl": false, "RewriteType": "",
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AutoRewrite {
    load_balancer_id: String,
    listener_id: String,
    domains: Option<Vec<String>>,
    rewrite_codes: Option<Vec<i64>>,
    take_urls: Option<Vec<bool>>,
}

/// The HTTP listener AutoRewrite redirects from (made when the instance has none).
pub const AUTO_REWRITE_PORT: u16 = 80;
/// `RewriteCode` of AutoRewrite when none is given (Tencent's default).
const AUTO_REWRITE_CODE: i64 = 302;

/// AutoRewrite: the instance's HTTP listener on port 80 (made when missing) gets, for each rule of the HTTPS
/// listener in `Domains` (every domain when none is named), a rule with the same domain and URL (made when
/// missing) that redirects to it.
pub async fn auto(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: AutoRewrite = parse(p)?;
    let state = &ctx.snapshot.state;
    let lb = state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let https = state.listener(&ctx.scope, &req.load_balancer_id, &req.listener_id)?;
    if https.protocol != Protocol::Https {
        return Err(ApiError::new(
            "InvalidParameter.ProtocolCheckFailed",
            format!("Listener {} is not an HTTPS listener; AutoRewrite redirects to an HTTPS listener.", https.id),
        ));
    }
    let rules = state.rules_of(&https.id);
    let domains: Vec<String> = match &req.domains {
        Some(named) => {
            let named: Vec<String> = named.iter().map(|d| super::rules::normalize_domain(d)).collect();
            if let Some((i, d)) = named.iter().enumerate().find(|(i, d)| named[..*i].contains(d)) {
                return Err(ApiError::new("InvalidParameter", format!("Domains names {d} twice (at {i}).")));
            }
            named
        }
        None => {
            let mut all: Vec<String> = Vec::new();
            for rule in &rules {
                if !all.contains(&rule.domain) {
                    all.push(rule.domain.clone());
                }
            }
            all
        }
    };
    if let Some(missing) = domains.iter().find(|d| !rules.iter().any(|r| &r.domain == *d)) {
        return Err(ApiError::new(
            "InvalidParameter",
            format!("Domain {missing} has no rule on listener {}.", https.id),
        ));
    }
    let http = state
        .listeners_of(&lb.id)
        .into_iter()
        .find(|l| l.protocol == Protocol::Http && l.port == AUTO_REWRITE_PORT)
        .cloned();
    let http_id = http.as_ref().map_or_else(|| crate::ids::resource_id("lbl"), |l| l.id.clone());
    let mut commands = Vec::new();
    if http.is_none() {
        commands.push(Command::CreateListeners {
            scope: ctx.scope.clone(),
            lb_id: lb.id.clone(),
            listeners: vec![NewListener::with_defaults(
                http_id.clone(),
                format!("HTTP-{AUTO_REWRITE_PORT}"),
                Protocol::Http,
                AUTO_REWRITE_PORT,
            )],
            now: crate::clock::now_ms(),
        });
    }
    let existing = http.as_ref().map(|l| state.rules_of(&l.id)).unwrap_or_default();
    let (mut new_rules, mut rewrites) = (Vec::new(), Vec::new());
    for (i, domain) in domains.iter().enumerate() {
        let code =
            rewrite_code(req.rewrite_codes.as_ref().and_then(|c| c.get(i).copied()).unwrap_or(AUTO_REWRITE_CODE))?;
        let take_url = req.take_urls.as_ref().and_then(|t| t.get(i).copied()).unwrap_or(true);
        for target in rules.iter().filter(|r| &r.domain == domain) {
            let source = match existing.iter().find(|r| r.domain == target.domain && r.url == target.url) {
                Some(rule) => rule.id.clone(),
                None => {
                    let id = crate::ids::resource_id("loc");
                    new_rules.push(NewRule::with_defaults(id.clone(), target.domain.clone(), target.url.clone()));
                    id
                }
            };
            let rewrite =
                Rewrite { listener_id: https.id.clone(), location_id: target.id.clone(), code, take_url, auto: true };
            rewrites.push((source, rewrite));
        }
    }
    if !new_rules.is_empty() {
        commands.push(Command::CreateRules {
            scope: ctx.scope.clone(),
            lb_id: lb.id.clone(),
            listener_id: http_id.clone(),
            rules: new_rules,
            now: crate::clock::now_ms(),
        });
    }
    commands.push(Command::AddRewrites {
        scope: ctx.scope.clone(),
        lb_id: lb.id.clone(),
        source_listener_id: http_id,
        rewrites,
    });
    let command = Command::Batch(commands);
    // Refuse what the state refuses before binding port 80, then make sure it can be bound.
    state.try_apply(command.clone())?;
    let addr = match (http.is_none(), lb.vip.parse::<std::net::IpAddr>()) {
        (true, Ok(ip)) => Some(std::net::SocketAddr::new(ip, AUTO_REWRITE_PORT)),
        _ => None,
    };
    if let Some(addr) = addr
        && let Err(e) = ctx.api.sockets.reserve(addr, false)
    {
        return Err(ApiError::new(
            "InvalidParameter.PortCheckFailed",
            format!("Port {AUTO_REWRITE_PORT} cannot be bound on VIP {}: {e}.", lb.vip),
        ));
    }
    if let Err(e) = ctx.apply(command, Some(vec![req.load_balancer_id])).await {
        if let Some(addr) = addr {
            ctx.api.sockets.release(&addr, false);
        }
        return Err(e);
    }
    Ok(Map::new())
}
