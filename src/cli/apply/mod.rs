//! `fnlb apply -f stack.yaml`: makes the functions and load balancers a stack file describes exist, through the
//! API, changing only what differs. The plan (what will be added `+`, changed `~` and removed `-`) is printed
//! first; `--dry-run` stops there. `--prune` also removes what the file no longer names: listeners, rules,
//! targets, bindings, fallbacks and redirects of the load balancers it names, and the load balancers and functions
//! tagged with the stack's name that it no longer names.

mod observe;
mod plan;
pub mod stack;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::{CliError, Connection};
use crate::api::Service;
use crate::client::{Client, ClientError};
use crate::snapshot::router::{DomainPattern, UrlPattern, parse_domain, parse_url};
use plan::{Plan, Step};
use stack::{FunctionRef, RuleSpec, Stack};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The stack file (YAML; docs/apply.md).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also remove what the file no longer names.
    #[arg(long)]
    pub prune: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// A failure while applying: where in the file, and what the API said.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error("{file}: {place}: {reason}")]
    Step { file: String, place: String, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

pub async fn run(args: ApplyArgs) -> Result<(), CliError> {
    let stack = Stack::load(&args.file).map_err(ApplyError::from)?;
    let client = args.conn.client()?;
    let file = args.file.display().to_string();
    let api = Api { client: &client, file: &file };
    let observed = observe::observe(&api, &stack).await?;
    let plan = Plan::make(&stack, &observed, args.prune).map_err(|(place, reason)| ApplyError::Step {
        file: file.clone(),
        place,
        reason,
    })?;
    super::emit(&plan.render(&stack.name, &file));
    if args.dry_run {
        return Ok(());
    }
    let mut ids = plan.ids.clone();
    if !plan.steps.is_empty() {
        let started = Instant::now();
        for step in &plan.steps {
            let began = Instant::now();
            step.run(&api, &stack, &plan, &mut ids).await?;
            super::emit(&format!("  done: {} {} ({} ms)\n", step.sign, step.text, began.elapsed().as_millis()));
        }
        let count = plan.steps.len();
        let changes = if count == 1 { "change" } else { "changes" };
        super::emit(&format!("Applied {count} {changes} in {:.1} s.\n", started.elapsed().as_secs_f64()));
    }
    let vips = vips(&api, &ids).await?;
    super::emit(&access_paths(&stack, &vips));
    Ok(())
}

/// The VIPs of the stack's load balancers, by position in the file.
async fn vips(api: &Api<'_>, ids: &plan::Ids) -> Result<HashMap<usize, String>, ApplyError> {
    let mut vips = HashMap::new();
    let wanted: Vec<&String> = ids.lbs.values().collect();
    // DescribeLoadBalancers takes 20 ids at most.
    for some in wanted.chunks(20) {
        let params = json!({"LoadBalancerIds": some, "Limit": some.len()});
        let described = api.call(Service::Clb, "DescribeLoadBalancers", params, "loadBalancers").await?;
        for lb in described["LoadBalancerSet"].as_array().into_iter().flatten() {
            let (Some(id), Some(vip)) = (lb["LoadBalancerId"].as_str(), lb["LoadBalancerVips"][0].as_str()) else {
                continue;
            };
            if let Some((i, _)) = ids.lbs.iter().find(|(_, known)| known.as_str() == id) {
                vips.insert(*i, vip.to_string());
            }
        }
    }
    Ok(vips)
}

/// Where each rule of the stack is reached (`http://VIP:PORT/url`, with the Host it needs), and what answers
/// there.
fn access_paths(stack: &Stack, vips: &HashMap<usize, String>) -> String {
    let mut lines = Vec::new();
    for (i, lb) in stack.load_balancers.iter().enumerate() {
        let vip = vips.get(&i).map_or("VIP", String::as_str);
        for listener in &lb.listeners {
            for rule in &listener.rules {
                let path = access_path(&listener.protocol, vip, listener.port, &rule.domain, &rule.url);
                lines.push(format!("  {path} → {}\n", serves(rule)));
            }
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    format!("Access paths:\n{}", lines.concat())
}

/// The URL a client opens to reach a rule: the VIP and the port, the rule's URL (`/` for a regular expression),
/// and in parentheses the Host the request needs when the rule's domain is not the VIP.
fn access_path(protocol: &str, vip: &str, port: u16, domain: &str, url: &str) -> String {
    let scheme = if protocol == "HTTPS" { "https" } else { "http" };
    let host = if vip.contains(':') { format!("[{vip}]") } else { vip.to_string() };
    let mut notes = Vec::new();
    let path = match parse_url(url) {
        UrlPattern::Exact(path) | UrlPattern::Prefix(path) | UrlPattern::PrefixNoRegex(path) => path.to_string(),
        UrlPattern::Regex(_) | UrlPattern::RegexCaseless(_) => {
            notes.push(format!("URL matching {url}"));
            "/".to_string()
        }
    };
    if !domain.eq_ignore_ascii_case(vip) {
        notes.push(match parse_domain(domain) {
            DomainPattern::Exact(name) => format!("Host: {name}"),
            _ => format!("Host matching {domain}"),
        });
    }
    let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    format!("{scheme}://{host}:{port}{path}{notes}")
}

/// What answers at a rule.
fn serves(rule: &RuleSpec) -> String {
    let function = |f: &FunctionRef| {
        let (namespace, name, qualifier) = f.parts();
        format!("function {namespace}/{name}:{qualifier}")
    };
    if let Some(f) = &rule.function {
        return function(f);
    }
    if let Some(redirect) = &rule.redirect {
        return format!("redirect to {} {}", redirect.protocol, redirect.port);
    }
    let mut answers: Vec<String> = rule.targets.iter().map(|t| format!("{}:{}", t.ip, t.port)).collect();
    if let Some(f) = &rule.fallback {
        answers.push(format!("fallback {}", function(f)));
    }
    if answers.is_empty() { "nothing yet".to_string() } else { answers.join(", ") }
}

/// The API as the steps use it: failures name the file and the place in it.
pub struct Api<'a> {
    client: &'a Client,
    file: &'a str,
}

impl Api<'_> {
    /// Calls an action; an API error is reported at `place`.
    async fn call(&self, service: Service, action: &str, params: Value, place: &str) -> Result<Value, ApplyError> {
        self.client.call(service, action, params).await.map_err(|e| match e {
            ClientError::Api { code, message, .. } => ApplyError::Step {
                file: self.file.to_string(),
                place: place.to_string(),
                reason: format!("{action} failed: {code}: {message}"),
            },
            other => ApplyError::Client(other),
        })
    }

    /// Calls a read action; `None` when the resource does not exist (`ResourceNotFound…`).
    async fn find(&self, service: Service, action: &str, params: Value) -> Result<Option<Value>, ApplyError> {
        match self.client.call(service, action, params).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { code, .. }) if code.starts_with("ResourceNotFound") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl From<ApplyError> for CliError {
    fn from(e: ApplyError) -> CliError {
        match e {
            ApplyError::Client(e) => CliError::Client(e),
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl Step {
    async fn run(&self, api: &Api<'_>, stack: &Stack, plan: &Plan, ids: &mut plan::Ids) -> Result<(), ApplyError> {
        let (service, action, params) = self.action.request(stack, plan, ids);
        if let Some(code) = self.action.upload(plan) {
            eprintln!("  uploading the code of {} ({})…", self.text, super::size(code.len()));
        }
        let answer = api.call(service, action, params, &self.place).await?;
        self.action.record(&answer, ids);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
