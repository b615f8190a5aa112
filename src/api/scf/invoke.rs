//! Invoke, InvokeFunction and GetFunctionLogs.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{existing, function_key};
use crate::api::params::{obj, page, parse};
use crate::api::{ApiError, Ctx};
use crate::functions::logs::LogRecord;
use crate::functions::{Invocation, status};
use crate::state::{Function, FunctionKey};
use crate::store::AsyncJob;

/// A synchronous `Invoke` waits at most this long (contract 1.4); longer work needs `Event`.
pub const SYNC_INVOKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `Invoke` with `LogType` `Tail` returns at most this much of the log (its end).
pub const TAIL_LOG_BYTES: usize = 4 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Invoke {
    function_name: String,
    invocation_type: Option<String>,
    qualifier: Option<String>,
    client_context: Option<String>,
    log_type: Option<String>,
    namespace: Option<String>,
}

pub async fn invoke(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Invoke = parse(p)?;
    match req.invocation_type.as_deref() {
        None | Some("") | Some("RequestResponse") => {}
        Some("Event") => {
            let qualifier = req.qualifier.unwrap_or_else(|| "$LATEST".to_string());
            return enqueue(ctx, &req.function_name, req.namespace.as_deref(), &qualifier, req.client_context).await;
        }
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.InvocationType",
                format!("InvocationType must be RequestResponse or Event, not `{other}`."),
            ));
        }
    }
    let qualifier = req.qualifier.unwrap_or_else(|| "$LATEST".to_string());
    run(ctx, &req.function_name, req.namespace.as_deref(), &qualifier, req.client_context, req.log_type).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InvokeFunction {
    function_name: String,
    qualifier: Option<String>,
    event: Option<String>,
    log_type: Option<String>,
    namespace: Option<String>,
}

pub async fn invoke_function(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: InvokeFunction = parse(p)?;
    let qualifier = req.qualifier.unwrap_or_else(|| "$DEFAULT".to_string());
    run(ctx, &req.function_name, req.namespace.as_deref(), &qualifier, req.event, req.log_type).await
}

/// Queues an asynchronous invocation: answered at once with its request id (`Result` otherwise empty).
async fn enqueue(
    ctx: &Ctx<'_>,
    name: &str,
    namespace: Option<&str>,
    qualifier: &str,
    event: Option<String>,
) -> Result<Map<String, Value>, ApiError> {
    let key = function_key(ctx, name, namespace)?;
    let function = ctx.snapshot.state.function(&key)?;
    let event = checked_event(function, qualifier, event)?;
    let queue = ctx.api.queue.clone();
    too_large(&event, queue.settings.max_event_bytes)?;
    let request_id = crate::ids::request_id();
    let job = AsyncJob {
        request_id: request_id.clone(),
        function: crate::functions::queue::function_id(&key),
        qualifier: qualifier.to_string(),
        event: event.into_bytes(),
        attempts: 0,
        created_ms: crate::clock::now_ms(),
    };
    let queued = queue.submit(job).await?;
    if !queued {
        return Err(ApiError::new(
            "LimitExceeded",
            "The asynchronous queue is full (100,000 invocations waiting or running); try again later.",
        ));
    }
    let result = json!({
        "Log": "", "RetMsg": "", "ErrMsg": "", "MemUsage": 0, "Duration": 0.0, "BillDuration": 0,
        "FunctionRequestId": request_id, "InvokeResult": 0,
    });
    Ok(obj([("Result", result)]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRequestStatus {
    function_name: String,
    function_request_id: String,
    namespace: Option<String>,
}

/// The state of an invocation: asynchronous ones from the queue, synchronous ones from the kept logs.
pub async fn request_status(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: GetRequestStatus = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    let queued = ctx
        .api
        .control
        .store()
        .async_status(&req.function_request_id)
        .await?
        .filter(|s| s.function == crate::functions::queue::function_id(&key));
    let data: Vec<Value> = match queued {
        Some(s) => {
            let ret_code = match s.state.as_str() {
                "done" => 0,
                "failed" => -1,
                _ => 1,
            };
            vec![json!({
                "FunctionName": key.name,
                "RetMsg": s.ret_msg.unwrap_or_default(),
                "RequestId": req.function_request_id,
                "StartTime": ctx.time(s.created_ms),
                "RetCode": ret_code,
                "Duration": s.duration_ms.unwrap_or(0.0),
                "MemUsage": s.mem_bytes.unwrap_or(0) as f64,
                "RetryNum": (s.attempts - 1).max(0),
            })]
        }
        None => records(ctx, &key, Some(&req.function_request_id))
            .await
            .into_iter()
            .filter(|r| r.request_id == req.function_request_id)
            .map(|r| {
                json!({
                    "FunctionName": key.name,
                    "RetMsg": r.ret_msg,
                    "RequestId": r.request_id,
                    "StartTime": ctx.time(r.start_ms),
                    "RetCode": if r.status == status::SUCCESS { 0 } else { -1 },
                    "Duration": r.duration_ms,
                    "MemUsage": r.mem_bytes as f64,
                    "RetryNum": 0,
                })
            })
            .collect(),
    };
    Ok(obj([("TotalCount", json!(data.len())), ("Data", json!(data))]))
}

async fn run(
    ctx: &Ctx<'_>,
    name: &str,
    namespace: Option<&str>,
    qualifier: &str,
    event: Option<String>,
    log_type: Option<String>,
) -> Result<Map<String, Value>, ApiError> {
    let key = function_key(ctx, name, namespace)?;
    let spec = ctx
        .snapshot
        .functions
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::new("ResourceNotFound.Function", format!("Function {name} does not exist.")))?;
    let tail = match log_type.as_deref() {
        None | Some("") | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.LogType",
                format!("LogType must be None or Tail, not `{other}`."),
            ));
        }
    };
    let event = checked_event(&spec.function, qualifier, event)?;
    too_large(&event, ctx.api.functions.settings().max_event_bytes)?;
    let request_id = crate::ids::request_id();
    let invocation =
        ctx.api.functions.invoke(&spec, qualifier, event.into_bytes(), request_id, Some(SYNC_INVOKE_LIMIT)).await;
    Ok(obj([("Result", result(&invocation, tail))]))
}

