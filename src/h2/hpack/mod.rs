//! HPACK (RFC 7541): header compression for HTTP/2, sans-IO.
//!
//! The decoder bounds what a header block can cost: the decoded size
//! (RFC 9113 6.5.2's name + value + 32 per field) is checked against a
//! limit as fields come out, and a dynamic table size update above the size
//! we announced is an error. The encoder indexes what repeats and never
//! indexes what should not be (cookies, credentials, lengths).

mod decode;
mod encode;
mod huffman;
mod table;

pub use decode::{Decoded, Decoder};
pub use encode::{Encoder, Indexing};

use std::fmt;

/// What can be wrong in a header block: each is a COMPRESSION_ERROR
/// (RFC 9113 4.3), fatal to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer longer than any size or index we accept.
    IntegerOverflow,
    /// Index 0, or past the end of the static and dynamic tables.
    BadIndex,
    /// Invalid Huffman code (EOS, or bad padding).
    Huffman,
    /// A dynamic table size update above our SETTINGS_HEADER_TABLE_SIZE.
    TableSizeTooLarge,
    /// A dynamic table size update after the first field of a block.
    LateTableSizeUpdate,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            HpackError::Truncated => "header block ends inside a field",
            HpackError::IntegerOverflow => "integer too large",
            HpackError::BadIndex => "index out of the tables",
            HpackError::Huffman => "invalid Huffman code",
            HpackError::TableSizeTooLarge => "table size update above the announced size",
            HpackError::LateTableSizeUpdate => "table size update after a field",
        };
        f.write_str(what)
    }
}

/// Largest integer decoded (a size, length or index): far above any limit we
/// set, low enough that arithmetic on it cannot overflow.
const MAX_INTEGER: u64 = 1 << 30;

/// Decode an integer with an `prefix`-bit prefix (RFC 7541 5.1) from the
/// start of `buf`: (value, bytes used).
pub(crate) fn decode_integer(buf: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    let first = *buf.first().ok_or(HpackError::Truncated)?;
    let mask = ((1u16 << prefix) - 1) as u8;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok((value as usize, 1));
    }
    let mut shift = 0;
    for (i, &b) in buf[1..].iter().enumerate() {
        // Five continuation bytes carry 35 bits, past MAX_INTEGER: more is
        // padding with zeros (0x80 0x80 ...) that must not run on.
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INTEGER {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok((value as usize, i + 2));
        }
        shift += 7;
    }
    Err(HpackError::Truncated)
}

