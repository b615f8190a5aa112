//! The API's signature v1 (`SignatureMethod` `HmacSHA1` or `HmacSHA256`), which the SDKs still offer besides
//! TC3-HMAC-SHA256. Every parameter is sent flattened (`flat`), in the query string (GET) or an
//! `application/x-www-form-urlencoded` body (POST): the common ones (`COMMON_PARAMS`: `Action`, `Version`,
//! `Region`, `Timestamp`, `Nonce`, `SecretId`, `Signature`, …) beside the action's own.
//!
//! The signature is the Base64 of the HMAC, keyed with the SecretKey, of `METHOD + host + path + "?"` followed by
//! every parameter but `Signature`, sorted by name, as `name=value` (values as they were before URL encoding)
//! joined with `&`. `HmacSHA256` is used only when `SignatureMethod` names it, HmacSHA1 otherwise (Tencent's rule).
//! The SDKs differ in small ways, each of which `verify` accepts: Go leaves parameters with empty values out, the
//! Python SDK writes `_` in a name as `.`, and the host is signed as the client's endpoint (with or without its
//! port; the caller gives the forms to try).

use std::collections::BTreeMap;

use base64::Engine as _;
use ring::hmac;

/// The parameter that carries the signature.
pub const SIGNATURE: &str = "Signature";

/// Parameters common to every action in a v1 request (and in the query of a TC3 GET, where the Go SDK leaves
/// some); none is an action's parameter.
pub const COMMON_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    SIGNATURE,
    "SignatureMethod",
    "Token",
    "Language",
    "RequestClient",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

/// How an SDK writes the parameters into the string it signs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Parameters with empty values are left out (the Go SDK).
    pub skip_empty: bool,
    /// `_` in a name is written `.` (the Python SDK).
    pub underscore_as_dot: bool,
}

// === impl Algorithm ===

impl Algorithm {
    /// The algorithm a request's `SignatureMethod` asks for: HmacSHA256 when it says so, HmacSHA1 otherwise.
    pub fn of(signature_method: Option<&str>) -> Algorithm {
        match signature_method {
            Some("HmacSHA256") => Algorithm::HmacSha256,
            _ => Algorithm::HmacSha1,
        }
    }

    fn key(self, secret_key: &str) -> hmac::Key {
        let algorithm = match self {
            Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
        };
        hmac::Key::new(algorithm, secret_key.as_bytes())
    }
}

/// The string a v1 signature signs: `METHOD + host + path + "?" + name=value&…`, every parameter but `Signature`
/// sorted by name (byte order), written in `style`.
pub fn string_to_sign(method: &str, host: &str, path: &str, params: &[(String, String)], style: Style) -> String {
    let mut written: Vec<(String, &str)> = params
        .iter()
        .filter(|(name, value)| name != SIGNATURE && !(style.skip_empty && value.is_empty()))
        .map(|(name, value)| {
            let name = if style.underscore_as_dot { name.replace('_', ".") } else { name.clone() };
            (name, value.as_str())
        })
        .collect();
    written.sort();
    let query: Vec<String> = written.iter().map(|(name, value)| format!("{name}={value}")).collect();
    format!("{method}{host}{path}?{}", query.join("&"))
}

/// The styles in which `params` could have been signed: each that writes them differently from the others.
pub fn styles(params: &[(String, String)]) -> Vec<Style> {
    let has_empty = params.iter().any(|(name, value)| name != SIGNATURE && value.is_empty());
    let has_underscore = params.iter().any(|(name, _)| name.contains('_'));
    let mut styles = vec![Style::default()];
    if has_empty {
        styles.push(Style { skip_empty: true, underscore_as_dot: false });
    }
    if has_underscore {
        styles.push(Style { skip_empty: false, underscore_as_dot: true });
    }
    styles
}

