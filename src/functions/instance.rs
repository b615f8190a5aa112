//! One function instance: a runtime bootstrap in its own process group, and the channel to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

use super::limits::{Cgroups, InstanceGroup};
use super::protocol::{self, Frame, FrameError};
use super::sandbox::{self, Sandbox};

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
    /// Memory and process limits (cgroups), and open files.
    pub limits: Arc<Cgroups>,
    pub memory_mb: u32,
    pub max_processes: u64,
    pub max_open_files: u64,
    /// Without a sandbox, each instance gets a private scratch directory under this one (its `HOME` and
    /// `TMPDIR`); a sandbox gives it a private `/tmp` instead.
    pub scratch_root: Option<PathBuf>,
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
    child: Child,
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
}

// === impl Instance ===

impl Instance {
    pub async fn start(id: u64, launch: &Launch) -> Result<Instance, StartError> {
        let started = std::time::Instant::now();
        // The channel: a socket file of this instance's own, reachable only through the sandbox's bind mount (or,
        // unsandboxed, in fnlb's private socket directory).
        let socket = SocketFile(
            launch
                .socket_dir
                .join(format!("{id}-{}.sock", crate::ids::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 8))),
        );
        let listener = UnixListener::bind(&socket.0).map_err(StartError::Spawn)?;
        std::fs::set_permissions(&socket.0, std::fs::Permissions::from_mode(0o666)).map_err(StartError::Spawn)?;
        let isolated = launch.sandbox.is_isolated();
        let inside = if isolated { PathBuf::from(sandbox::CHANNEL) } else { socket.0.clone() };
        let scratch = launch.scratch_root.as_ref().map(|root| root.join(format!("instance-{id}")));
        if let Some(dir) = &scratch {
            std::fs::create_dir_all(dir).map_err(StartError::Spawn)?;
        }
        let scratch_dir = Scratch(scratch.clone().unwrap_or_default());
        let (program, args) =
            launch.sandbox.wrap(&launch.program, &launch.args, &launch.code_dir, &launch.runtime_dir, &socket.0);
        let mut command = Command::new(program);
        command
            .args(&args)
            .current_dir(if isolated { Path::new("/") } else { launch.code_dir.as_path() })
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FNLB_RUNTIME_SOCKET", &inside)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &scratch {
            command.env("HOME", dir).env("TMPDIR", dir);
        }
        let group = launch.limits.instance(id, launch.memory_mb, launch.max_processes).map_err(StartError::Spawn)?;
        let mut child = command.spawn().map_err(StartError::Spawn)?;
        let pgid = child.id().map(|pid| pid as i32);
        // Limits before the runtime starts: the wrapper's children inherit them (the runtime is placed again
        // once it connects, in case the wrapper forked first).
        if let Some(pid) = child.id() {
            confine(pid, group.as_ref(), launch.max_open_files);
        }
        let stray = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect_output(out, stray.clone(), launch.stray_output_limit));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect_output(err, stray.clone(), launch.stray_output_limit));
        }
        let mut instance_log = String::new();
        let deadline = tokio::time::Instant::now() + launch.init_timeout;

        // The channel must come from this instance's own process: an abstract socket can be reached by any
        // local process, so check the peer's credentials and ignore anyone else.
        let child_pid = child.id();
        let accept_own = async {
            loop {
                let (stream, _) = listener.accept().await?;
                let peer = stream.peer_cred().ok().and_then(|c| c.pid()).and_then(rustix::process::Pid::from_raw);
                // The runtime is the child itself or, in a sandbox, a process in the child's process group.
                let group = peer.and_then(|p| rustix::process::getpgid(Some(p)).ok());
                if child_pid.is_some() && group.map(|g| g.as_raw_nonzero().get() as u32) == child_pid {
                    return Ok::<_, std::io::Error>((stream, peer));
                }
                tracing::warn!(?peer, "Refused a connection to an instance channel from another process.");
            }
        };
        let accepted = tokio::select! {
            accepted = tokio::time::timeout_at(deadline, accept_own) => accepted,
            _ = child.wait() => {
                return Err(StartError::Exited { log: take(&stray) });
            }
        };
        drop(listener);
        drop(socket);
        let stream: UnixStream = match accepted {
            Ok(Ok((stream, peer))) => {
                if let Some(peer) = peer {
                    confine(peer.as_raw_nonzero().get() as u32, group.as_ref(), launch.max_open_files);
                }
                stream
            }
            Ok(Err(e)) => {
                kill_group(pgid);
                return Err(StartError::Spawn(e));
            }
            Err(_) => {
                kill_group(pgid);
                return Err(StartError::TimedOut { log: take(&stray) });
            }
        };
        let (read_half, writer) = stream.into_split();
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        loop {
            let frame = match tokio::time::timeout_at(deadline, protocol::read_frame(&mut reader)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => {
                    // Give the process a moment to finish writing its last words before we read them.
                    let _ = tokio::time::timeout(Duration::from_millis(200), child.wait()).await;
                    instance_log.push_str(&take(&stray));
                    kill_group(pgid);
                    if group.as_ref().is_some_and(InstanceGroup::oom_killed) {
                        return Err(StartError::OutOfMemory { log: instance_log });
                    }
                    return Err(StartError::Exited { log: instance_log });
                }
                Err(_) => {
                    kill_group(pgid);
                    instance_log.push_str(&take(&stray));
                    return Err(StartError::TimedOut { log: instance_log });
                }
            };
            match frame.kind {
                protocol::READY => break,
                protocol::LOG => instance_log.push_str(&String::from_utf8_lossy(&frame.payload)),
                protocol::INIT_ERROR => {
                    let error = serde_json::from_slice(&frame.payload).unwrap_or_else(|_| {
                        serde_json::json!({"statusCode": 437, "errorMessage": String::from_utf8_lossy(&frame.payload)})
                    });
                    kill_group(pgid);
                    instance_log.push_str(&take(&stray));
                    return Err(StartError::Init { error, log: instance_log });
                }
                other => {
                    kill_group(pgid);
                    instance_log.push_str(&format!("runtime sent frame {other} before it was ready\n"));
                    return Err(StartError::Exited { log: instance_log });
                }
            }
        }
        instance_log.push_str(&take(&stray));
        Ok(Instance {
            id,
            child,
            pgid,
            reader,
            writer,
            stray,
            group,
            _scratch: scratch_dir,
            init_duration: started.elapsed(),
            init_log: instance_log,
        })
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
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(InvokeFailure::TimedOut),
        };
        let result = match result {
            Err(InvokeFailure::Exited) => {
                // Let the exiting process flush what it wrote to its stdout and stderr.
                let _ = tokio::time::timeout(Duration::from_millis(200), self.child.wait()).await;
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

    /// Kills the instance's whole process group.
    pub fn kill(&mut self) {
        kill_group(self.pgid.take());
    }

    /// Whether the process is still running (an idle instance may have died: a stray thread exiting, a kill).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

async fn collect_output<R: AsyncRead + Unpin>(out: R, into: Arc<Mutex<String>>, limit: usize) {
    let mut lines = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let mut buf = into.lock().unwrap_or_else(|p| p.into_inner());
                append_bounded(&mut buf, &String::from_utf8_lossy(&line), limit);
            }
        }
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
