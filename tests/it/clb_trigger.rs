//! The CLB trigger end to end: a request to a listener becomes a function's event, its return value the response.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{TestApp, bind_params, eventually, get, request};

const HELLO_BODY: &str = "<html><body><h1>Hello CLB</h1></body></html>";

fn api_code(r: Result<Value, fnlb::client::ClientError>) -> String {
    match r {
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn hello_clb_through_the_api() {
    let app = TestApp::start();
    let code = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py")).unwrap();
    let zip = fnlb::functions::zip_files(&[("index.py", &code)]);
    app.scf(
        "CreateFunction",
        json!({
            "FunctionName": "hello-clb",
            "Runtime": "Python3.6",
            "Handler": "index.main_handler",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        }),
    )
    .await
    .unwrap();
    let status = eventually("the function is Active", Duration::from_secs(10), || async {
        let f = app.scf("GetFunction", json!({"FunctionName": "hello-clb"})).await.ok()?;
        (f["Status"] == "Active").then_some(f)
    })
    .await;
    assert_eq!(status["Runtime"], "Python3.6");
    assert!(status["FunctionId"].as_str().unwrap().starts_with("lam-"));

    let route = app.route_to("hello-clb").await;
    let reply = get(&format!("{}/", route.base)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/html");
    assert_eq!(reply.text(), HELLO_BODY);

    // The trigger, as SCF lists it, with the access path a browser opens.
    let triggers = app.scf("ListTriggers", json!({"FunctionName": "hello-clb"})).await.unwrap();
    assert_eq!(triggers["TotalCount"], 1);
    let trigger = &triggers["Triggers"][0];
    assert_eq!(trigger["Type"], "clb");
    let desc: Value = serde_json::from_str(trigger["TriggerDesc"].as_str().unwrap()).unwrap();
    assert_eq!(desc["loadBalanceId"], route.lb_id.as_str());
    assert_eq!(desc["locationId"], route.location_id.as_str());
    let access_path = desc["accessPath"].as_str().unwrap();
    assert_eq!(access_path, format!("{}/", route.base));
    assert_eq!(get(access_path).await.text(), HELLO_BODY);
    let resource = trigger["ResourceId"].as_str().unwrap();
    assert!(resource.starts_with("qcs::clb:ap-guangzhou:uin/") && resource.ends_with(&route.location_id), "{resource}");
    let function = app.scf("GetFunction", json!({"FunctionName": "hello-clb", "ShowCode": "TRUE"})).await.unwrap();
    assert_eq!(function["Triggers"][0]["TriggerDesc"], trigger["TriggerDesc"]);
    assert_eq!(function["CodeInfo"].as_str().unwrap().as_bytes(), &code[..]);

    // The binding seen from the CLB side, and the task that made it.
    let targets = app.clb("DescribeTargets", json!({"LoadBalancerId": route.lb_id})).await.unwrap();
    let function_target = &targets["Listeners"][0]["Rules"][0]["FunctionTargets"][0];
    assert_eq!(function_target["Function"]["FunctionName"], "hello-clb");
    assert_eq!(function_target["Weight"], 10);
    let unbind = app
        .clb(
            "DeregisterFunctionTargets",
            bind_params(&route.lb_id, &route.listener_id, &route.location_id, "hello-clb"),
        )
        .await
        .unwrap();
    let task = app.clb("DescribeTaskStatus", json!({"TaskId": unbind["RequestId"]})).await.unwrap();
    assert_eq!(task["Status"], 0);
    assert_eq!(api_code(app.clb("DescribeTaskStatus", json!({"TaskId": "no-such-task"})).await), "InvalidParameter");

    // Unbound, the rule answers 503; the function no longer lists the trigger.
    assert_eq!(get(&format!("{}/", route.base)).await.status, 503);
    let triggers = app.scf("ListTriggers", json!({"FunctionName": "hello-clb"})).await.unwrap();
    assert_eq!(triggers["TotalCount"], 0);

    // Deleting the listener stops it listening.
    app.clb("DeleteListener", json!({"LoadBalancerId": route.lb_id, "ListenerId": route.listener_id})).await.unwrap();
    let addr = route.base.trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&addr).is_err(), "{addr} still accepts connections");
    app.clb("DeleteLoadBalancer", json!({"LoadBalancerIds": [route.lb_id]})).await.unwrap();
    app.scf("DeleteFunction", json!({"FunctionName": "hello-clb"})).await.unwrap();
    let listed = app.scf("ListFunctions", json!({})).await.unwrap();
    assert_eq!(listed["TotalCount"], 0);
    let lbs = app.clb("DescribeLoadBalancers", json!({})).await.unwrap();
    assert_eq!(lbs["TotalCount"], 0);
}

async fn echo_route(app: &TestApp) -> String {
    app.create_fixture(
        "echo",
        "echo",
        json!({"Environment": {"Variables": [{"Key": "GREETING", "Value": "hi"}]}, "MemorySize": 256}),
    )
    .await
    .unwrap();
    app.route_to("echo").await.base
}

#[tokio::test]
async fn event_shape_for_json_text_and_binary_bodies() {
    let app = TestApp::start();
    let base = echo_route(&app).await;

    let reply = request(
        "POST",
        &format!("{base}/orders/42?a=1&b=x%20y&a=2"),
        &[("Content-Type", "application/json"), ("X-Forwarded-For", "203.0.113.7"), ("User-Agent", "fnlb-test")],
        r#"{"key1":"123","key2":"abc"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let event = &body["event"];
    assert_eq!(event["payload"], json!({"key1": "123", "key2": "abc"}));
    assert_eq!(event["isBase64Encoded"], "false");
    let headers = &event["headers"];
    assert_eq!(headers["Content-Type"], "application/json");
    assert_eq!(headers["User-Agent"], "fnlb-test");
    assert_eq!(headers["X-Client-Proto"], "http");
    assert_eq!(headers["X-Forwarded-Proto"], "http");
    assert_eq!(headers["X-Client-Proto-Ver"], "HTTP/1.1");
    assert_eq!(headers["X-Real-IP"], "127.0.0.1");
    assert_eq!(headers["X-Forwarded-For"], "203.0.113.7, 127.0.0.1");
    let stgw: f64 = headers["X-Stgw-Time"].as_str().unwrap().parse().unwrap();
    assert!(stgw > 1.6e9);
    assert_eq!(event["httpMethod"], "POST");
    assert_eq!(event["path"], "/orders/42");
    assert_eq!(event["queryString"], json!({"a": ["1", "2"], "b": "x y"}));
    let ctx = &event["requestContext"];
    assert_eq!(ctx["sourceIp"], "127.0.0.1");
    assert!(ctx["loadBalancerId"].as_str().unwrap().starts_with("lb-"));
    assert!(ctx["locationId"].as_str().unwrap().starts_with("loc-"));
    assert_eq!(ctx["protocol"], "HTTP");

    // The context and environment of contract 2.2 and 2.4.
    let context = &body["context"];
    assert_eq!(context["memory_limit_in_mb"], 256);
    assert_eq!(context["time_limit_in_ms"], 3000);
    assert_eq!(context["function_name"], "echo");
    assert_eq!(context["namespace"], "default");
    assert_eq!(context["function_version"], "$LATEST");
    assert_eq!(context["tencentcloud_region"], "ap-guangzhou");
    assert_eq!(context["request_id"], ctx["requestId"]);
    assert!(context["environ"].as_str().unwrap().contains("GREETING=hi"));
    let env = &body["env"];
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["SCF_FUNCTIONNAME"], "echo");
    assert_eq!(env["SCF_NAMESPACE"], "default");
    assert_eq!(env["TENCENTCLOUD_RUNENV"], "SCF");
    assert_eq!(env["TENCENTCLOUD_REGION"], "ap-guangzhou");

    let reply = request("POST", &format!("{base}/"), &[("Content-Type", "text/plain")], "plain text").await;
    let event = &reply.json()["event"];
    assert_eq!(event["payload"], "plain text");
    assert_eq!(event["isBase64Encoded"], "false");

    let binary: &[u8] = &[0, 1, 2, 250, 251, 255];
    let reply = request("POST", &format!("{base}/"), &[("Content-Type", "application/octet-stream")], binary).await;
    let event = &reply.json()["event"];
    assert_eq!(event["isBase64Encoded"], "true");
    let decoded = base64::engine::general_purpose::STANDARD.decode(event["payload"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, binary);

    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.json()["event"]["payload"], "");
}

#[tokio::test]
async fn warm_instances_are_reused() {
    let app = TestApp::start();
    let base = echo_route(&app).await;
    let first = get(&format!("{base}/")).await.header("x-instance").to_string();
    for _ in 0..5 {
        assert_eq!(get(&format!("{base}/")).await.header("x-instance"), first);
    }
}

async fn function_log(app: &TestApp, function: &str, request_id: &str) -> String {
    let logs =
        app.scf("GetFunctionLogs", json!({"FunctionName": function, "FunctionRequestId": request_id})).await.unwrap();
    assert_eq!(logs["TotalCount"], 1, "{logs}");
    logs["Data"][0]["Log"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_exception_is_502_errno_430_with_the_traceback_in_the_log() {
    let app = TestApp::start();
    app.create_fixture("fail", "fail", json!({})).await.unwrap();
    let base = app.route_to("fail").await.base;
    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.json();
    assert_eq!(body["errno"], 430);
    assert_eq!(body["error"], "user code exception caught");
    let request_id = body["requestId"].as_str().unwrap();
    let log = function_log(&app, "fail", request_id).await;
    assert!(log.starts_with(&format!("START RequestId:{request_id}\n")), "{log}");
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("Traceback") && log.contains("ValueError: something broke"), "{log}");
    assert!(log.contains(&format!("END RequestId:{request_id}\nReport RequestId:{request_id} Duration:")), "{log}");
}

#[tokio::test]
async fn a_non_integration_return_value_is_errno_403() {
    let app = TestApp::start();
    app.create_fixture("bad-return", "bad_return", json!({})).await.unwrap();
    let base = app.route_to("bad-return").await.base;
    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.status, 502);
    let body = reply.json();
    assert_eq!(body["errno"], 403);
    assert_eq!(body["error"], "Analyse scf response failed.");
}

#[tokio::test]
async fn a_timeout_is_504_errno_433_and_the_next_request_gets_a_fresh_instance() {
    let app = TestApp::start();
    app.create_fixture("sleepy", "sleepy", json!({"Timeout": 1})).await.unwrap();
    let base = app.route_to("sleepy").await.base;
    let before = get(&format!("{base}/")).await;
    assert_eq!(before.status, 200);
    let started = std::time::Instant::now();
    let reply = get(&format!("{base}/sleep")).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["errno"], 433);
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout is enforced, not waited out");
    let after = get(&format!("{base}/")).await;
    assert_eq!(after.status, 200);
    assert_ne!(after.text(), before.text(), "the timed-out instance was replaced");
}

