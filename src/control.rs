//! The writer: apply a command to the newest state, make it durable, then publish a new snapshot.
//!
//! On one node the newest state is the one this process holds, and SQLite makes each change durable. In a
//! cluster every node writes: a change takes the cluster's version row in PostgreSQL, catches up with what other
//! nodes committed, is checked by the same pure state machine against that newest state, and commits as the next
//! version; `follow` brings the changes of other nodes to this one. Either way readers (the API's read actions, the
//! proxy, the function engine) never take the writer's lock: they read `Snapshots`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};

use crate::snapshot::{Snapshot, Snapshots};
use crate::state::{Applied, Command, Entity, EntityKey, State, StateError};
use crate::store::postgres::{Caught, Changes};
use crate::store::{Postgres, Sqlite, Store, StoreError, Task};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Refused(#[from] StateError),
    #[error("the change could not be made durable")]
    Store(#[from] StoreError),
}

pub struct Control {
    served: Mutex<Served>,
    store: Store,
    snapshots: Arc<Snapshots>,
}

/// The state this node serves, and its version.
struct Served {
    state: Arc<State>,
    version: u64,
}

/// A command made durable and published as snapshot `version`.
#[derive(Debug)]
pub struct Committed {
    pub applied: Applied,
    pub version: u64,
}

// === impl Control ===

impl Control {
    pub fn new(state: State, version: u64, store: Store) -> Control {
        let state = Arc::new(state);
        let snapshots = Arc::new(Snapshots::new(Snapshot::compile(state.clone(), version, None)));
        Control { served: Mutex::new(Served { state, version }), store, snapshots }
    }

    /// The data plane's source of snapshots.
    pub fn snapshots(&self) -> &Arc<Snapshots> {
        &self.snapshots
    }

    /// The current snapshot: lock-free, for every reader.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.current()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies a command: on success it is durable and published before this returns.
    pub async fn apply(&self, command: Command, task: Option<Task>) -> Result<Committed, ControlError> {
        let committed = self.apply_with(|_| Some(command.clone()), task).await?;
        Ok(committed.expect("a command is always given"))
    }

    /// Applies the command `build` makes from the newest committed state, or nothing when it makes none (what
    /// it would do is already done). In a cluster `build` may run twice: on the state this node serves and, when
    /// other nodes committed since, on the newest.
    pub async fn apply_with(
        &self,
        build: impl Fn(&State) -> Option<Command>,
        task: Option<Task>,
    ) -> Result<Option<Committed>, ControlError> {
        let mut served = self.served.lock().await;
        let Some(command) = build(&served.state) else { return Ok(None) };
        match &self.store {
            Store::Embedded(db) => {
                let (next, applied) = served.state.try_apply(command)?;
                let version = if applied.touched.is_empty() { served.version } else { served.version + 1 };
                let changes = touched(&next, &applied);
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.commit(&changes, task.as_ref(), version))
                    .await
                    .map_err(StoreError::from)??;
                self.publish(&mut served, Arc::new(next), version);
                Ok(Some(Committed { applied, version }))
            }
            Store::Cluster(pg) => {
                let written =
                    tokio::time::timeout(pg.settings.write_timeout, self.write(pg, &mut served, command, &build, task))
                        .await
                        .unwrap_or_else(|_| {
                            Err(StoreError::Unreachable(format!(
                                "no answer within {} ms",
                                pg.settings.write_timeout.as_millis()
                            ))
                            .into())
                        });
                pg.note_reachable(!matches!(&written, Err(ControlError::Store(StoreError::Unreachable(_)))));
                written
            }
        }
    }

    /// A change in a cluster: the version row taken, what others committed taken in, the command checked against
    /// that newest state and committed as the next version.
    async fn write(
        &self,
        pg: &Postgres,
        served: &mut Served,
        mut command: Command,
        build: &impl Fn(&State) -> Option<Command>,
        task: Option<Task>,
    ) -> Result<Option<Committed>, ControlError> {
        let mut client = pg.writer().await?;
        let writing = pg.begin_write(&mut client).await?;
        if writing.head > served.version {
            let caught = writing.read_since(served.version).await?;
            self.take(pg.copy(), served, caught).await;
            match build(&served.state) {
                Some(newest) => command = newest,
                None => return Ok(None),
            }
        }
        let (next, applied) = served.state.try_apply(command)?;
        if applied.touched.is_empty() {
            if let Some(task) = &task {
                writing.record_task(task).await?;
            }
            return Ok(Some(Committed { applied, version: served.version }));
        }
        let changes = touched(&next, &applied);
        let version = writing.commit(&changes, task.as_ref()).await?;
        self.publish(served, Arc::new(next), version);
        let copy = pg.copy().clone();
        let kept = tokio::task::spawn_blocking(move || copy.commit(&changes, None, version)).await;
        if !matches!(kept, Ok(Ok(()))) {
            tracing::warn!(version, "The local copy of the state could not be written.");
        }
        Ok(Some(Committed { applied, version }))
    }

    /// Serves what other nodes committed since this node's version. Returns the version now served.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let Store::Cluster(pg) = &self.store else { return Ok(self.snapshots.current().version) };
        let mut served = self.served.lock().await;
        let caught = pg.read_since(served.version).await?;
        if caught.version > served.version {
            self.take(pg.copy(), &mut served, caught).await;
        }
        Ok(served.version)
    }

    /// Takes in committed changes, publishes the state they make, and keeps it in the local copy.
    async fn take(&self, copy: &Arc<Sqlite>, served: &mut Served, caught: Caught) {
        let Caught { version, changes } = caught;
        let next = match &changes {
            Changes::Log(log) => {
                let mut next = (*served.state).clone();
                next.take_changes(log.iter().cloned());
                next
            }
            Changes::Whole(entities) => State::restore(served.state.limits.clone(), entities.iter().cloned()),
        };
        tracing::debug!(from = served.version, to = version, "Serving changes committed by other nodes.");
        self.publish(served, Arc::new(next), version);
        let copy = copy.clone();
        let kept = tokio::task::spawn_blocking(move || match changes {
            Changes::Log(log) => copy.commit(&log, None, version),
            Changes::Whole(entities) => copy.replace_all(&entities, version),
        });
        if !matches!(kept.await, Ok(Ok(()))) {
            tracing::warn!(version, "The local copy of the state could not be written.");
        }
    }

    fn publish(&self, served: &mut Served, state: Arc<State>, version: u64) {
        let previous = self.snapshots.current();
        let snapshot = Snapshot::compile(state.clone(), version, Some(&previous));
        *served = Served { state, version };
        self.snapshots.publish(snapshot);
    }
}

