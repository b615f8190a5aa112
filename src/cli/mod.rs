//! The `fnlb` command line: `serve` runs the node; every other subcommand is a client of its API.

pub mod apply;
mod clb;
pub mod config_file;
mod function;
mod ops;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::client::{Client, Credentials};
use crate::config::{self, Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "fnlb",
    version,
    about = "A load balancer with serverless functions behind it, speaking Tencent CLB and SCF"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run fnlb: the API, the load balancer and the function service.
    Serve(Box<ServeArgs>),
    /// Create, update, list, show and delete functions.
    #[command(subcommand)]
    Function(function::FunctionCommand),
    /// Invoke a function synchronously and print its result.
    Invoke(function::InvokeArgs),
    /// List a function's triggers with their access paths.
    Triggers(function::TriggersArgs),
    /// Load balancers, listeners, rules and function bindings.
    #[command(subcommand)]
    Clb(clb::ClbCommand),
    /// The running node at a glance: version, uptime, listeners, functions and their error rates.
    Status(ops::StatusArgs),
    /// A function's invocation logs (START/END/Report lines), optionally followed.
    Logs(ops::LogsArgs),
    /// Create or update the functions and load balancers a stack file (YAML) describes.
    Apply(apply::ApplyArgs),
    /// Call any API action with JSON parameters, as tccli does: `fnlb call clb DescribeLoadBalancers '{}'`.
    Call(CallArgs),
    /// The store itself: `fnlb store copy` moves a single node's state into PostgreSQL for a cluster.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped single node's state (its SQLite store: functions, code, load balancers, certificates,
    /// tasks, the asynchronous queue) into an empty PostgreSQL database, then read it back and compare
    /// (docs/cluster.md).
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The single node's data directory (holding fnlb.sqlite3).
    #[arg(long)]
    pub from: PathBuf,
    /// The cluster's database: postgres://USER[:PASSWORD]@HOST:PORT/DB.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// `scf` or `clb`.
    pub service: String,
    /// The action, e.g. `RegisterTargets`.
    pub action: String,
    /// The parameters as a JSON object.
    #[arg(default_value = "{}")]
    pub params: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings, each named as its flag (`idle-timeout = 60`); flags and environment variables
    /// win over it (docs/configuration.md).
    #[arg(long, env = "FNLB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where fnlb keeps its store, code and credentials.
    #[arg(long, env = "FNLB_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address of the TencentCloud API endpoint.
    #[arg(long, env = "FNLB_API_ADDR", default_value = config::DEFAULT_API_ADDR)]
    pub api_addr: SocketAddr,
    /// Address of the admin listener (`/live`, `/ready`, `/metrics`, `/status`).
    #[arg(long, env = "FNLB_ADMIN_ADDR", default_value = crate::admin::DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// Region of requests that name none (and of the example).
    #[arg(long, env = "FNLB_REGION", default_value = config::DEFAULT_REGION)]
    pub region: String,
    /// Log format of fnlb's own logs.
    #[arg(long, env = "FNLB_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Python interpreter for the Python runtimes (default: the host's python3, resolved once).
    #[arg(long, env = "FNLB_PYTHON")]
    pub python: Option<PathBuf>,
    /// Node.js for the Node.js runtimes (default: the host's node).
    #[arg(long, env = "FNLB_NODE")]
    pub node: Option<PathBuf>,
    /// Deploy the Hello CLB example (function, load balancer, HTTP listener, rule) and print its access path.
    #[arg(long)]
    pub example: bool,
    /// Port of the example's HTTP listener.
    #[arg(long, env = "FNLB_EXAMPLE_PORT", default_value_t = config::DEFAULT_EXAMPLE_PORT)]
    pub example_port: u16,
    /// How function instances are isolated: bubblewrap namespaces when available (auto), always, or never.
    #[arg(long, env = "FNLB_SANDBOX", value_enum, default_value = "auto")]
    pub sandbox: crate::functions::sandbox::SandboxMode,
    /// Where functions may connect to: other hosts through NAT (allow), or nowhere (none). Functions never reach
    /// this host, whichever it is.
    #[arg(long, env = "FNLB_FUNCTION_EGRESS", value_enum, default_value = "allow")]
    pub function_egress: crate::functions::network::Egress,
    /// The first of the users functions run as (one each) when fnlb runs as root.
    #[arg(long, env = "FNLB_FUNCTION_UID_BASE", default_value_t = crate::functions::sandbox::DEFAULT_FUNCTION_UID_BASE)]
    pub function_uid_base: u32,
    /// The memory, in MB, that buys an instance one processor: an instance may use MemorySize divided by this
    /// many processors (0: no limit, only a share in proportion to MemorySize under contention).
    #[arg(long, env = "FNLB_FUNCTION_MB_PER_CPU", default_value_t = crate::functions::limits::DEFAULT_MB_PER_CPU)]
    pub function_mb_per_cpu: u32,
    /// Start Python instances by forking the Python runtime's pre-initialised zygote (false: start each interpreter).
    #[arg(long, env = "FNLB_ZYGOTE", default_value_t = true, action = clap::ArgAction::Set)]
    pub zygote: bool,
    /// Node.js instances the zygote keeps started ahead of time, each taking on any Node.js function when a request
    /// needs it (0: start an interpreter per Node.js instance). Needs the zygote, a sandbox and root.
    #[arg(long, env = "FNLB_NODE_SPARES", default_value_t = crate::functions::DEFAULT_NODE_SPARES)]
    pub node_spares: usize,
    /// When function instances run under the SCHED_BATCH scheduling policy, where waking one never preempts fnlb:
    /// auto (while other processes take less than a quarter of the processors' time, measured every second),
    /// true (always) or false (never: the default policy).
    #[arg(long, env = "FNLB_BATCH_SCHEDULING", value_enum, default_value_t = crate::functions::scheduling::BatchScheduling::Auto)]
    pub batch_scheduling: crate::functions::scheduling::BatchScheduling,
    /// Seconds between the attempts of a failed asynchronous invocation.
    #[arg(long, env = "FNLB_ASYNC_RETRY_INTERVAL", default_value_t = crate::functions::queue::DEFAULT_ASYNC_RETRY_INTERVAL.as_secs())]
    pub async_retry_interval: u64,
    /// Seconds an instance may stay idle before it is stopped (functions scale to zero).
    #[arg(long, env = "FNLB_IDLE_TIMEOUT", default_value_t = crate::functions::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
    /// Instances one function may run at once.
    #[arg(long, env = "FNLB_MAX_INSTANCES_PER_FUNCTION", default_value_t = crate::functions::DEFAULT_MAX_INSTANCES_PER_FUNCTION)]
    pub max_instances_per_function: usize,
    /// Seconds a request may wait for a free instance before it is answered 432 (HTTP 503).
    #[arg(long, env = "FNLB_QUEUE_TIMEOUT", default_value_t = crate::functions::DEFAULT_QUEUE_TIMEOUT.as_secs())]
    pub queue_timeout: u64,
    /// Seconds open connections get to finish their requests when fnlb stops (SIGTERM) or a listener is removed.
    #[arg(long, env = "FNLB_DRAIN_TIMEOUT", default_value_t = crate::proxy::DEFAULT_DRAIN_TIMEOUT.as_secs())]
    pub drain_timeout: u64,
    /// Seconds a client may take to send a request's headers (CLB's `client_header_timeout`); slower clients are
    /// cut off.
    #[arg(long, env = "FNLB_HEADER_TIMEOUT", default_value_t = crate::proxy::DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_timeout: u64,
    /// A JSON file of further accounts (`[{"SecretId", "SecretKey", "AppId", "Uin", "Type"}]`), read at start
    /// (docs/configuration.md).
    #[arg(long, env = "FNLB_ACCOUNTS")]
    pub accounts: Option<PathBuf>,
    /// Seconds a client may pause while sending a request body (CLB's `client_body_timeout`); past it, 408.
    #[arg(long, env = "FNLB_BODY_TIMEOUT", default_value_t = crate::proxy::DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    pub body_timeout: u64,
    /// Seconds to connect to a server target (CLB's `proxy_connect_timeout`); past it, the next target.
    #[arg(long, env = "FNLB_PROXY_CONNECT_TIMEOUT", default_value_t = crate::proxy::upstream::DEFAULT_CONNECT_TIMEOUT.as_secs())]
    pub proxy_connect_timeout: u64,
    /// Seconds a server target may take none of a request body the client has sent (CLB's `proxy_send_timeout`);
    /// past it, 504.
    #[arg(long, env = "FNLB_PROXY_SEND_TIMEOUT", default_value_t = crate::proxy::upstream::DEFAULT_SEND_TIMEOUT.as_secs())]
    pub proxy_send_timeout: u64,
    /// Seconds from a request sent to a server target to its response head (CLB's `proxy_read_timeout`); past
    /// it, 504.
    #[arg(long, env = "FNLB_PROXY_READ_TIMEOUT", default_value_t = crate::proxy::upstream::DEFAULT_READ_TIMEOUT.as_secs())]
    pub proxy_read_timeout: u64,
    /// Seconds an idle keep-alive client connection stays open (CLB's `keepalive_timeout`; 0: one request per
    /// connection).
    #[arg(long, env = "FNLB_KEEPALIVE_TIMEOUT", default_value_t = crate::proxy::DEFAULT_KEEPALIVE_TIMEOUT.as_secs())]
    pub keepalive_timeout: u64,
    /// Requests one client connection may carry (CLB's `keepalive_requests`).
    #[arg(long, env = "FNLB_KEEPALIVE_REQUESTS", default_value_t = crate::proxy::DEFAULT_KEEPALIVE_REQUESTS)]
    pub keepalive_requests: u32,
    /// Rules one layer-7 listener may hold (Tencent's quota is 50; a self-hosted balancer may hold more).
    #[arg(long, env = "FNLB_RULES_PER_LISTENER", default_value_t = crate::state::DEFAULT_RULES_PER_LISTENER)]
    pub rules_per_listener: usize,
    /// Open connections one listener accepts; past it, new connections are closed at once.
    #[arg(long, env = "FNLB_MAX_CONNECTIONS", default_value_t = crate::proxy::DEFAULT_MAX_CONNECTIONS_PER_LISTENER)]
    pub max_connections: usize,
    /// Open connections one listener accepts from one client address (0: no such cap); past it, new connections
    /// from that address are closed at once.
    #[arg(long, env = "FNLB_MAX_CONNECTIONS_PER_CLIENT", default_value_t = crate::proxy::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    pub max_connections_per_client: usize,
    /// Serve plain HTTP/1.1 exchanges on the direct path, written for them (false: every request on the general
    /// path; the answers are the same).
    #[arg(long, env = "FNLB_DIRECT_PATH", default_value_t = true, action = clap::ArgAction::Set)]
    pub direct_path: bool,
    /// The largest request body, in bytes, forwarded to server targets (CLB's `client_max_body_size`).
    #[arg(long, env = "FNLB_MAX_BODY_SIZE", default_value_t = crate::proxy::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_size: u64,
    /// Instances of one function that may be starting at once (its scale-out rate).
    #[arg(long, env = "FNLB_MAX_STARTING_PER_FUNCTION", default_value_t = crate::functions::DEFAULT_MAX_STARTING_PER_FUNCTION)]
    pub max_starting_per_function: usize,
    /// Milliseconds a request waits for a busy instance of a function with short invocations to be released
    /// before it starts another (0: start one at once).
    #[arg(long, env = "FNLB_WARM_WAIT_LIMIT", default_value_t = crate::functions::DEFAULT_WARM_WAIT_LIMIT.as_millis() as u64)]
    pub warm_wait_limit: u64,
    /// Milliseconds a request waits for a busy instance of a function with invocations shorter than this to be
    /// released before it starts another, while the processors are saturated (0: as when they are not).
    #[arg(long, env = "FNLB_SATURATED_WAIT_LIMIT", default_value_t = crate::functions::DEFAULT_SATURATED_WAIT_LIMIT.as_millis() as u64)]
    pub saturated_wait_limit: u64,
    /// Instances of one function started on demand before callers of short invocations wait for a busy one first
    /// (at least 1; default: 4 per processor).
    #[arg(long, env = "FNLB_EAGER_INSTANCES_PER_FUNCTION")]
    pub eager_instances_per_function: Option<usize>,
    /// Access logs, a line per request of each layer-7 listener: `-` for stdout, or a directory for one file per
    /// listener (rotated by size; SIGHUP reopens them). Off when unset.
    #[arg(long, env = "FNLB_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Bytes an access log file may reach before it is rotated.
    #[arg(long, env = "FNLB_ACCESS_LOG_MAX_BYTES", default_value_t = crate::proxy::access_log::DEFAULT_MAX_BYTES)]
    pub access_log_max_bytes: u64,
    /// Rotated access log files kept per listener.
    #[arg(long, env = "FNLB_ACCESS_LOG_FILES", default_value_t = crate::proxy::access_log::DEFAULT_FILES)]
    pub access_log_files: usize,
    /// Seconds a web console session lasts after sign-in.
    #[arg(long, env = "FNLB_CONSOLE_SESSION_TTL", default_value_t = crate::console::DEFAULT_SESSION_TTL.as_secs())]
    pub console_session_ttl: u64,
    /// Where the state is kept: the SQLite file in the data directory (default), or a PostgreSQL database that
    /// several nodes share, `postgres://USER[:PASSWORD]@HOST:PORT/DB` (docs/cluster.md).
    #[arg(long, env = "FNLB_STORE")]
    pub store: Option<String>,
    /// This node's name in a cluster (default: the host name).
    #[arg(long, env = "FNLB_NODE_ID")]
    pub node_id: Option<String>,
    /// Bind every listener on this address instead of its load balancer's VIP (several nodes on one host).
    #[arg(long, env = "FNLB_LISTEN_ADDRESS")]
    pub listen_address: Option<std::net::IpAddr>,
    /// Milliseconds a change may wait for the cluster's database before the API answers that it is unreachable.
    #[arg(long, env = "FNLB_STORE_WRITE_TIMEOUT", default_value_t = crate::store::postgres::DEFAULT_WRITE_TIMEOUT.as_millis() as u64)]
    pub store_write_timeout: u64,
    /// Milliseconds between two reads of the cluster's newest version (besides the notifications).
    #[arg(long, env = "FNLB_STORE_POLL_INTERVAL", default_value_t = crate::store::postgres::DEFAULT_POLL_INTERVAL.as_millis() as u64)]
    pub store_poll_interval: u64,
    /// Milliseconds of silence after which a cluster node counts as gone (its asynchronous jobs go to others).
    #[arg(long, env = "FNLB_NODE_TIMEOUT", default_value_t = crate::store::postgres::DEFAULT_NODE_TIMEOUT.as_millis() as u64)]
    pub node_timeout: u64,
    /// Seconds a code package no function runs any more is kept before it is removed (with its unpacked copy).
    #[arg(long, env = "FNLB_CODE_RETENTION", default_value_t = crate::functions::DEFAULT_CODE_RETENTION.as_secs())]
    pub code_retention: u64,
    /// Refuse API requests that do not sign the `X-TC-Action` header (the Tencent SDKs sign only content-type and
    /// host; fnlb's own CLI signs it).
    #[arg(long, env = "FNLB_API_REQUIRE_SIGNED_ACTION")]
    pub api_require_signed_action: bool,
    /// Open API connections in all; past it a new connection is closed at once.
    #[arg(long, env = "FNLB_API_MAX_CONNECTIONS", default_value_t = crate::api::guard::DEFAULT_MAX_CONNECTIONS)]
    pub api_max_connections: usize,
    /// Open API connections from one client address.
    #[arg(long, env = "FNLB_API_MAX_CONNECTIONS_PER_CLIENT", default_value_t = crate::api::guard::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    pub api_max_connections_per_client: usize,
    /// Bytes of API request bodies read at once, over every connection.
    #[arg(long, env = "FNLB_API_MAX_BODY_IN_FLIGHT", default_value_t = crate::api::guard::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT)]
    pub api_max_body_in_flight: usize,
    /// Seconds an API connection may take to send a request, from accept or from its previous answer.
    #[arg(long, env = "FNLB_API_HEADER_TIMEOUT", default_value_t = crate::api::guard::DEFAULT_HEADER_TIMEOUT.as_secs())]
    pub api_header_timeout: u64,
    /// The certificate chain (PEM) the API and the web console are served with over HTTPS; with --api-tls-key.
    #[arg(long, env = "FNLB_API_TLS_CERT")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-tls-cert.
    #[arg(long, env = "FNLB_API_TLS_KEY")]
    pub api_tls_key: Option<PathBuf>,
    /// Where a cluster node's invocation logs go: `shared` (also to the database, so that every node's logs read
    /// on any node) or `local` (kept on the node that ran the invocation only, which costs the database nothing).
    #[arg(long, env = "FNLB_CLUSTER_LOGS", value_enum, default_value = "shared")]
    pub cluster_logs: crate::store::ClusterLogs,
}

