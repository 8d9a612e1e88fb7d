//! Where the control socket goes: `--control-socket`, else gunicorn's rule
//! with ferrocorn's name (`$XDG_RUNTIME_DIR/ferrocorn.ctl` when that
//! directory exists, else `~/.ferrocorn/ferrocorn.ctl`).

use std::path::{Path, PathBuf};

use super::id;

/// The socket's file name in the default places.
pub const FILE_NAME: &str = "ferrocorn.ctl";
/// The directory under the home directory used without `$XDG_RUNTIME_DIR`.
pub const HOME_DIR: &str = ".ferrocorn";

/// The default control socket for this environment. `is_dir` is asked
/// about `$XDG_RUNTIME_DIR` (gunicorn uses it only when it exists).
pub fn default_path(
    env: &dyn Fn(&str) -> Option<String>,
    is_dir: &dyn Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(xdg) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        if is_dir(Path::new(&xdg)) {
            return Path::new(&xdg).join(FILE_NAME);
        }
    }
    let home = env("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "/".into());
    Path::new(&home).join(HOME_DIR).join(FILE_NAME)
}

/// The control socket to open: `None` with `--no-control-socket`. A
/// relative path is relative to the directory the server runs in.
pub(super) fn control_socket(
    r: &super::Resolved,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<PathBuf>, String> {
    if r.get(id!(control_socket_disable)).as_bool() {
        return Ok(None);
    }
    match r.get(id!(control_socket)).as_str() {
        Some("") => Err(super::bad(r, id!(control_socket), "", "expected a path")),
        Some(p) => Ok(Some(PathBuf::from(p))),
        None => Ok(Some(default_path(env, &|p| p.is_dir()))),
    }
}

/// The default control socket, from the process environment.
pub fn default_control_socket() -> PathBuf {
    default_path(&|n| std::env::var(n).ok(), &|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    fn resolve(args: &[&str], vars: &[(&str, &str)]) -> Result<Option<PathBuf>, String> {
        let argv: Vec<String> = std::iter::once("ferrocorn")
            .chain(args.iter().copied())
            .chain(["app:app"])
            .map(String::from)
            .collect();
        let no_file =
            |_: &super::super::ConfigSource| -> Result<super::super::FileSettings, String> {
                Err("no config file".to_string())
            };
        super::super::load(&argv, &env(vars), &no_file)
            .map(|l| l.config.control_socket)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn control_socket_is_on_by_default_at_the_default_path() {
        let dir = std::env::temp_dir();
        let vars = [("XDG_RUNTIME_DIR", dir.to_str().unwrap())];
        assert_eq!(resolve(&[], &vars), Ok(Some(dir.join(FILE_NAME))));
        assert_eq!(
            resolve(&["--control-socket", "/run/app.ctl"], &vars),
            Ok(Some(PathBuf::from("/run/app.ctl")))
        );
        assert_eq!(
            resolve(
                &["--control-socket", "/run/app.ctl", "--no-control-socket"],
                &vars
            ),
            Ok(None)
        );
    }

    #[test]
    fn empty_control_socket_path_is_refused_by_name() {
        let e = resolve(&["--control-socket", ""], &[]).unwrap_err();
        assert!(e.contains("--control-socket"), "{e}");
    }

    #[test]
    fn xdg_runtime_dir_wins_when_it_exists() {
        let e = env(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/home/u")]);
        assert_eq!(
            default_path(&e, &|_| true),
            PathBuf::from("/run/user/1000/ferrocorn.ctl")
        );
    }

    #[test]
    fn home_is_used_without_a_usable_xdg_runtime_dir() {
        let e = env(&[("XDG_RUNTIME_DIR", "/gone"), ("HOME", "/home/u")]);
        assert_eq!(
            default_path(&e, &|_| false),
            PathBuf::from("/home/u/.ferrocorn/ferrocorn.ctl")
        );
        let e = env(&[("XDG_RUNTIME_DIR", ""), ("HOME", "/home/u")]);
        assert_eq!(
            default_path(&e, &|_| true),
            PathBuf::from("/home/u/.ferrocorn/ferrocorn.ctl")
        );
    }
}
