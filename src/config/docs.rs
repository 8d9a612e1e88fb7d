//! Text generated from the settings table: `docs/settings.md` and
//! `--print-config`.

use std::fmt::Write as _;

use super::settings::{Default, Kind, Section, Support, SETTINGS};
use super::value::{expected, Value};
use super::Resolved;

/// The settings reference (docs/settings.md), grouped by section.
pub fn settings_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Settings\n\n");
    out.push_str(
        "<!-- Generated from src/config/settings.rs by `ferrocorn --print-settings-doc`; do not edit. -->\n\n",
    );
    out.push_str(
        "Every gunicorn setting has a row here, under gunicorn's name (the variable a config file sets).\n\
         Values come from, highest first: the command line, `FERROCORN_CMD_ARGS` (else `GUNICORN_CMD_ARGS`),\n\
         the config file (`-c`, else `./ferrocorn.conf.py`, else `./gunicorn.conf.py`), the environment\n\
         variable named in the row, and the default. Settings marked *not implemented* are accepted, and\n\
         setting one to anything but its default logs a warning naming it.\n\n",
    );
    for section in Section::ALL {
        let rows: Vec<_> = SETTINGS.iter().filter(|s| s.section == section).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n", section.title());
        for s in rows {
            let _ = writeln!(out, "### `{}`\n", s.name);
            let mut flags: Vec<String> = s
                .flags
                .iter()
                .map(|f| match s.kind {
                    Kind::Bool => format!("`{f}`"),
                    _ => format!("`{f} {}`", s.meta),
                })
                .collect();
            if let Some(n) = s.negative_flag {
                flags.push(format!("`{n}`"));
            }
            let flags = if flags.is_empty() {
                "config file only".to_string()
            } else {
                flags.join(", ")
            };
            let _ = writeln!(out, "* Command line: {flags}");
            if let Some(env) = s.env {
                let _ = writeln!(out, "* Environment: `{env}`");
            }
            let _ = writeln!(out, "* Value: {}", expected(s.kind));
            if !matches!(s.kind, Kind::Hook { .. }) {
                let _ = writeln!(out, "* Default: `{}`", default_text(s.default));
            }
            if let Support::No(reason) = s.support {
                let _ = writeln!(out, "* *Not implemented*: {reason}.");
            }
            let _ = writeln!(out, "\n{}\n", s.doc);
        }
    }
    out
}

fn default_text(d: Default) -> String {
    Value::from_default(d).to_python()
}

/// `--print-config`: `name = value` for every setting, sorted by name, as
/// gunicorn prints its `Config` (strings bare, other values as Python literals).
pub fn print_config(r: &Resolved) -> String {
    let mut rows: Vec<(&str, String)> = r
        .iter()
        .map(|(s, v, _)| {
            let shown = match v {
                Value::Str(s) => s.clone(),
                other => other.to_python(),
            };
            (s.name, shown)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, v) in rows {
        let _ = writeln!(out, "{name:width$} = {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_has_every_setting_under_its_section() {
        let md = settings_markdown();
        for s in SETTINGS {
            assert!(md.contains(&format!("### `{}`", s.name)), "{}", s.name);
        }
        assert!(md.contains("* Command line: `-b ADDRESS`, `--bind ADDRESS`"));
        assert!(md.contains("* Environment: `WEB_CONCURRENCY`"));
        assert!(md.find("## Server Socket").unwrap() < md.find("### `bind`").unwrap());
    }

    #[test]
    fn committed_settings_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == settings_markdown(),
            "docs/settings.md is stale: regenerate it with `ferrocorn --print-settings-doc > docs/settings.md`"
        );
    }

    #[test]
    fn print_config_lists_every_setting_sorted_and_aligned() {
        let r = Resolved::defaults();
        let text = print_config(&r);
        let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), SETTINGS.len());
        let width = SETTINGS.iter().map(|s| s.name.len()).max().unwrap();
        assert!(
            text.contains(&format!("\n{:width$} = 1\n", "workers")),
            "{text}"
        );
        assert!(text.contains(&format!("\n{:width$} = ['127.0.0.1:8000']\n", "bind")));
        assert!(text.contains(&format!("\n{:width$} = -\n", "errorlog")));
    }
}
