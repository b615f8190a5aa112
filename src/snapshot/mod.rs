//! The immutable view the data plane reads: compiled once per change, never per request.
//!
//! What a snapshot compiles lives below it (`router`, `custom`, `tls`), so that the data plane depends on
//! snapshots and the snapshot on the pure state, never the other way round.

pub mod custom;
pub mod router;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use self::custom::Settings;
use self::router::{RouteRule, Router, UrlPattern, parse_url, plain_domain};
use self::tls::ListenerTls;
use crate::state::{
    CodeRef, CustomConfig, Function, FunctionConfig, FunctionKey, FunctionTarget, HealthCheck, LATEST, Listener,
    LoadBalancer, Protocol, Rule, State,
};

/// The hash map of the request path's lookups (listener addresses, domains and URLs, rules, targets): a seeded
/// fast hash in place of SipHash, whose five lookups cost about 5 % of a proxied request's user-space
/// instructions. Every key in these maps comes from the configuration, so a client cannot fill one with colliding
/// keys.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Whether listeners of a protocol serve traffic in this version (the others are stored and listed).
pub fn serves(protocol: crate::state::Protocol) -> bool {
    use crate::state::Protocol;
    matches!(protocol, Protocol::Http | Protocol::Https | Protocol::Tcp | Protocol::TcpSsl | Protocol::Udp)
}

pub struct Snapshot {
    pub version: u64,
    /// The whole state, for the API's read actions.
    pub state: Arc<State>,
    /// Layer-7 listeners by the address they serve.
    pub http_listeners: FastMap<SocketAddr, Arc<ListenerRoutes>>,
    /// Layer-4 (TCP, TCP_SSL) listeners by the address they serve.
    pub stream_listeners: HashMap<SocketAddr, Arc<StreamListener>>,
    /// UDP listeners by the address they serve.
    pub datagram_listeners: HashMap<SocketAddr, Arc<StreamListener>>,
    pub functions: HashMap<FunctionKey, Arc<FunctionSpec>>,
}

/// The data plane's read-only source of snapshots: the current one (lock-free), a wake-up when a newer one is
/// published, and the version the data plane has put into effect. The writer (`control`) feeds it, from its own
/// commits and, in a cluster, from the changes other nodes commit; nothing here can change the state.
pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    published: watch::Sender<u64>,
    /// The newest version the data plane has put into effect (listeners bound or stopped).
    in_effect: watch::Sender<u64>,
}

/// One HTTP listener, ready to route.
pub struct ListenerRoutes {
    pub lb_id: String,
    pub listener_id: String,
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub router: Router,
    pub rules: Vec<RouteTarget>,
    /// HTTPS listeners: the certificates by server name.
    pub tls: Option<ListenerTls>,
    /// The load balancer's custom configuration: what holds for a connection before its first request is routed.
    pub custom: Arc<Settings>,
    /// Connections and handshakes (kept across snapshots while the listener exists).
    pub stats: Arc<crate::stats::ListenerStats>,
}

