//! The function service's data plane: pools of instances per function, invocations, logs.

mod code;
mod instance;
pub mod limits;
pub mod logs;
pub mod network;
mod pool;
pub mod protocol;
pub mod queue;
pub mod reserve;
mod runtime_api;
pub mod runtimes;
pub mod sandbox;
pub mod scheduling;
mod seccomp;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;

pub use code::{CodeError, check_zip, sha256_hex, unpack, zip_dir, zip_files};
pub use instance::ZYGOTE_SPARES;
use logs::{LogRecord, LogStore};
use pool::{Pool, PoolSpec};
use reserve::{Reservation, Reserved};
use runtimes::Runtimes;

use crate::snapshot::{FunctionSpec, Resolved, Snapshot};
use crate::state::FunctionKey;
use crate::store::Store;

/// SCF function status codes (contract 2.7) that fnlb itself produces.
pub mod status {
    pub const SUCCESS: u16 = 200;
    pub const REQUEST_TOO_LARGE: u16 = 406;
    pub const RESPONSE_TOO_LARGE: u16 = 407;
    pub const USER_CODE_EXCEPTION: u16 = 430;
    pub const CONCURRENCY: u16 = 432;
    pub const TIMEOUT: u16 = 433;
    pub const MEMORY: u16 = 434;
    pub const FUNCTION_NOT_FOUND: u16 = 435;
    pub const HANDLER_NOT_FOUND: u16 = 437;
    pub const PROCESS_EXITED: u16 = 439;
    pub const QUALIFIER_NOT_FOUND: u16 = 442;
    pub const CONTAINER_INIT: u16 = 445;
    pub const INIT_TIMEOUT: u16 = 450;
    pub const INTERNAL: u16 = 500;

    /// Whether a status is the function's own failure (`InvokeResult` 1) rather than the platform's (-1).
    pub fn is_user_failure(code: u16) -> bool {
        matches!(code, 407 | 430 | 433 | 434 | 437 | 439 | 443)
    }
}

/// The limits of the function engine. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub max_instances_per_function: usize,
    /// The memory all running instances may hold together, in MB (Tencent's account concurrency quota).
    pub total_concurrency_mb: u32,
    /// How long an instance may stay idle before it is stopped.
    pub idle_timeout: Duration,
    pub max_queue_per_function: usize,
    pub queue_timeout: Duration,
    /// Instances of one function version that may be starting at once.
    pub max_starting_per_function: usize,
    /// Instances of one function version started on demand without waiting first for a busy one to be released.
    pub eager_instances_per_function: usize,
    /// The longest a caller waits for a busy instance of a function with short invocations to be released before
    /// it starts another (`Pool::instance`); zero: never wait.
    pub warm_wait_limit: Duration,
    /// While the processors are saturated (`scheduling::Scheduling::saturated`): the longest a caller waits for a
    /// busy instance of a function whose invocations are shorter than this to be released before it starts
    /// another (an instance more would add no processor time); zero: as when they are not saturated.
    pub saturated_wait_limit: Duration,
    pub max_event_bytes: usize,
    pub max_response_bytes: usize,
    pub max_log_bytes: usize,
    pub logs_per_function: usize,
    pub log_bytes_per_function: usize,
    pub max_code_unpacked_bytes: u64,
    pub max_processes_per_instance: u64,
    pub max_open_files_per_instance: u64,
    /// The memory, in MB, that buys an instance one processor (`limits::InstanceLimits`); 0: no quota.
    pub mb_per_cpu: u32,
    /// Start Python instances by forking the Python runtime's pre-initialised zygote.
    pub zygote: bool,
    /// Node.js spares the zygote keeps started ahead of time (0: an interpreter per Node.js instance).
    pub node_spares: usize,
    /// When instances run under the `SCHED_BATCH` policy, where waking one never preempts fnlb on its processor
    /// (`scheduling.rs`: by default while no other process keeps the processors busy).
    pub batch_scheduling: scheduling::BatchScheduling,
}