/// Append `value` with a `prefix`-bit prefix; `flags` fills the bits above it.
pub(crate) fn encode_integer(value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let mask = ((1u16 << prefix) - 1) as usize;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A dynamic table size update, for tests that send a bad one.
    pub fn size_update(size: usize, out: &mut Vec<u8>) {
        super::encode_integer(size, 5, 0x20, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_from_rfc_c1() {
        let mut out = Vec::new();
        encode_integer(10, 5, 0, &mut out);
        assert_eq!(out, [0b01010]);
        out.clear();
        encode_integer(1337, 5, 0, &mut out);
        assert_eq!(out, [0b11111, 0b1001_1010, 0b0000_1010]);
        assert_eq!(decode_integer(&out, 5), Ok((1337, 3)));
        out.clear();
        encode_integer(42, 8, 0, &mut out);
        assert_eq!(out, [42]);
        assert_eq!(decode_integer(&out, 8), Ok((42, 1)));
    }

    #[test]
    fn oversized_integer_is_refused() {
        let buf = [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_integer(&buf, 5), Err(HpackError::IntegerOverflow));
        assert_eq!(decode_integer(&[0x1f, 0x80], 5), Err(HpackError::Truncated));
        // Endless continuation bytes of zero never overflow but must end.
        let mut zeros = vec![0x1f];
        zeros.extend([0x80; 20]);
        assert_eq!(decode_integer(&zeros, 5), Err(HpackError::IntegerOverflow));
        // The fuzzer's find: many zero continuation bytes, then an end.
        zeros.push(0x01);
        assert_eq!(decode_integer(&zeros, 5), Err(HpackError::IntegerOverflow));
    }
    /// RFC 7541 Appendix C: (block in hex, fields, table size after it).
    type Example = (&'static str, &'static [(&'static str, &'static str)], usize);

    const C2: [Example; 4] = [
        (
            "400a637573746f6d2d6b65790d637573746f6d2d686561646572",
            &[("custom-key", "custom-header")],
            55,
        ),
        (
            "040c2f73616d706c652f70617468",
            &[(":path", "/sample/path")],
            0,
        ),
        (
            "100870617373776f726406736563726574",
            &[("password", "secret")],
            0,
        ),
        ("82", &[(":method", "GET")], 0),
    ];

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    const C3: [Example; 3] = [
        ("828684410f7777772e6578616d706c652e636f6d", REQ1, 57),
        ("828684be58086e6f2d6361636865", REQ2, 110),
        (
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
            REQ3,
            164,
        ),
    ];
    const C4: [Example; 3] = [
        ("828684418cf1e3c2e5f23a6ba0ab90f4ff", REQ1, 57),
        ("828684be5886a8eb10649cbf", REQ2, 110),
        (
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
            REQ3,
            164,
        ),
    ];
    const C5: [Example; 3] = [
        (
            "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
            RESP1,
            222,
        ),
        ("4803333037c1c0bf", RESP2, 222),
        (
            "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
            RESP3,
            215,
        ),
    ];
    const C6: [Example; 3] = [
        (
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
            RESP1,
            222,
        ),
        ("4883640effc1c0bf", RESP2, 222),
        (
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
            RESP3,
            215,
        ),
    ];

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode_all(decoder: &mut Decoder, examples: &[Example]) {
        for (block, fields, size) in examples {
            let mut got = Vec::new();
            let out = decoder
                .decode(&hex(block), usize::MAX, |n, v| {
                    got.push((n.to_vec(), v.to_vec()))
                })
                .unwrap();
            assert!(!out.over_limit);
            let want: Vec<_> = fields
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(got, want, "{block}");
            assert_eq!(decoder.table().size(), *size, "{block}");
        }
    }

    fn encode_all(encoder: &mut Encoder, examples: &[Example]) {
        for (block, fields, _) in examples {
            let mut out = Vec::new();
            encoder.start_block(&mut out);
            for (n, v) in fields.iter() {
                encoder.encode(n.as_bytes(), v.as_bytes(), Indexing::Incremental, &mut out);
            }
            assert_eq!(out, hex(block), "{block}");
        }
    }

    #[test]
    fn decodes_rfc_c2_single_fields() {
        for example in &C2 {
            decode_all(&mut Decoder::new(4096), std::slice::from_ref(example));
        }
    }

    #[test]
    fn encodes_rfc_c2_single_fields() {
        let modes = [
            Indexing::Incremental,
            Indexing::Without,
            Indexing::Never,
            Indexing::Incremental,
        ];
        for ((block, fields, _), mode) in C2.iter().zip(modes) {
            let mut enc = Encoder::new().without_huffman();
            let mut out = Vec::new();
            let (n, v) = fields[0];
            enc.encode(n.as_bytes(), v.as_bytes(), mode, &mut out);
            assert_eq!(out, hex(block));
        }
    }

    #[test]
    fn decodes_rfc_c3_to_c6() {
        decode_all(&mut Decoder::new(4096), &C3);
        decode_all(&mut Decoder::new(4096), &C4);
        decode_all(&mut Decoder::new(256), &C5);
        decode_all(&mut Decoder::new(256), &C6);
    }

    #[test]
    fn encodes_rfc_c3_to_c6() {
        encode_all(&mut Encoder::new().without_huffman(), &C3);
        encode_all(&mut Encoder::new(), &C4);
        encode_all(&mut Encoder::with_table_size(256).without_huffman(), &C5);
        encode_all(&mut Encoder::with_table_size(256), &C6);
    }

    #[test]
    fn decoded_size_limit_stops_fields_but_keeps_table() {
        let mut d = Decoder::new(4096);
        let mut seen = 0;
        // 57 + 42 + 42 + 42 bytes by RFC 9113's count; the limit allows two fields.
        let out = d.decode(&hex(C3[0].0), 57 + 42, |_, _| seen += 1).unwrap();
        assert!(out.over_limit);
        assert_eq!(seen, 2);
        // The :authority literal was still added: the next block refers to it.
        decode_all(&mut d, &C3[1..2]);
    }

    #[test]
    fn hpack_bomb_is_cut_at_the_limit() {
        // One 4000-byte value indexed once, then referred to by one byte 1000 times.
        let mut block = vec![0x40, 0x01, b'x'];
        encode_integer(4000, 7, 0, &mut block);
        block.extend(std::iter::repeat_n(b'a', 4000));
        block.extend(std::iter::repeat_n(0xbe, 1000));
        let mut d = Decoder::new(4096);
        let mut bytes = 0;
        let out = d
            .decode(&block, 65536, |n, v| bytes += n.len() + v.len())
            .unwrap();
        assert!(out.over_limit);
        assert!(bytes <= 65536);
    }

    #[test]
    fn table_size_update_above_our_setting_is_an_error() {
        let mut d = Decoder::new(4096);
        let mut block = Vec::new();
        encode_integer(4097, 5, 0x20, &mut block);
        assert_eq!(
            d.decode(&block, usize::MAX, |_, _| {}),
            Err(HpackError::TableSizeTooLarge)
        );
        let mut ok = Vec::new();
        encode_integer(100, 5, 0x20, &mut ok);
        ok.push(0x82);
        assert!(d.decode(&ok, usize::MAX, |_, _| {}).is_ok());
        // After a field it is too late.
        let late = [0x82, 0x20];
        assert_eq!(
            d.decode(&late, usize::MAX, |_, _| {}),
            Err(HpackError::LateTableSizeUpdate)
        );
    }

    #[test]
    fn bad_indices_and_truncation_are_errors() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            d.decode(&[0x80], usize::MAX, |_, _| {}),
            Err(HpackError::BadIndex)
        );
        assert_eq!(
            d.decode(&[0xbe], usize::MAX, |_, _| {}),
            Err(HpackError::BadIndex)
        );
        assert_eq!(
            d.decode(&[0x40, 0x05, b'a'], usize::MAX, |_, _| {}),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            d.decode(&[0x04], usize::MAX, |_, _| {}),
            Err(HpackError::Truncated)
        );
    }

    #[test]
    fn encoder_announces_a_smaller_table() {
        let mut e = Encoder::new();
        e.set_max_table_size(0);
        e.set_max_table_size(1000);
        let mut out = Vec::new();
        e.start_block(&mut out);
        // The lowest size first, then the final one (RFC 7541 4.2).
        let mut want = Vec::new();
        encode_integer(0, 5, 0x20, &mut want);
        encode_integer(1000, 5, 0x20, &mut want);
        assert_eq!(out, want);
        out.clear();
        e.start_block(&mut out);
        assert!(out.is_empty());
    }
}
