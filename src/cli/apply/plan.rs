//! The plan: from what the stack file says and what exists, the steps that make them agree, in an order that
//! works (functions before the rules bound to them, rules before their targets, removals last).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::observe::{self, Observed};
use super::stack::{FunctionRef, HealthCheckSpec, ListenerSpec, STACK_TAG, Stack, TargetSpec};
use crate::api::Service;
use crate::cli::size;

/// Ids of what the stack names, by position in the file: known for what exists, learned as steps create.
#[derive(Clone, Debug, Default)]
pub struct Ids {
    pub lbs: HashMap<usize, String>,
    pub listeners: HashMap<(usize, usize), String>,
    pub rules: HashMap<(usize, usize, usize), String>,
}

pub struct Plan {
    pub steps: Vec<Step>,
    pub ids: Ids,
    /// Packed code of the functions whose code is uploaded, by position in the file.
    pub code: HashMap<usize, Vec<u8>>,
    stack_name: String,
}

pub struct Step {
    /// `+` add, `~` change, `-` remove.
    pub sign: char,
    pub text: String,
    /// Where in the file (for errors).
    pub place: String,
    pub action: Action,
}

/// (namespace, name, qualifier)
type FunctionParts = (String, String, String);

pub enum Action {
    CreateNamespace(String),
    CreateFunction(usize),
    UpdateCode(usize),
    UpdateConfig(usize),
    /// Reserved concurrency: set to the function's `concurrency`.
    SetConcurrency(usize),
    RemoveConcurrency {
        namespace: String,
        name: String,
    },
    DeleteFunction {
        namespace: String,
        name: String,
    },
    CreateLoadBalancer(usize),
    DeleteLoadBalancer(String),
    CreateListener(usize, usize),
    SetCertificate(usize, usize),
    SetKeepalive(usize, usize),
    DeleteListener {
        lb: String,
        listener: String,
    },
    CreateRule(usize, usize, usize),
    ModifyRule(usize, usize, usize),
    SetHttp2(usize, usize, usize),
    DeleteRule {
        lb: String,
        listener: String,
        location: String,
    },
    Bind(usize, usize, usize),
    Unbind {
        lb: String,
        listener: String,
        location: String,
        function: FunctionParts,
    },
    Targets {
        holder: Holder,
        op: TargetOp,
        targets: Vec<TargetSpec>,
    },
    SetFallback(usize, usize, usize),
    RemoveFallback {
        lb: String,
        listener: String,
        location: String,
    },
    /// Source rule, and the target rule by position.
    Redirect {
        source: (usize, usize, usize),
        target: (usize, usize, usize),
    },
    RemoveRedirect {
        lb: String,
        source: (String, String),
        target: (String, String),
    },
}

/// Whose targets: a rule's, or a layer-4 listener's.
#[derive(Clone, Copy)]
pub enum Holder {
    Rule(usize, usize, usize),
    Listener(usize, usize),
}

#[derive(Clone, Copy)]
pub enum TargetOp {
    Register,
    Deregister,
    Reweight,
}

/// The order steps run in: each phase's steps only need what earlier phases made.
#[derive(Clone, Copy)]
enum Phase {
    Functions = 0,
    LoadBalancers,
    Listeners,
    Rules,
    /// Unbinding and removing what is in the way of a change.
    Clear,
    Bind,
    Targets,
    Redirects,
    Remove,
}

const PHASES: usize = 9;

struct Builder<'a> {
    stack: &'a Stack,
    observed: &'a Observed,
    prune: bool,
    phases: Vec<Vec<Step>>,
    ids: Ids,
    code: HashMap<usize, Vec<u8>>,
}

impl Builder<'_> {
    fn push(&mut self, phase: Phase, sign: char, text: String, place: &str, action: Action) {
        self.phases[phase as usize].push(Step { sign, text, place: place.to_string(), action });
    }
}

impl Plan {
    pub fn make(stack: &Stack, observed: &Observed, prune: bool) -> Result<Plan, (String, String)> {
        let mut b = Builder {
            stack,
            observed,
            prune,
            phases: (0..PHASES).map(|_| Vec::new()).collect(),
            ids: Ids::default(),
            code: HashMap::new(),
        };
        functions(&mut b)?;
        prefill(&mut b);
        for i in 0..stack.load_balancers.len() {
            load_balancer(&mut b, i)?;
        }
        if prune {
            let named = |name: &str| stack.load_balancers.iter().any(|lb| lb.name == name);
            for lb in observed.load_balancers.iter().filter(|lb| lb.in_stack && !named(&lb.name)) {
                let text = format!("load balancer {} ({})", lb.name, lb.id);
                b.push(Phase::Remove, '-', text, "loadBalancers", Action::DeleteLoadBalancer(lb.id.clone()));
            }
            for ((namespace, name), f) in &observed.functions {
                let named = stack.functions.iter().any(|s| &s.namespace == namespace && &s.name == name);
                if f.in_stack && !named {
                    let action = Action::DeleteFunction { namespace: namespace.clone(), name: name.clone() };
                    b.push(Phase::Remove, '-', format!("function {namespace}/{name}"), "functions", action);
                }
            }
        }
        Ok(Plan {
            steps: b.phases.into_iter().flatten().collect(),
            ids: b.ids,
            code: b.code,
            stack_name: stack.name.clone(),
        })
    }

