//! `ferrocorn ctl`: send one command to a running server's control socket
//! (or read commands line by line from stdin) and print the answer. It
//! speaks the same protocol as gunicorn's `gunicornc`, so either client
//! works against either server.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgAction, Command as Cli};
use serde_json::{json, Value};

use super::frame::{self, Decoder};

/// How long the client waits for the server (gunicornc's own timeout).
const TIMEOUT: Duration = Duration::from_secs(30);

fn cli(default: &Path) -> Cli {
    Cli::new("ferrocorn ctl")
        .about("Control a running ferrocorn (or gunicorn 27) master through its control socket.")
        .after_help(
            "Commands: show all|workers|config|stats|listeners|dirty, worker add [N], \
             worker remove [N],\nworker kill PID, reload, reopen, shutdown [graceful|quick], help.\n\
             With no command, commands are read from stdin, one a line.",
        )
        .arg(
            Arg::new("socket")
                .short('s')
                .long("socket")
                .value_name("PATH")
                .help(format!("The control socket [default: {}]", default.display())),
        )
        .arg(
            Arg::new("command")
                .short('c')
                .long("command")
                .value_name("COMMAND")
                .help("The command to run (the words after the options work too)."),
        )
        .arg(
            Arg::new("json")
                .short('j')
                .long("json")
                .action(ArgAction::SetTrue)
                .help("Print the answer's JSON data."),
        )
        .arg(Arg::new("words").num_args(0..).trailing_var_arg(true).allow_hyphen_values(true))
}

/// Run `ferrocorn ctl` with `args` (the words after `ctl`); returns the exit code.
pub fn main(args: &[String], default_socket: &Path) -> i32 {
    let matches = match cli(default_socket).try_get_matches_from(
        std::iter::once("ferrocorn ctl".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let mut socket = matches
        .get_one::<String>("socket")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_socket.to_path_buf());
    if socket.is_relative() {
        if let Ok(cwd) = std::env::current_dir() {
            socket = cwd.join(socket);
        }
    }
    let json_out = matches.get_flag("json");
    let words: Vec<String> = matches
        .get_many::<String>("words")
        .map(|w| w.cloned().collect())
        .unwrap_or_default();
    let command = match (matches.get_one::<String>("command"), words.is_empty()) {
        (Some(_), false) => {
            eprintln!("Error: give the command either with -c or as words, not both");
            return 2;
        }
        (Some(c), true) => Some(c.clone()),
        (None, false) => Some(words.join(" ")),
        (None, true) => None,
    };
    let mut client = Client {
        path: socket,
        stream: None,
        next_id: 0,
    };
    match command {
        Some(c) => run_one(&mut client, &c, json_out),
        None => run_lines(&mut client, json_out),
    }
}

fn run_one(client: &mut Client, command: &str, json_out: bool) -> i32 {
    match client.send(command) {
        Ok(data) => {
            println!("{}", render(command, &data, json_out));
            0
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn run_lines(client: &mut Client, json_out: bool) -> i32 {
    let tty = io::stdin().is_terminal();
    if tty {
        if let Err(e) = client.connect() {
            eprintln!("Error: {e}");
            return 1;
        }
        println!("Connected to {}", client.path.display());
        println!("Type 'help' for the commands, 'quit' to leave.");
    }
    let mut code = 0;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            print!("ferrocorn> ");
            let _ = io::stdout().flush();
        }
        let line = match lines.next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                eprintln!("Error: cannot read stdin: {e}");
                return 1;
            }
            None => break,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "quit" | "exit" | "q") {
            break;
        }
        if run_one(client, line, json_out) != 0 {
            code = 1;
        }
    }
    code
}

struct Client {
    path: PathBuf,
    stream: Option<UnixStream>,
    next_id: u64,
}

impl Client {
    fn connect(&mut self) -> Result<&mut UnixStream, String> {
        if self.stream.is_none() {
            let s = UnixStream::connect(&self.path)
                .map_err(|e| format!("cannot connect to {}: {e}", self.path.display()))?;
            let _ = s.set_read_timeout(Some(TIMEOUT));
            let _ = s.set_write_timeout(Some(TIMEOUT));
            self.stream = Some(s);
        }
        self.stream.as_mut().ok_or_else(|| "not connected".into())
    }

