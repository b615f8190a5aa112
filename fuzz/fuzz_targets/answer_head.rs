#![no_main]
//! A server's answer head as the direct path reads it (`direct::read_head`): parsed by httparse, its framing taken
//! by `h1::response_framing` and compared with a reference written from RFC 9112 section 6.3; the head the client
//! gets is written by `direct::write_answer_head` itself (hop-by-hop and connection headers out, the framing's own
//! header in), and must parse back to the same status, headers and framing, so that the client and the proxy
//! agree on where the body ends.
//!
//! The reference: no body for an answer to HEAD, 204 and 304; otherwise Transfer-Encoding (all its lines taken as
//! one list, empty elements ignored) wins over Content-Length: chunked when `chunked` is its final coding, else
//! until the server closes; otherwise every Content-Length must be the same number (digits only, at most 19),
//! or the answer is refused; without either, until the server closes.

use fnlb::proxy::direct;
use fnlb::proxy::h1::{self, Framing};
use libfuzzer_sys::fuzz_target;

/// The direct path's bound on header lines.
const MAX_HEADERS: usize = 100;

fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

fn list(headers: &[httparse::Header<'_>], name: &str) -> Vec<Vec<u8>> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|item| item.trim_ascii().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn reference(head_request: bool, status: u16, headers: &[httparse::Header<'_>]) -> Option<Framing> {
    if head_request || status == 204 || status == 304 {
        return Some(Framing::Empty);
    }
    if headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        let codings = list(headers, "transfer-encoding");
        return Some(if codings.last().is_some_and(|c| c == b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for header in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let n = content_length(header.value)?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(length.map_or(Framing::UntilClose, Framing::Length))
}

fn connection_lists(headers: &[httparse::Header<'_>], token: &str) -> bool {
    list(headers, "connection").iter().any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let head_request = flags & 1 == 1;
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let Ok(httparse::Status::Complete(_)) = response.parse(input) else { return };
    let status = response.code.unwrap_or(0);
    if status < 200 {
        // Interim answers are skipped, 101 and nonsense refused, before framing.
        return;
    }
    let headers = &*response.headers;
    for header in headers {
        assert_eq!(h1::content_length(header.value), content_length(header.value), "{:?}", header.value);
        for token in [header.name, "close", "keep-alive"] {
            assert_eq!(h1::connection_lists(headers, token), connection_lists(headers, token), "{token}");
        }
    }
    let framing = h1::response_framing(head_request, status, headers);
    assert_eq!(framing, reference(head_request, status, headers));
    let Some(framing) = framing else { return };

    // The client's head, as the direct path writes it.
    let mut out = Vec::new();
    let custom = fnlb::snapshot::custom::Settings::default();
    direct::write_answer_head(&mut out, &response, framing, &custom, true);
    let kept: Vec<_> = headers
        .iter()
        .filter(|h| !(framing != Framing::Empty && h.name.eq_ignore_ascii_case("content-length")))
        .filter(|h| !(framing != Framing::Chunked && h.name.eq_ignore_ascii_case("trailer")))
        .filter(|h| !h1::is_hop_by_hop(h.name) && !h1::connection_lists(headers, h.name))
        .map(|h| (h.name, h.value))
        .collect();

    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
    let mut client = httparse::Response::new(&mut storage);
    let parsed = client.parse(&out);
    assert_eq!(parsed, Ok(httparse::Status::Complete(out.len())), "{}", String::from_utf8_lossy(&out));
    assert_eq!(client.code, Some(status));
    let seen: Vec<_> = client.headers.iter().take(kept.len()).map(|h| (h.name, h.value)).collect();
    assert_eq!(seen, kept);
    let client_framing = reference(head_request, status, client.headers);
    assert_eq!(client_framing, Some(framing), "{}", String::from_utf8_lossy(&out));
});
