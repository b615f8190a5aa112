//! Limits of a function instance: memory (434), the next request after a kill, open files, cgroups and the
//! scheduling policy of every process it starts.

use std::time::Duration;

use serde_json::json;

use crate::harness::{TestApp, eventually, get};

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
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--batch-scheduling", "true"]);
    let created = json!({"Runtime": "CustomRuntime", "Handler": "index.handler"});
    app.create_fixture("bounded", "custom_bash", created).await.unwrap();
    let base = app.route_to("bounded").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200);

    // The sandbox's processes, the bash bootstrap and the curl it runs now: all of them, not only the first.
    let mut seen = 0;
    for process in function_processes("bounded") {
        let Ok(limits) = std::fs::read_to_string(process.join("limits")) else { continue };
        seen += 1;
        // (A process gone since, such as a finished curl, has no policy left to read.)
        if let Some(policy) = scheduling_policy(&process) {
            assert_eq!(policy, SCHED_BATCH, "{process:?} runs under SCHED_BATCH");
        }
        let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_string();
        assert!(open_files.split_whitespace().nth(3) == Some("1024"), "{open_files}");
        if rustix::process::geteuid().is_root() {
            let groups = std::fs::read_to_string(process.join("cgroup")).unwrap_or_default();
            let memory = groups.lines().find(|l| l.contains(":memory:") || l.starts_with("0::")).unwrap_or_default();
            assert!(memory.contains("/instance-"), "{process:?} is outside its instance cgroup: {memory}");
        }
    }
    assert!(seen >= 2, "the instance's processes are found ({seen})");
}

#[tokio::test]
async fn instances_keep_the_default_scheduling_policy_when_asked() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--batch-scheduling", "false"]);
    app.create_fixture("ordinary", "echo", json!({})).await.unwrap();
    let base = app.route_to("ordinary").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200);
    let policies: Vec<_> = function_processes("ordinary").iter().map(|p| scheduling_policy(p)).collect();
    assert!(!policies.is_empty() && policies.iter().all(|p| *p == Some(SCHED_OTHER)), "SCHED_OTHER: {policies:?}");
}

#[tokio::test]
async fn instances_leave_batch_scheduling_while_other_processes_keep_the_processors_busy() {
    if !rustix::process::geteuid().is_root() {
        return; // fnlb finds its instances through their cgroups, made only when it may write them.
    }
    let app = TestApp::start();
    app.create_fixture("neighbourly", "echo", json!({})).await.unwrap();
    let base = app.route_to("neighbourly").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200);
    let policies = || -> Vec<Option<u32>> {
        function_processes("neighbourly").iter().map(|p| scheduling_policy(p)).filter(Option::is_some).collect()
    };
    assert!(!policies().is_empty(), "the instance runs");

    // A busy neighbour on every processor (each ends by itself after 30 s, and is killed at the end of the test).
    let processors = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _hogs: Vec<Hog> = (0..processors).map(|_| Hog::start(Duration::from_secs(30))).collect();
    eventually("every instance process under SCHED_OTHER beside busy neighbours", Duration::from_secs(20), || async {
        let now = policies();
        (!now.is_empty() && now.iter().all(|p| *p == Some(SCHED_OTHER))).then_some(())
    })
    .await;
    // The function still answers.
    assert_eq!(get(&format!("{base}/")).await.status, 200);
}

/// A process that keeps one processor busy for at most `limit`; killed when dropped.
struct Hog(std::process::Child);

impl Hog {
    fn start(limit: Duration) -> Hog {
        let program =
            format!("import time\nend = time.monotonic() + {}\nwhile time.monotonic() < end: pass", limit.as_secs());
        Hog(std::process::Command::new("python3").args(["-c", &program]).spawn().expect("python3 runs"))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The `/proc` directories of a function's processes (found by their `SCF_FUNCTIONNAME`).
fn function_processes(function: &str) -> Vec<std::path::PathBuf> {
    let wanted = format!("SCF_FUNCTIONNAME={function}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::read(path.join("environ"))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect()
}

/// A process's scheduling policy, from `/proc/<pid>/sched` (0 is SCHED_OTHER).
fn scheduling_policy(process: &std::path::Path) -> Option<u32> {
    let sched = std::fs::read_to_string(process.join("sched")).ok()?;
    let line = sched.lines().find(|l| l.starts_with("policy"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

#[tokio::test]
async fn a_stopping_fnlb_removes_its_cgroups() {
    if !rustix::process::geteuid().is_root() {
        return; // Instance cgroups are made only when fnlb may write them.
    }
    let app = TestApp::start();
    app.create_fixture("grouped", "echo", json!({})).await.unwrap();
    let base = app.route_to("grouped").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200);
    // Where the instance runs: …/fnlb-<pid>/instance-<id>.
    let process = function_processes("grouped").into_iter().next().expect("the instance runs");
    let pid: u32 = process.file_name().unwrap().to_str().unwrap().parse().unwrap();
    let instance = crate::harness::cgroup_dir(pid, "memory");
    let own = instance.parent().unwrap().to_path_buf();
    assert!(own.file_name().unwrap().to_string_lossy().starts_with("fnlb-"), "{own:?}");
    assert!(own.exists());
    assert!(app.terminate(std::time::Duration::from_secs(30)), "fnlb stops cleanly");
    assert!(!own.exists(), "{own:?} is left after fnlb stopped");
}
