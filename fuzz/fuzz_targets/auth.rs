#![no_main]
//! The API's two signatures on any input. TC3-HMAC-SHA256: `tc3::parse_authorization` on the header, and when it
//! parses, the parts written back into a header parse to the same parts, and `tc3::verify` of a fuzzed request
//! (any timestamp, any header values) returns without panicking; a request signed with `tc3::authorization`
//! parses and verifies. Signature v1: the query string or form decoded (`flat::pairs`), its common parameters
//! picked out (`v1::common_params`: each at most once), `v1::verify` with either algorithm returns, and a
//! signature made by `v1::sign` over `v1::string_to_sign` verifies; `flat::unflatten` of the pairs, when it
//! succeeds, holds exactly the pairs (flattened back, they are the same set).

use fnlb::api::flat;
use fnlb::api::tc3::{self, Signed};
use fnlb::api::v1::{self, Algorithm, Style};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), item, out);
            }
        }
        Value::Object(map) => {
            for (name, item) in map {
                flatten(&format!("{prefix}.{name}"), item, out);
            }
        }
        other => panic!("unflatten made a non-string leaf {other}"),
    }
}

fn tc3_checks(text: &str, timestamp: i64) {
    let header = text.lines().next().unwrap_or("");
    if let Ok(auth) = tc3::parse_authorization(header) {
        assert!(!auth.secret_id.is_empty() && !auth.service.is_empty());
        let again = format!(
            "{} Credential={}/{}/{}/tc3_request, SignedHeaders={}, Signature={}",
            tc3::ALGORITHM,
            auth.secret_id,
            auth.date,
            auth.service,
            auth.signed_headers.join(";"),
            auth.signature
        );
        assert_eq!(tc3::parse_authorization(&again).as_ref(), Ok(&auth), "{again}");
        let values: Vec<&str> = text.lines().skip(1).collect();
        let request = Signed {
            method: "POST",
            query: values.first().copied().unwrap_or(""),
            headers: auth
                .signed_headers
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), values.get(i).copied().unwrap_or("")))
                .collect(),
            payload_hash: tc3::sha256_hex(text.as_bytes()),
            timestamp,
            service: auth.service,
        };
        let _ = tc3::verify(&auth, "key", &request, timestamp.wrapping_add(7));
        let _ = tc3::verify(&auth, "key", &request, 0);
    }
    // A request the client signs verifies.
    let mut lines = text.lines();
    let (service, query) = (lines.next().unwrap_or("cvm"), lines.next().unwrap_or(""));
    if service.is_empty() || service.contains(['/', ',', ' ']) {
        return;
    }
    let headers: Vec<(String, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        // Header names as HTTP has them (tokens, RFC 9110 section 5.1); the signature lists them by name.
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    let mut names: Vec<&String> = headers.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    if names.len() != headers.len() || headers.is_empty() {
        return;
    }
    let request = Signed {
        method: "GET",
        query,
        headers: headers.clone(),
        payload_hash: tc3::sha256_hex(b""),
        timestamp,
        service,
    };
    let header = tc3::authorization("AKIDfuzz", "key", &request);
    let auth = tc3::parse_authorization(&header).expect("a header the client writes parses");
    assert_eq!(tc3::verify(&auth, "key", &request, timestamp), Ok(()), "{header}");
}

fn v1_checks(encoded: &[u8]) {
    let pairs = flat::pairs(encoded);
    if let Ok(common) = v1::common_params(&pairs) {
        for (name, value) in &common {
            assert!(v1::COMMON_PARAMS.contains(name));
            assert_eq!(pairs.iter().filter(|(n, _)| n == name).count(), 1);
            assert!(pairs.iter().any(|(n, v)| n == name && v == value));
        }
        let algorithm = Algorithm::of(common.get("SignatureMethod").copied());
        let signature = common.get(v1::SIGNATURE).copied().unwrap_or("");
        let hosts = tc3::host_forms(common.get("Region").copied().unwrap_or("h:1"), 9000);
        assert!(hosts.len() <= tc3::MAX_HOST_FORMS);
        let _ = v1::verify("key", algorithm, signature, "GET", &hosts, "/", &pairs);
        for style in v1::styles(&pairs) {
            let signed = v1::string_to_sign("POST", &hosts[0], "/", &pairs, style);
            let good = v1::sign("key", algorithm, &signed);
            assert!(v1::verify("key", algorithm, &good, "POST", &hosts, "/", &pairs), "{signed}");
        }
        let plain = v1::string_to_sign("GET", "h", "/", &pairs, Style::default());
        assert!(!v1::verify(
            "other",
            Algorithm::HmacSha256,
            &v1::sign("key", Algorithm::HmacSha256, &plain),
            "GET",
            &["h".into()],
            "/",
            &pairs
        ));
    }
    if let Ok(object) = flat::unflatten(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
        let mut back = Vec::new();
        for (name, value) in &object {
            flatten(name, value, &mut back);
        }
        let mut given = pairs.clone();
        given.sort();
        back.sort();
        assert_eq!(back, given);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 2 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let timestamp = i64::from_le_bytes(data.iter().rev().take(8).fold([0; 8], |mut t, &b| {
                t.rotate_left(1);
                t[0] = b;
                t
            }));
            tc3_checks(text, timestamp);
            tc3_checks(text, 1765065600);
        }
        _ => v1_checks(rest),
    }
});
