//! The direct path and the general path are two encoders of one policy: a matrix of requests (methods, bodies in
//! each framing, redirects, 404s, function and server rules, custom configurations, broken and closing servers,
//! kept-alive and closing client connections) sent to a fnlb serving plain HTTP/1.1 exchanges on the direct path
//! and to one with `--direct-path false` gets the same statuses, headers (every value of a name, in order; `Date`
//! aside), bodies byte for byte, access-log lines and counts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::harness::{TestApp, eventually};
use crate::wire::Scripted;

/// A function whose answer depends only on the request.
const FUNCTION: &str = r#"
def main_handler(event, context):
    seen = ",".join(sorted(name.lower() for name in event["headers"]))
    status = 404 if event["path"].endswith("/missing") else 200
    body = "%s %s %s %s" % (event["httpMethod"], event["path"], sorted(event["queryString"].items()), event.get("body") or "")
    return {"isBase64Encoded": False, "statusCode": status,
            "headers": {"Content-Type": "text/plain", "X-Seen": seen, "Server": "function"}, "body": body}
"#;

/// The configuration of the rules under `custom.test`.
const CUSTOM: &str = "add_header X-Add a; add_header X-Always b always; more_set_headers \"Server: edge\"; \
                      more_set_headers \"X-Set: one\"; more_set_headers \"X-Set: two\"; more_set_headers \"Date: fixed\";";

/// One fnlb of the pair, with servers of its own: its base address, its access log and its rules' ids (in the order
/// they were made).
struct Side {
    direct: bool,
    kept: Scripted,
    closing: Scripted,
    app: TestApp,
    addr: SocketAddr,
    log: PathBuf,
    rules: Vec<String>,
    _temp: tempfile::TempDir,
}

async fn side(direct: bool) -> Side {
    let (kept, closing) = (Scripted::start(false).await, Scripted::start(true).await);
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("access");
    std::fs::create_dir(&logs).unwrap();
    let flag = if direct { "true" } else { "false" };
    let args = ["--access-log", logs.to_str().unwrap(), "--direct-path", flag];
    let app = TestApp::start_in(&temp.path().join("data"), &args);
    let code = temp.path().join("code");
    std::fs::create_dir(&code).unwrap();
    std::fs::write(code.join("index.py"), FUNCTION).unwrap();
    app.create_from_dir("same", &code, json!({})).await.unwrap();
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({"KeepaliveEnable": 1})).await;
    let rule = |domain: &str, url: &str| json!({"Domain": domain, "Url": url, "HealthCheck": {"HealthSwitch": 0}});
    let rules = [
        rule("diff.test", "/s/"),
        rule("diff.test", "/f"),
        rule("diff.test", "/c/"),
        rule("custom.test", "/s/"),
        rule("custom.test", "/f"),
        rule("proxyset.test", "/s/"),
    ];
    let created =
        app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": rules})).await.unwrap();
    let ids: Vec<String> =
        created["LocationIds"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect();
    for (index, server) in [(0, kept.addr), (2, closing.addr), (3, kept.addr), (5, kept.addr)] {
        let target = json!([{"EniIp": "127.0.0.1", "Port": server.port()}]);
        let params = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": ids[index], "Targets": target});
        app.clb("RegisterTargets", params).await.unwrap();
    }
    for index in [1, 4] {
        let bind = crate::harness::bind_params(&lb, &listener, &ids[index], "same");
        app.clb("RegisterFunctionTargets", bind).await.unwrap();
    }
    let configs = [
        ("custom", CUSTOM, vec![(3, "custom.test"), (4, "custom.test")]),
        (
            "proxyset",
            "proxy_set_header X-Method $request_method; proxy_set_header X-Uri $request_uri;",
            vec![(5, "proxyset.test")],
        ),
    ];
    for (name, content, places) in configs {
        let added = json!({"ConfigName": name, "ConfigType": "LOCATION", "ConfigContent": content});
        let added = app.clb("AddCustomizedConfig", added).await.unwrap();
        let places: Vec<_> = places
            .iter()
            .map(|(i, domain)| json!({"LoadBalancerId": lb, "ListenerId": listener, "Domain": domain, "LocationId": ids[*i]}))
            .collect();
        let bind = json!({"UconfigId": added["ConfigId"], "BindList": places});
        app.clb("AssociateCustomizedConfig", bind).await.unwrap();
    }
    let log = logs.join(format!("{listener}.log"));
    Side { direct, kept, closing, app, addr: SocketAddr::from((vip, port)), log, rules: ids, _temp: temp }
}

/// How a request's body is sent.
#[derive(Clone, Copy, Debug)]
enum Sent {
    None,
    /// `Content-Length`, this many bytes.
    Length(usize),
    /// The chunked coding, in pieces.
    Chunked,
}

