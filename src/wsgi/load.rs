//! Finding the app from its spec, with gunicorn's rules and messages:
//! `module` (the `application` attribute), `module:name`, and
//! `module:factory(args)` whose arguments are Python literals.

use pyo3::exceptions::{PyAttributeError, PyImportError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::report::format_exception;
use super::AppLoadError;

/// `repr()` of a str, for messages that quote like Python.
fn quote(py: Python<'_>, s: &str) -> String {
    match PyString::new(py, s).repr() {
        Ok(r) => r.to_string(),
        Err(_) => format!("{s:?}"),
    }
}

fn traceback_error(py: Python<'_>, err: &PyErr) -> AppLoadError {
    AppLoadError(format_exception(py, err))
}

/// gunicorn runs from its `--chdir` directory (the current one by default)
/// with that directory first on `sys.path`.
fn add_cwd_to_sys_path(py: Python<'_>) -> PyResult<()> {
    let cwd = py.import("os")?.call_method0("getcwd")?;
    let path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    if !path.contains(&cwd)? {
        path.insert(0, cwd)?;
    }
    Ok(())
}

/// What follows the `:`: a name, or a call of a name with literal arguments.
enum Target<'py> {
    Name(String),
    Call {
        name: String,
        args: Bound<'py, PyList>,
        kwargs: Bound<'py, PyDict>,
    },
}

fn parse_target<'py>(py: Python<'py>, obj: &str) -> Result<Target<'py>, AppLoadError> {
    let cant_parse = || {
        AppLoadError(format!(
            "Failed to parse {} as an attribute name or function call.",
            quote(py, obj)
        ))
    };
    let ast = py.import("ast").map_err(|e| traceback_error(py, &e))?;
    let kwargs = PyDict::new(py);
    kwargs
        .set_item("mode", "eval")
        .map_err(|e| traceback_error(py, &e))?;
    let expr = ast
        .call_method("parse", (obj,), Some(&kwargs))
        .and_then(|tree| tree.getattr("body"))
        .map_err(|_| cant_parse())?;
    let is = |node: &Bound<'py, PyAny>, class: &str| -> Result<bool, AppLoadError> {
        let class = ast.getattr(class).map_err(|e| traceback_error(py, &e))?;
        node.is_instance(&class)
            .map_err(|e| traceback_error(py, &e))
    };
    let name_of = |node: &Bound<'py, PyAny>| -> Result<String, AppLoadError> {
        node.getattr("id")
            .and_then(|id| id.extract::<String>())
            .map_err(|e| traceback_error(py, &e))
    };

    if is(&expr, "Name")? {
        return Ok(Target::Name(name_of(&expr)?));
    }
    if !is(&expr, "Call")? {
        return Err(cant_parse());
    }
    let func = expr.getattr("func").map_err(|e| traceback_error(py, &e))?;
    if !is(&func, "Name")? {
        return Err(AppLoadError(format!(
            "Function reference must be a simple name: {}",
            quote(py, obj)
        )));
    }
    let name = name_of(&func)?;
    let not_literal = || {
        AppLoadError(format!(
            "Failed to parse arguments as literal values: {}",
            quote(py, obj)
        ))
    };
    let literal_eval = ast
        .getattr("literal_eval")
        .map_err(|e| traceback_error(py, &e))?;
    let args = PyList::empty(py);
    let call_kwargs = PyDict::new(py);
    let collect = || -> PyResult<()> {
        for arg in expr.getattr("args")?.try_iter()? {
            args.append(literal_eval.call1((arg?,))?)?;
        }
        for kw in expr.getattr("keywords")?.try_iter()? {
            let kw = kw?;
            call_kwargs.set_item(
                kw.getattr("arg")?,
                literal_eval.call1((kw.getattr("value")?,))?,
            )?;
        }
        Ok(())
    };
    collect().map_err(|_| not_literal())?;
    Ok(Target::Call {
        name,
        args,
        kwargs: call_kwargs,
    })
}

/// The factory raised TypeError because the call itself did not fit its
/// signature (rather than from inside it): no frame of the factory's code
/// is in the traceback.
fn called_with_wrong_args(py: Python<'_>, factory: &Bound<'_, PyAny>, err: &PyErr) -> bool {
    let Some(tb) = err.traceback(py) else {
        return true;
    };
    let Ok(code) = factory.getattr("__code__") else {
        return false;
    };
    let mut tb = tb.into_any();
    while !tb.is_none() {
        let same = tb
            .getattr("tb_frame")
            .and_then(|f| f.getattr("f_code"))
            .map(|c| c.is(&code))
            .unwrap_or(false);
        if same {
            return false;
        }
        tb = match tb.getattr("tb_next") {
            Ok(next) => next,
            Err(_) => return false,
        };
    }
    true
}

