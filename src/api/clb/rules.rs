//! CreateRule, DeleteRule, and the `RuleOutput` object.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::health_check_output;
use crate::api::params::{obj, parse};
use crate::api::{ApiError, Ctx};
use crate::snapshot::router::{DomainPattern, UrlPattern, compile_regex, parse_domain, parse_url};
use crate::state::{Command, HealthCheck, Listener, NewRule, Rule, RulesSelector};

static PLAIN_DOMAIN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9.\-_]+$").expect("valid pattern"));
static PLAIN_URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^/[a-zA-Z0-9.\-_/=?:]*$").expect("valid pattern"));

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleInput {
    url: String,
    domain: Option<String>,
    domains: Option<Vec<String>>,
    session_expire_time: Option<i64>,
    scheduler: Option<String>,
    forward_type: Option<String>,
    default_server: Option<bool>,
    http2: Option<bool>,
    certificate: Option<Value>,
    multi_cert_info: Option<Value>,
    health_check: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRule {
    load_balancer_id: String,
    listener_id: String,
    rules: Vec<RuleInput>,
}

pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateRule = parse(p)?;
    let state = &ctx.snapshot.state;
    let lb = state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let listener = state.listener(&ctx.scope, &req.load_balancer_id, &req.listener_id)?;
    if req.rules.is_empty() {
        return Err(ApiError::missing("Rules"));
    }
    let mut rules = Vec::with_capacity(req.rules.len());
    let mut new_certificates = Vec::new();
    for input in req.rules {
        let domain = match (input.domain, input.domains) {
            (Some(d), _) => d,
            (None, Some(mut ds)) if ds.len() == 1 => ds.remove(0),
            (None, Some(ds)) if ds.len() > 1 => {
                return Err(ApiError::new(
                    "UnsupportedOperation",
                    "A rule with several Domains is not supported; create one rule per domain.",
                ));
            }
            // CLB uses the listener's default domain, and the VIP for the first rule.
            _ => listener.default_domain.clone().unwrap_or_else(|| lb.vip.clone()),
        };
        let domain = check_domain(&domain)?;
        check_url(&input.url)?;
        let scheduler = check_scheduler(input.scheduler.unwrap_or_else(|| "WRR".to_string()))?;
        let session_expire_time = check_session_expire_time(input.session_expire_time.unwrap_or(0))?;
        let forward_type = check_forward_type(input.forward_type.unwrap_or_else(|| "HTTP".to_string()))?;
        let tls = super::certificates::read(ctx, input.certificate, input.multi_cert_info)?;
        if tls.is_some() && !listener.sni_switch {
            return Err(ApiError::new(
                "InvalidParameter",
                "A rule's Certificate applies only to an HTTPS listener with SNI (SniSwitch 1).",
            ));
        }
        let tls = tls.map(|t| {
            new_certificates.extend(t.new_certificates);
            t.settings
        });
        let health_check = match input.health_check {
            Some(value) => super::health_check_input(value, &HealthCheck::default(), false)?,
            None => HealthCheck::default(),
        };
        rules.push(NewRule {
            tls,
            health_check,
            id: crate::ids::resource_id("loc"),
            domain,
            url: input.url,
            default_server: input.default_server.unwrap_or(false),
            scheduler,
            session_expire_time,
            forward_type,
            http2: input.http2.unwrap_or(false),
        });
    }
    let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
    let create = Command::CreateRules {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        listener_id: req.listener_id,
        rules,
        now: crate::clock::now_ms(),
    };
    let command = super::listeners::with_certificates(new_certificates, create);
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(obj([("LocationIds", json!(ids))]))
}

fn check_scheduler(scheduler: String) -> Result<String, ApiError> {
    if matches!(scheduler.as_str(), "WRR" | "LEAST_CONN" | "IP_HASH") {
        return Ok(scheduler);
    }
    Err(ApiError::new(
        "InvalidParameterValue",
        format!("Scheduler must be WRR, LEAST_CONN or IP_HASH, not `{scheduler}`."),
    ))
}

