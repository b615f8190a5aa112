//! The data plane's load balancer: one accept loop per layer-7 listener, reconciled with each snapshot.

pub mod access_log;
pub mod bridge;
mod datagram;
/// Public for the fuzz targets (fuzz/), not an interface of the crate.
#[doc(hidden)]
pub mod direct;
/// Public for the fuzz targets (fuzz/), not an interface of the crate.
#[doc(hidden)]
pub mod h1;
pub mod health;
mod keepalive;
/// Public for the fuzz targets (fuzz/), not an interface of the crate.
#[doc(hidden)]
pub mod policy;
pub mod respond;
mod retry;
mod server;
mod stream;
mod tls;
pub mod upload;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::caps;
use crate::functions::Engine;
use crate::snapshot::Snapshots;

/// The proxy's limits. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// How long a removed listener (or a stopping fnlb) lets open connections finish.
    pub drain_timeout: Duration,
    /// How long a client may pause while sending a request body (CLB's `client_body_timeout`); past it, 408.
    pub body_read_timeout: Duration,
    /// How long a TLS handshake may take; past it, the connection is closed.
    pub tls_handshake_timeout: Duration,
    /// Header fields per request (HTTP/1.1); past it, 431.
    pub max_headers: usize,
    /// Open connections per listener; past it, a new connection is closed at once.
    pub max_connections_per_listener: usize,
    /// Open connections per listener from one client address (TCP listeners, layer 7 and 4); past it, a new
    /// connection from that address is closed at once. 0: no such cap.
    pub max_connections_per_client: usize,
    /// The largest request body forwarded to server targets (CLB's `client_max_body_size`); past it, 413.
    pub max_body_bytes: u64,
    /// How long an idle keep-alive client connection stays open (CLB's `keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// Requests per client connection (CLB's `keepalive_requests`).
    pub keepalive_requests: u32,
    /// How long a UDP client's session (its target and relay socket) lasts without an answer from the target.
    pub udp_session_timeout: Duration,
    /// Plain HTTP/1.1 exchanges take the direct path (docs/decisions/0009-direct-path.md); off, every request takes
    /// the general path, with the same answers.
    pub direct_path: bool,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_CONNECTIONS_PER_LISTENER: usize = 10_000;
/// No cap per client address: clients behind one NAT share an address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 0;
/// CLB's default `client_max_body_size` (60M).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 60 * 1024 * 1024;
/// CLB's default `keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx's default `keepalive_requests` (CLB documents 100; a balancer in front of heavy keep-alive clients wants
/// more).
pub const DEFAULT_KEEPALIVE_REQUESTS: u32 = 1000;
pub const DEFAULT_UDP_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_headers: DEFAULT_MAX_HEADERS,
            max_connections_per_listener: DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            udp_session_timeout: DEFAULT_UDP_SESSION_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            keepalive_requests: DEFAULT_KEEPALIVE_REQUESTS,
            direct_path: true,
        }
    }
}

pub struct Proxy {
    pub snapshots: Arc<Snapshots>,
    pub functions: Arc<Engine>,
    pub settings: ProxySettings,
    pub sockets: Arc<Sockets>,
    /// Rules' server targets: balancers and the connection pool.
    pub upstreams: upstream::Upstreams,
    pub health: Arc<health::Health>,
    /// Access logs, when configured.
    pub access_log: Option<access_log::AccessLog>,
}

/// Listening sockets bound ahead of a change: the API binds a new listener's address before it commits the
/// listener, so that a port that cannot be bound is refused rather than acknowledged; the proxy takes the socket
/// when it puts the change into effect.
#[derive(Default)]
pub struct Sockets {
    /// By address and transport (`true`: UDP): a port number serves TCP and UDP listeners apart.
    bound: Mutex<HashMap<(SocketAddr, bool), Bound>>,
    /// Where every listener binds instead of its VIP (`--listen-address`).
    listen_address: Option<std::net::IpAddr>,
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// The kind of a running listener: a port may change kind between snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Http,
    Stream,
    Datagram,
}

/// How often a listener that could not be bound (after a restart: the port is taken) is tried again.
pub const REBIND_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopped listener may take to close its socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

struct Running {
    stop: watch::Sender<bool>,
    closed: Option<oneshot::Receiver<()>>,
    task: JoinHandle<()>,
}

// === impl Sockets ===

impl Sockets {
    pub fn new(listen_address: Option<std::net::IpAddr>) -> Sockets {
        Sockets { bound: Mutex::default(), listen_address }
    }

    /// The address a listener on `addr` (its VIP and port) binds.
    fn bind_address(&self, addr: SocketAddr) -> SocketAddr {
        self.listen_address.map_or(addr, |ip| SocketAddr::new(ip, addr.port()))
    }

    /// Binds `addr` now (TCP, or UDP when `udp`), for a listener about to be created. Already bound here counts
    /// as bound.
    pub fn reserve(&self, addr: SocketAddr, udp: bool) -> std::io::Result<()> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if bound.contains_key(&(addr, udp)) {
            return Ok(());
        }
        let at = self.bind_address(addr);
        let socket = if udp { Bound::Udp(std::net::UdpSocket::bind(at)?) } else { Bound::Tcp(bind_std(at)?) };
        bound.insert((addr, udp), socket);
        Ok(())
    }

    /// Gives a reserved socket back (the change that needed it was refused).
    pub fn release(&self, addr: &SocketAddr, udp: bool) {
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).remove(&(*addr, udp));
    }

    fn take_tcp(&self, addr: &SocketAddr) -> Option<std::net::TcpListener> {
        match self.bound.lock().unwrap_or_else(|p| p.into_inner()).remove(&(*addr, false)) {
            Some(Bound::Tcp(listener)) => Some(listener),
            _ => None,
        }
    }

    fn take_udp(&self, addr: &SocketAddr) -> Option<std::net::UdpSocket> {
        match self.bound.lock().unwrap_or_else(|p| p.into_inner()).remove(&(*addr, true)) {
            Some(Bound::Udp(socket)) => Some(socket),
            _ => None,
        }
    }
}

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    listener.into_std()
}

