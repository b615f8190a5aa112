//! Server targets of a rule: weights and schedulers, the headers servers receive, failed connects retried on
//! another target, active health checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, request};

/// A small HTTP server standing for a backend: answers `{"server", "path", "headers", "body_bytes"}`; its
/// `/health` answers 500 while `sick` is set.
pub struct Backend {
    pub addr: SocketAddr,
    sick: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Backend::serve(name, None).await
    }

    /// A backend that speaks HTTPS, with a self-signed certificate (it also reports `"tls": true`).
    pub async fn start_tls(name: &'static str) -> Backend {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["backend.test".to_string()]).unwrap().self_signed(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Backend::serve(name, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(name: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sick = Arc::new(AtomicBool::new(false));
        let flag = sick.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let flag = flag.clone();
                let tls = tls.clone();
                let secure = tls.is_some();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let flag = flag.clone();
                    async move {
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
                        let version = format!("{:?}", req.version());
                        let headers: HashMap<String, String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        let status = if path == "/health" && flag.load(Ordering::SeqCst) { 500 } else { 200 };
                        let answer = json!({"server": name, "path": path, "headers": headers, "body_bytes": body, "tls": secure, "version": version});
                        let mut response = http::Response::new(Full::new(Bytes::from(answer.to_string())));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Backend { addr, sick, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A load balancer with an HTTP listener and a rule (`rule` merged into it) on a VIP of its own.
async fn rule(app: &TestApp, rule: Value) -> (String, String, String, String) {
    let (lb, listener, vip, port) = crate::harness::listener(app, "HTTP", json!({})).await;
    let mut params = json!({"Domain": "servers.test", "Url": "/"});
    params.as_object_mut().unwrap().extend(rule.as_object().unwrap().clone());
    let created =
        app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [params]})).await.unwrap();
    let location = created["LocationIds"][0].as_str().unwrap().to_string();
    (lb, listener, location, format!("http://{vip}:{port}"))
}

fn targets(list: &[(SocketAddr, u32)]) -> Value {
    json!(
        list.iter()
            .map(|(a, w)| json!({"EniIp": a.ip().to_string(), "Port": a.port(), "Weight": w}))
            .collect::<Vec<_>>()
    )
}

/// How many of `n` requests each server answered.
async fn spread(base: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let reply = request("GET", &format!("{base}/x"), &[("Host", "servers.test")], Bytes::new()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        *seen.entry(reply.json()["server"].as_str().unwrap().to_string()).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn server_targets_share_requests_by_weight() {
    let app = TestApp::start();
    let (a, b, c) = (Backend::start("a").await, Backend::start("b").await, Backend::start("c").await);
    let (lb, listener, location, base) = rule(&app, json!({"HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(a.addr, 30), (b.addr, 10), (c.addr, 0)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();

    // Smooth weighted round robin: exactly 3 to 1 over any multiple of four requests; weight 0 gets none.
    let seen = spread(&base, 40).await;
    assert_eq!((seen.get("a"), seen.get("b"), seen.get("c")), (Some(&30), Some(&10), None), "{seen:?}");

    // What the server receives: the path and query, the Host, the balancer's headers, the body.
    let reply = request(
        "POST",
        &format!("{base}/some/path?q=1"),
        &[("Host", "servers.test"), ("X-Forwarded-For", "10.1.2.3")],
        Bytes::from(vec![b'x'; 100_000]),
    )
    .await;
    let seen = reply.json();
    assert_eq!(seen["path"], "/some/path?q=1");
    assert_eq!(seen["body_bytes"], 100_000);
    let headers = &seen["headers"];
    assert_eq!(headers["host"], "servers.test");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(headers["x-client-proto"], "http");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-client-proto-ver"], "HTTP/1.1");
    assert!(headers["x-stgw-time"].as_str().unwrap().contains('.'), "{headers}");

    // Weight 0 takes no new requests; a deregistered target is gone.
    let modify = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": [{"EniIp": "127.0.0.1", "Port": a.addr.port()}], "Weight": 0,
    });
    app.clb("ModifyTargetWeight", modify).await.unwrap();
    assert_eq!(spread(&base, 8).await.get("b"), Some(&8));
    let deregister = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": [{"EniIp": "127.0.0.1", "Port": c.addr.port()}],
    });
    app.clb("DeregisterTargets", deregister).await.unwrap();
    let described = app.clb("DescribeTargets", json!({"LoadBalancerId": lb})).await.unwrap();
    let listed = &described["Listeners"][0]["Rules"][0]["Targets"];
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["Weight"], 0);

    // A rule forwards to servers or to a function, not both.
    app.create_fixture("beside", "echo", json!({})).await.unwrap();
    let bind = crate::harness::bind_params(&lb, &listener, &location, "beside");
    assert!(app.clb("RegisterFunctionTargets", bind).await.is_err());
}

