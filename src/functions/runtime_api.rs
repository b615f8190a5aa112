//! The SCF Runtime API (contract 2.6) a custom runtime's `bootstrap` talks to, served per instance on loopback
//! and translated to fnlb's function protocol: `POST /runtime/init/ready` is `READY`; an `INVOKE` is handed out by
//! `GET /runtime/invocation/next`; `POST /runtime/invocation/response` and `/error` are `RESULT` and `ERROR`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustix::process::Pid;
use serde_json::value::RawValue;
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::{Notify, watch};

use super::protocol;

/// The invocation a runtime is working on.
struct Current {
    request_id: String,
    event: Bytes,
    memory_mb: u64,
    time_limit_ms: u64,
    answered: bool,
}

struct Shared {
    current: Mutex<Option<Current>>,
    /// The instance is gone: pending long polls end.
    closed: std::sync::atomic::AtomicBool,
    ready: Mutex<bool>,
    arrived: Notify,
    channel: tokio::sync::Mutex<OwnedWriteHalf>,
}

/// Who may use an instance's Runtime API: the processes of the instance, known once it is spawned.
#[derive(Clone, Debug)]
pub struct Members {
    /// The process fnlb started (the runtime, or its sandbox wrapper).
    pub root: Pid,
    /// The instance's cgroup, whose `cgroup.procs` lists every process of the instance; without one, the
    /// processes descending from `root` are the instance's.
    pub procs: Option<PathBuf>,
}

/// How long a connection waits for the instance's processes to be known (they are, as soon as it is spawned).
const MEMBERS_WAIT: Duration = Duration::from_secs(5);

/// Serves the Runtime API for one instance on `listener`, a free port on the loopback of the functions' network
/// (or the host's, where functions share it); `channel` is fnlb's side of the instance's protocol stream. Only the
/// instance's own processes are served: any process on that network can reach the port, so each connection's peer
/// is looked up (`peer_is_member`) and a stranger's connection is closed unanswered. Returns the address; the
/// server stops when the instance's channel closes.
pub fn serve(
    channel: UnixStream,
    listener: std::net::TcpListener,
    max_body: usize,
    members: watch::Receiver<Option<Members>>,
) -> std::io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let (read_half, write_half) = channel.into_split();
    let shared = Arc::new(Shared {
        current: Mutex::new(None),
        closed: std::sync::atomic::AtomicBool::new(false),
        ready: Mutex::new(false),
        arrived: Notify::new(),
        channel: tokio::sync::Mutex::new(write_half),
    });
    let frames = shared.clone();
    let frames_closed = shared.clone();
    let mut reader = BufReader::new(read_half);
    let invocations = async move {
        // INVOKE frames from fnlb become the current invocation.
        while let Ok(frame) = protocol::read_frame(&mut reader).await {
            if frame.kind != protocol::INVOKE {
                continue;
            }
            let Some(current) = parse_invoke(&frame.payload) else { continue };
            *frames.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(current);
            frames.arrived.notify_waiters();
        }
    };
    let accept = async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let mut members = members.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req, max_body).await) }
            });
            tokio::spawn(async move {
                let known = tokio::time::timeout(MEMBERS_WAIT, members.wait_for(Option::is_some)).await;
                let Some(known) = known.ok().and_then(Result::ok).and_then(|m| m.clone()) else { return };
                let member = tokio::task::spawn_blocking(move || peer_is_member(peer, addr, &known)).await;
                if !member.unwrap_or(false) {
                    tracing::warn!(%peer, "Refused a Runtime API connection from a process outside the instance.");
                    return;
                }
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    };
    let closing = frames_closed;
    tokio::spawn(async move {
        // The instance's channel closing (the instance was stopped) ends the server.
        tokio::select! {
            _ = invocations => {}
            _ = accept => {}
        }
        closing.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        closing.arrived.notify_waiters();
    });
    Ok(addr)
}

fn parse_invoke(payload: &[u8]) -> Option<Current> {
    #[derive(serde::Deserialize)]
    struct Invoke<'a> {
        #[serde(borrow)]
        event: &'a RawValue,
        context: serde_json::Value,
    }
    let invoke: Invoke<'_> = serde_json::from_slice(payload).ok()?;
    let context = invoke.context;
    Some(Current {
        request_id: context.get("request_id")?.as_str()?.to_string(),
        event: Bytes::copy_from_slice(invoke.event.get().as_bytes()),
        memory_mb: context.get("memory_limit_in_mb").and_then(|v| v.as_u64()).unwrap_or(0),
        time_limit_ms: context.get("time_limit_in_ms").and_then(|v| v.as_u64()).unwrap_or(0),
        answered: false,
    })
}