pub const DEFAULT_MAX_INSTANCES_PER_FUNCTION: usize = 64;
/// Node.js spares kept started ahead of time: a burst of cold starts takes them before it waits for a new one.
pub const DEFAULT_NODE_SPARES: usize = 2;
/// Tencent's regional concurrency quota for the large regions (contract 2.9).
pub const DEFAULT_TOTAL_CONCURRENCY_MB: u32 = 128_000;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_QUEUE_PER_FUNCTION: usize = 1024;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_STARTING_PER_FUNCTION: usize = 4;
pub const DEFAULT_WARM_WAIT_LIMIT: Duration = Duration::from_millis(10);
pub const DEFAULT_SATURATED_WAIT_LIMIT: Duration = Duration::from_millis(100);
/// Instances per processor a function starts on demand before short invocations wait for busy ones first.
pub const EAGER_INSTANCES_PER_PROCESSOR: usize = 4;

/// `EAGER_INSTANCES_PER_PROCESSOR` for each processor fnlb may run on.
pub fn default_eager_instances() -> usize {
    EAGER_INSTANCES_PER_PROCESSOR * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Synchronous event and response limit (contract 1.4).
pub const SYNC_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
pub const DEFAULT_MAX_LOG_BYTES: usize = 1024 * 1024;
pub const DEFAULT_LOGS_PER_FUNCTION: usize = 1000;
/// How long a code package no function runs is kept (a package just uploaded is not yet referenced).
pub const DEFAULT_CODE_RETENTION: Duration = Duration::from_secs(3600);
/// How often unused code is looked for, at most.
const CODE_COLLECTION_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_LOG_BYTES_PER_FUNCTION: usize = 16 * 1024 * 1024;
/// The most of a return value a log record keeps (`RetMsg` in logs).
pub const RET_MSG_IN_LOG_BYTES: usize = 4 * 1024;
/// Code size limit per function, unpacked (contract 2.9).
pub const DEFAULT_MAX_CODE_UNPACKED_BYTES: u64 = 500 * 1024 * 1024;

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances_per_function: DEFAULT_MAX_INSTANCES_PER_FUNCTION,
            total_concurrency_mb: DEFAULT_TOTAL_CONCURRENCY_MB,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_queue_per_function: DEFAULT_MAX_QUEUE_PER_FUNCTION,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_starting_per_function: DEFAULT_MAX_STARTING_PER_FUNCTION,
            warm_wait_limit: DEFAULT_WARM_WAIT_LIMIT,
            saturated_wait_limit: DEFAULT_SATURATED_WAIT_LIMIT,
            eager_instances_per_function: default_eager_instances(),
            max_event_bytes: SYNC_PAYLOAD_LIMIT,
            max_response_bytes: SYNC_PAYLOAD_LIMIT,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            logs_per_function: DEFAULT_LOGS_PER_FUNCTION,
            log_bytes_per_function: DEFAULT_LOG_BYTES_PER_FUNCTION,
            max_processes_per_instance: limits::DEFAULT_MAX_PROCESSES,
            max_open_files_per_instance: limits::DEFAULT_MAX_OPEN_FILES,
            mb_per_cpu: limits::DEFAULT_MB_PER_CPU,
            zygote: true,
            node_spares: DEFAULT_NODE_SPARES,
            batch_scheduling: scheduling::BatchScheduling::Auto,
            max_code_unpacked_bytes: DEFAULT_MAX_CODE_UNPACKED_BYTES,
        }
    }
}

/// A function's instances at one moment.
#[derive(Clone, Copy, Default)]
pub struct InstanceCounts {
    /// Running an invocation, or handed to a caller for one.
    pub busy: usize,
    pub idle: usize,
    /// Callers waiting for an instance.
    pub waiting: usize,
}

/// Bytes shown as megabytes with six decimals, as `{:.6}` shows `bytes / 2^20` (rounded half to even), without
/// floating-point formatting (one per invocation log).
struct Megabytes(u64);

