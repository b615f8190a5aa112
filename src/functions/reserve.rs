//! A function's reserved concurrency (`ReservedConcurrencyMem`) on this node.
//!
//! Invocations take the memory they run with from the reservation, as SCF counts it. On one node the node's share
//! is the whole reservation. In a cluster each node holds a share leased from the database and rebalanced by
//! demand (`shares::rebalance`), so that the shares of the nodes that can reach the database never add up to more
//! than the reservation: a node shrinks its share before it records the smaller one, and grows it only after the
//! larger one is recorded. A share shrunk below what is running is paid back as invocations finish.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A function's reservation, shared by the pools of all its versions: `None` without one.
#[derive(Default)]
pub struct Reservation(ArcSwapOption<Reserved>);

/// A reservation of `total_mb`, of which this node may use its share.
pub struct Reserved {
    /// The function's reservation, in MB (the cluster's, not this node's).
    pub total_mb: u32,
    /// What one invocation takes (the function's memory size): a cluster's shares are leased in whole units.
    pub unit_mb: u32,
    semaphore: Arc<Semaphore>,
    counts: Mutex<Counts>,
    /// MB that callers are waiting for now.
    waiting_mb: AtomicU32,
    /// Woken when a caller has to wait (a cluster node then asks for a larger share at once).
    demand: Arc<Notify>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// What this node may use.
    share: u32,
    /// Permits that exist (available or held): above `share` while a shrunk share is paid back.
    granted: u32,
}

/// MB of a reservation held by one invocation; given back (or, while a shrunk share is paid back, retired) when
/// dropped.
pub struct ReservedPermit {
    permit: Option<OwnedSemaphorePermit>,
    reserved: Arc<Reserved>,
}

// === impl Reservation ===

impl Reservation {
    pub fn load(&self) -> Option<Arc<Reserved>> {
        self.0.load_full()
    }

    /// Makes the reservation `total_mb` (or none) for invocations of `unit_mb`, with `share` MB of it for this
    /// node; a reservation that did not change is kept as it is. A changed one starts anew: invocations running
    /// under the old one finish under it.
    pub fn set(&self, total_mb: Option<u32>, unit_mb: u32, share: impl FnOnce(u32) -> u32, demand: &Arc<Notify>) {
        let current = self.0.load().as_ref().map(|r| (r.total_mb, r.unit_mb));
        if current != total_mb.map(|total| (total, unit_mb)) {
            let made = total_mb.map(|total| Reserved::new(total, unit_mb, share(total), demand.clone()));
            self.0.store(made.map(Arc::new));
        }
    }
}

// === impl Reserved ===

impl Reserved {
    pub fn new(total_mb: u32, unit_mb: u32, share: u32, demand: Arc<Notify>) -> Reserved {
        let share = share.min(total_mb);
        Reserved {
            total_mb,
            unit_mb: unit_mb.max(1),
            semaphore: Arc::new(Semaphore::new(share as usize)),
            counts: Mutex::new(Counts { share, granted: share }),
            waiting_mb: AtomicU32::new(0),
            demand,
        }
    }

    /// Takes `mb` of this node's share, waiting until `deadline` at most.
    pub async fn acquire(self: &Arc<Self>, mb: u32, deadline: Instant) -> Option<ReservedPermit> {
        let permit = match self.semaphore.clone().try_acquire_many_owned(mb) {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting_mb.fetch_add(mb, Ordering::Relaxed);
                self.demand.notify_one();
                let acquired = tokio::time::timeout_at(deadline, self.semaphore.clone().acquire_many_owned(mb)).await;
                self.waiting_mb.fetch_sub(mb, Ordering::Relaxed);
                acquired.ok()?.ok()?
            }
        };
        Some(ReservedPermit { permit: Some(permit), reserved: self.clone() })
    }

    /// This node's share, in MB.
    pub fn share(&self) -> u32 {
        self.counts().share
    }

    /// MB held by running invocations.
    pub fn in_use(&self) -> u32 {
        let counts = self.counts();
        counts.granted.saturating_sub(self.semaphore.available_permits() as u32)
    }

    /// MB this node wants: what runs and what callers wait for, at most the whole reservation.
    pub fn demand(&self) -> u32 {
        (self.in_use() + self.waiting_mb.load(Ordering::Relaxed)).min(self.total_mb)
    }

    /// Sets this node's share: larger at once, smaller by retiring free permits now and held ones as they are
    /// given back.
    pub fn resize(&self, share: u32) {
        let share = share.min(self.total_mb);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if share >= counts.granted {
            self.semaphore.add_permits((share - counts.granted) as usize);
            counts.granted = share;
        } else {
            counts.granted -= self.semaphore.forget_permits((counts.granted - share) as usize) as u32;
        }
        counts.share = share;
    }

    fn counts(&self) -> Counts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl ReservedPermit ===

