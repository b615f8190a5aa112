//! Layer-4 listeners: TCP and TCP_SSL relayed to the listener's own targets, with TCP health checks.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, request};
use crate::servers::Backend;

async fn listener(app: &TestApp, protocol: &str, extra: Value) -> (String, String, String) {
    let (lb, listener, vip, port) = crate::harness::listener(app, protocol, extra).await;
    (lb, listener, format!("{vip}:{port}"))
}

/// The servers that answered `connections` requests to `addr`, each on a connection of its own (all answered 200).
async fn servers_answering(addr: &str, connections: usize) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..connections {
        let reply = request("GET", &format!("http://{addr}/"), &[("Connection", "close")], Bytes::new()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen.insert(reply.json()["server"].as_str().unwrap().to_string());
    }
    seen
}

#[tokio::test]
async fn tcp_listeners_relay_to_their_targets_and_check_them() {
    let app = TestApp::start();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check =
        json!({"HealthCheck": {"HealthSwitch": 1, "TimeOut": 2, "IntervalTime": 3, "HealthNum": 2, "UnHealthNum": 2}});
    let (lb, listener, addr) = listener(&app, "TCP", check).await;
    let register = json!({"LoadBalancerId": lb, "ListenerId": listener, "Targets": [
        {"EniIp": "127.0.0.1", "Port": a.addr.port(), "Weight": 10},
        {"EniIp": "127.0.0.1", "Port": b.addr.port(), "Weight": 10},
        {"EniIp": "127.0.0.1", "Port": gone.port(), "Weight": 10},
    ]});
    app.clb("RegisterTargets", register).await.unwrap();

    // Each connection goes to a target; one that cannot be connected to is skipped.
    let seen = servers_answering(&addr, 9).await;
    assert_eq!(seen.len(), 2, "{seen:?}");

    let dead = eventually("the closed port is found dead", Duration::from_secs(20), || async {
        let described = app.clb("DescribeTargetHealth", json!({"LoadBalancerIds": [lb]})).await.unwrap();
        let targets = described["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"].as_array()?.clone();
        let gone = targets.iter().find(|t| t["Port"] == json!(gone.port()))?.clone();
        (gone["HealthStatusDetail"] == "Dead").then_some(targets)
    })
    .await;
    assert_eq!(dead.iter().filter(|t| t["HealthStatusDetail"] == "Alive").count(), 2, "{dead:?}");
    let described = app.clb("DescribeTargets", json!({"LoadBalancerId": lb})).await.unwrap();
    assert_eq!(described["Listeners"][0]["Targets"].as_array().map(Vec::len), Some(3));

    // The scheduler and the health check change in place (the fields given over the current check).
    let modify = json!({"LoadBalancerId": lb, "ListenerId": listener, "Scheduler": "LEAST_CONN",
        "HealthCheck": {"IntervalTime": 5}});
    app.clb("ModifyListener", modify).await.unwrap();
    let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    let modified = &described["Listeners"][0];
    assert_eq!(modified["Scheduler"], "LEAST_CONN", "{modified}");
    assert_eq!((&modified["HealthCheck"]["IntervalTime"], &modified["HealthCheck"]["TimeOut"]), (&json!(5), &json!(2)));
    servers_answering(&addr, 4).await;
    // Session persistence: a client address keeps the target it got while the time runs (both took turns before).
    let persist = json!({"LoadBalancerId": lb, "ListenerId": listener, "Scheduler": "WRR", "SessionExpireTime": 30});
    app.clb("ModifyListener", persist).await.unwrap();
    let kept = servers_answering(&addr, 6).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let wrong = json!({"LoadBalancerId": lb, "ListenerId": listener, "SessionExpireTime": 10});
    assert!(app.clb("ModifyListener", wrong).await.is_err(), "SessionExpireTime is 0 or 30 to 3600");
    let wrong = json!({"LoadBalancerId": lb, "ListenerId": listener, "Scheduler": "IP_HASH"});
    assert!(app.clb("ModifyListener", wrong).await.is_err(), "IP_HASH is a layer-7 rule's scheduler");
    let (lb7, listener7, _, _) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let layer7 = json!({"LoadBalancerId": lb7, "ListenerId": listener7, "Scheduler": "LEAST_CONN"});
    assert!(app.clb("ModifyListener", layer7).await.is_err(), "an HTTP listener's scheduler is its rules'");

    // A function cannot be bound to a layer-4 listener, and its targets need no rule.
    app.create_fixture("l4", "echo", json!({})).await.unwrap();
    let bind = crate::harness::bind_params(&lb, &listener, "loc-none", "l4");
    assert!(app.clb("RegisterFunctionTargets", bind).await.is_err());
}

#[tokio::test]
async fn tcp_ssl_listeners_terminate_tls_in_front_of_plain_targets() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = crate::https::Authority::new("l4 CA");
    let ca_file = temp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let leaf = ca.leaf(&["tcp.test"]);
    let backend = Backend::start("plain").await;
    let certificate = json!({"Certificate": {"CertContent": leaf.cert, "CertKey": leaf.key}});
    let (lb, listener, addr) = listener(&app, "TCP_SSL", certificate).await;
    let register = json!({"LoadBalancerId": lb, "ListenerId": listener,
        "Targets": [{"EniIp": "127.0.0.1", "Port": backend.addr.port()}]});
    app.clb("RegisterTargets", register).await.unwrap();
    let (vip, port) = addr.split_once(':').unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&ca_file)
        .arg("--resolve")
        .arg(format!("tcp.test:{port}:{vip}"))
        .arg(format!("https://tcp.test:{port}/through"))
        .output()
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{body} {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((seen["server"].as_str(), seen["path"].as_str()), (Some("plain"), Some("/through")));
}

/// A UDP server that answers each datagram with its name and the datagram.
async fn udp_echo(name: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let answer = [name.as_bytes(), b":", &buf[..len]].concat();
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn udp_listeners_relay_datagrams_and_keep_a_client_on_its_target() {
    let app = TestApp::start();
    let ((a, task_a), (b, task_b)) = (udp_echo("a").await, udp_echo("b").await);
    let (lb, listener, addr) = listener(&app, "UDP", json!({})).await;
    let register = json!({"LoadBalancerId": lb, "ListenerId": listener, "Targets": [
        {"EniIp": "127.0.0.1", "Port": a.port()}, {"EniIp": "127.0.0.1", "Port": b.port()},
    ]});
    app.clb("RegisterTargets", register).await.unwrap();
    let mut targets = std::collections::HashSet::new();
    for client in 0..4 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(&addr).await.unwrap();
        let mut first = None;
        for n in 0..3 {
            let message = format!("client {client} datagram {n}");
            socket.send(message.as_bytes()).await.unwrap();
            let mut buf = [0u8; 1500];
            let len = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf)).await.unwrap().unwrap();
            let answer = String::from_utf8_lossy(&buf[..len]).to_string();
            let (server, echoed) = answer.split_once(':').unwrap();
            assert_eq!(echoed, message);
            assert_eq!(*first.get_or_insert(server.to_string()), server, "a client keeps its target");
        }
        targets.extend(first);
    }
    assert_eq!(targets.len(), 2, "clients are spread over the targets");
    task_a.abort();
    task_b.abort();
}
