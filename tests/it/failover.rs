//! Failover inside one rule (an fnlb extension): a rule's servers with a function as fallback. Under a bounded
//! constant load, the servers are killed and restarted; every request is answered, by the function while no
//! server can take it, and the servers get the traffic back once they are healthy again.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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

    /// Sends it a signal (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
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

/// A bounded constant load: 4 clients, a request every 20 ms each, for at most 90 seconds.
struct Load {
    start: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, host: &'static str) -> Load {
        let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let clients = (0..4)
            .map(|_| {
                let (url, samples, stop) = (url.clone(), samples.clone(), stop.clone());
                tokio::spawn(async move {
                    for _ in 0..4500 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let reply = request("GET", &url, &[("Host", host)], Bytes::new()).await;
                        let served_by = reply.header("x-served-by").to_string();
                        samples.lock().unwrap().push(Sample { at: start.elapsed(), status: reply.status, served_by });
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load { start, samples, stop, clients }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Requests `by` answered that ended after `after`.
    fn served(&self, by: &str, after: Duration) -> usize {
        self.samples.lock().unwrap().iter().filter(|s| s.at > after && s.served_by == by).count()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// A rule on `shop.test/` with the servers as targets, health-checked every `INTERVAL` s (failing after
/// `UNHEALTHY` checks, each within `TIMEOUT` s), and the example's shop function as its fallback.
struct Shop {
    lb: String,
    listener: String,
    location: String,
    url: String,
}

const INTERVAL: u64 = 3;
const UNHEALTHY: u64 = 2;
const TIMEOUT: u64 = 2;

/// The time the health checks take to find a dead server: `UnHealthNum` failed checks `IntervalTime` apart, the
/// last taking up to `TimeOut` (plus a second for this test's polling).
fn detection_window() -> Duration {
    Duration::from_secs(INTERVAL * UNHEALTHY + TIMEOUT + 1)
}

impl Shop {
    async fn deploy(app: &TestApp, function: &str, servers: &[SocketAddr]) -> Shop {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cvm-scf-switch/function");
        app.create_from_dir(function, &example, json!({})).await.unwrap();
        let check = json!({
            "HealthSwitch": 1, "TimeOut": TIMEOUT, "IntervalTime": INTERVAL, "HealthNum": 2, "UnHealthNum": UNHEALTHY,
            "HttpCode": 2, "HttpCheckPath": "/health", "HttpCheckMethod": "GET",
        });
        let (lb, listener, vip, port) = crate::harness::listener(app, "HTTP", json!({})).await;
        let rules = json!([{"Domain": "shop.test", "Url": "/", "HealthCheck": check}]);
        let created =
            app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": rules})).await.unwrap();
        let location = created["LocationIds"][0].as_str().unwrap().to_string();
        let targets: Vec<Value> =
            servers.iter().map(|a| json!({"EniIp": a.ip().to_string(), "Port": a.port(), "Weight": 10})).collect();
        let register =
            json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "Targets": targets});
        app.clb("RegisterTargets", register).await.unwrap();
        let set = json!({
            "LoadBalancerId": lb, "ListenerId": listener, "LocationId": location,
            "Function": {"FunctionNamespace": "default", "FunctionName": function, "FunctionQualifier": "$LATEST"},
        });
        app.clb("SetRuleFallback", set).await.unwrap();
        Shop { lb, listener, location, url: format!("http://{vip}:{port}/api/items") }
    }

    /// Waits until DescribeRuleFallbacks says the function is (or is not) answering.
    async fn serving(&self, app: &TestApp, wanted: bool, deadline: Duration) {
        let what = if wanted { "the fallback is serving" } else { "the fallback is idle" };
        eventually(what, deadline, || async {
            let described = app.clb("DescribeRuleFallbacks", json!({"LoadBalancerId": self.lb})).await.unwrap();
            (described["RuleFallbacks"][0]["Serving"] == json!(wanted)).then_some(())
        })
        .await;
    }

    async fn healthy(&self, app: &TestApp) {
        eventually("the servers are healthy", Duration::from_secs(20), || async {
            let described = app.clb("DescribeTargetHealth", json!({"LoadBalancerIds": [self.lb]})).await.unwrap();
            let targets = described["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"].as_array()?.clone();
            targets.iter().all(|t| t["HealthStatusDetail"] == "Alive").then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_rule_fails_over_to_its_function_and_back_without_a_failed_request() {
    let app = TestApp::start();
    let servers = vec![ShopServer::start("s1", 0), ShopServer::start("s2", 0)];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let shop = Shop::deploy(&app, "shop-fallback", &addrs).await;

    // The fallback is an fnlb extension, refused where a function could not be bound.
    let set = json!({
        "LoadBalancerId": shop.lb, "ListenerId": shop.listener, "LocationId": shop.location,
        "Function": {"FunctionNamespace": "default", "FunctionName": "no-such-function", "FunctionQualifier": "$LATEST"},
    });
    let refused = app.clb("SetRuleFallback", set).await.unwrap_err().to_string();
    assert!(refused.contains("no-such-function"), "{refused}");
    let bind = crate::harness::bind_params(&shop.lb, &shop.listener, &shop.location, "shop-fallback");
    let refused = app.clb("RegisterFunctionTargets", bind).await.unwrap_err().to_string();
    assert!(refused.contains("forwards to servers"), "{refused}");
    shop.healthy(&app).await;

    let load = Load::start(shop.url.clone(), "shop.test");
    eventually("the servers answer", Duration::from_secs(10), || async {
        (load.served("s1", Duration::ZERO) > 5 && load.served("s2", Duration::ZERO) > 5).then_some(())
    })
    .await;

    // Kill both servers: the function answers at once (failed connects go to the fallback), and the health
    // checks find the servers down within the detection window.
    for server in servers {
        server.kill();
    }
    let killed = load.elapsed();
    shop.serving(&app, true, detection_window()).await;
    let detected = load.elapsed() - killed;
    eventually("the function answers", Duration::from_secs(10), || async {
        (load.served("function", killed) > 20).then_some(())
    })
    .await;

    // Restart them on their ports: they get the traffic back once healthy.
    let servers: Vec<ShopServer> =
        addrs.iter().zip(["s1", "s2"]).map(|(a, name)| ShopServer::start(name, a.port())).collect();
    let restarted = load.elapsed();
    shop.serving(&app, false, Duration::from_secs(30)).await;
    let recovered = load.elapsed() - restarted;
    let back = load.elapsed();
    eventually("the servers answer again", Duration::from_secs(10), || async {
        (load.served("s1", back) > 5 && load.served("s2", back) > 5).then_some(())
    })
    .await;
    let samples = load.finish().await;
    drop(servers);

    let failed: Vec<(Duration, u16)> = samples.iter().filter(|s| s.status != 200).map(|s| (s.at, s.status)).collect();
    let by_function = samples.iter().filter(|s| s.served_by == "function").count();
    eprintln!(
        "failover (servers killed): {} requests, {} failed, {by_function} answered by the function; killed at \
         {killed:?}, found down after {detected:?} (window {:?}), back {recovered:?} after their restart",
        samples.len(),
        failed.len(),
        detection_window(),
    );
    assert!(failed.is_empty(), "failed requests (time, status): {failed:?}");
    let late = samples.iter().filter(|s| s.at > back + Duration::from_secs(1) && s.served_by == "function").count();
    assert_eq!(late, 0, "the function answered after the servers were back");

    // Removing the fallback: it is no longer listed.
    let remove = json!({"LoadBalancerId": shop.lb, "ListenerId": shop.listener, "LocationId": shop.location});
    app.clb("SetRuleFallback", remove).await.unwrap();
    let described = app.clb("DescribeRuleFallbacks", json!({"LoadBalancerId": shop.lb})).await.unwrap();
    assert_eq!(described["TotalCount"], 0, "{described}");
}

/// A server that hangs (stopped: the kernel still accepts its connections, nothing answers) cannot be caught by a
/// failed connect; its requests time out (504) until the health checks find it, and none after that.
#[tokio::test]
async fn a_hung_server_fails_requests_only_within_the_detection_window() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--proxy-read-timeout", "1"]);
    let server = ShopServer::start("hung", 0);
    let shop = Shop::deploy(&app, "shop-hung", &[server.addr]).await;
    shop.healthy(&app).await;
    let load = Load::start(shop.url.clone(), "shop.test");
    eventually("the server answers", Duration::from_secs(10), || async {
        (load.served("hung", Duration::ZERO) > 5).then_some(())
    })
    .await;

    server.signal("STOP");
    let stopped = load.elapsed();
    shop.serving(&app, true, detection_window()).await;
    let detected = load.elapsed() - stopped;
    let switched = load.elapsed();
    eventually("the function answers", Duration::from_secs(10), || async {
        (load.served("function", switched) > 20).then_some(())
    })
    .await;
    server.signal("CONT");
    shop.serving(&app, false, Duration::from_secs(30)).await;
    let samples = load.finish().await;

    // A request that started before the servers were found down may end up to the read timeout later.
    let read_timeout = Duration::from_secs(1);
    let failed: Vec<(Duration, u16)> = samples.iter().filter(|s| s.status != 200).map(|s| (s.at, s.status)).collect();
    eprintln!(
        "failover (server hung): {} requests, {} failed ({:?}), all within {detected:?} of the hang (window {:?})",
        samples.len(),
        failed.len(),
        failed.iter().map(|f| f.1).collect::<HashSet<_>>(),
        detection_window(),
    );
    assert!(!failed.is_empty(), "a hung server's requests time out until it is found");
    let outside: Vec<_> =
        failed.iter().filter(|(at, _)| *at < stopped || *at > stopped + detected + read_timeout).collect();
    assert!(outside.is_empty(), "failures outside the detection window: {outside:?}");
    assert!(failed.iter().all(|(_, status)| *status == 504), "{failed:?}");
}
