//! Arbitrary bytes after the HTTP/2 client preface, in two pieces split
//! where the fuzzer says, fed to one `h2::Connection` with fuzzer-chosen
//! settings; every request that comes out is answered with a head and a
//! body of fuzzer-chosen size, so flow control and the send queue run too.
//! The same bytes also go through a lone HPACK decoder.
//!
//! Checked: no panic; no more events than bytes fed (plus one `Closed`);
//! nothing comes out after `Closed`; a decoded header block never hands
//! out more than the size limit allows.

#![no_main]

use std::time::{Duration, Instant};

use ferrocorn::h2::frame::PREFACE;
use ferrocorn::h2::hpack::Decoder;
use ferrocorn::h2::{Connection, Event, Settings};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    max_concurrent_streams: u8,
    initial_window_size: u16,
    max_header_list_size: u16,
    /// Start with the client preface (most inputs should get past it).
    preface: bool,
    /// Where the bytes are split (taken modulo their length + 1).
    split: u16,
    /// Response body length for each request (times 64 bytes).
    body_blocks: u8,
    /// Milliseconds between the two pieces.
    pause_ms: u16,
    data: Vec<u8>,
}

/// Answer what came out; count events.
fn drain(conn: &mut Connection, body: &[u8], events: &mut usize, closed: &mut bool) {
    while let Some(event) = conn.poll() {
        assert!(!*closed, "an event after Closed: {event:?}");
        *events += 1;
        match event {
            Event::Request { stream, .. } => {
                if conn
                    .send_response(stream, 200, [(&b"content-type"[..], &b"text/plain"[..])], false)
                    .is_ok()
                {
                    let _ = conn.send_data(stream, body, true);
                }
            }
            Event::Data { stream, data, .. } => conn.release(stream, data.len()),
            Event::Closed { .. } => *closed = true,
            _ => {}
        }
    }
}

fuzz_target!(|input: Input| {
    let settings = Settings {
        max_concurrent_streams: u32::from(input.max_concurrent_streams),
        initial_window_size: u32::from(input.initial_window_size),
        max_frame_size: 16_384,
        max_header_list_size: u32::from(input.max_header_list_size),
    };
    let limit = settings.max_header_list_size as usize;

    let mut decoder = Decoder::new(4096);
    let mut handed_out = 0;
    if let Ok(d) = decoder.decode(&input.data, limit.max(1), |n, v| handed_out += n.len() + v.len() + 32) {
        assert!(handed_out <= limit.max(1), "{handed_out} bytes handed out over a limit of {limit}");
        assert!(d.over_limit || handed_out == d.list_size);
    }

    let now = Instant::now();
    let mut conn = Connection::new(settings, now);
    let mut bytes = Vec::with_capacity(input.data.len() + PREFACE.len());
    if input.preface {
        bytes.extend_from_slice(PREFACE);
    }
    bytes.extend_from_slice(&input.data);
    let split = usize::from(input.split) % (bytes.len() + 1);
    let (first, second) = bytes.split_at(split);
    let body = vec![b'x'; usize::from(input.body_blocks) * 64];

    let (mut events, mut closed) = (0, false);
    conn.feed(first, now);
    drain(&mut conn, &body, &mut events, &mut closed);
    let later = now + Duration::from_millis(u64::from(input.pause_ms));
    conn.feed(second, later);
    drain(&mut conn, &body, &mut events, &mut closed);
    // Events: at most a few per frame, and a frame takes 9 bytes.
    assert!(events <= bytes.len() + 1, "{events} events from {} bytes", bytes.len());
    if closed {
        assert!(conn.is_done());
    }
});
