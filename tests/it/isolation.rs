//! Function instances are isolated from fnlb and from each other.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::TestApp;

#[tokio::test]
async fn a_function_cannot_read_fnlb_data_or_another_function_code() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let app = TestApp::start_in(&data_dir, &["--sandbox", "bubblewrap"]);
    app.create_fixture("snoop", "snoop", json!({})).await.unwrap();
    app.create_fixture("victim", "echo", json!({})).await.unwrap();
    // Where the victim's code lies on the host: its package is unpacked once it first runs.
    app.scf("Invoke", json!({"FunctionName": "victim"})).await.unwrap();
    let echo_zip =
        fnlb::functions::zip_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/functions/echo")).unwrap();
    let other_code = data_dir.join("code").join(fnlb::functions::sha256_hex(&echo_zip)).join("index.py");
    assert!(other_code.is_file(), "the victim's code is at {}", other_code.display());

    let event = json!({"paths": {
        "data_dir": data_dir,
        "credentials": data_dir.join("credentials.json"),
        "store": data_dir.join("fnlb.sqlite3"),
        "other_code": other_code,
    }});
    let invoked =
        app.scf("Invoke", json!({"FunctionName": "snoop", "ClientContext": event.to_string()})).await.unwrap();
    let ret: Value = serde_json::from_str(invoked["Result"]["RetMsg"].as_str().unwrap()).unwrap();
    let seen: Value = serde_json::from_str(ret["body"].as_str().unwrap()).unwrap();
    for attempt in ["list_data_dir", "read_credentials", "read_store", "read_other_code", "write_own_code"] {
        assert!(seen[attempt].as_str().unwrap().starts_with("denied"), "{attempt}: {}", seen[attempt]);
    }
    assert_eq!(seen["write_tmp"], "allowed", "the function has its own writable /tmp");
    assert_eq!(seen["code_root"], "/var/user");
    if rustix::process::geteuid().is_root() {
        assert_ne!(seen["uid"], 0, "functions never run as root");
    }
}
