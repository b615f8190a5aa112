//! The TencentCloud API 3.0 endpoint (contract 3), answered with HTTP 200 and `{"Response": {…, "RequestId"}}`
//! whether it succeeded or not. A request comes in one of the forms the SDKs send (`Form`; docs/api-coverage.md,
//! "Signing"):
//!
//! * TC3-HMAC-SHA256 (`tc3`): `POST /` with a JSON body, or `GET /` with the parameters flattened into the query
//!   string; the action, version and region in `X-TC-*` headers.
//! * Signature v1 (`v1`, HmacSHA1 or HmacSHA256): every parameter, common and the action's, flattened into the
//!   query string (`GET`) or an `application/x-www-form-urlencoded` body (`POST`).
//! * A console request: `POST /` with the console's session and CSRF token.
//!
//! Whatever service a TC3 credential scope names, the action (each in one service) decides which service handles
//! the call. Flattened parameters are unflattened into the JSON an action takes (`flat`).
//!
//! Handlers translate: they parse and check a request's shape, build a `Command`, apply it through the
//! control plane and render the result. The rules live in `state`.

mod actions;
pub mod backoff;
pub mod clb;
pub mod error;
/// Public for the fuzz targets (fuzz/), not an interface of the crate.
#[doc(hidden)]
pub mod flat;
pub mod guard;
mod monitor;
mod params;
pub mod replay;
pub mod scf;
pub mod tc3;
pub mod tls;
pub mod v1;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

pub use actions::{ACTIONS, ActionInfo, Service};
pub use error::ApiError;

use crate::clock::Zone;
use crate::control::{Committed, Control};
use crate::functions::Engine;
use crate::functions::queue::AsyncQueue;
use crate::proxy::Sockets;
use crate::snapshot::Snapshot;
use crate::state::{Account, Command, Scope};
use crate::store::{Store, Task};

/// The API's settings. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Regions the API serves; a request for another answers `UnsupportedRegion`.
    pub regions: Vec<String>,
    /// The region of a request that names none.
    pub default_region: String,
    pub zone: Zone,
    pub max_body_bytes: usize,
    /// How long a mutation waits for the data plane to put it into effect before answering.
    pub apply_timeout: Duration,
    pub request_timeout: Duration,
    /// Connection caps, the body budget and the header deadline.
    pub guard: guard::GuardSettings,
    /// Refuse TC3 requests that do not sign `x-tc-action` (the SDKs sign only `content-type` and `host`).
    pub require_signed_action: bool,
    /// The certificate and key the API is served with over TLS; `None`: plain HTTP.
    pub tls: Option<tls::TlsFiles>,
}

/// TC3 POST bodies are limited to 10 MB (contract 3.1).
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The longest query string a request may carry: Tencent's limit for GET requests (contract 3.1).
pub const MAX_QUERY_BYTES: usize = 32 * 1024;
/// The largest form body of a request signed with signature v1: Tencent's limit (contract 3.1). Such a body is
/// read before its signature can be checked, since the signature is in it.
pub const MAX_FORM_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Sync `Invoke` calls time out at 300 s (contract 1.4), plus room to answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(310);

pub const DEFAULT_REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-nanjing",
    "ap-hongkong",
    "ap-singapore",
    "ap-jakarta",
    "ap-seoul",
    "ap-tokyo",
    "ap-mumbai",
    "ap-bangkok",
    "na-siliconvalley",
    "na-ashburn",
    "na-toronto",
    "eu-frankfurt",
    "sa-saopaulo",
    "ap-shenzhen-fsi",
    "ap-shanghai-fsi",
    "ap-beijing-fsi",
];

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            regions: DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
            default_region: "ap-guangzhou".to_string(),
            zone: Zone::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            apply_timeout: DEFAULT_APPLY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            guard: guard::GuardSettings::default(),
            require_signed_action: false,
            tls: None,
        }
    }
}

