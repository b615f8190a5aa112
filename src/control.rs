//! The single writer: apply a command to the state, make it durable, then publish a new snapshot.
//!
//! Readers (the API's read actions, the proxy, the function engine) never take the writer's lock: they load
//! the current `Arc<Snapshot>`.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::state::{Applied, Command, State, StateError};
use crate::store::{Store, StoreError, Task};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Refused(#[from] StateError),
    #[error("the change could not be made durable")]
    Store(#[from] StoreError),
}

pub struct Control {
    state: Mutex<Arc<State>>,
    store: Arc<Store>,
    current: ArcSwap<Snapshot>,
    published: watch::Sender<u64>,
    /// The newest version the data plane has put into effect (listeners bound or stopped).
    in_effect: watch::Sender<u64>,
}

/// A command made durable and published as snapshot `version`.
#[derive(Debug)]
pub struct Committed {
    pub applied: Applied,
    pub version: u64,
}

// === impl Control ===

impl Control {
    pub fn new(state: State, store: Arc<Store>) -> Control {
        let state = Arc::new(state);
        let snapshot = Snapshot::compile(state.clone(), 1, None);
        let (published, _) = watch::channel(1);
        let (in_effect, _) = watch::channel(0);
        Control { state: Mutex::new(state), store, current: ArcSwap::from_pointee(snapshot), published, in_effect }
    }

    /// The current snapshot: lock-free, for every reader.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Wakes when a new snapshot is published (the value is its version).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Applies a command: on success it is durable and published before this returns. Blocking (SQLite).
    pub fn apply(&self, command: Command, task: Option<Task>) -> Result<Committed, ControlError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (next, applied) = state.try_apply(command)?;
        let changes: Vec<_> = applied.touched.iter().map(|key| (key.clone(), next.entity(key))).collect();
        self.store.commit(&changes, task.as_ref())?;
        let next = Arc::new(next);
        let previous = self.current.load_full();
        let version = previous.version + 1;
        let snapshot = Snapshot::compile(next.clone(), version, Some(&previous));
        *state = next;
        self.current.store(Arc::new(snapshot));
        self.published.send_replace(version);
        Ok(Committed { applied, version })
    }

    /// The data plane reports that it serves snapshot `version`.
    pub fn mark_in_effect(&self, version: u64) {
        self.in_effect.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Waits until the data plane serves snapshot `version` (or newer); false if `timeout` passed first.
    pub async fn wait_in_effect(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.in_effect.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version)).await.is_ok_and(|r| r.is_ok())
    }
}