impl std::fmt::Display for Megabytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // bytes / 2^20 in millionths: bytes × 10^6 / 2^20 = bytes × 15625 / 16384.
        let scaled = u128::from(self.0) * 15625;
        let (mut millionths, rest) = (scaled / 16384, scaled % 16384);
        if rest > 8192 || (rest == 8192 && millionths % 2 == 1) {
            millionths += 1;
        }
        write!(f, "{}.{:06}", millionths / 1_000_000, millionths % 1_000_000)
    }
}

/// Why an invocation produced no return value: an SCF status code and a message.
#[derive(Clone, Debug)]
pub struct FunctionError {
    pub status: u16,
    pub message: String,
    /// The runtime's own error object, when it sent one (`errorMessage`, `stackTrace`, …).
    pub error: Option<serde_json::Value>,
}

impl FunctionError {
    pub fn new(status: u16, message: impl Into<String>) -> FunctionError {
        FunctionError { status, message: message.into(), error: None }
    }

    /// A failure the runtime reported with its own error object (`statusCode`, `errorMessage`, …).
    pub fn from_runtime(error: serde_json::Value, default_status: u16) -> FunctionError {
        let code = error.get("statusCode").and_then(|c| c.as_u64()).and_then(|c| u16::try_from(c).ok());
        let message = error.get("errorMessage").and_then(|m| m.as_str()).unwrap_or("user code exception caught");
        FunctionError { status: code.unwrap_or(default_status), message: message.to_string(), error: Some(error) }
    }

    /// The error JSON Tencent reports as `RetMsg` (contract 0.3).
    pub fn to_ret_msg(&self, request_id: &str) -> String {
        let get = |k: &str| self.error.as_ref().and_then(|e| e.get(k)).cloned();
        serde_json::json!({
            "errorCode": get("errorCode").unwrap_or(serde_json::json!(-1)),
            "errorMessage": self.message,
            "requestId": request_id,
            "stackTrace": get("stackTrace").unwrap_or(serde_json::json!("")),
            "statusCode": self.status,
        })
        .to_string()
    }
}

/// A finished invocation.
pub struct Invocation {
    pub request_id: String,
    /// The return value as JSON text, or the failure.
    pub result: Result<Bytes, FunctionError>,
    pub duration: Duration,
    pub mem_bytes: u64,
    pub log: Arc<str>,
}

/// An invocation polled by its caller (no task of its own to spawn, schedule and join on the request's path); if the
/// caller goes away before it ends, dropping this hands the rest of it to a task of its own, which runs it to its
/// end and records its log. A panic in it is caught and returned.
struct Detachable {
    run: Option<std::pin::Pin<Box<dyn Future<Output = Invocation> + Send>>>,
}

impl Future for Detachable {
    type Output = std::thread::Result<Invocation>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(run) = self.run.as_mut() else { return std::task::Poll::Pending };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx)));
        match polled {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(invocation)) => {
                self.run = None;
                std::task::Poll::Ready(Ok(invocation))
            }
            Err(panic) => {
                self.run = None;
                std::task::Poll::Ready(Err(panic))
            }
        }
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        if let Some(run) = self.run.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

pub struct Engine {
    settings: EngineSettings,
    runtimes: Runtimes,
    code_root: PathBuf,
    store: Store,
    /// One pool per function version (`$LATEST` or a number).
    pools: Mutex<HashMap<(FunctionKey, String), Arc<Pool>>>,
    /// Reserved concurrency per function, shared by the pools of its versions.
    reservations: Mutex<HashMap<FunctionKey, Arc<Reservation>>>,
    /// Whether reservations are leased from a cluster's store (each node's share), or all this node's.
    clustered: std::sync::atomic::AtomicBool,
    /// Woken when an invocation waits for its function's reservation.
    demand: Arc<tokio::sync::Notify>,
    /// This node's place among a cluster's live nodes and their count, for provisioned concurrency.
    spread: Mutex<(usize, usize)>,
    /// The engine-wide concurrency budget in MB (`total_concurrency_mb`).
    budget: Arc<tokio::sync::Semaphore>,
    pub logs: LogStore,
    /// Per-minute counts of each function's invocations, for the console.
    stats: Mutex<HashMap<FunctionKey, Arc<crate::stats::FunctionStats>>>,
}

