//! HTTP/1.1 on the wire between a client, fnlb and a server: every way an answer's body can end, interim answers,
//! hop-by-hop headers, kept-alive connections on both sides (and a connection per request to servers without
//! `KeepaliveEnable`), pipelined requests of different kinds on one connection, servers that close their
//! connections, and malformed chunked request bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, request};

/// A server answering each path (by its last segment) with bytes written by hand; it counts the connections it
/// accepted and, with `close_each`, closes every connection after its first answer (without saying so).
pub(crate) struct Scripted {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Requests read, answered or not.
    pub(crate) requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub(crate) async fn start(close_each: bool) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (count, read) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer_requests(stream, close_each, read.clone()));
            }
        });
        Scripted { addr, connections, requests, task }
    }
}

async fn answer_requests(mut stream: TcpStream, close_each: bool, requests: Arc<AtomicUsize>) {
    let mut buffer = Vec::new();
    loop {
        let (head, method, path, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = request.parse(&buffer) {
                let header = |name: &str| request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
                let length =
                    header("content-length").map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
                let chunked = header("transfer-encoding").is_some();
                let (method, path) = (request.method.unwrap().to_string(), request.path.unwrap().to_string());
                break (head, method, path, length, chunked);
            }
            if !matches!(stream.read_buf(&mut buffer).await, Ok(n) if n > 0) {
                return;
            }
        };
        // A chunked body ends where its last chunk and trailers do.
        let length = loop {
            let end = if chunked { chunked_end(&buffer[head..]) } else { Some(length) };
            match end {
                Some(length) if buffer.len() >= head + length => break length,
                _ => {}
            }
            if !matches!(stream.read_buf(&mut buffer).await, Ok(n) if n > 0) {
                return;
            }
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let request: Vec<u8> = buffer.drain(..head + length).collect();
        let path = path.split('?').next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let answer: Vec<u8> = match (method.as_str(), name) {
            (_, "drop") => return,
            (_, "broken") => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec(),
            (_, "dup") => {
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\nServer: backend\r\nConnection: X-Private\r\nX-Private: hidden\r\nContent-Length: 2\r\n\r\nok".to_vec()
            }
            (_, "204") => b"HTTP/1.1 204 No Content\r\nX-N: 1\r\n\r\n".to_vec(),
            (_, "headers") => {
                let text = received_headers(&request[..head], length);
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
            }
            (_, "length") => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\n\r\nhello".to_vec()
            }
            (_, "chunked") => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n".to_vec()
            }
            (_, "early") => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
            }
            ("HEAD", "head") => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            (_, "echo") => {
                let mut answer = format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n", request.len()).into_bytes();
                answer.extend_from_slice(&request);
                answer
            }
            (_, "close") => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if stream.write_all(&answer).await.is_err() || close_each || matches!(name, "close" | "broken") {
            return;
        }
    }
}

/// Where a chunked body at the start of `body` ends, once all of it is there.
fn chunked_end(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[at..at + line]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        at += line + 2;
        if size == 0 {
            // Trailers, each a line, up to an empty one.
            loop {
                let line = body[at..].windows(2).position(|w| w == b"\r\n")?;
                at += line + 2;
                if line == 0 {
                    return Some(at);
                }
            }
        }
        at += size + 2;
        if at > body.len() {
            return None;
        }
    }
}

/// A request's headers as a server got them, apart from their case and the order of different names: one line
/// each, by name, the values of a name in order (the start time aside), and the body's length.
fn received_headers(head: &[u8], length: usize) -> String {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut storage);
    request.parse(head).unwrap();
    let mut lines: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("x-stgw-time"))
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text: String = lines.iter().map(|(name, value)| format!("{name}: {value}\n")).collect();
    text.push_str(&format!("body: {length}\n"));
    text
}

/// An HTTP listener keeping its server connections alive, with a rule for `wire.test` + `url` forwarding to
/// `server`; the listener's base URL.
async fn forwarding(app: &TestApp, url: &str, server: SocketAddr) -> (String, SocketAddr) {
    forwarding_on(app, "HTTP", json!({"KeepaliveEnable": 1}), url, server).await
}

