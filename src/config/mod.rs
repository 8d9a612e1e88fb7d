//! Settings: the command line resolved into one validated `Config`.
//!
//! Every mistake is reported here, before any socket is bound or worker
//! forked, naming the setting, the value and what was expected.

#![forbid(unsafe_code)]

mod bind;
mod cli;

pub use bind::BindAddr;
pub use cli::Cli;

use std::sync::Arc;

use clap::Parser;

use crate::engine::EngineChoice;
use crate::http::{self, AllowList, HeaderMapPolicy, ProxyProtocol};
use crate::log::Level;

/// Everything the arbiter and the workers need, resolved and validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub app: String,
    pub binds: Vec<BindAddr>,
    pub workers: usize,
    pub chdir: Option<String>,
    pub pythonpath: Vec<String>,
    pub keep_alive: u32,
    pub backlog: i32,
    pub reuse_port: bool,
    pub io_engine: EngineChoice,
    pub graceful_timeout: u32,
    pub timeout: u32,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
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
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max_queued_requests: usize,
    /// `None` when admission control by waiting time is off.
    pub max_queue_wait: Option<std::time::Duration>,
    /// TLS on every listener when a certificate or key is given.
    pub tls: crate::tls::TlsSettings,
}

/// What the command line asks for.
pub enum Parsed {
    Run(Box<Config>),
    /// `--help`/`--version` printed, or a usage error reported: exit with this code.
    Exit(i32),
}

/// Parse and validate `argv` (argv[0] is the program name).
pub fn from_args(argv: &[String]) -> Parsed {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Parsed::Exit(e.exit_code());
        }
    };
    match resolve(cli, |name| std::env::var(name).ok()) {
        Ok(cfg) => Parsed::Run(Box::new(cfg)),
        Err(msg) => {
            eprintln!("Error: {msg}");
            Parsed::Exit(1)
        }
    }
}

/// Parse `argv` again (HUP), returning the error text instead of printing it.
pub fn from_args_quiet(argv: &[String]) -> Result<Config, String> {
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    resolve(cli, |name| std::env::var(name).ok())
}

