//! A TencentCloud API 3.0 client for fnlb's own endpoint: the CLI and the embedded example use it, so they go
//! through exactly what tccli and the SDKs go through. An `https://` endpoint is reached over TLS, its certificate
//! checked against the system's certificate authorities and any given with `--ca-cert`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::api::Service;
use crate::api::tc3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{code}: {message} (RequestId {request_id})")]
    Api { code: String, message: String, request_id: String },
    #[error("cannot reach the API at {endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("the API answered something that is not an API response: {0}")]
    BadResponse(String),
    #[error("the API did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("cannot read the certificate authorities in {path}: {reason}")]
    CaCert { path: String, reason: String },
}

/// Whose certificates an `https://` endpoint may present.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Certificates the system's authorities sign (Debian's bundle), or those in `extra` (`--ca-cert`).
    System { extra: Option<PathBuf> },
    /// Exactly this certificate: a node's client of its own API.
    Exactly(CertificateDer<'static>),
}

/// The system's certificate authorities.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Clone, Debug)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: String,
}

pub struct Client {
    endpoint: http::Uri,
    credentials: Credentials,
    region: String,
    timeout: Duration,
    http: HttpClient<Connector, Full<Bytes>>,
}

/// Connects to the endpoint: TCP, then TLS for `https`.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: Option<TlsConnector>,
}

/// A connection to the endpoint.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// How long one API call may take by default (a synchronous `Invoke` may run 300 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(320);

/// A header of fnlb's client that makes each signed request unique.
const NONCE_HEADER: &str = "x-fnlb-nonce";

// === impl Client ===

impl Client {
    /// `endpoint` is `http://host:port` or `https://host:port` (checked against the system's authorities).
    pub fn new(endpoint: &str, credentials: Credentials, region: &str) -> Result<Client, ClientError> {
        Client::with_trust(endpoint, credentials, region, Trust::System { extra: None })
    }

    /// A client of `endpoint` that trusts `trust` over `https`.
    pub fn with_trust(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
        trust: Trust,
    ) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::Transport { endpoint: endpoint.to_string(), reason: reason.to_string() };
        let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(TlsConnector::from(tls_config(trust)?)),
            _ => return Err(bad("the endpoint must be http://host:port or https://host:port")),
        };
        if uri.authority().is_none() {
            return Err(bad("the endpoint must be http://host:port or https://host:port"));
        }
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let http = HttpClient::builder(TokioExecutor::new()).build(Connector { tcp, tls });
        Ok(Client { endpoint: uri, credentials, region: region.to_string(), timeout: DEFAULT_TIMEOUT, http })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls an action; returns the `Response` object (without `RequestId` removed) or the API's error.
    pub async fn call(&self, service: Service, action: &str, params: Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(&params).expect("JSON values serialise");
        let host = self.endpoint.authority().expect("checked in new").to_string();
        let timestamp = crate::clock::now_ms() / 1000;
        let content_type = "application/json";
        // The action is signed (so that the request cannot be sent as another), and so is a nonce: a signature is
        // good for one request, and two identical calls within a second are two requests.
        let nonce = crate::ids::request_id();
        let signed = tc3::Signed {
            method: "POST",
            query: "",
            headers: vec![
                ("content-type".to_string(), content_type),
                ("host".to_string(), host.as_str()),
                (NONCE_HEADER.to_string(), nonce.as_str()),
                ("x-tc-action".to_string(), action),
            ],
            payload_hash: tc3::sha256_hex(&body),
            timestamp,
            service: service.name(),
        };
        let authorization = tc3::authorization(&self.credentials.secret_id, &self.credentials.secret_key, &signed);
        let request = Request::post(self.endpoint.clone())
            .header(header::HOST, &host)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, authorization)
            .header("X-TC-Action", action)
            .header(NONCE_HEADER, &nonce)
            .header("X-TC-Version", service.version())
            .header("X-TC-Region", &self.region)
            .header("X-TC-Timestamp", timestamp.to_string())
            .body(Full::new(Bytes::from(body)))
            .expect("the request is well formed");
        // The whole chain: the cause of a failed connection (a certificate not trusted) is in its sources.
        let transport = |e: &dyn std::error::Error| {
            let mut reason = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            ClientError::Transport { endpoint: self.endpoint.to_string(), reason }
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| transport(&e))?;
            let bytes = response.into_body().collect().await.map_err(|e| transport(&e))?.to_bytes();
            Ok::<_, ClientError>(bytes)
        };
        let bytes =
            tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ClientError::TimedOut(self.timeout))??;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::BadResponse(String::from_utf8_lossy(&bytes).into_owned()))?;
        let response = value.get("Response").cloned().ok_or_else(|| ClientError::BadResponse(value.to_string()))?;
        if let Some(error) = response.get("Error") {
            let text = |k: &str| error.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            return Err(ClientError::Api {
                code: text("Code"),
                message: text("Message"),
                request_id: response.get("RequestId").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            });
        }
        Ok(response)
    }
}

/// The client side of TLS to the API: TLS 1.2 and 1.3, the certificate checked as `trust` says, HTTP/1.1.
fn tls_config(trust: Trust) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let provider = crate::snapshot::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = match trust {
        Trust::System { extra } => {
            let mut roots = rustls::RootCertStore::empty();
            // Debian's bundle holds only certificates; one the library cannot use is skipped.
            let system = std::fs::read(SYSTEM_ROOTS).unwrap_or_default();
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&system).flatten());
            if let Some(path) = extra {
                let error = |reason: String| ClientError::CaCert { path: path.display().to_string(), reason };
                let pem = std::fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
                for cert in crate::snapshot::tls::certificates(&pem).map_err(error)? {
                    roots.add(cert).map_err(|e| error(e.to_string()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Exactly(certificate) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Exactly { certificate, provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly one certificate (whatever names it holds), and checks the handshake's signatures against it.
#[derive(Debug)]
struct Exactly {
    certificate: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Exactly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.certificate.as_ref() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

// === impl Connector ===

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, tls) = (self.tcp.call(uri.clone()), self.tls.clone());
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let Some(tls) = tls else { return Ok(TokioIo::new(Stream::Plain(tcp))) };
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_string())?;
            Ok(TokioIo::new(Stream::Tls(Box::new(tls.connect(name, tcp).await?))))
        })
    }
}

// === impl Stream ===

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
