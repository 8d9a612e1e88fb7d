//! Where log bytes go: stdout, stderr or a file opened for append, which
//! `reopen` closes and opens again by path (USR1, after logrotate moved it).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Debug)]
pub enum Output {
    Stdout,
    Stderr,
    File { path: PathBuf, file: File },
}

impl Output {
    /// `-` means `dash` (stderr for the error log, stdout for the access log).
    pub fn open(spec: &str, dash: Output) -> io::Result<Output> {
        if spec == "-" {
            return Ok(dash);
        }
        let path = PathBuf::from(spec);
        let file = open_append(&path)?;
        Ok(Output::File { path, file })
    }

    /// Open the file again by its path. The old descriptor is kept when that fails.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Output::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// One `write` call per buffer where the kernel allows, so lines from
    /// several processes appending to one file do not interleave.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => io::stdout().lock().write_all(buf),
            Output::Stderr => io::stderr().lock().write_all(buf),
            Output::File { file, .. } => file.write_all(buf),
        }
    }

    pub fn file(&self) -> Option<&File> {
        match self {
            Output::File { file, .. } => Some(file),
            _ => None,
        }
    }

    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            Output::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_the_path_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut out = Output::open(path.to_str().unwrap(), Output::Stderr).unwrap();
        out.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        out.reopen().unwrap();
        out.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("a.log.1")).unwrap(),
            "one\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dash_means_the_given_stream() {
        assert!(matches!(
            Output::open("-", Output::Stdout).unwrap(),
            Output::Stdout
        ));
        assert!(Output::open("/nonexistent-dir/x.log", Output::Stderr).is_err());
    }
}
