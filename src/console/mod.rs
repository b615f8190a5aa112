//! The web console, served under `/console/` on the API listener: its assets (embedded in the binary) and its
//! sessions. Signing in with an account's SecretId and SecretKey opens a session, kept in an HttpOnly, SameSite
//! cookie; the console then calls the same TencentCloud API actions as tccli on `POST /`, authenticated by that
//! cookie and a CSRF token the page holds (no secret is stored in the page). Sessions live in memory: a restart
//! signs everyone out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::proxy::bridge::cookie;
use crate::state::{Account, State};

/// The session cookie.
pub const SESSION_COOKIE: &str = "fnlb_console";
/// The header a console request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-fnlb-csrf";
/// The header naming a console request's service (`scf` or `clb`; a signed request names it in its credential).
pub const SERVICE_HEADER: &str = "x-fnlb-service";

/// Console settings. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Sessions open at once; past it, the oldest is closed.
    pub max_sessions: usize,
    /// Whether the session cookie is marked `Secure` (the console is served over HTTPS).
    pub secure_cookie: bool,
}

pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings { session_ttl: DEFAULT_SESSION_TTL, max_sessions: DEFAULT_MAX_SESSIONS, secure_cookie: false }
    }
}

struct Session {
    uin: String,
    csrf: String,
    expires: Instant,
}

/// The parts of a console request it is answered from.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

pub struct Console {
    settings: ConsoleSettings,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Why a console request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the console session has ended or does not exist; sign in again")]
    NoSession,
    #[error("the request lacks the console's CSRF token")]
    Csrf,
}

/// One embedded asset: its path under `/console/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset { path: $path, content_type: $type, bytes: include_bytes!(concat!("../../console/", $path)) }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("ui.js", "text/javascript; charset=utf-8"),
    asset!("zip.js", "text/javascript; charset=utf-8"),
    asset!("functions.js", "text/javascript; charset=utf-8"),
    asset!("balancers.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    // The editor's starting point: the seed's function, byte for byte.
    Asset {
        path: "templates/hello-clb.py",
        content_type: "text/plain; charset=utf-8",
        bytes: crate::app::EXAMPLE_CODE,
    },
];

/// What every console response says about itself: no framing, no sniffing, scripts only from here.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

type Reply = Response<Full<Bytes>>;

impl Console {
    pub fn new(settings: ConsoleSettings) -> Console {
        Console { settings, sessions: Mutex::default() }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a request under `/console`: an asset, or the session (`GET` it, `POST` to sign in, `DELETE` to
    /// sign out).
    pub fn handle(
        &self,
        state: &State,
        request: &Request<'_>,
        body: &[u8],
        client: IpAddr,
        backoff: &crate::api::backoff::Backoff,
    ) -> Reply {
        let Request { method, path, headers } = *request;
        match (method, path) {
            (&Method::GET, "/console") => redirect("/console/"),
            (_, "/console/session") => self.session(state, method, headers, body, client, backoff),
            (&Method::GET | &Method::HEAD, path) => {
                let name = path.strip_prefix("/console/").unwrap_or("");
                let name = if name.is_empty() { "index.html" } else { name };
                match ASSETS.iter().find(|a| a.path == name) {
                    Some(asset) => serve(asset, headers),
                    None => plain(StatusCode::NOT_FOUND, "not found\n"),
                }
            }
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        }
    }

    fn session(
        &self,
        state: &State,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        client: IpAddr,
        backoff: &crate::api::backoff::Backoff,
    ) -> Reply {
        match *method {
            Method::POST => {
                let given: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let (Some(id), Some(key)) = (given["SecretId"].as_str(), given["SecretKey"].as_str()) else {
                    return error(StatusCode::BAD_REQUEST, "MissingParameter", "SecretId and SecretKey are required.");
                };
                // Guessing is slow: an address that failed too often waits, before its key is looked at.
                if let Some(wait) = backoff.wait(client, Some(id)) {
                    let message = format!(
                        "Too many failed sign-ins from this address; try again in {} s.",
                        wait.as_secs().max(1)
                    );
                    return error(StatusCode::TOO_MANY_REQUESTS, "RequestLimitExceeded", &message);
                }
                let Some(account) = state.account_by_secret_id(id).filter(|a| same(&a.secret_key, key)) else {
                    backoff.failed(client, Some(id));
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "AuthFailure.SecretIdNotFound",
                        "The SecretId and SecretKey do not match an active account.",
                    );
                };
                backoff.succeeded(client);
                let (token, csrf) = (secret(), secret());
                let mut sessions = self.sessions();
                let now = Instant::now();
                sessions.retain(|_, s| s.expires > now);
                if sessions.len() >= self.settings.max_sessions
                    && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(t, _)| t.clone())
                {
                    sessions.remove(&oldest);
                }
                let expires = now + self.settings.session_ttl;
                sessions.insert(token.clone(), Session { uin: account.uin.clone(), csrf: csrf.clone(), expires });
                let cookie = format!(
                    "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                    self.settings.session_ttl.as_secs(),
                    self.secure()
                );
                let mut reply = json_reply(StatusCode::OK, &who(account, &csrf));
                set_cookie(&mut reply, &cookie);
                reply
            }
            // Signed out is an answer, not an error: `{}`.
            Method::GET => match self.account(state, headers) {
                Ok((account, csrf)) => json_reply(StatusCode::OK, &who(&account, &csrf)),
                Err(_) => json_reply(StatusCode::OK, &json!({})),
            },
            Method::DELETE => {
                if let Err(e) = self.authenticate(state, headers) {
                    return error(StatusCode::UNAUTHORIZED, "AuthFailure.InvalidAuthorization", &sentence(&e));
                }
                if let Some(token) = cookie(headers, SESSION_COOKIE) {
                    self.sessions().remove(token);
                }
                let mut reply = json_reply(StatusCode::OK, &json!({}));
                let cookie =
                    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", self.secure());
                set_cookie(&mut reply, &cookie);
                reply
            }
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        }
    }

