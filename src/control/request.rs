//! A request: `{"id": ..., "command": "worker add", "args": [2]}`. The
//! command string is split into words and the args appended (gunicornc
//! sends `"worker kill 1234"` with empty args; other clients may send the
//! numbers in `args`), then read as one of gunicorn 27's commands.

use serde_json::Value;

/// The largest count `worker add|remove N` takes (the `workers` setting's own bound).
pub const MAX_COUNT: u32 = 4096;

/// What `show` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Workers,
    Dirty,
    Config,
    Stats,
    Listeners,
}

/// How `shutdown` stops the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SIGTERM's stop.
    Graceful,
    /// SIGINT's stop.
    Quick,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Graceful => "graceful",
            Mode::Quick => "quick",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Show(Target),
    WorkerAdd(u32),
    WorkerRemove(u32),
    WorkerKill(i32),
    DirtyAdd(u32),
    DirtyRemove(u32),
    Reload,
    Reopen,
    Shutdown(Mode),
    Help,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Echoed in the reply, whatever JSON it is (0 when absent, as gunicorn).
    pub id: Value,
    pub command: Command,
}

/// A request that cannot be carried out: the error reply's id and text.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub id: Value,
    pub message: String,
}

/// Read one message's payload.
pub fn parse(payload: &[u8]) -> Result<Request, Rejected> {
    let reject = |id: &Value, message: String| Rejected {
        id: id.clone(),
        message,
    };
    let no_id = Value::from(0);
    let text = std::str::from_utf8(payload)
        .map_err(|e| reject(&no_id, format!("Invalid JSON: not UTF-8 ({e})")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| reject(&no_id, format!("Invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(reject(
            &no_id,
            "Invalid request: expected a JSON object".into(),
        ));
    };
    let id = map.get("id").cloned().unwrap_or(no_id);
    let command = match map.get("command") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(reject(
                &id,
                "Invalid request: \"command\" must be a string".into(),
            ))
        }
    };
    let mut words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    match map.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(args)) => {
            for a in args {
                match a {
                    Value::String(s) => words.push(s.clone()),
                    Value::Number(n) => words.push(n.to_string()),
                    _ => {
                        return Err(reject(
                            &id,
                            "Invalid request: each of \"args\" must be a string or a number".into(),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(reject(
                &id,
                "Invalid request: \"args\" must be a list".into(),
            ))
        }
    }
    if words.is_empty() {
        return Err(reject(&id, "Empty command".into()));
    }
    match command_of(&words) {
        Ok(command) => Ok(Request { id, command }),
        Err(e) => Err(reject(&id, format!("Invalid argument: {e}"))),
    }
}

fn command_of(words: &[String]) -> Result<Command, String> {
    let verb = words[0].to_ascii_lowercase();
    let rest = &words[1..];
    let (command, used) = match verb.as_str() {
        "show" => {
            let target = rest.first().ok_or(
                "Missing show target (all|workers|dirty|config|stats|listeners)".to_string(),
            )?;
            let target = match target.to_ascii_lowercase().as_str() {
                "all" => Target::All,
                "workers" => Target::Workers,
                "dirty" => Target::Dirty,
                "config" => Target::Config,
                "stats" => Target::Stats,
                "listeners" => Target::Listeners,
                _ => return Err(format!("Unknown show target: {target}")),
            };
            (Command::Show(target), 1)
        }
        "worker" => {
            let action = rest
                .first()
                .ok_or("Missing worker action (add|remove|kill)".to_string())?;
            match action.to_ascii_lowercase().as_str() {
                "add" => (Command::WorkerAdd(count(rest.get(1))?), 2),
                "remove" => (Command::WorkerRemove(count(rest.get(1))?), 2),
                "kill" => {
                    let pid = rest
                        .get(1)
                        .ok_or("Missing PID for worker kill".to_string())?;
                    let pid = pid
                        .parse::<i32>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or(format!("expected a process id, got {pid:?}"))?;
                    (Command::WorkerKill(pid), 2)
                }
                _ => return Err(format!("Unknown worker action: {action}")),
            }
        }
        "dirty" => {
            let action = rest
                .first()
                .ok_or("Missing dirty action (add|remove)".to_string())?;
            match action.to_ascii_lowercase().as_str() {
                "add" => (Command::DirtyAdd(count(rest.get(1))?), 2),
                "remove" => (Command::DirtyRemove(count(rest.get(1))?), 2),
                _ => return Err(format!("Unknown dirty action: {action}")),
            }
        }
        "reload" => (Command::Reload, 0),
        "reopen" => (Command::Reopen, 0),
        "help" => (Command::Help, 0),
        "shutdown" => match rest.first().map(|m| m.to_ascii_lowercase()) {
            None => (Command::Shutdown(Mode::Graceful), 0),
            Some(m) if m == "graceful" => (Command::Shutdown(Mode::Graceful), 1),
            Some(m) if m == "quick" => (Command::Shutdown(Mode::Quick), 1),
            Some(m) => return Err(format!("Unknown shutdown mode: {m} (graceful|quick)")),
        },
        _ => return Err(format!("Unknown command: {}", words[0])),
    };
    // Optional counts are consumed even when absent: only a word past them is extra.
    let used = used.min(rest.len());
    if let Some(extra) = rest.get(used) {
        return Err(format!(
            "unexpected {extra:?} after {:?}",
            words[..=used].join(" ")
        ));
    }
    Ok(command)
}

/// An optional count (1 when absent), within `1..=MAX_COUNT`.
fn count(word: Option<&String>) -> Result<u32, String> {
    let Some(word) = word else { return Ok(1) };
    match word.parse::<u32>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a count from 1 to {MAX_COUNT}, got {word:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(json: &str) -> Result<Command, String> {
        parse(json.as_bytes())
            .map(|r| r.command)
            .map_err(|r| r.message)
    }

    fn words(command: &str) -> Result<Command, String> {
        cmd(&serde_json::json!({"id": 1, "command": command, "args": []}).to_string())
    }

    #[test]
    fn every_gunicornc_command_is_read() {
        let cases = [
            ("show all", Command::Show(Target::All)),
            ("show workers", Command::Show(Target::Workers)),
            ("show dirty", Command::Show(Target::Dirty)),
            ("show config", Command::Show(Target::Config)),
            ("show stats", Command::Show(Target::Stats)),
            ("show listeners", Command::Show(Target::Listeners)),
            ("worker add", Command::WorkerAdd(1)),
            ("worker add 3", Command::WorkerAdd(3)),
            ("worker remove", Command::WorkerRemove(1)),
            ("worker remove 2", Command::WorkerRemove(2)),
            ("worker kill 1234", Command::WorkerKill(1234)),
            ("dirty add", Command::DirtyAdd(1)),
            ("dirty remove 2", Command::DirtyRemove(2)),
            ("reload", Command::Reload),
            ("reopen", Command::Reopen),
            ("shutdown", Command::Shutdown(Mode::Graceful)),
            ("shutdown graceful", Command::Shutdown(Mode::Graceful)),
            ("shutdown quick", Command::Shutdown(Mode::Quick)),
            ("help", Command::Help),
            ("  SHOW   Workers ", Command::Show(Target::Workers)),
        ];
        for (text, want) in cases {
            assert_eq!(words(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn args_are_appended_to_the_command_words() {
        assert_eq!(
            cmd(r#"{"id": 2, "command": "worker kill", "args": [4321]}"#),
            Ok(Command::WorkerKill(4321))
        );
        assert_eq!(
            cmd(r#"{"id": 2, "command": "worker add", "args": ["2"]}"#),
            Ok(Command::WorkerAdd(2))
        );
        assert_eq!(
            cmd(r#"{"command": "shutdown", "args": ["quick"]}"#),
            Ok(Command::Shutdown(Mode::Quick))
        );
    }

    #[test]
    fn id_is_echoed_whatever_its_type_and_zero_when_absent() {
        let r = parse(br#"{"id": "abc", "command": "reload"}"#).unwrap();
        assert_eq!(r.id, Value::from("abc"));
        let r = parse(br#"{"command": "reload"}"#).unwrap();
        assert_eq!(r.id, Value::from(0));
        let e = parse(br#"{"id": 9, "command": "nope"}"#).unwrap_err();
        assert_eq!(e.id, Value::from(9));
    }

    #[test]
    fn malformed_requests_are_rejected_with_a_reason() {
        assert!(cmd("{nope").unwrap_err().starts_with("Invalid JSON"));
        assert!(cmd("").unwrap_err().starts_with("Invalid JSON"));
        assert!(parse(b"\xff\xfe").unwrap_err().message.contains("UTF-8"));
        assert_eq!(
            cmd("[1, 2]").unwrap_err(),
            "Invalid request: expected a JSON object"
        );
        assert_eq!(
            cmd(r#"{"command": 5}"#).unwrap_err(),
            "Invalid request: \"command\" must be a string"
        );
        assert_eq!(
            cmd(r#"{"command": "worker kill", "args": 5}"#).unwrap_err(),
            "Invalid request: \"args\" must be a list"
        );
        assert!(cmd(r#"{"command": "worker kill", "args": [[1]]}"#)
            .unwrap_err()
            .contains("string or a number"));
        assert_eq!(cmd(r#"{"id": 1}"#).unwrap_err(), "Empty command");
        assert_eq!(words("   ").unwrap_err(), "Empty command");
    }

    #[test]
    fn unknown_commands_get_gunicorns_wording() {
        assert_eq!(
            words("bogus").unwrap_err(),
            "Invalid argument: Unknown command: bogus"
        );
        assert_eq!(
            words("show bogus").unwrap_err(),
            "Invalid argument: Unknown show target: bogus"
        );
        assert_eq!(
            words("worker").unwrap_err(),
            "Invalid argument: Missing worker action (add|remove|kill)"
        );
        assert_eq!(
            words("worker kill").unwrap_err(),
            "Invalid argument: Missing PID for worker kill"
        );
        assert!(words("show").unwrap_err().contains("Missing show target"));
        assert!(words("worker jump")
            .unwrap_err()
            .contains("Unknown worker action"));
        assert!(words("dirty").unwrap_err().contains("Missing dirty action"));
        assert!(words("shutdown now")
            .unwrap_err()
            .contains("Unknown shutdown mode"));
    }

    #[test]
    fn bad_counts_and_pids_are_refused() {
        for bad in [
            "worker add 0",
            "worker add -1",
            "worker add x",
            "worker remove 4097",
        ] {
            assert!(
                words(bad)
                    .unwrap_err()
                    .contains("expected a count from 1 to 4096"),
                "{bad}"
            );
        }
        for bad in [
            "worker kill 0",
            "worker kill -5",
            "worker kill abc",
            "worker kill 99999999999",
        ] {
            assert!(
                words(bad).unwrap_err().contains("expected a process id"),
                "{bad}"
            );
        }
        assert_eq!(words("worker add 4096"), Ok(Command::WorkerAdd(4096)));
    }

    #[test]
    fn extra_words_are_refused() {
        assert!(words("reload now")
            .unwrap_err()
            .contains("unexpected \"now\""));
        assert!(words("worker add 2 3")
            .unwrap_err()
            .contains("unexpected \"3\""));
        assert!(words("show stats please")
            .unwrap_err()
            .contains("unexpected"));
        assert!(words("shutdown quick now")
            .unwrap_err()
            .contains("unexpected"));
    }
}
