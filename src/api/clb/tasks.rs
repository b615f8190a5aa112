//! DescribeTaskStatus (contract 0.6): a mutation is done once it takes effect: on one node when it is
//! acknowledged, in a cluster once every live node serves it.

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
    let store = ctx.api.control.store();
    match store.task(&id).await? {
        Some(task) if task.uin == ctx.account.uin => {
            // In a cluster a task is done once every live node serves its change; until then it runs (2).
            let status = if store.served_everywhere(task.version).await? { 0 } else { 2 };
            Ok(obj([
                ("Status", json!(status)),
                ("LoadBalancerIds", json!(task.load_balancer_ids)),
                ("Message", json!("")),
            ]))
        }
        _ => Err(ApiError::new("InvalidParameter", format!("The task `{id}` does not exist."))),
    }
}
