//! The permessage-deflate codec (RFC 7692 §7.2): raw DEFLATE, each message
//! ended by a sync flush whose `00 00 FF FF` tail is cut on the wire and put
//! back before inflating.
//!
//! Inflating stops as soon as the output passes the message size limit, so
//! a small frame cannot make us hold a large message (a deflate bomb).
//! flate2 runs on the zlib-rs backend: it honours window sizes under 15 for
//! compression, which miniz_oxide cannot. zlib has no 256-byte window for
//! raw deflate, so with `server_max_window_bits=8` messages go out
//! uncompressed (RSV1 clear), which §6 allows.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::extension::{DeflateParams, MAX_WINDOW_BITS};
use super::{ErrorKind, ProtocolError};

const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// At most how much output space to offer zlib per call (small inputs get less, so a short message costs little).
const INFLATE_STEP: usize = 16 * 1024;

/// The zlib streams are made on first use: an idle connection holds none
/// (a deflate stream with a 15-bit window is about 256 KiB, an inflate one
/// about 44 KiB).
pub(super) struct Codec {
    params: DeflateParams,
    level: u32,
    inflate_bits: u8,
    inflate: Option<Decompress>,
    /// `None` when our window must be 8 bits: we then never compress.
    deflate_bits: Option<u8>,
    deflate: Option<Compress>,
    /// The last inflate of this message hit the end of a final block: the
    /// rest of the message is ignored and the stream starts again after it.
    stream_ended: bool,
}

impl Codec {
    pub fn new(params: DeflateParams, level: u32) -> Codec {
        // zlib needs 9..=15; a larger window than the peer's is always safe to inflate with.
        let inflate_bits = params
            .client_max_window_bits
            .unwrap_or(MAX_WINDOW_BITS)
            .max(9);
        let deflate_bits =
            (params.server_max_window_bits >= 9).then_some(params.server_max_window_bits);
        Codec {
            params,
            level: level.min(9),
            inflate_bits,
            inflate: None,
            deflate_bits,
            deflate: None,
            stream_ended: false,
        }
    }

    /// Inflate `input` (a piece of a compressed message) onto `out`; an
    /// error once `out` would grow past `limit` bytes.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.inflate_with(input, out, limit, FlushDecompress::None)
    }

    /// The message is complete: inflate the cut tail and reset the stream
    /// when the client does not keep its context.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), ProtocolError> {
        let result = self.inflate_with(&TAIL, out, limit, FlushDecompress::Sync);
        if self.params.client_no_context_takeover || self.stream_ended {
            if let Some(inflate) = &mut self.inflate {
                inflate.reset(false);
            }
            self.stream_ended = false;
        }
        result
    }

    fn inflate_with(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        flush: FlushDecompress,
    ) -> Result<(), ProtocolError> {
        let bits = self.inflate_bits;
        let inflate = self
            .inflate
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        while !self.stream_ended {
            // Room for at most one byte past the limit: enough to tell it was passed.
            let step = input.len().saturating_mul(4).clamp(1024, INFLATE_STEP);
            let room = (limit + 1).saturating_sub(out.len()).min(step);
            if room == 0 {
                return Err(too_big());
            }
            let start = out.len();
            out.resize(start + room, 0);
            let before_in = inflate.total_in();
            let before_out = inflate.total_out();
            let status = inflate.decompress(input, &mut out[start..], flush);
            let used = (inflate.total_in() - before_in) as usize;
            let produced = (inflate.total_out() - before_out) as usize;
            out.truncate(start + produced);
            let status = status.map_err(|_| {
                ProtocolError::new(
                    ErrorKind::InvalidPayload,
                    "compressed data does not inflate",
                )
            })?;
            input = &input[used..];
            if out.len() > limit {
                return Err(too_big());
            }
            match status {
                Status::StreamEnd => self.stream_ended = true,
                // Space left over: zlib has nothing more to give for this input.
                _ if produced < room && (input.is_empty() || used == 0) => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether outgoing messages are compressed at all.
    pub fn compresses(&self) -> bool {
        self.deflate_bits.is_some()
    }

    /// Compress a whole message onto `out`, tail cut. `false` (and `out`
    /// unchanged) when this connection does not compress.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(bits) = self.deflate_bits else {
            return false;
        };
        let level = self.level;
        let deflate = self.deflate.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        let start = out.len();
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 64);
            }
            let before_in = deflate.total_in();
            if deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                // Not reachable with valid settings; send the message plain.
                out.truncate(start);
                deflate.reset();
                return false;
            }
            input = &input[(deflate.total_in() - before_in) as usize..];
            // The flush is complete once it stops short of the space it was given.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.params.server_no_context_takeover {
            deflate.reset();
        }
        true
    }
}