#[tokio::test]
async fn no_matching_rule_is_404() {
    let app = TestApp::start();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    let route = app.route_to("echo").await;
    // Replace the catch-all rule with one for /api only.
    app.clb(
        "DeleteRule",
        json!({"LoadBalancerId": route.lb_id, "ListenerId": route.listener_id, "LocationIds": [route.location_id]}),
    )
    .await
    .unwrap();
    let rule = app
        .clb(
            "CreateRule",
            json!({"LoadBalancerId": route.lb_id, "ListenerId": route.listener_id, "Rules": [{"Domain": "fnlb.test", "Url": "/api"}]}),
        )
        .await
        .unwrap();
    let location = rule["LocationIds"][0].as_str().unwrap();
    app.clb("RegisterFunctionTargets", bind_params(&route.lb_id, &route.listener_id, location, "echo")).await.unwrap();
    assert_eq!(get(&format!("{}/api/x", route.base)).await.status, 200);
    assert_eq!(get(&format!("{}/other", route.base)).await.status, 404);
}

#[tokio::test]
async fn binding_restrictions_are_enforced() {
    let app = TestApp::start();
    app.create_fixture("one", "echo", json!({})).await.unwrap();
    app.create_fixture("two", "echo", json!({})).await.unwrap();
    let route = app.route_to("one").await;
    // A second function on the same rule.
    let second = bind_params(&route.lb_id, &route.listener_id, &route.location_id, "two");
    assert_eq!(api_code(app.clb("RegisterFunctionTargets", second).await), "LimitExceeded");
    // A layer-4 listener.
    let tcp = app
        .clb("CreateListener", json!({"LoadBalancerId": route.lb_id, "Ports": [1], "Protocol": "TCP"}))
        .await
        .unwrap();
    let tcp_id = tcp["ListenerIds"][0].as_str().unwrap();
    let on_tcp = bind_params(&route.lb_id, tcp_id, &route.location_id, "one");
    assert_eq!(api_code(app.clb("RegisterFunctionTargets", on_tcp).await), "InvalidParameter.ProtocolCheckFailed");
    // A rule that does not exist.
    let missing = bind_params(&route.lb_id, &route.listener_id, "loc-nothere", "one");
    assert_eq!(api_code(app.clb("RegisterFunctionTargets", missing).await), "InvalidParameter.LocationNotFound");
    // A function that does not exist.
    let ghost = bind_params(&route.lb_id, &route.listener_id, &route.location_id, "ghost");
    assert_eq!(api_code(app.clb("RegisterFunctionTargets", ghost).await), "ResourceNotFound");
}

