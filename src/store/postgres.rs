//! The shared store of a cluster: one PostgreSQL database, every node a writer and a reader.
//!
//! Every committed change is one transaction that takes the cluster's version row (`head`) for update, so
//! writers are serialised by the database and versions are never skipped or reordered; it writes the touched
//! entities, one row per entity in the change log under the new version, the task record, and a `NOTIFY` that
//! wakes the other nodes. Nodes follow by reading the log past the version they serve (or everything, when they
//! fell behind the log's retention). The notification is only a hint: a periodic read of the head catches what a
//! dropped connection missed.
//!
//! Each node keeps a copy of the state it serves and of the code packages it verified in a local SQLite file
//! (`sqlite.rs`), so that it starts serving when the database cannot be reached.
//!
//! The asynchronous queue lives here too: jobs are claimed with `FOR UPDATE SKIP LOCKED` under a lease that the
//! claiming node renews with its heartbeat; a job whose lease ran out goes back to the queue for any node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sha2::Digest;
use tokio::sync::{Notify, mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    AsyncJob, AsyncOutcome, AsyncStatus, Loaded, Sqlite, StoreError, TASKS_KEPT, Task, entity_body, key_parts,
    parse_entity, parse_key,
};
use crate::functions::logs::{LogRecord, Shipment};
use crate::functions::queue::function_id;
use crate::functions::reserve::Reserved;
use crate::state::{Entity, EntityKey, FunctionKey};

/// A cluster node's settings. Each is a documented setting (docs/cluster.md).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The database: `postgres://USER[:PASSWORD]@HOST:PORT/DB[?sslmode=require&sslrootcert=FILE]`.
    pub url: String,
    /// This node's name in the cluster (the host name by default).
    pub node_id: String,
    /// How long a change may wait for the database before the API answers that it is unreachable.
    pub write_timeout: Duration,
    /// How often a node reads the head version, whatever notifications it got.
    pub poll_interval: Duration,
    /// How often a node records the version it serves and renews its jobs' leases.
    pub heartbeat_interval: Duration,
    /// A node silent this long is not live: its jobs go to others, tasks stop waiting for it.
    pub node_timeout: Duration,
    /// Connections to the database in this node's pool (besides the one that listens).
    pub pool_size: usize,
    /// Whether invocation logs are shipped to the database.
    pub logs: ClusterLogs,
}

/// Where a cluster node's invocation logs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterLogs {
    /// Also to the database: every node's logs read on any node.
    Shared,
    /// Kept on the node that ran the invocation only.
    Local,
}

pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_millis(1500);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Versions kept in the change log: a node further behind reloads the whole state.
pub const CHANGES_KEPT: i64 = 10_000;
/// How many versions a node reads from the log at most; past that a full reload is cheaper.
const MAX_LOG_CATCH_UP: u64 = 1_000;
/// The channel of change notifications.
const CHANNEL: &str = "fnlb_changes";
/// The advisory lock migrations take, so that nodes starting at once migrate one after the other.
const MIGRATION_LOCK: i64 = 0x666e_6c62_0001;
/// The database's clock in milliseconds: leases and heartbeats compare times of one clock.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The schema, one migration per version, applied in order and recorded in `fnlb.migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE fnlb.head (id INT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO fnlb.head (id, version) VALUES (1, 1);
CREATE TABLE fnlb.entities (
    kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE fnlb.changes (
    version BIGINT NOT NULL, seq INT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT,
    PRIMARY KEY (version, seq)
);
CREATE TABLE fnlb.code (sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, data BYTEA NOT NULL);
CREATE TABLE fnlb.tasks (
    request_id TEXT PRIMARY KEY, uin TEXT NOT NULL, lb_ids TEXT NOT NULL, created_ms BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX tasks_created ON fnlb.tasks (created_ms);
CREATE TABLE fnlb.nodes (
    node_id TEXT PRIMARY KEY, version BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL
);
CREATE TABLE fnlb.async_invocations (
    request_id TEXT PRIMARY KEY, function TEXT NOT NULL, qualifier TEXT NOT NULL, event BYTEA NOT NULL,
    state TEXT NOT NULL, attempts BIGINT NOT NULL, next_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL,
    lease_owner TEXT, lease_until_ms BIGINT,
    ret_code BIGINT, ret_msg TEXT, duration_ms DOUBLE PRECISION, mem_bytes BIGINT
);
CREATE INDEX async_due ON fnlb.async_invocations (state, next_ms);
",
    ),
    (
        2,
        "
CREATE TABLE fnlb.invocation_logs (
    id BIGSERIAL PRIMARY KEY, function TEXT NOT NULL, node TEXT NOT NULL, records INT NOT NULL,
    last_start_ms BIGINT NOT NULL, request_ids TEXT NOT NULL, body BYTEA NOT NULL
);
CREATE INDEX invocation_logs_function ON fnlb.invocation_logs (function, id);
-- The body is compressed by fnlb: the database stores it as it comes.
ALTER TABLE fnlb.invocation_logs ALTER COLUMN body SET STORAGE EXTERNAL;
",
    ),
    (
        3,
        "
CREATE TABLE fnlb.concurrency_shares (
    function TEXT NOT NULL, node TEXT NOT NULL, share_mb BIGINT NOT NULL, in_use_mb BIGINT NOT NULL,
    demand_mb BIGINT NOT NULL, updated_ms BIGINT NOT NULL, PRIMARY KEY (function, node)
);
CREATE TABLE fnlb.provisioned_warm (
    function TEXT NOT NULL, qualifier TEXT NOT NULL, node TEXT NOT NULL, warm BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL, PRIMARY KEY (function, qualifier, node)
);
",
    ),
    (4, "ALTER TABLE fnlb.code ADD COLUMN stored_ms BIGINT NOT NULL DEFAULT 0;"),
    (
        5,
        "
-- The signatures of changes within their window, with the first answer once there is one (api::replay).
CREATE TABLE fnlb.signatures (
    signature TEXT NOT NULL, used_for TEXT NOT NULL, client TEXT NOT NULL, node TEXT NOT NULL,
    expires_ms BIGINT NOT NULL, answer BYTEA, PRIMARY KEY (signature, used_for)
);
CREATE INDEX signatures_expires ON fnlb.signatures (expires_ms);
",
    ),
];

