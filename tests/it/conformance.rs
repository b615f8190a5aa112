//! Tencent compatibility through tccli, the official command line from PyPI, unchanged: the seed's whole
//! workflow, and tccli's exit code and message for an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, free_addr, request};

/// tccli: `FNLB_TEST_TCCLI`, else the one in the project's `.venv` made by `scripts/test`.
fn tccli_path() -> PathBuf {
    if let Ok(tccli) = std::env::var("FNLB_TEST_TCCLI") {
        return PathBuf::from(tccli);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/tccli");
    assert!(venv.exists(), "no tccli: run scripts/test (it makes .venv), or set FNLB_TEST_TCCLI");
    venv
}

/// A tccli call that failed: its exit status and what it printed on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    status: Option<i32>,
    pub(crate) stderr: String,
}

/// Runs `tccli SERVICE ACTION --cli-input-json file://…` against `app` with its first account's keys.
pub(crate) async fn tccli(app: &TestApp, service: &str, action: &str, params: Value) -> Result<Value, Failure> {
    tccli_in(app, "ap-guangzhou", service, action, params).await
}

/// `tccli` in another region.
async fn tccli_in(app: &TestApp, region: &str, service: &str, action: &str, params: Value) -> Result<Value, Failure> {
    tccli_as(app, Keys::first(app), region, service, action, params).await
}

/// An account's keys.
#[derive(Clone, Copy)]
struct Keys<'a> {
    id: &'a str,
    key: &'a str,
}

impl Keys<'_> {
    /// The keys of the account fnlb made on its first start.
    fn first(app: &TestApp) -> Keys<'_> {
        Keys { id: &app.credentials.secret_id, key: &app.credentials.secret_key }
    }
}

/// `tccli` with an account's keys.
async fn tccli_as(
    app: &TestApp,
    keys: Keys<'_>,
    region: &str,
    service: &str,
    action: &str,
    params: Value,
) -> Result<Value, Failure> {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), params.to_string()).unwrap();
    let endpoint = format!("http://{}", app.api_addr);
    let out = tokio::process::Command::new(tccli_path())
        .args([service, action, "--cli-input-json"])
        .arg(format!("file://{}", input.path().display()))
        .args(["--region", region, "--endpoint", &endpoint])
        .env("TENCENTCLOUD_SECRET_ID", keys.id)
        .env("TENCENTCLOUD_SECRET_KEY", keys.key)
        .env("HOME", input.path().parent().unwrap())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("tccli answers").expect("tccli runs");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        return Err(Failure { status: out.status.code(), stderr });
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("tccli printed no JSON ({e})")))
}

pub(crate) async fn ok(app: &TestApp, service: &str, action: &str, params: Value) -> Value {
    tccli(app, service, action, params).await.unwrap_or_else(|f| panic!("tccli {service} {action}: {f:?}"))
}

#[tokio::test]
async fn the_seed_workflow_through_tccli() {
    seed_workflow(false).await;
}

#[tokio::test]
async fn the_seed_workflow_through_tccli_over_https_with_an_inline_certificate() {
    seed_workflow(true).await;
}