#[tokio::test]
async fn invoke_reports_results_and_failures_per_contract() {
    let app = TestApp::start();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    app.create_fixture("fail", "fail", json!({})).await.unwrap();
    let ok = app
        .scf("Invoke", json!({"FunctionName": "echo", "ClientContext": "{\"k\":\"v\"}", "LogType": "Tail"}))
        .await
        .unwrap();
    let result = &ok["Result"];
    assert_eq!(result["InvokeResult"], 0);
    let ret: Value = serde_json::from_str(result["RetMsg"].as_str().unwrap()).unwrap();
    assert_eq!(ret["statusCode"], 200);
    let body: Value = serde_json::from_str(ret["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["event"], json!({"k": "v"}));
    let request_id = result["FunctionRequestId"].as_str().unwrap();
    assert!(result["Log"].as_str().unwrap().contains(&format!("Report RequestId:{request_id}")));
    assert!(result["Duration"].as_f64().unwrap() > 0.0);
    assert!(result["BillDuration"].as_u64().unwrap() >= 1);
    assert!(result["MemUsage"].as_u64().unwrap() > 1_000_000);

    let failed = app.scf("Invoke", json!({"FunctionName": "fail"})).await.unwrap();
    let result = &failed["Result"];
    assert_eq!(result["InvokeResult"], 1);
    let error: Value = serde_json::from_str(result["RetMsg"].as_str().unwrap()).unwrap();
    assert_eq!(error["statusCode"], 430);
    assert_eq!(error["errorMessage"], "user code exception caught");
    assert!(error["stackTrace"].as_str().unwrap().contains("ValueError"));
    assert_eq!(error["requestId"], result["FunctionRequestId"]);

    assert_eq!(
        api_code(app.scf("Invoke", json!({"FunctionName": "echo", "ClientContext": "{not json"})).await),
        "InvalidParameterValue.Param"
    );
    assert_eq!(api_code(app.scf("Invoke", json!({"FunctionName": "nope"})).await), "ResourceNotFound.Function");
}

#[tokio::test]
async fn rules_route_by_domain_and_url() {
    let app = TestApp::start();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    app.create_fixture("other", "sleepy", json!({})).await.unwrap();
    let route = app.route_to("echo").await; // fnlb.test, "/": the default domain
    let rules = json!({
        "LoadBalancerId": route.lb_id,
        "ListenerId": route.listener_id,
        "Rules": [{"Domain": "shop.example.com", "Url": "=/exact"}, {"Domain": "shop.example.com", "Url": "/dir/"}],
    });
    let created = app.clb("CreateRule", rules).await.unwrap();
    for location in created["LocationIds"].as_array().unwrap() {
        let bind = bind_params(&route.lb_id, &route.listener_id, location.as_str().unwrap(), "other");
        app.clb("RegisterFunctionTargets", bind).await.unwrap();
    }
    let host = |path: &str, host: &'static str| {
        let url = format!("{}{path}", route.base);
        async move { request("GET", &url, &[("Host", host)], "").await }
    };
    // The echo function answers JSON, the other one its pid as text.
    let is_echo = |r: &crate::harness::Reply| r.header("content-type") == "application/json";
    assert!(is_echo(&host("/exact", "unknown.example.org").await), "an unknown host goes to the default domain");
    assert!(!is_echo(&host("/exact", "shop.example.com").await));
    assert!(!is_echo(&host("/exact", "SHOP.example.com:8080").await), "host case and port are ignored");
    assert_eq!(host("/exact/more", "shop.example.com").await.status, 404, "= matches only the exact path");
    assert!(!is_echo(&host("/dir/a/b", "shop.example.com").await));
    let redirect = host("/dir?x=1", "shop.example.com").await;
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), "/dir/?x=1");
}

