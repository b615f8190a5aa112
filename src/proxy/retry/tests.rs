use super::*;
use Decision::{Again, GiveUp, Next};
use Path::{Direct, General};

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

/// Every (path, failure) with what comes after it at the second target of three, and at the third.
#[rustfmt::skip]
const TABLE: [(Path, Failure, Decision, Decision); 16] = [
    (Direct,  Failure::Connect,                                           Next,   GiveUp),
    (Direct,  Failure::Unsent { pooled: false },                          GiveUp, GiveUp),
    (Direct,  Failure::Unsent { pooled: true },                           Again,  Again),
    (Direct,  Failure::Unanswered { pooled: false, resendable: false },   GiveUp, GiveUp),
    (Direct,  Failure::Unanswered { pooled: false, resendable: true },    GiveUp, GiveUp),
    (Direct,  Failure::Unanswered { pooled: true, resendable: false },    GiveUp, GiveUp),
    (Direct,  Failure::Unanswered { pooled: true, resendable: true },     Again,  Again),
    (Direct,  Failure::Broken,                                            GiveUp, GiveUp),
    (General, Failure::Connect,                                           Next,   GiveUp),
    (General, Failure::Unsent { pooled: false },                          Again,  GiveUp),
    (General, Failure::Unsent { pooled: true },                           Again,  GiveUp),
    (General, Failure::Unanswered { pooled: false, resendable: false },   GiveUp, GiveUp),
    (General, Failure::Unanswered { pooled: false, resendable: true },    GiveUp, GiveUp),
    (General, Failure::Unanswered { pooled: true, resendable: false },    GiveUp, GiveUp),
    (General, Failure::Unanswered { pooled: true, resendable: true },     Again,  Again),
    (General, Failure::Broken,                                            GiveUp, GiveUp),
];

#[test]
fn every_failure_on_either_path_is_decided_as_the_table_says() {
    for path in [Direct, General] {
        for failure in FAILURES {
            let rows: Vec<_> = TABLE.iter().filter(|(p, f, ..)| *p == path && *f == failure).collect();
            assert_eq!(rows.len(), 1, "{path:?} {failure:?} has one row");
            let (_, _, second, third) = *rows[0];
            assert_eq!(decide(path, failure, 2, LIMIT), second, "{path:?} {failure:?} at the second target of three");
            assert_eq!(decide(path, failure, 3, LIMIT), third, "{path:?} {failure:?} at the third target of three");
        }
    }
}

#[test]
fn a_try_counts_toward_the_limit_only_when_the_next_target_is_taken() {
    for path in [Direct, General] {
        for failure in FAILURES {
            for limit in 0..=6 {
                for tries in 1..=8 {
                    let decision = decide(path, failure, tries, limit);
                    let what = format!("{path:?} {failure:?} at try {tries} of {limit}");
                    match decision {
                        Next => assert!(failure == Failure::Connect && tries < limit, "{what}"),
                        // Nothing was sent; or a kept-alive connection ended as the request came.
                        Again => {
                            assert!(matches!(failure, Failure::Unsent { .. } | Failure::Unanswered { .. }), "{what}")
                        }
                        GiveUp => {}
                    }
                    if failure == Failure::Connect {
                        assert_eq!(decision == Next, tries < limit, "{what}");
                    }
                    if failure == Failure::Broken {
                        assert_eq!(decision, GiveUp, "{what}");
                    }
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
