//! The layering holds: a top-level module of `src/` uses (`use crate::x`,
//! or a `crate::x::...` path inline) only the modules `ALLOWED` lists for it,
//! arrows point down only (the table itself has no circle), no two files of
//! one module use each other in a circle, and no two scripts of `loadtest/`
//! import each other in a circle. See docs/architecture.md for the layers.
//!
//! Reads the sources with std only. Test code (`#[cfg(test)]` items and the
//! files they declare) is left out: a test may borrow another layer's
//! fixtures without changing what the crate is built of.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which top-level module may use which, top to bottom. Anything at the
/// crate root (`crate::VERSION`) may be used by all.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "lib",
        &["arbiter", "worker", "config", "control", "log", "sys"],
    ),
    (
        "arbiter",
        &[
            "worker", "hooks", "config", "control", "metrics", "tls", "log", "sys",
        ],
    ),
    (
        "worker",
        &[
            "asgi", "wsgi", "handoff", "engine", "hooks", "config", "tls", "ws", "h2", "py",
            "http", "log", "sys",
        ],
    ),
    (
        "asgi",
        &["handoff", "config", "py", "ws", "http", "log", "sys"],
    ),
    ("wsgi", &["py", "http", "log"]),
    ("hooks", &["config", "py", "http", "log"]),
    ("handoff", &["http"]),
    ("engine", &["log", "sys"]),
    ("config", &["metrics", "tls", "py", "http", "log"]),
    ("py", &["http"]),
    ("control", &[]),
    ("metrics", &["sys"]),
    ("log", &["http", "sys"]),
    ("tls", &[]),
    ("ws", &["http"]),
    ("h2", &["http"]),
    ("http", &[]),
    ("sys", &[]),
];

/// The log macros (`crate::error!` ...) are the log module's.
const LOG_MACROS: &[&str] = &["error", "warn", "info", "debug", "critical", "log_at"];

/// A source file: its module path (`["worker", "boot"]`; `[]` for lib.rs)
/// and its text with comments and literals blanked and test code removed.
struct Source {
    name: String,
    module: Vec<String>,
    code: String,
}

// ---------------------------------------------------------------- reading

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(path relative to src/, text)` of every Rust file of the crate.
fn crate_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, fs::read_to_string(p).unwrap())
        })
        .collect()
}

fn module_of(rel: &str) -> Vec<String> {
    let stem = rel.strip_suffix(".rs").unwrap();
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text with comments, string and char literals replaced by spaces
/// (line breaks kept), so braces and paths in them count for nothing.
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    keep(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = find(b, j + 1, &close).map_or(b.len(), |e| e + close.len());
            for &x in &b[i..end] {
                keep(&mut out, x);
            }
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            for &x in &b[i..end] {
                keep(&mut out, x);
            }
            i = end;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                find(b, i + 2, b"'").map(|e| e + 1)
            } else {
                let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match end {
                Some(end) => {
                    for &x in &b[i..end] {
                        keep(&mut out, x);
                    }
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    (from..=b.len().saturating_sub(pat.len())).find(|&k| b[k..].starts_with(pat))
}

/// Remove every item marked `#[cfg(test)]` from blanked code; returns the
/// code and the names of the file modules declared that way (`mod tests;`).
fn strip_tests(code: &str) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut test_mods = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let b = item.as_bytes();
        // The item ends at its first `;` outside braces, or at the brace
        // that closes its first `{`.
        let mut depth = 0usize;
        let mut end = b.len();
        for (k, &c) in b.iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        let words: Vec<&str> = item[..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';'))
            .filter(|w| !w.is_empty())
            .collect();
        if let Some(k) = words.iter().position(|w| *w == "mod") {
            if let Some(name) = words.get(k + 1).and_then(|w| w.strip_suffix(';')) {
                test_mods.push(name.to_string());
            }
        }
        out.extend(
            item[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_mods)
}

fn load(files: &[(String, String)]) -> Vec<Source> {
    let mut sources = Vec::new();
    let mut test_files = BTreeSet::new();
    for (rel, text) in files {
        let (code, test_mods) = strip_tests(&blank(text));
        let module = module_of(rel);
        for m in test_mods {
            let mut p = module.clone();
            p.push(m);
            test_files.insert(p);
        }
        sources.push(Source {
            name: rel.clone(),
            module,
            code,
        });
    }
    sources.retain(|s| !test_files.iter().any(|t| s.module.starts_with(t)));
    sources
}

// ---------------------------------------------------------------- paths

