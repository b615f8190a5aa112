//! The official Node.js SDK (tencentcloud-sdk-nodejs from npm, pinned in tests/sdk-node), unchanged, against fnlb
//! with only its endpoint set, in each of the forms it signs and sends requests in.

use std::path::Path;
use std::process::Command;

use crate::harness::TestApp;

/// Runs `tests/sdk-node/hello_clb.js` (the seed's workflow) against a fresh fnlb with the SDK signing and sending
/// in `form`; asserts it succeeds.
async fn hello_clb(form: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/sdk-node");
    assert!(
        dir.join("node_modules/tencentcloud-sdk-nodejs").is_dir(),
        "tencentcloud-sdk-nodejs is not installed: run scripts/test, or `npm ci` in tests/sdk-node"
    );
    let app = TestApp::start();
    let mut command = Command::new("node");
    command.arg(dir.join("hello_clb.js")).current_dir(&dir);
    let out = tokio::process::Command::from(crate::sdk::seed_workflow_env(&app, command))
        .env("FNLB_FORM", form)
        .env("FNLB_FUNCTION", format!("hello-node-{form}"))
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hello_clb.js ({form}) failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("Hello CLB via the Node.js SDK ({form}): ok")), "{stdout}");
}

#[tokio::test]
async fn the_node_sdk_signs_tc3_and_posts_json() {
    hello_clb("tc3-post").await;
}

#[tokio::test]
async fn the_node_sdk_signs_tc3_and_sends_get() {
    hello_clb("tc3-get").await;
}

#[tokio::test]
async fn the_node_sdk_signs_hmac_sha1_and_sends_get() {
    hello_clb("hmacsha1-get").await;
}

#[tokio::test]
async fn the_node_sdk_signs_hmac_sha256_and_posts_a_form() {
    hello_clb("hmacsha256-post").await;
}
