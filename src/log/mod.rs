//! The error log and the access log.
//!
//! Error log: gunicorn's line format on stderr (or `--error-logfile`, or
//! syslog), with levels:
//! `[2026-11-26 06:35:45 +0000] [1234] [INFO] Starting ferrocorn 0.1.0`.
//! Each line is one `write`, so lines from the master and the workers do not
//! interleave. Access log: see `access`; lines are buffered and written by
//! `flush()` (the worker calls it once per loop turn and before it exits).
//!
//! `setup` installs what the settings ask for; `reopen` (USR1) opens the
//! files again by path, in the master and in workers. When the settings route
//! logging through Python's `logging` (`logconfig_dict` ...), the config
//! loader installs sinks with `set_sinks` and lines go there instead.
//!
//! Imports only `sys` and `http` (for `Head` in access records); no Python here.

#![forbid(unsafe_code)]

pub mod access;
mod output;
pub mod statsd;
pub mod syslog;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use access::{AccessRecord, Format, Headers};
use output::Output;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl Level {
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// The syslog severity of this level.
    fn severity(self) -> u8 {
        match self {
            Level::Debug => 7,
            Level::Info => 6,
            Level::Warning => 4,
            Level::Error => 3,
            Level::Critical => 2,
        }
    }
}

/// Where the logs go, from the logging settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    pub level: Level,
    /// `errorlog`: `-` is stderr.
    pub errorlog: String,
    /// `capture_output`: stdout and stderr go into the error log file.
    pub capture_output: bool,
    /// `accesslog`: `None` is off, `-` is stdout.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    pub access_log_json: bool,
    pub syslog: Option<SyslogSetup>,
    /// `statsd_host` and friends: metrics as StatsD datagrams.
    pub statsd: Option<statsd::Settings>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            level: Level::Info,
            errorlog: "-".into(),
            capture_output: false,
            accesslog: None,
            access_log_format: String::new(),
            access_log_json: false,
            syslog: None,
            statsd: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyslogSetup {
    pub addr: String,
    pub facility: String,
    /// The program name after `ferrocorn.` (syslog_prefix, else the process name).
    pub prefix: String,
    /// Access lines go to syslog too (not `disable_redirect_access_to_syslog`).
    pub access: bool,
}

/// A destination that replaces the built-in error log (Python logging).
pub type ErrorSink = Arc<dyn Fn(Level, &str) + Send + Sync>;
/// A destination that replaces the built-in access log file.
pub type AccessSink = Arc<dyn Fn(&str) + Send + Sync>;
/// Called by `reopen` in addition to reopening the built-in files.
pub type ReopenHook = Arc<dyn Fn() + Send + Sync>;

struct ErrorLog {
    out: Output,
    capture: bool,
}

struct AccessLog {
    out: Option<Output>,
    format: Format,
    json: bool,
    /// Rendered lines not yet written.
    buf: String,
    /// The `t` atom, recomputed once a second.
    clock: (u64, String),
}

