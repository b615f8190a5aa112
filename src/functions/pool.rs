//! The instances of one function revision, as a small synchronous state machine behind one short lock:
//! warm instances are reused (newest first), new ones start on demand up to the function's limit, callers past
//! it wait in a bounded queue for a bounded time, and instances idle for longer than the idle timeout are
//! stopped, down to zero.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::instance::{Instance, InvokeFailure, Launch, Reply, StartError, Tally, append_bounded};
use super::reserve::{Reservation, ReservedPermit};
use super::{EngineSettings, FunctionError, status};
use crate::snapshot::Revision;

pub struct Pool {
    pub revision: Revision,
    launch: Launch,
    timeout: Duration,
    memory_mb: u32,
    /// The context fields every invocation shares, as JSON members (`"memory_limit_in_mb":128,…`).
    context_tail: String,
    settings: EngineSettings,
    /// One permit per instance the function may run at once.
    capacity: Arc<Semaphore>,
    limit: usize,
    /// The engine-wide concurrency budget, in MB of function memory (shared by every pool).
    budget: Arc<Semaphore>,
    /// The function's reserved concurrency (MB and its semaphore), shared by the pools of all its versions.
    reservation: Arc<Reservation>,
    waiting: AtomicUsize,
    idle: Mutex<Shelf<Instance>>,
    retired: AtomicBool,
    /// Wakes the reaper: an instance went idle that expires before the reaper would look again, the pool was
    /// retired, or the provisioned count changed.
    wake: Notify,
    /// When the reaper looks again on its own, in microseconds since `epoch` (`u64::MAX`: not before it is woken).
    reaper_due: AtomicU64,
    epoch: Instant,
    /// Instances kept warm whatever the idle timeout (provisioned concurrency).
    min_warm: AtomicUsize,
    /// A provisioning task is running.
    provisioning: AtomicBool,
    /// One permit per instance that may be starting at once (the scale-out rate), of `start_slots`.
    starting: Semaphore,
    start_slots: usize,
    /// Instances alive now: idle, busy, or on their way to a caller.
    instances: Arc<AtomicUsize>,
    /// Moving averages of how long an invocation runs and how long a new instance takes to be ready.
    invoke_time: Average,
    start_time: Average,
}

/// What an admitted invocation holds while it runs: a place in the pool, its memory of the function's reservation
/// (if any) and of the engine's budget.
struct Admission {
    _instance: OwnedSemaphorePermit,
    _reserved: Option<ReservedPermit>,
    _budget: OwnedSemaphorePermit,
}

/// What a pool runs: one revision of a function.
pub struct PoolSpec {
    pub revision: Revision,
    pub launch: Launch,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Instances it may run at once.
    pub capacity: usize,
    /// The context members every invocation shares (`runtimes::context_tail`).
    pub context_tail: String,
}

struct Idle<T> {
    instance: T,
    since: Instant,
}

/// What one invocation in the pool produced, before it is written to the log.
pub struct Ran {
    pub result: Result<Bytes, FunctionError>,
    pub mem_bytes: u64,
    /// The instance had to be started for this invocation (its init time, when it started).
    pub cold_start: Option<Duration>,
}

/// A moving average of durations (each new sample weighs 1/8), kept in microseconds; zero until the first sample.
#[derive(Default)]
struct Average(AtomicU64);

impl Average {
    fn record(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 { sample } else { old - old / 8 + sample / 8 })
        });
    }

    fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// Clears the provisioning flag when the task ends, however it ends.
struct Provisioning<'a>(&'a AtomicBool);

impl Drop for Provisioning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Idle instances, most recently used last, and the callers waiting for one, longest waiting first: under one lock,
/// so that a released instance is either handed to a caller or kept idle, and no caller misses it. Its decisions
/// (which instance a caller takes, who gets a released one, which idle ones are stopped) take the time as an
/// argument, so that they are tested without processes or clocks (`pool/tests.rs`).
struct Shelf<T> {
    ready: Vec<Idle<T>>,
    waiters: VecDeque<oneshot::Sender<T>>,
}

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Shelf { ready: Vec::new(), waiters: VecDeque::new() }
    }
}

