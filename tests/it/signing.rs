//! Every form a signed request comes in, as a raw HTTP client sends it: TC3 over GET, signature v1 over GET and
//! POST; their error codes, and each form's signatures carried out as their signers meant (`api::replay`).

use fnlb::api::{tc3, v1};
use serde_json::Value;

use crate::harness::{TestApp, request_from};

const SIGNER: [u8; 4] = [127, 0, 0, 1];
const ELSEWHERE: [u8; 4] = [127, 0, 0, 2];

fn now() -> i64 {
    fnlb::clock::now_ms() / 1000
}

/// A nonce for each request a test makes.
fn nonce() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    u32::from_le_bytes(bytes).to_string()
}

fn code(response: &Value) -> &str {
    response["Error"]["Code"].as_str().unwrap_or("")
}

/// A v1 request for an SCF action as the SDKs make it: the common parameters (but `Signature`, when `sign` is
/// false) beside the action's, signed for `host` and URL-encoded.
struct V1<'a> {
    method: &'a str,
    action: &'a str,
    params: &'a [(&'a str, &'a str)],
    secret_id: &'a str,
    secret_key: &'a str,
    timestamp: i64,
    signature_method: &'a str,
    host: &'a str,
    sign: bool,
}

impl V1<'_> {
    fn encode(&self) -> String {
        let mut pairs: Vec<(String, String)> = [
            ("Action", self.action),
            ("Version", "2018-04-16"),
            ("Region", "ap-guangzhou"),
            ("Timestamp", &self.timestamp.to_string()),
            ("Nonce", &nonce()),
            ("SecretId", self.secret_id),
            ("SignatureMethod", self.signature_method),
        ]
        .iter()
        .chain(self.params)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if self.sign {
            let signed = v1::string_to_sign(self.method, self.host, "/", &pairs, v1::Style::default());
            let signature = v1::sign(self.secret_key, v1::Algorithm::of(Some(self.signature_method)), &signed);
            pairs.push((v1::SIGNATURE.to_string(), signature));
        }
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
    }
}

/// Sends an encoded v1 request from `from` with `Host: host`: the answer's `Response`.
async fn send_v1(app: &TestApp, from: [u8; 4], method: &str, encoded: &str, host: &str) -> Value {
    let mut headers = vec![("Host".to_string(), host.to_string())];
    let (target, body) = match method {
        "GET" => (format!("/?{encoded}"), ""),
        _ => {
            headers.push(("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()));
            ("/".to_string(), encoded)
        }
    };
    let (_, text) = request_from(from, app.api_addr, method, &target, &headers, body).await;
    serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))["Response"].clone()
}

/// The headers of a TC3 GET for an SCF action with `query`, signed as the Node.js SDK signs it: the credential
/// scope names `service`, and the host is signed as `signed_host` (sent as fnlb's address).
fn tc3_get(app: &TestApp, action: &str, query: &str, service: &str, signed_host: &str) -> Vec<(String, String)> {
    let timestamp = now();
    let signed = tc3::Signed {
        method: "GET",
        query,
        headers: vec![
            ("content-type".to_string(), "application/x-www-form-urlencoded"),
            ("host".to_string(), signed_host),
        ],
        payload_hash: tc3::sha256_hex(b""),
        timestamp,
        service,
    };
    let authorization = tc3::authorization(&app.credentials.secret_id, &app.credentials.secret_key, &signed);
    [
        ("Host", app.api_addr.to_string()),
        ("Content-Type", "application/x-www-form-urlencoded".to_string()),
        ("Authorization", authorization),
        ("X-TC-Action", action.to_string()),
        ("X-TC-Version", "2018-04-16".to_string()),
        ("X-TC-Region", "ap-guangzhou".to_string()),
        ("X-TC-Timestamp", timestamp.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn send_tc3_get(app: &TestApp, from: [u8; 4], headers: &[(String, String)], query: &str) -> Value {
    let (_, text) = request_from(from, app.api_addr, "GET", &format!("/?{query}"), headers, "").await;
    serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))["Response"].clone()
}

#[tokio::test]
async fn signature_v1_over_get_and_post_is_verified_with_tencents_error_codes() {
    let app = TestApp::start();
    let (id, key) = (app.credentials.secret_id.as_str(), app.credentials.secret_key.as_str());
    let host = app.api_addr.to_string();
    let filters = [("Limit", "10"), ("Filters.0.Name", "Runtime"), ("Filters.0.Values.0", "Python3.9")];
    for method in ["GET", "POST"] {
        let good = V1 {
            method,
            action: "ListFunctions",
            params: &filters,
            secret_id: id,
            secret_key: key,
            timestamp: now(),
            signature_method: "HmacSHA1",
            host: &host,
            sign: true,
        };
        for signature_method in ["HmacSHA1", "HmacSHA256"] {
            let good = V1 { signature_method, ..good };
            let listed = send_v1(&app, SIGNER, method, &good.encode(), &host).await;
            assert_eq!(listed["TotalCount"], 0, "{method} {signature_method}: {listed}");
            // Signed with the port, sent without it (as a client omits a default port).
            let listed = send_v1(&app, SIGNER, method, &good.encode(), "127.0.0.1").await;
            assert_eq!(listed["TotalCount"], 0, "{method} {signature_method} without the port: {listed}");
        }
        let refused = |v1: V1<'_>| {
            let encoded = v1.encode();
            let host = host.clone();
            let app = &app;
            async move { send_v1(app, SIGNER, method, &encoded, &host).await }
        };
        let wrong_key = refused(V1 { secret_key: "wrong", ..good }).await;
        assert_eq!(code(&wrong_key), "AuthFailure.SignatureFailure", "{method}: {wrong_key}");
        let expired = refused(V1 { timestamp: now() - 301, ..good }).await;
        assert_eq!(code(&expired), "AuthFailure.SignatureExpire", "{method}: {expired}");
        let unknown = refused(V1 { secret_id: "AKIDunknown", ..good }).await;
        assert_eq!(code(&unknown), "AuthFailure.SecretIdNotFound", "{method}: {unknown}");
        let unsigned = refused(V1 { sign: false, ..good }).await;
        assert_eq!(code(&unsigned), "MissingParameter", "{method}: {unsigned}");
        assert!(unsigned["Error"]["Message"].as_str().unwrap().contains("Signature"), "{unsigned}");
        let other_action = refused(V1 { action: "NoSuchAction", params: &[], ..good }).await;
        assert_eq!(code(&other_action), "InvalidAction", "{method}: {other_action}");
        let mistyped = refused(V1 { params: &[("Limit", "ten")], ..good }).await;
        assert_eq!(code(&mistyped), "InvalidParameter", "{method}: {mistyped}");
        assert!(mistyped["Error"]["Message"].as_str().unwrap().contains("Limit"), "{mistyped}");
        let unknown_param = refused(V1 { params: &[("Bogus", "1")], ..good }).await;
        assert_eq!(code(&unknown_param), "UnknownParameter", "{method}: {unknown_param}");
    }
    // A plain GET carries no signature at all.
    let (_, text) = request_from(SIGNER, app.api_addr, "GET", "/", &[], "").await;
    let bare: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(code(&bare["Response"]), "MissingParameter", "{bare}");
}