/// Every path the code names from the crate root, `super` or `self`,
/// resolved to absolute segments (`use crate::{a, b::c}` gives two).
fn paths(src: &Source) -> Vec<Vec<String>> {
    let b = src.code.as_bytes();
    let mut found = Vec::new();
    for (start, base) in [("crate::", None), ("super::", Some(1)), ("self::", Some(0))] {
        let mut from = 0;
        while let Some(k) = src.code[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            // `$crate::` counts as `crate::`; `x::super::` is part of a longer path.
            if at > 0 && (ident_before(b, at) || (b[at - 1] == b':' && base.is_some())) {
                continue;
            }
            let prefix = match base {
                None => Vec::new(),
                Some(up) => {
                    let mut m = src.module.clone();
                    let mut up = up;
                    let mut p = from;
                    // super::super::...
                    while src.code[p..].starts_with("super::") {
                        up += 1;
                        p += "super::".len();
                    }
                    from = p;
                    for _ in 0..up {
                        m.pop();
                    }
                    m
                }
            };
            let mut tails = Vec::new();
            parse_tree(&src.code[from..], &mut Vec::new(), &mut tails);
            for t in tails {
                let mut full = prefix.clone();
                full.extend(t);
                found.push(full);
            }
        }
    }
    found
}

/// Parse `a::b::{c, d::e}` into `[a,b,c]` and `[a,b,d,e]`.
fn parse_tree(s: &str, stack: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let depth = stack.len();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i += parse_tree(&s[i..], stack, out);
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => break,
                }
                // A trailing comma before `}`.
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    break;
                }
            }
            stack.truncate(depth);
            return i;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if start == i {
            // `*` or nothing: the path so far.
            if b.get(i) == Some(&b'*') {
                i += 1;
            }
            out.push(stack.clone());
            stack.truncate(depth);
            return i;
        }
        let word = &s[start..i];
        if word != "self" {
            stack.push(word.to_string());
        }
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            out.push(stack.clone());
            stack.truncate(depth);
            return i;
        }
    }
}

/// The top-level module a path leads to (`None`: the crate root itself).
fn top_of(path: &[String], tops: &BTreeSet<String>) -> Option<String> {
    let first = path.first()?;
    if LOG_MACROS.contains(&first.as_str()) {
        return Some("log".into());
    }
    tops.contains(first).then(|| first.clone())
}

fn top_of_file(src: &Source) -> String {
    src.module.first().cloned().unwrap_or_else(|| "lib".into())
}

// ---------------------------------------------------------------- checks

/// Every use of a top-level module the table does not allow.
fn wrong_edges(sources: &[Source]) -> Vec<String> {
    let tops: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = BTreeSet::new();
    for src in sources {
        let from = top_of_file(src);
        let Some(ok) = allowed.get(from.as_str()) else {
            problems.insert(format!(
                "{}: module {from} is missing from ALLOWED",
                src.name
            ));
            continue;
        };
        for p in paths(src) {
            let Some(to) = top_of(&p, &tops) else {
                continue;
            };
            if to != from && !ok.contains(&to.as_str()) {
                problems.insert(format!(
                    "{}: {from} uses {to} (crate::{})",
                    src.name,
                    p.join("::")
                ));
            }
        }
    }
    problems.into_iter().collect()
}

/// The file a path leads to: the longest prefix that is a file module.
fn file_of<'a>(path: &[String], by_module: &BTreeMap<&[String], &'a Source>) -> Option<&'a Source> {
    (1..=path.len())
        .rev()
        .find_map(|n| by_module.get(&path[..n]).copied())
}

/// Circles between files of one top-level module. A module's own file
/// naming its submodules (`mod.rs` using `threads::Pool`) is how Rust
/// modules are built and does not count; any other use does.
fn file_circles(sources: &[Source]) -> Vec<String> {
    let by_module: BTreeMap<&[String], &Source> =
        sources.iter().map(|s| (s.module.as_slice(), s)).collect();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for src in sources {
        for p in paths(src) {
            let Some(to) = file_of(&p, &by_module) else {
                continue;
            };
            let same_top = to.module.first() == src.module.first() && !src.module.is_empty();
            if same_top && to.name != src.name && !to.module.starts_with(&src.module) {
                graph.entry(&src.name).or_default().insert(&to.name);
            }
        }
    }
    circles(&graph)
}

