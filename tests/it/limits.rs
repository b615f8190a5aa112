//! Limits of a function instance: memory (434), and the next request after a kill.

use serde_json::json;

use crate::harness::{TestApp, get};

#[tokio::test]
async fn memory_past_the_limit_is_errno_434_and_the_instance_is_replaced() {
    let app = TestApp::start();
    app.create_fixture("hog", "hog", json!({"MemorySize": 64, "Timeout": 30})).await.unwrap();
    let base = app.route_to("hog").await.base;
    assert_eq!(get(&format!("{base}/")).await.text(), "fine");
    let reply = get(&format!("{base}/hog")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["errno"], 434, "{body}");
    assert_eq!(get(&format!("{base}/")).await.text(), "fine", "a fresh instance serves the next request");
    let logs = app.scf("GetFunctionLogs", json!({"FunctionName": "hog", "Filter": {"RetCode": "not0"}})).await.unwrap();
    assert_eq!(logs["TotalCount"], 1);
    assert_eq!(logs["Data"][0]["RetCode"], 434);
}
