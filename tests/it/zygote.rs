//! Python instances forked from the runtime's one zygote: each takes on its function (code, environment, `/tmp`,
//! processes, user) before it runs a line of it, new code is run as soon as it is deployed, and a dead zygote is
//! replaced without failing a request.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, probe, zygote_processes};

fn package(body: &str) -> String {
    let code = format!("def main_handler(event, context):\n    return {body:?}\n");
    let zip = fnlb::functions::zip_files(&[("index.py", code.as_bytes())]);
    base64::engine::general_purpose::STANDARD.encode(zip)
}

async fn invoke_text(app: &TestApp, function: &str) -> String {
    let invoked = app.scf("Invoke", json!({"FunctionName": function})).await.unwrap();
    serde_json::from_str::<Value>(invoked["Result"]["RetMsg"].as_str().unwrap()).unwrap().as_str().unwrap().to_string()
}

#[tokio::test]
async fn new_code_runs_from_the_first_request_and_after_every_update() {
    let app = TestApp::start();
    let created = json!({"FunctionName": "fresh", "Runtime": "Python3.9", "Handler": "index.main_handler",
        "Code": {"ZipFile": package("one")}});
    app.scf("CreateFunction", created).await.unwrap();
    assert_eq!(invoke_text(&app, "fresh").await, "one", "the first request runs the code just deployed");
    for body in ["two", "three"] {
        let update = json!({"FunctionName": "fresh", "ZipFile": package(body)});
        app.scf("UpdateFunctionCode", update).await.unwrap();
        // Once the update is acknowledged, no request runs the old code (warm instances included).
        for _ in 0..10 {
            assert_eq!(invoke_text(&app, "fresh").await, body);
        }
    }
}

#[tokio::test]
async fn two_functions_from_one_zygote_see_only_their_own_code_environment_tmp_and_processes() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--sandbox", "bubblewrap"]);
    let mut seen = Vec::new();
    for (name, secret) in [("fork-a", "alpha"), ("fork-b", "beta")] {
        let created = json!({"Environment": {"Variables": [{"Key": "SECRET", "Value": secret}]}});
        app.create_fixture(name, "hostile", created).await.unwrap();
        let probes = json!({"write_tmp": [name, 1], "list_tmp": true, "list": ["/var/user", "/var/code"],
            "environ": ["SECRET", "SCF_FUNCTIONNAME", "FNLB_CODE_ROOT"], "processes": true});
        seen.push(probe(&app, name, probes).await);
    }
    for (seen, (name, secret)) in seen.iter().zip([("fork-a", "alpha"), ("fork-b", "beta")]) {
        assert_eq!(seen["env SECRET"], secret, "{seen}");
        assert_eq!(seen["env SCF_FUNCTIONNAME"], name, "{seen}");
        assert_eq!(seen["env FNLB_CODE_ROOT"], Value::Null, "nothing of the zygote's environment: {seen}");
        assert_eq!(seen["list /var/user"], json!(["index.py"]), "its own package: {seen}");
        assert!(seen["list /var/code"].as_array().is_none_or(|a| a.is_empty()), "no other package: {seen}");
        assert_eq!(seen["tmp"], json!([name]), "its own /tmp: {seen}");
        if rustix::process::geteuid().is_root() {
            let uid = seen["uid"].to_string();
            for (pid, owner) in seen["processes"].as_array().unwrap().iter().map(|p| (&p[0], &p[1])) {
                assert_eq!(owner.as_str(), Some(uid.as_str()), "process {pid} is not the function's: {seen}");
            }
        }
    }
}

