//! One layer-7 listener: accept connections, route each request, forward it to its target.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::LazyConfigAcceptor;
use tracing::Instrument;

use super::bridge::{self, RequestInfo};
use super::keepalive::{Expiry, KeepAlive};
use super::policy::{self, Account, Action, Counted};
use super::respond::{self, Body};
use super::upload::{BodyFailure, Draining, Upload};
use super::upstream::Forwarded;
use super::{Proxy, ProxySettings};
use crate::functions::status;
use crate::snapshot::custom::{Settings, Var};
use crate::snapshot::{ListenerRoutes, RouteTarget, Snapshot};
use crate::state::FunctionKey;

/// Accepts connections until `stop` turns true, then lets open connections finish their current request.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let caps = super::connection_caps(&proxy.settings);
    let (phase, phases) = watch::channel(Phase::Serving);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, client, slot) = match super::admit(accepted, &caps, addr).await {
            super::Accepted::Open(stream, client, slot) => (stream, client, slot),
            super::Accepted::Refused => {
                if let Some(routes) = proxy.snapshots.current().http_listeners.get(&addr) {
                    routes.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            super::Accepted::Failed => continue,
        };
        let proxy = proxy.clone();
        let phase = phases.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let routes = proxy.snapshots.current().http_listeners.get(&addr).cloned();
            let Some(routes) = routes else { return };
            let stats = routes.stats.clone();
            stats.connections_total.fetch_add(1, Ordering::Relaxed);
            stats.connections_active.fetch_add(1, Ordering::Relaxed);
            let _open = Open(&stats);
            let Some(tls) = &routes.tls else {
                return serve_connection(proxy, &routes, phase, stream, addr, client, false).await;
            };
            let accepted = async {
                let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
                let config = tls.for_name(&routes.router, start.client_hello().server_name()).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "no certificate for this server name")
                })?;
                start.into_stream(config).await
            };
            match tokio::time::timeout(proxy.settings.tls_handshake_timeout, accepted).await {
                Ok(Ok(stream)) => {
                    stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    serve_connection(proxy.clone(), &routes, phase, stream, addr, client, true).await
                }
                Ok(Err(e)) => {
                    stats.tls_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%client, error = %e, "TLS handshake failed.");
                }
                Err(_) => {
                    stats.tls_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%client, "TLS handshake timed out.");
                }
            }
        });
    }
    drop(listener);
    let _ = closed.send(());
    let _ = phase.send(Phase::Draining);
    if tokio::time::timeout(proxy.settings.drain_timeout, caps.closed()).await.is_err() {
        tracing::debug!(%addr, "Connections still open after the drain period were cut.");
        let _ = phase.send(Phase::Cut);
    }
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a crate::stats::ListenerStats);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a listener is in its life, as its connections see it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Serving,
    /// Stopped accepting: connections finish their current exchange and close.
    Draining,
    /// The drain period is over: connections still open are cut.
    Cut,
}

