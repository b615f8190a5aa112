//! Durable state. One node keeps it in SQLite in its data directory (`sqlite.rs`); a cluster shares one
//! PostgreSQL database (`postgres.rs`), each node keeping a local copy in SQLite to start from when the database
//! cannot be reached. `Store` is what the rest of fnlb calls, the same way for both.

pub mod copy;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use crate::state::{Entity, EntityKey, FunctionKey, Scope};

pub use self::postgres::{ClusterLogs, ClusterSettings, Postgres};
pub use self::sqlite::Sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot make the store at {path} private to this user")]
    Permissions {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("stored entity {key} cannot be read")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The shared store (PostgreSQL) did not answer in time or refused the connection.
    #[error("the configuration store (PostgreSQL) is unreachable: {0}")]
    Unreachable(String),
    #[error("the configuration store (PostgreSQL) failed")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the configuration store (PostgreSQL) cannot be used: {0}")]
    Setup(String),
    #[error("a store task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// A task: the record of an accepted CLB mutation, for `DescribeTaskStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub request_id: String,
    pub uin: String,
    pub load_balancer_ids: Vec<String>,
    pub created_ms: i64,
    /// The state version that made the change (known in a cluster, where a task is done once every live node
    /// serves it; 0 on one node, where it is done when acknowledged).
    pub version: u64,
}

/// A queued asynchronous invocation. `function` is the function's store key (`uin/region/namespace/name`).
#[derive(Clone, Debug)]
pub struct AsyncJob {
    pub request_id: String,
    pub function: String,
    pub qualifier: String,
    pub event: Vec<u8>,
    pub attempts: i64,
    pub created_ms: i64,
}