type Sender = hyper::client::conn::http1::SendRequest<BoxBody<Bytes, std::io::Error>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// A client keeping its connection to one fnlb while it stays open (a new one per request with `close`).
struct Client {
    addr: SocketAddr,
    sender: Sender,
    direct: bool,
    /// The last request was one the direct path hands over with its connection: the next starts a new one, so
    /// that each request of the matrix meets the path that takes it.
    handed_over: bool,
}

impl Client {
    async fn new(side: &Side) -> Client {
        Client { addr: side.addr, sender: connect(side.addr).await, direct: side.direct, handed_over: false }
    }

    async fn send(&mut self, case: &Case, close: bool) -> Seen {
        if close || self.handed_over || self.sender.ready().await.is_err() {
            self.sender = connect(self.addr).await;
        }
        self.handed_over = case.general();
        exchange(&mut self.sender, case, close, self.direct).await
    }
}

/// What a client saw of an answer: status, headers by name (lowercase; every value in order; `Date` counted, not
/// compared; framing and connection headers aside, which the encoders choose), body (or how it failed), trailers.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    dates: usize,
    body: Result<Bytes, String>,
    trailers: Option<BTreeMap<String, Vec<String>>>,
}

fn by_name(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for name in headers.keys() {
        if ["date", "transfer-encoding", "connection", "keep-alive"].contains(&name.as_str()) {
            continue;
        }
        let values = headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        out.insert(name.to_string(), values.collect());
    }
    out
}

async fn exchange(sender: &mut Sender, case: &Case, close: bool, direct: bool) -> Seen {
    let mut builder = http::Request::builder().method(case.method).uri(case.path).header("Host", case.host);
    for (name, value) in case.headers {
        builder = builder.header(*name, *value);
    }
    if close {
        builder = builder.header("Connection", "close");
    }
    let body: BoxBody<Bytes, std::io::Error> = match case.body {
        Sent::None => Empty::new().map_err(|never| match never {}).boxed(),
        Sent::Length(n) => Full::new(Bytes::from(vec![b'x'; n])).map_err(|never| match never {}).boxed(),
        Sent::Chunked => {
            BoxBody::new(Pieces(["chunked ", "request ", "body"].map(|p| Bytes::from_static(p.as_bytes())).into()))
        }
    };
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(builder.body(body).unwrap()))
        .await
        .unwrap_or_else(|_| panic!("{case:?}: no answer within 30 s (direct path: {direct})"))
        .unwrap_or_else(|e| panic!("{case:?}: {e} (direct path: {direct})"));
    let (parts, mut incoming) = response.into_parts();
    let (mut data, mut trailers, mut failed) = (Vec::new(), None, None);
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(chunk) = frame.data_ref() {
                    data.extend_from_slice(chunk);
                }
                if let Some(t) = frame.trailers_ref() {
                    trailers = Some(by_name(t));
                }
            }
            Err(e) => {
                failed = Some(format!("the body broke ({})", e.is_incomplete_message()));
                break;
            }
        }
    }
    Seen {
        status: parts.status.as_u16(),
        dates: parts.headers.get_all(http::header::DATE).iter().count(),
        headers: by_name(&parts.headers),
        body: failed.map_or(Ok(Bytes::from(data)), Err),
        trailers,
    }
}

/// A body of several pieces and no stated length, which a client sends in the chunked coding.
struct Pieces(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }
}

#[derive(Debug)]
struct Case {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Sent,
}

impl Case {
    /// Whether the direct path hands the request (and its connection) over to the general path.
    fn general(&self) -> bool {
        let body = matches!(self.body, Sent::Chunked) || matches!(self.body, Sent::Length(n) if n > 64 * 1024);
        body || matches!(self.host, "nowhere.test" | "proxyset.test") || self.path.starts_with("/s?")
    }
}

const fn case(method: &'static str, host: &'static str, path: &'static str, body: Sent) -> Case {
    Case { method, host, path, headers: &[], body }
}

