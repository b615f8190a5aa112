//! Asynchronous invocation (`Invoke` with `InvocationType` `Event`): accepted into a durable queue in the store,
//! run in the background, retried on failure (contract 2.8), reported by `GetRequestStatus`.
//!
//! Delivery is at least once: an invocation that was running when fnlb stopped runs again after the restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use super::{Engine, status};
use crate::control::Control;
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
}

pub const DEFAULT_ASYNC_RETRIES: u32 = 2;
pub const DEFAULT_ASYNC_RETRY_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_ASYNC_CONCURRENCY: usize = 16;
pub const ASYNC_EVENT_LIMIT: usize = 128 * 1024;
/// How long the worker sleeps at most before looking at the queue again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            retries: DEFAULT_ASYNC_RETRIES,
            retry_interval: DEFAULT_ASYNC_RETRY_INTERVAL,
            concurrency: DEFAULT_ASYNC_CONCURRENCY,
            max_event_bytes: ASYNC_EVENT_LIMIT,
        }
    }
}

pub struct AsyncQueue {
    pub settings: QueueSettings,
    store: Arc<Store>,
    control: Arc<Control>,
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
    pub fn new(settings: QueueSettings, store: Arc<Store>, control: Arc<Control>, engine: Arc<Engine>) -> AsyncQueue {
        AsyncQueue { settings, store, control, engine, wake: Notify::new() }
    }

    /// Queues an invocation; it is durable when this returns. Blocking (SQLite).
    pub fn submit(&self, job: &AsyncJob) -> Result<(), crate::store::StoreError> {
        self.store.enqueue(job)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Runs queued invocations until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.requeue_running()).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(requeued = n, "Asynchronous invocations interrupted by a stop run again.")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "Cannot read the asynchronous queue."),
            _ => {}
        }
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        loop {
            let free = slots.available_permits();
            let store = self.store.clone();
            let now = crate::clock::now_ms();
            let jobs = tokio::task::spawn_blocking(move || store.due_jobs(now, free)).await;
            match jobs {
                Ok(Ok(jobs)) => {
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
                Ok(Err(e)) => tracing::error!(error = %e, "Cannot read the asynchronous queue."),
                Err(e) => tracing::error!(error = %e, "Reading the asynchronous queue failed."),
            }
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || store.next_due()).await.ok().and_then(Result::ok).flatten();
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
            parse_function_id(&job.function).and_then(|key| self.control.snapshot().functions.get(&key).cloned());
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
        // What no further attempt can change is not retried: the function or qualifier gone, an event too large.
        let final_codes = [status::FUNCTION_NOT_FOUND, status::QUALIFIER_NOT_FOUND, status::REQUEST_TOO_LARGE];
        let retriable = outcome.ret_code != 0 && !final_codes.iter().any(|c| i64::from(*c) == outcome.ret_code);
        let retry_at = (retriable && job.attempts < i64::from(self.settings.retries)).then(|| {
            crate::clock::now_ms() + i64::try_from(self.settings.retry_interval.as_millis()).unwrap_or(i64::MAX)
        });
        let store = self.store.clone();
        let id = job.request_id.clone();
        let saved = tokio::task::spawn_blocking(move || store.finish_attempt(&id, &outcome, retry_at)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!(request_id = %job.request_id, "Cannot record an asynchronous invocation's outcome.");
        }
    }
}