async fn handle(shared: &Shared, req: Request<Incoming>, max_body: usize) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
    };
    match (method, path.as_str()) {
        (Method::POST, "/runtime/init/ready") => {
            let first = {
                let mut ready = shared.ready.lock().unwrap_or_else(|p| p.into_inner());
                !std::mem::replace(&mut *ready, true)
            };
            if first {
                send(shared, protocol::READY, &[]).await;
            }
            reply(StatusCode::OK, "")
        }
        (Method::GET, "/runtime/invocation/next") => loop {
            let arrived = shared.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check below, so an event that arrives in between still wakes this poll.
            arrived.as_mut().enable();
            let pending = {
                let current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
                current.as_ref().filter(|c| !c.answered).map(|c| {
                    let mut response = Response::new(Full::new(c.event.clone()));
                    let headers = response.headers_mut();
                    let value =
                        |v: String| http::HeaderValue::from_str(&v).unwrap_or(http::HeaderValue::from_static(""));
                    headers.insert("request_id", value(c.request_id.clone()));
                    headers.insert("memory_limit_in_mb", value(c.memory_mb.to_string()));
                    headers.insert("time_limit_in_ms", value(c.time_limit_ms.to_string()));
                    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    response
                })
            };
            if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                break reply(StatusCode::SERVICE_UNAVAILABLE, "the instance is stopping");
            }
            match pending {
                Some(response) => break response,
                // Long poll: the runtime waits for the next event (the instance's timeout bounds an invocation).
                None => arrived.await,
            }
        },
        (Method::POST, "/runtime/invocation/response") => {
            if take_answer(shared) {
                let mem = 0u64.to_be_bytes();
                send(shared, protocol::RESULT, &[&mem, &body]).await;
            }
            reply(StatusCode::OK, "")
        }
        (Method::POST, "/runtime/invocation/error") => {
            if take_answer(shared) {
                let error = serde_json::json!({
                    "statusCode": super::status::USER_CODE_EXCEPTION,
                    "errorCode": -1,
                    "errorMessage": String::from_utf8_lossy(&body),
                    "errorType": "CustomRuntimeError",
                    "stackTrace": "",
                });
                send(shared, protocol::ERROR, &[error.to_string().as_bytes()]).await;
            }
            reply(StatusCode::OK, "")
        }
        _ => reply(StatusCode::NOT_FOUND, "not a Runtime API path"),
    }
}

/// Marks the current invocation answered; false if there is none or it was answered already (first push wins).
fn take_answer(shared: &Shared) -> bool {
    let mut current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
    match current.as_mut() {
        Some(c) if !c.answered => {
            c.answered = true;
            true
        }
        _ => false,
    }
}

async fn send(shared: &Shared, kind: u8, parts: &[&[u8]]) {
    let mut channel = shared.channel.lock().await;
    let _ = protocol::write_frame(&mut *channel, kind, parts).await;
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Whether the process at the other end of a loopback connection (`peer` → `local`) belongs to the instance:
/// the connecting socket is found by its addresses in `/proc/net/tcp` (or `tcp6`), then among the open files
/// of the instance's processes.
fn peer_is_member(peer: SocketAddr, local: SocketAddr, members: &Members) -> bool {
    let Some(inode) = socket_inode(members.root, peer, local) else { return false };
    let wanted = format!("socket:[{inode}]");
    let pids = match &members.procs {
        Some(procs) => super::limits::read_pids(procs),
        None => descendants(members.root),
    };
    pids.into_iter().any(|pid| {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", pid.as_raw_nonzero()));
        fds.into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*wanted))
    })
}

/// The inode of the TCP socket bound to `local_end` and connected to `remote_end`, from the kernel's tables of the
/// network `process` is in (the instance's, which may not be fnlb's).
fn socket_inode(process: Pid, local_end: SocketAddr, remote_end: SocketAddr) -> Option<u64> {
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", process.as_raw_nonzero())).ok()?;
        text.lines().skip(1).find_map(|line| {
            // `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`
            let fields: Vec<&str> = line.split_whitespace().collect();
            let matches = fields.len() > 9
                && parse_table_addr(fields[1]) == Some(local_end)
                && parse_table_addr(fields[2]) == Some(remote_end);
            matches.then(|| fields[9].parse().ok()).flatten()
        })
    })
}

/// An address as `/proc/net/tcp{,6}` prints it: the address's 32-bit words in the host's byte order, in hex, and
/// the port in hex. IPv6 addresses that map an IPv4 one are given as the IPv4 address.
fn parse_table_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<[u8; 4]> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes))
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [v4] => IpAddr::V4(Ipv4Addr::from(*v4)),
        [a, b, c, d] => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from([*a, *b, *c, *d].concat()).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `root` and every process descending from it, from the parent links in `/proc`.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()).and_then(Pid::from_raw) else {
            continue;
        };
        if let Some(parent) = super::instance::parent_of(pid) {
            parents.push((pid, parent));
        }
    }
    let mut tree = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, parent) in &parents {
            if tree.contains(parent) && !tree.contains(pid) {
                tree.push(*pid);
                grew = true;
            }
        }
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_socket_tables_parse() {
        let v4 = if cfg!(target_endian = "little") { "0100007F:9272" } else { "7F000001:9272" };
        assert_eq!(parse_table_addr(v4), Some("127.0.0.1:37490".parse().unwrap()));
        let mapped = if cfg!(target_endian = "little") {
            "0000000000000000FFFF00000100007F:0050"
        } else {
            "00000000000000000000FFFF7F000001:0050"
        };
        assert_eq!(parse_table_addr(mapped), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(parse_table_addr("nonsense"), None);
    }

    #[test]
    fn this_process_owns_its_own_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = Pid::from_raw(std::process::id() as i32).unwrap();
        let local = listener.local_addr().unwrap();
        assert!(peer_is_member(peer, local, &Members { root: me, procs: None }));
        // Not a member: a tree that does not hold the socket (pid 1's, which this test process is not part of as
        // a descendant only when it runs as init; then the check is skipped).
        if std::process::id() != 1 {
            let other = Pid::from_raw(i32::MAX).unwrap();
            assert!(!peer_is_member(peer, local, &Members { root: other, procs: None }));
        }
    }
}