/// Each circle of a directed graph, once, as `a -> b -> a`.
fn circles(graph: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<String> {
    fn walk<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        out: &mut BTreeSet<String>,
    ) {
        if let Some(k) = path.iter().position(|n| *n == node) {
            let mut ring: Vec<&str> = path[k..].to_vec();
            // The same circle from any start is reported once.
            let min = (0..ring.len()).min_by_key(|&i| ring[i]).unwrap();
            ring.rotate_left(min);
            ring.push(ring[0]);
            out.insert(ring.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            walk(next, graph, path, done, out);
        }
        path.pop();
        done.insert(node);
    }
    let mut out = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        walk(node, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out.into_iter().collect()
}

/// Circles among the scripts of a Python directory (`import x`, `from x
/// import ...`, also inside functions).
fn python_circles(files: &[(String, String)]) -> Vec<String> {
    let names: BTreeSet<&str> = files
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".py"))
        .collect();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (file, text) in files {
        let me = file.strip_suffix(".py").unwrap_or(file);
        for line in text.lines() {
            let words: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            let imported: Vec<&str> = match words.as_slice() {
                ["import", rest @ ..] => rest.iter().take_while(|w| **w != "as").copied().collect(),
                ["from", m, "import", ..] => vec![*m],
                _ => continue,
            };
            for m in imported {
                let m = m.split('.').next().unwrap_or(m);
                if let Some(&to) = names.get(m) {
                    if to != me {
                        graph.entry(me).or_default().insert(to);
                    }
                }
            }
        }
    }
    circles(&graph)
}

fn loadtest_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest");
    let mut files: Vec<(String, String)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn with_line(files: &[(String, String)], name: &str, line: &str) -> Vec<(String, String)> {
    let mut files = files.to_vec();
    let f = files.iter_mut().find(|(n, _)| n == name).unwrap();
    f.1.push('\n');
    f.1.push_str(line);
    f.1.push('\n');
    files
}

// ---------------------------------------------------------------- tests

#[test]
fn the_allowed_table_points_down_only() {
    let graph: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, to)| (*m, to.iter().copied().collect()))
        .collect();
    assert_eq!(circles(&graph), Vec::<String>::new());
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let problems = wrong_edges(&load(&crate_sources()));
    assert!(
        problems.is_empty(),
        "wrong-way uses:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_circle_between_files_of_one_module() {
    let problems = file_circles(&load(&crate_sources()));
    assert!(problems.is_empty(), "circles:\n{}", problems.join("\n"));
}

#[test]
fn no_circle_between_loadtest_scripts() {
    let problems = python_circles(&loadtest_sources());
    assert!(problems.is_empty(), "circles:\n{}", problems.join("\n"));
}

#[test]
fn a_wrong_way_use_is_caught() {
    let files = crate_sources();
    let bad = with_line(&files, "worker/boot.rs", "use crate::arbiter::Listener;");
    assert_eq!(
        wrong_edges(&load(&bad)),
        ["worker/boot.rs: worker uses arbiter (crate::arbiter::Listener)"]
    );
    // Inline, in a group, and through a log macro from below.
    let bad = with_line(
        &files,
        "http/parse.rs",
        "fn f() { crate::{sys::time, wsgi}; }",
    );
    assert_eq!(wrong_edges(&load(&bad)).len(), 2);
    let bad = with_line(&files, "sys/time.rs", "fn f() { crate::debug!(\"x\"); }");
    assert_eq!(wrong_edges(&load(&bad)).len(), 1);
    // Test code and comments do not count.
    let ok = with_line(
        &files,
        "http/parse.rs",
        "// crate::wsgi\n#[cfg(test)]\nmod t { use crate::wsgi; }",
    );
    assert!(wrong_edges(&load(&ok)).is_empty());
}

#[test]
fn a_circle_between_files_is_caught() {
    let files = crate_sources();
    let bad = with_line(&files, "worker/threads.rs", "use super::boot::run;");
    let bad = with_line(&bad, "worker/boot.rs", "use super::threads::Options;");
    // The first circle found: boot reaches threads through gevent too.
    assert_eq!(
        file_circles(&load(&bad)),
        ["worker/boot.rs -> worker/gevent/mod.rs -> worker/threads.rs -> worker/boot.rs"]
    );
    let bad = with_line(
        &files,
        "engine/uring/mod.rs",
        "use crate::engine::op::send_file::PIECE;",
    );
    let bad = with_line(
        &bad,
        "engine/op/send_file.rs",
        "use crate::engine::uring::Pipe;",
    );
    assert_eq!(file_circles(&load(&bad)).len(), 1);
}

#[test]
fn a_circle_between_loadtest_scripts_is_caught() {
    let bad = with_line(&loadtest_sources(), "harness.py", "    import probes");
    let circles = python_circles(&bad);
    assert!(
        circles.iter().any(|c| c == "harness -> probes -> harness"),
        "{circles:?}"
    );
}
