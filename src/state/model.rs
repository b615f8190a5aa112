//! The resources fnlb keeps: accounts, functions, load balancers, listeners and rules.
//!
//! Every type here is plain data, serialisable for the store. Times are Unix milliseconds supplied by the
//! caller of `State::apply`; the model never reads a clock.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a resource lives: one account (by `Uin`) in one region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub uin: String,
    pub region: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountKind {
    /// Bill-by-IP: may bind functions to load balancers.
    Standard,
    /// Bill-by-CVM: may not (contract 5.5).
    Traditional,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub uin: String,
    pub app_id: String,
    pub secret_id: String,
    pub secret_key: String,
    pub kind: AccountKind,
    /// When the account was created (Unix ms); its `default` namespace dates from then.
    #[serde(default)]
    pub created_ms: i64,
    /// Where it comes from: the accounts file (`--accounts`), or fnlb's first start.
    #[serde(default)]
    pub configured: bool,
    /// A configured account no longer in the accounts file: its keys are refused, its resources kept.
    #[serde(default)]
    pub disabled: bool,
}

/// A namespace other than `default` (which every account has in every region and is not stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub scope: Scope,
    pub name: String,
    pub description: String,
    pub add_time: i64,
    pub mod_time: i64,
}

/// A function is named by its account, region, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunctionKey {
    pub scope: Scope,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.scope.region, self.namespace, self.name)
    }
}

/// A code package, stored once by its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionType {
    /// An event function: `main_handler(event, context)`.
    Event,
    /// A web function (`Type` `HTTP`): stored, never bindable to a load balancer.
    Http,
}

impl FunctionType {
    pub fn as_api(self) -> &'static str {
        match self {
            FunctionType::Event => "Event",
            FunctionType::Http => "HTTP",
        }
    }
}

/// The settings of a function that `UpdateFunctionConfiguration` may change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub description: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub init_timeout_s: u32,
    /// User variables in the order given.
    pub environment: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub key: FunctionKey,
    pub id: String,
    pub runtime: String,
    pub handler: String,
    pub kind: FunctionType,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// Memory (MB) reserved for this function's concurrency: at most this much of its instances run at once.
    #[serde(default)]
    pub reserved_mem: Option<u32>,
    /// Published versions by number (immutable snapshots of code and configuration).
    #[serde(default)]
    pub versions: BTreeMap<u32, FunctionVersion>,
    /// The highest version number ever published (numbers are never reused).
    #[serde(default)]
    pub last_version: u32,
    /// Aliases by name; `$DEFAULT` always exists (pointing to `$LATEST` unless changed).
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
    /// Instances kept warm per published version (provisioned concurrency).
    #[serde(default)]
    pub provisioned: BTreeMap<String, u32>,
    pub add_time: i64,
    pub mod_time: i64,
    /// Bumped on every change of code or configuration: instances of an older revision are retired.
    pub revision: u64,
    /// Tags given at creation (`Tags`), in order: key and value.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// A published version: what `$LATEST` was when it was published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    pub version: u32,
    pub description: String,
    pub handler: String,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub add_time: i64,
}

/// An alias: a name for a version, optionally sending a share of the traffic to a second one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    /// `$LATEST` or a version number.
    pub version: String,
    /// (version, share in millionths) of the traffic that goes to another version.
    pub additional: Option<(String, u32)>,
    pub description: String,
    pub add_time: i64,
    pub mod_time: i64,
}

/// The name of the alias every function has.
pub const DEFAULT_ALIAS: &str = "$DEFAULT";
pub const LATEST: &str = "$LATEST";

// === impl Function ===

impl Function {
    /// Whether a qualifier names something of this function: `$LATEST`, a version or an alias.
    pub fn has_qualifier(&self, qualifier: &str) -> bool {
        qualifier == LATEST
            || qualifier == DEFAULT_ALIAS
            || self.version(qualifier).is_some()
            || self.aliases.contains_key(qualifier)
    }

    /// A published version named by its number.
    pub fn version(&self, qualifier: &str) -> Option<&FunctionVersion> {
        qualifier.parse::<u32>().ok().and_then(|n| self.versions.get(&n))
    }

