//! The static table (RFC 7541 Appendix A) and the dynamic table (section 4).

use std::collections::VecDeque;

/// RFC 7541 Appendix A, index 1 first.
pub const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static table's indices for a name: one `match` instead of a scan,
/// since every response field is looked up here.
fn static_indices(name: &[u8]) -> Option<std::ops::RangeInclusive<usize>> {
    let i = match name {
        b":authority" => 1,
        b":method" => return Some(2..=3),
        b":path" => return Some(4..=5),
        b":scheme" => return Some(6..=7),
        b":status" => return Some(8..=14),
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    };
    Some(i..=i)
}

/// RFC 7541 4.1: an entry's size is its name, its value and 32.
pub const ENTRY_OVERHEAD: usize = 32;

/// One field of the dynamic table: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }
    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table: newest entry first (index 62 on the wire).
#[derive(Debug)]
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    pub fn new(max_size: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Change the maximum size, evicting the oldest entries to fit.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict(0);
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => break,
            }
        }
    }

    /// Add a field (RFC 7541 4.4): an entry larger than the table empties it
    /// and is not added.
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        });
        self.size += size;
    }

    /// The field at wire index `index` (1-based, static table first).
    pub fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        if index == 0 {
            return None;
        }
        if index <= STATIC.len() {
            return Some(STATIC[index - 1]);
        }
        self.entries
            .get(index - STATIC.len() - 1)
            .map(|e| (e.name(), e.value()))
    }

    /// The best wire index for a field: (index, whether the value matches too).
    pub fn find(&self, name: &[u8], value: &[u8]) -> Option<(usize, bool)> {
        let mut name_only = None;
        if let Some(range) = static_indices(name) {
            for i in range.clone() {
                if STATIC[i - 1].1 == value {
                    return Some((i, true));
                }
            }
            name_only = Some(*range.start());
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.name() == name {
                if e.value() == value {
                    return Some((STATIC.len() + 1 + i, true));
                }
                name_only.get_or_insert(STATIC.len() + 1 + i);
            }
        }
        name_only.map(|i| (i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_size_within_max() {
        let mut t = DynamicTable::new(100);
        t.insert(b"a", b"1234567890"); // 43
        t.insert(b"b", b"1234567890"); // 86
        assert_eq!(t.len(), 2);
        t.insert(b"c", b"1234567890"); // evicts a
        assert_eq!(t.len(), 2);
        assert_eq!(t.size(), 86);
        assert_eq!(t.get(62), Some((&b"c"[..], &b"1234567890"[..])));
        assert_eq!(t.get(63), Some((&b"b"[..], &b"1234567890"[..])));
        assert_eq!(t.get(64), None);
        t.insert(b"huge", &[b'x'; 100]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn name_lookup_agrees_with_the_static_table() {
        for (i, (name, _)) in STATIC.iter().enumerate() {
            let range = static_indices(name).unwrap();
            assert!(
                range.contains(&(i + 1)),
                "{}",
                String::from_utf8_lossy(name)
            );
            for j in range {
                assert_eq!(STATIC[j - 1].0, *name);
            }
        }
        assert_eq!(static_indices(b"x-custom"), None);
    }

    #[test]
    fn static_entries_by_index_and_field() {
        let t = DynamicTable::new(0);
        assert_eq!(t.get(2), Some((&b":method"[..], &b"GET"[..])));
        assert_eq!(t.get(61), Some((&b"www-authenticate"[..], &b""[..])));
        assert_eq!(t.find(b":status", b"200"), Some((8, true)));
        assert_eq!(t.find(b":status", b"201"), Some((8, false)));
        assert_eq!(t.find(b"x-custom", b"1"), None);
    }
}
