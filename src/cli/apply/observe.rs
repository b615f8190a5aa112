//! What exists now, read through the API: the stack's functions, the account's load balancers, and the
//! listeners, rules, targets, bindings, fallbacks and redirects of the load balancers the stack names.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::stack::{STACK_TAG, Stack, TargetSpec};
use super::{Api, ApplyError};
use crate::api::Service;

#[derive(Debug, Default)]
pub struct Observed {
    pub namespaces: HashSet<String>,
    /// By (namespace, name): the stack's functions that exist, and the functions tagged with the stack.
    pub functions: HashMap<(String, String), Function>,
    pub load_balancers: Vec<LoadBalancer>,
}

#[derive(Debug)]
pub struct Function {
    pub runtime: String,
    pub handler: String,
    pub memory: u32,
    pub timeout: u32,
    pub description: String,
    pub environment: BTreeMap<String, String>,
    pub code_sha256: String,
    /// Reserved concurrency memory, MB.
    pub reserved_mem: Option<u32>,
    /// Tagged with this stack's name.
    pub in_stack: bool,
}

#[derive(Debug)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub vip: String,
    pub in_stack: bool,
    /// Read only for the load balancers the stack names.
    pub listeners: Vec<Listener>,
}

#[derive(Debug)]
pub struct Listener {
    pub id: String,
    pub protocol: String,
    pub port: u16,
    /// The fingerprint of the listener's certificate.
    pub certificate: Option<String>,
    pub keepalive: bool,
    pub rules: Vec<Rule>,
    /// Layer-4 listeners' targets.
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub domain: String,
    pub url: String,
    pub scheduler: String,
    pub http2: bool,
    /// The `HealthCheck` object.
    pub health_check: Value,
    /// (namespace, name, qualifier)
    pub function: Option<(String, String, String)>,
    pub targets: Vec<TargetSpec>,
    pub fallback: Option<(String, String, String)>,
    /// (target listener, target rule, code, take URL)
    pub redirect: Option<(String, String, u16, bool)>,
}