/// An asynchronous invocation as stored, whatever its state.
#[derive(Clone, Debug)]
pub struct StoredJob {
    pub job: AsyncJob,
    pub state: String,
    pub next_ms: i64,
    pub ret_code: Option<i64>,
    pub ret_msg: Option<String>,
    pub duration_ms: Option<f64>,
    pub mem_bytes: Option<i64>,
}

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct AsyncOutcome {
    /// 0 on success, else the SCF status code.
    pub ret_code: i64,
    pub ret_msg: String,
    pub duration_ms: f64,
    pub mem_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct AsyncStatus {
    pub function: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub created_ms: i64,
    pub ret_code: Option<i64>,
    pub ret_msg: Option<String>,
    pub duration_ms: Option<f64>,
    pub mem_bytes: Option<u64>,
}

/// How many task records are kept; older ones are forgotten (`DescribeTaskStatus` then says it never saw them).
pub const TASKS_KEPT: i64 = 100_000;

/// A stored state: its entities and the version they make up.
pub struct Loaded {
    pub version: u64,
    pub entities: Vec<Entity>,
}

/// Where the state is kept.
#[derive(Clone)]
pub enum Store {
    /// One node: SQLite in the data directory.
    Embedded(Arc<Sqlite>),
    /// A cluster: PostgreSQL, shared by every node.
    Cluster(Arc<Postgres>),
}

// === impl Store ===

impl Store {
    /// Stores a code package under its SHA-256 (durable when this returns).
    pub async fn put_code(&self, sha256: String, data: Arc<Vec<u8>>) -> Result<(), StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.put_code(&sha256, &data)).await,
            Store::Cluster(pg) => pg.put_code(&sha256, data).await,
        }
    }

    /// A code package, checked against its SHA-256.
    pub async fn code(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha = sha256.to_string();
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.code(&sha)).await,
            Store::Cluster(pg) => pg.code(&sha).await,
        }
    }

    /// Removes the code packages not in `keep` that were stored before `before_ms`.
    pub async fn forget_code_except(
        &self,
        keep: std::collections::BTreeSet<String>,
        before_ms: i64,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.forget_code_except(&keep, before_ms)).await,
            Store::Cluster(pg) => pg.forget_code_except(&keep, before_ms).await,
        }
    }

    pub async fn task(&self, request_id: &str) -> Result<Option<Task>, StoreError> {
        let id = request_id.to_string();
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.task(&id)).await,
            Store::Cluster(pg) => pg.task(&id).await,
        }
    }

    /// Whether every live node serves `version` (one node serves a change before acknowledging it).
    pub async fn served_everywhere(&self, version: u64) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(_) => Ok(true),
            Store::Cluster(pg) => pg.served_everywhere(version).await,
        }
    }

    /// Queues an asynchronous invocation (durable when this returns); false when `cap` invocations are already
    /// waiting or running.
    pub async fn enqueue(&self, job: AsyncJob, cap: usize) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.enqueue(&job, cap)).await,
            Store::Cluster(pg) => pg.enqueue(&job, cap).await,
        }
    }

    /// Takes up to `limit` queued invocations that are due; in a cluster each under a lease of this node's.
    pub async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<AsyncJob>, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.due_jobs(now_ms, limit)).await,
            Store::Cluster(pg) => pg.due_jobs(now_ms, limit).await,
        }
    }

    /// The earliest time a queued invocation is due.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, |db| db.next_due()).await,
            Store::Cluster(pg) => pg.next_due().await,
        }
    }

    /// Records an attempt of `job` as taken: `retry_at` queues it again, otherwise it is finished. In a cluster
    /// only the holder of the job's lease records it (a job whose lease passed to another node is that node's).
    pub async fn finish_attempt(
        &self,
        job: &AsyncJob,
        outcome: AsyncOutcome,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let id = job.request_id.clone();
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.finish_attempt(&id, &outcome, retry_at)).await,
            Store::Cluster(pg) => pg.finish_attempt(job, &outcome, retry_at).await,
        }
    }

    /// Puts back invocations whose runner is gone: on one node those running when fnlb stopped; in a cluster
    /// also those of nodes whose lease ran out.
    pub async fn requeue_running(&self) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, |db| db.requeue_running()).await,
            Store::Cluster(pg) => pg.requeue_abandoned(true).await,
        }
    }

    /// In a cluster, puts back the invocations of nodes whose lease ran out (a node killed or cut off).
    pub async fn rescue_abandoned(&self) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(_) => Ok(0),
            Store::Cluster(pg) => pg.requeue_abandoned(false).await,
        }
    }

    /// Forgets finished asynchronous invocations queued before `before_ms`.
    pub async fn prune_finished(&self, before_ms: i64) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.prune_finished(before_ms)).await,
            Store::Cluster(pg) => pg.prune_finished(before_ms).await,
        }
    }

    /// In a cluster, a function's invocation records from every node, newest first (at most `limit`, or the one of
    /// a request); `None` on one node, where the engine's own records are all there is.
    pub async fn function_logs(
        &self,
        key: &FunctionKey,
        request_id: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<crate::functions::logs::LogRecord>>, StoreError> {
        match self {
            Store::Cluster(pg) if pg.settings.logs == ClusterLogs::Shared => {
                pg.function_logs(key, request_id, limit).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// In a cluster, the instances of a provisioned version every live node keeps warm; `None` on one node.
    pub async fn warm_everywhere(&self, key: &FunctionKey, qualifier: &str) -> Result<Option<usize>, StoreError> {
        match self {
            Store::Embedded(_) => Ok(None),
            Store::Cluster(pg) => pg.warm_everywhere(key, qualifier).await.map(Some),
        }
    }

    /// An asynchronous invocation's state, for `GetRequestStatus`.
    pub async fn async_status(&self, request_id: &str) -> Result<Option<AsyncStatus>, StoreError> {
        let id = request_id.to_string();
        match self {
            Store::Embedded(db) => blocking(db, move |db| db.async_status(&id)).await,
            Store::Cluster(pg) => pg.async_status(&id).await,
        }
    }
}

/// Runs a SQLite call on the blocking pool.
async fn blocking<T: Send + 'static>(
    db: &Arc<Sqlite>,
    call: impl FnOnce(&Sqlite) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || call(&db)).await?
}

/// What an attempt leaves a job in: queued again for `retry_at`, else done or failed.
fn finished_state(outcome: &AsyncOutcome, retry_at: Option<i64>) -> &'static str {
    if retry_at.is_some() {
        "queued"
    } else if outcome.ret_code == 0 {
        "done"
    } else {
        "failed"
    }
}

