//! The command line: gunicorn's flag names, defaults and environment variables.
//!
//! clap reports usage errors (unknown flags, bad values) with exit code 2.

use clap::{ArgAction, Parser};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ferrocorn",
    version = crate::VERSION,
    about = "A pre-fork HTTP server for Python WSGI applications, with gunicorn's command line.",
    after_help = "APP_MODULE is MODULE:NAME, MODULE (meaning MODULE:application) or MODULE:factory(ARGS).",
    disable_version_flag = true
)]
pub struct Cli {
    /// The WSGI application: `module:callable`, `module` or `module:factory()`.
    #[arg(value_name = "APP_MODULE")]
    pub app: Option<String>,

    /// The socket to bind: HOST, HOST:PORT, [IPV6]:PORT or unix:PATH. Repeatable.
    /// Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set.
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", action = ArgAction::Append)]
    pub bind: Vec<String>,

    /// The number of worker processes. Default $WEB_CONCURRENCY, else 1.
    #[arg(short = 'w', long = "workers", value_name = "INT", env = "WEB_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,

    /// Change to this directory before loading the app (it is also put first on sys.path).
    #[arg(long = "chdir", value_name = "DIR")]
    pub chdir: Option<String>,

    /// Comma-separated directories to add to the Python path.
    #[arg(long = "pythonpath", value_name = "STRING")]
    pub pythonpath: Option<String>,

    /// Seconds to wait for the next request on a kept-alive connection (0 disables keep-alive).
    #[arg(long = "keep-alive", value_name = "INT", default_value_t = 2)]
    pub keep_alive: u32,

    /// The listen() backlog: connections the kernel queues before accept.
    #[arg(long = "backlog", value_name = "INT", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,

    /// One SO_REUSEPORT listening socket per worker (the default for TCP on Linux).
    #[arg(long = "reuse-port", overrides_with = "no_reuse_port")]
    pub reuse_port: bool,

    /// One listening socket shared by all workers instead of one per worker.
    #[arg(long = "no-reuse-port")]
    pub no_reuse_port: bool,

