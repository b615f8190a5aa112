use super::model::{FunctionKey, Protocol};

/// Why a command was refused. The API maps each variant to a Tencent error code (`api::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("account {0} does not exist")]
    AccountNotFound(String),
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(String),
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    #[error("the default namespace cannot be created, changed or deleted")]
    DefaultNamespace,
    #[error("namespace {0} still holds functions; delete them first")]
    NamespaceNotEmpty(String),
    #[error("this region already holds {limit} namespaces, the most it may hold")]
    NamespaceQuota { limit: usize },
    #[error("function {0} already exists")]
    FunctionExists(FunctionKey),
    #[error("function {0} does not exist")]
    FunctionNotFound(FunctionKey),
    #[error("function {0} does not exist in this region")]
    TargetFunctionNotFound(FunctionKey),
    #[error("namespace {namespace} already holds {limit} functions, the most it may hold")]
    FunctionQuota { namespace: String, limit: usize },
    #[error("the runtime of function {0} cannot be changed after creation")]
    RuntimeChange(FunctionKey),
    #[error("load balancer {0} does not exist")]
    LoadBalancerNotFound(String),
    #[error("VIP {0} is already used by load balancer {1}")]
    VipInUse(String, String),
    #[error("no free VIP is left in 127.0.0.0/8")]
    NoFreeVip,
    #[error("region {region} already holds {limit} load balancers, the most it may hold")]
    LoadBalancerQuota { region: String, limit: usize },
    #[error("listener {0} does not exist on this load balancer")]
    ListenerNotFound(String),
    #[error("port {port} is already used by listener {listener} ({protocol:?})")]
    PortInUse { port: u16, protocol: Protocol, listener: String },
    #[error("load balancer {lb} already has {limit} listeners, the most it may have")]
    ListenerQuota { lb: String, limit: usize },
    #[error("listener {id} is a {protocol} listener; rules and functions need an HTTP or HTTPS listener", id = .0, protocol = .1.as_api())]
    NotLayer7(String, Protocol),
    #[error("a rule for domain {domain} and URL {url} already exists ({location})")]
    RuleExists { domain: String, url: String, location: String },
    #[error("listener {listener} already has {limit} rules, the most it may have")]
    RuleQuota { listener: String, limit: usize },
    #[error("no rule matches {0}")]
    RuleNotFound(String),
    #[error("domain {0} has no rule on this listener")]
    DomainNotFound(String),
    #[error("rule {0} is already bound to function {1}; a rule forwards to one function only")]
    RuleHasFunction(String, String),
    #[error("function {function} is already bound to rule {rule}")]
    AlreadyBound { rule: String, function: String },
    #[error("function {function} is not bound to rule {rule}")]
    TargetNotBound { rule: String, function: String },
    #[error("load balancer {0} is a classic load balancer (Forward 0); functions can be bound only to CLB instances")]
    ClassicLoadBalancer(String),
    #[error("load balancer {0} is in the classic network; functions can be bound only to VPC instances")]
    ClassicNetwork(String),
    #[error(
        "load balancer {0} is an IPv6 (IPv6FullChain) instance; functions can be bound only to IPv4 and IPv6 NAT64 instances"
    )]
    Ipv6FullChain(String),
    #[error("function {0} is a web function (Type HTTP); only event functions can be bound to a load balancer")]
    WebFunction(String),
    #[error("account {0} is a traditional (bill-by-CVM) account, which cannot bind functions to load balancers")]
    TraditionalAccount(String),
    #[error("function {function} has no version {version}")]
    VersionNotFound { function: String, version: String },
    #[error("function {function} has no alias {alias}")]
    AliasNotFound { function: String, alias: String },
    #[error("function {function} already has an alias {alias}")]
    AliasExists { function: String, alias: String },
    #[error("the $DEFAULT alias cannot be deleted")]
    DefaultAlias,
    #[error("version {version} of function {function} is used by alias {alias}")]
    VersionInUse { function: String, version: String, alias: String },
    #[error("version {version} of function {function} is bound to rule {rule}")]
    VersionBound { function: String, version: String, rule: String },
    #[error("function {function} has no version or alias {qualifier}")]
    QualifierNotFound { function: String, qualifier: String },
    #[error("functions cannot be bound to load balancers in region {0}")]
    BindingRegion(String),
    #[error("rule {0} forwards to a function; a rule forwards to servers or to a function, not both")]
    RuleHasFunctionTarget(String),
    #[error("rule {0} forwards to servers; a rule forwards to servers or to a function, not both")]
    RuleHasServers(String),
    #[error("rule {0} has a fallback function; remove it before binding a function")]
    RuleHasFallback(String),
    #[error("rule {0} has no fallback function")]
    NoFallback(String),
    #[error("rule {0} already redirects to rule {1}; delete that redirect first")]
    AlreadyRedirected(String, String),
    #[error("rule {0} is the target of a redirect and cannot redirect itself")]
    RedirectTarget(String),
    #[error("rule {0} redirects elsewhere and cannot be the target of a redirect")]
    RedirectSource(String),
    #[error("rule {0} cannot redirect to itself")]
    RedirectToSelf(String),
    #[error("rule {from} does not redirect to rule {to}")]
    RedirectNotFound { from: String, to: String },
    #[error("redirect code {0} is not one of 301, 302 and 307")]
    RedirectCode(u16),
    #[error("listener {0} is a layer-7 listener: its targets belong to its rules (name a LocationId)")]
    Layer7Targets(String),
    #[error("rule {rule} already has {limit} servers, the most it may have")]
    TargetQuota { rule: String, limit: usize },
    #[error("server {target} is already registered with rule {rule}")]
    TargetExists { rule: String, target: String },
    #[error("server {target} is not registered with rule {rule}")]
    TargetNotFound { rule: String, target: String },
    #[error("certificate {0} does not exist")]
    CertificateNotFound(String),
    #[error("certificate {id} is a {found} certificate where a {wanted} certificate is needed")]
    CertificateKind { id: String, found: &'static str, wanted: &'static str },
    #[error("certificate {id} is used by listener {listener}")]
    CertificateInUse { id: String, listener: String },
    #[error("listener {0} needs a certificate")]
    CertificateMissing(String),
    #[error("mutual TLS needs a CA certificate (CertCaId or CertCaContent)")]
    CaMissing,
    #[error("the parameter `LocationId` is missing (or name the rule by Domain and Url)")]
    RuleUnnamed,
    #[error("listener {0}: {1}")]
    TlsNotApplicable(String, &'static str),
    #[error("custom configuration {0} does not exist")]
    ConfigNotFound(String),
    #[error("custom configuration {id} is bound to {place}; unbind it first")]
    ConfigInUse { id: String, place: String },
    #[error("custom configuration {id} is of type {kind}: it binds to {wanted}")]
    ConfigPlace { id: String, kind: &'static str, wanted: &'static str },
    #[error("custom configuration {id} is not bound to {place}")]
    ConfigNotBound { id: String, place: String },
}
