//! A signed request is carried out as its signer meant, and a change once. The SDKs' TC3 signatures sign only
//! `content-type` and `host` (and the body, or a GET's query string), so a captured request could be sent again, or
//! with another `X-TC-Action`, `X-TC-Region` or `X-TC-Version`, for as long as its timestamp is within the 5-minute
//! window; a v1 signature (its `Signature` parameter) signs every parameter, but could be sent again as well. Each
//! signature seen within its window, of either kind, is remembered with the client address that used it first and
//! what it was used for (the service, action, region and version), with the answer it got.
//!
//! * A change (an action of `Effect::Change`) is carried out once per signature and use, whoever repeats it: a
//!   repeat, from the signer's address too, gets the first answer, waiting for it while the first is running.
//! * A read or an invocation is run again when the signer's address repeats it: the SDKs' own requests share a
//!   signature whenever two of them carry the same body within one second (`GetFunction` then `Invoke` of one
//!   function). From another address a repeat gets the first answer.
//! * From another address, any other use of a signature is refused; the signer's address may also use it for a
//!   change of its own (a first use of that change).
//!
//! A repeat waits for the first answer as long as the first request runs (itself bounded by the request timeout;
//! one that ends without an answer leaves its repeats refused). In a cluster the signatures of changes are also
//! claimed in the database (`fnlb.signatures`, rows kept past their window by `SHARED_CLOCK_MARGIN` and deleted
//! every `SHARED_PRUNE_INTERVAL`), so that a change replayed to another node gets the first node's answer, polled
//! for up to `SHARED_REPEAT_WAIT`, and is not carried out there. A change whose signature cannot be claimed because
//! the database is unreachable is refused, as every change is then. Reads and invocations are remembered per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::actions::Effect;
use crate::store::postgres::SignatureClaim;
use crate::store::{Postgres, StoreError};

/// What a signature was used for: the service, action, region and version.
pub type Use = (&'static str, String, String, String);

/// Signatures remembered at once; past it, new signed requests are refused until some expire.
pub const MAX_SIGNATURES: usize = 100_000;
/// Bytes of first answers kept for repeats; past it a repeat is refused instead of answered.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Changes the signer's address may make with one signature (each a different action, region or version); past
/// it, a further one is refused as too many signed requests.
pub const MAX_CHANGES_PER_SIGNATURE: usize = 16;
/// The largest first answer kept in the cluster's database for repeats on other nodes; a larger one is kept empty
/// (repeats refused). Changes answer with a few hundred bytes.
pub const MAX_SHARED_ANSWER_BYTES: usize = 64 * 1024;
/// How long a change repeated on another node polls the database for the first node's answer; past it the repeat
/// is refused (and not carried out).
pub const SHARED_REPEAT_WAIT: Duration = Duration::from_secs(30);
/// The first and the longest pause between two polls for a first answer in the database.
const SHARED_POLL_FIRST: Duration = Duration::from_millis(10);
const SHARED_POLL_MAX: Duration = Duration::from_millis(250);
/// How long past its window a signature stays in the database: the nodes' clocks may differ by this much.
pub const SHARED_CLOCK_MARGIN: Duration = Duration::from_secs(60);
/// How often a cluster node deletes the signatures past their window from the database.
pub const SHARED_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Replays {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_signature: HashMap<String, Entry>,
    answer_bytes: usize,
}

struct Entry {
    /// The client address that used the signature first.
    client: IpAddr,
    /// Unix seconds after which the signature is past its window (and refused as expired anyway).
    expires: i64,
    /// The uses whose answers repeats get: the first use, and each change its signer made with it since. An
    /// answer is `None` while its request runs, empty when it was not kept.
    answers: Vec<(Use, watch::Receiver<Option<Bytes>>)>,
}

/// What a signed request may do.
pub enum Claim<'a> {
    /// The signer's address reads or invokes again: it is carried out.
    Own,
    /// It is the first use of the signature for this request: carry it out, and give its answer to `Slot::keep`.
    First(Slot<'a>),
    /// The same request again: its answer is the first one's, once there is one (empty: not kept).
    Repeat(watch::Receiver<Option<Bytes>>),
    /// Another address used the signature for another request.
    Other,
    /// Too many signatures (or changes with one signature) are remembered now.
    Full,
}

/// The first use of a signature for a request, waiting for its answer.
pub struct Slot<'a> {
    replays: &'a Replays,
    answer: Option<watch::Sender<Option<Bytes>>>,
}

/// A change's signature as claimed in the cluster's database.
pub enum Shared {
    /// This node carries it out, and records its answer with `record_shared`.
    First,
    /// Another node has it (or had it): the answer is its, `wait_shared` polls for it.
    Repeat,
    /// Another address used the signature for another change.
    Other,
}

// === impl Replays ===

