//! Failover inside one rule (an fnlb extension): a rule's servers with a function as fallback. Under a bounded
//! constant load, the servers are killed and restarted; every request is answered, by the function while no
//! server can take it, and the servers get the traffic back once they are healthy again.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually, request};

/// The example's shop server (examples/cvm-scf-switch/server.py) as a real process.
pub struct ShopServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ShopServer {
    /// Starts it on `port` (0: one the OS picks) and waits until it listens.
    pub fn start(name: &str, port: u16) -> ShopServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cvm-scf-switch/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--name", name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the shop server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"));
        ShopServer { child, addr }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ShopServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one request of the load saw: when it ended (since the load started), its status and who answered.
struct Sample {
    at: Duration,
    status: u16,
    served_by: String,
}

#[tokio::test]
async fn a_rule_fails_over_to_its_function_and_back_without_a_failed_request() {
    let app = TestApp::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cvm-scf-switch/function");
    app.create_from_dir("shop-fallback", &example, json!({})).await.unwrap();
    let servers = vec![ShopServer::start("s1", 0), ShopServer::start("s2", 0)];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // Detection window: `UnHealthNum` failed checks `IntervalTime` apart, the last taking up to `TimeOut` (plus a
    // second for this test's polling).
    let (interval, unhealthy, timeout) = (3u64, 2u64, 2u64);
    let window = Duration::from_secs(interval * unhealthy + timeout + 1);
    let check = json!({
        "HealthSwitch": 1, "TimeOut": timeout, "IntervalTime": interval, "HealthNum": 2, "UnHealthNum": unhealthy,
        "HttpCode": 2, "HttpCheckPath": "/health", "HttpCheckMethod": "GET",
    });
    let (lb, listener, vip, port) = crate::harness::listener(&app, "HTTP", json!({})).await;
    let created = app
        .clb(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "shop.test", "Url": "/", "HealthCheck": check}]}),
        )
        .await
        .unwrap();
    let location = created["LocationIds"][0].as_str().unwrap().to_string();
    let targets: Vec<Value> =
        addrs.iter().map(|a| json!({"EniIp": a.ip().to_string(), "Port": a.port(), "Weight": 10})).collect();
    let register = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "Targets": targets});
    app.clb("RegisterTargets", register).await.unwrap();

    // The fallback: an fnlb extension, refused where a function could not be bound.
    let set = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
        "Function": {"FunctionNamespace": "default", "FunctionName": "shop-fallback", "FunctionQualifier": "$LATEST"},
    });
    app.clb("SetRuleFallback", set.clone()).await.unwrap();
    let mut missing = set.clone();
    missing["Function"]["FunctionName"] = json!("no-such-function");
    let refused = app.clb("SetRuleFallback", missing).await.unwrap_err().to_string();
    assert!(refused.contains("no-such-function"), "{refused}");
    let bind = crate::harness::bind_params(&lb, &listener, &location, "shop-fallback");
    let refused = app.clb("RegisterFunctionTargets", bind).await.unwrap_err().to_string();
    assert!(refused.contains("forwards to servers"), "{refused}");

    let serving = |wanted: bool| {
        let (app, lb) = (&app, lb.clone());
        async move {
            let described = app.clb("DescribeRuleFallbacks", json!({"LoadBalancerId": lb})).await.unwrap();
            let fallback = &described["RuleFallbacks"][0];
            assert_eq!(fallback["Function"]["FunctionName"], "shop-fallback", "{described}");
            (fallback["Serving"] == json!(wanted)).then_some(())
        }
    };
    let healthy = || {
        let (app, lb) = (&app, lb.clone());
        async move {
            let described = app.clb("DescribeTargetHealth", json!({"LoadBalancerIds": [lb]})).await.unwrap();
            let targets = described["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"].as_array()?.clone();
            targets.iter().all(|t| t["HealthStatusDetail"] == "Alive").then_some(())
        }
    };
    eventually("both servers are healthy", Duration::from_secs(20), healthy).await;

    // A bounded constant load: 4 clients, a request every 20 ms each, for at most 90 seconds.
    let base = format!("http://{vip}:{port}/api/items");
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (base, samples, stop) = (base.clone(), samples.clone(), stop.clone());
            tokio::spawn(async move {
                for _ in 0..4500 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let reply = request("GET", &base, &[("Host", "shop.test")], Bytes::new()).await;
                    let served_by = reply.header("x-served-by").to_string();
                    samples.lock().unwrap().push(Sample { at: start.elapsed(), status: reply.status, served_by });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let served = |samples: &Arc<Mutex<Vec<Sample>>>, by: &str, after: Duration| {
        samples.lock().unwrap().iter().filter(|s| s.at > after && s.served_by == by).count()
    };
    eventually("the servers answer", Duration::from_secs(10), || async {
        (served(&samples, "s1", Duration::ZERO) > 5 && served(&samples, "s2", Duration::ZERO) > 5).then_some(())
    })
    .await;

    // Kill both servers: the function answers at once (failed connects go to the fallback), and the health
    // checks find the servers down within the detection window.
    for server in servers {
        server.kill();
    }
    let killed = start.elapsed();
    eventually("the fallback is serving", window, || serving(true)).await;
    let detected = start.elapsed() - killed;
    eventually("the function answers", Duration::from_secs(10), || async {
        (served(&samples, "function", killed) > 20).then_some(())
    })
    .await;

    // Restart them on their ports: they get the traffic back once healthy.
    let servers: Vec<ShopServer> =
        addrs.iter().zip(["s1", "s2"]).map(|(a, name)| ShopServer::start(name, a.port())).collect();
    let restarted = start.elapsed();
    eventually("the fallback is idle again", Duration::from_secs(30), || serving(false)).await;
    let recovered = start.elapsed() - restarted;
    let back = start.elapsed();
    eventually("the servers answer again", Duration::from_secs(10), || async {
        (served(&samples, "s1", back) > 5 && served(&samples, "s2", back) > 5).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    drop(servers);

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let failed: Vec<(Duration, u16)> = samples.iter().filter(|s| s.status != 200).map(|s| (s.at, s.status)).collect();
    let by_function = samples.iter().filter(|s| s.served_by == "function").count();
    eprintln!(
        "failover: {} requests, {} failed, {by_function} answered by the function; servers killed at {killed:?}, \
         found down after {detected:?} (window {window:?}), back {recovered:?} after their restart",
        samples.len(),
        failed.len(),
    );
    assert!(failed.is_empty(), "failed requests (time, status): {failed:?}");
    assert!(detected <= window, "found down after {detected:?}, past the detection window {window:?}");
    let late = samples.iter().filter(|s| s.at > back + Duration::from_secs(1) && s.served_by == "function").count();
    assert_eq!(late, 0, "the function answered after the servers were back");

    // Removing the fallback: with no server, the rule answers 503 again.
    app.clb("SetRuleFallback", json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location}))
        .await
        .unwrap();
    let described = app.clb("DescribeRuleFallbacks", json!({"LoadBalancerId": lb})).await.unwrap();
    assert_eq!(described["TotalCount"], 0, "{described}");
}
