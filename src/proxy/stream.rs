//! One layer-4 listener (TCP, or TCP_SSL with TLS terminated here): each connection is relayed to one of the
//! listener's targets, chosen by its scheduler among those that take traffic, bytes both ways until either side
//! closes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::Proxy;

/// Accepts connections until `stop` turns true, then lets open connections run for the drain timeout.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let caps = super::connection_caps(&proxy.settings);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
            // Finished connections are collected as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let super::Accepted::Open(stream, client, slot) = super::admit(accepted, &caps, addr).await else { continue };
        let proxy = proxy.clone();
        connections.spawn(async move {
            let _slot = slot;
            relay(&proxy, addr, stream, client).await;
        });
    }
    drop(listener);
    let _ = closed.send(());
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(proxy.settings.drain_timeout, drained).await.is_err() {
        tracing::debug!(%addr, "Connections still open after the drain period were cut.");
    }
}

async fn relay(proxy: &Proxy, addr: SocketAddr, mut client_stream: TcpStream, client: SocketAddr) {
    let Some(listener) = proxy.snapshots.current().stream_listeners.get(&addr).cloned() else { return };
    let Some((mut upstream, _in_flight)) = proxy.upstreams.connect(&listener.target, client.ip()).await else {
        tracing::debug!(%client, listener = %listener.listener_id, "No target could be reached.");
        return;
    };
    let relayed = match &listener.tls {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            match tokio::time::timeout(proxy.settings.tls_handshake_timeout, acceptor.accept(client_stream)).await {
                Ok(Ok(mut tls)) => tokio::io::copy_bidirectional(&mut tls, &mut upstream).await,
                _ => return,
            }
        }
        None => tokio::io::copy_bidirectional(&mut client_stream, &mut upstream).await,
    };
    if let Err(e) = relayed {
        tracing::debug!(%client, error = %e, "A relayed connection ended with an error.");
    }
}
