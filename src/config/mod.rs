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
    pub worker_connections: usize,
    pub log_level: Level,
    pub forwarded_allow_ips: AllowList,
    pub proxy_allow_from: AllowList,
    pub http: Arc<http::Config>,
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
        ..http::Config::default()
    };

    Ok(Config {
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
