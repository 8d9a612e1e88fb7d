//! Starting a worker: signals, pinning, privileges, the io engine choice,
//! the app import; then the loop runs until the worker stops.

use nix::sys::signal::Signal;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::{Exit, State, Worker, WorkerContext, WORKER_SIGNALS};
use crate::config::{Config, EngineChoice};
use crate::engine::{Engine, EngineConfig, EngineKind};
use crate::http::{self, ConnInfo, DateCache, ParserPool};
use crate::sys::shm;
use crate::sys::signal::{SignalPipe, ARBITER_SIGNALS};
use crate::sys::socket::SlotListener;
use crate::sys::{affinity, process, proctitle, signal, stackdump};
use crate::wsgi::{AppSource, WorkerInfo, WsgiApp};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use super::{gevent, threads};
use crate::asgi::{AsgiApp, AsgiOptions};
use crate::config::Interface;
use crate::handoff::{Mailbox, Runner};

/// The worker process's main: returns how it ended.
pub fn run(py: Python<'_>, cfg: &Config, ctx: WorkerContext<'_>) -> Exit {
    let WorkerContext {
        slot,
        cpu,
        listeners,
        status,
        wake_fd,
        tls,
        age,
        preloaded,
    } = ctx;
    proctitle::set(&format!("ferrocorn: worker [{}]", cfg.proc_name));
    // Signals arrive blocked from the arbiter's fork: install ours, then unblock.
    signal::reset_default(ARBITER_SIGNALS);
    let signals = match SignalPipe::install(WORKER_SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            crate::error!("Worker failed to boot: cannot install signal handlers: {e}");
            return Exit::BootError;
        }
    };
    unblock_all(ARBITER_SIGNALS);
    let pinned = cfg.pin_workers && affinity::pin_current(cpu);
    if let Err(e) = arm_timeout_report(py, cfg, age) {
        crate::warn!("Timeout tracebacks unavailable: {e}");
    }
    if let Err(e) = arm_stack_dump(py) {
        crate::warn!("Stack dumps unavailable: {e}");
    }
    if let Err(e) = drop_privileges(cfg) {
        crate::error!("Worker failed to boot: {e}");
        return Exit::BootError;
    }

    let kind = match choose_engine(cfg.io_engine) {
        Ok(kind) => kind,
        Err(msg) => {
            crate::error!("Worker failed to boot: {msg}");
            return Exit::BootError;
        }
    };

    // A preloaded app's sys.path was set in the master.
    if preloaded.is_none() {
        if let Err(e) = extend_sys_path(py, cfg) {
            crate::error!("Worker failed to boot: cannot set sys.path: {e}");
            return Exit::BootError;
        }
    }
    let threaded = cfg.threaded();
    let gevent = cfg.gevent();
    // gunicorn's GeventWorker patches the standard library before the app
    // is imported (with --preload the master imported it already).
    if gevent {
        if let Err(e) = gevent::patch(py) {
            crate::error!("Worker failed to boot: {e}");
            return Exit::BootError;
        }
    }
    let found = match preloaded {
        Some(app) => Ok(app.clone_ref(py)),
        None => WsgiApp::import(py, &app_source(cfg)),
    };
    let app = match found.and_then(|app| WsgiApp::from_object(py, app, app_info(cfg))) {
        Ok(app) => app,
        Err(e) => {
            crate::error!(
                "Exception in worker process: cannot load the app {:?}:\n{}",
                cfg.app,
                e.0
            );
            return Exit::AppLoadError;
        }
    };
    let me = crate::hooks::WorkerInfo::this_process(cfg, age);
    if crate::hooks::call_post_worker_init(py, &me).is_err() {
        return Exit::BootError;
    }

    let app = Arc::new(app);
    let policy = super::Policy::for_worker(cfg);
    let asgi = match cfg.interface {
        Interface::Asgi => true,
        Interface::Wsgi => false,
        Interface::Auto => crate::asgi::is_asgi_app(py, app.app().bind(py)),
    };
    if gevent && asgi {
        crate::error!(
            "Worker failed to boot: -k {} runs WSGI apps, and {:?} is an ASGI app: use -k asgi",
            cfg.worker_class,
            cfg.app
        );
        return Exit::BootError;
    }
    let mut hub = None;
    let (runner, mailbox) = if asgi {
        let mailbox = match Mailbox::new() {
            Ok(m) => Arc::new(m),
            Err(e) => {
                crate::error!("Worker failed to boot: cannot create the mailbox: {e}");
                return Exit::BootError;
            }
        };
        let opts = AsgiOptions::from_config(cfg);
        match AsgiApp::start(py, app.app().clone_ref(py), opts, mailbox.clone()) {
            Ok(a) => (Some(Box::new(a) as Box<dyn Runner>), Some(mailbox)),
            Err(e) => {
                // A failed lifespan startup stops the server like a failed import.
                crate::error!(
                    "Exception in worker process: the ASGI app {:?} did not start:\n{}",
                    cfg.app,
                    e.0
                );
                return Exit::AppLoadError;
            }
        }
    } else if threaded {
        let started = Mailbox::new().and_then(|mailbox| {
            let mailbox = Arc::new(mailbox);
            let opts = threads::Options {
                threads: cfg.threads,
                age,
                policy: policy.clone(),
            };
            let pool = threads::ThreadPool::start(cfg, app.clone(), mailbox.clone(), opts)?;
            Ok((pool, mailbox))
        });
        match started {
            Ok((pool, mailbox)) => (Some(Box::new(pool) as Box<dyn Runner>), Some(mailbox)),
            Err(e) => {
                crate::error!("Worker failed to boot: cannot start app threads: {e}");
                return Exit::BootError;
            }
        }
    } else if gevent {
        let opts = threads::Options {
            // The most greenlets at once, as gunicorn's gevent Pool.
            threads: cfg.worker_connections,
            age,
            policy: policy.clone(),
        };
        match gevent::start(py, cfg, app.clone(), opts) {
            Ok((r, h, mailbox)) => {
                hub = Some(h);
                (Some(Box::new(r) as Box<dyn Runner>), Some(mailbox))
            }
            Err(e) => {
                crate::error!("Worker failed to boot: cannot start the gevent hub: {e}");
                return Exit::BootError;
            }
        }
    } else {
        (None, None)
    };
    let booted = Booted {
        slot,
        cpu,
        pinned,
        kind,
        listeners,
        status,
        wake_fd,
        tls,
        age,
        app,
        policy,
        asgi,
        runner,
        mailbox,
        signals,
    };
    // -k gevent: the hub keeps this thread, where gevent patched the
    // standard library and the app was imported; the loop gets its own.
    let code = match hub {
        Some(hub) => gevent::serve(py, hub, move |py| serve(py, cfg, booted)),
        None => serve(py, cfg, booted),
    };
    let server = crate::hooks::ServerInfo {
        cfg,
        pid: nix::unistd::getppid().as_raw() as u32,
        num_workers: cfg.workers,
    };
    let _ = crate::hooks::call_worker_exit(
        py,
        &server,
        &crate::hooks::WorkerInfo::this_process(cfg, age),
    );
    run_exit_functions(py);
    crate::log::flush();
    code
}