/// A listener of `protocol` (`extra` merged into CreateListener's parameters) with a rule for `wire.test` + `url`
/// forwarding to `server`.
async fn forwarding_on(
    app: &TestApp,
    protocol: &str,
    extra: serde_json::Value,
    url: &str,
    server: SocketAddr,
) -> (String, SocketAddr) {
    let (lb, listener, vip, port) = crate::harness::listener(app, protocol, extra).await;
    let rule = json!({"Domain": "wire.test", "Url": url, "HealthCheck": {"HealthSwitch": 0}});
    let created =
        app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [rule]})).await.unwrap();
    let location = created["LocationIds"][0].as_str().unwrap();
    let target = json!([{"EniIp": "127.0.0.1", "Port": server.port()}]);
    let params = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "Targets": target});
    app.clb("RegisterTargets", params).await.unwrap();
    (format!("http://{vip}:{port}"), SocketAddr::from((vip, port)))
}

/// Everything the other side sends until it closes the connection, as text (within 60 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut read))
        .await
        .expect("the answers, then the close, within 60 s")
        .unwrap();
    String::from_utf8(read).unwrap()
}

/// Sends `request` on an open client connection; the answer's status, headers and body (and its trailers).
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::combinators::BoxBody<Bytes, hyper::Error>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (u16, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    let mut builder = http::Request::builder().method(method).uri(path).header("Host", "wire.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if body.is_empty() {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        Full::new(Bytes::from_static(body)).map_err(|never| match never {}).boxed()
    };
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(builder.body(body).unwrap()))
        .await
        .expect("an answer within 30 s")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (parts, mut incoming) = response.into_parts();
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = incoming.frame().await {
        let frame = frame.unwrap();
        if let Some(chunk) = frame.data_ref() {
            data.extend_from_slice(chunk);
        }
        if let Some(t) = frame.trailers_ref() {
            trailers = Some(t.clone());
        }
    }
    (parts.status.as_u16(), parts.headers, Bytes::from(data), trailers)
}

