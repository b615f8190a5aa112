//! Guessing is slow. Failed sign-ins and failed TC3 signatures are counted per client address and per SecretId;
//! past a few, the address is refused for a while that doubles with each further failure. A SecretId under attack
//! is refused only to addresses that have failed more than once themselves, so a stranger guessing cannot lock out
//! the real user, who signs in (or signs correctly) from an address that has not failed, or failed once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before any wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait after a failure.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A record with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Records kept at most; past it, the oldest are forgotten first.
const MAX_RECORDS: usize = 100_000;

#[derive(Default)]
pub struct Backoff {
    records: Mutex<HashMap<Key, Record>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Client(IpAddr),
    SecretId(String),
}

struct Record {
    failures: u32,
    last: Instant,
    refused_until: Instant,
}

// === impl Backoff ===

impl Backoff {
    /// How long an attempt from `client` (for `secret_id`) must still wait, if it must.
    pub fn wait(&self, client: IpAddr, secret_id: Option<&str>) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let left = |key: &Key| records.get(key).and_then(|r| r.refused_until.checked_duration_since(now));
        let client_key = Key::Client(client);
        if let Some(wait) = left(&client_key).filter(|w| !w.is_zero()) {
            return Some(wait);
        }
        // A SecretId under attack waits only for addresses that have failed more than once themselves.
        let has_failed = records.get(&client_key).is_some_and(|r| r.failures > 1);
        match secret_id {
            Some(id) if has_failed => left(&Key::SecretId(id.to_string())).filter(|w| !w.is_zero()),
            _ => None,
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, client: IpAddr, secret_id: Option<&str>) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if records.len() >= MAX_RECORDS {
            records.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
            if records.len() >= MAX_RECORDS {
                let oldest = records.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    records.remove(&oldest);
                }
            }
        }
        let keys = std::iter::once(Key::Client(client)).chain(secret_id.map(|id| Key::SecretId(id.to_string())));
        for key in keys {
            let record = records.entry(key).or_insert(Record { failures: 0, last: now, refused_until: now });
            if now.duration_since(record.last) >= FORGET_AFTER {
                record.failures = 0;
            }
            record.failures += 1;
            record.last = now;
            if record.failures > FREE_FAILURES {
                let doublings = (record.failures - FREE_FAILURES - 1).min(16);
                record.refused_until = now + Duration::from_secs(1 << doublings).min(MAX_WAIT);
            }
        }
    }

    /// A success from `client` clears its record.
    pub fn succeeded(&self, client: IpAddr) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).remove(&Key::Client(client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUESSER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OWNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_guesser_waits_and_the_owner_does_not() {
        let backoff = Backoff::default();
        for _ in 0..FREE_FAILURES {
            assert!(backoff.wait(GUESSER, Some("AKID")).is_none(), "the first failures are free");
            backoff.failed(GUESSER, Some("AKID"));
        }
        backoff.failed(GUESSER, Some("AKID"));
        let wait = backoff.wait(GUESSER, Some("AKID")).expect("past the free failures the guesser waits");
        assert!(wait <= Duration::from_secs(1));
        backoff.failed(GUESSER, Some("AKID"));
        assert!(backoff.wait(GUESSER, Some("AKID")).unwrap() > Duration::from_secs(1), "the wait doubles");
        // The owner, from an address that has not failed, is not locked out of the SecretId under attack.
        assert!(backoff.wait(OWNER, Some("AKID")).is_none());
        // An owner who mistyped once is not either; one who keeps failing waits with the guesser.
        backoff.failed(OWNER, Some("AKID"));
        assert!(backoff.wait(OWNER, Some("AKID")).is_none());
        backoff.failed(OWNER, Some("AKID"));
        assert!(backoff.wait(OWNER, Some("AKID")).is_some());
        backoff.succeeded(OWNER);
        assert!(backoff.wait(OWNER, Some("AKID")).is_none(), "a success clears the address");
    }
}