/// Serves HTTP/1.1 or HTTP/2 on one accepted connection (plain, or after the TLS handshake) until it ends, its
/// keep-alive limits end it, or the listener drains: on the direct path (`direct.rs`) while its requests are of
/// the kind it takes, on hyper's from the first that is not.
async fn serve_connection<I>(
    proxy: Arc<Proxy>,
    routes: &ListenerRoutes,
    mut phase: watch::Receiver<Phase>,
    io: I,
    addr: SocketAddr,
    client: SocketAddr,
    tls: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let settings = &proxy.settings;
    let custom = &routes.custom;
    let header_timeout = custom.client_header_timeout.unwrap_or(settings.header_read_timeout);
    let idle_timeout = custom.keepalive_timeout.unwrap_or(settings.keepalive_timeout);
    let max_requests = custom.keepalive_requests.unwrap_or(settings.keepalive_requests);
    // hyper's own header timer also runs while a kept-alive connection waits for its next request: it is the
    // backstop, and `KeepAlive` keeps the exact limits.
    let builder = connection_builder(settings, header_timeout.max(idle_timeout));
    let keepalive = Arc::new(KeepAlive::new(header_timeout, idle_timeout, max_requests));
    let peer = Arc::new(Peer {
        addr,
        vip: addr.ip().to_string(),
        client,
        client_ip: bridge::ip_value(client.ip()),
        tls,
        keepalive: keepalive.clone(),
    });
    let io = if !proxy.settings.direct_path {
        super::direct::Prefixed::new(io, bytes::Bytes::new())
    } else {
        match super::direct::serve(&proxy, &peer, io, &phase).await {
            super::direct::Left::Closed => return,
            super::direct::Left::HandedOver(io) => io,
        }
    };
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let peer = peer.clone();
        async move {
            // Counted until the answer is handed over, or the exchange is dropped (an HTTP/2 stream reset).
            let _busy = peer.keepalive.begin();
            Ok::<_, Infallible>(handle(&proxy, &peer, req).await)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let expired = keepalive.expired();
    tokio::pin!(conn, expired);
    let mut finishing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%client, error = %e, "Connection ended with an error.");
                }
                return;
            }
            // Serving, the next phase is a drain; finishing, it is the cut.
            changed = phase.wait_for(|p| *p == Phase::Cut || (*p == Phase::Draining && !finishing)) => {
                if changed.map_or(true, |p| *p == Phase::Cut) {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                finishing = true;
            }
            expiry = &mut expired, if !finishing => match expiry {
                Expiry::HeaderTimeout => return,
                Expiry::Finish => {
                    conn.as_mut().graceful_shutdown();
                    finishing = true;
                }
            },
        }
    }
}

/// The number of header fields hyper allows when not told otherwise.
const HYPER_MAX_HEADERS: usize = 100;

fn connection_builder(settings: &ProxySettings, header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192));
    // hyper's own limit is 100 on the stack; naming it costs two allocations per request.
    if settings.max_headers != HYPER_MAX_HEADERS {
        http1.max_headers(settings.max_headers);
    }
    builder.http2().timer(TokioTimer::new()).max_header_list_size(settings.max_header_bytes as u32);
    builder
}

/// One client connection, as its requests see it.
pub(super) struct Peer {
    /// The listener's address (the VIP and port), and the VIP as text.
    pub addr: SocketAddr,
    vip: String,
    pub client: SocketAddr,
    /// The client's address as a header value (`X-Real-IP`).
    pub client_ip: HeaderValue,
    pub tls: bool,
    pub keepalive: Arc<KeepAlive>,
}

async fn handle(proxy: &Proxy, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    let start_ms = crate::clock::now_ms();
    let started = std::time::Instant::now();
    let snapshot = proxy.snapshots.current();
    let Some(routes) = snapshot.http_listeners.get(&peer.addr) else {
        return respond::not_found();
    };
    let host = request_host(&req);
    // What the access log tells of the request, kept only when there is one.
    let logged = proxy.access_log.as_ref().map(|_| {
        let host = host.clone().unwrap_or_default();
        (req.method().to_string(), req.uri().path().to_string(), host)
    });
    let Some(host) = host else {
        let mut account = Account::new(proxy, peer, Counted { routes, target: None, started, logged });
        return answer(&mut account, &routes.custom, respond::bad_request());
    };
    let decision = policy::route(routes, &host, req.uri().path(), req.uri().query());
    let target = decision.rule.map(|rule| &routes.rules[rule]);
    let custom = target.map_or(&routes.custom, |t| &t.custom);
    let settings = &proxy.settings;
    peer.keepalive.limit(
        custom.keepalive_timeout.unwrap_or(settings.keepalive_timeout),
        custom.keepalive_requests.unwrap_or(settings.keepalive_requests),
    );
    let mut account = Account::new(proxy, peer, Counted { routes, target, started, logged });
    let response = match (decision.action, target) {
        (Action::Redirect { status, location }, _) => respond::redirect(status, &location),
        (Action::NotFound, _) | (_, None) => respond::not_found(),
        (action, Some(target)) => {
            let request = Routed { routes, target, peer, host: &host, start_ms };
            forward(proxy, &snapshot, &request, action, req, &mut account.served).await
        }
    };
    answer(&mut account, custom, response)
}

