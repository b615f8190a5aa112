//! The pieces of HTTP/1.1 (RFC 9112) the direct path (`direct.rs`) writes and reads itself: how a response body
//! ends, the chunked coding scanned for its end as it passes through, header lines, and the `Date` header.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a message body ends (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (an answer to HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding, passed through as it is.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// The framing of a response, or `None` when its head contradicts itself (a `Content-Length` that is not one
/// number): such a response is not forwarded (502). Transfer-Encoding overrides Content-Length (RFC 9112 section
/// 6.3), whatever the order of the lines: all its lines make one list, whose final coding (empty elements aside)
/// says whether the body is chunked.
pub fn response_framing(head_request: bool, status: u16, headers: &[httparse::Header<'_>]) -> Option<Framing> {
    if head_request || status == 204 || status == 304 {
        return Some(Framing::Empty);
    }
    let mut coded = false;
    let mut chunked = false;
    for header in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        coded = true;
        if let Some(last) = header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).rfind(|c| !c.is_empty()) {
            chunked = last.eq_ignore_ascii_case(b"chunked");
        }
    }
    if coded {
        return Some(if chunked { Framing::Chunked } else { Framing::UntilClose });
    }
    let mut length = None;
    for header in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let value = content_length(header.value)?;
        if length.is_some_and(|l| l != value) {
            return None;
        }
        length = Some(value);
    }
    Some(length.map_or(Framing::UntilClose, Framing::Length))
}

/// A `Content-Length` value: digits only, no sign, no list.
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether a header describes one connection, not the message, and never crosses a proxy (RFC 9110 section
/// 7.6.1).
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 6] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether the message's `Connection` headers list `token`: an option (`close`, `upgrade`) or the name of a
/// header that is then hop-by-hop too.
pub fn connection_lists(headers: &[httparse::Header<'_>], token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| h.value.split(|&b| b == b',').any(|listed| listed.trim_ascii().eq_ignore_ascii_case(token.as_bytes())))
}

/// Appends `name: value\r\n`.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a status line: `HTTP/1.1 <status> <reason>\r\n`.
pub fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_number(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `Content-Length: <n>\r\n`.
pub fn push_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_number(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends a number in decimal.
pub fn push_number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `Date: <now>\r\n`; the text is made once a second per thread.
pub fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        push_header(out, b"Date", text.as_bytes());
    });
}

/// Why a chunked body cannot be passed on.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