#[tokio::test]
async fn answers_pass_through_in_every_framing_over_kept_connections() {
    let app = TestApp::start();
    let server = Scripted::start(false).await;
    let (_, addr) = forwarding(&app, "/", server.addr).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let client = tokio::spawn(connection);

    let (status, headers, body, _) = send(&mut sender, "GET", "/length", &[], b"").await;
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    for hop in ["keep-alive", "x-private", "connection", "transfer-encoding"] {
        assert!(!headers.contains_key(hop), "{hop} reached the client: {headers:?}");
    }
    assert_eq!(headers["content-length"], "5");
    assert_eq!(headers["server"], "fnlb");
    assert!(headers.contains_key("date"));

    // The chunked coding passes through, with its trailers for a client that takes them (`TE: trailers`).
    let (status, headers, body, trailers) = send(&mut sender, "GET", "/chunked", &[("TE", "trailers")], b"").await;
    assert_eq!((status, &body[..]), (200, &b"hello world"[..]));
    assert_eq!(
        (headers["transfer-encoding"].as_bytes(), headers["trailer"].as_bytes()),
        (&b"chunked"[..], &b"X-Sum"[..])
    );
    assert_eq!(trailers.expect("trailers")["x-sum"], "11");
    let (_, _, body, trailers) = send(&mut sender, "GET", "/chunked", &[], b"").await;
    assert_eq!((&body[..], trailers), (&b"hello world"[..], None));

    // An interim answer is not passed on; the final one is.
    let (status, _, body, _) = send(&mut sender, "GET", "/early", &[], b"").await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));

    let (status, headers, body, _) = send(&mut sender, "HEAD", "/head", &[], b"").await;
    assert_eq!((status, headers["content-length"].to_str().unwrap(), body.len()), (200, "1000", 0));

    // The server gets the balancer's headers, and none of the client's connection.
    let hop = [("Connection", "X-Hop"), ("X-Hop", "1"), ("X-Forwarded-For", "10.0.0.1"), ("X-Real-IP", "10.9.9.9")];
    let (status, _, body, _) = send(&mut sender, "POST", "/echo?q=1", &hop, b"a body").await;
    assert_eq!(status, 201);
    let seen = String::from_utf8(body.to_vec()).unwrap().to_ascii_lowercase();
    assert!(seen.starts_with("post /echo?q=1 http/1.1\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\na body"), "{seen}");
    for expected in ["x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n", "x-real-ip: 127.0.0.1\r\n", "x-client-proto: http\r\n"]
    {
        assert!(seen.contains(expected), "{expected:?} missing: {seen}");
    }
    assert!(!seen.contains("x-hop") && !seen.contains("10.9.9.9"), "{seen}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "one server connection kept for every request");

    // A body that ends with the server's connection ends the client's too.
    let (status, headers, body, _) = send(&mut sender, "GET", "/close", &[], b"").await;
    assert_eq!((status, &body[..]), (200, &b"until the end"[..]));
    assert_eq!(headers["connection"], "close");
    tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the client connection closed")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn pipelined_requests_of_different_kinds_are_answered_in_order() {
    let app = TestApp::start();
    let server = Scripted::start(false).await;
    let (_, addr) = forwarding(&app, "/length", server.addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server's, one no rule takes (answered by the balancer), HTTP/1.0, and a server's again.
    let requests = concat!(
        "GET /length HTTP/1.1\r\nHost: wire.test\r\n\r\n",
        "GET /nowhere HTTP/1.1\r\nHost: wire.test\r\n\r\n",
        "GET /length HTTP/1.0\r\nHost: wire.test\r\nConnection: keep-alive\r\n\r\n",
        "GET /length HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n",
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let answers = read_to_close(&mut stream).await;
    let statuses: Vec<&str> = answers.match_indices("HTTP/1.").map(|(at, _)| &answers[at + 9..at + 12]).collect();
    assert_eq!(statuses, ["200", "404", "200", "200"], "{answers}");
    assert_eq!(answers.matches("hello").count(), 3, "{answers}");
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_served() {
    let app = TestApp::start();
    let server = Scripted::start(false).await;
    let (_, addr) = forwarding(&app, "/", server.addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /length HTTP/1.1\r\nHost: wire.test\r\nX-Long: abcdefghij\r\nConnection: close\r\n\r\n" {
        stream.write_all(std::slice::from_ref(byte)).await.unwrap();
        stream.flush().await.unwrap();
    }
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nhello"), "{answer}");
}

#[tokio::test]
async fn servers_that_close_their_connections_after_each_answer_cause_no_errors() {
    let app = TestApp::start();
    let server = Scripted::start(true).await;
    let (base, _) = forwarding(&app, "/", server.addr).await;
    for i in 0..20 {
        let (method, path) = if i % 2 == 0 { ("POST", "/echo") } else { ("GET", "/length") };
        let reply = request(method, &format!("{base}{path}"), &[("Host", "wire.test")], "payload").await;
        assert!(reply.status == 201 || reply.status == 200, "request {i}: {} {}", reply.status, reply.text());
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn without_keepalive_each_request_has_a_server_connection_of_its_own() {
    let app = TestApp::start();
    let server = Scripted::start(false).await;
    // `KeepaliveEnable` is off by default, as on CLB.
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let rule = json!({"Domain": "wire.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}});
    let created =
        app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [rule]})).await.unwrap();
    let location = created["LocationIds"][0].as_str().unwrap();
    let target = json!([{"EniIp": "127.0.0.1", "Port": server.addr.port()}]);
    let params = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "Targets": target});
    app.clb("RegisterTargets", params).await.unwrap();

    // On the direct path (HTTP/1.1) and the general one (HTTP/1.0, and what follows it on the connection).
    let requests = concat!(
        "GET /echo HTTP/1.1\r\nHost: wire.test\r\n\r\n",
        "GET /echo HTTP/1.0\r\nHost: wire.test\r\nConnection: keep-alive\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n",
    );
    let mut stream = TcpStream::connect((vip, port)).await.unwrap();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let answers = read_to_close(&mut stream).await.to_ascii_lowercase();
    assert_eq!(answers.matches(" 201 created\r\n").count(), 3, "{answers}");
    // Each request reached the server saying it would be its connection's last.
    assert_eq!(answers.matches("get /echo http/1.1\r\n").count(), 3, "{answers}");
    for echoed in answers.split("get /echo http/1.1\r\n").skip(1) {
        let head = echoed.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("connection: close"), "{head}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3, "a server connection per request");

    // Turned on, the next requests share one.
    let params = json!({"LoadBalancerId": lb, "ListenerId": listener, "KeepaliveEnable": 1, "ListenerName": "kept"});
    app.clb("ModifyListener", params).await.unwrap();
    let described =
        app.clb("DescribeListeners", json!({"LoadBalancerId": lb, "ListenerIds": [listener]})).await.unwrap();
    let (name, keepalive) = (&described["Listeners"][0]["ListenerName"], &described["Listeners"][0]["KeepaliveEnable"]);
    assert_eq!((name.as_str(), keepalive.as_i64()), (Some("kept"), Some(1)), "{described}");
    let params = json!({"LoadBalancerId": lb, "ListenerId": listener, "KeepaliveEnable": 2});
    let refused = app.clb("ModifyListener", params).await;
    assert!(matches!(&refused, Err(fnlb::client::ClientError::Api { code, .. }) if code == "InvalidParameterValue"));
    let base = format!("http://{vip}:{port}");
    for _ in 0..3 {
        let reply = request("GET", &format!("{base}/length"), &[("Host", "wire.test")], "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 4, "one server connection kept for the three requests");
}

#[tokio::test]
async fn https_clients_reach_servers_over_kept_connections() {
    let app = TestApp::start();
    let server = Scripted::start(false).await;
    let ca = crate::https::Authority::new("wire CA");
    let leaf = ca.leaf(&["wire.test"]);
    let certificate = json!({"Certificate": {"CertContent": leaf.cert, "CertKey": leaf.key}, "KeepaliveEnable": 1});
    let (_, addr) = forwarding_on(&app, "HTTPS", certificate, "/", server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let base = format!("https://wire.test:{}", addr.port());
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
            .arg(&ca_file)
            .arg("--resolve")
            .arg(format!("wire.test:{}:{}", addr.port(), addr.ip()))
            .args([format!("{base}/length"), format!("{base}/chunked"), format!("{base}/echo")])
            .output(),
    )
    .await
    .expect("curl finishes")
    .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("hellohello world"), "{text}");
    for expected in ["get /echo http/1.1\r\n", "x-client-proto: https\r\n", "x-forwarded-proto: https\r\n"] {
        assert!(text.contains(expected), "{expected:?} missing: {text}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "one server connection kept for every request");
}

#[tokio::test]
async fn function_answers_on_a_kept_connection_follow_the_request_method() {
    let app = TestApp::start();
    app.create_fixture("wire-echo", "echo", json!({})).await.unwrap();
    let route = app.route_to("wire-echo").await;
    let mut stream = TcpStream::connect(route.base.trim_start_matches("http://")).await.unwrap();
    let requests = concat!(
        "HEAD / HTTP/1.1\r\nHost: fnlb.test\r\n\r\n",
        "POST /p?q=1 HTTP/1.1\r\nHost: fnlb.test\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n",
        "Connection: close\r\n\r\nabcd",
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let answers = read_to_close(&mut stream).await;
    // The answer to HEAD has a length and no body: the next answer follows its head at once.
    let (head, rest) = answers.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{answers}");
    assert!(!head.to_ascii_lowercase().contains("content-length: 0\r\n"), "{head}");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{answers}");
    let (_, body) = rest.split_once("\r\n\r\n").expect("a second head");
    let event = &serde_json::from_str::<serde_json::Value>(body).unwrap()["event"];
    assert_eq!(event["httpMethod"], "POST");
    assert_eq!(event["path"], "/p");
    assert_eq!(event["queryString"]["q"], "1");
    assert_eq!(event["payload"], "abcd");
}

#[tokio::test]
async fn a_malformed_chunked_body_to_servers_is_400_and_ends_the_connection() {
    let app = TestApp::start();
    let server = crate::servers::Backend::start("chunked").await;
    let (_, addr) = forwarding(&app, "/", server.addr).await;
    let malformed: [(&str, &str); 3] = [
        ("a chunk size that is not hexadecimal", "zz\r\nhello\r\n0\r\n\r\n"),
        ("chunk data without its CRLF", "5\r\nhelloXX0\r\n\r\n"),
        ("a chunk size past 64 bits", "f0000000000000003\r\nabc\r\n0\r\n\r\n"),
    ];
    // First on its connection (the direct path hands it over), after a request the direct path served, and after
    // one that moved the connection to the general path (HTTP/1.0).
    let before = [
        ("first", ""),
        ("after a direct request", "GET /direct HTTP/1.1\r\nHost: wire.test\r\n\r\n"),
        ("after an HTTP/1.0 request", "GET /general HTTP/1.0\r\nHost: wire.test\r\nConnection: keep-alive\r\n\r\n"),
    ];
    for (what, body) in malformed {
        for (when, first) in before {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let chunked = format!("POST /m HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            stream.write_all(format!("{first}{chunked}").as_bytes()).await.unwrap();
            // The answers, then the close (no further request is read from the connection).
            let answers = read_to_close(&mut stream).await;
            // Status lines (the server's JSON names the version too, followed by a quote).
            let lines: Vec<usize> = answers
                .match_indices("HTTP/1.")
                .map(|(at, _)| at)
                .filter(|at| answers.as_bytes().get(at + 8) == Some(&b' '))
                .collect();
            let statuses: Vec<&str> = lines.iter().map(|at| &answers[at + 9..at + 12]).collect();
            let expected: &[&str] = if first.is_empty() { &["400"] } else { &["200", "400"] };
            assert_eq!(statuses, expected, "{what}, {when}: {answers}");
            let last = &answers[*lines.last().unwrap()..];
            assert!(last.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{what}, {when}: {last}");
            assert!(last.contains("400 Bad Request"), "{what}, {when}: {last}");
        }
    }
}
