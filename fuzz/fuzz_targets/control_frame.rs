//! Arbitrary bytes, in two pieces split where the fuzzer says, fed to the
//! control socket's frame decoder; every whole message is parsed as a
//! request and answered. Checked: no panic, no payload over the limit, a
//! too-large frame stays an error, and every reply is a frame of JSON.

#![no_main]

use ferrocorn::control::{frame, reply, request, Decoder, MAX_MESSAGE};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The decoder's limit (small, so it is reached), up to MAX_MESSAGE.
    max: u16,
    /// Where the bytes are split (taken modulo their length + 1).
    split: u16,
    data: Vec<u8>,
}

fn check_reply(bytes: &[u8]) {
    let mut d = Decoder::new(frame::MAX_REPLY);
    d.push(bytes);
    let payload = d
        .next_message()
        .expect("a whole reply")
        .expect("within the limit");
    let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert!(v.get("status").is_some());
    assert!(d.next_message().is_none());
}

fuzz_target!(|input: Input| {
    let max = (input.max as usize).min(MAX_MESSAGE);
    let mut d = Decoder::new(max);
    let cut = input.split as usize % (input.data.len() + 1);
    for piece in [&input.data[..cut], &input.data[cut..]] {
        d.push(piece);
        let mut messages = 0;
        while let Some(m) = d.next_message() {
            messages += 1;
            assert!(messages <= input.data.len() / 4 + 1, "decoder does not advance");
            match m {
                Ok(payload) => {
                    assert!(payload.len() <= max);
                    match request::parse(&payload) {
                        Ok(r) => check_reply(&reply::ok(&r.id, reply::help())),
                        Err(e) => check_reply(&reply::error(&e.id, &e.message)),
                    }
                }
                Err(_) => {
                    // Sticky: the stream cannot be read past a too-large prefix.
                    assert!(d.next_message().is_some_and(|m| m.is_err()));
                    return;
                }
            }
        }
    }
});
