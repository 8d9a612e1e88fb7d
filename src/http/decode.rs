//! Request body framing: Content-Length and chunked (trailers skipped).