pub struct Postgres {
    pub settings: ClusterSettings,
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The node's local copy: the state it serves, the code it verified.
    cache: Arc<Sqlite>,
    /// Whether the schema is known to be in place (migrations ran on this start).
    ready: AtomicBool,
    /// Whether the last exchange with the database succeeded.
    up: AtomicBool,
    /// The newest committed version this node has read.
    head_seen: AtomicU64,
    /// The cluster's nodes as last read (for `/status`, also while the database is down).
    nodes_seen: Mutex<Vec<NodeRecord>>,
}

/// What a node reads to serve the newest committed state.
pub struct Caught {
    pub version: u64,
    pub changes: Changes,
}

pub enum Changes {
    /// The entities written (`Some`) or removed (`None`) since the version the node serves, in order.
    Log(Vec<(EntityKey, Option<Entity>)>),
    /// The whole state: the node fell behind the log.
    Whole(Vec<Entity>),
}

/// A change's signature as claimed in `fnlb.signatures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureClaim {
    /// Nobody used it for this change: the claimer carries it out.
    First,
    /// It was used for this change (by any address, on any node): its answer is or will be recorded.
    Used,
    /// Another address used it for another change.
    Other,
}

/// A node as the cluster sees it.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    pub node_id: String,
    pub version: u64,
    pub heartbeat_ms: i64,
    pub started_ms: i64,
    /// Whether its last heartbeat is within the node timeout.
    pub live: bool,
}

/// A write in progress: the cluster's version row is held until it commits or is dropped (rolled back).
pub struct Writing<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    /// The newest committed version.
    pub head: u64,
}

// === impl Postgres ===

impl Postgres {
    /// Prepares the connections to the database (none is made yet) and opens the local copy in `data_dir`.
    pub fn new(settings: ClusterSettings, data_dir: &Path) -> Result<Postgres, StoreError> {
        let copy = Arc::new(Sqlite::open(&data_dir.join("cluster-copy.sqlite3"))?);
        Postgres::with_copy(settings, copy)
    }

