//! `fnlb status` (the running node at a glance, from the admin listener's `/status`) and `fnlb logs` (a function's
//! invocation logs through GetFunctionLogs, optionally followed).

use std::time::Duration;

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{CliError, Connection};
use crate::api::Service;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin listener of the node.
    #[arg(long, env = "FNLB_ADMIN_URL", default_value = "http://127.0.0.1:9001")]
    pub admin: String,
    /// Print the status as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub function: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Only this invocation.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Keep printing new invocations as they end (until interrupted).
    #[arg(long)]
    pub follow: bool,
    /// Invocations shown at first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub conn: Connection,
}

/// How long `fnlb status` waits for the node.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `fnlb logs --follow` asks for new invocations.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let url = format!("{}/status", args.admin.trim_end_matches('/'));
    let unreachable = |reason: String| CliError::Usage(format!("cannot read {url}: {reason}"));
    let uri: http::Uri = url.parse().map_err(|_| unreachable("not a URL".into()))?;
    let client: HttpClient<_, Empty<bytes::Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(STATUS_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let body = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    let status: Value = serde_json::from_slice(&body).map_err(|e| unreachable(e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).expect("JSON values serialise"));
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// The store: where the state is kept, the version served, and in a cluster its nodes.
fn render_store(store: &Value) -> String {
    let version = &store["stateVersion"];
    if store["kind"] != "postgres" {
        return format!("store: sqlite · state version {version}\n\n");
    }
    let mut out = format!(
        "store: postgres · node {} · state version {version} (lag {}) · {}\nNODES\n",
        store["node"].as_str().unwrap_or("?"),
        store["lag"],
        if store["up"] == true { "reachable" } else { "UNREACHABLE: serving the last state" },
    );
    let now = crate::clock::now_ms();
    for n in store["nodes"].as_array().into_iter().flatten() {
        let age = (now - n["heartbeatMs"].as_i64().unwrap_or(0)).max(0) as f64 / 1000.0;
        out.push_str(&format!(
            "  {:<24} state version {:<8} heartbeat {age:.1} s ago  {}\n",
            n["node"].as_str().unwrap_or(""),
            n["stateVersion"],
            if n["live"] == true { "live" } else { "gone" },
        ));
    }
    out.push('\n');
    out
}

/// The status as one screen of text.
fn render(s: &Value) -> String {
    let uptime = s["uptimeSeconds"].as_u64().unwrap_or(0);
    let mut out = format!(
        "fnlb {} · up {}h {:02}m {:02}s · {}\ndata: {}\n{} load balancers, {} functions\n\n",
        s["version"].as_str().unwrap_or("?"),
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60,
        if s["ready"] == true { "ready" } else { "starting" },
        s["dataDir"].as_str().unwrap_or("?"),
        s["loadBalancers"],
        s["functionsDeployed"],
    );
    out.push_str(&render_store(&s["store"]));
    out.push_str("LISTENERS\n");
    let listeners = s["listeners"].as_array().cloned().unwrap_or_default();
    if listeners.is_empty() {
        out.push_str("  (none)\n");
    }
    for l in &listeners {
        out.push_str(&format!(
            "  {:<24} {:<8} {} ({}) {}{}\n",
            l["address"].as_str().unwrap_or(""),
            l["protocol"].as_str().unwrap_or(""),
            l["loadBalancer"].as_str().unwrap_or(""),
            l["name"].as_str().unwrap_or(""),
            l["listener"].as_str().unwrap_or(""),
            if l["serving"] == true { "" } else { " (not served)" },
        ));
    }
    out.push_str("\nFUNCTIONS (instances busy/idle, callers waiting, last 5 minutes)\n");
    let functions = s["functions"].as_array().cloned().unwrap_or_default();
    if functions.is_empty() {
        out.push_str("  (none has run since start)\n");
    }
    for f in &functions {
        out.push_str(&format!(
            "  {:<32} {}/{} busy/idle  {} waiting  {} invocations  {} errors ({:.0}%)\n",
            format!("{}/{}", f["namespace"].as_str().unwrap_or(""), f["name"].as_str().unwrap_or("")),
            f["busy"],
            f["idle"],
            f["waiting"],
            f["invocations5m"],
            f["errors5m"],
            f["errorRate5m"].as_f64().unwrap_or(0.0) * 100.0,
        ));
    }
    out
}

pub async fn logs(args: LogsArgs) -> Result<(), CliError> {
    let client = args.conn.client()?;
    let mut params = json!({
        "FunctionName": args.function, "Namespace": args.namespace, "Limit": args.limit,
        "Order": "desc", "OrderBy": "start_time",
    });
    if let Some(id) = &args.request_id {
        params["FunctionRequestId"] = json!(id);
    }
    let first = client.call(Service::Scf, "GetFunctionLogs", params.clone()).await?;
    let mut shown: Vec<String> = Vec::new();
    let mut data = first["Data"].as_array().cloned().unwrap_or_default();
    data.reverse();
    for entry in &data {
        print_entry(entry);
        shown.push(entry["RequestId"].as_str().unwrap_or_default().to_string());
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let page = client.call(Service::Scf, "GetFunctionLogs", params.clone()).await?;
        let mut data = page["Data"].as_array().cloned().unwrap_or_default();
        data.reverse();
        for entry in data {
            let id = entry["RequestId"].as_str().unwrap_or_default().to_string();
            if !shown.contains(&id) {
                print_entry(&entry);
                shown.push(id);
            }
        }
        // Remembering the ids of one page back is enough: older ones never come again.
        let keep = (args.limit as usize) * 2;
        if shown.len() > keep {
            shown.drain(..shown.len() - keep);
        }
    }
}

fn print_entry(entry: &Value) {
    // In a cluster, the node that ran the invocation.
    let node = entry["Source"].as_str().filter(|n| !n.is_empty()).map(|n| format!(" on {n}")).unwrap_or_default();
    println!(
        "== {} {} code {} {} ms{node}",
        entry["StartTime"].as_str().unwrap_or(""),
        entry["RequestId"].as_str().unwrap_or(""),
        entry["RetCode"],
        entry["Duration"],
    );
    print!("{}", entry["Log"].as_str().unwrap_or(""));
}
