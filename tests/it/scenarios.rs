//! The three scenarios of examples/, each deployed with its one command (`deploy.sh`, which runs `fnlb apply`)
//! and seen working: HTTP/HTTPS general access in headless Chromium, switching between servers and a function
//! across two VIPs, and business diversion under a flash-sale burst.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::harness::{TestApp, eventually, request};

/// An example copied out of the source tree (with the others, whose scripts and code it shares) and deployed to `app`; its server, if
/// it started one, is stopped when this goes.
struct Deployed {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Deployed {
    fn new(app: &TestApp, name: &str) -> Deployed {
        let temp = tempfile::tempdir().unwrap();
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"), temp.path());
        let dir = temp.path().join(name);
        let deployed = Deployed { _temp: temp, dir };
        let out = deployed.deploy(app);
        assert!(out.contains("Applied"), "{out}");
        deployed
    }

    /// Runs the example's deploy.sh; returns what it printed.
    fn deploy(&self, app: &TestApp) -> String {
        let out = app.client_of(Command::new(self.dir.join("deploy.sh"))).output().expect("deploy.sh runs");
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "deploy.sh failed: {printed}");
        printed
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("server.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Where screenshots go for review: target/screenshots.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens `url` in headless Chromium (tests/browser/page.mjs); `home` holds the NSS database of trusted CAs.
fn browse(url: &str, screenshot: &Path, resolve: &str, home: &Path) -> Result<Value, String> {
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test, or `npm ci` in tests/browser"
    );
    let out = Command::new("node")
        .arg(browser.join("page.mjs"))
        .args([url, screenshot.to_str().unwrap(), "--resolve", resolve, "--home", home.to_str().unwrap()])
        .output()
        .expect("node runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("page.mjs printed no JSON ({e})")))
}

#[tokio::test]
async fn general_access_shows_hello_clb_over_https_in_chromium() {
    let app = TestApp::start();
    let example = Deployed::new(&app, "general-access");
    assert!(example.deploy(&app).contains("No changes"), "deploying again changes nothing");

    // A browser profile that trusts the example's CA, and one that does not.
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let certutil = |args: &[&str]| {
        let status = Command::new("certutil").args(["-d", &db]).args(args).status().expect("certutil runs");
        assert!(status.success(), "certutil {args:?}");
    };
    certutil(&["-N", "--empty-password"]);
    let ca = example.dir.join("tls/ca.crt");
    certutil(&["-A", "-t", "C,,", "-n", "fnlb example CA", "-i", ca.to_str().unwrap()]);

    // The HTTP listener redirects to HTTPS, where the seed's function answers.
    let shot = screenshots().join("general-access.png");
    let resolve = "hello.fnlb.test=127.0.0.10";
    let page = browse("http://hello.fnlb.test:8080/", &shot, resolve, home.path()).unwrap();
    assert_eq!(page["url"], "https://hello.fnlb.test:8443/", "{page}");
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["heading"], "Hello CLB", "{page}");
    assert_eq!(page["errors"], serde_json::json!([]), "{page}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "a screenshot was taken");

    // Without the CA, Chromium refuses the certificate: the trust above is what made it work.
    let untrusting = tempfile::tempdir().unwrap();
    let shot = screenshots().join("general-access-untrusted.png");
    let refused = browse("https://hello.fnlb.test:8443/", &shot, resolve, untrusting.path()).unwrap_err();
    assert!(refused.contains("ERR_CERT_AUTHORITY_INVALID"), "{refused}");
}

#[tokio::test]
async fn cvm_scf_switch_answers_the_same_on_both_vips() {
    let app = TestApp::start();
    let _example = Deployed::new(&app, "cvm-scf-switch");
    // As DNS round robin would: one client alternating between the two A records.
    let paths = ["/", "/api/hello", "/api/items", "/api/items/2", "/api/items/9", "/nowhere"];
    for path in paths {
        let mut seen: HashMap<&str, (u16, String)> = HashMap::new();
        for round in 0..2 {
            for (vip, served_by) in [("127.0.0.2", "cvm"), ("127.0.0.3", "function")] {
                let url = format!("http://{vip}:8080{path}");
                let reply = request("GET", &url, &[("Host", "shop.fnlb.test")], Bytes::new()).await;
                assert_eq!(reply.header("x-served-by"), served_by, "{url}");
                let answer = (reply.status, reply.text());
                if let Some(first) = seen.get("answer") {
                    assert_eq!(first, &answer, "round {round}: {url} answers differently");
                }
                seen.insert("answer", answer);
            }
        }
    }
}

/// One HTTPS request over a new connection, trusting `roots`, to `host` on 127.0.0.20:8443: (status, body).
async fn https_get(roots: Arc<rustls::ClientConfig>, host: &'static str, path: &str) -> Result<(u16, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect("127.0.0.20:8443").await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let tls = tokio_rustls::TlsConnector::from(roots).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path).header("Host", host).body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// The median and the 99th percentile of some durations.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[(samples.len() * 99).div_ceil(100).saturating_sub(1)])
}

#[tokio::test]
async fn a_flash_sale_burst_scales_the_function_and_spares_the_daily_business() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--idle-timeout", "1"]);
    let example = Deployed::new(&app, "flash-sale");
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(example.dir.join("tls/ca.crt")).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);

