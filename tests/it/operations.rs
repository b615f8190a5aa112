//! Operating fnlb: the admin listener's `/live`, `/ready`, `/metrics` (checked against the traffic sent) and
//! `/status`; `fnlb status`; `fnlb serve --config`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::harness::{TestApp, eventually, get, request};

/// The value of one sample of a metric (`name{labels}`), or 0 when it is not there.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or_default();
            series.split('{').next() == Some(name)
                && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_the_traffic_sent() {
    let app = TestApp::start();
    let admin = format!("http://{}", app.admin_addr);
    assert_eq!(get(&format!("{admin}/live")).await.status, 200);
    // Ready once the restored state's listeners are bound, which may follow the API's start.
    let ready = format!("{admin}/ready");
    eventually("/ready answering 200", Duration::from_secs(30), || async {
        (get(&ready).await.status == 200).then_some(())
    })
    .await;

    app.create_fixture("metered", "echo", json!({})).await.unwrap();
    app.create_fixture("metered-fail", "fail", json!({})).await.unwrap();
    let route = app.route_to("metered").await;
    for _ in 0..5 {
        assert_eq!(get(&format!("{}/", route.base)).await.status, 200);
    }
    let missing = request("GET", &format!("{}/", route.base), &[("Host", "nowhere.test")], Bytes::new()).await;
    assert_eq!(missing.status, 200, "the default domain answers every host");
    for _ in 0..2 {
        let _ = app.scf("Invoke", json!({"FunctionName": "metered-fail", "InvocationType": "RequestResponse"})).await;
    }
    let _ = app.scf("GetFunction", json!({"FunctionName": "no-such-function"})).await;

    let reply = get(&format!("{admin}/metrics")).await;
    assert!(reply.header("content-type").starts_with("text/plain; version=0.0.4"));
    let m = reply.text();
    let rule = [("rule", route.location_id.as_str()), ("class", "2xx")];
    assert_eq!(sample(&m, "fnlb_http_requests_total", &rule), 6.0, "{m}");
    let rule = [("rule", route.location_id.as_str())];
    assert_eq!(sample(&m, "fnlb_http_request_duration_seconds_count", &rule), 6.0);
    assert!(sample(&m, "fnlb_http_response_bytes_total", &rule) > 0.0);
    let listener = [("listener", route.listener_id.as_str())];
    assert!(sample(&m, "fnlb_listener_connections_total", &listener) >= 6.0);
    let ok = [("function", "metered"), ("code", "200")];
    assert_eq!(sample(&m, "fnlb_function_invocations_total", &ok), 6.0);
    let failed = [("function", "metered-fail"), ("code", "430")];
    assert_eq!(sample(&m, "fnlb_function_invocations_total", &failed), 2.0, "{m}");
    assert!(sample(&m, "fnlb_function_cold_starts_total", &[("function", "metered")]) >= 1.0);
    assert_eq!(sample(&m, "fnlb_function_duration_seconds_count", &[("function", "metered")]), 6.0);
    assert!(sample(&m, "fnlb_function_instances", &[("function", "metered"), ("state", "idle")]) >= 1.0);
    let refused = [("action", "GetFunction"), ("code", "ResourceNotFound.Function")];
    assert_eq!(sample(&m, "fnlb_api_requests_total", &refused), 1.0, "{m}");
    assert!(sample(&m, "fnlb_api_requests_total", &[("action", "CreateRule"), ("code", "OK")]) >= 1.0);
    assert!(m.contains("# TYPE fnlb_http_request_duration_seconds histogram"));
    assert!(!m.contains("127.0.0.1:"), "no client addresses in labels");

    // `fnlb status`: the node at a glance, and as JSON.
    let out = app.cli().args(["status", "--admin", &admin, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["functionsDeployed"], 2);
    let fail = status["functions"].as_array().unwrap().iter().find(|f| f["name"] == "metered-fail").unwrap().clone();
    assert_eq!(fail["errorRate5m"], 1.0, "{status}");
    // `fnlb logs`: a function's invocations with their START/END/Report lines, one of them by request id.
    let out = app.cli().args(["logs", "metered-fail"]).output().unwrap();
    let logs = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(logs.matches("START RequestId:").count(), 2, "{logs}");
    assert!(logs.contains("something broke") && logs.contains("Report RequestId:"), "{logs}");
    let id = logs.lines().next().unwrap().split_whitespace().nth(3).unwrap().to_string();
    let out = app.cli().args(["logs", "metered-fail", "--request-id", &id]).output().unwrap();
    let one = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(one.matches("START RequestId:").count(), 1, "{one}");
    assert!(one.contains(&id));

    let out = app.cli().args(["status", "--admin", &admin]).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("metered-fail") && screen.contains(&route.base.replace("http://", "")), "{screen}");
}