pub struct Api {
    pub control: Arc<Control>,
    pub functions: Arc<Engine>,
    pub settings: ApiSettings,
    /// Where a new listener's address is bound before the listener is created.
    pub sockets: Arc<Sockets>,
    /// Asynchronous invocations.
    pub queue: Arc<AsyncQueue>,
    /// Server targets' health, as the checks see it.
    pub health: Arc<crate::proxy::health::Health>,
    /// The web console's assets and sessions.
    pub console: crate::console::Console,
    /// Requests answered, by action and error code (`OK` for success).
    pub answered: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Connection caps and the body budget.
    pub guard: guard::Guard,
    /// Signatures seen within their window, and what they were used for.
    pub replays: replay::Replays,
    /// Failed sign-ins and signatures, per client address and SecretId.
    pub backoff: backoff::Backoff,
    /// TLS for every connection (`--api-tls-cert`); `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The largest body the console's own endpoints take (sign-in).
const CONSOLE_MAX_BODY_BYTES: usize = 64 * 1024;

/// One authenticated request, as handlers see it.
pub struct Ctx<'a> {
    pub api: &'a Api,
    pub account: Account,
    pub scope: Scope,
    pub request_id: String,
    pub snapshot: Arc<Snapshot>,
}

// === impl Ctx ===

impl Ctx<'_> {
    /// Applies a command and waits until the data plane serves it. CLB mutations pass the load balancers
    /// they touch, so that `DescribeTaskStatus` can report the task.
    pub async fn apply(&self, command: Command, task_lbs: Option<Vec<String>>) -> Result<Committed, ApiError> {
        let task = task_lbs.map(|lbs| Task {
            request_id: self.request_id.clone(),
            uin: self.account.uin.clone(),
            load_balancer_ids: lbs,
            created_ms: crate::clock::now_ms(),
            version: 0,
        });
        let committed = self.api.control.apply(command, task).await?;
        if !self.api.control.snapshots().wait_in_effect(committed.version, self.api.settings.apply_timeout).await {
            tracing::warn!(version = committed.version, "The data plane did not confirm a change in time.");
        }
        Ok(committed)
    }

    pub fn time(&self, ms: i64) -> String {
        self.api.settings.zone.format(ms)
    }
}

// === impl Api ===