    // The daily business alone: its latency over 100 requests.
    let daily = |n: usize| {
        let config = config.clone();
        async move {
            let mut took = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                let (status, _) = https_get(config.clone(), "daily.fnlb.test", "/").await.unwrap();
                assert_eq!(status, 200);
                took.push(start.elapsed());
            }
            took
        }
    };
    let quiet = percentiles(daily(100).await);

    // The burst: 200 concurrent clients, one order each, every one answered within 30 seconds.
    const CLIENTS: usize = 200;
    const LIMIT: usize = 10;
    let burst_start = Instant::now();
    let orders: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move {
                let order = https_get(config, "sale.fnlb.test", "/order");
                tokio::time::timeout(Duration::from_secs(30), order).await
            })
        })
        .collect();
    let during = percentiles(daily(100).await);
    let mut answers = Vec::with_capacity(CLIENTS);
    for order in orders {
        let answer = order.await.unwrap().expect("no order waits more than 30 seconds");
        answers.push(answer.expect("every order gets an HTTP answer"));
    }
    let burst = burst_start.elapsed();
    let (mut placed, mut throttled) = (Vec::new(), 0);
    for (status, body) in &answers {
        let body: Value = serde_json::from_slice(body).unwrap();
        match status {
            200 => placed.push(body),
            503 if body["errno"] == 432 => throttled += 1,
            other => panic!("an order answered {other}: {body}"),
        }
    }
    // How far it scaled: the most orders in the function at one moment, and the instances that served them.
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for order in &placed {
        edges.push((order["started"].as_f64().unwrap(), 1));
        edges.push((order["ended"].as_f64().unwrap(), -1));
    }
    edges.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut running, mut peak) = (0, 0);
    for (_, step) in edges {
        running += step;
        peak = peak.max(running);
    }
    let instances: HashSet<&str> = placed.iter().map(|o| o["instance"].as_str().unwrap()).collect();

    // And back to zero afterwards.
    let idle_start = Instant::now();
    eventually("the flash-sale function scales to zero", Duration::from_secs(30), || async {
        crate::harness::instance_processes("flash-sale").is_empty().then_some(())
    })
    .await;
    let to_zero = idle_start.elapsed();

    eprintln!(
        "flash sale: {CLIENTS} clients in {burst:?}: {} orders placed, {throttled} throttled (432); at most {peak} at \
         once on {} instances (limit {LIMIT}); back to zero {to_zero:?} after; daily median and p99 {quiet:?} \
         quiet, {during:?} during the burst ({:.2}× the median)",
        placed.len(),
        instances.len(),
        during.0.as_secs_f64() / quiet.0.as_secs_f64(),
    );
    assert_eq!(placed.len() + throttled, CLIENTS);
    assert_eq!(peak as usize, LIMIT, "the function scaled out to its concurrency limit, not past it");
    assert!(instances.len() <= LIMIT, "{} instances", instances.len());
    // The median within 2× of the quiet one (the tail moves with whatever else the machine runs); a few
    // milliseconds either way are noise on loopback.
    assert!(
        during.0 <= quiet.0 * 2 + Duration::from_millis(20),
        "daily median and p99 {during:?} during the burst, {quiet:?} without"
    );
}
