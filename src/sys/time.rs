//! Wall-clock formatting for log lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-26 06:35:45 +0000` in the local time zone (gunicorn's error-log `datefmt`).
pub fn local_timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fully initialises on success;
    // localtime_r is the thread-safe variant and only reads `now`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::from("1970-01-01 00:00:00 +0000");
        }
        tm
    };
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        sign,
        off / 60,
        off % 60
    )
}
