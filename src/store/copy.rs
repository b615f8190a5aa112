//! `fnlb store copy`: a single node's state (its SQLite store: entities, code packages, tasks and the
//! asynchronous queue) moved into an empty PostgreSQL database for a cluster, in one transaction, then read back
//! and compared.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::Digest;

use super::{ClusterSettings, Postgres, Sqlite, StoreError, entity_body, key_parts};
use crate::state::Entity;

/// What a copy moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// The state's version, now the cluster's.
    pub version: u64,
    pub entities: usize,
    pub code_packages: usize,
    pub code_bytes: u64,
    pub tasks: usize,
    pub invocations: usize,
}

/// Copies the store in `data_dir` into the database `settings` name, which must hold no state yet, and checks
/// that the database then holds exactly what the store does.
pub async fn copy(data_dir: &Path, settings: ClusterSettings) -> Result<Copied, StoreError> {
    let path = data_dir.join("fnlb.sqlite3");
    if !path.is_file() {
        return Err(StoreError::Setup(format!("{} holds no fnlb store (fnlb.sqlite3)", data_dir.display())));
    }
    let source = Sqlite::open(&path)?;
    let pg = Postgres::with_copy(settings, Arc::new(Sqlite::in_memory()?))?;
    let loaded = source.load()?;
    let entities = stored_form(&loaded.entities);
    let code = source.code_list()?;
    let tasks = source.all_tasks()?;
    let jobs = source.all_jobs()?;
    let version = loaded.version.max(2);
    let mut copied = Copied {
        version,
        entities: entities.len(),
        code_packages: code.len(),
        tasks: tasks.len(),
        invocations: jobs.len(),
        ..Copied::default()
    };
    pg.with(async |client| {
        let tx = client.transaction().await?;
        let head: i64 = tx.query_one("SELECT version FROM fnlb.head WHERE id = 1 FOR UPDATE", &[]).await?.get(0);
        let held: i64 = tx
            .query_one(
                "SELECT (SELECT COUNT(*) FROM fnlb.entities) + (SELECT COUNT(*) FROM fnlb.async_invocations)",
                &[],
            )
            .await?
            .get(0);
        if head > 1 || held > 0 {
            // Nothing is written: the transaction is dropped.
            return Ok(Err(head));
        }
        let v = version as i64;
        for ((kind, key), body) in &entities {
            tx.execute(
                "INSERT INTO fnlb.entities (kind, key, body, version) VALUES ($1, $2, $3, $4)",
                &[kind, key, body, &v],
            )
            .await?;
        }
        for sha in &code {
            let Ok(Some(data)) = source.code(sha) else { continue };
            copied.code_bytes += data.len() as u64;
            tx.execute(
                "INSERT INTO fnlb.code (sha256, size, data) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
                &[sha, &(data.len() as i64), &data],
            )
            .await?;
        }
        for t in &tasks {
            tx.execute(
                "INSERT INTO fnlb.tasks (request_id, uin, lb_ids, created_ms, version) VALUES ($1, $2, $3, $4, $5)",
                &[&t.request_id, &t.uin, &t.load_balancer_ids.join(","), &t.created_ms, &v],
            )
            .await?;
        }
        for j in &jobs {
            // An invocation that was running when the node stopped runs again (at least once).
            let state = if j.state == "running" { "queued" } else { j.state.as_str() };
            tx.execute(
                "INSERT INTO fnlb.async_invocations (request_id, function, qualifier, event, state, attempts, next_ms,
                     created_ms, ret_code, ret_msg, duration_ms, mem_bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &j.job.request_id,
                    &j.job.function,
                    &j.job.qualifier,
                    &j.job.event,
                    &state,
                    &j.job.attempts,
                    &j.next_ms,
                    &j.job.created_ms,
                    &j.ret_code,
                    &j.ret_msg,
                    &j.duration_ms,
                    &j.mem_bytes,
                ],
            )
            .await?;
        }
        tx.execute("UPDATE fnlb.head SET version = $1 WHERE id = 1", &[&v]).await?;
        tx.commit().await?;
        Ok(Ok(()))
    })
    .await?
    .map_err(|head| {
        StoreError::Setup(format!(
            "the database already holds a state (version {head}): a copy goes only into a database no node has used"
        ))
    })?;
    verify(&pg, &entities, &code, &copied).await?;
    Ok(copied)
}

/// Entities as the stores keep them: by kind and key, their stored text.
fn stored_form(entities: &[Entity]) -> BTreeMap<(String, String), String> {
    entities
        .iter()
        .map(|e| {
            let (kind, key) = key_parts(&e.key());
            ((kind.to_string(), key), entity_body(e))
        })
        .collect()
}

/// Reads the database back: the same entities, every code package present and matching its SHA-256, the same
/// number of tasks and invocations.
async fn verify(
    pg: &Postgres,
    entities: &BTreeMap<(String, String), String>,
    code: &[String],
    copied: &Copied,
) -> Result<(), StoreError> {
    let mismatch = |what: String| Err(StoreError::Setup(format!("the copy does not match its source: {what}")));
    let loaded = pg.load().await?;
    let stored = stored_form(&loaded.entities);
    if &stored != entities || loaded.version != copied.version {
        return mismatch(format!(
            "{} entities at version {} copied, {} read back",
            entities.len(),
            copied.version,
            stored.len()
        ));
    }
    let (tasks, invocations, packages) = pg
        .with(async |client| {
            let row = client
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM fnlb.tasks), (SELECT COUNT(*) FROM fnlb.async_invocations),
                     (SELECT COUNT(*) FROM fnlb.code)",
                    &[],
                )
                .await?;
            Ok((row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as usize, row.get::<_, i64>(2) as usize))
        })
        .await?;
    if tasks != copied.tasks || invocations != copied.invocations || packages != code.len() {
        return mismatch(format!("{tasks} tasks, {invocations} invocations and {packages} code packages read back"));
    }
    for sha in code {
        let data = pg
            .with(async |client| client.query_opt("SELECT data FROM fnlb.code WHERE sha256 = $1", &[sha]).await)
            .await?
            .map(|row| row.get::<_, Vec<u8>>(0));
        if data.is_none_or(|d| hex::encode(sha2::Sha256::digest(&d)) != *sha) {
            return mismatch(format!("code package {sha} is missing or does not match its SHA-256"));
        }
    }
    Ok(())
}
