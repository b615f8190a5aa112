//! CreateFunction, GetFunction, ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Environment, existing, function_key, triggers, validate};
use crate::api::params::{Filter, filters, obj, page, parse, unknown_filter};
use crate::api::{ApiError, Ctx};
use crate::functions;
use crate::state::{CodeRef, Command, Function, FunctionConfig, FunctionConfigPatch, FunctionType, NewFunction};

/// Code packages are at most 50 MB (contract 2.9).
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;
pub const DEFAULT_MEMORY_MB: i64 = 128;
pub const DEFAULT_TIMEOUT_S: i64 = 3;
pub const DEFAULT_INIT_TIMEOUT_S: i64 = 65;
/// Tencent's default when `Runtime` is omitted.
pub const DEFAULT_RUNTIME: &str = "Python2.7";

/// Every `Runtime` value Tencent documents (contract 2.2); those fnlb cannot run are refused by name.
const KNOWN_RUNTIMES: &[&str] = &[
    "Python2.7",
    "Python3.6",
    "Python3.7",
    "Python3.9",
    "Python3.10",
    "Nodejs6.10",
    "Nodejs8.9",
    "Nodejs10.15",
    "Nodejs12.16",
    "Nodejs14.18",
    "Nodejs16.13",
    "Nodejs18.15",
    "Php5.6",
    "Php7",
    "Php7.4",
    "Php8.0",
    "Go1",
    "Java8",
    "CustomRuntime",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Code {
    zip_file: Option<String>,
    cos_bucket_name: Option<String>,
    cos_object_name: Option<String>,
    demo_id: Option<String>,
    temp_cos_object_name: Option<String>,
    git_url: Option<String>,
    image_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunction {
    function_name: String,
    code: Code,
    handler: Option<String>,
    description: Option<String>,
    memory_size: Option<i64>,
    timeout: Option<i64>,
    environment: Option<Environment>,
    runtime: Option<String>,
    namespace: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    init_timeout: Option<i64>,
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

/// Tags one function may carry.
const MAX_TAGS: usize = 50;

pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateFunction = parse(p)?;
    validate::function_name(&req.function_name)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let runtime = req.runtime.unwrap_or_else(|| DEFAULT_RUNTIME.to_string());
    check_runtime(ctx, &runtime)?;
    let handler = req.handler.unwrap_or_else(|| "index.main_handler".to_string());
    validate::handler(&handler, &runtime)?;
    let kind = match req.kind.as_deref() {
        None | Some("") | Some("Event") => FunctionType::Event,
        Some("HTTP") => FunctionType::Http,
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Type",
                format!("Type must be Event or HTTP, not `{other}`."),
            ));
        }
    };
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    let config = FunctionConfig {
        description,
        memory_mb: validate::memory(req.memory_size.unwrap_or(DEFAULT_MEMORY_MB))?,
        timeout_s: validate::timeout(req.timeout.unwrap_or(DEFAULT_TIMEOUT_S))?,
        init_timeout_s: validate::init_timeout(req.init_timeout.unwrap_or(DEFAULT_INIT_TIMEOUT_S))?,
        environment: match &req.environment {
            Some(env) => validate::environment(env)?,
            None => Vec::new(),
        },
    };
    let tags: Vec<(String, String)> = req.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new("InvalidParameterValue.Tags", format!("At most {MAX_TAGS} tags may be given.")));
    }
    let code = store_code(ctx, &req.code).await?;
    let now = crate::clock::now_ms();
    let command = Command::CreateFunction(NewFunction {
        key,
        id: crate::ids::resource_id("lam"),
        runtime,
        handler,
        kind,
        config,
        code,
        tags,
        now,
    });
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

fn check_runtime(ctx: &Ctx<'_>, runtime: &str) -> Result<(), ApiError> {
    if !KNOWN_RUNTIMES.contains(&runtime) {
        return Err(ApiError::new(
            "InvalidParameterValue.Runtime",
            format!("Runtime `{runtime}` is not a known runtime."),
        ));
    }
    ctx.api
        .functions
        .runtimes()
        .check(runtime)
        .map_err(|why| ApiError::new("InvalidParameterValue.Runtime", crate::api::error::sentence(&why)))
}

