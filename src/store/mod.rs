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

pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entities (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS code (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (request_id TEXT PRIMARY KEY, uin TEXT NOT NULL, lb_ids TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_ms);
";

/// How many task records are kept; older ones are forgotten (`DescribeTaskStatus` then says it never saw them).
pub const TASKS_KEPT: i64 = 100_000;

// === impl Store ===

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
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
    }
}
