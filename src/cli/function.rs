//! `fnlb function …`, `fnlb invoke`, `fnlb triggers`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, Connection};
use crate::api::Service;

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Create a function from a directory or a zip file.
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
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub conn: Connection,
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
    /// A directory (packed as a zip) or a .zip file.
    #[arg(long)]
    pub code: PathBuf,
    #[arg(long, default_value = "Python3.9")]
    pub runtime: String,
    #[arg(long, default_value = "index.main_handler")]
    pub handler: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    /// New code: a directory or a .zip file.
    #[arg(long)]
    pub code: Option<PathBuf>,
    #[arg(long)]
    pub handler: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub config: ConfigArgs,
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

pub async fn run(command: FunctionCommand) -> Result<Value, CliError> {
    match command {
        FunctionCommand::Create(a) => {
            let client = a.conn.client()?;
            let mut params = json!({
                "FunctionName": a.name,
                "Namespace": a.namespace,
                "Runtime": a.runtime,
                "Handler": a.handler,
                "Code": {"ZipFile": zip_base64(&a.code)?},
            });
            add_config(&mut params, &a.config)?;
            client.call(Service::Scf, "CreateFunction", params).await?;
            Ok(client
                .call(Service::Scf, "GetFunction", json!({"FunctionName": a.name, "Namespace": a.namespace}))
                .await?)
        }
        FunctionCommand::Update(a) => {
            let client = a.conn.client()?;
            if a.code.is_none() && a.handler.is_some() {
                return Err(CliError::Usage("--handler changes with new code: give --code too".to_string()));
            }
            if let Some(code) = &a.code {
                let mut params =
                    json!({"FunctionName": a.name, "Namespace": a.namespace, "ZipFile": zip_base64(code)?});
                if let Some(handler) = &a.handler {
                    params["Handler"] = json!(handler);
                }
                client.call(Service::Scf, "UpdateFunctionCode", params).await?;
            }
            let mut params = json!({"FunctionName": a.name, "Namespace": a.namespace});
            add_config(&mut params, &a.config)?;
            if params.as_object().is_some_and(|o| o.len() > 2) {
                client.call(Service::Scf, "UpdateFunctionConfiguration", params).await?;
            }
            Ok(client
                .call(Service::Scf, "GetFunction", json!({"FunctionName": a.name, "Namespace": a.namespace}))
                .await?)
        }
        FunctionCommand::List(a) => {
            let client = a.conn.client()?;
            Ok(client.call(Service::Scf, "ListFunctions", json!({"Namespace": a.namespace, "Limit": 1000})).await?)
        }
        FunctionCommand::Get(a) => {
            let client = a.conn.client()?;
            Ok(client
                .call(Service::Scf, "GetFunction", json!({"FunctionName": a.name, "Namespace": a.namespace}))
                .await?)
        }
        FunctionCommand::Delete(a) => {
            let client = a.conn.client()?;
            Ok(client
                .call(Service::Scf, "DeleteFunction", json!({"FunctionName": a.name, "Namespace": a.namespace}))
                .await?)
        }
    }
}

pub async fn invoke(a: InvokeArgs) -> Result<Value, CliError> {
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
    Ok(client.call(Service::Scf, "Invoke", params).await?)
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
            let desc: Value =
                t["TriggerDesc"].as_str().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
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

fn add_config(params: &mut Value, config: &ConfigArgs) -> Result<(), CliError> {
    if let Some(m) = config.memory {
        params["MemorySize"] = json!(m);
    }
    if let Some(t) = config.timeout {
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

/// A directory is packed as a zip; a file is sent as it is (it must be a zip).
fn zip_base64(path: &Path) -> Result<String, CliError> {
    let data = if path.is_dir() {
        eprintln!("Packing {} …", path.display());
        crate::functions::zip_dir(path).map_err(|e| CliError::Usage(format!("cannot pack {}: {e}", path.display())))?
    } else {
        std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(data))
}
