//! The CLB trigger's two conversions: an HTTP request into the function's event (contract 0.1), and the
//! function's integration response into an HTTP response (contract 0.2).

use std::net::SocketAddr;

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
    pub client: SocketAddr,
    pub lb_id: &'a str,
    pub listener_id: &'a str,
    pub location_id: &'a str,
    pub vip: SocketAddr,
    pub scheme: &'a str,
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
    source_ip: String,
    #[serde(rename = "loadBalancerId")]
    load_balancer_id: &'a str,
    #[serde(rename = "listenerId")]
    listener_id: &'a str,
    #[serde(rename = "locationId")]
    location_id: &'a str,
    vip: String,
    vport: u16,
    protocol: &'a str,
}

/// Headers only the load balancer sets.
const BALANCER_HEADERS: &[&str] =
    &["x-stgw-time", "x-client-proto", "x-forwarded-proto", "x-client-proto-ver", "x-real-ip", "x-forwarded-for"];

/// The headers CLB adds to every request it forwards, to servers and functions alike (contract 1.2): `X-Stgw-Time`, `X-Client-Proto`, `X-Forwarded-Proto`, `X-Client-Proto-Ver`, `X-Real-IP`,
/// and `X-Forwarded-For` (the client's address appended to what the client sent).
pub fn balancer_headers(
    headers: &HeaderMap,
    version: Version,
    client: SocketAddr,
    scheme: &str,
    start_ms: i64,
) -> Vec<(&'static str, String)> {
    let client_ip = client.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {client_ip}"),
        _ => client_ip.clone(),
    };
    vec![
        ("X-Stgw-Time", format!("{}.{:03}", start_ms / 1000, start_ms % 1000)),
        ("X-Client-Proto", scheme.to_string()),
        ("X-Forwarded-Proto", scheme.to_string()),
        ("X-Client-Proto-Ver", version_text(version).to_string()),
        ("X-Real-IP", client_ip),
        ("X-Forwarded-For", forwarded_for),
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
    let client_ip = info.client.ip().to_string();
    let name = |n: &'static str| {
        if title_case { n.to_string() } else { n.to_ascii_lowercase() }
    };
    // The balancer sets these; a client cannot (contract 1.2).
    out_headers.retain(|k, _| !BALANCER_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)));
    if !out_headers.keys().any(|k| k.eq_ignore_ascii_case("host"))
        && let Some(authority) = uri.authority()
    {
        // HTTP/2 carries the host in the request's authority.
        out_headers.insert(name("Host"), authority.as_str().into());
    }
    for (header, value) in balancer_headers(headers, version, info.client, info.scheme, info.start_ms) {
        out_headers.insert(name(header), value.into());
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
            source_ip: client_ip,
            load_balancer_id: info.lb_id,
            listener_id: info.listener_id,
            location_id: info.location_id,
            vip: info.vip.ip().to_string(),
            vport: info.vip.port(),
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
                if is_hop_by_hop(&name) || name == http::header::CONTENT_LENGTH {
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

/// Headers that describe one connection, not the message, and never cross a proxy.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade"
    )
}

#[cfg(test)]
mod tests;