/// Headers a server must not get (hop-by-hop, named by `Connection`, the balancer's own) beside ones it must.
const HOPPING: &[(&str, &str)] = &[
    ("Connection", "X-Hop"),
    ("X-Hop", "private"),
    ("Keep-Alive", "timeout=5"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Real-IP", "10.9.9.9"),
    ("Accept", "text/plain"),
    ("X-Multi", "1"),
    ("X-Multi", "2"),
];

fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        for body in [Sent::None, Sent::Length(10), Sent::Length(70 * 1024), Sent::Chunked] {
            if method == "HEAD" && !matches!(body, Sent::None) {
                continue;
            }
            cases.push(Case { headers: HOPPING, ..case(method, "diff.test", "/s/headers?q=1", body) });
            cases.push(Case { headers: HOPPING, ..case(method, "diff.test", "/f?a=1&b=2", body) });
        }
    }
    for name in ["length", "chunked", "close", "early", "dup", "204", "head", "missing", "broken", "drop"] {
        let path: &'static str = Box::leak(format!("/s/{name}").into_boxed_str());
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE"] {
            let body = if matches!(method, "POST" | "PUT") { Sent::Length(5) } else { Sent::None };
            for host in ["diff.test", "custom.test"] {
                if name == "drop" {
                    // A server connection left in the pool first: the request meets a kept-alive connection that
                    // closes before answering, where resending is decided.
                    cases.push(case("GET", host, "/s/length", Sent::None));
                }
                cases.push(case(method, host, path, body));
            }
        }
        cases.push(Case { headers: &[("TE", "trailers")], ..case("GET", "diff.test", path, Sent::None) });
    }
    cases.extend([
        // The trailing-slash redirect, a 404, a rule's own answers.
        case("GET", "diff.test", "/s?x=1", Sent::None),
        case("GET", "nowhere.test", "/s/length", Sent::None),
        case("GET", "custom.test", "/f/missing", Sent::None),
        case("POST", "custom.test", "/f", Sent::Length(3)),
        case("GET", "proxyset.test", "/s/headers", Sent::None),
        // A server that closes each connection after its answer: the next request finds its pooled one closed.
        case("GET", "diff.test", "/c/length", Sent::None),
        case("GET", "diff.test", "/c/length", Sent::None),
        case("POST", "diff.test", "/c/length", Sent::Length(4)),
        case("GET", "diff.test", "/c/length", Sent::None),
    ]);
    cases
}

/// The access log's lines, less what differs between two fnlbs by nature (time, client port, ids, durations),
/// with each rule named by its place.
fn log_lines(side: &Side) -> Vec<String> {
    let text = std::fs::read_to_string(&side.log).unwrap_or_default();
    text.lines()
        .map(|line| {
            let kept: Vec<String> = line
                .split(' ')
                .filter(|field| {
                    let key = field.split('=').next().unwrap_or_default();
                    !["time", "client", "vip", "duration_ms", "load_balancer", "listener"].contains(&key)
                })
                .map(|field| match field.split_once('=') {
                    Some(("rule", id)) => format!("rule={:?}", side.rules.iter().position(|r| r == id)),
                    Some(("request_id", id)) => format!("request_id={}", if id == "-" { "-" } else { "an id" }),
                    Some(("target", target)) => {
                        let server = |s: &Scripted| format!("server:{}", s.addr);
                        let target =
                            target.replace(&server(&side.kept), "kept").replace(&server(&side.closing), "closing");
                        format!("target={target}")
                    }
                    _ => field.to_string(),
                })
                .collect();
            kept.join(" ")
        })
        .collect()
}

/// Each rule's counts by status class, and its answers' bytes, from `/metrics`.
async fn counts(side: &Side) -> BTreeMap<String, String> {
    let text = crate::harness::get(&format!("http://{}/metrics", side.app.admin_addr)).await.text();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if !(line.starts_with("fnlb_http_requests_total{") || line.starts_with("fnlb_http_response_bytes_total{")) {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let mut series = series.to_string();
        for (place, id) in side.rules.iter().enumerate() {
            series = series.replace(&format!("\"{id}\""), &format!("\"rule {place}\""));
        }
        let series: String = series
            .split(',')
            .filter(|l| !l.contains("load_balancer=") && !l.contains("listener="))
            .collect::<Vec<_>>()
            .join(",");
        out.insert(series, value.to_string());
    }
    out
}

#[tokio::test]
async fn the_direct_and_the_general_path_give_the_same_answers_counts_and_log_lines() {
    let (direct, general) = (side(true).await, side(false).await);
    let cases = matrix();
    for close in [false, true] {
        let (mut on_direct, mut on_general) = (Client::new(&direct).await, Client::new(&general).await);
        for case in &cases {
            let seen_direct = on_direct.send(case, close).await;
            let seen_general = on_general.send(case, close).await;
            assert_eq!(seen_direct, seen_general, "{case:?} (Connection: close: {close})");
            assert!(seen_direct.dates <= 1, "{case:?}: one Date at most: {seen_direct:?}");
            let servers = seen_direct.headers.get("server").map_or(0, Vec::len);
            assert!(servers <= 1, "{case:?}: one Server at most: {seen_direct:?}");
        }
    }
    let requests = cases.len() * 2;
    let (direct_log, general_log) = (
        eventually("every request logged", Duration::from_secs(20), || async {
            let lines = log_lines(&direct);
            (lines.len() >= requests).then_some(lines)
        })
        .await,
        eventually("every request logged", Duration::from_secs(20), || async {
            let lines = log_lines(&general);
            (lines.len() >= requests).then_some(lines)
        })
        .await,
    );
    for (d, g) in direct_log.iter().zip(&general_log) {
        assert_eq!(d, g);
    }
    assert_eq!(direct_log.len(), general_log.len());
    assert_eq!(counts(&direct).await, counts(&general).await);
    // The same requests reached the servers (a request sent again is read again).
    let read = |side: &Side| (side.kept.requests.load(Ordering::SeqCst), side.closing.requests.load(Ordering::SeqCst));
    assert_eq!(read(&direct), read(&general));
}
