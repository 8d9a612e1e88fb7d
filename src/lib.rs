//! ferrocorn: a pre-fork HTTP server for Python web applications.
//!
//! `run(argv)` (called by the `ferrocorn` console script) parses the command
//! line, binds the listeners and runs the arbiter, which forks one pinned
//! worker per slot; each worker runs an io engine, the sans-IO HTTP layer and
//! the WSGI bridge.

#[macro_use]
pub mod log;

pub mod config;
pub mod control;
pub mod engine;
pub mod h2;
pub mod handoff;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod sys;
pub mod tls;
pub mod ws;

#[cfg(feature = "python")]
pub mod arbiter;
#[cfg(feature = "python")]
pub mod asgi;
#[cfg(feature = "python")]
pub mod py;
#[cfg(feature = "python")]
pub mod worker;
#[cfg(feature = "python")]
pub mod wsgi;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(all(feature = "python", not(feature = "system-allocator"), not(test)))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
pub(crate) mod alloc_count;

#[cfg(test)]
#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

#[cfg(feature = "python")]
mod entry {
    use pyo3::prelude::*;

    use crate::config::{self, Parsed};

    /// Run the server with `argv` (as in `sys.argv`); returns the exit code.
    #[pyfunction]
    fn run(py: Python<'_>, argv: Vec<String>) -> i32 {
        if argv.get(1).map(String::as_str) == Some("ctl") {
            // `ferrocorn ctl ...`: a client of a running server's control socket.
            return crate::control::client::main(&argv[2..], &config::default_control_socket());
        }
        let (cfg, check_only) = match config::from_args(&argv) {
            Parsed::Run(cfg) => (*cfg, false),
            Parsed::Check(cfg) => (*cfg, true),
            Parsed::Exit(code) => return code,
            Parsed::Version => {
                let auto = crate::worker::auto_engine();
                print!("{}", config::version_report(&python_description(py), &auto));
                return 0;
            }
        };
        crate::log::set_level(cfg.log_level);
        let start_cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        if let Some(dir) = &cfg.chdir {
            if let Err(e) = std::env::set_current_dir(dir) {
                eprintln!("Error: --chdir {dir:?}: {e}");
                return 1;
            }
        }
        if check_only {
            return crate::worker::check_app(py, &cfg);
        }
        // Whatever the app prints reaches the terminal in order with our log lines.
        let _ = py.run(
            c"import sys\nsys.stdout.flush()\nsys.stderr.flush()",
            None,
            None,
        );
        crate::sys::signal::ignore(nix::sys::signal::Signal::SIGPIPE);
        if cfg.daemon {
            crate::arbiter::daemonize(py);
            // --capture-output re-points stdout/stderr after the daemon's redirect.
            crate::log::reopen();
        }
        let mut arbiter = match crate::arbiter::Arbiter::new(py, argv, start_cwd, cfg) {
            Ok(a) => a,
            Err(e) => {
                crate::error!("{}", e.message);
                if e.code == crate::arbiter::APP_LOAD_ERROR {
                    crate::error!("Shutting down: Master");
                    crate::error!("Reason: App failed to load.");
                }
                return e.code;
            }
        };
        arbiter.run(py)
    }

    /// "CPython 3.12.1 (/path/to/python)", with ", free-threaded" when the
    /// interpreter runs without the GIL.
    fn python_description(py: Python<'_>) -> String {
        let describe = || -> PyResult<String> {
            let sys = py.import("sys")?;
            let platform = py.import("platform")?;
            let implementation: String =
                platform.call_method0("python_implementation")?.extract()?;
            let version: String = platform.call_method0("python_version")?.extract()?;
            let executable: String = sys.getattr("executable")?.extract()?;
            let gil = match sys.getattr("_is_gil_enabled") {
                Ok(f) => f.call0()?.is_truthy()?,
                Err(_) => true,
            };
            let threading = if gil { "" } else { ", free-threaded" };
            Ok(format!(
                "{implementation} {version}{threading} ({executable})"
            ))
        };
        describe().unwrap_or_else(|e| format!("unknown ({e})"))
    }

    /// `gil_used = true`: the worker, its caches and the app threads are
    /// built for a GIL (docs/free-threading.md says what a build without
    /// one needs); a free-threaded interpreter keeps its GIL on for us.
    #[pymodule(gil_used = true)]
    fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::VERSION)?;
        m.add_function(wrap_pyfunction!(run, m)?)?;
        Ok(())
    }
}