/// A task's load balancers from their stored list (ids joined by commas).
fn load_balancer_ids(stored: &str) -> Vec<String> {
    stored.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// An entity's stored text.
fn entity_body(entity: &Entity) -> String {
    serde_json::to_string(entity).expect("entities serialise to JSON")
}

/// An entity read back from its stored text.
fn parse_entity(kind: &str, key: &str, body: &str) -> Result<Entity, StoreError> {
    serde_json::from_str(body).map_err(|source| StoreError::Corrupt { key: format!("{kind}/{key}"), source })
}

/// An entity's stored kind and key.
pub(crate) fn key_parts(key: &EntityKey) -> (&'static str, String) {
    match key {
        EntityKey::Account(uin) => ("account", uin.clone()),
        EntityKey::Namespace(scope, name) => ("namespace", format!("{}/{}/{}", scope.uin, scope.region, name)),
        EntityKey::Function(k) => {
            ("function", format!("{}/{}/{}/{}", k.scope.uin, k.scope.region, k.namespace, k.name))
        }
        EntityKey::LoadBalancer(id) => ("load_balancer", id.clone()),
        EntityKey::Listener(id) => ("listener", id.clone()),
        EntityKey::Rule(id) => ("rule", id.clone()),
        EntityKey::Certificate(id) => ("certificate", id.clone()),
        EntityKey::CustomConfig(id) => ("custom_config", id.clone()),
    }
}

/// The entity key a stored kind and key name, or `None` for a kind this version does not know.
fn parse_key(kind: &str, key: &str) -> Option<EntityKey> {
    let scope = |uin: &str, region: &str| Scope { uin: uin.to_string(), region: region.to_string() };
    Some(match kind {
        "account" => EntityKey::Account(key.to_string()),
        "namespace" => {
            let mut parts = key.splitn(3, '/');
            let (uin, region, name) = (parts.next()?, parts.next()?, parts.next()?);
            EntityKey::Namespace(scope(uin, region), name.to_string())
        }
        "function" => {
            let mut parts = key.splitn(4, '/');
            let (uin, region, namespace, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            EntityKey::Function(FunctionKey {
                scope: scope(uin, region),
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        "load_balancer" => EntityKey::LoadBalancer(key.to_string()),
        "listener" => EntityKey::Listener(key.to_string()),
        "rule" => EntityKey::Rule(key.to_string()),
        "certificate" => EntityKey::Certificate(key.to_string()),
        "custom_config" => EntityKey::CustomConfig(key.to_string()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_read_back_as_the_keys_they_name() {
        let scope = Scope { uin: "100".to_string(), region: "ap-guangzhou".to_string() };
        let keys = [
            EntityKey::Account("100".to_string()),
            EntityKey::Namespace(scope.clone(), "ns".to_string()),
            EntityKey::Function(FunctionKey { scope, namespace: "default".to_string(), name: "f".to_string() }),
            EntityKey::LoadBalancer("lb-1".to_string()),
            EntityKey::Listener("lbl-1".to_string()),
            EntityKey::Rule("loc-1".to_string()),
            EntityKey::Certificate("cert-1".to_string()),
            EntityKey::CustomConfig("pz-1".to_string()),
        ];
        for key in keys {
            let (kind, name) = key_parts(&key);
            assert_eq!(parse_key(kind, &name), Some(key));
        }
        assert_eq!(parse_key("gadget", "x"), None);
    }
}