/// What a booted worker hands the thread that runs its loop.
struct Booted<'a> {
    slot: usize,
    cpu: usize,
    pinned: bool,
    kind: EngineKind,
    listeners: Vec<SlotListener>,
    status: Option<&'a shm::Status>,
    wake_fd: i32,
    tls: Option<crate::tls::TlsConfig>,
    age: u64,
    app: Arc<WsgiApp>,
    policy: super::Policy,
    asgi: bool,
    runner: Option<Box<dyn Runner>>,
    mailbox: Option<Arc<Mailbox>>,
    signals: SignalPipe,
}

/// Open the io engine and run the loop until the worker stops, then stop
/// the app side. Runs on the thread that owns the engine (an io_uring ring
/// takes submissions only from the thread that made it).
fn serve(py: Python<'_>, cfg: &Config, booted: Booted<'_>) -> Exit {
    let Booted {
        slot,
        cpu,
        pinned,
        kind,
        listeners,
        status,
        wake_fd,
        tls,
        age,
        app,
        policy,
        asgi,
        runner,
        mailbox,
        signals,
    } = booted;
    let fds: Vec<i32> = listeners.iter().map(|l| l.fd.as_raw_fd()).collect();
    let engine = match Engine::new(
        kind,
        &fds,
        &EngineConfig {
            max_connections: cfg.worker_connections,
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            crate::error!("Worker failed to boot: cannot start the {kind:?} io engine: {e}");
            return Exit::BootError;
        }
    };
    let templates = listeners
        .iter()
        .map(|l| conn_info_template(l, tls.is_some()))
        .collect();
    let reloader = cfg
        .reload
        .then(|| super::reload::Reloader::new(py, &cfg.reload_extra_files));
    let mut worker = Worker {
        cfg,
        reloader,
        reload_requested: false,
        policy,
        age,
        status,
        header_timeout: cfg.header_timeout,
        body_timeout: cfg.body_timeout,
        batch_calls: 0,
        listener_fds: listeners.into_iter().map(|l| l.fd).collect(),
        wake_fd,
        max_requests: (cfg.max_requests > 0)
            .then(|| cfg.max_requests + jitter(cfg.max_requests_jitter)),
        requests: 0,
        max_rss: (cfg.max_worker_rss > 0).then_some(cfg.max_worker_rss),
        engine,
        state: State {
            conns: Vec::new(),
            parsers: ParserPool::default(),
            listeners: templates,
            ready: Vec::new(),
            open: 0,
            // An ASGI app gets request bodies as they arrive (`upload`).
            http: if asgi {
                Arc::new(http::Config {
                    stream_bodies: true,
                    ..(*cfg.http).clone()
                })
            } else {
                cfg.http.clone()
            },
            trust_forwarded: cfg.forwarded_allow_ips.clone(),
            trust_proxy: cfg.proxy_allow_from.clone(),
            signal_fd: signals.fd(),
            signalled: false,
            reload_fd: None,
            reload_notified: false,
            mail_fd: mailbox.as_ref().map(|m| m.fd()),
            mail: false,
            tls: tls.clone(),
            plain: Vec::new(),
        },
        app,
        asgi,
        ws: super::websocket::WsSettings::from_config(cfg),
        websockets_closed: false,
        runner,
        mailbox,
        mail: Vec::new(),
        next_serial: 0,
        quick_exit: false,
        // A client that stops reading holds a sync worker's write() for at
        // most --timeout, as gunicorn's socket timeout does (none with 0).
        direct: Arc::new(super::direct::DirectSink::new(Duration::from_secs(
            if cfg.timeout == 0 {
                86_400
            } else {
                cfg.timeout as u64
            },
        ))),
        date: DateCache::with_clock(crate::sys::time::coarse_unix_secs),
        keep_alive: Duration::from_secs(cfg.keep_alive as u64),
        max_connections: cfg.worker_connections,
        accept_paused: false,
        stopping: None,
        graceful_timeout: Duration::from_secs(cfg.graceful_timeout as u64),
        signals,
    };
    if worker.runner.is_none() {
        // The app runs on this thread: its early hints go out like write().
        crate::wsgi::set_hint_sink(Some(
            worker.direct.clone() as Arc<dyn crate::wsgi::WriteSink>
        ));
    }
    if let Err(e) = worker.engine.watch(worker.state.signal_fd) {
        crate::error!("Worker failed to boot: cannot watch signals: {e}");
        return Exit::BootError;
    }
    if let Some(fd) = worker.state.mail_fd {
        if let Err(e) = worker.engine.watch(fd) {
            crate::error!("Worker failed to boot: cannot watch the app threads' mailbox: {e}");
            return Exit::BootError;
        }
    }
    if let Some(fd) = worker.reloader.as_ref().and_then(|r| r.fd()) {
        match worker.engine.watch(fd) {
            Ok(()) => worker.state.reload_fd = Some(fd),
            Err(e) => crate::warn!("--reload: inotify unavailable ({e}); polling once a second"),
        }
    }
    crate::info!(
        "Worker ready (pid: {}, slot {slot}, cpu {}, io engine {})",
        std::process::id(),
        if pinned {
            cpu.to_string()
        } else if cfg.pin_workers {
            format!("{cpu} (pinning refused)")
        } else {
            "any (not pinned)".to_string()
        },
        match kind {
            EngineKind::Uring => "io_uring",
            EngineKind::Epoll => "epoll",
        }
    );
    if let Some(s) = status {
        let engine = match kind {
            EngineKind::Uring => shm::ENGINE_URING,
            EngineKind::Epoll => shm::ENGINE_EPOLL,
        };
        s.engine.store(engine, std::sync::atomic::Ordering::Relaxed);
        s.state
            .fetch_or(shm::READY, std::sync::atomic::Ordering::AcqRel);
        signal::poke(wake_fd);
    }
    let code = worker.serve(py);
    if let Some(runner) = &mut worker.runner {
        let wait = if worker.quick_exit {
            Duration::ZERO
        } else {
            Duration::from_secs(cfg.graceful_timeout as u64)
        };
        py.detach(|| runner.stop(wait));
    }
    crate::log::flush();
    code
}

