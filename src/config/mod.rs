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
mod cli;
mod docs;
mod hooks;
mod http2;
pub mod settings;
mod temp_dir;
mod value;

#[cfg(feature = "python")]
mod file;
#[cfg(feature = "python")]
mod pylog;

pub use bind::BindAddr;
pub use docs::{print_config, settings_markdown};
pub use hooks::{Callable, Hook, Hooks};
pub use http2::{Cleartext, Http2};
pub use settings::{Setting, SETTINGS};
pub use value::{Origin, Raw, Value};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::{self, AllowList, HeaderMapPolicy, ProxyProtocol};
use crate::log::Level;

use settings::{index, Support};

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
        self.threads > 1
            || matches!(
                self.worker_class.as_str(),
                "gthread" | "gevent" | "gevent_wsgi" | "gevent_pywsgi"
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
    pub fn get(&self, name: &str) -> &Value {
        &self.values[index(name)]
    }

    pub fn origin(&self, name: &str) -> &Origin {
        &self.origins[index(name)]
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

/// Parse `argv` and resolve it against `env` and the config file.
pub fn load(
    argv: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: FileReader<'_>,
) -> Result<Loaded, LoadError> {
    let given = cli::parse(argv).map_err(LoadError::Usage)?;
    load_given(given, env, read_file)
}

fn load_given(
    given: cli::Given,
    env: &dyn Fn(&str) -> Option<String>,
    read_file: FileReader<'_>,
) -> Result<Loaded, LoadError> {
    let mut warnings = Vec::new();
    let (env_given, env_name) = cmd_args_from_env(env, &mut warnings)?;

    let mut r = Resolved::defaults();
    apply_env_defaults(&mut r, env).map_err(LoadError::Invalid)?;

    // The config file: -c on the command line, else in FERROCORN_CMD_ARGS,
    // else the default files that exist.
    let explicit = match given.get("config") {
        Some(Raw::Str(s)) => Some(s.clone()),
        _ => match env_given.as_ref().and_then(|g| g.get("config")) {
            Some(Raw::Str(s)) => Some(s.clone()),
            _ => None,
        },
    };
    let source = match &explicit {
        Some(spec) => {
            let src = ConfigSource::parse(spec);
            if let ConfigSource::File(p) = &src {
                if !Path::new(p).exists() {
                    return Err(LoadError::Invalid(format!(
                        "Invalid value for config: {} : the file does not exist",
                        value::py_repr(spec)
                    )));
                }
                if !p.ends_with(".py") {
                    warnings.push(format!(
                        "The config file {p} does not end in .py; it is executed as Python anyway"
                    ));
                }
            }
            Some(src)
        }
        None => DEFAULT_CONFIG_FILES
            .iter()
            .find(|f| Path::new(f).is_file())
            .map(|f| ConfigSource::File(format!("./{f}"))),
    };
    let mut hooks = Hooks::default();
    if let Some(src) = &source {
        let origin = Origin::ConfigFile(src.display());
        let fs = read_file(src).map_err(LoadError::Invalid)?;
        apply_file(&mut r, fs, &origin, &mut hooks, &mut warnings).map_err(LoadError::Invalid)?;
        r.set(
            index("config"),
            Value::Str(src.display()),
            if explicit.is_some() {
                Origin::CommandLine
            } else {
                Origin::Default
            },
        );
    }
    if let (Some(g), Some(name)) = (&env_given, env_name) {
        apply_given(&mut r, g, &Origin::CmdArgs(name)).map_err(LoadError::Invalid)?;
    }
    apply_given(&mut r, &given, &Origin::CommandLine).map_err(LoadError::Invalid)?;

    for (s, v, o) in r.iter() {
        if s.name == "worker_class" {
            if let Some(kind) = v.as_str() {
                if let Some(reason) = unsupported_worker_class(kind) {
                    return Err(LoadError::Invalid(bad(&r, "worker_class", kind, reason)));
                }
                if kind.starts_with("gevent") {
                    warnings.push(format!(
                        "worker_class = '{kind}': ferrocorn has no gevent worker; the app runs in \
                         app threads instead (gthread, --threads sets how many). Code that needs \
                         gevent's monkey-patching should move to threads or to ASGI: see \
                         docs/gunicorn-differences.md"
                    ));
                }
            }
        }
        if let Support::No(reason) = s.support {
            if *o != Origin::Default && *v != Value::from_default(s.default) {
                warnings.push(format!(
                    "{} = {} (from {o}) is a gunicorn setting ferrocorn does not implement ({reason}); it is ignored",
                    s.name,
                    v.to_python()
                ));
            }
        }
    }

    let nonempty = |a: &Option<String>| a.clone().filter(|a| !a.trim().is_empty());
    let app = nonempty(&given.app)
        .or_else(|| env_given.as_ref().and_then(|g| nonempty(&g.app)))
        .or_else(|| r.get("wsgi_app").as_str().map(String::from));
    let config = build(
        r,
        app,
        hooks,
        source.map(|s| s.display()),
        env,
        &mut warnings,
    )
    .map_err(LoadError::Invalid)?;
    let print_config = config.settings.get("print_config").as_bool();
    let check_config = config.settings.get("check_config").as_bool();
    Ok(Loaded {
        config,
        warnings,
        print_config,
        check_config,
    })
}

/// `FERROCORN_CMD_ARGS`, else `GUNICORN_CMD_ARGS`, parsed like a command line.
fn cmd_args_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(Option<cli::Given>, Option<&'static str>), LoadError> {
    let ours = env("FERROCORN_CMD_ARGS").filter(|s| !s.trim().is_empty());
    let theirs = env("GUNICORN_CMD_ARGS").filter(|s| !s.trim().is_empty());
    let (name, text) = match (ours, theirs) {
        (Some(o), Some(_)) => {
            warnings.push(
                "Both FERROCORN_CMD_ARGS and GUNICORN_CMD_ARGS are set: GUNICORN_CMD_ARGS is ignored"
                    .into(),
            );
            ("FERROCORN_CMD_ARGS", o)
        }
        (Some(o), None) => ("FERROCORN_CMD_ARGS", o),
        (None, Some(t)) => ("GUNICORN_CMD_ARGS", t),
        (None, None) => return Ok((None, None)),
    };
    let words = cli::split_words(&text)
        .map_err(|e| LoadError::EnvUsage(format!("{name}={text:?}: {e}")))?;
    let argv: Vec<String> = std::iter::once("ferrocorn".to_string())
        .chain(words)
        .collect();
    let g = cli::parse(&argv).map_err(|e| {
        let msg = e.render().to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        LoadError::EnvUsage(format!("{name}: {first}"))
    })?;
    Ok((Some(g), Some(name)))
}

/// `PORT`, `WEB_CONCURRENCY` ... as defaults under the config file.
fn apply_env_defaults(
    r: &mut Resolved,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for (i, s) in SETTINGS.iter().enumerate() {
        let Some(var) = s.env else { continue };
        let Some(text) = env(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let origin = Origin::Env(var);
        let raw = match s.name {
            // gunicorn: the default bind is 0.0.0.0:$PORT when PORT is set.
            "bind" => Raw::Str(format!("0.0.0.0:{}", text.trim())),
            _ => Raw::Str(text),
        };
        let v = value::validate(s, &raw, &origin)?;
        r.set(i, v, origin);
    }
    Ok(())
}

fn apply_given(r: &mut Resolved, g: &cli::Given, origin: &Origin) -> Result<(), String> {
    for (i, raw) in &g.values {
        let s = &SETTINGS[*i];
        let v = value::validate(s, raw, origin).map_err(|e| name_flag(e, s, origin))?;
        r.set(*i, v, origin.clone());
    }
    Ok(())
}

/// On the command line a setting is better known by its flag.
fn name_flag(msg: String, s: &Setting, origin: &Origin) -> String {
    match (origin, s.flags.last()) {
        (Origin::CommandLine | Origin::CmdArgs(_), Some(flag)) => msg.replacen(
            &format!("Invalid value for {}:", s.name),
            &format!("Invalid value for {flag}:"),
            1,
        ),
        _ => msg,
    }
}

fn apply_file(
    r: &mut Resolved,
    fs: FileSettings,
    origin: &Origin,
    hooks: &mut Hooks,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    for name in &fs.unknown {
        let hint = closest_setting(name)
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        warnings.push(format!(
            "Unknown setting {name} in {origin} (ignored{hint})"
        ));
    }
    for (name, raw) in &fs.values {
        let Some((i, s)) = settings::find(name) else {
            continue;
        };
        let v = value::validate(s, raw, origin)?;
        r.set(i, v, origin.clone());
    }
    let arities: Vec<(String, usize)> = fs
        .values
        .iter()
        .filter_map(|(n, raw)| match raw {
            Raw::Callable { arity, .. } => Some((n.clone(), arity.unwrap_or(0))),
            _ => None,
        })
        .collect();
    for (name, f) in fs.callables {
        let Some(hook) = Hook::from_name(&name) else {
            continue;
        };
        let arity = arities
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, a)| *a);
        hooks.set(hook, f, arity);
    }
    Ok(())
}

/// The setting whose name is nearest to a misspelt one (at most 2 edits).
fn closest_setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An error about a resolved setting: its name, value and origin.
/// Worker classes ferrocorn refuses instead of running the app the wrong way.
fn unsupported_worker_class(kind: &str) -> Option<&'static str> {
    match kind {
        "eventlet" => Some(
            "eventlet is retired upstream and gunicorn 26 removed its worker; \
             use app threads for blocking calls (--threads N, gunicorn's gthread), \
             -k gevent (which runs as gthread here), or serve an async app with -k asgi",
        ),
        _ => None,
    }
}

