//! Request bodies: Content-Length and chunked, decoded as bytes arrive.
//!
//! The chunked grammar is gunicorn 27's `ChunkedReader`: hex sizes without
//! sign, prefix or padding, BWS only before an extension, RFC 9112 extension
//! syntax, CRLF after each chunk, and a trailer section read with the header
//! rules (forbidden names refused) and then dropped.

use super::body::BodyWriter;
use super::error::{HttpError, HttpErrorKind};
use super::fields::{FieldCtx, FieldSection, Section};
use super::limits::Limits;
use super::scan::{find_lf, is_ows, is_token_byte};
use super::Config;

#[derive(Debug)]
pub(super) enum Decoder {
    Length { remaining: u64 },
    Chunked(Chunked),
}

#[derive(Debug)]
pub(super) struct Chunked {
    state: ChunkState,
    /// While reading a size line: where the search for its CRLF resumes,
    /// relative to the line start.
    scanned: usize,
    trailers: FieldSection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    Trailers,
    Done,
}

/// What one `decode` call did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Progress {
    /// Input bytes used up (the caller drops them).
    pub consumed: usize,
    pub done: bool,
}

fn err(kind: HttpErrorKind, detail: &str) -> HttpError {
    HttpError::new(kind, detail)
}

impl Decoder {
    pub fn length(n: u64) -> Decoder {
        Decoder::Length { remaining: n }
    }

    pub fn chunked() -> Decoder {
        Decoder::Chunked(Chunked {
            state: ChunkState::Size,
            scanned: 0,
            trailers: FieldSection::default(),
        })
    }

    /// Decode from the start of `input`, appending body bytes to `body`.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut BodyWriter,
        cfg: &Config,
        limits: &Limits,
    ) -> Result<Progress, HttpError> {
        match self {
            Decoder::Length { remaining } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                body.write(&input[..n], cfg)?;
                *remaining -= n as u64;
                Ok(Progress {
                    consumed: n,
                    done: *remaining == 0,
                })
            }
            Decoder::Chunked(c) => c.decode(input, body, cfg, limits),
        }
    }

    /// Body bytes still expected, for a body of known length.
    pub fn length_remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length { remaining } => Some(*remaining),
            Decoder::Chunked(_) => None,
        }
    }

    /// `n` bytes of a body of known length arrived without passing through
    /// `decode`; returns whether the body is complete.
    pub fn skip(&mut self, n: u64) -> bool {
        match self {
            Decoder::Length { remaining } => {
                *remaining -= n.min(*remaining);
                *remaining == 0
            }
            Decoder::Chunked(_) => false,
        }
    }

    /// The error for the peer closing before the body is complete.
    pub fn eof_error(&self) -> HttpError {
        match self {
            Decoder::Chunked(Chunked {
                state: ChunkState::DataEnd | ChunkState::Trailers,
                ..
            }) => {
                // gunicorn: a chunk or the last chunk not properly ended is a 400.
                err(
                    HttpErrorKind::ChunkMissingTerminator,
                    "connection closed inside chunked framing",
                )
            }
            _ => err(
                HttpErrorKind::NoMoreData,
                "connection closed inside the body",
            ),
        }
    }
}

impl Chunked {
    fn decode(
        &mut self,
        input: &[u8],
        body: &mut BodyWriter,
        cfg: &Config,
        limits: &Limits,
    ) -> Result<Progress, HttpError> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Size => {
                    // The line may hold `chunk_line` bytes plus its CRLF.
                    let window_end = at + limits.chunk_line + 2;
                    let search_end = input.len().min(window_end);
                    let Some(crlf) = find_crlf(input, at, at + self.scanned, search_end) else {
                        if input.len() >= window_end {
                            return Err(err(
                                HttpErrorKind::InvalidChunkSize,
                                "chunk size line too long",
                            ));
                        }
                        // An LF found later is checked against the byte before it.
                        self.scanned = search_end - at;
                        return Ok(Progress {
                            consumed: at,
                            done: false,
                        });
                    };
                    let size = parse_size_line(&input[at..crlf])?;
                    at = crlf + 2;
                    self.scanned = 0;
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                        self.trailers.reset(0);
                    } else {
                        self.state = ChunkState::Data(size);
                        body.reserve(size, cfg);
                    }
                }
                ChunkState::Data(remaining) => {
                    let n = remaining.min((input.len() - at) as u64) as usize;
                    body.write(&input[at..at + n], cfg)?;
                    at += n;
                    if remaining == n as u64 {
                        self.state = ChunkState::DataEnd;
                    } else {
                        self.state = ChunkState::Data(remaining - n as u64);
                        return Ok(Progress {
                            consumed: at,
                            done: false,
                        });
                    }
                }
                ChunkState::DataEnd => match input.get(at..at + 2) {
                    Some(b"\r\n") => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    Some(_) => {
                        return Err(err(
                            HttpErrorKind::ChunkMissingTerminator,
                            "chunk data not followed by CRLF",
                        ))
                    }
                    None => {
                        if input.get(at).is_some_and(|&b| b != b'\r') {
                            return Err(err(
                                HttpErrorKind::ChunkMissingTerminator,
                                "chunk data not followed by CRLF",
                            ));
                        }
                        return Ok(Progress {
                            consumed: at,
                            done: false,
                        });
                    }
                },
                ChunkState::Trailers => {
                    let ctx = FieldCtx {
                        cfg,
                        limits,
                        section: Section::Trailer,
                    };
                    match self.trailers.advance(&input[at..], &ctx)? {
                        Some(end) => {
                            self.state = ChunkState::Done;
                            return Ok(Progress {
                                consumed: at + end,
                                done: true,
                            });
                        }
                        // Trailer bytes stay in the input until the section ends.
                        None => {
                            return Ok(Progress {
                                consumed: at,
                                done: false,
                            })
                        }
                    }
                }
                ChunkState::Done => {
                    return Ok(Progress {
                        consumed: at,
                        done: true,
                    })
                }
            }
        }
    }
}

