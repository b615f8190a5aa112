//! TLS termination for HTTPS listeners: certificates are checked when they are given, compiled into rustls
//! configurations once per snapshot, and the handshake picks a domain's configuration by the name the client
//! asks for (SNI), matched as rules match hosts.
//!
//! TLS 1.2 and 1.3. A listener or domain may hold several certificates with different key algorithms (RSA and
//! ECDSA side by side): the handshake uses the first the client can verify, ECDSA before RSA. HTTP/2 is offered by
//! ALPN only for domains whose rules have `Http2` on. Mutual TLS checks client certificates against the CA
//! certificate; with `SSLVerifyClient` `OPTIONAL` a client without one is let through.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SignatureAlgorithm};

use super::router::Router;
use crate::state::{Certificate, Listener, Rule, State, TlsSettings};

/// The TLS configurations of one HTTPS listener.
pub struct ListenerTls {
    /// By the router's domain index.
    by_domain: Vec<Option<Arc<ServerConfig>>>,
    /// For a name that matches no domain with a certificate (or no name): the default domain's, else the
    /// listener's.
    fallback: Option<Arc<ServerConfig>>,
}

impl ListenerTls {
    /// Compiles a listener's configurations; a domain whose certificates cannot be used is logged and left
    /// without TLS (its clients then get the fallback).
    pub fn compile(state: &State, listener: &Listener, router: &Router, rules: &[&Rule]) -> ListenerTls {
        let http2 = |domain: &str| rules.iter().any(|r| r.http2 && r.domain.eq_ignore_ascii_case(domain));
        let build = |settings: &TlsSettings, domain: &str| match server_config(state, settings, http2(domain)) {
            Ok(config) => Some(config),
            Err(e) => {
                tracing::error!(listener = %listener.id, domain, error = %e, "A certificate cannot be used.");
                None
            }
        };
        let by_domain: Vec<Option<Arc<ServerConfig>>> = router
            .domain_names()
            .map(|domain| {
                let settings = if listener.sni_switch {
                    listener.domain_tls.iter().find(|(d, _)| d.eq_ignore_ascii_case(domain)).map(|(_, s)| s)
                } else {
                    listener.tls.as_ref()
                };
                settings.and_then(|s| build(s, domain))
            })
            .collect();
        let fallback = router
            .default_domain()
            .and_then(|d| by_domain[d].clone())
            .or_else(|| listener.tls.as_ref().and_then(|s| build(s, "")))
            .or_else(|| by_domain.iter().flatten().next().cloned());
        ListenerTls { by_domain, fallback }
    }

    /// The configuration for a client that asked for `server_name` (SNI).
    pub fn for_name(&self, router: &Router, server_name: Option<&str>) -> Option<Arc<ServerConfig>> {
        server_name
            .and_then(|name| router.domain_of(name))
            .and_then(|d| self.by_domain.get(d).cloned().flatten())
            .or_else(|| self.fallback.clone())
    }
}

/// The configuration of a listener with certificates of its own (TCP_SSL), or `None` (logged) when they cannot
/// be used.
pub fn listener_config(state: &State, listener: &Listener) -> Option<Arc<ServerConfig>> {
    let settings = listener.tls.as_ref()?;
    server_config(state, settings, false)
        .inspect_err(|e| tracing::error!(listener = %listener.id, error = %e, "A certificate cannot be used."))
        .ok()
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider of listeners' TLS: *ring*'s suites, those hashing with SHA-256 first. Clients (OpenSSL's among
/// them) tend to ask for AES-256-GCM with SHA-384 first, whose every handshake step hashes with SHA-512, which
/// processors do not accelerate; SHA-256 has instructions of its own (SHA-NI), and AES-128-GCM is as strong a
/// choice in practice. Handshakes cost about a fifth less (docs/benchmarks.md).
fn server_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(provider)
}

/// A server certificate chain and its private key, checked to belong together.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "the private key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string())?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "the private key does not belong to the certificate".to_string(),
        other => format!("the certificate or its key cannot be used: {other}"),
    })
}

/// The certificates in a PEM text (at least one).
/// A certificate chain's fingerprint: the SHA-256 of its certificates' DER bytes, hex (what `fnlb apply`
/// compares to know whether a listener already has a file's certificate).
pub fn fingerprint(pem: &str) -> Result<String, String> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for cert in certificates(pem)? {
        digest.update(cert.as_ref());
    }
    Ok(hex::encode(digest.finalize()))
}

pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| "the certificate is not PEM".to_string())?;
    if chain.is_empty() {
        return Err("no PEM certificate was found".to_string());
    }
    Ok(chain)
}

/// The roots a CA certificate text gives, for checking client certificates.
pub fn client_roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots.add(cert).map_err(|e| format!("the CA certificate cannot be used: {e}"))?;
    }
    Ok(roots)
}

fn server_config(state: &State, settings: &TlsSettings, http2: bool) -> Result<Arc<ServerConfig>, String> {
    let stored = |id: &String| -> Result<&Certificate, String> {
        state.certificates.get(id).ok_or_else(|| format!("certificate {id} does not exist"))
    };
    let mut keys = Vec::with_capacity(settings.cert_ids.len());
    for id in &settings.cert_ids {
        let cert = stored(id)?;
        let key = cert.key_pem.as_deref().ok_or_else(|| format!("certificate {id} has no private key"))?;
        keys.push(Arc::new(certified_key(&cert.cert_pem, key)?));
    }
    // ECDSA first: clients that accept it get the smaller, faster handshake.
    keys.sort_by_key(|k| k.key.algorithm() != SignatureAlgorithm::ECDSA);
    let builder = server_builder();
    let builder = match (&settings.ca_cert_id, settings.mutual) {
        (Some(ca), true) => {
            let roots = client_roots(&stored(ca)?.cert_pem)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if settings.verify_optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        _ => builder.with_no_client_auth(),
    };
    let alpn = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(finish(builder.with_cert_resolver(Arc::new(ByAlgorithm(keys))), alpn))
}

/// A configuration serving one certificate chain with the listeners' versions and suites (the API's own, with
/// `--api-tls-cert`), offering `alpn`.
pub fn single_server_config(key: CertifiedKey, alpn: Vec<Vec<u8>>) -> Arc<ServerConfig> {
    let config = server_builder().with_no_client_auth().with_cert_resolver(Arc::new(ByAlgorithm(vec![Arc::new(key)])));
    finish(config, alpn)
}

/// TLS 1.3 and 1.2 with the suites of `server_provider`.
fn server_builder() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
}

fn finish(mut config: ServerConfig, alpn: Vec<Vec<u8>>) -> Arc<ServerConfig> {
    // The server picks the suite: AES-128-GCM with SHA-256 first (`server_provider`).
    config.ignore_client_order = true;
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// Picks the first certificate whose key can sign with a scheme the client offers.
#[derive(Debug)]
struct ByAlgorithm(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for ByAlgorithm {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.signature_schemes();
        self.0.iter().find(|k| k.key.choose_scheme(offered).is_some()).cloned()
    }
}

/// Accepts any server certificate, and checks the handshake's signatures against it.
#[derive(Debug)]
pub struct AnyServerCertificate(pub Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
