//! The listener's protections: slow clients, oversized heads and bodies, the connection limits (in all and per
//! client address). None of them is a crash or a hang, and the listener serves others throughout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, get, request};

/// Sends raw bytes on a new connection and reads what comes back until the server closes it (at most `wait`).
async fn exchange(addr: &str, bytes: &[u8], wait: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection within {wait:?}");
    (String::from_utf8_lossy(&answer).to_string(), started.elapsed())
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

#[tokio::test]
async fn oversized_and_slow_requests_are_cut_off() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--header-timeout", "2"]);
    app.create_fixture("guarded", "echo", json!({})).await.unwrap();
    let base = app.route_to("guarded").await.base;
    let addr = base.trim_start_matches("http://").to_string();

    // A slowloris client: a header line every half second, never the end of the head.
    let started = Instant::now();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: fnlb.test\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..40 {
        if slow.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "a client that never finishes its head is cut off");
    assert!(started.elapsed() < Duration::from_secs(10), "by the header timeout: {:?}", started.elapsed());

    // Too many header fields, a head too large, a request line too long: an error status, never a hang.
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (answer, _) =
        exchange(&addr, format!("GET / HTTP/1.1\r\nHost: fnlb.test\r\n{many}\r\n").as_bytes(), Duration::from_secs(10))
            .await;
    assert_eq!(status(&answer), "431", "{answer}");
    let huge = "v".repeat(100 * 1024);
    let (answer, _) = exchange(
        &addr,
        format!("GET / HTTP/1.1\r\nHost: fnlb.test\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status(&answer), "431", "{}", &answer[..answer.len().min(200)]);
    let (answer, _) =
        exchange(&addr, format!("GET /{huge} HTTP/1.1\r\nHost: fnlb.test\r\n\r\n").as_bytes(), Duration::from_secs(10))
            .await;
    assert!(matches!(status(&answer), "414" | "431"), "{}", &answer[..answer.len().min(200)]);
    let (answer, _) = exchange(&addr, b"NONSENSE\r\n\r\n", Duration::from_secs(10)).await;
    assert_eq!(status(&answer), "400", "{answer}");

    assert_eq!(get(&format!("{base}/")).await.status, 200, "the listener still serves");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_connections_are_limited() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--max-body-size", "1000", "--max-connections", "3"]);
    let backend = crate::servers::Backend::start("only").await;
    let (vip, port) = crate::harness::free_addr();
    let lb = app.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener =
        app.clb("CreateListener", json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"})).await.unwrap();
    let listener = listener["ListenerIds"][0].as_str().unwrap().to_string();
    serve_from(&app, &lb, &listener, backend.addr.port()).await;
    let base = format!("http://{vip}:{port}");

    let small = request("POST", &format!("{base}/"), &[], Bytes::from(vec![b'x'; 1000])).await;
    assert_eq!(small.status, 200);
    let large = request("POST", &format!("{base}/"), &[], Bytes::from(vec![b'x'; 1001])).await;
    assert_eq!(large.status, 413);

    // Three connections are held open; a fourth is closed at once; once one goes, new ones are served again.
    let addr = format!("{vip}:{port}");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: fnlb.test\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[9..12], b"200");
        held.push(stream);
    }
    let (answer, _) = exchange(&addr, b"GET / HTTP/1.1\r\nHost: fnlb.test\r\n\r\n", Duration::from_secs(10)).await;
    assert_eq!(answer, "", "the connection over the limit is closed unanswered");
    held.pop();
    crate::harness::eventually("a freed slot serves again", Duration::from_secs(10), || async {
        let (answer, _) =
            exchange(&addr, b"GET / HTTP/1.1\r\nHost: fnlb.test\r\nConnection: close\r\n\r\n", Duration::from_secs(10))
                .await;
        (status(&answer) == "200").then_some(())
    })
    .await;
}

#[tokio::test]
async fn stalled_bodies_and_silent_servers_are_timed_out() {
    let temp = tempfile::tempdir().unwrap();
    let flags = ["--body-timeout", "1", "--proxy-send-timeout", "1", "--proxy-read-timeout", "1"];
    let app = TestApp::start_in(&temp.path().join("data"), &flags);
    // A server that accepts connections and never reads from them nor answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let rules = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [
        {"Domain": "fnlb.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}},
        {"Domain": "fnlb.test", "Url": "/fn"},
    ]});
    let created = app.clb("CreateRule", rules).await.unwrap();
    let (servers, function) =
        (created["LocationIds"][0].as_str().unwrap(), created["LocationIds"][1].as_str().unwrap());
    let targets = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": servers,
        "Targets": [{"EniIp": "127.0.0.1", "Port": silent_port}]});
    app.clb("RegisterTargets", targets).await.unwrap();
    app.create_fixture("echo", "echo", json!({})).await.unwrap();
    app.clb("RegisterFunctionTargets", crate::harness::bind_params(&lb, &listener, function, "echo")).await.unwrap();
    let addr = format!("{vip}:{port}");

    // A client that stops sending its body: 408, to a function and to a server alike.
    for path in ["/fn", "/"] {
        let head = format!("POST {path} HTTP/1.1\r\nHost: fnlb.test\r\nContent-Length: 100\r\n\r\n0123456789");
        let (answer, took) = exchange(&addr, head.as_bytes(), Duration::from_secs(20)).await;
        assert_eq!(status(&answer), "408", "{path}: {answer}");
        assert!(took >= Duration::from_millis(900), "{path}: after {took:?}");
    }

    // A server that takes the request and never answers: 504 after the read timeout.
    let (answer, took) =
        exchange(&addr, b"GET / HTTP/1.1\r\nHost: fnlb.test\r\nConnection: close\r\n\r\n", Duration::from_secs(20))
            .await;
    assert_eq!(status(&answer), "504", "{answer}");
    assert!(took >= Duration::from_millis(900), "after {took:?}");

    // A server that stops taking a body the client keeps sending: 504 after the send timeout, while the client is
    // still writing.
    let size = 32 << 20;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: fnlb.test\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..32 {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), reader.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(&answer[9..12], b"504");
    writing.abort();
    hold.abort();
}

