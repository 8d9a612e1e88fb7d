//! Python `logging` for the error and access logs, when `logconfig_dict`,
//! `logconfig_json` or `logconfig` is set (gunicorn's `Logger.setup`): the
//! dict is merged over gunicorn's `CONFIG_DEFAULTS`, and error lines go to the
//! `gunicorn.error` logger, access lines to `gunicorn.access` (a config may
//! name `ferrocorn.error`/`ferrocorn.access` instead: those are used when
//! they have handlers).

use super::id;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{Resolved, Value};
use crate::log::Level;

const BRIDGE: &std::ffi::CStr = cr#"
import json, logging, logging.config, sys

CONFIG_DEFAULTS = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": True, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": True, "qualname": "gunicorn.access"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "[%Y-%m-%d %H:%M:%S %z]", "class": "logging.Formatter"},
    },
}

def merged(user):
    # One level deeper than gunicorn's dict.update: a user dict that names its
    # own handlers keeps the default ones the default loggers refer to.
    cfg = dict(CONFIG_DEFAULTS)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "root":
            section = dict(cfg[key])
            section.update(value)
            cfg[key] = section
        else:
            cfg[key] = value
    return cfg

def configure(dict_json, json_path, ini_path):
    if dict_json:
        logging.config.dictConfig(merged(json.loads(dict_json)))
    elif json_path:
        with open(json_path) as f:
            logging.config.dictConfig(merged(json.load(f)))
    else:
        logging.config.fileConfig(ini_path, defaults={"__file__": ini_path, "here": __import__("os").path.dirname(ini_path)},
                                  disable_existing_loggers=False)

def pick(kind):
    ours = logging.getLogger("ferrocorn." + kind)
    if ours.handlers:
        return ours
    return logging.getLogger("gunicorn." + kind)

def reopen():
    for name in [None] + list(logging.Logger.manager.loggerDict):
        log = logging.getLogger(name)
        for h in getattr(log, "handlers", []):
            if isinstance(h, logging.FileHandler):
                h.acquire()
                try:
                    if h.stream:
                        h.close()
                        h.stream = h._open()
                finally:
                    h.release()
"#;

/// Configure Python logging when the settings ask for it, and send our
/// error and access lines there.
pub fn setup(r: &Resolved) -> Result<(), String> {
    let dict_json = match r.get(id!(logconfig_dict)) {
        Value::Json(j) if j.trim() != "{}" => Some(j.clone()),
        _ => None,
    };
    let json_path = r.get(id!(logconfig_json)).as_str().map(String::from);
    let ini_path = r.get(id!(logconfig)).as_str().map(String::from);
    if dict_json.is_none() && json_path.is_none() && ini_path.is_none() {
        crate::log::set_sinks(None, None, None);
        return Ok(());
    }
    let which = if dict_json.is_some() {
        "logconfig_dict"
    } else if json_path.is_some() {
        "logconfig_json"
    } else {
        "logconfig"
    };
    let (error_logger, access_logger, reopen) = Python::attach(|py| -> PyResult<_> {
        let ns = PyDict::new(py);
        py.run(BRIDGE, Some(&ns), Some(&ns))?;
        let get = |n: &str| -> PyResult<Bound<'_, PyAny>> {
            ns.get_item(n)?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(n.to_string()))
        };
        get("configure")?.call1((dict_json, json_path, ini_path))?;
        let pick = get("pick")?;
        Ok((
            pick.call1(("error",))?.unbind(),
            pick.call1(("access",))?.unbind(),
            get("reopen")?.unbind(),
        ))
    })
    .map_err(|e| Python::attach(|py| format!("Invalid value for {which}: {}", e.value(py))))?;
    let error_logger = Arc::new(error_logger);
    let access_logger = Arc::new(access_logger);
    let reopen = Arc::new(reopen);
    crate::log::set_sinks(
        Some(Arc::new(move |level: Level, msg: &str| {
            Python::attach(|py| {
                let _ = error_logger.call_method1(py, "log", (level as u8, msg));
            })
        })),
        Some(Arc::new(move |line: &str| {
            Python::attach(|py| {
                let _ = access_logger.call_method1(py, "info", ("%s", line));
            })
        })),
        Some(Arc::new(move || {
            Python::attach(|py| {
                let _ = reopen.call0(py);
            })
        })),
    );
    Ok(())
}
