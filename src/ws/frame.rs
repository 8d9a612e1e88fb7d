//! One frame's header (RFC 6455 §5.2): read from the bytes at hand, written
//! in front of a payload; and the masking of payloads (§5.3).
//!
//! The header reader checks what a header alone can break: RSV2/RSV3,
//! unknown opcodes, control frames that are fragmented or longer than 125
//! bytes, and 64-bit lengths with the top bit set. RSV1, masking and the
//! order of frames depend on the connection and are checked there.
//! Non-minimal length encodings are accepted, as most peers do.

use super::{ErrorKind, ProtocolError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// 125: the longest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2_RSV3: u8 = 0x30;
const MASK: u8 = 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
}

fn protocol(detail: &'static str) -> ProtocolError {
    ProtocolError::new(ErrorKind::Protocol, detail)
}

/// The header at the start of `buf` and its length in bytes, `None` while
/// it is incomplete. Errors are found as soon as the bytes that show them
/// are there.
pub(super) fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, ProtocolError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & RSV2_RSV3 != 0 {
        return Err(protocol("reserved bits RSV2/RSV3 set"));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or_else(|| protocol("unknown opcode"))?;
    let fin = b0 & FIN != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(protocol("fragmented control frame"));
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(protocol("control frame payload over 125 bytes"));
        }
    }
    let (len, ext) = match len7 {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(protocol("64-bit payload length with the top bit set"));
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    let masked = b1 & MASK != 0;
    let mut at = 2 + ext;
    let mask = if masked {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    Ok(Some((
        Header {
            fin,
            rsv1: b0 & RSV1 != 0,
            opcode,
            mask,
            len,
        },
        at,
    )))
}

/// Append a frame header for a payload of `len` bytes (shortest length form).
pub(super) fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: Opcode,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    let b0 = if fin { FIN } else { 0 } | if rsv1 { RSV1 } else { 0 } | opcode.bits();
    let m = if mask.is_some() { MASK } else { 0 };
    match len {
        0..=125 => out.extend_from_slice(&[b0, m | len as u8]),
        126..=0xFFFF => {
            out.extend_from_slice(&[b0, m | 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[b0, m | 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XOR `buf` with `key`, for bytes that sit `offset` bytes into the payload.
/// Eight bytes at a time: the key repeats every four, so one u64 holds it twice.
pub(super) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let r = (offset % 4) as usize;
    let key = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(buf: &[u8]) -> Result<Option<(Header, usize)>, ProtocolError> {
        parse_header(buf)
    }

    #[test]
    fn every_length_class_round_trips_split_at_every_byte() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                write_header(&mut out, true, false, Opcode::Binary, len, mask);
                let expected =
                    2 + match len {
                        0..=125 => 0,
                        126..=65535 => 2,
                        _ => 8,
                    } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(out.len(), expected, "len {len}");
                for cut in 0..out.len() {
                    assert_eq!(header(&out[..cut]), Ok(None), "len {len} cut {cut}");
                }
                let (h, at) = header(&out).unwrap().unwrap();
                assert_eq!(at, out.len());
                assert_eq!(h.len, len as u64);
                assert_eq!(h.mask, mask);
                assert!(h.fin && !h.rsv1);
                assert_eq!(h.opcode, Opcode::Binary);
            }
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, at) = header(&[0x82, 126, 0, 5]).unwrap().unwrap();
        assert_eq!((h.len, at), (5, 4));
        let (h, at) = header(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, at), (5, 10));
    }

    #[test]
    fn header_errors_are_protocol_errors() {
        let cases: &[&[u8]] = &[
            &[0x92, 0],                              // RSV2
            &[0xA2, 0],                              // RSV3
            &[0x83, 0],                              // opcode 3
            &[0x8B, 0],                              // opcode 0xB
            &[0x09, 0],                              // ping without FIN
            &[0x88, 126],                            // close over 125
            &[0x89, 126, 0, 1],                      // ping with a 16-bit length
            &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], // top bit
        ];
        for bytes in cases {
            let err = header(bytes).unwrap_err();
            assert_eq!(err.close_code(), 1002, "{bytes:?}");
        }
        // The RSV and opcode errors show before the length arrives.
        assert!(header(&[0x83, 0xFF]).is_err());
    }

    #[test]
    fn rsv1_and_fin_are_reported() {
        let (h, _) = header(&[0x41, 0x80, 0, 0, 0, 0]).unwrap().unwrap();
        assert!(h.rsv1 && !h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.mask, Some([0, 0, 0, 0]));
    }

    #[test]
    fn masking_matches_the_bytewise_rule_at_every_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for offset in 0..8u64 {
            for len in [0, 1, 3, 7, 8, 9, 16, 17, 1000] {
                let mut buf = data[..len].to_vec();
                apply_mask(&mut buf, key, offset);
                let want: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(i + offset as usize) % 4])
                    .collect();
                assert_eq!(buf, want, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn rfc_6455_masked_hello() {
        // §5.7: a single-frame masked text message "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, at) = header(&frame).unwrap().unwrap();
        let mut payload = frame[at..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
    }
}
