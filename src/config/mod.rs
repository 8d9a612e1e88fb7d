//! Settings: the command line, `FERROCORN_CMD_ARGS`, the config file and the
//! environment resolved into one validated `Config`.
//!
//! Precedence, as in gunicorn: command line > `FERROCORN_CMD_ARGS` (else
//! `GUNICORN_CMD_ARGS`) > config file > environment defaults (`PORT`,
//! `WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`, `SENDFILE`) > the table's defaults.
//!
//! Every mistake is reported here, before any socket is bound or worker
//! forked, naming the setting, the value, where it came from and what was
//! expected. Python runs here only to execute the config file and to route
//! logging through Python (`logconfig_dict` ...); `--check-config` is
//! handed back to the entry point, which loads the app as a worker would.
//! Never imports `wsgi`, `worker` or `hooks`.

#![forbid(unsafe_code)]

mod bind;
mod build;
mod cli;
mod control;
use control::control_socket;
mod docs;
mod hooks;
mod http2;
mod load;
pub mod settings;
mod temp_dir;
mod value;

#[cfg(feature = "python")]
mod file;
#[cfg(feature = "python")]
mod pylog;

pub use bind::BindAddr;
pub use control::default_control_socket;
pub use docs::{print_config, settings_markdown};
pub use hooks::{Callable, Hook, Hooks};
pub use http2::{Cleartext, Http2};
pub(crate) use settings::{id, Id};
pub use settings::{Setting, SETTINGS};
pub use value::{Origin, Raw, Value};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::{self, AllowList, HeaderMapPolicy, ProxyProtocol};
use crate::log::Level;

use build::*;
pub use load::load;
use load::*;
use settings::Support;

/// Everything the arbiter and the workers need, resolved and validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time to receive a whole request head (then 408).
    pub header_timeout: std::time::Duration,
    /// Longest pause between body bytes (then 408).
    pub body_timeout: std::time::Duration,
    /// Admission control: requests per loop turn before 503 (0 = off).
    pub max_queued_requests: usize,
    /// Admission control: longest wait before 503 (`None` = off).
    pub max_queue_wait: Option<std::time::Duration>,
    pub app: String,
    /// `--reload`: restart workers when their code changes (development).
    pub reload: bool,
    /// `--reload-extra-file`: more files (or glob patterns) to watch.
    pub reload_extra_files: Vec<String>,
    pub binds: Vec<BindAddr>,
    pub workers: usize,
    pub chdir: Option<String>,
    pub pythonpath: Vec<String>,
    pub keep_alive: u32,
    pub backlog: i32,
    pub reuse_port: bool,
    /// Pin each worker to one CPU (`--no-pin-workers` turns it off).
    pub pin_workers: bool,
    pub io_engine: EngineChoice,
    pub graceful_timeout: u32,
    pub timeout: u32,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--max-worker-rss` in bytes: a worker past it asks for a replacement (0 = never).
    pub max_worker_rss: u64,
    pub pidfile: Option<String>,
    pub daemon: bool,
    pub user: Option<(u32, String)>,
    pub group: Option<u32>,
    pub initgroups: bool,
    pub umask: u32,
    pub proc_name: String,
    pub worker_connections: usize,
    pub log_level: Level,
    pub forwarded_allow_ips: AllowList,
    pub proxy_allow_from: AllowList,
    pub http: Arc<http::Config>,
    /// TLS on every listener when a certificate or key is given.
    pub tls: crate::tls::TlsSettings,
    /// `--http-protocols` and the `--http2-*` settings.
    pub http2: Http2,
    /// `threads` (app threads per worker).
    pub threads: usize,
    /// `worker_class` as given (`sync`, `gthread`, ...).
    pub worker_class: String,
    /// `sendfile`: false with `--no-sendfile` or `SENDFILE=0`.
    pub sendfile: bool,
    /// `-e KEY=VALUE` pairs, already set in this process by `from_args`.
    pub raw_env: Vec<(String, String)>,
    /// The error log, access log and syslog settings (see `log::setup`).
    pub log: crate::log::Setup,
    /// The config file that was read, as given (`None`: none).
    pub config_file: Option<String>,
    /// The server hooks the config file set.
    pub hooks: Arc<Hooks>,
    /// Every setting's resolved value and origin (`--print-config`, `server.cfg`).
    pub settings: Arc<Resolved>,
    /// `--metrics-bind`: where the master serves /metrics, /healthz and /readyz.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `--interface` (or an ASGI worker class): how the app is called.
    pub interface: Interface,
    /// `--asgi-loop`.
    pub asgi_loop: AsgiLoop,
    /// `--asgi-lifespan`.
    pub asgi_lifespan: AsgiLifespan,
    /// `--asgi-disconnect-grace-period`: how long an ASGI app may go on
    /// after its client left before it is cancelled.
    pub asgi_disconnect_grace_period: std::time::Duration,
    /// `--root-path`: the ASGI scope's root_path.
    pub root_path: String,
    /// `--websocket-max-message-size` (bytes; 0 = no limit).
    pub websocket_max_message_size: u64,
    /// `--ws-ping-interval` (zero: no pings).
    pub ws_ping_interval: std::time::Duration,
    /// `--ws-ping-timeout` (zero: wait forever).
    pub ws_ping_timeout: std::time::Duration,
    /// `--ws-per-message-deflate`.
    pub ws_per_message_deflate: bool,
    /// `--paste FILE[#SECTION]`: the app comes from a PasteDeploy file
    /// (then `app` is the file's absolute path).
    pub paste: Option<Paste>,
    /// `--preload`: the master imports the app before forking workers.
    pub preload_app: bool,
    /// The control socket's path, as given (`None`: `--no-control-socket`).
    pub control_socket: Option<std::path::PathBuf>,
    /// `--control-socket-mode`.
    pub control_socket_mode: u32,
}

