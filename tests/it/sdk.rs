//! The official Python SDK (tencentcloud-sdk-python from PyPI), unchanged, against fnlb.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{TestApp, free_addr};

/// The Python that has the SDK: `FNLB_TEST_PYTHON`, else the project's `.venv` made by `scripts/test`.
pub(crate) fn sdk_python() -> PathBuf {
    if let Ok(python) = std::env::var("FNLB_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the Tencent SDK: run scripts/test (it makes .venv), or set FNLB_TEST_PYTHON"
    );
    venv
}

/// A script driving the seed's workflow gets the endpoint, the keys, a free address for its listener and the seed's
/// code in its environment.
pub(crate) fn seed_workflow_env(app: &TestApp, mut command: Command) -> Command {
    let (vip, port) = free_addr();
    command
        .env("FNLB_ENDPOINT", app.api_addr.to_string())
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .env("FNLB_VIP", vip.to_string())
        .env("FNLB_PORT", port.to_string())
        .env("FNLB_EXAMPLE", Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"));
    command
}

/// Runs one of `tests/sdk/`'s scripts with warnings as errors (an unknown response field would be one) against a
/// fresh fnlb, with the environment every script reads: the endpoint, the keys, a listener's address and the seed's
/// code. Asserts it succeeds and prints `done`.
async fn run_script(name: &str, done: &str) {
    let app = TestApp::start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(sdk_python());
    command.arg("-W").arg("error").arg(root.join("tests/sdk").join(name));
    let out = tokio::process::Command::from(seed_workflow_env(&app, command)).output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
}

#[tokio::test]
async fn hello_clb_with_the_official_python_sdk() {
    run_script("hello_clb.py", "Hello CLB via the SDK: ok").await;
}

#[tokio::test]
async fn parameters_are_validated_as_tencent_does_through_the_sdk() {
    run_script("validation.py", "validation: ok").await;
}

#[tokio::test]
async fn responses_carry_every_documented_field() {
    run_script("fields.py", "fields: ok").await;
}