    /// Prepares the connections to the database (none is made yet), with `cache` as the node's local copy.
    pub fn with_copy(settings: ClusterSettings, cache: Arc<Sqlite>) -> Result<Postgres, StoreError> {
        let (url, tls) = split_tls(&settings.url);
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Setup(format!("the store URL cannot be read: {e}")))?;
        config.connect_timeout(settings.write_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name(format!("fnlb {}", settings.node_id));
        let tls = tls_connector(&tls)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.write_timeout))
            .create_timeout(Some(settings.write_timeout))
            .recycle_timeout(Some(settings.write_timeout))
            .build()
            .map_err(|e| StoreError::Setup(e.to_string()))?;
        Ok(Postgres {
            settings,
            pool,
            config,
            tls,
            cache,
            ready: AtomicBool::new(false),
            up: AtomicBool::new(false),
            head_seen: AtomicU64::new(0),
            nodes_seen: Mutex::new(Vec::new()),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Whether the last exchange with the database succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The newest committed version this node has read.
    pub fn head_seen(&self) -> u64 {
        self.head_seen.load(Ordering::Relaxed)
    }

    /// The cluster's nodes as last read.
    pub fn nodes_seen(&self) -> Vec<NodeRecord> {
        self.nodes_seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The node's local copy.
    pub fn copy(&self) -> &Arc<Sqlite> {
        &self.cache
    }

    /// Runs `work` on a pooled connection within the write timeout, recording whether the database answered.
    pub(super) async fn with<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let result = tokio::time::timeout(self.settings.write_timeout, async {
            let mut client = self.pool.get().await.map_err(|e| StoreError::Unreachable(e.to_string()))?;
            self.ensure_schema(&mut client).await?;
            work(&mut client).await.map_err(classify)
        })
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unreachable(format!("no answer within {} ms", self.settings.write_timeout.as_millis())))
        });
        self.up.store(!matches!(result, Err(StoreError::Unreachable(_))), Ordering::Relaxed);
        result
    }

    /// Creates or migrates the schema once per start (an advisory lock orders nodes starting at once).
    async fn ensure_schema(&self, client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(classify)?;
        let migrated = migrate(client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        migrated?;
        unlocked.map_err(classify)?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The newest committed state, read whole in one consistent snapshot.
    pub async fn load(&self) -> Result<Loaded, StoreError> {
        self.with(async |client| {
            let tx = client.build_transaction().read_only(true).isolation_level(repeatable_read()).start().await?;
            let version: i64 = tx.query_one("SELECT version FROM fnlb.head WHERE id = 1", &[]).await?.get(0);
            let rows = tx.query("SELECT kind, key, body FROM fnlb.entities ORDER BY kind, key", &[]).await?;
            tx.commit().await?;
            Ok((version, rows))
        })
        .await
        .and_then(|(version, rows)| {
            let entities = rows
                .iter()
                .map(|row| parse_entity(row.get(0), row.get(1), row.get(2)))
                .collect::<Result<Vec<_>, _>>()?;
            self.head_seen.fetch_max(version as u64, Ordering::Relaxed);
            Ok(Loaded { version: version as u64, entities })
        })
    }

    /// What changed after `served`, read in one consistent snapshot.
    pub async fn read_since(&self, served: u64) -> Result<Caught, StoreError> {
        let read = self
            .with(async |client| {
                let tx = client.build_transaction().read_only(true).isolation_level(repeatable_read()).start().await?;
                let head: i64 = tx.query_one("SELECT version FROM fnlb.head WHERE id = 1", &[]).await?.get(0);
                let read = read_changes(&tx, served, head as u64).await?;
                tx.commit().await?;
                Ok(read)
            })
            .await?;
        let caught = read.into_caught()?;
        self.head_seen.fetch_max(caught.version, Ordering::Relaxed);
        Ok(caught)
    }

    /// Starts a write on `client`: takes the cluster's version row, which other writers then wait for.
    pub async fn begin_write<'a>(&self, client: &'a mut deadpool_postgres::Object) -> Result<Writing<'a>, StoreError> {
        let tx = client.transaction().await.map_err(classify)?;
        let head: i64 =
            tx.query_one("SELECT version FROM fnlb.head WHERE id = 1 FOR UPDATE", &[]).await.map_err(classify)?.get(0);
        self.head_seen.fetch_max(head as u64, Ordering::Relaxed);
        Ok(Writing { tx, head: head as u64 })
    }

    /// A pooled connection, for a write (`begin_write`).
    pub async fn writer(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let mut client = self.pool.get().await.map_err(|e| StoreError::Unreachable(e.to_string()))?;
        self.ensure_schema(&mut client).await?;
        Ok(client)
    }

    /// Records the outcome of an exchange made outside `with` (a write): whether the database answered.
    pub fn note_reachable(&self, reachable: bool) {
        self.up.store(reachable, Ordering::Relaxed);
    }

    /// Fails at once while the database is known to be unreachable: for reads that have an answer of this node's
    /// to fall back on, so that they need not wait for the timeout.
    fn reachable(&self) -> Result<(), StoreError> {
        match self.is_up() {
            true => Ok(()),
            false => Err(StoreError::Unreachable("the last exchange with the database failed".to_string())),
        }
    }

    /// Stores a code package under its SHA-256, in the database and the local copy.
    pub async fn put_code(&self, sha256: &str, data: Arc<Vec<u8>>) -> Result<(), StoreError> {
        let size = data.len() as i64;
        let stored = data.clone();
        self.with(async |client| {
            client
                .execute(
                    "INSERT INTO fnlb.code (sha256, size, data, stored_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (sha256) DO UPDATE SET stored_ms = excluded.stored_ms",
                    &[&sha256, &size, &stored.as_slice(), &crate::clock::now_ms()],
                )
                .await
        })
        .await?;
        let (cache, sha) = (self.cache.clone(), sha256.to_string());
        tokio::task::spawn_blocking(move || cache.put_code(&sha, &data)).await??;
        Ok(())
    }

    /// A code package: from the local copy, else from the database (kept locally once its SHA-256 checks).
    pub async fn code(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (cache, sha) = (self.cache.clone(), sha256.to_string());
        let local = tokio::task::spawn_blocking(move || cache.code(&sha)).await??;
        if let Some(data) = local.filter(|data| sha256_hex(data) == sha256) {
            return Ok(Some(data));
        }
        let row = self
            .with(async |client| client.query_opt("SELECT data FROM fnlb.code WHERE sha256 = $1", &[&sha256]).await)
            .await?;
        let Some(data) = row.map(|row| row.get::<_, Vec<u8>>(0)) else { return Ok(None) };
        if sha256_hex(&data) != sha256 {
            return Err(StoreError::Setup(format!("code package {sha256} does not match its SHA-256")));
        }
        let (cache, sha, kept) = (self.cache.clone(), sha256.to_string(), data.clone());
        tokio::task::spawn_blocking(move || cache.put_code(&sha, &kept)).await??;
        Ok(Some(data))
    }

    /// Removes the code packages not in `keep` stored before `before_ms`, from the database and the local copy.
    pub async fn forget_code_except(&self, keep: &BTreeSet<String>, before_ms: i64) -> Result<usize, StoreError> {
        let kept: Vec<&str> = keep.iter().map(String::as_str).collect();
        let removed = self
            .with(async |client| {
                client
                    .execute(
                        "DELETE FROM fnlb.code WHERE stored_ms < $1 AND NOT (sha256 = ANY($2))",
                        &[&before_ms, &kept],
                    )
                    .await
            })
            .await?;
        let (copy, keep) = (self.cache.clone(), keep.clone());
        tokio::task::spawn_blocking(move || copy.forget_code_except(&keep, before_ms)).await??;
        Ok(removed as usize)
    }

    pub async fn task(&self, request_id: &str) -> Result<Option<Task>, StoreError> {
        let row = self
            .with(async |client| {
                client
                    .query_opt(
                        "SELECT request_id, uin, lb_ids, created_ms, version FROM fnlb.tasks WHERE request_id = $1",
                        &[&request_id],
                    )
                    .await
            })
            .await?;
        Ok(row.map(|row| Task {
            request_id: row.get(0),
            uin: row.get(1),
            load_balancer_ids: super::load_balancer_ids(row.get(2)),
            created_ms: row.get(3),
            version: row.get::<_, i64>(4) as u64,
        }))
    }

    /// Whether no live node serves a version older than `version`.
    pub async fn served_everywhere(&self, version: u64) -> Result<bool, StoreError> {
        let timeout_ms = millis(self.settings.node_timeout);
        let behind: i64 = self
            .with(async |client| {
                let sql =
                    format!("SELECT COUNT(*) FROM fnlb.nodes WHERE version < $1 AND heartbeat_ms > {NOW_MS} - $2");
                Ok(client.query_one(&sql, &[&(version as i64), &timeout_ms]).await?.get(0))
            })
            .await?;
        Ok(behind == 0)
    }

    /// Records that this node is alive and serves `version`, and renews the leases of the jobs it runs.
    pub async fn heartbeat(&self, version: u64) -> Result<(), StoreError> {
        let lease_ms = millis(self.settings.node_timeout);
        let node = self.node_id().to_string();
        self.with(async |client| {
            let sql = format!(
                "INSERT INTO fnlb.nodes (node_id, version, heartbeat_ms, started_ms) VALUES ($1, $2, {NOW_MS}, {NOW_MS})
                 ON CONFLICT (node_id) DO UPDATE SET version = excluded.version, heartbeat_ms = excluded.heartbeat_ms"
            );
            client.execute(&sql, &[&node, &(version as i64)]).await?;
            let renew = format!(
                "UPDATE fnlb.async_invocations SET lease_until_ms = {NOW_MS} + $2
                 WHERE lease_owner = $1 AND state = 'running'"
            );
            client.execute(&renew, &[&node, &lease_ms]).await?;
            Ok(())
        })
        .await
    }

    /// Records this node's start (its row's start time), so that `fnlb status` tells a restart.
    pub async fn register(&self, version: u64) -> Result<(), StoreError> {
        let node = self.node_id().to_string();
        self.with(async |client| {
            let sql = format!(
                "INSERT INTO fnlb.nodes (node_id, version, heartbeat_ms, started_ms) VALUES ($1, $2, {NOW_MS}, {NOW_MS})
                 ON CONFLICT (node_id) DO UPDATE SET version = excluded.version, heartbeat_ms = excluded.heartbeat_ms,
                 started_ms = excluded.started_ms"
            );
            client.execute(&sql, &[&node, &(version as i64)]).await
        })
        .await?;
        Ok(())
    }

    /// Every node the cluster has seen, with the version it serves (kept for `nodes_seen`).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let timeout_ms = millis(self.settings.node_timeout);
        let rows = self
            .with(async |client| {
                let sql = format!(
                    "SELECT node_id, version, heartbeat_ms, started_ms, heartbeat_ms > {NOW_MS} - $1
                     FROM fnlb.nodes ORDER BY node_id"
                );
                client.query(&sql, &[&timeout_ms]).await
            })
            .await?;
        let nodes: Vec<NodeRecord> = rows
            .iter()
            .map(|row| NodeRecord {
                node_id: row.get(0),
                version: row.get::<_, i64>(1) as u64,
                heartbeat_ms: row.get(2),
                started_ms: row.get(3),
                live: row.get(4),
            })
            .collect();
        *self.nodes_seen.lock().unwrap_or_else(|p| p.into_inner()) = nodes.clone();
        Ok(nodes)
    }

    /// Waits for change notifications on a connection of its own (pooled connections drop them): `wake` is
    /// notified for each. Resolves when the connection is listening; the returned client must be kept, and
    /// `is_closed` on it tells when the connection is gone.
    pub async fn listen(&self, wake: Arc<Notify>) -> Result<tokio_postgres::Client, StoreError> {
        let connect = self.config.connect(self.tls.clone());
        let (client, mut connection) = tokio::time::timeout(self.settings.write_timeout, connect)
            .await
            .map_err(|_| StoreError::Unreachable("no answer to a new connection".to_string()))?
            .map_err(classify)?;
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "The store's notification connection ended.");
                        break;
                    }
                }
            }
        });
        let listening = tokio::time::timeout(self.settings.write_timeout, client.batch_execute("LISTEN fnlb_changes"));
        listening.await.map_err(|_| StoreError::Unreachable("no answer to LISTEN".to_string()))?.map_err(classify)?;
        Ok(client)
    }

    /// Writes invocation records (and forgets deleted functions' records) in one transaction, keeping the newest
    /// `keep` of each function. Each function's records of a batch are one row (a JSON array), so that the
    /// database writes a row per function and batch rather than per invocation.
    pub async fn write_logs(&self, batch: &[Shipment], keep: usize) -> Result<(), StoreError> {
        let mut chunks: Vec<(String, Vec<ShippedRecord<'_>>)> = Vec::new();
        let mut forgotten: Vec<String> = Vec::new();
        for shipment in batch {
            match shipment {
                Shipment::Record(key, r) => {
                    let function = function_id(key);
                    match chunks.iter_mut().rev().find(|(f, _)| *f == function) {
                        Some((_, records)) => records.push(ShippedRecord::from(&**r)),
                        None => chunks.push((function, vec![ShippedRecord::from(&**r)])),
                    }
                }
                // Records of a function deleted after they were gathered go with it.
                Shipment::Forget(key) => {
                    let function = function_id(key);
                    chunks.retain(|(f, _)| *f != function);
                    forgotten.push(function);
                }
            }
        }
        let rows: Vec<(String, i32, i64, String, Vec<u8>)> = chunks
            .into_iter()
            .map(|(function, records)| {
                let last = records.iter().map(|r| r.start_ms).max().unwrap_or(0);
                let ids = records.iter().map(|r| r.request_id.as_ref()).collect::<Vec<_>>().join(" ");
                (function, records.len() as i32, last, ids, compress(&records))
            })
            .collect();
        let node = self.node_id().to_string();
        self.with(async |client| {
            let tx = client.transaction().await?;
            for function in &forgotten {
                tx.execute("DELETE FROM fnlb.invocation_logs WHERE function = $1", &[function]).await?;
            }
            for (function, count, last, ids, body) in &rows {
                tx.execute(
                    "INSERT INTO fnlb.invocation_logs (function, node, records, last_start_ms, request_ids, body)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[function, &node, count, last, ids, body],
                )
                .await?;
                // Rows past the newest `keep` records of the function are dropped.
                tx.execute(
                    "DELETE FROM fnlb.invocation_logs WHERE function = $1 AND id < (SELECT id FROM (
                         SELECT id, SUM(records) OVER (ORDER BY id DESC) AS newer FROM fnlb.invocation_logs
                         WHERE function = $1) kept WHERE newer >= $2 ORDER BY id DESC LIMIT 1)",
                    &[function, &(keep as i64)],
                )
                .await?;
            }
            tx.commit().await
        })
        .await
    }

    /// A function's invocation records from every node, newest first: at most `limit`, or the one of a request.
    pub async fn function_logs(
        &self,
        key: &FunctionKey,
        request_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        self.reachable()?;
        let function = function_id(key);
        let needle = request_id.unwrap_or("");
        let rows = self
            .with(async |client| {
                client
                    .query(
                        "SELECT node, body FROM fnlb.invocation_logs WHERE function = $1
                         AND strpos(request_ids, $2) > 0 ORDER BY last_start_ms DESC, id DESC",
                        &[&function, &needle],
                    )
                    .await
            })
            .await?;
        let mut records = Vec::new();
        for row in &rows {
            let node: Arc<str> = Arc::from(row.get::<_, &str>(0));
            let text = decompress(row.get(1))
                .map_err(|e| StoreError::Setup(format!("invocation logs of {function} cannot be read: {e}")))?;
            let shipped: Vec<ShippedRecord<'_>> = serde_json::from_str(&text)
                .map_err(|source| StoreError::Corrupt { key: format!("invocation logs of {function}"), source })?;
            records.extend(
                shipped
                    .into_iter()
                    .filter(|r| request_id.is_none_or(|id| r.request_id == id))
                    .map(|r| r.into_record(node.clone())),
            );
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.start_ms));
        records.truncate(limit);
        Ok(records)
    }

    /// Leases this node's share of a function's reservation: the nodes that reported within the node timeout split
    /// it by demand (each its demand and an even part of what is left, or a part in proportion to its demand when
    /// the demand is more than the reservation), and a node takes only what the others do not hold (their share,
    /// or what they run, whichever is more). A smaller share is taken locally before it is recorded, a larger one
    /// after. Returns the share this node now holds.
    pub async fn lease_share(&self, function: &FunctionKey, reserved: &Reserved) -> Result<u32, StoreError> {
        let function = function_id(function);
        let node = self.node_id().to_string();
        let timeout_ms = millis(self.settings.node_timeout);
        let total = i64::from(reserved.total_mb);
        let grown = self
            .with(async |client| {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock(hashtext('fnlb-share/' || $1))", &[&function]).await?;
                let sql = format!(
                    "SELECT node, share_mb, in_use_mb, demand_mb FROM fnlb.concurrency_shares
                     WHERE function = $1 AND node <> $2 AND updated_ms > {NOW_MS} - $3"
                );
                let others = tx.query(&sql, &[&function, &node, &timeout_ms]).await?;
                let held: i64 = others.iter().map(|r| r.get::<_, i64>(1).max(r.get::<_, i64>(2))).sum();
                // Whole invocations only: a part of one is of no use to anybody.
                let unit = i64::from(reserved.unit_mb);
                let demand = i64::from(reserved.demand());
                let units_of = |mb: i64| (mb.max(0) + unit - 1) / unit;
                let mut demands: Vec<(String, i64)> =
                    others.iter().map(|r| (r.get::<_, String>(0), units_of(r.get::<_, i64>(3)))).collect();
                demands.push((node.clone(), units_of(demand)));
                demands.sort();
                let mine = demands.iter().position(|(n, _)| *n == node).unwrap_or(0);
                let units = allocate(total / unit, &demands.iter().map(|(_, d)| *d).collect::<Vec<_>>())[mine];
                let free = (total - held).max(0) / unit;
                let share = u32::try_from(units.min(free) * unit).unwrap_or(0);
                let grows = share > reserved.share();
                if !grows {
                    reserved.resize(share);
                }
                let sql = format!(
                    "INSERT INTO fnlb.concurrency_shares (function, node, share_mb, in_use_mb, demand_mb, updated_ms)
                     VALUES ($1, $2, $3, $4, $5, {NOW_MS})
                     ON CONFLICT (function, node) DO UPDATE SET share_mb = excluded.share_mb,
                         in_use_mb = excluded.in_use_mb, demand_mb = excluded.demand_mb, updated_ms = excluded.updated_ms"
                );
                let in_use = i64::from(reserved.in_use());
                tx.execute(&sql, &[&function, &node, &i64::from(share), &in_use, &demand]).await?;
                tx.commit().await?;
                Ok(grows.then_some(share))
            })
            .await?;
        if let Some(share) = grown {
            reserved.resize(share);
        }
        Ok(reserved.share())
    }

    /// Records how many instances of each provisioned version this node keeps warm now (replacing what it said
    /// before).
    pub async fn record_warm(&self, warm: &[(FunctionKey, String, usize)]) -> Result<(), StoreError> {
        let node = self.node_id().to_string();
        self.with(async |client| {
            let tx = client.transaction().await?;
            tx.execute("DELETE FROM fnlb.provisioned_warm WHERE node = $1", &[&node]).await?;
            let sql = format!(
                "INSERT INTO fnlb.provisioned_warm (function, qualifier, node, warm, updated_ms)
                 VALUES ($1, $2, $3, $4, {NOW_MS})"
            );
            for (key, qualifier, count) in warm {
                tx.execute(&sql, &[&function_id(key), qualifier, &node, &(*count as i64)]).await?;
            }
            tx.commit().await
        })
        .await
    }

    /// Instances of a provisioned version the live nodes keep warm.
    pub async fn warm_everywhere(&self, key: &FunctionKey, qualifier: &str) -> Result<usize, StoreError> {
        self.reachable()?;
        let function = function_id(key);
        let timeout_ms = millis(self.settings.node_timeout);
        let warm: i64 = self
            .with(async |client| {
                let sql = format!(
                    "SELECT COALESCE(SUM(warm), 0)::BIGINT FROM fnlb.provisioned_warm
                     WHERE function = $1 AND qualifier = $2 AND updated_ms > {NOW_MS} - $3"
                );
                Ok(client.query_one(&sql, &[&function, &qualifier, &timeout_ms]).await?.get(0))
            })
            .await?;
        Ok(usize::try_from(warm).unwrap_or(0))
    }

    pub async fn enqueue(&self, job: &AsyncJob, cap: usize) -> Result<bool, StoreError> {
        let inserted = self
            .with(async |client| {
                client
                    .execute(
                        "INSERT INTO fnlb.async_invocations
                             (request_id, function, qualifier, event, state, attempts, next_ms, created_ms)
                         SELECT $1, $2, $3, $4, 'queued', 0, $5, $5
                         WHERE (SELECT COUNT(*) FROM fnlb.async_invocations WHERE state IN ('queued', 'running')) < $6",
                        &[&job.request_id, &job.function, &job.qualifier, &job.event, &job.created_ms, &(cap as i64)],
                    )
                    .await
            })
            .await?;
        Ok(inserted == 1)
    }

    pub async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<AsyncJob>, StoreError> {
        let node = self.node_id().to_string();
        let lease_ms = millis(self.settings.node_timeout);
        let rows = self
            .with(async |client| {
                let sql = format!(
                    "UPDATE fnlb.async_invocations SET state = 'running', lease_owner = $3,
                         lease_until_ms = {NOW_MS} + $4
                     WHERE request_id IN (
                         SELECT request_id FROM fnlb.async_invocations WHERE state = 'queued' AND next_ms <= $1
                         ORDER BY next_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING request_id, function, qualifier, event, attempts, created_ms"
                );
                client.query(&sql, &[&now_ms, &(limit as i64), &node, &lease_ms]).await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| AsyncJob {
                request_id: row.get(0),
                function: row.get(1),
                qualifier: row.get(2),
                event: row.get(3),
                attempts: row.get(4),
                created_ms: row.get(5),
            })
            .collect())
    }

    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.with(async |client| {
            let row =
                client.query_one("SELECT MIN(next_ms) FROM fnlb.async_invocations WHERE state = 'queued'", &[]).await?;
            Ok(row.get(0))
        })
        .await
    }

    pub async fn finish_attempt(
        &self,
        job: &AsyncJob,
        outcome: &AsyncOutcome,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = super::finished_state(outcome, retry_at);
        let node = self.node_id().to_string();
        let updated = self
            .with(async |client| {
                client
                    .execute(
                        "UPDATE fnlb.async_invocations SET state = $2, attempts = attempts + 1,
                             next_ms = COALESCE($3, next_ms), ret_code = $4, ret_msg = $5, duration_ms = $6,
                             mem_bytes = $7, lease_owner = NULL, lease_until_ms = NULL
                         WHERE request_id = $1 AND lease_owner = $8 AND attempts = $9 AND state = 'running'",
                        &[
                            &job.request_id,
                            &state,
                            &retry_at,
                            &outcome.ret_code,
                            &outcome.ret_msg,
                            &outcome.duration_ms,
                            &(outcome.mem_bytes as i64),
                            &node,
                            &job.attempts,
                        ],
                    )
                    .await
            })
            .await?;
        if updated == 0 {
            tracing::warn!(request_id = %job.request_id, "An asynchronous invocation's lease passed to another node before it finished.");
        }
        Ok(())
    }

    /// Puts back jobs whose lease ran out (their node stopped or lost the database) and, with `own`, this node's
    /// own from before a restart.
    pub async fn requeue_abandoned(&self, own: bool) -> Result<usize, StoreError> {
        let node = if own { self.node_id().to_string() } else { String::new() };
        let n = self
            .with(async |client| {
                let sql = format!(
                    "UPDATE fnlb.async_invocations SET state = 'queued', lease_owner = NULL, lease_until_ms = NULL
                     WHERE state = 'running' AND (lease_owner = $1 OR lease_until_ms < {NOW_MS})"
                );
                client.execute(&sql, &[&node]).await
            })
            .await?;
        Ok(n as usize)
    }

    pub async fn prune_finished(&self, before_ms: i64) -> Result<usize, StoreError> {
        let n = self
            .with(async |client| {
                client
                    .execute(
                        "DELETE FROM fnlb.async_invocations WHERE state IN ('done', 'failed') AND created_ms < $1",
                        &[&before_ms],
                    )
                    .await
            })
            .await?;
        Ok(n as usize)
    }

    /// Claims a change's signature for `used_for` (service/action/region/version) from `client`, kept until
    /// `expires_ms`.
    pub async fn claim_signature(
        &self,
        signature: &str,
        used_for: &str,
        client: &str,
        expires_ms: i64,
    ) -> Result<SignatureClaim, StoreError> {
        let node = self.node_id().to_string();
        self.with(async |db| {
            let tx = db.transaction().await?;
            let rows =
                tx.query("SELECT used_for, client FROM fnlb.signatures WHERE signature = $1", &[&signature]).await?;
            if rows.iter().any(|row| row.get::<_, &str>(0) == used_for) {
                return Ok(SignatureClaim::Used);
            }
            if rows.iter().any(|row| row.get::<_, &str>(1) != client) {
                return Ok(SignatureClaim::Other);
            }
            let inserted = tx
                .execute(
                    "INSERT INTO fnlb.signatures (signature, used_for, client, node, expires_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signature, used_for) DO NOTHING",
                    &[&signature, &used_for, &client, &node, &expires_ms],
                )
                .await?;
            tx.commit().await?;
            // Claimed by another node in between: its answer is the one.
            Ok(if inserted == 1 { SignatureClaim::First } else { SignatureClaim::Used })
        })
        .await
    }

    /// The first answer recorded for a change's signature, once there is one.
    pub async fn signature_answer(&self, signature: &str, used_for: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .with(async |db| {
                db.query_opt(
                    "SELECT answer FROM fnlb.signatures WHERE signature = $1 AND used_for = $2",
                    &[&signature, &used_for],
                )
                .await
            })
            .await?;
        // A row gone is a signature past its window: it has no answer to give.
        Ok(row.map_or(Some(Vec::new()), |row| row.get(0)))
    }

    /// Records the first answer to a change this node claimed.
    pub async fn record_signature_answer(
        &self,
        signature: &str,
        used_for: &str,
        answer: &[u8],
    ) -> Result<(), StoreError> {
        self.with(async |db| {
            db.execute(
                "UPDATE fnlb.signatures SET answer = $3 WHERE signature = $1 AND used_for = $2",
                &[&signature, &used_for, &answer],
            )
            .await
        })
        .await?;
        Ok(())
    }

    /// Deletes the signatures whose window ended before `before_ms`.
    pub async fn forget_signatures(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.with(async |db| db.execute("DELETE FROM fnlb.signatures WHERE expires_ms < $1", &[&before_ms]).await).await
    }

    pub async fn async_status(&self, request_id: &str) -> Result<Option<AsyncStatus>, StoreError> {
        let row = self
            .with(async |client| {
                client
                    .query_opt(
                        "SELECT function, state, attempts, created_ms, ret_code, ret_msg, duration_ms, mem_bytes
                         FROM fnlb.async_invocations WHERE request_id = $1",
                        &[&request_id],
                    )
                    .await
            })
            .await?;
        Ok(row.map(|row| AsyncStatus {
            function: row.get(0),
            state: row.get(1),
            attempts: row.get(2),
            created_ms: row.get(3),
            ret_code: row.get(4),
            ret_msg: row.get(5),
            duration_ms: row.get(6),
            mem_bytes: row.get::<_, Option<i64>>(7).map(|m| m as u64),
        }))
    }
}

