//! The validated configuration of `fnlb serve`. Flags and environment variables are read by `cli`; every
//! setting has a documented default (docs/configuration.md).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::api::ApiSettings;
use crate::functions::EngineSettings;
use crate::functions::queue::QueueSettings;
use crate::functions::runtimes::Interpreters;
use crate::functions::sandbox::SandboxMode;
use crate::proxy::ProxySettings;
use crate::state::Limits;

pub const DEFAULT_DATA_DIR: &str = "./fnlb-data";
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:9000";
pub const DEFAULT_REGION: &str = "ap-guangzhou";
/// The port of the embedded example's HTTP listener.
pub const DEFAULT_EXAMPLE_PORT: u16 = 8080;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    /// The admin listener: `/live`, `/ready`, `/metrics`, `/status`.
    pub admin_addr: SocketAddr,
    /// The region of requests that name none, and of the embedded example.
    pub region: String,
    pub log_format: LogFormat,
    /// The interpreters of the runtimes (found on the host when unset).
    pub interpreters: Interpreters,
    /// Deploy the embedded Hello CLB example on this port at start.
    pub example_port: Option<u16>,
    /// How function instances are isolated.
    pub sandbox: SandboxMode,
    /// Where functions may connect to (`functions::network`).
    pub function_egress: crate::functions::network::Egress,
    /// The first of the users functions run as, when fnlb is root.
    pub function_uid_base: u32,
    pub limits: Limits,
    pub api: ApiSettings,
    pub engine: EngineSettings,
    pub proxy: ProxySettings,
    pub upstream: crate::proxy::upstream::UpstreamSettings,
    pub queue: QueueSettings,
    pub console: crate::console::ConsoleSettings,
    /// Access logs, when configured.
    pub access_log: Option<crate::proxy::access_log::AccessLogSettings>,
    /// The accounts file (`src/accounts.rs`), read at start.
    pub accounts_file: Option<PathBuf>,
    /// A cluster node's store (PostgreSQL); `None`: one node on SQLite in the data directory.
    pub cluster: Option<crate::store::ClusterSettings>,
    /// Where every listener binds instead of its VIP (several nodes on one host).
    pub listen_address: Option<IpAddr>,
    /// How long a code package no function runs is kept before it is collected.
    pub code_retention: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("region {0} is not one of the regions this server serves ({1})")]
    UnknownRegion(String, String),
    #[error(
        "--store takes a PostgreSQL URL, postgres://USER@HOST:PORT/DB (without it the state is kept in SQLite in the data directory)"
    )]
    Store,
    #[error("--api-tls-cert and --api-tls-key go together: give both (HTTPS) or neither (plain HTTP)")]
    ApiTls,
}

/// The host's name: a cluster node's default name.
pub fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

impl Config {
    pub fn new(
        data_dir: PathBuf,
        api_addr: SocketAddr,
        region: String,
        log_format: LogFormat,
    ) -> Result<Config, ConfigError> {
        let api = ApiSettings { default_region: region.clone(), ..ApiSettings::default() };
        if !api.regions.contains(&region) {
            return Err(ConfigError::UnknownRegion(region, api.regions.join(", ")));
        }
        Ok(Config {
            data_dir,
            api_addr,
            admin_addr: crate::admin::DEFAULT_ADMIN_ADDR.parse().expect("the default admin address parses"),
            region,
            log_format,
            interpreters: Interpreters::default(),
            example_port: None,
            sandbox: SandboxMode::Auto,
            function_egress: crate::functions::network::Egress::Allow,
            function_uid_base: crate::functions::sandbox::DEFAULT_FUNCTION_UID_BASE,
            limits: Limits::default(),
            api,
            engine: EngineSettings::default(),
            proxy: ProxySettings::default(),
            upstream: Default::default(),
            accounts_file: None,
            queue: QueueSettings::default(),
            console: Default::default(),
            access_log: None,
            cluster: None,
            listen_address: None,
            code_retention: crate::functions::DEFAULT_CODE_RETENTION,
        })
    }
}
