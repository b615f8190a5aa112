//! DescribeTaskStatus (contract 0.6): every mutation this server accepted has already taken effect.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::params::{obj, parse};
use crate::api::{ApiError, Ctx};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeTaskStatus {
    task_id: Option<String>,
    deal_name: Option<String>,
}

pub async fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeTaskStatus = parse(p)?;
    let id = req.task_id.or(req.deal_name).ok_or_else(|| ApiError::missing("TaskId"))?;
    let store = ctx.api.control.store().clone();
    let lookup = id.clone();
    let task = tokio::task::spawn_blocking(move || store.task(&lookup))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "Cannot read a task.");
            ApiError::internal()
        })?;
    match task {
        Some(task) if task.uin == ctx.account.uin => {
            Ok(obj([("Status", json!(0)), ("LoadBalancerIds", json!(task.load_balancer_ids)), ("Message", json!(""))]))
        }
        _ => Err(ApiError::new("InvalidParameter", format!("The task `{id}` does not exist."))),
    }
}
