//! Forwarding to a rule's server targets: the rule's scheduler picks a target among those that take traffic
//! (weight above 0, not unhealthy), the request streams to it over a pooled keep-alive connection, and the
//! response streams back. A target that cannot be connected to within the connect timeout is skipped and the
//! request goes to another; no answer within the read timeout is 504.
//!
//! Schedulers (contract 5.3): `WRR`, smooth weighted round robin (nginx's: no burst to the heaviest target);
//! `LEAST_CONN`, the fewest requests in flight relative to weight; `IP_HASH`, the client address hashed over the
//! weighted targets, so a client keeps its target while the set does not change.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::health::{Health, TargetState};
use super::respond::{self, Body};
use super::retry::{self, Failure};
use super::upload::{Progress, Upload};
use crate::snapshot::FastMap;
use crate::snapshot::{RouteTarget, Snapshot};

/// Limits of forwarding to servers. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// CLB's `proxy_connect_timeout`.
    pub connect_timeout: Duration,
    /// CLB's `proxy_read_timeout`: from the request sent to the response head.
    pub read_timeout: Duration,
    /// CLB's `proxy_send_timeout`: how long a target may take none of a request body that the client has sent.
    pub send_timeout: Duration,
    /// Idle keep-alive connections kept per target.
    pub idle_per_target: usize,
    /// Targets tried for one request when connecting fails.
    pub max_tries: usize,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_PER_TARGET: usize = 256;
pub const DEFAULT_MAX_TRIES: usize = 3;
/// Client addresses whose layer-4 target is remembered (session persistence), over all listeners.
pub const MAX_KEPT_CLIENTS: usize = 65_536;

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            idle_per_target: DEFAULT_IDLE_PER_TARGET,
            max_tries: DEFAULT_MAX_TRIES,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheduler {
    WeightedRoundRobin,
    LeastConnections,
    IpHash,
}

/// What forwarding a request to a rule's servers came to.
pub enum Forwarded {
    /// An answer for the client: a server's response, or the balancer's own (a timeout, a failure after the
    /// request was sent).
    Answered(Response<Body>),
    /// No server took the request, which is given back unsent: none takes traffic (`tried` false), or none of
    /// those tried could be reached.
    Unsent { request: Request<Upload>, tried: bool },
    /// The request was sent and its connection failed before an answer came. It had no body and a method that
    /// may be repeated, and the rule has a fallback that may answer it instead.
    Lost,
}

impl Forwarded {
    /// The answer when there is nothing to fall back to: 503 when no server takes traffic, 502 when those tried
    /// failed.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Forwarded::Answered(response) => response,
            Forwarded::Unsent { tried: false, .. } => respond::no_target(),
            Forwarded::Unsent { tried: true, .. } | Forwarded::Lost => respond::bad_gateway(),
        }
    }
}

/// The cookie CLB inserts for session persistence (`SessionExpireTime` > 0 with `WRR`).
pub const PERSISTENCE_COOKIE: &str = "tgw_l7_route";

/// One rule's targets, as the scheduler sees them.
pub(super) struct Balancer {
    scheduler: Scheduler,
    /// Session persistence: how long the cookie naming a client's target lasts (WRR rules only).
    persistence: Option<u32>,
    targets: Vec<Backend>,
    /// Smooth WRR's current weights, one per target.
    current: Mutex<Vec<i64>>,
}

pub(super) struct Backend {
    pub addr: SocketAddr,
    weight: i64,
    state: Arc<TargetState>,
    /// The persistence cookie's value for this target: a digest of the rule and address, not the address.
    token: String,
}

