//! The `fnlb` command line as a client of the API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, free_addr, get};

fn fnlb(app: &TestApp, args: &[&str]) -> Output {
    app.cli().args(args).output().expect("fnlb runs")
}

fn ok(app: &TestApp, args: &[&str]) -> Value {
    let out = fnlb(app, args);
    assert!(out.status.success(), "fnlb {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("fnlb {args:?} printed no JSON ({e})"))
}

#[tokio::test]
async fn the_seed_workflow_from_the_command_line() {
    let app = TestApp::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb");
    let created =
        ok(&app, &["function", "create", "hello", "--code", example.to_str().unwrap(), "--runtime", "Python3.6"]);
    assert_eq!(created["Status"], "Active");
    let listed = ok(&app, &["function", "list"]);
    assert_eq!(listed["Functions"][0]["FunctionName"], "hello");
    let invoked = ok(&app, &["invoke", "hello", "--event", "{}"]);
    assert!(invoked["Result"]["RetMsg"].as_str().unwrap().contains("Hello CLB"));

    let (vip, port) = free_addr();
    let lb = ok(&app, &["clb", "create-lb", "--vip", &vip.to_string()]);
    let lb_id = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener = ok(&app, &["clb", "create-listener", &lb_id, "--port", &port.to_string()]);
    let listener_id = listener["ListenerIds"][0].as_str().unwrap().to_string();
    ok(&app, &["clb", "create-rule", &lb_id, &listener_id, "--url", "/"]);
    ok(&app, &["clb", "bind", &lb_id, &listener_id, "--url", "/", "--function", "hello"]);
    let triggers = ok(&app, &["triggers", "hello"]);
    let access_path = triggers["Triggers"][0]["AccessPath"].as_str().unwrap().to_string();
    assert_eq!(access_path, format!("http://{vip}:{port}/"));
    assert_eq!(get(&access_path).await.text(), "<html><body><h1>Hello CLB</h1></body></html>");

    ok(&app, &["clb", "unbind", &lb_id, &listener_id, "--url", "/", "--function", "hello"]);
    assert_eq!(ok(&app, &["triggers", "hello"])["Triggers"], serde_json::json!([]));
    ok(&app, &["function", "delete", "hello"]);
    ok(&app, &["clb", "delete-lb", &lb_id]);
}

#[tokio::test]
async fn invalid_input_is_one_clear_line_and_a_failure_exit() {
    let app = TestApp::start();
    let out = fnlb(&app, &["function", "get", "missing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ResourceNotFound.Function: "), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let out = fnlb(&app, &["function", "create", "x1", "--code", "/no/such/dir"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let out = Command::new(env!("CARGO_BIN_EXE_fnlb"))
        .args(["function", "list", "--endpoint", "http://127.0.0.1:1", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: cannot reach the API"), "{stderr}");
}

#[tokio::test]
async fn any_action_can_be_called_with_json_parameters() {
    let app = TestApp::start();
    let (vip, _) = free_addr();
    let created =
        ok(&app, &["call", "clb", "CreateLoadBalancer", &format!(r#"{{"LoadBalancerType":"OPEN","Vip":"{vip}"}}"#)]);
    let id = created["LoadBalancerIds"][0].as_str().unwrap();
    let described = ok(&app, &["call", "clb", "DescribeLoadBalancers", &format!(r#"{{"LoadBalancerIds":["{id}"]}}"#)]);
    assert_eq!(described["TotalCount"], 1);
    assert_eq!(ok(&app, &["call", "scf", "ListFunctions"])["TotalCount"], 0);
    let refused = fnlb(&app, &["call", "clb", "NoSuchAction"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidAction"), "{refused:?}");
    assert!(!fnlb(&app, &["call", "cvm", "DescribeInstances"]).status.success());
}

/// A command running in the background whose stdout lines are collected; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(command: &mut Command) -> Running {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("fnlb runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines, seen: Vec::new() }
    }

    /// Collects lines until `done` holds for those printed so far; panics at the deadline.
    fn wait_for(&mut self, what: &str, deadline: Duration, done: impl Fn(&[String]) -> bool) {
        let end = Instant::now() + deadline;
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("{what}: not printed within {deadline:?}; printed:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request ids of `fnlb logs` output, in the order printed (`== DATE TIME ID code …`).
fn logged_ids(lines: &[String]) -> Vec<String> {
    lines.iter().filter_map(|l| l.strip_prefix("== ")?.split_whitespace().nth(2).map(str::to_string)).collect()
}

#[tokio::test]
async fn logs_follow_shows_every_invocation_once_in_order() {
    let app = TestApp::start();
    app.create_fixture("followed", "echo", json!({})).await.unwrap();
    let invoke = || async {
        let invoked = app.scf("Invoke", json!({"FunctionName": "followed"})).await.unwrap();
        invoked["Result"]["FunctionRequestId"].as_str().unwrap().to_string()
    };
    let before = invoke().await;
    let mut follower = Running::spawn(app.cli().args(["logs", "followed", "--follow", "--limit", "5"]));
    follower
        .wait_for("the invocation made before", Duration::from_secs(30), |lines| logged_ids(lines).contains(&before));

    // Many more than --limit between two reads.
    let mut expected = vec![before];
    for _ in 0..30 {
        expected.push(invoke().await);
    }
    follower.wait_for("all 31 invocations", Duration::from_secs(60), |lines| {
        expected.iter().all(|id| logged_ids(lines).contains(id))
    });
    assert_eq!(logged_ids(&follower.seen), expected, "each invocation once, in order");

    // --limit 0 is no limit.
    let all = fnlb(&app, &["logs", "followed", "--limit", "0"]);
    let printed: Vec<String> = String::from_utf8_lossy(&all.stdout).lines().map(str::to_string).collect();
    assert_eq!(logged_ids(&printed), expected);
}

#[tokio::test]
async fn client_commands_find_the_node_by_the_variables_serve_uses() {
    let app = TestApp::start();
    let status = |env: &[(&str, String)]| {
        let mut command = app.cli();
        command.args(["status", "--json"]).env_remove("FNLB_ADMIN_URL").env_remove("FNLB_ADMIN_ADDR");
        let out = command.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
        assert!(out.status.success(), "{env:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // The admin listener: serve's FNLB_ADMIN_ADDR, an unspecified address reached on loopback.
    assert_eq!(status(&[("FNLB_ADMIN_ADDR", app.admin_addr.to_string())])["ready"], true);
    let any = format!("0.0.0.0:{}", app.admin_addr.port());
    assert_eq!(status(&[("FNLB_ADMIN_ADDR", any)])["ready"], true);
    // FNLB_ADMIN_URL still works, and wins.
    let url = format!("http://{}", app.admin_addr);
    assert_eq!(status(&[("FNLB_ADMIN_URL", url), ("FNLB_ADMIN_ADDR", "127.0.0.1:1".into())])["ready"], true);

    // The API: serve's FNLB_API_ADDR when FNLB_ENDPOINT is not set.
    let listed = app
        .cli()
        .args(["call", "scf", "ListFunctions"])
        .env_remove("FNLB_ENDPOINT")
        .env("FNLB_API_ADDR", app.api_addr.to_string())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let refused = app
        .cli()
        .args(["call", "scf", "ListFunctions"])
        .env_remove("FNLB_ENDPOINT")
        .env("FNLB_API_ADDR", "nowhere")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.starts_with("error: FNLB_API_ADDR: `nowhere` is not an address"), "{stderr}");
}
