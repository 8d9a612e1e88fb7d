//! One request's life, the same for the loop's sync path and for app
//! threads: admission, the pre_request hook, the clock for the access log,
//! and what is reported once the response ends (access log, post_request,
//! metrics). What each step does is decided once, from the configuration,
//! in a `Policy`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pyo3::prelude::*;

use crate::config::{Config, Hook};
use crate::http::{self, DateCache, RequestInfo, ResponseWriter};
use crate::sys::shm::Status;

/// What every request's life asks for, decided once per worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    /// Keep each request's head and timing until its response ends (the
    /// access log or post_request).
    pub track: bool,
    /// Keep the environ the app received (post_request, `{NAME}e` atoms).
    pub keep_environ: bool,
    /// Call the pre_request hook.
    pub pre_request: bool,
    /// Count responses for `--metrics-bind` / statsd.
    pub metrics: bool,
    /// Shed with 503 when this many requests wait (0: never).
    pub max_queued_requests: usize,
    /// Shed with 503 a request that waited longer than this.
    pub max_queue_wait: Option<Duration>,
}

/// What is watching requests, for `Policy::new`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Watchers {
    pub access_log: bool,
    /// The access-log format reads the environ (`{NAME}e` atoms).
    pub access_log_reads_environ: bool,
    pub pre_request: bool,
    pub post_request: bool,
    /// `--metrics-bind` or statsd.
    pub metrics: bool,
}

impl Policy {
    pub fn new(
        w: Watchers,
        max_queued_requests: usize,
        max_queue_wait: Option<Duration>,
    ) -> Policy {
        Policy {
            track: w.access_log || w.post_request,
            keep_environ: w.post_request || (w.access_log && w.access_log_reads_environ),
            pre_request: w.pre_request,
            metrics: w.metrics,
            max_queued_requests,
            max_queue_wait,
        }
    }

    /// This worker's policy, from the configuration and the logging set up.
    pub fn for_worker(cfg: &Config) -> Policy {
        let watchers = Watchers {
            access_log: crate::log::access_enabled(),
            access_log_reads_environ: !crate::log::access_environ_keys().is_empty(),
            pre_request: cfg.hooks.is_set(Hook::PreRequest),
            post_request: cfg.hooks.is_set(Hook::PostRequest),
            metrics: cfg.metrics_bind.is_some() || crate::log::statsd::enabled(),
        };
        Policy::new(watchers, cfg.max_queued_requests, cfg.max_queue_wait)
    }

    /// Admission control: shed a request that found `queued` others
    /// waiting for the app, or that itself waited `waited`.
    pub fn sheds(&self, queued: usize, waited: Duration) -> bool {
        (self.max_queued_requests > 0 && queued >= self.max_queued_requests)
            || self.max_queue_wait.is_some_and(|w| waited > w)
    }

    /// The start of an admitted request's life: the pre_request hook, then
    /// the clock for the access log and post_request. `Err` when the hook
    /// raised (the request is answered 500 and the app is not called).
    pub fn begin(
        &self,
        py: Python<'_>,
        cfg: &Config,
        age: u64,
        head: &http::Head,
        https: bool,
        peer: impl FnOnce() -> Arc<str>,
    ) -> Result<Begun, HookFailed> {
        let scheme = if https { "https" } else { "http" };
        let peer = (self.pre_request || self.track).then(peer);
        if self.pre_request {
            let ip = peer.as_deref().unwrap_or_default();
            let info = crate::hooks::RequestInfo::from_head(head, ip, scheme);
            let worker = crate::hooks::WorkerInfo::this_process(cfg, age);
            if crate::hooks::call_pre_request(py, &worker, &info).is_err() {
                return Err(HookFailed);
            }
        }
        let clock = match peer {
            Some(peer) if self.track => Some(Clock {
                start_sys: SystemTime::now(),
                start: Instant::now(),
                peer,
            }),
            _ => None,
        };
        Ok(Begun { clock, scheme })
    }
}

/// The pre_request hook raised.
#[derive(Debug)]
pub(super) struct HookFailed;

struct Clock {
    start_sys: SystemTime,
    start: Instant,
    peer: Arc<str>,
}

/// A request the app is about to be called for.
pub(super) struct Begun {
    clock: Option<Clock>,
    scheme: &'static str,
}

