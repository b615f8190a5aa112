//! Function failures (contract 2.7, 0.2): each answered with its status code, none affecting other functions.

use serde_json::json;

use crate::harness::{TestApp, get};

#[tokio::test]
async fn load_failures_are_errno_437() {
    let app = TestApp::start();
    app.create_fixture("no-handler", "echo", json!({"Handler": "index.nope"})).await.unwrap();
    app.create_fixture("no-module", "echo", json!({"Handler": "missing.main_handler"})).await.unwrap();
    app.create_fixture("syntax-error", "broken", json!({})).await.unwrap();
    for (function, expect) in [("no-handler", "nope"), ("no-module", "missing"), ("syntax-error", "line 1")] {
        let base = app.route_to(function).await.base;
        let reply = get(&format!("{base}/")).await;
        assert_eq!(reply.status, 502, "{function}");
        let body = reply.json();
        assert_eq!(body["errno"], 437, "{function}: {body}");
        assert!(body["error"].as_str().unwrap().contains(expect), "{function}: {body}");
    }
}

#[tokio::test]
async fn a_crash_is_errno_439_and_nothing_else_is_affected() {
    let app = TestApp::start();
    app.create_fixture("crash", "crash", json!({})).await.unwrap();
    app.create_fixture("bystander", "echo", json!({})).await.unwrap();
    let crash = app.route_to("crash").await.base;
    let bystander = app.route_to("bystander").await.base;
    let before = get(&format!("{bystander}/")).await.header("x-instance").to_string();

    let reply = get(&format!("{crash}/crash")).await;
    assert_eq!(reply.status, 502);
    let body = reply.json();
    assert_eq!(body["errno"], 439, "{body}");
    let logs = app
        .scf("GetFunctionLogs", json!({"FunctionName": "crash", "FunctionRequestId": body["requestId"]}))
        .await
        .unwrap();
    assert!(logs["Data"][0]["Log"].as_str().unwrap().contains("going down"), "{logs}");

    assert_eq!(get(&format!("{crash}/")).await.text(), "alive", "the pool replaced the dead instance");
    let after = get(&format!("{bystander}/")).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.header("x-instance"), before, "another function's warm instance is untouched");
}
