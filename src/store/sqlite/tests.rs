use super::*;

fn job(id: &str) -> AsyncJob {
    AsyncJob {
        request_id: id.to_string(),
        function: "100/ap-guangzhou/default/f".to_string(),
        qualifier: "$LATEST".to_string(),
        event: b"{}".to_vec(),
        attempts: 0,
        created_ms: 1_000,
    }
}

fn outcome(ret_code: i64) -> AsyncOutcome {
    AsyncOutcome { ret_code, ret_msg: String::new(), duration_ms: 1.0, mem_bytes: 1 }
}

#[test]
fn the_async_queue_is_capped_and_finished_records_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(&dir.path().join("s.sqlite3")).unwrap();
    assert!(store.enqueue(&job("a"), 1).unwrap());
    assert!(!store.enqueue(&job("b"), 1).unwrap(), "a full queue refuses");
    let taken = store.due_jobs(2_000, 10).unwrap();
    assert_eq!(taken.len(), 1);
    assert!(store.due_jobs(2_000, 10).unwrap().is_empty(), "a running job is not taken twice");
    store.finish_attempt("a", &outcome(0), None).unwrap();
    assert_eq!(store.async_status("a").unwrap().unwrap().state, "done");
    assert!(store.enqueue(&job("b"), 1).unwrap(), "finished jobs do not count");
    assert_eq!(store.prune_finished(1_001).unwrap(), 1);
    assert!(store.async_status("a").unwrap().is_none());
    assert!(store.async_status("b").unwrap().is_some(), "a queued job is kept");
}

#[test]
fn running_jobs_are_requeued_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(&dir.path().join("s.sqlite3")).unwrap();
    store.enqueue(&job("a"), 10).unwrap();
    store.due_jobs(2_000, 10).unwrap();
    assert_eq!(store.requeue_running().unwrap(), 1);
    assert_eq!(store.due_jobs(2_000, 10).unwrap().len(), 1);
}