impl Balancer {
    fn new(rule: &RouteTarget, health: &Health) -> Balancer {
        let scheduler = match rule.scheduler.as_str() {
            "LEAST_CONN" => Scheduler::LeastConnections,
            "IP_HASH" => Scheduler::IpHash,
            _ => Scheduler::WeightedRoundRobin,
        };
        let targets: Vec<Backend> = rule
            .servers
            .iter()
            .map(|(addr, weight)| Backend {
                addr: *addr,
                weight: i64::from(*weight),
                state: health.target(&rule.location_id, *addr),
                token: token(&rule.location_id, *addr),
            })
            .collect();
        let current = Mutex::new(vec![0; targets.len()]);
        let persistence = (scheduler == Scheduler::WeightedRoundRobin && rule.session_expire_time > 0)
            .then_some(rule.session_expire_time);
        Balancer { scheduler, persistence, targets, current }
    }

    /// The next target to try (added to `tried`), counted in flight while the guard lives.
    pub(super) fn next(
        &self,
        client: IpAddr,
        cookie: Option<&str>,
        tried: &mut Vec<SocketAddr>,
    ) -> Option<(&Backend, InFlight)> {
        let backend = self.pick(client, cookie, tried)?;
        tried.push(backend.addr);
        backend.state.active.fetch_add(1, Ordering::Relaxed);
        Some((backend, InFlight(backend.state.clone())))
    }

    /// The target for a request, leaving out those already tried; `None` when no target takes traffic. A
    /// client whose persistence cookie names a target that still takes traffic keeps it.
    fn pick(&self, client: IpAddr, cookie: Option<&str>, tried: &[SocketAddr]) -> Option<&Backend> {
        let eligible = |b: &&Backend| b.weight > 0 && b.state.takes_traffic() && !tried.contains(&b.addr);
        if let Some(kept) = cookie.and_then(|c| self.targets.iter().filter(eligible).find(|b| b.token == c)) {
            return Some(kept);
        }
        match self.scheduler {
            Scheduler::WeightedRoundRobin => {
                let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
                let mut total = 0;
                let mut best: Option<usize> = None;
                for (i, backend) in self.targets.iter().enumerate().filter(|(_, b)| eligible(b)) {
                    current[i] += backend.weight;
                    total += backend.weight;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let best = best?;
                current[best] -= total;
                Some(&self.targets[best])
            }
            Scheduler::LeastConnections => self.targets.iter().filter(eligible).min_by(|a, b| {
                // a.active / a.weight < b.active / b.weight, without division.
                let load = |x: &Backend| x.state.active.load(Ordering::Relaxed) as i64;
                (load(a) * b.weight).cmp(&(load(b) * a.weight))
            }),
            Scheduler::IpHash => {
                let candidates: Vec<&Backend> = self.targets.iter().filter(eligible).collect();
                let total: i64 = candidates.iter().map(|b| b.weight).sum();
                if total == 0 {
                    return None;
                }
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                client.hash(&mut hasher);
                let mut point = (hasher.finish() % total as u64) as i64;
                candidates.into_iter().find(|b| {
                    point -= b.weight;
                    point < 0
                })
            }
        }
    }
}

/// The balancers of the current snapshot's rules, and the connection pool.
pub struct Upstreams {
    settings: UpstreamSettings,
    /// TLS to targets (`ForwardType` `HTTPS`, and `GRPCS` with ALPN `h2`): like CLB, the target's certificate is
    /// not verified.
    tls_client: Arc<rustls::ClientConfig>,
    tls_h2_client: Arc<rustls::ClientConfig>,
    /// One HTTP/2 connection per target (`GRPC`, `GRPCS`).
    h2: Mutex<HashMap<PoolKey, hyper::client::conn::http2::SendRequest<Upload>>>,
    health: Arc<Health>,
    balancers: arc_swap::ArcSwap<FastMap<String, Arc<Balancer>>>,
    idle: Arc<Pool>,
    /// Idle keep-alive connections of the direct path (`direct.rs`), which speaks HTTP/1.1 on them itself.
    plain: Mutex<FastMap<SocketAddr, Vec<tokio::net::TcpStream>>>,
    /// Layer-4 session persistence: the target each client address got last.
    kept: Mutex<KeptTargets>,
}

/// By (listener, client address), the token of the target the client got last and until when it keeps it.
#[derive(Default)]
struct KeptTargets {
    clients: HashMap<(String, IpAddr), (String, Instant)>,
    /// When full, expired entries are looked for at most once a second.
    next_prune: Option<Instant>,
}

impl KeptTargets {
    /// The token of the target `client` got last on `listener`, while its time has not run out at `now`.
    fn get(&self, listener: &str, client: IpAddr, now: Instant) -> Option<String> {
        let (token, until) = self.clients.get(&(listener.to_string(), client))?;
        (now < *until).then(|| token.clone())
    }