/// Turn parsed flags (and the environment, through `env`) into a `Config`.
pub fn resolve(cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let app = cli
        .app
        .clone()
        .filter(|a| !a.trim().is_empty())
        .ok_or("No application module specified.")?;

    let binds = if cli.bind.is_empty() {
        match env("PORT").filter(|p| !p.is_empty()) {
            Some(port) => vec![BindAddr::parse(&format!("0.0.0.0:{port}"))
                .map_err(|e| format!("PORT={port:?}: {e}"))?],
            None => vec![BindAddr::parse("127.0.0.1:8000").map_err(|e| e.to_string())?],
        }
    } else {
        cli.bind
            .iter()
            .map(|b| BindAddr::parse(b).map_err(|e| format!("--bind {b:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?
    };

    let io_engine = match cli.io_engine.as_str() {
        "uring" => EngineChoice::Uring,
        "epoll" => EngineChoice::Epoll,
        _ => EngineChoice::Auto,
    };
    let header_map = match cli.header_map.as_str() {
        "refuse" => HeaderMapPolicy::Refuse,
        "dangerous" => HeaderMapPolicy::Dangerous,
        _ => HeaderMapPolicy::Drop,
    };
    let proxy_protocol = match cli.proxy_protocol.as_str() {
        "v1" => ProxyProtocol::V1,
        "v2" => ProxyProtocol::V2,
        "auto" | "true" => ProxyProtocol::Auto,
        _ => ProxyProtocol::Off,
    };
    let forwarded_allow_ips = AllowList::parse(&cli.forwarded_allow_ips)
        .map_err(|e| format!("--forwarded-allow-ips {:?}: {e}", cli.forwarded_allow_ips))?;
    let proxy_allow_from = AllowList::parse(&cli.proxy_allow_from)
        .map_err(|e| format!("--proxy-allow-from {:?}: {e}", cli.proxy_allow_from))?;

    let http = http::Config {
        limit_request_line: cli.limit_request_line,
        limit_request_fields: cli.limit_request_fields,
        limit_request_field_size: cli.limit_request_field_size,
        permit_obsolete_folding: cli.permit_obsolete_folding,
        strip_header_spaces: cli.strip_header_spaces,
        permit_unconventional_http_method: cli.permit_unconventional_http_method,
        permit_unconventional_http_version: cli.permit_unconventional_http_version,
        casefold_http_method: cli.casefold_http_method,
        header_map,
        proxy_protocol,
        limit_request_body: cli.limit_request_body,
        ..http::Config::default()
    };

    let umask = parse_umask(&cli.umask).ok_or_else(|| {
        format!(
            "--umask {:?}: expected an octal number such as 0o022 or 022",
            cli.umask
        )
    })?;
    let user = match &cli.user {
        Some(u) => Some(lookup_user(u).map_err(|e| format!("--user {u:?}: {e}"))?),
        None => None,
    };
    let group = match &cli.group {
        Some(g) => Some(lookup_group(g).map_err(|e| format!("--group {g:?}: {e}"))?),
        None => None,
    };
    let proc_name = cli.name.clone().unwrap_or_else(|| app.clone());
    let tls = crate::tls::TlsSettings {
        certfile: cli.certfile.clone().map(Into::into),
        keyfile: cli.keyfile.clone().map(Into::into),
        ca_certs: cli.ca_certs.clone().map(Into::into),
        cert_reqs: crate::tls::CertReqs::from_int(cli.cert_reqs)
            .map_err(|e| format!("--cert-reqs: {e}"))?,
        ciphers: cli.ciphers.clone(),
    };

    let seconds = |name: &str, v: f64| -> Result<std::time::Duration, String> {
        std::time::Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{name} {v}: expected a positive number of seconds"))
    };
    let header_timeout = seconds("--header-timeout", cli.header_timeout)?;
    let body_timeout = seconds("--body-timeout", cli.body_timeout)?;
    let max_queue_wait = match cli.max_queue_wait {
        w if w == 0.0 => None,
        w => Some(seconds("--max-queue-wait", w)?),
    };

    Ok(Config {
        header_timeout,
        body_timeout,
        max_queued_requests: cli.max_queued_requests,
        max_queue_wait,
        tls,
        proc_name,
        timeout: cli.timeout,
        max_requests: cli.max_requests,
        max_requests_jitter: cli.max_requests_jitter,
        pidfile: cli.pidfile.clone(),
        daemon: cli.daemon,
        user,
        group,
        initgroups: cli.initgroups,
        umask,
        app,
        binds,
        workers: cli.workers.unwrap_or(1) as usize,
        chdir: cli.chdir,
        pythonpath: cli
            .pythonpath
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        keep_alive: cli.keep_alive,
        backlog: cli.backlog as i32,
        reuse_port: !cli.no_reuse_port,
        io_engine,
        graceful_timeout: cli.graceful_timeout,
        worker_connections: cli.worker_connections as usize,
        log_level: Level::parse(&cli.log_level).unwrap_or(Level::Info),
        forwarded_allow_ips,
        proxy_allow_from,
        http: Arc::new(http),
    })
}

/// gunicorn reads the umask as an int in any base: `0o007`, `007`, `0x1f`, `7`.
fn parse_umask(s: &str) -> Option<u32> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        u32::from_str_radix(o, 8).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    (v <= 0o777).then_some(v)
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
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let argv: Vec<String> = std::iter::once("ferrocorn")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let cli = Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
        resolve(cli, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_match_gunicorn() {
        let c = parse(&["app:app"], &[]).unwrap();
        assert_eq!(c.binds, vec![BindAddr::parse("127.0.0.1:8000").unwrap()]);
        assert_eq!(c.workers, 1);
        assert_eq!(c.keep_alive, 2);
        assert_eq!(c.backlog, 2048);
        assert_eq!(c.http.limit_request_line, 4094);
        assert!(c.reuse_port);
        assert_eq!(c.io_engine, EngineChoice::Auto);
    }

    #[test]
    fn port_env_binds_all_interfaces() {
        let c = parse(&["app:app"], &[("PORT", "9001")]).unwrap();
        assert_eq!(c.binds, vec![BindAddr::parse("0.0.0.0:9001").unwrap()]);
        let c = parse(&["-b", "127.0.0.1:1", "app:app"], &[("PORT", "9001")]).unwrap();
        assert_eq!(c.binds, vec![BindAddr::parse("127.0.0.1:1").unwrap()]);
    }

    #[test]
    fn missing_app_is_an_error() {
        assert!(parse(&[], &[])
            .unwrap_err()
            .contains("No application module"));
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["ferrocorn", "--no-such-flag", "app:app"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn repeated_binds_and_parser_flags() {
        let c = parse(
            &[
                "-b",
                "127.0.0.1:1",
                "--bind",
                "unix:/tmp/x.sock",
                "--limit-request-field_size",
                "98",
                "--proxy-protocol",
                "--header-map",
                "refuse",
                "app:app",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.binds.len(), 2);
        assert_eq!(c.http.limit_request_field_size, 98);
        assert_eq!(c.http.proxy_protocol, ProxyProtocol::Auto);
        assert_eq!(c.http.header_map, HeaderMapPolicy::Refuse);
    }

    #[test]
    fn umask_and_identity_settings() {
        assert_eq!(
            parse(&["-m", "0o007", "app:app"], &[]).unwrap().umask,
            0o007
        );
        assert_eq!(
            parse(&["--umask", "022", "app:app"], &[]).unwrap().umask,
            0o022
        );
        assert!(parse(&["--umask", "nope", "app:app"], &[])
            .unwrap_err()
            .contains("--umask"));
        assert_eq!(
            parse(&["-u", "0", "-g", "0", "app:app"], &[]).unwrap().user,
            Some((0, "root".into()))
        );
        assert!(parse(&["-u", "no-such-user-here", "app:app"], &[])
            .unwrap_err()
            .contains("--user"));
        assert_eq!(
            parse(&["-n", "shop", "app:app"], &[]).unwrap().proc_name,
            "shop"
        );
        assert_eq!(parse(&["app:app"], &[]).unwrap().proc_name, "app:app");
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert!(parse(&["-b", "127.0.0.1:notaport", "app:app"], &[])
            .unwrap_err()
            .contains("--bind"));
        assert!(parse(&["--forwarded-allow-ips", "x", "app:app"], &[])
            .unwrap_err()
            .contains("--forwarded-allow-ips"));
        assert!(parse(&["-w", "0", "app:app"], &[]).is_err());
        assert!(parse(&["--io-engine", "kqueue", "app:app"], &[]).is_err());
    }
}