impl ServeArgs {
    pub fn into_config(self) -> Result<Config, config::ConfigError> {
        let mut config = Config::new(self.data_dir, self.api_addr, self.region, self.log_format)?;
        config.interpreters = crate::functions::runtimes::Interpreters { python: self.python, node: self.node };
        config.admin_addr = self.admin_addr;
        config.example_port = self.example.then_some(self.example_port);
        config.sandbox = self.sandbox;
        config.function_egress = self.function_egress;
        config.function_uid_base = self.function_uid_base;
        config.engine.mb_per_cpu = self.function_mb_per_cpu;
        config.engine.idle_timeout = Duration::from_secs(self.idle_timeout);
        config.engine.zygote = self.zygote;
        config.engine.node_spares = self.node_spares;
        config.engine.batch_scheduling = self.batch_scheduling;
        config.queue.retry_interval = Duration::from_secs(self.async_retry_interval);
        config.engine.max_instances_per_function = self.max_instances_per_function.max(1);
        config.engine.queue_timeout = Duration::from_secs(self.queue_timeout);
        config.proxy.drain_timeout = Duration::from_secs(self.drain_timeout);
        config.proxy.header_read_timeout = Duration::from_secs(self.header_timeout.max(1));
        config.accounts_file = self.accounts;
        config.proxy.body_read_timeout = Duration::from_secs(self.body_timeout.max(1));
        config.upstream.connect_timeout = Duration::from_secs(self.proxy_connect_timeout.max(1));
        config.upstream.send_timeout = Duration::from_secs(self.proxy_send_timeout.max(1));
        config.upstream.read_timeout = Duration::from_secs(self.proxy_read_timeout.max(1));
        config.proxy.keepalive_timeout = Duration::from_secs(self.keepalive_timeout);
        config.proxy.keepalive_requests = self.keepalive_requests.max(1);
        config.limits.rules_per_listener = self.rules_per_listener.max(1);
        config.proxy.max_connections_per_listener = self.max_connections.max(1);
        config.proxy.max_connections_per_client = self.max_connections_per_client;
        config.proxy.max_body_bytes = self.max_body_size;
        config.proxy.direct_path = self.direct_path;
        config.engine.max_starting_per_function = self.max_starting_per_function.max(1);
        config.engine.warm_wait_limit = Duration::from_millis(self.warm_wait_limit);
        config.engine.saturated_wait_limit = Duration::from_millis(self.saturated_wait_limit);
        if let Some(eager) = self.eager_instances_per_function {
            config.engine.eager_instances_per_function = eager.max(1);
        }
        config.console.session_ttl = Duration::from_secs(self.console_session_ttl.max(1));
        config.listen_address = self.listen_address;
        config.code_retention = Duration::from_secs(self.code_retention);
        config.api.require_signed_action = self.api_require_signed_action;
        config.api.guard = crate::api::guard::GuardSettings {
            max_connections: self.api_max_connections.max(1),
            max_connections_per_client: self.api_max_connections_per_client.max(1),
            max_body_bytes_in_flight: self.api_max_body_in_flight.max(crate::api::DEFAULT_MAX_BODY_BYTES),
            header_timeout: Duration::from_secs(self.api_header_timeout.max(1)),
        };
        config.api.tls = match (self.api_tls_cert, self.api_tls_key) {
            (Some(cert), Some(key)) => Some(crate::api::tls::TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(config::ConfigError::ApiTls),
        };
        config.console.secure_cookie = config.api.tls.is_some();
        config.cluster = match self.store.filter(|s| !s.is_empty()) {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                use crate::store::postgres as pg;
                let write_timeout = Duration::from_millis(self.store_write_timeout.max(100));
                let node_timeout = Duration::from_millis(self.node_timeout.max(1000));
                Some(crate::store::ClusterSettings {
                    url,
                    node_id: self.node_id.filter(|n| !n.is_empty()).unwrap_or_else(config::host_name),
                    write_timeout,
                    poll_interval: Duration::from_millis(self.store_poll_interval.max(10)),
                    heartbeat_interval: pg::DEFAULT_HEARTBEAT_INTERVAL.min(node_timeout / 3),
                    node_timeout,
                    pool_size: pg::DEFAULT_POOL_SIZE,
                    logs: self.cluster_logs,
                })
            }
            Some(_) => return Err(config::ConfigError::Store),
        };
        config.access_log =
            self.access_log.filter(|a| !a.is_empty()).map(|a| crate::proxy::access_log::AccessLogSettings {
                destination: if a == "-" {
                    crate::proxy::access_log::Destination::Stdout
                } else {
                    crate::proxy::access_log::Destination::Directory(a.into())
                },
                max_bytes: self.access_log_max_bytes.max(1),
                files: self.access_log_files,
            });
        Ok(config)
    }
}