/// The qualifier must name something of the function; the event (`{}` when empty) must be JSON.
fn checked_event(function: &Function, qualifier: &str, event: Option<String>) -> Result<String, ApiError> {
    if !function.has_qualifier(qualifier) {
        return Err(ApiError::new(
            "ResourceNotFound.Qualifier",
            format!("Function {} has no version or alias `{qualifier}`.", function.key.name),
        ));
    }
    let event = event.filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "{}".to_string());
    if serde_json::from_str::<serde::de::IgnoredAny>(&event).is_err() {
        return Err(ApiError::new("InvalidParameterValue.Param", "The event (ClientContext) is not valid JSON."));
    }
    Ok(event)
}

/// The `Result` object (contract 0.3).
fn result(invocation: &Invocation, tail: bool) -> Value {
    let duration_ms = invocation.duration.as_secs_f64() * 1000.0;
    let (ret_msg, err_msg, invoke_result) = match &invocation.result {
        Ok(json) => (String::from_utf8_lossy(json).into_owned(), String::new(), 0),
        Err(e) => {
            let text = e.to_ret_msg(&invocation.request_id);
            let code = if status::is_user_failure(e.status) { 1 } else { -1 };
            (text.clone(), text, code)
        }
    };
    let log = if tail { tail_of(&invocation.log, TAIL_LOG_BYTES) } else { "" };
    json!({
        "Log": log,
        "RetMsg": ret_msg,
        "ErrMsg": err_msg,
        "MemUsage": invocation.mem_bytes,
        "Duration": (duration_ms * 1000.0).round() / 1000.0,
        "BillDuration": duration_ms.ceil() as u64,
        "FunctionRequestId": invocation.request_id,
        "InvokeResult": invoke_result,
    })
}

/// The last `max` bytes of a log, cut at a character boundary.
fn tail_of(log: &str, max: usize) -> &str {
    if log.len() <= max {
        return log;
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LogFilter {
    ret_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunctionLogs {
    function_name: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
    order: Option<String>,
    filter: Option<LogFilter>,
    namespace: Option<String>,
    function_request_id: Option<String>,
}

/// A function's invocation records, newest first: in a cluster every node's (this node's own when the store
/// cannot be reached), on one node the engine's.
async fn records(ctx: &Ctx<'_>, key: &FunctionKey, request_id: Option<&str>) -> Vec<Arc<LogRecord>> {
    let logs = &ctx.api.functions.logs;
    match ctx.api.control.store().function_logs(key, request_id, logs.per_function()).await {
        Ok(Some(records)) => records.into_iter().map(Arc::new).collect(),
        Ok(None) => logs.recent(key),
        Err(e) => {
            tracing::debug!(error = %e, "Function logs read from this node only.");
            logs.recent(key)
        }
    }
}

pub async fn logs(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: GetFunctionLogs = parse(p)?;
    let name = req.function_name.ok_or_else(|| ApiError::missing("FunctionName"))?;
    let key = existing(ctx, &name, req.namespace.as_deref())?;
    let ret_code = req.filter.and_then(|f| f.ret_code);
    let mut records: Vec<_> = records(ctx, &key, req.function_request_id.as_deref())
        .await
        .into_iter()
        .filter(|r| req.function_request_id.as_ref().is_none_or(|id| &r.request_id == id))
        .filter(|r| match ret_code.as_deref() {
            None | Some("") => true,
            Some("is0") => r.status == status::SUCCESS,
            Some("not0") => r.status != status::SUCCESS,
            Some("TimeLimitExceeded") => r.status == status::TIMEOUT,
            Some("ResourceLimitExceeded") => r.status == status::MEMORY,
            Some("UserCodeException") => r.status == status::USER_CODE_EXCEPTION,
            Some(_) => false,
        })
        .collect();
    if req.order.as_deref() == Some("ASC") {
        records.reverse();
    }
    let total = records.len();
    let data: Vec<Value> = page(records, req.offset, req.limit, 10, 10_000)?
        .into_iter()
        .map(|r| {
            json!({
                "FunctionName": name,
                "RetMsg": r.ret_msg,
                "RequestId": r.request_id,
                "StartTime": ctx.time(r.start_ms),
                "RetCode": if r.status == status::SUCCESS { 0 } else { i64::from(r.status) },
                "InvokeFinished": 1,
                "Duration": (r.duration_ms * 1000.0).round() / 1000.0,
                "BillDuration": r.duration_ms.ceil() as u64,
                "MemUsage": r.mem_bytes,
                "Log": &*r.log,
                "Level": "",
                // The node that ran it, in a cluster.
                "Source": &*r.node,
                "RetryNum": 0,
            })
        })
        .collect();
    Ok(obj([
        ("TotalCount", json!(total)),
        ("Data", json!(data)),
        ("SearchContext", json!({"Offset": "", "Limit": 0, "Keyword": "", "Type": ""})),
    ]))
}

/// `InvalidParameter.RequestTooLarge` for an event over `limit` bytes.
fn too_large(event: &str, limit: usize) -> Result<(), ApiError> {
    if event.len() <= limit {
        return Ok(());
    }
    let message = format!("The event is {} bytes; the limit is {limit} bytes.", event.len());
    Err(ApiError::new("InvalidParameter.RequestTooLarge", message))
}