impl<T> Shelf<T> {
    /// The most recently used idle instance that is `alive` (those that are not are dropped), or else a place in
    /// line for the next one released.
    fn take_or_queue(&mut self, mut alive: impl FnMut(&mut T) -> bool) -> Result<T, oneshot::Receiver<T>> {
        while let Some(mut entry) = self.ready.pop() {
            if alive(&mut entry.instance) {
                return Ok(entry.instance);
            }
        }
        // Places given up (their callers started an instance or went away) leave the line here or at a release.
        while self.waiters.front().is_some_and(|w| w.is_closed()) {
            self.waiters.pop_front();
        }
        let (handover, receiver) = oneshot::channel();
        self.waiters.push_back(handover);
        Err(receiver)
    }

    /// A released instance goes to the caller waiting longest (a caller served before and back already queues
    /// behind the others); with none waiting, it is kept idle from `now`.
    fn release(&mut self, instance: T, now: Instant) {
        let mut instance = instance;
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(instance) {
                Ok(()) => return,
                Err(back) => instance = back,
            }
        }
        self.ready.push(Idle { instance, since: now });
    }

    /// Stops (drops) the instances idle for `timeout` at `now`, oldest first, keeping the `keep` most recently used
    /// whatever their idle time (provisioned concurrency); returns how many were stopped and when the next one will
    /// be due.
    fn reap(&mut self, now: Instant, timeout: Duration, keep: usize) -> (usize, Option<Instant>) {
        let removable = self.ready.len().saturating_sub(keep);
        // Oldest first: the list is in the order instances went idle.
        let expired =
            self.ready.iter().take(removable).take_while(|entry| now.duration_since(entry.since) >= timeout).count();
        self.ready.drain(..expired);
        let next = (self.ready.len() > keep).then(|| self.ready.first().map(|entry| entry.since + timeout)).flatten();
        (expired, next)
    }
}

/// The pool's load, as `patience` weighs it.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// Instances alive (idle, busy, or on their way to a caller).
    instances: usize,
    /// Instances others are starting now.
    starting: usize,
    /// The moving averages of an instance's start and of an invocation (zero until measured).
    start_time: Duration,
    invoke_time: Duration,
    /// The machine's processors are saturated (`scheduling::Scheduling::saturated`).
    saturated: bool,
}

/// The longest waits `patience` gives.
#[derive(Clone, Copy, Debug)]
struct Waits {
    /// For invocations shorter than a start (`--warm-wait-limit`).
    warm: Duration,
    /// For invocations shorter than this, while the processors are saturated (`--saturated-wait-limit`).
    saturated: Duration,
}

/// How long a caller that found no idle instance waits for a running one to be released before it starts one:
/// * not at all below `eager` instances (counting those starting), nor when starts are not measured yet;
/// * while the processors are saturated and invocations are shorter than `waits.saturated`, that long: an
///   instance more would add no processor time, only a start's work and one more process to share the caches
///   with, and under contention a burst of slow releases would otherwise start instance after instance;
/// * otherwise not at all when starts are no longer than invocations, and about one start time (at most
///   `waits.warm`) when they are.
fn patience(load: Load, eager: usize, waits: Waits) -> Duration {
    let Load { instances, starting, start_time, invoke_time, saturated } = load;
    if instances + starting < eager || start_time.is_zero() {
        return Duration::ZERO;
    }
    if saturated && invoke_time < waits.saturated {
        return waits.saturated;
    }
    if invoke_time >= start_time {
        return Duration::ZERO;
    }
    start_time.min(waits.warm)
}

/// Why an invocation is refused before it waits: the function may run no instance (a limit of 0, or a
/// reservation smaller than one instance's memory), or its queue is full.
fn refusal(
    limit: usize,
    reserved_mb: Option<u32>,
    memory_mb: u32,
    queued: usize,
    max_queue: usize,
) -> Option<&'static str> {
    if limit == 0 || reserved_mb.is_some_and(|total| total < memory_mb) {
        return Some("the function's reserved concurrency does not fit one instance");
    }
    (queued >= max_queue).then_some("the function's concurrency limit is reached and its queue is full")
}

