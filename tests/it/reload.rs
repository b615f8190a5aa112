//! Hot reconfiguration under load, and draining on SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::harness::{TestApp, eventually, free_addr, get};

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_within_the_drain_timeout() {
    for (drain, finishes) in [("20", true), ("1", false)] {
        let temp = tempfile::tempdir().unwrap();
        let app = TestApp::start_in(&temp.path().join("data"), &["--drain-timeout", drain]);
        app.create_fixture("notify", "sleep_on_request", json!({"Timeout": 10})).await.unwrap();
        let base = app.route_to("notify").await.base;
        assert_eq!(get(&format!("{base}/")).await.text(), "done", "warm");
        // A request that takes four seconds is in flight when fnlb is told to stop: its instance is busy.
        let url = format!("{base}/slow?sleep=4");
        let slow = tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
            let answer = client.get(url.parse().unwrap()).await;
            match answer {
                Ok(response) => response.into_body().collect().await.map(|b| b.to_bytes()).ok(),
                Err(_) => None,
            }
        });
        let status = format!("http://{}/status", app.admin_addr);
        eventually("the slow invocation runs", Duration::from_secs(30), || async {
            let functions = get(&status).await.json()["functions"].clone();
            let busy = functions.as_array()?.iter().any(|f| f["name"] == "notify" && f["busy"].as_u64() >= Some(1));
            busy.then_some(())
        })
        .await;
        let started = std::time::Instant::now();
        let exited = tokio::task::spawn_blocking(move || app.terminate(Duration::from_secs(30))).await.unwrap();
        assert!(exited, "fnlb exits successfully");
        let answer = slow.await.unwrap();
        assert_eq!(answer.as_ref().is_some_and(|b| b == "done"), finishes, "drain {drain}: {answer:?}");
        if !finishes {
            assert!(started.elapsed() < Duration::from_secs(4), "the drain timeout bounds the stop");
        }
    }
}

/// An HTTP/1.1 keep-alive client on one connection: sends `GET /` with `host` until `stop`, counting answers.
async fn load(
    addr: std::net::SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) {
    let mut sender = None;
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) && sent < 100_000 {
        sent += 1;
        if sender.is_none() {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            sender = Some(s);
        }
        let request = http::Request::builder().uri("/").header("host", host).body(Empty::<Bytes>::new()).unwrap();
        let answer =
            tokio::time::timeout(Duration::from_secs(10), sender.as_mut().unwrap().send_request(request)).await;
        match answer {
            Ok(Ok(response)) if response.status() == 200 => {
                let _ = response.into_body().collect().await;
                ok.fetch_add(1, Ordering::SeqCst);
            }
            other => {
                eprintln!("failed: {other:?}");
                failed.fetch_add(1, Ordering::SeqCst);
                sender = None;
            }
        }
    }
}

#[tokio::test]
async fn a_hundred_changes_under_load_fail_no_request() {
    let app = TestApp::start();
    app.create_fixture("steady", "echo", json!({})).await.unwrap();
    let backends = [crate::servers::Backend::start("a").await, crate::servers::Backend::start("b").await];
    let spare = crate::servers::Backend::start("spare").await;
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let rules = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [
        {"Domain": "servers.test", "Url": "/", "HealthCheck": {"HealthSwitch": 0}},
        {"Domain": "function.test", "Url": "/"},
    ]});
    let created = app.clb("CreateRule", rules).await.unwrap();
    let (servers_rule, function_rule) = (
        created["LocationIds"][0].as_str().unwrap().to_string(),
        created["LocationIds"][1].as_str().unwrap().to_string(),
    );
    let target =
        |b: &crate::servers::Backend, w: u32| json!({"EniIp": "127.0.0.1", "Port": b.addr.port(), "Weight": w});
    let on_rule = |extra: serde_json::Value| {
        let mut p = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": servers_rule});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    app.clb("RegisterTargets", on_rule(json!({"Targets": [target(&backends[0], 10), target(&backends[1], 10)]})))
        .await
        .unwrap();
    app.clb("RegisterFunctionTargets", crate::harness::bind_params(&lb, &listener, &function_rule, "steady"))
        .await
        .unwrap();
    // A second listener with a certificate, replaced again and again.
    let ca = crate::https::Authority::new("reload CA");
    let leaf = ca.leaf(&["tls.test"]);
    let tls_port = free_addr().1;
    let https = json!({"LoadBalancerId": lb, "Ports": [tls_port], "Protocol": "HTTPS",
        "Certificate": {"CertContent": leaf.cert, "CertKey": leaf.key}});
    let https = app.clb("CreateListener", https).await.unwrap();
    let https = https["ListenerIds"][0].as_str().unwrap().to_string();

    let addr = std::net::SocketAddr::new(vip.into(), port);
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for host in ["servers.test", "servers.test", "function.test", "function.test"] {
        clients.push(tokio::spawn(load(addr, host, stop.clone(), ok.clone(), failed.clone())));
    }
    for change in 0..100 {
        match change % 5 {
            0 => {
                let rule = json!({"LoadBalancerId": lb, "ListenerId": listener,
                    "Rules": [{"Domain": format!("extra{change}.test"), "Url": "/"}]});
                app.clb("CreateRule", rule).await.unwrap();
            }
            1 => {
                let rule = json!({"LoadBalancerId": lb, "ListenerId": listener,
                    "Domain": format!("extra{}.test", change - 1), "Url": "/"});
                app.clb("DeleteRule", rule).await.unwrap();
            }
            2 => {
                let weight = if change % 2 == 0 { 20 } else { 5 };
                app.clb("ModifyTargetWeight", on_rule(json!({"Targets": [target(&backends[0], weight)]})))
                    .await
                    .unwrap();
            }
            3 => {
                let leaf = ca.leaf(&["tls.test"]);
                let modify = json!({"LoadBalancerId": lb, "ListenerId": https,
                    "Certificate": {"CertContent": leaf.cert, "CertKey": leaf.key}});
                app.clb("ModifyListener", modify).await.unwrap();
            }
            _ => {
                let action = if change % 2 == 0 { "RegisterTargets" } else { "DeregisterTargets" };
                app.clb(action, on_rule(json!({"Targets": [target(&spare, 10)]}))).await.unwrap();
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("{ok} requests answered during 100 changes, {failed} failed");
    assert!(ok > 100, "the load ran through the changes ({ok})");
    assert_eq!(failed, 0, "no request failed");
}