/// The entities a command touched, as they are after it (`None`: removed).
fn touched(next: &State, applied: &Applied) -> Vec<(EntityKey, Option<Entity>)> {
    applied.touched.iter().map(|key| (key.clone(), next.entity(key))).collect()
}

/// Keeps a cluster node serving the newest committed state until `shutdown` turns true: woken by notifications
/// on a connection of its own, and reading the head every poll interval whatever it heard (notifications are
/// lost while that connection is down). Records the node's heartbeat with the version it serves.
pub async fn follow(control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let Store::Cluster(pg) = control.store().clone() else { return };
    let wake = Arc::new(Notify::new());
    let mut listening: Option<tokio_postgres::Client> = None;
    let mut heartbeat = tokio::time::interval(pg.settings.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = true;
    loop {
        if listening.as_ref().is_none_or(|client| client.is_closed()) {
            listening = pg.listen(wake.clone()).await.ok();
        }
        let caught = control.catch_up().await;
        match (&caught, was_up) {
            (Err(e), true) => tracing::warn!(error = %e, "The store cannot be reached: serving the last state."),
            (Ok(version), false) => tracing::info!(version, "The store is reachable again."),
            _ => {}
        }
        was_up = caught.is_ok();
        let beat = tokio::select! {
            _ = wake.notified() => false,
            _ = tokio::time::sleep(pg.settings.poll_interval) => false,
            _ = heartbeat.tick() => true,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        if beat {
            let recorded = pg.heartbeat(control.snapshots().in_effect()).await;
            if let Err(e) = recorded.and(pg.nodes().await.map(drop)) {
                tracing::debug!(error = %e, "Heartbeat not recorded.");
            }
        }
    }
}

/// How long a node waits for the store at start before serving its local copy.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