/// A caller's place in line for a released instance (`Pool::instance`). Given up, it passes an instance handed to it
/// meanwhile on to the next caller.
struct Ticket<'a> {
    pool: &'a Pool,
    receiver: oneshot::Receiver<Instance>,
}

impl Ticket<'_> {
    /// Leaves the line, with the instance handed over just before if there was one.
    fn leave(mut self) -> Option<Instance> {
        self.receiver.close();
        self.receiver.try_recv().ok()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.receiver.close();
        if let Ok(instance) = self.receiver.try_recv() {
            self.pool.put_idle(instance);
        }
    }
}

/// Counts a caller as waiting for as long as it exists, even when the caller goes away mid-wait.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Pool ===

impl Pool {
    pub fn new(
        spec: PoolSpec,
        settings: EngineSettings,
        budget: Arc<Semaphore>,
        reservation: Arc<Reservation>,
    ) -> Arc<Pool> {
        let PoolSpec { revision, launch, timeout, memory_mb, capacity, context_tail } = spec;
        let settings_starts = settings.max_starting_per_function.max(1);
        let pool = Arc::new(Pool {
            revision,
            launch,
            timeout,
            memory_mb,
            context_tail,
            capacity: Arc::new(Semaphore::new(capacity)),
            limit: capacity,
            settings,
            budget,
            reservation,
            waiting: AtomicUsize::new(0),
            idle: Mutex::new(Shelf::default()),
            retired: AtomicBool::new(false),
            wake: Notify::new(),
            reaper_due: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            min_warm: AtomicUsize::new(0),
            provisioning: AtomicBool::new(false),
            starting: Semaphore::new(settings_starts),
            start_slots: settings_starts,
            instances: Arc::new(AtomicUsize::new(0)),
            invoke_time: Average::default(),
            start_time: Average::default(),
        });
        tokio::spawn(reap(pool.clone()));
        pool
    }

