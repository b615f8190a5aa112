use super::*;

fn info() -> RequestInfo<'static> {
    static CLIENT_IP: HeaderValue = HeaderValue::from_static("10.0.0.9");
    RequestInfo {
        request_id: "rid",
        client_ip: &CLIENT_IP,
        lb_id: "lb-1",
        listener_id: "lbl-1",
        location_id: "loc-1",
        vip: "127.0.0.1",
        vport: 8080,
        scheme: "http",
        start_ms: 1_591_692_977_774,
    }
}

fn event_for(content_type: Option<&str>, body: &[u8], uri: &str) -> serde_json::Value {
    let mut headers = HeaderMap::new();
    headers.insert("host", "a.com".parse().unwrap());
    headers.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
    if let Some(ct) = content_type {
        headers.insert("content-type", ct.parse().unwrap());
    }
    let bytes = event(&Method::POST, &uri.parse().unwrap(), Version::HTTP_11, &headers, body, &info());
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn json_body_is_embedded() {
    let e = event_for(Some("application/json"), br#"{"key1":"123"}"#, "/p");
    assert_eq!(e["payload"], serde_json::json!({"key1": "123"}));
    assert_eq!(e["isBase64Encoded"], "false");
    assert_eq!(e["headers"]["Content-Type"], "application/json");
    assert_eq!(e["headers"]["Host"], "a.com");
}

#[test]
fn text_body_is_a_string_and_binary_is_base64() {
    let e = event_for(Some("text/plain; charset=utf-8"), b"hello", "/p");
    assert_eq!(e["payload"], "hello");
    let e = event_for(Some("application/octet-stream"), &[0, 159, 255], "/p");
    assert_eq!(e["payload"], "AJ//");
    assert_eq!(e["isBase64Encoded"], "true");
    let e = event_for(Some("application/json"), b"not json", "/p");
    assert_eq!(e["payload"], "not json");
    let e = event_for(None, b"", "/p");
    assert_eq!(e["payload"], "");
    assert_eq!(e["isBase64Encoded"], "false");
}

#[test]
fn clb_headers_and_extensions() {
    let e = event_for(None, b"", "/a%20b?x=1&y=2&x=3&z=%E4%BD%A0");
    let h = &e["headers"];
    assert_eq!(h["X-Stgw-Time"], "1591692977.774");
    assert_eq!(h["X-Client-Proto"], "http");
    assert_eq!(h["X-Forwarded-Proto"], "http");
    assert_eq!(h["X-Client-Proto-Ver"], "HTTP/1.1");
    assert_eq!(h["X-Real-IP"], "10.0.0.9");
    assert_eq!(h["X-Forwarded-For"], "1.2.3.4, 10.0.0.9");
    assert_eq!(e["httpMethod"], "POST");
    assert_eq!(e["path"], "/a b");
    assert_eq!(e["queryString"], serde_json::json!({"x": ["1", "3"], "y": "2", "z": "你"}));
    assert_eq!(e["requestContext"]["locationId"], "loc-1");
    assert_eq!(e["requestContext"]["vport"], 8080);
}

#[test]
fn a_forwarded_for_that_is_not_text_keeps_the_client_address() {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_bytes(b"1.2.3.4, b=\x8e").unwrap());
    let bytes = event(&Method::GET, &"/".parse().unwrap(), Version::HTTP_11, &headers, b"", &info());
    let e: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(e["headers"]["X-Forwarded-For"], "1.2.3.4, b=\u{fffd}, 10.0.0.9");
}

#[test]
fn integration_response_parses_documented_shape() {
    let r = integration_response(
        br#"{"isBase64Encoded":false,"statusCode":200,"headers":{"Content-Type":"text/html","Key":["v1","v2"],"Connection":"close"},"body":"<h1>x</h1>"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get_all("key").iter().count(), 2);
    assert!(r.headers.get("connection").is_none());
    assert_eq!(&r.body[..], b"<h1>x</h1>");
}

#[test]
fn integration_response_defaults_and_base64() {
    let r = integration_response(br#"{"statusCode":204}"#).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = integration_response(br#"{"statusCode":200,"isBase64Encoded":true,"body":"AJ//"}"#).unwrap();
    assert_eq!(&r.body[..], &[0, 159, 255]);
}

#[test]
fn invalid_integration_responses() {
    for bad in [
        &br#""hello""#[..],
        br#"{"body":"x"}"#,
        br#"{"statusCode":"200"}"#,
        br#"{"statusCode":99}"#,
        br#"{"statusCode":101}"#,
        br#"{"statusCode":200,"body":{"a":1}}"#,
        br#"{"statusCode":200,"headers":"x"}"#,
        br#"{"statusCode":200,"isBase64Encoded":true,"body":"%%%"}"#,
        b"not json",
    ] {
        assert!(integration_response(bad).is_none(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn clients_cannot_forge_balancer_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("x-real-ip", "6.6.6.6".parse().unwrap());
    headers.insert("x-stgw-time", "1".parse().unwrap());
    let bytes = event(&Method::GET, &"/".parse().unwrap(), Version::HTTP_11, &headers, b"", &info());
    let e: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(e["headers"]["X-Real-IP"], "10.0.0.9");
    assert!(e["headers"].get("X-Real-Ip").is_none());
    assert_ne!(e["headers"]["X-Stgw-Time"], "1");
}

#[test]
fn non_ascii_header_values_pass() {
    let json = r#"{"statusCode":200,"headers":{"Content-Disposition":"filename=\"résumé.pdf\""}}"#;
    let r = integration_response(json.as_bytes()).unwrap();
    assert_eq!(r.headers.get("content-disposition").unwrap().as_bytes(), "filename=\"résumé.pdf\"".as_bytes());
}

#[test]
fn the_start_time_has_three_decimals() {
    for (ms, text) in [(1_591_692_977_774, "1591692977.774"), (1_000_005, "1000.005"), (40, "0.040")] {
        assert_eq!(stgw_time(ms), text);
    }
}
