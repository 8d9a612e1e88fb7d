//! `--reload`: notice when the app's code changes, so the worker can ask
//! the arbiter for a fresh replacement (development only).
//!
//! Polls, once a second, the modification times of every file in
//! `sys.modules` and of `--reload-extra-file` paths and glob patterns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use pyo3::prelude::*;

const EVERY: Duration = Duration::from_secs(1);

pub struct Reloader {
    seen: HashMap<PathBuf, SystemTime>,
    extra: Vec<String>,
    next_check: Instant,
}

impl Reloader {
    /// Record the files as they are now (after the app was imported).
    pub fn new(py: Python<'_>, extra: &[String]) -> Reloader {
        let mut r = Reloader {
            seen: HashMap::new(),
            extra: extra.to_vec(),
            next_check: Instant::now(),
        };
        let _ = r.changed_file(py);
        r.next_check = Instant::now() + EVERY;
        r
    }

    /// A watched file that changed since the last look, at most once a second.
    pub fn poll(&mut self, py: Python<'_>) -> Option<PathBuf> {
        if Instant::now() < self.next_check {
            return None;
        }
        self.next_check = Instant::now() + EVERY;
        self.changed_file(py)
    }

    fn changed_file(&mut self, py: Python<'_>) -> Option<PathBuf> {
        let mut changed = None;
        for path in watched(py, &self.extra) {
            let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
                continue;
            };
            match self.seen.insert(path.clone(), modified) {
                Some(before) if before != modified && changed.is_none() => changed = Some(path),
                _ => {}
            }
        }
        changed
    }
}

/// The source files of every imported module, plus the extra files and globs.
fn watched(py: Python<'_>, extra: &[String]) -> Vec<PathBuf> {
    let code = c"[getattr(m, '__file__', None) for m in list(__import__('sys').modules.values())]";
    let mut files: Vec<PathBuf> = py
        .eval(code, None, None)
        .and_then(|v| v.extract::<Vec<Option<String>>>())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .collect();
    if !extra.is_empty() {
        let globbed = py.import("glob").and_then(|g| {
            let mut out = Vec::new();
            for pattern in extra {
                let found: Vec<String> = g.getattr("glob")?.call1((pattern,))?.extract()?;
                out.extend(found);
            }
            Ok(out)
        });
        files.extend(globbed.unwrap_or_default().into_iter().map(PathBuf::from));
    }
    files
}
