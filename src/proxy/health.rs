//! Active health checks of rules' server targets (contract 5.3 `HealthCheck`): one check loop per (rule,
//! target) with HTTP requests at the rule's interval, each within its timeout; a target turns unhealthy after
//! `UnHealthNum` failures in a row and healthy again after `HealthNum` successes. Unhealthy targets get no new
//! requests. The loops follow the snapshot: started for new targets, stopped for removed ones, restarted when
//! the rule's check changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::snapshot::Snapshot;
use crate::state::HealthCheck;

/// What is known of one target of one rule; shared by the balancer and the check loop.
#[derive(Debug, Default)]
pub struct TargetState {
    status: AtomicU8,
    /// Requests being forwarded to it now (LEAST_CONN).
    pub active: AtomicUsize,
    /// Connections to it that failed, and requests that went to another target because of one.
    pub connect_errors: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not checked yet (it takes traffic), or checks are off.
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
    /// The rule's checks are switched off: it takes traffic.
    Off = 3,
}

impl Status {
    /// `HealthStatusDetail` of DescribeTargetHealth.
    pub fn as_api(self) -> &'static str {
        match self {
            Status::Unknown => "Unknown",
            Status::Healthy => "Alive",
            Status::Unhealthy => "Dead",
            Status::Off => "Close",
        }
    }

    /// `HealthStatus` of DescribeTargetHealth.
    pub fn is_healthy(self) -> bool {
        matches!(self, Status::Healthy | Status::Off)
    }
}

impl TargetState {
    pub fn status(&self) -> Status {
        match self.status.load(Ordering::Relaxed) {
            1 => Status::Healthy,
            2 => Status::Unhealthy,
            3 => Status::Off,
            _ => Status::Unknown,
        }
    }

    /// Whether it may take new requests.
    pub fn takes_traffic(&self) -> bool {
        self.status() != Status::Unhealthy
    }

    pub(super) fn set(&self, status: Status) {
        self.status.store(status as u8, Ordering::Relaxed);
    }
}

/// One check loop: what it checks, and its task.
struct Check {
    check: HealthCheck,
    host: String,
    task: JoinHandle<()>,
}

impl Drop for Check {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every target's state and check loop, by (rule, target address).
#[derive(Default)]
pub struct Health {
    targets: Mutex<HashMap<(String, SocketAddr), Arc<TargetState>>>,
    checks: Mutex<HashMap<(String, SocketAddr), Check>>,
}

impl Health {
    /// The state of a rule's target (created on first use).
    pub fn target(&self, location: &str, addr: SocketAddr) -> Arc<TargetState> {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets.entry((location.to_string(), addr)).or_default().clone()
    }

