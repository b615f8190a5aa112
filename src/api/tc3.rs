//! TC3-HMAC-SHA256, TencentCloud API 3.0's request signature (contract 3.2): signing for clients, verifying
//! for the server.
//!
//! The server verifies over the credential scope exactly as sent, whatever service it names: the SDKs that take
//! the service from the endpoint's first label (Node.js, Java) sign `127` for `127.0.0.1:9000`. The host is
//! tried in the forms the SDKs sign it in (`host_forms`): as sent, and without or with its port.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW_SECONDS: i64 = 300;
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The parts of a request that are signed.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The raw query string (GET); empty for POST.
    pub query: &'a str,
    /// Signed headers as (lower-case name, value as sent), any order.
    pub headers: Vec<(String, &'a str)>,
    /// SHA-256 of the body, lower-case hex (or of `UNSIGNED-PAYLOAD`).
    pub payload_hash: String,
    pub timestamp: i64,
    pub service: &'a str,
}

/// A parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub secret_id: &'a str,
    pub date: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is missing or malformed")]
    InvalidAuthorization,
    #[error("the signature does not match")]
    SignatureFailure,
    #[error("the signature expired: timestamp and server time differ by more than five minutes")]
    SignatureExpire,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical request of step 1, with header values as given.
pub fn canonical_request(req: &Signed<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> =
        req.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string())).collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let canonical =
        format!("{}\n/\n{}\n{canonical_headers}\n{signed_headers}\n{}", req.method, req.query, req.payload_hash);
    (canonical, signed_headers)
}