/// Follows a chunked body through: fed the bytes as they come, it tells where the body (trailers included) ends.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    /// Where in the input last scanned the trailer section (the part after the last chunk) starts, when it does.
    trailers_at: Option<usize>,
    /// Bytes of chunk data left (in `Data`), or the size being read (in `Size`).
    size: u64,
    digits: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// A chunk extension, up to the line's end.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line, or of the empty line that ends the body.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    /// Reads `input`; returns how many of its bytes end the body (`Some`), or `None` when all of them belong to it
    /// and more are needed.
    pub fn scan(&mut self, input: &[u8]) -> Result<Option<usize>, BadChunk> {
        let mut at = 0;
        let in_trailers = matches!(self.state, State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf);
        self.trailers_at = in_trailers.then_some(0);
        while at < input.len() {
            let byte = input[at];
            self.state = match self.state {
                State::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (byte as char).to_digit(16).unwrap_or(0);
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(BadChunk);
                        }
                        self.size = self.size * 16 + u64::from(digit);
                        State::Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => State::Extension,
                    b'\r' if self.digits > 0 => State::SizeLf,
                    _ => return Err(BadChunk),
                },
                State::Extension => match byte {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(BadChunk),
                    _ => State::Extension,
                },
                State::SizeLf if byte == b'\n' => {
                    if self.size == 0 {
                        self.trailers_at = Some(at + 1);
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                State::Data => {
                    let take = (input.len() - at).min(self.size.min(usize::MAX as u64) as usize);
                    self.size -= take as u64;
                    at += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr if byte == b'\r' => State::DataLf,
                State::DataLf if byte == b'\n' => {
                    self.digits = 0;
                    State::Size
                }
                State::TrailerStart if byte == b'\r' => State::EndLf,
                State::TrailerStart | State::Trailer => match byte {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(BadChunk),
                    _ => State::Trailer,
                },
                State::TrailerLf if byte == b'\n' => State::TrailerStart,
                State::EndLf if byte == b'\n' => {
                    self.state = State::Done;
                    return Ok(Some(at + 1));
                }
                State::Done => return Ok(Some(at)),
                _ => return Err(BadChunk),
            };
            at += 1;
        }
        Ok(if self.state == State::Done { Some(0) } else { None })
    }

    /// Where the trailer section starts in the input last scanned (0 when it started before), if it has.
    pub fn trailers_at(&self) -> Option<usize> {
        self.trailers_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(body: &[u8]) -> Result<Option<usize>, BadChunk> {
        Chunked::default().scan(body)
    }

    #[test]
    fn the_trailer_section_is_found_across_pieces() {
        let mut chunked = Chunked::default();
        assert_eq!(chunked.scan(b"5\r\nhello\r\n0\r"), Ok(None));
        assert_eq!(chunked.trailers_at(), None);
        assert_eq!(chunked.scan(b"\nX-Sum: 5\r"), Ok(None));
        assert_eq!(chunked.trailers_at(), Some(1));
        assert_eq!(chunked.scan(b"\n\r\nnext"), Ok(Some(3)));
        assert_eq!(chunked.trailers_at(), Some(0));
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let body = b"4\r\nWiki\r\n5;name=x\r\npedia\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(ends(body), Ok(Some(body.len() - 16)));
        let trailers = b"1\r\na\r\n0\r\nExpires: never\r\nX-N: 1\r\n\r\n";
        assert_eq!(ends(trailers), Ok(Some(trailers.len())));
        assert_eq!(ends(b"A\r\n0123456789\r\n0\r\n\r\n"), Ok(Some(20)));
    }

    #[test]
    fn a_chunked_body_is_followed_across_any_split() {
        let body = b"4\r\nWiki\r\n5;name=x\r\npedia\r\n0\r\nTrailer: y\r\n\r\n";
        for split in 0..body.len() {
            let mut chunked = Chunked::default();
            assert_eq!(chunked.scan(&body[..split]), Ok(None), "split at {split}");
            assert_eq!(chunked.scan(&body[split..]), Ok(Some(body.len() - split)), "split at {split}");
        }
        let mut bytewise = Chunked::default();
        let ended: Vec<_> = body.iter().map(|b| bytewise.scan(std::slice::from_ref(b)).unwrap()).collect();
        assert_eq!(ended.iter().filter(|e| e.is_some()).count(), 1);
        assert_eq!(ended.last(), Some(&Some(1)));
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\nWiki",
            b"4\r\nWikiX\r\n",
            b"4\r\nWiki\r\r",
            b"ffffffffffffffff0\r\n",
            b"0\r\nBad\ntrailer",
            b"0\r\n\rX",
            b";ext\r\n",
        ] {
            assert_eq!(ends(bad), Err(BadChunk), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn headers(list: &[(&'static str, &'static [u8])]) -> Vec<httparse::Header<'static>> {
        list.iter().map(|(name, value)| httparse::Header { name, value }).collect()
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let length = headers(&[("Content-Length", b"12")]);
        assert_eq!(response_framing(false, 200, &length), Some(Framing::Length(12)));
        assert_eq!(response_framing(true, 200, &length), Some(Framing::Empty));
        assert_eq!(response_framing(false, 204, &[]), Some(Framing::Empty));
        assert_eq!(response_framing(false, 304, &length), Some(Framing::Empty));
        assert_eq!(response_framing(false, 200, &[]), Some(Framing::UntilClose));
        let chunked = headers(&[("Transfer-Encoding", b"gzip, chunked"), ("Content-Length", b"3")]);
        assert_eq!(response_framing(false, 200, &chunked), Some(Framing::Chunked));
        let gzip = headers(&[("transfer-encoding", b"chunked, gzip")]);
        assert_eq!(response_framing(false, 200, &gzip), Some(Framing::UntilClose));
        let same = headers(&[("Content-Length", b"5"), ("content-length", b"5")]);
        assert_eq!(response_framing(false, 200, &same), Some(Framing::Length(5)));
        for bad in [&[("Content-Length", &b"5"[..]), ("Content-Length", b"6")][..], &[("Content-Length", b"+5")]] {
            assert_eq!(response_framing(false, 200, &headers(bad)), None);
        }
        assert_eq!(content_length(b"5, 5"), None);
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn transfer_encoding_is_one_list_over_its_lines_and_overrides_content_length() {
        let split = headers(&[("Transfer-Encoding", b"gzip"), ("Transfer-Encoding", b"chunked")]);
        assert_eq!(response_framing(false, 200, &split), Some(Framing::Chunked));
        let last_gzip = headers(&[("Transfer-Encoding", b"chunked"), ("Transfer-Encoding", b"gzip")]);
        assert_eq!(response_framing(false, 200, &last_gzip), Some(Framing::UntilClose));
        let empty_element = headers(&[("Transfer-Encoding", b"chunked , ")]);
        assert_eq!(response_framing(false, 200, &empty_element), Some(Framing::Chunked));
        // A malformed Content-Length beside Transfer-Encoding: the same framing before or after it.
        for coding in [&b"gzip, chunked"[..], b"gzip"] {
            let before = headers(&[("Content-Length", b"\x8b 3"), ("Transfer-Encoding", coding)]);
            let after = headers(&[("Transfer-Encoding", coding), ("Content-Length", b"\x8b 3")]);
            assert!(response_framing(false, 200, &before).is_some());
            assert_eq!(response_framing(false, 200, &before), response_framing(false, 200, &after));
        }
    }

    #[test]
    fn connection_tokens_are_matched_as_a_list() {
        let list = headers(&[("Connection", b"keep-alive, X-Private"), ("connection", b" Close ")]);
        assert!(connection_lists(&list, "x-private"));
        assert!(connection_lists(&list, "close"));
        assert!(!connection_lists(&list, "upgrade"));
        assert!(is_hop_by_hop("Keep-Alive") && !is_hop_by_hop("X-Real-IP"));
    }

    #[test]
    fn numbers_and_dates_are_written_as_http_wants() {
        let mut out = Vec::new();
        for n in [0, 7, 1234567890, u64::MAX] {
            out.clear();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        out.clear();
        push_date(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Date: ") && text.ends_with(" GMT\r\n"), "{text}");
        assert!(httpdate::parse_http_date(text[6..text.len() - 2].trim()).is_ok());
    }
}
