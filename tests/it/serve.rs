//! `fnlb serve` itself: the first account, credentials.json, the embedded example, SIGTERM.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, get};

#[tokio::test]
async fn credentials_come_from_the_environment_and_are_private() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let env = [("FNLB_SECRET_ID", "AKIDfromtheenvironment0000000000000"), ("FNLB_SECRET_KEY", "keyfromtheenvironment")];
    let app = TestApp::start_with(&data_dir, &[], &env);
    let path = data_dir.join("credentials.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(creds["secretId"], env[0].1);
    assert_eq!(creds["secretKey"], env[1].1);
    assert!(creds["appId"].as_str().unwrap().chars().all(|c| c.is_ascii_digit()));
    assert!(creds["uin"].as_str().unwrap().chars().all(|c| c.is_ascii_digit()));
    app.scf("ListFunctions", json!({})).await.expect("the environment's keys sign requests");
}

#[tokio::test]
async fn generated_credentials_work() {
    let app = TestApp::start();
    assert!(app.credentials.secret_id.starts_with("AKID"));
    app.scf("ListFunctions", json!({})).await.unwrap();
}

#[tokio::test]
async fn the_example_is_deployed_once_and_reachable() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    // The data directory named relatively, as the default `./fnlb-data` is: sandboxes start elsewhere.
    let app = TestApp::start_relative(&data_dir, &["--example", "--example-port", &port]);
    let access_path = app.wait_line("fnlb: example hello-clb deployed; open ", Duration::from_secs(30));
    assert_eq!(access_path, format!("http://127.0.0.1:{port}/"));
    let reply = get(&access_path).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/html");
    assert_eq!(reply.text(), "<html><body><h1>Hello CLB</h1></body></html>");
    assert!(app.terminate(Duration::from_secs(30)), "fnlb exits successfully on SIGTERM");

    // A second start finds the example deployed and adds nothing.
    let app = TestApp::start_in(&data_dir, &["--example", "--example-port", &port]);
    let again = app.wait_line("fnlb: example hello-clb deployed; open ", Duration::from_secs(30));
    assert_eq!(again, access_path);
    assert_eq!(app.scf("ListFunctions", json!({})).await.unwrap()["TotalCount"], 1);
    assert_eq!(app.clb("DescribeLoadBalancers", json!({})).await.unwrap()["TotalCount"], 1);
    let lb = app.clb("DescribeLoadBalancers", json!({})).await.unwrap()["LoadBalancerSet"][0]["LoadBalancerId"].clone();
    let listeners = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    assert_eq!(listeners["TotalCount"], 1);
    assert_eq!(listeners["Listeners"][0]["Rules"].as_array().unwrap().len(), 1);
    assert_eq!(get(&again).await.status, 200);
}
