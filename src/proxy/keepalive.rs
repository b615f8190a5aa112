//! The life of one client connection between requests: CLB's `keepalive_timeout` (an idle connection is closed),
//! `keepalive_requests` (a connection serves at most so many requests) and `client_header_timeout` for the
//! first request. The limits of the rule that served the last request hold, as in nginx.
//!
//! Requests only update counters; one timer per connection looks at them when it fires, so that keeping track
//! costs a request no wake-up and no timer of its own.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub struct KeepAlive {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicU32,
    /// Milliseconds from `start` to when the connection last became idle.
    idle_since_ms: AtomicU64,
    timeout_ms: AtomicU64,
    max_requests: AtomicU32,
    header_timeout: Duration,
    close: AtomicBool,
    closing: Notify,
    /// A shorter idle timeout came into force: the timer may be set too late.
    shortened: Notify,
}

/// A request in flight on the connection.
pub struct Busy<'a>(&'a KeepAlive);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
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
        KeepAlive {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
            max_requests: AtomicU32::new(max_requests),
            header_timeout,
            close: AtomicBool::new(false),
            closing: Notify::new(),
            shortened: Notify::new(),
        }
    }

    /// A request's head is in; it counts as in flight until the guard is dropped.
    pub fn begin(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.check();
        Busy(self)
    }

    /// The limits of the rule a request was routed to: they hold from now on.
    pub fn limit(&self, timeout: Duration, max_requests: u32) {
        let timeout_ms = timeout.as_millis() as u64;
        if self.timeout_ms.swap(timeout_ms, Ordering::Relaxed) > timeout_ms {
            self.shortened.notify_one();
        }
        self.max_requests.store(max_requests, Ordering::Relaxed);
        self.check();
    }

    /// Whether the connection is to close after the exchange in flight (its limits are spent).
    pub fn closing(&self) -> bool {
        self.close.load(Ordering::Relaxed)
    }

    fn end(&self) {
        self.idle_since_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    fn check(&self) {
        let spent = self.served.load(Ordering::Relaxed) >= self.max_requests.load(Ordering::Relaxed);
        if (spent || self.timeout_ms.load(Ordering::Relaxed) == 0) && !self.close.swap(true, Ordering::Relaxed) {
            self.closing.notify_one();
        }
    }

    /// Resolves when the connection should end.
    pub async fn expired(&self) -> Expiry {
        let timer = tokio::time::sleep_until(self.start);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                _ = self.closing.notified() => return Expiry::Finish,
                _ = self.shortened.notified() => {}
                _ = timer.as_mut() => {}
            }
            match self.due(Instant::now()) {
                Ok(next) => timer.as_mut().reset(next),
                Err(expiry) => return expiry,
            }
        }
    }

    /// When to look again, or why the connection ends now.
    pub fn due(&self, now: Instant) -> Result<Instant, Expiry> {
        let timeout = Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed));
        if self.served.load(Ordering::Relaxed) == 0 {
            // Until the first request, look at least every idle timeout: it may come and go meanwhile.
            let deadline = self.start + self.header_timeout;
            return if deadline <= now { Err(Expiry::HeaderTimeout) } else { Ok(deadline.min(now + timeout)) };
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Busy: look again a timeout from now (the idle time counts from the answer).
            return Ok(now + timeout);
        }
        let idle_since = self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        if idle_since + timeout <= now { Err(Expiry::Finish) } else { Ok(idle_since + timeout) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_connections_end_after_the_timeout_and_busy_ones_do_not() {
        let keepalive = KeepAlive::new(Duration::from_secs(60), Duration::from_secs(5), 100);
        let busy = keepalive.begin();
        let started = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(90), keepalive.expired()).await;
        assert!(waited.is_err(), "a request in flight keeps the connection");
        drop(busy);
        assert_eq!(keepalive.expired().await, Expiry::Finish);
        let idle = started.elapsed() - Duration::from_secs(90);
        assert!(idle >= Duration::from_secs(5) && idle < Duration::from_secs(6), "{idle:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_idle_timeout_is_kept_before_the_header_deadline_and_after_a_rule_shortens_it() {
        let keepalive = KeepAlive::new(Duration::from_secs(60), Duration::from_secs(1), 100);
        drop(keepalive.begin());
        let started = Instant::now();
        assert_eq!(keepalive.expired().await, Expiry::Finish);
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        let keepalive = Arc::new(KeepAlive::new(Duration::from_secs(60), Duration::from_secs(75), 100));
        let watcher = tokio::spawn({
            let keepalive = keepalive.clone();
            async move { keepalive.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = keepalive.begin();
        keepalive.limit(Duration::from_secs(2), 100);
        drop(busy);
        let started = Instant::now();
        assert_eq!(watcher.await.unwrap(), Expiry::Finish);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_has_its_own_deadline_and_requests_are_counted() {
        let keepalive = KeepAlive::new(Duration::from_secs(2), Duration::from_secs(75), 100);
        assert_eq!(keepalive.expired().await, Expiry::HeaderTimeout);
        let keepalive = KeepAlive::new(Duration::from_secs(2), Duration::from_secs(75), 100);
        drop(keepalive.begin());
        keepalive.limit(Duration::from_secs(75), 2);
        let _busy = keepalive.begin();
        assert_eq!(keepalive.expired().await, Expiry::Finish, "the second of two requests ends the connection");
    }
}
