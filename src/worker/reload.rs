//! `--reload`: notice when the app's code changes, so the worker can ask
//! the arbiter for a fresh replacement (development only).
//!
//! The directories of every file in `sys.modules` and of the
//! `--reload-extra-file` paths and glob patterns are watched with inotify
//! (the worker's io engine wakes the loop when something changed there);
//! once a second the list is refreshed (newly imported modules) and the
//! files' modification times compared, which also covers filesystems where
//! inotify sees nothing (network mounts, some container volumes).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::time::{Duration, Instant, SystemTime};

use pyo3::prelude::*;

const EVERY: Duration = Duration::from_secs(1);

pub struct Reloader {
    seen: HashMap<PathBuf, SystemTime>,
    extra: Vec<String>,
    next_check: Instant,
    inotify: Option<Inotify>,
    watched_dirs: HashSet<PathBuf>,
}

impl Reloader {
    /// Record the files as they are now (after the app was imported).
    pub fn new(py: Python<'_>, extra: &[String]) -> Reloader {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok();
        let mut r = Reloader {
            seen: HashMap::new(),
            extra: extra.to_vec(),
            next_check: Instant::now(),
            inotify,
            watched_dirs: HashSet::new(),
        };
        let _ = r.changed_file(py);
        r.next_check = Instant::now() + EVERY;
        r
    }

    /// The inotify descriptor for the engine to watch (None: polling only).
    pub fn fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(|i| i.as_fd().as_raw_fd())
    }

    /// inotify reported activity: drain it and look at once.
    pub fn notified(&mut self, py: Python<'_>) -> Option<PathBuf> {
        let touched = match &self.inotify {
            Some(i) => i
                .read_events()
                .map(|events| !events.is_empty())
                .unwrap_or(false),
            None => false,
        };
        if !touched {
            return None;
        }
        self.next_check = Instant::now() + EVERY;
        self.changed_file(py)
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
            if let (Some(ino), Some(dir)) = (&self.inotify, path.parent()) {
                if !self.watched_dirs.contains(dir) {
                    let mask = AddWatchFlags::IN_MODIFY
                        | AddWatchFlags::IN_CLOSE_WRITE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_ATTRIB;
                    if ino.add_watch(dir, mask).is_ok() {
                        self.watched_dirs.insert(dir.to_path_buf());
                    }
                }
            }
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
