//! Caps on open connections, in all and per client address, shared by the API (`api::guard`) and the load
//! balancer's listeners (`proxy`). An admitted connection holds its places while it lives and gives them back when
//! it is dropped; one past a cap is refused, and its caller closes it at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the connection limit is reached")]
    All,
    #[error("the client address is at its connection limit")]
    Client,
}

/// Open connections, capped in all and, optionally, per client address.
pub struct ConnectionCaps {
    all: Arc<Semaphore>,
    /// The cap in all: the permits `all` started with.
    max: u32,
    per_client: Option<PerClient>,
}

/// Open connections by client address, each at most `max`.
struct PerClient {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// An admitted connection's places in the caps, given back when it is dropped.
pub struct Admission {
    _all: OwnedSemaphorePermit,
    _client: Option<ClientPlace>,
}

/// A connection's place among its client address's.
struct ClientPlace {
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

// === impl ConnectionCaps ===

impl ConnectionCaps {
    /// At most `max` open connections (at least 1), and at most `max_per_client` from one client address (0: no
    /// cap per address).
    pub fn new(max: usize, max_per_client: usize) -> ConnectionCaps {
        let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let per_client = (max_per_client > 0).then(|| PerClient { max: max_per_client, open: Arc::default() });
        ConnectionCaps { all: Arc::new(Semaphore::new(max as usize)), max, per_client }
    }

    /// Places for a new connection from `client`, or why there are none.
    pub fn admit(&self, client: IpAddr) -> Result<Admission, Refused> {
        let all = self.all.clone().try_acquire_owned().map_err(|_| Refused::All)?;
        let client = match &self.per_client {
            None => None,
            Some(per_client) => Some(per_client.admit(client)?),
        };
        Ok(Admission { _all: all, _client: client })
    }

    /// Waits until every admitted connection is gone (the places given back are kept from new connections while it
    /// waits).
    pub async fn closed(&self) {
        let _ = self.all.acquire_many(self.max).await;
    }
}

// === impl PerClient ===

impl PerClient {
    fn admit(&self, client: IpAddr) -> Result<ClientPlace, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_default();
        if *count >= self.max {
            return Err(Refused::Client);
        }
        *count += 1;
        Ok(ClientPlace { client, open: self.open.clone() })
    }
}

// === impl ClientPlace ===

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_client_address() {
        let caps = ConnectionCaps::new(3, 2);
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = caps.admit(a).expect("room");
        let _second = caps.admit(a).expect("room");
        assert_eq!(caps.admit(a).err(), Some(Refused::Client), "a client address past its cap");
        let _third = caps.admit(b).expect("another client address");
        assert_eq!(caps.admit(b).err(), Some(Refused::All), "past the cap in all");
        drop(first);
        assert!(caps.admit(a).is_ok(), "a closed connection gives its places back");
    }

    #[test]
    fn without_a_cap_per_client_address_one_address_may_take_every_place() {
        let caps = ConnectionCaps::new(4, 0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Admission> = (0..4).map(|_| caps.admit(a).expect("room")).collect();
        assert_eq!(caps.admit(a).err(), Some(Refused::All));
        drop(held);
        assert!(caps.admit(a).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn closed_waits_for_every_admitted_connection() {
        let caps = ConnectionCaps::new(2, 1);
        let open = caps.admit("127.0.0.1".parse().unwrap()).expect("room");
        let closed = caps.closed();
        tokio::pin!(closed);
        let wait = std::time::Duration::from_secs(60);
        assert!(tokio::time::timeout(wait, closed.as_mut()).await.is_err(), "a connection is still open");
        drop(open);
        tokio::time::timeout(wait, closed).await.expect("every connection is gone");
    }
}
