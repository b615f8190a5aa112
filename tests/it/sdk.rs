//! The official Python SDK (tencentcloud-sdk-python from PyPI), unchanged, against fnlb.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{TestApp, free_addr};

/// The Python that has the SDK: `FNLB_TEST_PYTHON`, else the project's `.venv` made by `scripts/test`.
fn sdk_python() -> PathBuf {
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

#[tokio::test]
async fn hello_clb_with_the_official_python_sdk() {
    let app = TestApp::start();
    let (vip, port) = free_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/hello_clb.py");
    let out = tokio::process::Command::from(Command::new(sdk_python()))
        .arg("-W")
        .arg("error")
        .arg(&script)
        .env("FNLB_ENDPOINT", app.api_addr.to_string())
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .env("FNLB_VIP", vip.to_string())
        .env("FNLB_PORT", port.to_string())
        .env("FNLB_EXAMPLE", Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Hello CLB via the SDK: ok"), "{stdout}");
}

#[tokio::test]
async fn parameters_are_validated_as_tencent_does_through_the_sdk() {
    let app = TestApp::start();
    let (vip, port) = free_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/validation.py");
    let out = tokio::process::Command::from(Command::new(sdk_python()))
        .arg("-W")
        .arg("error")
        .arg(&script)
        .env("FNLB_VIP", vip.to_string())
        .env("FNLB_PORT", port.to_string())
        .env("FNLB_ENDPOINT", app.api_addr.to_string())
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "validation cases failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("validation: ok"), "{stdout}");
}

#[tokio::test]
async fn responses_carry_every_documented_field() {
    let app = TestApp::start();
    let (vip, port) = free_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/fields.py");
    let out = tokio::process::Command::from(Command::new(sdk_python()))
        .arg("-W")
        .arg("error")
        .arg(&script)
        .env("FNLB_ENDPOINT", app.api_addr.to_string())
        .env("TENCENTCLOUD_SECRET_ID", &app.credentials.secret_id)
        .env("TENCENTCLOUD_SECRET_KEY", &app.credentials.secret_key)
        .env("FNLB_VIP", vip.to_string())
        .env("FNLB_PORT", port.to_string())
        .env("FNLB_EXAMPLE", Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "documented fields are missing:\n{stdout}\n{stderr}");
    assert!(stdout.contains("fields: ok"), "{stdout}");
}
