//! Arbitrary bytes, in two pieces split where the fuzzer says, fed to one
//! `ws::Connection` (server side) with fuzzer-chosen settings and
//! permessage-deflate parameters; every message that comes out is sent
//! back, so the compressor runs too. Checked: no panic, a bounded number of
//! polls per piece (no busy loop), errors and the end of the close
//! handshake are sticky, no message is over the size limit, answers can be
//! sent after an error until the connection is failed, and nothing can be
//! sent once it is closing.

#![no_main]

use ferrocorn::ws::{negotiate, Config, Connection, DeflateParams, Event, State};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Max message size (small, so the limit is reached).
    max_message_size: u16,
    compression_level: u8,
    /// Negotiate permessage-deflate from `offer`.
    deflate: bool,
    offer: String,
    /// Where the bytes are split (taken modulo their length + 1).
    split: u16,
    data: Vec<u8>,
}

/// What a round of polling ended with.
#[derive(Debug, PartialEq)]
enum Outcome {
    NeedMore,
    Error(u16),
    Closed,
}

/// Poll until the connection needs more bytes or is done, echoing every
/// message. Each event takes at least one byte (a frame header is two),
/// so more than `fed + 8` polls in one round means the connection spins.
fn drain(conn: &mut Connection, fed: usize, limit: usize, out: &mut Vec<u8>) -> Outcome {
    let polls = fed + 8;
    for _ in 0..polls {
        match conn.poll() {
            Event::NeedMore => return Outcome::NeedMore,
            Event::Text(text) => {
                assert!(text.len() <= limit, "text of {} over {limit}", text.len());
                conn.send_text(&text, out).expect("echo while open");
            }
            Event::Binary(data) => {
                assert!(data.len() <= limit, "binary of {} over {limit}", data.len());
                conn.send_binary(&data, out).expect("echo while open");
            }
            Event::Pong(payload) => assert!(payload.len() <= 125),
            Event::Close { .. } => assert_eq!(conn.state(), State::Closed),
            Event::Error(e) => {
                assert_eq!(conn.error(), Some(e));
                // Answers to what came before the error still go out; then
                // the connection is failed.
                let open = conn.state() == State::Open;
                assert_eq!(conn.send_text("x", out).is_ok(), open, "answer before fail");
                conn.fail();
                assert_eq!(conn.state(), State::Closed);
                return Outcome::Error(e.close_code());
            }
            Event::Closed => return Outcome::Closed,
        }
    }
    panic!("no NeedMore, Error or Closed after {polls} polls");
}

fn check_sticky(conn: &mut Connection, outcome: &Outcome, out: &mut Vec<u8>) {
    match outcome {
        Outcome::NeedMore => {}
        Outcome::Error(code) => match conn.poll() {
            Event::Error(e) => assert_eq!(e.close_code(), *code, "the error changed"),
            other => panic!("an error was followed by {other:?}"),
        },
        Outcome::Closed => assert_eq!(conn.poll(), Event::Closed, "Closed is not sticky"),
    }
    if *outcome != Outcome::NeedMore {
        assert!(conn.send_text("x", out).is_err(), "sent after the end");
    }
}

fuzz_target!(|input: Input| {
    let cfg = Config {
        max_message_size: usize::from(input.max_message_size),
        permessage_deflate: input.deflate,
        compression_level: u32::from(input.compression_level % 10),
    };
    let deflate: Option<DeflateParams> = if input.deflate {
        negotiate([input.offer.as_bytes()])
    } else {
        None
    };
    if let Some(params) = &deflate {
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!(params.response_value().starts_with("permessage-deflate"));
    }
    let mut conn = Connection::new(&cfg, deflate);
    let split = usize::from(input.split) % (input.data.len() + 1);
    let (first, second) = input.data.split_at(split);
    let mut out = Vec::new();

    conn.receive_data(first);
    let outcome = drain(&mut conn, first.len(), cfg.max_message_size, &mut out);
    check_sticky(&mut conn, &outcome, &mut out);

    conn.receive_data(second);
    let outcome = drain(&mut conn, input.data.len(), cfg.max_message_size, &mut out);
    check_sticky(&mut conn, &outcome, &mut out);
    conn.drain_outgoing(&mut out);
});
