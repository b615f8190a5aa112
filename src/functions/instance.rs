//! One function instance: a runtime bootstrap in its own process group, and the channel to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

use super::limits::{AtExec, Cgroups, InstanceGroup, InstanceLimits, apply_at_exec};
use super::network::FunctionNetwork;
use super::protocol::{self, Frame, FrameError};
use super::sandbox::{self, Confinement, SCRATCH_BYTES, Sandbox};
use super::scheduling::Scheduling;

/// How to start an instance of one function revision.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The interpreter and its arguments, with paths as the instance sees them.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub sandbox: Sandbox,
    /// The function's unpacked code and the runtime bootstraps, on the host.
    pub code_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// Where instance channel sockets are made, on the host (a private directory).
    pub socket_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub init_timeout: Duration,
    /// The most raw stdout/stderr output (outside the runtime's own log frames) kept between two reads.
    pub stray_output_limit: usize,
    /// The runtime speaks the SCF Runtime API over HTTP (custom runtimes), which fnlb translates.
    pub runtime_api: bool,
    /// Memory and process limits (cgroups), and open files.
    pub limits: Arc<Cgroups>,
    pub memory_mb: u32,
    pub max_processes: u64,
    pub max_open_files: u64,
    /// The memory that buys one processor (`limits::InstanceLimits`).
    pub mb_per_cpu: u32,
    /// The function's own user (with a sandbox, when fnlb is root).
    pub uid: Option<u32>,
    /// The functions' network namespace, joined before `exec`.
    pub network: Option<Arc<FunctionNetwork>>,
    /// The system-call filter's program: on the host, and as the instance sees it.
    pub seccomp_filter: (PathBuf, PathBuf),
    /// The zygote whose spares take on this function's instances (Python's own forks, or the Node.js spares its
    /// keepers start; where the host allows them).
    pub zygote: Option<Arc<super::runtimes::ZygoteSlot>>,
    /// Which of the zygote's spares an instance is taken from.
    pub spare: SpareKind,
    /// Whether the instance starts under `SCHED_BATCH` (`scheduling.rs`).
    pub scheduling: Arc<Scheduling>,
    /// Without a sandbox, each instance gets a private scratch directory under this one (its `HOME` and
    /// `TMPDIR`); a sandbox gives it a private `/tmp` instead.
    pub scratch_root: Option<PathBuf>,
}

// === impl Launch ===

impl Launch {
    /// What each instance may use.
    pub fn instance_limits(&self) -> InstanceLimits {
        InstanceLimits { memory_mb: self.memory_mb, max_processes: self.max_processes, mb_per_cpu: self.mb_per_cpu }
    }
}

/// The spares a zygote keeps, one kind per runtime (docs/function-protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpareKind {
    /// A fork of the Python zygote itself.
    Python,
    /// A Node.js interpreter started by a keeper the zygote forks: Node.js cannot mount, so the keeper binds the
    /// function's package for it when it takes on a function.
    Node,
}

/// How a zygote's keepers start Node.js spares: the interpreter, its arguments and environment (paths as the zygote's
/// sandbox sees them), and how many spares to keep.
#[derive(Clone, Debug)]
pub struct NodeSpares {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub count: usize,
}

/// An error the runtime reported while loading the function (`INIT_ERROR`), or the start failing.
#[derive(Debug)]
pub enum StartError {
    /// The runtime could not load the handler: its JSON error (statusCode 437 and the error).
    Init {
        error: serde_json::Value,
        log: String,
    },
    Spawn(std::io::Error),
    /// The process exited before it was ready.
    Exited {
        log: String,
    },
    /// It was killed for going past its memory limit before it was ready.
    OutOfMemory {
        log: String,
    },
    TimedOut {
        log: String,
    },
}

/// How an invocation ended, when it did not end with a result.
#[derive(Debug)]
pub enum InvokeFailure {
    TimedOut,
    /// The process exited or closed its channel while running the invocation.
    Exited,
    /// The kernel killed it for going past its memory limit.
    OutOfMemory,
    Protocol(String),
}

/// What the runtime answered.
#[derive(Debug)]
pub enum Reply {
    /// The return value as JSON text, and the instance's peak memory in bytes.
    Returned { json: Bytes, mem_bytes: u64 },
    /// The runtime's error object (`statusCode`, `errorMessage`, `stackTrace`, …).
    Raised { error: serde_json::Value, mem_bytes: u64 },
}

pub struct Instance {
    pub id: u64,
    process: Process,
    pgid: Option<i32>,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    stray: Arc<Mutex<String>>,
    /// Dropped after the process group is killed (field order): kills what is left and removes the cgroup.
    group: Option<InstanceGroup>,
    _scratch: Scratch,
    /// Output written while the instance started, reported with its first invocation.
    pub init_log: String,
    /// How long the instance took to become ready.
    pub init_duration: Duration,
    /// The channel does not end when the process does (a custom runtime's, held by the Runtime API server): its
    /// exit must be watched for.
    detached_channel: bool,
    /// Counts the instance among its pool's for as long as it lives (`Pool::instance`).
    pub tally: Option<Tally>,
    /// A Node.js spare's keeper (its pid and start time), which it needs to take on a function.
    keeper: Option<(rustix::process::Pid, u64)>,
}

