//! Layer-7 custom configuration: created, bound at the instance, domain and rule levels, and felt by clients,
//! servers and functions; keep-alive limits end real connections.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, bind_params, request};
use crate::servers::Backend;

/// A load balancer with an HTTP listener: a rule on `/` of `custom.test` forwarding to `backend`, and one on
/// `/fn` bound to the echo function. Returns (lb, listener, server rule, function rule, base URL).
async fn setup(app: &TestApp, backend: &Backend) -> (String, String, String, String, String) {
    let (lb, listener, vip, port) = crate::harness::listener(app, "HTTP", json!({})).await;
    let rules = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [
        {"Domain": "custom.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}},
        {"Domain": "custom.test", "Url": "/fn"},
    ]});
    let created = app.clb("CreateRule", rules).await.unwrap();
    let servers = created["LocationIds"][0].as_str().unwrap().to_string();
    let function = created["LocationIds"][1].as_str().unwrap().to_string();
    let targets = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": servers,
        "Targets": [{"EniIp": "127.0.0.1", "Port": backend.addr.port(), "Weight": 10}],
    });
    app.clb("RegisterTargets", targets).await.unwrap();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    app.clb("RegisterFunctionTargets", bind_params(&lb, &listener, &function, "echo")).await.unwrap();
    (lb, listener, servers, function, format!("http://{vip}:{port}"))
}

async fn get(url: &str) -> crate::harness::Reply {
    request("GET", url, &[("Host", "custom.test")], Bytes::new()).await
}

