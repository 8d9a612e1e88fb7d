//! Resolution tests: precedence, environment defaults, validation messages.

use super::*;

fn argv(args: &[&str]) -> Vec<String> {
    std::iter::once("ferrocorn")
        .chain(args.iter().copied())
        .map(String::from)
        .collect()
}

fn no_file(src: &ConfigSource) -> Result<FileSettings, String> {
    Err(format!("unexpected config file {}", src.display()))
}

fn load_with(
    args: &[&str],
    env: &[(&str, &str)],
    file: FileReader<'_>,
) -> Result<Loaded, LoadError> {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    load(&argv(args), &lookup, file)
}

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
    load_with(args, env, &no_file)
        .map(|l| l.config)
        .map_err(|e| e.to_string())
}

/// A config file that sets these names (as Python would give them).
fn file_with(
    values: Vec<(&'static str, Raw)>,
) -> impl Fn(&ConfigSource) -> Result<FileSettings, String> {
    move |_src| {
        Ok(FileSettings {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            unknown: vec!["workerz".into(), "helper_value".into()],
            callables: Vec::new(),
        })
    }
}

fn s(v: &str) -> Raw {
    Raw::Str(v.into())
}

#[test]
fn defaults_match_gunicorn() {
    let c = parse(&["app:app"], &[]).unwrap();
    assert_eq!(c.binds, vec![BindAddr::parse("127.0.0.1:8000").unwrap()]);
    assert_eq!(c.workers, 1);
    assert_eq!(c.keep_alive, 2);
    assert_eq!(c.backlog, 2048);
    assert_eq!(c.timeout, 30);
    assert_eq!(c.graceful_timeout, 30);
    assert_eq!(c.http.limit_request_line, 4094);
    assert_eq!(c.http.forwarder_headers, vec!["SCRIPT_NAME", "PATH_INFO"]);
    assert!(c.reuse_port);
    assert!(c.sendfile);
    assert_eq!(c.io_engine, EngineChoice::Auto);
    assert_eq!(c.log.errorlog, "-");
    assert_eq!(c.log.accesslog, None);
    assert_eq!(c.log.access_log_format, crate::log::access::DEFAULT_FORMAT);
    assert_eq!(c.config_file, None);
}

#[test]
fn port_env_binds_all_interfaces() {
    let c = parse(&["app:app"], &[("PORT", "9001")]).unwrap();
    assert_eq!(c.binds, vec![BindAddr::parse("0.0.0.0:9001").unwrap()]);
    let c = parse(&["-b", "127.0.0.1:1", "app:app"], &[("PORT", "9001")]).unwrap();
    assert_eq!(c.binds, vec![BindAddr::parse("127.0.0.1:1").unwrap()]);
}

#[test]
fn environment_defaults_rank_below_the_config_file() {
    let env = [
        ("WEB_CONCURRENCY", "3"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/8"),
        ("SENDFILE", "0"),
    ];
    let c = parse(&["app:app"], &env).unwrap();
    assert_eq!(c.workers, 3);
    assert!(!c.sendfile);
    assert!(c.forwarded_allow_ips.contains("10.1.2.3".parse().unwrap()));
    let file = file_with(vec![("workers", Raw::Int(5))]);
    let c = load_with(&["-c", "Cargo.toml", "app:app"], &env, &file)
        .unwrap()
        .config;
    assert_eq!(c.workers, 5);
    let err = parse(&["app:app"], &[("WEB_CONCURRENCY", "many")]).unwrap_err();
    assert!(
        err.contains("WEB_CONCURRENCY") && err.contains("'many'"),
        "{err}"
    );
}

#[test]
fn command_line_beats_cmd_args_env_beats_config_file() {
    let file = file_with(vec![
        ("workers", Raw::Int(2)),
        ("timeout", Raw::Int(10)),
        ("keepalive", Raw::Int(7)),
        ("bind", Raw::List(vec![s("127.0.0.1:7001")])),
    ]);
    let env = [("FERROCORN_CMD_ARGS", "-w 3 --timeout 11")];
    let l = load_with(&["-c", "Cargo.toml", "-w", "4", "app:app"], &env, &file).unwrap();
    let c = l.config;
    assert_eq!(c.workers, 4);
    assert_eq!(c.timeout, 11);
    assert_eq!(c.keep_alive, 7);
    assert_eq!(c.binds, vec![BindAddr::parse("127.0.0.1:7001").unwrap()]);
    assert_eq!(c.settings.origin(id!(workers)), &Origin::CommandLine);
    assert_eq!(
        c.settings.origin(id!(timeout)),
        &Origin::CmdArgs("FERROCORN_CMD_ARGS")
    );
    assert_eq!(
        c.settings.origin(id!(keepalive)),
        &Origin::ConfigFile("Cargo.toml".into())
    );
    assert_eq!(c.config_file.as_deref(), Some("Cargo.toml"));
}

#[test]
fn ferrocorn_cmd_args_win_over_gunicorn_cmd_args() {
    let env = [
        ("FERROCORN_CMD_ARGS", "-w 3"),
        ("GUNICORN_CMD_ARGS", "-w 2 --timeout 5"),
    ];
    let l = load_with(&["app:app"], &env, &no_file).unwrap();
    assert_eq!(l.config.workers, 3);
    assert_eq!(l.config.timeout, 30);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("GUNICORN_CMD_ARGS is ignored")));
    let l = load_with(&["app:app"], &[("GUNICORN_CMD_ARGS", "-w 2")], &no_file).unwrap();
    assert_eq!(l.config.workers, 2);
}

