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

/// A zip of one `index.py` that answers `text`, Base64, and the package's SHA-256.
fn package(text: &str) -> (String, String) {
    let source = format!("def main_handler(event, context):\n    return {{'statusCode': 200, 'body': '{text}'}}\n");
    let zip = fnlb::functions::zip_files(&[("index.py", source.as_bytes())]);
    (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &zip), fnlb::functions::sha256_hex(&zip))
}

#[tokio::test]
async fn code_no_function_runs_is_collected_from_the_store_and_the_disk() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let app = TestApp::start_in(&data, &["--code-retention", "1"]);
    let (first, first_sha) = package("first");
    let create = |zip: &str| {
        json!({"FunctionName": "collected", "Runtime": "Python3.9", "Handler": "index.main_handler",
            "Code": {"ZipFile": zip}})
    };
    app.scf("CreateFunction", create(&first)).await.unwrap();
    let route = app.route_to("collected").await;
    assert_eq!(get(&format!("{}/", route.base)).await.text(), "first");
    // The code replaced, and a refused request's upload.
    let (second, second_sha) = package("second");
    app.scf("UpdateFunctionCode", json!({"FunctionName": "collected", "ZipFile": second})).await.unwrap();
    assert_eq!(get(&format!("{}/", route.base)).await.text(), "second");
    let (refused, refused_sha) = package("refused");
    assert!(app.scf("CreateFunction", create(&refused)).await.is_err(), "the function exists");

    let store = fnlb::store::Sqlite::open(&data.join("fnlb.sqlite3")).unwrap();
    crate::harness::eventually("unused code is collected", std::time::Duration::from_secs(15), || async {
        let stored = |sha: &str| store.code(sha).unwrap().is_some();
        let unpacked = |sha: &str| data.join("code").join(sha).exists();
        (!stored(&first_sha) && !stored(&refused_sha) && !unpacked(&first_sha)).then_some(())
    })
    .await;
    // What the function runs stays.
    assert!(store.code(&second_sha).unwrap().is_some());
    assert!(data.join("code").join(&second_sha).exists());
    assert_eq!(get(&format!("{}/", route.base)).await.text(), "second");
}
