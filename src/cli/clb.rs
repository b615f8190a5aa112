//! `fnlb clb …`: load balancers, listeners, rules, function bindings.

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, Connection, LISTENER_PROTOCOLS};
use crate::api::Service;

#[derive(Debug, Subcommand)]
pub enum ClbCommand {
    /// Create a load balancer instance.
    CreateLb(CreateLbArgs),
    /// List load balancer instances.
    ListLb(ConnArgs),
    /// Delete a load balancer instance with its listeners and rules.
    DeleteLb(LbArgs),
    /// Create a listener on a load balancer.
    CreateListener(CreateListenerArgs),
    /// List a load balancer's listeners with their rules.
    ListListeners(LbArgs),
    /// Create a forwarding rule (domain + URL) on an HTTP or HTTPS listener.
    CreateRule(CreateRuleArgs),
    /// Bind a function to a rule (the CLB trigger).
    Bind(BindArgs),
    /// Unbind a function from a rule.
    Unbind(BindArgs),
    /// Show a load balancer's targets, rule by rule.
    Targets(LbArgs),
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct LbArgs {
    pub load_balancer_id: String,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct CreateLbArgs {
    #[arg(long)]
    pub name: Option<String>,
    /// The VIP: an address of this host (default: the first free one from 127.0.0.1).
    #[arg(long)]
    pub vip: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct CreateListenerArgs {
    pub load_balancer_id: String,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value = "HTTP", value_parser = PossibleValuesParser::new(LISTENER_PROTOCOLS.iter().copied()))]
    pub protocol: String,
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct CreateRuleArgs {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[arg(long)]
    pub url: String,
    /// The domain (default: the listener's default domain, or the VIP for the first rule).
    #[arg(long)]
    pub domain: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct BindArgs {
    pub load_balancer_id: String,
    pub listener_id: String,
    /// The rule, by id …
    #[arg(long, conflicts_with_all = ["url", "domain"])]
    pub location_id: Option<String>,
    /// … or by URL (and domain).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub domain: Option<String>,
    #[arg(long)]
    pub function: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = "$LATEST")]
    pub qualifier: String,
    #[command(flatten)]
    pub conn: Connection,
}

pub async fn run(command: ClbCommand) -> Result<Value, CliError> {
    let call = |conn: &Connection, action: &'static str, params: Value| {
        let client = conn.client();
        async move { Ok::<_, CliError>(client?.call(Service::Clb, action, params).await?) }
    };
    match command {
        ClbCommand::CreateLb(a) => {
            let mut params = json!({"LoadBalancerType": "OPEN"});
            if let Some(name) = a.name {
                params["LoadBalancerName"] = json!(name);
            }
            if let Some(vip) = a.vip {
                params["Vip"] = json!(vip);
            }
            call(&a.conn, "CreateLoadBalancer", params).await
        }
        ClbCommand::ListLb(a) => call(&a.conn, "DescribeLoadBalancers", json!({"Limit": 100})).await,
        ClbCommand::DeleteLb(a) => {
            call(&a.conn, "DeleteLoadBalancer", json!({"LoadBalancerIds": [a.load_balancer_id]})).await
        }
        ClbCommand::CreateListener(a) => {
            let mut params = json!({"LoadBalancerId": a.load_balancer_id, "Ports": [a.port], "Protocol": a.protocol});
            if let Some(name) = a.name {
                params["ListenerNames"] = json!([name]);
            }
            call(&a.conn, "CreateListener", params).await
        }
        ClbCommand::ListListeners(a) => {
            call(&a.conn, "DescribeListeners", json!({"LoadBalancerId": a.load_balancer_id})).await
        }
        ClbCommand::CreateRule(a) => {
            let mut rule = json!({"Url": a.url});
            if let Some(domain) = a.domain {
                rule["Domain"] = json!(domain);
            }
            let params = json!({"LoadBalancerId": a.load_balancer_id, "ListenerId": a.listener_id, "Rules": [rule]});
            call(&a.conn, "CreateRule", params).await
        }
        ClbCommand::Bind(a) => call(&a.conn, "RegisterFunctionTargets", bind_params(&a)?).await,
        ClbCommand::Unbind(a) => call(&a.conn, "DeregisterFunctionTargets", bind_params(&a)?).await,
        ClbCommand::Targets(a) => call(&a.conn, "DescribeTargets", json!({"LoadBalancerId": a.load_balancer_id})).await,
    }
}

fn bind_params(a: &BindArgs) -> Result<Value, CliError> {
    let mut params = json!({
        "LoadBalancerId": a.load_balancer_id,
        "ListenerId": a.listener_id,
        "FunctionTargets": [{
            "Function": {"FunctionNamespace": a.namespace, "FunctionName": a.function, "FunctionQualifier": a.qualifier},
            "Weight": 10,
        }],
    });
    match (&a.location_id, &a.url) {
        (Some(id), _) => params["LocationId"] = json!(id),
        (None, Some(url)) => {
            params["Url"] = json!(url);
            if let Some(domain) = &a.domain {
                params["Domain"] = json!(domain);
            }
        }
        (None, None) => {
            return Err(CliError::Usage("name the rule with --location-id, or --url (and --domain)".to_string()));
        }
    }
    Ok(params)
}