#[tokio::test]
async fn a_body_over_6_mb_is_413_errno_406() {
    let app = TestApp::start();
    let base = echo_route(&app).await;
    let big = vec![b'x'; 6 * 1024 * 1024 + 1];
    let reply = request("POST", &format!("{base}/"), &[("Content-Type", "text/plain")], big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["errno"], 406);
}

#[tokio::test]
async fn a_listener_on_a_port_that_cannot_be_bound_is_refused() {
    let app = TestApp::start();
    let (vip, port) = crate::harness::free_addr();
    let lb = app.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
    let lb_id = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let squatter = std::net::TcpListener::bind((vip, port)).unwrap();
    let create = json!({"LoadBalancerId": lb_id, "Ports": [port], "Protocol": "HTTP"});
    assert_eq!(api_code(app.clb("CreateListener", create.clone()).await), "InvalidParameter.PortCheckFailed");
    let listed = app.clb("DescribeListeners", json!({"LoadBalancerId": lb_id})).await.unwrap();
    assert_eq!(listed["TotalCount"], 0, "a refused listener is not created");
    drop(squatter);

    // Once free, the port serves; deleted and created again at once, it still does.
    let created = app.clb("CreateListener", create.clone()).await.unwrap();
    let listener_id = created["ListenerIds"][0].as_str().unwrap().to_string();
    app.clb("DeleteListener", json!({"LoadBalancerId": lb_id, "ListenerId": listener_id})).await.unwrap();
    app.clb("CreateListener", create).await.unwrap();
    assert!(std::net::TcpStream::connect((vip, port)).is_ok());
}

