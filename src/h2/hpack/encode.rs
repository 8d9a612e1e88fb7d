//! The HPACK encoder: fields in, a header block out.

use super::table::DynamicTable;
use super::{encode_integer, huffman};

/// How a field may be kept by the peer's decoder (RFC 7541 6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// Add it to the dynamic table (or refer to it if there already).
    Incremental,
    /// Do not add it (a value that seldom repeats).
    Without,
    /// Never add it, here or at any intermediary (credentials, cookies).
    Never,
}

/// Our encoder uses at most this much dynamic table, whatever the peer
/// allows: the default SETTINGS_HEADER_TABLE_SIZE, as nghttp2 does.
pub const MAX_ENCODER_TABLE: usize = 4096;

#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    /// Table size updates to send at the start of the next block: the
    /// smallest size since the last block, then the current one (RFC 7541 4.2).
    pending_update: Option<(usize, usize)>,
    /// Huffman-code strings when that is shorter (off only to check the
    /// RFC's plain examples).
    huffman: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::with_table_size(MAX_ENCODER_TABLE)
    }

    pub fn with_table_size(size: usize) -> Encoder {
        Encoder {
            table: DynamicTable::new(size),
            pending_update: None,
            huffman: true,
        }
    }

    #[cfg(test)]
    pub(super) fn without_huffman(mut self) -> Encoder {
        self.huffman = false;
        self
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed.
    pub fn set_max_table_size(&mut self, peer: usize) {
        let size = peer.min(MAX_ENCODER_TABLE);
        if size == self.table.max_size() && self.pending_update.is_none() {
            return;
        }
        let low = self.pending_update.map_or(size, |(low, _)| low.min(size));
        self.pending_update = Some((low, size));
        self.table.set_max_size(size);
    }

    /// Start a header block: sends any pending table size update.
    pub fn start_block(&mut self, out: &mut Vec<u8>) {
        if let Some((low, size)) = self.pending_update.take() {
            if low < size {
                encode_integer(low, 5, 0x20, out);
            }
            encode_integer(size, 5, 0x20, out);
        }
    }

    /// Append one field to the block being built.
    pub fn encode(&mut self, name: &[u8], value: &[u8], indexing: Indexing, out: &mut Vec<u8>) {
        let found = self.table.find(name, value);
        if let Some((index, true)) = found {
            if indexing != Indexing::Never {
                encode_integer(index, 7, 0x80, out);
                return;
            }
        }
        let name_index = found.map(|(i, _)| i);
        let (prefix, flags) = match indexing {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        match name_index {
            Some(i) => encode_integer(i, prefix, flags, out),
            None => {
                out.push(flags);
                string(name, self.huffman, out);
            }
        }
        string(value, self.huffman, out);
        if indexing == Indexing::Incremental {
            self.table.insert(name, value);
        }
    }
}

/// A string literal, Huffman-coded unless that is longer (as RFC 7541 C.6 does).
fn string(s: &[u8], use_huffman: bool, out: &mut Vec<u8>) {
    let coded = huffman::encoded_len(s);
    if use_huffman && coded <= s.len() {
        encode_integer(coded, 7, 0x80, out);
        huffman::encode(s, out);
    } else {
        encode_integer(s.len(), 7, 0, out);
        out.extend_from_slice(s);
    }
}
