//! The 64-bit tag both engines attach to kernel work: io_uring `user_data`
//! and the mio `Token` of a registration carry the same layout, so a
//! completion or readiness event names its operation and its owner.
//!
//! ```text
//!  63      56 55                    32 31                          0
//! +----------+------------------------+-----------------------------+
//! |   kind   |  generation (24 bits)  |  index (conn, listener, fd) |
//! +----------+------------------------+-----------------------------+
//! ```
//!
//! The generation of a connection slot changes each time the slot is freed,
//! so an event tagged for a previous holder of the id is recognised and
//! dropped.

/// What the tagged work is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A listener (index = listener id): accept completions / readiness.
    Accept = 1,
    /// A connection's receive (io_uring) or its readiness (epoll).
    Conn = 2,
    /// A connection's in-flight send (io_uring only).
    Send = 3,
    /// A connection's close (io_uring only).
    Close = 5,
    /// A watched fd (index = position in the watch list).
    Watch = 6,
    /// A cancel request: its own completion carries nothing we need.
    Cancel = 7,
    /// A connection's receive into a lent buffer (io_uring only).
    RecvInto = 8,
}

/// The tag of every cancel request; its completion is ignored.
pub const CANCEL: u64 = (Kind::Cancel as u64) << 56;

const GEN_MASK: u32 = (1 << 24) - 1;

/// Build a tag.
pub const fn encode(kind: Kind, gen: u32, index: u32) -> u64 {
    ((kind as u64) << 56) | (((gen & GEN_MASK) as u64) << 32) | index as u64
}

/// Split a tag; `None` for a kind this build never issues.
pub fn decode(tag: u64) -> Option<(Kind, u32, u32)> {
    let kind = match (tag >> 56) as u8 {
        1 => Kind::Accept,
        2 => Kind::Conn,
        3 => Kind::Send,
        5 => Kind::Close,
        6 => Kind::Watch,
        7 => Kind::Cancel,
        8 => Kind::RecvInto,
        _ => return None,
    };
    Some((kind, ((tag >> 32) as u32) & GEN_MASK, tag as u32))
}

/// The generation that follows `gen` (wrapping within 24 bits).
pub const fn next_gen(gen: u32) -> u32 {
    (gen + 1) & GEN_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips_kind_generation_and_index() {
        let tag = encode(Kind::Send, 0x00ab_cdef, 0xdead_beef);
        assert_eq!(decode(tag), Some((Kind::Send, 0x00ab_cdef, 0xdead_beef)));
        assert_eq!(decode(CANCEL), Some((Kind::Cancel, 0, 0)));
        assert_eq!(decode(0), None);
    }

    #[test]
    fn generation_wraps_within_24_bits() {
        assert_eq!(next_gen(GEN_MASK), 0);
        let tag = encode(Kind::Conn, GEN_MASK + 5, 1);
        assert_eq!(decode(tag), Some((Kind::Conn, 4, 1)));
    }
}