/// A PasteDeploy app, loaded as gunicorn does:
/// `loadapp(uri, relative_to=os.getcwd(), global_conf=global_conf)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paste {
    /// `config:/absolute/file.ini` with its `#section`, if one was given.
    pub uri: String,
    /// `--paste-global` entries.
    pub global_conf: Vec<(String, String)>,
}

/// The user's choice of io engine: `--io-engine auto|uring|epoll` (the
/// worker probes and starts the engine; the master never touches one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Uring,
    Epoll,
}

/// The protocol the app speaks (`--interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// ASGI when the loaded app object is a coroutine function (or its
    /// `__call__` is one), else WSGI.
    Auto,
    Wsgi,
    Asgi,
}

/// The event loop of an ASGI worker (`--asgi-loop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsgiLoop {
    /// uvloop when it can be imported, else asyncio.
    Auto,
    Asyncio,
    Uvloop,
}

impl AsgiLoop {
    pub fn as_str(self) -> &'static str {
        match self {
            AsgiLoop::Auto => "auto",
            AsgiLoop::Asyncio => "asyncio",
            AsgiLoop::Uvloop => "uvloop",
        }
    }
}

/// The ASGI lifespan protocol (`--asgi-lifespan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsgiLifespan {
    /// Run it; an app that raises before answering startup does not speak
    /// it and is served anyway.
    Auto,
    /// Run it; any failure stops the worker.
    On,
    Off,
}

impl AsgiLifespan {
    pub fn as_str(self) -> &'static str {
        match self {
            AsgiLifespan::Auto => "auto",
            AsgiLifespan::On => "on",
            AsgiLifespan::Off => "off",
        }
    }
}

impl Config {
    /// Requests go to app threads (gthread, or sync with more than one thread).
    pub fn threaded(&self) -> bool {
        !self.gevent() && (self.threads > 1 || self.worker_class == "gthread")
    }

    /// Requests run as greenlets on a gevent hub (gunicorn's gevent workers).
    pub fn gevent(&self) -> bool {
        matches!(
            self.worker_class.as_str(),
            "gevent" | "gevent_wsgi" | "gevent_pywsgi"
        )
    }
}

