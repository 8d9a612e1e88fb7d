//! The request target: `urlsplit`-compatible path/query, percent-decoding.

/// Percent-decode a path (`%41` → `A`); malformed escapes stay as they are.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let _ = input;
    todo!()
}