impl Begun {
    /// When the request began (its clock when tracked, else now).
    pub fn started(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c.start)
    }

    /// What is reported once the response ends; `None` when nothing is
    /// (no access log, no post_request).
    pub fn finish(
        self,
        head: http::Head,
        status: http::Status,
        headers: http::HeaderList,
        environ: Option<Py<PyAny>>,
    ) -> Result<Box<RequestDone>, http::Head> {
        match self.clock {
            Some(c) => Ok(Box::new(RequestDone {
                head,
                status,
                headers,
                start_sys: c.start_sys,
                start: c.start,
                sent: 0,
                peer: c.peer,
                scheme: self.scheme,
                environ,
            })),
            None => Err(head),
        }
    }
}

/// What the access log and the post_request hook need once a response ends.
pub(crate) struct RequestDone {
    pub(super) head: http::Head,
    pub(super) status: crate::http::Status,
    pub(super) headers: crate::http::HeaderList,
    pub(super) start_sys: std::time::SystemTime,
    pub(super) start: Instant,
    pub(super) sent: u64,
    pub(super) peer: Arc<str>,
    pub(super) scheme: &'static str,
    /// The environ the app received, kept when post_request or a `{NAME}e`
    /// access-log atom needs it.
    pub(super) environ: Option<Py<PyAny>>,
}

impl RequestDone {
    pub(super) fn report(&self, py: Python<'_>, cfg: &crate::config::Config, age: u64) {
        let environ = self.environ.as_ref().map(|e| e.bind(py));
        if crate::log::access_enabled() {
            let path = http::percent_decode(self.head.path());
            let mut rec =
                crate::log::AccessRecord::for_request(&self.head, &self.peer, self.start_sys);
            rec.path = &path;
            rec.status = status_code(&self.status);
            rec.response_headers = crate::log::Headers::Owned(&self.headers);
            rec.bytes_sent = Some(self.sent);
            rec.duration = self.start.elapsed();
            // `{NAME}e` atoms read the environ the app received, by the name
            // as written in the format, else upper-cased.
            let lookup = |name: &str| {
                let e = environ?;
                let value = e
                    .get_item(name)
                    .or_else(|_| e.get_item(name.to_ascii_uppercase()))
                    .ok()?;
                value.str().ok().map(|s| s.to_string())
            };
            rec.environ = Some(&lookup);
            crate::log::access(&rec);
        }
        let req = crate::hooks::RequestInfo::from_head(&self.head, &self.peer, self.scheme);
        let resp = crate::hooks::ResponseInfo {
            status: &self.status,
            headers: crate::log::Headers::Owned(&self.headers),
            sent: self.sent,
        };
        let _ = crate::hooks::call_post_request(
            py,
            &crate::hooks::WorkerInfo::this_process(cfg, age),
            &req,
            environ,
            &resp,
        );
    }
}

/// The status code at the start of a status line (`200 OK`), 0 if none.
pub(super) fn status_code(status: &[u8]) -> u16 {
    match status.get(..3) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => {
            (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16
        }
        _ => 0,
    }
}

