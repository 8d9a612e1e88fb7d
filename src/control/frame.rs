//! Framing: each message is a 4-byte big-endian length, then that many
//! bytes of UTF-8 JSON (gunicorn's `ControlProtocol`).

/// The longest request the master reads. gunicorn allows 16 MiB; the
/// longest real command is a few dozen bytes, and a master must not buffer
/// megabytes for a client.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The longest reply the client reads (gunicorn's own limit).
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

const PREFIX: usize = 4;

/// A frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    TooLarge { len: usize, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "message too large: {len} bytes (at most {max})")
            }
        }
    }
}

/// `payload` with its length prefix.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Collects bytes and yields whole message payloads.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Some bytes of a message that is not complete yet.
    pub fn in_progress(&self) -> bool {
        !self.buf.is_empty()
    }

    /// How many more bytes the message being read needs at most (so a
    /// reader never takes more than one oversized message's prefix).
    pub fn wanted(&self) -> usize {
        match self.announced() {
            Some(len) => (PREFIX + len).saturating_sub(self.buf.len()),
            None => PREFIX - self.buf.len(),
        }
    }

    fn announced(&self) -> Option<usize> {
        let prefix: [u8; PREFIX] = self.buf.get(..PREFIX)?.try_into().ok()?;
        Some(u32::from_be_bytes(prefix) as usize)
    }

    /// The next whole payload, `None` while it is incomplete, or an error
    /// as soon as its prefix is over the limit (the stream cannot be read
    /// further: its end is unknown).
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let len = self.announced()?;
        if len > self.max {
            return Some(Err(FrameError::TooLarge { len, max: self.max }));
        }
        if self.buf.len() < PREFIX + len {
            return None;
        }
        let payload = self.buf[PREFIX..PREFIX + len].to_vec();
        self.buf.drain(..PREFIX + len);
        Some(Ok(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_prefixes_the_big_endian_length() {
        assert_eq!(encode(b"{}"), b"\0\0\0\x02{}");
        assert_eq!(encode(b""), b"\0\0\0\0");
    }

    #[test]
    fn message_split_at_every_offset_comes_out_whole() {
        let msg = encode(br#"{"id": 1, "command": "show workers", "args": []}"#);
        for cut in 0..=msg.len() {
            let mut d = Decoder::new(MAX_MESSAGE);
            d.push(&msg[..cut]);
            if cut < msg.len() {
                assert_eq!(d.next_message(), None, "cut {cut}");
                assert_eq!(d.in_progress(), cut > 0);
                assert!(d.wanted() > 0);
                d.push(&msg[cut..]);
            }
            assert_eq!(d.next_message(), Some(Ok(msg[4..].to_vec())), "cut {cut}");
            assert!(!d.in_progress());
            assert_eq!(d.next_message(), None);
        }
    }

    #[test]
    fn two_messages_in_one_read_come_out_in_order() {
        let mut both = encode(b"one");
        both.extend(encode(b"two"));
        let mut d = Decoder::new(MAX_MESSAGE);
        d.push(&both);
        assert_eq!(d.next_message(), Some(Ok(b"one".to_vec())));
        assert_eq!(d.next_message(), Some(Ok(b"two".to_vec())));
        assert_eq!(d.next_message(), None);
    }

    #[test]
    fn oversized_prefix_is_refused_before_its_payload_arrives() {
        let mut d = Decoder::new(MAX_MESSAGE);
        d.push(&((MAX_MESSAGE + 1) as u32).to_be_bytes());
        assert_eq!(
            d.next_message(),
            Some(Err(FrameError::TooLarge {
                len: MAX_MESSAGE + 1,
                max: MAX_MESSAGE
            }))
        );
        let mut d = Decoder::new(MAX_MESSAGE);
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_message(),
            Some(Err(FrameError::TooLarge { .. }))
        ));
    }

    #[test]
    fn message_of_exactly_the_limit_is_read() {
        let payload = vec![b' '; MAX_MESSAGE];
        let mut d = Decoder::new(MAX_MESSAGE);
        d.push(&encode(&payload));
        assert_eq!(d.next_message(), Some(Ok(payload)));
    }

    #[test]
    fn wanted_never_asks_past_the_current_message() {
        let mut d = Decoder::new(MAX_MESSAGE);
        assert_eq!(d.wanted(), 4);
        d.push(&[0, 0]);
        assert_eq!(d.wanted(), 2);
        d.push(&[0, 3]);
        assert_eq!(d.wanted(), 3);
        d.push(b"ab");
        assert_eq!(d.wanted(), 1);
    }
}
