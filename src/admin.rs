//! The admin listener (`--admin-addr`, default 127.0.0.1:9001), apart from the API and the load balancer: `/live`
//! (the process answers), `/ready` (the store is open and every listener of the current state is bound), `/metrics`
//! (Prometheus text format, docs/metrics.md) and `/status` (JSON, what `fnlb status` shows).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Api;
use crate::proxy::health::Status;
use crate::stats::{HISTOGRAM_BOUNDS, Histogram};
use crate::store::Store;
use crate::store::postgres::NodeRecord;

pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9001";

// The metrics' names (docs/metrics.md).
pub const BUILD_INFO: &str = "fnlb_build_info";
pub const UPTIME: &str = "fnlb_uptime_seconds";
pub const CONNECTIONS_ACTIVE: &str = "fnlb_listener_connections_active";
pub const CONNECTIONS: &str = "fnlb_listener_connections_total";
pub const CONNECTIONS_REFUSED: &str = "fnlb_listener_connections_refused_total";
pub const TLS_HANDSHAKES: &str = "fnlb_listener_tls_handshakes_total";
pub const TLS_ERRORS: &str = "fnlb_listener_tls_errors_total";
pub const HTTP_REQUESTS: &str = "fnlb_http_requests_total";
pub const HTTP_DURATION: &str = "fnlb_http_request_duration_seconds";
pub const HTTP_RESPONSE_BYTES: &str = "fnlb_http_response_bytes_total";
pub const UPSTREAM_CONNECT_ERRORS: &str = "fnlb_upstream_connect_errors_total";
pub const UPSTREAM_RETRIES: &str = "fnlb_upstream_retries_total";
pub const TARGET_HEALTHY: &str = "fnlb_target_healthy";
pub const INVOCATIONS: &str = "fnlb_function_invocations_total";
pub const INVOCATION_DURATION: &str = "fnlb_function_duration_seconds";
pub const INIT_DURATION: &str = "fnlb_function_init_duration_seconds";
pub const COLD_STARTS: &str = "fnlb_function_cold_starts_total";
pub const THROTTLES: &str = "fnlb_function_throttles_total";
pub const INSTANCES: &str = "fnlb_function_instances";
pub const QUEUE_LENGTH: &str = "fnlb_function_queue_length";
pub const RESERVED_SHARE: &str = "fnlb_function_reserved_share_mb";
pub const RESERVED_IN_USE: &str = "fnlb_function_reserved_in_use_mb";
pub const API_REQUESTS: &str = "fnlb_api_requests_total";
pub const STORE_UP: &str = "fnlb_store_up";
pub const STATE_VERSION: &str = "fnlb_state_version";
pub const STATE_LAG: &str = "fnlb_state_version_lag";

/// The store as `/status` and `/metrics` show it.
struct StoreStatus {
    up: bool,
    /// The version this node serves, and the newest it knows of.
    serving: u64,
    head: u64,
    /// This node's name and the cluster's nodes as last read.
    cluster: Option<(String, Vec<NodeRecord>)>,
}

/// The SCF status code of a throttled invocation (no instance within the queue timeout).
const THROTTLED: u16 = 432;

pub struct Admin {
    pub api: Arc<Api>,
    pub data_dir: PathBuf,
    pub started: Instant,
    ready: AtomicBool,
}

impl Admin {
    pub fn new(api: Arc<Api>, data_dir: PathBuf) -> Admin {
        Admin { api, data_dir, started: Instant::now(), ready: AtomicBool::new(false) }
    }