// === impl Writing ===

impl Writing<'_> {
    /// What committed after `served` (the writer serves the newest state before checking a command).
    pub async fn read_since(&self, served: u64) -> Result<Caught, StoreError> {
        read_changes(&self.tx, served, self.head).await.map_err(classify)?.into_caught()
    }

    /// Records the task of a command that changed nothing (done at the version already served) and ends the write.
    pub async fn record_task(self, task: &Task) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO fnlb.tasks (request_id, uin, lb_ids, created_ms, version) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (request_id) DO NOTHING",
                &[
                    &task.request_id,
                    &task.uin,
                    &task.load_balancer_ids.join(","),
                    &task.created_ms,
                    &(self.head as i64),
                ],
            )
            .await
            .map_err(classify)?;
        self.tx.commit().await.map_err(classify)
    }

    /// Commits the entities a command touched as version `head + 1`, with its task record, and wakes the other
    /// nodes. Returns the new version.
    pub async fn commit(self, changes: &[(EntityKey, Option<Entity>)], task: Option<&Task>) -> Result<u64, StoreError> {
        let version = self.head + 1;
        let v = version as i64;
        let tx = &self.tx;
        for (seq, (key, entity)) in changes.iter().enumerate() {
            let (kind, id) = key_parts(key);
            let body = entity.as_ref().map(entity_body);
            match &body {
                Some(body) => {
                    tx.execute(
                        "INSERT INTO fnlb.entities (kind, key, body, version) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, version = excluded.version",
                        &[&kind, &id, body, &v],
                    )
                    .await
                }
                None => tx.execute("DELETE FROM fnlb.entities WHERE kind = $1 AND key = $2", &[&kind, &id]).await,
            }
            .map_err(classify)?;
            tx.execute(
                "INSERT INTO fnlb.changes (version, seq, kind, key, body) VALUES ($1, $2, $3, $4, $5)",
                &[&v, &(seq as i32), &kind, &id, &body],
            )
            .await
            .map_err(classify)?;
        }
        if let Some(task) = task {
            tx.execute(
                "INSERT INTO fnlb.tasks (request_id, uin, lb_ids, created_ms, version) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (request_id) DO NOTHING",
                &[&task.request_id, &task.uin, &task.load_balancer_ids.join(","), &task.created_ms, &v],
            )
            .await
            .map_err(classify)?;
        }
        tx.execute("UPDATE fnlb.head SET version = $1 WHERE id = 1", &[&v]).await.map_err(classify)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &version.to_string()]).await.map_err(classify)?;
        if version.is_multiple_of(1_000) {
            tx.execute("DELETE FROM fnlb.changes WHERE version <= $1", &[&(v - CHANGES_KEPT)])
                .await
                .map_err(classify)?;
            tx.execute(
                "DELETE FROM fnlb.tasks WHERE created_ms < (SELECT created_ms FROM fnlb.tasks ORDER BY created_ms DESC
                 LIMIT 1 OFFSET $1)",
                &[&TASKS_KEPT],
            )
            .await
            .map_err(classify)?;
        }
        self.tx.commit().await.map_err(classify)?;
        Ok(version)
    }
}