/// One instance counted in a shared count until it is dropped.
pub struct Tally(Arc<AtomicUsize>);

impl Tally {
    pub fn new(count: &Arc<AtomicUsize>) -> Tally {
        count.fetch_add(1, Ordering::Relaxed);
        Tally(count.clone())
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process behind an instance: fnlb's own child, or a child a zygote forked (not fnlb's to wait for).
enum Process {
    Child(Child),
    /// A zygote's child: its pid and start time (pids are reused once the zygote's kernel-reaped child is gone).
    Forked(rustix::process::Pid, u64),
}

impl Process {
    /// Still this very process (for a forked one: the pid has not been given to another since).
    fn is_running(&self) -> bool {
        match self {
            Process::Child(_) => true,
            Process::Forked(pid, started) => start_time(*pid) == Some(*started),
        }
    }
}

/// A runtime process started by fnlb and connected to its channel, before the handshake.
struct Spawned {
    child: Child,
    pgid: Option<i32>,
    stray: Arc<Mutex<String>>,
    group: Option<InstanceGroup>,
    scratch: Scratch,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The runtime process itself (in a sandbox, a descendant of `child`).
    runtime_pid: Option<rustix::process::Pid>,
}

/// A runtime's zygote: a pre-initialised template process that forks instances of any function of the runtime
/// (docs/function-protocol.md). Its children wait, connected and in cgroups of their own, until `START` tells one
/// which function it is.
pub struct Zygote {
    /// Kept for `kill_on_drop`.
    _child: Child,
    pgid: Option<i32>,
    runtime_pid: Option<rustix::process::Pid>,
    /// The zygote's channel; one fork request at a time.
    channel: tokio::sync::Mutex<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
    /// Where the zygote's children connect: (host directory, the same directory as the instance sees it).
    dir: (PathBuf, PathBuf),
    _group: Option<InstanceGroup>,
    /// How the zygote was started (the limits its children wait under, the code root).
    launch: Launch,
    /// How its keepers start Node.js spares, where the host allows them.
    node: Option<NodeSpares>,
    /// Instances made ahead of time, waiting for `START`: Python's and Node.js's.
    python_spares: Spares,
    node_spares: Spares,
    _dir: DirGuard,
}

/// One kind of a zygote's spares.
#[derive(Default)]
struct Spares {
    ready: Mutex<Vec<Instance>>,
    /// Spares being made now.
    making: AtomicUsize,
    /// Callers waiting for one of those (`Zygote::take_spare`).
    waiting: AtomicUsize,
    /// Tells them that one was made, or failed.
    made: tokio::sync::Notify,
}

/// The longest a Node.js cold start waits for a spare being made rather than start an interpreter of its own (the
/// spare, already on its way, is ready sooner than an interpreter started now would be).
const NODE_SPARE_WAIT: Duration = Duration::from_secs(1);

/// What a zygote is asked to start a Node.js spare with (`SPARE`, docs/function-protocol.md).
#[derive(serde::Serialize)]
struct SpareRequest<'a> {
    /// The socket the spare connects to, as the zygote's sandbox sees it.
    socket: &'a str,
    argv: Vec<&'a str>,
    env: Vec<(&'a str, &'a str)>,
}

/// Instances a zygote keeps forked ahead of time: a burst of cold starts takes them all before it waits for a fork.
pub const ZYGOTE_SPARES: usize = 2;
/// The room a zygote's environment leaves for a function's (SCF allows 4 KB of variables; the SCF ones and the
/// runtime's come on top).
const ENVIRONMENT_ROOM_BYTES: usize = 32 * 1024;
/// The memory a zygote (and a spare, until it takes on a function) may use.
pub const ZYGOTE_MEMORY_MB: u32 = 256;

/// What a forked instance is told with `START` to take on (docs/function-protocol.md).
#[derive(serde::Serialize)]
struct Start<'a> {
    /// The code package's directory name, under the zygote's code root.
    code: &'a str,
    env: &'a [(String, String)],
    /// The function's user (when fnlb runs as root).
    uid: Option<u32>,
}

// === impl Instance ===

impl Instance {
    /// Starts an instance as fnlb's own child.
    pub async fn start(id: u64, launch: &Launch) -> Result<Instance, StartError> {
        let started = std::time::Instant::now();
        let socket = SocketFile(launch.socket_dir.join(socket_name(id)));
        let listener = listen(&socket.0).map_err(StartError::Spawn)?;
        let inside = if launch.sandbox.is_isolated() { PathBuf::from(sandbox::CHANNEL) } else { socket.0.clone() };
        let deadline = tokio::time::Instant::now() + launch.init_timeout;
        let spawned = spawn(id, launch, &listener, &socket.0, &inside, &[], Role::Instance, deadline).await?;
        drop(socket);
        let mut instance = Instance {
            id,
            pgid: spawned.pgid,
            reader: spawned.reader,
            writer: spawned.writer,
            stray: spawned.stray,
            group: spawned.group,
            _scratch: spawned.scratch,
            process: Process::Child(spawned.child),
            init_log: String::new(),
            init_duration: Duration::ZERO,
            detached_channel: launch.runtime_api,
            tally: None,
            keeper: None,
        };
        instance.handshake(deadline).await?;
        instance.init_duration = started.elapsed();
        Ok(instance)
    }