#[tokio::test]
async fn a_dead_zygote_is_replaced_and_the_request_does_not_fail() {
    let app = TestApp::start();
    app.create_fixture("before", "echo", json!({})).await.unwrap();
    app.scf("Invoke", json!({"FunctionName": "before"})).await.unwrap();
    let zygote = eventually("the zygote runs", Duration::from_secs(10), || async { zygote_of(app.pid()) }).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(zygote as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // A cold start after the kill: a new function.
    app.create_fixture("after", "echo", json!({})).await.unwrap();
    let invoked = app.scf("Invoke", json!({"FunctionName": "after"})).await.unwrap();
    assert_eq!(invoked["Result"]["InvokeResult"], 0, "{invoked}");
    let replaced = eventually("a new zygote runs", Duration::from_secs(10), || async { zygote_of(app.pid()) }).await;
    assert_ne!(replaced, zygote);
}

fn zygote_of(fnlb: u32) -> Option<u32> {
    zygote_processes(fnlb).0.first().copied()
}

// === Node.js spares ===
//
// The zygote's keepers start Node.js interpreters ahead of time; each takes on whichever Node.js function a request
// needs (docs/decisions/0013-node-spares.md). They exist where fnlb runs as root in a sandbox, as CI does.

fn node_package(body: &str) -> String {
    let code = format!("exports.main_handler = async () => {body:?};\n");
    let zip = fnlb::functions::zip_files(&[("index.js", code.as_bytes())]);
    base64::engine::general_purpose::STANDARD.encode(zip)
}

fn runs_as_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: Node.js spares need fnlb to run as root");
    }
    root
}

/// The PID namespace a process runs in.
fn pid_namespace(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap_or_default()
}

/// fnlb's Node.js spares waiting for a function, each with its keeper: connected to fnlb (which removes a spare's
/// socket file once it accepted it).
fn node_spares(fnlb: u32) -> Vec<(u32, u32)> {
    let (zygotes, _) = zygote_processes(fnlb);
    let mut spares = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !environ.split(|b| *b == 0).any(|v| v == b"FNLB_SPARE=1") {
            continue;
        }
        let socket = environ.split(|b| *b == 0).find_map(|v| v.strip_prefix(b"FNLB_RUNTIME_SOCKET=".as_slice()));
        let socket = String::from_utf8_lossy(socket.unwrap_or_default());
        if socket.is_empty() || std::path::Path::new(&format!("/proc/{pid}/root{socket}")).exists() {
            continue;
        }
        let keeper = parent(pid);
        if keeper.and_then(parent).is_some_and(|z| zygotes.contains(&z)) {
            spares.push((pid, keeper.unwrap()));
        }
    }
    spares
}

