//! Certificates given to listeners and domains (contract 5.2, 5.6): the `Certificate` and `MultiCertInfo`
//! inputs, inline (kept as new certificates) or by the `CertId` of a stored certificate, and the
//! `CertificateOutput` object. Private keys are checked against their certificates here and never returned.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::params::parse;
use crate::api::{ApiError, Ctx};
use crate::snapshot::tls;
use crate::state::{CertKind, Certificate, Command, TlsSettings};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CertificateInput {
    #[serde(rename = "SSLMode")]
    ssl_mode: Option<String>,
    #[serde(rename = "SSLVerifyClient")]
    ssl_verify_client: Option<String>,
    cert_id: Option<String>,
    cert_ca_id: Option<String>,
    cert_name: Option<String>,
    cert_key: Option<String>,
    cert_content: Option<String>,
    cert_ca_name: Option<String>,
    cert_ca_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MultiCertInfo {
    #[serde(rename = "SSLMode")]
    ssl_mode: Option<String>,
    #[serde(rename = "SSLVerifyClient")]
    ssl_verify_client: Option<String>,
    cert_list: Vec<CertInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CertInfo {
    cert_id: Option<String>,
    cert_name: Option<String>,
    cert_content: Option<String>,
    cert_key: Option<String>,
}

/// What a request's certificate parameters amount to: the TLS settings, and the commands that keep the
/// certificates given inline (to be applied together with the change that uses them).
pub struct TlsInput {
    pub settings: TlsSettings,
    pub new_certificates: Vec<Command>,
}

/// Reads `Certificate` or `MultiCertInfo` (named `field` and `multi_field` in errors); `None` when neither is given.
pub fn read(ctx: &Ctx<'_>, certificate: Option<Value>, multi: Option<Value>) -> Result<Option<TlsInput>, ApiError> {
    let mut input = Inline { ctx, settings: None, new_certificates: Vec::new() };
    match (certificate, multi) {
        (_, Some(multi)) => input.multi(multi)?,
        (Some(single), None) => input.single(single)?,
        (None, None) => return Ok(None),
    }
    let settings = input.settings.expect("set by single or multi");
    Ok(Some(TlsInput { settings, new_certificates: input.new_certificates }))
}

struct Inline<'a, 'b> {
    ctx: &'a Ctx<'b>,
    settings: Option<TlsSettings>,
    new_certificates: Vec<Command>,
}

impl Inline<'_, '_> {
    fn single(&mut self, value: Value) -> Result<(), ApiError> {
        let input: CertificateInput = parse(object(value, "Certificate")?)?;
        let (mutual, verify_optional) = modes(input.ssl_mode.as_deref(), input.ssl_verify_client.as_deref())?;
        let server = match (input.cert_id, input.cert_content, input.cert_key) {
            (Some(id), None, None) => self.existing(&id)?,
            (None, Some(content), Some(key)) => self.server(input.cert_name, &content, &key)?,
            (None, Some(_), None) => return Err(ApiError::missing("Certificate.CertKey")),
            (None, None, _) => return Err(ApiError::missing("Certificate.CertId")),
            (Some(_), _, _) => {
                return Err(ApiError::new(
                    "InvalidParameter",
                    "Give Certificate.CertId or Certificate.CertContent with CertKey, not both.",
                ));
            }
        };
        let ca = match (input.cert_ca_id, input.cert_ca_content) {
            (Some(id), None) => Some(self.existing(&id)?),
            (None, Some(content)) => Some(self.ca(input.cert_ca_name, &content)?),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    "InvalidParameter",
                    "Give Certificate.CertCaId or Certificate.CertCaContent, not both.",
                ));
            }
        };
        self.settings = Some(TlsSettings { mutual, verify_optional, cert_ids: vec![server], ca_cert_id: ca });
        Ok(())
    }

    fn multi(&mut self, value: Value) -> Result<(), ApiError> {
        let input: MultiCertInfo = parse(object(value, "MultiCertInfo")?)?;
        let (mutual, verify_optional) = modes(input.ssl_mode.as_deref(), input.ssl_verify_client.as_deref())?;
        if input.cert_list.is_empty() {
            return Err(ApiError::missing("MultiCertInfo.CertList"));
        }
        let (mut servers, mut cas) = (Vec::new(), Vec::new());
        for cert in input.cert_list {
            match (cert.cert_id, cert.cert_content, cert.cert_key) {
                (Some(id), None, None) => {
                    let kind = self.ctx.snapshot.state.certificate(&self.ctx.scope.uin, &id)?.kind;
                    match kind {
                        CertKind::Server => servers.push(id),
                        CertKind::Ca => cas.push(id),
                    }
                }
                (None, Some(content), Some(key)) => servers.push(self.server(cert.cert_name, &content, &key)?),
                // A certificate without a key is the CA of mutual TLS.
                (None, Some(content), None) => cas.push(self.ca(cert.cert_name, &content)?),
                _ => {
                    return Err(ApiError::new(
                        "InvalidParameter",
                        "Each MultiCertInfo.CertList item gives CertId, or CertContent (with CertKey for a server certificate).",
                    ));
                }
            }
        }
        if cas.len() > 1 {
            return Err(ApiError::new("InvalidParameter", "MultiCertInfo holds at most one CA certificate."));
        }
        self.settings = Some(TlsSettings { mutual, verify_optional, cert_ids: servers, ca_cert_id: cas.pop() });
        Ok(())
    }

    fn existing(&self, id: &str) -> Result<String, ApiError> {
        self.ctx.snapshot.state.certificate(&self.ctx.scope.uin, id)?;
        Ok(id.to_string())
    }

    fn server(&mut self, name: Option<String>, content: &str, key: &str) -> Result<String, ApiError> {
        tls::certified_key(content, key).map_err(invalid)?;
        Ok(self.keep(name, CertKind::Server, content, Some(key)))
    }

    fn ca(&mut self, name: Option<String>, content: &str) -> Result<String, ApiError> {
        tls::client_roots(content).map_err(invalid)?;
        Ok(self.keep(name, CertKind::Ca, content, None))
    }

    fn keep(&mut self, name: Option<String>, kind: CertKind, content: &str, key: Option<&str>) -> String {
        let certificate = new_certificate(&self.ctx.scope.uin, name, kind, content, key);
        let id = certificate.id.clone();
        self.new_certificates.push(Command::PutCertificate(certificate));
        id
    }
}

