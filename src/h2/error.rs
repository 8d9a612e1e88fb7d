//! HTTP/2 error codes (RFC 9113 7) and the two scopes an error has.

use std::fmt;

/// An error code as carried by RST_STREAM and GOAWAY. Unknown codes are
/// kept as they came (RFC 9113 7: treat them as INTERNAL_ERROR if acted on).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Reason({:#x})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A protocol violation by the peer, with the scope RFC 9113 gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// Fatal to the connection: GOAWAY with this reason, then close.
    Connection {
        reason: Reason,
        detail: &'static str,
    },
    /// Fatal to one stream: RST_STREAM with this reason; the connection lives.
    Stream {
        stream: u32,
        reason: Reason,
        detail: &'static str,
    },
}

impl H2Error {
    pub fn conn(reason: Reason, detail: &'static str) -> H2Error {
        H2Error::Connection { reason, detail }
    }

    pub fn stream(stream: u32, reason: Reason, detail: &'static str) -> H2Error {
        H2Error::Stream {
            stream,
            reason,
            detail,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            H2Error::Connection { reason, .. } | H2Error::Stream { reason, .. } => *reason,
        }
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::Connection { reason, detail } => write!(f, "connection {reason}: {detail}"),
            H2Error::Stream {
                stream,
                reason,
                detail,
            } => write!(f, "stream {stream} {reason}: {detail}"),
        }
    }
}

impl std::error::Error for H2Error {}
