//! Function logs: one record per invocation, the most recent kept per function.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::state::FunctionKey;

/// One invocation as `GetFunctionLogs` and `Invoke` with `LogType` `Tail` report it.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub request_id: String,
    pub qualifier: String,
    pub start_ms: i64,
    pub duration_ms: f64,
    pub mem_bytes: u64,
    /// 200 on success, else the SCF status code (contract 2.7).
    pub status: u16,
    /// The return value's JSON text, or the error JSON.
    pub ret_msg: String,
    /// The whole log: `START`, the function's output, `END`, `Report`.
    pub log: Arc<str>,
}

impl LogRecord {
    fn bytes(&self) -> usize {
        self.log.len() + self.ret_msg.len() + self.request_id.len() + 64
    }
}

pub struct LogStore {
    per_function: usize,
    bytes_per_function: usize,
    records: Mutex<HashMap<FunctionKey, Kept>>,
}

#[derive(Default)]
struct Kept {
    records: VecDeque<Arc<LogRecord>>,
    bytes: usize,
}

// === impl LogStore ===

impl LogStore {
    /// Keeps at most `per_function` records and `bytes_per_function` bytes per function, dropping the oldest.
    pub fn new(per_function: usize, bytes_per_function: usize) -> LogStore {
        LogStore { per_function: per_function.max(1), bytes_per_function, records: Mutex::new(HashMap::new()) }
    }

    pub fn record(&self, key: &FunctionKey, record: LogRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let kept = records.entry(key.clone()).or_default();
        kept.bytes += record.bytes();
        kept.records.push_back(Arc::new(record));
        while kept.records.len() > self.per_function || (kept.bytes > self.bytes_per_function && kept.records.len() > 1)
        {
            if let Some(old) = kept.records.pop_front() {
                kept.bytes -= old.bytes();
            }
        }
    }

    /// The records of a function, newest first.
    pub fn recent(&self, key: &FunctionKey) -> Vec<Arc<LogRecord>> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.get(key).map(|k| k.records.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// Forgets a deleted function's logs.
    pub fn forget(&self, key: &FunctionKey) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}