/// One layer-4 listener: its targets (as a rule's, named by the listener's id) and, for TCP_SSL, its TLS.
pub struct StreamListener {
    pub listener_id: String,
    pub target: RouteTarget,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Where a matched rule sends the request.
#[derive(Clone, Debug)]
pub struct RouteTarget {
    pub location_id: String,
    pub domain: String,
    pub function: Option<(FunctionKey, String)>,
    /// The function that answers when no server can: none takes traffic, or none could be reached.
    pub fallback: Option<(FunctionKey, String)>,
    /// Server targets and their weights; the rule's scheduler and health check.
    pub servers: Vec<(SocketAddr, u32)>,
    pub scheduler: String,
    /// Session persistence by cookie, seconds (0: off).
    pub session_expire_time: u32,
    /// `ForwardType` `HTTPS` or `GRPCS`: TLS to the servers.
    pub forward_tls: bool,
    /// `ForwardType` `GRPC` or `GRPCS`: HTTP/2 to the servers (gRPC needs its trailers).
    pub forward_h2: bool,
    /// The listener's `KeepaliveEnable`: HTTP/1.1 connections to the servers are kept and reused. Otherwise each
    /// request has a connection of its own, closed after the answer (CLB's short connections).
    pub keepalive: bool,
    pub health_check: HealthCheck,
    /// The custom configuration in effect for the rule: the load balancer's, its domain's and its own, merged.
    pub custom: Arc<Settings>,
    /// Where the rule redirects its requests (ManualRewrite, AutoRewrite), before any target.
    pub redirect: Option<Redirect>,
    /// Per-minute counts of the rule's requests (kept across snapshots while the rule exists).
    pub stats: Arc<crate::stats::RuleStats>,
}

/// A rule's redirect to another rule, resolved to what the `Location` is made of.
#[derive(Clone, Debug)]
pub struct Redirect {
    pub status: http::StatusCode,
    /// `http` or `https`: the target listener's protocol.
    pub scheme: &'static str,
    pub port: u16,
    /// The target rule's domain when it is a plain name; otherwise the request's host is kept.
    pub host: Option<String>,
    /// The target rule's URL; `None` keeps the request's path and query (`TakeUrl`).
    pub url: Option<String>,
}

impl Redirect {
    fn resolve(state: &State, rule: &Rule) -> Option<Redirect> {
        let rewrite = rule.rewrite.as_ref()?;
        let listener = state.listeners.get(&rewrite.listener_id)?;
        let target = state.rules.get(&rewrite.location_id)?;
        // A regular expression names no path to go to: the root does.
        let plain = |url: &str| match parse_url(url) {
            UrlPattern::Exact(p) | UrlPattern::Prefix(p) | UrlPattern::PrefixNoRegex(p) => p.to_string(),
            UrlPattern::Regex(_) | UrlPattern::RegexCaseless(_) => "/".to_string(),
        };
        Some(Redirect {
            status: http::StatusCode::from_u16(rewrite.code).ok()?,
            scheme: if listener.protocol == Protocol::Https { "https" } else { "http" },
            port: listener.port,
            host: plain_domain(&target.domain).map(str::to_string),
            url: (!rewrite.take_url).then(|| plain(&target.url)),
        })
    }

    /// The `Location` for a request to `host` (with or without a port) for `path_and_query`.
    pub fn location(&self, host: &str, path_and_query: &str) -> String {
        let host = match &self.host {
            Some(host) => host.as_str(),
            // `[v6]:port`, `name:port` or a bare host.
            None => match host.rfind(':') {
                Some(colon) if !host[colon..].contains(']') => &host[..colon],
                _ => host,
            },
        };
        let default_port = matches!((self.scheme, self.port), ("http", 80) | ("https", 443));
        let port = if default_port { String::new() } else { format!(":{}", self.port) };
        let path = self.url.as_deref().unwrap_or(path_and_query);
        format!("{}://{host}{port}{path}", self.scheme)
    }
}

/// What the function engine needs to run a function.
#[derive(Debug)]
pub struct FunctionSpec {
    pub function: Function,
    pub app_id: String,
}

/// (when the function was created, its revision): newer compares greater.
pub type Revision = (i64, u64);

/// One runnable version of a function: `$LATEST` or a published version.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `$LATEST` or the version number.
    pub label: String,
    pub handler: String,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// Orders what a version ran: a function created again starts later, `$LATEST` counts its changes, published
    /// versions never change.
    pub revision: Revision,
}

// === impl FunctionSpec ===

impl FunctionSpec {
    /// What a qualifier runs: `$LATEST`, a version, or an alias's version (its additional version when `pick`, a
    /// number in [0, 1) asked for only then, falls below the alias's weight).
    pub fn resolve(&self, qualifier: &str, pick: impl FnOnce() -> f64) -> Option<Resolved> {
        let function = &self.function;
        if qualifier == LATEST || function.version(qualifier).is_some() {
            return self.runnable(qualifier);
        }
        let alias = function.alias(qualifier)?;
        match &alias.additional {
            Some((version, share)) if pick() < f64::from(*share) / 1_000_000.0 => self.runnable(version),
            _ => self.runnable(&alias.version),
        }
    }

