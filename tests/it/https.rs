//! HTTPS listeners: TLS 1.2 and 1.3 terminated by fnlb, certificates inline or by id, SNI per domain, HTTP/2 by
//! ALPN (a body too large for a function answered 413 over it), RSA and ECDSA side by side, mutual TLS; checked with
//! curl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

use crate::harness::{TestApp, bind_params, free_addr};

/// A certificate authority made for one test.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Authority { issuer: Issuer::new(params, key), pem }
    }

    /// An ECDSA certificate for these names.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with_key(names, KeyPair::generate().unwrap())
    }

    fn leaf_with_key(&self, names: &[&str], key: KeyPair) -> Leaf {
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        Leaf { cert, key: key.serialize_pem() }
    }

    /// An RSA certificate (the key is a test fixture: rcgen cannot make RSA keys).
    fn rsa_leaf(&self, names: &[&str]) -> Leaf {
        let pem = std::fs::read_to_string(fixture("rsa2048.key")).unwrap();
        let key = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        self.leaf_with_key(names, key)
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// What curl did: its exit code, the body and the negotiated HTTP version.
pub struct Fetched {
    pub code: i32,
    pub body: String,
    pub http_version: String,
}

/// `curl https://{host}:{port}/` resolved to `vip`, trusting `ca`, with extra arguments.
pub async fn curl(host: &str, vip: &str, port: u16, ca: &Path, extra: &[&str]) -> Fetched {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{host}:{port}:{vip}"))
            .args(["-w", "\n%{http_version}"])
            .args(extra)
            .arg(format!("https://{host}:{port}/hello"))
            .output(),
    )
    .await
    .expect("curl finishes")
    .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, version) = text.rsplit_once('\n').unwrap_or((&text, ""));
    Fetched { code: out.status.code().unwrap_or(-1), body: body.to_string(), http_version: version.to_string() }
}

/// A load balancer with an HTTPS listener created with `listener` (merged into CreateListener's parameters).
async fn https_listener(app: &TestApp, listener: Value) -> (String, String, String, u16) {
    let (lb, listener, vip, port) = crate::harness::listener(app, "HTTPS", listener).await;
    (lb, listener, vip.to_string(), port)
}