/// What the command line asks for.
pub enum Parsed {
    Run(Box<Config>),
    /// `--check-config` (or `--print-config`, printed already): import the
    /// app the way a worker does, then exit 0 when it loads, else 1. The
    /// entry point runs it through the worker's loader: config never loads
    /// the app.
    Check(Box<Config>),
    /// `--version`: the caller prints `version_report` (it knows the Python).
    Version,
    /// `--help`/`--print-config` done, or an error reported: exit with this code.
    Exit(i32),
}

/// The value and origin of every row of `SETTINGS`.
#[derive(Clone, Debug)]
pub struct Resolved {
    values: Vec<Value>,
    origins: Vec<Origin>,
}

impl Resolved {
    fn defaults() -> Resolved {
        Resolved {
            values: SETTINGS
                .iter()
                .map(|s| Value::from_default(s.default))
                .collect(),
            origins: vec![Origin::Default; SETTINGS.len()],
        }
    }

    /// The value of the setting `name` (a name from the table).
    pub fn get(&self, id: Id) -> &Value {
        &self.values[id.index()]
    }

    pub fn origin(&self, id: Id) -> &Origin {
        &self.origins[id.index()]
    }

    /// (setting, value, origin) in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Setting, &Value, &Origin)> {
        SETTINGS
            .iter()
            .zip(self.values.iter())
            .zip(self.origins.iter())
            .map(|((s, v), o)| (s, v, o))
    }

    fn set(&mut self, i: usize, v: Value, origin: Origin) {
        self.values[i] = v;
        self.origins[i] = origin;
    }
}

/// What a config file defined: names that match settings, the other
/// public names (warned about), and the callables behind hook values.
#[derive(Default)]
pub struct FileSettings {
    pub values: Vec<(String, Raw)>,
    pub unknown: Vec<String>,
    pub callables: Vec<(String, Callable)>,
}

/// Where a config file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `PATH` or `file:PATH`.
    File(String),
    /// `python:MODULE`.
    Module(String),
}

impl ConfigSource {
    pub fn parse(spec: &str) -> ConfigSource {
        if let Some(m) = spec.strip_prefix("python:") {
            ConfigSource::Module(m.to_string())
        } else {
            ConfigSource::File(spec.strip_prefix("file:").unwrap_or(spec).to_string())
        }
    }

    pub fn display(&self) -> String {
        match self {
            ConfigSource::File(p) => p.clone(),
            ConfigSource::Module(m) => format!("python:{m}"),
        }
    }
}

/// The config files read when no `-c` is given, first found wins.
pub const DEFAULT_CONFIG_FILES: [&str; 2] = ["ferrocorn.conf.py", "gunicorn.conf.py"];

/// Why loading failed.
#[derive(Debug)]
pub enum LoadError {
    /// A command-line usage error (clap's message; exit code 2).
    Usage(clap::Error),
    /// A usage error in `FERROCORN_CMD_ARGS`: the message (exit code 2).
    EnvUsage(String),
    /// A bad value, file or app: the message (exit code 1).
    Invalid(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Usage(e) => write!(f, "{e}"),
            LoadError::EnvUsage(m) | LoadError::Invalid(m) => f.write_str(m),
        }
    }
}

/// A loaded configuration and what to tell the user about it.
pub struct Loaded {
    pub config: Config,
    /// Settings ferrocorn does not act on, unknown config-file names ...
    pub warnings: Vec<String>,
    pub print_config: bool,
    pub check_config: bool,
}

/// Reads a config file (the embedded interpreter does it; tests pass a fake).
pub type FileReader<'a> = &'a dyn Fn(&ConfigSource) -> Result<FileSettings, String>;