impl Replays {
    /// Records a signature's use at server time `now` (Unix seconds), for a request signed at `timestamp`.
    pub fn claim(
        &self,
        signature: &str,
        used_for: Use,
        effect: Effect,
        client: IpAddr,
        timestamp: i64,
        now: i64,
    ) -> Claim<'_> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.by_signature.get_mut(signature) {
            let signer = entry.client == client;
            if let Some((_, answer)) = entry.answers.iter().find(|(u, _)| *u == used_for) {
                return match signer && effect != Effect::Change {
                    true => Claim::Own,
                    false => Claim::Repeat(answer.clone()),
                };
            }
            return match (signer, effect) {
                (false, _) => Claim::Other,
                (true, Effect::Read | Effect::Invoke) => Claim::Own,
                (true, Effect::Change) if entry.answers.len() >= MAX_CHANGES_PER_SIGNATURE => Claim::Full,
                (true, Effect::Change) => {
                    let (answer, receiver) = watch::channel(None);
                    entry.answers.push((used_for, receiver));
                    Claim::First(Slot { replays: self, answer: Some(answer) })
                }
            };
        }
        if entries.by_signature.len() >= MAX_SIGNATURES {
            entries.forget_expired(now);
            if entries.by_signature.len() >= MAX_SIGNATURES {
                return Claim::Full;
            }
        }
        let (answer, receiver) = watch::channel(None);
        let expires = timestamp + super::tc3::MAX_SKEW_SECONDS;
        let entry = Entry { client, expires, answers: vec![(used_for, receiver)] };
        entries.by_signature.insert(signature.to_string(), entry);
        Claim::First(Slot { replays: self, answer: Some(answer) })
    }
}

impl Entries {
    fn forget_expired(&mut self, now: i64) {
        let mut freed = 0;
        self.by_signature.retain(|_, entry| {
            let keep = entry.expires >= now;
            if !keep {
                freed += entry.answers.iter().map(|(_, a)| a.borrow().as_ref().map_or(0, Bytes::len)).sum::<usize>();
            }
            keep
        });
        self.answer_bytes -= freed;
    }
}

// === impl Slot ===

impl Slot<'_> {
    /// Keeps the first answer for repeats (while the answers kept fit their bound; otherwise repeats are refused).
    pub fn keep(mut self, answer: Bytes) {
        let Some(sender) = self.answer.take() else { return };
        let mut entries = self.replays.entries.lock().unwrap_or_else(|p| p.into_inner());
        let kept = if entries.answer_bytes + answer.len() <= MAX_ANSWER_BYTES {
            entries.answer_bytes += answer.len();
            answer
        } else {
            Bytes::new()
        };
        sender.send_replace(Some(kept));
    }
}

impl Drop for Slot<'_> {
    /// A first use that ended without an answer (it timed out, or was refused before it ran) leaves repeats an
    /// empty answer: refused.
    fn drop(&mut self) {
        if let Some(sender) = self.answer.take() {
            sender.send_replace(Some(Bytes::new()));
        }
    }
}

// === the cluster's signatures ===

/// How a use is named in the database.
fn shared_use(used_for: &Use) -> String {
    let (service, action, region, version) = used_for;
    format!("{service}/{action}/{region}/{version}")
}

/// Claims a change's signature in the cluster's database, for a request signed at `timestamp`.
pub async fn claim_shared(
    pg: &Postgres,
    signature: &str,
    used_for: &Use,
    client: IpAddr,
    timestamp: i64,
) -> Result<Shared, StoreError> {
    let expires_ms = (timestamp + super::tc3::MAX_SKEW_SECONDS).saturating_mul(1000);
    let claimed = pg.claim_signature(signature, &shared_use(used_for), &client.to_string(), expires_ms).await?;
    Ok(match claimed {
        SignatureClaim::First => Shared::First,
        SignatureClaim::Used => Shared::Repeat,
        SignatureClaim::Other => Shared::Other,
    })
}

/// The first answer another node gave a change, polled for up to `SHARED_REPEAT_WAIT`; empty when it has none
/// by then (or kept none).
pub async fn wait_shared(pg: &Postgres, signature: &str, used_for: &Use) -> Result<Bytes, StoreError> {
    let used_for = shared_use(used_for);
    let deadline = tokio::time::Instant::now() + SHARED_REPEAT_WAIT;
    let mut pause = SHARED_POLL_FIRST;
    loop {
        if let Some(answer) = pg.signature_answer(signature, &used_for).await? {
            return Ok(Bytes::from(answer));
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(Bytes::new());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SHARED_POLL_MAX);
    }
}

/// Records the first answer to a change claimed with `claim_shared`, for repeats on other nodes.
pub async fn record_shared(pg: &Postgres, signature: &str, used_for: &Use, answer: &Bytes) {
    let kept: &[u8] = if answer.len() <= MAX_SHARED_ANSWER_BYTES { answer } else { &[] };
    if let Err(e) = pg.record_signature_answer(signature, &shared_use(used_for), kept).await {
        tracing::warn!(error = %e, "The answer to a change was not recorded for repeats on other nodes.");
    }
}