#[tokio::test]
async fn a_failed_connect_is_retried_on_another_target() {
    let app = TestApp::start();
    let alive = Backend::start("alive").await;
    let dead = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let (lb, listener, location, base) = rule(&app, json!({"HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(dead, 10), (alive.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    assert_eq!(spread(&base, 10).await.get("alive"), Some(&10), "every request reached the live target");
}

#[tokio::test]
async fn unhealthy_targets_get_no_requests_until_they_recover() {
    let app = TestApp::start();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let check = json!({"HealthCheck": {
        "HealthSwitch": 1, "TimeOut": 2, "IntervalTime": 3, "HealthNum": 2, "UnHealthNum": 2,
        "HttpCode": 2, "HttpCheckPath": "/health", "HttpCheckMethod": "GET",
    }});
    let (lb, listener, location, base) = rule(&app, check).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(a.addr, 10), (b.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    let b_port = b.addr.port();
    let health = |wanted: &'static str| {
        let app = &app;
        let lb = lb.clone();
        async move {
            let described = app.clb("DescribeTargetHealth", json!({"LoadBalancerIds": [lb]})).await.unwrap();
            let targets = described["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"].clone();
            let b = targets.as_array()?.iter().find(|t| t["Port"] == json!(b_port))?.clone();
            (b["HealthStatusDetail"] == wanted).then_some(b)
        }
    };
    eventually("both targets are healthy", Duration::from_secs(15), || health("Alive")).await;
    assert_eq!(spread(&base, 10).await.len(), 2);

    b.sick.store(true, Ordering::SeqCst);
    let dead = eventually("b is unhealthy", Duration::from_secs(20), || health("Dead")).await;
    assert_eq!(dead["HealthStatus"], false);
    assert_eq!(spread(&base, 10).await.get("a"), Some(&10), "an unhealthy target gets no new requests");

    b.sick.store(false, Ordering::SeqCst);
    eventually("b is healthy again", Duration::from_secs(20), || health("Alive")).await;
    assert_eq!(spread(&base, 10).await.len(), 2, "a recovered target takes requests again");
}

#[tokio::test]
async fn ip_hash_keeps_a_client_on_one_target() {
    let app = TestApp::start();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (lb, listener, location, base) =
        rule(&app, json!({"Scheduler": "IP_HASH", "HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(a.addr, 10), (b.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    assert_eq!(spread(&base, 12).await.len(), 1, "one client address, one target");
}

#[tokio::test]
async fn a_session_cookie_keeps_a_client_on_its_target_and_rules_can_change() {
    let app = TestApp::start();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (lb, listener, location, base) =
        rule(&app, json!({"SessionExpireTime": 60, "HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(a.addr, 10), (b.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    let first = request("GET", &format!("{base}/"), &[("Host", "servers.test")], Bytes::new()).await;
    let set_cookie = first.header("set-cookie").to_string();
    assert!(set_cookie.starts_with("tgw_l7_route=") && set_cookie.contains("Max-Age=60"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let server = first.json()["server"].clone();
    for _ in 0..6 {
        let again =
            request("GET", &format!("{base}/"), &[("Host", "servers.test"), ("Cookie", &cookie)], Bytes::new()).await;
        assert_eq!(again.json()["server"], server, "the cookie keeps the client on its target");
        assert_eq!(again.header("set-cookie"), "", "no new cookie for a client that keeps its target");
    }
    assert_eq!(spread(&base, 6).await.len(), 2, "clients without the cookie are spread");

    // ModifyRule: persistence off, then IP_HASH.
    let modify = |changes: Value| {
        let mut params = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location});
        params.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        params
    };
    app.clb("ModifyRule", modify(json!({"SessionExpireTime": 0}))).await.unwrap();
    let plain = request("GET", &format!("{base}/"), &[("Host", "servers.test")], Bytes::new()).await;
    assert_eq!(plain.header("set-cookie"), "");
    app.clb("ModifyRule", modify(json!({"Scheduler": "IP_HASH"}))).await.unwrap();
    assert_eq!(spread(&base, 8).await.len(), 1);
    let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    let rule = &described["Listeners"][0]["Rules"][0];
    assert_eq!((rule["Scheduler"].as_str(), rule["SessionExpireTime"].as_u64()), (Some("IP_HASH"), Some(0)));
    assert_eq!(rule["HealthCheck"]["HealthSwitch"], 0);
    let bad = app.clb("ModifyRule", modify(json!({"HealthCheck": {"TimeOut": 9, "IntervalTime": 5}}))).await;
    assert!(bad.is_err(), "a check timeout must be shorter than its interval");
}

#[tokio::test]
async fn forward_type_https_speaks_tls_to_the_targets() {
    let app = TestApp::start();
    let secure = Backend::start_tls("secure").await;
    let (lb, listener, location, base) =
        rule(&app, json!({"ForwardType": "HTTPS", "HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(secure.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    for _ in 0..3 {
        let reply = request("GET", &format!("{base}/over/tls"), &[("Host", "servers.test")], Bytes::new()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!((reply.json()["server"].as_str(), reply.json()["tls"].as_bool()), (Some("secure"), Some(true)));
    }
    // Back to plain HTTP: a TLS server cannot answer it.
    let plain = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "ForwardType": "HTTP"});
    app.clb("ModifyRule", plain).await.unwrap();
    let reply = request("GET", &format!("{base}/"), &[("Host", "servers.test")], Bytes::new()).await;
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn forward_type_grpc_speaks_http2_to_the_targets() {
    let app = TestApp::start();
    let backend = Backend::start("h2").await;
    let (lb, listener, location, base) =
        rule(&app, json!({"ForwardType": "GRPC", "HealthCheck": {"HealthSwitch": 0}})).await;
    let register = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Targets": targets(&[(backend.addr, 10)]),
    });
    app.clb("RegisterTargets", register).await.unwrap();
    for _ in 0..3 {
        let reply =
            request("POST", &format!("{base}/pkg.Service/Method"), &[("Host", "servers.test")], Bytes::from("x")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = reply.json();
        assert_eq!((seen["version"].as_str(), seen["path"].as_str()), (Some("HTTP/2.0"), Some("/pkg.Service/Method")));
        assert_eq!(seen["body_bytes"], 1);
        assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    }
}
