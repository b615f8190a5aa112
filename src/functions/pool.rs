//! The instances of one function revision: warm ones reused, new ones started on demand up to a limit,
//! callers past the limit queued for a bounded time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::instance::{Instance, InvokeFailure, Launch, Reply, StartError};
use super::{EngineSettings, FunctionError, status};

pub struct Pool {
    pub revision: u64,
    launch: Launch,
    timeout: Duration,
    /// The context fields every invocation shares, as JSON members (`"memory_limit_in_mb":128,…`).
    context_tail: String,
    settings: EngineSettings,
    capacity: std::sync::Arc<Semaphore>,
    waiting: AtomicUsize,
    idle: Mutex<Vec<Instance>>,
    retired: AtomicBool,
}

/// What one invocation in the pool produced, before it is written to the log.
pub struct Ran {
    pub result: Result<Bytes, FunctionError>,
    pub mem_bytes: u64,
    pub cold: bool,
}

// === impl Pool ===

impl Pool {
    pub fn new(
        revision: u64,
        launch: Launch,
        timeout: Duration,
        context_tail: String,
        settings: EngineSettings,
    ) -> Pool {
        Pool {
            revision,
            launch,
            timeout,
            context_tail,
            capacity: std::sync::Arc::new(Semaphore::new(settings.max_instances_per_function)),
            settings,
            waiting: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        }
    }

    /// No new invocations come here; idle instances are stopped now, busy ones when they finish.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub async fn invoke(&self, event: &[u8], request_id: &str, log: &mut String, next_id: impl FnOnce() -> u64) -> Ran {
        let fail = |result: FunctionError| Ran {
            result: Err(result),
            mem_bytes: 0,
            cold: false,
        };
        if self.waiting.load(Ordering::Relaxed) >= self.settings.max_queue_per_function {
            return fail(FunctionError::new(
                status::CONCURRENCY,
                "the function's concurrency limit is reached and its queue is full",
            ));
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout(self.settings.queue_timeout, self.capacity.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(Ok(_permit)) = permit else {
            return fail(FunctionError::new(
                status::CONCURRENCY,
                "the function's concurrency limit is reached; no instance became free in time",
            ));
        };

        let warm = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let cold = warm.is_none();
        let mut instance = match warm {
            Some(instance) => instance,
            None => match Instance::start(next_id(), &self.launch).await {
                Ok(instance) => instance,
                Err(e) => return fail(start_error(e, log, self.settings.max_log_bytes)),
            },
        };
        tracing::trace!(instance = instance.id, cold, "Running on instance.");
        if !instance.init_log.is_empty() {
            let init_log = std::mem::take(&mut instance.init_log);
            super::instance::append_bounded(log, &init_log, self.settings.max_log_bytes);
        }

        let parts: [&[u8]; 7] = [
            b"{\"event\":",
            event,
            b",\"context\":{\"request_id\":\"",
            request_id.as_bytes(),
            b"\",",
            self.context_tail.as_bytes(),
            b"}}",
        ];
        let reply = instance
            .invoke(&parts, self.timeout, log, self.settings.max_log_bytes)
            .await;
        let ran = match reply {
            Ok(Reply::Returned { json, mem_bytes }) if json.len() > self.settings.max_response_bytes => Ran {
                result: Err(FunctionError::new(
                    status::RESPONSE_TOO_LARGE,
                    "The size of response exceeds the upper limit (6MB)",
                )),
                mem_bytes,
                cold,
            },
            Ok(Reply::Returned { json, mem_bytes }) => Ran {
                result: Ok(json),
                mem_bytes,
                cold,
            },
            Ok(Reply::Raised { error, mem_bytes }) => {
                // The runtime reports the traceback; the log shows it, as the platform's does.
                if let Some(trace) = error
                    .get("stackTrace")
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                {
                    super::instance::append_bounded(log, trace, self.settings.max_log_bytes);
                    if !trace.ends_with('\n') {
                        log.push('\n');
                    }
                }
                let code = error
                    .get("statusCode")
                    .and_then(|c| c.as_u64())
                    .and_then(|c| u16::try_from(c).ok());
                let message = error
                    .get("errorMessage")
                    .and_then(|m| m.as_str())
                    .unwrap_or("user code exception caught");
                let mut err = FunctionError::new(code.unwrap_or(status::USER_CODE_EXCEPTION), message);
                err.error = Some(error);
                Ran {
                    result: Err(err),
                    mem_bytes,
                    cold,
                }
            }
            Err(InvokeFailure::TimedOut) => {
                let message = format!(
                    "time out: the invocation did not finish within {} s",
                    self.timeout.as_secs()
                );
                return Ran {
                    result: Err(FunctionError::new(status::TIMEOUT, message)),
                    mem_bytes: 0,
                    cold,
                };
            }
            Err(InvokeFailure::Exited) => {
                return Ran {
                    result: Err(FunctionError::new(
                        status::PROCESS_EXITED,
                        "User preocess exit when running",
                    )),
                    mem_bytes: 0,
                    cold,
                };
            }
            Err(InvokeFailure::Protocol(why)) => {
                let message = format!("the runtime broke the function protocol: {why}");
                return Ran {
                    result: Err(FunctionError::new(status::PROCESS_EXITED, message)),
                    mem_bytes: 0,
                    cold,
                };
            }
        };
        // A healthy instance goes back for the next caller (unless this revision was replaced meanwhile).
        if !self.retired.load(Ordering::SeqCst) {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(instance);
        }
        ran
    }
}

fn start_error(e: StartError, log: &mut String, limit: usize) -> FunctionError {
    use super::instance::append_bounded;
    match e {
        StartError::Init { error, log: init_log } => {
            append_bounded(log, &init_log, limit);
            let code = error
                .get("statusCode")
                .and_then(|c| c.as_u64())
                .and_then(|c| u16::try_from(c).ok());
            let message = error
                .get("errorMessage")
                .and_then(|m| m.as_str())
                .unwrap_or("the handler could not be loaded");
            if let Some(trace) = error.get("stackTrace").and_then(|t| t.as_str()) {
                append_bounded(log, trace, limit);
                if !trace.ends_with('\n') {
                    log.push('\n');
                }
            }
            let mut err = FunctionError::new(code.unwrap_or(status::HANDLER_NOT_FOUND), message);
            err.error = Some(error);
            err
        }
        StartError::Spawn(e) => {
            FunctionError::new(status::CONTAINER_INIT, format!("the runtime could not be started: {e}"))
        }
        StartError::Exited { log: init_log } => {
            append_bounded(log, &init_log, limit);
            FunctionError::new(status::CONTAINER_INIT, "the runtime exited before it was ready")
        }
        StartError::TimedOut { log: init_log } => {
            append_bounded(log, &init_log, limit);
            FunctionError::new(
                status::INIT_TIMEOUT,
                "the runtime did not become ready within the init timeout",
            )
        }
    }
}
