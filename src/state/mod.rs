//! The pure core: every resource fnlb keeps and every rule about them.
//!
//! `State::apply` takes a `Command`, checks it against the invariants and the documented restrictions, and
//! either changes the state and reports which entities it touched, or refuses with a `StateError` and
//! changes nothing. It does no I/O and reads no clock.

mod command;
mod error;
mod model;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use command::{
    Command, FunctionConfigPatch, ListenerChange, NewFunction, NewListener, NewLoadBalancer, NewRule, RuleRef,
    RulesSelector, TargetsOf,
};
pub use error::StateError;
pub use model::{
    Account, AccountKind, Alias, CertKind, Certificate, CodeRef, ConfigKind, ConfigPlace, CustomConfig, DEFAULT_ALIAS,
    Function, FunctionConfig, FunctionKey, FunctionTarget, FunctionType, FunctionVersion, HealthCheck, IpVersion,
    LATEST, Listener, LoadBalancer, LoadBalancerType, Namespace, Protocol, Rewrite, Rule, Scope, ServerTarget,
    TlsSettings,
};

/// Why a listener cannot take certificates of its own.
const LISTENER_CERTIFICATES: &str = "only HTTPS listeners without SNI and TCP_SSL listeners have listener certificates";

/// VIPs given out when a request names none: the first free address from here on (decisions/0002).
pub const FIRST_AUTO_VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 1);

/// The namespace every account has in every region.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Quotas and policies the state enforces. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct Limits {
    pub functions_per_namespace: usize,
    /// Namespaces per account and region, `default` included (contract 2.9).
    pub namespaces_per_region: usize,
    pub load_balancers_per_region: usize,
    pub listeners_per_load_balancer: usize,
    pub rules_per_listener: usize,
    /// Backend servers per rule (contract 5.1).
    pub targets_per_rule: usize,
    /// Regions where functions may be bound to load balancers (contract 0.6).
    pub binding_regions: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            functions_per_namespace: 50,
            namespaces_per_region: 5,
            load_balancers_per_region: 200,
            listeners_per_load_balancer: 50,
            rules_per_listener: DEFAULT_RULES_PER_LISTENER,
            targets_per_rule: 100,
            binding_regions: DEFAULT_BINDING_REGIONS.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// Tencent's quota of rules per layer-7 listener (contract 5.1).
pub const DEFAULT_RULES_PER_LISTENER: usize = 50;

pub const DEFAULT_BINDING_REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-hongkong",
    "ap-singapore",
    "ap-mumbai",
    "ap-tokyo",
    "na-siliconvalley",
];

/// An entity the store keeps, by key. `Applied` lists the ones a command touched.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntityKey {
    Account(String),
    Namespace(Scope, String),
    Function(FunctionKey),
    LoadBalancer(String),
    Listener(String),
    Rule(String),
    Certificate(String),
    CustomConfig(String),
}

/// One stored entity, as the store reads and writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Entity {
    Account(Account),
    Namespace(Namespace),
    Function(Function),
    LoadBalancer(LoadBalancer),
    Listener(Listener),
    Rule(Box<Rule>),
    Certificate(Certificate),
    CustomConfig(CustomConfig),
}

// === impl Entity ===

impl Entity {
    pub fn key(&self) -> EntityKey {
        match self {
            Entity::Account(a) => EntityKey::Account(a.uin.clone()),
            Entity::Namespace(n) => EntityKey::Namespace(n.scope.clone(), n.name.clone()),
            Entity::Function(f) => EntityKey::Function(f.key.clone()),
            Entity::LoadBalancer(lb) => EntityKey::LoadBalancer(lb.id.clone()),
            Entity::Listener(l) => EntityKey::Listener(l.id.clone()),
            Entity::Rule(r) => EntityKey::Rule(r.id.clone()),
            Entity::Certificate(c) => EntityKey::Certificate(c.id.clone()),
            Entity::CustomConfig(c) => EntityKey::CustomConfig(c.id.clone()),
        }
    }
}

/// What a successful command changed: the store writes these entities (or removes the ones now gone).
#[derive(Debug, Default)]
pub struct Applied {
    pub touched: Vec<EntityKey>,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub limits: Limits,
    pub accounts: BTreeMap<String, Account>,
    pub namespaces: BTreeMap<(Scope, String), Namespace>,
    pub functions: BTreeMap<FunctionKey, Function>,
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    pub listeners: BTreeMap<String, Listener>,
    pub rules: BTreeMap<String, Rule>,
    pub certificates: BTreeMap<String, Certificate>,
    pub custom_configs: BTreeMap<String, CustomConfig>,
}

// === impl State ===

impl State {
    pub fn new(limits: Limits) -> State {
        State { limits, ..State::default() }
    }

    /// Rebuilds a state from stored entities (no checks: they were checked when they were written).
    pub fn restore(limits: Limits, entities: impl IntoIterator<Item = Entity>) -> State {
        let mut state = State::new(limits);
        for entity in entities {
            state.put(entity);
        }
        state
    }

    /// Takes the changes another writer committed: each entity written (`Some`) or removed (`None`), as it was
    /// checked when it was committed.
    pub fn take_changes(&mut self, changes: impl IntoIterator<Item = (EntityKey, Option<Entity>)>) {
        for (key, entity) in changes {
            match entity {
                Some(entity) => self.put(entity),
                None => self.remove(&key),
            }
        }
    }

    fn put(&mut self, entity: Entity) {
        match entity {
            Entity::Account(a) => {
                self.accounts.insert(a.uin.clone(), a);
            }
            Entity::Namespace(n) => {
                self.namespaces.insert((n.scope.clone(), n.name.clone()), n);
            }
            Entity::Function(f) => {
                self.functions.insert(f.key.clone(), f);
            }
            Entity::Certificate(c) => {
                self.certificates.insert(c.id.clone(), c);
            }
            Entity::CustomConfig(c) => {
                self.custom_configs.insert(c.id.clone(), c);
            }
            Entity::LoadBalancer(lb) => {
                self.load_balancers.insert(lb.id.clone(), lb);
            }
            Entity::Listener(l) => {
                self.listeners.insert(l.id.clone(), l);
            }
            Entity::Rule(r) => {
                self.rules.insert(r.id.clone(), *r);
            }
        }
    }

    fn remove(&mut self, key: &EntityKey) {
        match key {
            EntityKey::Account(k) => drop(self.accounts.remove(k)),
            EntityKey::Namespace(s, n) => drop(self.namespaces.remove(&(s.clone(), n.clone()))),
            EntityKey::Function(k) => drop(self.functions.remove(k)),
            EntityKey::LoadBalancer(k) => drop(self.load_balancers.remove(k)),
            EntityKey::Listener(k) => drop(self.listeners.remove(k)),
            EntityKey::Rule(k) => drop(self.rules.remove(k)),
            EntityKey::Certificate(k) => drop(self.certificates.remove(k)),
            EntityKey::CustomConfig(k) => drop(self.custom_configs.remove(k)),
        }
    }