/// The seed's workflow: function, load balancer, listener (HTTPS with its certificate inline when `https`), rule,
/// binding, the access path, then everything removed.
async fn seed_workflow(https: bool) {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = crate::https::Authority::new("seed CA");
    let ca_file = ca.write(temp.path(), "ca.pem");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"),
        dir.path().join("index.py"),
    )
    .unwrap();
    let zip = fnlb::functions::zip_dir(dir.path()).unwrap();
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, zip);
    let create = json!({"FunctionName": "hello-clb", "Runtime": "Python3.6", "Handler": "index.main_handler",
        "Code": {"ZipFile": code}});
    ok(&app, "scf", "CreateFunction", create).await;
    eventually("the function is Active", Duration::from_secs(30), || async {
        let function = ok(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await;
        (function["Status"] == "Active").then_some(())
    })
    .await;

    let (vip, port) = free_addr();
    let lb = ok(&app, "clb", "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await;
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let mut listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP", "ListenerNames": ["web"]});
    if https {
        let leaf = ca.leaf(&["hello.fnlb.test"]);
        listener["Protocol"] = json!("HTTPS");
        listener["Certificate"] =
            json!({"SSLMode": "UNIDIRECTIONAL", "CertName": "hello", "CertContent": leaf.cert, "CertKey": leaf.key});
    }
    let listener = ok(&app, "clb", "CreateListener", listener).await["ListenerIds"][0].as_str().unwrap().to_string();
    let rule =
        json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "hello.fnlb.test", "Url": "/"}]});
    let location = ok(&app, "clb", "CreateRule", rule).await["LocationIds"][0].as_str().unwrap().to_string();
    let target = json!([{"Function": {"FunctionNamespace": "default", "FunctionName": "hello-clb",
        "FunctionQualifier": "$LATEST"}, "Weight": 10}]);
    let bind = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "FunctionTargets": target});
    let bound = ok(&app, "clb", "RegisterFunctionTargets", bind.clone()).await;
    let task = ok(&app, "clb", "DescribeTaskStatus", json!({"TaskId": bound["RequestId"]})).await;
    assert_eq!(task["Status"], 0);

    // The trigger, from the function's side, and its access path.
    let triggers = ok(&app, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(triggers["TotalCount"], 1, "{triggers}");
    let desc: Value = serde_json::from_str(triggers["Triggers"][0]["TriggerDesc"].as_str().unwrap()).unwrap();
    let function = ok(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(function["Triggers"][0]["Type"], "clb", "{function}");
    let access_path = desc["accessPath"].as_str().unwrap();
    if https {
        // The default domain's path names the VIP; the certificate names the domain.
        assert_eq!(access_path, format!("https://{vip}:{port}/"));
        let fetched = crate::https::curl("hello.fnlb.test", &vip.to_string(), port, &ca_file, &[]).await;
        assert_eq!((fetched.code, fetched.body.as_str()), (0, "<html><body><h1>Hello CLB</h1></body></html>"));
    } else {
        let page = request("GET", access_path, &[], bytes::Bytes::new()).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.text(), "<html><body><h1>Hello CLB</h1></body></html>");
    }

    // Unbound, deleted, and gone.
    ok(&app, "clb", "DeregisterFunctionTargets", bind).await;
    let triggers = ok(&app, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(triggers["TotalCount"], 0);
    ok(&app, "clb", "DeleteRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [location]}))
        .await;
    ok(&app, "clb", "DeleteListener", json!({"LoadBalancerId": lb, "ListenerId": listener})).await;
    ok(&app, "clb", "DeleteLoadBalancer", json!({"LoadBalancerIds": [lb]})).await;
    ok(&app, "scf", "DeleteFunction", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(ok(&app, "scf", "ListFunctions", json!({})).await["TotalCount"], 0);
    assert_eq!(ok(&app, "clb", "DescribeLoadBalancers", json!({})).await["TotalCount"], 0);

    // An error: tccli exits non-zero and prints the code, the message and the request id.
    let failure = tccli(&app, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await.unwrap_err();
    assert_eq!(failure.status, Some(255), "{failure:?}");
    assert!(failure.stderr.contains("code:ResourceNotFound.Function"), "{failure:?}");
    assert!(failure.stderr.contains("message:Function ap-guangzhou/default/hello-clb does not exist"), "{failure:?}");
    assert!(failure.stderr.contains("requestId:") && !failure.stderr.contains("requestId:None"), "{failure:?}");
}

#[tokio::test]
async fn a_clb_trigger_made_from_the_scf_side_is_a_binding_on_both_sides() {
    let app = TestApp::start();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;

    // CreateTrigger through tccli: the rule does not exist yet and is made.
    let desc = json!({"loadBalanceId": lb, "listenerId": listener, "domain": "scf.fnlb.test", "url": "/from-scf"});
    let create = json!({"FunctionName": "echo", "TriggerName": "web", "Type": "clb", "TriggerDesc": desc.to_string()});
    let created = ok(&app, "scf", "CreateTrigger", create.clone()).await;
    let info = &created["TriggerInfo"];
    assert_eq!((info["TriggerName"].as_str(), info["Type"].as_str()), (Some("web"), Some("clb")), "{created}");
    let shown: Value = serde_json::from_str(info["TriggerDesc"].as_str().unwrap()).unwrap();
    let location = shown["locationId"].as_str().unwrap().to_string();
    assert_eq!(shown["accessPath"], format!("http://{vip}:{port}/from-scf"));
    let reply =
        request("GET", &format!("http://{vip}:{port}/from-scf"), &[("Host", "scf.fnlb.test")], bytes::Bytes::new())
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["event"]["requestContext"]["locationId"], location.as_str());

    // Seen from the CLB side; the same name twice is refused.
    let targets = ok(&app, "clb", "DescribeTargets", json!({"LoadBalancerId": lb})).await;
    let rule = &targets["Listeners"][0]["Rules"][0];
    assert_eq!(rule["LocationId"], location.as_str(), "{targets}");
    assert_eq!(rule["FunctionTargets"][0]["Function"]["FunctionName"], "echo");
    // (Another request: the same one signed within the same second would be a repeat, answered as the first.)
    let mut another = create.clone();
    another["TriggerDesc"] = json!(desc.to_string().replace("/from-scf", "/from-scf-too"));
    let again = tccli(&app, "scf", "CreateTrigger", another).await.unwrap_err();
    assert!(again.stderr.contains("code:ResourceInUse.TriggerName"), "{again:?}");

    // Removed from the SCF side: the rule stays, unbound.
    let delete = json!({"FunctionName": "echo", "TriggerName": "web", "Type": "clb"});
    ok(&app, "scf", "DeleteTrigger", delete).await;
    assert_eq!(ok(&app, "scf", "ListTriggers", json!({"FunctionName": "echo"})).await["TotalCount"], 0);
    let targets = ok(&app, "clb", "DescribeTargets", json!({"LoadBalancerId": lb})).await;
    assert_eq!(targets["Listeners"][0]["Rules"][0]["FunctionTargets"].as_array().map_or(0, Vec::len), 0);

    // Described as Tencent's Serverless toolkit does: the listener by port and protocol.
    let desc = json!({"loadBalanceId": lb, "domain": "toolkit.fnlb.test", "port": port, "protocol": "HTTP",
        "url": "/kit", "weight": 10});
    let create = json!({"FunctionName": "echo", "TriggerName": "kit", "Type": "clb", "TriggerDesc": desc.to_string()});
    let created = ok(&app, "scf", "CreateTrigger", create).await;
    let shown: Value = serde_json::from_str(created["TriggerInfo"]["TriggerDesc"].as_str().unwrap()).unwrap();
    assert_eq!(shown["listenerId"], listener.as_str(), "{shown}");
    ok(&app, "scf", "DeleteTrigger", json!({"FunctionName": "echo", "TriggerName": "kit", "Type": "clb"})).await;

    // Made from the SCF side by the rule's id, removed from the CLB side.
    let desc = json!({"loadBalanceId": lb, "listenerId": listener, "locationId": location, "weight": 20});
    let create =
        json!({"FunctionName": "echo", "TriggerName": "again", "Type": "clb", "TriggerDesc": desc.to_string()});
    ok(&app, "scf", "CreateTrigger", create).await;
    let unbind = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": "echo", "FunctionQualifier": "$LATEST"}}]});
    ok(&app, "clb", "DeregisterFunctionTargets", unbind).await;
    assert_eq!(ok(&app, "scf", "ListTriggers", json!({"FunctionName": "echo"})).await["TotalCount"], 0);

    // Only CLB triggers are served.
    let timer = json!({"FunctionName": "echo", "TriggerName": "t", "Type": "timer", "TriggerDesc": "0 */5 * * * * *"});
    let refused = tccli(&app, "scf", "CreateTrigger", timer).await.unwrap_err();
    assert!(refused.stderr.contains("code:InvalidParameterValue.Type"), "{refused:?}");
}

/// Polls DescribeTaskStatus for a CLB mutation until it reports success, as Tencent's toolkit does.
async fn task_done(app: &TestApp, request_id: &Value) {
    eventually("the task succeeds", Duration::from_secs(30), || async {
        let status = ok(app, "clb", "DescribeTaskStatus", json!({"TaskId": request_id})).await;
        (status["Status"] == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_serverless_toolkit_sequence_and_https_with_an_inline_certificate() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    let ca = crate::https::Authority::new("conformance CA");
    let leaf = ca.leaf(&["toolkit.fnlb.test"]);
    let ca_file = ca.write(temp.path(), "ca.pem");

    // An HTTPS listener with its certificate inline, made through tccli.
    let (vip, port) = free_addr();
    let lb = ok(&app, "clb", "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await;
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let certificate =
        json!({"SSLMode": "UNIDIRECTIONAL", "CertName": "site", "CertContent": leaf.cert, "CertKey": leaf.key});
    let listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTPS", "Certificate": certificate});
    let created = ok(&app, "clb", "CreateListener", listener).await;
    task_done(&app, &created["RequestId"]).await;

    // The toolkit: find the listener, create the rule, wait, bind the function to `$DEFAULT`, wait.
    let listeners =
        ok(&app, "clb", "DescribeListeners", json!({"LoadBalancerId": lb, "Protocol": "HTTPS", "Port": port})).await;
    let listener = listeners["Listeners"][0]["ListenerId"].as_str().unwrap().to_string();
    assert!(listeners["Listeners"][0]["Certificate"]["CertId"].is_string(), "{listeners}");
    let rule =
        json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "toolkit.fnlb.test", "Url": "/"}]});
    let created = ok(&app, "clb", "CreateRule", rule).await;
    task_done(&app, &created["RequestId"]).await;
    let location = created["LocationIds"][0].as_str().unwrap().to_string();
    let bind = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "FunctionTargets": [
        {"Weight": 10, "Function": {"FunctionName": "echo", "FunctionNamespace": "default", "FunctionQualifier": "$DEFAULT"}}]});
    let bound = ok(&app, "clb", "RegisterFunctionTargets", bind).await;
    task_done(&app, &bound["RequestId"]).await;

    // Listed as a `clb` trigger with its resource id; served over TLS, the function seeing HTTPS.
    let triggers = ok(&app, "scf", "ListTriggers", json!({"FunctionName": "echo"})).await;
    let trigger = &triggers["Triggers"][0];
    assert_eq!(trigger["Type"], "clb");
    let resource = trigger["ResourceId"].as_str().unwrap();
    let from_function =
        ok(&app, "scf", "GetFunction", json!({"FunctionName": "echo"})).await["Triggers"][0]["ResourceId"].clone();
    assert_eq!(resource, from_function.as_str().unwrap(), "ListTriggers and GetFunction agree");
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir.join("credentials.json")).unwrap()).unwrap();
    assert!(resource.starts_with(&format!("qcs::clb:ap-guangzhou:uin/{}:", credentials["uin"].as_str().unwrap())));
    assert!(resource.ends_with(&format!(":{lb}/{listener}/{location}")), "{resource}");
    let fetched = crate::https::curl("toolkit.fnlb.test", &vip.to_string(), port, &ca_file, &[]).await;
    assert_eq!(fetched.code, 0, "{}", fetched.body);
    let event = &serde_json::from_str::<Value>(&fetched.body).unwrap()["event"];
    assert_eq!(event["headers"]["X-Client-Proto"], "https", "{event}");

    // The toolkit removes it with DeleteTrigger and its description.
    let delete = json!({"FunctionName": "echo", "Type": "clb", "TriggerName": trigger["TriggerName"],
        "TriggerDesc": trigger["TriggerDesc"]});
    ok(&app, "scf", "DeleteTrigger", delete).await;
    assert_eq!(ok(&app, "scf", "ListTriggers", json!({"FunctionName": "echo"})).await["TotalCount"], 0);
}