    /// Remembers the target `client` got on `listener` for `expiry` from `now` (expired entries make room when the
    /// limit is reached; past it, new clients are not remembered).
    fn keep(&mut self, listener: &str, client: IpAddr, token: &str, expiry: Duration, now: Instant) {
        if self.clients.len() >= MAX_KEPT_CLIENTS && self.next_prune.is_none_or(|at| now >= at) {
            self.clients.retain(|_, (_, until)| now < *until);
            self.next_prune = Some(now + Duration::from_secs(1));
        }
        let key = (listener.to_string(), client);
        if self.clients.len() < MAX_KEPT_CLIENTS || self.clients.contains_key(&key) {
            self.clients.insert(key, (token.to_string(), now + expiry));
        }
    }
}

/// A pooled connection's target: its address and whether the connection is TLS (`ForwardType` `HTTPS`).
type PoolKey = (SocketAddr, bool);

/// An HTTP/1.1 connection to a target: the handle requests are sent through, and the connection itself, which the
/// request using it drives (no task of its own: a request costs no hand-off to another task and back).
struct Link {
    sender: SendRequest<Upload>,
    /// `None` once the connection has ended. (Only ever used through `&mut`: the mutex, never locked, makes a
    /// response body holding it shareable, as hyper's bodies must be.)
    conn: Option<Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl Link {
    /// Lets the connection make progress (read, write, notice it was closed); returns whether it is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(conn) = self.conn.as_mut()
            && conn.get_mut().unwrap_or_else(|p| p.into_inner()).as_mut().poll(cx).is_ready()
        {
            self.conn = None;
        }
        self.conn.is_some()
    }
}

/// Awaits `fut` while driving the link's connection.
async fn driving<F: Future>(link: &mut Link, fut: F) -> F::Output {
    tokio::pin!(fut);
    std::future::poll_fn(|cx| {
        link.drive(cx);
        fut.as_mut().poll(cx)
    })
    .await
}

/// Idle keep-alive connections by target.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Link>>>,
    per_target: usize,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Link>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The idle connection to the target used last.
    fn take(&self, key: &PoolKey) -> Option<Link> {
        self.lock().get_mut(key).and_then(Vec::pop)
    }

    /// Keeps a connection whose exchange is over for the next request to the same target, up to the limit.
    fn keep(&self, addr: PoolKey, link: Link) {
        if link.conn.is_none() || link.sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let senders = idle.entry(addr).or_default();
        if senders.len() < self.per_target {
            senders.push(link);
        }
    }
}