/// Worker classes that mean "the app is an ASGI app" (gunicorn's own and
/// uvicorn's, which gunicorn users name in their configs).
fn asgi_worker_class(kind: &str) -> bool {
    matches!(
        kind,
        "asgi" | "uvicorn.workers.UvicornWorker" | "uvicorn.workers.UvicornH11Worker"
    )
}

/// `--interface`, or ASGI when the worker class names an ASGI worker.
fn interface(r: &Resolved) -> Result<Interface, String> {
    let asgi_class = r
        .get("worker_class")
        .as_str()
        .is_some_and(asgi_worker_class);
    match r.get("interface").as_str() {
        Some("wsgi") if asgi_class => {
            let kind = r.get("worker_class").as_str().unwrap_or_default();
            Err(bad(
                r,
                "worker_class",
                kind,
                "this is an ASGI worker class, but --interface wsgi was given",
            ))
        }
        Some("wsgi") => Ok(Interface::Wsgi),
        Some("asgi") => Ok(Interface::Asgi),
        _ if asgi_class => Ok(Interface::Asgi),
        _ => Ok(Interface::Auto),
    }
}

fn bad(r: &Resolved, name: &str, shown: &str, why: impl std::fmt::Display) -> String {
    let origin = r.origin(name);
    let label = match (
        origin,
        settings::find(name).and_then(|(_, s)| s.flags.last()),
    ) {
        (Origin::CommandLine | Origin::CmdArgs(_), Some(flag)) => flag.to_string(),
        _ => name.to_string(),
    };
    format!(
        "Invalid value for {label}: {} (from {origin}): {why}",
        value::py_repr(shown)
    )
}

