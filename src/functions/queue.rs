//! Asynchronous invocation (`Invoke` with `InvocationType` `Event`): accepted into a durable queue in the store,
//! run in the background, retried on failure (contract 2.8), reported by `GetRequestStatus`.
//!
//! Delivery is at least once: an invocation that was running when fnlb stopped runs again after the restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use super::{Engine, status};
use crate::snapshot::Snapshots;
use crate::state::{FunctionKey, Scope};
use crate::store::{AsyncJob, AsyncOutcome, Store};

/// The settings of the asynchronous queue. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// Further attempts after a failed one (Tencent's default: 2).
    pub retries: u32,
    pub retry_interval: Duration,
    /// Asynchronous invocations running at once.
    pub concurrency: usize,
    /// The largest asynchronous event (contract 1.4: 128 KB).
    pub max_event_bytes: usize,
    /// Invocations that may wait or run at once (contract 2.8: 100,000).
    pub max_pending: usize,
    /// How long a finished invocation's status is kept for `GetRequestStatus`.
    pub retention: Duration,
}

pub const DEFAULT_ASYNC_RETRIES: u32 = 2;
pub const DEFAULT_ASYNC_RETRY_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_ASYNC_CONCURRENCY: usize = 16;
pub const ASYNC_EVENT_LIMIT: usize = 128 * 1024;
pub const DEFAULT_ASYNC_MAX_PENDING: usize = 100_000;
pub const DEFAULT_ASYNC_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often finished invocations past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long the worker sleeps at most before looking at the queue again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long an invocation that keeps meeting overload or system errors is tried (contract 2.8: 6 hours).
pub const ASYNC_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
/// The longest pause between two attempts after overload or system errors (contract 2.8: 5 minutes).
pub const ASYNC_MAX_BACKOFF: Duration = Duration::from_secs(300);

impl QueueSettings {
    /// When to try a failed invocation again (contract 2.8), or `None` for never: errors of the function's own
    /// execution are retried `retries` times `retry_interval` apart; overload (432) and system errors with a
    /// doubling pause up to 5 minutes, for up to 6 hours; what no attempt can change (the function or qualifier
    /// gone, an event too large) not at all.
    pub fn retry_at(&self, job: &AsyncJob, code: i64, now_ms: i64) -> Option<i64> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let code = u16::try_from(code).ok()?;
        match code {
            0 | status::FUNCTION_NOT_FOUND | status::QUALIFIER_NOT_FOUND | status::REQUEST_TOO_LARGE => None,
            c if status::is_user_failure(c) => {
                (job.attempts < i64::from(self.retries)).then(|| now_ms + ms(self.retry_interval))
            }
            _ => {
                let shift = u32::try_from(job.attempts).unwrap_or(u32::MAX).min(16);
                let pause = self.retry_interval.saturating_mul(1 << shift).min(ASYNC_MAX_BACKOFF);
                let next = now_ms + ms(pause);
                (next <= job.created_ms + ms(ASYNC_MAX_AGE)).then_some(next)
            }
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            retries: DEFAULT_ASYNC_RETRIES,
            retry_interval: DEFAULT_ASYNC_RETRY_INTERVAL,
            concurrency: DEFAULT_ASYNC_CONCURRENCY,
            max_event_bytes: ASYNC_EVENT_LIMIT,
            max_pending: DEFAULT_ASYNC_MAX_PENDING,
            retention: DEFAULT_ASYNC_RETENTION,
        }
    }
}

pub struct AsyncQueue {
    pub settings: QueueSettings,
    store: Store,
    snapshots: Arc<Snapshots>,
    engine: Arc<Engine>,
    wake: Notify,
}

/// The store's key of a function (`uin/region/namespace/name`; none of them holds a `/`).
pub fn function_id(key: &FunctionKey) -> String {
    format!("{}/{}/{}/{}", key.scope.uin, key.scope.region, key.namespace, key.name)
}

