//! Starts fnlb as a real process on ports the OS picks, and talks to it as users do.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use fnlb::api::Service;
use fnlb::client::{Client, ClientError, Credentials};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long fnlb may take to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct TestApp {
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Child,
    pub api_addr: SocketAddr,
    /// The API's scheme as fnlb printed it: `http`, or `https` with `--api-tls-cert`.
    pub api_scheme: &'static str,
    /// The admin listener (`/live`, `/ready`, `/metrics`, `/status`).
    pub admin_addr: SocketAddr,
    pub credentials: Credentials,
    pub region: String,
    /// Certificate authorities `client` trusts besides the system's (for an API served over HTTPS).
    pub ca_cert: Option<PathBuf>,
    stdout: mpsc::Receiver<String>,
}

impl TestApp {
    pub fn start() -> TestApp {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let data_dir = temp.path().join("data");
        let mut app = TestApp::start_in(&data_dir, &[]);
        app._temp = Some(temp);
        app
    }

    /// Starts fnlb on an existing data directory (a restart), with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestApp {
        TestApp::start_with(data_dir, extra, &[])
    }

    /// Starts fnlb with extra `serve` arguments and environment variables.
    pub fn start_with(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> TestApp {
        TestApp::spawn(data_dir, false, extra, env)
    }

    /// Starts fnlb in the data directory's parent, naming the data directory relatively (as `./fnlb-data`, the
    /// default, is).
    pub fn start_relative(data_dir: &Path, extra: &[&str]) -> TestApp {
        TestApp::spawn(data_dir, true, extra, &[])
    }

    fn spawn(data_dir: &Path, relative: bool, extra: &[&str], env: &[(&str, &str)]) -> TestApp {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fnlb"));
        command.args(["serve", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir"]);
        match (relative, data_dir.parent(), data_dir.file_name()) {
            (true, Some(parent), Some(name)) => command.arg(name).current_dir(parent),
            _ => command.arg(data_dir),
        };
        let mut child = command
            .args(extra)
            .env("FNLB_LOG", "warn")
            // Each fnlb with egress adds a network link to the host, a change browsers under test notice and
            // abort page loads for: tests that need egress ask for it.
            .env("FNLB_FUNCTION_EGRESS", "none")
            .env_remove("FNLB_SECRET_ID")
            .env_remove("FNLB_SECRET_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fnlb starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        let (mut api_addr, mut admin_addr) = (None, None);
        let ((api_scheme, api_addr), admin_addr) = loop {
            if let (Some(api), Some(admin)) = (api_addr, admin_addr) {
                break (api, admin);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("fnlb did not report its API and admin addresses within {START_DEADLINE:?}");
                }
            };
            if let Some(url) = line.strip_prefix("fnlb: API listening on ") {
                let (scheme, addr) = match url.strip_prefix("https://") {
                    Some(addr) => ("https", addr),
                    None => ("http", url.strip_prefix("http://").expect("an http or https URL")),
                };
                api_addr = Some((scheme, addr.parse::<SocketAddr>().expect("a socket address")));
            }
            if let Some(addr) = line.strip_prefix("fnlb: admin listening on http://") {
                admin_addr = Some(addr.parse::<SocketAddr>().expect("a socket address"));
            }
        };
        let text = std::fs::read_to_string(data_dir.join("credentials.json")).expect("credentials.json");
        let v: Value = serde_json::from_str(&text).expect("credentials.json is JSON");
        let credentials = Credentials {
            secret_id: v["secretId"].as_str().unwrap().to_string(),
            secret_key: v["secretKey"].as_str().unwrap().to_string(),
        };
        TestApp {
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            child,
            api_addr,
            api_scheme,
            admin_addr,
            credentials,
            region: "ap-guangzhou".to_string(),
            ca_cert: None,
            stdout: rx,
        }
    }

    /// Waits for a line fnlb prints on stdout that starts with `prefix`; returns the rest of it.
    pub fn wait_line(&self, prefix: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(_) => panic!("fnlb printed no line starting with {prefix:?} within {deadline:?}"),
            }
        }
    }

    /// Sends SIGTERM and waits (at most `deadline`) for fnlb to exit; returns whether it exited successfully.
    pub fn terminate(mut self, deadline: Duration) -> bool {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a live pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM is delivered");
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return status.success();
            }
            assert!(Instant::now() < end, "fnlb did not exit within {deadline:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.api_scheme, self.api_addr)
    }

    pub fn client(&self) -> Client {
        let trust = fnlb::client::Trust::System { extra: self.ca_cert.clone() };
        Client::with_trust(&self.endpoint(), self.credentials.clone(), &self.region, trust).expect("a client")
    }

    /// Calls an SCF action; an answer is checked against the SDK's declaration of it (`declared.rs`).
    pub async fn scf(&self, action: &str, params: Value) -> Result<Value, ClientError> {
        let answer = self.client().call(Service::Scf, action, params).await;
        if let Ok(response) = &answer {
            crate::declared::assert_declared("scf", action, response);
        }
        answer
    }

    /// Calls a CLB action; an answer is checked against the SDK's declaration of it (`declared.rs`).
    pub async fn clb(&self, action: &str, params: Value) -> Result<Value, ClientError> {
        let answer = self.client().call(Service::Clb, action, params).await;
        if let Ok(response) = &answer {
            crate::declared::assert_declared("clb", action, response);
        }
        answer
    }

    /// The `fnlb` command line as a client of this node (its endpoint and credentials), ready for arguments.
    pub fn cli(&self) -> Command {
        self.client_of(Command::new(env!("CARGO_BIN_EXE_fnlb")))
    }

    /// A command (a script that runs `fnlb`, named by `FNLB`) given this node's endpoint and credentials.
    pub fn client_of(&self, mut command: Command) -> Command {
        command
            .env("FNLB", env!("CARGO_BIN_EXE_fnlb"))
            .env("FNLB_ENDPOINT", self.endpoint())
            .env("FNLB_DATA_DIR", &self.data_dir)
            .env_remove("TENCENTCLOUD_SECRET_ID")
            .env_remove("TENCENTCLOUD_SECRET_KEY");
        command
    }

    /// The fnlb process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills fnlb with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill_9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let temp = self._temp.take();
        std::mem::forget(temp); // the directory outlives this process; the OS cleans /tmp
        self.data_dir.clone()
    }

    /// Creates a Python function from a fixture directory under tests/fixtures/functions.
    pub async fn create_fixture(&self, name: &str, fixture: &str, extra: Value) -> Result<Value, ClientError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/functions").join(fixture);
        self.create_from_dir(name, &dir, extra).await
    }

    /// Creates a Python function (`index.main_handler`) from a directory.
    pub async fn create_from_dir(&self, name: &str, dir: &Path, extra: Value) -> Result<Value, ClientError> {
        let zip = fnlb::functions::zip_dir(dir).expect("fixture packs");
        let mut params = json!({
            "FunctionName": name,
            "Runtime": "Python3.9",
            "Handler": "index.main_handler",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        });
        if let (Some(p), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        self.scf("CreateFunction", params).await
    }

    /// A load balancer on a VIP of its own, an HTTP listener and a rule on `/`, bound to `function`.
    pub async fn route_to(&self, function: &str) -> Route {
        let (vip, port) = free_addr();
        let lb =
            self.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
        let lb_id = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
        let listener = self
            .clb("CreateListener", json!({"LoadBalancerId": lb_id, "Ports": [port], "Protocol": "HTTP"}))
            .await
            .unwrap();
        let listener_id = listener["ListenerIds"][0].as_str().unwrap().to_string();
        let rule = self
            .clb(
                "CreateRule",
                json!({"LoadBalancerId": lb_id, "ListenerId": listener_id, "Rules": [{"Domain": "fnlb.test", "Url": "/"}]}),
            )
            .await
            .unwrap();
        let location_id = rule["LocationIds"][0].as_str().unwrap().to_string();
        self.clb("RegisterFunctionTargets", bind_params(&lb_id, &listener_id, &location_id, function)).await.unwrap();
        Route { lb_id, listener_id, location_id, base: format!("http://{vip}:{port}") }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Route {
    pub lb_id: String,
    pub listener_id: String,
    pub location_id: String,
    /// `http://VIP:PORT`
    pub base: String,
}

/// A load balancer on a VIP of its own and one listener of `protocol` (`extra` merged into CreateListener's
/// parameters): (load balancer id, listener id, VIP, port).
pub async fn listener(app: &TestApp, protocol: &str, extra: Value) -> (String, String, Ipv4Addr, u16) {
    let (vip, port) = free_addr();
    let lb = app.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let mut params = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": protocol});
    params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let created = app.clb("CreateListener", params).await.unwrap();
    (lb, created["ListenerIds"][0].as_str().unwrap().to_string(), vip, port)
}

pub fn bind_params(lb: &str, listener: &str, location: &str, function: &str) -> Value {
    json!({
        "LoadBalancerId": lb,
        "ListenerId": listener,
        "LocationId": location,
        "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": function, "FunctionQualifier": "$LATEST"}, "Weight": 10}],
    })
}