#[test]
fn bad_cmd_args_env_is_a_usage_error_naming_the_variable() {
    let err = load_with(&["app:app"], &[("FERROCORN_CMD_ARGS", "--nope")], &no_file)
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::EnvUsage(m) if m.contains("FERROCORN_CMD_ARGS") && m.contains("--nope")),
        "{err}"
    );
}

#[test]
fn config_file_on_the_command_line_must_exist() {
    let err = parse(&["-c", "no/such/file.py", "app:app"], &[]).unwrap_err();
    assert!(
        err.contains("config") && err.contains("no/such/file.py") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn wsgi_app_from_the_config_file_when_no_app_module() {
    let file = file_with(vec![("wsgi_app", s("shop:app"))]);
    let c = load_with(&["-c", "Cargo.toml"], &[], &file).unwrap().config;
    assert_eq!(c.app, "shop:app");
    let c = load_with(&["-c", "Cargo.toml", "other:app"], &[], &file)
        .unwrap()
        .config;
    assert_eq!(c.app, "other:app");
}

#[test]
fn config_file_mistakes_name_setting_value_file_and_expectation() {
    let file = file_with(vec![("workers", s("four"))]);
    let err = load_with(&["-c", "Cargo.toml", "app:app"], &[], &file)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "Invalid value for workers: 'four' (from config file Cargo.toml): expected a whole number from 1 to 4096"
    );
    let file = file_with(vec![("bind", s("127.0.0.1:http"))]);
    let err = load_with(&["-c", "Cargo.toml", "app:app"], &[], &file)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(
            "Invalid value for bind: '127.0.0.1:http' (from config file Cargo.toml): port"
        ),
        "{err}"
    );
}

#[test]
fn unknown_config_file_names_are_warned_about_with_a_hint() {
    let file = file_with(vec![]);
    let l = load_with(&["-c", "Cargo.toml", "app:app"], &[], &file).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("Unknown setting workerz") && w.contains("did you mean workers?")),
        "{:?}",
        l.warnings
    );
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("Unknown setting helper_value") && !w.contains("did you mean")));
}

