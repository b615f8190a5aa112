//! The Node.js runtimes: async and callback handlers behind a CLB listener.

use serde_json::{Value, json};

use crate::harness::{TestApp, get};

#[tokio::test]
async fn an_async_node_handler_answers_hello_clb() {
    let app = TestApp::start();
    app.create_fixture("node-hello", "node_hello", json!({"Runtime": "Nodejs18.15"})).await.unwrap();
    let route = app.route_to("node-hello").await;
    let reply = get(&format!("{}/", route.base)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "text/html");
    assert_eq!(reply.text(), "<html><body><h1>Hello CLB</h1></body></html>");
    let logs = app.scf("GetFunctionLogs", json!({"FunctionName": "node-hello"})).await.unwrap();
    let log = logs["Data"][0]["Log"].as_str().unwrap();
    assert!(log.contains("\thello from node node-hello\n"), "{log}");
}

#[tokio::test]
async fn a_callback_node_handler_and_its_errors() {
    let app = TestApp::start();
    app.create_fixture("node-callback", "node_callback", json!({"Runtime": "Nodejs16.13", "Timeout": 5}))
        .await
        .unwrap();
    let base = app.route_to("node-callback").await.base;
    let reply = get(&format!("{base}/orders")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: Value = reply.json();
    assert_eq!(body["path"], "/orders");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["runtime"], "Nodejs16.13");
    let remaining = body["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 5000, "{remaining}");

    let failed = get(&format!("{base}/fail")).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.json()["errno"], 430);
}

#[tokio::test]
async fn a_runtime_missing_on_the_host_is_refused_at_create() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--node", "/nonexistent/node"]);
    let err = app.create_fixture("no-node", "node_hello", json!({"Runtime": "Nodejs18.15"})).await.unwrap_err();
    let fnlb::client::ClientError::Api { code, message, .. } = err else { panic!("{err:?}") };
    assert_eq!(code, "InvalidParameterValue.Runtime");
    assert!(message.contains("node"), "{message}");
}
