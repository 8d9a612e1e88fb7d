//! The settings table: one row per setting, gunicorn's names, flags and
//! defaults. The command line, `--print-config`, the config-file loader and
//! `docs/settings.md` are all generated from `SETTINGS`; adding a setting is
//! adding a row (and, if ferrocorn acts on it, reading it in `resolve`).

/// The sections of `--help` and of the settings reference, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    ConfigFile,
    Debugging,
    Logging,
    ProcessNaming,
    Ssl,
    Security,
    ServerMechanics,
    ServerSocket,
    WorkerProcesses,
    ServerHooks,
    Http2,
}

impl Section {
    pub const ALL: [Section; 11] = [
        Section::ConfigFile,
        Section::ServerSocket,
        Section::WorkerProcesses,
        Section::Security,
        Section::Debugging,
        Section::ServerMechanics,
        Section::Logging,
        Section::ProcessNaming,
        Section::Ssl,
        Section::Http2,
        Section::ServerHooks,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::ConfigFile => "Config File",
            Section::Debugging => "Debugging",
            Section::Logging => "Logging",
            Section::ProcessNaming => "Process Naming",
            Section::Ssl => "SSL",
            Section::Security => "Security",
            Section::ServerMechanics => "Server Mechanics",
            Section::ServerSocket => "Server Socket",
            Section::WorkerProcesses => "Worker Processes",
            Section::ServerHooks => "Server Hooks",
            Section::Http2 => "HTTP/2",
        }
    }
}

/// What a setting's value is, and so how a value from any source is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A flag on the command line; `True`/`False` (or "true"/"false") elsewhere.
    Bool,
    /// A whole number within `min..=max` (decimal, or 0x/0o prefixed).
    Int { min: i64, max: i64 },
    /// Any string (unset when the default is `Default::None`).
    Str,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// Repeatable on the command line; a string or a list of strings in a config file.
    List,
    /// A comma-separated list given as one string (or a list in a config file).
    CommaList,
    /// A dict of string to string (config file only).
    Dict,
    /// Any dict, kept as JSON text (config file only): `logconfig_dict`.
    Json,
    /// An octal file mode mask: 0o022, 022, 0x12 or 18.
    Octal,
    /// A user or group: a name or a number.
    Ident,
    /// A callable taking `min..=max` positional arguments (config file only).
    Hook { min: u8, max: u8 },
}

/// A default written into the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    None,
    Bool(bool),
    Int(i64),
    Str(&'static str),
    List(&'static [&'static str]),
    Dict(&'static [(&'static str, &'static str)]),
}

/// Whether ferrocorn acts on a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Accepted for gunicorn compatibility; setting it logs a warning with this reason.
    No(&'static str),
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// gunicorn's name: the config-file variable and the `--print-config` key.
    pub name: &'static str,
    pub section: Section,
    /// Command-line flags (`-b`, `--bind`); empty when the setting is config-file only.
    pub flags: &'static [&'static str],
    /// A flag that sets a `Bool` setting to false (`--no-reuse-port`).
    pub negative_flag: Option<&'static str>,
    /// Hidden extra spellings of the long flag.
    pub aliases: &'static [&'static str],
    /// For `Choice` with an optional value: what the bare flag means.
    pub bare_value: Option<&'static str>,
    /// An environment variable that provides the default (`WEB_CONCURRENCY`).
    pub env: Option<&'static str>,
    pub kind: Kind,
    pub default: Default,
    /// How `--help` names the value.
    pub meta: &'static str,
    /// One line for `--help` and the reference.
    pub doc: &'static str,
    pub support: Support,
}

const BASE: Setting = Setting {
    name: "",
    section: Section::ServerMechanics,
    flags: &[],
    negative_flag: None,
    aliases: &[],
    bare_value: None,
    env: None,
    kind: Kind::Str,
    default: Default::None,
    meta: "STRING",
    doc: "",
    support: Support::Yes,
};

const fn uint(max: i64) -> Kind {
    Kind::Int { min: 0, max }
}

const fn hook(arity: u8) -> Kind {
    Kind::Hook {
        min: arity,
        max: arity,
    }
}

/// 2^31-1: the largest count or number of seconds any setting needs.
const INT_MAX: i64 = i32::MAX as i64;

const NO_TLS: Support = Support::No("ferrocorn's TLS (rustls) has no equivalent");
const NO_DIRTY: Support = Support::No("dirty arbiters are not implemented");

use crate::log::access;
use Section as S;

/// Every setting, in the order of the reference and `--print-config`.
pub static SETTINGS: &[Setting] = TABLE;