impl Api {
    /// Serves the API on `listener` until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.settings.guard.header_timeout);
        let mut connections = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (stream, client) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(admitted) = self.guard.admit(client.ip()) else {
                tracing::debug!(%client, "API connection cap reached: a new connection is closed.");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                tracing::debug!(%client, "An API connection without a local address is closed.");
                continue;
            };
            let (api, builder, stop) = (self.clone(), builder.clone(), shutdown.clone());
            connections.spawn(async move {
                let admitted = Arc::new(admitted);
                let Some(tls) = api.tls.clone() else {
                    return api.connection(builder, TokioIo::new(stream), (client, local), admitted, stop).await;
                };
                // The handshake counts against the header timeout from accept, and has a bound of its own.
                let limit = tls::HANDSHAKE_TIMEOUT.min(api.settings.guard.header_timeout);
                match tokio::time::timeout(limit, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        api.connection(builder, TokioIo::new(stream), (client, local), admitted, stop).await
                    }
                    Ok(Err(e)) => tracing::debug!(%client, error = %e, "An API TLS handshake failed."),
                    Err(_) => tracing::debug!(%client, "An API TLS handshake did not finish in time."),
                }
            });
            // Connections that ended are reaped as new ones come.
            while connections.try_join_next().is_some() {}
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(10), async { while connections.join_next().await.is_some() {} })
                .await;
    }

    /// Serves one admitted connection (plain, or after its TLS handshake) from `client` to `local` until it ends,
    /// is idle past the header timeout (counted from accept, then from each answer), or `shutdown` turns true.
    async fn connection<I>(
        self: Arc<Self>,
        builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
        io: TokioIo<I>,
        (client, local): (SocketAddr, SocketAddr),
        admitted: Arc<guard::Admitted>,
        mut stop: watch::Receiver<bool>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let busy = admitted.clone();
        let api = self.clone();
        let service = service_fn(move |req| {
            let api = api.clone();
            let busy = busy.busy();
            async move {
                let response = api.handle(req, client, local).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder.serve_connection(io, service);
        let timeout = self.settings.guard.header_timeout;
        tokio::pin!(conn);
        let mut closing = false;
        // A closing connection that does not finish (its client reads nothing) is dropped.
        let mut dropped_at = tokio::time::Instant::now();
        loop {
            // A connection with no request being answered must send one within the header timeout, counted from
            // accept or from the end of its last request.
            let deadline = admitted.idle_deadline(timeout);
            let wake = deadline.unwrap_or_else(|| tokio::time::Instant::now() + timeout);
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "API connection ended with an error.");
                    }
                    break;
                }
                _ = tokio::time::sleep_until(wake), if !closing => {
                    if admitted.idle_deadline(timeout).is_some_and(|d| d <= tokio::time::Instant::now()) {
                        tracing::debug!(%client, "An idle API connection is closed.");
                        conn.as_mut().graceful_shutdown();
                        (closing, dropped_at) = (true, tokio::time::Instant::now() + timeout);
                    }
                }
                _ = stop.wait_for(|s| *s), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    (closing, dropped_at) = (true, tokio::time::Instant::now() + timeout);
                }
                _ = tokio::time::sleep_until(dropped_at), if closing => break,
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>, client: SocketAddr, local: SocketAddr) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path == "/console" || path.starts_with("/console/") {
            let (parts, body) = req.into_parts();
            let collect = Limited::new(body, CONSOLE_MAX_BODY_BYTES).collect();
            let body = match tokio::time::timeout(self.settings.request_timeout, collect).await {
                Ok(Ok(body)) => body.to_bytes(),
                _ => Bytes::new(),
            };
            let snapshot = self.control.snapshot();
            let request =
                crate::console::Request { method: &parts.method, path: parts.uri.path(), headers: &parts.headers };
            return self.console.handle(&snapshot.state, &request, &body, client.ip(), &self.backoff);
        }
        if path != "/" {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let request_id = crate::ids::request_id();
        let span = tracing::info_span!("api", action = tracing::field::Empty, %request_id, %client);
        let mut first_use = None;
        let mut action = String::new();
        let call = self.call(req, &request_id, client.ip(), local.port(), &mut action, &mut first_use);
        let result = tokio::time::timeout(self.settings.request_timeout, call.instrument(span.clone()))
            .await
            .unwrap_or_else(|_| Err(ApiError::new("InternalError", "The request did not finish in time.")));
        let result = match result {
            Ok(Answer::Fields(fields)) => Ok(fields),
            Ok(Answer::Repeat(body)) => return json_response(body),
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or_else(|e| e.code.to_string(), |_| "OK".to_string());
        let action_name = if ACTIONS.iter().any(|a| a.name == action) { action } else { "(unknown)".to_string() };
        *self.answered.lock().unwrap_or_else(|p| p.into_inner()).entry((action_name, code)).or_default() += 1;
        let body = match result {
            Ok(mut fields) => {
                fields.insert("RequestId".to_string(), Value::String(request_id));
                Value::Object(fields)
            }
            Err(e) => {
                span.in_scope(|| tracing::debug!(code = e.code, message = %e.message, "Request refused."));
                serde_json::json!({"Error": {"Code": e.code, "Message": e.message}, "RequestId": request_id})
            }
        };
        let body =
            Bytes::from(serde_json::to_vec(&serde_json::json!({ "Response": body })).expect("responses serialise"));
        if let Some(first) = first_use {
            first.keep(body.clone()).await;
        }
        json_response(body)
    }

    /// Authenticates a request in whichever form it comes (`Form`), then carries out its action. The action's name
    /// is left in `action` as soon as it is known.
    async fn call<'a>(
        &'a self,
        req: Request<Incoming>,
        request_id: &str,
        client: std::net::IpAddr,
        local_port: u16,
        action_seen: &mut String,
        first_use: &mut Option<FirstUse<'a>>,
    ) -> Result<Answer, ApiError> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().unwrap_or("");
        if query.len() > MAX_QUERY_BYTES {
            return Err(ApiError::new(
                "RequestSizeLimitExceeded",
                format!("The query string exceeds {MAX_QUERY_BYTES} bytes; send the parameters with POST."),
            ));
        }
        let request = match Form::of(&parts.method, &parts.headers) {
            Some(Form::Tc3) | Some(Form::Console) => self.authenticate_tc3(&parts, body, client, local_port).await?,
            Some(Form::V1) => self.authenticate_v1(&parts, body, client, local_port).await?,
            None if parts.method == Method::POST => return Err(auth_error(tc3::AuthError::InvalidAuthorization)),
            None => return Err(ApiError::new("UnsupportedProtocol", "Only GET and POST requests are supported.")),
        };
        let Authenticated { account, service, signature, action, version, region, params } = request;
        tracing::Span::current().record("action", action.as_str());
        action_seen.clone_from(&action);
        let info =
            ACTIONS.iter().find(|a| a.name == action && service.is_none_or(|s| s == a.service)).ok_or_else(|| {
                let service = service.map_or(String::new(), |s| format!(" for {}", s.name()));
                ApiError::new("InvalidAction", format!("The action `{action}` does not exist{service}."))
            })?;
        let service = info.service;
        if version != service.version() {
            return Err(ApiError::new(
                "NoSuchVersion",
                format!("The version `{version}` does not exist for {}; use {}.", service.name(), service.version()),
            ));
        }
        let region = match region {
            Some(r) if !r.is_empty() => r,
            _ => self.settings.default_region.clone(),
        };
        if !self.settings.regions.contains(&region) {
            return Err(ApiError::new("UnsupportedRegion", format!("The region `{region}` is not supported.")));
        }
        let flattened = matches!(params, Params::Flat(_));
        let params = params.into_object()?;
        if let Some(unknown) = params.keys().find(|k| !info.params.contains(&k.as_str())) {
            return Err(ApiError::new("UnknownParameter", format!("The parameter `{unknown}` is not recognized.")));
        }
        // A signature is good for what its signer meant: a change once, a read or an invocation again only from
        // the signer's address; any other repeat gets the first answer, and any other use is refused (`replay`).
        if let Some((signature, timestamp)) = &signature {
            let used_for = (service.name(), action.clone(), region.clone(), version.clone());
            let now = crate::clock::now_ms() / 1000;
            match self.replays.claim(signature, used_for.clone(), info.effect, client, *timestamp, now) {
                replay::Claim::First(slot) => {
                    let shared = match (info.effect, self.control.store()) {
                        (actions::Effect::Change, Store::Cluster(pg)) => Some(pg.clone()),
                        _ => None,
                    };
                    let mut first = FirstUse { slot, shared: None };
                    if let Some(pg) = shared {
                        match replay::claim_shared(&pg, signature, &used_for, client, *timestamp).await? {
                            replay::Shared::First => first.shared = Some((pg, signature.clone(), used_for)),
                            replay::Shared::Repeat => {
                                let answer = replay::wait_shared(&pg, signature, &used_for).await?;
                                first.slot.keep(answer.clone());
                                return repeated(answer);
                            }
                            replay::Shared::Other => return Err(used_by_another()),
                        }
                    }
                    *first_use = Some(first);
                }
                replay::Claim::Repeat(mut first) => {
                    let answer = first.wait_for(Option::is_some).await.ok().and_then(|a| a.clone()).unwrap_or_default();
                    return repeated(answer);
                }
                replay::Claim::Own => {}
                replay::Claim::Other => return Err(used_by_another()),
                replay::Claim::Full => {
                    return Err(ApiError::new(
                        "RequestLimitExceeded",
                        "Too many signed requests within the last five minutes; try again later.",
                    ));
                }
            }
        }
        let ctx = Ctx {
            api: self,
            scope: Scope { uin: account.uin.clone(), region },
            account,
            request_id: request_id.to_string(),
            snapshot: self.control.snapshot(),
        };
        let dispatched = actions::dispatch(&ctx, service, &action, params);
        let fields = match flattened {
            true => params::flattened(dispatched).await?,
            false => dispatched.await?,
        };
        Ok(Answer::Fields(fields))
    }

    /// Authenticates a TC3-signed request (POST with a JSON body, or GET with its parameters in the query string)
    /// or a console request: its head as far as a head can be before the body is read, then the signature over the
    /// body's hash (or over the empty body's, for GET).
    async fn authenticate_tc3(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        client: std::net::IpAddr,
        local_port: u16,
    ) -> Result<Authenticated, ApiError> {
        let headers = &parts.headers;
        // Nothing of the body is read before its head is authenticated as far as a head can be.
        let head = self.authenticate_head(headers, client)?;
        let (params, body_sha256) = match parts.method {
            Method::GET => {
                (Params::Flat(flat::pairs(parts.uri.query().unwrap_or("").as_bytes())), tc3::sha256_hex(b""))
            }
            _ => {
                let read = self.read_body(headers, body, self.settings.max_body_bytes).await?;
                let sha256 = read.sha256.clone();
                (Params::Json(read), sha256)
            }
        };
        let host = request_host(parts);
        let hosts = tc3::host_forms(host, local_port);
        let Head { account, service, tc3 } = head;
        let signature = self.verify_tc3(&account, tc3, parts, &hosts, &body_sha256, client)?;
        let action = header_str(headers, "x-tc-action").ok_or_else(|| ApiError::missing("X-TC-Action"))?;
        let version = header_str(headers, "x-tc-version").ok_or_else(|| ApiError::missing("X-TC-Version"))?;
        Ok(Authenticated {
            account,
            service,
            signature,
            action: action.to_string(),
            version: version.to_string(),
            region: header_str(headers, "x-tc-region").map(str::to_string),
            params,
        })
    }

    /// Reads a request's body of at most `limit` bytes within the body budget.
    async fn read_body(&self, headers: &HeaderMap, body: Incoming, limit: usize) -> Result<guard::ReadBody, ApiError> {
        let declared = header_str(headers, "content-length").and_then(|n| n.parse::<u64>().ok());
        self.guard.read_body(body, declared, limit).await.map_err(|e| match e {
            guard::BodyError::TooLarge => {
                ApiError::new("RequestSizeLimitExceeded", format!("The request body exceeds {limit} bytes."))
            }
            guard::BodyError::Busy => {
                ApiError::new("RequestLimitExceeded", "Too many request bodies are being received; try again.")
            }
            guard::BodyError::Broken => ApiError::new("InvalidParameter", "The request body could not be read."),
        })
    }

    /// What can be checked of a request before its body is read: a console session, or a TC3 `Authorization`
    /// header that parses, a timestamp within the window, a known SecretId and a signature of the right shape.
    fn authenticate_head<'h>(&self, headers: &'h HeaderMap, client: std::net::IpAddr) -> Result<Head<'h>, ApiError> {
        use tc3::AuthError;
        if header_str(headers, "authorization").is_none() && crate::console::Console::carries_session(headers) {
            let (account, service) = self.console_account(headers)?;
            return Ok(Head { account, service: Some(service), tc3: None });
        }
        let header = header_str(headers, "authorization").ok_or(AuthError::InvalidAuthorization).map_err(auth_error)?;
        let auth = tc3::parse_authorization(header).map_err(auth_error)?;
        let timestamp: i64 = header_str(headers, "x-tc-timestamp").and_then(|t| t.parse().ok()).ok_or_else(|| {
            ApiError::new("AuthFailure.InvalidAuthorization", "The X-TC-Timestamp header is missing or not a number.")
        })?;
        let account = self.signer(client, auth.secret_id, timestamp, header_str(headers, "x-tc-token"))?;
        if !auth.signed_headers.contains(&"content-type") || !auth.signed_headers.contains(&"host") {
            return Err(ApiError::new(
                "AuthFailure.InvalidAuthorization",
                "The signed headers must include content-type and host.",
            ));
        }
        if self.settings.require_signed_action && !auth.signed_headers.contains(&"x-tc-action") {
            return Err(ApiError::new(
                "AuthFailure.InvalidAuthorization",
                "The signed headers must include x-tc-action on this server.",
            ));
        }
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if auth.signature.len() != 64 || !auth.signature.bytes().all(hex) {
            return Err(auth_error(AuthError::SignatureFailure));
        }
        Ok(Head { account, service: None, tc3: Some((auth, timestamp)) })
    }

    /// Verifies a TC3 signature (`None` for a console request: there is none to verify) with `account`'s key over
    /// the head and the body's SHA-256, with the host in each of `hosts`' forms; the signature and its timestamp.
    fn verify_tc3(
        &self,
        account: &Account,
        tc3: Option<(tc3::Authorization<'_>, i64)>,
        parts: &http::request::Parts,
        hosts: &[String],
        body_sha256: &str,
        client: std::net::IpAddr,
    ) -> Result<Option<SignedAt>, ApiError> {
        let Some((auth, timestamp)) = tc3 else { return Ok(None) };
        let headers = &parts.headers;
        let payload_hash = match header_str(headers, "x-tc-content-sha256") {
            Some(tc3::UNSIGNED_PAYLOAD) => tc3::sha256_hex(tc3::UNSIGNED_PAYLOAD.as_bytes()),
            _ => body_sha256.to_string(),
        };
        let now = crate::clock::now_ms() / 1000;
        let mut outcome = Err(tc3::AuthError::SignatureFailure);
        for host in hosts {
            let signed = auth
                .signed_headers
                .iter()
                .map(|name| {
                    let value = match *name {
                        "host" => host.as_str(),
                        _ => header_str(headers, name).unwrap_or(""),
                    };
                    (name.to_string(), value)
                })
                .collect();
            let request = tc3::Signed {
                method: parts.method.as_str(),
                query: parts.uri.query().unwrap_or(""),
                headers: signed,
                payload_hash: payload_hash.clone(),
                timestamp,
                service: auth.service,
            };
            outcome = tc3::verify(&auth, &account.secret_key, &request, now);
            if !matches!(outcome, Err(tc3::AuthError::SignatureFailure)) {
                break;
            }
        }
        match outcome {
            Ok(()) => self.backoff.succeeded(client),
            Err(e) => {
                if matches!(e, tc3::AuthError::SignatureFailure) {
                    self.backoff.failed(client, Some(auth.secret_id));
                }
                return Err(auth_error(e));
            }
        }
        Ok(Some((auth.signature.to_string(), timestamp)))
    }

    /// Authenticates a request signed with signature v1: its parameters (from the query string, or from a form
    /// body of at most `MAX_FORM_BODY_BYTES`, read before anything can be checked but the address's failures), the
    /// common ones present, the timestamp within the window, a known SecretId, and the signature.
    async fn authenticate_v1(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        client: std::net::IpAddr,
        local_port: u16,
    ) -> Result<Authenticated, ApiError> {
        if let Some(wait) = self.backoff.wait(client, None) {
            return Err(too_many_failures(wait));
        }
        let pairs = match parts.method {
            Method::GET => flat::pairs(parts.uri.query().unwrap_or("").as_bytes()),
            _ => flat::pairs(&self.read_body(&parts.headers, body, MAX_FORM_BODY_BYTES).await?.bytes),
        };
        let common = v1::common_params(&pairs).map_err(|name| {
            ApiError::new("InvalidParameter", format!("The parameter `{name}` is given more than once."))
        })?;
        let required = |name: &str| common.get(name).copied().ok_or_else(|| ApiError::missing(name));
        let (action, version) = (required("Action")?, required("Version")?);
        let (secret_id, signature) = (required("SecretId")?, required(v1::SIGNATURE)?);
        let (timestamp, _nonce) = (required("Timestamp")?, required("Nonce")?);
        let timestamp: i64 = timestamp.parse().map_err(|_| {
            ApiError::new("InvalidParameter", "The parameter `Timestamp` is not valid: Unix seconds are expected.")
        })?;
        let account = self.signer(client, secret_id, timestamp, common.get("Token").copied())?;
        let algorithm = v1::Algorithm::of(common.get("SignatureMethod").copied());
        let hosts = tc3::host_forms(request_host(parts), local_port);
        let method = parts.method.as_str();
        if !v1::verify(&account.secret_key, algorithm, signature, method, &hosts, parts.uri.path(), &pairs) {
            self.backoff.failed(client, Some(secret_id));
            return Err(auth_error(tc3::AuthError::SignatureFailure));
        }
        self.backoff.succeeded(client);
        Ok(Authenticated {
            signature: Some((signature.to_string(), timestamp)),
            action: action.to_string(),
            version: version.to_string(),
            region: common.get("Region").map(|r| r.to_string()),
            service: None,
            account,
            params: Params::Flat(pairs),
        })
    }

    /// What every signed request is checked for before its signature, in either form: a timestamp within the
    /// window, an address and SecretId not waiting out failed guesses, a known SecretId, no temporary token. The
    /// signer's account.
    fn signer(
        &self,
        client: std::net::IpAddr,
        secret_id: &str,
        timestamp: i64,
        token: Option<&str>,
    ) -> Result<Account, ApiError> {
        let now = crate::clock::now_ms() / 1000;
        if now.abs_diff(timestamp) > tc3::MAX_SKEW_SECONDS.unsigned_abs() {
            return Err(auth_error(tc3::AuthError::SignatureExpire));
        }
        if let Some(wait) = self.backoff.wait(client, Some(secret_id)) {
            return Err(too_many_failures(wait));
        }
        let account = self.account_of(secret_id)?;
        if token.is_some_and(|t| !t.is_empty()) {
            return Err(token_refused());
        }
        Ok(account)
    }

    /// The enabled account a SecretId belongs to.
    fn account_of(&self, secret_id: &str) -> Result<Account, ApiError> {
        let snapshot = self.control.snapshot();
        snapshot.state.account_by_secret_id(secret_id).cloned().ok_or_else(|| {
            ApiError::new(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found; check that it is correct and active.",
            )
        })
    }
}

