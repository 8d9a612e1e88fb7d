"""ferrocorn: a pre-fork HTTP server for Python web applications, written in Rust."""
from ferrocorn._ferrocorn import __version__

__all__ = ["__version__"]