/// `--paste`: PasteDeploy's `loadapp(uri, relative_to=os.getcwd(),
/// global_conf=...)`, as gunicorn's paster application calls it.
pub(crate) fn load_paste(
    py: Python<'_>,
    uri: &str,
    global_conf: &[(String, String)],
) -> Result<Py<PyAny>, AppLoadError> {
    add_cwd_to_sys_path(py).map_err(|e| traceback_error(py, &e))?;
    let deploy = match py.import("paste.deploy") {
        Ok(m) => m,
        Err(e) if e.is_instance_of::<PyImportError>(py) => {
            return Err(AppLoadError(format!(
                "--paste needs PasteDeploy, which cannot be imported ({}); \
                 install it in the server's environment: pip install PasteDeploy",
                e.value(py)
            )))
        }
        Err(e) => return Err(traceback_error(py, &e)),
    };
    let load = || -> PyResult<Bound<'_, PyAny>> {
        let conf = PyDict::new(py);
        for (k, v) in global_conf {
            conf.set_item(k, v)?;
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("relative_to", py.import("os")?.call_method0("getcwd")?)?;
        kwargs.set_item("global_conf", conf)?;
        deploy.call_method("loadapp", (uri,), Some(&kwargs))
    };
    let app = load().map_err(|e| traceback_error(py, &e))?;
    if !app.is_callable() {
        return Err(AppLoadError(format!(
            "Application object must be callable: {uri} gave {}",
            app.repr().map(|r| r.to_string()).unwrap_or_default()
        )));
    }
    Ok(app.unbind())
}

pub(crate) fn import_app(py: Python<'_>, spec: &str) -> Result<Py<PyAny>, AppLoadError> {
    add_cwd_to_sys_path(py).map_err(|e| traceback_error(py, &e))?;
    let (module, obj) = spec.split_once(':').unwrap_or((spec, "application"));

    let imported = py
        .import("importlib")
        .and_then(|importlib| importlib.call_method1("import_module", (module,)));
    let module_obj = match imported {
        Ok(m) => m,
        Err(e) => {
            if e.is_instance_of::<PyImportError>(py)
                && module.ends_with(".py")
                && std::path::Path::new(module).exists()
            {
                let stem = module.strip_suffix(".py").unwrap_or(module);
                return Err(AppLoadError(format!(
                    "Failed to find application, did you mean '{stem}:{obj}'?"
                )));
            }
            return Err(traceback_error(py, &e));
        }
    };

    let target = parse_target(py, obj)?;
    let name = match &target {
        Target::Name(name) | Target::Call { name, .. } => name.as_str(),
    };
    let mut app = match module_obj.getattr(name) {
        Ok(a) => a,
        Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
            return Err(AppLoadError(format!(
                "Failed to find attribute {} in {}.",
                quote(py, name),
                quote(py, module)
            )))
        }
        Err(e) => return Err(traceback_error(py, &e)),
    };
    if let Target::Call { args, kwargs, .. } = &target {
        let args = args.to_tuple();
        app = match app.call(args, Some(kwargs)) {
            Ok(a) => a,
            Err(e)
                if e.is_instance_of::<PyTypeError>(py) && called_with_wrong_args(py, &app, &e) =>
            {
                return Err(AppLoadError(crate::py::exception_only(py, &e)));
            }
            Err(e) => return Err(traceback_error(py, &e)),
        };
    }
    if app.is_none() {
        return Err(AppLoadError(format!(
            "Failed to find application object: {}",
            quote(py, obj)
        )));
    }
    if !app.is_callable() {
        return Err(AppLoadError("Application object must be callable.".into()));
    }
    Ok(app.unbind())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{module, with_py, worker};
    use super::super::WsgiApp;
    use super::*;

    const MODULE: &str = r#"
calls = []

def application(environ, start_response):
    start_response("200 OK", [])
    return [b"default"]

def named(environ, start_response):
    start_response("200 OK", [])
    return [b"named"]

def factory(*args, **kwargs):
    calls.append((args, kwargs))
    return named

def none_factory():
    return None

def strict_factory(a):
    return named

def broken_factory():
    raise TypeError("raised inside the factory")

not_callable = 42

class Holder:
    app = named
    @staticmethod
    def make():
        return named