    /// Send one command; the reply's data, or its error text.
    fn send(&mut self, command: &str) -> Result<Value, String> {
        self.next_id += 1;
        let request = json!({"id": self.next_id, "command": command, "args": []});
        let result = self.round_trip(&frame::encode(request.to_string().as_bytes()));
        if result.is_err() {
            // A broken connection is not reused for the next line.
            self.stream = None;
        }
        let reply = result?;
        match reply.get("status").and_then(Value::as_str) {
            Some("ok") => Ok(reply.get("data").cloned().unwrap_or_else(|| json!({}))),
            Some("error") => Err(reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string()),
            _ => Err(format!("unexpected reply: {reply}")),
        }
    }

    fn round_trip(&mut self, request: &[u8]) -> Result<Value, String> {
        let stream = self.connect()?;
        stream
            .write_all(request)
            .map_err(|e| format!("cannot send the command: {e}"))?;
        let mut decoder = Decoder::new(frame::MAX_REPLY);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(payload) = decoder.next_message() {
                let payload = payload.map_err(|e| format!("bad reply: {e}"))?;
                return serde_json::from_slice(&payload)
                    .map_err(|e| format!("bad reply: invalid JSON: {e}"));
            }
            let want = decoder.wanted().min(buf.len());
            match stream.read(&mut buf[..want]) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no reply within {} s", TIMEOUT.as_secs()))
                }
                Err(e) => return Err(format!("cannot read the reply: {e}")),
            }
        }
    }
}