/// The signature of a request (steps 2 and 3).
pub fn signature(secret_key: &str, req: &Signed<'_>) -> String {
    let (canonical, _) = canonical_request(req);
    let date = crate::clock::utc_date(req.timestamp);
    let scope = format!("{date}/{}/tc3_request", req.service);
    let string_to_sign = format!("{ALGORITHM}\n{}\n{scope}\n{}", req.timestamp, sha256_hex(canonical.as_bytes()));
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, req.service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// The `Authorization` header a client sends (step 4).
pub fn authorization(secret_id: &str, secret_key: &str, req: &Signed<'_>) -> String {
    let (_, signed_headers) = canonical_request(req);
    let date = crate::clock::utc_date(req.timestamp);
    format!(
        "{ALGORITHM} Credential={secret_id}/{date}/{}/tc3_request, SignedHeaders={signed_headers}, Signature={}",
        req.service,
        signature(secret_key, req)
    )
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=HEX`.
pub fn parse_authorization(header: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = header.strip_prefix(ALGORITHM).ok_or(AuthError::InvalidAuthorization)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(AuthError::InvalidAuthorization)?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(AuthError::InvalidAuthorization),
        }
    }
    let credential = credential.ok_or(AuthError::InvalidAuthorization)?;
    let mut scope = credential.split('/');
    let (Some(secret_id), Some(date), Some(service), Some("tc3_request"), None) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(AuthError::InvalidAuthorization);
    };
    let signed_headers: Vec<&str> = signed.ok_or(AuthError::InvalidAuthorization)?.split(';').collect();
    let signature = signature.ok_or(AuthError::InvalidAuthorization)?;
    if secret_id.is_empty() || service.is_empty() || signed_headers.iter().any(|h| h.is_empty()) {
        return Err(AuthError::InvalidAuthorization);
    }
    Ok(Authorization { secret_id, date, service, signed_headers, signature })
}

/// Verifies a request's signature with the account's key, at server time `now` (Unix seconds).
///
/// Header values are tried as sent and, since Tencent's documentation lower-cases them, lower-cased.
pub fn verify(auth: &Authorization<'_>, secret_key: &str, req: &Signed<'_>, now: i64) -> Result<(), AuthError> {
    if now.abs_diff(req.timestamp) > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(AuthError::SignatureExpire);
    }
    if auth.date != crate::clock::utc_date(req.timestamp) || auth.service != req.service {
        return Err(AuthError::SignatureFailure);
    }
    let expected = signature(secret_key, req);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Ok(());
    }
    let lowered: Vec<String> = req.headers.iter().map(|(_, v)| v.to_ascii_lowercase()).collect();
    let lowered_req = Signed {
        method: req.method,
        query: req.query,
        headers: req.headers.iter().zip(&lowered).map(|((n, _), v)| (n.clone(), v.as_str())).collect(),
        payload_hash: req.payload_hash.clone(),
        timestamp: req.timestamp,
        service: req.service,
    };
    let expected = signature(secret_key, &lowered_req);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Ok(());
    }
    Err(AuthError::SignatureFailure)
}

/// The forms of a request's host a client may have signed, the host as sent first: without its port when it has
/// one (the Node.js SDK signs the host name alone), or with the port the request came to or the default ports when
/// it has none (a client may sign `name:443` and send `name`). At most `MAX_HOST_FORMS`.
pub fn host_forms(host: &str, local_port: u16) -> Vec<String> {
    let mut forms = vec![host.to_string()];
    match split_port(host) {
        Some((name, _)) => forms.push(name.to_string()),
        None => {
            for port in [local_port, 80, 443] {
                let form = format!("{host}:{port}");
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
    }
    forms
}

/// The most forms of a host `host_forms` gives.
pub const MAX_HOST_FORMS: usize = 4;

/// A host's name and port, when it carries a port (`name:port`, `[v6]:port`).
fn split_port(host: &str) -> Option<(&str, &str)> {
    let (name, port) = host.rsplit_once(':')?;
    let bracketed = name.starts_with('[') && name.ends_with(']');
    let plain = !name.contains(':');
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (bracketed || plain)).then_some((name, port))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector() -> Signed<'static> {
        Signed {
            method: "GET",
            query: "Limit=10&Offset=0",
            headers: vec![
                ("content-type".to_string(), "application/x-www-form-urlencoded"),
                ("host".to_string(), "cvm.tencentcloudapi.com"),
            ],
            payload_hash: sha256_hex(b""),
            timestamp: 1539084154,
            service: "cvm",
        }
    }

    /// The official test vector (contract 3.2).
    #[test]
    fn official_test_vector() {
        let req = vector();
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(signed, "content-type;host");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "91c9c192c14460df6c1ffc69e34e6c5e90708de2a6d282cccf957dbf1aa7f3a7"
        );
        assert_eq!(
            signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &req),
            "5da7a33f6993f0614b047e5df4582db9e9bf4672ba50567dba16c6ccf174c474"
        );
    }

    /// The example of Tencent's "Signature v3" page as first published (SignedHeaders `content-type;host`).
    #[test]
    fn documented_post_example() {
        let body = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let req = Signed {
            method: "POST",
            query: "",
            headers: vec![
                ("content-type".to_string(), "application/json; charset=utf-8"),
                ("host".to_string(), "cvm.tencentcloudapi.com"),
            ],
            payload_hash: sha256_hex(body.as_bytes()),
            timestamp: 1551113065,
            service: "cvm",
        };
        assert_eq!(req.payload_hash, "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064");
        assert_eq!(
            authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &req),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    /// The same example as the page has it now: `x-tc-action` signed too, its value lower-cased, the keys masked as
    /// the page prints them (32 asterisks). The request sends `X-TC-Action: DescribeInstances`: verification tries
    /// the lower-cased values.
    #[test]
    fn documented_post_example_signing_the_action() {
        let body = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let sent = Signed {
            method: "POST",
            query: "",
            headers: vec![
                ("content-type".to_string(), "application/json; charset=utf-8"),
                ("host".to_string(), "cvm.tencentcloudapi.com"),
                ("x-tc-action".to_string(), "DescribeInstances"),
            ],
            payload_hash: sha256_hex(body.as_bytes()),
            timestamp: 1551113065,
            service: "cvm",
        };
        let secret_key = "*".repeat(32);
        let header = "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, \
                      SignedHeaders=content-type;host;x-tc-action, \
                      Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f";
        let auth = parse_authorization(header).unwrap();
        assert_eq!(verify(&auth, &secret_key, &sent, 1551113065), Ok(()));
        assert_eq!(
            verify(&auth, "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &sent, 1551113065),
            Err(AuthError::SignatureFailure)
        );
    }

    /// The Node.js SDK pointed at `127.0.0.1:9000`: the scope names the service `127`, the host is signed without
    /// its port and sent with it.
    #[test]
    fn any_service_label_and_the_host_without_its_port() {
        let signed_as = Signed {
            method: "POST",
            query: "",
            headers: vec![("content-type".to_string(), "application/json"), ("host".to_string(), "127.0.0.1")],
            payload_hash: sha256_hex(b"{}"),
            timestamp: 1551113065,
            service: "127",
        };
        let header =
            authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &signed_as);
        let auth = parse_authorization(&header).unwrap();
        assert_eq!(auth.service, "127");
        let forms = host_forms("127.0.0.1:9000", 9000);
        assert_eq!(forms, vec!["127.0.0.1:9000", "127.0.0.1"]);
        let verified: Vec<bool> = forms
            .iter()
            .map(|host| {
                let mut sent = Signed {
                    headers: signed_as.headers.clone(),
                    payload_hash: signed_as.payload_hash.clone(),
                    ..signed_as
                };
                sent.headers[1].1 = host;
                verify(&auth, "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &sent, 1551113065).is_ok()
            })
            .collect();
        assert_eq!(verified, vec![false, true]);
    }

    #[test]
    fn host_forms_with_and_without_ports() {
        assert_eq!(
            host_forms("example.com", 9000),
            vec!["example.com", "example.com:9000", "example.com:80", "example.com:443"]
        );
        assert_eq!(host_forms("example.com", 80), vec!["example.com", "example.com:80", "example.com:443"]);
        assert_eq!(host_forms("[::1]:9000", 9000), vec!["[::1]:9000", "[::1]"]);
        assert_eq!(host_forms("[::1]", 443), vec!["[::1]", "[::1]:443", "[::1]:80"]);
        assert_eq!(host_forms("example.com:", 9000).len(), MAX_HOST_FORMS);
        for host in ["a", "a:1", "[::1]", "[::1]:2", "::1"] {
            assert!(host_forms(host, 9).len() <= MAX_HOST_FORMS, "{host}");
        }
    }

    #[test]
    fn authorization_round_trips_through_verify() {
        let req = vector();
        let header = authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &req);
        let auth = parse_authorization(&header).unwrap();
        assert_eq!(auth.secret_id, "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE");
        assert_eq!(auth.date, "2018-10-09");
        assert_eq!(auth.service, "cvm");
        assert_eq!(auth.signed_headers, vec!["content-type", "host"]);
        assert_eq!(verify(&auth, "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &req, 1539084154 + 299), Ok(()));
        assert_eq!(verify(&auth, "wrong", &req, 1539084154), Err(AuthError::SignatureFailure));
        assert_eq!(
            verify(&auth, "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &req, 1539084154 + 301),
            Err(AuthError::SignatureExpire)
        );
        let mut extreme = vector();
        extreme.timestamp = i64::MIN;
        assert_eq!(
            verify(&auth, "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &extreme, 1539084154),
            Err(AuthError::SignatureExpire)
        );
    }

    #[test]
    fn malformed_authorization() {
        for bad in [
            "",
            "HMAC x",
            "TC3-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/2018-10-09/cvm/tc3_request, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/2018-10-09/cvm/tc3_request, SignedHeaders=host, Signature=x, Extra=1",
        ] {
            assert_eq!(parse_authorization(bad), Err(AuthError::InvalidAuthorization), "{bad}");
        }
    }
}