/// Parse and validate `argv` (argv[0] is the program name): print errors,
/// set up logging, apply `-e`, and handle `--print-config`/`--check-config`.
pub fn from_args(argv: &[String]) -> Parsed {
    let given = match cli::parse(argv) {
        Ok(g) => g,
        Err(e) => {
            let _ = e.print();
            return Parsed::Exit(e.exit_code());
        }
    };
    if given.print_settings_doc {
        print!("{}", settings_markdown());
        return Parsed::Exit(0);
    }
    if given.print_version {
        return Parsed::Version;
    }
    let env = |name: &str| std::env::var(name).ok();
    let loaded = match load_given(given, &env, &read_config_file) {
        Ok(l) => l,
        Err(LoadError::Usage(e)) => {
            let _ = e.print();
            return Parsed::Exit(e.exit_code());
        }
        Err(LoadError::EnvUsage(msg)) => {
            eprintln!("Error: {msg}");
            return Parsed::Exit(2);
        }
        Err(LoadError::Invalid(msg)) => {
            eprintln!("Error: {msg}");
            return Parsed::Exit(1);
        }
    };
    let cfg = loaded.config;
    if let Err(msg) = setup_logging(&cfg) {
        eprintln!("Error: {msg}");
        return Parsed::Exit(1);
    }
    for w in &loaded.warnings {
        crate::warn!("{w}");
    }
    if loaded.print_config {
        print!("{}", print_config(&cfg.settings));
    }
    if loaded.print_config || loaded.check_config {
        return Parsed::Check(Box::new(cfg));
    }
    apply_raw_env(&cfg.raw_env);
    Parsed::Run(Box::new(cfg))
}

/// What `--version` prints: gunicorn's first line ("NAME (version X)"),
/// then the io engines this build has and which one `--io-engine auto`
/// would pick on this machine, then the Python it runs on (`python`, e.g.
/// "CPython 3.12.1 (/usr/bin/python3)").
pub fn version_report(python: &str, auto: &str) -> String {
    format!(
        "ferrocorn (version {})\nio engines: uring, epoll; --io-engine auto picks {auto}\npython: {python}\n",
        crate::VERSION
    )
}

/// Parse `argv` again (HUP), returning the error text instead of printing it.
/// On success `-e` variables are set again, as gunicorn's reload does; the
/// caller applies the logging settings with `setup_logging(&cfg)`.
pub fn from_args_quiet(argv: &[String]) -> Result<Config, String> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = load(argv, &env, &read_config_file).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        crate::warn!("{w}");
    }
    apply_raw_env(&loaded.config.raw_env);
    Ok(loaded.config)
}

/// Set `-e KEY=VALUE` in this process (and in Python's `os.environ`), so
/// workers forked later inherit them.
pub fn apply_raw_env(pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    #[cfg(feature = "python")]
    file::set_os_environ(pairs);
    #[cfg(not(feature = "python"))]
    for (k, v) in pairs {
        std::env::set_var(k, v);
    }
}

/// Open the log files, and route logs through Python's logging when the
/// settings ask for it. `from_args` calls it; the arbiter calls it again
/// with the new `Config` on HUP (gunicorn 26.1 re-runs its logger setup).
pub fn setup_logging(cfg: &Config) -> Result<(), String> {
    // Python logging first: the access log is on when it has a sink.
    #[cfg(feature = "python")]
    pylog::setup(&cfg.settings)?;
    crate::log::setup(&cfg.log)
}

#[cfg(feature = "python")]
fn read_config_file(src: &ConfigSource) -> Result<FileSettings, String> {
    file::read(src)
}

/// The real config-file reader, for tests elsewhere in the crate.
#[cfg(all(test, feature = "python"))]
pub(crate) fn read_file_for_tests(src: &ConfigSource) -> Result<FileSettings, String> {
    file::read(src)
}

#[cfg(not(feature = "python"))]
fn read_config_file(src: &ConfigSource) -> Result<FileSettings, String> {
    Err(format!(
        "cannot read the config file {}: this build has no Python",
        src.display()
    ))
}

/// gunicorn reads the umask as an int in any base: `0o007`, `007`, `0x1f`, `7`.
#[cfg(test)]
fn parse_umask(s: &str) -> Option<u32> {
    value::parse_octal(s)
        .filter(|v| (0..=0o777).contains(v))
        .map(|v| v as u32)
}

#[cfg(test)]
mod tests;
