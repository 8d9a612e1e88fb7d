//! The Prometheus text exposition format (version 0.0.4) of a `Snapshot`.

use std::fmt::Write;

use super::Snapshot;
use crate::sys::shm::DURATION_BOUNDS_MS;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Render every metric, with HELP and TYPE lines.
pub fn render(s: &Snapshot, out: &mut String) {
    let c = &s.counters;
    let total = c.responses();

    head(
        out,
        "ferrocorn_requests_total",
        "counter",
        "Requests answered by the workers (ended responses), reaped workers included.",
    );
    let _ = writeln!(out, "ferrocorn_requests_total {total}");

    head(
        out,
        "ferrocorn_responses_total",
        "counter",
        "Ended responses by status class.",
    );
    for (class, n) in CLASSES.iter().zip(c.classes) {
        let _ = writeln!(out, "ferrocorn_responses_total{{class=\"{class}\"}} {n}");
    }

    head(
        out,
        "ferrocorn_request_duration_seconds",
        "histogram",
        "Time from the app call to the end of the response.",
    );
    let mut cumulative = 0u64;
    for (ms, n) in DURATION_BOUNDS_MS.iter().zip(c.durations) {
        cumulative += n;
        let le = *ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "ferrocorn_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "ferrocorn_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        out,
        "ferrocorn_request_duration_seconds_sum {}",
        c.duration_us as f64 / 1e6
    );
    let _ = writeln!(out, "ferrocorn_request_duration_seconds_count {total}");

    head(
        out,
        "ferrocorn_requests_in_flight",
        "gauge",
        "Requests whose app call started and whose response has not ended.",
    );
    let in_flight: i64 = s.workers.iter().map(|w| w.in_flight.max(0)).sum();
    let _ = writeln!(out, "ferrocorn_requests_in_flight {in_flight}");

    head(
        out,
        "ferrocorn_requests_shed_total",
        "counter",
        "Requests refused with 503 by admission control.",
    );
    let _ = writeln!(out, "ferrocorn_requests_shed_total {}", c.shed);

    let f = &c.faults;
    for (name, help, n) in [
        (
            "ferrocorn_accept_rests_total",
            "Times a worker stopped accepting for a while after a resource error (EMFILE, ENFILE, ENOMEM).",
            f.accept_rests,
        ),
        (
            "ferrocorn_uring_cq_overflows_total",
            "io_uring turns whose completions overflowed the completion queue (kept by the kernel, none lost).",
            f.cq_overflows,
        ),
        (
            "ferrocorn_uring_recv_buffer_exhaustions_total",
            "io_uring multishot receives ended by an empty provided-buffer ring (ENOBUFS) and re-armed.",
            f.recv_no_buffers,
        ),
    ] {
        head(out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }

    head(out, "ferrocorn_workers", "gauge", "Worker processes alive.");
    let _ = writeln!(out, "ferrocorn_workers {}", s.workers.len());

    head(
        out,
        "ferrocorn_worker_restarts_total",
        "counter",
        "Workers that died without being asked to stop (crashes, kills, timeouts).",
    );
    let _ = writeln!(out, "ferrocorn_worker_restarts_total {}", s.restarts);

    head(
        out,
        "ferrocorn_worker_timeouts_total",
        "counter",
        "Workers aborted by the master after --timeout.",
    );
    let _ = writeln!(out, "ferrocorn_worker_timeouts_total {}", s.timeouts);

    head(
        out,
        "ferrocorn_worker_signal_deaths_total",
        "counter",
        "Workers killed by a signal the master did not send (kill -9, the OOM killer, a crash).",
    );
    let _ = writeln!(
        out,
        "ferrocorn_worker_signal_deaths_total {}",
        s.signal_deaths
    );

    head(
        out,
        "ferrocorn_worker_rss_recycles_total",
        "counter",
        "Workers replaced because their resident memory passed --max-worker-rss.",
    );
    let _ = writeln!(
        out,
        "ferrocorn_worker_rss_recycles_total {}",
        s.rss_recycles
    );

    head(
        out,
        "ferrocorn_worker_info",
        "gauge",
        "One series per live worker: its pid, slot and io engine.",
    );
    for w in &s.workers {
        let _ = writeln!(
            out,
            "ferrocorn_worker_info{{pid=\"{}\",slot=\"{}\",engine=\"{}\"}} 1",
            w.pid,
            w.slot,
            w.engine_name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerView;
    use crate::sys::shm::{Counters, EngineFaults, ENGINE_EPOLL, ENGINE_URING};

    fn sample() -> Snapshot {
        let mut c = Counters {
            shed: 2,
            classes: [0, 3, 0, 1, 1],
            duration_us: 1_500_000,
            faults: EngineFaults {
                accept_rests: 3,
                cq_overflows: 1,
                recv_no_buffers: 7,
            },
            ..Counters::default()
        };
        c.durations[0] = 2; // <= 5 ms
        c.durations[2] = 2; // <= 25 ms
        c.durations[11] = 1; // past 10 s
        Snapshot {
            counters: c,
            workers: vec![
                WorkerView {
                    pid: 10,
                    slot: 0,
                    engine: ENGINE_URING,
                    in_flight: 1,
                },
                WorkerView {
                    pid: 11,
                    slot: 1,
                    engine: ENGINE_EPOLL,
                    in_flight: 2,
                },
            ],
            restarts: 4,
            timeouts: 1,
            signal_deaths: 2,
            rss_recycles: 3,
        }
    }

    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_string()
    }

    #[test]
    fn counters_and_gauges_are_rendered_with_help_and_type() {
        let mut out = String::new();
        render(&sample(), &mut out);
        assert_eq!(value(&out, "ferrocorn_requests_total"), "5");
        assert_eq!(value(&out, "ferrocorn_responses_total{class=\"2xx\"}"), "3");
        assert_eq!(value(&out, "ferrocorn_responses_total{class=\"5xx\"}"), "1");
        assert_eq!(value(&out, "ferrocorn_requests_in_flight"), "3");
        assert_eq!(value(&out, "ferrocorn_requests_shed_total"), "2");
        assert_eq!(value(&out, "ferrocorn_workers"), "2");
        assert_eq!(value(&out, "ferrocorn_worker_restarts_total"), "4");
        assert_eq!(value(&out, "ferrocorn_worker_timeouts_total"), "1");
        assert_eq!(value(&out, "ferrocorn_worker_signal_deaths_total"), "2");
        assert_eq!(value(&out, "ferrocorn_worker_rss_recycles_total"), "3");
        assert_eq!(value(&out, "ferrocorn_accept_rests_total"), "3");
        assert_eq!(value(&out, "ferrocorn_uring_cq_overflows_total"), "1");
        assert_eq!(
            value(&out, "ferrocorn_uring_recv_buffer_exhaustions_total"),
            "7"
        );
        assert_eq!(
            value(
                &out,
                "ferrocorn_worker_info{pid=\"11\",slot=\"1\",engine=\"epoll\"}"
            ),
            "1"
        );
        assert!(out.contains("# TYPE ferrocorn_requests_total counter\n"));
        assert!(out.contains("# TYPE ferrocorn_request_duration_seconds histogram\n"));
        assert!(out.contains("# TYPE ferrocorn_workers gauge\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                out.contains(&format!("# HELP {family} ")),
                "no HELP for {name}"
            );
        }
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut out = String::new();
        render(&sample(), &mut out);
        let bucket = |le: &str| {
            value(
                &out,
                &format!("ferrocorn_request_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.005"), "2");
        assert_eq!(bucket("0.01"), "2");
        assert_eq!(bucket("0.025"), "4");
        assert_eq!(bucket("1"), "4");
        assert_eq!(bucket("10"), "4");
        assert_eq!(bucket("+Inf"), "5");
        assert_eq!(value(&out, "ferrocorn_request_duration_seconds_count"), "5");
        assert_eq!(value(&out, "ferrocorn_request_duration_seconds_sum"), "1.5");
        let les: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("ferrocorn_request_duration_seconds_bucket{le=\""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert_eq!(
            les,
            [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf"
            ]
        );
    }

    #[test]
    fn no_workers_renders_empty_info_and_zero_gauges() {
        let mut out = String::new();
        render(&Snapshot::default(), &mut out);
        assert_eq!(value(&out, "ferrocorn_workers"), "0");
        assert_eq!(value(&out, "ferrocorn_requests_in_flight"), "0");
        assert!(!out.contains("ferrocorn_worker_info{"));
    }
}