    /// Reads the runtime's first frames: `LOG` lines, then `READY` (or `INIT_ERROR`).
    async fn handshake(&mut self, deadline: tokio::time::Instant) -> Result<(), StartError> {
        let mut log = String::new();
        loop {
            // A runtime that exits before it is ready ends the wait (its channel may outlive it: a custom
            // runtime's is held by fnlb's Runtime API server).
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, protocol::read_frame(&mut self.reader)) => Some(read),
                () = exited(&mut self.process) => None,
            };
            // Gone: its last frames (an INIT_ERROR written just before it exited) may still be in the channel.
            let read = match read {
                Some(read) => read,
                None => Ok(tokio::time::timeout(Duration::from_millis(200), protocol::read_frame(&mut self.reader))
                    .await
                    .unwrap_or(Err(protocol::FrameError::Closed))),
            };
            let frame = match read {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => {
                    // Give the process a moment to finish writing its last words before we read them.
                    self.wait_exit(Duration::from_millis(200)).await;
                    log.push_str(&take(&self.stray));
                    self.kill();
                    if self.group.as_ref().is_some_and(InstanceGroup::oom_killed) {
                        return Err(StartError::OutOfMemory { log });
                    }
                    return Err(StartError::Exited { log });
                }
                Err(_) => {
                    self.kill();
                    log.push_str(&take(&self.stray));
                    return Err(StartError::TimedOut { log });
                }
            };
            match frame.kind {
                protocol::READY => break,
                protocol::LOG => log.push_str(&String::from_utf8_lossy(&frame.payload)),
                protocol::INIT_ERROR => {
                    let error = serde_json::from_slice(&frame.payload).unwrap_or_else(|_| {
                        serde_json::json!({"statusCode": 437, "errorMessage": String::from_utf8_lossy(&frame.payload)})
                    });
                    self.kill();
                    log.push_str(&take(&self.stray));
                    return Err(StartError::Init { error, log });
                }
                other => {
                    self.kill();
                    log.push_str(&format!("runtime sent frame {other} before it was ready\n"));
                    return Err(StartError::Exited { log });
                }
            }
        }
        log.push_str(&take(&self.stray));
        self.init_log = log;
        Ok(())
    }

    /// Waits (at most `limit`) for the process to exit.
    async fn wait_exit(&mut self, limit: Duration) {
        match &mut self.process {
            Process::Child(child) => {
                let _ = tokio::time::timeout(limit, child.wait()).await;
            }
            Process::Forked(..) => {
                let end = tokio::time::Instant::now() + limit;
                while self.process.is_running() && tokio::time::Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Runs one invocation: writes the payload, collects log lines into `log`, waits for the result.
    pub async fn invoke(
        &mut self,
        payload: &[&[u8]],
        timeout: Duration,
        log: &mut String,
        log_limit: usize,
    ) -> Result<Reply, InvokeFailure> {
        let run = async {
            protocol::write_frame(&mut self.writer, protocol::INVOKE, payload).await.map_err(failure)?;
            loop {
                let Frame { kind, payload } = protocol::read_frame(&mut self.reader).await.map_err(failure)?;
                match kind {
                    protocol::LOG => append_bounded(log, &String::from_utf8_lossy(&payload), log_limit),
                    protocol::RESULT if payload.len() >= 8 => {
                        let mem_bytes = u64::from_be_bytes(payload[..8].try_into().expect("eight bytes"));
                        return Ok(Reply::Returned { json: payload.slice(8..), mem_bytes });
                    }
                    protocol::ERROR => {
                        let error: serde_json::Value = serde_json::from_slice(&payload)
                            .map_err(|e| InvokeFailure::Protocol(format!("unreadable error frame: {e}")))?;
                        let mem_bytes = error.get("memUsage").and_then(|m| m.as_u64()).unwrap_or(0);
                        return Ok(Reply::Raised { error, mem_bytes });
                    }
                    other => {
                        return Err(InvokeFailure::Protocol(format!("unexpected frame {other}")));
                    }
                }
            }
        };
        let result = if self.detached_channel {
            let process = &mut self.process;
            tokio::select! {
                result = tokio::time::timeout(timeout, run) => result.unwrap_or(Err(InvokeFailure::TimedOut)),
                () = exited(process) => Err(InvokeFailure::Exited),
            }
        } else {
            tokio::time::timeout(timeout, run).await.unwrap_or(Err(InvokeFailure::TimedOut))
        };
        let result = match result {
            Err(InvokeFailure::Exited) => {
                // Let the exiting process flush what it wrote to its stdout and stderr.
                self.wait_exit(Duration::from_millis(200)).await;
                if self.group.as_ref().is_some_and(InstanceGroup::oom_killed) {
                    Err(InvokeFailure::OutOfMemory)
                } else {
                    Err(InvokeFailure::Exited)
                }
            }
            other => other,
        };
        let stray = take(&self.stray);
        if !stray.is_empty() {
            append_bounded(log, &stray, log_limit);
        }
        result
    }

    /// Kills the instance's whole process group (a forked instance's only while its pid is still its own).
    pub fn kill(&mut self) {
        let pgid = self.pgid.take();
        if self.process.is_running() {
            kill_group(pgid);
        }
    }

    /// Whether a forked instance's process is still there (without waiting on it).
    fn is_running(&self) -> bool {
        match &self.process {
            Process::Child(_) => true,
            forked @ Process::Forked(..) => forked.is_running(),
        }
    }

    /// Whether a spare can still take on a function: it is there, and so is its keeper (a Node.js spare's).
    fn can_take_on(&self) -> bool {
        self.is_running() && self.keeper.is_none_or(|(pid, started)| start_time(pid) == Some(started))
    }

    /// Whether the process is still running (an idle instance may have died: a stray thread exiting, a kill).
    pub fn is_alive(&mut self) -> bool {
        match &mut self.process {
            Process::Child(child) => matches!(child.try_wait(), Ok(None)),
            // The hot path: one syscall (the start time is checked before a kill, where reuse would matter).
            Process::Forked(pid, _) => rustix::process::test_kill_process(*pid).is_ok(),
        }
    }
}

// === impl Zygote ===

impl Zygote {
    /// Starts a runtime's zygote (Python): it loads the runtime, then forks instances on request. `launch` is the
    /// runtime's own (`Runtimes::prepare_zygote`): its code directory is the root of every package.
    pub async fn start(id: u64, launch: &Launch, node: Option<NodeSpares>) -> Result<Arc<Zygote>, StartError> {
        let host_dir = launch.socket_dir.join(format!("zygote-{id}"));
        std::fs::create_dir_all(&host_dir).map_err(StartError::Spawn)?;
        // The functions' users must reach the sockets in it (nothing else of the host sees the directory).
        std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o711)).map_err(StartError::Spawn)?;
        let dir_guard = DirGuard(host_dir.clone());
        let inside_dir =
            if launch.sandbox.is_isolated() { PathBuf::from(sandbox::CHANNEL_DIR) } else { host_dir.clone() };
        let socket = SocketFile(host_dir.join("zygote.sock"));
        let listener = listen(&socket.0).map_err(StartError::Spawn)?;
        let deadline = tokio::time::Instant::now() + launch.init_timeout;
        // Its children confine themselves when they take on a function (docs/function-protocol.md): the zygote runs
        // none of the functions' code, and keeps what they need to take their package, `/tmp`, `/proc` and user.
        let filter = launch.seccomp_filter.1.display().to_string();
        let code_root = if launch.sandbox.is_isolated() {
            sandbox::ZYGOTE_CODE_ROOT.to_string()
        } else {
            launch.code_dir.display().to_string()
        };
        let scratch = SCRATCH_BYTES.to_string();
        // Room in the process's environment block for a child to write its function's environment over it.
        let room = " ".repeat(ENVIRONMENT_ROOM_BYTES);
        let mut extra = vec![
            ("FNLB_RUNTIME_ZYGOTE", "1"),
            ("FNLB_SECCOMP_FILTER", filter.as_str()),
            ("FNLB_CODE_ROOT", code_root.as_str()),
            ("FNLB_ENVIRONMENT_ROOM", room.as_str()),
        ];
        if launch.sandbox.drops_user() {
            extra.push(("FNLB_PRIVATE_TMP_BYTES", scratch.as_str()));
        }
        let socket_inside = inside_dir.join("zygote.sock");
        let mut spawned =
            spawn(id, launch, &listener, &host_dir, &socket_inside, &extra, Role::Zygote, deadline).await?;
        drop(socket);
        match tokio::time::timeout_at(deadline, protocol::read_frame(&mut spawned.reader)).await {
            Ok(Ok(frame)) if frame.kind == protocol::READY => {}
            other => {
                kill_group(spawned.pgid);
                let mut log = take(&spawned.stray);
                log.push_str(&format!("the zygote did not become ready: {other:?}\n"));
                return Err(StartError::Exited { log });
            }
        }
        // What the zygote itself prints (it runs no function) goes to fnlb's log.
        tokio::spawn(forward_stray(spawned.stray.clone()));
        Ok(Arc::new(Zygote {
            _child: spawned.child,
            pgid: spawned.pgid,
            runtime_pid: spawned.runtime_pid,
            channel: tokio::sync::Mutex::new((spawned.reader, spawned.writer)),
            dir: (host_dir, inside_dir),
            _group: spawned.group,
            launch: launch.clone(),
            node,
            python_spares: Spares::default(),
            node_spares: Spares::default(),
            _dir: dir_guard,
        }))
    }

    pub fn is_alive(&self) -> bool {
        self.runtime_pid.is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
    }

    /// An instance of `launch`'s function: a spare when there is one (forked, connected and in its cgroup ahead of
    /// time, so that only taking on the function and importing its module are left), otherwise forked now. It takes
    /// the function's limits, then `START` tells it the function. Spares are replenished in the background once it
    /// is ready: moving a new spare into its cgroup holds up every fork and new thread on the host for a moment.
    pub async fn instance(self: &Arc<Self>, id: u64, launch: &Launch) -> Result<Instance, StartError> {
        let started = self.take_on(id, launch).await;
        self.replenish();
        started
    }

    fn spares(&self, kind: SpareKind) -> &Spares {
        match kind {
            SpareKind::Python => &self.python_spares,
            SpareKind::Node => &self.node_spares,
        }
    }

    /// How many spares of a kind the zygote keeps.
    fn wanted(&self, kind: SpareKind) -> usize {
        match kind {
            SpareKind::Python => ZYGOTE_SPARES,
            SpareKind::Node => self.node.as_ref().map_or(0, |node| node.count),
        }
    }

    async fn take_on(&self, id: u64, launch: &Launch) -> Result<Instance, StartError> {
        let started = std::time::Instant::now();
        let spare = self.take_spare(launch.spare).await;
        let mut instance = match (spare, launch.spare) {
            (Some(spare), _) => spare,
            (None, SpareKind::Python) => self.make_spare(SpareKind::Python, crate::ids::next_instance_id()).await?,
            // Making a Node.js spare now would cost Node's start and a keeper besides: an interpreter of its own
            // starts sooner (the spares are made again meanwhile).
            (None, SpareKind::Node) => return Instance::start(id, launch).await,
        };
        instance.id = id;
        if let Some(group) = &instance.group {
            group.set_limits(&launch.instance_limits()).map_err(StartError::Spawn)?;
        }
        let code = launch.code_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let start = Start { code, env: &launch.env, uid: launch.uid };
        let payload = serde_json::to_vec(&start).expect("the start message serialises");
        let deadline = tokio::time::Instant::now() + launch.init_timeout;
        protocol::write_frame(&mut instance.writer, protocol::START, &[&payload])
            .await
            .map_err(|e| StartError::Exited { log: format!("the forked instance is gone: {e}\n") })?;
        instance.handshake(deadline).await?;
        instance.init_duration = started.elapsed();
        Ok(instance)
    }

    /// A ready spare of `kind`; for Node.js, when none is ready, one being made that no earlier caller waits for
    /// (for at most `NODE_SPARE_WAIT`). A Python caller forks one at once instead: a fork is quicker than any wait.
    async fn take_spare(&self, kind: SpareKind) -> Option<Instance> {
        let spares = self.spares(kind);
        let deadline = tokio::time::Instant::now() + NODE_SPARE_WAIT;
        loop {
            // Listening before looking: a spare made in between still wakes this caller.
            let made = spares.made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            {
                let mut ready = spares.ready.lock().unwrap_or_else(|p| p.into_inner());
                ready.retain(Instance::can_take_on);
                if let Some(spare) = ready.pop() {
                    return Some(spare);
                }
            }
            if kind == SpareKind::Python
                || spares.making.load(Ordering::SeqCst) <= spares.waiting.load(Ordering::SeqCst)
            {
                return None;
            }
            spares.waiting.fetch_add(1, Ordering::SeqCst);
            let woken = tokio::time::timeout_at(deadline, made).await;
            spares.waiting.fetch_sub(1, Ordering::SeqCst);
            woken.ok()?;
        }
    }

    /// Makes spares in the background until there are as many of each kind as the zygote keeps (counting those being
    /// made).
    pub fn replenish(self: &Arc<Self>) {
        for kind in [SpareKind::Python, SpareKind::Node] {
            let spares = self.spares(kind);
            let have = spares.ready.lock().unwrap_or_else(|p| p.into_inner()).len();
            let making = spares.making.load(Ordering::SeqCst);
            for _ in have + making..self.wanted(kind) {
                spares.making.fetch_add(1, Ordering::SeqCst);
                let zygote = self.clone();
                tokio::spawn(async move {
                    let made = zygote.make_spare(kind, crate::ids::next_instance_id()).await;
                    let spares = zygote.spares(kind);
                    match made {
                        Ok(spare) => spares.ready.lock().unwrap_or_else(|p| p.into_inner()).push(spare),
                        Err(e) => tracing::debug!(error = ?e, ?kind, "Could not prepare a spare instance."),
                    }
                    spares.making.fetch_sub(1, Ordering::SeqCst);
                    spares.made.notify_waiters();
                });
            }
        }
    }

    /// Makes a spare, accepts its connection and puts it in a cgroup of its own (with the zygote's limits until it
    /// takes on a function); it waits for `START`. A Python spare is a fork of the zygote; a Node.js spare is an
    /// interpreter started by a keeper the zygote forks.
    async fn make_spare(&self, kind: SpareKind, id: u64) -> Result<Instance, StartError> {
        let launch = &self.launch;
        let name = socket_name(id);
        let socket = SocketFile(self.dir.0.join(&name));
        let listener = listen(&socket.0).map_err(StartError::Spawn)?;
        let inside = self.dir.1.join(&name).display().to_string();
        let request = match (kind, &self.node) {
            (SpareKind::Python, _) => (protocol::FORK, inside.clone().into_bytes()),
            (SpareKind::Node, Some(node)) => {
                // Room in the spare's environment block for the function's environment (`START`).
                let room = " ".repeat(ENVIRONMENT_ROOM_BYTES);
                let mut env: Vec<(&str, &str)> = node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                env.extend([("FNLB_RUNTIME_SOCKET", inside.as_str()), ("FNLB_SPARE", "1")]);
                env.push(("FNLB_ENVIRONMENT_ROOM", &room));
                let argv = std::iter::once(node.program.to_str().unwrap_or_default())
                    .chain(node.args.iter().map(String::as_str))
                    .collect();
                let request = SpareRequest { socket: &inside, argv, env };
                (protocol::SPARE, serde_json::to_vec(&request).expect("the spare request serialises"))
            }
            (SpareKind::Node, None) => {
                return Err(StartError::Spawn(std::io::Error::other("the zygote keeps no Node.js spares")));
            }
        };
        let deadline = tokio::time::Instant::now() + launch.init_timeout;
        let lost = |what: String| StartError::Exited { log: format!("the zygote {what}\n") };
        {
            let mut channel = self.channel.lock().await;
            let (reader, writer) = &mut *channel;
            protocol::write_frame(writer, request.0, &[&request.1])
                .await
                .map_err(|e| lost(format!("cannot be asked to fork: {e}")))?;
            match tokio::time::timeout_at(deadline, protocol::read_frame(reader)).await {
                Ok(Ok(frame)) if frame.kind == protocol::FORKED => {}
                other => return Err(lost(format!("did not fork: {other:?}"))),
            }
        }
        // The new instance must be a child of the zygote (Python), or of a keeper the zygote forked (Node.js).
        let zygote = self.runtime_pid.ok_or_else(|| lost("has no known pid".to_string()))?;
        let accept = |parent: rustix::process::Pid| {
            let listener = &listener;
            async move {
                let accepted = accept_from(listener, |peer| parent_of(peer) == Some(parent));
                match tokio::time::timeout_at(deadline, accepted).await {
                    Ok(Ok(pair)) => Ok(pair),
                    Ok(Err(e)) => Err(StartError::Spawn(e)),
                    Err(_) => Err(StartError::TimedOut { log: String::new() }),
                }
            }
        };
        let (stream, peer) = accept(zygote).await?;
        // Moving a process between cgroups waits for the kernel (an RCU grace period): one reason spares are made
        // ahead of time.
        let group = launch.limits.instance(id, &launch.instance_limits()).map_err(StartError::Spawn)?;
        let (stream, peer, keeper) = match kind {
            SpareKind::Python => {
                confine(peer.as_raw_nonzero().get() as u32, group.as_ref(), launch.max_open_files);
                (stream, peer, None)
            }
            SpareKind::Node => {
                // The keeper enters the spare's cgroup before it starts the interpreter, so that the interpreter (each
                // of its threads, all the memory it touches) is born inside it; a keeper that cannot be moved is not
                // used. The interpreter connects next, as the keeper's child.
                let keeper = peer.as_raw_nonzero().get() as u32;
                if let Some(group) = &group {
                    group.add(keeper).map_err(StartError::Spawn)?;
                }
                confine(keeper, None, launch.max_open_files);
                let mut control = stream;
                control.write_all(b"1").await.map_err(|e| lost(format!("lost the spare's keeper: {e}")))?;
                // The keeper holds its connection until it exits: a keeper gone (or whose interpreter died before
                // it connected) ends the wait.
                let (stream, spare) = tokio::select! {
                    accepted = accept(peer) => accepted?,
                    _ = control.read_u8() => return Err(lost("lost the spare's keeper before its spare connected".to_string())),
                };
                (stream, spare, start_time(peer).map(|started| (peer, started)))
            }
        };
        drop(socket);
        let peer_pid = peer.as_raw_nonzero().get() as u32;
        let (read_half, writer) = stream.into_split();
        Ok(Instance {
            id,
            process: Process::Forked(peer, start_time(peer).unwrap_or(0)),
            // The child made itself a session and process group leader.
            pgid: Some(peer_pid as i32),
            reader: BufReader::with_capacity(64 * 1024, read_half),
            writer,
            // Its raw output comes as log frames once it has taken on a function.
            stray: Arc::new(Mutex::new(String::new())),
            group,
            _scratch: Scratch(PathBuf::new()),
            init_log: String::new(),
            init_duration: Duration::ZERO,
            detached_channel: false,
            tally: None,
            keeper,
        })
    }
}