/// A rule for `domain` on `/` (merged with `extra`), bound to the function.
async fn bound_rule(app: &TestApp, lb: &str, listener: &str, domain: &str, extra: Value, function: &str) {
    let mut rule = json!({"Domain": domain, "Url": "/"});
    rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let created =
        app.clb("CreateRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [rule]})).await.unwrap();
    let location = created["LocationIds"][0].as_str().unwrap();
    app.clb("RegisterFunctionTargets", bind_params(lb, listener, location, function)).await.unwrap();
}

fn inline(leaf: &Leaf) -> Value {
    json!({"CertName": "site", "CertContent": leaf.cert, "CertKey": leaf.key})
}

#[tokio::test]
async fn an_https_listener_terminates_tls_with_an_inline_certificate() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = Authority::new("fnlb test CA");
    let ca_file = ca.write(temp.path(), "ca.pem");
    app.create_fixture("secure", "echo", json!({})).await.unwrap();
    let leaf = ca.leaf(&["secure.test"]);
    let (lb, listener, vip, port) = https_listener(&app, json!({"Certificate": inline(&leaf)})).await;
    bound_rule(&app, &lb, &listener, "secure.test", json!({}), "secure").await;

    let fetched = curl("secure.test", &vip, port, &ca_file, &[]).await;
    assert_eq!(fetched.code, 0, "{}", fetched.body);
    let event = &serde_json::from_str::<Value>(&fetched.body).unwrap()["event"];
    assert_eq!(event["headers"]["X-Client-Proto"], "https", "the function sees plain HTTP plus X-Client-Proto");
    assert_eq!(event["headers"]["X-Forwarded-Proto"], "https");
    assert_eq!(event["requestContext"]["protocol"], "HTTPS");
    assert_eq!(fetched.http_version, "1.1", "HTTP/2 is off until the domain turns it on");

    // TLS 1.2 and 1.3; nothing older.
    assert_eq!(curl("secure.test", &vip, port, &ca_file, &["--tlsv1.3"]).await.code, 0);
    assert_eq!(curl("secure.test", &vip, port, &ca_file, &["--tlsv1.2", "--tls-max", "1.2"]).await.code, 0);
    assert_ne!(curl("secure.test", &vip, port, &ca_file, &["--tlsv1.1", "--tls-max", "1.1"]).await.code, 0);

    // The key is never given back; the certificate is kept and can be named by its id.
    let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    assert!(!described.to_string().contains("PRIVATE KEY"), "{described}");
    let certificate = &described["Listeners"][0]["Certificate"];
    assert_eq!(certificate["SSLMode"], "UNIDIRECTIONAL");
    let cert_id = certificate["CertId"].as_str().unwrap().to_string();
    assert_eq!(cert_id.len(), 8, "{certificate}");
    let (lb2, listener2, vip2, port2) = https_listener(&app, json!({"Certificate": {"CertId": cert_id}})).await;
    bound_rule(&app, &lb2, &listener2, "secure.test", json!({}), "secure").await;
    assert_eq!(curl("secure.test", &vip2, port2, &ca_file, &[]).await.code, 0, "a listener by CertId serves too");
    let in_use = app.clb("DeleteListener", json!({"LoadBalancerId": lb2, "ListenerId": listener2})).await;
    assert!(in_use.is_ok());

    // HTTP/2 by ALPN once the domain has it.
    app.clb(
        "ModifyDomainAttributes",
        json!({"LoadBalancerId": lb, "ListenerId": listener, "Domain": "secure.test", "Http2": true}),
    )
    .await
    .unwrap();
    let h2 = crate::harness::eventually("HTTP/2 is offered", Duration::from_secs(10), || async {
        let fetched = curl("secure.test", &vip, port, &ca_file, &["--http2"]).await;
        (fetched.http_version == "2").then_some(fetched)
    })
    .await;
    let event = &serde_json::from_str::<Value>(&h2.body).unwrap()["event"];
    assert_eq!(event["headers"]["x-client-proto-ver"], "HTTP/2.0", "{event}");

    // Certificates and keys are stored where only fnlb's user can read them.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(app.data_dir.join("fnlb.sqlite3")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn certificates_that_do_not_fit_are_refused() {
    let app = TestApp::start();
    let ca = Authority::new("fnlb test CA");
    let one = ca.leaf(&["a.test"]);
    let other = ca.leaf(&["a.test"]);
    let (vip, port) = free_addr();
    let lb = app.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let create = |certificate: Value| json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTPS", "Certificate": certificate});
    let code = |r: Result<Value, fnlb::client::ClientError>| match r {
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    };
    let mismatched = json!({"CertContent": one.cert, "CertKey": other.key});
    assert_eq!(code(app.clb("CreateListener", create(mismatched)).await), "InvalidParameterValue");
    let garbage = json!({"CertContent": "not a certificate", "CertKey": one.key});
    assert_eq!(code(app.clb("CreateListener", create(garbage)).await), "InvalidParameterValue");
    assert_eq!(
        code(app.clb("CreateListener", create(json!({"CertId": "NoSuch01"}))).await),
        "InvalidParameter.CertificateNotFound"
    );
    let no_ca = json!({"SSLMode": "MUTUAL", "CertContent": one.cert, "CertKey": one.key});
    assert_eq!(code(app.clb("CreateListener", create(no_ca)).await), "InvalidParameter");
    let none = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTPS"});
    assert_eq!(code(app.clb("CreateListener", none).await), "MissingParameter");
}

