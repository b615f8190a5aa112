//! Functions written to escape: they reach neither the host's network nor other instances, keep their `/tmp` to
//! themselves, run under the system-call filter as a user of their own, and get processor time in proportion to
//! their memory. (These need fnlb to run as root, as CI does; elsewhere they say so and pass.)

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, cgroup_dir, eventually, instance_processes, probe};

fn is_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: isolation needs fnlb to run as root");
    }
    root
}

fn denied(seen: &Value, what: &str) {
    let outcome = seen[what].as_str().unwrap_or_else(|| panic!("{what} not probed: {seen}"));
    assert!(outcome.starts_with("denied"), "{what}: {outcome} ({seen})");
}

/// An address of this host other than loopback, if it has one.
fn host_address() -> Option<Ipv4Addr> {
    let out = std::process::Command::new("ip").args(["-o", "-4", "addr", "show", "scope", "global"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().skip_while(|w| *w != "inet").nth(1)?.split('/').next()?.parse().ok()
}

#[tokio::test]
async fn functions_reach_neither_the_host_nor_its_ports() {
    if !is_root() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    // A service on the host's loopback, and one on every address of the host.
    let loopback = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let everywhere = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let everywhere_port = everywhere.local_addr().unwrap().port();
    let app = TestApp::start_in(&temp.path().join("data"), &["--function-egress", "allow"]);
    app.create_fixture("hostile-net", "hostile", json!({})).await.unwrap();
    let port_taken = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let bound_port = port_taken.local_addr().unwrap().port();
    drop(port_taken);

    let mut targets = json!({
        "loopback_service": loopback.local_addr().unwrap().to_string(),
        "api": app.api_addr.to_string(),
        "admin": app.admin_addr.to_string(),
    });
    if let Some(host) = host_address() {
        targets["host_address"] = json!(format!("{host}:{everywhere_port}"));
    }
    let seen =
        probe(&app, "hostile-net", json!({"connect": targets, "gateway_port": everywhere_port, "bind": bound_port}))
            .await;
    for what in ["connect_loopback_service", "connect_api", "connect_admin", "connect_gateway"] {
        denied(&seen, what);
    }
    if seen.get("connect_host_address").is_some() {
        denied(&seen, "connect_host_address");
    }
    // The port the function listens on is its network's: the host's is still free.
    assert_eq!(seen["bind"], "allowed", "{seen}");
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, bound_port)).expect("the function's port is not the host's");
}

#[tokio::test]
async fn without_egress_functions_have_a_loopback_only() {
    if !is_root() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let loopback = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--function-egress", "none"]);
    app.create_fixture("hostile-noegress", "hostile", json!({})).await.unwrap();
    let targets = json!({"loopback_service": loopback.local_addr().unwrap().to_string(), "admin": app.admin_addr});
    let seen = probe(&app, "hostile-noegress", json!({"connect": targets})).await;
    assert_eq!(seen["gateway"], Value::Null, "no route out: {seen}");
    denied(&seen, "connect_loopback_service");
    denied(&seen, "connect_admin");
}

#[tokio::test]
async fn instances_cannot_trace_or_make_namespaces_and_each_function_has_its_user() {
    if !is_root() {
        return;
    }
    // Forked from a zygote (Python's default) and started on their own: both confined the same way.
    for zygote in ["true", "false"] {
        let temp = tempfile::tempdir().unwrap();
        let app = TestApp::start_in(&temp.path().join("data"), &["--sandbox", "bubblewrap", "--zygote", zygote]);
        let mut uids = Vec::new();
        for function in [format!("hostile-a-{zygote}"), format!("hostile-b-{zygote}")] {
            app.create_fixture(&function, "hostile", json!({})).await.unwrap();
            let seen = probe(&app, &function, json!({"namespaces": true, "ptrace": true})).await;
            assert_eq!(seen["seccomp"], "2", "the instance runs under the filter: {seen}");
            let threads = seen["seccomp_threads"].as_array().unwrap();
            assert!(threads.iter().all(|t| t == "2"), "every thread runs under the filter: {seen}");
            for what in ["unshare_user", "unshare_mount", "mount", "ptrace_parent", "ptrace_pid_1"] {
                denied(&seen, what);
            }
            let uid = seen["uid"].as_u64().unwrap();
            assert!(uid >= u64::from(fnlb::functions::sandbox::DEFAULT_FUNCTION_UID_BASE), "uid {uid}");
            uids.push(uid);
        }
        assert_ne!(uids[0], uids[1], "two functions run as two users (zygote {zygote})");
    }
}