/// The first use of a signature for a request: its answer is kept for repeats on this node and, for a change in a
/// cluster, recorded in the database for repeats on other nodes.
struct FirstUse<'a> {
    slot: replay::Slot<'a>,
    shared: Option<(Arc<crate::store::Postgres>, String, replay::Use)>,
}

impl FirstUse<'_> {
    async fn keep(self, answer: Bytes) {
        if let Some((pg, signature, used_for)) = &self.shared {
            replay::record_shared(pg, signature, used_for, &answer).await;
        }
        self.slot.keep(answer);
    }
}

/// The answer to a repeat of a signed request: the first answer, or a refusal when there is none to give.
fn repeated(answer: Bytes) -> Result<Answer, ApiError> {
    if answer.is_empty() {
        return Err(ApiError::new(
            "AuthFailure.SignatureFailure",
            "This signed request was already received and its answer is not available; sign each request anew.",
        ));
    }
    Ok(Answer::Repeat(answer))
}

/// The refusal of a signature another address used for another request.
fn used_by_another() -> ApiError {
    ApiError::new(
        "AuthFailure.SignatureFailure",
        "This signature was already used by another client for another request; sign each request anew.",
    )
}

/// What a request came to: the fields of its answer, or (a repeat of a signed request) the first answer whole.
enum Answer {
    Fields(Map<String, Value>),
    Repeat(Bytes),
}

