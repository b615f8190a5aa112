//! `fnlb apply -f stack.yaml`: makes the functions and load balancers a stack file describes exist, through the
//! API, changing only what differs. The plan (what will be added `+`, changed `~` and removed `-`) is printed
//! first; `--dry-run` stops there. `--prune` also removes what the file no longer names: listeners, rules,
//! targets, bindings, fallbacks and redirects of the load balancers it names, and the load balancers and functions
//! tagged with the stack's name that it no longer names.

mod observe;
mod plan;
pub mod stack;

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::Value;

use super::{CliError, Connection};
use crate::api::Service;
use crate::client::{Client, ClientError};
use plan::{Plan, Step};
use stack::Stack;

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
    print!("{}", plan.render(&stack.name, &file));
    if args.dry_run || plan.steps.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut ids = plan.ids.clone();
    for step in &plan.steps {
        let began = Instant::now();
        step.run(&api, &stack, &plan, &mut ids).await?;
        println!("  done: {} {} ({} ms)", step.sign, step.text, began.elapsed().as_millis());
    }
    println!("Applied {} changes in {:.1} s.", plan.steps.len(), started.elapsed().as_secs_f64());
    Ok(())
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