/// Waits until fnlb has its Node.js spares (without one at hand, a Node.js instance starts an interpreter of its own).
async fn spares_ready(app: &TestApp) {
    eventually("Node.js spares wait", Duration::from_secs(20), || async {
        (node_spares(app.pid()).len() == fnlb::functions::DEFAULT_NODE_SPARES).then_some(())
    })
    .await;
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

async fn create_node(app: &TestApp, name: &str, fixture: &str, extra: Value) {
    let mut params = json!({"Runtime": "Nodejs18.15"});
    params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.create_fixture(name, fixture, params).await.unwrap();
}

#[tokio::test]
async fn a_node_function_runs_its_code_from_the_first_request_and_after_every_update_from_a_spare() {
    if !runs_as_root() {
        return;
    }
    let app = TestApp::start();
    spares_ready(&app).await;
    let created = json!({"FunctionName": "node-fresh", "Runtime": "Nodejs18.15", "Handler": "index.main_handler",
        "Code": {"ZipFile": node_package("one")}});
    app.scf("CreateFunction", created).await.unwrap();
    assert_eq!(invoke_text(&app, "node-fresh").await, "one", "the first request runs the code just deployed");
    // It was a spare: it runs in the zygote's PID namespace, not in a sandbox of its own.
    let zygote = zygote_of(app.pid()).expect("the zygote runs");
    let instance = crate::harness::instance_processes("node-fresh");
    assert_eq!(instance.len(), 1, "{instance:?}");
    assert_eq!(pid_namespace(instance[0]), pid_namespace(zygote), "the instance was taken from a spare");
    for body in ["two", "three"] {
        let update = json!({"FunctionName": "node-fresh", "ZipFile": node_package(body)});
        app.scf("UpdateFunctionCode", update).await.unwrap();
        for _ in 0..10 {
            assert_eq!(invoke_text(&app, "node-fresh").await, body, "no request runs the old code");
        }
    }
}

#[tokio::test]
async fn a_node_cold_start_that_finds_no_spare_ready_takes_the_one_being_made() {
    if !runs_as_root() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--node-spares", "1"]);
    eventually("the Node.js spare waits", Duration::from_secs(20), || async {
        (node_spares(app.pid()).len() == 1).then_some(())
    })
    .await;
    for name in ["node-first", "node-second"] {
        let created = json!({"FunctionName": name, "Runtime": "Nodejs18.15", "Handler": "index.main_handler",
            "Code": {"ZipFile": node_package(name)}});
        app.scf("CreateFunction", created).await.unwrap();
    }
    // The first takes the one spare, and another is made; the second comes at once and takes that one rather than
    // starting an interpreter of its own.
    assert_eq!(invoke_text(&app, "node-first").await, "node-first");
    assert_eq!(invoke_text(&app, "node-second").await, "node-second");
    let zygote = zygote_of(app.pid()).expect("the zygote runs");
    for name in ["node-first", "node-second"] {
        let instance = crate::harness::instance_processes(name);
        assert_eq!(instance.len(), 1, "{name}: {instance:?}");
        assert_eq!(pid_namespace(instance[0]), pid_namespace(zygote), "{name} was taken from a spare");
    }
}

#[tokio::test]
async fn two_node_functions_from_spares_see_only_their_own_code_environment_tmp_and_processes() {
    if !runs_as_root() {
        return;
    }
    let app = TestApp::start();
    let functions = [("node-a", "alpha"), ("node-b", "beta")];
    let mut seen = Vec::new();
    for (name, secret) in functions {
        spares_ready(&app).await;
        create_node(
            &app,
            name,
            "node_probe",
            json!({"Environment": {"Variables": [{"Key": "SECRET", "Value": secret}]}}),
        )
        .await;
        let probes = json!({"write_tmp": [name, 1], "list_tmp": true, "list": ["/var/user", "/var/code", "/var/run/fnlb"],
            "environ": ["SECRET", "SCF_FUNCTIONNAME", "FNLB_SPARE", "FNLB_RUNTIME_SOCKET", "NODE_PATH"],
            "processes": true, "shell": "id -u; grep '^Seccomp:' /proc/self/status"});
        seen.push(probe(&app, name, probes).await);
    }
    let zygote = zygote_of(app.pid()).expect("the zygote runs");
    for (seen, (name, secret)) in seen.iter().zip(functions) {
        assert_eq!(seen["env SECRET"], secret, "{seen}");
        assert_eq!(seen["env SCF_FUNCTIONNAME"], name, "{seen}");
        assert_eq!(seen["env FNLB_SPARE"], Value::Null, "nothing of the spare's environment: {seen}");
        assert_eq!(seen["env FNLB_RUNTIME_SOCKET"], Value::Null, "{seen}");
        assert!(seen["env NODE_PATH"].as_str().unwrap().starts_with("/var/user:"), "{seen}");
        // What the host sees of it (`/proc/<pid>/environ`, `ps`) is the function's environment too.
        let pids = crate::harness::instance_processes(name);
        assert_eq!(pids.len(), 1, "{name}: {pids:?}");
        let environ = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
        let block: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        assert!(block.contains(&format!("SECRET={secret}").as_bytes()), "{name}'s environment block");
        assert!(!block.iter().any(|v| v.starts_with(b"FNLB_")), "{name}: nothing of the spare's environment is shown");
        assert_eq!(seen["list /var/user"], json!(["index.js"]), "its own package: {seen}");
        assert!(seen["list /var/code"].as_array().is_none_or(|a| a.is_empty()), "no other package: {seen}");
        assert_eq!(seen["tmp"], json!([name]), "its own /tmp: {seen}");
        assert_eq!(seen["cwd"], "/var/user", "{seen}");
        let uid = seen["uid"].as_u64().unwrap();
        assert!(uid >= u64::from(fnlb::functions::sandbox::DEFAULT_FUNCTION_UID_BASE), "its own user: {seen}");
        assert_eq!(seen["gid"], seen["uid"], "{seen}");
        assert_eq!(seen["capabilities"], "0000000000000000", "no capability is left: {seen}");
        assert_eq!(seen["seccomp"], "2", "under the filter: {seen}");
        assert_eq!(seen["shell"], format!("{uid}\nSeccomp:\t2\n"), "its processes too: {seen}");
        for (pid, owner) in seen["processes"].as_array().unwrap().iter().map(|p| (&p[0], &p[1])) {
            assert_eq!(owner.as_str(), Some(uid.to_string().as_str()), "process {pid} is not the function's: {seen}");
        }
    }
    assert_ne!(seen[0]["uid"], seen[1]["uid"], "two functions, two users");
    let a_pid = &seen[0]["pid"];
    assert!(
        !seen[1]["processes"].as_array().unwrap().iter().any(|p| &p[0] == a_pid),
        "node-b sees node-a: {}",
        seen[1]
    );
    for name in ["node-a", "node-b"] {
        let pids = crate::harness::instance_processes(name);
        assert!(pids.iter().all(|pid| pid_namespace(*pid) == pid_namespace(zygote)), "{name} came from a spare");
    }
}

#[tokio::test]
async fn a_node_instance_from_a_spare_is_held_to_its_memory_and_process_limits() {
    if !runs_as_root() {
        return;
    }
    let app = TestApp::start();
    spares_ready(&app).await;
    create_node(&app, "node-limits", "node_probe", json!({"MemorySize": 128, "Timeout": 30})).await;
    let seen = probe(&app, "node-limits", json!({"shell": "sleep 0.2 & cat /proc/self/cgroup; wait"})).await;
    let pids = crate::harness::instance_processes("node-limits");
    assert_eq!(pids.len(), 1, "{pids:?}");
    let memory = crate::harness::cgroup_dir(pids[0], "memory");
    assert!(memory.file_name().unwrap().to_string_lossy().starts_with("instance-"), "{memory:?}");
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(memory.join("memory.max")))
        .unwrap();
    assert_eq!(limit.trim(), (128u64 << 20).to_string(), "the function's memory limit");
    let pids_dir = crate::harness::cgroup_dir(pids[0], "pids");
    assert_eq!(pids_dir.file_name(), memory.file_name(), "the instance's own pids cgroup: {pids_dir:?}");
    let max = std::fs::read_to_string(pids_dir.join("pids.max")).unwrap();
    assert_eq!(max.trim(), fnlb::functions::limits::DEFAULT_MAX_PROCESSES.to_string(), "{pids_dir:?}");
    // What the function runs is born inside the instance's cgroup.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap();
    let shell = seen["shell"].as_str().unwrap();
    // (Seen from inside the sandbox, the path is relative to its cgroup namespace: the last part is the instance.)
    let memory_line = |text: &str| {
        text.lines().find(|l| l.contains(":memory:")).and_then(|l| l.rsplit('/').next()).map(str::to_string)
    };
    assert_eq!(memory_line(shell), memory_line(&own), "{shell}");
    // Past its memory, the instance is stopped (434) and the next request gets a fresh one.
    let event = json!({"probes": {"hog_mb": 300}});
    let invoked = app.scf("Invoke", json!({"FunctionName": "node-limits", "ClientContext": event.to_string()})).await;
    let invoked = invoked.unwrap();
    assert!(invoked["Result"]["ErrMsg"].as_str().unwrap_or_default().contains("434"), "{invoked}");
    let seen = probe(&app, "node-limits", json!({})).await;
    assert!(seen["pid"].is_u64(), "{seen}");
}