#[tokio::test]
async fn tc3_over_get_whatever_service_the_scope_names_and_the_host_form_signed() {
    let app = TestApp::start();
    let query = "Namespace=over-get&Description=made%20over%20GET";
    // The Node.js SDK's choices: the scope's service is the endpoint's first label, the host signed without port.
    let headers = tc3_get(&app, "CreateNamespace", query, "127", "127.0.0.1");
    let created = send_tc3_get(&app, SIGNER, &headers, query).await;
    assert!(created["Error"].is_null(), "{created}");
    let query = "Limit=10&Offset=0";
    let headers = tc3_get(&app, "ListNamespaces", query, "scf", &app.api_addr.to_string());
    let listed = send_tc3_get(&app, SIGNER, &headers, query).await;
    assert_eq!(listed["TotalCount"], 2, "{listed}");
    assert_eq!(listed["Namespaces"][1]["Description"], "made over GET", "{listed}");

    // The query is signed: another one under the same signature is refused.
    let tampered = send_tc3_get(&app, SIGNER, &headers, "Limit=1&Offset=0").await;
    assert_eq!(code(&tampered), "AuthFailure.SignatureFailure", "{tampered}");
    for (query, expected) in [
        ("Limit=ten", "InvalidParameter"),
        ("Bogus=1", "UnknownParameter"),
        ("SearchKey.0.Key=Namespace&SearchKey.0=x", "InvalidParameter"),
    ] {
        let headers = tc3_get(&app, "ListNamespaces", query, "scf", &app.api_addr.to_string());
        let refused = send_tc3_get(&app, SIGNER, &headers, query).await;
        assert_eq!(code(&refused), expected, "{query}: {refused}");
    }
}

/// A change signed in any form is carried out once: a repeat, from the signer's address or another, gets the first
/// answer; the signature used for another action by another address is refused.
#[tokio::test]
async fn a_change_in_every_form_is_carried_out_once_whoever_repeats_it() {
    let app = TestApp::start();
    let (id, key) = (app.credentials.secret_id.as_str(), app.credentials.secret_key.as_str());
    let host = app.api_addr.to_string();
    for (method, signature_method, namespace) in [("GET", "HmacSHA1", "v1-get"), ("POST", "HmacSHA256", "v1-post")] {
        let params = [("Namespace", namespace)];
        let encoded = V1 {
            method,
            action: "CreateNamespace",
            params: &params,
            secret_id: id,
            secret_key: key,
            timestamp: now(),
            signature_method,
            host: &host,
            sign: true,
        }
        .encode();
        let first = send_v1(&app, SIGNER, method, &encoded, &host).await;
        assert!(first["Error"].is_null(), "{method}: {first}");
        for from in [SIGNER, ELSEWHERE] {
            let again = send_v1(&app, from, method, &encoded, &host).await;
            assert_eq!(again, first, "{method}: a repeat gets the first answer");
        }
    }
    let query = "Namespace=tc3-get";
    let headers = tc3_get(&app, "CreateNamespace", query, "scf", &host);
    let first = send_tc3_get(&app, SIGNER, &headers, query).await;
    assert!(first["Error"].is_null(), "{first}");
    for from in [SIGNER, ELSEWHERE] {
        assert_eq!(send_tc3_get(&app, from, &headers, query).await, first, "a repeat gets the first answer");
    }
    let mut other = headers.clone();
    other.iter_mut().filter(|(k, _)| k == "X-TC-Action").for_each(|(_, v)| *v = "DeleteNamespace".to_string());
    let refused = send_tc3_get(&app, ELSEWHERE, &other, query).await;
    assert_eq!(code(&refused), "AuthFailure.SignatureFailure", "{refused}");

    let listed = app.scf("ListNamespaces", serde_json::json!({})).await.unwrap();
    assert_eq!(listed["TotalCount"], 4, "default and one namespace per form: {listed}");
}
