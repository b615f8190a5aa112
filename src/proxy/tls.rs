//! TLS from the balancer to server targets (`ForwardType` `HTTPS` and `GRPCS`). Listeners' TLS is compiled with
//! the snapshot (`snapshot::tls`).

use std::sync::Arc;

use crate::snapshot::tls::{AnyServerCertificate, provider};

/// The client side of TLS to server targets (`ForwardType` `HTTPS`). As CLB does, fnlb does not verify the
/// target's certificate (targets are the user's own servers, usually with self-signed certificates); the handshake
/// signatures are still checked, so the connection is encrypted to whoever holds the certificate's key.
pub fn backend_client(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}