#[tokio::test]
async fn sni_gives_each_domain_its_own_certificate() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (Authority::new("CA A"), Authority::new("CA B"));
    let (file_a, file_b) = (ca_a.write(temp.path(), "a.pem"), ca_b.write(temp.path(), "b.pem"));
    app.create_fixture("sni", "echo", json!({})).await.unwrap();
    let (lb, listener, vip, port) = https_listener(&app, json!({"SniSwitch": 1})).await;
    let cert_a = json!({"Certificate": inline(&ca_a.leaf(&["a.test"]))});
    bound_rule(&app, &lb, &listener, "a.test", cert_a, "sni").await;
    let cert_b = json!({"Certificate": inline(&ca_b.leaf(&["b.test"]))});
    bound_rule(&app, &lb, &listener, "b.test", cert_b, "sni").await;

    assert_eq!(curl("a.test", &vip, port, &file_a, &[]).await.code, 0);
    assert_eq!(curl("b.test", &vip, port, &file_b, &[]).await.code, 0);
    assert_ne!(curl("b.test", &vip, port, &file_a, &[]).await.code, 0, "b.test's certificate is not CA A's");
    let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    let rules = described["Listeners"][0]["Rules"].as_array().unwrap();
    assert!(rules.iter().all(|r| r["Certificate"]["CertId"].is_string()), "{described}");

    // A domain's certificate is replaced in place: new handshakes use the new one.
    let replaced = json!({
        "LoadBalancerId": lb, "ListenerId": listener, "Domain": "a.test",
        "Certificate": inline(&ca_b.leaf(&["a.test"])),
    });
    app.clb("ModifyDomainAttributes", replaced).await.unwrap();
    crate::harness::eventually("a.test has its new certificate", Duration::from_secs(10), || async {
        (curl("a.test", &vip, port, &file_b, &[]).await.code == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn rsa_and_ecdsa_certificates_serve_side_by_side() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = Authority::new("fnlb test CA");
    let ca_file = ca.write(temp.path(), "ca.pem");
    app.create_fixture("dual", "echo", json!({})).await.unwrap();
    let (rsa, ecdsa) = (ca.rsa_leaf(&["dual.test"]), ca.leaf(&["dual.test"]));
    let multi = json!({"MultiCertInfo": {"SSLMode": "UNIDIRECTIONAL", "CertList": [
        {"CertName": "rsa", "CertContent": rsa.cert, "CertKey": rsa.key},
        {"CertName": "ecdsa", "CertContent": ecdsa.cert, "CertKey": ecdsa.key},
    ]}});
    let (lb, listener, vip, port) = https_listener(&app, multi).await;
    bound_rule(&app, &lb, &listener, "dual.test", json!({}), "dual").await;
    // TLS 1.2 cipher suites name the certificate's key type: each works only with its own certificate.
    for suite in ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"] {
        let fetched = curl("dual.test", &vip, port, &ca_file, &["--tls-max", "1.2", "--ciphers", suite]).await;
        assert_eq!(fetched.code, 0, "{suite}: {}", fetched.body);
    }
    let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
    assert_eq!(described["Listeners"][0]["Certificate"]["ExtCertIds"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn mutual_tls_asks_clients_for_a_certificate() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let ca_file = server_ca.write(temp.path(), "ca.pem");
    let client = client_ca.leaf(&["client.test"]);
    let (client_cert, client_key) = (temp.path().join("client.pem"), temp.path().join("client.key"));
    std::fs::write(&client_cert, &client.cert).unwrap();
    std::fs::write(&client_key, &client.key).unwrap();
    app.create_fixture("mtls", "echo", json!({})).await.unwrap();
    let leaf = server_ca.leaf(&["mtls.test"]);
    for (verify, without_cert_ok) in [("ON", false), ("OPTIONAL", true)] {
        let certificate = json!({"Certificate": {
            "SSLMode": "MUTUAL", "SSLVerifyClient": verify,
            "CertContent": leaf.cert, "CertKey": leaf.key, "CertCaName": "clients", "CertCaContent": client_ca.pem,
        }});
        let (lb, listener, vip, port) = https_listener(&app, certificate).await;
        bound_rule(&app, &lb, &listener, "mtls.test", json!({}), "mtls").await;
        let with_cert = ["--cert", client_cert.to_str().unwrap(), "--key", client_key.to_str().unwrap()];
        assert_eq!(
            curl("mtls.test", &vip, port, &ca_file, &with_cert).await.code,
            0,
            "{verify}: with a client certificate"
        );
        let without = curl("mtls.test", &vip, port, &ca_file, &[]).await;
        assert_eq!(without.code == 0, without_cert_ok, "{verify}: without a client certificate ({})", without.code);
        let described = app.clb("DescribeListeners", json!({"LoadBalancerId": lb})).await.unwrap();
        let output = &described["Listeners"][0]["Certificate"];
        assert_eq!((output["SSLMode"].as_str(), output["SSLVerifyClient"].as_str()), (Some("MUTUAL"), Some(verify)));
        assert!(output["CertCaId"].is_string(), "{output}");
    }
}

#[tokio::test]
async fn an_http_rule_redirects_to_its_https_rule() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = Authority::new("fnlb redirect CA");
    let ca_file = ca.write(temp.path(), "ca.pem");
    app.create_fixture("redirected", "echo", json!({})).await.unwrap();
    let leaf = ca.leaf(&["shop.test"]);
    let (lb, https, vip, port) = https_listener(&app, json!({"Certificate": inline(&leaf)})).await;
    let http_port = crate::harness::free_port(vip.parse().unwrap());
    let created = app
        .clb("CreateListener", json!({"LoadBalancerId": lb, "Ports": [http_port], "Protocol": "HTTP"}))
        .await
        .unwrap();
    let http = created["ListenerIds"][0].as_str().unwrap().to_string();
    let rule = |listener: &str| {
        let (app, lb, listener) = (&app, lb.clone(), listener.to_string());
        async move {
            let rules =
                json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "shop.test", "Url": "/"}]});
            let created = app.clb("CreateRule", rules).await.unwrap();
            created["LocationIds"][0].as_str().unwrap().to_string()
        }
    };
    let (source, target) = (rule(&http).await, rule(&https).await);
    app.clb("RegisterFunctionTargets", bind_params(&lb, &https, &target, "redirected")).await.unwrap();
    let infos = json!([{"SourceLocationId": source, "TargetLocationId": target, "RewriteCode": 301, "TakeUrl": true}]);
    let manual =
        json!({"LoadBalancerId": lb, "SourceListenerId": http, "TargetListenerId": https, "RewriteInfos": infos});
    app.clb("ManualRewrite", manual.clone()).await.unwrap();
    let again = app.clb("ManualRewrite", manual.clone()).await.unwrap_err().to_string();
    assert!(again.contains("already redirects"), "{again}");
    let backwards = json!({"LoadBalancerId": lb, "SourceListenerId": https, "TargetListenerId": http,
        "RewriteInfos": [{"SourceLocationId": target, "TargetLocationId": source}]});
    assert!(app.clb("ManualRewrite", backwards).await.is_err(), "a redirect's target does not redirect");

    // The HTTP rule answers with the redirect; curl follows it to the function over HTTPS.
    let url = format!("http://{vip}:{http_port}/a/b?c=1");
    let reply = crate::harness::request("GET", &url, &[("Host", "shop.test")], bytes::Bytes::new()).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), format!("https://shop.test:{port}/a/b?c=1"));
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-L", "--max-time", "20", "--cacert"])
        .arg(&ca_file)
        .args(["--resolve", &format!("shop.test:{http_port}:{vip}"), "--resolve", &format!("shop.test:{port}:{vip}")])
        .arg(format!("http://shop.test:{http_port}/followed"))
        .output()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(body["event"]["path"], "/followed");
    assert_eq!(body["event"]["headers"]["X-Client-Proto"], "https");

    let described = app.clb("DescribeRewrite", json!({"LoadBalancerId": lb})).await.unwrap();
    let set = described["RewriteSet"].as_array().unwrap();
    assert_eq!(set.len(), 1, "{described}");
    assert_eq!(set[0]["RewriteTarget"]["TargetLocationId"], json!(target));
    assert_eq!(set[0]["RewriteTarget"]["RewriteType"], "MANUAL");

    // Deleting the redirect: the HTTP rule has no target of its own, so 503.
    app.clb("DeleteRewrite", manual).await.unwrap();
    let reply = crate::harness::request("GET", &url, &[("Host", "shop.test")], bytes::Bytes::new()).await;
    assert_eq!(reply.status, 503);
}