/// The text to print for `command`'s answer.
pub fn render(command: &str, data: &Value, json_out: bool) -> String {
    if json_out {
        return serde_json::to_string_pretty(data).unwrap_or_default();
    }
    let words: Vec<String> = command
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["show", "workers"] => workers_table(data, ""),
        ["show", "all"] => show_all(data),
        ["show", "stats"] => stats(data),
        ["show", "listeners"] => listeners(data),
        ["show", "config"] => config(data),
        ["show", "dirty"] => dirty(data),
        ["help"] => help(data),
        _ if data.as_object().is_some_and(|o| o.is_empty()) => "OK".into(),
        _ => serde_json::to_string_pretty(data).unwrap_or_default(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn heartbeat(w: &Value) -> String {
    match w.get("last_heartbeat").and_then(Value::as_f64) {
        Some(s) => format!("{s}s ago"),
        None => "n/a".into(),
    }
}

fn workers_table(data: &Value, indent: &str) -> String {
    let empty = Vec::new();
    let list = data
        .get("workers")
        .or_else(|| data.get("web_workers"))
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if list.is_empty() {
        return format!("{indent}No workers running");
    }
    let mut out = vec![
        format!(
            "{indent}{:<10} {:<6} {:<5} {:<6} {:<10} REQUESTS",
            "PID", "AGE", "SLOT", "READY", "LAST_BEAT"
        ),
        format!("{indent}{}", "-".repeat(50)),
    ];
    for w in list {
        let ready = if w.get("booted").and_then(Value::as_bool) == Some(true) {
            "yes"
        } else {
            "no"
        };
        out.push(format!(
            "{indent}{:<10} {:<6} {:<5} {:<6} {:<10} {}",
            text(&w["pid"]),
            text(&w["age"]),
            text(w.get("slot").unwrap_or(&Value::Null)),
            ready,
            heartbeat(w),
            text(w.get("requests").unwrap_or(&Value::Null)),
        ));
    }
    if indent.is_empty() {
        out.push(String::new());
        out.push(format!("Total: {} workers", list.len()));
    }
    out.join("\n")
}

fn show_all(data: &Value) -> String {
    let mut out = vec![
        "MASTER".to_string(),
        format!("  PID: {}", text(&data["arbiter"]["pid"])),
        String::new(),
        format!("WORKERS ({})", text(&data["web_worker_count"])),
        workers_table(data, "  "),
    ];
    if let Some(d) = data.get("dirty_arbiter").filter(|d| !d.is_null()) {
        out.push(String::new());
        out.push(format!("DIRTY ARBITER\n  PID: {}", text(&d["pid"])));
    }
    out.join("\n")
}

fn stats(data: &Value) -> String {
    let uptime = match data.get("uptime").and_then(Value::as_f64) {
        Some(u) => {
            let s = u as u64;
            match (s / 3600, s % 3600 / 60, s % 60) {
                (0, 0, sec) => format!("{sec}s"),
                (0, m, sec) => format!("{m}m {sec}s"),
                (h, m, sec) => format!("{h}h {m}m {sec}s"),
            }
        }
        None => "unknown".into(),
    };
    let field = |k: &str| text(data.get(k).unwrap_or(&Value::Null));
    let mut out = vec![
        format!("Uptime:           {uptime}"),
        format!("PID:              {}", field("pid")),
        format!("Workers current:  {}", field("workers_current")),
        format!("Workers target:   {}", field("workers_target")),
        format!("Workers spawned:  {}", field("workers_spawned")),
        format!("Workers killed:   {}", field("workers_killed")),
        format!("Reloads:          {}", field("reloads")),
    ];
    if let Some(p) = data.get("dirty_arbiter_pid").filter(|p| !p.is_null()) {
        out.push(format!("Dirty arbiter:    {}", text(p)));
    }
    out.join("\n")
}

fn listeners(data: &Value) -> String {
    let empty = Vec::new();
    let list = data
        .get("listeners")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if list.is_empty() {
        return "No listeners bound".into();
    }
    let mut out = vec![
        format!("{:<40} {:<8} FD", "ADDRESS", "TYPE"),
        "-".repeat(55),
    ];
    for l in list {
        out.push(format!(
            "{:<40} {:<8} {}",
            text(&l["address"]),
            text(&l["type"]),
            text(&l["fd"])
        ));
    }
    out.push(String::new());
    out.push(format!("Total: {} listeners", list.len()));
    out.join("\n")
}

fn config(data: &Value) -> String {
    let Some(map) = data.as_object() else {
        return text(data);
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let v = match &map[*k] {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
                other => text(other),
            };
            format!("{k}: {v}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn dirty(data: &Value) -> String {
    if data.get("enabled").and_then(Value::as_bool) != Some(true) {
        return "Dirty arbiter not running".into();
    }
    serde_json::to_string_pretty(data).unwrap_or_default()
}

fn help(data: &Value) -> String {
    let Some(commands) = data.get("commands").and_then(Value::as_object) else {
        return text(data);
    };
    let width = commands.keys().map(String::len).max().unwrap_or(0);
    let mut out = vec!["Commands:".to_string(), String::new()];
    let mut names: Vec<&String> = commands.keys().collect();
    names.sort();
    for name in names {
        out.push(format!("  {name:<width$}  {}", text(&commands[name])));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_table_lists_each_worker() {
        let data = json!({"count": 1, "workers": [
            {"pid": 11, "age": 1, "booted": true, "aborted": false,
             "last_heartbeat": 0.5, "slot": 0, "requests": 3}]});
        let out = render("show workers", &data, false);
        assert!(out.contains("11"), "{out}");
        assert!(out.contains("0.5s ago"), "{out}");
        assert!(out.contains("Total: 1 workers"), "{out}");
        assert_eq!(
            render("show workers", &json!({"workers": []}), false),
            "No workers running"
        );
    }

    #[test]
    fn stats_uptime_is_human() {
        let out = render("show stats", &json!({"uptime": 3725.2, "pid": 5}), false);
        assert!(out.contains("1h 2m 5s"), "{out}");
        assert!(out.contains("PID:              5"), "{out}");
    }

    #[test]
    fn other_commands_print_their_json_or_ok() {
        assert_eq!(render("reload", &json!({}), false), "OK");
        let out = render("worker add", &json!({"added": 1}), false);
        assert!(out.contains("\"added\": 1"), "{out}");
        let out = render("show stats", &json!({"pid": 1}), true);
        assert!(out.starts_with('{'), "{out}");
    }

    #[test]
    fn refused_connection_is_an_error_not_a_panic() {
        let code = main(
            &[
                "-s".into(),
                "/nonexistent/ferrocorn.ctl".into(),
                "show".into(),
                "stats".into(),
            ],
            Path::new("/nonexistent/x"),
        );
        assert_eq!(code, 1);
        let code = main(
            &["-c".into(), "reload".into(), "show".into()],
            Path::new("/nonexistent/x"),
        );
        assert_eq!(code, 2);
    }
}