/// An invocation record as the database keeps it (borrowed when written, and when read where the text allows).
#[derive(serde::Serialize, serde::Deserialize)]
struct ShippedRecord<'a> {
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    qualifier: std::borrow::Cow<'a, str>,
    start_ms: i64,
    duration_ms: f64,
    mem_bytes: u64,
    status: u16,
    #[serde(borrow)]
    ret_msg: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
}

impl<'a> From<&'a LogRecord> for ShippedRecord<'a> {
    fn from(r: &'a LogRecord) -> ShippedRecord<'a> {
        ShippedRecord {
            request_id: r.request_id.as_str().into(),
            qualifier: r.qualifier.as_str().into(),
            start_ms: r.start_ms,
            duration_ms: r.duration_ms,
            mem_bytes: r.mem_bytes,
            status: r.status,
            ret_msg: r.ret_msg.as_str().into(),
            log: (&*r.log).into(),
        }
    }
}

impl ShippedRecord<'_> {
    fn into_record(self, node: Arc<str>) -> LogRecord {
        LogRecord {
            request_id: self.request_id.into_owned(),
            qualifier: self.qualifier.into_owned(),
            start_ms: self.start_ms,
            duration_ms: self.duration_ms,
            mem_bytes: self.mem_bytes,
            status: self.status,
            ret_msg: self.ret_msg.into_owned(),
            log: Arc::from(self.log.as_ref()),
            node,
        }
    }
}

