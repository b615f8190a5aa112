//! The `fnlb` command line as a client of the API.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{TestApp, free_addr, get};

fn fnlb(app: &TestApp, args: &[&str]) -> Output {
    app.cli().args(args).output().expect("fnlb runs")
}

fn ok(app: &TestApp, args: &[&str]) -> Value {
    let out = fnlb(app, args);
    assert!(out.status.success(), "fnlb {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("fnlb {args:?} printed no JSON ({e})"))
}

#[tokio::test]
async fn the_seed_workflow_from_the_command_line() {
    let app = TestApp::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb");
    let created =
        ok(&app, &["function", "create", "hello", "--code", example.to_str().unwrap(), "--runtime", "Python3.6"]);
    assert_eq!(created["Status"], "Active");
    let listed = ok(&app, &["function", "list"]);
    assert_eq!(listed["Functions"][0]["FunctionName"], "hello");
    let invoked = ok(&app, &["invoke", "hello", "--event", "{}"]);
    assert!(invoked["Result"]["RetMsg"].as_str().unwrap().contains("Hello CLB"));

    let (vip, port) = free_addr();
    let lb = ok(&app, &["clb", "create-lb", "--vip", &vip.to_string()]);
    let lb_id = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener = ok(&app, &["clb", "create-listener", &lb_id, "--port", &port.to_string()]);
    let listener_id = listener["ListenerIds"][0].as_str().unwrap().to_string();
    ok(&app, &["clb", "create-rule", &lb_id, &listener_id, "--url", "/"]);
    ok(&app, &["clb", "bind", &lb_id, &listener_id, "--url", "/", "--function", "hello"]);
    let triggers = ok(&app, &["triggers", "hello"]);
    let access_path = triggers["Triggers"][0]["AccessPath"].as_str().unwrap().to_string();
    assert_eq!(access_path, format!("http://{vip}:{port}/"));
    assert_eq!(get(&access_path).await.text(), "<html><body><h1>Hello CLB</h1></body></html>");

    ok(&app, &["clb", "unbind", &lb_id, &listener_id, "--url", "/", "--function", "hello"]);
    assert_eq!(ok(&app, &["triggers", "hello"])["Triggers"], serde_json::json!([]));
    ok(&app, &["function", "delete", "hello"]);
    ok(&app, &["clb", "delete-lb", &lb_id]);
}

#[tokio::test]
async fn invalid_input_is_one_clear_line_and_a_failure_exit() {
    let app = TestApp::start();
    let out = fnlb(&app, &["function", "get", "missing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ResourceNotFound.Function: "), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let out = fnlb(&app, &["function", "create", "x1", "--code", "/no/such/dir"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let out = Command::new(env!("CARGO_BIN_EXE_fnlb"))
        .args(["function", "list", "--endpoint", "http://127.0.0.1:1", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: cannot reach the API"), "{stderr}");
}

#[tokio::test]
async fn any_action_can_be_called_with_json_parameters() {
    let app = TestApp::start();
    let (vip, _) = free_addr();
    let created =
        ok(&app, &["call", "clb", "CreateLoadBalancer", &format!(r#"{{"LoadBalancerType":"OPEN","Vip":"{vip}"}}"#)]);
    let id = created["LoadBalancerIds"][0].as_str().unwrap();
    let described = ok(&app, &["call", "clb", "DescribeLoadBalancers", &format!(r#"{{"LoadBalancerIds":["{id}"]}}"#)]);
    assert_eq!(described["TotalCount"], 1);
    assert_eq!(ok(&app, &["call", "scf", "ListFunctions"])["TotalCount"], 0);
    let refused = fnlb(&app, &["call", "clb", "NoSuchAction"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidAction"), "{refused:?}");
    assert!(!fnlb(&app, &["call", "cvm", "DescribeInstances"]).status.success());
}
