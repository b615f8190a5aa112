//! The life of one client connection between requests: CLB's `keepalive_timeout` (an idle connection is closed),
//! `keepalive_requests` (a connection serves at most so many requests) and `client_header_timeout` for the
//! first request. The limits of the rule that served the last request hold, as in nginx.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub struct KeepAlive {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_flight: usize,
    served: u32,
    idle_since: Instant,
    timeout: Duration,
    max_requests: u32,
    /// Until the first request's head is in.
    first_head_deadline: Option<Instant>,
    close: bool,
}

/// Why a connection ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Idle too long, or served its number of requests: close once the current exchange is over.
    Finish,
    /// The first request's head did not arrive in time: close now.
    HeaderTimeout,
}

impl KeepAlive {
    pub fn new(header_timeout: Duration, timeout: Duration, max_requests: u32) -> KeepAlive {
        let now = Instant::now();
        let state = State {
            in_flight: 0,
            served: 0,
            idle_since: now,
            timeout,
            max_requests,
            first_head_deadline: Some(now + header_timeout),
            close: false,
        };
        KeepAlive { state: Mutex::new(state), changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's head is in.
    pub fn begin(&self) {
        let mut state = self.lock();
        state.in_flight += 1;
        state.served += 1;
        state.first_head_deadline = None;
        self.check(state);
    }

    /// The limits of the rule a request was routed to: they hold from now on.
    pub fn limit(&self, timeout: Duration, max_requests: u32) {
        let mut state = self.lock();
        state.timeout = timeout;
        state.max_requests = max_requests;
        self.check(state);
    }

    fn check(&self, mut state: std::sync::MutexGuard<'_, State>) {
        if !state.close && (state.served >= state.max_requests || state.timeout.is_zero()) {
            state.close = true;
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request's answer has been handed over.
    pub fn end(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        state.idle_since = Instant::now();
        if state.in_flight == 0 {
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection should end.
    pub async fn expired(&self) -> Expiry {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let deadline = {
                let state = self.lock();
                if state.close {
                    return Expiry::Finish;
                }
                match state.first_head_deadline {
                    Some(deadline) => Some((deadline, Expiry::HeaderTimeout)),
                    None if state.in_flight == 0 => Some((state.idle_since + state.timeout, Expiry::Finish)),
                    None => None,
                }
            };
            match deadline {
                Some((deadline, expiry)) if deadline <= Instant::now() => return expiry,
                Some((deadline, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_connections_end_after_the_timeout_and_busy_ones_do_not() {
        let keepalive = KeepAlive::new(Duration::from_secs(60), Duration::from_secs(5), 100);
        keepalive.begin();
        let started = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(30), keepalive.expired()).await;
        assert!(waited.is_err(), "a request in flight keeps the connection");
        keepalive.end();
        assert_eq!(keepalive.expired().await, Expiry::Finish);
        assert!(started.elapsed() >= Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_has_its_own_deadline_and_requests_are_counted() {
        let keepalive = KeepAlive::new(Duration::from_secs(2), Duration::from_secs(75), 100);
        assert_eq!(keepalive.expired().await, Expiry::HeaderTimeout);
        let keepalive = KeepAlive::new(Duration::from_secs(2), Duration::from_secs(75), 100);
        keepalive.begin();
        keepalive.limit(Duration::from_secs(75), 2);
        keepalive.end();
        keepalive.begin();
        assert_eq!(keepalive.expired().await, Expiry::Finish, "the second of two requests ends the connection");
    }
}
