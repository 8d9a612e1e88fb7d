//! The size limits of one request, resolved from `Config` once per connection.

use super::Config;

/// gunicorn's cap on `limit_request_line` and its default field size
/// (`MAX_REQUEST_LINE`, `DEFAULT_MAX_HEADERFIELD_SIZE`; also Apache's).
pub(super) const MAX_REQUEST_LINE: usize = 8190;
pub(super) const DEFAULT_FIELD_SIZE: usize = 8190;
/// gunicorn's `MAX_HEADERS`.
pub(super) const MAX_FIELDS: usize = 32768;
/// `limit_request_line = 0` means "unlimited"; a request line still has to
/// end somewhere, and 1 MiB is what gunicorn's C parser uses for it.
pub(super) const UNLIMITED_REQUEST_LINE: usize = 1 << 20;
/// Spans into a head are `u32`; keep every head far below that.
const MAX_BLOCK: usize = 1 << 30;
/// A PROXY v1 line is at most 107 bytes with its CRLF (spec §2.1).
pub(super) const MAX_PROXY_V1_LINE: usize = 107;

#[derive(Clone, Debug)]
pub(super) struct Limits {
    /// Max bytes of the request line without its CRLF (414 beyond).
    pub request_line: usize,
    /// Max number of kept header fields (431 beyond).
    pub fields: usize,
    /// Max bytes of one field line with its CRLF, folded lines included (431 beyond).
    pub field_size: usize,
    /// Max bytes of a header or trailer section: gunicorn's
    /// `fields * (field_size + 2) + 4` "max buffer headers" (431 beyond).
    pub block: usize,
    /// Max bytes of a chunk-size line without its CRLF (400 beyond).
    pub chunk_line: usize,
}

impl Limits {
    pub fn from_config(cfg: &Config) -> Limits {
        let request_line = match cfg.limit_request_line {
            0 => UNLIMITED_REQUEST_LINE,
            n => n.min(MAX_REQUEST_LINE),
        };
        let fields = match cfg.limit_request_fields {
            0 => MAX_FIELDS,
            n => n.min(MAX_FIELDS),
        };
        let field_size = match cfg.limit_request_field_size {
            0 => DEFAULT_FIELD_SIZE,
            n => n.min(MAX_BLOCK),
        };
        let block = fields
            .saturating_mul(field_size.saturating_add(2))
            .saturating_add(4)
            .min(MAX_BLOCK);
        Limits {
            request_line,
            fields,
            field_size,
            block,
            chunk_line: field_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_gunicorn_defaults_and_caps() {
        let l = Limits::from_config(&Config::default());
        assert_eq!((l.request_line, l.fields, l.field_size), (4094, 100, 8190));
        assert_eq!(l.block, 100 * 8192 + 4);

        let cfg = Config {
            limit_request_line: 0,
            limit_request_fields: 0,
            limit_request_field_size: 0,
            ..Config::default()
        };
        let l = Limits::from_config(&cfg);
        assert_eq!(l.request_line, UNLIMITED_REQUEST_LINE);
        assert_eq!(l.fields, MAX_FIELDS);
        assert_eq!(l.field_size, DEFAULT_FIELD_SIZE);

        let cfg = Config {
            limit_request_line: 9000,
            limit_request_fields: 40000,
            ..Config::default()
        };
        let l = Limits::from_config(&cfg);
        assert_eq!((l.request_line, l.fields), (MAX_REQUEST_LINE, MAX_FIELDS));
    }
}