const TABLE: &[Setting] = &[
    // Config file
    Setting {
        name: "config",
        section: S::ConfigFile,
        flags: &["-c", "--config"],
        meta: "CONFIG",
        doc: "The config file: PATH, file:PATH or python:MODULE. Default ./ferrocorn.conf.py, else ./gunicorn.conf.py, when it exists.",
        ..BASE
    },
    Setting {
        name: "wsgi_app",
        section: S::ConfigFile,
        doc: "The app (MODULE:NAME) when no APP_MODULE is given on the command line.",
        ..BASE
    },
    // Server socket
    Setting {
        name: "bind",
        section: S::ServerSocket,
        flags: &["-b", "--bind"],
        kind: Kind::List,
        default: Default::List(&["127.0.0.1:8000"]),
        env: Some("PORT"),
        meta: "ADDRESS",
        doc: "A socket to bind: HOST, HOST:PORT, [IPV6]:PORT, unix:PATH or fd://FD. Repeatable. With $PORT set the default is 0.0.0.0:$PORT.",
        ..BASE
    },
    Setting {
        name: "backlog",
        section: S::ServerSocket,
        flags: &["--backlog"],
        kind: Kind::Int { min: 1, max: 65535 },
        default: Default::Int(2048),
        meta: "INT",
        doc: "The listen() backlog: connections the kernel queues before accept.",
        ..BASE
    },
    Setting {
        name: "reuse_port",
        section: S::ServerSocket,
        flags: &["--reuse-port"],
        negative_flag: Some("--no-reuse-port"),
        kind: Kind::Bool,
        default: Default::Bool(true),
        meta: "",
        doc: "One SO_REUSEPORT listening socket per worker (the default for TCP on Linux); --no-reuse-port shares one socket.",
        ..BASE
    },
    // Worker processes
    Setting {
        name: "pin_workers",
        section: S::WorkerProcesses,
        flags: &["--pin-workers"],
        negative_flag: Some("--no-pin-workers"),
        kind: Kind::Bool,
        default: Default::Bool(true),
        meta: "",
        doc: "Pin each worker to one CPU, round-robin over the CPUs the process may use; --no-pin-workers leaves scheduling to the kernel (containers limited by a CPU quota rather than a CPU set).",
        ..BASE
    },
    Setting {
        name: "workers",
        section: S::WorkerProcesses,
        flags: &["-w", "--workers"],
        env: Some("WEB_CONCURRENCY"),
        kind: Kind::Int { min: 1, max: 4096 },
        default: Default::Int(1),
        meta: "INT",
        doc: "The number of worker processes. Default $WEB_CONCURRENCY, else 1.",
        ..BASE
    },
    Setting {
        name: "worker_class",
        section: S::WorkerProcesses,
        flags: &["-k", "--worker-class"],
        default: Default::Str("sync"),
        doc: "The worker type. `sync`: the app is called on the worker's event-loop thread, \
              one request at a time per worker. `gthread`: app threads (see --threads; `sync` \
              with --threads above 1 is the same). `gevent` (`gevent_wsgi` and `gevent_pywsgi` \
              are the same): gevent patches the standard library before the app is imported \
              and each request runs as a greenlet on a gevent hub, at most \
              --worker-connections at a time; needs the gevent package. `asgi`, \
              `uvicorn.workers.UvicornWorker`, `uvicorn.workers.UvicornH11Worker`: the app is an \
              ASGI app (--interface asgi).",
        ..BASE
    },
    Setting {
        name: "threads",
        section: S::WorkerProcesses,
        flags: &["--threads"],
        kind: Kind::Int { min: 1, max: 4096 },
        default: Default::Int(1),
        meta: "INT",
        doc: "Threads per worker that run the app (gthread). Above 1 (or with -k gthread) the \
              worker's loop thread keeps all network I/O and hands complete requests to this many \
              app threads; wsgi.multithread is then true.",
        ..BASE
    },
    Setting {
        name: "worker_connections",
        section: S::WorkerProcesses,
        flags: &["--worker-connections"],
        kind: Kind::Int { min: 1, max: 1_000_000 },
        default: Default::Int(1000),
        meta: "INT",
        doc: "The maximum number of open client connections per worker; with -k gevent also \
              the most requests running as greenlets at once.",
        ..BASE
    },
    Setting {
        name: "max_requests",
        section: S::WorkerProcesses,
        flags: &["--max-requests"],
        kind: uint(i64::MAX),
        default: Default::Int(0),
        meta: "INT",
        doc: "Restart a worker after it has handled this many requests (0 = never).",
        ..BASE
    },
    Setting {
        name: "max_requests_jitter",
        section: S::WorkerProcesses,
        flags: &["--max-requests-jitter"],
        kind: uint(i64::MAX),
        default: Default::Int(0),
        meta: "INT",
        doc: "Add a random 0..=N to each worker's max_requests, so workers do not restart together.",
        ..BASE
    },
    Setting {
        name: "max_worker_rss",
        section: S::WorkerProcesses,
        flags: &["--max-worker-rss"],
        kind: uint(i64::MAX >> 20),
        default: Default::Int(0),
        meta: "MiB",
        doc: "Replace a worker whose resident memory (RSS) passes this many MiB, checked four times a second, as --max-requests does (0 = never).",
        ..BASE
    },
    Setting {
        name: "timeout",
        section: S::WorkerProcesses,
        flags: &["-t", "--timeout"],
        kind: uint(INT_MAX),
        default: Default::Int(30),
        meta: "INT",
        doc: "Workers silent (or stuck in one app call) for more than this many seconds are killed and replaced, and an HTTP/2 client has this long to answer our PING. 0 disables both.",
        ..BASE
    },
    Setting {
        name: "graceful_timeout",
        section: S::WorkerProcesses,
        flags: &["--graceful-timeout"],
        kind: uint(INT_MAX),
        default: Default::Int(30),
        meta: "INT",
        doc: "Seconds workers get to finish in-flight requests after TERM before they are killed.",
        ..BASE
    },
    Setting {
        name: "keepalive",
        section: S::WorkerProcesses,
        flags: &["--keep-alive"],
        kind: uint(INT_MAX),
        default: Default::Int(2),
        meta: "INT",
        doc: "Seconds to wait for the next request on a kept-alive connection (0 disables keep-alive); an HTTP/2 connection with streams open whose client is silent this long (at least 1 s) gets a PING.",
        ..BASE
    },
    Setting {
        name: "io_engine",
        section: S::WorkerProcesses,
        flags: &["--io-engine"],
        env: Some("FERROCORN_IO_ENGINE"),
        kind: Kind::Choice(&["auto", "uring", "epoll"]),
        default: Default::Str("auto"),
        meta: "ENGINE",
        doc: "The io engine of each worker: auto (io_uring when the kernel allows it, else epoll), uring or epoll. ferrocorn only.",
        ..BASE
    },
    Setting {
        name: "asgi_loop",
        section: S::WorkerProcesses,
        flags: &["--asgi-loop"],
        kind: Kind::Choice(&["auto", "asyncio", "uvloop"]),
        default: Default::Str("auto"),
        meta: "LOOP",
        doc: "The event loop of ASGI workers: auto (uvloop when it can be imported, else asyncio), asyncio or uvloop.",
        ..BASE
    },
    Setting {
        name: "asgi_lifespan",
        section: S::WorkerProcesses,
        flags: &["--asgi-lifespan"],
        kind: Kind::Choice(&["auto", "on", "off"]),
        default: Default::Str("auto"),
        meta: "MODE",
        doc: "ASGI lifespan protocol: auto (run it; an app that does not speak it is served anyway), on (an app that fails it stops the worker) or off.",
        ..BASE
    },
    Setting {
        name: "asgi_disconnect_grace_period",
        section: S::WorkerProcesses,
        flags: &["--asgi-disconnect-grace-period"],
        kind: uint(INT_MAX),
        default: Default::Int(3),
        meta: "INT",
        doc: "Seconds an ASGI app gets after a client disconnects before it is cancelled.",
        ..BASE
    },
    Setting {
        name: "interface",
        section: S::WorkerProcesses,
        flags: &["--interface"],
        kind: Kind::Choice(&["auto", "wsgi", "asgi"]),
        default: Default::Str("auto"),
        meta: "INTERFACE",
        doc: "The protocol the app speaks: auto (ASGI when the app object is a coroutine function or its __call__ is one, else WSGI), wsgi or asgi. -k asgi and -k uvicorn.workers.UvicornWorker mean asgi. ferrocorn only.",
        ..BASE
    },
    Setting {
        name: "websocket_max_message_size",
        section: S::WorkerProcesses,
        flags: &["--websocket-max-message-size"],
        kind: uint(i64::MAX),
        default: Default::Int(16 * 1024 * 1024),
        meta: "INT",
        doc: "The largest WebSocket message accepted, in bytes after decompression (0 = no limit); a larger one closes the connection with 1009.",
        ..BASE
    },
    Setting {
        name: "ws_ping_interval",
        section: S::WorkerProcesses,
        flags: &["--ws-ping-interval"],
        kind: uint(INT_MAX),
        default: Default::Int(20),
        meta: "INT",
        doc: "Seconds between the pings a worker sends on an open WebSocket (0 = none; uvicorn's setting).",
        ..BASE
    },
    Setting {
        name: "ws_ping_timeout",
        section: S::WorkerProcesses,
        flags: &["--ws-ping-timeout"],
        kind: uint(INT_MAX),
        default: Default::Int(20),
        meta: "INT",
        doc: "Seconds a WebSocket peer has to answer a ping before the connection is closed with 1011 (0 = wait forever; uvicorn's setting).",
        ..BASE
    },
    Setting {
        name: "ws_per_message_deflate",
        section: S::WorkerProcesses,
        flags: &["--ws-per-message-deflate"],
        negative_flag: Some("--no-ws-per-message-deflate"),
        kind: Kind::Bool,
        default: Default::Bool(true),
        meta: "",
        doc: "Accept a WebSocket client's permessage-deflate offer (RFC 7692; uvicorn's setting).",
        ..BASE
    },
    Setting {
        name: "http_parser",
        section: S::WorkerProcesses,
        flags: &["--http-parser"],
        kind: Kind::Choice(&["auto", "fast", "python"]),
        default: Default::Str("auto"),
        doc: "gunicorn's parser choice; ferrocorn always uses its own parser.",
        support: Support::No("ferrocorn always uses its own parser"),
        ..BASE
    },
    // Security
    Setting {
        name: "limit_request_line",
        section: S::Security,
        flags: &["--limit-request-line"],
        kind: uint(INT_MAX),
        default: Default::Int(4094),
        meta: "INT",
        doc: "Max bytes in the request line (0 = unlimited, capped at 8190). Longer: 414.",
        ..BASE
    },
    Setting {
        name: "limit_request_fields",
        section: S::Security,
        flags: &["--limit-request-fields"],
        kind: uint(INT_MAX),
        default: Default::Int(100),
        meta: "INT",
        doc: "Max number of request header fields (0 or over 32768 = 32768). More: 431.",
        ..BASE
    },
    Setting {
        name: "limit_request_field_size",
        section: S::Security,
        flags: &["--limit-request-field_size"],
        aliases: &["--limit-request-field-size"],
        kind: uint(INT_MAX),
        default: Default::Int(8190),
        meta: "INT",
        doc: "Max bytes of one request header line (0 = 8190). Longer: 431.",
        ..BASE
    },
    Setting {
        name: "limit_request_body",
        section: S::Security,
        flags: &["--limit-request-body"],
        kind: uint(i64::MAX),
        default: Default::Int(0),
        meta: "INT",
        doc: "Max bytes of a request body (0 = unlimited). Larger: 413, before the body is read.",
        ..BASE
    },
    Setting {
        name: "header_timeout",
        section: S::Security,
        flags: &["--header-timeout"],
        kind: Kind::Int { min: 1, max: 86400 },
        default: Default::Int(30),
        meta: "INT",
        doc: "Seconds a client gets to send a whole request head, from its first byte; then 408.",
        ..BASE
    },
    Setting {
        name: "body_timeout",
        section: S::Security,
        flags: &["--body-timeout"],
        kind: Kind::Int { min: 1, max: 86400 },
        default: Default::Int(60),
        meta: "INT",
        doc: "Seconds a request body may go without a byte arriving (then 408, or RST_STREAM on HTTP/2), and an HTTP/2 response may wait on a shut flow-control window (then RST_STREAM).",
        ..BASE
    },
    Setting {
        name: "max_queued_requests",
        section: S::Security,
        flags: &["--max-queued-requests"],
        kind: uint(1_000_000),
        default: Default::Int(0),
        meta: "INT",
        doc: "Admission control: 503 with Retry-After, without calling the app, once this many requests wait in a worker (0 = off).",
        ..BASE
    },
    Setting {
        name: "max_queue_wait_ms",
        section: S::Security,
        flags: &["--max-queue-wait-ms"],
        kind: uint(3_600_000),
        default: Default::Int(0),
        meta: "MS",
        doc: "Admission control: 503 with Retry-After for a request that waited this many milliseconds for its turn (0 = off).",
        ..BASE
    },
    // Debugging
    Setting {
        name: "reload",
        section: S::Debugging,
        flags: &["--reload"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Restart workers when code changes (development only).",
        support: Support::Yes,
        ..BASE
    },
    Setting {
        name: "reload_engine",
        section: S::Debugging,
        flags: &["--reload-engine"],
        kind: Kind::Choice(&["auto", "poll", "inotify"]),
        default: Default::Str("auto"),
        doc: "How --reload watches files.",
        support: Support::No("ferrocorn's reloader always uses inotify and a once-a-second poll together"),
        ..BASE
    },
    Setting {
        name: "reload_extra_files",
        section: S::Debugging,
        flags: &["--reload-extra-file"],
        kind: Kind::List,
        default: Default::List(&[]),
        meta: "FILES",
        doc: "Extra files or glob patterns --reload watches.",
        support: Support::Yes,
        ..BASE
    },
    Setting {
        name: "spew",
        section: S::Debugging,
        flags: &["--spew"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Trace every executed Python line.",
        support: Support::No("line tracing is not implemented"),
        ..BASE
    },
    Setting {
        name: "check_config",
        section: S::Debugging,
        flags: &["--check-config"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Check the configuration and that the app imports, then exit 0 (fine) or 1.",
        ..BASE
    },
    Setting {
        name: "print_config",
        section: S::Debugging,
        flags: &["--print-config"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Print every setting as resolved from all sources, then exit 0.",
        ..BASE
    },
    // Server mechanics
    Setting {
        name: "preload_app",
        section: S::ServerMechanics,
        flags: &["--preload"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Import the app once in the master before forking, so workers share its memory; HUP then re-forks from it (new code needs USR2).",
        ..BASE
    },
    Setting {
        name: "sendfile",
        section: S::ServerMechanics,
        negative_flag: Some("--no-sendfile"),
        env: Some("SENDFILE"),
        kind: Kind::Bool,
        default: Default::Bool(true),
        doc: "Send wsgi.file_wrapper responses with sendfile(); --no-sendfile (or SENDFILE=0) turns it off.",
        ..BASE
    },
    Setting {
        name: "chdir",
        section: S::ServerMechanics,
        flags: &["--chdir"],
        meta: "DIR",
        doc: "Change to this directory before loading the app (it is also put first on sys.path).",
        ..BASE
    },
    Setting {
        name: "daemon",
        section: S::ServerMechanics,
        flags: &["-D", "--daemon"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Detach from the terminal and run in the background.",
        ..BASE
    },
    Setting {
        name: "raw_env",
        section: S::ServerMechanics,
        flags: &["-e", "--env"],
        kind: Kind::List,
        default: Default::List(&[]),
        meta: "ENV",
        doc: "KEY=VALUE: set an environment variable in the master, inherited by the workers. Repeatable.",
        ..BASE
    },
    Setting {
        name: "pidfile",
        section: S::ServerMechanics,
        flags: &["-p", "--pid"],
        meta: "FILE",
        doc: "Write the arbiter's PID to this file.",
        ..BASE
    },
    Setting {
        name: "worker_tmp_dir",
        section: S::ServerMechanics,
        flags: &["--worker-tmp-dir"],
        meta: "DIR",
        doc: "gunicorn's heartbeat file directory. ferrocorn's heartbeat is in shared memory; this directory is the default --body-temp-dir.",
        ..BASE
    },
    Setting {
        name: "body_buffer_size",
        section: S::ServerMechanics,
        flags: &["--body-buffer-size"],
        kind: uint(i64::MAX),
        default: Default::Int(1 << 20),
        meta: "BYTES",
        doc: "Request bodies up to this many bytes are kept in memory; larger ones go to an anonymous file in --body-temp-dir (0 = always in memory).",
        ..BASE
    },
    Setting {
        name: "body_temp_dir",
        section: S::ServerMechanics,
        flags: &["--body-temp-dir"],
        meta: "DIR",
        doc: "Directory for request bodies over --body-buffer-size (default: --worker-tmp-dir if set, else $TMPDIR or /tmp). Checked at start-up.",
        ..BASE
    },
    Setting {
        name: "user",
        section: S::ServerMechanics,
        flags: &["-u", "--user"],
        kind: Kind::Ident,
        meta: "USER",
        doc: "Run workers as this user (name or uid).",
        ..BASE
    },
    Setting {
        name: "group",
        section: S::ServerMechanics,
        flags: &["-g", "--group"],
        kind: Kind::Ident,
        meta: "GROUP",
        doc: "Run workers as this group (name or gid).",
        ..BASE
    },
    Setting {
        name: "umask",
        section: S::ServerMechanics,
        flags: &["-m", "--umask"],
        kind: Kind::Octal,
        default: Default::Int(0),
        meta: "INT",
        doc: "The umask for unix sockets the server creates (octal, e.g. 0o007 or 007).",
        ..BASE
    },
    Setting {
        name: "initgroups",
        section: S::ServerMechanics,
        flags: &["--initgroups"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Give workers the supplementary groups of --user.",
        ..BASE
    },
    Setting {
        name: "tmp_upload_dir",
        section: S::ServerMechanics,
        meta: "DIR",
        doc: "Unused in gunicorn too; accepted for compatibility.",
        support: Support::No("it has no effect in gunicorn either"),
        ..BASE
    },
    Setting {
        name: "secure_scheme_headers",
        section: S::ServerMechanics,
        kind: Kind::Dict,
        default: Default::Dict(&[
            ("X-FORWARDED-PROTOCOL", "ssl"),
            ("X-FORWARDED-PROTO", "https"),
            ("X-FORWARDED-SSL", "on"),
        ]),
        doc: "Headers (and their values) by which a trusted proxy says the request came over https.",
        ..BASE
    },
    Setting {
        name: "forwarded_allow_ips",
        section: S::ServerMechanics,
        flags: &["--forwarded-allow-ips"],
        env: Some("FORWARDED_ALLOW_IPS"),
        default: Default::Str("127.0.0.1,::1"),
        doc: "Peers trusted to set the scheme and forwarder headers: IPs, CIDRs or '*'.",
        ..BASE
    },
    Setting {
        name: "pythonpath",
        section: S::ServerMechanics,
        flags: &["--pythonpath"],
        doc: "Comma-separated directories to add to the Python path.",
        ..BASE
    },
    Setting {
        name: "paste",
        section: S::ServerMechanics,
        flags: &["--paste", "--paster"],
        meta: "FILE[#SECTION]",
        doc: "Load the app from a PasteDeploy ini file (its [app:main], or the section after #) instead of an app module; needs PasteDeploy installed.",
        ..BASE
    },
    Setting {
        name: "raw_paste_global_conf",
        section: S::ServerMechanics,
        flags: &["--paste-global"],
        kind: Kind::List,
        default: Default::List(&[]),
        meta: "CONF",
        doc: "PasteDeploy global variables (key=value; \\= for an = in the key), passed to the app's factory as global_conf.",
        ..BASE
    },
    Setting {
        name: "proxy_protocol",
        section: S::ServerMechanics,
        flags: &["--proxy-protocol"],
        kind: Kind::Choice(&["off", "v1", "v2", "auto", "true", "false"]),
        bare_value: Some("auto"),
        default: Default::Str("off"),
        meta: "MODE",
        doc: "Accept a PROXY protocol header: off, v1, v2 or auto (the bare flag means auto).",
        ..BASE
    },
    Setting {
        name: "proxy_allow_ips",
        section: S::ServerMechanics,
        flags: &["--proxy-allow-from"],
        default: Default::Str("127.0.0.1,::1"),
        doc: "Peers allowed to send a PROXY protocol header: IPs, CIDRs or '*'.",
        ..BASE
    },
    Setting {
        name: "protocol",
        section: S::ServerMechanics,
        flags: &["--protocol"],
        kind: Kind::Choice(&["http", "uwsgi"]),
        default: Default::Str("http"),
        doc: "The protocol of incoming connections.",
        support: Support::No("only http is implemented"),
        ..BASE
    },
    Setting {
        name: "uwsgi_allow_ips",
        section: S::ServerMechanics,
        flags: &["--uwsgi-allow-from"],
        default: Default::Str("127.0.0.1,::1"),
        doc: "Peers allowed to speak the uWSGI protocol.",
        support: Support::No("the uWSGI protocol is not implemented"),
        ..BASE
    },
    Setting {
        name: "permit_obsolete_folding",
        section: S::ServerMechanics,
        flags: &["--permit-obsolete-folding"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Accept obsolete line folding in request headers (joined with a space) instead of 400.",
        ..BASE
    },
    Setting {
        name: "strip_header_spaces",
        section: S::ServerMechanics,
        flags: &["--strip-header-spaces"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Strip spaces between a header name and the colon (dangerous: request smuggling).",
        ..BASE
    },
    Setting {
        name: "permit_unconventional_http_method",
        section: S::ServerMechanics,
        flags: &["--permit-unconventional-http-method"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Allow methods that are lower case, contain '#' or are not 3 to 20 characters long.",
        ..BASE
    },
    Setting {
        name: "permit_unconventional_http_version",
        section: S::ServerMechanics,
        flags: &["--permit-unconventional-http-version"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Allow HTTP versions other than 1.0 and 1.1.",
        ..BASE
    },
    Setting {
        name: "casefold_http_method",
        section: S::ServerMechanics,
        flags: &["--casefold-http-method"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Upper-case the request method.",
        ..BASE
    },
    Setting {
        name: "forwarder_headers",
        section: S::ServerMechanics,
        flags: &["--forwarder-headers"],
        kind: Kind::CommaList,
        default: Default::List(&["SCRIPT_NAME", "PATH_INFO"]),
        doc: "Underscore header names a trusted proxy may pass into the environ.",
        ..BASE
    },
    Setting {
        name: "header_map",
        section: S::ServerMechanics,
        flags: &["--header-map"],
        kind: Kind::Choice(&["drop", "refuse", "dangerous"]),
        default: Default::Str("drop"),
        meta: "MODE",
        doc: "Request header names containing '_': drop, refuse (400) or dangerous (pass on).",
        ..BASE
    },
    Setting {
        name: "root_path",
        section: S::ServerMechanics,
        flags: &["--root-path"],
        default: Default::Str(""),
        doc: "The ASGI root_path: the path prefix the app is mounted at behind a proxy (prepended to scope path and raw_path).",
        ..BASE
    },
    Setting {
        name: "control_socket",
        section: S::ServerMechanics,
        flags: &["--control-socket"],
        meta: "PATH",
        doc: "The unix socket ferrocorn ctl and gunicornc talk to. Default $XDG_RUNTIME_DIR/ferrocorn.ctl, else ~/.ferrocorn/ferrocorn.ctl.",
        ..BASE
    },
    Setting {
        name: "control_socket_mode",
        section: S::ServerMechanics,
        flags: &["--control-socket-mode"],
        kind: Kind::Octal,
        default: Default::Int(0o600),
        meta: "INT",
        doc: "The control socket's file mode (only the server's user and root are answered, whatever the mode).",
        ..BASE
    },
    Setting {
        name: "control_socket_disable",
        section: S::ServerMechanics,
        flags: &["--no-control-socket"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Do not open the control socket.",
        ..BASE
    },
    // Logging
    Setting {
        name: "accesslog",
        section: S::Logging,
        flags: &["--access-logfile"],
        meta: "FILE",
        doc: "The access log file ('-' = stdout). Off by default.",
        ..BASE
    },
    Setting {
        name: "disable_redirect_access_to_syslog",
        section: S::Logging,
        flags: &["--disable-redirect-access-to-syslog"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Keep access lines out of syslog.",
        ..BASE
    },
    Setting {
        name: "access_log_format",
        section: S::Logging,
        flags: &["--access-logformat"],
        default: Default::Str(access::DEFAULT_FORMAT),
        doc: "The access log line, with gunicorn's atoms: h l u t r s m U q H b B f a T M D L p {header}i {header}o {var}e.",
        ..BASE
    },
    Setting {
        name: "access_log_json",
        section: S::Logging,
        flags: &["--access-log-json"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Write the access log as one JSON object per line instead of access_log_format. ferrocorn only.",
        ..BASE
    },
    Setting {
        name: "errorlog",
        section: S::Logging,
        flags: &["--error-logfile", "--log-file"],
        default: Default::Str("-"),
        meta: "FILE",
        doc: "The error log file ('-' = stderr).",
        ..BASE
    },
    Setting {
        name: "loglevel",
        section: S::Logging,
        flags: &["--log-level"],
        kind: Kind::Choice(&["debug", "info", "warning", "error", "critical"]),
        default: Default::Str("info"),
        meta: "LEVEL",
        doc: "The error log level: debug, info, warning, error or critical.",
        ..BASE
    },
    Setting {
        name: "capture_output",
        section: S::Logging,
        flags: &["--capture-output"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Redirect stdout and stderr into the error log file.",
        ..BASE
    },
    Setting {
        name: "logger_class",
        section: S::Logging,
        flags: &["--logger-class"],
        default: Default::Str("gunicorn.glogging.Logger"),
        doc: "gunicorn's logger class; ferrocorn logs natively (use logconfig_dict to route through Python logging).",
        support: Support::No("custom logger classes are not supported; use logconfig_dict"),
        ..BASE
    },
    Setting {
        name: "logconfig",
        section: S::Logging,
        flags: &["--log-config"],
        meta: "FILE",
        doc: "A logging.config.fileConfig ini file: send the error and access logs through Python logging.",
        ..BASE
    },
    Setting {
        name: "logconfig_dict",
        section: S::Logging,
        kind: Kind::Json,
        default: Default::Dict(&[]),
        doc: "A logging.config.dictConfig dict (config file only); wins over logconfig and logconfig_json.",
        ..BASE
    },
    Setting {
        name: "logconfig_json",
        section: S::Logging,
        flags: &["--log-config-json"],
        meta: "FILE",
        doc: "A JSON file with a dictConfig dict: send the error and access logs through Python logging.",
        ..BASE
    },
    Setting {
        name: "syslog_addr",
        section: S::Logging,
        flags: &["--log-syslog-to"],
        default: Default::Str("udp://localhost:514"),
        meta: "SYSLOG_ADDR",
        doc: "Where syslog messages go: udp://HOST:PORT, unix://PATH[#dgram] or tcp://HOST:PORT.",
        ..BASE
    },
    Setting {
        name: "syslog",
        section: S::Logging,
        flags: &["--log-syslog"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Send the error log (and the access log, unless disabled) to syslog.",
        ..BASE
    },
    Setting {
        name: "syslog_prefix",
        section: S::Logging,
        flags: &["--log-syslog-prefix"],
        meta: "SYSLOG_PREFIX",
        doc: "The syslog program name becomes ferrocorn.PREFIX.",
        ..BASE
    },
    Setting {
        name: "syslog_facility",
        section: S::Logging,
        flags: &["--log-syslog-facility"],
        default: Default::Str("user"),
        meta: "SYSLOG_FACILITY",
        doc: "The syslog facility name.",
        ..BASE
    },
    Setting {
        name: "enable_stdio_inheritance",
        section: S::Logging,
        flags: &["-R", "--enable-stdio-inheritance"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Keep stdio open when daemonized.",
        support: Support::No("stdio inheritance is not implemented"),
        ..BASE
    },
    Setting {
        name: "statsd_host",
        section: S::Logging,
        flags: &["--statsd-host"],
        meta: "STATSD_ADDR",
        doc: "Send metrics to this StatsD server: HOST[:PORT] (default port 8125), [IPV6]:PORT or unix://PATH. gunicorn's metric names: gunicorn.requests, gunicorn.request.duration, gunicorn.request.status.<code>, gunicorn.workers, gunicorn.log.<level>.",
        ..BASE
    },
    Setting {
        name: "dogstatsd_tags",
        section: S::Logging,
        flags: &["--dogstatsd-tags"],
        default: Default::Str(""),
        meta: "DOGSTATSD_TAGS",
        doc: "Comma-separated dogstatsd tags (name:value) appended to every StatsD metric as |#tags.",
        ..BASE
    },
    Setting {
        name: "statsd_prefix",
        section: S::Logging,
        flags: &["--statsd-prefix"],
        default: Default::Str(""),
        meta: "STATSD_PREFIX",
        doc: "Prefix of every StatsD metric name (a trailing . is added).",
        ..BASE
    },
    Setting {
        name: "metrics_bind",
        section: S::Logging,
        flags: &["--metrics-bind"],
        meta: "HOST:PORT",
        doc: "Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) from the master on this TCP address (off by default).",
        ..BASE
    },
    Setting {
        name: "enable_backlog_metric",
        section: S::Logging,
        flags: &["--enable-backlog-metric"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Emit the socket backlog as a statsd metric.",
        support: Support::No("the listen backlog is not sampled for statsd"),
        ..BASE
    },
    // Process naming
    Setting {
        name: "proc_name",
        section: S::ProcessNaming,
        flags: &["-n", "--name"],
        doc: "The process title base: `ferrocorn: master [NAME]` (default: the app module).",
        ..BASE
    },
    Setting {
        name: "default_proc_name",
        section: S::ProcessNaming,
        default: Default::Str("ferrocorn"),
        doc: "Internal: the process title base when proc_name is not set (the app module).",
        ..BASE
    },
    // SSL
    Setting {
        name: "keyfile",
        section: S::Ssl,
        flags: &["--keyfile"],
        meta: "FILE",
        doc: "TLS: the PEM private key (default: read from certfile). Setting it or certfile serves HTTPS on every bind.",
        ..BASE
    },
    Setting {
        name: "certfile",
        section: S::Ssl,
        flags: &["--certfile"],
        meta: "FILE",
        doc: "TLS: the PEM certificate chain. Setting it (or keyfile) serves HTTPS on every bind.",
        ..BASE
    },
    Setting {
        name: "ssl_version",
        section: S::Ssl,
        flags: &["--ssl-version"],
        default: Default::Str("TLS"),
        doc: "Deprecated in gunicorn and ignored there too; ferrocorn offers TLS 1.2 and 1.3.",
        support: NO_TLS,
        ..BASE
    },
    Setting {
        name: "cert_reqs",
        section: S::Ssl,
        flags: &["--cert-reqs"],
        kind: uint(INT_MAX),
        default: Default::Int(0),
        meta: "INT",
        doc: "TLS client certificates: 0 not asked, 1 optional, 2 required (1 and 2 need ca_certs).",
        ..BASE
    },
    Setting {
        name: "ca_certs",
        section: S::Ssl,
        flags: &["--ca-certs"],
        meta: "FILE",
        doc: "TLS: CA certificates (PEM) that client certificates must chain to.",
        ..BASE
    },
    Setting {
        name: "suppress_ragged_eofs",
        section: S::Ssl,
        flags: &["--suppress-ragged-eofs"],
        kind: Kind::Bool,
        default: Default::Bool(true),
        doc: "Treat a TLS peer closing without close_notify as a clean end (always on in ferrocorn).",
        support: Support::No("a peer closing without close_notify always ends the connection cleanly"),
        ..BASE
    },
    Setting {
        name: "do_handshake_on_connect",
        section: S::Ssl,
        flags: &["--do-handshake-on-connect"],
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc: "Do the TLS handshake before the first read (ferrocorn always handshakes as data arrives).",
        support: NO_TLS,
        ..BASE
    },
    Setting {
        name: "ciphers",
        section: S::Ssl,
        flags: &["--ciphers"],
        meta: "LIST",
        doc: "TLS: allowed cipher suites, colon-separated (see docs/tls.md for the names).",
        ..BASE
    },
    // HTTP/2
    Setting {
        name: "http_protocols",
        section: S::Http2,
        flags: &["--http-protocols"],
        default: Default::Str("h1"),
        meta: "LIST",
        doc: "HTTP versions to offer, comma-separated, in ALPN preference order: h1, h2 (h2 needs TLS or --http2-cleartext).",
        ..BASE
    },
    Setting {
        name: "http2_cleartext",
        section: S::Http2,
        flags: &["--http2-cleartext"],
        kind: Kind::Choice(&["off", "prior-knowledge", "upgrade", "both", "true", "false"]),
        default: Default::Str("off"),
        doc: "Cleartext HTTP/2 (h2c), for peers in forwarded_allow_ips only: by the connection preface, by Upgrade: h2c, or both (true: prior-knowledge, false: off).",
        ..BASE
    },
    Setting {
        name: "http2_max_concurrent_streams",
        section: S::Http2,
        flags: &["--http2-max-concurrent-streams"],
        kind: Kind::Int {
            min: 1,
            max: INT_MAX,
        },
        default: Default::Int(100),
        meta: "INT",
        doc: "HTTP/2 streams a client may have open at once on one connection.",
        ..BASE
    },
    Setting {
        name: "http2_initial_window_size",
        section: S::Http2,
        flags: &["--http2-initial-window-size"],
        kind: uint(INT_MAX),
        default: Default::Int(65535),
        meta: "INT",
        doc: "HTTP/2 flow-control window for request bodies, per stream, in bytes (at most 2147483647).",
        ..BASE
    },
    Setting {
        name: "http2_max_frame_size",
        section: S::Http2,
        flags: &["--http2-max-frame-size"],
        kind: Kind::Int {
            min: 16384,
            max: 16_777_215,
        },
        default: Default::Int(16384),
        meta: "INT",
        doc: "Largest HTTP/2 frame payload accepted, 16384 to 16777215 bytes.",
        ..BASE
    },
    Setting {
        name: "http2_max_header_list_size",
        section: S::Http2,
        flags: &["--http2-max-header-list-size"],
        kind: uint(INT_MAX),
        default: Default::Int(65536),
        meta: "INT",
        doc: "Largest HTTP/2 request header list after HPACK decoding, in bytes (0: no limit but 1 MiB of encoded block).",
        ..BASE
    },
    Setting {
        name: "dirty_apps",
        section: S::WorkerProcesses,
        flags: &["--dirty-app"],
        kind: Kind::List,
        default: Default::List(&[]),
        doc: "gunicorn dirty-arbiter apps.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_workers",
        section: S::WorkerProcesses,
        flags: &["--dirty-workers"],
        kind: uint(INT_MAX),
        default: Default::Int(0),
        meta: "INT",
        doc: "gunicorn dirty-arbiter pool size.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_timeout",
        section: S::WorkerProcesses,
        flags: &["--dirty-timeout"],
        kind: uint(INT_MAX),
        default: Default::Int(300),
        meta: "INT",
        doc: "gunicorn dirty-arbiter task timeout.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_threads",
        section: S::WorkerProcesses,
        flags: &["--dirty-threads"],
        kind: uint(INT_MAX),
        default: Default::Int(1),
        meta: "INT",
        doc: "gunicorn dirty-arbiter threads per worker.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_graceful_timeout",
        section: S::WorkerProcesses,
        flags: &["--dirty-graceful-timeout"],
        kind: uint(INT_MAX),
        default: Default::Int(30),
        meta: "INT",
        doc: "gunicorn dirty-arbiter shutdown grace.",
        support: NO_DIRTY,
        ..BASE
    },
    // Server hooks
    Setting {
        name: "on_starting",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "on_starting(server): in the master, before the listeners are opened.",
        ..BASE
    },
    Setting {
        name: "on_reload",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "on_reload(server): in the master, on HUP, before the new workers start.",
        ..BASE
    },
    Setting {
        name: "when_ready",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "when_ready(server): in the master, once the listeners are open.",
        ..BASE
    },
    Setting {
        name: "pre_fork",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "pre_fork(server, worker): in the master, just before a worker is forked.",
        ..BASE
    },
    Setting {
        name: "post_fork",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "post_fork(server, worker): in the worker, just after the fork. An exception stops the worker (boot error).",
        ..BASE
    },
    Setting {
        name: "post_worker_init",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "post_worker_init(worker): in the worker, once the app is loaded. An exception stops the worker (boot error).",
        ..BASE
    },
    Setting {
        name: "worker_int",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "worker_int(worker): in the worker, on INT or QUIT.",
        ..BASE
    },
    Setting {
        name: "worker_abort",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "worker_abort(worker): in the worker, on ABRT (a timeout).",
        ..BASE
    },
    Setting {
        name: "pre_exec",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "pre_exec(server): in the new master of a USR2 upgrade, before exec.",
        ..BASE
    },
    Setting {
        name: "pre_request",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "pre_request(worker, req): in the worker, before the app is called. An exception answers 500.",
        ..BASE
    },
    Setting {
        name: "post_request",
        section: S::ServerHooks,
        kind: Kind::Hook { min: 2, max: 4 },
        doc: "post_request(worker, req[, environ[, resp]]): in the worker, after the response is sent.",
        ..BASE
    },
    Setting {
        name: "child_exit",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "child_exit(server, worker): in the master, after a worker exited.",
        ..BASE
    },
    Setting {
        name: "worker_exit",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "worker_exit(server, worker): in the worker, just before it exits.",
        ..BASE
    },
    Setting {
        name: "nworkers_changed",
        section: S::ServerHooks,
        kind: hook(3),
        doc: "nworkers_changed(server, new_value, old_value): in the master, when TTIN/TTOU/HUP change the count.",
        ..BASE
    },
    Setting {
        name: "on_exit",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "on_exit(server): in the master, just before it exits.",
        ..BASE
    },
    Setting {
        name: "ssl_context",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "ssl_context(config, default_ssl_context_factory): build the SSLContext.",
        support: NO_TLS,
        ..BASE
    },
    Setting {
        name: "on_dirty_starting",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "gunicorn dirty-arbiter hook.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_post_fork",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "gunicorn dirty-arbiter hook.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_worker_init",
        section: S::ServerHooks,
        kind: hook(1),
        doc: "gunicorn dirty-arbiter hook.",
        support: NO_DIRTY,
        ..BASE
    },
    Setting {
        name: "dirty_worker_exit",
        section: S::ServerHooks,
        kind: hook(2),
        doc: "gunicorn dirty-arbiter hook.",
        support: NO_DIRTY,
        ..BASE
    },
];

/// The row named `name`.
pub fn find(name: &str) -> Option<(usize, &'static Setting)> {
    SETTINGS.iter().enumerate().find(|(_, s)| s.name == name)
}

/// The index of a setting known to be in the table (a name written in this crate).
/// A row of the table. Written `id!(workers)`, the name is checked when
/// the crate builds: a misspelt one fails the build instead of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(u16);

impl Id {
    /// The row named `name`. In a const context (as `id!` uses it) a name
    /// that is not in the table is a build error; called at run time (with
    /// names from a fixed list, such as the hooks'), it panics.
    pub const fn named(name: &str) -> Id {
        let mut i = 0;
        while i < TABLE.len() {
            if same(TABLE[i].name.as_bytes(), name.as_bytes()) {
                return Id(i as u16);
            }
            i += 1;
        }
        panic!("no setting with this name in the table");
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn setting(self) -> &'static Setting {
        &SETTINGS[self.index()]
    }
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The table row of a setting, by its name as written in the table:
/// `id!(max_requests)`; an unknown name fails the build.
macro_rules! id {
    ($name:ident) => {{
        const ID: $crate::config::settings::Id =
            $crate::config::settings::Id::named(stringify!($name));
        ID
    }};
}
pub(crate) use id;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_name_their_rows() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert_eq!(Id::named(s.name).index(), i);
            assert_eq!(Id::named(s.name).setting().name, s.name);
        }
        assert_eq!(id!(workers).setting().flags, &["-w", "--workers"]);
    }

    #[test]
    #[should_panic(expected = "no setting with this name")]
    fn an_unknown_name_has_no_id() {
        let name = String::from("wokers");
        Id::named(&name);
    }

    #[test]
    fn names_and_flags_are_unique() {
        let mut names = HashSet::new();
        let mut flags = HashSet::new();
        for s in SETTINGS {
            assert!(names.insert(s.name), "duplicate setting {}", s.name);
            for f in s
                .flags
                .iter()
                .chain(s.aliases)
                .chain(s.negative_flag.iter())
            {
                assert!(flags.insert(*f), "duplicate flag {f}");
            }
        }
    }

    #[test]
    fn every_row_has_a_one_line_doc() {
        for s in SETTINGS {
            assert!(!s.doc.is_empty() && !s.doc.contains('\n'), "{}", s.name);
        }
    }

    #[test]
    fn hooks_have_no_flag_and_no_default() {
        for s in SETTINGS
            .iter()
            .filter(|s| matches!(s.kind, Kind::Hook { .. }))
        {
            assert!(s.flags.is_empty(), "{}", s.name);
            assert_eq!(s.default, Default::None, "{}", s.name);
        }
    }

    #[test]
    fn every_gunicorn_setting_has_a_row() {
        // gunicorn 27's settings (dirty and control-socket ones included).
        let gunicorn = "config wsgi_app bind backlog workers worker_class threads \
            worker_connections max_requests max_requests_jitter timeout graceful_timeout \
            keepalive asgi_loop asgi_lifespan asgi_disconnect_grace_period \
            websocket_max_message_size http_parser limit_request_line limit_request_fields \
            limit_request_field_size reload reload_engine reload_extra_files spew \
            check_config print_config preload_app sendfile reuse_port chdir daemon raw_env \
            pidfile worker_tmp_dir user group umask initgroups tmp_upload_dir \
            secure_scheme_headers forwarded_allow_ips pythonpath paste raw_paste_global_conf \
            proxy_protocol proxy_allow_ips protocol uwsgi_allow_ips permit_obsolete_folding \
            strip_header_spaces permit_unconventional_http_method \
            permit_unconventional_http_version casefold_http_method forwarder_headers \
            header_map root_path accesslog disable_redirect_access_to_syslog \
            access_log_format errorlog loglevel capture_output logger_class logconfig \
            logconfig_dict logconfig_json syslog_addr syslog syslog_prefix syslog_facility \
            enable_stdio_inheritance statsd_host dogstatsd_tags statsd_prefix \
            enable_backlog_metric proc_name default_proc_name keyfile certfile ssl_version \
            cert_reqs ca_certs suppress_ragged_eofs do_handshake_on_connect ciphers \
            http_protocols http2_cleartext http2_max_concurrent_streams \
            http2_initial_window_size http2_max_frame_size http2_max_header_list_size \
            on_starting on_reload when_ready pre_fork post_fork post_worker_init worker_int \
            worker_abort pre_exec pre_request post_request child_exit worker_exit \
            nworkers_changed on_exit ssl_context dirty_apps dirty_workers dirty_timeout \
            dirty_threads dirty_graceful_timeout on_dirty_starting dirty_post_fork \
            dirty_worker_init dirty_worker_exit control_socket control_socket_mode \
            control_socket_disable";
        for name in gunicorn.split_whitespace() {
            assert!(find(name).is_some(), "no row for gunicorn's {name}");
        }
    }
}