#[tokio::test]
async fn a_config_file_sets_what_flags_do_not() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("fnlb.toml");
    std::fs::write(&file, "idle-timeout = 1\nqueue-timeout = 2\n").unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--config", file.to_str().unwrap()]);
    app.create_fixture("configured", "echo", json!({})).await.unwrap();
    let route = app.route_to("configured").await;
    assert_eq!(get(&format!("{}/", route.base)).await.status, 200);
    // The file's idle timeout (1 s, not the default 60 s) scales the function to zero.
    crate::harness::eventually("the function scales to zero", Duration::from_secs(20), || async {
        crate::harness::instance_processes("configured").is_empty().then_some(())
    })
    .await;

    // Unknown keys and bad values stop fnlb at start, naming the file, the key and the reason.
    let refused = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fnlb"))
            .args([
                "serve",
                "--config",
                file.to_str().unwrap(),
                "--api-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(temp.path().join("other"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let unknown = refused("idle_timeout = 1\n");
    assert!(unknown.contains("fnlb.toml: idle_timeout: not a setting"), "{unknown}");
    let bad = refused("queue-timeout = \"soon\"\n");
    assert!(bad.contains("fnlb.toml: queue-timeout: invalid value 'soon'"), "{bad}");
    let broken = refused("queue-timeout = \n");
    assert!(broken.contains("fnlb.toml"), "{broken}");
}

#[tokio::test]
async fn access_logs_are_a_line_per_request_rotated_and_reopened() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("access");
    std::fs::create_dir(&logs).unwrap();
    let app = TestApp::start_in(
        &temp.path().join("data"),
        &["--access-log", logs.to_str().unwrap(), "--access-log-max-bytes", "2000", "--access-log-files", "2"],
    );
    app.create_fixture("logged", "echo", json!({})).await.unwrap();
    let route = app.route_to("logged").await;
    let file = logs.join(format!("{}.log", route.listener_id));
    let reply = request("GET", &format!("{}/some/path?q=1", route.base), &[("Host", "fnlb.test")], Bytes::new()).await;
    assert_eq!(reply.status, 200);
    let line = crate::harness::eventually("the request is logged", Duration::from_secs(10), || async {
        std::fs::read_to_string(&file).ok().filter(|t| !t.is_empty())
    })
    .await;
    for field in [
        "client=127.0.0.1:".to_string(),
        format!("vip={}", route.base.trim_start_matches("http://")),
        "host=fnlb.test".to_string(),
        "method=GET".to_string(),
        "path=/some/path".to_string(),
        "status=200".to_string(),
        "bytes=".to_string(),
        "duration_ms=".to_string(),
        format!("rule={}", route.location_id),
        "target=function:default/logged:$LATEST".to_string(),
        "request_id=".to_string(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    assert!(!line.contains("request_id=-"), "a function's request id is logged: {line}");

    // Past 2,000 bytes the file is rotated; two rotated files are kept.
    for _ in 0..30 {
        get(&format!("{}/", route.base)).await;
    }
    let rotated = logs.join(format!("{}.log.1", route.listener_id));
    crate::harness::eventually("the log is rotated", Duration::from_secs(10), || async {
        rotated.exists().then_some(())
    })
    .await;
    assert!(!logs.join(format!("{}.log.3", route.listener_id)).exists());

    // Moved away by an outside rotation, the file is made again after SIGHUP.
    let moved = temp.path().join("moved.log");
    std::fs::rename(&file, &moved).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &app.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    crate::harness::eventually("a new file after SIGHUP", Duration::from_secs(10), || async {
        get(&format!("{}/", route.base)).await;
        file.exists().then_some(())
    })
    .await;
    assert_eq!(get(&format!("http://{}/live", app.admin_addr)).await.status, 200, "SIGHUP does not stop fnlb");
}