/// The first CRLF in `input[from..end]` (a lone LF is just a byte of the line).
fn find_crlf(input: &[u8], line_start: usize, from: usize, end: usize) -> Option<usize> {
    let mut i = from.max(line_start);
    while i < end {
        let lf = i + find_lf(&input[i..end])?;
        if lf > line_start && input[lf - 1] == b'\r' {
            return Some(lf - 1);
        }
        i = lf + 1;
    }
    None
}

/// `chunk-size [BWS chunk-ext]`, checked in gunicorn's order: a bare CR in the
/// extension, then the size digits, then the extension grammar.
fn parse_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let (mut size, ext) = match line.iter().position(|&b| b == b';') {
        Some(semi) => (&line[..semi], Some(&line[semi..])),
        None => (line, None),
    };
    if let Some(ext) = ext {
        if ext.contains(&b'\r') {
            return Err(err(
                HttpErrorKind::InvalidChunkExtension,
                "bare CR in chunk extension",
            ));
        }
        // BWS is allowed before an extension, and only there.
        while let [rest @ .., last] = size {
            if !is_ows(*last) {
                break;
            }
            size = rest;
        }
    }
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(err(
            HttpErrorKind::InvalidChunkSize,
            "chunk size is not hex digits",
        ));
    }
    if let Some(ext) = ext {
        if !is_chunk_ext(ext) {
            return Err(err(
                HttpErrorKind::InvalidChunkExtension,
                "malformed chunk extension",
            ));
        }
    }
    let mut n: u64 = 0;
    for &d in size {
        let digit = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        n = n
            .checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(digit)))
            .ok_or_else(|| err(HttpErrorKind::InvalidChunkSize, "chunk size too large"))?;
    }
    Ok(n)
}

