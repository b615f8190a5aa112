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
async fn only_the_instance_itself_may_use_its_runtime_api() {
    let app = TestApp::start();
    app.create_fixture("guarded", "custom_bash", json!({"Runtime": "CustomRuntime", "Handler": "index.handler"}))
        .await
        .unwrap();
    let base = app.route_to("guarded").await.base;
    let port = get(&format!("{base}/port")).await.text();
    let port: u16 = port.parse().unwrap_or_else(|_| panic!("the function reports its Runtime API port: {port}"));

    // Another process asks for the next event and tries to answer one: the connection is closed without an
    // answer. Where functions have a network of their own, the Runtime API is on its loopback, out of the host's
    // reach, and the stranger is another function; elsewhere it is this test.
    let requests = [
        "GET /runtime/invocation/next HTTP/1.1\r\nHost: api\r\n\r\n".to_string(),
        "POST /runtime/invocation/response HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n{}".to_string(),
    ];
    if rustix::process::geteuid().is_root() {
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "not on the host's loopback");
        app.create_fixture("stranger", "hostile", json!({})).await.unwrap();
        let exchanges: Vec<_> = requests.iter().map(|r| json!([format!("127.0.0.1:{port}"), r])).collect();
        let event = json!({"probes": {"exchange": exchanges}});
        let invoked =
            app.scf("Invoke", json!({"FunctionName": "stranger", "ClientContext": event.to_string()})).await.unwrap();
        let ret: serde_json::Value = serde_json::from_str(invoked["Result"]["RetMsg"].as_str().unwrap()).unwrap();
        let seen: serde_json::Value = serde_json::from_str(ret["body"].as_str().unwrap()).unwrap();
        for i in 0..requests.len() {
            // Closed (or reset, its request unread) without an answer.
            let outcome = seen[format!("exchange_{i}")].as_str().unwrap_or_default().to_string();
            assert!(outcome.is_empty() || outcome.ends_with("reset by peer"), "answered another function: {seen}");
        }
    } else {
        for request in requests {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.write_all(request.as_bytes()).await;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
            assert!(read.is_ok(), "the connection is closed, not left open");
            assert!(answer.is_empty(), "no answer to a stranger: {}", String::from_utf8_lossy(&answer));
        }
    }
    let reply = get(&format!("{base}/after")).await;
    assert_eq!(reply.status, 200, "the instance still serves its own events: {}", reply.text());
    assert!(reply.text().starts_with("custom runtime handled "), "{}", reply.text());
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

#[tokio::test]
async fn output_without_newlines_is_read_in_bounded_pieces() {
    let app = TestApp::start();
    // 300 MB on stdout without a newline before the runtime reports ready, then Tencent's bash sample.
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/functions/custom_bash/bootstrap"),
    )
    .unwrap();
    let bootstrap =
        sample.replacen("set -euo pipefail\n", "set -euo pipefail\nhead -c 300000000 /dev/zero | tr '\\0' x\n", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bootstrap"), bootstrap).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("bootstrap"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let created = json!({"Runtime": "CustomRuntime", "Handler": "index.handler", "InitTimeout": 60});
    app.create_from_dir("chatty", dir.path(), created).await.unwrap();
    let base = app.route_to("chatty").await.base;
    let before = crate::harness::rss(app.pid());
    let peak = crate::harness::PeakRss::watch(app.pid());
    let reply = get(&format!("{base}/")).await;
    let grew = peak.stop().saturating_sub(before);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(grew < 64 << 20, "fnlb grew by {} MB reading 300 MB of output without a newline", grew >> 20);
}
