//! Process titles as `ps` shows them (`ferrocorn: master [app]`), by
//! rewriting the process's argument area in place, as nginx and Python's
//! setproctitle do.

use std::sync::Mutex;

/// The argument area, found once: (start address, length).
static AREA: Mutex<Option<(usize, usize)>> = Mutex::new(None);

/// Where the kernel put argv: fields 48 and 49 (arg_start, arg_end) of /proc/self/stat.
fn find_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2 (comm) may hold spaces; the rest follow its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end - start))
}

/// Set the title `ps` shows (truncated to the length of the original
/// command line) and the short name in /proc/self/comm.
pub fn set(title: &str) {
    let mut area = match AREA.lock() {
        Ok(a) => a,
        Err(poisoned) => poisoned.into_inner(),
    };
    if area.is_none() {
        *area = find_area();
    }
    if let Some((start, len)) = *area {
        let bytes = title.as_bytes();
        let n = bytes.len().min(len.saturating_sub(1));
        // SAFETY: [start, start+len) is this process's own argv block, as
        // reported by the kernel; it is ordinary writable stack memory
        // that nothing else reads after start-up (the interpreter copied
        // argv into its own objects before running any of our code). We
        // write within its bounds only and end with NULs, so `ps` reads one
        // terminated string.
        unsafe {
            let p = start as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
            std::ptr::write_bytes(p.add(n), 0, len - n);
        }
    }
    let short: String = title.chars().take(15).collect();
    if let Ok(name) = std::ffi::CString::new(short) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}