impl Drop for ReservedPermit {
    fn drop(&mut self) {
        let Some(mut permit) = self.permit.take() else { return };
        let mut counts = self.reserved.counts.lock().unwrap_or_else(|p| p.into_inner());
        let owed = counts.granted.saturating_sub(counts.share);
        if owed == 0 {
            return;
        }
        // Part (or all) of what this invocation held pays back a shrunk share instead of becoming free again.
        let held = permit.num_permits() as u32;
        let retired = owed.min(held);
        if retired < held {
            drop(permit.split((held - retired) as usize));
        }
        permit.forget();
        counts.granted -= retired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(total: u32, share: u32) -> Arc<Reserved> {
        Arc::new(Reserved::new(total, 128, share, Arc::new(Notify::new())))
    }

    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_millis(20)
    }

    #[tokio::test]
    async fn a_share_admits_what_fits_and_no_more() {
        let r = reserved(512, 256);
        let a = r.acquire(128, soon()).await.expect("fits");
        let b = r.acquire(128, soon()).await.expect("fits");
        assert!(r.acquire(128, soon()).await.is_none(), "the share is full");
        assert_eq!((r.in_use(), r.demand()), (256, 256));
        drop(a);
        assert_eq!(r.in_use(), 128);
        drop(b);
        assert_eq!(r.in_use(), 0);
    }

    #[tokio::test]
    async fn a_shrunk_share_is_paid_back_as_invocations_finish() {
        let r = reserved(512, 384);
        let a = r.acquire(128, soon()).await.unwrap();
        let b = r.acquire(128, soon()).await.unwrap();
        let c = r.acquire(128, soon()).await.unwrap();
        r.resize(128);
        assert_eq!(r.share(), 128);
        assert_eq!(r.in_use(), 384, "running invocations are not cut short");
        drop(a);
        assert!(r.acquire(128, soon()).await.is_none(), "a finished invocation pays back the shrunk share");
        drop(b);
        assert!(r.acquire(128, soon()).await.is_none());
        drop(c);
        let d = r.acquire(128, soon()).await.expect("the new share admits one");
        assert!(r.acquire(1, soon()).await.is_none(), "and no more");
        drop(d);
        assert_eq!(r.in_use(), 0);
    }

    #[tokio::test]
    async fn a_grown_share_admits_at_once_and_the_whole_reservation_bounds_it() {
        let r = reserved(256, 0);
        assert!(r.acquire(128, soon()).await.is_none(), "no share, no invocation");
        r.resize(1_000);
        assert_eq!(r.share(), 256, "a share is never more than the reservation");
        let _a = r.acquire(128, soon()).await.unwrap();
        let _b = r.acquire(128, soon()).await.unwrap();
        assert!(r.acquire(128, soon()).await.is_none());
    }

    #[tokio::test]
    async fn a_caller_that_waits_raises_demand_and_wakes_the_rebalancer() {
        let demand = Arc::new(Notify::new());
        let r = Arc::new(Reserved::new(256, 128, 0, demand.clone()));
        let waiter = {
            let r = r.clone();
            tokio::spawn(
                async move { r.acquire(128, Instant::now() + std::time::Duration::from_secs(5)).await.is_some() },
            )
        };
        demand.notified().await;
        assert_eq!(r.demand(), 128);
        r.resize(128);
        assert!(waiter.await.unwrap(), "the grown share admits the waiting caller");
    }
}
