//! Errors in request bytes, each with the status to answer.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpErrorKind {
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidHttpVersion,
    InvalidHeader,
    InvalidHeaderName,
    ObsoleteFolding,
    InvalidSchemeHeaders,
    InvalidProxyLine,
    InvalidChunkSize,
    ChunkMissingTerminator,
    InvalidChunkExtension,
    LimitRequestLine,
    LimitRequestHeaders,
    UnsupportedTransferCoding,
    ExpectationFailed,
    ForbiddenProxyRequest,
    /// The body is larger than `limit_request_body`.
    RequestBodyTooLarge,
    /// The client stopped in the middle of a request: close without answering.
    NoMoreData,
    /// The server could not keep a request body (its temporary file could
    /// not be made or written): not the client's fault, a 500.
    BodyNotStored,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub kind: HttpErrorKind,
    /// What was wrong, for the error log (never echoes unbounded client bytes).
    pub detail: String,
}

impl HttpError {
    pub fn new(kind: HttpErrorKind, detail: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            detail: detail.into(),
        }
    }

    /// The status to answer with, or `None` to close without answering.
    pub fn status(&self) -> Option<u16> {
        use HttpErrorKind::*;
        match self.kind {
            LimitRequestLine => Some(414),
            LimitRequestHeaders => Some(431),
            UnsupportedTransferCoding => Some(501),
            ExpectationFailed => Some(417),
            ForbiddenProxyRequest => Some(403),
            RequestBodyTooLarge => Some(413),
            BodyNotStored => Some(500),
            NoMoreData => None,
            _ => Some(400),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for HttpError {}
