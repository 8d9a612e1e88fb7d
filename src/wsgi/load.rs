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
                let only = py
                    .import("traceback")
                    .and_then(|tb| {
                        tb.call_method1("format_exception_only", (e.get_type(py), e.value(py)))
                    })
                    .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
                    .and_then(|s| s.extract::<String>())
                    .unwrap_or_else(|_| e.to_string());
                return Err(AppLoadError(only.trim().to_string()));
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
