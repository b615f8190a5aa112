//! The data plane's load balancer: one accept loop per layer-7 listener, reconciled with each snapshot.

pub mod bridge;
pub mod respond;
pub mod router;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::Control;
use crate::functions::Engine;

/// The proxy's limits. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// How long a removed listener (or a stopping fnlb) lets open connections finish.
    pub drain_timeout: Duration,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

pub struct Proxy {
    pub control: Arc<Control>,
    pub functions: Arc<Engine>,
    pub settings: ProxySettings,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

// === impl Proxy ===

impl Proxy {
    /// Keeps the set of bound listeners equal to the snapshot's until `shutdown` turns true, then stops them
    /// all and waits for their connections to drain.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut published = self.control.subscribe();
        let mut running: HashMap<SocketAddr, Running> = HashMap::new();
        loop {
            self.reconcile(&mut running).await;
            tokio::select! {
                changed = published.changed() => if changed.is_err() { break },
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        for (_, r) in running.iter() {
            let _ = r.stop.send(true);
        }
        for (_, r) in running {
            let _ = r.task.await;
        }
    }

    async fn reconcile(self: &Arc<Self>, running: &mut HashMap<SocketAddr, Running>) {
        let snapshot = self.control.snapshot();
        self.functions.reconcile(&snapshot);
        running.retain(|addr, r| {
            let keep = snapshot.http_listeners.contains_key(addr);
            if !keep {
                tracing::info!(%addr, "Listener stopped.");
                let _ = r.stop.send(true);
            }
            keep
        });
        for addr in snapshot.http_listeners.keys() {
            if running.contains_key(addr) {
                continue;
            }
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "Listener started.");
                    let (stop, stop_rx) = watch::channel(false);
                    let task = tokio::spawn(server::serve(self.clone(), listener, *addr, stop_rx));
                    running.insert(*addr, Running { stop, task });
                }
                Err(e) => tracing::error!(%addr, error = %e, "Cannot bind listener."),
            }
        }
        self.control.mark_in_effect(snapshot.version);
    }
}