/// Logs what a zygote prints (it runs no function, so this is the runtime's own trouble).
async fn forward_stray(stray: Arc<Mutex<String>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Until the zygote is gone (the buffer's only other holder is its output readers).
    while Arc::strong_count(&stray) > 1 {
        tick.tick().await;
        let text = take(&stray);
        if !text.is_empty() {
            tracing::warn!(output = %text.trim_end(), "The Python zygote wrote to its output.");
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        kill_group(self.pgid.take());
    }
}

/// What a process fnlb starts is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Runs the function: under the system-call filter from its first instruction.
    Instance,
    /// Forks instances, which confine themselves.
    Zygote,
}

/// Starts a runtime process as fnlb's child, with its limits, and accepts its channel connection.
#[allow(clippy::too_many_arguments)]
async fn spawn(
    id: u64,
    launch: &Launch,
    listener: &UnixListener,
    channel_host: &Path,
    channel_inside: &Path,
    extra_env: &[(&str, &str)],
    role: Role,
    deadline: tokio::time::Instant,
) -> Result<Spawned, StartError> {
    let isolated = launch.sandbox.is_isolated();
    let scratch = launch.scratch_root.as_ref().map(|root| root.join(format!("instance-{id}")));
    if let Some(dir) = &scratch {
        std::fs::create_dir_all(dir).map_err(StartError::Spawn)?;
    }
    let scratch_guard = Scratch(scratch.clone().unwrap_or_default());
    let mount_point = if channel_host.is_dir() { sandbox::CHANNEL_DIR } else { sandbox::CHANNEL };
    // A custom runtime has no channel socket: it talks to the Runtime API over loopback.
    let channel = (!launch.runtime_api).then_some((channel_host, Path::new(mount_point)));
    let filtered = role == Role::Instance;
    let confinement = Confinement { uid: launch.uid, seccomp: filtered && isolated, zygote: role == Role::Zygote };
    let (program, args) =
        launch.sandbox.wrap(&launch.program, &launch.args, &launch.code_dir, &launch.runtime_dir, channel, confinement);
    let mut command = Command::new(program);
    command
        .args(&args)
        .current_dir(if isolated { Path::new("/") } else { launch.code_dir.as_path() })
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra_env.iter().copied())
        .env("FNLB_RUNTIME_SOCKET", channel_inside)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &scratch {
        command.env("HOME", dir).env("TMPDIR", dir);
    }
    // A custom runtime reaches fnlb through the Runtime API on loopback instead of the channel socket.
    let mut translated = None;
    let (members, members_known) = tokio::sync::watch::channel(None);
    if launch.runtime_api {
        let (ours, theirs) = UnixStream::pair().map_err(StartError::Spawn)?;
        // On the functions' loopback when they have a network of their own.
        let bound = match &launch.network {
            Some(network) => network.bind_loopback(),
            None => std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)),
        };
        let api = super::runtime_api::serve(
            theirs,
            bound.map_err(StartError::Spawn)?,
            super::SYNC_PAYLOAD_LIMIT + 1024,
            members_known,
        )
        .map_err(StartError::Spawn)?;
        command.env("SCF_RUNTIME_API", api.ip().to_string()).env("SCF_RUNTIME_API_PORT", api.port().to_string());
        translated = Some(ours);
    }
    let group = launch.limits.instance(id, &launch.instance_limits()).map_err(StartError::Spawn)?;
    // The process enters its cgroups before it runs: everything it forks is born inside them.
    let mut at_exec = AtExec::new(group.as_ref(), launch.max_open_files, launch.scheduling.batch())
        .map_err(StartError::Spawn)?
        .join_network(launch.network.as_ref().map(|n| n.netns()));
    if filtered {
        at_exec = if isolated {
            let program = std::fs::File::open(&launch.seccomp_filter.0).map_err(StartError::Spawn)?;
            at_exec.pass(program, sandbox::SECCOMP_FD)
        } else {
            at_exec.filter_calls()
        };
    }
    apply_at_exec(&mut command, at_exec);
    let mut child = command.spawn().map_err(StartError::Spawn)?;
    let pgid = child.id().map(|pid| pid as i32);
    if let Some(root) = child.id().and_then(|pid| rustix::process::Pid::from_raw(pid as i32)) {
        let procs = group.as_ref().and_then(InstanceGroup::procs_file);
        members.send_replace(Some(super::runtime_api::Members { root, procs }));
    }
    let stray = Arc::new(Mutex::new(String::new()));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(collect_output(out, stray.clone(), launch.stray_output_limit));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(collect_output(err, stray.clone(), launch.stray_output_limit));
    }
    let child_pid = child.id();
    // The runtime is the child itself or, in a sandbox, one of its descendants (bubblewrap's namespace init runs it
    // in a session of its own).
    let own = |peer: rustix::process::Pid| {
        let Some(child) = child_pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) else { return false };
        let mut process = Some(peer);
        for _ in 0..4 {
            match process {
                Some(p) if p == child => return true,
                Some(p) => process = parent_of(p),
                None => return false,
            }
        }
        false
    };
    let connected = |child, stray, group, stream: UnixStream, runtime_pid| {
        let (read_half, writer) = stream.into_split();
        let reader = BufReader::with_capacity(64 * 1024, read_half);
        Spawned { child, pgid, stray, group, scratch: scratch_guard, reader, writer, runtime_pid }
    };
    if let Some(stream) = translated {
        return Ok(connected(child, stray, group, stream, None));
    }
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, accept_from(listener, own)) => accepted,
        _ = child.wait() => {
            return Err(StartError::Exited { log: take(&stray) });
        }
    };
    let (stream, peer) = match accepted {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            kill_group(pgid);
            return Err(StartError::Spawn(e));
        }
        Err(_) => {
            kill_group(pgid);
            return Err(StartError::TimedOut { log: take(&stray) });
        }
    };
    Ok(connected(child, stray, group, stream, Some(peer)))
}

