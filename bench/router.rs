//! Micro-benchmark of the compiled router (CLB's domain and URL matching) at 10, 1,000 and 10,000 rules:
//! nanoseconds per lookup for a mix of exact, wildcard and regex domains and prefix, exact and regex URLs.
//! Run: `cargo bench --bench router`. Not a test: it prints numbers, it asserts nothing about time.

use std::hint::black_box;
use std::time::Instant;

use fnlb::snapshot::router::{Route, RouteRule, Router};

fn rules(n: usize) -> Vec<RouteRule> {
    (0..n)
        .map(|i| {
            let domain = match i % 10 {
                0 => format!("*.w{i}.example.com"),
                1 => format!("www.t{i}.*"),
                2 if i % 100 == 2 => format!("~^api{i}\\d+\\.example\\.com$"),
                _ => format!("d{}.example.com", i / 4),
            };
            let url = match i % 4 {
                0 => "/".to_string(),
                1 => format!("/api/v{i}/"),
                2 => format!("= /exact/{i}"),
                _ => format!("~* \\.(gif|jpg|png){i}$"),
            };
            RouteRule { domain, url }
        })
        .collect()
}

fn main() {
    println!("{:>8} {:>14} {:>12}", "rules", "build (ms)", "ns/lookup");
    for n in [10, 1_000, 10_000] {
        let rules = rules(n);
        let started = Instant::now();
        let router = Router::build(rules.iter().cloned(), Some(rules[0].domain.as_str()));
        let build = started.elapsed();
        let requests: Vec<(String, String)> = (0..1024)
            .map(|i| {
                let k = (i * 7919) % n;
                (format!("d{}.example.com", k / 4), format!("/api/v{k}/items/{i}"))
            })
            .collect();
        let lookups = 2_000_000;
        let mut found = 0usize;
        let started = Instant::now();
        for i in 0..lookups {
            let (host, path) = &requests[i % requests.len()];
            if matches!(black_box(router.route(black_box(host), black_box(path))), Route::Rule(_)) {
                found += 1;
            }
        }
        let per_lookup = started.elapsed().as_nanos() as f64 / lookups as f64;
        println!(
            "{n:>8} {:>14.2} {per_lookup:>12.1}   ({found} of {lookups} matched a rule)",
            build.as_secs_f64() * 1e3
        );
    }
}