/// RFC 9112 §7.1.1, from the first `;`:
/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn is_chunk_ext(s: &[u8]) -> bool {
    let skip_ws = |mut i: usize| {
        while i < s.len() && is_ows(s[i]) {
            i += 1;
        }
        i
    };
    let token = |mut i: usize| {
        let start = i;
        while i < s.len() && is_token_byte(s[i]) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut i = 0;
    while i < s.len() {
        i = skip_ws(i);
        if s.get(i) != Some(&b';') {
            return false;
        }
        let Some(after_name) = token(skip_ws(i + 1)) else {
            return false;
        };
        i = after_name;
        let eq = skip_ws(i);
        if s.get(eq) == Some(&b'=') {
            let v = skip_ws(eq + 1);
            let end = if s.get(v) == Some(&b'"') {
                quoted_string_end(s, v)
            } else {
                token(v)
            };
            let Some(end) = end else { return false };
            i = end;
        }
    }
    true
}

/// The index after the closing quote of the quoted-string at `s[start]`.
fn quoted_string_end(s: &[u8], start: usize) -> Option<usize> {
    let qdtext = |b: u8| {
        b == b'\t'
            || b == b' '
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
            || b >= 0x80
    };
    let quoted = |b: u8| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80;
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|&b| quoted(b)) => i += 2,
            b if qdtext(b) => i += 1,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` whole, and again one byte at a time (dropping consumed
    /// bytes as a connection does); both must agree.
    fn decode_all(
        mut decoder: impl FnMut() -> Decoder,
        input: &[u8],
    ) -> Result<(Vec<u8>, usize), HttpErrorKind> {
        let cfg = Config::default();
        let limits = Limits::from_config(&cfg);
        let mut d = decoder();
        let mut body = BodyWriter::new(None, &cfg).unwrap();
        let whole = d
            .decode(input, &mut body, &cfg, &limits)
            .map_err(|e| e.kind)
            .and_then(|p| {
                if p.done {
                    Ok((bytes(body), p.consumed))
                } else {
                    Err(d.eof_error().kind)
                }
            });

        let mut d = decoder();
        let mut body = Some(BodyWriter::new(None, &cfg).unwrap());
        let mut pending = Vec::new();
        let mut consumed_total = 0;
        let mut split = Err(HttpErrorKind::NoMoreData);
        for &b in input {
            pending.push(b);
            let Some(w) = body.as_mut() else { break };
            match d.decode(&pending, w, &cfg, &limits) {
                Err(e) => {
                    split = Err(e.kind);
                    break;
                }
                Ok(p) => {
                    pending.drain(..p.consumed);
                    consumed_total += p.consumed;
                    if p.done {
                        split = Ok((body.take().map(bytes).unwrap_or_default(), consumed_total));
                        break;
                    }
                    split = Err(d.eof_error().kind);
                }
            }
        }
        if input.is_empty() {
            split = Err(d.eof_error().kind);
        }
        assert_eq!(whole, split, "split feeding changed the result");
        whole
    }

    fn bytes(body: BodyWriter) -> Vec<u8> {
        body.finish().unwrap().to_vec().unwrap()
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, usize), HttpErrorKind> {
        decode_all(Decoder::chunked, input)
    }

    #[test]
    fn length_body_takes_exactly_its_bytes() {
        assert_eq!(
            decode_all(|| Decoder::length(5), b"helloGET"),
            Ok((b"hello".to_vec(), 5))
        );
        assert_eq!(
            decode_all(|| Decoder::length(5), b"hel"),
            Err(HttpErrorKind::NoMoreData)
        );
    }

    #[test]
    fn chunked_body_is_dechunked_and_stops_after_the_last_chunk() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n000\r\n\r\nGET /next";
        assert_eq!(
            chunked(input),
            Ok((b"hello world".to_vec(), input.len() - 9))
        );
        assert_eq!(
            chunked(b"1e\r\nall your base are belong to us\r\n0\r\n\r\n")
                .unwrap()
                .0
                .len(),
            30
        );
        assert_eq!(
            chunked(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn chunk_extensions_follow_rfc9112() {
        assert!(chunked(b"5; some; parameters=stuff\r\nhello\r\n0\r\n\r\n").is_ok());
        assert!(chunked(b"5;foo=\"bar baz\"\r\nhello\r\n0\r\n\r\n").is_ok());
        assert!(chunked(b"5 ; ext = \"a\\\"b\"\r\nhello\r\n0\r\n\r\n").is_ok());
        assert!(chunked(b"5\t;a\r\nhello\r\n0;last\r\n\r\n").is_ok());
        let bad_ext = Err(HttpErrorKind::InvalidChunkExtension);
        assert_eq!(chunked(b"5;\r\nhello\r\n0\r\n\r\n"), bad_ext);
        assert_eq!(chunked(b"5;a \r\nhello\r\n0\r\n\r\n"), bad_ext);
        assert_eq!(chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"), bad_ext);
        assert_eq!(chunked(b"5;a=\"open\r\nhello\r\n0\r\n\r\n"), bad_ext);
        assert_eq!(chunked(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n"), bad_ext);
    }

    #[test]
    fn chunk_sizes_are_bare_hex_digits() {
        let bad = Err(HttpErrorKind::InvalidChunkSize);
        for input in [
            &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"6_0\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            assert_eq!(chunked(input), bad, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn endless_size_line_is_refused() {
        let mut input = b"5".to_vec();
        input.extend(std::iter::repeat_n(b'0', 9000));
        assert_eq!(chunked(&input), Err(HttpErrorKind::InvalidChunkSize));
    }

    #[test]
    fn chunk_data_must_end_with_crlf() {
        assert_eq!(
            chunked(b"5\r\nhelloXX0\r\n\r\n"),
            Err(HttpErrorKind::ChunkMissingTerminator)
        );
        assert_eq!(
            chunked(b"5\r\nhello\rX"),
            Err(HttpErrorKind::ChunkMissingTerminator)
        );
    }

    #[test]
    fn eof_inside_chunked_framing_is_reported_by_where_it_stopped() {
        assert_eq!(chunked(b"5\r\nhel"), Err(HttpErrorKind::NoMoreData));
        assert_eq!(chunked(b"5\r"), Err(HttpErrorKind::NoMoreData));
        assert_eq!(
            chunked(b"5\r\nhello"),
            Err(HttpErrorKind::ChunkMissingTerminator)
        );
        assert_eq!(
            chunked(b"5\r\nhello\r\n0\r\n"),
            Err(HttpErrorKind::ChunkMissingTerminator)
        );
        assert_eq!(
            chunked(b"5\r\nhello\r\n0\r\nVary: *\r\n"),
            Err(HttpErrorKind::ChunkMissingTerminator)
        );
    }

    #[test]
    fn trailers_are_parsed_and_dropped_with_forbidden_names_refused() {
        let input = b"5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n";
        assert_eq!(chunked(input), Ok((b"hello".to_vec(), input.len())));
        assert_eq!(
            chunked(b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"),
            Err(HttpErrorKind::InvalidHeaderName)
        );
        assert_eq!(
            chunked(b"0\r\nX: a\nY: b\r\n\r\n"),
            Err(HttpErrorKind::InvalidHeader)
        );
    }

    #[test]
    fn trailer_section_is_bounded() {
        let mut input = b"0\r\n".to_vec();
        for i in 0..200 {
            input.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(8000)).as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(chunked(&input), Err(HttpErrorKind::LimitRequestHeaders));
    }
}
