//! From resolved settings to a `Config`: each value checked against what
//! it must mean beyond its type, with errors naming the setting, its value
//! and where it came from.

use super::*;

/// An error about a resolved setting: its name, value and origin.
/// Worker classes ferrocorn refuses instead of running the app the wrong way.
pub(super) fn unsupported_worker_class(kind: &str) -> Option<&'static str> {
    match kind {
        "eventlet" => Some(
            "eventlet is retired upstream and gunicorn 26 removed its worker; \
             use app threads for blocking calls (--threads N, gunicorn's gthread), \
             greenlets (-k gevent), or serve an async app with -k asgi",
        ),
        _ => None,
    }
}

/// Worker classes that mean "the app is an ASGI app" (gunicorn's own and
/// uvicorn's, which gunicorn users name in their configs).
pub(super) fn asgi_worker_class(kind: &str) -> bool {
    matches!(
        kind,
        "asgi" | "uvicorn.workers.UvicornWorker" | "uvicorn.workers.UvicornH11Worker"
    )
}

/// `--interface`, or ASGI when the worker class names an ASGI worker.
pub(super) fn interface(r: &Resolved) -> Result<Interface, String> {
    let asgi_class = r
        .get(id!(worker_class))
        .as_str()
        .is_some_and(asgi_worker_class);
    match r.get(id!(interface)).as_str() {
        Some("wsgi") if asgi_class => {
            let kind = r.get(id!(worker_class)).as_str().unwrap_or_default();
            Err(bad(
                r,
                id!(worker_class),
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

pub(super) fn bad(r: &Resolved, id: Id, shown: &str, why: impl std::fmt::Display) -> String {
    let origin = r.origin(id);
    let setting = id.setting();
    let label = match (origin, setting.flags.last()) {
        (Origin::CommandLine | Origin::CmdArgs(_), Some(flag)) => flag.to_string(),
        _ => setting.name.to_string(),
    };
    format!(
        "Invalid value for {label}: {} (from {origin}): {why}",
        value::py_repr(shown)
    )
}

/// Turn resolved settings into a `Config`, checking what needs more than a type.
pub(super) fn build(
    r: Resolved,
    app: Option<String>,
    hooks: Hooks,
    config_file: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Config, String> {
    let int = |id: Id| r.get(id).as_int();
    let flag = |id: Id| r.get(id).as_bool();
    let text = |id: Id| r.get(id).as_str().map(String::from);

    let paste = match text(id!(paste)) {
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
        .get(id!(bind))
        .as_list()
        .iter()
        .map(|b| BindAddr::parse(b).map_err(|e| bad(&r, id!(bind), b, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if binds.is_empty() {
        return Err(bad(&r, id!(bind), "", "expected at least one address"));
    }

    let io_engine = match r.get(id!(io_engine)).as_str() {
        Some("uring") => EngineChoice::Uring,
        Some("epoll") => EngineChoice::Epoll,
        _ => EngineChoice::Auto,
    };
    let header_map = match r.get(id!(header_map)).as_str() {
        Some("refuse") => HeaderMapPolicy::Refuse,
        Some("dangerous") => HeaderMapPolicy::Dangerous,
        _ => HeaderMapPolicy::Drop,
    };
    let proxy_protocol = match r.get(id!(proxy_protocol)).as_str() {
        Some("v1") => ProxyProtocol::V1,
        Some("v2") => ProxyProtocol::V2,
        Some("auto" | "true") => ProxyProtocol::Auto,
        _ => ProxyProtocol::Off,
    };
    let allow = |id: Id| -> Result<AllowList, String> {
        let spec = text(id).unwrap_or_default();
        AllowList::parse(&spec).map_err(|e| bad(&r, id, &spec, e))
    };
    let forwarded_allow_ips = allow(id!(forwarded_allow_ips))?;
    let proxy_allow_from = allow(id!(proxy_allow_ips))?;

    let secure_scheme_headers = match r.get(id!(secure_scheme_headers)) {
        Value::Dict(d) => d
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };
    let http = http::Config {
        limit_request_line: int(id!(limit_request_line)) as usize,
        limit_request_fields: int(id!(limit_request_fields)) as usize,
        limit_request_field_size: int(id!(limit_request_field_size)) as usize,
        permit_obsolete_folding: flag(id!(permit_obsolete_folding)),
        strip_header_spaces: flag(id!(strip_header_spaces)),
        permit_unconventional_http_method: flag(id!(permit_unconventional_http_method)),
        permit_unconventional_http_version: flag(id!(permit_unconventional_http_version)),
        casefold_http_method: flag(id!(casefold_http_method)),
        header_map,
        forwarder_headers: r
            .get(id!(forwarder_headers))
            .as_list()
            .iter()
            .map(|h| h.to_ascii_uppercase())
            .collect(),
        secure_scheme_headers,
        proxy_protocol,
        limit_request_body: int(id!(limit_request_body)) as u64,
        body_buffer_size: int(id!(body_buffer_size)) as u64,
        temp_files: body_temp_files(&r, text(id!(chdir)).as_deref(), warnings)?,
        // Set by a worker that serves an ASGI app.
        stream_bodies: false,
    };

    let user = match text(id!(user)) {
        Some(u) => Some(lookup_user(&u).map_err(|e| bad(&r, id!(user), &u, e))?),
        None => None,
    };
    let group = match text(id!(group)) {
        Some(g) => Some(lookup_group(&g).map_err(|e| bad(&r, id!(group), &g, e))?),
        None => None,
    };
    let chdir = text(id!(chdir));
    if let Some(dir) = &chdir {
        if !Path::new(dir).is_dir() {
            return Err(bad(&r, id!(chdir), dir, "expected an existing directory"));
        }
    }
    let raw_env = r
        .get(id!(raw_env))
        .as_list()
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(&r, id!(raw_env), kv, "expected KEY=VALUE")),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let log_level = r
        .get(id!(loglevel))
        .as_str()
        .and_then(Level::parse)
        .unwrap_or(Level::Info);
    let proc_name = text(id!(proc_name)).unwrap_or_else(|| app.clone());
    let syslog = flag(id!(syslog)).then(|| crate::log::SyslogSetup {
        addr: text(id!(syslog_addr)).unwrap_or_default(),
        facility: text(id!(syslog_facility)).unwrap_or_else(|| "user".into()),
        prefix: text(id!(syslog_prefix)).unwrap_or_else(|| proc_name.clone()),
        access: !flag(id!(disable_redirect_access_to_syslog)),
    });
    if let Some(s) = &syslog {
        if crate::log::syslog::facility(&s.facility).is_none() {
            return Err(bad(
                &r,
                id!(syslog_facility),
                &s.facility,
                "expected a syslog facility name: user, daemon, local0 ... local7",
            ));
        }
    }
    let statsd = match text(id!(statsd_host)) {
        Some(spec) => Some(crate::log::statsd::Settings {
            addr: crate::log::statsd::Addr::parse(&spec)
                .map_err(|e| bad(&r, id!(statsd_host), &spec, e))?,
            prefix: crate::log::statsd::prefix(&text(id!(statsd_prefix)).unwrap_or_default()),
            tags: text(id!(dogstatsd_tags)).unwrap_or_default(),
        }),
        None => None,
    };
    let metrics_bind = match text(id!(metrics_bind)) {
        Some(spec) => Some(
            crate::metrics::parse_bind(&spec).map_err(|e| bad(&r, id!(metrics_bind), &spec, e))?,
        ),
        None => None,
    };
    let log = crate::log::Setup {
        level: log_level,
        errorlog: text(id!(errorlog)).unwrap_or_else(|| "-".into()),
        capture_output: flag(id!(capture_output)),
        accesslog: text(id!(accesslog)),
        access_log_format: text(id!(access_log_format))
            .unwrap_or_else(|| crate::log::access::DEFAULT_FORMAT.into()),
        access_log_json: flag(id!(access_log_json)),
        syslog,
        statsd,
    };
    let tls = crate::tls::TlsSettings {
        certfile: text(id!(certfile)).map(Into::into),
        keyfile: text(id!(keyfile)).map(Into::into),
        ca_certs: text(id!(ca_certs)).map(Into::into),
        cert_reqs: crate::tls::CertReqs::from_int(int(id!(cert_reqs)))
            .map_err(|e| bad(&r, id!(cert_reqs), &int(id!(cert_reqs)).to_string(), e))?,
        ciphers: text(id!(ciphers)),
        alpn: Vec::new(),
    };
    let http2 = http2::resolve(&r, tls.is_enabled(), warnings)?;
    let tls = crate::tls::TlsSettings {
        alpn: http2.alpn(),
        ..tls
    };
    for id in [id!(logconfig), id!(logconfig_json)] {
        if let Some(p) = text(id) {
            if !Path::new(&p).is_file() {
                return Err(bad(&r, id, &p, "expected an existing file"));
            }
        }
    }
    let _ = env;
    let interface = interface(&r)?;
    let asgi_loop = match r.get(id!(asgi_loop)).as_str() {
        Some("asyncio") => AsgiLoop::Asyncio,
        Some("uvloop") => AsgiLoop::Uvloop,
        _ => AsgiLoop::Auto,
    };
    let asgi_lifespan = match r.get(id!(asgi_lifespan)).as_str() {
        Some("on") => AsgiLifespan::On,
        Some("off") => AsgiLifespan::Off,
        _ => AsgiLifespan::Auto,
    };
    let root_path = text(id!(root_path)).unwrap_or_default();
    if flag(id!(reload)) && flag(id!(preload_app)) {
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
        if text(id!(logconfig)).is_none() && ini_has_loggers(Path::new(file)) {
            resolved.set(
                id!(logconfig).index(),
                Value::Str(file.clone()),
                Origin::Default,
            );
        }
    }
    resolved.set(
        id!(default_proc_name).index(),
        Value::Str(app.clone()),
        Origin::Default,
    );
    for h in Hook::ALL {
        if let Some((_, arity)) = hooks.get(h) {
            let repr = format!("<{}() taking {arity}>", h.name());
            let i = Id::named(h.name()).index();
            let origin = resolved.origins[i].clone();
            resolved.set(i, Value::Hook(repr), origin);
        }
    }

    Ok(Config {
        header_timeout: std::time::Duration::from_secs(int(id!(header_timeout)) as u64),
        body_timeout: std::time::Duration::from_secs(int(id!(body_timeout)) as u64),
        max_queued_requests: int(id!(max_queued_requests)) as usize,
        max_queue_wait: match int(id!(max_queue_wait_ms)) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms as u64)),
        },
        reload: flag(id!(reload)),
        reload_extra_files: r.get(id!(reload_extra_files)).as_list().to_vec(),
        proc_name,
        timeout: int(id!(timeout)) as u32,
        max_requests: int(id!(max_requests)) as u64,
        max_requests_jitter: int(id!(max_requests_jitter)) as u64,
        max_worker_rss: (int(id!(max_worker_rss)) as u64) << 20,
        pidfile: text(id!(pidfile)),
        daemon: flag(id!(daemon)),
        user,
        group,
        initgroups: flag(id!(initgroups)),
        umask: int(id!(umask)) as u32,
        app,
        binds,
        workers: int(id!(workers)) as usize,
        chdir,
        pythonpath: text(id!(pythonpath))
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        keep_alive: int(id!(keepalive)) as u32,
        backlog: int(id!(backlog)) as i32,
        reuse_port: flag(id!(reuse_port)),
        pin_workers: flag(id!(pin_workers)),
        io_engine,
        graceful_timeout: int(id!(graceful_timeout)) as u32,
        worker_connections: int(id!(worker_connections)) as usize,
        log_level,
        forwarded_allow_ips,
        proxy_allow_from,
        http: Arc::new(http),
        tls,
        http2,
        threads: int(id!(threads)) as usize,
        worker_class: text(id!(worker_class)).unwrap_or_else(|| "sync".into()),
        sendfile: flag(id!(sendfile)),
        raw_env,
        log,
        config_file,
        hooks: Arc::new(hooks),
        settings: Arc::new(resolved),
        metrics_bind,
        interface,
        asgi_loop,
        asgi_lifespan,
        asgi_disconnect_grace_period: std::time::Duration::from_secs(int(id!(
            asgi_disconnect_grace_period
        )) as u64),
        root_path,
        paste: paste.map(|(p, _)| p),
        preload_app: flag(id!(preload_app)),
        control_socket: control_socket(&r, env)?,
        control_socket_mode: int(id!(control_socket_mode)) as u32,
        websocket_max_message_size: int(id!(websocket_max_message_size)) as u64,
        ws_ping_interval: std::time::Duration::from_secs(int(id!(ws_ping_interval)) as u64),
        ws_ping_timeout: std::time::Duration::from_secs(int(id!(ws_ping_timeout)) as u64),
        ws_per_message_deflate: flag(id!(ws_per_message_deflate)),
    })
}

/// `--paste FILE[#SECTION]` and `--paste-global`: the loadapp URI (the file
/// made absolute, as gunicorn does, against the directory the server
/// started in) and the file itself, which must exist.
pub(super) fn paste(r: &Resolved, spec: &str) -> Result<(Paste, String), String> {
    let (file, section) = match spec.split_once('#') {
        Some((f, s)) => (f, Some(s)),
        None => (spec, None),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let path = cwd.join(file);
    if !path.is_file() {
        return Err(bad(
            r,
            id!(paste),
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
    for entry in r.get(id!(raw_paste_global_conf)).as_list() {
        let Some((k, v)) = split_unescaped_eq(entry) else {
            return Err(bad(
                r,
                id!(raw_paste_global_conf),
                entry,
                "expected KEY=VALUE",
            ));
        };
        global_conf.push((k.replace("\\=", "="), v.replace("\\=", "=")));
    }
    Ok((Paste { uri, global_conf }, file))
}

/// `KEY=VALUE` split at the first `=` not preceded by a backslash
/// (gunicorn's `re.split(r'(?<!\\)=', s, 1)`).
pub(super) fn split_unescaped_eq(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let i = (0..b.len()).find(|&i| b[i] == b'=' && (i == 0 || b[i - 1] != b'\\'))?;
    Some((&s[..i], &s[i + 1..]))
}

/// The ini file has a `[loggers]` section (then it configures logging).
pub(super) fn ini_has_loggers(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.trim() == "[loggers]"))
        .unwrap_or(false)
}

/// The directory for request bodies over `body_buffer_size`:
/// `body_temp_dir`, else `worker_tmp_dir`, else the system's. A directory
/// given in the settings must take a file now; the system's only warns, for
/// a server that never gets a large body needs none.
pub(super) fn body_temp_files(
    r: &Resolved,
    chdir: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<dyn http::TempFiles>>, String> {
    if r.get(id!(body_buffer_size)).as_int() == 0 {
        return Ok(None);
    }
    let given = [id!(body_temp_dir), id!(worker_tmp_dir)]
        .into_iter()
        .find_map(|id| Some((id, r.get(id).as_str()?.to_string())));
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
            Some((id, shown)) => {
                return Err(bad(
                    r,
                    *id,
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

/// A user name or uid → (uid, name).
pub(super) fn lookup_user(spec: &str) -> Result<(u32, String), String> {
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
pub(super) fn lookup_group(spec: &str) -> Result<u32, String> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err("no such group".into()),
        Err(e) => Err(e.to_string()),
    }
}
