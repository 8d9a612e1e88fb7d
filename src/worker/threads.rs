//! `--threads N`: app threads that take complete requests from the loop
//! thread and post the responses back (gunicorn's gthread, on our loop).
//!
//! Each thread holds the interpreter lock while it runs the app and lets it
//! go while it waits for a job or for the client to read (flow control).
//! Everything that touches Python for a request happens here: pre_request,
//! the app call, pulling the body, `close()`, the access log line and
//! post_request. The loop thread only encodes and writes bytes. Under
//! `-k gevent` the same `answer` runs in greenlets (`gevent/`), which wait
//! for slow clients their own way (`Park`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::Policy;
use crate::config::Config;
use crate::handoff::{Flow, Job, JobQueue, Mailbox, Output, Room, Runner, Ticket};
use crate::wsgi::{Chunk, Reply, ResponseHead, WriteSink, WsgiApp};

/// How a request's task waits for the client to read (flow control) and
/// where its early hints go: an app thread blocks with the interpreter
/// lock released; a greenlet yields to the gevent hub (`gevent/`).
pub(super) trait Park: Send + Sync {
    /// Wait until `flow` has room or the client is gone.
    fn wait_room(&self, py: Python<'_>, flow: &Arc<Flow>) -> Room;
    /// Send the running request's `wsgi.early_hints` to `sink` (`None`: drop them).
    fn hint_sink(&self, py: Python<'_>, sink: Option<Arc<dyn WriteSink>>);
}

/// An app thread's way: block the thread, detached from the interpreter.
struct Blocking;

impl Park for Blocking {
    fn wait_room(&self, py: Python<'_>, flow: &Arc<Flow>) -> Room {
        py.detach(|| flow.wait_room())
    }

    fn hint_sink(&self, _py: Python<'_>, sink: Option<Arc<dyn WriteSink>>) {
        crate::wsgi::set_hint_sink(sink);
    }
}

/// What every app thread (or greenlet) shares.
pub(super) struct Shared {
    cfg: Arc<Config>,
    age: u64,
    app: Arc<WsgiApp>,
    mailbox: Arc<Mailbox>,
    policy: Policy,
    park: Arc<dyn Park>,
}

impl Shared {
    pub(super) fn new(
        cfg: &Config,
        app: Arc<WsgiApp>,
        mailbox: Arc<Mailbox>,
        opts: &Options,
        park: Arc<dyn Park>,
    ) -> Shared {
        Shared {
            cfg: Arc::new(cfg.clone()),
            age: opts.age,
            app,
            mailbox,
            policy: opts.policy.clone(),
            park,
        }
    }
}

pub(super) struct ThreadPool {
    jobs: Arc<JobQueue>,
    threads: Vec<JoinHandle<()>>,
}

pub(super) struct Options {
    pub threads: usize,
    pub age: u64,
    pub policy: Policy,
}

impl ThreadPool {
    pub fn start(
        cfg: &Config,
        app: Arc<WsgiApp>,
        mailbox: Arc<Mailbox>,
        opts: Options,
    ) -> std::io::Result<ThreadPool> {
        let shared = Arc::new(Shared::new(cfg, app, mailbox, &opts, Arc::new(Blocking)));
        let jobs = Arc::new(JobQueue::new());
        let mut threads = Vec::with_capacity(opts.threads);
        for i in 0..opts.threads.max(1) {
            let shared = shared.clone();
            let jobs = jobs.clone();
            let t = std::thread::Builder::new()
                .name(format!("app-{i}"))
                .spawn(move || Python::attach(|py| serve_jobs(py, &shared, &jobs)))?;
            threads.push(t);
        }
        Ok(ThreadPool { jobs, threads })
    }
}

impl Runner for ThreadPool {
    fn submit(&self, job: Job) {
        self.jobs.push(job);
    }

    fn backlog(&self) -> usize {
        self.jobs.len()
    }

    fn stop(&mut self, timeout: Duration) {
        self.jobs.close();
        let deadline = Instant::now() + timeout;
        // A thread stuck in the app is left behind: the process exits anyway.
        while Instant::now() < deadline && !self.threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in std::mem::take(&mut self.threads) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// One app thread: take jobs until the queue closes.
fn serve_jobs(py: Python<'_>, shared: &Shared, jobs: &JobQueue) {
    while let Some(job) = py.detach(|| jobs.pop()) {
        answer(py, shared, job);
    }
}

/// Run one request: pre_request, the app, its body, the access log line
/// and post_request (on an app thread, or in a greenlet).
pub(super) fn answer(py: Python<'_>, shared: &Shared, job: Job) {
    let Job {
        ticket,
        req,
        conn,
        flow,
        arrived,
        closing: _,
        websocket: _,
    } = job;
    let mailbox = &shared.mailbox;
    if flow.room() == Room::Gone {
        // The client left while the request waited for a thread.
        return;
    }
    // The queue's length was checked when the loop handed the job over.
    if shared.policy.sheds(0, arrived.elapsed()) {
        crate::debug!(
            "Overloaded: 503 for a request that waited {:.3} s",
            arrived.elapsed().as_secs_f64()
        );
        post_overloaded(mailbox, ticket, &flow);
        return;
    }
    let peer = || {
        conn.peer
            .map(|p| p.ip().to_string())
            .unwrap_or_default()
            .into()
    };
    let https = conn.https(&req.head);
    let Ok(begun) = shared
        .policy
        .begin(py, &shared.cfg, shared.age, &req.head, https, peer)
    else {
        mailbox.post(ticket, Output::Failed);
        return;
    };
    let sink = Arc::new(Sink {
        mailbox: mailbox.clone(),
        ticket,
        flow: flow.clone(),
        sent: std::sync::atomic::AtomicU64::new(0),
        park: shared.park.clone(),
    });
    let park = &shared.park;
    park.hint_sink(py, Some(sink.clone() as Arc<dyn WriteSink>));
    let (reply, environ) = shared.app.call_with(
        py,
        &req,
        &conn,
        shared.policy.keep_environ,
        Some(sink.clone() as Arc<dyn WriteSink>),
    );
    park.hint_sink(py, None);
    let status = crate::http::Status::from(&b"500 Internal Server Error"[..]);
    let mut done = begun.finish(req.head, status, Arc::new([]), environ).ok();
    match reply {
        Reply::Failed => mailbox.post(ticket, Output::Failed),
        Reply::Response { head, mut body } => {
            if let Some(d) = &mut done {
                d.status = head.status.clone();
                d.headers = head.headers.clone();
                d.sent = sink.sent.load(std::sync::atomic::Ordering::Relaxed);
            }
            if !body.head_streamed() {
                mailbox.post(
                    ticket,
                    Output::Head {
                        status: head.status,
                        headers: head.headers,
                        known_len: body.known_len(),
                    },
                );
            }
            loop {
                match body.next_chunk(py) {
                    Chunk::Data(data) => {
                        if let Some(d) = &mut done {
                            d.sent += data.len() as u64;
                        }
                        let mut room = flow.add(data.len());
                        mailbox.post(ticket, Output::Data(data));
                        if room == Room::Full {
                            room = park.wait_room(py, &flow);
                        }
                        if room == Room::Gone {
                            crate::debug!("Client went away mid-response; closing the body");
                            break;
                        }
                    }
                    Chunk::End => {
                        mailbox.post(ticket, Output::End);
                        break;
                    }
                    Chunk::Failed => {
                        mailbox.post(ticket, Output::Failed);
                        break;
                    }
                }
            }
            body.close(py);
        }
    }
    if let Some(d) = done {
        d.report(py, &shared.cfg, shared.age);
    }
}

/// `write()` from an app thread: the head and data go to the loop at once,
/// with the same flow control as the body.
struct Sink {
    mailbox: Arc<Mailbox>,
    ticket: Ticket,
    flow: Arc<Flow>,
    sent: std::sync::atomic::AtomicU64,
    park: Arc<dyn Park>,
}

impl WriteSink for Sink {
    fn head(&self, head: &ResponseHead) {
        self.mailbox.post(
            self.ticket,
            Output::Head {
                status: head.status.clone(),
                headers: head.headers.clone(),
                known_len: None,
            },
        );
    }

    fn data(&self, py: Python<'_>, data: Vec<u8>) -> bool {
        self.sent
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut room = self.flow.add(data.len());
        self.mailbox.post(self.ticket, Output::Data(data));
        if room == Room::Full {
            room = self.park.wait_room(py, &self.flow);
        }
        room != Room::Gone
    }

    fn early_hints(&self, _py: Python<'_>, headers: Vec<(Vec<u8>, Vec<u8>)>) {
        // The loop drops it once the head is encoded, and for HTTP/1.0.
        self.mailbox.post(self.ticket, Output::EarlyHints(headers));
    }
}

/// 503 with Retry-After, for a request that waited too long for a thread.
fn post_overloaded(mailbox: &Mailbox, ticket: Ticket, flow: &Flow) {
    let body = super::OVERLOADED_BODY;
    mailbox.post(
        ticket,
        Output::Head {
            status: crate::http::Status::from(&b"503 Service Unavailable"[..]),
            headers: super::overloaded_headers().into(),
            known_len: Some(body.len() as u64),
        },
    );
    flow.add(body.len());
    mailbox.post(ticket, Output::Data(body.to_vec()));
    mailbox.post(ticket, Output::End);
}