#[tokio::test]
async fn requests_with_two_hosts_or_none_are_400_as_rfc_9112_says() {
    let app = TestApp::start();
    app.create_fixture("hosted", "echo", json!({})).await.unwrap();
    let base = app.route_to("hosted").await.base;
    let addr = base.trim_start_matches("http://").to_string();
    let wait = Duration::from_secs(10);
    let close = "Connection: close\r\n";
    // Two Host lines: neither is routed on, nothing reaches the function.
    let (two, _) =
        exchange(&addr, format!("GET / HTTP/1.1\r\nHost: fnlb.test\r\nHost: b.test\r\n{close}\r\n").as_bytes(), wait)
            .await;
    assert_eq!(status(&two), "400", "{two}");
    // An HTTP/1.1 request without Host.
    let (none, _) = exchange(&addr, format!("GET / HTTP/1.1\r\n{close}\r\n").as_bytes(), wait).await;
    assert_eq!(status(&none), "400", "{none}");
    // HTTP/1.0 may go without one; one Host line is served.
    let (old, _) = exchange(&addr, b"GET / HTTP/1.0\r\n\r\n", wait).await;
    assert_ne!(status(&old), "400", "{old}");
    let (one, _) = exchange(&addr, format!("GET / HTTP/1.1\r\nHost: fnlb.test\r\n{close}\r\n").as_bytes(), wait).await;
    assert_eq!(status(&one), "200", "{one}");
    // Only the HTTP/1.0 request and the one with one Host reached the function.
    let logs = app.scf("GetFunctionLogs", json!({"FunctionName": "hosted"})).await.unwrap();
    assert_eq!(logs["TotalCount"], 2, "{logs}");
}

/// An open client connection to `addr` that sends requests one after another, and the task driving it.
async fn open(
    addr: &str,
) -> (hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    (
        sender,
        tokio::spawn(async move {
            let _ = connection.await;
        }),
    )
}

/// A `GET /` on an open connection: its status.
async fn get_on(sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>) -> u16 {
    let request = http::Request::get("/").header("Host", "fnlb.test").body(http_body_util::Empty::new()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await.unwrap().unwrap();
    let status = response.status().as_u16();
    http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
    status
}

#[tokio::test]
async fn connections_past_the_cap_of_one_client_address_are_closed() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--max-connections-per-client", "5"]);
    let backend = crate::servers::Backend::start("capped").await;
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;
    serve_from(&app, &lb, &listener, backend.addr.port()).await;
    let addr = format!("{vip}:{port}");

    // Five connections from 127.0.0.1 are held open and served.
    let mut held = Vec::new();
    for _ in 0..5 {
        let (mut sender, task) = open(&addr).await;
        assert_eq!(get_on(&mut sender).await, 200);
        held.push((sender, task));
    }
    // A sixth from the same address is closed unanswered; another address is not held to its cap.
    let request = b"GET / HTTP/1.1\r\nHost: fnlb.test\r\nConnection: close\r\n\r\n";
    let (answer, _) = exchange(&addr, request, Duration::from_secs(10)).await;
    assert_eq!(answer, "", "the sixth connection is closed unanswered");
    let other = crate::harness::post_from([127, 0, 0, 2], addr.parse().unwrap(), "/", &[], "").await;
    assert_eq!(other.0, 200, "another client address is served");
    // The five stay usable.
    for (sender, _) in &mut held {
        assert_eq!(get_on(sender).await, 200);
    }
    let metrics = crate::harness::get(&format!("http://{}/metrics", app.admin_addr)).await.text();
    let refused = [("listener", listener.as_str())];
    assert_eq!(crate::operations::sample(&metrics, "fnlb_listener_connections_refused_total", &refused), 1.0);

    // Once one closes, a new connection is accepted.
    let (sender, task) = held.pop().unwrap();
    drop(sender);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the connection closes").unwrap();
    crate::harness::eventually("a freed place serves again", Duration::from_secs(10), || async {
        let (answer, _) = exchange(&addr, request, Duration::from_secs(10)).await;
        (status(&answer) == "200").then_some(())
    })
    .await;
}

/// A rule on `/` of `fnlb.test` whose one target is the server on `port` (health checks off).
async fn serve_from(app: &TestApp, lb: &str, listener: &str, port: u16) {
    let rule = json!({"LoadBalancerId": lb, "ListenerId": listener,
        "Rules": [{"Domain": "fnlb.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}}]});
    let location = app.clb("CreateRule", rule).await.unwrap()["LocationIds"][0].as_str().unwrap().to_string();
    let targets = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": [{"EniIp": "127.0.0.1", "Port": port}]});
    app.clb("RegisterTargets", targets).await.unwrap();
}
