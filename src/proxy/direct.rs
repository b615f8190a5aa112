//! The direct path: the common HTTP/1.1 exchange with a rule's servers, read and written by fnlb itself on one
//! task, with the client's and the server's connections side by side and no per-request allocation of heads.
//!
//! A connection starts here. Each request whose head is complete is looked at once: an HTTP/1.1 request with no
//! body or a small `Content-Length` one, routed to a rule with nothing else to do (no fallback, redirect, session
//! persistence or `proxy_set_header`), goes straight to a server (plain HTTP) or into the rule's function. At the
//! first request that is anything else (a 404, a redirect, HTTP/1.0 or HTTP/2, a chunked or large body, `Expect`,
//! `Upgrade`, a malformed head), the connection is handed over, with the bytes read so far, to the general path
//! (`server.rs`, hyper) for the rest of its life. Both paths send the same headers, build the same events and keep
//! the same limits.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Proxy;
use super::bridge::{self, BALANCER_HEADERS};
use super::h1::{self, Chunked, Framing};
use super::policy::{self, Account, Action, Counted, Decoration};
use super::respond::{self, Body};
use super::retry::{self, Failure};
use super::server::{Peer, Phase, Routed, run_function};
use crate::snapshot::custom::Settings;
use crate::snapshot::{ListenerRoutes, RouteTarget, Snapshot};

/// Header fields the direct path reads on its stack; a request with more goes to the general path, which keeps
/// the configured limit.
const MAX_HEADERS: usize = 100;
/// The largest request body the direct path forwards (read whole before it is sent); larger ones are streamed by
/// the general path.
const MAX_BODY: u64 = 64 * 1024;
/// The first size of a connection's read buffers.
const BUFFER: usize = 8 * 1024;

/// How the direct path left a connection.
pub(super) enum Left<I> {
    Closed,
    /// For the general path: the connection, with what was read of it and not yet served in front.
    HandedOver(Prefixed<I>),
}