/// What became of a connection an accept loop accepted.
enum Accepted {
    /// Within the listener's caps: the connection, its client, and its places in the caps, held for as long as
    /// the connection lives.
    Open(tokio::net::TcpStream, SocketAddr, caps::Admission),
    /// Past the listener's connection limit, or its client address's: closed at once.
    Refused,
    /// The accept failed (after a short back-off, so that running out of descriptors does not spin).
    Failed,
}

/// What an accept loop does with one accepted connection: it comes within the listener's caps, in all and per
/// client address, or it is closed.
async fn admit(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    caps: &caps::ConnectionCaps,
    addr: SocketAddr,
) -> Accepted {
    let (stream, client) = match accepted {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "Accept failed.");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Accepted::Failed;
        }
    };
    let admission = match caps.admit(client.ip()) {
        Ok(admission) => admission,
        Err(refused) => {
            tracing::debug!(%addr, %client, reason = %refused, "A connection past a cap is closed.");
            return Accepted::Refused;
        }
    };
    let _ = stream.set_nodelay(true);
    Accepted::Open(stream, client, admission)
}

/// The caps on a TCP listener's connections.
fn connection_caps(settings: &ProxySettings) -> caps::ConnectionCaps {
    caps::ConnectionCaps::new(settings.max_connections_per_listener, settings.max_connections_per_client)
}

/// The accept queue of each listener.
const LISTEN_BACKLOG: u32 = 4096;

// === impl Proxy ===

impl Proxy {
    /// The reserved socket of a new TCP listener, or one bound now.
    fn tcp_listener(&self, addr: &SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let listener = match self.sockets.take_tcp(addr) {
            Some(reserved) => reserved,
            None => bind_std(self.sockets.bind_address(*addr))?,
        };
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// The reserved socket of a new UDP listener, or one bound now.
    fn udp_socket(&self, addr: &SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let socket = match self.sockets.take_udp(addr) {
            Some(reserved) => reserved,
            None => std::net::UdpSocket::bind(self.sockets.bind_address(*addr))?,
        };
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket)
    }

    /// Keeps the set of bound listeners equal to the snapshot's until `shutdown` turns true, then stops them
    /// all and waits for their connections to drain.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut published = self.snapshots.subscribe();
        let mut running: HashMap<(SocketAddr, Kind), Running> = HashMap::new();
        loop {
            let all_bound = self.reconcile(&mut running).await;
            tokio::select! {
                changed = published.changed() => if changed.is_err() { break },
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = tokio::time::sleep(REBIND_INTERVAL), if !all_bound => {}
            }
        }
        for r in running.values() {
            let _ = r.stop.send(true);
        }
        for (_, r) in running {
            let _ = r.task.await;
        }
    }

    /// Binds the snapshot's new listeners and stops the removed ones; returns whether every listener is bound.
    async fn reconcile(self: &Arc<Self>, running: &mut HashMap<(SocketAddr, Kind), Running>) -> bool {
        let snapshot = self.snapshots.current();
        self.functions.reconcile(&snapshot);
        self.health.reconcile(&snapshot);
        self.upstreams.reconcile(&snapshot);
        let mut closing = Vec::new();
        running.retain(|(addr, kind), r| {
            let keep = match kind {
                Kind::Http => snapshot.http_listeners.contains_key(addr),
                Kind::Stream => snapshot.stream_listeners.contains_key(addr),
                Kind::Datagram => snapshot.datagram_listeners.contains_key(addr),
            };
            if !keep {
                tracing::info!(%addr, "Listener stopped.");
                let _ = r.stop.send(true);
                closing.extend(r.closed.take());
            }
            keep
        });
        // A removed listener's port is free again before the change counts as in effect.
        for closed in closing {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed).await;
        }
        let mut all_bound = true;
        let wanted: Vec<(SocketAddr, Kind)> = snapshot
            .http_listeners
            .keys()
            .map(|a| (*a, Kind::Http))
            .chain(snapshot.stream_listeners.keys().map(|a| (*a, Kind::Stream)))
            .chain(snapshot.datagram_listeners.keys().map(|a| (*a, Kind::Datagram)))
            .collect();
        for (addr, kind) in wanted {
            if running.contains_key(&(addr, kind)) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let (closed_tx, closed) = oneshot::channel();
            let started = match kind {
                Kind::Datagram => self
                    .udp_socket(&addr)
                    .map(|socket| tokio::spawn(datagram::serve(self.clone(), socket, addr, stop_rx, closed_tx))),
                Kind::Http | Kind::Stream => self.tcp_listener(&addr).map(|listener| {
                    if kind == Kind::Http {
                        tokio::spawn(server::serve(self.clone(), listener, addr, stop_rx, closed_tx))
                    } else {
                        tokio::spawn(stream::serve(self.clone(), listener, addr, stop_rx, closed_tx))
                    }
                }),
            };
            match started {
                Ok(task) => {
                    tracing::info!(%addr, ?kind, "Listener started.");
                    running.insert((addr, kind), Running { stop, closed: Some(closed), task });
                }
                Err(e) => {
                    all_bound = false;
                    tracing::error!(%addr, error = %e, "Cannot bind a listener; trying again.");
                }
            }
        }
        self.snapshots.mark_in_effect(snapshot.version);
        all_bound
    }
}
