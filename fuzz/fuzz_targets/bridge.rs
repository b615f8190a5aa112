#![no_main]
//! The CLB trigger's two conversions (`proxy::bridge`, contract 0.1 and 0.2; docs/clb-trigger.md).
//!
//! A request (a fuzzed HTTP/1.1 head and body, taken as HTTP/1.1 or HTTP/2) into its event: the event is a JSON
//! object with the method, the percent-decoded path, the query's names, the request context as given, the
//! balancer's headers (`X-Forwarded-For` ending with the client's address) over any the client sent, every other
//! header the client sent (title-cased over HTTP/1.x), and the body as it is: embedded JSON, text, or Base64 that
//! decodes to it.
//!
//! A function's answer (fuzzed JSON) into an HTTP answer: when it is an integration response, its status is 200 to
//! 599, it carries no hop-by-hop header nor Content-Length, and written back as an integration response it reads
//! the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fnlb::proxy::bridge::{self, RequestInfo};
use fnlb::proxy::h1;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn integration(input: &[u8]) {
    let Some(answer) = bridge::integration_response(input) else { return };
    assert!((200..=599).contains(&answer.status.as_u16()));
    for name in answer.headers.keys() {
        assert!(!h1::is_hop_by_hop(name.as_str()) && name != http::header::CONTENT_LENGTH, "{name}");
    }
    let mut headers = serde_json::Map::new();
    for name in answer.headers.keys() {
        let values: Vec<Value> = answer
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8(v.as_bytes().to_vec()).expect("values come from JSON strings")))
            .collect();
        headers.insert(name.as_str().to_string(), Value::Array(values));
    }
    let again = json!({
        "statusCode": answer.status.as_u16(),
        "isBase64Encoded": true,
        "headers": headers,
        "body": BASE64.encode(&answer.body),
    });
    let again = bridge::integration_response(again.to_string().as_bytes()).expect("written back, it reads");
    assert_eq!((again.status, &again.headers, &again.body), (answer.status, &answer.headers, &answer.body));
}

fn event(version: Version, input: &[u8]) {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut storage);
    let Ok(httparse::Status::Complete(length)) = head.parse(input) else { return };
    let (Some(method), Some(target)) = (head.method, head.path) else { return };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), Uri::try_from(target)) else { return };
    let mut headers = HeaderMap::new();
    for header in head.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(header.value))
        else {
            return;
        };
        headers.append(name, value);
    }
    let body = &input[length..];
    let client_ip = HeaderValue::from_static("198.51.100.4");
    let info = RequestInfo {
        request_id: "req-1",
        client_ip: &client_ip,
        lb_id: "lb-fuzz",
        listener_id: "lbl-fuzz",
        location_id: "loc-fuzz",
        vip: "203.0.113.1",
        vport: 443,
        scheme: "https",
        start_ms: 1_765_065_600_123,
    };
    let text = bridge::event(&method, &uri, version, &headers, body, &info);
    let event: Value = serde_json::from_slice(&text).expect("an event is JSON");
    assert_eq!(event["httpMethod"], method.as_str());
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    assert_eq!(event["path"], path.as_ref());
    let context = &event["requestContext"];
    assert_eq!(
        (&context["requestId"], &context["sourceIp"], &context["vport"], &context["protocol"]),
        (&json!("req-1"), &json!("198.51.100.4"), &json!(443), &json!("HTTPS"))
    );
    let query = event["queryString"].as_object().expect("the query is an object");
    let names: std::collections::BTreeSet<String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).map(|(n, _)| n.into_owned()).collect();
    assert_eq!(query.keys().cloned().collect::<std::collections::BTreeSet<_>>(), names);

    let shown = event["headers"].as_object().expect("the headers are an object");
    let title = version < Version::HTTP_2;
    for (name, title_name) in &bridge::BALANCER_HEADERS {
        let key = if title { title_name.to_string() } else { name.as_str().to_string() };
        assert!(shown.get(&key).is_some_and(Value::is_string), "{key} is set");
    }
    let key = |n: &str| if title { n.to_string() } else { n.to_ascii_lowercase() };
    assert_eq!(shown[&key("X-Real-IP")], "198.51.100.4");
    assert_eq!(shown[&key("X-Stgw-Time")], "1765065600.123");
    let forwarded = shown[&key("X-Forwarded-For")].as_str().unwrap_or_default();
    assert!(forwarded.ends_with("198.51.100.4"), "X-Forwarded-For {forwarded:?}");
    for name in headers.keys() {
        let balancer = bridge::BALANCER_HEADERS.iter().any(|(b, _)| b == name);
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if balancer || values.is_empty() {
            continue;
        }
        let found = shown.iter().find(|(k, _)| k.eq_ignore_ascii_case(name.as_str()));
        let (_, value) = found.unwrap_or_else(|| panic!("{name} is in the event"));
        let sep = if name == http::header::COOKIE { "; " } else { ", " };
        assert_eq!(value, &values.join(sep), "{name}");
    }

    let payload = &event["payload"];
    match event["isBase64Encoded"].as_str() {
        Some("true") => assert_eq!(BASE64.decode(payload.as_str().expect("Base64 text")).ok().as_deref(), Some(body)),
        Some("false") => match payload {
            Value::String(s) if s.as_bytes() == body => {}
            embedded => assert_eq!(serde_json::from_slice::<Value>(body).ok().as_ref(), Some(embedded)),
        },
        other => panic!("isBase64Encoded {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else { return };
    match which % 3 {
        0 => integration(input),
        1 => event(Version::HTTP_11, input),
        _ => event(Version::HTTP_2, input),
    }
});