/// Serves a connection's requests until it ends or one of them is for the general path.
pub(super) async fn serve<I>(proxy: &Proxy, peer: &Peer, mut io: I, phase: &watch::Receiver<Phase>) -> Left<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = BytesMut::with_capacity(BUFFER);
    let mut answer = BytesMut::with_capacity(BUFFER);
    let mut out = Vec::with_capacity(BUFFER);
    // The connection's waits, each registered once: the keep-alive limits' timer (set again only when it fires,
    // or when a rule shortened the idle time), the drain (while no request is in), the cut (at any time).
    let keepalive = &peer.keepalive;
    let now = tokio::time::Instant::now();
    let timer = tokio::time::sleep_until(keepalive.due(now).unwrap_or(now));
    let (mut draining, mut cutting) = (phase.clone(), phase.clone());
    let draining = async move { draining.wait_for(|p| *p != Phase::Serving).await.is_ok() };
    let cut = async move { cutting.wait_for(|p| *p == Phase::Cut).await.is_ok() };
    tokio::pin!(timer, draining, cut);
    loop {
        // A whole request: its head, then its body.
        // Bytes before `unread` were looked at: a head ends only with a line, so it is parsed again only when a
        // line ended since (slowly sent heads cost linear time, not quadratic).
        let mut unread = 0;
        let mut plan = loop {
            let parsed = if request[unread..].contains(&b'\n') {
                plan(proxy, peer, &request, &mut out)
            } else {
                Parsed::Partial
            };
            unread = request.len();
            match parsed {
                Parsed::Ready(plan) => break plan,
                Parsed::Other => return Left::HandedOver(Prefixed::new(io, request.freeze())),
                Parsed::Partial if request.len() >= proxy.settings.max_header_bytes => {
                    return Left::HandedOver(Prefixed::new(io, request.freeze()));
                }
                Parsed::Partial => {}
            }
            request.reserve(BUFFER);
            tokio::select! {
                biased;
                read = io.read_buf(&mut request) => match read {
                    Ok(0) | Err(_) => return Left::Closed,
                    Ok(_) => {}
                },
                _ = &mut timer => match keepalive.due(tokio::time::Instant::now()) {
                    Ok(next) => timer.as_mut().reset(next),
                    Err(_) => return Left::Closed,
                },
                _ = &mut draining => return Left::Closed,
            }
        };
        let busy = keepalive.begin();
        let logged = plan.logged.take();
        let target = &plan.routes.rules[plan.rule];
        // Counted and logged once, however the exchange ends.
        let counted = Counted { routes: &plan.routes, target: Some(target), started: plan.started, logged };
        let mut account = Account::new(proxy, peer, counted);
        let settings = &proxy.settings;
        keepalive.limit(
            target.custom.keepalive_timeout.unwrap_or(settings.keepalive_timeout),
            target.custom.keepalive_requests.unwrap_or(settings.keepalive_requests),
        );
        let body_wait = target.custom.client_body_timeout.unwrap_or(settings.body_read_timeout);
        while request.len() < plan.length {
            request.reserve(plan.length - request.len());
            match tokio::time::timeout(body_wait, io.read_buf(&mut request)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => {
                    // A body cut short, as the general path answers it (to no one).
                    account.answered(respond::bad_request().status().as_u16(), None);
                    return Left::Closed;
                }
                Err(_) => {
                    let timed_out = respond::request_timeout();
                    let answering = Answering { head_request: plan.head_request, custom: &target.custom, close: true };
                    let _ = answer_own(&mut io, &mut out, timed_out, &answering, &mut account).await;
                    return Left::Closed;
                }
            }
        }
        // Draining: this is the connection's last exchange.
        let last = *phase.borrow() != Phase::Serving;
        let closing = match &plan.function {
            None => {
                out.extend_from_slice(&request[plan.head..plan.length]);
                tokio::select! {
                    closing = exchange(proxy, peer, &plan, last, &mut io, &mut out, &mut answer, &mut account) => closing,
                    _ = &mut cut => return Left::Closed,
                }
            }
            Some(_) => {
                tokio::select! {
                    closing = run(proxy, peer, &plan, &request, last, &mut io, &mut out, &mut account) => closing,
                    _ = &mut cut => return Left::Closed,
                }
            }
        };
        request.advance(plan.length);
        drop(busy);
        drop(account);
        let Some(close) = closing else { return Left::Closed };
        if close {
            let _ = io.shutdown().await;
            return Left::Closed;
        }
        // A rule with a shorter idle time than the timer's.
        if let Ok(next) = keepalive.due(tokio::time::Instant::now())
            && next < timer.deadline()
        {
            timer.as_mut().reset(next);
        }
    }
}

/// A request the direct path serves: where its head and body end in the buffer, its rule, and what the access
/// log tells of it. For servers, its head as they get it is already written; for a function, its parts are here.
struct Plan {
    routes: Arc<ListenerRoutes>,
    rule: usize,
    /// The head's length, and the head's and body's.
    head: usize,
    length: usize,
    head_request: bool,
    /// The client takes trailer fields (`TE: trailers`); without it a chunked answer's trailers are left out, as
    /// the general path (hyper) does.
    trailers: bool,
    /// The request may be sent again when a kept-alive connection turns out closed (`retry::resendable`).
    resendable: bool,
    /// The client asked for the connection to close.
    close: bool,
    /// Method, path and host, when there is an access log.
    logged: Option<(String, String, String)>,
    started: Instant,
    start_ms: i64,
    /// For a function: the request as its event tells it.
    function: Option<Box<FunctionRequest>>,
    /// The snapshot `routes` is from (a function's spec is looked up in it).
    snapshot: Arc<Snapshot>,
}

struct FunctionRequest {
    parts: http::request::Parts,
    host: String,
}

enum Parsed {
    /// The head is not all in yet.
    Partial,
    /// For the general path.
    Other,
    Ready(Plan),
}

