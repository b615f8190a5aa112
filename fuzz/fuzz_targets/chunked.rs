#![no_main]
//! The chunked-body scanner of the direct path (`proxy::h1::Chunked`), fed the input in pieces of fuzzed sizes,
//! against a reference decoder of the whole input written from RFC 9112 section 7.1 as the scanner documents it:
//! 1 to 15 hexadecimal digits of size, an extension (`;`, space or tab, then anything but CR and LF) up to CRLF,
//! the data and CRLF, and after the last chunk trailer lines up to an empty line. Both must agree on where the
//! body ends, whether more is needed, and whether it is malformed.

use fnlb::proxy::h1::{BadChunk, Chunked};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ends after this many bytes.
    Ends(usize),
    /// Every byte belongs to the body, which is not over.
    More,
    Bad,
}

struct Cursor<'a> {
    input: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Result<u8, Outcome> {
        self.input.get(self.at).copied().ok_or(Outcome::More)
    }

    fn byte(&mut self) -> Result<u8, Outcome> {
        let b = self.peek()?;
        self.at += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), Outcome> {
        if self.byte()? == want { Ok(()) } else { Err(Outcome::Bad) }
    }

    fn crlf(&mut self) -> Result<(), Outcome> {
        self.expect(b'\r')?;
        self.expect(b'\n')
    }
}

fn body(c: &mut Cursor<'_>) -> Result<(), Outcome> {
    loop {
        let (mut size, mut digits) = (0u64, 0);
        while let Some(digit) = (c.peek()? as char).to_digit(16) {
            c.at += 1;
            digits += 1;
            if digits > 15 {
                return Err(Outcome::Bad);
            }
            size = size * 16 + u64::from(digit);
        }
        if digits == 0 {
            return Err(Outcome::Bad);
        }
        if matches!(c.peek()?, b';' | b' ' | b'\t') {
            loop {
                match c.peek()? {
                    b'\r' => break,
                    b'\n' => return Err(Outcome::Bad),
                    _ => c.at += 1,
                }
            }
        }
        c.crlf()?;
        if size == 0 {
            break;
        }
        if ((c.input.len() - c.at) as u64) < size {
            return Err(Outcome::More);
        }
        c.at += size as usize;
        c.crlf()?;
    }
    loop {
        if c.peek()? == b'\r' {
            c.at += 1;
            return c.expect(b'\n');
        }
        loop {
            match c.byte()? {
                b'\r' => break,
                b'\n' => return Err(Outcome::Bad),
                _ => {}
            }
        }
        c.expect(b'\n')?;
    }
}

fn reference(input: &[u8]) -> Outcome {
    let mut cursor = Cursor { input, at: 0 };
    match body(&mut cursor) {
        Ok(()) => Outcome::Ends(cursor.at),
        Err(outcome) => outcome,
    }
}

/// The scanner fed `input` in pieces whose sizes come from `sizes` (0: all the rest).
fn scanned(input: &[u8], sizes: &[u8]) -> Outcome {
    let mut chunked = Chunked::default();
    let (mut at, mut piece) = (0, 0);
    while at < input.len() {
        let size = match sizes.get(piece % sizes.len().max(1)).copied().unwrap_or(0) {
            0 => input.len() - at,
            n => usize::from(n).min(input.len() - at),
        };
        piece += 1;
        match chunked.scan(&input[at..at + size]) {
            Ok(Some(n)) => {
                assert!(n <= size, "the end is within the piece");
                // Once over, the body takes nothing more.
                assert_eq!(chunked.scan(b"more"), Ok(Some(0)));
                return Outcome::Ends(at + n);
            }
            Ok(None) => at += size,
            Err(BadChunk) => return Outcome::Bad,
        }
    }
    Outcome::More
}

fuzz_target!(|data: &[u8]| {
    let (sizes, input) = data.split_at(data.len().min(3));
    let expected = reference(input);
    assert_eq!(scanned(input, &[]), expected, "in one piece");
    assert_eq!(scanned(input, sizes), expected, "in pieces of {sizes:?}");
});