    /// `$LATEST` or a published version, by its label.
    pub fn runnable(&self, label: &str) -> Option<Resolved> {
        let function = &self.function;
        if label == LATEST {
            return Some(Resolved {
                label: LATEST.to_string(),
                handler: function.handler.clone(),
                config: function.config.clone(),
                code: function.code.clone(),
                revision: (function.add_time, function.revision),
            });
        }
        let version = function.version(label)?;
        Some(Resolved {
            label: version.version.to_string(),
            handler: version.handler.clone(),
            config: version.config.clone(),
            code: version.code.clone(),
            revision: (function.add_time, 0),
        })
    }
}

// === impl Snapshots ===

impl Snapshots {
    pub fn new(first: Snapshot) -> Snapshots {
        let (published, _) = watch::channel(first.version);
        let (in_effect, _) = watch::channel(0);
        Snapshots { current: ArcSwap::from_pointee(first), published, in_effect }
    }

    /// The current snapshot: lock-free, for every reader.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Wakes when a new snapshot is published (the value is its version).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Makes `snapshot` the current one. Only the writer publishes.
    pub(crate) fn publish(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        self.current.store(Arc::new(snapshot));
        self.published.send_replace(version);
    }

    /// The data plane reports that it serves snapshot `version`.
    pub fn mark_in_effect(&self, version: u64) {
        self.in_effect.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// The newest version the data plane serves.
    pub fn in_effect(&self) -> u64 {
        *self.in_effect.borrow()
    }

    /// Waits until the data plane serves snapshot `version` (or newer); false if `timeout` passed first.
    pub async fn wait_in_effect(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.in_effect.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version)).await.is_ok_and(|r| r.is_ok())
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles a state. With the `previous` snapshot, a layer-7 listener whose listener, load balancer and rules
    /// did not change keeps its compiled routes (routers and TLS configurations), so that a change costs what it
    /// touches rather than every listener's regular expressions and certificates again.
    pub fn compile(state: Arc<State>, version: u64, previous: Option<&Snapshot>) -> Snapshot {
        let mut http_listeners = FastMap::default();
        let mut stream_listeners = HashMap::new();
        let mut datagram_listeners = HashMap::new();
        // The previous snapshot's rule counts, gathered when the first listener is compiled again.
        let mut previous_stats: Option<HashMap<String, Arc<crate::stats::RuleStats>>> = None;
        for listener in state.listeners.values() {
            if !crate::snapshot::serves(listener.protocol) {
                continue;
            }
            let lb = &state.load_balancers[&listener.lb_id];
            let Ok(ip) = lb.vip.parse::<IpAddr>() else {
                continue;
            };
            let addr = SocketAddr::new(ip, listener.port);
            if !listener.protocol.is_layer7() {
                let target = RouteTarget {
                    location_id: listener.id.clone(),
                    domain: String::new(),
                    function: None,
                    fallback: None,
                    servers: servers(&listener.servers),
                    scheduler: listener.scheduler.clone(),
                    session_expire_time: listener.session_expire_time,
                    forward_tls: false,
                    forward_h2: false,
                    keepalive: false,
                    health_check: listener.health_check.clone(),
                    custom: Arc::default(),
                    redirect: None,
                    stats: Arc::default(),
                };
                let tls =
                    (listener.protocol == Protocol::TcpSsl).then(|| tls::listener_config(&state, listener)).flatten();
                let stream = Arc::new(StreamListener { listener_id: listener.id.clone(), target, tls });
                if listener.protocol.transport_is_udp() {
                    datagram_listeners.insert(addr, stream);
                } else {
                    stream_listeners.insert(addr, stream);
                }
                continue;
            }
            let rules = state.rules_of(&listener.id);
            let unchanged = previous.and_then(|prev| {
                let routes = prev.http_listeners.get(&addr)?;
                let same = routes.listener_id == listener.id
                    && prev.state.listeners.get(&listener.id) == Some(listener)
                    && prev.state.load_balancers.get(&lb.id) == Some(lb)
                    && prev.state.rules_of(&listener.id) == rules
                    && bound_configs(&prev.state, lb, listener, &rules) == bound_configs(&state, lb, listener, &rules)
                    && redirects(&prev.state, &rules) == redirects(&state, &rules);
                same.then(|| routes.clone())
            });
            if let Some(routes) = unchanged {
                http_listeners.insert(addr, routes);
                continue;
            }
            // The counts of rules that stay go on in the new routes.
            let previous_stats = previous_stats.get_or_insert_with(|| {
                let rules = previous.into_iter().flat_map(|p| p.http_listeners.values()).flat_map(|r| r.rules.iter());
                rules.map(|r| (r.location_id.clone(), r.stats.clone())).collect()
            });
            let router = Router::build(
                rules.iter().map(|r| RouteRule { domain: r.domain.clone(), url: r.url.clone() }),
                listener.default_domain.as_deref(),
            );
            let parsed = |id: Option<&String>| -> Settings {
                let Some(config) = id.and_then(|id| state.custom_configs.get(id)) else {
                    return Settings::default();
                };
                Settings::parse(&config.content).unwrap_or_else(|e| {
                    tracing::warn!(config = %config.id, error = %e, "A stored custom configuration does not parse.");
                    Settings::default()
                })
            };
            let lb_custom = Arc::new(parsed(lb.config_id.as_ref()));
            // Rules bound to the same configurations share one merged copy (most share the load balancer's).
            let mut merged: HashMap<(Option<&String>, Option<&String>), Arc<Settings>> = HashMap::new();
            let targets = rules
                .iter()
                .map(|&r| RouteTarget {
                    custom: {
                        let key = (listener.domain_configs.get(&r.domain), r.config_id.as_ref());
                        let settings = merged.entry(key).or_insert_with(|| match key {
                            (None, None) => lb_custom.clone(),
                            (domain, rule) => Arc::new(lb_custom.merged(&parsed(domain)).merged(&parsed(rule))),
                        });
                        settings.clone()
                    },
                    location_id: r.id.clone(),
                    domain: r.domain.clone(),
                    servers: servers(&r.servers),
                    scheduler: r.scheduler.clone(),
                    session_expire_time: r.session_expire_time,
                    forward_tls: matches!(r.forward_type.as_str(), "HTTPS" | "GRPCS"),
                    forward_h2: matches!(r.forward_type.as_str(), "GRPC" | "GRPCS"),
                    keepalive: listener.keepalive_enable,
                    health_check: r.health_check.clone(),
                    function: r.function.as_ref().map(|t| function_ref(lb, t)),
                    fallback: r.fallback.as_ref().map(|t| function_ref(lb, t)),
                    redirect: Redirect::resolve(&state, r),
                    stats: previous_stats.get(r.id.as_str()).cloned().unwrap_or_default(),
                })
                .collect();
            let tls =
                (listener.protocol == Protocol::Https).then(|| ListenerTls::compile(&state, listener, &router, &rules));
            let routes = ListenerRoutes {
                lb_id: lb.id.clone(),
                listener_id: listener.id.clone(),
                protocol: listener.protocol,
                addr,
                router,
                rules: targets,
                tls,
                custom: lb_custom,
                stats: previous
                    .and_then(|p| p.http_listeners.get(&addr))
                    .filter(|r| r.listener_id == listener.id)
                    .map(|r| r.stats.clone())
                    .unwrap_or_default(),
            };
            http_listeners.insert(addr, Arc::new(routes));
        }
        let functions = state
            .functions
            .values()
            .map(|f| {
                let app_id = state.accounts.get(&f.key.scope.uin).map(|a| a.app_id.clone()).unwrap_or_default();
                (f.key.clone(), Arc::new(FunctionSpec { function: f.clone(), app_id }))
            })
            .collect();
        Snapshot { version, state, http_listeners, stream_listeners, datagram_listeners, functions }
    }
}