/// A loopback address of its own (127.x.y.z) and a port free on it, so that tests never share a listener.
pub fn free_addr() -> (Ipv4Addr, u16) {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).unwrap();
    let vip = Ipv4Addr::new(127, bytes[0].max(1), bytes[1], bytes[2].clamp(2, 254));
    (vip, free_port(vip))
}

/// A port free on `vip`.
pub fn free_port(vip: Ipv4Addr) -> u16 {
    TcpListener::bind((vip, 0)).expect("a free port").local_addr().unwrap().port()
}

/// An HTTP response, as a client saw it.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Sends one request with a real HTTP/1.1 client.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    try_request(method, url, headers, body).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request with a real HTTP/1.1 client; an error when no response came.
pub async fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| format!("no response: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status, headers, body })
}

pub async fn get(url: &str) -> Reply {
    request("GET", url, &[], Bytes::new()).await
}

/// A raw HTTP/1.1 POST from the loopback address `from` (a client other than 127.0.0.1): the status and the body.
pub async fn post_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    request_from(from, to, "POST", path, headers, body).await
}

/// A raw HTTP/1.1 request from the loopback address `from` (a client other than 127.0.0.1) for `target` (a path
/// and query): the status and the body.
pub async fn request_from(
    from: [u8; 4],
    to: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::from(from), 0).into()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    // The request's own Host when it has one (a replay carries the host it was signed for), else the address.
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {to}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_string()))
}

