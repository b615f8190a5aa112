//! One layer-7 listener: accept connections, route each request, forward it to its target.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::LazyConfigAcceptor;
use tracing::Instrument;

use super::bridge::{self, RequestInfo};
use super::respond::{self, Body};
use super::router::Route;
use super::{Proxy, ProxySettings};
use crate::functions::status;

/// Accepts connections until `stop` turns true, then lets open connections finish their current request.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = connection_builder(&proxy.settings);
    let connections = Arc::new(tokio::sync::Semaphore::new(proxy.settings.max_connections_per_listener));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Some((stream, client, slot)) = super::admit(accepted, &connections, addr).await else { continue };
        let proxy = proxy.clone();
        let builder = builder.clone();
        let graceful = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let routes = proxy.control.snapshot().http_listeners.get(&addr).cloned();
            let Some(tls) = routes.as_ref().and_then(|r| r.tls.as_ref().map(|tls| (r, tls))) else {
                return serve_connection(proxy, builder, graceful, stream, addr, client, false).await;
            };
            let (routes, tls) = tls;
            let accepted = async {
                let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
                let config = tls.for_name(&routes.router, start.client_hello().server_name()).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "no certificate for this server name")
                })?;
                start.into_stream(config).await
            };
            match tokio::time::timeout(proxy.settings.tls_handshake_timeout, accepted).await {
                Ok(Ok(stream)) => serve_connection(proxy, builder, graceful, stream, addr, client, true).await,
                Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed."),
                Err(_) => tracing::debug!(%client, "TLS handshake timed out."),
            }
        });
    }
    drop(listener);
    let _ = closed.send(());
    if tokio::time::timeout(proxy.settings.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::debug!(%addr, "Connections still open after the drain period were cut.");
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one accepted connection (plain, or after the TLS handshake) until it ends or the
/// listener drains.
async fn serve_connection<I>(
    proxy: Arc<Proxy>,
    builder: auto::Builder<TokioExecutor>,
    graceful: hyper_util::server::graceful::Watcher,
    io: I,
    addr: SocketAddr,
    client: SocketAddr,
    tls: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, addr, client, tls, req).await) }
    });
    let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service).into_owned());
    if let Err(e) = conn.await {
        tracing::debug!(%client, error = %e, "Connection ended with an error.");
    }
}

fn connection_builder(settings: &ProxySettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes.max(8192));
    builder.http2().timer(TokioTimer::new()).max_header_list_size(settings.max_header_bytes as u32);
    builder
}

async fn handle(
    proxy: &Proxy,
    addr: SocketAddr,
    client: SocketAddr,
    tls: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let start_ms = crate::clock::now_ms();
    let snapshot = proxy.control.snapshot();
    let Some(routes) = snapshot.http_listeners.get(&addr) else {
        return respond::not_found();
    };
    let host = match req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host.to_string(),
        None => req.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
    };
    let index = match routes.router.route(&host, req.uri().path()) {
        Route::Rule(index) => index,
        Route::Redirect(path) => {
            let location = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            return respond::moved(&location);
        }
        Route::NotFound => return respond::not_found(),
    };
    let target = &routes.rules[index];
    if !target.servers.is_empty() {
        let declared =
            req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > proxy.settings.max_body_bytes) {
            return respond::too_large();
        }
        let mut req = req;
        let scheme = if tls { "https" } else { "http" };
        let headers = bridge::balancer_headers(req.headers(), req.version(), client, scheme, start_ms);
        super::upstream::prepare(&mut req, &headers);
        return proxy.upstreams.forward(target, client.ip(), req).await;
    }
    let Some((key, qualifier)) = &target.function else {
        return respond::no_target();
    };
    let Some(spec) = snapshot.functions.get(key) else {
        return respond::no_target();
    };
    let request_id = crate::ids::request_id();
    let span =
        tracing::debug_span!("request", location = %target.location_id, function = %key, request_id = %request_id);
    async {
        let (parts, body) = req.into_parts();
        let limit = proxy.functions.settings().max_event_bytes;
        let read = tokio::time::timeout(proxy.settings.body_read_timeout, Limited::new(body, limit).collect()).await;
        let body = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return respond::errno(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    status::REQUEST_TOO_LARGE,
                    "RequestTooLarge",
                    &request_id,
                );
            }
            Ok(Err(_)) => return respond::bad_request(),
            Err(_) => return respond::request_timeout(),
        };
        let info = RequestInfo {
            request_id: &request_id,
            client,
            lb_id: &routes.lb_id,
            listener_id: &routes.listener_id,
            location_id: &target.location_id,
            vip: addr,
            scheme: if tls { "https" } else { "http" },
            start_ms,
        };
        let event = bridge::event(&parts.method, &parts.uri, parts.version, &parts.headers, &body, &info);
        let invocation = proxy.functions.invoke(spec, qualifier, event, request_id.clone(), None).await;
        match invocation.result {
            Ok(json) => match bridge::integration_response(&json) {
                Some(integration) => {
                    let mut response = Response::new(respond::full(integration.body));
                    *response.status_mut() = integration.status;
                    *response.headers_mut() = integration.headers;
                    response
                }
                None => respond::bad_integration(&request_id),
            },
            Err(e) => respond::function_error(&e, &request_id),
        }
    }
    .instrument(span)
    .await
}
