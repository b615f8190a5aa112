//! A cluster node's part of the work besides following the state (`control::follow`): its share of each
//! function's reserved concurrency, leased from the database and rebalanced by demand, and its part of each
//! function's provisioned concurrency, spread over the live nodes (with the instances it keeps warm recorded, so
//! that any node reports the cluster's).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::functions::Engine;
use crate::snapshot::Snapshots;
use crate::store::Postgres;

/// The shortest pause between two rounds of leases, however often callers wait.
const MIN_ROUND_GAP: Duration = Duration::from_millis(50);

/// Leases shares and spreads provisioned instances every heartbeat interval, and at once when an invocation waits
/// for a share, until `shutdown` turns true.
pub async fn run(
    pg: Arc<Postgres>,
    engine: Arc<Engine>,
    snapshots: Arc<Snapshots>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(pg.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the node recorded warm instances last time: with none to record now either, nothing is written.
    let mut recorded_any = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.demand().notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let (index, count) = place(&pg);
        if engine.set_spread(index, count) {
            tracing::info!(index, nodes = count, "Provisioned concurrency spread over the live nodes.");
            engine.reconcile(&snapshots.current());
        }
        let snapshot = snapshots.current();
        let warm: Vec<_> = snapshot
            .functions
            .values()
            .flat_map(|spec| {
                spec.function.provisioned.keys().map(move |label| (spec.function.key.clone(), label.clone()))
            })
            .map(|(key, label)| {
                let count = engine.warm_instances(&key, &label);
                (key, label, count)
            })
            .collect();
        if recorded_any || !warm.is_empty() {
            match pg.record_warm(&warm).await {
                Ok(()) => recorded_any = !warm.is_empty(),
                Err(e) => tracing::debug!(error = %e, "Warm provisioned instances not recorded."),
            }
        }
        for (key, reserved) in engine.reserved() {
            if let Err(e) = pg.lease_share(&key, &reserved).await {
                // Unreachable: the node keeps the shares it holds (docs/cluster.md).
                tracing::debug!(function = %key, error = %e, "Reserved concurrency share not leased.");
                break;
            }
        }
        tokio::time::sleep(MIN_ROUND_GAP).await;
    }
}

/// This node's place among the live nodes (by name) and their count; itself counted whatever the last read said.
fn place(pg: &Postgres) -> (usize, usize) {
    let mut live: Vec<String> = pg.nodes_seen().into_iter().filter(|n| n.live).map(|n| n.node_id).collect();
    if !live.iter().any(|n| n == pg.node_id()) {
        live.push(pg.node_id().to_string());
    }
    live.sort();
    let index = live.iter().position(|n| n == pg.node_id()).unwrap_or(0);
    (index, live.len())
}