/// A batch of records as JSON, compressed (deflate at its fastest level: logs repeat themselves, and a tenth of
/// the bytes costs the database a tenth of the writing).
fn compress(records: &[ShippedRecord<'_>]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    serde_json::to_writer(&mut encoder, records).expect("records serialise to JSON");
    encoder.flush().expect("writing to memory does not fail");
    encoder.finish().expect("writing to memory does not fail")
}

fn decompress(body: &[u8]) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::DeflateDecoder::new(body).take(MAX_LOG_BATCH_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// The most a stored batch of records may unpack to.
const MAX_LOG_BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// Ships a node's invocation records to the database in batches until `shutdown` turns true. While the database
/// cannot be reached a batch waits (the node's own records stay readable on it) and the channel fills up to its
/// bound; past it the log store counts what it drops.
pub async fn ship_logs(
    pg: Arc<Postgres>,
    mut shipments: mpsc::Receiver<Shipment>,
    keep: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    const BATCH: usize = 500;
    const GATHER: Duration = Duration::from_millis(100);
    let mut batch = Vec::new();
    loop {
        if batch.is_empty() {
            tokio::select! {
                shipment = shipments.recv() => match shipment {
                    Some(s) => batch.push(s),
                    None => return,
                },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(until, shipments.recv()).await {
                    Ok(Some(s)) => batch.push(s),
                    _ => break,
                }
            }
        }
        match pg.write_logs(&batch, keep).await {
            Ok(()) => batch.clear(),
            Err(e) => {
                tracing::debug!(error = %e, records = batch.len(), "Invocation records not shipped yet.");
                tokio::select! {
                    _ = tokio::time::sleep(pg.settings.poll_interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// Splits `total` units of a reservation over nodes (in a fixed order) by what each `demands`: each its demand and
/// an even part of what is left over, or, when they demand more than there is, parts in proportion to their
/// demands; units a split leaves over go one each to the nodes with the largest remainders, then in order.
fn allocate(total: i64, demands: &[i64]) -> Vec<i64> {
    let n = demands.len() as i64;
    if n == 0 {
        return Vec::new();
    }
    let wanted: i64 = demands.iter().sum();
    let (mut parts, mut remainders): (Vec<i64>, Vec<i64>) = if wanted <= total {
        let spare = total - wanted;
        (demands.iter().map(|d| d + spare / n).collect(), vec![0; demands.len()])
    } else {
        demands.iter().map(|d| (total * d / wanted, total * d % wanted)).unzip()
    };
    let mut left = total - parts.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(remainders[*i]));
    for i in order.into_iter().cycle().take(demands.len() * 2) {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        remainders[i] = 0;
        left -= 1;
    }
    parts
}

/// The rows read to catch up: the log, or the whole state.
enum Read {
    Log { head: u64, rows: Vec<tokio_postgres::Row> },
    Whole { head: u64, rows: Vec<tokio_postgres::Row> },
}

impl Read {
    fn into_caught(self) -> Result<Caught, StoreError> {
        match self {
            Read::Log { head, rows } => {
                let mut changes = Vec::with_capacity(rows.len());
                for row in &rows {
                    let (kind, key): (&str, &str) = (row.get(1), row.get(2));
                    let Some(entity_key) = parse_key(kind, key) else {
                        tracing::warn!(kind, key, "A change of a kind this version does not know is skipped.");
                        continue;
                    };
                    let entity = row.get::<_, Option<&str>>(3).map(|body| parse_entity(kind, key, body)).transpose()?;
                    changes.push((entity_key, entity));
                }
                Ok(Caught { version: head, changes: Changes::Log(changes) })
            }
            Read::Whole { head, rows } => {
                let entities = rows
                    .iter()
                    .map(|row| parse_entity(row.get(0), row.get(1), row.get(2)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Caught { version: head, changes: Changes::Whole(entities) })
            }
        }
    }
}

/// The log from `served` to `head`, when it is all there and not too long; otherwise the whole state.
async fn read_changes(
    tx: &tokio_postgres::Transaction<'_>,
    served: u64,
    head: u64,
) -> Result<Read, tokio_postgres::Error> {
    if head <= served {
        return Ok(Read::Log { head: served, rows: Vec::new() });
    }
    if head - served <= MAX_LOG_CATCH_UP {
        let rows = tx
            .query(
                "SELECT version, kind, key, body FROM fnlb.changes WHERE version > $1 AND version <= $2
                 ORDER BY version, seq",
                &[&(served as i64), &(head as i64)],
            )
            .await?;
        let first = rows.first().map(|row| row.get::<_, i64>(0) as u64);
        let last = rows.last().map(|row| row.get::<_, i64>(0) as u64);
        if first == Some(served + 1) && last == Some(head) {
            return Ok(Read::Log { head, rows });
        }
    }
    let rows = tx.query("SELECT kind, key, body FROM fnlb.entities ORDER BY kind, key", &[]).await?;
    Ok(Read::Whole { head, rows })
}

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS fnlb;
             CREATE TABLE IF NOT EXISTS fnlb.migrations (version INT PRIMARY KEY, applied_ms BIGINT NOT NULL);",
        )
        .await
        .map_err(classify)?;
    let applied: i32 =
        client.query_one("SELECT COALESCE(MAX(version), 0) FROM fnlb.migrations", &[]).await.map_err(classify)?.get(0);
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if applied > known {
        return Err(StoreError::Setup(format!(
            "the database's schema is version {applied}, newer than this fnlb knows ({known}): upgrade this node"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        let tx = client.transaction().await.map_err(classify)?;
        tx.batch_execute(sql).await.map_err(classify)?;
        tx.execute(
            "INSERT INTO fnlb.migrations (version, applied_ms) VALUES ($1, $2)",
            &[version, &crate::clock::now_ms()],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        tracing::info!(version, "Store schema migrated.");
    }
    Ok(())
}

/// Tells a database that cannot be reached (closed connections, I/O errors, timeouts) from one that refused a
/// statement.
fn classify(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.code().is_none() { StoreError::Unreachable(e.to_string()) } else { StoreError::Postgres(e) }
}

fn repeatable_read() -> tokio_postgres::IsolationLevel {
    tokio_postgres::IsolationLevel::RepeatableRead
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// How the database's certificate is checked, from libpq's `sslmode` and `sslrootcert`.
#[derive(Debug, PartialEq, Eq)]
struct TlsChoice {
    /// Whether the certificate is verified (`verify-ca`, `verify-full`, or `require` with `sslrootcert`, as libpq
    /// does); otherwise the connection is encrypted without checking whose certificate it is (`prefer`, `require`).
    verify: bool,
    /// The certificate authorities to verify against (`sslrootcert`), or the system's.
    root: Option<PathBuf>,
}

/// Takes what the client library does not read out of a URL: `sslrootcert`, and `sslmode`'s `verify-ca` and
/// `verify-full` (which it is given as `require`). The URL it is given, and how to check the certificate.
fn split_tls(url: &str) -> (String, TlsChoice) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), TlsChoice { verify: false, root: None });
    };
    let (mut root, mut verify_mode) = (None, false);
    let kept: Vec<String> = query
        .split('&')
        .filter_map(|pair| {
            if let Some(path) = pair.strip_prefix("sslrootcert=") {
                root = Some(PathBuf::from(percent_encoding::percent_decode_str(path).decode_utf8_lossy().as_ref()));
                return None;
            }
            match pair {
                "sslmode=verify-ca" | "sslmode=verify-full" => {
                    verify_mode = true;
                    Some("sslmode=require".to_string())
                }
                _ => Some(pair.to_string()),
            }
        })
        .collect();
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    let verify = verify_mode || root.is_some();
    (url, TlsChoice { verify, root })
}

/// TLS to the database (used when the URL's `sslmode` asks for it).
fn tls_connector(choice: &TlsChoice) -> Result<MakeRustlsConnect, StoreError> {
    const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
    let provider = crate::snapshot::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    if !choice.verify {
        let verifier = Arc::new(crate::snapshot::tls::AnyServerCertificate(provider));
        return Ok(MakeRustlsConnect::new(
            builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth(),
        ));
    }
    let pem = match &choice.root {
        Some(path) => std::fs::read(path)
            .map_err(|e| StoreError::Setup(format!("cannot read sslrootcert {}: {e}", path.display())))?,
        None => std::fs::read(SYSTEM_ROOTS).unwrap_or_default(),
    };
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    Ok(MakeRustlsConnect::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_split_by_demand_in_whole_units() {
        // Nobody waits: an even split, the first nodes taking what does not divide.
        assert_eq!(allocate(4, &[0, 0, 0]), vec![2, 1, 1]);
        assert_eq!(allocate(2, &[0, 0, 0]), vec![1, 1, 0]);
        // What each demands, and an even part of the rest.
        assert_eq!(allocate(8, &[4, 1]), vec![6, 2]);
        // More demanded than there is: in proportion, the rest by the largest remainder.
        assert_eq!(allocate(2, &[4, 4, 4]), vec![1, 1, 0]);
        assert_eq!(allocate(4, &[6, 2]), vec![3, 1]);
        // Whatever the demands, every unit is given and none twice.
        for demands in [vec![0], vec![9, 0, 3], vec![1, 1, 1, 1, 1], vec![100, 1], vec![0, 0]] {
            for total in 0..12 {
                let parts = allocate(total, &demands);
                assert_eq!(parts.iter().sum::<i64>(), total, "{total} over {demands:?}: {parts:?}");
                assert!(parts.iter().all(|p| *p >= 0));
            }
        }
    }

    #[test]
    fn tls_settings_are_read_as_libpq_reads_them() {
        let verify = |root: Option<&str>| TlsChoice { verify: true, root: root.map(PathBuf::from) };
        let (url, choice) = split_tls("postgres://u@h:5432/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!((url.as_str(), choice), ("postgres://u@h:5432/db?sslmode=require", verify(Some("/etc/ca.pem"))));
        let (url, choice) = split_tls("postgres://u@h/db?sslmode=verify-full");
        assert_eq!((url.as_str(), choice), ("postgres://u@h/db?sslmode=require", verify(None)));
        let (url, choice) = split_tls("postgres://u@h/db?sslmode=require");
        assert_eq!((url.as_str(), choice.verify), ("postgres://u@h/db?sslmode=require", false));
        assert_eq!(split_tls("postgres://u@h/db").0, "postgres://u@h/db");
        assert_eq!(split_tls("postgres://u@h/db?sslrootcert=a").0, "postgres://u@h/db");
    }
}