/// A request's host (RFC 9112 section 3.2: an HTTP/1.1 request without `Host`, or any with two `Host` lines or an
/// unreadable one, is 400); an HTTP/1.0 or HTTP/2 one may give it in its target.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => None,
        (Some(host), None) => host.to_str().ok().map(str::to_string),
        (None, _) if req.version() == http::Version::HTTP_11 => None,
        (None, _) => Some(req.uri().authority().map(|a| a.to_string()).unwrap_or_default()),
    }
}

/// The answer as the client gets it, decorated, and counted as begun.
fn answer(account: &mut Account<'_>, custom: &Settings, mut response: Response<Body>) -> Response<Body> {
    policy::decorate(custom, &mut response);
    account.answered(response.status().as_u16(), hyper::body::Body::size_hint(response.body()).exact());
    response
}

/// What the access log tells of an answered request.
pub(super) struct Logged<'a> {
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub length: Option<u64>,
    pub seconds: f64,
}

/// Writes a request's access log line.
pub(super) fn log_access(
    log: &super::access_log::AccessLog,
    peer: &Peer,
    routes: &ListenerRoutes,
    target: Option<&RouteTarget>,
    entry: &Logged<'_>,
    served: &Served<'_>,
) {
    let target_text = match (&served.function, served.server) {
        (Some((key, qualifier)), _) => format!("function:{}/{}:{qualifier}", key.namespace, key.name),
        (None, Some(addr)) => format!("server:{addr}"),
        (None, None) => "-".to_string(),
    };
    log.record(&super::access_log::Entry {
        client: peer.client,
        vip: peer.addr,
        host: entry.host,
        method: entry.method,
        path: entry.path,
        status: entry.status,
        bytes: entry.length,
        duration_ms: entry.seconds * 1000.0,
        lb_id: &routes.lb_id,
        listener_id: &routes.listener_id,
        rule: target.map(|t| t.location_id.as_str()),
        target: &target_text,
        request_id: served.request_id.get().map_or("-", String::as_str),
    });
}

/// Who answered a request, for the access log.
#[derive(Default)]
pub(super) struct Served<'a> {
    pub function: Option<&'a (FunctionKey, String)>,
    pub server: Option<SocketAddr>,
    /// The request's id, once one was needed (functions, `$stgw_request_id`).
    pub request_id: std::sync::OnceLock<String>,
}

/// A routed request, as its forwarding sees it.
pub(super) struct Routed<'a> {
    pub routes: &'a ListenerRoutes,
    pub target: &'a RouteTarget,
    pub peer: &'a Peer,
    pub host: &'a str,
    pub start_ms: i64,
}