/// A response body streamed from a target: when it is done (read to its end, or dropped), the connection goes
/// back to the pool and the request stops counting as in flight.
struct Returning {
    body: Incoming,
    /// The connection may serve another request (`KeepaliveEnable`).
    keep: bool,
    done: Option<(Arc<Pool>, PoolKey, Link, InFlight)>,
    /// The body broke: the error, held back one turn (`poll_frame`).
    broken: Option<hyper::Error>,
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some((pool, addr, link, _in_flight)) = self.done.take()
            && self.keep
            && self.body.is_end_stream()
        {
            pool.keep(addr, link);
        }
    }
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(error) = this.broken.take() {
            return std::task::Poll::Ready(Some(Err(error)));
        }
        // The connection brings the body in.
        if let Some((_, _, link, _)) = this.done.as_mut() {
            link.drive(cx);
        }
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        // A body that breaks reaches the client as far as it came, as on the direct path: the error waits one
        // turn, so that the server connection writes out what it holds before the error ends it.
        if let std::task::Poll::Ready(Some(Err(error))) = polled {
            this.broken = Some(error);
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        if matches!(polled, std::task::Poll::Ready(None)) {
            // The whole response has been read: the connection can serve the next request now.
            if let Some((pool, addr, mut link, _in_flight)) = this.done.take() {
                link.drive(cx);
                if this.keep {
                    pool.keep(addr, link);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request as in flight to a target while it exists.
pub(super) struct InFlight(Arc<TargetState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstreams {
    pub fn new(settings: UpstreamSettings, health: Arc<Health>) -> Upstreams {
        let idle = Arc::new(Pool { idle: Mutex::default(), per_target: settings.idle_per_target });
        let (tls_client, tls_h2_client) = (super::tls::backend_client(b"http/1.1"), super::tls::backend_client(b"h2"));
        let (h2, plain, kept) = (Mutex::default(), Mutex::default(), Mutex::default());
        let balancers = Default::default();
        Upstreams { settings, tls_client, tls_h2_client, h2, health, balancers, idle, plain, kept }
    }

    /// Rebuilds the balancers for a snapshot (target states, and so health and counts, carry over).
    pub fn reconcile(&self, snapshot: &Snapshot) {
        let mut balancers = FastMap::default();
        let rules = snapshot.http_listeners.values().flat_map(|routes| routes.rules.iter());
        let layer4 = snapshot.stream_listeners.values().chain(snapshot.datagram_listeners.values()).map(|s| &s.target);
        for rule in rules.chain(layer4).filter(|r| !r.servers.is_empty()) {
            balancers.insert(rule.location_id.clone(), Arc::new(Balancer::new(rule, &self.health)));
        }
        let addrs: std::collections::HashSet<SocketAddr> =
            balancers.values().flat_map(|b| b.targets.iter().map(|t| t.addr)).collect();
        self.idle.lock().retain(|(addr, _), _| addrs.contains(addr));
        self.plain.lock().unwrap_or_else(|p| p.into_inner()).retain(|addr, _| addrs.contains(addr));
        self.h2.lock().unwrap_or_else(|p| p.into_inner()).retain(|(addr, _), _| addrs.contains(addr));
        self.balancers.store(Arc::new(balancers));
    }

    pub(super) fn balancer(&self, rule: &RouteTarget) -> Arc<Balancer> {
        match self.balancers.load().get(&rule.location_id) {
            Some(balancer) => balancer.clone(),
            // A snapshot newer than the last reconcile: its targets, with what is known of them.
            None => Arc::new(Balancer::new(rule, &self.health)),
        }
    }

    /// Forwards a request (its head already carrying the balancer's headers) to one of the rule's servers.
    /// `served` learns the target that answered.
    pub async fn forward(
        &self,
        rule: &RouteTarget,
        client: IpAddr,
        mut request: Request<Upload>,
        served: &mut Option<SocketAddr>,
    ) -> Forwarded {
        let balancer = self.balancer(rule);
        let waits = self.waits(rule);
        let progress = request.body().progress();
        // `ForwardType` `HTTPS`: TLS to the target, named by the rule's domain when it is a plain name.
        let tls = rule.forward_tls.then(|| {
            let name = crate::snapshot::router::plain_domain(&rule.domain).unwrap_or("");
            ServerName::try_from(name.to_string()).ok()
        });
        if rule.forward_h2 {
            return self.forward_h2(&balancer, tls, client, request, &waits, served).await;
        }
        let cookie = balancer.persistence.and_then(|_| super::bridge::cookie(request.headers(), PERSISTENCE_COOKIE));
        let cookie = cookie.map(str::to_string);
        let replayable =
            rule.fallback.is_some() && retry::to_fallback(request.method().as_str(), request.body().is_end_stream());
        if !rule.keepalive {
            request.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let mut tried = Vec::new();
        loop {
            let Some((backend, in_flight)) = balancer.next(client, cookie.as_deref(), &mut tried) else {
                return Forwarded::Unsent { request, tried: !tried.is_empty() };
            };
            let (mut link, pooled) = match self.link(backend.addr, tls.clone(), rule.keepalive, waits.connect).await {
                Ok(link) => link,
                Err(e) if self.retry(backend, &e, &mut tried) => continue,
                Err(_) => return Forwarded::Unsent { request, tried: true },
            };
            *served = Some(backend.addr);
            // A request that may go again once written keeps its head for that (`retry::resendable`).
            let bodiless = request.body().is_end_stream();
            let resend = (pooled && retry::resendable(request.method().as_str(), bodiless)).then(|| head_of(&request));
            let send = link.sender.try_send_request(request);
            let sent = match driving(&mut link, exchange(send, progress.as_deref(), &waits)).await {
                Ok(sent) => sent,
                Err(timed_out) => return Forwarded::Answered(timed_out),
            };
            // A body the client failed to send is the client's fault, whatever the server did meanwhile.
            let failure = progress.as_deref().and_then(Progress::failure);
            let response = match (sent, failure) {
                (Ok(response), _) => response,
                (Err(_), Some(failure)) => return Forwarded::Answered(respond::body_failure(failure)),
                (Err(mut e), None) => match e.take_message() {
                    // Not sent (a kept-alive connection the server had closed): try again, on a new connection.
                    Some(unsent) => {
                        let failure = Failure::Unsent { pooled };
                        let decision = retry::decide(failure, tried.len(), self.settings.max_tries);
                        if !decision.retries(&mut tried) {
                            return Forwarded::Unsent { request: unsent, tried: true };
                        }
                        tracing::debug!(target = %backend.addr, error = %e.error(), "A pooled connection failed.");
                        request = unsent;
                        self.idle.lock().remove(&(backend.addr, tls.is_some()));
                        continue;
                    }
                    // Written: it goes again only when the connection ended before any answer and its head was
                    // kept (a kept-alive connection the server closed as the request came).
                    None => {
                        let failure = match e.error().is_incomplete_message() {
                            true => Failure::Unanswered { pooled, resendable: resend.is_some() },
                            false => Failure::Broken,
                        };
                        let decision = retry::decide(failure, tried.len(), self.settings.max_tries);
                        if let Some(head) = resend
                            && decision.retries(&mut tried)
                        {
                            tracing::debug!(target = %backend.addr, "A pooled connection closed before answering.");
                            request = Request::from_parts(head, Upload::empty());
                            self.idle.lock().remove(&(backend.addr, tls.is_some()));
                            continue;
                        }
                        tracing::debug!(target = %backend.addr, error = %e.error(), "Forwarding failed.");
                        return if replayable { Forwarded::Lost } else { Forwarded::Answered(respond::bad_gateway()) };
                    }
                },
            };
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            if let Some(max_age) = balancer.persistence
                && cookie.as_deref() != Some(backend.token.as_str())
            {
                let value = format!("{PERSISTENCE_COOKIE}={}; Max-Age={max_age}; Path=/", backend.token);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    parts.headers.append(http::header::SET_COOKIE, value);
                }
            }
            // The request counts as in flight, and its connection stays out of the pool, until its response body
            // is done.
            let key = (backend.addr, tls.is_some());
            let done = Some((self.idle.clone(), key, link, in_flight));
            let body = Returning { body, keep: rule.keepalive, done, broken: None };
            return Forwarded::Answered(Response::from_parts(parts, body.boxed()));
        }
    }

    /// Forwards over HTTP/2 (`ForwardType` `GRPC`, `GRPCS`): one multiplexed connection per target carries every
    /// request, and trailers pass through.
    async fn forward_h2(
        &self,
        balancer: &Balancer,
        tls: Option<Option<ServerName<'static>>>,
        client: IpAddr,
        mut request: Request<Upload>,
        waits: &Waits,
        served: &mut Option<SocketAddr>,
    ) -> Forwarded {
        let progress = request.body().progress();
        // HTTP/2 carries the scheme and the host in the request target.
        let host = request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let target = format!("{scheme}://{host}{}", request.uri().path_and_query().map_or("/", |p| p.as_str()));
        *request.uri_mut() = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
        *request.version_mut() = http::Version::HTTP_2;
        request.headers_mut().remove(http::header::HOST);
        let mut tried = Vec::new();
        loop {
            let Some((backend, in_flight)) = balancer.next(client, None, &mut tried) else {
                return Forwarded::Unsent { request, tried: !tried.is_empty() };
            };
            let mut sender = match self.h2_sender(backend.addr, tls.clone(), waits.connect).await {
                Ok(sender) => sender,
                Err(e) if self.retry(backend, &e, &mut tried) => continue,
                Err(_) => return Forwarded::Unsent { request, tried: true },
            };
            *served = Some(backend.addr);
            let answer = match exchange(sender.send_request(request), progress.as_deref(), waits).await {
                Err(timed_out) => timed_out,
                Ok(Err(e)) => match progress.as_deref().and_then(Progress::failure) {
                    Some(failure) => respond::body_failure(failure),
                    None => {
                        tracing::debug!(target = %backend.addr, error = %e, "Forwarding over HTTP/2 failed.");
                        respond::bad_gateway()
                    }
                },
                Ok(Ok(response)) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let body = body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    });
                    Response::from_parts(parts, body.boxed())
                }
            };
            return Forwarded::Answered(answer);
        }
    }

    /// The HTTP/2 connection to `addr` (over TLS when `tls` is given), made when there is none that can take a
    /// request.
    async fn h2_sender(
        &self,
        addr: SocketAddr,
        tls: Option<Option<ServerName<'static>>>,
        connect_timeout: Duration,
    ) -> std::io::Result<hyper::client::conn::http2::SendRequest<Upload>> {
        let key = (addr, tls.is_some());
        if let Some(sender) = self.h2.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && sender.is_ready()
        {
            return Ok(sender.clone());
        }
        let stream = connect(addr, connect_timeout).await?;
        let sender = match tls {
            None => h2_handshake(addr, stream).await?,
            Some(name) => {
                let name = name.unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let connector = tokio_rustls::TlsConnector::from(self.tls_h2_client.clone());
                let stream = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                h2_handshake(addr, stream).await?
            }
        };
        self.h2.lock().unwrap_or_else(|p| p.into_inner()).insert(key, sender.clone());
        Ok(sender)
    }

    /// A connection to one of a layer-4 listener's targets (another, when connecting fails), counted in flight for
    /// as long as the returned guard lives.
    pub async fn connect(&self, target: &RouteTarget, client: IpAddr) -> Option<(tokio::net::TcpStream, impl Drop)> {
        let balancer = self.balancer(target);
        let kept = self.kept_target(target, client);
        let mut tried = Vec::new();
        while tried.len() < self.settings.max_tries {
            let (backend, in_flight) = balancer.next(client, kept.as_deref(), &mut tried)?;
            match connect(backend.addr, self.settings.connect_timeout).await {
                Ok(stream) => {
                    self.keep_target(target, client, backend);
                    return Some((stream, in_flight));
                }
                Err(_) => tracing::debug!(target = %backend.addr, "Cannot connect to a target; trying another."),
            }
        }
        None
    }

    /// A target for a new UDP session (no connection to try), counted in flight while the guard lives.
    pub fn choose(
        &self,
        target: &RouteTarget,
        client: IpAddr,
    ) -> Option<(SocketAddr, impl Drop + Send + Sync + 'static)> {
        let balancer = self.balancer(target);
        let kept = self.kept_target(target, client);
        let (backend, in_flight) = balancer.next(client, kept.as_deref(), &mut Vec::new())?;
        self.keep_target(target, client, backend);
        Some((backend.addr, in_flight))
    }

    /// With a layer-4 listener's session persistence (`SessionExpireTime`), the token of the target `client` got
    /// last, while that time has not run out since.
    fn kept_target(&self, target: &RouteTarget, client: IpAddr) -> Option<String> {
        if target.session_expire_time == 0 {
            return None;
        }
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).get(&target.location_id, client, Instant::now())
    }

    /// Remembers the target `client` got, for its session persistence time (expired entries make room when the
    /// limit is reached; past it, new clients are not remembered).
    fn keep_target(&self, target: &RouteTarget, client: IpAddr, backend: &Backend) {
        if target.session_expire_time == 0 {
            return;
        }
        let expiry = Duration::from_secs(u64::from(target.session_expire_time));
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.keep(&target.location_id, client, &backend.token, expiry, Instant::now());
    }

    /// Whether a request whose target could not be connected to goes to another one (counted on the target).
    fn retry(&self, backend: &Backend, error: &std::io::Error, tried: &mut Vec<SocketAddr>) -> bool {
        tracing::debug!(target = %backend.addr, %error, "Cannot connect to a target; trying another.");
        backend.state.connect_errors.fetch_add(1, Ordering::Relaxed);
        let retry = retry::decide(Failure::Connect, tried.len(), self.settings.max_tries).retries(tried);
        if retry {
            backend.state.retries.fetch_add(1, Ordering::Relaxed);
        }
        retry
    }

    /// A ready pooled connection to `addr` (when connections are reused; over TLS when `tls` is given: `Some(None)`
    /// names the target by its address), or a new one; `true` with a pooled one.
    async fn link(
        &self,
        addr: SocketAddr,
        tls: Option<Option<ServerName<'static>>>,
        reuse: bool,
        connect_timeout: Duration,
    ) -> std::io::Result<(Link, bool)> {
        // The most recently used first: it is the likeliest to be open; closed ones on the way are dropped.
        while reuse && let Some(mut link) = self.idle.take(&(addr, tls.is_some())) {
            // Let it notice a close by the server, and be ready for the next request.
            let open = std::future::poll_fn(|cx| Poll::Ready(link.drive(cx))).await;
            if open && link.sender.is_ready() {
                return Ok((link, true));
            }
        }
        let stream = connect(addr, connect_timeout).await?;
        let Some(name) = tls else { return Ok((handshake(addr, stream).await?, false)) };
        let name = name.unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = tokio_rustls::TlsConnector::from(self.tls_client.clone());
        let stream = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok((handshake(addr, stream).await?, false))
    }
}

/// What the direct path (`direct.rs`) needs of the targets: the same schedulers, counts, retries and timeouts as
/// `forward`, with plain TCP connections it speaks HTTP/1.1 on itself.
impl Upstreams {
    /// Targets tried for one request when trying fails.
    pub(super) fn max_tries(&self) -> usize {
        self.settings.max_tries
    }

    /// The waits of a request to the rule's servers.
    pub(super) fn waits(&self, rule: &RouteTarget) -> Waits {
        Waits {
            connect: rule.custom.proxy_connect_timeout.unwrap_or(self.settings.connect_timeout),
            send: rule.custom.proxy_send_timeout.unwrap_or(self.settings.send_timeout),
            read: rule.custom.proxy_read_timeout.unwrap_or(self.settings.read_timeout),
        }
    }

    /// An idle connection to the target that the server has not closed (when connections are reused), or a new
    /// one; `true` with a pooled one. Connecting may fail (counted on the target); `Ok(None)` then means: try
    /// another target.
    pub(super) async fn plain_connection(
        &self,
        backend: &Backend,
        reuse: bool,
        tried: &mut Vec<SocketAddr>,
        connect_timeout: Duration,
    ) -> Result<Option<(tokio::net::TcpStream, bool)>, ()> {
        while reuse && let Some(stream) = self.idle_plain(backend.addr) {
            // Anything readable on an idle connection is its end (or bytes it should not have sent).
            let readable = std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_ready(cx).is_ready())).await;
            if !readable || matches!(stream.try_read(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                return Ok(Some((stream, true)));
            }
        }
        match connect(backend.addr, connect_timeout).await {
            Ok(stream) => Ok(Some((stream, false))),
            Err(error) if self.retry(backend, &error, tried) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// The idle connection to `addr` used last.
    fn idle_plain(&self, addr: SocketAddr) -> Option<tokio::net::TcpStream> {
        self.plain.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&addr).and_then(Vec::pop)
    }

    /// Keeps a connection whose exchange ended cleanly for the next request to `addr`, up to the limit.
    pub(super) fn keep_plain(&self, addr: SocketAddr, stream: tokio::net::TcpStream) {
        let mut idle = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        let streams = idle.entry(addr).or_default();
        if streams.len() < self.settings.idle_per_target {
            streams.push(stream);
        }
    }
}

/// The waits of one forwarded request: the rule's custom configuration over the settings.
pub(super) struct Waits {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

/// Sends a request and waits for the response head: while the body goes out, a target that takes none of it for
/// `send` is given up on (504); once it is all sent, the answer must come within `read` (504).
async fn exchange<T>(
    send: impl Future<Output = T>,
    progress: Option<&Progress>,
    waits: &Waits,
) -> Result<T, Response<Body>> {
    tokio::pin!(send);
    if let Some(progress) = progress {
        tokio::select! {
            outcome = &mut send => return Ok(outcome),
            sent = progress.sent(waits.send) => if !sent {
                return Err(respond::gateway_timeout());
            },
        }
    }
    tokio::time::timeout(waits.read, send).await.map_err(|_| respond::gateway_timeout())
}

/// A new TCP connection to a target, within the connect timeout, with Nagle's algorithm off.
async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// HTTP/1.1 over a new connection to a target; the connection runs on its own task.
async fn handshake<I>(addr: SocketAddr, io: I) -> std::io::Result<Link>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(std::io::Error::other)?;
    let conn = async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, error = %e, "An upstream connection ended with an error.");
        }
    };
    Ok(Link { sender, conn: Some(Mutex::new(Box::pin(conn))) })
}

