//! Tencent compatibility through tccli, the official command line from PyPI, unchanged: the seed's whole
//! workflow, and tccli's exit code and message for an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, free_addr, request};

/// tccli: `FNLB_TEST_TCCLI`, else the one in the project's `.venv` made by `scripts/test`.
fn tccli_path() -> PathBuf {
    if let Ok(tccli) = std::env::var("FNLB_TEST_TCCLI") {
        return PathBuf::from(tccli);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/tccli");
    assert!(venv.exists(), "no tccli: run scripts/test (it makes .venv), or set FNLB_TEST_TCCLI");
    venv
}

/// A tccli call that failed: its exit status and what it printed on stderr.
#[derive(Debug)]
struct Failure {
    status: Option<i32>,
    stderr: String,
}

/// Runs `tccli SERVICE ACTION --cli-input-json file://…` against `app` with its first account's keys.
async fn tccli(app: &TestApp, service: &str, action: &str, params: Value) -> Result<Value, Failure> {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), params.to_string()).unwrap();
    let endpoint = format!("http://{}", app.api_addr);
    let out = tokio::process::Command::new(tccli_path())
        .args([service, action, "--cli-input-json"])
        .arg(format!("file://{}", input.path().display()))
        .args(["--region", "ap-guangzhou", "--endpoint", &endpoint])
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .env("HOME", input.path().parent().unwrap())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("tccli answers").expect("tccli runs");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        return Err(Failure { status: out.status.code(), stderr });
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("tccli printed no JSON ({e})")))
}

async fn ok(app: &TestApp, service: &str, action: &str, params: Value) -> Value {
    tccli(app, service, action, params).await.unwrap_or_else(|f| panic!("tccli {service} {action}: {f:?}"))
}

#[tokio::test]
async fn the_seed_workflow_through_tccli() {
    let app = TestApp::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"),
        dir.path().join("index.py"),
    )
    .unwrap();
    let zip = fnlb::functions::zip_dir(dir.path()).unwrap();
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, zip);
    let create = json!({"FunctionName": "hello-clb", "Runtime": "Python3.6", "Handler": "index.main_handler",
        "Code": {"ZipFile": code}});
    ok(&app, "scf", "CreateFunction", create).await;
    eventually("the function is Active", Duration::from_secs(30), || async {
        let function = ok(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await;
        (function["Status"] == "Active").then_some(())
    })
    .await;

    let (vip, port) = free_addr();
    let lb = ok(&app, "clb", "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await;
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP", "ListenerNames": ["web"]});
    let listener = ok(&app, "clb", "CreateListener", listener).await["ListenerIds"][0].as_str().unwrap().to_string();
    let rule =
        json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "hello.fnlb.test", "Url": "/"}]});
    let location = ok(&app, "clb", "CreateRule", rule).await["LocationIds"][0].as_str().unwrap().to_string();
    let target = json!([{"Function": {"FunctionNamespace": "default", "FunctionName": "hello-clb",
        "FunctionQualifier": "$LATEST"}, "Weight": 10}]);
    let bind = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "FunctionTargets": target});
    let bound = ok(&app, "clb", "RegisterFunctionTargets", bind.clone()).await;
    let task = ok(&app, "clb", "DescribeTaskStatus", json!({"TaskId": bound["RequestId"]})).await;
    assert_eq!(task["Status"], 0);

    // The trigger, from the function's side, and its access path.
    let triggers = ok(&app, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(triggers["TotalCount"], 1, "{triggers}");
    let desc: Value = serde_json::from_str(triggers["Triggers"][0]["TriggerDesc"].as_str().unwrap()).unwrap();
    let function = ok(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(function["Triggers"][0]["Type"], "clb", "{function}");
    let page = request("GET", desc["accessPath"].as_str().unwrap(), &[], bytes::Bytes::new()).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text(), "<html><body><h1>Hello CLB</h1></body></html>");

    // Unbound, deleted, and gone.
    ok(&app, "clb", "DeregisterFunctionTargets", bind).await;
    let triggers = ok(&app, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(triggers["TotalCount"], 0);
    ok(&app, "clb", "DeleteRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [location]}))
        .await;
    ok(&app, "clb", "DeleteListener", json!({"LoadBalancerId": lb, "ListenerId": listener})).await;
    ok(&app, "clb", "DeleteLoadBalancer", json!({"LoadBalancerIds": [lb]})).await;
    ok(&app, "scf", "DeleteFunction", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(ok(&app, "scf", "ListFunctions", json!({})).await["TotalCount"], 0);
    assert_eq!(ok(&app, "clb", "DescribeLoadBalancers", json!({})).await["TotalCount"], 0);

    // An error: tccli exits non-zero and prints the code, the message and the request id.
    let failure = tccli(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await.unwrap_err();
    assert_eq!(failure.status, Some(255), "{failure:?}");
    assert!(failure.stderr.contains("code:ResourceNotFound.Function"), "{failure:?}");
    assert!(failure.stderr.contains("message:Function ap-guangzhou/default/hello-clb does not exist"), "{failure:?}");
    assert!(failure.stderr.contains("requestId:") && !failure.stderr.contains("requestId:None"), "{failure:?}");
}
