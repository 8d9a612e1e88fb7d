//! The `Date` header value, formatted once per second.

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
        let _ = self.secs;
        todo!()
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}