/// Sends a routed request to its rule's servers or function; to its fallback function when no server can take it.
async fn forward<'a>(
    proxy: &Proxy,
    snapshot: &Snapshot,
    request: &Routed<'a>,
    action: Action<'a>,
    req: Request<Incoming>,
    served: &mut Served<'a>,
) -> Response<Body> {
    let custom = &request.target.custom;
    let max_body = custom.client_max_body_size.unwrap_or(proxy.settings.max_body_bytes);
    let declared = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body) {
        if req.version() == http::Version::HTTP_2 {
            return respond::too_large().map(|answer| Draining::after(answer, req.into_body()).boxed());
        }
        return respond::too_large();
    }
    let body_gap = custom.client_body_timeout.unwrap_or(proxy.settings.body_read_timeout);
    // A function's event holds at most its own limit (6 MB) of body, whichever limit is lower.
    let max_event = proxy.functions.settings().max_event_bytes as u64;
    let event_bound = matches!(action, Action::Function(_)) && max_event < max_body;
    let limit = if event_bound { max_event } else { max_body };
    let version = req.version();
    let req = req.map(|body| Upload::new(body, body_gap, limit));
    let progress = req.body().progress();
    let mut response = send(proxy, snapshot, request, action, req, event_bound, served).await;
    // An HTTP/1 connection whose request body could not be read cannot be read further: hyper closes it after the
    // answer, which says so (RFC 9112 section 9.6).
    let broken = progress.is_some_and(|p| p.failure() == Some(BodyFailure::Broken));
    if broken && version <= http::Version::HTTP_11 {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Sends a routed request, its body on its way, to its rule's servers or function (`event_bound`: the body's limit
/// is the function's own); to its fallback function when no server can take it.
async fn send<'a>(
    proxy: &Proxy,
    snapshot: &Snapshot,
    request: &Routed<'a>,
    action: Action<'a>,
    mut req: Request<Upload>,
    event_bound: bool,
    served: &mut Served<'a>,
) -> Response<Body> {
    let Routed { target, peer, start_ms, .. } = *request;
    let Peer { client, tls, .. } = *peer;
    let custom = &target.custom;
    let scheme = if tls { "https" } else { "http" };
    // The console's session cookie is fnlb's own: a listener on the API's host (cookies ignore ports) must not hand
    // it to the functions and servers behind it.
    strip_console_cookie(req.headers_mut());
    // One id per request, shared by the function's context and `$stgw_request_id`.
    let request_id = &served.request_id;
    let request_id = || request_id.get_or_init(crate::ids::request_id).as_str();
    let extra = proxy_headers(custom, request, &req, request_id);
    match action {
        Action::Servers => {}
        Action::Function(function) => {
            let (mut parts, body) = req.into_parts();
            parts.headers.extend(extra);
            let body = Event { body: Some(body), bounded: event_bound };
            let id = request_id().to_string();
            served.function = Some(function);
            return invoke(proxy, snapshot, request, function, parts, body, &id).await;
        }
        Action::NotFound | Action::Redirect { .. } | Action::NoTarget => return respond::no_target(),
    }
    // The fallback gets the request as the client sent it, not as prepared for a server.
    let head = target.fallback.as_ref().map(|_| {
        let mut head = super::upstream::head_of(&req);
        head.headers.extend(extra.clone());
        head
    });
    let headers = bridge::balancer_headers(req.headers(), req.version(), &peer.client_ip, scheme, start_ms);
    super::upstream::prepare(&mut req, headers);
    req.headers_mut().extend(extra);
    let forwarded = proxy.upstreams.forward(target, client.ip(), req, &mut served.server).await;
    let (Some(fallback), Some(head)) = (&target.fallback, head) else {
        return forwarded.into_response();
    };
    let body = match forwarded {
        Forwarded::Answered(response) => return response,
        Forwarded::Unsent { request, .. } => Some(request.into_body()),
        Forwarded::Lost => None,
    };
    let body = Event { body, bounded: false };
    tracing::debug!(location = %target.location_id, "No server can take the request: the fallback function answers.");
    let id = request_id().to_string();
    served.function = Some(fallback);
    invoke(proxy, snapshot, request, fallback, head, body, &id).await
}

/// A request body on its way into a function's event: `None` when the request had none; `bounded` when the
/// upload's limit is the function's own (past it, errno 406 rather than the listener's plain 413).
struct Event {
    body: Option<Upload>,
    bounded: bool,
}

/// Runs a function for a request whose body is still on its way, and turns its result into the response.
async fn invoke(
    proxy: &Proxy,
    snapshot: &Snapshot,
    request: &Routed<'_>,
    function: &(FunctionKey, String),
    parts: http::request::Parts,
    Event { body, bounded }: Event,
    request_id: &str,
) -> Response<Body> {
    let too_large = || {
        respond::errno(http::StatusCode::PAYLOAD_TOO_LARGE, status::REQUEST_TOO_LARGE, "RequestTooLarge", request_id)
    };
    let body = match body {
        None => bytes::Bytes::new(),
        Some(mut body) => {
            let progress = body.progress();
            match (&mut body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    let failure = progress.and_then(|p| p.failure());
                    let answer = match failure {
                        Some(BodyFailure::TooLarge) if bounded => too_large(),
                        Some(failure) => respond::body_failure(failure),
                        None => respond::bad_request(),
                    };
                    if failure == Some(BodyFailure::TooLarge) && parts.version == http::Version::HTTP_2 {
                        return answer.map(|answer| Draining::new(answer, body).boxed());
                    }
                    return answer;
                }
            }
        }
    };
    if body.len() > proxy.functions.settings().max_event_bytes {
        return too_large();
    }
    run_function(proxy, snapshot, request, function, &parts, &body, request_id).await
}