#[test]
fn unimplemented_gunicorn_settings_are_accepted_with_a_warning() {
    let l = load_with(
        &["--spew", "--ssl-version", "TLSv1_2", "app:app"],
        &[],
        &no_file,
    )
    .unwrap();
    for name in ["spew = True", "ssl_version = 'TLSv1_2'"] {
        assert!(
            l.warnings
                .iter()
                .any(|w| w.starts_with(name) && w.contains("does not implement")),
            "{name}: {:?}",
            l.warnings
        );
    }
    // The default value changes nothing, so it is not worth a warning.
    let l = load_with(&["-k", "sync", "app:app"], &[], &no_file).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn threads_and_gthread_select_app_threads_without_a_warning() {
    let l = load_with(&["--threads", "4", "app:app"], &[], &no_file).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert!(l.config.threaded());
    let l = load_with(&["-k", "gthread", "app:app"], &[], &no_file).unwrap();
    assert!(l.config.threaded() && l.config.threads == 1);
    let l = load_with(&["app:app"], &[], &no_file).unwrap();
    assert!(!l.config.threaded());
}

#[test]
fn gevent_worker_classes_select_greenlets_not_app_threads() {
    for kind in ["gevent", "gevent_wsgi", "gevent_pywsgi"] {
        let l = load_with(&["-k", kind, "--threads", "4", "app:app"], &[], &no_file).unwrap();
        assert!(l.warnings.is_empty(), "{kind}: {:?}", l.warnings);
        assert!(l.config.gevent() && !l.config.threaded(), "{kind}");
    }
    for kind in ["sync", "gthread", "asgi"] {
        let l = load_with(&["-k", kind, "app:app"], &[], &no_file).unwrap();
        assert!(!l.config.gevent(), "{kind}");
    }
}

#[test]
fn missing_app_is_an_error() {
    assert!(parse(&[], &[])
        .unwrap_err()
        .contains("No application module"));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let err = load_with(&["--no-such-flag", "app:app"], &[], &no_file)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Usage(e) if e.exit_code() == 2));
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
    assert_eq!(parse_umask("0x1f"), Some(0x1f));
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
    let err = parse(&["-b", "127.0.0.1:notaport", "app:app"], &[]).unwrap_err();
    assert!(
        err.starts_with("Invalid value for --bind: '127.0.0.1:notaport' (from command line)"),
        "{err}"
    );
    assert!(parse(&["--forwarded-allow-ips", "x", "app:app"], &[])
        .unwrap_err()
        .contains("--forwarded-allow-ips"));
    assert!(parse(&["-w", "0", "app:app"], &[]).is_err());
    assert!(parse(&["--io-engine", "kqueue", "app:app"], &[]).is_err());
    let err = parse(&["--chdir", "/no/such/dir", "app:app"], &[]).unwrap_err();
    assert!(
        err.contains("--chdir") && err.contains("existing directory"),
        "{err}"
    );
    let err = parse(&["-e", "NOEQUALS", "app:app"], &[]).unwrap_err();
    assert!(err.contains("--env") && err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn raw_env_pairs_split_at_the_first_equals() {
    let c = parse(&["-e", "A=1", "--env", "B=x=y", "app:app"], &[]).unwrap();
    assert_eq!(
        c.raw_env,
        vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
}

#[test]
fn logging_settings_reach_the_log_setup() {
    let c = parse(
        &[
            "--access-logfile",
            "-",
            "--access-logformat",
            "%(h)s",
            "--log-file",
            "/tmp/e.log",
            "--log-level",
            "debug",
            "--capture-output",
            "--access-log-json",
            "app:app",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.log.accesslog.as_deref(), Some("-"));
    assert_eq!(c.log.access_log_format, "%(h)s");
    assert_eq!(c.log.errorlog, "/tmp/e.log");
    assert_eq!(c.log.level, Level::Debug);
    assert_eq!(c.log_level, Level::Debug);
    assert!(c.log.capture_output && c.log.access_log_json);
    let c = parse(
        &["--log-syslog", "--log-syslog-prefix", "shop", "app:app"],
        &[],
    )
    .unwrap();
    let sys = c.log.syslog.unwrap();
    assert_eq!((sys.prefix.as_str(), sys.access), ("shop", true));
}

#[test]
fn print_and_check_config_flags_are_reported() {
    let l = load_with(&["--print-config", "app:app"], &[], &no_file).unwrap();
    assert!(l.print_config && !l.check_config);
    let l = load_with(&["--check-config", "app:app"], &[], &no_file).unwrap();
    assert!(l.check_config);
}

#[test]
fn hook_values_validate_arity() {
    let file = file_with(vec![(
        "post_fork",
        Raw::Callable {
            arity: Some(1),
            repr: "<function post_fork>".into(),
        },
    )]);
    let err = load_with(&["-c", "Cargo.toml", "app:app"], &[], &file)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("post_fork") && err.contains("taking 2 positional arguments"),
        "{err}"
    );
}

#[test]
fn config_source_forms() {
    assert_eq!(
        ConfigSource::parse("a.py"),
        ConfigSource::File("a.py".into())
    );
    assert_eq!(
        ConfigSource::parse("file:a.py"),
        ConfigSource::File("a.py".into())
    );
    assert_eq!(
        ConfigSource::parse("python:pkg.conf"),
        ConfigSource::Module("pkg.conf".into())
    );
}

#[test]
fn misspelt_names_find_their_setting() {
    assert_eq!(closest_setting("worker"), Some("workers"));
    assert_eq!(closest_setting("acesslog"), Some("accesslog"));
    assert_eq!(closest_setting("completely_else"), None);
}

#[test]
fn tls_settings_reach_the_tls_layer() {
    let c = parse(
        &[
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--ca-certs",
            "ca.pem",
            "--cert-reqs",
            "2",
            "--ciphers",
            "TLS_AES_128_GCM_SHA256",
            "app:app",
        ],
        &[],
    )
    .unwrap();
    assert!(c.tls.is_enabled());
    assert_eq!(c.tls.cert_reqs, crate::tls::CertReqs::Required);
    assert_eq!(c.tls.ciphers.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert!(!parse(&["app:app"], &[]).unwrap().tls.is_enabled());
    let err = parse(&["--cert-reqs", "3", "app:app"], &[]).unwrap_err();
    assert!(err.contains("--cert-reqs") && err.contains("'3'"), "{err}");
}

#[test]
fn asgi_worker_classes_select_the_asgi_interface_without_a_warning() {
    for kind in [
        "asgi",
        "uvicorn.workers.UvicornWorker",
        "uvicorn.workers.UvicornH11Worker",
    ] {
        let l = load_with(&["-k", kind, "app:app"], &[], &no_file).unwrap();
        assert_eq!(l.config.interface, Interface::Asgi, "{kind}");
        assert!(l.warnings.is_empty(), "{kind}: {:?}", l.warnings);
    }
    assert_eq!(parse(&["app:app"], &[]).unwrap().interface, Interface::Auto);
    assert_eq!(
        parse(&["--interface", "asgi", "app:app"], &[])
            .unwrap()
            .interface,
        Interface::Asgi
    );
}

#[test]
fn an_asgi_worker_class_with_interface_wsgi_is_refused() {
    let e = parse(&["-k", "asgi", "--interface", "wsgi", "app:app"], &[]).unwrap_err();
    assert!(
        e.contains("--worker-class") && e.contains("--interface wsgi"),
        "{e}"
    );
}

#[test]
fn asgi_settings_are_read() {
    let c = parse(
        &[
            "--asgi-loop",
            "asyncio",
            "--asgi-lifespan",
            "off",
            "--asgi-disconnect-grace-period",
            "7",
            "--root-path",
            "/api",
            "app:app",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.asgi_loop, AsgiLoop::Asyncio);
    assert_eq!(c.asgi_lifespan, AsgiLifespan::Off);
    assert_eq!(
        c.asgi_disconnect_grace_period,
        std::time::Duration::from_secs(7)
    );
    assert_eq!(c.root_path, "/api");
    let d = parse(&["app:app"], &[]).unwrap();
    assert_eq!(
        (d.asgi_loop, d.asgi_lifespan, d.root_path.as_str()),
        (AsgiLoop::Auto, AsgiLifespan::Auto, "")
    );
}

#[test]
fn version_flag_asks_for_the_version_report() {
    for flag in ["--version", "-v"] {
        assert!(
            matches!(from_args(&argv(&[flag])), Parsed::Version),
            "{flag}"
        );
    }
    let report = version_report("CPython 3.12.1 (/usr/bin/python3)", "uring");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], format!("ferrocorn (version {})", crate::VERSION));
    assert_eq!(
        lines[1],
        "io engines: uring, epoll; --io-engine auto picks uring"
    );
    assert_eq!(lines[2], "python: CPython 3.12.1 (/usr/bin/python3)");
}

#[test]
fn paste_global_entries_split_at_the_first_unescaped_equals() {
    assert_eq!(split_unescaped_eq("a=b=c"), Some(("a", "b=c")));
    assert_eq!(split_unescaped_eq("a\\=b=c"), Some(("a\\=b", "c")));
    assert_eq!(split_unescaped_eq("=v"), Some(("", "v")));
    assert_eq!(split_unescaped_eq("novalue"), None);
}

#[test]
fn paste_file_becomes_an_absolute_config_uri_and_names_the_app() {
    let dir = std::env::temp_dir().join(format!("ferrocorn-paste-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("app.ini");
    std::fs::write(&ini, "[app:main]\nuse = call:x:y\n").unwrap();
    let spec = format!("--paste={}#other", ini.display());
    let l = load_with(&[&spec, "--paste-global", "k\\=1=v"], &[], &no_file).unwrap();
    let paste = l.config.paste.clone().unwrap();
    assert_eq!(paste.uri, format!("config:{}#other", ini.display()));
    assert_eq!(
        paste.global_conf,
        vec![("k=1".to_string(), "v".to_string())]
    );
    assert_eq!(l.config.app, ini.display().to_string());
    // No [loggers] section: logging stays as it was.
    assert_eq!(l.config.settings.get(id!(logconfig)), &Value::None);
    match load_with(&["--paste", "/no/such/file.ini"], &[], &no_file) {
        Err(LoadError::Invalid(e)) => {
            assert!(
                e.contains("expected an existing PasteDeploy ini file"),
                "{e}"
            )
        }
        _ => panic!("a missing --paste file must be refused"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_with_preload_is_warned_about() {
    let l = load_with(&["--reload", "--preload", "app:app"], &[], &no_file).unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("run the old code")),
        "{:?}",
        l.warnings
    );
    assert!(l.config.preload_app);
}