/// Turn resolved settings into a `Config`, checking what needs more than a type.
fn build(
    r: Resolved,
    app: Option<String>,
    hooks: Hooks,
    config_file: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Config, String> {
    let int = |n: &str| r.get(n).as_int();
    let flag = |n: &str| r.get(n).as_bool();
    let text = |n: &str| r.get(n).as_str().map(String::from);

    let paste = match text("paste") {
        Some(spec) => Some(paste(&r, &spec)?),
        None => None,
    };
    let app = match &paste {
        // gunicorn names the process, and the app, after the file.
        Some((_, file)) => {
            if app.as_deref().is_some_and(|a| !a.trim().is_empty()) {
                warnings.push(format!(
                    "An app module was given with --paste; the app comes from {file}"
                ));
            }
            file.clone()
        }
        None => app
            .filter(|a| !a.trim().is_empty())
            .ok_or("No application module specified.")?,
    };

    let binds = r
        .get("bind")
        .as_list()
        .iter()
        .map(|b| BindAddr::parse(b).map_err(|e| bad(&r, "bind", b, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if binds.is_empty() {
        return Err(bad(&r, "bind", "", "expected at least one address"));
    }

    let io_engine = match r.get("io_engine").as_str() {
        Some("uring") => EngineChoice::Uring,
        Some("epoll") => EngineChoice::Epoll,
        _ => EngineChoice::Auto,
    };
    let header_map = match r.get("header_map").as_str() {
        Some("refuse") => HeaderMapPolicy::Refuse,
        Some("dangerous") => HeaderMapPolicy::Dangerous,
        _ => HeaderMapPolicy::Drop,
    };
    let proxy_protocol = match r.get("proxy_protocol").as_str() {
        Some("v1") => ProxyProtocol::V1,
        Some("v2") => ProxyProtocol::V2,
        Some("auto" | "true") => ProxyProtocol::Auto,
        _ => ProxyProtocol::Off,
    };
    let allow = |name: &str| -> Result<AllowList, String> {
        let spec = text(name).unwrap_or_default();
        AllowList::parse(&spec).map_err(|e| bad(&r, name, &spec, e))
    };
    let forwarded_allow_ips = allow("forwarded_allow_ips")?;
    let proxy_allow_from = allow("proxy_allow_ips")?;

    let secure_scheme_headers = match r.get("secure_scheme_headers") {
        Value::Dict(d) => d
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };
    let http = http::Config {
        limit_request_line: int("limit_request_line") as usize,
        limit_request_fields: int("limit_request_fields") as usize,
        limit_request_field_size: int("limit_request_field_size") as usize,
        permit_obsolete_folding: flag("permit_obsolete_folding"),
        strip_header_spaces: flag("strip_header_spaces"),
        permit_unconventional_http_method: flag("permit_unconventional_http_method"),
        permit_unconventional_http_version: flag("permit_unconventional_http_version"),
        casefold_http_method: flag("casefold_http_method"),
        header_map,
        forwarder_headers: r
            .get("forwarder_headers")
            .as_list()
            .iter()
            .map(|h| h.to_ascii_uppercase())
            .collect(),
        secure_scheme_headers,
        proxy_protocol,
        limit_request_body: int("limit_request_body") as u64,
        body_buffer_size: int("body_buffer_size") as u64,
        temp_files: body_temp_files(&r, text("chdir").as_deref(), warnings)?,
    };

    let user = match text("user") {
        Some(u) => Some(lookup_user(&u).map_err(|e| bad(&r, "user", &u, e))?),
        None => None,
    };
    let group = match text("group") {
        Some(g) => Some(lookup_group(&g).map_err(|e| bad(&r, "group", &g, e))?),
        None => None,
    };
    let chdir = text("chdir");
    if let Some(dir) = &chdir {
        if !Path::new(dir).is_dir() {
            return Err(bad(&r, "chdir", dir, "expected an existing directory"));
        }
    }
    let raw_env = r
        .get("raw_env")
        .as_list()
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(&r, "raw_env", kv, "expected KEY=VALUE")),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let log_level = r
        .get("loglevel")
        .as_str()
        .and_then(Level::parse)
        .unwrap_or(Level::Info);
    let proc_name = text("proc_name").unwrap_or_else(|| app.clone());
    let syslog = flag("syslog").then(|| crate::log::SyslogSetup {
        addr: text("syslog_addr").unwrap_or_default(),
        facility: text("syslog_facility").unwrap_or_else(|| "user".into()),
        prefix: text("syslog_prefix").unwrap_or_else(|| proc_name.clone()),
        access: !flag("disable_redirect_access_to_syslog"),
    });
    if let Some(s) = &syslog {
        if crate::log::syslog::facility(&s.facility).is_none() {
            return Err(bad(
                &r,
                "syslog_facility",
                &s.facility,
                "expected a syslog facility name: user, daemon, local0 ... local7",
            ));
        }
    }
    let statsd = match text("statsd_host") {
        Some(spec) => Some(crate::log::statsd::Settings {
            addr: crate::log::statsd::Addr::parse(&spec)
                .map_err(|e| bad(&r, "statsd_host", &spec, e))?,
            prefix: crate::log::statsd::prefix(&text("statsd_prefix").unwrap_or_default()),
            tags: text("dogstatsd_tags").unwrap_or_default(),
        }),
        None => None,
    };
    let metrics_bind = match text("metrics_bind") {
        Some(spec) => {
            Some(crate::metrics::parse_bind(&spec).map_err(|e| bad(&r, "metrics_bind", &spec, e))?)
        }
        None => None,
    };
    let log = crate::log::Setup {
        level: log_level,
        errorlog: text("errorlog").unwrap_or_else(|| "-".into()),
        capture_output: flag("capture_output"),
        accesslog: text("accesslog"),
        access_log_format: text("access_log_format")
            .unwrap_or_else(|| crate::log::access::DEFAULT_FORMAT.into()),
        access_log_json: flag("access_log_json"),
        syslog,
        statsd,
    };
    let tls = crate::tls::TlsSettings {
        certfile: text("certfile").map(Into::into),
        keyfile: text("keyfile").map(Into::into),
        ca_certs: text("ca_certs").map(Into::into),
        cert_reqs: crate::tls::CertReqs::from_int(int("cert_reqs"))
            .map_err(|e| bad(&r, "cert_reqs", &int("cert_reqs").to_string(), e))?,
        ciphers: text("ciphers"),
        alpn: Vec::new(),
    };
    let http2 = http2::resolve(&r, tls.is_enabled(), warnings)?;
    let tls = crate::tls::TlsSettings {
        alpn: http2.alpn(),
        ..tls
    };
    for name in ["logconfig", "logconfig_json"] {
        if let Some(p) = text(name) {
            if !Path::new(&p).is_file() {
                return Err(bad(&r, name, &p, "expected an existing file"));
            }
        }
    }
    let _ = env;
    let interface = interface(&r)?;
    let asgi_loop = match r.get("asgi_loop").as_str() {
        Some("asyncio") => AsgiLoop::Asyncio,
        Some("uvloop") => AsgiLoop::Uvloop,
        _ => AsgiLoop::Auto,
    };
    let asgi_lifespan = match r.get("asgi_lifespan").as_str() {
        Some("on") => AsgiLifespan::On,
        Some("off") => AsgiLifespan::Off,
        _ => AsgiLifespan::Auto,
    };
    let root_path = text("root_path").unwrap_or_default();
    if flag("reload") && flag("preload_app") {
        // A replacement is forked from the master's app: it runs the old code.
        warnings.push(
            "reload = True with preload_app = True: a changed file replaces the workers, but \
             they are forked from the app the master loaded, so they run the old code"
                .into(),
        );
    }

    let mut resolved = r.clone();
    if let Some((_, file)) = &paste {
        // gunicorn: the ini's logging config is used when it has one.
        if text("logconfig").is_none() && ini_has_loggers(Path::new(file)) {
            resolved.set(
                index("logconfig"),
                Value::Str(file.clone()),
                Origin::Default,
            );
        }
    }
    resolved.set(
        index("default_proc_name"),
        Value::Str(app.clone()),
        Origin::Default,
    );
    for h in Hook::ALL {
        if let Some((_, arity)) = hooks.get(h) {
            let repr = format!("<{}() taking {arity}>", h.name());
            let i = index(h.name());
            let origin = resolved.origins[i].clone();
            resolved.set(i, Value::Hook(repr), origin);
        }
    }

    Ok(Config {
        header_timeout: std::time::Duration::from_secs(int("header_timeout") as u64),
        body_timeout: std::time::Duration::from_secs(int("body_timeout") as u64),
        max_queued_requests: int("max_queued_requests") as usize,
        max_queue_wait: match int("max_queue_wait_ms") {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms as u64)),
        },
        reload: flag("reload"),
        reload_extra_files: r.get("reload_extra_files").as_list().to_vec(),
        proc_name,
        timeout: int("timeout") as u32,
        max_requests: int("max_requests") as u64,
        max_requests_jitter: int("max_requests_jitter") as u64,
        max_worker_rss: (int("max_worker_rss") as u64) << 20,
        pidfile: text("pidfile"),
        daemon: flag("daemon"),
        user,
        group,
        initgroups: flag("initgroups"),
        umask: int("umask") as u32,
        app,
        binds,
        workers: int("workers") as usize,
        chdir,
        pythonpath: text("pythonpath")
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        keep_alive: int("keepalive") as u32,
        backlog: int("backlog") as i32,
        reuse_port: flag("reuse_port"),
        pin_workers: flag("pin_workers"),
        io_engine,
        graceful_timeout: int("graceful_timeout") as u32,
        worker_connections: int("worker_connections") as usize,
        log_level,
        forwarded_allow_ips,
        proxy_allow_from,
        http: Arc::new(http),
        tls,
        http2,
        threads: int("threads") as usize,
        worker_class: text("worker_class").unwrap_or_else(|| "sync".into()),
        sendfile: flag("sendfile"),
        raw_env,
        log,
        config_file,
        hooks: Arc::new(hooks),
        settings: Arc::new(resolved),
        metrics_bind,
        interface,
        asgi_loop,
        asgi_lifespan,
        asgi_disconnect_grace_period: std::time::Duration::from_secs(int(
            "asgi_disconnect_grace_period",
        ) as u64),
        root_path,
        paste: paste.map(|(p, _)| p),
        preload_app: flag("preload_app"),
        websocket_max_message_size: int("websocket_max_message_size") as u64,
        ws_ping_interval: std::time::Duration::from_secs(int("ws_ping_interval") as u64),
        ws_ping_timeout: std::time::Duration::from_secs(int("ws_ping_timeout") as u64),
        ws_per_message_deflate: flag("ws_per_message_deflate"),
    })
}

/// `--paste FILE[#SECTION]` and `--paste-global`: the loadapp URI (the file
/// made absolute, as gunicorn does, against the directory the server
/// started in) and the file itself, which must exist.
fn paste(r: &Resolved, spec: &str) -> Result<(Paste, String), String> {
    let (file, section) = match spec.split_once('#') {
        Some((f, s)) => (f, Some(s)),
        None => (spec, None),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let path = cwd.join(file);
    if !path.is_file() {
        return Err(bad(
            r,
            "paste",
            spec,
            "expected an existing PasteDeploy ini file",
        ));
    }
    let file = path.to_string_lossy().into_owned();
    let uri = match section {
        Some(s) => format!("config:{file}#{s}"),
        None => format!("config:{file}"),
    };
    let mut global_conf = Vec::new();
    for entry in r.get("raw_paste_global_conf").as_list() {
        let Some((k, v)) = split_unescaped_eq(entry) else {
            return Err(bad(r, "raw_paste_global_conf", entry, "expected KEY=VALUE"));
        };
        global_conf.push((k.replace("\\=", "="), v.replace("\\=", "=")));
    }
    Ok((Paste { uri, global_conf }, file))
}

/// `KEY=VALUE` split at the first `=` not preceded by a backslash
/// (gunicorn's `re.split(r'(?<!\\)=', s, 1)`).
fn split_unescaped_eq(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let i = (0..b.len()).find(|&i| b[i] == b'=' && (i == 0 || b[i - 1] != b'\\'))?;
    Some((&s[..i], &s[i + 1..]))
}

/// The ini file has a `[loggers]` section (then it configures logging).
fn ini_has_loggers(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.trim() == "[loggers]"))
        .unwrap_or(false)
}

