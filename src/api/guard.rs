//! What keeps the API from being exhausted before anybody is authenticated: a cap on its connections, in all and
//! per client address (`caps`); a budget of request-body bytes read at once; a deadline for a connection to send a request
//! (from accept, and again whenever it is idle between requests). Bodies are read only after the request's head
//! has been authenticated as far as a head can be (`Api::authenticate_head`), and hashed as they arrive; the one
//! exception is the form body of a request signed with signature v1, which carries its signature and is read
//! first, up to `MAX_FORM_BODY_BYTES` (1 MB).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::caps::{Admission, ConnectionCaps};

/// The API's connection and body limits. Each is a documented setting (docs/configuration.md).
#[derive(Clone, Debug)]
pub struct GuardSettings {
    /// Open API connections in all; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Open API connections from one client address.
    pub max_connections_per_client: usize,
    /// Bytes of request bodies being read at once, over every connection.
    pub max_body_bytes_in_flight: usize,
    /// How long a connection may take to send a request's head: from accept, and from the end of the previous
    /// answer on a kept connection.
    pub header_timeout: Duration,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 128 * 1024 * 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may wait for room in the body budget before it is refused.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// The API's connections and body bytes in use.
pub struct Guard {
    pub settings: GuardSettings,
    connections: ConnectionCaps,
    bodies: Arc<Semaphore>,
}

/// One admitted connection: its places in the caps, given back when it closes.
pub struct Admitted {
    _places: Admission,
    /// Requests of the connection being answered now (its idle deadline runs only while there are none), and when
    /// the connection last started or finished one.
    activity: Arc<Activity>,
}

/// A connection's requests in progress, and when it was last active.
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<tokio::time::Instant>,
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Busy,
    Broken,
}

/// A request body read whole, with its SHA-256 (hex), and the budget it holds until dropped.
pub struct ReadBody {
    pub bytes: Bytes,
    pub sha256: String,
    _budget: Option<OwnedSemaphorePermit>,
}

// === impl Guard ===

impl Guard {
    pub fn new(settings: GuardSettings) -> Guard {
        Guard {
            connections: ConnectionCaps::new(settings.max_connections, settings.max_connections_per_client.max(1)),
            bodies: Arc::new(Semaphore::new(settings.max_body_bytes_in_flight.max(1))),
            settings,
        }
    }

    /// A place for a new connection from `client`, or `None` when the API or that client is at its cap.
    pub fn admit(&self, client: IpAddr) -> Option<Admitted> {
        let places = self.connections.admit(client).ok()?;
        let activity = Activity { in_flight: AtomicUsize::new(0), last: Mutex::new(tokio::time::Instant::now()) };
        Some(Admitted { _places: places, activity: Arc::new(activity) })
    }

    /// Reads a body of at most `limit` bytes, holding its bytes of the budget while it is read and used (all of a
    /// declared length at once, otherwise as it comes), and hashing it as it arrives.
    pub async fn read_body(
        &self,
        mut body: Incoming,
        declared: Option<u64>,
        limit: usize,
    ) -> Result<ReadBody, BodyError> {
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(BodyError::TooLarge);
        }
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut prepaid = 0usize;
        if let Some(n) = declared {
            prepaid = n as usize;
            reserve(&self.bodies, prepaid, &mut held).await?;
        }
        let mut bytes = BytesMut::with_capacity(prepaid);
        let mut hash = sha2::Sha256::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            let Ok(data) = frame.into_data() else { continue };
            if bytes.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            let unpaid = (bytes.len() + data.len()).saturating_sub(prepaid.max(bytes.len()));
            reserve(&self.bodies, unpaid, &mut held).await?;
            hash.update(&data);
            bytes.extend_from_slice(&data);
        }
        Ok(ReadBody { bytes: bytes.freeze(), sha256: hex::encode(hash.finalize()), _budget: held })
    }
}

/// Takes `bytes` more of the body budget (waiting a little for room), added to what `held` holds.
async fn reserve(
    bodies: &Arc<Semaphore>,
    bytes: usize,
    held: &mut Option<OwnedSemaphorePermit>,
) -> Result<(), BodyError> {
    if bytes == 0 {
        return Ok(());
    }
    let permits = u32::try_from(bytes).map_err(|_| BodyError::TooLarge)?;
    let permit = tokio::time::timeout(BODY_BUDGET_WAIT, bodies.clone().acquire_many_owned(permits))
        .await
        .map_err(|_| BodyError::Busy)?
        .map_err(|_| BodyError::Busy)?;
    match held {
        Some(h) => h.merge(permit),
        None => *held = Some(permit),
    }
    Ok(())
}

// === impl Admitted ===

impl Admitted {
    /// Counts a request of the connection as being answered until the returned guard drops.
    pub fn busy(&self) -> Busy {
        self.activity.in_flight.fetch_add(1, Ordering::SeqCst);
        self.activity.touch();
        Busy(self.activity.clone())
    }

    /// When the connection must have sent its next request: `None` while one is being answered.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        if self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.activity.last.lock().unwrap_or_else(|p| p.into_inner()) + timeout)
    }
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }
}

/// A request being answered on a connection.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_client() {
        let guard =
            Guard::new(GuardSettings { max_connections: 3, max_connections_per_client: 2, ..Default::default() });
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = guard.admit(a).expect("room");
        let _second = guard.admit(a).expect("room");
        assert!(guard.admit(a).is_none(), "a client past its cap");
        let _third = guard.admit(b).expect("another client");
        assert!(guard.admit(b).is_none(), "the API past its cap");
        drop(first);
        assert!(guard.admit(a).is_some(), "a closed connection gives its places back");
    }
}