    /// No new invocations come here; idle instances are stopped now, busy ones when they finish.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).ready.clear();
        self.wake.notify_one();
    }

    /// The code package the pool runs (its unpacked directory's name).
    pub fn code_sha256(&self) -> Option<&str> {
        self.launch.code_dir.file_name().and_then(|n| n.to_str())
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Runs one invocation; `limit` shortens the function's timeout for this call. `stats` counts it as a
    /// concurrent execution while it runs on an instance.
    pub async fn invoke(
        &self,
        event: &[u8],
        request_id: &str,
        log: &mut String,
        limit: Option<Duration>,
        stats: &crate::stats::FunctionStats,
    ) -> Ran {
        let fail = |result: FunctionError| Ran { result: Err(result), mem_bytes: 0, cold_start: None };
        let _permits = match self.admit().await {
            Ok(permits) => permits,
            Err(e) => return fail(e),
        };
        let (mut instance, cold_start) = match self.instance().await {
            Ok(pair) => pair,
            Err(e) => return fail(start_error(e, log, self.settings.max_log_bytes)),
        };
        tracing::trace!(instance = instance.id, cold = cold_start.is_some(), "Running on instance.");
        if let Some(init) = cold_start {
            let init_log = std::mem::take(&mut instance.init_log);
            append_bounded(log, &init_log, self.settings.max_log_bytes);
            let line = format!(
                "Init Report RequestId:{request_id} InitDuration:{}ms Memory:{}MB\n",
                init.as_millis(),
                self.memory_mb
            );
            append_bounded(log, &line, self.settings.max_log_bytes);
        }

        // The context first: all of it but the request id is the same for every invocation of the pool, which lets
        // a runtime recognise it and decode only the event (docs/function-protocol.md).
        let parts: [&[u8]; 7] = [
            b"{\"context\":{\"request_id\":\"",
            request_id.as_bytes(),
            b"\",",
            self.context_tail.as_bytes(),
            b"},\"event\":",
            event,
            b"}",
        ];
        let timeout = limit.map_or(self.timeout, |l| l.min(self.timeout));
        let started = Instant::now();
        // Counted as a concurrent execution only while it runs on its instance (not while it waits for one).
        let execution = stats.start();
        let reply = instance.invoke(&parts, timeout, log, self.settings.max_log_bytes).await;
        drop(execution);
        self.invoke_time.record(started.elapsed());
        let (result, mem_bytes) = match reply {
            Ok(Reply::Returned { json, mem_bytes }) if json.len() > self.settings.max_response_bytes => {
                let e = FunctionError::new(
                    status::RESPONSE_TOO_LARGE,
                    "The size of response exceeds the upper limit (6MB)",
                );
                (Err(e), mem_bytes)
            }
            Ok(Reply::Returned { json, mem_bytes }) => (Ok(json), mem_bytes),
            Ok(Reply::Raised { error, mem_bytes }) => {
                // The runtime reports the traceback; the log shows it, as the platform's does.
                if let Some(trace) = error.get("stackTrace").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
                    append_bounded(log, trace, self.settings.max_log_bytes);
                    if !trace.ends_with('\n') {
                        log.push('\n');
                    }
                }
                (Err(FunctionError::from_runtime(error, status::USER_CODE_EXCEPTION)), mem_bytes)
            }
            Err(failure) => {
                // The instance is dropped (its process group killed); the pool starts a fresh one next time.
                let e = match failure {
                    InvokeFailure::TimedOut => FunctionError::new(
                        status::TIMEOUT,
                        format!("time out: the invocation did not finish within {} s", timeout.as_secs()),
                    ),
                    InvokeFailure::Exited => {
                        FunctionError::new(status::PROCESS_EXITED, "User preocess exit when running")
                    }
                    InvokeFailure::OutOfMemory => FunctionError::new(
                        status::MEMORY,
                        format!("MemoryLimitReached: the function used more than its {} MB", self.memory_mb),
                    ),
                    InvokeFailure::Protocol(why) => FunctionError::new(
                        status::PROCESS_EXITED,
                        format!("the runtime broke the function protocol: {why}"),
                    ),
                };
                return Ran { result: Err(e), mem_bytes: 0, cold_start };
            }
        };
        self.put_idle(instance);
        Ran { result, mem_bytes, cold_start }
    }

    /// An instance for one invocation, and its start time when it had to be started. Scale-out policy:
    /// * an idle instance is taken first (the most recently used); when none is, the caller joins a line, and each
    ///   instance released goes to the caller waiting longest (a caller served just before waits its turn);
    /// * up to `eager_instances_per_function` instances (a few per processor), a caller that finds none idle
    ///   starts one: that many let fnlb and the instances overlap their work on every processor;
    /// * past that, when the function's invocations are shorter than its instances take to start, a caller first
    ///   waits for a running instance to be released, for about one start time (at most `warm_wait_limit`): a
    ///   warm instance that frees up sooner serves it sooner, and under a burst of short invocations the function
    ///   keeps about as many instances as the load needs rather than one per caller, which on a small machine
    ///   means fewer processes competing for its cores and their caches;
    /// * at most `max_starting_per_function` instances start at once (Tencent limits a function's scale-out rate
    ///   too); a caller waiting for its turn still takes a released instance if one comes first, and looks again
    ///   whether to wait when its turn comes (others may have started enough meanwhile).
    async fn instance(&self) -> Result<(Instance, Option<Duration>), StartError> {
        let mut ticket = match self.take_idle_or_queue() {
            Ok(instance) => return Ok((instance, None)),
            Err(ticket) => ticket,
        };
        let arrived = Instant::now();
        loop {
            let start_after = arrived + self.patience(0);
            let handed = if Instant::now() < start_after {
                match tokio::time::timeout_at(start_after, &mut ticket.receiver).await {
                    Ok(handed) => handed,
                    Err(_) => continue,
                }
            } else {
                tokio::select! {
                    biased;
                    handed = &mut ticket.receiver => handed,
                    permit = self.starting.acquire() => {
                        let _permit = permit.expect("the start semaphore is never closed");
                        if Instant::now() < arrived + self.patience(1) {
                            continue;
                        }
                        if let Some(instance) = ticket.leave() {
                            return Ok((instance, None));
                        }
                        let instance = self.start_instance().await?;
                        self.start_time.record(instance.init_duration);
                        let init = instance.init_duration;
                        return Ok((instance, Some(init)));
                    }
                }
            };
            match handed {
                Ok(instance) => return Ok((instance, None)),
                // Not sent (the line is never cleared while callers wait): a new place, should it ever happen.
                Err(_) => match self.take_idle_or_queue() {
                    Ok(instance) => return Ok((instance, None)),
                    Err(again) => ticket = again,
                },
            }
        }
    }

    /// How long a caller waits for a running instance to be released before it starts one (`instance`); `mine` is
    /// the number of start permits the caller holds itself (not counted as others' starts).
    fn patience(&self, mine: usize) -> Duration {
        let load = Load {
            instances: self.instances.load(Ordering::Relaxed),
            starting: (self.start_slots - self.starting.available_permits()).saturating_sub(mine),
            start_time: self.start_time.get(),
            invoke_time: self.invoke_time.get(),
            saturated: self.launch.scheduling.saturated(),
        };
        let waits = Waits { warm: self.settings.warm_wait_limit, saturated: self.settings.saturated_wait_limit };
        patience(load, self.settings.eager_instances_per_function, waits)
    }

    /// Starts a new instance: forked from its runtime's zygote when the runtime allows (the zygote is started again
    /// if it died), otherwise as a process of its own.
    async fn start_instance(&self) -> Result<Instance, StartError> {
        let mut instance = self.launch_instance().await?;
        instance.tally = Some(Tally::new(&self.instances));
        Ok(instance)
    }

    async fn launch_instance(&self) -> Result<Instance, StartError> {
        let next_id = crate::ids::next_instance_id;
        if let Some(zygotes) = &self.launch.zygote {
            // A zygote that died since it was last used is replaced, once, before the instance is started directly.
            for _ in 0..2 {
                let zygote = match zygotes.running().await {
                    Ok(zygote) => zygote,
                    Err(e) => {
                        tracing::warn!(error = ?e, "The zygote could not start; starting the instance directly.");
                        break;
                    }
                };
                match zygote.instance(next_id(), &self.launch).await {
                    Err(_) if !zygote.is_alive() => continue,
                    forked => return forked,
                }
            }
        }
        Instance::start(next_id(), &self.launch).await
    }

    /// Waits for room: a place in the function's limit, its reservation and the engine's budget, within the queue
    /// timeout.
    async fn admit(&self) -> Result<Admission, FunctionError> {
        let queued = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        // The function's reservation, shared by all its versions (read now: it may have changed).
        let reservation = self.reservation.load();
        let reserved_mb = reservation.as_ref().map(|r| r.total_mb);
        let max_queue = self.settings.max_queue_per_function;
        if let Some(why) = refusal(self.limit, reserved_mb, self.memory_mb, queued, max_queue) {
            return Err(FunctionError::new(status::CONCURRENCY, why));
        }
        let deadline = Instant::now() + self.settings.queue_timeout;
        let too_long = || {
            FunctionError::new(status::CONCURRENCY, "the concurrency limit is reached; no instance became free in time")
        };
        let instance = tokio::time::timeout_at(deadline, self.capacity.clone().acquire_owned())
            .await
            .map_err(|_| too_long())?
            .map_err(|_| too_long())?;
        let reserved = match reservation {
            Some(reserved) => Some(reserved.acquire(self.memory_mb, deadline).await.ok_or_else(too_long)?),
            None => None,
        };
        let budget = tokio::time::timeout_at(deadline, self.budget.clone().acquire_many_owned(self.memory_mb))
            .await
            .map_err(|_| too_long())?
            .map_err(|_| too_long())?;
        Ok(Admission { _instance: instance, _reserved: reserved, _budget: budget })
    }

    /// The most recently used idle instance that is still alive, or else a place in line for the next one released.
    fn take_idle_or_queue(&self) -> Result<Instance, Ticket<'_>> {
        let mut shelf = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let alive = |instance: &mut Instance| {
            let alive = instance.is_alive();
            if !alive {
                tracing::debug!(instance = instance.id, "An idle instance had exited; it is replaced.");
            }
            alive
        };
        shelf.take_or_queue(alive).map_err(|receiver| Ticket { pool: self, receiver })
    }

    /// A healthy instance goes to the next caller (the one waiting longest, or the next to come), unless this revision
    /// was replaced meanwhile.
    fn put_idle(&self, instance: Instance) {
        if self.is_retired() {
            return;
        }
        let now = Instant::now();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).release(instance, now);
        // Under load the reaper already waits for an older idle instance, which expires first: no wake-up then.
        if self.reaper_due.load(Ordering::SeqCst) > self.micros(now + self.settings.idle_timeout) {
            self.wake.notify_one();
        }
    }

    /// An instant as microseconds since the pool was made.
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Stops instances idle for the idle timeout; returns when the next one will be due.
    /// Provisioned instances (`min_warm`) are never stopped for being idle.
    fn reap_expired(&self, now: Instant) -> Option<Instant> {
        let mut shelf = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, next) = shelf.reap(now, self.settings.idle_timeout, self.min_warm.load(Ordering::Relaxed));
        if stopped > 0 {
            tracing::debug!(stopped, "Stopped idle instances.");
        }
        next
    }

    /// Keeps at least `count` instances warm (provisioned concurrency): starts the missing ones in the background.
    pub fn provision(self: &Arc<Self>, count: usize) {
        self.min_warm.store(count, Ordering::Relaxed);
        self.wake.notify_one();
        // One provisioning task at a time: it works towards whatever `min_warm` says when it looks.
        if count == 0 || self.provisioning.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let _done = Provisioning(&pool.provisioning);
            // Counted busy or idle: an instance handed to a caller as soon as it is ready still counts.
            let missing = || pool.instances() < pool.min_warm.load(Ordering::Relaxed);
            while !pool.is_retired() && missing() {
                match pool.start_instance().await {
                    Ok(instance) => pool.put_idle(instance),
                    Err(e) => {
                        tracing::warn!(error = ?e, "A provisioned instance could not start.");
                        return;
                    }
                }
            }
        });
    }

    /// Callers waiting for an instance now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Instances alive now: idle, busy, or handed to a caller.
    pub fn instances(&self) -> usize {
        self.instances.load(Ordering::Relaxed)
    }

    /// Warm instances now (provisioned concurrency reports them).
    pub fn warm(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).ready.len()
    }
}