/// An API answer: JSON, with exactly the content type the SDKs expect.
fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    // Exactly this value: the Python SDK ignores `Error` under any other (contract 3.3).
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A request's head as authenticated before its body is read: the account, the service a console request names,
/// and for a TC3 request its `Authorization` and timestamp, to verify over the body.
struct Head<'h> {
    account: Account,
    service: Option<Service>,
    tc3: Option<(tc3::Authorization<'h>, i64)>,
}

/// The forms an API request comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// An `Authorization` header: TC3-HMAC-SHA256, `POST` with a JSON body or `GET` with a query string.
    Tc3,
    /// A console session, `POST` with a JSON body.
    Console,
    /// Signature v1: `GET` with a query string, or `POST` with a form body.
    V1,
}

/// A request authenticated: who signed it, with what, and what it asks for.
struct Authenticated {
    account: Account,
    /// The service a console request names; `None`: the action's.
    service: Option<Service>,
    /// `None` for a console request.
    signature: Option<SignedAt>,
    action: String,
    version: String,
    region: Option<String>,
    params: Params,
}

/// A signature (TC3's hex or v1's Base64) and the Unix time it was made at.
type SignedAt = (String, i64);

/// An action's parameters as they came.
enum Params {
    /// A JSON body (holding its part of the body budget while it is used).
    Json(guard::ReadBody),
    /// Flattened name and value pairs (`flat`), common parameters among them.
    Flat(Vec<(String, String)>),
}