/// Parses the command line, with the settings of `serve --config FILE` added where the command line and the
/// environment give none. `--help`, `--version` and usage errors end the process, as clap does.
pub fn parse() -> Result<Cli, config_file::ConfigFileError> {
    use clap::{CommandFactory, FromArgMatches};
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(argv.clone());
    if let Some(("serve", serve)) = matches.subcommand()
        && let Some(path) = serve.get_one::<PathBuf>("config")
    {
        argv.extend(config_file::args(path, serve)?);
        return Ok(Cli::parse_from(argv));
    }
    Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// The protocols of the listeners the command line creates.
pub const LISTENER_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TCP", "TCP_SSL", "UDP"];

/// How a client subcommand reaches the API.
#[derive(Debug, Args)]
pub struct Connection {
    /// The fnlb API endpoint [default: where `serve` listens by FNLB_API_ADDR (https with FNLB_API_TLS_CERT),
    /// else http://127.0.0.1:9000].
    #[arg(long, global = true, env = "FNLB_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Region of the request.
    #[arg(long, global = true, env = "TENCENTCLOUD_REGION", default_value = config::DEFAULT_REGION)]
    pub region: String,
    /// A PEM file of certificate authorities trusted for an https:// endpoint, besides the system's.
    #[arg(long, global = true, env = "FNLB_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Data directory whose credentials.json to use when TENCENTCLOUD_SECRET_ID/KEY are not set.
    #[arg(long, global = true, env = "FNLB_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// The variables `serve` takes its API's address and certificate from.
const API_ADDR_VAR: &str = "FNLB_API_ADDR";
const API_TLS_CERT_VAR: &str = "FNLB_API_TLS_CERT";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(
        "no credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or point --data-dir at a data directory with credentials.json ({0})"
    )]
    NoCredentials(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Connection {
    pub fn client(&self) -> Result<Client, CliError> {
        let credentials = match (std::env::var("TENCENTCLOUD_SECRET_ID"), std::env::var("TENCENTCLOUD_SECRET_KEY")) {
            (Ok(id), Ok(key)) if !id.is_empty() && !key.is_empty() => Credentials { secret_id: id, secret_key: key },
            _ => {
                let path = self.data_dir.join("credentials.json");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::NoCredentials(format!("{}: {e}", path.display())))?;
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| CliError::NoCredentials(format!("{}: {e}", path.display())))?;
                let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
                match (field("secretId"), field("secretKey")) {
                    (Some(secret_id), Some(secret_key)) => Credentials { secret_id, secret_key },
                    _ => {
                        return Err(CliError::NoCredentials(format!("{} lacks secretId or secretKey", path.display())));
                    }
                }
            }
        };
        let trust = crate::client::Trust::System { extra: self.ca_cert.clone() };
        Ok(Client::with_trust(&self.endpoint()?, credentials, &self.region, trust)?)
    }

    /// `--endpoint` (`FNLB_ENDPOINT`), else where `serve` listens with the same environment.
    fn endpoint(&self) -> Result<String, CliError> {
        if let Some(endpoint) = self.endpoint.as_ref().filter(|e| !e.is_empty()) {
            return Ok(endpoint.clone());
        }
        let tls = std::env::var_os(API_TLS_CERT_VAR).is_some_and(|cert| !cert.is_empty());
        let scheme = if tls { "https" } else { "http" };
        let addr = std::env::var(API_ADDR_VAR).ok().filter(|a| !a.is_empty());
        let addr = addr.as_deref().unwrap_or(config::DEFAULT_API_ADDR);
        local_url(scheme, addr).map_err(|reason| CliError::Usage(format!("{API_ADDR_VAR}: {reason}")))
    }
}