pub async fn observe(api: &Api<'_>, stack: &Stack) -> Result<Observed, ApplyError> {
    let mut observed = Observed::default();
    for ns in all(api, Service::Scf, "ListNamespaces", json!({}), "Namespaces").await? {
        observed.namespaces.insert(text(&ns["Name"]));
    }
    let tag_filter = json!([{"Name": format!("tag-{STACK_TAG}"), "Values": [stack.name]}]);
    let mut keys: Vec<(String, String)> =
        stack.functions.iter().map(|f| (f.namespace.clone(), f.name.clone())).collect();
    for ns in &observed.namespaces {
        let params = json!({"Namespace": ns, "Filters": tag_filter});
        for f in all(api, Service::Scf, "ListFunctions", params, "Functions").await? {
            let key = (ns.clone(), text(&f["FunctionName"]));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    for (namespace, name) in keys {
        let params = json!({"FunctionName": name, "Namespace": namespace});
        let Some(f) = api.find(Service::Scf, "GetFunction", params.clone()).await? else { continue };
        let Some(address) = api.find(Service::Scf, "GetFunctionAddress", params.clone()).await? else { continue };
        let reserved = api.find(Service::Scf, "GetReservedConcurrencyConfig", params).await?;
        let environment = f["Environment"]["Variables"].as_array().into_iter().flatten();
        let function = Function {
            runtime: text(&f["Runtime"]),
            handler: text(&f["Handler"]),
            memory: number(&f["MemorySize"]),
            timeout: number(&f["Timeout"]),
            description: text(&f["Description"]),
            environment: environment.map(|v| (text(&v["Key"]), text(&v["Value"]))).collect(),
            code_sha256: text(&address["CodeSha256"]),
            reserved_mem: reserved.and_then(|r| r["ReservedMem"].as_u64()).map(|m| m as u32),
            in_stack: tagged(&f["Tags"], "Key", "Value", &stack.name),
        };
        observed.functions.insert((namespace, name), function);
    }

    // The account's certificates, read when the first named load balancer is.
    let mut certificates: Option<Value> = None;
    let named: HashSet<&str> = stack.load_balancers.iter().map(|lb| lb.name.as_str()).collect();
    for lb in all(api, Service::Clb, "DescribeLoadBalancers", json!({}), "LoadBalancerSet").await? {
        let name = text(&lb["LoadBalancerName"]);
        let in_stack = tagged(&lb["Tags"], "TagKey", "TagValue", &stack.name);
        if !named.contains(name.as_str()) && !in_stack {
            continue;
        }
        let id = text(&lb["LoadBalancerId"]);
        let listeners = match (named.contains(name.as_str()), &certificates) {
            (true, None) => {
                let read = api.call(Service::Clb, "DescribeCertificates", json!({}), "certificates").await?;
                listeners(api, &id, certificates.insert(read)).await?
            }
            (true, Some(read)) => listeners(api, &id, read).await?,
            (false, _) => Vec::new(),
        };
        let vip = lb["LoadBalancerVips"][0].as_str().unwrap_or_default().to_string();
        observed.load_balancers.push(LoadBalancer { id, name, vip, in_stack, listeners });
    }
    Ok(observed)
}

/// Every item of a paged list action (`Offset`, `Limit`, `TotalCount`).
async fn all(
    api: &Api<'_>,
    service: Service,
    action: &str,
    mut params: Value,
    key: &str,
) -> Result<Vec<Value>, ApplyError> {
    const PAGE: usize = 100;
    let mut items = Vec::new();
    loop {
        params["Offset"] = json!(items.len());
        params["Limit"] = json!(PAGE);
        let page = api.call(service, action, params.clone(), action).await?;
        let got = page[key].as_array().cloned().unwrap_or_default();
        let done = got.len() < PAGE || items.len() + got.len() >= page["TotalCount"].as_u64().unwrap_or(0) as usize;
        items.extend(got);
        if done {
            return Ok(items);
        }
    }
}

/// A load balancer's listeners with their rules, targets, bindings, fallbacks, redirects and certificates (by
/// `DescribeCertificates`' answer, read once for all load balancers).
async fn listeners(api: &Api<'_>, lb: &str, certificates: &Value) -> Result<Vec<Listener>, ApplyError> {
    let place = format!("load balancer {lb}");
    let described = api.call(Service::Clb, "DescribeListeners", json!({"LoadBalancerId": lb}), &place).await?;
    let targets = api.call(Service::Clb, "DescribeTargets", json!({"LoadBalancerId": lb}), &place).await?;
    let fallbacks = api.call(Service::Clb, "DescribeRuleFallbacks", json!({"LoadBalancerId": lb}), &place).await?;
    let fingerprint = |id: &Value| {
        let certs = certificates["Certificates"].as_array()?;
        certs.iter().find(|c| c["CertId"] == *id).map(|c| text(&c["Fingerprint"]))
    };
    let function_of =
        |f: &Value| (text(&f["FunctionNamespace"]), text(&f["FunctionName"]), text(&f["FunctionQualifier"]));
    let mut found = Vec::new();
    for l in described["Listeners"].as_array().into_iter().flatten() {
        let id = text(&l["ListenerId"]);
        let targets_of = targets["Listeners"].as_array().into_iter().flatten().find(|t| t["ListenerId"] == json!(id));
        let rule_targets = |location: &str| -> Option<&Value> {
            let rules = targets_of?["Rules"].as_array()?;
            rules.iter().find(|r| r["LocationId"] == json!(location))
        };
        let rules = l["Rules"].as_array().into_iter().flatten().map(|r| {
            let location = text(&r["LocationId"]);
            let assigned = rule_targets(&location);
            let fallback = fallbacks["RuleFallbacks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["LocationId"] == json!(location));
            let rewrite = &r["RewriteTarget"];
            Rule {
                domain: text(&r["Domain"]),
                url: text(&r["Url"]),
                scheduler: text(&r["Scheduler"]),
                http2: r["Http2"].as_bool().unwrap_or(false),
                health_check: r["HealthCheck"].clone(),
                function: assigned
                    .and_then(|t| t["FunctionTargets"].as_array()?.first().map(|f| function_of(&f["Function"]))),
                targets: assigned.map(|t| servers(&t["Targets"])).unwrap_or_default(),
                fallback: fallback.map(|f| function_of(&f["Function"])),
                redirect: rewrite["TargetLocationId"].as_str().map(|location| {
                    let code = rewrite["RewriteCode"].as_u64().unwrap_or(301) as u16;
                    (
                        text(&rewrite["TargetListenerId"]),
                        location.to_string(),
                        code,
                        rewrite["TakeUrl"].as_bool().unwrap_or(false),
                    )
                }),
                id: location,
            }
        });
        found.push(Listener {
            protocol: text(&l["Protocol"]),
            port: number(&l["Port"]) as u16,
            certificate: fingerprint(&l["Certificate"]["CertId"]),
            keepalive: l["KeepaliveEnable"] == 1,
            rules: rules.collect(),
            targets: targets_of.map(|t| servers(&t["Targets"])).unwrap_or_default(),
            id,
        });
    }
    Ok(found)
}

/// `Backend` objects as targets.
fn servers(backends: &Value) -> Vec<TargetSpec> {
    let each = backends.as_array().into_iter().flatten();
    each.map(|b| TargetSpec {
        ip: text(&b["PrivateIpAddresses"][0]),
        port: number(&b["Port"]) as u16,
        weight: number(&b["Weight"]),
    })
    .collect()
}

/// Whether a list of tags holds this stack's tag.
fn tagged(tags: &Value, key: &str, value: &str, stack: &str) -> bool {
    tags.as_array().into_iter().flatten().any(|t| t[key] == STACK_TAG && t[value] == stack)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn number(v: &Value) -> u32 {
    v.as_u64().unwrap_or(0) as u32
}
