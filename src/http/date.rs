//! The `Date` header value, formatted once per second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct DateCache {
    secs: u64,
    value: [u8; 29],
}

impl DateCache {
    pub fn new() -> DateCache {
        DateCache {
            secs: u64::MAX,
            value: [b' '; 29],
        }
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` for now.
    pub fn get(&mut self) -> &[u8] {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.at(secs)
    }

    /// The value for `secs` since the epoch; formats only when the second changes.
    fn at(&mut self, secs: u64) -> &[u8] {
        if secs != self.secs {
            let formatted = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            // IMF-fixdate is 29 bytes for years 1000-9999.
            if formatted.len() == self.value.len() {
                self.value.copy_from_slice(formatted.as_bytes());
                self.secs = secs;
            }
        }
        &self.value
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_imf_fixdate_and_caches_per_second() {
        let mut d = DateCache::new();
        assert_eq!(d.at(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d.at(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d.at(784111778), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }

    #[test]
    fn now_is_a_parseable_http_date() {
        let mut d = DateCache::new();
        let value = std::str::from_utf8(d.get()).unwrap().to_string();
        assert!(httpdate::parse_http_date(&value).is_ok(), "{value}");
    }
}
