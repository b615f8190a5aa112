//! `fnlb status` (the running node at a glance, from the admin listener's `/status`) and `fnlb logs` (a function's
//! invocation logs through GetFunctionLogs, optionally followed).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{CliError, Connection};
use crate::api::Service;
use crate::client::Client;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin listener of the node, a URL or an address [default: where `serve` listens by FNLB_ADMIN_ADDR,
    /// else http://127.0.0.1:9001].
    #[arg(long, env = "FNLB_ADMIN_URL")]
    pub admin: Option<String>,
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
    /// Keep printing new invocations as they end, each once (until interrupted).
    #[arg(long)]
    pub follow: bool,
    /// Invocations shown at first, the newest (0: all the node keeps).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub conn: Connection,
}

/// One invocation as GetFunctionLogs reports it.
struct Entry {
    request_id: String,
    /// When it started, in seconds on the node's clock; `None` when that cannot be read.
    start: Option<i64>,
    value: Value,
}

/// What `--follow` has shown: the request ids of the invocations that started within the look-back window before
/// the newest start seen, so that each invocation is shown once however often it is read.
#[derive(Debug, Default)]
struct Shown {
    /// Request ids and their starts.
    ids: HashMap<String, i64>,
    newest: Option<i64>,
}

/// The variable `serve` takes its admin listener's address from.
const ADMIN_ADDR_VAR: &str = "FNLB_ADMIN_ADDR";

/// How long `fnlb status` waits for the node.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `fnlb logs --follow` asks for new invocations.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How far `--follow` looks back before the newest start it has seen, besides the function's timeout, in
/// seconds: an invocation is logged when it ends, after it may have waited for an instance; start times are
/// given to the second; in a cluster a record reaches the database a moment after the invocation ends.
const LOOK_BACK_MARGIN: i64 = 15;
/// Invocations one GetFunctionLogs call asks for.
const LOGS_PAGE: usize = 100;
/// The longest timeout a function may have, in seconds (when GetFunction does not say).
const MAX_FUNCTION_TIMEOUT: i64 = 900;

pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let url = format!("{}/status", admin_url(args.admin.as_deref())?.trim_end_matches('/'));
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
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&status).expect("JSON values serialise")));
    } else {
        super::emit(&render(&status));
    }
    Ok(())
}

/// The admin listener's URL: `--admin` (`FNLB_ADMIN_URL`: a URL, or an address), else where `serve` listens with
/// the same environment (`FNLB_ADMIN_ADDR`).
fn admin_url(admin: Option<&str>) -> Result<String, CliError> {
    let (given, source) = match admin.filter(|a| !a.is_empty()) {
        Some(admin) if admin.contains("://") => return Ok(admin.to_string()),
        Some(admin) => (admin.to_string(), "--admin (FNLB_ADMIN_URL)"),
        None => match std::env::var(ADMIN_ADDR_VAR).ok().filter(|a| !a.is_empty()) {
            Some(addr) => (addr, ADMIN_ADDR_VAR),
            None => (crate::admin::DEFAULT_ADMIN_ADDR.to_string(), "the default"),
        },
    };
    super::local_url("http", &given).map_err(|reason| CliError::Usage(format!("{source}: {reason}")))
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
        "FunctionName": args.function, "Namespace": args.namespace, "Order": "desc", "OrderBy": "start_time",
    });
    if let Some(id) = &args.request_id {
        params["FunctionRequestId"] = json!(id);
    }
    let mut look_back = if args.follow { look_back_seconds(&client, &args).await? } else { 0 };
    // At first the newest `--limit`; when following, also every invocation within the look-back window, so that
    // none of those counts as new later.
    let limit = args.limit;
    let read = read_back(&client, &params, |read| {
        let counted = limit > 0 && read.len() >= limit;
        let window = read.iter().filter_map(|e| e.start).max().map(|newest| newest - look_back);
        counted && (!args.follow || reached(read, window))
    })
    .await?;
    let first = if limit > 0 { &read[..limit.min(read.len())] } else { &read[..] };
    if print_entries(first.iter().rev()).is_err() {
        return Ok(()); // the reader has gone
    }
    if !args.follow {
        return Ok(());
    }
    let mut shown = Shown::default();
    shown.remember(&read, look_back);
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        look_back = look_back_seconds(&client, &args).await?;
        let horizon = shown.horizon(look_back);
        let read = read_back(&client, &params, |read| reached(read, horizon)).await?;
        if print_entries(shown.fresh(read, look_back).iter()).is_err() {
            return Ok(());
        }
    }
}

