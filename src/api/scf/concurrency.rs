//! Reserved concurrency (Put/Get/DeleteReservedConcurrencyConfig) and provisioned concurrency
//! (Put/Get/DeleteProvisionedConcurrencyConfig).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{existing, function_key};
use crate::api::params::{obj, parse};
use crate::api::{ApiError, Ctx};
use crate::state::Command;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutReserved {
    function_name: String,
    reserved_concurrency_mem: i64,
    namespace: Option<String>,
}

pub async fn put_reserved(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: PutReserved = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let quota = ctx.api.functions.settings().total_concurrency_mb;
    let mem = u32::try_from(req.reserved_concurrency_mem).ok().filter(|m| *m <= quota).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue.ReservedConcurrencyMem",
            format!("ReservedConcurrencyMem must be 0 to {quota} (MB), the account's concurrency quota."),
        )
    })?;
    let command = Command::SetReservedConcurrency { key, reserved_mem: Some(mem), now: crate::clock::now_ms() };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionRef {
    function_name: String,
    namespace: Option<String>,
}

pub fn get_reserved(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: FunctionRef = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    Ok(obj([("ReservedMem", json!(function.reserved_mem))]))
}

pub async fn delete_reserved(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: FunctionRef = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    ctx.apply(Command::SetReservedConcurrency { key, reserved_mem: None, now: crate::clock::now_ms() }, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutProvisioned {
    function_name: String,
    qualifier: String,
    version_provisioned_concurrency_num: i64,
    namespace: Option<String>,
}

pub async fn put_provisioned(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: PutProvisioned = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let Some(version) = function.version(&req.qualifier) else {
        return Err(ApiError::new(
            "InvalidParameterValue.Qualifier",
            format!("Provisioned concurrency needs a published version, not `{}`.", req.qualifier),
        ));
    };
    let settings = ctx.api.functions.settings();
    let most = settings
        .max_instances_per_function
        .min((settings.total_concurrency_mb / version.config.memory_mb.max(1)) as usize);
    let count =
        usize::try_from(req.version_provisioned_concurrency_num).ok().filter(|n| *n <= most).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.VersionProvisionedConcurrencyNum",
                format!("VersionProvisionedConcurrencyNum must be 0 to {most}."),
            )
        })?;
    let command = Command::SetProvisionedConcurrency { key, version: req.qualifier, count: Some(count as u32) };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetProvisioned {
    function_name: String,
    namespace: Option<String>,
    qualifier: Option<String>,
}

pub async fn get_provisioned(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: GetProvisioned = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let mut allocated = Vec::new();
    for (version, count) in &function.provisioned {
        if req.qualifier.as_ref().is_some_and(|q| q != version) {
            continue;
        }
        // In a cluster, the instances every live node keeps warm (this node's own while the store is unreachable).
        let here = ctx.api.functions.warm_instances(&key, version);
        let warm = match ctx.api.control.store().warm_everywhere(&key, version).await {
            Ok(Some(everywhere)) => everywhere,
            Ok(None) | Err(_) => here,
        };
        let warm = warm.min(*count as usize);
        allocated.push(json!({
            "AllocatedProvisionedConcurrencyNum": count,
            "AvailableProvisionedConcurrencyNum": warm,
            "Status": if warm >= *count as usize { "Done" } else { "InProgress" },
            "StatusReason": "",
            "Qualifier": version,
            "TriggerActions": null,
            "ProvisionedType": null,
            "TrackingTarget": null,
            "MinCapacity": null,
            "MaxCapacity": null,
        }));
    }
    let settings = ctx.api.functions.settings();
    let budget = function.reserved_mem.unwrap_or(settings.total_concurrency_mb) / function.config.memory_mb.max(1);
    let used: u32 = function.provisioned.values().sum();
    Ok(obj([("UnallocatedConcurrencyNum", json!(budget.saturating_sub(used))), ("Allocated", json!(allocated))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteProvisioned {
    function_name: String,
    qualifier: String,
    namespace: Option<String>,
}

pub async fn delete_provisioned(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteProvisioned = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    ctx.apply(Command::SetProvisionedConcurrency { key, version: req.qualifier, count: None }, None).await?;
    Ok(Map::new())
}