#[tokio::test]
async fn auto_rewrite_makes_the_http_listener_and_redirects_each_rule() {
    let app = TestApp::start();
    let ca = Authority::new("fnlb auto-rewrite CA");
    app.create_fixture("auto-redirected", "echo", json!({})).await.unwrap();
    let leaf = ca.leaf(&["auto.test"]);
    let (lb, https, vip, port) = https_listener(&app, json!({"Certificate": inline(&leaf)})).await;
    bound_rule(&app, &lb, &https, "auto.test", json!({}), "auto-redirected").await;

    let auto = json!({"LoadBalancerId": lb, "ListenerId": https, "Domains": ["auto.test"], "RewriteCodes": [301]});
    app.clb("AutoRewrite", auto).await.unwrap();
    let listeners = app.clb("DescribeListeners", json!({"LoadBalancerId": lb, "Protocol": "HTTP"})).await.unwrap();
    let http = &listeners["Listeners"][0];
    assert_eq!(http["Port"], 80, "{listeners}");
    let rule = &http["Rules"][0];
    assert_eq!((&rule["Domain"], &rule["Url"]), (&json!("auto.test"), &json!("/")));
    assert_eq!(rule["RewriteTarget"]["RewriteType"], "AUTO");
    assert_eq!(rule["BeAutoCreated"], true);

    let reply = crate::harness::request(
        "GET",
        &format!("http://{vip}:80/a?b=1"),
        &[("Host", "auto.test")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), format!("https://auto.test:{port}/a?b=1"));

    // A domain the HTTPS listener does not serve is refused.
    let unknown = json!({"LoadBalancerId": lb, "ListenerId": https, "Domains": ["other.test"]});
    assert!(app.clb("AutoRewrite", unknown).await.unwrap_err().to_string().contains("other.test"));
}

