//! One UDP listener: each client address gets a session, a target chosen by the listener's scheduler and a socket
//! of its own towards it; the client's datagrams go to the target and the target's answers come back from the
//! listener's address. A session ends when the target has not answered for the session timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

use super::Proxy;

/// The largest datagram relayed (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

struct Session {
    upstream: Arc<UdpSocket>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

/// Relays datagrams until `stop` turns true.
pub async fn serve(
    proxy: Arc<Proxy>,
    socket: UdpSocket,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Ok((len, client)) = received else { continue };
        let upstream = sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&client).map(|s| s.upstream.clone());
        let upstream = match upstream {
            Some(upstream) => upstream,
            None => match open(&proxy, &socket, &sessions, addr, client).await {
                Some(upstream) => upstream,
                None => continue,
            },
        };
        if let Err(e) = upstream.send(&buf[..len]).await {
            tracing::debug!(%client, error = %e, "A datagram could not be relayed.");
        }
    }
    sessions.lock().unwrap_or_else(|p| p.into_inner()).clear();
    drop(socket);
    let _ = closed.send(());
}

/// A new session for `client`: a target, a socket connected to it, and the task that relays its answers back.
async fn open(
    proxy: &Arc<Proxy>,
    socket: &Arc<UdpSocket>,
    sessions: &Sessions,
    addr: SocketAddr,
    client: SocketAddr,
) -> Option<Arc<UdpSocket>> {
    if sessions.lock().unwrap_or_else(|p| p.into_inner()).len() >= proxy.settings.max_connections_per_listener {
        tracing::debug!(%addr, %client, "Session limit reached: a datagram is dropped.");
        return None;
    }
    let listener = proxy.snapshots.current().datagram_listeners.get(&addr).cloned()?;
    let (target, in_flight) = proxy.upstreams.choose(&listener.target, client.ip())?;
    let local: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
    let upstream = Arc::new(UdpSocket::bind(local).await.ok()?);
    upstream.connect(target).await.ok()?;
    let timeout = proxy.settings.udp_session_timeout;
    let task = tokio::spawn({
        let (upstream, socket, sessions) = (upstream.clone(), socket.clone(), sessions.clone());
        async move {
            let _in_flight = in_flight;
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok(Ok(len)) = tokio::time::timeout(timeout, upstream.recv(&mut buf)).await {
                if socket.send_to(&buf[..len], client).await.is_err() {
                    break;
                }
            }
            // Idle (or the target went away): the session ends; the client's next datagram opens another.
            sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
        }
    });
    sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(client, Session { upstream: upstream.clone(), task });
    Some(upstream)
}