/// Deletes the signatures past their window (and `SHARED_CLOCK_MARGIN`) from the cluster's database every
/// `SHARED_PRUNE_INTERVAL`, until `shutdown` turns true.
pub async fn prune_shared(pg: Arc<Postgres>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SHARED_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let before_ms = crate::clock::now_ms() - i64::try_from(SHARED_CLOCK_MARGIN.as_millis()).unwrap_or(i64::MAX);
        match pg.forget_signatures(before_ms).await {
            Ok(n) => tracing::debug!(count = n, "Signatures past their window deleted."),
            Err(e) => tracing::debug!(error = %e, "Signatures past their window not deleted."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Effect::{Change, Invoke, Read};
    use super::*;

    fn used(action: &str) -> Use {
        ("scf", action.to_string(), "ap-guangzhou".to_string(), "2018-04-16".to_string())
    }

    const SIGNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test]
    async fn a_signature_is_answered_once_elsewhere_and_used_for_nothing_else() {
        let replays = Replays::default();
        let Claim::First(slot) = replays.claim("sig", used("GetFunction"), Read, SIGNER, 1_000, 1_000) else {
            panic!("first")
        };
        let Claim::Repeat(mut repeat) = replays.claim("sig", used("GetFunction"), Read, ELSEWHERE, 1_000, 1_001) else {
            panic!("a repeat")
        };
        let other = replays.claim("sig", used("DeleteFunction"), Change, ELSEWHERE, 1_000, 1_001);
        assert!(matches!(other, Claim::Other));
        // The signer's own reads and invocations with the same signature run again.
        assert!(matches!(replays.claim("sig", used("Invoke"), Invoke, SIGNER, 1_000, 1_001), Claim::Own));
        assert!(matches!(replays.claim("sig", used("GetFunction"), Read, SIGNER, 1_000, 1_001), Claim::Own));
        slot.keep(Bytes::from_static(b"first answer"));
        let answer = repeat.wait_for(|a| a.is_some()).await.unwrap().clone();
        assert_eq!(answer.as_deref(), Some(&b"first answer"[..]));
        let other = replays.claim("other", used("DeleteFunction"), Change, SIGNER, 1_000, 1_001);
        assert!(matches!(other, Claim::First(_)));
    }

    #[tokio::test]
    async fn a_change_is_carried_out_once_whoever_repeats_it() {
        let replays = Replays::default();
        let Claim::First(slot) = replays.claim("sig", used("CreateNamespace"), Change, SIGNER, 1_000, 1_000) else {
            panic!("first")
        };
        // From the signer's address too, a repeat waits for the first answer.
        let Claim::Repeat(mut own) = replays.claim("sig", used("CreateNamespace"), Change, SIGNER, 1_000, 1_000) else {
            panic!("a repeat")
        };
        let Claim::Repeat(elsewhere) = replays.claim("sig", used("CreateNamespace"), Change, ELSEWHERE, 1_000, 1_000)
        else {
            panic!("a repeat")
        };
        slot.keep(Bytes::from_static(b"created"));
        assert_eq!(own.wait_for(|a| a.is_some()).await.unwrap().as_deref(), Some(&b"created"[..]));
        assert_eq!(elsewhere.borrow().as_deref(), Some(&b"created"[..]));
        // The signer may make another change with it (the SDKs share a signature between two requests with the
        // same body within a second), once; another address may not.
        let delete = used("DeleteNamespace");
        assert!(matches!(replays.claim("sig", delete.clone(), Change, ELSEWHERE, 1_000, 1_000), Claim::Other));
        let Claim::First(slot) = replays.claim("sig", delete.clone(), Change, SIGNER, 1_000, 1_000) else {
            panic!("the signer's first delete")
        };
        slot.keep(Bytes::from_static(b"deleted"));
        let Claim::Repeat(again) = replays.claim("sig", delete, Change, ELSEWHERE, 1_000, 1_000) else {
            panic!("a repeat")
        };
        assert_eq!(again.borrow().as_deref(), Some(&b"deleted"[..]));
    }

    #[tokio::test]
    async fn a_first_use_without_an_answer_leaves_repeats_refused() {
        let replays = Replays::default();
        let Claim::First(slot) = replays.claim("sig", used("Invoke"), Invoke, SIGNER, 1_000, 1_000) else {
            panic!("first")
        };
        drop(slot);
        let Claim::Repeat(repeat) = replays.claim("sig", used("Invoke"), Invoke, ELSEWHERE, 1_000, 1_000) else {
            panic!("a repeat")
        };
        assert_eq!(repeat.borrow().as_deref(), Some(&b""[..]));
    }
}