/// The common parameters (`COMMON_PARAMS`) among a request's `params`, by name; `Err` names one given more than
/// once.
pub fn common_params(params: &[(String, String)]) -> Result<BTreeMap<&'static str, &str>, &'static str> {
    let mut common = BTreeMap::new();
    for (name, value) in params {
        let Some(&name) = COMMON_PARAMS.iter().find(|c| **c == name) else { continue };
        if common.insert(name, value.as_str()).is_some() {
            return Err(name);
        }
    }
    Ok(common)
}

/// The signature of `string_to_sign` (Base64, standard alphabet with padding).
pub fn sign(secret_key: &str, algorithm: Algorithm, string_to_sign: &str) -> String {
    let tag = hmac::sign(&algorithm.key(secret_key), string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// Whether `signature` signs the request made of `method`, one of `hosts`, `path` and `params` (in any of the
/// SDKs' styles) with `secret_key`. The comparison takes the same time wherever the signatures differ.
pub fn verify(
    secret_key: &str,
    algorithm: Algorithm,
    signature: &str,
    method: &str,
    hosts: &[String],
    path: &str,
    params: &[(String, String)],
) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature) else { return false };
    let key = algorithm.key(secret_key);
    let styles = styles(params);
    hosts.iter().any(|host| {
        styles.iter().any(|style| {
            let signed = string_to_sign(method, host, path, params, *style);
            hmac::verify(&key, signed.as_bytes(), &tag).is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn common_parameters_are_picked_out_once_each() {
        let params = owned(&[("Action", "A"), ("Limit", "1"), ("Nonce", "7"), ("Signature", "x=")]);
        let common = common_params(&params).unwrap();
        assert_eq!(common.into_iter().collect::<Vec<_>>(), [("Action", "A"), ("Nonce", "7"), ("Signature", "x=")]);
        assert_eq!(common_params(&owned(&[("Nonce", "1"), ("Limit", "1"), ("Nonce", "1")])), Err("Nonce"));
    }

    /// Tencent's documented example of signature v1 (its keys masked as the documentation prints them).
    #[test]
    fn documented_hmac_sha1_example() {
        let params = owned(&[
            ("Action", "DescribeInstances"),
            ("InstanceIds.0", "ins-09dx96dg"),
            ("Limit", "20"),
            ("Nonce", "11886"),
            ("Offset", "0"),
            ("Region", "ap-guangzhou"),
            ("SecretId", "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******"),
            ("Timestamp", "1465185768"),
            ("Version", "2017-03-12"),
        ]);
        let signed = string_to_sign("GET", "cvm.tencentcloudapi.com", "/", &params, Style::default());
        assert_eq!(
            signed,
            "GETcvm.tencentcloudapi.com/?Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Limit=20&Nonce=11886\
             &Offset=0&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******&Timestamp=1465185768\
             &Version=2017-03-12"
        );
        let secret_key = "Gu5t9xGARNpq86cd98joQYCN3*******";
        assert_eq!(sign(secret_key, Algorithm::HmacSha1, &signed), "zmmjn35mikh6pM3V7sUEuX4wyYM=");
        let hosts = ["cvm.tencentcloudapi.com".to_string()];
        let mut sent = params.clone();
        sent.push((SIGNATURE.to_string(), "zmmjn35mikh6pM3V7sUEuX4wyYM=".to_string()));
        assert!(verify(secret_key, Algorithm::HmacSha1, "zmmjn35mikh6pM3V7sUEuX4wyYM=", "GET", &hosts, "/", &sent));
        assert!(!verify("wrong", Algorithm::HmacSha1, "zmmjn35mikh6pM3V7sUEuX4wyYM=", "GET", &hosts, "/", &sent));
        assert!(!verify(secret_key, Algorithm::HmacSha256, "zmmjn35mikh6pM3V7sUEuX4wyYM=", "GET", &hosts, "/", &sent));
        assert!(!verify(secret_key, Algorithm::HmacSha1, "zmmjn35mikh6pM3V7sUEuX4wyYM=", "POST", &hosts, "/", &sent));
        assert!(!verify(secret_key, Algorithm::HmacSha1, "not base64!", "GET", &hosts, "/", &sent));
    }

    /// HmacSHA256 over a POST to an endpoint with a port, as tencentcloud-sdk-nodejs 4.1.313 signs it
    /// (`AbstractClient.formatSignString` and `Sign.sign`, run on these parameters).
    #[test]
    fn hmac_sha256_as_the_node_sdk_signs_it() {
        let params = owned(&[
            ("Limit", "20"),
            ("Filters.0.Name", "Runtime"),
            ("Filters.0.Values.0", "Python3.9"),
            ("Action", "ListFunctions"),
            ("Nonce", "11886"),
            ("Timestamp", "1465185768"),
            ("Version", "2018-04-16"),
            ("SecretId", "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
            ("Region", "ap-guangzhou"),
            ("SignatureMethod", "HmacSHA256"),
            ("Signature", "4cMSqQsoem5z0QqQBwebsmvQURcCTCEPDDASV7EdM5Y="),
        ]);
        let signed = string_to_sign("POST", "127.0.0.1:9000", "/", &params, Style::default());
        assert_eq!(
            signed,
            "POST127.0.0.1:9000/?Action=ListFunctions&Filters.0.Name=Runtime&Filters.0.Values.0=Python3.9&Limit=20\
             &Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE\
             &SignatureMethod=HmacSHA256&Timestamp=1465185768&Version=2018-04-16"
        );
        let secret_key = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
        let algorithm = Algorithm::of(Some("HmacSHA256"));
        assert_eq!(sign(secret_key, algorithm, &signed), "4cMSqQsoem5z0QqQBwebsmvQURcCTCEPDDASV7EdM5Y=");
        // The host sent without the port: the port-bearing form the caller also gives is the one that verifies.
        let hosts = ["127.0.0.1".to_string(), "127.0.0.1:9000".to_string()];
        assert!(verify(
            secret_key,
            algorithm,
            "4cMSqQsoem5z0QqQBwebsmvQURcCTCEPDDASV7EdM5Y=",
            "POST",
            &hosts,
            "/",
            &params
        ));
        assert!(!verify(
            secret_key,
            algorithm,
            "4cMSqQsoem5z0QqQBwebsmvQURcCTCEPDDASV7EdM5Y=",
            "POST",
            &hosts[..1],
            "/",
            &params
        ));
    }

    #[test]
    fn hmac_sha1_unless_sha256_is_named() {
        assert_eq!(Algorithm::of(None), Algorithm::HmacSha1);
        assert_eq!(Algorithm::of(Some("HmacSHA1")), Algorithm::HmacSha1);
        assert_eq!(Algorithm::of(Some("hmacsha256")), Algorithm::HmacSha1);
        assert_eq!(Algorithm::of(Some("HmacSHA256")), Algorithm::HmacSha256);
    }

    #[test]
    fn each_sdks_way_of_writing_parameters_verifies() {
        let params = owned(&[("Action", "ListFunctions"), ("Description", ""), ("Some_Name", "x")]);
        let go = string_to_sign("GET", "h", "/", &params, Style { skip_empty: true, underscore_as_dot: false });
        assert_eq!(go, "GETh/?Action=ListFunctions&Some_Name=x");
        let python = string_to_sign("GET", "h", "/", &params, Style { skip_empty: false, underscore_as_dot: true });
        assert_eq!(python, "GETh/?Action=ListFunctions&Description=&Some.Name=x");
        let hosts = ["h".to_string()];
        for signed in [go, python] {
            let signature = sign("key", Algorithm::HmacSha1, &signed);
            assert!(verify("key", Algorithm::HmacSha1, &signature, "GET", &hosts, "/", &params), "{signed}");
        }
        assert_eq!(styles(&owned(&[("Action", "A")])), vec![Style::default()]);
    }
}
