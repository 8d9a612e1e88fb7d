//! The precedence pipeline: the command line, `FERROCORN_CMD_ARGS`, the
//! config file and the environment's defaults, resolved into one value
//! and origin per setting.

use super::*;

/// Parse `argv` and resolve it against `env` and the config file.
pub fn load(
    argv: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: FileReader<'_>,
) -> Result<Loaded, LoadError> {
    let given = cli::parse(argv).map_err(LoadError::Usage)?;
    load_given(given, env, read_file)
}

pub(super) fn load_given(
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
            id!(config).index(),
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
                    return Err(LoadError::Invalid(bad(&r, id!(worker_class), kind, reason)));
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
        .or_else(|| r.get(id!(wsgi_app)).as_str().map(String::from));
    let config = build(
        r,
        app,
        hooks,
        source.map(|s| s.display()),
        env,
        &mut warnings,
    )
    .map_err(LoadError::Invalid)?;
    let print_config = config.settings.get(id!(print_config)).as_bool();
    let check_config = config.settings.get(id!(check_config)).as_bool();
    Ok(Loaded {
        config,
        warnings,
        print_config,
        check_config,
    })
}

/// `FERROCORN_CMD_ARGS`, else `GUNICORN_CMD_ARGS`, parsed like a command line.
pub(super) fn cmd_args_from_env(
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
pub(super) fn apply_env_defaults(
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

pub(super) fn apply_given(r: &mut Resolved, g: &cli::Given, origin: &Origin) -> Result<(), String> {
    for (i, raw) in &g.values {
        let s = &SETTINGS[*i];
        let v = value::validate(s, raw, origin).map_err(|e| name_flag(e, s, origin))?;
        r.set(*i, v, origin.clone());
    }
    Ok(())
}

/// On the command line a setting is better known by its flag.
pub(super) fn name_flag(msg: String, s: &Setting, origin: &Origin) -> String {
    match (origin, s.flags.last()) {
        (Origin::CommandLine | Origin::CmdArgs(_), Some(flag)) => msg.replacen(
            &format!("Invalid value for {}:", s.name),
            &format!("Invalid value for {flag}:"),
            1,
        ),
        _ => msg,
    }
}

pub(super) fn apply_file(
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
pub(super) fn closest_setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (strsim::levenshtein(name, s.name), s.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}
