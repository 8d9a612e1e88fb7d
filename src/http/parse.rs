//! Request line and header fields, on httparse, with gunicorn 27's rules.
