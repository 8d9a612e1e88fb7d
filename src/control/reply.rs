//! Replies: `{"id", "status": "ok", "data"}` or `{"id", "status": "error",
//! "error"}`, framed. The data of each command has the fields and types
//! gunicorn 27 sends, which `gunicornc` reads to print its tables; fields
//! of ferrocorn's own (a worker's slot and request count) come on top.

use serde_json::{json, Map, Value};

use super::frame;
use super::request::Mode;

/// A framed success reply.
pub fn ok(id: &Value, data: Value) -> Vec<u8> {
    frame::encode(
        json!({"id": id, "status": "ok", "data": data})
            .to_string()
            .as_bytes(),
    )
}

/// A framed error reply.
pub fn error(id: &Value, message: &str) -> Vec<u8> {
    frame::encode(
        json!({"id": id, "status": "error", "error": message})
            .to_string()
            .as_bytes(),
    )
}

/// One worker as the master sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    pub pid: i32,
    /// Spawn order (gunicorn's `worker.age`).
    pub age: u64,
    pub slot: usize,
    /// Ready to serve (gunicorn's `booted`).
    pub booted: bool,
    /// Sent SIGABRT after `--timeout`.
    pub aborted: bool,
    /// Seconds since the worker's loop last turned.
    pub last_heartbeat: Option<f64>,
    /// Responses the worker has finished; `None` where they are not
    /// counted (workers count them only with `--metrics-bind` or statsd on).
    pub requests: Option<u64>,
}

/// `show workers`: every worker, oldest first.
pub fn workers(list: &[WorkerView]) -> Value {
    let workers: Vec<Value> = sorted(list)
        .iter()
        .map(|w| {
            json!({
                "pid": w.pid,
                "age": w.age,
                "booted": w.booted,
                "aborted": w.aborted,
                "last_heartbeat": w.last_heartbeat,
                "slot": w.slot,
                "requests": w.requests,
            })
        })
        .collect();
    json!({"count": workers.len(), "workers": workers})
}

/// `show all`: the master and its workers; no dirty arbiter.
pub fn all(master_pid: u32, list: &[WorkerView]) -> Value {
    let workers: Vec<Value> = sorted(list)
        .iter()
        .map(|w| {
            json!({
                "pid": w.pid,
                "type": "web",
                "age": w.age,
                "booted": w.booted,
                "last_heartbeat": w.last_heartbeat,
                "slot": w.slot,
                "requests": w.requests,
            })
        })
        .collect();
    json!({
        "arbiter": {"pid": master_pid, "type": "arbiter", "role": "master"},
        "web_worker_count": workers.len(),
        "web_workers": workers,
        "dirty_arbiter": null,
        "dirty_workers": [],
        "dirty_worker_count": 0,
    })
}

fn sorted(list: &[WorkerView]) -> Vec<&WorkerView> {
    let mut v: Vec<&WorkerView> = list.iter().collect();
    v.sort_by_key(|w| w.age);
    v
}

/// `show stats`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub uptime: f64,
    pub pid: u32,
    pub workers_current: usize,
    pub workers_target: usize,
    pub workers_spawned: u64,
    /// Workers the master told to stop (retired, removed, killed on request or timeout).
    pub workers_killed: u64,
    pub reloads: u64,
}

pub fn stats(s: &Stats) -> Value {
    json!({
        "uptime": (s.uptime * 100.0).round() / 100.0,
        "pid": s.pid,
        "workers_current": s.workers_current,
        "workers_target": s.workers_target,
        "workers_spawned": s.workers_spawned,
        "workers_killed": s.workers_killed,
        "reloads": s.reloads,
        "dirty_arbiter_pid": null,
    })
}

/// One bound socket.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerView {
    /// As the start-up log writes it: `http://127.0.0.1:8000`, `unix:/run/app.sock`.
    pub address: String,
    pub fd: i32,
    /// `tcp`, `tcp6`, `unix` or `fd`.
    pub kind: &'static str,
}

/// `show listeners`.
pub fn listeners(list: &[ListenerView]) -> Value {
    let listeners: Vec<Value> = list
        .iter()
        .map(|l| json!({"address": l.address, "fd": l.fd, "type": l.kind}))
        .collect();
    json!({"count": listeners.len(), "listeners": listeners})
}

/// `show config`: the settings gunicorn 27 reports, by name.
pub const CONFIG_KEYS: &[&str] = &[
    "bind",
    "workers",
    "worker_class",
    "threads",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_requests",
    "max_requests_jitter",
    "worker_connections",
    "preload_app",
    "daemon",
    "pidfile",
    "proc_name",
    "reload",
    "dirty_workers",
    "dirty_apps",
    "dirty_timeout",
    "control_socket",
    "control_socket_disable",
];