/// A request signed as the Tencent SDKs sign it (`content-type` and `host` only), as headers (with the signed
/// `host`) and body.
pub fn sdk_signed(app: &TestApp, service: &str, action: &str, params: &Value) -> (Vec<(String, String)>, String) {
    use fnlb::api::tc3;
    let body = params.to_string();
    let host = app.api_addr.to_string();
    let timestamp = fnlb::clock::now_ms() / 1000;
    let signed = tc3::Signed {
        method: "POST",
        query: "",
        headers: vec![("content-type".to_string(), "application/json"), ("host".to_string(), host.as_str())],
        payload_hash: tc3::sha256_hex(body.as_bytes()),
        timestamp,
        service,
    };
    let authorization = tc3::authorization(&app.credentials.secret_id, &app.credentials.secret_key, &signed);
    let version = if service == "scf" { "2018-04-16" } else { "2018-03-17" };
    let headers = vec![
        ("host".to_string(), host),
        ("content-type".to_string(), "application/json".to_string()),
        ("authorization".to_string(), authorization),
        ("x-tc-action".to_string(), action.to_string()),
        ("x-tc-version".to_string(), version.to_string()),
        ("x-tc-region".to_string(), "ap-guangzhou".to_string()),
        ("x-tc-timestamp".to_string(), timestamp.to_string()),
    ];
    (headers, body)
}