    /// The current value of an entity, or `None` when it no longer exists.
    pub fn entity(&self, key: &EntityKey) -> Option<Entity> {
        match key {
            EntityKey::Account(k) => self.accounts.get(k).cloned().map(Entity::Account),
            EntityKey::Namespace(s, n) => self.namespaces.get(&(s.clone(), n.clone())).cloned().map(Entity::Namespace),
            EntityKey::Function(k) => self.functions.get(k).cloned().map(Entity::Function),
            EntityKey::LoadBalancer(k) => self.load_balancers.get(k).cloned().map(Entity::LoadBalancer),
            EntityKey::Listener(k) => self.listeners.get(k).cloned().map(Entity::Listener),
            EntityKey::Rule(k) => self.rules.get(k).cloned().map(|r| Entity::Rule(Box::new(r))),
            EntityKey::Certificate(k) => self.certificates.get(k).cloned().map(Entity::Certificate),
            EntityKey::CustomConfig(k) => self.custom_configs.get(k).cloned().map(Entity::CustomConfig),
        }
    }

    /// Every code package a function's `$LATEST` or published versions run.
    pub fn code_in_use(&self) -> std::collections::BTreeSet<String> {
        let versions = self.functions.values().flat_map(|f| f.versions.values().map(|v| v.code.sha256.clone()));
        self.functions.values().map(|f| f.code.sha256.clone()).chain(versions).collect()
    }

