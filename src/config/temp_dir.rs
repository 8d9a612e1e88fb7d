//! `--body-temp-dir`: where request bodies larger than `--body-buffer-size`
//! are kept, as anonymous files (O_TMPFILE: never visible under a name; on a
//! file system without it, a private name removed as soon as it is open).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::http::TempFiles;

/// Makes body files in one directory.
#[derive(Debug)]
pub struct BodyTempDir {
    dir: PathBuf,
}

impl BodyTempDir {
    pub fn new(dir: PathBuf) -> BodyTempDir {
        BodyTempDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn anonymous(&self) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(OFlag::O_TMPFILE.bits())
            .open(&self.dir)
    }

    /// For file systems without O_TMPFILE: an exclusive new name, unlinked at once.
    fn named_then_unlinked(&self) -> io::Result<File> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        loop {
            let path = self.dir.join(format!(
                ".ferrocorn-body-{}-{}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    std::fs::remove_file(&path)?;
                    return Ok(file);
                }
                // Left behind by an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl TempFiles for BodyTempDir {
    fn create(&self) -> io::Result<File> {
        let made = match self.anonymous() {
            Err(e)
                if [Errno::EOPNOTSUPP, Errno::EISDIR, Errno::EINVAL]
                    .iter()
                    .any(|&n| e.raw_os_error() == Some(n as i32)) =>
            {
                self.named_then_unlinked()
            }
            other => other,
        };
        made.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ferrocorn-tempdir-test-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_anonymous_and_hold_what_was_written() {
        let dir = scratch("anon");
        let t = BodyTempDir::new(dir.clone());
        let mut f = t.create().unwrap();
        f.write_all(b"hello").unwrap();
        f.rewind().unwrap();
        let mut back = String::new();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let mut g = t.named_then_unlinked().unwrap();
        g.write_all(b"x").unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let t = BodyTempDir::new(PathBuf::from("/nonexistent/ferrocorn-bodies"));
        let e = t.create().unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/ferrocorn-bodies: "),
            "{e}"
        );
    }
}