fn code(result: Result<Value, fnlb::client::ClientError>) -> String {
    match result {
        Ok(v) => panic!("accepted: {v}"),
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn custom_configuration_shapes_requests_and_answers_at_each_level() {
    let app = TestApp::start();
    let backend = Backend::start("backend").await;
    let (lb, listener, _servers, function_rule, base) = setup(&app, &backend).await;
    let vip = base.trim_start_matches("http://").split(':').next().unwrap().to_string();
    let port = base.rsplit(':').next().unwrap().to_string();

    // The instance level: headers for servers and functions, response headers, a body limit.
    let content = "server_tokens on;\r\nadd_header X-Edge instance;\nclient_max_body_size 1M;\n\
                   proxy_set_header X-Vip $server_addr; proxy_set_header X-Vport $vport;\n\
                   proxy_set_header X-Uri $uri; proxy_set_header X-Method $request_method;\n\
                   proxy_set_header X-Real-Port $remote_port;";
    let added = app
        .clb(
            "SetCustomizedConfigForLoadBalancer",
            json!({"OperationType": "ADD", "ConfigName": "edge", "ConfigContent": content}),
        )
        .await
        .unwrap();
    let instance = added["ConfigId"].as_str().unwrap().to_string();
    assert!(instance.starts_with("pz-"), "{added}");
    let bind = json!({"OperationType": "BIND", "UconfigId": instance, "LoadBalancerIds": [lb]});
    app.clb("SetCustomizedConfigForLoadBalancer", bind).await.unwrap();
    let described = app.clb("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]})).await.unwrap();
    assert_eq!(described["LoadBalancerSet"][0]["ConfigId"], instance.as_str());

    let reply = get(&format!("{base}/x?a=1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-edge"), "instance");
    assert_eq!(reply.header("server"), concat!("fnlb/", env!("CARGO_PKG_VERSION")));
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-vip"], vip.as_str(), "{headers}");
    assert_eq!(headers["x-vport"], port.as_str());
    assert_eq!(headers["x-uri"], "/x");
    assert_eq!(headers["x-method"], "GET");
    assert!(headers["x-real-port"].as_str().unwrap().parse::<u16>().is_ok(), "{headers}");

    let event = get(&format!("{base}/fn")).await.json()["event"].clone();
    let headers = &event["headers"];
    assert_eq!(headers["X-Vip"], vip.as_str(), "{event}");
    assert_eq!(headers["X-Vport"], port.as_str());
    assert_eq!(headers["X-Uri"], "/fn");
    assert_eq!(headers["X-Method"], "GET");

    // A body declared over the limit is refused before it is sent.
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let head = format!("POST /x HTTP/1.1\r\nHost: custom.test\r\nContent-Length: {}\r\n\r\n", 2 << 20);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(&answer[..12], b"HTTP/1.1 413");
    let small = request("POST", &format!("{base}/x"), &[("Host", "custom.test")], vec![b'x'; 512 << 10]).await;
    assert_eq!(small.json()["body_bytes"], 512 << 10);

    // The rule level wins for its rule: its `add_header` list replaces the instance's.
    let rule_content = "add_header X-Rule yes always;\nmore_set_headers \"Server: edge-rule\";";
    let added = app
        .clb(
            "AddCustomizedConfig",
            json!({"ConfigName": "rule", "ConfigType": "LOCATION", "ConfigContent": rule_content}),
        )
        .await
        .unwrap();
    let rule_config = added["ConfigId"].as_str().unwrap().to_string();
    let place =
        json!([{"LoadBalancerId": lb, "ListenerId": listener, "Domain": "custom.test", "LocationId": function_rule}]);
    app.clb("AssociateCustomizedConfig", json!({"UconfigId": rule_config, "BindList": place})).await.unwrap();
    let reply = get(&format!("{base}/fn")).await;
    assert_eq!((reply.header("x-rule"), reply.header("x-edge")), ("yes", ""));
    assert_eq!(reply.header("server"), "edge-rule");
    assert_eq!(reply.json()["event"]["headers"]["X-Vip"], vip.as_str(), "the instance's proxy_set_header stays");
    assert_eq!(get(&format!("{base}/x")).await.header("x-edge"), "instance");

    // A change of content takes effect for every place at once.
    let modify = json!({"UconfigId": instance, "ConfigContent": "add_header X-Edge changed;"});
    app.clb("ModifyCustomizedConfig", modify).await.unwrap();
    let reply = get(&format!("{base}/x")).await;
    assert_eq!(reply.header("x-edge"), "changed");
    assert_eq!(reply.header("server"), "fnlb");
    assert!(reply.json()["headers"].get("x-vip").is_none());

    // Reading back.
    let list = app.clb("DescribeCustomizedConfigList", json!({"ConfigType": "CLB"})).await.unwrap();
    assert_eq!(list["TotalCount"], 1);
    assert_eq!(list["ConfigList"][0]["ConfigContent"], "add_header X-Edge changed;");
    let list = app
        .clb(
            "DescribeCustomizedConfigList",
            json!({"ConfigType": "LOCATION", "Filters": [{"Name": "loadbalancer-id", "Values": [lb]}]}),
        )
        .await
        .unwrap();
    assert_eq!(list["ConfigList"][0]["UconfigId"], rule_config.as_str());
    let bound = app.clb("DescribeCustomizedConfigAssociateList", json!({"UconfigId": rule_config})).await.unwrap();
    assert_eq!(bound["TotalCount"], 1);
    assert_eq!(bound["BindList"][0]["LocationId"], function_rule.as_str());
    assert_eq!(bound["BindList"][0]["Url"], "/fn");
    assert_eq!(bound["BindList"][0]["Vport"], port.parse::<u64>().unwrap());

    // Refusals: content Tencent refuses, a place of the wrong kind, deleting what is bound.
    let bad = json!({"ConfigName": "bad", "ConfigType": "SERVER", "ConfigContent": "client_header_timeout 5s;"});
    assert_eq!(code(app.clb("AddCustomizedConfig", bad).await), "InvalidParameterValue");
    let bad = json!({"ConfigName": "bad", "ConfigType": "SERVER", "ConfigContent": "gzip on;"});
    assert_eq!(code(app.clb("AddCustomizedConfig", bad).await), "InvalidParameterValue");
    let wrong = json!({"OperationType": "BIND", "UconfigId": rule_config, "LoadBalancerIds": [lb]});
    assert_eq!(code(app.clb("SetCustomizedConfigForLoadBalancer", wrong).await), "InvalidParameter");
    let delete = json!({"UconfigIdList": [rule_config]});
    assert_eq!(code(app.clb("DeleteCustomizedConfig", delete.clone()).await), "FailedOperation.ResourceInUse");
    app.clb("DisassociateCustomizedConfig", json!({"UconfigId": rule_config, "BindList": place})).await.unwrap();
    app.clb("DeleteCustomizedConfig", delete).await.unwrap();
    assert_eq!(get(&format!("{base}/fn")).await.header("x-edge"), "changed");

    // The domain level sits between the two.
    let added = app
        .clb(
            "AddCustomizedConfig",
            json!({"ConfigName": "domain", "ConfigType": "SERVER", "ConfigContent": "add_header X-Domain d;"}),
        )
        .await
        .unwrap();
    let domain_config = added["ConfigId"].as_str().unwrap();
    let place = json!([{"LoadBalancerId": lb, "ListenerId": listener, "Domain": "custom.test"}]);
    app.clb("AssociateCustomizedConfig", json!({"UconfigId": domain_config, "BindList": place})).await.unwrap();
    let reply = get(&format!("{base}/x")).await;
    assert_eq!((reply.header("x-domain"), reply.header("x-edge")), ("d", ""));
    let bound = app.clb("DescribeCustomizedConfigAssociateList", json!({"Domain": "custom.test"})).await.unwrap();
    assert_eq!(bound["TotalCount"], 1, "{bound}");
    assert_eq!(bound["BindList"][0]["UconfigId"], domain_config);
}

/// Reads from a connection until it closes; how long that took.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at((started + wait).into(), stream.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn keepalive_limits_end_client_connections() {
    let app = TestApp::start();
    let backend = Backend::start("backend").await;
    let (lb, _listener, _servers, _function, base) = setup(&app, &backend).await;
    let addr = base.trim_start_matches("http://").to_string();
    let one = b"GET /x HTTP/1.1\r\nHost: custom.test\r\n\r\n";

    let content = "keepalive_requests 2;\nkeepalive_timeout 1s;";
    let added = app
        .clb(
            "SetCustomizedConfigForLoadBalancer",
            json!({"OperationType": "ADD", "ConfigName": "ka", "ConfigContent": content}),
        )
        .await
        .unwrap();
    let id = added["ConfigId"].as_str().unwrap();
    let bind = json!({"OperationType": "BIND", "UconfigId": id, "LoadBalancerIds": [lb]});
    app.clb("SetCustomizedConfigForLoadBalancer", bind).await.unwrap();

    // Two requests on one connection: both answered, then the connection is closed.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(&[&one[..], &one[..]].concat()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection closes after its second request")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    // One request, then silence: the idle connection is closed after about a second, not kept.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(one).await.unwrap();
    let idle = closed_within(&mut stream, Duration::from_secs(10)).await.expect("the idle connection is closed");
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");

    // Without the configuration the same connection stays open past that.
    let unbind = json!({"OperationType": "UNBIND", "UconfigId": id, "LoadBalancerIds": [lb]});
    app.clb("SetCustomizedConfigForLoadBalancer", unbind).await.unwrap();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(one).await.unwrap();
    assert_eq!(closed_within(&mut stream, Duration::from_secs(3)).await, None, "kept alive");
}