/// Runs a function for a request with its whole body, and turns its result into the response.
pub(super) async fn run_function(
    proxy: &Proxy,
    snapshot: &Snapshot,
    request: &Routed<'_>,
    (key, qualifier): &(FunctionKey, String),
    parts: &http::request::Parts,
    body: &[u8],
    request_id: &str,
) -> Response<Body> {
    let Routed { routes, target, peer, start_ms, .. } = *request;
    let Some(spec) = snapshot.functions.get(key) else {
        return respond::no_target();
    };
    let span =
        tracing::debug_span!("request", location = %target.location_id, function = %key, request_id = %request_id);
    async {
        let info = RequestInfo {
            request_id,
            client_ip: &peer.client_ip,
            lb_id: &routes.lb_id,
            listener_id: &routes.listener_id,
            location_id: &target.location_id,
            vip: &peer.vip,
            vport: peer.addr.port(),
            scheme: if peer.tls { "https" } else { "http" },
            start_ms,
        };
        let event = bridge::event(&parts.method, &parts.uri, parts.version, &parts.headers, body, &info);
        let invocation = proxy.functions.invoke(spec, qualifier, event, request_id.to_string(), None).await;
        match invocation.result {
            Ok(json) => match bridge::integration_response(&json) {
                Some(integration) => {
                    let mut response = Response::new(respond::full(integration.body));
                    *response.status_mut() = integration.status;
                    *response.headers_mut() = integration.headers;
                    response
                }
                None => respond::bad_integration(request_id),
            },
            Err(e) => respond::function_error(&e, request_id),
        }
    }
    .instrument(span)
    .await
}

/// Removes `fnlb_console` from the request's `Cookie` headers (and a header left empty).
fn strip_console_cookie(headers: &mut http::HeaderMap) {
    const PREFIX: &[u8] = b"fnlb_console=";
    let cookies = headers.get_all(http::header::COOKIE);
    if !cookies.iter().any(|v| v.as_bytes().windows(PREFIX.len()).any(|w| w == PREFIX)) {
        return;
    }
    let kept: Vec<String> = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.as_bytes().starts_with(PREFIX))
        .map(str::to_string)
        .collect();
    headers.remove(http::header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(http::header::COOKIE, value);
    }
}

/// The request headers the configuration's `proxy_set_header` adds (`X-Vip`, `X-Real-Port` …), with their values
/// for this request.
fn proxy_headers<'a, B>(
    custom: &Settings,
    request: &Routed<'_>,
    req: &Request<B>,
    request_id: impl Fn() -> &'a str,
) -> Vec<(Option<HeaderName>, HeaderValue)> {
    let value = |var: Var| -> String {
        match var {
            Var::RemoteAddr => request.peer.client.ip().to_string(),
            Var::RemotePort => request.peer.client.port().to_string(),
            Var::ServerAddr => request.peer.addr.ip().to_string(),
            Var::ServerPort => request.peer.addr.port().to_string(),
            Var::Method => req.method().to_string(),
            Var::Uri => percent_encoding::percent_decode_str(req.uri().path()).decode_utf8_lossy().into_owned(),
            Var::RequestUri => req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string(),
            Var::Args => req.uri().query().unwrap_or("").to_string(),
            Var::Host => request.host.to_string(),
            Var::Scheme => (if request.peer.tls { "https" } else { "http" }).to_string(),
            Var::LbId => request.routes.lb_id.clone(),
            Var::RequestId => request_id().to_string(),
        }
    };
    if custom.proxy_set_headers.is_empty() {
        return Vec::new();
    }
    custom
        .proxy_set_headers
        .iter()
        .filter_map(|(name, template)| {
            let rendered = HeaderValue::from_str(&template.render(value)).ok()?;
            Some((Some(name.clone()), rendered))
        })
        .collect()
}
