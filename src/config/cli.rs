//! The command line, built from the settings table with clap's builder API.
//!
//! Only flags actually given are returned, so that the caller can layer them
//! over the config file and the defaults. clap reports usage errors (unknown
//! flags, a word that is not a number, a value outside a choice) with exit code 2.

use clap::builder::PossibleValuesParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::settings::{Kind, Section, SETTINGS};
use super::value::Raw;

const APP_ARG: &str = "APP_MODULE";
const VERSION_ARG: &str = "version";
/// Hidden: print the markdown settings reference (docs/settings.md) and exit.
pub const PRINT_SETTINGS_DOC: &str = "print-settings-doc";

/// The flags given on one command line (or in `FERROCORN_CMD_ARGS`).
#[derive(Debug, Default)]
pub struct Given {
    pub app: Option<String>,
    /// (index into SETTINGS, value), in table order.
    pub values: Vec<(usize, Raw)>,
    pub print_settings_doc: bool,
    /// `-v`/`--version`: print the version report and exit.
    pub print_version: bool,
}

impl Given {
    pub fn get(&self, name: &str) -> Option<&Raw> {
        self.values
            .iter()
            .find(|(i, _)| SETTINGS[*i].name == name)
            .map(|(_, r)| r)
    }
}

/// The clap command: every setting with a flag, grouped by section.
pub fn command() -> Command {
    let mut cmd = Command::new("ferrocorn")
        .version(crate::VERSION)
        .about("A pre-fork HTTP server for Python WSGI applications, with gunicorn's command line.")
        .after_help(
            "APP_MODULE is MODULE:NAME, MODULE (meaning MODULE:application) or MODULE:factory(ARGS).\n\
             Settings also come from FERROCORN_CMD_ARGS (or GUNICORN_CMD_ARGS) and the config file;\n\
             the command line wins, then those variables, then the config file.\n\
             `ferrocorn ctl COMMAND` controls a running server through its control socket\n\
             (`ferrocorn ctl --help`; gunicorn's gunicornc works too).",
        )
        .disable_version_flag(true)
        .arg(
            Arg::new(APP_ARG)
                .value_name(APP_ARG)
                .help("The WSGI application: `module:callable`, `module` or `module:factory()`."),
        )
        .arg(
            Arg::new(VERSION_ARG)
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Print the version, the io engines and the Python in use, and exit."),
        )
        .arg(
            Arg::new(PRINT_SETTINGS_DOC)
                .long(PRINT_SETTINGS_DOC)
                .action(ArgAction::SetTrue)
                .hide(true),
        );
    let mut order = 0;
    for section in Section::ALL {
        for (i, s) in SETTINGS.iter().enumerate() {
            if s.section != section {
                continue;
            }
            order += 1;
            if !s.flags.is_empty() {
                cmd = cmd.arg(flag_arg(i).display_order(order));
            }
            if let Some(neg) = s.negative_flag {
                let mut arg = Arg::new(neg)
                    .long(neg.trim_start_matches("--"))
                    .action(ArgAction::SetTrue)
                    .help_heading(section.title())
                    .display_order(order)
                    .help(if s.flags.is_empty() {
                        s.doc.to_string()
                    } else {
                        format!("Turn {} off.", s.flags[s.flags.len() - 1])
                    });
                if !s.flags.is_empty() {
                    arg = arg.overrides_with(s.name);
                }
                cmd = cmd.arg(arg);
            }
        }
    }
    cmd
}

fn flag_arg(i: usize) -> Arg {
    let s = &SETTINGS[i];
    let mut arg = Arg::new(s.name).help(s.doc).help_heading(s.section.title());
    let mut longs = s.flags.iter().filter_map(|f| f.strip_prefix("--"));
    if let Some(long) = longs.next() {
        arg = arg.long(long);
    }
    for extra in longs {
        arg = arg.visible_alias(extra);
    }
    for alias in s.aliases {
        arg = arg.alias(alias.trim_start_matches("--"));
    }
    if let Some(short) = s
        .flags
        .iter()
        .find(|f| f.len() == 2 && !f.starts_with("--"))
        .and_then(|f| f.chars().nth(1))
    {
        arg = arg.short(short);
    }
    if let Some(neg) = s.negative_flag {
        arg = arg.overrides_with(neg);
    }
    match s.kind {
        Kind::Bool => arg.action(ArgAction::SetTrue),
        Kind::List => arg.action(ArgAction::Append).value_name(s.meta),
        Kind::Int { min, max } => arg
            .value_name(s.meta)
            .value_parser(clap::value_parser!(i64).range(min..=max)),
        Kind::Choice(choices) => {
            arg = arg
                .value_name(s.meta)
                .value_parser(PossibleValuesParser::new(choices.iter().copied()));
            if let Some(bare) = s.bare_value {
                arg = arg.num_args(0..=1).default_missing_value(bare);
            }
            arg
        }
        _ => arg.value_name(s.meta),
    }
}