#[tokio::test]
async fn idle_instances_are_stopped_down_to_zero() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--idle-timeout", "1"]);
    app.create_fixture("idle-echo", "echo", json!({})).await.unwrap();
    let base = app.route_to("idle-echo").await.base;
    let first = get(&format!("{base}/")).await.header("x-instance").to_string();
    let running = crate::harness::instance_processes("idle-echo").len();
    assert!(running > 0, "the instance runs");
    // The instance goes: nothing of the function runs.
    eventually("the function scales to zero", Duration::from_secs(15), || async {
        crate::harness::instance_processes("idle-echo").is_empty().then_some(())
    })
    .await;
    // The next request starts a fresh instance.
    let reply = get(&format!("{base}/")).await;
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("x-instance"), first);
}

#[tokio::test]
async fn an_idle_node_holds_one_zygote_whatever_the_number_of_functions() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--idle-timeout", "1"]);
    // 100 functions (a namespace holds at most 50), ten of them run once.
    app.scf("CreateNamespace", json!({"Namespace": "more"})).await.unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("many-{i}")).collect();
    let namespace = |i: usize| if i < 50 { "default" } else { "more" };
    for (i, name) in names.iter().enumerate() {
        app.create_fixture(name, "echo", json!({"Namespace": namespace(i)})).await.unwrap();
    }
    for (i, name) in names.iter().enumerate().step_by(10) {
        let invoked = app.scf("Invoke", json!({"FunctionName": name, "Namespace": namespace(i)})).await.unwrap();
        assert_eq!(invoked["Result"]["InvokeResult"], 0, "{invoked}");
    }
    eventually("every instance is stopped", Duration::from_secs(20), || async {
        names.iter().all(|name| crate::harness::instance_processes(name).is_empty()).then_some(())
    })
    .await;
    // The Python runtime's zygote and its spares stay, one zygote for every function.
    let (zygotes, spares) = crate::harness::zygote_processes(app.pid());
    assert_eq!(zygotes.len(), 1, "one zygote: {zygotes:?}");
    assert!(spares.len() <= fnlb::functions::ZYGOTE_SPARES, "spares: {spares:?}");
}

