//! What the balancer does with an HTTP request and its answer, whichever path reads and writes the bytes: where a
//! request goes (`route`), the head a server gets (`forwards`, `forwarded_for`), what an answer keeps and gains
//! (`keeps_answer_header`, `Decoration`), and the one count and access-log line of every request (`Account`).
//! Retries are decided in `retry.rs`. The direct path (`direct.rs`, over bytes) and the general path (`server.rs`
//! and `upstream.rs`, over `http` types) are two encoders of these decisions.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use http::StatusCode;

use super::Proxy;
use super::bridge::BALANCER_HEADERS;
use super::server::{Logged, Peer, Served, log_access};
use crate::snapshot::custom::Settings;
use crate::snapshot::router::Route;
use crate::snapshot::{ListenerRoutes, RouteTarget};
use crate::state::FunctionKey;

/// Where a request goes: its rule (when one matched) and what answers it.
pub(super) struct Decision<'a> {
    pub rule: Option<usize>,
    pub action: Action<'a>,
}

pub(super) enum Action<'a> {
    /// No rule matches the host and path: 404.
    NotFound,
    /// A redirect: the trailing-slash rule of contract 5.3 (301), or the rule's own (`ManualRewrite`,
    /// `AutoRewrite`).
    Redirect { status: StatusCode, location: String },
    /// The rule's function, the only target.
    Function(&'a (FunctionKey, String)),
    /// The rule's servers, and its fallback function when none of them can take the request.
    Servers,
    /// The rule has no target: 503.
    NoTarget,
}

/// Where a request for `host`, `path` and `query` on a listener goes.
pub(super) fn route<'a>(routes: &'a ListenerRoutes, host: &str, path: &str, query: Option<&str>) -> Decision<'a> {
    let rule = match routes.router.route(host, path) {
        Route::Rule(rule) => rule,
        Route::Redirect(to) => {
            let location = with_query(&to, query);
            return Decision {
                rule: None,
                action: Action::Redirect { status: StatusCode::MOVED_PERMANENTLY, location },
            };
        }
        _ => return Decision { rule: None, action: Action::NotFound },
    };
    let target = &routes.rules[rule];
    let action = if let Some(redirect) = &target.redirect {
        Action::Redirect { status: redirect.status, location: redirect.location(host, &with_query(path, query)) }
    } else if !target.servers.is_empty() || target.fallback.is_some() {
        Action::Servers
    } else {
        target.function.as_ref().map_or(Action::NoTarget, Action::Function)
    };
    Decision { rule: Some(rule), action }
}

/// `path`, with `?query` when there is one.
fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    }
}

/// Whether a header describes one connection and never crosses the balancer: hop-by-hop (RFC 9110 section 7.6.1),
/// or named by its message's `Connection` (`listed`).
pub(super) fn hop_by_hop(name: &str, listed: bool) -> bool {
    listed || super::h1::is_hop_by_hop(name)
}

/// Whether a request header a client sent goes on to a server (contract 1.2): not when it is hop-by-hop, or one of
/// the balancer's own, which the balancer sets itself.
pub(super) fn forwards(name: &str, listed: bool) -> bool {
    !(hop_by_hop(name, listed)
        || BALANCER_HEADERS.iter().any(|(balancer, _)| name.eq_ignore_ascii_case(balancer.as_str())))
}

/// The `X-Forwarded-For` a server gets: the client's address after what the client sent (its first such header),
/// or the address alone.
pub(super) fn forwarded_for<'a>(prior: Option<&[u8]>, client_ip: &'a [u8]) -> Cow<'a, [u8]> {
    match prior.filter(|prior| !prior.is_empty()) {
        Some(prior) => Cow::Owned([prior, b", ", client_ip].concat()),
        None => Cow::Borrowed(client_ip),
    }
}

/// Whether a header of a server's answer goes on to the client: not when it is hop-by-hop, named by the answer's
/// `Connection` (`listed`), or replaced by the configuration's `more_set_headers`.
pub(super) fn keeps_answer_header(name: &str, listed: bool, custom: &Settings) -> bool {
    !(hop_by_hop(name, listed) || custom.sets(name))
}

/// What the configuration adds to an answer whose kept headers are known: `Server` and `Date` when neither the
/// answer nor `more_set_headers` has one, then the `add_header` headers for its status, then `more_set_headers`.
pub(super) struct Decoration<'a> {
    pub custom: &'a Settings,
    pub status: u16,
}

impl<'a> Decoration<'a> {
    /// The `Server` value to add, given whether the answer kept one.
    pub fn server(&self, kept: bool) -> Option<&'static str> {
        (!kept && !self.custom.sets("server")).then(|| self.custom.server())
    }

    /// Whether a `Date` is to be added, given whether the answer kept one.
    pub fn date(&self, kept: bool) -> bool {
        !kept && !self.custom.sets("date")
    }

    /// The headers added after the answer's own, in order (`more_set_headers` names each header once).
    pub fn added(&self) -> impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)> {
        let added = self.custom.added(self.status).map(|add| (&add.name, &add.value));
        added.chain(self.custom.more_set_headers.iter().map(|(name, value)| (name, value)))
    }
}