/// `--check-config`: import the app in the master the way a worker does
/// (the same sys.path, the same loader); 0 when it loads, 1 when it does not.
pub fn check_app(py: Python<'_>, cfg: &Config) -> i32 {
    if let Err(e) = extend_sys_path(py, cfg) {
        crate::error!("Cannot extend sys.path: {e}");
        return 1;
    }
    if cfg.gevent() {
        if let Err(e) = gevent::check_installed(py) {
            crate::error!("{e}");
            return 1;
        }
    }
    match WsgiApp::import(py, &app_source(cfg))
        .and_then(|app| WsgiApp::from_object(py, app, app_info(cfg)))
    {
        Ok(_) => 0,
        Err(e) => {
            crate::error!("Failed to load the application {:?}: {}", cfg.app, e.0);
            1
        }
    }
}

/// `--preload`: import the app in the master, with the sys.path a worker
/// would have, so workers share it copy-on-write. The error is the
/// traceback, for the log.
pub fn preload(py: Python<'_>, cfg: &Config) -> Result<Py<PyAny>, String> {
    extend_sys_path(py, cfg).map_err(|e| format!("cannot set sys.path: {e}"))?;
    WsgiApp::import(py, &app_source(cfg)).map_err(|e| e.0)
}

/// Where the settings say the app comes from: `--paste`, else the app spec.
fn app_source(cfg: &Config) -> AppSource<'_> {
    match &cfg.paste {
        Some(p) => AppSource::Paste {
            uri: &p.uri,
            global_conf: &p.global_conf,
        },
        None => AppSource::Spec(&cfg.app),
    }
}