/// Accepts connections until one comes from a process `own` accepts (any local process may reach a socket it
/// can name; the others are dropped).
async fn accept_from(
    listener: &UnixListener,
    own: impl Fn(rustix::process::Pid) -> bool,
) -> std::io::Result<(UnixStream, rustix::process::Pid)> {
    loop {
        let (stream, _) = listener.accept().await?;
        let peer = stream.peer_cred().ok().and_then(|c| c.pid()).and_then(rustix::process::Pid::from_raw);
        if let Some(peer) = peer.filter(|p| own(*p)) {
            return Ok((stream, peer));
        }
        tracing::warn!(?peer, "Refused a connection to an instance channel from another process.");
    }
}

/// When a process started (clock ticks after boot, `/proc/<pid>/stat` field 22), to tell it from a later process
/// with the same pid.
fn start_time(pid: rustix::process::Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    stat_fields(&stat)?.nth(19)?.parse().ok()
}

/// The fields of a `/proc/<pid>/stat` line after the command name, from the state on (`pid (comm) state ppid …`):
/// the name may hold spaces and parentheses, so they start after the last `)`.
pub(super) fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.get(stat.rfind(')')? + 1..)?.split_whitespace())
}

/// The parent of a process, from `/proc`.
pub(super) fn parent_of(pid: rustix::process::Pid) -> Option<rustix::process::Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    stat_fields(&stat)?.nth(1)?.parse::<i32>().ok().and_then(rustix::process::Pid::from_raw)
}