#[derive(Default)]
struct Sinks {
    error: Option<ErrorSink>,
    access: Option<AccessSink>,
    reopen: Option<ReopenHook>,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static ERROR: Mutex<Option<ErrorLog>> = Mutex::new(None);
static ACCESS: Mutex<Option<AccessLog>> = Mutex::new(None);
static ACCESS_ON: AtomicBool = AtomicBool::new(false);
static SYSLOG: Mutex<Option<(syslog::Syslog, bool)>> = Mutex::new(None);
static SINKS: RwLock<Option<Sinks>> = RwLock::new(None);

/// Buffered access lines past this many bytes are written at once.
const ACCESS_BUFFER_LIMIT: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while logging leaves nothing half-written that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Open the log files and syslog the settings name and make them current.
/// Nothing changes when any of them fails; the error names the setting.
pub fn setup(s: &Setup) -> Result<(), String> {
    let error_out = Output::open(&s.errorlog, Output::Stderr)
        .map_err(|e| format!("errorlog {:?}: cannot open it: {e}", s.errorlog))?;
    let access_out = match &s.accesslog {
        Some(p) => Some(
            Output::open(p, Output::Stdout)
                .map_err(|e| format!("accesslog {p:?}: cannot open it: {e}"))?,
        ),
        None => None,
    };
    let sys = match &s.syslog {
        Some(cfg) => {
            let fac = syslog::facility(&cfg.facility).ok_or_else(|| {
                format!(
                    "syslog_facility {:?}: unknown facility name (expected user, daemon, local0..local7, ...)",
                    cfg.facility
                )
            })?;
            let program = format!("ferrocorn.{}", cfg.prefix.replace(':', "."));
            let sock = syslog::Syslog::connect(&cfg.addr, fac, program)
                .map_err(|e| format!("syslog_addr {:?}: {e}", cfg.addr))?;
            Some((sock, cfg.access))
        }
        None => None,
    };
    let capture = s.capture_output && error_out.file().is_some();
    if capture {
        capture_into(&error_out).map_err(|e| format!("capture_output: {e}"))?;
    }
    let _ = flush_access();
    set_level(s.level);
    let syslog_access = sys.as_ref().is_some_and(|(_, a)| *a);
    *lock(&ERROR) = Some(ErrorLog {
        out: error_out,
        capture,
    });
    let access_wanted = access_out.is_some() || syslog_access || has_access_sink();
    *lock(&ACCESS) = access_wanted.then(|| AccessLog {
        out: access_out,
        format: Format::parse(&s.access_log_format),
        json: s.access_log_json,
        buf: String::with_capacity(ACCESS_BUFFER_LIMIT),
        clock: (u64::MAX, String::new()),
    });
    *lock(&SYSLOG) = sys;
    ACCESS_ON.store(access_wanted, Ordering::Release);
    if let Err(e) = statsd::install(s.statsd.as_ref()) {
        // gunicorn runs on without metrics when its statsd socket cannot be made.
        write(
            Level::Warning,
            format_args!("Cannot send statsd metrics: {e}"),
        );
    }
    Ok(())
}

/// Route the error log (and, when given, the access log) through another
/// destination, e.g. Python's `logging`. `None` restores the built-in ones.
pub fn set_sinks(error: Option<ErrorSink>, access: Option<AccessSink>, reopen: Option<ReopenHook>) {
    let any = error.is_some() || access.is_some() || reopen.is_some();
    let access_on = access.is_some();
    *SINKS.write().unwrap_or_else(|e| e.into_inner()) = any.then_some(Sinks {
        error,
        access,
        reopen,
    });
    if access_on {
        let mut guard = lock(&ACCESS);
        if guard.is_none() {
            *guard = Some(AccessLog {
                out: None,
                format: Format::parse(access::DEFAULT_FORMAT),
                json: false,
                buf: String::new(),
                clock: (u64::MAX, String::new()),
            });
        }
        ACCESS_ON.store(true, Ordering::Release);
    }
}

fn has_access_sink() -> bool {
    SINKS
        .read()
        .map(|s| s.as_ref().is_some_and(|s| s.access.is_some()))
        .unwrap_or(false)
}

fn error_sink() -> Option<ErrorSink> {
    SINKS.read().ok()?.as_ref()?.error.clone()
}

/// Put the error log file on fds 1 and 2 (`capture_output`).
fn capture_into(out: &Output) -> Result<(), String> {
    let Some(file) = out.file() else {
        return Ok(());
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    nix::unistd::dup2_stdout(file).map_err(|e| e.to_string())?;
    nix::unistd::dup2_stderr(file).map_err(|e| e.to_string())?;
    Ok(())
}

/// A copy of the error log's descriptor as it is now, for a writer that
/// must not wait for the log's lock (a stack dump of a stuck process):
/// `None` when the log is stderr, or while another thread holds the lock.
pub fn error_log_copy() -> Option<std::os::fd::OwnedFd> {
    let guard = ERROR.try_lock().ok()?;
    let file = guard.as_ref()?.out.file()?;
    file.try_clone().ok().map(std::os::fd::OwnedFd::from)
}

/// USR1: open the log files again by path (after logrotate moved them) and
/// re-capture stdout/stderr. Safe in the master and in workers; a file that
/// cannot be opened keeps its old descriptor and the failure is logged.
pub fn reopen() {
    let _ = flush_access();
    let mut failures = Vec::new();
    if let Some(e) = lock(&ERROR).as_mut() {
        match e.out.reopen() {
            Ok(()) if e.capture => {
                if let Err(err) = capture_into(&e.out) {
                    failures.push(format!("capture_output: {err}"));
                }
            }
            Ok(()) => {}
            Err(err) => failures.push(format!("{:?}: {err}", e.out.path())),
        }
    }
    if let Some(a) = lock(&ACCESS).as_mut() {
        if let Some(out) = a.out.as_mut() {
            if let Err(err) = out.reopen() {
                failures.push(format!("{:?}: {err}", out.path()));
            }
        }
    }
    let hook = SINKS
        .read()
        .ok()
        .and_then(|s| s.as_ref().and_then(|s| s.reopen.clone()));
    if let Some(h) = hook {
        h();
    }
    for f in failures {
        write(Level::Error, format_args!("Cannot reopen log file {f}"));
    }
}

/// The statsd counter name of a level (`gunicorn.log.<name>`), if it is counted.
fn counted(level: Level) -> Option<&'static str> {
    match level {
        Level::Critical => Some("critical"),
        Level::Error => Some("error"),
        Level::Warning => Some("warning"),
        Level::Info | Level::Debug => None,
    }
}

/// A log call below the level: still counted for statsd, as gunicorn does.
#[cold]
pub fn filtered(level: Level) {
    if let Some(name) = counted(level) {
        statsd::log_line(name);
    }
}

/// Log an app's exception (message and traceback) at the error level,
/// counted as `gunicorn.log.exception` rather than as an error.
pub fn exception(args: std::fmt::Arguments<'_>) {
    statsd::log_line("exception");
    write_line(Level::Error, args);
}

/// Write one log line (used through the `error!`, `warn!`, `info!`, `debug!` macros).
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if statsd::enabled() {
        if let Some(name) = counted(level) {
            statsd::log_line(name);
        }
    }
    write_line(level, args);
}