fn check_session_expire_time(seconds: i64) -> Result<u32, ApiError> {
    if seconds == 0 || (30..=86400).contains(&seconds) {
        return Ok(seconds as u32);
    }
    Err(ApiError::new("InvalidParameterValue.Range", "SessionExpireTime must be 0, or 30 to 86400 seconds."))
}

fn check_forward_type(forward_type: String) -> Result<String, ApiError> {
    if matches!(forward_type.as_str(), "HTTP" | "HTTPS" | "GRPC" | "GRPCS" | "TRPC") {
        return Ok(forward_type);
    }
    Err(ApiError::new("InvalidParameterValue", format!("ForwardType `{forward_type}` is not valid.")))
}

/// Domains (contract 5.3): 1–80 characters, not starting with `_`; `*.x`, `x.*` or `~regex`. Stored lower-case
/// unless a regular expression.
pub fn check_domain(domain: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::new("InvalidParameterValue", format!("Domain `{domain}` is not valid: {why}."));
    if domain.is_empty() || domain.chars().count() > 80 {
        return Err(bad("it must be 1 to 80 characters"));
    }
    if domain.starts_with('_') {
        return Err(bad("it must not start with `_`"));
    }
    match parse_domain(domain) {
        DomainPattern::Regex(re) => {
            compile_regex(re, true).map_err(|e| bad(&format!("the regular expression does not compile ({e})")))?;
            Ok(domain.to_string())
        }
        DomainPattern::Exact(name) | DomainPattern::Leading(name) | DomainPattern::Trailing(name) => {
            let lowered = name.to_ascii_lowercase();
            if lowered.is_empty() || lowered.contains('*') || !PLAIN_DOMAIN.is_match(&lowered) {
                return Err(bad("use letters, digits, `.`, `-` and `_`, with one `*` at the start or the end"));
            }
            Ok(domain.to_ascii_lowercase())
        }
    }
}

/// URLs (contract 5.3): 1–200 characters; plain ones start with `/`; `=`, `^~`, `~` and `~*` forms.
pub fn check_url(url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::new("InvalidParameterValue", format!("Url `{url}` is not valid: {why}."));
    if url.is_empty() || url.chars().count() > 200 {
        return Err(bad("it must be 1 to 200 characters"));
    }
    match parse_url(url) {
        UrlPattern::Regex(re) => compile_regex(re, false)
            .map(|_| ())
            .map_err(|e| bad(&format!("the regular expression does not compile ({e})"))),
        UrlPattern::RegexCaseless(re) => compile_regex(re, true)
            .map(|_| ())
            .map_err(|e| bad(&format!("the regular expression does not compile ({e})"))),
        UrlPattern::Exact(path) | UrlPattern::Prefix(path) | UrlPattern::PrefixNoRegex(path) => {
            if PLAIN_URL.is_match(path) {
                Ok(())
            } else {
                Err(bad("it must start with `/` and use letters, digits and `.-_/=?:`"))
            }
        }
    }
}

/// A domain as it is stored: lower-case, unless it is a regular expression.
pub fn normalize_domain(domain: &str) -> String {
    if domain.starts_with('~') { domain.to_string() } else { domain.to_ascii_lowercase() }
}