/// The host's pid of the instance of `function` that saw itself as `inner` (its sandbox's PID namespace).
fn host_pid(function: &str, inner: u64) -> u32 {
    let found = instance_processes(function).into_iter().find(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let ns_pids = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
        ns_pids.split_whitespace().last().and_then(|p| p.parse::<u64>().ok()) == Some(inner)
    });
    found.unwrap_or_else(|| panic!("no process of {function} is {inner} in its sandbox"))
}

fn read_number(dir: &Path, files: &[&str]) -> u64 {
    let (file, text) = files
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok().map(|t| (f, t)))
        .unwrap_or_else(|| panic!("none of {files:?} in {}", dir.display()));
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{file}: {text}"))
}

#[tokio::test]
async fn each_instance_has_its_own_tmp_charged_to_its_memory() {
    if !is_root() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--sandbox", "bubblewrap"]);
    app.create_fixture("hostile-tmp", "hostile", json!({"MemorySize": 256, "Timeout": 30})).await.unwrap();
    // Two instances at once (each invocation holds its instance for a while): each writes and lists its /tmp.
    let first = probe(&app, "hostile-tmp", json!({"write_tmp": ["first", 100], "list_tmp": true, "sleep": 3}));
    let second = async {
        // The first instance is busy (its 100 MB are in its /tmp) before the second starts.
        let pid = eventually("the first instance writes its /tmp", Duration::from_secs(20), || async {
            instance_processes("hostile-tmp").into_iter().find(|pid| {
                read_number(&cgroup_dir(*pid, "memory"), &["memory.usage_in_bytes", "memory.current"]) > 100 << 20
            })
        })
        .await;
        let seen = probe(&app, "hostile-tmp", json!({"write_tmp": ["second", 1], "list_tmp": true})).await;
        (pid, seen)
    };
    let (first, (_, second)) = tokio::join!(first, second);
    assert_eq!(first["tmp"], json!(["first"]), "{first}");
    assert_eq!(second["tmp"], json!(["second"]), "another instance's /tmp: {second}");
    assert_ne!(first["pid"], second["pid"]);

    // Past the memory limit, /tmp is memory: the instance is stopped (434), the host keeps nothing.
    app.create_fixture("hostile-tmp-small", "hostile", json!({"MemorySize": 128})).await.unwrap();
    let event = json!({"probes": {"write_tmp": ["big", 200]}});
    let invoked =
        app.scf("Invoke", json!({"FunctionName": "hostile-tmp-small", "ClientContext": event.to_string()})).await;
    let invoked = invoked.unwrap();
    assert!(invoked["Result"]["ErrMsg"].as_str().unwrap().contains("\"statusCode\":434"), "{invoked}");
    // The next instance starts with an empty /tmp.
    let seen = probe(&app, "hostile-tmp-small", json!({"list_tmp": true})).await;
    assert_eq!(seen["tmp"], json!([]), "{seen}");
}

#[tokio::test]
async fn an_instance_gets_processor_time_in_proportion_to_its_memory() {
    if !is_root() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--function-mb-per-cpu", "128"]);
    // 64 MB: half a processor, whatever the processes the instance runs.
    app.create_fixture("hostile-cpu", "hostile", json!({"MemorySize": 64})).await.unwrap();
    let seen = probe(&app, "hostile-cpu", json!({"spin": [3, 1.0]})).await;
    let pid = host_pid("hostile-cpu", seen["pid"].as_u64().unwrap());
    let dir = cgroup_dir(pid, "cpu");
    let quota = match std::fs::read_to_string(dir.join("cpu.max")) {
        Ok(max) => max.split_whitespace().next().unwrap().parse::<u64>().unwrap(),
        Err(_) => read_number(&dir, &["cpu.cfs_quota_us"]),
    };
    assert_eq!(quota, 50_000, "half of each 100 ms period");
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).unwrap();
    let throttled = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("cpu.stat: {stat}"));
    assert!(throttled > 0, "three busy processes were held to half a processor: {stat}");
}