fn write_line(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    if let Some(sink) = error_sink() {
        sink(level, &args.to_string());
        return;
    }
    let mut line = Vec::with_capacity(128);
    let _ = write!(
        line,
        "[{}] [{}] [{}] {}",
        crate::sys::time::local_timestamp(),
        std::process::id(),
        level.name(),
        args
    );
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    {
        let mut guard = lock(&ERROR);
        match guard.as_mut() {
            Some(e) => {
                let _ = e.out.write_all(&line);
            }
            None => {
                let _ = std::io::stderr().lock().write_all(&line);
            }
        }
    }
    if let Some((sys, _)) = lock(&SYSLOG).as_ref() {
        let _ = sys.send(level.severity(), "error", &args.to_string());
    }
}

/// Whether `access` would write anything: check it before building a record.
#[inline]
pub fn access_enabled() -> bool {
    ACCESS_ON.load(Ordering::Relaxed)
}

/// The `{var}e` names the access log format asks for, so the worker can
/// fetch only those from the environ.
pub fn access_environ_keys() -> Vec<String> {
    lock(&ACCESS)
        .as_ref()
        .map(|a| a.format.environ_keys().map(String::from).collect())
        .unwrap_or_default()
}

/// Format one access line into the buffer (written by `flush`, or at once
/// when the buffer is full).
pub fn access(rec: &AccessRecord<'_>) {
    if !access_enabled() {
        return;
    }
    let full = {
        let mut guard = lock(&ACCESS);
        let Some(a) = guard.as_mut() else { return };
        // The `t` atom has whole seconds: the kernel's last tick will do.
        let now = crate::sys::time::coarse_unix_secs();
        if a.clock.0 != now {
            a.clock = (now, access::clf_time(&crate::sys::time::local_timestamp()));
        }
        let AccessLog {
            format,
            json,
            buf,
            clock,
            ..
        } = a;
        if *json {
            access::render_json(rec, &clock.1, buf);
        } else {
            format.render(rec, &clock.1, buf);
        }
        buf.len() >= ACCESS_BUFFER_LIMIT
    };
    if full {
        let _ = flush_access();
    }
}

/// Write the buffered access lines and statsd metrics. Call once per loop
/// turn and before exiting.
pub fn flush() {
    let _ = flush_access();
    statsd::flush();
}

fn flush_access() -> std::io::Result<()> {
    let (written, lines, sink, to_syslog) = {
        let mut guard = lock(&ACCESS);
        let Some(a) = guard.as_mut() else {
            return Ok(());
        };
        if a.buf.is_empty() {
            return Ok(());
        }
        // Only now, with lines to write (this runs every loop turn): where
        // they go besides the file. Neither lock is held while taking ACCESS.
        let sink = SINKS
            .read()
            .ok()
            .and_then(|s| s.as_ref().and_then(|s| s.access.clone()));
        let to_syslog = matches!(lock(&SYSLOG).as_ref(), Some((_, true)));
        let written = match (&sink, a.out.as_mut()) {
            (None, Some(out)) => out.write_all(a.buf.as_bytes()),
            _ => Ok(()),
        };
        // The lines go on to a handler or syslog; otherwise the buffer is
        // kept, emptied, for the next lines.
        let lines = if sink.is_some() || to_syslog {
            let text = std::mem::take(&mut a.buf);
            a.buf = String::with_capacity(text.capacity().min(ACCESS_BUFFER_LIMIT));
            Some(text)
        } else {
            a.buf.clear();
            None
        };
        (written, lines, sink, to_syslog)
    };
    if let Some(text) = lines {
        if let Some(sink) = sink {
            for line in text.lines() {
                sink(line);
            }
        }
        if to_syslog {
            if let Some((sys, true)) = lock(&SYSLOG).as_ref() {
                for line in text.lines() {
                    let _ = sys.send(Level::Info.severity(), "access", line);
                }
            }
        }
    }
    written
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*))
        } else if $crate::log::statsd::enabled() {
            $crate::log::filtered($level)
        }
    };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Error, $($arg)*) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Warning, $($arg)*) };
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Info, $($arg)*) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Debug, $($arg)*) };
}

#[macro_export]
macro_rules! critical {
    ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Critical, $($arg)*) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warning));
        assert_eq!(Level::parse("warn"), Some(Level::Warning));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error > Level::Info);
    }

    #[test]
    fn setup_names_the_setting_of_a_file_it_cannot_open() {
        let s = Setup {
            errorlog: "/nonexistent-dir/e.log".into(),
            ..Setup::default()
        };
        assert!(setup(&s).unwrap_err().starts_with("errorlog"));
        let s = Setup {
            accesslog: Some("/nonexistent-dir/a.log".into()),
            ..Setup::default()
        };
        assert!(setup(&s).unwrap_err().starts_with("accesslog"));
        let s = Setup {
            syslog: Some(SyslogSetup {
                addr: "udp://127.0.0.1:9".into(),
                facility: "nope".into(),
                prefix: "x".into(),
                access: true,
            }),
            ..Setup::default()
        };
        assert!(setup(&s).unwrap_err().starts_with("syslog_facility"));
    }
}