/// The code in tccli's message for a refused call.
fn refused(result: Result<Value, Failure>) -> String {
    let failure = result.expect_err("the call is refused");
    assert_eq!(failure.status, Some(255), "{failure:?}");
    let code = failure.stderr.split("code:").nth(1).and_then(|rest| rest.split_whitespace().next());
    code.unwrap_or_else(|| panic!("no code in {failure:?}")).to_string()
}

/// A load balancer (CreateLoadBalancer parameters `lb`) with an HTTP listener and a rule, in `region`:
/// (load balancer, listener, rule).
async fn http_rule(app: &TestApp, region: &str, lb: Value) -> (String, String, String) {
    let (vip, port) = free_addr();
    let mut params = json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()});
    params.as_object_mut().unwrap().extend(lb.as_object().unwrap().clone());
    let created = tccli_in(app, region, "clb", "CreateLoadBalancer", params).await.unwrap();
    let lb = created["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"});
    let created = tccli_in(app, region, "clb", "CreateListener", listener).await.unwrap();
    let listener = created["ListenerIds"][0].as_str().unwrap().to_string();
    let rule = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "r.fnlb.test", "Url": "/"}]});
    let created = tccli_in(app, region, "clb", "CreateRule", rule).await.unwrap();
    (lb, listener, created["LocationIds"][0].as_str().unwrap().to_string())
}

