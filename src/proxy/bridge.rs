//! The CLB trigger's two conversions: an HTTP request into the function's event (contract 0.1), and the
//! function's integration response into an HTTP response (contract 0.2).

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use serde::Serialize;
use serde_json::value::RawValue;

/// What the load balancer knows about a request besides its head and body.
pub struct RequestInfo<'a> {
    pub request_id: &'a str,
    /// The client's address, formatted once per connection (`ip_value`).
    pub client_ip: &'a HeaderValue,
    pub lb_id: &'a str,
    pub listener_id: &'a str,
    pub location_id: &'a str,
    /// The listener's address (the VIP, as text) and port.
    pub vip: &'a str,
    pub vport: u16,
    pub scheme: &'static str,
    /// Request arrival, Unix milliseconds.
    pub start_ms: i64,
}

#[derive(Serialize)]
struct Event<'a> {
    headers: serde_json::Map<String, serde_json::Value>,
    payload: Payload<'a>,
    #[serde(rename = "isBase64Encoded")]
    is_base64_encoded: &'static str,
    #[serde(rename = "httpMethod")]
    http_method: &'a str,
    path: String,
    #[serde(rename = "queryString")]
    query_string: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "requestContext")]
    request_context: RequestContext<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    Base64(String),
}

#[derive(Serialize)]
struct RequestContext<'a> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(rename = "sourceIp")]
    source_ip: &'a str,
    #[serde(rename = "loadBalancerId")]
    load_balancer_id: &'a str,
    #[serde(rename = "listenerId")]
    listener_id: &'a str,
    #[serde(rename = "locationId")]
    location_id: &'a str,
    vip: &'a str,
    vport: u16,
    protocol: &'a str,
}

/// The headers CLB adds to every request it forwards, to servers and functions alike (contract 1.2), with their
/// names as functions see them over HTTP/1.x. Only the load balancer sets them: a client's are replaced.
pub static BALANCER_HEADERS: [(HeaderName, &str); 6] = [
    (HeaderName::from_static("x-stgw-time"), "X-Stgw-Time"),
    (HeaderName::from_static("x-client-proto"), "X-Client-Proto"),
    (HeaderName::from_static("x-forwarded-proto"), "X-Forwarded-Proto"),
    (HeaderName::from_static("x-client-proto-ver"), "X-Client-Proto-Ver"),
    (HeaderName::from_static("x-real-ip"), "X-Real-IP"),
    (HeaderName::from_static("x-forwarded-for"), "X-Forwarded-For"),
];

/// A client address as a header value (made once per connection).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an address is a valid header value")
}

/// `X-Stgw-Time`: seconds with milliseconds, `1591692977.774`.
pub(super) fn stgw_time(ms: i64) -> HeaderValue {
    let mut text = Vec::with_capacity(24);
    push_stgw_time(&mut text, ms);
    HeaderValue::from_maybe_shared(Bytes::from(text)).expect("digits are a valid header value")
}

/// Appends the `X-Stgw-Time` value for `ms`.
pub(super) fn push_stgw_time(out: &mut Vec<u8>, ms: i64) {
    let (seconds, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    super::h1::push_number(out, seconds.max(0) as u64);
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
    ]);
}

/// A cookie's value (not empty) from a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// The values of `BALANCER_HEADERS` for one request: the start time, the scheme (`http` or `https`), the protocol
/// version, the client's address, and `X-Forwarded-For` with the client's address appended to what it sent.
pub fn balancer_headers(
    headers: &HeaderMap,
    version: Version,
    client_ip: &HeaderValue,
    scheme: &'static str,
    start_ms: i64,
) -> [HeaderValue; 6] {
    let prior = headers.get("x-forwarded-for").map(HeaderValue::as_bytes);
    let forwarded_for = match super::policy::forwarded_for(prior, client_ip.as_bytes()) {
        Cow::Owned(joined) => HeaderValue::from_maybe_shared(Bytes::from(joined)).unwrap_or_else(|_| client_ip.clone()),
        Cow::Borrowed(_) => client_ip.clone(),
    };
    [
        stgw_time(start_ms),
        HeaderValue::from_static(scheme),
        HeaderValue::from_static(scheme),
        HeaderValue::from_static(version_text(version)),
        client_ip.clone(),
        forwarded_for,
    ]
}