    /// Marks fnlb ready (and tells systemd, when it started fnlb with `Type=notify`).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        notify_systemd("READY=1");
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(req.uri().path())) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    }

    fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        match path {
            "/live" => text(StatusCode::OK, "live\n".into(), "text/plain"),
            "/ready" if self.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n".into(), "text/plain"),
            "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".into(), "text/plain"),
            "/metrics" => text(StatusCode::OK, self.metrics(), "text/plain; version=0.0.4"),
            "/status" => text(StatusCode::OK, self.status().to_string(), "application/json"),
            _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        }
    }

    /// Every metric in Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let snapshot = self.api.control.snapshot();
        family(&mut out, BUILD_INFO, "gauge", "The running version.");
        line(&mut out, BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        family(&mut out, UPTIME, "gauge", "Seconds since fnlb started.");
        line(&mut out, UPTIME, &[], self.started.elapsed().as_secs_f64());
        let store = self.store_status();
        family(&mut out, STORE_UP, "gauge", "1 while the last exchange with the store succeeded.");
        line(&mut out, STORE_UP, &[], f64::from(u8::from(store.up)));
        family(&mut out, STATE_VERSION, "gauge", "The version of the state this node serves.");
        line(&mut out, STATE_VERSION, &[], store.serving as f64);
        family(&mut out, STATE_LAG, "gauge", "Versions committed in the cluster that this node does not serve yet.");
        line(&mut out, STATE_LAG, &[], store.head.saturating_sub(store.serving) as f64);

        let mut listeners: Vec<_> = snapshot.http_listeners.values().collect();
        listeners.sort_by(|a, b| a.listener_id.cmp(&b.listener_id));
        let counters = [
            (CONNECTIONS_ACTIVE, "gauge", "Open client connections of a layer-7 listener."),
            (CONNECTIONS, "counter", "Client connections a layer-7 listener accepted."),
            (CONNECTIONS_REFUSED, "counter", "Client connections a layer-7 listener closed at once, past a cap."),
            (TLS_HANDSHAKES, "counter", "TLS handshakes completed by an HTTPS listener."),
            (TLS_ERRORS, "counter", "TLS handshakes that failed or timed out."),
        ];
        for (name, kind, help) in counters {
            family(&mut out, name, kind, help);
            for l in &listeners {
                let s = &l.stats;
                let value = match name {
                    CONNECTIONS_ACTIVE => s.connections_active.load(Ordering::Relaxed) as f64,
                    CONNECTIONS => s.connections_total.load(Ordering::Relaxed) as f64,
                    CONNECTIONS_REFUSED => s.connections_refused.load(Ordering::Relaxed) as f64,
                    TLS_HANDSHAKES => s.tls_handshakes.load(Ordering::Relaxed) as f64,
                    _ => s.tls_errors.load(Ordering::Relaxed) as f64,
                };
                line(&mut out, name, &[("load_balancer", &l.lb_id), ("listener", &l.listener_id)], value);
            }
        }

        let rules: Vec<_> = listeners.iter().flat_map(|l| l.rules.iter().map(move |r| (*l, r))).collect();
        family(&mut out, HTTP_REQUESTS, "counter", "Requests a rule answered, by status class.");
        for (l, r) in &rules {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let labels = [
                    ("load_balancer", &*l.lb_id),
                    ("listener", &l.listener_id),
                    ("rule", &r.location_id),
                    ("class", class),
                ];
                line(&mut out, HTTP_REQUESTS, &labels, r.stats.by_class[i].load(Ordering::Relaxed) as f64);
            }
        }
        family(&mut out, HTTP_DURATION, "histogram", "Seconds from a request's head to its answer's head, per rule.");
        for (l, r) in &rules {
            let labels = [("load_balancer", &*l.lb_id), ("listener", &l.listener_id), ("rule", &r.location_id)];
            histogram(&mut out, HTTP_DURATION, &labels, &r.stats.duration);
        }
        family(
            &mut out,
            HTTP_RESPONSE_BYTES,
            "counter",
            "Bytes of answers whose length was known when their head was sent, per rule.",
        );
        for (l, r) in &rules {
            let labels = [("load_balancer", &*l.lb_id), ("listener", &l.listener_id), ("rule", &r.location_id)];
            line(&mut out, HTTP_RESPONSE_BYTES, &labels, r.stats.response_bytes.load(Ordering::Relaxed) as f64);
        }

        let mut targets = self.api.health.all();
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        let per_target = [
            (UPSTREAM_CONNECT_ERRORS, "counter", "Connections to a target that failed."),
            (UPSTREAM_RETRIES, "counter", "Requests sent to another target after a failed connection."),
            (TARGET_HEALTHY, "gauge", "1 while a target takes traffic by its health checks, 0 while it is unhealthy."),
        ];
        for (name, kind, help) in per_target {
            family(&mut out, name, kind, help);
            for ((rule, addr), state) in &targets {
                let value = match name {
                    UPSTREAM_CONNECT_ERRORS => state.connect_errors.load(Ordering::Relaxed) as f64,
                    UPSTREAM_RETRIES => state.retries.load(Ordering::Relaxed) as f64,
                    _ => f64::from(u8::from(state.status() != Status::Unhealthy)),
                };
                line(&mut out, name, &[("rule", rule), ("target", &addr.to_string())], value);
            }
        }

        let mut functions = self.api.functions.all_stats();
        functions.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
        let codes: Vec<_> = functions.iter().map(|(_, stats, _)| stats.codes()).collect();
        family(&mut out, INVOCATIONS, "counter", "Invocations of a function, by SCF status code (200: success).");
        for ((key, _, _), codes) in functions.iter().zip(&codes) {
            for (&code, &count) in codes {
                let code = code.to_string();
                let labels = [("namespace", &*key.namespace), ("function", &key.name), ("code", &code)];
                line(&mut out, INVOCATIONS, &labels, count as f64);
            }
        }
        family(&mut out, INVOCATION_DURATION, "histogram", "Seconds an invocation took.");
        for (key, stats, _) in &functions {
            histogram(&mut out, INVOCATION_DURATION, &function_labels(key), &stats.duration);
        }
        family(&mut out, INIT_DURATION, "histogram", "Seconds a new instance took to be ready (a cold start).");
        for (key, stats, _) in &functions {
            histogram(&mut out, INIT_DURATION, &function_labels(key), &stats.init_duration);
        }
        family(&mut out, COLD_STARTS, "counter", "Instances started for invocations.");
        for (key, stats, _) in &functions {
            line(&mut out, COLD_STARTS, &function_labels(key), stats.cold_starts.load(Ordering::Relaxed) as f64);
        }
        family(&mut out, THROTTLES, "counter", "Invocations refused for want of an instance (SCF status 432).");
        for ((key, _, _), codes) in functions.iter().zip(&codes) {
            let throttled = codes.get(&THROTTLED).copied().unwrap_or(0);
            line(&mut out, THROTTLES, &function_labels(key), throttled as f64);
        }
        family(
            &mut out,
            INSTANCES,
            "gauge",
            "A function's instances now: busy (running an invocation, or handed to one) or idle.",
        );
        for (key, _, counts) in &functions {
            let [ns, name] = function_labels(key);
            line(&mut out, INSTANCES, &[ns, name, ("state", "busy")], counts.busy as f64);
            line(&mut out, INSTANCES, &[ns, name, ("state", "idle")], counts.idle as f64);
        }
        family(&mut out, QUEUE_LENGTH, "gauge", "Invocations waiting for an instance of a function now.");
        for (key, _, counts) in &functions {
            line(&mut out, QUEUE_LENGTH, &function_labels(key), counts.waiting as f64);
        }
        let mut reserved = self.api.functions.reserved();
        reserved.sort_by(|a, b| a.0.cmp(&b.0));
        family(&mut out, RESERVED_SHARE, "gauge", "MB of a function's reserved concurrency this node may use.");
        for (key, r) in &reserved {
            line(&mut out, RESERVED_SHARE, &function_labels(key), f64::from(r.share()));
        }
        family(&mut out, RESERVED_IN_USE, "gauge", "MB of a function's reserved concurrency its invocations hold now.");
        for (key, r) in &reserved {
            line(&mut out, RESERVED_IN_USE, &function_labels(key), f64::from(r.in_use()));
        }

        family(&mut out, API_REQUESTS, "counter", "API requests answered, by action and error code (OK: success).");
        for ((action, code), count) in self.api.answered.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            line(&mut out, API_REQUESTS, &[("action", action), ("code", code)], *count as f64);
        }
        out
    }

    /// Where the state is kept and how current this node is.
    fn store_status(&self) -> StoreStatus {
        let serving = self.api.control.snapshots().in_effect();
        match self.api.control.store() {
            Store::Embedded(_) => StoreStatus { up: true, serving, head: serving, cluster: None },
            Store::Cluster(pg) => StoreStatus {
                up: pg.is_up(),
                serving,
                head: pg.head_seen().max(serving),
                cluster: Some((pg.node_id().to_string(), pg.nodes_seen())),
            },
        }
    }

    /// What `fnlb status` shows: version, uptime, data directory, listeners, functions, recent error rates.
    pub fn status(&self) -> serde_json::Value {
        let snapshot = self.api.control.snapshot();
        let state = &snapshot.state;
        let mut listeners: Vec<serde_json::Value> = state
            .listeners
            .values()
            .map(|l| {
                let lb = &state.load_balancers[&l.lb_id];
                json!({
                    "loadBalancer": lb.id, "name": lb.name, "listener": l.id, "protocol": l.protocol.as_api(),
                    "address": format!("{}:{}", lb.vip, l.port), "serving": crate::snapshot::serves(l.protocol),
                })
            })
            .collect();
        listeners.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
        let mut functions: Vec<serde_json::Value> = self
            .api
            .functions
            .all_stats()
            .into_iter()
            .filter(|(key, ..)| state.functions.contains_key(key))
            .map(|(key, stats, counts)| {
                // The last five minutes.
                let recent = stats.read();
                let recent = &recent[recent.len().saturating_sub(5)..];
                let invocations: u64 = recent.iter().map(|m| m.invocations).sum();
                let errors: u64 = recent.iter().map(|m| m.errors).sum();
                json!({
                    "namespace": key.namespace, "name": key.name, "busy": counts.busy, "idle": counts.idle,
                    "waiting": counts.waiting, "invocations5m": invocations, "errors5m": errors,
                    "errorRate5m": if invocations == 0 { 0.0 } else { errors as f64 / invocations as f64 },
                })
            })
            .collect();
        functions.sort_by(|a, b| {
            (a["namespace"].as_str(), a["name"].as_str()).cmp(&(b["namespace"].as_str(), b["name"].as_str()))
        });
        let store = self.store_status();
        let store = json!({
            "kind": if store.cluster.is_some() { "postgres" } else { "sqlite" },
            "up": store.up,
            "stateVersion": store.serving,
            "lag": store.head.saturating_sub(store.serving),
            "node": store.cluster.as_ref().map(|(id, _)| id),
            "nodes": store.cluster.as_ref().map(|(_, nodes)| nodes.iter().map(|n| json!({
                "node": n.node_id, "stateVersion": n.version, "heartbeatMs": n.heartbeat_ms,
                "startedMs": n.started_ms, "live": n.live,
            })).collect::<Vec<_>>()),
        });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": self.started.elapsed().as_secs(),
            "dataDir": self.data_dir,
            "ready": self.ready.load(Ordering::Acquire),
            "store": store,
            "functionsDeployed": state.functions.len(),
            "loadBalancers": state.load_balancers.len(),
            "listeners": listeners,
            "functions": functions,
        })
    }
}

fn function_labels(key: &crate::state::FunctionKey) -> [(&str, &str); 2] {
    [("namespace", &key.namespace), ("function", &key.name)]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = writeln!(out, " {value}");
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{escaped}\"");
    }
    out.push('}');
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
    let (cumulative, sum) = histogram.read();
    for (i, count) in cumulative.iter().enumerate() {
        let le = HISTOGRAM_BOUNDS.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = write!(out, "{name}_bucket");
        write_labels(out, labels, Some(&le));
        let _ = writeln!(out, " {count}");
    }
    let _ = write!(out, "{name}_sum");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {sum}");
    let _ = write!(out, "{name}_count");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {}", cumulative.last().copied().unwrap_or(0));
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Sends a state line to systemd's notification socket when systemd started fnlb with `Type=notify`.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    // An abstract socket is named with a leading `@`.
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "Cannot notify systemd.");
    }
}
