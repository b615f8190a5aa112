//! The embedded store: SQLite in the data directory (WAL, synchronous commits).
//!
//! Entities are kept one row each, as JSON, so a command writes only what it touched. Code packages are kept
//! once by SHA-256. A commit returns only after SQLite has made it durable.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::state::{Entity, EntityKey};

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
}

/// A task: the record of an accepted CLB mutation, for `DescribeTaskStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub request_id: String,
    pub uin: String,
    pub load_balancer_ids: Vec<String>,
    pub created_ms: i64,
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

pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entities (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS code (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (request_id TEXT PRIMARY KEY, uin TEXT NOT NULL, lb_ids TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_ms);
CREATE TABLE IF NOT EXISTS async_invocations (
    request_id TEXT PRIMARY KEY, function TEXT NOT NULL, qualifier TEXT NOT NULL, event BLOB NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    ret_code INTEGER, ret_msg TEXT, duration_ms REAL, mem_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS async_due ON async_invocations (state, next_ms);
";

/// How many task records are kept; older ones are forgotten (`DescribeTaskStatus` then says it never saw them).
pub const TASKS_KEPT: i64 = 100_000;

// === impl Store ===

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        // The store holds secrets (account keys, certificates' private keys): only fnlb's user may read it. The
        // file is created with that mode, SQLite gives its journal files the same, and an older store is fixed.
        let private = |path: &Path| {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let made = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path);
            made.and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        };
        private(path).map_err(|e| StoreError::Permissions { path: path.display().to_string(), source: e })?;
        for journal in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(journal);
            let journal = Path::new(&name);
            if journal.exists() {
                let _ = private(journal);
            }
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back), so recover.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn load_entities(&self) -> Result<Vec<Entity>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT kind, key, body FROM entities ORDER BY kind, key")?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?;
        let mut entities = Vec::new();
        for row in rows {
            let (kind, key, body) = row?;
            let entity = serde_json::from_str(&body)
                .map_err(|source| StoreError::Corrupt { key: format!("{kind}/{key}"), source })?;
            entities.push(entity);
        }
        Ok(entities)
    }

    /// Writes the entities a command touched (`None`: removed) and its task record, in one durable transaction.
    pub fn commit(&self, changes: &[(EntityKey, Option<Entity>)], task: Option<&Task>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (key, entity) in changes {
            let (kind, id) = key_parts(key);
            match entity {
                Some(entity) => {
                    let body = serde_json::to_string(entity).expect("entities serialise to JSON");
                    tx.execute(
                        "INSERT INTO entities (kind, key, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
                        params![kind, id, body],
                    )?;
                }
                None => {
                    tx.execute("DELETE FROM entities WHERE kind = ?1 AND key = ?2", params![kind, id])?;
                }
            }
        }
        if let Some(task) = task {
            tx.execute(
                "INSERT OR REPLACE INTO tasks (request_id, uin, lb_ids, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![task.request_id, task.uin, task.load_balancer_ids.join(","), task.created_ms],
            )?;
            tx.execute(
                "DELETE FROM tasks WHERE created_ms < (SELECT created_ms FROM tasks ORDER BY created_ms DESC LIMIT 1 OFFSET ?1)",
                params![TASKS_KEPT],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Queues an asynchronous invocation (durable when this returns); false when `cap` invocations are already
    /// waiting or running.
    pub fn enqueue(&self, job: &AsyncJob, cap: usize) -> Result<bool, StoreError> {
        let conn = self.conn();
        let pending: i64 =
            conn.query_row("SELECT COUNT(*) FROM async_invocations WHERE state IN ('queued', 'running')", [], |row| {
                row.get(0)
            })?;
        if pending >= cap as i64 {
            return Ok(false);
        }
        conn.execute(
            "INSERT INTO async_invocations (request_id, function, qualifier, event, state, attempts, next_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5)",
            params![job.request_id, job.function, job.qualifier, job.event, job.created_ms],
        )?;
        Ok(true)
    }

    /// Forgets finished asynchronous invocations queued before `before_ms`.
    pub fn prune_finished(&self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM async_invocations WHERE state IN ('done', 'failed') AND created_ms < ?1",
            params![before_ms],
        )?)
    }

    /// Takes up to `limit` queued invocations that are due, marking them running.
    pub fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<AsyncJob>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let jobs: Vec<AsyncJob> = {
            let mut stmt = tx.prepare(
                "SELECT request_id, function, qualifier, event, attempts, created_ms FROM async_invocations
                 WHERE state = 'queued' AND next_ms <= ?1 ORDER BY next_ms LIMIT ?2",
            )?;
            stmt.query_map(params![now_ms, limit as i64], |row| {
                Ok(AsyncJob {
                    request_id: row.get(0)?,
                    function: row.get(1)?,
                    qualifier: row.get(2)?,
                    event: row.get(3)?,
                    attempts: row.get(4)?,
                    created_ms: row.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?
        };
        for job in &jobs {
            tx.execute(
                "UPDATE async_invocations SET state = 'running' WHERE request_id = ?1",
                params![job.request_id],
            )?;
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// The earliest time a queued invocation is due.
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let next =
            self.conn().query_row("SELECT MIN(next_ms) FROM async_invocations WHERE state = 'queued'", [], |row| {
                row.get::<_, Option<i64>>(0)
            })?;
        Ok(next)
    }

    /// Records an attempt: `retry_at` queues it again, otherwise it is finished.
    pub fn finish_attempt(
        &self,
        request_id: &str,
        outcome: &AsyncOutcome,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = if retry_at.is_some() {
            "queued"
        } else if outcome.ret_code == 0 {
            "done"
        } else {
            "failed"
        };
        self.conn().execute(
            "UPDATE async_invocations SET state = ?2, attempts = attempts + 1, next_ms = COALESCE(?3, next_ms),
             ret_code = ?4, ret_msg = ?5, duration_ms = ?6, mem_bytes = ?7 WHERE request_id = ?1",
            params![
                request_id,
                state,
                retry_at,
                outcome.ret_code,
                outcome.ret_msg,
                outcome.duration_ms,
                outcome.mem_bytes as i64
            ],
        )?;
        Ok(())
    }

    /// Invocations that were running when fnlb stopped are queued again (at-least-once delivery).
    pub fn requeue_running(&self) -> Result<usize, StoreError> {
        Ok(self.conn().execute("UPDATE async_invocations SET state = 'queued' WHERE state = 'running'", [])?)
    }

    /// An asynchronous invocation's state, for `GetRequestStatus`.
    pub fn async_status(&self, request_id: &str) -> Result<Option<AsyncStatus>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT function, state, attempts, created_ms, ret_code, ret_msg, duration_ms, mem_bytes
                 FROM async_invocations WHERE request_id = ?1",
                params![request_id],
                |row| {
                    Ok(AsyncStatus {
                        function: row.get(0)?,
                        state: row.get(1)?,
                        attempts: row.get(2)?,
                        created_ms: row.get(3)?,
                        ret_code: row.get(4)?,
                        ret_msg: row.get(5)?,
                        duration_ms: row.get(6)?,
                        mem_bytes: row.get::<_, Option<i64>>(7)?.map(|m| m as u64),
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn task(&self, request_id: &str) -> Result<Option<Task>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT request_id, uin, lb_ids, created_ms FROM tasks WHERE request_id = ?1",
                params![request_id],
                |row| {
                    let ids: String = row.get(2)?;
                    Ok(Task {
                        request_id: row.get(0)?,
                        uin: row.get(1)?,
                        load_balancer_ids: ids.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                        created_ms: row.get(3)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Stores a code package under its SHA-256 (a package already stored is not written again).
    pub fn put_code(&self, sha256: &str, data: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO code (sha256, size, data) VALUES (?1, ?2, ?3)",
            params![sha256, data.len() as i64, data],
        )?;
        Ok(())
    }

    pub fn code(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let data = self
            .conn()
            .query_row("SELECT data FROM code WHERE sha256 = ?1", params![sha256], |row| row.get(0))
            .optional()?;
        Ok(data)
    }

    /// Removes code packages no function refers to any more.
    pub fn forget_code_except(&self, keep: &[String]) -> Result<usize, StoreError> {
        let conn = self.conn();
        let stored: Vec<String> = {
            let mut stmt = conn.prepare("SELECT sha256 FROM code")?;
            stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?
        };
        let mut removed = 0;
        for sha in stored.iter().filter(|s| !keep.contains(s)) {
            removed += conn.execute("DELETE FROM code WHERE sha256 = ?1", params![sha])?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;

fn key_parts(key: &EntityKey) -> (&'static str, String) {
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