/// Decodes, checks and stores an inline zip; returns its reference.
async fn store_code(ctx: &Ctx<'_>, code: &Code) -> Result<CodeRef, ApiError> {
    let other_source = code.cos_bucket_name.is_some()
        || code.cos_object_name.is_some()
        || code.demo_id.is_some()
        || code.temp_cos_object_name.is_some()
        || code.git_url.is_some()
        || code.image_config.is_some();
    let Some(zip_b64) = &code.zip_file else {
        if other_source {
            return Err(ApiError::new(
                "InvalidParameterValue.CodeSource",
                "Only inline code (Code.ZipFile, a Base64 zip) is supported by this server; COS, demo, Git and image sources are not.",
            ));
        }
        return Err(ApiError::missing("Code.ZipFile"));
    };
    zip_code(ctx, zip_b64).await
}

async fn zip_code(ctx: &Ctx<'_>, zip_b64: &str) -> Result<CodeRef, ApiError> {
    let data = BASE64
        .decode(zip_b64.trim())
        .map_err(|e| ApiError::new("InvalidParameterValue.ZipFile", format!("ZipFile is not valid Base64: {e}.")))?;
    if data.len() > MAX_ZIP_BYTES {
        return Err(ApiError::new(
            "InvalidParameterValue.ZipFile",
            format!("The zip file is larger than {MAX_ZIP_BYTES} bytes."),
        ));
    }
    let limit = ctx.api.functions.settings().max_code_unpacked_bytes;
    let data = tokio::task::spawn_blocking(move || {
        functions::check_zip(&data, limit).map(|_| data).map_err(|e| {
            ApiError::new("InvalidParameterValue.ZipFile", format!("The zip file is not a standard zip: {e}."))
        })
    })
    .await
    .map_err(|_| ApiError::internal())??;
    let sha256 = functions::sha256_hex(&data);
    let size = data.len() as u64;
    ctx.api.control.store().put_code(sha256.clone(), std::sync::Arc::new(data)).await?;
    Ok(CodeRef { sha256, size })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunction {
    function_name: Option<String>,
    qualifier: Option<String>,
    namespace: Option<String>,
    show_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunctionAddress {
    function_name: String,
    qualifier: Option<String>,
    namespace: Option<String>,
}

/// GetFunctionAddress: the SHA-256 of the code package of `$LATEST` or a version (`Url` is empty: code is not
/// served for download).
pub fn address(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: GetFunctionAddress = parse(p)?;
    let key = function_key(ctx, &req.function_name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let qualifier = req.qualifier.unwrap_or_else(|| "$LATEST".to_string());
    let code = match function.version(&qualifier) {
        Some(v) => &v.code,
        None if qualifier == "$LATEST" => &function.code,
        None => {
            return Err(ApiError::new(
                "ResourceNotFound.Version",
                format!("Version `{qualifier}` of function {} does not exist.", req.function_name),
            ));
        }
    };
    Ok(obj([("Url", json!("")), ("CodeSha256", json!(code.sha256))]))
}

pub async fn get(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: GetFunction = parse(p)?;
    let name = req.function_name.ok_or_else(|| {
        ApiError::new("InvalidParameter.FunctionNameOrResourceIdRequired", "FunctionName is required.")
    })?;
    let key = function_key(ctx, &name, req.namespace.as_deref())?;
    let function = ctx.snapshot.state.function(&key)?;
    let qualifier = req.qualifier.unwrap_or_else(|| "$LATEST".to_string());
    // `$LATEST` or a published version: what it runs.
    let (handler, config, code_size) = match function.version(&qualifier) {
        Some(v) => (&v.handler, &v.config, v.code.size),
        None if qualifier == "$LATEST" => (&function.handler, &function.config, function.code.size),
        None => {
            return Err(ApiError::new(
                "ResourceNotFound.Version",
                format!("Version `{qualifier}` of function {name} does not exist."),
            ));
        }
    };
    let show_code = validate::flag("ShowCode", req.show_code.as_deref())?;
    let code_info = if show_code { entry_source(ctx, function).await } else { String::new() };
    let vars: Vec<Value> = config.environment.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    let triggers = triggers::clb_triggers(ctx, &key).into_iter().map(|t| t.as_trigger()).collect::<Vec<_>>();
    Ok(obj([
        ("ModTime", json!(ctx.time(function.mod_time))),
        ("CodeInfo", json!(code_info)),
        ("Description", json!(config.description)),
        ("Triggers", json!(triggers)),
        ("Handler", json!(handler)),
        ("CodeSize", json!(code_size)),
        ("Timeout", json!(config.timeout_s)),
        ("FunctionVersion", json!(qualifier)),
        ("MemorySize", json!(config.memory_mb)),
        ("Runtime", json!(function.runtime)),
        ("FunctionName", json!(function.key.name)),
        ("VpcConfig", json!({"VpcId": "", "SubnetId": ""})),
        ("UseGpu", json!("FALSE")),
        ("Environment", json!({"Variables": vars})),
        ("CodeResult", json!("success")),
        ("CodeError", json!("")),
        ("ErrNo", json!(0)),
        ("Namespace", json!(function.key.namespace)),
        ("Role", json!("")),
        ("InstallDependency", json!("FALSE")),
        ("Status", json!("Active")),
        ("StatusDesc", json!("")),
        ("ClsLogsetId", json!("")),
        ("ClsTopicId", json!("")),
        ("FunctionId", json!(function.id)),
        ("Tags", tags_output(&function.tags)),
        ("EipConfig", json!({"EipFixed": "FALSE", "Eips": []})),
        ("AccessInfo", json!({"Host": "", "Vip": ""})),
        ("Type", json!(function.kind.as_api())),
        ("L5Enable", json!("FALSE")),
        ("Layers", json!([])),
        // No dead-letter queue: SCF answers its members empty.
        ("DeadLetterConfig", json!({"Type": "", "Name": "", "FilterType": ""})),
        ("AddTime", json!(ctx.time(function.add_time))),
        (
            "PublicNetConfig",
            json!({"PublicNetStatus": "ENABLE", "EipConfig": {"EipStatus": "DISABLE", "EipAddress": []}}),
        ),
        ("OnsEnable", json!("FALSE")),
        ("CfsConfig", json!({"CfsInsList": []})),
        ("AvailableStatus", json!("Available")),
        ("Qualifier", json!(qualifier)),
        ("InitTimeout", json!(config.init_timeout_s)),
        ("StatusReasons", json!([])),
        ("AsyncRunEnable", json!("FALSE")),
        ("TraceEnable", json!("FALSE")),
        ("ImageConfig", Value::Null),
        ("ProtocolType", json!("")),
        ("ProtocolParams", Value::Null),
        ("InstanceConcurrencyConfig", Value::Null),
        ("DnsCache", json!("FALSE")),
        ("IntranetConfig", json!({"IpFixed": "DISABLE", "IpAddress": []})),
    ]))
}

/// The handler's entry file as text (`ShowCode`), when it is at most 1 MB.
async fn entry_source(ctx: &Ctx<'_>, function: &Function) -> String {
    let file = function.handler.rsplit_once('.').map(|(f, _)| f).unwrap_or(&function.handler).to_string();
    let Ok(Some(data)) = ctx.api.control.store().code(&function.code.sha256).await else {
        return String::new();
    };
    tokio::task::spawn_blocking(move || read_entry(data, &file)).await.unwrap_or_default()
}

fn read_entry(data: Vec<u8>, file: &str) -> String {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(data)) else {
        return String::new();
    };
    for ext in ["py", "js", "mjs", "php"] {
        let name = format!("{file}.{ext}");
        if let Ok(entry) = archive.by_name(&name)
            && entry.size() <= 1024 * 1024
        {
            let mut text = String::new();
            use std::io::Read;
            if entry.take(1024 * 1024).read_to_string(&mut text).is_ok() {
                return text;
            }
        }
    }
    String::new()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListFunctions {
    order: Option<String>,
    orderby: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
    search_key: Option<String>,
    namespace: Option<String>,
    description: Option<String>,
    filters: Option<Vec<Filter>>,
}

/// ListFunctions' filters on what a function reports, and those on settings fnlb's functions never have (a VPC,
/// a role, CLS logs, CFS, an EIP), which match none.
const FUNCTION_FILTERS: &[&str] = &[
    "Status",
    "Runtime",
    "Type",
    "PublicNetStatus",
    "AsyncRunEnable",
    "TraceEnable",
    "Stamp",
    "VpcId",
    "SubnetId",
    "ClsTopicId",
    "ClsLogsetId",
    "Role",
    "CfsId",
    "CfsMountInsId",
    "Eip",
];

/// Whether a function matches one filter (any of its values); `tag-KEY` matches the functions whose tag `KEY`
/// has one of the values.
fn function_matches(function: &Function, filter: &Filter) -> bool {
    let any = |value: &str| filter.values.iter().any(|v| v == value);
    if let Some(key) = filter.name.strip_prefix("tag-") {
        return function.tags.iter().any(|(k, v)| k == key && any(v));
    }
    match filter.name.as_str() {
        "Status" => any("Active"),
        "Runtime" => any(&function.runtime),
        "Type" => any(function.kind.as_api()),
        "PublicNetStatus" => any("ENABLE"),
        "AsyncRunEnable" | "TraceEnable" => any("FALSE"),
        _ => false,
    }
}

/// A function's tags as `Tag` objects.
fn tags_output(tags: &[(String, String)]) -> Value {
    json!(tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>())
}

pub fn list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListFunctions = parse(p)?;
    let given = filters(req.filters)?;
    if let Some(unknown) =
        given.iter().find(|f| !FUNCTION_FILTERS.contains(&f.name.as_str()) && !f.name.starts_with("tag-"))
    {
        return Err(unknown_filter(&unknown.name));
    }
    let namespace = req.namespace.unwrap_or_else(|| crate::state::DEFAULT_NAMESPACE.to_string());
    if !ctx.snapshot.state.namespace_exists(&ctx.scope, &namespace) {
        return Err(ApiError::new("ResourceNotFound.Namespace", format!("Namespace {namespace} does not exist.")));
    }
    let mut functions: Vec<&Function> = ctx
        .snapshot
        .state
        .functions
        .values()
        .filter(|f| f.key.scope == ctx.scope && f.key.namespace == namespace)
        .filter(|f| req.search_key.as_ref().is_none_or(|s| f.key.name.contains(s.as_str())))
        .filter(|f| req.description.as_ref().is_none_or(|d| f.config.description.contains(d.as_str())))
        .filter(|f| given.iter().all(|filter| function_matches(f, filter)))
        .collect();
    match req.orderby.as_deref() {
        None | Some("AddTime") => functions.sort_by_key(|f| (f.add_time, f.key.name.clone())),
        Some("ModTime") => functions.sort_by_key(|f| (f.mod_time, f.key.name.clone())),
        Some("FunctionName") => functions.sort_by(|a, b| a.key.name.cmp(&b.key.name)),
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Orderby",
                format!("Orderby must be AddTime, ModTime or FunctionName, not `{other}`."),
            ));
        }
    }
    match req.order.as_deref() {
        None | Some("DESC") => functions.reverse(),
        Some("ASC") => {}
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Order",
                format!("Order must be ASC or DESC, not `{other}`."),
            ));
        }
    }
    let total = functions.len();
    let shown: Vec<Value> = page(functions, req.offset, req.limit, 20, 1000)?
        .into_iter()
        .map(|f| {
            json!({
                "ModTime": ctx.time(f.mod_time),
                "AddTime": ctx.time(f.add_time),
                "Runtime": f.runtime,
                "FunctionName": f.key.name,
                "FunctionId": f.id,
                "Namespace": f.key.namespace,
                "Status": "Active",
                "StatusDesc": "",
                "Description": f.config.description,
                "Tags": tags_output(&f.tags),
                "Type": f.kind.as_api(),
                "StatusReasons": [],
                "TotalProvisionedConcurrencyMem": 0,
                "ReservedConcurrencyMem": f.reserved_mem.unwrap_or(0),
                "AsyncRunEnable": "FALSE",
                "TraceEnable": "FALSE",
            })
        })
        .collect();
    Ok(obj([("Functions", json!(shown)), ("TotalCount", json!(total))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateFunctionCode {
    function_name: String,
    handler: Option<String>,
    zip_file: Option<String>,
    cos_bucket_name: Option<String>,
    cos_object_name: Option<String>,
    namespace: Option<String>,
    publish: Option<String>,
    code: Option<Code>,
}

pub async fn update_code(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: UpdateFunctionCode = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    if let Some(handler) = &req.handler {
        validate::handler(handler, &ctx.snapshot.state.function(&key)?.runtime)?;
    }
    if validate::flag("Publish", req.publish.as_deref())? {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "Publishing a version with the code update is not supported yet.",
        ));
    }
    let code = match (&req.zip_file, &req.code) {
        (Some(zip), _) => zip_code(ctx, zip).await?,
        (None, Some(code)) => store_code(ctx, code).await?,
        (None, None) if req.cos_bucket_name.is_some() || req.cos_object_name.is_some() => {
            return Err(ApiError::new(
                "InvalidParameterValue.CodeSource",
                "Only inline code (ZipFile, a Base64 zip) is supported by this server; COS sources are not.",
            ));
        }
        (None, None) => return Err(ApiError::missing("ZipFile")),
    };
    let command = Command::UpdateFunctionCode { key, code, handler: req.handler, now: crate::clock::now_ms() };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateFunctionConfiguration {
    function_name: String,
    description: Option<String>,
    memory_size: Option<i64>,
    timeout: Option<i64>,
    runtime: Option<String>,
    environment: Option<Environment>,
    namespace: Option<String>,
    init_timeout: Option<i64>,
    publish: Option<String>,
}

pub async fn update_configuration(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: UpdateFunctionConfiguration = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    if validate::flag("Publish", req.publish.as_deref())? {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "Publishing a version with the update is not supported yet.",
        ));
    }
    if let Some(d) = &req.description {
        validate::description(d)?;
    }
    let patch = FunctionConfigPatch {
        description: req.description,
        memory_mb: req.memory_size.map(validate::memory).transpose()?,
        timeout_s: req.timeout.map(validate::timeout).transpose()?,
        init_timeout_s: req.init_timeout.map(validate::init_timeout).transpose()?,
        environment: req.environment.as_ref().map(validate::environment).transpose()?,
        runtime: req.runtime,
    };
    let command = Command::UpdateFunctionConfiguration { key, patch, now: crate::clock::now_ms() };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteFunction {
    function_name: String,
    namespace: Option<String>,
    qualifier: Option<String>,
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteFunction = parse(p)?;
    let key = existing(ctx, &req.function_name, req.namespace.as_deref())?;
    if let Some(q) = req.qualifier.filter(|q| q != "$LATEST") {
        if q.parse::<u32>().is_ok() {
            return match ctx.apply(Command::DeleteVersion { key, version: q.clone() }, None).await {
                Err(e) if e.code == "ResourceNotFound.FunctionVersion" => Err(ApiError::new(
                    "ResourceNotFound.Qualifier",
                    format!("Version `{q}` of function {} does not exist.", req.function_name),
                )),
                other => other.map(|_| Map::new()),
            };
        }
        return Err(ApiError::new(
            "ResourceNotFound.Qualifier",
            format!("Version `{q}` of function {} does not exist.", req.function_name),
        ));
    }
    ctx.apply(Command::DeleteFunction { key }, None).await?;
    Ok(Map::new())
}