/// Reads the request head at the start of `buffer`; when the direct path takes the request, writes its head for
/// the server into `out`.
fn plan(proxy: &Proxy, peer: &Peer, buffer: &[u8], out: &mut Vec<u8>) -> Parsed {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let limit = proxy.settings.max_headers.min(MAX_HEADERS);
    let head = match read_request_head(buffer, &mut storage[..limit]) {
        Read::Partial => return Parsed::Partial,
        Read::Other => return Parsed::Other,
        Read::Head(head) => head,
    };
    let RequestHead { method, target, host, body, .. } = head;
    let snapshot = proxy.snapshots.current();
    let Some(routes) = snapshot.http_listeners.get(&peer.addr).cloned() else { return Parsed::Other };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let decision = policy::route(&routes, host, path, query);
    let (Some(rule), Action::Servers | Action::Function(_)) = (decision.rule, decision.action) else {
        return Parsed::Other;
    };
    let rule_target = &routes.rules[rule];
    let Some(servers) = direct_rule(rule_target) else { return Parsed::Other };
    let max_body = rule_target.custom.client_max_body_size.unwrap_or(proxy.settings.max_body_bytes);
    if body > MAX_BODY.min(max_body) {
        return Parsed::Other;
    }
    let logged = proxy.access_log.as_ref().map(|_| (method.to_string(), path.to_string(), host.to_string()));
    let mut plan = Plan {
        routes,
        rule,
        head: head.length,
        length: head.length + body as usize,
        head_request: method == "HEAD",
        trailers: head.trailers,
        resendable: false,
        close: head.close,
        logged,
        started: Instant::now(),
        start_ms: crate::clock::now_ms(),
        function: None,
        snapshot,
    };
    if !servers {
        if body > proxy.functions.settings().max_event_bytes as u64 {
            return Parsed::Other;
        }
        // A function gets the request as the client sent it, in its event.
        let Some(parts) = request_parts(method, target, head.headers) else { return Parsed::Other };
        plan.function = Some(Box::new(FunctionRequest { parts, host: host.to_string() }));
        return Parsed::Ready(plan);
    }
    plan.resendable = retry::resendable(method, body == 0);
    let scheme = if peer.tls { "https" } else { "http" };
    let keepalive = plan.routes.rules[rule].keepalive;
    write_upstream_head(out, &head, scheme, peer.client_ip.as_bytes(), plan.start_ms, keepalive);
    Parsed::Ready(plan)
}

/// A request head as the direct path reads it.
#[doc(hidden)]
pub struct RequestHead<'h, 'b> {
    /// The head's length in the buffer.
    pub length: usize,
    pub method: &'b str,
    /// The request target, in origin form.
    pub target: &'b str,
    pub host: &'b str,
    /// The body's length (`Content-Length`, or none).
    pub body: u64,
    pub headers: &'h [httparse::Header<'b>],
    /// The first `X-Forwarded-For`.
    pub forwarded_for: Option<&'b [u8]>,
    /// The client asked for the connection to close.
    pub close: bool,
    /// The client takes trailer fields (`TE: trailers`).
    pub trailers: bool,
    /// The head has a `Connection` header (which may name hop-by-hop headers).
    pub connection: bool,
}

/// What `read_request_head` found.
#[doc(hidden)]
pub enum Read<'h, 'b> {
    /// The head is not all in yet.
    Partial,
    /// For the general path: anything but HTTP/1.1 with a plain origin-form target, one readable `Host`, at most
    /// one valid `Content-Length` and no `Transfer-Encoding`, `Expect` or `Upgrade`; a `Connection` header that
    /// names `Host` or `Content-Length`; the console's cookie.
    Other,
    Head(RequestHead<'h, 'b>),
}

/// Reads the request head at the start of `buffer`, with at most `storage.len()` header lines.
#[doc(hidden)]
pub fn read_request_head<'h, 'b>(buffer: &'b [u8], storage: &'h mut [httparse::Header<'b>]) -> Read<'h, 'b> {
    if buffer.is_empty() {
        return Read::Partial;
    }
    let mut head = httparse::Request::new(storage);
    let length = match head.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Read::Partial,
        Err(_) => return Read::Other,
    };
    let (Some(method), Some(target), Some(1)) = (head.method, head.path, head.version) else { return Read::Other };
    if method == "CONNECT" || !target.starts_with('/') || !target.bytes().all(plain_target_byte) {
        return Read::Other;
    }
    let headers: &'h [httparse::Header<'b>] = head.headers;
    let (mut hosts, mut host, mut body, mut lengths) = (0, None, 0, 0);
    let (mut forwarded_for, mut trailers, mut connection) = (None, false, false);
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = std::str::from_utf8(header.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let Some(length) = h1::content_length(header.value) else { return Read::Other };
            body = length;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = forwarded_for.or(Some(header.value));
        } else if name.eq_ignore_ascii_case("connection") {
            connection = true;
        } else if name.eq_ignore_ascii_case("te") {
            trailers |= header.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        } else if ["transfer-encoding", "expect", "upgrade"].iter().any(|n| name.eq_ignore_ascii_case(n))
            || (name.eq_ignore_ascii_case("cookie") && contains(header.value, b"fnlb_console="))
        {
            return Read::Other;
        }
    }
    let lists = |token| connection && h1::connection_lists(headers, token);
    let framing_named = lists("host") || lists("content-length");
    let (1, Some(host), 0..=1, false) = (hosts, host, lengths, framing_named) else { return Read::Other };
    let close = lists("close");
    Read::Head(RequestHead { length, method, target, host, body, headers, forwarded_for, close, trailers, connection })
}