fn parse_function_id(id: &str) -> Option<FunctionKey> {
    let mut parts = id.splitn(4, '/');
    let (uin, region, namespace, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(FunctionKey {
        scope: Scope { uin: uin.to_string(), region: region.to_string() },
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

// === impl AsyncQueue ===

impl AsyncQueue {
    pub fn new(settings: QueueSettings, store: Store, snapshots: Arc<Snapshots>, engine: Arc<Engine>) -> AsyncQueue {
        AsyncQueue { settings, store, snapshots, engine, wake: Notify::new() }
    }

    /// Queues an invocation; it is durable when this returns. False when the queue is full.
    pub async fn submit(&self, job: AsyncJob) -> Result<bool, crate::store::StoreError> {
        let queued = self.store.enqueue(job, self.settings.max_pending).await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Runs queued invocations until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.store.requeue_running().await {
            Ok(n) if n > 0 => tracing::info!(requeued = n, "Asynchronous invocations interrupted by a stop run again."),
            Ok(_) => {}
            Err(e) => queue_error(&e),
        }
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                let before =
                    crate::clock::now_ms() - i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
                if let Ok(n) = self.store.prune_finished(before).await
                    && n > 0
                {
                    tracing::debug!(forgotten = n, "Forgot old asynchronous invocations.");
                }
                next_prune += PRUNE_EVERY;
            }
            match self.store.rescue_abandoned().await {
                Ok(n) if n > 0 => tracing::info!(requeued = n, "Asynchronous invocations of a node gone run again."),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "Cannot look for abandoned asynchronous invocations."),
            }
            let free = slots.available_permits();
            match self.store.due_jobs(crate::clock::now_ms(), free).await {
                Ok(jobs) => {
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let queue = self.clone();
                        tokio::spawn(async move {
                            queue.attempt(job).await;
                            drop(permit);
                            queue.wake.notify_one();
                        });
                    }
                }
                Err(e) => queue_error(&e),
            }
            let next = self.store.next_due().await.ok().flatten();
            let wait = next.map_or(IDLE_CHECK, |due| {
                Duration::from_millis(u64::try_from(due - crate::clock::now_ms()).unwrap_or(0)).min(IDLE_CHECK)
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    async fn attempt(&self, job: AsyncJob) {
        let spec =
            parse_function_id(&job.function).and_then(|key| self.snapshots.current().functions.get(&key).cloned());
        let outcome = match spec {
            None => AsyncOutcome {
                ret_code: i64::from(status::FUNCTION_NOT_FOUND),
                ret_msg: "the function no longer exists".to_string(),
                duration_ms: 0.0,
                mem_bytes: 0,
            },
            Some(spec) => {
                let invocation =
                    self.engine.invoke(&spec, &job.qualifier, job.event.clone(), job.request_id.clone(), None).await;
                let duration_ms = invocation.duration.as_secs_f64() * 1000.0;
                match &invocation.result {
                    Ok(json) => AsyncOutcome {
                        ret_code: 0,
                        ret_msg: String::from_utf8_lossy(json).into_owned(),
                        duration_ms,
                        mem_bytes: invocation.mem_bytes,
                    },
                    Err(e) => AsyncOutcome {
                        ret_code: i64::from(e.status),
                        ret_msg: e.to_ret_msg(&job.request_id),
                        duration_ms,
                        mem_bytes: invocation.mem_bytes,
                    },
                }
            }
        };
        let retry_at = self.settings.retry_at(&job, outcome.ret_code, crate::clock::now_ms());
        if let Err(e) = self.store.finish_attempt(&job, outcome, retry_at).await {
            tracing::error!(request_id = %job.request_id, error = %e, "Cannot record an asynchronous invocation's outcome.");
        }
    }
}

/// Logs a failed read of the queue: an unreachable cluster store is reported once, by the node's follower.
fn queue_error(e: &crate::store::StoreError) {
    if matches!(e, crate::store::StoreError::Unreachable(_)) {
        tracing::debug!(error = %e, "Cannot read the asynchronous queue.");
    } else {
        tracing::error!(error = %e, "Cannot read the asynchronous queue.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: i64) -> AsyncJob {
        AsyncJob {
            request_id: "r".to_string(),
            function: "u/r/n/f".to_string(),
            qualifier: "$LATEST".to_string(),
            event: Vec::new(),
            attempts,
            created_ms: 0,
        }
    }

    #[test]
    fn execution_errors_are_retried_twice_a_minute_apart() {
        let settings = QueueSettings::default();
        assert_eq!(settings.retry_at(&job(0), 430, 1_000), Some(61_000));
        assert_eq!(settings.retry_at(&job(1), 433, 1_000), Some(61_000));
        assert_eq!(settings.retry_at(&job(2), 430, 1_000), None);
    }

    #[test]
    fn overload_backs_off_up_to_five_minutes_for_six_hours() {
        let settings = QueueSettings::default();
        assert_eq!(settings.retry_at(&job(0), 432, 0), Some(60_000));
        assert_eq!(settings.retry_at(&job(2), 432, 0), Some(240_000));
        assert_eq!(settings.retry_at(&job(9), 500, 0), Some(300_000));
        let six_hours = 6 * 3600 * 1000;
        assert_eq!(settings.retry_at(&job(50), 432, six_hours), None);
    }

    #[test]
    fn success_and_lasting_errors_are_not_retried() {
        let settings = QueueSettings::default();
        for code in [0, 435, 442, 406] {
            assert_eq!(settings.retry_at(&job(0), code, 0), None, "{code}");
        }
    }
}