/// The reaper of one pool: sleeps until the oldest idle instance is due, or until woken.
async fn reap(pool: Arc<Pool>) {
    loop {
        if pool.is_retired() {
            return;
        }
        let woken = pool.wake.notified();
        // While it looks, any instance going idle wakes it again (a stored permit): it may have looked too early.
        pool.reaper_due.store(u64::MAX, Ordering::SeqCst);
        let now = Instant::now();
        let due = pool.reap_expired(now);
        pool.reaper_due.store(due.map_or(u64::MAX, |due| pool.micros(due)), Ordering::SeqCst);
        match due {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

fn start_error(e: StartError, log: &mut String, limit: usize) -> FunctionError {
    match e {
        StartError::Init { error, log: init_log } => {
            append_bounded(log, &init_log, limit);
            if let Some(trace) = error.get("stackTrace").and_then(|t| t.as_str()) {
                append_bounded(log, trace, limit);
                if !trace.ends_with('\n') {
                    log.push('\n');
                }
            }
            FunctionError::from_runtime(error, status::HANDLER_NOT_FOUND)
        }
        StartError::Spawn(e) => {
            FunctionError::new(status::CONTAINER_INIT, format!("the runtime could not be started: {e}"))
        }
        StartError::Exited { log: init_log } => {
            append_bounded(log, &init_log, limit);
            FunctionError::new(status::CONTAINER_INIT, "the runtime exited before it was ready")
        }
        StartError::OutOfMemory { log: init_log } => {
            append_bounded(log, &init_log, limit);
            FunctionError::new(status::MEMORY, "MemoryLimitReached: the function ran out of memory while it started")
        }
        StartError::TimedOut { log: init_log } => {
            append_bounded(log, &init_log, limit);
            FunctionError::new(status::INIT_TIMEOUT, "the runtime did not become ready within the init timeout")
        }
    }
}

#[cfg(test)]
mod tests;