#[tokio::test]
async fn python_instances_are_forked_from_a_zygote() {
    for (zygote, forked) in [("true", true), ("false", false)] {
        let temp = tempfile::tempdir().unwrap();
        let app = TestApp::start_in(&temp.path().join("data"), &["--sandbox", "bubblewrap", "--zygote", zygote]);
        app.create_fixture("forked", "echo", json!({})).await.unwrap();
        let base = app.route_to("forked").await.base;
        let reply = get(&format!("{base}/")).await;
        assert_eq!(reply.status, 200);
        // In the sandbox's PID namespace, a directly started runtime is the child of the namespace's init (1); a
        // forked instance is the child of the zygote.
        let parent = reply.header("x-parent").to_string();
        assert_eq!(parent != "1", forked, "zygote {zygote}: parent {parent}");
    }
}

/// Sends `count` GETs to `url` at once; the distinct bodies they were answered with (fixtures that answer with their
/// instance's id).
async fn instances_answering(url: &str, count: usize) -> std::collections::HashSet<String> {
    let calls: Vec<_> = (0..count)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut instances = std::collections::HashSet::new();
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        instances.insert(reply.text());
    }
    instances
}

#[tokio::test]
async fn concurrent_requests_run_in_parallel_on_separate_instances() {
    let app = TestApp::start();
    app.create_fixture("napper", "napper", json!({})).await.unwrap();
    let base = app.route_to("napper").await.base;
    assert_eq!(get(&format!("{base}/")).await.status, 200, "one warm instance to begin with");
    let started = std::time::Instant::now();
    let instances = instances_answering(&format!("{base}/nap"), 6).await;
    assert_eq!(instances.len(), 6, "each of the six one-second naps ran on an instance of its own");
    assert!(started.elapsed() < Duration::from_secs(5), "they ran side by side: {:?}", started.elapsed());
}

