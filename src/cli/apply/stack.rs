//! The stack file `fnlb apply` reads: functions and load balancers (with listeners, rules and targets) as YAML.
//! docs/apply.md describes every field.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use crate::api::scf::validate;
use crate::cli::LISTENER_PROTOCOLS;
use crate::functions::runtimes;

/// The tag on what a stack creates (load balancers and functions), with the stack's name as its value: `--prune`
/// removes only resources that carry it.
pub const STACK_TAG: &str = "fnlb:stack";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stack {
    /// Names the stack (letters, digits, `-` and `_`).
    pub name: String,
    #[serde(default)]
    pub functions: Vec<FunctionSpec>,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancerSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunctionSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_runtime")]
    pub runtime: String,
    #[serde(default = "default_handler")]
    pub handler: String,
    /// A directory, relative to the stack file.
    pub code: PathBuf,
    /// MB.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub timeout: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// At most this many instances at once (reserved concurrency: this many times `memory`); left out, the
    /// function is not limited beyond fnlb's settings.
    pub concurrency: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Identifies the instance among the account's load balancers of the region.
    pub name: String,
    /// An address of this host (default: the first free one).
    pub vip: Option<String>,
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerSpec {
    /// `HTTP`, `HTTPS`, `TCP`, `TCP_SSL` or `UDP`; with `port`, identifies the listener.
    pub protocol: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    pub name: Option<String>,
    /// HTTPS and TCP_SSL listeners.
    pub certificate: Option<CertificateSpec>,
    /// HTTP and HTTPS listeners: connections to the servers are kept alive and reused (`KeepaliveEnable`).
    #[serde(default)]
    pub keepalive: bool,
    /// HTTP and HTTPS listeners.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// TCP, TCP_SSL and UDP listeners.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The certificate chain (PEM), relative to the stack file.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    /// With `url`, identifies the rule on its listener.
    pub domain: String,
    #[serde(default = "default_url")]
    pub url: String,
    /// The function the rule forwards to (the CLB trigger).
    pub function: Option<FunctionRef>,
    /// Server targets.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// The function that answers when none of `targets` can (an fnlb extension).
    pub fallback: Option<FunctionRef>,
    /// A redirect to the rule with the same domain and URL on another listener of the load balancer.
    pub redirect: Option<RedirectSpec>,
    /// `WRR`, `LEAST_CONN` or `IP_HASH`.
    pub scheduler: Option<String>,
    pub health_check: Option<HealthCheckSpec>,
    /// HTTP/2 for the rule's domain (HTTPS listeners).
    pub http2: Option<bool>,
}

/// A function by name (namespace `default`, `$LATEST`), or in full.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum FunctionRef {
    Name(String),
    Full {
        name: String,
        #[serde(default = "default_namespace")]
        namespace: String,
        #[serde(default = "default_qualifier")]
        qualifier: String,
    },
}

impl FunctionRef {
    /// (namespace, name, qualifier)
    pub fn parts(&self) -> (&str, &str, &str) {
        match self {
            FunctionRef::Name(name) => ("default", name, "$LATEST"),
            FunctionRef::Full { name, namespace, qualifier } => (namespace, name, qualifier),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetSpec {
    pub ip: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedirectSpec {
    /// The target listener.
    pub protocol: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    /// 301, 302 or 307.
    #[serde(default = "default_redirect_code")]
    pub code: u16,
    /// Keep the request's path and query (otherwise redirect to the target rule's URL).
    #[serde(default = "default_true")]
    pub take_url: bool,
}

/// A rule's HTTP health check of its servers; fields left out keep CLB's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheckSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub method: Option<String>,
    /// Seconds between checks.
    pub interval: Option<u32>,
    /// Seconds one check may take.
    pub timeout: Option<u32>,
    /// Successes in a row that make a target healthy.
    pub healthy: Option<u32>,
    /// Failures in a row that make it unhealthy.
    pub unhealthy: Option<u32>,
    /// Status classes that count as healthy: 1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx, added.
    pub http_codes: Option<u32>,
}

/// A port: 1 to 65535.
fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct Port;
    impl Visitor<'_> for Port {
        type Value = u16;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a port, 1 to 65535")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).ok().filter(|p| *p != 0).ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self)).and_then(|v| self.visit_u64(v))
        }
    }
    deserializer.deserialize_u64(Port)
}

