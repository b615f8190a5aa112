//! `fnlb apply`: a stack file made to exist through the API, idempotently; edits change only what differs;
//! `--prune` removes what the file no longer names; `--dry-run` changes nothing; errors name the file, the
//! resource and the field.

use std::path::Path;
use std::process::Output;

use bytes::Bytes;
use serde_json::json;

use crate::harness::{TestApp, free_addr, request};
use crate::servers::Backend;

fn apply(app: &TestApp, file: &Path, extra: &[&str]) -> Output {
    app.cli().args(["apply", "-f"]).arg(file).args(extra).output().expect("fnlb runs")
}

/// Applies and returns the printed plan; panics when apply fails.
fn applied(app: &TestApp, file: &Path, extra: &[&str]) -> String {
    let out = apply(app, file, extra);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "apply failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The plan's lines (`+ …`, `~ …`, `- …`).
fn steps(output: &str) -> Vec<String> {
    let plan = output.split("  done:").next().unwrap_or_default();
    plan.lines().map(str::trim).filter(|l| l.starts_with(['+', '~', '-'])).map(str::to_string).collect()
}

const HANDLER: &str = r#"
def main_handler(event, context):
    return {"isBase64Encoded": False, "statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "VERSION"}
"#;

#[tokio::test]
async fn a_stack_is_applied_idempotently_and_edits_change_only_what_differs() {
    let app = TestApp::start();
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir(&code).unwrap();
    std::fs::write(code.join("index.py"), HANDLER.replace("VERSION", "one")).unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (vip, port) = free_addr();
    let redirecting = crate::harness::free_port(vip);
    let stack = |memory: u32, targets: &str, extra_rule: bool, keepalive: bool| {
        let extra = if extra_rule { "\n          - {domain: extra.test, url: /, function: web}" } else { "" };
        format!(
            "name: apply-test
functions:
  - name: web
    code: code
    memory: {memory}
    environment: {{GREETING: hello}}
loadBalancers:
  - name: apply-lb
    vip: {vip}
    listeners:
      - protocol: HTTP
        port: {redirecting}
        rules:
          - {{domain: fn.test, url: /, redirect: {{protocol: HTTP, port: {port}, code: 302}}}}
      - protocol: HTTP
        port: {port}
        keepalive: {keepalive}
        rules:
          - domain: fn.test
            url: /
            function: web
          - domain: servers.test
            url: /
            targets: [{targets}]
            fallback: web
            healthCheck: {{enabled: false}}{extra}
"
        )
    };
    let file = dir.path().join("stack.yaml");
    let a_target = format!("{{ip: 127.0.0.1, port: {}, weight: 10}}", a.addr.port());
    let b_target = format!("{{ip: 127.0.0.1, port: {}, weight: 30}}", b.addr.port());
    std::fs::write(&file, stack(128, &a_target, true, false)).unwrap();

    // --dry-run prints the plan and changes nothing.
    let planned = applied(&app, &file, &["--dry-run"]);
    assert_eq!(steps(&planned).len(), 13, "{planned}");
    assert!(planned.contains("13 to add, 0 to change, 0 to remove."), "{planned}");
    let listed = app.scf("ListFunctions", json!({})).await.unwrap();
    assert_eq!(listed["TotalCount"], 0, "a dry run creates nothing");

    let out = apply(&app, &file, &[]);
    let (first, progress) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(first.contains("Applied 13 changes"), "{first}{progress}");
    // Each rule's access path, with the Host it needs.
    let paths = first.split("Access paths:\n").nth(1).unwrap_or_default();
    let paths: Vec<&str> = paths.lines().collect();
    assert_eq!(
        paths,
        [
            format!("  http://{vip}:{redirecting}/ (Host: fn.test) → redirect to HTTP {port}"),
            format!("  http://{vip}:{port}/ (Host: fn.test) → function default/web:$LATEST"),
            format!(
                "  http://{vip}:{port}/ (Host: servers.test) → 127.0.0.1:{}, fallback function default/web:$LATEST",
                a.addr.port()
            ),
            format!("  http://{vip}:{port}/ (Host: extra.test) → function default/web:$LATEST"),
        ],
        "{first}"
    );
    // The long steps say what they do: packing the code, then uploading it.
    assert!(progress.contains("packed function web from") && progress.contains(" B)"), "{progress}");
    assert!(progress.contains("uploading the code of function default/web"), "{progress}");
    let get = |host: &'static str| {
        let url = format!("http://{vip}:{port}/");
        async move { request("GET", &url, &[("Host", host)], Bytes::new()).await }
    };
    assert_eq!(get("fn.test").await.text(), "one");
    assert_eq!(get("servers.test").await.json()["server"], "a");
    let redirected =
        request("GET", &format!("http://{vip}:{redirecting}/x"), &[("Host", "fn.test")], Bytes::new()).await;
    assert_eq!((redirected.status, redirected.header("location")), (302, format!("http://fn.test:{port}/x").as_str()));
    let function = app.scf("GetFunction", json!({"FunctionName": "web"})).await.unwrap();
    assert_eq!(function["Tags"], json!([{"Key": "fnlb:stack", "Value": "apply-test"}]));

    // The same file again: nothing to do.
    let again = applied(&app, &file, &[]);
    assert!(again.contains("No changes"), "{again}");

    // An edited file: new code, more memory, server connections kept alive, another target; only those change.
    // A rule left out stays.
    std::fs::write(code.join("index.py"), HANDLER.replace("VERSION", "two")).unwrap();
    std::fs::write(&file, stack(256, &format!("{a_target}, {b_target}"), false, true)).unwrap();
    let edited = applied(&app, &file, &[]);
    let changed = steps(&edited);
    assert_eq!(changed.len(), 4, "{edited}");
    assert!(changed[0].starts_with("~ function default/web: code"), "{changed:?}");
    assert!(changed[1].contains("memory 128 → 256 MB"), "{changed:?}");
    assert_eq!(changed[2], format!("~ listener HTTP {port} of apply-lb: keepalive true"), "{changed:?}");
    assert!(changed[3].starts_with("+ targets 127.0.0.1:"), "{changed:?}");
    assert_eq!(get("fn.test").await.text(), "two");
    let listeners = app.clb("DescribeListeners", json!({"LoadBalancerId": lb_id(&app).await})).await.unwrap();
    let kept = listeners["Listeners"].as_array().unwrap().iter().find(|l| l["Port"] == json!(port)).unwrap();
    assert_eq!(kept["KeepaliveEnable"], 1, "{kept}");
    let described = app.clb("DescribeTargets", json!({"LoadBalancerId": lb_id(&app).await})).await.unwrap();
    let listener = described["Listeners"].as_array().unwrap().iter().find(|l| l["Port"] == json!(port)).unwrap();
    assert_eq!(listener["Rules"].as_array().unwrap().len(), 3, "without --prune the rule stays");

    // --prune removes what the file no longer names: the rule, then (the file emptied) everything tagged.
    let pruned = applied(&app, &file, &["--prune"]);
    assert_eq!(steps(&pruned), vec!["- rule extra.test/ on HTTP ".to_string() + &format!("{port} of apply-lb")]);
    assert!(pruned.contains("Applied 1 change in "), "{pruned}");
    std::fs::write(&file, "name: apply-test\n").unwrap();
    let emptied = applied(&app, &file, &["--prune"]);
    assert!(emptied.contains("0 to add, 0 to change, 2 to remove."), "{emptied}");
    assert_eq!(app.scf("ListFunctions", json!({})).await.unwrap()["TotalCount"], 0);
    let lbs = app.clb("DescribeLoadBalancers", json!({})).await.unwrap();
    assert_eq!(lbs["TotalCount"], 0, "{lbs}");
}

async fn lb_id(app: &TestApp) -> String {
    let lbs = app.clb("DescribeLoadBalancers", json!({})).await.unwrap();
    lbs["LoadBalancerSet"][0]["LoadBalancerId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn errors_name_the_file_the_resource_and_the_field() {
    let app = TestApp::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let failure = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = apply(&app, &file, &[]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let name = file.display().to_string();

    let wrong_type =
        failure("name: s\nloadBalancers:\n  - name: lb\n    listeners:\n      - {protocol: HTTP, port: eighty}\n");
    assert!(wrong_type.contains(&name) && wrong_type.contains("loadBalancers[0].listeners[0].port"), "{wrong_type}");
    let unknown = failure("name: s\nfunctions:\n  - {name: f, code: ., memroy: 128}\n");
    assert!(unknown.contains(&format!("{name}: functions[0].memroy: unknown field `memroy`")), "{unknown}");
    assert_eq!(unknown.matches("functions[0]").count(), 1, "the place is named once: {unknown}");
    let no_code = failure("name: s\nfunctions:\n  - {name: f1, code: missing}\n");
    assert!(no_code.contains("functions[0] (f1).code") && no_code.contains("not a directory"), "{no_code}");
    let no_cert =
        failure("name: s\nloadBalancers:\n  - name: lb\n    listeners:\n      - {protocol: HTTPS, port: 443}\n");
    assert!(no_cert.contains("listeners[0] (HTTPS 443).certificate"), "{no_cert}");

    // What the API would refuse is found before any change, by --dry-run too.
    std::fs::create_dir(dir.path().join("code")).unwrap();
    std::fs::write(dir.path().join("code/index.py"), HANDLER).unwrap();
    let refused_early = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = apply(&app, &file, &["--dry-run"]);
        assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let memory = refused_early("name: s\nfunctions:\n  - {name: fn1, code: code, memory: 100}\n");
    assert!(memory.contains("functions[0] (fn1).memory: 100 MB is not a memory size: 64, or 128"), "{memory}");
    let runtime = refused_early("name: s\nfunctions:\n  - {name: fn1, code: code, runtime: Python2.7}\n");
    assert!(runtime.contains("functions[0] (fn1).runtime: Python2.7 is not one of Python3.6"), "{runtime}");
    let port =
        refused_early("name: s\nloadBalancers:\n  - name: lb\n    listeners:\n      - {protocol: HTTP, port: 70000}\n");
    assert!(port.contains("listeners[0].port: invalid value: integer `70000`, expected a port, 1 to 65535"), "{port}");
    assert_eq!(app.scf("ListFunctions", json!({})).await.unwrap()["TotalCount"], 0, "nothing was changed");

    // What only the API can refuse is named too: a VIP that is not an address of this host.
    let refused = failure("name: s\nloadBalancers:\n  - {name: lb, vip: 192.0.2.1}\n");
    assert!(
        refused.contains(&name) && refused.contains("loadBalancers[0] (lb)") && refused.contains("192.0.2.1"),
        "{refused}"
    );
}