/// Up to the eager count, a caller that finds no idle instance starts one; past it, callers of a function whose
/// invocations are shorter than a start wait for a busy instance first, and are served in the order they came.
#[tokio::test]
async fn short_invocations_start_instances_up_to_the_eager_count_then_wait_for_warm_ones() {
    for (eager, expected) in [(3, 3), (1, 1)] {
        let temp = tempfile::tempdir().unwrap();
        let eager_flag = eager.to_string();
        let app = TestApp::start_in(
            &temp.path().join("data"),
            &["--eager-instances-per-function", &eager_flag, "--warm-wait-limit", "60000"],
        );
        app.create_fixture("slow-start", "slow_start", json!({})).await.unwrap();
        let base = app.route_to("slow-start").await.base;
        // One instance, and what the pool learns from it: a start takes half a second, an invocation a tenth.
        assert_eq!(get(&format!("{base}/quick")).await.status, 200);
        let instances = instances_answering(&format!("{base}/quick"), 3).await;
        assert_eq!(instances.len(), expected, "eager {eager}: three short calls at once ran on {instances:?}");
    }
}

#[tokio::test]
async fn instances_start_at_most_so_many_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--max-starting-per-function", "1"]);
    app.create_fixture("slow-start", "slow_start", json!({})).await.unwrap();
    let base = app.route_to("slow-start").await.base;
    let started = std::time::Instant::now();
    let instances = instances_answering(&format!("{base}/"), 3).await;
    assert_eq!(instances.len(), 3, "three instances for three concurrent one-second calls");
    // Started one after another (half a second each), the last call ends at least 1.5 s + 1 s after the first
    // began; started together, all three would end after about 1.5 s.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2300), "the starts overlapped: {elapsed:?}");
}

#[tokio::test]
async fn what_is_wrong_with_the_target_is_said_before_what_is_missing() {
    let app = TestApp::start();
    app.create_fixture("ordered", "echo", json!({})).await.unwrap();
    let function = json!({"FunctionNamespace": "default", "FunctionName": "ordered", "FunctionQualifier": "$LATEST"});
    let targets = json!([{"Function": function}]);
    // A TCP listener cannot take a function, however the rule is named, or if it is not named at all.
    let (lb, tcp, _, _) = crate::harness::listener(&app, "TCP", json!({})).await;
    for rule in [json!({}), json!({"LocationId": "loc-12345678"}), json!({"Domain": "a.test", "Url": "/"})] {
        let mut params = json!({"LoadBalancerId": lb, "ListenerId": tcp, "FunctionTargets": targets});
        params.as_object_mut().unwrap().extend(rule.as_object().unwrap().clone());
        let code = api_code(app.clb("RegisterFunctionTargets", params).await);
        assert_eq!(code, "InvalidParameter.ProtocolCheckFailed", "{rule}");
    }
    // On an HTTP listener the missing rule is what is wrong.
    let (lb, http, _, _) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let params = json!({"LoadBalancerId": lb, "ListenerId": http, "FunctionTargets": targets});
    assert_eq!(api_code(app.clb("RegisterFunctionTargets", params).await), "MissingParameter");
}

#[tokio::test]
async fn an_invocation_runs_to_its_end_and_is_logged_when_the_client_goes_away() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // On the general path (hyper), which drops a request's future when its client goes away.
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--direct-path", "false"]);
    app.create_fixture("left", "sleep_on_request", json!({"Timeout": 10})).await.unwrap();
    let route = app.route_to("left").await;
    let address = route.base.trim_start_matches("http://").to_string();
    // The client asks for a one-second invocation, then hangs up while it runs.
    let mut client = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!("GET /?sleep=1 HTTP/1.1\r\nHost: {address}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), client.read(&mut answer)).await;
    assert!(waited.is_err(), "no answer before the function returns");
    drop(client);
    // The invocation still ends as the function returns, and its log is recorded.
    let record = eventually("the invocation's log", Duration::from_secs(15), || async {
        let logs = app.scf("GetFunctionLogs", json!({"FunctionName": "left"})).await.ok()?;
        logs["Data"].as_array()?.iter().find(|r| r["RetCode"] == 0).cloned()
    })
    .await;
    assert!(record["Duration"].as_f64().unwrap() >= 1000.0, "{record}");
    assert!(record["Log"].as_str().unwrap().contains("Response RequestId:"), "{record}");
}