/// Sends a request to `app` from the loopback address `from` (another client than 127.0.0.1 unless it is that);
/// the answer's `Response`.
pub async fn send_from(app: &TestApp, from: [u8; 4], headers: &[(String, String)], body: &str) -> Value {
    let (_, text) = post_from(from, app.api_addr, "/", headers, body).await;
    serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))["Response"].clone()
}

/// A process's resident memory, in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    kb << 10
}

/// The highest resident memory of a process while it is watched (sampled every 20 ms).
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss(pid)));
        let seen = peak.clone();
        let sampler = tokio::spawn(async move {
            loop {
                seen.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        PeakRss { peak, sampler }
    }

    /// Stops watching; the peak seen.
    pub fn stop(self) -> u64 {
        self.sampler.abort();
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Retries `check` until it returns `Some`, or panics at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not true within {deadline:?}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Host processes of a function's instances (found by the `SCF_FUNCTIONNAME` in their environment), excluding
/// zombies. Function names must be unique across tests for this to be exact.
pub fn instance_processes(function: &str) -> Vec<u32> {
    let wanted = format!("SCF_FUNCTIONNAME={function}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let is_runtime = String::from_utf8_lossy(&cmdline).contains("bootstrap");
        let zombie = std::fs::read_to_string(entry.path().join("status")).is_ok_and(|s| s.contains("State:\tZ"));
        if is_runtime && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Invokes a function made from the `hostile` fixture with `probes`; what it saw.
pub async fn probe(app: &TestApp, function: &str, probes: Value) -> Value {
    let event = json!({"probes": probes});
    let invoked =
        app.scf("Invoke", json!({"FunctionName": function, "ClientContext": event.to_string()})).await.unwrap();
    let ret: Value = serde_json::from_str(invoked["Result"]["RetMsg"].as_str().unwrap())
        .unwrap_or_else(|_| panic!("{function} answered {invoked}"));
    serde_json::from_str(ret["body"].as_str().unwrap()).unwrap()
}

/// The Python zygotes among fnlb's descendants (started with the zygote's environment, their parent not one) and
/// their spares (children of a zygote that took on no function yet).
pub fn zygote_processes(fnlb: u32) -> (Vec<u32>, Vec<u32>) {
    let text = |pid: u32, file: &str| std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
    let is_zygote = |pid: u32| {
        let program = text(pid, "cmdline").split(|b| *b == 0).next().map(<[u8]>::to_vec).unwrap_or_default();
        String::from_utf8_lossy(&program).contains("python")
            && text(pid, "environ").split(|b| *b == 0).any(|v| v == b"FNLB_RUNTIME_ZYGOTE=1")
    };
    let parent = |pid: u32| -> Option<u32> {
        let stat = String::from_utf8(text(pid, "stat")).ok()?;
        stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
    };
    let descends = |mut pid: u32| {
        for _ in 0..16 {
            match parent(pid) {
                Some(p) if p == fnlb => return true,
                Some(p) if p > 1 => pid = p,
                _ => return false,
            }
        }
        false
    };
    let (mut zygotes, mut spares) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if !is_zygote(pid) || !descends(pid) {
            continue;
        }
        match parent(pid).is_some_and(is_zygote) {
            true => spares.push(pid),
            false => zygotes.push(pid),
        }
    }
    (zygotes, spares)
}

/// The cgroup directory of a process for a controller (`memory`, `cpu`): v1's hierarchy of that controller, or the
/// unified one.
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup").join(controller).join(path.trim_start_matches('/'));
        }
    }
    let unified = text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup");
    Path::new("/sys/fs/cgroup").join(unified.trim_start_matches('/'))
}
