//! Whether a request that a server target failed goes again: to another target, or on another connection. Both
//! HTTP/1.1 paths (`direct.rs`, and `Upstreams::forward` on the general path) ask `decide`, and so decide alike;
//! HTTP/2 targets retry failed connects the same way.
//!
//! A timeout is never retried (504): the target may still be working on the request.

use std::net::SocketAddr;

/// How one try of a request at a target failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// No connection: connecting, or the TLS or HTTP handshake of a new connection, failed or timed out. Nothing
    /// reached the target.
    Connect,
    /// The connection failed before the request was written, so the target has acted on none of it (`pooled`: an
    /// idle kept-alive connection, which the target may have closed meanwhile).
    Unsent { pooled: bool },
    /// The request was written, and the connection ended before any byte of an answer: the target may have acted
    /// on it. `resendable`: the path still holds the whole request, and its method may be repeated (`idempotent`).
    Unanswered { pooled: bool, resendable: bool },
    /// Any other failure once the request was written: the connection broke, or the answer was not HTTP/1.1 or too
    /// large.
    Broken,
}

/// What comes after a failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// No more tries: the request goes to the rule's fallback function when it may, otherwise the answer is 502.
    GiveUp,
    /// The target the scheduler picks next, the failed one left out; the try counts.
    Next,
    /// Again, on a new connection (or another idle one); the try does not count, and its target may be picked again.
    Again,
}

/// After `failure` at the `tries`-th target tried for a request (the failed one included), of at most `limit`:
///
/// * nothing reached the target over a new connection (a failed connect, or a request that could not be written
///   on a connection just made): the next target, while fewer than `limit` were tried;
/// * a request that could not be written on a pooled connection (one the target closed while it was idle): again,
///   not counted, on another connection (the pool is finite, and a new connection's failure counts);
/// * a request written on a pooled connection that ended without a byte of an answer: again, not counted, when it
///   can be resent (a kept-alive connection the target closed as the request came);
/// * nothing else goes again.
pub(super) fn decide(failure: Failure, tries: usize, limit: usize) -> Decision {
    match failure {
        Failure::Connect | Failure::Unsent { pooled: false } if tries < limit => Decision::Next,
        Failure::Unsent { pooled: true } | Failure::Unanswered { pooled: true, resendable: true } => Decision::Again,
        Failure::Connect | Failure::Unsent { .. } | Failure::Unanswered { .. } | Failure::Broken => Decision::GiveUp,
    }
}

/// The methods whose requests may be sent again once written: GET, HEAD, OPTIONS, PUT and DELETE. (RFC 9110 section
/// 9.2.2 counts TRACE as idempotent too.)
pub(super) fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
}

/// Whether a request may be sent again once written, when its connection ended before any answer: it had no body
/// (so both paths still hold all of it) and its method is idempotent.
pub(super) fn resendable(method: &str, bodiless: bool) -> bool {
    bodiless && idempotent(method)
}

/// Whether a request written to a target that failed before answering may go to the rule's fallback function
/// instead: it had no body (the function gets none) and its method only reads (GET, HEAD, OPTIONS).
pub(super) fn to_fallback(method: &str, bodiless: bool) -> bool {
    bodiless && matches!(method, "GET" | "HEAD" | "OPTIONS")
}

// === impl Decision ===

impl Decision {
    /// Whether the request goes again; a try that does not count is taken off `tried`, so that its target may be
    /// picked again.
    pub(super) fn retries(self, tried: &mut Vec<SocketAddr>) -> bool {
        match self {
            Decision::GiveUp => false,
            Decision::Next => true,
            Decision::Again => {
                tried.pop();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests;
