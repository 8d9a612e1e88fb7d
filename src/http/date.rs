//! The `Date` header value, formatted once per second, with the server's
//! own response fields around it ready to copy in one piece.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// IMF-fixdate is 29 bytes for years 1000-9999.
const DATE_LEN: usize = 29;
/// What a response head has between its status and the Date value.
const BEFORE_DATE: &[u8] = b"\r\nServer: ferrocorn\r\nDate: ";
const KEEP_ALIVE: &[u8] = b"\r\nConnection: keep-alive\r\n";
const CLOSE: &[u8] = b"\r\nConnection: close\r\n";
const KEEP_ALIVE_LEN: usize = BEFORE_DATE.len() + DATE_LEN + KEEP_ALIVE.len();
const CLOSE_LEN: usize = BEFORE_DATE.len() + DATE_LEN + CLOSE.len();

pub struct DateCache {
    /// Seconds since the epoch, now.
    clock: fn() -> u64,
    secs: u64,
    value: [u8; DATE_LEN],
    /// `\r\nServer: ...\r\nDate: <value>\r\nConnection: keep-alive\r\n`.
    keep_alive: [u8; KEEP_ALIVE_LEN],
    /// The same ending in `Connection: close`.
    close: [u8; CLOSE_LEN],
}

/// `BEFORE_DATE`, `date`, then `after`, in an array of exactly that size.
fn fields<const N: usize>(date: &[u8; DATE_LEN], after: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let (before, rest) = out.split_at_mut(BEFORE_DATE.len());
    before.copy_from_slice(BEFORE_DATE);
    let (value, rest) = rest.split_at_mut(DATE_LEN);
    value.copy_from_slice(date);
    rest.copy_from_slice(after);
    out
}

impl DateCache {
    pub fn new() -> DateCache {
        DateCache::with_clock(system_secs)
    }

    /// A cache that reads the time from `clock` (seconds since the epoch),
    /// for a caller with a cheaper clock than `SystemTime` (the value only
    /// changes once a second).
    pub fn with_clock(clock: fn() -> u64) -> DateCache {
        let value = [b' '; DATE_LEN];
        DateCache {
            clock,
            secs: u64::MAX,
            value,
            keep_alive: fields(&value, KEEP_ALIVE),
            close: fields(&value, CLOSE),
        }
    }

    /// `\r\nServer: ferrocorn\r\nDate: <now>\r\nConnection: keep-alive\r\n`
    /// (or `close`): the end of the status line and the server's fields.
    pub(super) fn server_fields(&mut self, keep_alive: bool) -> &[u8] {
        self.get();
        if keep_alive {
            &self.keep_alive
        } else {
            &self.close
        }
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` for now.
    pub fn get(&mut self) -> &[u8] {
        let secs = (self.clock)();
        self.at(secs)
    }

    /// The value for `secs` since the epoch; formats only when the second changes.
    fn at(&mut self, secs: u64) -> &[u8] {
        if secs != self.secs {
            let formatted = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if formatted.len() == DATE_LEN {
                self.value.copy_from_slice(formatted.as_bytes());
                self.keep_alive = fields(&self.value, KEEP_ALIVE);
                self.close = fields(&self.value, CLOSE);
                self.secs = secs;
            }
        }
        &self.value
    }
}

fn system_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    fn the_clock_given_is_the_one_read() {
        let mut d = DateCache::with_clock(|| 784111777);
        assert_eq!(d.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        let fields = d.server_fields(true).to_vec();
        assert!(fields
            .windows(29)
            .any(|w| w == b"Sun, 06 Nov 1994 08:49:37 GMT"));
    }

    #[test]
    fn server_fields_carry_the_current_date_and_connection() {
        let mut d = DateCache::new();
        let expect = |d: &DateCache, connection: &[u8]| {
            [
                &b"\r\nServer: ferrocorn\r\nDate: "[..],
                &d.value,
                b"\r\nConnection: ",
                connection,
                b"\r\n",
            ]
            .concat()
        };
        let keep = d.server_fields(true).to_vec();
        assert_eq!(keep, expect(&d, b"keep-alive"));
        assert!(httpdate::parse_http_date(std::str::from_utf8(&d.value).unwrap()).is_ok());
        d.at(784111777);
        let close = d.server_fields(false).to_vec();
        assert_eq!(close, expect(&d, b"close"));
    }

    #[test]
    fn now_is_a_parseable_http_date() {
        let mut d = DateCache::new();
        let value = std::str::from_utf8(d.get()).unwrap().to_string();
        assert!(httpdate::parse_http_date(&value).is_ok(), "{value}");
    }
}
