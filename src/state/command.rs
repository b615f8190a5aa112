//! Commands: every change to the state is one of these, built by the API from a request.
//!
//! Ids and times are decided by the caller, so that applying a command is deterministic.

use super::model::{
    Account, Alias, Certificate, CodeRef, ConfigPlace, CustomConfig, FunctionConfig, FunctionKey, FunctionTarget,
    FunctionType, HealthCheck, IpVersion, LoadBalancerType, Protocol, Rewrite, Scope, ServerTarget, TlsSettings,
};

#[derive(Clone, Debug)]
pub enum Command {
    PutAccount(Account),
    CreateNamespace {
        scope: Scope,
        name: String,
        description: String,
        now: i64,
    },
    UpdateNamespace {
        scope: Scope,
        name: String,
        description: String,
        now: i64,
    },
    DeleteNamespace {
        scope: Scope,
        name: String,
    },
    /// `None` removes the reservation.
    SetReservedConcurrency {
        key: FunctionKey,
        reserved_mem: Option<u32>,
        now: i64,
    },
    CreateFunction(NewFunction),
    UpdateFunctionCode {
        key: FunctionKey,
        code: CodeRef,
        handler: Option<String>,
        now: i64,
    },
    UpdateFunctionConfiguration {
        key: FunctionKey,
        patch: FunctionConfigPatch,
        now: i64,
    },
    DeleteFunction {
        key: FunctionKey,
    },
    PublishVersion {
        key: FunctionKey,
        description: String,
        now: i64,
    },
    DeleteVersion {
        key: FunctionKey,
        version: String,
    },
    /// Creates the alias, or (`replace`) changes an existing one.
    PutAlias {
        key: FunctionKey,
        alias: Alias,
        replace: bool,
    },
    DeleteAlias {
        key: FunctionKey,
        name: String,
    },
    /// Keeps `count` instances of a published version warm; `None` stops.
    SetProvisionedConcurrency {
        key: FunctionKey,
        version: String,
        count: Option<u32>,
    },
    /// Creates all of them or none.
    CreateLoadBalancers(Vec<NewLoadBalancer>),
    DeleteLoadBalancers {
        scope: Scope,
        ids: Vec<String>,
    },
    CreateListeners {
        scope: Scope,
        lb_id: String,
        listeners: Vec<NewListener>,
        now: i64,
    },
    DeleteListener {
        scope: Scope,
        lb_id: String,
        listener_id: String,
    },
    CreateRules {
        scope: Scope,
        lb_id: String,
        listener_id: String,
        rules: Vec<NewRule>,
        now: i64,
    },
    DeleteRules {
        scope: Scope,
        lb_id: String,
        listener_id: String,
        selector: RulesSelector,
        new_default_domain: Option<String>,
    },
    RegisterFunctionTargets {
        rule: RuleRef,
        targets: Vec<FunctionTarget>,
        now: i64,
    },
    DeregisterFunctionTargets {
        rule: RuleRef,
        targets: Vec<FunctionTarget>,
    },
    /// Redirects rules of one listener to rules of another listener of the same load balancer (`rewrites`:
    /// source location, and where it goes).
    AddRewrites {
        scope: Scope,
        lb_id: String,
        source_listener_id: String,
        rewrites: Vec<(String, Rewrite)>,
    },
    /// Removes redirects (source location, target location).
    DeleteRewrites {
        scope: Scope,
        lb_id: String,
        source_listener_id: String,
        target_listener_id: String,
        rewrites: Vec<(String, String)>,
    },
    /// Sets (or, with `None`, removes) the function a server rule falls back to.
    SetRuleFallback {
        rule: RuleRef,
        fallback: Option<FunctionTarget>,
        now: i64,
    },
    /// Changes a rule's URL, scheduling, persistence, backend protocol or health check (`None` keeps it).
    ModifyRule {
        rule: RuleRef,
        url: Option<String>,
        scheduler: Option<String>,
        session_expire_time: Option<u32>,
        forward_type: Option<String>,
        health_check: Option<HealthCheck>,
    },
    /// Adds backend servers to a rule or a layer-4 listener.
    RegisterTargets {
        of: TargetsOf,
        targets: Vec<ServerTarget>,
    },
    /// Removes backend servers (by address).
    DeregisterTargets {
        of: TargetsOf,
        targets: Vec<(String, u16)>,
    },
    /// Sets the weight of servers (by address).
    ModifyTargetWeight {
        of: TargetsOf,
        targets: Vec<(String, u16)>,
        weight: u32,
    },
    /// Creates a custom configuration, or changes the name and content of an existing one of the same scope.
    PutCustomConfig(CustomConfig),
    /// Deletes custom configurations that nothing is bound to.
    DeleteCustomConfigs {
        scope: Scope,
        ids: Vec<String>,
    },
    /// Binds a custom configuration to places (replacing what was bound there), or (`bind` false) unbinds it.
    BindCustomConfig {
        scope: Scope,
        id: String,
        places: Vec<ConfigPlace>,
        bind: bool,
    },
    /// Keeps a certificate (an upload, or one given inline with a listener or a domain).
    PutCertificate(Certificate),
    /// Refused while a listener or a domain uses it.
    DeleteCertificate {
        uin: String,
        id: String,
    },
    /// Replaces the certificates of an HTTPS (without SNI) or TCP_SSL listener.
    SetListenerTls {
        scope: Scope,
        lb_id: String,
        listener_id: String,
        tls: TlsSettings,
    },
    /// Changes a listener's attributes (those given).
    ModifyListener {
        scope: Scope,
        lb_id: String,
        listener_id: String,
        change: ListenerChange,
    },
    /// Changes the attributes every rule of one domain shares: its certificates (SNI), HTTP/2, whether it is the
    /// listener's default domain.
    ModifyDomain {
        scope: Scope,
        lb_id: String,
        listener_id: String,
        domain: String,
        tls: Option<TlsSettings>,
        http2: Option<bool>,
        default_server: bool,
    },
    /// Several commands that succeed or fail together.
    Batch(Vec<Command>),
}

