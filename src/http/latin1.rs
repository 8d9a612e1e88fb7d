//! Latin-1, the encoding HTTP/1.1 gives header bytes and WSGI its native
//! strings: each byte is the code point of the same value.

/// Bytes as a string, one char per byte.
pub fn latin1_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// A string as bytes, `None` when it has code points above U+00FF.
pub fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_ascii() {
        return Some(s.as_bytes().to_vec());
    }
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_and_wider_chars_do_not() {
        let all: Vec<u8> = (0..=255).collect();
        let s = latin1_string(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(latin1_bytes(&s).as_deref(), Some(&all[..]));
        assert_eq!(latin1_bytes("caf\u{e9}"), Some(b"caf\xe9".to_vec()));
        assert_eq!(latin1_bytes("\u{100}"), None);
    }
}