    /// The alias, `$DEFAULT` included (pointing to `$LATEST` when never changed).
    pub fn alias(&self, name: &str) -> Option<Alias> {
        match self.aliases.get(name) {
            Some(alias) => Some(alias.clone()),
            None if name == DEFAULT_ALIAS => Some(Alias {
                name: DEFAULT_ALIAS.to_string(),
                version: LATEST.to_string(),
                additional: None,
                description: String::new(),
                add_time: self.add_time,
                mod_time: self.add_time,
            }),
            None => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancerType {
    Open,
    Internal,
}

impl LoadBalancerType {
    pub fn as_api(self) -> &'static str {
        match self {
            LoadBalancerType::Open => "OPEN",
            LoadBalancerType::Internal => "INTERNAL",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpVersion {
    Ipv4,
    /// IPv6 NAT64 (`AddressIPVersion` `IPV6`).
    Ipv6Nat64,
    Ipv6FullChain,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: String,
    pub scope: Scope,
    pub name: String,
    pub lb_type: LoadBalancerType,
    /// 1 for a CLB instance, 0 for a classic one.
    pub forward: u8,
    pub ip_version: IpVersion,
    pub vip: String,
    /// Empty for a classic-network (non-VPC) instance.
    pub vpc_id: String,
    pub subnet_id: String,
    pub project_id: i64,
    pub create_time: i64,
    pub tags: Vec<(String, String)>,
    /// The instance's layer-7 custom configuration (`ConfigType` `CLB`).
    #[serde(default)]
    pub config_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Udp,
    TcpSsl,
    Quic,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "TCP_SSL" => Protocol::TcpSsl,
            "QUIC" => Protocol::Quic,
            _ => return None,
        })
    }

    pub fn as_api(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::TcpSsl => "TCP_SSL",
            Protocol::Quic => "QUIC",
        }
    }

    /// Layer-7 listeners hold rules; layer-4 ones hold targets directly.
    pub fn is_layer7(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// Whether a listener holds certificates of its own: HTTPS without SNI, and TCP_SSL (with SNI, the
    /// certificates belong to its domains).
    pub fn has_listener_certificates(self, sni: bool) -> bool {
        self == Protocol::TcpSsl || (self == Protocol::Https && !sni)
    }

    /// UDP and QUIC share a port number with TCP-based listeners without clashing.
    pub fn transport_is_udp(self) -> bool {
        matches!(self, Protocol::Udp | Protocol::Quic)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub id: String,
    pub lb_id: String,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub scheduler: String,
    pub session_expire_time: u32,
    pub sni_switch: bool,
    pub keepalive_enable: bool,
    /// The domain used when a request's host matches no rule (layer 7 only; the first domain by default).
    pub default_domain: Option<String>,
    pub create_time: i64,
    /// The listener's certificates (HTTPS without SNI, TCP_SSL).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Each domain's certificates (HTTPS with SNI: `SniSwitch` 1).
    #[serde(default)]
    pub domain_tls: BTreeMap<String, TlsSettings>,
    /// Layer-4 listeners: their backend servers and the servers' health check (a TCP connect).
    #[serde(default)]
    pub servers: Vec<ServerTarget>,
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Each domain's layer-7 custom configuration (`ConfigType` `SERVER`).
    #[serde(default)]
    pub domain_configs: BTreeMap<String, String>,
}

/// A certificate as Tencent's SSL certificate service keeps it: a server certificate with its private key, or a
/// CA certificate that client certificates are checked against (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: String,
    /// The owning account.
    pub uin: String,
    pub name: String,
    pub kind: CertKind,
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// A server certificate's private key, PEM. No API action returns it.
    pub key_pem: Option<String>,
    pub create_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertKind {
    /// `SVR`: a server certificate with its key.
    Server,
    /// `CA`: a certificate authority for client certificates.
    Ca,
}

impl CertKind {
    pub fn as_api(self) -> &'static str {
        match self {
            CertKind::Server => "SVR",
            CertKind::Ca => "CA",
        }
    }
}

/// How a listener or a domain terminates TLS (`Certificate` / `MultiCertInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSettings {
    /// `MUTUAL`: clients present certificates signed by `ca_cert_id`; otherwise `UNIDIRECTIONAL`.
    pub mutual: bool,
    /// `SSLVerifyClient` `OPTIONAL` (mutual only): a client without a certificate is let through.
    pub verify_optional: bool,
    /// Server certificates: one, or several with different key algorithms (RSA and ECDSA side by side).
    pub cert_ids: Vec<String>,
    pub ca_cert_id: Option<String>,
}

impl TlsSettings {
    /// Every certificate it names.
    pub fn all_ids(&self) -> impl Iterator<Item = &String> {
        self.cert_ids.iter().chain(self.ca_cert_id.iter())
    }
}

/// A layer-7 custom configuration: an nginx-like snippet (`src/snapshot/custom.rs`) bound to load balancers
/// (`CLB`), to domains of listeners (`SERVER`) or to rules (`LOCATION`); the inner level wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomConfig {
    pub id: String,
    pub scope: Scope,
    pub name: String,
    pub kind: ConfigKind,
    pub content: String,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigKind {
    Clb,
    Server,
    Location,
}

impl ConfigKind {
    pub fn parse(s: &str) -> Option<ConfigKind> {
        Some(match s {
            "CLB" => ConfigKind::Clb,
            "SERVER" => ConfigKind::Server,
            "LOCATION" => ConfigKind::Location,
            _ => return None,
        })
    }