fn bind(lb: &str, listener: &str, location: &str, function: &str) -> Value {
    json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "FunctionTargets": [
        {"Weight": 10, "Function": {"FunctionName": function, "FunctionNamespace": "default", "FunctionQualifier": "$LATEST"}}]})
}

async fn create_function(app: &TestApp, region: &str, name: &str, extra: Value) {
    create_function_in(app, Keys::first(app), region, name, extra).await;
}

#[tokio::test]
async fn every_binding_restriction_is_refused_with_its_error() {
    let app = TestApp::start();
    create_function(&app, "ap-guangzhou", "one", json!({})).await;
    create_function(&app, "ap-guangzhou", "two", json!({})).await;
    create_function(&app, "ap-guangzhou", "web", json!({"Type": "HTTP"})).await;
    create_function(&app, "ap-shanghai", "elsewhere", json!({})).await;
    create_function(&app, "ap-nanjing", "nanjing", json!({})).await;

    // IPv4 and IPv6 NAT64 instances bind.
    let (lb, listener, location) = http_rule(&app, "ap-guangzhou", json!({})).await;
    ok(&app, "clb", "RegisterFunctionTargets", bind(&lb, &listener, &location, "one")).await;
    let (v6, v6_listener, v6_location) = http_rule(&app, "ap-guangzhou", json!({"AddressIPVersion": "IPV6"})).await;
    ok(&app, "clb", "RegisterFunctionTargets", bind(&v6, &v6_listener, &v6_location, "one")).await;

    // A second function on a rule; a rule that does not exist; a web function; a function in another region.
    let second = bind(&lb, &listener, &location, "two");
    assert_eq!(refused(tccli(&app, "clb", "RegisterFunctionTargets", second).await), "LimitExceeded");
    let before = bind(&lb, &listener, "loc-nothere", "two");
    assert_eq!(
        refused(tccli(&app, "clb", "RegisterFunctionTargets", before).await),
        "InvalidParameter.LocationNotFound"
    );
    let (free_lb, free_listener, free_location) = http_rule(&app, "ap-guangzhou", json!({})).await;
    let web = bind(&free_lb, &free_listener, &free_location, "web");
    assert_eq!(refused(tccli(&app, "clb", "RegisterFunctionTargets", web).await), "UnsupportedOperation");
    let elsewhere = bind(&free_lb, &free_listener, &free_location, "elsewhere");
    assert_eq!(refused(tccli(&app, "clb", "RegisterFunctionTargets", elsewhere).await), "ResourceNotFound");

    // Classic, classic-network and IPv6 full-chain instances.
    for (params, what) in [
        (json!({"Forward": 0}), "a classic load balancer"),
        (json!({"VpcId": "0"}), "a classic-network load balancer"),
        (
            json!({"AddressIPVersion": "IPv6FullChain", "VpcId": "vpc-1", "SubnetId": "subnet-1"}),
            "an IPv6 full-chain one",
        ),
    ] {
        let (lb, listener, location) = http_rule(&app, "ap-guangzhou", params).await;
        let code = refused(tccli(&app, "clb", "RegisterFunctionTargets", bind(&lb, &listener, &location, "two")).await);
        assert_eq!(code, "UnsupportedOperation", "{what}");
    }

    // Layer-4 and QUIC listeners.
    for protocol in ["TCP", "UDP", "QUIC"] {
        let (_, port) = free_addr();
        let created =
            ok(&app, "clb", "CreateListener", json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": protocol}))
                .await;
        let layer4 = created["ListenerIds"][0].as_str().unwrap();
        let code = refused(tccli(&app, "clb", "RegisterFunctionTargets", bind(&lb, layer4, &location, "two")).await);
        assert_eq!(code, "InvalidParameter.ProtocolCheckFailed", "{protocol}");
    }

    // A region where functions cannot be bound, and a region that is not served at all.
    let (nj, nj_listener, nj_location) = http_rule(&app, "ap-nanjing", json!({})).await;
    let nanjing = bind(&nj, &nj_listener, &nj_location, "nanjing");
    assert_eq!(
        refused(tccli_in(&app, "ap-nanjing", "clb", "RegisterFunctionTargets", nanjing).await),
        "UnsupportedOperation"
    );
    assert_eq!(refused(tccli_in(&app, "xx-nowhere", "scf", "ListFunctions", json!({})).await), "UnsupportedRegion");
}

#[tokio::test]
async fn accounts_cannot_see_or_touch_each_others_resources() {
    let temp = tempfile::tempdir().unwrap();
    let other = Keys { id: "AKIDotheraccount0001", key: "other-account-secret-key" };
    let traditional = Keys { id: "AKIDtraditional00001", key: "traditional-account-key" };
    let accounts = json!([
        {"SecretId": other.id, "SecretKey": other.key, "AppId": "1250000002", "Uin": "100000000002"},
        {"SecretId": traditional.id, "SecretKey": traditional.key, "AppId": "1250000003", "Uin": "100000000003",
         "Type": "traditional"},
    ]);
    let file = temp.path().join("accounts.json");
    std::fs::write(&file, accounts.to_string()).unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--accounts", file.to_str().unwrap()]);
    let gz = "ap-guangzhou";

    // The first account's function, load balancer, bound rule, certificate and custom configuration.
    create_function(&app, gz, "mine", json!({})).await;
    let (lb, listener, location) = http_rule(&app, gz, json!({})).await;
    ok(&app, "clb", "RegisterFunctionTargets", bind(&lb, &listener, &location, "mine")).await;
    let ca = crate::https::Authority::new("accounts CA");
    let leaf = ca.leaf(&["mine.fnlb.test"]);
    let (_, tls_port) = free_addr();
    let certificate = json!({"CertName": "mine", "CertContent": leaf.cert, "CertKey": leaf.key});
    let https = json!({"LoadBalancerId": lb, "Ports": [tls_port], "Protocol": "HTTPS", "Certificate": certificate});
    let https = ok(&app, "clb", "CreateListener", https).await["ListenerIds"][0].as_str().unwrap().to_string();
    let described = ok(&app, "clb", "DescribeListeners", json!({"LoadBalancerId": lb, "ListenerIds": [https]})).await;
    let cert_id = described["Listeners"][0]["Certificate"]["CertId"].as_str().unwrap().to_string();
    let config = json!({"OperationType": "ADD", "ConfigName": "mine", "ConfigContent": "server_tokens off;"});
    let config =
        ok(&app, "clb", "SetCustomizedConfigForLoadBalancer", config).await["ConfigId"].as_str().unwrap().to_string();

    // The other account sees none of it and can touch none of it, whatever ids it names.
    let call = |service: &'static str, action: &'static str, params: Value| {
        let app = &app;
        async move { tccli_as(app, other, gz, service, action, params).await }
    };
    assert_eq!(call("scf", "ListFunctions", json!({})).await.unwrap()["TotalCount"], 0);
    assert_eq!(refused(call("scf", "GetFunction", json!({"FunctionName": "mine"})).await), "ResourceNotFound.Function");
    assert_eq!(refused(call("scf", "Invoke", json!({"FunctionName": "mine"})).await), "ResourceNotFound.Function");
    assert_eq!(
        refused(call("scf", "DeleteFunction", json!({"FunctionName": "mine"})).await),
        "ResourceNotFound.Function"
    );
    assert_eq!(
        refused(call("scf", "ListTriggers", json!({"FunctionName": "mine"})).await),
        "ResourceNotFound.Function"
    );
    assert_eq!(call("clb", "DescribeLoadBalancers", json!({})).await.unwrap()["TotalCount"], 0);
    let named = call("clb", "DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]})).await.unwrap();
    assert_eq!(named["TotalCount"], 0);
    assert_eq!(
        refused(call("clb", "DescribeListeners", json!({"LoadBalancerId": lb})).await),
        "InvalidParameter.LBIdNotFound"
    );
    assert_eq!(
        refused(call("clb", "DescribeTargets", json!({"LoadBalancerId": lb})).await),
        "InvalidParameter.LBIdNotFound"
    );
    assert_eq!(
        refused(call("clb", "DeleteLoadBalancer", json!({"LoadBalancerIds": [lb]})).await),
        "InvalidParameter.LBIdNotFound"
    );
    let unbind = bind(&lb, &listener, &location, "mine");
    assert_eq!(refused(call("clb", "DeregisterFunctionTargets", unbind).await), "InvalidParameter.LBIdNotFound");
    let delete_rule = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [location]});
    assert_eq!(refused(call("clb", "DeleteRule", delete_rule).await), "InvalidParameter.LBIdNotFound");
    // Its own listener cannot use the first account's certificate; nor can it see or delete its configuration.
    let (own_lb, _, _) = {
        let (vip, port) = free_addr();
        let lb = call("clb", "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()}))
            .await
            .unwrap();
        (lb["LoadBalancerIds"][0].as_str().unwrap().to_string(), vip, port)
    };
    let (_, port) = free_addr();
    let borrowed = json!({"LoadBalancerId": own_lb, "Ports": [port], "Protocol": "HTTPS",
        "Certificate": {"SSLMode": "UNIDIRECTIONAL", "CertId": cert_id}});
    assert_eq!(refused(call("clb", "CreateListener", borrowed).await), "InvalidParameter.CertificateNotFound");
    let configs = call("clb", "DescribeCustomizedConfigList", json!({"ConfigType": "CLB"})).await.unwrap();
    assert_eq!(configs["TotalCount"], 0);
    let delete_config = json!({"OperationType": "DELETE", "UconfigId": config});
    assert_eq!(refused(call("clb", "SetCustomizedConfigForLoadBalancer", delete_config).await), "ResourceNotFound");
    let bind_config = json!({"OperationType": "BIND", "UconfigId": config, "LoadBalancerIds": [own_lb]});
    assert_eq!(refused(call("clb", "SetCustomizedConfigForLoadBalancer", bind_config).await), "ResourceNotFound");

    // Everything is still the first account's.
    assert_eq!(ok(&app, "scf", "ListTriggers", json!({"FunctionName": "mine"})).await["TotalCount"], 1);
    assert_eq!(ok(&app, "clb", "DescribeLoadBalancers", json!({})).await["TotalCount"], 1);

    // A traditional (bill-by-CVM) account may not bind functions to load balancers.
    create_function_as(&app, traditional, "cvm", json!({})).await;
    let (vip, port) = free_addr();
    let lb = tccli_as(
        &app,
        traditional,
        gz,
        "clb",
        "CreateLoadBalancer",
        json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()}),
    )
    .await
    .unwrap()["LoadBalancerIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"});
    let listener = tccli_as(&app, traditional, gz, "clb", "CreateListener", listener).await.unwrap()["ListenerIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let rule =
        json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "cvm.fnlb.test", "Url": "/"}]});
    let location = tccli_as(&app, traditional, gz, "clb", "CreateRule", rule).await.unwrap()["LocationIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let refused_bind =
        tccli_as(&app, traditional, gz, "clb", "RegisterFunctionTargets", bind(&lb, &listener, &location, "cvm")).await;
    assert_eq!(refused(refused_bind), "UnsupportedOperation");
}

