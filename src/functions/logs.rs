//! Function logs: one record per invocation, the most recent kept per function. In a cluster each record is also
//! shipped to the shared store (`Shipment`), so that every node's invocations can be read on any node.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

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
    /// The cluster node that ran the invocation (empty on a single node).
    pub node: Arc<str>,
}

/// What a node sends its log shipper.
pub enum Shipment {
    /// An invocation's record.
    Record(FunctionKey, Arc<LogRecord>),
    /// A deleted function's records are forgotten.
    Forget(FunctionKey),
}

/// Records waiting to be shipped, at most; past it new ones are dropped (and counted) until the store takes them.
pub const SHIPPING_QUEUE: usize = 10_000;

impl LogRecord {
    fn bytes(&self) -> usize {
        self.log.len() + self.ret_msg.len() + self.request_id.len() + 64
    }
}

pub struct LogStore {
    per_function: usize,
    bytes_per_function: usize,
    records: Mutex<HashMap<FunctionKey, Kept>>,
    /// In a cluster: this node's name and where its records go.
    shipping: OnceLock<(Arc<str>, mpsc::Sender<Shipment>)>,
    /// Records dropped because the shipping queue was full.
    pub dropped: std::sync::atomic::AtomicU64,
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
        LogStore {
            per_function: per_function.max(1),
            bytes_per_function,
            records: Mutex::new(HashMap::new()),
            shipping: OnceLock::new(),
            dropped: Default::default(),
        }
    }

    /// Records from now on name `node` and are also sent to `shipper` (a cluster's shared store).
    pub fn ship_to(&self, node: &str, shipper: mpsc::Sender<Shipment>) {
        let _ = self.shipping.set((Arc::from(node), shipper));
    }

    /// How many records one function keeps.
    pub fn per_function(&self) -> usize {
        self.per_function
    }

    pub fn record(&self, key: &FunctionKey, mut record: LogRecord) {
        if let Some((node, _)) = self.shipping.get() {
            record.node = node.clone();
        }
        let record = Arc::new(record);
        self.ship(Shipment::Record(key.clone(), record.clone()));
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let kept = records.entry(key.clone()).or_default();
        kept.bytes += record.bytes();
        kept.records.push_back(record);
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
        self.ship(Shipment::Forget(key.clone()));
    }

    fn ship(&self, shipment: Shipment) {
        if let Some((_, shipper)) = self.shipping.get()
            && shipper.try_send(shipment).is_err()
        {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