// === impl Engine ===

impl Engine {
    /// The engine, its runtimes' zygotes prepared (`start_zygotes` starts them).
    pub fn new(settings: EngineSettings, mut runtimes: Runtimes, data_dir: &Path, store: Store) -> Engine {
        runtimes.schedule(settings.batch_scheduling);
        runtimes.prepare_zygote(&data_dir.join("code"), &settings);
        Engine {
            logs: LogStore::new(settings.logs_per_function, settings.log_bytes_per_function),
            budget: Arc::new(tokio::sync::Semaphore::new(settings.total_concurrency_mb as usize)),
            settings,
            runtimes,
            code_root: data_dir.join("code"),
            store,
            pools: Mutex::new(HashMap::new()),
            reservations: Mutex::new(HashMap::new()),
            clustered: Default::default(),
            demand: Default::default(),
            spread: Mutex::new((0, 1)),
            stats: Mutex::default(),
        }
    }

    /// Starts the runtimes' zygotes now rather than at the first cold start.
    pub fn start_zygotes(&self) {
        self.runtimes.start_zygotes();
    }

    /// A function's per-minute counts (made on first use).
    pub fn function_stats(&self, key: &FunctionKey) -> Arc<crate::stats::FunctionStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.entry(key.clone()).or_default().clone()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Retires the pools of functions that were deleted or changed, and keeps provisioned versions warm (called
    /// when a snapshot is published).
    pub fn reconcile(self: &Arc<Self>, snapshot: &Snapshot) {
        self.retire_stale(snapshot);
        // A deleted function's counts go with it.
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| snapshot.functions.contains_key(key));
        // Reservations follow the functions (and go with them).
        let known: Vec<FunctionKey> =
            self.reservations.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for key in known {
            match snapshot.functions.get(&key) {
                Some(spec) => {
                    self.reservation(&spec.function);
                }
                None => {
                    self.reservations.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                }
            }
        }
        let mut provisioned: HashMap<(FunctionKey, String), usize> = HashMap::new();
        for spec in snapshot.functions.values() {
            for (label, count) in &spec.function.provisioned {
                let here = self.provisioned_here(*count as usize);
                if here > 0 {
                    provisioned.insert((spec.function.key.clone(), label.clone()), here);
                }
            }
        }
        // Versions no longer provisioned may scale down to zero again.
        for (key, pool) in self.pools.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if !provisioned.contains_key(key) {
                pool.provision(0);
            }
        }
        for ((key, label), count) in provisioned {
            let Some(spec) = snapshot.functions.get(&key).cloned() else { continue };
            let Some(version) = spec.runnable(&label) else { continue };
            let engine = self.clone();
            tokio::spawn(async move {
                match engine.pool(&spec, &version).await {
                    Ok(pool) => pool.provision(count),
                    Err(e) => tracing::warn!(error = ?e, "A provisioned version cannot be prepared."),
                }
            });
        }
    }

    /// The function's reservation, shared by its pools; made or changed to match the function's `reserved_mem`
    /// (a changed reservation starts anew: invocations running under the old one finish under it). On one node it
    /// is all this node's; a cluster node starts with no share and leases one (`shares`).
    fn reservation(&self, function: &crate::state::Function) -> Arc<Reservation> {
        let mut reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        let slot = reservations.entry(function.key.clone()).or_default().clone();
        let clustered = self.clustered.load(Ordering::Relaxed);
        let unit = function.config.memory_mb;
        slot.set(function.reserved_mem, unit, |total| if clustered { 0 } else { total }, &self.demand);
        slot
    }

    /// Removes unpacked code no longer in `keep` and unused for `retention` (by its directory's time), except what a
    /// pool runs. Returns how many were removed.
    pub fn forget_unpacked_except(&self, keep: &std::collections::BTreeSet<String>, retention: Duration) -> usize {
        let running: std::collections::HashSet<String> = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|pool| pool.code_sha256().map(str::to_string))
            .collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.code_root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old =
                entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= retention));
            if keep.contains(&name) || running.contains(&name) || !old || !entry.path().is_dir() {
                continue;
            }
            if std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Collects code packages no function runs any more (replaced, deleted, or uploaded by a request that was
    /// refused), in the store and unpacked, once they are `retention` old, until `shutdown` turns true.
    pub async fn collect_code(
        self: Arc<Self>,
        snapshots: Arc<crate::snapshot::Snapshots>,
        retention: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = (retention / 2).clamp(Duration::from_secs(1), CODE_COLLECTION_INTERVAL);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let keep = snapshots.current().state.code_in_use();
            let before = crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            match self.store.forget_code_except(keep.clone(), before).await {
                Ok(n) if n > 0 => tracing::info!(packages = n, "Unused code packages removed from the store."),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "Unused code packages not collected."),
            }
            let engine = self.clone();
            let unpacked = tokio::task::spawn_blocking(move || engine.forget_unpacked_except(&keep, retention)).await;
            if let Ok(n) = unpacked
                && n > 0
            {
                tracing::info!(directories = n, "Unused unpacked code removed.");
            }
        }
    }

    /// Stops every instance (at exit): each pool is retired and dropped, and its instances with it.
    pub fn stop_all(&self) {
        let pools: Vec<Arc<Pool>> =
            self.pools.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, pool)| pool).collect();
        for pool in &pools {
            pool.retire();
        }
    }

    /// Reservations are leased per node from a cluster's store from now on.
    pub fn join_cluster(&self) {
        self.clustered.store(true, Ordering::Relaxed);
    }

    /// Woken when an invocation waits for its function's reservation.
    pub fn demand(&self) -> &Arc<tokio::sync::Notify> {
        &self.demand
    }

    /// The functions with a reservation, and theirs.
    pub fn reserved(&self) -> Vec<(FunctionKey, Arc<Reserved>)> {
        let reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        reservations.iter().filter_map(|(key, slot)| Some((key.clone(), slot.load()?))).collect()
    }

    /// This node's place among a cluster's `count` live nodes (`index`, from 0): provisioned concurrency is spread
    /// over them. Returns whether it changed.
    pub fn set_spread(&self, index: usize, count: usize) -> bool {
        let mut spread = self.spread.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *spread != (index, count.max(1));
        *spread = (index, count.max(1));
        changed
    }

    /// This node's part of `provisioned` instances: an even split over the live nodes, the first ones taking one
    /// more of what does not divide evenly.
    fn provisioned_here(&self, provisioned: usize) -> usize {
        let (index, count) = *self.spread.lock().unwrap_or_else(|p| p.into_inner());
        provisioned / count + usize::from(index < provisioned % count)
    }

    /// Every function's counts, with its instances now (over all its versions).
    pub fn all_stats(&self) -> Vec<(FunctionKey, Arc<crate::stats::FunctionStats>, InstanceCounts)> {
        let mut instances: HashMap<FunctionKey, InstanceCounts> = HashMap::new();
        for ((key, _), pool) in self.pools.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let counts = instances.entry(key.clone()).or_default();
            let idle = pool.warm();
            counts.idle += idle;
            counts.busy += pool.instances().saturating_sub(idle);
            counts.waiting += pool.waiting();
        }
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.iter().map(|(key, s)| (key.clone(), s.clone(), instances.get(key).copied().unwrap_or_default())).collect()
    }

    /// Warm instances of one version of a function.
    pub fn warm_instances(&self, key: &FunctionKey, label: &str) -> usize {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.get(&(key.clone(), label.to_string())).map_or(0, |p| p.warm())
    }

    fn retire_stale(&self, snapshot: &Snapshot) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|(key, label), pool| {
            let spec = snapshot.functions.get(key);
            let current = spec.and_then(|s| s.runnable(label)).is_some_and(|v| v.revision == pool.revision);
            if !current {
                pool.retire();
                if spec.is_none() {
                    self.logs.forget(key);
                }
            }
            current
        });
    }

    /// Runs one synchronous invocation of a function, at most `limit` long (the function's `Timeout` when
    /// shorter), and records its log. The invocation runs in the caller's task while the caller waits for it, and
    /// on a task of its own if the caller goes away: that does not cut it short.
    pub async fn invoke(
        self: &Arc<Self>,
        spec: &Arc<FunctionSpec>,
        qualifier: &str,
        event: Vec<u8>,
        request_id: String,
        limit: Option<Duration>,
    ) -> Invocation {
        let engine = self.clone();
        let spec = spec.clone();
        let qualifier = qualifier.to_string();
        let rid = request_id.clone();
        let run = Box::pin(async move { engine.run(&spec, &qualifier, &event, rid, limit).await });
        match (Detachable { run: Some(run) }).await {
            Ok(invocation) => invocation,
            Err(_) => {
                tracing::error!("An invocation panicked.");
                Invocation {
                    result: Err(FunctionError::new(status::INTERNAL, "InternalError")),
                    request_id,
                    duration: Duration::ZERO,
                    mem_bytes: 0,
                    log: Arc::from(""),
                }
            }
        }
    }

    async fn run(
        &self,
        spec: &Arc<FunctionSpec>,
        qualifier: &str,
        event: &[u8],
        request_id: String,
        limit: Option<Duration>,
    ) -> Invocation {
        let function = &spec.function;
        let span = tracing::debug_span!("invoke", function = %function.key, request_id = %request_id);
        let stats = self.function_stats(&function.key);
        let started = Instant::now();
        let start_ms = crate::clock::now_ms();
        let mut log = String::with_capacity(512);
        let _ = writeln!(log, "START RequestId:{request_id}");
        let version = spec.resolve(qualifier, random_fraction);
        let memory_mb = version.as_ref().map_or(function.config.memory_mb, |v| v.config.memory_mb);
        let (result, mem_bytes) = async {
            let Some(version) = version else {
                let e =
                    FunctionError::new(status::QUALIFIER_NOT_FOUND, format!("qualifier {qualifier} does not exist"));
                return (Err(e), 0);
            };
            if event.len() > self.settings.max_event_bytes {
                return (Err(FunctionError::new(status::REQUEST_TOO_LARGE, "RequestTooLarge")), 0);
            }
            let pool = match self.pool(spec, &version).await {
                Ok(pool) => pool,
                Err(e) => return (Err(e), 0),
            };
            let ran = pool.invoke(event, &request_id, &mut log, limit, &stats).await;
            if let Some(init) = ran.cold_start {
                tracing::debug!(init_ms = init.as_millis() as u64, "Started a new instance.");
                stats.cold_start(init.as_secs_f64());
            }
            (ran.result, ran.mem_bytes)
        }
        .instrument(span)
        .await;
        let duration = started.elapsed();
        let (status, ret_msg) = match &result {
            Ok(json) => {
                // Only the start of the return value is logged and kept: no copy of the rest.
                let text = String::from_utf8_lossy(json);
                let shown = truncate(&text, RET_MSG_IN_LOG_BYTES).to_string();
                instance::append_bounded(
                    &mut log,
                    &format!("Response RequestId:{request_id} RetMsg:{shown}\n"),
                    self.settings.max_log_bytes,
                );
                (status::SUCCESS, shown)
            }
            Err(e) => {
                instance::append_bounded(
                    &mut log,
                    &format!("ERROR RequestId:{request_id} Result:{}\n", e.message),
                    self.settings.max_log_bytes,
                );
                (e.status, e.to_ret_msg(&request_id))
            }
        };
        let duration_ms = duration.as_secs_f64() * 1000.0;
        let _ = write!(
            log,
            "END RequestId:{request_id}\nReport RequestId:{request_id} Duration:{}ms Memory:{}MB MemUsage:{}MB\n",
            duration_ms.ceil() as u64,
            memory_mb,
            Megabytes(mem_bytes),
        );
        stats.finish(duration_ms, status);
        let log: Arc<str> = Arc::from(log);
        self.logs.record(
            &function.key,
            LogRecord {
                request_id: request_id.clone(),
                qualifier: qualifier.to_string(),
                start_ms,
                duration_ms,
                mem_bytes,
                status,
                ret_msg: truncate(&ret_msg, RET_MSG_IN_LOG_BYTES).to_string(),
                log: log.clone(),
                node: Arc::from(""),
            },
        );
        Invocation { request_id, result, duration, mem_bytes, log }
    }

    /// The pool of one version of the function (its current revision for `$LATEST`), created (and its code
    /// unpacked) on first use.
    async fn pool(&self, spec: &Arc<FunctionSpec>, version: &Resolved) -> Result<Arc<Pool>, FunctionError> {
        let function = &spec.function;
        let key = (function.key.clone(), version.label.clone());
        {
            let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pool) = pools.get(&key).filter(|p| p.revision == version.revision) {
                return Ok(pool.clone());
            }
        }
        let code_dir = self.code_dir(&version.code.sha256).await?;
        let launch = self
            .runtimes
            .launch(spec, version, &code_dir, &self.settings)
            .map_err(|why| FunctionError::new(status::CONTAINER_INIT, why))?;
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        // Another caller may have created it meanwhile; the newest revision wins, and a retired revision is
        // never brought back.
        if let Some(existing) = pools.get(&key) {
            if existing.revision == version.revision {
                return Ok(existing.clone());
            }
            if existing.revision > version.revision {
                return Err(FunctionError::new(status::FUNCTION_NOT_FOUND, "the function changed during the call"));
            }
            existing.retire();
        }
        let pool_spec = PoolSpec {
            revision: version.revision,
            launch,
            timeout: Duration::from_secs(u64::from(version.config.timeout_s)),
            memory_mb: version.config.memory_mb,
            capacity: self.settings.max_instances_per_function,
            context_tail: runtimes::context_tail(spec, version),
        };
        let reservation = self.reservation(function);
        let pool = Pool::new(pool_spec, self.settings.clone(), self.budget.clone(), reservation);
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    async fn code_dir(&self, sha256: &str) -> Result<PathBuf, FunctionError> {
        let dir = self.code_root.join(sha256);
        if dir.is_dir() {
            return Ok(dir);
        }
        let data = self
            .store
            .code(sha256)
            .await
            .map_err(|e| e.to_string())
            .and_then(|data| data.ok_or_else(|| CodeError::Missing(sha256.to_string()).to_string()));
        let root = self.code_root.clone();
        let sha = sha256.to_string();
        let limit = self.settings.max_code_unpacked_bytes;
        let unpacked = match data {
            Ok(data) => {
                tokio::task::spawn_blocking(move || code::unpack(&root, &sha, &data, limit).map_err(|e| e.to_string()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
            }
            Err(why) => Err(why),
        };
        unpacked.map_err(|why| {
            tracing::error!(error = %why, "Cannot unpack function code.");
            FunctionError::new(status::INTERNAL, "the function's code could not be prepared")
        })
    }
}

/// A uniformly random number in [0, 1), for weighted alias routing.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::Megabytes;

    #[test]
    fn megabytes_read_as_floating_point_formatting_would() {
        let samples = (0..200_000u64)
            .chain((0..2_000).map(|i| i * 8192)) // halfway cases: rounded to even
            .chain((1..2_000).map(|i| i * 7_919_113))
            .chain([u64::from(u32::MAX), 1 << 40, 3 << 38]);
        for bytes in samples {
            assert_eq!(Megabytes(bytes).to_string(), format!("{:.6}", bytes as f64 / (1024.0 * 1024.0)), "{bytes}");
        }
    }
}
