//! `fnlb function …`, `fnlb invoke`, `fnlb triggers`. Functions and invocations are printed as a short summary, or
//! with `--json` as the API answered.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, Connection, size};
use crate::api::Service;
use crate::api::scf::validate;
use crate::client::Client;
use crate::functions::runtimes;

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Create a function from a directory, a zip file or one source file.
    Create(CreateArgs),
    /// Replace a function's code and/or change its configuration.
    Update(UpdateArgs),
    /// List functions.
    List(ListArgs),
    /// Show one function.
    Get(NameArgs),
    /// Delete a function (its load balancer bindings go with it).
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    pub name: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

/// How a result is printed.
#[derive(Debug, Args)]
pub struct Output {
    /// Print the API's answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Memory in MB: 64, or 128 to 3072 in steps of 128.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Timeout in seconds (1 to 900).
    #[arg(long)]
    pub timeout: Option<i64>,
    #[arg(long)]
    pub description: Option<String>,
    /// An environment variable, KEY=VALUE (repeat for more).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// A directory (packed as a zip), a .zip file, or one source file (.py, .js: packed alone, at the root).
    #[arg(long)]
    pub code: PathBuf,
    #[arg(long, default_value = "Python3.9", value_parser = PossibleValuesParser::new(runtimes::supported()))]
    pub runtime: String,
    /// FILE.FUNCTION: the function in FILE.py or FILE.js that handles events.
    #[arg(long, default_value = "index.main_handler")]
    pub handler: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    /// New code: a directory, a .zip file or one source file.
    #[arg(long)]
    pub code: Option<PathBuf>,
    /// FILE.FUNCTION, with new code.
    #[arg(long)]
    pub handler: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    pub name: String,
    /// The event as JSON, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// Include the end of the invocation's log.
    #[arg(long)]
    pub log: bool,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct TriggersArgs {
    pub name: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub conn: Connection,
}

pub async fn run(command: FunctionCommand) -> Result<(), CliError> {
    match command {
        FunctionCommand::Create(a) => {
            let client = a.conn.client()?;
            let code = code_zip(&a.code, Some(&a.handler), Some(&a.runtime))?;
            let mut params = json!({
                "FunctionName": a.name,
                "Namespace": a.namespace,
                "Runtime": a.runtime,
                "Handler": a.handler,
                "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(code)},
            });
            add_config(&mut params, &a.config)?;
            client.call(Service::Scf, "CreateFunction", params).await?;
            show_function(&client, &a.name, &a.namespace, &a.output).await
        }
        FunctionCommand::Update(a) => {
            let client = a.conn.client()?;
            if a.code.is_none() && a.handler.is_some() {
                return Err(CliError::Usage("--handler changes with new code: give --code too".to_string()));
            }
            // Checked before anything changes.
            let mut config = json!({"FunctionName": a.name, "Namespace": a.namespace});
            add_config(&mut config, &a.config)?;
            if let Some(code) = &a.code {
                let zip = base64::engine::general_purpose::STANDARD.encode(code_zip(code, a.handler.as_deref(), None)?);
                let mut params = json!({"FunctionName": a.name, "Namespace": a.namespace, "ZipFile": zip});
                if let Some(handler) = &a.handler {
                    params["Handler"] = json!(handler);
                }
                client.call(Service::Scf, "UpdateFunctionCode", params).await?;
            }
            if config.as_object().is_some_and(|o| o.len() > 2) {
                client.call(Service::Scf, "UpdateFunctionConfiguration", config).await?;
            }
            show_function(&client, &a.name, &a.namespace, &a.output).await
        }
        FunctionCommand::List(a) => {
            let client = a.conn.client()?;
            let listed =
                client.call(Service::Scf, "ListFunctions", json!({"Namespace": a.namespace, "Limit": 1000})).await?;
            print(&a.output, &listed, || render_list(&listed, &a.namespace));
            Ok(())
        }
        FunctionCommand::Get(a) => {
            let client = a.conn.client()?;
            show_function(&client, &a.name, &a.namespace, &a.output).await
        }
        FunctionCommand::Delete(a) => {
            let client = a.conn.client()?;
            let params = json!({"FunctionName": a.name, "Namespace": a.namespace});
            let deleted = client.call(Service::Scf, "DeleteFunction", params).await?;
            print(&a.output, &deleted, || format!("Deleted function {}/{}.\n", a.namespace, a.name));
            Ok(())
        }
    }
}

pub async fn invoke(a: InvokeArgs) -> Result<(), CliError> {
    let client = a.conn.client()?;
    let event = match a.event.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))?,
        None => a.event,
    };
    let params = json!({
        "FunctionName": a.name,
        "Namespace": a.namespace,
        "ClientContext": event,
        "LogType": if a.log { "Tail" } else { "None" },
    });
    let invoked = client.call(Service::Scf, "Invoke", params).await?;
    print(&a.output, &invoked, || render_invocation(&invoked["Result"]));
    Ok(())
}