    /// The plan as printed before anything changes.
    pub fn render(&self, stack: &str, file: &str) -> String {
        let mut out = format!("Stack {stack} ({file}):\n");
        if self.steps.is_empty() {
            out.push_str("  No changes: everything is as the file says.\n");
            return out;
        }
        for step in &self.steps {
            out.push_str(&format!("  {} {}\n", step.sign, step.text));
        }
        let count = |sign| self.steps.iter().filter(|s| s.sign == sign).count();
        out.push_str(&format!("{} to add, {} to change, {} to remove.\n", count('+'), count('~'), count('-')));
        out
    }
}

fn functions(b: &mut Builder<'_>) -> Result<(), (String, String)> {
    let mut namespaces_made = Vec::new();
    for (i, f) in b.stack.functions.iter().enumerate() {
        let place = format!("functions[{i}] ({})", f.name);
        let zip = crate::functions::zip_dir(&f.code).map_err(|e| (format!("{place}.code"), e.to_string()))?;
        eprintln!("  packed function {} from {} ({})", f.name, f.code.display(), size(zip.len()));
        let sha = crate::functions::sha256_hex(&zip);
        let who = format!("function {}/{}", f.namespace, f.name);
        match b.observed.functions.get(&(f.namespace.clone(), f.name.clone())) {
            None => {
                if !b.observed.namespaces.contains(&f.namespace) && !namespaces_made.contains(&f.namespace) {
                    namespaces_made.push(f.namespace.clone());
                    let action = Action::CreateNamespace(f.namespace.clone());
                    b.push(Phase::Functions, '+', format!("namespace {}", f.namespace), &place, action);
                }
                let text = format!("{who} ({}, {} MB, {} s)", f.runtime, f.memory, f.timeout);
                b.code.insert(i, zip);
                b.push(Phase::Functions, '+', text, &place, Action::CreateFunction(i));
                if let Some(n) = f.concurrency {
                    let text = format!("{who}: concurrency {n}");
                    b.push(Phase::Functions, '+', text, &place, Action::SetConcurrency(i));
                }
            }
            Some(o) => {
                if o.runtime != f.runtime {
                    let reason =
                        format!("the runtime cannot change ({} → {}): delete the function first", o.runtime, f.runtime);
                    return Err((format!("{place}.runtime"), reason));
                }
                let mut code_changes = Vec::new();
                if o.code_sha256 != sha {
                    code_changes.push("code".to_string());
                }
                if o.handler != f.handler {
                    code_changes.push(format!("handler {} → {}", o.handler, f.handler));
                }
                if !code_changes.is_empty() {
                    b.code.insert(i, zip);
                    b.push(
                        Phase::Functions,
                        '~',
                        format!("{who}: {}", code_changes.join(", ")),
                        &place,
                        Action::UpdateCode(i),
                    );
                }
                let mut changes = Vec::new();
                if o.memory != f.memory {
                    changes.push(format!("memory {} → {} MB", o.memory, f.memory));
                }
                if o.timeout != f.timeout {
                    changes.push(format!("timeout {} → {} s", o.timeout, f.timeout));
                }
                if o.description != f.description {
                    changes.push("description".to_string());
                }
                if o.environment != f.environment {
                    changes.push("environment".to_string());
                }
                if !changes.is_empty() {
                    b.push(
                        Phase::Functions,
                        '~',
                        format!("{who}: {}", changes.join(", ")),
                        &place,
                        Action::UpdateConfig(i),
                    );
                }
                let wanted = f.concurrency.map(|n| n * f.memory);
                if wanted != o.reserved_mem {
                    match f.concurrency {
                        Some(n) => {
                            let text = format!("{who}: concurrency {n}");
                            b.push(Phase::Functions, '~', text, &place, Action::SetConcurrency(i));
                        }
                        None if b.prune => {
                            let (namespace, name) = (f.namespace.clone(), f.name.clone());
                            let action = Action::RemoveConcurrency { namespace, name };
                            b.push(Phase::Remove, '-', format!("{who}: concurrency limit"), &place, action);
                        }
                        None => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// The ids of everything the file names that exists already, before any is planned (a redirect may name a rule
/// further down the file).
fn prefill(b: &mut Builder<'_>) {
    for (i, lb) in b.stack.load_balancers.iter().enumerate() {
        let Some(o) = b.observed.load_balancers.iter().find(|o| o.name == lb.name) else { continue };
        b.ids.lbs.insert(i, o.id.clone());
        for (j, l) in lb.listeners.iter().enumerate() {
            let Some(ol) = o.listeners.iter().find(|ol| ol.protocol == l.protocol && ol.port == l.port) else {
                continue;
            };
            b.ids.listeners.insert((i, j), ol.id.clone());
            for (k, r) in l.rules.iter().enumerate() {
                let found = ol.rules.iter().find(|or| or.domain.eq_ignore_ascii_case(&r.domain) && or.url == r.url);
                if let Some(or) = found {
                    b.ids.rules.insert((i, j, k), or.id.clone());
                }
            }
        }
    }
}

fn load_balancer(b: &mut Builder<'_>, i: usize) -> Result<(), (String, String)> {
    let lb = &b.stack.load_balancers[i];
    let place = format!("loadBalancers[{i}] ({})", lb.name);
    let observed = b.observed.load_balancers.iter().find(|o| o.name == lb.name);
    match observed {
        None => {
            let vip = lb.vip.as_deref().map(|v| format!(" (VIP {v})")).unwrap_or_default();
            b.push(
                Phase::LoadBalancers,
                '+',
                format!("load balancer {}{vip}", lb.name),
                &place,
                Action::CreateLoadBalancer(i),
            );
        }
        Some(o) => {
            if let Some(vip) = lb.vip.as_ref().filter(|v| **v != o.vip) {
                let reason = format!("the VIP cannot change ({} → {vip}): remove the load balancer first", o.vip);
                return Err((format!("{place}.vip"), reason));
            }
            b.ids.lbs.insert(i, o.id.clone());
        }
    }
    for j in 0..lb.listeners.len() {
        listener(b, i, j, observed)?;
    }
    if let (Some(o), true) = (observed, b.prune) {
        for ol in &o.listeners {
            if !lb.listeners.iter().any(|l| l.protocol == ol.protocol && l.port == ol.port) {
                let action = Action::DeleteListener { lb: o.id.clone(), listener: ol.id.clone() };
                let text = format!("listener {} {} of {}", ol.protocol, ol.port, lb.name);
                b.push(Phase::Remove, '-', text, &place, action);
            }
        }
    }
    Ok(())
}

fn listener(
    b: &mut Builder<'_>,
    i: usize,
    j: usize,
    lb: Option<&observe::LoadBalancer>,
) -> Result<(), (String, String)> {
    let spec = &b.stack.load_balancers[i];
    let l = &spec.listeners[j];
    let place = format!("loadBalancers[{i}].listeners[{j}] ({} {})", l.protocol, l.port);
    let who = format!("listener {} {} of {}", l.protocol, l.port, spec.name);
    let observed = lb.and_then(|o| o.listeners.iter().find(|ol| ol.protocol == l.protocol && ol.port == l.port));
    let fingerprint = match &l.certificate {
        Some(cert) => {
            let pem = std::fs::read_to_string(&cert.cert)
                .map_err(|e| (format!("{place}.certificate.cert"), e.to_string()))?;
            Some(crate::snapshot::tls::fingerprint(&pem).map_err(|e| (format!("{place}.certificate.cert"), e))?)
        }
        None => None,
    };
    match observed {
        None => b.push(Phase::Listeners, '+', who.clone(), &place, Action::CreateListener(i, j)),
        Some(o) => {
            b.ids.listeners.insert((i, j), o.id.clone());
            if fingerprint.is_some() && o.certificate != fingerprint {
                b.push(Phase::Listeners, '~', format!("{who}: certificate"), &place, Action::SetCertificate(i, j));
            }
            if o.keepalive != l.keepalive {
                let text = format!("{who}: keepalive {}", l.keepalive);
                b.push(Phase::Listeners, '~', text, &place, Action::SetKeepalive(i, j));
            }
        }
    }
    let current = observed.map(|o| o.targets.as_slice()).unwrap_or_default();
    targets(b, Holder::Listener(i, j), &l.targets, current, &who, &place);
    for k in 0..l.rules.len() {
        rule(b, i, j, k, observed, lb)?;
    }
    if let (Some(o), true) = (observed, b.prune) {
        for or in &o.rules {
            if !l.rules.iter().any(|r| r.domain.eq_ignore_ascii_case(&or.domain) && r.url == or.url) {
                let lb_id = lb.map(|lb| lb.id.clone()).unwrap_or_default();
                let action = Action::DeleteRule { lb: lb_id, listener: o.id.clone(), location: or.id.clone() };
                let text = format!("rule {}{} on {} {} of {}", or.domain, or.url, l.protocol, l.port, spec.name);
                b.push(Phase::Remove, '-', text, &place, action);
            }
        }
    }
    Ok(())
}

fn rule(
    b: &mut Builder<'_>,
    i: usize,
    j: usize,
    k: usize,
    listener: Option<&observe::Listener>,
    lb: Option<&observe::LoadBalancer>,
) -> Result<(), (String, String)> {
    let spec = &b.stack.load_balancers[i];
    let l = &spec.listeners[j];
    let r = &l.rules[k];
    let place = format!("loadBalancers[{i}].listeners[{j}].rules[{k}] ({}{})", r.domain, r.url);
    let who = format!("rule {}{} on {} {} of {}", r.domain, r.url, l.protocol, l.port, spec.name);
    let observed =
        listener.and_then(|o| o.rules.iter().find(|or| or.domain.eq_ignore_ascii_case(&r.domain) && or.url == r.url));
    let (lb_id, listener_id) =
        (lb.map(|o| o.id.clone()).unwrap_or_default(), listener.map(|o| o.id.clone()).unwrap_or_default());
    let redirect_target = match &r.redirect {
        Some(redirect) => Some(
            redirect_target(spec.listeners.as_slice(), i, redirect, r)
                .map_err(|reason| (format!("{place}.redirect"), reason))?,
        ),
        None => None,
    };
    let Some(o) = observed else {
        b.push(Phase::Rules, '+', who.clone(), &place, Action::CreateRule(i, j, k));
        if let Some(f) = &r.function {
            b.push(Phase::Bind, '+', format!("bind {} to {who}", show(f)), &place, Action::Bind(i, j, k));
        }
        targets(b, Holder::Rule(i, j, k), &r.targets, &[], &who, &place);
        if let Some(f) = &r.fallback {
            b.push(Phase::Bind, '+', format!("fallback {} for {who}", show(f)), &place, Action::SetFallback(i, j, k));
        }
        if let Some(target) = redirect_target {
            let text = redirect_text(b.stack, r, target, &who);
            b.push(Phase::Redirects, '+', text, &place, Action::Redirect { source: (i, j, k), target });
        }
        return Ok(());
    };
    b.ids.rules.insert((i, j, k), o.id.clone());
    let mut changes = Vec::new();
    if let Some(scheduler) = r.scheduler.as_ref().filter(|s| **s != o.scheduler) {
        changes.push(format!("scheduler {} → {scheduler}", o.scheduler));
    }
    if let Some(check) = &r.health_check
        && health_check(check).iter().any(|(k, v)| !same_check_field(k, v, o.health_check.get(k)))
    {
        changes.push("health check".to_string());
    }
    if !changes.is_empty() {
        b.push(Phase::Rules, '~', format!("{who}: {}", changes.join(", ")), &place, Action::ModifyRule(i, j, k));
    }
    if let Some(http2) = r.http2.filter(|h| *h != o.http2) {
        b.push(
            Phase::Rules,
            '~',
            format!("{who}: HTTP/2 {}", if http2 { "on" } else { "off" }),
            &place,
            Action::SetHttp2(i, j, k),
        );
    }
    // A redirect comes before any target: one that is not wanted, or is in the way of a function or targets, goes.
    let serves = r.function.is_some() || !r.targets.is_empty() || r.fallback.is_some();
    let wanted_redirect = redirect_target.map(|(ti, tj, tk)| {
        let code = r.redirect.as_ref().map(|w| (w.code, w.take_url)).unwrap_or((301, true));
        (b.ids.listeners.get(&(ti, tj)).cloned(), b.ids.rules.get(&(ti, tj, tk)).cloned(), code)
    });
    if let Some((target_listener, target_location, code, take_url)) = &o.redirect {
        let same = wanted_redirect.as_ref().is_some_and(|(l, loc, c)| {
            l.as_ref() == Some(target_listener) && loc.as_ref() == Some(target_location) && *c == (*code, *take_url)
        });
        if !same && (serves || redirect_target.is_some() || b.prune) {
            let action = Action::RemoveRedirect {
                lb: lb_id.clone(),
                source: (listener_id.clone(), o.id.clone()),
                target: (target_listener.clone(), target_location.clone()),
            };
            b.push(Phase::Clear, '-', format!("redirect of {who}"), &place, action);
        }
        if !same && let Some(target) = redirect_target {
            let text = redirect_text(b.stack, r, target, &who);
            b.push(Phase::Redirects, '+', text, &place, Action::Redirect { source: (i, j, k), target });
        }
    } else if let Some(target) = redirect_target {
        let text = redirect_text(b.stack, r, target, &who);
        b.push(Phase::Redirects, '+', text, &place, Action::Redirect { source: (i, j, k), target });
    }
    // The function bound to the rule.
    let wanted = r.function.as_ref().map(parts);
    if o.function != wanted
        && let Some(bound) = &o.function
        && (wanted.is_some() || !r.targets.is_empty() || r.fallback.is_some() || b.prune)
    {
        let action = Action::Unbind {
            lb: lb_id.clone(),
            listener: listener_id.clone(),
            location: o.id.clone(),
            function: bound.clone(),
        };
        b.push(Phase::Clear, '-', format!("binding of {}/{} to {who}", bound.0, bound.1), &place, action);
    }
    if let Some(f) = &r.function {
        if !o.targets.is_empty() {
            let action =
                Action::Targets { holder: Holder::Rule(i, j, k), op: TargetOp::Deregister, targets: o.targets.clone() };
            b.push(Phase::Clear, '-', format!("targets {} of {who}", list(&o.targets)), &place, action);
        }
        if o.fallback.is_some() {
            let action =
                Action::RemoveFallback { lb: lb_id.clone(), listener: listener_id.clone(), location: o.id.clone() };
            b.push(Phase::Clear, '-', format!("fallback of {who}"), &place, action);
        }
        if o.function != wanted {
            b.push(Phase::Bind, '+', format!("bind {} to {who}", show(f)), &place, Action::Bind(i, j, k));
        }
        return Ok(());
    }
    targets(b, Holder::Rule(i, j, k), &r.targets, &o.targets, &who, &place);
    let wanted_fallback = r.fallback.as_ref().map(parts);
    if o.fallback != wanted_fallback {
        match &r.fallback {
            Some(f) => b.push(
                Phase::Bind,
                '~',
                format!("fallback {} for {who}", show(f)),
                &place,
                Action::SetFallback(i, j, k),
            ),
            None if b.prune => {
                let action = Action::RemoveFallback { lb: lb_id, listener: listener_id, location: o.id.clone() };
                b.push(Phase::Remove, '-', format!("fallback of {who}"), &place, action);
            }
            None => {}
        }
    }
    Ok(())
}

/// The rule a redirect goes to: the one with the same domain and URL on the listener it names.
fn redirect_target(
    listeners: &[ListenerSpec],
    i: usize,
    redirect: &super::stack::RedirectSpec,
    rule: &super::stack::RuleSpec,
) -> Result<(usize, usize, usize), String> {
    let tj = listeners.iter().position(|l| l.protocol == redirect.protocol && l.port == redirect.port);
    let tj = tj.ok_or_else(|| format!("the load balancer has no {} {} listener", redirect.protocol, redirect.port))?;
    let tk = listeners[tj].rules.iter().position(|t| t.domain.eq_ignore_ascii_case(&rule.domain) && t.url == rule.url);
    let tk = tk.ok_or_else(|| {
        format!("the {} {} listener has no rule {}{}", redirect.protocol, redirect.port, rule.domain, rule.url)
    })?;
    Ok((i, tj, tk))
}

fn redirect_text(stack: &Stack, rule: &super::stack::RuleSpec, (i, j, _): (usize, usize, usize), who: &str) -> String {
    let target = &stack.load_balancers[i].listeners[j];
    let code = rule.redirect.as_ref().map_or(301, |r| r.code);
    format!("redirect {who} → {} {} ({code})", target.protocol, target.port)
}

/// Register what is missing, reweight what differs, and (pruning) deregister what the file no longer names.
fn targets(b: &mut Builder<'_>, holder: Holder, wanted: &[TargetSpec], current: &[TargetSpec], who: &str, place: &str) {
    let same = |a: &TargetSpec, c: &TargetSpec| a.ip == c.ip && a.port == c.port;
    let missing: Vec<TargetSpec> = wanted.iter().filter(|w| !current.iter().any(|c| same(w, c))).cloned().collect();
    let reweighted: Vec<TargetSpec> =
        wanted.iter().filter(|w| current.iter().any(|c| same(w, c) && c.weight != w.weight)).cloned().collect();
    let extra: Vec<TargetSpec> = current.iter().filter(|c| !wanted.iter().any(|w| same(w, c))).cloned().collect();
    if !missing.is_empty() {
        let text = format!("targets {} of {who}", list(&missing));
        b.push(Phase::Targets, '+', text, place, Action::Targets { holder, op: TargetOp::Register, targets: missing });
    }
    if !reweighted.is_empty() {
        let text = format!("weights of {} on {who}", list(&reweighted));
        b.push(
            Phase::Targets,
            '~',
            text,
            place,
            Action::Targets { holder, op: TargetOp::Reweight, targets: reweighted },
        );
    }
    if !extra.is_empty() && b.prune {
        let text = format!("targets {} of {who}", list(&extra));
        b.push(Phase::Remove, '-', text, place, Action::Targets { holder, op: TargetOp::Deregister, targets: extra });
    }
}

fn list(targets: &[TargetSpec]) -> String {
    targets.iter().map(|t| format!("{}:{} (weight {})", t.ip, t.port, t.weight)).collect::<Vec<_>>().join(", ")
}

fn parts(f: &FunctionRef) -> FunctionParts {
    let (namespace, name, qualifier) = f.parts();
    (namespace.to_string(), name.to_string(), qualifier.to_string())
}

fn show(f: &FunctionRef) -> String {
    let (namespace, name, qualifier) = f.parts();
    format!("function {namespace}/{name}:{qualifier}")
}

/// Whether a health-check field of the file equals what the API reports (it keeps methods upper-case and domains
/// lower-case).
fn same_check_field(name: &str, wanted: &Value, current: Option<&Value>) -> bool {
    match (name, wanted.as_str(), current.and_then(Value::as_str)) {
        ("HttpCheckMethod", Some(w), Some(c)) => w.eq_ignore_ascii_case(c),
        ("HttpCheckDomain", Some(w), Some(c)) => w.eq_ignore_ascii_case(c),
        _ => current == Some(wanted),
    }
}

/// The API's `HealthCheck` fields for what a stack gives.
fn health_check(check: &HealthCheckSpec) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("HealthSwitch".into(), json!(i64::from(check.enabled)));
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(name.into(), value);
        }
    };
    put("HttpCheckPath", check.path.as_ref().map(|v| json!(v)));
    put("HttpCheckDomain", check.domain.as_ref().map(|v| json!(v)));
    put("HttpCheckMethod", check.method.as_ref().map(|v| json!(v)));
    put("IntervalTime", check.interval.map(|v| json!(v)));
    put("TimeOut", check.timeout.map(|v| json!(v)));
    put("HealthNum", check.healthy.map(|v| json!(v)));
    put("UnHealthNum", check.unhealthy.map(|v| json!(v)));
    put("HttpCode", check.http_codes.map(|v| json!(v)));
    fields
}

fn function_target(f: &FunctionRef) -> Value {
    let (namespace, name, qualifier) = f.parts();
    json!({"FunctionNamespace": namespace, "FunctionName": name, "FunctionQualifier": qualifier})
}

fn backends(targets: &[TargetSpec]) -> Value {
    json!(targets.iter().map(|t| json!({"EniIp": t.ip, "Port": t.port, "Weight": t.weight})).collect::<Vec<_>>())
}

// === impl Action ===

impl Action {
    /// The packed code a step uploads.
    pub fn upload<'p>(&self, plan: &'p Plan) -> Option<&'p Vec<u8>> {
        match self {
            Action::CreateFunction(i) | Action::UpdateCode(i) => plan.code.get(i),
            _ => None,
        }
    }

    /// The API call that makes the step.
    pub fn request(&self, stack: &Stack, plan: &Plan, ids: &Ids) -> (Service, &'static str, Value) {
        let lb = |i: &usize| ids.lbs.get(i).cloned().unwrap_or_default();
        let listener = |i: &usize, j: &usize| ids.listeners.get(&(*i, *j)).cloned().unwrap_or_default();
        let rule = |i: &usize, j: &usize, k: &usize| ids.rules.get(&(*i, *j, *k)).cloned().unwrap_or_default();
        let zip = |i: &usize| {
            base64::engine::general_purpose::STANDARD.encode(plan.code.get(i).map_or(&[][..], |c| c.as_slice()))
        };
        let environment = |i: &usize| {
            let vars: Vec<Value> =
                stack.functions[*i].environment.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
            json!({"Variables": vars})
        };
        match self {
            Action::CreateNamespace(name) => (Service::Scf, "CreateNamespace", json!({"Namespace": name})),
            Action::CreateFunction(i) => {
                let f = &stack.functions[*i];
                let params = json!({
                    "FunctionName": f.name, "Namespace": f.namespace, "Runtime": f.runtime, "Handler": f.handler,
                    "MemorySize": f.memory, "Timeout": f.timeout, "Description": f.description,
                    "Environment": environment(i), "Code": {"ZipFile": zip(i)},
                    "Tags": [{"Key": STACK_TAG, "Value": plan.stack_name}],
                });
                (Service::Scf, "CreateFunction", params)
            }
            Action::UpdateCode(i) => {
                let f = &stack.functions[*i];
                let params =
                    json!({"FunctionName": f.name, "Namespace": f.namespace, "Handler": f.handler, "ZipFile": zip(i)});
                (Service::Scf, "UpdateFunctionCode", params)
            }
            Action::UpdateConfig(i) => {
                let f = &stack.functions[*i];
                let params = json!({
                    "FunctionName": f.name, "Namespace": f.namespace, "MemorySize": f.memory, "Timeout": f.timeout,
                    "Description": f.description, "Environment": environment(i),
                });
                (Service::Scf, "UpdateFunctionConfiguration", params)
            }
            Action::SetConcurrency(i) => {
                let f = &stack.functions[*i];
                let mem = f.concurrency.unwrap_or(0) * f.memory;
                let params = json!({"FunctionName": f.name, "Namespace": f.namespace, "ReservedConcurrencyMem": mem});
                (Service::Scf, "PutReservedConcurrencyConfig", params)
            }
            Action::RemoveConcurrency { namespace, name } => {
                let params = json!({"FunctionName": name, "Namespace": namespace});
                (Service::Scf, "DeleteReservedConcurrencyConfig", params)
            }
            Action::DeleteFunction { namespace, name } => {
                (Service::Scf, "DeleteFunction", json!({"FunctionName": name, "Namespace": namespace}))
            }
            Action::CreateLoadBalancer(i) => {
                let spec = &stack.load_balancers[*i];
                let mut params = json!({
                    "LoadBalancerType": "OPEN", "LoadBalancerName": spec.name,
                    "Tags": [{"TagKey": STACK_TAG, "TagValue": plan.stack_name}],
                });
                if let Some(vip) = &spec.vip {
                    params["Vip"] = json!(vip);
                }
                (Service::Clb, "CreateLoadBalancer", params)
            }
            Action::DeleteLoadBalancer(id) => (Service::Clb, "DeleteLoadBalancer", json!({"LoadBalancerIds": [id]})),
            Action::CreateListener(i, j) => {
                let l = &stack.load_balancers[*i].listeners[*j];
                let name = l.name.clone().unwrap_or_else(|| format!("{}-{}", l.protocol, l.port));
                let mut params = json!({
                    "LoadBalancerId": lb(i), "Ports": [l.port], "Protocol": l.protocol, "ListenerNames": [name],
                    "KeepaliveEnable": i64::from(l.keepalive),
                });
                if let Some(cert) = certificate(l, &plan.stack_name) {
                    params["Certificate"] = cert;
                }
                (Service::Clb, "CreateListener", params)
            }
            Action::SetKeepalive(i, j) => {
                let l = &stack.load_balancers[*i].listeners[*j];
                let params = json!({
                    "LoadBalancerId": lb(i), "ListenerId": listener(i, j), "KeepaliveEnable": i64::from(l.keepalive),
                });
                (Service::Clb, "ModifyListener", params)
            }
            Action::SetCertificate(i, j) => {
                let l = &stack.load_balancers[*i].listeners[*j];
                let params = json!({
                    "LoadBalancerId": lb(i), "ListenerId": listener(i, j),
                    "Certificate": certificate(l, &plan.stack_name).unwrap_or(Value::Null),
                });
                (Service::Clb, "ModifyListener", params)
            }
            Action::DeleteListener { lb, listener } => {
                (Service::Clb, "DeleteListener", json!({"LoadBalancerId": lb, "ListenerId": listener}))
            }
            Action::CreateRule(i, j, k) => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let mut input = json!({"Domain": r.domain, "Url": r.url});
                if let Some(scheduler) = &r.scheduler {
                    input["Scheduler"] = json!(scheduler);
                }
                if let Some(check) = &r.health_check {
                    input["HealthCheck"] = Value::Object(health_check(check));
                }
                if let Some(http2) = r.http2 {
                    input["Http2"] = json!(http2);
                }
                (
                    Service::Clb,
                    "CreateRule",
                    json!({"LoadBalancerId": lb(i), "ListenerId": listener(i, j), "Rules": [input]}),
                )
            }
            Action::ModifyRule(i, j, k) => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let mut params =
                    json!({"LoadBalancerId": lb(i), "ListenerId": listener(i, j), "LocationId": rule(i, j, k)});
                if let Some(scheduler) = &r.scheduler {
                    params["Scheduler"] = json!(scheduler);
                }
                if let Some(check) = &r.health_check {
                    params["HealthCheck"] = Value::Object(health_check(check));
                }
                (Service::Clb, "ModifyRule", params)
            }
            Action::SetHttp2(i, j, k) => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let params = json!({"LoadBalancerId": lb(i), "ListenerId": listener(i, j), "Domain": r.domain, "Http2": r.http2});
                (Service::Clb, "ModifyDomainAttributes", params)
            }
            Action::DeleteRule { lb, listener, location } => (
                Service::Clb,
                "DeleteRule",
                json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [location]}),
            ),
            Action::Bind(i, j, k) => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let function = r.function.as_ref().map(function_target).unwrap_or(Value::Null);
                let params = json!({
                    "LoadBalancerId": lb(i), "ListenerId": listener(i, j), "LocationId": rule(i, j, k),
                    "FunctionTargets": [{"Function": function, "Weight": 10}],
                });
                (Service::Clb, "RegisterFunctionTargets", params)
            }
            Action::Unbind { lb, listener, location, function: (namespace, name, qualifier) } => {
                let function =
                    json!({"FunctionNamespace": namespace, "FunctionName": name, "FunctionQualifier": qualifier});
                let params = json!({
                    "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
                    "FunctionTargets": [{"Function": function}],
                });
                (Service::Clb, "DeregisterFunctionTargets", params)
            }
            Action::Targets { holder, op, targets } => {
                let mut params = match holder {
                    Holder::Rule(i, j, k) => {
                        json!({"LoadBalancerId": lb(i), "ListenerId": listener(i, j), "LocationId": rule(i, j, k)})
                    }
                    Holder::Listener(i, j) => json!({"LoadBalancerId": lb(i), "ListenerId": listener(i, j)}),
                };
                params["Targets"] = backends(targets);
                let action = match op {
                    TargetOp::Register => "RegisterTargets",
                    TargetOp::Deregister => "DeregisterTargets",
                    TargetOp::Reweight => "ModifyTargetWeight",
                };
                (Service::Clb, action, params)
            }
            Action::SetFallback(i, j, k) => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let params = json!({
                    "LoadBalancerId": lb(i), "ListenerId": listener(i, j), "LocationId": rule(i, j, k),
                    "Function": r.fallback.as_ref().map(function_target),
                });
                (Service::Clb, "SetRuleFallback", params)
            }
            Action::RemoveFallback { lb, listener, location } => (
                Service::Clb,
                "SetRuleFallback",
                json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location}),
            ),
            Action::Redirect { source: (i, j, k), target: (ti, tj, tk) } => {
                let r = &stack.load_balancers[*i].listeners[*j].rules[*k];
                let (code, take_url) = r.redirect.as_ref().map_or((301, true), |w| (w.code, w.take_url));
                let params = json!({
                    "LoadBalancerId": lb(i), "SourceListenerId": listener(i, j), "TargetListenerId": listener(ti, tj),
                    "RewriteInfos": [{"SourceLocationId": rule(i, j, k), "TargetLocationId": rule(ti, tj, tk), "RewriteCode": code, "TakeUrl": take_url}],
                });
                (Service::Clb, "ManualRewrite", params)
            }
            Action::RemoveRedirect { lb, source: (source_listener, source), target: (target_listener, target) } => {
                let params = json!({
                    "LoadBalancerId": lb, "SourceListenerId": source_listener, "TargetListenerId": target_listener,
                    "RewriteInfos": [{"SourceLocationId": source, "TargetLocationId": target}],
                });
                (Service::Clb, "DeleteRewrite", params)
            }
        }
    }

    /// Learns the id of what the step created.
    pub fn record(&self, answer: &Value, ids: &mut Ids) {
        let first = |key: &str| answer[key][0].as_str().map(str::to_string);
        match self {
            Action::CreateLoadBalancer(i) => {
                if let Some(id) = first("LoadBalancerIds") {
                    ids.lbs.insert(*i, id);
                }
            }
            Action::CreateListener(i, j) => {
                if let Some(id) = first("ListenerIds") {
                    ids.listeners.insert((*i, *j), id);
                }
            }
            Action::CreateRule(i, j, k) => {
                if let Some(id) = first("LocationIds") {
                    ids.rules.insert((*i, *j, *k), id);
                }
            }
            _ => {}
        }
    }
}

/// A listener's certificate as the API takes it inline (read from the stack's files; it was read once when
/// planning, so a failure here is an empty certificate the API refuses with its own message).
fn certificate(l: &ListenerSpec, stack: &str) -> Option<Value> {
    let spec = l.certificate.as_ref()?;
    let cert = std::fs::read_to_string(&spec.cert).unwrap_or_default();
    let key = std::fs::read_to_string(&spec.key).unwrap_or_default();
    let fingerprint = crate::snapshot::tls::fingerprint(&cert).unwrap_or_default();
    let name = format!("{stack}-{}", fingerprint.get(..12).unwrap_or_default());
    Some(json!({"SSLMode": "UNIDIRECTIONAL", "CertName": name, "CertContent": cert, "CertKey": key}))
}
