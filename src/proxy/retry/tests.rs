use super::*;
use Decision::{Again, GiveUp, Next};

const LIMIT: usize = 3;

const FAILURES: [Failure; 8] = [
    Failure::Connect,
    Failure::Unsent { pooled: false },
    Failure::Unsent { pooled: true },
    Failure::Unanswered { pooled: false, resendable: false },
    Failure::Unanswered { pooled: false, resendable: true },
    Failure::Unanswered { pooled: true, resendable: false },
    Failure::Unanswered { pooled: true, resendable: true },
    Failure::Broken,
];

/// Every failure with what comes after it at the second target of three, and at the third: the same on both
/// HTTP/1.1 paths.
#[rustfmt::skip]
const TABLE: [(Failure, Decision, Decision); 8] = [
    (Failure::Connect,                                           Next,   GiveUp),
    (Failure::Unsent { pooled: false },                          Next,   GiveUp),
    (Failure::Unsent { pooled: true },                           Again,  Again),
    (Failure::Unanswered { pooled: false, resendable: false },   GiveUp, GiveUp),
    (Failure::Unanswered { pooled: false, resendable: true },    GiveUp, GiveUp),
    (Failure::Unanswered { pooled: true, resendable: false },    GiveUp, GiveUp),
    (Failure::Unanswered { pooled: true, resendable: true },     Again,  Again),
    (Failure::Broken,                                            GiveUp, GiveUp),
];

#[test]
fn every_failure_is_decided_as_the_table_says() {
    for failure in FAILURES {
        let rows: Vec<_> = TABLE.iter().filter(|(f, ..)| *f == failure).collect();
        assert_eq!(rows.len(), 1, "{failure:?} has one row");
        let (_, second, third) = *rows[0];
        assert_eq!(decide(failure, 2, LIMIT), second, "{failure:?} at the second target of three");
        assert_eq!(decide(failure, 3, LIMIT), third, "{failure:?} at the third target of three");
    }
}

#[test]
fn a_try_counts_toward_the_limit_unless_a_pooled_connection_failed() {
    for failure in FAILURES {
        for limit in 0..=6 {
            for tries in 1..=8 {
                let decision = decide(failure, tries, limit);
                let what = format!("{failure:?} at try {tries} of {limit}");
                let fresh = matches!(failure, Failure::Connect | Failure::Unsent { pooled: false });
                match decision {
                    // Nothing reached the target over a new connection: bounded by the limit.
                    Next => assert!(fresh && tries < limit, "{what}"),
                    // Only a kept-alive connection goes again uncounted: the pool is finite, so this is bounded
                    // too (a new connection's failure counts).
                    Again => assert!(
                        matches!(failure, Failure::Unsent { pooled: true } | Failure::Unanswered { pooled: true, .. }),
                        "{what}"
                    ),
                    GiveUp => assert!(!fresh || tries >= limit, "{what}"),
                }
                if failure == Failure::Broken {
                    assert_eq!(decision, GiveUp, "{what}");
                }
            }
        }
    }
}

#[test]
fn only_get_head_options_put_and_delete_are_resent_once_written() {
    for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"] {
        assert!(idempotent(method), "{method}");
    }
    for method in ["POST", "PATCH", "TRACE", "CONNECT", "PROPFIND", "get", ""] {
        assert!(!idempotent(method), "{method}");
    }
}

#[test]
fn only_bodiless_reads_go_to_the_fallback_once_written() {
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert!(to_fallback(method, true), "{method}");
        assert!(!to_fallback(method, false), "{method} with a body");
    }
    for method in ["PUT", "DELETE", "POST", "PATCH", "TRACE", "get"] {
        assert!(!to_fallback(method, true), "{method}");
    }
}

#[test]
fn a_try_that_does_not_count_leaves_its_target_free_to_be_picked_again() {
    let (a, b) = ("10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
    let mut tried = vec![a, b];
    assert!(Next.retries(&mut tried));
    assert_eq!(tried, [a, b]);
    assert!(Again.retries(&mut tried));
    assert_eq!(tried, [a]);
    assert!(!GiveUp.retries(&mut tried));
    assert_eq!(tried, [a]);
}

#[test]
fn only_bodiless_requests_of_idempotent_methods_are_sent_again_once_written() {
    for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"] {
        assert!(resendable(method, true), "{method}");
        assert!(!resendable(method, false), "{method} with a body");
    }
    for method in ["POST", "PATCH", "CONNECT"] {
        assert!(!resendable(method, true), "{method}");
    }
}