/// The URL this host reaches a listener at, from the address it binds (`127.0.0.1:9000`; an unspecified address
/// such as `0.0.0.0:9000` or `[::]:9000` is reached on the loopback address).
pub fn local_url(scheme: &str, addr: &str) -> Result<String, String> {
    let addr: SocketAddr =
        addr.parse().map_err(|_| format!("`{addr}` is not an address and port, such as 127.0.0.1:9000"))?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("{scheme}://{}", SocketAddr::new(ip, addr.port())))
}

/// Runs a client subcommand; prints its result (as JSON, unless the command has a summary of its own).
pub async fn run_client(command: Command) -> Result<(), CliError> {
    let output = match command {
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Function(cmd) => return function::run(cmd).await,
        Command::Invoke(args) => return function::invoke(args).await,
        Command::Triggers(args) => function::triggers(args).await?,
        Command::Clb(cmd) => clb::run(cmd).await?,
        Command::Apply(args) => return apply::run(args).await,
        Command::Status(args) => return ops::status(args).await,
        Command::Logs(args) => return ops::logs(args).await,
        Command::Store(StoreCommand::Copy(args)) => return store_copy(args).await,
        Command::Call(args) => {
            let service = crate::api::Service::parse(&args.service)
                .ok_or_else(|| CliError::Usage(format!("unknown service `{}`: scf or clb", args.service)))?;
            let params: Value = serde_json::from_str(&args.params)
                .map_err(|e| CliError::Usage(format!("the parameters are not a JSON object: {e}")))?;
            args.connection.client()?.call(service, &args.action, params).await?
        }
    };
    emit(&format!("{}\n", serde_json::to_string_pretty(&output).expect("JSON values serialise")));
    Ok(())
}