    /// The io engine of each worker: auto (io_uring when the kernel allows it, else epoll), uring or epoll.
    #[arg(long = "io-engine", value_name = "ENGINE", env = "FERROCORN_IO_ENGINE",
          default_value = "auto", value_parser = ["auto", "uring", "epoll"])]
    pub io_engine: String,

    /// Seconds workers get to finish in-flight requests after TERM before they are killed.
    #[arg(long = "graceful-timeout", value_name = "INT", default_value_t = 30)]
    pub graceful_timeout: u32,

    /// Workers silent (or stuck in one app call) for more than this many seconds are
    /// killed and replaced, with the stuck request's traceback logged. 0 disables.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "INT",
        default_value_t = 30
    )]
    pub timeout: u32,

    /// Restart a worker after it has handled this many requests (0 = never).
    #[arg(long = "max-requests", value_name = "INT", default_value_t = 0)]
    pub max_requests: u64,

    /// Add a random 0..=N to each worker's --max-requests, so workers do not restart together.
    #[arg(long = "max-requests-jitter", value_name = "INT", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Write the arbiter's PID to this file.
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<String>,

    /// Detach from the terminal and run in the background.
    #[arg(short = 'D', long = "daemon")]
    pub daemon: bool,

    /// Run workers as this user (name or uid).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Run workers as this group (name or gid).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Give workers the supplementary groups of --user.
    #[arg(long = "initgroups")]
    pub initgroups: bool,

    /// The umask for unix sockets the server creates (octal, e.g. 0o007 or 007).
    #[arg(short = 'm', long = "umask", value_name = "INT", default_value = "0")]
    pub umask: String,

    /// The process title base: `ferrocorn: master [NAME]` (default: the app module).
    #[arg(short = 'n', long = "name", value_name = "STRING")]
    pub name: Option<String>,

    /// TLS: the PEM certificate chain. Setting it (or --keyfile) serves HTTPS on every bind.
    #[arg(long = "certfile", value_name = "FILE")]
    pub certfile: Option<String>,

    /// TLS: the PEM private key (default: read from --certfile).
    #[arg(long = "keyfile", value_name = "FILE")]
    pub keyfile: Option<String>,

    /// TLS: CA certificates (PEM) that client certificates must chain to.
    #[arg(long = "ca-certs", value_name = "FILE")]
    pub ca_certs: Option<String>,

    /// TLS: client certificates: 0 not asked, 1 optional, 2 required.
    #[arg(long = "cert-reqs", value_name = "INT", default_value_t = 0)]
    pub cert_reqs: i64,

    /// TLS: allowed cipher suites, colon-separated (see docs/tls.md for the names).
    #[arg(long = "ciphers", value_name = "LIST")]
    pub ciphers: Option<String>,

    /// The maximum number of open client connections per worker.
    #[arg(long = "worker-connections", value_name = "INT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub worker_connections: u32,

    /// The error log level: debug, info, warning, error or critical.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info",
          value_parser = ["debug", "info", "warning", "error", "critical"])]
    pub log_level: String,

    /// Max bytes in the request line (0 = unlimited, capped at 8190). Longer: 414.
    #[arg(
        long = "limit-request-line",
        value_name = "INT",
        default_value_t = 4094
    )]
    pub limit_request_line: usize,

    /// Max number of request header fields (0 = 32768). More: 431.
    #[arg(
        long = "limit-request-fields",
        value_name = "INT",
        default_value_t = 100
    )]
    pub limit_request_fields: usize,

    /// Max bytes of one request header line (0 = 8190). Longer: 431.
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        value_name = "INT",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,

    /// Seconds a client gets to send a whole request head, from its first byte (slow clients get 408).
    #[arg(
        long = "header-timeout",
        value_name = "SECONDS",
        default_value_t = 30.0
    )]
    pub header_timeout: f64,

    /// Seconds a request body may go without a byte arriving (then 408).
    #[arg(long = "body-timeout", value_name = "SECONDS", default_value_t = 60.0)]
    pub body_timeout: f64,

    /// Admission control: answer 503 with Retry-After, without calling the app, once this
    /// many requests are already waiting in a worker (0 = off).
    #[arg(long = "max-queued-requests", value_name = "INT", default_value_t = 0)]
    pub max_queued_requests: usize,

    /// Admission control: answer 503 with Retry-After to a request that waited this many
    /// seconds for its turn in the worker (0 = off).
    #[arg(long = "max-queue-wait", value_name = "SECONDS", default_value_t = 0.0)]
    pub max_queue_wait: f64,

    /// Max bytes of a request body (0 = unlimited). Larger: 413.
    #[arg(long = "limit-request-body", value_name = "INT", default_value_t = 0)]
    pub limit_request_body: u64,

    /// Accept obsolete line folding in request headers (joined with a space) instead of 400.
    #[arg(long = "permit-obsolete-folding")]
    pub permit_obsolete_folding: bool,

    /// Strip spaces between a header name and the colon (dangerous: request smuggling).
    #[arg(long = "strip-header-spaces")]
    pub strip_header_spaces: bool,

    /// Allow methods that are lower case, contain '#' or are not 3 to 20 characters long.
    #[arg(long = "permit-unconventional-http-method")]
    pub permit_unconventional_http_method: bool,

    /// Allow HTTP versions other than 1.0 and 1.1.
    #[arg(long = "permit-unconventional-http-version")]
    pub permit_unconventional_http_version: bool,

    /// Upper-case the request method.
    #[arg(long = "casefold-http-method")]
    pub casefold_http_method: bool,

    /// Request header names containing '_': drop, refuse (400) or dangerous (pass on).
    #[arg(long = "header-map", value_name = "MODE", default_value = "drop",
          value_parser = ["drop", "refuse", "dangerous"])]
    pub header_map: String,

    /// Peers trusted to set the scheme and forwarder headers: IPs, CIDRs or '*'.
    #[arg(
        long = "forwarded-allow-ips",
        value_name = "STRING",
        env = "FORWARDED_ALLOW_IPS",
        default_value = "127.0.0.1,::1"
    )]
    pub forwarded_allow_ips: String,

    /// Accept a PROXY protocol header: off, v1, v2 or auto (the bare flag means auto).
    #[arg(long = "proxy-protocol", value_name = "MODE", num_args = 0..=1,
          default_missing_value = "auto", default_value = "off",
          value_parser = ["off", "v1", "v2", "auto", "true", "false"])]
    pub proxy_protocol: String,

    /// Peers allowed to send a PROXY protocol header: IPs, CIDRs or '*'.
    #[arg(
        long = "proxy-allow-from",
        value_name = "STRING",
        default_value = "127.0.0.1,::1"
    )]
    pub proxy_allow_from: String,

    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}