// === impl Form ===

impl Form {
    /// The form of a request with this method and these headers; `None` when it is none of them.
    fn of(method: &Method, headers: &HeaderMap) -> Option<Form> {
        let form_body = header_str(headers, "content-type").is_some_and(|t| {
            t.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
        });
        match (method, header_str(headers, "authorization").is_some()) {
            (&Method::GET | &Method::POST, true) => Some(Form::Tc3),
            (&Method::GET, false) => Some(Form::V1),
            (&Method::POST, false) if form_body => Some(Form::V1),
            (&Method::POST, false) if crate::console::Console::carries_session(headers) => Some(Form::Console),
            _ => None,
        }
    }
}

/// The content type of a form body.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

// === impl Params ===

impl Params {
    /// The JSON object of the parameters, without the common ones of a flattened request.
    fn into_object(self) -> Result<Map<String, Value>, ApiError> {
        match self {
            Params::Json(read) if read.bytes.is_empty() => Ok(Map::new()),
            Params::Json(read) => match serde_json::from_slice(&read.bytes) {
                Ok(Value::Object(params)) => Ok(params),
                Ok(_) => Err(ApiError::new("InvalidParameter", "The request body must be a JSON object.")),
                Err(e) => Err(ApiError::new("InvalidParameter", format!("The request body is not valid JSON: {e}."))),
            },
            Params::Flat(pairs) => {
                let own = pairs.iter().filter(|(name, _)| !v1::COMMON_PARAMS.contains(&name.as_str()));
                flat::unflatten(own.map(|(name, value)| (name.as_str(), value.as_str())))
                    .map_err(|e| ApiError::new("InvalidParameter", error::sentence(&e.to_string())))
            }
        }
    }
}

