//! The API listener over TLS (`--api-tls-cert` and `--api-tls-key`): the certificate and key read and checked at
//! start, served with the load balancer's TLS versions and suites (`snapshot::tls`), HTTP/2 or HTTP/1.1 by ALPN.
//! With them the listener speaks nothing but TLS: the web console is served over it too.

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

/// The files of the API's certificate chain and private key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long a client may take to finish the TLS handshake after its connection is accepted (the header timeout,
/// counted from accept, is shorter when it is set below this).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's TLS, ready to serve.
#[derive(Clone)]
pub struct ApiTls {
    pub acceptor: TlsAcceptor,
    /// The certificate the API presents (its chain's first): what fnlb's own client of this node trusts.
    pub certificate: CertificateDer<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the API's {what} {path}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API's certificate {cert} and key {key} cannot be used: {reason}")]
    Unusable { cert: String, key: String, reason: String },
}

// === impl TlsFiles ===

impl TlsFiles {
    /// Reads and checks the certificate chain and its key.
    pub fn load(&self) -> Result<ApiTls, TlsError> {
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Read {
                what,
                path: path.display().to_string(),
                source,
            })
        };
        let (cert, key) = (read("certificate", &self.cert)?, read("private key", &self.key)?);
        let certified = crate::snapshot::tls::certified_key(&cert, &key).map_err(|reason| TlsError::Unusable {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            reason,
        })?;
        let certificate = certified.end_entity_cert().map_err(|e| TlsError::Unusable {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            reason: e.to_string(),
        })?;
        let certificate = certificate.clone().into_owned();
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(crate::snapshot::tls::single_server_config(certified, alpn));
        Ok(ApiTls { acceptor, certificate })
    }
}