/// A `RuleOutput` object.
pub fn rule_output(ctx: &Ctx<'_>, listener: &Listener, rule: &Rule) -> Value {
    json!({
        "LocationId": rule.id,
        "Domain": rule.domain,
        "Url": rule.url,
        "SessionExpireTime": rule.session_expire_time,
        "HealthCheck": health_check_output(&rule.health_check, false),
        "Certificate": super::certificates::output(listener.domain_tls.get(&rule.domain)),
        "Scheduler": rule.scheduler,
        "ListenerId": listener.id,
        "RewriteTarget": super::rewrites::target_output(rule),
        "HttpGzip": true,
        "BeAutoCreated": rule.rewrite.as_ref().is_some_and(|r| r.auto),
        "DefaultServer": listener.default_domain.as_deref() == Some(rule.domain.as_str()),
        "Http2": rule.http2,
        "ForwardType": rule.forward_type,
        "CreateTime": ctx.time(rule.create_time),
        "TargetType": "NODE",
        "TargetGroup": null,
        "WafDomainId": "",
        "TrpcCallee": "",
        "TrpcFunc": "",
        "QuicStatus": "QUIC_INACTIVE",
        "Domains": [rule.domain],
        "TargetGroupList": null,
        "OAuth": {"OAuthEnable": false, "OAuthFailureStatus": "BYPASS"},
        "CookieName": "",
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRule {
    load_balancer_id: String,
    listener_id: String,
    location_ids: Option<Vec<String>>,
    domain: Option<String>,
    url: Option<String>,
    new_default_server_domain: Option<String>,
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteRule = parse(p)?;
    let selector = match (req.location_ids, req.url) {
        (Some(ids), _) if !ids.is_empty() => RulesSelector::Ids(ids),
        (_, Some(url)) => RulesSelector::DomainUrl { domain: req.domain.map(|d| normalize_domain(&d)), url },
        _ => return Err(ApiError::missing("LocationIds")),
    };
    let command = Command::DeleteRules {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        listener_id: req.listener_id,
        selector,
        new_default_domain: req.new_default_server_domain.map(|d| normalize_domain(&d)),
    };
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyDomainAttributes {
    load_balancer_id: String,
    listener_id: String,
    domain: String,
    certificate: Option<Value>,
    multi_cert_info: Option<Value>,
    http2: Option<bool>,
    default_server: Option<bool>,
}

/// ModifyDomainAttributes: a domain's certificates (SNI listeners), HTTP/2 and default-server flag.
pub async fn modify_domain(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    super::refuse_unchangeable(&p, &["NewDomain", "NewDefaultServerDomain", "NewDomains", "Quic", "Domains", "Tags"])?;
    let req: ModifyDomainAttributes = parse(p)?;
    let tls = super::certificates::read(ctx, req.certificate, req.multi_cert_info)?;
    let (tls, new_certificates) = match tls {
        Some(t) => (Some(t.settings), t.new_certificates),
        None => (None, Vec::new()),
    };
    let change = Command::ModifyDomain {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        listener_id: req.listener_id,
        domain: normalize_domain(&req.domain),
        tls,
        http2: req.http2,
        default_server: req.default_server.unwrap_or(false),
    };
    let command = super::listeners::with_certificates(new_certificates, change);
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyRule {
    load_balancer_id: String,
    listener_id: String,
    location_id: String,
    url: Option<String>,
    health_check: Option<Value>,
    scheduler: Option<String>,
    session_expire_time: Option<i64>,
    forward_type: Option<String>,
}

/// ModifyRule: a rule's URL, health check, scheduler, session persistence and backend protocol.
pub async fn modify(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    super::refuse_unchangeable(&p, &["TrpcCallee", "TrpcFunc", "OAuth", "CookieName"])?;
    let req: ModifyRule = parse(p)?;
    let current = ctx
        .snapshot
        .state
        .rules
        .get(&req.location_id)
        .filter(|r| r.listener_id == req.listener_id && r.lb_id == req.load_balancer_id)
        .ok_or_else(|| {
            ApiError::new("InvalidParameter.LocationNotFound", "The rule does not exist on this listener.")
        })?;
    ctx.snapshot.state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    if let Some(url) = &req.url {
        check_url(url)?;
    }
    let health_check =
        req.health_check.map(|v| super::health_check_input(v, &current.health_check, false)).transpose()?;
    let command = Command::ModifyRule {
        rule: crate::state::RuleRef {
            scope: ctx.scope.clone(),
            lb_id: req.load_balancer_id.clone(),
            listener_id: req.listener_id,
            location_id: Some(req.location_id),
            domain: None,
            url: None,
        },
        url: req.url,
        scheduler: req.scheduler.map(check_scheduler).transpose()?,
        session_expire_time: req.session_expire_time.map(check_session_expire_time).transpose()?,
        forward_type: req.forward_type.map(check_forward_type).transpose()?,
        health_check,
    };
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}