fn too_big() -> ProtocolError {
    ProtocolError::new(ErrorKind::TooBig, "message over the size limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: None,
        }
    }

    fn inflate_message(
        codec: &mut Codec,
        data: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        codec.inflate(data, &mut out, limit)?;
        codec.finish_message(&mut out, limit)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_hello_examples_inflate() {
        let mut codec = Codec::new(params(), 6);
        // §7.2.3.1: "Hello" compressed.
        assert_eq!(
            inflate_message(&mut codec, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
            b"Hello"
        );
        // §7.2.3.2: the second "Hello" with the context kept refers back to the first.
        assert_eq!(
            inflate_message(&mut codec, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(),
            b"Hello"
        );
        // §7.2.3.3: a stored block.
        let mut codec = Codec::new(params(), 6);
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_message(&mut codec, &stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: BFINAL set; the next message starts a new stream.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(
            inflate_message(&mut codec, &final_block, 100).unwrap(),
            b"Hello"
        );
        assert_eq!(
            inflate_message(&mut codec, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn rfc_7692_hello_compresses_to_the_example_bytes() {
        let mut codec = Codec::new(params(), 6);
        let mut out = Vec::new();
        assert!(codec.compress(b"Hello", &mut out));
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        out.clear();
        assert!(codec.compress(b"Hello", &mut out));
        assert_eq!(out, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for nct in [false, true] {
            for bits in [9u8, 12, 15] {
                let p = DeflateParams {
                    server_no_context_takeover: nct,
                    client_no_context_takeover: nct,
                    server_max_window_bits: bits,
                    client_max_window_bits: Some(bits),
                };
                let mut tx = Codec::new(p, 6);
                let mut rx = Codec::new(p, 6);
                let msg: Vec<u8> = b"the quick brown fox jumps over the lazy dog "
                    .iter()
                    .copied()
                    .cycle()
                    .take(100_000)
                    .collect();
                let mut sizes = Vec::new();
                for round in 0..3 {
                    let mut wire = Vec::new();
                    assert!(tx.compress(&msg, &mut wire));
                    sizes.push(wire.len());
                    // Fed in pieces, as frames and reads cut it.
                    let mut out = Vec::new();
                    for piece in wire.chunks(777) {
                        rx.inflate(piece, &mut out, msg.len()).unwrap();
                    }
                    rx.finish_message(&mut out, msg.len()).unwrap();
                    assert_eq!(out, msg, "nct {nct} bits {bits} round {round}");
                }
                assert!(sizes[0] < msg.len() / 10, "{sizes:?}");
                if nct {
                    assert_eq!(sizes[1], sizes[0], "no context: every message the same");
                } else {
                    assert!(sizes[1] < sizes[0], "context kept: the repeat is cheaper");
                }
            }
        }
    }

    #[test]
    fn empty_message_round_trips() {
        let mut tx = Codec::new(params(), 6);
        let mut rx = Codec::new(params(), 6);
        let mut wire = Vec::new();
        assert!(tx.compress(b"", &mut wire));
        assert_eq!(inflate_message(&mut rx, &wire, 10).unwrap(), b"");
        assert_eq!(inflate_message(&mut rx, &[], 10).unwrap(), b"");
    }

    #[test]
    fn inflating_stops_just_past_the_limit() {
        let mut tx = Codec::new(params(), 9);
        let bomb = vec![0u8; 10 << 20];
        let mut wire = Vec::new();
        tx.compress(&bomb, &mut wire);
        assert!(wire.len() < 20_000);
        let mut rx = Codec::new(params(), 6);
        let mut out = Vec::new();
        let err = rx.inflate(&wire, &mut out, 1 << 20).unwrap_err();
        assert_eq!(err.close_code(), 1009);
        assert!(out.len() <= (1 << 20) + 1, "{}", out.len());
        // Exactly at the limit is fine.
        let mut rx = Codec::new(params(), 6);
        assert_eq!(
            inflate_message(&mut rx, &wire, bomb.len()).unwrap().len(),
            bomb.len()
        );
    }

    #[test]
    fn corrupt_data_is_1007() {
        let mut rx = Codec::new(params(), 6);
        let err = inflate_message(&mut rx, &[0xff, 0xff, 0xff, 0xff], 100).unwrap_err();
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn window_bits_8_sends_uncompressed() {
        let p = DeflateParams {
            server_max_window_bits: 8,
            ..params()
        };
        let mut codec = Codec::new(p, 6);
        assert!(!codec.compresses());
        let mut out = Vec::new();
        assert!(!codec.compress(b"Hello", &mut out));
        assert!(out.is_empty());
    }
}