/// A certificate to keep, with a new id in the shape of Tencent's (eight letters and digits).
pub fn new_certificate(
    uin: &str,
    name: Option<String>,
    kind: CertKind,
    content: &str,
    key: Option<&str>,
) -> Certificate {
    let id = crate::ids::random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 8);
    Certificate {
        name: name.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("cert-{id}")),
        id,
        uin: uin.to_string(),
        kind,
        cert_pem: content.to_string(),
        key_pem: key.map(str::to_string),
        create_time: crate::clock::now_ms(),
    }
}

fn invalid(why: String) -> ApiError {
    ApiError::new("InvalidParameterValue", format!("The certificate is not valid: {why}."))
}

fn object(value: Value, name: &str) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::new("InvalidParameter", format!("The parameter `{name}` must be an object."))),
    }
}

/// (`MUTUAL`, `SSLVerifyClient` `OPTIONAL`).
fn modes(ssl_mode: Option<&str>, verify: Option<&str>) -> Result<(bool, bool), ApiError> {
    let mutual = match ssl_mode.unwrap_or("UNIDIRECTIONAL") {
        "UNIDIRECTIONAL" => false,
        "MUTUAL" => true,
        other => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("SSLMode must be UNIDIRECTIONAL or MUTUAL, not `{other}`."),
            ));
        }
    };
    let optional = match (verify, mutual) {
        (None | Some("ON"), _) => false,
        (Some("OPTIONAL"), true) => true,
        (Some(other), _) => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("SSLVerifyClient must be ON, or OPTIONAL with SSLMode MUTUAL, not `{other}`."),
            ));
        }
    };
    Ok((mutual, optional))
}

/// `CertificateOutput`: ids only, never a key. What does not apply is empty (the SDKs declare none of it null).
pub fn output(settings: Option<&TlsSettings>) -> Value {
    let Some(s) = settings else { return Value::Null };
    let verify = match (s.mutual, s.verify_optional) {
        (false, _) => "",
        (true, true) => "OPTIONAL",
        (true, false) => "ON",
    };
    json!({
        "SSLMode": if s.mutual { "MUTUAL" } else { "UNIDIRECTIONAL" },
        "SSLVerifyClient": verify,
        "CertId": s.cert_ids.first(),
        "CertCaId": s.ca_cert_id.as_deref().unwrap_or(""),
        "ExtCertIds": s.cert_ids.get(1..).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeCertificates {
    cert_ids: Option<Vec<String>>,
}

/// DescribeCertificates (an fnlb extension): the account's stored certificates, without their keys: `CertId`,
/// `CertName`, `CertType` (`SVR` or `CA`), `Fingerprint` (SHA-256 of the chain's DER) and `CreateTime`.
pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeCertificates = parse(p)?;
    let state = &ctx.snapshot.state;
    let mut certificates: Vec<&Certificate> = state
        .certificates
        .values()
        .filter(|c| c.uin == ctx.scope.uin)
        .filter(|c| req.cert_ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .collect();
    certificates.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
    let listed: Vec<Value> = certificates
        .iter()
        .map(|c| {
            json!({
                "CertId": c.id,
                "CertName": c.name,
                "CertType": c.kind.as_api(),
                "Fingerprint": tls::fingerprint(&c.cert_pem).unwrap_or_default(),
                "CreateTime": ctx.time(c.create_time),
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("TotalCount".into(), json!(listed.len()));
    out.insert("Certificates".into(), Value::Array(listed));
    Ok(out)
}
