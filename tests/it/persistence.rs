//! Nothing acknowledged is lost: after `kill -9` and a restart, everything is back and serving.

use serde_json::json;

use crate::harness::{TestApp, get};

#[tokio::test]
async fn acknowledged_state_survives_kill_9() {
    let app = TestApp::start();
    app.create_fixture("echo", "echo", json!({"Description": "kept", "Timeout": 7})).await.unwrap();
    let route = app.route_to("echo").await;
    assert_eq!(get(&format!("{}/", route.base)).await.status, 200);
    let credentials = app.credentials.clone();

    let data_dir = app.kill_9();
    let app = TestApp::start_in(&data_dir, &[]);
    assert_eq!(app.credentials.secret_id, credentials.secret_id, "the account is kept");

    let function = app.scf("GetFunction", json!({"FunctionName": "echo"})).await.unwrap();
    assert_eq!(function["Description"], "kept");
    assert_eq!(function["Timeout"], 7);
    let listeners = app.clb("DescribeListeners", json!({"LoadBalancerId": route.lb_id})).await.unwrap();
    assert_eq!(listeners["Listeners"][0]["ListenerId"], route.listener_id.as_str());
    assert_eq!(listeners["Listeners"][0]["Rules"][0]["LocationId"], route.location_id.as_str());
    let triggers = app.scf("ListTriggers", json!({"FunctionName": "echo"})).await.unwrap();
    assert_eq!(triggers["TotalCount"], 1);
    // The listener is bound again and the function (code included) serves.
    let reply = get(&format!("{}/after", route.base)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["event"]["path"], "/after");
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}
