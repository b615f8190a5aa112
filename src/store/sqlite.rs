//! The embedded store: SQLite in the data directory (WAL, synchronous commits).
//!
//! Entities are kept one row each, as JSON, so a command writes only what it touched. Code packages are kept
//! once by SHA-256. A commit returns only after SQLite has made it durable. The same file format is a cluster
//! node's local copy of the shared state (`postgres.rs`): the entities and version it last served, and the code
//! packages it has verified.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{AsyncJob, AsyncOutcome, AsyncStatus, Loaded, StoreError, StoredJob, TASKS_KEPT, Task, key_parts};
use crate::state::{Entity, EntityKey};

pub struct Sqlite {
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
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('version', 1);
";

// === impl Sqlite ===

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
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
        Sqlite::prepare(conn, path)
    }

    /// A store in memory, gone with the process (a stand-in for a local copy where none is wanted).
    pub fn in_memory() -> Result<Sqlite, StoreError> {
        let path = Path::new(":memory:");
        let conn =
            Connection::open_in_memory().map_err(|source| StoreError::Open { path: ":memory:".into(), source })?;
        Sqlite::prepare(conn, path)
    }

    fn prepare(conn: Connection, path: &Path) -> Result<Sqlite, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        // Stores made before packages had their time: those count as stored long ago.
        let has_time: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('code') WHERE name = 'stored_ms'")
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(open_err)?;
        if !has_time {
            conn.execute_batch("ALTER TABLE code ADD COLUMN stored_ms INTEGER NOT NULL DEFAULT 0").map_err(open_err)?;
        }
        Ok(Sqlite { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back), so recover.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stored state: its entities and the version they make up.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let conn = self.conn();
        let version: i64 = conn.query_row("SELECT value FROM meta WHERE name = 'version'", [], |row| row.get(0))?;
        let mut stmt = conn.prepare("SELECT kind, key, body FROM entities ORDER BY kind, key")?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?;
        let mut entities = Vec::new();
        for row in rows {
            let (kind, key, body) = row?;
            entities.push(super::parse_entity(&kind, &key, &body)?);
        }
        Ok(Loaded { version: version.max(1) as u64, entities })
    }

    /// Writes the entities a command touched (`None`: removed), its task record and the state's new `version`, in
    /// one durable transaction.
    pub fn commit(
        &self,
        changes: &[(EntityKey, Option<Entity>)],
        task: Option<&Task>,
        version: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !changes.is_empty() {
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'version'", params![version as i64])?;
        }
        for (key, entity) in changes {
            let (kind, id) = key_parts(key);
            match entity {
                Some(entity) => {
                    let body = super::entity_body(entity);
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

    /// Replaces every entity with `entities` at `version` (a cluster node's local copy after a full reload).
    pub fn replace_all(&self, entities: &[Entity], version: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM entities", [])?;
        for entity in entities {
            let (kind, id) = key_parts(&entity.key());
            tx.execute(
                "INSERT INTO entities (kind, key, body) VALUES (?1, ?2, ?3)",
                params![kind, id, super::entity_body(entity)],
            )?;
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'version'", params![version as i64])?;
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
            stmt.query_map(params![now_ms, limit as i64], job_row)?.collect::<Result<_, _>>()?
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
        let state = super::finished_state(outcome, retry_at);
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
        let sql = "SELECT request_id, uin, lb_ids, created_ms FROM tasks WHERE request_id = ?1";
        Ok(conn.query_row(sql, params![request_id], task_row).optional()?)
    }

    /// Every task record (for `fnlb store copy`).
    pub fn all_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT request_id, uin, lb_ids, created_ms FROM tasks ORDER BY created_ms")?;
        Ok(stmt.query_map([], task_row)?.collect::<Result<_, _>>()?)
    }

    /// Every asynchronous invocation, whatever its state (for `fnlb store copy`).
    pub fn all_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT request_id, function, qualifier, event, attempts, created_ms, state, next_ms, ret_code, ret_msg,
             duration_ms, mem_bytes FROM async_invocations ORDER BY created_ms, request_id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredJob {
                job: job_row(row)?,
                state: row.get(6)?,
                next_ms: row.get(7)?,
                ret_code: row.get(8)?,
                ret_msg: row.get(9)?,
                duration_ms: row.get(10)?,
                mem_bytes: row.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The SHA-256 of every stored code package.
    pub fn code_list(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT sha256 FROM code ORDER BY sha256")?;
        Ok(stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?)
    }

    /// Stores a code package under its SHA-256 (a package already stored is not written again; its time is
    /// renewed, so that a package uploaded again is not collected before it is used).
    pub fn put_code(&self, sha256: &str, data: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO code (sha256, size, data, stored_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sha256) DO UPDATE SET stored_ms = excluded.stored_ms",
            params![sha256, data.len() as i64, data, crate::clock::now_ms()],
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

    /// Removes the code packages not in `keep` that were stored before `before_ms`.
    pub fn forget_code_except(&self, keep: &BTreeSet<String>, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let stored: Vec<String> = {
            let mut stmt = conn.prepare("SELECT sha256 FROM code WHERE stored_ms < ?1")?;
            stmt.query_map(params![before_ms], |row| row.get(0))?.collect::<Result<_, _>>()?
        };
        let mut removed = 0;
        for sha in stored.iter().filter(|s| !keep.contains(*s)) {
            removed += conn.execute("DELETE FROM code WHERE sha256 = ?1", params![sha])?;
        }
        Ok(removed)
    }
}

/// An asynchronous invocation from the first columns of its row (`request_id, function, qualifier, event,
/// attempts, created_ms`).
fn job_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AsyncJob> {
    Ok(AsyncJob {
        request_id: row.get(0)?,
        function: row.get(1)?,
        qualifier: row.get(2)?,
        event: row.get(3)?,
        attempts: row.get(4)?,
        created_ms: row.get(5)?,
    })
}

/// A task from its row (`request_id, uin, lb_ids, created_ms`).
fn task_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        request_id: row.get(0)?,
        uin: row.get(1)?,
        load_balancer_ids: super::load_balancer_ids(&row.get::<_, String>(2)?),
        created_ms: row.get(3)?,
        version: 0,
    })
}

#[cfg(test)]
mod tests;
