//! The config file: Python executed by the embedded interpreter, as gunicorn
//! does (`PATH`, `file:PATH` or `python:MODULE`). Every module-level name that
//! matches a setting is returned for validation; callables for hooks keep
//! their Python object. Other public names that are not modules, classes or
//! functions are reported as unknown (gunicorn ignores them silently).

use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::settings::{self, Kind};
use super::{ConfigSource, FileSettings, Raw};

/// Run the config file and collect its settings. A syntax error or an
/// exception names the file and line.
pub fn read(src: &ConfigSource) -> Result<FileSettings, String> {
    Python::attach(|py| read_in(py, src))
}

fn read_in(py: Python<'_>, src: &ConfigSource) -> Result<FileSettings, String> {
    let namespace: Bound<'_, PyDict> = match src {
        ConfigSource::File(path) => {
            let code = std::fs::read_to_string(path)
                .map_err(|e| format!("Invalid value for config: '{path}': cannot read it: {e}"))?;
            let ns = PyDict::new(py);
            let run = || -> PyResult<()> {
                ns.set_item("__file__", path)?;
                ns.set_item("__name__", "__config__")?;
                ns.set_item("__builtins__", py.import("builtins")?)?;
                let builtins = py.import("builtins")?;
                let compiled =
                    builtins.call_method1("compile", (code.as_str(), path.as_str(), "exec"))?;
                builtins.call_method1("exec", (compiled, &ns))?;
                Ok(())
            };
            run().map_err(|e| file_error(py, path, &e))?;
            ns
        }
        ConfigSource::Module(name) => {
            let module = py
                .import("importlib")
                .and_then(|m| m.call_method1("import_module", (name.as_str(),)))
                .map_err(|e| file_error(py, &format!("python:{name}"), &e))?;
            module
                .getattr("__dict__")
                .and_then(|d| d.cast_into::<PyDict>().map_err(Into::into))
                .map_err(|e| file_error(py, &format!("python:{name}"), &e))?
        }
    };
    collect(py, &namespace).map_err(|e| format!("config file {}: {e}", src.display()))
}

/// "Error in config file PATH, line N: SyntaxError: ..." plus the traceback.
fn file_error(py: Python<'_>, path: &str, err: &PyErr) -> String {
    let value = err.value(py);
    let line = value
        .getattr("lineno")
        .ok()
        .and_then(|l| l.extract::<i64>().ok())
        .or_else(|| last_line_in(py, err, path));
    let only = crate::py::exception_only(py, err);
    let tb = crate::py::exception_text(py, err);
    let at = match line {
        Some(n) => format!("{path}, line {n}"),
        None => path.to_string(),
    };
    let is_syntax = err.is_instance_of::<pyo3::exceptions::PySyntaxError>(py);
    if is_syntax {
        format!("Error in config file {at}: {only}")
    } else {
        format!("Error in config file {at}: {only}\n{tb}")
    }
}

/// The line of the innermost traceback frame that ran in the config file.
fn last_line_in(py: Python<'_>, err: &PyErr, path: &str) -> Option<i64> {
    let mut tb = err.traceback(py).map(|t| t.into_any());
    let mut found = None;
    while let Some(t) = tb {
        let file: Option<String> = t
            .getattr("tb_frame")
            .and_then(|f| f.getattr("f_code"))
            .and_then(|c| c.getattr("co_filename"))
            .and_then(|s| s.extract())
            .ok();
        if file.as_deref() == Some(path) {
            found = t.getattr("tb_lineno").and_then(|l| l.extract()).ok();
        }
        tb = t.getattr("tb_next").ok().filter(|n| !n.is_none());
    }
    found
}

fn collect(py: Python<'_>, ns: &Bound<'_, PyDict>) -> PyResult<FileSettings> {
    let inspect = py.import("inspect")?;
    let mut out = FileSettings::default();
    for (k, v) in ns.iter() {
        let Ok(name) = k.extract::<String>() else {
            continue;
        };
        if name.starts_with('_') {
            continue;
        }
        match settings::find(&name) {
            Some((_, s)) => {
                let raw = to_raw(py, &v)?;
                if matches!(s.kind, Kind::Hook { .. }) && v.is_callable() {
                    out.callables.push((name.clone(), v.clone().unbind()));
                }
                out.values.push((name, raw));
            }
            None => {
                let ignorable = inspect.call_method1("ismodule", (&v,))?.is_truthy()?
                    || inspect.call_method1("isclass", (&v,))?.is_truthy()?
                    || v.is_callable();
                if !ignorable {
                    out.unknown.push(name);
                }
            }
        }
    }
    out.unknown.sort();
    Ok(out)
}

