//! Custom runtimes: the package's `bootstrap` served the SCF Runtime API (contract 2.6).

use serde_json::json;

use crate::harness::{TestApp, get};

#[tokio::test]
async fn a_bash_bootstrap_serves_requests() {
    let app = TestApp::start();
    app.create_fixture("custom", "custom_bash", json!({"Runtime": "CustomRuntime", "Handler": "index.handler"}))
        .await
        .unwrap();
    let base = app.route_to("custom").await.base;
    let reply = get(&format!("{base}/hello")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("custom runtime handled "), "{}", reply.text());
    assert!(reply.text().ends_with("for index.handler"), "{}", reply.text());
    assert_eq!(get(&format!("{base}/again")).await.status, 200, "the instance serves the next event too");

    let failed = get(&format!("{base}/fail")).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.json()["errno"], 430);
    assert_eq!(failed.json()["error"], "bash says no");
}

#[tokio::test]
async fn a_bootstrap_that_never_reports_ready_times_out() {
    let app = TestApp::start();
    let created = json!({"Runtime": "CustomRuntime", "Handler": "index.handler", "InitTimeout": 1});
    app.create_fixture("silent", "custom_silent", created).await.unwrap();
    let base = app.route_to("silent").await.base;
    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["errno"], 450, "{}", reply.text());
}

#[tokio::test]
async fn a_rust_bootstrap_serves_requests() {
    // Build the runtime with the toolchain that builds fnlb, into a package of its own.
    let package = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/custom_rust/bootstrap.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let built = tokio::process::Command::new(rustc)
        .args(["--edition", "2024", "-O", "-o"])
        .arg(package.path().join("bootstrap"))
        .arg(&source)
        .output()
        .await
        .expect("rustc runs");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let zip = fnlb::functions::zip_dir(package.path()).unwrap();
    let app = TestApp::start();
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, zip);
    app.scf(
        "CreateFunction",
        json!({"FunctionName": "rusty", "Runtime": "CustomRuntime", "Handler": "main", "Code": {"ZipFile": code}}),
    )
    .await
    .unwrap();
    let base = app.route_to("rusty").await.base;
    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    assert!(text.starts_with("rust runtime, request ") && text.ends_with("bytes of event"), "{text}");
    let second = get(&format!("{base}/again")).await;
    assert_ne!(second.text(), text, "each event has its own request id");
}
