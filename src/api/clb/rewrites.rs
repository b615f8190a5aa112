//! Redirects between rules (ManualRewrite, DeleteRewrite, DescribeRewrite): a rule whose requests are answered
//! with a redirect to another rule's listener, typically HTTP to HTTPS.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::params::parse;
use crate::api::{ApiError, Ctx};
use crate::state::{Command, Rewrite, Rule};

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

pub async fn manual(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Rewrites = parse(p)?;
    if req.rewrite_infos.is_empty() {
        return Err(ApiError::missing("RewriteInfos"));
    }
    let mut rewrites = Vec::with_capacity(req.rewrite_infos.len());
    for info in req.rewrite_infos {
        let code = info.rewrite_code.unwrap_or(DEFAULT_REWRITE_CODE);
        let code = u16::try_from(code).ok().filter(|c| matches!(c, 301 | 302 | 307)).ok_or_else(|| {
            ApiError::new("InvalidParameterValue", format!("RewriteCode {code} is not one of 301, 302 and 307."))
        })?;
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

/// A rule's `RewriteTarget` object (every field null when it does not redirect).
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
            "TargetListenerId": null, "TargetLocationId": null, "RewriteCode": null, "TakeUrl": null, "RewriteType": null,
        }),
    }
}