fn default_namespace() -> String {
    "default".to_string()
}
fn default_runtime() -> String {
    "Python3.9".to_string()
}
fn default_handler() -> String {
    "index.main_handler".to_string()
}
fn default_memory() -> u32 {
    128
}
fn default_timeout() -> u32 {
    3
}
fn default_url() -> String {
    "/".to_string()
}
fn default_qualifier() -> String {
    "$LATEST".to_string()
}
fn default_weight() -> u32 {
    10
}
fn default_redirect_code() -> u16 {
    301
}
fn default_true() -> bool {
    true
}

/// A stack file that cannot be used: the file, the place in it, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {place}: {reason}")]
pub struct StackError {
    pub file: String,
    pub place: String,
    pub reason: String,
}

impl Stack {
    /// Reads and checks a stack file; paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Stack, StackError> {
        let file = path.display().to_string();
        let error = |place: &str, reason: String| StackError { file: file.clone(), place: place.to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| error("the file", e.to_string()))?;
        Stack::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Reads and checks the text of stack file `file`; paths in it become relative to `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Stack, StackError> {
        let error =
            |place: &str, reason: String| StackError { file: file.to_string(), place: place.to_string(), reason };
        let deserializer = yaml_serde::Deserializer::from_str(text);
        let mut stack: Stack = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let place = e.path().to_string();
            let reason = e.into_inner().to_string();
            let reason = without_place(&reason, &place).to_string();
            // A field with an empty name has no path of its own.
            let place = if place == "." || place.is_empty() { "the top level".to_string() } else { place };
            error(&place, reason)
        })?;
        stack.check(base).map_err(|(place, reason)| error(&place, reason))?;
        Ok(stack)
    }

    /// Checks what the API cannot (files, duplicates, references within the file) and resolves paths.
    fn check(&mut self, base: &Path) -> Result<(), (String, String)> {
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain(&self.name) {
            return Err(("name".into(), "a stack name is letters, digits, `-` and `_`".into()));
        }
        let mut seen = HashSet::new();
        for (i, f) in self.functions.iter_mut().enumerate() {
            let place = format!("functions[{i}] ({})", f.name);
            if !seen.insert((f.namespace.clone(), f.name.clone())) {
                return Err((place, "the function is named twice".into()));
            }
            // What the API would refuse, found before any change.
            let refused = |field: &str, e: crate::api::ApiError| {
                (format!("{place}.{field}"), e.message.trim_end_matches('.').to_string())
            };
            validate::function_name(&f.name).map_err(|e| refused("name", e))?;
            validate::namespace(&f.namespace).map_err(|e| refused("namespace", e))?;
            validate::handler(&f.handler, &f.runtime).map_err(|e| refused("handler", e))?;
            if !runtimes::supported().any(|r| r == f.runtime) {
                let supported = runtimes::supported().collect::<Vec<_>>().join(", ");
                return Err((format!("{place}.runtime"), format!("{} is not one of {supported}", f.runtime)));
            }
            if !validate::memory_allowed(i64::from(f.memory)) {
                let reason = format!("{} MB is not a memory size: {}", f.memory, validate::MEMORY_SIZES);
                return Err((format!("{place}.memory"), reason));
            }
            if !validate::TIMEOUT_SECONDS.contains(&i64::from(f.timeout)) {
                let (least, most) = (validate::TIMEOUT_SECONDS.start(), validate::TIMEOUT_SECONDS.end());
                return Err((format!("{place}.timeout"), format!("{} s is not {least} to {most} s", f.timeout)));
            }
            f.code = base.join(&f.code);
            if !f.code.is_dir() {
                return Err((format!("{place}.code"), format!("{} is not a directory", f.code.display())));
            }
        }
        let mut names = HashSet::new();
        for (i, lb) in self.load_balancers.iter_mut().enumerate() {
            let place = format!("loadBalancers[{i}] ({})", lb.name);
            if !names.insert(lb.name.clone()) {
                return Err((place, "the load balancer is named twice".into()));
            }
            let endpoints: Vec<(String, u16)> = lb.listeners.iter().map(|l| (l.protocol.clone(), l.port)).collect();
            let mut ports = HashSet::new();
            for (j, listener) in lb.listeners.iter_mut().enumerate() {
                let place = format!("{place}.listeners[{j}] ({} {})", listener.protocol, listener.port);
                let layer7 = matches!(listener.protocol.as_str(), "HTTP" | "HTTPS");
                if !LISTENER_PROTOCOLS.contains(&listener.protocol.as_str()) {
                    let reason = format!("{} is not one of {}", listener.protocol, LISTENER_PROTOCOLS.join(", "));
                    return Err((format!("{place}.protocol"), reason));
                }
                if !ports.insert((listener.protocol == "UDP", listener.port)) {
                    return Err((place, "the port is used by another listener of the load balancer".into()));
                }
                let tls = matches!(listener.protocol.as_str(), "HTTPS" | "TCP_SSL");
                match &mut listener.certificate {
                    Some(cert) if tls => {
                        for (field, file) in [("cert", &mut cert.cert), ("key", &mut cert.key)] {
                            *file = base.join(&*file);
                            if !file.is_file() {
                                let reason = format!("{} is not a file", file.display());
                                return Err((format!("{place}.certificate.{field}"), reason));
                            }
                        }
                    }
                    Some(_) => return Err((format!("{place}.certificate"), "only HTTPS and TCP_SSL take one".into())),
                    None if tls => return Err((format!("{place}.certificate"), "HTTPS and TCP_SSL need one".into())),
                    None => {}
                }
                if !layer7 && !listener.rules.is_empty() {
                    return Err((format!("{place}.rules"), "only HTTP and HTTPS listeners have rules".into()));
                }
                if layer7 && !listener.targets.is_empty() {
                    return Err((
                        format!("{place}.targets"),
                        "an HTTP or HTTPS listener's targets belong to its rules".into(),
                    ));
                }
                let mut rules = HashSet::new();
                for (k, rule) in listener.rules.iter().enumerate() {
                    let place = format!("{place}.rules[{k}] ({}{})", rule.domain, rule.url);
                    if !rules.insert((rule.domain.to_ascii_lowercase(), rule.url.clone())) {
                        return Err((place, "the rule is named twice on its listener".into()));
                    }
                    if rule.function.is_some() && (!rule.targets.is_empty() || rule.fallback.is_some()) {
                        return Err((
                            place,
                            "a rule forwards to a function or to targets (with a fallback), not both".into(),
                        ));
                    }
                    if let Some(redirect) = &rule.redirect {
                        if rule.function.is_some() || !rule.targets.is_empty() || rule.fallback.is_some() {
                            return Err((place, "a rule that redirects has no function, targets or fallback".into()));
                        }
                        if !endpoints.contains(&(redirect.protocol.clone(), redirect.port)) {
                            let reason =
                                format!("the load balancer has no {} {} listener", redirect.protocol, redirect.port);
                            return Err((format!("{place}.redirect"), reason));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A message of the YAML parser without the place it starts with (`functions[0]: unknown field …`), which the
/// error names already, more exactly.
fn without_place<'a>(message: &'a str, place: &str) -> &'a str {
    match message.split_once(": ") {
        Some((prefix, rest))
            if place.strip_prefix(prefix).is_some_and(|more| more.is_empty() || more.starts_with(['.', '['])) =>
        {
            rest
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests;
