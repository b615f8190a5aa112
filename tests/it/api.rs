//! The API endpoint: TC3 verification, envelopes and errors, as a raw HTTP client sees them.

use bytes::Bytes;
use fnlb::api::tc3;
use serde_json::{Value, json};

use crate::harness::{TestApp, request, sdk_signed, send_from};

/// Sends a signed API request with full control over what is signed.
async fn raw_call(
    app: &TestApp,
    action: &str,
    body: &Value,
    secret_id: &str,
    secret_key: &str,
    timestamp: i64,
) -> (u16, String, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let host = app.api_addr.to_string();
    let signed = tc3::Signed {
        method: "POST",
        query: "",
        headers: vec![("content-type".to_string(), "application/json"), ("host".to_string(), host.as_str())],
        payload_hash: tc3::sha256_hex(&body),
        timestamp,
        service: "scf",
    };
    let auth = tc3::authorization(secret_id, secret_key, &signed);
    let ts = timestamp.to_string();
    let reply = request(
        "POST",
        &app.endpoint(),
        &[
            ("Host", &host),
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
            ("X-TC-Action", action),
            ("X-TC-Version", "2018-04-16"),
            ("X-TC-Region", "ap-guangzhou"),
            ("X-TC-Timestamp", &ts),
        ],
        Bytes::from(body),
    )
    .await;
    let content_type = reply.header("content-type").to_string();
    (reply.status, content_type, reply.json())
}

fn now() -> i64 {
    fnlb::clock::now_ms() / 1000
}