/// Parse one command line (argv[0] is the program name).
pub fn parse(argv: &[String]) -> Result<Given, clap::Error> {
    let m = command().try_get_matches_from(argv)?;
    Ok(given(&m))
}

fn given(m: &ArgMatches) -> Given {
    let mut out = Given {
        app: m.get_one::<String>(APP_ARG).cloned(),
        print_settings_doc: m.get_flag(PRINT_SETTINGS_DOC),
        print_version: m.get_flag(VERSION_ARG),
        ..Given::default()
    };
    for (i, s) in SETTINGS.iter().enumerate() {
        let on_cli = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        if let Some(neg) = s.negative_flag {
            if on_cli(neg) {
                out.values.push((i, Raw::Bool(false)));
                continue;
            }
        }
        if s.flags.is_empty() || !on_cli(s.name) {
            continue;
        }
        let raw = match s.kind {
            Kind::Bool => Raw::Bool(true),
            Kind::List => Raw::List(
                m.get_many::<String>(s.name)
                    .into_iter()
                    .flatten()
                    .map(|v| Raw::Str(v.clone()))
                    .collect(),
            ),
            Kind::Int { .. } => match m.get_one::<i64>(s.name) {
                Some(n) => Raw::Int(*n),
                None => continue,
            },
            _ => match m.get_one::<String>(s.name) {
                Some(v) => Raw::Str(v.clone()),
                None => continue,
            },
        };
        out.values.push((i, raw));
    }
    out
}

/// Split `FERROCORN_CMD_ARGS` the way Python's `shlex.split` does (POSIX mode):
/// whitespace separates words, quotes group, backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("no escaped character".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        std::iter::once("ferrocorn")
            .chain(args.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_generated_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn only_given_flags_are_returned() {
        let g = parse(&argv(&["-w", "3", "--reuse-port", "app:app"])).unwrap();
        assert_eq!(g.app.as_deref(), Some("app:app"));
        assert_eq!(g.get("workers"), Some(&Raw::Int(3)));
        assert_eq!(g.get("reuse_port"), Some(&Raw::Bool(true)));
        assert_eq!(g.get("timeout"), None);
    }

    #[test]
    fn negative_flags_and_last_one_wins() {
        let g = parse(&argv(&["--no-reuse-port"])).unwrap();
        assert_eq!(g.get("reuse_port"), Some(&Raw::Bool(false)));
        let g = parse(&argv(&["--no-reuse-port", "--reuse-port"])).unwrap();
        assert_eq!(g.get("reuse_port"), Some(&Raw::Bool(true)));
        let g = parse(&argv(&["--no-sendfile"])).unwrap();
        assert_eq!(g.get("sendfile"), Some(&Raw::Bool(false)));
    }

    #[test]
    fn repeatable_flags_aliases_and_bare_values() {
        let g = parse(&argv(&[
            "-b",
            "a:1",
            "--bind",
            "b:2",
            "--log-file",
            "/tmp/x",
            "--limit-request-field-size",
            "9",
            "--proxy-protocol",
        ]))
        .unwrap();
        assert_eq!(
            g.get("bind"),
            Some(&Raw::List(vec![
                Raw::Str("a:1".into()),
                Raw::Str("b:2".into())
            ]))
        );
        assert_eq!(g.get("errorlog"), Some(&Raw::Str("/tmp/x".into())));
        assert_eq!(g.get("limit_request_field_size"), Some(&Raw::Int(9)));
        assert_eq!(g.get("proxy_protocol"), Some(&Raw::Str("auto".into())));
    }

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["--no-such-flag"][..],
            &["-w", "zero"],
            &["-w", "0"],
            &["--io-engine", "kqueue"],
            &["--log-level", "loud"],
        ] {
            let err = parse(&argv(bad)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn help_is_grouped_by_section() {
        let help = command().render_help().to_string();
        let logging = help.find("Logging:").unwrap();
        assert!(help.find("--access-logfile").unwrap() > logging);
        assert!(help.find("Server Socket:").unwrap() < help.find("--bind").unwrap());
    }

    #[test]
    fn words_split_like_shlex() {
        assert_eq!(
            split_words(r#"-w 3 --access-logformat '%(h)s "%(r)s"' -e A="b c" x\ y"#).unwrap(),
            vec![
                "-w",
                "3",
                "--access-logformat",
                r#"%(h)s "%(r)s""#,
                "-e",
                "A=b c",
                "x y"
            ]
        );
        assert!(split_words("'open").is_err());
        assert_eq!(split_words("   ").unwrap(), Vec::<String>::new());
    }
}