/// Writes the head a server gets from CLB for `head` into `out`: hop-by-hop headers out, the balancer's own in
/// (contract 1.2), `Connection: close` when the rule does not keep server connections.
#[doc(hidden)]
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_, '_>,
    scheme: &str,
    client_ip: &[u8],
    start_ms: i64,
    keepalive: bool,
) {
    let headers = head.headers;
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for header in headers {
        let listed = head.connection && h1::connection_lists(headers, header.name);
        if policy::forwards(header.name, listed) {
            h1::push_header(out, header.name.as_bytes(), header.value);
        }
    }
    let (_, time_name) = &BALANCER_HEADERS[0];
    out.extend_from_slice(time_name.as_bytes());
    out.extend_from_slice(b": ");
    bridge::push_stgw_time(out, start_ms);
    out.extend_from_slice(b"\r\n");
    let scheme = scheme.as_bytes();
    let values: [&[u8]; 4] = [scheme, scheme, b"HTTP/1.1", client_ip];
    for ((_, name), value) in BALANCER_HEADERS[1..].iter().zip(values) {
        h1::push_header(out, name.as_bytes(), value);
    }
    let (_, forwarded_name) = &BALANCER_HEADERS[5];
    h1::push_header(out, forwarded_name.as_bytes(), &policy::forwarded_for(head.forwarded_for, client_ip));
    if !keepalive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a rule's requests may take the direct path, and where to: `Some(true)`, plain HTTP/1.1 to servers;
/// `Some(false)`, to its function; nothing else to do in either case (no fallback, redirect, session
/// persistence or `proxy_set_header`).
fn direct_rule(rule: &RouteTarget) -> Option<bool> {
    let plain = rule.fallback.is_none() && rule.redirect.is_none() && rule.custom.proxy_set_headers.is_empty();
    if !plain {
        return None;
    }
    if rule.servers.is_empty() {
        return rule.function.is_some().then_some(false);
    }
    let servers = rule.function.is_none() && !rule.forward_tls && !rule.forward_h2 && rule.session_expire_time == 0;
    servers.then_some(true)
}

/// A request's head as `http` types, for a function's event.
fn request_parts(method: &str, target: &str, headers: &[httparse::Header<'_>]) -> Option<http::request::Parts> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = http::Method::from_bytes(method.as_bytes()).ok()?;
    parts.uri = http::Uri::try_from(target).ok()?;
    parts.headers.reserve(headers.len());
    for header in headers {
        let name = http::HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        parts.headers.append(name, http::HeaderValue::from_bytes(header.value).ok()?);
    }
    Some(parts)
}

/// The bytes a request target in origin form may hold as `http::Uri` takes them (anything else: general path).
fn plain_target_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends the request in `out` to one of the rule's servers and its answer to the client; whether the client
/// connection ends after it. `None`: the client connection broke, or the answer could not be completed (its head
/// already sent), and the connection ends.
#[allow(clippy::too_many_arguments)]
async fn exchange<I>(
    proxy: &Proxy,
    peer: &Peer,
    plan: &Plan,
    last: bool,
    io: &mut I,
    out: &mut Vec<u8>,
    answer: &mut BytesMut,
    account: &mut Account<'_>,
) -> Option<bool>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let target = &plan.routes.rules[plan.rule];
    let upstreams = &proxy.upstreams;
    let balancer = upstreams.balancer(target);
    let waits = upstreams.waits(target);
    let mut close = plan.close || last;
    let mut tried = Vec::new();
    let again = |failure, tried: &mut Vec<SocketAddr>| {
        retry::decide(failure, tried.len(), upstreams.max_tries()).retries(tried)
    };
    let failed = loop {
        let Some((backend, in_flight)) = balancer.next(peer.client.ip(), None, &mut tried) else {
            break if tried.is_empty() { respond::no_target() } else { respond::bad_gateway() };
        };
        let addr = backend.addr;
        let connection = upstreams.plain_connection(backend, target.keepalive, &mut tried, waits.connect).await;
        let (mut stream, pooled) = match connection {
            Ok(Some(connection)) => connection,
            Ok(None) => continue,
            Err(()) => break respond::bad_gateway(),
        };
        // A pooled connection the server closed meanwhile fails before any answer: the request goes again, on
        // another connection (when it was not sent, or may be repeated). The pool is finite, and a new connection
        // is not tried twice.
        match tokio::time::timeout(waits.send, stream.write_all(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if again(Failure::Unsent { pooled }, &mut tried) => continue,
            Ok(Err(_)) => break respond::bad_gateway(),
            Err(_) => break respond::gateway_timeout(),
        }
        answer.clear();
        close |= peer.keepalive.closing();
        let answering = Answering { head_request: plan.head_request, custom: &target.custom, close };
        let head = match read_head(proxy, &mut stream, answer, waits.read, &answering, out).await {
            Ok(head) => head,
            Err(HeadError::TimedOut) => break respond::gateway_timeout(),
            Err(error) => {
                let failure = match error {
                    HeadError::Closed => Failure::Unanswered { pooled, resendable: plan.resendable },
                    HeadError::Bad | HeadError::TimedOut => Failure::Broken,
                };
                if again(failure, &mut tried) {
                    continue;
                }
                break respond::bad_gateway();
            }
        };
        let Head { length: head_length, status, framing, reusable } = head;
        close |= framing == Framing::UntilClose;
        answer.advance(head_length);
        let length = match framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::UntilClose => None,
        };
        account.server(Some(addr));
        account.answered(status, length);
        let relayed = relay(framing, plan.trailers, &mut stream, answer, io, out, waits.read).await;
        drop(in_flight);
        match relayed {
            Ok(()) if target.keepalive && reusable && framing != Framing::UntilClose && answer.is_empty() => {
                upstreams.keep_plain(addr, stream);
            }
            Ok(()) => {}
            Err(_) => return None,
        }
        return Some(close);
    };
    account.server(tried.last().copied());
    let answering = Answering { head_request: plan.head_request, custom: &target.custom, close };
    answer_own(io, out, failed, &answering, account).await.ok()?;
    Some(close)
}

/// Runs the rule's function for a request (whole, at the start of `request`), and writes its answer; whether the
/// client connection ends after it.
#[allow(clippy::too_many_arguments)]
async fn run<'a, I>(
    proxy: &Proxy,
    peer: &Peer,
    plan: &'a Plan,
    request: &[u8],
    last: bool,
    io: &mut I,
    out: &mut Vec<u8>,
    account: &mut Account<'a>,
) -> Option<bool>
where
    I: AsyncWrite + Unpin,
{
    let target = &plan.routes.rules[plan.rule];
    let (key, function) = (target.function.as_ref()?, plan.function.as_ref()?);
    let body = &request[plan.head..plan.length];
    account.served.function = Some(key);
    let request_id = account.served.request_id.get_or_init(crate::ids::request_id).as_str();
    let routed = Routed { routes: &plan.routes, target, peer, host: &function.host, start_ms: plan.start_ms };
    let answer = run_function(proxy, &plan.snapshot, &routed, key, &function.parts, body, request_id).await;
    let close = plan.close || last || peer.keepalive.closing();
    let answering = Answering { head_request: plan.head_request, custom: &target.custom, close };
    answer_own(io, out, answer, &answering, account).await.ok()?;
    Some(close)
}

