//! PutReservedConcurrencyConfig, GetReservedConcurrencyConfig, DeleteReservedConcurrencyConfig.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::function_key;
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
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    ctx.snapshot.state.function(&key)?;
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
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    ctx.snapshot.state.function(&key)?;
    ctx.apply(Command::SetReservedConcurrency { key, reserved_mem: None, now: crate::clock::now_ms() }, None).await?;
    Ok(Map::new())
}