    /// Every (rule, target) and its state.
    pub fn all(&self) -> Vec<((String, SocketAddr), Arc<TargetState>)> {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// A target's status, for DescribeTargetHealth.
    pub fn status(&self, location: &str, ip: &str, port: u16) -> Status {
        let Ok(ip) = ip.parse() else { return Status::Unknown };
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets.get(&(location.to_string(), SocketAddr::new(ip, port))).map_or(Status::Unknown, |t| t.status())
    }

    /// Starts and stops check loops to match the snapshot's rules and targets. Rules' targets are checked over
    /// HTTP, layer-4 listeners' with a TCP connect (an empty host).
    pub fn reconcile(&self, snapshot: &Snapshot) {
        let mut wanted: HashMap<(String, SocketAddr), (HealthCheck, String)> = HashMap::new();
        // UDP targets are not checked (a datagram has no answer to count on): they always take traffic.
        let tcp = snapshot.stream_listeners.values().map(|s| (s, true));
        for (listener, checked) in tcp.chain(snapshot.datagram_listeners.values().map(|s| (s, false))) {
            let target = &listener.target;
            let check = HealthCheck { enabled: checked && target.health_check.enabled, ..target.health_check.clone() };
            for (addr, _) in &target.servers {
                wanted.insert((target.location_id.clone(), *addr), (check.clone(), String::new()));
            }
        }
        for routes in snapshot.http_listeners.values() {
            for rule in &routes.rules {
                for (addr, _) in &rule.servers {
                    let host = if rule.health_check.domain.is_empty() {
                        crate::snapshot::router::plain_domain(&rule.domain)
                            .map_or_else(|| routes.addr.ip().to_string(), str::to_string)
                    } else {
                        rule.health_check.domain.clone()
                    };
                    wanted.insert((rule.location_id.clone(), *addr), (rule.health_check.clone(), host));
                }
            }
        }
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.retain(|key, running| {
            wanted.get(key).is_some_and(|(check, host)| *check == running.check && *host == running.host)
        });
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| wanted.contains_key(key));
        for (key, (check, host)) in wanted {
            if checks.contains_key(&key) {
                continue;
            }
            let state = self.target(&key.0, key.1);
            let task = if check.enabled {
                state.set(Status::Unknown);
                tokio::spawn(check_loop(state, key.1, check.clone(), host.clone()))
            } else {
                state.set(Status::Off);
                tokio::spawn(async {})
            };
            checks.insert(key, Check { check, host, task });
        }
    }
}

/// Checks a target every `IntervalTime` seconds (a check's own time does not delay the next: with `TimeOut` below
/// the interval, a dead target is found within `UnHealthNum` × `IntervalTime` + `TimeOut`).
async fn check_loop(state: Arc<TargetState>, addr: SocketAddr, check: HealthCheck, host: String) {
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ticks = tokio::time::interval(Duration::from_secs(u64::from(check.interval_s).max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let healthy = probe(addr, &check, &host).await;
        if healthy {
            successes += 1;
            failures = 0;
            // The first answer settles an unknown target; afterwards it takes `HealthNum` in a row.
            if state.status() == Status::Unknown || successes >= check.healthy_threshold {
                if state.status() == Status::Unhealthy {
                    tracing::info!(%addr, "A target is healthy again.");
                }
                state.set(Status::Healthy);
            }
        } else {
            failures += 1;
            successes = 0;
            if failures >= check.unhealthy_threshold && state.status() != Status::Unhealthy {
                tracing::warn!(%addr, failures, "A target is unhealthy: it gets no new requests.");
                state.set(Status::Unhealthy);
            }
        }
    }
}

/// How much of a check's answer is read (and dropped) after its status line.
const PROBE_DRAIN_BYTES: usize = 64 * 1024;
/// How long reading the rest of a check's answer may take; it does not count for the check.
const PROBE_DRAIN_TIME: Duration = Duration::from_millis(200);

/// One check within the check's timeout: a TCP connect (no `host`: layer 4), or a fresh connection, an HTTP
/// request and its status line.
async fn probe(addr: SocketAddr, check: &HealthCheck, host: &str) -> bool {
    let timeout = Duration::from_secs(u64::from(check.timeout_s));
    if host.is_empty() {
        return matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)));
    }
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fnlb-health-check\r\nConnection: close\r\n\r\n",
            check.method, check.path
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 32];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<_, std::io::Error>((status_code(&head[..read]), stream))
    };
    let Ok(Ok((Some(code), mut stream))) = tokio::time::timeout(timeout, attempt).await else {
        return false;
    };
    // Read the rest of the answer (a bounded amount, for a moment) before closing, so that the server's write of
    // it does not meet a reset connection.
    let drain = async {
        let mut rest = [0u8; 4096];
        let mut left = PROBE_DRAIN_BYTES;
        while let Ok(n @ 1..) = stream.read(&mut rest).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(PROBE_DRAIN_TIME, drain).await;
    (1..=5).contains(&(code / 100)) && check.http_codes & (1 << (code / 100 - 1)) != 0
}

/// The status code of an HTTP/1.x status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(b"HTTP/1.1"), None);
    }
}
