//! `--check-config`: import the app in the master (the one place the master
//! does), with the working directory and Python path a worker would have.

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::Config;
use crate::wsgi::{WorkerInfo, WsgiApp};

/// 0 when the app loads, 1 (with the reason logged) when it does not.
pub fn app(cfg: &Config) -> i32 {
    if let Some(dir) = &cfg.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            crate::error!("Invalid value for chdir: {dir:?}: {e}");
            return 1;
        }
    }
    Python::attach(|py| {
        if let Err(e) = extend_sys_path(py, &cfg.pythonpath) {
            crate::error!("Cannot extend sys.path: {e}");
            return 1;
        }
        let info = WorkerInfo {
            multiprocess: cfg.workers > 1,
            multithread: cfg.threads > 1,
        };
        match WsgiApp::load(py, &cfg.app, info) {
            Ok(_) => 0,
            Err(e) => {
                crate::error!("Failed to load the application {:?}: {}", cfg.app, e.0);
                1
            }
        }
    })
}

fn extend_sys_path(py: Python<'_>, pythonpath: &[String]) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    for p in pythonpath.iter().rev() {
        sys_path.insert(0, p)?;
    }
    Ok(())
}