pub async fn triggers(a: TriggersArgs) -> Result<Value, CliError> {
    let client = a.conn.client()?;
    let listed =
        client.call(Service::Scf, "ListTriggers", json!({"FunctionName": a.name, "Namespace": a.namespace})).await?;
    let triggers: Vec<Value> = listed["Triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let desc = trigger_desc(t);
            json!({
                "Type": t["Type"],
                "TriggerName": t["TriggerName"],
                "Qualifier": t["Qualifier"],
                "AccessPath": desc["accessPath"],
                "TriggerDesc": desc,
            })
        })
        .collect();
    Ok(json!({"Triggers": triggers}))
}

/// Reads a function and prints it.
async fn show_function(client: &Client, name: &str, namespace: &str, output: &Output) -> Result<(), CliError> {
    let function =
        client.call(Service::Scf, "GetFunction", json!({"FunctionName": name, "Namespace": namespace})).await?;
    print(output, &function, || render_function(&function));
    Ok(())
}

/// Prints the API's answer as JSON with `--json`, otherwise as `summary` renders it.
fn print(output: &Output, answer: &Value, summary: impl FnOnce() -> String) {
    if output.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(answer).expect("JSON values serialise")));
    } else {
        super::emit(&summary());
    }
}

/// A trigger's `TriggerDesc`, a JSON text, as a value.
fn trigger_desc(trigger: &Value) -> Value {
    trigger["TriggerDesc"].as_str().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null)
}

/// A `GetFunction` answer as a few lines.
fn render_function(f: &Value) -> String {
    let text = |key: &str| f[key].as_str().unwrap_or_default().to_string();
    let mut out = format!("Function {}/{} ({})\n", text("Namespace"), text("FunctionName"), text("Status"));
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<12} {value}\n"));
    line("runtime", format!("{}, handler {}", text("Runtime"), text("Handler")));
    line("memory", format!("{} MB, timeout {} s", f["MemorySize"], f["Timeout"]));
    line("code", size(f["CodeSize"].as_u64().unwrap_or(0) as usize));
    if !text("Description").is_empty() {
        line("description", text("Description"));
    }
    let variables = f["Environment"]["Variables"].as_array().cloned().unwrap_or_default();
    if !variables.is_empty() {
        let pairs: Vec<String> = variables
            .iter()
            .map(|v| format!("{}={}", v["Key"].as_str().unwrap_or(""), v["Value"].as_str().unwrap_or("")))
            .collect();
        line("environment", pairs.join(" "));
    }
    for trigger in f["Triggers"].as_array().into_iter().flatten() {
        let desc = trigger_desc(trigger);
        let path = desc["accessPath"].as_str().unwrap_or_default();
        line("trigger", format!("{} {path}", trigger["Type"].as_str().unwrap_or("")));
    }
    line("modified", text("ModTime"));
    out
}

/// A `ListFunctions` answer as a table.
fn render_list(listed: &Value, namespace: &str) -> String {
    let functions = listed["Functions"].as_array().cloned().unwrap_or_default();
    if functions.is_empty() {
        return format!("No functions in namespace {namespace}.\n");
    }
    let text = |f: &Value, key: &str| f[key].as_str().unwrap_or_default().to_string();
    let width = functions.iter().map(|f| text(f, "FunctionName").chars().count()).max().unwrap_or(0).max(4);
    let mut out = format!("{:<width$}  {:<12} {:<8} {:<19}  DESCRIPTION\n", "NAME", "RUNTIME", "STATUS", "MODIFIED");
    for f in &functions {
        out.push_str(&format!(
            "{:<width$}  {:<12} {:<8} {:<19}  {}\n",
            text(f, "FunctionName"),
            text(f, "Runtime"),
            text(f, "Status"),
            text(f, "ModTime"),
            text(f, "Description"),
        ));
    }
    out
}