/// The directory for request bodies over `body_buffer_size`:
/// `body_temp_dir`, else `worker_tmp_dir`, else the system's. A directory
/// given in the settings must take a file now; the system's only warns, for
/// a server that never gets a large body needs none.
fn body_temp_files(
    r: &Resolved,
    chdir: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<dyn http::TempFiles>>, String> {
    if r.get("body_buffer_size").as_int() == 0 {
        return Ok(None);
    }
    let given = ["body_temp_dir", "worker_tmp_dir"]
        .into_iter()
        .find_map(|name| Some((name, r.get(name).as_str()?.to_string())));
    let dir = match &given {
        Some((_, dir)) => PathBuf::from(dir),
        None => std::env::temp_dir(),
    };
    // Workers run in `chdir`: resolve against it now, before it applies.
    let dir = if dir.is_relative() {
        let cwd = std::env::current_dir().unwrap_or_default();
        cwd.join(chdir.unwrap_or(".")).join(dir)
    } else {
        dir
    };
    let temp = temp_dir::BodyTempDir::new(dir);
    if let Err(e) = http::TempFiles::create(&temp) {
        match &given {
            Some((name, shown)) => {
                return Err(bad(
                    r,
                    name,
                    shown,
                    format!("expected a directory where temporary files can be created ({e})"),
                ))
            }
            None => warnings.push(format!(
                "Request bodies over --body-buffer-size will be answered 500: \
                 cannot create a temporary file in {} ({e}); set --body-temp-dir",
                temp.path().display()
            )),
        }
    }
    Ok(Some(Arc::new(temp)))
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

/// A user name or uid → (uid, name).
fn lookup_user(spec: &str) -> Result<(u32, String), String> {
    let found = match spec.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(spec),
    };
    match found {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.name)),
        Ok(None) => match spec.parse::<u32>() {
            Ok(uid) => Ok((uid, spec.to_string())),
            Err(_) => Err("no such user".into()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// A group name or gid → gid.
fn lookup_group(spec: &str) -> Result<u32, String> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err("no such group".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
