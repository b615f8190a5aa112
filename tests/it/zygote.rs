//! Python instances forked from the runtime's one zygote: each takes on its function (code, environment, `/tmp`,
//! processes, user) before it runs a line of it, new code is run as soon as it is deployed, and a dead zygote is
//! replaced without failing a request.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, probe, zygote_processes};

fn package(body: &str) -> String {
    let code = format!("def main_handler(event, context):\n    return {body:?}\n");
    let zip = fnlb::functions::zip_files(&[("index.py", code.as_bytes())]);
    base64::engine::general_purpose::STANDARD.encode(zip)
}

async fn invoke_text(app: &TestApp, function: &str) -> String {
    let invoked = app.scf("Invoke", json!({"FunctionName": function})).await.unwrap();
    serde_json::from_str::<Value>(invoked["Result"]["RetMsg"].as_str().unwrap()).unwrap().as_str().unwrap().to_string()
}

#[tokio::test]
async fn new_code_runs_from_the_first_request_and_after_every_update() {
    let app = TestApp::start();
    let created = json!({"FunctionName": "fresh", "Runtime": "Python3.9", "Handler": "index.main_handler",
        "Code": {"ZipFile": package("one")}});
    app.scf("CreateFunction", created).await.unwrap();
    assert_eq!(invoke_text(&app, "fresh").await, "one", "the first request runs the code just deployed");
    for body in ["two", "three"] {
        let update = json!({"FunctionName": "fresh", "ZipFile": package(body)});
        app.scf("UpdateFunctionCode", update).await.unwrap();
        // Once the update is acknowledged, no request runs the old code (warm instances included).
        for _ in 0..10 {
            assert_eq!(invoke_text(&app, "fresh").await, body);
        }
    }
}

#[tokio::test]
async fn two_functions_from_one_zygote_see_only_their_own_code_environment_tmp_and_processes() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--sandbox", "bubblewrap"]);
    let mut seen = Vec::new();
    for (name, secret) in [("fork-a", "alpha"), ("fork-b", "beta")] {
        let created = json!({"Environment": {"Variables": [{"Key": "SECRET", "Value": secret}]}});
        app.create_fixture(name, "hostile", created).await.unwrap();
        let probes = json!({"write_tmp": [name, 1], "list_tmp": true, "list": ["/var/user", "/var/code"],
            "environ": ["SECRET", "SCF_FUNCTIONNAME", "FNLB_CODE_ROOT"], "processes": true});
        seen.push(probe(&app, name, probes).await);
    }
    for (seen, (name, secret)) in seen.iter().zip([("fork-a", "alpha"), ("fork-b", "beta")]) {
        assert_eq!(seen["env SECRET"], secret, "{seen}");
        assert_eq!(seen["env SCF_FUNCTIONNAME"], name, "{seen}");
        assert_eq!(seen["env FNLB_CODE_ROOT"], Value::Null, "nothing of the zygote's environment: {seen}");
        assert_eq!(seen["list /var/user"], json!(["index.py"]), "its own package: {seen}");
        assert!(seen["list /var/code"].as_array().is_none_or(|a| a.is_empty()), "no other package: {seen}");
        assert_eq!(seen["tmp"], json!([name]), "its own /tmp: {seen}");
        if rustix::process::geteuid().is_root() {
            let uid = seen["uid"].to_string();
            for (pid, owner) in seen["processes"].as_array().unwrap().iter().map(|p| (&p[0], &p[1])) {
                assert_eq!(owner.as_str(), Some(uid.as_str()), "process {pid} is not the function's: {seen}");
            }
        }
    }
}

#[tokio::test]
async fn a_dead_zygote_is_replaced_and_the_request_does_not_fail() {
    let app = TestApp::start();
    app.create_fixture("before", "echo", json!({})).await.unwrap();
    app.scf("Invoke", json!({"FunctionName": "before"})).await.unwrap();
    let zygote = eventually("the zygote runs", Duration::from_secs(10), || async { zygote_of(app.pid()) }).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(zygote as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // A cold start after the kill: a new function.
    app.create_fixture("after", "echo", json!({})).await.unwrap();
    let invoked = app.scf("Invoke", json!({"FunctionName": "after"})).await.unwrap();
    assert_eq!(invoked["Result"]["InvokeResult"], 0, "{invoked}");
    let replaced = eventually("a new zygote runs", Duration::from_secs(10), || async { zygote_of(app.pid()) }).await;
    assert_ne!(replaced, zygote);
}

fn zygote_of(fnlb: u32) -> Option<u32> {
    zygote_processes(fnlb).0.first().copied()
}