async fn create_function_as(app: &TestApp, keys: Keys<'_>, name: &str, extra: Value) {
    create_function_in(app, keys, "ap-guangzhou", name, extra).await;
}

/// The echo fixture as a function of an account in a region.
async fn create_function_in(app: &TestApp, keys: Keys<'_>, region: &str, name: &str, extra: Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/functions/echo");
    let zip = fnlb::functions::zip_dir(&dir).unwrap();
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, zip);
    let mut params = json!({"FunctionName": name, "Runtime": "Python3.9", "Handler": "index.main_handler",
        "Code": {"ZipFile": code}});
    params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    tccli_as(app, keys, region, "scf", "CreateFunction", params).await.unwrap();
}

#[tokio::test]
async fn an_account_removed_from_the_accounts_file_is_refused_and_its_resources_kept() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let file = temp.path().join("accounts.json");
    let keys = Keys { id: "AKIDcomesandgoes0001", key: "comes-and-goes-secret" };
    let entry = json!({"SecretId": keys.id, "SecretKey": keys.key, "AppId": "1250000009", "Uin": "100000000009"});
    std::fs::write(&file, json!([entry]).to_string()).unwrap();
    let flags = ["--accounts", file.to_str().unwrap()];

    let app = TestApp::start_in(&data, &flags);
    create_function_as(&app, keys, "kept", json!({})).await;
    assert!(app.terminate(Duration::from_secs(30)), "fnlb stops on SIGTERM");

    std::fs::write(&file, "[]").unwrap();
    let app = TestApp::start_in(&data, &flags);
    let refused_call = tccli_as(&app, keys, "ap-guangzhou", "scf", "ListFunctions", json!({})).await;
    assert!(refused(refused_call).starts_with("AuthFailure"));
    assert!(app.terminate(Duration::from_secs(30)));

    std::fs::write(&file, json!([entry]).to_string()).unwrap();
    let app = TestApp::start_in(&data, &flags);
    let listed = tccli_as(&app, keys, "ap-guangzhou", "scf", "ListFunctions", json!({})).await.unwrap();
    assert_eq!(listed["Functions"][0]["FunctionName"], "kept", "{listed}");
}
