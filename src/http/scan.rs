//! Byte classes and searches shared by the request and response sides.

/// RFC 9110 §5.6.2 `tchar`: `!#$%&'*+-.^_`|~`, digits and letters.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = true;
        i += 1;
    }
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] = true;
        }
        c += 1;
    }
    t
};

pub(super) fn is_token_byte(b: u8) -> bool {
    TOKEN[b as usize]
}

/// How many bytes at the start of `s` are tchar, and whether an `_` is among them.
#[inline]
pub(super) fn token_run(s: &[u8]) -> (usize, bool) {
    let mut underscore = false;
    for (i, &b) in s.iter().enumerate() {
        if !is_token_byte(b) {
            return (i, underscore);
        }
        underscore |= b == b'_';
    }
    (s.len(), underscore)
}

/// A non-empty RFC 9110 token.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_byte(b))
}

/// Bytes a request field value must not hold (RFC 9110 §5.5): controls
/// other than HTAB, and DEL. obs-text (0x80-0xFF) is allowed.
pub(super) fn is_value_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// SP, HTAB, VCHAR and obs-text: what a response header value or a status
/// reason may hold.
pub(super) fn is_field_vchar(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

pub(super) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing SP/HTAB.
pub(super) fn trim_ows(s: &[u8]) -> &[u8] {
    let (start, end) = trim_ows_range(s);
    &s[start..end]
}

/// The bounds of `s` without leading and trailing SP/HTAB.
pub(super) fn trim_ows_range(s: &[u8]) -> (usize, usize) {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    (start, end)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// Whether some byte of `x` is below `n` (`n <= 128`; exact for existence).
fn has_less(x: u64, n: u8) -> bool {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI != 0
}

fn has_zero(x: u64) -> bool {
    has_less(x, 1)
}

/// 0x20 in each byte of `t` that is a lower-case ASCII letter (`t` is ASCII).
#[inline(always)]
fn lower_letter_bits(t: u64) -> u64 {
    let at_least_a = (t | HI).wrapping_sub(LO * u64::from(b'a'));
    let at_most_z = ((LO * u64::from(b'z')) | HI).wrapping_sub(t);
    (at_least_a & at_most_z & HI) >> 2
}

/// Up to 8 bytes as a little-endian word, zero-padded.
#[inline(always)]
fn short_word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..s.len()].copy_from_slice(s);
    u64::from_le_bytes(w)
}

/// `s.eq_ignore_ascii_case(lower)` for an ASCII `lower` without upper-case
/// letters (a known field name), a word at a time: where `lower` has a
/// letter the case bit of `s` is ignored, elsewhere bytes must be equal.
#[inline(always)]
pub(super) fn eq_lower(s: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower
        .iter()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase()));
    let same = |s: u64, t: u64| (s | lower_letter_bits(t)) == t;
    let n = s.len();
    if n != lower.len() {
        return false;
    }
    if n <= 8 {
        return same(short_word(s), short_word(lower));
    }
    let mut i = 0;
    while i + 8 < n {
        if !same(word(&s[i..i + 8]), word(&lower[i..i + 8])) {
            return false;
        }
        i += 8;
    }
    // The last 8 bytes, overlapping bytes already compared.
    same(word(&s[n - 8..]), word(&lower[n - 8..]))
}

/// Whether `s` holds a byte a request field value must not: a control other
/// than HTAB, or DEL. A word at a time; values are the bulk of a head.
#[inline]
pub(super) fn has_value_ctl(s: &[u8]) -> bool {
    let suspect = |x: u64| has_less(x, 0x20) || has_zero(x ^ (LO * 0x7f));
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        // HTAB is below 0x20 too: confirm byte by byte.
        if suspect(word(chunk)) && chunk.iter().any(|&b| is_value_ctl(b)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return false;
    }
    if s.len() < 8 {
        return rest.iter().any(|&b| is_value_ctl(b));
    }
    // The last 8 bytes: some are checked twice, which changes nothing.
    let last = &s[s.len() - 8..];
    suspect(word(last)) && last.iter().any(|&b| is_value_ctl(b))
}

/// Index of the first `\n` in `s`, a word at a time: header lines are
/// long runs of ordinary bytes.
pub(super) fn find_lf(s: &[u8]) -> Option<usize> {
    const LF: u64 = LO * b'\n' as u64;
    // The lowest flagged byte of `zero_bytes` is exact (borrows only
    // flag bytes above a real match).
    let zero_bytes = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        // A zero byte in x is an LF in the chunk.
        let found = zero_bytes(word(chunk) ^ LF);
        if found != 0 {
            return Some(base + found.trailing_zeros() as usize / 8);
        }
        base += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return None;
    }
    if s.len() < 8 {
        return rest.iter().position(|&b| b == b'\n');
    }
    // The last 8 bytes, those already searched shifted out.
    let seen = 8 - rest.len();
    let found = zero_bytes(word(&s[s.len() - 8..]) ^ LF) >> (seen * 8);
    (found != 0).then(|| base + found.trailing_zeros() as usize / 8)
}

