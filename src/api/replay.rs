//! Signed requests cannot be turned into other requests. The SDKs sign only `content-type` and `host` (and the
//! body), so a captured request could be sent again, or with another `X-TC-Action`, `X-TC-Region` or
//! `X-TC-Version`, for as long as its timestamp is within the 5-minute window. Each signature seen within its window
//! is remembered with the client address that used it first and what it was used for. From another address, a
//! repeat of the same request is answered with the first answer (it is not carried out again) and anything else is
//! refused. The address that signed it may use it as it likes: the SDKs' own requests share a signature whenever
//! two of them carry the same body within one second (`GetFunction` then `Invoke` of one function), and a client
//! may send the same request twice on purpose.
//!
//! Signatures are remembered per node: in a cluster, a request replayed to another node within the window is
//! carried out there (docs/security.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

/// What a signature was used for: the service, action, region and version.
pub type Use = (&'static str, String, String, String);

/// Signatures remembered at once; past it, new signed requests are refused until some expire.
pub const MAX_SIGNATURES: usize = 100_000;
/// Bytes of first answers kept for repeats; past it a repeat is refused instead of answered.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

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
    used_for: Use,
    /// Unix seconds after which the signature is past its window (and refused as expired anyway).
    expires: i64,
    /// The first answer once there is one; empty when it was not kept.
    answer: watch::Receiver<Option<Bytes>>,
}

/// What a signed request may do.
pub enum Claim<'a> {
    /// The client that used the signature first, again: it is carried out.
    Own,
    /// It is the signature's first use: carry it out, and give its answer to `Slot::keep`.
    First(Slot<'a>),
    /// The same request again: its answer is the first one's, once there is one (empty: not kept).
    Repeat(watch::Receiver<Option<Bytes>>),
    /// The signature was used for another request.
    Other,
    /// Too many signatures are remembered now.
    Full,
}

/// The first use of a signature, waiting for its answer.
pub struct Slot<'a> {
    replays: &'a Replays,
    answer: Option<watch::Sender<Option<Bytes>>>,
}

// === impl Replays ===

impl Replays {
    /// Records a signature's use at server time `now` (Unix seconds), for a request signed at `timestamp`.
    pub fn claim(&self, signature: &str, used_for: Use, client: IpAddr, timestamp: i64, now: i64) -> Claim<'_> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.by_signature.get(signature) {
            return match (entry.client == client, entry.used_for == used_for) {
                (true, _) => Claim::Own,
                (false, true) => Claim::Repeat(entry.answer.clone()),
                (false, false) => Claim::Other,
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
        entries.by_signature.insert(signature.to_string(), Entry { client, used_for, expires, answer: receiver });
        Claim::First(Slot { replays: self, answer: Some(answer) })
    }
}

impl Entries {
    fn forget_expired(&mut self, now: i64) {
        let mut freed = 0;
        self.by_signature.retain(|_, entry| {
            let keep = entry.expires >= now;
            if !keep {
                freed += entry.answer.borrow().as_ref().map_or(0, Bytes::len);
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
    /// A first use that ended without an answer (it timed out) leaves repeats an empty answer: refused.
    fn drop(&mut self) {
        if let Some(sender) = self.answer.take() {
            sender.send_replace(Some(Bytes::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(action: &str) -> Use {
        ("scf", action.to_string(), "ap-guangzhou".to_string(), "2018-04-16".to_string())
    }

    const SIGNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test]
    async fn a_signature_is_answered_once_elsewhere_and_used_for_nothing_else() {
        let replays = Replays::default();
        let Claim::First(slot) = replays.claim("sig", used("GetFunction"), SIGNER, 1_000, 1_000) else {
            panic!("first")
        };
        let Claim::Repeat(mut repeat) = replays.claim("sig", used("GetFunction"), ELSEWHERE, 1_000, 1_001) else {
            panic!("a repeat")
        };
        assert!(matches!(replays.claim("sig", used("DeleteFunction"), ELSEWHERE, 1_000, 1_001), Claim::Other));
        // The signer's own requests with the same signature go through.
        assert!(matches!(replays.claim("sig", used("Invoke"), SIGNER, 1_000, 1_001), Claim::Own));
        slot.keep(Bytes::from_static(b"first answer"));
        let answer = repeat.wait_for(|a| a.is_some()).await.unwrap().clone();
        assert_eq!(answer.as_deref(), Some(&b"first answer"[..]));
        assert!(matches!(replays.claim("other", used("DeleteFunction"), SIGNER, 1_000, 1_001), Claim::First(_)));
    }

    #[tokio::test]
    async fn a_first_use_without_an_answer_leaves_repeats_refused() {
        let replays = Replays::default();
        let Claim::First(slot) = replays.claim("sig", used("Invoke"), SIGNER, 1_000, 1_000) else { panic!("first") };
        drop(slot);
        let Claim::Repeat(repeat) = replays.claim("sig", used("Invoke"), ELSEWHERE, 1_000, 1_000) else {
            panic!("a repeat")
        };
        assert_eq!(repeat.borrow().as_deref(), Some(&b""[..]));
    }
}