/// HTTP/2 over a new connection to a target; the connection runs on its own task.
async fn h2_handshake<I>(addr: SocketAddr, io: I) -> std::io::Result<hyper::client::conn::http2::SendRequest<Upload>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, error = %e, "An upstream HTTP/2 connection ended with an error.");
        }
    });
    Ok(sender)
}

fn token(location: &str, addr: SocketAddr) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{location}/{addr}").as_bytes());
    hex::encode(&digest[..8])
}

/// A copy of a request's head.
pub(super) fn head_of<B>(request: &Request<B>) -> http::request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head.into_parts().0
}

/// The request as a server receives it from CLB: origin-form URI, no hop-by-hop headers, and the balancer's
/// own headers (contract 1.2).
pub fn prepare<B>(request: &mut Request<B>, balancer_headers: [HeaderValue; 6]) {
    if request.uri().scheme().is_some() {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        *request.uri_mut() = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    }
    // HTTP/2 clients give the host as the authority; servers get it as Host.
    *request.version_mut() = http::Version::HTTP_11;
    let headers = request.headers_mut();
    retain(headers, super::policy::forwards);
    for ((name, _), value) in super::bridge::BALANCER_HEADERS.iter().zip(balancer_headers) {
        headers.insert(name, value);
    }
}

/// Takes a server's answer's hop-by-hop headers out (`policy::hop_by_hop`).
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    retain(headers, |name, listed| !super::policy::hop_by_hop(name, listed));
}

/// Keeps the headers `keep` keeps, given their name and whether the message's `Connection` lists it.
fn retain(headers: &mut http::HeaderMap, keep: impl Fn(&str, bool) -> bool) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| !keep(name.as_str(), listed.iter().any(|l| l == name.as_str())))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;
