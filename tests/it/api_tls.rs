//! The API and the web console over HTTPS (`--api-tls-cert`, `--api-tls-key`): fnlb's CLI with `--ca-cert`, the
//! official Python SDK, curl; nothing answered in plain HTTP on the port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::harness::{TestApp, try_request};
use crate::https::Authority;

/// fnlb serving its API with a certificate for 127.0.0.1 that a test authority signed; the authority's file is
/// what its `client` trusts.
fn start_https(dir: &Path) -> TestApp {
    let ca = Authority::new("API test CA");
    let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
    let (cert, key) = (dir.join("api.pem"), dir.join("api.key"));
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let ca_file = ca.write(dir, "ca.pem");
    let args = ["--api-tls-cert", path(&cert), "--api-tls-key", path(&key)];
    let mut app = TestApp::start_with(&dir.join("data"), &args, &[]);
    app.ca_cert = Some(ca_file);
    app
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn ca_file(app: &TestApp) -> PathBuf {
    app.ca_cert.clone().expect("an API served over HTTPS")
}

#[tokio::test]
async fn the_api_and_the_console_are_served_over_https_only() {
    let temp = tempfile::tempdir().unwrap();
    let app = start_https(temp.path());
    assert_eq!(app.api_scheme, "https", "fnlb prints the API's URL with https");
    app.create_fixture("over-https", "echo", json!({})).await.unwrap();

    // fnlb's CLI lists the function over HTTPS, trusting the authority given with --ca-cert.
    let listed = app.cli().args(["function", "list", "--ca-cert", path(&ca_file(&app))]).output().unwrap();
    let said = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{said}{}", String::from_utf8_lossy(&listed.stderr));
    assert!(said.contains("over-https"), "{said}");
    // Without it the API's certificate is not trusted.
    let refused = app.cli().args(["function", "list"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("certificate"), "{refused:?}");

    // A plain HTTP request to the port gets no API answer.
    let plain =
        try_request("POST", &format!("http://{}/", app.api_addr), &[("X-TC-Action", "ListFunctions")], "{}").await;
    assert!(!plain.as_ref().is_ok_and(|r| r.text().contains("Response")), "{:?}", plain.map(|r| r.text()));

    // The console's page loads over HTTPS.
    let url = format!("https://127.0.0.1:{}/console/", app.api_addr.port());
    let curl = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", path(&ca_file(&app)), &url])
        .output();
    let page = tokio::time::timeout(Duration::from_secs(30), curl).await.expect("curl finishes").expect("curl runs");
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(page.status.success(), "{text}{}", String::from_utf8_lossy(&page.stderr));
    assert!(text.contains("/console/app.js"), "{text}");
}

#[tokio::test]
async fn the_python_sdk_calls_the_api_over_https() {
    let temp = tempfile::tempdir().unwrap();
    let app = start_https(temp.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/https.py");
    let out = tokio::process::Command::new(crate::sdk::sdk_python())
        .args(["-W", "error"])
        .arg(script)
        .env("FNLB_ENDPOINT", app.api_addr.to_string())
        .env("FNLB_CA_CERT", ca_file(&app))
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("python finishes").expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("https: ok"), "{stdout}");
}

#[test]
fn the_api_certificate_and_key_go_together_and_are_checked_at_start() {
    let temp = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fnlb"))
            .args(["serve", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir"])
            .arg(temp.path().join("data"))
            .args(args)
            .output()
            .expect("fnlb runs");
        assert!(!out.status.success(), "fnlb started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert = temp.path().join("api.pem");
    let said = serve(&["--api-tls-cert", path(&cert)]);
    assert!(said.contains("--api-tls-cert and --api-tls-key go together"), "{said}");
    let leaf = Authority::new("API test CA").leaf(&["127.0.0.1"]);
    std::fs::write(&cert, &leaf.cert).unwrap();
    let other = temp.path().join("other.key");
    std::fs::write(&other, Authority::new("another CA").leaf(&["127.0.0.1"]).key).unwrap();
    let said = serve(&["--api-tls-cert", path(&cert), "--api-tls-key", path(&other)]);
    assert!(said.contains("cannot be used") && said.contains("does not belong"), "{said}");
}
