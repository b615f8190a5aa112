//! Limits of a function instance: memory (434), and the next request after a kill.

use serde_json::json;

use crate::harness::{TestApp, get};

#[tokio::test]
async fn memory_past_the_limit_is_errno_434_and_the_instance_is_replaced() {
    let app = TestApp::start();
    app.create_fixture("hog", "hog", json!({"MemorySize": 64, "Timeout": 30})).await.unwrap();
    let base = app.route_to("hog").await.base;
    assert_eq!(get(&format!("{base}/")).await.text(), "fine");
    let reply = get(&format!("{base}/hog")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["errno"], 434, "{body}");
    assert_eq!(get(&format!("{base}/")).await.text(), "fine", "a fresh instance serves the next request");
    let logs = app.scf("GetFunctionLogs", json!({"FunctionName": "hog", "Filter": {"RetCode": "not0"}})).await.unwrap();
    assert_eq!(logs["TotalCount"], 1);
    assert_eq!(logs["Data"][0]["RetCode"], 434);
}

#[tokio::test]
async fn every_process_of_an_instance_is_born_inside_its_limits() {
    let app = TestApp::start();
    let created = json!({"Runtime": "CustomRuntime", "Handler": "index.handler"});
    app.create_fixture("bounded", "custom_bash", created).await.unwrap();
    let base = app.route_to("bounded").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200);

    // The sandbox's processes, the bash bootstrap and the curl it runs now: all of them, not only the first.
    let wanted = b"SCF_FUNCTIONNAME=bounded";
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == wanted) {
            continue;
        }
        let Ok(limits) = std::fs::read_to_string(entry.path().join("limits")) else { continue };
        seen += 1;
        let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_string();
        assert!(open_files.split_whitespace().nth(3) == Some("1024"), "{open_files}");
        if rustix::process::geteuid().is_root() {
            let groups = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            let memory = groups.lines().find(|l| l.contains(":memory:") || l.starts_with("0::")).unwrap_or_default();
            assert!(memory.contains("/instance-"), "{:?} is outside its instance cgroup: {memory}", entry.path());
        }
    }
    assert!(seen >= 2, "the instance's processes are found ({seen})");
}