/// The custom configurations a layer-7 listener's routes are compiled from.
fn bound_configs<'a>(
    state: &'a State,
    lb: &LoadBalancer,
    listener: &Listener,
    rules: &[&Rule],
) -> Vec<Option<&'a CustomConfig>> {
    let ids = lb.config_id.iter().chain(listener.domain_configs.values());
    ids.chain(rules.iter().filter_map(|r| r.config_id.as_ref())).map(|id| state.custom_configs.get(id)).collect()
}

/// The rules and listeners a listener's redirects lead to.
fn redirects<'a>(state: &'a State, rules: &[&Rule]) -> Vec<(Option<&'a Rule>, Option<&'a Listener>)> {
    let rewrites = rules.iter().filter_map(|r| r.rewrite.as_ref());
    rewrites.map(|w| (state.rules.get(&w.location_id), state.listeners.get(&w.listener_id))).collect()
}

/// A bound function, as the engine names it.
fn function_ref(lb: &LoadBalancer, target: &FunctionTarget) -> (FunctionKey, String) {
    let key = FunctionKey { scope: lb.scope.clone(), namespace: target.namespace.clone(), name: target.name.clone() };
    (key, target.qualifier.clone())
}

/// Server targets by address, with their weights (targets whose address does not parse are left out).
fn servers(targets: &[crate::state::ServerTarget]) -> Vec<(SocketAddr, u32)> {
    targets.iter().filter_map(|s| Some((SocketAddr::new(s.ip.parse().ok()?, s.port), s.weight))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Account, AccountKind, Command, HealthCheck, Limits, NewListener, NewLoadBalancer, NewRule};
    use crate::state::{IpVersion, LoadBalancerType, Scope};

    fn scope() -> Scope {
        Scope { uin: "100".into(), region: "ap-guangzhou".into() }
    }

    fn listener(id: &str, port: u16) -> Command {
        Command::CreateListeners {
            scope: scope(),
            lb_id: "lb-1".into(),
            listeners: vec![NewListener::with_defaults(id.into(), id.into(), Protocol::Http, port)],
            now: 1,
        }
    }

    fn rule(listener: &str, id: &str, domain: &str) -> Command {
        Command::CreateRules {
            scope: scope(),
            lb_id: "lb-1".into(),
            listener_id: listener.into(),
            rules: vec![NewRule {
                id: id.into(),
                domain: domain.into(),
                url: "/".into(),
                default_server: false,
                scheduler: "WRR".into(),
                session_expire_time: 0,
                forward_type: "HTTP".into(),
                http2: false,
                tls: None,
                health_check: HealthCheck::default(),
            }],
            now: 1,
        }
    }

    #[test]
    fn a_change_recompiles_only_the_listeners_it_touches() {
        let mut state = State::new(Limits::default());
        let account = Account {
            uin: "100".into(),
            app_id: "1".into(),
            secret_id: "id".into(),
            secret_key: "key".into(),
            kind: AccountKind::Standard,
            created_ms: 0,
            configured: false,
            disabled: false,
        };
        let lb = NewLoadBalancer {
            scope: scope(),
            id: "lb-1".into(),
            name: "lb".into(),
            lb_type: LoadBalancerType::Open,
            forward: 1,
            ip_version: IpVersion::Ipv4,
            vip: Some("127.0.0.9".into()),
            vpc_id: "vpc-1".into(),
            subnet_id: String::new(),
            project_id: 0,
            tags: vec![],
            now: 1,
        };
        for command in [
            Command::PutAccount(account),
            Command::CreateLoadBalancers(vec![lb]),
            listener("lbl-a", 80),
            listener("lbl-b", 81),
            rule("lbl-a", "loc-a", "a.test"),
            rule("lbl-b", "loc-b", "b.test"),
        ] {
            state.apply(command).unwrap();
        }
        let first = Snapshot::compile(Arc::new(state.clone()), 1, None);
        state.apply(rule("lbl-b", "loc-b2", "b2.test")).unwrap();
        let second = Snapshot::compile(Arc::new(state), 2, Some(&first));
        let routes = |s: &Snapshot, port: u16| s.http_listeners[&SocketAddr::from(([127, 0, 0, 9], port))].clone();
        assert!(Arc::ptr_eq(&routes(&first, 80), &routes(&second, 80)), "the untouched listener is kept");
        assert!(!Arc::ptr_eq(&routes(&first, 81), &routes(&second, 81)), "the changed listener is compiled again");
        assert_eq!(routes(&second, 81).rules.len(), 2);
    }
}