/// An `Invoke` answer's `Result`: how it went, the return value (or the error) and the log, as lines.
fn render_invocation(result: &Value) -> String {
    let succeeded = result["InvokeResult"] == 0;
    let mut out = format!(
        "{} in {} ms (billed {} ms), memory {}, request {}\n",
        if succeeded { "Succeeded" } else { "Failed" },
        result["Duration"],
        result["BillDuration"],
        size(result["MemUsage"].as_u64().unwrap_or(0) as usize),
        result["FunctionRequestId"].as_str().unwrap_or(""),
    );
    let returned = result["RetMsg"].as_str().unwrap_or_default();
    // The return value is JSON: shown indented; anything else as it is.
    let returned = serde_json::from_str::<Value>(returned)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| returned.to_string());
    out.push_str(if succeeded { "Returned:\n" } else { "Error:\n" });
    out.push_str(&returned);
    out.push('\n');
    if let Some(log) = result["Log"].as_str().filter(|l| !l.is_empty()) {
        out.push_str("Log:\n");
        out.push_str(log);
        if !log.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Adds the configuration given to an action's parameters; what the API would refuse is refused here.
fn add_config(params: &mut Value, config: &ConfigArgs) -> Result<(), CliError> {
    if let Some(m) = config.memory {
        if !validate::memory_allowed(m) {
            return Err(CliError::Usage(format!("--memory {m}: a memory size is {}", validate::MEMORY_SIZES)));
        }
        params["MemorySize"] = json!(m);
    }
    if let Some(t) = config.timeout {
        if !validate::TIMEOUT_SECONDS.contains(&t) {
            let (least, most) = (validate::TIMEOUT_SECONDS.start(), validate::TIMEOUT_SECONDS.end());
            return Err(CliError::Usage(format!("--timeout {t}: a timeout is {least} to {most} seconds")));
        }
        params["Timeout"] = json!(t);
    }
    if let Some(d) = &config.description {
        params["Description"] = json!(d);
    }
    if !config.env.is_empty() {
        let mut vars = Vec::new();
        for pair in &config.env {
            let (k, v) =
                pair.split_once('=').ok_or_else(|| CliError::Usage(format!("--env {pair}: expected KEY=VALUE")))?;
            vars.push(json!({"Key": k, "Value": v}));
        }
        params["Environment"] = json!({"Variables": vars});
    }
    Ok(())
}

/// Source files `--code` packs alone, and the runtimes that run them.
const SOURCE_FILES: &[(&str, &[&str])] = &[
    ("py", runtimes::PYTHON_RUNTIMES),
    ("js", runtimes::NODE_RUNTIMES),
    ("mjs", runtimes::NODE_RUNTIMES),
    ("cjs", runtimes::NODE_RUNTIMES),
];

/// The code `--code` names as a zip: a directory packed, a zip as it is, or one source file packed alone at the
/// root under its own name. A source file must be the one the handler names, in the runtime's language, when they
/// are known.
fn code_zip(path: &Path, handler: Option<&str>, runtime: Option<&str>) -> Result<Vec<u8>, CliError> {
    let shown = path.display();
    if path.is_dir() {
        eprintln!("Packing {shown} …");
        return crate::functions::zip_dir(path).map_err(|e| CliError::Usage(format!("cannot pack {shown}: {e}")));
    }
    let data = std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {shown}: {e}")))?;
    if is_zip(&data) {
        return Ok(data);
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let Some((_, languages)) = SOURCE_FILES.iter().find(|(ext, _)| *ext == extension) else {
        return Err(CliError::Usage(format!(
            "--code {shown} is neither a zip nor a source file (.py, .js): give a directory or a .zip"
        )));
    };
    if let Some(runtime) = runtime.filter(|r| !languages.contains(r)) {
        return Err(CliError::Usage(format!("--code {shown}: runtime {runtime} does not run .{extension} files")));
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if let Some(handler) = handler
        && handler.split_once('.').is_none_or(|(module, _)| module != stem)
    {
        return Err(CliError::Usage(format!(
            "--code {shown}: the handler {handler} is not in {file_name}; give --handler {stem}.FUNCTION"
        )));
    }
    Ok(crate::functions::zip_files(&[(file_name, &data)]))
}

/// Whether data starts as a zip archive does (a local file header, or the end record of an empty archive).
fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

#[cfg(test)]
mod tests;