    /// The cookie attribute that keeps the session off plain HTTP, when the console is served over HTTPS.
    fn secure(&self) -> &'static str {
        if self.settings.secure_cookie { "; Secure" } else { "" }
    }

    /// The account of a request's session, and the session's CSRF token (no token check: for reading the session
    /// itself, which only the page's own origin can do).
    fn account(&self, state: &State, headers: &HeaderMap) -> Result<(Account, String), SessionError> {
        let token = cookie(headers, SESSION_COOKIE).ok_or(SessionError::NoSession)?;
        let sessions = self.sessions();
        let session = sessions.get(token).filter(|s| s.expires > Instant::now()).ok_or(SessionError::NoSession)?;
        let account = state.accounts.get(&session.uin).filter(|a| !a.disabled).ok_or(SessionError::NoSession)?;
        Ok((account.clone(), session.csrf.clone()))
    }

    /// Whether a request carries a session cookie (and so is a console request).
    pub fn carries_session(headers: &HeaderMap) -> bool {
        cookie(headers, SESSION_COOKIE).is_some()
    }

    /// The account of a console API request: its session cookie, and the session's CSRF token in its header.
    pub fn authenticate(&self, state: &State, headers: &HeaderMap) -> Result<Account, SessionError> {
        let (account, csrf) = self.account(state, headers)?;
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).ok_or(SessionError::Csrf)?;
        if !same(given, &csrf) {
            return Err(SessionError::Csrf);
        }
        Ok(account)
    }
}

/// What the page learns of its session.
fn who(account: &Account, csrf: &str) -> Value {
    json!({"Uin": account.uin, "AppId": account.app_id, "Csrf": csrf})
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a.as_bytes()), sha2::Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes, hex.
fn secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    hex::encode(bytes)
}

fn sentence(e: &SessionError) -> String {
    crate::api::error::sentence(&e.to_string())
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Reply {
    let etag = format!("\"{}\"", &crate::functions::sha256_hex(asset.bytes)[..16]);
    let unchanged = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut reply = if unchanged {
        let mut reply = Response::new(Full::new(Bytes::new()));
        *reply.status_mut() = StatusCode::NOT_MODIFIED;
        reply
    } else {
        let mut reply = Response::new(Full::new(Bytes::from_static(asset.bytes)));
        reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        reply
    };
    let h = reply.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header value"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    reply
}

fn secure(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    let h = reply.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(h);
    reply
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    json_reply(status, &json!({"Error": {"Code": code, "Message": message}}))
}

fn set_cookie(reply: &mut Reply, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        reply.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *reply.status_mut() = status;
    reply
}

fn redirect(location: &'static str) -> Reply {
    let mut reply = plain(StatusCode::MOVED_PERMANENTLY, "");
    reply.headers_mut().insert(header::LOCATION, HeaderValue::from_static(location));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; fnlb_console=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("fnlb_console_other=x"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }

    #[test]
    fn every_asset_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        assert!(ASSETS.iter().all(|a| seen.insert(a.path)));
        let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/console"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for file in on_disk.iter().filter(|f| f.contains('.')) {
            assert!(seen.contains(file.as_str()), "console/{file} is not embedded");
        }
    }
}