holder = Holder()
"#;

    fn load_err(py: Python<'_>, spec: &str) -> String {
        match WsgiApp::load(py, spec, worker()) {
            Ok(_) => panic!("{spec} should not load"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn loads_application_by_default_or_by_name() {
        with_py(|py| {
            let (name, m) = module(py, MODULE);
            let default = import_app(py, &name).unwrap();
            assert!(default.bind(py).is(m.getattr("application").unwrap()));
            let named = import_app(py, &format!("{name}:named")).unwrap();
            assert!(named.bind(py).is(m.getattr("named").unwrap()));
        });
    }

    #[test]
    fn factory_is_called_with_literal_arguments() {
        with_py(|py| {
            let (name, m) = module(py, MODULE);
            let app = import_app(py, &format!("{name}:factory()")).unwrap();
            assert!(app.bind(py).is(m.getattr("named").unwrap()));
            import_app(
                py,
                &format!("{name}:factory('a', 1, debug=True, n=None, t=(1, [2]))"),
            )
            .unwrap();
            let calls = m.getattr("calls").unwrap();
            assert_eq!(
                calls.repr().unwrap().to_string(),
                "[((), {}), (('a', 1), {'debug': True, 'n': None, 't': (1, [2])})]"
            );
        });
    }

    #[test]
    fn attribute_paths_and_non_literal_arguments_are_refused() {
        with_py(|py| {
            let (name, _m) = module(py, MODULE);
            assert_eq!(
                load_err(py, &format!("{name}:holder.app")),
                "Failed to parse 'holder.app' as an attribute name or function call."
            );
            assert_eq!(
                load_err(py, &format!("{name}:holder.make()")),
                "Function reference must be a simple name: 'holder.make()'"
            );
            assert_eq!(
                load_err(py, &format!("{name}:factory(named)")),
                "Failed to parse arguments as literal values: 'factory(named)'"
            );
            assert_eq!(
                load_err(py, &format!("{name}:1 +")),
                "Failed to parse '1 +' as an attribute name or function call."
            );
        });
    }

    #[test]
    fn none_or_non_callable_app_is_an_error() {
        with_py(|py| {
            let (name, _m) = module(py, MODULE);
            assert_eq!(
                load_err(py, &format!("{name}:none_factory()")),
                "Failed to find application object: 'none_factory()'"
            );
            assert_eq!(
                load_err(py, &format!("{name}:not_callable")),
                "Application object must be callable."
            );
        });
    }

    #[test]
    fn missing_attribute_is_named() {
        with_py(|py| {
            let (name, _m) = module(py, MODULE);
            assert_eq!(
                load_err(py, &format!("{name}:nope")),
                format!("Failed to find attribute 'nope' in '{name}'.")
            );
            assert_eq!(
                load_err(py, &format!("{name}:nope()")),
                format!("Failed to find attribute 'nope' in '{name}'.")
            );
        });
    }

    #[test]
    fn factory_argument_mismatch_gives_the_type_error_alone() {
        with_py(|py| {
            let (name, _m) = module(py, MODULE);
            let msg = load_err(py, &format!("{name}:strict_factory(1, 2)"));
            assert!(
                msg.starts_with("TypeError: strict_factory() takes 1 positional argument"),
                "{msg}"
            );
            assert!(!msg.contains("Traceback"));
            let msg = load_err(py, &format!("{name}:broken_factory()"));
            assert!(
                msg.starts_with("Traceback (most recent call last):"),
                "{msg}"
            );
            assert!(
                msg.ends_with("TypeError: raised inside the factory"),
                "{msg}"
            );
        });
    }

    #[test]
    fn missing_module_error_carries_the_traceback() {
        with_py(|py| {
            let msg = load_err(py, "no_such_module_for_ferrocorn_tests:app");
            assert!(
                msg.starts_with("Traceback (most recent call last):"),
                "{msg}"
            );
            assert!(
                msg.ends_with(
                    "ModuleNotFoundError: No module named 'no_such_module_for_ferrocorn_tests'"
                ),
                "{msg}"
            );
        });
    }

    #[test]
    fn import_error_inside_the_module_carries_its_traceback() {
        with_py(|py| {
            let dir = std::env::temp_dir().join(format!("ferrocorn_mods_{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("ferrocorn_bad_import.py"),
                "import os\nimport no_such_dependency_for_ferrocorn_tests\n",
            )
            .unwrap();
            let sys_path = py.import("sys").unwrap().getattr("path").unwrap();
            sys_path
                .call_method1("insert", (0, dir.to_string_lossy().into_owned()))
                .unwrap();
            let msg = load_err(py, "ferrocorn_bad_import:app");
            let _ = std::fs::remove_dir_all(&dir);
            assert!(
                msg.starts_with("Traceback (most recent call last):"),
                "{msg}"
            );
            assert!(msg.contains("ferrocorn_bad_import.py\", line 2"), "{msg}");
            assert!(
                msg.ends_with("No module named 'no_such_dependency_for_ferrocorn_tests'"),
                "{msg}"
            );
        });
    }

    #[test]
    fn a_python_file_name_gets_a_hint() {
        with_py(|py| {
            let dir = std::env::temp_dir();
            let path = dir.join(format!("ferrocorn_hint_{}.py", std::process::id()));
            std::fs::write(&path, "application = None\n").unwrap();
            let spec = path.to_string_lossy().into_owned();
            let msg = load_err(py, &spec);
            let _ = std::fs::remove_file(&path);
            let stem = spec.strip_suffix(".py").unwrap();
            assert_eq!(
                msg,
                format!("Failed to find application, did you mean '{stem}:application'?")
            );
        });
    }

    #[test]
    fn current_directory_is_put_on_sys_path() {
        with_py(|py| {
            let (name, _m) = module(py, MODULE);
            import_app(py, &name).unwrap();
            let cwd = py.import("os").unwrap().call_method0("getcwd").unwrap();
            let path = py.import("sys").unwrap().getattr("path").unwrap();
            assert!(path.contains(cwd).unwrap());
        });
    }
}