/// Where a line ending in LF stands in `buf`, searching from `from` (bytes
/// before it were searched already) up to `window_end`, the end of the
/// longest line a limit allows.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineEnd {
    /// The index of the LF.
    At(usize),
    /// No LF yet and the window is not full: searched up to this index.
    NeedMore(usize),
    /// No LF within the window: the line is over its limit.
    TooLong,
}

pub(super) fn seek_line_end(buf: &[u8], from: usize, window_end: usize) -> LineEnd {
    let search_end = buf.len().min(window_end);
    match buf.get(from..search_end).and_then(find_lf) {
        Some(i) => LineEnd::At(from + i),
        None if buf.len() >= window_end => LineEnd::TooLong,
        None => LineEnd::NeedMore(search_end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_line_end_finds_waits_or_overflows() {
        assert_eq!(seek_line_end(b"ab\ncd", 0, 10), LineEnd::At(2));
        assert_eq!(seek_line_end(b"ab\ncd\n", 3, 10), LineEnd::At(5));
        assert_eq!(seek_line_end(b"abcd", 0, 10), LineEnd::NeedMore(4));
        assert_eq!(seek_line_end(b"abcd", 0, 4), LineEnd::TooLong);
        assert_eq!(seek_line_end(b"abcd\n", 0, 4), LineEnd::TooLong);
        assert_eq!(seek_line_end(b"abcd", 6, 10), LineEnd::NeedMore(4));
    }

    #[test]
    fn find_lf_finds_the_first_line_feed_at_any_offset() {
        for len in 0..40 {
            for at in 0..len {
                let mut s = vec![b'a'; len];
                s[at] = b'\n';
                if at + 3 < len {
                    s[at + 3] = b'\n';
                }
                assert_eq!(find_lf(&s), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_lf(&vec![b'x'; len]), None);
        }
        // Bytes that differ from LF by one bit or borrow must not match.
        assert_eq!(find_lf(b"\x0b\x09\x8a\x0a"), Some(3));
        assert_eq!(find_lf(&[0x8a; 16]), None);
    }

    #[test]
    fn eq_lower_agrees_with_eq_ignore_ascii_case() {
        let names: [&[u8]; 8] = [
            b"te",
            b"host",
            b"content-length",
            b"transfer-encoding",
            b"proxy-authorization",
            b"x-forwarded-proto",
            b"a_b~1",
            b"",
        ];
        for lower in names {
            let mut candidates = vec![lower.to_vec(), lower.to_ascii_uppercase()];
            for at in 0..lower.len() {
                // Every byte value at every position, including the ones
                // that differ from the name by the case bit only.
                for b in 0..=255u8 {
                    let mut s = lower.to_vec();
                    s[at] = b;
                    candidates.push(s);
                }
            }
            candidates.push(lower[..lower.len().saturating_sub(1)].to_vec());
            candidates.push([lower, b"x"].concat());
            for s in candidates {
                assert_eq!(
                    eq_lower(&s, lower),
                    s.eq_ignore_ascii_case(lower),
                    "{:?} vs {:?}",
                    String::from_utf8_lossy(&s),
                    String::from_utf8_lossy(lower)
                );
            }
        }
    }

    #[test]
    fn token_run_stops_at_the_first_non_token_byte_and_sees_underscores() {
        assert_eq!(token_run(b"Host: x"), (4, false));
        assert_eq!(token_run(b"X_Y: 1"), (3, true));
        assert_eq!(token_run(b"X-Y:_"), (3, false));
        assert_eq!(token_run(b"abc"), (3, false));
        assert_eq!(token_run(b""), (0, false));
    }

    #[test]
    fn token_bytes_follow_rfc9110() {
        assert!(is_token(b"Content-Length"));
        assert!(is_token(b"!#$%&'*+-.^_`|~09azAZ"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"caf\xc3\xa9"));
        assert!(!is_token(b"a\"b"));
    }

    #[test]
    fn trim_ows_strips_only_space_and_tab() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"\x0ba\x0b"), b"\x0ba\x0b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn has_value_ctl_finds_controls_at_any_offset_and_ignores_htab() {
        for len in 0..24 {
            let clean: Vec<u8> = (0..len)
                .map(|i| [b'a', b'\t', 0x80, 0xff, b' ', b'~'][i % 6])
                .collect();
            assert!(!has_value_ctl(&clean), "len {len}");
            for at in 0..len {
                for bad in [0u8, 0x01, 0x0a, 0x0d, 0x1f, 0x7f] {
                    let mut s = clean.clone();
                    s[at] = bad;
                    assert!(has_value_ctl(&s), "len {len} at {at} byte {bad:#x}");
                }
            }
        }
    }

    #[test]
    fn value_ctl_allows_htab_and_obs_text() {
        assert!(!is_value_ctl(b'\t'));
        assert!(!is_value_ctl(0x80));
        assert!(!is_value_ctl(b' '));
        assert!(is_value_ctl(0));
        assert!(is_value_ctl(b'\r'));
        assert!(is_value_ctl(0x7f));
    }
}