/// What `ModifyListener` changes: a listener's name, whether its server connections are kept alive
/// (`KeepaliveEnable`) and, for a layer-4 listener, its scheduler, session persistence and health check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListenerChange {
    pub name: Option<String>,
    pub keepalive_enable: Option<bool>,
    pub scheduler: Option<String>,
    pub session_expire_time: Option<u32>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Clone, Debug)]
pub struct NewFunction {
    pub key: FunctionKey,
    pub id: String,
    pub runtime: String,
    pub handler: String,
    pub kind: FunctionType,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub tags: Vec<(String, String)>,
    pub now: i64,
}

/// Fields left `None` keep their value.
#[derive(Clone, Debug, Default)]
pub struct FunctionConfigPatch {
    pub description: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub init_timeout_s: Option<u32>,
    pub environment: Option<Vec<(String, String)>>,
    pub runtime: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewLoadBalancer {
    pub scope: Scope,
    pub id: String,
    pub name: String,
    pub lb_type: LoadBalancerType,
    pub forward: u8,
    pub ip_version: IpVersion,
    /// `None`: the first free address from `state::FIRST_AUTO_VIP` on.
    pub vip: Option<String>,
    pub vpc_id: String,
    pub subnet_id: String,
    pub project_id: i64,
    pub tags: Vec<(String, String)>,
    pub now: i64,
}

#[derive(Clone, Debug)]
pub struct NewListener {
    pub id: String,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub scheduler: String,
    pub session_expire_time: u32,
    pub sni_switch: bool,
    pub keepalive_enable: bool,
    pub tls: Option<TlsSettings>,
    /// Layer-4 listeners: their targets' health check.
    pub health_check: HealthCheck,
}

#[derive(Clone, Debug)]
pub struct NewRule {
    pub id: String,
    pub domain: String,
    pub url: String,
    pub default_server: bool,
    pub scheduler: String,
    pub session_expire_time: u32,
    pub forward_type: String,
    pub http2: bool,
    /// The domain's certificates (SNI listeners only).
    pub tls: Option<TlsSettings>,
    pub health_check: HealthCheck,
}

impl NewRule {
    /// A rule with CLB's defaults: `WRR`, no persistence, HTTP to its targets, no HTTP/2, the default health check.
    pub fn with_defaults(id: String, domain: String, url: String) -> NewRule {
        NewRule {
            id,
            domain,
            url,
            default_server: false,
            scheduler: "WRR".to_string(),
            session_expire_time: 0,
            forward_type: "HTTP".to_string(),
            http2: false,
            tls: None,
            health_check: HealthCheck::default(),
        }
    }
}

impl NewListener {
    /// A listener with CLB's defaults: `WRR`, no persistence, no SNI, no TLS, the default health check.
    pub fn with_defaults(id: String, name: String, protocol: Protocol, port: u16) -> NewListener {
        NewListener {
            id,
            name,
            protocol,
            port,
            scheduler: "WRR".to_string(),
            session_expire_time: 0,
            sni_switch: false,
            keepalive_enable: false,
            tls: None,
            health_check: HealthCheck::default(),
        }
    }
}

/// How a request names the rules it acts on.
#[derive(Clone, Debug)]
pub enum RulesSelector {
    Ids(Vec<String>),
    /// One rule by its URL and domain (the listener's default domain when none is given).
    DomainUrl {
        domain: Option<String>,
        url: String,
    },
}

/// One rule, by `LocationId` or by `Domain` + `Url` (the id wins when both are given).
#[derive(Clone, Debug)]
pub struct RuleRef {
    pub scope: Scope,
    pub lb_id: String,
    pub listener_id: String,
    pub location_id: Option<String>,
    pub domain: Option<String>,
    pub url: Option<String>,
}

/// What holds server targets: a layer-7 rule, or a layer-4 listener itself.
#[derive(Clone, Debug)]
pub enum TargetsOf {
    Rule(RuleRef),
    Listener { scope: Scope, lb_id: String, listener_id: String },
}
