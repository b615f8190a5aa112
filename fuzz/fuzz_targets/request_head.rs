#![no_main]
//! A client's request head as the direct path reads it (`direct::read_request_head`) and the head it writes for a
//! server (`direct::write_upstream_head`), with the route of its host and path. Asserted: nothing panics; a head
//! the direct path takes is HTTP/1.1 with a plain target that is a valid `http::Uri` (the direct path builds a
//! function's event from it), exactly one readable `Host`, at most one `Content-Length` (agreeing with a plain
//! decimal reader), and no `Transfer-Encoding`, `Expect` or `Upgrade`; the server's head parses back to the same
//! request line, the client's headers less the hop-by-hop ones, the balancer's headers once each, one `Host` and
//! the same body length (no header can be smuggled in or a body framed differently).

use fnlb::proxy::bridge::BALANCER_HEADERS;
use fnlb::proxy::direct::{self, Read};
use fnlb::proxy::h1;
use fnlb::snapshot::router::{Route, RouteRule, Router};
use libfuzzer_sys::fuzz_target;

const MAX_HEADERS: usize = 100;

fn router() -> Router {
    let rules = [
        ("example.com", "/"),
        ("example.com", "= /exact"),
        ("example.com", "/api/"),
        ("*.example.com", "~* \\.php$"),
        ("www.example.*", "^~ /static"),
        ("~^[a-z]+\\.test$", "/"),
    ];
    Router::build(rules.map(|(d, u)| RouteRule { domain: d.into(), url: u.into() }), Some("example.com"))
}

/// `Content-Length` read plainly: digits only, at most 19 of them.
fn plain_length(value: &[u8]) -> Option<u64> {
    let digits = !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
    digits.then(|| std::str::from_utf8(value).ok()?.parse().ok()).flatten()
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static ROUTER: Router = router();
    }
    let Some((&limit, input)) = data.split_first() else { return };
    let max_headers = usize::from(limit).clamp(1, MAX_HEADERS);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Read::Head(head) = direct::read_request_head(input, &mut storage[..max_headers]) else { return };
    assert!(head.length <= input.len());
    assert!(http::Uri::try_from(head.target).is_ok(), "a plain target is a URI: {:?}", head.target);
    assert!(http::Method::from_bytes(head.method.as_bytes()).is_ok(), "{:?}", head.method);
    let headers = head.headers;
    let named = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
    assert_eq!(named("host").count(), 1);
    assert_eq!(named("host").next().map(|h| h.value), Some(head.host.as_bytes()));
    let lengths: Vec<_> = named("content-length").map(|h| plain_length(h.value)).collect();
    assert!(lengths.len() <= 1 && lengths.iter().all(Option::is_some), "{lengths:?}");
    assert_eq!(head.body, lengths.first().copied().flatten().unwrap_or(0));
    for refused in ["transfer-encoding", "expect", "upgrade"] {
        assert_eq!(named(refused).count(), 0, "{refused}");
    }
    let path = head.target.split_once('?').map_or(head.target, |(path, _)| path);
    if let Route::Redirect(to) = ROUTER.with(|router| router.route(head.host, path)) {
        assert_eq!(to.strip_suffix('/'), Some(path));
    }

    let client_ip = b"192.0.2.7";
    let mut out = Vec::new();
    direct::write_upstream_head(&mut out, &head, "http", client_ip, 1_765_065_600_123, limit & 1 == 1);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut server = httparse::Request::new(&mut storage);
    assert_eq!(server.parse(&out), Ok(httparse::Status::Complete(out.len())), "{}", String::from_utf8_lossy(&out));
    assert_eq!((server.method, server.path, server.version), (Some(head.method), Some(head.target), Some(1)));
    let seen: Vec<_> = server.headers.iter().map(|h| (h.name, h.value)).collect();
    let kept: Vec<_> = headers
        .iter()
        .filter(|h| !h1::is_hop_by_hop(h.name) && !h1::connection_lists(headers, h.name))
        .filter(|h| !BALANCER_HEADERS.iter().any(|(b, _)| h.name.eq_ignore_ascii_case(b.as_str())))
        .map(|h| (h.name, h.value))
        .collect();
    assert_eq!(&seen[..kept.len()], &kept[..]);
    let count = |name: &str| seen.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
    for (balancer, _) in &BALANCER_HEADERS {
        assert_eq!(count(balancer.as_str()), 1, "{balancer}");
    }
    assert_eq!(count("host"), 1);
    assert_eq!(count("transfer-encoding"), 0);
    let forwarded: Vec<_> = seen.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).collect();
    assert_eq!(forwarded.len(), lengths.len(), "the server is told the body's length as the client was");
    if let Some((_, value)) = forwarded.first() {
        assert_eq!(h1::content_length(value), Some(head.body));
    }
});