/// Decorates an answer held as `http` types (the general path's answers, and the balancer's and functions'
/// answers on either path): its headers that `more_set_headers` replaces out, then what `Decoration` adds. `Date`
/// is the encoder's to add.
pub fn decorate<B>(custom: &Settings, response: &mut http::Response<B>) {
    let decoration = Decoration { custom, status: response.status().as_u16() };
    let headers = response.headers_mut();
    for (name, _) in &custom.more_set_headers {
        headers.remove(name);
    }
    if let Some(server) = decoration.server(headers.contains_key(http::header::SERVER)) {
        headers.insert(http::header::SERVER, http::HeaderValue::from_static(server));
    }
    for (name, value) in decoration.added() {
        headers.append(name.clone(), value.clone());
    }
}

/// The count (`fnlb_http_requests_total` and the rule's latency) and the access-log line of one request, made
/// exactly once: when the guard is dropped, whichever way the request ended (answered, broken mid-answer, cut by
/// the drain, or given up by the client: 499 when no answer was begun).
pub(super) struct Account<'a> {
    proxy: &'a Proxy,
    peer: &'a Peer,
    request: Counted<'a>,
    status: u16,
    length: Option<u64>,
    pub served: Served<'a>,
}

/// A request as its count and log line tell it.
pub(super) struct Counted<'a> {
    pub routes: &'a ListenerRoutes,
    /// Its rule, when one matched.
    pub target: Option<&'a RouteTarget>,
    pub started: Instant,
    /// Method, path and host, when there is an access log.
    pub logged: Option<(String, String, String)>,
}

/// nginx's status for a request whose client went away before its answer began.
pub(super) const CLIENT_CLOSED: u16 = 499;

impl<'a> Account<'a> {
    pub fn new(proxy: &'a Proxy, peer: &'a Peer, request: Counted<'a>) -> Account<'a> {
        Account { proxy, peer, request, status: CLIENT_CLOSED, length: None, served: Served::default() }
    }

    /// The answer begun: its status, and its body's length when known before it is sent.
    pub fn answered(&mut self, status: u16, length: Option<u64>) {
        self.status = status;
        self.length = length;
    }

    /// The server that took the request.
    pub fn server(&mut self, addr: Option<SocketAddr>) {
        self.served.server = addr;
    }
}

impl Drop for Account<'_> {
    fn drop(&mut self) {
        let Counted { routes, target, started, logged } = &self.request;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(target) = target {
            target.stats.record(self.status, seconds, self.length);
        }
        let (Some(log), Some((method, path, host))) = (&self.proxy.access_log, logged) else { return };
        let entry = Logged { host, method, path, status: self.status, length: self.length, seconds };
        log_access(log, self.peer, routes, *target, &entry, &self.served);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(snippet: &str) -> Settings {
        Settings::parse(snippet).expect("a valid snippet")
    }

    #[test]
    fn a_server_gets_neither_hop_by_hop_nor_balancer_headers_from_a_client() {
        for name in ["Connection", "keep-alive", "TE", "Upgrade", "X-Real-IP", "x-forwarded-for", "X-Stgw-Time"] {
            assert!(!forwards(name, false), "{name}");
        }
        assert!(forwards("Accept", false));
        assert!(!forwards("X-Private", true));
    }

    #[test]
    fn forwarded_for_appends_the_client_to_what_it_sent() {
        assert_eq!(&*forwarded_for(Some(b"10.0.0.1"), b"127.0.0.1"), b"10.0.0.1, 127.0.0.1");
        assert_eq!(&*forwarded_for(Some(b""), b"127.0.0.1"), b"127.0.0.1");
        assert_eq!(&*forwarded_for(None, b"127.0.0.1"), b"127.0.0.1");
    }

    #[test]
    fn more_set_headers_naming_server_or_date_replace_the_default_rather_than_join_it() {
        let custom = custom(
            "more_set_headers \"Server: old\"; more_set_headers \"Server: edge\"; more_set_headers \"Date: then\";",
        );
        assert!(!keeps_answer_header("Server", false, &custom));
        assert!(!keeps_answer_header("date", false, &custom));
        let decoration = Decoration { custom: &custom, status: 200 };
        assert_eq!(decoration.server(false), None);
        assert!(!decoration.date(false));
        let added: Vec<_> = decoration.added().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(added, [("server", "edge"), ("date", "then")]);
        let plain = Settings::default();
        let decoration = Decoration { custom: &plain, status: 200 };
        assert_eq!(decoration.server(false), Some(plain.server()));
        assert_eq!(decoration.server(true), None);
        assert!(decoration.date(false) && !decoration.date(true));
    }

    #[test]
    fn add_header_follows_the_status_unless_always() {
        let custom = custom("add_header X-A a; add_header X-B b always;");
        let names = |status| -> Vec<String> {
            Decoration { custom: &custom, status }.added().map(|(n, _)| n.to_string()).collect()
        };
        assert_eq!(names(200), ["x-a", "x-b"]);
        assert_eq!(names(502), ["x-b"]);
    }
}
