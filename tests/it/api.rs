//! The API endpoint: TC3 verification, envelopes and errors, as a raw HTTP client sees them.

use bytes::Bytes;
use fnlb::api::tc3;
use serde_json::{Value, json};

use crate::harness::{TestApp, request};

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
