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
    let code = example.to_str().unwrap();
    let created = ok(&app, &["function", "create", "hello", "--code", code, "--runtime", "Python3.6", "--json"]);
    assert_eq!(created["Status"], "Active");
    let listed = ok(&app, &["function", "list", "--json"]);
    assert_eq!(listed["Functions"][0]["FunctionName"], "hello");
    let invoked = ok(&app, &["invoke", "hello", "--event", "{}", "--json"]);
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
    ok(&app, &["function", "delete", "hello", "--json"]);
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

/// What a command printed on stdout; panics when it fails.
fn printed(app: &TestApp, args: &[&str]) -> String {
    let out = fnlb(app, args);
    assert!(out.status.success(), "fnlb {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a command said on stderr; panics when it succeeds.
fn refused(app: &TestApp, args: &[&str]) -> String {
    let out = fnlb(app, args);
    assert!(!out.status.success(), "fnlb {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn functions_and_invocations_read_as_summaries_and_one_source_file_is_code() {
    let app = TestApp::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("index.py");
    std::fs::write(&source, "def main_handler(event, context):\n    print('line one')\n    print('line two')\n    return {'greeting': 'hi'}\n").unwrap();
    let source = source.to_str().unwrap();

    // The valid values are in --help, and a wrong one is refused here, naming them.
    let help = printed(&app, &["function", "create", "--help"]);
    for runtime in ["Python3.6", "Python3.10", "Nodejs18.15", "CustomRuntime"] {
        assert!(help.contains(runtime), "{runtime} in {help}");
    }
    assert!(printed(&app, &["clb", "create-listener", "--help"]).contains("HTTP, HTTPS, TCP, TCP_SSL, UDP"));
    let wrong = refused(&app, &["function", "create", "f1", "--code", source, "--runtime", "python3.9"]);
    assert!(wrong.contains("python3.9") && wrong.contains("Python3.9, Python3.10, Nodejs10.15"), "{wrong}");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not code").unwrap();
    let wrong = refused(&app, &["function", "create", "f1", "--code", notes.to_str().unwrap()]);
    assert!(wrong.contains("neither a zip nor a source file") && wrong.contains("give a directory or a .zip"));
    assert_eq!(app.scf("ListFunctions", json!({})).await.unwrap()["TotalCount"], 0, "nothing was created");

    // One source file is the code: packed alone, at the root.
    let created = printed(&app, &["function", "create", "single", "--code", source]);
    assert!(created.starts_with("Function default/single (Active)\n"), "{created}");
    assert!(created.contains("runtime      Python3.9, handler index.main_handler"), "{created}");
    assert!(created.contains("memory       128 MB, timeout 3 s"), "{created}");
    let table = printed(&app, &["function", "list"]);
    assert!(table.starts_with("NAME") && table.lines().nth(1).unwrap().starts_with("single  Python3.9"), "{table}");

    // An invocation: how it went, the return value, and the log as lines.
    let invoked = printed(&app, &["invoke", "single", "--log"]);
    assert!(invoked.starts_with("Succeeded in "), "{invoked}");
    assert!(invoked.contains("Returned:\n{\n  \"greeting\": \"hi\"\n}\n"), "{invoked}");
    let log: Vec<&str> = invoked.split("Log:\n").nth(1).unwrap_or_default().lines().collect();
    assert!(log.first().is_some_and(|l| l.starts_with("START RequestId:")), "{invoked}");
    assert!(log.contains(&"line one") && log.contains(&"line two"), "{invoked}");

    // --json is the API's answer.
    let got = ok(&app, &["function", "get", "single", "--json"]);
    assert_eq!(got["Handler"], "index.main_handler");
    assert_eq!(printed(&app, &["function", "delete", "single"]), "Deleted function default/single.\n");
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

#[tokio::test]
async fn a_reader_that_goes_away_ends_a_command_quietly() {
    let app = TestApp::start();
    app.create_fixture("piped", "echo", json!({})).await.unwrap();
    for args in [&["function", "list"][..], &["function", "get", "piped", "--json"], &["call", "scf", "ListFunctions"]]
    {
        let mut child = app.cli().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // The reader is gone before the command writes a byte.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.is_empty(), "{args:?}: {:?} {stderr}", output.status);
    }
}