fn socket_name(id: u64) -> String {
    format!("{id}-{}.sock", crate::ids::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 8))
}

/// Listens on a new socket file that the instance (possibly another user, in a sandbox) may connect to.
fn listen(path: &Path) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// A zygote's socket directory, removed with the zygote.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An instance's scratch directory, removed (off the async threads) when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        if dir.as_os_str().is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || std::fs::remove_dir_all(dir));
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn failure(e: FrameError) -> InvokeFailure {
    match e {
        FrameError::Closed | FrameError::Io(_) => InvokeFailure::Exited,
        FrameError::TooLarge(n) => InvokeFailure::Protocol(format!("frame of {n} bytes")),
    }
}

/// Resolves when the instance's process has exited.
async fn exited(process: &mut Process) {
    match process {
        Process::Child(child) => {
            let _ = child.wait().await;
        }
        forked @ Process::Forked(..) => {
            while forked.is_running() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Puts a process into the instance's cgroup and caps its open files.
fn confine(pid: u32, group: Option<&InstanceGroup>, max_open_files: u64) {
    if let Some(group) = group
        && let Err(e) = group.add(pid)
    {
        tracing::debug!(pid, error = %e, "Cannot move a process into its instance cgroup.");
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let limit = rustix::process::Rlimit { current: Some(max_open_files), maximum: Some(max_open_files) };
        let _ = rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, limit);
    }
}

/// An instance's channel socket on the host, removed once the instance connected (or failed to).
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn kill_group(pgid: Option<i32>) {
    let Some(pgid) = pgid.and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    // The group may already be gone; nothing else to do then.
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
}

/// The longest piece of a line of raw output held before it is added to the log: a runtime that prints without
/// newlines is read in pieces of this size, so what fnlb holds of it stays bounded.
const OUTPUT_PIECE_BYTES: usize = 64 * 1024;

async fn collect_output<R: AsyncRead + Unpin>(out: R, into: Arc<Mutex<String>>, limit: usize) {
    let mut reader = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok(bytes) if !bytes.is_empty() => bytes,
            _ => break,
        };
        let (taken, ended) = match available.iter().position(|b| *b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (available.len(), false),
        };
        let kept = taken.min(OUTPUT_PIECE_BYTES - line.len());
        line.extend_from_slice(&available[..kept]);
        reader.consume(kept);
        if ended && kept == taken || line.len() >= OUTPUT_PIECE_BYTES {
            let mut buf = into.lock().unwrap_or_else(|p| p.into_inner());
            append_bounded(&mut buf, &String::from_utf8_lossy(&line), limit);
            line.clear();
        }
    }
    if !line.is_empty() {
        let mut buf = into.lock().unwrap_or_else(|p| p.into_inner());
        append_bounded(&mut buf, &String::from_utf8_lossy(&line), limit);
    }
}

fn take(buf: &Arc<Mutex<String>>) -> String {
    std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Appends to a log, keeping at most `limit` bytes: past it, the text is cut and marked once.
pub fn append_bounded(log: &mut String, text: &str, limit: usize) {
    const MARK: &str = "\n[log truncated]\n";
    if log.ends_with(MARK) {
        return;
    }
    if log.len() + text.len() <= limit {
        log.push_str(text);
        return;
    }
    let room = limit.saturating_sub(log.len());
    let mut cut = room.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    log.push_str(&text[..cut]);
    log.push_str(MARK);
}