/// A response began (metrics on): count it in flight; returns `at`, the
/// time its duration is measured from.
pub(super) fn response_started(status: Option<&Status>, at: Instant) -> Instant {
    if let Some(s) = status {
        s.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    at
}

/// A response ended (metrics on): count it in the status table and for statsd.
pub(super) fn response_ended(status: Option<&Status>, code: u16, started: Instant) {
    let took = started.elapsed();
    if let Some(s) = status {
        s.record_response(code, took.as_micros() as u64);
        s.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    crate::log::statsd::request(code, took);
}

/// The body of the 503 answer to requests shed by admission control.
pub(super) const OVERLOADED_BODY: &[u8] =
    b"Service Unavailable: the server is overloaded, retry shortly.\n";

pub(super) fn overloaded_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            b"Content-Type".to_vec(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (b"Retry-After".to_vec(), b"1".to_vec()),
        (
            b"Content-Length".to_vec(),
            OVERLOADED_BODY.len().to_string().into_bytes(),
        ),
    ]
}

/// 503 with Retry-After, for requests shed by admission control.
pub(super) fn write_overloaded(out: &mut Vec<u8>, date: &mut DateCache, req: RequestInfo) -> bool {
    let mut w = ResponseWriter::start(
        out,
        date,
        req,
        b"503 Service Unavailable",
        &overloaded_headers(),
        None,
        false,
    );
    w.body(out, OVERLOADED_BODY);
    w.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsgi::testing::request;

    fn policy(w: Watchers) -> Policy {
        Policy::new(w, 0, None)
    }

    #[test]
    fn the_access_log_or_post_request_keeps_the_clock() {
        assert!(!policy(Watchers::default()).track);
        let log = Watchers {
            access_log: true,
            ..Watchers::default()
        };
        assert!(policy(log).track);
        assert!(!policy(log).keep_environ);
        let post = Watchers {
            post_request: true,
            ..Watchers::default()
        };
        assert!(policy(post).track && policy(post).keep_environ);
    }

    #[test]
    fn the_environ_is_kept_only_for_who_reads_it() {
        let atoms = Watchers {
            access_log: true,
            access_log_reads_environ: true,
            ..Watchers::default()
        };
        assert!(policy(atoms).keep_environ);
        // Environ atoms in a format that is not logged read nothing.
        let off = Watchers {
            access_log_reads_environ: true,
            ..Watchers::default()
        };
        assert!(!policy(off).keep_environ && !policy(off).track);
    }

    #[test]
    fn admission_sheds_at_the_queue_limit_and_past_the_wait() {
        let none = policy(Watchers::default());
        assert!(!none.sheds(1_000_000, Duration::from_secs(3600)));
        let queue = Policy::new(Watchers::default(), 4, None);
        assert!(!queue.sheds(3, Duration::ZERO));
        assert!(queue.sheds(4, Duration::ZERO));
        let wait = Policy::new(Watchers::default(), 0, Some(Duration::from_millis(50)));
        assert!(!wait.sheds(0, Duration::from_millis(50)));
        assert!(wait.sheds(0, Duration::from_millis(51)));
    }

    #[test]
    fn an_untracked_request_gives_its_head_back() {
        let cfg = crate::config::from_args_quiet(&["ferrocorn".into(), "app:app".into()])
            .expect("config");
        let req = request("GET", "/", &[("Host", "x")], b"");
        Python::initialize();
        Python::attach(|py| {
            let mut asked = false;
            let begun = policy(Watchers::default())
                .begin(py, &cfg, 1, &req.head, false, || {
                    asked = true;
                    "10.0.0.1".into()
                })
                .expect("no hook");
            // Nobody needs the peer's address: it is not even looked up.
            assert!(!asked);
            let status = http::Status::from(&b"200 OK"[..]);
            assert!(begun.finish(req.head, status, Arc::new([]), None).is_err());
        });
    }

    #[test]
    fn a_tracked_request_reports_what_it_was() {
        let cfg = crate::config::from_args_quiet(&["ferrocorn".into(), "app:app".into()])
            .expect("config");
        let req = request("GET", "/x", &[("Host", "x")], b"");
        let log = Watchers {
            access_log: true,
            ..Watchers::default()
        };
        Python::initialize();
        Python::attach(|py| {
            let begun = policy(log)
                .begin(py, &cfg, 1, &req.head, true, || "10.0.0.1".into())
                .expect("no hook");
            let status = http::Status::from(&b"201 Created"[..]);
            let done = begun
                .finish(req.head, status, Arc::new([]), None)
                .unwrap_or_else(|_| panic!("tracked"));
            assert_eq!(&*done.peer, "10.0.0.1");
            assert_eq!(done.scheme, "https");
            assert_eq!(status_code(&done.status), 201);
            assert_eq!(done.head.path(), b"/x");
        });
    }

    #[test]
    fn status_codes_are_read_from_the_status_line() {
        assert_eq!(status_code(b"200 OK"), 200);
        assert_eq!(status_code(b"404"), 404);
        assert_eq!(status_code(b"2x0 OK"), 0);
        assert_eq!(status_code(b""), 0);
    }

    #[test]
    fn the_overloaded_answer_says_when_to_retry() {
        let mut out = Vec::new();
        let mut date = DateCache::with_clock(|| 0);
        let req = RequestInfo {
            version: http::Version::Http11,
            is_head: false,
            keep_alive: true,
        };
        assert!(write_overloaded(&mut out, &mut date, req));
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 1\r\n"), "{text}");
        assert!(text.ends_with(std::str::from_utf8(OVERLOADED_BODY).expect("ascii")));
    }
}
