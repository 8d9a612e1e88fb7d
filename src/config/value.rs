//! Setting values: what a source gives (`Raw`), what a validator keeps
//! (`Value`), and where it came from (`Origin`), so an error can name all three.

use std::fmt;

use super::settings::{Default, Kind, Setting};

/// A value as a source gave it: a command-line string or a Python object's shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    /// A dict: its string pairs (when every key and value is a string) and its JSON text.
    Dict {
        pairs: Option<Vec<(String, String)>>,
        json: String,
        repr: String,
    },
    /// A callable with this many positional parameters (`None`: unknown).
    Callable {
        arity: Option<usize>,
        repr: String,
    },
    /// Anything else, by its Python type name and repr.
    Other {
        type_name: String,
        repr: String,
    },
}

impl Raw {
    /// The value as Python would print it (`repr`), for error messages.
    pub fn repr(&self) -> String {
        match self {
            Raw::None => "None".into(),
            Raw::Bool(true) => "True".into(),
            Raw::Bool(false) => "False".into(),
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => format!("{f:?}"),
            Raw::Str(s) => py_repr(s),
            Raw::List(items) => {
                let inner: Vec<String> = items.iter().map(Raw::repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Raw::Dict { repr, .. } | Raw::Callable { repr, .. } | Raw::Other { repr, .. } => {
                repr.clone()
            }
        }
    }

    fn type_name(&self) -> &str {
        match self {
            Raw::None => "NoneType",
            Raw::Bool(_) => "bool",
            Raw::Int(_) => "int",
            Raw::Float(_) => "float",
            Raw::Str(_) => "str",
            Raw::List(_) => "list",
            Raw::Dict { .. } => "dict",
            Raw::Callable { .. } => "function",
            Raw::Other { type_name, .. } => type_name,
        }
    }
}

/// A checked value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<String>),
    Dict(Vec<(String, String)>),
    /// JSON text of a dict (`logconfig_dict`).
    Json(String),
    /// A hook: the callable lives in `config::Hooks`; this is its repr.
    Hook(String),
}

impl Value {
    pub fn from_default(d: Default) -> Value {
        match d {
            Default::None => Value::None,
            Default::Bool(b) => Value::Bool(b),
            Default::Int(n) => Value::Int(n),
            Default::Str(s) => Value::Str(s.into()),
            Default::List(l) => Value::List(l.iter().map(|s| s.to_string()).collect()),
            Default::Dict(d) => Value::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    pub fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub fn as_int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            _ => 0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[String] {
        match self {
            Value::List(l) => l,
            _ => &[],
        }
    }

    /// Python-literal text: what `--print-config` shows.
    pub fn to_python(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(n) => n.to_string(),
            Value::Str(s) => py_repr(s),
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(|s| py_repr(s)).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Dict(d) => {
                let items: Vec<String> = d
                    .iter()
                    .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Value::Json(j) => j.clone(),
            Value::Hook(r) => r.clone(),
        }
    }
}

/// Where a value came from, named in errors and warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// An environment variable that provides a default (`WEB_CONCURRENCY`).
    Env(&'static str),
    /// A config file, with the path as given.
    ConfigFile(String),
    /// `FERROCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS`.
    CmdArgs(&'static str),
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::ConfigFile(p) => write!(f, "config file {p}"),
            Origin::CmdArgs(v) => write!(f, "{v}"),
            Origin::CommandLine => f.write_str("command line"),
        }
    }
}

/// What a setting of this kind accepts, for "expected ..." messages.
pub fn expected(kind: Kind) -> String {
    match kind {
        Kind::Bool => "True or False".into(),
        Kind::Int { min, max } if max >= i32::MAX as i64 => {
            format!("a whole number >= {min}")
        }
        Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
        Kind::Str => "a string".into(),
        Kind::Choice(c) => format!("one of {}", c.join(", ")),
        Kind::List => "a string or a list of strings".into(),
        Kind::CommaList => "a comma-separated string or a list of strings".into(),
        Kind::Dict => "a dict of strings".into(),
        Kind::Json => "a dict".into(),
        Kind::Octal => "an octal mask such as 0o022 or 022, up to 0o777".into(),
        Kind::Ident => "a name or a number".into(),
        Kind::Hook { min, max } if min == max => {
            format!("a callable taking {min} positional argument{}", plural(min))
        }
        Kind::Hook { min, max } => {
            format!("a callable taking {min} to {max} positional arguments")
        }
    }
}

fn plural(n: u8) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Check `raw` against `setting`'s kind. The error is the whole message:
/// setting, value, origin and what was expected.
pub fn validate(setting: &Setting, raw: &Raw, origin: &Origin) -> Result<Value, String> {
    check(setting.kind, raw).map_err(|why| {
        let detail = match why {
            Some(w) => format!(" ({w})"),
            None => String::new(),
        };
        format!(
            "Invalid value for {}: {} (from {origin}){detail}: expected {}",
            setting.name,
            raw.repr(),
            expected(setting.kind)
        )
    })
}

/// `Err(Some(reason))` adds a detail to the standard message.
fn check(kind: Kind, raw: &Raw) -> Result<Value, Option<String>> {
    match kind {
        Kind::Bool => match raw {
            Raw::Bool(b) => Ok(Value::Bool(*b)),
            Raw::Str(s) => parse_bool(s).map(Value::Bool).ok_or(None),
            Raw::Int(0) => Ok(Value::Bool(false)),
            Raw::Int(1) => Ok(Value::Bool(true)),
            _ => Err(None),
        },
        Kind::Int { min, max } => {
            let n = match raw {
                Raw::Int(n) => *n,
                Raw::Str(s) => parse_int(s).ok_or(None)?,
                _ => return Err(None),
            };
            if n < min || n > max {
                return Err(None);
            }
            Ok(Value::Int(n))
        }
        Kind::Octal => {
            let n = match raw {
                Raw::Int(n) => *n,
                Raw::Str(s) => parse_octal(s).ok_or(None)?,
                _ => return Err(None),
            };
            if !(0..=0o777).contains(&n) {
                return Err(None);
            }
            Ok(Value::Int(n))
        }
        Kind::Str => match raw {
            Raw::Str(s) => Ok(Value::Str(s.clone())),
            Raw::None => Ok(Value::None),
            _ => Err(None),
        },
        Kind::Ident => match raw {
            Raw::Str(s) => Ok(Value::Str(s.clone())),
            Raw::Int(n) if *n >= 0 => Ok(Value::Str(n.to_string())),
            Raw::None => Ok(Value::None),
            _ => Err(None),
        },
        Kind::Choice(choices) => {
            let s = match raw {
                Raw::Str(s) => s.trim().to_ascii_lowercase(),
                Raw::Bool(true) => "true".into(),
                Raw::Bool(false) => "false".into(),
                _ => return Err(None),
            };
            if choices.contains(&s.as_str()) {
                Ok(Value::Str(s))
            } else {
                Err(None)
            }
        }
        Kind::List => match raw {
            Raw::Str(s) => Ok(Value::List(vec![s.clone()])),
            Raw::List(items) => strings(items).map(Value::List),
            _ => Err(None),
        },
        Kind::CommaList => match raw {
            Raw::Str(s) => Ok(Value::List(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            Raw::List(items) => strings(items).map(Value::List),
            _ => Err(None),
        },
        Kind::Dict => match raw {
            Raw::Dict { pairs: Some(p), .. } => Ok(Value::Dict(p.clone())),
            _ => Err(None),
        },
        Kind::Json => match raw {
            Raw::Dict { json, .. } => Ok(Value::Json(json.clone())),
            _ => Err(None),
        },
        Kind::Hook { min, max } => match raw {
            Raw::Callable { arity, repr } => match arity {
                Some(a) if *a < min as usize || *a > max as usize => Err(Some(format!(
                    "it takes {a} positional argument{}",
                    if *a == 1 { "" } else { "s" }
                ))),
                _ => Ok(Value::Hook(repr.clone())),
            },
            _ => Err(Some(format!("a {} is not callable", raw.type_name()))),
        },
    }
}

fn strings(items: &[Raw]) -> Result<Vec<String>, Option<String>> {
    items
        .iter()
        .map(|i| match i {
            Raw::Str(s) => Ok(s.clone()),
            other => Err(Some(format!("{} is not a string", other.repr()))),
        })
        .collect()
}

/// gunicorn's `validate_bool` words.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "no" | "n" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Python's `int(s, 0)`-like: decimal, 0x, 0o, 0b.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim().replace('_', "");
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// The umask forms gunicorn accepts: `0o007`, `007` (octal), `0x1f`, `7`.
pub fn parse_octal(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.len() > 1 && t.starts_with('0') && t[1..].bytes().all(|b| b.is_ascii_digit()) {
        return i64::from_str_radix(&t[1..], 8).ok();
    }
    parse_int(t)
}

/// A Python-style repr of a string: single quotes unless it holds one.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::find;

    fn v(name: &str, raw: Raw) -> Result<Value, String> {
        let (_, s) = find(name).unwrap();
        validate(s, &raw, &Origin::ConfigFile("conf.py".into()))
    }

    #[test]
    fn ints_accept_numbers_and_numeric_strings_in_range() {
        assert_eq!(v("workers", Raw::Int(4)), Ok(Value::Int(4)));
        assert_eq!(v("workers", Raw::Str(" 3 ".into())), Ok(Value::Int(3)));
        assert_eq!(v("timeout", Raw::Str("0x10".into())), Ok(Value::Int(16)));
        let err = v("workers", Raw::Int(0)).unwrap_err();
        assert!(
            err.contains("workers") && err.contains("0") && err.contains("from 1 to 4096"),
            "{err}"
        );
        let err = v("timeout", Raw::Str("soon".into())).unwrap_err();
        assert_eq!(
            err,
            "Invalid value for timeout: 'soon' (from config file conf.py): expected a whole number >= 0"
        );
        assert!(v("workers", Raw::Float(2.5)).is_err());
        assert!(v("workers", Raw::Bool(true)).is_err());
    }

    #[test]
    fn bools_accept_python_bools_and_words() {
        assert_eq!(v("daemon", Raw::Bool(true)), Ok(Value::Bool(true)));
        assert_eq!(
            v("daemon", Raw::Str("false".into())),
            Ok(Value::Bool(false))
        );
        assert!(v("daemon", Raw::Str("maybe".into())).is_err());
    }

    #[test]
    fn lists_accept_a_string_or_a_list_of_strings() {
        assert_eq!(
            v("bind", Raw::Str("0.0.0.0:80".into())),
            Ok(Value::List(vec!["0.0.0.0:80".into()]))
        );
        assert_eq!(
            v(
                "bind",
                Raw::List(vec![Raw::Str("a".into()), Raw::Str("b".into())])
            ),
            Ok(Value::List(vec!["a".into(), "b".into()]))
        );
        let err = v("bind", Raw::List(vec![Raw::Int(80)])).unwrap_err();
        assert!(err.contains("80 is not a string"), "{err}");
        assert_eq!(
            v("forwarder_headers", Raw::Str("A, B".into())),
            Ok(Value::List(vec!["A".into(), "B".into()]))
        );
    }

    #[test]
    fn choices_are_case_insensitive_words_from_the_list() {
        assert_eq!(
            v("loglevel", Raw::Str("DEBUG".into())),
            Ok(Value::Str("debug".into()))
        );
        let err = v("loglevel", Raw::Str("loud".into())).unwrap_err();
        assert!(
            err.contains("one of debug, info, warning, error, critical"),
            "{err}"
        );
    }

    #[test]
    fn hooks_need_a_callable_of_the_right_arity() {
        let f = |a| Raw::Callable {
            arity: Some(a),
            repr: "<function f>".into(),
        };
        assert!(v("on_starting", f(1)).is_ok());
        let err = v("on_starting", f(2)).unwrap_err();
        assert!(
            err.contains("it takes 2 positional arguments")
                && err.contains("taking 1 positional argument"),
            "{err}"
        );
        assert!(v("post_request", f(2)).is_ok());
        assert!(v("post_request", f(4)).is_ok());
        assert!(v("post_request", f(5)).is_err());
        assert!(v("when_ready", Raw::Str("x".into()))
            .unwrap_err()
            .contains("not callable"));
    }

    #[test]
    fn umask_forms() {
        assert_eq!(v("umask", Raw::Str("0o007".into())), Ok(Value::Int(0o007)));
        assert_eq!(v("umask", Raw::Str("022".into())), Ok(Value::Int(0o022)));
        assert_eq!(v("umask", Raw::Int(18)), Ok(Value::Int(18)));
        assert!(v("umask", Raw::Str("nope".into())).is_err());
        assert!(v("umask", Raw::Str("0o1777".into())).is_err());
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a\nb"), "'a\\nb'");
        assert_eq!(Value::List(vec!["x".into()]).to_python(), "['x']");
        assert_eq!(Value::None.to_python(), "None");
    }
}
