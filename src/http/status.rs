//! Status codes: reason phrases and the checks on what an app answers.

use super::scan::{is_field_vchar, is_token};

/// The standard reason phrase of `status` (`"Unknown"` for codes without one).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

/// A status string must be three digits, optionally followed by a space and
/// a reason of SP, HTAB, VCHAR and obs-text (gunicorn 27's `STATUS_RE`).
pub fn validate_status(status: &[u8]) -> bool {
    match status {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            match rest {
                [] => true,
                [b' ', reason @ ..] => reason.iter().all(|&b| is_field_vchar(b)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The numeric code of a status string (`0` when it does not start with three digits).
pub(super) fn status_code(status: &[u8]) -> u16 {
    match status {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

/// RFC 9110 token name; value of SP, HTAB, VCHAR and obs-text only.
pub fn validate_response_header(name: &[u8], value: &[u8]) -> bool {
    validate_header_name(name) && validate_header_value(value)
}

/// A response header name: an RFC 9110 token.
pub fn validate_header_name(name: &[u8]) -> bool {
    is_token(name)
}

/// A response header value: SP, HTAB, VCHAR and obs-text only.
pub fn validate_header_value(value: &[u8]) -> bool {
    value.iter().all(|&b| is_field_vchar(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_needs_three_digits_and_an_optional_printable_reason() {
        assert!(validate_status(b"200 OK"));
        assert!(validate_status(b"200"));
        assert!(validate_status(b"599 Caf\xe9 \t x"));
        assert!(validate_status(b"200 "));
        assert!(!validate_status(b"20"));
        assert!(!validate_status(b"2000"));
        assert!(!validate_status(b"200OK"));
        assert!(!validate_status(b"abc OK"));
        assert!(!validate_status(b"200 OK\r\nX: y"));
        assert!(!validate_status(b" 200 OK"));
        assert!(!validate_status(b""));
    }

    #[test]
    fn status_code_reads_the_first_three_digits() {
        assert_eq!(status_code(b"204 No Content"), 204);
        assert_eq!(status_code(b"304"), 304);
        assert_eq!(status_code(b"x"), 0);
    }

    #[test]
    fn response_header_refuses_bad_names_and_control_bytes() {
        assert!(validate_response_header(b"X-Ok", b"a b\tc \xff"));
        assert!(validate_response_header(b"X-Empty", b""));
        assert!(!validate_response_header(b"", b"v"));
        assert!(!validate_response_header(b"X Bad", b"v"));
        assert!(!validate_response_header(
            b"X-Inject",
            b"a\r\nSet-Cookie: x"
        ));
        assert!(!validate_response_header(b"X-Nul", b"a\0"));
        assert!(!validate_response_header(b"X-Del", b"a\x7f"));
        assert!(validate_header_name(b"X-Thing_1!"));
        assert!(!validate_header_name(b"X:Thing"));
        assert!(!validate_header_name(b"X\xe9"));
        assert!(!validate_header_value(b"a\r\nb"));
    }

    #[test]
    fn reason_phrases_cover_the_statuses_the_parser_answers() {
        assert_eq!(reason_phrase(400), "Bad Request");
        assert_eq!(reason_phrase(403), "Forbidden");
        assert_eq!(reason_phrase(414), "URI Too Long");
        assert_eq!(reason_phrase(417), "Expectation Failed");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(500), "Internal Server Error");
        assert_eq!(reason_phrase(501), "Not Implemented");
        assert_eq!(reason_phrase(299), "Unknown");
    }
}