/// `show config` from (name, value) pairs.
pub fn config(pairs: Vec<(String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
}

/// `show dirty`: ferrocorn has no dirty arbiter; gunicorn answers this when it runs none.
pub fn dirty() -> Value {
    json!({"enabled": false, "pid": null, "workers": [], "apps": []})
}

/// `dirty add|remove`, as gunicorn answers with no dirty arbiter.
pub fn dirty_change() -> Value {
    json!({"success": false, "error": "Dirty arbiter not running"})
}

/// `worker add N`.
pub fn added(count: usize, previous: usize, total: usize) -> Value {
    json!({"added": count, "previous": previous, "total": total})
}

/// `worker remove N`.
pub fn removed(count: usize, previous: usize, total: usize) -> Value {
    json!({"removed": count, "previous": previous, "total": total})
}

/// `worker kill PID`.
pub fn killed(pid: i32) -> Value {
    json!({"success": true, "killed": pid})
}

/// `worker kill PID` for a process that is not one of the workers.
pub fn not_killed(pid: i32) -> Value {
    json!({"success": false, "error": format!("Worker {pid} not found")})
}

pub fn reloading() -> Value {
    json!({"status": "reloading"})
}

pub fn reopening() -> Value {
    json!({"status": "reopening"})
}

pub fn shutting_down(mode: Mode) -> Value {
    json!({"status": "shutting_down", "mode": mode.as_str()})
}

/// `help`: every command and what it does.
pub fn help() -> Value {
    let commands: Map<String, Value> = HELP
        .iter()
        .map(|(c, d)| (c.to_string(), Value::from(*d)))
        .collect();
    json!({ "commands": commands })
}

const HELP: &[(&str, &str)] = &[
    ("show all", "The master and every worker"),
    (
        "show workers",
        "Each worker: pid, age, ready, last heartbeat, requests",
    ),
    ("show dirty", "Dirty workers (ferrocorn has none)"),
    ("show config", "The running configuration"),
    ("show stats", "Uptime, worker counts, reloads"),
    ("show listeners", "The bound sockets"),
    ("worker add [N]", "N more workers (default 1), as TTIN"),
    (
        "worker remove [N]",
        "N fewer workers (default 1, never below 1), as TTOU",
    ),
    (
        "worker kill <PID>",
        "Stop one worker gracefully; a new one takes its place",
    ),
    ("dirty add [N]", "Answers that no dirty arbiter runs"),
    ("dirty remove [N]", "Answers that no dirty arbiter runs"),
    (
        "reload",
        "Reload the configuration and replace the workers, as HUP",
    ),
    ("reopen", "Reopen the log files, as USR1"),
    (
        "shutdown [graceful|quick]",
        "Stop the server, as TERM (graceful) or INT (quick)",
    ),
    ("help", "This list"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framed: &[u8]) -> Value {
        let mut d = frame::Decoder::new(frame::MAX_REPLY);
        d.push(framed);
        let payload = d.next_message().unwrap().unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    fn worker(pid: i32, age: u64) -> WorkerView {
        WorkerView {
            pid,
            age,
            slot: 0,
            booted: true,
            aborted: false,
            last_heartbeat: Some(0.25),
            requests: Some(7),
        }
    }

    #[test]
    fn ok_and_error_replies_have_gunicorns_envelope() {
        let v = decode(&ok(&Value::from(3), json!({"a": 1})));
        assert_eq!(v, json!({"id": 3, "status": "ok", "data": {"a": 1}}));
        let v = decode(&error(&Value::from("x"), "Empty command"));
        assert_eq!(
            v,
            json!({"id": "x", "status": "error", "error": "Empty command"})
        );
    }

    #[test]
    fn workers_come_oldest_first_with_the_fields_gunicornc_prints() {
        let v = workers(&[worker(20, 2), worker(10, 1)]);
        assert_eq!(v["count"], 2);
        assert_eq!(v["workers"][0]["pid"], 10);
        for key in ["pid", "age", "booted", "aborted", "last_heartbeat"] {
            assert!(v["workers"][0].get(key).is_some(), "{key}");
        }
        let v = all(1, &[worker(20, 2), worker(10, 1)]);
        assert_eq!(v["arbiter"]["pid"], 1);
        assert_eq!(v["web_worker_count"], 2);
        assert_eq!(v["web_workers"][1]["pid"], 20);
        assert_eq!(v["web_workers"][0]["type"], "web");
        assert_eq!(v["dirty_arbiter"], Value::Null);
    }

    #[test]
    fn stats_round_uptime_and_have_no_dirty_arbiter() {
        let v = stats(&Stats {
            uptime: 12.3456,
            pid: 42,
            workers_current: 2,
            workers_target: 2,
            workers_spawned: 3,
            workers_killed: 1,
            reloads: 1,
        });
        assert_eq!(v["uptime"], 12.35);
        assert_eq!(v["dirty_arbiter_pid"], Value::Null);
        assert_eq!(v["workers_spawned"], 3);
    }

    #[test]
    fn dirty_answers_are_gunicorns_without_a_dirty_arbiter() {
        assert_eq!(dirty()["enabled"], false);
        assert_eq!(dirty_change()["error"], "Dirty arbiter not running");
    }

    #[test]
    fn help_lists_every_command() {
        let v = help();
        let commands = v["commands"].as_object().unwrap();
        assert_eq!(commands.len(), HELP.len());
        assert!(commands.contains_key("worker kill <PID>"));
    }
}