/// Builds the CLB event for a request as JSON text.
pub fn event(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    body: &[u8],
    info: &RequestInfo<'_>,
) -> Vec<u8> {
    let mut out_headers = serde_json::Map::new();
    let title_case = version < Version::HTTP_2;
    for name in headers.keys() {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            continue;
        }
        let sep = if name == http::header::COOKIE { "; " } else { ", " };
        let shown = if title_case { title_case_name(name.as_str()) } else { name.as_str().to_string() };
        out_headers.insert(shown, values.join(sep).into());
    }
    let name = |n: &'static str| {
        if title_case { n.to_string() } else { n.to_ascii_lowercase() }
    };
    // The balancer sets these; a client cannot (contract 1.2).
    out_headers.retain(|k, _| !BALANCER_HEADERS.iter().any(|(h, _)| k.eq_ignore_ascii_case(h.as_str())));
    if !out_headers.keys().any(|k| k.eq_ignore_ascii_case("host"))
        && let Some(authority) = uri.authority()
    {
        // HTTP/2 carries the host in the request's authority.
        out_headers.insert(name("Host"), authority.as_str().into());
    }
    let values = balancer_headers(headers, version, info.client_ip, info.scheme, info.start_ms);
    for ((header, title), value) in BALANCER_HEADERS.iter().zip(values) {
        let shown = if title_case { title.to_string() } else { header.as_str().to_string() };
        // A client's `X-Forwarded-For` may hold bytes that are not text: shown lossily, the client's address kept.
        out_headers.insert(shown, String::from_utf8_lossy(value.as_bytes()).into());
    }

    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (payload, base64) = payload(content_type, body);
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy().into_owned();
    let event = Event {
        headers: out_headers,
        payload,
        is_base64_encoded: if base64 { "true" } else { "false" },
        http_method: method.as_str(),
        path,
        query_string: query_object(uri.query().unwrap_or("")),
        request_context: RequestContext {
            request_id: info.request_id,
            source_ip: info.client_ip.to_str().unwrap_or_default(),
            load_balancer_id: info.lb_id,
            listener_id: info.listener_id,
            location_id: info.location_id,
            vip: info.vip,
            vport: info.vport,
            protocol: if info.scheme == "https" { "HTTPS" } else { "HTTP" },
        },
    };
    serde_json::to_vec(&event).expect("events serialise")
}

/// `payload` and whether it is Base64: a JSON body that parses is embedded; text types are strings; the rest
/// (and text that is not UTF-8) is Base64.
fn payload<'a>(content_type: &str, body: &'a [u8]) -> (Payload<'a>, bool) {
    if body.is_empty() {
        return (Payload::Text(""), false);
    }
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let textual = media.starts_with("text/")
        || matches!(media.as_str(), "application/json" | "application/javascript" | "application/xml");
    match std::str::from_utf8(body) {
        Ok(text) if media == "application/json" => match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => (Payload::Json(raw), false),
            Err(_) => (Payload::Text(text), false),
        },
        Ok(text) if textual => (Payload::Text(text), false),
        _ => (Payload::Base64(BASE64.encode(body)), true),
    }
}

/// `a=1&b=2&a=3` → `{"a": ["1", "3"], "b": "2"}`, values decoded.
fn query_object(query: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match out.get_mut(k.as_ref()) {
            None => {
                out.insert(k.into_owned(), v.into_owned().into());
            }
            Some(serde_json::Value::Array(values)) => values.push(v.into_owned().into()),
            Some(first) => {
                let prior = first.take();
                *first = serde_json::Value::Array(vec![prior, v.into_owned().into()]);
            }
        }
    }
    out
}

/// `content-type` → `Content-Type`, `x-forwarded-for` → `X-Forwarded-For`.
fn title_case_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// A function's integration response, ready to send.
#[derive(Debug)]
pub struct Integration {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Parses a return value as an integration response (contract 0.2); `None` when it is not one.
pub fn integration_response(json: &[u8]) -> Option<Integration> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let object = value.as_object()?;
    // 1xx answers are not final responses: a function cannot send one.
    let status = object.get("statusCode")?.as_u64().filter(|s| (200..=599).contains(s))?;
    let status = StatusCode::from_u16(status as u16).ok()?;
    let base64 = match object.get("isBase64Encoded") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(_) => return None,
    };
    let body = match object.get("body") {
        None | Some(serde_json::Value::Null) => Bytes::new(),
        Some(serde_json::Value::String(s)) if base64 => Bytes::from(BASE64.decode(s).ok()?),
        Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return None,
    };
    let mut headers = HeaderMap::new();
    match object.get("headers") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (name, value) in map {
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                if super::h1::is_hop_by_hop(name.as_str()) || name == http::header::CONTENT_LENGTH {
                    continue;
                }
                let values: Vec<&serde_json::Value> = match value {
                    serde_json::Value::Array(values) => values.iter().collect(),
                    single => vec![single],
                };
                for value in values {
                    let text = match value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    headers.append(name.clone(), HeaderValue::from_bytes(text.as_bytes()).ok()?);
                }
            }
        }
        Some(_) => return None,
    }
    Some(Integration { status, headers, body })
}

#[cfg(test)]
mod tests;