/// The host a request was sent to: its `Host` header, or (HTTP/2) its authority.
fn request_host(parts: &http::request::Parts) -> &str {
    header_str(&parts.headers, "host").or_else(|| parts.uri.authority().map(|a| a.as_str())).unwrap_or("")
}

/// The refusal of temporary credentials.
fn token_refused() -> ApiError {
    ApiError::new(
        "AuthFailure.TokenFailure",
        "Temporary credentials (X-TC-Token, Token) are not issued by this server.",
    )
}

/// The answer to an address that failed too often.
fn too_many_failures(wait: Duration) -> ApiError {
    ApiError::new(
        "RequestLimitExceeded",
        format!("Too many failed attempts from this address; try again in {} s.", wait.as_secs().max(1)),
    )
}

/// The Tencent error for a failed TC3 check.
fn auth_error(e: tc3::AuthError) -> ApiError {
    use tc3::AuthError;
    let code = match e {
        AuthError::InvalidAuthorization => "AuthFailure.InvalidAuthorization",
        AuthError::SignatureFailure => "AuthFailure.SignatureFailure",
        AuthError::SignatureExpire => "AuthFailure.SignatureExpire",
    };
    ApiError::new(code, error::sentence(&e.to_string()))
}

impl Api {
    /// The account of a console request: its session, its CSRF token, and the service it names.
    fn console_account(&self, headers: &HeaderMap) -> Result<(Account, Service), ApiError> {
        let snapshot = self.control.snapshot();
        let account = self
            .console
            .authenticate(&snapshot.state, headers)
            .map_err(|e| ApiError::new("AuthFailure.InvalidAuthorization", error::sentence(&e.to_string())))?;
        let name = header_str(headers, crate::console::SERVICE_HEADER).unwrap_or_default();
        let service = Service::parse(name).ok_or_else(|| {
            ApiError::new("InvalidAction", format!("The service `{name}` is not served here; fnlb serves scf and clb."))
        })?;
        Ok((account, service))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