// === impl Entry ===

impl Entry {
    fn new(value: Value) -> Entry {
        let request_id = value["RequestId"].as_str().unwrap_or_default().to_string();
        let start = value["StartTime"].as_str().and_then(start_seconds);
        Entry { request_id, start, value }
    }
}

// === impl Shown ===

impl Shown {
    /// The earliest start an invocation not seen yet can have: one that started before it ended before the
    /// previous read (`None`: any start, nothing has been seen).
    fn horizon(&self, look_back: i64) -> Option<i64> {
        self.newest.map(|newest| newest - look_back)
    }

    /// Of the invocations read (newest first), those not shown yet, oldest first; they count as shown from now on.
    /// Those that started before the horizon were there at an earlier read: shown then, or older than what was
    /// asked for.
    fn fresh(&mut self, read: Vec<Entry>, look_back: i64) -> Vec<Entry> {
        let horizon = self.horizon(look_back);
        let mut fresh: Vec<Entry> = read
            .into_iter()
            .filter(|e| !self.ids.contains_key(&e.request_id))
            .filter(|e| e.start.zip(horizon).is_none_or(|(start, horizon)| start >= horizon))
            .collect();
        fresh.reverse();
        self.remember(&fresh, look_back);
        fresh
    }

    /// Counts invocations as shown; forgets those that started before the window.
    fn remember(&mut self, entries: &[Entry], look_back: i64) {
        self.newest = entries.iter().filter_map(|e| e.start).chain(self.newest).max();
        for e in entries {
            self.ids.insert(e.request_id.clone(), e.start.or(self.newest).unwrap_or(0));
        }
        if let Some(horizon) = self.horizon(look_back) {
            self.ids.retain(|_, start| *start >= horizon);
        }
    }
}

/// How far `--follow` looks back, in seconds: the function's timeout and the margin.
async fn look_back_seconds(client: &Client, args: &LogsArgs) -> Result<i64, CliError> {
    let params = json!({"FunctionName": args.function, "Namespace": args.namespace});
    let function = client.call(Service::Scf, "GetFunction", params).await?;
    Ok(function["Timeout"].as_i64().unwrap_or(MAX_FUNCTION_TIMEOUT) + LOOK_BACK_MARGIN)
}

/// Reads invocations newest first, a page at a time, until `enough` says what was read is enough or none are
/// left. An invocation read twice (a page moved on by invocations that ended meanwhile) is kept once.
async fn read_back(
    client: &Client,
    params: &Value,
    mut enough: impl FnMut(&[Entry]) -> bool,
) -> Result<Vec<Entry>, CliError> {
    let mut read = Vec::new();
    let mut ids = HashSet::new();
    let mut offset = 0;
    loop {
        let mut params = params.clone();
        params["Offset"] = json!(offset);
        params["Limit"] = json!(LOGS_PAGE);
        let mut page = client.call(Service::Scf, "GetFunctionLogs", params).await?;
        let data = match page["Data"].take() {
            Value::Array(data) => data,
            _ => Vec::new(),
        };
        let got = data.len();
        offset += got;
        for entry in data.into_iter().map(Entry::new) {
            if ids.insert(entry.request_id.clone()) {
                read.push(entry);
            }
        }
        if got < LOGS_PAGE || enough(&read) {
            return Ok(read);
        }
    }
}

/// Whether invocations read newest first reach back before `since` (`None`: they never do).
fn reached(read: &[Entry], since: Option<i64>) -> bool {
    matches!((read.last().and_then(|e| e.start), since), (Some(start), Some(since)) if start < since)
}

/// A `StartTime` (`YYYY-MM-DD HH:MM:SS` in the node's zone) as seconds: comparable with the node's other start
/// times, and differences are durations.
fn start_seconds(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(text, &format).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// Prints invocations; an error when stdout is closed.
fn print_entries<'a>(entries: impl Iterator<Item = &'a Entry>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for entry in entries {
        let e = &entry.value;
        // In a cluster, the node that ran the invocation.
        let node = e["Source"].as_str().filter(|n| !n.is_empty()).map(|n| format!(" on {n}")).unwrap_or_default();
        writeln!(
            out,
            "== {} {} code {} {} ms{node}",
            e["StartTime"].as_str().unwrap_or(""),
            entry.request_id,
            e["RetCode"],
            e["Duration"],
        )?;
        out.write_all(e["Log"].as_str().unwrap_or("").as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests;