#[tokio::test]
async fn a_dead_node_spare_keeper_or_zygote_does_not_fail_the_next_request() {
    if !runs_as_root() {
        return;
    }
    let app = TestApp::start();
    let spares = eventually("Node.js spares wait", Duration::from_secs(20), || async {
        let spares = node_spares(app.pid());
        (spares.len() == 2).then_some(spares)
    })
    .await;
    // One spare loses its keeper, the other is killed itself.
    kill(spares[0].1);
    kill(spares[1].0);
    create_node(&app, "node-after-spares", "node_hello", json!({})).await;
    let invoked = app.scf("Invoke", json!({"FunctionName": "node-after-spares"})).await.unwrap();
    assert_eq!(invoked["Result"]["InvokeResult"], 0, "{invoked}");
    // Spares are made again.
    eventually("new Node.js spares wait", Duration::from_secs(20), || async {
        let now = node_spares(app.pid());
        (now.len() == 2 && now.iter().all(|s| !spares.contains(s))).then_some(())
    })
    .await;
    // The zygote dies (and every spare with its sandbox).
    let zygote = zygote_of(app.pid()).expect("the zygote runs");
    kill(zygote);
    create_node(&app, "node-after-zygote", "node_hello", json!({})).await;
    let invoked = app.scf("Invoke", json!({"FunctionName": "node-after-zygote"})).await.unwrap();
    assert_eq!(invoked["Result"]["InvokeResult"], 0, "{invoked}");
}