    /// The enabled account with these keys.
    pub fn account_by_secret_id(&self, secret_id: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.secret_id == secret_id && !a.disabled)
    }

    /// Applies a command. On error the state is unchanged.
    pub fn apply(&mut self, command: Command) -> Result<Applied, StateError> {
        let (next, applied) = self.try_apply(command)?;
        *self = next;
        Ok(applied)
    }

    /// The state after a command, leaving this one as it is.
    pub fn try_apply(&self, command: Command) -> Result<(State, Applied), StateError> {
        let mut next = self.clone();
        let applied = next.apply_in_place(command)?;
        #[cfg(debug_assertions)]
        next.check_invariants();
        Ok((next, applied))
    }

    fn apply_in_place(&mut self, command: Command) -> Result<Applied, StateError> {
        let mut touched = self.apply_command(command)?;
        // Redirects to a rule that is gone go with it.
        let gone: Vec<String> = touched
            .iter()
            .filter_map(|k| match k {
                EntityKey::Rule(id) if !self.rules.contains_key(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        if !gone.is_empty() {
            for rule in self.rules.values_mut() {
                if rule.rewrite.as_ref().is_some_and(|r| gone.contains(&r.location_id)) {
                    rule.rewrite = None;
                    touched.push(EntityKey::Rule(rule.id.clone()));
                }
            }
        }
        Ok(Applied { touched })
    }

    fn apply_command(&mut self, command: Command) -> Result<Vec<EntityKey>, StateError> {
        let mut touched = Vec::new();
        match command {
            Command::PutAccount(account) => {
                touched.push(EntityKey::Account(account.uin.clone()));
                self.accounts.insert(account.uin.clone(), account);
            }
            Command::CreateNamespace { scope, name, description, now } => {
                if name == DEFAULT_NAMESPACE {
                    return Err(StateError::DefaultNamespace);
                }
                let key = (scope.clone(), name.clone());
                if self.namespaces.contains_key(&key) {
                    return Err(StateError::NamespaceExists(name));
                }
                let in_region = 1 + self.namespaces.keys().filter(|(s, _)| *s == scope).count();
                if in_region >= self.limits.namespaces_per_region {
                    return Err(StateError::NamespaceQuota { limit: self.limits.namespaces_per_region });
                }
                let namespace =
                    Namespace { scope: scope.clone(), name: name.clone(), description, add_time: now, mod_time: now };
                self.namespaces.insert(key, namespace);
                touched.push(EntityKey::Namespace(scope, name));
            }
            Command::UpdateNamespace { scope, name, description, now } => {
                if name == DEFAULT_NAMESPACE {
                    return Err(StateError::DefaultNamespace);
                }
                let namespace = self
                    .namespaces
                    .get_mut(&(scope.clone(), name.clone()))
                    .ok_or_else(|| StateError::NamespaceNotFound(name.clone()))?;
                namespace.description = description;
                namespace.mod_time = now;
                touched.push(EntityKey::Namespace(scope, name));
            }
            Command::DeleteNamespace { scope, name } => {
                if name == DEFAULT_NAMESPACE {
                    return Err(StateError::DefaultNamespace);
                }
                if !self.namespaces.contains_key(&(scope.clone(), name.clone())) {
                    return Err(StateError::NamespaceNotFound(name));
                }
                if self.functions.keys().any(|k| k.scope == scope && k.namespace == name) {
                    return Err(StateError::NamespaceNotEmpty(name));
                }
                self.namespaces.remove(&(scope.clone(), name.clone()));
                touched.push(EntityKey::Namespace(scope, name));
            }
            Command::SetReservedConcurrency { key, reserved_mem, now } => {
                // Not a new revision: running instances stay; the engine applies the new limit to new invocations.
                let function = self.function_mut(&key)?;
                function.reserved_mem = reserved_mem;
                function.mod_time = now;
                touched.push(EntityKey::Function(key));
            }
            Command::PublishVersion { key, description, now } => {
                let function = self.function_mut(&key)?;
                let version = function.last_version + 1;
                let published = FunctionVersion {
                    version,
                    description,
                    handler: function.handler.clone(),
                    config: function.config.clone(),
                    code: function.code.clone(),
                    add_time: now,
                };
                function.versions.insert(version, published);
                function.last_version = version;
                touched.push(EntityKey::Function(key));
            }
            Command::DeleteVersion { key, version } => {
                let function = self.function(&key)?;
                let name = key.name.clone();
                let Some(number) = function.version(&version).map(|v| v.version) else {
                    return Err(StateError::VersionNotFound { function: name, version });
                };
                let uses =
                    |a: &Alias| a.version == version || a.additional.as_ref().is_some_and(|(v, _)| *v == version);
                if let Some(alias) = function.aliases.values().find(|a| uses(a)) {
                    return Err(StateError::VersionInUse { function: name, version, alias: alias.name.clone() });
                }
                let bound = self.rules.values().find(|r| {
                    let uses = |t: &Option<FunctionTarget>| {
                        t.as_ref().is_some_and(|t| {
                            t.namespace == key.namespace && t.name == key.name && t.qualifier == version
                        })
                    };
                    self.load_balancers[&r.lb_id].scope == key.scope && (uses(&r.function) || uses(&r.fallback))
                });
                if let Some(rule) = bound {
                    return Err(StateError::VersionBound { function: name, version, rule: rule.id.clone() });
                }
                let function = self.function_mut(&key)?;
                function.versions.remove(&number);
                function.provisioned.remove(&version);
                touched.push(EntityKey::Function(key));
            }
            Command::PutAlias { key, alias, replace } => {
                let function = self.function(&key)?;
                let name = key.name.clone();
                for version in std::iter::once(&alias.version).chain(alias.additional.as_ref().map(|(v, _)| v)) {
                    if version != LATEST && function.version(version).is_none() {
                        return Err(StateError::VersionNotFound { function: name, version: version.clone() });
                    }
                }
                let previous = function.alias(&alias.name);
                match (previous.is_some(), replace) {
                    (true, false) => return Err(StateError::AliasExists { function: name, alias: alias.name }),
                    (false, true) => return Err(StateError::AliasNotFound { function: name, alias: alias.name }),
                    _ => {}
                }
                let mut alias = alias;
                if let Some(previous) = previous {
                    alias.add_time = previous.add_time;
                }
                self.function_mut(&key)?.aliases.insert(alias.name.clone(), alias);
                touched.push(EntityKey::Function(key));
            }
            Command::SetProvisionedConcurrency { key, version, count } => {
                let function = self.function_mut(&key)?;
                if function.version(&version).is_none() {
                    return Err(StateError::VersionNotFound { function: key.name.clone(), version });
                }
                match count {
                    Some(n) => function.provisioned.insert(version, n),
                    None => function.provisioned.remove(&version),
                };
                touched.push(EntityKey::Function(key));
            }
            Command::DeleteAlias { key, name } => {
                if name == DEFAULT_ALIAS {
                    return Err(StateError::DefaultAlias);
                }
                let function = self.function_mut(&key)?;
                if function.aliases.remove(&name).is_none() {
                    return Err(StateError::AliasNotFound { function: key.name.clone(), alias: name });
                }
                touched.push(EntityKey::Function(key));
            }
            Command::CreateFunction(new) => self.create_function(new, &mut touched)?,
            Command::UpdateFunctionCode { key, code, handler, now } => {
                let function = self.function_mut(&key)?;
                function.code = code;
                if let Some(handler) = handler {
                    function.handler = handler;
                }
                function.mod_time = now;
                function.revision += 1;
                touched.push(EntityKey::Function(key));
            }
            Command::UpdateFunctionConfiguration { key, patch, now } => {
                let function = self.function_mut(&key)?;
                if let Some(runtime) = patch.runtime
                    && runtime != function.runtime
                {
                    return Err(StateError::RuntimeChange(key));
                }
                let config = &mut function.config;
                if let Some(v) = patch.description {
                    config.description = v;
                }
                if let Some(v) = patch.memory_mb {
                    config.memory_mb = v;
                }
                if let Some(v) = patch.timeout_s {
                    config.timeout_s = v;
                }
                if let Some(v) = patch.init_timeout_s {
                    config.init_timeout_s = v;
                }
                if let Some(v) = patch.environment {
                    config.environment = v;
                }
                function.mod_time = now;
                function.revision += 1;
                touched.push(EntityKey::Function(key));
            }
            Command::DeleteFunction { key } => {
                if self.functions.remove(&key).is_none() {
                    return Err(StateError::FunctionNotFound(key));
                }
                // Its CLB bindings and fallbacks go with it; the rules stay and answer 503 until a target is bound
                // again.
                for rule in self.rules.values_mut() {
                    let here = |t: &Option<FunctionTarget>| {
                        t.as_ref().is_some_and(|t| {
                            t.namespace == key.namespace
                                && t.name == key.name
                                && self.load_balancers[&rule.lb_id].scope == key.scope
                        })
                    };
                    let (bound, fallback) = (here(&rule.function), here(&rule.fallback));
                    if bound {
                        rule.function = None;
                    }
                    if fallback {
                        rule.fallback = None;
                    }
                    if bound || fallback {
                        touched.push(EntityKey::Rule(rule.id.clone()));
                    }
                }
                touched.push(EntityKey::Function(key));
            }
            Command::CreateLoadBalancers(new) => {
                for lb in new {
                    self.create_load_balancer(lb, &mut touched)?;
                }
            }
            Command::DeleteLoadBalancers { scope, ids } => {
                for id in &ids {
                    self.load_balancer(&scope, id)?;
                }
                for id in ids {
                    self.load_balancers.remove(&id);
                    touched.push(EntityKey::LoadBalancer(id.clone()));
                    let listeners: Vec<String> =
                        self.listeners.values().filter(|l| l.lb_id == id).map(|l| l.id.clone()).collect();
                    for listener in listeners {
                        self.remove_listener(&listener, &mut touched);
                    }
                }
            }
            Command::CreateListeners { scope, lb_id, listeners, now } => {
                self.create_listeners(&scope, &lb_id, listeners, now, &mut touched)?
            }
            Command::DeleteListener { scope, lb_id, listener_id } => {
                self.listener(&scope, &lb_id, &listener_id)?;
                self.remove_listener(&listener_id, &mut touched);
            }
            Command::CreateRules { scope, lb_id, listener_id, rules, now } => {
                self.create_rules(&scope, &lb_id, &listener_id, rules, now, &mut touched)?
            }
            Command::DeleteRules { scope, lb_id, listener_id, selector, new_default_domain } => {
                self.delete_rules(&scope, &lb_id, &listener_id, selector, new_default_domain, &mut touched)?
            }
            Command::RegisterFunctionTargets { rule, targets, now } => {
                self.register_function_targets(&rule, targets, now, &mut touched)?
            }
            Command::SetRuleFallback { rule, fallback, now } => {
                self.set_rule_fallback(&rule, fallback, now, &mut touched)?
            }
            Command::AddRewrites { scope, lb_id, source_listener_id, rewrites } => {
                self.add_rewrites(&scope, &lb_id, &source_listener_id, rewrites, &mut touched)?
            }
            Command::DeleteRewrites { scope, lb_id, source_listener_id, target_listener_id, rewrites } => {
                self.listener(&scope, &lb_id, &source_listener_id)?;
                self.listener(&scope, &lb_id, &target_listener_id)?;
                for (source, target) in rewrites {
                    let not_found = || StateError::RedirectNotFound { from: source.clone(), to: target.clone() };
                    let rule = self.rules.get_mut(&source).filter(|r| r.listener_id == source_listener_id);
                    let rule = rule.ok_or_else(not_found)?;
                    let redirects = rule
                        .rewrite
                        .as_ref()
                        .is_some_and(|r| r.location_id == target && r.listener_id == target_listener_id);
                    if !redirects {
                        return Err(not_found());
                    }
                    rule.rewrite = None;
                    touched.push(EntityKey::Rule(source));
                }
            }
            Command::ModifyRule { rule, url, scheduler, session_expire_time, forward_type, health_check } => {
                let rule_id = self.resolve_rule(&rule)?;
                if let Some(url) = &url {
                    let current = &self.rules[&rule_id];
                    let clash = self.rules.values().find(|r| {
                        r.listener_id == current.listener_id
                            && r.domain == current.domain
                            && &r.url == url
                            && r.id != rule_id
                    });
                    if let Some(other) = clash {
                        return Err(StateError::RuleExists {
                            domain: other.domain.clone(),
                            url: url.clone(),
                            location: other.id.clone(),
                        });
                    }
                }
                let entry = self.rules.get_mut(&rule_id).expect("resolved rule exists");
                if let Some(url) = url {
                    entry.url = url;
                }
                if let Some(scheduler) = scheduler {
                    entry.scheduler = scheduler;
                }
                if let Some(time) = session_expire_time {
                    entry.session_expire_time = time;
                }
                if let Some(forward_type) = forward_type {
                    entry.forward_type = forward_type;
                }
                if let Some(check) = health_check {
                    entry.health_check = check;
                }
                touched.push(EntityKey::Rule(rule_id));
            }
            Command::RegisterTargets { of, targets } => {
                let limit = self.limits.targets_per_rule;
                let (holder, servers) = self.servers_mut(&of, &mut touched)?;
                for target in targets {
                    if servers.iter().any(|s| s.ip == target.ip && s.port == target.port) {
                        let target = format!("{}:{}", target.ip, target.port);
                        return Err(StateError::TargetExists { rule: holder, target });
                    }
                    if servers.len() >= limit {
                        return Err(StateError::TargetQuota { rule: holder, limit });
                    }
                    servers.push(target);
                }
            }
            Command::DeregisterTargets { of, targets } => {
                let (holder, servers) = self.servers_mut(&of, &mut touched)?;
                for (ip, port) in targets {
                    let Some(at) = servers.iter().position(|s| s.ip == ip && s.port == port) else {
                        return Err(StateError::TargetNotFound { rule: holder, target: format!("{ip}:{port}") });
                    };
                    servers.remove(at);
                }
            }
            Command::ModifyTargetWeight { of, targets, weight } => {
                let (holder, servers) = self.servers_mut(&of, &mut touched)?;
                for (ip, port) in targets {
                    let Some(server) = servers.iter_mut().find(|s| s.ip == ip && s.port == port) else {
                        return Err(StateError::TargetNotFound { rule: holder, target: format!("{ip}:{port}") });
                    };
                    server.weight = weight;
                }
            }
            Command::PutCertificate(certificate) => {
                touched.push(EntityKey::Certificate(certificate.id.clone()));
                self.certificates.insert(certificate.id.clone(), certificate);
            }
            Command::DeleteCertificate { uin, id } => {
                self.certificate(&uin, &id)?;
                let user = self
                    .listeners
                    .values()
                    .find(|l| l.tls.iter().chain(l.domain_tls.values()).any(|t| t.all_ids().any(|c| *c == id)));
                if let Some(listener) = user {
                    return Err(StateError::CertificateInUse { id, listener: listener.id.clone() });
                }
                self.certificates.remove(&id);
                touched.push(EntityKey::Certificate(id));
            }
            Command::SetListenerTls { scope, lb_id, listener_id, tls } => {
                let listener = self.listener(&scope, &lb_id, &listener_id)?;
                if !listener.protocol.has_listener_certificates(listener.sni_switch) {
                    return Err(StateError::TlsNotApplicable(listener_id, LISTENER_CERTIFICATES));
                }
                self.check_tls(&scope.uin, &tls)?;
                self.listeners.get_mut(&listener_id).expect("listener checked above").tls = Some(tls);
                touched.push(EntityKey::Listener(listener_id));
            }
            Command::ModifyListener { scope, lb_id, listener_id, change } => {
                self.listener(&scope, &lb_id, &listener_id)?;
                let listener = self.listeners.get_mut(&listener_id).expect("listener checked above");
                let ListenerChange { name, keepalive_enable, scheduler, session_expire_time, health_check } = change;
                if let Some(name) = name {
                    listener.name = name;
                }
                if let Some(scheduler) = scheduler {
                    listener.scheduler = scheduler;
                }
                if let Some(health_check) = health_check {
                    listener.health_check = health_check;
                }
                listener.keepalive_enable = keepalive_enable.unwrap_or(listener.keepalive_enable);
                listener.session_expire_time = session_expire_time.unwrap_or(listener.session_expire_time);
                touched.push(EntityKey::Listener(listener_id));
            }
            Command::ModifyDomain { scope, lb_id, listener_id, domain, tls, http2, default_server } => {
                let listener = self.listener(&scope, &lb_id, &listener_id)?;
                if !self.rules.values().any(|r| r.listener_id == listener_id && r.domain == domain) {
                    return Err(StateError::DomainNotFound(domain));
                }
                if let Some(tls) = &tls {
                    if !listener.sni_switch {
                        let why = "domain certificates need an HTTPS listener with SNI (SniSwitch 1)";
                        return Err(StateError::TlsNotApplicable(listener_id, why));
                    }
                    self.check_tls(&scope.uin, tls)?;
                }
                let listener = self.listeners.get_mut(&listener_id).expect("listener checked above");
                if let Some(tls) = tls {
                    listener.domain_tls.insert(domain.clone(), tls);
                }
                if default_server {
                    listener.default_domain = Some(domain.clone());
                }
                touched.push(EntityKey::Listener(listener_id.clone()));
                if let Some(http2) = http2 {
                    for rule in self.rules.values_mut().filter(|r| r.listener_id == listener_id && r.domain == domain) {
                        rule.http2 = http2;
                        touched.push(EntityKey::Rule(rule.id.clone()));
                    }
                }
            }
            Command::PutCustomConfig(config) => {
                if let Some(current) = self.custom_configs.get(&config.id) {
                    if current.scope != config.scope {
                        return Err(StateError::ConfigNotFound(config.id));
                    }
                    if current.kind != config.kind {
                        let wanted = current.kind.as_api();
                        return Err(StateError::ConfigPlace { id: config.id, kind: wanted, wanted });
                    }
                }
                touched.push(EntityKey::CustomConfig(config.id.clone()));
                self.custom_configs.insert(config.id.clone(), config);
            }
            Command::DeleteCustomConfigs { scope, ids } => {
                for id in &ids {
                    self.custom_config(&scope, id)?;
                    if let Some(place) = self.config_places(id).into_iter().next() {
                        return Err(StateError::ConfigInUse { id: id.clone(), place: place_name(&place) });
                    }
                }
                for id in ids {
                    self.custom_configs.remove(&id);
                    touched.push(EntityKey::CustomConfig(id));
                }
            }
            Command::BindCustomConfig { scope, id, places, bind } => {
                for place in places {
                    self.bind_custom_config(&scope, &id, &place, bind, &mut touched)?;
                }
            }
            Command::Batch(commands) => {
                for command in commands {
                    touched.extend(self.apply_in_place(command)?.touched);
                }
            }
            Command::DeregisterFunctionTargets { rule, targets } => {
                let rule_id = self.resolve_rule(&rule)?;
                let entry = self.rules.get_mut(&rule_id).expect("resolved rule exists");
                for target in targets {
                    // A rule holds one function: its name identifies the binding, whatever qualifier is named.
                    let bound = entry
                        .function
                        .as_ref()
                        .is_some_and(|t| t.namespace == target.namespace && t.name == target.name);
                    if !bound {
                        return Err(StateError::TargetNotBound { rule: rule_id, function: target.name });
                    }
                    entry.function = None;
                }
                touched.push(EntityKey::Rule(rule_id));
            }
        }
        Ok(touched)
    }

    fn create_function(&mut self, new: NewFunction, touched: &mut Vec<EntityKey>) -> Result<(), StateError> {
        if !self.accounts.contains_key(&new.key.scope.uin) {
            return Err(StateError::AccountNotFound(new.key.scope.uin));
        }
        if !self.namespace_exists(&new.key.scope, &new.key.namespace) {
            return Err(StateError::NamespaceNotFound(new.key.namespace));
        }
        if self.functions.contains_key(&new.key) {
            return Err(StateError::FunctionExists(new.key));
        }
        let in_namespace =
            self.functions.keys().filter(|k| k.scope == new.key.scope && k.namespace == new.key.namespace).count();
        if in_namespace >= self.limits.functions_per_namespace {
            return Err(StateError::FunctionQuota {
                namespace: new.key.namespace,
                limit: self.limits.functions_per_namespace,
            });
        }
        let function = Function {
            key: new.key.clone(),
            id: new.id,
            runtime: new.runtime,
            handler: new.handler,
            kind: new.kind,
            config: new.config,
            code: new.code,
            reserved_mem: None,
            versions: Default::default(),
            last_version: 0,
            aliases: Default::default(),
            provisioned: Default::default(),
            add_time: new.now,
            mod_time: new.now,
            revision: 1,
            tags: new.tags,
        };
        self.functions.insert(new.key.clone(), function);
        touched.push(EntityKey::Function(new.key));
        Ok(())
    }

    fn create_load_balancer(&mut self, new: NewLoadBalancer, touched: &mut Vec<EntityKey>) -> Result<(), StateError> {
        if !self.accounts.contains_key(&new.scope.uin) {
            return Err(StateError::AccountNotFound(new.scope.uin));
        }
        // A VIP is an address of this host: it belongs to one load balancer, whatever the account.
        let vip = match new.vip {
            Some(vip) => {
                if let Some(other) = self.load_balancers.values().find(|lb| lb.vip == vip) {
                    return Err(StateError::VipInUse(vip, other.id.clone()));
                }
                vip
            }
            None => self.free_vip().ok_or(StateError::NoFreeVip)?,
        };
        let in_region = self.load_balancers.values().filter(|lb| lb.scope == new.scope).count();
        if in_region >= self.limits.load_balancers_per_region {
            return Err(StateError::LoadBalancerQuota {
                region: new.scope.region,
                limit: self.limits.load_balancers_per_region,
            });
        }
        let lb = LoadBalancer {
            id: new.id.clone(),
            scope: new.scope,
            name: new.name,
            lb_type: new.lb_type,
            forward: new.forward,
            ip_version: new.ip_version,
            vip,
            vpc_id: new.vpc_id,
            subnet_id: new.subnet_id,
            project_id: new.project_id,
            create_time: new.now,
            tags: new.tags,
            config_id: None,
        };
        self.load_balancers.insert(new.id.clone(), lb);
        touched.push(EntityKey::LoadBalancer(new.id));
        Ok(())
    }

    fn create_listeners(
        &mut self,
        scope: &Scope,
        lb_id: &str,
        listeners: Vec<NewListener>,
        now: i64,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        self.load_balancer(scope, lb_id)?;
        for new in listeners {
            let existing: Vec<&Listener> = self.listeners.values().filter(|l| l.lb_id == lb_id).collect();
            if existing.len() >= self.limits.listeners_per_load_balancer {
                return Err(StateError::ListenerQuota {
                    lb: lb_id.to_string(),
                    limit: self.limits.listeners_per_load_balancer,
                });
            }
            let clash = existing
                .iter()
                .find(|l| l.port == new.port && l.protocol.transport_is_udp() == new.protocol.transport_is_udp());
            if let Some(other) = clash {
                return Err(StateError::PortInUse {
                    port: new.port,
                    protocol: other.protocol,
                    listener: other.id.clone(),
                });
            }
            let needs_tls = new.protocol.has_listener_certificates(new.sni_switch);
            match &new.tls {
                Some(tls) if needs_tls => self.check_tls(&scope.uin, tls)?,
                Some(_) => return Err(StateError::TlsNotApplicable(new.id, LISTENER_CERTIFICATES)),
                None if needs_tls => return Err(StateError::CertificateMissing(new.id)),
                None => {}
            }
            let listener = Listener {
                id: new.id.clone(),
                lb_id: lb_id.to_string(),
                name: new.name,
                protocol: new.protocol,
                port: new.port,
                scheduler: new.scheduler,
                session_expire_time: new.session_expire_time,
                sni_switch: new.sni_switch,
                keepalive_enable: new.keepalive_enable,
                default_domain: None,
                create_time: now,
                tls: new.tls,
                domain_tls: BTreeMap::new(),
                servers: Vec::new(),
                health_check: new.health_check,
                domain_configs: BTreeMap::new(),
            };
            self.listeners.insert(new.id.clone(), listener);
            touched.push(EntityKey::Listener(new.id));
        }
        Ok(())
    }

    fn create_rules(
        &mut self,
        scope: &Scope,
        lb_id: &str,
        listener_id: &str,
        rules: Vec<NewRule>,
        now: i64,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        let listener = self.listener(scope, lb_id, listener_id)?;
        if !listener.protocol.is_layer7() {
            return Err(StateError::NotLayer7(listener_id.to_string(), listener.protocol));
        }
        for new in rules {
            let on_listener: Vec<&Rule> = self.rules.values().filter(|r| r.listener_id == listener_id).collect();
            if on_listener.len() >= self.limits.rules_per_listener {
                return Err(StateError::RuleQuota {
                    listener: listener_id.to_string(),
                    limit: self.limits.rules_per_listener,
                });
            }
            if let Some(other) = on_listener.iter().find(|r| r.domain == new.domain && r.url == new.url) {
                return Err(StateError::RuleExists { domain: new.domain, url: new.url, location: other.id.clone() });
            }
            if let Some(tls) = &new.tls {
                if !self.listeners[listener_id].sni_switch {
                    let why = "domain certificates need an HTTPS listener with SNI (SniSwitch 1)";
                    return Err(StateError::TlsNotApplicable(listener_id.to_string(), why));
                }
                self.check_tls(&scope.uin, tls)?;
            }
            let listener = self.listeners.get_mut(listener_id).expect("listener checked above");
            if let Some(tls) = new.tls {
                listener.domain_tls.insert(new.domain.clone(), tls);
                touched.push(EntityKey::Listener(listener_id.to_string()));
            }
            if listener.default_domain.is_none() || new.default_server {
                listener.default_domain = Some(new.domain.clone());
                touched.push(EntityKey::Listener(listener_id.to_string()));
            }
            let rule = Rule {
                id: new.id.clone(),
                lb_id: lb_id.to_string(),
                listener_id: listener_id.to_string(),
                domain: new.domain,
                url: new.url,
                scheduler: new.scheduler,
                session_expire_time: new.session_expire_time,
                forward_type: new.forward_type,
                http2: new.http2,
                create_time: now,
                function: None,
                servers: Vec::new(),
                health_check: new.health_check,
                config_id: None,
                fallback: None,
                rewrite: None,
            };
            self.rules.insert(new.id.clone(), rule);
            touched.push(EntityKey::Rule(new.id));
        }
        Ok(())
    }

    fn delete_rules(
        &mut self,
        scope: &Scope,
        lb_id: &str,
        listener_id: &str,
        selector: RulesSelector,
        new_default_domain: Option<String>,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        self.listener(scope, lb_id, listener_id)?;
        let on_listener = |r: &&Rule| r.listener_id == listener_id;
        let doomed: Vec<String> = match selector {
            RulesSelector::Ids(ids) => {
                for id in &ids {
                    if self.rules.get(id).is_none_or(|r| r.listener_id != listener_id) {
                        return Err(StateError::RuleNotFound(id.clone()));
                    }
                }
                ids
            }
            RulesSelector::DomainUrl { domain, url } => {
                let rule = RuleRef {
                    scope: scope.clone(),
                    lb_id: lb_id.to_string(),
                    listener_id: listener_id.to_string(),
                    location_id: None,
                    domain,
                    url: Some(url),
                };
                vec![self.resolve_rule(&rule)?]
            }
        };
        for id in &doomed {
            self.rules.remove(id);
            touched.push(EntityKey::Rule(id.clone()));
        }
        // The default domain moves when its last rule goes: to the domain named, or the oldest remaining one.
        let default_domain = self.listeners[listener_id].default_domain.clone();
        let remaining: Vec<&Rule> = self.rules.values().filter(on_listener).collect();
        let default_survives = default_domain.as_ref().is_some_and(|d| remaining.iter().any(|r| &r.domain == d));
        let next_default = match new_default_domain {
            Some(domain) => {
                if !remaining.iter().any(|r| r.domain == domain) {
                    return Err(StateError::DomainNotFound(domain));
                }
                Some(domain)
            }
            None if default_survives => default_domain.clone(),
            None => remaining.iter().min_by_key(|r| (r.create_time, r.id.clone())).map(|r| r.domain.clone()),
        };
        if next_default != default_domain {
            self.listeners.get_mut(listener_id).expect("listener checked above").default_domain = next_default;
            touched.push(EntityKey::Listener(listener_id.to_string()));
        }
        // A domain without rules keeps no custom configuration.
        let listener = self.listeners.get_mut(listener_id).expect("listener checked above");
        let before = listener.domain_configs.len();
        listener.domain_configs.retain(|domain, _| remaining.iter().any(|r| &r.domain == domain));
        if listener.domain_configs.len() != before {
            touched.push(EntityKey::Listener(listener_id.to_string()));
        }
        Ok(())
    }

    /// A custom configuration of an account and region.
    pub fn custom_config(&self, scope: &Scope, id: &str) -> Result<&CustomConfig, StateError> {
        self.custom_configs.get(id).filter(|c| &c.scope == scope).ok_or_else(|| StateError::ConfigNotFound(id.into()))
    }

    /// Every place a custom configuration is bound to.
    pub fn config_places(&self, id: &str) -> Vec<ConfigPlace> {
        let mut places = Vec::new();
        for lb in self.load_balancers.values().filter(|lb| lb.config_id.as_deref() == Some(id)) {
            places.push(ConfigPlace::LoadBalancer(lb.id.clone()));
        }
        for listener in self.listeners.values() {
            for (domain, _) in listener.domain_configs.iter().filter(|(_, c)| c.as_str() == id) {
                places.push(ConfigPlace::Domain {
                    lb_id: listener.lb_id.clone(),
                    listener_id: listener.id.clone(),
                    domain: domain.clone(),
                });
            }
        }
        for rule in self.rules.values().filter(|r| r.config_id.as_deref() == Some(id)) {
            places.push(ConfigPlace::Rule {
                lb_id: rule.lb_id.clone(),
                listener_id: rule.listener_id.clone(),
                domain: rule.domain.clone(),
                location_id: rule.id.clone(),
            });
        }
        places
    }

    fn bind_custom_config(
        &mut self,
        scope: &Scope,
        id: &str,
        place: &ConfigPlace,
        bind: bool,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        let kind = self.custom_config(scope, id)?.kind;
        let wanted = match (kind, place) {
            (ConfigKind::Clb, ConfigPlace::LoadBalancer(_))
            | (ConfigKind::Server, ConfigPlace::Domain { .. })
            | (ConfigKind::Location, ConfigPlace::Rule { .. }) => None,
            (ConfigKind::Clb, _) => Some("load balancers"),
            (ConfigKind::Server, _) => Some("domains of listeners (a LoadBalancerId, ListenerId and Domain)"),
            (ConfigKind::Location, _) => Some("rules (a LoadBalancerId, ListenerId, Domain and LocationId)"),
        };
        if let Some(wanted) = wanted {
            return Err(StateError::ConfigPlace { id: id.to_string(), kind: kind.as_api(), wanted });
        }
        let value = bind.then(|| id.to_string());
        let not_bound = || StateError::ConfigNotBound { id: id.to_string(), place: place_name(place) };
        let slot = match place {
            ConfigPlace::LoadBalancer(lb_id) => {
                self.load_balancer(scope, lb_id)?;
                touched.push(EntityKey::LoadBalancer(lb_id.clone()));
                &mut self.load_balancers.get_mut(lb_id).expect("load balancer checked above").config_id
            }
            ConfigPlace::Domain { lb_id, listener_id, domain } => {
                let listener = self.listener(scope, lb_id, listener_id)?;
                if !listener.protocol.is_layer7() {
                    return Err(StateError::NotLayer7(listener_id.clone(), listener.protocol));
                }
                if !self.rules.values().any(|r| &r.listener_id == listener_id && &r.domain == domain) {
                    return Err(StateError::DomainNotFound(domain.clone()));
                }
                touched.push(EntityKey::Listener(listener_id.clone()));
                let configs = &mut self.listeners.get_mut(listener_id).expect("listener checked above").domain_configs;
                if !bind && configs.get(domain).map(String::as_str) != Some(id) {
                    return Err(not_bound());
                }
                match value {
                    Some(value) => configs.insert(domain.clone(), value),
                    None => configs.remove(domain),
                };
                return Ok(());
            }
            ConfigPlace::Rule { lb_id, listener_id, domain, location_id } => {
                self.listener(scope, lb_id, listener_id)?;
                let rule = self
                    .rules
                    .get_mut(location_id)
                    .filter(|r| &r.listener_id == listener_id && &r.domain == domain)
                    .ok_or_else(|| StateError::RuleNotFound(location_id.clone()))?;
                touched.push(EntityKey::Rule(location_id.clone()));
                &mut rule.config_id
            }
        };
        if !bind && slot.as_deref() != Some(id) {
            return Err(not_bound());
        }
        *slot = value;
        Ok(())
    }

    fn register_function_targets(
        &mut self,
        rule: &RuleRef,
        targets: Vec<FunctionTarget>,
        now: i64,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        let rule_id = self.bindable_rule(rule)?;
        for target in &targets {
            self.bindable_function(&rule.scope, target)?;
        }
        let entry = self.rules.get_mut(&rule_id).expect("resolved rule exists");
        if !entry.servers.is_empty() {
            return Err(StateError::RuleHasServers(rule_id));
        }
        if entry.fallback.is_some() {
            return Err(StateError::RuleHasFallback(rule_id));
        }
        for mut target in targets {
            if let Some(bound) = &entry.function {
                if bound.namespace == target.namespace && bound.name == target.name {
                    return Err(StateError::AlreadyBound { rule: rule_id, function: target.name });
                }
                return Err(StateError::RuleHasFunction(rule_id, bound.name.clone()));
            }
            target.add_time = now;
            entry.function = Some(target);
        }
        touched.push(EntityKey::Rule(rule_id));
        Ok(())
    }

    /// Redirects rules of `source_listener_id` to rules of other layer-7 listeners of the same load balancer. A
    /// rule redirects to one rule at a time, and a rule that is redirected to does not redirect itself.
    fn add_rewrites(
        &mut self,
        scope: &Scope,
        lb_id: &str,
        source_listener_id: &str,
        rewrites: Vec<(String, Rewrite)>,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        let source_listener = self.listener(scope, lb_id, source_listener_id)?;
        if !source_listener.protocol.is_layer7() {
            return Err(StateError::NotLayer7(source_listener.id.clone(), source_listener.protocol));
        }
        for (source, rewrite) in rewrites {
            let target_listener = self.listener(scope, lb_id, &rewrite.listener_id)?;
            if !target_listener.protocol.is_layer7() {
                return Err(StateError::NotLayer7(target_listener.id.clone(), target_listener.protocol));
            }
            if !matches!(rewrite.code, 301 | 302 | 307) {
                return Err(StateError::RedirectCode(rewrite.code));
            }
            let on = |id: &str, listener: &str| self.rules.get(id).filter(|r| r.listener_id == listener);
            let source_rule =
                on(&source, source_listener_id).ok_or_else(|| StateError::RuleNotFound(source.clone()))?;
            let target_rule = on(&rewrite.location_id, &rewrite.listener_id)
                .ok_or_else(|| StateError::RuleNotFound(rewrite.location_id.clone()))?;
            if source_rule.id == target_rule.id {
                return Err(StateError::RedirectToSelf(source));
            }
            if let Some(existing) = &source_rule.rewrite {
                return Err(StateError::AlreadyRedirected(source, existing.location_id.clone()));
            }
            if target_rule.rewrite.is_some() {
                return Err(StateError::RedirectSource(target_rule.id.clone()));
            }
            if self.rules.values().any(|r| r.rewrite.as_ref().is_some_and(|w| w.location_id == source)) {
                return Err(StateError::RedirectTarget(source));
            }
            self.rules.get_mut(&source).expect("source rule exists").rewrite = Some(rewrite);
            touched.push(EntityKey::Rule(source));
        }
        Ok(())
    }

    /// Sets or removes a rule's fallback function: the restrictions of binding a function hold for it too, and a
    /// rule that forwards to a function has no servers to fall back from.
    fn set_rule_fallback(
        &mut self,
        rule: &RuleRef,
        fallback: Option<FunctionTarget>,
        now: i64,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(), StateError> {
        let rule_id = match &fallback {
            Some(target) => {
                let rule_id = self.bindable_rule(rule)?;
                self.bindable_function(&rule.scope, target)?;
                rule_id
            }
            None => self.resolve_rule(rule)?,
        };
        let entry = self.rules.get_mut(&rule_id).expect("resolved rule exists");
        if let Some(bound) = &entry.function {
            return Err(StateError::RuleHasFunction(rule_id, bound.name.clone()));
        }
        if fallback.is_none() && entry.fallback.is_none() {
            return Err(StateError::NoFallback(rule_id));
        }
        entry.fallback = fallback.map(|target| FunctionTarget { add_time: now, ..target });
        touched.push(EntityKey::Rule(rule_id));
        Ok(())
    }

    /// The rule a function may be bound to, checked against the documented restrictions (contract 5.5) in the
    /// order a user meets them.
    fn bindable_rule(&self, rule: &RuleRef) -> Result<String, StateError> {
        let scope = &rule.scope;
        let lb = self.load_balancer(scope, &rule.lb_id)?;
        let listener = self.listener(scope, &rule.lb_id, &rule.listener_id)?;
        let account = self.accounts.get(&scope.uin).ok_or_else(|| StateError::AccountNotFound(scope.uin.clone()))?;
        if account.kind == AccountKind::Traditional {
            return Err(StateError::TraditionalAccount(scope.uin.clone()));
        }
        if !self.limits.binding_regions.contains(&scope.region) {
            return Err(StateError::BindingRegion(scope.region.clone()));
        }
        if !listener.protocol.is_layer7() {
            return Err(StateError::NotLayer7(listener.id.clone(), listener.protocol));
        }
        if lb.forward == 0 {
            return Err(StateError::ClassicLoadBalancer(lb.id.clone()));
        }
        if lb.vpc_id.is_empty() || lb.vpc_id == "0" {
            return Err(StateError::ClassicNetwork(lb.id.clone()));
        }
        if lb.ip_version == IpVersion::Ipv6FullChain {
            return Err(StateError::Ipv6FullChain(lb.id.clone()));
        }
        self.resolve_rule(rule)
    }

    /// Checks that a function may be bound: it exists, is an event function and has the qualifier named.
    fn bindable_function(&self, scope: &Scope, target: &FunctionTarget) -> Result<(), StateError> {
        let key = FunctionKey { scope: scope.clone(), namespace: target.namespace.clone(), name: target.name.clone() };
        let function = self.functions.get(&key).ok_or_else(|| StateError::TargetFunctionNotFound(key.clone()))?;
        if function.kind == FunctionType::Http {
            return Err(StateError::WebFunction(target.name.clone()));
        }
        if !function.has_qualifier(&target.qualifier) {
            return Err(StateError::QualifierNotFound {
                function: target.name.clone(),
                qualifier: target.qualifier.clone(),
            });
        }
        Ok(())
    }

    fn remove_listener(&mut self, listener_id: &str, touched: &mut Vec<EntityKey>) {
        self.listeners.remove(listener_id);
        touched.push(EntityKey::Listener(listener_id.to_string()));
        self.rules.retain(|id, rule| {
            let keep = rule.listener_id != listener_id;
            if !keep {
                touched.push(EntityKey::Rule(id.clone()));
            }
            keep
        });
    }

    /// The first address from `FIRST_AUTO_VIP` on that no load balancer uses.
    fn free_vip(&self) -> Option<String> {
        let used: std::collections::HashSet<&str> = self.load_balancers.values().map(|lb| lb.vip.as_str()).collect();
        let first = u32::from(FIRST_AUTO_VIP);
        let last = u32::from(std::net::Ipv4Addr::new(127, 255, 255, 254));
        (first..=last).map(|n| std::net::Ipv4Addr::from(n).to_string()).find(|ip| !used.contains(ip.as_str()))
    }

    // --- lookups, each checked against the caller's scope ---

    /// `default` always exists; the others once created.
    /// The servers of a rule (one that forwards to no function) or of a layer-4 listener, with the holder's id.
    fn servers_mut(
        &mut self,
        of: &TargetsOf,
        touched: &mut Vec<EntityKey>,
    ) -> Result<(String, &mut Vec<ServerTarget>), StateError> {
        match of {
            TargetsOf::Rule(rule) => {
                let rule_id = self.resolve_rule(rule)?;
                let entry = self.rules.get_mut(&rule_id).expect("resolved rule exists");
                if entry.function.is_some() {
                    return Err(StateError::RuleHasFunctionTarget(rule_id));
                }
                touched.push(EntityKey::Rule(rule_id.clone()));
                Ok((rule_id, &mut entry.servers))
            }
            TargetsOf::Listener { scope, lb_id, listener_id } => {
                let listener = self.listener(scope, lb_id, listener_id)?;
                if listener.protocol.is_layer7() {
                    return Err(StateError::Layer7Targets(listener_id.clone()));
                }
                touched.push(EntityKey::Listener(listener_id.clone()));
                let entry = self.listeners.get_mut(listener_id).expect("listener checked above");
                Ok((listener_id.clone(), &mut entry.servers))
            }
        }
    }

    /// A certificate of an account.
    pub fn certificate(&self, uin: &str, id: &str) -> Result<&Certificate, StateError> {
        self.certificates
            .get(id)
            .filter(|c| c.uin == uin)
            .ok_or_else(|| StateError::CertificateNotFound(id.to_string()))
    }

    /// The certificates named exist, are the account's and of the right kind; mutual TLS has its CA.
    fn check_tls(&self, uin: &str, tls: &TlsSettings) -> Result<(), StateError> {
        let kind = |id: &String, wanted: CertKind| {
            let found = self.certificate(uin, id)?.kind;
            if found == wanted {
                Ok(())
            } else {
                Err(StateError::CertificateKind { id: id.clone(), found: found.as_api(), wanted: wanted.as_api() })
            }
        };
        if tls.cert_ids.is_empty() {
            return Err(StateError::CertificateMissing(String::new()));
        }
        for id in &tls.cert_ids {
            kind(id, CertKind::Server)?;
        }
        match &tls.ca_cert_id {
            Some(ca) => kind(ca, CertKind::Ca)?,
            None if tls.mutual => return Err(StateError::CaMissing),
            None => {}
        }
        Ok(())
    }

    pub fn namespace_exists(&self, scope: &Scope, name: &str) -> bool {
        name == DEFAULT_NAMESPACE || self.namespaces.contains_key(&(scope.clone(), name.to_string()))
    }

    /// A function; a missing one is named by what is missing, its namespace or itself.
    pub fn function(&self, key: &FunctionKey) -> Result<&Function, StateError> {
        self.functions.get(key).ok_or_else(|| {
            if self.namespace_exists(&key.scope, &key.namespace) {
                StateError::FunctionNotFound(key.clone())
            } else {
                StateError::NamespaceNotFound(key.namespace.clone())
            }
        })
    }

    fn function_mut(&mut self, key: &FunctionKey) -> Result<&mut Function, StateError> {
        self.functions.get_mut(key).ok_or_else(|| StateError::FunctionNotFound(key.clone()))
    }

    /// A load balancer of this account and region; another account's is reported as missing.
    pub fn load_balancer(&self, scope: &Scope, id: &str) -> Result<&LoadBalancer, StateError> {
        self.load_balancers
            .get(id)
            .filter(|lb| &lb.scope == scope)
            .ok_or_else(|| StateError::LoadBalancerNotFound(id.to_string()))
    }

    pub fn listener(&self, scope: &Scope, lb_id: &str, listener_id: &str) -> Result<&Listener, StateError> {
        self.load_balancer(scope, lb_id)?;
        self.listeners
            .get(listener_id)
            .filter(|l| l.lb_id == lb_id)
            .ok_or_else(|| StateError::ListenerNotFound(listener_id.to_string()))
    }

    /// Finds the rule a request names: `LocationId` first, else `Domain` + `Url`.
    pub fn resolve_rule(&self, rule: &RuleRef) -> Result<String, StateError> {
        let listener = self.listener(&rule.scope, &rule.lb_id, &rule.listener_id)?;
        if !listener.protocol.is_layer7() {
            return Err(StateError::NotLayer7(listener.id.clone(), listener.protocol));
        }
        let found = match (&rule.location_id, &rule.domain, &rule.url) {
            (Some(id), _, _) => self.rules.get(id).filter(|r| r.listener_id == listener.id),
            (None, domain, Some(url)) => {
                let domain = domain.as_deref().or(listener.default_domain.as_deref());
                self.rules
                    .values()
                    .find(|r| r.listener_id == listener.id && Some(r.domain.as_str()) == domain && &r.url == url)
            }
            (None, _, None) => return Err(StateError::RuleUnnamed),
        };
        let what = || match (&rule.location_id, &rule.domain, &rule.url) {
            (Some(id), _, _) => id.clone(),
            (None, d, u) => {
                format!("domain {} and URL {}", d.as_deref().unwrap_or("(default)"), u.as_deref().unwrap_or("(none)"))
            }
        };
        found.map(|r| r.id.clone()).ok_or_else(|| StateError::RuleNotFound(what()))
    }

    /// The rules of a listener in creation order.
    pub fn rules_of(&self, listener_id: &str) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self.rules.values().filter(|r| r.listener_id == listener_id).collect();
        rules.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
        rules
    }

    /// The listeners of a load balancer in creation order.
    pub fn listeners_of(&self, lb_id: &str) -> Vec<&Listener> {
        let mut listeners: Vec<&Listener> = self.listeners.values().filter(|l| l.lb_id == lb_id).collect();
        listeners.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
        listeners
    }

    /// Every rule bound to a function, with its listener and load balancer.
    pub fn bindings_of(&self, key: &FunctionKey) -> Vec<(&LoadBalancer, &Listener, &Rule)> {
        let mut found = Vec::new();
        for rule in self.rules.values() {
            let Some(target) = &rule.function else {
                continue;
            };
            if target.namespace != key.namespace || target.name != key.name {
                continue;
            }
            let lb = &self.load_balancers[&rule.lb_id];
            if lb.scope != key.scope {
                continue;
            }
            found.push((lb, &self.listeners[&rule.listener_id], rule));
        }
        found.sort_by(|a, b| (a.2.create_time, &a.2.id).cmp(&(b.2.create_time, &b.2.id)));
        found
    }

    /// Checks the invariants that every command must keep (debug builds, after each apply).
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        for listener in self.listeners.values() {
            assert!(self.load_balancers.contains_key(&listener.lb_id), "listener {} has no load balancer", listener.id);
            if let Some(domain) = &listener.default_domain {
                assert!(
                    self.rules.values().any(|r| r.listener_id == listener.id && &r.domain == domain),
                    "listener {} default domain {domain} has no rule",
                    listener.id
                );
            }
        }
        for rule in self.rules.values() {
            let listener = self.listeners.get(&rule.listener_id);
            assert!(listener.is_some_and(|l| l.lb_id == rule.lb_id), "rule {} has no listener", rule.id);
        }
        let configs = self.load_balancers.values().filter_map(|lb| lb.config_id.as_ref());
        let configs = configs.chain(self.listeners.values().flat_map(|l| l.domain_configs.values()));
        for id in configs.chain(self.rules.values().filter_map(|r| r.config_id.as_ref())) {
            assert!(self.custom_configs.contains_key(id), "custom configuration {id} is bound but missing");
        }
        for listener in self.listeners.values() {
            for id in listener.tls.iter().chain(listener.domain_tls.values()).flat_map(TlsSettings::all_ids) {
                assert!(self.certificates.contains_key(id), "listener {} uses missing certificate {id}", listener.id);
            }
        }
    }
}

/// A place, as an error message names it.
fn place_name(place: &ConfigPlace) -> String {
    match place {
        ConfigPlace::LoadBalancer(lb_id) => format!("load balancer {lb_id}"),
        ConfigPlace::Domain { listener_id, domain, .. } => format!("domain {domain} of listener {listener_id}"),
        ConfigPlace::Rule { location_id, .. } => format!("rule {location_id}"),
    }
}