fn error_code(v: &Value) -> &str {
    v["Response"]["Error"]["Code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn signed_requests_succeed_with_the_documented_envelope() {
    let app = TestApp::start();
    let (status, content_type, v) =
        raw_call(&app, "ListFunctions", &json!({}), &app.credentials.secret_id, &app.credentials.secret_key, now())
            .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(v["Response"]["TotalCount"], 0);
    assert_eq!(v["Response"]["RequestId"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn bad_signatures_are_refused_with_their_codes() {
    let app = TestApp::start();
    let id = app.credentials.secret_id.clone();
    let key = app.credentials.secret_key.clone();
    let (status, content_type, v) = raw_call(&app, "ListFunctions", &json!({}), &id, "wrong-key", now()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"), "errors are HTTP 200 too");
    assert_eq!(error_code(&v), "AuthFailure.SignatureFailure");
    assert!(v["Response"]["RequestId"].is_string());

    let (_, _, v) = raw_call(&app, "ListFunctions", &json!({}), &id, &key, now() - 301).await;
    assert_eq!(error_code(&v), "AuthFailure.SignatureExpire");

    let (_, _, v) = raw_call(&app, "ListFunctions", &json!({}), "AKIDunknown", &key, now()).await;
    assert_eq!(error_code(&v), "AuthFailure.SecretIdNotFound");

    let reply = request(
        "POST",
        &app.endpoint(),
        &[("Content-Type", "application/json"), ("X-TC-Action", "ListFunctions")],
        "{}",
    )
    .await;
    assert_eq!(error_code(&reply.json()), "AuthFailure.InvalidAuthorization");
}

#[tokio::test]
async fn unknown_actions_and_parameters() {
    let app = TestApp::start();
    let (id, key) = (app.credentials.secret_id.clone(), app.credentials.secret_key.clone());
    let (_, _, v) = raw_call(&app, "NoSuchAction", &json!({}), &id, &key, now()).await;
    assert_eq!(error_code(&v), "InvalidAction");
    let (_, _, v) = raw_call(&app, "ListFunctions", &json!({"Bogus": 1}), &id, &key, now()).await;
    assert_eq!(error_code(&v), "UnknownParameter");
    let (_, _, v) = raw_call(&app, "GetFunction", &json!({"FunctionName": 5}), &id, &key, now()).await;
    assert_eq!(error_code(&v), "InvalidParameter");
    let (_, _, v) = raw_call(&app, "DeleteFunction", &json!({}), &id, &key, now()).await;
    assert_eq!(error_code(&v), "MissingParameter");
    assert!(v["Response"]["Error"]["Message"].as_str().unwrap().contains("FunctionName"));
}

#[tokio::test]
async fn function_parameters_are_validated() {
    let app = TestApp::start();
    let err = |r: Result<Value, fnlb::client::ClientError>| match r {
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    };
    assert_eq!(err(app.create_fixture("1bad", "echo", json!({})).await), "InvalidParameterValue.FunctionName");
    assert_eq!(
        err(app.create_fixture("ok-name", "echo", json!({"MemorySize": 200})).await),
        "InvalidParameterValue.MemorySize"
    );
    assert_eq!(err(app.create_fixture("ok-name", "echo", json!({"Timeout": 901})).await), "LimitExceeded.Timeout");
    assert_eq!(
        err(app.create_fixture("ok-name", "echo", json!({"Runtime": "Python2.7"})).await),
        "InvalidParameterValue.Runtime"
    );
    let env = json!({"Environment": {"Variables": [{"Key": "SCF_X", "Value": "1"}]}});
    assert_eq!(err(app.create_fixture("ok-name", "echo", env).await), "InvalidParameterValue.EnvironmentSystemProtect");
    let big = "x".repeat(5000);
    let env = json!({"Environment": {"Variables": [{"Key": "BIG", "Value": big}]}});
    assert_eq!(err(app.create_fixture("ok-name", "echo", env).await), "InvalidParameterValue.EnvironmentExceededLimit");
    let not_zip = json!({"FunctionName": "nz", "Runtime": "Python3.9", "Code": {"ZipFile": "aGVsbG8="}});
    assert_eq!(err(app.scf("CreateFunction", not_zip).await), "InvalidParameterValue.ZipFile");
    app.create_fixture("ok-name", "echo", json!({})).await.unwrap();
    assert_eq!(err(app.create_fixture("ok-name", "echo", json!({})).await), "ResourceInUse.Function");
}

const SIGNER: [u8; 4] = [127, 0, 0, 1];
const ELSEWHERE: [u8; 4] = [127, 0, 0, 2];

#[tokio::test]
async fn a_signed_request_cannot_be_replayed_or_turned_into_another_by_another_client() {
    let app = TestApp::start();
    app.create_fixture("kept", "echo", serde_json::json!({})).await.unwrap();
    let swap = |headers: &[(String, String)], name: &str, value: &str| -> Vec<(String, String)> {
        headers.iter().map(|(k, v)| (k.clone(), if k == name { value.to_string() } else { v.clone() })).collect()
    };
    // A captured GetFunction sent by another client as DeleteFunction, or for another region: refused, and the
    // function is still there.
    let (headers, body) = sdk_signed(&app, "scf", "GetFunction", &serde_json::json!({"FunctionName": "kept"}));
    let got = send_from(&app, SIGNER, &headers, &body).await;
    assert_eq!(got["FunctionName"], "kept", "{got}");
    let refused = send_from(&app, ELSEWHERE, &swap(&headers, "x-tc-action", "DeleteFunction"), &body).await;
    assert_eq!(refused["Error"]["Code"], "AuthFailure.SignatureFailure", "{refused}");
    let refused = send_from(&app, ELSEWHERE, &swap(&headers, "x-tc-region", "ap-shanghai"), &body).await;
    assert_eq!(refused["Error"]["Code"], "AuthFailure.SignatureFailure", "{refused}");
    app.scf("GetFunction", serde_json::json!({"FunctionName": "kept"})).await.expect("the function is kept");
    // The signer's own requests sharing the signature go through (the SDKs sign neither action nor region).
    let listed = send_from(&app, SIGNER, &swap(&headers, "x-tc-action", "ListTriggers"), &body).await;
    assert!(listed.get("Error").is_none(), "{listed}");

    // A CreateLoadBalancer replayed four times by another client makes one load balancer; each replay gets the
    // first answer.
    let params = serde_json::json!({"LoadBalancerType": "OPEN", "LoadBalancerName": "once"});
    let (headers, body) = sdk_signed(&app, "clb", "CreateLoadBalancer", &params);
    let first = send_from(&app, SIGNER, &headers, &body).await;
    for _ in 0..4 {
        assert_eq!(send_from(&app, ELSEWHERE, &headers, &body).await, first, "a replay gets the first answer");
    }
    let made = app.clb("DescribeLoadBalancers", serde_json::json!({"LoadBalancerName": "once"})).await.unwrap();
    assert_eq!(made["TotalCount"], 1);
}

#[tokio::test]
async fn a_signed_change_repeated_from_its_signers_address_is_carried_out_once_and_a_read_runs_again() {
    let app = TestApp::start();
    // A captured CreateLoadBalancer replayed from the signer's own address (the same host, or the same NAT): one
    // load balancer, and every repeat gets the first answer.
    let params = json!({"LoadBalancerType": "OPEN", "LoadBalancerName": "once-here"});
    let (headers, body) = sdk_signed(&app, "clb", "CreateLoadBalancer", &params);
    let first = send_from(&app, SIGNER, &headers, &body).await;
    assert!(first["LoadBalancerIds"][0].is_string(), "{first}");
    for _ in 0..3 {
        assert_eq!(send_from(&app, SIGNER, &headers, &body).await, first, "a repeat gets the first answer");
    }
    let made = app.clb("DescribeLoadBalancers", json!({"LoadBalancerName": "once-here"})).await.unwrap();
    assert_eq!(made["TotalCount"], 1, "{made}");

    // A read repeated by its signer runs again, and sees what changed in between.
    let (headers, body) = sdk_signed(&app, "scf", "ListFunctions", &json!({}));
    let before = send_from(&app, SIGNER, &headers, &body).await;
    assert_eq!(before["TotalCount"], 0, "{before}");
    app.create_fixture("made-between", "echo", json!({})).await.unwrap();
    let after = send_from(&app, SIGNER, &headers, &body).await;
    assert_eq!(after["TotalCount"], 1, "{after}");
    assert_ne!(after["RequestId"], before["RequestId"]);
}

#[tokio::test]
async fn wrong_signatures_are_slowed_down_per_address_without_locking_out_the_owner() {
    let app = TestApp::start();
    let params = serde_json::json!({});
    let (headers, body) = sdk_signed(&app, "scf", "ListFunctions", &params);
    let forged: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| match k.as_str() {
            "authorization" => (k.clone(), format!("{}{}", &v[..v.len() - 64], "0".repeat(64))),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(send_from(&app, SIGNER, &forged, &body).await["Error"]["Code"].as_str().unwrap().to_string());
    }
    assert!(codes[..5].iter().all(|c| c == "AuthFailure.SignatureFailure"), "{codes:?}");
    assert!(codes[6..].iter().all(|c| c == "RequestLimitExceeded"), "past a few failures the address waits: {codes:?}");
    // The owner, signing correctly from another address, is not locked out.
    let (headers, body) = sdk_signed(&app, "scf", "ListFunctions", &params);
    let listed = send_from(&app, ELSEWHERE, &headers, &body).await;
    assert!(listed.get("Error").is_none(), "{listed}");
}

#[tokio::test]
async fn a_server_may_require_the_action_to_be_signed() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--api-require-signed-action"]);
    let (headers, body) = sdk_signed(&app, "scf", "ListFunctions", &serde_json::json!({}));
    let refused = send_from(&app, SIGNER, &headers, &body).await;
    assert_eq!(refused["Error"]["Code"], "AuthFailure.InvalidAuthorization", "{refused}");
    // fnlb's own client signs it.
    app.scf("ListFunctions", serde_json::json!({})).await.unwrap();
}
