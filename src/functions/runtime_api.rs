//! The SCF Runtime API (contract 2.6) a custom runtime's `bootstrap` talks to, served per instance on loopback
//! and translated to fnlb's function protocol: `POST /runtime/init/ready` is `READY`; an `INVOKE` is handed out by
//! `GET /runtime/invocation/next`; `POST /runtime/invocation/response` and `/error` are `RESULT` and `ERROR`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::value::RawValue;
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Notify;

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

/// Serves the Runtime API on a free loopback port for one instance; `channel` is fnlb's side of the instance's
/// protocol stream. Returns the address; the server stops when the instance's channel closes.
pub async fn serve(channel: UnixStream, max_body: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
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
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req, max_body).await) }
            });
            tokio::spawn(async move {
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