/// What the app's environ says about the worker (wsgi.multiprocess, wsgi.multithread).
fn app_info(cfg: &Config) -> WorkerInfo {
    WorkerInfo {
        multiprocess: cfg.workers > 1,
        // gunicorn's gevent worker says multithread too.
        multithread: cfg.threaded() || cfg.gevent(),
    }
}

fn unblock_all(signals: &[Signal]) {
    let mut set = nix::sys::signal::SigSet::empty();
    for &s in signals {
        set.add(s);
    }
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&set), None);
}

/// On SIGABRT (sent by the arbiter when `--timeout` expires), Python's
/// faulthandler writes every thread's traceback to stderr and the process
/// ends. It also reports a crash in the app's native code the same way.
fn arm_timeout_report(py: Python<'_>, cfg: &Config, age: u64) -> PyResult<()> {
    let _ = ABORT_CONTEXT.set((cfg.clone(), age));
    py.run(
        c"import faulthandler, sys\nfaulthandler.enable(file=sys.stderr, all_threads=True)",
        None,
        None,
    )?;
    let handler = wrap_pyfunction!(on_timeout_abort, py)?;
    py.import("signal")?
        .getattr("signal")?
        .call1((Signal::SIGABRT as i32, handler))?;
    Ok(())
}

/// SIGUSR2, and the arbiter when a worker stays stuck after SIGABRT: every
/// thread's stack (Rust frames, then Python's) to the error log, from a
/// thread that needs neither the interpreter lock nor the log's.
fn arm_stack_dump(py: Python<'_>) -> Result<(), String> {
    let fd = stackdump::install(crate::log::error_log_copy).map_err(|e| e.to_string())?;
    let code = format!(
        "import faulthandler\nfaulthandler.register({}, file={fd}, all_threads=True)",
        stackdump::python_signal()
    );
    let code = std::ffi::CString::new(code).map_err(|e| e.to_string())?;
    py.run(&code, None, None).map_err(|e| e.to_string())?;
    stackdump::register_python();
    Ok(())
}