#[tokio::test]
async fn an_http2_body_over_6_mb_to_a_function_is_413_errno_406() {
    let app = TestApp::start();
    let temp = tempfile::tempdir().unwrap();
    let ca = Authority::new("fnlb h2 CA");
    let ca_file = ca.write(temp.path(), "ca.pem");
    app.create_fixture("h2-large", "echo", json!({})).await.unwrap();
    let leaf = ca.leaf(&["large.test"]);
    let (lb, listener, vip, port) = https_listener(&app, json!({"Certificate": inline(&leaf)})).await;
    bound_rule(&app, &lb, &listener, "large.test", json!({"Http2": true}), "h2-large").await;
    let upload = |size: usize, name: &str| {
        let path = temp.path().join(name);
        std::fs::write(&path, vec![b'x'; size]).unwrap();
        format!("@{}", path.display())
    };
    let (large, small) = (upload(16 << 20, "large"), upload(1000, "small"));
    let post = |body: String| {
        let ca_file = ca_file.clone();
        let vip = vip.clone();
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(30),
                tokio::process::Command::new("curl")
                    .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
                    .arg(&ca_file)
                    .arg("--resolve")
                    .arg(format!("large.test:{port}:{vip}"))
                    .args(["-H", "Content-Type: text/plain", "--data-binary", &body])
                    .args(["-w", "\n%{http_code} %{http_version}"])
                    .arg(format!("https://large.test:{port}/"))
                    .output(),
            )
            .await
            .expect("curl finishes")
            .expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            (out.status.code().unwrap_or(-1), text, stderr)
        }
    };
    // The client reads the whole answer, as over HTTP/1.1, and its stream ends cleanly (curl exits 0).
    let (code, text, stderr) = post(large).await;
    assert_eq!(code, 0, "{stderr}{text}");
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status, "413 2", "{text}");
    let answer: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!((answer["errno"].as_i64(), answer["error"].as_str()), (Some(406), Some("RequestTooLarge")), "{answer}");
    assert!(answer["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{answer}");
    // A body within the limit is served.
    let (code, text, stderr) = post(small).await;
    assert_eq!(code, 0, "{stderr}{text}");
    assert!(text.ends_with("\n200 2"), "{text}");
}
