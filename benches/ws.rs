//! The sans-IO WebSocket layer alone: one client frame in (`receive_data`,
//! `poll`), the same message out (`send_text` or `send_binary`), as an echo
//! server does; plain and with permessage-deflate.
//!
//! `cargo bench --bench ws`

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};

use ferrocorn::ws::{negotiate, Config, Connection, DeflateParams, Event};

/// A masked client frame with FIN set; `rsv1` marks it compressed.
fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Receive `frame`, echo the message; the bytes written.
fn echo(conn: &mut Connection, frame: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    conn.receive_data(frame);
    match conn.poll() {
        Event::Text(t) => conn.send_text(&t, out).unwrap(),
        Event::Binary(b) => conn.send_binary(&b, out).unwrap(),
        other => panic!("{other:?}"),
    }
    out.len()
}

const CHAT: &str = r#"{"type":"message","room":"lobby","user":"ada","text":"hello, world"}"#;

fn plain(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_echo");
    for (name, opcode, payload) in [
        ("text_70b", 1u8, CHAT.as_bytes().to_vec()),
        ("binary_64k", 2, vec![0xA5; 64 * 1024]),
    ] {
        let frame = client_frame(opcode, false, &payload);
        let mut conn = Connection::new(&Config::default(), None);
        let mut out = Vec::new();
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(echo(&mut conn, black_box(&frame), &mut out)))
        });
    }
    g.finish();
}

fn deflate(c: &mut Criterion) {
    let offered = negotiate([&b"permessage-deflate"[..]]).unwrap();
    let mut g = c.benchmark_group("ws_echo_deflate");
    g.throughput(Throughput::Bytes(CHAT.len() as u64));
    // The client never keeps its context, so one compressed frame can be
    // received again and again; we keep ours or not.
    for (name, server_no_context_takeover) in [("text_70b", false), ("text_70b_no_context", true)] {
        let params = DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover: true,
            ..offered
        };
        // What such a client sends for CHAT: our own compressed frame, masked.
        let mut maker = Connection::new(&Config::default(), Some(params));
        let mut wire = Vec::new();
        maker.send_text(CHAT, &mut wire).unwrap();
        let frame = client_frame(1, true, &wire[2..]);
        let mut conn = Connection::new(&Config::default(), Some(params));
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(echo(&mut conn, black_box(&frame), &mut out)))
        });
    }
    g.finish();
}

criterion_group!(benches, plain, deflate);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
