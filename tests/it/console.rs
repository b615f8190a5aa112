//! The web console: its assets and sessions over HTTP, then the seed's whole workflow in headless Chromium.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, free_addr, request};

fn secrets(app: &TestApp) -> (String, String) {
    (app.credentials.secret_id.clone(), app.credentials.secret_key.clone())
}

/// Calls an API action as the console does: the session cookie and its CSRF token, no signature.
async fn console_call(app: &TestApp, cookie: &str, csrf: &str, service: &str, action: &str, params: Value) -> Value {
    let version = if service == "scf" { "2018-04-16" } else { "2018-03-17" };
    let headers = [
        ("Cookie", cookie),
        ("X-Fnlb-Csrf", csrf),
        ("X-Fnlb-Service", service),
        ("X-TC-Action", action),
        ("X-TC-Version", version),
        ("Content-Type", "application/json"),
    ];
    let reply = request("POST", &format!("{}/", app.endpoint()), &headers, Bytes::from(params.to_string())).await;
    reply.json()["Response"].clone()
}

#[tokio::test]
async fn console_sessions_are_cookies_with_a_csrf_token() {
    let app = TestApp::start();
    let base = app.endpoint();
    let page = request("GET", &format!("{base}/console/"), &[], Bytes::new()).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/console/app.js"));
    assert!(page.header("content-security-policy").contains("script-src 'self'"), "{:?}", page.headers);
    let script = request("GET", &format!("{base}/console/app.js"), &[], Bytes::new()).await;
    assert_eq!(script.header("content-type"), "text/javascript; charset=utf-8");
    let etag = script.header("etag").to_string();
    let again = request("GET", &format!("{base}/console/app.js"), &[("If-None-Match", &etag)], Bytes::new()).await;
    assert_eq!(again.status, 304);

    let (id, key) = secrets(&app);
    let session = format!("{base}/console/session");
    let wrong = json!({"SecretId": id, "SecretKey": "not-the-key"}).to_string();
    assert_eq!(request("POST", &session, &[], Bytes::from(wrong)).await.status, 401);
    let signed =
        request("POST", &session, &[], Bytes::from(json!({"SecretId": id, "SecretKey": key}).to_string())).await;
    assert_eq!(signed.status, 200);
    let set_cookie = signed.header("set-cookie").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let body = signed.json();
    assert!(!body.to_string().contains(&key), "the page never gets the secret key");
    let csrf = body["Csrf"].as_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // The console's calls are the API's actions; without the CSRF token (a forged cross-site request) they fail.
    let listed = console_call(&app, &cookie, &csrf, "scf", "ListFunctions", json!({})).await;
    assert_eq!(listed["TotalCount"], 0, "{listed}");
    let forged = console_call(&app, &cookie, "guess", "scf", "ListFunctions", json!({})).await;
    assert_eq!(forged["Error"]["Code"], "AuthFailure.InvalidAuthorization", "{forged}");
    // What the API refuses, it refuses the console too.
    let refused = console_call(&app, &cookie, &csrf, "scf", "CreateFunction", json!({"FunctionName": "x"})).await;
    assert!(refused["Error"]["Code"].as_str().unwrap().starts_with("MissingParameter"), "{refused}");

    // Signing out ends the session.
    let headers = [("Cookie", cookie.as_str()), ("X-Fnlb-Csrf", csrf.as_str())];
    assert_eq!(request("DELETE", &session, &headers, Bytes::new()).await.status, 200);
    let after = console_call(&app, &cookie, &csrf, "scf", "ListFunctions", json!({})).await;
    assert_eq!(after["Error"]["Code"], "AuthFailure.InvalidAuthorization", "{after}");
    assert_eq!(request("GET", &session, &[("Cookie", cookie.as_str())], Bytes::new()).await.json(), json!({}));
}

