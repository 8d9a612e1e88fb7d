//! The HPACK decoder: one header block at a time, fields handed to a closure.

use super::table::{DynamicTable, ENTRY_OVERHEAD};
use super::{decode_integer, huffman, HpackError};

/// What a decoded block cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// RFC 9113 6.5.2 size of every field in the block (name + value + 32).
    pub list_size: usize,
    /// `list_size` passed the limit: the fields after that point were not
    /// handed out (the block was still decoded, to keep the table in step).
    pub over_limit: bool,
}

#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the peer may not ask for more.
    max_table_size: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// A string literal (RFC 7541 5.2) at the start of `buf`, Huffman-decoded
/// into `scratch` when it is coded: (bytes, length on the wire).
fn string<'a>(buf: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(&'a [u8], usize), HpackError> {
    let huffman = buf.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, n) = decode_integer(buf, 7)?;
    let end = n + len;
    let raw = buf.get(n..end).ok_or(HpackError::Truncated)?;
    if huffman {
        scratch.clear();
        huffman::decode(raw, scratch)?;
        Ok((&scratch[..], end))
    } else {
        Ok((raw, end))
    }
}

impl Decoder {
    /// A decoder whose peer may use up to `max_table_size` bytes of table
    /// (the SETTINGS_HEADER_TABLE_SIZE we send; 4096 unless we say otherwise).
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Decode one complete header block, calling `field(name, value)` for
    /// each field in order until their total size passes `max_list_size`.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<Decoded, HpackError> {
        let Decoder {
            table,
            max_table_size,
            name: name_buf,
            value: value_buf,
        } = self;
        let mut out = Decoded {
            list_size: 0,
            over_limit: false,
        };
        let mut pos = 0;
        let mut fields_seen = false;
        while pos < block.len() {
            let buf = &block[pos..];
            let first = buf[0];
            if first & 0x80 != 0 {
                // Indexed field.
                let (index, n) = decode_integer(buf, 7)?;
                pos += n;
                let (name, value) = table.get(index).ok_or(HpackError::BadIndex)?;
                fields_seen = true;
                emit(&mut out, max_list_size, name, value, &mut field);
                continue;
            }
            if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field.
                if fields_seen {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let (size, n) = decode_integer(buf, 5)?;
                if size > *max_table_size {
                    return Err(HpackError::TableSizeTooLarge);
                }
                table.set_max_size(size);
                pos += n;
                continue;
            }
            fields_seen = true;
            let (indexing, prefix) = if first & 0x40 != 0 {
                (true, 6)
            } else {
                (false, 4)
            };
            let (index, n) = decode_integer(buf, prefix)?;
            pos += n;
            if indexing {
                let name: &[u8] = if index == 0 {
                    let (s, n) = string(&block[pos..], name_buf)?;
                    pos += n;
                    s
                } else {
                    let (name, _) = table.get(index).ok_or(HpackError::BadIndex)?;
                    name_buf.clear();
                    name_buf.extend_from_slice(name);
                    &name_buf[..]
                };
                let (value, n) = string(&block[pos..], value_buf)?;
                pos += n;
                emit(&mut out, max_list_size, name, value, &mut field);
                table.insert(name, value);
            } else {
                let name: &[u8] = if index == 0 {
                    let (s, n) = string(&block[pos..], name_buf)?;
                    pos += n;
                    s
                } else {
                    table.get(index).ok_or(HpackError::BadIndex)?.0
                };
                let (value, n) = string(&block[pos..], value_buf)?;
                pos += n;
                emit(&mut out, max_list_size, name, value, &mut field);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    pub(super) fn table(&self) -> &DynamicTable {
        &self.table
    }
}

fn emit(
    out: &mut Decoded,
    max_list_size: usize,
    name: &[u8],
    value: &[u8],
    field: &mut impl FnMut(&[u8], &[u8]),
) {
    out.list_size = out
        .list_size
        .saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
    if out.list_size > max_list_size {
        out.over_limit = true;
    }
    if !out.over_limit {
        field(name, value);
    }
}