    pub fn as_api(self) -> &'static str {
        match self {
            ConfigKind::Clb => "CLB",
            ConfigKind::Server => "SERVER",
            ConfigKind::Location => "LOCATION",
        }
    }
}

/// Where a custom configuration is bound: a load balancer, one of its listeners' domains, or a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigPlace {
    LoadBalancer(String),
    Domain { lb_id: String, listener_id: String, domain: String },
    Rule { lb_id: String, listener_id: String, domain: String, location_id: String },
}

/// The one function a rule forwards to (the CLB trigger), or falls back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionTarget {
    pub namespace: String,
    pub name: String,
    pub qualifier: String,
    pub weight: u32,
    /// When the function was bound (Unix ms).
    #[serde(default)]
    pub add_time: i64,
    /// The name given with SCF's CreateTrigger; a binding made from the CLB side is named by its rule's id.
    #[serde(default)]
    pub trigger_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub lb_id: String,
    pub listener_id: String,
    pub domain: String,
    pub url: String,
    pub scheduler: String,
    pub session_expire_time: u32,
    pub forward_type: String,
    pub http2: bool,
    pub create_time: i64,
    pub function: Option<FunctionTarget>,
    /// Backend servers (a rule forwards to servers or to one function, not both).
    #[serde(default)]
    pub servers: Vec<ServerTarget>,
    #[serde(default)]
    pub health_check: HealthCheck,
    /// The rule's layer-7 custom configuration (`ConfigType` `LOCATION`).
    #[serde(default)]
    pub config_id: Option<String>,
    /// The function that answers when none of the rule's servers can (an fnlb extension: docs/decisions/0006).
    #[serde(default)]
    pub fallback: Option<FunctionTarget>,
    /// A redirect of the rule's requests to another rule (ManualRewrite, AutoRewrite): it takes precedence over
    /// the rule's targets.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
}

/// Where a rule redirects its requests (CLB's `RewriteTarget`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    pub listener_id: String,
    pub location_id: String,
    /// 301, 302 or 307.
    pub code: u16,
    /// Whether the redirect keeps the request's path and query (otherwise it goes to the target rule's URL).
    pub take_url: bool,
    /// Made by AutoRewrite (`RewriteType` `AUTO`) rather than ManualRewrite (`MANUAL`).
    pub auto: bool,
}

/// A backend server of a rule, by address (`EniIp` + `Port`): on this host or reachable from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTarget {
    pub ip: String,
    pub port: u16,
    /// 0–100; 0 takes no new requests.
    pub weight: u32,
    pub add_time: i64,
}

/// A rule's active health check of its servers (contract 5.3 `HealthCheck`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub timeout_s: u32,
    pub interval_s: u32,
    /// Consecutive successes that make a target healthy, and failures that make it unhealthy.
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Status classes that count as healthy: 1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx.
    pub http_codes: u32,
    pub path: String,
    /// The `Host` of a check; empty: the rule's domain.
    pub domain: String,
    /// `HEAD` or `GET`.
    pub method: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            timeout_s: 2,
            interval_s: 5,
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            http_codes: 31,
            path: "/".to_string(),
            domain: String::new(),
            method: "HEAD".to_string(),
        }
    }
}