/// A byte count as people read it.
pub fn size(bytes: usize) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// `fnlb store copy`: prints what was copied and verified.
async fn store_copy(args: StoreCopyArgs) -> Result<(), CliError> {
    use crate::store::postgres as pg;
    let settings = crate::store::ClusterSettings {
        url: args.to,
        node_id: "fnlb-store-copy".to_string(),
        write_timeout: STORE_COPY_TIMEOUT,
        poll_interval: pg::DEFAULT_POLL_INTERVAL,
        heartbeat_interval: pg::DEFAULT_HEARTBEAT_INTERVAL,
        node_timeout: pg::DEFAULT_NODE_TIMEOUT,
        pool_size: 1,
        logs: crate::store::ClusterLogs::Local,
    };
    let copied = crate::store::copy::copy(&args.from, settings).await?;
    emit(&format!(
        "Copied and verified: {} entities at version {}, {} code packages ({} bytes), {} tasks, {} asynchronous invocations.\n",
        copied.entities, copied.version, copied.code_packages, copied.code_bytes, copied.tasks, copied.invocations
    ));
    Ok(())
}

/// How long `fnlb store copy` may take to write and read back a store.
const STORE_COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// Writes a command's output. A reader that went away (`fnlb … | head`) ends the command quietly, as other
/// command-line tools do, rather than with an error for each line left.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("fnlb: cannot write the output: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn a_bound_address_is_reached_on_itself_or_on_loopback() {
        assert_eq!(super::local_url("http", "127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000");
        assert_eq!(super::local_url("https", "0.0.0.0:9443").unwrap(), "https://127.0.0.1:9443");
        assert_eq!(super::local_url("http", "[::]:9001").unwrap(), "http://[::1]:9001");
        assert_eq!(super::local_url("http", "[fd00::1]:80").unwrap(), "http://[fd00::1]:80");
        let refused = super::local_url("http", "localhost").unwrap_err();
        assert!(refused.contains("`localhost` is not an address and port"), "{refused}");
    }

    /// docs/configuration.md names every flag of `fnlb serve` (and so every key of the config file).
    #[test]
    fn every_serve_setting_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            assert!(doc.contains(&format!("`--{long}`")), "--{long} is not in docs/configuration.md");
        }
    }
}