/// A Python value's shape, for the validators.
fn to_raw(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Raw> {
    if v.is_none() {
        return Ok(Raw::None);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Raw::Bool(b.is_true()));
    }
    if v.cast::<PyInt>().is_ok() {
        return Ok(match v.extract::<i64>() {
            Ok(n) => Raw::Int(n),
            Err(_) => Raw::Other {
                type_name: "int".into(),
                repr: v.repr()?.to_string(),
            },
        });
    }
    if v.cast::<PyFloat>().is_ok() {
        return Ok(Raw::Float(v.extract()?));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Raw::Str(s.to_string()));
    }
    if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
        let mut items = Vec::new();
        for item in v.try_iter()? {
            items.push(to_raw(py, &item?)?);
        }
        return Ok(Raw::List(items));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut pairs = Some(Vec::new());
        for (k, val) in d.iter() {
            match (k.extract::<String>(), val.extract::<String>()) {
                (Ok(k), Ok(val)) => {
                    if let Some(p) = pairs.as_mut() {
                        p.push((k, val));
                    }
                }
                _ => pairs = None,
            }
        }
        let json = py
            .import("json")?
            .call_method(
                "dumps",
                (d,),
                Some(&[("default", py.import("builtins")?.getattr("repr")?)].into_py_dict(py)?),
            )?
            .extract::<String>()?;
        return Ok(Raw::Dict {
            pairs,
            json,
            repr: v.repr()?.to_string(),
        });
    }
    if v.is_callable() {
        return Ok(Raw::Callable {
            arity: arity(py, v),
            repr: v.repr()?.to_string(),
        });
    }
    let type_name = v.get_type().name()?.to_string();
    Ok(Raw::Other {
        type_name,
        repr: v.repr()?.to_string(),
    })
}

/// gunicorn's `util.get_arity`: the number of positional parameters.
fn arity(py: Python<'_>, f: &Bound<'_, PyAny>) -> Option<usize> {
    let code = c"def _arity(f):\n    import inspect\n    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)\n    return sum(1 for p in inspect.signature(f).parameters.values() if p.kind in kinds)\n";
    let ns = PyDict::new(py);
    py.run(code, Some(&ns), Some(&ns)).ok()?;
    ns.get_item("_arity")
        .ok()??
        .call1((f,))
        .ok()?
        .extract()
        .ok()
}

/// `-e KEY=VALUE`: set in `os.environ` (which also calls putenv), so both
/// Python code and workers forked later see them.
pub fn set_os_environ(pairs: &[(String, String)]) {
    Python::attach(|py| {
        let set = || -> PyResult<()> {
            let environ = py.import("os")?.getattr("environ")?;
            for (k, v) in pairs {
                environ.set_item(k, v)?;
            }
            Ok(())
        };
        if let Err(e) = set() {
            crate::error!("Cannot set the -e variables: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_code(code: &str) -> Result<FileSettings, String> {
        Python::initialize();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ferrocorn-conf-{}-{n}.py", std::process::id()));
        std::fs::write(&path, code).unwrap();
        let out = read(&ConfigSource::File(path.to_string_lossy().into_owned()));
        let _ = std::fs::remove_file(&path);
        out
    }

    #[test]
    fn values_keep_their_python_shape() {
        let fs = read_code(
            "import os\nbind = ['a:1', 'b:2']\nworkers = 3\ndaemon = True\nloglevel = 'debug'\n\
             secure_scheme_headers = {'X-P': 'https'}\nlogconfig_dict = {'version': 1, 'x': [1]}\n\
             timeout = 2.5\n_private = 1\nhelper = 'x'\ndef on_starting(server): pass\n\
             def util(a, b): pass\n",
        )
        .unwrap();
        let get = |n: &str| {
            fs.values
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("bind"),
            Some(Raw::List(vec![
                Raw::Str("a:1".into()),
                Raw::Str("b:2".into())
            ]))
        );
        assert_eq!(get("workers"), Some(Raw::Int(3)));
        assert_eq!(get("daemon"), Some(Raw::Bool(true)));
        assert_eq!(get("timeout"), Some(Raw::Float(2.5)));
        match get("secure_scheme_headers") {
            Some(Raw::Dict { pairs, .. }) => {
                assert_eq!(pairs, Some(vec![("X-P".into(), "https".into())]))
            }
            other => panic!("{other:?}"),
        }
        match get("logconfig_dict") {
            Some(Raw::Dict {
                pairs: None, json, ..
            }) => assert_eq!(json, r#"{"version": 1, "x": [1]}"#),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            get("on_starting"),
            Some(Raw::Callable { arity: Some(1), .. })
        ));
        assert_eq!(fs.callables.len(), 1);
        assert_eq!(fs.unknown, vec!["helper".to_string()]);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = read_code("workers = 2\nbind = [\n").err().unwrap();
        assert!(
            err.contains(", line 2") && err.contains("SyntaxError"),
            "{err}"
        );
    }

    #[test]
    fn exceptions_name_the_line_that_raised() {
        let err = read_code("x = 1\n\nraise ValueError('nope')\n")
            .err()
            .unwrap();
        assert!(
            err.contains(", line 3: ValueError: nope") && err.contains("Traceback"),
            "{err}"
        );
    }
}