#[tokio::test]
async fn the_seed_workflow_in_the_console_in_chromium() {
    let app = TestApp::start();
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test, or `npm ci` in tests/browser"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let (vip, port) = free_addr();
    let (id, key) = secrets(&app);
    let out = Command::new("node")
        .arg(browser.join("console.mjs"))
        .args([&app.endpoint(), &id, &key, &vip.to_string(), &port.to_string(), shots.to_str().unwrap()])
        .output()
        .expect("node runs");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("console.mjs printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    eprintln!("console: page loads (ms) {}; steps {}", report["loads"], report["steps"]);
    assert!(report["failure"].is_null(), "{}", report["failure"].as_str().unwrap_or_default());
    assert_eq!(report["errors"], json!([]), "no console errors");
    let seed = include_str!("../../examples/hello-clb/index.py");
    assert_eq!(report["code"], seed, "the editor starts from the seed's code, byte for byte");
    assert_eq!(report["accessPath"], format!("http://{vip}:{port}/"));
    assert_eq!(report["accessHeading"], "Hello CLB");
    let refusal = report["refusal"].as_str().unwrap();
    assert!(
        refusal.starts_with("InvalidParameter.ProtocolCheckFailed") && refusal.contains("TCP listener"),
        "{refusal}"
    );
    assert!(report["testResult"].as_str().unwrap().contains("Hello CLB"));
    let log = report["log"].as_str().unwrap();
    assert!(
        log.contains("START RequestId:") && log.contains("END RequestId:") && log.contains("Report RequestId:"),
        "{log}"
    );
    assert_eq!(report["charts"], 3);
    assert!(report["ruleChart"].as_str().unwrap().starts_with("Requests by status"), "{}", report["ruleChart"]);
    assert_eq!(report["phoneOverflow"], false, "nothing wider than a phone's screen");
    let saved = std::fs::read_dir(&shots).unwrap().count();
    assert!(saved >= 12, "{saved} screenshots");
    first_steps(&app, &report, &vip.to_string(), port).await;
}

/// What a new user trips over in the walk above, every check reported at once.
async fn first_steps(app: &TestApp, report: &Value, vip: &str, port: u16) {
    let checks = &report["checks"];
    let text = |check: &Value, key: &str| check[key].as_str().unwrap_or_default().to_string();
    let mut failed = Vec::new();
    let mut expect = |name: &str, ok: bool| {
        if !ok {
            failed.push(format!("{name}: {}", checks.get(name).unwrap_or(&report[name])));
        }
    };
    // Before sign-in, no navigation and no sign-out (`hidden` wins over a `display` rule); after, both.
    let shown = |on: bool| json!({"navigation": on, "signOut": on, "region": on});
    expect("signInChrome", checks["signInChrome"] == shown(false));
    expect("signedInChrome", checks["signedInChrome"] == shown(true));
    // A refusal shows beside the form that caused it, at the field it names.
    let bad = &checks["badName"];
    expect(
        "badName",
        text(bad, "text").starts_with("InvalidParameterValue.FunctionName: ")
            && bad["onScreen"] == true
            && bad["inForm"] == true
            && bad["invalid"] == "true"
            && bad["focused"] == true
            && text(bad, "description").contains("is not valid"),
    );
    let refused = &checks["listenerRefusal"];
    expect(
        "listenerRefusal",
        text(refused, "text").starts_with("InvalidParameter.PortCheckFailed: ") && refused["onScreen"] == true,
    );
    expect(
        "certificateShown",
        checks["certificateShown"]
            == json!({"HTTP": false, "HTTPS": true, "TCP": false, "UDP": false, "TCP_SSL": true}),
    );
    // Each rule's access path, the VIP's for the default domain and the domain's for another.
    let domain_path = format!("http://www.example.test:{port}/headers");
    expect("ruleAccessPath", checks["ruleAccessPath"] == format!("http://{vip}:{port}/"));
    expect("ruleAccessPaths", checks["ruleAccessPaths"] == json!([format!("http://{vip}:{port}/"), domain_path]));
    // The CLB template's header names are those of a live event: a handler reading `Host` works with both.
    let test = &checks["templateTest"];
    expect("templateTest", test["outcome"] == "Succeeded" && text(test, "result").contains("127.0.0.1:8080"));
    let live = &report["liveEvent"];
    expect("liveEvent", live["host"] == format!("www.example.test:{port}"));
    let names: Vec<&Value> = live["names"].as_array().map(|n| n.iter().collect()).unwrap_or_default();
    let template = report["templateHeaders"].as_array().cloned().unwrap_or_default();
    expect("templateHeaders", !template.is_empty() && template.iter().all(|name| names.contains(&name)));
    // Long log lines wrap.
    expect("testWraps", checks["testWraps"] == true);
    let logs = &checks["logsWrap"];
    expect("logsWrap", logs["long"].as_u64().unwrap_or(0) >= 1 && logs["fits"] == true);
    // A trigger removed from its function's page: gone from the function, its rule kept.
    expect(
        "triggerRemoved",
        text(checks, "triggerRemoved").starts_with("Removed the trigger http://www.example.test:"),
    );
    assert!(failed.is_empty(), "{failed:#?}");

    let triggers = app.scf("ListTriggers", json!({"FunctionName": "show-headers"})).await.unwrap();
    assert_eq!(triggers["TotalCount"], 0, "{triggers}");
    let balancers = app.clb("DescribeLoadBalancers", json!({})).await.unwrap();
    let lb = balancers["LoadBalancerSet"][0]["LoadBalancerId"].clone();
    let listeners = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    let rules: Vec<&Value> = listeners["Listeners"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["Rules"].as_array().into_iter().flatten())
        .collect();
    assert!(rules.iter().any(|r| r["Url"] == "/headers"), "the rule stays: {listeners}");
}

#[tokio::test]
async fn the_console_cookie_never_reaches_functions_or_servers() {
    let app = TestApp::start();
    app.create_fixture("cookie-jar", "echo", json!({})).await.unwrap();
    let route = app.route_to("cookie-jar").await;
    let cookie = "a=1; fnlb_console=0123456789abcdef; b=2";
    let reply = request("GET", &format!("{}/", route.base), &[("Cookie", cookie)], Bytes::new()).await;
    let headers = &reply.json()["event"]["headers"];
    let seen = headers.get("cookie").or_else(|| headers.get("Cookie")).cloned().unwrap_or_default();
    assert_eq!(seen, "a=1; b=2", "{headers}");
    let only = request("GET", &format!("{}/", route.base), &[("Cookie", "fnlb_console=x")], Bytes::new()).await;
    let headers = &only.json()["event"]["headers"];
    assert!(headers.get("cookie").is_none() && headers.get("Cookie").is_none(), "{headers}");
}

#[tokio::test]
async fn sign_in_guesses_are_slowed_down_without_locking_out_the_owner() {
    let app = crate::harness::TestApp::start();
    let sign_in = |key: &str| serde_json::json!({"SecretId": app.credentials.secret_id, "SecretKey": key}).to_string();
    let json = vec![("content-type".to_string(), "application/json".to_string())];
    let mut statuses = Vec::new();
    for i in 0..30 {
        let (status, _) = crate::harness::post_from(
            [127, 0, 0, 1],
            app.api_addr,
            "/console/session",
            &json,
            &sign_in(&format!("guess-{i}")),
        )
        .await;
        statuses.push(status);
    }
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "past a few failures the guesser waits: {statuses:?}");
    // The right key from the guessing address waits too; from the owner's address it signs in at once.
    let (status, _) = crate::harness::post_from(
        [127, 0, 0, 1],
        app.api_addr,
        "/console/session",
        &json,
        &sign_in(&app.credentials.secret_key),
    )
    .await;
    assert_eq!(status, 429);
    let (status, body) = crate::harness::post_from(
        [127, 0, 0, 2],
        app.api_addr,
        "/console/session",
        &json,
        &sign_in(&app.credentials.secret_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