/// What the answer's head for the client depends on besides the server's head.
struct Answering<'a> {
    head_request: bool,
    custom: &'a Settings,
    /// The client connection closes after this answer.
    close: bool,
}

/// A server's answer head: where it ends in the buffer, its status, how its body ends, and whether the server
/// keeps the connection open.
struct Head {
    length: usize,
    status: u16,
    framing: Framing,
    reusable: bool,
}

enum HeadError {
    /// The connection ended before any answer.
    Closed,
    TimedOut,
    /// A broken connection, or a head that is not HTTP/1.1 or too large.
    Bad,
}

/// Reads a server's answer head into `buffer`, past any interim (1xx) answers, and writes the client's into `out`.
async fn read_head(
    proxy: &Proxy,
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    wait: std::time::Duration,
    answering: &Answering<'_>,
    out: &mut Vec<u8>,
) -> Result<Head, HeadError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut interim = false;
    loop {
        if !buffer.is_empty() {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut storage);
            match response.parse(buffer) {
                Ok(httparse::Status::Complete(length)) => {
                    let status = response.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        buffer.advance(length);
                        interim = true;
                        continue;
                    }
                    if status == 101 || status < 100 {
                        return Err(HeadError::Bad);
                    }
                    let headers = &*response.headers;
                    let framing =
                        h1::response_framing(answering.head_request, status, headers).ok_or(HeadError::Bad)?;
                    let reusable = response.version == Some(1) && !h1::connection_lists(headers, "close");
                    let close = answering.close || framing == Framing::UntilClose;
                    out.clear();
                    write_answer_head(out, &response, framing, answering.custom, close);
                    return Ok(Head { length, status, framing, reusable });
                }
                Ok(httparse::Status::Partial) if buffer.len() < proxy.settings.max_header_bytes => {}
                _ => return Err(HeadError::Bad),
            }
        }
        buffer.reserve(BUFFER);
        match tokio::time::timeout_at(deadline, stream.read_buf(buffer)).await {
            Ok(Ok(0)) if buffer.is_empty() && !interim => return Err(HeadError::Closed),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(HeadError::Bad),
            Ok(Ok(_)) => {}
            Err(_) => return Err(HeadError::TimedOut),
        }
    }
}