/// The worker's settings and age, for the `worker_abort` hook.
static ABORT_CONTEXT: std::sync::OnceLock<(Config, u64)> = std::sync::OnceLock::new();

/// SIGABRT from the arbiter (`--timeout`), run by the interpreter as soon as
/// the stuck Python code gives it a chance (a sleep or blocking call is
/// interrupted for it): write every thread's traceback, run `worker_abort`,
/// and leave. If the code is stuck where Python cannot run a handler, the
/// arbiter's SIGKILL follows.
#[pyfunction]
fn on_timeout_abort(py: Python<'_>, _signum: i32, _frame: Bound<'_, PyAny>) {
    crate::error!("Worker aborted after the timeout; the stuck request's traceback follows");
    let _ = py.run(
        c"import faulthandler, sys\nsys.stderr.flush()\nfaulthandler.dump_traceback(file=sys.stderr, all_threads=True)",
        None,
        None,
    );
    if let Some((cfg, age)) = ABORT_CONTEXT.get() {
        if cfg.gevent() {
            gevent::log_greenlets(py);
        }
        let _ =
            crate::hooks::call_worker_abort(py, &crate::hooks::WorkerInfo::this_process(cfg, *age));
    }
    crate::log::flush();
    let _ = py.run(
        c"import sys\nsys.stdout.flush()\nsys.stderr.flush()",
        None,
        None,
    );
    process::exit_now(1);
}

/// `--group`, `--initgroups`, `--user`, in that order (setuid last).
fn drop_privileges(cfg: &Config) -> Result<(), String> {
    use nix::unistd::{setgid, setuid, Gid, Uid};
    if let Some(gid) = cfg.group {
        setgid(Gid::from_raw(gid)).map_err(|e| format!("cannot switch to group {gid}: {e}"))?;
    }
    if let Some((uid, name)) = &cfg.user {
        if cfg.initgroups {
            let gid = Gid::from_raw(cfg.group.unwrap_or_else(|| nix::unistd::getgid().as_raw()));
            let cname = std::ffi::CString::new(name.as_str())
                .map_err(|_| format!("bad user name {name:?}"))?;
            nix::unistd::initgroups(&cname, gid)
                .map_err(|e| format!("cannot set the groups of {name}: {e}"))?;
        }
        setuid(Uid::from_raw(*uid)).map_err(|e| format!("cannot switch to user {name}: {e}"))?;
    }
    Ok(())
}

/// A random 0..=max, so workers started together do not all recycle together.
fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if max == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() % (max + 1)
}

fn choose_engine(choice: EngineChoice) -> Result<EngineKind, String> {
    match choice {
        EngineChoice::Epoll => Ok(EngineKind::Epoll),
        EngineChoice::Uring => Engine::probe_uring()
            .map(|_| EngineKind::Uring)
            .map_err(|u| format!("--io-engine uring was asked for, but {}", u.0)),
        EngineChoice::Auto => Ok(match Engine::probe_uring() {
            Ok(()) => EngineKind::Uring,
            Err(u) => {
                crate::warn!("{}, using epoll", u.0);
                EngineKind::Epoll
            }
        }),
    }
}

/// gunicorn puts the working directory (after --chdir) first on sys.path,
/// then each --pythonpath entry.
fn extend_sys_path(py: Python<'_>, cfg: &Config) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !sys_path.contains(&cwd)? {
        sys_path.insert(0, &cwd)?;
    }
    for p in cfg.pythonpath.iter().rev() {
        sys_path.insert(0, p)?;
    }
    Ok(())
}

fn run_exit_functions(py: Python<'_>) {
    let _ = py.run(
        c"import atexit, sys\natexit._run_exitfuncs()\nsys.stdout.flush()\nsys.stderr.flush()",
        None,
        None,
    );
}

fn conn_info_template(l: &SlotListener, tls: bool) -> ConnInfo {
    let (server_name, server_port) = match (l.local, &l.unix_path) {
        (Some(addr), _) => (addr.ip().to_string(), addr.port().to_string()),
        (None, Some(path)) => (path.clone(), String::new()),
        (None, None) => (String::new(), String::new()),
    };
    ConnInfo {
        peer: None,
        server_name: server_name.into(),
        server_port: server_port.into(),
        tls,
    }
}
