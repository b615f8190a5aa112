//! Asynchronous invocation: accepted at once, run from a durable queue, retried, reported, kept across restarts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, eventually};

async fn status(app: &TestApp, function: &str, request_id: &str) -> Option<Value> {
    let got =
        app.scf("GetRequestStatus", json!({"FunctionName": function, "FunctionRequestId": request_id})).await.ok()?;
    got["Data"].get(0).cloned()
}

async fn invoke_event(app: &TestApp, function: &str, event: Value) -> String {
    let queued = app
        .scf("Invoke", json!({"FunctionName": function, "InvocationType": "Event", "ClientContext": event.to_string()}))
        .await
        .unwrap();
    assert_eq!(queued["Result"]["RetMsg"], "");
    queued["Result"]["FunctionRequestId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_event_runs_in_the_background_and_failures_are_retried() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--async-retry-interval", "1"]);
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    app.create_fixture("fail", "fail", json!({})).await.unwrap();

    let ok = invoke_event(&app, "echo", json!({"k": "v"})).await;
    let done = eventually("the event ran", Duration::from_secs(20), || async {
        status(&app, "echo", &ok).await.filter(|s| s["RetCode"] == 0)
    })
    .await;
    let ret: Value = serde_json::from_str(done["RetMsg"].as_str().unwrap()).unwrap();
    assert!(ret["body"].as_str().unwrap().contains("\"k\": \"v\""), "{ret}");

    let failing = invoke_event(&app, "fail", json!({})).await;
    let failed = eventually("the event failed after its retries", Duration::from_secs(30), || async {
        status(&app, "fail", &failing).await.filter(|s| s["RetCode"] == -1)
    })
    .await;
    assert_eq!(failed["RetryNum"], 2, "{failed}");
    let logs = app
        .scf("GetFunctionLogs", json!({"FunctionName": "fail", "FunctionRequestId": failing, "Limit": 10}))
        .await
        .unwrap();
    assert_eq!(logs["TotalCount"], 3, "three attempts, each with its log");

    let big = json!({"blob": "x".repeat(130 * 1024)});
    let refused = app
        .scf("Invoke", json!({"FunctionName": "echo", "InvocationType": "Event", "ClientContext": big.to_string()}))
        .await;
    assert!(
        matches!(refused, Err(fnlb::client::ClientError::Api { code, .. }) if code == "InvalidParameter.RequestTooLarge")
    );
}

#[tokio::test]
async fn a_queued_event_survives_kill_9() {
    let app = TestApp::start();
    app.create_fixture("slow", "slow", json!({"Timeout": 10})).await.unwrap();
    let request_id = invoke_event(&app, "slow", json!({"path": "/slow"})).await;
    // Stop fnlb hard while the event is queued or running.
    let data_dir = app.kill_9();
    let app = TestApp::start_in(&data_dir, &[]);
    eventually("the event ran after the restart", Duration::from_secs(30), || async {
        status(&app, "slow", &request_id).await.filter(|s| s["RetCode"] == 0)
    })
    .await;
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}