/// Writes the head the client gets for a server's answer: the server's headers but those of its connection,
/// the framing of the body as it is passed on, and what the configuration adds (`Server`, `add_header`,
/// `more_set_headers`).
#[doc(hidden)]
pub fn write_answer_head(
    out: &mut Vec<u8>,
    response: &httparse::Response<'_, '_>,
    framing: Framing,
    custom: &Settings,
    close: bool,
) {
    let status = response.code.unwrap_or(502);
    h1::push_status_line(out, status, response.reason.unwrap_or(""));
    let (mut date, mut server) = (false, false);
    let connection = response.headers.iter().any(|h| h.name.eq_ignore_ascii_case("connection"));
    for header in response.headers.iter() {
        let name = header.name;
        // The framing is the encoder's: the server's length when the body passes through otherwise, and `Trailer`
        // only over the chunked coding (as hyper writes it).
        let framed = (framing != Framing::Empty && name.eq_ignore_ascii_case("content-length"))
            || (framing != Framing::Chunked && name.eq_ignore_ascii_case("trailer"));
        let listed = connection && h1::connection_lists(response.headers, name);
        if framed || !policy::keeps_answer_header(name, listed, custom) {
            continue;
        }
        date |= name.eq_ignore_ascii_case("date");
        server |= name.eq_ignore_ascii_case("server");
        h1::push_header(out, name.as_bytes(), header.value);
    }
    match framing {
        Framing::Length(n) => h1::push_content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
    let decoration = Decoration { custom, status };
    if decoration.date(date) {
        h1::push_date(out);
    }
    if let Some(server) = decoration.server(server) {
        h1::push_header(out, b"Server", server.as_bytes());
    }
    for (name, value) in decoration.added() {
        h1::push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Passes an answer's body on as it comes (its head is in `out`, its first bytes in `buffer`), its trailers only
/// when the client takes them; what is left in `buffer` after the body belongs to no answer.
async fn relay<I>(
    framing: Framing,
    trailers: bool,
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    io: &mut I,
    out: &mut Vec<u8>,
    wait: std::time::Duration,
) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    let mut left = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunked = (framing == Framing::Chunked).then(Chunked::default);
    loop {
        let take = match &mut chunked {
            Some(chunked) => {
                let end = chunked.scan(buffer).map_err(|_| broken("a malformed chunked body"))?;
                let take = end.unwrap_or(buffer.len());
                match chunked.trailers_at().filter(|_| !trailers) {
                    // The trailer section left out: the body ends with the last chunk and an empty line.
                    Some(from) => {
                        out.extend_from_slice(&buffer[..from.min(take)]);
                        if end.is_some() {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    None => out.extend_from_slice(&buffer[..take]),
                }
                if end.is_some() {
                    left = 0;
                }
                take
            }
            None => {
                let take = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&buffer[..take]);
                take
            }
        };
        buffer.advance(take);
        if framing != Framing::Chunked && framing != Framing::UntilClose {
            left -= take as u64;
        }
        io.write_all(out).await?;
        io.flush().await?;
        out.clear();
        if left == 0 {
            return Ok(());
        }
        buffer.reserve(BUFFER);
        match tokio::time::timeout(wait, stream.read_buf(buffer)).await {
            Ok(Ok(0)) if framing == Framing::UntilClose => return Ok(()),
            Ok(Ok(0)) => return Err(broken("the server closed the connection within an answer")),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(broken("the server sent nothing within the read timeout")),
        }
    }
}

fn broken(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Writes an answer held whole: one of the balancer's own, or a function's (no body for HEAD, 204 or 304).
async fn answer_own<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    mut response: http::Response<Body>,
    &Answering { head_request, custom, close }: &Answering<'_>,
    account: &mut Account<'_>,
) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    policy::decorate(custom, &mut response);
    account.answered(response.status().as_u16(), hyper::body::Body::size_hint(response.body()).exact());
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    out.clear();
    h1::push_status_line(out, parts.status.as_u16(), parts.status.canonical_reason().unwrap_or(""));
    let mut date = false;
    for (name, value) in &parts.headers {
        date |= name == http::header::DATE;
        h1::push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let bodiless = matches!(parts.status.as_u16(), 204 | 304);
    if !bodiless {
        h1::push_content_length(out, body.len() as u64);
    }
    if !date {
        h1::push_date(out);
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request && !bodiless {
        out.extend_from_slice(&body);
    }
    io.write_all(out).await?;
    io.flush().await
}

/// A connection with bytes already read from it in front: the general path reads them first.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub(super) fn new(io: I, prefix: Bytes) -> Prefixed<I> {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handed_over_connection_reads_its_prefix_first() {
        let (mut near, far) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(far, Bytes::from_static(b"GET / HTTP/1.1\r\n"));
        near.write_all(b"Host: a\r\n\r\n").await.unwrap();
        let mut read = vec![0; 27];
        prefixed.read_exact(&mut read).await.unwrap();
        assert_eq!(read, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        prefixed.write_all(b"ok").await.unwrap();
        let mut back = [0; 2];
        near.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ok");
    }

    fn takes(head: &[u8]) -> bool {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        matches!(read_request_head(head, &mut storage), Read::Head(_))
    }

    #[test]
    fn heads_whose_host_or_length_is_in_doubt_go_to_the_general_path() {
        assert!(takes(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"));
        // A second Host after one that is not text (the first read as none).
        assert!(!takes(b"GET / HTTP/1.1\r\nHost: \xff\r\nHost: b\r\n\r\n"));
        assert!(!takes(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"));
        assert!(!takes(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"));
        // A Connection header naming Content-Length would take it off the server's head and leave the body to be
        // read as another request; naming Host, the server would get none.
        assert!(!takes(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\n"));
        assert!(!takes(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Host\r\n\r\n"));
    }

    #[test]
    fn request_targets_with_bytes_uri_refuses_go_to_the_general_path() {
        assert!("/a/b-c_d.e~f?x=1&y=%20".bytes().all(plain_target_byte));
        for odd in ["/a b", "/a\"b", "/a{b}", "/a|b", "/a\\b", "/a^b", "/a<b>"] {
            assert!(!odd.bytes().all(plain_target_byte), "{odd}");
        }
    }
}
